//! Session persistence (GEP-1619) on route rules: parsed into the table,
//! and the status of what is invalid, through the public API.

use gwcore::Snapshot;
use gwcore::engine::{ComputeOptions, Computed, compute};
use gwcore::load::load_str;
use gwcore::model::{Kind, ObjectKey};
use gwcore::session::{CookieLifetime, SessionKind, default_name};
use gwcore::status::{Condition, ObjectStatus, RouteParentStatus};
use gwcore::table::{Action, RequestHead, Table};

const CTRL: &str = "example.com/gateway-controller";

const BASE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: c}
spec: {controllerName: example.com/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ns}
spec:
  gatewayClassName: c
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: ns}
spec: {ports: [{port: 80}]}
"#;

fn run(yaml: &str) -> Computed {
    let l = load_str("test.yaml", yaml);
    assert!(l.diagnostics.is_empty(), "{:#?}", l.diagnostics);
    let snap = Snapshot::from_objects(l.objects.into_iter().map(|(o, _)| o));
    compute(&snap, &ComputeOptions::new(CTRL, "2026-01-01T00:00:00Z"))
}

fn http_route(rules: &str) -> String {
    format!(
        "{BASE}---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: ns}}\nspec:\n  parentRefs: [{{name: gw}}]\n  rules:\n{rules}"
    )
}

fn parents(out: &Computed, kind: Kind) -> Vec<RouteParentStatus> {
    match out.statuses.get(&ObjectKey::new(kind, "ns", "r")) {
        Some(ObjectStatus::Route(r)) => r.parents.clone(),
        other => panic!("no route status: {other:?}"),
    }
}

fn condition<'a>(conds: &'a [Condition], ty: &str) -> &'a Condition {
    conds
        .iter()
        .find(|c| c.type_ == ty)
        .unwrap_or_else(|| panic!("no {ty} in {conds:?}"))
}

fn table(out: &Computed) -> Table {
    Table::compile(out.routing.values().next().expect("our Gateway"))
}

#[test]
fn a_rule_s_session_persistence_reaches_the_table() {
    let out = run(&http_route(
        "  - matches: [{path: {type: PathPrefix, value: /a}}]\n    backendRefs: [{name: svc, port: 80}]\n    sessionPersistence: {sessionName: cart, absoluteTimeout: 1h, idleTimeout: 5m, cookie: {lifetimeType: Permanent}}\n  - matches: [{path: {type: PathPrefix, value: /b}}]\n    backendRefs: [{name: svc, port: 80}]\n    sessionPersistence: {type: Header, header: {name: x-session}}\n  - matches: [{path: {type: PathPrefix, value: /c}}]\n    backendRefs: [{name: svc, port: 80}]\n    sessionPersistence: {cookie: {}}\n  - matches: [{path: {type: PathPrefix, value: /d}}]\n    backendRefs: [{name: svc, port: 80}]\n",
    ));
    let p = parents(&out, Kind::HttpRoute);
    assert_eq!(condition(&p[0].conditions, "Accepted").status, "True");
    assert!(
        !p[0]
            .conditions
            .iter()
            .any(|c| c.type_ == "PartiallyInvalid")
    );
    let t = table(&out);
    let sp = |path: &str| {
        let d = t.find(&RequestHead::new(80, "a.example", "GET", path));
        let Action::Forward(f) = d.action else {
            panic!("{path} not forwarded")
        };
        f.session_persistence().cloned()
    };
    let a = sp("/a").expect("on /a");
    assert_eq!(a.name, "cart");
    assert_eq!(
        a.kind,
        SessionKind::Cookie {
            path: None,
            lifetime: CookieLifetime::Permanent
        }
    );
    assert_eq!(
        (a.absolute_timeout, a.idle_timeout),
        (
            Some(std::time::Duration::from_secs(3600)),
            Some(std::time::Duration::from_secs(300))
        )
    );
    let b = sp("/b").expect("on /b");
    assert_eq!(
        (b.name.as_str(), &b.kind),
        ("x-session", &SessionKind::Header)
    );
    // No name: one made from the route and the rule, unique to the rule.
    assert_eq!(sp("/c").expect("on /c").name, default_name("ns/r rule 2"));
    assert_eq!(sp("/d"), None);
}

// What the CRDs refuse (a Permanent cookie without absoluteTimeout, a
// cookie on a Header session, an unknown type...) never gets here: loading
// refuses it (gwcore::validate). These are what they leave to the
// implementation.
#[test]
fn an_invalid_session_persistence_drops_its_rule_as_partially_invalid() {
    for (sp, field) in [
        (
            "{absoluteTimeout: 0s, cookie: {lifetimeType: Permanent}}",
            "spec.rules[0].sessionPersistence.absoluteTimeout",
        ),
        (
            "{cookie: {path: shop}}",
            "spec.rules[0].sessionPersistence.cookie.path",
        ),
        (
            "{type: Header, header: {name: Host}}",
            "spec.rules[0].sessionPersistence.header.name",
        ),
        (
            "{idleTimeout: 3d, cookie: {}}",
            "spec.rules[0].sessionPersistence.idleTimeout",
        ),
    ] {
        let out = run(&http_route(&format!(
            "  - matches: [{{path: {{type: PathPrefix, value: /bad}}}}]\n    backendRefs: [{{name: svc, port: 80}}]\n    sessionPersistence: {sp}\n  - matches: [{{path: {{type: PathPrefix, value: /ok}}}}]\n    backendRefs: [{{name: svc, port: 80}}]\n"
        )));
        let p = parents(&out, Kind::HttpRoute);
        assert_eq!(
            condition(&p[0].conditions, "Accepted").status,
            "True",
            "{sp}"
        );
        let pi = condition(&p[0].conditions, "PartiallyInvalid");
        assert_eq!(
            (pi.status.as_str(), pi.reason.as_str()),
            ("True", "UnsupportedValue"),
            "{sp}"
        );
        assert!(pi.message.contains(field), "{sp}: {}", pi.message);
        let t = table(&out);
        let bad = t.find(&RequestHead::new(80, "a.example", "GET", "/bad"));
        assert!(
            !matches!(bad.action, Action::Forward(_)),
            "{sp}: the invalid rule is not served"
        );
        let ok = t.find(&RequestHead::new(80, "a.example", "GET", "/ok"));
        assert!(matches!(ok.action, Action::Forward(_)), "{sp}");
    }
}

#[test]
fn a_route_whose_only_rule_is_invalid_is_not_accepted() {
    let out = run(&http_route(
        "  - backendRefs: [{name: svc, port: 80}]\n    sessionPersistence: {type: Header, header: {name: set-cookie}}\n",
    ));
    let p = parents(&out, Kind::HttpRoute);
    let a = condition(&p[0].conditions, "Accepted");
    assert_eq!(
        (a.status.as_str(), a.reason.as_str()),
        ("False", "UnsupportedValue")
    );
    assert!(
        a.message
            .contains("spec.rules[0].sessionPersistence.header.name"),
        "{}",
        a.message
    );
}

#[test]
fn grpc_route_rules_carry_session_persistence_too() {
    let yaml = format!(
        "{BASE}---\napiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {{name: r, namespace: ns}}\nspec:\n  parentRefs: [{{name: gw}}]\n  rules:\n  - backendRefs: [{{name: svc, port: 80}}]\n    sessionPersistence: {{type: Header, header: {{name: x-grpc-session}}}}\n"
    );
    let out = run(&yaml);
    let p = parents(&out, Kind::GrpcRoute);
    assert_eq!(condition(&p[0].conditions, "Accepted").status, "True");
    let t = table(&out);
    let mut head = RequestHead::new(80, "a.example", "POST", "/pkg.Svc/Call");
    head = head.with_header("content-type", "application/grpc");
    let d = t.find(&head);
    let Action::Forward(f) = d.action else {
        panic!("not forwarded: {:?}", d.action)
    };
    assert_eq!(
        f.session_persistence().map(|s| s.name.as_str()),
        Some("x-grpc-session")
    );
}
