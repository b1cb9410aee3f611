//! `explain`: what aepg does with a statement, in words.

use std::fmt;

use super::decryption::ColumnDecryption;
use super::statement::Statement;
use crate::analysis::{ParameterTarget, ParameterUse};
use crate::cell::EncryptionMode;
use crate::names::ColumnName;

/// What happens to one parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParameterExplanation {
    /// 1-based parameter number.
    pub number: usize,
    /// The type the server inferred.
    pub server_type: String,
    /// How it is encrypted, or `None` when it is sent as given.
    pub encryption: Option<ParameterEncryption>,
}

/// How a parameter is encrypted.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ParameterEncryption {
    /// The encrypted column it goes to or is compared with.
    pub column: ColumnName,
    /// How it meets the column.
    pub usage: ParameterUse,
    /// The column encryption setting's name.
    pub setting: String,
    /// Its mode.
    pub mode: EncryptionMode,
    /// The column encryption key new cells use.
    pub key_id: u32,
    /// The plaintext type the value is encoded as.
    pub plaintext_type: String,
}

/// One result column.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResultColumnExplanation {
    /// The column's name in the result.
    pub name: String,
    /// How it is read.
    pub decryption: ColumnDecryption,
}

/// What aepg does with a statement, from [`Client::explain`](crate::Client::explain).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Explanation {
    /// Each parameter, in order.
    pub parameters: Vec<ParameterExplanation>,
    /// Each result column, in order.
    pub columns: Vec<ResultColumnExplanation>,
}

impl Explanation {
    pub(crate) fn of(statement: &Statement) -> Self {
        let prepared = &statement.0;
        let settings = prepared.catalog.settings();
        let parameters = statement
            .params()
            .iter()
            .enumerate()
            .map(|(index, ty)| {
                let encryption = match prepared.analysis.parameters.get(index) {
                    Some(ParameterTarget::Encrypted {
                        column,
                        encryption,
                        usage,
                    }) => settings
                        .get(&encryption.setting_id)
                        .map(|setting| ParameterEncryption {
                            column: column.clone(),
                            usage: *usage,
                            setting: setting.name.clone(),
                            mode: setting.cell.mode,
                            key_id: setting.key_id,
                            plaintext_type: setting.type_name(),
                        }),
                    _ => None,
                };
                ParameterExplanation {
                    number: index + 1,
                    server_type: ty.name().to_owned(),
                    encryption,
                }
            })
            .collect();
        let columns = statement
            .columns()
            .iter()
            .zip(prepared.columns.iter())
            .map(|(column, plan)| ResultColumnExplanation {
                name: column.name().to_owned(),
                decryption: plan.decryption.clone(),
            })
            .collect();
        Self {
            parameters,
            columns,
        }
    }
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for parameter in &self.parameters {
            write!(f, "${} ({}): ", parameter.number, parameter.server_type)?;
            match &parameter.encryption {
                None => writeln!(f, "plaintext")?,
                Some(e) => writeln!(
                    f,
                    "encrypted, {} {} as {}, setting {:?}, {}, column key {}",
                    e.usage, e.column, e.plaintext_type, e.setting, e.mode, e.key_id
                )?,
            }
        }
        for column in &self.columns {
            write!(f, "column {:?}: ", column.name)?;
            match &column.decryption {
                ColumnDecryption::Plaintext => writeln!(f, "plaintext")?,
                ColumnDecryption::Refused { reason } => writeln!(f, "refused: {reason}")?,
                ColumnDecryption::Decrypted { column, setting } => {
                    write!(f, "decrypted")?;
                    if let Some(column) = column {
                        write!(f, " from {column}")?;
                    }
                    writeln!(
                        f,
                        " as {}, setting {:?}, {}",
                        setting.type_name(),
                        setting.name,
                        setting.cell.mode
                    )?;
                }
            }
        }
        Ok(())
    }
}
