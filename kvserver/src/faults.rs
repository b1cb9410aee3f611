//! Injected faults: throttling (429) and outages (503).

use std::sync::Mutex;

use crate::lock;
use crate::reply::Reply;

#[derive(Debug, Default)]
struct Pending {
    throttled: usize,
    retry_after_secs: u64,
    failed: usize,
}

/// Counts of upcoming authenticated requests to answer with a fault.
#[derive(Debug, Default)]
pub(crate) struct Faults {
    pending: Mutex<Pending>,
}

impl Faults {
    pub(crate) fn throttle_next(&self, n: usize, retry_after_secs: u64) {
        let mut pending = lock(&self.pending);
        pending.throttled = n;
        pending.retry_after_secs = retry_after_secs;
    }

    pub(crate) fn fail_next(&self, n: usize) {
        lock(&self.pending).failed = n;
    }

    /// The fault for the current request, if one is pending; consumes it.
    pub(crate) fn take(&self) -> Option<Reply> {
        let mut pending = lock(&self.pending);
        if pending.throttled > 0 {
            pending.throttled -= 1;
            let secs = pending.retry_after_secs;
            return Some(
                Reply::error(
                    429,
                    "Throttled",
                    format!(
                        "Operations per second is over the limit for this vault. Retry after {secs} seconds."
                    ),
                )
                .with_header("retry-after", secs.to_string()),
            );
        }
        if pending.failed > 0 {
            pending.failed -= 1;
            return Some(Reply::error(
                503,
                "ServiceUnavailable",
                "The service is temporarily unavailable (injected fault).",
            ));
        }
        None
    }
}
