//! Thread-per-core serving (`gwcore_proxy::server::set_workers`): every
//! worker takes connections on a socket of its own sharing the port, a
//! second server cannot join them, a reload that drops the port closes
//! every one of them, and a graceful shutdown drains the requests of every
//! worker and ends their threads.
//!
//! The workers' threads are found by name in `/proc/self/task`, so the
//! tests of this file take turns (`TURN`) and each sees its own.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use gwcore_proxy::echo::Echoed;
use gwcore_proxy::metrics::ReloadOutcome;
use gwcore_proxy::provider::Runtime;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use common::{HTTP_GATEWAY, acme_dir};

const WORKERS: usize = 2;

static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The worker threads of this process, by thread id, with the times each
/// went to sleep waiting for work (`voluntary_ctxt_switches`): one more
/// per wake-up to serve something.
fn worker_wakeups() -> BTreeMap<u32, u64> {
    let mut out = BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task").unwrap().flatten() {
        let dir = task.path();
        let Ok(status) = std::fs::read_to_string(dir.join("status")) else {
            continue; // ended meanwhile
        };
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_string())
        };
        if !field("Name:").is_some_and(|n| n.starts_with("gwcore-worker-")) {
            continue;
        }
        let tid = task.file_name().to_str().unwrap().parse().unwrap();
        let switches = field("voluntary_ctxt_switches:").unwrap().parse().unwrap();
        out.insert(tid, switches);
    }
    out
}

/// The worker threads that started after `before` was read.
fn new_workers(before: &BTreeMap<u32, u64>) -> BTreeMap<u32, u64> {
    let mut now = worker_wakeups();
    now.retain(|tid, _| !before.contains_key(tid));
    now
}

/// The worker threads that started after `before` was read, once all
/// `WORKERS` are running and have waited for work once.
async fn parked_workers(before: &BTreeMap<u32, u64>) -> BTreeMap<u32, u64> {
    for _ in 0..500 {
        let now = new_workers(before);
        if now.len() == WORKERS && now.values().all(|n| *n > 0) {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("not {WORKERS} worker threads: {:?}", new_workers(before));
}

/// Sockets listening on `port` of 127.0.0.1 (`/proc/net/tcp`, state 0A).
fn listening_sockets(port: u16) -> usize {
    let local = format!("0100007F:{port:04X}");
    std::fs::read_to_string("/proc/net/tcp")
        .unwrap()
        .lines()
        .skip(1)
        .filter(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f[1] == local && f[3] == "0A"
        })
        .count()
}

/// One HTTP/1.1 request on a connection of its own; returns the status
/// line and the body.
async fn request(addr: SocketAddr, path: String) -> (String, Vec<u8>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.unwrap();
    let at = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a response head");
    let head = String::from_utf8_lossy(&buf[..at]).to_string();
    let status = head.lines().next().unwrap().to_string();
    (status, buf[at + 4..].to_vec())
}

fn echoed_path(body: &[u8]) -> String {
    let e: Echoed = serde_json::from_slice(body)
        .unwrap_or_else(|err| panic!("not echo JSON ({err}): {:?}", String::from_utf8_lossy(body)));
    e.path
}

#[tokio::test]
async fn every_worker_has_a_socket_on_the_port_and_serves_connections() {
    let _turn = TURN.lock().await;
    gwcore_proxy::server::set_workers(WORKERS);
    let before = worker_wakeups();
    let rt = Runtime::start(vec![acme_dir()], common::options(true))
        .await
        .unwrap();
    let addr = rt.local_addr(80).unwrap();
    assert_eq!(
        listening_sockets(addr.port()),
        WORKERS,
        "one SO_REUSEPORT socket per worker on {addr}"
    );
    let idle = parked_workers(&before).await;

    // 64 connections: the kernel spreads them over the sockets by their
    // addresses; that all 64 go to one has a chance of 2^-63.
    let requests: Vec<_> = (0..64)
        .map(|i| {
            let path = if i % 2 == 0 {
                "/careers/a"
            } else {
                "/product/b"
            };
            tokio::spawn(request(addr, path.into()))
        })
        .collect();
    for (i, r) in requests.into_iter().enumerate() {
        let (status, body) = r.await.unwrap();
        assert_eq!(status, "HTTP/1.1 200 OK", "request {i}");
        assert!(echoed_path(&body).ends_with(if i % 2 == 0 { "/a" } else { "/b" }));
    }
    let served = new_workers(&before);
    for (tid, n) in &served {
        assert!(
            *n >= idle[tid] + 2,
            "worker thread {tid} woke {} times for 64 connections: {idle:?} -> {served:?}",
            n - idle[tid]
        );
    }
    drop(rt);
}

#[tokio::test]
async fn a_second_server_on_the_same_address_is_refused_not_let_share_it() {
    let _turn = TURN.lock().await;
    gwcore_proxy::server::set_workers(WORKERS);
    let first = Runtime::start(vec![acme_dir()], common::options(true))
        .await
        .unwrap();
    let addr = first.local_addr(80).unwrap();
    assert_eq!(listening_sockets(addr.port()), WORKERS);

    // Another server told to listen on the same address: SO_REUSEPORT
    // would let its sockets join the first's and take half of the
    // connections.
    let mut opts = common::options(true);
    opts.listen.map.insert(80, addr);
    let second = Runtime::start(vec![acme_dir()], opts).await.unwrap();
    assert_eq!(
        second.local_addr(80),
        None,
        "the second server has no port 80"
    );
    let errors = second.proxy().listener_errors();
    let why = errors.values().next().expect("port 80 refused");
    assert!(
        why.contains(&addr.to_string()) && why.contains("another process listens"),
        "{errors:?}"
    );
    assert!(!second.proxy().is_ready());
    assert_eq!(
        listening_sockets(addr.port()),
        WORKERS,
        "only the first server's sockets listen on {addr}"
    );
    for i in 0..16 {
        let (status, _) = request(addr, format!("/careers/{i}")).await;
        assert_eq!(status, "HTTP/1.1 200 OK", "request {i}");
    }
    drop(second);
    drop(first);
}

#[tokio::test]
async fn a_reload_without_the_port_closes_every_workers_socket() {
    let _turn = TURN.lock().await;
    gwcore_proxy::server::set_workers(WORKERS);
    let route = r#"---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec: {ports: [{port: 8080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: all, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{name: echo, port: 8080}]
"#;
    let snapshot = |yaml: &str| {
        let loaded = gwcore::load::load_str("test.yaml", yaml);
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        gwcore::Snapshot::from_objects(loaded.objects.into_iter().map(|(o, _)| o))
    };
    let mut rt = Runtime::from_snapshot(
        snapshot(&format!("{HTTP_GATEWAY}{route}")),
        common::options(true),
    )
    .await
    .unwrap();
    let addr = rt.local_addr(80).unwrap();
    assert_eq!(request(addr, "/x".into()).await.0, "HTTP/1.1 200 OK");
    assert_eq!(listening_sockets(addr.port()), WORKERS);

    // The Gateway goes away, its port with it.
    let class_only = HTTP_GATEWAY.split("---").next().unwrap();
    assert_eq!(rt.apply(snapshot(class_only)).await, ReloadOutcome::Applied);
    assert_eq!(rt.local_addr(80), None);
    // Aborted accept loops close their sockets on their workers' threads.
    for _ in 0..100 {
        if listening_sockets(addr.port()) == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(listening_sockets(addr.port()), 0, "a socket still listens");
    // With one socket left open half of these would be taken.
    for _ in 0..16 {
        assert!(TcpStream::connect(addr).await.is_err());
    }
    rt.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn graceful_shutdown_drains_every_worker_and_ends_their_threads() {
    let _turn = TURN.lock().await;
    gwcore_proxy::server::set_workers(WORKERS);
    let before = worker_wakeups();
    let rt = Runtime::start(vec![acme_dir()], common::options(true))
        .await
        .unwrap();
    let addr = rt.local_addr(80).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner =
        tokio::spawn(
            rt.run_until(Duration::from_millis(100), Duration::from_secs(5), async {
                let _ = stop_rx.await;
            }),
        );
    // 16 slow requests on connections of their own, spread over both
    // workers by the kernel (all 16 on one: a chance of 2^-15).
    let slow: Vec<_> = (0..16)
        .map(|i| tokio::spawn(request(addr, format!("/careers/{i}?delay=1500ms"))))
        .collect();
    // All in flight (accepted, waiting for the backend) before the stop.
    tokio::time::sleep(Duration::from_millis(700)).await;
    stop_tx.send(()).unwrap();
    for (i, r) in slow.into_iter().enumerate() {
        let (status, body) = r.await.unwrap();
        assert_eq!(status, "HTTP/1.1 200 OK", "in-flight request {i} completes");
        assert_eq!(echoed_path(&body), format!("/careers/{i}?delay=1500ms"));
    }
    tokio::time::timeout(Duration::from_secs(5), runner)
        .await
        .unwrap()
        .unwrap();
    for _ in 0..16 {
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "no worker accepts after shutdown"
        );
    }
    for _ in 0..100 {
        if new_workers(&before).is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        new_workers(&before),
        BTreeMap::new(),
        "worker threads left running"
    );
}
