//! `AEAD_AES_256_GCM_SIV` cells under one column encryption key.

use std::fmt;
use std::ops::Range;

use aepg_keystore::ColumnKey;
use hmac::digest::KeyInit;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use zeroize::{Zeroize, Zeroizing};

use super::error::CellError;
use super::gcm_siv::Aes256GcmSiv;
use super::header::{
    associated_data, CellHeader, AAD_LEN, BOUND_HEADER_LEN, HEADER_LEN, NONCE_LEN, TAG_LEN,
};
use super::padding;
use super::setting::{CellSetting, EncryptionMode};

/// Label of the subkey that encrypts cells. Versioned, so a future format
/// derives unrelated keys from the same column key.
const ENCRYPTION_KEY_LABEL: &[u8] = b"aepg/v1/cell-encryption-key";
/// Label of the subkey that derives deterministic nonces.
const NONCE_KEY_LABEL: &[u8] = b"aepg/v1/cell-nonce-key";

/// Encrypts and decrypts cells with one column encryption key (CEK).
///
/// Built once per key and reused: it holds the two subkeys derived from the
/// CEK with HMAC-SHA-256 (an encryption key and a nonce key). Callers say
/// *what* a cell is ([`CellSetting`]), never *how*: nonces, key derivation
/// and padding are fixed here.
pub struct CellCipher {
    key_id: u32,
    aead: Aes256GcmSiv,
    nonce_mac: Hmac<Sha256>,
}

impl CellCipher {
    /// Derives the subkeys of `key`, whose catalog id is `key_id`.
    pub fn new(key_id: u32, key: &ColumnKey) -> Self {
        let mut encryption_key = derive_subkey(key, ENCRYPTION_KEY_LABEL);
        let mut nonce_key = derive_subkey(key, NONCE_KEY_LABEL);
        let aead = Aes256GcmSiv::new(&encryption_key);
        let nonce_mac = mac_with_key(&nonce_key);
        encryption_key.zeroize();
        nonce_key.zeroize();
        Self {
            key_id,
            aead,
            nonce_mac,
        }
    }

    /// The id of the column encryption key this cipher uses.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// Encrypts `plaintext` (a value in PostgreSQL binary format) as a cell of `setting`.
    ///
    /// # Errors
    /// [`CellError::PlaintextTooLong`] if the padded value would not fit in memory.
    pub fn encrypt(&self, setting: &CellSetting, plaintext: &[u8]) -> Result<Vec<u8>, CellError> {
        self.encrypt_with(setting, plaintext, random_nonce)
    }

    /// [`encrypt`](Self::encrypt), appending the cell to `out` and
    /// returning where it is there: many cells in one buffer (a batch of
    /// bulk rows), no allocation of their own. Room for the whole cell is
    /// reserved before the plaintext is copied in, so `out` does not move
    /// while it holds the plaintext, which is encrypted in place; on an
    /// error what was appended is zeroized and cut off again (its contents
    /// are as they were; its allocation may have grown).
    ///
    /// # Errors
    /// As [`encrypt`](Self::encrypt).
    pub fn encrypt_into(
        &self,
        setting: &CellSetting,
        plaintext: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<Range<usize>, CellError> {
        self.encrypt_into_with(setting, plaintext, out, random_nonce)
    }

    /// [`Self::encrypt`] with the randomized nonce chosen by `nonce_source`:
    /// the seam known-answer tests use to pin a randomized cell.
    pub(crate) fn encrypt_with(
        &self,
        setting: &CellSetting,
        plaintext: &[u8],
        nonce_source: impl FnOnce() -> [u8; NONCE_LEN],
    ) -> Result<Vec<u8>, CellError> {
        let mut cell = Vec::new();
        self.encrypt_into_with(setting, plaintext, &mut cell, nonce_source)?;
        Ok(cell)
    }

    /// [`Self::encrypt_into`] with the randomized nonce chosen by
    /// `nonce_source`.
    fn encrypt_into_with(
        &self,
        setting: &CellSetting,
        plaintext: &[u8],
        out: &mut Vec<u8>,
        nonce_source: impl FnOnce() -> [u8; NONCE_LEN],
    ) -> Result<Range<usize>, CellError> {
        let too_long = || CellError::PlaintextTooLong {
            len: plaintext.len(),
        };
        let padded_len = padding::padded_len(setting.padding, plaintext.len())
            .filter(|len| len.checked_add(HEADER_LEN + TAG_LEN).is_some())
            .ok_or_else(too_long)?;
        let bound = CellHeader::bound_bytes(setting.mode, self.key_id, setting.setting_id);
        let aad = associated_data(&bound, setting.plaintext_type);

        let start = out.len();
        let body = start + HEADER_LEN;
        out.try_reserve(HEADER_LEN + padded_len + TAG_LEN)
            .map_err(|_| too_long())?;
        out.extend_from_slice(&bound);
        out.extend_from_slice(&[0; NONCE_LEN]);
        out.extend_from_slice(plaintext);
        padding::pad(setting.padding, out, body, padded_len);

        let nonce = match setting.mode {
            EncryptionMode::Deterministic => self.deterministic_nonce(&aad, &out[body..]),
            EncryptionMode::Randomized => nonce_source(),
        };
        out[start + BOUND_HEADER_LEN..body].copy_from_slice(&nonce);
        match self.aead.encrypt_in_place(&nonce, &aad, &mut out[body..]) {
            Ok(tag) => {
                out.extend_from_slice(&tag);
                Ok(start..out.len())
            }
            Err(_) => {
                out[start..].zeroize();
                out.truncate(start);
                Err(too_long())
            }
        }
    }

    /// Decrypts `cell`, which must have been made under `setting` with this key,
    /// and returns the plaintext (PostgreSQL binary format).
    ///
    /// # Errors
    /// A malformed header ([`CellHeader::parse`]), a cell of another setting,
    /// mode or key, a cell that fails authentication (tampered, truncated,
    /// extended) or carries invalid padding.
    pub fn decrypt(
        &self,
        setting: &CellSetting,
        cell: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, CellError> {
        let sealed = self.check(setting, cell)?;
        let mut plaintext = Zeroizing::new(sealed.body.to_vec());
        let len = self.open(setting, &sealed, &mut plaintext)?;
        plaintext.truncate(len);
        Ok(plaintext)
    }

    /// [`decrypt`](Self::decrypt), appending the plaintext to `plaintexts`
    /// and returning where it is there: many cells' plaintexts in one
    /// buffer, one allocation for them all. When `plaintexts` must grow, its
    /// old allocation is zeroized before it is freed; on an error its
    /// contents are left as they were (its allocation may have grown).
    ///
    /// # Errors
    /// As [`decrypt`](Self::decrypt).
    pub fn decrypt_into(
        &self,
        setting: &CellSetting,
        cell: &[u8],
        plaintexts: &mut Zeroizing<Vec<u8>>,
    ) -> Result<Range<usize>, CellError> {
        let sealed = self.check(setting, cell)?;
        let start = append_zeroizing(plaintexts, sealed.body).start;
        match self.open(setting, &sealed, &mut plaintexts[start..]) {
            Ok(len) => {
                // The padding, zeroized before the next cell overwrites it.
                plaintexts[start + len..].zeroize();
                plaintexts.truncate(start + len);
                Ok(start..start + len)
            }
            Err(error) => {
                plaintexts[start..].zeroize();
                plaintexts.truncate(start);
                Err(error)
            }
        }
    }

    /// Parses `cell`'s header and checks that it was made under `setting`
    /// with this key: what [`open`](Self::open) needs, the body not copied.
    fn check<'cell>(
        &self,
        setting: &CellSetting,
        cell: &'cell [u8],
    ) -> Result<Sealed<'cell>, CellError> {
        let header = CellHeader::parse(cell)?;
        if header.setting_id != setting.setting_id {
            return Err(CellError::FromAnotherSetting {
                expected: setting.setting_id,
                found: header.setting_id,
            });
        }
        if header.mode != setting.mode {
            return Err(CellError::ModeMismatch {
                setting_id: setting.setting_id,
                expected: setting.mode,
            });
        }
        if header.key_id != self.key_id {
            return Err(CellError::KeyMismatch {
                expected: self.key_id,
                found: header.key_id,
            });
        }
        let (body, tag) = cell[HEADER_LEN..].split_at(cell.len() - HEADER_LEN - TAG_LEN);
        Ok(Sealed {
            aad: associated_data(&cell[..BOUND_HEADER_LEN], setting.plaintext_type),
            nonce: header.nonce,
            body,
            tag: tag
                .try_into()
                .map_err(|_| self.authentication_failed(setting))?,
        })
    }

    /// Decrypts `buffer`, a copy of `sealed`'s body, in place and returns
    /// the plaintext's length without its padding. On an error no byte of
    /// an unauthenticated or badly padded plaintext is left in `buffer`.
    fn open(
        &self,
        setting: &CellSetting,
        sealed: &Sealed<'_>,
        buffer: &mut [u8],
    ) -> Result<usize, CellError> {
        self.aead
            .decrypt_in_place(&sealed.nonce, &sealed.aad, buffer, sealed.tag)
            .map_err(|_| self.authentication_failed(setting))?;
        padding::unpadded_len(setting.padding, buffer).ok_or_else(|| {
            buffer.zeroize();
            CellError::PaddingInvalid {
                setting_id: setting.setting_id,
            }
        })
    }

    /// The error of a cell that fails authentication under `setting`.
    fn authentication_failed(&self, setting: &CellSetting) -> CellError {
        CellError::AuthenticationFailed {
            setting_id: setting.setting_id,
            key_id: self.key_id,
        }
    }

    /// First 12 bytes of HMAC-SHA-256(nonce key, AAD ‖ padded plaintext).
    fn deterministic_nonce(&self, aad: &[u8; AAD_LEN], padded_plaintext: &[u8]) -> [u8; NONCE_LEN] {
        let mut mac = self.nonce_mac.clone();
        mac.update(aad);
        mac.update(padded_plaintext);
        let digest = mac.finalize().into_bytes();
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&digest[..NONCE_LEN]);
        nonce
    }
}

/// A cell whose header was checked: what opening it needs.
struct Sealed<'cell> {
    /// The associated data its tag covers.
    aad: [u8; AAD_LEN],
    /// Its nonce.
    nonce: [u8; NONCE_LEN],
    /// Its encrypted (padded) plaintext.
    body: &'cell [u8],
    /// Its tag.
    tag: &'cell [u8; TAG_LEN],
}

/// Appends `bytes` to `buffer`, growing it with [`reserve_zeroizing`]:
/// where they are there.
pub(crate) fn append_zeroizing(buffer: &mut Zeroizing<Vec<u8>>, bytes: &[u8]) -> Range<usize> {
    let start = buffer.len();
    reserve_zeroizing(buffer, bytes.len());
    buffer.extend_from_slice(bytes);
    start..buffer.len()
}

/// Makes room for `additional` more bytes in `buffer`, moving what it
/// holds to a new allocation and zeroizing the old one (a `Vec`'s own growth
/// would free it with the plaintexts still in it).
fn reserve_zeroizing(buffer: &mut Zeroizing<Vec<u8>>, additional: usize) {
    if buffer.capacity() - buffer.len() >= additional {
        return;
    }
    let needed = buffer.len().saturating_add(additional);
    // Doubling, within what a `Vec` may hold.
    let doubled = buffer.capacity().saturating_mul(2).min(isize::MAX as usize);
    let mut grown = Vec::with_capacity(needed.max(doubled));
    grown.extend_from_slice(buffer);
    // The old allocation is zeroized (all of its capacity) when it drops.
    drop(std::mem::replace(buffer, Zeroizing::new(grown)));
}

impl fmt::Debug for CellCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CellCipher")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

/// A nonce from the thread-local userspace CSPRNG (ChaCha, seeded and
/// periodically reseeded from the OS): no system call per cell.
fn random_nonce() -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    rand::rng().fill_bytes(&mut nonce);
    nonce
}

fn derive_subkey(key: &ColumnKey, label: &[u8]) -> [u8; 32] {
    let mut mac = mac_with_key(key.expose_secret());
    mac.update(label);
    mac.finalize().into_bytes().into()
}

/// HMAC-SHA-256 keyed with a 32-byte key. RFC 2104 pads keys shorter than
/// the 64-byte block with zeros, which is done here so keying cannot fail.
fn mac_with_key(key: &[u8; 32]) -> Hmac<Sha256> {
    let mut block = Zeroizing::new([0u8; 64]);
    block[..32].copy_from_slice(key);
    <Hmac<Sha256> as KeyInit>::new(&(*block).into())
}

#[cfg(test)]
pub(crate) fn derive_subkey_for_tests(key: &ColumnKey, label: &[u8]) -> [u8; 32] {
    derive_subkey(key, label)
}
