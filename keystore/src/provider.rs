//! The trait every key store provider implements.

use async_trait::async_trait;

use crate::{ColumnKey, KeyStoreError, WrappedKey};

/// What a provider can tell about a column master key without using it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MasterKeyInfo {
    /// Size of the RSA modulus in bits.
    pub bits: usize,
    /// SHA-256 of the DER-encoded `SubjectPublicKeyInfo`: identifies the key
    /// pair without revealing anything secret.
    pub public_key_sha256: [u8; 32],
}

/// A place where column master keys (RSA key pairs) live: a directory of PEM
/// files, an HSM, a cloud KMS.
///
/// The private key never leaves the provider: callers hand it a column key to
/// wrap, a wrapped value to unwrap, or a message to sign. Algorithms are fixed
/// by the trait's contract, not chosen by callers:
/// - wrapping is RSA-OAEP with SHA-256 and MGF1-SHA-256, empty label, unless
///   the provider's key cannot do it (a token whose OAEP knows only SHA-1):
///   then [`KeyWrapAlgorithm::RsaOaepSha1`](crate::KeyWrapAlgorithm). The
///   algorithm travels with the wrapped value, in a record the master key
///   signs;
/// - signing is RSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt.
///
/// Callers reach providers through [`KeyStoreRegistry`](crate::KeyStoreRegistry),
/// which checks the key path against the application's allow-list first.
#[async_trait]
pub trait KeyStoreProvider: Send + Sync + 'static {
    /// The name under which catalog records refer to this provider (`"local"`, `"pkcs11"`, …).
    fn name(&self) -> &str;

    /// Checks that `key_path` is well-formed for this provider, without
    /// touching any key.
    ///
    /// # Errors
    /// [`KeyStoreError::InvalidKeyPath`] saying what is wrong.
    fn validate_key_path(&self, key_path: &str) -> Result<(), KeyStoreError>;

    /// Describes the master key at `key_path`.
    ///
    /// # Errors
    /// The key is missing, unreadable or unusable, or the provider is unavailable.
    async fn describe(&self, key_path: &str) -> Result<MasterKeyInfo, KeyStoreError>;

    /// Encrypts `column_key` under the master key's public key, with the
    /// algorithm the provider uses for that key (RSA-OAEP-SHA-256 unless the
    /// key cannot unwrap it).
    ///
    /// # Errors
    /// The key is missing or unusable, or the provider is unavailable.
    async fn wrap_column_key(
        &self,
        key_path: &str,
        column_key: &ColumnKey,
    ) -> Result<WrappedKey, KeyStoreError>;

    /// Decrypts a wrapped column key with the master key's private key.
    ///
    /// Callers must have verified the signature of the record that carries
    /// `wrapped` first, so the private key never runs on attacker-chosen input
    /// and the algorithm is the one the master key signed.
    ///
    /// # Errors
    /// [`KeyStoreError::UnwrapFailed`] if `wrapped` was not made by this key,
    /// [`KeyStoreError::UnsupportedWrapAlgorithm`] if the provider cannot
    /// unwrap with `wrapped.algorithm`, or the key is missing, or the
    /// provider is unavailable.
    async fn unwrap_column_key(
        &self,
        key_path: &str,
        wrapped: &WrappedKey,
    ) -> Result<ColumnKey, KeyStoreError>;

    /// Signs `message` with the master key's private key (RSA-PSS-SHA-256).
    ///
    /// # Errors
    /// The key is missing or unusable, or the provider is unavailable.
    async fn sign(&self, key_path: &str, message: &[u8]) -> Result<Vec<u8>, KeyStoreError>;

    /// Verifies an RSA-PSS-SHA-256 `signature` over `message` with the master key's public key.
    ///
    /// # Errors
    /// [`KeyStoreError::InvalidSignature`] if it does not verify; the key is
    /// missing or the provider is unavailable.
    async fn verify(
        &self,
        key_path: &str,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), KeyStoreError>;
}
