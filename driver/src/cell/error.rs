//! The cell layer's error type.

use super::setting::EncryptionMode;

/// Why a cell could not be made or read.
///
/// Variants name setting and key ids, never a value or key material. The
/// client adds the column and the settings' names when it reports one.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CellError {
    /// A cell is shorter than the smallest valid cell.
    #[error("encrypted cell is {len} bytes, shorter than the 38 bytes of any valid cell")]
    TooShort {
        /// Its length.
        len: usize,
    },
    /// A cell has a format version this library does not know.
    #[error("encrypted cell has format version {version:#04x}; this library reads version 0x01")]
    UnsupportedVersion {
        /// The version byte found.
        version: u8,
    },
    /// A cell's flags byte has bits this library does not know.
    #[error("encrypted cell has unknown flags {flags:#04x}")]
    UnknownFlags {
        /// The flags byte found.
        flags: u8,
    },
    /// The cell was made under another column encryption setting.
    #[error("ciphertext from another column: cell belongs to encryption setting {found}, expected {expected}")]
    FromAnotherSetting {
        /// The setting the cell was read under.
        expected: u32,
        /// The setting its header names.
        found: u32,
    },
    /// The cell's mode flag disagrees with its setting.
    #[error(
        "encrypted cell's mode does not match encryption setting {setting_id}, which is {expected}"
    )]
    ModeMismatch {
        /// The setting.
        setting_id: u32,
        /// The setting's mode.
        expected: EncryptionMode,
    },
    /// The cell names another column encryption key than the one offered.
    #[error("encrypted cell was made with column key {found}, not with column key {expected}")]
    KeyMismatch {
        /// The key offered.
        expected: u32,
        /// The key the header names.
        found: u32,
    },
    /// Authentication failed: the cell was altered, truncated or extended.
    #[error("encrypted cell of setting {setting_id} failed authentication under column key {key_id}: it was altered or damaged")]
    AuthenticationFailed {
        /// The setting.
        setting_id: u32,
        /// The key.
        key_id: u32,
    },
    /// The decrypted value does not end in valid padding.
    #[error("encrypted cell of setting {setting_id} has invalid padding")]
    PaddingInvalid {
        /// The setting.
        setting_id: u32,
    },
    /// The plaintext is too long to be encrypted.
    #[error("a value of {len} bytes is too long to encrypt")]
    PlaintextTooLong {
        /// Its length.
        len: usize,
    },
}
