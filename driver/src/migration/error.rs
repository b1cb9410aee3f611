//! Why a column cannot be migrated, or why its migration stopped.

use crate::names::ColumnName;

/// A column that cannot be encrypted or decrypted in place, or a
/// migration that stopped. Every message names the column and says what to
/// do; none carries a value of the column.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MigrationError {
    /// The column is not one that can be migrated as asked.
    #[error("column {column} cannot be {action} in place: {reason}")]
    NotMigratable {
        /// The column.
        column: Box<ColumnName>,
        /// `"encrypted"`, `"decrypted"` or `"re-encrypted under a new column key"`.
        action: &'static str,
        /// Why, and what to do.
        reason: String,
    },
    /// Objects on the server depend on the column's type or values.
    #[error(
        "column {column} cannot be {action} in place: {objects} depend on it; drop them, \
         migrate the column, and create them again (docs/OPERATIONS.md)"
    )]
    Dependents {
        /// The column.
        column: Box<ColumnName>,
        /// `"encrypted"`, `"decrypted"` or `"re-encrypted under a new column key"`.
        action: &'static str,
        /// The dependent objects, as the server describes them.
        objects: String,
    },
    /// Another migration of the column is under way.
    #[error(
        "column {column} is already being {found}; re-run that command to finish it \
         (or `aepg column status`)"
    )]
    Conflict {
        /// The column.
        column: Box<ColumnName>,
        /// The migration found: `"encrypted under setting 3"`, `"decrypted"`.
        found: String,
    },
    /// The migration's work state on the server is not one this library
    /// wrote.
    #[error("the migration state of column {column} is damaged: {reason}")]
    Damaged {
        /// The column.
        column: Box<ColumnName>,
        /// What is wrong.
        reason: String,
    },
    /// A row's cell of the column could not be decrypted: nothing was
    /// written.
    #[error(
        "column {column}: the cell of row {row} cannot be decrypted ({reason}); nothing was \
         changed. Repair or delete that row, then re-run the command"
    )]
    Cell {
        /// The column.
        column: Box<ColumnName>,
        /// The row's `ctid` when it was read.
        row: String,
        /// Why.
        reason: String,
    },
    /// The table stayed locked by other sessions through every attempt of
    /// the final swap; the column is usable again as before.
    #[error(
        "column {column}: the final swap could not lock table {table} in {attempts} attempts \
         (other sessions held it); nothing was swapped and the column is in use as before. \
         Re-run the command when the table is quieter, or raise --lock-timeout"
    )]
    LockTimeout {
        /// The column.
        column: Box<ColumnName>,
        /// Its table.
        table: String,
        /// How many times the swap tried.
        attempts: u32,
    },
}
