//! Where the Docker engine listens, and connecting to it.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};

use crate::error::{Error, Result};

/// An engine endpoint this crate can talk to directly.
#[derive(Debug, Clone)]
pub(crate) enum Endpoint {
    /// A Unix socket (`unix://` or one of the default sockets).
    Unix(PathBuf),
    /// A plain TCP address (`tcp://host:port` or `http://host:port`).
    Tcp(String),
}

/// A blocking connection to an endpoint.
pub(crate) trait BlockingStream: Read + Write {}
impl<T: Read + Write> BlockingStream for T {}

/// An asynchronous connection to an endpoint.
pub(crate) trait AsyncStream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> AsyncStream for T {}

impl Endpoint {
    /// The engine endpoint for `docker_host` (the `DOCKER_HOST` value, `None`
    /// when unset). `Ok(None)`: a `DOCKER_HOST` this crate cannot reach
    /// directly (`https://`, `ssh://`, ...), left to testcontainers.
    pub(crate) fn discover(docker_host: Option<&str>) -> Result<Option<Self>> {
        match docker_host {
            Some(host) => Ok(Self::parse(host)),
            None => default_socket()
                .map(|p| Some(Endpoint::Unix(p)))
                .ok_or_else(|| {
                    Error::unavailable(
                        "no Docker socket found (DOCKER_HOST unset, /var/run/docker.sock missing)",
                    )
                }),
        }
    }

    fn parse(host: &str) -> Option<Self> {
        if let Some(path) = host.strip_prefix("unix://") {
            return Some(Endpoint::Unix(PathBuf::from(path)));
        }
        host.strip_prefix("tcp://")
            .or_else(|| host.strip_prefix("http://"))
            .map(|addr| Endpoint::Tcp(addr.trim_end_matches('/').to_owned()))
    }

    /// Connects synchronously; reads time out after `read_timeout`.
    pub(crate) fn connect_blocking(
        &self,
        read_timeout: Duration,
    ) -> std::io::Result<Box<dyn BlockingStream>> {
        Ok(match self {
            Endpoint::Unix(path) => {
                let s = std::os::unix::net::UnixStream::connect(path)?;
                s.set_read_timeout(Some(read_timeout))?;
                Box::new(s)
            }
            Endpoint::Tcp(addr) => {
                let s = std::net::TcpStream::connect(addr)?;
                s.set_read_timeout(Some(read_timeout))?;
                Box::new(s)
            }
        })
    }

    /// Connects on the current Tokio runtime.
    pub(crate) async fn connect(&self) -> std::io::Result<Box<dyn AsyncStream>> {
        Ok(match self {
            Endpoint::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
            Endpoint::Tcp(addr) => Box::new(tokio::net::TcpStream::connect(addr).await?),
        })
    }
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

#[cfg(test)]
mod tests {
    use super::Endpoint;

    #[test]
    fn parses_docker_host() {
        assert!(matches!(
            Endpoint::parse("unix:///run/docker.sock"),
            Some(Endpoint::Unix(p)) if p.to_str() == Some("/run/docker.sock")
        ));
        assert!(matches!(
            Endpoint::parse("tcp://10.0.0.1:2375/"),
            Some(Endpoint::Tcp(a)) if a == "10.0.0.1:2375"
        ));
        assert!(Endpoint::parse("ssh://me@host").is_none());
    }
}
