//! Sockets: one per Gateway port, reconciled with each configuration.
//!
//! A port keeps its socket across reloads as long as some Gateway still
//! serves it; a port no Gateway wants stops accepting (its open connections
//! finish on their own); a new port is bound when a Gateway asks for it.
//! A reload that changes no port touches no socket.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
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
use crate::limits::{Limits, TrustedProxies};
use crate::proxy::Proxy;

/// The default of [`Limits::header_read_timeout`]: how long a client may
/// take to send a request head on HTTP/1.1 (and so how long an idle
/// keep-alive connection is kept).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How client connections are served: their limits and which peers may set
/// proxy headers. Default is [`Limits::default`] and no trusted peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServeOptions {
    /// Resource limits of client connections.
    pub limits: Limits,
    /// Peers whose `X-Forwarded-*` headers are kept (appended to); from
    /// others they are replaced.
    pub trusted_proxies: TrustedProxies,
}

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
            let bound = match mode {
                PortMode::Udp => crate::udp::bind(addr, gp.clone(), self.proxy.clone()).await,
                _ => TcpListener::bind(addr).await.map(|listener| {
                    let local = listener.local_addr().unwrap_or(addr);
                    let task = tokio::spawn(accept_loop(
                        listener,
                        gp.clone(),
                        *mode,
                        self.proxy.clone(),
                        self.drain.subscribe(),
                    ));
                    (local, task)
                }),
            };
            match bound {
                Ok((local, task)) => {
                    tracing::info!(gateway_port = %gp, addr = %local, ?mode, "listening");
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
        // Over the connection limit: closed at once, so that the client
        // learns it now rather than after waiting in the listen queue.
        let Some(slot) = proxy.connection_slot() else {
            tracing::debug!(gateway_port = %gp, %peer, "connection limit reached; closing");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        let drain = drain.clone();
        let gp = gp.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match mode {
                PortMode::Http => {
                    let info = ConnInfo {
                        gateway: gp.gateway,
                        port: gp.port,
                        client: proxy.client_info(peer, false),
                        sni: None,
                    };
                    serve_http(TokioIo::new(stream), info, proxy, drain).await;
                }
                PortMode::Https => crate::tls::serve_https(stream, peer, gp, proxy, drain).await,
                PortMode::TlsTerminate | PortMode::TlsPassthrough | PortMode::TlsMixed => {
                    crate::tcp::serve_tls(stream, peer, gp, proxy, drain).await;
                }
                PortMode::Tcp => {
                    // Byte streams are not drained: they end with their peers.
                    drop(drain);
                    crate::tcp::serve_tcp(stream, peer, gp, proxy).await;
                }
                // UDP ports have no TCP listener: `crate::udp` serves them.
                PortMode::Udp => {}
            }
        });
    }
}

/// What a connection is doing, for its idle and header read timeouts:
/// requests in flight, whether one ever came (and over HTTP/1), and when
/// the last one ended.
struct Activity {
    in_flight: AtomicUsize,
    served: AtomicBool,
    /// The requests are HTTP/1.x: between two, the next head must come
    /// within the header read timeout.
    http1: AtomicBool,
    /// When the last request ended, in milliseconds since `start`.
    last_ms: AtomicU64,
    start: tokio::time::Instant,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            in_flight: AtomicUsize::new(0),
            served: AtomicBool::new(false),
            http1: AtomicBool::new(false),
            last_ms: AtomicU64::new(0),
            start: tokio::time::Instant::now(),
        }
    }

    fn begin(self: &Arc<Self>, version: http::Version) -> InFlight {
        if version < http::Version::HTTP_2 {
            self.http1.store(true, Ordering::Relaxed);
        }
        self.served.store(true, Ordering::Relaxed);
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight(self.clone())
    }

    /// Resolves when the connection has had no request in flight for its
    /// limit (zero disables either timeout): until a request came, the
    /// `header` read timeout (or `idle` without one), whatever the protocol
    /// (HTTP/2 has no per-head timeout); then `idle`, or for
    /// HTTP/1.x the shorter of the two, as the next request head must come
    /// within `header` (it counts from the end of the request before: an
    /// idle keep-alive connection is one waiting for a head).
    ///
    /// Requests do not touch the timer: it is set for the earliest moment
    /// the connection could be idle long enough, and when it fires it is
    /// moved on to the end of the last request plus the limit (or, with a
    /// request still in flight, by one limit), so a busy keep-alive
    /// connection costs a timer event per limit, not one per request.
    async fn idle(&self, header: Duration, idle: Duration) {
        let before_first = if header.is_zero() { idle } else { header };
        let Some(between) = [header, idle].into_iter().filter(|d| !d.is_zero()).min() else {
            return std::future::pending().await;
        };
        // The earliest any limit can end.
        let sleep = tokio::time::sleep_until(self.start + between);
        tokio::pin!(sleep);
        loop {
            sleep.as_mut().await;
            let limit = if !self.served.load(Ordering::Relaxed) {
                before_first
            } else if self.http1.load(Ordering::Relaxed) {
                between
            } else {
                idle
            };
            if limit.is_zero() {
                return std::future::pending().await;
            }
            let now = tokio::time::Instant::now();
            if self.in_flight.load(Ordering::Acquire) > 0 {
                sleep.as_mut().reset(now + limit);
                continue;
            }
            let last = self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + limit;
            if now >= deadline {
                return;
            }
            sleep.as_mut().reset(deadline);
        }
    }
}

/// One request in flight; ends when its response body is done or dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let a = &self.0;
        let ms = u64::try_from(a.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        a.last_ms.store(ms, Ordering::Relaxed);
        a.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

/// A response body that keeps its request in flight until it ends.
struct Tracked<B> {
    inner: B,
    _in_flight: InFlight,
}

impl<B> hyper::body::Body for Tracked<B>
where
    B: hyper::body::Body + Unpin,
{
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<B::Data>, B::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// How long an idle connection told to close may take to finish closing
/// (an HTTP/2 peer must answer a PING) before it is dropped.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(1);

/// The smallest HTTP/1.1 read buffer hyper accepts.
const MIN_HTTP1_BUFFER: usize = 8192;

/// The connection builder for `limits`.
fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    let mut h1 = builder.http1();
    // The header read timeout is the connection's own (`Activity::idle`):
    // hyper's would arm and cancel a timer for every request.
    h1.header_read_timeout(None);
    // The read buffer's cap: a head that does not fit gets 431. hyper
    // needs at least 8 KiB.
    if limits.max_header_bytes > 0 {
        h1.max_buf_size(limits.max_header_bytes.max(MIN_HTTP1_BUFFER));
    }
    // hyper's own default is 100 on the stack; another count costs a heap
    // allocation per request.
    if limits.max_headers > 0 && limits.max_headers != 100 {
        h1.max_headers(limits.max_headers);
    }
    let mut h2 = builder.http2();
    h2.timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(limits.http2_keep_alive_interval.filter(|t| !t.is_zero()))
        .keep_alive_timeout(limits.http2_keep_alive_timeout)
        .max_concurrent_streams(limits.http2_max_concurrent_streams);
    if limits.max_header_bytes > 0 {
        h2.max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    }
    builder
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
    let limits = proxy.options().limits.clone();
    let activity = Arc::new(Activity::new());
    let info = Arc::new(info);
    let act = activity.clone();
    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let proxy = proxy.clone();
        let info = info.clone();
        let in_flight = act.begin(req.version());
        async move {
            let resp = proxy.handle(&info, req).await;
            Ok::<_, std::convert::Infallible>(resp.map(|inner| Tracked {
                inner,
                _in_flight: in_flight,
            }))
        }
    });
    let builder = builder(&limits);
    let conn = builder.serve_connection_with_upgrades(io, svc);
    tokio::pin!(conn);
    if *drain.borrow() {
        conn.as_mut().graceful_shutdown();
    }
    // The drain signal and the idle timer are watched on a task of their
    // own, which tells this one why to close: selected here, they would be
    // polled on every wake of the connection (several per request), and a
    // oneshot is cheaper to poll than both.
    let (mut close_tx, close_rx) = tokio::sync::oneshot::channel();
    let watched = activity.clone();
    let (header_timeout, idle_timeout) = (limits.header_read_timeout, limits.idle_timeout);
    tokio::spawn(async move {
        let why = tokio::select! {
            // The connection ended.
            _ = close_tx.closed() => return,
            _ = drain.changed() => Close::Drain,
            _ = watched.idle(header_timeout, idle_timeout) => Close::Idle,
        };
        let _ = close_tx.send(why);
    });
    let why = tokio::select! {
        _ = conn.as_mut() => return,
        why = close_rx => why,
    };
    if let Ok(Close::Idle) = why {
        // Nothing is in flight: say goodbye (HTTP/2: GOAWAY, then a PING
        // the peer must answer), and drop the connection if the peer does
        // not finish that in time. A request that slipped in meanwhile is
        // waited for.
        tracing::debug!("idle connection closed");
        conn.as_mut().graceful_shutdown();
        loop {
            match tokio::time::timeout(IDLE_CLOSE_GRACE, conn.as_mut()).await {
                Ok(_) => return,
                Err(_) if activity.in_flight.load(Ordering::Acquire) == 0 => return,
                Err(_) => {}
            }
        }
    }
    // Draining (or the watcher is gone with the runtime).
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
}

/// Why a connection is told to close.
enum Close {
    /// The server drains.
    Drain,
    /// No request for the idle limit.
    Idle,
}
