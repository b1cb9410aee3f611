//! A plaintext as the server would store it: its column's type modifier
//! applied, its encoding made canonical.
//!
//! On a plaintext column the server coerces every value it is given: it
//! refuses a `varchar(3)` of four letters, pads a `char(3)`, rounds a
//! `numeric(6,2)` or a `timestamp(0)`. On an encrypted column it sees only
//! ciphertext, so the client does it, the same way, before encrypting. The
//! canonical form matters for deterministic columns too: equality there is
//! equality of bytes, so `12.5` and `12.50` in a `numeric(6,2)`, or
//! `'ab'` and `'ab '` in a `char(3)`, must become the same bytes, as they
//! become the same value on the server.

use std::fmt;

use fallible_iterator::FallibleIterator;
use postgres_protocol::types::{array_from_sql, array_to_sql, ArrayDimension};
use zeroize::Zeroizing;

use super::encoding_check::{check_encoding, valid_timestamp};
use super::plaintext_type::{Modifiers, PlaintextType, MAX_SECONDS_PRECISION};

/// Why a value does not fit its column's type modifier. Names the limit,
/// never the value.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum CoercionProblem {
    /// Longer than `varchar(n)` or `char(n)` allows (and not by trailing
    /// spaces alone, which are cut as the server cuts them).
    TooLong {
        /// The longest value allowed, in characters.
        max_characters: usize,
    },
    /// More digits before the decimal point than `numeric(p,s)` holds, or
    /// an infinity, which it cannot hold.
    NumericOverflow {
        /// The column's precision.
        precision: i32,
        /// The column's scale.
        scale: i32,
    },
    /// Not a valid encoding of the type (see [`check_encoding`]).
    InvalidEncoding(&'static str),
    /// The typmod would change a value the statement also compares.
    ChangedByTypmod,
    /// Outside the type's range, or rounding would take it there.
    OutOfRange,
}

impl fmt::Display for CoercionProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLong { max_characters } => {
                write!(f, "longer than {max_characters} characters")
            }
            Self::NumericOverflow { precision, scale } => write!(
                f,
                "too large for numeric({precision},{scale}): at most {} digits before the \
                 decimal point, and no infinity",
                precision - scale
            ),
            Self::InvalidEncoding(reason) => f.write_str(reason),
            Self::ChangedByTypmod => f.write_str(
                "the column's type modifier would change this value (rounded, cut), and the \
                 statement also compares it as given: give it as the column stores it",
            ),
            Self::OutOfRange => f.write_str("the value is out of the type's range"),
        }
    }
}

/// What a value bound for an encrypted column is for, which decides what
/// the typmod does to it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Coercion {
    /// Stored into the column: coerced as the server coerces what it
    /// stores, refused where the server refuses.
    Store,
    /// Stored and also compared in the same statement: coerced as for
    /// [`Store`](Self::Store), and refused when the coercion changes the
    /// value, since the comparison must see it as given and one cell cannot
    /// be both.
    StoreUnchanged,
    /// Compared with the column's cells. The server compares a parameter
    /// without applying the column's typmod (`WHERE v = 12.345` finds no
    /// `numeric(6,2)` row), so a value the typmod would change is sent as
    /// given, and matches nothing, as on a plaintext column; only a change
    /// the type's equality ignores (`12.5` → `12.50`, padding a `char(n)`)
    /// is made, so that equal values meet as equal bytes.
    Compare,
}

/// Coerced bytes, if they differ, and whether they equal the original
/// under the type's own equality.
struct Coerced {
    bytes: Option<Zeroizing<Vec<u8>>>,
    exact: bool,
}

impl Coerced {
    fn exact(bytes: Option<Zeroizing<Vec<u8>>>) -> Self {
        Self { bytes, exact: true }
    }

    fn changed(bytes: Option<Zeroizing<Vec<u8>>>) -> Self {
        Self {
            exact: bytes.is_none(),
            bytes,
        }
    }
}

/// The bytes to encrypt for `bytes`, an encoding of `ty`: checked, then,
/// as [`Coercion`] says, with the typmod applied and the encoding made
/// canonical; `None` when `bytes` are to be sent as they are.
/// Replacement bytes are wiped when dropped.
///
/// # Errors
/// [`CoercionProblem`]: an invalid encoding; a value the typmod refuses,
/// when it is to be stored.
pub(crate) fn coerce(
    ty: PlaintextType,
    bytes: &[u8],
    coercion: Coercion,
) -> Result<Option<Zeroizing<Vec<u8>>>, CoercionProblem> {
    check_encoding(ty, bytes).map_err(CoercionProblem::InvalidEncoding)?;
    match (convert(ty, bytes, coercion), coercion) {
        (Ok(coerced), Coercion::Store) => Ok(coerced.bytes),
        (Ok(coerced), Coercion::StoreUnchanged) if coerced.exact => Ok(coerced.bytes),
        (Ok(_), Coercion::StoreUnchanged) => Err(CoercionProblem::ChangedByTypmod),
        (Ok(coerced), Coercion::Compare) => Ok(coerced.bytes.filter(|_| coerced.exact)),
        (Err(CoercionProblem::InvalidEncoding(reason)), _) => {
            Err(CoercionProblem::InvalidEncoding(reason))
        }
        (Err(problem), Coercion::Store | Coercion::StoreUnchanged) => Err(problem),
        (Err(_), Coercion::Compare) => Ok(None),
    }
}

/// The value as the server would store it in a column of `ty`.
fn convert(
    ty: PlaintextType,
    bytes: &[u8],
    coercion: Coercion,
) -> Result<Coerced, CoercionProblem> {
    if let Some(element) = ty.element() {
        return array(element, bytes, coercion);
    }
    let modifiers = ty.modifiers().ok_or(CoercionProblem::InvalidEncoding(
        "aepg does not support this type",
    ))?;
    match (ty.oid, modifiers) {
        // Padding and cutting trailing spaces change nothing `char(n)`'s
        // equality sees; cutting a `varchar(n)`'s does.
        (1042, Modifiers::Length(length)) => characters(bytes, length, true).map(Coerced::exact),
        (1043, Modifiers::Length(length)) => characters(bytes, length, false).map(Coerced::changed),
        (1700, modifiers) => numeric(bytes, modifiers),
        (1114 | 1184 | 1083 | 1266 | 1186, Modifiers::SecondsPrecision(digits)) => {
            round_seconds(ty.oid, bytes, digits).map(Coerced::changed)
        }
        // inet/cidr: the server ignores the is_cidr byte it is sent and
        // sends its own; send the one it would.
        (650 | 869, _) => Ok(Coerced::exact((bytes[2] != u8::from(ty.oid == 650)).then(
            || {
                let mut canonical = Zeroizing::new(bytes.to_vec());
                canonical[2] = u8::from(ty.oid == 650);
                canonical
            },
        ))),
        _ => Ok(Coerced::exact(None)),
    }
}

/// `varchar(n)` / `char(n)`: too long is refused unless the excess is
/// spaces, which are cut; a `char(n)` is padded with spaces to `n`.
fn characters(
    bytes: &[u8],
    length: usize,
    pad: bool,
) -> Result<Option<Zeroizing<Vec<u8>>>, CoercionProblem> {
    let text = std::str::from_utf8(bytes)
        .map_err(|_| CoercionProblem::InvalidEncoding("it is not UTF-8"))?;
    match text.char_indices().nth(length) {
        Some((end, _)) if text[end..].bytes().all(|byte| byte == b' ') => {
            Ok(Some(Zeroizing::new(bytes[..end].to_vec())))
        }
        Some(_) => Err(CoercionProblem::TooLong {
            max_characters: length,
        }),
        None if pad => {
            let missing = length - text.chars().count();
            if missing == 0 {
                return Ok(None);
            }
            let mut padded = Zeroizing::new(Vec::with_capacity(bytes.len() + missing));
            padded.extend_from_slice(bytes);
            padded.resize(bytes.len() + missing, b' ');
            Ok(Some(padded))
        }
        None => Ok(None),
    }
}

const NUMERIC_POSITIVE: u16 = 0x0000;
const NUMERIC_NAN: u16 = 0xC000;
const NUMERIC_INFINITE: [u16; 2] = [0xD000, 0xF000];

/// `numeric`, as `numeric_recv` then `apply_typmod` store it: digits past
/// the display scale cut, rounded half away from zero to the typmod's
/// scale, refused when the integer part is too long, then zero base-10000
/// digits stripped from both ends (and zero made positive).
fn numeric(bytes: &[u8], modifiers: Modifiers) -> Result<Coerced, CoercionProblem> {
    let word = |index: usize| u16::from_be_bytes([bytes[index * 2], bytes[index * 2 + 1]]);
    let (ndigits, weight, sign, display_scale) = (
        usize::from(word(0)),
        i32::from(word(1) as i16),
        word(2),
        word(3),
    );
    let limits = match modifiers {
        Modifiers::Numeric { precision, scale } => Some((precision, scale)),
        _ => None,
    };
    if sign == NUMERIC_NAN || NUMERIC_INFINITE.contains(&sign) {
        if let (Some((precision, scale)), true) = (limits, sign != NUMERIC_NAN) {
            return Err(CoercionProblem::NumericOverflow { precision, scale });
        }
        return Ok(Coerced::exact(Some(encode_numeric(0, sign, 0, &[]))));
    }
    // Decimal digits, most significant first; `point` of them before the
    // decimal point (the first base-10000 digit holds 10^(4·weight+3)).
    let mut decimal = Zeroizing::new(Vec::with_capacity(ndigits * 4 + 8));
    let mut point = 4 * (weight + 1);
    if point < 0 {
        decimal.resize(usize::try_from(-point).unwrap_or(0), 0u8);
        point = 0;
    }
    for index in 0..ndigits {
        let digit = word(4 + index);
        decimal
            .extend([digit / 1000, digit / 100 % 10, digit / 10 % 10, digit % 10].map(|d| d as u8));
    }
    let point = usize::try_from(point).unwrap_or(0);
    if decimal.len() < point {
        decimal.resize(point, 0);
    }
    // numeric_recv cuts digits the display scale hides.
    decimal.truncate(point + usize::from(display_scale));
    let (scale, mut point, mut exact) = (i32::from(display_scale), point, true);
    let scale = match limits {
        Some((_, scale)) => {
            let keep = point + usize::try_from(scale).unwrap_or(0);
            if decimal.len() > keep {
                exact = decimal[keep..].iter().all(|&digit| digit == 0);
                let round_up = decimal[keep] >= 5;
                decimal.truncate(keep);
                if round_up && !increment(&mut decimal) {
                    decimal.insert(0, 1);
                    point += 1;
                }
            }
            scale
        }
        None => scale,
    };
    let bytes = finish_numeric(&decimal, point, sign, scale, limits)?;
    Ok(Coerced {
        bytes: Some(bytes),
        exact,
    })
}

/// Adds one unit in the last place; `false` when it carries out of the first.
fn increment(decimal: &mut [u8]) -> bool {
    for digit in decimal.iter_mut().rev() {
        if *digit == 9 {
            *digit = 0;
        } else {
            *digit += 1;
            return true;
        }
    }
    false
}

/// Checks the integer part against the typmod and packs the decimal digits
/// back into base-10000 digits.
fn finish_numeric(
    decimal: &[u8],
    point: usize,
    sign: u16,
    scale: i32,
    limits: Option<(i32, i32)>,
) -> Result<Zeroizing<Vec<u8>>, CoercionProblem> {
    let first_nonzero = decimal.iter().position(|&digit| digit != 0);
    if let (Some((precision, scale)), Some(first)) = (limits, first_nonzero) {
        let integer_digits = point.saturating_sub(first);
        if integer_digits > usize::try_from(precision - scale).unwrap_or(0) {
            return Err(CoercionProblem::NumericOverflow { precision, scale });
        }
    }
    let display_scale = u16::try_from(scale).unwrap_or(0);
    if first_nonzero.is_none() {
        return Ok(encode_numeric(0, NUMERIC_POSITIVE, display_scale, &[]));
    }
    // Align: whole groups of four on each side of the decimal point.
    let lead = (4 - point % 4) % 4;
    let mut aligned = Zeroizing::new(vec![0u8; lead]);
    aligned.extend_from_slice(decimal);
    let total = aligned.len().div_ceil(4) * 4;
    aligned.resize(total, 0);
    let mut words: Vec<u16> = aligned
        .chunks(4)
        .map(|group| {
            group
                .iter()
                .fold(0u16, |value, &d| value * 10 + u16::from(d))
        })
        .collect();
    let mut weight = i32::try_from((point + lead) / 4).unwrap_or(0) - 1;
    let leading = words.iter().take_while(|&&w| w == 0).count();
    words.drain(..leading);
    weight -= i32::try_from(leading).unwrap_or(0);
    while words.last() == Some(&0) {
        words.pop();
    }
    let encoded = encode_numeric(weight, sign, display_scale, &words);
    words.iter_mut().for_each(|w| *w = 0);
    Ok(encoded)
}

fn encode_numeric(weight: i32, sign: u16, display_scale: u16, words: &[u16]) -> Zeroizing<Vec<u8>> {
    let mut out = Zeroizing::new(Vec::with_capacity(8 + words.len() * 2));
    let ndigits = u16::try_from(words.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&ndigits.to_be_bytes());
    out.extend_from_slice(&(weight as i16).to_be_bytes());
    out.extend_from_slice(&sign.to_be_bytes());
    out.extend_from_slice(&display_scale.to_be_bytes());
    for word in words {
        out.extend_from_slice(&word.to_be_bytes());
    }
    out
}

/// `timestamp(p)`, `timestamptz(p)`, `time(p)`, `timetz(p)`, `interval(p)`:
/// the microseconds rounded half away from zero to `digits` fractional
/// digits, as `AdjustTimestampForTypmod` does; infinities stay; a value
/// rounding takes out of its type's range is refused, as the server
/// refuses it.
fn round_seconds(
    oid: u32,
    bytes: &[u8],
    digits: i32,
) -> Result<Option<Zeroizing<Vec<u8>>>, CoercionProblem> {
    let field = |at: usize| -> Option<[u8; 8]> { bytes.get(at..at + 8)?.try_into().ok() };
    let micros = i64::from_be_bytes(field(0).ok_or(CoercionProblem::OutOfRange)?);
    let infinite = match oid {
        TIMESTAMP_OID | TIMESTAMPTZ_OID => micros == i64::MIN || micros == i64::MAX,
        // An interval is infinite only with all three fields at an end
        // (PostgreSQL 17); one end in `time` alone is an ordinary value.
        INTERVAL_OID => {
            (micros == i64::MIN && bytes[8..] == [0x80, 0, 0, 0, 0x80, 0, 0, 0])
                || (micros == i64::MAX
                    && bytes[8..] == [0x7F, 0xFF, 0xFF, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF])
        }
        _ => false,
    };
    if digits >= MAX_SECONDS_PRECISION || infinite {
        return Ok(None);
    }
    let unit = 10i128.pow(u32::try_from(MAX_SECONDS_PRECISION - digits).unwrap_or(0));
    let magnitude = (i128::from(micros).abs() + unit / 2) / unit * unit;
    let rounded = i64::try_from(magnitude * i128::from(micros.signum()))
        .map_err(|_| CoercionProblem::OutOfRange)?;
    if matches!(oid, TIMESTAMP_OID | TIMESTAMPTZ_OID) && !valid_timestamp(rounded) {
        return Err(CoercionProblem::OutOfRange);
    }
    if rounded == micros {
        return Ok(None);
    }
    let mut out = Zeroizing::new(bytes.to_vec());
    out[..8].copy_from_slice(&rounded.to_be_bytes());
    Ok(Some(out))
}

const TIMESTAMP_OID: u32 = 1114;
const TIMESTAMPTZ_OID: u32 = 1184;
const INTERVAL_OID: u32 = 1186;

/// A one-dimensional array: each element coerced as its type, the whole
/// written back as the server writes it (no dimension when empty, the
/// null flag from the elements).
fn array(
    element: PlaintextType,
    bytes: &[u8],
    coercion: Coercion,
) -> Result<Coerced, CoercionProblem> {
    let malformed = CoercionProblem::InvalidEncoding("it is not an array's binary form");
    let parsed = array_from_sql(bytes).map_err(|_| malformed.clone())?;
    let dimension = parsed.dimensions().next().map_err(|_| malformed.clone())?;
    let mut elements: Vec<Option<Zeroizing<Vec<u8>>>> = Vec::new();
    let mut exact = true;
    let mut values = parsed.values();
    while let Some(value) = values.next().map_err(|_| malformed.clone())? {
        let Some(value) = value else {
            elements.push(None);
            continue;
        };
        let coerced = match convert(element, value, coercion) {
            Ok(coerced) => coerced,
            Err(problem @ CoercionProblem::InvalidEncoding(_)) => return Err(problem),
            Err(problem) if coercion != Coercion::Compare => return Err(problem),
            Err(_) => Coerced {
                bytes: None,
                exact: false,
            },
        };
        exact &= coerced.exact;
        elements.push(Some(
            coerced
                .bytes
                .unwrap_or_else(|| Zeroizing::new(value.to_vec())),
        ));
    }
    let dimension = dimension.filter(|d| d.len > 0).map(|d| ArrayDimension {
        len: d.len,
        lower_bound: d.lower_bound,
    });
    let mut out = bytes::BytesMut::new();
    array_to_sql(
        dimension,
        element.oid,
        elements.iter(),
        |value, out| match value {
            Some(value) => {
                out.extend_from_slice(value);
                Ok(postgres_protocol::IsNull::No)
            }
            None => Ok(postgres_protocol::IsNull::Yes),
        },
        &mut out,
    )
    .map_err(|_| malformed)?;
    let canonical = Zeroizing::new(out.to_vec());
    zeroize::Zeroize::zeroize(out.as_mut());
    Ok(Coerced {
        bytes: Some(canonical),
        exact,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn of(name: &str) -> PlaintextType {
        PlaintextType::parse(name).unwrap()
    }

    fn numeric_bytes(weight: i16, sign: u16, scale: u16, digits: &[u16]) -> Vec<u8> {
        encode_numeric(i32::from(weight), sign, scale, digits).to_vec()
    }

    proptest::proptest! {
        /// Valid numerics of any shape, under typmods and without: no
        /// panic, and the coerced value is its own coercion.
        #[test]
        fn numeric_coercion_is_canonical(
            digits in proptest::collection::vec(0u16..10_000, 0..6),
            weight in -5i16..5,
            negative: bool,
            scale in 0u16..12,
            typmod in proptest::sample::select(vec!["numeric", "numeric(6,2)", "numeric(3,3)", "numeric(4)", "numeric(12,5)"]),
        ) {
            let sign = if negative { 0x4000 } else { 0 };
            let bytes = numeric_bytes(weight, sign, scale, &digits);
            for coercion in [Coercion::Store, Coercion::Compare] {
                // A compared value sent as given (`None`) may be one the
                // typmod refuses; one coerced must be storable as it is.
                let first = coerce(of(typmod), &bytes, coercion);
                if coercion == Coercion::Store || matches!(first, Ok(Some(_))) {
                    let Ok(first) = first else { continue };
                    let once = first.as_deref().map_or(bytes.as_slice(), Vec::as_slice);
                    let twice = coerce(of(typmod), once, Coercion::Store).unwrap();
                    proptest::prop_assert_eq!(twice.as_deref().map_or(once, Vec::as_slice), once);
                }
            }
        }
    }

    #[test]
    fn infinities_do_not_fit_a_numeric_with_a_typmod_and_nan_does() {
        let infinity = numeric_bytes(0, 0xD000, 0, &[]);
        assert_eq!(
            coerce(of("numeric(5,1)"), &infinity, Coercion::Store),
            Err(CoercionProblem::NumericOverflow {
                precision: 5,
                scale: 1
            })
        );
        // Compared, it is sent as given and matches nothing.
        assert_eq!(
            coerce(of("numeric(5,1)"), &infinity, Coercion::Compare),
            Ok(None)
        );
        assert!(coerce(of("numeric"), &infinity, Coercion::Store).is_ok());
        let nan = numeric_bytes(0, NUMERIC_NAN, 0, &[]);
        assert!(coerce(of("numeric(5,1)"), &nan, Coercion::Store).is_ok());
    }

    #[test]
    fn numeric_zero_words_are_stripped_and_zero_is_positive() {
        // 12.5 written as 0012 5000 0000 with a leading zero word: weight 1.
        let loose = numeric_bytes(1, 0, 1, &[0, 12, 5000, 0]);
        let canonical = coerce(of("numeric"), &loose, Coercion::Store)
            .unwrap()
            .unwrap();
        assert_eq!(*canonical, numeric_bytes(0, 0, 1, &[12, 5000]));
        let negative_zero = numeric_bytes(0, 0x4000, 2, &[0]);
        let zero = coerce(of("numeric(4,2)"), &negative_zero, Coercion::Store)
            .unwrap()
            .unwrap();
        assert_eq!(*zero, numeric_bytes(0, 0, 2, &[]));
    }

    #[test]
    fn interval_seconds_round_away_from_zero() {
        let interval = |micros: i64| [micros.to_be_bytes().as_slice(), &[0; 8]].concat();
        let rounded = coerce(of("interval(0)"), &interval(-1_500_000), Coercion::Store).unwrap();
        assert_eq!(
            rounded.as_deref().map(Vec::as_slice),
            Some(interval(-2_000_000).as_slice())
        );
        assert_eq!(
            coerce(of("interval(0)"), &interval(-1_000_000), Coercion::Store),
            Ok(None)
        );
        // Inexact, so a comparison sends it as given.
        assert_eq!(
            coerce(of("interval(0)"), &interval(-1_500_000), Coercion::Compare),
            Ok(None)
        );
        // An infinite interval (all three fields at an end) stays infinite;
        // a `time` at the end alone is an ordinary value, out of range once
        // rounded, as PostgreSQL says.
        let infinite = [
            i64::MAX.to_be_bytes().as_slice(),
            &[0x7F, 0xFF, 0xFF, 0xFF, 0x7F, 0xFF, 0xFF, 0xFF],
        ]
        .concat();
        assert_eq!(
            coerce(of("interval(0)"), &infinite, Coercion::Store),
            Ok(None)
        );
        assert_eq!(
            coerce(of("interval(0)"), &interval(i64::MAX), Coercion::Store),
            Err(CoercionProblem::OutOfRange)
        );
    }

    #[test]
    fn out_of_range_times_are_refused_as_the_server_refuses_them() {
        let timetz = |zone: i32| [7_i64.to_be_bytes().as_slice(), &zone.to_be_bytes()].concat();
        assert!(coerce(of("timetz"), &timetz(-57_599), Coercion::Store).is_ok());
        for zone in [i32::MIN, -57_600, 57_600, i32::MAX] {
            assert!(
                coerce(of("timetz"), &timetz(zone), Coercion::Store).is_err(),
                "{zone}"
            );
        }
        let past_the_end = 9_223_372_000_000_000_000_i64.to_be_bytes();
        assert!(coerce(of("timestamp"), &past_the_end, Coercion::Store).is_err());
        // The last microsecond before the end rounds past it.
        let last = (9_223_371_331_200_000_000_i64 - 1).to_be_bytes();
        assert!(coerce(of("timestamp"), &last, Coercion::Store).is_ok());
        assert_eq!(
            coerce(of("timestamp(0)"), &last, Coercion::Store),
            Err(CoercionProblem::OutOfRange)
        );
        assert!(coerce(of("timestamp(0)"), &i64::MAX.to_be_bytes(), Coercion::Store).is_ok());
        assert!(coerce(of("date"), &i32::MAX.to_be_bytes(), Coercion::Store).is_ok());
        assert!(coerce(
            of("date"),
            &2_145_031_949_i32.to_be_bytes(),
            Coercion::Store
        )
        .is_err());
    }

    #[test]
    fn a_value_stored_and_compared_must_fit_unchanged() {
        let rounded = numeric_bytes(0, 0, 3, &[12, 3450]); // 12.345
        assert_eq!(
            coerce(of("numeric(6,2)"), &rounded, Coercion::StoreUnchanged),
            Err(CoercionProblem::ChangedByTypmod)
        );
        let exact = numeric_bytes(0, 0, 1, &[12, 5000]); // 12.5 → 12.50
        assert!(coerce(of("numeric(6,2)"), &exact, Coercion::StoreUnchanged).is_ok());
        assert_eq!(
            coerce(of("varchar(2)"), b"ab ", Coercion::StoreUnchanged),
            Err(CoercionProblem::ChangedByTypmod)
        );
        assert!(coerce(of("char(4)"), b"ab", Coercion::StoreUnchanged).is_ok());
    }

    #[test]
    fn network_values_carry_their_type_s_flag() {
        let inet_sent_as_cidr = [2, 24, 1, 4, 10, 1, 2, 0];
        let inet = coerce(of("inet"), &inet_sent_as_cidr, Coercion::Store)
            .unwrap()
            .unwrap();
        assert_eq!(*inet, [2, 24, 0, 4, 10, 1, 2, 0]);
        let host_bits = [2, 16, 1, 4, 10, 1, 2, 0];
        assert!(coerce(of("cidr"), &host_bits, Coercion::Store).is_err());
        assert!(coerce(of("inet"), &[2, 33, 0, 4, 10, 1, 2, 0], Coercion::Store).is_err());
    }

    #[test]
    fn arrays_are_one_dimensional_of_the_element_type() {
        let mut two_dimensions = bytes::BytesMut::new();
        let dimension = |len| ArrayDimension {
            len,
            lower_bound: 1,
        };
        array_to_sql(
            [dimension(1), dimension(1)],
            23,
            [7i32],
            |value, out| {
                out.extend_from_slice(&value.to_be_bytes());
                Ok(postgres_protocol::IsNull::No)
            },
            &mut two_dimensions,
        )
        .unwrap();
        assert!(coerce(of("int4[]"), &two_dimensions, Coercion::Store).is_err());
        let mut texts = bytes::BytesMut::new();
        array_to_sql(
            [dimension(1)],
            25,
            ["x"],
            |value, out| {
                out.extend_from_slice(value.as_bytes());
                Ok(postgres_protocol::IsNull::No)
            },
            &mut texts,
        )
        .unwrap();
        assert!(coerce(of("int4[]"), &texts, Coercion::Store).is_err());
        assert!(coerce(of("text[]"), &texts, Coercion::Store).is_ok());
    }
}
