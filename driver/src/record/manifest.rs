//! The column manifest record: every encrypted column of the catalog at one
//! generation, signed by a column master key.

use std::collections::BTreeMap;

use aepg_keystore::MasterKeyLocation;

use super::encoding::{RecordKind, RecordReader, RecordWriter};
use super::{CatalogRecord, RecordError};
use crate::names::ColumnName;

/// The whole set of encrypted columns (table and view columns, with their
/// settings) as one master key's holder signed it at catalog generation
/// `generation`.
///
/// A column record deleted, or made unverifiable, is then a *missing*
/// encrypted column, not a plaintext one; and a client that saw generation
/// `n` refuses any manifest of that key older than `n`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ColumnManifest {
    /// Name of the signing master key in the catalog.
    pub master_key_name: String,
    /// Where the signing master key lives.
    pub master_key: MasterKeyLocation,
    /// The catalog generation this manifest was signed at.
    pub generation: u64,
    /// Every encrypted column and its setting id.
    pub columns: BTreeMap<ColumnName, u32>,
}

impl CatalogRecord for ColumnManifest {
    const KIND: RecordKind = RecordKind::ColumnManifest;

    fn canonical_bytes(&self) -> Result<Vec<u8>, RecordError> {
        let mut writer = RecordWriter::new(Self::KIND);
        writer
            .text(&self.master_key_name)?
            .text(&self.master_key.provider)?
            .text(&self.master_key.key_path)?
            .u64(self.generation)
            .count(self.columns.len())?;
        // A BTreeMap iterates in order: one encoding per set of columns.
        for (column, setting_id) in &self.columns {
            writer
                .text(&column.schema)?
                .text(&column.table)?
                .text(&column.column)?
                .u32(*setting_id);
        }
        Ok(writer.finish())
    }

    fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut reader = RecordReader::new(bytes, Self::KIND)?;
        let master_key_name = reader.text()?;
        let provider = reader.text()?;
        let key_path = reader.text()?;
        let generation = reader.u64()?;
        let count = reader.u32()?;
        let mut columns = BTreeMap::new();
        let mut previous: Option<ColumnName> = None;
        for _ in 0..count {
            let column = ColumnName {
                schema: reader.text()?,
                table: reader.text()?,
                column: reader.text()?,
            };
            let setting_id = reader.u32()?;
            // Strictly ascending: sorted and free of duplicates, as written.
            if previous
                .as_ref()
                .is_some_and(|previous| previous >= &column)
            {
                return Err(reader.malformed("columns are not in ascending order"));
            }
            previous = Some(column.clone());
            columns.insert(column, setting_id);
        }
        reader.finish()?;
        Ok(Self {
            master_key_name,
            master_key: MasterKeyLocation::new(provider, key_path),
            generation,
            columns,
        })
    }
}
