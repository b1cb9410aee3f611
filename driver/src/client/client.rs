//! The client: a tokio-postgres client that encrypts and decrypts.

use std::sync::Arc;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::Socket;

use super::connection::{Connection, Watch};
use super::connection_state::ConnectionState;
use super::encryption::Encryption;
use super::executor::Executor;
use super::methods::query_methods;
use super::transaction::{Transaction, TransactionBuilder};
use crate::catalog::Catalog;
use crate::Error;

/// What [`Client::reset_session`] runs: `DISCARD ALL` without
/// `DEALLOCATE ALL` (as deadpool-postgres's clean recycling does).
const RESET_SESSION: &str = "CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; \
     UNLISTEN *; SELECT pg_catalog.pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES";

/// A PostgreSQL client that encrypts parameters bound for encrypted columns
/// and decrypts encrypted result columns. Its methods mirror
/// `tokio_postgres::Client`, so switching is a change of import.
///
/// Concurrent queries on one client are pipelined, as in tokio-postgres.
///
/// ```no_run
/// # async fn demo(registry: aepg::keystore::KeyStoreRegistry) -> Result<(), aepg::Error> {
/// use aepg::{Encryption, EncryptionConfig};
///
/// let encryption = Encryption::new(EncryptionConfig::new(registry));
/// let (client, connection) =
///     aepg::connect("host=db user=app", tokio_postgres::NoTls, encryption).await?;
/// tokio::spawn(connection);
/// client
///     .execute("INSERT INTO patients (id, ssn) VALUES ($1, $2)", &[&1, &"078-05-1120"])
///     .await?;
/// let row = client
///     .query_one("SELECT ssn FROM patients WHERE ssn = $1", &[&"078-05-1120"])
///     .await?;
/// assert_eq!(row.get::<_, &str>("ssn"), "078-05-1120");
/// # Ok(()) }
/// ```
pub struct Client {
    inner: tokio_postgres::Client,
    state: ConnectionState,
}

impl Client {
    /// Wraps a connected tokio-postgres client (from any TLS connector or
    /// pool) whose connection aepg does not drive: announcements of catalog
    /// changes cannot reach it, so it reads the catalog generation with
    /// each new statement text, and prepares a cached statement again
    /// before it sends plaintext parameters (one round trip more). Prefer
    /// [`connect`] or [`Client::with_connection`], which hear them.
    ///
    /// Nothing is sent until the first statement, which loads the shared
    /// catalog if `encryption` has none yet.
    pub fn new(inner: tokio_postgres::Client, encryption: Arc<Encryption>) -> Self {
        Self {
            inner,
            state: ConnectionState::new(encryption, None),
        }
    }

    /// Wraps a connected tokio-postgres client and its connection: spawn the
    /// returned [`Connection`] instead of tokio-postgres's. It hears the
    /// announcements of catalog changes, so no statement is sent under an
    /// analysis made against an older catalog once one arrived.
    pub fn with_connection<S, T>(
        inner: tokio_postgres::Client,
        connection: tokio_postgres::Connection<S, T>,
        encryption: Arc<Encryption>,
    ) -> (Self, Connection<S, T>)
    where
        S: AsyncRead + AsyncWrite + Unpin,
        T: AsyncRead + AsyncWrite + Unpin,
    {
        let watch = Watch::new(encryption.clone());
        let client = Self {
            inner,
            state: ConnectionState::new(encryption, Some(watch.clone())),
        };
        (client, Connection::new(connection, watch))
    }

    pub(crate) fn executor(&self) -> Executor<'_> {
        Executor {
            client: &self.inner,
            state: &self.state,
            in_transaction: false,
        }
    }

    query_methods!();

    /// Starts a transaction. Dropping it without [`commit`](Transaction::commit)
    /// rolls it back.
    ///
    /// # Errors
    /// Database errors.
    pub async fn transaction(&mut self) -> Result<Transaction<'_>, Error> {
        let inner = self.inner.transaction().await?;
        self.state.transaction_started();
        Ok(Transaction::new(inner, &self.state))
    }

    /// A builder for a transaction with options (isolation level, read
    /// only, deferrable), as tokio-postgres's.
    pub fn build_transaction(&mut self) -> TransactionBuilder<'_> {
        TransactionBuilder::new(self.inner.build_transaction(), &self.state)
    }

    /// The shared encryption state.
    pub fn encryption(&self) -> &Arc<Encryption> {
        &self.state.encryption
    }

    /// The verified catalog, loaded (or its generation checked) if needed.
    ///
    /// # Errors
    /// As [`load_catalog`](crate::catalog::load_catalog).
    pub async fn catalog(&self) -> Result<Arc<Catalog>, Error> {
        self.state.encryption.catalog(&self.inner).await
    }

    /// Reloads the catalog now, for every client sharing this encryption
    /// state (after a key or column was added, say).
    ///
    /// # Errors
    /// As [`load_catalog`](crate::catalog::load_catalog).
    pub async fn refresh_catalog(&self) -> Result<Arc<Catalog>, Error> {
        self.state.encryption.refresh_catalog(&self.inner).await
    }

    /// A token to cancel the statement this connection is running (as
    /// tokio-postgres's: the cancel request carries no statement or value).
    pub fn cancel_token(&self) -> tokio_postgres::CancelToken {
        self.inner.cancel_token()
    }

    /// Whether the connection is closed.
    pub fn is_closed(&self) -> bool {
        self.inner.is_closed()
    }

    /// Checks that the server still answers, with an empty query (no
    /// statement of the application's, nothing to encrypt).
    ///
    /// # Errors
    /// The connection is closed or broken.
    pub async fn ping(&self) -> Result<(), Error> {
        self.inner.simple_query("").await?;
        Ok(())
    }

    /// Resets the session between two users of a pooled connection:
    /// cursors closed, session authorization and every setting reset
    /// (`search_path` among them), listening ended, advisory locks
    /// released, temporary tables and sequences dropped: `DISCARD ALL`
    /// but for `DEALLOCATE ALL`, which would take tokio-postgres's own
    /// type-lookup statements with it (it never prepares them again). aepg
    /// forgets what it knew of the session and its cached statements: the
    /// next statement reads the session again and prepares its text again.
    ///
    /// # Errors
    /// [`Error::SessionInTransaction`] inside a transaction block opened by
    /// text (such a connection is not reusable); connection errors.
    pub async fn reset_session(&self) -> Result<(), Error> {
        if self.state.in_text_transaction() {
            return Err(Error::SessionInTransaction);
        }
        // A fixed text without values: sent as written.
        let result = self.inner.batch_execute(RESET_SESSION).await;
        self.state.session_changed();
        self.state.transaction_ended();
        Ok(result?)
    }

    /// Whether a transaction block opened by text (`BEGIN`) is open.
    #[cfg(any(feature = "deadpool", feature = "bb8"))]
    pub(crate) fn in_text_transaction(&self) -> bool {
        self.state.in_text_transaction()
    }

    /// How many prepared statements this connection keeps in its cache
    /// (at most [`EncryptionConfig::statement_cache_capacity`](crate::EncryptionConfig::statement_cache_capacity)).
    pub fn cached_statements(&self) -> usize {
        self.state.cached_statements()
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Client").finish_non_exhaustive()
    }
}

/// Connects like `tokio_postgres::connect` and wraps the client. As there,
/// the returned connection must be spawned (`tokio::spawn(connection)`); it
/// also hears the announcements of catalog changes.
///
/// # Errors
/// Connection errors.
pub async fn connect<T>(
    config: &str,
    tls: T,
    encryption: Arc<Encryption>,
) -> Result<(Client, Connection<Socket, T::Stream>), Error>
where
    T: MakeTlsConnect<Socket>,
    T::TlsConnect: TlsConnect<Socket>,
{
    let (inner, connection) = tokio_postgres::connect(config, tls).await?;
    Ok(Client::with_connection(inner, connection, encryption))
}
