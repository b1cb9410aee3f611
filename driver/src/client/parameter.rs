//! Encrypting the parameters bound for encrypted columns.

use std::error::Error as StdError;
use std::ops::Range;

use bytes::BytesMut;
use fallible_iterator::FallibleIterator;
use postgres_protocol::types::{array_from_sql, array_to_sql, ArrayDimension};
use postgres_types::{to_sql_checked, IsNull, Kind, ToSql, Type, WrongType};
use zeroize::{Zeroize, Zeroizing};

use crate::analysis::ParameterUse;
use crate::catalog::EncryptionSetting;
use crate::cell::{append_zeroizing, coerce, CellCipher, Coercion};
use crate::error::ParameterProblem;
use crate::names::ColumnName;
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

/// Encodes `value` as `setting`'s plaintext type (its binary send format)
/// and encrypts it: the one path every value bound for an encrypted column
/// takes, so types are checked and typmods applied the same way for
/// parameters, arrays and bulk rows. `Ok(None)` for SQL NULL, which stays
/// NULL. The encoded plaintext is zeroized.
///
/// # Errors
/// [`ParameterProblem`]: a Rust type that does not fit, a value too long.
pub(crate) fn encrypt_value(
    value: &(dyn ToSql + Sync),
    setting: &EncryptionSetting,
    cipher: &CellCipher,
    coercion: Coercion,
) -> Result<Option<Vec<u8>>, ParameterProblem> {
    with_encoded(value, setting, |plaintext| {
        encrypt_encoded(plaintext, setting, cipher, coercion)
    })
}

/// The first half of [`encrypt_value`], for bulk rows: `value` encoded as
/// `setting`'s plaintext type, checked and coerced as the server would,
/// and appended to `plaintexts` (which grows zeroizing what it leaves),
/// to be sealed later on another thread: where it is there, `None` for SQL
/// NULL. A batch's plaintexts share one buffer this way, not an allocation
/// each; `scratch` is the encoder's buffer, reused, zeroized and emptied
/// after.
///
/// # Errors
/// As [`encrypt_value`]; `plaintexts` is left as it was.
pub(crate) fn append_cell_plaintext(
    value: &(dyn ToSql + Sync),
    setting: &EncryptionSetting,
    coercion: Coercion,
    scratch: &mut BytesMut,
    plaintexts: &mut Zeroizing<Vec<u8>>,
) -> Result<Option<Range<usize>>, ParameterProblem> {
    with_encoded_in(value, setting, scratch, |plaintext| {
        let coerced = checked_plaintext(plaintext, setting, coercion)?;
        let plaintext = coerced.as_deref().map_or(plaintext, Vec::as_slice);
        Ok(append_zeroizing(plaintexts, plaintext))
    })
}

/// `f` of `value` encoded as `setting`'s plaintext type (its binary send
/// format); `None` for SQL NULL. The encoding is zeroized after.
fn with_encoded<T>(
    value: &(dyn ToSql + Sync),
    setting: &EncryptionSetting,
    f: impl FnOnce(&[u8]) -> Result<T, ParameterProblem>,
) -> Result<Option<T>, ParameterProblem> {
    with_encoded_in(value, setting, &mut BytesMut::new(), f)
}

/// [`with_encoded`] in `buffer`, emptied before, zeroized and emptied
/// after.
fn with_encoded_in<T>(
    value: &(dyn ToSql + Sync),
    setting: &EncryptionSetting,
    buffer: &mut BytesMut,
    f: impl FnOnce(&[u8]) -> Result<T, ParameterProblem>,
) -> Result<Option<T>, ParameterProblem> {
    let ty = setting.sql_type().ok_or(ParameterProblem::NotEncodable)?;
    // The encoder appends to what the buffer holds.
    buffer.clear();
    let outcome = match value.to_sql_checked(&ty, buffer) {
        Ok(IsNull::Yes) => Ok(None),
        Ok(IsNull::No) => f(buffer).map(Some),
        Err(error) => Err(encode_problem(&*error, setting)),
    };
    buffer.as_mut().zeroize();
    buffer.clear();
    outcome
}

/// Encrypts an already encoded plaintext (an array element, say).
fn encrypt_encoded(
    plaintext: &[u8],
    setting: &EncryptionSetting,
    cipher: &CellCipher,
    coercion: Coercion,
) -> Result<Vec<u8>, ParameterProblem> {
    let coerced = checked_plaintext(plaintext, setting, coercion)?;
    seal(
        coerced.as_deref().map_or(plaintext, Vec::as_slice),
        setting,
        cipher,
    )
}

/// Checks an encoded plaintext for `setting` as the server would, and
/// applies the column's typmod: the changed value, or `None` when the
/// plaintext stands as given.
fn checked_plaintext(
    plaintext: &[u8],
    setting: &EncryptionSetting,
    coercion: Coercion,
) -> Result<Option<Zeroizing<Vec<u8>>>, ParameterProblem> {
    // The server sees only ciphertext, so it can neither check the value's
    // type nor apply the column's typmod: do both here, as it would.
    let coerced = coerce(setting.cell.plaintext_type, plaintext, coercion)?;
    let effective = coerced.as_deref().map_or(plaintext, Vec::as_slice);
    if let Some(named) = &setting.named_type {
        // Text already checked: an enum's value must be one of its labels.
        if !std::str::from_utf8(effective).is_ok_and(|text| named.admits(text)) {
            return Err(ParameterProblem::NotALabel);
        }
    }
    Ok(coerced)
}

/// The second half of [`encrypt_value`]: the cell of a checked plaintext.
///
/// # Errors
/// [`ParameterProblem::TooLongToEncrypt`].
fn seal(
    plaintext: &[u8],
    setting: &EncryptionSetting,
    cipher: &CellCipher,
) -> Result<Vec<u8>, ParameterProblem> {
    cipher
        .encrypt(&setting.cell, plaintext)
        .map_err(|_| ParameterProblem::TooLongToEncrypt)
}

/// Why encoding failed, without the encoder's own message (which may
/// quote the value): the two types when they do not fit.
fn encode_problem(
    error: &(dyn StdError + Sync + Send + 'static),
    setting: &EncryptionSetting,
) -> ParameterProblem {
    encode_problem_for(error, || setting.type_name())
}

/// [`encode_problem`] for a value of the SQL type `sql_type` names.
pub(crate) fn encode_problem_for(
    error: &(dyn StdError + Sync + Send + 'static),
    sql_type: impl FnOnce() -> String,
) -> ParameterProblem {
    match error.downcast_ref::<WrongType>() {
        Some(wrong_type) => ParameterProblem::WrongType {
            rust_type: rust_type_of(wrong_type),
            sql_type: sql_type(),
        },
        None => ParameterProblem::NotEncodable,
    }
}

/// The Rust type a [`WrongType`] names. Its message is "cannot convert
/// between the Rust type `T` and the Postgres type `U`": only types.
fn rust_type_of(wrong_type: &WrongType) -> String {
    let message = wrong_type.to_string();
    message
        .split('`')
        .nth(1)
        .map_or_else(|| "?".to_owned(), str::to_owned)
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
    let problem = |problem: ParameterProblem| Error::ParameterType {
        number,
        column: Box::new(column.clone()),
        sql_type: setting.type_name(),
        problem,
    };
    match usage {
        ParameterUse::CompareAny => encrypt_array(value, setting, cipher, Coercion::Compare)
            .map(BoundParameter::Cells)
            .map_err(problem),
        ParameterUse::StoreEach => encrypt_array(value, setting, cipher, Coercion::Store)
            .map(BoundParameter::Cells)
            .map_err(problem),
        ParameterUse::StoreEachAndCompare => {
            encrypt_array(value, setting, cipher, Coercion::StoreUnchanged)
                .map(BoundParameter::Cells)
                .map_err(problem)
        }
        ParameterUse::Compare => encrypt_value(value, setting, cipher, Coercion::Compare)
            .map(BoundParameter::Cell)
            .map_err(problem),
        ParameterUse::Store => encrypt_value(value, setting, cipher, Coercion::Store)
            .map(BoundParameter::Cell)
            .map_err(problem),
        _ => encrypt_value(value, setting, cipher, Coercion::StoreUnchanged)
            .map(BoundParameter::Cell)
            .map_err(problem),
    }
}

/// `= ANY($n)`, `unnest($n)`: the array is encoded as an array of the
/// setting's type, then each element coerced as `coercion` says and
/// encrypted on its own. A multidimensional array becomes one dimension of
/// its elements in order, as `unnest` and `= ANY` read it.
fn encrypt_array(
    value: &(dyn ToSql + Sync),
    setting: &EncryptionSetting,
    cipher: &CellCipher,
    coercion: Coercion,
) -> Result<Vec<Option<Vec<u8>>>, ParameterProblem> {
    let ty = setting
        .sql_array_type()
        .ok_or(ParameterProblem::NoArrayType)?;
    let mut buffer = BytesMut::new();
    let cells = match value.to_sql_checked(&ty, &mut buffer) {
        Ok(IsNull::Yes) => Err(ParameterProblem::NullArray),
        Ok(IsNull::No) => encrypt_elements(&buffer, setting, cipher, coercion),
        Err(error) => Err(encode_problem(&*error, setting)),
    };
    buffer.as_mut().zeroize();
    cells
}

fn encrypt_elements(
    array: &[u8],
    setting: &EncryptionSetting,
    cipher: &CellCipher,
    coercion: Coercion,
) -> Result<Vec<Option<Vec<u8>>>, ParameterProblem> {
    let parsed = array_from_sql(array).map_err(|_| ParameterProblem::MalformedArray)?;
    let mut values = parsed.values();
    let mut cells = Vec::new();
    while let Some(element) = values
        .next()
        .map_err(|_| ParameterProblem::MalformedArray)?
    {
        cells.push(
            element
                .map(|plaintext| encrypt_encoded(plaintext, setting, cipher, coercion))
                .transpose()?,
        );
    }
    Ok(cells)
}
