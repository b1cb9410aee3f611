//! [`ClientManager`] as a deadpool manager.

use deadpool::managed::{Manager, Metrics, RecycleError, RecycleResult};
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::Socket;

use super::ClientManager;
use crate::{Client, Error};

impl<T> Manager for ClientManager<T>
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + Sync + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    type Type = Client;
    type Error = Error;

    async fn create(&self) -> Result<Client, Error> {
        self.open().await
    }

    async fn recycle(&self, client: &mut Client, _: &Metrics) -> RecycleResult<Error> {
        self.recycle_client(client)
            .await
            .map_err(RecycleError::Backend)
    }
}
