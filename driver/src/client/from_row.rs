//! Reading a struct from a [`Row`] by column names: [`FromRow`], and
//! [`from_row!`](crate::from_row) to implement it without hand-written
//! `row.get` calls.

use super::row::Row;
use crate::Error;

/// A type that can be read from a result row.
///
/// Implement it with [`from_row!`](crate::from_row), which reads each field
/// from the column of its name (decrypting encrypted columns as any read
/// does), or by hand.
pub trait FromRow: Sized {
    /// Reads the value from `row`.
    ///
    /// # Errors
    /// A missing column, a value that does not convert to a field's type,
    /// a cell that cannot be decrypted.
    fn from_row(row: &Row) -> Result<Self, Error>;
}

impl Row {
    /// Reads the row as `T` ([`FromRow`]).
    ///
    /// # Errors
    /// As [`FromRow::from_row`].
    pub fn decode<T: FromRow>(&self) -> Result<T, Error> {
        T::from_row(self)
    }
}

/// Implements [`FromRow`] for a struct whose fields are named after the
/// result's columns (`field = "column"` reads a field from another
/// column). Fields must own their values (`String`, not `&str`).
///
/// ```
/// struct Patient {
///     id: i32,
///     name: String,
///     ssn: Option<String>,
/// }
/// aepg::from_row!(Patient { id, name = "full_name", ssn });
/// // let patient: Patient = row.decode()?;
/// ```
#[macro_export]
macro_rules! from_row {
    ($type:ident { $($field:ident $(= $column:literal)?),* $(,)? }) => {
        impl $crate::FromRow for $type {
            fn from_row(row: &$crate::Row) -> ::std::result::Result<Self, $crate::Error> {
                ::std::result::Result::Ok(Self {
                    $($field: row.try_get($crate::from_row!(@column $field $($column)?))?,)*
                })
            }
        }
    };
    (@column $field:ident $column:literal) => {
        $column
    };
    (@column $field:ident) => {
        ::std::stringify!($field)
    };
}
