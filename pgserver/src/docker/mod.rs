//! Reaching the Docker engine, including old engines.
//!
//! `testcontainers` 0.27 talks to Docker through `bollard` 0.20, which pins
//! Docker API version 1.52 in every request path (`/v1.52/containers/...`).
//! Engines older than Docker 29 reject that ("client version 1.52 is too new.
//! Maximum supported API version is 1.41" on Docker 20.10). When the engine's
//! API version is older, this crate starts a tiny proxy on a private Unix
//! socket ([`version_proxy`]) that rewrites the version in each request line
//! down to the engine's maximum, and points `DOCKER_HOST` at it before
//! `testcontainers` creates its client. The handful of calls this crate makes
//! (create/start/inspect/logs/stop/remove containers, inspect images) are
//! compatible across these API versions.
//!
//! The original Docker endpoint is remembered for the `docker` CLI (used for
//! `docker cp` and the exit clean-up), which negotiates versions by itself.
//!
//! * [`endpoint`]: where the engine listens (`DOCKER_HOST` or the default
//!   sockets) and connecting to it;
//! * [`engine`]: the API version the engine speaks;
//! * [`version_proxy`]: the proxy.

mod endpoint;
mod engine;
mod version_proxy;

use std::process::Command;
use std::sync::OnceLock;

use self::endpoint::Endpoint;
use self::engine::ApiVersion;
use crate::error::{Error, Result};
use crate::log::log;
use crate::shell::shell_quote;

/// How this crate reaches Docker.
#[derive(Debug)]
pub(crate) struct DockerAccess {
    /// `DOCKER_HOST` as the user set it (None: unset), for the `docker` CLI.
    original_docker_host: Option<String>,
}

impl DockerAccess {
    /// A `docker` CLI command that talks to the real engine (not the proxy).
    pub(crate) fn cli(&self) -> Command {
        let mut cmd = Command::new("docker");
        match &self.original_docker_host {
            Some(host) => cmd.env("DOCKER_HOST", host),
            None => cmd.env_remove("DOCKER_HOST"),
        };
        cmd
    }

    /// The same as [`Self::cli`], as a shell command prefix.
    pub(crate) fn cli_shell_prefix(&self) -> String {
        match &self.original_docker_host {
            Some(host) => format!("DOCKER_HOST={} docker", shell_quote(host)),
            None => "env -u DOCKER_HOST docker".to_owned(),
        }
    }
}

static DOCKER: OnceLock<std::result::Result<DockerAccess, Error>> = OnceLock::new();

/// Checks that a Docker engine is reachable and, if it is older than what
/// `bollard` requires, installs the compatibility proxy. Idempotent; must be
/// called before any `testcontainers` call.
pub(crate) fn docker() -> Result<&'static DockerAccess> {
    DOCKER.get_or_init(init).as_ref().map_err(Clone::clone)
}

fn init() -> Result<DockerAccess> {
    let access = DockerAccess {
        original_docker_host: std::env::var("DOCKER_HOST")
            .ok()
            .filter(|v| !v.trim().is_empty()),
    };
    let Some(endpoint) = Endpoint::discover(access.original_docker_host.as_deref())? else {
        // https://, ssh://, ...: leave it to testcontainers.
        return Ok(access);
    };
    if std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|v| v == "1") {
        return Ok(access);
    }
    let version = engine::api_version(&endpoint)?;
    let wanted = ApiVersion::required_by_testcontainers();
    if version < wanted {
        let socket = version_proxy::start(endpoint, version)?;
        log(format!(
            "Docker engine API {version} is older than the {wanted} testcontainers requires: \
             proxying through {} with the API version rewritten",
            socket.display()
        ));
        // Edition 2021: `set_var` is safe. It runs once, before testcontainers
        // reads DOCKER_HOST, while tests only read environment variables.
        std::env::set_var("DOCKER_HOST", format!("unix://{}", socket.display()));
    }
    Ok(access)
}
