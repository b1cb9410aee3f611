//! The idempotent, versioned install of the `aepg` schema.

use rand::TryRng;
use tokio_postgres::GenericClient;

use crate::record::CatalogId;
use crate::Error;

/// The catalog version this library installs and reads.
pub const CATALOG_VERSION: i32 = 1;

/// Serializes concurrent installs (an arbitrary constant: "aepg" in ASCII).
const INSTALL_LOCK: i64 = 0x6165_7067;

const INSTALL_V1: &str = include_str!("install_v1.sql");

/// What [`install`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InstallOutcome {
    /// The catalog was created.
    Installed,
    /// The catalog was already there at this version; nothing changed.
    AlreadyInstalled,
}

/// Installs the `aepg` schema (tables, sequences, the `aepg.ciphertext`
/// domain) in one transaction. Safe to re-run, also concurrently: an
/// installed catalog is left alone.
///
/// # Errors
/// [`Error::CatalogTooNew`] if the database has a newer catalog than this
/// library knows; database errors (e.g. missing privileges).
pub async fn install(client: &mut tokio_postgres::Client) -> Result<InstallOutcome, Error> {
    let transaction = client.transaction().await?;
    transaction
        .execute("SELECT pg_advisory_xact_lock($1)", &[&INSTALL_LOCK])
        .await?;
    let outcome = match installed_version(&transaction).await? {
        Some(found) if found > CATALOG_VERSION => {
            return Err(Error::CatalogTooNew {
                found,
                supported: CATALOG_VERSION,
            })
        }
        Some(_) => InstallOutcome::AlreadyInstalled,
        None => {
            transaction.batch_execute(INSTALL_V1).await?;
            let mut instance_id = [0u8; 16];
            rand::rngs::SysRng
                .try_fill_bytes(&mut instance_id)
                .map_err(|_| aepg_keystore::KeyStoreError::RandomnessUnavailable)?;
            transaction
                .execute(
                    "INSERT INTO aepg.catalog_version (version, instance_id) VALUES ($1, $2)",
                    &[&CATALOG_VERSION, &instance_id.as_slice()],
                )
                .await?;
            InstallOutcome::Installed
        }
    };
    transaction.commit().await?;
    Ok(outcome)
}

/// The installed catalog version, or `None` when there is no catalog.
///
/// # Errors
/// Database errors.
pub async fn installed_version(client: &impl GenericClient) -> Result<Option<i32>, Error> {
    let present: bool = client
        .query_one(
            "SELECT to_regclass('aepg.catalog_version') IS NOT NULL",
            &[],
        )
        .await?
        .try_get(0)?;
    if !present {
        return Ok(None);
    }
    let row = client
        .query_opt("SELECT version FROM aepg.catalog_version", &[])
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
        .ok_or(Error::CatalogNotInstalled)?;
    CatalogId::from_slice(row.try_get(0)?)
}

/// Checks that the catalog is installed at a version this library reads.
pub(crate) async fn require_installed(client: &impl GenericClient) -> Result<i32, Error> {
    match installed_version(client).await? {
        None => Err(Error::CatalogNotInstalled),
        Some(found) if found > CATALOG_VERSION => Err(Error::CatalogTooNew {
            found,
            supported: CATALOG_VERSION,
        }),
        Some(version) => Ok(version),
    }
}
