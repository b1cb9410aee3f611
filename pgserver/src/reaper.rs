//! Clean-up at process exit, without a Ryuk container.
//!
//! The shared server lives in a `static`, and Rust never drops statics, so a
//! container or `pg_ctl`-started cluster would outlive the test binary. The
//! harness therefore spawns one small watchdog per test process:
//!
//! ```sh
//! sh -c 'trap "" HUP INT TERM; script=$(cat); eval "$script"'
//! ```
//!
//! Its stdin is a pipe whose write end only this process holds. The harness
//! writes one shell command per resource to it (`docker rm -f -v <id>`,
//! `pg_ctl stop -m immediate; rm -rf <dir>`). When the process ends — normal
//! exit, panic, `SIGKILL`, Ctrl-C — the kernel closes the pipe, `cat` sees EOF
//! and the accumulated commands run. The watchdog runs in its own process
//! group, so a terminal's Ctrl-C does not kill it along with the tests.
//! Commands must be idempotent: resources cleaned up earlier (e.g. dropped
//! throwaway [`crate::Server`]s) are cleaned up again harmlessly.
//!
//! Testcontainers' Ryuk reaper is not involved at all: testcontainers-rs does
//! not use Ryuk (and its image could not be pulled here anyway).

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::Mutex;

use crate::error::{Error, Result};

static REAPER: Mutex<Option<ChildStdin>> = Mutex::new(None);

/// Registers `command` (a shell command line) to run after this process exits.
pub(crate) fn at_exit(command: &str) -> Result<()> {
    let mut guard = REAPER
        .lock()
        .map_err(|_| Error::failed("reaper lock poisoned"))?;
    if guard.is_none() {
        let child = Command::new("sh")
            .arg("-c")
            .arg(r#"trap "" HUP INT TERM; script=$(cat); eval "$script""#)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| Error::failed(format!("cannot spawn the exit-cleanup shell: {e}")))?;
        *guard = child.stdin;
    }
    let stdin = guard
        .as_mut()
        .ok_or_else(|| Error::failed("exit-cleanup shell has no stdin"))?;
    writeln!(stdin, "{{ {command} ; }} >/dev/null 2>&1")
        .and_then(|()| stdin.flush())
        .map_err(|e| Error::failed(format!("cannot register exit clean-up: {e}")))
}
