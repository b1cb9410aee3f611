//! Naming a result column by position or by name.

use tokio_postgres::Column;

mod private {
    pub trait Sealed {}
    impl Sealed for usize {}
    impl Sealed for str {}
    impl Sealed for String {}
    impl<T: Sealed + ?Sized> Sealed for &T {}
}

/// A way to name a result column: its position (`usize`) or its name
/// (`&str`, `String`). Sealed, as tokio-postgres's `RowIndex`.
pub trait ColumnIndex: private::Sealed {
    /// The column's position among `columns`, if it exists.
    #[doc(hidden)]
    fn __position(&self, columns: &[Column]) -> Option<usize>;
}

impl ColumnIndex for usize {
    fn __position(&self, columns: &[Column]) -> Option<usize> {
        (*self < columns.len()).then_some(*self)
    }
}

impl ColumnIndex for str {
    /// The column of exactly this name, else the first whose name matches
    /// ignoring ASCII case (as tokio-postgres does).
    fn __position(&self, columns: &[Column]) -> Option<usize> {
        columns
            .iter()
            .position(|column| column.name() == self)
            .or_else(|| {
                columns
                    .iter()
                    .position(|column| column.name().eq_ignore_ascii_case(self))
            })
    }
}

impl ColumnIndex for String {
    fn __position(&self, columns: &[Column]) -> Option<usize> {
        self.as_str().__position(columns)
    }
}

impl<T: ColumnIndex + ?Sized> ColumnIndex for &T {
    fn __position(&self, columns: &[Column]) -> Option<usize> {
        (**self).__position(columns)
    }
}
