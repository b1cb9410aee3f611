//! The 22-byte header of a cell (format v1), and the associated data it binds.

use super::error::CellError;
pub(crate) use super::gcm_siv::{NONCE_LEN, TAG_LEN};
use super::plaintext_type::PlaintextType;
use super::setting::EncryptionMode;

/// The only cell format version this library writes and reads.
pub const CELL_FORMAT_VERSION: u8 = 0x01;
/// Flag bit 0: the cell is deterministic.
const FLAG_DETERMINISTIC: u8 = 0x01;
/// Bytes before the nonce: version, flags, CEK id, CES id.
pub(crate) const BOUND_HEADER_LEN: usize = 10;
/// Bytes before the ciphertext.
pub const HEADER_LEN: usize = BOUND_HEADER_LEN + NONCE_LEN;
/// Bytes a cell adds to its (padded) plaintext: header and tag.
pub const CELL_OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Length of the associated data: bound header, type oid, typmod.
pub(crate) const AAD_LEN: usize = BOUND_HEADER_LEN + 8;

/// The clear part of a cell: enough to find the key and setting that open it.
///
/// Parsing one is how a value whose origin is unknown (a view, a `UNION`)
/// finds its column encryption setting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CellHeader {
    /// Deterministic or randomized, from the flags byte.
    pub mode: EncryptionMode,
    /// Id of the column encryption key the cell was made with.
    pub key_id: u32,
    /// Id of the column encryption setting the cell was made under.
    pub setting_id: u32,
    pub(crate) nonce: [u8; NONCE_LEN],
}

impl CellHeader {
    /// Parses the header of `cell`, checking version, flags and minimum length.
    ///
    /// # Errors
    /// [`CellError::TooShort`], [`CellError::UnsupportedVersion`] or [`CellError::UnknownFlags`].
    pub fn parse(cell: &[u8]) -> Result<Self, CellError> {
        if cell.len() < CELL_OVERHEAD {
            return Err(CellError::TooShort { len: cell.len() });
        }
        let version = cell[0];
        if version != CELL_FORMAT_VERSION {
            return Err(CellError::UnsupportedVersion { version });
        }
        let flags = cell[1];
        let mode = match flags {
            0 => EncryptionMode::Randomized,
            FLAG_DETERMINISTIC => EncryptionMode::Deterministic,
            _ => return Err(CellError::UnknownFlags { flags }),
        };
        Ok(Self {
            mode,
            key_id: read_u32(&cell[2..6]),
            setting_id: read_u32(&cell[6..10]),
            nonce: read_array(&cell[BOUND_HEADER_LEN..HEADER_LEN]),
        })
    }

    /// Writes version, flags and ids (the part before the nonce).
    pub(crate) fn bound_bytes(
        mode: EncryptionMode,
        key_id: u32,
        setting_id: u32,
    ) -> [u8; BOUND_HEADER_LEN] {
        let mut bytes = [0u8; BOUND_HEADER_LEN];
        bytes[0] = CELL_FORMAT_VERSION;
        bytes[1] = match mode {
            EncryptionMode::Deterministic => FLAG_DETERMINISTIC,
            EncryptionMode::Randomized => 0,
        };
        bytes[2..6].copy_from_slice(&key_id.to_be_bytes());
        bytes[6..10].copy_from_slice(&setting_id.to_be_bytes());
        bytes
    }
}

/// The associated data of a cell: its bound header, then the plaintext type.
pub(crate) fn associated_data(bound_header: &[u8], plaintext_type: PlaintextType) -> [u8; AAD_LEN] {
    let mut aad = [0u8; AAD_LEN];
    aad[..BOUND_HEADER_LEN].copy_from_slice(bound_header);
    aad[BOUND_HEADER_LEN..BOUND_HEADER_LEN + 4].copy_from_slice(&plaintext_type.oid.to_be_bytes());
    aad[BOUND_HEADER_LEN + 4..].copy_from_slice(&plaintext_type.typmod.to_be_bytes());
    aad
}

fn read_u32(bytes: &[u8]) -> u32 {
    u32::from_be_bytes(read_array(bytes))
}

/// Copies a slice whose length the caller has fixed into an array.
fn read_array<const N: usize>(bytes: &[u8]) -> [u8; N] {
    let mut array = [0u8; N];
    array.copy_from_slice(bytes);
    array
}
