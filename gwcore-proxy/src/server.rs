//! Sockets: one per Gateway port, reconciled with each configuration.
//!
//! A port keeps its socket across reloads as long as some Gateway still
//! serves it; a port no Gateway wants stops accepting (its open connections
//! finish on their own); a new port is bound when a Gateway asks for it.
//! A reload that changes no port touches no socket.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::PortMode;
use crate::forward::ClientInfo;
use crate::proxy::Proxy;

/// How long a client may take to send a request head on HTTP/1.1 (and so
/// how long an idle keep-alive connection is kept).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Where each Gateway port is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenOptions {
    /// Explicit addresses per Gateway port (`--listen 80=127.0.0.1:8080`).
    pub map: BTreeMap<u16, SocketAddr>,
    /// The address other ports are bound on, at their own number.
    /// Default is `0.0.0.0`.
    pub default_ip: IpAddr,
    /// Bind ports without an explicit address on an ephemeral port of
    /// `default_ip` instead of their own number (tests, the conformance
    /// runner). Default is `false`.
    pub ephemeral: bool,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            map: BTreeMap::new(),
            default_ip: IpAddr::from([0, 0, 0, 0]),
            ephemeral: false,
        }
    }
}

impl ListenOptions {
    /// The address Gateway port `port` is served on.
    pub fn addr(&self, port: u16) -> SocketAddr {
        self.map.get(&port).copied().unwrap_or(SocketAddr::new(
            self.default_ip,
            if self.ephemeral { 0 } else { port },
        ))
    }
}

/// What a connection knows about itself, handed to every request on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// The Gateway port it arrived on.
    pub port: u16,
    /// The client, and whether TLS was used.
    pub client: ClientInfo,
    /// The SNI the client sent, for TLS connections.
    pub sni: Option<String>,
}

/// A bound port, as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BoundPort {
    /// The Gateway port.
    pub port: u16,
    /// The local address.
    pub addr: SocketAddr,
    /// How it serves.
    pub mode: PortMode,
}

struct Bound {
    info: BoundPort,
    task: JoinHandle<()>,
}

/// The set of listening sockets.
pub struct Server {
    proxy: Arc<Proxy>,
    opts: ListenOptions,
    bound: BTreeMap<u16, Bound>,
    /// Bind failures of the last reconcile, by port.
    errors: BTreeMap<u16, String>,
    /// Closed (value set to `true`) to start draining; every connection
    /// holds a receiver, so `closed()` tells when the last one is done.
    drain: watch::Sender<bool>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field(
                "bound",
                &self.bound.values().map(|b| &b.info).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server with no socket yet; call [`Server::reconcile`].
    pub fn new(proxy: Arc<Proxy>, opts: ListenOptions) -> Server {
        Server {
            proxy,
            opts,
            bound: BTreeMap::new(),
            errors: BTreeMap::new(),
            drain: watch::channel(false).0,
        }
    }

    /// Binds the ports the current configuration serves that are not bound
    /// yet (or whose mode changed) and closes those it no longer serves.
    /// A port that cannot be bound is logged, kept in [`Server::errors`],
    /// and retried at the next reconcile.
    pub async fn reconcile(&mut self) {
        let cfg = self.proxy.config();
        let stale: Vec<u16> = self
            .bound
            .iter()
            .filter(|(p, b)| cfg.ports.get(p).map(|c| c.mode) != Some(b.info.mode))
            .map(|(p, _)| *p)
            .collect();
        for p in stale {
            if let Some(b) = self.bound.remove(&p) {
                tracing::info!(port = p, addr = %b.info.addr, "closing listener");
                b.task.abort();
            }
        }
        self.errors.clear();
        for (port, pc) in &cfg.ports {
            if self.bound.contains_key(port) {
                continue;
            }
            let addr = self.opts.addr(*port);
            match TcpListener::bind(addr).await {
                Ok(listener) => {
                    let local = listener.local_addr().unwrap_or(addr);
                    tracing::info!(port, addr = %local, mode = ?pc.mode, gateway = %pc.gateway, "listening");
                    let task = tokio::spawn(accept_loop(
                        listener,
                        *port,
                        pc.mode,
                        self.proxy.clone(),
                        self.drain.subscribe(),
                    ));
                    self.bound.insert(
                        *port,
                        Bound {
                            info: BoundPort {
                                port: *port,
                                addr: local,
                                mode: pc.mode,
                            },
                            task,
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(port, %addr, error = %e, "cannot listen");
                    self.errors
                        .insert(*port, format!("cannot listen on {addr}: {e}"));
                }
            }
        }
        self.proxy.set_listeners(
            self.bound.values().map(|b| b.info.clone()).collect(),
            self.errors.clone(),
        );
    }

    /// The local address serving Gateway port `port`.
    pub fn local_addr(&self, port: u16) -> Option<SocketAddr> {
        self.bound.get(&port).map(|b| b.info.addr)
    }

    /// Ports that could not be bound, with the reason.
    pub fn errors(&self) -> &BTreeMap<u16, String> {
        &self.errors
    }

    /// Stops accepting, asks every open connection to finish its in-flight
    /// requests and close, and waits for them up to `grace`.
    pub async fn shutdown(mut self, grace: Duration) {
        for (_, b) in std::mem::take(&mut self.bound) {
            b.task.abort();
        }
        let _ = self.drain.send(true);
        if tokio::time::timeout(grace, self.drain.closed())
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "connections still open after the grace period; closing"
            );
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for b in self.bound.values() {
            b.task.abort();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    port: u16,
    mode: PortMode,
    proxy: Arc<Proxy>,
    drain: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(port, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        let drain = drain.clone();
        tokio::spawn(async move {
            match mode {
                PortMode::Http => {
                    let info = ConnInfo {
                        port,
                        client: ClientInfo { peer, tls: false },
                        sni: None,
                    };
                    serve_http(TokioIo::new(stream), info, proxy, drain).await;
                }
                PortMode::Https => crate::tls::serve_https(stream, peer, port, proxy, drain).await,
                PortMode::TlsTerminate | PortMode::TlsPassthrough | PortMode::Tcp => {
                    // Byte streams are not drained: they end with their peers.
                    drop(drain);
                    crate::tcp::serve_stream(stream, peer, port, mode, proxy).await;
                }
            }
        });
    }
}

/// Serves HTTP/1.1 (keep-alive, upgrades) and HTTP/2 (prior knowledge, or
/// negotiated by ALPN before this is called) on one connection until it
/// closes or the server drains.
pub(crate) async fn serve_http<I>(
    io: I,
    info: ConnInfo,
    proxy: Arc<Proxy>,
    mut drain: watch::Receiver<bool>,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let info = Arc::new(info);
    let svc = hyper::service::service_fn(move |req| {
        let proxy = proxy.clone();
        let info = info.clone();
        async move { Ok::<_, std::convert::Infallible>(proxy.handle(&info, req).await) }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // A client gets this long to send each request head, which also closes
    // idle keep-alive connections and stalls slow-header clients.
    builder
        .http1()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30));
    let conn = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    if *drain.borrow() {
        conn.as_mut().graceful_shutdown();
    }
    tokio::select! {
        _ = conn.as_mut() => return,
        _ = drain.changed() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}
