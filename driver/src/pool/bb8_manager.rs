//! [`ClientManager`] as a bb8 connection manager.

use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::Socket;

use super::ClientManager;
use crate::{Client, Error};

impl<T> bb8::ManageConnection for ClientManager<T>
where
    T: MakeTlsConnect<Socket> + Clone + Send + Sync + 'static,
    T::Stream: Send + Sync + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    type Connection = Client;
    type Error = Error;

    async fn connect(&self) -> Result<Client, Error> {
        self.open().await
    }

    async fn is_valid(&self, client: &mut Client) -> Result<(), Error> {
        self.recycle_client(client).await
    }

    fn has_broken(&self, client: &mut Client) -> bool {
        client.is_closed()
    }
}
