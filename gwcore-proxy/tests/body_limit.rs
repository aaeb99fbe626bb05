//! Request body limits over the wire: the Gateway-wide default and
//! `BodyLimitPolicy` (gwcore's first-party plug-in), for HTTP/1.1 and
//! HTTP/2 clients and backends. Over the limit the client gets 413 and the
//! backend never more than the limit, nor a complete request.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use gwcore_proxy::limits::Limits;
use gwcore_proxy::provider::Runtime;
use gwcore_proxy::server::ServeOptions;
use http::Request;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What a backend got of one request: body bytes, and whether the body
/// ended as its framing says (a complete request).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Got {
    bytes: usize,
    complete: bool,
}

type Log = Arc<Mutex<Vec<Got>>>;

/// An HTTP/1.1 backend that reads each request's body whole (by its
/// framing) before it answers 200; a body that breaks off is logged
/// incomplete.
async fn h1_backend(log: Log) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            tokio::spawn(h1_conn(s, log.clone()));
        }
    });
    addr
}

async fn h1_conn(mut s: TcpStream, log: Log) {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    macro_rules! more {
        () => {
            match s.read(&mut tmp).await {
                Ok(0) | Err(_) => None,
                Ok(n) => {
                    buf.extend_from_slice(&tmp[..n]);
                    Some(())
                }
            }
        };
    }
    loop {
        let end = loop {
            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i;
            }
            if more!().is_none() {
                return;
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        buf.drain(..end + 4);
        let mut got = Got {
            bytes: 0,
            complete: false,
        };
        if head.contains("transfer-encoding: chunked") {
            loop {
                let line = loop {
                    if let Some(i) = buf.windows(2).position(|w| w == b"\r\n") {
                        break i;
                    }
                    if more!().is_none() {
                        log.lock().unwrap().push(got);
                        return;
                    }
                };
                let size = usize::from_str_radix(
                    std::str::from_utf8(&buf[..line])
                        .unwrap()
                        .split(';')
                        .next()
                        .unwrap(),
                    16,
                )
                .unwrap();
                buf.drain(..line + 2);
                if size == 0 {
                    while buf.windows(2).position(|w| w == b"\r\n") != Some(0) {
                        if more!().is_none() {
                            log.lock().unwrap().push(got);
                            return;
                        }
                    }
                    buf.drain(..2);
                    got.complete = true;
                    break;
                }
                while buf.len() < size + 2 {
                    if more!().is_none() {
                        got.bytes += buf.len().min(size);
                        log.lock().unwrap().push(got);
                        return;
                    }
                }
                got.bytes += size;
                buf.drain(..size + 2);
            }
        } else {
            let n: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map_or(0, |v| v.trim().parse().unwrap());
            while buf.len() < n {
                if more!().is_none() {
                    got.bytes = buf.len();
                    log.lock().unwrap().push(got);
                    return;
                }
            }
            buf.drain(..n);
            got = Got {
                bytes: n,
                complete: true,
            };
        }
        log.lock().unwrap().push(got);
        let text = got.bytes.to_string();
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{text}",
            text.len()
        );
        if s.write_all(answer.as_bytes()).await.is_err() {
            return;
        }
    }
}

/// An h2c backend that reads each request body whole before answering;
/// a body reset by the proxy is logged incomplete.
async fn h2_backend(log: Log) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            let log = log.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let log = log.clone();
                    async move {
                        let mut body = req.into_body();
                        let mut got = Got {
                            bytes: 0,
                            complete: false,
                        };
                        loop {
                            match body.frame().await {
                                None => {
                                    got.complete = true;
                                    break;
                                }
                                Some(Err(_)) => break,
                                Some(Ok(f)) => {
                                    got.bytes += f.data_ref().map_or(0, |d| d.len());
                                }
                            }
                        }
                        log.lock().unwrap().push(got);
                        Ok::<_, std::convert::Infallible>(http::Response::new(
                            http_body_util::Full::new(Bytes::from(got.bytes.to_string())),
                        ))
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

const POLICIES: &str = r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: app, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - name: upload
    matches: [{path: {type: PathPrefix, value: /upload}}]
    backendRefs: [{name: h1, port: 80}]
  - name: tiny
    matches: [{path: {type: PathPrefix, value: /tiny}}]
    backendRefs: [{name: h1, port: 80}]
  - name: h2
    matches: [{path: {type: PathPrefix, value: /h2}}]
    backendRefs: [{name: h2, port: 80}]
  - backendRefs: [{name: h1, port: 80}]
---
apiVersion: policy.gwcore.dev/v1alpha1
kind: BodyLimitPolicy
metadata: {name: uploads, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: app, sectionName: upload}]
  maxBytes: 20Ki
---
apiVersion: policy.gwcore.dev/v1alpha1
kind: BodyLimitPolicy
metadata: {name: tiny, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: app, sectionName: tiny}]
  maxBytes: 100
"#;

fn service(name: &str, port: u16, app_protocol: Option<&str>) -> String {
    let ap = app_protocol.map_or(String::new(), |a| format!(", appProtocol: {a}"));
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec: {{ports: [{{port: 80{ap}}}]}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{port: {port}{ap}}}]\nendpoints: [{{addresses: [127.0.0.1]}}]\n"
    )
}

struct Env {
    rt: Runtime,
    addr: SocketAddr,
    h1: Log,
    h2: Log,
}

/// The Gateway with a default limit of 1 000 bytes, the policies above,
/// and `buffer` as the whole-read size of HTTP/1.x bodies.
async fn env(buffer: usize) -> Env {
    let (h1, h2) = (Log::default(), Log::default());
    let h1_addr = h1_backend(h1.clone()).await;
    let h2_addr = h2_backend(h2.clone()).await;
    let yaml = format!(
        "{}{}{}{POLICIES}",
        common::HTTP_GATEWAY,
        service("h1", h1_addr.port(), None),
        service("h2", h2_addr.port(), Some("kubernetes.io/h2c")),
    );
    let plugins = gwcore_proxy::first_party::plugins();
    let loaded = gwcore::load::load_str_extended(
        "body-limit.yaml",
        &yaml,
        gwcore::load::Limits::default(),
        plugins.extensions(),
    );
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    let opts = {
        let mut o = common::options(false);
        o.plugins = plugins;
        o
    };
    let serve = ServeOptions {
        limits: Limits {
            max_request_body_bytes: 1000,
            request_body_buffer_bytes: buffer,
            ..Limits::default()
        },
        ..ServeOptions::default()
    };
    let rt = Runtime::from_snapshot_with(loaded.to_snapshot(), opts, serve)
        .await
        .unwrap();
    let addr = rt.local_addr(80).unwrap();
    Env { rt, addr, h1, h2 }
}

/// A body of `n` bytes in 100-byte frames, with no declared length.
fn streamed(n: usize) -> http_body_util::combinators::BoxBody<Bytes, std::io::Error> {
    let frames: Vec<Result<Frame<Bytes>, std::io::Error>> = (0..n.div_ceil(100))
        .map(|i| Ok(Frame::data(Bytes::from(vec![b'x'; 100.min(n - i * 100)]))))
        .collect();
    StreamBody::new(futures_util::stream::iter(frames)).boxed()
}

/// Sends `n` bytes to `path` over HTTP/1.1 (`declared`: with
/// Content-Length, else chunked) or HTTP/2; the status (0: the request
/// failed without an answer).
async fn post(addr: SocketAddr, path: &str, n: usize, declared: bool, http2: bool) -> u16 {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut req = if http2 {
        Request::post(format!("http://a.example{path}"))
    } else {
        Request::post(path).header("host", "a.example")
    };
    if declared {
        req = req.header("content-length", n);
    }
    let req = req.body(streamed(n)).unwrap();
    let resp = if http2 {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(conn);
        send.send_request(req).await
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        send.send_request(req).await
    };
    match resp {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

/// Waits for the log to hold `n` entries (backends log as the proxy's
/// connection closes), then takes them.
async fn take(log: &Log, n: usize) -> Vec<Got> {
    for _ in 0..200 {
        if log.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    std::mem::take(&mut *log.lock().unwrap())
}

#[tokio::test]
async fn the_gateway_default_limits_bodies_where_no_policy_applies() {
    for http2 in [false, true] {
        let e = env(64 * 1024).await;
        // Under and at the limit: forwarded whole.
        for (n, declared) in [(500, true), (1000, true), (1000, false)] {
            assert_eq!(
                post(e.addr, "/", n, declared, http2).await,
                200,
                "{n} h2 {http2}"
            );
        }
        assert_eq!(
            take(&e.h1, 3).await,
            vec![
                Got {
                    bytes: 500,
                    complete: true
                },
                Got {
                    bytes: 1000,
                    complete: true
                },
                Got {
                    bytes: 1000,
                    complete: true
                }
            ]
        );
        // A declared length over it: 413, no backend contacted.
        assert_eq!(post(e.addr, "/", 1001, true, http2).await, 413);
        // Streamed over it: 413; HTTP/1.1 bodies this small are read
        // before the backend is contacted, HTTP/2 ones are cut.
        assert_eq!(post(e.addr, "/", 5000, false, http2).await, 413);
        let got = take(&e.h1, if http2 { 1 } else { 0 }).await;
        assert!(
            got.iter().all(|g| !g.complete && g.bytes <= 1000),
            "h2 {http2}: {got:?}"
        );
        if !http2 {
            assert_eq!(got, vec![], "the backend saw none of it");
        }
        e.rt.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn a_streamed_body_is_cut_at_the_limit_and_never_completes() {
    // Nothing read whole: HTTP/1.1 bodies stream too.
    let e = env(0).await;
    for (path, log, limit) in [
        ("/", &e.h1, 1000),
        ("/tiny", &e.h1, 100),
        ("/h2", &e.h2, 1000),
    ] {
        for http2 in [false, true] {
            let status = post(e.addr, path, 50_000, false, http2).await;
            assert_eq!(status, 413, "{path} h2 {http2}");
            let got = take(log, 1).await;
            assert!(
                got.iter().all(|g| !g.complete && g.bytes <= limit),
                "{path} h2 {http2}: the backend got {got:?}"
            );
        }
    }
    e.rt.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_policy_replaces_the_default_on_its_rule() {
    let e = env(64 * 1024).await;
    for http2 in [false, true] {
        // The upload rule takes 20 KiB, past the Gateway's 1 000 bytes.
        assert_eq!(post(e.addr, "/upload", 20 * 1024, true, http2).await, 200);
        assert_eq!(post(e.addr, "/upload", 20 * 1024, false, http2).await, 200);
        assert_eq!(
            post(e.addr, "/upload", 20 * 1024 + 1, true, http2).await,
            413
        );
        assert_eq!(post(e.addr, "/upload", 30 * 1024, false, http2).await, 413);
        // The tiny rule takes 100.
        assert_eq!(post(e.addr, "/tiny", 100, false, http2).await, 200);
        assert_eq!(post(e.addr, "/tiny", 101, true, http2).await, 413);
        assert_eq!(post(e.addr, "/tiny", 150, false, http2).await, 413);
        // Elsewhere the default holds.
        assert_eq!(post(e.addr, "/other", 2000, true, http2).await, 413);
        let got = take(&e.h1, 3).await;
        let complete: Vec<usize> = got.iter().filter(|g| g.complete).map(|g| g.bytes).collect();
        assert_eq!(
            complete,
            vec![20 * 1024, 20 * 1024, 100],
            "h2 {http2}: {got:?}"
        );
        assert!(got.iter().all(|g| g.complete || g.bytes <= 20 * 1024));
    }
    e.rt.shutdown(Duration::from_secs(1)).await;
}
