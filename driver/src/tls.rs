//! TLS to the server, with rustls (cargo feature `rustls`).
//!
//! aepg keeps encrypted columns' values from the server; everything else a
//! connection carries — statement text, plaintext columns, the password
//! exchange, which rows are asked for — travels as PostgreSQL's protocol
//! carries it. TLS keeps that from the network between the application and
//! the server (not from the server, which sees it all but ciphertext).
//!
//! ```no_run
//! # async fn demo(encryption: std::sync::Arc<aepg::Encryption>) -> Result<(), Box<dyn std::error::Error>> {
//! let ca = std::fs::read("ca.pem")?;
//! let tls = aepg::tls::connector_trusting(&ca)?;
//! let config: tokio_postgres::Config = "host=db.internal user=app dbname=app".parse()?;
//! let (client, connection) = aepg::tls::connect(&config, tls, encryption).await?;
//! tokio::spawn(connection);
//! # Ok(()) }
//! ```
//!
//! [`connect`] insists on TLS (`sslmode=require`): with tokio-postgres's
//! default, `prefer`, a server — or anyone between — that declines TLS
//! gets a plaintext connection. The server's certificate is always checked
//! against the roots given and the host name connected to. The connector
//! also works with [`crate::connect`], [`crate::Client::with_connection`] and the
//! pool managers ([`crate::pool`]); set `sslmode=require` there yourself.

use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::{ClientConfig, RootCertStore};
use tokio_postgres::config::SslMode;
use tokio_postgres::tls::MakeTlsConnect;
use tokio_postgres::{Config, Socket};

pub use rustls;
pub use tokio_postgres_rustls::MakeRustlsConnect;

use crate::{Client, Connection, Encryption, Error};

/// The connection [`connect`] returns, to be spawned.
pub type TlsConnection = Connection<Socket, <MakeRustlsConnect as MakeTlsConnect<Socket>>::Stream>;

/// Why a TLS connector could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsSetupError {
    /// The PEM given holds no certificate.
    #[error("no CA certificate found in the PEM given")]
    NoCertificate,
    /// The PEM given cannot be read.
    #[error("the CA certificates cannot be read: {0}")]
    Pem(String),
    /// rustls refused a CA certificate or the configuration.
    #[error("TLS configuration refused: {0}")]
    Rustls(#[from] rustls::Error),
}

/// A connector that trusts exactly the CA certificates in `ca_pem` (one or
/// more `BEGIN CERTIFICATE` sections).
///
/// # Errors
/// [`TlsSetupError`] when `ca_pem` holds no usable certificate.
pub fn connector_trusting(ca_pem: &[u8]) -> Result<MakeRustlsConnect, TlsSetupError> {
    let mut roots = RootCertStore::empty();
    for certificate in CertificateDer::pem_slice_iter(ca_pem) {
        let certificate = certificate.map_err(|error| TlsSetupError::Pem(error.to_string()))?;
        roots.add(certificate)?;
    }
    if roots.is_empty() {
        return Err(TlsSetupError::NoCertificate);
    }
    connector(roots)
}

/// A connector that trusts `roots`, with rustls's safe defaults (TLS 1.2
/// and 1.3, the `ring` provider) and no client certificate. For anything
/// else, build a [`rustls::ClientConfig`] and use
/// [`MakeRustlsConnect::new`].
///
/// # Errors
/// [`TlsSetupError::Rustls`] if rustls refuses the configuration.
pub fn connector(roots: RootCertStore) -> Result<MakeRustlsConnect, TlsSetupError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(MakeRustlsConnect::new(config))
}

/// Connects over TLS — required, whatever `config`'s `sslmode` says — and
/// wraps the client, like [`crate::connect`]. The returned connection must
/// be spawned.
///
/// # Errors
/// Connection errors, among them a server that does not offer TLS and a
/// certificate the connector does not trust.
pub async fn connect(
    config: &Config,
    tls: MakeRustlsConnect,
    encryption: Arc<Encryption>,
) -> Result<(Client, TlsConnection), Error> {
    let mut config = config.clone();
    config.ssl_mode(SslMode::Require);
    let (inner, connection) = config.connect(tls).await?;
    Ok(Client::with_connection(inner, connection, encryption))
}
