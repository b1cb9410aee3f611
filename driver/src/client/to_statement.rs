//! What query methods accept as a statement: a text, or a prepared
//! [`Statement`]. Sealed, with a conversion nobody outside can name, as in
//! tokio-postgres.

use super::statement::Statement;

mod private {
    use super::Statement;

    pub trait Sealed {}

    /// A text, or a prepared statement.
    pub enum ToStatementType<'a> {
        Text(&'a str),
        Statement(&'a Statement),
    }

    impl Sealed for str {}
    impl Sealed for String {}
    impl Sealed for Statement {}
}

pub(crate) use private::ToStatementType;

/// A statement text or a prepared [`Statement`]: what query methods accept.
pub trait ToStatement: private::Sealed + Sync {
    #[doc(hidden)]
    fn __convert(&self) -> ToStatementType<'_>;
}

impl ToStatement for str {
    fn __convert(&self) -> ToStatementType<'_> {
        ToStatementType::Text(self)
    }
}

impl ToStatement for String {
    fn __convert(&self) -> ToStatementType<'_> {
        ToStatementType::Text(self)
    }
}

impl ToStatement for Statement {
    fn __convert(&self) -> ToStatementType<'_> {
        ToStatementType::Statement(self)
    }
}
