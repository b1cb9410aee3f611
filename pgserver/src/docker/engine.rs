//! What the Docker engine says about itself: the API version it speaks.

use std::fmt;
use std::io::{Read, Write};
use std::time::Duration;

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

/// `GET /version` without a version prefix (always accepted).
fn query_api_version(endpoint: &Endpoint) -> std::io::Result<String> {
    let mut stream = endpoint.connect_blocking(Duration::from_secs(10))?;
    stream.write_all(b"GET /version HTTP/1.0\r\nHost: docker\r\n\r\n")?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
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
