//! [`GenericClient`]: the query methods of a [`Client`], a [`Transaction`]
//! and a pooled client, so code is written once for all of them.

use postgres_types::ToSql;

use super::{Client, Row, Statement, ToStatement, Transaction};
use crate::Error;

/// The query methods shared by [`Client`], [`Transaction`] and the pooled
/// clients of [`aepg::pool`](crate::pool), as tokio-postgres's
/// `GenericClient` is for its own.
///
/// ```no_run
/// async fn ssn_of(client: &impl aepg::GenericClient, id: i32) -> Result<String, aepg::Error> {
///     let row = client.query_one("SELECT ssn FROM patients WHERE id = $1", &[&id]).await?;
///     row.try_get("ssn")
/// }
/// ```
#[async_trait::async_trait]
pub trait GenericClient: Send + Sync {
    /// Prepares `sql` (see [`Client::prepare`]).
    async fn prepare(&self, sql: &str) -> Result<Statement, Error>;

    /// Runs a statement and returns its rows (see [`Client::query`]).
    async fn query<S>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error>
    where
        S: ToStatement + ?Sized + Sync;

    /// Runs a statement that returns exactly one row (see [`Client::query_one`]).
    async fn query_one<S>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, Error>
    where
        S: ToStatement + ?Sized + Sync;

    /// Runs a statement that returns at most one row (see [`Client::query_opt`]).
    async fn query_opt<S>(
        &self,
        statement: &S,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Error>
    where
        S: ToStatement + ?Sized + Sync;

    /// Runs a statement and returns the number of rows it affected (see
    /// [`Client::execute`]).
    async fn execute<S>(&self, statement: &S, params: &[&(dyn ToSql + Sync)]) -> Result<u64, Error>
    where
        S: ToStatement + ?Sized + Sync;

    /// Runs statements without parameters (see [`Client::batch_execute`]).
    async fn batch_execute(&self, sql: &str) -> Result<(), Error>;
}

/// Implements [`GenericClient`] for a type whose `client()` expression gives
/// something with the query methods.
macro_rules! generic_client {
    ([$($generics:tt)*] $type:ty, |$this:ident| $client:expr) => {
        #[async_trait::async_trait]
        impl<$($generics)*> GenericClient for $type {
            async fn prepare(&self, sql: &str) -> Result<Statement, Error> {
                let $this = self;
                ($client).prepare(sql).await
            }

            async fn query<S>(
                &self,
                statement: &S,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<Vec<Row>, Error>
            where
                S: ToStatement + ?Sized + Sync,
            {
                let $this = self;
                ($client).query(statement, params).await
            }

            async fn query_one<S>(
                &self,
                statement: &S,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<Row, Error>
            where
                S: ToStatement + ?Sized + Sync,
            {
                let $this = self;
                ($client).query_one(statement, params).await
            }

            async fn query_opt<S>(
                &self,
                statement: &S,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<Option<Row>, Error>
            where
                S: ToStatement + ?Sized + Sync,
            {
                let $this = self;
                ($client).query_opt(statement, params).await
            }

            async fn execute<S>(
                &self,
                statement: &S,
                params: &[&(dyn ToSql + Sync)],
            ) -> Result<u64, Error>
            where
                S: ToStatement + ?Sized + Sync,
            {
                let $this = self;
                ($client).execute(statement, params).await
            }

            async fn batch_execute(&self, sql: &str) -> Result<(), Error> {
                let $this = self;
                ($client).batch_execute(sql).await
            }
        }
    };
}

generic_client!([] Client, |this| this);
generic_client!(['a] Transaction<'a>, |this| this);

// Pooled clients, from any manager whose objects are aepg clients.
#[cfg(feature = "deadpool")]
generic_client!(
    [M: deadpool::managed::Manager<Type = Client>]
    deadpool::managed::Object<M>,
    |this| &**this
);

#[cfg(feature = "bb8")]
generic_client!(
    ['p, M: bb8::ManageConnection<Connection = Client>]
    bb8::PooledConnection<'p, M>,
    |this| &**this
);
