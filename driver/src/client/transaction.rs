//! Transactions, nested through savepoints.

use super::connection_state::ConnectionState;
use super::executor::Executor;
use super::methods::query_methods;
use crate::Error;

/// A transaction on an aepg [`Client`](crate::Client), with the same query
/// methods. Dropping it without [`commit`](Self::commit) rolls it back.
pub struct Transaction<'a> {
    /// `None` once committed or rolled back.
    inner: Option<tokio_postgres::Transaction<'a>>,
    state: &'a ConnectionState,
}

impl<'a> Transaction<'a> {
    pub(crate) fn new(inner: tokio_postgres::Transaction<'a>, state: &'a ConnectionState) -> Self {
        Self {
            inner: Some(inner),
            state,
        }
    }

    fn executor(&self) -> Executor<'_> {
        Executor {
            // Present until commit or rollback, which consume the transaction.
            client: self
                .inner
                .as_ref()
                .map(tokio_postgres::Transaction::client)
                .unwrap_or_else(|| unreachable!("a finished transaction is consumed")),
            state: self.state,
            in_transaction: true,
        }
    }

    query_methods!();

    /// Commits the transaction (or releases the savepoint).
    ///
    /// # Errors
    /// Database errors.
    pub async fn commit(mut self) -> Result<(), Error> {
        let result = match self.inner.take() {
            Some(inner) => inner.commit().await,
            None => Ok(()),
        };
        // The end of a transaction reverts its `SET LOCAL`s.
        self.state.transaction_ended();
        Ok(result?)
    }

    /// Rolls the transaction back (or to the savepoint).
    ///
    /// # Errors
    /// Database errors.
    pub async fn rollback(mut self) -> Result<(), Error> {
        let result = match self.inner.take() {
            Some(inner) => inner.rollback().await,
            None => Ok(()),
        };
        self.state.transaction_ended();
        Ok(result?)
    }

    /// Starts a nested transaction, through a savepoint.
    ///
    /// # Errors
    /// Database errors.
    pub async fn transaction(&mut self) -> Result<Transaction<'_>, Error> {
        let inner = match self.inner.as_mut() {
            Some(inner) => inner.transaction().await?,
            None => unreachable!("a finished transaction is consumed"),
        };
        Ok(Transaction::new(inner, self.state))
    }
}

/// Starts a transaction with options, like tokio-postgres's
/// `TransactionBuilder`: from [`Client::build_transaction`](crate::Client::build_transaction).
#[must_use = "a builder does nothing until started"]
pub struct TransactionBuilder<'a> {
    inner: tokio_postgres::TransactionBuilder<'a>,
    state: &'a ConnectionState,
}

impl<'a> TransactionBuilder<'a> {
    pub(crate) fn new(
        inner: tokio_postgres::TransactionBuilder<'a>,
        state: &'a ConnectionState,
    ) -> Self {
        Self { inner, state }
    }

    /// The isolation level (`REPEATABLE READ`, `SERIALIZABLE`, …).
    pub fn isolation_level(self, level: tokio_postgres::IsolationLevel) -> Self {
        Self {
            inner: self.inner.isolation_level(level),
            ..self
        }
    }

    /// Whether the transaction is read-only.
    pub fn read_only(self, read_only: bool) -> Self {
        Self {
            inner: self.inner.read_only(read_only),
            ..self
        }
    }

    /// Whether a serializable read-only transaction is deferrable.
    pub fn deferrable(self, deferrable: bool) -> Self {
        Self {
            inner: self.inner.deferrable(deferrable),
            ..self
        }
    }

    /// Starts the transaction.
    ///
    /// # Errors
    /// Database errors.
    pub async fn start(self) -> Result<Transaction<'a>, Error> {
        let inner = self.inner.start().await?;
        self.state.transaction_started();
        Ok(Transaction::new(inner, self.state))
    }
}

impl std::fmt::Debug for TransactionBuilder<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TransactionBuilder").finish_non_exhaustive()
    }
}

impl Drop for Transaction<'_> {
    /// A transaction dropped unfinished is rolled back (by tokio-postgres),
    /// which reverts its `SET LOCAL`s: its session state ends as on rollback.
    fn drop(&mut self) {
        if self.inner.is_some() {
            self.state.transaction_ended();
        }
    }
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction").finish_non_exhaustive()
    }
}
