//! A client connection taken over by a protocol switch (`101 Switching
//! Protocols`, WebSocket): what the request carries in its extensions so
//! that the forwarder can tunnel bytes once the `101` is written, whichever
//! server read the request (gwcore's own HTTP/1.1 server, or hyper's).

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;

/// The client's side of a switched connection: a byte stream both ways.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin {}

impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Where the connection comes from once its `101` answer is written.
enum Pending {
    /// hyper's server hands it over.
    Hyper(hyper::upgrade::OnUpgrade),
    /// gwcore's own HTTP/1.1 server (`crate::h1_server`) sends it.
    Own(oneshot::Receiver<Box<dyn Io>>),
}

/// A request's claim on its connection after a protocol switch, in the
/// request's extensions when it asks for a WebSocket upgrade. The first
/// [`ClientUpgrade::connection`] gets the connection; clones share the
/// claim (extensions must be `Clone`).
#[derive(Clone)]
pub(crate) struct ClientUpgrade(Arc<Mutex<Option<Pending>>>);

impl std::fmt::Debug for ClientUpgrade {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientUpgrade")
    }
}

impl ClientUpgrade {
    /// The claim on a connection hyper serves.
    pub(crate) fn hyper(on: hyper::upgrade::OnUpgrade) -> ClientUpgrade {
        ClientUpgrade(Arc::new(Mutex::new(Some(Pending::Hyper(on)))))
    }

    /// A claim on a connection of gwcore's own server, and where the server
    /// sends the connection once the `101` is written.
    pub(crate) fn own() -> (ClientUpgrade, oneshot::Sender<Box<dyn Io>>) {
        let (tx, rx) = oneshot::channel();
        (
            ClientUpgrade(Arc::new(Mutex::new(Some(Pending::Own(rx))))),
            tx,
        )
    }

    /// The connection, once the `101` answer is written; `None` when the
    /// connection closed before, the response was not a `101`, or another
    /// clone took it.
    pub(crate) async fn connection(self) -> Option<Box<dyn Io>> {
        // A poisoned lock only means another holder panicked while taking
        // the claim; what it left is still valid.
        let pending = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()?;
        match pending {
            Pending::Hyper(on) => {
                let upgraded = on.await.ok()?;
                Some(Box::new(hyper_util::rt::TokioIo::new(upgraded)))
            }
            Pending::Own(rx) => rx.await.ok(),
        }
    }
}
