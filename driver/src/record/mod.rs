//! Catalog records: canonical encodings, signed by column master keys.
//!
//! The catalog lives in the database, which is not trusted. Every record a
//! client relies on is therefore signed (RSA-PSS-SHA-256) by a column master
//! key over its canonical encoding, and verified before use.

mod column_assignment;
mod encoding;
mod encryption_setting;
mod error;
mod key_rotation;
mod manifest;
mod signed;
mod wrapped_key;

pub use column_assignment::ColumnAssignment;
pub use encoding::{RecordKind, RECORD_FORMAT_VERSION};
pub use encryption_setting::{EncryptionSettingRecord, CELL_ALGORITHM};
pub use error::RecordError;
pub use key_rotation::KeyRotationRecord;
pub use manifest::ColumnManifest;
pub use signed::{CatalogId, SignedRecord};
pub use wrapped_key::WrappedColumnKey;

/// A catalog record with a canonical byte encoding. Sealed: only the record
/// kinds of this module have a tag byte, and a signature over one kind must
/// never verify as another.
pub trait CatalogRecord: private::Sealed + Sized {
    /// Which kind of record this is; part of the encoding.
    const KIND: RecordKind;

    /// The unique encoding that signatures cover.
    ///
    /// # Errors
    /// [`RecordError::Malformed`] for a field too long to encode.
    fn canonical_bytes(&self) -> Result<Vec<u8>, RecordError>;

    /// Parses the canonical encoding strictly: anything else is an error.
    ///
    /// # Errors
    /// [`RecordError::Malformed`] saying what is wrong.
    fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, RecordError>;
}

mod private {
    pub trait Sealed {}
    impl Sealed for super::WrappedColumnKey {}
    impl Sealed for super::EncryptionSettingRecord {}
    impl Sealed for super::ColumnAssignment {}
    impl Sealed for super::ColumnManifest {}
    impl Sealed for super::KeyRotationRecord {}
}

#[cfg(test)]
mod tests;
