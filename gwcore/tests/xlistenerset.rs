//! `XListenerSet` (`gateway.networking.x-k8s.io/v1alpha1`, the experimental
//! channel of Gateway API v1.3 and v1.4) is read and attached exactly like
//! a `ListenerSet`; a route's parentRef must name it as served.

use gwcore::Snapshot;
use gwcore::engine::{ComputeOptions, Computed, compute};
use gwcore::load::{Severity, load_str};
use gwcore::model::{Kind, ListenerSetKind, Object, ObjectKey};
use gwcore::status::{ListenerSetStatus, ObjectStatus, RouteStatus};

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
metadata: {name: team-a}
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: team-a}
spec: {ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: c
  allowedListeners: {namespaces: {from: All}}
  listeners:
  - {name: http, port: 80, protocol: HTTP, hostname: a.com}
"#;

/// A set `ls` in `team-a` with two listeners, served as `api_version` /
/// `kind`, and a route naming it by `parent_ref`.
fn scenario(api_version: &str, kind: &str, parent_ref: &str) -> String {
    format!(
        "{BASE}---\napiVersion: {api_version}\nkind: {kind}\nmetadata: {{name: ls, namespace: team-a}}\n\
         spec:\n  parentRef: {{name: gw, namespace: infra}}\n  listeners:\n\
         \x20 - {{name: one, port: 80, protocol: HTTP, hostname: b.com}}\n\
         \x20 - {{name: two, port: 8080, protocol: HTTP}}\n\
         ---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: team-a}}\n\
         spec:\n  parentRefs: [{parent_ref}]\n  rules: [{{backendRefs: [{{name: svc, port: 80}}]}}]\n"
    )
}

const X: (&str, &str, &str) = (
    "gateway.networking.x-k8s.io/v1alpha1",
    "XListenerSet",
    "{group: gateway.networking.x-k8s.io, kind: XListenerSet, name: ls, sectionName: one}",
);
const STANDARD: (&str, &str, &str) = (
    "gateway.networking.k8s.io/v1",
    "ListenerSet",
    "{kind: ListenerSet, name: ls, sectionName: one}",
);

fn snapshot(yaml: &str) -> Snapshot {
    let l = load_str("test.yaml", yaml);
    assert!(l.diagnostics.is_empty(), "{:#?}", l.diagnostics);
    l.to_snapshot()
}

fn run(yaml: &str) -> Computed {
    compute(&snapshot(yaml), &ComputeOptions::new(CTRL, NOW))
}

fn set_status(out: &Computed) -> &ListenerSetStatus {
    match out
        .statuses
        .get(&ObjectKey::new(Kind::ListenerSet, "team-a", "ls"))
    {
        Some(ObjectStatus::ListenerSet(s)) => s,
        other => panic!("no ListenerSet status: {other:?}"),
    }
}

fn route_status(out: &Computed) -> Option<&RouteStatus> {
    match out
        .statuses
        .get(&ObjectKey::new(Kind::HttpRoute, "team-a", "r"))
    {
        Some(ObjectStatus::Route(s)) => Some(s),
        None => None,
        other => panic!("not a route status: {other:?}"),
    }
}

fn condition<'a>(conds: &'a [gwcore::status::Condition], ty: &str) -> (&'a str, &'a str) {
    let c = conds
        .iter()
        .find(|c| c.type_ == ty)
        .unwrap_or_else(|| panic!("no {ty} in {conds:?}"));
    (c.status.as_str(), c.reason.as_str())
}

#[test]
fn an_xlistenerset_is_read_as_a_listenerset_served_under_its_own_name() {
    let (api_version, kind, parent) = X;
    let loaded = load_str("x.yaml", &scenario(api_version, kind, parent));
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
    let (set, origin) = loaded
        .objects
        .iter()
        .find(|(o, _)| o.kind() == Kind::ListenerSet)
        .expect("the XListenerSet is read");
    let Object::ListenerSet(ls) = set else {
        panic!("{set:?}")
    };
    assert_eq!(ls.served_as, ListenerSetKind::XListenerSet);
    assert_eq!(ls.spec.listeners.len(), 2);
    assert_eq!(origin.api_version, "gateway.networking.x-k8s.io/v1alpha1");
    assert_eq!(set.manifest_kind(), "XListenerSet");
    // Written back as read.
    let m = set.to_manifest();
    assert_eq!(m["kind"], "XListenerSet");
    assert_eq!(m["apiVersion"], "gateway.networking.x-k8s.io/v1alpha1");
}

#[test]
fn a_name_in_the_wrong_group_is_not_read() {
    for (api_version, kind) in [
        ("gateway.networking.k8s.io/v1", "XListenerSet"),
        ("gateway.networking.x-k8s.io/v1alpha1", "ListenerSet"),
        ("gateway.networking.x-k8s.io/v1", "XListenerSet"),
    ] {
        let yaml = format!(
            "apiVersion: {api_version}\nkind: {kind}\nmetadata: {{name: ls, namespace: a}}\n\
             spec: {{parentRef: {{name: gw}}, listeners: [{{name: l, port: 80, protocol: HTTP}}]}}\n"
        );
        let loaded = load_str("x.yaml", &yaml);
        assert!(loaded.objects.is_empty(), "{kind} at {api_version} read");
        assert_eq!(loaded.diagnostics.len(), 1, "{:#?}", loaded.diagnostics);
        let d = &loaded.diagnostics[0];
        assert_eq!(d.severity, Severity::Warning);
        assert_eq!(d.field.as_deref(), Some("apiVersion"));
        assert!(
            d.message
                .contains(&format!("{kind} is not served as {api_version}")),
            "{d}"
        );
    }
}

#[test]
fn an_xlistenerset_attaches_and_gets_the_statuses_of_a_listenerset() {
    let x = run(&scenario(X.0, X.1, X.2));
    let standard = run(&scenario(STANDARD.0, STANDARD.1, STANDARD.2));
    let set = set_status(&x);
    assert_eq!(condition(&set.conditions, "Accepted"), ("True", "Accepted"));
    assert_eq!(
        condition(&set.conditions, "Programmed"),
        ("True", "Programmed")
    );
    let names: Vec<&str> = set.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(names, ["one", "two"]);
    assert_eq!(set.listeners[0].attached_routes, 1, "the route names `one`");
    assert_eq!(set.listeners[1].attached_routes, 0);
    // The same statuses as the set gets as a ListenerSet, its Gateway's too.
    assert_eq!(set, set_status(&standard));
    let gw = ObjectKey::new(Kind::Gateway, "infra", "gw");
    let Some(ObjectStatus::Gateway(g)) = x.statuses.get(&gw) else {
        panic!("no Gateway status")
    };
    assert_eq!(g.attached_listener_sets, Some(1));
    assert_eq!(x.statuses.get(&gw), standard.statuses.get(&gw));
    // The route is accepted on the set, its parentRef echoed as written.
    let parents = &route_status(&x).expect("route status").parents;
    assert_eq!(parents.len(), 1);
    let p = &parents[0];
    assert_eq!(
        p.parent_ref.group.as_deref(),
        Some("gateway.networking.x-k8s.io")
    );
    assert_eq!(p.parent_ref.kind.as_deref(), Some("XListenerSet"));
    assert_eq!(p.parent_ref.section_name.as_deref(), Some("one"));
    assert_eq!(condition(&p.conditions, "Accepted"), ("True", "Accepted"));
    let conds_standard = &route_status(&standard).expect("route status").parents[0].conditions;
    assert_eq!(&p.conditions, conds_standard);
}

#[test]
fn a_parent_ref_must_name_the_set_as_it_is_served() {
    // The set is an XListenerSet; a parentRef naming a ListenerSet (of the
    // Gateway API group) or an XListenerSet of the wrong group names
    // another resource, which does not exist: no attachment, no status
    // from us, as for any parent that is not found.
    for parent in [
        "{kind: ListenerSet, name: ls}",
        "{group: gateway.networking.k8s.io, kind: XListenerSet, name: ls}",
    ] {
        let out = run(&scenario(X.0, X.1, parent));
        assert_eq!(route_status(&out), None, "{parent}");
        assert!(
            set_status(&out)
                .listeners
                .iter()
                .all(|l| l.attached_routes == 0),
            "{parent}"
        );
    }
    // And the other way round.
    let out = run(&scenario(STANDARD.0, STANDARD.1, X.2));
    assert_eq!(route_status(&out), None);
}

#[test]
fn a_reference_grant_for_an_xlistenerset_names_its_group_and_kind() {
    // A certificate in another namespace, granted to XListenerSets of
    // team-a: the set's HTTPS listener resolves it. A grant naming
    // ListenerSets does not.
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let key = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n";
    let secret = format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: cert, namespace: infra}}\ntype: kubernetes.io/tls\n\
         stringData:\n  tls.crt: {pem:?}\n  tls.key: {key:?}\n"
    );
    let grant = |group: &str, kind: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {{name: g, namespace: infra}}\n\
             spec:\n  from: [{{group: {group}, kind: {kind}, namespace: team-a}}]\n  to: [{{group: '', kind: Secret}}]\n"
        )
    };
    let set = "---\napiVersion: gateway.networking.x-k8s.io/v1alpha1\nkind: XListenerSet\nmetadata: {name: ls, namespace: team-a}\n\
         spec:\n  parentRef: {name: gw, namespace: infra}\n  listeners:\n\
         \x20 - {name: tls, port: 443, protocol: HTTPS, hostname: b.com, tls: {certificateRefs: [{name: cert, namespace: infra}]}}\n";
    let resolved = |grant: String| {
        let out = run(&format!("{BASE}{secret}{set}{grant}"));
        let s = set_status(&out);
        condition(&s.listeners[0].conditions, "ResolvedRefs")
            .0
            .to_string()
    };
    assert_eq!(
        resolved(grant("gateway.networking.x-k8s.io", "XListenerSet")),
        "True"
    );
    assert_eq!(
        resolved(grant("gateway.networking.k8s.io", "ListenerSet")),
        "False"
    );
}
