//! The transparent client (docs/DESIGN.md, "The client pipeline"):
//! analyze, check, cross-check, encrypt parameters, decrypt results.
//!
//! - [`Client`], [`Transaction`]: the query methods, written once
//!   (`methods`) over one execution path (`executor`).
//! - [`Encryption`]: what a pool shares (catalog, what was seen of it, keys).
//! - [`Connection`]: drives the connection and hears catalog announcements.
//! - `connection_state`, `statement_cache`: what aepg keeps per connection.
//! - `explicit`: a value encrypted for a column, a cell decrypted, outside
//!   a statement.
//! - `statement`, `parameter`, `decryption`, `row`: a statement's
//!   cross-check, its parameters' encryption, its results' decryption.
//! - `copy`, `copy_in`, `copy_out_format`, `batch_decryption`: encrypted
//!   binary COPY, its writer, the format its rows are read in, and long
//!   results decrypted batch by batch as they arrive.

mod batch_decryption;
#[allow(clippy::module_inception)] // client/client.rs holds `Client`, as in tokio-postgres
mod client;
mod column_index;
mod connection;
mod connection_state;
mod copy;
mod copy_in;
mod copy_out_format;
mod decryption;
mod encryption;
mod executor;
mod explain;
mod explicit;
mod from_row;
mod generic_client;
mod methods;
mod parameter;
mod row;
mod statement;
mod statement_cache;
mod swap_wait;
mod to_statement;
mod transaction;

pub use client::{connect, Client};
pub use column_index::ColumnIndex;
pub use connection::Connection;
pub use copy_in::CopyInWriter;
pub use decryption::ColumnDecryption;
pub(crate) use decryption::{decrypt_cell, QueryCiphers};
pub use encryption::{
    Encryption, EncryptionConfig, DEFAULT_CATALOG_MAX_STALENESS, DEFAULT_CATALOG_REFRESH_TIMEOUT,
    DEFAULT_CATALOG_TTL, DEFAULT_KEY_FAILURE_BACKOFF, DEFAULT_KEY_TTL,
    DEFAULT_STATEMENT_CACHE_CAPACITY, LOAD_TIMEOUT_FACTOR,
};
pub use explain::{
    Explanation, ParameterEncryption, ParameterExplanation, ResultColumnExplanation,
};
pub use from_row::FromRow;
pub use generic_client::GenericClient;
pub use row::{Row, RowStream};
pub use statement::Statement;
pub use to_statement::ToStatement;
pub use transaction::{Transaction, TransactionBuilder};
