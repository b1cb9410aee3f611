//! An encrypted database ready for aepg's end-to-end suites: the catalog
//! installed in a fresh database, a column master key (in process memory,
//! or in a SoftHSM2 token: [`crate::key_store`]), a column key, and helpers
//! to add settings, tables and clients.

use std::sync::{Arc, OnceLock};

use aepg::catalog::{install, CatalogAdmin, NewEncryptionSetting};
use aepg::cell::{EncryptionMode, PaddingPolicy, PlaintextType};
use aepg::{Client, ColumnName, Encryption, EncryptionConfig};
use aepg_keystore::{KeyStoreRegistry, MasterKeyLocation, TrustedKeyPaths};
use rsa::pkcs8::{EncodePrivateKey, LineEnding};

use crate::key_store::FixtureKeyStore;
use crate::TestDatabase;

/// Name of the fixture's column master key in the catalog and its key path.
pub const MASTER_KEY: &str = "cmk1";

/// A 2048-bit RSA key generated once per test process: key generation is
/// the slowest part of setting up a fixture, and one key serves every test.
/// Its PKCS#8 PEM (a test key: for putting it back in a store).
pub fn master_key_pem() -> &'static str {
    static PEM: OnceLock<String> = OnceLock::new();
    PEM.get_or_init(|| {
        let key = rsa::PrivateKey::new(&mut rand::rngs::SysRng, 2048)
            .unwrap_or_else(|error| panic!("generating the fixture's master key: {error}"));
        key.to_pkcs8_pem(LineEnding::LF)
            .unwrap_or_else(|error| panic!("encoding the fixture's master key: {error}"))
            .to_string()
    })
}

/// A database with the aepg catalog, one master key and one column key.
pub struct EncryptedDatabase {
    /// The database.
    pub database: TestDatabase,
    /// A plain tokio-postgres connection: what the server sees.
    pub plain: tokio_postgres::Client,
    /// A second plain connection for [`CatalogAdmin`] calls, which run in
    /// transactions of their own.
    admin_connection: tokio::sync::Mutex<tokio_postgres::Client>,
    /// The key store holding the master key (counts its operations).
    pub store: Arc<FixtureKeyStore>,
    /// Where the master key is: `memory:cmk1`, or a key path in a token.
    pub master_key: MasterKeyLocation,
    /// The registry trusting the master key.
    pub registry: KeyStoreRegistry,
    /// Catalog administration with that registry.
    pub admin: CatalogAdmin,
    /// The column key created at start.
    pub key_id: u32,
}

impl EncryptedDatabase {
    /// A fresh database, catalog installed, master key [`MASTER_KEY`]
    /// registered, one column key created.
    ///
    /// # Panics
    /// When any step fails: this is a test fixture.
    pub async fn new(label: &str) -> Self {
        Self::on(TestDatabase::new(label).await).await
    }

    /// Like [`new`](Self::new), in a database the caller made (on a
    /// [`DedicatedServer`](crate::DedicatedServer), say).
    ///
    /// # Panics
    /// When any step fails: this is a test fixture.
    pub async fn on(database: TestDatabase) -> Self {
        let key = FixtureKeyStore::with_key(MASTER_KEY, master_key_pem(), database.name()).await;
        Self::with_key(database, key).await
    }

    /// Like [`on`](Self::on), with the master key [`MASTER_KEY`] in `key`'s
    /// store at its location, whatever the environment chose.
    ///
    /// # Panics
    /// When any step fails: this is a test fixture.
    pub async fn with_key(
        database: TestDatabase,
        (store, master_key): (FixtureKeyStore, MasterKeyLocation),
    ) -> Self {
        let plain = database.connect().await;
        let mut admin_connection = database.connect().await;
        install(&mut admin_connection)
            .await
            .unwrap_or_else(|error| panic!("install: {error}"));
        let store = Arc::new(store);
        let mut registry = KeyStoreRegistry::new();
        registry
            .register(
                store.clone(),
                TrustedKeyPaths::only([master_key.key_path.clone()]),
            )
            .unwrap_or_else(|error| panic!("register store: {error}"));
        let admin = CatalogAdmin::new(registry.clone());
        admin
            .register_master_key(&mut admin_connection, MASTER_KEY, &master_key)
            .await
            .unwrap_or_else(|error| panic!("register master key: {error}"));
        let key_id = admin
            .create_column_key(&mut admin_connection, MASTER_KEY, &master_key)
            .await
            .unwrap_or_else(|error| panic!("create column key: {error}"));
        Self {
            database,
            plain,
            admin_connection: tokio::sync::Mutex::new(admin_connection),
            store,
            master_key,
            registry,
            admin,
            key_id,
        }
    }

    /// Creates setting `name` for values of `sql_type` in `mode` under the fixture's column key.
    ///
    /// # Panics
    /// When it cannot be created.
    pub async fn setting(&self, name: &str, sql_type: &str, mode: EncryptionMode) -> u32 {
        self.setting_with_padding(name, sql_type, mode, None).await
    }

    /// [`setting`](Self::setting) with an explicit padding policy.
    ///
    /// # Panics
    /// When it cannot be created.
    pub async fn setting_with_padding(
        &self,
        name: &str,
        sql_type: &str,
        mode: EncryptionMode,
        padding: Option<PaddingPolicy>,
    ) -> u32 {
        let plaintext_type = PlaintextType::parse(sql_type)
            .unwrap_or_else(|error| panic!("type {sql_type}: {error}"));
        let mut new = NewEncryptionSetting::new(name, plaintext_type, mode, self.key_id);
        if let Some(padding) = padding {
            new = new.with_padding(padding);
        }
        self.admin
            .create_setting(&mut *self.admin_connection().await, &new)
            .await
            .unwrap_or_else(|error| panic!("create setting {name}: {error}"))
    }

    /// Runs `ddl` on the plain connection, then assigns each
    /// `(table, column, setting)` in schema `public`.
    ///
    /// # Panics
    /// When a step fails.
    pub async fn table(&self, ddl: &str, assignments: &[(&str, &str, &str)]) {
        self.plain
            .batch_execute(ddl)
            .await
            .unwrap_or_else(|error| panic!("DDL failed: {error}"));
        for (table, column, setting) in assignments {
            let column = ColumnName::new("public", *table, *column);
            self.admin
                .assign_column(&mut *self.admin_connection().await, &column, setting)
                .await
                .unwrap_or_else(|error| panic!("assign {column}: {error}"));
        }
    }

    /// The connection for [`CatalogAdmin`] calls (`&mut *db.admin_connection().await`).
    pub async fn admin_connection(&self) -> tokio::sync::MutexGuard<'_, tokio_postgres::Client> {
        self.admin_connection.lock().await
    }

    /// Shared encryption state trusting the fixture's master key, with `configure` applied.
    pub fn encryption_with(
        &self,
        configure: impl FnOnce(EncryptionConfig) -> EncryptionConfig,
    ) -> Arc<Encryption> {
        Encryption::new(configure(EncryptionConfig::new(self.registry.clone())))
    }

    /// A new aepg client with its own encryption state.
    pub async fn client(&self) -> Client {
        self.client_with(self.encryption_with(|config| config))
            .await
    }

    /// A new aepg client sharing `encryption`, whose connection aepg drives
    /// (so it hears catalog announcements), spawned on the current runtime.
    pub async fn client_with(&self, encryption: Arc<Encryption>) -> Client {
        self.client_at(&self.database.config(), encryption).await
    }

    /// A new aepg client sharing `encryption`, connected with `config` (a
    /// [`WireTap`](crate::WireTap)'s, say), whose connection aepg drives.
    pub async fn client_at(
        &self,
        config: &tokio_postgres::Config,
        encryption: Arc<Encryption>,
    ) -> Client {
        let (inner, connection) = config
            .connect(tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|error| panic!("connect: {error}"));
        let (client, connection) = Client::with_connection(inner, connection, encryption);
        tokio::spawn(connection);
        client
    }

    /// A new aepg client sharing `encryption` over a connection aepg does not
    /// drive ([`Client::new`]): it cannot hear catalog announcements.
    pub async fn unwatched_client_with(&self, encryption: Arc<Encryption>) -> Client {
        Client::new(self.database.connect().await, encryption)
    }
}
