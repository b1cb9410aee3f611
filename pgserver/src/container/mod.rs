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
//!   <name>` once the process is gone), and labelled
//!   `org.aepg.tests.owner-host`/`org.aepg.tests.owner-pid`; at its first
//!   container start, each process removes labelled containers of this
//!   host whose owner process no longer exists (e.g. left over when `docker`
//!   was not on `PATH` for the watchdog). `TESTCONTAINERS_COMMAND=keep`
//!   disables all of this.
//! * Ryuk is not involved: testcontainers-rs does not use it.
//!
//! [`image`] says what a container runs, [`ownership`] whose it is and how
//! it is cleaned up; this module starts, reads, stops and removes it.

mod image;
mod ownership;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use testcontainers::runners::AsyncRunner;
use testcontainers::{ContainerAsync, ImageExt};
use tokio_postgres::Config;

use self::image::{image_present, ImageRef, PgImage, PG_PORT};
use crate::docker;
use crate::env_vars;
use crate::error::{Error, Result};
use crate::log::log;
use crate::pg_config;
use crate::runtime;

pub use self::image::container_image;
pub(crate) use self::ownership::Role;

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

async fn start_on_harness_runtime(
    role: Role,
    settings: Vec<(String, String)>,
) -> Result<PgContainer> {
    let t0 = Instant::now();
    let docker = docker::docker()?;
    ownership::remove_orphans_once().await;
    let image = ImageRef::from_env();
    let present = image_present(&image).await?;
    if !present {
        log(format!(
            "image {image} is not present locally; trying to pull it"
        ));
    }

    let name = ownership::new_name();
    let request = PgImage::new(image.clone(), settings)
        .with_labels(ownership::labels(role))
        .with_container_name(&name)
        .with_startup_timeout(env_vars::startup_timeout());

    ownership::remove_at_exit(docker, &name);
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
