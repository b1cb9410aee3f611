//! aepg: client-side "Always Encrypted" column encryption for PostgreSQL.
//!
//! Values bound for encrypted columns are encrypted inside the application,
//! so the server, its logs, replicas and backups only ever hold ciphertext;
//! encrypted results are decrypted inside the application again.
//!
//! # A tour
//!
//! - [`Client`] wraps `tokio_postgres::Client` with the same methods. Each
//!   statement text is analyzed once ([`analysis`]): every `$n` bound for an
//!   encrypted column is found, and anything a column's mode does not allow
//!   is refused before the text reaches the server. Parameters are encrypted
//!   with the column's setting; result cells are decrypted into [`Row`]s.
//! - [`Encryption`] is the state every client of a pool shares: key stores,
//!   the verified catalog, unwrapped column keys (each cached with a TTL).
//! - [`catalog`] installs the `aepg` schema and administers it: column master
//!   keys, column keys, settings, column assignments; every record is signed
//!   by a master key and verified when loaded.
//! - [`cell`] is the pure cell cipher (`AEAD_AES_256_GCM_SIV`, deterministic
//!   or randomized; `docs/FORMAT.md`), [`record`] the canonical signed
//!   encodings of catalog records. Neither does I/O.
//! - [`keystore`] (the `aepg-keystore` crate) holds the master keys.
//! - [`GenericClient`] is implemented by [`Client`], [`Transaction`] and
//!   pooled clients, so data-access code is written once:
//!
//!   ```no_run
//!   async fn patient_name(db: &impl aepg::GenericClient, ssn: &str) -> Result<String, aepg::Error> {
//!       let row = db.query_one("SELECT name FROM patients WHERE ssn = $1", &[&ssn]).await?;
//!       Ok(row.get("name"))
//!   }
//!   ```
//! - `pool` (features `deadpool`, `bb8`) opens a pool's clients over one
//!   shared [`Encryption`]: one catalog load and one unwrap per column key
//!   for the whole pool, sessions reset through aepg between users.
//! - `tls` (feature `rustls`) connects over TLS, required and verified.
//!
//! # Behaviour
//!
//! - **Round trips.** A statement text costs an analysis and a `prepare` on
//!   first use per connection; afterwards a `query` costs what a reused
//!   prepared statement costs in tokio-postgres: one round trip.
//! - **Pipelining.** Concurrent queries on one client are pipelined.
//! - **Fail closed.** A statement aepg cannot prove safe, that touches a
//!   table with encrypted columns, is refused with an error naming the table
//!   and column; a parameter the server says goes into an encrypted column
//!   but the analysis did not map is refused too.
//! - **Errors** never carry key material or plaintext values.
//!
//! # The cell cipher on its own
//!
//! ```
//! use aepg::cell::{CellCipher, CellSetting, EncryptionMode, PaddingPolicy, PlaintextType};
//! use aepg_keystore::ColumnKey;
//!
//! let cipher = CellCipher::new(1, &ColumnKey::generate()?);
//! let setting = CellSetting {
//!     setting_id: 7,
//!     mode: EncryptionMode::Deterministic,
//!     plaintext_type: PlaintextType { oid: 25, typmod: -1 }, // text
//!     padding: PaddingPolicy::Block16,
//! };
//! let cell = cipher.encrypt(&setting, b"Ada Lovelace")?;
//! assert_eq!(cell.len(), 38 + 16);
//! assert_eq!(cell, cipher.encrypt(&setting, b"Ada Lovelace")?); // deterministic
//! assert_eq!(&cipher.decrypt(&setting, &cell)?[..], b"Ada Lovelace");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! The quickstart (`cargo run --example quickstart`) shows the whole path
//! against a real server.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod analysis;
pub mod catalog;
pub mod cell;
mod client;
mod error;
pub mod migration;
mod names;
#[cfg(any(feature = "deadpool", feature = "bb8"))]
pub mod pool;
pub mod record;
mod support;
#[cfg(feature = "rustls")]
pub mod tls;

pub use aepg_keystore as keystore;
pub use client::{
    connect, Client, ColumnDecryption, ColumnIndex, Connection, CopyInWriter, Encryption,
    EncryptionConfig, Explanation, FromRow, GenericClient, ParameterEncryption,
    ParameterExplanation, ResultColumnExplanation, Row, RowStream, Statement, ToStatement,
    Transaction, TransactionBuilder, DEFAULT_CATALOG_MAX_STALENESS,
    DEFAULT_CATALOG_REFRESH_TIMEOUT, DEFAULT_CATALOG_TTL, DEFAULT_KEY_FAILURE_BACKOFF,
    DEFAULT_KEY_TTL, DEFAULT_STATEMENT_CACHE_CAPACITY, LOAD_TIMEOUT_FACTOR,
};
pub use error::{
    CrossCheckProblem, DatabaseError, DecryptError, Error, ParameterProblem, ResultProblem,
    ResultTypeProblem, RowCountExpectation,
};
pub use names::{ColumnName, TableName};
pub use postgres_types as types;
pub use tokio_postgres;

#[cfg(test)]
mod format_vectors;
#[cfg(any(fuzzing, test))]
#[doc(hidden)]
pub mod fuzzing;
