//! What a run uses: the connection, key stores, pins and known master keys,
//! from flags, the environment and the config file (`aepg.toml`).
//!
//! ```toml
//! database_url = "host=db.internal user=admin dbname=app"
//! ca_file = "ca.pem"            # TLS, required and verified against this CA
//! pins = "aepg-pins.json"       # the application's pin file, checked on every load
//!
//! [[key_stores]]
//! provider = "local"            # a directory of PEM master keys
//! directory = "keys"            # relative paths are relative to this file
//! trusted = ["cmk1.pem"]        # key paths this tool may use
//!
//! [[key_stores]]
//! provider = "pkcs11"           # HSMs and smart cards (docs/KEY_STORES.md)
//! modules = { softhsm2 = "/usr/lib/softhsm/libsofthsm2.so" }
//! pin_env = "AEPG_PKCS11_PIN"   # the default; the PIN is never in this file
//! trusted = ["pkcs11:module-name=softhsm2;token=aepg;object=cmk2"]
//!
//! [[key_stores]]
//! provider = "azure-key-vault"  # keys in Azure Key Vault
//! credential = "client-secret"  # or "managed-identity"
//! tenant = "…"
//! client_id = "…"               # the secret: AZURE_CLIENT_SECRET (client_secret_env)
//! trusted = ["https://payments.vault.azure.net/keys/cmk3/0123…"]
//!
//! [[master_keys]]               # where named master keys are, for `cek create`
//! name = "cmk1"
//! provider = "local"
//! path = "cmk1.pem"
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use aepg::catalog::Pins;
use aepg::keystore::{KeyStoreRegistry, LocalKeyStore, MasterKeyLocation, TrustedKeyPaths};
use serde::Deserialize;

use crate::args::Cli;
use crate::failure::Failure;

/// The config file's contents.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    database_url: Option<String>,
    ca_file: Option<PathBuf>,
    pins: Option<PathBuf>,
    #[serde(default)]
    key_stores: Vec<KeyStoreEntry>,
    #[serde(default)]
    master_keys: Vec<MasterKeyEntry>,
}

/// One `[[key_stores]]` entry, by provider.
#[derive(Debug, Deserialize)]
#[serde(tag = "provider", rename_all = "lowercase", deny_unknown_fields)]
enum KeyStoreEntry {
    Local {
        directory: PathBuf,
        trusted: Vec<String>,
    },
    Pkcs11 {
        /// Module names (the key paths' `module-name`) and their libraries.
        modules: BTreeMap<String, PathBuf>,
        /// The environment variable holding the user PIN.
        pin_env: Option<String>,
        /// Wrapping algorithms to try, in order, for new column keys.
        wrap_algorithms: Option<Vec<String>>,
        trusted: Vec<String>,
    },
    #[serde(rename = "azure-key-vault")]
    AzureKeyVault(AzureEntry),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MasterKeyEntry {
    name: String,
    provider: String,
    path: String,
}

/// An `azure-key-vault` entry.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(not(feature = "azure-key-vault"), allow(dead_code))]
struct AzureEntry {
    /// `client-secret` or `managed-identity`.
    credential: String,
    /// The Entra ID tenant (client-secret).
    tenant: Option<String>,
    /// The application's client id (client-secret), or a user-assigned
    /// identity's (managed-identity).
    client_id: Option<String>,
    /// The environment variable holding the client secret.
    client_secret_env: Option<String>,
    /// Another Entra ID authority host (sovereign clouds).
    authority: Option<String>,
    /// Another token endpoint for the managed identity.
    identity_endpoint: Option<String>,
    /// A CA (PEM) to trust besides the system's, relative to the config file.
    ca_file: Option<PathBuf>,
    /// Vault hosts besides Key Vault's domains (private endpoints).
    #[serde(default)]
    vault_hosts: Vec<String>,
    trusted: Vec<String>,
}

/// Everything a command may need, resolved.
#[derive(Debug)]
pub struct Settings {
    /// The connection string.
    database_url: Option<String>,
    /// The CA to verify the server with; TLS is required when set.
    pub ca_file: Option<PathBuf>,
    /// The application's pins.
    pub pins: Option<Pins>,
    /// The key stores.
    pub registry: KeyStoreRegistry,
    /// Local key stores by directory, for `cmk register --generate`.
    local_stores: Vec<(PathBuf, Arc<LocalKeyStore>)>,
    /// The PKCS#11 store, for `cmk register --generate`.
    #[cfg(feature = "pkcs11")]
    pkcs11_store: Option<aepg::keystore::Pkcs11KeyStore>,
    /// Master keys the config file places.
    master_keys: Vec<MasterKeyEntry>,
}

impl Settings {
    /// Reads the config file (the one named, else `./aepg.toml` if any) and
    /// merges the flags.
    ///
    /// # Errors
    /// A usage error: an unreadable or invalid file, a key directory that
    /// cannot be opened, an unknown provider.
    pub fn resolve(cli: &Cli) -> Result<Self, Failure> {
        let (file, base) = match &cli.config {
            Some(path) => (read_config(path)?, parent(path)),
            None => {
                let default = Path::new("aepg.toml");
                if default.exists() {
                    (read_config(default)?, PathBuf::from("."))
                } else {
                    (ConfigFile::default(), PathBuf::from("."))
                }
            }
        };
        let mut settings = Self {
            database_url: cli.database_url.clone().or(file.database_url),
            ca_file: file.ca_file.map(|path| base.join(path)),
            pins: file
                .pins
                .map(|path| read_pins(&base.join(path)))
                .transpose()?,
            registry: KeyStoreRegistry::new(),
            local_stores: Vec::new(),
            #[cfg(feature = "pkcs11")]
            pkcs11_store: None,
            master_keys: file.master_keys,
        };
        for store in file.key_stores {
            match store {
                KeyStoreEntry::Local { directory, trusted } => {
                    settings.add_local(&base.join(directory), trusted)?;
                }
                KeyStoreEntry::Pkcs11 {
                    modules,
                    pin_env,
                    wrap_algorithms,
                    trusted,
                } => settings.add_pkcs11(modules, pin_env, wrap_algorithms, trusted)?,
                KeyStoreEntry::AzureKeyVault(mut entry) => {
                    entry.ca_file = entry.ca_file.map(|file| base.join(file));
                    settings.add_azure(entry)?;
                }
            }
        }
        if let Some(directory) = &cli.key_dir {
            let trusted = if cli.trust.is_empty() {
                pem_files(directory)?
            } else {
                cli.trust.clone()
            };
            settings.add_local(directory, trusted)?;
        }
        Ok(settings)
    }

    fn add_local(&mut self, directory: &Path, trusted: Vec<String>) -> Result<(), Failure> {
        if self.local_stores.iter().any(|(dir, _)| dir == directory) {
            return Err(Failure::usage(format!(
                "key directory {} is given twice",
                directory.display()
            )));
        }
        let store = Arc::new(LocalKeyStore::open(directory).map_err(|error| {
            Failure::usage(format!("key directory {}: {error}", directory.display()))
        })?);
        self.registry
            .register(store.clone(), TrustedKeyPaths::only(trusted))
            .map_err(|error| {
                Failure::usage(format!("key directory {}: {error}", directory.display()))
            })?;
        self.local_stores.push((directory.to_owned(), store));
        Ok(())
    }

    #[cfg(feature = "pkcs11")]
    fn add_pkcs11(
        &mut self,
        modules: BTreeMap<String, PathBuf>,
        pin_env: Option<String>,
        wrap_algorithms: Option<Vec<String>>,
        trusted: Vec<String>,
    ) -> Result<(), Failure> {
        use aepg::keystore::{KeyWrapAlgorithm, PinSource, Pkcs11Config, Pkcs11KeyStore};
        let failure = |message: String| Failure::usage(format!("pkcs11 key store: {message}"));
        if self.pkcs11_store.is_some() {
            return Err(failure(
                "given twice: list every module in one entry's modules".to_owned(),
            ));
        }
        let mut config = Pkcs11Config::new();
        for (name, library) in modules {
            // A bare file name would be looked for beside the config file,
            // not where the loader looks: the path must say which library.
            if !library.is_absolute() {
                return Err(failure(format!(
                    "module {name:?}: give its library's absolute path, not {}",
                    library.display()
                )));
            }
            config = config.module(name, library);
        }
        if let Some(variable) = pin_env {
            config = config.pin(PinSource::Environment(variable));
        }
        if let Some(names) = wrap_algorithms {
            let algorithms = names
                .iter()
                .map(|name| {
                    KeyWrapAlgorithm::from_name(name).ok_or_else(|| {
                        failure(format!(
                            "unknown wrap algorithm {name:?} (known: {})",
                            KeyWrapAlgorithm::ALL.map(KeyWrapAlgorithm::name).join(", ")
                        ))
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            config = config.wrap_algorithms(algorithms);
        }
        let store = Pkcs11KeyStore::new(config).map_err(|error| failure(error.to_string()))?;
        self.registry
            .register(Arc::new(store.clone()), TrustedKeyPaths::only(trusted))
            .map_err(|error| failure(error.to_string()))?;
        self.pkcs11_store = Some(store);
        Ok(())
    }

    #[cfg(not(feature = "pkcs11"))]
    fn add_pkcs11(
        &mut self,
        _: BTreeMap<String, PathBuf>,
        _: Option<String>,
        _: Option<Vec<String>>,
        _: Vec<String>,
    ) -> Result<(), Failure> {
        Err(Failure::usage(
            "key store provider \"pkcs11\" in the config file is not in this build \
             (build aepg-cli with its pkcs11 feature)",
        ))
    }

    #[cfg(feature = "azure-key-vault")]
    fn add_azure(&mut self, entry: AzureEntry) -> Result<(), Failure> {
        use aepg::keystore::azure::{
            AzureConfig, AzureKeyVaultStore, ClientSecretCredential, ManagedIdentityCredential,
        };
        let failure =
            |message: String| Failure::usage(format!("azure-key-vault key store: {message}"));
        let mut config = match entry.credential.as_str() {
            "client-secret" => {
                let (Some(tenant), Some(client_id)) = (&entry.tenant, &entry.client_id) else {
                    return Err(failure(
                        "credential = \"client-secret\" needs tenant and client_id".to_owned(),
                    ));
                };
                let variable = entry
                    .client_secret_env
                    .as_deref()
                    .unwrap_or("AZURE_CLIENT_SECRET");
                let secret = std::env::var(variable).map_err(|_| {
                    failure(format!(
                        "the environment variable {variable} (the client secret) is not set"
                    ))
                })?;
                let mut credential = ClientSecretCredential::new(tenant, client_id, secret.into());
                if let Some(authority) = &entry.authority {
                    credential = credential.authority(authority);
                }
                AzureConfig::new(credential)
            }
            "managed-identity" => {
                let mut credential = ManagedIdentityCredential::new();
                if let Some(client_id) = &entry.client_id {
                    credential = credential.client_id(client_id);
                }
                if let Some(endpoint) = &entry.identity_endpoint {
                    credential = credential.endpoint(endpoint);
                }
                AzureConfig::new(credential)
            }
            other => {
                return Err(failure(format!(
                    "unknown credential {other:?}: use client-secret or managed-identity"
                )))
            }
        };
        for host in &entry.vault_hosts {
            config = config.vault_host(host);
        }
        if let Some(file) = &entry.ca_file {
            let pem = std::fs::read(file)
                .map_err(|error| failure(format!("ca_file {}: {error}", file.display())))?;
            config = config.trust_ca_pem(&pem);
        }
        let store = AzureKeyVaultStore::new(config).map_err(|error| failure(error.to_string()))?;
        self.registry
            .register(Arc::new(store), TrustedKeyPaths::only(entry.trusted))
            .map_err(|error| failure(error.to_string()))
    }

    #[cfg(not(feature = "azure-key-vault"))]
    fn add_azure(&mut self, _: AzureEntry) -> Result<(), Failure> {
        Err(Failure::usage(
            "key store provider \"azure-key-vault\" in the config file is not in this build \
             (build aepg-cli with its azure-key-vault feature)",
        ))
    }

    /// The PKCS#11 store to create a key in.
    ///
    /// # Errors
    /// A usage error when none is configured.
    #[cfg(feature = "pkcs11")]
    pub fn pkcs11_store(&self) -> Result<&aepg::keystore::Pkcs11KeyStore, Failure> {
        self.pkcs11_store.as_ref().ok_or_else(|| {
            Failure::usage(
                "no pkcs11 key store: add a [[key_stores]] entry with provider = \"pkcs11\"",
            )
        })
    }

    /// The connection string.
    ///
    /// # Errors
    /// A usage error when none was given.
    pub fn database_url(&self) -> Result<&str, Failure> {
        self.database_url.as_deref().ok_or_else(|| {
            Failure::usage(
                "no database: give --database-url, set DATABASE_URL, or put database_url in aepg.toml",
            )
        })
    }

    /// Where master key `name` is: the flags, else the config file.
    ///
    /// # Errors
    /// A usage error when neither says.
    pub fn master_key_location(
        &self,
        name: &str,
        provider: &str,
        path: Option<&str>,
    ) -> Result<MasterKeyLocation, Failure> {
        if let Some(path) = path {
            return Ok(MasterKeyLocation::new(provider, path));
        }
        self.master_keys
            .iter()
            .find(|entry| entry.name == name)
            .map(|entry| MasterKeyLocation::new(&entry.provider, &entry.path))
            .ok_or_else(|| {
                Failure::usage(format!(
                    "where is master key {name:?}? give --path (and --provider), or add it to \
                     [[master_keys]] in aepg.toml"
                ))
            })
    }

    /// The local store to create a key file in: the only one configured.
    ///
    /// # Errors
    /// A usage error when no local store is configured.
    pub fn local_store(&self) -> Result<&LocalKeyStore, Failure> {
        match self.local_stores.as_slice() {
            [(_, store)] => Ok(store),
            [] => Err(Failure::usage(
                "no local key store: give --key-dir, or a [[key_stores]] entry in aepg.toml",
            )),
            _ => Err(Failure::usage(
                "several local key stores are configured: give only the one to create the key in \
                 (--key-dir with no config file)",
            )),
        }
    }
}

fn parent(path: &Path) -> PathBuf {
    path.parent()
        .filter(|parent| !parent.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), Path::to_owned)
}

fn read_config(path: &Path) -> Result<ConfigFile, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| Failure::usage(format!("config file {}: {error}", path.display())))?;
    toml::from_str(&text)
        .map_err(|error| Failure::usage(format!("config file {}: {error}", path.display())))
}

fn read_pins(path: &Path) -> Result<Pins, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| Failure::usage(format!("pin file {}: {error}", path.display())))?;
    Pins::from_json(&text)
        .map_err(|error| Failure::usage(format!("pin file {}: {error}", path.display())))
}

/// The `*.pem` files of `directory`.
fn pem_files(directory: &Path) -> Result<Vec<String>, Failure> {
    let entries = std::fs::read_dir(directory).map_err(|error| {
        Failure::usage(format!("key directory {}: {error}", directory.display()))
    })?;
    let mut files: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter(|name| name.ends_with(".pem"))
        .collect();
    files.sort();
    Ok(files)
}
