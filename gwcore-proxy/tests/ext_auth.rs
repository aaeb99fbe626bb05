//! The `ExternalAuth` filter over the wire, with real authorization
//! services started by the tests: an HTTP one (hyper) and a gRPC one
//! (tonic, Envoy's `envoy.service.auth.v3.Authorization`). Allowed
//! requests go on with the service's headers, denied ones get the
//! service's answer, and a service that is down or too slow denies
//! (fail closed); bodies are forwarded up to the cap; then the ACME
//! scenario of `examples/external-auth`.

mod common;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use envoy_types::pb::envoy::config::core::v3::{HeaderValue as PbHeader, HeaderValueOption};
use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use envoy_types::pb::envoy::service::auth::v3::check_response::HttpResponse;
use envoy_types::pb::envoy::service::auth::v3::{
    CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::google::protobuf::BoolValue;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use gwcore_proxy::echo::Echoed;
use gwcore_proxy::metrics::{AuthDecision, SeriesKey};
use gwcore_proxy::provider::Runtime;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

// ---------------------------------------------------------------- servers

/// What an authorization service was asked: method, path and query,
/// headers, body.
#[derive(Debug, Clone)]
struct Asked {
    method: String,
    path: String,
    headers: http::HeaderMap,
    body: Bytes,
}

type Log = Arc<Mutex<Vec<Asked>>>;

/// An HTTP/1.1 server on an ephemeral loopback port answering each
/// request (its body read whole) with `answer`.
async fn http_server<F, Fut>(answer: F) -> SocketAddr
where
    F: Fn(http::request::Parts, Bytes) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let answer = answer.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let answer = answer.clone();
                    async move {
                        let (parts, body) = req.into_parts();
                        let body = body.collect().await.map(|b| b.to_bytes());
                        Ok::<_, Infallible>(answer(parts, body.unwrap_or_default()).await)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// The HTTP authorization service: `Authorization: Bearer good` is
/// allowed (200, with `x-user`, `x-internal` and a body of its own),
/// `Bearer slow` answers after 5 s, anything else is refused with 401, a
/// challenge and a body.
async fn http_authz() -> (SocketAddr, Log) {
    let log: Log = Arc::default();
    let seen = log.clone();
    let addr = http_server(move |parts: http::request::Parts, body: Bytes| {
        let seen = seen.clone();
        async move {
            seen.lock().unwrap().push(Asked {
                method: parts.method.to_string(),
                path: parts.uri.to_string(),
                headers: parts.headers.clone(),
                body,
            });
            let token = parts
                .headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            match token {
                "Bearer good" => Response::builder()
                    .header("x-user", "alice")
                    .header("x-internal", "secret")
                    .header("content-type", "text/plain")
                    .body(Full::new(Bytes::from_static(b"ok")))
                    .unwrap(),
                "Bearer slow" => {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                    Response::new(Full::new(Bytes::new()))
                }
                _ => Response::builder()
                    .status(StatusCode::UNAUTHORIZED)
                    .header("www-authenticate", "Bearer realm=\"acme\"")
                    .header("x-reason", "no token")
                    .body(Full::new(Bytes::from_static(b"you shall not pass\n")))
                    .unwrap(),
            }
        }
    })
    .await;
    (addr, log)
}

/// The gRPC (ext_authz) authorization service: `Bearer good` is
/// allowed with headers to set and append, one to remove and one for the
/// client's answer; `Bearer slow` answers after 5 s; anything else is
/// denied with 401, a challenge and a body.
#[derive(Clone, Default)]
struct Authz {
    log: Arc<Mutex<Vec<CheckRequest>>>,
}

fn header_option(key: &str, value: &str, append: Option<bool>) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(PbHeader {
            key: key.into(),
            value: value.into(),
            ..Default::default()
        }),
        #[allow(deprecated)]
        append: append.map(|value| BoolValue { value }),
        ..Default::default()
    }
}

#[tonic::async_trait]
impl Authorization for Authz {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let request = request.into_inner();
        self.log.lock().unwrap().push(request.clone());
        let token = request
            .attributes
            .as_ref()
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
            .and_then(|h| h.headers.get("authorization").cloned())
            .unwrap_or_default();
        let response = match token.as_str() {
            "Bearer good" | "Bearer slow" => {
                if token == "Bearer slow" {
                    tokio::time::sleep(Duration::from_secs(5)).await;
                }
                CheckResponse {
                    status: Some(RpcStatus::default()),
                    http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                        headers: vec![
                            header_option("x-user", "bob", None),
                            header_option("x-groups", "admins", Some(true)),
                        ],
                        headers_to_remove: vec!["authorization".into()],
                        response_headers_to_add: vec![header_option("x-auth", "checked", None)],
                        ..Default::default()
                    })),
                    ..Default::default()
                }
            }
            _ => CheckResponse {
                // PERMISSION_DENIED
                status: Some(RpcStatus {
                    code: 7,
                    ..Default::default()
                }),
                http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
                    status: Some(HttpStatus { code: 401 }),
                    headers: vec![header_option("www-authenticate", "Bearer", None)],
                    body: "denied by policy\n".into(),
                })),
                ..Default::default()
            },
        };
        Ok(tonic::Response::new(response))
    }
}

/// Serves `authz` over HTTP/2 (h2c) on an ephemeral loopback port, as
/// a tonic server.
async fn grpc_server(authz: Authz) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = AuthorizationServer::new(authz);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = hyper_util::service::TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

// ---------------------------------------------------------------- gateway

fn service(name: &str, port: u16) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec: {{ports: [{{port: {port}}}]}}\n"
    )
}

fn endpoint_slice(service: &str, port: u16) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {service}-1, namespace: default, labels: {{kubernetes.io/service-name: {service}}}}}\naddressType: IPv4\nports: [{{port: {port}}}]\nendpoints: [{{addresses: [127.0.0.1]}}]\n"
    )
}

/// A route whose `/private` rule has the filter `external_auth` (flow
/// YAML) before a header modifier, with `rule_extra` lines; `/public` is
/// open. `app` is an echo backend; `authz` (port 9000) is at `auth_port`.
fn manifest(external_auth: &str, rule_extra: &str, auth_port: u16, app: &str) -> String {
    let route = format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /private}}}}]
    filters:
    - type: ExternalAuth
      externalAuth: {external_auth}
    - type: RequestHeaderModifier
      requestHeaderModifier: {{set: [{{name: x-after-auth, value: "1"}}]}}
    backendRefs: [{{name: {app}, port: 80}}]
{rule_extra}  - matches: [{{path: {{type: PathPrefix, value: /public}}}}]
    backendRefs: [{{name: app, port: 80}}]
"#
    );
    [
        common::HTTP_GATEWAY.to_owned(),
        route,
        service("app", 80),
        service("authz", 9000),
        endpoint_slice("authz", auth_port),
    ]
    .join("---\n")
}

async fn start(manifest: &str) -> (Runtime, SocketAddr, common::TempDir) {
    let dir = common::manifest_dir("ext-auth", manifest);
    let rt = Runtime::start(vec![dir.0.clone()], common::options(true))
        .await
        .expect("start");
    let addr = rt.local_addr(80).expect("port 80");
    (rt, addr, dir)
}

/// Sends `method path` with `headers` and `body`; status, headers, body.
async fn send(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &'static str,
) -> (StatusCode, http::HeaderMap, Bytes) {
    let mut req = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("host", "a.example");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = common::client()
        .request(
            req.body(Full::new(Bytes::from_static(body.as_bytes())))
                .unwrap(),
        )
        .await
        .expect("request");
    let (parts, body) = resp.into_parts();
    (
        parts.status,
        parts.headers,
        body.collect().await.unwrap().to_bytes(),
    )
}

fn echoed(body: &[u8]) -> Echoed {
    gwcore_proxy::echo::parse_echoed(&Bytes::copy_from_slice(body))
        .unwrap_or_else(|| panic!("not echo JSON: {:?}", String::from_utf8_lossy(body)))
}

fn decisions(rt: &Runtime, decision: AuthDecision) -> u64 {
    let key = SeriesKey {
        gateway: "default/gw".into(),
        route: "HTTPRoute default/r".into(),
        backend: "".into(),
    };
    rt.proxy().metrics().ext_auth_count(&key, decision)
}

const HTTP_FILTER: &str = "{protocol: HTTP, backendRef: {name: authz, port: 9000}, http: {path: /check, allowedHeaders: [x-tenant], allowedResponseHeaders: [x-user]}}";

// ---------------------------------------------------------------- HTTP

#[tokio::test]
async fn http_allowed_requests_go_on_with_the_allowed_answer_headers() {
    let (auth, log) = http_authz().await;
    let (rt, addr, _dir) = start(&manifest(HTTP_FILTER, "", auth.port(), "app")).await;

    let (status, _, body) = send(
        addr,
        "GET",
        "/private/a?b=1",
        &[
            ("authorization", "Bearer good"),
            ("x-tenant", "t1"),
            ("cookie", "session=1"),
            ("x-user", "forged"),
        ],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let e = echoed(&body);
    // The service's allowed header replaces the client's forged one; the
    // others of its answer stay out, and later filters still run.
    assert_eq!(e.headers["X-User"], ["alice"]);
    assert!(!e.headers.contains_key("X-Internal"), "{:?}", e.headers);
    assert_eq!(e.headers["X-After-Auth"], ["1"]);
    assert_eq!(e.headers["Authorization"], ["Bearer good"]);

    let asked = log.lock().unwrap().last().cloned().expect("asked");
    assert_eq!(asked.method, "GET");
    assert_eq!(asked.path, "/check/private/a?b=1", "prefix, path, query");
    let h = &asked.headers;
    assert_eq!(h["authorization"], "Bearer good");
    assert_eq!(h["host"], "a.example");
    assert_eq!(h["x-tenant"], "t1", "allowed");
    assert_eq!(h["content-length"], "0", "no body forwarded");
    for not_sent in ["cookie", "x-user"] {
        assert!(!h.contains_key(not_sent), "{not_sent} sent: {h:?}");
    }

    // The open rule never asks.
    let before = log.lock().unwrap().len();
    let (status, _, _) = send(addr, "GET", "/public", &[], "").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(log.lock().unwrap().len(), before);
    assert_eq!(decisions(&rt, AuthDecision::Allowed), 1);
    rt.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn http_denials_reach_the_client_as_the_service_gave_them() {
    let (auth, _) = http_authz().await;
    let (rt, addr, _dir) = start(&manifest(HTTP_FILTER, "", auth.port(), "app")).await;
    for token in [None, Some("Bearer bad")] {
        let headers: Vec<(&str, &str)> = token.map(|t| ("authorization", t)).into_iter().collect();
        let (status, h, body) = send(addr, "GET", "/private", &headers, "").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{token:?}");
        assert_eq!(h["www-authenticate"], "Bearer realm=\"acme\"");
        assert_eq!(h["x-reason"], "no token");
        assert_eq!(&body[..], b"you shall not pass\n", "not the backend's");
    }
    // HTTP/2 clients get the same.
    let (status, body) = common::h2c_get(addr, "a.example", "/private").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(&body[..], b"you shall not pass\n");
    assert_eq!(decisions(&rt, AuthDecision::Denied), 3);
    let metrics = rt.proxy().metrics().render();
    assert!(
        metrics.contains(
            "gwcore_ext_auth_decisions_total{gateway=\"default/gw\",route=\"HTTPRoute default/r\",result=\"denied\"} 3\n"
        ),
        "{metrics}"
    );
    rt.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_service_that_is_down_denies_with_403() {
    let (rt, addr, _dir) = start(&manifest(HTTP_FILTER, "", closed_port(), "app")).await;
    let (status, _, body) = send(
        addr,
        "GET",
        "/private",
        &[("authorization", "Bearer good")],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "fail closed: {body:?}");
    assert!(!String::from_utf8_lossy(&body).contains("\"service\""));
    assert_eq!(decisions(&rt, AuthDecision::Error), 1);
    let (status, _, _) = send(addr, "GET", "/public", &[], "").await;
    assert_eq!(status, StatusCode::OK, "other rules serve");
    rt.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_service_too_slow_for_the_request_timeout_denies() {
    let (auth, _) = http_authz().await;
    let (rt, addr, _dir) = start(&manifest(
        HTTP_FILTER,
        "    timeouts: {request: 400ms}\n",
        auth.port(),
        "app",
    ))
    .await;
    let started = Instant::now();
    let (status, _, _) = send(
        addr,
        "GET",
        "/private",
        &[("authorization", "Bearer slow")],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "waited {:?}",
        started.elapsed()
    );
    assert_eq!(decisions(&rt, AuthDecision::Error), 1);
    rt.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn the_body_goes_to_the_service_up_to_the_cap_and_whole_to_the_backend() {
    let (auth, log) = http_authz().await;
    // A backend that answers with the body it got.
    let backend = http_server(|_, body: Bytes| async move { Response::new(Full::new(body)) }).await;
    let filter = "{protocol: HTTP, backendRef: {name: authz, port: 9000}, http: {}, forwardBody: {maxSize: 4}}";
    let m = format!(
        "{}---\n{}---\n{}",
        manifest(filter, "", auth.port(), "mirror"),
        service("mirror", 80),
        endpoint_slice("mirror", backend.port())
    );
    let (rt, addr, _dir) = start(&m).await;
    let (status, _, body) = send(
        addr,
        "POST",
        "/private",
        &[("authorization", "Bearer good")],
        "0123456789",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(&body[..], b"0123456789", "the backend got all of it");
    let asked = log.lock().unwrap().last().cloned().expect("asked");
    assert_eq!(asked.method, "POST");
    assert_eq!(&asked.body[..], b"0123", "cut at maxSize");
    assert_eq!(asked.headers["content-length"], "4");
    assert_eq!(asked.headers["x-envoy-auth-partial-body"], "true");

    // A body under the cap goes whole.
    let (status, _, _) = send(
        addr,
        "POST",
        "/private",
        &[("authorization", "Bearer good")],
        "ab",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let asked = log.lock().unwrap().last().cloned().expect("asked");
    assert_eq!(&asked.body[..], b"ab");
    assert_eq!(asked.headers["x-envoy-auth-partial-body"], "false");
    rt.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn an_unresolved_auth_service_answers_500() {
    let m = manifest(HTTP_FILTER, "", closed_port(), "app").replace(
        "backendRef: {name: authz, port: 9000}",
        "backendRef: {name: nowhere, port: 9000}",
    );
    let (rt, addr, _dir) = start(&m).await;
    let (status, _, _) = send(
        addr,
        "GET",
        "/private",
        &[("authorization", "Bearer good")],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    rt.shutdown(Duration::from_secs(1)).await;
}

// ---------------------------------------------------------------- gRPC

const GRPC_FILTER: &str =
    "{protocol: GRPC, backendRef: {name: authz, port: 9000}, grpc: {}, forwardBody: {maxSize: 3}}";

#[tokio::test]
async fn grpc_allowed_requests_get_the_services_headers() {
    let authz = Authz::default();
    let auth = grpc_server(authz.clone()).await;
    let (rt, addr, _dir) = start(&manifest(GRPC_FILTER, "", auth.port(), "app")).await;
    let (status, h, body) = send(
        addr,
        "POST",
        "/private/x?y=1",
        &[
            ("authorization", "Bearer good"),
            ("x-groups", "users"),
            ("x-tenant", "t1"),
        ],
        "hello",
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    let e = echoed(&body);
    assert_eq!(e.headers["X-User"], ["bob"], "set");
    assert_eq!(e.headers["X-Groups"], ["users", "admins"], "appended");
    assert!(
        !e.headers.contains_key("Authorization"),
        "removed: {:?}",
        e.headers
    );
    assert_eq!(h["x-auth"], "checked", "on the client's answer");

    let asked = authz.log.lock().unwrap().last().cloned().expect("asked");
    let attrs = asked.attributes.expect("attributes");
    let http = attrs.request.expect("request").http.expect("http");
    assert_eq!(http.method, "POST");
    assert_eq!(http.path, "/private/x?y=1");
    assert_eq!(http.host, "a.example");
    assert_eq!(http.scheme, "http");
    assert_eq!(http.protocol, "HTTP/1.1");
    assert_eq!(http.size, 5);
    assert_eq!(http.body, "hel", "cut at maxSize");
    // Empty allowedHeaders: every header.
    assert_eq!(http.headers["x-tenant"], "t1");
    assert_eq!(http.headers["authorization"], "Bearer good");
    assert_eq!(http.headers[":method"], "POST");
    let source = attrs.source.expect("source").address.expect("address");
    let Some(envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(a)) =
        source.address
    else {
        panic!("a socket address")
    };
    assert_eq!(a.address, "127.0.0.1");
    assert_eq!(decisions(&rt, AuthDecision::Allowed), 1);
    rt.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn grpc_denials_answer_with_the_denied_response() {
    let auth = grpc_server(Authz::default()).await;
    let (rt, addr, _dir) = start(&manifest(GRPC_FILTER, "", auth.port(), "app")).await;
    let (status, h, body) = send(
        addr,
        "GET",
        "/private",
        &[("authorization", "Bearer bad")],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(h["www-authenticate"], "Bearer");
    assert_eq!(&body[..], b"denied by policy\n");
    assert_eq!(decisions(&rt, AuthDecision::Denied), 1);
    rt.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn grpc_services_down_or_slow_deny_with_403() {
    let (rt, addr, _dir) = start(&manifest(GRPC_FILTER, "", closed_port(), "app")).await;
    let (status, _, _) = send(
        addr,
        "GET",
        "/private",
        &[("authorization", "Bearer good")],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    rt.shutdown(Duration::from_secs(1)).await;

    let auth = grpc_server(Authz::default()).await;
    let (rt, addr, _dir) = start(&manifest(
        GRPC_FILTER,
        "    timeouts: {request: 400ms}\n",
        auth.port(),
        "app",
    ))
    .await;
    let started = Instant::now();
    let (status, _, _) = send(
        addr,
        "GET",
        "/private",
        &[("authorization", "Bearer slow")],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(started.elapsed() < Duration::from_secs(3));
    // A service that is not gRPC at all (an HTTP one) fails closed too.
    rt.shutdown(Duration::from_secs(1)).await;
    let (http_auth, _) = http_authz().await;
    let (rt, addr, _dir) = start(&manifest(GRPC_FILTER, "", http_auth.port(), "app")).await;
    let (status, _, _) = send(
        addr,
        "GET",
        "/private",
        &[("authorization", "Bearer good")],
        "",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(decisions(&rt, AuthDecision::Error), 1);
    rt.shutdown(Duration::from_secs(1)).await;
}

// ---------------------------------------------------------------- ACME

/// The issue's scenario: the ACME Gateway with `examples/external-auth`,
/// where the careers route asks a gRPC ext_authz service in the
/// `security` namespace, and has a rate limit (`RateLimitPolicy`) and a
/// body limit (`BodyLimitPolicy`), run by gwcore's own plug-ins: allowed
/// 200, denied 401 (what the service answered), oversized 413, over the
/// limit 429, the unprotected product route 200, and `/hr` still 404.
#[tokio::test]
async fn acme_with_external_auth() {
    let auth = grpc_server(Authz::default()).await;
    let dir = common::TempDir::new("ext-auth-acme");
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/external-auth");
    for entry in std::fs::read_dir(&example).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&path, dir.0.join(path.file_name().unwrap())).unwrap();
        }
    }
    // The ext_authz service's endpoint: the test's server.
    std::fs::write(
        dir.0.join("endpoints.yaml"),
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: ext-authz-1, namespace: security, labels: {{kubernetes.io/service-name: ext-authz}}}}\naddressType: IPv4\nports: [{{port: {}}}]\nendpoints: [{{addresses: [127.0.0.1]}}]\n",
            auth.port()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.0.join("limits.yaml"),
        r#"apiVersion: policy.gwcore.dev/v1alpha1
kind: RateLimitPolicy
metadata: {name: careers, namespace: careers}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: careers}]
  limits: [{requests: 6, unit: Minute}]
---
apiVersion: policy.gwcore.dev/v1alpha1
kind: BodyLimitPolicy
metadata: {name: careers, namespace: careers}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: careers}]
  maxBytes: 16
"#,
    )
    .unwrap();
    let opts = {
        let mut o = common::options(true);
        o.plugins = gwcore_proxy::first_party::plugins();
        o
    };
    let rt = Runtime::start(vec![dir.0.clone()], opts)
        .await
        .expect("start");
    let addr = rt.local_addr(80).expect("port 80");
    let get = |path: &'static str, token: Option<&'static str>| async move {
        let headers: Vec<(&str, &str)> = token.map(|t| ("authorization", t)).into_iter().collect();
        let (status, _, body) = send(addr, "GET", path, &headers, "").await;
        (status, body)
    };
    let (status, body) = get("/careers", Some("Bearer good")).await;
    assert_eq!(status, StatusCode::OK, "{body:?}");
    assert_eq!(echoed(&body).headers["X-User"], ["bob"]);
    let (status, body) = get("/careers", Some("Bearer bad")).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(&body[..], b"denied by policy\n");
    let (status, _) = get("/careers", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = get("/product", None).await;
    assert_eq!(status, StatusCode::OK, "no filter on product");
    let (status, _) = get("/hr", Some("Bearer good")).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "hr's route is still refused");
    // A body over the careers limit never reaches the backend.
    let (status, _, _) = send(
        addr,
        "POST",
        "/careers",
        &[("authorization", "Bearer good")],
        "a body well over sixteen bytes",
    )
    .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    // Six requests a minute on careers: the rest get 429.
    let mut statuses = Vec::new();
    for _ in 0..8 {
        let (status, h, _) = send(
            addr,
            "GET",
            "/careers",
            &[("authorization", "Bearer good")],
            "",
        )
        .await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert!(h.contains_key("retry-after"), "{h:?}");
        }
        statuses.push(status.as_u16());
    }
    assert!(statuses.contains(&429), "{statuses:?}");
    assert_eq!(statuses.last(), Some(&429), "{statuses:?}");
    let (status, _) = get("/product", None).await;
    assert_eq!(status, StatusCode::OK, "product has no limit");
    rt.shutdown(Duration::from_secs(1)).await;
}
