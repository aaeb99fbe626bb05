use std::collections::BTreeMap;

use gwcore::Snapshot;
use gwcore::attachments::AppliedPolicy;
use gwcore::engine::{ComputeOptions, compute};
use gwcore::extension::Extensions;
use gwcore::load::{Limits, load_str_extended};
use gwcore::model::Kind;
use gwcore::policies::load_balancer::LoadBalancerPolicy;
use gwcore::table::{Action, RequestHead, Table};
use http::{HeaderMap, StatusCode};
use proptest::prelude::*;

use super::*;
use crate::endpoints::{Endpoint, Refusing};

/// The `LoadBalancerPolicy` with `spec` (besides its targetRefs) as the
/// engine hands it to a request for its Service.
fn applied(spec: &str) -> AppliedPolicy {
    let yaml = format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: gc}}
spec: {{controllerName: example.com/c}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: app}}
spec:
  gatewayClassName: gc
  listeners: [{{name: http, port: 80, protocol: HTTP}}]
---
apiVersion: v1
kind: Service
metadata: {{name: svc, namespace: app}}
spec: {{ports: [{{port: 80}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: app}}
spec:
  parentRefs: [{{name: gw}}]
  rules: [{{backendRefs: [{{name: svc, port: 80}}]}}]
---
apiVersion: policy.gwcore.dev/v1alpha1
kind: LoadBalancerPolicy
metadata: {{name: lb, namespace: app}}
spec:
  targetRefs: [{{group: "", kind: Service, name: svc}}]
{spec}
"#
    );
    let ext = Extensions::new().with_policy(LoadBalancerPolicy);
    let l = load_str_extended("test.yaml", &yaml, Limits::default(), &ext);
    assert!(!l.has_errors(), "{:#?}", l.diagnostics);
    let snap = Snapshot::from_objects(l.objects.into_iter().map(|(o, _)| o));
    let out = compute(
        &snap,
        &ComputeOptions::new("example.com/c", "2026-06-01T00:00:00Z").with_extensions(ext),
    );
    let t = Table::compile(out.routing.values().next().expect("the Gateway"));
    let d = t.find(&RequestHead::new(80, "a.example", "GET", "/"));
    let Action::Forward(f) = &d.action else {
        panic!("not forwarded: {:?}", d.action)
    };
    f.policy(KIND, Some(f.pick(0)))
        .expect("the policy applies")
        .clone()
}

fn service() -> ObjectKey {
    ObjectKey::new(Kind::Service, "app", "svc")
}

fn endpoints(ports: impl IntoIterator<Item = u16>) -> Vec<Endpoint> {
    ports
        .into_iter()
        .map(|p| Endpoint::new(SocketAddr::from(([10, 0, 0, 1], p))))
        .collect()
}

fn set<'a>(
    policy: Option<&'a AppliedPolicy>,
    service: &'a ObjectKey,
    endpoints: &'a [Endpoint],
) -> EndpointSet<'a> {
    let mut id = Fnv::new();
    for e in endpoints {
        id.addr(&e.addr);
    }
    EndpointSet {
        policy,
        service,
        port: 80,
        endpoints,
        id: id.finish(),
    }
}

fn client() -> SocketAddr {
    SocketAddr::from(([192, 0, 2, 1], 40000))
}

/// One pick, with nothing tried, no refusals.
fn pick(b: &Balancer, set: EndpointSet<'_>, headers: &HeaderMap) -> usize {
    let refusing = Refusing::default();
    b.pick(&PickRequest::new(
        set,
        &[],
        client(),
        headers,
        None,
        &refusing,
    ))
    .expect("a choice")
}

fn header(name: &'static str, value: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(name, http::HeaderValue::from_str(value).unwrap());
    h
}

proptest! {
    /// Round robin: k rounds over n endpoints give each exactly k
    /// requests, with or without a policy, and a reload with the same
    /// endpoints keeps the turn.
    #[test]
    fn round_robin_spreads_evenly(n in 1u16..30, k in 1usize..20, with_policy: bool) {
        let b = Balancer::new();
        let p = applied("  algorithm: RoundRobin");
        let svc = service();
        let e = endpoints(1..=n);
        let policy = with_policy.then_some(&p);
        let mut counts = vec![0; e.len()];
        for _ in 0..k * e.len() {
            counts[pick(&b, set(policy, &svc, &e), &HeaderMap::new())] += 1;
        }
        prop_assert!(counts.iter().all(|c| *c == k), "{counts:?}");
        // The same list from another configuration: the next turn.
        let again = endpoints(1..=n);
        prop_assert_eq!(pick(&b, set(policy, &svc, &again), &HeaderMap::new()), 0);
        prop_assert_eq!(pick(&b, set(policy, &svc, &again), &HeaderMap::new()), 1 % e.len());
    }

    /// Consistent hashing: when one of n endpoints leaves, only the keys
    /// it had move (exactly), and those are at most 1.6 × keys / n (the
    /// ring's 100 points per endpoint keep each endpoint's share near
    /// 1/n).
    #[test]
    fn consistent_hashing_moves_only_the_keys_of_the_endpoint_that_left(
        n in 3u16..25,
        gone in 0usize..25,
        salt: u32,
    ) {
        let gone = gone % usize::from(n);
        // One balancer per configuration (one would rebuild its ring at
        // each switch).
        let (b, b_after) = (Balancer::new(), Balancer::new());
        let p = applied("  algorithm: ConsistentHash\n  consistentHash: {key: {type: Header, header: x-user}}");
        let svc = service();
        let before = endpoints(1..=n);
        let after: Vec<Endpoint> = before
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != gone)
            .map(|(_, e)| e.clone())
            .collect();
        let keys = 2_000;
        let mut moved = 0;
        for k in 0..keys {
            let h = header("x-user", &format!("user-{salt}-{k}"));
            let was = before[pick(&b, set(Some(&p), &svc, &before), &h)].addr;
            let is = after[pick(&b_after, set(Some(&p), &svc, &after), &h)].addr;
            if was != is {
                prop_assert_eq!(was, before[gone].addr, "a key of a remaining endpoint moved");
                moved += 1;
            }
        }
        let bound = 1.6 * f64::from(keys) / f64::from(n);
        prop_assert!(f64::from(moved) <= bound, "{moved} of {keys} keys moved, bound {bound}");
    }

    /// Least request: an endpoint with more requests in flight than
    /// another is never chosen over it by two choices when there are two,
    /// and the busiest of several never is.
    #[test]
    fn least_request_prefers_the_less_busy_endpoint(
        n in 2u16..10,
        busy in proptest::collection::vec(0u32..5, 10),
    ) {
        let b = Balancer::new();
        let p = applied("  algorithm: LeastRequest");
        let svc = service();
        let e = endpoints(1..=n);
        let s = set(Some(&p), &svc, &e);
        // Load the endpoints as `busy` says: picks not yet done.
        let state = b.state(&s);
        for (i, load) in busy.iter().take(e.len()).enumerate() {
            state.slots[i].in_flight.store(*load, Relaxed);
        }
        let loads: Vec<u32> = (0..e.len()).map(|i| state.slots[i].in_flight.load(Relaxed)).collect();
        let max = *loads.iter().max().unwrap();
        let busiest: Vec<usize> = (0..e.len()).filter(|i| loads[*i] == max).collect();
        for _ in 0..50 {
            let i = pick(&b, s, &HeaderMap::new());
            if n == 2 {
                prop_assert!(loads[i] <= loads[1 - i], "{loads:?} chose {i}");
            }
            if busiest.len() == 1 {
                prop_assert_ne!(i, busiest[0], "{:?}", loads);
            }
            b.done(&s, i, PickOutcome::Answered(StatusCode::OK));
        }
        let after: Vec<u32> = (0..e.len()).map(|i| state.slots[i].in_flight.load(Relaxed)).collect();
        prop_assert_eq!(after, loads, "every done takes its pick back");
    }

    /// Outlier ejection never ejects more than the share, whatever the
    /// endpoints answer.
    #[test]
    fn ejection_never_exceeds_the_share(
        n in 1u16..12,
        percent in 0u32..=100,
        answers in proptest::collection::vec((0usize..12, prop_oneof![Just(200u16), Just(500), Just(503)]), 1..300),
    ) {
        let b = Balancer::new();
        let p = applied(&format!(
            "  outlierDetection: {{consecutive5xx: 2, baseEjectionTime: 1h, maxEjectedPercent: {percent}}}"
        ));
        let svc = service();
        let e = endpoints(1..=n);
        let s = set(Some(&p), &svc, &e);
        let share = usize::from(n) * percent as usize / 100;
        let state = b.state(&s);
        for (i, status) in answers {
            let i = i % e.len();
            b.done(&s, i, PickOutcome::Answered(StatusCode::from_u16(status).unwrap()));
            let ejected = state.slots.iter().filter(|s| s.ejected_until.load(Relaxed) != 0).count();
            prop_assert!(ejected <= share, "{ejected} ejected of {n} at {percent} %");
            prop_assert_eq!(ejected, state.ejected.load(Relaxed));
        }
    }
}

#[test]
fn consistent_hashing_pins_a_key_by_header_cookie_or_client_address() {
    let b = Balancer::new();
    let svc = service();
    let e = endpoints(1..=8);
    for (spec, with_key, other_key) in [
        (
            "{type: Header, header: x-user}",
            header("x-user", "alice"),
            header("x-user", "bob"),
        ),
        (
            "{type: Cookie, cookie: sid}",
            header("cookie", "theme=dark; sid=alice"),
            header("cookie", "sid=bob"),
        ),
    ] {
        let p = applied(&format!(
            "  algorithm: ConsistentHash\n  consistentHash: {{key: {spec}}}"
        ));
        let s = set(Some(&p), &svc, &e);
        let first = pick(&b, s, &with_key);
        for _ in 0..20 {
            assert_eq!(pick(&b, s, &with_key), first, "{spec}");
        }
        // Many keys reach more than one endpoint.
        let reached: std::collections::BTreeSet<usize> = (0..50)
            .map(|k| pick(&b, s, &header("x-user", &format!("u{k}"))))
            .chain((0..50).map(|k| pick(&b, s, &header("cookie", &format!("sid=u{k}")))))
            .chain([pick(&b, s, &other_key)])
            .collect();
        assert!(reached.len() > 2, "{spec}: {reached:?}");
    }
    let p = applied("  algorithm: ConsistentHash\n  consistentHash: {key: {type: ClientAddress}}");
    let s = set(Some(&p), &svc, &e);
    let refusing = Refusing::default();
    let none = HeaderMap::new();
    let from = |ip: [u8; 4], port: u16| {
        b.pick(&PickRequest::new(
            s,
            &[],
            SocketAddr::from((ip, port)),
            &none,
            None,
            &refusing,
        ))
        .unwrap()
    };
    assert_eq!(
        from([192, 0, 2, 7], 1000),
        from([192, 0, 2, 7], 2000),
        "the port is not hashed"
    );
    let by_ip: std::collections::BTreeSet<usize> =
        (0..50).map(|i| from([192, 0, 2, i], 1000)).collect();
    assert!(by_ip.len() > 2, "{by_ip:?}");
}

#[test]
fn a_request_without_its_key_goes_round_robin() {
    let b = Balancer::new();
    let svc = service();
    let e = endpoints(1..=3);
    let p = applied(
        "  algorithm: ConsistentHash\n  consistentHash: {key: {type: Header, header: x-user}}",
    );
    let s = set(Some(&p), &svc, &e);
    let picks: Vec<usize> = (0..6).map(|_| pick(&b, s, &HeaderMap::new())).collect();
    assert_eq!(picks, [0, 1, 2, 0, 1, 2]);
}

#[test]
fn an_ejected_endpoint_is_passed_over_then_returns_after_its_period_which_grows() {
    const MINUTE: u64 = 60 * 1_000_000_000;
    let b = Balancer::new();
    let svc = service();
    let e = endpoints(1..=4);
    let p = applied(
        "  outlierDetection: {consecutive5xx: 3, consecutiveFailures: 2, baseEjectionTime: 20m, maxEjectionTime: 50m}",
    );
    let s = set(Some(&p), &svc, &e);
    let state = b.state(&s);
    let five = PickOutcome::Answered(StatusCode::INTERNAL_SERVER_ERROR);
    // Two 5xx, then a 200: the run is broken, no ejection.
    b.done(&s, 1, five);
    b.done(&s, 1, five);
    b.done(&s, 1, PickOutcome::Answered(StatusCode::OK));
    b.done(&s, 1, five);
    b.done(&s, 1, five);
    assert_eq!(state.ejected.load(Relaxed), 0);
    b.done(&s, 1, five);
    assert_eq!(state.ejected.load(Relaxed), 1);
    assert_eq!(b.ejections(&p.policy, "ejected"), 1);
    let picks: BTreeMap<usize, usize> = (0..30).fold(BTreeMap::new(), |mut m, _| {
        *m.entry(pick(&b, s, &HeaderMap::new())).or_default() += 1;
        m
    });
    assert_eq!(
        picks.keys().copied().collect::<Vec<_>>(),
        [0, 2, 3],
        "{picks:?}"
    );
    // Failures to connect eject too (another endpoint: the share is 2).
    b.done(&s, 2, PickOutcome::Unreachable);
    b.done(&s, 2, PickOutcome::Failed);
    assert_eq!(state.ejected.load(Relaxed), 2);
    // A third would pass 50 %: kept, and counted.
    b.done(&s, 3, PickOutcome::TimedOut);
    b.done(&s, 3, PickOutcome::TimedOut);
    assert_eq!(state.ejected.load(Relaxed), 2);
    assert_eq!(b.ejections(&p.policy, "over_max_share"), 1);
    // The first ejection lasts the base.
    let period = state.slots[1].ejected_until.load(Relaxed) - b.now();
    assert!(period > 19 * MINUTE && period <= 20 * MINUTE, "{period}");
    // Endpoint 1's period ends: it is chosen again.
    state.slots[1].ejected_until.store(1, Relaxed);
    let picks: std::collections::BTreeSet<usize> =
        (0..30).map(|_| pick(&b, s, &HeaderMap::new())).collect();
    assert!(picks.contains(&1), "{picks:?}");
    assert_eq!(b.ejections(&p.policy, "returned"), 1);
    // Ejected again: for twice the base, then capped at 50m.
    for _ in 0..3 {
        b.done(&s, 1, five);
    }
    let period = state.slots[1].ejected_until.load(Relaxed) - b.now();
    assert!(period > 39 * MINUTE && period <= 40 * MINUTE, "{period}");
    state.slots[1].ejected_until.store(1, Relaxed);
    let _ = pick(&b, s, &HeaderMap::new());
    for _ in 0..3 {
        b.done(&s, 1, five);
    }
    let period = state.slots[1].ejected_until.load(Relaxed) - b.now();
    assert!(period > 49 * MINUTE && period <= 50 * MINUTE, "{period}");
}

#[test]
fn state_is_kept_across_reloads_for_the_addresses_that_stay() {
    let b = Balancer::new();
    let svc = service();
    let p = applied("  outlierDetection: {consecutive5xx: 1, baseEjectionTime: 1h}");
    let e = endpoints(1..=4);
    let s = set(Some(&p), &svc, &e);
    let _ = pick(&b, s, &HeaderMap::new());
    b.done(&s, 2, PickOutcome::Answered(StatusCode::BAD_GATEWAY));
    let ejected = e[2].addr;
    // Port 2 leaves, 5 comes: port 3 stays ejected.
    let e2 = endpoints([1, 3, 4, 5]);
    let s2 = set(Some(&p), &svc, &e2);
    for _ in 0..20 {
        assert_ne!(e2[pick(&b, s2, &HeaderMap::new())].addr, ejected);
    }
    // A done for a pick made before the reload counts against the same
    // address.
    let state = b.state(&s2);
    b.done(&s, 1, PickOutcome::Answered(StatusCode::BAD_GATEWAY));
    assert_eq!(
        state.ejected.load(Relaxed),
        1,
        "port 2 left: nothing to eject"
    );
    b.done(&s, 3, PickOutcome::Answered(StatusCode::BAD_GATEWAY));
    assert_eq!(state.ejected.load(Relaxed), 2);
    assert!(
        state.slots[2].ejected_until.load(Relaxed) != 0,
        "port 4 is index 2 now"
    );
}

#[test]
fn tried_and_refusing_endpoints_are_passed_over() {
    let b = Balancer::new();
    let svc = service();
    let e = endpoints(1..=3);
    let s = set(None, &svc, &e);
    let refusing = Refusing::default();
    let none = HeaderMap::new();
    for _ in 0..6 {
        let i = b
            .pick(&PickRequest::new(
                s,
                &[0, 2],
                client(),
                &none,
                None,
                &refusing,
            ))
            .unwrap();
        assert_eq!(i, 1);
    }
    refusing.refused(e[1].addr, Instant::now());
    for _ in 0..6 {
        let i = b
            .pick(&PickRequest::new(s, &[], client(), &none, None, &refusing))
            .unwrap();
        assert_ne!(i, 1);
    }
    assert_eq!(
        b.pick(&PickRequest::new(
            s,
            &[0, 1, 2],
            client(),
            &none,
            None,
            &refusing
        )),
        None
    );
}
