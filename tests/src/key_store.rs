//! The fixture's master key store: in process memory by default, or in a
//! SoftHSM2 token (`AEPG_TEST_MASTER_KEY_STORE=pkcs11`), so that the same
//! end-to-end suites run with a master key that never leaves an HSM.
//! Either way every call is counted, for tests that prove a request did or
//! did not reach the key store.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aepg_keystore::pkcs11::softhsm::{SoftHsm, SoftHsmToken};
use aepg_keystore::{
    ColumnKey, KeyStoreError, KeyStoreProvider, MasterKeyInfo, MasterKeyLocation, MemoryKeyStore,
    OperationCounts, PinSource, Pkcs11KeyStore, WrappedKey,
};
use async_trait::async_trait;

use crate::env_vars::MASTER_KEY_STORE;

/// Where the master key is.
enum Backing {
    Memory(Arc<MemoryKeyStore>),
    Pkcs11 {
        store: Pkcs11KeyStore,
        token: SoftHsmToken,
    },
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
            other => panic!("{MASTER_KEY_STORE}={other:?}: use memory or pkcs11"),
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
        }
    }

    /// The memory store, for tests about memory keys only.
    ///
    /// # Panics
    /// When the master key is in a token.
    pub fn memory(&self) -> &MemoryKeyStore {
        match &self.backing {
            Backing::Memory(store) => store,
            Backing::Pkcs11 { .. } => {
                panic!("this test needs the memory key store (unset {MASTER_KEY_STORE})")
            }
        }
    }

    fn provider(&self, operation: Operation) -> &dyn KeyStoreProvider {
        self.counts[operation as usize].fetch_add(1, Ordering::SeqCst);
        match &self.backing {
            Backing::Memory(store) => &**store,
            Backing::Pkcs11 { store, .. } => store,
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
        }
    }

    fn validate_key_path(&self, key_path: &str) -> Result<(), KeyStoreError> {
        match &self.backing {
            Backing::Memory(store) => store.validate_key_path(key_path),
            Backing::Pkcs11 { store, .. } => store.validate_key_path(key_path),
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
