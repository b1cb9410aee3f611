//! The state of analyzing one statement: parameters bound so far, tables
//! with encrypted columns met, and what could not be established.
//!
//! The walk itself is spread over the modules named for what they walk
//! (`expression`, `query`, `from_clause`, `insert`, …), each adding methods to
//! [`Analyzer`].

use super::names::display_parts;
use super::operand::{Operand, OutputColumn};
use super::parameters::ParameterBindings;
use super::{rules, BoxedRefusal, Refusal, ResultColumn, SchemaView, TableInfo};
use crate::names::TableName;

/// How deep the walk may recurse. The parser bounds nesting by brackets, but
/// not chains like `x::int::text…`, which nest one level per operator (the
/// common chains, `AND`/`OR` and `a + b + …`, are walked iteratively). An
/// unoptimized build spends about 5 KiB of stack per level, so this stays
/// far inside a 2 MiB task stack; deeper statements fail closed.
const MAX_DEPTH: usize = 100;

/// Something the analyzer could not establish. Harmless in a statement that
/// touches no encrypted table (the server will judge the statement); a
/// refusal otherwise.
#[derive(Clone, Debug)]
pub(super) enum Doubt {
    /// A name that does not resolve, or resolves ambiguously.
    Unresolved(String),
    /// A shape the analyzer does not understand.
    Unsupported(String),
}

impl Doubt {
    fn into_refusal(self, table: TableName) -> Refusal {
        match self {
            Self::Unresolved(what) => Refusal::Unresolved { what, table },
            Self::Unsupported(shape) => Refusal::UnsupportedShape { shape, table },
        }
    }
}

/// What one statement contributes to the analysis of its text.
#[derive(Debug)]
pub(super) struct StatementOutcome {
    /// Its parameters.
    pub(super) bindings: ParameterBindings,
    /// Whether it reads or writes a table with encrypted columns.
    pub(super) touches_encrypted_table: bool,
    /// What each of its result columns is.
    pub(super) result_columns: Vec<ResultColumn>,
    /// Whether it may change the session's search path or settings.
    pub(super) changes_session: bool,
    /// The tables with encrypted columns it touches.
    pub(super) encrypted_tables: Vec<TableName>,
}

/// Walks one statement.
pub(super) struct Analyzer<'s> {
    schema: &'s dyn SchemaView,
    /// Parameters bound so far.
    pub(super) bindings: ParameterBindings,
    doubts: Vec<Doubt>,
    /// Tables with encrypted columns the statement names, in order.
    encrypted_tables: Vec<TableName>,
    /// A damaged table the statement resolved: always a refusal.
    damaged: Option<Refusal>,
    depth: usize,
    /// What each result column of the top-level statement is.
    pub(super) result_columns: Vec<ResultColumn>,
    /// Whether the statement may change the session (`SET`, `set_config`, …).
    pub(super) changes_session: bool,
    /// Names of `WITH RECURSIVE` CTEs being declared: a reference to one
    /// inside them is the CTE, never a table to read from the server.
    pub(super) recursive_names: Vec<String>,
}

impl<'s> Analyzer<'s> {
    /// A fresh analyzer for one statement.
    pub(super) fn new(schema: &'s dyn SchemaView) -> Self {
        Self {
            schema,
            bindings: ParameterBindings::default(),
            doubts: Vec::new(),
            encrypted_tables: Vec::new(),
            damaged: None,
            depth: 0,
            result_columns: Vec::new(),
            changes_session: false,
            recursive_names: Vec::new(),
        }
    }

    /// The schema the statement is analyzed against.
    pub(super) fn schema(&self) -> &'s dyn SchemaView {
        self.schema
    }

    /// Records a name that does not resolve.
    pub(super) fn doubt_unresolved(&mut self, what: impl Into<String>) {
        self.doubts.push(Doubt::Unresolved(what.into()));
    }

    /// When the walk refused the statement, a name that did not resolve
    /// explains the refusal better than the rule it tripped (`ssn = nosuch`
    /// is a missing column, not an expression compared with `ssn`).
    pub(super) fn explain_refusal(&self, refusal: BoxedRefusal) -> BoxedRefusal {
        if let Some(damaged) = &self.damaged {
            return Box::new(damaged.clone());
        }
        let unresolved = self.doubts.iter().find_map(|doubt| match doubt {
            Doubt::Unresolved(what) => Some(what.clone()),
            Doubt::Unsupported(_) => None,
        });
        match (unresolved, self.encrypted_tables.first()) {
            (Some(what), Some(table)) => Box::new(Refusal::Unresolved {
                what,
                table: table.clone(),
            }),
            _ => refusal,
        }
    }

    /// Records a shape the analyzer does not understand.
    pub(super) fn doubt_unsupported(&mut self, shape: impl Into<String>) {
        self.doubts.push(Doubt::Unsupported(shape.into()));
    }

    /// Enters one level of the walk; `false` (with a doubt recorded) when the
    /// statement is nested too deeply to walk safely. Pair with [`ascend`](Self::ascend).
    pub(super) fn descend(&mut self) -> bool {
        if self.depth >= MAX_DEPTH {
            self.doubt_unsupported("an expression nested too deeply to analyze");
            return false;
        }
        self.depth += 1;
        true
    }

    /// Leaves a level entered with [`descend`](Self::descend).
    pub(super) fn ascend(&mut self) {
        self.depth = self.depth.saturating_sub(1);
    }

    /// Resolves a dotted table name (`name`, `schema.name`, or
    /// `database.schema.name`) and notes it if it has encrypted columns.
    pub(super) fn resolve_table(&mut self, parts: &[String]) -> Option<TableInfo> {
        let (schema, name) = match parts {
            [name] => (None, name),
            [schema, name] | [_, schema, name] => (Some(schema.as_str()), name),
            _ => {
                self.doubt_unsupported(format!("table name {}", display_parts(parts)));
                return None;
            }
        };
        let resolved = if schema.is_none() && self.recursive_names.contains(name) {
            // A recursive CTE's own name (doubted already): what is known
            // of a table of that name, nothing read for it.
            self.schema.resolve_if_known(schema, name)
        } else {
            self.schema.resolve_table(schema, name)
        };
        if schema.is_none() {
            self.check_not_shadowed(name, resolved.as_ref());
        }
        let table = resolved?;
        if table.has_encrypted_columns() {
            self.note_encrypted_table(&table.name);
        }
        if let Some(reason) = &table.damage {
            self.damaged.get_or_insert_with(|| Refusal::DamagedTable {
                table: table.name.clone(),
                reason: reason.clone(),
            });
        }
        Some(table)
    }

    fn note_encrypted_table(&mut self, table: &TableName) {
        if !self.encrypted_tables.contains(table) {
            self.encrypted_tables.push(table.clone());
        }
    }

    /// An unqualified `name` must resolve to the one table of that name with
    /// encrypted columns, if there is one: anything else is refused.
    fn check_not_shadowed(&mut self, name: &str, resolved: Option<&TableInfo>) {
        let resolved_name = resolved.map(|table| &table.name);
        let others: Vec<TableName> = self
            .schema
            .encrypted_tables_named(name)
            .into_iter()
            .filter(|qualified| Some(qualified) != resolved_name)
            .collect();
        let Some(first) = others.first().cloned() else {
            return;
        };
        let target = resolved_name.map_or_else(|| "no table".to_owned(), ToString::to_string);
        let others: Vec<String> = others.iter().map(ToString::to_string).collect();
        self.doubt_unresolved(format!(
            "table name {name:?}: the search path resolves it to {target}, but {} has encrypted columns \
             (qualify the name)",
            others.join(", ")
        ));
        self.note_encrypted_table(&first);
    }

    /// Reads out a query's result columns (a top-level `SELECT`, `RETURNING`,
    /// `EXISTS`): parameters in them are plaintext.
    pub(super) fn read_outputs(&mut self, outputs: &[OutputColumn]) -> Result<(), BoxedRefusal> {
        outputs
            .iter()
            .flat_map(|output| &output.values)
            .try_for_each(|value| rules::read(&mut self.bindings, value))
    }

    /// [`rules::use_as_input`] on this analyzer's bindings.
    pub(super) fn use_as_input(
        &mut self,
        operand: &Operand,
        attempted: &str,
    ) -> Result<(), BoxedRefusal> {
        rules::use_as_input(&mut self.bindings, operand, attempted)
    }

    /// Ends the statement. Doubts refuse it if it touches an encrypted table
    /// (by what the walk resolved or, for parts it could not walk, by
    /// `mentioned_encrypted_table`); otherwise they are the server's business.
    pub(super) fn finish(
        self,
        mentioned_encrypted_table: impl FnOnce() -> Option<TableName>,
    ) -> Result<StatementOutcome, BoxedRefusal> {
        if let Some(damaged) = self.damaged {
            return Err(Box::new(damaged));
        }
        let touches_encrypted_table = !self.encrypted_tables.is_empty();
        if let Some(doubt) = self.doubts.into_iter().next() {
            let table = self
                .encrypted_tables
                .into_iter()
                .next()
                .or_else(mentioned_encrypted_table);
            return match table {
                Some(table) => Err(Box::new(doubt.into_refusal(table))),
                None => Ok(StatementOutcome {
                    bindings: self.bindings,
                    touches_encrypted_table: false,
                    result_columns: self.result_columns,
                    changes_session: self.changes_session,
                    encrypted_tables: Vec::new(),
                }),
            };
        }
        Ok(StatementOutcome {
            bindings: self.bindings,
            touches_encrypted_table,
            result_columns: self.result_columns,
            changes_session: self.changes_session,
            encrypted_tables: self.encrypted_tables,
        })
    }
}
