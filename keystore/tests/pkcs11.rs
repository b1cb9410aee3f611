//! The `pkcs11` provider against a real PKCS#11 module: SoftHSM2, with a
//! token initialized per test in a token directory of the test process's own.
#![cfg(feature = "pkcs11")]
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::sync::Arc;

use aepg_keystore::pkcs11::softhsm::{SoftHsm, SoftHsmToken};
use aepg_keystore::{
    ColumnKey, KeyStoreError, KeyStoreProvider, KeyWrapAlgorithm, PinSource, Pkcs11Config,
    Pkcs11KeyStore, WrappedKey,
};
use zeroize::Zeroizing;

fn pin_of(token: &SoftHsmToken) -> PinSource {
    let pin = token.pin.clone();
    PinSource::Callback(Arc::new(move |_| Some(Zeroizing::new(pin.clone()))))
}

fn store(token: &SoftHsmToken, config: Pkcs11Config) -> Pkcs11KeyStore {
    Pkcs11KeyStore::new(config.pin(pin_of(token))).unwrap()
}

#[tokio::test]
async fn a_key_generated_in_the_token_wraps_unwraps_signs_and_verifies() {
    let hsm = SoftHsm::shared();
    let token = hsm.new_token("keystore-ops");
    let store = store(&token, hsm.config());
    let path = token.key_path("cmk1");

    let info = store.generate_key(&path, 2048).await.unwrap();
    assert_eq!(info.bits, 2048);
    assert_eq!(store.describe(&path).await.unwrap(), info);
    let err = store.generate_key(&path, 2048).await.unwrap_err();
    assert!(matches!(err, KeyStoreError::KeyExists { .. }), "{err}");

    let column_key = ColumnKey::generate().unwrap();
    let wrapped = store.wrap_column_key(&path, &column_key).await.unwrap();
    // SoftHSM2 2.6's OAEP knows SHA-1 only: the store falls back to it.
    assert_eq!(wrapped.algorithm, KeyWrapAlgorithm::RsaOaepSha1);
    assert_eq!(wrapped.ciphertext.len(), 256);
    let back = store.unwrap_column_key(&path, &wrapped).await.unwrap();
    assert_eq!(back.expose_secret(), column_key.expose_secret());

    // The same bytes named as SHA-256 do not unwrap: the algorithm counts.
    let renamed = WrappedKey::new(KeyWrapAlgorithm::RsaOaepSha256, wrapped.ciphertext.clone());
    assert!(store.unwrap_column_key(&path, &renamed).await.is_err());
    // Damaged ciphertext is an unwrap failure, not a crash or a key.
    let mut damaged = wrapped.clone();
    damaged.ciphertext[17] ^= 1;
    let err = store.unwrap_column_key(&path, &damaged).await.unwrap_err();
    assert!(matches!(err, KeyStoreError::UnwrapFailed { .. }), "{err}");

    let signature = store.sign(&path, b"record").await.unwrap();
    store.verify(&path, b"record", &signature).await.unwrap();
    let err = store
        .verify(&path, b"recorD", &signature)
        .await
        .unwrap_err();
    assert!(
        matches!(err, KeyStoreError::InvalidSignature { .. }),
        "{err}"
    );
    let err = store.verify(&path, b"record", &[0; 256]).await.unwrap_err();
    assert!(
        matches!(err, KeyStoreError::InvalidSignature { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn signatures_are_the_same_rsa_pss_as_the_software_stores() {
    let hsm = SoftHsm::shared();
    let token = hsm.new_token("keystore-pss");
    let store = store(&token, hsm.config());
    let path = token.key_path("cmk1");
    store.generate_key(&path, 2048).await.unwrap();
    let signature = store.sign(&path, b"message").await.unwrap();
    // Verified by the `rsa` crate with the public numbers the token gives:
    // RSA-PSS, SHA-256, MGF1-SHA-256, 32-byte salt, as in the other stores.
    let public = public_key(&store, &path).await;
    public
        .pss_verify::<sha2::Sha256>(b"message", &signature)
        .unwrap();
}

/// The token's public key, as the store exports it.
async fn public_key(store: &Pkcs11KeyStore, path: &str) -> rsa::PublicKey {
    let der = store.public_key_der(path).await.unwrap();
    rsa::pkcs8::DecodePublicKey::from_public_key_der(&der).unwrap()
}

#[tokio::test]
async fn a_token_without_sha1_fallback_allowed_refuses_to_wrap() {
    let hsm = SoftHsm::shared();
    let token = hsm.new_token("keystore-strict");
    let store = store(
        &token,
        hsm.config()
            .wrap_algorithms([KeyWrapAlgorithm::RsaOaepSha256]),
    );
    let path = token.key_path("cmk1");
    store.generate_key(&path, 2048).await.unwrap();
    let err = store
        .wrap_column_key(&path, &ColumnKey::generate().unwrap())
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("none of the allowed wrapping algorithms (RSA-OAEP-SHA256)"),
        "{err}"
    );
}

#[tokio::test]
async fn a_missing_key_a_missing_token_and_a_missing_pin_are_named() {
    let hsm = SoftHsm::shared();
    let token = hsm.new_token("keystore-missing");
    let store = store(&token, hsm.config());
    let err = store.describe(&token.key_path("nokey")).await.unwrap_err();
    assert!(matches!(err, KeyStoreError::KeyNotFound { .. }), "{err}");
    assert!(err.to_string().contains("object=nokey"), "{err}");

    let absent = "pkcs11:module-name=softhsm2;token=no-such-token;object=cmk1";
    let err = store.describe(absent).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("token \"no-such-token\" in module \"softhsm2\" is not present"),
        "{err}"
    );

    // Logins are per token and process: a token no store has logged in to.
    let untouched = hsm.new_token("keystore-no-pin");
    let no_pin = Pkcs11KeyStore::new(hsm.config().pin(PinSource::Environment(
        "AEPG_TEST_PIN_THAT_IS_NOT_SET".into(),
    )))
    .unwrap();
    let err = no_pin
        .describe(&untouched.key_path("cmk1"))
        .await
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("AEPG_TEST_PIN_THAT_IS_NOT_SET is not set"),
        "{err}"
    );
}

#[tokio::test]
async fn a_wrong_pin_is_refused_and_not_offered_again() {
    let hsm = SoftHsm::shared();
    let token = hsm.new_token("keystore-pin");
    let path = token.key_path("cmk1");
    store(&token, hsm.config())
        .generate_key(&path, 2048)
        .await
        .unwrap();

    let offered = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counter = offered.clone();
    let wrong = Pkcs11KeyStore::new(hsm.config().pin(PinSource::Callback(Arc::new(move |_| {
        counter.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Some(Zeroizing::new("not-the-pin".to_owned()))
    }))))
    .unwrap();
    let err = wrong.sign(&path, b"m").await.unwrap_err();
    assert!(err.to_string().contains("refused the PIN"), "{err}");
    assert!(!err.to_string().contains("not-the-pin"), "{err}");
    let err = wrong.sign(&path, b"m").await.unwrap_err();
    assert!(err.to_string().contains("not offered again"), "{err}");

    // The token still takes the right PIN: the wrong one was tried once.
    let right = store(&token, hsm.config());
    right.sign(&path, b"m").await.unwrap();
}

#[tokio::test]
async fn a_removed_token_is_an_error_and_a_new_one_is_found() {
    let hsm = SoftHsm::shared();
    let token = hsm.new_token("keystore-removed");
    let pin = Arc::new(std::sync::Mutex::new(token.pin.clone()));
    let current = pin.clone();
    let store = Pkcs11KeyStore::new(hsm.config().pin(PinSource::Callback(Arc::new(move |_| {
        Some(Zeroizing::new(current.lock().unwrap().clone()))
    }))))
    .unwrap();
    let path = token.key_path("cmk1");
    let old = store.generate_key(&path, 2048).await.unwrap();
    let signature = store.sign(&path, b"m").await.unwrap();

    hsm.remove_token(&token);
    let err = store.verify(&path, b"m", &signature).await.unwrap_err();
    assert!(
        matches!(
            err,
            KeyStoreError::ProviderUnavailable { .. } | KeyStoreError::KeyNotFound { .. }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("keystore-removed"), "{err}");

    // A token put in under the same label is found by the same store; its
    // key is another key, which the old signature does not verify under.
    let again = hsm.new_token("keystore-removed");
    *pin.lock().unwrap() = again.pin.clone();
    let new = store.generate_key(&path, 2048).await.unwrap();
    assert_ne!(new, old);
    let err = store.verify(&path, b"m", &signature).await.unwrap_err();
    assert!(
        matches!(err, KeyStoreError::InvalidSignature { .. }),
        "{err}"
    );
}

/// Public key objects are not the PIN's to guard on every token. One
/// replaced by someone else's key makes neither a signature by that key
/// verify nor a wrap under it happen.
#[tokio::test]
async fn a_replaced_public_key_object_is_not_believed() {
    let hsm = SoftHsm::shared();
    let token = hsm.new_token("keystore-public");
    let store = store(&token, hsm.config());
    let path = token.key_path("cmk1");
    let info = store.generate_key(&path, 2048).await.unwrap();

    let attacker = rsa::PrivateKey::new(&mut rand::rngs::SysRng, 2048).unwrap();
    let public = attacker.as_public_key();
    hsm.replace_public_key(
        &token,
        &path,
        rsa::traits::PublicKeyParts::n(public)
            .to_be_bytes()
            .to_vec(),
        rsa::traits::PublicKeyParts::e(public)
            .to_be_bytes()
            .to_vec(),
    );
    let forged = attacker.pss_sign::<sha2::Sha256>(b"record").unwrap();
    let err = store.verify(&path, b"record", &forged).await.unwrap_err();
    assert!(
        matches!(err, KeyStoreError::InvalidSignature { .. }),
        "{err}"
    );
    // The key is still the private key's, and still signs.
    assert_eq!(store.describe(&path).await.unwrap(), info);
    let signature = store.sign(&path, b"record").await.unwrap();
    store.verify(&path, b"record", &signature).await.unwrap();
    let err = store
        .wrap_column_key(&path, &ColumnKey::generate().unwrap())
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("is not the private key's"),
        "{err}"
    );
}

/// SoftHSM2 changes its slot table inside `C_GetSlotList`: stores looking
/// their tokens up on many threads, while others initialize tokens, must
/// not race it (it aborts the process when two slots get one ID).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tokens_looked_up_on_many_threads_while_others_are_initialized() {
    let hsm = SoftHsm::shared();
    let mut tasks = Vec::new();
    for thread in 0..8 {
        tasks.push(tokio::spawn(async move {
            for round in 0..8 {
                let token = tokio::task::spawn_blocking(move || {
                    hsm.new_token(&format!("keystore-busy-{thread}-{round}"))
                })
                .await
                .unwrap();
                // A store of its own each time: each looks the token up.
                for _ in 0..4 {
                    let store = store(&token, hsm.config());
                    let err = store.describe(&token.key_path("nokey")).await.unwrap_err();
                    assert!(matches!(err, KeyStoreError::KeyNotFound { .. }), "{err}");
                }
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}
