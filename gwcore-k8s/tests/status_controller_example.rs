//! The `status_controller` example (gwcore in your own kube-rs controller)
//! against the test API server: one pass writes the ACME statuses, a second
//! pass over the same objects writes nothing.
//!
//! The example's code is compiled into this test as a module, so what the
//! example shows is what is tested.

mod support;

#[allow(dead_code)]
#[path = "../examples/status_controller.rs"]
mod example;

use gwcore_k8s::Served;
use support::{accepted, cluster, refused, suffix};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn example_controller_writes_acme_statuses_once() {
    let Some(c) = cluster().await else {
        return;
    };
    let sfx = suffix("example");
    let controller = format!("example.com/status-example-{sfx}");
    let objs = support::acme(&sfx, &controller);
    c.apply_all(&objs).await;
    let served = Served::discover(&c.client).await.expect("CRDs installed");

    let first = example::reconcile(&c.client, &served, &controller)
        .await
        .expect("first pass");
    // GatewayClass, Gateway and the three routes.
    assert_eq!(first.written, 5, "{first:?}");
    let (careers, hr) = (format!("careers-{sfx}"), format!("hr-{sfx}"));
    assert_eq!(
        c.route_accepted(&careers, "careers", &controller).await,
        accepted()
    );
    assert_eq!(
        c.route_accepted(&hr, "hr", &controller).await,
        refused("NotAllowedByListeners")
    );
    assert_eq!(
        c.attached_routes(&format!("infra-ns-{sfx}"), "shared-gateway")
            .await,
        Some(2)
    );

    // Nothing changed, so nothing is written: no write storm from a loop
    // that runs every few seconds.
    let second = example::reconcile(&c.client, &served, &controller)
        .await
        .expect("second pass");
    assert_eq!(second.written, 0, "{second:?}");
    assert_eq!(second.conflicts, 0, "{second:?}");

    c.cleanup(&objs).await;
}
