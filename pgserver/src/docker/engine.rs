//! What the Docker engine says about itself: the API version it speaks.

use std::fmt;
use std::io::{Read, Write};
use std::time::Duration;

use serde::Deserialize;

use super::endpoint::Endpoint;
use crate::error::{Error, Result};

/// A Docker API version, `major.minor`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct ApiVersion {
    major: usize,
    minor: usize,
}

impl ApiVersion {
    /// Parses `1.41`.
    pub(crate) fn parse(v: &str) -> Option<Self> {
        let (major, minor) = v.split_once('.')?;
        Some(Self {
            major: major.parse().ok()?,
            minor: minor.parse().ok()?,
        })
    }

    /// The version `bollard` (under testcontainers) puts in every request.
    pub(crate) fn required_by_testcontainers() -> Self {
        let wanted = testcontainers::bollard::API_DEFAULT_VERSION;
        Self {
            major: wanted.major_version,
            minor: wanted.minor_version,
        }
    }
}

impl fmt::Display for ApiVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)
    }
}

/// The highest API version the engine at `endpoint` speaks. Blocking.
pub(crate) fn api_version(endpoint: &Endpoint) -> Result<ApiVersion> {
    let version = query_api_version(endpoint).map_err(|e| {
        Error::unavailable(format!(
            "Docker engine at {endpoint:?} is not reachable: {e}"
        ))
    })?;
    ApiVersion::parse(&version).ok_or_else(|| {
        Error::unavailable(format!("Docker engine reports odd API version {version:?}"))
    })
}

/// The part of the engine's `/version` answer this crate reads.
#[derive(Debug, Deserialize)]
struct VersionResponse {
    #[serde(rename = "ApiVersion")]
    api_version: String,
}

/// `GET /version` without a version prefix (always accepted).
fn query_api_version(endpoint: &Endpoint) -> std::io::Result<String> {
    let mut stream = endpoint.connect_blocking(Duration::from_secs(10))?;
    // HTTP/1.0: the engine answers with a plain body, never chunked.
    stream.write_all(b"GET /version HTTP/1.0\r\nHost: docker\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    parse_version_response(&response).ok_or_else(|| {
        std::io::Error::other(format!(
            "unexpected /version response: {}",
            String::from_utf8_lossy(&response)
                .chars()
                .take(200)
                .collect::<String>()
        ))
    })
}

/// The `ApiVersion` of a successful raw HTTP `/version` response.
fn parse_version_response(response: &[u8]) -> Option<String> {
    let head_end = response.windows(4).position(|w| w == b"\r\n\r\n")?;
    let status_line = response.split(|&b| b == b'\n').next()?;
    let status_ok = String::from_utf8_lossy(status_line)
        .split_whitespace()
        .nth(1)
        == Some("200");
    if !status_ok {
        return None;
    }
    serde_json::from_slice::<VersionResponse>(&response[head_end + 4..])
        .ok()
        .map(|v| v.api_version)
}

#[cfg(test)]
mod tests {
    use super::{parse_version_response, ApiVersion};

    #[test]
    fn reads_the_api_version() {
        let ok = b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n\
            {\"Version\":\"20.10.24\",\"ApiVersion\":\"1.41\",\"MinAPIVersion\":\"1.12\"}\n";
        assert_eq!(parse_version_response(ok).as_deref(), Some("1.41"));
        let error = b"HTTP/1.0 500 Internal Server Error\r\n\r\n{\"ApiVersion\":\"1.41\"}";
        assert_eq!(parse_version_response(error), None);
        let not_json = b"HTTP/1.0 200 OK\r\n\r\nApiVersion: 1.41";
        assert_eq!(parse_version_response(not_json), None);
    }

    #[test]
    fn orders_versions() {
        let v = |s| ApiVersion::parse(s).unwrap();
        assert!(v("1.41") < v("1.52"));
        assert!(v("1.9") < v("1.10"));
        assert_eq!(v("1.41").to_string(), "1.41");
        assert!(ApiVersion::parse("1").is_none());
    }
}
