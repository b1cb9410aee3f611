//! The `local` provider: RSA private keys as PKCS#8 PEM files in one directory.

use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

use async_trait::async_trait;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use rsa::PrivateKey;
use tokio::io::AsyncWriteExt;

use crate::rsa_ops;
use crate::{ColumnKey, KeyStoreError, KeyStoreProvider, MasterKeyInfo};

/// Permission bits that must be clear on a key file: nothing for group or others.
const GROUP_OTHER_BITS: u32 = 0o077;

/// Master keys as PKCS#8 PEM files under one root directory.
///
/// A key path is a relative path inside the root (`"billing/cmk1.pem"`).
/// Paths that are absolute, contain `..`, or lead out of the root through a
/// symbolic link are refused. Key files must not be accessible by group or
/// others (mode `0600`); [`generate_key`](Self::generate_key) writes them so.
/// Keys are read from disk on every use, so replacing or removing a file takes
/// effect at once.
#[derive(Debug, Clone)]
pub struct LocalKeyStore {
    root: PathBuf,
}

impl LocalKeyStore {
    /// The provider name catalog records use for this store.
    pub const PROVIDER_NAME: &'static str = "local";

    /// Opens the key directory `root`, which must exist.
    ///
    /// # Errors
    /// [`KeyStoreError::Io`] if the directory cannot be resolved.
    pub fn open(root: impl AsRef<Path>) -> Result<Self, KeyStoreError> {
        let root = root.as_ref();
        let root = std::fs::canonicalize(root).map_err(|source| KeyStoreError::Io {
            path: root.to_path_buf(),
            source,
        })?;
        Ok(Self { root })
    }

    /// The key directory, resolved.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Generates an RSA key pair of `bits` (2048, 3072 or 4096) and writes it to
    /// `key_path` with mode `0600`. Parent directories must exist. An existing
    /// file is never overwritten.
    ///
    /// # Errors
    /// Invalid or escaping path, existing file, unsupported size, I/O failure.
    pub async fn generate_key(
        &self,
        key_path: &str,
        bits: usize,
    ) -> Result<MasterKeyInfo, KeyStoreError> {
        let file = self.resolve_new(key_path)?;
        let key = tokio::task::spawn_blocking(move || rsa_ops::generate(bits))
            .await
            .map_err(|_| KeyStoreError::RandomnessUnavailable)??;
        let pem = key
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|_| KeyStoreError::MalformedKey {
                key_path: key_path.to_owned(),
                reason: "generated key cannot be encoded".to_owned(),
            })?;
        let io_error = |source| KeyStoreError::Io {
            path: file.clone(),
            source,
        };
        let mut out = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&file)
            .await
            .map_err(|source| {
                if source.kind() == std::io::ErrorKind::AlreadyExists {
                    KeyStoreError::KeyExists {
                        provider: Self::PROVIDER_NAME.to_owned(),
                        key_path: key_path.to_owned(),
                    }
                } else {
                    io_error(source)
                }
            })?;
        out.write_all(pem.as_bytes()).await.map_err(io_error)?;
        out.sync_all().await.map_err(io_error)?;
        rsa_ops::describe(key_path, key.as_public_key())
    }

    /// Reads and checks the key at `key_path`.
    async fn load(&self, key_path: &str) -> Result<PrivateKey, KeyStoreError> {
        let file = self.resolve_existing(key_path)?;
        let metadata = tokio::fs::metadata(&file)
            .await
            .map_err(|source| KeyStoreError::Io {
                path: file.clone(),
                source,
            })?;
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & GROUP_OTHER_BITS != 0 {
            return Err(KeyStoreError::KeyFileTooOpen { path: file, mode });
        }
        let pem = tokio::fs::read_to_string(&file)
            .await
            .map_err(|source| KeyStoreError::Io {
                path: file.clone(),
                source,
            })?;
        let pem = zeroize::Zeroizing::new(pem);
        rsa_ops::parse_private_key_pem(key_path, &pem)
    }

    /// Resolves an existing key file, following links, and checks that it is
    /// inside the root.
    fn resolve_existing(&self, key_path: &str) -> Result<PathBuf, KeyStoreError> {
        self.validate_key_path(key_path)?;
        let joined = self.root.join(key_path);
        let resolved = std::fs::canonicalize(&joined).map_err(|source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                KeyStoreError::KeyNotFound {
                    provider: Self::PROVIDER_NAME.to_owned(),
                    key_path: key_path.to_owned(),
                }
            } else {
                KeyStoreError::Io {
                    path: joined.clone(),
                    source,
                }
            }
        })?;
        self.inside_root(key_path, resolved)
    }

    /// Resolves the file a new key would be written to: its parent directory
    /// must exist inside the root, and the file itself must not exist yet.
    fn resolve_new(&self, key_path: &str) -> Result<PathBuf, KeyStoreError> {
        self.validate_key_path(key_path)?;
        let joined = self.root.join(key_path);
        let (Some(parent), Some(file_name)) = (joined.parent(), joined.file_name()) else {
            return Err(invalid(key_path, "it does not name a file"));
        };
        let parent = std::fs::canonicalize(parent).map_err(|source| KeyStoreError::Io {
            path: parent.to_path_buf(),
            source,
        })?;
        let parent = self.inside_root(key_path, parent)?;
        Ok(parent.join(file_name))
    }

    fn inside_root(&self, key_path: &str, resolved: PathBuf) -> Result<PathBuf, KeyStoreError> {
        if resolved.starts_with(&self.root) {
            Ok(resolved)
        } else {
            Err(invalid(key_path, "it leads out of the key directory"))
        }
    }
}

fn invalid(key_path: &str, reason: &'static str) -> KeyStoreError {
    KeyStoreError::InvalidKeyPath {
        key_path: key_path.to_owned(),
        reason,
    }
}

#[async_trait]
impl KeyStoreProvider for LocalKeyStore {
    fn name(&self) -> &str {
        Self::PROVIDER_NAME
    }

    fn validate_key_path(&self, key_path: &str) -> Result<(), KeyStoreError> {
        if key_path.is_empty() {
            return Err(invalid(key_path, "it is empty"));
        }
        if key_path.chars().any(char::is_control) {
            return Err(invalid(key_path, "it contains control characters"));
        }
        for component in Path::new(key_path).components() {
            match component {
                Component::Normal(_) => {}
                Component::ParentDir => return Err(invalid(key_path, "it contains `..`")),
                Component::RootDir | Component::Prefix(_) => {
                    return Err(invalid(
                        key_path,
                        "it is absolute; key paths are relative to the key directory",
                    ))
                }
                Component::CurDir => return Err(invalid(key_path, "it contains `.`")),
            }
        }
        Ok(())
    }

    async fn describe(&self, key_path: &str) -> Result<MasterKeyInfo, KeyStoreError> {
        rsa_ops::describe(key_path, self.load(key_path).await?.as_public_key())
    }

    async fn wrap_column_key(
        &self,
        key_path: &str,
        column_key: &ColumnKey,
    ) -> Result<Vec<u8>, KeyStoreError> {
        rsa_ops::wrap(
            key_path,
            self.load(key_path).await?.as_public_key(),
            column_key,
        )
    }

    async fn unwrap_column_key(
        &self,
        key_path: &str,
        wrapped: &[u8],
    ) -> Result<ColumnKey, KeyStoreError> {
        rsa_ops::unwrap(key_path, &self.load(key_path).await?, wrapped)
    }

    async fn sign(&self, key_path: &str, message: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        rsa_ops::sign(key_path, &self.load(key_path).await?, message)
    }

    async fn verify(
        &self,
        key_path: &str,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), KeyStoreError> {
        rsa_ops::verify(
            key_path,
            self.load(key_path).await?.as_public_key(),
            message,
            signature,
        )
    }
}
