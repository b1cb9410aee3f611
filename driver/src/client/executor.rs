//! Running statements on one connection: every query method of a client or
//! a transaction comes through here, on one path — resolve the statement
//! (analyze, prepare, cross-check, cached by text), bind (encrypt the
//! parameters bound for encrypted columns), run, decrypt the rows.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::Either;
use futures_util::{StreamExt, TryStreamExt};
use postgres_types::{Kind, ToSql, Type};
use tokio_postgres::error::SqlState;
use tracing::Instrument;

use super::batch_decryption::BatchDecryption;
use super::connection_state::{ConnectionState, NameResolution};
use super::encryption::{CheckContext, ServerState};
use super::parameter::{encrypt_parameter, BoundParameter};
use super::row::{Row, RowStream, Source};
use super::statement::Statement;
use super::to_statement::{ToStatement, ToStatementType};
use crate::analysis::{
    analyze, session_control, ColumnEncryption, ControlText, ParameterTarget, ParameterUse,
    Refusal, ResultColumnSource, SessionControl, StatementAnalysis,
};
use crate::catalog::{look_up_tables, Catalog, CatalogError, EncryptionSetting, CATALOG_CHANNEL};
use crate::cell::CellCipher;
use crate::error::{CrossCheckProblem, ParameterProblem, ResultProblem, RowCountExpectation};
use crate::names::{ColumnName, TableName};
use crate::record::CatalogId;
use crate::support::generation_from_sql;
use crate::Error;

/// What a session reports of itself and of the catalog, in one round trip:
/// the catalog's identity and generation, the effective search path, the
/// session's temporary tables, and whether it listens on the catalog channel.
/// Operators are qualified: the search path is the server's to set. The
/// temporary tables are listed by a scan of `pg_class` (no index serves
/// its namespace alone), so only when the session has a temporary schema:
/// with 2,000 tables in the database the scan took 0.8 ms of every new
/// statement's prepare. Prepared once per connection
/// ([`Executor::query_session`]): parsed and planned for every new text,
/// it cost the server about 0.25 ms each time.
const SESSION_QUERY: &str = "SELECT v.instance_id, v.generation, \
     pg_catalog.current_schemas(true)::pg_catalog.text[], \
     CASE WHEN pg_catalog.pg_my_temp_schema() OPERATOR(pg_catalog.=) 0::pg_catalog.oid \
          THEN '{}'::pg_catalog.text[] \
          ELSE ARRAY(SELECT c.relname::pg_catalog.text FROM pg_catalog.pg_class c \
                     WHERE c.relnamespace OPERATOR(pg_catalog.=) pg_catalog.pg_my_temp_schema()) \
     END, \
     EXISTS (SELECT FROM pg_catalog.pg_listening_channels() AS c \
             WHERE c OPERATOR(pg_catalog.=) 'aepg_catalog'), \
     pg_catalog.current_setting('standard_conforming_strings'), \
     pg_catalog.current_setting('transaction_isolation') \
       OPERATOR(pg_catalog.<>) 'read committed' \
       AND pg_catalog.transaction_timestamp() OPERATOR(pg_catalog.<>) pg_catalog.statement_timestamp() \
     FROM aepg.catalog_version v";

/// How often a new statement text is analyzed again because the catalog or
/// the session changed while it was being prepared, before giving up.
const MAX_PREPARE_ATTEMPTS: usize = 4;

/// How often one analysis reads tables it names: the analysis of a text of
/// several statements stops at the first it refuses, and may name more
/// tables on its next run.
const MAX_TABLE_LOOKUPS: usize = 16;

/// A statement whose description names `aepg.ciphertext`, so that
/// tokio-postgres looks the type up ([`Executor::learn_ciphertext_type`]).
const CIPHERTEXT_TYPE_PROBE: &str = "SELECT $1::aepg.ciphertext";

/// The shortest time between two loads of the catalog made because a
/// statement was refused (it may have been refused under tables' old
/// shapes): a stream of refused statements reloads it at most this often.
const REFUSED_RELOAD_INTERVAL: Duration = Duration::from_secs(1);

struct SessionReport {
    state: ServerState,
    resolution: NameResolution,
    listening: bool,
}

impl SessionReport {
    fn read(row: &tokio_postgres::Row) -> Result<Self, Error> {
        // aepg reads SQL text as the server does only with standard strings
        // (a backslash is an ordinary character in '…'); a session set
        // otherwise could make one text mean two things.
        if row.try_get::<_, &str>(5)? != "on" {
            return Err(Error::UnsafeSession {
                reason: "standard_conforming_strings is off".to_owned(),
            });
        }
        Ok(Self {
            state: ServerState {
                catalog: CatalogId::from_slice(row.try_get(0)?)?,
                generation: generation_from_sql(row.try_get(1)?)?,
                snapshot_bound: row.try_get(6)?,
            },
            resolution: NameResolution {
                search_path: row.try_get::<_, Vec<String>>(2)?.into(),
                temp_tables: row.try_get::<_, Vec<String>>(3)?.into(),
            },
            listening: row.try_get(4)?,
        })
    }
}

/// One connection (a client, or a transaction on it) with its state.
#[derive(Clone, Copy)]
pub(crate) struct Executor<'a> {
    pub(crate) client: &'a tokio_postgres::Client,
    pub(crate) state: &'a ConnectionState,
    /// Inside a transaction block, where a `LISTEN` would wait for the
    /// commit (and vanish with a rollback).
    pub(crate) in_transaction: bool,
}

impl<'a> Executor<'a> {
    pub(crate) async fn catalog(&self) -> Result<Arc<Catalog>, Error> {
        if let Some(catalog) = self.state.encryption.fresh() {
            return Ok(catalog);
        }
        self.server_catalog().await
    }

    /// [`catalog`](Self::catalog), for a statement about to be analyzed,
    /// which needs the session's name resolution as well. Where that is
    /// not known (a connection's first statement, or after the session
    /// changed) and the catalog is not fresh, both are read in one flight,
    /// not a round trip apart (outside a transaction, where no snapshot
    /// ties the two together). The session read is sent first, so its
    /// `LISTEN` takes effect before the catalog is read. The catalog's
    /// error is the one reported, and at once: the session read may be
    /// queued behind catalog reads that wait for a lock.
    async fn statement_catalog(&self) -> Result<Arc<Catalog>, Error> {
        if let Some(catalog) = self.state.encryption.fresh() {
            return Ok(catalog);
        }
        if self.state.resolution().is_none() && !self.in_transaction() {
            let session = self.read_session();
            let catalog = self.server_catalog();
            futures_util::pin_mut!(session, catalog);
            return match futures_util::future::select(session, catalog).await {
                Either::Left((session, catalog)) => {
                    let catalog = catalog.await?;
                    session?;
                    Ok(catalog)
                }
                Either::Right((catalog, session)) => {
                    let catalog = catalog?;
                    session.await?;
                    Ok(catalog)
                }
            };
        }
        self.server_catalog().await
    }

    /// The catalog, checked against the server's or loaded from it.
    async fn server_catalog(&self) -> Result<Arc<Catalog>, Error> {
        let context = CheckContext {
            snapshot_may_be_old: self.state.snapshot_may_be_old(),
            in_block: self.in_transaction(),
        };
        let catalog = self.state.encryption.catalog_on(self.client, context).await;
        self.state.statement_ran();
        catalog
    }

    /// Reads the session with [`SESSION_QUERY`], prepared once per
    /// connection: the first read runs it unnamed and prepares it in the
    /// same flight (one round trip), later reads only bind and run it.
    async fn query_session(&self) -> Result<SessionReport, Error> {
        let snapshot_may_be_old = self.state.snapshot_may_be_old();
        let row = match self.state.session_read() {
            Some(statement) => match self.client.query_one(&statement, &[]).await {
                Err(error) if deallocated(&error) => {
                    // Deallocated past aepg: prepared again, and read again
                    // where the error did not abort a transaction.
                    self.state.forget_session_read();
                    if self.in_transaction() {
                        Err(error)
                    } else {
                        self.read_and_prepare_session().await
                    }
                }
                row => row,
            },
            None => self.read_and_prepare_session().await,
        };
        self.state.statement_ran();
        let mut report = SessionReport::read(&row?)?;
        // The first statement of a transaction takes a fresh snapshot.
        report.state.snapshot_bound &= snapshot_may_be_old;
        self.state.set_listening(report.listening);
        Ok(report)
    }

    /// The session read run unnamed, and prepared in the same flight for
    /// the connection's later reads.
    async fn read_and_prepare_session(&self) -> Result<tokio_postgres::Row, tokio_postgres::Error> {
        let (row, prepared) = futures_util::join!(
            self.client.query_typed_one(SESSION_QUERY, &[]),
            self.client.prepare(SESSION_QUERY)
        );
        if let Ok(prepared) = prepared {
            self.state.set_session_read(prepared);
        }
        row
    }

    /// Reads the session's name resolution, and starts listening on the
    /// catalog channel when this client can hear it.
    async fn read_session(&self) -> Result<NameResolution, Error> {
        let report = if self.state.should_listen() && !self.in_transaction() {
            let listen = format!("LISTEN {CATALOG_CHANNEL}");
            // Pipelined: the report is read after the LISTEN took effect.
            let (listened, report, ()) = futures_util::join!(
                self.client.batch_execute(&listen),
                self.query_session(),
                self.learn_ciphertext_type()
            );
            listened?;
            report?
        } else {
            futures_util::join!(self.query_session(), self.learn_ciphertext_type()).0?
        };
        self.state.set_resolution(report.resolution.clone());
        Ok(report.resolution)
    }

    /// Has tokio-postgres look up `aepg.ciphertext`, a type it does not
    /// know, pipelined with the session read, once per connection: in the
    /// first `prepare` that meets it, the lookup would cost two round trips
    /// of its own (tokio-postgres prepares its type query, then runs it).
    /// Not inside a transaction, where a failure would abort it. A failure
    /// (no catalog installed) is left for the catalog load to report.
    async fn learn_ciphertext_type(&self) {
        if !self.in_transaction() && self.state.first_ciphertext_type_ask() {
            // The statement is closed as it is dropped; only the type stays
            // in the connection's cache.
            let _ = self.client.prepare(CIPHERTEXT_TYPE_PROBE).await;
        }
    }

    /// Unwraps the column keys `analysis` encrypts parameters or decrypts
    /// results with, where they are not cached yet, so that the first run
    /// of a statement does not wait for the key store after its prepare's
    /// round trip. Only where keys are kept (a zero key TTL asks the store
    /// at every use); a failure is left for the use to report, with its
    /// column.
    async fn unwrap_keys(&self, analysis: &StatementAnalysis, catalog: &Catalog) {
        let encryption = &self.state.encryption;
        if !encryption.keeps_keys() {
            return;
        }
        let parameters = analysis
            .parameters
            .iter()
            .filter_map(|target| match target {
                ParameterTarget::Encrypted { encryption, .. } => Some(encryption),
                _ => None,
            });
        let results = analysis
            .result_columns
            .iter()
            .filter_map(|column| match &column.source {
                ResultColumnSource::Encrypted(encryption) => Some(encryption),
                _ => None,
            });
        let mut key_ids: Vec<u32> = parameters
            .chain(results)
            .filter_map(|column| catalog.settings().get(&column.setting_id))
            .map(|setting| setting.key_id)
            .collect();
        key_ids.sort_unstable();
        key_ids.dedup();
        if !key_ids.is_empty() {
            // The connection task that writes the prepare out was woken on
            // this worker, where no other worker may take it: let it run
            // before an unwrap (local RSA work) holds the worker.
            tokio::task::yield_now().await;
        }
        for key_id in key_ids {
            let _ = encryption.cipher(catalog, key_id).await;
        }
    }

    async fn resolution(&self) -> Result<NameResolution, Error> {
        match self.state.resolution() {
            Some(resolution) => Ok(resolution),
            None => self.read_session().await,
        }
    }

    /// Prepares `sql`, or returns it from the cache: the first use of a text
    /// costs an analysis and a `prepare`, with the catalog generation and
    /// the session's name resolution read in the same round trip; later
    /// uses cost nothing here. After the catalog changed, the text is
    /// analyzed and prepared again, so the server's parameter types are
    /// checked against the new catalog.
    pub(crate) async fn prepare(&self, sql: &str) -> Result<Statement, Error> {
        Ok(self.prepared(sql).await?.0)
    }

    /// [`prepare`](Self::prepare), and whether the statement was prepared
    /// (and the catalog generation read) just now rather than found in the cache.
    async fn prepared(&self, sql: &str) -> Result<(Statement, bool), Error> {
        let catalog = self.statement_catalog().await?;
        if let Some(statement) = self.state.cached(sql, &catalog) {
            if !statement.is_invalidated() {
                return Ok((statement, false));
            }
        }
        Ok((self.prepare_afresh(sql, catalog, None).await?, true))
    }

    /// Analyzes `sql` against `catalog` and prepares it, with the catalog
    /// generation and the session read in the same round trip; again if
    /// either moved meanwhile. Caches the result.
    pub(crate) async fn prepare_afresh(
        &self,
        sql: &str,
        catalog: Arc<Catalog>,
        declared: Option<&[Type]>,
    ) -> Result<Statement, Error> {
        // The span names no SQL text: literals in it may be values.
        self.prepare_analyzed(sql, catalog, declared)
            .instrument(tracing::debug_span!("aepg.prepare"))
            .await
    }

    /// Prepares `sql` with the parameter types the caller declares (as
    /// tokio-postgres's `prepare_typed`): a type declared for a parameter
    /// bound for an encrypted column must be its setting's plaintext type,
    /// and the server is told nothing of it (it sees ciphertext). Not
    /// cached: the caller holds the statement.
    pub(crate) async fn prepare_typed(
        &self,
        sql: &str,
        types: &[Type],
    ) -> Result<Statement, Error> {
        let catalog = self.statement_catalog().await?;
        self.prepare_afresh(sql, catalog, Some(types)).await
    }

    async fn prepare_analyzed(
        &self,
        sql: &str,
        mut catalog: Arc<Catalog>,
        declared: Option<&[Type]>,
    ) -> Result<Statement, Error> {
        let mut resolution = self.resolution().await?;
        // Whether the catalog and the session were read from the server
        // during this call, and whether the catalog was loaded again.
        let mut confirmed = false;
        let mut reloaded = false;
        for _ in 0..MAX_PREPARE_ATTEMPTS {
            // Analyze before the text reaches the server, so a refused
            // statement is never even prepared.
            let analyzed = self.analyze(sql, &catalog, &resolution).await?;
            let analyzed = match self.after_swaps(sql, &catalog, &analyzed).await? {
                Some(current) => {
                    catalog = current;
                    self.analyze(sql, &catalog, &resolution).await?
                }
                None => analyzed,
            };
            let analysis = match analyzed {
                Ok(analysis) => analysis,
                Err(_) if !reloaded => {
                    // The refusal may come from a catalog or session older
                    // than the server's (a table encrypted or altered
                    // since): look once before refusing.
                    let looked = self.look_again(&catalog, &resolution, confirmed).await?;
                    (catalog, resolution) = looked;
                    confirmed = true;
                    reloaded = true;
                    continue;
                }
                Err(refusal) => return Err(refusal.into()),
            };
            let server_types = declared
                .map(|declared| server_types(&analysis, &catalog, declared))
                .transpose()?;
            let started = self.state.encryption.read_start();
            // Prepared without declared types first: the server's own typing
            // is the cross-check's safety net (a declared `text` would hide
            // a parameter the server types as ciphertext). Only arrays of
            // cells are declared (`bytea[]`): `unnest($n)` gives the server
            // nothing to infer from, and they are encrypted whatever it says.
            let arrays = cell_array_types(&analysis);
            // Joined last, the keys are unwrapped after the prepare and the
            // session read are on their way: the key store works while the
            // server does.
            let (inner, report, ()) = futures_util::join!(
                self.client.prepare_typed(sql, &arrays),
                self.query_session(),
                self.unwrap_keys(&analysis, &catalog)
            );
            let report = report?;
            confirmed = true;
            let current = self
                .state
                .encryption
                .observed(&catalog, report.state, started, self.client)
                .await?;
            if !Arc::ptr_eq(&current, &catalog) || report.resolution != resolution {
                // The catalog or the session moved: analyze again, so no
                // parameter is sent under an analysis of an older state.
                catalog = current;
                resolution = report.resolution;
                self.state.set_resolution(resolution.clone());
                continue;
            }
            let declared_types: Option<Arc<[Type]>> = declared.map(Arc::from);
            let built = match (inner, &server_types) {
                (Ok(inner), Some(types)) if differs(types, inner.params()) => {
                    // Checked as the server infers it; then prepared as the
                    // caller declares, and checked again.
                    match Statement::build(sql, inner, catalog.clone(), analysis.clone(), None) {
                        Ok(_) => {
                            let typed = self.client.prepare_typed(sql, types).await?;
                            Statement::build(sql, typed, catalog.clone(), analysis, declared_types)
                        }
                        Err(error) => Err(error),
                    }
                }
                (Ok(inner), _) => {
                    Statement::build(sql, inner, catalog.clone(), analysis, declared_types)
                }
                (Err(error), Some(types))
                    if error.code() == Some(&SqlState::INDETERMINATE_DATATYPE)
                        && !analysis.touches_encrypted_table
                        && !has_encrypted_parameter(&analysis) =>
                {
                    // `SELECT $1 IS NULL`: only declared types can type it,
                    // and it touches no encrypted table.
                    let typed = self.client.prepare_typed(sql, types).await?;
                    Statement::build(sql, typed, catalog.clone(), analysis, declared_types)
                }
                (Err(error), _) => return Err(error.into()),
            };
            match built {
                Ok(statement) => {
                    let analysis = &statement.0.analysis;
                    tracing::debug!(
                        parameters = analysis.parameters.len(),
                        encrypted_parameters = analysis
                            .parameters
                            .iter()
                            .filter(|target| matches!(target, ParameterTarget::Encrypted { .. }))
                            .count(),
                        encrypted_tables = ?analysis.encrypted_tables,
                        "aepg statement prepared"
                    );
                    if declared.is_none() {
                        self.state.cache(statement.clone());
                    }
                    return Ok(statement);
                }
                Err(Error::ResultMismatch {
                    problem: ResultProblem::ColumnCount { .. },
                }) if !reloaded => {
                    // A table changed shape since the catalog was loaded
                    // (a column added or dropped): load it again, once.
                    catalog = self
                        .state
                        .encryption
                        .reload_tables(self.client, &catalog, Duration::ZERO)
                        .await?;
                    reloaded = true;
                }
                Err(Error::ParameterCrossCheck {
                    problem: CrossCheckProblem::UnmappedCiphertext,
                    ..
                }) if !reloaded => {
                    // The server types a parameter aepg.ciphertext where the
                    // catalog knows no encrypted column: a column retyped
                    // since the load. Load again once (at most once a second
                    // per pool) before refusing.
                    catalog = self
                        .state
                        .encryption
                        .reload_tables(self.client, &catalog, REFUSED_RELOAD_INTERVAL)
                        .await?;
                    reloaded = true;
                }
                Err(error) => return Err(error),
            }
        }
        Err(CatalogError::Unsettled.into())
    }

    /// Analyzes `sql` under `catalog` and the session's name resolution.
    /// Tables without encrypted columns are read from the server when a
    /// statement first names them (`look_up_tables`): an analysis that
    /// looked for one not read yet is provisional, and runs again once
    /// they are read, for as long as each run names tables the last did
    /// not reach (the analysis of a text stops at its first refused
    /// statement), at most [`MAX_TABLE_LOOKUPS`] times.
    ///
    /// # Errors
    /// The outer error: reading the tables failed. The inner one: the
    /// analysis refuses the statement.
    async fn analyze(
        &self,
        sql: &str,
        catalog: &Catalog,
        resolution: &NameResolution,
    ) -> Result<Result<StatementAnalysis, Refusal>, Error> {
        let mut asked: Vec<TableName> = Vec::new();
        let mut lookups = 0;
        loop {
            let view = catalog.schema_view(&resolution.search_path, &resolution.temp_tables);
            let analyzed = {
                let _span = tracing::trace_span!("aepg.analyze").entered();
                analyze(sql, &view)
            };
            let missing: Vec<TableName> = view
                .missing()
                .into_iter()
                .filter(|name| !asked.contains(name))
                .collect();
            if missing.is_empty() || lookups == MAX_TABLE_LOOKUPS {
                // What is still missing (asked already, and dropped from
                // the cache meanwhile) resolves as no table: refused where
                // it matters, as an unknown name.
                return Ok(analyzed);
            }
            asked.extend(missing.iter().cloned());
            lookups += 1;
            look_up_tables(self.client, catalog, &missing)
                .instrument(tracing::debug_span!("aepg.catalog.look_up_tables"))
                .await?;
        }
    }

    /// Before refusing a statement: reads the catalog generation and the
    /// session (unless `confirmed` in this call already), and loads the
    /// catalog again if neither moved, as tables may have changed shape
    /// since it was loaded. Returns what to analyze against next.
    async fn look_again(
        &self,
        catalog: &Arc<Catalog>,
        resolution: &NameResolution,
        confirmed: bool,
    ) -> Result<(Arc<Catalog>, NameResolution), Error> {
        if !confirmed {
            let started = self.state.encryption.read_start();
            let report = self.query_session().await?;
            let current = self
                .state
                .encryption
                .observed(catalog, report.state, started, self.client)
                .await?;
            if !Arc::ptr_eq(&current, catalog) || report.resolution != *resolution {
                self.state.set_resolution(report.resolution.clone());
                return Ok((current, report.resolution));
            }
        }
        let current = self
            .state
            .encryption
            .reload_tables(self.client, catalog, REFUSED_RELOAD_INTERVAL)
            .await?;
        Ok((current, resolution.clone()))
    }

    /// The statement to run: a text prepared (or found in the cache), or a
    /// prepared statement analyzed again if the catalog changed since; and
    /// whether it was prepared just now.
    async fn resolve(
        &self,
        statement: &(impl ToStatement + ?Sized),
    ) -> Result<(Statement, bool), Error> {
        let (statement, fresh) = match statement.__convert() {
            ToStatementType::Text(sql) => self.prepared(sql).await?,
            ToStatementType::Statement(statement) => {
                let catalog = self.catalog().await?;
                if Arc::ptr_eq(&statement.0.catalog, &catalog) && !statement.is_invalidated() {
                    (statement.clone(), false)
                } else if let Some(declared) = &statement.0.declared {
                    // Prepared again as its caller declared it.
                    let sql = &statement.0.sql;
                    (
                        self.prepare_afresh(sql, catalog, Some(declared)).await?,
                        true,
                    )
                } else {
                    self.prepared(&statement.0.sql).await?
                }
            }
        };
        if fresh {
            return Ok((statement, true));
        }
        self.current(statement).await
    }

    /// Whether `error`, from running `statement` as cached, says the server
    /// no longer runs it as prepared: it was deallocated (`DEALLOCATE ALL`,
    /// `DISCARD ALL` sent past aepg: SQLSTATE 26000), or a table it reads
    /// changed shape ("cached plan must not change result type": 0A000).
    /// Both come at bind time, before the statement did anything, and any
    /// failed statement outside a transaction block is rolled back; so
    /// there it is prepared again (with a fresh analysis) and run once more.
    /// Inside a block the error has aborted the transaction: it is returned,
    /// and the statement is prepared again at its next use.
    fn retries(&self, statement: &Statement, error: &tokio_postgres::Error) -> bool {
        let Some(db) = error.as_db_error() else {
            return false;
        };
        let deallocated = deallocated(error);
        // The routine names the check that raised it, in any language the
        // server speaks; any other 0A000 may come from what the statement
        // ran (a trigger, a function), after it did things.
        let replanned = *db.code() == SqlState::FEATURE_NOT_SUPPORTED
            && db.routine() == Some("RevalidateCachedQuery");
        if !deallocated && !replanned {
            return false;
        }
        statement.invalidate();
        self.state.uncache(statement);
        if deallocated {
            // The prepared session read went with it.
            self.state.forget_session_read();
        }
        // (tokio-postgres's own statements for looking up types went too,
        // and it cannot prepare them again: its type cache is kept, so the
        // types it has seen, `aepg.ciphertext` among them, still resolve.)
        !self.in_transaction()
    }

    /// `statement`'s text analyzed and prepared again, against the current catalog.
    async fn prepare_again(&self, statement: &Statement) -> Result<Statement, Error> {
        let catalog = self.catalog().await?;
        self.prepare_afresh(&statement.0.sql, catalog, statement.0.declared.as_deref())
            .await
    }

    /// A client that cannot hear catalog announcements (its connection is
    /// not driven by aepg, or it is inside a transaction, where PostgreSQL
    /// holds notifications back until the end) prepares a statement again
    /// before it sends plaintext parameters under an analysis made earlier:
    /// a column encrypted since must not receive them. The server types the
    /// parameters against its tables as they are now (which a transaction
    /// snapshot does not hide), and the catalog generation is read in the
    /// same round trip. Clients that hear announcements skip it, as do
    /// statements that send no plaintext.
    async fn current(&self, statement: Statement) -> Result<(Statement, bool), Error> {
        let sends_plaintext = statement
            .0
            .analysis
            .parameters
            .iter()
            .any(|target| matches!(target, ParameterTarget::Plaintext));
        if self.hears_announcements() || !sends_plaintext {
            return Ok((statement, false));
        }
        let statement = self
            .prepare_afresh(
                &statement.0.sql,
                statement.0.catalog.clone(),
                statement.0.declared.as_deref(),
            )
            .await?;
        Ok((statement, true))
    }

    /// Whether announcements of catalog changes reach this connection now:
    /// it is driven by aepg and listens, and is not inside a transaction
    /// (PostgreSQL delivers notifications between transactions).
    fn hears_announcements(&self) -> bool {
        !self.in_transaction() && self.state.hears_announcements()
    }

    /// Inside a transaction: an aepg [`Transaction`](super::Transaction),
    /// or a block opened with `BEGIN` text.
    /// Inside a transaction: an aepg [`Transaction`](super::Transaction),
    /// or a block opened with `BEGIN` text.
    pub(super) fn in_transaction(&self) -> bool {
        self.in_transaction || self.state.in_text_transaction()
    }

    /// Encrypts the parameters bound for encrypted columns, in an
    /// `aepg.encrypt` span.
    async fn bind<'p>(
        &self,
        statement: &Statement,
        params: &'p [&'p (dyn ToSql + Sync)],
    ) -> Result<Vec<BoundParameter<'p>>, Error> {
        let span = tracing::trace_span!("aepg.encrypt", parameters = params.len());
        self.bind_parameters(statement, params)
            .instrument(span)
            .await
    }

    async fn bind_parameters<'p>(
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
                Some(ParameterTarget::Encrypted {
                    column,
                    encryption,
                    usage,
                }) => {
                    let (setting, cipher) = self
                        .column_cipher(&prepared.catalog, column, encryption)
                        .await?;
                    bound.push(encrypt_parameter(
                        *value,
                        index + 1,
                        column,
                        &setting,
                        *usage,
                        &cipher,
                    )?);
                    tracing::trace!(
                        parameter = index + 1,
                        column = %column,
                        setting = %setting.name,
                        "aepg parameter encrypted"
                    );
                }
                _ => bound.push(BoundParameter::Plain(*value)),
            }
        }
        Ok(bound)
    }

    /// The setting and cipher that values for encrypted `column` are
    /// encrypted with, under `catalog`.
    pub(crate) async fn column_cipher(
        &self,
        catalog: &Catalog,
        column: &ColumnName,
        encryption: &ColumnEncryption,
    ) -> Result<(Arc<EncryptionSetting>, Arc<CellCipher>), Error> {
        let setting = catalog
            .settings()
            .get(&encryption.setting_id)
            .cloned()
            .ok_or_else(|| CatalogError::NotFound {
                object: crate::catalog::CatalogObject::EncryptionSetting,
                name: encryption.setting_name.to_string(),
            })?;
        let cipher = self
            .state
            .encryption
            .cipher(catalog, setting.key_id)
            .await
            .map_err(|source| Error::Encrypt {
                column: Box::new(column.clone()),
                source,
            })?;
        Ok((setting, cipher))
    }

    /// After running `statement`: forgets session state if it may have
    /// changed it.
    fn after_execution(&self, statement: &Statement) {
        self.state.statement_ran();
        self.after_analyzed(&statement.0.analysis);
    }

    /// After running text analyzed as `analysis`: forgets session state if
    /// it may have changed it, and notes a transaction block it opened or
    /// closed.
    fn after_analyzed(&self, analysis: &StatementAnalysis) {
        if let Some(open) = analysis.transaction_block {
            self.state.set_text_transaction(open);
        }
        if analysis.changes_session {
            self.state.session_changed();
        }
    }

    /// After session or transaction control ran: forgets what it may have
    /// changed.
    fn after_control(&self, control: ControlText) {
        if let Some(open) = control.block_open_after {
            self.state.set_text_transaction(open);
        }
        if control.block_open_after == Some(true) {
            // Session control takes no snapshot: the block has none yet.
            self.state.transaction_started();
        }
        match control.effect {
            SessionControl::Keeps => {}
            SessionControl::EndsTransaction => self.state.transaction_ended(),
            SessionControl::Changes => self.state.session_changed(),
        }
    }

    /// Runs a statement and streams its decrypted rows: the path every
    /// row-returning method takes.
    pub(crate) async fn query_raw(
        &self,
        statement: &(impl ToStatement + ?Sized),
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<RowStream<'a>, Error> {
        if let Some((sql, control)) = control_text(statement, params) {
            let rows = self.client.query_raw(sql, params.iter().copied()).await;
            self.after_control(control);
            let rows = rows?.map_err(Error::from).map_ok(Row::plaintext);
            return Ok(RowStream {
                inner: Box::pin(rows),
            });
        }
        let (statement, rows) = self.run(statement, params).await?;
        // Decrypted batch by batch as the rows arrive, as a COPY's are: the
        // column keys looked up once a batch, the batch's values in shared
        // buffers (a row cost an allocation of its own and a key lookup).
        let decryption = BatchDecryption::of(&statement.0, self.state.encryption.clone());
        Ok(RowStream {
            inner: Box::pin(decryption.decrypt(rows, Source::Query)),
        })
    }

    pub(crate) async fn query(
        &self,
        statement: &(impl ToStatement + ?Sized),
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, Error> {
        self.query_raw(statement, params).await?.try_collect().await
    }

    pub(crate) async fn query_opt(
        &self,
        statement: &(impl ToStatement + ?Sized),
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, Error> {
        self.at_most_one(statement, params, RowCountExpectation::AtMostOne)
            .await
    }

    pub(crate) async fn query_one(
        &self,
        statement: &(impl ToStatement + ?Sized),
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, Error> {
        self.at_most_one(statement, params, RowCountExpectation::ExactlyOne)
            .await?
            .ok_or(Error::RowCount {
                expected: RowCountExpectation::ExactlyOne,
                got: 0,
            })
    }

    async fn at_most_one(
        &self,
        statement: &(impl ToStatement + ?Sized),
        params: &[&(dyn ToSql + Sync)],
        expected: RowCountExpectation,
    ) -> Result<Option<Row>, Error> {
        let mut rows = self.query_raw(statement, params).await?;
        let Some(first) = rows.next().await.transpose()? else {
            // The stream is over: polling it again would find the
            // response channel closed.
            return Ok(None);
        };
        if rows.next().await.transpose()?.is_some() {
            return Err(Error::RowCount { expected, got: 2 });
        }
        Ok(Some(first))
    }

    pub(crate) async fn execute(
        &self,
        statement: &(impl ToStatement + ?Sized),
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, Error> {
        if let Some((sql, control)) = control_text(statement, params) {
            let affected = self.client.execute(sql, params).await;
            self.after_control(control);
            return Ok(affected?);
        }
        // As tokio-postgres's `execute`: the rows are read and dropped, the
        // count comes with the end of the stream.
        let (_, rows) = self.run(statement, params).await?;
        futures_util::pin_mut!(rows);
        while rows.as_mut().try_next().await?.is_some() {}
        Ok(rows.rows_affected().unwrap_or(0))
    }

    /// Resolves `statement`, encrypts its parameters and runs it: the one
    /// path of every statement with parameters. A cached statement the
    /// server no longer runs as prepared is prepared again and run once
    /// more ([`retries`](Self::retries)).
    async fn run(
        &self,
        statement: &(impl ToStatement + ?Sized),
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<(Statement, tokio_postgres::RowStream), Error> {
        let (mut statement, mut fresh) = self.resolve(statement).await?;
        loop {
            let bound = self.bind(&statement, params).await?;
            let outcome = self
                .client
                .query_raw(&statement.0.inner, as_params(&bound))
                .await;
            drop(bound);
            self.after_execution(&statement);
            match outcome {
                Err(error) if !fresh && self.retries(&statement, &error) => {
                    statement = self.prepare_again(&statement).await?;
                    fresh = true;
                }
                outcome => return Ok((statement, outcome?)),
            }
        }
    }

    /// Runs text with the simple query protocol, checked as
    /// [`simple_text`](Self::simple_text) says.
    pub(crate) async fn batch_execute(&self, sql: &str) -> Result<(), Error> {
        if let Some(control) = session_control(sql) {
            let result = self.client.batch_execute(sql).await;
            self.after_control(control);
            return Ok(result?);
        }
        let analysis = self.simple_text(sql).await?;
        let result = self.client.batch_execute(sql).await;
        self.state.statement_ran();
        self.after_analyzed(&analysis);
        Ok(result?)
    }

    /// Runs text with the simple query protocol and returns its messages,
    /// values as text (tokio-postgres's `simple_query`). aepg cannot
    /// decrypt text results, so text that touches a table with encrypted
    /// columns is refused; otherwise it is analyzed and checked as
    /// [`batch_execute`](Self::batch_execute) text is.
    pub(crate) async fn simple_query(
        &self,
        sql: &str,
    ) -> Result<Vec<tokio_postgres::SimpleQueryMessage>, Error> {
        if let Some(control) = session_control(sql) {
            let result = self.client.simple_query(sql).await;
            self.after_control(control);
            return Ok(result?);
        }
        let analysis = self.simple_text(sql).await?;
        if let Some(table) = analysis.encrypted_tables.first() {
            return Err(Error::TextResults {
                table: Box::new(table.clone()),
            });
        }
        let result = self.client.simple_query(sql).await;
        self.state.statement_ran();
        self.after_analyzed(&analysis);
        Ok(result?)
    }

    /// Analyzes text for the simple query protocol, which cannot carry
    /// parameters: anything it would store into or compare with an
    /// encrypted column is a literal and is refused. Its literals go to the
    /// server with the text, so unless this client hears catalog
    /// announcements, the catalog generation and the session are checked
    /// first.
    async fn simple_text(&self, sql: &str) -> Result<StatementAnalysis, Error> {
        let mut catalog = self.catalog().await?;
        let mut resolution = self.resolution().await?;
        if !self.hears_announcements() {
            let started = self.state.encryption.read_start();
            let report = self.query_session().await?;
            catalog = self
                .state
                .encryption
                .observed(&catalog, report.state, started, self.client)
                .await?;
            resolution = report.resolution;
            self.state.set_resolution(resolution.clone());
        }
        let analysis = self.analyze(sql, &catalog, &resolution).await??;
        if let Some((index, column)) =
            analysis
                .parameters
                .iter()
                .enumerate()
                .find_map(|(index, target)| match target {
                    ParameterTarget::Encrypted { column, .. } => Some((index, column)),
                    _ => None,
                })
        {
            return Err(Error::ParameterInBatch {
                number: index + 1,
                column: Box::new(column.clone()),
            });
        }
        Ok(analysis)
    }
}

/// The text of `statement` when it is session or transaction control
/// without parameters (`SET`, `SHOW`, `BEGIN`, `COMMIT`, …, see
/// [`session_control`]). It names no relation and binds nothing, so it is
/// sent as written, without the round trip that reads the catalog
/// generation first: that read would take the transaction's snapshot, after
/// which the server refuses `SET TRANSACTION ISOLATION LEVEL`.
fn control_text<'s>(
    statement: &'s (impl ToStatement + ?Sized),
    params: &[&(dyn ToSql + Sync)],
) -> Option<(&'s str, ControlText)> {
    match statement.__convert() {
        ToStatementType::Text(sql) if params.is_empty() => {
            session_control(sql).map(|control| (sql, control))
        }
        _ => None,
    }
}

/// Whether `error` says a prepared statement is gone from the server
/// (SQLSTATE 26000: `DEALLOCATE` or `DISCARD ALL` sent past aepg).
fn deallocated(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&SqlState::INVALID_SQL_STATEMENT_NAME)
}

fn as_params<'b>(bound: &'b [BoundParameter<'_>]) -> Vec<&'b (dyn ToSql + Sync)> {
    bound
        .iter()
        .map(|parameter| parameter as &(dyn ToSql + Sync))
        .collect()
}

/// The types to declare to the server for a statement whose caller declared
/// `declared`: the caller's, except for parameters bound for encrypted
/// columns, which must be declared as the column's plaintext type (its
/// array type for `= ANY($n)` and `unnest($n)`), or left unspecified: a
/// cell is left for the server to type as ciphertext, an array of cells is
/// declared `bytea[]`.
fn server_types(
    analysis: &StatementAnalysis,
    catalog: &Catalog,
    declared: &[Type],
) -> Result<Vec<Type>, Error> {
    declared
        .iter()
        .enumerate()
        .map(|(index, ty)| match analysis.parameters.get(index) {
            Some(ParameterTarget::Encrypted {
                column,
                encryption,
                usage,
            }) => {
                let setting = catalog.settings().get(&encryption.setting_id);
                let expected = setting.and_then(|setting| {
                    if usage.is_array() {
                        setting.sql_array_type()
                    } else {
                        setting.sql_type()
                    }
                });
                // A named type (enum, citext) has another oid in every
                // database: it is matched by name.
                let matches = expected.is_some_and(|expected| match expected.oid() {
                    0 => ty.name() == expected.name(),
                    oid => ty.oid() == oid,
                });
                if ty.oid() != 0 && !matches {
                    return Err(Error::ParameterType {
                        number: index + 1,
                        column: Box::new(column.clone()),
                        sql_type: setting.map_or_else(String::new, |setting| setting.type_name()),
                        problem: ParameterProblem::DeclaredType {
                            declared: ty.name().to_owned(),
                        },
                    });
                }
                Ok(cell_declaration(*usage))
            }
            _ => Ok(ty.clone()),
        })
        .collect()
}

/// Whether any parameter is bound for an encrypted column.
fn has_encrypted_parameter(analysis: &StatementAnalysis) -> bool {
    analysis
        .parameters
        .iter()
        .any(|target| matches!(target, ParameterTarget::Encrypted { .. }))
}

/// The types to declare when the caller declares none: each encrypted
/// parameter's [`cell_declaration`], unspecified for the rest. Empty (all
/// unspecified) when no encrypted parameter is an array of cells.
fn cell_array_types(analysis: &StatementAnalysis) -> Vec<Type> {
    let is_array = |target: &ParameterTarget| matches!(target, ParameterTarget::Encrypted { usage, .. } if usage.is_array());
    if !analysis.parameters.iter().any(is_array) {
        return Vec::new();
    }
    analysis
        .parameters
        .iter()
        .map(|target| match target {
            ParameterTarget::Encrypted { usage, .. } => cell_declaration(*usage),
            _ => unspecified_type(),
        })
        .collect()
}

/// What a parameter bound for an encrypted column is declared as: an
/// array of cells `bytea[]` (`unnest($n)` gives the server nothing to infer
/// its type from, and `= ANY($n)` compares cells as `bytea` either way); a
/// cell is left for the server to type as ciphertext.
fn cell_declaration(usage: ParameterUse) -> Type {
    if usage.is_array() {
        Type::BYTEA_ARRAY
    } else {
        unspecified_type()
    }
}

/// The type the server is left to infer.
fn unspecified_type() -> Type {
    Type::new(
        "unspecified".to_owned(),
        0,
        Kind::Pseudo,
        "pg_catalog".to_owned(),
    )
}

/// Whether declared types ask for other types than the server inferred
/// (an unspecified declaration, oid 0, asks for nothing).
fn differs(declared: &[Type], inferred: &[Type]) -> bool {
    declared
        .iter()
        .zip(inferred)
        .any(|(declared, inferred)| declared.oid() != 0 && declared != inferred)
}
