//! Result rows with encrypted columns already decrypted.

use std::sync::Arc;

use postgres_types::{FromSql, Type};
use zeroize::Zeroizing;

use super::column_index::ColumnIndex;
use super::decryption::{Decryption, DecryptionContext, RawValue, ResultColumnPlan};
use crate::Error;

/// A decrypted cell, or why it could not be decrypted.
enum Cell {
    /// SQL NULL: stored as NULL, never encrypted.
    Null,
    Plaintext {
        ty: Type,
        type_name: String,
        value: Zeroizing<Vec<u8>>,
    },
    Failed(String),
}

/// A row of a result, like `tokio_postgres::Row`, whose encrypted columns
/// read as their plaintext types.
///
/// Encrypted cells are decrypted when the row arrives; a cell that fails
/// (tampered, from another column, key unavailable) fails only the
/// [`try_get`](Self::try_get) of that column, with an error naming it.
/// Plaintexts are zeroized when the row is dropped.
pub struct Row {
    inner: tokio_postgres::Row,
    plans: Arc<[ResultColumnPlan]>,
    cells: Vec<Option<Cell>>,
}

impl Row {
    pub(crate) async fn decrypt(
        inner: tokio_postgres::Row,
        plans: Arc<[ResultColumnPlan]>,
        context: &mut DecryptionContext<'_>,
    ) -> Result<Self, Error> {
        let mut cells = Vec::with_capacity(plans.len());
        for (index, plan) in plans.iter().enumerate() {
            let expected = match &plan.decryption {
                Decryption::None => {
                    cells.push(None);
                    continue;
                }
                Decryption::FromColumn { setting_id, .. } => Some(*setting_id),
                Decryption::FromHeader { expected } => *expected,
                Decryption::Unassigned => {
                    let raw: Option<RawValue<'_>> = inner.try_get(index)?;
                    cells.push(Some(match raw {
                        None => Cell::Null,
                        Some(_) => Cell::Failed(
                            "the column is aepg.ciphertext but has no verified encryption assignment".to_owned(),
                        ),
                    }));
                    continue;
                }
            };
            let raw: Option<RawValue<'_>> = inner.try_get(index)?;
            let cell = match raw {
                // SQL NULL is stored as NULL, never encrypted; its type is the column's.
                None => Cell::Null,
                Some(RawValue(bytes)) => match context.decrypt(bytes, expected).await {
                    Ok((setting, plaintext)) => plaintext_cell(
                        setting.cell.plaintext_type.oid,
                        setting.type_name(),
                        plaintext,
                    ),
                    Err(error) => Cell::Failed(error.to_string()),
                },
            };
            cells.push(Some(cell));
        }
        Ok(Self {
            inner,
            plans,
            cells,
        })
    }

    /// The result's columns, as the server describes them (encrypted columns
    /// show the type `aepg.ciphertext`).
    pub fn columns(&self) -> &[tokio_postgres::Column] {
        self.inner.columns()
    }

    /// The number of columns.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// Whether the row has no columns.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// The PostgreSQL type a column's values read as: the plaintext type for
    /// an encrypted column.
    pub fn value_type(&self, index: impl ColumnIndex) -> Option<&Type> {
        let position = index.position(self.columns())?;
        match &self.cells[position] {
            Some(Cell::Plaintext { ty, .. }) => Some(ty),
            Some(Cell::Failed(_) | Cell::Null) => None,
            None => Some(self.columns()[position].type_()),
        }
    }

    /// The value of a column, decrypted if the column is encrypted.
    ///
    /// # Panics
    /// If the column does not exist, cannot be decrypted, or does not
    /// convert to `T`. Use [`try_get`](Self::try_get) to handle these.
    #[track_caller]
    pub fn get<'a, T: FromSql<'a>>(&'a self, index: impl ColumnIndex) -> T {
        match self.try_get(index) {
            Ok(value) => value,
            Err(error) => panic!("error retrieving column: {error}"),
        }
    }

    /// The value of a column, decrypted if the column is encrypted.
    ///
    /// # Errors
    /// [`Error::NoSuchColumn`]; [`Error::Decrypt`] naming the column when its
    /// cell is tampered, from another column, or its key is unavailable;
    /// [`Error::ResultType`] when the value does not convert to `T`.
    pub fn try_get<'a, T: FromSql<'a>>(&'a self, index: impl ColumnIndex) -> Result<T, Error> {
        let position = index
            .position(self.columns())
            .ok_or_else(|| Error::NoSuchColumn {
                column: index.to_string(),
            })?;
        let label = &self.plans[position].label;
        match &self.cells[position] {
            None => Ok(self.inner.try_get(position)?),
            Some(Cell::Null) => T::from_sql_null(&Type::UNKNOWN).map_err(|_| Error::ResultType {
                column: label.clone(),
                sql_type: "NULL".to_owned(),
                rust_type: std::any::type_name::<T>(),
                reason: "the value is NULL; read it as an Option".to_owned(),
            }),
            Some(Cell::Failed(reason)) => Err(Error::Decrypt {
                column: label.clone(),
                reason: reason.clone(),
            }),
            Some(Cell::Plaintext {
                ty,
                type_name,
                value,
            }) => {
                let wrong_type = |reason: &str| Error::ResultType {
                    column: label.clone(),
                    sql_type: type_name.clone(),
                    rust_type: std::any::type_name::<T>(),
                    reason: reason.to_owned(),
                };
                if !T::accepts(ty) {
                    return Err(wrong_type("the Rust type does not accept it"));
                }
                let value: &[u8] = value;
                T::from_sql(ty, value).map_err(|_| wrong_type("the value does not convert"))
            }
        }
    }
}

fn plaintext_cell(oid: u32, type_name: String, value: Zeroizing<Vec<u8>>) -> Cell {
    match Type::from_oid(oid) {
        Some(ty) => Cell::Plaintext {
            ty,
            type_name,
            value,
        },
        None => Cell::Failed(format!("plaintext type {type_name} is not supported")),
    }
}

impl std::fmt::Debug for Row {
    /// Shows the columns, never the values.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Row")
            .field(
                "columns",
                &self
                    .plans
                    .iter()
                    .map(|plan| &plan.label)
                    .collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}
