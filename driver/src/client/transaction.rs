//! Transactions, nested through savepoints.

use super::methods::query_methods;
use super::session::{ClientState, Session};
use crate::Error;

/// A transaction on an aepg [`Client`](crate::Client), with the same query
/// methods. Dropping it without [`commit`](Self::commit) rolls it back.
pub struct Transaction<'a> {
    inner: tokio_postgres::Transaction<'a>,
    state: &'a ClientState,
}

impl<'a> Transaction<'a> {
    pub(crate) fn new(inner: tokio_postgres::Transaction<'a>, state: &'a ClientState) -> Self {
        Self { inner, state }
    }

    fn session(&self) -> Session<'_> {
        Session {
            client: self.inner.client(),
            state: self.state,
        }
    }

    query_methods!();

    /// Commits the transaction (or releases the savepoint).
    ///
    /// # Errors
    /// Database errors.
    pub async fn commit(self) -> Result<(), Error> {
        let state = self.state;
        let result = self.inner.commit().await;
        // The end of a transaction reverts its `SET LOCAL`s.
        state.transaction_ended();
        Ok(result?)
    }

    /// Rolls the transaction back (or to the savepoint).
    ///
    /// # Errors
    /// Database errors.
    pub async fn rollback(self) -> Result<(), Error> {
        let state = self.state;
        let result = self.inner.rollback().await;
        state.transaction_ended();
        Ok(result?)
    }

    /// Starts a nested transaction, through a savepoint.
    ///
    /// # Errors
    /// Database errors.
    pub async fn transaction(&mut self) -> Result<Transaction<'_>, Error> {
        let inner = self.inner.transaction().await?;
        Ok(Transaction::new(inner, self.state))
    }
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction").finish_non_exhaustive()
    }
}
