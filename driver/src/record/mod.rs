//! Catalog records: canonical encodings, signed by column master keys.
//!
//! The catalog lives in the database, which is not trusted. Every record a
//! client relies on is therefore signed (RSA-PSS-SHA-256) by a column master
//! key over its canonical encoding, and verified before use.

mod column_assignment;
mod encoding;
mod encryption_setting;
mod signed;
mod wrapped_key;

pub use column_assignment::ColumnAssignment;
pub use encoding::{RecordKind, RECORD_FORMAT_VERSION};
pub use encryption_setting::{EncryptionSettingRecord, CELL_ALGORITHM};
pub use signed::{CatalogId, SignedRecord};
pub use wrapped_key::{WrappedColumnKey, KEY_WRAP_ALGORITHM};

use crate::Error;

/// A catalog record with a canonical byte encoding.
pub trait CatalogRecord: Sized {
    /// Which kind of record this is; part of the encoding.
    const KIND: RecordKind;

    /// The unique encoding that signatures cover.
    ///
    /// # Errors
    /// [`Error::MalformedRecord`] for a field too long to encode.
    fn canonical_bytes(&self) -> Result<Vec<u8>, Error>;

    /// Parses the canonical encoding strictly: anything else is an error.
    ///
    /// # Errors
    /// [`Error::MalformedRecord`] saying what is wrong.
    fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, Error>;
}

#[cfg(test)]
mod tests;
