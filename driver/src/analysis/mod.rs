//! SQL analysis: which parameter of a statement goes to which encrypted
//! column, and whether the statement does anything to an encrypted column
//! that the column's mode does not allow (docs/DESIGN.md, "The client
//! pipeline", steps 1 to 3).
//!
//! Pure: the analyzer reads statement text and a [`SchemaView`] of the
//! tables; it does no I/O. It fails closed: a statement it does not
//! understand that touches a table with encrypted columns is refused.
//!
//! # Supported
//!
//! Names: tables and views through [`SchemaView::resolve_table`] (the search
//! path is the view's business), `schema.table`, quoted and unquoted
//! identifiers (unquoted fold to lower case, all truncate to 63 bytes),
//! aliases (`FROM patients p`, `AS s(a, b)`), unqualified columns against
//! every relation in scope, correlated subqueries (outer levels visible),
//! CTE names shadowing tables. An unqualified table name that could mean a
//! table with encrypted columns in another schema
//! ([`SchemaView::encrypted_tables_named`], which answers from signed
//! records, also for tables the server lacks) must resolve to exactly it.
//!
//! Statements, several per text (parameters must agree across them):
//! - `SELECT` with joins (`JOIN … ON`, `USING`, `NATURAL`, comma, `LEFT`/
//!   `RIGHT`/`FULL`/`CROSS`; `*` merges `USING`/`NATURAL` columns as the
//!   server does), subqueries in `FROM`, `IN (SELECT …)`,
//!   `= ANY (SELECT …)`, `EXISTS`, scalar subqueries, `unnest(…) [WITH
//!   ORDINALITY]` in `FROM`, `WITH` (data-modifying
//!   CTEs included), `UNION`/`INTERSECT`/`EXCEPT`, `VALUES`, `GROUP BY`
//!   (also `ROLLUP`/`CUBE`/`GROUPING SETS`), `HAVING`, `DISTINCT [ON]`,
//!   `ORDER BY`, `LIMIT`/`OFFSET`/`FETCH`, `FOR UPDATE`, `WINDOW`;
//!   `TABLE name`.
//! - `INSERT` with or without a column list (then in table order), multi-row
//!   `VALUES`, `DEFAULT`, `INSERT … SELECT` (result columns stored
//!   positionally), `ON CONFLICT (…) [WHERE …] DO NOTHING | DO UPDATE SET …
//!   [WHERE …]` with `EXCLUDED`, `RETURNING`.
//! - `UPDATE … SET col = …, (a, b) = (…) FROM … WHERE … RETURNING`.
//! - `DELETE FROM … USING … WHERE … RETURNING`.
//! - `EXPLAIN [(options)]` of any of these (its result is plan text);
//!   `TRUNCATE` and `DROP TABLE/VIEW` (they only name tables); transaction
//!   control, `SET`, `RESET`, `SHOW`, `DISCARD`.
//!
//! Whether a text may change the session (`SET`, `RESET`, `DISCARD`,
//! `COMMIT`/`ROLLBACK`, `set_config`, statement kinds the walk does not
//! know) comes from the parse: [`StatementAnalysis::changes_session`].
//!
//! Each `$n` becomes [`ParameterTarget::Encrypted`] where it is stored into
//! an encrypted column (`VALUES`, `SET`, the select list of `INSERT …
//! SELECT`: [`ParameterUse::Store`]), compared with one by `=`, `<>`,
//! `IN (…)`, `IS [NOT] DISTINCT FROM`, simple `CASE x WHEN`
//! ([`ParameterUse::Compare`]), or is the array of `= ANY($n)` /
//! `<> ALL($n)` ([`ParameterUse::CompareAny`]). A bare `$n` in `unnest($n,
//! …)` in `FROM` is an array whose elements fill a column, one per row:
//! stored into an encrypted column it is an array of cells
//! ([`ParameterUse::StoreEach`]), compared with one
//! ([`ParameterUse::CompareAny`]) too. (`= ANY(ARRAY[$1, $2])` is
//! analyzed too, but the server types such an array `text[]` and refuses to
//! compare it with a ciphertext column: write `IN ($1, $2)`.) `$n IS [NOT] NULL` binds it
//! neither way (NULL stays NULL), so `ssn = $1 OR $1 IS NULL` works.
//! Everywhere else it is plaintext — also in the select list of a subquery
//! or CTE, so `ssn = (SELECT $1)` is refused rather than guessed.
//!
//! # Allowed on encrypted columns
//!
//! Deterministic ([`DETERMINISTIC_ALLOWED`]): storing a parameter, `NULL`,
//! `DEFAULT` or a column of the same setting; reading (select list,
//! `RETURNING`, `*`); equality with a parameter, `NULL` or a column of the
//! same setting (joins, `IN (SELECT …)`, `= (SELECT same-setting column)`);
//! `GROUP BY`, `DISTINCT`, `PARTITION BY`, `COUNT(col)`, `COUNT(DISTINCT
//! col)`, `IS [NOT] NULL`, deduplicating set operations over same-setting
//! columns. Randomized ([`RANDOMIZED_ALLOWED`]): storing, reading, `IS [NOT]
//! NULL`, `COUNT(col)`, `UNION ALL`. A ciphertext column this client cannot
//! use (no verified assignment, or records missing or forged): reading
//! (which fails to decrypt), `IS [NOT] NULL`, `COUNT(col)`.
//!
//! # Refused
//!
//! - [`Refusal::NotAllowed`] / [`Refusal::UnusableColumn`]: a literal
//!   stored into or compared with an encrypted column; any function,
//!   operator other than equality, `LIKE`, `BETWEEN`, cast, `CASE` result,
//!   aggregate other than `COUNT` applied to one; `ORDER BY` one (also by
//!   position or result name); comparing or storing anything but a
//!   parameter, `NULL`, `DEFAULT` or a same-setting column (`ssn = $1 ||
//!   'x'`, `ssn = (SELECT lower(…))`, a plaintext column); equality,
//!   grouping or `DISTINCT` on a randomized column; copying ciphertext into a
//!   plaintext column; a parameter stored into or compared with a ciphertext
//!   column this client cannot use (the message says why).
//! - [`Refusal::SettingMismatch`]: comparing, joining, copying or combining
//!   (`UNION`) columns of different settings.
//! - [`Refusal::ParameterConflict`]: one `$n` needed under two settings, as
//!   scalar and array, or encrypted in one place and plaintext in another.
//! - [`Refusal::UnsupportedShape`]: anything not listed above in a statement
//!   that touches a table with encrypted columns — other statement kinds
//!   (`COPY`, `MERGE`, `CREATE TABLE AS`, `CREATE INDEX`, `SELECT INTO`,
//!   `PREPARE`, `CREATE FUNCTION`, …), functions in `FROM`, `LATERAL`,
//!   `WITH RECURSIVE`, whole-row references (`SELECT p FROM patients p`),
//!   window functions over encrypted columns, syntax of other dialects,
//!   expressions nested too deeply to walk (about 100 levels; `AND`/`OR`
//!   and operator chains like `a + b + …` do not count).
//! - [`Refusal::Unresolved`]: a table or column that does not resolve, or is
//!   ambiguous, in a statement that touches a table with encrypted columns.
//! - [`Refusal::Unparsable`]: text the parser rejects, or with a run of more
//!   than 8000 tokens between `,`/`(`/`)`/`;` (too deep to parse safely),
//!   that names a table with encrypted columns — as PostgreSQL's own parser
//!   reads it (feature `pg-parser`), else by any word of it.
//! - [`Refusal::Opaque`]: `DO` blocks and SQL-level `EXECUTE`, which run SQL
//!   no analysis sees, in a database with any encrypted column.
//! - [`Refusal::DamagedTable`]: a table signed records make encrypted that
//!   the server lacks, or that lacks a signed column.
//! - [`Refusal::SecondOpinion`]: PostgreSQL's own parser reads an encrypted
//!   table the walk did not resolve, or cannot read a text that touches one.
//!
//! "Touches" means: resolves, in the parts the analyzer walks, a table or
//! view with encrypted or ciphertext columns; for statements or parts it
//! does not walk, any word of their text (inside string literals too, which
//! may be SQL run later) naming one. A statement that touches none is never
//! refused for its shape or names (the server judges it), and all its
//! parameters are plaintext.

mod analyzer;
mod delete;
mod expression;
mod from_clause;
mod functions;
mod insert;
mod lexical;
mod names;
mod operand;
mod parameters;
mod query;
mod rules;
mod schema;
mod scope;
#[cfg(feature = "pg-parser")]
mod second_opinion;
mod select;
mod statements;
mod subquery;
mod unnest;
mod update;

#[cfg(any(test, fuzzing))]
pub(crate) mod test_schema;
#[cfg(test)]
mod tests;

pub use schema::{ColumnEncryption, ColumnInfo, ColumnProtection, SchemaView, TableInfo};

use std::fmt;
use std::sync::Arc;

use sqlparser::dialect::PostgreSqlDialect;
use sqlparser::keywords::Keyword;
use sqlparser::parser::{Parser, ParserError};
use sqlparser::tokenizer::Token;

use self::analyzer::Analyzer;
use self::lexical::Lexicon;
use self::parameters::ParameterBindings;
use crate::cell::EncryptionMode;
use crate::names::{ColumnName, TableName};

/// How a parameter meets its encrypted column.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParameterUse {
    /// Stored into the column (`INSERT` value, `UPDATE … SET`).
    Store,
    /// Compared for equality with the column (`=`, `<>`, `IN`, `IS DISTINCT FROM`).
    Compare,
    /// An array whose elements are compared with the column (`= ANY($n)`).
    CompareAny,
    /// Both stored into the column and compared with it (or with another
    /// column of its setting), in one statement: stored as the column's
    /// typmod makes it, and refused when that changes it, since the
    /// comparison must see the value as given.
    StoreAndCompare,
    /// An array whose elements are stored into the column, one per row
    /// (`INSERT … SELECT … FROM unnest($n, …)`, `UPDATE … FROM unnest(…)`).
    StoreEach,
    /// An array whose elements are both stored into the column and
    /// compared with it, as [`StoreAndCompare`](Self::StoreAndCompare) is
    /// for one value.
    StoreEachAndCompare,
}

impl ParameterUse {
    /// Whether the parameter is an array of cells rather than one cell.
    pub fn is_array(self) -> bool {
        matches!(
            self,
            Self::CompareAny | Self::StoreEach | Self::StoreEachAndCompare
        )
    }

    /// The use of a parameter that appears both as `self` and as `other`,
    /// two uses of the same shape.
    pub(crate) fn merged_with(self, other: Self) -> Self {
        match (self.is_array(), self == other) {
            (_, true) => self,
            (false, false) => Self::StoreAndCompare,
            (true, false) => Self::StoreEachAndCompare,
        }
    }
}

impl fmt::Display for ParameterUse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Store => "stored into",
            Self::Compare => "compared with",
            Self::CompareAny => "an array compared with",
            Self::StoreAndCompare => "stored into and compared with",
            Self::StoreEach => "an array stored into",
            Self::StoreEachAndCompare => "an array stored into and compared with",
        })
    }
}

/// Where one `$n` goes.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ParameterTarget {
    /// Not bound for an encrypted column: sent as the application gave it.
    Plaintext,
    /// Bound for an encrypted column: encrypted under its setting.
    Encrypted {
        /// The column.
        column: ColumnName,
        /// Its setting.
        encryption: ColumnEncryption,
        /// How the parameter meets the column.
        usage: ParameterUse,
    },
}

/// The result of analyzing one statement text.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct StatementAnalysis {
    /// Target of `$1`, `$2`, … in order; as long as the highest parameter
    /// number used in the text.
    pub parameters: Vec<ParameterTarget>,
    /// Whether the statement reads or writes any table that has encrypted
    /// columns.
    pub touches_encrypted_table: bool,
    /// What each result column of the (last) statement is, as far as
    /// encryption goes. Empty when the analysis cannot tell (a statement
    /// that touches no encrypted table and was not walked, say).
    pub result_columns: Vec<ResultColumn>,
    /// Whether running the text may change what later statements resolve
    /// to: `SET`, `RESET`, `DISCARD`, a `set_config` call, or the end of a
    /// transaction (which reverts `SET LOCAL`).
    pub changes_session: bool,
    /// The tables with encrypted columns the text touches.
    pub encrypted_tables: Vec<TableName>,
    /// Whether a transaction block is open after the text, when it opens
    /// one (`BEGIN`, `COMMIT AND CHAIN`) or closes one (`COMMIT`,
    /// `ROLLBACK`); `None` when it does neither.
    pub transaction_block: Option<bool>,
    /// The parameters `unnest(…)` spreads over one column each, whose
    /// server types must be checked before anything is sent.
    pub unnested: Vec<UnnestedParameter>,
}

/// A parameter that is an argument of `unnest(…)` in `FROM`, bare or cast.
/// The analysis counts one column for it, which holds only if its type is
/// an array of a type that is not composite (`unnest` spreads an array of
/// a composite type over one column per field): the client checks the
/// server's typing of it before anything is sent.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct UnnestedParameter {
    /// The parameter's number.
    pub number: usize,
    /// For `$n::T[]`, the built-in type `T` names (`int4` for `int[]`),
    /// which the server must type the elements as, in `pg_catalog`; `None`
    /// for a bare `$n`, whose elements may be of any type that is not
    /// composite.
    pub element: Option<&'static str>,
}

/// One result column as the analysis sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResultColumn {
    /// The table or view column it is, when it is one bare column reference
    /// (also through subqueries and CTEs); the server's reported origin must
    /// then be this column.
    pub origin: Option<ColumnName>,
    /// What fills it.
    pub source: ResultColumnSource,
}

/// What fills one result column.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ResultColumnSource {
    /// Plaintext values (or NULL).
    Plaintext,
    /// Cells of one column encryption setting (every branch of a `UNION`
    /// agrees).
    Encrypted(ColumnEncryption),
    /// Cells this client cannot read (a ciphertext column without a usable
    /// setting, branches of different kinds): reading them fails.
    Unusable,
}

/// Why a statement is refused. The message names the table, the column,
/// its mode, what was attempted and what is allowed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The text is not SQL the analyzer can parse, and it names a table with
    /// encrypted columns (or cannot be checked for that).
    #[error(
        "cannot analyze statement ({reason}); refusing it because it may touch encrypted columns"
    )]
    Unparsable {
        /// The parser's complaint (no statement text is quoted).
        reason: String,
    },
    /// A statement shape the analyzer does not understand touches a table
    /// with encrypted columns.
    #[error("unsupported statement shape ({shape}) on table {table}, which has encrypted columns")]
    UnsupportedShape {
        /// What was not understood.
        shape: String,
        /// The table with encrypted columns.
        table: TableName,
    },
    /// A statement that runs SQL the analysis cannot see (`DO`, SQL-level
    /// `EXECUTE`), in a database with encrypted columns.
    #[error("{kind} runs SQL that cannot be analyzed, and this database has encrypted columns: refusing it (send the statements themselves, with parameters)")]
    Opaque {
        /// The statement kind (`DO`, `EXECUTE`).
        kind: String,
    },
    /// Something that is not allowed on an encrypted column.
    #[error(
        "{attempted} on encrypted column {column} ({mode}) is not allowed; allowed: {allowed}"
    )]
    NotAllowed {
        /// The column.
        column: ColumnName,
        /// Its mode.
        mode: EncryptionMode,
        /// What the statement tried (`a literal compared with it`, `ORDER BY`, `LIKE`, …).
        attempted: String,
        /// What the mode allows.
        allowed: &'static str,
    },
    /// Two encrypted columns of different settings compared, joined, copied
    /// into one another or combined by a set operation.
    #[error("{attempted} between encrypted columns {} ({}) and {} ({}) is not allowed: only columns that share one encryption setting can be compared, copied or combined", left.0, left.1, right.0, right.1)]
    SettingMismatch {
        /// What was attempted (`comparison by =`, `copying a column into it`).
        attempted: String,
        /// One column and its setting. Boxed, as `right`, so that a
        /// `Refusal` (and every `Result` carrying the crate's `Error`) stays small.
        left: Box<(ColumnName, ColumnEncryption)>,
        /// The other.
        right: Box<(ColumnName, ColumnEncryption)>,
    },
    /// A name could not be resolved in a statement that touches encrypted tables.
    #[error("cannot resolve {what} in a statement on table {table}, which has encrypted columns")]
    Unresolved {
        /// The name.
        what: String,
        /// The table with encrypted columns.
        table: TableName,
    },
    /// Something other than reading, `IS [NOT] NULL` or `COUNT` on a
    /// ciphertext column this client cannot use: no parameter can be
    /// encrypted for it.
    #[error("{attempted} on ciphertext column {column} is not allowed: {reason}; allowed: {UNUSABLE_CIPHERTEXT_ALLOWED}")]
    UnusableColumn {
        /// The column.
        column: ColumnName,
        /// Why it cannot be used.
        reason: Arc<str>,
        /// What the statement tried.
        attempted: String,
    },
    /// A table that signed records make encrypted, but whose server-side
    /// table does not match them (missing, or lacking a signed column).
    #[error("table {table} has encrypted columns but cannot be used safely: {reason}")]
    DamagedTable {
        /// The table.
        table: TableName,
        /// What is wrong.
        reason: Arc<str>,
    },
    /// One parameter is used where it would have to be encrypted under two
    /// settings, as a scalar and as an array, or encrypted in one place and
    /// sent as plaintext in another.
    #[error("parameter ${parameter} is used both as {first} and as {second}; give each use its own parameter")]
    ParameterConflict {
        /// The parameter number (1-based).
        parameter: usize,
        /// Its first use.
        first: String,
        /// The use that disagrees.
        second: String,
    },
    /// PostgreSQL's own parser, asked for a second opinion, disagrees with
    /// the analysis about a statement on encrypted tables.
    #[error("the analysis and PostgreSQL's parser disagree about this statement ({disagreement}); refusing it")]
    SecondOpinion {
        /// What they disagree about (names, never values).
        disagreement: String,
    },
}

/// A refusal on the analyzer's internal paths, boxed so that the results
/// passed up the walk stay small: the walk recurses once per nesting level.
type BoxedRefusal = Box<Refusal>;

/// What a deterministic column allows, for messages.
pub const DETERMINISTIC_ALLOWED: &str =
    "storing and reading parameters, =, <>, IN, = ANY, IS [NOT] DISTINCT FROM, \
     IS [NOT] NULL, joins to columns of the same setting, GROUP BY, DISTINCT, COUNT";
/// What a randomized column allows, for messages.
pub const RANDOMIZED_ALLOWED: &str = "storing and reading parameters, IS [NOT] NULL, COUNT";
/// What a ciphertext column this client cannot use allows, for messages.
pub const UNUSABLE_CIPHERTEXT_ALLOWED: &str = "reading, IS [NOT] NULL, COUNT";

/// Analyzes one statement text (which may hold several statements, as
/// `batch_execute` sends) against `schema`.
///
/// Never panics, whatever the text: text it cannot parse is refused if it
/// names a table with encrypted columns, and passed with plaintext
/// parameters otherwise.
///
/// # Errors
/// A [`Refusal`] naming the column and what is allowed.
pub fn analyze(sql: &str, schema: &dyn SchemaView) -> Result<StatementAnalysis, Refusal> {
    analyze_text(sql, schema).map_err(|refusal| *refusal)
}

fn analyze_text(sql: &str, schema: &dyn SchemaView) -> Result<StatementAnalysis, BoxedRefusal> {
    let tokens = match lexical::tokenize(sql) {
        Ok(tokens) => tokens,
        Err(error) => {
            let reason = format!(
                "cannot read the text at line {}, column {}",
                error.location.line, error.location.column
            );
            return unparsed(sql, Lexicon::of_raw_text(sql), schema, reason);
        }
    };
    let lexicon = Lexicon::of_tokens(&tokens);
    if lexicon.longest_run > lexical::MAX_TOKEN_RUN {
        return unparsed(
            sql,
            lexicon,
            schema,
            "an expression too long to analyze".to_owned(),
        );
    }
    let dialect = PostgreSqlDialect {};
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let statements = match parse_statements(&mut parser) {
        Ok(statements) => statements,
        Err(error) => return unparsed(sql, lexicon, schema, parse_failure(&error)),
    };
    let mut bindings = ParameterBindings::default();
    let mut touches_encrypted_table = false;
    let mut changes_session = false;
    let mut result_columns = Vec::new();
    let mut encrypted_tables: Vec<TableName> = Vec::new();
    let mut transaction_block = None;
    for statement in &statements {
        transaction_block = transaction_block_after(statement).or(transaction_block);
        let mut analyzer = Analyzer::new(schema);
        if let Err(refusal) = analyzer.statement(statement) {
            return Err(analyzer.explain_refusal(refusal));
        }
        // Parts the walk did not enter are judged by the names they contain.
        let outcome =
            analyzer.finish(|| lexical::scan(&statement.to_string()).encrypted_table(schema))?;
        bindings.merge(outcome.bindings)?;
        touches_encrypted_table |= outcome.touches_encrypted_table;
        changes_session |= outcome.changes_session;
        result_columns = outcome.result_columns;
        for table in outcome.encrypted_tables {
            if !encrypted_tables.contains(&table) {
                encrypted_tables.push(table);
            }
        }
    }
    #[cfg(feature = "pg-parser")]
    if schema.has_encrypted_columns() {
        ask_postgres(sql, schema, &encrypted_tables, touches_encrypted_table)?;
    }
    let count = lexicon.highest_parameter.max(bindings.highest());
    let unnested = bindings.unnested();
    Ok(StatementAnalysis {
        unnested,
        parameters: bindings.into_targets(count),
        touches_encrypted_table,
        result_columns,
        changes_session,
        encrypted_tables,
        transaction_block,
    })
}

/// Whether a transaction block is open after `statement`, when it opens
/// one (`BEGIN`, `COMMIT AND CHAIN`, `ROLLBACK AND CHAIN`) or closes one
/// (`COMMIT`, `ROLLBACK` without `TO`).
fn transaction_block_after(statement: &sqlparser::ast::Statement) -> Option<bool> {
    use sqlparser::ast::Statement;
    match statement {
        Statement::StartTransaction { .. } => Some(true),
        Statement::Commit { chain, .. }
        | Statement::Rollback {
            chain,
            savepoint: None,
        } => Some(*chain),
        _ => None,
    }
}

/// PostgreSQL's own parser must read the same encrypted tables in `sql` as
/// the walk resolved (`resolved`), and be able to read a text that touches
/// any.
#[cfg(feature = "pg-parser")]
fn ask_postgres(
    sql: &str,
    schema: &dyn SchemaView,
    resolved: &[TableName],
    touches_encrypted_table: bool,
) -> Result<(), BoxedRefusal> {
    match second_opinion::read(sql) {
        Ok(reading) => {
            if let Some(kind) = reading.opaque_statement() {
                return Err(Box::new(Refusal::Opaque {
                    kind: kind.to_owned(),
                }));
            }
            reading.confirm(schema, resolved).map_err(Box::new)
        }
        Err(unreadable) if touches_encrypted_table => Err(Box::new(Refusal::SecondOpinion {
            disagreement: unreadable.describe().to_owned(),
        })),
        Err(_) => Ok(()),
    }
}

/// What a session-control text does to the state a client keeps of its
/// session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum SessionControl {
    /// Reads a setting (`SHOW`), or starts a transaction or a savepoint.
    Keeps,
    /// Ends a transaction or returns to a savepoint, which reverts the
    /// `SET LOCAL`s made in it.
    EndsTransaction,
    /// Changes settings (`SET`, `RESET`, `DISCARD`), perhaps the search path.
    Changes,
}

/// A text of session or transaction control, as [`session_control`] reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ControlText {
    /// What it does to the session's settings.
    pub(crate) effect: SessionControl,
    /// Whether a transaction block is open after it, when it opens one
    /// (`BEGIN`) or closes one (`COMMIT`, `ROLLBACK` without `TO`).
    pub(crate) block_open_after: Option<bool>,
}

/// Whether `sql` holds only statements that set up the session or the
/// transaction — `SET` (also `SET TRANSACTION`), `RESET`, `SHOW`,
/// `BEGIN`/`START TRANSACTION`, `COMMIT`, `ROLLBACK`, savepoints, `DISCARD`
/// — and so names no relation and carries no value bound for a column; if
/// so, what it does to the session. Such text needs no catalog: the client
/// sends it as it is, before anything of its own (`SET TRANSACTION
/// ISOLATION LEVEL` must come before the transaction's first query).
///
/// With the `pg-parser` feature, PostgreSQL's own parser must read the same.
pub(crate) fn session_control(sql: &str) -> Option<ControlText> {
    use sqlparser::ast::Statement;
    let tokens = lexical::tokenize(sql).ok()?;
    // Session control needs no brackets; a bracket may open a subquery or a
    // call (which PostgreSQL's `SET` refuses, but sqlparser's reads).
    if tokens
        .iter()
        .any(|token| matches!(token.token, Token::LParen | Token::LBracket))
    {
        return None;
    }
    let dialect = PostgreSqlDialect {};
    let mut parser = Parser::new(&dialect).with_tokens_with_locations(tokens);
    let statements = parse_statements(&mut parser).ok()?;
    let mut effect = None;
    let mut block_open_after = None;
    for statement in &statements {
        block_open_after = transaction_block_after(statement).or(block_open_after);
        let this = match statement {
            Statement::StartTransaction { .. }
            | Statement::ShowVariable { .. }
            | Statement::Savepoint { .. } => SessionControl::Keeps,
            Statement::Commit { .. }
            | Statement::Rollback { .. }
            | Statement::ReleaseSavepoint { .. } => SessionControl::EndsTransaction,
            Statement::Set(_) | Statement::Reset(_) | Statement::Discard { .. } => {
                SessionControl::Changes
            }
            _ => return None,
        };
        effect = effect.max(Some(this));
    }
    #[cfg(feature = "pg-parser")]
    if !second_opinion::read(sql).is_ok_and(|reading| reading.is_session_control()) {
        return None;
    }
    effect.map(|effect| ControlText {
        effect,
        block_open_after,
    })
}

/// The statements of a text, separated by `;`, as the server reads them.
///
/// sqlparser's own loop stops at a stray `END` (which the server would run
/// as `COMMIT`), and does not take `TABLE name` as a statement; here a text
/// is read to its end, and `TABLE name` is the query it is.
fn parse_statements(
    parser: &mut Parser<'_>,
) -> Result<Vec<sqlparser::ast::Statement>, ParserError> {
    let mut statements = Vec::new();
    let mut expecting_delimiter = false;
    loop {
        while parser.consume_token(&Token::SemiColon) {
            expecting_delimiter = false;
        }
        if parser.peek_token().token == Token::EOF {
            return Ok(statements);
        }
        if expecting_delimiter {
            return parser.expected("end of statement", parser.peek_token());
        }
        let statement = if parser.peek_keyword(Keyword::TABLE) {
            sqlparser::ast::Statement::Query(parser.parse_query()?)
        } else {
            parser.parse_statement()?
        };
        statements.push(statement);
        expecting_delimiter = true;
    }
}

/// Text that could not be parsed: refused if it may name a table with
/// encrypted columns, or runs code the analysis cannot see (`DO`) in a
/// database with encrypted columns; else passed with every parameter
/// plaintext, and assumed to change the session (it may).
fn unparsed(
    sql: &str,
    lexicon: Lexicon,
    schema: &dyn SchemaView,
    reason: String,
) -> Result<StatementAnalysis, BoxedRefusal> {
    if schema.has_encrypted_columns() {
        if let Some(kind) = lexicon.opaque_statement() {
            return Err(Box::new(Refusal::Opaque {
                kind: kind.to_ascii_uppercase(),
            }));
        }
    }
    // What the text names: read by PostgreSQL's own parser when it can (it
    // decodes every identifier the server would), else by a word scan.
    #[cfg(feature = "pg-parser")]
    let named = match second_opinion::read(sql) {
        Ok(reading) => reading.encrypted_table(schema),
        Err(_) => lexicon.encrypted_table(schema),
    };
    #[cfg(not(feature = "pg-parser"))]
    let named = {
        let _ = sql;
        lexicon.encrypted_table(schema)
    };
    if named.is_some() {
        return Err(Box::new(Refusal::Unparsable { reason }));
    }
    Ok(StatementAnalysis {
        parameters: vec![ParameterTarget::Plaintext; lexicon.highest_parameter],
        touches_encrypted_table: false,
        result_columns: Vec::new(),
        changes_session: true,
        encrypted_tables: Vec::new(),
        transaction_block: None,
        unnested: Vec::new(),
    })
}

/// Where the parser gave up, without its message: that quotes the token it
/// found, which may be a value from the text.
fn parse_failure(error: &ParserError) -> String {
    match error {
        ParserError::RecursionLimitExceeded => "the statement is nested too deeply".to_owned(),
        ParserError::TokenizerError(message) | ParserError::ParserError(message) => {
            match message
                .rfind(" at Line: ")
                .and_then(|start| message.get(start..))
            {
                Some(location) if is_location(location) => format!("syntax error{location}"),
                _ => "syntax error".to_owned(),
            }
        }
    }
}

/// Whether `text` is exactly ` at Line: <digits>, Column: <digits>`.
fn is_location(text: &str) -> bool {
    let digits = |part: Option<&str>| {
        part.is_some_and(|part| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit()))
    };
    let Some(rest) = text.strip_prefix(" at Line: ") else {
        return false;
    };
    let mut parts = rest.splitn(2, ", Column: ");
    digits(parts.next()) && digits(parts.next())
}
