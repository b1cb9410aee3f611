//! The Key Vault keys REST API, for requests already authenticated:
//!
//! - `POST /keys/{name}/create`
//! - `GET /keys/{name}`, `GET /keys/{name}/` and `GET /keys/{name}/{version}`
//! - `POST /keys/{name}/{version}/{operation}`, where `{version}` may be empty
//!   (`/keys/{name}//wrapkey`, what the Azure SDKs send for the current
//!   version) or left out (`/keys/{name}/wrapkey`), and `{operation}` is one
//!   of `encrypt`, `decrypt`, `wrapkey`, `unwrapkey`, `sign`, `verify`.

use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};

use crate::crypto::{self, KEY_SIZES};
use crate::keys::{is_valid_name, Found, NewKeyOptions};
use crate::reply::{b64url_decode, b64url_encode, Reply};
use crate::Shared;

/// A cryptographic operation on a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operation {
    Encrypt,
    Decrypt,
    WrapKey,
    UnwrapKey,
    Sign,
    Verify,
}

impl Operation {
    /// The operation named by a URL path segment (case-insensitive).
    fn from_segment(segment: &str) -> Option<Self> {
        Some(match segment.to_ascii_lowercase().as_str() {
            "encrypt" => Self::Encrypt,
            "decrypt" => Self::Decrypt,
            "wrapkey" => Self::WrapKey,
            "unwrapkey" => Self::UnwrapKey,
            "sign" => Self::Sign,
            "verify" => Self::Verify,
            _ => return None,
        })
    }

    /// The operation's name in a key's `key_ops`.
    fn key_op(self) -> &'static str {
        match self {
            Self::Encrypt => "encrypt",
            Self::Decrypt => "decrypt",
            Self::WrapKey => "wrapKey",
            Self::UnwrapKey => "unwrapKey",
            Self::Sign => "sign",
            Self::Verify => "verify",
        }
    }
}

/// Serves `method` on `/keys/{segments...}`.
pub(crate) async fn handle(
    shared: &Arc<Shared>,
    method: &str,
    segments: &[&str],
    body: &[u8],
) -> Reply {
    match (method, segments) {
        ("GET", [name]) | ("GET", [name, ""]) => get(shared, name, ""),
        ("GET", [name, version]) => get(shared, name, version),
        ("POST", [name, create]) if create.eq_ignore_ascii_case("create") => {
            create_key(shared, name, body).await
        }
        ("POST", [name, operation]) => match Operation::from_segment(operation) {
            Some(operation) => operate(shared, name, "", operation, body),
            None => unsupported(method, segments),
        },
        ("POST", [name, version, operation]) => match Operation::from_segment(operation) {
            Some(operation) => operate(shared, name, version, operation, body),
            None => unsupported(method, segments),
        },
        _ => unsupported(method, segments),
    }
}

fn unsupported(method: &str, segments: &[&str]) -> Reply {
    Reply::error(
        404,
        "NotFound",
        format!(
            "{method} /keys/{} is not supported by this test server.",
            segments.join("/")
        ),
    )
}

fn get(shared: &Shared, name: &str, version: &str) -> Reply {
    match shared.keys.find(name, version, "get") {
        Ok(found) => Reply::ok(found.bundle),
        Err(reply) => reply,
    }
}

/// The body of `POST /keys/{name}/create`.
#[derive(Deserialize)]
struct CreateParameters {
    kty: String,
    key_size: Option<usize>,
    public_exponent: Option<u64>,
    key_ops: Option<Vec<String>>,
    attributes: Option<CreateAttributes>,
    tags: Option<Value>,
}

#[derive(Deserialize)]
struct CreateAttributes {
    enabled: Option<bool>,
}

async fn create_key(shared: &Arc<Shared>, name: &str, body: &[u8]) -> Reply {
    let Ok(parameters) = serde_json::from_slice::<CreateParameters>(body) else {
        return Reply::bad_parameter("The request body is not a valid key creation request.");
    };
    if !is_valid_name(name) {
        return Reply::bad_parameter("The key name must be 1 to 127 letters, digits and dashes.");
    }
    if parameters.kty != "RSA" && parameters.kty != "RSA-HSM" {
        return Reply::bad_parameter(format!(
            "Key type '{}' is not supported by this test server: only RSA and RSA-HSM.",
            parameters.kty
        ));
    }
    let bits = parameters.key_size.unwrap_or(2048);
    if !KEY_SIZES.contains(&bits) {
        return Reply::bad_parameter(format!(
            "RSA key size {bits} is not supported: use 2048, 3072 or 4096."
        ));
    }
    if parameters.public_exponent.is_some_and(|e| e != 65537) {
        return Reply::bad_parameter("Only the public exponent 65537 is supported.");
    }
    let key = match tokio::task::spawn_blocking(move || crypto::generate(bits)).await {
        Ok(Some(key)) => key,
        _ => return Reply::error(500, "InternalError", "Key generation failed."),
    };
    let options = NewKeyOptions {
        kty: Some(parameters.kty),
        key_ops: parameters.key_ops,
        enabled: parameters.attributes.and_then(|a| a.enabled),
        tags: parameters.tags,
    };
    match shared.keys.insert(name, key, options) {
        Some(found) => Reply::ok(found.bundle),
        None => Reply::bad_parameter("The key name is not valid."),
    }
}

/// The body of encrypt, decrypt, wrapkey, unwrapkey and sign requests.
#[derive(Deserialize)]
struct OperationParameters {
    alg: String,
    value: String,
}

/// The body of a verify request.
#[derive(Deserialize)]
struct VerifyParameters {
    alg: String,
    digest: String,
    value: String,
}

fn operate(shared: &Shared, name: &str, version: &str, operation: Operation, body: &[u8]) -> Reply {
    let result = shared
        .keys
        .find(name, version, operation.key_op())
        .and_then(|found| match operation {
            Operation::Verify => verify(&found, body),
            _ => transform(&found, operation, body),
        });
    match result {
        Ok(body) => Reply::ok(body),
        Err(reply) => reply,
    }
}

/// Encrypt, decrypt, wrap, unwrap or sign `body.value`.
fn transform(found: &Found, operation: Operation, body: &[u8]) -> Result<Value, Reply> {
    let parameters: OperationParameters =
        serde_json::from_slice(body).map_err(|_| malformed(operation))?;
    let value = decode_field("value", &parameters.value)?;
    let alg = parameters.alg.as_str();
    let public = found.key.as_public_key();
    let output = match operation {
        Operation::Encrypt | Operation::WrapKey => {
            crypto::encrypt(alg, public, &value).map(|bytes| b64url_encode(&bytes))
        }
        Operation::Decrypt | Operation::UnwrapKey => {
            crypto::decrypt(alg, &found.key, &value).map(|plain| b64url_encode(&plain))
        }
        // `operate` sends verify requests to `verify`.
        Operation::Sign | Operation::Verify => {
            crypto::sign(alg, &found.key, &value).map(|bytes| b64url_encode(&bytes))
        }
    };
    let output = output.map_err(|error| Reply::bad_parameter(error.message()))?;
    Ok(json!({ "kid": found.kid, "value": output }))
}

/// Verify `body.value` as a signature over `body.digest`.
fn verify(found: &Found, body: &[u8]) -> Result<Value, Reply> {
    let parameters: VerifyParameters =
        serde_json::from_slice(body).map_err(|_| malformed(Operation::Verify))?;
    let digest = decode_field("digest", &parameters.digest)?;
    let signature = decode_field("value", &parameters.value)?;
    let valid = crypto::verify(
        &parameters.alg,
        found.key.as_public_key(),
        &digest,
        &signature,
    )
    .map_err(|error| Reply::bad_parameter(error.message()))?;
    Ok(json!({ "value": valid }))
}

fn malformed(operation: Operation) -> Reply {
    Reply::bad_parameter(format!(
        "The request body is not a valid {} request.",
        operation.key_op()
    ))
}

fn decode_field(field: &str, value: &str) -> Result<Vec<u8>, Reply> {
    b64url_decode(value)
        .ok_or_else(|| Reply::bad_parameter(format!("Property '{field}' is not valid base64url.")))
}
