//! One statement of a text, by kind: queries and data-modifying statements
//! are walked; statements that cannot touch a table pass; `TRUNCATE` and
//! `DROP` only name tables; statements that run SQL the walk cannot see
//! (`EXECUTE`) are refused in a database with encrypted columns; every other
//! kind is a shape the analyzer does not understand.

use sqlparser::ast::{ObjectType, Statement};

use super::analyzer::Analyzer;
use super::names::object_name_parts;
use super::operand::{Operand, OutputColumn, SourceColumn};
use super::scope::Scope;
use super::{BoxedRefusal, Refusal};

impl Analyzer<'_> {
    /// Walks a top-level statement; its result columns are read out.
    pub(super) fn statement(&mut self, statement: &Statement) -> Result<(), BoxedRefusal> {
        let outputs = match statement {
            Statement::Query(query) => self.query(query, None)?,
            Statement::Insert(insert) => self.insert(insert, None)?,
            Statement::Update(update) => self.update(update, None)?,
            Statement::Delete(delete) => self.delete(delete, None)?,
            // EXPLAIN [ANALYZE] takes the parameters of the statement it
            // explains, and returns plan lines: plaintext.
            Statement::Explain { statement, .. } => {
                if !self.descend() {
                    return Ok(());
                }
                let analyzed = self.statement(statement);
                self.ascend();
                analyzed?;
                vec![OutputColumn::single(
                    "QUERY PLAN".to_owned(),
                    Operand::Column(SourceColumn::Plaintext {
                        label: "QUERY PLAN".to_owned(),
                        origin: None,
                    }),
                )]
            }
            // These end a transaction (reverting `SET LOCAL`) or set session
            // state: what later statements resolve to may change. (`DEALLOCATE`
            // drops the client's prepared statements from the session.)
            Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::Set(_)
            | Statement::Reset(_)
            | Statement::Discard { .. }
            | Statement::Deallocate { .. } => {
                self.changes_session = true;
                Vec::new()
            }
            Statement::StartTransaction { .. }
            | Statement::Savepoint { .. }
            | Statement::ReleaseSavepoint { .. }
            | Statement::ShowVariable { .. } => Vec::new(),
            // A prepared statement's parameters are literals here, bound for
            // columns the walk cannot see.
            Statement::Execute { .. } => {
                if self.schema().has_encrypted_columns() {
                    return Err(Box::new(Refusal::Opaque {
                        kind: "EXECUTE".to_owned(),
                    }));
                }
                self.doubt_unsupported("EXECUTE");
                Vec::new()
            }
            Statement::Truncate(truncate) => {
                if truncate.partitions.is_some() {
                    self.doubt_unsupported("TRUNCATE … PARTITION");
                }
                for target in &truncate.table_names {
                    self.name_table(&target.name);
                }
                Vec::new()
            }
            Statement::Drop {
                object_type: ObjectType::Table | ObjectType::View | ObjectType::MaterializedView,
                names,
                table: None,
                ..
            } => {
                for name in names {
                    self.name_table(name);
                }
                Vec::new()
            }
            other => {
                self.doubt_unsupported(statement_kind(other));
                Vec::new()
            }
        };
        self.result_columns = outputs.iter().map(OutputColumn::result_column).collect();
        self.read_outputs(&outputs)
    }

    /// A data-modifying statement in a CTE (`WITH x AS (INSERT … RETURNING …)`).
    pub(super) fn data_modifying(
        &mut self,
        statement: &Statement,
        scope: &Scope<'_>,
    ) -> Result<Vec<OutputColumn>, BoxedRefusal> {
        match statement {
            Statement::Insert(insert) => self.insert(insert, Some(scope)),
            Statement::Update(update) => self.update(update, Some(scope)),
            Statement::Delete(delete) => self.delete(delete, Some(scope)),
            other => {
                self.doubt_unsupported(statement_kind(other));
                Ok(Vec::new())
            }
        }
    }

    /// A table a statement names without reading or writing values in it.
    fn name_table(&mut self, name: &sqlparser::ast::ObjectName) {
        if let Some(parts) = object_name_parts(name) {
            // A missing table is the server's to report; this only notes
            // whether an encrypted one is touched.
            let _ = self.resolve_table(&parts);
        } else {
            self.doubt_unsupported(format!("table name {name}"));
        }
    }
}

/// A short name for a statement kind, from its leading keywords
/// (`CREATE TABLE`, `COPY`, `MERGE INTO`): never anything after them, so no
/// value from the text can reach a message.
fn statement_kind(statement: &Statement) -> String {
    let text = statement.to_string();
    let keywords: Vec<&str> = text
        .split_whitespace()
        .take_while(|word| {
            !word.is_empty()
                && word
                    .bytes()
                    .all(|byte| byte.is_ascii_uppercase() || byte == b'_')
        })
        .take(3)
        .collect();
    if keywords.is_empty() {
        "this statement kind".to_owned()
    } else {
        keywords.join(" ")
    }
}
