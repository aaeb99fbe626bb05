//! Default Gateways (GEP-3793, experimental channel): a Gateway whose
//! `spec.defaultScope` is `All` claims the routes whose
//! `spec.useDefaultGateways` is `All`, as if they named it in their
//! parentRefs, and says so with a `DefaultGateway` condition. Both fields
//! used to be ignored: such a route, with no parentRef, was dropped with
//! no status at all (issue 14, item 5).

use gwcore::engine::{ComputeOptions, Computed, Engine, compute};
use gwcore::load::load_str;
use gwcore::model::{Kind, Object, ObjectKey};
use gwcore::status::{Condition, GatewayStatus, ObjectStatus, RouteParentStatus};

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
kind: Namespace
metadata: {name: app}
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: app}
spec: {ports: [{port: 80}]}
"#;

/// A Gateway in `infra`; `extra` goes into its spec (`defaultScope: All`...).
fn gateway(name: &str, extra: &str, from: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\n\
         metadata: {{name: {name}, namespace: infra}}\n\
         spec:\n  gatewayClassName: c\n{extra}  listeners:\n\
         \x20 - name: http\n    port: 80\n    protocol: HTTP\n\
         \x20   allowedRoutes: {{namespaces: {{from: {from}}}}}\n\
         \x20 - name: other\n    port: 81\n    protocol: HTTP\n\
         \x20   allowedRoutes: {{namespaces: {{from: {from}}}}}\n"
    )
}

/// An HTTPRoute `r` in namespace `ns`; `extra` goes into its spec.
fn route(ns: &str, extra: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{name: r, namespace: {ns}}}\n\
         spec:\n{extra}  rules: [{{backendRefs: [{{name: svc, namespace: app, port: 80}}]}}]\n"
    )
}

fn objects(yaml: &str) -> Vec<Object> {
    let l = load_str("test.yaml", yaml);
    assert!(
        l.diagnostics.is_empty(),
        "the experimental CRDs accept this; gwcore must read it: {:#?}",
        l.diagnostics
    );
    l.into_objects().collect()
}

fn run(yaml: &str) -> Computed {
    let snap = gwcore::Snapshot::from_objects(objects(yaml));
    compute(&snap, &ComputeOptions::new(CTRL, NOW))
}

fn gw_key(name: &str) -> ObjectKey {
    ObjectKey::new(Kind::Gateway, "infra", name)
}

fn gateway_status<'a>(out: &'a Computed, name: &str) -> &'a GatewayStatus {
    match out.statuses.get(&gw_key(name)) {
        Some(ObjectStatus::Gateway(g)) => g,
        other => panic!("no status for Gateway {name}: {other:?}"),
    }
}

/// The route's `status.parents`, as (parent namespace/name, sectionName,
/// Accepted status, reason).
fn parents(out: &Computed, ns: &str) -> Vec<(String, Option<String>, String, String)> {
    let key = ObjectKey::new(Kind::HttpRoute, ns, "r");
    let list: &[RouteParentStatus] = match out.statuses.get(&key) {
        Some(ObjectStatus::Route(r)) => &r.parents,
        None => &[],
        other => panic!("not a route status: {other:?}"),
    };
    list.iter()
        .map(|p| {
            let (status, reason) = condition(&p.conditions, "Accepted")
                .unwrap_or_else(|| panic!("no Accepted in {p:?}"));
            (
                format!(
                    "{}/{}",
                    p.parent_ref.namespace.as_deref().unwrap_or(""),
                    p.parent_ref.name
                ),
                p.parent_ref.section_name.clone(),
                status,
                reason,
            )
        })
        .collect()
}

fn condition(conds: &[Condition], ty: &str) -> Option<(String, String)> {
    conds
        .iter()
        .find(|c| c.type_ == ty)
        .map(|c| (c.status.clone(), c.reason.clone()))
}

fn attached(g: &GatewayStatus) -> Vec<i32> {
    g.listeners.iter().map(|l| l.attached_routes).collect()
}

fn accepted(parent: &str) -> (String, Option<String>, String, String) {
    (parent.into(), None, "True".into(), "Accepted".into())
}

#[test]
fn a_default_gateway_claims_a_route_that_asks_for_one_without_naming_it() {
    let out = run(&format!(
        "{BASE}{}{}",
        gateway("gw", "  defaultScope: All\n", "All"),
        route("app", "  useDefaultGateways: All\n"),
    ));
    assert_eq!(parents(&out, "app"), vec![accepted("infra/gw")]);
    let g = gateway_status(&out, "gw");
    assert_eq!(attached(g), vec![1, 1], "attached to every listener");
    assert_eq!(
        condition(&g.conditions, "DefaultGateway"),
        Some(("True".into(), "DefaultGateway".into()))
    );
    // The route is served: it is in the Gateway's routing.
    let routing = &out.routing[&gw_key("gw")];
    let in_table = routing
        .listeners
        .iter()
        .flat_map(|l| l.routes.iter())
        .filter(|r| r.key == ObjectKey::new(Kind::HttpRoute, "app", "r"))
        .count();
    assert_eq!(in_table, 2, "one attachment per listener: {routing:?}");
}

#[test]
fn every_default_gateway_claims_the_route() {
    // GEP-3793: "Gateways MUST NOT attempt to enforce a single default
    // Gateway".
    let out = run(&format!(
        "{BASE}{}{}{}{}",
        gateway("a", "  defaultScope: All\n", "All"),
        gateway("b", "  defaultScope: All\n", "All"),
        gateway("plain", "", "All"),
        route("app", "  useDefaultGateways: All\n"),
    ));
    assert_eq!(
        parents(&out, "app"),
        vec![accepted("infra/a"), accepted("infra/b")]
    );
    let plain = gateway_status(&out, "plain");
    assert_eq!(attached(plain), vec![0, 0]);
    assert_eq!(condition(&plain.conditions, "DefaultGateway"), None);
}

#[test]
fn without_a_default_gateway_the_route_is_attached_to_none() {
    // "If no Gateway has spec.defaultScope set, then all Gateways MUST
    // ignore spec.useDefaultGateway in all Routes."
    let out = run(&format!(
        "{BASE}{}{}",
        gateway("gw", "  defaultScope: None\n", "All"),
        route("app", "  useDefaultGateways: All\n"),
    ));
    assert_eq!(parents(&out, "app"), vec![]);
    let g = gateway_status(&out, "gw");
    assert_eq!(attached(g), vec![0, 0]);
    assert_eq!(condition(&g.conditions, "DefaultGateway"), None);
}

#[test]
fn a_route_that_does_not_ask_is_not_claimed() {
    let out = run(&format!(
        "{BASE}{}{}",
        gateway("gw", "  defaultScope: All\n", "All"),
        route("app", "  useDefaultGateways: None\n"),
    ));
    assert_eq!(parents(&out, "app"), vec![]);
    assert_eq!(attached(gateway_status(&out, "gw")), vec![0, 0]);
}

#[test]
fn a_default_gateway_still_applies_its_allowed_routes() {
    // "The rules for which Routes may bind to a Gateway do not change for a
    // default Gateway": a listener admitting only its own namespace refuses
    // the route, and the route's status says so, as for a named parent.
    let out = run(&format!(
        "{BASE}{}{}",
        gateway("gw", "  defaultScope: All\n", "Same"),
        route("app", "  useDefaultGateways: All\n"),
    ));
    assert_eq!(
        parents(&out, "app"),
        vec![(
            "infra/gw".into(),
            None,
            "False".into(),
            "NotAllowedByListeners".into()
        )]
    );
    assert_eq!(attached(gateway_status(&out, "gw")), vec![0, 0]);
}

#[test]
fn a_default_gateway_the_route_names_is_attached_as_named() {
    // The explicit parentRef (one listener) decides; the default claim adds
    // no second entry for the same Gateway.
    let out = run(&format!(
        "{BASE}{}{}",
        gateway("gw", "  defaultScope: All\n", "All"),
        route(
            "app",
            "  useDefaultGateways: All\n  parentRefs: [{name: gw, namespace: infra, sectionName: http}]\n"
        ),
    ));
    assert_eq!(
        parents(&out, "app"),
        vec![(
            "infra/gw".into(),
            Some("http".into()),
            "True".into(),
            "Accepted".into()
        )]
    );
    assert_eq!(attached(gateway_status(&out, "gw")), vec![1, 0]);
}

#[test]
fn an_unknown_default_scope_is_reported_on_the_gateway() {
    // The CRD's enum refuses it; a file given to `gwcore check` may hold it.
    let out = run(&format!(
        "{BASE}{}{}",
        gateway("gw", "  defaultScope: Everything\n", "All"),
        route("app", "  useDefaultGateways: All\n"),
    ));
    let g = gateway_status(&out, "gw");
    assert_eq!(
        condition(&g.conditions, "DefaultGateway"),
        Some(("False".into(), "UnsupportedValue".into()))
    );
    let msg = &g
        .conditions
        .iter()
        .find(|c| c.type_ == "DefaultGateway")
        .expect("DefaultGateway")
        .message;
    assert!(msg.contains("spec.defaultScope"), "{msg}");
    assert_eq!(parents(&out, "app"), vec![]);
}

#[test]
fn grpc_and_tls_routes_ask_for_default_gateways_too() {
    let yaml = format!(
        "{BASE}{}---\napiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\n\
         metadata: {{name: g, namespace: app}}\n\
         spec:\n  useDefaultGateways: All\n  rules: [{{backendRefs: [{{name: svc, port: 80}}]}}]\n",
        gateway("gw", "  defaultScope: All\n", "All"),
    );
    let out = run(&yaml);
    let key = ObjectKey::new(Kind::GrpcRoute, "app", "g");
    let Some(ObjectStatus::Route(r)) = out.statuses.get(&key) else {
        panic!("the GRPCRoute has a status: {:?}", out.statuses.keys())
    };
    assert_eq!(r.parents.len(), 1, "{r:?}");
    assert_eq!(r.parents[0].parent_ref.name, "gw");
}

/// The incremental engine, fed `steps` one object at a time, ends where a
/// full computation of the final objects does.
fn incremental_matches_full(steps: &[&str]) -> Engine {
    let mut engine = Engine::new(ComputeOptions::new(CTRL, NOW));
    for step in steps {
        for o in objects(step) {
            engine.apply(o);
        }
    }
    let full = compute(engine.snapshot(), &ComputeOptions::new(CTRL, NOW));
    assert_eq!(engine.statuses(), &full.statuses);
    engine
}

#[test]
fn a_gateway_that_becomes_default_claims_routes_already_there_and_lets_go_after() {
    let plain = gateway("gw", "", "All");
    let default = gateway("gw", "  defaultScope: All\n", "All");
    let r = route("app", "  useDefaultGateways: All\n");
    let engine = incremental_matches_full(&[BASE, &plain, &r, &default]);
    let out = engine.computed();
    assert_eq!(parents(&out, "app"), vec![accepted("infra/gw")]);
    assert_eq!(attached(gateway_status(&out, "gw")), vec![1, 1]);

    let engine = incremental_matches_full(&[BASE, &default, &r, &plain]);
    let out = engine.computed();
    assert_eq!(parents(&out, "app"), vec![]);
    assert_eq!(attached(gateway_status(&out, "gw")), vec![0, 0]);

    // Deleted: the route is let go.
    let mut engine = incremental_matches_full(&[BASE, &default, &r]);
    engine.delete(&gw_key("gw"));
    let full = compute(engine.snapshot(), &ComputeOptions::new(CTRL, NOW));
    assert_eq!(engine.statuses(), &full.statuses);
    assert_eq!(parents(&engine.computed(), "app"), vec![]);
}

#[test]
fn a_route_that_starts_asking_is_claimed_and_one_that_stops_is_let_go() {
    let default = gateway("gw", "  defaultScope: All\n", "All");
    let asking = route("app", "  useDefaultGateways: All\n");
    let not_asking = route("app", "");
    let engine = incremental_matches_full(&[BASE, &default, &not_asking, &asking]);
    assert_eq!(
        parents(&engine.computed(), "app"),
        vec![accepted("infra/gw")]
    );
    let engine = incremental_matches_full(&[BASE, &default, &asking, &not_asking]);
    assert_eq!(parents(&engine.computed(), "app"), vec![]);
    assert_eq!(
        attached(gateway_status(&engine.computed(), "gw")),
        vec![0, 0]
    );
}
