//! Drives the Key Vault test server over HTTPS with a plain HTTP client, and
//! checks its cryptography against the `rsa` crate.
#![allow(clippy::unwrap_used)]

use aepg_kvserver::{AuthOutcome, KeyVaultServer, ServerConfig};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use reqwest::{Client, StatusCode};
use rsa::{BoxedUint, PublicKey};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

struct Harness {
    server: KeyVaultServer,
    http: Client,
}

impl Harness {
    async fn start() -> Self {
        Self::with(ServerConfig::default()).await
    }

    async fn with(config: ServerConfig) -> Self {
        let server = KeyVaultServer::start(config).await.unwrap();
        let ca = reqwest::Certificate::from_pem(server.ca_certificate_pem().as_bytes()).unwrap();
        let http = Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .build()
            .unwrap();
        Self { server, http }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.server.vault_url())
    }

    /// A token from the client-secret endpoint.
    async fn token(&self) -> String {
        let response = self
            .http
            .post(self.server.token_endpoint())
            .form(&[
                ("grant_type", "client_credentials"),
                ("client_id", self.server.client_id()),
                ("client_secret", self.server.client_secret()),
                ("scope", "https://vault.azure.net/.default"),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let body: Value = response.json().await.unwrap();
        body["access_token"].as_str().unwrap().to_owned()
    }

    /// `method path?api-version=7.4` with `token` and an optional JSON body.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> (StatusCode, reqwest::header::HeaderMap, Value) {
        let mut request = self
            .http
            .request(method, self.url(path))
            .query(&[("api-version", "7.4")])
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.json().await.unwrap_or(Value::Null);
        (status, headers, body)
    }

    async fn get(&self, path: &str, token: &str) -> (StatusCode, Value) {
        let (status, _, body) = self.call(reqwest::Method::GET, path, token, None).await;
        (status, body)
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> (StatusCode, Value) {
        let (status, _, body) = self
            .call(reqwest::Method::POST, path, token, Some(body))
            .await;
        (status, body)
    }
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

fn unb64(value: &Value) -> Vec<u8> {
    URL_SAFE_NO_PAD.decode(value.as_str().unwrap()).unwrap()
}

/// The RSA public key of a KeyBundle.
fn public_key(bundle: &Value) -> PublicKey {
    let n = BoxedUint::from_be_slice_vartime(&unb64(&bundle["key"]["n"]));
    let e = BoxedUint::from_be_slice_vartime(&unb64(&bundle["key"]["e"]));
    PublicKey::new(n, e).unwrap()
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap()
}

#[tokio::test]
async fn requests_without_a_valid_token_get_the_challenge() {
    let h = Harness::start().await;
    h.server.create_key("cmk", 2048);
    let expected_challenge = format!(
        "Bearer authorization=\"{}/{}\", resource=\"https://vault.azure.net\"",
        h.server.vault_url(),
        h.server.tenant()
    );

    let response = h
        .http
        .get(h.url("/keys/cmk?api-version=7.4"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers()["www-authenticate"].to_str().unwrap(),
        expected_challenge
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "Unauthorized");

    let (status, headers, _) = h
        .call(reqwest::Method::GET, "/keys/cmk", "forged", None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        headers["www-authenticate"].to_str().unwrap(),
        expected_challenge
    );

    let log = h.server.request_log();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].auth, AuthOutcome::Missing);
    assert_eq!(log[0].path, "/keys/cmk");
    assert_eq!(log[0].api_version.as_deref(), Some("7.4"));
    assert_eq!(log[0].status, 401);
    assert_eq!(log[1].auth, AuthOutcome::Rejected);
    assert!(!log[1].authorized());
}

#[tokio::test]
async fn client_secret_endpoint_issues_tokens_that_expire() {
    let h = Harness::start().await;
    h.server.create_key("cmk", 2048);
    let form = |secret: &str, scope: &str| {
        vec![
            ("grant_type", "client_credentials".to_owned()),
            ("client_id", h.server.client_id().to_owned()),
            ("client_secret", secret.to_owned()),
            ("scope", scope.to_owned()),
        ]
    };
    let scope = "https://vault.azure.net/.default";

    let response = h
        .http
        .post(h.server.token_endpoint())
        .form(&form("wrong", scope))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"], "invalid_client");

    let response = h
        .http
        .post(h.url("/not-the-tenant/oauth2/v2.0/token"))
        .form(&form(h.server.client_secret(), scope))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let response = h
        .http
        .post(h.server.token_endpoint())
        .form(&form(
            h.server.client_secret(),
            "https://management.azure.com/.default",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(h.server.tokens_issued(), 0);

    let response = h
        .http
        .post(h.server.token_endpoint())
        .form(&form(h.server.client_secret(), scope))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["expires_in"], 3600);
    assert_eq!(body["ext_expires_in"], 3600);
    let token = body["access_token"].as_str().unwrap().to_owned();
    assert_eq!(h.server.tokens_issued(), 1);

    assert_eq!(h.get("/keys/cmk", &token).await.0, StatusCode::OK);
    h.server.expire_tokens();
    assert_eq!(h.get("/keys/cmk", &token).await.0, StatusCode::UNAUTHORIZED);
    let fresh = h.token().await;
    assert_eq!(h.server.tokens_issued(), 2);
    assert_eq!(h.get("/keys/cmk", &fresh).await.0, StatusCode::OK);

    // The caller-supplied token source's token works without being counted.
    let supplied = h.server.valid_token();
    assert_eq!(h.get("/keys/cmk", &supplied).await.0, StatusCode::OK);
    assert_eq!(h.server.tokens_issued(), 2);

    // Nothing secret reaches the log.
    let log = format!("{:?}", h.server.request_log());
    for secret in [&token, &fresh, &supplied, h.server.client_secret()] {
        assert!(!log.contains(secret));
    }
}

#[tokio::test]
async fn short_lived_tokens_expire_on_their_own() {
    let h = Harness::with(ServerConfig {
        token_lifetime_secs: 1,
    })
    .await;
    h.server.create_key("cmk", 2048);
    let token = h.token().await;
    assert_eq!(h.get("/keys/cmk", &token).await.0, StatusCode::OK);
    tokio::time::sleep(std::time::Duration::from_millis(1100)).await;
    assert_eq!(h.get("/keys/cmk", &token).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn managed_identity_endpoint_answers_like_imds() {
    let h = Harness::start().await;
    h.server.create_key("cmk", 2048);
    let query = [
        ("api-version", "2018-02-01"),
        ("resource", "https://vault.azure.net"),
    ];
    let response = h
        .http
        .get(h.server.imds_endpoint())
        .query(&query)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);

    let response = h
        .http
        .get(h.server.imds_endpoint())
        .query(&query)
        .header("Metadata", "true")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["token_type"], "Bearer");
    assert_eq!(body["resource"], "https://vault.azure.net");
    assert_eq!(body["expires_in"], "3600");
    let expires_on: u64 = body["expires_on"].as_str().unwrap().parse().unwrap();
    assert!(expires_on > 1_700_000_000);
    assert_eq!(h.server.tokens_issued(), 1);
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(h.get("/keys/cmk", token).await.0, StatusCode::OK);
}

#[tokio::test]
async fn creates_and_gets_keys() {
    let h = Harness::start().await;
    let token = h.token().await;

    let (status, created) = h
        .post(
            "/keys/cmk/create",
            &token,
            json!({"kty": "RSA", "key_size": 2048}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let kid = created["key"]["kid"].as_str().unwrap().to_owned();
    let version = kid
        .strip_prefix(&format!("{}/keys/cmk/", h.server.vault_url()))
        .unwrap()
        .to_owned();
    assert_eq!(version.len(), 32);
    assert_eq!(created["key"]["kty"], "RSA");
    assert_eq!(
        created["key"]["key_ops"],
        json!([
            "encrypt",
            "decrypt",
            "sign",
            "verify",
            "wrapKey",
            "unwrapKey"
        ])
    );
    assert_eq!(unb64(&created["key"]["n"]).len(), 256);
    assert_eq!(unb64(&created["key"]["e"]), [1, 0, 1]);
    assert_eq!(created["attributes"]["enabled"], true);
    assert_eq!(
        created["attributes"]["recoveryLevel"],
        "Recoverable+Purgeable"
    );
    assert!(created["attributes"]["created"].as_u64().unwrap() > 1_700_000_000);

    for path in [
        "/keys/cmk".to_owned(),
        "/keys/cmk/".to_owned(),
        "/keys/CMK".to_owned(),
        format!("/keys/cmk/{version}"),
    ] {
        let (status, bundle) = h.get(&path, &token).await;
        assert_eq!(status, StatusCode::OK, "{path}");
        assert_eq!(bundle, created, "{path}");
    }

    // A new version becomes the current one; the old stays reachable.
    let new_kid = h.server.create_key("cmk", 3072);
    assert_ne!(new_kid, kid);
    let (_, latest) = h.get("/keys/cmk", &token).await;
    assert_eq!(latest["key"]["kid"], new_kid);
    assert_eq!(unb64(&latest["key"]["n"]).len(), 384);
    let (_, old) = h.get(&format!("/keys/cmk/{version}"), &token).await;
    assert_eq!(old["key"]["kid"], kid);

    let (status, body) = h.get("/keys/missing", &token).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "KeyNotFound");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("A key with (name/id) missing was not found in this key vault."));
    let (status, body) = h
        .get("/keys/cmk/00000000000000000000000000000000", &token)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "KeyNotFound");

    for bad in [
        json!({"kty": "EC", "crv": "P-256"}),
        json!({"kty": "RSA", "key_size": 1024}),
        json!({"key_size": 2048}),
    ] {
        let (status, body) = h.post("/keys/other/create", &token, bad).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert_eq!(error_code(&body), "BadParameter");
    }

    let response = h
        .http
        .get(h.url("/keys/cmk"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "BadParameter");
}

#[tokio::test]
async fn wraps_and_unwraps_with_rsa_oaep() {
    let h = Harness::start().await;
    let kid = h.server.create_key("cmk", 2048);
    let version = kid.rsplit('/').next().unwrap().to_owned();
    let token = h.token().await;
    let (_, bundle) = h.get("/keys/cmk", &token).await;
    let column_key = [7u8; 32];

    for alg in ["RSA-OAEP-256", "RSA-OAEP"] {
        // Every URL shape for "the current version" and the explicit one.
        for base in [
            format!("/keys/cmk/{version}"),
            "/keys/cmk/".to_owned(),
            "/keys/cmk".to_owned(),
        ] {
            let (status, wrapped) = h
                .post(
                    &format!("{base}/wrapkey"),
                    &token,
                    json!({"alg": alg, "value": b64(&column_key)}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{alg} {base}");
            assert_eq!(wrapped["kid"], kid);
            assert_eq!(unb64(&wrapped["value"]).len(), 256);
            let (status, unwrapped) = h
                .post(
                    &format!("{base}/unwrapkey"),
                    &token,
                    json!({"alg": alg, "value": wrapped["value"]}),
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{alg} {base}");
            assert_eq!(unwrapped["kid"], kid);
            assert_eq!(unb64(&unwrapped["value"]), column_key);
        }
    }

    // Wrapped here with RSA-OAEP-256 (SHA-256, MGF1-SHA-256), unwrapped there.
    let wrapped = public_key(&bundle)
        .oaep_encrypt::<Sha256>(&column_key)
        .unwrap();
    let (status, unwrapped) = h
        .post(
            "/keys/cmk//unwrapkey",
            &token,
            json!({"alg": "RSA-OAEP-256", "value": b64(&wrapped)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(unb64(&unwrapped["value"]), column_key);

    // encrypt/decrypt are the same operations under other names.
    let (status, encrypted) = h
        .post(
            "/keys/cmk//encrypt",
            &token,
            json!({"alg": "RSA-OAEP-256", "value": b64(b"secret")}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, decrypted) = h
        .post(
            "/keys/cmk//decrypt",
            &token,
            json!({"alg": "RSA-OAEP-256", "value": encrypted["value"]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(unb64(&decrypted["value"]), b"secret");

    // Wrong algorithm for the ciphertext, garbage, unknown algorithm.
    for (alg, value) in [
        ("RSA-OAEP", b64(&wrapped)),
        ("RSA-OAEP-256", b64(&[0u8; 256])),
        ("RSA-OAEP-256", "not base64!".to_owned()),
        ("RSA1_5", b64(&wrapped)),
    ] {
        let (status, body) = h
            .post(
                "/keys/cmk//unwrapkey",
                &token,
                json!({"alg": alg, "value": value}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{alg}");
        assert_eq!(error_code(&body), "BadParameter");
    }
}

#[tokio::test]
async fn signs_with_real_ps256() {
    let h = Harness::start().await;
    let kid = h.server.create_key("signer", 2048);
    let token = h.token().await;
    let (_, bundle) = h.get("/keys/signer", &token).await;
    let digest = Sha256::digest(b"column master key metadata");

    let (status, signed) = h
        .post(
            "/keys/signer//sign",
            &token,
            json!({"alg": "PS256", "value": b64(&digest)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(signed["kid"], kid);
    let signature = unb64(&signed["value"]);
    assert_eq!(signature.len(), 256);

    // RSASSA-PSS, SHA-256, MGF1-SHA-256, 32-byte salt, over the digest itself.
    public_key(&bundle)
        .pss_verify_prehash::<Sha256>(&digest, &signature)
        .unwrap();

    let verify = |digest: &[u8], signature: &[u8]| json!({"alg": "PS256", "digest": b64(digest), "value": b64(signature)});
    let (status, verified) = h
        .post("/keys/signer//verify", &token, verify(&digest, &signature))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verified, json!({"value": true}));
    let other = Sha256::digest(b"something else");
    let (status, verified) = h
        .post("/keys/signer//verify", &token, verify(&other, &signature))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(verified, json!({"value": false}));

    let (status, body) = h
        .post(
            "/keys/signer//sign",
            &token,
            json!({"alg": "PS256", "value": b64(&digest[..31])}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(error_code(&body), "BadParameter");
}

#[tokio::test]
async fn throttles_and_fails_on_request() {
    let h = Harness::start().await;
    h.server.create_key("cmk", 2048);
    let token = h.token().await;

    h.server.throttle_next(2, 7);
    h.server.fail_next(1);
    // Unauthenticated requests do not use up injected faults.
    let response = h
        .http
        .get(h.url("/keys/cmk?api-version=7.4"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    for _ in 0..2 {
        let (status, headers, body) = h
            .call(reqwest::Method::GET, "/keys/cmk", &token, None)
            .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(headers["retry-after"], "7");
        assert_eq!(error_code(&body), "Throttled");
    }
    let (status, body) = h.get("/keys/cmk", &token).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(error_code(&body), "ServiceUnavailable");
    assert_eq!(h.get("/keys/cmk", &token).await.0, StatusCode::OK);

    let statuses: Vec<u16> = h
        .server
        .request_log()
        .iter()
        .filter(|entry| entry.path == "/keys/cmk")
        .map(|entry| entry.status)
        .collect();
    assert_eq!(statuses, [401, 429, 429, 503, 200]);
}

#[tokio::test]
async fn disabled_keys_are_forbidden() {
    let h = Harness::start().await;
    let kid = h.server.create_key("cmk", 2048);
    let token = h.token().await;
    let (_, bundle) = h.get("/keys/cmk", &token).await;
    let wrapped = public_key(&bundle)
        .oaep_encrypt::<Sha256>(&[1; 32])
        .unwrap();
    h.server.disable_key("cmk");

    let (status, body) = h.get("/keys/cmk", &token).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body,
        json!({"error": {"code": "Forbidden", "message": "Operation get is not allowed on a disabled key."}})
    );
    let (status, body) = h
        .post(
            &format!(
                "{}/unwrapkey",
                kid.strip_prefix(&h.server.vault_url()).unwrap()
            ),
            &token,
            json!({"alg": "RSA-OAEP-256", "value": b64(&wrapped)}),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(
        body["error"]["message"],
        "Operation unwrapKey is not allowed on a disabled key."
    );

    h.server.enable_key("cmk");
    let (status, body) = h
        .post(
            "/keys/cmk//unwrapkey",
            &token,
            json!({"alg": "RSA-OAEP-256", "value": b64(&wrapped)}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(unb64(&body["value"]), [1; 32]);
}
