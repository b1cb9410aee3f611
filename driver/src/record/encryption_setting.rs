//! The column encryption setting record.

use super::encoding::{RecordKind, RecordReader, RecordWriter};
use super::CatalogRecord;
use super::RecordError;
use crate::cell::{CellSetting, EncryptionMode, NamedType, PaddingPolicy, PlaintextType};

/// The cell algorithm, the only one format v1 knows.
pub const CELL_ALGORITHM: &str = "AEAD_AES_256_GCM_SIV";

/// A column encryption setting (CES): what a column's cells are encrypted as,
/// and with which column key. Signed by the master key of that column key, so
/// nobody who lacks it can weaken a setting from randomized to deterministic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncryptionSettingRecord {
    /// The setting's unique name: signed, because administrators and pins
    /// choose settings by name.
    pub name: String,
    /// Mode, plaintext type, padding and the setting's id.
    pub setting: CellSetting,
    /// The column encryption key that new cells are made with.
    pub key_id: u32,
    /// For an enum or `citext`, the type by name (the plaintext type is
    /// then `text`); `None` for a built-in type.
    pub named_type: Option<NamedType>,
}

/// The tag of a named type's kind in the record.
const NAMED_TEXT: u8 = 1;
const NAMED_ENUM: u8 = 2;
const TEXT: PlaintextType = PlaintextType {
    oid: 25,
    typmod: -1,
};

impl CatalogRecord for EncryptionSettingRecord {
    const KIND: RecordKind = RecordKind::EncryptionSetting;

    fn canonical_bytes(&self) -> Result<Vec<u8>, RecordError> {
        let setting = &self.setting;
        let mut writer = RecordWriter::new(Self::KIND);
        writer
            .u32(setting.setting_id)
            .text(&self.name)?
            .u32(self.key_id)
            .u32(setting.plaintext_type.oid)
            .i32(setting.plaintext_type.typmod)
            .u8(mode_tag(setting.mode))
            .u8(padding_tag(setting.padding));
        // A named type goes between the padding and the algorithm: its
        // first byte (its kind, never 0) tells it from the algorithm's
        // length (whose first byte is 0), so settings of built-in types keep
        // their encoding and no prefix of a record is another record.
        if let Some(named) = &self.named_type {
            let labels = named.labels().unwrap_or_default();
            writer
                .u8(if named.labels().is_some() {
                    NAMED_ENUM
                } else {
                    NAMED_TEXT
                })
                .text(named.name())?
                .count(labels.len())?;
            for label in labels {
                writer.text(label)?;
            }
        }
        Ok(writer.text(CELL_ALGORITHM)?.finish())
    }

    fn from_canonical_bytes(bytes: &[u8]) -> Result<Self, RecordError> {
        let mut reader = RecordReader::new(bytes, Self::KIND)?;
        let setting_id = reader.u32()?;
        let name = reader.text()?;
        let key_id = reader.u32()?;
        let plaintext_type = PlaintextType {
            oid: reader.u32()?,
            typmod: reader.i32()?,
        };
        let mode = match reader.u8()? {
            1 => EncryptionMode::Deterministic,
            2 => EncryptionMode::Randomized,
            _ => return Err(reader.malformed("unknown encryption mode")),
        };
        let padding = match reader.u8()? {
            0 => PaddingPolicy::None,
            1 => PaddingPolicy::Block16,
            2 => PaddingPolicy::Bucket,
            _ => return Err(reader.malformed("unknown padding policy")),
        };
        let named_type = if reader.peek_u8()? == 0 {
            None
        } else {
            let kind = reader.u8()?;
            let name = reader.text()?;
            let count = reader.u32()?;
            let labels = (0..count)
                .map(|_| reader.text())
                .collect::<Result<Vec<_>, _>>()?;
            let named = match kind {
                NAMED_TEXT if labels.is_empty() => NamedType::from_parts(name, None),
                NAMED_ENUM => NamedType::from_parts(name, Some(labels)),
                _ => return Err(reader.malformed("unknown named type")),
            };
            if named.check().is_err() || plaintext_type != TEXT {
                return Err(reader.malformed("invalid named type"));
            }
            Some(named)
        };
        if reader.text()? != CELL_ALGORITHM {
            return Err(reader.malformed("unknown cell algorithm"));
        }
        reader.finish()?;
        Ok(Self {
            name,
            setting: CellSetting {
                setting_id,
                mode,
                plaintext_type,
                padding,
            },
            key_id,
            named_type,
        })
    }
}

fn mode_tag(mode: EncryptionMode) -> u8 {
    match mode {
        EncryptionMode::Deterministic => 1,
        EncryptionMode::Randomized => 2,
    }
}

fn padding_tag(padding: PaddingPolicy) -> u8 {
    match padding {
        PaddingPolicy::None => 0,
        PaddingPolicy::Block16 => 1,
        PaddingPolicy::Bucket => 2,
    }
}
