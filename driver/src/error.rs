//! The error type of the `aepg` crate.

use aepg_keystore::KeyStoreError;

use crate::cell::EncryptionMode;

/// Everything that can go wrong in aepg.
///
/// Messages name the setting, key, record or column involved; they never
/// carry key material or the plaintext of an encrypted value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A cell is shorter than the smallest valid cell.
    #[error("encrypted cell is {len} bytes, shorter than the 38 bytes of any valid cell")]
    CellTooShort {
        /// Its length.
        len: usize,
    },
    /// A cell has a format version this library does not know.
    #[error("encrypted cell has format version {version:#04x}; this library reads version 0x01")]
    UnsupportedCellVersion {
        /// The version byte found.
        version: u8,
    },
    /// A cell's flags byte has bits this library does not know.
    #[error("encrypted cell has unknown flags {flags:#04x}")]
    UnknownCellFlags {
        /// The flags byte found.
        flags: u8,
    },
    /// The cell was made under another column encryption setting.
    #[error("ciphertext from another column: cell belongs to encryption setting {found}, expected {expected}")]
    CellFromAnotherSetting {
        /// The setting the cell was read under.
        expected: u32,
        /// The setting its header names.
        found: u32,
    },
    /// The cell's mode flag disagrees with its setting.
    #[error(
        "encrypted cell's mode does not match encryption setting {setting_id}, which is {expected}"
    )]
    CellModeMismatch {
        /// The setting.
        setting_id: u32,
        /// The setting's mode.
        expected: EncryptionMode,
    },
    /// The cell names another column encryption key than the one offered.
    #[error("encrypted cell was made with column key {found}, not with column key {expected}")]
    CellKeyMismatch {
        /// The key offered.
        expected: u32,
        /// The key the header names.
        found: u32,
    },
    /// Authentication failed: the cell was altered, truncated or extended.
    #[error("encrypted cell of setting {setting_id} failed authentication under column key {key_id}: it was altered or damaged")]
    CellAuthenticationFailed {
        /// The setting.
        setting_id: u32,
        /// The key.
        key_id: u32,
    },
    /// The decrypted value does not end in valid padding.
    #[error("encrypted cell of setting {setting_id} has invalid padding")]
    CellPaddingInvalid {
        /// The setting.
        setting_id: u32,
    },
    /// The plaintext is too long to be encrypted.
    #[error("a value of {len} bytes is too long to encrypt")]
    PlaintextTooLong {
        /// Its length.
        len: usize,
    },
    /// A catalog record's bytes are not a valid canonical encoding.
    #[error("malformed {kind} record: {reason}")]
    MalformedRecord {
        /// The kind of record expected.
        kind: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// A catalog record's signature does not verify under its master key.
    #[error("{kind} record is not signed by column master key {master_key}: refusing to use it")]
    RecordSignatureInvalid {
        /// The kind of record.
        kind: &'static str,
        /// The master key location that should have signed it.
        master_key: String,
    },
    /// A key store refused or failed.
    #[error(transparent)]
    KeyStore(#[from] KeyStoreError),
}
