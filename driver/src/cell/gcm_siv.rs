//! `AEAD_AES_256_GCM_SIV` (RFC 8452) composed from the `aes` block cipher
//! and the `polyval` universal hash.
//!
//! The construction is the `aes-gcm-siv` crate's, byte for byte (the unit
//! tests check RFC 8452's AES-256 vectors, and a property test checks every
//! output against that crate). It exists for speed: RFC 8452 derives two
//! fresh keys for every message from six AES blocks, and the crate encrypts
//! them one call at a time, about 110 ns on AES-NI, where one six-block call
//! takes about 30 ns (docs/BENCHMARKS.md, "The per-message key derivation").
//! AES, POLYVAL and the CTR keystream are the RustCrypto crates' (`aes`,
//! `polyval`, `ctr`); this module only wires them together, as RFC 8452 §4
//! says.

use aes::cipher::{BlockCipherEncrypt, KeyInit};
use aes::{Aes256Enc, Block};
use ctr::cipher::{InnerIvInit as _, StreamCipherCore as _};
use ctr::flavors::Ctr32LE;
use ctr::CtrCore;
use polyval::universal_hash::UniversalHash;
use polyval::Polyval;
use subtle::ConstantTimeEq;
use zeroize::Zeroize;

/// Length of the AES-GCM-SIV nonce (RFC 8452: 96 bits).
pub const NONCE_LEN: usize = 12;
/// Length of the AES-GCM-SIV authentication tag (RFC 8452: 128 bits).
pub const TAG_LEN: usize = 16;

/// Longest plaintext and associated data RFC 8452 allows: 2^36 bytes.
const MAX_LEN: u64 = 1 << 36;

/// The input was longer than RFC 8452 allows (2^36 bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooLong;

/// The tag did not match: the ciphertext, tag, nonce or associated data
/// was not what the key encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TagMismatch;

/// AES-256-GCM-SIV under one key-generating key.
#[derive(Clone)]
pub struct Aes256GcmSiv {
    key_generating_key: Aes256Enc,
}

impl Aes256GcmSiv {
    /// The cipher of the 256-bit key-generating `key`.
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            key_generating_key: Aes256Enc::new(key.into()),
        }
    }

    /// Encrypts `buffer` in place and returns its tag.
    ///
    /// # Errors
    /// [`TooLong`] if `buffer` or `aad` is longer than 2^36 bytes.
    pub fn encrypt_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buffer: &mut [u8],
    ) -> Result<[u8; TAG_LEN], TooLong> {
        if !within_limits(aad.len(), buffer.len()) {
            return Err(TooLong);
        }
        let (authentication, encryption) = derive_keys(&self.key_generating_key, nonce);
        let tag = tag(authentication, &encryption, nonce, aad, buffer);
        apply_keystream(&encryption, &tag, buffer);
        Ok(tag)
    }

    /// Decrypts `buffer` in place if `tag` authenticates it with `nonce`
    /// and `aad`. On a mismatch `buffer` is wiped (set to zeros): no byte
    /// of an unauthenticated plaintext is left for the caller to read.
    ///
    /// # Errors
    /// [`TagMismatch`] if authentication fails, including for inputs longer
    /// than 2^36 bytes (no tag can be right for them).
    pub fn decrypt_in_place(
        &self,
        nonce: &[u8; NONCE_LEN],
        aad: &[u8],
        buffer: &mut [u8],
        tag: &[u8; TAG_LEN],
    ) -> Result<(), TagMismatch> {
        if !within_limits(aad.len(), buffer.len()) {
            return Err(TagMismatch);
        }
        let (authentication, encryption) = derive_keys(&self.key_generating_key, nonce);
        apply_keystream(&encryption, tag, buffer);
        let expected = self::tag(authentication, &encryption, nonce, aad, buffer);
        if tags_equal(&expected, tag) {
            Ok(())
        } else {
            buffer.zeroize();
            Err(TagMismatch)
        }
    }
}

/// RFC 8452's limits on associated data and plaintext: 2^36 bytes each.
fn within_limits(aad_len: usize, len: usize) -> bool {
    aad_len as u64 <= MAX_LEN && len as u64 <= MAX_LEN
}

/// Whether two tags are equal, in constant time: one comparison of two
/// 128-bit words, not sixteen of bytes.
fn tags_equal(left: &[u8; TAG_LEN], right: &[u8; TAG_LEN]) -> bool {
    u128::from_ne_bytes(*left)
        .ct_eq(&u128::from_ne_bytes(*right))
        .into()
}

/// One message's keys (RFC 8452 §4), derived from the key-generating key
/// and the nonce: the POLYVAL key and the AES-256 encryption key. The six
/// blocks `le32(i) ‖ nonce`, i = 0..5, are encrypted in one call and the
/// first half of each kept: two halves make the POLYVAL key, four the
/// AES-256 key. The intermediate copies are wiped here; the AES key
/// schedule and the POLYVAL key when they are dropped (the `zeroize`
/// features of `aes` and `polyval`).
fn derive_keys(key_generating_key: &Aes256Enc, nonce: &[u8; NONCE_LEN]) -> (Polyval, Aes256Enc) {
    let mut blocks = [Block::default(); 6];
    for (counter, block) in (0u32..).zip(blocks.iter_mut()) {
        block[..4].copy_from_slice(&counter.to_le_bytes());
        block[4..].copy_from_slice(nonce);
    }
    key_generating_key.encrypt_blocks(&mut blocks);
    let mut authentication_key = [0u8; 16];
    let mut encryption_key = [0u8; 32];
    for (half, block) in authentication_key
        .chunks_exact_mut(8)
        .chain(encryption_key.chunks_exact_mut(8))
        .zip(&blocks)
    {
        half.copy_from_slice(&block[..8]);
    }
    // Built from references to the arrays, so no unwiped copy is made.
    let keys = (
        Polyval::new((&authentication_key).into()),
        Aes256Enc::new((&encryption_key).into()),
    );
    authentication_key.zeroize();
    encryption_key.zeroize();
    for block in &mut blocks {
        block.as_mut_slice().zeroize();
    }
    keys
}

/// The tag of `plaintext` (RFC 8452 §4): POLYVAL over the padded
/// associated data, the padded plaintext and their bit lengths, XORed
/// with the nonce, its top bit cleared, encrypted.
///
/// Takes the POLYVAL state by value: `finalize` consumes it, and
/// `polyval`'s `zeroize` feature wipes its key as it is dropped.
fn tag(
    mut polyval: Polyval,
    encryption: &Aes256Enc,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
) -> [u8; TAG_LEN] {
    polyval.update_padded(aad);
    polyval.update_padded(plaintext);
    let mut lengths = Block::default();
    lengths[..8].copy_from_slice(&(aad.len() as u64 * 8).to_le_bytes());
    lengths[8..].copy_from_slice(&(plaintext.len() as u64 * 8).to_le_bytes());
    polyval.update(&[lengths]);
    let mut tag = polyval.finalize();
    for (byte, nonce_byte) in tag.iter_mut().zip(nonce) {
        *byte ^= nonce_byte;
    }
    tag[15] &= 0x7f;
    encryption.encrypt_block(&mut tag);
    tag.into()
}

/// XORs `buffer` with the keystream of AES-CTR whose first counter block
/// is `tag` with its top bit set, the counter being the block's first
/// four bytes, little-endian, wrapping (RFC 8452 §4): the `ctr` crate's
/// `Ctr32LE`.
fn apply_keystream(encryption: &Aes256Enc, tag: &[u8; TAG_LEN], buffer: &mut [u8]) {
    let mut counter_block = Block::from(*tag);
    counter_block[15] |= 0x80;
    CtrCore::<&Aes256Enc, Ctr32LE>::inner_iv_init(encryption, &counter_block)
        .apply_keystream_partial(buffer.into());
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm_siv::aead::AeadInOut as _;
    use proptest::prelude::*;

    /// One RFC 8452 vector: key, nonce, AAD, plaintext, ciphertext ‖ tag.
    struct Vector {
        key: [u8; 32],
        nonce: [u8; NONCE_LEN],
        aad: Vec<u8>,
        plaintext: Vec<u8>,
        sealed: Vec<u8>,
    }

    /// RFC 8452's AES-256 vectors (Appendix C.2 and the counter-wrap ones
    /// of C.3), one a line in `rfc8452_aes256.txt`.
    fn rfc_8452_vectors() -> Vec<Vector> {
        let field = |text: &str| {
            if text == "-" {
                Vec::new()
            } else {
                hex::decode(text).expect("hex field")
            }
        };
        include_str!("rfc8452_aes256.txt")
            .lines()
            .filter(|line| !line.starts_with('#') && !line.is_empty())
            .map(|line| {
                let fields: Vec<Vec<u8>> = line.split(' ').map(field).collect();
                let [key, nonce, aad, plaintext, sealed] =
                    <[Vec<u8>; 5]>::try_from(fields).expect("five fields");
                Vector {
                    key: key.try_into().expect("32-byte key"),
                    nonce: nonce.try_into().expect("12-byte nonce"),
                    aad,
                    plaintext,
                    sealed,
                }
            })
            .collect()
    }

    #[test]
    fn rfc_8452_vectors_encrypt_and_decrypt() {
        let vectors = rfc_8452_vectors();
        assert_eq!(vectors.len(), 26);
        for vector in vectors {
            let cipher = Aes256GcmSiv::new(&vector.key);
            let mut buffer = vector.plaintext.clone();
            let tag = cipher
                .encrypt_in_place(&vector.nonce, &vector.aad, &mut buffer)
                .expect("short input");
            let mut sealed = buffer.clone();
            sealed.extend_from_slice(&tag);
            assert_eq!(hex::encode(&sealed), hex::encode(&vector.sealed));
            cipher
                .decrypt_in_place(&vector.nonce, &vector.aad, &mut buffer, &tag)
                .expect("authentic");
            assert_eq!(buffer, vector.plaintext);
        }
    }

    #[test]
    fn every_flipped_bit_fails_and_wipes_the_buffer() {
        let vector = rfc_8452_vectors().swap_remove(10);
        assert!(!vector.aad.is_empty() && vector.plaintext.len() > 16);
        let cipher = Aes256GcmSiv::new(&vector.key);
        let (body, tag) = vector.sealed.split_at(vector.sealed.len() - TAG_LEN);
        let tag: [u8; TAG_LEN] = tag.try_into().expect("tag");
        let inputs = [
            body.to_vec(),
            tag.to_vec(),
            vector.aad.clone(),
            vector.nonce.to_vec(),
        ];
        for (which, input) in inputs.iter().enumerate() {
            for bit in 0..input.len() * 8 {
                let mut parts = inputs.clone();
                parts[which][bit / 8] ^= 1 << (bit % 8);
                let nonce: [u8; NONCE_LEN] = parts[3].clone().try_into().expect("nonce");
                let tag: [u8; TAG_LEN] = parts[1].clone().try_into().expect("tag");
                let mut buffer = parts[0].clone();
                assert_eq!(
                    cipher.decrypt_in_place(&nonce, &parts[2], &mut buffer, &tag),
                    Err(TagMismatch),
                    "input {which}, bit {bit}"
                );
                assert!(buffer.iter().all(|&byte| byte == 0));
            }
        }
    }

    #[test]
    fn tags_equal_only_when_every_bit_is() {
        let tag: [u8; TAG_LEN] = core::array::from_fn(|index| index as u8 * 17);
        assert!(tags_equal(&tag, &tag));
        for bit in 0..TAG_LEN * 8 {
            let mut other = tag;
            other[bit / 8] ^= 1 << (bit % 8);
            assert!(!tags_equal(&tag, &other), "bit {bit}");
        }
    }

    #[test]
    fn lengths_up_to_two_to_the_36_are_allowed() {
        let limit = usize::try_from(MAX_LEN).expect("64-bit");
        assert!(within_limits(0, 0));
        assert!(within_limits(limit, limit));
        assert!(!within_limits(limit + 1, 0));
        assert!(!within_limits(0, limit + 1));
    }

    proptest! {
        /// Every output is the `aes-gcm-siv` crate's, and each decrypts
        /// what the other encrypted.
        #[test]
        fn agrees_with_the_aes_gcm_siv_crate(
            key in any::<[u8; 32]>(),
            nonce in any::<[u8; NONCE_LEN]>(),
            aad in proptest::collection::vec(any::<u8>(), 0..80),
            plaintext in proptest::collection::vec(any::<u8>(), 0..400),
        ) {
            let ours = Aes256GcmSiv::new(&key);
            let theirs = aes_gcm_siv::Aes256GcmSiv::new(&key.into());
            let mut our_buffer = plaintext.clone();
            let our_tag = ours.encrypt_in_place(&nonce, &aad, &mut our_buffer).expect("short");
            let mut their_buffer = plaintext.clone();
            let their_tag = theirs
                .encrypt_inout_detached(&nonce.into(), &aad, their_buffer.as_mut_slice().into())
                .expect("short");
            prop_assert_eq!(&our_buffer, &their_buffer);
            prop_assert_eq!(our_tag.as_slice(), their_tag.as_slice());
            theirs
                .decrypt_inout_detached(
                    &nonce.into(),
                    &aad,
                    our_buffer.as_mut_slice().into(),
                    &our_tag.into(),
                )
                .expect("the crate opens ours");
            prop_assert_eq!(&our_buffer, &plaintext);
            ours.decrypt_in_place(&nonce, &aad, &mut their_buffer, &their_tag.into())
                .expect("we open the crate's");
            prop_assert_eq!(&their_buffer, &plaintext);
        }
    }
}
