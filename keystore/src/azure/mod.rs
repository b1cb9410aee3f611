//! The `azure-key-vault` provider: master keys in Azure Key Vault (or a
//! Key Vault Managed HSM). The private key never leaves the vault: wrapping
//! (`RSA-OAEP-256`), unwrapping and signing (`PS256` over the SHA-256
//! digest) are Key Vault REST calls; signatures are verified here with the
//! key's public half, fetched from the vault over TLS.
//!
//! - Key paths are key identifier URLs (`https://VAULT/keys/NAME[/VERSION]`).
//! - Credentials: a client secret, a managed identity, or a
//!   [`TokenSource`] of the application's; tokens are cached and refreshed
//!   before they expire, and fetched again once when the vault refuses one.
//! - Throttling (429, with `Retry-After`) and transient failures (5xx,
//!   connection errors) are retried with backoff; errors name the vault and
//!   key, never a token.
//!
//! A small client over `reqwest` rather than the official
//! `azure_security_keyvault_keys` crate: four REST calls do not justify its
//! dependency tree (its own HTTP pipeline, `azure_core`, `typespec`) or its
//! MSRV, and the retry and error rules here are the ones aepg's other
//! stores follow (docs/DESIGN_NOTES.md, "Master keys in Azure Key Vault").

mod credential;
mod key_id;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use credential::{without_url, CachedTokens};
pub use credential::{
    AccessToken, ClientSecretCredential, ManagedIdentityCredential, TokenHttp, TokenSource,
    KEY_VAULT_SCOPE,
};
use key_id::KeyId;

use crate::rsa_ops;
use crate::{
    ColumnKey, KeyStoreError, KeyStoreProvider, KeyWrapAlgorithm, MasterKeyInfo, WrappedKey,
};

/// The domains of Key Vault and Managed HSM in Azure's public and
/// sovereign clouds: a key path's host must be under one of them, or be a
/// host the configuration adds ([`AzureConfig::vault_host`]).
pub const AZURE_VAULT_DOMAINS: [&str; 7] = [
    ".vault.azure.net",
    ".managedhsm.azure.net",
    ".vault.azure.cn",
    ".managedhsm.azure.cn",
    ".vault.usgovcloudapi.net",
    ".managedhsm.usgovcloudapi.net",
    ".vault.microsoftazure.de",
];

/// The Key Vault REST API version this provider speaks.
pub const API_VERSION: &str = "7.4";

/// How calls are retried.
#[derive(Clone, Debug)]
pub struct RetryPolicy {
    /// Attempts in all, the first included.
    pub attempts: u32,
    /// The first backoff; each next one doubles.
    pub backoff: Duration,
    /// The longest wait, `Retry-After` included.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    /// 4 attempts, 200 ms doubling, waits capped at 30 s.
    fn default() -> Self {
        Self {
            attempts: 4,
            backoff: Duration::from_millis(200),
            max_wait: Duration::from_secs(30),
        }
    }
}

/// How an [`AzureKeyVaultStore`] is set up.
pub struct AzureConfig {
    credential: Arc<dyn TokenSource>,
    vault_hosts: Vec<String>,
    retry: RetryPolicy,
    timeout: Duration,
    extra_roots: Vec<Vec<u8>>,
    public_key_ttl: Duration,
}

impl AzureConfig {
    /// Tokens from `credential`; default retries; 30 s per request; public
    /// keys kept 5 minutes for verification.
    pub fn new(credential: impl TokenSource) -> Self {
        Self::with_token_source(Arc::new(credential))
    }

    /// Tokens from a shared source.
    pub fn with_token_source(credential: Arc<dyn TokenSource>) -> Self {
        Self {
            credential,
            vault_hosts: Vec::new(),
            retry: RetryPolicy::default(),
            timeout: Duration::from_secs(30),
            extra_roots: Vec::new(),
            public_key_ttl: Duration::from_secs(300),
        }
    }

    /// Also accepts key paths on `host` (`name:port` when not 443): a
    /// private endpoint's or a test server's. Key Vault's and Managed HSM's
    /// domains in Azure's clouds ([`AZURE_VAULT_DOMAINS`]) are accepted
    /// without it. Bearer tokens go to no other host, whatever a key path
    /// says.
    #[must_use]
    pub fn vault_host(mut self, host: &str) -> Self {
        self.vault_hosts.push(host.to_ascii_lowercase());
        self
    }

    /// How calls are retried.
    #[must_use]
    pub fn retry(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The timeout of each request.
    #[must_use]
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Also trusts this CA (PEM) for the vault and token endpoints: a
    /// private endpoint's, or a test server's.
    #[must_use]
    pub fn trust_ca_pem(mut self, pem: &[u8]) -> Self {
        self.extra_roots.push(pem.to_vec());
        self
    }

    /// How long a key's public half is kept for verifying signatures: a key
    /// disabled in the vault stops verifying within this time (its unwraps
    /// and signatures stop at once).
    #[must_use]
    pub fn public_key_ttl(mut self, ttl: Duration) -> Self {
        self.public_key_ttl = ttl;
        self
    }
}

/// Master keys in Azure Key Vault. Cloning is cheap and shares the HTTP
/// client, the token cache and the public keys.
#[derive(Clone)]
pub struct AzureKeyVaultStore {
    inner: Arc<Inner>,
}

struct Inner {
    http: TokenHttp,
    vault_hosts: Vec<String>,
    tokens: CachedTokens,
    retry: RetryPolicy,
    public_key_ttl: Duration,
    public_keys: Mutex<HashMap<String, (Instant, Arc<rsa::PublicKey>)>>,
}

impl std::fmt::Debug for AzureKeyVaultStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AzureKeyVaultStore")
            .field("retry", &self.inner.retry)
            .finish_non_exhaustive()
    }
}

fn unavailable(reason: String) -> KeyStoreError {
    KeyStoreError::ProviderUnavailable {
        provider: AzureKeyVaultStore::PROVIDER_NAME.to_owned(),
        reason,
    }
}

/// Key Vault's error body.
#[derive(Deserialize)]
struct ErrorBody {
    error: ErrorDetail,
}

#[derive(Deserialize)]
struct ErrorDetail {
    code: Option<String>,
}

/// A key operation's result.
#[derive(Deserialize)]
struct OperationResult {
    value: String,
}

/// A key bundle's key.
#[derive(Deserialize)]
struct KeyBundle {
    key: JsonWebKey,
}

#[derive(Deserialize)]
struct JsonWebKey {
    kty: String,
    n: Option<String>,
    e: Option<String>,
}

/// A call's failure: the store error to return, and the vault's status
/// when it answered.
struct VaultError {
    status: Option<reqwest::StatusCode>,
    error: KeyStoreError,
}

impl From<KeyStoreError> for VaultError {
    fn from(error: KeyStoreError) -> Self {
        Self {
            status: None,
            error,
        }
    }
}

/// Why a call did not give an answer.
enum Failure {
    /// The vault answered with this status (and error code, if any).
    Status(reqwest::StatusCode, Option<String>),
    /// Anything else, in words.
    Other(String),
}

impl AzureKeyVaultStore {
    /// The provider name catalog records use for this store.
    pub const PROVIDER_NAME: &'static str = "azure-key-vault";

    /// A store with `config`.
    ///
    /// # Errors
    /// [`KeyStoreError::ProviderUnavailable`] when a CA given is not PEM or
    /// the HTTP client cannot be built.
    pub fn new(config: AzureConfig) -> Result<Self, KeyStoreError> {
        let client = |web: bool| -> Result<reqwest::Client, KeyStoreError> {
            let mut builder = reqwest::Client::builder()
                .timeout(config.timeout)
                .redirect(reqwest::redirect::Policy::none());
            builder = if web {
                builder.https_only(true)
            } else {
                builder.no_proxy()
            };
            for pem in &config.extra_roots {
                let certificate = reqwest::Certificate::from_pem(pem).map_err(|_| {
                    unavailable("a trusted CA given is not a PEM certificate".to_owned())
                })?;
                builder = builder.add_root_certificate(certificate);
            }
            builder
                .build()
                .map_err(|_| unavailable("the HTTP client cannot be built".to_owned()))
        };
        let http = TokenHttp {
            web: client(true)?,
            local: client(false)?,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                http,
                vault_hosts: config.vault_hosts,
                tokens: CachedTokens::new(config.credential),
                retry: config.retry,
                public_key_ttl: config.public_key_ttl,
                public_keys: Mutex::new(HashMap::new()),
            }),
        })
    }

    fn parse(&self, key_path: &str) -> Result<KeyId, KeyStoreError> {
        let invalid = |reason| KeyStoreError::InvalidKeyPath {
            key_path: key_path.to_owned(),
            reason,
        };
        let id = KeyId::parse(key_path).map_err(invalid)?;
        let host = id.host();
        let known = AZURE_VAULT_DOMAINS
            .iter()
            .any(|domain| host.ends_with(domain) && host.len() > domain.len())
            || self.inner.vault_hosts.iter().any(|allowed| allowed == host);
        if !known {
            return Err(invalid(
                "its host is not a Key Vault or Managed HSM domain, nor a vault host this \
                 store was configured with: bearer tokens go to no other host",
            ));
        }
        Ok(id)
    }

    /// `operation` on the key at `key_path` (`POST KEY/operation`, or `GET
    /// KEY` when `body` is `None`), with retries and token refresh.
    async fn call(
        &self,
        key_path: &str,
        operation: Option<&str>,
        body: Option<serde_json::Value>,
    ) -> Result<reqwest::Response, VaultError> {
        let id = self.parse(key_path).map_err(VaultError::from)?;
        let url = match operation {
            Some(operation) => format!("{}/{operation}", id.url()),
            None => id.url(),
        };
        let what = format!("key {} in vault {}", id.name, id.vault);
        let retry = &self.inner.retry;
        let mut refreshed = false;
        let mut attempt = 0;
        loop {
            attempt += 1;
            let token = self
                .inner
                .tokens
                .token(&self.inner.http)
                .await
                .map_err(|reason| VaultError::from(unavailable(format!("{what}: {reason}"))))?;
            let mut request = match &body {
                Some(body) => self.inner.http.web.post(&url).json(body),
                None => self.inner.http.web.get(&url),
            };
            request = request
                .query(&[("api-version", API_VERSION)])
                .bearer_auth(token.as_str());
            let (failure, wait) = match request.send().await {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) => {
                    let status = response.status();
                    let retry_after = response
                        .headers()
                        .get(reqwest::header::RETRY_AFTER)
                        .and_then(|value| value.to_str().ok())
                        .and_then(|value| value.trim().parse::<u64>().ok())
                        .map(Duration::from_secs);
                    let code = response
                        .json::<ErrorBody>()
                        .await
                        .ok()
                        .and_then(|body| body.error.code);
                    if status == reqwest::StatusCode::UNAUTHORIZED && !refreshed {
                        // An expired or revoked token: one fresh token.
                        refreshed = true;
                        self.inner.tokens.invalidate(&token).await;
                        attempt -= 1;
                        continue;
                    }
                    let transient = status == reqwest::StatusCode::TOO_MANY_REQUESTS
                        || status.is_server_error();
                    let wait = transient.then(|| retry_after.unwrap_or(self.backoff(attempt)));
                    (Failure::Status(status, code), wait)
                }
                Err(error) => {
                    let transient = error.is_timeout() || error.is_connect() || error.is_request();
                    (
                        Failure::Other(without_url(&error)),
                        transient.then(|| self.backoff(attempt)),
                    )
                }
            };
            match wait {
                Some(wait) if attempt < retry.attempts => {
                    tokio::time::sleep(wait.min(retry.max_wait)).await;
                }
                _ => {
                    let status = match &failure {
                        Failure::Status(status, _) => Some(*status),
                        Failure::Other(_) => None,
                    };
                    return Err(VaultError {
                        status,
                        error: self.error(&what, key_path, failure, attempt),
                    });
                }
            }
        }
    }

    fn backoff(&self, attempt: u32) -> Duration {
        self.inner
            .retry
            .backoff
            .saturating_mul(1 << attempt.saturating_sub(1).min(16))
    }

    fn error(&self, what: &str, key_path: &str, failure: Failure, attempts: u32) -> KeyStoreError {
        match failure {
            Failure::Status(reqwest::StatusCode::NOT_FOUND, _) => KeyStoreError::KeyNotFound {
                provider: Self::PROVIDER_NAME.to_owned(),
                key_path: key_path.to_owned(),
            },
            Failure::Status(status, code) => unavailable(format!(
                "{what}: HTTP {status}{}{}",
                code.map(|code| format!(" ({code})")).unwrap_or_default(),
                if attempts > 1 {
                    format!(", after {attempts} attempts")
                } else {
                    String::new()
                }
            )),
            Failure::Other(reason) => unavailable(format!(
                "{what}: {reason}{}",
                if attempts > 1 {
                    format!(", after {attempts} attempts")
                } else {
                    String::new()
                }
            )),
        }
    }

    /// A key operation's result bytes.
    async fn operation(
        &self,
        key_path: &str,
        operation: &str,
        body: serde_json::Value,
    ) -> Result<Vec<u8>, VaultError> {
        let response = self.call(key_path, Some(operation), Some(body)).await?;
        let result: OperationResult = response.json().await.map_err(|_| {
            VaultError::from(unavailable(format!(
                "{key_path}: the {operation} answer is not valid JSON"
            )))
        })?;
        URL_SAFE_NO_PAD
            .decode(result.value.trim_end_matches('='))
            .map_err(|_| {
                VaultError::from(unavailable(format!(
                    "{key_path}: the {operation} answer is not base64url"
                )))
            })
    }

    /// The key's public half, from the vault (kept for the configured TTL).
    async fn public_key(&self, key_path: &str) -> Result<Arc<rsa::PublicKey>, KeyStoreError> {
        if let Some((fetched, key)) = self
            .inner
            .public_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(key_path)
        {
            if fetched.elapsed() < self.inner.public_key_ttl {
                return Ok(key.clone());
            }
        }
        let response = self
            .call(key_path, None, None)
            .await
            .map_err(|failure| failure.error)?;
        let malformed = |reason: &str| KeyStoreError::MalformedKey {
            key_path: key_path.to_owned(),
            reason: reason.to_owned(),
        };
        let bundle: KeyBundle = response
            .json()
            .await
            .map_err(|_| malformed("the vault's key bundle is not valid JSON"))?;
        if !matches!(bundle.key.kty.as_str(), "RSA" | "RSA-HSM") {
            return Err(KeyStoreError::NotRsa {
                key_path: key_path.to_owned(),
                found: format!("key type {}", bundle.key.kty),
            });
        }
        let number = |value: Option<String>| {
            value
                .and_then(|value| URL_SAFE_NO_PAD.decode(value.trim_end_matches('=')).ok())
                .ok_or_else(|| malformed("the key has no valid n or e"))
        };
        let key = Arc::new(rsa_ops::public_key_from_numbers(
            key_path,
            &number(bundle.key.n)?,
            &number(bundle.key.e)?,
        )?);
        self.inner
            .public_keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(key_path.to_owned(), (Instant::now(), key.clone()));
        Ok(key)
    }
}

#[async_trait]
impl KeyStoreProvider for AzureKeyVaultStore {
    fn name(&self) -> &str {
        Self::PROVIDER_NAME
    }

    fn validate_key_path(&self, key_path: &str) -> Result<(), KeyStoreError> {
        self.parse(key_path).map(drop)
    }

    async fn describe(&self, key_path: &str) -> Result<MasterKeyInfo, KeyStoreError> {
        rsa_ops::describe(key_path, &*self.public_key(key_path).await?)
    }

    async fn wrap_column_key(
        &self,
        key_path: &str,
        column_key: &ColumnKey,
    ) -> Result<WrappedKey, KeyStoreError> {
        let value = Zeroizing::new(URL_SAFE_NO_PAD.encode(column_key.expose_secret()));
        let ciphertext = self
            .operation(
                key_path,
                "wrapkey",
                json!({ "alg": "RSA-OAEP-256", "value": value.as_str() }),
            )
            .await
            .map_err(|failure| failure.error)?;
        Ok(WrappedKey::new(KeyWrapAlgorithm::RsaOaepSha256, ciphertext))
    }

    async fn unwrap_column_key(
        &self,
        key_path: &str,
        wrapped: &WrappedKey,
    ) -> Result<ColumnKey, KeyStoreError> {
        if wrapped.algorithm != KeyWrapAlgorithm::RsaOaepSha256 {
            return Err(KeyStoreError::UnsupportedWrapAlgorithm {
                provider: Self::PROVIDER_NAME.to_owned(),
                key_path: key_path.to_owned(),
                algorithm: wrapped.algorithm.name(),
            });
        }
        let body = json!({
            "alg": "RSA-OAEP-256",
            "value": URL_SAFE_NO_PAD.encode(&wrapped.ciphertext),
        });
        let bytes = match self.operation(key_path, "unwrapkey", body).await {
            Ok(bytes) => Zeroizing::new(bytes),
            // The vault says the value is not one this key made.
            Err(VaultError {
                status: Some(reqwest::StatusCode::BAD_REQUEST),
                ..
            }) => {
                return Err(KeyStoreError::UnwrapFailed {
                    key_path: key_path.to_owned(),
                })
            }
            Err(failure) => return Err(failure.error),
        };
        ColumnKey::from_unwrapped(bytes).map_err(|_| KeyStoreError::UnwrapFailed {
            key_path: key_path.to_owned(),
        })
    }

    async fn sign(&self, key_path: &str, message: &[u8]) -> Result<Vec<u8>, KeyStoreError> {
        let digest = Sha256::digest(message);
        let signature = self
            .operation(
                key_path,
                "sign",
                json!({ "alg": "PS256", "value": URL_SAFE_NO_PAD.encode(digest) }),
            )
            .await
            .map_err(|failure| failure.error)?;
        // The vault's PS256 must be the PSS every store signs with: checked
        // here, so a vault (or a proxy) answering otherwise is caught at
        // signing, not when every client refuses the record.
        let public = self.public_key(key_path).await?;
        rsa_ops::verify(key_path, &public, message, &signature).map_err(|_| {
            KeyStoreError::SignFailed {
                key_path: key_path.to_owned(),
            }
        })?;
        Ok(signature)
    }

    async fn verify(
        &self,
        key_path: &str,
        message: &[u8],
        signature: &[u8],
    ) -> Result<(), KeyStoreError> {
        rsa_ops::verify(
            key_path,
            &*self.public_key(key_path).await?,
            message,
            signature,
        )
    }
}
