//! The column assignment record: which setting a column's cells are under.

use super::encoding::{RecordKind, RecordReader, RecordWriter};
use super::CatalogRecord;
use super::RecordError;

/// `schema.table.column` is encrypted under setting `setting_id`. Signed, so
/// the catalog cannot silently retarget a column or turn it into plaintext.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnAssignment {
    /// Schema name, as stored in `pg_namespace`.
    pub schema: String,
    /// Table name, as stored in `pg_class`.
    pub table: String,
    /// Column name, as stored in `pg_attribute`.
    pub column: String,
    /// The column encryption setting.
    pub setting_id: u32,
}

impl CatalogRecord for ColumnAssignment {
    const KIND: RecordKind = RecordKind::ColumnAssignment;

    fn canonical_bytes(&self) -> Result<Vec<u8>, RecordError> {
        Ok(RecordWriter::new(Self::KIND)
            .text(&self.schema)?
            .text(&self.table)?
            .text(&self.column)?
            .u32(self.setting_id)
            .finish())
    }

    fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut reader = RecordReader::new(bytes, Self::KIND)?;
        let record = Self {
            schema: reader.text()?,
            table: reader.text()?,
            column: reader.text()?,
            setting_id: reader.u32()?,
        };
        reader.finish()?;
        Ok(record)
    }
}
