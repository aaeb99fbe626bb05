//! `deploy/` against the test API server: the kustomize base applies
//! (server-side dry run), and its RBAC is enough: a controller running as
//! the `gwcore` ServiceAccount (impersonated) watches, elects, writes
//! status and keeps the Gateways' Services (`--gateway-services`, on in
//! deploy/) with their EndpointSlices without a single refused request.

mod support;

use std::time::Duration;

use gwcore_k8s::{Controller, GatewayServiceOptions, LeaseOptions, Options};
use kube::api::{Api, ListParams};
use kube::core::DynamicObject;
use serde_json::{Value, json};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_applies_and_its_rbac_suffices() {
    let Some(c) = cluster().await else { return };
    // A dry run cannot create the namespace the other objects go to.
    let Some(()) = kubectl_apply_deploy(&["namespace.yaml"]) else {
        return;
    };
    // The test server is Kubernetes 1.20, older than CEL
    // (`x-kubernetes-validations`, 1.25): kubectl's client-side check of
    // the CRDs in deploy/crds refuses that field there, while the server
    // itself (checked here) ignores it.
    let out = kubectl(&[
        "apply",
        "-k",
        DEPLOY,
        "--dry-run=server",
        "--validate=false",
    ])
    .unwrap();
    for kind in [
        "serviceaccount/gwcore",
        "clusterrole",
        "rolebinding",
        "deployment.apps/gwcore",
        "role.rbac.authorization.k8s.io/gwcore-gateway-pods",
        "gatewayclass",
    ] {
        assert!(out.contains(kind), "{kind} missing from:\n{out}");
    }

    // Really create the ServiceAccount and its RBAC, then act as it.
    kubectl_apply_deploy(&["serviceaccount.yaml", "rbac.yaml"]).unwrap();
    let as_sa = as_gwcore_service_account().await;

    let sfx = suffix("rbac");
    let ours = format!("example.com/gwcore-rbac-{sfx}");
    let objs = acme(&sfx, &ours);
    c.apply_all(&objs).await;
    // As deploy/'s pods run it: Gateway Services on, the proxy pods in
    // gwcore-system (a fake one here, with labels of this test's own).
    let app = format!("rbac-{sfx}");
    proxy_pod(&c, "gwcore-system", &app, &app, "10.244.1.1", true).await;
    let mut opts = Options::new(&ours);
    let mut services = GatewayServiceOptions::default();
    services.selector = [("app".to_string(), app.clone())].into();
    services.pods_namespace = Some("gwcore-system".into());
    opts.gateway_services = Some(services);
    let mut lease = LeaseOptions::new("gwcore-system", format!("rbac-{sfx}"));
    lease.name = format!("gwcore-rbac-{sfx}");
    lease.retry_period = Duration::from_millis(250);
    opts.lease = Some(lease);
    let ctl = Controller::start(as_sa, opts)
        .await
        .expect("discovery as the ServiceAccount");
    let (hr, infra) = (format!("hr-{sfx}"), format!("infra-ns-{sfx}"));
    wait_route(&c, &hr, "hr", &ours, refused("NotAllowedByListeners")).await;
    wait_attached(&c, &infra, "shared-gateway", 2).await;
    // The Gateway's Service and, the Gateway being in another namespace
    // than the pods, its EndpointSlice, both made as the ServiceAccount.
    let slices = c.endpoint_slices();
    let slice_api: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), &infra, &slices);
    let service_slices =
        ListParams::default().labels("kubernetes.io/service-name=gwcore-shared-gateway");
    eventually(
        "the Gateway's Service and EndpointSlice",
        Duration::from_secs(30),
        || {
            let (c, infra, slice_api, service_slices) = (&c, &infra, &slice_api, &service_slices);
            async move {
                let svc = c.get("v1", "Service", infra, "gwcore-shared-gateway").await;
                let slices = slice_api.list(service_slices).await.unwrap().items;
                let ips: Vec<&Value> = slices
                    .iter()
                    .flat_map(|s| s.data["endpoints"].as_array().into_iter().flatten())
                    .map(|e| &e["addresses"][0])
                    .collect();
                if svc.is_some() && ips == [&json!("10.244.1.1")] {
                    Ok(())
                } else {
                    Err(format!(
                        "service {}, slice addresses {ips:?}",
                        svc.is_some()
                    ))
                }
            }
        },
    )
    .await;
    let counters = ctl.counters();
    assert!(
        counters.leader,
        "the ServiceAccount may hold the Lease: {counters:?}"
    );
    assert_eq!(
        counters.watch_errors, 0,
        "every watch is allowed: {counters:?}"
    );
    assert_eq!(
        counters.status_failures, 0,
        "every status write is allowed: {counters:?}"
    );
    // The Gateway deleted: both deleted as the ServiceAccount.
    c.cleanup(&objs).await;
    eventually(
        "the Service and EndpointSlice deleted",
        Duration::from_secs(30),
        || {
            let (c, infra, slice_api, service_slices) = (&c, &infra, &slice_api, &service_slices);
            async move {
                let svc = c.get("v1", "Service", infra, "gwcore-shared-gateway").await;
                let slices = slice_api.list(service_slices).await.unwrap().items;
                if svc.is_none() && slices.is_empty() {
                    Ok(())
                } else {
                    Err(format!(
                        "service {}, {} slices",
                        svc.is_some(),
                        slices.len()
                    ))
                }
            }
        },
    )
    .await;
    c.delete("v1", "Pod", "gwcore-system", &app).await;
    ctl.shutdown().await;
}

/// The shipped Deployment turns Gateway Services on, and no longer points
/// at a Service of its own (deploy/ has none).
#[test]
fn the_shipped_deployment_keeps_a_service_per_gateway() {
    let text = std::fs::read_to_string(format!("{DEPLOY}/deployment.yaml")).unwrap();
    let d: Value = serde_norway::from_str(&text).unwrap();
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert!(args.contains(&"--gateway-services"), "{args:?}");
    assert!(
        !args.iter().any(|a| a.starts_with("--address-service")),
        "{args:?}"
    );
    // The pods' namespace comes from POD_NAMESPACE.
    let env = c["env"].as_array().unwrap();
    assert!(
        env.iter().any(|e| e["name"] == "POD_NAMESPACE"
            && e["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.namespace"),
        "{env:?}"
    );
}
