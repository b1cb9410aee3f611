//! Canonical encodings are strict, and signatures bind every field.

use std::sync::Arc;

use aepg_keystore::{
    ColumnKey, KeyStoreRegistry, KeyWrapAlgorithm, MasterKeyLocation, MemoryKeyStore,
    TrustedKeyPaths, WrappedKey,
};

use super::RecordError as Error;
use super::*;
use crate::cell::{CellSetting, EncryptionMode, NamedType, PaddingPolicy, PlaintextType};

fn setting_record() -> EncryptionSettingRecord {
    EncryptionSettingRecord {
        name: "diagnosis".into(),
        setting: CellSetting {
            setting_id: 3,
            mode: EncryptionMode::Randomized,
            plaintext_type: PlaintextType {
                oid: 1043,
                typmod: 24,
            },
            padding: PaddingPolicy::Bucket,
        },
        key_id: 2,
        named_type: None,
    }
}

fn assignment() -> ColumnAssignment {
    ColumnAssignment {
        schema: "public".into(),
        table: "patients".into(),
        column: "diagnosis".into(),
        setting_id: 3,
    }
}

fn wrapped_key() -> WrappedColumnKey {
    WrappedColumnKey {
        master_key_name: "cmk".into(),
        master_key: MasterKeyLocation::new("memory", "cmk1"),
        key_id: 2,
        wrapped: WrappedKey::new(KeyWrapAlgorithm::RsaOaepSha256, vec![9; 256]),
    }
}

/// Every strict prefix and every extension of a valid encoding is refused.
fn assert_strict<T: CatalogRecord + std::fmt::Debug + PartialEq>(record: &T) {
    let bytes = record.canonical_bytes().unwrap();
    assert_eq!(&T::from_canonical_bytes(&bytes).unwrap(), record);
    for len in 0..bytes.len() {
        assert!(
            T::from_canonical_bytes(&bytes[..len]).is_err(),
            "prefix {len} accepted"
        );
    }
    for extension in [&[0u8][..], &[1], &[2, 0, 0], &[0; 12]] {
        let mut extended = bytes.clone();
        extended.extend_from_slice(extension);
        assert!(
            matches!(
                T::from_canonical_bytes(&extended),
                Err(Error::Malformed {
                    reason: "trailing bytes after the last field",
                    ..
                })
            ),
            "extension {extension:?} accepted"
        );
    }
}

fn named_setting(named_type: NamedType) -> EncryptionSettingRecord {
    let mut record = setting_record();
    record.setting.plaintext_type = PlaintextType {
        oid: 25,
        typmod: -1,
    };
    record.named_type = Some(named_type);
    record
}

#[test]
fn encodings_round_trip_and_are_strict() {
    assert_strict(&setting_record());
    assert_strict(&named_setting(NamedType::citext()));
    assert_strict(&named_setting(
        NamedType::enumeration("mood", ["sad", "ok", "happy"]).unwrap(),
    ));
    assert_strict(&assignment());
    assert_strict(&wrapped_key());
    let mut sha1 = wrapped_key();
    sha1.wrapped.algorithm = KeyWrapAlgorithm::RsaOaepSha1;
    assert_strict(&sha1);
    assert_strict(&super::KeyRotationRecord {
        setting_id: 3,
        from_key: 1,
        to_key: 9,
    });
}

#[test]
fn a_named_type_is_refused_unless_well_formed_and_text() {
    let enumeration = NamedType::enumeration("mood", ["sad", "ok"]).unwrap();
    // The plaintext type of a named type's setting is text.
    let mut record = named_setting(enumeration.clone());
    record.setting.plaintext_type.oid = 23;
    let bytes = record.canonical_bytes().unwrap();
    assert!(EncryptionSettingRecord::from_canonical_bytes(&bytes).is_err());
    // Labels that repeat or are empty, an unnamed enum, another text type.
    for named in [
        NamedType::from_parts("mood".into(), Some(vec!["ok".into(), "ok".into()])),
        NamedType::from_parts("mood".into(), Some(vec![String::new()])),
        NamedType::from_parts("mood".into(), Some(vec![])),
        NamedType::from_parts(String::new(), Some(vec!["ok".into()])),
        NamedType::from_parts("citext".into(), Some(vec!["ok".into()])),
        NamedType::from_parts("ltree".into(), None),
    ] {
        let bytes = named_setting(named.clone()).canonical_bytes().unwrap();
        assert!(
            EncryptionSettingRecord::from_canonical_bytes(&bytes).is_err(),
            "{named:?}"
        );
    }
    assert!(NamedType::enumeration("mood", Vec::<String>::new()).is_err());
    assert!(NamedType::enumeration("citext", ["a"]).is_err());
}

#[test]
fn a_record_of_one_kind_is_not_read_as_another() {
    // Three u32s, like a rotation's fields: the kind byte tells them apart.
    let rotation = super::KeyRotationRecord {
        setting_id: 3,
        from_key: 1,
        to_key: 9,
    };
    assert!(ColumnAssignment::from_canonical_bytes(&rotation.canonical_bytes().unwrap()).is_err());
    let bytes = assignment().canonical_bytes().unwrap();
    assert!(matches!(
        EncryptionSettingRecord::from_canonical_bytes(&bytes),
        Err(Error::Malformed {
            reason: "record is of another kind",
            ..
        })
    ));
}

#[test]
fn unknown_enumerations_and_bad_text_are_refused() {
    let bytes = setting_record().canonical_bytes().unwrap();
    // Layout: 6-byte prefix, id, name ("diagnosis": 2 + 9 bytes), 3 u32/i32
    // fields, then mode and padding bytes.
    let (mode_at, padding_at) = (6 + 4 + 11 + 12, 6 + 4 + 11 + 13);
    let mut edited = bytes.clone();
    edited[mode_at] = 9;
    assert!(EncryptionSettingRecord::from_canonical_bytes(&edited).is_err());
    let mut edited = bytes.clone();
    edited[padding_at] = 9;
    assert!(EncryptionSettingRecord::from_canonical_bytes(&edited).is_err());

    let mut bytes = assignment().canonical_bytes().unwrap();
    bytes[8] = 0xFF; // first byte of the schema name
    assert!(matches!(
        ColumnAssignment::from_canonical_bytes(&bytes),
        Err(Error::Malformed {
            reason: "text field is not UTF-8",
            ..
        })
    ));
}

#[test]
fn a_wrapped_key_names_a_known_algorithm_exactly() {
    let bytes = wrapped_key().canonical_bytes().unwrap();
    let name = KeyWrapAlgorithm::RsaOaepSha256.name().as_bytes();
    let at = bytes
        .windows(name.len())
        .position(|window| window == name)
        .unwrap();
    // Same length, other names: a lowercase one and "RSA1_5" padded.
    for other in ["rsa-oaep-sha256", "RSA-PKCS1-v1_5!"] {
        let mut edited = bytes.clone();
        edited[at..at + name.len()].copy_from_slice(other.as_bytes());
        assert!(matches!(
            WrappedColumnKey::from_canonical_bytes(&edited),
            Err(Error::Malformed {
                reason: "unknown key wrapping algorithm",
                ..
            })
        ));
    }
}

async fn registry() -> (
    KeyStoreRegistry,
    Arc<MemoryKeyStore>,
    MasterKeyLocation,
    MasterKeyLocation,
) {
    let store = Arc::new(MemoryKeyStore::new());
    store.generate_key("cmk1", 2048).unwrap();
    store.generate_key("cmk2", 2048).unwrap();
    let mut registry = KeyStoreRegistry::new();
    registry
        .register(store.clone(), TrustedKeyPaths::only(["cmk1", "cmk2"]))
        .unwrap();
    let first = MasterKeyLocation::new("memory", "cmk1");
    let second = MasterKeyLocation::new("memory", "cmk2");
    (registry, store, first, second)
}

/// The catalog identity the tests sign for.
const CATALOG: CatalogId = CatalogId([0xCA; 16]);

#[tokio::test]
async fn signatures_bind_every_field() {
    let (registry, _, cmk, other_cmk) = registry().await;
    let signed = SignedRecord::sign(setting_record(), &CATALOG, &registry, &cmk)
        .await
        .unwrap();
    assert_eq!(
        signed.verify(&registry, &cmk, &CATALOG).await.unwrap(),
        &setting_record()
    );

    // The catalog's adversary weakens the setting to deterministic: refused.
    let mut weakened = setting_record();
    weakened.setting.mode = EncryptionMode::Deterministic;
    let forged = SignedRecord::<EncryptionSettingRecord>::decode(
        &weakened.canonical_bytes().unwrap(),
        signed.signature().to_vec(),
    )
    .unwrap();
    let err = forged.verify(&registry, &cmk, &CATALOG).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::SignatureInvalid {
                kind: crate::record::RecordKind::EncryptionSetting,
                ..
            }
        ),
        "{err}"
    );

    // Nor can it change the algorithm a column key was wrapped with.
    let sealed = SignedRecord::<WrappedColumnKey>::seal(
        &registry,
        &CATALOG,
        "cmk",
        &cmk,
        2,
        &ColumnKey::generate().unwrap(),
    )
    .await
    .unwrap();
    let mut downgraded = sealed.unverified().clone();
    downgraded.wrapped.algorithm = KeyWrapAlgorithm::RsaOaepSha1;
    let forged = SignedRecord::<WrappedColumnKey>::decode(
        &downgraded.canonical_bytes().unwrap(),
        sealed.signature().to_vec(),
    )
    .unwrap();
    let err = forged.open(&registry, &CATALOG).await.unwrap_err();
    assert!(matches!(err, Error::SignatureInvalid { .. }), "{err}");

    // A genuine signature by another master key does not count.
    let err = signed
        .verify(&registry, &other_cmk, &CATALOG)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SignatureInvalid { .. }), "{err}");

    // Nor does a genuine signature made for another database's catalog.
    let err = signed
        .verify(&registry, &cmk, &CatalogId([0xDB; 16]))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::SignatureInvalid { .. }), "{err}");
}

#[tokio::test]
async fn sealed_column_key_opens_to_the_same_key() {
    let (registry, _, cmk, _) = registry().await;
    let key = ColumnKey::generate().unwrap();
    let sealed = SignedRecord::seal(&registry, &CATALOG, "cmk", &cmk, 5, &key)
        .await
        .unwrap();
    let stored = SignedRecord::<WrappedColumnKey>::decode(
        sealed.canonical_bytes(),
        sealed.signature().to_vec(),
    )
    .unwrap();
    assert_eq!(
        stored
            .open(&registry, &CATALOG)
            .await
            .unwrap()
            .expose_secret(),
        key.expose_secret()
    );
}

#[tokio::test]
async fn forged_wrapped_key_is_refused_before_the_private_key_runs() {
    let (registry, store, cmk, other_cmk) = registry().await;
    // The attacker can wrap a key of their own with the public key...
    let attacker_key = ColumnKey::generate().unwrap();
    let wrapped = registry.wrap_column_key(&cmk, &attacker_key).await.unwrap();
    let record = WrappedColumnKey {
        master_key_name: "cmk".into(),
        master_key: cmk.clone(),
        key_id: 5,
        wrapped,
    };
    let unwraps_before = store.operation_counts().unwrap;
    // ...but cannot sign it: no signature, a random one, or one by another key.
    let other_signature = registry
        .sign(&other_cmk, &record.canonical_bytes().unwrap())
        .await
        .unwrap();
    for signature in [vec![], vec![7u8; 256], other_signature] {
        let forged =
            SignedRecord::<WrappedColumnKey>::decode(&record.canonical_bytes().unwrap(), signature)
                .unwrap();
        let err = forged.open(&registry, &CATALOG).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::SignatureInvalid {
                    kind: crate::record::RecordKind::WrappedColumnKey,
                    ..
                }
            ),
            "{err}"
        );
    }
    assert_eq!(
        store.operation_counts().unwrap,
        unwraps_before,
        "no unwrap may run on a forged record"
    );
}

#[tokio::test]
async fn record_naming_an_untrusted_master_key_is_refused_without_a_key_store_call() {
    let (registry, store, cmk, _) = registry().await;
    let sealed = SignedRecord::seal(
        &registry,
        &CATALOG,
        "cmk",
        &cmk,
        5,
        &ColumnKey::generate().unwrap(),
    )
    .await
    .unwrap();
    let mut retargeted = sealed.unverified().clone();
    retargeted.master_key = MasterKeyLocation::new("memory", "attacker");
    let forged = SignedRecord::<WrappedColumnKey>::decode(
        &retargeted.canonical_bytes().unwrap(),
        sealed.signature().to_vec(),
    )
    .unwrap();
    let calls_before = store.operation_counts().total();
    let err = forged.open(&registry, &CATALOG).await.unwrap_err();
    assert!(
        matches!(
            err,
            Error::KeyStore(aepg_keystore::KeyStoreError::UntrustedKeyPath { .. })
        ),
        "{err}"
    );
    assert_eq!(store.operation_counts().total(), calls_before);
}
