//! The registry of providers and the allow-list of trusted key paths.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::two_key::{TwoKeyPath, TWO_KEY_PROVIDER};
use crate::{ColumnKey, KeyStoreError, KeyStoreProvider, MasterKeyInfo, WrappedKey};

/// Where a column master key lives: a provider name and a path inside it.
///
/// This is what the catalog stores for a master key. Because the catalog is
/// not trusted, a location read from it is used only if the application
/// trusts it (see [`TrustedKeyPaths`]).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MasterKeyLocation {
    /// Name of the provider (`"local"`, `"memory"`, `"pkcs11"`, …).
    pub provider: String,
    /// Provider-specific path of the key.
    pub key_path: String,
}

impl MasterKeyLocation {
    /// A location from its two parts.
    pub fn new(provider: impl Into<String>, key_path: impl Into<String>) -> Self {
        Self {
            provider: provider.into(),
            key_path: key_path.into(),
        }
    }
}

impl fmt::Display for MasterKeyLocation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.provider, self.key_path)
    }
}

/// Which key paths of one provider the application agrees to use.
///
/// A catalog record that names any other path is refused before the provider
/// is called, so a tampered catalog cannot point the client at a key the
/// attacker controls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrustedKeyPaths {
    /// Exactly these paths.
    Only(BTreeSet<String>),
    /// Every path the provider has. Meant for administration tools that
    /// create keys, and for tests; applications should list their paths.
    Any,
}

impl TrustedKeyPaths {
    /// Trusts exactly the given paths.
    pub fn only<I, S>(paths: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::Only(paths.into_iter().map(Into::into).collect())
    }

    fn allows(&self, key_path: &str) -> bool {
        match self {
            Self::Only(paths) => paths.contains(key_path),
            Self::Any => true,
        }
    }
}

struct Registered {
    provider: Arc<dyn KeyStoreProvider>,
    trusted: TrustedKeyPaths,
}

/// The key stores an application is configured with, by provider name.
///
/// Every operation names a [`MasterKeyLocation`]; the registry refuses
/// unknown providers, malformed paths and untrusted paths before it calls the
/// provider. Cloning is cheap and shares the providers.
#[derive(Clone, Default)]
pub struct KeyStoreRegistry {
    providers: HashMap<String, Arc<Registered>>,
}

impl KeyStoreRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a provider under its [`name`](KeyStoreProvider::name), with the
    /// key paths of it that the application trusts.
    ///
    /// # Errors
    /// [`KeyStoreError::DuplicateProvider`] if the name is taken.
    pub fn register(
        &mut self,
        provider: Arc<dyn KeyStoreProvider>,
        trusted: TrustedKeyPaths,
    ) -> Result<(), KeyStoreError> {
        let name = provider.name().to_owned();
        if self.providers.contains_key(&name) || name == TWO_KEY_PROVIDER {
            return Err(KeyStoreError::DuplicateProvider { provider: name });
        }
        self.providers
            .insert(name, Arc::new(Registered { provider, trusted }));
        Ok(())
    }

    /// Whether the application trusts any master key at all: a provider
    /// with at least one trusted path, or with every path trusted.
    pub fn trusts_any_key(&self) -> bool {
        self.providers
            .values()
            .any(|registered| match &registered.trusted {
                TrustedKeyPaths::Only(paths) => !paths.is_empty(),
                TrustedKeyPaths::Any => true,
            })
    }

    /// The names of the registered providers, sorted.
    pub fn provider_names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.providers.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// Checks that `location` names a registered provider, a well-formed path
    /// and a trusted path, and returns the provider. A two-key master key
    /// has no provider of its own: [`Self::check`] checks any location.
    ///
    /// # Errors
    /// [`KeyStoreError::UnknownProvider`], [`KeyStoreError::InvalidKeyPath`]
    /// or [`KeyStoreError::UntrustedKeyPath`].
    pub fn checked_provider(
        &self,
        location: &MasterKeyLocation,
    ) -> Result<&dyn KeyStoreProvider, KeyStoreError> {
        let registered = self.providers.get(&location.provider).ok_or_else(|| {
            KeyStoreError::UnknownProvider {
                provider: location.provider.clone(),
            }
        })?;
        registered.provider.validate_key_path(&location.key_path)?;
        if !registered.trusted.allows(&location.key_path) {
            return Err(KeyStoreError::UntrustedKeyPath {
                provider: location.provider.clone(),
                key_path: location.key_path.clone(),
            });
        }
        Ok(registered.provider.as_ref())
    }

    /// Checks that the application may use the master key at `location`:
    /// [`Self::checked_provider`] for a plain location; for a two-key
    /// master key ([`TwoKeyPath`]), a well-formed path and both keys checked
    /// against their own providers.
    ///
    /// # Errors
    /// As [`Self::checked_provider`].
    pub fn check(&self, location: &MasterKeyLocation) -> Result<(), KeyStoreError> {
        match two_key(location)? {
            Some(pair) => {
                self.checked_provider(&pair.wrapping)?;
                self.checked_provider(&pair.signing)?;
            }
            None => {
                self.checked_provider(location)?;
            }
        }
        Ok(())
    }

    /// The key of `location` that does `role`, checked, with its provider:
    /// the location itself, or one key of a two-key master key (whose keys
    /// must both be trusted, whichever does this call).
    fn key_for(
        &self,
        location: &MasterKeyLocation,
        role: Role,
    ) -> Result<(&dyn KeyStoreProvider, MasterKeyLocation), KeyStoreError> {
        let Some(pair) = two_key(location)? else {
            return Ok((self.checked_provider(location)?, location.clone()));
        };
        let wrap_provider = self.checked_provider(&pair.wrapping)?;
        let sign_provider = self.checked_provider(&pair.signing)?;
        Ok(match role {
            Role::Wrap => (wrap_provider, pair.wrapping),
            Role::Sign => (sign_provider, pair.signing),
        })
    }

    /// [`KeyStoreProvider::describe`] after the checks of [`Self::check`].
    /// For a two-key master key: the smaller of the two sizes, and a
    /// fingerprint of both keys' fingerprints, in their roles.
    ///
    /// # Errors
    /// As [`Self::check`] and the providers' `describe`.
    pub async fn describe(
        &self,
        location: &MasterKeyLocation,
    ) -> Result<MasterKeyInfo, KeyStoreError> {
        let Some(pair) = two_key(location)? else {
            return self
                .checked_provider(location)?
                .describe(&location.key_path)
                .await;
        };
        let (wrap_provider, wrapping) = (self.checked_provider(&pair.wrapping)?, &pair.wrapping);
        let (sign_provider, signing) = (self.checked_provider(&pair.signing)?, &pair.signing);
        let wrap = wrap_provider.describe(&wrapping.key_path).await?;
        let sign = sign_provider.describe(&signing.key_path).await?;
        let mut digest = Sha256::new();
        digest.update(b"aepg two-key master key\0");
        digest.update(wrap.public_key_sha256);
        digest.update(sign.public_key_sha256);
        Ok(MasterKeyInfo {
            bits: wrap.bits.min(sign.bits),
            public_key_sha256: digest.finalize().into(),
        })
    }

    /// [`KeyStoreProvider::wrap_column_key`] after the checks of [`Self::checked_provider`].
    ///
    /// # Errors
    /// As [`Self::checked_provider`] and the provider's `wrap_column_key`.
    pub async fn wrap_column_key(
        &self,
        location: &MasterKeyLocation,
        column_key: &ColumnKey,
    ) -> Result<WrappedKey, KeyStoreError> {
        let (provider, key) = self.key_for(location, Role::Wrap)?;
        provider.wrap_column_key(&key.key_path, column_key).await
    }

    /// [`KeyStoreProvider::unwrap_column_key`] after the checks of [`Self::checked_provider`].
    ///
    /// # Errors
    /// As [`Self::checked_provider`] and the provider's `unwrap_column_key`.
    pub async fn unwrap_column_key(
        &self,
        location: &MasterKeyLocation,
        wrapped: &WrappedKey,
    ) -> Result<ColumnKey, KeyStoreError> {
        let (provider, key) = self.key_for(location, Role::Wrap)?;
        provider.unwrap_column_key(&key.key_path, wrapped).await
    }

    /// [`KeyStoreProvider::sign`] after the checks of [`Self::checked_provider`].
    ///
    /// # Errors
    /// As [`Self::checked_provider`] and the provider's `sign`.
    pub async fn sign(
        &self,
        location: &MasterKeyLocation,
        message: &[u8],
    ) -> Result<Vec<u8>, KeyStoreError> {
        let (provider, key) = self.key_for(location, Role::Sign)?;
        provider.sign(&key.key_path, message).await
    }

    /// [`KeyStoreProvider::verify`] after the checks of [`Self::checked_provider`].
    ///
    /// # Errors
    /// As [`Self::checked_provider`] and the provider's `verify`.
    pub async fn verify(
        &self,
        location: &MasterKeyLocation,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), KeyStoreError> {
        let (provider, key) = self.key_for(location, Role::Sign)?;
        provider.verify(&key.key_path, message, signature).await
    }
}

/// What a key is used for.
#[derive(Clone, Copy)]
enum Role {
    /// Wrapping and unwrapping column keys.
    Wrap,
    /// Signing and verifying records.
    Sign,
}

/// The pair, when `location` is a two-key master key.
fn two_key(location: &MasterKeyLocation) -> Result<Option<TwoKeyPath>, KeyStoreError> {
    if location.provider == TWO_KEY_PROVIDER {
        TwoKeyPath::parse(&location.key_path).map(Some)
    } else {
        Ok(None)
    }
}

impl fmt::Debug for KeyStoreRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyStoreRegistry")
            .field("providers", &self.provider_names())
            .finish()
    }
}
