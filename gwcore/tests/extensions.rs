//! Extension seams through the public API: an embedder's ExtensionRef
//! filter kind (resolved, missing, unregistered, refused), read by the
//! loader, carried by the table in rule order, and kept by the incremental
//! engine.

use gwcore::Snapshot;
use gwcore::engine::{ComputeOptions, Computed, Engine, compute};
use gwcore::extension::{ExtensionKind, ExtensionObject, Extensions, FilterKind, Refused};
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
    fn check(&self, object: &ExtensionObject) -> Result<(), Refused> {
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

// ---------------------------------------------------------------- policies

use gwcore::extension::{PolicyContext, PolicyKind, PolicyValue};

const BUDGET: ExtensionKind = ExtensionKind::new("example.com/v1", "RequestBudget");

/// `spec.requestsPerSecond`, a positive number.
#[derive(Debug)]
struct Budget;

#[derive(Debug, PartialEq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct BudgetSpec {
    requests_per_second: u32,
}

impl PolicyKind for Budget {
    fn kind(&self) -> ExtensionKind {
        BUDGET
    }
    fn parse(&self, policy: &Object, _: &mut PolicyContext<'_>) -> Result<PolicyValue, Refused> {
        let Object::Extension(object) = policy else {
            unreachable!("the objects of a registered kind are Object::Extension")
        };
        let spec: BudgetSpec = object.spec_as()?;
        if spec.requests_per_second == 0 {
            return Err("spec.requestsPerSecond must be positive".into());
        }
        Ok(PolicyValue::new(spec.requests_per_second))
    }
}

const POLICY_BASE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: c}
spec: {controllerName: example.com/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: app}
spec:
  gatewayClassName: c
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: app}
spec: {ports: [{name: web, port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: app}
spec:
  parentRefs: [{name: gw}]
  rules:
  - name: search
    matches: [{path: {type: PathPrefix, value: /search}}]
    backendRefs: [{name: svc, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: svc, port: 80}]
"#;

fn budget(name: &str, created: &str, target: &str, rps: u32) -> String {
    format!(
        "---\napiVersion: example.com/v1\nkind: RequestBudget\nmetadata: {{name: {name}, namespace: app, creationTimestamp: \"{created}\"}}\nspec:\n  targetRefs: [{target}]\n  requestsPerSecond: {rps}\n"
    )
}

const ON_GATEWAY: &str = "{group: gateway.networking.k8s.io, kind: Gateway, name: gw}";
const ON_RULE: &str =
    "{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r, sectionName: search}";
const ON_PORT: &str = "{group: \"\", kind: Service, name: svc, sectionName: web}";

fn policy_extensions() -> Extensions {
    Extensions::new().with_policy(Budget)
}

/// The budget that applies to `path` (most specific first), and the
/// backend's own.
fn budgets(out: &Computed, path: &str) -> (Option<u32>, Vec<u32>) {
    let t = table(out);
    let d = t.find(&RequestHead::new(80, "a.example", "GET", path));
    let Action::Forward(f) = &d.action else {
        panic!("forwarded: {:?}", d.action)
    };
    let backend = f.pick(0);
    let best = f
        .policy(BUDGET, Some(backend))
        .and_then(|p| p.value.get::<u32>().copied());
    let on_backend = backend
        .policies()
        .iter()
        .filter_map(|p| p.value.get::<u32>().copied())
        .collect();
    (best, on_backend)
}

fn ancestor(out: &Computed, name: &str) -> (String, String, String) {
    match out
        .statuses
        .get(&ObjectKey::new(Kind::Extension(BUDGET), "app", name))
    {
        Some(ObjectStatus::Policy(p)) => {
            assert_eq!(p.ancestors.len(), 1, "{p:?}");
            let a = &p.ancestors[0];
            assert_eq!(a.ancestor_ref.name, "gw");
            assert_eq!(a.controller_name, CTRL);
            let c = &a.conditions[0];
            assert_eq!(c.type_, "Accepted");
            (c.status.clone(), c.reason.clone(), c.message.clone())
        }
        other => panic!("no policy status for {name}: {other:?}"),
    }
}

#[test]
fn policies_apply_from_the_gateway_down_to_a_rule_and_a_port() {
    let yaml = format!(
        "{POLICY_BASE}{}{}",
        budget("everywhere", "2026-01-01T00:00:00Z", ON_GATEWAY, 100),
        budget("search", "2026-01-01T00:00:00Z", ON_RULE, 5),
    );
    let out = run(&yaml, policy_extensions());
    assert_eq!(ancestor(&out, "everywhere").0, "True");
    assert_eq!(ancestor(&out, "search").0, "True");
    // The rule's own policy is more specific than the Gateway's.
    assert_eq!(budgets(&out, "/search?q=x"), (Some(5), vec![]));
    assert_eq!(budgets(&out, "/other"), (Some(100), vec![]));

    // One on the Service port is more specific still, for its backend.
    let out = run(
        &format!(
            "{yaml}{}",
            budget("port", "2026-01-01T00:00:00Z", ON_PORT, 7)
        ),
        policy_extensions(),
    );
    assert_eq!(budgets(&out, "/search"), (Some(7), vec![7]));
    assert_eq!(ancestor(&out, "port").0, "True");
}

#[test]
fn the_older_policy_wins_a_target_and_the_other_is_conflicted() {
    let yaml = format!(
        "{POLICY_BASE}{}{}",
        budget("newer", "2026-02-01T00:00:00Z", ON_GATEWAY, 2),
        budget("older", "2026-01-01T00:00:00Z", ON_GATEWAY, 1),
    );
    let out = run(&yaml, policy_extensions());
    assert_eq!(budgets(&out, "/"), (Some(1), vec![]));
    assert_eq!(ancestor(&out, "older").0, "True");
    let (status, reason, message) = ancestor(&out, "newer");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Conflicted"));
    assert!(message.contains("app/older"), "{message}");
}

#[test]
fn missing_sections_and_refused_specs_are_said_in_status() {
    let yaml = format!(
        "{POLICY_BASE}{}{}",
        budget(
            "nowhere",
            "2026-01-01T00:00:00Z",
            "{group: gateway.networking.k8s.io, kind: Gateway, name: gw, sectionName: https}",
            3
        ),
        budget("zero", "2026-01-01T00:00:00Z", ON_GATEWAY, 0),
    );
    let out = run(&yaml, policy_extensions());
    let (status, reason, message) = ancestor(&out, "nowhere");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "TargetNotFound")
    );
    assert!(message.contains("https"), "{message}");
    let (status, reason, message) = ancestor(&out, "zero");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Invalid"));
    assert!(message.contains("must be positive"), "{message}");
    // Neither applies anywhere.
    assert_eq!(budgets(&out, "/"), (None, vec![]));
    // A policy on a Gateway that is not ours gets no status from us.
    let elsewhere = budget(
        "elsewhere",
        "2026-01-01T00:00:00Z",
        "{group: gateway.networking.k8s.io, kind: Gateway, name: other-gw}",
        3,
    );
    let out = run(&format!("{POLICY_BASE}{elsewhere}"), policy_extensions());
    assert!(!out.statuses.contains_key(&ObjectKey::new(
        Kind::Extension(BUDGET),
        "app",
        "elsewhere"
    )));
}

#[test]
fn the_incremental_engine_follows_policies() {
    let ext = policy_extensions();
    let opts = ComputeOptions::new(CTRL, NOW).with_extensions(ext.clone());
    let base = load(POLICY_BASE, &ext);
    let policies = load(
        &format!(
            "{}{}{}",
            budget("newer", "2026-02-01T00:00:00Z", ON_GATEWAY, 2),
            budget("older", "2026-01-01T00:00:00Z", ON_GATEWAY, 1),
            budget("search", "2026-01-01T00:00:00Z", ON_RULE, 5),
        ),
        &ext,
    );
    let mut engine = Engine::from_snapshot(base.clone(), opts.clone());
    let mut now = base.clone();
    for p in policies.iter() {
        let delta = engine.apply(p.clone());
        now.insert(p.clone());
        assert!(!delta.statuses.is_empty(), "a policy status was written");
        assert_eq!(engine.computed(), compute(&now, &opts));
    }
    // The route loses its named rule: the rule's policy finds no target.
    let route_key = ObjectKey::new(Kind::HttpRoute, "app", "r");
    let mut route = now.get(&route_key).unwrap().clone();
    if let Object::HttpRoute(r) = &mut route {
        r.spec.rules[0].name = None;
    }
    engine.apply(route.clone());
    now.insert(route);
    assert_eq!(engine.computed(), compute(&now, &opts));
    // The winner goes: the other takes the Gateway.
    let older = ObjectKey::new(Kind::Extension(BUDGET), "app", "older");
    engine.delete(&older);
    now.remove(&older);
    let full = compute(&now, &opts);
    assert_eq!(engine.computed(), full);
    assert_eq!(budgets(&full, "/"), (Some(2), vec![]));
}

// ------------------------------------------- policies that read other objects

use gwcore::extension::{Attachment, Conflicts};
use gwcore::status::{Condition, ConditionType, Reason};

const QUOTA: ExtensionKind = ExtensionKind::new("example.com/v1", "Quota");

/// `spec.configMap` names a ConfigMap of the policy's namespace whose
/// `data.limit` is the quota. When it cannot be read the policy still
/// applies, as a quota of 0 (fail closed), and says so in status.
#[derive(Debug)]
struct Quota;

impl PolicyKind for Quota {
    fn kind(&self) -> ExtensionKind {
        QUOTA
    }
    fn parse(&self, policy: &Object, cx: &mut PolicyContext<'_>) -> Result<PolicyValue, Refused> {
        let Object::Extension(object) = policy else {
            unreachable!("the objects of a registered kind are Object::Extension")
        };
        let Some(name) = object.spec.get("configMap").and_then(|v| v.as_str()) else {
            return Err("spec.configMap is required".into());
        };
        let key = ObjectKey::new(Kind::ConfigMap, object.metadata.ns(), name);
        let limit = match cx.get(&key) {
            Some(Object::ConfigMap(cm)) => cm.data.get("limit").and_then(|l| l.parse::<u32>().ok()),
            _ => None,
        };
        match limit {
            Some(l) => {
                cx.condition(Condition::new(
                    ConditionType::ResolvedRefs,
                    true,
                    Reason::ResolvedRefs,
                    "limit read",
                ));
                Ok(PolicyValue::new(l))
            }
            None => {
                let m = format!("ConfigMap {key} has no numeric data.limit");
                cx.condition(Condition::new(
                    ConditionType::ResolvedRefs,
                    false,
                    Reason::InvalidParameters,
                    m.clone(),
                ));
                cx.not_accepted(Reason::Invalid, m);
                Ok(PolicyValue::new(0u32))
            }
        }
    }
}

/// The same, but one policy sharing a targetRef with an older one is
/// Conflicted as a whole (BackendTLSPolicy's rule).
#[derive(Debug)]
struct WholeQuota;

const WHOLE_QUOTA: ExtensionKind = ExtensionKind::new("example.com/v1", "WholeQuota");

impl PolicyKind for WholeQuota {
    fn kind(&self) -> ExtensionKind {
        WHOLE_QUOTA
    }
    fn attachment(&self) -> Attachment {
        Attachment::GEP_713.with_conflicts(Conflicts::WholePolicy)
    }
    fn parse(&self, policy: &Object, cx: &mut PolicyContext<'_>) -> Result<PolicyValue, Refused> {
        Quota.parse(policy, cx)
    }
}

fn quota(kind: &str, name: &str, created: &str, targets: &[&str], map: &str) -> String {
    format!(
        "---\napiVersion: example.com/v1\nkind: {kind}\nmetadata: {{name: {name}, namespace: app, creationTimestamp: \"{created}\"}}\nspec:\n  targetRefs: [{}]\n  configMap: {map}\n",
        targets.join(", ")
    )
}

fn limits(name: &str, limit: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: app}}\ndata: {{limit: \"{limit}\"}}\n"
    )
}

fn quota_extensions() -> Extensions {
    Extensions::new().with_policy(Quota).with_policy(WholeQuota)
}

/// Every condition of policy `name` of `kind` on `gw`: (type, status, reason).
fn conditions(out: &Computed, kind: ExtensionKind, name: &str) -> Vec<(String, String, String)> {
    match out
        .statuses
        .get(&ObjectKey::new(Kind::Extension(kind), "app", name))
    {
        Some(ObjectStatus::Policy(p)) => {
            assert_eq!(p.ancestors.len(), 1, "{p:?}");
            p.ancestors[0]
                .conditions
                .iter()
                .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
                .collect()
        }
        other => panic!("no policy status for {name}: {other:?}"),
    }
}

fn c(t: &str, s: &str, r: &str) -> (String, String, String) {
    (t.into(), s.into(), r.into())
}

/// The quota of `kind` for requests to `path`.
fn quota_at(out: &Computed, kind: ExtensionKind, path: &str) -> Option<u32> {
    let t = table(out);
    let d = t.find(&RequestHead::new(80, "a.example", "GET", path));
    let Action::Forward(f) = &d.action else {
        panic!("forwarded: {:?}", d.action)
    };
    f.policy(kind, Some(f.pick(0)))
        .and_then(|p| p.value.get::<u32>().copied())
}

#[test]
fn a_policy_reads_other_objects_and_adds_conditions() {
    let policy = quota(
        "Quota",
        "q",
        "2026-01-01T00:00:00Z",
        &[ON_GATEWAY],
        "limits",
    );
    let yaml = format!("{POLICY_BASE}{policy}{}", limits("limits", "10"));
    let out = run(&yaml, quota_extensions());
    assert_eq!(
        conditions(&out, QUOTA, "q"),
        [
            c("Accepted", "True", "Accepted"),
            c("ResolvedRefs", "True", "ResolvedRefs")
        ]
    );
    assert_eq!(quota_at(&out, QUOTA, "/"), Some(10));

    // Without its ConfigMap it still applies (as 0) but is not Accepted.
    let out = run(&format!("{POLICY_BASE}{policy}"), quota_extensions());
    assert_eq!(
        conditions(&out, QUOTA, "q"),
        [
            c("Accepted", "False", "Invalid"),
            c("ResolvedRefs", "False", "InvalidParameters")
        ]
    );
    assert_eq!(quota_at(&out, QUOTA, "/"), Some(0));
}

#[test]
fn whole_policy_conflicts_take_every_target() {
    let yaml = format!(
        "{POLICY_BASE}{}{}{}{}{}{}",
        limits("limits", "10"),
        // Per target: the newer loses the Gateway, keeps the rule.
        quota(
            "Quota",
            "older",
            "2026-01-01T00:00:00Z",
            &[ON_GATEWAY],
            "limits"
        ),
        quota(
            "Quota",
            "newer",
            "2026-02-01T00:00:00Z",
            &[ON_GATEWAY, ON_RULE],
            "fewer"
        ),
        // Whole policy: the newer is Conflicted, applies nowhere.
        quota(
            "WholeQuota",
            "older",
            "2026-01-01T00:00:00Z",
            &[ON_GATEWAY],
            "limits"
        ),
        quota(
            "WholeQuota",
            "newer",
            "2026-02-01T00:00:00Z",
            &[ON_GATEWAY, ON_RULE],
            "fewer"
        ),
        limits("fewer", "3"),
    );
    let out = run(&yaml, quota_extensions());
    assert_eq!(
        conditions(&out, QUOTA, "newer")[0],
        c("Accepted", "True", "Accepted")
    );
    assert_eq!(quota_at(&out, QUOTA, "/search"), Some(3));
    assert_eq!(quota_at(&out, QUOTA, "/"), Some(10));
    assert_eq!(
        conditions(&out, WHOLE_QUOTA, "newer")[0],
        c("Accepted", "False", "Conflicted")
    );
    assert_eq!(quota_at(&out, WHOLE_QUOTA, "/search"), Some(10));
    assert_eq!(quota_at(&out, WHOLE_QUOTA, "/"), Some(10));
}

#[test]
fn the_incremental_engine_follows_what_a_policy_read() {
    let ext = quota_extensions();
    let opts = ComputeOptions::new(CTRL, NOW).with_extensions(ext.clone());
    let policy = load(
        &quota(
            "Quota",
            "q",
            "2026-01-01T00:00:00Z",
            &[ON_GATEWAY],
            "limits",
        ),
        &ext,
    );
    let mut now = load(POLICY_BASE, &ext);
    for p in policy.iter() {
        now.insert(p.clone());
    }
    let mut engine = Engine::from_snapshot(now.clone(), opts.clone());
    assert_eq!(quota_at(&engine.computed(), QUOTA, "/"), Some(0));
    // The ConfigMap comes, changes and goes: the policy is parsed again.
    for limit in ["10", "12"] {
        let map = load(&limits("limits", limit), &ext);
        let map = map.iter().next().unwrap().clone();
        let delta = engine.apply(map.clone());
        now.insert(map);
        assert!(!delta.routing.is_empty(), "the table's quota changed");
        let full = compute(&now, &opts);
        assert_eq!(engine.computed(), full);
        assert_eq!(quota_at(&full, QUOTA, "/"), limit.parse().ok());
    }
    let key = ObjectKey::new(Kind::ConfigMap, "app", "limits");
    engine.delete(&key);
    now.remove(&key);
    assert_eq!(engine.computed(), compute(&now, &opts));
    assert_eq!(quota_at(&engine.computed(), QUOTA, "/"), Some(0));
}

// ---------------------------------------------------------------- backends

use gwcore::extension::{BackendKind, ServicePort};

const ALIAS: ExtensionKind = ExtensionKind::new("example.com/v1", "ServiceAlias");

/// `spec: {service, port}`: the Service port it stands for.
#[derive(Debug)]
struct ServiceAlias;

impl BackendKind for ServiceAlias {
    fn kind(&self) -> ExtensionKind {
        ALIAS
    }
    fn resolve(
        &self,
        object: &ExtensionObject,
        _port: Option<u16>,
    ) -> Result<ServicePort, Refused> {
        let service = object.spec["service"]
            .as_str()
            .ok_or("spec.service is required")?;
        let port = object.spec["port"]
            .as_u64()
            .and_then(|p| u16::try_from(p).ok())
            .ok_or("spec.port is required")?;
        Ok(ServicePort::new(object.metadata.ns(), service, port))
    }
}

const ALIAS_BASE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: c}
spec: {controllerName: example.com/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: app}
spec:
  gatewayClassName: c
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: real, namespace: app}
spec: {ports: [{port: 8080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: app}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{group: example.com, kind: ServiceAlias, name: stable}]
"#;

const ALIAS_OBJECT: &str = r#"
---
apiVersion: example.com/v1
kind: ServiceAlias
metadata: {name: stable, namespace: app}
spec: {service: real, port: 8080}
"#;

fn alias_extensions() -> Extensions {
    Extensions::new().with_backend(ServiceAlias)
}

#[test]
fn a_backend_kind_stands_for_a_service_port() {
    let out = run(&format!("{ALIAS_BASE}{ALIAS_OBJECT}"), alias_extensions());
    assert_eq!(route_condition(&out, "ResolvedRefs").0, "True");
    let t = table(&out);
    let d = t.find(&RequestHead::new(80, "a.example", "GET", "/"));
    let Action::Forward(f) = &d.action else {
        panic!("forwarded: {:?}", d.action)
    };
    let target = f.pick(0).target().expect("resolved");
    assert_eq!((target.service.name.as_str(), target.port), ("real", 8080));

    // Missing: BackendNotFound; unregistered: InvalidKind; both 500.
    let out = run(ALIAS_BASE, alias_extensions());
    let (status, reason, _) = route_condition(&out, "ResolvedRefs");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "BackendNotFound")
    );
    assert_eq!(status_of(&table(&out), "/"), Some(500));
    let out = run(
        &format!("{ALIAS_BASE}{ALIAS_OBJECT}"),
        Extensions::new().with_filter(HeaderAuth),
    );
    let (status, reason, _) = route_condition(&out, "ResolvedRefs");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "InvalidKind"));
}

#[test]
fn the_incremental_engine_follows_backend_objects_and_their_services() {
    let ext = alias_extensions();
    let opts = ComputeOptions::new(CTRL, NOW).with_extensions(ext.clone());
    let full = load(&format!("{ALIAS_BASE}{ALIAS_OBJECT}"), &ext);
    let alias = ObjectKey::new(Kind::Extension(ALIAS), "app", "stable");
    let service = ObjectKey::new(Kind::Service, "app", "real");
    let mut engine = Engine::from_snapshot(full.clone(), opts.clone());
    let mut now = full.clone();
    // The Service the alias stands for goes, then comes back.
    let svc = now.remove(&service).unwrap();
    engine.delete(&service);
    assert_eq!(engine.computed(), compute(&now, &opts));
    now.insert(svc.clone());
    engine.apply(svc);
    assert_eq!(engine.computed(), compute(&now, &opts));
    // The alias points elsewhere.
    let mut moved = now.get(&alias).unwrap().clone();
    if let Object::Extension(x) = &mut moved {
        x.spec = serde_json::json!({"service": "real", "port": 9999});
    }
    now.insert(moved.clone());
    engine.apply(moved);
    let out = compute(&now, &opts);
    assert_eq!(engine.computed(), out);
    assert_eq!(route_condition(&out, "ResolvedRefs").1, "BackendNotFound");
}
