//! The wrapped column key record: a CEK encrypted under a CMK.

use aepg_keystore::{KeyWrapAlgorithm, MasterKeyLocation, WrappedKey};

use super::encoding::{RecordKind, RecordReader, RecordWriter};
use super::CatalogRecord;
use super::RecordError;

/// A column encryption key wrapped (RSA-OAEP) under a column master key.
///
/// Signed as a whole by the same master key, so that a record forged with
/// the public key alone is rejected before the private key ever runs on it,
/// and the wrapping algorithm it names cannot be changed by the catalog.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WrappedColumnKey {
    /// Name of the column master key in the catalog.
    pub master_key_name: String,
    /// Where the column master key lives.
    pub master_key: MasterKeyLocation,
    /// Catalog id of the column encryption key.
    pub key_id: u32,
    /// The wrapped key bytes and the algorithm that wrapped them.
    pub wrapped: WrappedKey,
}

impl CatalogRecord for WrappedColumnKey {
    const KIND: RecordKind = RecordKind::WrappedColumnKey;

    fn canonical_bytes(&self) -> Result<Vec<u8>, RecordError> {
        Ok(RecordWriter::new(Self::KIND)
            .text(&self.master_key_name)?
            .text(&self.master_key.provider)?
            .text(&self.master_key.key_path)?
            .u32(self.key_id)
            .text(self.wrapped.algorithm.name())?
            .bytes(&self.wrapped.ciphertext)?
            .finish())
    }

    fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut reader = RecordReader::new(bytes, Self::KIND)?;
        let master_key_name = reader.text()?;
        let provider = reader.text()?;
        let key_path = reader.text()?;
        let key_id = reader.u32()?;
        let algorithm = KeyWrapAlgorithm::from_name(&reader.text()?)
            .ok_or_else(|| reader.malformed("unknown key wrapping algorithm"))?;
        let ciphertext = reader.bytes()?;
        reader.finish()?;
        Ok(Self {
            master_key_name,
            master_key: MasterKeyLocation::new(provider, key_path),
            key_id,
            wrapped: WrappedKey::new(algorithm, ciphertext),
        })
    }
}
