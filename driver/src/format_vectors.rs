//! Checks the code against the known-answer vectors printed in `docs/FORMAT.md`,
//! so the document and the implementation cannot drift apart.

use std::collections::HashMap;
use std::sync::Arc;

use aepg_keystore::{
    ColumnKey, KeyStoreRegistry, MasterKeyLocation, MemoryKeyStore, TrustedKeyPaths,
};
use zeroize::Zeroizing;

use crate::cell::{CellCipher, CellSetting, EncryptionMode, PaddingPolicy, PlaintextType};
use crate::names::ColumnName;
use crate::record::{CatalogId, CatalogRecord, ColumnManifest, SignedRecord, WrappedColumnKey};

const FORMAT_MD: &str = include_str!("../../docs/FORMAT.md");
const KAT_MASTER_KEY_PEM: &str = include_str!("../../docs/vectors/kat-master-key.pem");

/// The `kat` blocks of FORMAT.md, each a map of field name to value.
fn vectors() -> Vec<HashMap<&'static str, &'static str>> {
    let mut vectors = Vec::new();
    let mut current: Option<HashMap<&str, &str>> = None;
    for line in FORMAT_MD.lines() {
        match (line.trim(), current.as_mut()) {
            ("```kat", None) => current = Some(HashMap::new()),
            ("```", Some(_)) => vectors.extend(current.take()),
            (field, Some(map)) => {
                let (name, value) = field.split_once(char::is_whitespace).unwrap();
                map.insert(name, value.trim());
            }
            _ => {}
        }
    }
    vectors
}

fn hex_field(vector: &HashMap<&str, &str>, name: &str) -> Vec<u8> {
    hex::decode(vector[name]).unwrap_or_else(|_| panic!("{name} of {} is not hex", vector["name"]))
}

fn column_key(vector: &HashMap<&str, &str>) -> ColumnKey {
    ColumnKey::from_unwrapped(Zeroizing::new(hex_field(vector, "cek"))).unwrap()
}

fn cell_setting(vector: &HashMap<&str, &str>) -> CellSetting {
    CellSetting {
        setting_id: vector["ces_id"].parse().unwrap(),
        mode: match vector["mode"] {
            "deterministic" => EncryptionMode::Deterministic,
            "randomized" => EncryptionMode::Randomized,
            other => panic!("unknown mode {other}"),
        },
        plaintext_type: PlaintextType {
            oid: vector["type_oid"].parse().unwrap(),
            typmod: vector["typmod"].parse().unwrap(),
        },
        padding: match vector["padding"] {
            "none" => PaddingPolicy::None,
            "block16" => PaddingPolicy::Block16,
            "bucket" => PaddingPolicy::Bucket,
            other => panic!("unknown padding {other}"),
        },
    }
}

#[test]
fn format_md_has_every_kind_of_vector() {
    let kinds: Vec<&str> = vectors().iter().map(|v| v["kind"]).collect();
    for kind in ["subkeys", "cell", "wrapped-key", "manifest"] {
        assert!(kinds.contains(&kind), "no {kind} vector in docs/FORMAT.md");
    }
    let cells: Vec<_> = vectors()
        .into_iter()
        .filter(|v| v["kind"] == "cell")
        .collect();
    assert!(cells.iter().any(|v| v["mode"] == "deterministic"));
    assert!(cells.iter().any(|v| v["mode"] == "randomized"));
}

#[test]
fn subkey_vectors() {
    for vector in vectors().into_iter().filter(|v| v["kind"] == "subkeys") {
        let key = column_key(&vector);
        let derive = crate::cell::derive_subkey_for_tests;
        assert_eq!(
            hex::encode(derive(&key, b"aepg/v1/cell-encryption-key")),
            vector["encryption_key"]
        );
        assert_eq!(
            hex::encode(derive(&key, b"aepg/v1/cell-nonce-key")),
            vector["nonce_key"]
        );
    }
}

#[test]
fn cell_vectors() {
    for vector in vectors().into_iter().filter(|v| v["kind"] == "cell") {
        let name = vector["name"];
        let cipher = CellCipher::new(vector["cek_id"].parse().unwrap(), &column_key(&vector));
        let setting = cell_setting(&vector);
        let plaintext = hex_field(&vector, "plaintext");
        let expected = hex_field(&vector, "cell");
        let cell = match setting.mode {
            EncryptionMode::Deterministic => cipher.encrypt(&setting, &plaintext).unwrap(),
            EncryptionMode::Randomized => {
                let nonce: [u8; 12] = hex_field(&vector, "nonce").try_into().unwrap();
                cipher.encrypt_with(&setting, &plaintext, || nonce).unwrap()
            }
        };
        assert_eq!(hex::encode(&cell), hex::encode(&expected), "vector {name}");
        assert_eq!(
            &cipher.decrypt(&setting, &expected).unwrap()[..],
            &plaintext[..],
            "vector {name}"
        );
    }
}

#[tokio::test]
async fn wrapped_key_vectors() {
    for vector in vectors().into_iter().filter(|v| v["kind"] == "wrapped-key") {
        let location = MasterKeyLocation::new(vector["provider"], vector["key_path"]);
        let registry = kat_registry(&location.key_path);
        let canonical = hex_field(&vector, "record");
        let record =
            SignedRecord::<WrappedColumnKey>::decode(&canonical, hex_field(&vector, "signature"))
                .unwrap();
        let fields = record.unverified();
        assert_eq!(fields.master_key_name, vector["cmk_name"]);
        assert_eq!(fields.master_key, location);
        assert_eq!(fields.key_id.to_string(), vector["cek_id"]);
        assert_eq!(
            fields.canonical_bytes().unwrap(),
            canonical,
            "encoding is canonical"
        );

        let catalog = CatalogId::from_slice(&hex_field(&vector, "catalog_id")).unwrap();
        let opened = record.open(&registry, &catalog).await.unwrap();
        assert_eq!(opened.expose_secret()[..], hex_field(&vector, "cek")[..]);
    }
}

/// The KAT master key in a memory store, trusted at `key_path`.
fn kat_registry(key_path: &str) -> KeyStoreRegistry {
    let store = MemoryKeyStore::new();
    store.import_pem(key_path, KAT_MASTER_KEY_PEM).unwrap();
    let mut registry = KeyStoreRegistry::new();
    registry
        .register(
            Arc::new(store),
            TrustedKeyPaths::only([key_path.to_owned()]),
        )
        .unwrap();
    registry
}

/// `public.t.c=1,…` as a manifest's columns.
fn manifest_columns(text: &str) -> std::collections::BTreeMap<ColumnName, u32> {
    text.split(',')
        .map(|entry| {
            let (column, setting) = entry.split_once('=').unwrap();
            let parts: Vec<&str> = column.split('.').collect();
            (
                ColumnName::new(parts[0], parts[1], parts[2]),
                setting.parse().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn manifest_vectors() {
    for vector in vectors().into_iter().filter(|v| v["kind"] == "manifest") {
        let location = MasterKeyLocation::new(vector["provider"], vector["key_path"]);
        let registry = kat_registry(&location.key_path);
        let canonical = hex_field(&vector, "record");
        let record =
            SignedRecord::<ColumnManifest>::decode(&canonical, hex_field(&vector, "signature"))
                .unwrap();
        let expected = ColumnManifest {
            master_key_name: vector["cmk_name"].to_owned(),
            master_key: location.clone(),
            generation: vector["generation"].parse().unwrap(),
            columns: manifest_columns(vector["columns"]),
        };
        assert_eq!(record.unverified(), &expected);
        assert_eq!(
            expected.canonical_bytes().unwrap(),
            canonical,
            "encoding is canonical"
        );
        let catalog = CatalogId::from_slice(&hex_field(&vector, "catalog_id")).unwrap();
        assert_eq!(
            record.verify(&registry, &location, &catalog).await.unwrap(),
            &expected
        );
    }
}

/// Prints fresh vectors; run with `cargo test -p aepg print_vectors -- --ignored --nocapture`
/// when the format changes (and bump the format version).
#[tokio::test]
#[ignore = "generates the vectors of docs/FORMAT.md"]
async fn print_vectors() {
    let cek_bytes: Vec<u8> = (0u8..32).collect();
    let key = ColumnKey::from_unwrapped(Zeroizing::new(cek_bytes.clone())).unwrap();
    let derive = crate::cell::derive_subkey_for_tests;
    println!(
        "kind subkeys\nname subkeys-0\ncek {}",
        hex::encode(&cek_bytes)
    );
    println!(
        "encryption_key {}",
        hex::encode(derive(&key, b"aepg/v1/cell-encryption-key"))
    );
    println!(
        "nonce_key {}\n",
        hex::encode(derive(&key, b"aepg/v1/cell-nonce-key"))
    );
    /// Name, setting id, mode, type oid, padding, plaintext.
    type Case = (
        &'static str,
        u32,
        EncryptionMode,
        u32,
        PaddingPolicy,
        Vec<u8>,
    );
    let cases: [Case; 4] = [
        (
            "det-text-block16",
            7,
            EncryptionMode::Deterministic,
            25,
            PaddingPolicy::Block16,
            b"Ada Lovelace".to_vec(),
        ),
        (
            "det-int8-none",
            8,
            EncryptionMode::Deterministic,
            20,
            PaddingPolicy::None,
            1815i64.to_be_bytes().to_vec(),
        ),
        (
            "rnd-int8-none",
            9,
            EncryptionMode::Randomized,
            20,
            PaddingPolicy::None,
            1815i64.to_be_bytes().to_vec(),
        ),
        (
            "rnd-text-bucket",
            10,
            EncryptionMode::Randomized,
            25,
            PaddingPolicy::Bucket,
            b"Analytical Engine, 1843".to_vec(),
        ),
    ];
    let cipher = CellCipher::new(1, &key);
    let nonce: [u8; 12] = core::array::from_fn(|i| 0xA0 + i as u8);
    for (name, ces_id, mode, oid, padding, plaintext) in cases {
        let setting = CellSetting {
            setting_id: ces_id,
            mode,
            plaintext_type: PlaintextType { oid, typmod: -1 },
            padding,
        };
        let cell = cipher.encrypt_with(&setting, &plaintext, || nonce).unwrap();
        println!("kind cell\nname {name}\ncek {}\ncek_id 1\nces_id {ces_id}\nmode {mode}\ntype_oid {oid}\ntypmod -1\npadding {padding}", hex::encode(&cek_bytes));
        if mode == EncryptionMode::Randomized {
            println!("nonce {}", hex::encode(nonce));
        }
        println!(
            "plaintext {}\ncell {}\n",
            hex::encode(&plaintext),
            hex::encode(&cell)
        );
    }
    let store = MemoryKeyStore::new();
    store
        .import_pem("kat-master-key", KAT_MASTER_KEY_PEM)
        .unwrap();
    let mut registry = KeyStoreRegistry::new();
    registry
        .register(Arc::new(store), TrustedKeyPaths::Any)
        .unwrap();
    let location = MasterKeyLocation::new("memory", "kat-master-key");
    let catalog = CatalogId(core::array::from_fn(|i| 0xC0 + i as u8));
    let record =
        SignedRecord::<WrappedColumnKey>::seal(&registry, &catalog, "kat-cmk", &location, 1, &key)
            .await
            .unwrap();
    println!("kind wrapped-key\nname wrapped-key-0\ncmk_name kat-cmk\nprovider memory\nkey_path kat-master-key\ncek_id 1\ncek {}", hex::encode(&cek_bytes));
    println!(
        "catalog_id {catalog}\nrecord {}\nsignature {}",
        hex::encode(record.canonical_bytes()),
        hex::encode(record.signature())
    );
    let columns = "public.patients.diagnosis=2,public.patients.ssn=1";
    let manifest = ColumnManifest {
        master_key_name: "kat-cmk".to_owned(),
        master_key: location.clone(),
        generation: 7,
        columns: manifest_columns(columns),
    };
    let signed = SignedRecord::sign(manifest, &catalog, &registry, &location)
        .await
        .unwrap();
    println!("\nkind manifest\nname manifest-0\ncmk_name kat-cmk\nprovider memory\nkey_path kat-master-key\ngeneration 7\ncolumns {columns}");
    println!(
        "catalog_id {catalog}\nrecord {}\nsignature {}",
        hex::encode(signed.canonical_bytes()),
        hex::encode(signed.signature())
    );
}
