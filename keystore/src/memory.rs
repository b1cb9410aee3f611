//! The `memory` provider: master keys held in process memory, for tests and examples.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;

use crate::rsa_ops::{self, HeldKey};
use crate::{ColumnKey, KeyStoreError, KeyStoreProvider, MasterKeyInfo, WrappedKey};

/// Master keys kept in a map in process memory. They vanish with the process,
/// so this provider suits tests and examples, not production data.
pub struct MemoryKeyStore {
    keys: RwLock<HashMap<String, Arc<HeldKey>>>,
    counts: [AtomicUsize; 5],
}

/// How many times each provider operation reached a [`MemoryKeyStore`]:
/// lets tests prove that a refused request never got to the key store.
/// (Feature `test-util`.)
#[cfg(feature = "test-util")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct OperationCounts {
    /// Calls of `describe`.
    pub describe: usize,
    /// Calls of `wrap_column_key`.
    pub wrap: usize,
    /// Calls of `unwrap_column_key`: private-key operations.
    pub unwrap: usize,
    /// Calls of `sign`: private-key operations.
    pub sign: usize,
    /// Calls of `verify`.
    pub verify: usize,
}

#[cfg(feature = "test-util")]
impl OperationCounts {
    /// All calls together.
    pub fn total(&self) -> usize {
        self.describe + self.wrap + self.unwrap + self.sign + self.verify
    }
}

#[derive(Clone, Copy)]
enum Operation {
    Describe,
    Wrap,
    Unwrap,
    Sign,
    Verify,
}

impl MemoryKeyStore {
    /// The provider name catalog records use for this store.
    pub const PROVIDER_NAME: &'static str = "memory";

    /// An empty store.
    pub fn new() -> Self {
        Self {
            keys: RwLock::new(HashMap::new()),
            counts: Default::default(),
        }
    }

    /// How many times each operation has been called on this store.
    /// (Feature `test-util`.)
    #[cfg(feature = "test-util")]
    pub fn operation_counts(&self) -> OperationCounts {
        let count = |operation: Operation| self.counts[operation as usize].load(Ordering::SeqCst);
        OperationCounts {
            describe: count(Operation::Describe),
            wrap: count(Operation::Wrap),
            unwrap: count(Operation::Unwrap),
            sign: count(Operation::Sign),
            verify: count(Operation::Verify),
        }
    }

    /// Generates an RSA key pair of `bits` (2048, 3072 or 4096) at `key_path`.
    ///
    /// # Errors
    /// Invalid path, a key already at that path, or an unsupported size.
    pub fn generate_key(
        &self,
        key_path: &str,
        bits: usize,
    ) -> Result<MasterKeyInfo, KeyStoreError> {
        self.validate_key_path(key_path)?;
        let key = rsa_ops::generate(key_path, bits)?;
        self.insert(key_path, key)
    }

    /// Stores a PKCS#8 PEM RSA private key at `key_path`.
    ///
    /// # Errors
    /// Invalid path, a key already at that path, or a key that cannot be a master key.
    pub fn import_pem(&self, key_path: &str, pem: &str) -> Result<MasterKeyInfo, KeyStoreError> {
        self.validate_key_path(key_path)?;
        let key = rsa_ops::parse_private_key_pem(key_path, pem)?;
        self.insert(key_path, key)
    }

    /// Forgets the key at `key_path` (as a revoked HSM key would); returns whether it existed.
    pub fn remove_key(&self, key_path: &str) -> bool {
        self.write_keys().remove(key_path).is_some()
    }

    fn insert(&self, key_path: &str, key: HeldKey) -> Result<MasterKeyInfo, KeyStoreError> {
        let info = rsa_ops::describe(key_path, key.as_public_key())?;
        let mut keys = self.write_keys();
        if keys.contains_key(key_path) {
            return Err(KeyStoreError::KeyExists {
                provider: Self::PROVIDER_NAME.to_owned(),
                key_path: key_path.to_owned(),
            });
        }
        keys.insert(key_path.to_owned(), Arc::new(key));
        Ok(info)
    }

    /// Counts one call of `operation` and returns the key at `key_path`.
    fn key_for(&self, operation: Operation, key_path: &str) -> Result<Arc<HeldKey>, KeyStoreError> {
        self.counts[operation as usize].fetch_add(1, Ordering::SeqCst);
        // A panic while holding the lock cannot leave the map half-updated:
        // every critical section is a single insert or remove.
        let keys = self
            .keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        keys.get(key_path)
            .cloned()
            .ok_or_else(|| KeyStoreError::KeyNotFound {
                provider: Self::PROVIDER_NAME.to_owned(),
                key_path: key_path.to_owned(),
            })
    }

    fn write_keys(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<HeldKey>>> {
        // As in `key_for`: a poisoned map is consistent.
        self.keys
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Default for MemoryKeyStore {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl KeyStoreProvider for MemoryKeyStore {
    fn name(&self) -> &str {
        Self::PROVIDER_NAME
    }

    fn validate_key_path(&self, key_path: &str) -> Result<(), KeyStoreError> {
        let reason = if key_path.is_empty() {
            "it is empty"
        } else if key_path.len() > 255 {
            "it is longer than 255 bytes"
        } else if key_path.chars().any(char::is_control) {
            "it contains control characters"
        } else {
            return Ok(());
        };
        Err(KeyStoreError::InvalidKeyPath {
            key_path: key_path.to_owned(),
            reason,
        })
    }

    async fn describe(&self, key_path: &str) -> Result<MasterKeyInfo, KeyStoreError> {
        rsa_ops::describe(
            key_path,
            self.key_for(Operation::Describe, key_path)?.as_public_key(),
        )
    }

    async fn wrap_column_key(
        &self,
        key_path: &str,
        column_key: &ColumnKey,
    ) -> Result<WrappedKey, KeyStoreError> {
        rsa_ops::wrap(
            key_path,
            self.key_for(Operation::Wrap, key_path)?.as_public_key(),
            column_key,
        )
    }

    async fn unwrap_column_key(
        &self,
        key_path: &str,
        wrapped: &WrappedKey,
    ) -> Result<ColumnKey, KeyStoreError> {
        rsa_ops::unwrap(
            Self::PROVIDER_NAME,
            key_path,
            &*self.key_for(Operation::Unwrap, key_path)?,
            wrapped,
        )
    }

    async fn sign(&self, key_path: &str, message: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        rsa_ops::sign(
            key_path,
            &*self.key_for(Operation::Sign, key_path)?,
            message,
        )
    }

    async fn verify(
        &self,
        key_path: &str,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), KeyStoreError> {
        rsa_ops::verify(
            key_path,
            self.key_for(Operation::Verify, key_path)?.as_public_key(),
            message,
            signature,
        )
    }
}
