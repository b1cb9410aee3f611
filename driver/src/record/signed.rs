//! Records signed by a column master key, and the sealing and opening of
//! column keys.

use aepg_keystore::{ColumnKey, KeyStoreError, KeyStoreRegistry, MasterKeyLocation};

use super::{CatalogRecord, WrappedColumnKey};
use crate::Error;

/// A catalog record with its RSA-PSS-SHA-256 signature by a column master key.
///
/// The record is reachable only through [`verify`](Self::verify) (or,
/// explicitly marked, [`unverified`](Self::unverified)), so code cannot use
/// an unchecked record by accident.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRecord<T> {
    record: T,
    canonical: Vec<u8>,
    signature: Vec<u8>,
}

impl<T: CatalogRecord> SignedRecord<T> {
    /// Signs `record` with the master key at `master_key`.
    ///
    /// # Errors
    /// An unencodable record, or the key store's refusal.
    pub async fn sign(
        record: T,
        registry: &KeyStoreRegistry,
        master_key: &MasterKeyLocation,
    ) -> Result<Self, Error> {
        let canonical = record.canonical_bytes()?;
        let signature = registry.sign(master_key, &canonical).await?;
        Ok(Self {
            record,
            canonical,
            signature,
        })
    }

    /// Parses a record as stored (canonical bytes and signature). Parsing is
    /// strict but proves nothing: call [`verify`](Self::verify) before use.
    ///
    /// # Errors
    /// [`Error::MalformedRecord`].
    pub fn decode(canonical: &[u8], signature: Vec<u8>) -> Result<Self, Error> {
        Ok(Self {
            record: T::from_canonical_bytes(canonical)?,
            canonical: canonical.to_vec(),
            signature,
        })
    }

    /// Checks the signature with the master key at `master_key` and returns
    /// the record.
    ///
    /// # Errors
    /// [`Error::RecordSignatureInvalid`] if it does not verify; the key
    /// store's refusal (an untrusted key path, a store that is down).
    pub async fn verify(
        &self,
        registry: &KeyStoreRegistry,
        master_key: &MasterKeyLocation,
    ) -> Result<&T, Error> {
        match registry
            .verify(master_key, &self.canonical, &self.signature)
            .await
        {
            Ok(()) => Ok(&self.record),
            Err(KeyStoreError::InvalidSignature { .. }) => Err(Error::RecordSignatureInvalid {
                kind: T::KIND.name(),
                master_key: master_key.to_string(),
            }),
            Err(other) => Err(other.into()),
        }
    }

    /// The record without checking its signature: for display and for
    /// finding which master key should have signed it, never for use.
    pub fn unverified(&self) -> &T {
        &self.record
    }

    /// The canonical bytes the signature covers, as stored in the catalog.
    pub fn canonical_bytes(&self) -> &[u8] {
        &self.canonical
    }

    /// The signature, as stored in the catalog.
    pub fn signature(&self) -> &[u8] {
        &self.signature
    }
}

impl SignedRecord<WrappedColumnKey> {
    /// Wraps `column_key` under the master key at `master_key` and signs the
    /// resulting record with the same master key.
    ///
    /// # Errors
    /// The key store's refusal.
    pub async fn seal(
        registry: &KeyStoreRegistry,
        master_key_name: &str,
        master_key: &MasterKeyLocation,
        key_id: u32,
        column_key: &ColumnKey,
    ) -> Result<Self, Error> {
        let ciphertext = registry.wrap_column_key(master_key, column_key).await?;
        let record = WrappedColumnKey {
            master_key_name: master_key_name.to_owned(),
            master_key: master_key.clone(),
            key_id,
            ciphertext,
        };
        Self::sign(record, registry, master_key).await
    }

    /// Verifies the record's signature with the master key it names, and only
    /// then unwraps the column key: the private key never runs on a record
    /// that its owner did not sign.
    ///
    /// # Errors
    /// [`Error::RecordSignatureInvalid`] for a forged or altered record; the
    /// key store's refusal (untrusted key path, unwrap failure, store down).
    pub async fn open(&self, registry: &KeyStoreRegistry) -> Result<ColumnKey, Error> {
        let master_key = &self.record.master_key;
        let record = self.verify(registry, master_key).await?;
        Ok(registry
            .unwrap_column_key(master_key, &record.ciphertext)
            .await?)
    }
}
