//! `unnest($1, $2, …)` in `FROM`: arrays bound as parameters, read back one
//! row per element. It is how Rust applications load many rows in one
//! statement without COPY:
//!
//! ```sql
//! INSERT INTO patients (id, ssn, note)
//! SELECT * FROM unnest($1::int[], $2, $3) AS u(id, ssn, note)
//! ```
//!
//! Each bare `$n` argument becomes a column of
//! [`SourceColumn::ParameterElements`]; what the statement then does with
//! that column decides what `$n` is, as for a bare `$n` anywhere: stored
//! into an encrypted column, an array of cells for it
//! ([`ParameterUse::StoreEach`](super::ParameterUse::StoreEach)); compared
//! with one (`JOIN … ON ssn = u.ssn`), an array of cells to compare
//! ([`ParameterUse::CompareAny`](super::ParameterUse::CompareAny));
//! anything else, a plaintext array. A parameter cast to an array of a
//! built-in type (`$1::int[]`) is a plaintext column, which an encrypted
//! column refuses.
//!
//! `unnest` spreads an array of a composite type over one column per
//! field, so one column per argument holds only for arrays of other types.
//! The analysis cannot see types; so every argument must be a parameter,
//! bare or cast to a built-in type's array, each recorded
//! ([`UnnestedParameter`](super::UnnestedParameter)) for the client to
//! check the server's typing of it before anything is sent. Any other
//! argument (`ARRAY[…]`, a column, a function) leaves the relation's
//! columns unknown: a doubt, refused where encrypted tables are involved.

use sqlparser::ast::{ArrayElemTypeDef, DataType, Expr, TableAlias};

use super::analyzer::Analyzer;
use super::names::{alias_columns, alias_name, parameter_number};
use super::operand::{Operand, SourceColumn};
use super::scope::{Relation, Scope, ScopeColumn};
use super::BoxedRefusal;

/// The relation name PostgreSQL gives an unaliased `unnest(…)`, and the
/// column name of each array without a column alias (but see below).
const UNNEST: &str = "unnest";

impl Analyzer<'_> {
    /// The relation of `unnest(arrays) [WITH ORDINALITY] [AS alias(…)]`,
    /// whose array expressions see the `FROM` items before it (`level`).
    pub(super) fn unnest(
        &mut self,
        arrays: &[Expr],
        alias: Option<&TableAlias>,
        with_ordinality: bool,
        level: &Scope<'_>,
    ) -> Result<Relation, BoxedRefusal> {
        let relation_name = alias_name(alias).unwrap_or_else(|| UNNEST.to_owned());
        let renamed = alias_columns(alias);
        // One array and no column list: the alias names the column too
        // (`unnest($1) AS ssn`), as for any function returning a scalar.
        let default_name = match arrays {
            [_] => relation_name.as_str(),
            _ => UNNEST,
        };
        let mut columns = Vec::with_capacity(arrays.len() + usize::from(with_ordinality));
        let mut known = true;
        for (position, array) in arrays.iter().enumerate() {
            let name = renamed
                .get(position)
                .cloned()
                .unwrap_or_else(|| default_name.to_owned());
            let label = format!("{relation_name}.{name}");
            let cast = cast_parameter(array);
            let source = match self.expr(array, level)? {
                Operand::Parameter(number) => {
                    self.bindings.unnest(number, None);
                    SourceColumn::ParameterElements { label, number }
                }
                other => {
                    self.use_as_input(&other, "an argument of unnest")?;
                    match cast {
                        Some((number, element)) => self.bindings.unnest(number, Some(element)),
                        None => known = false,
                    }
                    SourceColumn::Plaintext {
                        label,
                        origin: None,
                    }
                }
            };
            columns.push(ScopeColumn {
                name,
                source,
                server_ordered: false,
            });
        }
        if !known {
            self.doubt_unsupported(
                "unnest of something other than a parameter, bare or cast to an array of a \
                 built-in type (how many columns it gives depends on its type)",
            );
            return Ok(Relation::opaque(Some(relation_name)));
        }
        if with_ordinality {
            let name = renamed
                .get(arrays.len())
                .cloned()
                .unwrap_or_else(|| "ordinality".to_owned());
            columns.push(ScopeColumn {
                source: SourceColumn::Plaintext {
                    label: format!("{relation_name}.{name}"),
                    origin: None,
                },
                name,
                server_ordered: false,
            });
        }
        if renamed.len() > columns.len() {
            self.doubt_unresolved(format!(
                "more column aliases than columns of {relation_name}"
            ));
        }
        Ok(Relation::derived(Some(relation_name), columns))
    }
}

/// `$n::T[]` (or `CAST($n AS T[])`, any number of dimensions) where `T` is
/// a built-in type that is not composite: `$n` and `T`'s name in
/// `pg_catalog`.
fn cast_parameter(expr: &Expr) -> Option<(usize, &'static str)> {
    let Expr::Cast {
        expr, data_type, ..
    } = unparenthesized(expr)
    else {
        return None;
    };
    let Expr::Value(value) = unparenthesized(expr) else {
        return None;
    };
    let sqlparser::ast::Value::Placeholder(placeholder) = &value.value else {
        return None;
    };
    let number = parameter_number(placeholder)?;
    let mut element = match data_type {
        DataType::Array(
            ArrayElemTypeDef::SquareBracket(element, _) | ArrayElemTypeDef::Qualified(element, _),
        ) => element.as_ref(),
        _ => return None,
    };
    while let DataType::Array(
        ArrayElemTypeDef::SquareBracket(inner, _) | ArrayElemTypeDef::Qualified(inner, _),
    ) = element
    {
        element = inner.as_ref();
    }
    builtin_type(&element.to_string()).map(|name| (number, name))
}

fn unparenthesized(mut expr: &Expr) -> &Expr {
    while let Expr::Nested(inner) = expr {
        expr = inner;
    }
    expr
}

/// The `pg_catalog` name of a built-in type as SQL spells it (typmods
/// dropped: `varchar(10)` is `varchar`), for the types applications unnest.
fn builtin_type(spelled: &str) -> Option<&'static str> {
    // Typmods dropped wherever they stand (`timestamp(3) with time zone`).
    let mut lower = String::with_capacity(spelled.len());
    let mut depth = 0usize;
    for character in spelled.chars() {
        match character {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => lower.push(character.to_ascii_lowercase()),
            _ => {}
        }
    }
    let words: Vec<&str> = lower.split_whitespace().collect();
    let lower = words.join(" ");
    let bare = lower.strip_prefix("pg_catalog.").unwrap_or(&lower);
    Some(match bare {
        "int" | "integer" | "int4" => "int4",
        "bigint" | "int8" => "int8",
        "smallint" | "int2" => "int2",
        "text" => "text",
        "varchar" | "character varying" => "varchar",
        "char" | "character" | "bpchar" => "bpchar",
        "bool" | "boolean" => "bool",
        "real" | "float4" => "float4",
        "double precision" | "float8" => "float8",
        "numeric" | "decimal" => "numeric",
        "uuid" => "uuid",
        "bytea" => "bytea",
        "date" => "date",
        "timestamp" | "timestamp without time zone" => "timestamp",
        "timestamptz" | "timestamp with time zone" => "timestamptz",
        "json" => "json",
        "jsonb" => "jsonb",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::builtin_type;

    #[test]
    fn spellings_map_to_pg_catalog_names_and_others_to_none() {
        for (spelled, name) in [
            ("INT", "int4"),
            ("integer", "int4"),
            ("PG_CATALOG.INT4", "int4"),
            ("VARCHAR(10)", "varchar"),
            ("CHARACTER VARYING(10)", "varchar"),
            ("NUMERIC(10,2)", "numeric"),
            ("TIMESTAMP(3) WITH TIME ZONE", "timestamptz"),
            ("timestamp  without time zone", "timestamp"),
            ("CHAR(3)", "bpchar"),
            ("DOUBLE PRECISION", "float8"),
        ] {
            assert_eq!(builtin_type(spelled), Some(name), "{spelled}");
        }
        for spelled in [
            "pair",
            "\"char\"",
            "float",
            "public.int4",
            "record",
            "anyarray",
        ] {
            assert_eq!(builtin_type(spelled), None, "{spelled}");
        }
    }
}
