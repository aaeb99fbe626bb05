//! The status writer: the only part that writes to the API server.
//!
//! After each engine run the writer compares the statuses the engine
//! reports changed, and those of the objects that changed on the server,
//! with the status the object has on the server (as last seen by the watch)
//! and writes only those that differ; the rest is not looked at. When it
//! becomes the leader it looks at every status once (a former leader may
//! have left any of them behind). A write is a `PUT` of the `/status`
//! subresource carrying the `resourceVersion` it was computed from, with our
//! field manager. Route `status.parents` is shared with other controllers:
//!
//! > "Implementations of this API can only populate Route status for the
//! > Gateways/parent resources they are responsible for." … "Controllers
//! > should ensure that entries to status populated with their
//! > ControllerName are cleaned up when they are no longer necessary."
//! > (`RouteStatus.parents`, `RouteParentStatus.controllerName`)
//!
//! The list is `x-kubernetes-list-type: atomic`, so server-side apply cannot
//! share it entry by entry. Instead the engine builds our status from the
//! object's current one, other controllers' entries untouched and in place,
//! so the write must not land on a newer object than the one it was computed
//! from. The precondition makes a concurrent
//! change fail with 409 Conflict instead; the writer then reads the object
//! again and hands it to the reducer, the engine recomputes from the fresh
//! data, and the next round writes that.
//!
//! A `PUT /status` replaces the whole status (unlike a merge patch, which
//! would leave behind list entries and fields that we dropped), and the API
//! server ignores everything but `status` in it.
//!
//! Writes are rate-limited (token bucket), run a few at a time, and are
//! planned in batches against the newest engine output, so a burst of
//! changes costs one write per object that ends up different, not one per
//! intermediate state.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use gwcore::Snapshot;
use gwcore::model::{Object, ObjectKey};
use gwcore::status::{ObjectStatus, PolicyStatus};
use kube::api::{Api, PostParams};
use kube::core::DynamicObject;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::State;
use crate::controller::{Shared, UpdateTx};
use crate::kinds::{Served, convert};
use crate::metrics::Metrics;
use crate::reducer::Update;

/// How the writer behaves.
#[derive(Debug, Clone, PartialEq)]
pub struct WriterOptions {
    /// Field manager recorded in `managedFields`. Default `gwcore`.
    pub field_manager: String,
    /// Writes in flight at once. Default 16.
    pub concurrency: usize,
    /// Sustained writes per second. Default 200.
    pub qps: f64,
    /// Writes allowed at once above the sustained rate. Default 400.
    pub burst: f64,
    /// Statuses planned per round; after each round the plan is made again
    /// from the newest engine output. Default 128.
    pub batch: usize,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            field_manager: "gwcore".into(),
            concurrency: 16,
            qps: 200.0,
            burst: 400.0,
            batch: 128,
        }
    }
}

/// The status an object has now, in the engine's shape.
pub fn current_status(obj: &Object) -> Option<ObjectStatus> {
    match obj {
        Object::GatewayClass(o) => o.status.clone().map(ObjectStatus::GatewayClass),
        Object::Gateway(o) => o.status.clone().map(ObjectStatus::Gateway),
        Object::ListenerSet(o) => o.status.clone().map(ObjectStatus::ListenerSet),
        Object::HttpRoute(o) => o.status.clone().map(ObjectStatus::Route),
        Object::GrpcRoute(o) => o.status.clone().map(ObjectStatus::Route),
        Object::TlsRoute(o) | Object::TcpRoute(o) | Object::UdpRoute(o) => {
            o.status.clone().map(ObjectStatus::Route)
        }
        Object::BackendTlsPolicy(o) => o.status.clone().map(ObjectStatus::Policy),
        // An extension's object keeps its status as JSON; the engine's part
        // of it, for a policy kind, is `ancestors`.
        Object::Extension(o) => o
            .status
            .as_ref()
            .filter(|s| s.is_object())
            .and_then(|s| serde_json::from_value::<PolicyStatus>(s.clone()).ok())
            .map(ObjectStatus::Policy),
        _ => None,
    }
}

/// The `status` to write for `obj`: `status` as JSON, except for an object
/// of an extension's kind, whose status may carry fields of its own (its
/// schema is the embedder's): there, its current status with `ancestors`
/// (the part the engine computes) replaced, every other field kept.
///
/// A status `PUT` replaces the whole status; it carries the
/// `resourceVersion` the object was read with, so no field written since is
/// lost.
pub fn status_body(obj: Option<&Object>, status: &ObjectStatus) -> serde_json::Value {
    // Plain data: serializing it cannot fail.
    let ours = serde_json::to_value(status).unwrap_or_default();
    let (Some(Object::Extension(o)), ObjectStatus::Policy(_)) = (obj, status) else {
        return ours;
    };
    match (&o.status, ours) {
        (Some(serde_json::Value::Object(current)), serde_json::Value::Object(ours)) => {
            let mut merged = current.clone();
            merged.remove("ancestors");
            merged.extend(ours);
            serde_json::Value::Object(merged)
        }
        (_, ours) => ours,
    }
}

fn strip_times(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(m) => {
            m.remove("lastTransitionTime");
            m.values_mut().for_each(strip_times);
        }
        serde_json::Value::Array(a) => a.iter_mut().for_each(strip_times),
        _ => {}
    }
}

/// Whether two statuses say the same, `lastTransitionTime`s aside.
///
/// The engine stamps a condition whose status changed with "now"; computed
/// twice from an object whose new status the watch has not delivered yet,
/// the same change gets two stamps. Only the stamp differs then, and the
/// stamp alone is never a reason to write: it moves only together with a
/// condition's `status`, which is compared.
pub fn same_status(a: &ObjectStatus, b: &ObjectStatus) -> bool {
    if a == b {
        return true;
    }
    let (Ok(mut a), Ok(mut b)) = (serde_json::to_value(a), serde_json::to_value(b)) else {
        return false;
    };
    strip_times(&mut a);
    strip_times(&mut b);
    a == b
}

/// One status to write.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    /// The object.
    pub key: ObjectKey,
    /// The `resourceVersion` the status was computed from (the precondition).
    pub resource_version: String,
    /// The status.
    pub status: ObjectStatus,
}

/// What happened to the last write of each object, for as long as the
/// object has not changed since.
#[derive(Debug, Default)]
pub struct Ledger {
    entries: BTreeMap<ObjectKey, Entry>,
}

#[derive(Debug)]
struct Entry {
    /// The `resourceVersion` the write was made against.
    rv_before: String,
    outcome: Outcome,
}

/// The result of one write.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Written; the status is the one written.
    Written(ObjectStatus),
    /// 409 Conflict or 404: the object changed or went away; wait for the
    /// watch (or the read that follows) to bring the new version.
    Stale,
    /// Another error; retry at `retry_at`, waiting twice as long next time.
    Failed {
        /// When to try again.
        retry_at: Instant,
        /// How long the next wait is.
        next_wait: Duration,
    },
}

impl Ledger {
    /// Records the outcome of a write made against `rv_before`.
    pub fn record(&mut self, key: ObjectKey, rv_before: String, outcome: Outcome) {
        self.entries.insert(key, Entry { rv_before, outcome });
    }

    /// The wait before the next retry of `key` after a failure.
    fn next_wait(&self, key: &ObjectKey) -> Duration {
        match self.entries.get(key).map(|e| &e.outcome) {
            Some(Outcome::Failed { next_wait, .. }) => *next_wait,
            _ => Duration::from_secs(1),
        }
    }

    /// The earliest pending retry.
    pub fn next_retry(&self) -> Option<Instant> {
        self.entries
            .values()
            .filter_map(|e| match e.outcome {
                Outcome::Failed { retry_at, .. } => Some(retry_at),
                _ => None,
            })
            .min()
    }

    /// Objects whose last write failed (they are retried when due).
    fn failed(&self) -> impl Iterator<Item = &ObjectKey> {
        self.entries
            .iter()
            .filter(|(_, e)| matches!(e.outcome, Outcome::Failed { .. }))
            .map(|(k, _)| k)
    }

    /// Forgets everything (when leadership is lost).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

/// Which computed statuses must be written: those that differ from the
/// object's current status, minus those written (or failed, or found stale)
/// against the object's current `resourceVersion` — the watch has not caught
/// up with them yet. Entries about objects that changed since are dropped.
/// At most `limit` targets, in key order (GatewayClasses, Gateways, then
/// routes).
pub fn plan(
    desired: &BTreeMap<ObjectKey, ObjectStatus>,
    snapshot: &Snapshot,
    ledger: &mut Ledger,
    now: Instant,
    limit: usize,
) -> Vec<Target> {
    ledger.entries.retain(|k, e| {
        snapshot
            .get(k)
            .and_then(|o| o.meta().resource_version.as_deref())
            == Some(e.rv_before.as_str())
    });
    let mut out = Vec::new();
    for (key, status) in desired {
        if out.len() >= limit {
            break;
        }
        let Some(obj) = snapshot.get(key) else {
            continue;
        };
        let Some(rv) = obj.meta().resource_version.clone() else {
            continue;
        };
        if current_status(obj).is_some_and(|c| same_status(&c, status)) {
            continue;
        }
        match ledger.entries.get(key).map(|e| &e.outcome) {
            Some(Outcome::Written(w)) if same_status(w, status) => continue,
            Some(Outcome::Stale) => continue,
            Some(Outcome::Failed { retry_at, .. }) if now < *retry_at => continue,
            _ => {}
        }
        out.push(Target {
            key: key.clone(),
            resource_version: rv,
            status: status.clone(),
        });
    }
    out
}

/// A token bucket.
struct RateLimiter {
    qps: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl RateLimiter {
    fn new(qps: f64, burst: f64) -> RateLimiter {
        let qps = qps.max(0.1);
        let burst = burst.max(1.0);
        RateLimiter {
            qps,
            burst,
            tokens: burst,
            last: Instant::now(),
        }
    }

    async fn acquire(&mut self) {
        let now = Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.qps).min(self.burst);
        self.last = now;
        if self.tokens < 1.0 {
            let wait = Duration::from_secs_f64((1.0 - self.tokens) / self.qps);
            tokio::time::sleep(wait).await;
            self.last = Instant::now();
            self.tokens = 1.0;
        }
        self.tokens -= 1.0;
    }
}

/// The writer task's inputs.
pub(crate) struct Writer {
    pub(crate) client: kube::Client,
    pub(crate) served: Served,
    pub(crate) opts: WriterOptions,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) updates: UpdateTx,
    pub(crate) state: watch::Receiver<Arc<State>>,
    pub(crate) shared: Shared,
    pub(crate) leader: watch::Receiver<bool>,
}

impl Writer {
    fn api(&self, key: &ObjectKey) -> Option<Api<DynamicObject>> {
        let ar = self.served.resource(key.kind)?;
        Some(if key.kind.is_namespaced() {
            Api::namespaced_with(self.client.clone(), &key.namespace, ar)
        } else {
            Api::all_with(self.client.clone(), ar)
        })
    }

    /// Runs until the engine output channel closes.
    pub(crate) async fn run(mut self) {
        let mut ledger = Ledger::default();
        let mut limiter = RateLimiter::new(self.opts.qps, self.opts.burst);
        // What the reducer said to look at, until looked at.
        let mut pending: BTreeSet<ObjectKey> = BTreeSet::new();
        let mut leading = false;
        let limit = self.opts.batch.max(1);
        loop {
            let retry = ledger.next_retry();
            tokio::select! {
                r = self.state.changed() => if r.is_err() { return },
                r = self.leader.changed() => if r.is_err() { return },
                _ = async {
                    match retry {
                        Some(at) => tokio::time::sleep_until(at).await,
                        None => std::future::pending().await,
                    }
                } => {}
            }
            loop {
                if !*self.leader.borrow_and_update() {
                    ledger.clear();
                    leading = false;
                    break;
                }
                let (state, desired) = {
                    // Under the lock the reducer publishes with: the state
                    // read here is the one its queued keys belong to.
                    let mut shared = self.shared.lock();
                    let shared = &mut *shared;
                    let state = self.state.borrow_and_update().clone();
                    if !state.synced {
                        break;
                    }
                    pending.append(&mut shared.pending);
                    let Some(engine) = shared.engine.as_ref() else {
                        break;
                    };
                    if !leading {
                        pending.extend(engine.statuses().keys().cloned());
                        leading = true;
                    }
                    let desired = pending
                        .iter()
                        .chain(ledger.failed())
                        .filter_map(|k| Some((k.clone(), engine.statuses().get(k)?.clone())))
                        .collect::<BTreeMap<_, _>>();
                    (state, desired)
                };
                let targets = plan(
                    &desired,
                    &state.snapshot,
                    &mut ledger,
                    Instant::now(),
                    limit,
                );
                // `plan` looks at keys in order and stops at the limit:
                // what comes after its last target is still to look at.
                match targets.last() {
                    Some(last) if targets.len() >= limit => {
                        pending = pending.split_off(&last.key);
                        pending.remove(&last.key);
                    }
                    _ => pending.clear(),
                }
                if targets.is_empty() {
                    break;
                }
                self.write_all(targets, &state.snapshot, &mut ledger, &mut limiter)
                    .await;
            }
        }
    }

    async fn write_all(
        &self,
        targets: Vec<Target>,
        snapshot: &Snapshot,
        ledger: &mut Ledger,
        limiter: &mut RateLimiter,
    ) {
        let mut inflight = FuturesUnordered::new();
        let mut done = Vec::new();
        for t in targets {
            if !*self.leader.borrow() {
                break;
            }
            while inflight.len() >= self.opts.concurrency.max(1) {
                if let Some(r) = inflight.next().await {
                    done.push(r);
                }
            }
            limiter.acquire().await;
            let body = status_body(snapshot.get(&t.key), &t.status);
            inflight.push(self.write_one(t, body));
        }
        while let Some(r) = inflight.next().await {
            done.push(r);
        }
        for (t, outcome) in done {
            let outcome = match outcome {
                Outcome::Failed { .. } => {
                    let wait = ledger.next_wait(&t.key);
                    Outcome::Failed {
                        retry_at: Instant::now() + wait,
                        next_wait: (wait * 2).min(Duration::from_secs(30)),
                    }
                }
                o => o,
            };
            ledger.record(t.key, t.resource_version, outcome);
        }
    }

    async fn write_one(&self, t: Target, status: serde_json::Value) -> (Target, Outcome) {
        let Some(api) = self.api(&t.key) else {
            return (t, Outcome::Stale);
        };
        let Some(ar) = self.served.resource(t.key.kind) else {
            return (t, Outcome::Stale);
        };
        let mut body = DynamicObject::new(&t.key.name, ar);
        if t.key.kind.is_namespaced() {
            body = body.within(&t.key.namespace);
        }
        body.metadata.resource_version = Some(t.resource_version.clone());
        body.data = serde_json::json!({ "status": status });
        let pp = PostParams {
            dry_run: false,
            field_manager: Some(self.opts.field_manager.clone()),
        };
        match api.replace_status(&t.key.name, &pp, &body).await {
            Ok(obj) => {
                self.metrics.status_written();
                tracing::debug!(object = %t.key, "status written");
                let _ = self.updates.send(Update::Fresh(convert(t.key.kind, obj)));
                let status = t.status.clone();
                (t, Outcome::Written(status))
            }
            Err(kube::Error::Api(s)) if s.is_conflict() => {
                self.metrics.status_conflict();
                tracing::debug!(object = %t.key, "status write conflict; reading the object again");
                match api.get(&t.key.name).await {
                    Ok(obj) => {
                        let _ = self.updates.send(Update::Fresh(convert(t.key.kind, obj)));
                        (t, Outcome::Stale)
                    }
                    Err(kube::Error::Api(s)) if s.is_not_found() => (t, Outcome::Stale),
                    Err(e) => {
                        self.metrics.status_failed();
                        tracing::warn!(object = %t.key, error = %e, "cannot read the object after a conflict");
                        (t, failed())
                    }
                }
            }
            Err(kube::Error::Api(s)) if s.is_not_found() => (t, Outcome::Stale),
            Err(e) => {
                self.metrics.status_failed();
                tracing::warn!(object = %t.key, error = %e, "status write failed; will retry");
                (t, failed())
            }
        }
    }
}

fn failed() -> Outcome {
    Outcome::Failed {
        retry_at: Instant::now(),
        next_wait: Duration::from_secs(1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gwcore::model::{HttpRoute, Kind, ObjectMeta, ParentReference};
    use gwcore::status::{Condition, RouteParentStatus, RouteStatus};

    fn route(rv: &str, status: Option<RouteStatus>) -> Object {
        Object::HttpRoute(HttpRoute {
            metadata: ObjectMeta {
                name: "r".into(),
                namespace: Some("n".into()),
                resource_version: Some(rv.into()),
                ..Default::default()
            },
            status,
            ..Default::default()
        })
    }

    fn accepted(at: &str, ok: bool) -> RouteStatus {
        RouteStatus {
            parents: vec![RouteParentStatus {
                parent_ref: ParentReference {
                    name: "gw".into(),
                    ..Default::default()
                },
                controller_name: "gwcore.dev/gateway-controller".into(),
                conditions: vec![Condition {
                    type_: "Accepted".into(),
                    status: if ok { "True" } else { "False" }.into(),
                    observed_generation: Some(1),
                    last_transition_time: at.into(),
                    reason: "Accepted".into(),
                    message: String::new(),
                }],
            }],
        }
    }

    fn key() -> ObjectKey {
        ObjectKey::new(Kind::HttpRoute, "n", "r")
    }

    fn desired(s: RouteStatus) -> BTreeMap<ObjectKey, ObjectStatus> {
        BTreeMap::from([(key(), ObjectStatus::Route(s))])
    }

    #[test]
    fn unchanged_status_is_not_written() {
        let snap = Snapshot::from_objects([route("5", Some(accepted("t1", true)))]);
        let mut ledger = Ledger::default();
        let t = plan(
            &desired(accepted("t1", true)),
            &snap,
            &mut ledger,
            Instant::now(),
            10,
        );
        assert!(t.is_empty());
    }

    #[test]
    fn a_new_transition_time_alone_is_not_a_change() {
        let snap = Snapshot::from_objects([route("5", Some(accepted("t1", true)))]);
        let mut ledger = Ledger::default();
        assert!(
            plan(
                &desired(accepted("t2", true)),
                &snap,
                &mut ledger,
                Instant::now(),
                10
            )
            .is_empty()
        );
    }

    #[test]
    fn changed_status_is_written_with_the_resource_version_it_was_computed_from() {
        let snap = Snapshot::from_objects([route("5", None)]);
        let mut ledger = Ledger::default();
        let t = plan(
            &desired(accepted("t1", true)),
            &snap,
            &mut ledger,
            Instant::now(),
            10,
        );
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].resource_version, "5");
    }

    #[test]
    fn a_write_the_watch_has_not_delivered_yet_is_not_repeated() {
        let snap = Snapshot::from_objects([route("5", None)]);
        let mut ledger = Ledger::default();
        ledger.record(
            key(),
            "5".into(),
            Outcome::Written(ObjectStatus::Route(accepted("t1", true))),
        );
        // Computed again from the same stale object: same status, a later stamp.
        assert!(
            plan(
                &desired(accepted("t2", true)),
                &snap,
                &mut ledger,
                Instant::now(),
                10
            )
            .is_empty()
        );
        // But a different status is written.
        assert_eq!(
            plan(
                &desired(accepted("t2", false)),
                &snap,
                &mut ledger,
                Instant::now(),
                10
            )
            .len(),
            1
        );
    }

    #[test]
    fn conflict_waits_for_fresh_data_then_writes_again() {
        let mut ledger = Ledger::default();
        ledger.record(key(), "5".into(), Outcome::Stale);
        let stale = Snapshot::from_objects([route("5", None)]);
        assert!(
            plan(
                &desired(accepted("t1", true)),
                &stale,
                &mut ledger,
                Instant::now(),
                10
            )
            .is_empty()
        );
        let fresh = Snapshot::from_objects([route("6", None)]);
        let t = plan(
            &desired(accepted("t1", true)),
            &fresh,
            &mut ledger,
            Instant::now(),
            10,
        );
        assert_eq!(t[0].resource_version, "6");
    }

    #[test]
    fn failure_is_retried_after_its_wait() {
        let mut ledger = Ledger::default();
        let now = Instant::now();
        ledger.record(
            key(),
            "5".into(),
            Outcome::Failed {
                retry_at: now + Duration::from_secs(1),
                next_wait: Duration::from_secs(2),
            },
        );
        let snap = Snapshot::from_objects([route("5", None)]);
        assert!(plan(&desired(accepted("t1", true)), &snap, &mut ledger, now, 10).is_empty());
        assert_eq!(ledger.next_retry(), Some(now + Duration::from_secs(1)));
        let later = now + Duration::from_secs(2);
        assert_eq!(
            plan(
                &desired(accepted("t1", true)),
                &snap,
                &mut ledger,
                later,
                10
            )
            .len(),
            1
        );
    }

    #[test]
    fn an_extension_policy_status_keeps_its_own_fields() {
        use gwcore::extension::{ExtensionKind, ExtensionObject};
        use gwcore::status::PolicyAncestorStatus;
        const KIND: ExtensionKind = ExtensionKind::new("example.com/v1", "TestPolicy");
        let mut obj = ExtensionObject::new(
            KIND,
            ObjectMeta {
                name: "p".into(),
                namespace: Some("n".into()),
                resource_version: Some("5".into()),
                ..Default::default()
            },
            serde_json::json!({}),
        );
        let theirs = PolicyAncestorStatus {
            ancestor_ref: ParentReference {
                name: "other".into(),
                ..Default::default()
            },
            controller_name: "other.example/c".into(),
            conditions: accepted("t0", true).parents[0].conditions.clone(),
        };
        obj.status = Some(serde_json::json!({
            "ancestors": [serde_json::to_value(&theirs).unwrap()],
            "embedder": {"seen": 3}
        }));
        let obj = Object::Extension(obj);
        // The engine's part of the current status is `ancestors`.
        let Some(ObjectStatus::Policy(now)) = current_status(&obj) else {
            panic!("a policy status")
        };
        assert_eq!(now.ancestors, vec![theirs.clone()]);
        let mut ours = theirs.clone();
        ours.controller_name = "gwcore.dev/gateway-controller".into();
        let want = ObjectStatus::Policy(PolicyStatus {
            ancestors: vec![theirs, ours],
        });
        let body = status_body(Some(&obj), &want);
        assert_eq!(body["embedder"], serde_json::json!({"seen": 3}));
        assert_eq!(
            body["ancestors"],
            serde_json::to_value(&want).unwrap()["ancestors"]
        );
        // Built-in kinds: the status as computed.
        let route = route("5", None);
        let st = ObjectStatus::Route(accepted("t1", true));
        assert_eq!(
            status_body(Some(&route), &st),
            serde_json::to_value(&st).unwrap()
        );
    }

    #[test]
    fn plan_respects_the_batch_limit_in_key_order() {
        let mut objs = Vec::new();
        let mut want = BTreeMap::new();
        for i in 0..5 {
            let Object::HttpRoute(mut r) = route("1", None) else {
                unreachable!()
            };
            r.metadata.name = format!("r{i}");
            want.insert(
                ObjectKey::new(Kind::HttpRoute, "n", format!("r{i}")),
                ObjectStatus::Route(accepted("t", true)),
            );
            objs.push(Object::HttpRoute(r));
        }
        let snap = Snapshot::from_objects(objs);
        let t = plan(&want, &snap, &mut Ledger::default(), Instant::now(), 3);
        let names: Vec<&str> = t.iter().map(|t| t.key.name.as_str()).collect();
        assert_eq!(names, ["r0", "r1", "r2"]);
    }
}
