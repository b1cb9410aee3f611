//! A local Azure Key Vault test server.
//!
//! [`KeyVaultServer`] implements the subset of the Key Vault keys REST API
//! that an RSA key-wrapping client uses — create and get keys; wrap, unwrap,
//! encrypt, decrypt, sign and verify with them — over HTTPS, with real RSA
//! keys, Key Vault's challenge-based bearer authentication, and two token
//! endpoints (an Entra ID client-secret endpoint and a managed-identity
//! endpoint shaped like IMDS). Tests can inject faults (throttling, outages,
//! disabled keys, expired tokens) and inspect the requests the server saw.
//!
//! Everything lives in memory and disappears with the server. The server
//! never logs tokens or key material.
//!
//! # Wire compatibility
//!
//! Microsoft's `azure-keyvault-keys` Python SDK works against it unmodified
//! (`tests/sdk_conformance.py`), given two client options: trust the
//! server's CA (`connection_verify=<ca file>`) and
//! `verify_challenge_resource=False`, because the SDK refuses a challenge
//! for `https://vault.azure.net` from a host outside `*.vault.azure.net`.
//! What the SDK sends, and the server therefore accepts:
//!
//! - `api-version=2025-07-01` (any non-empty value is accepted);
//! - the current version addressed with an empty segment: `GET /keys/{name}/`
//!   and `POST /keys/{name}//wrapkey` (`/keys/{name}/wrapkey` works too);
//! - a first request without a token, and for a POST without its body
//!   (`Content-Length: 0`), to elicit the 401 challenge, whose
//!   `authorization="{vault_url}/{tenant}"` makes the SDK ask its credential
//!   for scope `https://vault.azure.net/.default` in that tenant;
//! - base64url without padding for all binary values.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use aepg_kvserver::{KeyVaultServer, ServerConfig};
//!
//! let server = KeyVaultServer::start(ServerConfig::default()).await?;
//! let kid = server.create_key("cmk", 2048);
//! // Trust `server.ca_certificate_pem()`, get a token from
//! // `server.token_endpoint()` with `server.client_id()` and
//! // `server.client_secret()`, then use `kid` like a real Key Vault key id.
//! # let _ = kid;
//! # Ok(())
//! # }
//! ```

mod auth;
mod crypto;
mod faults;
mod http;
mod keys;
mod reply;
mod tls;
mod vault;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::{JoinHandle, JoinSet};

/// Settings for a [`KeyVaultServer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// How long an access token stays valid, in seconds. The default is one
    /// hour, as Entra ID issues. Azure SDKs refresh a token that has less than
    /// five minutes left, so lifetimes under 300 seconds make them fetch a new
    /// token for every request.
    pub token_lifetime_secs: u64,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            token_lifetime_secs: 3600,
        }
    }
}

/// Whether a request carried acceptable credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthOutcome {
    /// A token endpoint, which needs no bearer token.
    NotRequired,
    /// A Key Vault request without an `Authorization: Bearer` header (the
    /// Azure SDKs' challenge probe looks like this).
    Missing,
    /// A Key Vault request whose bearer token was unknown or expired.
    Rejected,
    /// A Key Vault request with a valid bearer token.
    Accepted,
}

/// One request the server answered, as recorded by
/// [`KeyVaultServer::request_log`]. Holds no token, body or key material.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LoggedRequest {
    /// The HTTP method, e.g. `"POST"`.
    pub method: String,
    /// The request path without its query, e.g. `"/keys/cmk/0123…/unwrapkey"`.
    pub path: String,
    /// The `api-version` query parameter, if there was one.
    pub api_version: Option<String>,
    /// How the request's credentials were judged.
    pub auth: AuthOutcome,
    /// The HTTP status code of the reply.
    pub status: u16,
}

impl LoggedRequest {
    /// Whether the request carried a valid bearer token.
    pub fn authorized(&self) -> bool {
        self.auth == AuthOutcome::Accepted
    }
}

/// State shared by the HTTP handlers and the test-control API.
pub(crate) struct Shared {
    pub(crate) vault_url: String,
    pub(crate) identity: auth::Identity,
    pub(crate) tokens: auth::Tokens,
    pub(crate) keys: keys::KeyStore,
    pub(crate) faults: faults::Faults,
    pub(crate) log: Mutex<Vec<LoggedRequest>>,
}

/// Locks `mutex`, ignoring poisoning: every critical section in this crate
/// leaves its data consistent, so a panic elsewhere does not corrupt it.
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A running Key Vault test server on `127.0.0.1`, serving HTTPS with a
/// certificate from a fresh self-signed CA.
///
/// The server runs on the Tokio runtime that started it and stops, closing
/// all its connections, when this value is dropped.
pub struct KeyVaultServer {
    shared: Arc<Shared>,
    ca_pem: String,
    addr: SocketAddr,
    accept_loop: JoinHandle<()>,
}

impl KeyVaultServer {
    /// Starts a server on `127.0.0.1` at a random port. Its TLS certificate is
    /// issued for `localhost` and `127.0.0.1` by a CA generated for this
    /// server alone (see [`ca_certificate_pem`](Self::ca_certificate_pem)).
    ///
    /// # Errors
    /// Fails if the port cannot be bound or the certificates cannot be made.
    pub async fn start(config: ServerConfig) -> std::io::Result<KeyVaultServer> {
        let tls = tls::generate()?;
        let listener = TcpListener::bind((std::net::Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let vault_url = format!("https://localhost:{}", addr.port());
        let shared = Arc::new(Shared {
            keys: keys::KeyStore::new(vault_url.clone()),
            vault_url,
            identity: auth::Identity::generate(),
            tokens: auth::Tokens::new(Duration::from_secs(config.token_lifetime_secs)),
            faults: faults::Faults::default(),
            log: Mutex::new(Vec::new()),
        });
        let accept_loop = tokio::spawn(accept_loop(listener, tls.acceptor, Arc::clone(&shared)));
        Ok(KeyVaultServer {
            shared,
            ca_pem: tls.ca_pem,
            addr,
            accept_loop,
        })
    }

    /// The vault's base URL, `https://localhost:PORT`, without a trailing
    /// slash. Key ids are `{vault_url}/keys/{name}/{version}`.
    pub fn vault_url(&self) -> String {
        self.shared.vault_url.clone()
    }

    /// The socket address the server listens on (always `127.0.0.1`).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The PEM certificate of the CA that issued the server's certificate:
    /// what a client must trust.
    pub fn ca_certificate_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// The tenant id the server accepts and names in its challenges.
    pub fn tenant(&self) -> &str {
        &self.shared.identity.tenant
    }

    /// The client (application) id the token endpoints accept.
    pub fn client_id(&self) -> &str {
        &self.shared.identity.client_id
    }

    /// The client secret the client-secret token endpoint accepts.
    pub fn client_secret(&self) -> &str {
        &self.shared.identity.client_secret
    }

    /// The client-secret token endpoint,
    /// `{vault_url}/{tenant}/oauth2/v2.0/token`: the vault URL doubles as the
    /// Entra ID authority host.
    pub fn token_endpoint(&self) -> String {
        format!(
            "{}/{}/oauth2/v2.0/token",
            self.shared.vault_url,
            self.tenant()
        )
    }

    /// The managed-identity token endpoint, shaped like IMDS:
    /// `{vault_url}/metadata/identity/oauth2/token` (HTTPS, unlike the real
    /// IMDS at `http://169.254.169.254`).
    pub fn imds_endpoint(&self) -> String {
        format!("{}/metadata/identity/oauth2/token", self.shared.vault_url)
    }

    /// Issues a bearer token the server accepts, for a caller-supplied token
    /// source. Not counted by [`tokens_issued`](Self::tokens_issued).
    pub fn valid_token(&self) -> String {
        self.shared.tokens.issue_uncounted()
    }

    /// Creates a new version of the RSA key `name` (creating the key if
    /// needed) with a modulus of `bits` and returns its key id,
    /// `{vault_url}/keys/{name}/{version}`.
    ///
    /// # Panics
    /// If `name` is not a valid Key Vault name (1–127 letters, digits and
    /// dashes), `bits` is not 2048, 3072 or 4096, or the OS RNG fails.
    pub fn create_key(&self, name: &str, bits: usize) -> String {
        let key = crypto::generate(bits).expect("key size must be 2048, 3072 or 4096");
        self.shared
            .keys
            .insert(name, key, keys::NewKeyOptions::default())
            .expect("key name must be 1-127 letters, digits and dashes")
            .kid
    }

    /// Disables every existing version of key `name`: from now on every
    /// operation on them, `get` included, fails with 403 Forbidden. A version
    /// created later is enabled.
    ///
    /// # Panics
    /// If there is no key `name`.
    pub fn disable_key(&self, name: &str) {
        assert!(
            self.shared.keys.set_enabled(name, false),
            "no key named {name:?}"
        );
    }

    /// Re-enables every version of key `name`.
    ///
    /// # Panics
    /// If there is no key `name`.
    pub fn enable_key(&self, name: &str) {
        assert!(
            self.shared.keys.set_enabled(name, true),
            "no key named {name:?}"
        );
    }

    /// Answers the next `n` authenticated Key Vault requests with
    /// 429 Too Many Requests and `Retry-After: retry_after_secs`.
    pub fn throttle_next(&self, n: usize, retry_after_secs: u64) {
        self.shared.faults.throttle_next(n, retry_after_secs);
    }

    /// Answers the next `n` authenticated Key Vault requests with
    /// 503 Service Unavailable (after any pending throttling).
    pub fn fail_next(&self, n: usize) {
        self.shared.faults.fail_next(n);
    }

    /// Every request answered so far, oldest first, token endpoints included.
    pub fn request_log(&self) -> Vec<LoggedRequest> {
        lock(&self.shared.log).clone()
    }

    /// Forgets the requests logged so far.
    pub fn clear_request_log(&self) {
        lock(&self.shared.log).clear();
    }

    /// How many tokens the two token endpoints have issued.
    pub fn tokens_issued(&self) -> usize {
        self.shared.tokens.issued()
    }

    /// Invalidates every token issued so far (including
    /// [`valid_token`](Self::valid_token)s): requests bearing them get the
    /// 401 challenge, as if they had expired.
    pub fn expire_tokens(&self) {
        self.shared.tokens.expire_all();
    }
}

impl Drop for KeyVaultServer {
    fn drop(&mut self) {
        // Aborting the loop drops its JoinSet, which aborts every connection.
        self.accept_loop.abort();
    }
}

impl std::fmt::Debug for KeyVaultServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyVaultServer")
            .field("vault_url", &self.shared.vault_url)
            .field("tenant", &self.shared.identity.tenant)
            .finish_non_exhaustive()
    }
}

async fn accept_loop(
    listener: TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    shared: Arc<Shared>,
) {
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(http::serve_connection(
                        stream,
                        acceptor.clone(),
                        Arc::clone(&shared),
                    ));
                }
                // Typically out of file descriptors: back off briefly.
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
}
