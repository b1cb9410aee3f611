//! The `pkcs11` provider: master keys inside an HSM or smart card, used
//! through the token's PKCS#11 module. The private key never leaves the
//! token: it is generated there (sensitive, not extractable), and every
//! unwrap and signature runs there.
//!
//! - Key paths are PKCS#11 URIs naming the module, token and key
//!   (see [`key_path`](self) below and `docs/KEY_STORES.md`).
//! - The PIN comes from the environment or from a callback
//!   ([`PinSource`]), never from the catalog. A PIN the token refused is
//!   not offered again, so a wrong PIN cannot lock the token.
//! - Sessions are pooled per token, and every call runs on tokio's blocking
//!   pool, off the async executor.
//! - A token that goes away (removed, re-initialized) is looked up again on
//!   the next call.

mod key_path;
#[cfg(feature = "test-util")]
pub mod softhsm;
mod token;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use cryptoki::context::Function;
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::Attribute;
use cryptoki::session::Session;
use rand::TryRng;
use zeroize::Zeroizing;

use crate::rsa_ops;
use crate::{
    ColumnKey, KeyStoreError, KeyStoreProvider, KeyWrapAlgorithm, MasterKeyInfo, WrappedKey,
};
use key_path::{Pkcs11KeyPath, TokenSelector};
use token::{FindError, KeyObjects, Module, Token, TokenFailure};

/// The environment variable [`PinSource::default`] reads the PIN from.
pub const DEFAULT_PIN_VARIABLE: &str = "AEPG_PKCS11_PIN";

/// A function of a token's label that gives its user PIN, or `None`.
pub type PinCallback = Arc<dyn Fn(&str) -> Option<Zeroizing<String>> + Send + Sync>;

/// Where the token's user PIN comes from. Never the catalog, never a key path.
#[derive(Clone)]
pub enum PinSource {
    /// The named environment variable, read at each login.
    Environment(String),
    /// A function of the token's label, called at each login; `None` when
    /// it has no PIN for that token.
    Callback(PinCallback),
}

impl Default for PinSource {
    /// The environment variable [`DEFAULT_PIN_VARIABLE`].
    fn default() -> Self {
        Self::Environment(DEFAULT_PIN_VARIABLE.to_owned())
    }
}

impl fmt::Debug for PinSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Environment(name) => f.debug_tuple("Environment").field(name).finish(),
            Self::Callback(_) => f.write_str("Callback(..)"),
        }
    }
}

impl PinSource {
    fn pin(&self, token_label: &str) -> Result<Zeroizing<String>, String> {
        match self {
            Self::Environment(name) => match std::env::var(name) {
                Ok(pin) => Ok(Zeroizing::new(pin)),
                Err(std::env::VarError::NotPresent) => Err(format!(
                    "no PIN: the environment variable {name} is not set"
                )),
                Err(std::env::VarError::NotUnicode(_)) => Err(format!(
                    "the environment variable {name} is not valid Unicode"
                )),
            },
            Self::Callback(callback) => callback(token_label).ok_or_else(|| {
                format!("no PIN: the PIN callback has none for token {token_label:?}")
            }),
        }
    }
}

/// How a [`Pkcs11KeyStore`] is set up: its modules by name, the PIN source,
/// the wrapping algorithms it may use, the sessions it keeps.
#[derive(Clone, Debug)]
pub struct Pkcs11Config {
    modules: BTreeMap<String, PathBuf>,
    pin: PinSource,
    wrap_algorithms: Vec<KeyWrapAlgorithm>,
    max_idle_sessions: usize,
}

impl Default for Pkcs11Config {
    fn default() -> Self {
        Self {
            modules: BTreeMap::new(),
            pin: PinSource::default(),
            wrap_algorithms: KeyWrapAlgorithm::ALL.to_vec(),
            max_idle_sessions: 4,
        }
    }
}

impl Pkcs11Config {
    /// No modules yet; PIN from [`DEFAULT_PIN_VARIABLE`]; RSA-OAEP-SHA-256
    /// where the token does it, else RSA-OAEP-SHA-1; 4 idle sessions per token.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the module at `library` (its `.so`/`.dll`) under `name`, the
    /// `module-name` key paths use.
    #[must_use]
    pub fn module(mut self, name: impl Into<String>, library: impl Into<PathBuf>) -> Self {
        self.modules.insert(name.into(), library.into());
        self
    }

    /// Where the PIN comes from.
    #[must_use]
    pub fn pin(mut self, pin: PinSource) -> Self {
        self.pin = pin;
        self
    }

    /// The wrapping algorithms to try, in order, when wrapping a new column
    /// key: the first one the token can both wrap and unwrap with is used.
    /// `[RsaOaepSha256]` refuses tokens without SHA-256 OAEP.
    #[must_use]
    pub fn wrap_algorithms(
        mut self,
        algorithms: impl IntoIterator<Item = KeyWrapAlgorithm>,
    ) -> Self {
        self.wrap_algorithms = algorithms.into_iter().collect();
        self
    }

    /// How many idle sessions to keep per token (at least one is kept, so
    /// the login lasts).
    #[must_use]
    pub fn max_idle_sessions(mut self, sessions: usize) -> Self {
        self.max_idle_sessions = sessions.max(1);
        self
    }
}

/// Master keys in PKCS#11 tokens (HSMs, smart cards, SoftHSM2). Cloning is
/// cheap and shares the loaded modules and session pools.
#[derive(Clone)]
pub struct Pkcs11KeyStore {
    inner: Arc<Inner>,
}

struct Inner {
    config: Pkcs11Config,
    modules: Mutex<HashMap<String, Arc<Module>>>,
    tokens: Mutex<HashMap<(String, TokenSelector), Arc<Token>>>,
}

impl fmt::Debug for Pkcs11KeyStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pkcs11KeyStore")
            .field("modules", &self.inner.config.modules)
            .field("pin", &self.inner.config.pin)
            .finish_non_exhaustive()
    }
}

/// The mechanism of a wrapping algorithm.
fn oaep(algorithm: KeyWrapAlgorithm) -> Mechanism<'static> {
    let (hash, mgf) = match algorithm {
        KeyWrapAlgorithm::RsaOaepSha1 => (MechanismType::SHA1, PkcsMgfType::MGF1_SHA1),
        KeyWrapAlgorithm::RsaOaepSha256 => (MechanismType::SHA256, PkcsMgfType::MGF1_SHA256),
    };
    Mechanism::RsaPkcsOaep(PkcsOaepParams::new(hash, mgf, PkcsOaepSource::empty()))
}

/// RSA-PSS with SHA-256, MGF1-SHA-256 and a 32-byte salt: what every
/// provider signs with.
fn pss() -> Mechanism<'static> {
    Mechanism::Sha256RsaPkcsPss(PkcsPssParams {
        hash_alg: MechanismType::SHA256,
        mgf: PkcsMgfType::MGF1_SHA256,
        s_len: 32.into(),
    })
}

impl Pkcs11KeyStore {
    /// The provider name catalog records use for this store.
    pub const PROVIDER_NAME: &'static str = "pkcs11";

    /// A store with `config`. Modules are loaded at first use.
    ///
    /// # Errors
    /// [`KeyStoreError::ProviderUnavailable`] when `config` names no module
    /// or no wrapping algorithm.
    pub fn new(config: Pkcs11Config) -> Result<Self, KeyStoreError> {
        if config.modules.is_empty() {
            return Err(unavailable("no PKCS#11 module is configured".to_owned()));
        }
        if config.wrap_algorithms.is_empty() {
            return Err(unavailable(
                "no key wrapping algorithm is allowed".to_owned(),
            ));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                modules: Mutex::new(HashMap::new()),
                tokens: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Generates an RSA key pair of `bits` (2048, 3072 or 4096) inside the
    /// token at `key_path`: the private key sensitive and not extractable,
    /// able to decrypt and sign only; the public key able to encrypt and
    /// verify. A key path without `id` gets a random 16-byte `CKA_ID`.
    ///
    /// # Errors
    /// An invalid path, a key already at that path, an unsupported size, or
    /// the token's refusal.
    pub async fn generate_key(
        &self,
        key_path: &str,
        bits: usize,
    ) -> Result<MasterKeyInfo, KeyStoreError> {
        if !crate::GENERATABLE_KEY_BITS.contains(&bits) {
            return Err(KeyStoreError::UnsupportedKeySize { bits });
        }
        self.call(key_path, move |session, path, key_path| {
            if token::find_key(session, path)
                .map_err(|e| find_failure(e, key_path))?
                .is_some()
            {
                return Err(KeyStoreError::KeyExists {
                    provider: Self::PROVIDER_NAME.to_owned(),
                    key_path: key_path.to_owned(),
                }
                .into());
            }
            let id = match &path.id {
                Some(id) => id.clone(),
                None => {
                    let mut id = vec![0; 16];
                    rand::rngs::SysRng
                        .try_fill_bytes(&mut id)
                        .map_err(|_| KeyStoreError::RandomnessUnavailable)?;
                    id
                }
            };
            let mut public = vec![
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Modifiable(false),
                Attribute::Encrypt(true),
                Attribute::Verify(true),
                Attribute::Wrap(false),
                Attribute::ModulusBits((bits as u64).into()),
                Attribute::PublicExponent(vec![1, 0, 1]),
                Attribute::Id(id.clone()),
            ];
            let mut private = vec![
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Decrypt(true),
                Attribute::Sign(true),
                Attribute::Unwrap(false),
                Attribute::Derive(false),
                Attribute::Id(id),
            ];
            if let Some(label) = &path.label {
                public.push(Attribute::Label(label.as_bytes().to_vec()));
                private.push(Attribute::Label(label.as_bytes().to_vec()));
            }
            let (public, _) =
                session.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)?;
            describe_object(session, public, key_path)
        })
        .await
    }

    /// The DER `SubjectPublicKeyInfo` of the master key at `key_path`, to
    /// hand to whoever must check its signatures or wrap for it.
    ///
    /// # Errors
    /// An invalid path, no key there, or the token's refusal.
    pub async fn public_key_der(&self, key_path: &str) -> Result<Vec<u8>, KeyStoreError> {
        self.call(key_path, |session, path, key_path| {
            let objects = key(session, path, key_path)?;
            let key = public_key(session, objects.private, key_path)?;
            Ok(rsa::pkcs8::EncodePublicKey::to_public_key_der(&key)
                .map_err(|_| KeyStoreError::MalformedKey {
                    key_path: key_path.to_owned(),
                    reason: "public key cannot be encoded".to_owned(),
                })?
                .into_vec())
        })
        .await
    }

    /// Runs `operation` on a logged-in session of the token `key_path`
    /// names, on the blocking pool. A token that went away is looked up once
    /// more; a session the module logged out is logged in again.
    async fn call<T, F>(&self, key_path: &str, operation: F) -> Result<T, KeyStoreError>
    where
        T: Send + 'static,
        F: Fn(&Session, &Pkcs11KeyPath, &str) -> Result<T, CallError> + Send + 'static,
    {
        let path = self.parse(key_path)?;
        let inner = self.inner.clone();
        let key_path = key_path.to_owned();
        tokio::task::spawn_blocking(move || inner.call(&path, &key_path, &operation))
            .await
            .map_err(|_| unavailable("a PKCS#11 call panicked".to_owned()))?
    }

    fn parse(&self, key_path: &str) -> Result<Pkcs11KeyPath, KeyStoreError> {
        // What follows a '?' may be a PIN (`?pin-value=`): never repeated.
        let shown = match key_path.split_once('?') {
            Some((before, _)) => format!("{before}?…"),
            None => key_path.to_owned(),
        };
        let invalid = |reason| KeyStoreError::InvalidKeyPath {
            key_path: shown.clone(),
            reason,
        };
        let path = Pkcs11KeyPath::parse(key_path).map_err(invalid)?;
        if !self.inner.config.modules.contains_key(&path.module) {
            return Err(invalid(
                "its module-name is not a module this store is configured with",
            ));
        }
        Ok(path)
    }
}

/// How an operation fails: a key store error to return as it is, or a
/// token error the retry loop looks at first.
enum CallError {
    Store(KeyStoreError),
    Token(TokenFailure),
}

impl From<KeyStoreError> for CallError {
    fn from(error: KeyStoreError) -> Self {
        Self::Store(error)
    }
}

impl From<CkError> for CallError {
    fn from(error: CkError) -> Self {
        Self::Token(error.into())
    }
}

fn unavailable(reason: String) -> KeyStoreError {
    KeyStoreError::ProviderUnavailable {
        provider: Pkcs11KeyStore::PROVIDER_NAME.to_owned(),
        reason,
    }
}

fn find_failure(error: FindError, key_path: &str) -> CallError {
    match error {
        FindError::Token(error) => error.into(),
        FindError::Ambiguous(count) => CallError::Store(unavailable(format!(
            "{count} private keys match {key_path:?}: name the key by id as well"
        ))),
    }
}

impl Inner {
    fn module(&self, name: &str) -> Result<Arc<Module>, KeyStoreError> {
        let mut modules = self.modules.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(module) = modules.get(name) {
            return Ok(module.clone());
        }
        let library = self
            .config
            .modules
            .get(name)
            .ok_or_else(|| unavailable(format!("module {name:?} is not configured")))?;
        let module = Arc::new(Module::load(name, library).map_err(unavailable)?);
        modules.insert(name.to_owned(), module.clone());
        Ok(module)
    }

    fn token(&self, module: &Module, path: &Pkcs11KeyPath) -> Result<Arc<Token>, KeyStoreError> {
        let key = (module.name.clone(), path.token.clone());
        let mut tokens = self.tokens.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(token) = tokens.get(&key) {
            return Ok(token.clone());
        }
        let name = format!("{} in module {:?}", path.token.describe(), module.name);
        let (slot, label, serial) = module
            .find_slot(&path.token)
            .map_err(unavailable)?
            .ok_or_else(|| unavailable(format!("{name} is not present")))?;
        let token = Arc::new(Token::new(slot, name, label, serial));
        tokens.insert(key, token.clone());
        Ok(token)
    }

    fn forget_token(&self, module: &Module, path: &Pkcs11KeyPath) {
        self.tokens
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&(module.name.clone(), path.token.clone()));
    }

    fn call<T>(
        &self,
        path: &Pkcs11KeyPath,
        key_path: &str,
        operation: &dyn Fn(&Session, &Pkcs11KeyPath, &str) -> Result<T, CallError>,
    ) -> Result<T, KeyStoreError> {
        let module = self.module(&path.module)?;
        let mut attempts = 0;
        loop {
            attempts += 1;
            let token = self.token(&module, path)?;
            let login = |session: &Session| -> Result<(), CallError> {
                let pin = self.config.pin.pin(&token.label).map_err(unavailable)?;
                token.login(&module, session, &pin).map_err(unavailable)?;
                Ok(())
            };
            let outcome = token
                .session(&module)
                .map_err(CallError::from)
                .and_then(|session| {
                    // Checked every time: any logout (another store's, the
                    // module's) ends every session's login, and a session
                    // not logged in finds no private key.
                    if !Token::logged_in(&session)? {
                        login(&session)?;
                    }
                    let result = operation(&session, path, key_path);
                    // Only a session that did its work, or failed for a
                    // reason of the caller's, goes back to the pool.
                    if matches!(result, Ok(_) | Err(CallError::Store(_))) {
                        token.give_back(session, self.config.max_idle_sessions);
                    }
                    result
                });
            match outcome {
                Ok(value) => return Ok(value),
                // The token in the slot found earlier may have been replaced
                // by another: look it up again, once.
                Err(CallError::Store(KeyStoreError::KeyNotFound { .. })) if attempts == 1 => {
                    self.forget_token(&module, path);
                }
                Err(CallError::Store(error)) => return Err(error),
                Err(CallError::Token(TokenFailure::Gone(error))) => {
                    self.forget_token(&module, path);
                    if attempts >= 2 {
                        return Err(unavailable(format!(
                            "{} went away: {}",
                            token.name,
                            token::short(&error)
                        )));
                    }
                }
                // Logged out between the check and the call: once more.
                Err(CallError::Token(TokenFailure::NotLoggedIn)) if attempts == 1 => {}
                Err(CallError::Token(TokenFailure::NotLoggedIn)) => {
                    return Err(unavailable(format!("{} stays logged out", token.name)))
                }
                Err(CallError::Token(TokenFailure::Other(error))) => {
                    return Err(unavailable(format!(
                        "{} refused an operation with key {key_path:?}: {}",
                        token.name,
                        token::short(&error)
                    )))
                }
            }
        }
    }
}

/// The key objects `path` names, or [`KeyStoreError::KeyNotFound`].
fn key(session: &Session, path: &Pkcs11KeyPath, key_path: &str) -> Result<KeyObjects, CallError> {
    token::find_key(session, path)
        .map_err(|error| find_failure(error, key_path))?
        .ok_or_else(|| {
            CallError::Store(KeyStoreError::KeyNotFound {
                provider: Pkcs11KeyStore::PROVIDER_NAME.to_owned(),
                key_path: key_path.to_owned(),
            })
        })
}

/// The public key object of `objects`, which wrapping in the token needs,
/// once its numbers are checked to be the private key's: a public object
/// is not protected by the PIN, and must not stand in for another key.
fn public_object(
    session: &Session,
    objects: &KeyObjects,
    key_path: &str,
) -> Result<cryptoki::object::ObjectHandle, CallError> {
    let public = objects.public.ok_or_else(|| {
        CallError::Store(unavailable(format!(
            "the token holds no public key object for {key_path:?}"
        )))
    })?;
    if token::public_numbers(session, public)? != token::public_numbers(session, objects.private)? {
        return Err(CallError::Store(unavailable(format!(
            "the token's public key object for {key_path:?} is not the private key's"
        ))));
    }
    Ok(public)
}

fn describe_object(
    session: &Session,
    object: cryptoki::object::ObjectHandle,
    key_path: &str,
) -> Result<MasterKeyInfo, CallError> {
    let key = public_key(session, object, key_path)?;
    Ok(rsa_ops::describe(key_path, &key)?)
}

/// The RSA public key of `object` (a public or private key object), of a
/// size a master key may have.
fn public_key(
    session: &Session,
    object: cryptoki::object::ObjectHandle,
    key_path: &str,
) -> Result<rsa::PublicKey, CallError> {
    let (modulus, exponent) = token::public_numbers(session, object)?;
    Ok(rsa_ops::public_key_from_numbers(
        key_path, &modulus, &exponent,
    )?)
}

/// Whether the token refused a mechanism or its parameters (an OAEP hash
/// it lacks; SoftHSM2 says `CKR_ARGUMENTS_BAD` when an encryption or
/// decryption begins), as opposed to failing the operation itself.
fn mechanism_refused(error: &CkError) -> bool {
    matches!(
        error,
        CkError::Pkcs11(
            RvError::MechanismInvalid | RvError::MechanismParamInvalid,
            _
        ) | CkError::Pkcs11(
            RvError::ArgumentsBad,
            Function::EncryptInit | Function::DecryptInit
        )
    )
}

#[async_trait]
impl KeyStoreProvider for Pkcs11KeyStore {
    fn name(&self) -> &str {
        Self::PROVIDER_NAME
    }

    fn validate_key_path(&self, key_path: &str) -> Result<(), KeyStoreError> {
        self.parse(key_path).map(drop)
    }

    async fn describe(&self, key_path: &str) -> Result<MasterKeyInfo, KeyStoreError> {
        self.call(key_path, |session, path, key_path| {
            let objects = key(session, path, key_path)?;
            describe_object(session, objects.private, key_path)
        })
        .await
    }

    async fn wrap_column_key(
        &self,
        key_path: &str,
        column_key: &ColumnKey,
    ) -> Result<WrappedKey, KeyStoreError> {
        let secret = Zeroizing::new(column_key.expose_secret().to_vec());
        let algorithms = self.inner.config.wrap_algorithms.clone();
        self.call(key_path, move |session, path, key_path| {
            let objects = key(session, path, key_path)?;
            let public = public_object(session, &objects, key_path)?;
            let mut refused = false;
            for &algorithm in &algorithms {
                // Wrapped, then unwrapped again in the token: a value this
                // key cannot unwrap is never stored.
                let attempt = session
                    .encrypt(&oaep(algorithm), public, &secret)
                    .map_err(CallError::from)
                    .and_then(|ciphertext| {
                        let back = Zeroizing::new(session.decrypt(
                            &oaep(algorithm),
                            objects.private,
                            &ciphertext,
                        )?);
                        if back.as_slice() != secret.as_slice() {
                            return Err(CallError::Store(KeyStoreError::WrapFailed {
                                key_path: key_path.to_owned(),
                            }));
                        }
                        Ok(WrappedKey::new(algorithm, ciphertext))
                    });
                match attempt {
                    Err(CallError::Token(TokenFailure::Other(error)))
                        if mechanism_refused(&error) =>
                    {
                        refused = true;
                    }
                    other => return other,
                }
            }
            if refused {
                return Err(CallError::Store(unavailable(format!(
                    "the token of {key_path:?} can wrap and unwrap with none of the allowed \
                     wrapping algorithms ({})",
                    algorithms
                        .iter()
                        .map(|algorithm| algorithm.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))));
            }
            Err(CallError::Store(KeyStoreError::WrapFailed {
                key_path: key_path.to_owned(),
            }))
        })
        .await
    }

    async fn unwrap_column_key(
        &self,
        key_path: &str,
        wrapped: &WrappedKey,
    ) -> Result<ColumnKey, KeyStoreError> {
        if !self
            .inner
            .config
            .wrap_algorithms
            .contains(&wrapped.algorithm)
        {
            return Err(KeyStoreError::UnsupportedWrapAlgorithm {
                provider: Self::PROVIDER_NAME.to_owned(),
                key_path: key_path.to_owned(),
                algorithm: wrapped.algorithm.name(),
            });
        }
        let wrapped = wrapped.clone();
        self.call(key_path, move |session, path, key_path| {
            let objects = key(session, path, key_path)?;
            let failed = || {
                CallError::Store(KeyStoreError::UnwrapFailed {
                    key_path: key_path.to_owned(),
                })
            };
            match session.decrypt(
                &oaep(wrapped.algorithm),
                objects.private,
                &wrapped.ciphertext,
            ) {
                Ok(bytes) => ColumnKey::from_unwrapped(Zeroizing::new(bytes)).map_err(|_| failed()),
                Err(error) if mechanism_refused(&error) => {
                    Err(CallError::Store(KeyStoreError::UnsupportedWrapAlgorithm {
                        provider: Pkcs11KeyStore::PROVIDER_NAME.to_owned(),
                        key_path: key_path.to_owned(),
                        algorithm: wrapped.algorithm.name(),
                    }))
                }
                Err(error) => match TokenFailure::from(error) {
                    TokenFailure::Other(CkError::Pkcs11(
                        RvError::GeneralError
                        | RvError::EncryptedDataInvalid
                        | RvError::EncryptedDataLenRange
                        | RvError::DataInvalid
                        | RvError::DataLenRange
                        | RvError::FunctionFailed,
                        _,
                    )) => Err(failed()),
                    other => Err(CallError::Token(other)),
                },
            }
        })
        .await
    }

    async fn sign(&self, key_path: &str, message: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        let message = message.to_vec();
        self.call(key_path, move |session, path, key_path| {
            let objects = key(session, path, key_path)?;
            Ok(session.sign(&pss(), objects.private, &message)?)
        })
        .await
    }

    async fn verify(
        &self,
        key_path: &str,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), KeyStoreError> {
        let (message, signature) = (message.to_vec(), signature.to_vec());
        self.call(key_path, move |session, path, key_path| {
            // In software, with the private key object's own numbers: a
            // public key object could be replaced without the PIN.
            let objects = key(session, path, key_path)?;
            let public = public_key(session, objects.private, key_path)?;
            Ok(rsa_ops::verify(key_path, &public, &message, &signature)?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::{Pkcs11Config, Pkcs11KeyStore};
    use crate::{KeyStoreError, KeyStoreProvider};

    #[test]
    fn key_paths_must_name_a_configured_module() {
        let store =
            Pkcs11KeyStore::new(Pkcs11Config::new().module("softhsm2", "/nonexistent.so")).unwrap();
        store
            .validate_key_path("pkcs11:module-name=softhsm2;token=t;object=k")
            .unwrap();
        let err = store
            .validate_key_path("pkcs11:module-name=opensc;token=t;object=k")
            .unwrap_err();
        assert!(matches!(err, KeyStoreError::InvalidKeyPath { .. }), "{err}");
        assert!(Pkcs11KeyStore::new(Pkcs11Config::new()).is_err());
        assert!(
            Pkcs11KeyStore::new(Pkcs11Config::new().module("m", "/x.so").wrap_algorithms([]))
                .is_err()
        );
    }

    #[tokio::test]
    async fn a_module_that_cannot_be_loaded_is_a_clear_error() {
        let store =
            Pkcs11KeyStore::new(Pkcs11Config::new().module("softhsm2", "/nonexistent/lib.so"))
                .unwrap();
        let err = store
            .describe("pkcs11:module-name=softhsm2;token=t;object=k")
            .await
            .unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, KeyStoreError::ProviderUnavailable { .. })
                && text.contains("/nonexistent/lib.so"),
            "{text}"
        );
    }
}
