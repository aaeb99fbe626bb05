//! The incremental engine: apply or delete one object, get back only what
//! changed.
//!
//! The engine keeps, besides the objects, the state of every Gateway of ours
//! (merged listeners, with the routes attached to each) and of every route
//! (its status, attachments and what it depends on), plus reverse indexes:
//! routes by parent, by Service, by namespace, and by the namespaces whose
//! ReferenceGrants they rely on. A change marks what depends on it dirty;
//! only that is recomputed. A Gateway whose listeners changed in a way that
//! matters to attachment re-attaches every route that names it; otherwise
//! its routes stay attached as they were.
//!
//! [`super::compute`] is this engine loaded with a whole snapshot, so the
//! incremental and the full computation share one code path; a proptest
//! checks that any sequence of changes ends where a full computation of the
//! final snapshot does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::bookkeeping::{
    carries_status, index_add, index_remove, indexed, put_status, replace_statuses, same_routing,
    status_keys,
};
use super::policy::{PolicyCache, policy_kind, policy_kinds, policy_refs};
use super::{Computed, Ctx, GrantIndex, Gw, RouteState, gateway_routing, index_grant};
use crate::attachments::{GatewayRouting, RouteList};
use crate::engine::ComputeOptions;
use crate::model::{Kind, Object, ObjectKey};
use crate::snapshot::{SharedMap, Snapshot};
use crate::status::{GatewayStatusAddress, ObjectStatus};

/// What one change did: the statuses and routing inputs that changed.
/// `None` means the status (or routing) is gone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Delta {
    /// Objects whose computed status changed.
    pub statuses: BTreeMap<ObjectKey, Option<ObjectStatus>>,
    /// Gateways whose routing input changed. Untouched Gateways keep
    /// sharing their previous `Arc`.
    pub routing: BTreeMap<ObjectKey, Option<Arc<GatewayRouting>>>,
}

impl Delta {
    /// Whether nothing changed.
    pub fn is_empty(&self) -> bool {
        self.statuses.is_empty() && self.routing.is_empty()
    }

    /// Adds what a later change did: for a key both touch, the later
    /// value wins, so a sequence of deltas absorbed in order says what the
    /// whole sequence changed (a status that changed and changed back still
    /// appears, with its final value).
    pub fn absorb(&mut self, later: Delta) {
        self.statuses.extend(later.statuses);
        self.routing.extend(later.routing);
    }
}

#[derive(Default)]
struct Dirty {
    /// Record no delta (a whole snapshot is being loaded).
    quiet: bool,
    classes: bool,
    all_gateways: bool,
    gateways: BTreeSet<ObjectKey>,
    routes: BTreeSet<ObjectKey>,
    policies: bool,
    /// Gateways whose own status must be recomputed (e.g. a status echo).
    restamp: BTreeSet<ObjectKey>,
}

/// The incremental attachment and status engine.
///
/// ```
/// use gwcore::engine::{ComputeOptions, Engine};
/// use gwcore::load::load_str;
///
/// let mut engine = Engine::new(ComputeOptions::new("example.com/ctrl", "2026-01-01T00:00:00Z"));
/// let yaml = "apiVersion: v1\nkind: Namespace\nmetadata: {name: team}\n";
/// for (obj, _) in load_str("ns.yaml", yaml).objects {
///     let delta = engine.apply(obj);
///     assert!(delta.is_empty(), "a namespace alone changes no status");
/// }
/// ```
#[derive(Debug, Clone)]
pub struct Engine {
    opts: ComputeOptions,
    snap: Snapshot,
    our_classes: BTreeSet<String>,
    /// Namespace labels by namespace name (selectors look them up often).
    ns_labels: BTreeMap<String, BTreeMap<String, String>>,
    grants: GrantIndex,
    gws: BTreeMap<ObjectKey, Gw>,
    routes: BTreeMap<ObjectKey, RouteState>,
    by_parent: BTreeMap<ObjectKey, BTreeSet<RouteKey>>,
    by_service: BTreeMap<ObjectKey, BTreeSet<RouteKey>>,
    /// Routes by (namespace they refer into, their own namespace): a
    /// ReferenceGrant in N admitting namespace M affects exactly these.
    by_grant_ns: BTreeMap<(String, String), BTreeSet<RouteKey>>,
    by_ns: BTreeMap<String, BTreeSet<RouteKey>>,
    /// Routes asking for default Gateways (`useDefaultGateways`): attached
    /// again when a Gateway becomes, or stops being, a default one.
    defaulted: BTreeSet<RouteKey>,
    /// Shared with the outputs handed out ([`Engine::computed`]).
    statuses: SharedMap<ObjectKey, ObjectStatus>,
    routing: BTreeMap<ObjectKey, Arc<GatewayRouting>>,
    /// The routes with refused attachments (the others have none to
    /// report), so that the output lists refusals without visiting every
    /// route.
    refused: BTreeSet<ObjectKey>,
    /// Every policy, parsed, and what each parse looked up.
    policies: PolicyCache,
    /// Whether the dependency indexes are kept (not by [`super::compute`],
    /// which never applies a change after loading).
    indexed: bool,
}

/// A route's key in the indexes: one allocation shared by all of them
/// (a full load indexes every route four times).
pub(super) type RouteKey = Arc<ObjectKey>;

impl Engine {
    /// An empty engine.
    pub fn new(opts: ComputeOptions) -> Self {
        Engine {
            opts,
            snap: Snapshot::new(),
            our_classes: BTreeSet::new(),
            ns_labels: BTreeMap::new(),
            grants: BTreeMap::new(),
            gws: BTreeMap::new(),
            routes: BTreeMap::new(),
            by_parent: BTreeMap::new(),
            by_service: BTreeMap::new(),
            by_grant_ns: BTreeMap::new(),
            by_ns: BTreeMap::new(),
            defaulted: BTreeSet::new(),
            statuses: SharedMap::new(),
            routing: BTreeMap::new(),
            refused: BTreeSet::new(),
            policies: PolicyCache::default(),
            indexed: true,
        }
    }

    /// An engine loaded with a whole snapshot.
    pub fn from_snapshot(snap: Snapshot, opts: ComputeOptions) -> Self {
        Engine::load(snap, opts, true)
    }

    /// [`super::compute`]: the whole output of a snapshot, without the
    /// dependency indexes only later changes need.
    pub(super) fn compute_once(snap: Snapshot, opts: ComputeOptions) -> Computed {
        Engine::load(snap, opts, false).into_computed()
    }

    fn load(snap: Snapshot, opts: ComputeOptions, indexed: bool) -> Self {
        let mut e = Engine::new(opts);
        e.indexed = indexed;
        let routes: BTreeSet<ObjectKey> =
            snap.keys().filter(|k| k.kind.is_route()).cloned().collect();
        e.ns_labels = snap
            .of_kind(Kind::Namespace)
            .map(|o| (o.meta().name.clone(), o.meta().labels.clone()))
            .collect();
        for o in snap.of_kind(Kind::ReferenceGrant) {
            index_grant(&mut e.grants, &o.key(), None, Some(o));
        }
        e.policies = PolicyCache::load(&snap, &e.opts.extensions);
        e.snap = snap;
        let dirty = Dirty {
            quiet: true,
            classes: true,
            all_gateways: true,
            routes,
            policies: true,
            ..Dirty::default()
        };
        e.recompute(dirty);
        e
    }

    /// The options in force.
    pub fn options(&self) -> &ComputeOptions {
        &self.opts
    }

    /// Changes "now" (used as `lastTransitionTime` of conditions that change
    /// from here on). Changes nothing else.
    ///
    /// # Panics
    ///
    /// When `now` is not an RFC 3339 time (see [`ComputeOptions::new`]).
    pub fn set_now(&mut self, now: impl Into<String>) {
        let now = now.into();
        if let Err(e) = super::check_time(&now) {
            panic!("{e}");
        }
        self.opts.now = now;
    }

    /// Sets (or with `None`, clears) the addresses Gateway `gateway`'s own
    /// infrastructure serves it on ([`ComputeOptions::gateway_addresses`]),
    /// and recomputes that Gateway's status; returns what changed.
    pub fn set_gateway_addresses(
        &mut self,
        gateway: &ObjectKey,
        addresses: Option<Vec<GatewayStatusAddress>>,
    ) -> Delta {
        if self.opts.gateway_addresses.get(gateway) == addresses.as_ref() {
            return Delta::default();
        }
        match addresses {
            Some(a) => self.opts.gateway_addresses.insert(gateway.clone(), a),
            None => self.opts.gateway_addresses.remove(gateway),
        };
        let mut dirty = Dirty::default();
        if self.gws.contains_key(gateway) {
            dirty.restamp.insert(gateway.clone());
        }
        self.recompute(dirty)
    }

    /// The objects.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snap
    }

    /// Every current status (clone it to keep it: the clone shares the
    /// statuses, see [`SharedMap`]).
    pub fn statuses(&self) -> &SharedMap<ObjectKey, ObjectStatus> {
        &self.statuses
    }

    /// Every current routing input.
    pub fn routing(&self) -> &BTreeMap<ObjectKey, Arc<GatewayRouting>> {
        &self.routing
    }

    /// The whole current output, as [`super::compute`] returns it. The
    /// statuses are shared, not copied: the cost follows the number of
    /// Gateways and of refused routes, not of statuses.
    pub fn computed(&self) -> Computed {
        let mut refusals: Vec<_> = self
            .refused
            .iter()
            .filter_map(|k| self.routes.get(k))
            .flat_map(|r| r.refusals.iter().cloned())
            .collect();
        refusals.sort();
        Computed {
            statuses: self.statuses.clone(),
            routing: self
                .routing
                .iter()
                .map(|(k, v)| (k.clone(), (**v).clone()))
                .collect(),
            refusals,
        }
    }

    /// The whole current output, consuming the engine (no copies).
    pub fn into_computed(self) -> Computed {
        let mut refusals: Vec<_> = self.routes.into_values().flat_map(|r| r.refusals).collect();
        refusals.sort();
        Computed {
            statuses: self.statuses,
            routing: self
                .routing
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        Arc::try_unwrap(v).unwrap_or_else(|shared| (*shared).clone()),
                    )
                })
                .collect(),
            refusals,
        }
    }

    /// Adds or replaces an object; returns what changed.
    pub fn apply(&mut self, obj: Object) -> Delta {
        self.apply_shared(Arc::new(obj))
    }

    /// [`Engine::apply`] without copying: the engine keeps `obj` itself
    /// in its snapshot, shared with the caller's, so a later
    /// [`Snapshot::differences`] between the two costs a pointer
    /// comparison for it.
    ///
    /// A change of status alone (in Kubernetes mode, the echo of each
    /// status write) whose status is the one this engine computed for the
    /// object is adopted without computing anything: computing again from
    /// it would give that status back, since the conditions it carries
    /// are the ones whose `lastTransitionTime` would be kept. Any other
    /// change of status is computed again, as the status read back
    /// decides `lastTransitionTime` and other controllers' entries.
    pub fn apply_shared(&mut self, obj: Arc<Object>) -> Delta {
        let key = obj.key();
        let status_only = match self.snap.get_shared(&key) {
            Some(old) if Arc::ptr_eq(old, &obj) => return Delta::default(),
            Some(old) => old.same_but_status(&obj),
            None => false,
        };
        if status_only && self.adoptable(&key, &obj) {
            self.adopt(&key, obj);
            return Delta::default();
        }
        let old = self.snap.insert_shared(obj);
        if status_only {
            let mut dirty = Dirty::default();
            // Policies whose parse looked this object up.
            self.reparse(&key, &mut dirty);
            match key.kind {
                Kind::Gateway | Kind::ListenerSet => {
                    // The previous status its conditions are stamped from.
                    if let Some(new) = self.snap.get_shared(&key).cloned() {
                        self.keep_status(&new);
                    }
                    let gateway = match old.as_deref() {
                        // Its status is written with its Gateway's.
                        Some(Object::ListenerSet(ls)) => {
                            let p = &ls.spec.parent_ref;
                            let ns = p.namespace.as_deref().unwrap_or(ls.metadata.ns());
                            ObjectKey::new(Kind::Gateway, ns, p.name.clone())
                        }
                        _ => key,
                    };
                    dirty.restamp.insert(gateway);
                }
                Kind::GatewayClass => dirty.classes = true,
                Kind::BackendTlsPolicy | Kind::Extension(_) => {
                    self.policies
                        .refresh(&self.snap, &self.opts.extensions, &key);
                    dirty.policies = true;
                }
                k if k.is_route() => {
                    dirty.routes.insert(key);
                }
                _ => {}
            }
            return self.recompute(dirty);
        }
        self.changed(&key, old.as_deref())
    }

    /// Brings the engine to `next`: every object that differs is applied
    /// or deleted ([`Engine::apply_shared`], [`Engine::delete`]), and an
    /// object equal to the engine's but not shared with it is taken in
    /// place of the engine's copy, computing nothing. Afterwards the
    /// engine's snapshot holds `next`'s objects themselves, so the next
    /// call compares pointers for every object that did not change.
    /// Returns what changed.
    pub fn update_to(&mut self, next: &Snapshot) -> Delta {
        // (key, next's object, whether it equals the engine's)
        let mut unshared: Vec<(ObjectKey, Option<Arc<Object>>, bool)> = Vec::new();
        self.snap.unshared(next, |key, old, new| {
            let equal = old.is_some_and(|o| Some(o) == new);
            unshared.push((key.clone(), new.cloned(), equal));
        });
        let mut delta = Delta::default();
        for (key, now, equal) in unshared {
            match now {
                // Equal: the caller's object replaces the engine's (the
                // copies a Gateway's computed state keeps are equal too).
                Some(obj) if equal => {
                    self.snap.insert_shared(obj);
                }
                Some(obj) => delta.absorb(self.apply_shared(obj)),
                None => delta.absorb(self.delete(&key)),
            }
        }
        delta
    }

    /// Whether a change of `key`'s status alone, to `obj`'s, can be taken
    /// without computing: `obj` carries the status computed for it (or
    /// the statuses are not this engine's to write,
    /// [`ComputeOptions::routing_only`]), and nothing but the object's own status computation reads its status
    /// (policies keep their own state; no policy's parse looked it up).
    fn adoptable(&self, key: &ObjectKey, obj: &Object) -> bool {
        let kind_ok = matches!(
            key.kind,
            Kind::GatewayClass | Kind::Gateway | Kind::ListenerSet
        ) || key.kind.is_route();
        kind_ok
            && policy_kind(&self.opts.extensions, key.kind).is_none()
            && (self.opts.routing_only
                || self.statuses.get(key).is_some_and(|computed| {
                    carries_status(obj, computed) && self.fixed_point(computed)
                }))
            && self.policies.readers(key).is_empty()
    }

    /// Whether computing from an object carrying `status` gives `status`
    /// back. A route's status without an entry of ours is not: it says
    /// "remove ours", and once that is written there is nothing left to
    /// write (no status).
    fn fixed_point(&self, status: &ObjectStatus) -> bool {
        match status {
            ObjectStatus::Route(r) => r
                .parents
                .iter()
                .any(|p| p.controller_name == self.opts.controller_name),
            _ => true,
        }
    }

    /// Takes `obj` (a change of status alone) into the snapshot and into
    /// the computed state that keeps a copy of it.
    fn adopt(&mut self, key: &ObjectKey, obj: Arc<Object>) {
        self.keep_status(&obj);
        self.snap.insert_shared(obj);
        debug_assert!(self.snap.get(key).is_some());
    }

    /// Stores the status of a Gateway or ListenerSet in the copy the
    /// Gateway's computed state keeps of it, which its conditions are
    /// stamped from.
    fn keep_status(&mut self, obj: &Object) {
        match obj {
            Object::Gateway(g) => {
                if let Some(gw) = self.gws.get_mut(&obj.key()) {
                    gw.obj.status.clone_from(&g.status);
                }
            }
            Object::ListenerSet(ls) => {
                let key = obj.key();
                for gw in self.gws.values_mut() {
                    for s in gw.sets.iter_mut().filter(|s| s.key == key) {
                        s.obj.status.clone_from(&ls.status);
                    }
                }
            }
            _ => {}
        }
    }

    /// Removes an object; returns what changed.
    pub fn delete(&mut self, key: &ObjectKey) -> Delta {
        let old = self.snap.remove_shared(key);
        if old.is_none() {
            return Delta::default();
        }
        self.changed(key, old.as_deref())
    }

    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            snap: &self.snap,
            opts: &self.opts,
            our_classes: &self.our_classes,
            ns_labels: &self.ns_labels,
            grants: &self.grants,
            policies: &self.policies,
        }
    }

    fn changed(&mut self, key: &ObjectKey, old: Option<&Object>) -> Delta {
        if key.kind == Kind::Namespace {
            match self.snap.get(key) {
                Some(o) => {
                    self.ns_labels
                        .insert(key.name.clone(), o.meta().labels.clone());
                }
                None => {
                    self.ns_labels.remove(&key.name);
                }
            }
        }
        if key.kind == Kind::ReferenceGrant {
            index_grant(&mut self.grants, key, old, self.snap.get(key));
        }
        let mut dirty = Dirty::default();
        match key.kind {
            Kind::GatewayClass => dirty.classes = true,
            Kind::Gateway => {
                dirty.gateways.insert(key.clone());
            }
            Kind::ListenerSet => {
                dirty.all_gateways = true;
                dirty.routes.extend(indexed(self.by_parent.get(key)));
            }
            Kind::Namespace => {
                dirty.all_gateways = true;
                dirty.routes.extend(indexed(self.by_ns.get(&key.name)));
            }
            Kind::Service => {
                dirty.routes.extend(indexed(self.by_service.get(key)));
                dirty.policies = true;
            }
            Kind::ReferenceGrant => {
                dirty.all_gateways = true;
                let froms = [old, self.snap.get(key)]
                    .into_iter()
                    .flatten()
                    .flat_map(|o| match o {
                        Object::ReferenceGrant(g) => {
                            g.spec.from.iter().map(|f| f.namespace.clone()).collect()
                        }
                        _ => Vec::new(),
                    });
                for from in froms.collect::<BTreeSet<String>>() {
                    let k = (key.namespace.clone(), from);
                    dirty.routes.extend(indexed(self.by_grant_ns.get(&k)));
                }
            }
            Kind::Secret | Kind::ConfigMap => {
                dirty.all_gateways = true;
                dirty.classes = true;
                dirty.policies = true;
            }
            Kind::EndpointSlice => {}
            Kind::Extension(_) => {
                // The object of ExtensionRef filters: the routes naming it.
                dirty.routes.extend(indexed(self.by_service.get(key)));
            }
            k if k.is_route() => {
                dirty.routes.insert(key.clone());
            }
            _ => {}
        }
        if policy_kind(&self.opts.extensions, key.kind).is_some() {
            self.policies
                .refresh(&self.snap, &self.opts.extensions, key);
            self.policy_changed(key, old, true, &mut dirty);
        }
        // Policies whose parse looked this object up (a CA bundle).
        self.reparse(key, &mut dirty);
        self.recompute(dirty)
    }

    /// Parses again the policies whose parse looked `key` up, and marks
    /// what depends on them.
    fn reparse(&mut self, key: &ObjectKey, dirty: &mut Dirty) {
        for p in self.policies.readers(key) {
            if &p == key {
                continue;
            }
            self.policies.refresh(&self.snap, &self.opts.extensions, &p);
            let current = self.snap.get(&p).cloned();
            self.policy_changed(&p, current.as_ref(), false, dirty);
        }
    }

    /// Marks what depends on a policy that changed (`old` is what it was;
    /// with `moved`, its targets or precedence may have changed too):
    /// every policy status; for the embedder's kinds, the policies every
    /// Gateway hands the table; for kinds whose value goes into backends
    /// (BackendTLSPolicy), the routes to the Services it targets, before
    /// and after, and, when it moved, those of the policies sharing a
    /// Service with it (one may be `Conflicted` now or no longer, which
    /// changes what applies to all of that policy's targets).
    fn policy_changed(
        &self,
        key: &ObjectKey,
        old: Option<&Object>,
        moved: bool,
        dirty: &mut Dirty,
    ) {
        let Some(r) = policy_kind(&self.opts.extensions, key.kind) else {
            return;
        };
        dirty.policies = true;
        if !r.into_backends {
            dirty.restamp.extend(self.gws.keys().cloned());
            return;
        }
        for p in [old, self.snap.get(key)].into_iter().flatten() {
            self.targeted_routes(&key.namespace, p, &mut dirty.routes);
            if moved {
                for q in self.snap.in_namespace(r.object_kind, &key.namespace) {
                    if !policy_services(p).is_disjoint(&policy_services(q)) {
                        self.targeted_routes(&key.namespace, q, &mut dirty.routes);
                    }
                }
            }
        }
    }

    /// Adds the routes to the Services a policy targets.
    fn targeted_routes(&self, ns: &str, policy: &Object, routes: &mut BTreeSet<ObjectKey>) {
        for name in policy_services(policy) {
            let svc = ObjectKey::new(Kind::Service, ns, name);
            routes.extend(indexed(self.by_service.get(&svc)));
        }
    }

    fn recompute(&mut self, mut dirty: Dirty) -> Delta {
        let mut delta = Delta::default();
        let quiet = dirty.quiet;
        let mut touched: BTreeSet<ObjectKey> = BTreeSet::new();

        // 1. Classes.
        if dirty.classes {
            let (class_statuses, ours) = {
                let ctx = self.ctx();
                ctx.classes()
            };
            let old_keys = status_keys(&self.statuses, Kind::GatewayClass)
                .cloned()
                .collect();
            replace_statuses(
                &mut self.statuses,
                (!quiet).then_some(&mut delta),
                old_keys,
                class_statuses,
            );
            if ours != self.our_classes {
                self.our_classes = ours;
                dirty.all_gateways = true;
            }
        }

        // 2. Gateways.
        let gw_keys: BTreeSet<ObjectKey> = if dirty.all_gateways {
            self.snap
                .of_kind(Kind::Gateway)
                .map(Object::key)
                .chain(self.gws.keys().cloned())
                .collect()
        } else {
            std::mem::take(&mut dirty.gateways)
        };
        for gk in gw_keys {
            let new = {
                let ctx = self.ctx();
                ctx.gateway(&gk)
            };
            let mut old = self.gws.remove(&gk);
            // Compare the states without their attachments (carried over below).
            let old_attached: Vec<RouteList> = old
                .as_mut()
                .map(|o| {
                    o.listeners
                        .iter_mut()
                        .map(|l| std::mem::take(&mut l.attached))
                        .collect()
                })
                .unwrap_or_default();
            let unchanged = old == new;
            let same_view = match (&old, &new) {
                (Some(o), Some(n)) => {
                    o.attach_view() == n.attach_view()
                        && o.sets_view() == n.sets_view()
                        && o.is_default() == n.is_default()
                }
                (None, None) => true,
                _ => false,
            };
            if let Some(mut n) = new {
                if same_view {
                    // Carry the attachments over.
                    for (nl, attached) in n.listeners.iter_mut().zip(old_attached) {
                        nl.attached = attached;
                    }
                } else {
                    self.reattach(&gk, old.as_ref(), Some(&n), &mut dirty);
                }
                self.gws.insert(gk.clone(), n);
            } else if !same_view {
                self.reattach(&gk, old.as_ref(), None, &mut dirty);
            }
            if !unchanged {
                touched.insert(gk);
            }
        }

        // 3. Routes.
        for rk in std::mem::take(&mut dirty.routes) {
            self.route(&rk, &mut touched, (!quiet).then_some(&mut delta));
        }

        // 4. Gateway outputs.
        touched.extend(std::mem::take(&mut dirty.restamp));
        let mut routing_changed = false;
        for gk in &touched {
            let old_keys = self.owned_keys(gk);
            let (statuses, routing) = match self.gws.get(gk) {
                Some(gw) => {
                    let ctx = self.ctx();
                    let mut routing = gateway_routing(gk, gw);
                    routing.policies = ctx.gateway_policies(gk, gw, true).0;
                    (ctx.gateway_statuses(gk, gw), Some(routing))
                }
                None => (Vec::new(), None),
            };
            replace_statuses(
                &mut self.statuses,
                (!quiet).then_some(&mut delta),
                old_keys,
                statuses.into_iter().collect(),
            );
            match routing {
                Some(r) => {
                    if !self.routing.get(gk).is_some_and(|a| same_routing(a, &r)) {
                        let a = Arc::new(r);
                        delta.routing.insert(gk.clone(), Some(a.clone()));
                        self.routing.insert(gk.clone(), a);
                        routing_changed = true;
                    }
                }
                None => {
                    if self.routing.remove(gk).is_some() {
                        delta.routing.insert(gk.clone(), None);
                        routing_changed = true;
                    }
                }
            }
        }

        // A ListenerSet whose parentRef left our Gateways (for one that is
        // not ours, or does not exist) has no status from us any more; no
        // Gateway of ours claims it above.
        if dirty.all_gateways {
            let orphans: Vec<ObjectKey> = status_keys(&self.statuses, Kind::ListenerSet)
                .filter(|k| match self.snap.get(k) {
                    Some(Object::ListenerSet(ls)) => {
                        let p = &ls.spec.parent_ref;
                        let ns = p.namespace.as_deref().unwrap_or(ls.metadata.ns());
                        !self
                            .gws
                            .contains_key(&ObjectKey::new(Kind::Gateway, ns, p.name.clone()))
                    }
                    _ => true,
                })
                .cloned()
                .collect();
            for k in orphans {
                put_status(&mut self.statuses, (!quiet).then_some(&mut delta), &k, None);
            }
        }

        // 5. Policies, which depend on what routes where.
        let kinds: Vec<Kind> = policy_kinds(&self.opts.extensions)
            .map(|r| r.object_kind)
            .collect();
        let has_policies = kinds.iter().any(|k| {
            self.snap.of_kind(*k).next().is_some()
                || status_keys(&self.statuses, *k).next().is_some()
        });
        if has_policies && (dirty.policies || routing_changed) {
            let new = {
                let ctx = self.ctx();
                ctx.policy_statuses(&self.gws)
            };
            let old_keys = kinds
                .iter()
                .flat_map(|k| status_keys(&self.statuses, *k).cloned().collect::<Vec<_>>())
                .collect();
            replace_statuses(
                &mut self.statuses,
                (!quiet).then_some(&mut delta),
                old_keys,
                new,
            );
        }
        delta
    }

    /// The status keys a Gateway's output covers: itself and the
    /// ListenerSets that target it.
    fn owned_keys(&self, gk: &ObjectKey) -> Vec<ObjectKey> {
        let mut keys = vec![gk.clone()];
        let sets = status_keys(&self.statuses, Kind::ListenerSet)
            .filter(|k| match self.snap.get(k) {
                Some(Object::ListenerSet(ls)) => {
                    let p = &ls.spec.parent_ref;
                    p.namespace.as_deref().unwrap_or(ls.metadata.ns()) == gk.namespace
                        && p.name == gk.name
                }
                // Deleted: it was covered by whichever Gateway it targeted;
                // every Gateway recomputes when a ListenerSet changes.
                _ => true,
            })
            .cloned();
        keys.extend(sets);
        keys
    }

    /// A Gateway's attachment view changed: every route that named it (or
    /// one of its ListenerSets, before or after) is recomputed.
    fn reattach(&mut self, gk: &ObjectKey, old: Option<&Gw>, new: Option<&Gw>, dirty: &mut Dirty) {
        dirty.routes.extend(indexed(self.by_parent.get(gk)));
        for gw in [old, new].into_iter().flatten() {
            for s in &gw.sets {
                dirty.routes.extend(indexed(self.by_parent.get(&s.key)));
            }
        }
        // A default Gateway (before or after) claims, or gives up, every
        // route asking for one.
        if [old, new].into_iter().flatten().any(Gw::is_default) {
            dirty.routes.extend(indexed(Some(&self.defaulted)));
        }
        // Attachments held by the old state are dropped with it; make sure
        // the routes' records of them do not outlive it.
        for rk in dirty.routes.iter() {
            if let Some(rs) = self.routes.get_mut(rk) {
                rs.attached_to.retain(|(g, _)| g != gk);
            }
        }
    }

    fn route(
        &mut self,
        rk: &ObjectKey,
        touched: &mut BTreeSet<ObjectKey>,
        delta: Option<&mut Delta>,
    ) {
        // Undo the old state.
        self.refused.remove(rk);
        if let Some(old) = self.routes.remove(rk) {
            for (gk, li) in &old.attached_to {
                if let Some(gw) = self.gws.get_mut(gk)
                    && let Some(l) = gw.listeners.get_mut(*li)
                {
                    l.attached.remove(rk);
                }
                touched.insert(gk.clone());
            }
            for p in &old.parents {
                index_remove(&mut self.by_parent, p, rk);
            }
            for s in &old.services {
                index_remove(&mut self.by_service, s, rk);
            }
            for ns in &old.grant_namespaces {
                let k = (ns.clone(), rk.namespace.clone());
                if let Some(set) = self.by_grant_ns.get_mut(&k) {
                    set.remove(rk);
                    if set.is_empty() {
                        self.by_grant_ns.remove(&k);
                    }
                }
            }
            if let Some(set) = self.by_ns.get_mut(&rk.namespace) {
                set.remove(rk);
            }
            if old.defaulted {
                self.defaulted.remove(rk);
            }
        }
        let Some(obj) = self.snap.get(rk) else {
            put_status(&mut self.statuses, delta, rk, None);
            return;
        };
        let state = {
            let ctx = self.ctx();
            ctx.route(obj, &self.gws)
        };
        let mut state = state;
        for (gk, li, ar) in std::mem::take(&mut state.attachments) {
            if let Some(gw) = self.gws.get_mut(&gk)
                && let Some(l) = gw.listeners.get_mut(li)
            {
                debug_assert_eq!(&ar.key, rk, "an attached route carries its own key");
                l.attached.insert(Arc::new(ar));
            }
            touched.insert(gk.clone());
            state.attached_to.push((gk, li));
        }
        if !state.refusals.is_empty() {
            self.refused.insert(rk.clone());
        }
        if !self.indexed {
            // Nothing will be undone: keep only what the output needs.
            let status = state.status.take().map(ObjectStatus::Route);
            put_status(&mut self.statuses, delta, rk, status);
            self.routes.insert(
                rk.clone(),
                RouteState {
                    refusals: state.refusals,
                    ..RouteState::default()
                },
            );
            return;
        }
        let shared: RouteKey = Arc::new(rk.clone());
        for p in &state.parents {
            index_add(&mut self.by_parent, p, &shared);
        }
        for s in &state.services {
            index_add(&mut self.by_service, s, &shared);
        }
        for ns in &state.grant_namespaces {
            let k = (ns.clone(), rk.namespace.clone());
            index_add(&mut self.by_grant_ns, &k, &shared);
        }
        index_add(&mut self.by_ns, rk.namespace.as_str(), &shared);
        if state.defaulted {
            self.defaulted.insert(shared.clone());
        }
        // The status lives in `self.statuses` only.
        let status = state.status.take().map(ObjectStatus::Route);
        put_status(&mut self.statuses, delta, rk, status);
        self.routes.insert(rk.clone(), state);
    }
}

/// The names of the Services a policy targets.
fn policy_services(p: &Object) -> BTreeSet<String> {
    policy_refs(p)
        .into_iter()
        .filter(|t| t.group.is_empty() && t.kind == "Service")
        .map(|t| t.name)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::compute;
    use crate::status::RouteStatus;

    const MANIFESTS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gc}
spec: {controllerName: example.com/gc}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: apps}
spec: {ports: [{port: 8080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: a, namespace: apps}
spec:
  gatewayClassName: gc
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: apps}
spec:
  parentRefs: [{name: a}]
  rules: [{backendRefs: [{name: web, port: 8080}]}]
"#;

    fn engine() -> Engine {
        engine_with(ComputeOptions::new(
            "example.com/gc",
            "2026-01-01T00:00:00Z",
        ))
    }

    fn engine_with(opts: ComputeOptions) -> Engine {
        let loaded = crate::load::load_str("t.yaml", MANIFESTS);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        let snap = Snapshot::from_objects(loaded.objects.into_iter().map(|(o, _)| o));
        Engine::from_snapshot(snap, opts)
    }

    /// Hands `echoed` to the engine and checks it was taken as it is,
    /// computing nothing: no delta, the object shared, route `r`'s
    /// attachment still `before`.
    fn assert_adopted(
        e: &mut Engine,
        key: &ObjectKey,
        echoed: Arc<Object>,
        before: &Arc<crate::attachments::AttachedRoute>,
    ) {
        assert!(e.apply_shared(echoed.clone()).is_empty());
        assert!(Arc::ptr_eq(e.snapshot().get_shared(key).unwrap(), &echoed));
        assert!(
            Arc::ptr_eq(before, &attachment(e)),
            "the route was computed again"
        );
    }

    /// The object under `key` with `status` written into it, as the API
    /// server hands it back.
    fn echo(e: &Engine, key: &ObjectKey, status: ObjectStatus) -> Arc<Object> {
        let mut snap = e.snapshot().clone();
        assert!(snap.set_status(key, status));
        snap.get_shared(key).expect("present").clone()
    }

    /// The attachment of route `r` the Gateway's listener holds: made anew
    /// whenever the route is computed.
    fn attachment(e: &Engine) -> Arc<crate::attachments::AttachedRoute> {
        let gw = &e.gws[&ObjectKey::new(Kind::Gateway, "apps", "a")];
        gw.listeners[0]
            .attached
            .get(&ObjectKey::new(Kind::HttpRoute, "apps", "r"))
            .expect("attached")
            .clone()
    }

    #[test]
    fn the_echo_of_a_computed_status_is_adopted_without_computing() {
        let mut e = engine();
        e.set_now("2026-01-02T00:00:00Z");
        let route = ObjectKey::new(Kind::HttpRoute, "apps", "r");
        let gateway = ObjectKey::new(Kind::Gateway, "apps", "a");
        let before = attachment(&e);
        let echoed = echo(&e, &route, e.statuses()[&route].clone());
        assert_adopted(&mut e, &route, echoed, &before);
        // A Gateway's echo reaches the copy its conditions are stamped from.
        let echoed = echo(&e, &gateway, e.statuses()[&gateway].clone());
        assert_adopted(&mut e, &gateway, echoed.clone(), &before);
        let Object::Gateway(g) = &*echoed else {
            unreachable!()
        };
        assert_eq!(e.gws[&gateway].obj.status, g.status);
        let class = ObjectKey::cluster_scoped(Kind::GatewayClass, "gc");
        assert!(
            e.apply_shared(echo(&e, &class, e.statuses()[&class].clone()))
                .is_empty()
        );
        assert!(Arc::ptr_eq(&before, &attachment(&e)));
        assert_eq!(
            e.computed(),
            compute(e.snapshot(), e.options()),
            "adopting changed what a computation from the objects gives"
        );
    }

    #[test]
    fn a_status_that_is_not_the_computed_one_is_computed_from() {
        let mut e = engine();
        e.set_now("2026-01-02T00:00:00Z");
        let route = ObjectKey::new(Kind::HttpRoute, "apps", "r");
        let gateway = ObjectKey::new(Kind::Gateway, "apps", "a");
        let class = ObjectKey::cluster_scoped(Kind::GatewayClass, "gc");
        e.apply_shared(echo(&e, &class, e.statuses()[&class].clone()));
        let before = attachment(&e);
        // Written earlier than computed here: the earlier time is kept.
        let earlier = |s: &ObjectStatus| {
            let mut s = s.clone();
            let conds: Vec<&mut crate::status::Condition> = match &mut s {
                ObjectStatus::Route(RouteStatus { parents }) => {
                    parents.iter_mut().flat_map(|p| &mut p.conditions).collect()
                }
                ObjectStatus::Gateway(g) => g.conditions.iter_mut().collect(),
                _ => unreachable!(),
            };
            for c in conds {
                c.last_transition_time = "2025-06-01T00:00:00Z".into();
            }
            s
        };
        let echoed = echo(&e, &route, earlier(&e.statuses()[&route]));
        e.apply_shared(echoed);
        assert!(!Arc::ptr_eq(&before, &attachment(&e)));
        let echoed = echo(&e, &gateway, earlier(&e.statuses()[&gateway]));
        e.apply_shared(echoed);
        let full = compute(e.snapshot(), e.options());
        assert_eq!(e.computed(), full);
        let Some(ObjectStatus::Gateway(g)) = full.statuses.get(&gateway) else {
            panic!("a Gateway status")
        };
        assert_eq!(g.conditions[0].last_transition_time, "2025-06-01T00:00:00Z");
    }

    #[test]
    fn a_routing_only_engine_takes_any_status_alone_without_computing() {
        // As the proxy beside a Kubernetes controller: the controller's
        // clock stamped the statuses it wrote, so they are not this
        // engine's to the second. Its routing is the same either way.
        let mut e = engine_with(
            ComputeOptions::new("example.com/gc", "2026-01-01T00:00:00Z").with_routing_only(true),
        );
        e.set_now("2026-01-02T00:00:00Z");
        let route = ObjectKey::new(Kind::HttpRoute, "apps", "r");
        let gateway = ObjectKey::new(Kind::Gateway, "apps", "a");
        let before = attachment(&e);
        let routing = e.routing().clone();
        let mut stamped = e.statuses()[&route].clone();
        if let ObjectStatus::Route(RouteStatus { parents }) = &mut stamped {
            for c in parents.iter_mut().flat_map(|p| &mut p.conditions) {
                c.last_transition_time = "2025-06-01T00:00:00Z".into();
            }
        }
        let echoed = echo(&e, &route, stamped);
        assert_adopted(&mut e, &route, echoed, &before);
        let echoed = echo(&e, &gateway, ObjectStatus::Gateway(Default::default()));
        assert_adopted(&mut e, &gateway, echoed, &before);
        assert_eq!(e.routing(), &routing);
        // What is served is what a computation from the objects gives.
        assert_eq!(
            e.computed().routing,
            compute(e.snapshot(), e.options()).routing
        );
    }

    #[test]
    fn update_to_shares_the_callers_objects() {
        let mut e = engine();
        // A separate copy of every object, one route changed.
        let mut next = Snapshot::from_objects(e.snapshot().iter().cloned());
        let route = ObjectKey::new(Kind::HttpRoute, "apps", "r");
        next.get_mut(&route).unwrap().meta_mut().generation = Some(2);
        let delta = e.update_to(&next);
        assert!(delta.statuses.contains_key(&route));
        let mut unshared = 0;
        e.snapshot().unshared(&next, |_, _, _| unshared += 1);
        assert_eq!(unshared, 0, "every object is the caller's");
        assert_eq!(e.computed(), compute(&next, e.options()));
    }
}
