//! What a cell is encrypted as: the parts of a column encryption setting the
//! cell cipher needs.

use std::fmt;

use super::plaintext_type::PlaintextType;

/// How equal plaintexts relate to their ciphertexts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum EncryptionMode {
    /// Equal plaintexts give equal cells, so the server can compare, index,
    /// group and enforce `UNIQUE`, and learns which values are equal.
    Deterministic,
    /// Every encryption gives a new cell; the server learns nothing but
    /// NULL-ness and the length class.
    Randomized,
}

impl EncryptionMode {
    /// The mode's name as written in the catalog and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Deterministic => "deterministic",
            Self::Randomized => "randomized",
        }
    }
}

impl fmt::Display for EncryptionMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a plaintext is padded before encryption, so that a cell does not
/// reveal the exact length of a variable-length value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PaddingPolicy {
    /// No padding: for fixed-width types, or when compactness matters more
    /// than hiding the length.
    None,
    /// ISO/IEC 7816-4 padding (`0x80`, then zeros) to the next multiple of 16
    /// bytes: reveals the length class as AES-CBC would. Default for
    /// variable-length types.
    Block16,
    /// ISO/IEC 7816-4 padding to the next power of two, at least 16 bytes:
    /// reveals only the order of magnitude of the length.
    Bucket,
}

impl PaddingPolicy {
    /// The policy's name as written in the catalog and in messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Block16 => "block16",
            Self::Bucket => "bucket",
        }
    }
}

impl fmt::Display for PaddingPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the cell cipher needs to know of a column encryption setting (CES).
///
/// Every field is bound into each cell, so a cell made under one setting
/// does not decrypt under another.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CellSetting {
    /// The setting's id, written in each cell's header.
    pub setting_id: u32,
    /// Deterministic or randomized.
    pub mode: EncryptionMode,
    /// The plaintext's PostgreSQL type.
    pub plaintext_type: PlaintextType,
    /// How plaintexts are padded.
    pub padding: PaddingPolicy,
}
