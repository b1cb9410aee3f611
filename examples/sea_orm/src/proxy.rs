//! The adapter: SeaORM's proxy connection (`ProxyDatabaseTrait`) over one
//! `aepg::Client`.
//!
//! SeaORM hands each statement over as SQL text with `$n` placeholders and
//! a list of `sea_query::Value`s. They are bound as the Rust types
//! tokio-postgres knows (an `i64` for a `BigInt`, a `String` for a
//! `String`), so aepg checks and encrypts them as any other parameters; the
//! rows come back decrypted and are turned into `ProxyRow`s, a map from
//! column name to `sea_query::Value`, by each column's plaintext type.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};

use sea_orm::{DbBackend, DbErr, ProxyDatabaseTrait, ProxyExecResult, ProxyRow, RuntimeErr};
use sea_orm::{Statement, Value};
use tokio::sync::Mutex;
use tokio_postgres::types::{FromSql, ToSql, Type};

/// A parameter as aepg binds it.
type Parameter = Box<dyn ToSql + Sync + Send>;

/// SeaORM's proxy database, run by an `aepg::Client`: one connection,
/// one session, statements one at a time.
#[derive(Debug)]
pub struct AepgProxy {
    session: Mutex<Session>,
    /// Transactions SeaORM dropped unfinished: its `start_rollback` cannot
    /// wait, so they are rolled back before the next statement.
    dropped: AtomicUsize,
}

/// The connection and where it stands in transactions.
#[derive(Debug)]
struct Session {
    client: aepg::Client,
    /// 0 outside a transaction; 1 inside `BEGIN`; one more per savepoint.
    depth: usize,
    /// What the last `BEGIN`, `COMMIT`, `ROLLBACK` or savepoint failed
    /// with: the trait's `begin`/`commit`/`rollback` return nothing, so the
    /// next statement reports it.
    control_failure: Option<String>,
}

impl AepgProxy {
    /// Wraps a connected aepg client.
    pub fn new(client: aepg::Client) -> Self {
        Self {
            session: Mutex::new(Session {
                client,
                depth: 0,
                control_failure: None,
            }),
            dropped: AtomicUsize::new(0),
        }
    }

    /// The session, once the transactions dropped since the last statement
    /// are rolled back.
    async fn session(&self) -> tokio::sync::MutexGuard<'_, Session> {
        let mut session = self.session.lock().await;
        for _ in 0..self.dropped.swap(0, Ordering::SeqCst) {
            session.end(End::Rollback).await;
        }
        session
    }

    /// The session, ready for a statement: an earlier transaction control
    /// failure is reported first.
    async fn ready(&self) -> Result<tokio::sync::MutexGuard<'_, Session>, String> {
        let mut session = self.session().await;
        match session.control_failure.take() {
            Some(failure) => Err(failure),
            None => Ok(session),
        }
    }
}

/// How a transaction (or savepoint) ends.
#[derive(Clone, Copy, Debug)]
enum End {
    Commit,
    Rollback,
}

impl Session {
    /// Runs transaction control text. aepg reads `BEGIN`, `COMMIT`,
    /// `ROLLBACK` and savepoints as such: it notes the transaction block
    /// they open or close, and sends them as written.
    async fn control(&mut self, sql: &str) {
        if let Err(error) = self.client.batch_execute(sql).await {
            // The first failure is the one to report.
            self.control_failure
                .get_or_insert_with(|| format!("{sql} failed: {error}"));
        }
    }

    /// Opens a transaction, or a savepoint inside one. SeaORM ends each
    /// one it began, so the depth counts it even when it failed to open.
    async fn begin(&mut self) {
        let sql = match self.depth {
            0 => "BEGIN".to_owned(),
            depth => format!("SAVEPOINT {}", savepoint(depth)),
        };
        self.control(&sql).await;
        self.depth += 1;
    }

    /// Ends the innermost transaction or savepoint.
    async fn end(&mut self, end: End) {
        match (self.depth, end) {
            // Nothing was begun: nothing to end.
            (0, _) => return,
            (1, End::Commit) => self.control("COMMIT").await,
            (1, End::Rollback) => self.control("ROLLBACK").await,
            (depth, End::Commit) => {
                let sql = format!("RELEASE SAVEPOINT {}", savepoint(depth - 1));
                self.control(&sql).await;
            }
            (depth, End::Rollback) => {
                let name = savepoint(depth - 1);
                let sql = format!("ROLLBACK TO SAVEPOINT {name}; RELEASE SAVEPOINT {name}");
                self.control(&sql).await;
            }
        }
        self.depth -= 1;
    }
}

/// The name of the savepoint opened at `depth`.
fn savepoint(depth: usize) -> String {
    format!("sea_orm_savepoint_{depth}")
}

#[async_trait::async_trait]
impl ProxyDatabaseTrait for AepgProxy {
    async fn query(&self, statement: Statement) -> Result<Vec<ProxyRow>, DbErr> {
        let fail = |message: String| DbErr::Query(RuntimeErr::Internal(message));
        let session = self.ready().await.map_err(fail)?;
        let parameters = parameters(&statement)?;
        let rows = session
            .client
            .query(&statement.sql, &as_params(&parameters))
            .await
            .map_err(|error| fail(error.to_string()))?;
        rows.iter().map(proxy_row).collect()
    }

    async fn execute(&self, statement: Statement) -> Result<ProxyExecResult, DbErr> {
        let fail = |message: String| DbErr::Exec(RuntimeErr::Internal(message));
        let session = self.ready().await.map_err(fail)?;
        let rows_affected = match &statement.values {
            // `execute_unprepared`: text as written, maybe several
            // statements, through the simple protocol (which reports no
            // count here).
            None => {
                session
                    .client
                    .batch_execute(&statement.sql)
                    .await
                    .map_err(|error| fail(error.to_string()))?;
                0
            }
            Some(_) => {
                let parameters = parameters(&statement)?;
                session
                    .client
                    .execute(&statement.sql, &as_params(&parameters))
                    .await
                    .map_err(|error| fail(error.to_string()))?
            }
        };
        // PostgreSQL has no last insert id: SeaORM reads keys from RETURNING.
        Ok(ProxyExecResult::new(0, rows_affected))
    }

    async fn begin(&self) {
        self.session().await.begin().await;
    }

    async fn commit(&self) {
        self.session().await.end(End::Commit).await;
    }

    async fn rollback(&self) {
        self.session().await.end(End::Rollback).await;
    }

    fn start_rollback(&self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }

    async fn ping(&self) -> Result<(), DbErr> {
        let session = self.session.lock().await;
        session
            .client
            .ping()
            .await
            .map_err(|error| DbErr::Conn(RuntimeErr::Internal(error.to_string())))
    }
}

/// The statement's values, as parameters aepg can bind.
fn parameters(statement: &Statement) -> Result<Vec<Parameter>, DbErr> {
    if statement.db_backend != DbBackend::Postgres {
        return Err(DbErr::Custom(format!(
            "aepg runs PostgreSQL statements, not {:?} ones",
            statement.db_backend
        )));
    }
    statement
        .values
        .iter()
        .flat_map(|values| values.0.iter())
        .enumerate()
        .map(|(index, value)| parameter(index + 1, value))
        .collect()
}

/// Borrows parameters as `query` and `execute` take them.
fn as_params(parameters: &[Parameter]) -> Vec<&(dyn ToSql + Sync)> {
    parameters
        .iter()
        .map(|parameter| &**parameter as &(dyn ToSql + Sync))
        .collect()
}

/// One value as the Rust type tokio-postgres binds for its SQL type: `NULL`
/// stays `None`. Errors name the parameter and its kind, never its value.
fn parameter(number: usize, value: &Value) -> Result<Parameter, DbErr> {
    Ok(match value {
        Value::Bool(v) => Box::new(*v),
        // PostgreSQL has no one-byte integer: the smallest is int2.
        Value::TinyInt(v) => Box::new(v.map(i16::from)),
        Value::SmallInt(v) => Box::new(*v),
        Value::Int(v) => Box::new(*v),
        Value::BigInt(v) => Box::new(*v),
        // Unsigned integers take the next wider signed type (`LIMIT` and
        // `OFFSET` come as u64).
        Value::TinyUnsigned(v) => Box::new(v.map(i16::from)),
        Value::SmallUnsigned(v) => Box::new(v.map(i32::from)),
        Value::Unsigned(v) => Box::new(v.map(i64::from)),
        Value::BigUnsigned(v) => Box::new(
            v.map(i64::try_from)
                .transpose()
                .map_err(|_| DbErr::Type(format!("parameter ${number} does not fit an int8")))?,
        ),
        Value::Float(v) => Box::new(*v),
        Value::Double(v) => Box::new(*v),
        Value::String(v) => Box::new(v.clone()),
        Value::Char(v) => Box::new(v.map(String::from)),
        Value::Bytes(v) => Box::new(v.clone()),
        Value::Enum(_) => {
            return Err(DbErr::Type(format!(
                "parameter ${number}: this example binds no PostgreSQL enum values"
            )))
        }
        // Dates, UUIDs, JSON, decimals, arrays…: variants that exist when a
        // crate of the build turns on sea-query's features for them.
        #[allow(unreachable_patterns)]
        other => {
            return Err(DbErr::Type(format!(
                "parameter ${number}: this example binds no {:?} values",
                other.array_type()
            )))
        }
    })
}

/// A decrypted row as SeaORM reads it: column name → value, each value of
/// the `sea_query::Value` variant of the column's (plaintext) type.
fn proxy_row(row: &aepg::Row) -> Result<ProxyRow, DbErr> {
    let mut values = BTreeMap::new();
    for (index, column) in row.columns().iter().enumerate() {
        let name = column.name();
        let ty = row.value_type(index).ok_or_else(|| {
            DbErr::Type(format!(
                "column {name}: aepg knows no plaintext type for it"
            ))
        })?;
        let value = if *ty == Type::BOOL {
            Value::Bool(cell(row, index)?)
        } else if *ty == Type::INT2 {
            Value::SmallInt(cell(row, index)?)
        } else if *ty == Type::INT4 {
            Value::Int(cell(row, index)?)
        } else if *ty == Type::INT8 {
            Value::BigInt(cell(row, index)?)
        } else if *ty == Type::FLOAT4 {
            Value::Float(cell(row, index)?)
        } else if *ty == Type::FLOAT8 {
            Value::Double(cell(row, index)?)
        } else if [Type::TEXT, Type::VARCHAR, Type::BPCHAR, Type::NAME].contains(ty) {
            Value::String(cell(row, index)?)
        } else if *ty == Type::BYTEA {
            Value::Bytes(cell(row, index)?)
        } else {
            return Err(DbErr::Type(format!(
                "column {name}: this example reads no {} values",
                ty.name()
            )));
        };
        values.insert(name.to_owned(), value);
    }
    Ok(ProxyRow::new(values))
}

/// One cell, decrypted if its column is encrypted; `None` for `NULL`. A
/// cell that does not decrypt fails with aepg's error, which names the
/// column.
fn cell<'a, T: FromSql<'a>>(row: &'a aepg::Row, index: usize) -> Result<Option<T>, DbErr> {
    row.try_get(index)
        .map_err(|error| DbErr::Query(RuntimeErr::Internal(error.to_string())))
}
