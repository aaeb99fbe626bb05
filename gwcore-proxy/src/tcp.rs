//! Connections on TLS-listener ports and TCP ports.
//!
//! A connection to a port with TLS listeners is read until its TLS
//! ClientHello is complete; the SNI in it picks the listener
//! ([`crate::l4::tls_listener`]), whatever the modes of the port's
//! listeners, and that listener's mode says what happens next:
//!
//! ```text
//!  ClientHello ──SNI──▶ listener ──Passthrough──▶ bytes read so far + copy ──▶ TLSRoute backend (its own TLS)
//!                                ├─Terminate────▶ our TLS (certificate by SNI) ──▶ plain bytes ──▶ TLSRoute backend
//!                                └─HTTPS────────▶ our TLS ──▶ HTTP ──▶ the routing table
//! ```
//!
//! Nothing is decrypted on the Passthrough path. When the gateway
//! terminates, the bytes read for the ClientHello are replayed to the TLS
//! server ([`Replay`]). A TCP connection goes to its port's TCPRoute.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

use gwcore::attachments::{ListenerProtocol, TlsMode};

use crate::config::GatewayPort;
use crate::l4::{self, Hello};
use crate::metrics::SeriesKey;
use crate::proxy::Proxy;

/// The largest ClientHello read before giving up.
const MAX_HELLO: usize = 16 * 1024;

/// Serves a connection to a port with TLS listeners (Passthrough,
/// Terminate, or both, possibly beside HTTPS listeners): the ClientHello's
/// SNI picks the listener, whose mode then applies.
pub(crate) async fn serve_tls(
    mut stream: TcpStream,
    peer: SocketAddr,
    gp: GatewayPort,
    proxy: Arc<Proxy>,
    drain: watch::Receiver<bool>,
) {
    let mut head = Vec::new();
    let Some(sni) = read_hello(&mut stream, &mut head).await else {
        return;
    };
    let listener = {
        let cfg = proxy.config();
        cfg.computed
            .routing
            .get(&gp.gateway)
            .and_then(|r| l4::tls_listener(r, gp.port, sni.as_deref()))
            .map(|l| (l.protocol, l.tls_mode.unwrap_or(TlsMode::Terminate)))
    };
    let Some((protocol, mode)) = listener else {
        tracing::info!(target: "gwcore::access", port = gp.port, client = %peer, ?sni, "no listener for this SNI; closing");
        refuse(&gp, &proxy);
        return;
    };
    if protocol == ListenerProtocol::Https {
        let stream = Replay::new(head, stream);
        crate::tls::serve_https(stream, peer, gp, proxy, drain).await;
        return;
    }
    // Byte streams are not drained: they end with their peers.
    drop(drain);
    match mode {
        TlsMode::Passthrough => {
            let Some(sni) = sni else {
                tracing::debug!(gateway_port = %gp, %peer, "TLS connection without SNI cannot be routed; closing");
                refuse(&gp, &proxy);
                return;
            };
            forward(
                stream,
                &head,
                peer,
                &gp,
                Some((&sni, TlsMode::Passthrough)),
                &proxy,
            )
            .await;
        }
        TlsMode::Terminate => {
            let stream = Replay::new(head, stream);
            let Some(tls) = crate::tls::handshake(stream, peer, &gp, &proxy, false).await else {
                return;
            };
            let Some(sni) = tls.get_ref().1.server_name().map(str::to_owned) else {
                tracing::debug!(gateway_port = %gp, %peer, "TLS connection without SNI cannot be routed; closing");
                refuse(&gp, &proxy);
                return;
            };
            forward(
                tls,
                &[],
                peer,
                &gp,
                Some((&sni, TlsMode::Terminate)),
                &proxy,
            )
            .await;
        }
    }
}

/// Serves a connection to a TCP port: its TCPRoute's backend.
pub(crate) async fn serve_tcp(
    stream: TcpStream,
    peer: SocketAddr,
    gp: GatewayPort,
    proxy: Arc<Proxy>,
) {
    forward(stream, &[], peer, &gp, None, &proxy).await;
}

/// Counts a connection closed before a route was chosen.
fn refuse(gp: &GatewayPort, proxy: &Proxy) {
    let series = SeriesKey {
        gateway: proxy.config().labels.gateway(&gp.gateway),
        ..SeriesKey::default()
    };
    proxy.metrics().record_stream(&series, false);
}

/// Connects the client to the backend of the route chosen for it (the
/// TLSRoute for `sni` in that mode, else the port's TCPRoute), sends `head`
/// (bytes already read from the client) and copies both ways until either
/// side closes.
async fn forward<S>(
    mut client: S,
    head: &[u8],
    peer: SocketAddr,
    gp: &GatewayPort,
    sni: Option<(&str, TlsMode)>,
    proxy: &Proxy,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let cfg = proxy.config();
    let port = gp.port;
    let mut series = SeriesKey {
        gateway: cfg.labels.gateway(&gp.gateway),
        ..SeriesKey::default()
    };
    let refuse = |series: &SeriesKey| proxy.metrics().record_stream(series, false);
    let Some(routing) = cfg.computed.routing.get(&gp.gateway) else {
        refuse(&series);
        return;
    };
    let choice = match sni {
        Some((sni, mode)) => l4::tls_route(routing, port, sni, mode),
        None => l4::tcp(routing, port),
    };
    let Some(choice) = choice else {
        tracing::info!(target: "gwcore::access", port, client = %peer, sni = ?sni.map(|s| s.0), "no route; closing");
        refuse(&series);
        return;
    };
    series.route = cfg.labels.route(&choice.route.key);
    let Some(target) = l4::pick(choice.rule, fastrand::u64(..)) else {
        tracing::info!(target: "gwcore::access", port, client = %peer, route = %choice.route.key, "no valid backend; closing");
        refuse(&series);
        return;
    };
    series.backend = cfg.labels.backend(&target.service, target.port);
    let addrs = cfg.endpoints.get(&target.service, target.port);
    if addrs.is_empty() {
        tracing::info!(target: "gwcore::access", port, client = %peer, service = %target.service, "no ready endpoints; closing");
        refuse(&series);
        return;
    }
    // A terminated TLSRoute's backend with a BackendTLSPolicy gets TLS of
    // its own; a passthrough stream is the client's TLS already, and a
    // TCPRoute's bytes are the client's.
    let backend_tls = match (&target.tls, sni) {
        (Some(t), Some((_, TlsMode::Terminate))) => {
            let client_certificate = routing.backend_client_certificate.as_ref();
            match cfg
                .backend_tls
                .get(&cfg.snapshot, t, None, client_certificate)
            {
                Ok(c) => Some(c),
                Err(e) => {
                    tracing::info!(target: "gwcore::access", port, client = %peer, service = %target.service, error = %e, "backend TLS policy cannot be used; closing");
                    refuse(&series);
                    return;
                }
            }
        }
        _ => None,
    };
    // An endpoint that takes no connection has seen nothing of the
    // client's: another one is tried, as for HTTP (`route::send_to_one`).
    let refusing = proxy.forwarder.refusing();
    let mut tried = Vec::new();
    let (mut backend, addr) = loop {
        let Some(i) = refusing.choose(addrs, &tried, fastrand::usize(..)) else {
            refuse(&series);
            return;
        };
        let addr = addrs[i].addr;
        match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                refusing.answered(addr);
                break (s, addr);
            }
            _ => {
                if !refusing.refused_try(addrs, i, &mut tried) {
                    tracing::info!(target: "gwcore::access", port, client = %peer, %addr, "backend unreachable; closing");
                    refuse(&series);
                    return;
                }
            }
        }
    };
    proxy.metrics().record_stream(&series, true);
    let _ = backend.set_nodelay(true);
    tracing::info!(
        target: "gwcore::access",
        port,
        client = %peer,
        listener = %choice.listener.name,
        route = %choice.route.key,
        backend = %addr,
        "stream forwarded"
    );
    // The connection keeps the configuration it started with: it owns what
    // it needs, and a reload does not reach it.
    drop(cfg);
    if let Some(c) = backend_tls {
        let mut backend = match tokio::time::timeout(Duration::from_secs(5), c.connect(backend))
            .await
        {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::info!(target: "gwcore::access", port, client = %peer, %addr, error = %e, "backend TLS handshake failed; closing");
                return;
            }
            Err(_) => return,
        };
        let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
        return;
    }
    if !head.is_empty() && backend.write_all(head).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
}

/// Reads until the ClientHello is complete: `Some(sni)` then, `None` when
/// the stream is not TLS, too large, closed or too slow.
async fn read_hello(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Option<Option<String>> {
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            match l4::client_hello_sni(buf) {
                Hello::Complete(sni) => return Some(sni),
                Hello::NotTls => return None,
                Hello::Incomplete if buf.len() >= MAX_HELLO => return None,
                Hello::Incomplete => {}
            }
            let n = stream.read(&mut chunk).await.ok()?;
            if n == 0 {
                return None;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .ok()
        .flatten()
}

/// A stream whose first reads return bytes already read from it (the
/// ClientHello read to choose the listener), so that the TLS server sees
/// the connection from its first byte.
#[derive(Debug)]
pub(crate) struct Replay<S> {
    head: Vec<u8>,
    at: usize,
    inner: S,
}

impl<S> Replay<S> {
    pub(crate) fn new(head: Vec<u8>, inner: S) -> Replay<S> {
        Replay { head, at: 0, inner }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if this.at < this.head.len() {
            let n = buf.remaining().min(this.head.len() - this.at);
            buf.put_slice(&this.head[this.at..this.at + n]);
            this.at += n;
            if this.at == this.head.len() {
                // Replayed: the buffer is not needed for the connection's life.
                this.head = Vec::new();
                this.at = 0;
            }
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Replay<S> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
