//! Serving HTTP on one client connection: HTTP/1.1 (keep-alive, upgrades)
//! and HTTP/2 with hyper's settings from the [`Limits`], the idle and
//! header read timeouts, draining, and each request answered
//! ([`Proxy::handle`]: [`crate::route`] decides, then the access log and
//! the metrics).

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
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
        mut req: Request<Incoming>,
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
    // Zero disables either limit: h2 takes `usize::MAX` for "none" of the
    // first, `None` for the second.
    let some = |n: usize| (n > 0).then_some(n);
    h2.max_pending_accept_reset_streams(
        some(limits.http2_max_pending_accept_reset_streams).unwrap_or(usize::MAX),
    )
    .max_local_error_reset_streams(some(limits.http2_max_local_error_reset_streams));
    builder
}

/// Serves HTTP/1.1 (keep-alive, upgrades) and HTTP/2 (prior knowledge, or
/// negotiated by ALPN before this is called) on one connection until it
/// closes or the server drains.
pub(crate) async fn serve_http<S>(
    io: TokioIo<S>,
    info: ConnInfo,
    proxy: Arc<Proxy>,
    mut drain: watch::Receiver<bool>,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let limits = proxy.options().limits.clone();
    let io = TokioIo::new(FloodGuard::new(
        WriteTimeout::new(io.into_inner(), limits.response_write_timeout),
        limits.http2_max_control_frames_per_second,
    ));
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
    // The server's shutdown waits until every receiver is dropped; the
    // watcher's goes as soon as it has seen the signal, so the connection
    // holds one of its own until its in-flight requests are answered.
    let _draining = drain.clone();
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
