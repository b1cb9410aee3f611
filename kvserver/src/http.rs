//! HTTP plumbing: one TLS connection served with hyper, requests routed to
//! the token endpoints or the Key Vault API, and every request logged.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{HeaderMap, HeaderName, HeaderValue, AUTHORIZATION, CONTENT_TYPE};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;

use crate::reply::Reply;
use crate::{auth, lock, vault, AuthOutcome, LoggedRequest, Shared};

/// Request bodies larger than this are refused.
const MAX_BODY_BYTES: usize = 1 << 20;

/// How long a client may take to complete the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves one client connection until it closes.
pub(crate) async fn serve_connection(
    stream: TcpStream,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
) {
    let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await else {
        return;
    };
    let service = service_fn(move |request| {
        let shared = Arc::clone(&shared);
        async move { Ok::<_, Infallible>(respond(&shared, request).await) }
    });
    // A client hanging up mid-request is not the server's problem.
    let _ = http1::Builder::new()
        .serve_connection(TokioIo::new(tls), service)
        .await;
}

async fn respond(shared: &Arc<Shared>, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let path = parts.uri.path().to_owned();
    let query: HashMap<String, String> = parts
        .uri
        .query()
        .and_then(|query| serde_urlencoded::from_str(query).ok())
        .unwrap_or_default();
    let (auth, reply) = match Limited::new(body, MAX_BODY_BYTES).collect().await {
        Ok(body) => {
            route(
                shared,
                &parts.method,
                &path,
                &query,
                &parts.headers,
                &body.to_bytes(),
            )
            .await
        }
        Err(_) => (
            AuthOutcome::NotRequired,
            Reply::bad_parameter("The request body is too large or was cut short."),
        ),
    };
    lock(&shared.log).push(LoggedRequest {
        method: parts.method.to_string(),
        path,
        api_version: query.get("api-version").cloned(),
        auth,
        status: reply.status,
    });
    into_response(reply)
}

async fn route(
    shared: &Arc<Shared>,
    method: &Method,
    path: &str,
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> (AuthOutcome, Reply) {
    let segments: Vec<&str> = path.strip_prefix('/').unwrap_or(path).split('/').collect();
    match (method, segments.as_slice()) {
        (&Method::GET, ["metadata", "identity", "oauth2", "token"]) => {
            let metadata = headers.get("metadata").and_then(|v| v.to_str().ok());
            (
                AuthOutcome::NotRequired,
                auth::managed_identity(shared, query, metadata),
            )
        }
        (&Method::POST, [tenant, "oauth2", "v2.0", "token"]) => (
            AuthOutcome::NotRequired,
            auth::client_credentials(shared, tenant, body),
        ),
        _ => key_vault(shared, method, &segments, query, headers, body).await,
    }
}

/// A Key Vault request: authenticate, apply any injected fault, check the
/// api-version, then serve it.
async fn key_vault(
    shared: &Arc<Shared>,
    method: &Method,
    segments: &[&str],
    query: &HashMap<String, String>,
    headers: &HeaderMap,
    body: &[u8],
) -> (AuthOutcome, Reply) {
    let token = headers
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(auth::bearer_token);
    let Some(token) = token else {
        return (
            AuthOutcome::Missing,
            auth::challenge(
                shared,
                "AKV10000: Request is missing a Bearer or PoP token.",
            ),
        );
    };
    if !shared.tokens.accepts(token) {
        return (
            AuthOutcome::Rejected,
            auth::challenge(
                shared,
                "AKV10022: The access token is invalid or has expired.",
            ),
        );
    }
    if let Some(fault) = shared.faults.take() {
        return (AuthOutcome::Accepted, fault);
    }
    if query
        .get("api-version")
        .is_none_or(|version| version.is_empty())
    {
        return (
            AuthOutcome::Accepted,
            Reply::bad_parameter("The 'api-version' query parameter is missing."),
        );
    }
    let reply = match segments {
        ["keys", rest @ ..] if !rest.is_empty() => {
            vault::handle(shared, method.as_str(), rest, body).await
        }
        _ => Reply::error(
            404,
            "NotFound",
            format!(
                "{method} /{} is not supported by this test server.",
                segments.join("/")
            ),
        ),
    };
    (AuthOutcome::Accepted, reply)
}

fn into_response(reply: Reply) -> Response<Full<Bytes>> {
    let body = serde_json::to_vec(&reply.body).unwrap_or_default();
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() =
        StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    for (name, value) in reply.headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(HeaderName::from_static(name), value);
        }
    }
    response
}
