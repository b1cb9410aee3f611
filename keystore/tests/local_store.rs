//! The `local` provider against a real directory of key files.
#![allow(clippy::unwrap_used)] // a test fails by panicking

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use aepg_keystore::{
    ColumnKey, KeyStoreError, KeyStoreProvider, KeyWrapAlgorithm, LocalKeyStore, WrappedKey,
};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

fn store() -> (tempfile::TempDir, LocalKeyStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalKeyStore::open(dir.path()).unwrap();
    (dir, store)
}

fn write_key_file(path: &Path, pem: &str, mode: u32) {
    std::fs::write(path, pem).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

#[tokio::test]
async fn generated_key_is_private_and_usable() {
    let (dir, store) = store();
    let info = store.generate_key("cmk.pem", 2048).await.unwrap();
    assert_eq!(info.bits, 2048);
    let mode = std::fs::metadata(dir.path().join("cmk.pem"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    assert_eq!(store.describe("cmk.pem").await.unwrap(), info);

    let column_key = ColumnKey::generate().unwrap();
    let wrapped = store.wrap_column_key("cmk.pem", &column_key).await.unwrap();
    assert_eq!(
        wrapped.ciphertext.len(),
        256,
        "RSA-2048 OAEP output is one modulus long"
    );
    assert_eq!(wrapped.algorithm, KeyWrapAlgorithm::RsaOaepSha256);
    let unwrapped = store.unwrap_column_key("cmk.pem", &wrapped).await.unwrap();
    // The local store wraps and unwraps with RSA-OAEP-SHA-256 only.
    let sha1 = WrappedKey::new(KeyWrapAlgorithm::RsaOaepSha1, wrapped.ciphertext.clone());
    let err = store.unwrap_column_key("cmk.pem", &sha1).await.unwrap_err();
    assert!(
        matches!(
            err,
            KeyStoreError::UnsupportedWrapAlgorithm {
                algorithm: "RSA-OAEP-SHA1",
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(unwrapped.expose_secret(), column_key.expose_secret());

    let signature = store.sign("cmk.pem", b"record").await.unwrap();
    store
        .verify("cmk.pem", b"record", &signature)
        .await
        .unwrap();
    let err = store
        .verify("cmk.pem", b"recorD", &signature)
        .await
        .unwrap_err();
    assert!(
        matches!(err, KeyStoreError::InvalidSignature { .. }),
        "{err}"
    );
}

#[tokio::test]
async fn sizes_3072_and_4096_are_generated_and_others_refused() {
    let (_dir, store) = store();
    assert_eq!(store.generate_key("a.pem", 3072).await.unwrap().bits, 3072);
    assert_eq!(store.generate_key("b.pem", 4096).await.unwrap().bits, 4096);
    for (path, len) in [("a.pem", 384), ("b.pem", 512)] {
        let column_key = ColumnKey::generate().unwrap();
        let wrapped = store.wrap_column_key(path, &column_key).await.unwrap();
        assert_eq!(wrapped.ciphertext.len(), len);
        let unwrapped = store.unwrap_column_key(path, &wrapped).await.unwrap();
        assert_eq!(unwrapped.expose_secret(), column_key.expose_secret());
    }
    let err = store.generate_key("c.pem", 1024).await.unwrap_err();
    assert!(
        matches!(err, KeyStoreError::UnsupportedKeySize { bits: 1024 }),
        "{err}"
    );
}

#[tokio::test]
async fn existing_key_is_never_overwritten() {
    let (dir, store) = store();
    store.generate_key("cmk.pem", 2048).await.unwrap();
    let before = std::fs::read(dir.path().join("cmk.pem")).unwrap();
    let err = store.generate_key("cmk.pem", 2048).await.unwrap_err();
    assert!(matches!(err, KeyStoreError::KeyExists { .. }), "{err}");
    assert_eq!(std::fs::read(dir.path().join("cmk.pem")).unwrap(), before);
}

#[tokio::test]
async fn group_or_world_readable_key_is_refused() {
    let (dir, store) = store();
    store.generate_key("cmk.pem", 2048).await.unwrap();
    for mode in [0o640, 0o604, 0o644, 0o660] {
        std::fs::set_permissions(
            dir.path().join("cmk.pem"),
            std::fs::Permissions::from_mode(mode),
        )
        .unwrap();
        let err = store.describe("cmk.pem").await.unwrap_err();
        assert!(
            matches!(err, KeyStoreError::KeyFileTooOpen { mode: m, .. } if m == mode),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
    }
}

#[tokio::test]
async fn missing_key_is_reported_as_such() {
    let (_dir, store) = store();
    let err = store.describe("nope.pem").await.unwrap_err();
    assert!(matches!(err, KeyStoreError::KeyNotFound { .. }), "{err}");
}

#[tokio::test]
async fn public_key_file_is_refused() {
    let (dir, store) = store();
    let key = rsa::PrivateKey::new(&mut rand::rngs::SysRng, 2048).unwrap();
    let pem = key
        .as_public_key()
        .to_public_key_pem(LineEnding::LF)
        .unwrap();
    write_key_file(&dir.path().join("pub.pem"), &pem, 0o600);
    let err = store.describe("pub.pem").await.unwrap_err();
    assert!(matches!(err, KeyStoreError::PublicKeyOnly { .. }), "{err}");
}

#[tokio::test]
async fn non_rsa_keys_are_refused() {
    let (dir, store) = store();
    for fixture in ["ed25519.pem", "ec-p256.pem"] {
        let pem = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fixtures")
                .join(fixture),
        )
        .unwrap();
        write_key_file(&dir.path().join(fixture), &pem, 0o600);
        let err = store.describe(fixture).await.unwrap_err();
        assert!(
            matches!(err, KeyStoreError::NotRsa { .. }),
            "{fixture}: {err}"
        );
    }
}

#[tokio::test]
async fn too_small_rsa_key_is_refused() {
    let (dir, store) = store();
    let key = rsa::PrivateKey::new(&mut rand::rngs::SysRng, 1024).unwrap();
    let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
    write_key_file(&dir.path().join("small.pem"), &pem, 0o600);
    let err = store.describe("small.pem").await.unwrap_err();
    assert!(
        matches!(
            err,
            KeyStoreError::KeyTooSmall {
                bits: 1024,
                minimum: 2048,
                ..
            }
        ),
        "{err}"
    );
}

#[tokio::test]
async fn garbage_and_pkcs1_files_are_malformed() {
    let (dir, store) = store();
    write_key_file(&dir.path().join("junk.pem"), "hello", 0o600);
    let err = store.describe("junk.pem").await.unwrap_err();
    assert!(matches!(err, KeyStoreError::MalformedKey { .. }), "{err}");

    let pkcs1 = "-----BEGIN RSA PRIVATE KEY-----\nAAAA\n-----END RSA PRIVATE KEY-----\n";
    write_key_file(&dir.path().join("pkcs1.pem"), pkcs1, 0o600);
    let err = store.describe("pkcs1.pem").await.unwrap_err();
    assert!(err.to_string().contains("PKCS#8"), "{err}");
}

#[tokio::test]
async fn key_paths_cannot_escape_the_directory() {
    let outer = tempfile::tempdir().unwrap();
    let root = outer.path().join("keys");
    std::fs::create_dir(&root).unwrap();
    let store = LocalKeyStore::open(&root).unwrap();
    // A valid key outside the root, reachable only by escaping.
    let outside = LocalKeyStore::open(outer.path()).unwrap();
    outside.generate_key("outside.pem", 2048).await.unwrap();

    for path in [
        "../outside.pem",
        "/etc/passwd",
        "./cmk.pem",
        "",
        "a/../../outside.pem",
    ] {
        let err = store.describe(path).await.unwrap_err();
        assert!(
            matches!(err, KeyStoreError::InvalidKeyPath { .. }),
            "{path:?}: {err}"
        );
        let err = store.generate_key(path, 2048).await.unwrap_err();
        assert!(
            matches!(err, KeyStoreError::InvalidKeyPath { .. }),
            "{path:?}: {err}"
        );
    }

    std::os::unix::fs::symlink(outer.path().join("outside.pem"), root.join("link.pem")).unwrap();
    let err = store.describe("link.pem").await.unwrap_err();
    assert!(matches!(err, KeyStoreError::InvalidKeyPath { .. }), "{err}");

    std::os::unix::fs::symlink(outer.path(), root.join("dirlink")).unwrap();
    let err = store
        .generate_key("dirlink/new.pem", 2048)
        .await
        .unwrap_err();
    assert!(matches!(err, KeyStoreError::InvalidKeyPath { .. }), "{err}");
    assert!(!outer.path().join("new.pem").exists());
}

#[tokio::test]
async fn keys_in_subdirectories_work() {
    let (dir, store) = store();
    std::fs::create_dir(dir.path().join("team")).unwrap();
    store.generate_key("team/cmk.pem", 2048).await.unwrap();
    store.describe("team/cmk.pem").await.unwrap();
}

#[tokio::test]
async fn unwrap_under_another_key_fails() {
    let (_dir, store) = store();
    store.generate_key("a.pem", 2048).await.unwrap();
    store.generate_key("b.pem", 2048).await.unwrap();
    let wrapped = store
        .wrap_column_key("a.pem", &ColumnKey::generate().unwrap())
        .await
        .unwrap();
    let err = store
        .unwrap_column_key("b.pem", &wrapped)
        .await
        .unwrap_err();
    assert!(matches!(err, KeyStoreError::UnwrapFailed { .. }), "{err}");
}

/// The private-key operation (AWS-LC's) refuses every damaged wrapped
/// value with `UnwrapFailed`: a flipped bit anywhere, a value cut short or
/// lengthened, and numbers at or above the modulus.
#[tokio::test]
async fn a_damaged_wrapped_key_fails_to_unwrap() {
    let (_dir, store) = store();
    store.generate_key("cmk.pem", 2048).await.unwrap();
    let wrapped = store
        .wrap_column_key("cmk.pem", &ColumnKey::generate().unwrap())
        .await
        .unwrap();
    let good = wrapped.ciphertext.clone();
    let mut damaged: Vec<Vec<u8>> = (0..good.len() * 8)
        .step_by(61)
        .map(|bit| {
            let mut bytes = good.clone();
            bytes[bit / 8] ^= 1 << (bit % 8);
            bytes
        })
        .collect();
    damaged.push(good[..good.len() - 1].to_vec());
    damaged.push([good.as_slice(), &[0]].concat());
    damaged.push(Vec::new());
    damaged.push(vec![0; good.len()]);
    damaged.push(vec![0xff; good.len()]);
    for bytes in damaged {
        let len = bytes.len();
        let err = store
            .unwrap_column_key(
                "cmk.pem",
                &WrappedKey::new(KeyWrapAlgorithm::RsaOaepSha256, bytes),
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, KeyStoreError::UnwrapFailed { .. }),
            "{len} bytes: {err}"
        );
    }
}

/// A key is read and parsed once while its file stays the same; a file
/// replaced, opened up or removed takes effect at the next use.
#[tokio::test]
async fn a_kept_key_follows_its_file() {
    let (dir, store) = store();
    let file = dir.path().join("cmk.pem");
    let first = store.generate_key("cmk.pem", 2048).await.unwrap();
    let reads = store.key_file_reads();
    for _ in 0..5 {
        store.sign("cmk.pem", b"record").await.unwrap();
        assert_eq!(store.describe("cmk.pem").await.unwrap(), first);
    }
    assert_eq!(store.key_file_reads(), reads + 1, "read once");

    // Replaced by another key (same size, same mode): the new one is used.
    let other = rsa::PrivateKey::new(&mut rand::rngs::SysRng, 2048).unwrap();
    let pem = other.to_pkcs8_pem(LineEnding::LF).unwrap();
    std::fs::remove_file(&file).unwrap();
    write_key_file(&file, &pem, 0o600);
    let replaced = store.describe("cmk.pem").await.unwrap();
    assert_ne!(replaced.public_key_sha256, first.public_key_sha256);

    // Opened up to the group: refused at once, though it was kept.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
    assert!(matches!(
        store.sign("cmk.pem", b"record").await.unwrap_err(),
        KeyStoreError::KeyFileTooOpen { .. }
    ));
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    store.sign("cmk.pem", b"record").await.unwrap();

    // Removed: gone at once.
    std::fs::remove_file(&file).unwrap();
    assert!(matches!(
        store.sign("cmk.pem", b"record").await.unwrap_err(),
        KeyStoreError::KeyNotFound { .. }
    ));
}
