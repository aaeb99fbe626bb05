//! Every Namespace carries `kubernetes.io/metadata.name: <name>`, as the API
//! server (Kubernetes 1.22 and later) sets it, whether or not the input
//! wrote it: a Gateway selecting route namespaces by it admits their routes
//! from files as in a cluster (issue 14).

use gwcore::Snapshot;
use gwcore::engine::{ComputeOptions, Engine, compute};
use gwcore::load::load_str;
use gwcore::model::{Kind, Object, ObjectKey};
use gwcore::snapshot::NAMESPACE_NAME_LABEL;
use gwcore::status::{ObjectStatus, RouteParentStatus};

const CTRL: &str = "example.com/gateway-controller";
const NOW: &str = "2026-01-01T00:00:00Z";

/// A Gateway whose only listener admits routes from namespaces labelled
/// `kubernetes.io/metadata.name: team-a`; a route in team-a and one in
/// team-b. No Namespace here (see [`NAMESPACES`]).
const CLUSTER: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: c}
spec: {controllerName: example.com/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: c
  listeners:
  - name: http
    port: 80
    protocol: HTTP
    allowedRoutes:
      namespaces:
        from: Selector
        selector:
          matchLabels: {kubernetes.io/metadata.name: team-a}
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: team-a}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: team-b}
spec: {ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: team-a}
spec:
  parentRefs: [{name: gw, namespace: infra}]
  rules:
  - backendRefs: [{name: svc, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: team-b}
spec:
  parentRefs: [{name: gw, namespace: infra}]
  rules:
  - backendRefs: [{name: svc, port: 80}]
"#;

/// The Namespaces, as a manifest writes them: without the label, and team-b
/// with a wrong value of it (the API server would overwrite it).
const NAMESPACES: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: infra}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-a}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-b, labels: {kubernetes.io/metadata.name: team-a}}
"#;

fn objects(yaml: &str) -> Vec<Object> {
    let l = load_str("test.yaml", yaml);
    assert!(
        l.diagnostics.is_empty(),
        "unexpected diagnostics: {:#?}",
        l.diagnostics
    );
    l.objects.into_iter().map(|(o, _)| o).collect()
}

fn route_parent(status: Option<&ObjectStatus>, ns: &str) -> RouteParentStatus {
    match status {
        Some(ObjectStatus::Route(r)) if r.parents.len() == 1 => r.parents[0].clone(),
        other => panic!("route {ns}/r: expected one parent status, got {other:?}"),
    }
}

fn accepted(p: &RouteParentStatus) -> (&str, &str) {
    let c = p
        .conditions
        .iter()
        .find(|c| c.type_ == "Accepted")
        .unwrap_or_else(|| panic!("no Accepted condition in {p:?}"));
    (c.status.as_str(), c.reason.as_str())
}

fn attached_routes(status: Option<&ObjectStatus>) -> i32 {
    match status {
        Some(ObjectStatus::Gateway(g)) => {
            assert_eq!(g.listeners.len(), 1, "{g:?}");
            g.listeners[0].attached_routes
        }
        other => panic!("expected a Gateway status, got {other:?}"),
    }
}

fn key(kind: Kind, ns: &str, name: &str) -> ObjectKey {
    ObjectKey::new(kind, ns, name)
}

#[test]
fn every_namespace_carries_its_name_label() {
    let snap = Snapshot::from_objects(objects(NAMESPACES));
    for name in ["infra", "team-a", "team-b"] {
        let ns = snap
            .get(&key(Kind::Namespace, "", name))
            .unwrap_or_else(|| panic!("namespace {name}"));
        assert_eq!(
            ns.meta()
                .labels
                .get(NAMESPACE_NAME_LABEL)
                .map(String::as_str),
            Some(name),
            "namespace {name}: {:?}",
            ns.meta().labels
        );
    }
    // A replacement gets it too, and other labels are kept.
    let mut snap = snap;
    let mut team_a = objects(NAMESPACES).remove(1);
    team_a
        .meta_mut()
        .labels
        .insert("tier".to_string(), "gold".to_string());
    snap.insert(team_a);
    let labels = &snap
        .get(&key(Kind::Namespace, "", "team-a"))
        .expect("team-a")
        .meta()
        .labels;
    assert_eq!(
        labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect::<Vec<_>>(),
        [(NAMESPACE_NAME_LABEL, "team-a"), ("tier", "gold")]
    );
}

#[test]
fn a_gateway_selecting_by_the_name_label_admits_the_route_compute() {
    let mut all = objects(CLUSTER);
    all.extend(objects(NAMESPACES));
    let out = compute(
        &Snapshot::from_objects(all),
        &ComputeOptions::new(CTRL, NOW),
    );

    let a = route_parent(
        out.statuses.get(&key(Kind::HttpRoute, "team-a", "r")),
        "team-a",
    );
    assert_eq!(accepted(&a), ("True", "Accepted"), "{a:?}");
    let b = route_parent(
        out.statuses.get(&key(Kind::HttpRoute, "team-b", "r")),
        "team-b",
    );
    assert_eq!(accepted(&b), ("False", "NotAllowedByListeners"), "{b:?}");
    assert_eq!(
        attached_routes(out.statuses.get(&key(Kind::Gateway, "infra", "gw"))),
        1
    );
}

#[test]
fn a_gateway_selecting_by_the_name_label_admits_the_route_incremental() {
    let mut engine = Engine::new(ComputeOptions::new(CTRL, NOW));
    for o in objects(CLUSTER) {
        engine.apply(o);
    }
    // Without its Namespace, team-a has no labels: the selector refuses.
    let a = route_parent(
        engine.statuses().get(&key(Kind::HttpRoute, "team-a", "r")),
        "team-a",
    );
    assert_eq!(accepted(&a), ("False", "NotAllowedByListeners"), "{a:?}");

    for o in objects(NAMESPACES) {
        engine.apply(o);
    }
    let a = route_parent(
        engine.statuses().get(&key(Kind::HttpRoute, "team-a", "r")),
        "team-a",
    );
    assert_eq!(accepted(&a), ("True", "Accepted"), "{a:?}");
    let b = route_parent(
        engine.statuses().get(&key(Kind::HttpRoute, "team-b", "r")),
        "team-b",
    );
    assert_eq!(accepted(&b), ("False", "NotAllowedByListeners"), "{b:?}");
    assert_eq!(
        attached_routes(engine.statuses().get(&key(Kind::Gateway, "infra", "gw"))),
        1
    );
    // The same as a full computation of the same objects.
    assert_eq!(
        engine.computed(),
        compute(engine.snapshot(), engine.options())
    );
}
