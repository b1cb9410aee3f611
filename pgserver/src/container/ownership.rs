//! Whose a container is, and removing it when its owner is gone: every
//! container is named `aepg-tests-<pid>-<n>-<nonce>`, labelled with its
//! owner host and pid, and registered with the exit watchdog
//! ([`crate::reaper`]) before it is created; at its first container start,
//! each process removes labelled containers of this host whose owner
//! process no longer exists. `TESTCONTAINERS_COMMAND=keep` disables all of
//! this.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::docker::DockerAccess;
use crate::env_vars;
use crate::log::log;
use crate::reaper;
use crate::shell::shell_quote;

const LABEL: &str = "org.aepg.tests";
const LABEL_HOST: &str = "org.aepg.tests.owner-host";
const LABEL_PID: &str = "org.aepg.tests.owner-pid";
const LABEL_ROLE: &str = "org.aepg.tests.role";

/// Whether a container is the process-wide shared server or a dedicated one.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Role {
    /// The process-wide shared server.
    Shared,
    /// A throwaway server of one caller's.
    Dedicated,
}

/// A new container name, unique within the process (counter) and across
/// processes (pid + time-based nonce).
pub(crate) fn new_name() -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_micros());
    format!(
        "aepg-tests-{}-{}-{nonce}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// The labels that mark a container of this process.
pub(crate) fn labels(role: Role) -> [(&'static str, String); 4] {
    [
        (LABEL, "1".to_owned()),
        (LABEL_HOST, hostname()),
        (LABEL_PID, std::process::id().to_string()),
        (
            LABEL_ROLE,
            match role {
                Role::Shared => "shared",
                Role::Dedicated => "dedicated",
            }
            .to_owned(),
        ),
    ]
}

/// Registers `docker rm -f -v <name>` with the exit watchdog. Called before
/// the container exists, by name, so that a process killed during start-up
/// does not leak it either.
pub(crate) fn remove_at_exit(docker: &DockerAccess, name: &str) {
    if keep_containers() {
        return;
    }
    let command = format!(
        "{} rm -f -v {}",
        docker.cli_shell_prefix(),
        shell_quote(name)
    );
    if let Err(e) = reaper::at_exit(&command) {
        log(format!(
            "warning: {e}; container {name} may outlive this process"
        ));
    }
}

/// Removes orphaned containers, the first time it is called in this process.
pub(crate) async fn remove_orphans_once() {
    static SWEPT: OnceLock<()> = OnceLock::new();
    if SWEPT.set(()).is_ok() && !keep_containers() {
        remove_orphans().await;
    }
}

fn keep_containers() -> bool {
    env_vars::non_empty("TESTCONTAINERS_COMMAND").is_some_and(|v| v.eq_ignore_ascii_case("keep"))
}

fn hostname() -> String {
    ["/proc/sys/kernel/hostname", "/etc/hostname"]
        .iter()
        .find_map(|p| std::fs::read_to_string(p).ok())
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

/// Removes labelled containers of this host whose owner process is gone.
async fn remove_orphans() {
    use testcontainers::bollard::query_parameters::{
        ListContainersOptionsBuilder, RemoveContainerOptionsBuilder,
    };
    let Ok(docker) = testcontainers::core::client::docker_client_instance().await else {
        return;
    };
    let filters = HashMap::from([("label", vec![format!("{LABEL_HOST}={}", hostname())])]);
    let options = ListContainersOptionsBuilder::new()
        .all(true)
        .filters(&filters)
        .build();
    let containers = match docker.list_containers(Some(options)).await {
        Ok(c) => c,
        Err(e) => {
            log(format!("warning: cannot list old test containers: {e}"));
            return;
        }
    };
    for summary in containers {
        let (Some(id), Some(labels)) = (summary.id, summary.labels) else {
            continue;
        };
        let Some(pid) = labels.get(LABEL_PID) else {
            continue;
        };
        if Path::new("/proc").join(pid).exists() {
            continue;
        }
        let options = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match docker.remove_container(&id, Some(options)).await {
            Ok(()) => log(format!(
                "removed orphaned test container {id} (owner pid {pid} is gone)"
            )),
            Err(e) => log(format!(
                "warning: cannot remove orphaned container {id}: {e}"
            )),
        }
    }
}
