//! What aepg keeps per connection: the statement cache and the session's
//! name resolution (search path, temporary tables).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use super::connection::Watch;
use super::encryption::Encryption;
use super::statement::Statement;
use super::statement_cache::StatementCache;
use crate::catalog::Catalog;
use crate::support::lock;

/// How the session resolves unqualified table names, as the server reported it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct NameResolution {
    /// `current_schemas(true)`: the effective search path, with the
    /// session's temporary schema where it is searched.
    pub(crate) search_path: Arc<[String]>,
    /// The session's temporary tables, which hide tables of their names.
    pub(crate) temp_tables: Arc<[String]>,
}

/// Per-connection state, shared by a client and its transactions.
pub(crate) struct ConnectionState {
    pub(crate) encryption: Arc<Encryption>,
    /// Set when the connection is driven by an [`aepg::Connection`](super::Connection),
    /// so catalog announcements reach `encryption`.
    watch: Option<Arc<Watch>>,
    statements: Mutex<StatementCache>,
    resolution: Mutex<Option<NameResolution>>,
    /// Whether this session listens on the catalog channel.
    listening: AtomicBool,
    /// Set when a statement that may change the session ran: the end of the
    /// transaction it ran in (which reverts `SET LOCAL`) forgets again.
    session_changed: AtomicBool,
    /// Inside a transaction block opened by `BEGIN` text (rather than
    /// through [`Client::transaction`](crate::Client::transaction)).
    text_transaction: AtomicBool,
    /// Whether a statement ran since the current transaction began, so a
    /// repeatable-read snapshot may already be older than the catalog.
    statement_ran: AtomicBool,
    /// Whether tokio-postgres was asked to learn `aepg.ciphertext` on this
    /// connection.
    ciphertext_type_asked: AtomicBool,
    /// The session read, prepared on this connection: every new statement
    /// text reads the session, and a prepared read skips the server's parse
    /// and plan of it (about 0.25 ms each time).
    session_read: Mutex<Option<tokio_postgres::Statement>>,
}

impl ConnectionState {
    pub(crate) fn new(encryption: Arc<Encryption>, watch: Option<Arc<Watch>>) -> Self {
        let statements = StatementCache::new(encryption.statement_cache_capacity());
        Self {
            encryption,
            watch,
            statements: Mutex::new(statements),
            resolution: Mutex::new(None),
            listening: AtomicBool::new(false),
            session_changed: AtomicBool::new(false),
            text_transaction: AtomicBool::new(false),
            statement_ran: AtomicBool::new(true),
            ciphertext_type_asked: AtomicBool::new(false),
            session_read: Mutex::new(None),
        }
    }

    /// Whether announcements of catalog changes reach this client.
    pub(crate) fn hears_announcements(&self) -> bool {
        self.listening.load(Ordering::SeqCst)
            && self.watch.as_ref().is_some_and(|watch| watch.is_alive())
    }

    /// Whether the connection should `LISTEN` on the catalog channel.
    pub(crate) fn should_listen(&self) -> bool {
        !self.listening.load(Ordering::SeqCst)
            && self.watch.as_ref().is_some_and(|watch| watch.is_alive())
    }

    pub(crate) fn set_listening(&self, listening: bool) {
        self.listening.store(listening, Ordering::SeqCst);
    }

    /// Whether this is the first call on this connection: the one that
    /// asks tokio-postgres to learn `aepg.ciphertext`.
    pub(crate) fn first_ciphertext_type_ask(&self) -> bool {
        !self.ciphertext_type_asked.swap(true, Ordering::SeqCst)
    }

    /// A transaction began: no statement has taken its snapshot yet.
    pub(crate) fn transaction_started(&self) {
        self.statement_ran.store(false, Ordering::SeqCst);
    }

    /// A statement ran (or may have): a snapshot of the current
    /// transaction may have been taken.
    pub(crate) fn statement_ran(&self) {
        self.statement_ran.store(true, Ordering::SeqCst);
    }

    /// Whether a transaction snapshot, if there is one, may be older than
    /// the statement about to run.
    pub(crate) fn snapshot_may_be_old(&self) -> bool {
        self.statement_ran.load(Ordering::SeqCst)
    }

    /// Whether a transaction block opened by `BEGIN` text is open.
    pub(crate) fn in_text_transaction(&self) -> bool {
        self.text_transaction.load(Ordering::SeqCst)
    }

    /// Notes that `BEGIN` text opened a transaction block, or `COMMIT` or
    /// `ROLLBACK` text closed one.
    pub(crate) fn set_text_transaction(&self, open: bool) {
        self.text_transaction.store(open, Ordering::SeqCst);
    }

    /// The session read prepared on this connection, if it is.
    pub(crate) fn session_read(&self) -> Option<tokio_postgres::Statement> {
        lock(&self.session_read).clone()
    }

    pub(crate) fn set_session_read(&self, statement: tokio_postgres::Statement) {
        *lock(&self.session_read) = Some(statement);
    }

    /// Forgets the prepared session read, which the server may no longer
    /// hold (`DEALLOCATE`, `DISCARD ALL`): the next read prepares it again.
    pub(crate) fn forget_session_read(&self) {
        *lock(&self.session_read) = None;
    }

    pub(crate) fn resolution(&self) -> Option<NameResolution> {
        lock(&self.resolution).clone()
    }

    pub(crate) fn set_resolution(&self, resolution: NameResolution) {
        *lock(&self.resolution) = Some(resolution);
    }

    /// The statement cached for `sql`, if it was analyzed against `catalog`.
    pub(crate) fn cached(&self, sql: &str, catalog: &Arc<Catalog>) -> Option<Statement> {
        lock(&self.statements).get(sql, catalog)
    }

    pub(crate) fn cache(&self, statement: Statement) {
        lock(&self.statements).insert(statement);
    }

    /// Forgets a cached statement the server no longer runs as prepared.
    pub(crate) fn uncache(&self, statement: &Statement) {
        lock(&self.statements).remove(statement);
    }

    /// How many statements the cache holds.
    pub(crate) fn cached_statements(&self) -> usize {
        lock(&self.statements).len()
    }

    /// Forgets the name resolution and every analysis made with it, after a
    /// statement that may have changed the session (`SET search_path`,
    /// `RESET`, `DISCARD`, `set_config`, an unknown statement kind, the end
    /// of a transaction that ran `SET LOCAL`). The next statement reads the
    /// session again.
    pub(crate) fn session_changed(&self) {
        self.session_changed.store(true, Ordering::SeqCst);
        self.forget_session();
    }

    /// At the end of a transaction (commit, rollback, or drop): forgets the
    /// session if a statement that may have changed it ran since last time.
    pub(crate) fn transaction_ended(&self) {
        if self.session_changed.swap(false, Ordering::SeqCst) {
            self.forget_session();
        }
    }

    fn forget_session(&self) {
        *lock(&self.resolution) = None;
        // `DISCARD ALL` also ends listening; the next read of the session
        // says whether it still listens.
        self.listening.store(false, Ordering::SeqCst);
        lock(&self.statements).clear();
        // `DEALLOCATE` and `DISCARD ALL` take the prepared read with them.
        self.forget_session_read();
    }
}
