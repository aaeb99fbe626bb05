//! TLS termination for HTTPS listeners and TLS listeners in Terminate mode:
//! the handshake with the port's settings (certificates from the
//! listeners' `certificateRefs` Secrets, chosen by SNI, ALPN `h2` and
//! `http/1.1`; built by [`crate::certs`]), then HTTP on HTTPS ports.

use std::net::SocketAddr;
use std::sync::Arc;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::config::GatewayPort;
use crate::conn::serve_http;
use crate::proxy::{ConnInfo, Proxy};

// Certificates are read in `certs`, below the configuration that holds
// them; also found here, beside the handshake that uses them.
pub use crate::certs::{CertError, ca_roots, certified_key, client_verifier, server_configs};

/// Runs the server side of a TLS handshake with the certificates of the
/// port's listeners; `None` (logged) when it fails or takes over 10 s.
/// Without `http`, no application protocol is offered: a TLS listener in
/// Terminate mode carries whatever its clients speak, even on a port that
/// also has HTTPS listeners (which offer `h2` and `http/1.1`).
pub(crate) async fn handshake<S>(
    stream: S,
    peer: SocketAddr,
    gp: &GatewayPort,
    proxy: &Proxy,
    http: bool,
) -> Option<tokio_rustls::server::TlsStream<S>>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let Some(mut tls) = proxy.config().tls.get(gp).cloned() else {
        tracing::warn!(gateway_port = %gp, %peer, "no usable certificate for this port; closing");
        return None;
    };
    if !http && !tls.alpn_protocols.is_empty() {
        Arc::make_mut(&mut tls).alpn_protocols.clear();
    }
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    match tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(stream)).await {
        Ok(Ok(s)) => Some(s),
        Ok(Err(e)) => {
            tracing::debug!(gateway_port = %gp, %peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(gateway_port = %gp, %peer, "TLS handshake timed out");
            None
        }
    }
}

/// Terminates TLS on an accepted connection, then serves HTTP on it.
pub(crate) async fn serve_https<S>(
    stream: S,
    peer: SocketAddr,
    gp: GatewayPort,
    proxy: Arc<Proxy>,
    drain: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let Some(stream) = handshake(stream, peer, &gp, &proxy, true).await else {
        return;
    };
    let sni = stream.get_ref().1.server_name().map(str::to_owned);
    let info = ConnInfo {
        gateway: gp.gateway,
        port: gp.port,
        client: proxy.client_info(peer, true),
        sni,
    };
    serve_http(TokioIo::new(stream), info, proxy, drain).await;
}
