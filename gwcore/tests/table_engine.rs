//! The routing table through the public API, from manifests: load, compute
//! the attachments with the engine, compile, route requests, apply filters.

use gwcore::Snapshot;
use gwcore::engine::{ComputeOptions, compute};
use gwcore::load::load_str;
use gwcore::model::{Kind, ObjectKey};
use gwcore::table::{Action, BackendAction, RequestHead, RespondReason, Table, Tables};

const MANIFESTS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gc}
spec: {controllerName: example.com/gc}
---
apiVersion: v1
kind: Secret
metadata: {name: cert, namespace: infra}
type: kubernetes.io/tls
data: {tls.crt: "", tls.key: ""}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: gc
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - name: https
    port: 443
    protocol: HTTPS
    tls: {certificateRefs: [{name: cert}]}
  - name: https-second
    port: 443
    protocol: HTTPS
    hostname: second.example.org
    tls: {certificateRefs: [{name: cert}]}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: infra}
spec: {ports: [{port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: api, namespace: infra}
spec: {ports: [{port: 9090}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: infra, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: web, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /old}}]
    filters:
    - type: RequestRedirect
      requestRedirect:
        path: {type: ReplacePrefixMatch, replacePrefixMatch: /new}
        statusCode: 301
  - matches: [{path: {type: PathPrefix, value: /api/v1}}]
    filters:
    - type: URLRewrite
      urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}
    - type: RequestHeaderModifier
      requestHeaderModifier:
        set: [{name: x-gateway, value: gwcore}]
        remove: [x-debug]
    - type: ResponseHeaderModifier
      responseHeaderModifier:
        add: [{name: x-served-by, value: api}]
    backendRefs:
    - {name: api, port: 9090, weight: 1}
    - {name: missing, port: 80, weight: 1}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: second, namespace: infra}
spec:
  parentRefs: [{name: gw, sectionName: https-second}]
  rules:
  - backendRefs: [{name: api, port: 9090}]
"#;

fn tables() -> Tables {
    let loaded = load_str("test.yaml", MANIFESTS);
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let snap = Snapshot::from_objects(loaded.objects.into_iter().map(|(o, _)| o));
    let out = compute(
        &snap,
        &ComputeOptions::new("example.com/gc", "2026-01-02T00:00:00Z"),
    );
    Tables::compile(&out.routing)
}

fn table(t: &Tables) -> &Table {
    t.get(&ObjectKey::new(Kind::Gateway, "infra", "gw"))
        .expect("the Gateway has a table")
}

#[test]
fn redirect_keeps_the_listener_scheme_and_omits_default_ports() {
    let t = tables();
    for (port, sni, want) in [
        (80, None, "http://shop.example.com/new/cart?x=1"),
        (
            443,
            Some("shop.example.com"),
            "https://shop.example.com/new/cart?x=1",
        ),
    ] {
        let mut head = RequestHead::new(port, "shop.example.com", "GET", "/old/cart?x=1");
        if let Some(s) = sni {
            head = head.with_sni(s);
        }
        let d = table(&t).find(&head);
        let Action::Redirect(r) = &d.action else {
            panic!("redirect expected on port {port}: {:?}", d.action)
        };
        assert_eq!(
            (r.status.as_u16(), r.location.as_str()),
            (301, want),
            "port {port}"
        );
    }
}

#[test]
fn rewrite_header_filters_and_the_invalid_half() {
    let t = tables();
    let head = RequestHead::new(80, "shop.example.com", "GET", "/api/v1/users/./7?q=1")
        .with_header("x-debug", "1");
    let d = table(&t).find(&head);
    let m = d.matched.expect("a rule matched");
    assert_eq!((m.route().name.as_str(), m.rule_index()), ("web", 2));
    let Action::Forward(f) = &d.action else {
        panic!("forward expected")
    };
    assert_eq!(f.total_weight(), 2);
    let valid = f.pick(0);
    let BackendAction::Forward(target) = f.backend_action(&head, valid) else {
        panic!("first backend is valid")
    };
    assert_eq!((target.service.name.as_str(), target.port), ("api", 9090));
    match f.backend_action(&head, f.pick(1)) {
        BackendAction::Respond(r) => {
            assert_eq!(r.status().as_u16(), 500, "the invalid share answers 500")
        }
        other => panic!("invalid backend must answer 500, got {other:?}"),
    }

    let (mut parts, ()) = http::Request::builder()
        .uri("/api/v1/users/./7?q=1")
        .header("host", "shop.example.com")
        .header("x-debug", "1")
        .body(())
        .unwrap()
        .into_parts();
    f.apply_request(&head, Some(valid), &mut parts);
    assert_eq!(
        parts.uri.to_string(),
        "/users/7?q=1",
        "normalized, then the prefix replaced"
    );
    assert_eq!(parts.headers["x-gateway"], "gwcore");
    assert!(!parts.headers.contains_key("x-debug"));
    assert_eq!(
        parts.headers["host"], "shop.example.com",
        "Host forwarded unmodified"
    );

    let (mut resp, ()) = http::Response::builder()
        .header("x-served-by", "backend")
        .body(())
        .unwrap()
        .into_parts();
    f.apply_response(&head, Some(valid), &mut resp);
    assert_eq!(resp.headers["x-served-by"], "backend,api");
}

#[test]
fn https_listeners_are_chosen_by_sni_and_misdirected_hosts_get_421() {
    let t = tables();
    let route = |host: &str, sni: &str| {
        let d = table(&t).find(&RequestHead::new(443, host, "GET", "/").with_sni(sni));
        let listener = d.listener.map(|l| l.name.clone()).unwrap_or_default();
        let route = d
            .matched
            .map(|m| m.route().name.clone())
            .unwrap_or_default();
        (listener, route, d.status().map(|s| s.as_u16()))
    };
    assert_eq!(
        route("second.example.org", "second.example.org"),
        ("https-second".into(), "second".into(), None)
    );
    assert_eq!(
        route("shop.example.com", "shop.example.com"),
        ("https".into(), "web".into(), None)
    );
    assert_eq!(
        route("second.example.org", "shop.example.com"),
        ("https".into(), String::new(), Some(421))
    );
    let d = table(&t).find(
        &RequestHead::new(443, "shop.example.com", "GET", "/").with_sni("second.example.org"),
    );
    assert!(matches!(&d.action, Action::Respond(r) if r.reason == RespondReason::Misdirected));
}

/// After one route changes, the incremental engine's routing delta names
/// only its Gateway: `Tables::update` compiles that table again and shares
/// every other one, and routes exactly as a fresh compile does.
#[test]
fn tables_update_recompiles_only_the_gateways_a_delta_names() {
    use gwcore::engine::Engine;
    let other_gateway = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: other, namespace: infra}
spec:
  gatewayClassName: gc
  listeners:
  - {name: http, port: 8000, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: other, namespace: infra}
spec:
  parentRefs: [{name: other}]
  rules:
  - backendRefs: [{name: api, port: 9090}]
"#;
    let loaded = load_str("test.yaml", &format!("{MANIFESTS}---{other_gateway}"));
    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
    let snap = Snapshot::from_objects(loaded.objects.into_iter().map(|(o, _)| o));
    let opts = ComputeOptions::new("example.com/gc", "2026-01-02T00:00:00Z");
    let mut engine = Engine::from_snapshot(snap, opts.clone());
    let before = Tables::compile(&engine.computed().routing);
    let gw = ObjectKey::new(Kind::Gateway, "infra", "gw");
    let other = ObjectKey::new(Kind::Gateway, "infra", "other");

    // A new path on the `web` route (attached to `gw` only).
    let web_key = ObjectKey::new(Kind::HttpRoute, "infra", "web");
    let mut web = engine.snapshot().get(&web_key).cloned().expect("web route");
    let gwcore::model::Object::HttpRoute(r) = &mut web else {
        panic!("an HTTPRoute")
    };
    r.spec.rules[1].matches[0]
        .path
        .as_mut()
        .expect("a path match")
        .value = Some("/older".into());
    let delta = engine.apply(web);
    assert_eq!(
        delta.routing.keys().collect::<Vec<_>>(),
        vec![&gw],
        "only the web route's Gateway changed"
    );
    let after = before.update(&delta.routing);
    assert!(std::sync::Arc::ptr_eq(
        after.get(&other).expect("other's table"),
        before.get(&other).expect("other's table")
    ));
    assert!(!std::sync::Arc::ptr_eq(
        after.get(&gw).expect("gw's table"),
        before.get(&gw).expect("gw's table")
    ));
    let fresh = Tables::compile(&compute(engine.snapshot(), &opts).routing);
    for path in ["/old", "/older/x", "/api/v1/y", "/"] {
        let req = RequestHead::new(80, "a.example.com", "GET", path);
        let name = |t: &Tables| {
            let d = table(t).find(&req);
            (
                d.matched.map(|m| (m.route().name.clone(), m.rule_index())),
                d.status().map(|s| s.as_u16()),
            )
        };
        assert_eq!(name(&after), name(&fresh), "{path}");
    }
    // `/old` is now served by the catch-all rule, `/older` redirects.
    let d = table(&after).find(&RequestHead::new(80, "a.example.com", "GET", "/older"));
    assert_eq!(d.status().map(|s| s.as_u16()), Some(301));
}
