//! Behaviour of the attachment and status engine, through the public API.

use gwcore::Snapshot;
use gwcore::engine::{ComputeOptions, Computed, compute};
use gwcore::load::load_str;
use gwcore::model::{Kind, Object, ObjectKey};
use gwcore::status::{Condition, ObjectStatus, RouteParentStatus};

const CTRL: &str = "example.com/gateway-controller";
const NOW: &str = "2026-01-01T00:00:00Z";

fn snapshot(yaml: &str) -> Snapshot {
    let l = load_str("test.yaml", yaml);
    assert!(
        l.diagnostics.is_empty(),
        "unexpected diagnostics: {:#?}",
        l.diagnostics
    );
    Snapshot::from_objects(l.objects.into_iter().map(|(o, _)| o))
}

fn run(yaml: &str) -> Computed {
    compute(&snapshot(yaml), &ComputeOptions::new(CTRL, NOW))
}

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
metadata: {name: team-a, labels: {access: "yes", tier: gold}}
---
apiVersion: v1
kind: Namespace
metadata: {name: team-b, labels: {tier: silver}}
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
"#;

fn gateway(listeners: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: infra}}\nspec:\n  gatewayClassName: c\n  listeners:\n{listeners}"
    )
}

fn route(ns: &str, name: &str, extra_spec: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  parentRefs: [{{name: gw, namespace: infra}}]\n{extra_spec}  rules:\n  - backendRefs: [{{name: svc, port: 80}}]\n"
    )
}

fn parents(out: &Computed, ns: &str, name: &str) -> Vec<RouteParentStatus> {
    match out.statuses.get(&ObjectKey::new(Kind::HttpRoute, ns, name)) {
        Some(ObjectStatus::Route(r)) => r.parents.clone(),
        other => panic!("no route status for {ns}/{name}: {other:?}"),
    }
}

fn condition<'a>(conds: &'a [Condition], ty: &str) -> &'a Condition {
    conds
        .iter()
        .find(|c| c.type_ == ty)
        .unwrap_or_else(|| panic!("no {ty} in {conds:?}"))
}

fn accepted(out: &Computed, ns: &str, name: &str) -> (String, String) {
    let p = parents(out, ns, name);
    let c = condition(&p[0].conditions, "Accepted");
    (c.status.clone(), c.reason.clone())
}

fn listener_attached(out: &Computed, listener: &str) -> i32 {
    match out
        .statuses
        .get(&ObjectKey::new(Kind::Gateway, "infra", "gw"))
    {
        Some(ObjectStatus::Gateway(g)) => g
            .listeners
            .iter()
            .find(|l| l.name == listener)
            .map(|l| l.attached_routes)
            .expect("listener"),
        other => panic!("no gateway status: {other:?}"),
    }
}

fn tf(s: &str, r: &str) -> (String, String) {
    (s.to_string(), r.to_string())
}

#[test]
fn selector_admits_labelled_namespaces_only() {
    let y = format!(
        "{BASE}{}{}{}",
        gateway(
            "  - name: http\n    port: 80\n    protocol: HTTP\n    allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {access: \"yes\"}}}}\n"
        ),
        route("team-a", "a", ""),
        route("team-b", "b", ""),
    );
    let out = run(&y);
    assert_eq!(accepted(&out, "team-a", "a"), tf("True", "Accepted"));
    assert_eq!(
        accepted(&out, "team-b", "b"),
        tf("False", "NotAllowedByListeners")
    );
    assert_eq!(
        listener_attached(&out, "http"),
        1,
        "attachedRoutes counts accepted routes only"
    );
    assert_eq!(out.refusals.len(), 1);
    assert!(
        out.refusals[0]
            .message
            .contains("namespace team-b lacks label access=yes"),
        "{:?}",
        out.refusals
    );
    // The refused route is not in the routing table.
    let routing = &out.routing[&ObjectKey::new(Kind::Gateway, "infra", "gw")];
    let keys: Vec<_> = routing.listeners[0]
        .routes
        .iter()
        .map(|r| r.key.name.clone())
        .collect();
    assert_eq!(keys, vec!["a"]);
}

#[test]
fn match_expressions_are_anded_with_match_labels() {
    let y = format!(
        "{BASE}{}{}{}",
        gateway(
            "  - name: http\n    port: 80\n    protocol: HTTP\n    allowedRoutes: {namespaces: {from: Selector, selector: {matchExpressions: [{key: tier, operator: In, values: [gold, silver]}, {key: access, operator: DoesNotExist}]}}}\n"
        ),
        route("team-a", "a", ""),
        route("team-b", "b", ""),
    );
    let out = run(&y);
    assert_eq!(
        accepted(&out, "team-a", "a"),
        tf("False", "NotAllowedByListeners"),
        "team-a has the access label"
    );
    assert_eq!(accepted(&out, "team-b", "b"), tf("True", "Accepted"));
}

#[test]
fn default_allowed_routes_is_same_namespace() {
    let y = format!(
        "{BASE}{}{}",
        gateway("  - {name: http, port: 80, protocol: HTTP}\n"),
        route("team-a", "a", "")
    );
    assert_eq!(
        accepted(&run(&y), "team-a", "a"),
        tf("False", "NotAllowedByListeners")
    );
}

#[test]
fn section_name_and_port_select_listeners() {
    let listeners = "  - {name: one, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}\n  - {name: two, port: 8080, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}\n";
    let y = format!(
        "{BASE}{}{}{}{}",
        gateway(listeners),
        route("team-a", "by-section", "")
            .replace("namespace: infra}]", "namespace: infra, sectionName: two}]"),
        route("team-a", "by-port", "")
            .replace("namespace: infra}]", "namespace: infra, port: 80}]"),
        route("team-a", "missing", "").replace(
            "namespace: infra}]",
            "namespace: infra, sectionName: three}]"
        ),
    );
    let out = run(&y);
    assert_eq!(
        accepted(&out, "team-a", "by-section"),
        tf("True", "Accepted")
    );
    assert_eq!(accepted(&out, "team-a", "by-port"), tf("True", "Accepted"));
    assert_eq!(
        accepted(&out, "team-a", "missing"),
        tf("False", "NoMatchingParent")
    );
    assert_eq!(listener_attached(&out, "one"), 1);
    assert_eq!(listener_attached(&out, "two"), 1);
    let p = parents(&out, "team-a", "by-section");
    assert_eq!(p[0].parent_ref.section_name.as_deref(), Some("two"));
    assert_eq!(
        p[0].parent_ref.kind.as_deref(),
        Some("Gateway"),
        "status names the parent's kind"
    );
}

#[test]
fn wildcard_listener_hostname_never_matches_the_apex() {
    let y = format!(
        "{BASE}{}{}{}",
        gateway(
            "  - {name: http, port: 80, protocol: HTTP, hostname: '*.example.com', allowedRoutes: {namespaces: {from: All}}}\n"
        ),
        route("team-a", "apex", "  hostnames: [example.com]\n"),
        route(
            "team-a",
            "sub",
            "  hostnames: [example.com, a.b.example.com]\n"
        ),
    );
    let out = run(&y);
    assert_eq!(
        accepted(&out, "team-a", "apex"),
        tf("False", "NoMatchingListenerHostname")
    );
    assert_eq!(accepted(&out, "team-a", "sub"), tf("True", "Accepted"));
    let routing = &out.routing[&ObjectKey::new(Kind::Gateway, "infra", "gw")];
    assert_eq!(
        routing.listeners[0].routes[0].hostnames,
        vec!["a.b.example.com"],
        "only the intersection is served"
    );
}

#[test]
fn route_kinds_outside_the_protocol_are_invalid() {
    let y = format!(
        "{BASE}{}",
        gateway(
            "  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {kinds: [{kind: HTTPRoute}, {kind: TCPRoute}]}}\n  - {name: tcp, port: 90, protocol: TCP, allowedRoutes: {kinds: [{kind: HTTPRoute}]}}\n"
        ),
    );
    let out = run(&y);
    let Some(ObjectStatus::Gateway(g)) =
        out.statuses
            .get(&ObjectKey::new(Kind::Gateway, "infra", "gw"))
    else {
        panic!()
    };
    let http = &g.listeners[0];
    assert_eq!(http.supported_kinds.len(), 1);
    assert_eq!(http.supported_kinds[0].kind, "HTTPRoute");
    assert_eq!(
        condition(&http.conditions, "ResolvedRefs").reason,
        "InvalidRouteKinds"
    );
    assert!(g.listeners[1].supported_kinds.is_empty());
}

#[test]
fn backend_references_are_resolved_with_reference_grants() {
    let rules = |target: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: team-a}}\nspec:\n  parentRefs: [{{name: gw, namespace: infra}}]\n  rules:\n  - backendRefs: [{target}]\n"
        )
    };
    let gw = gateway(
        "  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}\n",
    );
    let resolved = |extra: &str, target: &str| {
        let out = run(&format!("{BASE}{gw}{}{extra}", rules(target)));
        let p = parents(&out, "team-a", "r");
        let c = condition(&p[0].conditions, "ResolvedRefs");
        (
            c.status.clone(),
            c.reason.clone(),
            condition(&p[0].conditions, "Accepted").status.clone(),
        )
    };
    let grant = "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: g, namespace: team-b}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: team-a}]\n  to: [{group: '', kind: Service}]\n";
    assert_eq!(
        resolved("", "{name: svc, port: 80}"),
        ("True".into(), "ResolvedRefs".into(), "True".into())
    );
    assert_eq!(
        resolved("", "{name: svc, namespace: team-b, port: 80}"),
        ("False".into(), "RefNotPermitted".into(), "True".into())
    );
    assert_eq!(
        resolved(grant, "{name: svc, namespace: team-b, port: 80}"),
        ("True".into(), "ResolvedRefs".into(), "True".into())
    );
    assert_eq!(
        resolved("", "{name: nope, port: 80}"),
        ("False".into(), "BackendNotFound".into(), "True".into())
    );
    assert_eq!(
        resolved("", "{name: svc, port: 81}"),
        ("False".into(), "BackendNotFound".into(), "True".into())
    );
    assert_eq!(
        resolved("", "{group: example.com, kind: Bucket, name: b}"),
        ("False".into(), "InvalidKind".into(), "True".into())
    );
    // A grant for another kind of referrer does not count.
    let grpc_grant = grant.replace("kind: HTTPRoute", "kind: GRPCRoute");
    assert_eq!(
        resolved(&grpc_grant, "{name: svc, namespace: team-b, port: 80}").1,
        "RefNotPermitted"
    );
}

#[test]
fn certificate_refs_need_a_secret_and_a_grant() {
    let https = |cert: &str| {
        gateway(&format!(
            "  - name: https\n    port: 443\n    protocol: HTTPS\n    tls: {{certificateRefs: [{cert}]}}\n"
        ))
    };
    let reason = |yaml: &str| {
        let out = run(yaml);
        let Some(ObjectStatus::Gateway(g)) =
            out.statuses
                .get(&ObjectKey::new(Kind::Gateway, "infra", "gw"))
        else {
            panic!()
        };
        let c = condition(&g.listeners[0].conditions, "ResolvedRefs");
        (
            c.status.clone(),
            c.reason.clone(),
            condition(&g.listeners[0].conditions, "Programmed")
                .status
                .clone(),
        )
    };
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let key = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n";
    let secret = |ns: &str| {
        format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: cert, namespace: {ns}}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: {pem:?}\n  tls.key: {key:?}\n"
        )
    };
    assert_eq!(
        reason(&format!("{BASE}{}", https("{name: cert}"))).1,
        "InvalidCertificateRef"
    );
    assert_eq!(
        reason(&format!(
            "{BASE}{}{}",
            https("{name: cert}"),
            secret("infra")
        )),
        ("True".into(), "ResolvedRefs".into(), "True".into())
    );
    assert_eq!(
        reason(&format!(
            "{BASE}{}{}",
            https("{name: cert, namespace: team-a}"),
            secret("team-a")
        )),
        ("False".into(), "RefNotPermitted".into(), "False".into())
    );
    let grant = "---\napiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: g, namespace: team-a}\nspec:\n  from: [{group: gateway.networking.k8s.io, kind: Gateway, namespace: infra}]\n  to: [{group: '', kind: Secret, name: cert}]\n";
    assert_eq!(
        reason(&format!(
            "{BASE}{}{}{grant}",
            https("{name: cert, namespace: team-a}"),
            secret("team-a")
        ))
        .1,
        "ResolvedRefs"
    );
    assert_eq!(
        reason(&format!("{BASE}{}", https("{kind: ConfigMap, name: cert}"))).1,
        "InvalidCertificateRef"
    );
}

#[test]
fn unsupported_protocol_and_conflicts() {
    let y = format!(
        "{BASE}{}",
        gateway(
            "  - {name: http, port: 80, protocol: HTTP}\n  - {name: weird, port: 81, protocol: example.com/quic}\n  - {name: tcp-on-80, port: 80, protocol: TCP}\n  - {name: udp-on-80, port: 80, protocol: UDP}\n"
        ),
    );
    let out = run(&y);
    let Some(ObjectStatus::Gateway(g)) =
        out.statuses
            .get(&ObjectKey::new(Kind::Gateway, "infra", "gw"))
    else {
        panic!()
    };
    assert_eq!(condition(&g.conditions, "Accepted").status, "True");
    assert_eq!(
        condition(&g.conditions, "Accepted").reason,
        "ListenersNotValid"
    );
    let by = |n: &str| g.listeners.iter().find(|l| l.name == n).expect("listener");
    assert_eq!(
        condition(&by("weird").conditions, "Accepted").reason,
        "UnsupportedProtocol"
    );
    assert_eq!(
        condition(&by("tcp-on-80").conditions, "Conflicted").reason,
        "ProtocolConflict"
    );
    assert_eq!(
        condition(&by("http").conditions, "Conflicted").status,
        "False",
        "the first listener keeps the port"
    );
    assert_eq!(
        condition(&by("udp-on-80").conditions, "Conflicted").status,
        "False",
        "UDP shares a port with TCP-based listeners"
    );
    // Only usable listeners reach the routing table.
    let names: Vec<_> = out.routing[&ObjectKey::new(Kind::Gateway, "infra", "gw")]
        .listeners
        .iter()
        .map(|l| l.name.clone())
        .collect();
    assert_eq!(names, vec!["http", "udp-on-80"]);
}

#[test]
fn classes_of_other_controllers_are_ignored() {
    let y = format!(
        "{BASE}{}",
        gateway("  - {name: http, port: 80, protocol: HTTP}\n")
    );
    let out = compute(&snapshot(&y), &ComputeOptions::new("other.io/ctrl", NOW));
    assert!(out.statuses.is_empty());
    assert!(out.routing.is_empty());
}

#[test]
fn other_controllers_parent_entries_are_kept_in_place() {
    let y = format!(
        "{BASE}{}{}",
        gateway(
            "  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}\n"
        ),
        route("team-a", "a", ""),
    );
    let mut snap = snapshot(&y);
    let foreign = RouteParentStatus {
        parent_ref: gwcore::model::ParentReference {
            name: "theirs".into(),
            ..Default::default()
        },
        controller_name: "other.io/ctrl".into(),
        conditions: vec![],
    };
    let key = ObjectKey::new(Kind::HttpRoute, "team-a", "a");
    if let Some(Object::HttpRoute(r)) = snap.get_mut(&key) {
        r.status = Some(gwcore::status::RouteStatus {
            parents: vec![foreign.clone()],
        });
    }
    let out = compute(&snap, &ComputeOptions::new(CTRL, NOW));
    let p = parents(&out, "team-a", "a");
    assert_eq!(p.len(), 2);
    assert_eq!(
        p[0], foreign,
        "the other controller's entry is untouched and first"
    );
    assert_eq!(p[1].controller_name, CTRL);
}

#[test]
fn last_transition_time_moves_only_when_status_changes() {
    let y = format!(
        "{BASE}{}{}",
        gateway(
            "  - name: http\n    port: 80\n    protocol: HTTP\n    allowedRoutes: {namespaces: {from: Selector, selector: {matchLabels: {access: \"yes\"}}}}\n"
        ),
        route("team-a", "a", ""),
    );
    let mut snap = snapshot(&y);
    let write_back = |snap: &mut Snapshot, out: &Computed| snap.apply_statuses(&out.statuses);
    let first = compute(&snap, &ComputeOptions::new(CTRL, "2026-01-01T00:00:00Z"));
    write_back(&mut snap, &first);
    // Same input later: nothing changes, not even the times.
    let again = compute(&snap, &ComputeOptions::new(CTRL, "2026-01-02T00:00:00Z"));
    assert_eq!(first.statuses, again.statuses);
    // Remove the label: Accepted flips, its time moves; ResolvedRefs keeps its time.
    if let Some(Object::Namespace(n)) = snap.get_mut(&ObjectKey::new(Kind::Namespace, "", "team-a"))
    {
        n.metadata.labels.remove("access");
    }
    let flipped = compute(&snap, &ComputeOptions::new(CTRL, "2026-01-03T00:00:00Z"));
    let p = parents(&flipped, "team-a", "a");
    assert_eq!(condition(&p[0].conditions, "Accepted").status, "False");
    assert_eq!(
        condition(&p[0].conditions, "Accepted").last_transition_time,
        "2026-01-03T00:00:00Z"
    );
    assert_eq!(
        condition(&p[0].conditions, "ResolvedRefs").last_transition_time,
        "2026-01-01T00:00:00Z"
    );
}

#[test]
fn observed_generation_follows_metadata_generation() {
    let y = format!(
        "{BASE}{}{}",
        gateway(
            "  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}\n"
        ),
        route("team-a", "a", ""),
    )
    .replace(
        "metadata: {name: a, namespace: team-a}",
        "metadata: {name: a, namespace: team-a, generation: 7}",
    );
    let out = run(&y);
    let p = parents(&out, "team-a", "a");
    assert!(
        p[0].conditions
            .iter()
            .all(|c| c.observed_generation == Some(7))
    );
}

#[test]
fn listener_sets_merge_after_gateway_listeners() {
    let y = format!(
        "{BASE}{}\n  allowedListeners: {{namespaces: {{from: All}}}}\n{}",
        gateway("  - {name: http, port: 80, protocol: HTTP, hostname: a.com, allowedRoutes: {namespaces: {from: All}}}\n").trim_end(),
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: ListenerSet\nmetadata: {name: ls, namespace: team-a}\nspec:\n  parentRef: {name: gw, namespace: infra}\n  listeners:\n  - {name: same-host, port: 80, protocol: HTTP, hostname: a.com}\n  - {name: other-host, port: 80, protocol: HTTP, hostname: b.com}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: team-a}\nspec:\n  parentRefs: [{kind: ListenerSet, name: ls}]\n  rules: [{backendRefs: [{name: svc, port: 80}]}]\n",
    );
    let out = run(&y);
    let Some(ObjectStatus::ListenerSet(ls)) =
        out.statuses
            .get(&ObjectKey::new(Kind::ListenerSet, "team-a", "ls"))
    else {
        panic!("{:?}", out.statuses.keys())
    };
    assert_eq!(condition(&ls.conditions, "Accepted").status, "True");
    assert_eq!(
        condition(&ls.listeners[0].conditions, "Conflicted").reason,
        "HostnameConflict"
    );
    assert_eq!(
        condition(&ls.listeners[1].conditions, "Accepted").status,
        "True"
    );
    assert_eq!(ls.listeners[1].attached_routes, 1);
    let Some(ObjectStatus::Gateway(g)) =
        out.statuses
            .get(&ObjectKey::new(Kind::Gateway, "infra", "gw"))
    else {
        panic!()
    };
    assert_eq!(g.attached_listener_sets, Some(1));
    assert_eq!(
        g.listeners.len(),
        1,
        "the Gateway's status lists its own listeners"
    );
    assert_eq!(accepted(&out, "team-a", "r"), tf("True", "Accepted"));
}

#[test]
fn a_rule_with_an_unsupported_regex_is_dropped_and_reported() {
    let gw = gateway(
        "  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}\n",
    );
    // Look-ahead is not supported by Rust's regex: that rule is invalid.
    let rules = "  rules:\n  - matches: [{path: {type: RegularExpression, value: '/(?=x).*'}}]\n    backendRefs: [{name: svc, port: 80}]\n  - matches: [{path: {type: PathPrefix, value: /ok}}]\n    backendRefs: [{name: svc, port: 80}]\n";
    let y = format!(
        "{BASE}{gw}---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: team-a}}\nspec:\n  parentRefs: [{{name: gw, namespace: infra}}]\n{rules}"
    );
    let out = run(&y);
    let p = parents(&out, "team-a", "r");
    assert_eq!(condition(&p[0].conditions, "Accepted").status, "True");
    let pi = condition(&p[0].conditions, "PartiallyInvalid");
    assert_eq!(
        (pi.status.as_str(), pi.reason.as_str()),
        ("True", "UnsupportedValue")
    );
    assert!(pi.message.contains("rule 0"), "{}", pi.message);
    let routing = &out.routing[&ObjectKey::new(Kind::Gateway, "infra", "gw")];
    let gwcore::attachments::RouteRules::Http(rules) = &routing.listeners[0].routes[0].rules else {
        panic!("HTTP rules")
    };
    assert_eq!(
        rules.iter().map(|r| r.index).collect::<Vec<_>>(),
        vec![1],
        "only the valid rule is served"
    );

    // With only the bad rule, the route is not accepted.
    let only_bad = y.replace("  - matches: [{path: {type: PathPrefix, value: /ok}}]\n    backendRefs: [{name: svc, port: 80}]\n", "");
    let out = run(&only_bad);
    let p = parents(&out, "team-a", "r");
    let a = condition(&p[0].conditions, "Accepted");
    assert_eq!(
        (a.status.as_str(), a.reason.as_str()),
        ("False", "UnsupportedValue")
    );
    assert!(
        out.routing[&ObjectKey::new(Kind::Gateway, "infra", "gw")].listeners[0]
            .routes
            .is_empty()
    );
}

/// The routing input carries each HTTPS listener's client certificate
/// validation — the `perPort` entry for its port, else `default` — with the
/// CA bundles resolved, so that a data plane can ask for and check client
/// certificates; listeners without it carry none.
#[test]
fn frontend_validation_reaches_the_routing_input_per_port() {
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let key = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n";
    let yaml = format!(
        r#"{BASE}---
apiVersion: v1
kind: Secret
metadata: {{name: cert, namespace: infra}}
type: kubernetes.io/tls
stringData: {{tls.crt: {pem:?}, tls.key: {key:?}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: default-ca, namespace: infra}}
data: {{ca.crt: {pem:?}}}
---
apiVersion: v1
kind: ConfigMap
metadata: {{name: port-ca, namespace: infra}}
data: {{ca.crt: {pem:?}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: infra}}
spec:
  gatewayClassName: c
  tls:
    frontend:
      default:
        validation: {{caCertificateRefs: [{{kind: ConfigMap, group: '', name: default-ca}}]}}
      perPort:
      - port: 8443
        tls:
          validation:
            caCertificateRefs: [{{kind: ConfigMap, group: '', name: port-ca}}]
            mode: AllowInsecureFallback
  listeners:
  - {{name: a, port: 443, protocol: HTTPS, tls: {{certificateRefs: [{{name: cert}}]}}}}
  - {{name: b, port: 8443, protocol: HTTPS, tls: {{certificateRefs: [{{name: cert}}]}}}}
  - {{name: c, port: 80, protocol: HTTP}}
"#
    );
    let out = run(&yaml);
    let routing = &out.routing[&ObjectKey::new(Kind::Gateway, "infra", "gw")];
    let validation = |name: &str| {
        routing
            .listeners
            .iter()
            .find(|l| l.name == name)
            .unwrap_or_else(|| panic!("listener {name} is valid"))
            .frontend_validation
            .clone()
    };
    let ca = |name: &str| ObjectKey::new(Kind::ConfigMap, "infra", name);
    assert_eq!(
        validation("a"),
        Some(gwcore::attachments::FrontendValidation {
            ca_certificates: vec![ca("default-ca")],
            allow_insecure_fallback: false,
        })
    );
    assert_eq!(
        validation("b"),
        Some(gwcore::attachments::FrontendValidation {
            ca_certificates: vec![ca("port-ca")],
            allow_insecure_fallback: true,
        })
    );
    assert_eq!(validation("c"), None);
}

/// Routes to a Service a BackendTLSPolicy targets carry its TLS settings:
/// a policy naming the port beats one naming only the Service, the older
/// of two policies with the same target wins, and a policy whose CA bundle
/// does not resolve still applies, marked invalid (the backend must then
/// answer 5xx, never plain text).
#[test]
fn backend_tls_policies_reach_the_routing_input() {
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let policy = |name: &str, age: u8, section: &str, ca: &str, host: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {{name: {name}, namespace: team-a, creationTimestamp: '2026-01-0{age}T00:00:00Z'}}\nspec:\n  targetRefs: [{{group: '', kind: Service, name: multi{section}}}]\n  validation: {{caCertificateRefs: [{{group: '', kind: ConfigMap, name: {ca}}}], hostname: {host}}}\n"
        )
    };
    let yaml = format!(
        "{BASE}{}---\napiVersion: v1\nkind: Service\nmetadata: {{name: multi, namespace: team-a}}\nspec: {{ports: [{{name: one, port: 81}}, {{name: two, port: 82}}]}}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: ca, namespace: team-a}}\ndata: {{ca.crt: {pem:?}}}\n{}{}{}{}{}",
        gateway(
            "  - {name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}\n"
        ),
        policy("whole", 1, "", "ca", "whole.example.com"),
        policy(
            "port-one-old",
            2,
            ", sectionName: one",
            "ca",
            "one.example.com"
        ),
        policy(
            "port-one-new",
            3,
            ", sectionName: one",
            "ca",
            "newer.example.com"
        ),
        policy("svc-invalid", 1, "", "missing", "x.example.com")
            .replace("name: multi", "name: svc"),
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: team-a}\nspec:\n  parentRefs: [{name: gw, namespace: infra}]\n  rules:\n  - backendRefs: [{name: multi, port: 81}, {name: multi, port: 82}, {name: svc, port: 80}]\n",
    );
    let out = run(&yaml);
    let routing = &out.routing[&ObjectKey::new(Kind::Gateway, "infra", "gw")];
    let gwcore::attachments::RouteRules::Http(rules) = &routing.listeners[0].routes[0].rules else {
        panic!("an HTTPRoute")
    };
    let tls: Vec<(String, String, bool)> = rules[0]
        .backends
        .iter()
        .map(|b| {
            let t = b.target.as_ref().expect("a valid backend");
            let tls = t.tls.as_ref().expect("TLS settings");
            (
                tls.policy.name.clone(),
                tls.hostname.clone(),
                tls.invalid.is_some(),
            )
        })
        .collect();
    assert_eq!(
        tls,
        vec![
            ("port-one-old".into(), "one.example.com".into(), false),
            ("whole".into(), "whole.example.com".into(), false),
            ("svc-invalid".into(), "x.example.com".into(), true),
        ]
    );
}

/// The Gateway's backend client certificate reaches the routing input once
/// its Secret resolves, so that a data plane can present it to backends.
#[test]
fn backend_client_certificate_reaches_the_routing_input() {
    let pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
    let key = "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n";
    let gateway = "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: infra}\nspec:\n  gatewayClassName: c\n  tls: {backend: {clientCertificateRef: {name: client}}}\n  listeners: [{name: http, port: 80, protocol: HTTP}]\n";
    let secret = format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: client, namespace: infra}}\ntype: kubernetes.io/tls\nstringData: {{tls.crt: {pem:?}, tls.key: {key:?}}}\n"
    );
    let gw = ObjectKey::new(Kind::Gateway, "infra", "gw");
    let without = run(&format!("{BASE}{gateway}"));
    assert_eq!(without.routing[&gw].backend_client_certificate, None);
    let with = run(&format!("{BASE}{gateway}{secret}"));
    assert_eq!(
        with.routing[&gw].backend_client_certificate,
        Some(ObjectKey::new(Kind::Secret, "infra", "client"))
    );
}

#[test]
fn compute_options_refuse_a_now_that_is_not_a_time() {
    assert!(ComputeOptions::try_new(CTRL, "2026-01-01T00:00:00Z").is_ok());
    assert!(ComputeOptions::try_new(CTRL, "2026-01-01T00:00:00.5+02:00").is_ok());
    for bad in [
        "",
        "yesterday",
        "2026-01-01",
        "2026-13-01T00:00:00Z",
        "1767225600",
    ] {
        let err = ComputeOptions::try_new(CTRL, bad).expect_err(bad);
        assert!(err.to_string().contains("RFC 3339"), "{err}");
    }
    let caught = std::panic::catch_unwind(|| ComputeOptions::new(CTRL, "soon"));
    assert!(caught.is_err(), "new panics on an invalid now");
}
