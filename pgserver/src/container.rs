//! The `container` backend: PostgreSQL in Docker through `testcontainers`.
//!
//! * Image: `AEPG_TEST_PG_IMAGE` (`name:tag`, default `postgres:17`), run with
//!   `testcontainers_modules::postgres::Postgres`'s settings (user, password
//!   and database `postgres`, readiness = "database system is ready to accept
//!   connections" on stderr and stdout) plus an explicit `5432/tcp` exposure,
//!   so images without `EXPOSE 5432` work too.
//! * A missing image is reported as such: nothing can be pulled on offline
//!   machines, so build it locally (`scripts/build-pg-images.sh`).
//! * All `testcontainers` calls run on the harness runtime
//!   ([`crate::runtime`]): testcontainers caches one Docker client per
//!   process, whose connections must not belong to a test's short-lived
//!   runtime.
//! * Clean-up: dedicated containers are removed when dropped. Every container
//!   is named `aepg-tests-<pid>-<n>-<nonce>` and registered, before it is
//!   created, with the exit watchdog ([`crate::reaper`]: `docker rm -f -v
//!   <name>` once the test process is gone), and labelled
//!   `org.aepg.tests.owner-host`/`org.aepg.tests.owner-pid`; at its first
//!   container start, each test process removes labelled containers of this
//!   host whose owner process no longer exists (e.g. left over when `docker`
//!   was not on `PATH` for the watchdog). `TESTCONTAINERS_COMMAND=keep`
//!   disables all of this.
//! * Ryuk is not involved: testcontainers-rs does not use it.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use testcontainers::core::{ContainerPort, WaitFor};
use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, Image, ImageExt};
use testcontainers_modules::postgres::Postgres;
use tokio_postgres::Config;

use crate::docker;
use crate::env_vars;
use crate::error::{Error, Result};
use crate::log::log;
use crate::pg_config;
use crate::reaper;
use crate::runtime;

const LABEL: &str = "org.aepg.tests";
const LABEL_HOST: &str = "org.aepg.tests.owner-host";
const LABEL_PID: &str = "org.aepg.tests.owner-pid";
const LABEL_ROLE: &str = "org.aepg.tests.role";
const PG_PORT: ContainerPort = ContainerPort::Tcp(5432);

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
struct PgImage {
    inner: Postgres,
    image: ImageRef,
    cmd: Vec<String>,
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

/// Whether a container is the process-wide shared server or a dedicated one.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Role {
    Shared,
    Dedicated,
}

/// A started PostgreSQL container.
#[derive(Debug)]
pub(crate) struct PgContainer {
    container: Option<Arc<ContainerAsync<PgImage>>>,
    id: String,
    image: ImageRef,
    config: Config,
    data_dir: String,
    startup: Duration,
}

impl PgContainer {
    /// Starts a container; `settings` become `-c key=value` server options.
    pub(crate) async fn start(role: Role, settings: &[(String, String)]) -> Result<Self> {
        let settings = settings.to_vec();
        runtime::run(start_on_harness_runtime(role, settings)).await?
    }

    /// Superuser connection settings (database `postgres`).
    pub(crate) fn config(&self) -> Config {
        self.config.clone()
    }

    /// The data directory inside the container.
    pub(crate) fn data_dir(&self) -> &str {
        &self.data_dir
    }

    /// How long start-up took (create + start + ready + first connection).
    pub(crate) fn startup(&self) -> Duration {
        self.startup
    }

    /// A one-line description for logs.
    pub(crate) fn description(&self) -> String {
        let id = self.id.get(..12).unwrap_or(&self.id);
        format!(
            "container {id} from {} at {}",
            self.image,
            pg_config::describe(&self.config)
        )
    }

    fn container(&self) -> Result<Arc<ContainerAsync<PgImage>>> {
        self.container
            .clone()
            .ok_or_else(|| Error::failed("container already removed"))
    }

    /// The container's output so far: stdout, then stderr (PostgreSQL logs to
    /// stderr).
    pub(crate) async fn logs(&self) -> Result<String> {
        let container = self.container()?;
        runtime::run(async move {
            let stdout = container.stdout_to_vec().await;
            let stderr = container.stderr_to_vec().await;
            match (stdout, stderr) {
                (Ok(out), Ok(err)) => Ok(format!(
                    "{}{}",
                    String::from_utf8_lossy(&out),
                    String::from_utf8_lossy(&err)
                )),
                (Err(e), _) | (_, Err(e)) => {
                    Err(Error::failed(format!("cannot read container logs: {e}")))
                }
            }
        })
        .await?
    }

    /// Stops the container (the image's stop signal shuts PostgreSQL down
    /// cleanly; SIGKILL after 60 s). Logs and files stay available until removal.
    pub(crate) async fn stop(&self) -> Result<()> {
        let container = self.container()?;
        runtime::run(async move { container.stop_with_timeout(Some(60)).await })
            .await?
            .map_err(|e| Error::failed(format!("cannot stop the container: {e}")))
    }

    /// Copies the data directory to `dest` (which must not exist) with
    /// `docker cp`. Blocking.
    pub(crate) fn copy_data_dir(&self, dest: &Path) -> Result<()> {
        let docker = docker::docker()?;
        let output = docker
            .cli()
            .arg("cp")
            .arg(format!("{}:{}", self.id, self.data_dir))
            .arg(dest)
            .output()
            .map_err(|e| Error::failed(format!("cannot run docker cp: {e}")))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(Error::failed(format!(
                "docker cp failed with {}: {}",
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            )))
        }
    }

    /// Removes the container, waiting up to a minute. Blocking; usable in `Drop`.
    pub(crate) fn remove_blocking(&mut self) -> Result<()> {
        let Some(container) = self.container.take() else {
            return Ok(());
        };
        runtime::run_blocking(
            async move {
                match Arc::try_unwrap(container) {
                    Ok(container) => container
                        .rm()
                        .await
                        .map_err(|e| Error::failed(format!("cannot remove container: {e}"))),
                    // Someone still holds it (a logs call in flight): the
                    // last reference removes it when dropped.
                    Err(_shared) => Ok(()),
                }
            },
            Duration::from_secs(60),
        )?
    }
}

impl Drop for PgContainer {
    fn drop(&mut self) {
        if let Err(e) = self.remove_blocking() {
            log(format!(
                "warning: {e} (it is removed after the process exits)"
            ));
        }
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

async fn start_on_harness_runtime(
    role: Role,
    settings: Vec<(String, String)>,
) -> Result<PgContainer> {
    let t0 = Instant::now();
    let docker = docker::docker()?;
    static SWEPT: OnceLock<()> = OnceLock::new();
    if SWEPT.set(()).is_ok() && !keep_containers() {
        remove_orphans().await;
    }
    let image = ImageRef::from_env();
    let present = image_present(&image).await?;
    if !present {
        log(format!(
            "image {image} is not present locally; trying to pull it"
        ));
    }

    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nonce = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_micros());
    let name = format!(
        "aepg-tests-{}-{}-{nonce}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    );
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
    let request = PgImage {
        inner: Postgres::default(),
        image: image.clone(),
        cmd,
    }
    .with_label(LABEL, "1")
    .with_label(LABEL_HOST, hostname())
    .with_label(LABEL_PID, std::process::id().to_string())
    .with_label(
        LABEL_ROLE,
        match role {
            Role::Shared => "shared",
            Role::Dedicated => "dedicated",
        },
    )
    .with_container_name(&name)
    .with_startup_timeout(env_vars::startup_timeout());

    // Registered before the container exists, by name, so that a test
    // process killed during start-up does not leak it either.
    if !keep_containers() {
        let command = format!(
            "{} rm -f -v {}",
            docker.cli_shell_prefix(),
            reaper::shell_quote(&name)
        );
        if let Err(e) = reaper::at_exit(&command) {
            log(format!(
                "warning: {e}; container {name} may outlive this process"
            ));
        }
    }
    let container = request.start().await.map_err(|e| {
        if present {
            Error::failed(format!("cannot start a container from {image}: {e}"))
        } else {
            Error::unavailable(format!(
                "image {image} not found locally and cannot be pulled ({e}): \
                 build it with scripts/build-pg-images.sh, or pick another image \
                 with {}",
                env_vars::PG_IMAGE
            ))
        }
    })?;
    let id = container.id().to_owned();
    let container = Arc::new(container);

    let host = container
        .get_host()
        .await
        .map_err(|e| Error::failed(format!("cannot get the container host: {e}")))?
        .to_string();
    let host = if host == "localhost" {
        "127.0.0.1".to_owned()
    } else {
        host
    };
    let port = container
        .get_host_port_ipv4(PG_PORT)
        .await
        .map_err(|e| Error::failed(format!("cannot get the mapped port: {e}")))?;
    let mut config = Config::new();
    config
        .host(&host)
        .port(port)
        .user("postgres")
        .password("postgres")
        .dbname("postgres")
        .connect_timeout(Duration::from_secs(10));

    // Errors below drop `container`, which removes it (ContainerAsync's Drop).
    let client = pg_config::connect_with_retry(&config, Duration::from_secs(30)).await?;
    let row = client
        .query_one("SELECT current_setting('data_directory')", &[])
        .await
        .map_err(|e| Error::failed(format!("cannot query data_directory: {e}")))?;
    Ok(PgContainer {
        container: Some(container),
        id,
        image,
        config,
        data_dir: row.get(0),
        startup: t0.elapsed(),
    })
}

/// Whether the image exists locally. Errors mean Docker is unusable.
async fn image_present(image: &ImageRef) -> Result<bool> {
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
