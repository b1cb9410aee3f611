//! The version-rewriting proxy that lets `bollard` talk to old engines.
//!
//! It listens on a private Unix socket, rewrites the API version in each
//! request line down to the engine's maximum, forces one request per
//! connection (so that every request passes through the rewrite) and copies
//! everything else through unchanged.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::endpoint::Endpoint;
use super::engine::ApiVersion;
use crate::error::{Error, Result};
use crate::log::log;
use crate::reaper;
use crate::runtime;
use crate::shell::shell_quote;

/// Starts the proxy to `upstream` on the harness runtime; returns its
/// socket path.
pub(crate) fn start(upstream: Endpoint, max: ApiVersion) -> Result<PathBuf> {
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

async fn proxy_connection(
    mut client: tokio::net::UnixStream,
    upstream: Endpoint,
    max: ApiVersion,
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
    let mut up = upstream.connect().await?;
    up.write_all(head.as_bytes()).await?;
    up.write_all(&buf[head_end..]).await?;
    tokio::io::copy_bidirectional(&mut client, &mut up).await?;
    Ok(())
}

/// Rewrites `/vX.Y/` above `max` in the request line and, unless the request
/// is a protocol upgrade (attach/exec), forces `Connection: close` so every
/// request arrives on a fresh connection and gets rewritten.
fn rewrite_head(head: &str, max: ApiVersion) -> String {
    let mut lines = head.split("\r\n");
    let request_line = lines.next().unwrap_or_default();
    let mut parts = request_line.splitn(3, ' ');
    let method = parts.next().unwrap_or_default();
    let target = parts.next().unwrap_or_default();
    let proto = parts.next().unwrap_or_default();
    let target = match target.strip_prefix("/v").and_then(|t| t.split_once('/')) {
        Some((version, rest)) if ApiVersion::parse(version).is_some_and(|v| v > max) => {
            format!("/v{max}/{rest}")
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
    use super::{rewrite_head, ApiVersion};

    #[test]
    fn rewrites_version_and_connection() {
        let max = ApiVersion::parse("1.41").unwrap();
        let head = "GET /v1.52/containers/json?all=true HTTP/1.1\r\nHost: docker\r\nConnection: keep-alive\r\n\r\n";
        assert_eq!(
            rewrite_head(head, max),
            "GET /v1.41/containers/json?all=true HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"
        );
        let old = "GET /v1.40/version HTTP/1.1\r\n\r\n";
        assert_eq!(
            rewrite_head(old, max),
            "GET /v1.40/version HTTP/1.1\r\nConnection: close\r\n\r\n"
        );
        let upgrade =
            "POST /v1.52/exec/x/start HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n";
        assert_eq!(
            rewrite_head(upgrade, max),
            "POST /v1.41/exec/x/start HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n\r\n"
        );
    }
}
