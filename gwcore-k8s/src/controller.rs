//! The controller: watchers → reducer → engine → writer, and the handle
//! that starts and stops them.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures_util::StreamExt;
use gwcore::Snapshot;
use gwcore::attachments::GatewayRouting;
use gwcore::engine::{ComputeOptions, Delta, Engine};
use gwcore::extension::Extensions;
use gwcore::model::{Kind, ObjectKey};
use gwcore::status::{GatewayStatusAddress, ObjectStatus};
use k8s_openapi::jiff::Timestamp;
use kube::api::Api;
use kube::core::DynamicObject;
use kube::runtime::watcher;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use crate::gateway_service::{GatewayServiceOptions, gateway_of, service_addresses};
use crate::kinds::{DiscoveryError, Served, convert, load_balancer_addresses};
use crate::leader::{self, LeaseOptions};
use crate::metrics::{Counters, Metrics, RunTimes};
use crate::reducer::{Change, Index, Update};
use crate::writer::{Writer, WriterOptions, current_status, same_status};

/// How the controller runs.
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Our `controllerName`: only GatewayClasses naming it are ours.
    pub controller_name: String,
    /// How often the engine runs at most under a steady stream of changes.
    /// Runs are budgeted like a token bucket holding three, refilled one
    /// per `coalesce`: a change on a controller that has not spent its
    /// budget (after a quiet period, or after one or two runs such as the
    /// echoes of its own status writes) is computed at once; changes
    /// during a burst are gathered until the budget allows the next run.
    /// Default 10 ms.
    pub coalesce: Duration,
    /// Static addresses for Gateways that request none. Default: none.
    pub addresses: Vec<GatewayStatusAddress>,
    /// A Service (namespace, name) whose `status.loadBalancer.ingress`
    /// gives Gateway addresses, after the static ones. Unused for our
    /// Gateways when they get Services of their own
    /// ([`Options::gateway_services`]). Default: none.
    pub address_service: Option<(String, String)>,
    /// Gives each of our Gateways a Service of its own
    /// ([`crate::gateway_service`]), kept by the leader (created, put back
    /// when changed, deleted when stale); its addresses (the load
    /// balancer's, else the cluster IPs) are the Gateway's
    /// `status.addresses` and the only ones its `spec.addresses` can use;
    /// before it exists the Gateway has none. Needs `write_status`.
    /// Default: `None` (off).
    pub gateway_services: Option<GatewayServiceOptions>,
    /// Whether to write status at all (`false`: compute and serve only).
    /// Default `true`.
    pub write_status: bool,
    /// Leader election; `None` writes without electing (one replica).
    /// Default `None`.
    pub lease: Option<LeaseOptions>,
    /// The status writer.
    pub writer: WriterOptions,
    /// The filter and policy kinds an embedder registers
    /// ([`gwcore::extension`]): their objects are watched too (where the
    /// server serves them, see [`Served::discover_extended`]), the engine
    /// resolves them, and the statuses it computes for policies are
    /// written like BackendTLSPolicy's. Default: none.
    pub extensions: Extensions,
}

impl Options {
    /// Options for `controller_name` with the defaults above.
    pub fn new(controller_name: impl Into<String>) -> Options {
        Options {
            controller_name: controller_name.into(),
            coalesce: Duration::from_millis(10),
            addresses: Vec::new(),
            address_service: None,
            gateway_services: None,
            write_status: true,
            lease: None,
            writer: WriterOptions::default(),
            extensions: Extensions::default(),
        }
    }

    /// With the extensions (filter and policy kinds) to watch and resolve.
    pub fn with_extensions(mut self, extensions: Extensions) -> Options {
        self.extensions = extensions;
        self
    }
}

/// What the controller knows after an engine run.
#[derive(Debug, Clone, Default)]
pub struct State {
    /// Bumped on every engine run; 0 before the first.
    pub version: u64,
    /// Bumped on engine runs after a change of anything but status — what
    /// a data plane serves. A state whose `objects_version` is unchanged
    /// routes exactly as the previous one.
    pub objects_version: u64,
    /// Whether every watched kind has been listed (nothing is computed
    /// before).
    pub synced: bool,
    /// Every object, as last seen.
    pub snapshot: Snapshot,
    /// The routing input of each of our Gateways for that snapshot. A
    /// Gateway the run did not touch keeps the `Arc` of the run before,
    /// and a run that changed no routing publishes the map of the run
    /// before (the same `Arc`).
    pub routing: Arc<BTreeMap<ObjectKey, Arc<GatewayRouting>>>,
    /// The statuses this run changed (`None`: no status of ours any more);
    /// on the first run, every status.
    pub changed_statuses: BTreeMap<ObjectKey, Option<ObjectStatus>>,
    /// Objects left out because they are not valid, with the problems;
    /// the map of the run before (the same `Arc`) when none came or went.
    pub invalid: Arc<BTreeMap<ObjectKey, Vec<String>>>,
    /// When this state was published (`None`: the empty state before the
    /// first run).
    published: Option<std::time::Instant>,
    shared: Shared,
}

impl State {
    /// When the reducer published this state: a data plane that follows
    /// the states can tell how long it took to take one up.
    pub fn published_at(&self) -> Option<std::time::Instant> {
        self.published
    }

    /// The status the engine computes for `key` now (from the newest run,
    /// which may be newer than this state).
    pub fn status(&self, key: &ObjectKey) -> Option<ObjectStatus> {
        self.shared
            .lock()
            .engine
            .as_ref()
            .and_then(|e| e.statuses().get(key).cloned())
    }

    /// Every status the engine computes now (a copy: for tools and tests;
    /// the writer reads only what changed).
    pub fn statuses(&self) -> BTreeMap<ObjectKey, ObjectStatus> {
        self.shared
            .lock()
            .engine
            .as_ref()
            .map(|e| {
                e.statuses()
                    .iter()
                    .map(|(k, st)| (k.clone(), st.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }
}

/// The sending side of the reducer's inbox: each update is stamped with
/// when it was sent, so that a run can tell how long its first update
/// waited for the reducer.
#[derive(Clone, Debug)]
pub(crate) struct UpdateTx(mpsc::UnboundedSender<(Instant, Update)>);

impl UpdateTx {
    /// Sends `u`; an error when the reducer is gone.
    pub(crate) fn send(&self, u: Update) -> Result<(), ReducerGone> {
        self.0.send((Instant::now(), u)).map_err(|_| ReducerGone)
    }
}

/// The reducer has stopped: nothing sent reaches it any more.
#[derive(Debug)]
pub(crate) struct ReducerGone;

/// The reducer's inbox.
pub(crate) fn inbox() -> (UpdateTx, mpsc::UnboundedReceiver<(Instant, Update)>) {
    let (tx, rx) = mpsc::unbounded_channel();
    (UpdateTx(tx), rx)
}

/// The incremental engine, shared by the reducer (which feeds it changes)
/// and the writer (which reads the statuses it is told to look at).
#[derive(Clone, Default)]
pub(crate) struct Shared(Arc<Mutex<Desired>>);

#[derive(Default)]
pub(crate) struct Desired {
    pub(crate) engine: Option<Engine>,
    /// What the writer has to look at: statuses that changed, and objects
    /// that changed (their status on the server may differ from ours now).
    pub(crate) pending: BTreeSet<ObjectKey>,
}

impl Shared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, Desired> {
        // A panic while holding the lock leaves plain data behind (no
        // invariant spans the two fields): go on with it.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Shared { .. }")
    }
}

/// A running controller. Dropping it stops every task at once (without
/// releasing the Lease, as a crash would); [`Controller::shutdown`] stops
/// it cleanly.
#[derive(Debug)]
pub struct Controller {
    state: watch::Receiver<Arc<State>>,
    leader: watch::Receiver<bool>,
    metrics: Arc<Metrics>,
    served: Served,
    stop: watch::Sender<bool>,
    lease_task: Option<JoinHandle<()>>,
    _fixed_leader: Option<watch::Sender<bool>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Controller {
    /// Discovers the served kinds (those [`Options::extensions`] register
    /// included) and starts watching, computing and (when leading) writing
    /// status on the current Tokio runtime.
    pub async fn start(client: kube::Client, opts: Options) -> Result<Controller, DiscoveryError> {
        let served = Served::discover_extended(&client, &opts.extensions).await?;
        Ok(Controller::start_with(client, served, opts))
    }

    /// Starts with the kinds already discovered.
    pub fn start_with(client: kube::Client, served: Served, opts: Options) -> Controller {
        let metrics = Arc::new(Metrics::default());
        let (updates_tx, updates_rx) = inbox();
        let shared = Shared::default();
        let (state_tx, state_rx) = watch::channel(Arc::new(State {
            shared: shared.clone(),
            ..State::default()
        }));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut tasks = Vec::new();
        for (kind, ar) in served.iter() {
            let api: Api<DynamicObject> = Api::all_with(client.clone(), ar);
            tasks.push(tokio::spawn(watch_kind(
                api,
                kind,
                updates_tx.clone(),
                metrics.clone(),
                opts.address_service.clone(),
                opts.gateway_services.is_some(),
            )));
        }
        let kinds: Vec<Kind> = served.iter().map(|(k, _)| k).collect();
        tasks.push(tokio::spawn(reduce(
            updates_rx,
            kinds,
            opts.clone(),
            state_tx,
            shared.clone(),
            metrics.clone(),
        )));
        let (leader_tx, leader_rx) = watch::channel(opts.lease.is_none() && opts.write_status);
        metrics.set_leader(*leader_rx.borrow());
        let (lease_task, fixed_leader) = match (&opts.lease, opts.write_status) {
            (Some(lease), true) => (
                Some(tokio::spawn(leader::run(
                    client.clone(),
                    lease.clone(),
                    leader_tx,
                    metrics.clone(),
                    stop_rx,
                ))),
                None,
            ),
            // No election: leadership is fixed; the sender is kept so that
            // the channel stays open.
            _ => (None, Some(leader_tx)),
        };
        if let (true, Some(services)) = (opts.write_status, &opts.gateway_services) {
            let version = served
                .resource(Kind::Gateway)
                .map(|r| r.api_version.clone())
                .unwrap_or_else(|| "gateway.networking.k8s.io/v1".into());
            let w = crate::service_writer::ServiceWriter {
                client: client.clone(),
                gateway_api_version: version,
                controller_name: opts.controller_name.clone(),
                opts: services.clone(),
                slices: served.resource(Kind::EndpointSlice).cloned(),
            };
            tasks.push(tokio::spawn(crate::service_writer::run(
                w,
                state_rx.clone(),
                leader_rx.clone(),
            )));
        }
        if opts.write_status {
            let writer = Writer {
                client,
                served: served.clone(),
                opts: opts.writer.clone(),
                metrics: metrics.clone(),
                updates: updates_tx,
                state: state_rx.clone(),
                shared,
                leader: leader_rx.clone(),
            };
            tasks.push(tokio::spawn(writer.run()));
        }
        Controller {
            state: state_rx,
            leader: leader_rx,
            metrics,
            served,
            stop: stop_tx,
            lease_task,
            _fixed_leader: fixed_leader,
            tasks,
        }
    }

    /// The newest state; `changed()` on it waits for the next engine run.
    pub fn state(&self) -> watch::Receiver<Arc<State>> {
        self.state.clone()
    }

    /// Whether this instance writes status now; `changed()` on it waits
    /// for the next change.
    pub fn leader(&self) -> watch::Receiver<bool> {
        self.leader.clone()
    }

    /// The counters now.
    pub fn counters(&self) -> Counters {
        self.metrics.read()
    }

    /// The live counters (for a `/metrics` endpoint).
    pub fn metrics(&self) -> Arc<Metrics> {
        self.metrics.clone()
    }

    /// The kinds watched, and where they are served.
    pub fn served(&self) -> &Served {
        &self.served
    }

    /// Waits until every watched kind has been listed and the engine has
    /// run once.
    pub async fn synced(&self) {
        let mut rx = self.state.clone();
        let _ = rx.wait_for(|s| s.synced).await;
    }

    /// Stops: releases the Lease if held (waiting at most 5 s), then stops
    /// every task.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.lease_task.take() {
            let _ = tokio::time::timeout(Duration::from_secs(5), t).await;
        }
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        if let Some(t) = &self.lease_task {
            t.abort();
        }
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Backoff between watch retries: 250 ms doubling to 5 s, each wait
/// jittered by ±20 % so that replicas do not retry in step; reset by the
/// first event after a retry. (client-go starts at 800 ms and caps at 30 s;
/// the lower cap brings status back within seconds after an API server
/// restart, at the price of at most one list per kind per 5 s and replica
/// while the server is unhealthy.)
struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    const MIN: Duration = Duration::from_millis(250);
    const MAX: Duration = Duration::from_secs(5);

    fn next_wait(&mut self) -> Duration {
        let wait = self.next.mul_f64(0.8 + 0.4 * fastrand::f64());
        self.next = (self.next * 2).min(WatchBackoff::MAX);
        wait
    }
}

/// Watches one kind, turning events into updates.
///
/// After any error the watch starts over with a fresh list, after a
/// [`WatchBackoff`] wait. Resuming from the last `resourceVersion` instead
/// would be cheaper, but after an API server restart its new watch cache
/// refuses old versions only after a delay (10 s for custom resources on
/// 1.20); a list is answered at once, and the reducer turns it into a full
/// resync of the kind (objects deleted meanwhile disappear).
async fn watch_kind(
    api: Api<DynamicObject>,
    kind: Kind,
    tx: UpdateTx,
    metrics: Arc<Metrics>,
    address_service: Option<(String, String)>,
    gateway_services: bool,
) {
    let is_address_service = |o: &DynamicObject| {
        kind == Kind::Service
            && address_service.as_ref().is_some_and(|(ns, name)| {
                o.metadata.namespace.as_deref() == Some(ns.as_str())
                    && o.metadata.name.as_deref() == Some(name.as_str())
            })
    };
    // The Gateway a Service was made for, when gwcore makes them.
    let gateway_of = |o: &DynamicObject| {
        (kind == Kind::Service && gateway_services)
            .then(|| gateway_of(o))
            .flatten()
    };
    // Sends the addresses `o` gives, if any; `false` when the reducer is
    // gone.
    let send_addresses = |o: &DynamicObject| {
        let sent = if is_address_service(o) {
            tx.send(Update::Addresses(load_balancer_addresses(o)))
        } else if let Some(gateway) = gateway_of(o) {
            tx.send(Update::GatewayAddresses(gateway, service_addresses(o)))
        } else {
            Ok(())
        };
        sent.is_ok()
    };
    let mut backoff = WatchBackoff {
        next: WatchBackoff::MIN,
    };
    loop {
        let mut stream = watcher(api.clone(), watcher::Config::default()).boxed();
        while let Some(event) = stream.next().await {
            let event = match event {
                Ok(e) => e,
                Err(e) => {
                    metrics.watch_error();
                    tracing::warn!(kind = %kind, error = %e, "watch failed; listing again");
                    break;
                }
            };
            backoff = WatchBackoff {
                next: WatchBackoff::MIN,
            };
            metrics.event();
            let update = match event {
                watcher::Event::Init => Update::Restart(kind),
                watcher::Event::InitDone => Update::Done(kind),
                // Listed or not, a Service whose addresses count is also
                // reported as addresses (before the object, so that the
                // engine run it causes has both).
                watcher::Event::InitApply(o) => {
                    if !send_addresses(&o) {
                        return;
                    }
                    Update::Listed(convert(kind, o))
                }
                watcher::Event::Apply(o) => {
                    if !send_addresses(&o) {
                        return;
                    }
                    Update::Applied(convert(kind, o))
                }
                watcher::Event::Delete(o) => {
                    if is_address_service(&o) && tx.send(Update::Addresses(Vec::new())).is_err() {
                        return;
                    }
                    if let Some(gateway) = gateway_of(&o)
                        && tx
                            .send(Update::GatewayAddresses(gateway, Vec::new()))
                            .is_err()
                    {
                        return;
                    }
                    Update::Deleted(ObjectKey::new(
                        kind,
                        o.metadata.namespace.unwrap_or_default(),
                        o.metadata.name.unwrap_or_default(),
                    ))
                }
            };
            if tx.send(update).is_err() {
                return;
            }
        }
        tokio::time::sleep(backoff.next_wait()).await;
    }
}

/// The engine's run budget ([`Options::coalesce`]): a token bucket of
/// [`RunBudget::BURST`] runs, refilled one per `coalesce`.
#[derive(Debug)]
struct RunBudget {
    every: Duration,
    tokens: f64,
    at: Instant,
}

impl RunBudget {
    /// Runs allowed back to back: a change and the echoes of the status
    /// writes it causes (its route's, its Gateway's) are three runs, after
    /// which a change on a quiet controller still goes at once.
    const BURST: f64 = 3.0;

    fn new(every: Duration, now: Instant) -> RunBudget {
        RunBudget {
            every,
            tokens: RunBudget::BURST,
            at: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        if self.every.is_zero() {
            self.tokens = RunBudget::BURST;
        } else {
            let gained =
                now.saturating_duration_since(self.at).as_secs_f64() / self.every.as_secs_f64();
            self.tokens = (self.tokens + gained).min(RunBudget::BURST);
        }
        self.at = now;
    }

    /// When the next run may start: `now` while the budget holds a run.
    fn next_run(&mut self, now: Instant) -> Instant {
        self.refill(now);
        if self.tokens >= 1.0 {
            now
        } else {
            now + self.every.mul_f64(1.0 - self.tokens)
        }
    }

    /// Spends one run.
    fn spend(&mut self, now: Instant) {
        self.refill(now);
        self.tokens = (self.tokens - 1.0).max(0.0);
    }
}

/// Applies updates to the index as they come and runs the engine after
/// changes, within the [`RunBudget`]: a change on a quiet controller is
/// computed at once (after taking whatever else is already queued); changes
/// during a burst are gathered until the budget allows a run. Then the new
/// state is published.
///
/// The engine is incremental: the first run loads the whole snapshot, later
/// runs hand it only the objects that changed, and what it reports changed
/// is what the writer looks at.
async fn reduce(
    mut rx: mpsc::UnboundedReceiver<(Instant, Update)>,
    kinds: Vec<Kind>,
    opts: Options,
    state: watch::Sender<Arc<State>>,
    shared: Shared,
    metrics: Arc<Metrics>,
) {
    let mut index = Index::new();
    let mut version = 0u64;
    let mut objects_version = 0u64;
    let mut objects_changed = false;
    let mut budget = RunBudget::new(opts.coalesce, Instant::now());
    // The load-balancer addresses the engine was loaded with.
    let mut engine_addresses: Vec<GatewayStatusAddress> = Vec::new();
    // What the states publish besides the snapshot, kept between runs and
    // replaced only when they change.
    let mut routing: Arc<BTreeMap<ObjectKey, Arc<GatewayRouting>>> = Arc::default();
    let mut invalid: Arc<BTreeMap<ObjectKey, Vec<String>>> = Arc::default();
    // Whether a change needs the engine: the response to our own status
    // write, carrying the status the engine last computed, does not. (Other
    // status changes do: on a follower the leader's writes keep the
    // published snapshot current, so that it can take over without
    // conflicts.)
    let needs_run = |c: Change, fresh: bool, index: &Index| match c {
        Change::None => false,
        Change::Objects => true,
        Change::Status(_) if !fresh => true,
        Change::Status(key) => {
            let now = index.snapshot().get(&key).and_then(current_status);
            let guard = shared.lock();
            let want = guard.engine.as_ref().and_then(|e| e.statuses().get(&key));
            match (want, now) {
                (Some(want), Some(now)) => !same_status(want, &now),
                _ => true,
            }
        }
    };
    // Whether Gateways get Services of their own, whose addresses alone
    // are theirs.
    let own_services = opts.gateway_services.is_some();
    loop {
        let Some((sent, u)) = rx.recv().await else {
            return;
        };
        // When the first update of this run arrived: what it waits for
        // (the updates queued behind it, the coalescing window) is part of
        // the time from a watch event to a served change; before, it
        // waited `queued` for the reducer to be done with the run before.
        let received = Instant::now();
        let queued = received.saturating_duration_since(sent);
        let fresh = matches!(u, Update::Fresh(_));
        let c = index.apply(u);
        objects_changed |= c == Change::Objects;
        if !needs_run(c, fresh, &index) {
            continue;
        }
        // What is queued already, but not without end: under a flood the
        // engine still runs every `coalesce`.
        for _ in 0..4096 {
            let Ok((_, u)) = rx.try_recv() else { break };
            objects_changed |= index.apply(u) == Change::Objects;
        }
        let deadline = budget.next_run(Instant::now());
        while Instant::now() < deadline {
            tokio::select! {
                u = rx.recv() => match u {
                    Some((_, u)) => { objects_changed |= index.apply(u) == Change::Objects; }
                    None => return,
                },
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        if !index.synced(kinds.iter().copied()) {
            continue;
        }
        let mut addresses = opts.addresses.clone();
        addresses.extend(index.addresses().iter().cloned());
        let now = Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let started = Instant::now();
        let changed = index.take_changed();
        let changed_gateway_addresses = index.take_changed_gateway_addresses();
        // What the state publishes of the index, taken before the lock (the
        // engine run does not change the index), so that the writer waits
        // for the lock only while the engine runs.
        let snapshot = index.snapshot().clone();
        if index.take_invalid_changed() {
            invalid = Arc::new(
                index
                    .invalid()
                    .iter()
                    .map(|(k, (_, errors))| (k.clone(), errors.clone()))
                    .collect(),
            );
        }
        let copied = Instant::now();
        // The state is published under the lock, so that the writer, which
        // reads both under it, sees the snapshot the engine ran on with the
        // keys that run queued.
        let mut guard = shared.lock();
        let locked = Instant::now();
        let desired = &mut *guard;
        let (delta, full) = match &mut desired.engine {
            Some(engine) if engine_addresses == addresses => {
                engine.set_now(now);
                let mut delta = Delta::default();
                // A Gateway's own addresses first, so that a new Gateway
                // is computed with them.
                let gateways = changed.iter().filter(|k| k.kind == Kind::Gateway);
                let addressed: BTreeSet<&ObjectKey> =
                    changed_gateway_addresses.iter().chain(gateways).collect();
                for key in addressed {
                    let own = own_addresses(&index, key, own_services);
                    delta.absorb(engine.set_gateway_addresses(key, own));
                }
                for key in &changed {
                    // The index's own object (an `Arc`), so that the
                    // engine's snapshot and the published one share it.
                    // The echo of our own write (the object now has the
                    // status the engine computed for it; a burst of writes
                    // brings one per written object) is taken as it is,
                    // without computing anything.
                    delta.absorb(match index.snapshot().get_shared(key) {
                        Some(obj) => engine.apply_shared(Arc::clone(obj)),
                        None => engine.delete(key),
                    });
                }
                (delta, false)
            }
            // The first run, or new addresses (which every Gateway's status
            // carries): load everything.
            _ => {
                let mut copts = ComputeOptions::new(opts.controller_name.clone(), now)
                    .with_addresses(addresses.clone())
                    .with_extensions(opts.extensions.clone());
                copts.gateway_addresses = index
                    .snapshot()
                    .of_kind(Kind::Gateway)
                    .filter_map(|g| {
                        let key = g.key();
                        Some((key.clone(), own_addresses(&index, &key, own_services)?))
                    })
                    .collect();
                let engine = Engine::from_snapshot(index.snapshot().clone(), copts);
                let mut delta = Delta::default();
                if let Some(old) = &desired.engine {
                    for k in old.statuses().keys() {
                        if !engine.statuses().contains_key(k) {
                            delta.statuses.insert(k.clone(), None);
                        }
                    }
                }
                for (k, st) in engine.statuses() {
                    delta.statuses.insert(k.clone(), Some(st.clone()));
                }
                for (k, r) in engine.routing() {
                    delta.routing.insert(k.clone(), Some(r.clone()));
                }
                for k in routing.keys() {
                    if !engine.routing().contains_key(k) {
                        delta.routing.insert(k.clone(), None);
                    }
                }
                engine_addresses = addresses;
                desired.engine = Some(engine);
                (delta, true)
            }
        };
        desired.pending.extend(delta.statuses.keys().cloned());
        desired.pending.extend(changed.iter().cloned());
        if !delta.routing.is_empty() {
            // A copy only when the state before still holds the map: the
            // size of our Gateways, once per change of routing.
            let routing = Arc::make_mut(&mut routing);
            for (k, r) in &delta.routing {
                match r {
                    Some(r) => routing.insert(k.clone(), r.clone()),
                    None => routing.remove(k),
                };
            }
        }
        let computed = Instant::now();
        budget.spend(computed);
        version += 1;
        if std::mem::take(&mut objects_changed) {
            objects_version += 1;
        }
        let first_changed = changed.first().map(ToString::to_string);
        let (changed_objects, changed_statuses, changed_routing) =
            (changed.len(), delta.statuses.len(), delta.routing.len());
        let previous = state.send_replace(Arc::new(State {
            version,
            objects_version,
            synced: true,
            snapshot,
            routing: Arc::clone(&routing),
            changed_statuses: delta.statuses,
            invalid: Arc::clone(&invalid),
            published: Some(Instant::now().into_std()),
            shared: shared.clone(),
        }));
        drop(guard);
        // The state before, unless a reader still holds it, is freed
        // outside the lock.
        drop(previous);
        let published = Instant::now();
        // Publishing: copying from the index, then replacing the state.
        let publish = (copied - started) + (published - computed);
        metrics.computed(RunTimes {
            waited: started - received,
            lock_wait: locked - copied,
            engine: computed - locked,
            publish,
        });
        tracing::debug!(
            objects = index.snapshot().len(),
            changed_objects,
            changed_statuses,
            changed_routing,
            first_changed,
            full,
            queued_ms = ms(queued),
            waited_ms = ms(started - received),
            lock_wait_ms = ms(locked - copied),
            took_ms = ms(computed - locked),
            publish_ms = ms(publish),
            "engine run"
        );
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The addresses Gateway `key` is served on by its own Service, for
/// [`Engine::set_gateway_addresses`]: `None` (the deployment's) unless
/// Gateways get Services (`own_services`); then the Service's, none
/// before it exists (a Gateway is not served on the deployment's
/// addresses then), and `None` for a Gateway that is gone.
fn own_addresses(
    index: &Index,
    key: &ObjectKey,
    own_services: bool,
) -> Option<Vec<GatewayStatusAddress>> {
    if !own_services || index.snapshot().get(key).is_none() {
        return None;
    }
    Some(
        index
            .gateway_addresses()
            .get(key)
            .cloned()
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kinds::Converted;
    use gwcore::model::Object;

    fn objects() -> Vec<Object> {
        let yaml = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: c, resourceVersion: "1"}
spec: {controllerName: example.com/c}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: n, resourceVersion: "2"}
spec:
  gatewayClassName: c
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: n, resourceVersion: "3"}
spec:
  parentRefs: [{name: gw}]
"#;
        let loaded = gwcore::load::load_str("t.yaml", yaml);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        loaded.objects.into_iter().map(|(o, _)| o).collect()
    }

    async fn next(rx: &mut watch::Receiver<Arc<State>>) -> Option<Arc<State>> {
        tokio::time::timeout(Duration::from_millis(200), rx.changed())
            .await
            .ok()
            .map(|r| {
                r.unwrap();
                rx.borrow_and_update().clone()
            })
    }

    /// The published snapshot and the engine's hold the same objects, not
    /// copies: nothing is copied per change, and whoever compares the two
    /// (the proxy compares snapshots it is handed) compares pointers.
    fn assert_shares_every_object(s: &State, shared: &Shared) {
        let guard = shared.lock();
        let engine = guard.engine.as_ref().expect("an engine").snapshot();
        assert_eq!(engine.len(), s.snapshot.len());
        for key in s.snapshot.keys() {
            let (a, b) = (s.snapshot.get_shared(key), engine.get_shared(key));
            assert!(
                a.zip(b).is_some_and(|(a, b)| Arc::ptr_eq(a, b)),
                "{key}: the engine holds a copy of the published object"
            );
        }
    }

    #[tokio::test]
    async fn own_write_echo_does_not_rerun_and_status_changes_keep_the_objects_version() {
        let kinds = vec![Kind::GatewayClass, Kind::Gateway, Kind::HttpRoute];
        let (tx, rx) = inbox();
        let (state_tx, mut state) = watch::channel(Arc::new(State::default()));
        let metrics = Arc::new(Metrics::default());
        let shared = Shared::default();
        let task = tokio::spawn(reduce(
            rx,
            kinds.clone(),
            Options::new("example.com/c"),
            state_tx,
            shared.clone(),
            metrics.clone(),
        ));
        for k in &kinds {
            tx.send(Update::Restart(*k)).unwrap();
        }
        for o in objects() {
            tx.send(Update::Listed(Converted::Valid(o))).unwrap();
        }
        for k in &kinds {
            tx.send(Update::Done(*k)).unwrap();
        }
        let s = next(&mut state)
            .await
            .expect("a first engine run once every kind is listed");
        assert!(s.synced);
        assert_shares_every_object(&s, &shared);
        let key = ObjectKey::new(Kind::HttpRoute, "n", "r");
        // The first run reports every status, and queues each for the writer.
        let computed = s.changed_statuses[&key]
            .clone()
            .expect("the route's status");
        assert_eq!(s.statuses().len(), s.changed_statuses.len());
        assert!(shared.lock().pending.contains(&key));
        shared.lock().pending.clear();

        // Our write comes back with the status the engine computed, first
        // through the watch (which runs the engine: a watch event may be
        // another controller's)...
        let Some(Object::HttpRoute(mut r)) = s.snapshot.get(&key).cloned() else {
            panic!()
        };
        let ObjectStatus::Route(st) = computed else {
            panic!()
        };
        r.status = Some(st.clone());
        r.metadata.resource_version = Some("4".into());
        tx.send(Update::Applied(Converted::Valid(Object::HttpRoute(
            r.clone(),
        ))))
        .unwrap();
        let echoed = next(&mut state)
            .await
            .expect("an engine run for a watch event");
        assert_eq!(echoed.objects_version, s.objects_version);
        let rv = |snap: &Snapshot| {
            snap.get(&key)
                .and_then(|o| o.meta().resource_version.clone())
        };
        assert_eq!(rv(&echoed.snapshot).as_deref(), Some("4"), "published");
        // ... and the engine takes that very object (computing nothing:
        // no status changed), so the two still share every object.
        assert!(echoed.changed_statuses.is_empty());
        assert_shares_every_object(&echoed, &shared);
        // Nor is anything else copied for it: the routing and the invalid
        // objects are the maps the state before published.
        assert!(Arc::ptr_eq(&echoed.routing, &s.routing));
        assert!(Arc::ptr_eq(&echoed.invalid, &s.invalid));
        shared.lock().pending.clear();
        let runs = metrics.read().computes;

        // ... then as the write's response: no run at all.
        tx.send(Update::Fresh(Converted::Valid(Object::HttpRoute(
            r.clone(),
        ))))
        .unwrap();
        assert!(
            next(&mut state).await.is_none(),
            "no engine run for our own write"
        );
        assert_eq!(metrics.read().computes, runs);

        // Another controller adds its entry: the engine runs (to keep it),
        // but nothing a data plane serves changed.
        let mut theirs = st.parents[0].clone();
        theirs.controller_name = "other.example/c".into();
        r.status.as_mut().unwrap().parents.insert(0, theirs);
        r.metadata.resource_version = Some("5".into());
        tx.send(Update::Applied(Converted::Valid(Object::HttpRoute(
            r.clone(),
        ))))
        .unwrap();
        let s2 = next(&mut state)
            .await
            .expect("an engine run for another controller's status");
        assert_eq!(s2.objects_version, s.objects_version);
        // Only that route's status changed, and only it is for the writer
        // to look at. (The test never writes the Gateway's and class's
        // statuses back, so when the clock passed a second since the first
        // run they are stamped anew: the same status but for the times.)
        assert!(s2.changed_statuses.contains_key(&key));
        for (k, now) in &s2.changed_statuses {
            if *k != key {
                let before = s.changed_statuses[k].as_ref().expect("a status before");
                let now = now.as_ref().expect("a status now");
                assert!(same_status(before, now), "{k} changed: {now:?}");
            }
        }
        assert!(shared.lock().pending.contains(&key));
        assert!(
            shared
                .lock()
                .pending
                .iter()
                .all(|k| s2.changed_statuses.contains_key(k)),
            "only what changed is for the writer to look at"
        );
        let Some(ObjectStatus::Route(kept)) = &s2.changed_statuses[&key] else {
            panic!()
        };
        assert_eq!(kept.parents[0].controller_name, "other.example/c");
        assert_eq!(s2.status(&key), s2.changed_statuses[&key]);

        // A spec change bumps the objects version.
        r.spec.hostnames = vec!["a.example.com".into()];
        r.metadata.resource_version = Some("6".into());
        r.metadata.generation = Some(2);
        tx.send(Update::Applied(Converted::Valid(Object::HttpRoute(r))))
            .unwrap();
        let s3 = next(&mut state)
            .await
            .expect("an engine run for a spec change");
        assert_eq!(s3.objects_version, s.objects_version + 1);
        assert_shares_every_object(&s3, &shared);
        assert!(
            !Arc::ptr_eq(&s3.routing, &s2.routing),
            "the Gateway's routing changed"
        );
        assert!(Arc::ptr_eq(&s3.invalid, &s.invalid));
        task.abort();
    }

    /// Waits at most 2 s for the next state.
    async fn next_within_2s(rx: &mut watch::Receiver<Arc<State>>) -> Arc<State> {
        tokio::time::timeout(Duration::from_secs(2), rx.changed())
            .await
            .expect("a state within 2 s")
            .unwrap();
        rx.borrow_and_update().clone()
    }

    /// Regression: the engine ran at most once per `coalesce` after the
    /// run before, so that a change arriving a few milliseconds after the
    /// echo of a status write (a run) waited for the rest of the window on
    /// a quiet controller. Now a few runs in a row go at once, and only a
    /// burst beyond them is gathered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_change_after_a_run_is_computed_at_once_and_a_burst_is_gathered() {
        let kinds = vec![Kind::GatewayClass, Kind::Gateway, Kind::HttpRoute];
        let (tx, rx) = inbox();
        let (state_tx, mut state) = watch::channel(Arc::new(State::default()));
        let mut opts = Options::new("example.com/c");
        // Long enough to tell waiting from not waiting on a busy machine.
        opts.coalesce = Duration::from_millis(400);
        let task = tokio::spawn(reduce(
            rx,
            kinds.clone(),
            opts,
            state_tx,
            Shared::default(),
            Arc::new(Metrics::default()),
        ));
        for k in &kinds {
            tx.send(Update::Restart(*k)).unwrap();
        }
        let mut route = None;
        for o in objects() {
            if let Object::HttpRoute(r) = &o {
                route = Some(r.clone());
            }
            tx.send(Update::Listed(Converted::Valid(o))).unwrap();
        }
        for k in &kinds {
            tx.send(Update::Done(*k)).unwrap();
        }
        let first = next_within_2s(&mut state).await;
        let (mut route, key) = (route.unwrap(), ObjectKey::new(Kind::HttpRoute, "n", "r"));
        let mut rv = 10;
        let mut change = |host: &str| {
            rv += 1;
            route.spec.hostnames = vec![host.into()];
            route.metadata.resource_version = Some(rv.to_string());
            tx.send(Update::Applied(Converted::Valid(Object::HttpRoute(
                route.clone(),
            ))))
            .unwrap();
        };
        let host = |s: &State| match s.snapshot.get(&key) {
            Some(Object::HttpRoute(r)) => r.spec.hostnames.clone(),
            _ => Vec::new(),
        };
        // Right after the first run, and right after each other's run.
        for h in ["a.example.com", "b.example.com"] {
            let sent = std::time::Instant::now();
            change(h);
            let s = next_within_2s(&mut state).await;
            let took = sent.elapsed();
            assert_eq!(host(&s), [h]);
            assert!(
                took < Duration::from_millis(200),
                "{h}: computed after {took:?}, not at once"
            );
        }
        // Three runs in a row spent the budget: a burst now waits, and is
        // computed in one run.
        let sent = std::time::Instant::now();
        for h in ["c.example.com", "d.example.com", "e.example.com"] {
            change(h);
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let s = next_within_2s(&mut state).await;
        let took = sent.elapsed();
        assert!(
            took >= Duration::from_millis(200),
            "the burst was computed after {took:?}, within the spent budget"
        );
        assert_eq!(host(&s), ["e.example.com"], "the whole burst in one run");
        assert_eq!(s.objects_version, first.objects_version + 3);
        task.abort();
    }
}
