//! Authentication: the identity the server accepts, the tokens it issued, its
//! two token endpoints and Key Vault's bearer challenge.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::crypto::{random, unix_now};
use crate::reply::{b64url_encode, Reply};
use crate::{lock, Shared};

/// The audience of Key Vault tokens.
pub(crate) const VAULT_RESOURCE: &str = "https://vault.azure.net";

/// The tenant and the one application the server knows.
#[derive(Debug)]
pub(crate) struct Identity {
    pub(crate) tenant: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
}

impl Identity {
    /// A fresh random tenant, client id and client secret.
    pub(crate) fn generate() -> Self {
        Self {
            tenant: uuid(),
            client_id: uuid(),
            client_secret: b64url_encode(&random::<30>()),
        }
    }
}

/// A random UUID-shaped string, as Entra ID tenant and client ids are.
fn uuid() -> String {
    let hex: String = random::<16>().iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

#[derive(Debug, Default)]
struct Issued {
    live: HashMap<String, Instant>,
    count: usize,
}

/// The bearer tokens the server has issued and still accepts.
#[derive(Debug)]
pub(crate) struct Tokens {
    lifetime: Duration,
    issued: Mutex<Issued>,
}

impl Tokens {
    pub(crate) fn new(lifetime: Duration) -> Self {
        Self {
            lifetime,
            issued: Mutex::new(Issued::default()),
        }
    }

    /// Issues a token through a token endpoint; counted by `issued`.
    fn issue(&self) -> String {
        let token = self.issue_uncounted();
        lock(&self.issued).count += 1;
        token
    }

    pub(crate) fn issue_uncounted(&self) -> String {
        let token = b64url_encode(&random::<32>());
        let expires = Instant::now() + self.lifetime;
        lock(&self.issued).live.insert(token.clone(), expires);
        token
    }

    /// Whether `token` was issued here and has not expired.
    pub(crate) fn accepts(&self, token: &str) -> bool {
        let now = Instant::now();
        let mut issued = lock(&self.issued);
        issued.live.retain(|_, expires| *expires > now);
        issued.live.contains_key(token)
    }

    pub(crate) fn issued(&self) -> usize {
        lock(&self.issued).count
    }

    pub(crate) fn expire_all(&self) {
        lock(&self.issued).live.clear();
    }

    fn lifetime_secs(&self) -> u64 {
        self.lifetime.as_secs()
    }
}

/// The token of an `Authorization: Bearer <token>` header value.
pub(crate) fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// Key Vault's 401 reply. Its `WWW-Authenticate` challenge names this server
/// as the authority, so clients that follow it fetch tokens from here.
pub(crate) fn challenge(shared: &Shared, message: &str) -> Reply {
    Reply::error(401, "Unauthorized", message).with_header(
        "www-authenticate",
        format!(
            "Bearer authorization=\"{}/{}\", resource=\"{VAULT_RESOURCE}\"",
            shared.vault_url, shared.identity.tenant
        ),
    )
}

/// Whether `scope` (v2 endpoint) or `resource` (IMDS) names Key Vault.
fn is_vault_audience(value: &str) -> bool {
    let value = value.strip_suffix("/.default").unwrap_or(value);
    value.trim_end_matches('/') == VAULT_RESOURCE
}

/// `POST /{tenant}/oauth2/v2.0/token`: the client-credentials grant with a
/// client secret, as Entra ID's v2 endpoint answers it.
pub(crate) fn client_credentials(shared: &Shared, tenant: &str, body: &[u8]) -> Reply {
    let form: HashMap<String, String> = match serde_urlencoded::from_bytes(body) {
        Ok(form) => form,
        Err(_) => {
            return Reply::oauth_error(400, "invalid_request", "The request body must be a form.")
        }
    };
    let field = |name: &str| form.get(name).map(String::as_str);
    if tenant != shared.identity.tenant {
        return Reply::oauth_error(
            400,
            "invalid_tenant",
            "AADSTS90002: Tenant not found. (test server)",
        );
    }
    if field("grant_type") != Some("client_credentials") {
        return Reply::oauth_error(
            400,
            "unsupported_grant_type",
            "AADSTS70003: Only grant_type=client_credentials is supported. (test server)",
        );
    }
    if field("client_id") != Some(shared.identity.client_id.as_str()) {
        return Reply::oauth_error(
            400,
            "unauthorized_client",
            "AADSTS700016: Application not found in the directory. (test server)",
        );
    }
    if field("client_secret") != Some(shared.identity.client_secret.as_str()) {
        return Reply::oauth_error(
            401,
            "invalid_client",
            "AADSTS7000215: Invalid client secret provided. (test server)",
        );
    }
    if !field("scope").is_some_and(is_vault_audience) {
        return Reply::oauth_error(
            400,
            "invalid_scope",
            "AADSTS1002012: The scope must be https://vault.azure.net/.default. (test server)",
        );
    }
    let lifetime = shared.tokens.lifetime_secs();
    Reply::ok(json!({
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": shared.tokens.issue(),
    }))
}

/// `GET /metadata/identity/oauth2/token`: a managed-identity token, as the
/// Azure Instance Metadata Service answers it.
pub(crate) fn managed_identity(
    shared: &Shared,
    query: &HashMap<String, String>,
    metadata_header: Option<&str>,
) -> Reply {
    let param = |name: &str| query.get(name).map(String::as_str);
    if !metadata_header.is_some_and(|value| value.eq_ignore_ascii_case("true")) {
        return Reply::oauth_error(
            400,
            "invalid_request",
            "Required metadata header not specified",
        );
    }
    if param("api-version").is_none_or(str::is_empty) {
        return Reply::oauth_error(
            400,
            "invalid_request",
            "Required query variable 'api-version' is missing",
        );
    }
    let Some(resource) = param("resource") else {
        return Reply::oauth_error(
            400,
            "invalid_request",
            "Required query variable 'resource' is missing",
        );
    };
    if !is_vault_audience(resource) {
        return Reply::oauth_error(
            400,
            "invalid_resource",
            "AADSTS500011: The resource principal was not found. (test server)",
        );
    }
    if param("client_id").is_some_and(|id| id != shared.identity.client_id) {
        return Reply::oauth_error(400, "invalid_request", "Identity not found");
    }
    let lifetime = shared.tokens.lifetime_secs();
    let now = unix_now();
    Reply::ok(json!({
        "access_token": shared.tokens.issue(),
        "client_id": shared.identity.client_id,
        "expires_in": lifetime.to_string(),
        "expires_on": (now + lifetime).to_string(),
        "ext_expires_in": lifetime.to_string(),
        "not_before": now.to_string(),
        "resource": resource,
        "token_type": "Bearer",
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_headers() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer  abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("Bearer"), None);
    }

    #[test]
    fn recognises_the_vault_audience() {
        assert!(is_vault_audience("https://vault.azure.net/.default"));
        assert!(is_vault_audience("https://vault.azure.net"));
        assert!(is_vault_audience("https://vault.azure.net/"));
        assert!(!is_vault_audience("https://management.azure.com/.default"));
    }

    #[test]
    fn expired_tokens_are_rejected() {
        let tokens = Tokens::new(Duration::from_secs(3600));
        let token = tokens.issue();
        assert!(tokens.accepts(&token));
        assert!(!tokens.accepts("forged"));
        assert_eq!(tokens.issued(), 1);
        tokens.expire_all();
        assert!(!tokens.accepts(&token));

        let short = Tokens::new(Duration::ZERO);
        let token = short.issue_uncounted();
        assert!(!short.accepts(&token));
        assert_eq!(short.issued(), 0);
    }
}
