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
//!
//! The Service of a Gateway outside the proxy pods' namespace has no
//! selector (it would select nothing there): this task watches the proxy
//! pods (by the selector, in their namespace) and keeps that Service's
//! EndpointSlices ([`crate::gateway_service::desired_slices`]) listing the
//! ready ones, in the same way: applied when they differ, deleted when
//! stale ([`crate::gateway_service::stale_endpoint_slices`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::BoxStream;
use gwcore::model::{Kind, Object, ObjectKey};
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::core::{ApiResource, DynamicObject};
use kube::runtime::{WatchStreamExt, watcher};
use tokio::sync::watch;

use crate::controller::State;
use crate::gateway_service::{
    GatewayServiceOptions, MANAGED_BY, MANAGED_BY_LABEL, ProxyPod, desired, desired_slices,
    service_name, stale, stale_endpoint_slices,
};

/// What was last applied for an object, and the `resourceVersion` the
/// server answered with.
type Applied<T> = BTreeMap<ObjectKey, (T, Option<String>)>;

/// What the task needs to write Services.
pub(crate) struct ServiceWriter {
    pub(crate) client: kube::Client,
    /// The apiVersion Gateways are served at (owner references').
    pub(crate) gateway_api_version: String,
    /// Ours ([`crate::gateway_service::CONTROLLER_ANNOTATION`]).
    pub(crate) controller_name: String,
    pub(crate) opts: GatewayServiceOptions,
    /// Where EndpointSlices are served (the version discovery found);
    /// `None` when they are not.
    pub(crate) slices: Option<ApiResource>,
}

/// The proxy pods, as their watch lists them.
#[derive(Default)]
struct Pods {
    /// The list in progress (between `Init` and `InitDone`).
    listing: Option<BTreeMap<String, ProxyPod>>,
    pods: BTreeMap<String, ProxyPod>,
    /// Whether they have been listed once.
    synced: bool,
}

impl Pods {
    /// Applies a watch event; whether what the slices list may have
    /// changed.
    fn apply(&mut self, event: watcher::Event<Pod>) -> bool {
        let put = |map: &mut BTreeMap<String, ProxyPod>, pod: &Pod| match ProxyPod::from_pod(pod) {
            Some(p) => map.insert(p.name.clone(), p.clone()).as_ref() != Some(&p),
            None => false,
        };
        match event {
            watcher::Event::Init => {
                self.listing = Some(BTreeMap::new());
                false
            }
            watcher::Event::InitApply(pod) => {
                match &mut self.listing {
                    Some(l) => {
                        put(l, &pod);
                    }
                    None => {
                        put(&mut self.pods, &pod);
                    }
                }
                false
            }
            watcher::Event::InitDone => {
                let listed = self.listing.take().unwrap_or_default();
                let changed = !self.synced || listed != self.pods;
                self.pods = listed;
                self.synced = true;
                changed
            }
            watcher::Event::Apply(pod) => put(&mut self.pods, &pod) && self.synced,
            watcher::Event::Delete(pod) => {
                let name = pod.metadata.name.unwrap_or_default();
                self.pods.remove(&name).is_some() && self.synced
            }
        }
    }
}

/// The watch of the proxy pods, when some Gateway's Service may need
/// slices ([`GatewayServiceOptions::pods_namespace`] is set); else a
/// stream that never yields.
fn watch_pods(
    w: &ServiceWriter,
) -> BoxStream<'static, Result<watcher::Event<Pod>, watcher::Error>> {
    let Some(ns) = &w.opts.pods_namespace else {
        return futures_util::stream::pending().boxed();
    };
    let api: Api<Pod> = Api::namespaced(w.client.clone(), ns);
    let selector = w
        .opts
        .selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",");
    watcher(api, watcher::Config::default().labels(&selector))
        .default_backoff()
        .boxed()
}

/// Keeps the Services (and slices) while `leader` says so, looking again
/// at each new `state`, at each change of the ready proxy pods, and every
/// second after a failed write.
pub(crate) async fn run(
    w: ServiceWriter,
    mut state: watch::Receiver<Arc<State>>,
    mut leader: watch::Receiver<bool>,
) {
    let mut applied: Applied<Service> = BTreeMap::new();
    let mut applied_slices: Applied<serde_json::Value> = BTreeMap::new();
    let mut pods = Pods::default();
    let mut pod_events = watch_pods(&w);
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
            e = pod_events.next() => match e {
                Some(Ok(e)) => if !pods.apply(e) { continue },
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "watching the proxy pods failed; listing again");
                    continue;
                }
                None => return,
            },
            _ = wait => {}
        }
        if !*leader.borrow_and_update() {
            // Another replica keeps them; look at everything again when
            // leading again.
            applied.clear();
            applied_slices.clear();
            retry = false;
            continue;
        }
        let st = state.borrow_and_update().clone();
        if !st.synced {
            continue;
        }
        retry = !pass(&w, &st, &pods, &mut applied, &mut applied_slices).await;
    }
}

/// One look at every Gateway of ours; `false` when a write failed (to be
/// tried again).
async fn pass(
    w: &ServiceWriter,
    st: &State,
    pods: &Pods,
    applied: &mut Applied<Service>,
    applied_slices: &mut Applied<serde_json::Value>,
) -> bool {
    let mut ok = true;
    let mut wanted: BTreeMap<ObjectKey, Service> = BTreeMap::new();
    for (key, routing) in st.routing.iter() {
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
    // The Services of ours without selector, with their uid: they get
    // slices.
    let mut need_slices: Vec<(Service, String)> = Vec::new();
    for (svc_key, svc) in wanted {
        let live = st.snapshot.get(&svc_key);
        let live_rv = live.and_then(|o| o.meta().resource_version.clone());
        let live_uid = live.and_then(|o| o.meta().uid.clone());
        let selectless = !w.opts.selects_pods(&svc_key.namespace);
        if let Some((last, rv)) = applied.get(&svc_key)
            && *last == svc
            && live_rv.is_some()
            && *rv == live_rv
        {
            if let (true, Some(uid)) = (selectless, live_uid) {
                need_slices.push((svc, uid));
            }
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
                if let (true, Some(uid)) = (selectless, ret.metadata.uid) {
                    need_slices.push((svc.clone(), uid));
                }
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
        ok &= delete_stale(w, st, &svc_key, None).await;
    }
    // Slices only once the pods are listed (before, every slice would
    // look stale); without a pods namespace every slice of ours is.
    if w.opts.pods_namespace.is_none() || pods.synced {
        ok &= slices(w, st, pods, need_slices, applied_slices).await;
    }
    ok
}

/// Applies the slices the Services in `need` should have and deletes the
/// stale ones; `false` when a write failed.
async fn slices(
    w: &ServiceWriter,
    st: &State,
    pods: &Pods,
    need: Vec<(Service, String)>,
    applied: &mut Applied<serde_json::Value>,
) -> bool {
    let mut ok = true;
    let listed: Vec<ProxyPod> = pods.pods.values().cloned().collect();
    let mut wanted: BTreeMap<ObjectKey, DynamicObject> = BTreeMap::new();
    match &w.slices {
        Some(ar) => {
            for (svc, uid) in &need {
                for s in desired_slices(svc, uid, ar, &listed) {
                    let key = ObjectKey::new(
                        Kind::EndpointSlice,
                        s.metadata.namespace.clone().unwrap_or_default(),
                        s.metadata.name.clone().unwrap_or_default(),
                    );
                    wanted.insert(key, s);
                }
            }
        }
        None if !need.is_empty() => {
            tracing::warn!(
                "the API server serves no EndpointSlice: the Services of Gateways outside the proxy pods' namespace have no endpoints"
            );
        }
        None => {}
    }
    let unwanted = stale_endpoint_slices(
        &st.snapshot,
        &w.controller_name,
        &wanted.keys().cloned().collect(),
    );
    applied.retain(|k, _| wanted.contains_key(k));
    for (key, slice) in wanted {
        let body = serde_json::to_value(&slice).unwrap_or_default();
        let live_rv = st
            .snapshot
            .get(&key)
            .and_then(|o| o.meta().resource_version.clone());
        if let Some((last, rv)) = applied.get(&key)
            && *last == body
            && live_rv.is_some()
            && *rv == live_rv
        {
            continue;
        }
        let Some(ar) = &w.slices else { break };
        let api: Api<DynamicObject> = Api::namespaced_with(w.client.clone(), &key.namespace, ar);
        let params = PatchParams::apply(&w.opts.field_manager).force();
        match api.patch(&key.name, &params, &Patch::Apply(&slice)).await {
            Ok(ret) => {
                tracing::debug!(slice = %key, "gateway service endpointslice applied");
                applied.insert(key, (body, ret.metadata.resource_version));
            }
            Err(e) => {
                tracing::warn!(slice = %key, error = %e, "cannot apply the gateway service's endpointslice");
                applied.remove(&key);
                ok = false;
            }
        }
    }
    for key in unwanted {
        ok &= delete_stale(w, st, &key, w.slices.as_ref()).await;
    }
    ok
}

/// Deletes stale object `key` (a Service, or a slice served at `slices`),
/// the one seen and not one made again under that name since; `false`
/// when the delete failed.
async fn delete_stale(
    w: &ServiceWriter,
    st: &State,
    key: &ObjectKey,
    slices: Option<&ApiResource>,
) -> bool {
    let uid = st.snapshot.get(key).and_then(|o| o.meta().uid.clone());
    let params = DeleteParams {
        preconditions: uid.map(|uid| Preconditions {
            uid: Some(uid),
            resource_version: None,
        }),
        ..DeleteParams::default()
    };
    let r = match key.kind {
        Kind::EndpointSlice => {
            // Seen, so served.
            let Some(ar) = slices else { return true };
            let api: Api<DynamicObject> =
                Api::namespaced_with(w.client.clone(), &key.namespace, ar);
            api.delete(&key.name, &params).await.map(|_| ())
        }
        _ => {
            let api: Api<Service> = Api::namespaced(w.client.clone(), &key.namespace);
            api.delete(&key.name, &params).await.map(|_| ())
        }
    };
    match r {
        Ok(()) => {
            tracing::debug!(object = %key, "stale gateway service object deleted");
            true
        }
        // Gone already, or another one by now.
        Err(kube::Error::Api(e)) if e.code == 404 || e.code == 409 => true,
        Err(e) => {
            tracing::warn!(object = %key, error = %e, "cannot delete a stale gateway service object");
            false
        }
    }
}
