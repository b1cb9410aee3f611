//! What a client and its transactions share: the connection's statement
//! cache and search path, and the pool's encryption state. Every statement
//! runs through here.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures_util::{Stream, TryStreamExt};
use postgres_types::ToSql;

use super::decryption::DecryptionContext;
use super::encryption::Encryption;
use super::parameter::{encrypt_parameter, BoundParameter};
use super::row::Row;
use super::statement::Statement;
use crate::analysis::{analyze, ParameterTarget};
use crate::catalog::Catalog;
use crate::Error;

/// Per-connection state.
pub(crate) struct ClientState {
    pub(crate) encryption: Arc<Encryption>,
    statements: Mutex<HashMap<String, Statement>>,
    /// The connection's search path, read on first use and forgotten when a
    /// statement may have changed it.
    search_path: Mutex<Option<Arc<[String]>>>,
    /// Set when a statement that may change the session ran: the end of the
    /// transaction it ran in (which reverts `SET LOCAL`) forgets again.
    session_changed: std::sync::atomic::AtomicBool,
}

impl ClientState {
    /// At the end of a transaction: forgets session state if a statement
    /// that may have changed it ran since the last time.
    pub(crate) fn transaction_ended(&self) {
        if self
            .session_changed
            .swap(false, std::sync::atomic::Ordering::SeqCst)
        {
            self.forget_session_state();
        }
    }

    /// See [`Session::forget_session_state`].
    pub(crate) fn forget_session_state(&self) {
        // One assignment per critical section: a poisoned value is consistent.
        *self
            .search_path
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        self.statements
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clear();
    }

    pub(crate) fn new(encryption: Arc<Encryption>) -> Self {
        Self {
            encryption,
            statements: Mutex::new(HashMap::new()),
            search_path: Mutex::new(None),
            session_changed: std::sync::atomic::AtomicBool::new(false),
        }
    }
}

/// A statement text or a prepared [`Statement`]: what query methods accept.
pub trait ToStatement: private::Sealed + Sync {
    #[doc(hidden)]
    fn as_text_or_statement(&self) -> TextOrStatement<'_>;
}

#[doc(hidden)]
pub enum TextOrStatement<'a> {
    Text(&'a str),
    Statement(&'a Statement),
}

mod private {
    pub trait Sealed {}
    impl Sealed for str {}
    impl Sealed for String {}
    impl Sealed for super::Statement {}
}

impl ToStatement for str {
    fn as_text_or_statement(&self) -> TextOrStatement<'_> {
        TextOrStatement::Text(self)
    }
}

impl ToStatement for String {
    fn as_text_or_statement(&self) -> TextOrStatement<'_> {
        TextOrStatement::Text(self)
    }
}

impl ToStatement for Statement {
    fn as_text_or_statement(&self) -> TextOrStatement<'_> {
        TextOrStatement::Statement(self)
    }
}

/// One connection (a client, or a transaction on it) with its state.
#[derive(Clone, Copy)]
pub(crate) struct Session<'a> {
    pub(crate) client: &'a tokio_postgres::Client,
    pub(crate) state: &'a ClientState,
}

impl<'a> Session<'a> {
    async fn search_path(&self) -> Result<Arc<[String]>, Error> {
        if let Some(path) = self.lock_search_path().clone() {
            return Ok(path);
        }
        let row = self
            .client
            .query_one("SELECT current_schemas(false)", &[])
            .await?;
        let path: Arc<[String]> = row.try_get::<_, Vec<String>>(0)?.into();
        *self.lock_search_path() = Some(path.clone());
        Ok(path)
    }

    fn lock_search_path(&self) -> std::sync::MutexGuard<'_, Option<Arc<[String]>>> {
        // One assignment per critical section: a poisoned value is consistent.
        self.state
            .search_path
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Forgets the search path and every analysis made with it, after a
    /// statement that may have changed the session (`SET search_path`,
    /// `RESET`, `DISCARD`, `set_config`, the end of a transaction that ran
    /// `SET LOCAL`). The next statement reads the path again.
    pub(crate) fn forget_session_state(&self) {
        self.state
            .session_changed
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.state.forget_session_state();
    }

    /// Forgets session state after running a statement that may change it.
    fn after_execution(&self, statement: &Statement) {
        if statement.0.changes_session {
            self.forget_session_state();
        }
    }

    /// Runs `work`, then forgets session state if `sql` may have changed it.
    async fn watching_session<T>(
        &self,
        sql: Option<&str>,
        work: impl std::future::Future<Output = Result<T, Error>>,
    ) -> Result<T, Error> {
        let result = work.await;
        if sql.is_some_and(may_change_session) {
            self.forget_session_state();
        }
        result
    }

    async fn catalog(&self) -> Result<Arc<Catalog>, Error> {
        self.state.encryption.catalog(self.client).await
    }

    /// Prepares `sql`, or returns it from the cache: the first use of a text
    /// costs an analysis and a `prepare`; later uses cost nothing here. After
    /// the catalog changed, the text is analyzed and prepared again, so the
    /// server's parameter types are checked against the new catalog.
    pub(crate) async fn prepare(&self, sql: &str) -> Result<Statement, Error> {
        let catalog = self.catalog().await?;
        if let Some(statement) = self.cached(sql) {
            if Arc::ptr_eq(&statement.0.catalog, &catalog) {
                return Ok(statement);
            }
        }
        let search_path = self.search_path().await?;
        // Analyze before the text reaches the server, so a refused statement
        // is never even prepared.
        let analysis = analyze(sql, &catalog.schema_view(&search_path))?;
        let inner = self.client.prepare(sql).await?;
        let statement = Statement::build(sql, inner, catalog, analysis)?;
        self.lock_statements()
            .insert(sql.to_owned(), statement.clone());
        Ok(statement)
    }

    async fn resolve(&self, statement: &(impl ToStatement + ?Sized)) -> Result<Statement, Error> {
        match statement.as_text_or_statement() {
            TextOrStatement::Text(sql) => self.prepare(sql).await,
            TextOrStatement::Statement(statement) => {
                let catalog = self.catalog().await?;
                if Arc::ptr_eq(&statement.0.catalog, &catalog) {
                    Ok(statement.clone())
                } else {
                    self.prepare(&statement.0.sql).await
                }
            }
        }
    }

    fn cached(&self, sql: &str) -> Option<Statement> {
        self.lock_statements().get(sql).cloned()
    }

    fn lock_statements(&self) -> std::sync::MutexGuard<'_, HashMap<String, Statement>> {
        // One map operation per critical section: a poisoned map is consistent.
        self.state
            .statements
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Encrypts the parameters bound for encrypted columns.
    async fn bind<'p>(
        &self,
        statement: &Statement,
        params: &'p [&'p (dyn ToSql + Sync)],
    ) -> Result<Vec<BoundParameter<'p>>, Error> {
        let expected = statement.params().len();
        if params.len() != expected {
            return Err(Error::ParameterCount {
                expected,
                given: params.len(),
            });
        }
        let prepared = &statement.0;
        let mut bound = Vec::with_capacity(params.len());
        for (index, value) in params.iter().enumerate() {
            match prepared.analysis.parameters.get(index) {
                None | Some(ParameterTarget::Plaintext) => {
                    bound.push(BoundParameter::Plain(*value))
                }
                Some(ParameterTarget::Encrypted {
                    column,
                    setting_id,
                    usage,
                    ..
                }) => {
                    let setting = prepared.catalog.settings().get(setting_id).ok_or_else(|| {
                        Error::NotInCatalog {
                            kind: "column encryption setting",
                            name: setting_id.to_string(),
                        }
                    })?;
                    let cipher = self
                        .state
                        .encryption
                        .cipher(&prepared.catalog, setting.key_id)
                        .await?;
                    bound.push(encrypt_parameter(
                        *value,
                        index + 1,
                        column,
                        setting,
                        *usage,
                        &cipher,
                    )?);
                }
            }
        }
        Ok(bound)
    }

    fn decryption_context(&self, statement: &Statement) -> DecryptionContext<'a> {
        DecryptionContext {
            encryption: &self.state.encryption,
            client: self.client,
            catalog: statement.0.catalog.clone(),
            refreshed: false,
        }
    }

    pub(crate) async fn query(
        &self,
        statement: &(impl ToStatement + ?Sized),
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error> {
        let statement = self.resolve(statement).await?;
        let bound = self.bind(&statement, params).await?;
        let rows = self
            .client
            .query(&statement.0.inner, &as_params(&bound))
            .await;
        drop(bound);
        self.after_execution(&statement);
        let rows = rows?;
        let mut context = self.decryption_context(&statement);
        let mut decrypted = Vec::with_capacity(rows.len());
        for row in rows {
            decrypted.push(Row::decrypt(row, statement.0.columns.clone(), &mut context).await?);
        }
        Ok(decrypted)
    }

    pub(crate) async fn query_one(
        &self,
        statement: &(impl ToStatement + ?Sized),
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, Error> {
        let mut rows = self.query(statement, params).await?;
        match rows.len() {
            1 => rows.pop().ok_or(Error::RowCount {
                expected: "exactly one",
                got: 0,
            }),
            got => Err(Error::RowCount {
                expected: "exactly one",
                got,
            }),
        }
    }

    pub(crate) async fn query_opt(
        &self,
        statement: &(impl ToStatement + ?Sized),
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Error> {
        let mut rows = self.query(statement, params).await?;
        match rows.len() {
            0 | 1 => Ok(rows.pop()),
            got => Err(Error::RowCount {
                expected: "at most one",
                got,
            }),
        }
    }

    pub(crate) async fn query_raw(
        &self,
        statement: &(impl ToStatement + ?Sized),
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<RowStream<'a>, Error> {
        let statement = self.resolve(statement).await?;
        let bound = self.bind(&statement, params).await?;
        let rows = self
            .client
            .query_raw(&statement.0.inner, as_params(&bound))
            .await;
        drop(bound);
        self.after_execution(&statement);
        let rows = rows?;
        let context = self.decryption_context(&statement);
        let plans = statement.0.columns.clone();
        let stream = futures_util::stream::try_unfold(
            (Box::pin(rows), context),
            move |(mut rows, mut context)| {
                let plans = plans.clone();
                async move {
                    match rows.try_next().await? {
                        Some(row) => {
                            let row = Row::decrypt(row, plans, &mut context).await?;
                            Ok(Some((row, (rows, context))))
                        }
                        None => Ok(None),
                    }
                }
            },
        );
        Ok(RowStream {
            inner: Box::pin(stream),
        })
    }

    pub(crate) async fn execute(
        &self,
        statement: &(impl ToStatement + ?Sized),
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, Error> {
        let statement = self.resolve(statement).await?;
        let bound = self.bind(&statement, params).await?;
        let affected = self
            .client
            .execute(&statement.0.inner, &as_params(&bound))
            .await;
        self.after_execution(&statement);
        Ok(affected?)
    }

    /// Simple-query text gets the same analysis; it cannot carry parameters,
    /// so anything it would store into or compare with an encrypted column
    /// is a literal and is refused.
    pub(crate) async fn batch_execute(&self, sql: &str) -> Result<(), Error> {
        let catalog = self.catalog().await?;
        let search_path = self.search_path().await?;
        let analysis = analyze(sql, &catalog.schema_view(&search_path))?;
        if let Some(number) = analysis
            .parameters
            .iter()
            .position(|target| matches!(target, ParameterTarget::Encrypted { .. }))
        {
            return Err(Error::ParameterCrossCheck {
                number: number + 1,
                reason:
                    "is bound for an encrypted column, but batch_execute cannot send parameters"
                        .to_owned(),
            });
        }
        self.watching_session(Some(sql), async {
            Ok(self.client.batch_execute(sql).await?)
        })
        .await
    }
}

fn as_params<'b>(bound: &'b [BoundParameter<'_>]) -> Vec<&'b (dyn ToSql + Sync)> {
    bound
        .iter()
        .map(|parameter| parameter as &(dyn ToSql + Sync))
        .collect()
}

/// A stream of decrypted rows, from [`Client::query_raw`](crate::Client::query_raw).
pub struct RowStream<'a> {
    inner: Pin<Box<dyn Stream<Item = Result<Row, Error>> + Send + 'a>>,
}

impl Stream for RowStream<'_> {
    type Item = Result<Row, Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.inner.as_mut().poll_next(cx)
    }
}

impl std::fmt::Debug for RowStream<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RowStream").finish_non_exhaustive()
    }
}

/// Whether `sql` may change what later statements resolve to: a `SET`,
/// `RESET` or `DISCARD`, a `set_config` call, or the end of a transaction
/// (which reverts `SET LOCAL`). Errs on the side of yes: the cost of a false
/// yes is one extra analysis and `prepare`.
pub(crate) fn may_change_session(sql: &str) -> bool {
    let lowered = sql.to_ascii_lowercase();
    lowered.contains("set_config")
        || lowered.split(';').any(|statement| {
            let first = statement
                .trim_start()
                .split(|character: char| !character.is_ascii_alphabetic())
                .next()
                .unwrap_or_default();
            matches!(
                first,
                "set" | "reset" | "discard" | "commit" | "rollback" | "end" | "abort"
            )
        })
}
