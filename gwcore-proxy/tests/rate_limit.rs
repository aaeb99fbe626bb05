//! RateLimitPolicy over the wire, with gwcore's own plug-ins
//! (`first_party::plugins`): requests pass until the bucket is empty, then
//! 429 with `Retry-After`; buckets per rule, per client address and per
//! header value are apart; a bucket refills with time; buckets outlive a
//! reload that leaves their policy as it was; `/metrics` counts both.

mod common;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use gwcore_proxy::first_party;
use gwcore_proxy::provider::Runtime;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};

const ROUTE: &str = r#"---
apiVersion: v1
kind: Service
metadata: {name: app, namespace: default}
spec: {ports: [{port: 8080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: app, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - name: limited
    matches: [{path: {type: PathPrefix, value: /limited}}]
    backendRefs: [{name: app, port: 8080}]
  - name: by-client
    matches: [{path: {type: PathPrefix, value: /by-client}}]
    backendRefs: [{name: app, port: 8080}]
  - name: by-header
    matches: [{path: {type: PathPrefix, value: /by-header}}]
    backendRefs: [{name: app, port: 8080}]
  - name: refills
    matches: [{path: {type: PathPrefix, value: /refills}}]
    backendRefs: [{name: app, port: 8080}]
  - backendRefs: [{name: app, port: 8080}]
"#;

/// A RateLimitPolicy `name` on the rule `rule` of route `app`.
fn policy(name: &str, rule: &str, limits: &str) -> String {
    format!(
        "---\napiVersion: policy.gwcore.dev/v1alpha1\nkind: RateLimitPolicy\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: app, sectionName: {rule}}}]\n  limits: {limits}\n"
    )
}

fn policies() -> String {
    [
        policy("three-a-minute", "limited", "[{requests: 3, unit: Minute}]"),
        policy(
            "per-client",
            "by-client",
            "[{requests: 2, unit: Minute, key: {type: ClientAddress}}]",
        ),
        policy(
            "per-tenant",
            "by-header",
            "[{requests: 2, unit: Minute, key: {type: Header, header: x-tenant}}]",
        ),
        // A token every 250 ms, two at once.
        policy(
            "refills",
            "refills",
            "[{requests: 4, interval: 1s, burst: 2}]",
        ),
    ]
    .concat()
}

fn snapshot(manifest: &str) -> gwcore::Snapshot {
    let plugins = first_party::plugins();
    let loaded = gwcore::load::load_str_extended(
        "rate-limit.yaml",
        manifest,
        gwcore::load::Limits::default(),
        plugins.extensions(),
    );
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    loaded.to_snapshot()
}

async fn start(manifest: &str) -> Runtime {
    let opts = {
        let mut o = common::options(true);
        o.plugins = first_party::plugins();
        o
    };
    Runtime::from_snapshot(snapshot(manifest), opts)
        .await
        .expect("start")
}

fn manifest() -> String {
    format!("{}{ROUTE}{}", common::HTTP_GATEWAY, policies())
}

/// One GET over a new HTTP/1.1 connection from `from` (a loopback
/// address) to `addr`, with `headers`.
async fn get_from(
    from: IpAddr,
    addr: SocketAddr,
    path: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, http::HeaderMap, String) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::new(from, 0)).unwrap();
    let tcp = socket.connect(addr).await.expect("connect");
    let (mut send, conn) = hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::get(path).header("host", "a.example");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = send
        .send_request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .expect("request");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).into_owned(),
    )
}

const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

async fn get(addr: SocketAddr, path: &str) -> (StatusCode, http::HeaderMap, String) {
    get_from(LOCAL, addr, path, &[]).await
}

/// Statuses of `n` requests to `path`, one after the other.
async fn statuses(addr: SocketAddr, path: &str, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(get(addr, path).await.0.as_u16());
    }
    out
}

async fn metrics(rt: &Runtime) -> String {
    let req = Request::get("/metrics").body(()).unwrap();
    let resp = gwcore_proxy::admin::answer(rt.proxy(), &req);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8_lossy(&body).into_owned()
}

#[tokio::test]
async fn requests_pass_until_the_bucket_is_empty_then_429_with_retry_after() {
    let rt = start(&manifest()).await;
    let addr = rt.local_addr(80).expect("port 80");
    assert_eq!(statuses(addr, "/limited", 3).await, [200, 200, 200]);
    let (status, headers, body) = get(addr, "/limited/x").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        !body.contains("\"service\""),
        "the backend answered: {body}"
    );
    // A token comes every 20 s: the client is told to wait that long,
    // in whole seconds rounded up.
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((15..=20).contains(&retry), "Retry-After {retry}");
    assert_eq!(headers["ratelimit-limit"], "3");
    assert_eq!(headers["ratelimit-remaining"], "0");
    // The other rules of the route are not touched by this rule's limit.
    assert_eq!(statuses(addr, "/elsewhere", 6).await, [200; 6]);
    // HTTP/2 requests take from the same bucket.
    let (status, _) = common::h2c_get(addr, "a.example", "/limited").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);

    let text = metrics(&rt).await;
    for line in [
        "gwcore_rate_limit_requests_total{policy=\"default/three-a-minute\",result=\"allowed\"} 3\n",
        "gwcore_rate_limit_requests_total{policy=\"default/three-a-minute\",result=\"limited\"} 2\n",
    ] {
        assert!(text.contains(line), "no {line} in\n{text}");
    }
    rt.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn client_addresses_and_header_values_have_buckets_of_their_own() {
    let rt = start(&manifest()).await;
    let addr = rt.local_addr(80).expect("port 80");
    let other: IpAddr = "127.0.0.2".parse().unwrap();
    for _ in 0..2 {
        assert_eq!(get_from(LOCAL, addr, "/by-client", &[]).await.0, 200);
    }
    assert_eq!(get_from(LOCAL, addr, "/by-client", &[]).await.0, 429);
    // Another address still has its two.
    for _ in 0..2 {
        assert_eq!(get_from(other, addr, "/by-client", &[]).await.0, 200);
    }
    assert_eq!(get_from(other, addr, "/by-client", &[]).await.0, 429);

    let tenant = |t: &'static str| [("x-tenant", t)];
    for _ in 0..2 {
        assert_eq!(
            get_from(LOCAL, addr, "/by-header", &tenant("a")).await.0,
            200
        );
    }
    assert_eq!(
        get_from(LOCAL, addr, "/by-header", &tenant("a")).await.0,
        429
    );
    // Another value from the same address has its own bucket.
    assert_eq!(
        get_from(LOCAL, addr, "/by-header", &tenant("b")).await.0,
        200
    );
    // Without the header, requests share one bucket: leaving the header
    // out does not escape the limit.
    assert_eq!(get_from(LOCAL, addr, "/by-header", &[]).await.0, 200);
    assert_eq!(get_from(other, addr, "/by-header", &[]).await.0, 200);
    assert_eq!(get_from(LOCAL, addr, "/by-header", &[]).await.0, 429);
    rt.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn an_empty_bucket_refills_with_time() {
    let rt = start(&manifest()).await;
    let addr = rt.local_addr(80).expect("port 80");
    // Two at once (the burst), then one every 250 ms: within a few
    // requests one is refused, however slow this machine is.
    let mut passed = 0;
    loop {
        let (status, headers, _) = get(addr, "/refills").await;
        if status == StatusCode::TOO_MANY_REQUESTS {
            assert_eq!(headers["retry-after"], "1");
            break;
        }
        assert_eq!(status, StatusCode::OK);
        passed += 1;
        assert!(passed < 20, "never limited");
    }
    assert!(passed >= 2, "the burst of 2 passed first: {passed}");
    // Well past a token's time, one passes again.
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(get(addr, "/refills").await.0, StatusCode::OK);
    rt.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn buckets_outlive_reloads_that_leave_their_policy_as_it_was() {
    let mut rt = start(&manifest()).await;
    let addr = rt.local_addr(80).expect("port 80");
    assert_eq!(statuses(addr, "/limited", 4).await, [200, 200, 200, 429]);

    // An unrelated change (another route) is served; the limit is not
    // reset by it.
    let unrelated = format!(
        "{}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: more, namespace: default}}\nspec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [b.example]\n  rules: [{{backendRefs: [{{name: app, port: 8080}}]}}]\n",
        manifest()
    );
    let outcome = rt.apply(snapshot(&unrelated)).await;
    assert_eq!(outcome, gwcore_proxy::metrics::ReloadOutcome::Applied);
    assert_eq!(statuses(addr, "/limited", 2).await, [429, 429]);

    // A changed limit starts with a full bucket.
    let changed = unrelated.replace(
        "[{requests: 3, unit: Minute}]",
        "[{requests: 5, unit: Minute}]",
    );
    assert_ne!(changed, unrelated);
    let outcome = rt.apply(snapshot(&changed)).await;
    assert_eq!(outcome, gwcore_proxy::metrics::ReloadOutcome::Applied);
    assert_eq!(
        statuses(addr, "/limited", 6).await,
        [200, 200, 200, 200, 200, 429]
    );
    rt.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn the_acme_careers_route_with_the_example_policy() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/rate-limit");
    let opts = {
        let mut o = common::options(true);
        o.controller_name = "example.com/gateway-controller".into();
        o.plugins = first_party::plugins();
        o
    };
    let rt = Runtime::start(vec![common::acme_dir(), dir], opts)
        .await
        .expect("start");
    let addr = rt.local_addr(80).expect("port 80");
    // Five a minute for each client address.
    assert_eq!(statuses(addr, "/careers", 5).await, [200; 5]);
    let (status, headers, _) = get(addr, "/careers").await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "12");
    assert_eq!(headers["ratelimit-limit"], "5");
    assert_eq!(headers["ratelimit-reset"], "60");
    let other: IpAddr = "127.0.0.3".parse().unwrap();
    assert_eq!(get_from(other, addr, "/careers", &[]).await.0, 200);
    // product is not limited; hr is still refused.
    assert_eq!(statuses(addr, "/product/", 8).await, [200; 8]);
    assert_eq!(get(addr, "/hr").await.0, StatusCode::NOT_FOUND);
    rt.shutdown(Duration::from_secs(1)).await;
}
