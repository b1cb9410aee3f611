//! Where the bearer tokens for Key Vault come from, and their cache.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde::Deserialize;
use tokio::sync::Mutex;
use zeroize::Zeroizing;

/// The scope of Key Vault tokens (the public cloud's; sovereign clouds
/// give theirs with [`ClientSecretCredential::scope`]).
pub const KEY_VAULT_SCOPE: &str = "https://vault.azure.net/.default";

/// A bearer token and when it expires.
#[derive(Clone)]
pub struct AccessToken {
    /// The token. Never printed: `Debug` shows its expiry only.
    pub token: Zeroizing<String>,
    /// When it stops being valid.
    pub expires_at: SystemTime,
}

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// The store's HTTP clients, lent to token sources (the built-in ones reach
/// their token endpoints with them, trusting the same CAs as the vault).
pub struct TokenHttp {
    /// HTTPS only, through the environment's proxy if any: the sign-in
    /// authority and the vault.
    pub(crate) web: reqwest::Client,
    /// No proxy, plain HTTP allowed: the machine's own metadata service,
    /// whose answer (a token) must not pass through a proxy.
    pub(crate) local: reqwest::Client,
}

/// A source of Key Vault bearer tokens: a client secret, a managed
/// identity, or one the application supplies (workload identity, a
/// certificate credential of its own, …).
#[async_trait]
pub trait TokenSource: Send + Sync + 'static {
    /// A fresh token. Errors are words for the operator, never a secret.
    async fn token(&self, http: &TokenHttp) -> Result<AccessToken, String>;
}

/// Microsoft Entra ID's client-credentials flow with a client secret.
pub struct ClientSecretCredential {
    authority: String,
    tenant: String,
    client_id: String,
    secret: Zeroizing<String>,
    scope: String,
}

impl ClientSecretCredential {
    /// The public cloud's authority (`https://login.microsoftonline.com`).
    pub const PUBLIC_AUTHORITY: &'static str = "https://login.microsoftonline.com";

    /// A credential of the application `client_id` in `tenant`.
    pub fn new(tenant: &str, client_id: &str, secret: Zeroizing<String>) -> Self {
        Self {
            authority: Self::PUBLIC_AUTHORITY.to_owned(),
            tenant: tenant.to_owned(),
            client_id: client_id.to_owned(),
            secret,
            scope: KEY_VAULT_SCOPE.to_owned(),
        }
    }

    /// Another authority host (a sovereign cloud, a test server).
    #[must_use]
    pub fn authority(mut self, authority: &str) -> Self {
        self.authority = authority.trim_end_matches('/').to_owned();
        self
    }

    /// Another token scope (a sovereign cloud's Key Vault).
    #[must_use]
    pub fn scope(mut self, scope: &str) -> Self {
        self.scope = scope.to_owned();
        self
    }
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
    /// Seconds; IMDS sends it as a string, Entra ID as a number.
    expires_in: serde_json::Value,
}

impl TokenResponse {
    fn into_token(self) -> Result<AccessToken, String> {
        let seconds = match &self.expires_in {
            serde_json::Value::Number(n) => n.as_u64(),
            serde_json::Value::String(s) => s.parse().ok(),
            _ => None,
        }
        .ok_or("the token response has no valid expires_in")?;
        let expires_at = SystemTime::now()
            .checked_add(Duration::from_secs(seconds))
            .ok_or("the token response's expires_in is out of range")?;
        Ok(AccessToken {
            token: Zeroizing::new(self.access_token),
            expires_at,
        })
    }
}

/// Reads a token endpoint's answer; an error names the status, never a body
/// that could carry a secret.
async fn token_response(
    what: &str,
    response: Result<reqwest::Response, reqwest::Error>,
) -> Result<AccessToken, String> {
    let response = response.map_err(|error| format!("{what}: {}", without_url(&error)))?;
    let status = response.status();
    if !status.is_success() {
        return Err(format!("{what} refused: HTTP {status}"));
    }
    response
        .json::<TokenResponse>()
        .await
        .map_err(|_| format!("{what}: the token response is not valid JSON"))?
        .into_token()
}

/// A transport error without its URL (which may carry a query).
pub(crate) fn without_url(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    kind.to_owned()
}

#[async_trait]
impl TokenSource for ClientSecretCredential {
    async fn token(&self, http: &TokenHttp) -> Result<AccessToken, String> {
        if !self.authority.starts_with("https://") {
            return Err(format!(
                "the authority {} is not https: a client secret is never sent in clear",
                self.authority
            ));
        }
        let url = format!("{}/{}/oauth2/v2.0/token", self.authority, self.tenant);
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", self.client_id.as_str()),
            ("client_secret", self.secret.as_str()),
            ("scope", self.scope.as_str()),
        ];
        let what = format!(
            "token request for client {} in tenant {}",
            self.client_id, self.tenant
        );
        token_response(&what, http.web.post(url).form(&form).send().await).await
    }
}

/// An Azure managed identity, through the instance metadata service.
pub struct ManagedIdentityCredential {
    endpoint: String,
    client_id: Option<String>,
    resource: String,
}

impl ManagedIdentityCredential {
    /// The system-assigned identity, at the metadata service's address.
    pub fn new() -> Self {
        Self {
            endpoint: "http://169.254.169.254/metadata/identity/oauth2/token".to_owned(),
            client_id: None,
            resource: "https://vault.azure.net".to_owned(),
        }
    }

    /// A user-assigned identity, by client id.
    #[must_use]
    pub fn client_id(mut self, client_id: &str) -> Self {
        self.client_id = Some(client_id.to_owned());
        self
    }

    /// Another token endpoint (App Service's, a test server's).
    #[must_use]
    pub fn endpoint(mut self, endpoint: &str) -> Self {
        self.endpoint = endpoint.to_owned();
        self
    }

    /// Another resource to ask tokens for: `https://managedhsm.azure.net`
    /// for a Managed HSM, a sovereign cloud's vault resource.
    #[must_use]
    pub fn resource(mut self, resource: &str) -> Self {
        self.resource = resource.to_owned();
        self
    }
}

impl Default for ManagedIdentityCredential {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl TokenSource for ManagedIdentityCredential {
    async fn token(&self, http: &TokenHttp) -> Result<AccessToken, String> {
        let mut query = vec![
            ("api-version", "2018-02-01"),
            ("resource", self.resource.as_str()),
        ];
        if let Some(client_id) = &self.client_id {
            query.push(("client_id", client_id));
        }
        let request = http
            .local
            .get(&self.endpoint)
            .query(&query)
            .header("Metadata", "true");
        token_response("managed identity token request", request.send().await).await
    }
}

/// A token source with its last token kept until shortly before it
/// expires; at most one refresh runs at a time.
pub(crate) struct CachedTokens {
    source: Arc<dyn TokenSource>,
    /// The kept token and when to replace it.
    current: Mutex<Option<(AccessToken, SystemTime)>>,
}

/// How long before its expiry a token is replaced.
const REFRESH_MARGIN: Duration = Duration::from_secs(300);

impl CachedTokens {
    pub fn new(source: Arc<dyn TokenSource>) -> Self {
        Self {
            source,
            current: Mutex::new(None),
        }
    }

    /// A token valid for a while yet.
    pub async fn token(&self, http: &TokenHttp) -> Result<Zeroizing<String>, String> {
        let mut current = self.current.lock().await;
        let now = SystemTime::now();
        if let Some((token, refresh_at)) = current.as_ref() {
            if now < *refresh_at {
                return Ok(token.token.clone());
            }
        }
        let token = self.source.token(http).await?;
        // Replaced REFRESH_MARGIN before it expires, or halfway through
        // its life when it is shorter than twice that.
        let life = token.expires_at.duration_since(now).unwrap_or_default();
        let refresh_at = now + life - REFRESH_MARGIN.min(life / 2);
        let value = token.token.clone();
        *current = Some((token, refresh_at));
        Ok(value)
    }

    /// Forgets the kept token if it is `refused` (the vault refused it),
    /// not one another call fetched since.
    pub async fn invalidate(&self, refused: &str) {
        let mut current = self.current.lock().await;
        if current
            .as_ref()
            .is_some_and(|(token, _)| token.token.as_str() == refused)
        {
            *current = None;
        }
    }
}
