//! The registry refuses what the application does not trust before any provider call.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::sync::Arc;

use aepg_keystore::{
    ColumnKey, KeyStoreError, KeyStoreProvider, KeyStoreRegistry, KeyWrapAlgorithm,
    MasterKeyLocation, MemoryKeyStore, TrustedKeyPaths, TwoKeyPath, WrappedKey, TWO_KEY_PROVIDER,
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

/// A two-key master key: one memory key wraps, another signs.
fn two_key_registry(
    trusted: &[&str],
) -> (KeyStoreRegistry, Arc<MemoryKeyStore>, MasterKeyLocation) {
    let store = Arc::new(MemoryKeyStore::new());
    store.generate_key("wrap", 2048).unwrap();
    store.generate_key("sign", 2048).unwrap();
    let mut registry = KeyStoreRegistry::new();
    registry
        .register(
            store.clone(),
            TrustedKeyPaths::only(trusted.iter().copied()),
        )
        .unwrap();
    let pair = TwoKeyPath::new(
        MasterKeyLocation::new("memory", "wrap"),
        MasterKeyLocation::new("memory", "sign"),
    )
    .unwrap();
    (registry, store, pair.location())
}

#[tokio::test]
async fn a_two_key_master_key_wraps_with_one_key_and_signs_with_the_other() {
    let (registry, store, location) = two_key_registry(&["wrap", "sign"]);
    assert_eq!(location.provider, TWO_KEY_PROVIDER);
    let key = ColumnKey::generate().unwrap();
    let wrapped = registry.wrap_column_key(&location, &key).await.unwrap();
    assert_eq!(
        registry
            .unwrap_column_key(&location, &wrapped)
            .await
            .unwrap()
            .expose_secret(),
        key.expose_secret()
    );
    // Wrapped by the wrapping key, which alone unwraps it.
    store.unwrap_column_key("wrap", &wrapped).await.unwrap();
    assert!(store.unwrap_column_key("sign", &wrapped).await.is_err());

    // Signed by the signing key; a signature by the wrapping key does not count.
    let signature = registry.sign(&location, b"record").await.unwrap();
    store.verify("sign", b"record", &signature).await.unwrap();
    registry
        .verify(&location, b"record", &signature)
        .await
        .unwrap();
    let by_wrap = store.sign("wrap", b"record").await.unwrap();
    let err = registry
        .verify(&location, b"record", &by_wrap)
        .await
        .unwrap_err();
    assert!(
        matches!(err, KeyStoreError::InvalidSignature { .. }),
        "{err}"
    );

    // Its fingerprint is neither key's, and changes with the roles.
    let info = registry.describe(&location).await.unwrap();
    assert_ne!(info, store.describe("wrap").await.unwrap());
    assert_ne!(info, store.describe("sign").await.unwrap());
    let swapped = TwoKeyPath::new(
        MasterKeyLocation::new("memory", "sign"),
        MasterKeyLocation::new("memory", "wrap"),
    )
    .unwrap()
    .location();
    assert_ne!(registry.describe(&swapped).await.unwrap(), info);
}

#[tokio::test]
async fn each_key_of_a_two_key_master_key_must_be_trusted_on_its_own() {
    for trusted in [&["wrap"][..], &["sign"][..], &[][..]] {
        let (registry, store, location) = two_key_registry(trusted);
        let key = ColumnKey::generate().unwrap();
        let results = [
            registry.describe(&location).await.map(drop),
            registry.wrap_column_key(&location, &key).await.map(drop),
            registry.sign(&location, b"m").await.map(drop),
            registry.verify(&location, b"m", &[0; 256]).await.map(drop),
            registry.check(&location),
        ];
        for result in results {
            let err = result.unwrap_err();
            assert!(
                matches!(err, KeyStoreError::UntrustedKeyPath { .. }),
                "{err}"
            );
        }
        assert_eq!(store.operation_counts().total(), 0, "{trusted:?}");
    }
    // A malformed pair is refused as such, and the name cannot be taken.
    let (mut registry, _, _) = two_key_registry(&["wrap", "sign"]);
    let bad = MasterKeyLocation::new(TWO_KEY_PROVIDER, "wrap=memory:wrap");
    assert!(matches!(
        registry.check(&bad).unwrap_err(),
        KeyStoreError::InvalidKeyPath { .. }
    ));
    struct Impostor(MemoryKeyStore);
    #[async_trait::async_trait]
    impl KeyStoreProvider for Impostor {
        fn name(&self) -> &str {
            TWO_KEY_PROVIDER
        }
        fn validate_key_path(&self, key_path: &str) -> Result<(), KeyStoreError> {
            self.0.validate_key_path(key_path)
        }
        async fn describe(&self, p: &str) -> Result<aepg_keystore::MasterKeyInfo, KeyStoreError> {
            self.0.describe(p).await
        }
        async fn wrap_column_key(
            &self,
            p: &str,
            k: &ColumnKey,
        ) -> Result<WrappedKey, KeyStoreError> {
            self.0.wrap_column_key(p, k).await
        }
        async fn unwrap_column_key(
            &self,
            p: &str,
            w: &WrappedKey,
        ) -> Result<ColumnKey, KeyStoreError> {
            self.0.unwrap_column_key(p, w).await
        }
        async fn sign(&self, p: &str, m: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
            self.0.sign(p, m).await
        }
        async fn verify(&self, p: &str, m: &[u8], s: &[u8]) -> Result<(), KeyStoreError> {
            self.0.verify(p, m, s).await
        }
    }
    let err = registry
        .register(
            Arc::new(Impostor(MemoryKeyStore::new())),
            TrustedKeyPaths::Any,
        )
        .unwrap_err();
    assert!(
        matches!(err, KeyStoreError::DuplicateProvider { .. }),
        "{err}"
    );
}
