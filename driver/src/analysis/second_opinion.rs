//! A second opinion from PostgreSQL's own parser (libpg_query, through the
//! `pg_query` crate): which relations a text names, read with the server's
//! grammar rather than sqlparser's approximation of it.
//!
//! sqlparser will always drift from the server's grammar (Unicode-escaped
//! identifiers such as `U&"pat\0069ents"`, new syntax, dialect quirks). The
//! analysis walks sqlparser's tree; this module checks it:
//!
//! - every relation PostgreSQL's parser finds that is, or may shadow, a
//!   table with encrypted columns must be one the walk resolved, or the
//!   statement is refused ([`Refusal::SecondOpinion`]);
//! - text sqlparser cannot read is judged by the relations PostgreSQL's
//!   parser finds in it, not by a word scan, whenever it can read it.
//!
//! Pure, like the rest of the analysis: no I/O. Without the `pg-parser`
//! feature, the analysis runs on its own.

use super::{Refusal, SchemaView};
use crate::names::TableName;

/// What PostgreSQL's parser reads in a text.
pub(super) struct PgReading {
    /// The relations named, as `(schema, name)` (`schema` empty when
    /// unqualified), CTE names left out.
    relations: Vec<(String, String)>,
    /// Statement kinds (`DoStmt`, `ExecuteStmt`, …).
    statement_kinds: Vec<String>,
}

/// Why PostgreSQL's parser could not read a text. Its own message is not
/// kept: it quotes the token it stopped at, which may be a value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Unreadable {
    /// Nested deeper than libpg_query's stack limit (the server, with a
    /// larger `max_stack_depth`, may read it).
    TooDeep,
    /// Not PostgreSQL's syntax: the server refuses it too.
    Syntax,
}

impl Unreadable {
    /// Why, for a refusal.
    pub(super) fn describe(self) -> &'static str {
        match self {
            Self::TooDeep => "the statement is nested too deeply for PostgreSQL's parser",
            Self::Syntax => "PostgreSQL's parser cannot read the statement",
        }
    }
}

/// Reads `sql` with PostgreSQL's parser.
pub(super) fn read(sql: &str) -> Result<PgReading, Unreadable> {
    let summary = pg_query::summary(sql, 0, -1).map_err(|error| match error {
        pg_query::Error::Parse(message) if message.contains("stack depth limit") => {
            Unreadable::TooDeep
        }
        _ => Unreadable::Syntax,
    })?;
    let relations = summary
        .tables
        .iter()
        .filter(|table| {
            // A CTE name is the statement's own relation (the walk scopes
            // CTEs; an unqualified name equal to one is left to it).
            !(table.schema_name.is_empty() && summary.cte_names.contains(&table.table_name))
        })
        .map(|table| (table.schema_name.clone(), table.table_name.clone()))
        .collect();
    Ok(PgReading {
        relations,
        statement_kinds: summary.statement_types,
    })
}

impl PgReading {
    /// The first table with encrypted columns (or that a signed record
    /// makes encrypted) among the relations read, resolved as the session
    /// would, or shadowed by an unqualified name.
    pub(super) fn encrypted_table(&self, schema: &dyn SchemaView) -> Option<TableName> {
        self.relations
            .iter()
            .find_map(|relation| encrypted_table_named(schema, relation))
    }

    /// Checks the walk's findings: every relation read that is, or may
    /// stand for, a table with encrypted columns is among `resolved`.
    pub(super) fn confirm(
        &self,
        schema: &dyn SchemaView,
        resolved: &[TableName],
    ) -> Result<(), Refusal> {
        for relation in &self.relations {
            if let Some(table) = encrypted_table_named(schema, relation) {
                if !resolved.contains(&table) {
                    return Err(Refusal::SecondOpinion {
                        disagreement: format!(
                            "PostgreSQL's parser reads table {table}, which has encrypted columns, \
                             where the analysis did not"
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    /// Whether the text only sets up the session or the transaction: it
    /// names no relation, and its statements are all `SET`, `RESET`, `SHOW`,
    /// transaction control or `DISCARD`.
    pub(super) fn is_session_control(&self) -> bool {
        self.relations.is_empty()
            && !self.statement_kinds.is_empty()
            && self.statement_kinds.iter().all(|kind| {
                matches!(
                    kind.as_str(),
                    "VariableSetStmt" | "VariableShowStmt" | "TransactionStmt" | "DiscardStmt"
                )
            })
    }

    /// The kind of the first statement that runs SQL no analysis can see.
    pub(super) fn opaque_statement(&self) -> Option<&'static str> {
        self.statement_kinds
            .iter()
            .find_map(|kind| match kind.as_str() {
                "DoStmt" => Some("DO"),
                "ExecuteStmt" => Some("EXECUTE"),
                _ => None,
            })
    }
}

/// The table with encrypted columns `relation` resolves to, or, for an
/// unqualified name, the first such table of that name elsewhere.
fn encrypted_table_named(
    schema: &dyn SchemaView,
    (schema_name, name): &(String, String),
) -> Option<TableName> {
    let qualifier = (!schema_name.is_empty()).then_some(schema_name.as_str());
    if let Some(table) = schema.resolve_if_known(qualifier, name) {
        if table.has_encrypted_columns() {
            return Some(table.name);
        }
    }
    if qualifier.is_none() {
        return schema.encrypted_tables_named(name).into_iter().next();
    }
    None
}
