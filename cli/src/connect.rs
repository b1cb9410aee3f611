//! Connections: plain tokio-postgres for administration, an aepg client
//! for `explain`; over TLS (required, verified) when a CA is configured.

use std::sync::Arc;

use aepg::{Client, Encryption, EncryptionConfig};
use tokio_postgres::config::SslMode;
use tokio_postgres::{Config, NoTls};

use crate::config::Settings;
use crate::failure::Failure;

/// Connects for administration.
///
/// # Errors
/// A usage error for a bad connection string or CA file; the connection's
/// failure otherwise.
pub async fn plain(settings: &Settings) -> Result<tokio_postgres::Client, Failure> {
    let config = config(settings)?;
    match tls(settings)? {
        Some(tls) => {
            let (client, connection) = config.connect(tls).await?;
            tokio::spawn(connection);
            Ok(client)
        }
        None => {
            let (client, connection) = config.connect(NoTls).await?;
            tokio::spawn(connection);
            Ok(client)
        }
    }
}

/// Connects an aepg client with the run's key stores and pins.
///
/// # Errors
/// As [`plain`].
pub async fn encrypted(settings: &Settings) -> Result<Client, Failure> {
    let mut encryption = EncryptionConfig::new(settings.registry.clone());
    if let Some(pins) = &settings.pins {
        encryption = encryption.pins(pins.clone());
    }
    let encryption = Encryption::new(encryption);
    let config = config(settings)?;
    match tls(settings)? {
        Some(tls) => {
            let (client, connection) = aepg::tls::connect(&config, tls, encryption).await?;
            tokio::spawn(connection);
            Ok(client)
        }
        None => {
            let (inner, connection) = config.connect(NoTls).await?;
            let (client, connection) =
                Client::with_connection(inner, connection, Arc::clone(&encryption));
            tokio::spawn(connection);
            Ok(client)
        }
    }
}

fn config(settings: &Settings) -> Result<Config, Failure> {
    let mut config: Config = settings
        .database_url()?
        .parse()
        .map_err(|error| Failure::usage(format!("the connection string: {error}")))?;
    if settings.ca_file.is_some() {
        config.ssl_mode(SslMode::Require);
    }
    Ok(config)
}

fn tls(settings: &Settings) -> Result<Option<aepg::tls::MakeRustlsConnect>, Failure> {
    let Some(path) = &settings.ca_file else {
        return Ok(None);
    };
    let pem = std::fs::read(path)
        .map_err(|error| Failure::usage(format!("CA file {}: {error}", path.display())))?;
    aepg::tls::connector_trusting(&pem)
        .map(Some)
        .map_err(|error| Failure::usage(format!("CA file {}: {error}", path.display())))
}
