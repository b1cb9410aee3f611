//! The fixture's master key store: in process memory by default, in a
//! SoftHSM2 token (`AEPG_TEST_MASTER_KEY_STORE=pkcs11`) or in the local Key
//! Vault test server (`AEPG_TEST_MASTER_KEY_STORE=azure-key-vault`), so that
//! the same end-to-end suites run with a master key that never leaves an
//! HSM or a vault.
//! Either way every call is counted, for tests that prove a request did or
//! did not reach the key store.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aepg_keystore::azure::{AzureConfig, AzureKeyVaultStore, ClientSecretCredential};
use aepg_keystore::pkcs11::softhsm::{SoftHsm, SoftHsmToken};
use aepg_keystore::{
    ColumnKey, KeyStoreError, KeyStoreProvider, MasterKeyInfo, MasterKeyLocation, MemoryKeyStore,
    OperationCounts, PinSource, Pkcs11KeyStore, WrappedKey,
};
use aepg_kvserver::{KeyVaultServer, ServerConfig};
use async_trait::async_trait;

use crate::env_vars::MASTER_KEY_STORE;

/// Where the master key is.
enum Backing {
    Memory(Arc<MemoryKeyStore>),
    Pkcs11 {
        store: Pkcs11KeyStore,
        token: SoftHsmToken,
    },
    Azure {
        store: AzureKeyVaultStore,
        /// The key's name in the test server; `None` in a real vault.
        key_name: Option<String>,
    },
}

/// The process's Key Vault test server, on a runtime of its own: tests
/// each run on their own runtime, and the server must outlive them.
pub fn shared_vault() -> &'static KeyVaultServer {
    static VAULT: std::sync::OnceLock<&'static KeyVaultServer> = std::sync::OnceLock::new();
    VAULT.get_or_init(|| {
        let (sender, receiver) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .unwrap_or_else(|error| panic!("vault runtime: {error}"));
            runtime.block_on(async move {
                let server = KeyVaultServer::start(ServerConfig::default())
                    .await
                    .unwrap_or_else(|error| panic!("starting the Key Vault test server: {error}"));
                let server: &'static KeyVaultServer = Box::leak(Box::new(server));
                let _ = sender.send(server);
                std::future::pending::<()>().await;
            });
        });
        receiver
            .recv()
            .unwrap_or_else(|error| panic!("the Key Vault test server did not start: {error}"))
    })
}

/// A key store provider that counts calls and passes them to the store
/// the environment chose.
pub struct FixtureKeyStore {
    backing: Backing,
    counts: [AtomicUsize; 5],
}

#[derive(Clone, Copy)]
enum Operation {
    Describe,
    Wrap,
    Unwrap,
    Sign,
    Verify,
}

impl FixtureKeyStore {
    /// The store [`MASTER_KEY_STORE`] names, holding the PKCS#8 `pem` (for
    /// memory) or a key generated in a fresh token (for pkcs11) named
    /// `name`; and where that key is.
    ///
    /// # Panics
    /// An unknown store name, or a store that refuses the key.
    pub async fn with_key(name: &str, pem: &str, label: &str) -> (Self, MasterKeyLocation) {
        let choice = std::env::var(MASTER_KEY_STORE).unwrap_or_else(|_| "memory".to_owned());
        match choice.as_str() {
            "memory" => Self::in_memory(name, pem),
            "pkcs11" => Self::in_token(name, label).await,
            "azure-key-vault" => Self::in_vault(&format!("{label}-{name}")),
            other => panic!("{MASTER_KEY_STORE}={other:?}: use memory, pkcs11 or azure-key-vault"),
        }
    }

    /// A memory store holding the PKCS#8 `pem` at `name`.
    ///
    /// # Panics
    /// When the store refuses the key.
    pub fn in_memory(name: &str, pem: &str) -> (Self, MasterKeyLocation) {
        let store = Arc::new(MemoryKeyStore::new());
        store
            .import_pem(name, pem)
            .unwrap_or_else(|error| panic!("import master key: {error}"));
        (
            Self::counting(Backing::Memory(store)),
            MasterKeyLocation::new(MemoryKeyStore::PROVIDER_NAME, name),
        )
    }

    /// A pkcs11 store over a fresh SoftHSM2 token (its label made from
    /// `label`), holding a 2048-bit key labelled `name` generated in it.
    ///
    /// # Panics
    /// When SoftHSM2 is missing or refuses.
    pub async fn in_token(name: &str, label: &str) -> (Self, MasterKeyLocation) {
        let hsm = SoftHsm::shared();
        let token = hsm.new_token(&token_label(label));
        let pin = token.pin.clone();
        let store =
            Pkcs11KeyStore::new(hsm.config().pin(PinSource::Callback(Arc::new(move |_| {
                Some(zeroize::Zeroizing::new(pin.clone()))
            }))))
            .unwrap_or_else(|error| panic!("pkcs11 store: {error}"));
        let key_path = token.key_path(name);
        store
            .generate_key(&key_path, 2048)
            .await
            .unwrap_or_else(|error| panic!("generate master key in the token: {error}"));
        (
            Self::counting(Backing::Pkcs11 { store, token }),
            MasterKeyLocation::new(Pkcs11KeyStore::PROVIDER_NAME, key_path),
        )
    }

    /// An azure-key-vault store over the process's Key Vault test server,
    /// holding a 2048-bit key made for this test, named `label` (characters
    /// Key Vault refuses in names become dashes).
    ///
    /// # Panics
    /// When the server does not start or the store cannot be built.
    pub fn in_vault(label: &str) -> (Self, MasterKeyLocation) {
        if let Ok(kid) = std::env::var(crate::env_vars::AZURE_KEY_ID) {
            return Self::in_real_vault(kid);
        }
        let vault = shared_vault();
        let key_name: String = label
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(100)
            .collect();
        let kid = vault.create_key(&key_name, 2048);
        let credential = ClientSecretCredential::new(
            vault.tenant(),
            vault.client_id(),
            zeroize::Zeroizing::new(vault.client_secret().to_owned()),
        )
        .authority(&vault.vault_url());
        let url = vault.vault_url();
        let store = AzureKeyVaultStore::new(
            AzureConfig::new(credential)
                .trust_ca_pem(vault.ca_certificate_pem().as_bytes())
                .vault_host(url.trim_start_matches("https://")),
        )
        .unwrap_or_else(|error| panic!("azure-key-vault store: {error}"));
        (
            Self::counting(Backing::Azure {
                store,
                key_name: Some(key_name),
            }),
            MasterKeyLocation::new(AzureKeyVaultStore::PROVIDER_NAME, kid),
        )
    }

    /// The real vault key `kid` ([`crate::env_vars::AZURE_KEY_ID`]), with a
    /// client secret from `AZURE_TENANT_ID`, `AZURE_CLIENT_ID` and
    /// `AZURE_CLIENT_SECRET`, or else the machine's managed identity.
    fn in_real_vault(kid: String) -> (Self, MasterKeyLocation) {
        let variable = |name: &str| std::env::var(name).ok();
        let config = match (
            variable("AZURE_TENANT_ID"),
            variable("AZURE_CLIENT_ID"),
            variable("AZURE_CLIENT_SECRET"),
        ) {
            (Some(tenant), Some(client), Some(secret)) => AzureConfig::new(
                ClientSecretCredential::new(&tenant, &client, zeroize::Zeroizing::new(secret)),
            ),
            _ => AzureConfig::new(aepg_keystore::azure::ManagedIdentityCredential::new()),
        };
        let store = AzureKeyVaultStore::new(config)
            .unwrap_or_else(|error| panic!("azure-key-vault store: {error}"));
        (
            Self::counting(Backing::Azure {
                store,
                key_name: None,
            }),
            MasterKeyLocation::new(AzureKeyVaultStore::PROVIDER_NAME, kid),
        )
    }

    fn counting(backing: Backing) -> Self {
        Self {
            backing,
            counts: Default::default(),
        }
    }

    /// How many times each operation reached this store.
    pub fn operation_counts(&self) -> OperationCounts {
        let count = |operation: Operation| self.counts[operation as usize].load(Ordering::SeqCst);
        let mut counts = OperationCounts::default();
        counts.describe = count(Operation::Describe);
        counts.wrap = count(Operation::Wrap);
        counts.unwrap = count(Operation::Unwrap);
        counts.sign = count(Operation::Sign);
        counts.verify = count(Operation::Verify);
        counts
    }

    /// Destroys the key at `key_path` (as a revoked key would be); returns
    /// whether it existed.
    pub fn remove_key(&self, key_path: &str) -> bool {
        match &self.backing {
            Backing::Memory(store) => store.remove_key(key_path),
            Backing::Pkcs11 { token, .. } => SoftHsm::shared().destroy_key(token, key_path),
            // Disabled in the vault: unwraps and signatures stop at once,
            // verification once the store's public key expires.
            Backing::Azure {
                key_name: Some(key_name),
                ..
            } => {
                shared_vault().disable_key(key_name);
                true
            }
            Backing::Azure { key_name: None, .. } => {
                panic!(
                    "a test does not disable a real vault's key: this test needs the test server"
                )
            }
        }
    }

    /// The memory store, for tests about memory keys only.
    ///
    /// # Panics
    /// When the master key is in a token.
    pub fn memory(&self) -> &MemoryKeyStore {
        match &self.backing {
            Backing::Memory(store) => store,
            Backing::Pkcs11 { .. } | Backing::Azure { .. } => {
                panic!("this test needs the memory key store (unset {MASTER_KEY_STORE})")
            }
        }
    }

    fn provider(&self, operation: Operation) -> &dyn KeyStoreProvider {
        self.counts[operation as usize].fetch_add(1, Ordering::SeqCst);
        match &self.backing {
            Backing::Memory(store) => &**store,
            Backing::Pkcs11 { store, .. } => store,
            Backing::Azure { store, .. } => store,
        }
    }
}

/// A token label from a test label: SoftHSM2 labels hold 32 bytes.
fn token_label(label: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::SeqCst);
    let mut label: String = label.chars().filter(char::is_ascii).take(24).collect();
    label.push_str(&format!("-{n}"));
    label
}

#[async_trait]
impl KeyStoreProvider for FixtureKeyStore {
    fn name(&self) -> &str {
        match &self.backing {
            Backing::Memory(store) => store.name(),
            Backing::Pkcs11 { store, .. } => store.name(),
            Backing::Azure { store, .. } => store.name(),
        }
    }

    fn validate_key_path(&self, key_path: &str) -> Result<(), KeyStoreError> {
        match &self.backing {
            Backing::Memory(store) => store.validate_key_path(key_path),
            Backing::Pkcs11 { store, .. } => store.validate_key_path(key_path),
            Backing::Azure { store, .. } => store.validate_key_path(key_path),
        }
    }

    async fn describe(&self, key_path: &str) -> Result<MasterKeyInfo, KeyStoreError> {
        self.provider(Operation::Describe).describe(key_path).await
    }

    async fn wrap_column_key(
        &self,
        key_path: &str,
        column_key: &ColumnKey,
    ) -> Result<WrappedKey, KeyStoreError> {
        self.provider(Operation::Wrap)
            .wrap_column_key(key_path, column_key)
            .await
    }

    async fn unwrap_column_key(
        &self,
        key_path: &str,
        wrapped: &WrappedKey,
    ) -> Result<ColumnKey, KeyStoreError> {
        self.provider(Operation::Unwrap)
            .unwrap_column_key(key_path, wrapped)
            .await
    }

    async fn sign(&self, key_path: &str, message: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        self.provider(Operation::Sign).sign(key_path, message).await
    }

    async fn verify(
        &self,
        key_path: &str,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), KeyStoreError> {
        self.provider(Operation::Verify)
            .verify(key_path, message, signature)
            .await
    }
}
