//! Gateway infrastructure (`Options::gateway_services`) against a genuine
//! kube-apiserver (see `support`): each Gateway of ours gets a Service of
//! its own, kept as its listeners and `spec.infrastructure` say and put
//! back when someone changes or deletes it; its addresses are the
//! Gateway's, and the only ones its `spec.addresses` can use; it goes with
//! the Gateway (deleted by gwcore: the test server has no garbage
//! collector).

mod support;

use std::time::Duration;

use gwcore_k8s::GatewayServiceOptions;
use kube::api::{Api, DeleteParams, ListParams};
use kube::core::DynamicObject;
use serde_json::{Value, json};
use support::*;

/// Waits until the Service `gwcore-gw` in `ns` passes `check`.
async fn wait_service(
    c: &Cluster,
    ns: &str,
    what: &str,
    check: impl Fn(&DynamicObject) -> Result<(), String>,
) -> DynamicObject {
    eventually(what, Duration::from_secs(30), || {
        let check = &check;
        async move {
            match c.get("v1", "Service", ns, "gwcore-gw").await {
                Some(s) => check(&s).map(|()| s),
                None => Err("no Service".into()),
            }
        }
    })
    .await
    .0
}

fn ports(s: &DynamicObject) -> Vec<(String, i64, String)> {
    s.data["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or("").to_string(),
                p["port"].as_i64().unwrap_or(0),
                p["protocol"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

fn label<'a>(s: &'a DynamicObject, k: &str) -> Option<&'a str> {
    s.metadata.labels.as_ref()?.get(k).map(String::as_str)
}

async fn gateway_status(c: &Cluster, ns: &str, pointer: &str, want: Value) -> Value {
    eventually(
        &format!("Gateway {ns}/gw {pointer} = {want}"),
        Duration::from_secs(30),
        || {
            let want = want.clone();
            async move {
                let g = c.get(HTTP_V1, "Gateway", ns, "gw").await.unwrap();
                let got = g.data.pointer(pointer).cloned().unwrap_or_default();
                if got == want {
                    Ok(got)
                } else {
                    Err(got.to_string())
                }
            }
        },
    )
    .await
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_gateway_gets_a_service_kept_as_its_listeners_and_infrastructure_say() {
    let Some(c) = cluster().await else { return };
    let sfx = suffix("gws");
    let ours = format!("example.com/gwcore-test-{sfx}");
    let (ns, objs) = gateway_objects(
        "gws",
        &sfx,
        &ours,
        json!({"infrastructure": {"labels": {"team": "a"}, "annotations": {"lb.example/internal": "true"}}}),
    );
    c.apply_all(&objs).await;
    let ctl = start(&c, with_gateway_services(&ours)).await;
    let gw = c.get(HTTP_V1, "Gateway", &ns, "gw").await.unwrap();

    // Created: ports from the listeners, labels, annotations, owner.
    let svc = wait_service(&c, &ns, "the Gateway's Service", |_| Ok(())).await;
    assert_eq!(ports(&svc), [("tcp-80".into(), 80, "TCP".into())]);
    assert_eq!(svc.data["spec"]["type"], "LoadBalancer");
    assert_eq!(
        svc.data["spec"]["selector"],
        json!({"app.kubernetes.io/name": "gwcore", "app.kubernetes.io/component": "gateway"})
    );
    assert_eq!(label(&svc, "team"), Some("a"));
    assert_eq!(
        label(&svc, "gateway.networking.k8s.io/gateway-name"),
        Some("gw")
    );
    assert_eq!(
        svc.metadata.annotations.as_ref().unwrap()["lb.example/internal"],
        "true"
    );
    let owners = svc.metadata.owner_references.clone().unwrap();
    assert_eq!(owners.len(), 1);
    assert_eq!(
        (
            owners[0].kind.as_str(),
            owners[0].name.as_str(),
            &owners[0].uid,
            owners[0].controller
        ),
        (
            "Gateway",
            "gw",
            gw.metadata.uid.as_ref().unwrap(),
            Some(true)
        )
    );

    // Until a load balancer answers, the Gateway's address is the cluster IP.
    let cluster_ip = svc.data["spec"]["clusterIP"].as_str().unwrap().to_string();
    gateway_status(
        &c,
        &ns,
        "/status/addresses",
        json!([{"type": "IPAddress", "value": cluster_ip}]),
    )
    .await;
    // Then the load balancer's.
    c.put_status(&svc, json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.20"}, {"hostname": "lb.example.net"}]}}))
        .await
        .unwrap();
    gateway_status(
        &c,
        &ns,
        "/status/addresses",
        json!([{"type": "IPAddress", "value": "203.0.113.20"}, {"type": "Hostname", "value": "lb.example.net"}]),
    )
    .await;

    // A listener added: a port added (two listeners on one port: one
    // port). An infrastructure label changed, an annotation removed. (A
    // merge patch: on the 1.20 test server gwcore's status writes drop the
    // test's server-side-apply ownership of the spec, so that an apply
    // leaving the annotation out would not remove it.)
    c.merge(
        HTTP_V1,
        "Gateway",
        &ns,
        "gw",
        json!({"spec": {
            "listeners": [
                {"name": "http", "port": 80, "protocol": "HTTP"},
                {"name": "alt", "port": 8080, "protocol": "HTTP"},
                {"name": "alt-b", "port": 8080, "protocol": "HTTP", "hostname": "b.example.com"},
            ],
            "infrastructure": {"labels": {"team": "b"}, "annotations": null},
        }}),
    )
    .await;
    let svc = wait_service(&c, &ns, "ports and labels updated", |s| {
        let want = vec![
            ("tcp-80".into(), 80, "TCP".into()),
            ("tcp-8080".into(), 8080, "TCP".into()),
        ];
        let annotated = s
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key("lb.example/internal"));
        if ports(s) == want && label(s, "team") == Some("b") && !annotated {
            Ok(())
        } else {
            Err(format!(
                "{:?} {:?} {:?}",
                ports(s),
                s.metadata.labels,
                s.metadata.annotations
            ))
        }
    })
    .await;

    // Someone changes a field gwcore sets: put back; a field gwcore does
    // not set (say, a cloud controller's annotation) is theirs and stays.
    c.merge(
        "v1",
        "Service",
        &ns,
        "gwcore-gw",
        json!({"metadata": {"annotations": {"cloud.example/lb-id": "lb-1"}},
               "spec": {"selector": {"app.kubernetes.io/name": "other"}}}),
    )
    .await;
    wait_service(&c, &ns, "the selector put back", |s| {
        let theirs = s
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get("cloud.example/lb-id"));
        if s.data["spec"]["selector"]["app.kubernetes.io/name"] == "gwcore"
            && theirs.map(String::as_str) == Some("lb-1")
        {
            Ok(())
        } else {
            Err(format!("{} {theirs:?}", s.data["spec"]["selector"]))
        }
    })
    .await;
    // Someone deletes it: made again.
    let uid = svc.metadata.uid.clone().unwrap();
    c.delete("v1", "Service", &ns, "gwcore-gw").await;
    wait_service(&c, &ns, "the Service made again", |s| {
        if s.metadata.uid.as_ref() != Some(&uid) {
            Ok(())
        } else {
            Err("the old one".into())
        }
    })
    .await;

    // The Gateway deleted: its Service goes with it. The test server runs
    // no garbage collector (no kube-controller-manager): gwcore deletes it.
    c.delete(HTTP_V1, "Gateway", &ns, "gw").await;
    eventually("the Service deleted", Duration::from_secs(30), || {
        let (c, ns) = (&c, &ns);
        async move {
            match c.get("v1", "Service", ns, "gwcore-gw").await {
                None => Ok(()),
                Some(_) => Err("still there".into()),
            }
        }
    })
    .await;
    c.cleanup(&objs).await;
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_requested_address_the_service_does_not_serve_is_not_usable() {
    let Some(c) = cluster().await else { return };
    let sfx = suffix("gwsa");
    let ours = format!("example.com/gwcore-test-{sfx}");
    let (ns, objs) = gateway_objects(
        "gws",
        &sfx,
        &ours,
        json!({"addresses": [{"type": "IPAddress", "value": "192.0.2.77"}]}),
    );
    c.apply_all(&objs).await;
    let ctl = start(&c, with_gateway_services(&ours)).await;
    let programmed = |status: &str, reason: &str| json!({"status": status, "reason": reason});
    let cond = "/status/conditions/1";
    let get = |g: &DynamicObject| {
        let c = g.data.pointer(cond).cloned().unwrap_or_default();
        json!({"status": c["status"], "reason": c["reason"]})
    };
    // The Service has only its cluster IP: the address cannot be used.
    let svc = wait_service(&c, &ns, "the Gateway's Service", |_| Ok(())).await;
    eventually(
        "Programmed=False AddressNotUsable",
        Duration::from_secs(30),
        || {
            let (c, ns) = (&c, &ns);
            let want = programmed("False", "AddressNotUsable");
            async move {
                let g = c.get(HTTP_V1, "Gateway", ns, "gw").await.unwrap();
                let ok = g.data.pointer("/status/conditions/1/type") == Some(&json!("Programmed"))
                    && get(&g) == want
                    && g.data
                        .pointer("/status/addresses")
                        .is_none_or(|a| a == &json!([]));
                if ok {
                    Ok(())
                } else {
                    Err(g.data["status"].to_string())
                }
            }
        },
    )
    .await;
    // The load balancer gets that address: usable, Programmed.
    c.put_status(
        &svc,
        json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.77"}]}}),
    )
    .await
    .unwrap();
    eventually("Programmed=True", Duration::from_secs(30), || {
        let (c, ns) = (&c, &ns);
        let want = programmed("True", "Programmed");
        async move {
            let g = c.get(HTTP_V1, "Gateway", ns, "gw").await.unwrap();
            let ok = get(&g) == want
                && g.data.pointer("/status/addresses")
                    == Some(&json!([{"type": "IPAddress", "value": "192.0.2.77"}]));
            if ok {
                Ok(())
            } else {
                Err(g.data["status"].to_string())
            }
        }
    })
    .await;
    c.cleanup(&objs).await;
    ctl.shutdown().await;
}

/// deploy/'s RBAC lets the `gwcore` ServiceAccount keep the Services: a
/// controller acting as it (impersonated) makes one and deletes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploys_rbac_lets_the_controller_keep_the_services() {
    let Some(c) = cluster().await else { return };
    let Some(()) = kubectl_apply_deploy(&["namespace.yaml", "serviceaccount.yaml", "rbac.yaml"])
    else {
        return;
    };
    let as_sa = as_gwcore_service_account().await;

    let sfx = suffix("gwsr");
    let ours = format!("example.com/gwcore-test-{sfx}");
    let (ns, objs) = gateway_objects("gws", &sfx, &ours, json!({}));
    c.apply_all(&objs).await;
    let ctl = gwcore_k8s::Controller::start(as_sa, with_gateway_services(&ours))
        .await
        .expect("discovery as the ServiceAccount");
    wait_service(
        &c,
        &ns,
        "the Service made as the ServiceAccount",
        |_| Ok(()),
    )
    .await;
    c.delete(HTTP_V1, "Gateway", &ns, "gw").await;
    eventually(
        "the Service deleted as the ServiceAccount",
        Duration::from_secs(30),
        || {
            let (c, ns) = (&c, &ns);
            async move {
                match c.get("v1", "Service", ns, "gwcore-gw").await {
                    None => Ok(()),
                    Some(_) => Err("still there".into()),
                }
            }
        },
    )
    .await;
    assert_eq!(ctl.counters().watch_errors, 0, "every watch is allowed");
    c.cleanup(&objs).await;
    ctl.shutdown().await;
}

/// A controller started after the Service exists (a restart) knows it is
/// its own: it deletes it with the Gateway. (Regression: a Service whose
/// addresses count, listed at start, was dropped from the snapshot when
/// the list ended, so that it was never cleaned up.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_controller_deletes_the_service_it_finds() {
    let Some(c) = cluster().await else { return };
    let sfx = suffix("gwsx");
    let ours = format!("example.com/gwcore-test-{sfx}");
    let (ns, objs) = gateway_objects("gws", &sfx, &ours, json!({}));
    c.apply_all(&objs).await;
    let first = start(&c, with_gateway_services(&ours)).await;
    wait_service(&c, &ns, "the Gateway's Service", |_| Ok(())).await;
    first.shutdown().await;

    let second = start(&c, with_gateway_services(&ours)).await;
    c.delete(HTTP_V1, "Gateway", &ns, "gw").await;
    eventually(
        "the Service deleted by the new controller",
        Duration::from_secs(30),
        || {
            let (c, ns) = (&c, &ns);
            async move {
                match c.get("v1", "Service", ns, "gwcore-gw").await {
                    None => Ok(()),
                    Some(_) => Err("still there".into()),
                }
            }
        },
    )
    .await;
    c.cleanup(&objs).await;
    second.shutdown().await;
}

/// A Service of that name that gwcore did not make is left alone; once it
/// is gone, gwcore makes its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn someone_elses_service_of_that_name_is_not_taken_over() {
    let Some(c) = cluster().await else { return };
    let sfx = suffix("gwso");
    let ours = format!("example.com/gwcore-test-{sfx}");
    let (ns, mut objs) = gateway_objects("gws", &sfx, &ours, json!({}));
    objs.push(json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "gwcore-gw", "namespace": ns, "labels": {"team": "x"}},
        "spec": {"selector": {"app": "theirs"}, "ports": [{"name": "theirs", "port": 9999, "protocol": "TCP"}]}}));
    c.apply_all(&objs).await;
    let ctl = start(&c, with_gateway_services(&ours)).await;
    // The Gateway's status written: the controller has seen both.
    gateway_status(&c, &ns, "/status/conditions/0/type", json!("Accepted")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let theirs = c.get("v1", "Service", &ns, "gwcore-gw").await.unwrap();
    assert_eq!(ports(&theirs), [("theirs".into(), 9999, "TCP".into())]);
    assert_eq!(label(&theirs, "app.kubernetes.io/managed-by"), None);

    c.delete("v1", "Service", &ns, "gwcore-gw").await;
    wait_service(&c, &ns, "gwcore's own Service", |s| {
        if label(s, "app.kubernetes.io/managed-by") == Some("gwcore") {
            Ok(())
        } else {
            Err(format!("{:?}", s.metadata.labels))
        }
    })
    .await;
    c.cleanup(&objs).await;
    ctl.shutdown().await;
}

/// The addresses (sorted) and ports of the EndpointSlices of Service
/// `gwcore-gw` in `ns`, and their apiVersions.
async fn slices(c: &Cluster, ns: &str) -> (Vec<String>, Vec<Value>, Vec<String>) {
    let ar = c.endpoint_slices();
    let api: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), ns, &ar);
    let list = api
        .list(&ListParams::default().labels("kubernetes.io/service-name=gwcore-gw"))
        .await
        .unwrap();
    let mut ips = Vec::new();
    let mut ports = Vec::new();
    let mut versions = Vec::new();
    for s in list.items {
        assert_eq!(
            s.metadata.labels.as_ref().unwrap()["endpointslice.kubernetes.io/managed-by"],
            "endpointslice-controller.gwcore.dev"
        );
        let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str()),
            ("Service", "gwcore-gw")
        );
        for e in s.data["endpoints"].as_array().into_iter().flatten() {
            ips.push(e["addresses"][0].as_str().unwrap().to_string());
        }
        ports.push(s.data["ports"].clone());
        versions.push(ar.api_version.clone());
    }
    ips.sort();
    (ips, ports, versions)
}

/// Waits until the slices of `gwcore-gw` in `ns` list `want` (sorted).
async fn wait_slices(c: &Cluster, ns: &str, want: &[&str]) -> Vec<Value> {
    eventually(
        &format!("the slices list {want:?}"),
        Duration::from_secs(30),
        || async move {
            let (ips, ports, _) = slices(c, ns).await;
            if ips == want {
                Ok(ports)
            } else {
                Err(format!("{ips:?}"))
            }
        },
    )
    .await
    .0
}

/// A Gateway outside the proxy pods' namespace (ACME: Gateway in
/// `infra-ns`, proxies in `gwcore-system`): its Service has no selector
/// (it would select nothing there) and gwcore keeps its EndpointSlices
/// listing the ready proxy pods, at the target ports; they go with the
/// Gateway.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_outside_the_pods_namespace_gets_endpoint_slices_of_the_ready_pods() {
    let Some(c) = cluster().await else { return };
    let sfx = suffix("gwse");
    let ours = format!("example.com/gwcore-test-{sfx}");
    let (ns, mut objs) = gateway_objects("gws", &sfx, &ours, json!({}));
    let pods_ns = format!("gwp-{sfx}");
    objs.insert(
        0,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": pods_ns}}),
    );
    // And a Gateway in the pods' namespace.
    let mut beside = objs.last().unwrap().clone();
    beside["metadata"]["namespace"] = pods_ns.clone().into();
    objs.push(beside);
    c.apply_all(&objs).await;
    let app = format!("proxy-{sfx}");
    proxy_pod(&c, &pods_ns, "p1", &app, "10.244.0.1", true).await;
    proxy_pod(&c, &pods_ns, "p2", &app, "10.244.0.2", true).await;
    proxy_pod(&c, &pods_ns, "p-unready", &app, "10.244.0.3", false).await;
    // Another app's pod in that namespace is not a proxy.
    proxy_pod(&c, &pods_ns, "other", "other", "10.244.0.9", true).await;

    let mut opts = with_gateway_services(&ours);
    let mut services = GatewayServiceOptions::default()
        .with_target_port(80, "8080")
        .and_then(|o| o.with_target_port(8443, "http"))
        .unwrap();
    services.selector = [("app".to_string(), app.clone())].into();
    services.pods_namespace = Some(pods_ns.clone());
    opts.gateway_services = Some(services);
    let ctl = start(&c, opts).await;

    let svc = wait_service(&c, &ns, "the Gateway's Service", |_| Ok(())).await;
    assert_eq!(
        svc.data["spec"].get("selector"),
        None,
        "no selector: the pods are in another namespace"
    );
    let slice_ports = wait_slices(&c, &ns, &["10.244.0.1", "10.244.0.2"]).await;
    assert_eq!(
        slice_ports,
        [json!([{"name": "tcp-80", "port": 8080, "protocol": "TCP"}])]
    );
    let (_, _, versions) = slices(&c, &ns).await;
    eprintln!("EndpointSlices written at {versions:?}");
    // The Gateway beside the pods: its Service selects them, and gwcore
    // writes no slice for it.
    let beside = wait_service(
        &c,
        &pods_ns,
        "the Service of the Gateway beside the pods",
        |s| {
            if s.data["spec"]["selector"] == json!({"app": app}) {
                Ok(())
            } else {
                Err(s.data["spec"].to_string())
            }
        },
    )
    .await;
    assert_eq!(ports(&beside), [("tcp-80".into(), 80, "TCP".into())]);
    assert_eq!(slices(&c, &pods_ns).await.1, Vec::<Value>::new());

    // A pod turns unready: removed; the unready one turns ready: added.
    let p2 = c.get("v1", "Pod", &pods_ns, "p2").await.unwrap();
    set_ready(&c, &p2, "10.244.0.2", false).await;
    let p3 = c.get("v1", "Pod", &pods_ns, "p-unready").await.unwrap();
    set_ready(&c, &p3, "10.244.0.3", true).await;
    wait_slices(&c, &ns, &["10.244.0.1", "10.244.0.3"]).await;
    // A pod deleted: removed.
    c.delete("v1", "Pod", &pods_ns, "p1").await;
    wait_slices(&c, &ns, &["10.244.0.3"]).await;

    // A listener added: its port in the slices, at its target port (a
    // container port's name, resolved on the pod).
    c.merge(
        HTTP_V1,
        "Gateway",
        &ns,
        "gw",
        json!({"spec": {"listeners": [
            {"name": "http", "port": 80, "protocol": "HTTP"},
            {"name": "alt", "port": 8443, "protocol": "HTTP"},
        ]}}),
    )
    .await;
    eventually("the new port in the slice", Duration::from_secs(30), || {
        let (c, ns) = (&c, &ns);
        async move {
            let (ips, ports, _) = slices(c, ns).await;
            let want = json!([
                {"name": "tcp-80", "port": 8080, "protocol": "TCP"},
                {"name": "tcp-8443", "port": 8080, "protocol": "TCP"},
            ]);
            if ips == ["10.244.0.3"] && ports == [want] {
                Ok(())
            } else {
                Err(format!("{ips:?} {ports:?}"))
            }
        }
    })
    .await;

    // Someone deletes the slice: made again.
    let ar = c.endpoint_slices();
    let api: Api<DynamicObject> = Api::namespaced_with(c.client.clone(), &ns, &ar);
    api.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("kubernetes.io/service-name=gwcore-gw"),
    )
    .await
    .unwrap();
    wait_slices(&c, &ns, &["10.244.0.3"]).await;

    // The Gateway deleted: the Service and its slices go (deleted by
    // gwcore: the test server runs no garbage collector).
    c.delete(HTTP_V1, "Gateway", &ns, "gw").await;
    eventually(
        "the Service and slices deleted",
        Duration::from_secs(30),
        || {
            let (c, ns) = (&c, &ns);
            async move {
                let svc = c.get("v1", "Service", ns, "gwcore-gw").await;
                let (ips, ports, _) = slices(c, ns).await;
                if svc.is_none() && ports.is_empty() {
                    Ok(())
                } else {
                    Err(format!("service {}, slices {ips:?}", svc.is_some()))
                }
            }
        },
    )
    .await;
    for p in ["p1", "p2", "p-unready", "other"] {
        c.delete("v1", "Pod", &pods_ns, p).await;
    }
    c.cleanup(&objs).await;
    ctl.shutdown().await;
}
