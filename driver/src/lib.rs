//! aepg: client-side "Always Encrypted" column encryption for PostgreSQL.
//!
//! Values bound for encrypted columns are encrypted inside the application,
//! so the server, its logs, replicas and backups only ever hold ciphertext.
//! This crate holds the pure cryptographic core; the client comes next.
//!
//! - [`cell`]: the cell cipher (`AEAD_AES_256_GCM_SIV`, deterministic or
//!   randomized) and the cell format v1.
//! - [`record`]: canonical, signed encodings of catalog records, among them
//!   the wrapped column key.
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
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod analysis;
pub mod catalog;
pub mod cell;
mod client;
mod error;
pub mod record;
mod sql_type;

pub use aepg_keystore as keystore;
pub use client::{
    connect, Client, ColumnDecryption, ColumnIndex, Encryption, EncryptionConfig, Explanation,
    ParameterEncryption, ParameterExplanation, ResultColumnExplanation, Row, RowStream, Statement,
    TextOrStatement, ToStatement, Transaction, DEFAULT_CATALOG_TTL, DEFAULT_KEY_TTL,
};
pub use error::Error;
pub use postgres_types as types;
pub use tokio_postgres;

#[cfg(test)]
mod format_vectors;
