//! What a PostgreSQL container runs: the image (`AEPG_TEST_PG_IMAGE`), its
//! command line and readiness condition, and whether the image is present.

use std::borrow::Cow;
use std::fmt;

use testcontainers::core::{ContainerPort, WaitFor};
use testcontainers::Image;
use testcontainers_modules::postgres::Postgres;

use crate::env_vars;
use crate::error::{Error, Result};

/// The port PostgreSQL listens on inside the container.
pub(crate) const PG_PORT: ContainerPort = ContainerPort::Tcp(5432);

/// An image reference split into name and tag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ImageRef {
    name: String,
    tag: String,
}

impl ImageRef {
    /// The image from `AEPG_TEST_PG_IMAGE`, or the default.
    pub(crate) fn from_env() -> Self {
        let spec = env_vars::non_empty(env_vars::PG_IMAGE)
            .unwrap_or_else(|| env_vars::DEFAULT_IMAGE.to_owned());
        Self::parse(&spec)
    }

    /// Parses `name[:tag]` (a `:` before the last `/` belongs to a registry port).
    pub(crate) fn parse(spec: &str) -> Self {
        let slash = spec.rfind('/').map_or(0, |i| i + 1);
        match spec[slash..].rfind(':') {
            Some(colon) => Self {
                name: spec[..slash + colon].to_owned(),
                tag: spec[slash + colon + 1..].to_owned(),
            },
            None => Self {
                name: spec.to_owned(),
                tag: "latest".to_owned(),
            },
        }
    }
}

/// The image the container backend would use (`AEPG_TEST_PG_IMAGE` or the default).
pub fn container_image() -> String {
    ImageRef::from_env().to_string()
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.name, self.tag)
    }
}

/// `Postgres` from testcontainers-modules with a configurable image and
/// command line, and `5432/tcp` always exposed.
#[derive(Debug, Clone)]
pub(crate) struct PgImage {
    inner: Postgres,
    image: ImageRef,
    cmd: Vec<String>,
}

impl PgImage {
    /// `image` run with fast, throwaway defaults (`fsync=off`, ...), then
    /// `settings`, as `-c key=value` server options.
    pub(crate) fn new(image: ImageRef, settings: Vec<(String, String)>) -> Self {
        let mut cmd: Vec<String> = Vec::new();
        for (key, value) in [
            ("fsync", "off"),
            ("full_page_writes", "off"),
            ("max_connections", "200"),
        ]
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .chain(settings)
        {
            cmd.push("-c".to_owned());
            cmd.push(format!("{key}={value}"));
        }
        Self {
            inner: Postgres::default(),
            image,
            cmd,
        }
    }
}

impl Image for PgImage {
    fn name(&self) -> &str {
        &self.image.name
    }

    fn tag(&self) -> &str {
        &self.image.tag
    }

    fn ready_conditions(&self) -> Vec<WaitFor> {
        self.inner.ready_conditions()
    }

    fn env_vars(
        &self,
    ) -> impl IntoIterator<Item = (impl Into<Cow<'_, str>>, impl Into<Cow<'_, str>>)> {
        self.inner.env_vars()
    }

    fn cmd(&self) -> impl IntoIterator<Item = impl Into<Cow<'_, str>>> {
        self.cmd.iter().map(String::as_str)
    }

    fn expose_ports(&self) -> &[ContainerPort] {
        &[PG_PORT]
    }
}

/// Whether the image exists locally. Errors mean Docker is unusable.
pub(crate) async fn image_present(image: &ImageRef) -> Result<bool> {
    let docker = testcontainers::core::client::docker_client_instance()
        .await
        .map_err(|e| Error::unavailable(format!("cannot create a Docker client: {e}")))?;
    match docker.inspect_image(&image.to_string()).await {
        Ok(_) => Ok(true),
        Err(testcontainers::bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }) => Ok(false),
        Err(e) => Err(Error::unavailable(format!(
            "cannot inspect image {image} through the Docker API: {e}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::ImageRef;

    #[test]
    fn parses_image_refs() {
        assert_eq!(ImageRef::parse("postgres:17").to_string(), "postgres:17");
        assert_eq!(ImageRef::parse("postgres").to_string(), "postgres:latest");
        let r = ImageRef::parse("registry:5000/team/pg:15-alpine");
        assert_eq!(r.name, "registry:5000/team/pg");
        assert_eq!(r.tag, "15-alpine");
        assert_eq!(ImageRef::parse("registry:5000/pg").tag, "latest");
    }
}
