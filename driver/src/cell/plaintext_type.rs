//! The PostgreSQL type of a plaintext: what an encrypted column holds, by
//! oid and typmod, and by name.
//!
//! Only built-in types are supported: their oids are the same in every
//! database, so a cell bound to a type oid decrypts after a dump is restored
//! elsewhere.

use super::setting::PaddingPolicy;

/// The PostgreSQL type of the plaintext: its built-in type oid and typmod
/// (`-1` when the type has none, `varchar(20)` has 24).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct PlaintextType {
    /// The type's oid (`pg_type.oid`), the same in every database for built-in types.
    pub oid: u32,
    /// The type modifier (`atttypmod`).
    pub typmod: i32,
}

/// A type aepg cannot encrypt.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("type {name} cannot be encrypted; supported: bool, int2, int4, int8, float4, float8, numeric, text, varchar(n), bytea, uuid, date, timestamp, timestamptz, json, jsonb")]
pub struct UnsupportedType {
    /// The type as given (a name, or `type oid N`).
    pub name: String,
}

/// A supported built-in type: SQL name, oid, whether its binary form has a fixed width.
struct BuiltIn {
    name: &'static str,
    aliases: &'static [&'static str],
    oid: u32,
    array_oid: u32,
    fixed_width: bool,
}

#[rustfmt::skip]
const BUILT_INS: &[BuiltIn] = &[
    BuiltIn { name: "boolean", aliases: &["bool"], oid: 16, array_oid: 1000, fixed_width: true },
    BuiltIn { name: "bytea", aliases: &[], oid: 17, array_oid: 1001, fixed_width: false },
    BuiltIn { name: "bigint", aliases: &["int8"], oid: 20, array_oid: 1016, fixed_width: true },
    BuiltIn { name: "smallint", aliases: &["int2"], oid: 21, array_oid: 1005, fixed_width: true },
    BuiltIn { name: "integer", aliases: &["int4", "int"], oid: 23, array_oid: 1007, fixed_width: true },
    BuiltIn { name: "text", aliases: &[], oid: 25, array_oid: 1009, fixed_width: false },
    BuiltIn { name: "json", aliases: &[], oid: 114, array_oid: 199, fixed_width: false },
    BuiltIn { name: "real", aliases: &["float4"], oid: 700, array_oid: 1021, fixed_width: true },
    BuiltIn { name: "double precision", aliases: &["float8"], oid: 701, array_oid: 1022, fixed_width: true },
    BuiltIn { name: "character varying", aliases: &["varchar"], oid: 1043, array_oid: 1015, fixed_width: false },
    BuiltIn { name: "date", aliases: &[], oid: 1082, array_oid: 1182, fixed_width: true },
    BuiltIn { name: "timestamp without time zone", aliases: &["timestamp"], oid: 1114, array_oid: 1115, fixed_width: true },
    BuiltIn { name: "timestamp with time zone", aliases: &["timestamptz"], oid: 1184, array_oid: 1185, fixed_width: true },
    BuiltIn { name: "numeric", aliases: &["decimal"], oid: 1700, array_oid: 1231, fixed_width: false },
    BuiltIn { name: "uuid", aliases: &[], oid: 2950, array_oid: 2951, fixed_width: true },
    BuiltIn { name: "jsonb", aliases: &[], oid: 3802, array_oid: 3807, fixed_width: false },
];

const VARCHAR_OID: u32 = 1043;
const NUMERIC_OID: u32 = 1700;
/// PostgreSQL stores a varchar/numeric modifier with this offset (`VARHDRSZ`).
const TYPMOD_OFFSET: i32 = 4;

impl PlaintextType {
    /// Parses a type as written in SQL: `text`, `varchar(20)`, `numeric(10,2)`,
    /// `timestamptz`, …
    ///
    /// # Errors
    /// [`UnsupportedType`] for a type aepg cannot encrypt.
    pub fn parse(sql: &str) -> Result<Self, UnsupportedType> {
        let unsupported = || UnsupportedType {
            name: format!("{sql:?}"),
        };
        let normalized = sql.trim().to_ascii_lowercase();
        let (base, modifiers) = match normalized.split_once('(') {
            Some((base, rest)) => {
                let inner = rest.strip_suffix(')').ok_or_else(unsupported)?;
                let numbers = inner
                    .split(',')
                    .map(|part| part.trim().parse::<i32>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| unsupported())?;
                (base.trim().to_owned(), Some(numbers))
            }
            None => (normalized, None),
        };
        let built_in = BUILT_INS
            .iter()
            .find(|t| t.name == base || t.aliases.contains(&base.as_str()))
            .ok_or_else(unsupported)?;
        let typmod = match (built_in.oid, modifiers.as_deref()) {
            (_, None) => -1,
            (VARCHAR_OID, Some(&[length])) if length > 0 => length + TYPMOD_OFFSET,
            (NUMERIC_OID, Some(&[precision])) if (1..=1000).contains(&precision) => {
                (precision << 16) + TYPMOD_OFFSET
            }
            (NUMERIC_OID, Some(&[precision, scale]))
                if (1..=1000).contains(&precision) && (0..=precision).contains(&scale) =>
            {
                ((precision << 16) | scale) + TYPMOD_OFFSET
            }
            _ => return Err(unsupported()),
        };
        Ok(Self {
            oid: built_in.oid,
            typmod,
        })
    }

    /// The type as SQL writes it (`character varying(20)`), or `None` for an
    /// oid aepg does not support.
    pub fn sql_name(&self) -> Option<String> {
        let built_in = BUILT_INS.iter().find(|t| t.oid == self.oid)?;
        Some(match (self.oid, self.typmod) {
            (_, -1) => built_in.name.to_owned(),
            (VARCHAR_OID, typmod) => format!("{}({})", built_in.name, typmod - TYPMOD_OFFSET),
            (NUMERIC_OID, typmod) => {
                let packed = typmod - TYPMOD_OFFSET;
                format!("{}({},{})", built_in.name, packed >> 16, packed & 0xFFFF)
            }
            _ => return None,
        })
    }

    /// The oid of the array type whose elements are of this type.
    pub(crate) fn array_oid(&self) -> Option<u32> {
        BUILT_INS
            .iter()
            .find(|t| t.oid == self.oid)
            .map(|t| t.array_oid)
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
    /// `block16` for variable-length types, `none` for fixed-width ones.
    pub fn default_padding(&self) -> PaddingPolicy {
        match BUILT_INS.iter().find(|t| t.oid == self.oid) {
            Some(t) if t.fixed_width => PaddingPolicy::None,
            _ => PaddingPolicy::Block16,
        }
    }

    /// The longest value, in characters, a `varchar(n)` accepts.
    pub fn max_characters(&self) -> Option<usize> {
        (self.oid == VARCHAR_OID && self.typmod >= TYPMOD_OFFSET)
            .then(|| usize::try_from(self.typmod - TYPMOD_OFFSET).ok())
            .flatten()
    }
}

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
            "int8[]",
            "varchar(3",
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
    }
}
