//! The column key rotation record: which key replaces a setting's key.

use super::encoding::{RecordKind, RecordReader, RecordWriter};
use super::CatalogRecord;
use super::RecordError;

/// Setting `setting_id`'s column key `from_key` is being replaced by
/// `to_key`. Signed by the master keys of both when the rotation begins,
/// so the server cannot steer a rotation onto another key (one it kept
/// from before it was deleted, say); a record of an earlier rotation names
/// another `from_key` than the setting's current one, and is refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyRotationRecord {
    /// The setting whose key is replaced.
    pub setting_id: u32,
    /// The key it names when the rotation begins.
    pub from_key: u32,
    /// The new key, made for this rotation.
    pub to_key: u32,
}

impl CatalogRecord for KeyRotationRecord {
    const KIND: RecordKind = RecordKind::KeyRotation;

    fn canonical_bytes(&self) -> Result<Vec<u8>, RecordError> {
        Ok(RecordWriter::new(Self::KIND)
            .u32(self.setting_id)
            .u32(self.from_key)
            .u32(self.to_key)
            .finish())
    }

    fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut reader = RecordReader::new(bytes, Self::KIND)?;
        let record = Self {
            setting_id: reader.u32()?,
            from_key: reader.u32()?,
            to_key: reader.u32()?,
        };
        reader.finish()?;
        Ok(record)
    }
}
