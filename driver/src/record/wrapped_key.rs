//! The wrapped column key record: a CEK encrypted under a CMK.

use aepg_keystore::MasterKeyLocation;

use super::encoding::{RecordKind, RecordReader, RecordWriter};
use super::CatalogRecord;
use super::RecordError;

/// The key-wrapping algorithm: RSA-OAEP with SHA-256 and MGF1-SHA-256.
pub const KEY_WRAP_ALGORITHM: &str = "RSA-OAEP-SHA256";

/// A column encryption key wrapped (RSA-OAEP-SHA-256) under a column master key.
///
/// Signed as a whole by the same master key, so that a record forged with
/// the public key alone is rejected before the private key ever runs on it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedColumnKey {
    /// Name of the column master key in the catalog.
    pub master_key_name: String,
    /// Where the column master key lives.
    pub master_key: MasterKeyLocation,
    /// Catalog id of the column encryption key.
    pub key_id: u32,
    /// The RSA-OAEP ciphertext of the 32 key bytes.
    pub ciphertext: Vec<u8>,
}

impl CatalogRecord for WrappedColumnKey {
    const KIND: RecordKind = RecordKind::WrappedColumnKey;

    fn canonical_bytes(&self) -> Result<Vec<u8>, RecordError> {
        Ok(RecordWriter::new(Self::KIND)
            .text(&self.master_key_name)?
            .text(&self.master_key.provider)?
            .text(&self.master_key.key_path)?
            .u32(self.key_id)
            .text(KEY_WRAP_ALGORITHM)?
            .bytes(&self.ciphertext)?
            .finish())
    }

    fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut reader = RecordReader::new(bytes, Self::KIND)?;
        let master_key_name = reader.text()?;
        let provider = reader.text()?;
        let key_path = reader.text()?;
        let key_id = reader.u32()?;
        if reader.text()? != KEY_WRAP_ALGORITHM {
            return Err(reader.malformed("unknown key wrapping algorithm"));
        }
        let ciphertext = reader.bytes()?;
        reader.finish()?;
        Ok(Self {
            master_key_name,
            master_key: MasterKeyLocation::new(provider, key_path),
            key_id,
            ciphertext,
        })
    }
}
