//! The record layer's error type.

use aepg_keystore::{KeyStoreError, MasterKeyLocation};

use super::RecordKind;

/// Why a catalog record could not be encoded, decoded, signed, verified or
/// opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    /// The bytes are not a valid canonical encoding of the record.
    #[error("malformed {kind} record: {reason}")]
    Malformed {
        /// The kind of record expected.
        kind: RecordKind,
        /// What is wrong.
        reason: &'static str,
    },
    /// The signature does not verify under the master key that should have
    /// made it: the record was forged, altered, or copied from another catalog.
    #[error("{kind} record is not signed by column master key {master_key}: refusing to use it")]
    SignatureInvalid {
        /// The kind of record.
        kind: RecordKind,
        /// The master key that should have signed it.
        master_key: MasterKeyLocation,
    },
    /// A catalog identity that is not 16 bytes.
    #[error("the catalog identity is {len} bytes, not 16")]
    InvalidCatalogId {
        /// Its length.
        len: usize,
    },
    /// The key store refused or failed (untrusted key path, key missing,
    /// store down, unwrap failed).
    #[error(transparent)]
    KeyStore(#[from] KeyStoreError),
}

impl RecordError {
    /// Whether the record is an attack (forged or altered), as opposed to a
    /// record this application cannot check (its master key is not trusted
    /// here, or the key store is unavailable).
    pub fn is_forgery(&self) -> bool {
        matches!(self, Self::SignatureInvalid { .. } | Self::Malformed { .. })
    }
}
