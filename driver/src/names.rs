//! Names of tables and columns, fully qualified: what catalog records sign,
//! what the analysis resolves, what messages show.

use std::fmt;

/// A table (or view), fully qualified, with names as stored in
/// `pg_namespace` and `pg_class` (case preserved).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    /// Schema name.
    pub schema: String,
    /// Table name.
    pub name: String,
}

impl TableName {
    /// `schema.name`.
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// The column `column` of this table.
    pub fn column(&self, column: impl Into<String>) -> ColumnName {
        ColumnName {
            schema: self.schema.clone(),
            table: self.name.clone(),
            column: column.into(),
        }
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

/// A column, fully qualified, with names as stored in the server's catalogs
/// (case preserved).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ColumnName {
    /// Schema name.
    pub schema: String,
    /// Table name.
    pub table: String,
    /// Column name.
    pub column: String,
}

impl ColumnName {
    /// `schema.table.column`.
    pub fn new(
        schema: impl Into<String>,
        table: impl Into<String>,
        column: impl Into<String>,
    ) -> Self {
        Self {
            schema: schema.into(),
            table: table.into(),
            column: column.into(),
        }
    }

    /// The table the column belongs to.
    pub fn table_name(&self) -> TableName {
        TableName::new(self.schema.clone(), self.table.clone())
    }

    /// Whether the column belongs to `table`.
    pub fn is_in(&self, table: &TableName) -> bool {
        self.schema == table.schema && self.table == table.name
    }
}

impl fmt::Display for ColumnName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.schema, self.table, self.column)
    }
}
