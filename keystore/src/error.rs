//! The key store error type.

use std::path::PathBuf;

/// Everything that can go wrong in a key store.
///
/// Variants name the provider and the key path involved. None of them ever
/// carries key material or the plaintext of a column key.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyStoreError {
    /// No provider is registered under this name.
    #[error("no key store provider named {provider:?} is registered")]
    UnknownProvider {
        /// The provider name that was asked for.
        provider: String,
    },
    /// A provider with this name is already registered.
    #[error(
        "a key store provider named {provider:?} is already registered (or the name is reserved)"
    )]
    DuplicateProvider {
        /// The provider name.
        provider: String,
    },
    /// The key path is not on the provider's allow-list; the provider was not called.
    #[error(
        "key path {key_path:?} of provider {provider:?} is not trusted by this application \
         (add it to the provider's trusted key paths)"
    )]
    UntrustedKeyPath {
        /// The provider name.
        provider: String,
        /// The refused key path.
        key_path: String,
    },
    /// The key path is malformed for this provider.
    #[error("invalid key path {key_path:?}: {reason}")]
    InvalidKeyPath {
        /// The refused key path.
        key_path: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// No key exists at this path.
    #[error("no master key at {key_path:?} in provider {provider:?}")]
    KeyNotFound {
        /// The provider name.
        provider: String,
        /// The key path.
        key_path: String,
    },
    /// A key already exists at this path; it is never overwritten.
    #[error("a master key already exists at {key_path:?} in provider {provider:?}")]
    KeyExists {
        /// The provider name.
        provider: String,
        /// The key path.
        key_path: String,
    },
    /// A private key file can be read by its group or by others.
    #[error(
        "key file {path} has mode {mode:04o}: it must not be readable by group or others \
         (run chmod 600 on it)"
    )]
    KeyFileTooOpen {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The key file holds only a public key.
    #[error("key file for {key_path:?} holds a public key; a PKCS#8 RSA private key is required")]
    PublicKeyOnly {
        /// The key path.
        key_path: String,
    },
    /// The key is not an RSA key.
    #[error("key {key_path:?} is not an RSA key ({found}); column master keys are RSA")]
    NotRsa {
        /// The key path.
        key_path: String,
        /// What was found instead.
        found: String,
    },
    /// The RSA key is smaller than allowed.
    #[error("key {key_path:?} has {bits} bits; column master keys need at least {minimum}")]
    KeyTooSmall {
        /// The key path.
        key_path: String,
        /// The key's modulus size.
        bits: usize,
        /// The minimum accepted size.
        minimum: usize,
    },
    /// A key size that cannot be generated.
    #[error("cannot generate an RSA key of {bits} bits: choose 2048, 3072 or 4096")]
    UnsupportedKeySize {
        /// The requested size.
        bits: usize,
    },
    /// The key file could not be parsed.
    #[error("key {key_path:?} is malformed: {reason}")]
    MalformedKey {
        /// The key path.
        key_path: String,
        /// What is wrong with it (never key bytes).
        reason: String,
    },
    /// Wrapping a column key under the master key failed.
    #[error("wrapping a column key under master key {key_path:?} failed")]
    WrapFailed {
        /// The key path.
        key_path: String,
    },
    /// Unwrapping failed: the wrapped value was not made by this master key or is damaged.
    #[error("unwrapping a column key with master key {key_path:?} failed")]
    UnwrapFailed {
        /// The key path.
        key_path: String,
    },
    /// The provider cannot unwrap with the algorithm a wrapped value names.
    #[error(
        "master key {key_path:?} in provider {provider:?} cannot unwrap a column key wrapped \
         with {algorithm}"
    )]
    UnsupportedWrapAlgorithm {
        /// The provider name.
        provider: String,
        /// The key path.
        key_path: String,
        /// The algorithm's name.
        algorithm: &'static str,
    },
    /// Signing with the master key failed.
    #[error("signing with master key {key_path:?} failed")]
    SignFailed {
        /// The key path.
        key_path: String,
    },
    /// A signature does not verify under the master key.
    #[error("signature does not verify under master key {key_path:?}")]
    InvalidSignature {
        /// The key path.
        key_path: String,
    },
    /// Unwrapped key material has the wrong length.
    #[error("column key material must be 32 bytes, got {len}")]
    InvalidColumnKeyLength {
        /// The length that was found.
        len: usize,
    },
    /// The operating system's random number generator failed.
    #[error("the operating system's random number generator is unavailable")]
    RandomnessUnavailable,
    /// The provider cannot be reached or refused the operation (an HSM that is down, say).
    #[error("key store provider {provider:?} is unavailable: {reason}")]
    ProviderUnavailable {
        /// The provider name.
        provider: String,
        /// What the provider said.
        reason: String,
    },
    /// Reading or writing a key file failed.
    #[error("I/O error on key file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}
