//! Decrypting result columns: by origin when the server says which table
//! column a result comes from, by the cell header otherwise.

use std::error::Error as StdError;
use std::sync::Arc;

use postgres_types::{FromSql, Type};
use zeroize::Zeroizing;

use super::encryption::Encryption;
use crate::analysis::{ColumnName, ResultColumnSource};
use crate::catalog::{Catalog, EncryptionSetting};
use crate::cell::CellHeader;
use crate::Error;

/// How one result column is read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Decryption {
    /// A plaintext column: passed through.
    None,
    /// A column of an encrypted table column: its cells must carry that
    /// column's setting.
    FromColumn {
        /// The table column.
        column: ColumnName,
        /// Its setting.
        setting_id: u32,
    },
    /// A table column of type `aepg.ciphertext` with no verified assignment:
    /// its cells are refused.
    Unassigned,
    /// Cells of unknown origin (a view column, a `UNION` branch): the cell
    /// header names the setting, which must be `expected` when the analysis
    /// knows it.
    FromHeader {
        /// The setting every cell of the column must carry, if known.
        expected: Option<u32>,
    },
}

/// A result column and how it is read.
#[derive(Clone, Debug)]
pub(crate) struct ResultColumnPlan {
    /// For messages: `schema.table.column` when known, else the result name.
    pub(crate) label: String,
    pub(crate) decryption: Decryption,
}

/// Plans the decryption of `columns` against `catalog`: by the origin the
/// server reports, else by what the analysis says fills the column.
pub(crate) fn plan_columns(
    columns: &[tokio_postgres::Column],
    sources: &[ResultColumnSource],
    catalog: &Catalog,
) -> Vec<ResultColumnPlan> {
    // The analysis expands `*` from its own view of the tables; if its count
    // disagrees with the server's, only the server's origins are used.
    let sources = if sources.len() == columns.len() {
        sources
    } else {
        &[]
    };
    columns
        .iter()
        .enumerate()
        .map(|(index, column)| {
            let source = sources
                .get(index)
                .copied()
                .unwrap_or(ResultColumnSource::Plaintext);
            let origin = column.table_oid().zip(column.column_id());
            let assigned = origin.and_then(|(table, attnum)| catalog.column_at(table, attnum));
            let ciphertext_origin =
                origin.is_some_and(|(table, attnum)| catalog.is_ciphertext_column(table, attnum));
            let unassigned = origin.is_some_and(|(table, attnum)| {
                catalog.is_unassigned_ciphertext_column(table, attnum)
            });
            if unassigned {
                return ResultColumnPlan {
                    label: column.name().to_owned(),
                    decryption: Decryption::Unassigned,
                };
            }
            match assigned {
                Some(encrypted) => ResultColumnPlan {
                    label: encrypted.name.to_string(),
                    decryption: Decryption::FromColumn {
                        column: encrypted.name.clone(),
                        setting_id: encrypted.setting_id,
                    },
                },
                None => match source {
                    ResultColumnSource::Encrypted { setting_id } => ResultColumnPlan {
                        label: column.name().to_owned(),
                        decryption: Decryption::FromHeader {
                            expected: Some(setting_id),
                        },
                    },
                    ResultColumnSource::Ciphertext => ResultColumnPlan {
                        label: column.name().to_owned(),
                        decryption: Decryption::FromHeader { expected: None },
                    },
                    ResultColumnSource::Plaintext
                        if ciphertext_origin || is_ciphertext(column.type_(), catalog) =>
                    {
                        ResultColumnPlan {
                            label: column.name().to_owned(),
                            decryption: Decryption::FromHeader { expected: None },
                        }
                    }
                    ResultColumnSource::Plaintext => ResultColumnPlan {
                        label: column.name().to_owned(),
                        decryption: Decryption::None,
                    },
                },
            }
        })
        .collect()
}

pub(crate) fn is_ciphertext(ty: &Type, catalog: &Catalog) -> bool {
    ty.oid() == catalog.ciphertext_type_oid()
}

/// The bytes of any value, whatever its type: how cells are read off a row.
pub(crate) struct RawValue<'a>(pub(crate) &'a [u8]);

impl<'a> FromSql<'a> for RawValue<'a> {
    fn from_sql(_ty: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(Self(raw))
    }

    fn accepts(_ty: &Type) -> bool {
        true
    }
}

/// What decrypting needs while a query's rows come in: the catalog, and the
/// chance to reload it once if a cell names a setting or key it lacks.
pub(crate) struct DecryptionContext<'a> {
    pub(crate) encryption: &'a Encryption,
    pub(crate) client: &'a tokio_postgres::Client,
    pub(crate) catalog: Arc<Catalog>,
    pub(crate) refreshed: bool,
}

impl DecryptionContext<'_> {
    /// Decrypts one cell; `expected` is the setting its origin requires.
    pub(crate) async fn decrypt(
        &mut self,
        cell: &[u8],
        expected: Option<u32>,
    ) -> Result<(EncryptionSetting, Zeroizing<Vec<u8>>), Error> {
        let header = CellHeader::parse(cell)?;
        if let Some(expected) = expected {
            if header.setting_id != expected {
                return Err(Error::CellFromAnotherSetting {
                    expected,
                    found: header.setting_id,
                });
            }
        }
        let known = |catalog: &Catalog| {
            catalog.settings().contains_key(&header.setting_id)
                && catalog.column_keys.contains_key(&header.key_id)
        };
        if !known(&self.catalog) && !self.refreshed {
            self.refreshed = true;
            self.catalog = self.encryption.reload_for_unknown_id(self.client).await?;
        }
        let setting = self
            .catalog
            .settings()
            .get(&header.setting_id)
            .cloned()
            .ok_or_else(|| Error::NotInCatalog {
                kind: "column encryption setting",
                name: header.setting_id.to_string(),
            })?;
        let cipher = self.encryption.cipher(&self.catalog, header.key_id).await?;
        let plaintext = cipher.decrypt(&setting.cell, cell)?;
        Ok((setting, plaintext))
    }
}
