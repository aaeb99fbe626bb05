//! Echo backends: HTTP servers answering every request with a JSON
//! description of what arrived, for demos and the conformance runner.
//!
//! The answer has the shape of the upstream conformance suite's `echo-basic`
//! backend, so the same checks read it:
//!
//! ```json
//! {"path": "/careers?x=1", "host": "acme.example", "method": "GET",
//!  "proto": "HTTP/1.1", "headers": {"Accept": ["*/*"]},
//!  "namespace": "careers", "service": "careers", "pod": "careers-echo-0"}
//! ```
//!
//! Besides echoing it understands the upstream backend's test hooks:
//! `?delay=1s` waits before answering; `X-Echo-Set-Header: Name:value,...`
//! sets response headers; `/retry/...?uuid=U&succeedAfter=N[&responseCode=C]
//! [&delayRetry=D]` fails the first N requests carrying `U` (with status C, or
//! by closing the connection without an answer) and then echoes; `/ws` is a
//! WebSocket echo.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{HeaderName, HeaderValue, Request, Response, StatusCode, header};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use crate::body::{Body, empty, full};

/// Who an echo backend says it is.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct EchoIdentity {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub service: String,
    /// The pod name it reports: `<service>-echo-<n>`, so that dropping the
    /// last two `-` parts gives the Service name, as with Deployment pods.
    pub pod: String,
}

impl EchoIdentity {
    /// The identity of replica `n` of a Service.
    pub fn new(namespace: impl Into<String>, service: impl Into<String>, n: usize) -> Self {
        let service = service.into();
        EchoIdentity {
            namespace: namespace.into(),
            pod: format!("{service}-echo-{n}"),
            service,
        }
    }
}

/// A running echo server. Dropping it stops accepting connections.
#[derive(Debug)]
pub struct EchoServer {
    addr: SocketAddr,
    identity: EchoIdentity,
    task: JoinHandle<()>,
    state: Arc<EchoState>,
}

impl EchoServer {
    /// Binds `bind` (use port 0 for an ephemeral port) and serves.
    pub async fn start(identity: EchoIdentity, bind: SocketAddr) -> std::io::Result<EchoServer> {
        EchoServer::start_with(identity, bind, None).await
    }

    /// [`EchoServer::start`] over TLS with `tls` (ALPN `h2` and
    /// `http/1.1` are offered): the answers report the SNI and ALPN the
    /// server saw (`tls`), as upstream's `echo-basic` does with
    /// `TLS_SERVER_CERT`.
    pub async fn start_tls(
        identity: EchoIdentity,
        bind: SocketAddr,
        tls: &rustls::ServerConfig,
    ) -> std::io::Result<EchoServer> {
        let mut tls = tls.clone();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls));
        EchoServer::start_with(identity, bind, Some(acceptor)).await
    }

    async fn start_with(
        identity: EchoIdentity,
        bind: SocketAddr,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> std::io::Result<EchoServer> {
        let listener = TcpListener::bind(bind).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(EchoState {
            identity: identity.clone(),
            retries: Mutex::new(HashMap::new()),
            seen: Mutex::new(VecDeque::new()),
        });
        let seen_state = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let state = state.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let Some(acceptor) = tls else {
                        serve_echo(stream, state, None).await;
                        return;
                    };
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let conn = stream.get_ref().1;
                    let seen = EchoedTls {
                        server_name: conn.server_name().unwrap_or_default().to_owned(),
                        negotiated_protocol: conn
                            .alpn_protocol()
                            .map(|p| String::from_utf8_lossy(p).into_owned())
                            .unwrap_or_default(),
                        peer_certificates: conn
                            .peer_certificates()
                            .unwrap_or_default()
                            .iter()
                            .map(|c| pem_certificate(c))
                            .collect(),
                    };
                    serve_echo(stream, state, Some(seen)).await;
                });
            }
        });
        Ok(EchoServer {
            addr,
            identity,
            task,
            state: seen_state,
        })
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Who it says it is.
    pub fn identity(&self) -> &EchoIdentity {
        &self.identity
    }

    /// The path and query of the last requests it received (at most
    /// [`SEEN_LIMIT`]), oldest first: how a test tells that a mirror got its
    /// copy.
    pub fn seen(&self) -> Vec<String> {
        self.state
            .seen
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .cloned()
            .collect()
    }
}

/// A certificate as PEM.
fn pem_certificate(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(&String::from_utf8_lossy(line));
        pem.push('\n');
    }
    pem.push_str("-----END CERTIFICATE-----\n");
    pem
}

/// Serves one connection; `tls` is what its TLS handshake showed.
async fn serve_echo<S>(stream: S, state: Arc<EchoState>, tls: Option<EchoedTls>)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        let state = state.clone();
        if let Some(t) = &tls {
            req.extensions_mut().insert(t.clone());
        }
        async move { state.answer(req).await }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
        .await;
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// What the echo backend answers: the upstream `echo-basic` JSON.
#[derive(Debug, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct Echoed {
    /// Path and query, as received.
    pub path: String,
    /// The Host header (HTTP/1) or `:authority` (HTTP/2).
    pub host: String,
    /// The method.
    pub method: String,
    /// `HTTP/1.1`, `HTTP/2.0`...
    pub proto: String,
    /// Headers by canonical name (`X-Forwarded-For`), values in order.
    pub headers: BTreeMap<String, Vec<String>>,
    /// The Service's namespace.
    pub namespace: String,
    /// Always empty; kept for the upstream shape.
    pub ingress: String,
    /// The Service's name.
    pub service: String,
    /// The pod name.
    pub pod: String,
    /// What the TLS handshake showed, when the request came over TLS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<EchoedTls>,
}

/// The TLS of the connection a request came on (`echo-basic`'s `tls`).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct EchoedTls {
    /// The SNI the client sent (empty: none).
    pub server_name: String,
    /// The ALPN protocol agreed (empty: none).
    pub negotiated_protocol: String,
    /// The certificates the client presented, PEM, leaf first (a server
    /// started with a client verifier asks for them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peer_certificates: Vec<String>,
}

/// How many request paths an echo server remembers.
pub const SEEN_LIMIT: usize = 1024;

#[derive(Debug)]
struct EchoState {
    identity: EchoIdentity,
    /// Paths of the last requests.
    seen: Mutex<VecDeque<String>>,
    /// Requests seen per `/retry` uuid.
    retries: Mutex<HashMap<String, u32>>,
}

/// An error that makes hyper drop the connection without answering.
#[derive(Debug, thiserror::Error)]
#[error("echo backend resets the connection as asked by /retry")]
struct Reset;

impl EchoState {
    async fn answer(&self, req: Request<Incoming>) -> Result<Response<Body>, Reset> {
        let path = req
            .uri()
            .path_and_query()
            .map_or("/", |p| p.as_str())
            .to_owned();
        tracing::debug!(pod = %self.identity.pod, "Echoing back request made to {path} to client");
        {
            // Only touched here and in `seen`, never across an await.
            let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
            if seen.len() == SEEN_LIMIT {
                seen.pop_front();
            }
            seen.push_back(path);
        }
        let query = parse_query(req.uri().query().unwrap_or(""));
        if let Some(delay) = query
            .get("delay")
            .and_then(|d| gwcore::values::Duration::parse(d).value())
        {
            tokio::time::sleep(delay).await;
        }
        if req.uri().path().starts_with("/retry")
            && let Some(uuid) = query.get("uuid")
        {
            let seen = {
                // The map is only touched here, never across an await.
                let mut retries = self.retries.lock().unwrap_or_else(|e| e.into_inner());
                let n = retries.entry(uuid.clone()).or_insert(0);
                *n += 1;
                *n
            };
            let succeed_after: u32 = query
                .get("succeedAfter")
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            if seen <= succeed_after {
                if let Some(d) = query
                    .get("delayRetry")
                    .and_then(|d| gwcore::values::Duration::parse(d).value())
                {
                    tokio::time::sleep(d).await;
                }
                return match query
                    .get("responseCode")
                    .and_then(|c| c.parse::<u16>().ok())
                {
                    Some(code) => Ok(Response::builder()
                        .status(
                            StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                        )
                        .body(empty())
                        .unwrap_or_else(|_| Response::new(empty()))),
                    None => Err(Reset),
                };
            }
        }
        if req.uri().path() == "/ws" && is_websocket(&req) {
            return Ok(self.websocket(req));
        }
        // Read the body to its end, as servers do, so that a client still
        // sending it never sees the connection close under it.
        let (parts, mut body) = req.into_parts();
        while let Some(frame) = body.frame().await {
            if frame.is_err() {
                break;
            }
        }
        Ok(self.echo(&Request::from_parts(parts, ())))
    }

    fn echo(&self, req: &Request<()>) -> Response<Body> {
        let echoed = describe(req, &self.identity);
        let mut resp = Response::new(full(serde_json::to_vec(&echoed).unwrap_or_default()));
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        for value in req.headers().get_all("x-echo-set-header") {
            let Ok(value) = value.to_str() else { continue };
            for pair in value.split(',') {
                if let Some((name, value)) = pair.split_once(':')
                    && let (Ok(n), Ok(v)) = (
                        HeaderName::from_bytes(name.trim().as_bytes()),
                        HeaderValue::from_str(value.trim()),
                    )
                {
                    resp.headers_mut().append(n, v);
                }
            }
        }
        resp
    }

    fn websocket(&self, mut req: Request<Incoming>) -> Response<Body> {
        let Some(key) = req.headers().get(header::SEC_WEBSOCKET_KEY) else {
            return status(StatusCode::BAD_REQUEST);
        };
        let accept = derive_accept_key(key.as_bytes());
        let upgrade = hyper::upgrade::on(&mut req);
        tokio::spawn(async move {
            let Ok(upgraded) = upgrade.await else { return };
            let mut ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
                TokioIo::new(upgraded),
                Role::Server,
                None,
            )
            .await;
            while let Some(Ok(msg)) = ws.next().await {
                if (msg.is_text() || msg.is_binary()) && ws.send(msg).await.is_err() {
                    break;
                }
            }
        });
        Response::builder()
            .status(StatusCode::SWITCHING_PROTOCOLS)
            .header(header::CONNECTION, "upgrade")
            .header(header::UPGRADE, "websocket")
            .header(header::SEC_WEBSOCKET_ACCEPT, accept)
            .body(empty())
            .unwrap_or_else(|_| Response::new(empty()))
    }
}

fn status(code: StatusCode) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.status_mut() = code;
    r
}

/// Whether a request asks for a WebSocket upgrade.
pub fn is_websocket<B>(req: &Request<B>) -> bool {
    is_websocket_parts(req.headers())
}

/// Whether headers ask for a WebSocket upgrade
/// ([`crate::forward::is_websocket_upgrade`]).
pub fn is_websocket_parts(headers: &http::HeaderMap) -> bool {
    crate::forward::is_websocket_upgrade(headers)
}

/// Describes a request the way `echo-basic` does.
pub fn describe<B>(req: &Request<B>, identity: &EchoIdentity) -> Echoed {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in req.headers() {
        headers
            .entry(canonical_header_name(name.as_str()))
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    Echoed {
        path: req
            .uri()
            .path_and_query()
            .map(|p| p.as_str().to_owned())
            .unwrap_or_else(|| "/".into()),
        host,
        method: req.method().as_str().to_owned(),
        proto: proto(req.version()).to_owned(),
        headers,
        namespace: identity.namespace.clone(),
        ingress: String::new(),
        service: identity.service.clone(),
        pod: identity.pod.clone(),
        tls: req.extensions().get::<EchoedTls>().cloned(),
    }
}

/// The version as Go's `Request.Proto` spells it.
pub fn proto(v: http::Version) -> &'static str {
    match v {
        http::Version::HTTP_09 => "HTTP/0.9",
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    }
}

/// Go's canonical header spelling: upper case after the start and each `-`.
pub fn canonical_header_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut upper = true;
    for c in name.chars() {
        out.push(if upper {
            c.to_ascii_uppercase()
        } else {
            c.to_ascii_lowercase()
        });
        upper = c == '-';
    }
    out
}

fn parse_query(q: &str) -> HashMap<String, String> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_owned(), v.to_owned()),
            None => (p.to_owned(), String::new()),
        })
        .collect()
}

/// The body bytes of an echo answer, parsed.
pub fn parse_echoed(body: &Bytes) -> Option<Echoed> {
    serde_json::from_slice(body).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_spelled_like_go() {
        assert_eq!(canonical_header_name("x-forwarded-for"), "X-Forwarded-For");
        assert_eq!(canonical_header_name("host"), "Host");
        assert_eq!(canonical_header_name("x-b3-traceid"), "X-B3-Traceid");
    }

    #[test]
    fn pod_name_minus_two_parts_is_the_service() {
        let id = EchoIdentity::new("ns", "infra-backend-v1", 0);
        let parts: Vec<&str> = id.pod.split('-').collect();
        assert_eq!(parts[..parts.len() - 2].join("-"), "infra-backend-v1");
    }
}
