//! The idempotent, versioned install of the `aepg` schema, and the catalog
//! generation every administrative change raises.

use rand::TryRng;
use tokio_postgres::GenericClient;

use super::error::CatalogError;
use crate::record::CatalogId;
use crate::Error;

/// The catalog version this library installs and reads.
pub const CATALOG_VERSION: i32 = 5;

/// The channel on which administrative changes announce the new catalog
/// generation (`NOTIFY aepg_catalog, '<generation>'`).
pub const CATALOG_CHANNEL: &str = "aepg_catalog";

/// Serializes concurrent installs (an arbitrary constant: "aepg" in ASCII).
const INSTALL_LOCK: i64 = 0x6165_7067;

/// Each version's script, run in order from the installed version up.
const SCRIPTS: &[(i32, &str)] = &[
    (1, include_str!("install_v1.sql")),
    (2, include_str!("upgrade_v2.sql")),
    (3, include_str!("upgrade_v3.sql")),
    (4, include_str!("upgrade_v4.sql")),
    (5, include_str!("upgrade_v5.sql")),
];

/// What [`install`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum InstallOutcome {
    /// The catalog was created.
    Installed,
    /// An older catalog was upgraded from this version.
    Upgraded {
        /// The version found.
        from: i32,
    },
    /// The catalog was already there at this version; nothing changed.
    AlreadyInstalled,
}

/// Installs the `aepg` schema (tables, the `aepg.ciphertext` domain, its
/// equality operators) in one transaction, or upgrades an older one. Safe
/// to re-run, also concurrently: an installed catalog is left alone.
///
/// An upgraded catalog has no manifests yet: clients refuse it until an
/// administrator signs them ([`CatalogAdmin::sign_manifests`](super::CatalogAdmin::sign_manifests)).
///
/// # Errors
/// [`CatalogError::TooNew`] if the database has a newer catalog than this
/// library knows; database errors (e.g. missing privileges).
pub async fn install(client: &mut tokio_postgres::Client) -> Result<InstallOutcome, Error> {
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&INSTALL_LOCK])
        .await?;
    let found = installed_version(&transaction).await?;
    let outcome = match found {
        Some(found) if found > CATALOG_VERSION => {
            return Err(CatalogError::TooNew {
                found,
                supported: CATALOG_VERSION,
            }
            .into())
        }
        Some(found) if found == CATALOG_VERSION => InstallOutcome::AlreadyInstalled,
        Some(from) => InstallOutcome::Upgraded { from },
        None => InstallOutcome::Installed,
    };
    for (version, script) in SCRIPTS {
        if found.is_some_and(|found| found >= *version) {
            continue;
        }
        transaction.batch_execute(script).await?;
        if *version == 1 {
            let mut instance_id = [0u8; 16];
            rand::rngs::SysRng
                .try_fill_bytes(&mut instance_id)
                .map_err(|_| aepg_keystore::KeyStoreError::RandomnessUnavailable)?;
            transaction
                .execute(
                    "INSERT INTO aepg.catalog_version (version, instance_id) VALUES (1, $1)",
                    &[&instance_id.as_slice()],
                )
                .await?;
        }
    }
    transaction.commit().await?;
    Ok(outcome)
}

/// The installed catalog version, or `None` when there is no catalog.
///
/// # Errors
/// Database errors.
pub async fn installed_version(client: &impl GenericClient) -> Result<Option<i32>, Error> {
    let present: bool = client
        .query_typed_one(
            "SELECT pg_catalog.to_regclass('aepg.catalog_version') IS NOT NULL",
            &[],
        )
        .await?
        .try_get(0)?;
    if !present {
        return Ok(None);
    }
    let row = client
        .query_typed_opt("SELECT version FROM aepg.catalog_version", &[])
        .await?;
    Ok(row.map(|row| row.try_get(0)).transpose()?)
}

/// The identity of the installed catalog, which every signature covers.
///
/// # Errors
/// A missing catalog, a malformed identity, database errors.
pub async fn catalog_id(client: &impl GenericClient) -> Result<CatalogId, Error> {
    let row = client
        .query_opt("SELECT instance_id FROM aepg.catalog_version", &[])
        .await?
        .ok_or(CatalogError::NotInstalled)?;
    Ok(CatalogId::from_slice(row.try_get(0)?)?)
}

/// Checks that the catalog is installed at the version this library reads.
pub(crate) async fn require_installed(client: &impl GenericClient) -> Result<i32, Error> {
    supported_version(installed_version(client).await?)
}

/// The installed version `found` (`None`: no catalog), if this library
/// reads it.
///
/// # Errors
/// [`CatalogError::NotInstalled`], [`CatalogError::TooNew`],
/// [`CatalogError::TooOld`].
pub(crate) fn supported_version(found: Option<i32>) -> Result<i32, Error> {
    match found {
        None => Err(CatalogError::NotInstalled.into()),
        Some(found) if found > CATALOG_VERSION => Err(CatalogError::TooNew {
            found,
            supported: CATALOG_VERSION,
        }
        .into()),
        Some(found) if found < CATALOG_VERSION => Err(CatalogError::TooOld {
            found,
            supported: CATALOG_VERSION,
        }
        .into()),
        Some(version) => Ok(version),
    }
}

/// The catalog's identity and generation, and whether they are read from
/// a transaction snapshot that may predate the latest change (inside a
/// repeatable-read or serializable transaction, after its first statement),
/// in one round trip. Operators qualified: the search path is the server's.
pub(crate) const CATALOG_STATE_QUERY: &str = "SELECT instance_id, generation, \
     pg_catalog.current_setting('transaction_isolation') OPERATOR(pg_catalog.<>) 'read committed' \
     AND pg_catalog.transaction_timestamp() OPERATOR(pg_catalog.<>) pg_catalog.statement_timestamp() \
     FROM aepg.catalog_version";
