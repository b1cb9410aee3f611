//! Encrypting the parameters bound for encrypted columns.

use std::error::Error as StdError;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::types::{array_from_sql, array_to_sql, ArrayDimension};
use postgres_types::{to_sql_checked, IsNull, Kind, ToSql, Type, WrongType};
use zeroize::Zeroize;

use crate::analysis::{ColumnName, ParameterUse};
use crate::catalog::EncryptionSetting;
use crate::cell::{CellCipher, PlaintextType};
use crate::Error;

/// One parameter as it goes to the server: the application's value, or
/// cells made from it.
#[derive(Debug)]
pub(crate) enum BoundParameter<'a> {
    /// Not bound for an encrypted column.
    Plain(&'a (dyn ToSql + Sync)),
    /// One cell, or NULL.
    Cell(Option<Vec<u8>>),
    /// An array of cells, for `= ANY($n)`.
    Cells(Vec<Option<Vec<u8>>>),
}

impl ToSql for BoundParameter<'_> {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        match self {
            Self::Plain(value) => value.to_sql_checked(ty, out),
            Self::Cell(None) => Ok(IsNull::Yes),
            Self::Cell(Some(cell)) => {
                out.extend_from_slice(cell);
                Ok(IsNull::No)
            }
            Self::Cells(cells) => {
                let Kind::Array(member) = ty.kind() else {
                    return Err(Box::new(WrongType::new::<Vec<Vec<u8>>>(ty.clone())));
                };
                let dimension = ArrayDimension {
                    len: i32::try_from(cells.len())?,
                    lower_bound: 1,
                };
                array_to_sql(
                    Some(dimension),
                    member.oid(),
                    cells,
                    |cell, out| match cell {
                        Some(cell) => {
                            out.extend_from_slice(cell);
                            Ok(postgres_protocol::IsNull::No)
                        }
                        None => Ok(postgres_protocol::IsNull::Yes),
                    },
                    out,
                )?;
                Ok(IsNull::No)
            }
        }
    }

    /// Plain values check themselves; cells go only where the server expects
    /// bytes (`aepg.ciphertext` or `bytea`, or arrays of them). The analyzer
    /// and the cross-check at prepare time have established that already.
    fn accepts(_ty: &Type) -> bool {
        true
    }

    to_sql_checked!();
}

/// Encrypts parameter `number` (1-based) for `column` under `setting`.
pub(crate) fn encrypt_parameter<'a>(
    value: &(dyn ToSql + Sync),
    number: usize,
    column: &ColumnName,
    setting: &EncryptionSetting,
    usage: ParameterUse,
    cipher: &CellCipher,
) -> Result<BoundParameter<'a>, Error> {
    let plaintext_type = setting.cell.plaintext_type;
    let mismatch = |reason: String| Error::ParameterType {
        number,
        column: column.to_string(),
        sql_type: setting.type_name(),
        reason,
    };
    let encode_error =
        |error: Box<dyn StdError + Sync + Send>| match error.downcast_ref::<WrongType>() {
            // WrongType names the two types, never the value.
            Some(wrong_type) => mismatch(wrong_type.to_string()),
            None => mismatch("the value cannot be encoded as this type".to_owned()),
        };
    match usage {
        ParameterUse::Store | ParameterUse::Compare => {
            let ty = postgres_type(plaintext_type.oid, setting)?;
            let mut buffer = BytesMut::new();
            let outcome = value.to_sql_checked(&ty, &mut buffer);
            let cell = match outcome {
                Ok(IsNull::Yes) => Ok(None),
                Ok(IsNull::No) => encrypt_value(&buffer, plaintext_type, setting, cipher).map(Some),
                Err(error) => Err(ValueProblem::Cell(encode_error(error))),
            };
            buffer.as_mut().zeroize();
            Ok(BoundParameter::Cell(cell.map_err(
                |reason| match reason {
                    ValueProblem::TooLong(max) => mismatch(format!("longer than {max} characters")),
                    ValueProblem::Cell(error) => error,
                },
            )?))
        }
        ParameterUse::CompareAny => {
            let array_oid = plaintext_type
                .array_oid()
                .ok_or_else(|| mismatch("this type has no array type".to_owned()))?;
            let ty = postgres_type(array_oid, setting)?;
            let mut buffer = BytesMut::new();
            let outcome = value.to_sql_checked(&ty, &mut buffer);
            let cells =
                match outcome {
                    Ok(IsNull::Yes) => Err(mismatch("= ANY needs an array, not NULL".to_owned())),
                    Ok(IsNull::No) => encrypt_array(&buffer, plaintext_type, setting, cipher)
                        .map_err(|problem| match problem {
                            ValueProblem::TooLong(max) => {
                                mismatch(format!("an element is longer than {max} characters"))
                            }
                            ValueProblem::Cell(error) => error,
                        }),
                    Err(error) => Err(encode_error(error)),
                };
            buffer.as_mut().zeroize();
            Ok(BoundParameter::Cells(cells?))
        }
    }
}

enum ValueProblem {
    TooLong(usize),
    Cell(Error),
}

fn encrypt_value(
    plaintext: &[u8],
    plaintext_type: PlaintextType,
    setting: &EncryptionSetting,
    cipher: &CellCipher,
) -> Result<Vec<u8>, ValueProblem> {
    // The server sees only ciphertext, so it cannot enforce varchar(n): do it here.
    if let Some(max) = plaintext_type.max_characters() {
        let characters = String::from_utf8_lossy(plaintext).chars().count();
        if characters > max {
            return Err(ValueProblem::TooLong(max));
        }
    }
    cipher
        .encrypt(&setting.cell, plaintext)
        .map_err(ValueProblem::Cell)
}

fn encrypt_array(
    array: &[u8],
    plaintext_type: PlaintextType,
    setting: &EncryptionSetting,
    cipher: &CellCipher,
) -> Result<Vec<Option<Vec<u8>>>, ValueProblem> {
    let malformed = || {
        ValueProblem::Cell(Error::MalformedRecord {
            kind: "array parameter",
            reason: "the encoded array cannot be read",
        })
    };
    let parsed = array_from_sql(array).map_err(|_| malformed())?;
    let mut values = parsed.values();
    let mut cells = Vec::new();
    while let Some(element) = values.next().map_err(|_| malformed())? {
        cells.push(
            element
                .map(|plaintext| encrypt_value(plaintext, plaintext_type, setting, cipher))
                .transpose()?,
        );
    }
    Ok(cells)
}

fn postgres_type(oid: u32, setting: &EncryptionSetting) -> Result<Type, Error> {
    Type::from_oid(oid).ok_or_else(|| Error::UnsupportedType {
        name: setting.type_name(),
    })
}
