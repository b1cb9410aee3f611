//! Explicit encryption: a value encrypted for an encrypted column, or a
//! cell of one decrypted, outside a statement — for applications that build
//! their own SQL paths (bulk tools, `COPY`, tests). The same catalog, key
//! cache and checks as the transparent path.

use std::sync::Arc;

use postgres_types::{FromSql, ToSql, Type};

use super::client::Client;
use super::decryption::{decrypt_cell, QueryCiphers};
use super::parameter::encrypt_value;
use crate::catalog::{Catalog, ColumnState, EncryptionSetting};
use crate::cell::Coercion;
use crate::error::{DecryptError, ResultTypeProblem};
use crate::names::ColumnName;
use crate::Error;

impl Client {
    /// Encrypts `value` as a cell of encrypted column `column`, exactly as a
    /// parameter stored into it would be, the column's typmod applied
    /// (`None` for SQL `NULL`, which stays `NULL`). The catalog is checked as
    /// for a statement.
    ///
    /// # Errors
    /// [`Error::Encrypt`] for a column no verified record makes encrypted,
    /// or whose records or key cannot be used; [`Error::Value`] for a value
    /// that does not fit the column's type.
    pub async fn encrypt_for(
        &self,
        column: &ColumnName,
        value: &(dyn ToSql + Sync),
    ) -> Result<Option<Vec<u8>>, Error> {
        let catalog = self.executor().catalog().await?;
        let setting = usable_setting(&catalog, column).map_err(|source| Error::Encrypt {
            column: Box::new(column.clone()),
            source,
        })?;
        let cipher = self
            .encryption()
            .cipher(&catalog, setting.key_id)
            .await
            .map_err(|source| Error::Encrypt {
                column: Box::new(column.clone()),
                source,
            })?;
        encrypt_value(value, &setting, &cipher, Coercion::Store).map_err(|problem| Error::Value {
            column: Box::new(column.clone()),
            sql_type: setting.type_name(),
            problem,
        })
    }

    /// Decrypts `cell`, a value of encrypted column `column` read without
    /// aepg, and converts it to `T`. The cell must carry the column's
    /// setting, as in a query's results.
    ///
    /// # Errors
    /// [`Error::Decrypt`] for a column that is not encrypted, a cell that
    /// was altered or comes from another column, a key that is unavailable;
    /// [`Error::ResultType`] when the plaintext does not convert to `T`.
    pub async fn decrypt_from<T>(&self, column: &ColumnName, cell: &[u8]) -> Result<T, Error>
    where
        T: for<'a> FromSql<'a>,
    {
        let catalog = self.executor().catalog().await?;
        let failed = |source: DecryptError| Error::Decrypt {
            column: column.to_string(),
            source: Arc::new(source),
        };
        let setting = usable_setting(&catalog, column).map_err(failed)?;
        let ciphers = QueryCiphers::default();
        let plaintext = decrypt_cell(self.encryption(), &catalog, &setting, cell, &ciphers)
            .await
            .map_err(|source| Error::Decrypt {
                column: column.to_string(),
                source,
            })?;
        let ty = setting.sql_type().unwrap_or(Type::BYTEA);
        let wrong_type = |problem: ResultTypeProblem| Error::ResultType {
            column: column.to_string(),
            sql_type: setting.type_name(),
            rust_type: std::any::type_name::<T>(),
            problem,
        };
        if !T::accepts(&ty) {
            return Err(wrong_type(ResultTypeProblem::NotAccepted));
        }
        T::from_sql(&ty, &plaintext).map_err(|_| wrong_type(ResultTypeProblem::NotConvertible))
    }
}

/// The setting of encrypted column `column`, if this client can use it.
fn usable_setting(
    catalog: &Catalog,
    column: &ColumnName,
) -> Result<Arc<EncryptionSetting>, DecryptError> {
    let encrypted = catalog
        .column(column)
        .ok_or_else(|| DecryptError::Unusable {
            reason: format!("{column} is not an encrypted column: no verified assignment names it"),
        })?;
    match (&encrypted.state, catalog.usable_setting(column)) {
        (ColumnState::Usable { .. }, Some(setting)) => Ok(setting.clone()),
        (ColumnState::Unusable { reason }, _) => Err(DecryptError::Unusable {
            reason: reason.to_string(),
        }),
        _ => Err(DecryptError::Unusable {
            reason: "its encryption setting was not loaded".to_owned(),
        }),
    }
}
