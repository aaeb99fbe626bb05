//! Extension seams through the public API: an embedder's ExtensionRef
//! filter kind (resolved, missing, unregistered, refused), read by the
//! loader, carried by the table in rule order, and kept by the incremental
//! engine.

use gwcore::Snapshot;
use gwcore::engine::{ComputeOptions, Computed, Engine, compute};
use gwcore::extension::{ExtensionKind, ExtensionObject, Extensions, FilterKind};
use gwcore::load::{Limits, load_str_extended};
use gwcore::model::{Kind, Object, ObjectKey};
use gwcore::status::ObjectStatus;
use gwcore::table::{Action, Filter, RequestHead, Table};

const CTRL: &str = "example.com/gateway-controller";
const NOW: &str = "2026-01-01T00:00:00Z";
const HEADER_AUTH: ExtensionKind = ExtensionKind::new("example.com/v1", "HeaderAuth");

/// Requests must carry `spec.header`.
#[derive(Debug)]
struct HeaderAuth;

impl FilterKind for HeaderAuth {
    fn kind(&self) -> ExtensionKind {
        HEADER_AUTH
    }
    fn check(&self, object: &ExtensionObject) -> Result<(), String> {
        match object.spec.get("header").and_then(|h| h.as_str()) {
            Some(h) if !h.is_empty() => Ok(()),
            _ => Err("spec.header is required".into()),
        }
    }
}

fn extensions() -> Extensions {
    Extensions::new().with_filter(HeaderAuth)
}

const BASE: &str = r#"
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
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: app}
spec:
  parentRefs: [{name: gw, namespace: infra}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /private}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-before, value: "1"}]}
    - type: ExtensionRef
      extensionRef: {group: example.com, kind: HeaderAuth, name: needs-token}
    - type: ResponseHeaderModifier
      responseHeaderModifier: {set: [{name: x-after, value: "1"}]}
    backendRefs: [{name: svc, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /public}}]
    backendRefs: [{name: svc, port: 80}]
"#;

const AUTH_OBJECT: &str = r#"
---
apiVersion: example.com/v1
kind: HeaderAuth
metadata: {name: needs-token, namespace: app}
spec: {header: x-token}
"#;

fn load(yaml: &str, ext: &Extensions) -> Snapshot {
    let l = load_str_extended("test.yaml", yaml, Limits::default(), ext);
    assert!(!l.has_errors(), "{:#?}", l.diagnostics);
    Snapshot::from_objects(l.objects.into_iter().map(|(o, _)| o))
}

fn run(yaml: &str, ext: Extensions) -> Computed {
    let snap = load(yaml, &ext);
    compute(&snap, &ComputeOptions::new(CTRL, NOW).with_extensions(ext))
}

fn route_condition(out: &Computed, ty: &str) -> (String, String, String) {
    let Some(ObjectStatus::Route(r)) =
        out.statuses
            .get(&ObjectKey::new(Kind::HTTPRoute, "app", "r"))
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

#[test]
fn a_resolved_extension_filter_reaches_the_table_in_rule_order() {
    let out = run(&format!("{BASE}{AUTH_OBJECT}"), extensions());
    assert_eq!(route_condition(&out, "Accepted").0, "True");
    assert_eq!(route_condition(&out, "ResolvedRefs").0, "True");
    let t = table(&out);
    let d = t.find(&RequestHead::new(80, "a.example", "GET", "/private/x"));
    let Action::Forward(f) = &d.action else {
        panic!("forwarded: {:?}", d.action)
    };
    let backend = f.pick(0);
    assert!(f.has_extension_filters(Some(backend)));
    let kinds: Vec<String> = f
        .filters(Some(backend))
        .map(|x| match x {
            Filter::RequestHeaders(_) => "request".to_owned(),
            Filter::ResponseHeaders(_) => "response".to_owned(),
            Filter::Extension(e) => {
                assert_eq!(e.kind(), HEADER_AUTH);
                assert_eq!(e.object().metadata.name, "needs-token");
                format!("extension:{}", e.object().spec["header"].as_str().unwrap())
            }
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["request", "extension:x-token", "response"]);
    // The other rule has none, and keeps the one-call path.
    let d = t.find(&RequestHead::new(80, "a.example", "GET", "/public"));
    let Action::Forward(f) = &d.action else {
        panic!("forwarded")
    };
    assert!(!f.has_extension_filters(Some(f.pick(0))));
}

#[test]
fn a_missing_object_is_backend_not_found_and_answers_500() {
    let out = run(BASE, extensions());
    let (status, reason, message) = route_condition(&out, "ResolvedRefs");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "BackendNotFound")
    );
    assert!(message.contains("app/needs-token"), "{message}");
    // Spec: the filter is not skipped; its requests get an error.
    let t = table(&out);
    assert_eq!(status_of(&t, "/private"), Some(500));
    assert_eq!(status_of(&t, "/public"), None, "the other rule forwards");
}

#[test]
fn an_unregistered_kind_is_invalid_kind() {
    let out = run(BASE, Extensions::new());
    let (status, reason, _) = route_condition(&out, "ResolvedRefs");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "InvalidKind"));
    assert_eq!(status_of(&table(&out), "/private"), Some(500));
}

#[test]
fn an_object_its_extension_refuses_is_invalid_parameters() {
    let refused = AUTH_OBJECT.replace("spec: {header: x-token}", "spec: {}");
    let out = run(&format!("{BASE}{refused}"), extensions());
    let (status, reason, message) = route_condition(&out, "ResolvedRefs");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "InvalidParameters")
    );
    assert!(message.contains("spec.header is required"), "{message}");
    assert_eq!(status_of(&table(&out), "/private"), Some(500));
}

#[test]
fn the_loader_reads_registered_kinds_only() {
    let text = format!("{BASE}{AUTH_OBJECT}");
    let with = load_str_extended("t.yaml", &text, Limits::default(), &extensions());
    let obj = with
        .objects
        .iter()
        .find_map(|(o, _)| match o {
            Object::Extension(x) => Some(x),
            _ => None,
        })
        .expect("read");
    assert_eq!(obj.kind, HEADER_AUTH);
    assert_eq!(obj.metadata.namespace.as_deref(), Some("app"));
    // The manifest written back is the one read.
    let m = Object::Extension(obj.clone()).to_manifest();
    assert_eq!(m["apiVersion"], "example.com/v1");
    assert_eq!(m["kind"], "HeaderAuth");
    assert_eq!(m["spec"]["header"], "x-token");
    // Without the extension the kind is skipped with a warning.
    let without = load_str_extended("t.yaml", &text, Limits::default(), &Extensions::new());
    assert!(
        without
            .objects
            .iter()
            .all(|(o, _)| !matches!(o, Object::Extension(_)))
    );
    assert!(
        without
            .diagnostics
            .iter()
            .any(|d| d.message.contains("HeaderAuth"))
    );
}

#[test]
fn the_incremental_engine_follows_the_referenced_object() {
    let ext = extensions();
    let opts = ComputeOptions::new(CTRL, NOW).with_extensions(ext.clone());
    let full = load(&format!("{BASE}{AUTH_OBJECT}"), &ext);
    let key = ObjectKey::new(Kind::Extension(HEADER_AUTH), "app", "needs-token");
    let object = full.get(&key).expect("object").clone();
    let mut without = full.clone();
    without.remove(&key);

    // The object comes after the route: the route resolves.
    let mut engine = Engine::from_snapshot(without.clone(), opts.clone());
    let delta = engine.apply(object.clone());
    assert!(!delta.routing.is_empty(), "the routing changed");
    assert_eq!(engine.computed(), compute(&full, &opts));

    // Its spec changes to one the extension refuses, then it is deleted.
    let mut refused = object.clone();
    if let Object::Extension(x) = &mut refused {
        x.spec = serde_json::json!({});
    }
    engine.apply(refused.clone());
    let mut refused_snap = full.clone();
    refused_snap.insert(refused);
    assert_eq!(engine.computed(), compute(&refused_snap, &opts));
    engine.delete(&key);
    assert_eq!(engine.computed(), compute(&without, &opts));
}
