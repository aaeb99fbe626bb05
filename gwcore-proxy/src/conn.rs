//! Serving HTTP on one client connection: HTTP/1.x (keep-alive, upgrades)
//! on gwcore's own server (`crate::h1_server`), HTTP/2 on hyper's with its
//! settings from the [`Limits`]; the idle and header read timeouts,
//! draining, and each request answered
//! ([`Proxy::handle`]: [`crate::route`] decides, then the access log and
//! the metrics).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use http::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::sync::watch;

use crate::body::Body;
use crate::h2_flood::FloodGuard;
use crate::limits::Limits;
use crate::proxy::{ConnInfo, Proxy};
use crate::write_timeout::WriteTimeout;

impl Proxy {
    /// Answers one request received on a connection.
    pub async fn handle(
        self: &Arc<Self>,
        conn: &ConnInfo,
        mut req: Request<Body>,
    ) -> Response<Body> {
        let start = Instant::now();
        let cfg = self.config();
        // What the access log needs is kept only when it is written.
        let log = tracing::enabled!(target: "gwcore::access", tracing::Level::INFO);
        // With tracing on, the request's span, its context sent on to the
        // backend; off, the headers are left as they came.
        let span = self.tracer().map(|t| {
            let method = req.method().clone();
            (
                t.start(&method, req.headers_mut()),
                req.uri().path().to_owned(),
            )
        });
        let trace_id = match &span {
            Some((s, _)) => Some(s.trace_id()),
            None if log => crate::tracing_otel::incoming_trace_id(req.headers()),
            None => None,
        };
        let head = log.then(|| {
            let host = req
                .uri()
                .authority()
                .map(|a| a.to_string())
                .or_else(|| {
                    req.headers()
                        .get(http::header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            (req.method().clone(), req.uri().clone(), req.version(), host)
        });
        let is_head = req.method() == http::Method::HEAD;
        let answered = crate::route::answer(self, &cfg, conn, req, log).await;
        let status = answered.response.status().as_u16();
        let elapsed = start.elapsed();
        self.metrics().record(&answered.series, status, elapsed);
        if let Some((span, path)) = span {
            let ext = answered.response.extensions();
            span.end(crate::tracing_otel::SpanEnd {
                series: &answered.series,
                rule: ext.get::<crate::tracing_otel::RuleIndex>().map(|r| r.0),
                path: &path,
                status,
                retries: ext.get::<crate::tracing_otel::Retries>().map_or(0, |r| r.0),
            });
        }
        if let Some((method, uri, version, host)) = head {
            crate::access_log::log_http(&crate::access_log::HttpAccess {
                at: start + elapsed,
                client: conn.client.peer,
                port: conn.port,
                method: &method,
                host: &host,
                uri: &uri,
                version,
                status,
                micros: u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
                gateway: &answered.series.gateway,
                route: &answered.series.route,
                backend: &answered.series.backend,
                matched: &answered.provenance,
                ext_auth: answered
                    .response
                    .extensions()
                    .get::<crate::metrics::AuthDecision>()
                    .map_or("", |d| d.as_str()),
                generation: cfg.generation,
                trace_id: trace_id.as_ref().map_or("", |t| t.as_str()),
            });
        }
        // RFC 9110 §9.3.2: a response to HEAD has no content. The gateway's
        // own answers (404, 400, 421...) carry a body for GET; over HTTP/2
        // sending it after a HEAD is a protocol error, so it is dropped here
        // for every answer (a backend's HEAD answer has none anyway).
        if is_head {
            let (parts, _) = answered.response.into_parts();
            return Response::from_parts(parts, crate::body::empty());
        }
        answered.response
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

/// What an HTTP/2 connection starts with (RFC 9113 §3.4).
const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// hyper's HTTP/2 server with the settings of `limits`.
fn h2_builder(limits: &Limits) -> hyper::server::conn::http2::Builder<TokioExecutor> {
    let mut h2 = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
    h2.timer(hyper_util::rt::TokioTimer::new())
        .keep_alive_interval(limits.http2_keep_alive_interval.filter(|t| !t.is_zero()))
        .keep_alive_timeout(limits.http2_keep_alive_timeout)
        .max_concurrent_streams(limits.http2_max_concurrent_streams);
    if limits.max_header_bytes > 0 {
        h2.max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    }
    // Zero disables either limit: h2 takes `usize::MAX` for "none" of the
    // first, `None` for the second.
    let some = |n: usize| (n > 0).then_some(n);
    h2.max_pending_accept_reset_streams(
        some(limits.http2_max_pending_accept_reset_streams).unwrap_or(usize::MAX),
    )
    .max_local_error_reset_streams(some(limits.http2_max_local_error_reset_streams));
    h2
}

/// Reads the connection's first bytes into `buf`, until they are the
/// HTTP/2 preface or cannot be: whether they are.
async fn starts_with_preface<S: AsyncRead + Unpin>(
    io: &mut S,
    buf: &mut BytesMut,
) -> std::io::Result<bool> {
    loop {
        let n = buf.len().min(H2_PREFACE.len());
        if buf[..n] != H2_PREFACE[..n] {
            return Ok(false);
        }
        if n == H2_PREFACE.len() {
            return Ok(true);
        }
        if io.read_buf(buf).await? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
    }
}

/// A connection whose first bytes were read already: they are read again
/// first.
struct Rewind<S> {
    prefix: Bytes,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Rewind<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        out: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(out.remaining());
            out.put_slice(&self.prefix.split_to(n));
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, out)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Rewind<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Serves HTTP/1.x (keep-alive, upgrades; gwcore's own server,
/// `crate::h1_server`) or HTTP/2 (prior knowledge, or negotiated by ALPN
/// before this is called: either way the connection starts with the
/// preface; hyper's server) on one connection until it closes or the
/// server drains.
pub(crate) async fn serve_http<S>(
    io: TokioIo<S>,
    info: ConnInfo,
    proxy: Arc<Proxy>,
    mut drain: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = proxy.options().limits.clone();
    let mut io = WriteTimeout::new(io.into_inner(), limits.response_write_timeout);
    let activity = Arc::new(Activity::new());
    // The drain signal and the idle timer are watched on a task of their
    // own, which tells this one why to close: selected here, they would be
    // polled on every wake of the connection (several per request), and a
    // oneshot is cheaper to poll than both.
    let (mut close_tx, mut close_rx) = tokio::sync::oneshot::channel();
    // The server's shutdown waits until every receiver is dropped; the
    // watcher's goes as soon as it has seen the signal, so the connection
    // holds one of its own until its in-flight requests are answered.
    let _draining = drain.clone();
    let watched = activity.clone();
    let (header_timeout, idle_timeout) = (limits.header_read_timeout, limits.idle_timeout);
    let draining_now = *drain.borrow();
    tokio::spawn(async move {
        let why = if draining_now {
            Close::Drain
        } else {
            tokio::select! {
                // The connection ended.
                _ = close_tx.closed() => return,
                _ = drain.changed() => Close::Drain,
                _ = watched.idle(header_timeout, idle_timeout) => Close::Idle,
            }
        };
        let _ = close_tx.send(why);
    });
    let mut first = BytesMut::with_capacity(crate::h1_server::MIN_HEAD_BYTES);
    let h2 = tokio::select! {
        biased;
        // Nothing came before the connection was to close.
        _ = &mut close_rx => return,
        h2 = starts_with_preface(&mut io, &mut first) => match h2 {
            Ok(h2) => h2,
            Err(_) => return,
        },
    };
    if !h2 {
        let (proxy, info, activity) = (&proxy, &info, &activity);
        let handler = move |req: Request<Body>| {
            let in_flight = activity.begin(http::Version::HTTP_11);
            async move {
                proxy.handle(info, req).await.map(|inner| Tracked {
                    inner,
                    _in_flight: in_flight,
                })
            }
        };
        let limits = crate::h1_server::HeadLimits::of(&limits);
        crate::h1_server::serve(io, first, limits, handler, close_rx).await;
        return;
    }
    let io = TokioIo::new(FloodGuard::new(
        Rewind {
            prefix: first.freeze(),
            inner: io,
        },
        limits.http2_max_control_frames_per_second,
    ));
    let info = Arc::new(info);
    let act = activity.clone();
    let svc = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let proxy = proxy.clone();
        let info = info.clone();
        let in_flight = act.begin(req.version());
        let req = from_hyper(req);
        async move {
            let resp = proxy.handle(&info, req).await;
            Ok::<_, std::convert::Infallible>(resp.map(|inner| Tracked {
                inner,
                _in_flight: in_flight,
            }))
        }
    });
    let conn = h2_builder(&limits).serve_connection(io, svc);
    tokio::pin!(conn);
    let why = tokio::select! {
        _ = conn.as_mut() => return,
        why = close_rx => why,
    };
    if let Ok(Close::Idle) = why {
        // Nothing is in flight: say goodbye (GOAWAY, then a PING the peer
        // must answer), and drop the connection if the peer does not
        // finish that in time. A request that slipped in meanwhile is
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

/// A request hyper read, as the handler takes it: its body boxed, and a
/// WebSocket upgrade's claim on the connection as a
/// [`crate::upgrade::ClientUpgrade`].
fn from_hyper(req: Request<hyper::body::Incoming>) -> Request<Body> {
    let (mut parts, body) = req.into_parts();
    if crate::forward::is_websocket_upgrade(&parts.headers)
        && let Some(on) = parts.extensions.remove::<hyper::upgrade::OnUpgrade>()
    {
        parts
            .extensions
            .insert(crate::upgrade::ClientUpgrade::hyper(on));
    }
    Request::from_parts(parts, crate::body::incoming(body))
}

/// Why a connection is told to close.
enum Close {
    /// The server drains.
    Drain,
    /// No request for the idle limit.
    Idle,
}
