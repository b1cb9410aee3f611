//! Reaching the Docker engine, including old engines.
//!
//! `testcontainers` 0.27 talks to Docker through `bollard` 0.20, which pins
//! Docker API version 1.52 in every request path (`/v1.52/containers/...`).
//! Engines older than Docker 29 reject that ("client version 1.52 is too new.
//! Maximum supported API version is 1.41" on Docker 20.10). When the engine's
//! API version is older, the harness starts a tiny proxy on a private Unix
//! socket that rewrites the version in each request line down to the engine's
//! maximum and forces one request per connection, and points `DOCKER_HOST` at
//! it before `testcontainers` creates its client. The handful of calls the
//! harness makes (create/start/inspect/logs/stop/remove containers, inspect
//! images) are compatible across these API versions.
//!
//! The original Docker endpoint is remembered for the `docker` CLI (used for
//! `docker cp` and the exit clean-up), which negotiates versions by itself.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::error::{Error, Result};
use crate::log::log;
use crate::reaper::{self, shell_quote};
use crate::runtime;

/// How the harness reaches Docker.
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

#[derive(Debug, Clone)]
enum Endpoint {
    Unix(PathBuf),
    Tcp(String),
}

fn init() -> Result<DockerAccess> {
    let original_docker_host = std::env::var("DOCKER_HOST")
        .ok()
        .filter(|v| !v.trim().is_empty());
    let endpoint = match &original_docker_host {
        Some(host) => parse_endpoint(host),
        None => default_socket().map(Endpoint::Unix),
    };
    let Some(endpoint) = endpoint else {
        return match original_docker_host {
            // https://, ssh://, ...: leave it to testcontainers.
            Some(host) => Ok(DockerAccess {
                original_docker_host: Some(host),
            }),
            None => Err(Error::unavailable(
                "no Docker socket found (DOCKER_HOST unset, /var/run/docker.sock missing)",
            )),
        };
    };
    if std::env::var("DOCKER_TLS_VERIFY").is_ok_and(|v| v == "1") {
        return Ok(DockerAccess {
            original_docker_host,
        });
    }
    let version = engine_api_version(&endpoint).map_err(|e| {
        Error::unavailable(format!(
            "Docker engine at {endpoint:?} is not reachable: {e}"
        ))
    })?;
    let wanted = testcontainers::bollard::API_DEFAULT_VERSION;
    let engine = parse_version(&version).ok_or_else(|| {
        Error::unavailable(format!("Docker engine reports odd API version {version:?}"))
    })?;
    if engine < (wanted.major_version, wanted.minor_version) {
        let socket = start_proxy(endpoint, engine)?;
        log(format!(
            "Docker engine API {version} is older than the {}.{} testcontainers requires: \
             proxying through {} with the API version rewritten",
            wanted.major_version,
            wanted.minor_version,
            socket.display()
        ));
        // Edition 2021: `set_var` is safe. It runs once, before testcontainers
        // reads DOCKER_HOST, while tests only read environment variables.
        std::env::set_var("DOCKER_HOST", format!("unix://{}", socket.display()));
    }
    Ok(DockerAccess {
        original_docker_host,
    })
}

fn parse_endpoint(host: &str) -> Option<Endpoint> {
    if let Some(path) = host.strip_prefix("unix://") {
        return Some(Endpoint::Unix(PathBuf::from(path)));
    }
    host.strip_prefix("tcp://")
        .or_else(|| host.strip_prefix("http://"))
        .map(|addr| Endpoint::Tcp(addr.trim_end_matches('/').to_owned()))
}

/// The same search order as testcontainers when `DOCKER_HOST` is unset.
fn default_socket() -> Option<PathBuf> {
    let mut candidates = vec![PathBuf::from("/var/run/docker.sock")];
    if let Some(dir) = std::env::var_os("XDG_RUNTIME_DIR") {
        candidates.push(Path::new(&dir).join(".docker/run/docker.sock"));
    }
    if let Some(home) = std::env::var_os("HOME") {
        candidates.push(Path::new(&home).join(".docker/run/docker.sock"));
        candidates.push(Path::new(&home).join(".docker/desktop/docker.sock"));
    }
    candidates.into_iter().find(|p| p.exists())
}

fn parse_version(v: &str) -> Option<(usize, usize)> {
    let (major, minor) = v.split_once('.')?;
    Some((major.parse().ok()?, minor.parse().ok()?))
}

/// `GET /version` without a version prefix (always accepted), synchronously.
fn engine_api_version(endpoint: &Endpoint) -> std::io::Result<String> {
    let request = b"GET /version HTTP/1.0\r\nHost: docker\r\n\r\n";
    let timeout = Some(Duration::from_secs(10));
    let mut response = Vec::new();
    match endpoint {
        Endpoint::Unix(path) => {
            let mut s = std::os::unix::net::UnixStream::connect(path)?;
            s.set_read_timeout(timeout)?;
            s.write_all(request)?;
            s.read_to_end(&mut response)?;
        }
        Endpoint::Tcp(addr) => {
            let mut s = std::net::TcpStream::connect(addr)?;
            s.set_read_timeout(timeout)?;
            s.write_all(request)?;
            s.read_to_end(&mut response)?;
        }
    }
    let text = String::from_utf8_lossy(&response);
    let status_ok = text
        .lines()
        .next()
        .is_some_and(|line| line.split_whitespace().nth(1) == Some("200"));
    let key = "\"ApiVersion\":\"";
    match text.find(key) {
        Some(start) if status_ok => {
            let rest = &text[start + key.len()..];
            Ok(rest.split('"').next().unwrap_or_default().to_owned())
        }
        _ => Err(std::io::Error::other(format!(
            "unexpected /version response: {}",
            text.chars().take(200).collect::<String>()
        ))),
    }
}

/// Starts the rewriting proxy; returns its socket path.
fn start_proxy(upstream: Endpoint, max: (usize, usize)) -> Result<PathBuf> {
    let dir = tempfile::Builder::new()
        .prefix("aepg-docker-proxy-")
        .tempdir()
        .map_err(|e| Error::failed(format!("cannot create proxy socket dir: {e}")))?
        .keep();
    let socket = dir.join("docker.sock");
    let listener = std::os::unix::net::UnixListener::bind(&socket)
        .and_then(|l| l.set_nonblocking(true).map(|()| l))
        .map_err(|e| Error::failed(format!("cannot bind {}: {e}", socket.display())))?;
    // Best effort: the directory is removed after the process exits.
    let _ = reaper::at_exit(&format!("rm -rf {}", shell_quote(&dir.to_string_lossy())));
    let rt = runtime::runtime()?;
    let listener = {
        let _guard = rt.enter();
        tokio::net::UnixListener::from_std(listener)
            .map_err(|e| Error::failed(format!("cannot register proxy socket: {e}")))?
    };
    rt.spawn(async move {
        loop {
            match listener.accept().await {
                Ok((client, _)) => {
                    let upstream = upstream.clone();
                    tokio::spawn(async move {
                        // Errors are the client's or engine's business; the
                        // connection just closes.
                        let _ = proxy_connection(client, upstream, max).await;
                    });
                }
                Err(e) => {
                    log(format!("docker proxy: accept failed: {e}"));
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(socket)
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}

async fn proxy_connection(
    mut client: tokio::net::UnixStream,
    upstream: Endpoint,
    max: (usize, usize),
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(8192);
    let head_end = loop {
        if client.read_buf(&mut buf).await? == 0 {
            return Ok(());
        }
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos + 4;
        }
        if buf.len() > 1 << 20 {
            return Err(std::io::Error::other("request head too large"));
        }
    };
    let head = rewrite_head(&String::from_utf8_lossy(&buf[..head_end]), max);
    let mut up: Box<dyn Stream> = match &upstream {
        Endpoint::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
        Endpoint::Tcp(addr) => Box::new(tokio::net::TcpStream::connect(addr).await?),
    };
    up.write_all(head.as_bytes()).await?;
    up.write_all(&buf[head_end..]).await?;
    tokio::io::copy_bidirectional(&mut client, &mut up).await?;
    Ok(())
}

/// Rewrites `/vX.Y/` above `max` in the request line and, unless the request
/// is a protocol upgrade (attach/exec), forces `Connection: close` so every
/// request arrives on a fresh connection and gets rewritten.
fn rewrite_head(head: &str, max: (usize, usize)) -> String {
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.splitn(3, ' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let proto = parts.next().unwrap_or_default();
    let target = match target.strip_prefix("/v").and_then(|t| t.split_once('/')) {
        Some((version, rest)) if parse_version(version).is_some_and(|v| v > max) => {
            format!("/v{}.{}/{rest}", max.0, max.1)
        }
        _ => target.to_owned(),
    };
    let headers: Vec<&str> = lines.filter(|l| !l.is_empty()).collect();
    let is_upgrade = headers
        .iter()
        .any(|h| header_name(h).eq_ignore_ascii_case("upgrade"));
    let mut out = format!("{method} {target} {proto}\r\n");
    for h in headers {
        if !is_upgrade && header_name(h).eq_ignore_ascii_case("connection") {
            continue;
        }
        out.push_str(h);
        out.push_str("\r\n");
    }
    if !is_upgrade {
        out.push_str("Connection: close\r\n");
    }
    out.push_str("\r\n");
    out
}

fn header_name(line: &str) -> &str {
    line.split(':').next().unwrap_or_default().trim()
}

#[cfg(test)]
mod tests {
    use super::rewrite_head;

    #[test]
    fn rewrites_version_and_connection() {
        let head = "GET /v1.52/containers/json?all=true HTTP/1.1\r\nHost: docker\r\nConnection: keep-alive\r\n\r\n";
        assert_eq!(
            rewrite_head(head, (1, 41)),
            "GET /v1.41/containers/json?all=true HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"
        );
        let old = "GET /v1.40/version HTTP/1.1\r\n\r\n";
        assert_eq!(
            rewrite_head(old, (1, 41)),
            "GET /v1.40/version HTTP/1.1\r\nConnection: close\r\n\r\n"
        );
        let upgrade =
            "POST /v1.52/exec/x/start HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n";
        assert_eq!(
            rewrite_head(upgrade, (1, 41)),
            "POST /v1.41/exec/x/start HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
        );
    }
}
