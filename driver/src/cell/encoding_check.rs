//! Whether bytes are a valid binary encoding of a plaintext type.
//!
//! The server never sees an encrypted column's plaintext, so it cannot
//! reject a value of the wrong type. A Rust value that claims to accept
//! every SQL type (a query builder's wrapper value, say) could otherwise be
//! encrypted as the raw bytes of another type: an `int8` stored in an
//! `int4` column, bytes that are not UTF-8 in a `text` one. Each encoded
//! plaintext is checked here before it is encrypted, as the server's binary
//! input would check it. Bytes valid for two types (an `int8` of small
//! value is also a valid `numeric` zero) pass: this is the server's check,
//! not a proof of the Rust type.

use postgres_protocol::types;

use super::plaintext_type::PlaintextType;

/// Why bytes are not a valid encoding (never quoting them).
pub type EncodingProblem = &'static str;

/// Checks `bytes` as PostgreSQL's binary input for `ty` would.
///
/// # Errors
/// What is wrong with the encoding; also for a type aepg does not support.
pub fn check_encoding(ty: PlaintextType, bytes: &[u8]) -> Result<(), EncodingProblem> {
    if let Some(element) = ty.element() {
        return array(element, bytes);
    }
    let fixed = |len: usize| {
        if bytes.len() == len {
            Ok(())
        } else {
            Err("its length is not the type's")
        }
    };
    match ty.oid {
        // boolean: one byte (any value reads as true but zero).
        16 => fixed(1),
        // bytea: any bytes.
        17 => Ok(()),
        20 | 790 => fixed(8),
        1114 | 1184 => fixed(8).and_then(|()| timestamp(bytes)),
        21 => fixed(2),
        23 => fixed(4),
        1082 => fixed(4).and_then(|()| date(bytes)),
        700 => fixed(4),
        701 => fixed(8),
        2950 => fixed(16),
        829 => fixed(6),
        1186 => fixed(16),
        1083 => fixed(8).and_then(|()| time_of_day(bytes)),
        1266 => fixed(12)
            .and_then(|()| time_of_day(bytes))
            .and_then(|()| zone(bytes)),
        650 => network(bytes, true),
        869 => network(bytes, false),
        25 | 1042 | 1043 => text(bytes),
        114 => json(bytes),
        3802 => match bytes.split_first() {
            Some((1, text)) => json(text),
            _ => Err("it does not start with jsonb's version byte"),
        },
        1700 => numeric(bytes),
        _ => Err("aepg does not support this type"),
    }
}

/// Text as the server stores it: UTF-8 without NUL.
fn text(bytes: &[u8]) -> Result<(), EncodingProblem> {
    let text = types::text_from_sql(bytes).map_err(|_| "it is not UTF-8")?;
    if text.contains('\0') {
        return Err("it contains a NUL character");
    }
    Ok(())
}

/// `time`: microseconds since midnight, 00:00 to 24:00 included.
fn time_of_day(bytes: &[u8]) -> Result<(), EncodingProblem> {
    let micros = i64::from_be_bytes(bytes[..8].try_into().map_err(|_| "it is too short")?);
    if (0..=MICROS_PER_DAY).contains(&micros) {
        Ok(())
    } else {
        Err("its time of day is out of range")
    }
}

const MICROS_PER_DAY: i64 = 86_400_000_000;
/// `MIN_TIMESTAMP` and `END_TIMESTAMP` (exclusive): 4714-11-24 BC to
/// 294277-01-01, in microseconds from 2000-01-01.
const TIMESTAMP_RANGE: std::ops::Range<i64> = -211_813_488_000_000_000..9_223_371_331_200_000_000;
/// `IS_VALID_DATE`: days from 2000-01-01, 4714-11-24 BC to 5874898-01-01.
const DATE_RANGE: std::ops::Range<i32> = -2_451_545..2_145_031_949;

/// Whether `micros` is a timestamp PostgreSQL accepts (or an infinity).
pub(crate) fn valid_timestamp(micros: i64) -> bool {
    micros == i64::MIN || micros == i64::MAX || TIMESTAMP_RANGE.contains(&micros)
}

/// `timestamp`/`timestamptz`: within the server's range, or infinite.
fn timestamp(bytes: &[u8]) -> Result<(), EncodingProblem> {
    let micros = i64::from_be_bytes(bytes.try_into().map_err(|_| "it is too short")?);
    if valid_timestamp(micros) {
        Ok(())
    } else {
        Err("the timestamp is out of range")
    }
}

/// `date`: within the server's range, or infinite.
fn date(bytes: &[u8]) -> Result<(), EncodingProblem> {
    let days = i32::from_be_bytes(bytes.try_into().map_err(|_| "it is too short")?);
    if days == i32::MIN || days == i32::MAX || DATE_RANGE.contains(&days) {
        Ok(())
    } else {
        Err("the date is out of range")
    }
}
/// `TZDISP_LIMIT`: a `timetz` zone offset is under 16 hours, in seconds.
const ZONE_LIMIT: i32 = 16 * 3600;

/// `timetz`'s zone offset, after the time of day.
fn zone(bytes: &[u8]) -> Result<(), EncodingProblem> {
    let zone = i32::from_be_bytes(bytes[8..12].try_into().map_err(|_| "it is too short")?);
    if (-ZONE_LIMIT + 1..ZONE_LIMIT).contains(&zone) {
        Ok(())
    } else {
        Err("its time zone offset is out of range")
    }
}

/// `inet`/`cidr`: family, mask bits, is_cidr, address length, address; a
/// `cidr` has no bits set right of its mask.
fn network(bytes: &[u8], is_cidr: bool) -> Result<(), EncodingProblem> {
    let malformed = "it is not an inet's binary form";
    let [family, bits, _, length, address @ ..] = bytes else {
        return Err(malformed);
    };
    let size = match family {
        2 => 4,
        3 => 16,
        _ => return Err(malformed),
    };
    if usize::from(*length) != size || address.len() != size || usize::from(*bits) > size * 8 {
        return Err(malformed);
    }
    if is_cidr {
        let bits = usize::from(*bits);
        let host_bits_set = address.iter().enumerate().any(|(index, byte)| {
            let kept = bits.saturating_sub(index * 8).min(8);
            let host_mask = if kept == 8 { 0 } else { 0xFFu8 >> kept };
            byte & host_mask != 0
        });
        if host_bits_set {
            return Err("a cidr has bits set to the right of its mask");
        }
    }
    Ok(())
}

/// A one-dimensional array of `element`, each element valid.
fn array(element: PlaintextType, bytes: &[u8]) -> Result<(), EncodingProblem> {
    use fallible_iterator::FallibleIterator;
    let malformed = "it is not a one-dimensional array of the column's type";
    let parsed = types::array_from_sql(bytes).map_err(|_| malformed)?;
    if parsed.element_type() != element.oid {
        return Err(malformed);
    }
    let dimensions: Vec<_> = parsed.dimensions().collect().map_err(|_| malformed)?;
    let expected = match dimensions.as_slice() {
        [] => 0,
        [dimension] => usize::try_from(dimension.len).map_err(|_| malformed)?,
        _ => return Err("arrays of more than one dimension are not supported"),
    };
    let mut count = 0;
    let mut values = parsed.values();
    while let Some(value) = values.next().map_err(|_| malformed)? {
        count += 1;
        if let Some(value) = value {
            check_encoding(element, value)?;
        }
    }
    if count == expected {
        Ok(())
    } else {
        Err(malformed)
    }
}

fn json(bytes: &[u8]) -> Result<(), EncodingProblem> {
    text(bytes)?;
    serde_json::from_slice::<serde::de::IgnoredAny>(bytes)
        .map(|_| ())
        .map_err(|_| "it is not JSON")
}

/// `numeric`'s binary form: digit count, weight, sign, display scale, then
/// base-10000 digits.
fn numeric(bytes: &[u8]) -> Result<(), EncodingProblem> {
    let word = |index: usize| -> Option<u16> {
        let at = index * 2;
        Some(u16::from_be_bytes([*bytes.get(at)?, *bytes.get(at + 1)?]))
    };
    let malformed = "it is not a numeric's binary form";
    let digits = usize::from(word(0).ok_or(malformed)?);
    let sign = word(2).ok_or(malformed)?;
    let scale = word(3).ok_or(malformed)?;
    if digits > 0x7FFF || bytes.len() != 8 + 2 * digits || scale > 0x3FFF {
        return Err(malformed);
    }
    // Positive, negative, NaN, +Infinity, -Infinity.
    if ![0x0000, 0x4000, 0xC000, 0xD000, 0xF000].contains(&sign) {
        return Err(malformed);
    }
    if (4..4 + digits).any(|index| word(index).is_none_or(|digit| digit > 9999)) {
        return Err(malformed);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use postgres_types::{ToSql, Type};

    use super::*;

    fn encoded(value: &(dyn ToSql + Sync), ty: &Type) -> Vec<u8> {
        let mut buffer = bytes::BytesMut::new();
        value.to_sql_checked(ty, &mut buffer).unwrap();
        buffer.to_vec()
    }

    fn of(name: &str) -> PlaintextType {
        PlaintextType::parse(name).unwrap()
    }

    #[test]
    fn values_of_the_type_pass() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("bool", encoded(&true, &Type::BOOL)),
            ("int2", encoded(&7i16, &Type::INT2)),
            ("int4", encoded(&7i32, &Type::INT4)),
            ("int8", encoded(&7i64, &Type::INT8)),
            ("float4", encoded(&1.5f32, &Type::FLOAT4)),
            ("float8", encoded(&1.5f64, &Type::FLOAT8)),
            ("text", encoded(&"héllo", &Type::TEXT)),
            ("varchar(9)", encoded(&"héllo", &Type::VARCHAR)),
            ("bytea", encoded(&vec![0u8, 255], &Type::BYTEA)),
            ("json", br#"{"a": 1}"#.to_vec()),
            ("jsonb", b"\x01[1, 2]".to_vec()),
            ("date", encoded(&7i32, &Type::INT4)),
            ("uuid", vec![7; 16]),
            // numeric 12.5: 2 digits, weight 0, positive, scale 1: 12, 5000.
            ("numeric", vec![0, 2, 0, 0, 0, 0, 0, 1, 0, 12, 0x13, 0x88]),
        ];
        for (name, bytes) in cases {
            assert_eq!(check_encoding(of(name), &bytes), Ok(()), "{name}");
        }
    }

    #[test]
    fn values_of_another_type_are_refused() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("int4", encoded(&7i64, &Type::INT8)),
            ("int8", encoded(&7i32, &Type::INT4)),
            ("bool", encoded(&7i32, &Type::INT4)),
            ("date", encoded(&7i64, &Type::INT8)),
            ("uuid", encoded(&"not a uuid", &Type::TEXT)),
            ("text", vec![0xff, 0xfe]),
            ("text", b"a\0b".to_vec()),
            ("json", encoded(&7i64, &Type::INT8)),
            ("jsonb", b"{}".to_vec()),
            ("numeric", encoded(&7i32, &Type::INT4)),
            ("numeric", vec![0, 1, 0, 0, 0x12, 0x34, 0, 0, 0, 1]),
            ("numeric", vec![0, 1, 0, 0, 0, 0, 0, 0, 0x27, 0x10]),
        ];
        for (name, bytes) in cases {
            assert!(
                check_encoding(of(name), &bytes).is_err(),
                "{name}: {bytes:?}"
            );
        }
    }
}
