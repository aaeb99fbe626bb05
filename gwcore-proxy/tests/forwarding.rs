//! What the Gateway API asks of forwarding, checked on the wire: weights,
//! invalid and unreachable backends, timeouts, retries, mirrors, redirects
//! and header filters.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gwcore_proxy::echo::Echoed;
use gwcore_proxy::provider::Runtime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

fn endpoint_slice(service: &str, port: u16) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {service}-1, namespace: default, labels: {{kubernetes.io/service-name: {service}}}}}\naddressType: IPv4\nports: [{{port: {port}}}]\nendpoints: [{{addresses: [127.0.0.1]}}]\n"
    )
}

fn service(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec: {{ports: [{{port: 80}}]}}\n"
    )
}

/// After [`common::HTTP_GATEWAY`]: the route.
const ROUTE: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /weighted}}]
    backendRefs: [{name: v1, port: 80, weight: 3}, {name: v2, port: 80, weight: 1}, {name: never, port: 80, weight: 0}]
  - matches: [{path: {type: PathPrefix, value: /invalid}}]
    backendRefs: [{name: does-not-exist, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /down}}]
    backendRefs: [{name: down, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /slow}}]
    timeouts: {request: 500ms}
    backendRefs: [{name: v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /retry}}]
    retry: {codes: [503], attempts: 2}
    backendRefs: [{name: v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /retry-slow}}]
    retry: {codes: [503], attempts: 2}
    timeouts: {request: 1500ms, backendRequest: 250ms}
    backendRefs: [{name: v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /retry-none}}]
    backendRefs: [{name: v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /mirrored}}]
    filters:
    - type: RequestMirror
      requestMirror: {backendRef: {name: mirror, port: 80}}
    backendRefs: [{name: v1, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters:
    - type: RequestRedirect
      requestRedirect: {hostname: new.example, statusCode: 301, path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}}
  - matches: [{path: {type: PathPrefix, value: /headers}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-set, value: "yes"}], remove: [x-drop]}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {add: [{name: x-resp, value: "added"}]}
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /rewritten}}
    backendRefs: [{name: v1, port: 80}]
"#;

const GRPC_ROUTE: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [grpc.example]
  rules:
  - matches: [{method: {service: echo.Echo, method: Say}}]
    backendRefs: [{name: grpc, port: 80}]
"#;

/// A plain TCP server recording the first line of every HTTP request it
/// gets, answering 200.
async fn recorder() -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let s2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let seen = s2.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut got = Vec::new();
                while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    got.extend_from_slice(&buf[..n]);
                }
                let line = String::from_utf8_lossy(&got)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .to_owned();
                seen.lock().unwrap().push(line);
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    });
    (addr, seen)
}

struct Env {
    _rt: Runtime,
    addr: SocketAddr,
    mirror_seen: Arc<Mutex<Vec<String>>>,
    dir: std::path::PathBuf,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn env() -> Env {
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let (mirror_addr, mirror_seen) = recorder().await;
    let manifest = [
        common::HTTP_GATEWAY.to_owned(),
        ROUTE.to_owned(),
        service("v1"),
        service("v2"),
        service("never"),
        service("down"),
        endpoint_slice("down", closed),
        service("mirror"),
        endpoint_slice("mirror", mirror_addr.port()),
        service("grpc"),
        GRPC_ROUTE.to_owned(),
    ]
    .join("---\n");
    let dir = std::env::temp_dir().join(format!(
        "gwcore-fwd-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("gw.yaml"), manifest).unwrap();
    let rt = Runtime::start(vec![dir.clone()], common::options(true))
        .await
        .unwrap();
    let addr = rt.local_addr(80).unwrap();
    Env {
        _rt: rt,
        addr,
        mirror_seen,
        dir,
    }
}

fn echoed(body: &[u8]) -> Echoed {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not echo JSON ({e}): {:?}", String::from_utf8_lossy(body)))
}

#[tokio::test]
async fn weights_split_traffic_and_weight_zero_gets_none() {
    let env = env().await;
    let c = common::client();
    let (mut v1, mut v2) = (0, 0);
    let n = 800;
    for _ in 0..n {
        let (status, _, body) = common::get(&c, env.addr, "x", "/weighted").await;
        assert_eq!(status, 200);
        match echoed(&body).service.as_str() {
            "v1" => v1 += 1,
            "v2" => v2 += 1,
            other => panic!("weight-0 or unknown backend answered: {other}"),
        }
    }
    let share = f64::from(v1) / f64::from(n);
    // 3:1 → 0.75; five binomial standard deviations is about 0.077.
    assert!(
        (share - 0.75).abs() < 0.077,
        "v1 share {share} (v1 {v1}, v2 {v2})"
    );
}

#[tokio::test]
async fn invalid_backend_is_500_and_unreachable_backend_is_503() {
    let env = env().await;
    let c = common::client();
    assert_eq!(common::get(&c, env.addr, "x", "/invalid").await.0, 500);
    assert_eq!(common::get(&c, env.addr, "x", "/down").await.0, 503);
}

#[tokio::test]
async fn request_timeout_answers_504() {
    let env = env().await;
    let c = common::client();
    assert_eq!(
        common::get(&c, env.addr, "x", "/slow?delay=2s").await.0,
        504
    );
    assert_eq!(
        common::get(&c, env.addr, "x", "/slow?delay=10ms").await.0,
        200
    );
}

#[tokio::test]
async fn retry_codes_are_retried_up_to_the_attempts() {
    let env = env().await;
    let c = common::client();
    let u = fastrand::u64(..);
    // Fails twice with 503, then succeeds: two retries are enough.
    let path = format!("/retry?uuid={u}&succeedAfter=2&responseCode=503");
    let (status, _, body) = common::get(&c, env.addr, "x", &path).await;
    assert_eq!(status, 200);
    assert_eq!(echoed(&body).path, path);
    // Fails three times: one more than the attempts.
    let path = format!("/retry?uuid={u}b&succeedAfter=3&responseCode=503");
    assert_eq!(common::get(&c, env.addr, "x", &path).await.0, 503);
    // Without a retry policy the first 503 is the answer.
    let path = format!("/retry-none?uuid={u}c&succeedAfter=1&responseCode=503");
    assert_eq!(common::get(&c, env.addr, "x", &path).await.0, 503);
}

/// HTTPRouteRetryBackendTimeout: an attempt that outlives the
/// `backendRequest` timeout is retried, within the `request` timeout.
#[tokio::test]
async fn an_attempt_past_its_backend_request_timeout_is_retried() {
    let env = env().await;
    let c = common::client();
    let u = fastrand::u64(..);
    // The first attempt takes 5 s (past the 250 ms per attempt); the
    // retry answers at once.
    let path = format!("/retry-slow?uuid={u}&succeedAfter=1&delayRetry=5s&responseCode=503");
    let (status, _, body) = common::get(&c, env.addr, "x", &path).await;
    assert_eq!(status, 200);
    assert_eq!(echoed(&body).path, path);
    // Every attempt too slow: the client gets the timeout, 504.
    let path = format!("/retry-slow?uuid={u}b&succeedAfter=9&delayRetry=5s&responseCode=503");
    assert_eq!(common::get(&c, env.addr, "x", &path).await.0, 504);
}

#[tokio::test]
async fn mirrored_requests_reach_the_mirror_and_the_client_gets_the_backend_answer() {
    let env = env().await;
    let c = common::client();
    let (status, _, body) = common::get(&c, env.addr, "x", "/mirrored/a?id=1").await;
    assert_eq!(status, 200);
    assert_eq!(echoed(&body).service, "v1");
    for _ in 0..100 {
        if !env.mirror_seen.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        *env.mirror_seen.lock().unwrap(),
        ["GET /mirrored/a?id=1 HTTP/1.1"]
    );
}

#[tokio::test]
async fn redirect_and_header_filters_are_applied() {
    let env = env().await;
    let c = common::client();
    let (status, headers, _) = common::get(&c, env.addr, "x", "/old/page?q=1").await;
    assert_eq!(status, 301);
    assert_eq!(headers["location"], "http://new.example/new/page?q=1");

    let req = http::Request::builder()
        .uri(format!("http://{}/headers/a", env.addr))
        .header("host", "x")
        .header("x-drop", "1")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-resp"], "added");
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let e = echoed(&body);
    assert_eq!(e.path, "/rewritten/a");
    assert_eq!(e.headers["X-Set"], ["yes"]);
    assert!(!e.headers.contains_key("X-Drop"));
}

#[tokio::test]
async fn grpc_routes_speak_http2_to_their_backends_and_keep_te_trailers() {
    let env = env().await;
    let tcp = tokio::net::TcpStream::connect(env.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method("POST")
        .uri("http://grpc.example/echo.Echo/Say")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    let e = echoed(&body);
    assert_eq!(e.service, "grpc");
    assert_eq!(
        e.proto, "HTTP/2.0",
        "a Service port without appProtocol still gets HTTP/2 for gRPC"
    );
    assert_eq!(e.host, "grpc.example");
    assert_eq!(e.path, "/echo.Echo/Say");
    assert_eq!(e.headers["Te"], ["trailers"]);
}

#[tokio::test]
async fn a_body_too_large_to_copy_is_forwarded_but_not_mirrored() {
    let env = env().await;
    let c = common::client();
    let post = |path: &str, len: usize| {
        http::Request::builder()
            .method("POST")
            .uri(format!("http://{}{path}", env.addr))
            .header("host", "x")
            .body(http_body_util::Full::new(bytes::Bytes::from(vec![
                b'x';
                len
            ])))
            .unwrap()
    };
    let resp = c.request(post("/mirrored/big", 2 << 20)).await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "the client is served whatever the mirror"
    );
    let resp = c.request(post("/mirrored/small", 1000)).await.unwrap();
    assert_eq!(resp.status(), 200);
    for _ in 0..100 {
        if !env.mirror_seen.lock().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(
        *env.mirror_seen.lock().unwrap(),
        ["POST /mirrored/small HTTP/1.1"]
    );
}
