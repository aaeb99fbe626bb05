//! Load balancing over the wire, with gwcore's own plug-ins
//! (`first_party::plugins`, whose `LoadBalancerPolicy` picker is
//! `gwcore_proxy::balance`): three backends on loopback behind one
//! Service each test; round robin (no policy) takes them in turn, a
//! consistent hash on a header keeps a key on one endpoint, an endpoint
//! answering 500 is ejected while the others serve and comes back after
//! its ejection, and a reload that keeps the endpoints keeps the turn; an
//! endpoint failing its active health checks (`GET /healthz`) is passed
//! over within a few intervals and back once they pass, probes go on
//! across a reload that keeps the policy and stop with one that drops it.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gwcore_proxy::first_party;
use gwcore_proxy::provider::Runtime;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A backend that answers every request with its name and the status it
/// is set to (200 at first), closing the connection after each; requests
/// for `/healthz` get the health status it is set to (200 at first) and
/// are counted.
struct Backend {
    name: &'static str,
    port: u16,
    status: Arc<AtomicU16>,
    health: Arc<AtomicU16>,
    probes: Arc<AtomicUsize>,
}

impl Backend {
    async fn start(name: &'static str) -> Backend {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let status = Arc::new(AtomicU16::new(200));
        let health = Arc::new(AtomicU16::new(200));
        let probes = Arc::new(AtomicUsize::new(0));
        let (answer, health_answer, probed) = (status.clone(), health.clone(), probes.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    continue;
                };
                let (answer, health_answer, probed) =
                    (answer.clone(), health_answer.clone(), probed.clone());
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    let status = if got.starts_with(b"GET /healthz ") {
                        probed.fetch_add(1, Ordering::Relaxed);
                        health_answer.load(Ordering::Relaxed)
                    } else {
                        answer.load(Ordering::Relaxed)
                    };
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{name}",
                        name.len()
                    );
                    let _ = s.write_all(head.as_bytes()).await;
                });
            }
        });
        Backend {
            name,
            port,
            status,
            health,
            probes,
        }
    }
}

async fn backends() -> [Backend; 3] {
    [
        Backend::start("a").await,
        Backend::start("b").await,
        Backend::start("c").await,
    ]
}

/// Service `app` (port 80) with the backends as its endpoints, a route
/// sending every path to it, and `extra` (a policy).
fn manifest(backends: &[Backend], extra: &str) -> String {
    let slices: String = backends
        .iter()
        .map(|b| {
            format!(
                "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: app-{}, namespace: default, labels: {{kubernetes.io/service-name: app}}}}\naddressType: IPv4\nports: [{{port: {}}}]\nendpoints: [{{addresses: [127.0.0.1]}}]\n",
                b.name, b.port
            )
        })
        .collect();
    format!(
        "{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: app, namespace: default}}\nspec: {{ports: [{{port: 80}}]}}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: app, namespace: default}}\nspec:\n  parentRefs: [{{name: gw}}]\n  rules: [{{backendRefs: [{{name: app, port: 80}}]}}]\n{slices}{extra}",
        common::HTTP_GATEWAY
    )
}

/// A `LoadBalancerPolicy` on Service `app` with `spec` (besides its
/// targetRefs).
fn policy(spec: &str) -> String {
    format!(
        "---\napiVersion: policy.gwcore.dev/v1alpha1\nkind: LoadBalancerPolicy\nmetadata: {{name: lb, namespace: default}}\nspec:\n  targetRefs: [{{group: \"\", kind: Service, name: app}}]\n{spec}\n"
    )
}

fn snapshot(manifest: &str) -> gwcore::Snapshot {
    let plugins = first_party::plugins();
    let loaded = gwcore::load::load_str_extended(
        "load-balancing.yaml",
        manifest,
        gwcore::load::Limits::default(),
        plugins.extensions(),
    );
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    loaded.to_snapshot()
}

async fn start(manifest: &str) -> (Runtime, SocketAddr) {
    let opts = {
        let mut o = common::options(false);
        o.plugins = first_party::plugins();
        o
    };
    let rt = Runtime::from_snapshot(snapshot(manifest), opts)
        .await
        .expect("start");
    let addr = rt.local_addr(80).unwrap();
    (rt, addr)
}

/// One GET with `headers`: the status and which backend answered.
async fn get(addr: SocketAddr, headers: &[(&str, &str)]) -> (StatusCode, String) {
    let client = common::client();
    let mut req = Request::get(format!("http://{addr}/")).header("host", "a.example");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .expect("request");
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// Which backends answered `n` requests, in order.
async fn answered_by(addr: SocketAddr, n: usize) -> Vec<String> {
    let mut out = Vec::new();
    for _ in 0..n {
        let (status, name) = get(addr, &[]).await;
        assert_eq!(status, StatusCode::OK, "{name}");
        out.push(name);
    }
    out
}

/// Whether `seq` takes every one of `names` in turn, always in the same
/// order.
fn in_turn(seq: &[String], names: usize) -> bool {
    let first: Vec<&String> = seq.iter().take(names).collect();
    first.iter().collect::<BTreeSet<_>>().len() == names
        && seq.iter().enumerate().all(|(i, s)| s == first[i % names])
}

#[tokio::test]
async fn without_a_policy_requests_take_the_endpoints_in_turn_across_a_reload() {
    let b = backends().await;
    let (mut rt, addr) = start(&manifest(&b, "")).await;
    let seq = answered_by(addr, 12).await;
    assert!(in_turn(&seq, 3), "{seq:?}");
    // A reload that leaves the endpoints as they were (a policy on
    // another Service): the turn goes on where it was.
    let other = "---\napiVersion: policy.gwcore.dev/v1alpha1\nkind: LoadBalancerPolicy\nmetadata: {name: other, namespace: default}\nspec:\n  targetRefs: [{group: \"\", kind: Service, name: elsewhere}]\n  algorithm: LeastRequest\n";
    rt.apply(snapshot(&manifest(&b, other))).await;
    let more = answered_by(addr, 6).await;
    let all: Vec<String> = seq.into_iter().chain(more).collect();
    assert!(in_turn(&all, 3), "{all:?}");
}

#[tokio::test]
async fn a_consistent_hash_on_a_header_keeps_each_key_on_one_endpoint() {
    let b = backends().await;
    let (_rt, addr) = start(&manifest(
        &b,
        &policy(
            "  algorithm: ConsistentHash\n  consistentHash: {key: {type: Header, header: x-user}}",
        ),
    ))
    .await;
    let mut by_user = BTreeMap::new();
    for user in 0..20 {
        let user = format!("user-{user}");
        let mut seen = BTreeSet::new();
        for _ in 0..5 {
            let (status, name) = get(addr, &[("x-user", &user)]).await;
            assert_eq!(status, StatusCode::OK);
            seen.insert(name);
        }
        assert_eq!(seen.len(), 1, "{user} went to {seen:?}");
        by_user.insert(user, seen.into_iter().next().unwrap());
    }
    let used: BTreeSet<&String> = by_user.values().collect();
    assert!(used.len() > 1, "every key on one endpoint: {by_user:?}");
}

#[tokio::test]
async fn an_endpoint_answering_500_is_ejected_then_comes_back() {
    let b = backends().await;
    let (_rt, addr) = start(&manifest(
        &b,
        &policy(
            "  outlierDetection: {consecutive5xx: 2, baseEjectionTime: 1s, maxEjectedPercent: 50}",
        ),
    ))
    .await;
    b[2].status.store(500, Ordering::Relaxed);
    // Round robin: c answers 500 twice within six requests, then is out.
    let mut errors = 0;
    for _ in 0..6 {
        let (status, name) = get(addr, &[]).await;
        if status == StatusCode::INTERNAL_SERVER_ERROR {
            assert_eq!(name, "c");
            errors += 1;
        }
    }
    assert_eq!(errors, 2);
    let during = answered_by(addr, 20).await;
    assert!(!during.iter().any(|n| n == "c"), "{during:?}");
    assert!(during.iter().any(|n| n == "a") && during.iter().any(|n| n == "b"));
    // Healthy again; after its ejection (1 s) it takes requests again.
    b[2].status.store(200, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let after = answered_by(addr, 6).await;
    assert!(in_turn(&after, 3), "{after:?}");
}

#[tokio::test]
async fn the_share_keeps_the_last_endpoints_in_rotation() {
    let b = backends().await;
    let (_rt, addr) = start(&manifest(
        &b,
        &policy(
            "  outlierDetection: {consecutive5xx: 1, baseEjectionTime: 1m, maxEjectedPercent: 50}",
        ),
    ))
    .await;
    // Every endpoint fails; at 50 % of three, one is ejected at most.
    for backend in &b {
        backend.status.store(503, Ordering::Relaxed);
    }
    for _ in 0..3 {
        assert_eq!(get(addr, &[]).await.0, StatusCode::SERVICE_UNAVAILABLE);
    }
    let mut names = BTreeSet::new();
    for _ in 0..12 {
        let (status, name) = get(addr, &[]).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        names.insert(name);
    }
    assert_eq!(names.len(), 2, "one ejected, two still tried: {names:?}");
}

/// A health check of `/healthz` every 100 ms, two in a row either way.
const HEALTH_CHECK: &str = "  healthCheck: {path: /healthz, interval: 100ms, timeout: 100ms, unhealthyThreshold: 2, healthyThreshold: 2}";

/// How long after its health changes requests must follow: two intervals
/// and the probes' timeouts, with room for a loaded machine.
const HEALTH_BOUND: Duration = Duration::from_secs(3);

/// Sends requests until `done` holds for a run of nine answers, or fails
/// after `HEALTH_BOUND`; returns how long it took.
async fn until(addr: SocketAddr, done: impl Fn(&[String]) -> bool) -> Duration {
    let start = Instant::now();
    loop {
        let seq = answered_by(addr, 9).await;
        if done(&seq) {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < HEALTH_BOUND,
            "not within {HEALTH_BOUND:?}: {seq:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of `gwcore_health_checks_total` for policy `default/lb` and
/// `result`, as `/metrics` shows it.
async fn health_metric(rt: &Runtime, result: &str) -> u64 {
    let req = Request::get("/metrics").body(()).unwrap();
    let body = gwcore_proxy::admin::answer(rt.proxy(), &req)
        .into_body()
        .collect()
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8_lossy(&body).into_owned();
    let series =
        format!("gwcore_health_checks_total{{policy=\"default/lb\",result=\"{result}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.parse().unwrap())
}

#[tokio::test]
async fn an_endpoint_failing_its_health_checks_is_passed_over_then_comes_back() {
    let b = backends().await;
    let (rt, addr) = start(&manifest(&b, &policy(HEALTH_CHECK))).await;
    // The first request starts the probes; all three are healthy.
    let seq = answered_by(addr, 6).await;
    assert!(in_turn(&seq, 3), "{seq:?}");
    // c's health path fails (its other answers stay 200: this is not
    // outlier detection): requests stop reaching it.
    b[2].health.store(503, Ordering::Relaxed);
    let took = until(addr, |seq| {
        !seq.iter().any(|n| n == "c")
            && seq.iter().any(|n| n == "a")
            && seq.iter().any(|n| n == "b")
    })
    .await;
    eprintln!("passed over after {took:?}");
    assert_eq!(health_metric(&rt, "unhealthy").await, 1);
    assert!(health_metric(&rt, "failed").await >= 2);
    // It recovers: requests come back to it.
    b[2].health.store(200, Ordering::Relaxed);
    let took = until(addr, |seq| in_turn(seq, 3)).await;
    eprintln!("back after {took:?}");
    assert_eq!(health_metric(&rt, "healthy").await, 1);
    assert!(health_metric(&rt, "passed").await > 0);
}

#[tokio::test]
async fn when_every_endpoint_fails_its_health_checks_requests_go_to_all() {
    let b = backends().await;
    let (_rt, addr) = start(&manifest(&b, &policy(HEALTH_CHECK))).await;
    answered_by(addr, 3).await;
    b[0].health.store(503, Ordering::Relaxed);
    b[1].health.store(503, Ordering::Relaxed);
    until(addr, |seq| seq.iter().all(|n| n == "c")).await;
    // The last one fails too: rather than none, all of them.
    b[2].health.store(503, Ordering::Relaxed);
    until(addr, |seq| in_turn(seq, 3)).await;
}

#[tokio::test]
async fn probes_go_on_across_a_reload_that_keeps_the_policy_and_stop_when_it_goes() {
    let b = backends().await;
    let with_check = manifest(&b, &policy(HEALTH_CHECK));
    let (mut rt, addr) = start(&with_check).await;
    answered_by(addr, 3).await;
    b[2].health.store(503, Ordering::Relaxed);
    until(addr, |seq| !seq.iter().any(|n| n == "c")).await;
    // A reload that keeps the policy and the endpoints (a policy on
    // another Service): c stays passed over, and with no request since,
    // the probes go on.
    let other = "---\napiVersion: policy.gwcore.dev/v1alpha1\nkind: LoadBalancerPolicy\nmetadata: {name: other, namespace: default}\nspec:\n  targetRefs: [{group: \"\", kind: Service, name: elsewhere}]\n  algorithm: LeastRequest\n";
    rt.apply(snapshot(&format!("{with_check}{other}"))).await;
    let before = b[0].probes.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(
        b[0].probes.load(Ordering::Relaxed) >= before + 2,
        "probes stopped with a reload that kept the policy"
    );
    let seq = answered_by(addr, 6).await;
    assert!(!seq.iter().any(|n| n == "c"), "{seq:?}");
    // A reload without the policy: the probes stop, and c serves again.
    rt.apply(snapshot(&manifest(&b, ""))).await;
    let seq = answered_by(addr, 6).await;
    assert!(in_turn(&seq, 3), "{seq:?}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let stopped = b[0].probes.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        b[0].probes.load(Ordering::Relaxed),
        stopped,
        "probes went on after the policy went"
    );
}

#[test]
fn the_example_policy_is_accepted() {
    let out = common::example_statuses("load-balancing/shop.yaml");
    common::assert_policy_accepted(&out, gwcore::policies::load_balancer::KIND, "shop", "cart");
}
