//! The PostgreSQL type of a plaintext: what an encrypted column holds, by
//! oid and typmod, and by name.
//!
//! Only built-in types (and one-dimensional arrays of them) are supported:
//! their oids are the same in every database, so a cell bound to a type oid
//! decrypts after a dump is restored elsewhere. The typmod is kept because
//! the client enforces it (see [`super::typmod`]): the server sees only
//! ciphertext and cannot.

use super::setting::PaddingPolicy;

/// The PostgreSQL type of the plaintext: its built-in type oid and typmod
/// (`-1` when the type has none, `varchar(20)` has 24). An array type
/// (`int4[]`, oid 1007) carries its elements' typmod, as `atttypmod` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PlaintextType {
    /// The type's oid (`pg_type.oid`), the same in every database for built-in types.
    pub oid: u32,
    /// The type modifier (`atttypmod`).
    pub typmod: i32,
}

/// A type aepg cannot encrypt.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "type {name} cannot be encrypted; supported: bool, int2, int4, int8, float4, float8, \
     numeric(p,s), money, text, varchar(n), char(n), bytea, uuid, date, time(p), timetz(p), \
     timestamp(p), timestamptz(p), interval(p), inet, cidr, macaddr, json, jsonb, and \
     one-dimensional arrays of these (int4[])"
)]
pub struct UnsupportedType {
    /// The type as given (a name, or `type oid N`).
    pub name: String,
}

/// What a type's modifier means, which decides how it is written, read
/// and enforced.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Modifier {
    /// The type takes none.
    None,
    /// A length in characters, stored plus 4 (`varchar(n)`, `char(n)`).
    Length,
    /// Precision and optional scale, stored `(p << 16 | s) + 4` (`numeric`).
    PrecisionScale,
    /// Fractional digits of seconds, 0 to 6, stored as is (`timestamp(p)`).
    SecondsPrecision,
    /// Fractional digits of seconds of an interval over its full range,
    /// stored `0x7FFF << 16 | p` (`interval(p)`).
    IntervalPrecision,
}

/// A supported built-in type.
struct BuiltIn {
    /// The name `format_type` gives it; a `(…)` in it is where the modifier goes.
    name: &'static str,
    /// Other names it is written with, as a base name with no modifier.
    aliases: &'static [&'static str],
    oid: u32,
    array_oid: u32,
    fixed_width: bool,
    modifier: Modifier,
}

#[rustfmt::skip]
const BUILT_INS: &[BuiltIn] = &[
    BuiltIn { name: "boolean", aliases: &["bool"], oid: 16, array_oid: 1000, fixed_width: true, modifier: Modifier::None },
    BuiltIn { name: "bytea", aliases: &[], oid: 17, array_oid: 1001, fixed_width: false, modifier: Modifier::None },
    BuiltIn { name: "bigint", aliases: &["int8"], oid: 20, array_oid: 1016, fixed_width: true, modifier: Modifier::None },
    BuiltIn { name: "smallint", aliases: &["int2"], oid: 21, array_oid: 1005, fixed_width: true, modifier: Modifier::None },
    BuiltIn { name: "integer", aliases: &["int4", "int"], oid: 23, array_oid: 1007, fixed_width: true, modifier: Modifier::None },
    BuiltIn { name: "text", aliases: &[], oid: 25, array_oid: 1009, fixed_width: false, modifier: Modifier::None },
    BuiltIn { name: "json", aliases: &[], oid: 114, array_oid: 199, fixed_width: false, modifier: Modifier::None },
    BuiltIn { name: "cidr", aliases: &[], oid: 650, array_oid: 651, fixed_width: false, modifier: Modifier::None },
    BuiltIn { name: "real", aliases: &["float4"], oid: 700, array_oid: 1021, fixed_width: true, modifier: Modifier::None },
    BuiltIn { name: "double precision", aliases: &["float8"], oid: 701, array_oid: 1022, fixed_width: true, modifier: Modifier::None },
    BuiltIn { name: "money", aliases: &[], oid: 790, array_oid: 791, fixed_width: true, modifier: Modifier::None },
    BuiltIn { name: "macaddr", aliases: &[], oid: 829, array_oid: 1040, fixed_width: true, modifier: Modifier::None },
    BuiltIn { name: "inet", aliases: &[], oid: 869, array_oid: 1041, fixed_width: false, modifier: Modifier::None },
    BuiltIn { name: "character", aliases: &["char", "bpchar"], oid: 1042, array_oid: 1014, fixed_width: false, modifier: Modifier::Length },
    BuiltIn { name: "character varying", aliases: &["varchar"], oid: 1043, array_oid: 1015, fixed_width: false, modifier: Modifier::Length },
    BuiltIn { name: "date", aliases: &[], oid: 1082, array_oid: 1182, fixed_width: true, modifier: Modifier::None },
    BuiltIn { name: "time() without time zone", aliases: &["time"], oid: 1083, array_oid: 1183, fixed_width: true, modifier: Modifier::SecondsPrecision },
    BuiltIn { name: "timestamp() without time zone", aliases: &["timestamp"], oid: 1114, array_oid: 1115, fixed_width: true, modifier: Modifier::SecondsPrecision },
    BuiltIn { name: "timestamp() with time zone", aliases: &["timestamptz"], oid: 1184, array_oid: 1185, fixed_width: true, modifier: Modifier::SecondsPrecision },
    BuiltIn { name: "interval", aliases: &[], oid: 1186, array_oid: 1187, fixed_width: true, modifier: Modifier::IntervalPrecision },
    BuiltIn { name: "time() with time zone", aliases: &["timetz"], oid: 1266, array_oid: 1270, fixed_width: true, modifier: Modifier::SecondsPrecision },
    BuiltIn { name: "numeric", aliases: &["decimal"], oid: 1700, array_oid: 1231, fixed_width: false, modifier: Modifier::PrecisionScale },
    BuiltIn { name: "uuid", aliases: &[], oid: 2950, array_oid: 2951, fixed_width: true, modifier: Modifier::None },
    BuiltIn { name: "jsonb", aliases: &[], oid: 3802, array_oid: 3807, fixed_width: false, modifier: Modifier::None },
];

/// PostgreSQL stores a length or numeric modifier with this offset (`VARHDRSZ`).
const TYPMOD_OFFSET: i32 = 4;
/// `INTERVAL_FULL_RANGE << 16`: an interval modifier with no field restriction.
const INTERVAL_FULL_RANGE: i32 = 0x7FFF << 16;
/// The most fractional digits of seconds PostgreSQL keeps.
pub(crate) const MAX_SECONDS_PRECISION: i32 = 6;

impl BuiltIn {
    fn find(oid: u32) -> Option<&'static Self> {
        BUILT_INS.iter().find(|t| t.oid == oid)
    }

    /// The name with no modifier: `time without time zone`.
    fn bare_name(&self) -> String {
        self.name.replace("()", "")
    }
}

impl PlaintextType {
    /// Parses a type as written in SQL: `text`, `varchar(20)`, `char(2)`,
    /// `numeric(10,2)`, `timestamptz`, `timestamp(3) with time zone`,
    /// `interval(0)`, `int4[]`, …
    ///
    /// # Errors
    /// [`UnsupportedType`] for a type aepg cannot encrypt.
    pub fn parse(sql: &str) -> Result<Self, UnsupportedType> {
        let unsupported = || UnsupportedType {
            name: format!("{sql:?}"),
        };
        let normalized = sql.trim().to_ascii_lowercase();
        let (element, is_array) = match normalized.strip_suffix("[]") {
            Some(element) => (element.trim_end(), true),
            None => (normalized.as_str(), false),
        };
        let (base, modifiers) = match element.split_once('(') {
            Some((before, rest)) => {
                let (inner, after) = rest.split_once(')').ok_or_else(unsupported)?;
                let numbers = inner
                    .split(',')
                    .map(|part| part.trim().parse::<i32>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| unsupported())?;
                let base = format!("{} {}", before.trim(), after.trim());
                (base.trim().to_owned(), Some(numbers))
            }
            None => (element.to_owned(), None),
        };
        let built_in = BUILT_INS
            .iter()
            .find(|t| t.bare_name() == base || t.aliases.contains(&base.as_str()))
            .ok_or_else(unsupported)?;
        let typmod = match (built_in.modifier, modifiers.as_deref()) {
            // `char` alone is `char(1)`; `bpchar` alone has no length.
            (Modifier::Length, None) if built_in.oid == BPCHAR_OID && base != "bpchar" => {
                1 + TYPMOD_OFFSET
            }
            (_, None) => -1,
            (Modifier::Length, Some(&[length])) if (1..=MAX_LENGTH).contains(&length) => {
                length + TYPMOD_OFFSET
            }
            (Modifier::PrecisionScale, Some(&[precision])) if (1..=1000).contains(&precision) => {
                (precision << 16) + TYPMOD_OFFSET
            }
            (Modifier::PrecisionScale, Some(&[precision, scale]))
                if (1..=1000).contains(&precision) && (0..=precision).contains(&scale) =>
            {
                ((precision << 16) | scale) + TYPMOD_OFFSET
            }
            (Modifier::SecondsPrecision, Some(&[digits]))
                if (0..=MAX_SECONDS_PRECISION).contains(&digits) =>
            {
                digits
            }
            (Modifier::IntervalPrecision, Some(&[digits]))
                if (0..=MAX_SECONDS_PRECISION).contains(&digits) =>
            {
                INTERVAL_FULL_RANGE | digits
            }
            _ => return Err(unsupported()),
        };
        Ok(Self {
            oid: if is_array {
                built_in.array_oid
            } else {
                built_in.oid
            },
            typmod,
        })
    }

    /// The type as PostgreSQL's `format_type` writes it
    /// (`character varying(20)`, `timestamp(3) with time zone`, `integer[]`),
    /// or `None` for a type or modifier aepg does not support.
    pub fn sql_name(&self) -> Option<String> {
        let element = self.element().unwrap_or(*self);
        let built_in = BuiltIn::find(element.oid)?;
        let name = match (element.modifiers()?, element.oid) {
            (Modifiers::None, BPCHAR_OID) => "bpchar".to_owned(),
            (Modifiers::None, _) => built_in.bare_name(),
            (Modifiers::Length(length), _) => format!("{}({length})", built_in.name),
            (Modifiers::Numeric { precision, scale }, _) => {
                format!("{}({precision},{scale})", built_in.name)
            }
            (Modifiers::SecondsPrecision(digits), _) if built_in.name.contains("()") => {
                built_in.name.replace("()", &format!("({digits})"))
            }
            (Modifiers::SecondsPrecision(digits), _) => format!("{}({digits})", built_in.name),
        };
        Some(if self.is_array() {
            format!("{name}[]")
        } else {
            name
        })
    }

    /// What this type's modifier says, checked against what the type takes;
    /// `None` for an unsupported type or a modifier it cannot have.
    pub(crate) fn modifiers(&self) -> Option<Modifiers> {
        let built_in = BuiltIn::find(self.oid)?;
        if self.typmod == -1 {
            return Some(Modifiers::None);
        }
        let packed = self.typmod - TYPMOD_OFFSET;
        match built_in.modifier {
            Modifier::None => None,
            Modifier::Length => (1..=MAX_LENGTH)
                .contains(&packed)
                .then(|| usize::try_from(packed).ok().map(Modifiers::Length))
                .flatten(),
            Modifier::PrecisionScale => {
                let (precision, scale) = (packed >> 16, packed & 0xFFFF);
                ((1..=1000).contains(&precision) && scale <= precision)
                    .then_some(Modifiers::Numeric { precision, scale })
            }
            Modifier::SecondsPrecision => (0..=MAX_SECONDS_PRECISION)
                .contains(&self.typmod)
                .then_some(Modifiers::SecondsPrecision(self.typmod)),
            Modifier::IntervalPrecision => {
                let digits = self.typmod & 0xFFFF;
                (self.typmod & !0xFFFF == INTERVAL_FULL_RANGE
                    && (0..=MAX_SECONDS_PRECISION).contains(&digits))
                .then_some(Modifiers::SecondsPrecision(digits))
            }
        }
    }

    /// For an array type, the type of its elements (with the array's typmod).
    pub fn element(&self) -> Option<PlaintextType> {
        BUILT_INS
            .iter()
            .find(|t| t.array_oid == self.oid)
            .map(|t| PlaintextType {
                oid: t.oid,
                typmod: self.typmod,
            })
    }

    /// Whether this is a (one-dimensional) array type.
    pub fn is_array(&self) -> bool {
        self.element().is_some()
    }

    /// The oid of the array type whose elements are of this type (`None`
    /// for an array type: arrays of arrays are not types).
    pub(crate) fn array_oid(&self) -> Option<u32> {
        BuiltIn::find(self.oid).map(|t| t.array_oid)
    }

    /// Whether aepg can encrypt values of this type.
    pub fn is_supported(&self) -> bool {
        self.sql_name().is_some()
    }

    /// The type as SQL writes it, or `type oid N` for a type aepg does not
    /// support: for messages.
    pub fn display_name(&self) -> String {
        self.sql_name()
            .unwrap_or_else(|| format!("type oid {}", self.oid))
    }

    /// The padding a new setting of this type gets unless told otherwise:
    /// `block16` for variable-length types and arrays, `none` for fixed-width ones.
    pub fn default_padding(&self) -> PaddingPolicy {
        match BuiltIn::find(self.oid) {
            Some(t) if t.fixed_width => PaddingPolicy::None,
            _ => PaddingPolicy::Block16,
        }
    }

    /// The longest value, in characters, a `varchar(n)` or `char(n)` accepts.
    pub fn max_characters(&self) -> Option<usize> {
        match self.modifiers()? {
            Modifiers::Length(length) => Some(length),
            _ => None,
        }
    }
}

/// A type's modifier, decoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Modifiers {
    /// No modifier (`typmod` -1).
    None,
    /// `varchar(n)`, `char(n)`: the length in characters.
    Length(usize),
    /// `numeric(p,s)`.
    Numeric {
        /// Total significant digits.
        precision: i32,
        /// Digits after the decimal point.
        scale: i32,
    },
    /// `timestamp(p)`, `time(p)`, `interval(p)`, …: fractional digits of seconds.
    SecondsPrecision(i32),
}

const BPCHAR_OID: u32 = 1042;
/// The longest `varchar(n)`/`char(n)` PostgreSQL allows (`MaxAttrSize`).
const MAX_LENGTH: i32 = 10 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_to_oids_and_typmods() {
        let cases = [
            ("text", 25, -1),
            ("TEXT", 25, -1),
            ("varchar(20)", 1043, 24),
            ("character varying", 1043, -1),
            ("numeric(10,2)", 1700, (10 << 16 | 2) + 4),
            ("numeric(5)", 1700, (5 << 16) + 4),
            ("int8", 20, -1),
            ("timestamptz", 1184, -1),
            ("double precision", 701, -1),
            ("uuid", 2950, -1),
            ("char", 1042, 5),
            ("character(3)", 1042, 7),
            ("bpchar", 1042, -1),
            ("time(3)", 1083, 3),
            ("timetz", 1266, -1),
            ("timestamp(0) with time zone", 1184, 0),
            ("interval(2)", 1186, 0x7FFF << 16 | 2),
            ("inet", 869, -1),
            ("macaddr", 829, -1),
            ("money", 790, -1),
            ("int4[]", 1007, -1),
            ("varchar(5)[]", 1015, 9),
        ];
        for (name, oid, typmod) in cases {
            assert_eq!(
                PlaintextType::parse(name).unwrap(),
                PlaintextType { oid, typmod },
                "{name}"
            );
        }
    }

    #[test]
    fn unsupported_types_are_refused() {
        for name in [
            "point",
            "text(3)",
            "varchar(0)",
            "varchar(x)",
            "numeric(3,4)",
            "int8[][]",
            "varchar(3",
            "timestamp(7)",
            "int4(2)",
            "interval(-1)",
            "point[]",
        ] {
            assert!(PlaintextType::parse(name).is_err(), "{name}");
        }
    }

    #[test]
    fn names_round_trip_and_padding_follows_width() {
        for name in [
            "text",
            "character varying(20)",
            "numeric(10,2)",
            "bigint",
            "uuid",
            "jsonb",
            "character(4)",
            "bpchar",
            "time(2) without time zone",
            "timestamp(3) with time zone",
            "time with time zone",
            "interval(4)",
            "interval",
            "cidr",
            "integer[]",
            "numeric(5,1)[]",
        ] {
            let parsed = PlaintextType::parse(name).unwrap();
            assert_eq!(parsed.sql_name().as_deref(), Some(name));
        }
        assert_eq!(
            PlaintextType::parse("int8").unwrap().default_padding(),
            PaddingPolicy::None
        );
        assert_eq!(
            PlaintextType::parse("text").unwrap().default_padding(),
            PaddingPolicy::Block16
        );
        assert_eq!(
            PlaintextType::parse("varchar(3)").unwrap().max_characters(),
            Some(3)
        );
        assert_eq!(
            PlaintextType::parse("text[]").unwrap().element(),
            Some(PlaintextType::parse("text").unwrap())
        );
        assert_eq!(PlaintextType::parse("text[]").unwrap().array_oid(), None);
        assert_eq!(
            PlaintextType::parse("int4[]").unwrap().default_padding(),
            PaddingPolicy::Block16
        );
    }
}
