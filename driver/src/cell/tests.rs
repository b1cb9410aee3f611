//! Properties of the cell cipher over arbitrary inputs.

use aepg_keystore::ColumnKey;
use proptest::prelude::*;
use zeroize::Zeroizing;

use super::CellError as Error;
use super::*;

fn key(byte: u8) -> ColumnKey {
    ColumnKey::from_unwrapped(Zeroizing::new(vec![byte; 32])).unwrap()
}

fn setting(mode: EncryptionMode, padding: PaddingPolicy) -> CellSetting {
    CellSetting {
        setting_id: 7,
        mode,
        plaintext_type: PlaintextType {
            oid: 25,
            typmod: -1,
        },
        padding,
    }
}

fn any_mode() -> impl Strategy<Value = EncryptionMode> {
    prop_oneof![
        Just(EncryptionMode::Deterministic),
        Just(EncryptionMode::Randomized)
    ]
}

fn any_padding() -> impl Strategy<Value = PaddingPolicy> {
    prop_oneof![
        Just(PaddingPolicy::None),
        Just(PaddingPolicy::Block16),
        Just(PaddingPolicy::Bucket)
    ]
}

proptest! {
    #[test]
    fn cells_decrypted_into_one_buffer_read_back_and_a_failure_leaves_it_as_it_was(
        plaintexts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..12),
        damaged in any::<prop::sample::Index>(),
        capacity in 0usize..64,
        padding in any_padding(),
    ) {
        let cipher = CellCipher::new(1, &key(1));
        let setting = setting(EncryptionMode::Randomized, padding);
        let cells: Vec<Vec<u8>> = plaintexts
            .iter()
            .map(|plaintext| cipher.encrypt(&setting, plaintext).unwrap())
            .collect();
        // A small buffer, so that it grows (zeroizing) along the way.
        let mut buffer = Zeroizing::new(Vec::with_capacity(capacity));
        let damaged = damaged.index(cells.len());
        let mut ranges = Vec::new();
        for (index, cell) in cells.iter().enumerate() {
            if index == damaged {
                let mut tampered = cell.clone();
                *tampered.last_mut().unwrap() ^= 1;
                let before = buffer.to_vec();
                let error = cipher.decrypt_into(&setting, &tampered, &mut buffer).unwrap_err();
                prop_assert!(matches!(error, Error::AuthenticationFailed { .. }), "{error}");
                prop_assert_eq!(&buffer[..], &before[..]);
            }
            ranges.push(cipher.decrypt_into(&setting, cell, &mut buffer).unwrap());
        }
        for (range, plaintext) in ranges.into_iter().zip(&plaintexts) {
            prop_assert_eq!(&buffer[range], &plaintext[..]);
        }
    }

    #[test]
    fn cells_encrypted_into_one_buffer_are_the_cells_encrypt_makes(
        prefix in proptest::collection::vec(any::<u8>(), 0..40),
        plaintexts in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 1..8),
        mode in any_mode(),
        padding in any_padding(),
    ) {
        let cipher = CellCipher::new(1, &key(1));
        let setting = setting(mode, padding);
        // After bytes already there (a COPY's length prefix, earlier rows),
        // in a buffer that grows along the way.
        let mut out = prefix.clone();
        let ranges: Vec<_> = plaintexts
            .iter()
            .map(|plaintext| cipher.encrypt_into(&setting, plaintext, &mut out).unwrap())
            .collect();
        prop_assert_eq!(&out[..prefix.len()], &prefix[..]);
        prop_assert_eq!(ranges.last().unwrap().end, out.len());
        for (range, plaintext) in ranges.into_iter().zip(&plaintexts) {
            let cell = &out[range];
            prop_assert_eq!(&cipher.decrypt(&setting, cell).unwrap()[..], &plaintext[..]);
            let alone = cipher.encrypt(&setting, plaintext).unwrap();
            prop_assert_eq!(cell.len(), alone.len());
            if mode == EncryptionMode::Deterministic {
                prop_assert_eq!(cell, &alone[..]);
            }
        }
    }

    #[test]
    fn round_trip(plaintext in proptest::collection::vec(any::<u8>(), 0..600), mode in any_mode(), padding in any_padding()) {
        let cipher = CellCipher::new(1, &key(1));
        let setting = setting(mode, padding);
        let cell = cipher.encrypt(&setting, &plaintext).unwrap();
        prop_assert_eq!(&cipher.decrypt(&setting, &cell).unwrap()[..], &plaintext[..]);
        let header = CellHeader::parse(&cell).unwrap();
        prop_assert_eq!((header.mode, header.key_id, header.setting_id), (mode, 1, 7));
    }

    #[test]
    fn deterministic_cells_repeat_and_randomized_do_not(plaintext in proptest::collection::vec(any::<u8>(), 0..100), other in proptest::collection::vec(any::<u8>(), 0..100)) {
        let cipher = CellCipher::new(1, &key(1));
        let det = setting(EncryptionMode::Deterministic, PaddingPolicy::Block16);
        prop_assert_eq!(cipher.encrypt(&det, &plaintext).unwrap(), cipher.encrypt(&det, &plaintext).unwrap());
        if plaintext != other {
            prop_assert_ne!(cipher.encrypt(&det, &plaintext).unwrap(), cipher.encrypt(&det, &other).unwrap());
        }
        let rnd = setting(EncryptionMode::Randomized, PaddingPolicy::Block16);
        let a = cipher.encrypt(&rnd, &plaintext).unwrap();
        let b = cipher.encrypt(&rnd, &plaintext).unwrap();
        prop_assert_ne!(&a[10..22], &b[10..22], "randomized nonces must differ");
        prop_assert_ne!(a, b);
    }

    #[test]
    fn every_bit_flip_is_rejected(plaintext in proptest::collection::vec(any::<u8>(), 0..40), mode in any_mode(), padding in any_padding()) {
        let cipher = CellCipher::new(1, &key(1));
        let setting = setting(mode, padding);
        let cell = cipher.encrypt(&setting, &plaintext).unwrap();
        for bit in 0..cell.len() * 8 {
            let mut flipped = cell.clone();
            flipped[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(cipher.decrypt(&setting, &flipped).is_err(), "flip of bit {} accepted", bit);
        }
    }

    #[test]
    fn truncation_and_extension_are_rejected(plaintext in proptest::collection::vec(any::<u8>(), 0..40), mode in any_mode(), padding in any_padding(), extra in proptest::collection::vec(any::<u8>(), 1..20)) {
        let cipher = CellCipher::new(1, &key(1));
        let setting = setting(mode, padding);
        let cell = cipher.encrypt(&setting, &plaintext).unwrap();
        for len in 0..cell.len() {
            prop_assert!(cipher.decrypt(&setting, &cell[..len]).is_err(), "prefix of {} bytes accepted", len);
        }
        let mut extended = cell.clone();
        extended.extend_from_slice(&extra);
        prop_assert!(cipher.decrypt(&setting, &extended).is_err());
        let mut prefixed = extra.clone();
        prefixed.extend_from_slice(&cell);
        prop_assert!(cipher.decrypt(&setting, &prefixed).is_err());
    }

    #[test]
    fn header_edits_are_rejected(plaintext in proptest::collection::vec(any::<u8>(), 0..40), mode in any_mode(), version in any::<u8>(), flags in any::<u8>(), ids in any::<(u32, u32)>()) {
        let cipher = CellCipher::new(1, &key(1));
        let setting = setting(mode, PaddingPolicy::Block16);
        let cell = cipher.encrypt(&setting, &plaintext).unwrap();
        let mut edited = cell.clone();
        edited[0] = version;
        prop_assert_eq!(cipher.decrypt(&setting, &edited).is_err(), version != cell[0]);
        let mut edited = cell.clone();
        edited[1] = flags;
        prop_assert_eq!(cipher.decrypt(&setting, &edited).is_err(), flags != cell[1]);
        let mut edited = cell.clone();
        edited[2..6].copy_from_slice(&ids.0.to_be_bytes());
        prop_assert_eq!(cipher.decrypt(&setting, &edited).is_err(), ids.0 != 1);
        let mut edited = cell.clone();
        edited[6..10].copy_from_slice(&ids.1.to_be_bytes());
        prop_assert_eq!(cipher.decrypt(&setting, &edited).is_err(), ids.1 != 7);
    }

    #[test]
    fn a_cell_does_not_open_under_another_setting_or_key(plaintext in proptest::collection::vec(any::<u8>(), 0..60), mode in any_mode(), padding in any_padding()) {
        let cipher = CellCipher::new(1, &key(1));
        let base = setting(mode, padding);
        let cell = cipher.encrypt(&base, &plaintext).unwrap();
        let others = [
            CellSetting { setting_id: 8, ..base },
            CellSetting { plaintext_type: PlaintextType { oid: 1043, typmod: -1 }, ..base },
            CellSetting { plaintext_type: PlaintextType { oid: 25, typmod: 24 }, ..base },
            CellSetting { mode: if mode == EncryptionMode::Deterministic { EncryptionMode::Randomized } else { EncryptionMode::Deterministic }, ..base },
        ];
        for other in others {
            prop_assert!(cipher.decrypt(&other, &cell).is_err(), "opened under {:?}", other);
        }
        // Same key id, other key bytes: authentication fails.
        let wrong_key = CellCipher::new(1, &key(2)).decrypt(&base, &cell);
        prop_assert!(matches!(wrong_key, Err(Error::AuthenticationFailed { .. })), "wrong key: {:?}", wrong_key);
        // Another key id: refused before decryption.
        let wrong_id = CellCipher::new(2, &key(1)).decrypt(&base, &cell);
        prop_assert!(matches!(wrong_id, Err(Error::KeyMismatch { expected: 2, found: 1 })), "wrong id: {:?}", wrong_id);
    }
}

#[test]
fn block16_hides_lengths_0_to_15_and_padding_is_removed_exactly() {
    let cipher = CellCipher::new(1, &key(1));
    for mode in [EncryptionMode::Deterministic, EncryptionMode::Randomized] {
        let setting = setting(mode, PaddingPolicy::Block16);
        for len in 0..16 {
            let plaintext = vec![0u8; len]; // zeros look like padding: the worst case
            let cell = cipher.encrypt(&setting, &plaintext).unwrap();
            assert_eq!(cell.len(), CELL_OVERHEAD + 16, "length {len}");
            assert_eq!(
                &cipher.decrypt(&setting, &cell).unwrap()[..],
                &plaintext[..]
            );
        }
        let cell = cipher.encrypt(&setting, &[0x80; 16]).unwrap();
        assert_eq!(cell.len(), CELL_OVERHEAD + 32);
    }
}

#[test]
fn fixed_width_cells_have_the_documented_sizes() {
    let cipher = CellCipher::new(1, &key(1));
    let unpadded = setting(EncryptionMode::Deterministic, PaddingPolicy::None);
    assert_eq!(CELL_OVERHEAD, 38);
    assert_eq!(
        cipher
            .encrypt(&unpadded, &42i64.to_be_bytes())
            .unwrap()
            .len(),
        46,
        "int8"
    );
    assert_eq!(
        cipher.encrypt(&unpadded, &[7u8; 16]).unwrap().len(),
        54,
        "uuid"
    );
}

#[test]
fn specific_errors_for_specific_damage() {
    let cipher = CellCipher::new(1, &key(1));
    let det = setting(EncryptionMode::Deterministic, PaddingPolicy::Block16);
    let cell = cipher.encrypt(&det, b"value").unwrap();

    assert!(matches!(
        cipher.decrypt(&det, &cell[..37]),
        Err(Error::TooShort { len: 37 })
    ));
    let mut edited = cell.clone();
    edited[0] = 2;
    assert!(matches!(
        cipher.decrypt(&det, &edited),
        Err(Error::UnsupportedVersion { version: 2 })
    ));
    edited = cell.clone();
    edited[1] = 0x03;
    assert!(matches!(
        cipher.decrypt(&det, &edited),
        Err(Error::UnknownFlags { flags: 3 })
    ));
    edited = cell.clone();
    edited[1] = 0;
    assert!(matches!(
        cipher.decrypt(&det, &edited),
        Err(Error::ModeMismatch { setting_id: 7, .. })
    ));
    edited = cell.clone();
    edited[9] = 9;
    let err = cipher.decrypt(&det, &edited).unwrap_err();
    assert!(matches!(
        err,
        Error::FromAnotherSetting {
            expected: 7,
            found: 9
        }
    ));
    assert!(err.to_string().contains("ciphertext from another column"));
    edited = cell.clone();
    edited[30] ^= 1;
    assert!(matches!(
        cipher.decrypt(&det, &edited),
        Err(Error::AuthenticationFailed { .. })
    ));
}

#[test]
fn errors_and_debug_never_show_plaintext_or_keys() {
    let cipher = CellCipher::new(1, &key(0x5A));
    let det = setting(EncryptionMode::Deterministic, PaddingPolicy::Block16);
    let cell = cipher.encrypt(&det, b"SECRET-PLAINTEXT").unwrap();
    let mut tampered = cell.clone();
    tampered[25] ^= 0xFF;
    let message = format!(
        "{} {:?}",
        cipher.decrypt(&det, &tampered).unwrap_err(),
        cipher
    );
    assert!(!message.contains("SECRET"), "{message}");
    assert!(!message.to_lowercase().contains("5a5a"), "{message}");
}

#[test]
fn hmac_keying_matches_the_reference_construction() {
    use hmac::{Hmac, KeyInit, Mac};
    let subkey = super::cipher::derive_subkey_for_tests(&key(9), b"label");
    let mut reference = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&[9u8; 32]).unwrap();
    reference.update(b"label");
    assert_eq!(subkey, <[u8; 32]>::from(reference.finalize().into_bytes()));
}
