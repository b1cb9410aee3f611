//! Starting (or, for `url`, connecting to) one server of a given backend.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use tokio_postgres::Config;

use crate::backend::BackendKind;
use crate::container::{PgContainer, Role};
use crate::env_vars;
use crate::error::{Error, Result};
use crate::local::LocalCluster;
use crate::pg_config;
use crate::runtime;
use crate::server::{Resource, Server, ServerInfo};

/// Starts (or, for `url`, connects to) a server of the given backend.
pub(crate) async fn launch(
    backend: BackendKind,
    role: Role,
    settings: &[(String, String)],
) -> Result<Server> {
    let (admin, description, data_dir, resource) = match backend {
        BackendKind::Url => {
            let url = env_vars::non_empty(env_vars::DATABASE_URL).ok_or_else(|| {
                Error::unavailable(format!("{} is not set", env_vars::DATABASE_URL))
            })?;
            let admin: Config = url.parse().map_err(|e| {
                Error::failed(format!("{} does not parse: {e}", env_vars::DATABASE_URL))
            })?;
            let description = format!("server at {}", pg_config::describe(&admin));
            (admin, description, String::new(), Resource::Url)
        }
        BackendKind::Container => {
            // Once the engine or image proved unavailable, later servers of
            // this process skip the (possibly slow) attempt.
            static UNAVAILABLE: OnceLock<Error> = OnceLock::new();
            if let Some(e) = UNAVAILABLE.get() {
                return Err(e.clone());
            }
            let container = match PgContainer::start(role, settings).await {
                Ok(container) => container,
                Err(e) => {
                    if e.is_unavailable() {
                        let _ = UNAVAILABLE.set(e.clone());
                    }
                    return Err(e);
                }
            };
            let description = format!(
                "{} (started in {:.1?})",
                container.description(),
                container.startup()
            );
            (
                container.config(),
                description,
                container.data_dir().to_owned(),
                Resource::Container(Box::new(container)),
            )
        }
        BackendKind::Local => {
            let settings = settings.to_vec();
            let t0 = Instant::now();
            let cluster = tokio::task::spawn_blocking(move || LocalCluster::start(&settings))
                .await
                .map_err(|e| Error::failed(format!("local cluster start panicked: {e}")))??;
            let description = format!(
                "{} (started in {:.1?})",
                cluster.description(),
                t0.elapsed()
            );
            (
                cluster.config(),
                description,
                cluster.data_dir().to_string_lossy().into_owned(),
                Resource::Local(cluster),
            )
        }
    };
    let (version_num, version) = {
        let config = admin.clone();
        runtime::run(async move {
            let client = pg_config::connect_with_retry(&config, Duration::from_secs(10)).await?;
            pg_config::server_version(&client).await
        })
        .await??
    };
    Ok(Server {
        admin,
        info: ServerInfo {
            backend,
            version_num,
            version,
            description,
        },
        data_dir,
        resource,
    })
}
