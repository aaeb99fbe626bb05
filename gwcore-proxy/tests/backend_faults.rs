//! Backends that fail: each fault gets its documented answer
//! (docs/reliability.md) or a retry as the route configures, never a hang
//! or a panic, and a client of another route sees only 200s meanwhile.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gwcore::Snapshot;
use gwcore_proxy::echo::{EchoIdentity, EchoServer};
use gwcore_proxy::metrics::ReloadOutcome;
use gwcore_proxy::provider::Runtime;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// No request may take longer than this: past it, the proxy hangs.
const HANG: Duration = Duration::from_secs(5);

/// Panics anywhere in the process, tasks included (tokio keeps a task's
/// panic to its JoinHandle, which nobody reads for connection tasks).
static PANICS: AtomicU64 = AtomicU64::new(0);

fn count_panics() {
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::Relaxed);
            default(info);
        }));
    });
}

/// After [`common::HTTP_GATEWAY`]: the Services and routes.
const SERVICES_AND_ROUTES: &str = r#"apiVersion: v1
kind: Service
metadata: {name: steady, namespace: default}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: faulty, namespace: default}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: refusing, namespace: default}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: churn, namespace: default}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: halfgone, namespace: default}
spec: {ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /steady}}]
    backendRefs: [{name: steady, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /refused}}]
    backendRefs: [{name: refusing, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /refused-retried}}]
    retry: {codes: [503], attempts: 2, backoff: 10ms}
    backendRefs: [{name: refusing, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /fault}}]
    backendRefs: [{name: faulty, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /fault/timed}}]
    timeouts: {backendRequest: 300ms}
    backendRefs: [{name: faulty, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /fault/retried}}]
    retry: {codes: [503], attempts: 2}
    backendRefs: [{name: faulty, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /churn}}]
    backendRefs: [{name: churn, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /halfgone}}]
    backendRefs: [{name: halfgone, port: 80}]
"#;

/// An EndpointSlice sending `service` to 127.0.0.1 at each port.
fn slices(service: &str, ports: &[u16]) -> String {
    ports
        .iter()
        .map(|p| {
            format!(
                "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {service}-{p}, namespace: default, labels: {{kubernetes.io/service-name: {service}}}}}\naddressType: IPv4\nports: [{{port: {p}}}]\nendpoints: [{{addresses: [127.0.0.1]}}]\n"
            )
        })
        .collect()
}

fn snapshot(yaml: &str) -> Snapshot {
    let loaded = gwcore::load::load_str("test.yaml", yaml);
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    Snapshot::from_objects(loaded.objects.into_iter().map(|(o, _)| o))
}

/// A port nothing listens on.
fn closed_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

/// A backend that misbehaves as the request path says:
/// - `/fault/reset-before-head`: reads the request, then resets;
/// - `/fault/reset-after-head`: a 200 head announcing 1000 bytes, 10 of
///   them, then a reset; `.../chunked`: the same with a chunked body;
/// - `/fault/timed/slow-head`: answers after 2 s;
/// - `/fault/timed/slow-body` and `/fault/slow-body`: the head at once,
///   then 20 bytes, one every 50 ms;
/// - `/fault/retried/flaky`: every other connection is reset before the
///   head, the others get 200;
/// - `/fault/retried/reset`: reset before the head, every time;
/// - anything else: 200.
async fn faulty_backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let flaky = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(misbehave(s, flaky.clone()));
        }
    });
    addr
}

async fn misbehave(mut s: TcpStream, flaky: Arc<AtomicU64>) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    let line = String::from_utf8_lossy(&got)
        .lines()
        .next()
        .unwrap_or("")
        .to_owned();
    let path = line.split(' ').nth(1).unwrap_or("/").to_owned();
    let reset = |s: TcpStream| {
        // SO_LINGER 0: the close is a TCP reset. (Deprecated because a
        // non-zero linger blocks on drop; zero never does.)
        #[allow(deprecated)]
        let _ = s.set_linger(Some(Duration::ZERO));
        drop(s);
    };
    let ok = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok";
    match path.as_str() {
        "/fault/reset-before-head" | "/fault/retried/reset" => reset(s),
        "/fault/reset-after-head" => {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 1000\r\n\r\n0123456789")
                .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            reset(s);
        }
        "/fault/reset-after-head/chunked" => {
            let _ = s
                .write_all(
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\na\r\n0123456789\r\n",
                )
                .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            reset(s);
        }
        "/fault/timed/slow-head" => {
            tokio::time::sleep(Duration::from_secs(2)).await;
            let _ = s.write_all(ok).await;
        }
        "/fault/timed/slow-body" | "/fault/slow-body" => {
            let _ = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 20\r\nconnection: close\r\n\r\n")
                .await;
            for _ in 0..20 {
                tokio::time::sleep(Duration::from_millis(50)).await;
                if s.write_all(b"x").await.is_err() {
                    return;
                }
            }
        }
        "/fault/retried/flaky" if flaky.fetch_add(1, Ordering::Relaxed).is_multiple_of(2) => {
            reset(s)
        }
        _ => {
            let _ = s.write_all(ok).await;
        }
    }
}

struct Env {
    _steady: EchoServer,
    rt: Runtime,
    addr: SocketAddr,
    steady: u16,
    faulty: SocketAddr,
    refusing: u16,
}

fn manifest(steady: u16, faulty: SocketAddr, refusing: u16, churn: &[u16]) -> String {
    format!(
        "{}---\n{SERVICES_AND_ROUTES}{}{}{}{}{}",
        common::HTTP_GATEWAY,
        slices("steady", &[steady]),
        slices("faulty", &[faulty.port()]),
        slices("refusing", &[refusing]),
        slices("churn", churn),
        // One endpoint serving, one gone (its pod stopped, the slice not
        // updated yet).
        slices("halfgone", &[steady, refusing])
    )
}

async fn env(churn: &[u16]) -> Env {
    let faulty = faulty_backend().await;
    let refusing = closed_port();
    let steady = EchoServer::start(
        EchoIdentity::new("default", "steady", 0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap();
    let opts = common::options(false);
    let manifest = manifest(steady.addr().port(), faulty, refusing, churn);
    let rt = Runtime::from_snapshot(snapshot(&manifest), opts)
        .await
        .unwrap();
    let addr = rt.local_addr(80).unwrap();
    Env {
        steady: steady.addr().port(),
        _steady: steady,
        rt,
        addr,
        faulty,
        refusing,
    }
}

/// What a client gets: the status and whether the whole body arrived.
#[derive(Debug, PartialEq, Eq)]
enum Got {
    /// A complete response.
    Complete(StatusCode, Bytes),
    /// The head, then the body broke off.
    Broken(StatusCode),
}

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

async fn fetch(c: &Client, addr: SocketAddr, path: &str) -> Got {
    let req = Request::builder()
        .uri(format!("http://{addr}{path}"))
        .header("host", "acme.example")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let started = Instant::now();
    let got = tokio::time::timeout(HANG, async {
        let resp = c.request(req).await.expect("no answer at all");
        let status = resp.status();
        match resp.into_body().collect().await {
            Ok(b) => Got::Complete(status, b.to_bytes()),
            Err(_) => Got::Broken(status),
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{path} hangs"));
    assert!(started.elapsed() < HANG);
    got
}

/// A client looping on `/steady` until stopped; returns the statuses it
/// got other than 200, and how many 200s.
fn steady_client(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u64, Vec<String>)> {
    tokio::spawn(async move {
        let c = common::client();
        let (mut ok, mut other) = (0, Vec::new());
        while !stop.load(Ordering::Relaxed) {
            match fetch(&c, addr, "/steady").await {
                Got::Complete(s, _) if s == 200 => ok += 1,
                g => other.push(format!("{g:?}")),
            }
        }
        (ok, other)
    })
}

#[tokio::test]
async fn each_backend_fault_gets_its_documented_answer_and_other_routes_are_unaffected() {
    count_panics();
    let env = env(&[]).await;
    let stop = Arc::new(AtomicBool::new(false));
    let steady = steady_client(env.addr, stop.clone());
    let c = common::client();

    // Spec (HTTPBackendRef): no ready endpoint, or none reachable: 503.
    assert_eq!(
        fetch(&c, env.addr, "/churn").await,
        Got::Complete(
            StatusCode::SERVICE_UNAVAILABLE,
            "no ready endpoints\n".into()
        )
    );
    assert_eq!(
        fetch(&c, env.addr, "/refused").await,
        Got::Complete(
            StatusCode::SERVICE_UNAVAILABLE,
            "backend unreachable\n".into()
        )
    );
    let t = Instant::now();
    assert_eq!(
        fetch(&c, env.addr, "/refused-retried").await,
        Got::Complete(
            StatusCode::SERVICE_UNAVAILABLE,
            "backend unreachable\n".into()
        ),
        "every attempt refused"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(20),
        "two backoffs of 10 ms"
    );

    // The connection breaks before a head: 502.
    assert_eq!(
        fetch(&c, env.addr, "/fault/reset-before-head").await,
        Got::Complete(StatusCode::BAD_GATEWAY, "bad gateway\n".into())
    );
    // After the head, the status is out: the body breaks off for the
    // client too, whatever the framing; it never looks complete.
    assert_eq!(
        fetch(&c, env.addr, "/fault/reset-after-head").await,
        Got::Broken(StatusCode::OK)
    );
    assert_eq!(
        fetch(&c, env.addr, "/fault/reset-after-head/chunked").await,
        Got::Broken(StatusCode::OK)
    );
    // HTTP/2 clients see the stream reset.
    let (status, _) = tokio::time::timeout(HANG, async {
        let tcp = TcpStream::connect(env.addr).await.unwrap();
        let (mut send, conn) = hyper::client::conn::http2::handshake(
            hyper_util::rt::TokioExecutor::new(),
            hyper_util::rt::TokioIo::new(tcp),
        )
        .await
        .unwrap();
        tokio::spawn(conn);
        let req = Request::builder()
            .uri("http://acme.example/fault/reset-after-head")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let resp = send.send_request(req).await.unwrap();
        let status = resp.status();
        (status, resp.into_body().collect().await.is_err())
    })
    .await
    .map(|(s, broken)| {
        assert!(broken, "the HTTP/2 stream is reset, not ended");
        (s, broken)
    })
    .expect("h2 hangs");
    assert_eq!(status, 200);

    // Spec (HTTPRouteTimeouts): backendRequest "covers the time from when
    // the request first starts being sent from the gateway to when the full
    // response has been received from the backend".
    let t = Instant::now();
    assert_eq!(
        fetch(&c, env.addr, "/fault/timed/slow-head").await,
        Got::Complete(StatusCode::GATEWAY_TIMEOUT, "backend timed out\n".into())
    );
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    let t = Instant::now();
    assert_eq!(
        fetch(&c, env.addr, "/fault/timed/slow-body").await,
        Got::Broken(StatusCode::OK),
        "a body still streaming at the deadline is cut"
    );
    assert!(
        t.elapsed() >= Duration::from_millis(300),
        "{:?}",
        t.elapsed()
    );
    // Without a timeout a slow body is streamed to its end.
    assert_eq!(
        fetch(&c, env.addr, "/fault/slow-body").await,
        Got::Complete(StatusCode::OK, Bytes::from(vec![b'x'; 20]))
    );

    // A broken connection is retried when the rule has a retry.
    for _ in 0..4 {
        assert_eq!(
            fetch(&c, env.addr, "/fault/retried/flaky").await,
            Got::Complete(StatusCode::OK, "ok".into())
        );
    }
    // Broken on every attempt: the retries are spent, the backend is not
    // serving (HTTPRouteRetryConnectionError: 500 or 503, not 502).
    assert_eq!(
        fetch(&c, env.addr, "/fault/retried/reset").await,
        Got::Complete(
            StatusCode::SERVICE_UNAVAILABLE,
            "backend unreachable\n".into()
        )
    );

    stop.store(true, Ordering::Relaxed);
    let (ok, other) = steady.await.unwrap();
    assert!(other.is_empty(), "the steady route saw {other:?}");
    assert!(ok > 10, "the steady client ran ({ok} requests)");
    assert_eq!(PANICS.load(Ordering::Relaxed), 0, "a task panicked");
}

#[tokio::test]
async fn an_endpoint_that_refuses_connections_is_passed_over_for_another() {
    count_panics();
    let env = env(&[]).await;
    let c = common::client();
    // Without a retry policy: each request that met the gone endpoint
    // (about half of them, chosen at random) would be a 503.
    for n in 0..40 {
        match fetch(&c, env.addr, "/halfgone").await {
            Got::Complete(s, _) if s == 200 => {}
            g => panic!("request {n}: {g:?}"),
        }
    }
    // A Service whose only endpoint refuses still answers 503 at once.
    match fetch(&c, env.addr, "/refused").await {
        Got::Complete(s, _) => assert_eq!(s, 503),
        g => panic!("{g:?}"),
    }
    assert_eq!(PANICS.load(Ordering::Relaxed), 0, "a task panicked");
}

#[tokio::test]
async fn endpoint_churn_under_load_loses_no_request() {
    count_panics();
    let mut servers = Vec::new();
    for n in 0..2 {
        servers.push(
            EchoServer::start(
                EchoIdentity::new("default", "churn", n),
                "127.0.0.1:0".parse().unwrap(),
            )
            .await
            .unwrap(),
        );
    }
    let ports = |s: &[EchoServer]| s.iter().map(|e| e.addr().port()).collect::<Vec<_>>();
    let mut env = env(&ports(&servers)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let steady = steady_client(env.addr, stop.clone());
    let mut churners = Vec::new();
    for _ in 0..2 {
        let (addr, stop) = (env.addr, stop.clone());
        churners.push(tokio::spawn(async move {
            let c = common::client();
            let (mut ok, mut other) = (0u64, Vec::new());
            while !stop.load(Ordering::Relaxed) {
                match fetch(&c, addr, "/churn/x").await {
                    Got::Complete(s, _) if s == 200 => ok += 1,
                    g => other.push(format!("{g:?}")),
                }
            }
            (ok, other)
        }));
    }
    // Each round a new endpoint joins, the oldest leaves the slice, and its
    // server stops a moment later, as a terminating pod does.
    for n in 2..12 {
        servers.push(
            EchoServer::start(
                EchoIdentity::new("default", "churn", n),
                "127.0.0.1:0".parse().unwrap(),
            )
            .await
            .unwrap(),
        );
        let leaving = servers.remove(0);
        let manifest = manifest(env.steady, env.faulty, env.refusing, &ports(&servers));
        assert_eq!(
            env.rt.apply(snapshot(&manifest)).await,
            ReloadOutcome::Applied
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
        drop(leaving);
    }
    stop.store(true, Ordering::Relaxed);
    let (ok, other) = steady.await.unwrap();
    assert!(other.is_empty(), "the steady route saw {other:?}");
    assert!(ok > 10, "{ok}");
    let mut churned = 0;
    for c in churners {
        let (ok, other) = c.await.unwrap();
        assert!(other.is_empty(), "the churning route saw {other:?}");
        churned += ok;
    }
    assert!(churned > 20, "{churned}");
    assert_eq!(env.rt.proxy().config().generation, 11);
    assert_eq!(PANICS.load(Ordering::Relaxed), 0, "a task panicked");
}
