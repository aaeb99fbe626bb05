//! Objects a current API server accepts with the Gateway API CRDs are never
//! dropped by the loader without a status: gwcore serves them, or their
//! status says what is wrong (issue 14).

use gwcore::engine::{ComputeOptions, Computed, compute};
use gwcore::load::load_str;
use gwcore::model::{Kind, Object, ObjectKey};
use gwcore::status::{Condition, ObjectStatus};

const CTRL: &str = "example.com/gateway-controller";
const NOW: &str = "2026-01-01T00:00:00Z";

const BASE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: c}
spec: {controllerName: example.com/gateway-controller}
---
apiVersion: v1
kind: Namespace
metadata: {name: infra}
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: infra}
spec: {ports: [{port: 80}]}
"#;

fn run(yaml: &str) -> Computed {
    let l = load_str("test.yaml", yaml);
    assert!(
        l.diagnostics.is_empty(),
        "the API server accepts this; gwcore must read it: {:#?}",
        l.diagnostics
    );
    compute(&l.to_snapshot(), &ComputeOptions::new(CTRL, NOW))
}

fn condition<'a>(conds: &'a [Condition], ty: &str) -> (&'a str, &'a str) {
    let c = conds
        .iter()
        .find(|c| c.type_ == ty)
        .unwrap_or_else(|| panic!("no {ty} in {conds:?}"));
    (c.status.as_str(), c.reason.as_str())
}

#[test]
fn an_https_listener_without_tls_is_invalid_not_its_whole_gateway() {
    // The CRDs require `tls` only for protocol TLS (CEL); an HTTPS listener
    // without it is stored. It used to drop the Gateway with a diagnostic
    // and no status at all.
    let out = run(&format!(
        "{BASE}---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: infra}}\n\
         spec:\n  gatewayClassName: c\n  allowedListeners: {{namespaces: {{from: Same}}}}\n  listeners:\n\
         \x20 - {{name: http, port: 80, protocol: HTTP}}\n\
         \x20 - {{name: https, port: 443, protocol: HTTPS}}\n\
         ---\napiVersion: gateway.networking.k8s.io/v1\nkind: ListenerSet\nmetadata: {{name: ls, namespace: infra}}\n\
         spec:\n  parentRef: {{name: gw}}\n  listeners:\n  - {{name: bare, port: 8443, protocol: HTTPS}}\n\
         ---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: infra}}\n\
         spec:\n  parentRefs: [{{name: gw}}]\n  rules: [{{backendRefs: [{{name: svc, port: 80}}]}}]\n"
    ));
    let Some(ObjectStatus::Gateway(g)) =
        out.statuses
            .get(&ObjectKey::new(Kind::Gateway, "infra", "gw"))
    else {
        panic!("the Gateway has a status: {:?}", out.statuses.keys())
    };
    assert_eq!(condition(&g.conditions, "Accepted").0, "True");
    let https = g
        .listeners
        .iter()
        .find(|l| l.name == "https")
        .expect("listener https in status");
    assert_eq!(
        condition(&https.conditions, "Accepted"),
        ("False", "Invalid")
    );
    let msg = &https
        .conditions
        .iter()
        .find(|c| c.type_ == "Accepted")
        .expect("Accepted")
        .message;
    assert!(msg.contains("tls is required"), "{msg}");
    assert_eq!(condition(&https.conditions, "Programmed").0, "False");
    let http = g
        .listeners
        .iter()
        .find(|l| l.name == "http")
        .expect("listener http");
    assert_eq!(
        condition(&http.conditions, "Accepted"),
        ("True", "Accepted")
    );
    assert_eq!(http.attached_routes, 1, "the valid listener serves");
    // A ListenerSet's HTTPS listener without tls: the same, on the set.
    let Some(ObjectStatus::ListenerSet(ls)) =
        out.statuses
            .get(&ObjectKey::new(Kind::ListenerSet, "infra", "ls"))
    else {
        panic!("the ListenerSet has a status")
    };
    assert_eq!(
        condition(&ls.listeners[0].conditions, "Accepted"),
        ("False", "Invalid")
    );
}

#[test]
fn a_tls_listener_without_tls_is_still_refused_as_the_api_server_does() {
    let l = load_str(
        "test.yaml",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: infra}\n\
         spec:\n  gatewayClassName: c\n  listeners:\n  - {name: tls, port: 443, protocol: TLS}\n",
    );
    assert!(l.objects.is_empty());
    assert_eq!(
        l.diagnostics[0].field.as_deref(),
        Some("spec.listeners[0].tls")
    );
}

#[test]
fn header_matches_equal_but_for_case_keep_the_first() {
    // The headers list is keyed by exact name: `X-Env` and `x-env` are two
    // entries the API server stores. Spec (HTTPHeaderMatch.name): only the
    // first equivalent name counts, later ones are ignored. The route used
    // to be dropped as a duplicate.
    let yaml = format!(
        "{BASE}---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: infra}}\n\
         spec:\n  gatewayClassName: c\n  listeners: [{{name: http, port: 80, protocol: HTTP}}]\n\
         ---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: infra}}\n\
         spec:\n  parentRefs: [{{name: gw}}]\n  rules:\n  - matches:\n    - headers:\n\
         \x20     - {{name: X-Env, value: canary}}\n\
         \x20     - {{name: x-env, value: stable}}\n\
         \x20     - {{name: X-Other, value: o}}\n\
         \x20   backendRefs: [{{name: svc, port: 80}}]\n"
    );
    let l = load_str("test.yaml", &yaml);
    let route = l
        .objects
        .iter()
        .find_map(|(o, _)| match o {
            Object::HttpRoute(r) => Some(r),
            _ => None,
        })
        .unwrap_or_else(|| panic!("the route is read: {:#?}", l.diagnostics));
    let headers: Vec<(&str, &str)> = route.spec.rules[0].matches[0]
        .headers
        .iter()
        .map(|h| (h.name.as_str(), h.value.as_str()))
        .collect();
    assert_eq!(headers, [("X-Env", "canary"), ("X-Other", "o")]);
    let out = run(&yaml);
    let Some(ObjectStatus::Route(r)) =
        out.statuses
            .get(&ObjectKey::new(Kind::HttpRoute, "infra", "r"))
    else {
        panic!("the route has a status")
    };
    assert_eq!(
        condition(&r.parents[0].conditions, "Accepted"),
        ("True", "Accepted")
    );
    // The same name twice, exactly, is refused by the API server: by
    // gwcore too.
    let exact = yaml.replace("name: x-env", "name: X-Env");
    let l = load_str("test.yaml", &exact);
    assert!(
        l.diagnostics.iter().any(|d| d.field.as_deref()
            == Some("spec.rules[0].matches[0].headers[1].name")
            && d.message.contains("duplicate")),
        "{:#?}",
        l.diagnostics
    );
}
