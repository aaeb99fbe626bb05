//! Keeps the Service of each of our Gateways as
//! [`crate::gateway_service::desired`] says, while leading: applied with
//! server-side apply (so a field someone changed is put back and a field
//! we no longer set is removed), re-applied when the Gateway's wanted
//! Service changes or the live one moves (edited or deleted), deleted
//! when it is stale ([`crate::gateway_service::stale`]: its Gateway is
//! gone, is no longer ours or keeps no listener to expose). A deleted
//! Gateway's Service also has an owner reference for a cluster's garbage
//! collector, but is not left to it: a cluster may run none, and gwcore
//! may have been down when the Gateway went.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gwcore::model::{Kind, Object, ObjectKey};
use k8s_openapi::api::core::v1::Service;
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use tokio::sync::watch;

use crate::controller::State;
use crate::gateway_service::{
    GatewayServiceOptions, MANAGED_BY, MANAGED_BY_LABEL, desired, service_name, stale,
};

/// What was last applied for a Service, and the `resourceVersion` the
/// server answered with.
type Applied = BTreeMap<ObjectKey, (Service, Option<String>)>;

/// What the task needs to write Services.
pub(crate) struct ServiceWriter {
    pub(crate) client: kube::Client,
    /// The apiVersion Gateways are served at (owner references').
    pub(crate) gateway_api_version: String,
    /// Ours ([`crate::gateway_service::CONTROLLER_ANNOTATION`]).
    pub(crate) controller_name: String,
    pub(crate) opts: GatewayServiceOptions,
}

/// Keeps the Services while `leader` says so, looking again at each new
/// `state` (and every second after a failed write).
pub(crate) async fn run(
    w: ServiceWriter,
    mut state: watch::Receiver<Arc<State>>,
    mut leader: watch::Receiver<bool>,
) {
    let mut applied: Applied = BTreeMap::new();
    let mut retry = false;
    loop {
        let wait = async {
            if retry {
                tokio::time::sleep(Duration::from_secs(1)).await;
            } else {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            r = state.changed() => if r.is_err() { return },
            r = leader.changed() => if r.is_err() { return },
            _ = wait => {}
        }
        if !*leader.borrow_and_update() {
            // Another replica keeps them; look at everything again when
            // leading again.
            applied.clear();
            retry = false;
            continue;
        }
        let st = state.borrow_and_update().clone();
        if !st.synced {
            continue;
        }
        retry = !pass(&w, &st, &mut applied).await;
    }
}

/// One look at every Gateway of ours; `false` when a write failed (to be
/// tried again).
async fn pass(w: &ServiceWriter, st: &State, applied: &mut Applied) -> bool {
    let mut ok = true;
    let mut wanted: BTreeMap<ObjectKey, Service> = BTreeMap::new();
    for (key, routing) in &st.routing {
        let Some(Object::Gateway(gw)) = st.snapshot.get(key) else {
            continue;
        };
        let name = service_name(&gw.metadata.name);
        let svc_key = ObjectKey::new(Kind::Service, key.namespace.clone(), name);
        if let Some(svc) = desired(
            gw,
            Some(routing),
            &w.gateway_api_version,
            &w.controller_name,
            &w.opts,
        ) {
            wanted.insert(svc_key, svc);
        }
    }
    let unwanted = stale(
        &st.snapshot,
        &w.controller_name,
        &wanted.keys().cloned().collect(),
    );
    applied.retain(|k, _| wanted.contains_key(k));
    for (svc_key, svc) in wanted {
        let live = st.snapshot.get(&svc_key);
        let live_rv = live.and_then(|o| o.meta().resource_version.clone());
        if let Some((last, rv)) = applied.get(&svc_key)
            && *last == svc
            && live_rv.is_some()
            && *rv == live_rv
        {
            continue;
        }
        // A Service of that name that gwcore did not make is someone
        // else's: never taken over. (Recorded as if applied, so that the
        // warning comes again only when it or the Gateway changes.)
        if let Some(live) = live
            && live.meta().labels.get(MANAGED_BY_LABEL).map(String::as_str) != Some(MANAGED_BY)
        {
            tracing::warn!(
                service = %svc_key,
                "the gateway's service is not made: a Service of that name exists without label {MANAGED_BY_LABEL}={MANAGED_BY}"
            );
            applied.insert(svc_key, (svc, live_rv));
            continue;
        }
        let api: Api<Service> = Api::namespaced(w.client.clone(), &svc_key.namespace);
        let params = PatchParams::apply(&w.opts.field_manager).force();
        match api.patch(&svc_key.name, &params, &Patch::Apply(&svc)).await {
            Ok(ret) => {
                tracing::debug!(service = %svc_key, "gateway service applied");
                applied.insert(svc_key, (svc, ret.metadata.resource_version));
            }
            Err(e) => {
                tracing::warn!(service = %svc_key, error = %e, "cannot apply the gateway's service");
                applied.remove(&svc_key);
                ok = false;
            }
        }
    }
    for svc_key in unwanted {
        // The one seen, not one made again under that name since.
        let uid = st.snapshot.get(&svc_key).and_then(|o| o.meta().uid.clone());
        let params = DeleteParams {
            preconditions: uid.map(|uid| Preconditions {
                uid: Some(uid),
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        let api: Api<Service> = Api::namespaced(w.client.clone(), &svc_key.namespace);
        match api.delete(&svc_key.name, &params).await {
            Ok(_) => tracing::debug!(service = %svc_key, "stale gateway service deleted"),
            // Gone already, or another Service by now.
            Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => {}
            Err(e) => {
                tracing::warn!(service = %svc_key, error = %e, "cannot delete a stale gateway service");
                ok = false;
            }
        }
    }
    ok
}
