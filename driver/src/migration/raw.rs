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

impl ToSql for RawValue {
    fn to_sql(
        &self,
        _: &Type,
        out: &mut BytesMut,
    ) -> Result<IsNull, Box<dyn StdError + Sync + Send>> {
        out.extend_from_slice(&self.0);
        Ok(IsNull::No)
    }

    fn accepts(_: &Type) -> bool {
        true
    }

    postgres_types::to_sql_checked!();
}

impl std::fmt::Debug for RawValue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the bytes: they may be a plaintext.
        write!(f, "RawValue({} bytes)", self.0.len())
    }
}

/// A one-dimensional array of values in binary format, of whatever element
/// type the server expects for the parameter.
pub(crate) struct RawArray(pub(crate) Vec<Option<Zeroizing<Vec<u8>>>>);

impl std::fmt::Debug for RawArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RawArray({} values)", self.0.len())
    }
}

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
