//! gwcore in your own kube-rs controller: status only, no data plane.
//!
//! Each pass lists every kind gwcore reads, converts the objects into
//! gwcore's model, runs the engine, and writes back each status that
//! differs — with the `resourceVersion` the status was computed from, so a
//! concurrent change makes the write fail with 409 instead of overwriting
//! it (the next pass computes again from the newer object).
//!
//! ```text
//!  list (per kind) ──kinds::convert──▶ Snapshot ──engine::compute──▶ statuses
//!        ▲                                                              │
//!        └──────── PUT /status (rv precondition), changed only ◀────────┘
//! ```
//!
//! ```text
//! cargo run -p gwcore-k8s --example status_controller -- example.com/gateway-controller
//! cargo run -p gwcore-k8s --example status_controller -- example.com/gateway-controller --once
//! ```
//!
//! It handles the GatewayClasses whose `spec.controllerName` is the name
//! given, using the cluster of `KUBECONFIG` (or the in-cluster account).
//! Listing everything every 10 s keeps the example short; a production
//! controller watches instead and writes from one elected replica, which is
//! what [`gwcore_k8s::Controller`] does.

use std::time::Duration;

use gwcore::Snapshot;
use gwcore::engine::{ComputeOptions, compute};
use gwcore_k8s::kinds::{Converted, Served, convert};
use gwcore_k8s::writer::{current_status, same_status};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams, PostParams};
use kube::core::DynamicObject;
use kube::{Client, ResourceExt};

/// What one pass did.
#[derive(Debug, Default)]
pub(crate) struct Pass {
    /// Objects read (valid ones).
    pub(crate) read: usize,
    /// Objects left out, each with why.
    pub(crate) invalid: Vec<String>,
    /// Statuses written.
    pub(crate) written: usize,
    /// Statuses that changed on the server since they were read.
    pub(crate) conflicts: usize,
}

/// One pass: read, compute, write what differs.
pub(crate) async fn reconcile(
    client: &Client,
    served: &Served,
    controller: &str,
) -> kube::Result<Pass> {
    let mut pass = Pass::default();
    // 1. Read: every kind gwcore reads, at the version the server serves.
    let mut snapshot = Snapshot::new();
    for (kind, ar) in served.iter() {
        let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
        for obj in api.list(&ListParams::default()).await? {
            match convert(kind, obj) {
                Converted::Valid(o) => {
                    snapshot.insert(o);
                    pass.read += 1;
                }
                // What the CRDs' validation would refuse is left out, as
                // `gwcore check` leaves it out of files.
                Converted::Invalid { key, errors, .. } => {
                    pass.invalid.push(format!("{key}: {}", errors.join("; ")));
                }
            }
        }
    }
    // 2. Compute: pure, and the same output for the same objects.
    let now = Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let out = compute(&snapshot, &ComputeOptions::new(controller, now));
    // 3. Write what differs. Route statuses keep other controllers' entries:
    // the engine built ours from the object's current status.
    for (key, status) in &out.statuses {
        let Some(obj) = snapshot.get(key) else {
            continue;
        };
        if current_status(obj).is_some_and(|now| same_status(&now, status)) {
            continue;
        }
        let Some(ar) = served.resource(key.kind) else {
            continue;
        };
        let mut body = DynamicObject::new(&key.name, ar);
        let api: Api<DynamicObject> = if key.kind.is_namespaced() {
            body = body.within(&key.namespace);
            Api::namespaced_with(client.clone(), &key.namespace, ar)
        } else {
            Api::all_with(client.clone(), ar)
        };
        body.metadata.resource_version = obj.meta().resource_version.clone();
        body.data = serde_json::json!({ "status": status });
        let pp = PostParams {
            dry_run: false,
            field_manager: Some("status-controller-example".into()),
        };
        match api.replace_status(&key.name, &pp, &body).await {
            Ok(written) => {
                pass.written += 1;
                println!(
                    "status written: {key} (resourceVersion {:?})",
                    written.resource_version()
                );
            }
            Err(kube::Error::Api(e)) if e.is_conflict() => pass.conflicts += 1,
            // Deleted since it was listed: nothing to write.
            Err(kube::Error::Api(e)) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
    }
    Ok(pass)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let once = args.iter().any(|a| a == "--once");
    let controller = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .map_or("example.com/gateway-controller", String::as_str);
    let client = Client::try_default().await?;
    // Which version of each kind the server serves (TLSRoute v1alpha2 or
    // v1, ...); fails when the Gateway API CRDs are missing.
    let served = Served::discover(&client).await?;
    loop {
        let pass = reconcile(&client, &served, controller).await?;
        for why in &pass.invalid {
            eprintln!("left out: {why}");
        }
        println!(
            "{} objects read, {} statuses written, {} conflicts (retried next pass)",
            pass.read, pass.written, pass.conflicts
        );
        if once {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
    }
}
