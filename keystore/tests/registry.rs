//! The registry refuses what the application does not trust before any provider call.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::sync::Arc;

use aepg_keystore::{
    ColumnKey, KeyStoreError, KeyStoreProvider, KeyStoreRegistry, KeyWrapAlgorithm,
    MasterKeyLocation, MemoryKeyStore, TrustedKeyPaths, WrappedKey,
};

fn registry_trusting(paths: &[&str]) -> (KeyStoreRegistry, Arc<MemoryKeyStore>) {
    let store = Arc::new(MemoryKeyStore::new());
    store.generate_key("trusted", 2048).unwrap();
    store.generate_key("attacker", 2048).unwrap();
    let mut registry = KeyStoreRegistry::new();
    registry
        .register(store.clone(), TrustedKeyPaths::only(paths.iter().copied()))
        .unwrap();
    (registry, store)
}

#[tokio::test]
async fn untrusted_path_is_refused_before_the_provider_runs() {
    let (registry, store) = registry_trusting(&["trusted"]);
    let attacker = MasterKeyLocation::new("memory", "attacker");
    let key = ColumnKey::generate().unwrap();

    let results = [
        registry.describe(&attacker).await.map(drop),
        registry.wrap_column_key(&attacker, &key).await.map(drop),
        registry
            .unwrap_column_key(
                &attacker,
                &WrappedKey::new(KeyWrapAlgorithm::RsaOaepSha256, vec![0; 256]),
            )
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
        store.operation_counts().total(),
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
    let counts = store.operation_counts();
    assert_eq!((counts.wrap, counts.unwrap, counts.total()), (1, 1, 2));
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
    let (registry, _) = registry_trusting(&[]);
    assert!(!registry.trusts_any_key());
    assert!(!KeyStoreRegistry::new().trusts_any_key());
    assert!(registry_trusting(&["trusted"]).0.trusts_any_key());
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
    let mut registry = KeyStoreRegistry::new();
    registry
        .register(Arc::new(store), TrustedKeyPaths::Any)
        .unwrap();
    assert!(registry.trusts_any_key());
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
