//! The `ExternalAuth` filter (GEP-1494) in the data plane: ask an
//! authorization service about each request, forward only what it allows.
//!
//! gwcore decides where the filter applies and resolves its service
//! ([`gwcore::table::Filter::ExternalAuth`]); [`crate::route`] runs it in
//! its place among the rule's filters with the same shape as an
//! embedder's [`crate::plugin::FilterPlugin`]: it sees the request head and
//! body as they will be sent on, may change them, and answers a
//! [`Verdict`]. It reaches the service through an `Upstream` it is handed
//! (the proxy's pools, endpoints and BackendTLSPolicy), so this module
//! knows nothing of the proxy's configuration.
//!
//! ```text
//!  request ──filters before──▶ check ──┬─ allowed: headers from the answer ──▶ filters after ──▶ backend
//!                                      ├─ denied: the service's answer ──────▶ client
//!                                      └─ no answer (down, timeout, garbage) ─▶ 403 (fail closed)
//! ```
//!
//! - `HTTP`: the request's method, its path after the filter's
//!   `http.path`, `Host`, `Authorization`, the `http.allowedHeaders` and
//!   the body (up to `forwardBody.maxSize`, `Content-Length` saying how
//!   much) go to the service. Its `200` allows the request, which goes on
//!   with the answer's headers that `http.allowedResponseHeaders` allows
//!   (all but `Host` and those about the answer's own body when the list
//!   is empty); any other answer goes to the client as the service gave
//!   it (status, headers, body).
//! - `GRPC`: Envoy's `envoy.service.auth.v3.Authorization/Check`, so the
//!   services written for Envoy's ext_authz filter work unchanged. An `OK`
//!   status allows the request, with `OkHttpResponse.headers` set (or
//!   appended, `append: true`) on it, its `headers_to_remove` removed and
//!   its `response_headers_to_add` put on the backend's answer; any other
//!   status denies it with `DeniedHttpResponse`'s status (403 when unset),
//!   headers and body.
//!
//! Failures: a service that cannot be reached, breaks, answers what is not
//! its protocol or does not answer within [`DEFAULT_TIMEOUT`] (or the
//! rule's `timeouts.request`, when shorter) denies the request with
//! [`FAILURE_STATUS`] (`403`, Envoy's `status_on_error` default). Spec:
//! "If there is any problem communicating with the external service, this
//! filter MUST fail closed."

use std::collections::HashMap;
use std::task::{Context, Poll};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::{
    Address, HeaderValueOption, SocketAddress, address, header_value_option::HeaderAppendAction,
    socket_address,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{
    HttpRequest, Peer, Request as AttributeRequest,
};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{AttributeContext, CheckRequest, CheckResponse};
use envoy_types::pb::google::protobuf::Timestamp;
use gwcore::table::{AuthProtocol, ExternalAuth, GrpcAuth, HttpAuth};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Version, header};
use http_body_util::BodyExt;

use crate::body::{Body, buffer_prefix, full};
use crate::forward::{BackendProtocol, ClientInfo, ForwardError, remove_hop_by_hop};
use crate::metrics::AuthDecision;
use crate::plugin::{BoxFuture, Verdict};

/// How long the service has to answer when the rule sets no shorter
/// `timeouts.request`: 10 seconds. An answer that does not come in time
/// denies the request ([`FAILURE_STATUS`]).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The answer to a request whose authorization could not be decided (the
/// service unreachable, broken, too slow): `403 Forbidden`, as Envoy's
/// ext_authz filter answers by default (`status_on_error`).
pub const FAILURE_STATUS: StatusCode = StatusCode::FORBIDDEN;

/// The most of an authorization answer's body read (a denial's body goes
/// to the client): 64 KiB. A longer one is a failure.
const ANSWER_BODY_LIMIT: usize = 64 * 1024;

/// Tells the service whether the body it got was cut at
/// `forwardBody.maxSize` (`true`) or is whole (`false`), as Envoy does.
const PARTIAL_BODY: HeaderName = HeaderName::from_static("x-envoy-auth-partial-body");

/// Reaches the authorization service of one filter: one of its Service
/// port's endpoints, over the proxy's pools (and its BackendTLSPolicy).
pub(crate) trait Upstream: Sync {
    /// Sends `req` (its target in origin form, `Host` set) speaking
    /// `protocol`, waiting for the response head until `deadline`.
    fn send(
        &self,
        req: Request<Body>,
        protocol: BackendProtocol,
        deadline: Instant,
    ) -> BoxFuture<'_, Result<Response<Body>, ForwardError>>;
}

/// One request as the filter sees it (compare
/// [`crate::plugin::FilterRequest`]).
pub(crate) struct AuthRequest<'a> {
    /// Who sent it.
    pub(crate) client: &'a ClientInfo,
    /// The head as it will be sent on; the allowed answer's headers go
    /// into it.
    pub(crate) head: &'a mut http::request::Parts,
    /// The body as it will be sent on; its start is read when the filter
    /// forwards the body, and sent on all the same.
    pub(crate) body: &'a mut Body,
    /// When the service must have answered.
    pub(crate) deadline: Instant,
}

/// What the filter decided for one request.
pub(crate) struct Checked {
    /// Go on, or answer the client with this.
    pub(crate) verdict: Verdict,
    /// For the metrics and the access log.
    pub(crate) decision: AuthDecision,
    /// Headers the service wants on the backend's answer (gRPC
    /// `response_headers_to_add`).
    pub(crate) response_headers: HeaderEdits,
}

/// Asks the filter's service about a request.
pub(crate) async fn check(
    filter: &ExternalAuth,
    upstream: &dyn Upstream,
    req: AuthRequest<'_>,
) -> Checked {
    let max = filter.forward_body();
    let size = hyper::body::Body::size_hint(&*req.body)
        .exact()
        .and_then(|n| i64::try_from(n).ok())
        .unwrap_or(-1);
    let body = if max == 0 {
        None
    } else {
        // Spec (forwardBody.maxSize): "If the body size is larger than
        // `maxSize`, then the body sent to the authorization server must
        // be truncated to `maxSize` bytes." The backend gets it whole.
        match buffer_prefix(req.body, max).await {
            Ok(read) => {
                let partial = !read.complete || read.bytes.len() > max;
                let n = read.bytes.len().min(max);
                Some(Sent {
                    bytes: read.bytes.slice(..n),
                    partial,
                })
            }
            Err(e) => {
                tracing::debug!(error = %e, "request body unreadable for external auth");
                return Checked::failed(StatusCode::BAD_REQUEST, "the request body is malformed\n");
            }
        }
    };
    let asked = async {
        match filter.protocol() {
            AuthProtocol::Http(h) => {
                let protocol =
                    BackendProtocol::from_app_protocol(filter.target().app_protocol.as_deref());
                ask_http(h, protocol, upstream, req.head, body, req.deadline).await
            }
            AuthProtocol::Grpc(g) => {
                let request = check_request(g, req.head, req.client, size, body);
                ask_grpc(upstream, request, req.deadline).await
            }
            _ => Err("this protocol is not supported".to_owned()),
        }
    };
    let answer = match tokio::time::timeout_at(req.deadline.into(), asked).await {
        Ok(Ok(a)) => a,
        Ok(Err(why)) => {
            tracing::debug!(service = %filter.target().service, %why, "external auth failed");
            return Checked::failed(FAILURE_STATUS, "");
        }
        Err(_) => {
            tracing::debug!(service = %filter.target().service, "external auth timed out");
            return Checked::failed(FAILURE_STATUS, "");
        }
    };
    match answer {
        Answer::Allow { request, response } => {
            request.apply(&mut req.head.headers);
            Checked {
                verdict: Verdict::Continue,
                decision: AuthDecision::Allowed,
                response_headers: response,
            }
        }
        Answer::Deny(r) => Checked {
            verdict: Verdict::Respond(r),
            decision: AuthDecision::Denied,
            response_headers: HeaderEdits::default(),
        },
        Answer::Error(r) => Checked {
            verdict: Verdict::Respond(r),
            decision: AuthDecision::Error,
            response_headers: HeaderEdits::default(),
        },
    }
}

impl Checked {
    /// A request that could not be decided: denied with `status`.
    fn failed(status: StatusCode, text: &'static str) -> Checked {
        let mut r = Response::new(full(text));
        *r.status_mut() = status;
        if !text.is_empty() {
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            );
        }
        Checked {
            verdict: Verdict::Respond(r),
            decision: AuthDecision::Error,
            response_headers: HeaderEdits::default(),
        }
    }
}

/// The start of the request body the service is sent.
struct Sent {
    bytes: Bytes,
    /// Whether the body is longer.
    partial: bool,
}

/// What the service said.
enum Answer {
    /// Allowed: edits of the request, and of the backend's answer.
    Allow {
        request: HeaderEdits,
        response: HeaderEdits,
    },
    /// Denied: the client's answer.
    Deny(Response<Body>),
    /// The service failed, and said how to answer (gRPC `error_response`).
    Error(Response<Body>),
}

/// The request's authority: the target's, else `Host`.
fn authority(head: &http::request::Parts) -> Option<HeaderValue> {
    head.uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        .or_else(|| head.headers.get(header::HOST).cloned())
}

// ------------------------------------------------------------------ HTTP

async fn ask_http(
    h: &HttpAuth,
    protocol: BackendProtocol,
    upstream: &dyn Upstream,
    head: &http::request::Parts,
    body: Option<Sent>,
    deadline: Instant,
) -> Result<Answer, String> {
    let path = h.path(head.uri.path_and_query().map_or("/", |p| p.as_str()));
    let mut req = Request::new(full(
        body.as_ref().map_or_else(Bytes::new, |b| b.bytes.clone()),
    ));
    *req.method_mut() = head.method.clone();
    *req.uri_mut() = path
        .parse()
        .map_err(|e| format!("auth request path {path:?}: {e}"))?;
    let headers = req.headers_mut();
    for (name, value) in &head.headers {
        if h.sends(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    if let Some(host) = authority(head) {
        headers.insert(header::HOST, host);
    }
    // Spec: "the `Content-Length` of the authorization request must be
    // set to the actual number of bytes forwarded" (0 without a body).
    let len = body.as_ref().map_or(0, |b| b.bytes.len());
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    if let Some(b) = &body {
        headers.insert(PARTIAL_BODY, HeaderValue::from_static(bool_text(b.partial)));
    }
    let resp = upstream
        .send(req, protocol, deadline)
        .await
        .map_err(|e| e.to_string())?;
    let (mut parts, body) = resp.into_parts();
    let bytes = read_limited(body, ANSWER_BODY_LIMIT).await?;
    // Spec (protocol): "When this is set to HTTP, each backend must
    // respond with a `200` status code in on a successful authorization.
    // Any other code is considered an authorization failure."
    if parts.status == StatusCode::OK {
        let mut request = HeaderEdits::default();
        for name in parts.headers.keys() {
            if !h.copies_back(name) {
                continue;
            }
            for (i, v) in parts.headers.get_all(name).iter().enumerate() {
                let edit = if i == 0 { Edit::Set } else { Edit::Append };
                request.0.push((name.clone(), Some(v.clone()), edit));
            }
        }
        return Ok(Answer::Allow {
            request,
            response: HeaderEdits::default(),
        });
    }
    remove_hop_by_hop(&mut parts.headers, false);
    // The body is whole: its length is counted anew.
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.version = Version::default();
    Ok(Answer::Deny(Response::from_parts(parts, full(bytes))))
}

fn bool_text(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}

/// Reads a whole answer body of at most `limit` bytes.
async fn read_limited(mut body: Body, limit: usize) -> Result<Bytes, String> {
    let mut buf = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| format!("answer body: {e}"))?;
        if let Ok(data) = frame.into_data() {
            if buf.len() + data.len() > limit {
                return Err(format!("answer body longer than {limit} bytes"));
            }
            buf.extend_from_slice(&data);
        }
    }
    Ok(buf.freeze())
}

// ------------------------------------------------------------------ gRPC

async fn ask_grpc(
    upstream: &dyn Upstream,
    check: CheckRequest,
    deadline: Instant,
) -> Result<Answer, String> {
    let mut request = tonic::Request::new(check);
    // The service learns how long it has (`grpc-timeout`).
    request.set_timeout(deadline.saturating_duration_since(Instant::now()));
    let mut client = AuthorizationClient::new(Channel { upstream, deadline });
    let resp = client
        .check(request)
        .await
        .map_err(|s| format!("gRPC status {:?}: {}", s.code(), s.message()))?;
    Ok(grpc_answer(resp.into_inner()))
}

/// The `CheckRequest` for a request, as Envoy's ext_authz filter fills it:
/// the client's address, the request's method, path (with the query),
/// host, scheme, protocol, size (`-1`: unknown) and headers (lower-case names, the values
/// of a repeated one joined with `,`; the pseudo-headers `:authority`,
/// `:method`, `:path` and `:scheme` too), and the body read.
fn check_request(
    g: &GrpcAuth,
    head: &http::request::Parts,
    client: &ClientInfo,
    size: i64,
    body: Option<Sent>,
) -> CheckRequest {
    let text = |v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    let host = authority(head).map(|h| text(&h)).unwrap_or_default();
    let path = head
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let scheme = if client.tls { "https" } else { "http" };
    let mut headers: HashMap<String, String> = HashMap::new();
    for (name, value) in [
        (":authority", host.clone()),
        (":method", head.method.as_str().to_owned()),
        (":path", path.clone()),
        (":scheme", scheme.to_owned()),
    ] {
        headers.insert(name.to_owned(), value);
    }
    for name in head.headers.keys() {
        if !g.sends(name) {
            continue;
        }
        let joined = head
            .headers
            .get_all(name)
            .iter()
            .map(text)
            .collect::<Vec<_>>()
            .join(",");
        headers.insert(name.as_str().to_owned(), joined);
    }
    if let Some(b) = &body {
        headers.insert(
            PARTIAL_BODY.as_str().to_owned(),
            bool_text(b.partial).into(),
        );
    }
    let protocol = match head.version {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        _ => "HTTP/1.1",
    };
    // The body as text when it is (Envoy's default), else as bytes
    // (`raw_body`, Envoy's `pack_as_bytes`).
    let (body_text, raw_body) = match body {
        None => (String::new(), Vec::new()),
        Some(b) => match String::from_utf8(b.bytes.to_vec()) {
            Ok(s) => (s, Vec::new()),
            Err(e) => (String::new(), e.into_bytes()),
        },
    };
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let peer = Peer {
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: client.peer.ip().to_string(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(
                    client.peer.port(),
                ))),
                ..Default::default()
            })),
        }),
        ..Default::default()
    };
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(peer),
            request: Some(AttributeRequest {
                time: Some(Timestamp {
                    seconds: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
                    nanos: i32::try_from(now.subsec_nanos()).unwrap_or(0),
                }),
                http: Some(HttpRequest {
                    id: head
                        .headers
                        .get("x-request-id")
                        .map(text)
                        .unwrap_or_default(),
                    method: head.method.as_str().to_owned(),
                    headers,
                    path,
                    host,
                    scheme: scheme.to_owned(),
                    size,
                    protocol: protocol.to_owned(),
                    body: body_text,
                    raw_body,
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
    }
}

/// What a `CheckResponse` says.
///
/// envoy.service.auth.v3: "Status `OK` allows the request. Any other status
/// indicates the request should be denied, and for HTTP filter, if not
/// overridden by denied HTTP response status Envoy sends `403 Forbidden`
/// HTTP status code by default."
fn grpc_answer(r: CheckResponse) -> Answer {
    let ok = r.status.as_ref().is_none_or(|s| s.code == 0);
    match (ok, r.http_response) {
        (true, response) => {
            let mut request = HeaderEdits::default();
            let mut answer = HeaderEdits::default();
            if let Some(HttpResponse::OkResponse(ok)) = response {
                for o in &ok.headers {
                    request.push_option(o);
                }
                // "Pseudo headers [...], as well as the header `Host`, may
                // not be removed".
                for name in &ok.headers_to_remove {
                    if let Ok(n) = HeaderName::from_bytes(name.as_bytes())
                        && n != header::HOST
                    {
                        request.0.push((n, None, Edit::Remove));
                    }
                }
                for o in &ok.response_headers_to_add {
                    answer.push_option(o);
                }
            }
            Answer::Allow {
                request,
                response: answer,
            }
        }
        (false, Some(HttpResponse::DeniedResponse(d))) => Answer::Deny(denied(d)),
        (false, Some(HttpResponse::ErrorResponse(d))) => Answer::Error(denied(d)),
        (false, _) => Answer::Deny(denied(Default::default())),
    }
}

/// The client's answer to a denial: its status (403 when unset), headers
/// and body.
fn denied(d: envoy_types::pb::envoy::service::auth::v3::DeniedHttpResponse) -> Response<Body> {
    let status = d
        .status
        .and_then(|s| u16::try_from(s.code).ok())
        .filter(|c| (200..=599).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
        .unwrap_or(StatusCode::FORBIDDEN);
    let mut edits = HeaderEdits::default();
    for o in &d.headers {
        edits.push_option(o);
    }
    let mut r = Response::new(full(d.body));
    *r.status_mut() = status;
    edits.apply(r.headers_mut());
    remove_hop_by_hop(r.headers_mut(), false);
    r.headers_mut().remove(header::CONTENT_LENGTH);
    r
}

/// tonic's requests, sent over the filter's [`Upstream`] (HTTP/2).
#[derive(Clone, Copy)]
struct Channel<'a> {
    upstream: &'a dyn Upstream,
    deadline: Instant,
}

impl<'a> tonic::codegen::Service<Request<tonic::body::Body>> for Channel<'a> {
    type Response = Response<Body>;
    type Error = ForwardError;
    type Future = BoxFuture<'a, Result<Response<Body>, ForwardError>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), ForwardError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<tonic::body::Body>) -> Self::Future {
        let Channel { upstream, deadline } = *self;
        Box::pin(async move {
            // One CheckRequest message: read it whole (tonic's body is not
            // `Sync`, as the proxy's bodies are).
            let (parts, body) = req.into_parts();
            let bytes = body
                .collect()
                .await
                .map_err(|s| ForwardError::Failed(([0, 0, 0, 0], 0).into(), s.to_string()))?
                .to_bytes();
            let req = Request::from_parts(parts, full(bytes));
            upstream.send(req, BackendProtocol::H2c, deadline).await
        })
    }
}

// --------------------------------------------------------------- headers

/// How one header edit applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Edit {
    /// Replace every value, or add.
    Set,
    /// Add a value.
    Append,
    /// Add only when absent.
    AddIfAbsent,
    /// Replace only when present.
    OverwriteIfExists,
    /// Remove.
    Remove,
}

/// Header edits an authorization answer asks for, in its order.
#[derive(Debug, Default)]
pub(crate) struct HeaderEdits(Vec<(HeaderName, Option<HeaderValue>, Edit)>);

impl HeaderEdits {
    /// Applies the edits to `headers`, in order.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        for (name, value, edit) in &self.0 {
            match (edit, value) {
                (Edit::Remove, _) => {
                    headers.remove(name);
                }
                (_, None) => {}
                (Edit::Set, Some(v)) => {
                    headers.insert(name.clone(), v.clone());
                }
                (Edit::Append, Some(v)) => {
                    headers.append(name.clone(), v.clone());
                }
                (Edit::AddIfAbsent, Some(v)) => {
                    if !headers.contains_key(name) {
                        headers.insert(name.clone(), v.clone());
                    }
                }
                (Edit::OverwriteIfExists, Some(v)) => {
                    if headers.contains_key(name) {
                        headers.insert(name.clone(), v.clone());
                    }
                }
            }
        }
    }

    /// Whether there are none.
    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Adds an Envoy `HeaderValueOption`. Pseudo-headers and `Host` are
    /// not the service's to change, and names or values that are not
    /// HTTP's are left out.
    ///
    /// envoy.service.auth.v3 (OkHttpResponse.headers): "Note that the
    /// append field in HeaderValueOption defaults to false when used in
    /// this message. By setting the `append` field to `true`, the filter
    /// will append the correspondent header value to the matched request
    /// header. By leaving `append` as false, the filter will either add a
    /// new header, or override an existing one if there is a match." An
    /// `append_action` other than its default is followed when `append` is
    /// not set.
    fn push_option(&mut self, o: &HeaderValueOption) {
        let Some(h) = &o.header else { return };
        let Ok(name) = HeaderName::from_bytes(h.key.as_bytes()) else {
            return;
        };
        if name == header::HOST {
            return;
        }
        let raw = if h.raw_value.is_empty() {
            h.value.as_bytes()
        } else {
            &h.raw_value
        };
        let Ok(value) = HeaderValue::from_bytes(raw) else {
            return;
        };
        // `append` is deprecated in favour of `append_action`, but it is
        // what ext_authz services set, and what the message documents.
        #[allow(deprecated)]
        let append = &o.append;
        let edit = match append {
            Some(a) if a.value => Edit::Append,
            Some(_) => Edit::Set,
            None => match HeaderAppendAction::try_from(o.append_action) {
                Ok(HeaderAppendAction::AddIfAbsent) => Edit::AddIfAbsent,
                Ok(HeaderAppendAction::OverwriteIfExists) => Edit::OverwriteIfExists,
                _ => Edit::Set,
            },
        };
        self.0.push((name, Some(value), edit));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::HeaderValue as PbHeader;
    use envoy_types::pb::google::protobuf::BoolValue;

    // `append` is deprecated in Envoy's API in favour of `append_action`,
    // but auth services still send it, and the filter honours it: the
    // test builds both.
    #[allow(deprecated)]
    fn option(key: &str, value: &str, append: Option<bool>, action: i32) -> HeaderValueOption {
        HeaderValueOption {
            header: Some(PbHeader {
                key: key.into(),
                value: value.into(),
                ..Default::default()
            }),
            append: append.map(|value| BoolValue { value }),
            append_action: action,
            ..Default::default()
        }
    }

    #[test]
    fn header_options_follow_envoys_append_rules() {
        let mut edits = HeaderEdits::default();
        for o in [
            option("x-set", "new", None, 0),
            option("X-Append", "b", Some(true), 0),
            option(
                "x-absent",
                "kept",
                None,
                HeaderAppendAction::AddIfAbsent as i32,
            ),
            option(
                "x-only",
                "no",
                None,
                HeaderAppendAction::OverwriteIfExists as i32,
            ),
            option("host", "evil.example", None, 0),
            option("bad name", "v", None, 0),
        ] {
            edits.push_option(&o);
        }
        let mut h = HeaderMap::new();
        h.insert("x-set", HeaderValue::from_static("old"));
        h.insert("x-append", HeaderValue::from_static("a"));
        h.insert("x-absent", HeaderValue::from_static("there"));
        h.insert("host", HeaderValue::from_static("a.example"));
        edits.apply(&mut h);
        assert_eq!(h["x-set"], "new", "append unset: overwrite");
        let appended: Vec<_> = h.get_all("x-append").iter().collect();
        assert_eq!(appended, ["a", "b"]);
        assert_eq!(h["x-absent"], "there");
        assert!(!h.contains_key("x-only"));
        assert_eq!(h["host"], "a.example", "Host is not the service's");
    }

    #[test]
    fn a_check_response_without_ok_denies_with_403_unless_it_says_otherwise() {
        let deny = CheckResponse {
            status: Some(envoy_types::pb::google::rpc::Status {
                code: 7,
                ..Default::default()
            }),
            ..Default::default()
        };
        let Answer::Deny(r) = grpc_answer(deny) else {
            panic!("denied")
        };
        assert_eq!(r.status(), StatusCode::FORBIDDEN);
    }
}
