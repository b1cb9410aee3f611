//! Naming a result column by position or by name.

use tokio_postgres::Column;

/// A way to name a result column: its position (`usize`) or its name (`&str`).
pub trait ColumnIndex: std::fmt::Display {
    /// The column's position among `columns`, if it exists.
    fn position(&self, columns: &[Column]) -> Option<usize>;
}

impl ColumnIndex for usize {
    fn position(&self, columns: &[Column]) -> Option<usize> {
        (*self < columns.len()).then_some(*self)
    }
}

impl ColumnIndex for str {
    fn position(&self, columns: &[Column]) -> Option<usize> {
        columns.iter().position(|column| column.name() == self)
    }
}

impl ColumnIndex for String {
    fn position(&self, columns: &[Column]) -> Option<usize> {
        self.as_str().position(columns)
    }
}

impl<T: ColumnIndex + ?Sized> ColumnIndex for &T {
    fn position(&self, columns: &[Column]) -> Option<usize> {
        (**self).position(columns)
    }
}
