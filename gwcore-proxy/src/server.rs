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

use gwcore::model::ObjectKey;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{GatewayPort, PortMode};
use crate::forward::ClientInfo;
use crate::proxy::Proxy;

/// How long a client may take to send a request head on HTTP/1.1 (and so
/// how long an idle keep-alive connection is kept).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Where each Gateway port is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenOptions {
    /// Explicit addresses per port number, for every Gateway with that
    /// port (`--listen 80=127.0.0.1:8080`).
    pub map: BTreeMap<u16, SocketAddr>,
    /// Explicit addresses for one Gateway's port
    /// (`--listen infra/gw:80=127.0.0.1:8080`); they win over `map`.
    pub gateway_map: BTreeMap<GatewayPort, SocketAddr>,
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
            gateway_map: BTreeMap::new(),
            default_ip: IpAddr::from([0, 0, 0, 0]),
            ephemeral: false,
        }
    }
}

impl ListenOptions {
    /// The address a Gateway's port is served on: its own entry in
    /// `gateway_map`, else its number's in `map`, else `default_ip` at the
    /// same number (or an ephemeral one).
    pub fn addr(&self, gp: &GatewayPort) -> SocketAddr {
        self.gateway_map
            .get(gp)
            .or_else(|| self.map.get(&gp.port))
            .copied()
            .unwrap_or(SocketAddr::new(
                self.default_ip,
                if self.ephemeral { 0 } else { gp.port },
            ))
    }
}

/// What a connection knows about itself, handed to every request on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// The Gateway it arrived at.
    pub gateway: ObjectKey,
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
    /// The Gateway.
    pub gateway: ObjectKey,
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
    bound: BTreeMap<GatewayPort, Bound>,
    /// Bind failures of the last reconcile.
    errors: BTreeMap<GatewayPort, String>,
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
        let stale: Vec<GatewayPort> = self
            .bound
            .iter()
            .filter(|(gp, b)| cfg.ports.get(gp) != Some(&b.info.mode))
            .map(|(gp, _)| gp.clone())
            .collect();
        for gp in stale {
            if let Some(b) = self.bound.remove(&gp) {
                tracing::info!(gateway_port = %gp, addr = %b.info.addr, "closing listener");
                b.task.abort();
            }
        }
        self.errors.clear();
        for (gp, mode) in &cfg.ports {
            if self.bound.contains_key(gp) {
                continue;
            }
            let addr = self.opts.addr(gp);
            match TcpListener::bind(addr).await {
                Ok(listener) => {
                    let local = listener.local_addr().unwrap_or(addr);
                    tracing::info!(gateway_port = %gp, addr = %local, ?mode, "listening");
                    let task = tokio::spawn(accept_loop(
                        listener,
                        gp.clone(),
                        *mode,
                        self.proxy.clone(),
                        self.drain.subscribe(),
                    ));
                    self.bound.insert(
                        gp.clone(),
                        Bound {
                            info: BoundPort {
                                gateway: gp.gateway.clone(),
                                port: gp.port,
                                addr: local,
                                mode: *mode,
                            },
                            task,
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(gateway_port = %gp, %addr, error = %e, "cannot listen");
                    self.errors
                        .insert(gp.clone(), format!("cannot listen on {addr}: {e}"));
                }
            }
        }
        self.proxy.set_listeners(
            self.bound.values().map(|b| b.info.clone()).collect(),
            self.errors
                .iter()
                .map(|(gp, e)| (gp.to_string(), e.clone()))
                .collect(),
        );
    }

    /// The local address serving port `port` of the first Gateway (by
    /// namespace/name) that has it.
    pub fn local_addr(&self, port: u16) -> Option<SocketAddr> {
        self.bound
            .iter()
            .find(|(gp, _)| gp.port == port)
            .map(|(_, b)| b.info.addr)
    }

    /// The local address serving one Gateway's port.
    pub fn local_addr_of(&self, gp: &GatewayPort) -> Option<SocketAddr> {
        self.bound.get(gp).map(|b| b.info.addr)
    }

    /// Ports that could not be bound, with the reason.
    pub fn errors(&self) -> &BTreeMap<GatewayPort, String> {
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
    gp: GatewayPort,
    mode: PortMode,
    proxy: Arc<Proxy>,
    drain: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(gateway_port = %gp, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        let drain = drain.clone();
        let gp = gp.clone();
        tokio::spawn(async move {
            match mode {
                PortMode::Http => {
                    let info = ConnInfo {
                        gateway: gp.gateway,
                        port: gp.port,
                        client: ClientInfo::new(peer, false),
                        sni: None,
                    };
                    serve_http(TokioIo::new(stream), info, proxy, drain).await;
                }
                PortMode::Https => crate::tls::serve_https(stream, peer, gp, proxy, drain).await,
                PortMode::TlsTerminate | PortMode::TlsPassthrough | PortMode::Tcp => {
                    // Byte streams are not drained: they end with their peers.
                    drop(drain);
                    crate::tcp::serve_stream(stream, peer, gp, mode, proxy).await;
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
