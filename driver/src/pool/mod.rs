//! Connection pools of aepg clients: a manager for deadpool (feature
//! `deadpool`) and for bb8 (feature `bb8`).
//!
//! Every connection a [`ClientManager`] opens is an [`aepg::Client`](Client)
//! sharing the manager's one [`Encryption`]: the pool loads and verifies the
//! catalog once, unwraps each column key once per key TTL, and refuses a
//! catalog rollback any of its connections has seen. Connections are driven
//! by aepg ([`Client::with_connection`]), so they hear announcements of
//! catalog changes.
//!
//! ```no_run
//! # #[cfg(feature = "deadpool")]
//! # async fn demo(encryption: std::sync::Arc<aepg::Encryption>) -> Result<(), Box<dyn std::error::Error>> {
//! use aepg::pool::{ClientManager, Recycling};
//!
//! let config: tokio_postgres::Config = "host=db user=app".parse()?;
//! let manager = ClientManager::new(config, tokio_postgres::NoTls, encryption)
//!     .recycling(Recycling::Clean);
//! let pool = aepg::pool::DeadpoolPool::builder(manager).max_size(16).build()?;
//! let client = pool.get().await?;
//! let rows = client.query("SELECT ssn FROM patients WHERE id = $1", &[&7]).await?;
//! # Ok(()) }
//! ```

use std::sync::Arc;

use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::Socket;

use crate::{Client, Encryption, Error};

#[cfg(feature = "bb8")]
mod bb8_manager;
#[cfg(feature = "deadpool")]
mod deadpool_manager;

#[cfg(feature = "bb8")]
pub use bb8;
#[cfg(feature = "deadpool")]
pub use deadpool;

/// A deadpool pool of aepg clients (`DeadpoolPool::builder(manager)`).
#[cfg(feature = "deadpool")]
pub type DeadpoolPool<T> = deadpool::managed::Pool<ClientManager<T>>;

/// A bb8 pool of aepg clients (`Bb8Pool::builder().build(manager)`).
#[cfg(feature = "bb8")]
pub type Bb8Pool<T> = bb8::Pool<ClientManager<T>>;

/// What a pool does to a connection handed back before it hands it out
/// again. Under every method, a connection handed back inside a
/// transaction block opened by text (`BEGIN`) is dropped, not reused.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Recycling {
    /// Only checks that the connection is not closed.
    Fast,
    /// Also sends an empty query, so a connection the server dropped is
    /// found before the application's statement meets it. Keeps the
    /// session's prepared statements.
    #[default]
    Verified,
    /// Also resets the session ([`Client::reset_session`]: `DISCARD ALL`
    /// but for `DEALLOCATE ALL`): settings (`search_path`, roles),
    /// temporary tables, locks and listening go, and aepg forgets what it
    /// knew of the session and its cached statements, so each checkout
    /// prepares its statements again.
    Clean,
}

/// Opens aepg clients for a pool, all sharing one [`Encryption`].
#[derive(Clone)]
pub struct ClientManager<T> {
    config: tokio_postgres::Config,
    tls: T,
    encryption: Arc<Encryption>,
    recycling: Recycling,
}

impl<T> ClientManager<T>
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + Sync + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    /// A manager connecting with `config` over `tls`, its clients sharing
    /// `encryption`; recycling [`Recycling::Verified`].
    pub fn new(config: tokio_postgres::Config, tls: T, encryption: Arc<Encryption>) -> Self {
        Self {
            config,
            tls,
            encryption,
            recycling: Recycling::default(),
        }
    }

    /// How connections handed back are recycled.
    pub fn recycling(mut self, recycling: Recycling) -> Self {
        self.recycling = recycling;
        self
    }

    /// The encryption state the pool's clients share.
    pub fn encryption(&self) -> &Arc<Encryption> {
        &self.encryption
    }

    /// Opens a client, its connection driven by a task of its own.
    async fn open(&self) -> Result<Client, Error> {
        let (inner, connection) = self.config.connect(self.tls.clone()).await?;
        let (client, connection) =
            Client::with_connection(inner, connection, self.encryption.clone());
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(error = %error, "aepg pooled connection ended");
            }
        });
        Ok(client)
    }

    /// Readies a client handed back for its next user.
    async fn recycle_client(&self, client: &Client) -> Result<(), Error> {
        if client.in_text_transaction() {
            // Handed back inside a `BEGIN` block: not reusable.
            return Err(Error::SessionInTransaction);
        }
        match self.recycling {
            // A closed client's ping fails at once, with the reason.
            Recycling::Fast if !client.is_closed() => Ok(()),
            Recycling::Fast | Recycling::Verified => client.ping().await,
            Recycling::Clean => client.reset_session().await,
        }
    }
}

impl<T> std::fmt::Debug for ClientManager<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientManager")
            .field("recycling", &self.recycling)
            .finish_non_exhaustive()
    }
}
