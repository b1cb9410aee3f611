//! Values moved in the server's binary format, whatever their type: a
//! migration copies a column's values into cells (and back) without
//! decoding them, and the binary send format is exactly a cell's plaintext.

use std::error::Error as StdError;

use bytes::BytesMut;
use postgres_protocol::types::{array_to_sql, ArrayDimension};
use postgres_protocol::IsNull as ProtocolIsNull;
use postgres_types::{FromSql, IsNull, Kind, ToSql, Type};
use zeroize::Zeroizing;

/// One value as the server sent it (binary format), wiped when dropped.
pub(crate) struct RawValue(pub(crate) Zeroizing<Vec<u8>>);

impl<'a> FromSql<'a> for RawValue {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn StdError + Sync + Send>> {
        Ok(Self(Zeroizing::new(raw.to_vec())))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// A one-dimensional array of values in binary format, of whatever element
/// type the server expects for the parameter.
#[derive(Debug)]
pub(crate) struct RawArray(pub(crate) Vec<Option<Zeroizing<Vec<u8>>>>);

impl ToSql for RawArray {
    fn to_sql(
        &self,
        ty: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        let Kind::Array(element) = ty.kind() else {
            return Err(format!("{ty} is not an array type").into());
        };
        let dimension = ArrayDimension {
            len: i32::try_from(self.0.len())?,
            lower_bound: 1,
        };
        array_to_sql(
            Some(dimension),
            element.oid(),
            self.0.iter(),
            |value, out| match value {
                Some(bytes) => {
                    out.extend_from_slice(bytes);
                    Ok(ProtocolIsNull::No)
                }
                None => Ok(ProtocolIsNull::Yes),
            },
            out,
        )?;
        Ok(IsNull::No)
    }

    fn accepts(ty: &Type) -> bool {
        matches!(ty.kind(), Kind::Array(_))
    }

    postgres_types::to_sql_checked!();
}
