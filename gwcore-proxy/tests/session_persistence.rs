//! Session persistence (GEP-1619) over the wire, with gwcore's own
//! plug-ins (`first_party::plugins`): backends on loopback behind
//! Services, a client that keeps the cookie or header the gateway hands
//! out, and reloads that change the endpoints under a live session.

mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gwcore_proxy::first_party;
use gwcore_proxy::provider::Runtime;
use gwcore_proxy::session::SessionKey;
use http::{HeaderMap, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// A backend answering every request with its name and `status`,
/// closing the connection after each; `hits` counts the requests.
struct Backend {
    name: String,
    port: u16,
    hits: Arc<AtomicUsize>,
}

impl Backend {
    async fn start(name: &str) -> Backend {
        Backend::answering(name, 200).await
    }

    async fn answering(name: &str, status: u16) -> Backend {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let body = name.to_owned();
        let hits = Arc::new(AtomicUsize::new(0));
        let count = hits.clone();
        tokio::spawn(async move {
            loop {
                let Ok((mut s, _)) = l.accept().await else {
                    continue;
                };
                let body = body.clone();
                let count = count.clone();
                tokio::spawn(async move {
                    let mut got = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    count.fetch_add(1, Ordering::Relaxed);
                    let head = format!(
                        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                        body.len()
                    );
                    let _ = s.write_all(head.as_bytes()).await;
                });
            }
        });
        Backend {
            name: name.to_owned(),
            port,
            hits,
        }
    }
}

async fn backends(service: &str, n: usize) -> Vec<Backend> {
    let mut out = Vec::new();
    for i in 0..n {
        out.push(Backend::start(&format!("{service}-{i}")).await);
    }
    out
}

/// Service `service` (port 80) with `endpoints` as its endpoints, one
/// EndpointSlice each.
fn service(service: &str, endpoints: &[&Backend]) -> String {
    let mut out = format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {service}, namespace: default}}\nspec: {{ports: [{{port: 80}}]}}\n"
    );
    for b in endpoints {
        out.push_str(&format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {}, namespace: default, labels: {{kubernetes.io/service-name: {service}}}}}\naddressType: IPv4\nports: [{{port: {}}}]\nendpoints: [{{addresses: [127.0.0.1]}}]\n",
            b.name, b.port
        ));
    }
    out
}

/// A route `app` whose one rule is `rule` (YAML flow mapping).
fn route(rule: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: app, namespace: default}}\nspec:\n  parentRefs: [{{name: gw}}]\n  rules: [{rule}]\n"
    )
}

/// An `XBackendTrafficPolicy` on Service `target` with `spec` (besides
/// its targetRefs, indented by two).
fn backend_policy(target: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.x-k8s.io/v1alpha1\nkind: XBackendTrafficPolicy\nmetadata: {{name: {target}-traffic, namespace: default}}\nspec:\n  targetRefs: [{{group: \"\", kind: Service, name: {target}}}]\n{spec}\n"
    )
}

fn snapshot(parts: &[String]) -> gwcore::Snapshot {
    let text = format!("{}{}", common::HTTP_GATEWAY, parts.concat());
    let plugins = first_party::plugins();
    let loaded = gwcore::load::load_str_extended(
        "sessions.yaml",
        &text,
        gwcore::load::Limits::default(),
        plugins.extensions(),
    );
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    loaded.to_snapshot()
}

async fn start_with(parts: &[String], key: Option<&SessionKey>) -> (Runtime, SocketAddr) {
    let mut o = common::options(false);
    o.plugins = match key {
        Some(k) => first_party::plugins().with_session_key(k),
        None => first_party::plugins(),
    };
    let rt = Runtime::from_snapshot(snapshot(parts), o)
        .await
        .expect("start");
    let addr = rt.local_addr(80).unwrap();
    (rt, addr)
}

async fn start(parts: &[String]) -> (Runtime, SocketAddr) {
    start_with(parts, None).await
}

/// One GET with `headers`: who answered, and the response's headers.
async fn get(addr: SocketAddr, headers: &[(&str, &str)]) -> (String, HeaderMap) {
    let client = common::client();
    let mut req = Request::get(format!("http://{addr}/")).header("host", "a.example");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .expect("request");
    assert_eq!(resp.status(), StatusCode::OK);
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (String::from_utf8_lossy(&body).into_owned(), parts.headers)
}

/// The `name=value` of the response's `Set-Cookie` for cookie `name`,
/// and the whole header.
fn set_cookie(headers: &HeaderMap, name: &str) -> Option<(String, String)> {
    headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|v| (v.split(';').next().unwrap().to_owned(), v.to_owned()))
}

/// A browser's view of one cookie: it keeps what the gateway last set.
struct Jar {
    name: String,
    cookie: Option<String>,
}

impl Jar {
    fn new(name: &str) -> Jar {
        Jar {
            name: name.to_owned(),
            cookie: None,
        }
    }

    /// One GET sending the cookie; whether the gateway set a new one.
    async fn get(&mut self, addr: SocketAddr) -> (String, bool) {
        let sent: Vec<(&str, &str)> = self
            .cookie
            .as_deref()
            .map(|c| ("cookie", c))
            .into_iter()
            .collect();
        let (who, headers) = get(addr, &sent).await;
        let set = set_cookie(&headers, &self.name);
        let changed = set.is_some();
        if let Some((c, _)) = set {
            self.cookie = Some(c);
        }
        (who, changed)
    }
}

/// Who answers `n` requests all sending `headers` (not updated).
async fn answered_by(addr: SocketAddr, headers: &[(&str, &str)], n: usize) -> BTreeSet<String> {
    let mut who = BTreeSet::new();
    for _ in 0..n {
        who.insert(get(addr, headers).await.0);
    }
    who
}

const COOKIE_RULE: &str = "{backendRefs: [{name: app, port: 80}], sessionPersistence: {type: Cookie, absoluteTimeout: 1h, cookie: {name: sid, lifetimeType: Permanent}}}";

#[tokio::test]
async fn a_cookie_session_stays_on_its_endpoint_while_others_come_and_go_and_moves_once_when_it_goes()
 {
    let b = backends("app", 4).await;
    let all: Vec<&Backend> = b.iter().collect();
    let parts = |endpoints: &[&Backend]| vec![service("app", endpoints), route(COOKIE_RULE)];
    let (mut rt, addr) = start(&parts(&all)).await;

    let mut jar = Jar::new("sid");
    let (first, set) = jar.get(addr).await;
    assert!(set, "the first answer begins a session");
    let (_, whole) = set_cookie(&get(addr, &[]).await.1, "sid").unwrap();
    assert!(whole.contains("; Path=/"), "{whole}");
    assert!(whole.contains("; Max-Age=3600"), "Permanent: {whole}");
    assert!(whole.contains("; HttpOnly"), "{whole}");
    assert!(!jar.cookie.as_ref().unwrap().contains("127.0.0.1"));
    let mine = b.iter().position(|x| x.name == first).unwrap();
    let others: Vec<&Backend> = b.iter().filter(|x| x.name != first).collect();

    // 1 000 requests; every 50 the endpoints change: two of the other three
    // come and go (each set of them in turn), the session's stays.
    let mut moves = 0;
    for i in 0..1_000 {
        if i % 50 == 0 && i > 0 {
            let mut listed = vec![&b[mine]];
            match (i / 50) % 4 {
                0 => listed.extend([others[0], others[1], others[2]]),
                1 => listed.push(others[2]),
                2 => listed.extend([others[0], others[1]]),
                _ => {}
            }
            rt.apply(snapshot(&parts(&listed))).await;
        }
        let (who, set) = jar.get(addr).await;
        assert_eq!(who, first, "request {i} left the session's endpoint");
        if set {
            moves += 1;
        }
    }
    assert_eq!(moves, 0, "a kept session needs no new cookie");

    // Its endpoint leaves: the session moves, once, and stays where it went.
    rt.apply(snapshot(&parts(&[others[0], others[1], others[2]])))
        .await;
    let (moved_to, set) = jar.get(addr).await;
    assert_ne!(moved_to, first);
    assert!(set, "a moved session gets a new cookie");
    for i in 0..100 {
        let (who, set) = jar.get(addr).await;
        assert_eq!(who, moved_to, "request {i} after the move");
        assert!(!set);
    }
    // Its old endpoint coming back does not pull it back.
    rt.apply(snapshot(&parts(&all))).await;
    for _ in 0..20 {
        assert_eq!(jar.get(addr).await.0, moved_to);
    }
}

#[tokio::test]
async fn without_a_session_requests_are_balanced_and_a_forged_cookie_is_ignored() {
    let b = backends("app", 3).await;
    let all: Vec<&Backend> = b.iter().collect();
    let (_rt, addr) = start(&[service("app", &all), route(COOKIE_RULE)]).await;
    assert_eq!(answered_by(addr, &[], 12).await.len(), 3);
    let mut jar = Jar::new("sid");
    jar.get(addr).await;
    let good = jar.cookie.clone().unwrap();
    assert_eq!(answered_by(addr, &[("cookie", &good)], 12).await.len(), 1);
    // One character of the token changed: not a session of ours.
    let mut forged = good.into_bytes();
    let last = forged.len() - 1;
    forged[last] = if forged[last] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    assert_eq!(
        answered_by(addr, &[("cookie", &forged)], 12).await.len(),
        3,
        "a forged token pins nothing"
    );
}

#[tokio::test]
async fn a_header_session_is_handed_out_in_a_response_header_and_read_back() {
    let b = backends("app", 3).await;
    let all: Vec<&Backend> = b.iter().collect();
    let rule = "{backendRefs: [{name: app, port: 80}], sessionPersistence: {type: Header, header: {name: x-session}}}";
    let (_rt, addr) = start(&[service("app", &all), route(rule)]).await;
    let (first, headers) = get(addr, &[]).await;
    let token = headers
        .get("x-session")
        .expect("the session's header")
        .to_str()
        .unwrap()
        .to_owned();
    assert!(headers.get(http::header::SET_COOKIE).is_none());
    for _ in 0..30 {
        let (who, headers) = get(addr, &[("x-session", &token)]).await;
        assert_eq!(who, first);
        assert!(headers.get("x-session").is_none(), "kept: no new token");
    }
    // A cookie of the same name is not the session.
    let cookie = format!("x-session={token}");
    assert_eq!(answered_by(addr, &[("cookie", &cookie)], 9).await.len(), 3);
}

#[tokio::test]
async fn idle_and_absolute_timeouts_end_a_session() {
    let b = backends("app", 3).await;
    let all: Vec<&Backend> = b.iter().collect();
    let rule = "{backendRefs: [{name: app, port: 80}], sessionPersistence: {absoluteTimeout: 3s, idleTimeout: 1s, cookie: {name: sid}}}";
    let (_rt, addr) = start(&[service("app", &all), route(rule)]).await;

    // Used every 300 ms, the session outlives its idle timeout: each answer
    // renews the cookie. A Session cookie has no Max-Age.
    let mut jar = Jar::new("sid");
    let began = tokio::time::Instant::now();
    let (first, _) = jar.get(addr).await;
    let (_, whole) = set_cookie(&get(addr, &[]).await.1, "sid").unwrap();
    assert!(!whole.contains("Max-Age"), "{whole}");
    while began.elapsed() < Duration::from_millis(1_800) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let (who, set) = jar.get(addr).await;
        assert_eq!(who, first);
        assert!(set, "an idle timeout renews the cookie on each answer");
    }
    // Idle for longer than 1 s: the session is over, the cookie pins nothing.
    let idle = jar.cookie.clone().unwrap();
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    assert_eq!(answered_by(addr, &[("cookie", &idle)], 9).await.len(), 3);

    // A new session used every 300 ms still ends 3 s after it began.
    let mut jar = Jar::new("sid");
    let began = tokio::time::Instant::now();
    let (first, _) = jar.get(addr).await;
    while began.elapsed() < Duration::from_millis(2_600) {
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(jar.get(addr).await.0, first);
    }
    let fresh = jar.cookie.clone().unwrap();
    tokio::time::sleep(Duration::from_millis(3_100).saturating_sub(began.elapsed())).await;
    assert!(
        began.elapsed() < Duration::from_millis(3_900),
        "not idle yet"
    );
    assert_eq!(
        answered_by(addr, &[("cookie", &fresh)], 9).await.len(),
        3,
        "absolute timeout"
    );
}

#[tokio::test]
async fn a_rule_session_chooses_among_weighted_backend_refs() {
    let a = backends("left", 2).await;
    let z = backends("right", 2).await;
    let rule = "{backendRefs: [{name: left, port: 80, weight: 1}, {name: right, port: 80, weight: 3}], sessionPersistence: {type: Cookie, cookie: {name: sid}}}";
    let (_rt, addr) = start(&[
        service("left", &a.iter().collect::<Vec<_>>()),
        service("right", &z.iter().collect::<Vec<_>>()),
        route(rule),
    ])
    .await;
    // Sessions begin on both backends (weights decide), and each stays on
    // its backend and endpoint.
    let mut began_on = BTreeSet::new();
    for _ in 0..40 {
        let mut jar = Jar::new("sid");
        let (first, _) = jar.get(addr).await;
        for _ in 0..5 {
            assert_eq!(jar.get(addr).await.0, first);
        }
        began_on.insert(first.split('-').next().unwrap().to_owned());
    }
    assert_eq!(
        began_on,
        BTreeSet::from(["left".to_owned(), "right".to_owned()])
    );
}

#[tokio::test]
async fn a_backend_traffic_policy_keeps_sessions_on_its_service() {
    let b = backends("app", 3).await;
    let all: Vec<&Backend> = b.iter().collect();
    let policy = backend_policy(
        "app",
        "  sessionPersistence: {type: Cookie, cookie: {name: app-session}}",
    );
    let (mut rt, addr) = start(&[
        service("app", &all),
        route("{backendRefs: [{name: app, port: 80}]}"),
        policy.clone(),
    ])
    .await;
    let mut jar = Jar::new("app-session");
    let (first, set) = jar.get(addr).await;
    assert!(set);
    for _ in 0..30 {
        assert_eq!(jar.get(addr).await.0, first);
    }
    // The rule's own sessionPersistence overrides the policy's (GEP-1619).
    rt.apply(snapshot(&[
        service("app", &all),
        route(COOKIE_RULE),
        policy,
    ]))
    .await;
    let (_, headers) = get(addr, &[]).await;
    assert!(set_cookie(&headers, "sid").is_some());
    assert!(set_cookie(&headers, "app-session").is_none());
}

#[tokio::test]
async fn gateways_sharing_a_session_key_keep_each_others_sessions() {
    let b = backends("app", 3).await;
    let all: Vec<&Backend> = b.iter().collect();
    let parts = [service("app", &all), route(COOKIE_RULE)];
    let key = SessionKey::new(&[42; 32]).unwrap();
    let (_one, one) = start_with(&parts, Some(&key)).await;
    let (_two, two) = start_with(&parts, Some(&key)).await;
    let (_other, other) = start_with(&parts, None).await;
    let mut jar = Jar::new("sid");
    let (first, _) = jar.get(one).await;
    let cookie = jar.cookie.clone().unwrap();
    assert_eq!(
        answered_by(two, &[("cookie", &cookie)], 12).await,
        BTreeSet::from([first])
    );
    assert_eq!(
        answered_by(other, &[("cookie", &cookie)], 12).await.len(),
        3,
        "another key does not read it"
    );
}

/// `n` GETs without a session: the statuses.
async fn statuses(addr: SocketAddr, n: usize) -> BTreeSet<u16> {
    let client = common::client();
    let mut out = BTreeSet::new();
    for _ in 0..n {
        let (status, _, _) = common::get(&client, addr, "a.example", "/").await;
        out.insert(status.as_u16());
    }
    out
}

#[tokio::test]
async fn a_retry_budget_caps_the_retries_a_route_asks_for() {
    let failing = Backend::answering("app-0", 503).await;
    let rule = "{backendRefs: [{name: app, port: 80}], retry: {codes: [503], attempts: 2}}";
    let parts = |extra: &str| vec![service("app", &[&failing]), route(rule), extra.to_owned()];
    // Without a budget each of 20 requests is tried three times.
    let (mut rt, addr) = start(&parts("")).await;
    assert_eq!(statuses(addr, 20).await, BTreeSet::from([503]));
    assert_eq!(failing.hits.swap(0, Ordering::Relaxed), 60);
    // Retries at most 10 % of the requests of the last minute, or one a
    // minute: 20 requests get 2 retries (the minimum's one among them).
    rt.apply(snapshot(&parts(&backend_policy(
        "app",
        "  retryConstraint: {budget: {percent: 10, interval: 60s}, minRetryRate: {count: 1, interval: 60s}}",
    ))))
    .await;
    assert_eq!(statuses(addr, 20).await, BTreeSet::from([503]));
    assert_eq!(failing.hits.load(Ordering::Relaxed), 22);
}

#[test]
fn the_example_is_accepted() {
    let out = common::example_statuses("session-persistence/shop.yaml");
    common::assert_policy_accepted(
        &out,
        gwcore::policies::backend_traffic::KIND,
        "shop",
        "catalog",
    );
    let route = gwcore::model::ObjectKey::new(gwcore::model::Kind::HttpRoute, "shop", "shop");
    let Some(gwcore::status::ObjectStatus::Route(r)) = out.statuses.get(&route) else {
        panic!("no status for the example's route");
    };
    for c in &r.parents[0].conditions {
        let bad = match c.type_.as_str() {
            "Accepted" | "ResolvedRefs" => c.status.as_str() != "True",
            "PartiallyInvalid" => c.status.as_str() == "True",
            _ => false,
        };
        assert!(!bad, "{c:?}");
    }
}
