//! Byte forwarding for TLS-passthrough and TCP listeners.
//!
//! A passthrough connection is read until its TLS ClientHello is complete,
//! routed by the SNI in it ([`crate::l4`]), and the bytes read so far are
//! sent to the backend before both directions are copied. Nothing is
//! decrypted. On a TLS listener in Terminate mode the gateway ends the TLS
//! session (certificate by SNI, as for HTTPS) and forwards the decrypted
//! bytes the same way. A TCP connection goes to its port's TCPRoute.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use gwcore::attachments::TlsMode;

use crate::config::{GatewayPort, PortMode};
use crate::l4::{self, Hello};
use crate::metrics::SeriesKey;
use crate::proxy::Proxy;

/// The largest ClientHello read before giving up.
const MAX_HELLO: usize = 16 * 1024;

pub(crate) async fn serve_stream(
    mut stream: TcpStream,
    peer: SocketAddr,
    gp: GatewayPort,
    mode: PortMode,
    proxy: Arc<Proxy>,
) {
    match mode {
        PortMode::TlsPassthrough => {
            let mut head = Vec::new();
            let sni = match read_hello(&mut stream, &mut head).await {
                Some(Some(sni)) => sni,
                Some(None) => {
                    tracing::debug!(gateway_port = %gp, %peer, "TLS connection without SNI cannot be routed; closing");
                    return;
                }
                None => return,
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
        PortMode::TlsTerminate => {
            let Some(tls) = crate::tls::handshake(stream, peer, &gp, &proxy).await else {
                return;
            };
            let Some(sni) = tls.get_ref().1.server_name().map(str::to_owned) else {
                tracing::debug!(gateway_port = %gp, %peer, "TLS connection without SNI cannot be routed; closing");
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
        _ => forward(stream, &[], peer, &gp, None, &proxy).await,
    }
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
    let addr = addrs[fastrand::usize(..addrs.len())].addr;
    let mut backend = match tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
    {
        Ok(Ok(s)) => s,
        _ => {
            tracing::info!(target: "gwcore::access", port, client = %peer, %addr, "backend unreachable; closing");
            refuse(&series);
            return;
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
