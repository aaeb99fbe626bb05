//! Forwarding a request to one backend endpoint: proxy headers, connection
//! pools, timeouts and protocol upgrades.
//!
//! HTTP/1.1 backends share a keep-alive pool per endpoint: a request goes
//! out on a connection that is waiting for one, or on a new one, and the
//! exchange is spoken by the request's own task (the private module
//! `h1`). HTTP/2 cleartext backends (`appProtocol: kubernetes.io/h2c`) get
//! one multiplexed connection per endpoint, opened on first use and
//! replaced when it closes; the request's authority is kept as
//! `:authority`.
//! Backends with a BackendTLSPolicy are reached over TLS
//! ([`crate::backend_tls`]): the handshake is part of connecting, and
//! their connections are pooled apart from plain ones, keyed by address
//! and TLS settings.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use crate::backend_tls::{BackendConnector, PoolKey, TlsKey};
use crate::body::{Body, incoming};
use crate::endpoints::{Endpoint, Refusing};
use crate::h1::{self, Conn};

/// How the proxy talks to a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BackendProtocol {
    /// HTTP/1.1 (the default).
    Http1,
    /// HTTP/2 over cleartext with prior knowledge.
    H2c,
}

impl BackendProtocol {
    /// From a Service port's `appProtocol`: `kubernetes.io/h2c` means h2c;
    /// anything else (including `kubernetes.io/ws` and `wss`) is HTTP/1.1.
    pub fn from_app_protocol(app_protocol: Option<&str>) -> BackendProtocol {
        match app_protocol {
            Some("kubernetes.io/h2c") => BackendProtocol::H2c,
            _ => BackendProtocol::Http1,
        }
    }
}

/// Why forwarding failed, and so what the client is answered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ForwardError {
    /// No connection could be made (503).
    #[error("backend {0} is unreachable: {1}")]
    Unreachable(SocketAddr, String),
    /// The backend did not answer in time (504).
    #[error("backend {0} did not answer within {1:?}")]
    Timeout(SocketAddr, Duration),
    /// The connection broke or the answer was not HTTP (502).
    #[error("backend {0} failed: {1}")]
    Failed(SocketAddr, String),
}

impl ForwardError {
    /// The status the client gets.
    pub fn status(&self) -> http::StatusCode {
        match self {
            ForwardError::Unreachable(..) => http::StatusCode::SERVICE_UNAVAILABLE,
            ForwardError::Timeout(..) => http::StatusCode::GATEWAY_TIMEOUT,
            ForwardError::Failed(..) => http::StatusCode::BAD_GATEWAY,
        }
    }
}

/// A send that failed, with the request when it never left (no
/// connection to the endpoint could be made), so that it can go to another
/// endpoint.
pub(crate) struct SendFailure {
    pub(crate) error: ForwardError,
    /// Boxed: a failure is rare, and every send's result would carry
    /// the request's size.
    pub(crate) unsent: Option<Box<Request<Body>>>,
}

impl From<ForwardError> for SendFailure {
    fn from(error: ForwardError) -> SendFailure {
        SendFailure {
            error,
            unsent: None,
        }
    }
}

/// Sends requests to backend endpoints over pooled connections.
#[derive(Debug)]
pub struct Forwarder {
    /// Idle HTTP/1.1 connections, plain and TLS.
    http1: Arc<Http1Pool>,
    h2c: Mutex<HashMap<SocketAddr, http2::SendRequest<Body>>>,
    connect_timeout: Duration,
    /// HTTP/2 connections over TLS (BackendTLSPolicy), kept apart from
    /// plain ones.
    tls_h2: Mutex<HashMap<TlsKey, http2::SendRequest<Body>>>,
    /// Endpoints that lately took no connection.
    refusing: Refusing,
}

impl Default for Forwarder {
    fn default() -> Self {
        Forwarder::new(Duration::from_secs(5))
    }
}

/// Idle connections kept per HTTP/1.1 endpoint. A connection whose
/// exchange ends when this many wait already is closed.
const HTTP1_POOL_MAX: usize = 1024;

/// How often the HTTP/1.1 pool looks for connections to close: one left
/// waiting for [`HTTP1_IDLE_SWEEPS`] sweeps in a row is closed (about 90 s
/// idle).
const HTTP1_SWEEP_EVERY: Duration = Duration::from_secs(30);
const HTTP1_IDLE_SWEEPS: u8 = 3;

/// What an HTTP/1.1 connection is pooled under: the endpoint's address,
/// and for TLS connections the TLS settings too.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum ConnKey {
    Plain(SocketAddr),
    Tls(TlsKey),
}

impl ConnKey {
    fn retired(&self) -> bool {
        match self {
            ConnKey::Plain(a) => a.retired(),
            ConnKey::Tls(k) => k.retired(),
        }
    }
}

/// The HTTP/1.1 keep-alive pool: the connections waiting for a request,
/// per endpoint.
///
/// A request takes a waiting connection (the one that waited least) or
/// opens one; the connection is the exchange's until the response body
/// ends, then it waits in the pool again. A connection the backend closed
/// meanwhile is noticed when taken (module `h1`), and a request that
/// meets a connection closing under it goes again on another when it has
/// no body.
///
/// Each worker thread ([`crate::server::set_workers`]) has lists of its
/// own: a connection is registered with the reactor of the worker that
/// opened it, and taken again only there, so its readiness never wakes
/// another thread.
#[derive(Debug, Default)]
struct Http1Pool {
    /// By endpoint, then by worker (`crate::worker::index`).
    /// FxHash: the keys are backend addresses the configuration chose.
    idle: Mutex<HashMap<ConnKey, Vec<Vec<Idle>>, rustc_hash::FxBuildHasher>>,
    sweeping: std::sync::atomic::AtomicBool,
}

#[derive(Debug)]
struct Idle {
    conn: Conn,
    /// Sweeps that found it waiting.
    sweeps: u8,
}

impl Http1Pool {
    /// A waiting connection to `key` that can take a request.
    fn take(&self, key: &ConnKey) -> Option<Conn> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let list = idle.get_mut(key)?.get_mut(crate::worker::index())?;
        while let Some(mut c) = list.pop() {
            if c.conn.is_reusable() {
                return Some(c.conn);
            }
        }
        None
    }

    /// Keeps `conn` waiting for the next request to `key`.
    fn put(self: &Arc<Self>, key: ConnKey, conn: Conn) {
        if key.retired() {
            return;
        }
        {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
            let lists = idle.entry(key).or_default();
            let worker = crate::worker::index();
            if lists.len() <= worker {
                lists.resize_with(worker + 1, Vec::new);
            }
            let list = &mut lists[worker];
            if list.len() < HTTP1_POOL_MAX {
                list.push(Idle { conn, sweeps: 0 });
            }
        }
        if !self
            .sweeping
            .swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            tokio::spawn(sweep(Arc::downgrade(self)));
        }
    }
}

/// Where an exchange's connection goes back to.
struct PoolHome {
    pool: Arc<Http1Pool>,
    key: ConnKey,
}

impl h1::Home for PoolHome {
    fn put(self, conn: Conn) {
        self.pool.put(self.key, conn);
    }
}

/// Closes connections left waiting for about 90 s, those the backend
/// closed, and those of TLS settings no longer served, until the pool is
/// dropped.
async fn sweep(pool: Weak<Http1Pool>) {
    loop {
        tokio::time::sleep(HTTP1_SWEEP_EVERY).await;
        let Some(pool) = pool.upgrade() else { return };
        let mut idle = pool.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|key, lists| {
            let retired = key.retired();
            for list in lists.iter_mut() {
                list.retain_mut(|c| {
                    c.sweeps += 1;
                    !retired && c.sweeps < HTTP1_IDLE_SWEEPS && c.conn.is_reusable()
                });
            }
            lists.iter().any(|l| !l.is_empty())
        });
    }
}

impl Forwarder {
    /// A forwarder giving up on a connection attempt after `connect_timeout`.
    pub fn new(connect_timeout: Duration) -> Forwarder {
        Forwarder {
            http1: Arc::new(Http1Pool::default()),
            h2c: Mutex::new(HashMap::new()),
            connect_timeout,
            tls_h2: Mutex::new(HashMap::new()),
            refusing: Refusing::default(),
        }
    }

    /// Endpoints that lately took no connection, for choosing among a
    /// Service's endpoints.
    pub(crate) fn refusing(&self) -> &Refusing {
        &self.refusing
    }

    /// Sends `req` (already prepared with [`prepare_request`]) to `addr`,
    /// waiting at most `timeout` for the response head.
    pub async fn send(
        &self,
        req: Request<Body>,
        addr: SocketAddr,
        protocol: BackendProtocol,
        timeout: Option<Duration>,
    ) -> Result<Response<Body>, ForwardError> {
        self.send_to(req, &Endpoint::new(addr), protocol, timeout)
            .await
    }

    /// [`Forwarder::send`] to an endpoint whose authority is already made.
    pub async fn send_to(
        &self,
        req: Request<Body>,
        endpoint: &Endpoint,
        protocol: BackendProtocol,
        timeout: Option<Duration>,
    ) -> Result<Response<Body>, ForwardError> {
        self.send_over(req, endpoint, protocol, timeout, None).await
    }

    /// [`Forwarder::send_to`] over TLS made with `tls` when given
    /// (BackendTLSPolicy): the handshake is part of connecting, so a
    /// backend whose certificate does not verify is unreachable (503).
    ///
    /// A `101 Switching Protocols` answer to a WebSocket upgrade carries
    /// the backend connection for [`crate::route`]'s tunnel.
    pub async fn send_over(
        &self,
        req: Request<Body>,
        endpoint: &Endpoint,
        protocol: BackendProtocol,
        timeout: Option<Duration>,
        tls: Option<&Arc<BackendConnector>>,
    ) -> Result<Response<Body>, ForwardError> {
        self.try_send_over(req, endpoint, protocol, timeout, tls)
            .await
            .map_err(|f| f.error)
    }

    /// [`Forwarder::send_over`], giving the request back when no
    /// connection to the endpoint could be made (it was not sent).
    pub(crate) async fn try_send_over(
        &self,
        req: Request<Body>,
        endpoint: &Endpoint,
        protocol: BackendProtocol,
        timeout: Option<Duration>,
        tls: Option<&Arc<BackendConnector>>,
    ) -> Result<Response<Body>, SendFailure> {
        let addr = endpoint.addr;
        let fut = self.send_inner(req, endpoint, protocol, tls);
        match timeout {
            Some(t) => tokio::time::timeout(t, fut)
                .await
                .unwrap_or_else(|_| Err(ForwardError::Timeout(addr, t).into())),
            None => fut.await,
        }
    }

    async fn send_inner(
        &self,
        mut req: Request<Body>,
        endpoint: &Endpoint,
        protocol: BackendProtocol,
        tls: Option<&Arc<BackendConnector>>,
    ) -> Result<Response<Body>, SendFailure> {
        let addr = endpoint.addr;
        match protocol {
            BackendProtocol::Http1 => {
                // HTTP/1.1 to a backend: the origin form of the target
                // (RFC 9112 §3.2.1), Host naming the authority.
                if req.uri().scheme().is_some() || req.uri().authority().is_some() {
                    *req.uri_mut() = origin_form(req.uri());
                }
                if !req.headers().contains_key(header::HOST) {
                    let host = HeaderValue::from_str(endpoint.authority.as_str())
                        .unwrap_or_else(|_| HeaderValue::from_static("invalid"));
                    req.headers_mut().insert(header::HOST, host);
                }
                *req.version_mut() = Version::HTTP_11;
                let key = match tls {
                    None => ConnKey::Plain(addr),
                    Some(c) => ConnKey::Tls(TlsKey {
                        addr,
                        connector: c.clone(),
                    }),
                };
                self.send_http1(key, req, addr, tls).await
            }
            BackendProtocol::H2c => {
                let authority = req
                    .headers()
                    .get(header::HOST)
                    .and_then(|h| h.to_str().ok())
                    .and_then(|h| Authority::try_from(h).ok())
                    .unwrap_or_else(|| endpoint.authority.clone());
                *req.uri_mut() = upstream_uri(req.uri(), authority);
                req.headers_mut().remove(header::HOST);
                *req.version_mut() = Version::HTTP_2;
                let sender = match tls {
                    // Boxed, as connecting is (see `send_http1`).
                    None => Box::pin(self.h2c_sender(&self.h2c, addr, addr, None)).await,
                    Some(c) => {
                        let key = TlsKey {
                            addr,
                            connector: c.clone(),
                        };
                        Box::pin(self.h2c_sender(&self.tls_h2, key, addr, Some(c))).await
                    }
                };
                let mut sender = match sender {
                    Ok(s) => s,
                    Err(error) => {
                        return Err(SendFailure {
                            error,
                            unsent: Some(Box::new(req)),
                        });
                    }
                };
                sender
                    .send_request(req)
                    .await
                    .map(|resp| resp.map(incoming))
                    .map_err(|e| ForwardError::Failed(addr, error_chain(&e)).into())
            }
        }
    }

    /// Sends an HTTP/1.1 request on a waiting pooled connection, else on
    /// a new one. A request without a body that meets a pooled connection
    /// closing before any answer (the backend let it go as idle) goes
    /// again on another; any other failure is not sent again.
    async fn send_http1(
        &self,
        key: ConnKey,
        req: Request<Body>,
        addr: SocketAddr,
        tls: Option<&Arc<BackendConnector>>,
    ) -> Result<Response<Body>, SendFailure> {
        let (mut parts, mut body) = req.into_parts();
        let resendable = hyper::body::Body::is_end_stream(&body);
        loop {
            let (conn, reused) = match self.http1.take(&key) {
                Some(c) => (c, true),
                // Boxed: connecting (a TLS handshake included) is rare and
                // its future large; inline, every request's future would
                // carry (and move) its size.
                None => match Box::pin(self.connect_http1(addr, tls)).await {
                    Ok(c) => (c, false),
                    Err(error) => {
                        return Err(SendFailure {
                            error,
                            unsent: Some(Box::new(Request::from_parts(parts, body))),
                        });
                    }
                },
            };
            let home = PoolHome {
                pool: self.http1.clone(),
                key: key.clone(),
            };
            match h1::exchange(conn, &mut parts, &mut body, home).await {
                Ok(resp) => return Ok(resp),
                Err(h1::Failure::Closed(_)) if reused && resendable => {}
                Err(e) => return Err(ForwardError::Failed(addr, e.to_string()).into()),
            }
        }
    }

    /// Opens an HTTP/1.1 connection to `addr`, over TLS when `tls` is
    /// given.
    async fn connect_http1(
        &self,
        addr: SocketAddr,
        tls: Option<&Arc<BackendConnector>>,
    ) -> Result<Conn, ForwardError> {
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ForwardError::Unreachable(addr, "connect timed out".into()))?
            .map_err(|e| ForwardError::Unreachable(addr, e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let io = match tls {
            Some(c) => h1::Stream::Tls(Box::new(self.tls_handshake(c, stream, addr).await?)),
            None => h1::Stream::Tcp(stream),
        };
        Ok(Conn::new(io))
    }

    /// The TLS client handshake on a new backend connection, within the
    /// connect timeout; a certificate that does not verify fails it.
    async fn tls_handshake(
        &self,
        connector: &BackendConnector,
        stream: TcpStream,
        addr: SocketAddr,
    ) -> Result<tokio_rustls::client::TlsStream<TcpStream>, ForwardError> {
        tokio::time::timeout(self.connect_timeout, connector.connect(stream))
            .await
            .map_err(|_| ForwardError::Unreachable(addr, "TLS handshake timed out".into()))?
            .map_err(|e| ForwardError::Unreachable(addr, format!("TLS handshake: {e}")))
    }
}

impl Forwarder {
    /// The HTTP/2 connection to an endpoint (one per key, multiplexed),
    /// opened on first use and replaced when it closes.
    async fn h2c_sender<K: std::hash::Hash + Eq + PoolKey>(
        &self,
        conns: &Mutex<HashMap<K, http2::SendRequest<Body>>>,
        key: K,
        addr: SocketAddr,
        tls: Option<&Arc<BackendConnector>>,
    ) -> Result<http2::SendRequest<Body>, ForwardError> {
        {
            // Held only to clone or remove an entry, never across an await.
            let mut conns = conns.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = conns.get(&key) {
                if !s.is_closed() {
                    return Ok(s.clone());
                }
                conns.remove(&key);
            }
        }
        let stream = tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ForwardError::Unreachable(addr, "connect timed out".into()))?
            .map_err(|e| ForwardError::Unreachable(addr, e.to_string()))?;
        let _ = stream.set_nodelay(true);
        let mut sender = match tls {
            None => h2_over(stream, addr).await?,
            Some(c) => h2_over(self.tls_handshake(c, stream, addr).await?, addr).await?,
        };
        sender
            .ready()
            .await
            .map_err(|e| ForwardError::Unreachable(addr, error_chain(&e)))?;
        let mut conns = conns.lock().unwrap_or_else(|e| e.into_inner());
        // A new connection is rare: forget the closed ones, and those of
        // TLS settings of a configuration no longer served (dropping the
        // sender closes the connection once its streams end).
        conns.retain(|k, s| !s.is_closed() && !k.retired());
        conns.insert(key, sender.clone());
        Ok(sender)
    }
}

/// The HTTP/2 client handshake over a connected stream; the connection's
/// I/O runs on a task of its own.
async fn h2_over<S>(stream: S, addr: SocketAddr) -> Result<http2::SendRequest<Body>, ForwardError>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
        .await
        .map_err(|e| ForwardError::Unreachable(addr, error_chain(&e)))?;
    tokio::spawn(conn);
    Ok(sender)
}

/// The origin form of a request target: its path and query.
fn origin_form(uri: &Uri) -> Uri {
    Uri::from(
        uri.path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    )
}

fn upstream_uri(uri: &Uri, authority: Authority) -> Uri {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority);
    parts.path_and_query = Some(
        uri.path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/")),
    );
    Uri::from_parts(parts).unwrap_or_else(|_| uri.clone())
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Who sent a request to the proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientInfo {
    /// The client's address.
    pub peer: SocketAddr,
    /// Whether it came over TLS.
    pub tls: bool,
    /// The client's IP as a header value, made once per connection for
    /// `X-Forwarded-For`.
    ip: HeaderValue,
    /// Whether the client is a trusted proxy whose `X-Forwarded-*` headers
    /// are kept.
    trusted: bool,
}

impl ClientInfo {
    /// A client at `peer`, over TLS or not, not trusted to set proxy
    /// headers.
    pub fn new(peer: SocketAddr, tls: bool) -> ClientInfo {
        let ip = HeaderValue::try_from(peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        ClientInfo {
            peer,
            tls,
            ip,
            trusted: false,
        }
    }

    /// Whether the client is a trusted proxy: its `X-Forwarded-For` is
    /// appended to, its `X-Forwarded-Proto`, `X-Forwarded-Host` and
    /// `Forwarded` are kept. Default is `false`: they are replaced by the
    /// gateway's own (`Forwarded` is removed).
    pub fn with_trusted(mut self, trusted: bool) -> ClientInfo {
        self.trusted = trusted;
        self
    }

    /// Whether the client is a trusted proxy.
    pub fn is_trusted(&self) -> bool {
        self.trusted
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1),
/// and `Upgrade`: a bit each, for [`remove_hop_by_hop`]'s one pass.
fn hop_by_hop_bit(name: &HeaderName) -> u8 {
    match name.as_str() {
        "connection" => 1,
        "keep-alive" => 1 << 1,
        "proxy-connection" => 1 << 2,
        "proxy-authenticate" => 1 << 3,
        "te" => 1 << 4,
        "trailer" => 1 << 5,
        "transfer-encoding" => 1 << 6,
        "upgrade" => 1 << 7,
        _ => 0,
    }
}

const TE_BIT: u8 = 1 << 4;
const UPGRADE_BIT: u8 = 1 << 7;

/// The hop-by-hop headers, in the order of their bits.
static HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

/// `keep-alive`, `close` and `upgrade` in a `Connection` header name
/// headers removed anyway, or none.
fn is_usual_connection_token(t: &str) -> bool {
    ["keep-alive", "close", "upgrade"]
        .iter()
        .any(|k| t.eq_ignore_ascii_case(k))
}

/// Whether headers ask for a WebSocket upgrade (`Upgrade: websocket`).
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// Removes hop-by-hop headers: the fixed list, `Upgrade` unless `keep_upgrade`,
/// and every header the `Connection` header names.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the names says which are present; most messages carry
    // none, or only `Connection: keep-alive`.
    let present = headers.keys().fold(0u8, |m, n| m | hop_by_hop_bit(n));
    if present == 0 {
        return;
    }
    // The usual tokens (`keep-alive`, `close`, `upgrade`) name headers
    // removed anyway, or none: only others are looked up.
    let unusual = |t: &&str| !t.is_empty() && !is_usual_connection_token(t);
    if present & 1 != 0
        && headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').map(str::trim).any(|t| unusual(&t)))
    {
        let named: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(unusual)
            .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
            .collect();
        for n in named {
            if !(keep_upgrade && n == header::UPGRADE) {
                headers.remove(n);
            }
        }
    }
    // `TE: trailers` is kept: it is the one TE value HTTP/2 allows, and gRPC
    // servers expect it (RFC 9113 §8.2.2).
    let te_trailers = present & TE_BIT != 0
        && headers
            .get(header::TE)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
    for (i, n) in HOP_BY_HOP.iter().enumerate() {
        let bit = 1u8 << i;
        if present & bit == 0 || (bit == UPGRADE_BIT && keep_upgrade) {
            continue;
        }
        headers.remove(n);
    }
    if te_trailers {
        headers.insert(header::TE, HeaderValue::from_static("trailers"));
    }
}

/// Turns a request received from a client into the one sent to a backend:
/// hop-by-hop headers removed (a WebSocket upgrade is kept), `Host` set from
/// the request's authority (HTTP/2 clients send none), and the standard
/// proxy headers `X-Forwarded-For`, `X-Forwarded-Proto`, `X-Forwarded-Host`
/// and `Via`.
///
/// Whom to believe: a client can write anything in `X-Forwarded-*`, and
/// backends behind a gateway commonly trust those headers for the client's
/// address, scheme and host. So from a client that is not a trusted proxy
/// ([`ClientInfo::with_trusted`]) they are replaced by the gateway's own
/// and `Forwarded` (RFC 7239, which the gateway does not write) is removed;
/// from a trusted proxy `X-Forwarded-For` is appended to and the others are
/// kept when present.
pub fn prepare_request(parts: &mut http::request::Parts, client: &ClientInfo) {
    // Room for the headers added below, so the map grows at most once.
    parts.headers.reserve(5);
    let upgrade = is_websocket_upgrade(&parts.headers);
    remove_hop_by_hop(&mut parts.headers, upgrade);
    if upgrade {
        parts
            .headers
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
    // The authority of the request target wins over a Host header, as the
    // routing table reads it: RFC 9112 §3.2.2 (absolute-form) and RFC 9113
    // §8.3.1 (`:authority`).
    let (host, from_header) = match parts
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        Some(a) => (Some(a), false),
        None => (parts.headers.get(header::HOST).cloned(), true),
    };
    let trusted = client.trusted;
    if !trusted {
        parts.headers.remove(header::FORWARDED);
    }
    if let Some(host) = &host {
        // A Host header that is the host already stays (the router
        // refused requests with more than one).
        if !from_header || parts.headers.get_all(header::HOST).iter().nth(1).is_some() {
            parts.headers.insert(header::HOST, host.clone());
        }
        if !(trusted && parts.headers.contains_key(&X_FORWARDED_HOST)) {
            parts.headers.insert(X_FORWARDED_HOST, host.clone());
        }
    } else if !trusted {
        parts.headers.remove(&X_FORWARDED_HOST);
    }
    let prev = if trusted {
        // Several fields are one list (RFC 9110 §5.3).
        let prev: Vec<&str> = parts
            .headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        (!prev.is_empty()).then(|| prev.join(", "))
    } else {
        None
    };
    let xff = match prev {
        Some(prev) => HeaderValue::try_from(format!(
            "{prev}, {}",
            client.ip.to_str().unwrap_or("unknown")
        ))
        .unwrap_or_else(|_| client.ip.clone()),
        None => client.ip.clone(),
    };
    parts.headers.insert(X_FORWARDED_FOR, xff);
    if !(trusted && parts.headers.contains_key(&X_FORWARDED_PROTO)) {
        parts.headers.insert(
            X_FORWARDED_PROTO,
            HeaderValue::from_static(if client.tls { "https" } else { "http" }),
        );
    }
    let via = match parts.version {
        Version::HTTP_10 => "1.0 gwcore",
        Version::HTTP_2 => "2 gwcore",
        _ => "1.1 gwcore",
    };
    parts
        .headers
        .append(header::VIA, HeaderValue::from_static(via));
}

/// Cleans a backend's response for the client: hop-by-hop headers removed,
/// except on `101 Switching Protocols`.
pub fn prepare_response<B>(resp: &mut Response<B>) {
    let switching = resp.status() == http::StatusCode::SWITCHING_PROTOCOLS;
    remove_hop_by_hop(resp.headers_mut(), switching);
    if switching {
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(req: Request<()>) -> http::request::Parts {
        req.into_parts().0
    }

    #[test]
    fn proxy_headers_are_added_and_hop_by_hop_removed() {
        let mut p = parts(
            Request::builder()
                .uri("/a?b=1")
                .header("host", "example.com")
                .header("connection", "keep-alive, x-private")
                .header("x-private", "secret")
                .header("keep-alive", "timeout=5")
                .header("te", "gzip")
                .header("x-forwarded-for", "10.1.1.1")
                .body(())
                .unwrap(),
        );
        let client = ClientInfo::new("192.0.2.7:5555".parse().unwrap(), false).with_trusted(true);
        prepare_request(&mut p, &client);
        let h = &p.headers;
        assert!(h.get("x-private").is_none(), "named by Connection");
        assert!(h.get("connection").is_none());
        assert!(h.get("keep-alive").is_none());
        assert!(
            h.get("te").is_none(),
            "TE other than trailers is hop-by-hop"
        );
        assert_eq!(h["x-forwarded-for"], "10.1.1.1, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "example.com");
        assert_eq!(h["via"], "1.1 gwcore");
        assert_eq!(h["host"], "example.com");
    }

    #[test]
    fn proxy_headers_of_an_untrusted_client_are_replaced_not_appended() {
        let spoofed = || {
            parts(
                Request::builder()
                    .uri("/a")
                    .header("host", "acme.example")
                    .header("x-forwarded-for", "10.0.0.1")
                    .header("x-forwarded-for", "10.0.0.2")
                    .header("x-forwarded-proto", "https")
                    .header("x-forwarded-host", "admin.acme.example")
                    .header("forwarded", "for=10.0.0.1;host=admin.acme.example")
                    .body(())
                    .unwrap(),
            )
        };
        let peer = "192.0.2.7:5555".parse().unwrap();
        let mut p = spoofed();
        prepare_request(&mut p, &ClientInfo::new(peer, false));
        let h = &p.headers;
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-for"], "192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "acme.example");
        assert!(h.get("forwarded").is_none());

        let mut p = spoofed();
        prepare_request(&mut p, &ClientInfo::new(peer, false).with_trusted(true));
        let h = &p.headers;
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 10.0.0.2, 192.0.2.7");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "admin.acme.example");
        assert_eq!(h["forwarded"], "for=10.0.0.1;host=admin.acme.example");
    }

    #[test]
    fn http2_authority_becomes_host_and_websocket_upgrade_is_kept() {
        let mut p = parts(
            Request::builder()
                .uri("https://example.com:8443/ws")
                .version(Version::HTTP_2)
                .header("upgrade", "websocket")
                .header("connection", "Upgrade")
                .header("te", "trailers")
                .body(())
                .unwrap(),
        );
        let client = ClientInfo::new("[::1]:1".parse().unwrap(), true);
        prepare_request(&mut p, &client);
        assert_eq!(p.headers["host"], "example.com:8443");
        assert_eq!(p.headers["upgrade"], "websocket");
        assert_eq!(p.headers["connection"], "upgrade");
        assert_eq!(p.headers["x-forwarded-proto"], "https");
        assert_eq!(p.headers["via"], "2 gwcore");
        assert_eq!(p.headers["te"], "trailers", "gRPC needs TE: trailers");
    }

    #[test]
    fn app_protocol_h2c_selects_http2() {
        assert_eq!(
            BackendProtocol::from_app_protocol(Some("kubernetes.io/h2c")),
            BackendProtocol::H2c
        );
        assert_eq!(
            BackendProtocol::from_app_protocol(Some("kubernetes.io/ws")),
            BackendProtocol::Http1
        );
        assert_eq!(
            BackendProtocol::from_app_protocol(None),
            BackendProtocol::Http1
        );
    }
}
