//! The harness's own Tokio runtime.
//!
//! Every `#[tokio::test]` gets its own runtime, which is shut down when the
//! test ends. Anything that must outlive a single test (the shared server, the
//! Docker client that `testcontainers` caches, the Docker API proxy) therefore
//! runs on this process-wide runtime instead, which lives until the process
//! exits. Test code reaches it through [`run`] (async) or [`run_blocking`]
//! (from `Drop`).

use std::future::Future;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::runtime::Runtime;

use crate::error::{Error, Result};

static RUNTIME: OnceLock<std::result::Result<Runtime, String>> = OnceLock::new();

/// The process-wide harness runtime.
pub(crate) fn runtime() -> Result<&'static Runtime> {
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("aepg-tests-harness")
                .enable_all()
                .build()
                .map_err(|e| format!("cannot build the harness tokio runtime: {e}"))
        })
        .as_ref()
        .map_err(|e| Error::failed(e.clone()))
}

/// Runs `future` on the harness runtime and awaits it from any runtime.
pub(crate) async fn run<F>(future: F) -> Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    runtime()?
        .spawn(future)
        .await
        .map_err(|e| Error::failed(format!("harness task failed: {e}")))
}

/// Runs `future` on the harness runtime and blocks the calling thread until
/// it finishes or `timeout` passes. Usable from `Drop`, inside or outside a
/// runtime (it never blocks on the caller's runtime).
pub(crate) fn run_blocking<F>(future: F, timeout: Duration) -> Result<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime()?.spawn(async move {
        let _ = tx.send(future.await);
    });
    rx.recv_timeout(timeout)
        .map_err(|e| Error::failed(format!("harness task did not finish: {e}")))
}
