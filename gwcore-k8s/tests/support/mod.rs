//! Shared by the integration tests: connecting to the test API server,
//! applying manifests, reading statuses, waiting.
//!
//! The tests run against the API server that `source .ci/k8s.sh` starts (a
//! genuine kube-apiserver 1.20.2 + etcd on 127.0.0.1), or any cluster:
//! `GWCORE_K8S_TEST=1 KUBECONFIG=... cargo test -p gwcore-k8s`. Without
//! `GWCORE_K8S_TEST=1` they skip (so that a developer's own KUBECONFIG is
//! never written to by accident) — except under `CI=true`, where a missing
//! API server is a failure.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::BTreeMap;
use std::future::Future;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use gwcore_k8s::{Controller, Options};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Client, Discovery};
use serde_json::{Value, json};

pub mod serve;

/// A connection to the test API server.
pub struct Cluster {
    pub client: Client,
    discovery: Discovery,
}

/// Connects, or returns `None` (after saying why) when the tests should
/// skip. Panics under `CI=true` when there is no API server.
pub async fn cluster() -> Option<Cluster> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("GWCORE_K8S_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let enabled = std::env::var("GWCORE_K8S_TEST").is_ok_and(|v| v == "1");
    if !enabled {
        assert!(
            !ci,
            "CI=true but no test API server: run `source .ci/k8s.sh` before the tests (it sets GWCORE_K8S_TEST=1 and KUBECONFIG)"
        );
        eprintln!(
            "skipping: no test API server (run `source .ci/k8s.sh`, or set GWCORE_K8S_TEST=1 and KUBECONFIG for another cluster)"
        );
        return None;
    }
    let client = Client::try_default()
        .await
        .expect("GWCORE_K8S_TEST=1 but no usable KUBECONFIG");
    let discovery = Discovery::new(client.clone())
        .run()
        .await
        .expect("the API server named by KUBECONFIG does not answer");
    Some(Cluster { client, discovery })
}

/// A suffix unique to this run and test, for names.
pub fn suffix(tag: &str) -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis();
    format!("{tag}-{:x}", t % 0xff_ffff)
}

/// The ACME scenario of `examples/acme/acme.yaml`, with every namespace
/// and the GatewayClass suffixed (so that runs and tests do not meet) and
/// the class pointed at `controller`.
pub fn acme(sfx: &str, controller: &str) -> Vec<Value> {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/acme/acme.yaml"
    ))
    .unwrap();
    let mut out = Vec::new();
    for doc in serde_norway::Deserializer::from_str(&text) {
        let mut v: Value = serde::Deserialize::deserialize(doc).unwrap();
        if v.is_null() {
            continue;
        }
        rename(&mut v, sfx, controller);
        out.push(v);
    }
    out
}

fn rename(v: &mut Value, sfx: &str, controller: &str) {
    let kind = v["kind"].as_str().unwrap_or("").to_string();
    let s = |x: &Value| Value::from(format!("{}-{sfx}", x.as_str().unwrap()));
    match kind.as_str() {
        "Namespace" | "GatewayClass" => v["metadata"]["name"] = s(&v["metadata"]["name"]),
        _ => v["metadata"]["namespace"] = s(&v["metadata"]["namespace"]),
    }
    if kind == "GatewayClass" {
        v["spec"]["controllerName"] = controller.into();
    }
    if kind == "Gateway" {
        v["spec"]["gatewayClassName"] = s(&v["spec"]["gatewayClassName"]);
    }
    if let Some(prs) = v
        .pointer_mut("/spec/parentRefs")
        .and_then(Value::as_array_mut)
    {
        for p in prs {
            if p.get("namespace").is_some() {
                p["namespace"] = s(&p["namespace"]);
            }
        }
    }
}

impl Cluster {
    /// The resource of an `apiVersion` + `kind`.
    pub fn resource(&self, api_version: &str, kind: &str) -> ApiResource {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        let gvk = GroupVersionKind::gvk(group, version, kind);
        self.discovery
            .resolve_gvk(&gvk)
            .unwrap_or_else(|| panic!("{api_version} {kind} is not served"))
            .0
    }

    /// The EndpointSlice resource the server serves: `discovery.k8s.io/v1`,
    /// else (before Kubernetes 1.21) `v1beta1`.
    pub fn endpoint_slices(&self) -> ApiResource {
        ["v1", "v1beta1"]
            .into_iter()
            .find_map(|v| {
                let gvk = GroupVersionKind::gvk("discovery.k8s.io", v, "EndpointSlice");
                self.discovery.resolve_gvk(&gvk).map(|r| r.0)
            })
            .expect("EndpointSlice is served")
    }

    /// The API of a kind, in a namespace (ignored for cluster-scoped kinds).
    pub fn api(&self, api_version: &str, kind: &str, ns: &str) -> Api<DynamicObject> {
        let ar = self.resource(api_version, kind);
        if matches!(kind, "Namespace" | "GatewayClass") {
            Api::all_with(self.client.clone(), &ar)
        } else {
            Api::namespaced_with(self.client.clone(), ns, &ar)
        }
    }

    /// Server-side applies one object (manager `gwcore-test`).
    pub async fn apply(&self, obj: &Value) -> DynamicObject {
        let mut obj = obj.clone();
        let kind = obj["kind"].as_str().unwrap().to_string();
        let api_version = obj["apiVersion"].as_str().unwrap().to_string();
        if kind == "Service" {
            // Server-side apply keys Service ports by (port, protocol): the
            // protocol must be explicit.
            for p in obj["spec"]["ports"].as_array_mut().into_iter().flatten() {
                if p.get("protocol").is_none() {
                    p["protocol"] = "TCP".into();
                }
            }
        }
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let api = self.api(&api_version, &kind, &ns);
        api.patch(
            &name,
            &PatchParams::apply("gwcore-test").force(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap_or_else(|e| panic!("apply {kind} {ns}/{name}: {e}"))
    }

    /// Applies every object, in order.
    pub async fn apply_all(&self, objs: &[Value]) {
        for o in objs {
            self.apply(o).await;
        }
    }

    /// Merge-patches an object.
    pub async fn merge(&self, api_version: &str, kind: &str, ns: &str, name: &str, patch: Value) {
        self.api(api_version, kind, ns)
            .patch(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
            .unwrap_or_else(|e| panic!("patch {kind} {ns}/{name}: {e}"));
    }

    /// Sets (`true`) or removes (`false`) the ACME label
    /// `shared-gateway-access: "true"` on a namespace.
    pub async fn set_shared_gateway_access(&self, namespace: &str, access: bool) {
        let value = if access { json!("true") } else { Value::Null };
        self.merge(
            "v1",
            "Namespace",
            "",
            namespace,
            json!({"metadata": {"labels": {"shared-gateway-access": value}}}),
        )
        .await;
    }

    /// Deletes an object (absent is fine).
    pub async fn delete(&self, api_version: &str, kind: &str, ns: &str, name: &str) {
        match self
            .api(api_version, kind, ns)
            .delete(name, &DeleteParams::default())
            .await
        {
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.is_not_found() => {}
            Err(e) => panic!("delete {kind} {ns}/{name}: {e}"),
        }
    }

    /// Reads an object.
    pub async fn get(
        &self,
        api_version: &str,
        kind: &str,
        ns: &str,
        name: &str,
    ) -> Option<DynamicObject> {
        self.api(api_version, kind, ns).get_opt(name).await.unwrap()
    }

    /// Replaces an object's status as another controller would.
    pub async fn put_status(
        &self,
        obj: &DynamicObject,
        status: Value,
    ) -> Result<DynamicObject, kube::Error> {
        let ar = self.resource(
            obj.types.as_ref().unwrap().api_version.as_str(),
            obj.types.as_ref().unwrap().kind.as_str(),
        );
        let ns = obj.metadata.namespace.clone().unwrap_or_default();
        let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &ns, &ar);
        let mut body = obj.clone();
        body.metadata.managed_fields = None;
        body.data["status"] = status;
        api.replace_status(
            obj.metadata.name.as_deref().unwrap(),
            &PostParams::default(),
            &body,
        )
        .await
    }

    /// The `resourceVersion` of every object of a kind in a namespace.
    pub async fn versions(
        &self,
        api_version: &str,
        kind: &str,
        ns: &str,
    ) -> BTreeMap<String, String> {
        self.api(api_version, kind, ns)
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .map(|o| {
                (
                    o.metadata.name.unwrap(),
                    o.metadata.resource_version.unwrap(),
                )
            })
            .collect()
    }

    /// `(Accepted status, reason)` of the route's `status.parents` entry
    /// written by `controller`, if any.
    pub async fn route_accepted(
        &self,
        ns: &str,
        name: &str,
        controller: &str,
    ) -> Option<(String, String)> {
        let r = self.get(HTTP_V1, "HTTPRoute", ns, name).await?;
        route_accepted(&r, controller)
    }

    /// `attachedRoutes` of the Gateway's first listener.
    pub async fn attached_routes(&self, ns: &str, name: &str) -> Option<i64> {
        let g = self.get(HTTP_V1, "Gateway", ns, name).await?;
        g.data
            .pointer("/status/listeners/0/attachedRoutes")
            .and_then(Value::as_i64)
    }

    /// Deletes the Gateway API objects a test made (namespaces stay: without
    /// kube-controller-manager they would stay Terminating anyway).
    pub async fn cleanup(&self, objs: &[Value]) {
        for o in objs.iter().rev() {
            let kind = o["kind"].as_str().unwrap();
            if kind == "Namespace" {
                continue;
            }
            self.delete(
                o["apiVersion"].as_str().unwrap(),
                kind,
                o["metadata"]["namespace"].as_str().unwrap_or(""),
                o["metadata"]["name"].as_str().unwrap(),
            )
            .await;
        }
    }
}

pub const HTTP_V1: &str = "gateway.networking.k8s.io/v1";

/// `(Accepted status, reason)` of `controller`'s entry in a route's status.
pub fn route_accepted(r: &DynamicObject, controller: &str) -> Option<(String, String)> {
    let parents = r.data.pointer("/status/parents")?.as_array()?;
    let entry = parents.iter().find(|p| p["controllerName"] == controller)?;
    let c = entry["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Accepted")?;
    Some((
        c["status"].as_str()?.to_string(),
        c["reason"].as_str()?.to_string(),
    ))
}

pub fn accepted() -> Option<(String, String)> {
    Some(("True".into(), "Accepted".into()))
}

pub fn refused(reason: &str) -> Option<(String, String)> {
    Some(("False".into(), reason.into()))
}

/// Polls `check` every 50 ms until it returns `Some`, or panics after
/// `timeout` with `what` and the last value seen. Returns the value and how
/// long it took.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let start = Instant::now();
    loop {
        let last = match check().await {
            Ok(v) => return (v, start.elapsed()),
            Err(e) => e,
        };
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}; last seen: {last}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Waits until the route's entry by `controller` says `want`.
pub async fn wait_route(
    c: &Cluster,
    ns: &str,
    name: &str,
    controller: &str,
    want: Option<(String, String)>,
) -> Duration {
    eventually(
        &format!("HTTPRoute {ns}/{name} Accepted = {want:?}"),
        Duration::from_secs(30),
        || {
            let want = want.clone();
            async move {
                let got = c.route_accepted(ns, name, controller).await;
                if got == want {
                    Ok(())
                } else {
                    Err(format!("{got:?}"))
                }
            }
        },
    )
    .await
    .1
}

/// Waits until the Gateway's first listener has `n` attached routes.
pub async fn wait_attached(c: &Cluster, ns: &str, name: &str, n: i64) -> Duration {
    eventually(
        &format!("Gateway {ns}/{name} attachedRoutes = {n}"),
        Duration::from_secs(30),
        || async move {
            let got = c.attached_routes(ns, name).await;
            if got == Some(n) {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    )
    .await
    .1
}

/// A proxy pod (no kubelet runs on the test server: it is only an
/// object) with the test's selector labels, made ready at `ip`.
pub async fn proxy_pod(c: &Cluster, ns: &str, name: &str, app: &str, ip: &str, ready: bool) {
    let pod = c
        .apply(&json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "labels": {"app": app}},
            "spec": {"containers": [{"name": "gwcore", "image": "gwcore:test",
                "ports": [{"name": "http", "containerPort": 8080}]}]}}))
        .await;
    set_ready(c, &pod, ip, ready).await;
}

/// Sets a pod's `status.podIP(s)` and `Ready` condition, as a kubelet would.
pub async fn set_ready(c: &Cluster, pod: &DynamicObject, ip: &str, ready: bool) {
    let pod = c
        .get(
            "v1",
            "Pod",
            pod.metadata.namespace.as_deref().unwrap(),
            pod.metadata.name.as_deref().unwrap(),
        )
        .await
        .unwrap();
    c.put_status(
        &pod,
        json!({"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
               "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}),
    )
    .await
    .unwrap();
}

/// Starts a controller and waits until it has listed everything.
pub async fn start(c: &Cluster, opts: Options) -> Controller {
    let ctl = Controller::start(c.client.clone(), opts)
        .await
        .expect("controller start");
    tokio::time::timeout(Duration::from_secs(30), ctl.synced())
        .await
        .expect("controller synced within 30 s");
    ctl
}

/// Runs `n` futures from `make` with at most `k` at once.
pub async fn concurrently<F, Fut>(n: usize, k: usize, make: F)
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = ()>,
{
    futures_util::stream::iter(0..n)
        .map(make)
        .buffer_unordered(k)
        .collect::<Vec<()>>()
        .await;
}

/// deploy/, the manifests the tests check.
pub const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");

/// Runs `kubectl ARGS` and returns its output; panics when it fails. When
/// kubectl cannot run at all: `None` (the test skips), a panic under
/// `CI=true`.
pub fn kubectl(args: &[&str]) -> Option<String> {
    let out = match std::process::Command::new("kubectl").args(args).output() {
        Ok(o) => o,
        Err(e) => {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "CI=true but kubectl cannot run: {e}"
            );
            eprintln!("skipping: kubectl cannot run: {e}");
            return None;
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kubectl {}: {text}", args.join(" "));
    Some(text)
}

/// Applies deploy/'s `files` with kubectl (`None`: kubectl cannot run).
pub fn kubectl_apply_deploy(files: &[&str]) -> Option<()> {
    for f in files {
        kubectl(&["apply", "-f", &format!("{DEPLOY}/{f}")])?;
    }
    Some(())
}

/// A client acting as deploy/'s `gwcore` ServiceAccount (impersonated,
/// with the groups a pod's token carries); its RBAC is whatever the test
/// applied.
pub async fn as_gwcore_service_account() -> Client {
    let mut config = kube::Config::infer().await.unwrap();
    config.auth_info.impersonate = Some("system:serviceaccount:gwcore-system:gwcore".into());
    config.auth_info.impersonate_groups = Some(vec![
        "system:serviceaccounts".into(),
        "system:serviceaccounts:gwcore-system".into(),
        "system:authenticated".into(),
    ]);
    Client::try_from(config).unwrap()
}

/// A namespace `{prefix}-{sfx}` with a GatewayClass of that name for
/// `controller` and a Gateway `gw` in it, one HTTP listener on port 80
/// (and the fields of `gateway_spec_extra` added to its spec). Returns the
/// namespace and the objects.
pub fn gateway_objects(
    prefix: &str,
    sfx: &str,
    controller: &str,
    gateway_spec_extra: Value,
) -> (String, Vec<Value>) {
    let name = format!("{prefix}-{sfx}");
    let mut spec = json!({
        "gatewayClassName": name,
        "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}],
    });
    for (k, v) in gateway_spec_extra.as_object().into_iter().flatten() {
        spec[k] = v.clone();
    }
    let objs = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}),
        json!({"apiVersion": HTTP_V1, "kind": "GatewayClass", "metadata": {"name": name},
               "spec": {"controllerName": controller}}),
        json!({"apiVersion": HTTP_V1, "kind": "Gateway", "metadata": {"name": "gw", "namespace": name},
               "spec": spec}),
    ];
    (name, objs)
}

/// The controller's options for `controller` with a Service per Gateway
/// (the default [`gwcore_k8s::GatewayServiceOptions`]).
pub fn with_gateway_services(controller: &str) -> Options {
    let mut opts = Options::new(controller);
    opts.gateway_services = Some(gwcore_k8s::GatewayServiceOptions::default());
    opts
}
