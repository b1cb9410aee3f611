//! The registry refuses what the application does not trust before any provider call.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use aepg_keystore::{
    ColumnKey, KeyStoreError, KeyStoreProvider, KeyStoreRegistry, MasterKeyInfo, MasterKeyLocation,
    MemoryKeyStore, TrustedKeyPaths,
};
use async_trait::async_trait;

/// A memory store that counts every call that reaches it.
struct Counting {
    inner: MemoryKeyStore,
    calls: Arc<AtomicUsize>,
}

#[async_trait]
impl KeyStoreProvider for Counting {
    fn name(&self) -> &str {
        "memory"
    }
    fn validate_key_path(&self, key_path: &str) -> Result<(), KeyStoreError> {
        self.inner.validate_key_path(key_path)
    }
    async fn describe(&self, key_path: &str) -> Result<MasterKeyInfo, KeyStoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.describe(key_path).await
    }
    async fn wrap_column_key(
        &self,
        key_path: &str,
        key: &ColumnKey,
    ) -> Result<Vec<u8>, KeyStoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.wrap_column_key(key_path, key).await
    }
    async fn unwrap_column_key(
        &self,
        key_path: &str,
        wrapped: &[u8],
    ) -> Result<ColumnKey, KeyStoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.unwrap_column_key(key_path, wrapped).await
    }
    async fn sign(&self, key_path: &str, message: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.sign(key_path, message).await
    }
    async fn verify(
        &self,
        key_path: &str,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), KeyStoreError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.verify(key_path, message, signature).await
    }
}

fn registry_trusting(paths: &[&str]) -> (KeyStoreRegistry, Arc<AtomicUsize>) {
    let inner = MemoryKeyStore::new();
    inner.generate_key("trusted", 2048).unwrap();
    inner.generate_key("attacker", 2048).unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut registry = KeyStoreRegistry::new();
    registry
        .register(
            Arc::new(Counting {
                inner,
                calls: calls.clone(),
            }),
            TrustedKeyPaths::only(paths.iter().copied()),
        )
        .unwrap();
    (registry, calls)
}

#[tokio::test]
async fn untrusted_path_is_refused_before_the_provider_runs() {
    let (registry, calls) = registry_trusting(&["trusted"]);
    let attacker = MasterKeyLocation::new("memory", "attacker");
    let key = ColumnKey::generate().unwrap();

    let results = [
        registry.describe(&attacker).await.map(drop),
        registry.wrap_column_key(&attacker, &key).await.map(drop),
        registry
            .unwrap_column_key(&attacker, &[0; 256])
            .await
            .map(drop),
        registry.sign(&attacker, b"m").await.map(drop),
        registry.verify(&attacker, b"m", &[0; 256]).await.map(drop),
    ];
    for result in results {
        let err = result.unwrap_err();
        assert!(
            matches!(&err, KeyStoreError::UntrustedKeyPath { key_path, .. } if key_path == "attacker"),
            "{err}"
        );
    }
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "the provider must not be called"
    );

    let trusted = MasterKeyLocation::new("memory", "trusted");
    let wrapped = registry.wrap_column_key(&trusted, &key).await.unwrap();
    let back = registry
        .unwrap_column_key(&trusted, &wrapped)
        .await
        .unwrap();
    assert_eq!(back.expose_secret(), key.expose_secret());
    assert_eq!(calls.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn unknown_provider_and_duplicate_registration_are_errors() {
    let (mut registry, _) = registry_trusting(&["trusted"]);
    let err = registry
        .describe(&MasterKeyLocation::new("pkcs11", "trusted"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, KeyStoreError::UnknownProvider { .. }),
        "{err}"
    );

    let err = registry
        .register(Arc::new(MemoryKeyStore::new()), TrustedKeyPaths::Any)
        .unwrap_err();
    assert!(
        matches!(err, KeyStoreError::DuplicateProvider { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn trusting_any_path_is_explicit() {
    let (mut registry, _) = registry_trusting(&[]);
    let err = registry
        .describe(&MasterKeyLocation::new("memory", "trusted"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, KeyStoreError::UntrustedKeyPath { .. }),
        "{err}"
    );

    let store = MemoryKeyStore::new();
    store.generate_key("k", 2048).unwrap();
    registry = KeyStoreRegistry::new();
    registry
        .register(Arc::new(store), TrustedKeyPaths::Any)
        .unwrap();
    registry
        .describe(&MasterKeyLocation::new("memory", "k"))
        .await
        .unwrap();
}

#[tokio::test]
async fn removed_memory_key_is_not_found() {
    let store = MemoryKeyStore::new();
    store.generate_key("k", 2048).unwrap();
    assert!(store.remove_key("k"));
    let err = store.describe("k").await.unwrap_err();
    assert!(matches!(err, KeyStoreError::KeyNotFound { .. }), "{err}");
}
