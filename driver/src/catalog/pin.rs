//! Pinning: the application's own list of columns it expects to be encrypted.

use crate::analysis::ColumnName;
use crate::cell::EncryptionMode;
use crate::Error;

use super::model::Catalog;

/// A column the application expects to be encrypted. Pinning turns a
/// catalog that lost or weakened the column's encryption into a load error,
/// instead of trusting whatever the database says.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PinnedColumn {
    /// The column.
    pub column: ColumnName,
    /// The mode it must have, if the application cares.
    pub mode: Option<EncryptionMode>,
    /// The setting it must be assigned to, if the application cares.
    pub setting_name: Option<String>,
}

impl PinnedColumn {
    /// Pins `schema.table.column` as encrypted in any mode.
    pub fn new(schema: &str, table: &str, column: &str) -> Self {
        Self {
            column: ColumnName {
                schema: schema.to_owned(),
                table: table.to_owned(),
                column: column.to_owned(),
            },
            mode: None,
            setting_name: None,
        }
    }

    /// Also requires `mode`.
    pub fn with_mode(mut self, mode: EncryptionMode) -> Self {
        self.mode = Some(mode);
        self
    }

    /// Also requires the setting named `setting_name`.
    pub fn with_setting(mut self, setting_name: &str) -> Self {
        self.setting_name = Some(setting_name.to_owned());
        self
    }
}

pub(crate) fn check_pins(catalog: &Catalog, pins: &[PinnedColumn]) -> Result<(), Error> {
    for pin in pins {
        let mismatch = |reason: String| Error::PinnedColumnMismatch {
            column: pin.column.to_string(),
            reason,
        };
        let column = catalog
            .columns
            .get(&pin.column)
            .ok_or_else(|| mismatch("it has no verified encryption assignment".to_owned()))?;
        let setting = catalog
            .settings
            .get(&column.setting_id)
            .ok_or_else(|| mismatch("its encryption setting is not verified".to_owned()))?;
        if column.origin.is_none() {
            return Err(mismatch(
                "the column does not exist in the database".to_owned(),
            ));
        }
        if let Some(mode) = pin.mode {
            if setting.cell.mode != mode {
                return Err(mismatch(format!(
                    "it is {}, pinned as {mode}",
                    setting.cell.mode
                )));
            }
        }
        if let Some(name) = &pin.setting_name {
            if &setting.name != name {
                return Err(mismatch(format!(
                    "it is assigned to setting {:?}, pinned to {name:?}",
                    setting.name
                )));
            }
        }
    }
    Ok(())
}
