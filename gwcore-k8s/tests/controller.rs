//! The controller against a genuine kube-apiserver (see `support`): the
//! ACME scenario, label and route changes, other controllers' status
//! entries, write counting, and leader election.

mod support;

use std::time::{Duration, Instant};

use gwcore_k8s::{LeaseOptions, Options};
use serde_json::json;
use support::*;

const ACME_CONTROLLER: &str = "example.com/gateway-controller";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acme_scenario_through_the_api() {
    let Some(c) = cluster().await else { return };
    let sfx = suffix("acme");
    let objs = acme(&sfx, ACME_CONTROLLER);
    let ctl = start(&c, Options::new(ACME_CONTROLLER)).await;
    let (infra, careers, product, hr) = (
        format!("infra-ns-{sfx}"),
        format!("careers-{sfx}"),
        format!("product-{sfx}"),
        format!("hr-{sfx}"),
    );
    let t0 = Instant::now();
    c.apply_all(&objs).await;
    let applied = t0.elapsed();
    wait_route(&c, &careers, "careers", ACME_CONTROLLER, accepted()).await;
    wait_route(&c, &product, "product", ACME_CONTROLLER, accepted()).await;
    wait_route(
        &c,
        &hr,
        "hr",
        ACME_CONTROLLER,
        refused("NotAllowedByListeners"),
    )
    .await;
    wait_attached(&c, &infra, "shared-gateway", 2).await;
    eprintln!(
        "ACME: applied in {applied:?}, every status right {:?} after the first apply",
        t0.elapsed()
    );
    let class = c
        .get(HTTP_V1, "GatewayClass", "", &format!("acme-{sfx}"))
        .await
        .unwrap();
    assert_eq!(
        class
            .data
            .pointer("/status/conditions/0/status")
            .and_then(|v| v.as_str()),
        Some("True"),
        "GatewayClass Accepted: {:?}",
        class.data.get("status")
    );
    let gw = c
        .get(HTTP_V1, "Gateway", &infra, "shared-gateway")
        .await
        .unwrap();
    let generation = gw.metadata.generation.unwrap();
    for cond in gw
        .data
        .pointer("/status/conditions")
        .and_then(|v| v.as_array())
        .unwrap()
    {
        assert_eq!(cond["observedGeneration"], json!(generation), "{cond}");
    }

    // Label hr: it is admitted.
    let t = Instant::now();
    c.set_shared_gateway_access(&hr, true).await;
    wait_route(&c, &hr, "hr", ACME_CONTROLLER, accepted()).await;
    wait_attached(&c, &infra, "shared-gateway", 3).await;
    eprintln!(
        "ACME: hr labelled → Accepted and attachedRoutes 3 in {:?}",
        t.elapsed()
    );

    // Remove product's label: detached.
    let t = Instant::now();
    c.set_shared_gateway_access(&product, false).await;
    wait_route(
        &c,
        &product,
        "product",
        ACME_CONTROLLER,
        refused("NotAllowedByListeners"),
    )
    .await;
    wait_attached(&c, &infra, "shared-gateway", 2).await;
    eprintln!("ACME: product unlabelled → detached in {:?}", t.elapsed());

    // Delete a route: attachedRoutes drops.
    let t = Instant::now();
    c.delete(HTTP_V1, "HTTPRoute", &careers, "careers").await;
    wait_attached(&c, &infra, "shared-gateway", 1).await;
    eprintln!(
        "ACME: careers deleted → attachedRoutes 1 in {:?}",
        t.elapsed()
    );

    assert_eq!(ctl.counters().status_failures, 0, "{:?}", ctl.counters());
    c.cleanup(&objs).await;
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_controllers_route_status_entries_are_kept_in_place() {
    let Some(c) = cluster().await else { return };
    let sfx = suffix("other");
    let ours = format!("example.com/gwcore-test-{sfx}");
    let theirs = "other.example/controller";
    let mut objs = acme(&sfx, &ours);
    let careers = format!("careers-{sfx}");
    let infra = format!("infra-ns-{sfx}");
    // careers also names a Gateway of another implementation, listed first.
    for o in objs.iter_mut() {
        if o["kind"] == "HTTPRoute" && o["metadata"]["name"] == "careers" {
            o["spec"]["parentRefs"] = json!([
                {"name": "foreign", "namespace": infra},
                {"name": "shared-gateway", "namespace": infra}
            ]);
        }
    }
    c.apply_all(&objs).await;
    // The other controller reports on its parent before we start.
    let route = c
        .get(HTTP_V1, "HTTPRoute", &careers, "careers")
        .await
        .unwrap();
    let foreign_entry = json!({
        "parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "foreign", "namespace": infra},
        "controllerName": theirs,
        "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "theirs",
                        "lastTransitionTime": "2025-01-01T00:00:00Z", "observedGeneration": 1}]
    });
    c.put_status(&route, json!({"parents": [foreign_entry]}))
        .await
        .unwrap();

    let ctl = start(&c, Options::new(&ours)).await;
    wait_route(&c, &careers, "careers", &ours, accepted()).await;
    let route = c
        .get(HTTP_V1, "HTTPRoute", &careers, "careers")
        .await
        .unwrap();
    let parents = route
        .data
        .pointer("/status/parents")
        .unwrap()
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(parents.len(), 2, "{parents:?}");
    assert_eq!(
        parents[0], foreign_entry,
        "the other controller's entry is first and untouched"
    );

    // The other controller updates its entry; then our part changes. Both stay.
    let mut updated = foreign_entry.clone();
    updated["conditions"][0]["message"] = "theirs, updated".into();
    let mut status = route.data["status"].clone();
    status["parents"][0] = updated.clone();
    c.put_status(&route, status).await.unwrap();
    c.set_shared_gateway_access(&careers, false).await;
    wait_route(
        &c,
        &careers,
        "careers",
        &ours,
        refused("NotAllowedByListeners"),
    )
    .await;
    let route = c
        .get(HTTP_V1, "HTTPRoute", &careers, "careers")
        .await
        .unwrap();
    let parents = route
        .data
        .pointer("/status/parents")
        .unwrap()
        .as_array()
        .unwrap();
    assert_eq!(
        parents[0], updated,
        "the other controller's newer entry survives our write"
    );
    assert_eq!(parents.len(), 2);

    // Once the route no longer names our Gateway, our entry is removed and theirs stays.
    c.merge(
        HTTP_V1,
        "HTTPRoute",
        &careers,
        "careers",
        json!({"spec": {"parentRefs": [{"name": "foreign", "namespace": infra}]}}),
    )
    .await;
    let (parents, _) = eventually("our entry removed", Duration::from_secs(30), || {
        let c = &c;
        let careers = &careers;
        async move {
            let r = c
                .get(HTTP_V1, "HTTPRoute", careers, "careers")
                .await
                .unwrap();
            let p = r
                .data
                .pointer("/status/parents")
                .and_then(|v| v.as_array())
                .cloned()
                .unwrap_or_default();
            if p.len() == 1 {
                Ok(p)
            } else {
                Err(format!("{p:?}"))
            }
        }
    })
    .await;
    assert_eq!(parents[0], updated);
    c.cleanup(&objs).await;
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_changes_means_no_status_writes() {
    let Some(c) = cluster().await else { return };
    let sfx = suffix("quiet");
    let ours = format!("example.com/gwcore-test-{sfx}");
    let objs = acme(&sfx, &ours);
    let (infra, hr) = (format!("infra-ns-{sfx}"), format!("hr-{sfx}"));
    let ctl = start(&c, Options::new(&ours)).await;
    c.apply_all(&objs).await;
    wait_route(&c, &hr, "hr", &ours, refused("NotAllowedByListeners")).await;
    wait_attached(&c, &infra, "shared-gateway", 2).await;
    // Let the writes the watch has not echoed yet land.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let writes = ctl.counters().status_writes;
    // 1 GatewayClass + 1 Gateway + 3 routes, each written once or a few
    // times while the objects arrived one by one.
    assert!((5..=15).contains(&writes), "writes: {writes}");
    let before = c.versions(HTTP_V1, "HTTPRoute", &hr).await;
    let gw_before = c.versions(HTTP_V1, "Gateway", &infra).await;

    // An annotation is not part of the spec: no generation, no status change.
    c.merge(
        HTTP_V1,
        "HTTPRoute",
        &hr,
        "hr",
        json!({"metadata": {"annotations": {"note": "x"}}}),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        ctl.counters().status_writes,
        writes,
        "no status changed, so nothing may be written"
    );
    assert_eq!(c.versions(HTTP_V1, "Gateway", &infra).await, gw_before);
    assert_ne!(
        c.versions(HTTP_V1, "HTTPRoute", &hr).await,
        before,
        "the annotation did change the route"
    );

    // A second controller over the settled state writes nothing either.
    ctl.shutdown().await;
    let again = start(&c, Options::new(&ours)).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(again.counters().status_writes, 0, "{:?}", again.counters());
    assert!(again.counters().computes >= 1);
    c.cleanup(&objs).await;
    again.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_a_successor_takes_over() {
    let Some(c) = cluster().await else { return };
    let sfx = suffix("lease");
    let ours = format!("example.com/gwcore-test-{sfx}");
    let objs = acme(&sfx, &ours);
    let (infra, hr) = (format!("infra-ns-{sfx}"), format!("hr-{sfx}"));
    c.apply_all(&objs[..1]).await; // the infra namespace holds the Lease
    let opts = |id: &str| {
        let mut o = Options::new(&ours);
        let mut l = LeaseOptions::new(&infra, id);
        l.lease_duration = Duration::from_secs(2);
        l.renew_deadline = Duration::from_millis(1500);
        l.retry_period = Duration::from_millis(250);
        o.lease = Some(l);
        o
    };
    let a = start(&c, opts("a")).await;
    let b = start(&c, opts("b")).await;
    c.apply_all(&objs).await;
    wait_route(&c, &hr, "hr", &ours, refused("NotAllowedByListeners")).await;
    wait_attached(&c, &infra, "shared-gateway", 2).await;
    let (ca, cb) = (a.counters(), b.counters());
    assert!(
        ca.leader != cb.leader,
        "exactly one leader: a {ca:?}, b {cb:?}"
    );
    let (leader, follower) = if ca.leader { (a, b) } else { (b, a) };
    eventually(
        "the leader counts its writes",
        Duration::from_secs(5),
        || {
            let c = leader.counters();
            async move {
                if c.status_writes >= 5 {
                    Ok(())
                } else {
                    Err(format!("{c:?}"))
                }
            }
        },
    )
    .await;
    assert_eq!(
        follower.counters().status_writes,
        0,
        "the follower computes but never writes"
    );
    assert!(
        follower.state().borrow().statuses().len() >= 5,
        "the follower computes too"
    );

    // The leader dies without releasing the Lease.
    let killed = Instant::now();
    drop(leader);
    let mut lead = follower.leader();
    tokio::time::timeout(Duration::from_secs(10), lead.wait_for(|l| *l))
        .await
        .expect("the follower takes over within 10 s")
        .unwrap();
    let takeover = killed.elapsed();
    eprintln!("leader election: successor leads {takeover:?} after the leader died (lease 2 s)");
    // The last renewal was at most one retry period (250 ms) before the
    // kill; the Lease is valid for 2 s after it.
    assert!(
        takeover >= Duration::from_millis(1750),
        "not before the lease expired: {takeover:?}"
    );

    c.set_shared_gateway_access(&hr, true).await;
    wait_route(&c, &hr, "hr", &ours, accepted()).await;
    wait_attached(&c, &infra, "shared-gateway", 3).await;
    // The API server shows a write before the writer counts it: wait for
    // the count rather than read it once.
    let (f, _) = eventually(
        "the successor counts its two writes",
        Duration::from_secs(5),
        || {
            let f = follower.counters();
            async move {
                if f.status_writes >= 2 {
                    Ok(f)
                } else {
                    Err(format!("{f:?}"))
                }
            }
        },
    )
    .await;
    assert_eq!(f.status_conflicts, 0, "no conflicting writes: {f:?}");
    c.cleanup(&objs).await;
    follower.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_addresses_come_from_the_load_balancer_service() {
    let Some(c) = cluster().await else { return };
    let sfx = suffix("lb");
    let ours = format!("example.com/gwcore-test-{sfx}");
    let objs = acme(&sfx, &ours);
    let infra = format!("infra-ns-{sfx}");
    c.apply_all(&objs).await;
    let lb = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "gwcore", "namespace": infra},
                    "spec": {"type": "LoadBalancer", "ports": [{"port": 80, "protocol": "TCP"}]}});
    let svc = c.apply(&lb).await;
    let mut opts = Options::new(&ours);
    opts.address_service = Some((infra.clone(), "gwcore".into()));
    let ctl = start(&c, opts).await;
    wait_attached(&c, &infra, "shared-gateway", 2).await;
    // The cloud's load balancer controller reports its address.
    c.put_status(
        &svc,
        json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.10"}]}}),
    )
    .await
    .unwrap();
    let (addresses, t) = eventually("Gateway status.addresses", Duration::from_secs(30), || {
        let (c, infra) = (&c, &infra);
        async move {
            let g = c
                .get(HTTP_V1, "Gateway", infra, "shared-gateway")
                .await
                .unwrap();
            let a = g
                .data
                .pointer("/status/addresses")
                .cloned()
                .unwrap_or_default();
            if a == json!([{"type": "IPAddress", "value": "203.0.113.10"}]) {
                Ok(a)
            } else {
                Err(a.to_string())
            }
        }
    })
    .await;
    eprintln!("load-balancer address in Gateway status {t:?} after it appeared: {addresses}");
    c.cleanup(&objs).await;
    ctl.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn objects_only_cel_would_refuse_are_left_out_with_a_diagnostic() {
    let Some(c) = cluster().await else { return };
    let sfx = suffix("cel");
    let ours = format!("example.com/gwcore-test-{sfx}");
    let mut objs = acme(&sfx, &ours);
    let careers = format!("careers-{sfx}");
    // The CRD's CEL rule "value must be an absolute path" is not enforced
    // before Kubernetes 1.25, so the API server stores this route.
    for o in objs.iter_mut() {
        if o["kind"] == "HTTPRoute" && o["metadata"]["name"] == "careers" {
            o["spec"]["rules"][0]["matches"][0]["path"]["value"] = "careers-without-slash".into();
        }
    }
    let ctl = start(&c, Options::new(&ours)).await;
    c.apply_all(&objs).await;
    let infra = format!("infra-ns-{sfx}");
    // product alone attaches; careers is not read at all.
    wait_attached(&c, &infra, "shared-gateway", 1).await;
    let key = gwcore::model::ObjectKey::new(gwcore::model::Kind::HttpRoute, &careers, "careers");
    let state = ctl.state().borrow().clone();
    let errors = state
        .invalid
        .get(&key)
        .expect("careers is reported as invalid");
    assert!(
        errors[0].starts_with("spec.rules[0].matches[0].path"),
        "{errors:?}"
    );
    assert_eq!(
        c.route_accepted(&careers, "careers", &ours).await,
        None,
        "no status for an object gwcore cannot read"
    );
    c.cleanup(&objs).await;
    ctl.shutdown().await;
}
