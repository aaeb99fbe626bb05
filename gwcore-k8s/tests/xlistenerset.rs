//! `XListenerSet` on a genuine kube-apiserver (see `support`): a cluster on
//! the experimental channel of Gateway API v1.3–v1.4 serves ListenerSets
//! under that name, in `gateway.networking.x-k8s.io/v1alpha1`.
//!
//! The test server has the standard CRDs of a later release, which serve
//! `ListenerSet` in `gateway.networking.k8s.io`; this test installs an
//! `XListenerSet` CRD besides it. Its schema is upstream v1.4's shape,
//! trimmed to what the test uses (the listener fields typed, nested
//! settings kept as given, no CEL: the server is 1.20). Discovery prefers
//! `ListenerSet` where both are served, so the controller is started with
//! the `XListenerSet` resource for Kind::ListenerSet, as discovery picks it
//! on a v1.4 cluster (`kinds::tests::listenerset_is_found_under_either_name`).
//! It must watch the sets there, attach their listeners and the routes
//! naming them, and write their status to `xlistenersets`.

mod support;

use std::time::Duration;

use gwcore::model::{Kind, ListenerSetKind, Object};
use gwcore_k8s::{Converted, Options, Served};
use kube::api::{Api, Patch, PatchParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};
use support::*;

const X_API_VERSION: &str = "gateway.networking.x-k8s.io/v1alpha1";

fn xlistenerset_crd() -> Value {
    let listener = json!({
        "type": "object",
        "required": ["name", "port", "protocol"],
        "properties": {
            "name": {"type": "string", "minLength": 1, "maxLength": 253},
            "hostname": {"type": "string", "minLength": 1, "maxLength": 253},
            "port": {"type": "integer", "format": "int32", "minimum": 1, "maximum": 65535},
            "protocol": {"type": "string", "minLength": 1, "maxLength": 255},
            "tls": {"type": "object", "x-kubernetes-preserve-unknown-fields": true},
            "allowedRoutes": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
        }
    });
    json!({
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "xlistenersets.gateway.networking.x-k8s.io"},
        "spec": {
            "group": "gateway.networking.x-k8s.io",
            "names": {"kind": "XListenerSet", "listKind": "XListenerSetList",
                      "plural": "xlistenersets", "singular": "xlistenerset"},
            "scope": "Namespaced",
            "versions": [{
                "name": "v1alpha1", "served": true, "storage": true,
                "subresources": {"status": {}},
                "schema": {"openAPIV3Schema": {
                    "type": "object",
                    "required": ["spec"],
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "metadata": {"type": "object"},
                        "spec": {
                            "type": "object",
                            "required": ["parentRef", "listeners"],
                            "properties": {
                                "parentRef": {
                                    "type": "object",
                                    "required": ["name"],
                                    "properties": {
                                        "group": {"type": "string", "default": "gateway.networking.k8s.io"},
                                        "kind": {"type": "string", "default": "Gateway"},
                                        "name": {"type": "string"},
                                        "namespace": {"type": "string"}
                                    }
                                },
                                "listeners": {"type": "array", "minItems": 1, "maxItems": 64, "items": listener}
                            }
                        },
                        "status": {"type": "object", "x-kubernetes-preserve-unknown-fields": true}
                    }
                }}
            }]
        }
    })
}

fn x_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("gateway.networking.x-k8s.io", "v1alpha1", "XListenerSet"),
        "xlistenersets",
    )
}

/// Installs the CRD (idempotent) and waits until the server serves it.
async fn install_crd(c: &Cluster) {
    let crd_ar = c.resource("apiextensions.k8s.io/v1", "CustomResourceDefinition");
    let crds: Api<DynamicObject> = Api::all_with(c.client.clone(), &crd_ar);
    crds.patch(
        "xlistenersets.gateway.networking.x-k8s.io",
        &PatchParams::apply("gwcore-test").force(),
        &Patch::Apply(&xlistenerset_crd()),
    )
    .await
    .expect("XListenerSet CRD applied");
    let sets: Api<DynamicObject> = Api::all_with(c.client.clone(), &x_resource());
    eventually("XListenerSet served", Duration::from_secs(30), || {
        let sets = sets.clone();
        async move {
            sets.list(&Default::default())
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        }
    })
    .await;
}

fn condition(v: &Value, pointer: &str, ty: &str) -> Option<String> {
    v.pointer(pointer)?
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
        .and_then(|c| c["status"].as_str())
        .map(str::to_string)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xlistenerset_is_watched_attached_and_its_status_written_to_it() {
    let Some(c) = cluster().await else { return };
    install_crd(&c).await;
    let sfx = suffix("xls");
    let controller = format!("example.com/xlistenerset-{sfx}");
    let ns = format!("xls-{sfx}");

    // Discovery, on a server serving both names, picks ListenerSet.
    let discovered = Served::discover(&c.client).await.expect("discovery");
    if let Some(ar) = discovered.resource(Kind::ListenerSet) {
        assert_eq!(ar.kind, "ListenerSet", "the standard name wins: {ar:?}");
    }
    // As on a v1.4 experimental cluster: ListenerSets are XListenerSets.
    let served = Served::from_resources(discovered.iter().map(|(k, ar)| {
        if k == Kind::ListenerSet {
            (k, x_resource())
        } else {
            (k, ar.clone())
        }
    }));
    let ctl =
        gwcore_k8s::Controller::start_with(c.client.clone(), served, Options::new(&controller));
    tokio::time::timeout(Duration::from_secs(30), ctl.synced())
        .await
        .expect("controller synced within 30 s");

    let objs = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        json!({"apiVersion": HTTP_V1, "kind": "GatewayClass", "metadata": {"name": format!("xls-{sfx}")},
               "spec": {"controllerName": controller}}),
        json!({"apiVersion": HTTP_V1, "kind": "Gateway", "metadata": {"name": "gw", "namespace": ns},
               "spec": {"gatewayClassName": format!("xls-{sfx}"),
                        "allowedListeners": {"namespaces": {"from": "Same"}},
                        "listeners": [{"name": "http", "port": 80, "protocol": "HTTP", "hostname": "a.example.com"}]}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc", "namespace": ns},
               "spec": {"ports": [{"port": 80}]}}),
        json!({"apiVersion": HTTP_V1, "kind": "HTTPRoute", "metadata": {"name": "r", "namespace": ns},
               "spec": {"parentRefs": [{"group": "gateway.networking.x-k8s.io", "kind": "XListenerSet",
                                        "name": "team", "sectionName": "team-http"}],
                        "rules": [{"backendRefs": [{"name": "svc", "port": 80}]}]}}),
    ];
    c.apply_all(&objs).await;
    let sets: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), &ns, &x_resource());
    let set = json!({"apiVersion": X_API_VERSION, "kind": "XListenerSet",
        "metadata": {"name": "team", "namespace": ns},
        "spec": {"parentRef": {"name": "gw"},
                 "listeners": [{"name": "team-http", "port": 80, "protocol": "HTTP", "hostname": "team.example.com",
                                "allowedRoutes": {"namespaces": {"from": "Same"}}}]}});
    sets.patch(
        "team",
        &PatchParams::apply("gwcore-test").force(),
        &Patch::Apply(&set),
    )
    .await
    .expect("XListenerSet applied");

    // The route attaches through the set.
    wait_route(&c, &ns, "r", &controller, accepted()).await;
    // The set's status is written to the XListenerSet.
    let (status, _) = eventually("XListenerSet status", Duration::from_secs(30), || {
        let sets = sets.clone();
        async move {
            let s = sets.get("team").await.map_err(|e| e.to_string())?;
            let accepted = condition(&s.data, "/status/conditions", "Accepted");
            let attached = s
                .data
                .pointer("/status/listeners/0/attachedRoutes")
                .and_then(Value::as_i64);
            if accepted.as_deref() == Some("True") && attached == Some(1) {
                Ok(s.data)
            } else {
                Err(format!("{:?}", s.data.get("status")))
            }
        }
    })
    .await;
    assert_eq!(
        condition(&status, "/status/listeners/0/conditions", "Programmed").as_deref(),
        Some("True")
    );
    assert_eq!(
        status.pointer("/status/listeners/0/name"),
        Some(&json!("team-http"))
    );
    // The Gateway counts it.
    let gw = c.get(HTTP_V1, "Gateway", &ns, "gw").await.expect("Gateway");
    assert_eq!(
        gw.data.pointer("/status/attachedListenerSets"),
        Some(&json!(1)),
        "{:?}",
        gw.data.get("status")
    );
    let route = c.get(HTTP_V1, "HTTPRoute", &ns, "r").await.expect("route");
    assert_eq!(
        route.data.pointer("/status/parents/0/parentRef/kind"),
        Some(&json!("XListenerSet"))
    );
    assert_eq!(ctl.counters().status_failures, 0, "{:?}", ctl.counters());
    // A controller starting later lists the sets: list items carry their
    // kind, so they convert as XListenerSets too.
    let listed = sets.list(&Default::default()).await.expect("listed");
    let Converted::Valid(Object::ListenerSet(ls)) =
        gwcore_k8s::kinds::convert(Kind::ListenerSet, listed.items[0].clone())
    else {
        panic!("{:?}", listed.items[0])
    };
    assert_eq!(ls.served_as, ListenerSetKind::XListenerSet);

    sets.delete("team", &Default::default())
        .await
        .expect("deleted");
    c.cleanup(&objs).await;
    ctl.shutdown().await;
}
