//! The one place where the table's decision becomes an HTTP exchange.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use gwcore::attachments::BackendTarget;
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use tokio::io::AsyncWriteExt;

use gwcore::model::ObjectKey;
use gwcore::table::{
    Action, BackendAction, Decision, Family, Filter, Forward, RedirectTo, RequestHead, Respond,
    RespondReason,
};

use crate::body::{Body, empty, full};
use crate::config::Config;
use crate::endpoints::Endpoint;
use crate::forward::{
    BackendProtocol, ForwardError, SendFailure, prepare_request, prepare_response,
};
use crate::limits::Limits;
use crate::metrics::{AuthDecision, SeriesKey};
use crate::plugin::{
    BoxFuture, EndpointPicker, EndpointSet, FilterRequest, FilterResponse, PickOutcome,
    PickRequest, PolicyPlugin, PolicyRequest, PolicyResponse, Verdict,
};
use crate::proxy::{ConnInfo, Proxy};
use gwcore::attachments::AppliedPolicy;

/// A request's answer, with what it is counted and logged under.
#[derive(Debug)]
pub struct Answered {
    /// The response.
    pub response: Response<Body>,
    /// The metrics series.
    pub series: SeriesKey,
    /// Which listener, route, rule and match decided (empty when none did,
    /// or when not asked for).
    pub provenance: String,
}

/// How to forward: the rule's timeouts and retry policy, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ForwardPolicy {
    /// `timeouts.request`: the whole exchange, retries included.
    pub request_timeout: Option<Duration>,
    /// `timeouts.backendRequest`: each attempt.
    pub backend_timeout: Option<Duration>,
    /// `retry`, when the rule has one.
    pub retry: Option<RetryPolicy>,
    /// Speak HTTP/2 to the backend whatever its `appProtocol`: gRPC needs
    /// it (GRPCRoute rules). Default is `false`.
    pub http2: bool,
}

/// HTTPRouteRetry, parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Statuses that are retried.
    pub codes: Vec<u16>,
    /// Retries after the first attempt.
    pub attempts: u32,
    /// Wait between attempts.
    pub backoff: Duration,
}

/// Bodies declared to be at most this size are kept so that a retry or a
/// mirror can send them again; a larger body, or one of unknown length, is
/// streamed once: its request is not retried and not mirrored.
const REPLAY_BODY_LIMIT: usize = 1 << 20;

/// Whether a body's declared length fits in the replay limit.
fn replayable<B: hyper::body::Body>(body: &B) -> bool {
    body.size_hint()
        .upper()
        .is_some_and(|n| n <= REPLAY_BODY_LIMIT as u64)
}

/// Reads a whole body of at most `limit` bytes; `None` when it is larger
/// or breaks.
async fn collect_limited<B>(mut body: B, limit: usize) -> Option<Bytes>
where
    B: hyper::body::Body<Data = Bytes> + Unpin,
{
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let Ok(frame) = frame else { return None };
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return None;
            }
            buf.extend_from_slice(&data);
        }
    }
    Some(buf.freeze())
}

/// The answer to a request whose body failed (`status` from
/// [`crate::client_body::status_of`]): 413, 408 or 400, and the connection
/// closed (HTTP/1.1), as where the next request would start is unknown.
fn body_failure(status: StatusCode) -> Response<Body> {
    let mut r = match status {
        StatusCode::PAYLOAD_TOO_LARGE => return crate::body_limit::too_large(),
        StatusCode::REQUEST_TIMEOUT => {
            status_response(status, "the request body came too slowly\n")
        }
        _ => status_response(StatusCode::BAD_REQUEST, "the request body is malformed\n"),
    };
    r.headers_mut().insert(
        http::header::CONNECTION,
        http::HeaderValue::from_static("close"),
    );
    r
}

/// A response with only a status and a short text body.
pub fn status_response(status: StatusCode, text: &'static str) -> Response<Body> {
    let mut r = Response::new(full(text));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn backend_protocol(target: &BackendTarget, http2: bool) -> BackendProtocol {
    if http2 {
        BackendProtocol::H2c
    } else {
        BackendProtocol::from_app_protocol(target.app_protocol.as_deref())
    }
}

/// The connector of a backend's TLS policy, ALPN `h2` when HTTP/2 is
/// spoken, with `gateway`'s client certificate for backends; the error
/// when the policy is invalid.
fn backend_tls(
    cfg: &Config,
    gateway: &ObjectKey,
    tls: &Arc<gwcore::attachments::BackendTls>,
    protocol: BackendProtocol,
) -> Result<Arc<crate::backend_tls::BackendConnector>, Arc<str>> {
    let alpn = match protocol {
        BackendProtocol::H2c => crate::backend_tls::Alpn::H2,
        BackendProtocol::Http1 => crate::backend_tls::Alpn::Http1,
    };
    let client_certificate = cfg
        .computed
        .routing
        .get(gateway)
        .and_then(|r| r.backend_client_certificate.as_ref());
    cfg.backend_tls
        .get(&cfg.snapshot, tls, Some(alpn), client_certificate)
}

/// Sends `req` to one of a Service port's `endpoints`, answering by
/// `deadline`.
///
/// An endpoint that takes no connection never saw the request: it goes to
/// another endpoint not tried yet (up to
/// [`crate::endpoints::ENDPOINTS_PER_ATTEMPT`]), so a
/// pod that is gone while its EndpointSlice still lists it costs the
/// client nothing but the refusal. Such an endpoint is also passed over by
/// later requests for a while ([`crate::endpoints::Refusing`]).
///
/// The endpoint is the registered [`EndpointPicker`]'s choice when there
/// is one (`pick`), else a random one.
async fn send_to_one(
    proxy: &Arc<Proxy>,
    endpoints: &[Endpoint],
    mut req: Request<Body>,
    protocol: BackendProtocol,
    deadline: Option<Instant>,
    tls: Option<&Arc<crate::backend_tls::BackendConnector>>,
    pick: Option<Pick<'_>>,
) -> Result<Response<Body>, ForwardError> {
    let forwarder = &proxy.forwarder;
    let refusing = forwarder.refusing();
    let mut tried = Vec::new();
    // A persistent session's endpoint, when it is still listed.
    let pin = req.extensions().get::<crate::session::Pin>().cloned();
    let pinned_at = pin
        .as_ref()
        .and_then(|p| p.sessions.index(endpoints, p.tag?));
    loop {
        let mut picked = Picked(None);
        let pinned = pinned_at.filter(|i| !tried.contains(i));
        let chosen = match &pick {
            Some(p) => {
                let request =
                    PickRequest::new(p.set, &tried, p.client, req.headers(), pinned, refusing);
                match p.picker.pick(&request) {
                    Some(i) if i < endpoints.len() && !tried.contains(&i) => {
                        picked = Picked(Some((p.picker, p.set, i)));
                        Some(i)
                    }
                    Some(i) => {
                        // Not a choice it may make: taken back.
                        p.picker.done(&p.set, i, PickOutcome::Cancelled);
                        refusing.choose(endpoints, &tried, fastrand::usize(..))
                    }
                    None => refusing.choose(endpoints, &tried, fastrand::usize(..)),
                }
            }
            None => pinned
                .filter(|&i| !refusing.is_refusing_now(endpoints[i].addr))
                .or_else(|| refusing.choose(endpoints, &tried, fastrand::usize(..))),
        };
        // The loop ends before every endpoint is tried, so there is none to
        // choose only when there are no endpoints (`forward` answers 503
        // before asking).
        let Some(i) = chosen else {
            return Err(ForwardError::Unreachable(
                ([0, 0, 0, 0], 0).into(),
                "no endpoints".into(),
            ));
        };
        let endpoint = &endpoints[i];
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        match forwarder
            .try_send_over(req, endpoint, protocol, timeout, tls)
            .await
        {
            Ok(mut resp) => {
                picked.done(PickOutcome::Answered(resp.status()));
                refusing.answered(endpoint.addr);
                if pin.is_some() {
                    resp.extensions_mut()
                        .insert(crate::session::Chosen(endpoint.addr));
                }
                return Ok(resp);
            }
            Err(SendFailure {
                error: error @ ForwardError::Unreachable(..),
                unsent: Some(unsent),
            }) => {
                tracing::debug!(%error, "endpoint took no connection");
                picked.done(PickOutcome::Unreachable);
                if !refusing.refused_try(endpoints, i, &mut tried) {
                    return Err(error);
                }
                req = *unsent;
            }
            Err(failure) => {
                picked.done(match failure.error {
                    ForwardError::Timeout(..) => PickOutcome::TimedOut,
                    _ => PickOutcome::Failed,
                });
                return Err(failure.error);
            }
        }
    }
}

/// The endpoint picker of a request's backend: where it picks, for whom.
#[derive(Clone, Copy)]
struct Pick<'a> {
    picker: &'a dyn EndpointPicker,
    set: EndpointSet<'a>,
    client: std::net::SocketAddr,
}

impl<'a> Pick<'a> {
    /// The registered picker's, for `target`'s `endpoints`, with `policy`
    /// (the most specific of the picker's kind).
    fn new(
        cfg: &'a Config,
        target: &'a BackendTarget,
        (endpoints, id): (&'a [Endpoint], u64),
        policy: Option<&'a AppliedPolicy>,
        client: std::net::SocketAddr,
    ) -> Option<Pick<'a>> {
        let picker = cfg.plugins.endpoint_picker()?;
        let set = EndpointSet {
            policy,
            service: &target.service,
            port: target.port,
            endpoints,
            id,
        };
        Some(Pick {
            picker,
            set,
            client,
        })
    }
}

/// A picked endpoint whose picker has not heard how its attempt ended:
/// when dropped so (the request was given up), it hears
/// [`PickOutcome::Cancelled`].
struct Picked<'a>(Option<(&'a dyn EndpointPicker, EndpointSet<'a>, usize)>);

impl Picked<'_> {
    fn done(&mut self, outcome: PickOutcome) {
        if let Some((picker, set, i)) = self.0.take() {
            picker.done(&set, i, outcome);
        }
    }
}

impl Drop for Picked<'_> {
    fn drop(&mut self) {
        self.done(PickOutcome::Cancelled);
    }
}

/// Forwards a request to one Service port: picks a ready endpoint, applies
/// the policy's timeouts and retries, and tunnels protocol upgrades.
///
/// Spec (HTTPBackendRef): "When a HTTPBackendRef refers to a Service that
/// has no ready endpoints, implementations SHOULD return a 503 for requests
/// to that backend instead [of 500]." A connection refused by every attempt
/// is answered the same way.
///
/// A retried request's response carries the number of retries
/// ([`crate::tracing_otel::Retries`], for its span).
pub async fn forward(
    proxy: &Arc<Proxy>,
    cfg: &Config,
    conn: &ConnInfo,
    req: Request<Body>,
    target: &BackendTarget,
    policy: &ForwardPolicy,
    balance: Option<&AppliedPolicy>,
) -> Response<Body> {
    let mut retries = 0;
    let mut resp =
        forward_counting(proxy, cfg, conn, req, target, policy, balance, &mut retries).await;
    if retries > 0 {
        resp.extensions_mut()
            .insert(crate::tracing_otel::Retries(retries));
    }
    resp
}

/// [`forward`], counting the attempts after the first in `retries`.
#[allow(clippy::too_many_arguments)]
async fn forward_counting(
    proxy: &Arc<Proxy>,
    cfg: &Config,
    conn: &ConnInfo,
    req: Request<Body>,
    target: &BackendTarget,
    policy: &ForwardPolicy,
    balance: Option<&AppliedPolicy>,
    retries: &mut u32,
) -> Response<Body> {
    let listed = cfg.endpoints.get_with_id(&target.service, target.port);
    let addrs = listed.0;
    if addrs.is_empty() {
        return status_response(StatusCode::SERVICE_UNAVAILABLE, "no ready endpoints\n");
    }
    let protocol = backend_protocol(target, policy.http2);
    let tls = match &target.tls {
        None => None,
        Some(t) => match backend_tls(cfg, &conn.gateway, t, protocol) {
            Ok(c) => Some(c),
            // A policy whose CA references do not resolve (the engine
            // marks it invalid) leaves no way to verify the backend: it
            // is not contacted, plain text would bypass the policy.
            Err(_) => {
                return status_response(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "backend TLS policy cannot be used\n",
                );
            }
        },
    };
    let (mut parts, body) = req.into_parts();
    // A client body that breaks while it streams (a malformed chunk, a
    // limit passed, too slow) fails the backend exchange too; remember
    // whose fault it was and why, so the client gets 400 (RFC 9112 §7.1),
    // 413 or 408 rather than 502.
    // A request without a body (most of them) has none to break.
    let client_body_failed = (!hyper::body::Body::is_end_stream(&body))
        .then(|| Arc::new(std::sync::atomic::AtomicU16::new(0)));
    let body: Body = match &client_body_failed {
        None => body,
        Some(flag) => {
            let flag = flag.clone();
            body.map_err(move |e| {
                let status = crate::client_body::status_of(&*e).as_u16();
                flag.store(status, std::sync::atomic::Ordering::Relaxed);
                e
            })
            .boxed()
        }
    };
    let client_upgrade = if crate::forward::is_websocket_upgrade(&parts.headers) {
        parts.extensions.remove::<crate::upgrade::ClientUpgrade>()
    } else {
        None
    };
    prepare_request(&mut parts, &conn.client);
    // An XBackendTrafficPolicy's retry budget for the Service
    // (`crate::retry_budget`): this request counts in it.
    let budget = parts
        .extensions
        .remove::<crate::retry_budget::RetryBudget>();
    if let Some(b) = &budget {
        b.0.request();
    }
    let mut parts = Some(parts);

    let deadline = policy.request_timeout.map(|t| Instant::now() + t);
    let retry = policy
        .retry
        .as_ref()
        .filter(|r| r.attempts > 0 && replayable(&body));
    // Retries need the body again.
    let (replay, mut body) = match retry {
        Some(_) => match collect_limited(body, REPLAY_BODY_LIMIT).await {
            Some(b) => (Some(b.clone()), Some(full(b))),
            None => {
                return status_response(
                    StatusCode::BAD_REQUEST,
                    "the request body could not be read\n",
                );
            }
        },
        None => (None, Some(body)),
    };
    let attempts = 1 + retry.map_or(0, |r| r.attempts);
    let mut last: Option<Result<Response<Body>, ForwardError>> = None;
    // When the attempt that answered must have its whole response.
    let mut attempt_deadline = None;
    for attempt in 0..attempts {
        if attempt > 0
            && let Some(r) = retry
        {
            tokio::time::sleep(r.backoff).await;
        }
        let remaining = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        if remaining == Some(Duration::ZERO) {
            break;
        }
        let timeout = match (remaining, policy.backend_timeout) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let this_body = match (&replay, body.take()) {
            (Some(b), _) => full(b.clone()),
            (None, Some(b)) => b,
            (None, None) => break,
        };
        // The last attempt takes the head; earlier ones send a copy.
        let attempt_parts = if attempt + 1 == attempts {
            parts.take()
        } else {
            parts.clone()
        };
        let Some(attempt_parts) = attempt_parts else {
            break;
        };
        let req = Request::from_parts(attempt_parts, this_body);
        *retries = attempt;
        attempt_deadline = timeout.map(|t| Instant::now() + t);
        let pick = Pick::new(cfg, target, listed, balance, conn.client.peer);
        let result = send_to_one(
            proxy,
            addrs,
            req,
            protocol,
            attempt_deadline,
            tls.as_ref(),
            pick,
        )
        .await;
        let retryable = match (&result, retry) {
            (Ok(resp), Some(r)) => r.codes.contains(&resp.status().as_u16()),
            (Err(ForwardError::Unreachable(..)), Some(_)) => true,
            (Err(ForwardError::Failed(..)), Some(_)) => true,
            // GEP-1731: a retry stanza retries on timeouts too. The
            // `backendRequest` timeout bounds each attempt; when the
            // `request` timeout is what fired, the loop ends below (no
            // time remains), so no attempt outlives it.
            (Err(ForwardError::Timeout(..)), Some(_)) => true,
            _ => false,
        };
        last = Some(result);
        // GEP-3388: past the Service's retry budget, the failed attempt
        // is the answer.
        if !retryable
            || (attempt + 1 < attempts && budget.as_ref().is_some_and(|b| !b.0.try_retry()))
        {
            break;
        }
    }
    let resp = match last {
        Some(Ok(r)) => r,
        Some(Err(e)) => {
            tracing::debug!(error = %e, "forward failed");
            if let Some(status) = client_body_failed
                .as_ref()
                .map(|f| f.load(std::sync::atomic::Ordering::Relaxed))
                .and_then(|s| StatusCode::from_u16(s).ok())
            {
                return body_failure(status);
            }
            // Spec (HTTPRouteRetry): "Implementations SHOULD retry on
            // connection errors (disconnect, reset, timeout, TCP failure)
            // if a retry stanza is configured", and "If the maximum number
            // of retries has been attempted without a successful response
            // from the backend, the Gateway MUST return an error." A
            // connection that broke on every attempt of a retried request
            // means the backend is not serving: 503, as for one refusing
            // connections (upstream's HTTPRouteRetryConnectionError
            // accepts 500 or 503). Without a retry policy a broken
            // connection stays a 502.
            let status = match &e {
                ForwardError::Failed(..) if retry.is_some() => StatusCode::SERVICE_UNAVAILABLE,
                _ => e.status(),
            };
            let text = match status {
                StatusCode::GATEWAY_TIMEOUT => "backend timed out\n",
                StatusCode::SERVICE_UNAVAILABLE => "backend unreachable\n",
                _ => "bad gateway\n",
            };
            return status_response(status, text);
        }
        None => return status_response(StatusCode::GATEWAY_TIMEOUT, "request timed out\n"),
    };
    let mut resp = resp;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        match (
            client_upgrade,
            resp.extensions_mut()
                .remove::<crate::h1::Upgraded>()
                .and_then(|u| u.take()),
        ) {
            (Some(client), Some(backend)) => {
                tokio::spawn(tunnel(client, backend));
            }
            _ => {
                return status_response(
                    StatusCode::BAD_GATEWAY,
                    "backend switched protocols unasked\n",
                );
            }
        }
    }
    prepare_response(&mut resp);
    // Spec (HTTPRouteTimeouts): BackendRequest "covers the time from when
    // the request first starts being sent from the gateway to when the full
    // response has been received from the backend", and Request encompasses
    // it. The head came in time; a body still streaming at the deadline is
    // cut, and the client sees an incomplete response (HTTP/1.1: the
    // connection closes before the body's end; HTTP/2: RST_STREAM), never a
    // complete-looking truncated one. A protocol switch has no deadline.
    match attempt_deadline {
        Some(deadline) if resp.status() != StatusCode::SWITCHING_PROTOCOLS => {
            resp.map(|b| DeadlineBody::new(b, deadline).boxed())
        }
        _ => resp,
    }
}

/// A response body that fails when it is not complete by a deadline.
struct DeadlineBody {
    inner: Body,
    sleep: std::pin::Pin<Box<tokio::time::Sleep>>,
}

impl DeadlineBody {
    fn new(inner: Body, deadline: Instant) -> DeadlineBody {
        DeadlineBody {
            inner,
            sleep: Box::pin(tokio::time::sleep_until(deadline.into())),
        }
    }
}

impl hyper::body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = crate::body::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        // The deadline first: a backend that streams without pause must
        // not outlast it either.
        if self.sleep.as_mut().poll(cx).is_ready() {
            return std::task::Poll::Ready(Some(Err(
                "the backend's response did not complete within the route's timeout".into(),
            )));
        }
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// Copies bytes both ways between an upgraded client and backend until
/// either side closes. The tunnel owns both ends; a reload does not touch it.
/// What the backend sent past its `101` answer reaches the client first.
async fn tunnel(client: crate::upgrade::ClientUpgrade, backend: crate::h1::Conn) {
    let Some(mut client) = client.connection().await else {
        return;
    };
    let (mut backend, early) = backend.into_parts();
    if !early.is_empty() && client.write_all(&early).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
}

/// Where a decision came from, for the access log:
/// `listener=ns/gw/http route=HTTPRoute ns/name rule=0(name) match=1`.
fn provenance(d: &Decision<'_>) -> String {
    // Pieces pushed one by one: a `format!` each cost the access log
    // ~3 700 instructions per request.
    let mut s = String::with_capacity(128);
    if let Some(l) = d.listener {
        for piece in [
            "listener=",
            &l.source.namespace,
            "/",
            &l.source.name,
            "/",
            &l.name,
        ] {
            s.push_str(piece);
        }
    }
    if let Some(m) = &d.matched {
        let route = m.route();
        for piece in [
            " route=",
            route.kind.as_str(),
            " ",
            &route.namespace,
            "/",
            &route.name,
        ] {
            s.push_str(piece);
        }
        s.push_str(" rule=");
        push_index(&mut s, m.rule_index());
        if let Some(n) = m.rule_name() {
            for piece in ["(", n, ")"] {
                s.push_str(piece);
            }
        }
        s.push_str(" match=");
        push_index(&mut s, m.match_index());
    }
    s
}

/// `n` in decimal; one digit (most rule and match indexes) without
/// `core::fmt`.
fn push_index(s: &mut String, n: usize) {
    match u8::try_from(n) {
        Ok(d @ 0..=9) => s.push(char::from(b'0' + d)),
        _ => {
            use std::fmt::Write;
            // Writing into a String cannot fail.
            let _ = write!(s, "{n}");
        }
    }
}

/// The answer the gateway makes itself for a [`Respond`].
fn respond(r: &Respond) -> Response<Body> {
    let status = r.status();
    let text = match r.reason {
        RespondReason::NoListener => "no listener accepts this host\n",
        RespondReason::Misdirected => {
            "this host is served by another listener; use a connection with its SNI\n"
        }
        RespondReason::BadPath(_) => "the request path cannot be normalized\n",
        RespondReason::NoRoute => "no route matches\n",
        RespondReason::NoBackends | RespondReason::InvalidBackends => {
            "no valid backend for this route\n"
        }
        RespondReason::UnsupportedFilter => "the route has a filter that cannot be applied\n",
        _ => "",
    };
    let mut resp = if text.is_empty() {
        Response::new(empty())
    } else {
        status_response(status, text)
    };
    *resp.status_mut() = status;
    for (k, v) in &r.headers {
        resp.headers_mut().append(k, v.clone());
    }
    resp
}

fn redirect(r: &RedirectTo) -> Response<Body> {
    let mut resp = Response::new(empty());
    *resp.status_mut() = r.status;
    if let Ok(v) = http::HeaderValue::from_str(&r.location) {
        resp.headers_mut().insert(http::header::LOCATION, v);
    }
    resp
}

/// A zero timeout disables it (spec: "Setting a timeout to the zero
/// duration (e.g. "0s") SHOULD disable the timeout completely").
fn enabled(t: Option<Duration>) -> Option<Duration> {
    t.filter(|d| !d.is_zero())
}

/// The rule's timeouts and retry policy as the forwarder uses them.
///
/// Retry (GEP-1731): `codes` are the statuses retried; a connection that
/// cannot be made or breaks is retried too. When `attempts` is not given,
/// we retry once; `backoff` defaults to none.
fn policy(f: &Forward<'_>) -> ForwardPolicy {
    let t = f.timeouts();
    ForwardPolicy {
        http2: f.matched().rule().family() == Family::Grpc,
        request_timeout: enabled(t.request),
        backend_timeout: enabled(t.backend_request),
        retry: f.retry().map(|r| RetryPolicy {
            codes: r.codes.clone(),
            attempts: r.attempts,
            backoff: r.backoff,
        }),
    }
}

/// Sends a copy of a request to a mirror target and drops the answer.
/// Spec (RequestMirror): "Responses from the mirrored backends are
/// ignored"; the copy is sent on its own task, so it never delays the
/// response.
fn mirror(
    proxy: &Arc<Proxy>,
    cfg: &Arc<Config>,
    conn: &ConnInfo,
    parts: &http::request::Parts,
    body: Bytes,
    target: &BackendTarget,
    http2: bool,
) {
    let addrs = cfg.endpoints.get(&target.service, target.port);
    if addrs.is_empty() {
        return;
    }
    let endpoint = addrs[fastrand::usize(..addrs.len())].clone();
    let mut p = parts.clone();
    p.extensions = http::Extensions::new();
    prepare_request(&mut p, &conn.client);
    let protocol = backend_protocol(target, http2);
    let tls = match &target.tls {
        None => None,
        Some(t) => match backend_tls(cfg, &conn.gateway, t, protocol) {
            Ok(c) => Some(c),
            Err(_) => return,
        },
    };
    let proxy = proxy.clone();
    tokio::spawn(async move {
        let req = Request::from_parts(p, full(body));
        match proxy
            .forwarder
            .send_over(
                req,
                &endpoint,
                protocol,
                Some(Duration::from_secs(30)),
                tls.as_ref(),
            )
            .await
        {
            Ok(resp) => {
                let _ = resp.into_body().collect().await;
            }
            Err(e) => tracing::debug!(error = %e, "mirror failed"),
        }
    });
}

/// The answer to a request over the [`Limits`] the HTTP layer does not
/// enforce itself: the request target's length (hyper's own limit is
/// 65 534 bytes) and, on HTTP/2, the number of header fields.
fn over_limits<B>(req: &Request<B>, limits: &Limits) -> Option<(StatusCode, &'static str)> {
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if limits.max_uri_bytes > 0 && target > limits.max_uri_bytes {
        return Some((StatusCode::URI_TOO_LONG, "the request target is too long\n"));
    }
    if limits.max_headers > 0 && req.headers().len() > limits.max_headers {
        return Some((
            StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            "too many header fields\n",
        ));
    }
    None
}

/// Why a request's host cannot be trusted for routing, if it cannot.
///
/// RFC 9112 §3.2: "A server MUST respond with a 400 (Bad Request) status
/// code to any HTTP/1.1 request message that lacks a Host header field and
/// to any that contains more than one Host header field line or a Host
/// header field with an invalid field value." RFC 9113 §8.3.1: a request
/// whose Host "identifies an entity that differs from the entity in the
/// :authority pseudo-header field" is malformed. Routing reads the
/// authority; the backend must never be told another host.
fn host_problem<B>(req: &Request<B>) -> Option<&'static str> {
    let mut hosts = req.headers().get_all(http::header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Some("more than one Host header\n");
    }
    if let Some(h) = host
        && !valid_host(h.as_bytes())
    {
        return Some("invalid Host header\n");
    }
    // RFC 9110 §4.2.4: a recipient "SHOULD parse for userinfo and treat its
    // presence as an error"; a backend splitting at `@` would read another
    // host.
    if let Some(a) = req.uri().authority()
        && a.as_str().contains('@')
    {
        return Some("userinfo in the request target\n");
    }
    match (req.uri().authority(), host) {
        // §3.2 holds for the absolute form too: an HTTP/1.1 request
        // without Host is refused whatever its target.
        (_, None) if req.version() == http::Version::HTTP_11 => Some("missing Host header\n"),
        (Some(a), Some(h))
            if req.version() == http::Version::HTTP_2
                && !h.as_bytes().eq_ignore_ascii_case(a.as_str().as_bytes()) =>
        {
            Some("Host differs from :authority\n")
        }
        _ => None,
    }
}

/// Whether a Host value is `uri-host [ ":" port ]` (RFC 9110 §7.2) as a
/// gateway routes by it: a DNS name or IPv4 address (letters, digits, `-`,
/// `.`, `_`), or an IPv6 literal in brackets, then an optional port of
/// digits. Userinfo, paths, spaces, lists and other reg-name characters
/// are refused: no listener hostname can match them, and a backend might
/// read them as another host.
fn valid_host(h: &[u8]) -> bool {
    let (name, port) = if let Some(rest) = h.strip_prefix(b"[") {
        let Some(end) = rest.iter().position(|&b| b == b']') else {
            return false;
        };
        let literal = &rest[..end];
        if literal.is_empty()
            || !literal
                .iter()
                .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        match &rest[end + 1..] {
            [] => (&b"x"[..], None),
            [b':', port @ ..] => (&b"x"[..], Some(port)),
            _ => return false,
        }
    } else {
        match h.iter().position(|&b| b == b':') {
            Some(i) => (&h[..i], Some(&h[i + 1..])),
            None => (h, None),
        }
    };
    let name_ok = !name.is_empty()
        && name
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'));
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.iter().all(u8::is_ascii_digit));
    name_ok && port_ok
}

/// Answers a request with the table's decision: the gateway's own answer
/// (404, 421, 500, redirect, CORS preflight), or the chosen backend's
/// response with the rule's filters applied. The provenance string is
/// built only when `provenance_wanted` (for the access log).
pub async fn answer(
    proxy: &Arc<Proxy>,
    cfg: &Arc<Config>,
    conn: &ConnInfo,
    req: Request<Body>,
    provenance_wanted: bool,
) -> Answered {
    let log = provenance_wanted;
    let mut series = SeriesKey {
        gateway: cfg.labels.gateway(&conn.gateway),
        ..SeriesKey::default()
    };
    // A connection accepted for a Gateway that a reload removed finds no
    // table: nothing routes there any more.
    let Some(table) = cfg.tables.get(&conn.gateway) else {
        return Answered {
            response: status_response(StatusCode::NOT_FOUND, "no route matches\n"),
            series,
            provenance: String::new(),
        };
    };
    if let Some((status, why)) = over_limits(&req, &proxy.options().limits) {
        return Answered {
            response: status_response(status, why),
            series,
            provenance: String::new(),
        };
    }
    if let Some(why) = host_problem(&req) {
        return Answered {
            response: status_response(StatusCode::BAD_REQUEST, why),
            series,
            provenance: String::new(),
        };
    }
    let (mut parts, body) = req.into_parts();
    let limits = &proxy.options().limits;
    let mut body = crate::client_body::paced(body, limits);
    // The head holds the header map while the table matches; a forwarded
    // request takes it back (below).
    let mut head = RequestHead::from_parts_taking_headers(conn.port, &mut parts);
    if let Some(sni) = &conn.sni {
        head = head.with_sni(sni);
    }
    // A path with `%2F` or `%5C` is read as its Gateway's PathPolicy says
    // (redirected, refused, or decoded on `head`) before it is matched.
    let escaped_slashes = proxy.options().escaped_slashes;
    let decision = match crate::path_policy::route(table, &mut head, escaped_slashes) {
        Ok(decision) => decision,
        Err(answer) => {
            return Answered {
                response: crate::path_policy::response(&answer),
                series,
                provenance: String::new(),
            };
        }
    };
    let provenance = if log {
        provenance(&decision)
    } else {
        String::new()
    };
    if let Some(m) = &decision.matched {
        series.route = cfg.labels.route(m.route());
    }
    let mut response = match &decision.action {
        Action::Respond(r) => respond(r),
        Action::Redirect(r) => redirect(r),
        Action::Forward(f) => {
            // A route rule's persistent session chooses the backend too
            // (GEP-1619: it "takes precedence over traffic split weights").
            let mut session = f.session_persistence().map(|sp| {
                crate::session::Session::begin(cfg.plugins.sessions(), sp, f, None, head.headers())
            });
            let from_session = session
                .as_ref()
                .and_then(|s| s.found)
                .and_then(|t| f.backends().get(usize::from(t.backend)));
            let backend = from_session.unwrap_or_else(|| f.pick(fastrand::u64(..)));
            match f.backend_action(&head, backend) {
                BackendAction::Respond(r) => respond(&r),
                BackendAction::Redirect(r) => redirect(&r),
                BackendAction::Forward(target) => {
                    series.backend = cfg.labels.backend(&target.service, target.port);
                    // The Service's XBackendTrafficPolicy, if any.
                    let traffic = f
                        .policy(gwcore::policies::backend_traffic::KIND, Some(backend))
                        .and_then(|p| {
                            p.value
                                .get::<gwcore::policies::backend_traffic::BackendTraffic>()
                        });
                    // Else the policy's session, on the Service's
                    // endpoints.
                    if session.is_none()
                        && let Some(sp) = traffic.and_then(|v| v.session_persistence.as_ref())
                    {
                        session = Some(crate::session::Session::begin(
                            cfg.plugins.sessions(),
                            sp,
                            f,
                            Some((&target.service, target.port)),
                            head.headers(),
                        ));
                    }
                    let backend_index =
                        if session.as_ref().is_some_and(|s| s.scope.service.is_none()) {
                            f.backends()
                                .iter()
                                .position(|b| std::ptr::eq(b, backend))
                                .and_then(|i| u8::try_from(i).ok())
                        } else {
                            Some(0)
                        };
                    parts.headers = if f.reads_request_headers(Some(backend)) {
                        head.headers().clone()
                    } else {
                        head.take_headers()
                    };
                    // Policy plug-ins first: they apply to the whole rule.
                    let applied = if cfg.plugins.policy_plugins().is_empty() {
                        Vec::new()
                    } else {
                        match run_request_policies(cfg, conn, f, backend, &mut parts, &mut body)
                            .await
                        {
                            Ok(applied) => applied,
                            Err(response) => {
                                return Answered {
                                    response,
                                    series,
                                    provenance,
                                };
                            }
                        }
                    };
                    // The Gateway-wide body limit, where no policy set one.
                    if crate::body_limit::limit_by_default(
                        &mut parts,
                        &mut body,
                        limits.max_request_body_bytes,
                    )
                    .is_err()
                    {
                        return Answered {
                            response: crate::body_limit::too_large(),
                            series,
                            provenance,
                        };
                    }
                    let extensions = f.has_extension_filters(Some(backend));
                    let filters_started = Instant::now();
                    let mut ran = FiltersRan::default();
                    if extensions {
                        // Boxed: the filters' future (an authorization
                        // call among them) is large, and every request's
                        // future would carry its size, moved by hyper
                        // whether or not a filter runs.
                        let filtering = Box::pin(run_request_filters(
                            proxy, cfg, conn, &series, f, backend, &head, &mut parts, &mut body,
                        ));
                        match filtering.await {
                            Ok(r) => ran = r,
                            Err(response) => {
                                return Answered {
                                    response,
                                    series,
                                    provenance,
                                };
                            }
                        }
                    } else {
                        f.apply_request(&head, Some(backend), &mut parts);
                    }
                    // A small HTTP/1.x body is read whole before the
                    // backend sees its request: malformed framing, a
                    // limit passed or a stall is answered here, and no
                    // backend has seen any of it.
                    if parts.version < http::Version::HTTP_2
                        && let Err(e) = crate::client_body::read_small(
                            &mut body,
                            limits.request_body_buffer_bytes,
                        )
                        .await
                    {
                        return Answered {
                            response: body_failure(crate::client_body::status_of(&*e)),
                            series,
                            provenance,
                        };
                    }
                    let mirrors: Vec<&BackendTarget> = f
                        .mirrors()
                        .iter()
                        .filter(|m| m.fraction >= 1.0 || fastrand::f64() < m.fraction)
                        .map(|m| &m.target)
                        .collect();
                    let body = if mirrors.is_empty() {
                        body
                    } else if !replayable(&body) {
                        tracing::debug!(
                            "request body too large or of unknown length; not mirrored"
                        );
                        body
                    } else {
                        // Mirrors need their own copy of the body.
                        match collect_limited(body, REPLAY_BODY_LIMIT).await {
                            Some(bytes) => {
                                let http2 = f.matched().rule().family() == Family::Grpc;
                                for m in mirrors {
                                    mirror(proxy, cfg, conn, &parts, bytes.clone(), m, http2);
                                }
                                full(bytes)
                            }
                            None => {
                                return Answered {
                                    response: status_response(
                                        StatusCode::BAD_REQUEST,
                                        "the request body could not be read\n",
                                    ),
                                    series,
                                    provenance,
                                };
                            }
                        }
                    };
                    let mut forward_policy = policy(f);
                    if ran.auth.is_some() {
                        // The request timeout covers the authorization
                        // call too.
                        forward_policy.request_timeout = forward_policy
                            .request_timeout
                            .map(|t| t.saturating_sub(filters_started.elapsed()));
                    }
                    // Every request to the Service counts in its retry
                    // budget, retried by its route or not.
                    if let Some(c) = traffic.and_then(|v| v.retry_constraint) {
                        parts.extensions.insert(crate::retry_budget::RetryBudget(
                            cfg.plugins.retry_budgets().of(&target.service, c),
                        ));
                    }
                    if let Some(s) = &session {
                        parts.extensions.insert(crate::session::Pin {
                            sessions: cfg.plugins.sessions().clone(),
                            tag: s
                                .found
                                .filter(|t| Some(t.backend) == backend_index)
                                .map(|t| t.tag),
                        });
                    }
                    let resp = forward(
                        proxy,
                        cfg,
                        conn,
                        Request::from_parts(parts, body),
                        target,
                        &forward_policy,
                        cfg.plugins
                            .endpoint_picker()
                            .and_then(|p| f.policy(p.kind(), Some(backend))),
                    )
                    .await;
                    let (mut rp, b) = resp.into_parts();
                    if let (Some(s), Some(i)) = (&session, backend_index) {
                        s.answer(cfg.plugins.sessions(), i, &mut rp, conn.client.tls);
                    }
                    for (plugin, p) in &applied {
                        plugin.on_response(PolicyResponse {
                            policy: p,
                            route: f.matched().route(),
                            head: &mut rp,
                        });
                    }
                    if extensions {
                        run_response_filters(cfg, f, backend, &head, &mut rp);
                    } else {
                        f.apply_response(&head, Some(backend), &mut rp);
                    }
                    for edits in &ran.auth_response_headers {
                        edits.apply(&mut rp.headers);
                    }
                    if let Some(decision) = ran.auth {
                        rp.extensions.insert(decision);
                    }
                    Response::from_parts(rp, b)
                }
            }
        }
    };
    // The rule, for the request's span.
    if proxy.tracer().is_some()
        && let Some(m) = &decision.matched
    {
        response
            .extensions_mut()
            .insert(crate::tracing_otel::RuleIndex(m.rule_index()));
    }
    Answered {
        response,
        series,
        provenance,
    }
}

/// What the filters run one by one left for the response: the headers
/// authorization services asked to put on it, and the last one's decision
/// (for the access log).
#[derive(Default)]
struct FiltersRan {
    auth_response_headers: Vec<crate::ext_auth::HeaderEdits>,
    auth: Option<AuthDecision>,
}

/// Reaches the authorization service of an `ExternalAuth` filter: one of
/// its Service port's endpoints, over the proxy's pools, with its
/// BackendTLSPolicy (a policy that cannot be used, or no endpoint, fails
/// the call: the filter fails closed).
struct AuthUpstream<'a> {
    proxy: &'a Arc<Proxy>,
    cfg: &'a Config,
    gateway: &'a ObjectKey,
    target: &'a BackendTarget,
    client: std::net::SocketAddr,
}

impl crate::ext_auth::Upstream for AuthUpstream<'_> {
    fn send(
        &self,
        req: Request<Body>,
        protocol: BackendProtocol,
        deadline: Instant,
    ) -> BoxFuture<'_, Result<Response<Body>, ForwardError>> {
        Box::pin(async move {
            let tls =
                match &self.target.tls {
                    None => None,
                    Some(t) => Some(backend_tls(self.cfg, self.gateway, t, protocol).map_err(
                        |e| ForwardError::Unreachable(([0, 0, 0, 0], 0).into(), e.to_string()),
                    )?),
                };
            let listed = self
                .cfg
                .endpoints
                .get_with_id(&self.target.service, self.target.port);
            // No route's policy reaches the authorization service's
            // endpoints: the picker's default.
            let pick = Pick::new(self.cfg, self.target, listed, None, self.client);
            send_to_one(
                self.proxy,
                listed.0,
                req,
                protocol,
                Some(deadline),
                tls.as_ref(),
                pick,
            )
            .await
        })
    }
}

/// Applies the filters of a rule and its backend to a request one by one,
/// in order, running each extension's plug-in in its place
/// ([`crate::plugin`]) and asking each `ExternalAuth` filter's service
/// ([`crate::ext_auth`]). `Err` is the answer to give instead of
/// forwarding: a plug-in's own, 500 for an extension filter without a
/// plug-in, or an authorization service's denial.
#[allow(clippy::too_many_arguments)]
async fn run_request_filters(
    proxy: &Arc<Proxy>,
    cfg: &Config,
    conn: &ConnInfo,
    series: &SeriesKey,
    f: &Forward<'_>,
    backend: &gwcore::table::Backend,
    head: &RequestHead,
    parts: &mut http::request::Parts,
    body: &mut Body,
) -> Result<FiltersRan, Response<Body>> {
    f.apply_path(head, parts);
    let matched = f.matched();
    let mut ran = FiltersRan::default();
    for filter in f.filters(Some(backend)) {
        let x = match filter {
            Filter::Extension(x) => x,
            Filter::ExternalAuth(a) => {
                let upstream = AuthUpstream {
                    proxy,
                    cfg,
                    gateway: &conn.gateway,
                    target: a.target(),
                    client: conn.client.peer,
                };
                // The rule's request timeout bounds the call too.
                let timeout = enabled(f.timeouts().request)
                    .map_or(crate::ext_auth::DEFAULT_TIMEOUT, |t| {
                        t.min(crate::ext_auth::DEFAULT_TIMEOUT)
                    });
                let request = crate::ext_auth::AuthRequest {
                    client: &conn.client,
                    head: parts,
                    body,
                    deadline: Instant::now() + timeout,
                };
                let checked = crate::ext_auth::check(a, &upstream, request).await;
                proxy.metrics().record_ext_auth(series, checked.decision);
                if let Verdict::Respond(mut r) = checked.verdict {
                    r.extensions_mut().insert(checked.decision);
                    return Err(r);
                }
                ran.auth = Some(checked.decision);
                if !checked.response_headers.is_empty() {
                    ran.auth_response_headers.push(checked.response_headers);
                }
                continue;
            }
            other => {
                f.apply_request_filter(other, parts);
                continue;
            }
        };
        let Some(plugin) = cfg.plugins.filter(x.kind()) else {
            tracing::warn!(kind = %x.kind(), "no plug-in runs this ExtensionRef filter");
            return Err(status_response(
                StatusCode::INTERNAL_SERVER_ERROR,
                "a filter of this route cannot be applied\n",
            ));
        };
        let request = FilterRequest {
            object: x.object(),
            gateway: &conn.gateway,
            route: matched.route(),
            rule: matched.rule().index(),
            client: conn.client.peer,
            head: parts,
            body,
        };
        if let Verdict::Respond(r) = plugin.on_request(request).await {
            return Err(r);
        }
    }
    Ok(ran)
}

/// Runs the policy plug-ins whose kind has a policy on the rule or
/// `backend` (the most specific), in kind order; the ones that ran, for the
/// response, or the answer one gave instead.
async fn run_request_policies<'c>(
    cfg: &'c Config,
    conn: &ConnInfo,
    f: &Forward<'c>,
    backend: &'c gwcore::table::Backend,
    parts: &mut http::request::Parts,
    body: &mut Body,
) -> Result<Vec<(&'c dyn PolicyPlugin, &'c AppliedPolicy)>, Response<Body>> {
    let mut applied = Vec::new();
    let matched = f.matched();
    for (kind, plugin) in cfg.plugins.policy_plugins() {
        let Some(policy) = f.policy(*kind, Some(backend)) else {
            continue;
        };
        let request = PolicyRequest {
            policy,
            gateway: &conn.gateway,
            route: matched.route(),
            rule: matched.rule().index(),
            client: conn.client.peer,
            head: parts,
            body,
        };
        if let Verdict::Respond(r) = plugin.on_request(request).await {
            return Err(r);
        }
        applied.push((&**plugin, policy));
    }
    Ok(applied)
}

/// The response half of [`run_request_filters`].
fn run_response_filters(
    cfg: &Config,
    f: &Forward<'_>,
    backend: &gwcore::table::Backend,
    head: &RequestHead,
    parts: &mut http::response::Parts,
) {
    for filter in f.filters(Some(backend)) {
        match filter {
            Filter::Extension(x) => {
                if let Some(plugin) = cfg.plugins.filter(x.kind()) {
                    plugin.on_response(FilterResponse {
                        object: x.object(),
                        route: f.matched().route(),
                        head: parts,
                    });
                }
            }
            other => f.apply_response_filter(other, head, parts),
        }
    }
}

#[cfg(test)]
mod host_tests {
    use super::valid_host;

    #[test]
    fn host_values_a_gateway_routes_by() {
        for ok in [
            "acme.example",
            "acme.example:8080",
            "127.0.0.1",
            "[::1]",
            "[::1]:80",
            "a_b.example",
            "localhost",
        ] {
            assert!(valid_host(ok.as_bytes()), "{ok}");
        }
        for bad in [
            "",
            "evil@acme.example",
            "a/b",
            "a b",
            "a.example, b.example",
            "a.example:abc",
            "a.example:",
            "[::1",
            "[zz]",
            "a.example:123456",
        ] {
            assert!(!valid_host(bad.as_bytes()), "{bad}");
        }
    }
}
