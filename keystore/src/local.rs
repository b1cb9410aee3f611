//! The `local` provider: RSA private keys as PKCS#8 PEM files in one directory.

use std::collections::HashMap;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use async_trait::async_trait;
use rsa::pkcs8::{EncodePrivateKey, LineEnding};
use tokio::io::AsyncWriteExt;

use crate::rsa_ops::{self, HeldKey};
use crate::{ColumnKey, KeyStoreError, KeyStoreProvider, MasterKeyInfo, WrappedKey};

/// Permission bits that must be clear on a key file: nothing for group or others.
const GROUP_OTHER_BITS: u32 = 0o077;

/// Master keys as PKCS#8 PEM files under one root directory.
///
/// A key path is a relative path inside the root (`"billing/cmk1.pem"`).
/// Paths that are absolute, contain `..`, or lead out of the root through a
/// symbolic link are refused. Key files must not be accessible by group or
/// others (mode `0600`); [`generate_key`](Self::generate_key) writes them so.
///
/// Every use looks at the file (path, permissions, identity), so replacing,
/// removing or opening up a file takes effect at once; the parsed key is
/// kept in memory while the file's identity (device, inode, size,
/// modification and change times) stays the same, so a use costs a `stat`
/// and not a read and parse of the PEM (about 150 µs). Kept keys are wiped
/// when dropped.
#[derive(Debug, Clone)]
pub struct LocalKeyStore {
    root: PathBuf,
    parsed: Arc<Mutex<KeptKeys>>,
    /// Key files read and parsed, for tests.
    reads: Arc<std::sync::atomic::AtomicUsize>,
}

/// Parsed keys by resolved file, with the identity of the file they came from.
type KeptKeys = HashMap<PathBuf, (FileIdentity, Arc<HeldKey>)>;

/// What tells one version of a key file from another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileIdentity {
    device: u64,
    inode: u64,
    len: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl FileIdentity {
    fn of(metadata: &std::fs::Metadata) -> Self {
        Self {
            device: metadata.dev(),
            inode: metadata.ino(),
            len: metadata.len(),
            modified: (metadata.mtime(), metadata.mtime_nsec()),
            changed: (metadata.ctime(), metadata.ctime_nsec()),
        }
    }
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
        Ok(Self {
            root,
            parsed: Arc::default(),
            reads: Arc::default(),
        })
    }

    /// How many times a key file was read and parsed (a use of a key kept
    /// in memory reads nothing).
    #[cfg(feature = "test-util")]
    pub fn key_file_reads(&self) -> usize {
        self.reads.load(std::sync::atomic::Ordering::SeqCst)
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
        let owned_path = key_path.to_owned();
        let key = tokio::task::spawn_blocking(move || rsa_ops::generate(&owned_path, bits))
            .await
            .map_err(|_| KeyStoreError::RandomnessUnavailable)??;
        let pem = key
            .private_key()
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

    /// Checks the key file at `key_path` and returns its key: the one kept
    /// in memory if the file is the same as when it was parsed.
    async fn load(&self, key_path: &str) -> Result<Arc<HeldKey>, KeyStoreError> {
        let file = self.resolve_existing(key_path)?;
        let metadata = tokio::fs::metadata(&file)
            .await
            .map_err(|source| KeyStoreError::Io {
                path: file.clone(),
                source,
            })?;
        let mode = metadata.permissions().mode() & 0o7777;
        if mode & GROUP_OTHER_BITS != 0 {
            self.forget(&file);
            return Err(KeyStoreError::KeyFileTooOpen { path: file, mode });
        }
        let identity = FileIdentity::of(&metadata);
        if let Some((kept, key)) = self.kept().get(&file) {
            if *kept == identity {
                return Ok(key.clone());
            }
        }
        let pem = tokio::fs::read_to_string(&file)
            .await
            .map_err(|source| KeyStoreError::Io {
                path: file.clone(),
                source,
            })?;
        let pem = zeroize::Zeroizing::new(pem);
        self.reads.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let key = Arc::new(rsa_ops::parse_private_key_pem(key_path, &pem)?);
        // Kept under the identity seen before reading: a file changed while
        // it was read is read again at its next use.
        self.kept().insert(file, (identity, key.clone()));
        Ok(key)
    }

    fn kept(&self) -> MutexGuard<'_, KeptKeys> {
        self.parsed.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn forget(&self, file: &Path) {
        self.kept().remove(file);
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
    ) -> Result<WrappedKey, KeyStoreError> {
        rsa_ops::wrap(
            key_path,
            self.load(key_path).await?.as_public_key(),
            column_key,
        )
    }

    async fn unwrap_column_key(
        &self,
        key_path: &str,
        wrapped: &WrappedKey,
    ) -> Result<ColumnKey, KeyStoreError> {
        rsa_ops::unwrap(
            Self::PROVIDER_NAME,
            key_path,
            &*self.load(key_path).await?,
            wrapped,
        )
    }

    async fn sign(&self, key_path: &str, message: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        rsa_ops::sign(key_path, &*self.load(key_path).await?, message)
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
