//! A TCP proxy in front of a test server that records every byte clients
//! send: the definitive place to look for a plaintext that reached the
//! server, in any protocol message (Parse, Bind, Query, COPY), whether the
//! server logged it or not.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_postgres::config::Host;
use tokio_postgres::Config;

/// A running proxy; connections made with [`WireTap::route`]d settings pass
/// through it. It stops when dropped.
#[derive(Debug)]
pub struct WireTap {
    port: u16,
    sent: Arc<Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl WireTap {
    /// Starts a proxy on a free loopback port in front of the server that
    /// `upstream` connects to (its first TCP host and port).
    ///
    /// # Panics
    /// When `upstream` names no TCP host, or no port can be bound: this is
    /// a test fixture.
    pub async fn start(upstream: &Config) -> Self {
        let host = upstream
            .get_hosts()
            .iter()
            .find_map(|host| match host {
                Host::Tcp(name) => Some(name.clone()),
                #[allow(unreachable_patterns)]
                _ => None,
            })
            .unwrap_or_else(|| panic!("wire tap: the server has no TCP host"));
        let port = upstream.get_ports().first().copied().unwrap_or(5432);
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|error| panic!("wire tap: cannot listen: {error}"));
        let local = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("wire tap: no local address: {error}"));
        let sent = Arc::new(Mutex::new(Vec::new()));
        let recorder = sent.clone();
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = TcpStream::connect((host.as_str(), port)).await else {
                    continue;
                };
                tokio::spawn(relay(client, server, recorder.clone()));
            }
        });
        Self {
            port: local.port(),
            sent,
            task,
        }
    }

    /// `config` (for any database of the server) routed through the proxy.
    pub fn route(&self, config: &Config) -> Config {
        let mut routed = Config::new();
        routed.host("127.0.0.1").port(self.port);
        if let Some(user) = config.get_user() {
            routed.user(user);
        }
        if let Some(password) = config.get_password() {
            routed.password(password);
        }
        if let Some(dbname) = config.get_dbname() {
            routed.dbname(dbname);
        }
        routed
    }

    /// Whether any client sent `needle` to the server, in any message.
    pub fn saw(&self, needle: &[u8]) -> bool {
        let sent = self
            .sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        !needle.is_empty() && memchr::memmem::find(&sent, needle).is_some()
    }

    /// How many bytes clients have sent so far.
    pub fn bytes_sent(&self) -> usize {
        self.sent
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

impl Drop for WireTap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Copies both ways until either side closes, recording what the client sends.
async fn relay(client: TcpStream, server: TcpStream, sent: Arc<Mutex<Vec<u8>>>) {
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let upstream = async move {
        let mut buffer = vec![0u8; 64 * 1024];
        loop {
            let read = match client_read.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(read) => read,
            };
            sent.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(&buffer[..read]);
            if server_write.write_all(&buffer[..read]).await.is_err() {
                break;
            }
        }
        let _ = server_write.shutdown().await;
    };
    let downstream = async move {
        let _ = tokio::io::copy(&mut server_read, &mut client_write).await;
        let _ = client_write.shutdown().await;
    };
    tokio::join!(upstream, downstream);
}
