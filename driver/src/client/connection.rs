//! The connection future, which hears the catalog's change announcements.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio_postgres::AsyncMessage;

use super::encryption::Encryption;
use crate::catalog::CATALOG_CHANNEL;

/// What a client and the connection that drives it share: whether
/// announcements of catalog changes can reach the client.
#[derive(Debug)]
pub(crate) struct Watch {
    encryption: Arc<Encryption>,
    alive: AtomicBool,
}

impl Watch {
    pub(crate) fn new(encryption: Arc<Encryption>) -> Arc<Self> {
        Arc::new(Self {
            encryption,
            alive: AtomicBool::new(true),
        })
    }

    /// Whether the connection still runs, so announcements reach the client.
    pub(crate) fn is_alive(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }
}

/// A connection to the server, as [`tokio_postgres::Connection`], that
/// also hears the announcements administrative changes make of a new
/// catalog generation: after one, every client sharing the encryption
/// state checks the generation before its next statement, so no statement
/// is sent under an analysis made against the older catalog.
///
/// Spawn it as tokio-postgres's: `tokio::spawn(connection)`. Other
/// notifications and notices are dropped as tokio-postgres drops them,
/// unless [`poll_message`](Self::poll_message) is used instead.
pub struct Connection<S, T> {
    inner: tokio_postgres::Connection<S, T>,
    watch: Arc<Watch>,
}

impl<S, T> Connection<S, T>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    /// Wraps a tokio-postgres connection so that the announcements it
    /// receives reach `encryption`. Use it with
    /// [`Client::with_connection`](crate::Client::with_connection) when
    /// connecting through tokio-postgres yourself.
    pub(crate) fn new(inner: tokio_postgres::Connection<S, T>, watch: Arc<Watch>) -> Self {
        Self { inner, watch }
    }

    /// Polls for the next message from the server that is not one of
    /// aepg's own announcements: a notice, or a notification of another
    /// channel. As [`tokio_postgres::Connection::poll_message`], this drives
    /// the connection too.
    pub fn poll_message(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<AsyncMessage, tokio_postgres::Error>>> {
        loop {
            match self.inner.poll_message(cx) {
                Poll::Ready(Some(Ok(AsyncMessage::Notification(notification))))
                    if notification.channel() == CATALOG_CHANNEL =>
                {
                    // The payload (the new generation) is the server's word:
                    // it prompts a check of the generation, and tells a
                    // transaction snapshot whether it may predate a change.
                    let generation = notification.payload().parse().unwrap_or(0);
                    self.watch.encryption.mark_stale(generation);
                }
                Poll::Ready(None) => {
                    self.watch.alive.store(false, Ordering::SeqCst);
                    return Poll::Ready(None);
                }
                other => return other,
            }
        }
    }
}

impl<S, T> Future for Connection<S, T>
where
    S: AsyncRead + AsyncWrite + Unpin,
    T: AsyncRead + AsyncWrite + Unpin,
{
    type Output = Result<(), tokio_postgres::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        while let Some(message) = std::task::ready!(self.poll_message(cx)?) {
            if let AsyncMessage::Notice(notice) = message {
                tracing::info!(
                    severity = notice.severity(),
                    message = notice.message(),
                    "server notice"
                );
            }
        }
        Poll::Ready(Ok(()))
    }
}

impl<S, T> Drop for Connection<S, T> {
    fn drop(&mut self) {
        self.watch.alive.store(false, Ordering::SeqCst);
    }
}

impl<S, T> std::fmt::Debug for Connection<S, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection").finish_non_exhaustive()
    }
}
