//! `cmk register|list`, `cek create|list|drop`.

use aepg::keystore::{KeyStoreError, MasterKeyLocation};
use serde_json::json;

use super::catalog::{admin, load};
use crate::args::LocationArgs;
use crate::config::Settings;
use crate::connect;
use crate::failure::Failure;
use crate::output::{table, Output};

/// RSA size of master keys `cmk register --generate` creates.
const GENERATED_KEY_BITS: usize = 3072;

/// `aepg cmk register NAME`
pub async fn register_master_key(
    settings: &Settings,
    output: Output,
    name: &str,
    location: &LocationArgs,
    generate: bool,
) -> Result<(), Failure> {
    let location =
        settings.master_key_location(name, &location.provider, location.path.as_deref())?;
    let mut generated = false;
    if generate {
        // Only a key this run may use is created: a refused path leaves no
        // key behind.
        settings
            .registry
            .check(&location)
            .map_err(|error| Failure::usage(format!("{location}: {error}")))?;
        generated = generate_key(settings, &location).await?;
    }
    let mut client = connect::plain(settings).await?;
    admin(settings)
        .register_master_key(&mut client, name, &location)
        .await?;
    output.result(
        || {
            let created = if generated { " (key file created)" } else { "" };
            format!("master key {name:?} registered at {location}{created}")
        },
        || json!({ "name": name, "provider": location.provider, "key_path": location.key_path, "generated": generated }),
    );
    Ok(())
}

/// Creates the master key at `location` unless one is there; whether it did.
async fn generate_key(settings: &Settings, location: &MasterKeyLocation) -> Result<bool, Failure> {
    let failed = |error: KeyStoreError| Failure::failed(format!("creating {location}: {error}"));
    match location.provider.as_str() {
        "local" => {
            let store = settings.local_store()?;
            if store.root().join(&location.key_path).exists() {
                return Ok(false);
            }
            store
                .generate_key(&location.key_path, GENERATED_KEY_BITS)
                .await
                .map_err(failed)?;
            Ok(true)
        }
        #[cfg(feature = "pkcs11")]
        "pkcs11" => match settings
            .pkcs11_store()?
            .generate_key(&location.key_path, GENERATED_KEY_BITS)
            .await
        {
            Ok(_) => Ok(true),
            Err(KeyStoreError::KeyExists { .. }) => Ok(false),
            Err(error) => Err(failed(error)),
        },
        _ => Err(Failure::usage(
            "--generate creates keys in local and pkcs11 key stores only; create the key in \
             its store",
        )),
    }
}

/// `aepg cmk list`
pub async fn list_master_keys(settings: &Settings, output: Output) -> Result<(), Failure> {
    let (_client, catalog) = load(settings).await?;
    let keys: Vec<_> = catalog
        .master_keys()
        .iter()
        .map(|(name, location)| (name, location, catalog.manifest_generation(name)))
        .collect();
    output.result(
        || {
            let rows: Vec<Vec<String>> = keys
                .iter()
                .map(|(name, location, generation)| {
                    vec![
                        (*name).clone(),
                        location.to_string(),
                        generation.map_or_else(|| "none verified".to_owned(), |g| g.to_string()),
                    ]
                })
                .collect();
            table(&["NAME", "LOCATION", "MANIFEST GENERATION"], &rows)
        },
        || {
            json!(keys
                .iter()
                .map(|(name, location, generation)| json!({
                    "name": name,
                    "provider": location.provider,
                    "key_path": location.key_path,
                    "manifest_generation": generation,
                }))
                .collect::<Vec<_>>())
        },
    );
    Ok(())
}

/// `aepg cek create --cmk NAME`
pub async fn create_column_key(
    settings: &Settings,
    output: Output,
    master_key: &str,
    location: &LocationArgs,
) -> Result<(), Failure> {
    let location =
        settings.master_key_location(master_key, &location.provider, location.path.as_deref())?;
    let mut client = connect::plain(settings).await?;
    let id = admin(settings)
        .create_column_key(&mut client, master_key, &location)
        .await?;
    output.result(
        || format!("column key {id} created under master key {master_key:?}"),
        || json!({ "id": id, "master_key": master_key }),
    );
    Ok(())
}

/// `aepg cek list`
pub async fn list_column_keys(settings: &Settings, output: Output) -> Result<(), Failure> {
    let (_client, catalog) = load(settings).await?;
    let keys: Vec<(u32, Vec<String>, Vec<String>)> = catalog
        .column_keys()
        .map(|(id, master_keys)| {
            let users = catalog
                .settings()
                .values()
                .filter(|setting| setting.key_id == id)
                .map(|setting| setting.name.clone())
                .collect();
            (
                id,
                master_keys.into_iter().map(str::to_owned).collect(),
                users,
            )
        })
        .collect();
    output.result(
        || {
            let rows: Vec<Vec<String>> = keys
                .iter()
                .map(|(id, master_keys, users)| {
                    vec![id.to_string(), master_keys.join(", "), users.join(", ")]
                })
                .collect();
            table(&["ID", "MASTER KEYS", "SETTINGS"], &rows)
        },
        || {
            json!(keys
                .iter()
                .map(|(id, master_keys, users)| json!({
                    "id": id,
                    "master_keys": master_keys,
                    "settings": users,
                }))
                .collect::<Vec<_>>())
        },
    );
    Ok(())
}

/// `aepg cek drop ID`
pub async fn drop_column_key(settings: &Settings, output: Output, id: u32) -> Result<(), Failure> {
    let mut client = connect::plain(settings).await?;
    admin(settings).drop_column_key(&mut client, id).await?;
    output.result(
        || format!("column key {id} dropped"),
        || json!({ "id": id, "dropped": true }),
    );
    Ok(())
}
