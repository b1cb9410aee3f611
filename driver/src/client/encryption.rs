//! What all clients of one pool share: key stores, the verified catalog and
//! the unwrapped column keys, each loaded once and refreshed on a TTL.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use aepg_keystore::KeyStoreRegistry;

use crate::catalog::{load_catalog, Catalog, PinnedColumn};
use crate::cell::CellCipher;
use crate::record::CatalogId;
use crate::Error;

/// Default time a loaded catalog is trusted before it is read again.
pub const DEFAULT_CATALOG_TTL: Duration = Duration::from_secs(5 * 60);
/// Shortest time between two reloads caused by unknown ids in cells.
pub const MIN_ON_DEMAND_RELOAD: Duration = Duration::from_secs(1);
/// Default time an unwrapped column key is kept before the key store is asked again.
pub const DEFAULT_KEY_TTL: Duration = Duration::from_secs(2 * 60 * 60);

/// How clients encrypt: the key stores, the pinned columns, the cache lifetimes.
#[derive(Clone, Debug)]
pub struct EncryptionConfig {
    registry: KeyStoreRegistry,
    pins: Vec<PinnedColumn>,
    expected_catalog: Option<CatalogId>,
    catalog_ttl: Duration,
    key_ttl: Duration,
}

impl EncryptionConfig {
    /// Encryption with the master keys of `registry`, no pins, default TTLs.
    pub fn new(registry: KeyStoreRegistry) -> Self {
        Self {
            registry,
            pins: Vec::new(),
            expected_catalog: None,
            catalog_ttl: DEFAULT_CATALOG_TTL,
            key_ttl: DEFAULT_KEY_TTL,
        }
    }

    /// Requires `pin` to be encrypted as pinned whenever the catalog is loaded.
    pub fn pin(mut self, pin: PinnedColumn) -> Self {
        self.pins.push(pin);
        self
    }

    /// Requires the database's catalog to be the one with identity `id`
    /// ([`Catalog::id`]): a catalog replaced wholesale by another database's
    /// (whose records would verify under a shared master key) is then refused.
    pub fn expect_catalog(mut self, id: CatalogId) -> Self {
        self.expected_catalog = Some(id);
        self
    }

    /// How long a loaded catalog is used before it is read again (default 5 min).
    pub fn catalog_ttl(mut self, ttl: Duration) -> Self {
        self.catalog_ttl = ttl;
        self
    }

    /// How long an unwrapped column key is kept (default 2 h; zero = ask the
    /// key store on every use). Revoking a master key cuts readers off within
    /// this time.
    pub fn key_ttl(mut self, ttl: Duration) -> Self {
        self.key_ttl = ttl;
        self
    }
}

struct LoadedCatalog {
    catalog: Arc<Catalog>,
    loaded_at: Instant,
}

/// The encryption state shared by every client of one pool or configuration.
///
/// Create one with [`Encryption::new`] and hand it to each
/// [`Client`](crate::Client): the catalog is then loaded and verified once,
/// not once per connection, and column keys are unwrapped once per TTL.
pub struct Encryption {
    config: EncryptionConfig,
    catalog: RwLock<Option<LoadedCatalog>>,
    /// Serializes catalog loads so concurrent clients wait for one load.
    loading: tokio::sync::Mutex<()>,
    keys: Mutex<HashMap<u32, (Arc<CellCipher>, Instant)>>,
}

impl Encryption {
    /// Shared encryption state for `config`.
    pub fn new(config: EncryptionConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            catalog: RwLock::new(None),
            loading: tokio::sync::Mutex::new(()),
            keys: Mutex::new(HashMap::new()),
        })
    }

    /// The key stores.
    pub fn registry(&self) -> &KeyStoreRegistry {
        &self.config.registry
    }

    /// The current catalog, loading it through `client` when there is none
    /// or it is older than the catalog TTL.
    ///
    /// # Errors
    /// As [`load_catalog`].
    pub async fn catalog(&self, client: &tokio_postgres::Client) -> Result<Arc<Catalog>, Error> {
        if let Some(catalog) = self.fresh_catalog() {
            return Ok(catalog);
        }
        let _loading = self.loading.lock().await;
        // Another client may have loaded it while this one waited.
        if let Some(catalog) = self.fresh_catalog() {
            return Ok(catalog);
        }
        self.load(client).await
    }

    /// Loads the catalog again now: after an administrative change, or when
    /// a cell names a setting or key the loaded catalog does not have.
    ///
    /// # Errors
    /// As [`load_catalog`].
    pub async fn refresh_catalog(
        &self,
        client: &tokio_postgres::Client,
    ) -> Result<Arc<Catalog>, Error> {
        let _loading = self.loading.lock().await;
        self.load(client).await
    }

    /// Reloads the catalog because a cell names a setting or key it lacks,
    /// unless it was loaded less than [`MIN_ON_DEMAND_RELOAD`] ago: cells
    /// written by an adversary must not turn every query into a reload.
    pub(crate) async fn reload_for_unknown_id(
        &self,
        client: &tokio_postgres::Client,
    ) -> Result<Arc<Catalog>, Error> {
        let _loading = self.loading.lock().await;
        let recent = {
            let slot = self
                .catalog
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            slot.as_ref()
                .filter(|loaded| loaded.loaded_at.elapsed() < MIN_ON_DEMAND_RELOAD)
                .map(|loaded| loaded.catalog.clone())
        };
        match recent {
            Some(catalog) => Ok(catalog),
            None => self.load(client).await,
        }
    }

    async fn load(&self, client: &tokio_postgres::Client) -> Result<Arc<Catalog>, Error> {
        let catalog = load_catalog(client, &self.config.registry, &self.config.pins).await?;
        if let Some(expected) = self.config.expected_catalog {
            if catalog.id() != expected {
                return Err(Error::CatalogMismatch {
                    expected: expected.to_string(),
                    found: catalog.id().to_string(),
                });
            }
        }
        let catalog = Arc::new(catalog);
        let mut slot = self
            .catalog
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *slot = Some(LoadedCatalog {
            catalog: catalog.clone(),
            loaded_at: Instant::now(),
        });
        Ok(catalog)
    }

    fn fresh_catalog(&self) -> Option<Arc<Catalog>> {
        let slot = self
            .catalog
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        slot.as_ref()
            .filter(|loaded| loaded.loaded_at.elapsed() < self.config.catalog_ttl)
            .map(|loaded| loaded.catalog.clone())
    }

    /// The cipher of column key `key_id`, unwrapping the key through its
    /// master key's store when it is not cached (or the key TTL is zero).
    ///
    /// # Errors
    /// An unknown key; the key store's refusal for every wrapped value.
    pub(crate) async fn cipher(
        &self,
        catalog: &Catalog,
        key_id: u32,
    ) -> Result<Arc<CellCipher>, Error> {
        if let Some(cipher) = self.cached_cipher(key_id) {
            return Ok(cipher);
        }
        let values = catalog
            .column_keys
            .get(&key_id)
            .ok_or_else(|| Error::NotInCatalog {
                kind: "column encryption key",
                name: key_id.to_string(),
            })?;
        let mut last_error = None;
        for value in values {
            match value.open(&self.config.registry, &catalog.id()).await {
                Ok(key) => {
                    let cipher = Arc::new(CellCipher::new(key_id, &key));
                    if !self.config.key_ttl.is_zero() {
                        self.lock_keys()
                            .insert(key_id, (cipher.clone(), Instant::now()));
                    }
                    return Ok(cipher);
                }
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or(Error::NotInCatalog {
            kind: "wrapped value of column encryption key",
            name: key_id.to_string(),
        }))
    }

    fn cached_cipher(&self, key_id: u32) -> Option<Arc<CellCipher>> {
        let mut keys = self.lock_keys();
        match keys.get(&key_id) {
            Some((cipher, cached_at)) if cached_at.elapsed() < self.config.key_ttl => {
                Some(cipher.clone())
            }
            Some(_) => {
                keys.remove(&key_id);
                None
            }
            None => None,
        }
    }

    fn lock_keys(&self) -> std::sync::MutexGuard<'_, HashMap<u32, (Arc<CellCipher>, Instant)>> {
        // Every critical section is one map operation: a poisoned map is consistent.
        self.keys
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryption")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}
