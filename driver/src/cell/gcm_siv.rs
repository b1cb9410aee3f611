//! `AEAD_AES_256_GCM_SIV` (RFC 8452), from AWS-LC through `aws-lc-rs`.
//!
//! AWS-LC's GCM-SIV is assembly on x86-64 with AES-NI and AVX: one routine
//! derives a message's two keys from six AES blocks, another runs POLYVAL,
//! a third expands the message key and encrypts the tag in one pass. A
//! 16-byte cell encrypts in about a third, and opens in about two fifths,
//! of the time it took over the RustCrypto primitives (`aes` 0.9, `polyval`, `ctr`), whose VAES-512
//! backend sets up 64-block registers for every call even when a message
//! is one block long (docs/BENCHMARKS.md, "AWS-LC's GCM-SIV"). Where the
//! assembly cannot run, AWS-LC falls back to its portable C.
//!
//! The unit tests check RFC 8452's AES-256 vectors, and a property test
//! checks every output against the RustCrypto `aes-gcm-siv` crate, so the
//! cell format is the same whichever implementation made a cell.
//!
//! Key material: AWS-LC keeps the key-generating key's schedule in a
//! heap block that `OPENSSL_free` wipes when the key is dropped. Each
//! message's derived keys live on AWS-LC's stack for the length of one
//! call and are not wiped. They would open, and let one forge, any cell
//! under that column key and nonce; reading them needs the process memory
//! that holds the column key's own schedule, which opens every cell.

use aws_lc_rs::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM_SIV};
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
pub struct Aes256GcmSiv {
    key: LessSafeKey,
}

impl Aes256GcmSiv {
    /// The cipher of the 256-bit key-generating `key`.
    ///
    /// # Panics
    /// If AWS-LC cannot set up the key: it refuses only a key of the wrong
    /// length, which the type rules out, and a failed allocation.
    pub fn new(key: &[u8; 32]) -> Self {
        let key = UnboundKey::new(&AES_256_GCM_SIV, key)
            .expect("AWS-LC sets up any 32-byte AES-256-GCM-SIV key");
        Self {
            key: LessSafeKey::new(key),
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
        // After the length check AWS-LC refuses to seal only on an internal
        // failure (a moved context, which its heap-allocated context rules
        // out); it is reported with the length error, the only one callers
        // can act on.
        let tag = self
            .key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(*nonce),
                Aad::from(aad),
                buffer,
            )
            .map_err(|_| TooLong)?;
        tag.as_ref().try_into().map_err(|_| TooLong)
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
        // The tag is compared in constant time by AWS-LC, which also zeroes
        // the output on a mismatch; the wipe here does not rely on that.
        match self.key.open_in_place_separate_tag(
            Nonce::assume_unique_for_key(*nonce),
            Aad::from(aad),
            tag,
            buffer,
        ) {
            Ok(_) => Ok(()),
            Err(_) => {
                buffer.zeroize();
                Err(TagMismatch)
            }
        }
    }
}

/// RFC 8452's limits on associated data and plaintext: 2^36 bytes each.
fn within_limits(aad_len: usize, len: usize) -> bool {
    aad_len as u64 <= MAX_LEN && len as u64 <= MAX_LEN
}

#[cfg(test)]
mod tests {
    use super::*;
    use aes_gcm_siv::aead::{AeadInOut as _, KeyInit as _};
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
