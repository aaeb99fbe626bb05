//! The attachment and status engine: a pure function of a snapshot.
//!
//! [`compute`] takes every object, our controller name and "now", and
//! returns the status of every GatewayClass, Gateway, ListenerSet, route and
//! BackendTLSPolicy we own a part of, plus the routing input of each of our
//! Gateways. It reads the previous status from the objects in the snapshot
//! so that `lastTransitionTime` only moves when a condition's status
//! changes, and so that route `status.parents` entries of other controllers
//! are kept untouched and in place.
//!
//! Decisions the spec leaves open, and what gwcore does:
//! - A route refused by every candidate listener gets one reason, checked in
//!   this order: no listener matches `sectionName`/`port` →
//!   `NoMatchingParent`; none of those is valid → `NoMatchingParent`; none
//!   admits the route's kind and namespace → `NotAllowedByListeners`; none
//!   shares a hostname → `NoMatchingListenerHostname`.
//! - `ResolvedRefs` reports the first failing reference in document order
//!   (rules, then each rule's backendRefs, then its mirror targets); for one
//!   reference the checks run kind (`InvalidKind`), then grant
//!   (`RefNotPermitted`), then existence (`BackendNotFound`), then the
//!   port's `appProtocol` (`UnsupportedProtocol`).
//! - Listener conflicts are settled by precedence: the Gateway's own
//!   listeners in spec order, then those of accepted ListenerSets (oldest
//!   first, then by namespace/name). The first listener keeps its port and
//!   hostname; a later one that clashes is `Conflicted`.
//! - A parentRef naming a Gateway attaches to the Gateway's own listeners; a
//!   parentRef naming a ListenerSet attaches to that set's listeners.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use base64::Engine as _;
use serde::Serialize;

use crate::attachments::{
    AttachedRoute, BackendError, BackendTarget, BackendTls, FrontendValidation, GatewayRouting,
    GrpcRule, HttpRule, L4Rule, ListenerProtocol, ListenerRouting, Mirror, ResolvedBackend,
    RouteList, RouteRules, SubjectAltName, TlsMode,
};
use crate::extension::{ExtensionObject, Extensions};
use crate::hostname;
use crate::model::{
    BackendRef, GATEWAY_GROUP, Gateway, HttpRouteFilter, Kind, LabelSelector, Listener,
    ListenerSet, Object, ObjectKey, ObjectMeta, ParentReference, RouteGroupKind, RouteNamespaces,
    SecretObjectReference,
};
use crate::selector;
use crate::snapshot::{SharedMap, Snapshot};

mod backend_tls_policy;
mod bookkeeping;
mod gateways;
mod incremental;
mod output;
mod policy;
mod references;
mod routes;
use crate::status::{
    Condition, ConditionType as T, GatewayClassStatus, GatewayStatus, GatewayStatusAddress,
    ListenerSetStatus, ListenerStatus, ObjectStatus, Reason, RouteParentStatus, RouteStatus,
};
pub use incremental::{Delta, Engine};
use output::*;
use references::*;
use routes::*;

/// What the engine needs besides the snapshot. Built by
/// [`ComputeOptions::new`] and its `with_` methods; it may gain fields in a
/// minor release.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ComputeOptions {
    /// Our `controllerName`; only GatewayClasses naming it are processed.
    pub controller_name: String,
    /// "Now" (RFC 3339), used as `lastTransitionTime` of changed conditions.
    pub now: String,
    /// Addresses reported in `status.addresses` of Gateways that request
    /// none (or request one without a value). Default: none.
    pub addresses: Vec<GatewayStatusAddress>,
    /// The filter and policy kinds this engine resolves beyond the
    /// built-in ones ([`crate::extension`]). Default: none.
    pub extensions: Extensions,
    /// The addresses the deployment can serve a Gateway on (file mode:
    /// the listen addresses; Kubernetes: the Gateway Service's), as IP
    /// addresses or hostnames. A Gateway's `spec.addresses` entry not
    /// among them leaves it `Programmed=False` (`AddressNotUsable`) and
    /// out of `status.addresses`. `None` (the default): not known, every
    /// address of a supported type is taken as usable.
    pub usable_addresses: Option<std::collections::BTreeSet<String>>,
    /// Per Gateway, the addresses its own infrastructure serves it on
    /// (Kubernetes: the Service made for the Gateway). For a Gateway listed
    /// here they take the place of both [`ComputeOptions::addresses`] and
    /// [`ComputeOptions::usable_addresses`]: they are what it reports when
    /// it requests none, and the only addresses it can use. Default: none.
    pub gateway_addresses: BTreeMap<ObjectKey, Vec<GatewayStatusAddress>>,
    /// Whether the caller uses this engine's routing only, another engine
    /// writing the statuses (a data plane beside a Kubernetes controller).
    /// Then a change of an object's status alone, which changes no routing,
    /// is taken into the snapshot without computing anything, also when it
    /// is not the status this engine computed (the controller's clock
    /// stamped it, or another controller's entry changed): the statuses
    /// this engine reports may keep an earlier `lastTransitionTime` or miss
    /// another controller's entry. Default `false`: every status is what
    /// the snapshot gives.
    pub routing_only: bool,
}

impl ComputeOptions {
    /// Options for `controller_name` at time `now` (RFC 3339, as
    /// `lastTransitionTime` is written: `2026-01-01T00:00:00Z`).
    ///
    /// # Panics
    ///
    /// When `now` is not an RFC 3339 time (a time from input goes through
    /// [`ComputeOptions::try_new`]).
    pub fn new(controller_name: impl Into<String>, now: impl Into<String>) -> Self {
        let now = now.into();
        match ComputeOptions::try_new(controller_name, now.as_str()) {
            Ok(o) => o,
            Err(e) => panic!("{e}"),
        }
    }

    /// [`ComputeOptions::new`], with an error for a `now` that is not an
    /// RFC 3339 time.
    pub fn try_new(controller_name: impl Into<String>, now: &str) -> Result<Self, InvalidTime> {
        check_time(now)?;
        Ok(ComputeOptions {
            controller_name: controller_name.into(),
            now: now.to_owned(),
            addresses: Vec::new(),
            extensions: Extensions::default(),
            usable_addresses: None,
            gateway_addresses: BTreeMap::new(),
            routing_only: false,
        })
    }

    /// Sets the extensions (filter and policy kinds) to resolve.
    pub fn with_extensions(mut self, extensions: Extensions) -> Self {
        self.extensions = extensions;
        self
    }

    /// Sets the addresses the deployment can serve Gateways on
    /// ([`ComputeOptions::usable_addresses`]); IP addresses are compared
    /// as addresses (`::1` and `0:0::1` are one), hostnames without case.
    pub fn with_usable_addresses<S: AsRef<str>>(
        mut self,
        addresses: impl IntoIterator<Item = S>,
    ) -> Self {
        self.usable_addresses = Some(
            addresses
                .into_iter()
                .map(|a| canonical_address(a.as_ref()))
                .collect(),
        );
        self
    }

    /// Sets [`ComputeOptions::routing_only`].
    pub fn with_routing_only(mut self, routing_only: bool) -> Self {
        self.routing_only = routing_only;
        self
    }

    /// Sets the default Gateway addresses.
    pub fn with_addresses(mut self, addresses: Vec<GatewayStatusAddress>) -> Self {
        self.addresses = addresses;
        self
    }

    /// Sets the addresses Gateway `gateway`'s own infrastructure serves it
    /// on ([`ComputeOptions::gateway_addresses`]).
    pub fn with_gateway_addresses(
        mut self,
        gateway: ObjectKey,
        addresses: Vec<GatewayStatusAddress>,
    ) -> Self {
        self.gateway_addresses.insert(gateway, addresses);
        self
    }

    /// For Gateway `gateway`: the addresses it reports when it requests
    /// none, and the addresses it can use (`None`: any).
    pub(crate) fn addressing(
        &self,
        gateway: &ObjectKey,
    ) -> (
        &[GatewayStatusAddress],
        Option<std::borrow::Cow<'_, BTreeSet<String>>>,
    ) {
        match self.gateway_addresses.get(gateway) {
            Some(own) => (
                own,
                Some(std::borrow::Cow::Owned(
                    own.iter().map(|a| canonical_address(&a.value)).collect(),
                )),
            ),
            None => (
                &self.addresses,
                self.usable_addresses
                    .as_ref()
                    .map(std::borrow::Cow::Borrowed),
            ),
        }
    }
}

/// An address as [`ComputeOptions::usable_addresses`] compares it: an IP
/// address in its canonical text, else the lowercase hostname.
pub(crate) fn canonical_address(a: &str) -> String {
    match a.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => a.trim_end_matches('.').to_ascii_lowercase(),
    }
}

/// A "now" that is not an RFC 3339 time.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not an RFC 3339 time such as 2026-01-01T00:00:00Z")]
pub struct InvalidTime(pub String);

/// Checks that `now` is an RFC 3339 time (date, `T`, time, `Z` or an
/// offset), as Kubernetes writes `lastTransitionTime`.
pub(crate) fn check_time(now: &str) -> Result<(), InvalidTime> {
    let b = now.as_bytes();
    let shaped = b.len() >= 20
        && b[4] == b'-'
        && b[7] == b'-'
        && matches!(b[10], b'T' | b't')
        && b[13] == b':'
        && b[16] == b':';
    if shaped && now.parse::<jiff::Timestamp>().is_ok() {
        Ok(())
    } else {
        Err(InvalidTime(now.to_owned()))
    }
}

/// A refused attachment, explained for people.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Refusal {
    /// The route.
    pub route: ObjectKey,
    /// The parent as `namespace/name` (with `/section` or `:port` when given).
    pub parent: String,
    /// The condition reason (`NotAllowedByListeners`...).
    pub reason: Reason,
    /// One line a person understands.
    pub message: String,
}

/// The engine's output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Computed {
    /// The status of every object we own a part of, keyed by object.
    /// Shared with the [`Engine`] that computed it ([`Engine::computed`]
    /// copies no status): a [`SharedMap`] is an ordered map whose clones
    /// share storage.
    pub statuses: SharedMap<ObjectKey, ObjectStatus>,
    /// Routing input for each of our Gateways.
    pub routing: BTreeMap<ObjectKey, GatewayRouting>,
    /// Every refused route attachment, ordered by route then parent.
    pub refusals: Vec<Refusal>,
}

type Fail = (Reason, String);

/// Computes every status and the routing input from a snapshot.
///
/// `lastTransitionTime` moves only when a condition's status changes: the
/// engine reads the previous status from the objects themselves. A
/// controller gets that for free (the API server hands back what it
/// wrote); a program that computes again on its own snapshot stores the
/// statuses first:
///
/// ```
/// # use gwcore::{Snapshot, engine::{compute, ComputeOptions}};
/// # let mut snapshot = Snapshot::new();
/// let out = compute(&snapshot, &ComputeOptions::new("example.com/ctrl", "2026-01-01T00:00:00Z"));
/// snapshot.apply_statuses(&out.statuses);
/// let later = compute(&snapshot, &ComputeOptions::new("example.com/ctrl", "2026-01-02T00:00:00Z"));
/// assert_eq!(out.statuses, later.statuses, "nothing changed, so no time moved");
/// ```
///
/// This is [`Engine`] loaded with the whole snapshot at once: the
/// incremental engine and the full computation are one code path.
pub fn compute(snapshot: &Snapshot, opts: &ComputeOptions) -> Computed {
    Engine::compute_once(snapshot.clone(), opts.clone())
}

/// One listener of a Gateway, or of a ListenerSet merged into it.
#[derive(Debug, Clone, PartialEq)]
struct Lst {
    spec: Listener,
    /// The Gateway or ListenerSet declaring it.
    owner: ObjectKey,
    owner_ns: String,
    protocol: Option<ListenerProtocol>,
    supported: Vec<RouteGroupKind>,
    accepted: Result<(), Fail>,
    resolved: Result<(), Fail>,
    conflict: Option<Fail>,
    certs: Vec<ObjectKey>,
    /// Client certificate validation (HTTPS listeners of a Gateway).
    frontend: Option<FrontendValidation>,
    /// Attached routes, by key: handed to the table as they are
    /// ([`crate::attachments::ListenerRouting::routes`]), sharing storage.
    attached: RouteList,
}

impl Lst {
    /// Routes may attach: accepted and not conflicted.
    fn usable(&self) -> bool {
        self.accepted.is_ok() && self.conflict.is_none()
    }

    /// Fully valid: usable, with every reference resolved.
    fn valid(&self) -> bool {
        self.usable() && self.resolved.is_ok()
    }
}

/// A Gateway of ours with its merged listeners.
#[derive(Debug, Clone, PartialEq)]
struct Gw {
    obj: Gateway,
    params: Result<(), Fail>,
    /// `spec.tls.backend.clientCertificateRef`, resolved (the certificate
    /// the Gateway presents to backends that ask for one).
    backend_client_certificate: Option<ObjectKey>,
    /// Own listeners first, then accepted ListenerSets' in precedence order.
    listeners: Vec<Lst>,
    sets: Vec<Ls>,
}

impl Gw {
    /// Everything a route's attachment depends on. When it is unchanged, the
    /// routes attached before stay attached as they were.
    fn attach_view(&self) -> Vec<(&ObjectKey, &str, &Listener, bool, &[RouteGroupKind])> {
        self.listeners
            .iter()
            .map(|l| {
                (
                    &l.owner,
                    l.owner_ns.as_str(),
                    &l.spec,
                    l.usable(),
                    l.supported.as_slice(),
                )
            })
            .collect()
    }

    /// Whether the Gateway claims routes asking for a default Gateway
    /// (`spec.defaultScope: All`, GEP-3793).
    fn is_default(&self) -> bool {
        self.obj
            .spec
            .default_scope
            .as_ref()
            .is_some_and(routes::claims)
    }

    fn sets_view(&self) -> Vec<(&ObjectKey, bool)> {
        self.sets
            .iter()
            .map(|s| (&s.key, s.allowed.is_ok()))
            .collect()
    }
}

#[derive(Debug, Clone, PartialEq)]
struct Ls {
    obj: ListenerSet,
    key: ObjectKey,
    allowed: Result<(), Fail>,
}

/// What one route contributes: its status, its attachments and what it
/// depends on.
#[derive(Debug, Clone, Default, PartialEq)]
struct RouteState {
    status: Option<RouteStatus>,
    /// (Gateway, listener index, attachment), as computed; moved into the
    /// Gateways' listeners when applied.
    attachments: Vec<(ObjectKey, usize, AttachedRoute)>,
    /// Where the attachments went: (Gateway, listener index).
    attached_to: Vec<(ObjectKey, usize)>,
    refusals: Vec<Refusal>,
    /// Gateways and ListenerSets named by parentRefs (existing or not),
    /// sorted and without duplicates. A Vec, not a set: most routes name
    /// one or two, and a set's first node holds eleven.
    parents: Vec<ObjectKey>,
    /// Services named by backendRefs and mirrors (sorted, no duplicates).
    services: Vec<ObjectKey>,
    /// Namespaces of cross-namespace references (their ReferenceGrants
    /// matter; sorted, no duplicates).
    grant_namespaces: Vec<String>,
    /// Whether the route asks for default Gateways (GEP-3793): it is
    /// attached again whenever a Gateway becomes or stops being one.
    defaulted: bool,
}

/// Read-only context of one computation step.
struct Ctx<'a> {
    snap: &'a Snapshot,
    opts: &'a ComputeOptions,
    our_classes: &'a BTreeSet<String>,
    ns_labels: &'a BTreeMap<String, BTreeMap<String, String>>,
    grants: &'a GrantIndex,
    /// Every policy, parsed by its kind.
    policies: &'a policy::PolicyCache,
}

/// ReferenceGrants by their namespace, then by each namespace they admit
/// references from, then by grant name.
type GrantIndex =
    BTreeMap<String, BTreeMap<String, BTreeMap<String, crate::model::ReferenceGrantSpec>>>;

/// Updates the index for one grant (removed when `grant` is `None`).
fn index_grant(idx: &mut GrantIndex, key: &ObjectKey, old: Option<&Object>, new: Option<&Object>) {
    let froms = |o: Option<&Object>| -> BTreeSet<String> {
        match o {
            Some(Object::ReferenceGrant(g)) => {
                g.spec.from.iter().map(|f| f.namespace.clone()).collect()
            }
            _ => BTreeSet::new(),
        }
    };
    let by_from = idx.entry(key.namespace.clone()).or_default();
    for f in froms(old) {
        if let Some(by_name) = by_from.get_mut(&f) {
            by_name.remove(&key.name);
            if by_name.is_empty() {
                by_from.remove(&f);
            }
        }
    }
    if let Some(Object::ReferenceGrant(g)) = new {
        for f in froms(new) {
            by_from
                .entry(f)
                .or_default()
                .insert(key.name.clone(), g.spec.clone());
        }
    }
    if by_from.is_empty() {
        idx.remove(&key.namespace);
    }
}

fn cond(ty: T, ok: bool, reason: Reason, msg: impl Into<String>) -> Condition {
    Condition::new(ty, ok, reason, msg)
}

fn group_of(g: &Option<String>, default: &str) -> String {
    g.clone().unwrap_or_else(|| default.to_string())
}

fn ts_key(m: &ObjectMeta) -> (bool, &str) {
    // Objects without a timestamp count as equally old (and older than any
    // stamped one, which sorts them first, then by key).
    (
        m.creation_timestamp.is_some(),
        m.creation_timestamp.as_deref().unwrap_or(""),
    )
}

/// Fills `observedGeneration` and `lastTransitionTime`: the previous
/// condition's time is kept when its status is unchanged.
fn stamp(
    mut conds: Vec<Condition>,
    prev: &[Condition],
    meta: &ObjectMeta,
    now: &str,
) -> Vec<Condition> {
    for c in &mut conds {
        c.observed_generation = meta.generation;
        c.last_transition_time = match prev.iter().find(|p| p.type_ == c.type_) {
            Some(p) if p.status == c.status && !p.last_transition_time.is_empty() => {
                p.last_transition_time.clone()
            }
            _ => now.to_string(),
        };
    }
    conds
}
