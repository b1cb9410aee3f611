//! Column master key stores for [aepg](https://docs.rs/aepg).
//!
//! A column master key (CMK) is an RSA key pair that wraps and signs column
//! encryption keys. Its private half lives in a *key store* and is used only
//! through a [`KeyStoreProvider`]: it never reaches the database, and the
//! column keys it protects are stored there only wrapped.
//!
//! - [`KeyStoreProvider`]: the async trait a key store implements.
//! - [`KeyStoreRegistry`]: the application's providers by name, with the
//!   allow-list of [`TrustedKeyPaths`] checked before any provider call.
//! - [`LocalKeyStore`]: PKCS#8 PEM files in a directory (mode `0600`).
//! - [`MemoryKeyStore`]: keys in process memory, for tests and examples.
//! - `Pkcs11KeyStore` (feature `pkcs11`): keys inside an HSM or smart card,
//!   through its PKCS#11 module.
//! - [`ColumnKey`]: column key material that zeroizes on drop.
//!
//! ```
//! # tokio_test_block_on(async {
//! use std::sync::Arc;
//! use aepg_keystore::{ColumnKey, KeyStoreRegistry, MasterKeyLocation, MemoryKeyStore, TrustedKeyPaths};
//!
//! let store = MemoryKeyStore::new();
//! store.generate_key("cmk1", 2048)?;
//! let mut registry = KeyStoreRegistry::new();
//! registry.register(Arc::new(store), TrustedKeyPaths::only(["cmk1"]))?;
//!
//! let cmk = MasterKeyLocation::new("memory", "cmk1");
//! let column_key = ColumnKey::generate()?;
//! let wrapped = registry.wrap_column_key(&cmk, &column_key).await?;
//! let unwrapped = registry.unwrap_column_key(&cmk, &wrapped).await?;
//! assert_eq!(unwrapped.expose_secret(), column_key.expose_secret());
//!
//! // A path the application does not trust is refused before the provider runs.
//! let other = MasterKeyLocation::new("memory", "attacker-key");
//! assert!(registry.wrap_column_key(&other, &column_key).await.is_err());
//! # Ok::<(), aepg_keystore::KeyStoreError>(())
//! # }).unwrap();
//! # fn tokio_test_block_on<F: std::future::Future>(f: F) -> F::Output {
//! #     tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
//! # }
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "azure-key-vault")]
pub mod azure;
mod column_key;
mod error;
mod local;
mod memory;
#[cfg(feature = "pkcs11")]
pub mod pkcs11;
mod provider;
mod registry;
mod rsa_ops;
mod two_key;
mod wrapping;

#[cfg(feature = "azure-key-vault")]
pub use azure::{AzureConfig, AzureKeyVaultStore};
pub use column_key::{ColumnKey, COLUMN_KEY_LEN};
pub use error::KeyStoreError;
pub use local::LocalKeyStore;
pub use memory::MemoryKeyStore;
#[cfg(feature = "test-util")]
pub use memory::OperationCounts;
#[cfg(feature = "pkcs11")]
pub use pkcs11::{PinSource, Pkcs11Config, Pkcs11KeyStore};
pub use provider::{KeyStoreProvider, MasterKeyInfo};
pub use registry::{KeyStoreRegistry, MasterKeyLocation, TrustedKeyPaths};
pub use rsa_ops::{GENERATABLE_KEY_BITS, MIN_MASTER_KEY_BITS};
pub use two_key::{TwoKeyPath, TWO_KEY_PROVIDER};
pub use wrapping::{KeyWrapAlgorithm, WrappedKey};
