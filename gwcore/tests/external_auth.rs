//! The `ExternalAuth` HTTPRoute filter (GEP-1494) through the public API:
//! read and validated as the CRD says, its backendRef resolved like any
//! backendRef (status ResolvedRefs), and carried by the table, resolved,
//! in rule order; an unresolved one answers 500 (fail closed).

use gwcore::Snapshot;
use gwcore::engine::{ComputeOptions, Computed, Engine, compute};
use gwcore::load::load_str;
use gwcore::model::{Kind, ObjectKey};
use gwcore::status::ObjectStatus;
use gwcore::table::{Action, AuthProtocol, Filter, RequestHead, Table};
use http::HeaderName;

const CTRL: &str = "example.com/gateway-controller";
const NOW: &str = "2026-01-01T00:00:00Z";

const GATEWAY: &str = r#"
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
  listeners: [{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}]
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: app}
spec: {ports: [{port: 80}]}
"#;

const AUTH_SERVICE: &str = r#"
---
apiVersion: v1
kind: Service
metadata: {name: authz, namespace: app}
spec: {ports: [{port: 9000, appProtocol: kubernetes.io/h2c}]}
"#;

/// A route whose `/private` rule asks a gRPC ext_authz service at
/// `{auth_ns}/authz:9000` between two header modifiers; `/public` is open.
fn route(auth_ns: &str) -> String {
    format!(
        r#"
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: app}}
spec:
  parentRefs: [{{name: gw, namespace: infra}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /private}}}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {{set: [{{name: x-before, value: "1"}}]}}
    - type: ExternalAuth
      externalAuth:
        protocol: GRPC
        backendRef: {{name: authz, namespace: {auth_ns}, port: 9000}}
        grpc: {{allowedHeaders: [authorization, X-Tenant]}}
        forwardBody: {{maxSize: 512}}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {{set: [{{name: x-after, value: "1"}}]}}
    backendRefs: [{{name: svc, port: 80}}]
  - matches: [{{path: {{type: PathPrefix, value: /public}}}}]
    backendRefs: [{{name: svc, port: 80}}]
"#
    )
}

fn load(yaml: &str) -> Snapshot {
    let l = load_str("test.yaml", yaml);
    assert!(!l.has_errors(), "{:#?}", l.diagnostics);
    Snapshot::from_objects(l.objects.into_iter().map(|(o, _)| o))
}

fn run(yaml: &str) -> Computed {
    compute(&load(yaml), &ComputeOptions::new(CTRL, NOW))
}

fn route_condition(out: &Computed, ty: &str) -> (String, String, String) {
    let Some(ObjectStatus::Route(r)) =
        out.statuses
            .get(&ObjectKey::new(Kind::HttpRoute, "app", "r"))
    else {
        panic!("no route status");
    };
    let c = r.parents[0]
        .conditions
        .iter()
        .find(|c| c.type_ == ty)
        .expect("condition");
    (c.status.clone(), c.reason.clone(), c.message.clone())
}

fn table(out: &Computed) -> Table {
    Table::compile(out.routing.values().next().expect("our Gateway"))
}

fn status_of(table: &Table, path: &str) -> Option<u16> {
    table
        .find(&RequestHead::new(80, "a.example", "GET", path))
        .status()
        .map(|s| s.as_u16())
}

fn header(n: &str) -> HeaderName {
    HeaderName::from_bytes(n.as_bytes()).unwrap()
}

#[test]
fn a_resolved_external_auth_reaches_the_table_in_rule_order() {
    let out = run(&format!("{GATEWAY}{AUTH_SERVICE}{}", route("app")));
    assert_eq!(route_condition(&out, "Accepted").0, "True");
    assert_eq!(route_condition(&out, "ResolvedRefs").0, "True");
    let t = table(&out);
    assert!(t.problems().is_empty(), "{:?}", t.problems());
    let d = t.find(&RequestHead::new(80, "a.example", "GET", "/private/x"));
    let Action::Forward(f) = &d.action else {
        panic!("forwarded: {:?}", d.action)
    };
    let backend = f.pick(0);
    // The data plane runs the filters one by one, the auth call in its place.
    assert!(f.has_extension_filters(Some(backend)));
    let kinds: Vec<String> = f
        .filters(Some(backend))
        .map(|x| match x {
            Filter::RequestHeaders(_) => "request".to_owned(),
            Filter::ResponseHeaders(_) => "response".to_owned(),
            Filter::ExternalAuth(a) => {
                assert_eq!(
                    a.target().service,
                    ObjectKey::new(Kind::Service, "app", "authz")
                );
                assert_eq!(a.target().port, 9000);
                assert_eq!(a.forward_body(), 512);
                let AuthProtocol::Grpc(g) = a.protocol() else {
                    panic!("GRPC: {:?}", a.protocol())
                };
                assert!(g.sends(&header("authorization")));
                assert!(g.sends(&header("x-tenant")), "names are case-insensitive");
                assert!(!g.sends(&header("cookie")), "only the allowed headers");
                "auth".to_owned()
            }
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["request", "auth", "response"]);
    let d = t.find(&RequestHead::new(80, "a.example", "GET", "/public"));
    let Action::Forward(f) = &d.action else {
        panic!("forwarded")
    };
    assert!(!f.has_extension_filters(Some(f.pick(0))));
}

#[test]
fn a_missing_auth_service_is_backend_not_found_and_fails_closed() {
    let out = run(&format!("{GATEWAY}{}", route("app")));
    let (status, reason, message) = route_condition(&out, "ResolvedRefs");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "BackendNotFound")
    );
    assert!(
        message.contains("ExternalAuth") && message.contains("app/authz"),
        "{message}"
    );
    // The route is still Accepted: its other rule serves.
    assert_eq!(route_condition(&out, "Accepted").0, "True");
    let t = table(&out);
    assert_eq!(status_of(&t, "/private"), Some(500), "not skipped");
    assert_eq!(status_of(&t, "/public"), None, "the other rule forwards");
    assert_eq!(t.problems().len(), 1, "{:?}", t.problems());
}

#[test]
fn an_auth_service_in_another_namespace_needs_a_reference_grant() {
    let auth = AUTH_SERVICE.replace("namespace: app", "namespace: security");
    let yaml = format!("{GATEWAY}{auth}{}", route("security"));
    let out = run(&yaml);
    let (status, reason, _) = route_condition(&out, "ResolvedRefs");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "RefNotPermitted")
    );
    assert_eq!(status_of(&table(&out), "/private"), Some(500));

    let grant = r#"
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: routes-may-ask, namespace: security}
spec:
  from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: app}]
  to: [{group: "", kind: Service}]
"#;
    let out = run(&format!("{yaml}{grant}"));
    assert_eq!(route_condition(&out, "ResolvedRefs").0, "True");
    assert_eq!(status_of(&table(&out), "/private"), None, "forwarded");
}

#[test]
fn the_incremental_engine_follows_the_auth_service() {
    let opts = ComputeOptions::new(CTRL, NOW);
    let full = load(&format!("{GATEWAY}{AUTH_SERVICE}{}", route("app")));
    let key = ObjectKey::new(Kind::Service, "app", "authz");
    let service = full.get(&key).expect("auth Service").clone();
    let mut without = full.clone();
    without.remove(&key);

    let mut engine = Engine::from_snapshot(without.clone(), opts.clone());
    assert_eq!(engine.computed(), compute(&without, &opts));
    let delta = engine.apply(service);
    assert!(!delta.routing.is_empty(), "the routing changed");
    assert_eq!(engine.computed(), compute(&full, &opts));
    engine.delete(&key);
    assert_eq!(engine.computed(), compute(&without, &opts));
}

#[test]
fn http_settings_compile_to_the_paths_and_headers_sent() {
    let yaml = format!(
        "{GATEWAY}{AUTH_SERVICE}{}",
        route("app").replace(
            "        grpc: {allowedHeaders: [authorization, X-Tenant]}\n",
            "        http: {path: /check/, allowedHeaders: [x-tenant], allowedResponseHeaders: [X-User]}\n",
        )
        .replace("protocol: GRPC", "protocol: HTTP")
    );
    let out = run(&yaml);
    assert_eq!(route_condition(&out, "ResolvedRefs").0, "True");
    let t = table(&out);
    let d = t.find(&RequestHead::new(80, "a.example", "GET", "/private"));
    let Action::Forward(f) = &d.action else {
        panic!("forwarded")
    };
    let Some(Filter::ExternalAuth(a)) = f
        .filters(Some(f.pick(0)))
        .find(|x| matches!(x, Filter::ExternalAuth(_)))
    else {
        panic!("no ExternalAuth")
    };
    let AuthProtocol::Http(h) = a.protocol() else {
        panic!("HTTP")
    };
    // The prefix goes before the path, one slash between.
    assert_eq!(h.path("/private/a?b=1"), "/check/private/a?b=1");
    // Host and Authorization always go; others only when allowed.
    for (name, sent) in [
        ("host", true),
        ("authorization", true),
        ("x-tenant", true),
        ("cookie", false),
    ] {
        assert_eq!(h.sends(&header(name)), sent, "{name}");
    }
    // Only the allowed answer headers are copied, never Host.
    assert!(h.copies_back(&header("x-user")));
    assert!(!h.copies_back(&header("x-other")));
}

#[test]
fn without_allowed_response_headers_all_but_the_message_ones_are_copied() {
    let yaml = format!(
        "{GATEWAY}{AUTH_SERVICE}{}",
        route("app")
            .replace(
                "        grpc: {allowedHeaders: [authorization, X-Tenant]}\n",
                "        http: {}\n",
            )
            .replace("protocol: GRPC", "protocol: HTTP")
    );
    let t = table(&run(&yaml));
    let d = t.find(&RequestHead::new(80, "a.example", "GET", "/private"));
    let Action::Forward(f) = &d.action else {
        panic!("forwarded")
    };
    let Some(Filter::ExternalAuth(a)) = f
        .filters(Some(f.pick(0)))
        .find(|x| matches!(x, Filter::ExternalAuth(_)))
    else {
        panic!("no ExternalAuth")
    };
    let AuthProtocol::Http(h) = a.protocol() else {
        panic!("HTTP")
    };
    assert_eq!(h.path("/x"), "/x", "no prefix");
    assert!(h.copies_back(&header("x-user-id")));
    for not_copied in [
        "host",
        "content-length",
        "content-type",
        "transfer-encoding",
    ] {
        assert!(!h.copies_back(&header(not_copied)), "{not_copied}");
    }
    assert!(!h.sends(&header("x-tenant")), "only the always-sent ones");
}

/// Field errors of a route with this `externalAuth` block.
fn errors(external_auth: &str) -> Vec<String> {
    let yaml = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: n}}\nspec:\n  rules:\n  - filters:\n    - type: ExternalAuth\n{external_auth}"
    );
    load_str("t.yaml", &yaml)
        .diagnostics
        .into_iter()
        .map(|d| format!("{}: {}", d.field.unwrap_or_default(), d.message))
        .collect()
}

#[test]
fn the_crd_rules_are_enforced() {
    let f = "spec.rules[0].filters[0]";
    let rows: &[(&str, &str)] = &[
        ("", "externalAuth: required when type is ExternalAuth"),
        (
            "      externalAuth: {protocol: GRPC, backendRef: {name: a, port: 1}}\n",
            "externalAuth.grpc: required when protocol is GRPC",
        ),
        (
            "      externalAuth: {protocol: HTTP, backendRef: {name: a, port: 1}, http: {}, grpc: {}}\n",
            "externalAuth.grpc: must not be set when protocol is HTTP",
        ),
        (
            "      externalAuth: {protocol: SOAP, backendRef: {name: a, port: 1}}\n",
            "externalAuth.protocol: \"SOAP\" is not HTTP or GRPC",
        ),
        (
            "      externalAuth: {protocol: HTTP, backendRef: {name: a}, http: {}}\n",
            "externalAuth.backendRef.port: required when referring to a Service",
        ),
        (
            "      externalAuth: {protocol: HTTP, backendRef: {name: a, port: 1}, http: {path: '/a b'}}\n",
            "externalAuth.http.path: \"/a b\" is not a path",
        ),
        (
            "      externalAuth: {protocol: HTTP, backendRef: {name: a, port: 1}, http: {path: '/a%zz'}}\n",
            "externalAuth.http.path: \"/a%zz\" is not a path",
        ),
        (
            "      externalAuth: {protocol: HTTP, backendRef: {name: a, port: 1}, http: {allowedHeaders: [x-a, X-A]}}\n",
            "externalAuth.http.allowedHeaders[1]: duplicate name",
        ),
        (
            "      externalAuth: {protocol: GRPC, backendRef: {name: a, port: 1}, grpc: {}, forwardBody: {maxSize: -1}}\n",
            "externalAuth.forwardBody.maxSize: -1 is negative",
        ),
    ];
    for (block, want) in rows {
        let errs = errors(block);
        assert!(
            errs.iter().any(|e| e.starts_with(&format!("{f}.{want}"))),
            "{block}: want {want}, got {errs:?}"
        );
    }
    // Valid blocks, of each protocol, and repeated (the CRD allows it).
    let ok = "      externalAuth: {protocol: HTTP, backendRef: {name: a, port: 1}, http: {path: \"/auth/v1%2F~x\", allowedHeaders: [x-a], allowedResponseHeaders: [x-b]}, forwardBody: {maxSize: 0}}\n    - type: ExternalAuth\n      externalAuth: {protocol: GRPC, backendRef: {name: b, port: 2}, grpc: {}}\n";
    assert_eq!(errors(ok), Vec::<String>::new());
}

#[test]
fn a_grpc_route_has_no_external_auth() {
    let yaml = "apiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {name: r, namespace: n}\nspec:\n  rules:\n  - filters:\n    - type: ExternalAuth\n      externalAuth: {protocol: GRPC, backendRef: {name: a, port: 1}, grpc: {}}\n";
    let errs: Vec<String> = load_str("t.yaml", yaml)
        .diagnostics
        .into_iter()
        .map(|d| format!("{}: {}", d.field.unwrap_or_default(), d.message))
        .collect();
    assert!(
        errs.iter().any(|e| e
            .starts_with("spec.rules[0].filters[0].type: ExternalAuth is a filter of HTTPRoute")),
        "{errs:?}"
    );
}
