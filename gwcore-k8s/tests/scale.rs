//! 1 000 HTTPRoutes applied at once: how long until every route's status
//! and the Gateway's `attachedRoutes` are right, and how many writes that
//! took (one per route plus a few for the Gateway — not one per change).

mod support;

use std::time::{Duration, Instant};

use gwcore_k8s::Options;
use kube::api::{DeleteParams, ListParams, PostParams};
use kube::core::DynamicObject;
use serde_json::{Value, json};
use support::*;

const ROUTES: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_routes_settle() {
    let Some(c) = cluster().await else { return };
    let sfx = suffix("scale");
    let ours = format!("example.com/gwcore-test-{sfx}");
    let ns = format!("scale-{sfx}");
    let base: Vec<Value> = vec![
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}}),
        json!({"apiVersion": HTTP_V1, "kind": "GatewayClass", "metadata": {"name": format!("scale-{sfx}")},
               "spec": {"controllerName": ours}}),
        json!({"apiVersion": HTTP_V1, "kind": "Gateway", "metadata": {"name": "gw", "namespace": ns},
               "spec": {"gatewayClassName": format!("scale-{sfx}"),
                        "listeners": [{"name": "http", "port": 80, "protocol": "HTTP",
                                       "allowedRoutes": {"namespaces": {"from": "Same"}}}]}}),
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "svc", "namespace": ns},
               "spec": {"ports": [{"port": 8080, "protocol": "TCP"}]}}),
    ];
    c.apply_all(&base).await;
    let ctl = start(&c, Options::new(&ours)).await;
    wait_attached(&c, &ns, "gw", 0).await;
    let writes_before = ctl.counters().status_writes;

    let routes = c.api(HTTP_V1, "HTTPRoute", &ns);
    let ar = c.resource(HTTP_V1, "HTTPRoute");
    let t0 = Instant::now();
    concurrently(ROUTES, 16, |i| {
        let routes = routes.clone();
        let ar = ar.clone();
        async move {
            let mut r = DynamicObject::new(&format!("r{i:04}"), &ar);
            r.data = json!({"spec": {
                "parentRefs": [{"name": "gw"}],
                "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": format!("/r{i}")}}],
                           "backendRefs": [{"name": "svc", "port": 8080}]}]}});
            routes.create(&PostParams::default(), &r).await.unwrap();
        }
    })
    .await;
    let created = t0.elapsed();
    // The Gateway first (one small read), then the routes (one list).
    wait_attached(&c, &ns, "gw", ROUTES as i64).await;
    eventually("every route Accepted", Duration::from_secs(120), || {
        let routes = &routes;
        let ours = &ours;
        async move {
            let list = routes
                .list(&ListParams::default())
                .await
                .map_err(|e| e.to_string())?;
            let ok = list
                .items
                .iter()
                .filter(|r| route_accepted(r, ours) == accepted())
                .count();
            if ok == ROUTES {
                Ok(())
            } else {
                Err(format!("{ok} routes accepted"))
            }
        }
    })
    .await;
    let settled = t0.elapsed();
    let writes = ctl.counters().status_writes - writes_before;
    eprintln!(
        "scale: {ROUTES} HTTPRoutes created in {created:?} (16 at a time); every status and attachedRoutes right {settled:?} after the first create, {:?} after the last; {writes} status writes; {:?}",
        settled - created,
        ctl.counters()
    );
    assert!(writes >= ROUTES as u64, "every route written: {writes}");
    assert!(
        writes < ROUTES as u64 + 200,
        "one write per route plus a few Gateway writes, not one per change: {writes}"
    );

    routes
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .unwrap();
    wait_attached(&c, &ns, "gw", 0).await;
    c.cleanup(&base).await;
    ctl.shutdown().await;
}
