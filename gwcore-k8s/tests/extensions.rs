//! Extension kinds through a genuine kube-apiserver (see `support`): the
//! controller watches the kinds an embedder registers (found by discovery
//! from their CRDs), resolves `ExtensionRef` filters against their
//! objects, and writes the `status.ancestors` of policies of a registered
//! policy kind through their status subresource.
//!
//! The CRDs (`testpolicies.example.com`, `testfilters.example.com`) are
//! applied by each test (idempotently) and left installed.

mod support;

use std::time::Duration;

use gwcore::extension::{
    ExtensionKind, ExtensionObject, Extensions, FilterKind, PolicyContext, PolicyKind, PolicyValue,
    Refused,
};
use gwcore::model::{Kind, Object};
use gwcore_k8s::Options;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};
use support::*;

const GROUP: &str = "example.com";
const TEST_POLICY: ExtensionKind = ExtensionKind::new("example.com/v1", "TestPolicy");
const TEST_FILTER: ExtensionKind = ExtensionKind::new("example.com/v1", "TestFilter");
/// Registered, but no CRD serves it.
const NOT_INSTALLED: ExtensionKind = ExtensionKind::new("absent.example.com/v1", "NotInstalled");

/// `spec.limit` (a number) is required.
#[derive(Debug)]
struct TestPolicy;

#[derive(Debug, serde::Deserialize)]
struct TestPolicySpec {
    limit: u32,
}

impl PolicyKind for TestPolicy {
    fn kind(&self) -> ExtensionKind {
        TEST_POLICY
    }
    fn parse(&self, policy: &Object, _: &mut PolicyContext<'_>) -> Result<PolicyValue, Refused> {
        let Object::Extension(o) = policy else {
            return Err("not a TestPolicy".into());
        };
        let spec: TestPolicySpec = o.spec_as()?;
        Ok(PolicyValue::new(spec.limit))
    }
}

/// `spec.header` (a non-empty string) is required.
#[derive(Debug)]
struct TestFilter;

impl FilterKind for TestFilter {
    fn kind(&self) -> ExtensionKind {
        TEST_FILTER
    }
    fn check(&self, object: &ExtensionObject) -> Result<(), Refused> {
        match object.spec.get("header").and_then(Value::as_str) {
            Some(h) if !h.is_empty() => Ok(()),
            _ => Err("spec.header is required".into()),
        }
    }
}

fn crd(plural: &str, kind: &str) -> Value {
    let open = json!({"type": "object", "x-kubernetes-preserve-unknown-fields": true});
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": format!("{plural}.{GROUP}")},
        "spec": {
            "group": GROUP,
            "names": {"plural": plural, "singular": kind.to_lowercase(), "kind": kind,
                      "listKind": format!("{kind}List")},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {"type": "object",
                    "properties": {"spec": open, "status": open}}}
            }]
        }
    })
}

/// Applies both CRDs and waits until the API server serves both kinds.
async fn install_crds(c: &Cluster) {
    let crds: Api<DynamicObject> = Api::all_with(
        c.client.clone(),
        &ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk("apiextensions.k8s.io", "v1", "CustomResourceDefinition"),
            "customresourcedefinitions",
        ),
    );
    for (plural, kind) in [
        ("testpolicies", "TestPolicy"),
        ("testfilters", "TestFilter"),
    ] {
        let name = format!("{plural}.{GROUP}");
        crds.patch(
            &name,
            &PatchParams::apply("gwcore-test").force(),
            &Patch::Apply(&crd(plural, kind)),
        )
        .await
        .unwrap_or_else(|e| panic!("apply CRD {name}: {e}"));
    }
    eventually(
        "example.com/v1 to serve TestPolicy and TestFilter",
        Duration::from_secs(30),
        || async {
            let group = kube::discovery::group(&c.client, GROUP)
                .await
                .map_err(|e| e.to_string())?;
            let kinds: Vec<String> = group
                .versioned_resources("v1")
                .into_iter()
                .map(|(ar, _)| ar.kind)
                .collect();
            if ["TestPolicy", "TestFilter"]
                .iter()
                .all(|k| kinds.iter().any(|x| x == k))
            {
                Ok(())
            } else {
                Err(format!("{kinds:?}"))
            }
        },
    )
    .await;
}

/// A client acting as deploy/'s `gwcore` ServiceAccount, with deploy/'s
/// ClusterRole and, for the test kinds, what docs/extensions.md says an
/// embedder grants: get, list and watch on each kind, update on the
/// `status` of policy kinds.
async fn as_gwcore_with_extension_rbac(c: &Cluster) -> kube::Client {
    let text = std::fs::read_to_string(format!("{DEPLOY}/rbac.yaml")).unwrap();
    let mut objs: Vec<Value> = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let v: Value = serde::Deserialize::deserialize(doc).unwrap();
        // The Lease's Role is not needed: no election here.
        if matches!(
            v["kind"].as_str(),
            Some("ClusterRole" | "ClusterRoleBinding")
        ) {
            objs.push(v);
        }
    }
    let sa = json!({"kind": "ServiceAccount", "name": "gwcore", "namespace": "gwcore-system"});
    objs.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
        "metadata": {"name": "gwcore-extensions-test"},
        "rules": [
            {"apiGroups": [GROUP], "resources": ["testpolicies", "testfilters"],
             "verbs": ["get", "list", "watch"]},
            {"apiGroups": [GROUP], "resources": ["testpolicies/status"], "verbs": ["update"]}
        ]
    }));
    objs.push(json!({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "gwcore-extensions-test"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "gwcore-extensions-test"},
        "subjects": [sa]
    }));
    for o in &objs {
        let kind = o["kind"].as_str().unwrap();
        let name = o["metadata"]["name"].as_str().unwrap();
        let api: Api<DynamicObject> = Api::all_with(
            c.client.clone(),
            &c.resource("rbac.authorization.k8s.io/v1", kind),
        );
        api.patch(
            name,
            &PatchParams::apply("gwcore-test").force(),
            &Patch::Apply(o),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {kind} {name}: {e}"));
    }
    as_gwcore_service_account().await
}

/// Starts a controller as `client` and waits until it has listed
/// everything.
async fn start_as(client: kube::Client, opts: Options) -> gwcore_k8s::Controller {
    let ctl = gwcore_k8s::Controller::start(client, opts)
        .await
        .expect("controller start");
    tokio::time::timeout(Duration::from_secs(30), ctl.synced())
        .await
        .expect("controller synced within 30 s");
    ctl
}

fn ext_api(c: &Cluster, kind: ExtensionKind, plural: &str, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk(kind.group(), "v1", kind.kind());
    Api::namespaced_with(
        c.client.clone(),
        ns,
        &ApiResource::from_gvk_with_plural(&gvk, plural),
    )
}

/// Server-side applies an object of one of the test kinds.
async fn apply_ext(api: &Api<DynamicObject>, obj: Value) {
    let name = obj["metadata"]["name"].as_str().unwrap().to_owned();
    api.patch(
        &name,
        &PatchParams::apply("gwcore-test").force(),
        &Patch::Apply(&obj),
    )
    .await
    .unwrap_or_else(|e| panic!("apply {name}: {e}"));
}

/// A namespace with a GatewayClass of `controller`, a Gateway `gw`, a
/// Service `svc` and an HTTPRoute `r` to it through `filters`.
fn base(sfx: &str, ns: &str, controller: &str, filters: Value) -> Vec<Value> {
    vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        json!({"apiVersion": HTTP_V1, "kind": "GatewayClass", "metadata": {"name": format!("ext-{sfx}")},
               "spec": {"controllerName": controller}}),
        json!({"apiVersion": HTTP_V1, "kind": "Gateway", "metadata": {"name": "gw", "namespace": ns},
               "spec": {"gatewayClassName": format!("ext-{sfx}"),
                        "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc", "namespace": ns},
               "spec": {"ports": [{"port": 80}]}}),
        json!({"apiVersion": HTTP_V1, "kind": "HTTPRoute", "metadata": {"name": "r", "namespace": ns},
               "spec": {"parentRefs": [{"name": "gw"}],
                        "rules": [{"filters": filters, "backendRefs": [{"name": "svc", "port": 80}]}]}}),
    ]
}

/// `(status, reason)` of condition `ty` in `entries[]` (`status.parents` or
/// `status.ancestors`) written by `controller`.
fn condition(
    obj: &DynamicObject,
    entries: &str,
    controller: &str,
    ty: &str,
) -> Option<(String, String)> {
    let list = obj
        .data
        .pointer(&format!("/status/{entries}"))?
        .as_array()?;
    let entry = list.iter().find(|p| p["controllerName"] == controller)?;
    let c = entry["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)?;
    Some((
        c["status"].as_str()?.to_owned(),
        c["reason"].as_str()?.to_owned(),
    ))
}

async fn wait_for(
    what: &str,
    read: impl AsyncFn() -> Option<DynamicObject>,
    entries: &str,
    controller: &str,
    ty: &str,
    want: (&str, &str),
) -> DynamicObject {
    let want = Some((want.0.to_owned(), want.1.to_owned()));
    eventually(
        &format!("{what} {ty} = {want:?}"),
        Duration::from_secs(30),
        || async {
            let obj = read().await;
            let got = obj
                .as_ref()
                .and_then(|o| condition(o, entries, controller, ty));
            match obj {
                Some(o) if got == want => Ok(o),
                _ => Err(format!("{got:?}")),
            }
        },
    )
    .await
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extension_policy_status_is_written_through_its_status_subresource() {
    let Some(c) = cluster().await else { return };
    install_crds(&c).await;
    let sfx = suffix("extpol");
    let ours = format!("example.com/gwcore-ext-{sfx}");
    let ns = format!("extpol-{sfx}");
    let objs = base(&sfx, &ns, &ours, json!([]));
    // As the ServiceAccount, with the RBAC docs/extensions.md asks for.
    let as_sa = as_gwcore_with_extension_rbac(&c).await;
    let ctl = start_as(
        as_sa,
        Options::new(&ours).with_extensions(Extensions::new().with_policy(TestPolicy)),
    )
    .await;
    let ar = ctl
        .served()
        .resource(Kind::Extension(TEST_POLICY))
        .expect("TestPolicy is watched");
    assert_eq!(
        (ar.api_version.as_str(), ar.plural.as_str()),
        ("example.com/v1", "testpolicies")
    );
    c.apply_all(&objs).await;
    let policies = ext_api(&c, TEST_POLICY, "testpolicies", &ns);
    let policy = |limit: Value| {
        json!({"apiVersion": "example.com/v1", "kind": "TestPolicy",
               "metadata": {"name": "p", "namespace": ns},
               "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}],
                        "limit": limit}})
    };
    apply_ext(&policies, policy(json!(10))).await;
    let read = || async { policies.get_opt("p").await.unwrap() };
    let p = wait_for(
        "TestPolicy",
        read,
        "ancestors",
        &ours,
        "Accepted",
        ("True", "Accepted"),
    )
    .await;
    let entry = p.data["status"]["ancestors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["controllerName"] == ours.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["ancestorRef"]["name"], "gw", "{entry}");
    assert_eq!(entry["ancestorRef"]["kind"], "Gateway", "{entry}");
    let cond = &entry["conditions"][0];
    assert_eq!(
        cond["observedGeneration"],
        json!(p.metadata.generation.unwrap()),
        "{cond}"
    );
    // The policy value reaches the routing the controller publishes.
    let state = ctl.state().borrow().clone();
    assert!(
        state
            .snapshot
            .get(&gwcore::model::ObjectKey::new(
                Kind::Extension(TEST_POLICY),
                &ns,
                "p"
            ))
            .is_some(),
        "the policy is in the snapshot"
    );

    // The embedder (or anyone) keeps a field of its own in the status: our
    // writes replace `ancestors` only.
    let mut body = p.clone();
    body.metadata.managed_fields = None;
    body.data["status"]["embedder"] = json!({"seen": true});
    policies
        .replace_status("p", &PostParams::default(), &body)
        .await
        .expect("status written by the embedder");

    // A spec the kind's parse refuses: Accepted=False, Invalid.
    policies
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"limit": "lots"}})),
        )
        .await
        .unwrap();
    let p = wait_for(
        "TestPolicy",
        read,
        "ancestors",
        &ours,
        "Accepted",
        ("False", "Invalid"),
    )
    .await;
    assert_eq!(
        p.data["status"]["embedder"],
        json!({"seen": true}),
        "a status field of the kind's own survives our write: {:?}",
        p.data["status"]
    );
    let entry = p.data["status"]["ancestors"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["controllerName"] == ours.as_str())
        .unwrap()
        .clone();
    assert!(
        entry["conditions"][0]["message"]
            .as_str()
            .unwrap()
            .contains("spec.limit"),
        "{entry}"
    );

    // Fixed again.
    policies
        .patch(
            "p",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"limit": 3}})),
        )
        .await
        .unwrap();
    wait_for(
        "TestPolicy",
        read,
        "ancestors",
        &ours,
        "Accepted",
        ("True", "Accepted"),
    )
    .await;
    let counters = ctl.counters();
    assert_eq!(
        counters.watch_errors, 0,
        "every watch is allowed: {counters:?}"
    );
    assert_eq!(
        counters.status_failures, 0,
        "every status write is allowed: {counters:?}"
    );
    policies.delete("p", &Default::default()).await.unwrap();
    c.cleanup(&objs).await;
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extension_ref_filter_resolves_once_its_object_exists() {
    let Some(c) = cluster().await else { return };
    install_crds(&c).await;
    let sfx = suffix("extflt");
    let ours = format!("example.com/gwcore-ext-{sfx}");
    let ns = format!("extflt-{sfx}");
    let objs = base(
        &sfx,
        &ns,
        &ours,
        json!([{"type": "ExtensionRef",
                "extensionRef": {"group": GROUP, "kind": "TestFilter", "name": "auth"}}]),
    );
    let extensions = Extensions::new()
        .with_filter(TestFilter)
        .with_filter(NotInstalledFilter);
    let as_sa = as_gwcore_with_extension_rbac(&c).await;
    let ctl = start_as(as_sa, Options::new(&ours).with_extensions(extensions)).await;
    assert!(
        ctl.served()
            .resource(Kind::Extension(TEST_FILTER))
            .is_some()
    );
    assert!(
        ctl.served()
            .resource(Kind::Extension(NOT_INSTALLED))
            .is_none(),
        "a registered kind the server does not serve is skipped"
    );
    c.apply_all(&objs).await;
    let read = || c.get(HTTP_V1, "HTTPRoute", &ns, "r");
    wait_for(
        "HTTPRoute",
        read,
        "parents",
        &ours,
        "ResolvedRefs",
        ("False", "BackendNotFound"),
    )
    .await;

    let filters = ext_api(&c, TEST_FILTER, "testfilters", &ns);
    let filter = |header: &str| {
        json!({"apiVersion": "example.com/v1", "kind": "TestFilter",
               "metadata": {"name": "auth", "namespace": ns},
               "spec": {"header": header}})
    };
    apply_ext(&filters, filter("x-token")).await;
    let r = wait_for(
        "HTTPRoute",
        read,
        "parents",
        &ours,
        "ResolvedRefs",
        ("True", "ResolvedRefs"),
    )
    .await;
    assert_eq!(
        condition(&r, "parents", &ours, "Accepted"),
        Some(("True".into(), "Accepted".into()))
    );

    // The kind's check refuses the object: InvalidParameters.
    apply_ext(&filters, filter("")).await;
    wait_for(
        "HTTPRoute",
        read,
        "parents",
        &ours,
        "ResolvedRefs",
        ("False", "InvalidParameters"),
    )
    .await;

    // Deleted: not found again.
    filters.delete("auth", &Default::default()).await.unwrap();
    wait_for(
        "HTTPRoute",
        read,
        "parents",
        &ours,
        "ResolvedRefs",
        ("False", "BackendNotFound"),
    )
    .await;
    let counters = ctl.counters();
    assert_eq!(
        counters.watch_errors, 0,
        "every watch is allowed: {counters:?}"
    );
    assert_eq!(
        counters.status_failures, 0,
        "every status write is allowed: {counters:?}"
    );
    c.cleanup(&objs).await;
    ctl.shutdown().await;
}

#[derive(Debug)]
struct NotInstalledFilter;

impl FilterKind for NotInstalledFilter {
    fn kind(&self) -> ExtensionKind {
        NOT_INSTALLED
    }
}
