//! Pinning: what the application itself knows about its catalog, checked
//! at every load — the catalog's identity, the lowest generation of each
//! master key's manifest, and the columns it expects to be encrypted.
//!
//! Pins protect even a client's first load, before it has seen any
//! generation: export them once from a trusted catalog
//! ([`Pins::of_catalog`], `Pins::to_json`), ship the file with the
//! application (`include_str!`), and load it with [`Pins::from_json`].

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::error::CatalogError;
use super::model::{Catalog, ColumnState};
use crate::cell::EncryptionMode;
use crate::names::ColumnName;
use crate::record::CatalogId;

/// The format name written into, and required in, a pin file.
pub const PIN_FILE_FORMAT: &str = "aepg-pins/1";

/// A column the application expects to be encrypted. Pinning turns a
/// catalog that lost or weakened the column's encryption into a load error,
/// instead of trusting whatever the database says.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
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
            column: ColumnName::new(schema, table, column),
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

/// Everything an application pins about its catalog.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pins {
    catalog: Option<CatalogId>,
    manifests: BTreeMap<String, u64>,
    columns: Vec<PinnedColumn>,
}

/// A pin file that cannot be read.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid aepg pin file: {reason}")]
pub struct PinFileError {
    /// What is wrong.
    pub reason: String,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PinFile {
    format: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    catalog: Option<String>,
    #[serde(default)]
    manifests: BTreeMap<String, u64>,
    #[serde(default)]
    columns: Vec<PinFileColumn>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PinFileColumn {
    schema: String,
    table: String,
    column: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    mode: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    setting: Option<String>,
}

impl Pins {
    /// No pins.
    pub fn new() -> Self {
        Self::default()
    }

    /// What `catalog` is now, to be required at every later load: its
    /// identity, the generation of every verified manifest, and every
    /// usable encrypted column with its mode and setting.
    pub fn of_catalog(catalog: &Catalog) -> Self {
        let manifests = catalog
            .manifests()
            .iter()
            .map(|manifest| (manifest.master_key_name.clone(), manifest.generation))
            .collect();
        let columns = catalog
            .columns()
            .filter_map(|column| {
                let setting = catalog.usable_setting(&column.name)?;
                Some(PinnedColumn {
                    column: column.name.clone(),
                    mode: Some(setting.cell.mode),
                    setting_name: Some(setting.name.clone()),
                })
            })
            .collect();
        Self {
            catalog: Some(catalog.id()),
            manifests,
            columns,
        }
    }

    /// Requires the catalog with identity `id`.
    pub fn catalog(mut self, id: CatalogId) -> Self {
        self.catalog = Some(id);
        self
    }

    /// Requires a manifest signed by master key `master_key_name` at
    /// generation `generation` or later.
    pub fn minimum_generation(mut self, master_key_name: &str, generation: u64) -> Self {
        self.manifests
            .insert(master_key_name.to_owned(), generation);
        self
    }

    /// Requires `pin`.
    pub fn column(mut self, pin: PinnedColumn) -> Self {
        self.columns.push(pin);
        self
    }

    /// The pinned catalog identity.
    pub fn catalog_id(&self) -> Option<CatalogId> {
        self.catalog
    }

    /// The pinned columns.
    pub fn columns(&self) -> &[PinnedColumn] {
        &self.columns
    }

    /// The pinned lowest generation of each master key's manifest.
    pub fn manifests(&self) -> &BTreeMap<String, u64> {
        &self.manifests
    }

    /// Reads a pin file (JSON, [`PIN_FILE_FORMAT`]).
    ///
    /// # Errors
    /// [`PinFileError`] for anything that is not a pin file of this format.
    pub fn from_json(text: &str) -> Result<Self, PinFileError> {
        let invalid = |reason: String| PinFileError { reason };
        let file: PinFile =
            serde_json::from_str(text).map_err(|error| invalid(error.to_string()))?;
        if file.format != PIN_FILE_FORMAT {
            return Err(invalid(format!(
                "format is {:?}, this library reads {PIN_FILE_FORMAT:?}",
                file.format
            )));
        }
        let catalog = file
            .catalog
            .map(|hex| CatalogId::from_hex(&hex))
            .transpose()
            .map_err(|error| invalid(error.to_string()))?;
        let columns = file
            .columns
            .into_iter()
            .map(|column| {
                let mode = match column.mode.as_deref() {
                    None => None,
                    Some("deterministic") => Some(EncryptionMode::Deterministic),
                    Some("randomized") => Some(EncryptionMode::Randomized),
                    Some(other) => {
                        return Err(invalid(format!(
                            "mode {other:?} is neither deterministic nor randomized"
                        )))
                    }
                };
                Ok(PinnedColumn {
                    column: ColumnName::new(column.schema, column.table, column.column),
                    mode,
                    setting_name: column.setting,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            catalog,
            manifests: file.manifests,
            columns,
        })
    }

    /// Writes the pins as a pin file (JSON, [`PIN_FILE_FORMAT`]).
    pub fn to_json(&self) -> String {
        let file = PinFile {
            format: PIN_FILE_FORMAT.to_owned(),
            catalog: self.catalog.map(|id| id.to_string()),
            manifests: self.manifests.clone(),
            columns: self
                .columns
                .iter()
                .map(|pin| PinFileColumn {
                    schema: pin.column.schema.clone(),
                    table: pin.column.table.clone(),
                    column: pin.column.column.clone(),
                    mode: pin.mode.map(|mode| mode.as_str().to_owned()),
                    setting: pin.setting_name.clone(),
                })
                .collect(),
        };
        // Plain strings and numbers: serializing cannot fail.
        serde_json::to_string_pretty(&file).unwrap_or_default()
    }

    /// Adds `other`'s pins to these (the catalog identity of `other` wins
    /// when both have one).
    pub fn merge(mut self, other: Pins) -> Self {
        if other.catalog.is_some() {
            self.catalog = other.catalog;
        }
        for (name, generation) in other.manifests {
            let entry = self.manifests.entry(name).or_insert(generation);
            *entry = (*entry).max(generation);
        }
        self.columns.extend(other.columns);
        self
    }

    /// Checks `catalog` against every pin.
    pub(crate) fn check(&self, catalog: &Catalog) -> Result<(), CatalogError> {
        if let Some(expected) = self.catalog {
            if catalog.id() != expected {
                return Err(CatalogError::IdentityMismatch {
                    expected,
                    found: catalog.id(),
                });
            }
        }
        for (name, minimum) in &self.manifests {
            let found = catalog.manifest_generation(name);
            match found {
                Some(found) if found >= *minimum => {}
                found => {
                    return Err(CatalogError::ManifestRollback {
                        master_key: name.clone(),
                        seen: *minimum,
                        found,
                    })
                }
            }
        }
        self.columns
            .iter()
            .try_for_each(|pin| check_column(catalog, pin))
    }
}

fn check_column(catalog: &Catalog, pin: &PinnedColumn) -> Result<(), CatalogError> {
    let mismatch = |reason: String| CatalogError::PinnedColumnMismatch {
        column: pin.column.clone(),
        reason,
    };
    let column = catalog
        .column(&pin.column)
        .ok_or_else(|| mismatch("no signed record makes it encrypted".to_owned()))?;
    if let ColumnState::Unusable { reason } = &column.state {
        return Err(mismatch(reason.to_string()));
    }
    let setting = catalog
        .usable_setting(&pin.column)
        .ok_or_else(|| mismatch("its encryption setting is not verified".to_owned()))?;
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
    Ok(())
}
