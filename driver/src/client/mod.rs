//! The transparent client (DESIGN.md §6): analyze, check, cross-check,
//! encrypt parameters, decrypt results.

#[allow(clippy::module_inception)] // client/client.rs holds `Client`, as in tokio-postgres
mod client;
mod column_index;
mod decryption;
mod encryption;
mod explain;
mod methods;
mod parameter;
mod row;
mod session;
mod statement;
mod transaction;

pub use client::{connect, Client};
pub use column_index::ColumnIndex;
pub use encryption::{Encryption, EncryptionConfig, DEFAULT_CATALOG_TTL, DEFAULT_KEY_TTL};
pub use explain::{
    ColumnDecryption, Explanation, ParameterEncryption, ParameterExplanation,
    ResultColumnExplanation,
};
pub use row::Row;
pub use session::{RowStream, TextOrStatement, ToStatement};
pub use statement::Statement;
pub use transaction::Transaction;
