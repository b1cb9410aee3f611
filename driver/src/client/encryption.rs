//! What all clients of one pool share: key stores, pins, the verified
//! catalog, what has been seen of the catalog (to refuse rollbacks), and the
//! unwrapped column keys.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use aepg_keystore::KeyStoreRegistry;
use tracing::Instrument;

use crate::catalog::{
    load_catalog, Catalog, CatalogError, PinnedColumn, Pins, CATALOG_STATE_QUERY,
};
use crate::cell::CellCipher;
use crate::error::DecryptError;
use crate::record::{CatalogId, RecordError};
use crate::support::{first_ok, generation_from_sql, lock, read, write};
use crate::Error;

/// Default time a loaded catalog is used before the server's catalog
/// generation is checked again (a full reload follows only if it moved).
pub const DEFAULT_CATALOG_TTL: Duration = Duration::from_secs(60);
/// Default time an unwrapped column key is kept before the key store is asked again.
pub const DEFAULT_KEY_TTL: Duration = Duration::from_secs(2 * 60 * 60);
/// Default time after a failed unwrap during which the key store is not
/// asked for that column key again (see
/// [`EncryptionConfig::key_failure_backoff`]).
pub const DEFAULT_KEY_FAILURE_BACKOFF: Duration = Duration::from_secs(1);
/// Default number of prepared statements each connection keeps.
pub const DEFAULT_STATEMENT_CACHE_CAPACITY: usize = 256;
/// Default `lock_timeout` of a catalog check (see
/// [`EncryptionConfig::catalog_refresh_timeout`]).
pub const DEFAULT_CATALOG_REFRESH_TIMEOUT: Duration = Duration::from_secs(2);
/// A whole check or load of the catalog is bounded by this many times the
/// refresh timeout.
pub const LOAD_TIMEOUT_FACTOR: u32 = 5;
/// Default age past which a catalog that could not be checked again is no
/// longer used.
pub const DEFAULT_CATALOG_MAX_STALENESS: Duration = Duration::from_secs(2 * 60);
/// Default time a statement waits for the final swap of a column migration
/// on a table it uses (see [`EncryptionConfig::migration_swap_wait`]).
pub const DEFAULT_MIGRATION_SWAP_WAIT: Duration = Duration::from_secs(30);

/// How clients encrypt: the key stores, the pins, the cache lifetimes.
#[derive(Clone, Debug)]
pub struct EncryptionConfig {
    registry: KeyStoreRegistry,
    pins: Pins,
    catalog_ttl: Duration,
    key_ttl: Duration,
    key_failure_backoff: Duration,
    statement_cache_capacity: usize,
    catalog_refresh_timeout: Duration,
    catalog_max_staleness: Duration,
    migration_swap_wait: Duration,
}

impl EncryptionConfig {
    /// Encryption with the master keys of `registry`, no pins, default TTLs.
    pub fn new(registry: KeyStoreRegistry) -> Self {
        Self {
            registry,
            pins: Pins::new(),
            catalog_ttl: DEFAULT_CATALOG_TTL,
            key_ttl: DEFAULT_KEY_TTL,
            key_failure_backoff: DEFAULT_KEY_FAILURE_BACKOFF,
            statement_cache_capacity: DEFAULT_STATEMENT_CACHE_CAPACITY,
            catalog_refresh_timeout: DEFAULT_CATALOG_REFRESH_TIMEOUT,
            catalog_max_staleness: DEFAULT_CATALOG_MAX_STALENESS,
            migration_swap_wait: DEFAULT_MIGRATION_SWAP_WAIT,
        }
    }

    /// Requires `pin` to be encrypted as pinned whenever the catalog is loaded.
    pub fn pin(mut self, pin: PinnedColumn) -> Self {
        self.pins = self.pins.column(pin);
        self
    }

    /// Adds `pins` (typically a pin file exported from the trusted catalog
    /// and embedded in the application: [`Pins::from_json`]), checked at
    /// every load — also the first one, before any generation was seen.
    pub fn pins(mut self, pins: Pins) -> Self {
        self.pins = self.pins.merge(pins);
        self
    }

    /// Requires the database's catalog to be the one with identity `id`
    /// ([`Catalog::id`]): a catalog replaced wholesale by another database's
    /// (whose records would verify under a shared master key) is then refused.
    pub fn expect_catalog(mut self, id: CatalogId) -> Self {
        self.pins = self.pins.catalog(id);
        self
    }

    /// How long a loaded catalog is used before the server's catalog
    /// generation is checked again (default one minute). Changes announced
    /// on the catalog channel are noticed sooner, by clients whose
    /// connection aepg drives ([`crate::connect`]).
    pub fn catalog_ttl(mut self, ttl: Duration) -> Self {
        self.catalog_ttl = ttl;
        self
    }

    /// How long an unwrapped column key is kept (default 2 h; zero = ask the
    /// key store on every use, every cell included, except within the
    /// [failure backoff](Self::key_failure_backoff) of a failed ask). Revoking a master key
    /// cuts readers off within this time, plus the time of a result being
    /// read: one result stream (a query's rows, a `COPY`'s) looks each key
    /// up once, when its first cell needs it, and keeps it to its end.
    pub fn key_ttl(mut self, ttl: Duration) -> Self {
        self.key_ttl = ttl;
        self
    }

    /// How long after a column key's unwrap failed the key store is not
    /// asked for that key again (default 1 s; zero = ask on every use):
    /// meanwhile every use of the key fails at once with that failure
    /// ([`DecryptError::KeyUnavailable`]). A statement's first run asks
    /// once, not once ahead of its run and again for its cells; the
    /// connections of a pool waiting for an unwrap that fails are answered
    /// by its failure (those that stop waiting for it, after 2 s, ask on
    /// their own); and a store that recovers is used again at most this
    /// long after. A success, or a new catalog, forgets the failure.
    pub fn key_failure_backoff(mut self, backoff: Duration) -> Self {
        self.key_failure_backoff = backoff;
        self
    }

    /// How many prepared statements each connection keeps (default 256;
    /// zero = none, every execution prepares its text again). The least
    /// recently used one is closed on the server when a new text needs
    /// room. Applications that build many distinct texts (literals in the
    /// text, `IN` lists of varying length) stay bounded on both sides.
    pub fn statement_cache_capacity(mut self, capacity: usize) -> Self {
        self.statement_cache_capacity = capacity;
        self
    }

    /// How long a check of the catalog may wait for a lock on a catalog
    /// table (default 2 s): outside a transaction block the check runs
    /// under this `lock_timeout`, so a lock fails it instead of stalling the
    /// connection. A whole check, with the load it may need (which reads
    /// every catalog table and verifies every record), is bounded by
    /// [`LOAD_TIMEOUT_FACTOR`] times as long. Zero sets no bound at all.
    ///
    /// A bound that runs out drops aepg's wait, not the server's query: a
    /// connection that stalled stays behind it. The bounds use Tokio's
    /// timer, so the runtime needs it enabled (`enable_time`, or
    /// `enable_all` as `#[tokio::main]` does).
    pub fn catalog_refresh_timeout(mut self, timeout: Duration) -> Self {
        self.catalog_refresh_timeout = timeout;
        self
    }

    /// How old the verified catalog may grow while checks of it fail or
    /// time out (default two minutes; never less than the TTL, and nothing
    /// when the TTL is zero). Until then, when only the
    /// [`catalog_ttl`](Self::catalog_ttl) ran out, one client at a time
    /// checks the catalog and the others go on with the verified one; a
    /// failed check is logged and leaves it in place. Past it, every
    /// statement waits for a check and fails with its error. A change the
    /// server announced or reported is never waited out: statements wait for
    /// the new catalog.
    ///
    /// A server that silences announcements and fails every check keeps
    /// clients on their catalog this long (instead of one TTL): a column
    /// encrypted meanwhile is noticed only then by statements already
    /// cached. Set it to the TTL to give up no time for availability.
    pub fn catalog_max_staleness(mut self, age: Duration) -> Self {
        self.catalog_max_staleness = age;
        self
    }

    /// How long a statement on a table waits while a column of it is in the
    /// final swap of an in-place migration (`aepg column encrypt` or
    /// `decrypt`; default 30 s). Outside a transaction block the statement
    /// waits for the swap, then runs under the new catalog; inside one, or
    /// past this time, it is refused with an error that says to retry.
    pub fn migration_swap_wait(mut self, wait: Duration) -> Self {
        self.migration_swap_wait = wait;
        self
    }
}

impl EncryptionConfig {
    /// The bound on a whole check or load of the catalog (none when the
    /// refresh timeout is zero).
    fn load_timeout(&self) -> Option<Duration> {
        Some(self.catalog_refresh_timeout * LOAD_TIMEOUT_FACTOR).filter(|bound| !bound.is_zero())
    }
}

/// How long a client waits for another's first load of the catalog before
/// it loads on its own connection.
const FIRST_LOAD_WAIT: Duration = Duration::from_secs(2);

/// How a statement's connection may check the catalog.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CheckContext {
    /// Some statement ran in the current transaction, so a repeatable-read
    /// snapshot may predate the latest change.
    pub(crate) snapshot_may_be_old: bool,
    /// Inside a transaction block: the check must not set `lock_timeout`
    /// (it would outlive the check) nor fail on a lock (it would abort the
    /// application's transaction).
    pub(crate) in_block: bool,
}

impl CheckContext {
    /// For a connection aepg knows nothing of.
    const UNKNOWN: Self = Self {
        snapshot_may_be_old: true,
        in_block: true,
    };
}

/// Why a check of the catalog failed: before anything was learned of the
/// server's catalog (it could not be read), or after.
enum CheckError {
    Unread(Error),
    Failed(Error),
}

impl From<CheckError> for Error {
    fn from(error: CheckError) -> Self {
        match error {
            CheckError::Unread(error) | CheckError::Failed(error) => error,
        }
    }
}

/// The claim on the one catalog check that runs while only the TTL ran
/// out, released when dropped (also when the statement is abandoned).
struct RefreshClaim<'a>(&'a AtomicBool);

impl<'a> RefreshClaim<'a> {
    fn take(flag: &'a AtomicBool) -> Option<Self> {
        flag.compare_exchange(false, true, Ordering::SeqCst, Ordering::SeqCst)
            .ok()
            .map(|_| Self(flag))
    }
}

impl Drop for RefreshClaim<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::SeqCst);
    }
}

struct Current {
    catalog: Arc<Catalog>,
    checked_at: Instant,
    loaded_at: Instant,
}

/// What the server reports of its catalog, and whether the report comes
/// from a transaction snapshot that may predate the latest change.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ServerState {
    pub(crate) catalog: CatalogId,
    pub(crate) generation: u64,
    /// Read inside a repeatable-read or serializable transaction, after its
    /// first snapshot was taken: what it shows may be older than what is
    /// committed. (The server tells a transaction's first statement from
    /// the others only by time, and `BEGIN` counts; the connection, which
    /// knows whether anything ran since, narrows it down.)
    pub(crate) snapshot_bound: bool,
}

impl ServerState {
    /// Reads the state with [`CATALOG_STATE_QUERY`].
    pub(crate) async fn read(client: &tokio_postgres::Client) -> Result<Self, Error> {
        let row = client.query_typed_one(CATALOG_STATE_QUERY, &[]).await?;
        Ok(Self {
            catalog: CatalogId::from_slice(row.try_get(0)?)?,
            generation: generation_from_sql(row.try_get(1)?)?,
            snapshot_bound: row.try_get(2)?,
        })
    }

    /// Reads the state outside a transaction block, waiting at most
    /// `lock_timeout` for a lock on any catalog table: one simple-query
    /// message runs as one implicit transaction, so `SET LOCAL` ends with
    /// it, and the probe names every catalog table, so a table locked
    /// against readers fails the read instead of stalling the later load.
    async fn read_guarded(
        client: &tokio_postgres::Client,
        lock_timeout: Duration,
    ) -> Result<Self, Error> {
        let milliseconds = lock_timeout.as_millis().clamp(1, i32::MAX as u128);
        let sql = format!("SET LOCAL lock_timeout = {milliseconds}; {CATALOG_STATE_PROBE}");
        let messages = client.simple_query(&sql).await.map_err(|error| {
            if error.code() == Some(&tokio_postgres::error::SqlState::LOCK_NOT_AVAILABLE) {
                Error::from(CatalogError::RefreshTimedOut {
                    step: "checked",
                    timeout: lock_timeout,
                })
            } else {
                error.into()
            }
        })?;
        let malformed = || CatalogError::MalformedRow {
            row: "aepg.catalog_version".to_owned(),
            reason: "its identity or generation cannot be read".to_owned(),
        };
        let rows: Vec<_> = messages
            .iter()
            .filter_map(|message| match message {
                tokio_postgres::SimpleQueryMessage::Row(row) => Some(row),
                _ => None,
            })
            .collect();
        let row = match rows.as_slice() {
            [] => return Err(CatalogError::NotInstalled.into()),
            [row] => row,
            _ => return Err(malformed().into()),
        };
        let id = hex::decode(row.get(0).ok_or_else(malformed)?).map_err(|_| malformed())?;
        let generation: i64 = row
            .get(1)
            .and_then(|text| text.parse().ok())
            .ok_or_else(malformed)?;
        Ok(Self {
            catalog: CatalogId::from_slice(&id)?,
            generation: generation_from_sql(generation)?,
            snapshot_bound: false,
        })
    }
}

/// The catalog's identity (hex) and generation, as a probe of every table
/// of the catalog: reading it takes each table's lock a load will need.
const CATALOG_STATE_PROBE: &str = "SELECT pg_catalog.encode(v.instance_id, 'hex'), v.generation \
     FROM aepg.catalog_version v WHERE NOT EXISTS (SELECT FROM aepg.master_keys, aepg.manifests, \
     aepg.column_keys, aepg.column_key_values, aepg.encryption_settings, aepg.column_assignments \
     WHERE false)";

/// The highest of everything seen of the catalog: a later load may only
/// move forward from it.
#[derive(Default)]
struct Seen {
    catalog: Option<CatalogId>,
    generation: u64,
    manifests: BTreeMap<String, u64>,
}

/// The encryption state shared by every client of one pool or configuration.
///
/// Create one with [`Encryption::new`] and hand it to each
/// [`Client`](crate::Client): the catalog is then loaded and verified once,
/// not once per connection, column keys are unwrapped once per TTL, and a
/// rollback of the catalog seen by any client is refused by all.
///
/// No lock is held across a query once a catalog is loaded: each client
/// checks and loads on its own connection (a load may be duplicated under
/// contention), so one stalled connection never holds up the others. Only
/// the first load is made by one client while the others wait (two seconds
/// at most, then they load on their own): a pool's connections starting at
/// once load it once. When only the catalog TTL ran out,
/// one client checks and the others go on with the verified catalog (see
/// [`EncryptionConfig::catalog_max_staleness`]).
pub struct Encryption {
    config: EncryptionConfig,
    current: RwLock<Option<Current>>,
    /// Raised by every announced change of the catalog.
    announced: AtomicU64,
    /// The announcement the current catalog was last confirmed after: when
    /// it is lower than `announced`, the next statement checks first.
    confirmed: AtomicU64,
    /// The highest generation an announcement named (0 if none named one),
    /// until a check of the server shows it was never reached.
    announced_generation: Mutex<u64>,
    seen: Mutex<Seen>,
    /// The highest generation the server reported outside a transaction
    /// snapshot: a catalog below it is out of date, whatever its TTL says.
    reported_generation: AtomicU64,
    /// Held by the one client checking the catalog because its TTL ran out.
    refreshing: AtomicBool,
    /// Held by the client loading the first catalog.
    first_load: tokio::sync::Mutex<()>,
    /// Why the last check that kept the verified catalog in use failed.
    refresh_failure: Mutex<Option<String>>,
    /// Each column key's last unwrap: the key kept (within the key TTL) or
    /// the failure that answers its uses (within the failure backoff).
    keys: Mutex<HashMap<u32, KeyOutcome>>,
    /// One unwrap at a time per column key: the connections of a pool
    /// starting together ask a remote key store (a vault, an HSM) once, not
    /// once each.
    unwrapping: Mutex<HashMap<u32, Arc<tokio::sync::Mutex<()>>>>,
}

/// How a column key's last unwrap ended.
enum KeyOutcome {
    /// It succeeded `at`: its cipher, while the key TTL lasts (none with a
    /// key TTL of zero, or once it ran out: dropping it wipes the key).
    Unwrapped {
        cipher: Option<Arc<CellCipher>>,
        at: Instant,
    },
    /// It failed `at`: the failure answers the key's uses for the failure
    /// backoff.
    Failed {
        source: Arc<RecordError>,
        at: Instant,
    },
}

impl Encryption {
    /// Shared encryption state for `config`.
    pub fn new(config: EncryptionConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            current: RwLock::new(None),
            announced: AtomicU64::new(0),
            confirmed: AtomicU64::new(0),
            announced_generation: Mutex::new(0),
            seen: Mutex::new(Seen::default()),
            reported_generation: AtomicU64::new(0),
            refreshing: AtomicBool::new(false),
            first_load: tokio::sync::Mutex::new(()),
            refresh_failure: Mutex::new(None),
            keys: Mutex::new(HashMap::new()),
            unwrapping: Mutex::new(HashMap::new()),
        })
    }

    /// The key stores.
    pub fn registry(&self) -> &KeyStoreRegistry {
        &self.config.registry
    }

    /// How many prepared statements each connection keeps.
    pub(crate) fn migration_swap_wait(&self) -> Duration {
        self.config.migration_swap_wait
    }

    pub(crate) fn statement_cache_capacity(&self) -> usize {
        self.config.statement_cache_capacity
    }

    /// The catalog to analyze against: the loaded one while it is fresh
    /// (within the TTL, no change announced since it was confirmed);
    /// otherwise the server's catalog generation is checked through
    /// `client`, and the catalog loaded again if it moved.
    ///
    /// # Errors
    /// As [`load_catalog`], and a catalog that was replaced or rolled back.
    pub async fn catalog(&self, client: &tokio_postgres::Client) -> Result<Arc<Catalog>, Error> {
        self.catalog_on(client, CheckContext::UNKNOWN).await
    }

    /// [`catalog`](Self::catalog), through a connection whose transaction
    /// state `context` describes.
    ///
    /// When only the TTL ran out, one client checks (bounded by the refresh
    /// timeout) while the others go on with the verified catalog; a check
    /// that cannot read the server's catalog is logged and leaves the
    /// verified catalog in use until it is older than the staleness limit.
    /// A change announced or reported, or a catalog past that limit, is
    /// checked by every statement, which fails if the check does.
    pub(crate) async fn catalog_on(
        &self,
        client: &tokio_postgres::Client,
        context: CheckContext,
    ) -> Result<Arc<Catalog>, Error> {
        if let Some(catalog) = self.fresh() {
            return Ok(catalog);
        }
        let Some(current) = self.current_catalog() else {
            return self.bounded("loaded", self.first_load(client)).await;
        };
        if !self.may_stay(&current) {
            return self
                .bounded("checked", self.check(client, &current, context))
                .await;
        }
        let Some(_claim) = RefreshClaim::take(&self.refreshing) else {
            // Another client is checking: the verified catalog serves meanwhile.
            return Ok(current);
        };
        let check = self.check(client, &current, context);
        let checked = match self.config.load_timeout() {
            Some(timeout) => match tokio::time::timeout(timeout, check).await {
                Ok(checked) => checked,
                Err(_) => Err(CheckError::Unread(
                    CatalogError::RefreshTimedOut {
                        step: "checked",
                        timeout,
                    }
                    .into(),
                )),
            },
            None => check.await,
        };
        let failure = match checked {
            Ok(catalog) => return Ok(catalog),
            Err(CheckError::Failed(error)) => return Err(error),
            Err(CheckError::Unread(error)) => error,
        };
        if !self.may_stay(&current) {
            // Past the limit meanwhile, or the check learned of a newer
            // catalog before it gave out.
            return Err(failure);
        }
        tracing::warn!(
            generation = current.generation(),
            failure = %failure,
            "aepg could not check the catalog; the verified catalog stays in use"
        );
        *lock(&self.refresh_failure) = Some(failure.to_string());
        Ok(current)
    }

    /// The first load of the pool: one client loads, the others (a pool's
    /// connections all starting at once) wait for it rather than load the
    /// same catalog again — for at most [`FIRST_LOAD_WAIT`]: a loader whose
    /// connection stalled must not hold the others, which then load on
    /// their own connections.
    async fn first_load(
        &self,
        client: &tokio_postgres::Client,
    ) -> Result<Arc<Catalog>, CheckError> {
        let _first = tokio::time::timeout(FIRST_LOAD_WAIT, self.first_load.lock())
            .await
            .ok();
        if let Some(current) = self.current_catalog() {
            return Ok(current);
        }
        self.load(client).await.map_err(CheckError::Failed)
    }

    /// Why the last check of the catalog failed while the verified catalog
    /// stayed in use (a lock on a catalog table, a timeout, a connection
    /// error), until a check succeeds again. For health checks: statements
    /// fail only once the catalog is older than the staleness limit.
    pub fn refresh_failure(&self) -> Option<String> {
        lock(&self.refresh_failure).clone()
    }

    /// Runs a check or load, bounded by the refresh timeout.
    async fn bounded<T>(
        &self,
        step: &'static str,
        work: impl std::future::Future<Output = Result<T, CheckError>>,
    ) -> Result<T, Error> {
        let Some(timeout) = self.config.load_timeout() else {
            return Ok(work.await?);
        };
        match tokio::time::timeout(timeout, work).await {
            Ok(result) => Ok(result?),
            Err(_) => Err(CatalogError::RefreshTimedOut { step, timeout }.into()),
        }
    }

    /// Reads the server's catalog state through `client` (under
    /// `lock_timeout` outside a transaction block) and compares it with
    /// `catalog`, loading the server's catalog if it moved.
    async fn check(
        &self,
        client: &tokio_postgres::Client,
        catalog: &Arc<Catalog>,
        context: CheckContext,
    ) -> Result<Arc<Catalog>, CheckError> {
        let started = self.read_start();
        let lock_timeout = self.config.catalog_refresh_timeout;
        let state = if context.in_block || lock_timeout.is_zero() {
            ServerState::read(client).await
        } else {
            ServerState::read_guarded(client, lock_timeout).await
        };
        let mut state = state.map_err(CheckError::Unread)?;
        state.snapshot_bound &= context.snapshot_may_be_old;
        self.observed(catalog, state, started, client)
            .await
            .map_err(CheckError::Failed)
    }

    /// Whether `catalog` may stay in use while a check of it is pending or
    /// failed: nothing announced or reported a newer one, and it is not
    /// older than the staleness limit.
    fn may_stay(&self, catalog: &Arc<Catalog>) -> bool {
        if self.announced.load(Ordering::SeqCst) > self.confirmed.load(Ordering::SeqCst)
            || catalog.generation() < self.reported_generation.load(Ordering::SeqCst)
        {
            return false;
        }
        if self.config.catalog_ttl.is_zero() {
            // Checked before every statement, by every statement.
            return false;
        }
        let limit = self
            .config
            .catalog_max_staleness
            .max(self.config.catalog_ttl);
        read(&self.current).as_ref().is_some_and(|current| {
            Arc::ptr_eq(&current.catalog, catalog) && current.checked_at.elapsed() < limit
        })
    }

    /// Compares what the server reports of its catalog with `catalog`,
    /// which a statement was analyzed against, read after `started`: the
    /// same catalog (confirmed, unless the report comes from an old
    /// transaction snapshot), or a newer one (loaded through `client`, or
    /// accepted by another client while the read was on its way) that the
    /// statement must be analyzed against again.
    ///
    /// # Errors
    /// A replaced or rolled-back catalog; a change announced during a
    /// repeatable-read transaction, which its snapshot cannot see; as
    /// [`load_catalog`].
    pub(crate) async fn observed(
        &self,
        catalog: &Arc<Catalog>,
        state: ServerState,
        started: ReadStart,
        client: &tokio_postgres::Client,
    ) -> Result<Arc<Catalog>, Error> {
        let announcement = started.announcement;
        // A transaction snapshot's read keeps the rules below; a statement's
        // read that another client's newer catalog overtook is late, not a
        // rollback, and the statement is analyzed again against the newer
        // catalog.
        let overtaken = (!state.snapshot_bound)
            .then(|| self.overtaking(&lock(&self.seen), state.catalog, state.generation, started))
            .flatten();
        if let Some(newer) = overtaken {
            tracing::debug!(
                read = state.generation,
                current = newer.generation(),
                "aepg catalog state read overtaken by a newer catalog"
            );
            return Ok(newer);
        }
        if !state.snapshot_bound {
            self.settle_announcements(announcement, state.generation);
        }
        let current = self.current_catalog().unwrap_or_else(|| catalog.clone());
        if state.snapshot_bound
            && state.catalog == current.id()
            && state.generation <= current.generation()
        {
            // A transaction snapshot showing this catalog or an older one (a
            // snapshot older than the catalog is no rollback): it confirms
            // nothing for the pool. A change announced at a generation
            // neither it nor the current catalog shows is one this
            // transaction cannot see. (An announcement that names no
            // generation, or a lower one, says nothing here: it cannot lock
            // a client that only runs such transactions out.)
            // A generation another client read outside a snapshot counts
            // as announced.
            let announced = (*lock(&self.announced_generation))
                .max(self.reported_generation.load(Ordering::SeqCst));
            if announced > state.generation.max(current.generation()) {
                return Err(CatalogError::ChangedDuringTransaction.into());
            }
            return Ok(current);
        }
        if !state.snapshot_bound
            && state.catalog == catalog.id()
            && state.generation == catalog.generation()
        {
            self.check_seen(state.catalog, state.generation)?;
            self.confirm(catalog, announcement);
            return Ok(catalog.clone());
        }
        self.check_seen(state.catalog, state.generation)?;
        if !state.snapshot_bound {
            // The server's word on its committed catalog: a catalog below
            // it is out of date for every client, whatever its TTL.
            self.reported_generation
                .fetch_max(state.generation, Ordering::SeqCst);
        }
        if current.id() == state.catalog && current.generation() == state.generation {
            return Ok(current);
        }
        self.load(client).await
    }

    /// Loads the catalog again now, for every client sharing this state.
    ///
    /// # Errors
    /// As [`load_catalog`], and a catalog that was replaced or rolled back.
    pub async fn refresh_catalog(
        &self,
        client: &tokio_postgres::Client,
    ) -> Result<Arc<Catalog>, Error> {
        self.bounded("loaded", async {
            self.load(client).await.map_err(CheckError::Failed)
        })
        .await
    }

    /// Loads the catalog again for the tables' shapes, which change
    /// without a new catalog generation (a column added to an encrypted
    /// table), unless a catalog newer than `analyzed` is current already,
    /// or the current one was loaded less than `min_age` ago: a statement
    /// refused under an old catalog looks again before it fails, and a
    /// stream of refused statements must not reload the catalog (and have
    /// every client prepare its statements again) each time.
    ///
    /// # Errors
    /// As [`load_catalog`], and a catalog that was replaced or rolled back.
    pub(crate) async fn reload_tables(
        &self,
        client: &tokio_postgres::Client,
        analyzed: &Arc<Catalog>,
        min_age: Duration,
    ) -> Result<Arc<Catalog>, Error> {
        if let Some(current) = read(&self.current).as_ref() {
            if !Arc::ptr_eq(&current.catalog, analyzed) || current.loaded_at.elapsed() < min_age {
                return Ok(current.catalog.clone());
            }
        }
        self.refresh_catalog(client).await
    }

    /// Notes an announced change of the catalog, to `generation` as the
    /// announcement says (0 if it says none): every client sharing this
    /// state checks the catalog generation before its next statement.
    pub(crate) fn mark_stale(&self, generation: u64) {
        let mut announced_generation = lock(&self.announced_generation);
        *announced_generation = (*announced_generation).max(generation);
        self.announced.fetch_add(1, Ordering::SeqCst);
    }

    /// The server's generation was `generation` when read after
    /// `announcement`: if nothing was announced since, an announced
    /// generation above it was never reached (the server announced what it
    /// did not do), and is forgotten, so it cannot fail snapshot reads
    /// forever.
    fn settle_announcements(&self, announcement: u64, generation: u64) {
        let mut announced_generation = lock(&self.announced_generation);
        if self.announced.load(Ordering::SeqCst) == announcement {
            *announced_generation = (*announced_generation).min(generation);
        }
    }

    /// What this state knows before a state read is sent, to pass to
    /// [`observed`](Self::observed) with the read's answer.
    pub(crate) fn read_start(&self) -> ReadStart {
        ReadStart {
            announcement: self.announced.load(Ordering::SeqCst),
            seen_generation: lock(&self.seen).generation,
        }
    }

    async fn load(&self, client: &tokio_postgres::Client) -> Result<Arc<Catalog>, Error> {
        let started = self.read_start();
        let catalog = load_catalog(client, &self.config.registry, &self.config.pins)
            .instrument(tracing::debug_span!("aepg.catalog.load"))
            .await?;
        tracing::debug!(
            generation = catalog.generation(),
            encrypted_columns = catalog.columns().count(),
            skipped_records = catalog.skipped().len(),
            "aepg catalog loaded and verified"
        );
        // What was seen and what is current change together, under one
        // lock: a late load can neither pass for a rollback nor replace a
        // newer catalog another client stored meanwhile.
        let mut seen = lock(&self.seen);
        if let Some(newer) = self.overtaking(&seen, catalog.id(), catalog.generation(), started) {
            return Ok(newer);
        }
        accept(&mut seen, &catalog)?;
        let now = Instant::now();
        let mut current = write(&self.current);
        // The same catalog loaded again keeps its identity, so no client's
        // statement cache empties for nothing; the tables read on demand
        // under it are read again (a load again is asked for when tables
        // may have changed shape).
        let catalog = match current.as_ref() {
            Some(kept) if kept.catalog.same_as(&catalog) => {
                kept.catalog.looked_up.clear();
                kept.catalog.clone()
            }
            _ => {
                // The new catalog's wrapped values may open where the old
                // ones failed (a master key rotated in): ask again.
                lock(&self.keys).retain(|_, outcome| !matches!(outcome, KeyOutcome::Failed { .. }));
                Arc::new(catalog)
            }
        };
        *current = Some(Current {
            catalog: catalog.clone(),
            checked_at: now,
            loaded_at: now,
        });
        drop(current);
        *lock(&self.refresh_failure) = None;
        drop(seen);
        self.confirmed
            .fetch_max(started.announcement, Ordering::SeqCst);
        Ok(catalog)
    }

    fn check_seen(&self, id: CatalogId, generation: u64) -> Result<(), CatalogError> {
        check_seen(&lock(&self.seen), id, generation)
    }

    /// The current catalog, if a read or load of catalog `id` that shows
    /// `generation` is late rather than rolled back: lower than the
    /// generation seen now, but not lower than the one seen when it began
    /// (`started`), so another client accepted the newer catalog while it
    /// was on its way (the server answered from a snapshot taken before the
    /// change committed). Anything lower than what was seen before it began
    /// is left to [`check_seen`]: a rollback.
    fn overtaking(
        &self,
        seen: &Seen,
        id: CatalogId,
        generation: u64,
        started: ReadStart,
    ) -> Option<Arc<Catalog>> {
        if seen.catalog != Some(id)
            || generation >= seen.generation
            || generation < started.seen_generation
        {
            return None;
        }
        self.current_catalog()
            .filter(|current| current.id() == id)
            .filter(|current| current.generation() >= seen.generation)
    }

    /// `catalog` is the server's current one as of `announcement`: it
    /// stays fresh for another TTL, unless a change was announced since.
    fn confirm(&self, catalog: &Arc<Catalog>, announcement: u64) {
        if let Some(current) = write(&self.current).as_mut() {
            if Arc::ptr_eq(&current.catalog, catalog) {
                current.checked_at = Instant::now();
                self.confirmed.fetch_max(announcement, Ordering::SeqCst);
                *lock(&self.refresh_failure) = None;
            }
        }
    }

    fn current_catalog(&self) -> Option<Arc<Catalog>> {
        read(&self.current)
            .as_ref()
            .map(|current| current.catalog.clone())
    }

    /// The current catalog, if it needs no check yet: within the TTL, and
    /// no change announced since it was last confirmed.
    pub(crate) fn fresh(&self) -> Option<Arc<Catalog>> {
        if self.announced.load(Ordering::SeqCst) > self.confirmed.load(Ordering::SeqCst) {
            return None;
        }
        let reported = self.reported_generation.load(Ordering::SeqCst);
        read(&self.current)
            .as_ref()
            .filter(|current| current.checked_at.elapsed() < self.config.catalog_ttl)
            .filter(|current| current.catalog.generation() >= reported)
            .map(|current| current.catalog.clone())
    }

    /// The cipher of column key `key_id`, unwrapping the key through its
    /// master key's store when it is not cached (or the key TTL is zero).
    ///
    /// # Errors
    /// An unknown key; the key store's refusal for every wrapped value,
    /// now or within the failure backoff.
    pub(crate) async fn cipher(
        &self,
        catalog: &Catalog,
        key_id: u32,
    ) -> Result<Arc<CellCipher>, DecryptError> {
        if let Some(cipher) = self.known_cipher(key_id)? {
            return Ok(cipher);
        }
        // Kept keys are unwrapped once: later callers wait for the first
        // and take what it cached. (With a key TTL of zero nothing is kept,
        // and each call outside the failure backoff asks the store, as
        // configured.)
        let turn = self.keeps_keys().then(|| {
            lock(&self.unwrapping)
                .entry(key_id)
                .or_insert_with(|| Arc::new(tokio::sync::Mutex::new(())))
                .clone()
        });
        // Bounded like the first catalog load: a first unwrap that stalls
        // (a vault retrying) must not queue the others behind it and then
        // behind each other's retries.
        let _turn = match &turn {
            Some(turn) => tokio::time::timeout(FIRST_LOAD_WAIT, turn.lock())
                .await
                .ok(),
            None => None,
        };
        // The unwrap waited for answers, whether it succeeded or failed.
        if let Some(cipher) = self.known_cipher(key_id)? {
            return Ok(cipher);
        }
        let started = Instant::now();
        let values = catalog
            .column_keys
            .get(&key_id)
            .ok_or(DecryptError::Unknown {
                what: format!("column key {key_id}"),
            })?;
        let key = first_ok(
            values,
            || DecryptError::Unknown {
                what: format!("column key {key_id}"),
            },
            |value| async move {
                value
                    .open(&self.config.registry, &catalog.id())
                    .await
                    .map_err(|source: RecordError| DecryptError::KeyUnavailable {
                        key_id,
                        source: Arc::new(source),
                    })
            },
        )
        .instrument(tracing::debug_span!("aepg.key.unwrap", key_id))
        .await;
        let mut keys = lock(&self.keys);
        match key {
            Ok(key) => {
                let cipher = Arc::new(CellCipher::new(key_id, &key));
                let kept = self.keeps_keys().then(|| cipher.clone());
                keys.insert(
                    key_id,
                    KeyOutcome::Unwrapped {
                        cipher: kept,
                        at: Instant::now(),
                    },
                );
                Ok(cipher)
            }
            Err(error) => {
                // An unwrap that succeeded after this one began (another
                // caller's, with a key TTL of zero or after a wait for the
                // turn ran out) speaks for the store.
                let overtaken = matches!(
                    keys.get(&key_id),
                    Some(KeyOutcome::Unwrapped { at, .. }) if *at > started
                );
                if let DecryptError::KeyUnavailable { source, .. } = &error {
                    if !overtaken && !self.config.key_failure_backoff.is_zero() {
                        keys.insert(
                            key_id,
                            KeyOutcome::Failed {
                                source: source.clone(),
                                at: Instant::now(),
                            },
                        );
                    }
                }
                Err(error)
            }
        }
    }

    /// Whether unwrapped keys are kept at all (a key TTL above zero).
    pub(crate) fn keeps_keys(&self) -> bool {
        !self.config.key_ttl.is_zero()
    }

    /// What column key `key_id`'s last unwrap settled: its cipher, within
    /// the key TTL; its failure, within the failure backoff (the key store
    /// is not asked again until it is over); otherwise nothing.
    fn known_cipher(&self, key_id: u32) -> Result<Option<Arc<CellCipher>>, DecryptError> {
        let mut keys = lock(&self.keys);
        match keys.get_mut(&key_id) {
            Some(KeyOutcome::Unwrapped { cipher, at }) => {
                if at.elapsed() >= self.config.key_ttl {
                    *cipher = None;
                }
                Ok(cipher.clone())
            }
            Some(KeyOutcome::Failed { source, at })
                if at.elapsed() < self.config.key_failure_backoff =>
            {
                tracing::debug!(
                    key_id,
                    "aepg column key unwrap failed within the failure backoff; the key store is not asked again yet"
                );
                Err(DecryptError::KeyUnavailable {
                    key_id,
                    source: source.clone(),
                })
            }
            Some(KeyOutcome::Failed { .. }) | None => Ok(None),
        }
    }
}

/// What a client state knew when a state read was sent
/// ([`Encryption::read_start`]).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ReadStart {
    /// The announcement count.
    announcement: u64,
    /// The highest catalog generation seen.
    seen_generation: u64,
}

/// A catalog replaced by another, or a generation lower than one seen.
fn check_seen(seen: &Seen, id: CatalogId, generation: u64) -> Result<(), CatalogError> {
    if let Some(expected) = seen.catalog {
        if expected != id {
            return Err(CatalogError::IdentityMismatch {
                expected,
                found: id,
            });
        }
    }
    if generation < seen.generation {
        return Err(CatalogError::GenerationRollback {
            seen: seen.generation,
            found: generation,
        });
    }
    Ok(())
}

impl std::fmt::Debug for Encryption {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encryption")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Refuses a catalog that moves back from anything seen before, and
/// records what it shows.
fn accept(seen: &mut Seen, catalog: &Catalog) -> Result<(), CatalogError> {
    check_seen(seen, catalog.id(), catalog.generation())?;
    for (name, seen_generation) in &seen.manifests {
        let found = catalog.manifest_generation(name);
        if found.is_none_or(|found| found < *seen_generation) {
            return Err(CatalogError::ManifestRollback {
                master_key: name.clone(),
                seen: *seen_generation,
                found,
            });
        }
    }
    seen.catalog = Some(catalog.id());
    seen.generation = seen.generation.max(catalog.generation());
    for manifest in catalog.manifests() {
        let entry = seen
            .manifests
            .entry(manifest.master_key_name.clone())
            .or_insert(manifest.generation);
        *entry = (*entry).max(manifest.generation);
    }
    Ok(())
}
