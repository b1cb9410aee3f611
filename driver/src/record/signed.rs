//! Records signed by a column master key, and the sealing and opening of
//! column keys.

use std::fmt;

use aepg_keystore::{ColumnKey, KeyStoreError, KeyStoreRegistry, MasterKeyLocation};

use super::{CatalogRecord, RecordError, WrappedColumnKey};

/// The random identity of one installed catalog (16 bytes, drawn at
/// install). Every signature covers it, so a record signed for one
/// database's catalog does not verify in another's, even under a shared
/// master key.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct CatalogId(pub [u8; 16]);

impl CatalogId {
    /// Parses the 16 bytes as stored in `aepg.catalog_version`.
    ///
    /// # Errors
    /// [`RecordError::InvalidCatalogId`] for any other length.
    pub fn from_slice(bytes: &[u8]) -> Result<Self, RecordError> {
        bytes
            .try_into()
            .map(Self)
            .map_err(|_| RecordError::InvalidCatalogId { len: bytes.len() })
    }

    /// Parses the 32 hexadecimal digits [`Display`](fmt::Display) writes.
    ///
    /// # Errors
    /// [`RecordError::InvalidCatalogId`] for anything else.
    pub fn from_hex(text: &str) -> Result<Self, RecordError> {
        let invalid = || RecordError::InvalidCatalogId {
            len: text.len() / 2,
        };
        if text.len() != 32 || !text.is_ascii() {
            return Err(invalid());
        }
        let mut id = [0u8; 16];
        for (byte, pair) in id.iter_mut().zip(text.as_bytes().chunks(2)) {
            let pair = std::str::from_utf8(pair).map_err(|_| invalid())?;
            *byte = u8::from_str_radix(pair, 16).map_err(|_| invalid())?;
        }
        Ok(Self(id))
    }
}

impl fmt::Display for CatalogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

impl fmt::Debug for CatalogId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CatalogId({self})")
    }
}

/// What a master key signs: the catalog's identity, then the record's
/// canonical bytes.
fn signed_message(catalog: &CatalogId, canonical: &[u8]) -> Vec<u8> {
    let mut message = Vec::with_capacity(catalog.0.len() + canonical.len());
    message.extend_from_slice(&catalog.0);
    message.extend_from_slice(canonical);
    message
}

/// A catalog record with its RSA-PSS-SHA-256 signature by a column master key.
///
/// The signature covers the catalog's identity ([`CatalogId`]) and the
/// record's canonical bytes. The record is reachable only through
/// [`verify`](Self::verify) (or, explicitly marked,
/// [`unverified`](Self::unverified)), so code cannot use an unchecked record
/// by accident.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedRecord<T> {
    record: T,
    canonical: Vec<u8>,
    signature: Vec<u8>,
}

impl<T: CatalogRecord> SignedRecord<T> {
    /// Signs `record`, for the catalog `catalog`, with the master key at `master_key`.
    ///
    /// # Errors
    /// An unencodable record, or the key store's refusal.
    pub async fn sign(
        record: T,
        catalog: &CatalogId,
        registry: &KeyStoreRegistry,
        master_key: &MasterKeyLocation,
    ) -> Result<Self, RecordError> {
        let canonical = record.canonical_bytes()?;
        let signature = registry
            .sign(master_key, &signed_message(catalog, &canonical))
            .await?;
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
    /// [`RecordError::Malformed`].
    pub fn decode(canonical: &[u8], signature: Vec<u8>) -> Result<Self, RecordError> {
        Ok(Self {
            record: T::from_canonical_bytes(canonical)?,
            canonical: canonical.to_vec(),
            signature,
        })
    }

    /// Checks that the master key at `master_key` signed this record for
    /// the catalog `catalog`, and returns the record.
    ///
    /// # Errors
    /// [`RecordError::SignatureInvalid`] if it does not verify (a forged or
    /// altered record, or one copied from another catalog); the key store's
    /// refusal (an untrusted key path, a store that is down).
    pub async fn verify(
        &self,
        registry: &KeyStoreRegistry,
        master_key: &MasterKeyLocation,
        catalog: &CatalogId,
    ) -> Result<&T, RecordError> {
        let message = signed_message(catalog, &self.canonical);
        match registry.verify(master_key, &message, &self.signature).await {
            Ok(()) => Ok(&self.record),
            Err(KeyStoreError::InvalidSignature { .. }) => Err(RecordError::SignatureInvalid {
                kind: T::KIND,
                master_key: master_key.clone(),
            }),
            Err(other) => Err(other.into()),
        }
    }

    /// The same record with another signature (a second master key's),
    /// still to be verified.
    pub fn with_signature(&self, signature: Vec<u8>) -> Self
    where
        T: Clone,
    {
        Self {
            record: self.record.clone(),
            canonical: self.canonical.clone(),
            signature,
        }
    }

    /// The record without checking its signature: for display and for
    /// finding which master key should have signed it, never for use.
    pub fn unverified(&self) -> &T {
        &self.record
    }

    /// The canonical bytes, as stored in the catalog.
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
    /// resulting record, for the catalog `catalog`, with the same master key.
    ///
    /// # Errors
    /// The key store's refusal.
    pub async fn seal(
        registry: &KeyStoreRegistry,
        catalog: &CatalogId,
        master_key_name: &str,
        master_key: &MasterKeyLocation,
        key_id: u32,
        column_key: &ColumnKey,
    ) -> Result<Self, RecordError> {
        let wrapped = registry.wrap_column_key(master_key, column_key).await?;
        let record = WrappedColumnKey {
            master_key_name: master_key_name.to_owned(),
            master_key: master_key.clone(),
            key_id,
            wrapped,
        };
        Self::sign(record, catalog, registry, master_key).await
    }

    /// Verifies the record's signature with the master key it names, for the
    /// catalog `catalog`, and only then unwraps the column key: the private
    /// key never runs on a record that its owner did not sign.
    ///
    /// # Errors
    /// [`RecordError::SignatureInvalid`] for a forged, altered or replayed
    /// record; the key store's refusal (untrusted key path, unwrap failure,
    /// store down).
    pub async fn open(
        &self,
        registry: &KeyStoreRegistry,
        catalog: &CatalogId,
    ) -> Result<ColumnKey, RecordError> {
        let master_key = &self.record.master_key;
        let record = self.verify(registry, master_key, catalog).await?;
        Ok(registry
            .unwrap_column_key(master_key, &record.wrapped)
            .await?)
    }
}
