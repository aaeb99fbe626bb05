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
    RouteRules, SubjectAltName, TlsMode,
};
use crate::extension::{ExtensionObject, Extensions};
use crate::hostname;
use crate::model::{
    BackendRef, GATEWAY_GROUP, Gateway, HttpRouteFilter, Kind, LabelSelector, Listener,
    ListenerSet, Object, ObjectKey, ObjectMeta, ParentReference, RouteGroupKind, RouteNamespaces,
    SecretObjectReference,
};
use crate::selector;
use crate::snapshot::Snapshot;

mod incremental;
mod policy;
use crate::status::{
    Condition, ConditionType as T, GatewayClassStatus, GatewayStatus, GatewayStatusAddress,
    ListenerSetStatus, ListenerStatus, ObjectStatus, PolicyAncestorStatus, PolicyStatus, Reason,
    RouteParentStatus, RouteStatus,
};
pub use incremental::{Delta, Engine};

/// What the engine needs besides the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl ComputeOptions {
    /// Options for `controller_name` at time `now`.
    pub fn new(controller_name: impl Into<String>, now: impl Into<String>) -> Self {
        ComputeOptions {
            controller_name: controller_name.into(),
            now: now.into(),
            addresses: Vec::new(),
            extensions: Extensions::default(),
        }
    }

    /// Sets the extensions (filter and policy kinds) to resolve.
    pub fn with_extensions(mut self, extensions: Extensions) -> Self {
        self.extensions = extensions;
        self
    }

    /// Sets the default Gateway addresses.
    pub fn with_addresses(mut self, addresses: Vec<GatewayStatusAddress>) -> Self {
        self.addresses = addresses;
        self
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
    pub reason: String,
    /// One line a person understands.
    pub message: String,
}

/// The engine's output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Computed {
    /// The status of every object we own a part of, keyed by object.
    pub statuses: BTreeMap<ObjectKey, ObjectStatus>,
    /// Routing input for each of our Gateways.
    pub routing: BTreeMap<ObjectKey, GatewayRouting>,
    /// Every refused route attachment, ordered by route then parent.
    pub refusals: Vec<Refusal>,
}

type Fail = (Reason, String);

/// Computes every status and the routing input from a snapshot.
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
    /// Attached routes, by key.
    attached: BTreeMap<ObjectKey, Arc<AttachedRoute>>,
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
    /// Gateways and ListenerSets named by parentRefs (existing or not).
    parents: BTreeSet<ObjectKey>,
    /// Services named by backendRefs and mirrors.
    services: BTreeSet<ObjectKey>,
    /// Namespaces of cross-namespace references (their ReferenceGrants matter).
    grant_namespaces: BTreeSet<String>,
}

/// Read-only context of one computation step.
struct Ctx<'a> {
    snap: &'a Snapshot,
    opts: &'a ComputeOptions,
    our_classes: &'a BTreeSet<String>,
    ns_labels: &'a BTreeMap<String, BTreeMap<String, String>>,
    grants: &'a GrantIndex,
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

impl Ctx<'_> {
    // ---------------------------------------------------------------- classes

    /// GatewayClass statuses, and the names of our accepted classes.
    fn classes(&self) -> (BTreeMap<ObjectKey, ObjectStatus>, BTreeSet<String>) {
        let mut statuses = BTreeMap::new();
        let mut ours = BTreeSet::new();
        for o in self.snap.of_kind(Kind::GatewayClass) {
            let Object::GatewayClass(gc) = o else {
                continue;
            };
            if gc.spec.controller_name != self.opts.controller_name {
                continue;
            }
            let accepted = match &gc.spec.parameters_ref {
                None => Ok(()),
                Some(p) => {
                    let found = p.group.is_empty()
                        && p.kind == "ConfigMap"
                        && p.namespace.as_deref().is_some_and(|ns| {
                            self.snap
                                .get(&ObjectKey::new(Kind::ConfigMap, ns, p.name.clone()))
                                .is_some()
                        });
                    if found {
                        Ok(())
                    } else {
                        Err((
                            Reason::InvalidParameters,
                            format!(
                                "parametersRef {}/{} {} is not a ConfigMap that exists",
                                p.group, p.kind, p.name
                            ),
                        ))
                    }
                }
            };
            let mut conds = vec![match &accepted {
                Ok(()) => cond(T::Accepted, true, Reason::Accepted, "handled by gwcore"),
                Err((r, m)) => cond(T::Accepted, false, *r, m.clone()),
            }];
            conds.push(cond(
                T::SupportedVersion,
                true,
                Reason::SupportedVersion,
                "Gateway API CRDs are a supported version",
            ));
            if accepted.is_ok() {
                ours.insert(gc.metadata.name.clone());
            }
            let prev = gc
                .status
                .as_ref()
                .map(|s| s.conditions.as_slice())
                .unwrap_or(&[]);
            let conditions = self.stamp(conds, prev, &gc.metadata);
            statuses.insert(
                o.key(),
                ObjectStatus::GatewayClass(GatewayClassStatus {
                    conditions,
                    supported_features: gc
                        .status
                        .as_ref()
                        .map(|s| s.supported_features.clone())
                        .unwrap_or_default(),
                }),
            );
        }
        (statuses, ours)
    }

    /// Whether a reference from (`from_kind` in `from_ns`) to (`to_group`,
    /// `to_kind`, `to_name` in `to_ns`) is allowed: same namespace, or a
    /// ReferenceGrant in the target namespace permits it.
    fn permitted(
        &self,
        from_kind: &str,
        from_ns: &str,
        to_group: &str,
        to_kind: &str,
        to_ns: &str,
        to_name: &str,
    ) -> bool {
        if from_ns == to_ns {
            return true;
        }
        let Some(grants) = self
            .grants
            .get(to_ns)
            .and_then(|by_from| by_from.get(from_ns))
        else {
            return false;
        };
        grants.values().any(|g| {
            g.from
                .iter()
                .any(|f| f.group == GATEWAY_GROUP && f.kind == from_kind && f.namespace == from_ns)
                && g.to.iter().any(|t| {
                    t.group == to_group
                        && t.kind == to_kind
                        && t.name
                            .as_deref()
                            .is_none_or(|n| n.is_empty() || n == to_name)
                })
        })
    }

    fn namespace_allowed(
        &self,
        from: &RouteNamespaces,
        owner_ns: &str,
        ns: &str,
    ) -> Result<(), String> {
        namespace_allowed_free(self.ns_labels, from, owner_ns, ns)
    }

    // ---------------------------------------------------------------- gateways

    /// The state of one Gateway, or `None` when it is absent or not ours.
    fn gateway(&self, key: &ObjectKey) -> Option<Gw> {
        let Some(Object::Gateway(gw)) = self.snap.get(key) else {
            return None;
        };
        if !self
            .our_classes
            .contains(gw.spec.gateway_class_name.as_str())
        {
            return None;
        }
        let key = key.clone();
        {
            let params = match gw
                .spec
                .infrastructure
                .as_ref()
                .and_then(|i| i.parameters_ref.as_ref())
            {
                None => Ok(()),
                Some(p) => {
                    let ok = p.group.is_empty()
                        && p.kind == "ConfigMap"
                        && self
                            .snap
                            .get(&ObjectKey::new(
                                Kind::ConfigMap,
                                gw.metadata.ns(),
                                p.name.clone(),
                            ))
                            .is_some();
                    if ok {
                        Ok(())
                    } else {
                        Err((
                            Reason::InvalidParameters,
                            format!(
                                "infrastructure.parametersRef {}/{} {} is not a ConfigMap in namespace {}",
                                p.group,
                                p.kind,
                                p.name,
                                gw.metadata.ns()
                            ),
                        ))
                    }
                }
            };
            let mut listeners: Vec<Lst> = gw
                .spec
                .listeners
                .iter()
                .map(|l| {
                    let mut lst = self.listener(l, &key, gw.metadata.ns());
                    if lst.protocol == Some(ListenerProtocol::Https) && lst.accepted.is_ok() {
                        match self.frontend_validation(gw, l) {
                            Ok(v) => lst.frontend = v,
                            Err(f) => {
                                lst.accepted = Err((Reason::NoValidCaCertificate, f.1.clone()));
                                lst.resolved = Err(f);
                            }
                        }
                    }
                    lst
                })
                .collect();
            // ListenerSets targeting this Gateway.
            let mut sets: Vec<Ls> = Vec::new();
            for so in self.snap.of_kind(Kind::ListenerSet) {
                let Object::ListenerSet(ls) = so else {
                    continue;
                };
                let p = &ls.spec.parent_ref;
                let pns = p.namespace.as_deref().unwrap_or(ls.metadata.ns());
                if group_of(&p.group, GATEWAY_GROUP) != GATEWAY_GROUP
                    || p.kind.as_deref().unwrap_or("Gateway") != "Gateway"
                    || pns != gw.metadata.ns()
                    || p.name != gw.metadata.name
                {
                    continue;
                }
                let allowed = self.listener_set_allowed(gw, ls.metadata.ns());
                sets.push(Ls {
                    obj: ls.clone(),
                    key: so.key(),
                    allowed,
                });
            }
            // Precedence among ListenerSets: oldest first, then namespace/name.
            sets.sort_by(|a, b| {
                ts_key(&a.obj.metadata)
                    .cmp(&ts_key(&b.obj.metadata))
                    .then_with(|| a.key.cmp(&b.key))
            });
            for s in &sets {
                if s.allowed.is_ok() {
                    for l in &s.obj.spec.listeners {
                        let lst = self.listener(l, &s.key, s.obj.metadata.ns());
                        listeners.push(lst);
                    }
                }
            }
            resolve_conflicts(&mut listeners);
            Some(Gw {
                obj: gw.clone(),
                params,
                backend_client_certificate: self
                    .backend_client_certificate(gw)
                    .and_then(Result::ok),
                listeners,
                sets,
            })
        }
    }

    fn listener_set_allowed(&self, gw: &Gateway, ls_ns: &str) -> Result<(), Fail> {
        let none = RouteNamespaces {
            from: Some("None".into()),
            selector: None,
        };
        let from = gw
            .spec
            .allowed_listeners
            .as_ref()
            .and_then(|a| a.namespaces.as_ref())
            .unwrap_or(&none);
        match from.from.as_deref().unwrap_or("None") {
            "None" => Err((
                Reason::NotAllowed,
                format!(
                    "Gateway {}/{} does not allow ListenerSets (allowedListeners)",
                    gw.metadata.ns(),
                    gw.metadata.name
                ),
            )),
            _ => self
                .namespace_allowed(from, gw.metadata.ns(), ls_ns)
                .map_err(|m| {
                    (
                        Reason::NotAllowed,
                        format!(
                            "not allowed by Gateway {}/{}: {m}",
                            gw.metadata.ns(),
                            gw.metadata.name
                        ),
                    )
                }),
        }
    }

    fn listener(&self, l: &Listener, owner: &ObjectKey, owner_ns: &str) -> Lst {
        let protocol = ListenerProtocol::parse(&l.protocol);
        let tls_mode = l
            .tls
            .as_ref()
            .and_then(|t| t.mode.as_deref())
            .unwrap_or("Terminate");
        let native: Vec<&str> = match protocol {
            Some(ListenerProtocol::Http | ListenerProtocol::Https) => {
                vec!["HTTPRoute", "GRPCRoute"]
            }
            Some(ListenerProtocol::Tls) => vec!["TLSRoute"],
            Some(ListenerProtocol::Tcp) => vec!["TCPRoute"],
            Some(ListenerProtocol::Udp) => vec!["UDPRoute"],
            None => vec![],
        };
        let accepted = match protocol {
            Some(_) => Ok(()),
            None => Err((
                Reason::UnsupportedProtocol,
                format!("protocol {} is not supported", l.protocol),
            )),
        };
        let mut resolved = Ok(());
        let kinds = l
            .allowed_routes
            .as_ref()
            .map(|a| a.kinds.as_slice())
            .unwrap_or(&[]);
        let supported: Vec<RouteGroupKind> = if accepted.is_err() {
            vec![]
        } else if kinds.is_empty() {
            native
                .iter()
                .map(|k| RouteGroupKind {
                    group: Some(GATEWAY_GROUP.into()),
                    kind: k.to_string(),
                })
                .collect()
        } else {
            let mut out = Vec::new();
            for k in kinds {
                let g = group_of(&k.group, GATEWAY_GROUP);
                if g == GATEWAY_GROUP && native.contains(&k.kind.as_str()) {
                    let gk = RouteGroupKind {
                        group: Some(g),
                        kind: k.kind.clone(),
                    };
                    if !out.contains(&gk) {
                        out.push(gk);
                    }
                } else if resolved.is_ok() {
                    resolved = Err((
                        Reason::InvalidRouteKinds,
                        format!(
                            "route kind {g}/{} is not supported on a {} listener",
                            k.kind, l.protocol
                        ),
                    ));
                }
            }
            out
        };
        let mut certs = Vec::new();
        let terminates = matches!(protocol, Some(ListenerProtocol::Https))
            || (matches!(protocol, Some(ListenerProtocol::Tls)) && tls_mode == "Terminate");
        if terminates && let Some(tls) = &l.tls {
            for c in &tls.certificate_refs {
                match self.certificate(c, owner, owner_ns) {
                    Ok(k) => certs.push(k),
                    Err(f) => {
                        if resolved.is_ok()
                            || matches!(resolved, Err((Reason::InvalidRouteKinds, _)))
                        {
                            resolved = Err(f);
                        }
                    }
                }
            }
        }
        Lst {
            spec: l.clone(),
            owner: owner.clone(),
            owner_ns: owner_ns.to_string(),
            protocol,
            supported,
            accepted,
            resolved,
            conflict: None,
            certs,
            frontend: None,
            attached: BTreeMap::new(),
        }
    }

    fn certificate(
        &self,
        c: &SecretObjectReference,
        owner: &ObjectKey,
        owner_ns: &str,
    ) -> Result<ObjectKey, Fail> {
        let group = c.group.as_deref().unwrap_or("");
        let kind = c.kind.as_deref().unwrap_or("Secret");
        if !group.is_empty() || kind != "Secret" {
            return Err((
                Reason::InvalidCertificateRef,
                format!(
                    "certificateRef {group}/{kind} {} is not a core Secret",
                    c.name
                ),
            ));
        }
        let ns = c.namespace.as_deref().unwrap_or(owner_ns);
        if !self.permitted(owner.kind.as_str(), owner_ns, "", "Secret", ns, &c.name) {
            return Err((
                Reason::RefNotPermitted,
                format!(
                    "Secret {ns}/{} is in another namespace and no ReferenceGrant allows it",
                    c.name
                ),
            ));
        }
        let key = ObjectKey::new(Kind::Secret, ns, c.name.clone());
        let Some(Object::Secret(s)) = self.snap.get(&key) else {
            return Err((
                Reason::InvalidCertificateRef,
                format!("Secret {ns}/{} does not exist", c.name),
            ));
        };
        let crt = secret_value(s, "tls.crt").unwrap_or_default();
        let keyb = secret_value(s, "tls.key").unwrap_or_default();
        let has = |b: &[u8], needle: &str| String::from_utf8_lossy(b).contains(needle);
        if !has(&crt, "-----BEGIN CERTIFICATE-----") || !has(&keyb, "PRIVATE KEY-----") {
            return Err((
                Reason::InvalidCertificateRef,
                format!(
                    "Secret {ns}/{} does not hold a PEM certificate and private key in tls.crt and tls.key",
                    c.name
                ),
            ));
        }
        Ok(key)
    }

    // ---------------------------------------------------------------- routes

    /// Computes one route against the current Gateways.
    fn route(&self, o: &Object, gws: &BTreeMap<ObjectKey, Gw>) -> RouteState {
        let mut state = RouteState::default();
        let key = o.key();
        let meta = o.meta();
        let route_ns = meta.ns();
        let (parent_refs, hostnames, prev): (
            &[ParentReference],
            &[String],
            Option<&RouteStatusRef>,
        ) = match o {
            Object::HttpRoute(r) => (&r.spec.parent_refs, &r.spec.hostnames, r.status.as_ref()),
            Object::GrpcRoute(r) => (&r.spec.parent_refs, &r.spec.hostnames, r.status.as_ref()),
            Object::TlsRoute(r) | Object::TcpRoute(r) | Object::UdpRoute(r) => {
                (&r.spec.parent_refs, &r.spec.hostnames, r.status.as_ref())
            }
            _ => return state,
        };
        route_refs(
            o,
            &self.opts.extensions,
            &mut state.services,
            &mut state.grant_namespaces,
        );
        let (rules, resolved, invalid_rules) = self.resolve_rules(o);
        let rule_count = match o {
            Object::HttpRoute(r) => r.spec.rules.len(),
            Object::GrpcRoute(r) => r.spec.rules.len(),
            _ => usize::MAX,
        };
        // Spec (RouteConditionPartiallyInvalid): "a Route contains a
        // combination of both valid and invalid rules"; invalid rules are
        // dropped. When every rule is invalid the route is not Accepted
        // (reason UnsupportedValue).
        let invalid_summary = (!invalid_rules.is_empty()).then(|| {
            invalid_rules
                .iter()
                .map(|(i, m)| format!("rule {i}: {m}"))
                .collect::<Vec<_>>()
                .join("; ")
        });
        let all_invalid = invalid_rules.len() == rule_count;
        let mut ours: Vec<RouteParentStatus> = Vec::new();
        for pr in parent_refs {
            let group = group_of(&pr.group, GATEWAY_GROUP);
            let pkind = pr.kind.as_deref().unwrap_or("Gateway");
            let pns = pr.namespace.as_deref().unwrap_or(route_ns);
            if group != GATEWAY_GROUP || !(pkind == "Gateway" || pkind == "ListenerSet") {
                continue;
            }
            // Find the Gateway this parentRef leads to, and the listeners it may use.
            let (gw_key, set_key) = if pkind == "Gateway" {
                let gk = ObjectKey::new(Kind::Gateway, pns, pr.name.clone());
                state.parents.insert(gk.clone());
                (gk, None)
            } else {
                let lk = ObjectKey::new(Kind::ListenerSet, pns, pr.name.clone());
                state.parents.insert(lk.clone());
                let Some(Object::ListenerSet(ls)) = self.snap.get(&lk) else {
                    continue;
                };
                let p = &ls.spec.parent_ref;
                let gns = p.namespace.as_deref().unwrap_or(ls.metadata.ns());
                (ObjectKey::new(Kind::Gateway, gns, p.name.clone()), Some(lk))
            };
            let Some(gw) = gws.get(&gw_key) else { continue };
            let status_ref = ParentReference {
                group: Some(group.clone()),
                kind: Some(pkind.to_string()),
                namespace: Some(pns.to_string()),
                name: pr.name.clone(),
                section_name: pr.section_name.clone(),
                port: pr.port,
            };
            let owner = set_key.as_ref().unwrap_or(&gw_key);
            let set_ok = match &set_key {
                Some(sk) => gw
                    .sets
                    .iter()
                    .find(|s| &s.key == sk)
                    .map(|s| s.allowed.clone()),
                None => Some(Ok(())),
            };
            let verdict: Result<Vec<(usize, Vec<String>)>, Fail> = (|| {
                if all_invalid && let Some(m) = &invalid_summary {
                    return Err((
                        Reason::UnsupportedValue,
                        format!("every rule is invalid: {m}"),
                    ));
                }
                if let Some(Err((_, m))) = &set_ok {
                    return Err((
                        Reason::NoMatchingParent,
                        format!("ListenerSet is not accepted: {m}"),
                    ));
                }
                let candidates: Vec<usize> = gw
                    .listeners
                    .iter()
                    .enumerate()
                    .filter(|(_, l)| &l.owner == owner)
                    .filter(|(_, l)| {
                        pr.section_name
                            .as_deref()
                            .is_none_or(|s| s.is_empty() || s == l.spec.name)
                    })
                    .filter(|(_, l)| pr.port.is_none_or(|p| p == l.spec.port))
                    .map(|(i, _)| i)
                    .collect();
                if candidates.is_empty() {
                    return Err((
                        Reason::NoMatchingParent,
                        "no listener matches the parentRef's sectionName and port".to_string(),
                    ));
                }
                let usable: Vec<usize> = candidates
                    .iter()
                    .copied()
                    .filter(|&i| gw.listeners[i].usable())
                    .collect();
                if usable.is_empty() {
                    return Err((
                        Reason::NoMatchingParent,
                        "every listener the parentRef names is invalid or conflicted".to_string(),
                    ));
                }
                let mut why = Vec::new();
                let admitted: Vec<usize> = usable
                    .iter()
                    .copied()
                    .filter(|&i| {
                        let l = &gw.listeners[i];
                        if !l.supported.iter().any(|k| k.kind == key.kind.as_str()) {
                            why.push(format!(
                                "listener {} does not allow kind {}",
                                l.spec.name, key.kind
                            ));
                            return false;
                        }
                        let default_ns = RouteNamespaces::default();
                        let from = l
                            .spec
                            .allowed_routes
                            .as_ref()
                            .and_then(|a| a.namespaces.as_ref())
                            .unwrap_or(&default_ns);
                        match namespace_allowed_free(self.ns_labels, from, &l.owner_ns, route_ns) {
                            Ok(()) => true,
                            Err(m) => {
                                why.push(m);
                                false
                            }
                        }
                    })
                    .collect();
                if admitted.is_empty() {
                    why.dedup();
                    return Err((
                        Reason::NotAllowedByListeners,
                        format!("not allowed: {}", why.join("; ")),
                    ));
                }
                let mut matched = Vec::new();
                for i in admitted {
                    let l = &gw.listeners[i];
                    let effective: Option<Vec<String>> = match (
                        &l.spec.hostname,
                        hostnames.is_empty()
                            || key.kind == Kind::TCPRoute
                            || key.kind == Kind::UDPRoute,
                    ) {
                        (_, true) => Some(l.spec.hostname.iter().cloned().collect()),
                        (None, false) => Some(hostnames.to_vec()),
                        (Some(lh), false) => {
                            let hs: Vec<String> = hostnames
                                .iter()
                                .filter_map(|h| hostname::intersect(lh, h).map(str::to_string))
                                .collect();
                            (!hs.is_empty()).then_some(hs)
                        }
                    };
                    if let Some(hs) = effective {
                        matched.push((i, hs));
                    }
                }
                if matched.is_empty() {
                    return Err((
                        Reason::NoMatchingListenerHostname,
                        "no listener hostname intersects the route's hostnames".to_string(),
                    ));
                }
                Ok(matched)
            })();
            let mut conds = Vec::new();
            match &verdict {
                Ok(matched) => {
                    conds.push(cond(T::Accepted, true, Reason::Accepted, "attached"));
                    for (i, hs) in matched {
                        let existing = state
                            .attachments
                            .iter_mut()
                            .find(|(g, li, _)| *g == gw_key && li == i);
                        match existing {
                            Some((_, _, ar)) => {
                                for h in hs {
                                    if !ar.hostnames.contains(h) {
                                        ar.hostnames.push(h.clone());
                                    }
                                }
                            }
                            None => state.attachments.push((
                                gw_key.clone(),
                                *i,
                                AttachedRoute {
                                    key: key.clone(),
                                    creation_timestamp: meta.creation_timestamp.clone(),
                                    hostnames: hs.clone(),
                                    rules: rules.clone(),
                                },
                            )),
                        }
                    }
                }
                Err((reason, msg)) => {
                    conds.push(cond(T::Accepted, false, *reason, msg.clone()));
                    let parent_label = describe_parent(pns, pr);
                    state.refusals.push(Refusal {
                        route: key.clone(),
                        parent: parent_label.clone(),
                        reason: reason.as_str().to_string(),
                        message: format!("{}/{} → {parent_label}: {msg}", route_ns, meta.name),
                    });
                }
            }
            conds.push(match &resolved {
                Ok(()) => cond(
                    T::ResolvedRefs,
                    true,
                    Reason::ResolvedRefs,
                    "all references resolved",
                ),
                Err((r, m)) => cond(T::ResolvedRefs, false, *r, m.clone()),
            });
            if let Some(m) = &invalid_summary
                && !all_invalid
            {
                conds.push(cond(
                    T::PartiallyInvalid,
                    true,
                    Reason::UnsupportedValue,
                    format!("invalid rules are dropped: {m}"),
                ));
            }
            let prev_conds = prev
                .and_then(|s| {
                    s.parents.iter().find(|p| {
                        p.controller_name == self.opts.controller_name
                            && same_parent(&p.parent_ref, &status_ref, route_ns)
                    })
                })
                .map(|p| p.conditions.as_slice())
                .unwrap_or(&[]);
            let conditions = stamp(conds, prev_conds, meta, &self.opts.now);
            ours.push(RouteParentStatus {
                parent_ref: status_ref,
                controller_name: self.opts.controller_name.clone(),
                conditions,
            });
        }
        // Keep other controllers' entries untouched and in place; ours follow.
        let mut parents: Vec<RouteParentStatus> = prev
            .map(|s| {
                s.parents
                    .iter()
                    .filter(|p| p.controller_name != self.opts.controller_name)
                    .cloned()
                    .collect()
            })
            .unwrap_or_default();
        let had_ours = prev.is_some_and(|s| {
            s.parents
                .iter()
                .any(|p| p.controller_name == self.opts.controller_name)
        });
        if !ours.is_empty() || had_ours {
            parents.extend(ours);
            state.status = Some(RouteStatus { parents });
        }
        state
    }

    /// Resolves every backendRef of a route; returns its rules and the first
    /// failing reference.
    fn resolve_rules(&self, o: &Object) -> (RouteRules, Result<(), Fail>, Vec<(usize, String)>) {
        let mut invalid: Vec<(usize, String)> = Vec::new();
        let meta = o.meta();
        let kind = o.kind();
        let mut first: Result<(), Fail> = Ok(());
        let mut note = |r: &ResolvedBackend| {
            if let (Ok(()), Err(e)) = (&first, &r.target) {
                first = Err((e.reason, e.message.clone()));
            }
        };
        let backends =
            |refs: &[BackendRef], note: &mut dyn FnMut(&ResolvedBackend)| -> Vec<ResolvedBackend> {
                refs.iter()
                    .map(|b| {
                        let r = self.backend(b, kind, meta.ns());
                        note(&r);
                        r
                    })
                    .collect()
            };
        let rules = match o {
            Object::HttpRoute(r) => {
                let mut out = Vec::new();
                for (i, rule) in r.spec.rules.iter().enumerate() {
                    let mirrors = self.mirrors(&rule.filters, kind, meta.ns(), &mut note);
                    let extension_refs = self.extension_refs(&rule.filters, meta.ns(), &mut note);
                    let mut bs = backends(&rule.backend_refs, &mut note);
                    for b in &mut bs {
                        b.extension_refs = self.extension_refs(&b.filters, meta.ns(), &mut note);
                    }
                    if let Err(m) = http_rule_regexes(rule) {
                        invalid.push((i, m));
                        continue;
                    }
                    out.push(HttpRule {
                        index: i,
                        name: rule.name.clone(),
                        matches: rule.matches.clone(),
                        filters: rule.filters.clone(),
                        extension_refs,
                        mirrors,
                        backends: bs,
                        timeouts: rule.timeouts.clone(),
                        retry: rule.retry.clone(),
                    });
                }
                RouteRules::Http(Arc::new(out))
            }
            Object::GrpcRoute(r) => {
                let mut out = Vec::new();
                for (i, rule) in r.spec.rules.iter().enumerate() {
                    let mirrors = self.mirrors(&rule.filters, kind, meta.ns(), &mut note);
                    let extension_refs = self.extension_refs(&rule.filters, meta.ns(), &mut note);
                    let mut bs = backends(&rule.backend_refs, &mut note);
                    for b in &mut bs {
                        b.extension_refs = self.extension_refs(&b.filters, meta.ns(), &mut note);
                    }
                    if let Err(m) = grpc_rule_regexes(rule) {
                        invalid.push((i, m));
                        continue;
                    }
                    out.push(GrpcRule {
                        index: i,
                        name: rule.name.clone(),
                        matches: rule.matches.clone(),
                        filters: rule.filters.clone(),
                        extension_refs,
                        mirrors,
                        backends: bs,
                    });
                }
                RouteRules::Grpc(Arc::new(out))
            }
            Object::TlsRoute(r) | Object::TcpRoute(r) | Object::UdpRoute(r) => {
                let out = r
                    .spec
                    .rules
                    .iter()
                    .enumerate()
                    .map(|(i, rule)| L4Rule {
                        index: i,
                        name: rule.name.clone(),
                        backends: backends(&rule.backend_refs, &mut note),
                    })
                    .collect();
                RouteRules::L4(Arc::new(out))
            }
            _ => RouteRules::L4(Arc::new(Vec::new())),
        };
        (rules, first, invalid)
    }

    /// Resolves the `ExtensionRef` filters of one list: the objects they
    /// name, in filter order, each of a registered kind, present in the
    /// route's namespace and passing its kind's check. Each that fails is
    /// noted (and its requests get 500 from the table): spec
    /// (RouteConditionReason): `InvalidKind` for "an unknown or
    /// unsupported Group and/or Kind", `BackendNotFound` for "a resource
    /// that does not exist"; an object its extension refuses is
    /// `InvalidParameters`.
    fn extension_refs(
        &self,
        filters: &[HttpRouteFilter],
        ns: &str,
        note: &mut dyn FnMut(&ResolvedBackend),
    ) -> Vec<Arc<ExtensionObject>> {
        let mut out = Vec::new();
        for f in filters {
            let Some(x) = &f.extension_ref else { continue };
            let fail = |reason: Reason, message: String| ResolvedBackend {
                weight: 0,
                target: Err(BackendError { reason, message }),
                filters: vec![],
                extension_refs: vec![],
            };
            let Some(filter) = self.opts.extensions.filter(&x.group, &x.kind) else {
                note(&fail(
                    Reason::InvalidKind,
                    format!(
                        "ExtensionRef filter {}/{} {}: no extension of this controller implements that kind; matching requests get 500",
                        x.group, x.kind, x.name
                    ),
                ));
                continue;
            };
            let key = ObjectKey::new(Kind::Extension(filter.kind()), ns, x.name.clone());
            let Some(Object::Extension(obj)) = self.snap.get(&key) else {
                note(&fail(
                    Reason::BackendNotFound,
                    format!(
                        "ExtensionRef filter {}/{} {ns}/{} does not exist; matching requests get 500",
                        x.group, x.kind, x.name
                    ),
                ));
                continue;
            };
            if let Err(m) = filter.check(obj) {
                note(&fail(
                    Reason::InvalidParameters,
                    format!(
                        "ExtensionRef filter {}/{} {ns}/{}: {m}; matching requests get 500",
                        x.group, x.kind, x.name
                    ),
                ));
                continue;
            }
            out.push(Arc::new(obj.clone()));
        }
        out
    }

    fn mirrors(
        &self,
        filters: &[HttpRouteFilter],
        kind: Kind,
        ns: &str,
        note: &mut dyn FnMut(&ResolvedBackend),
    ) -> Vec<Mirror> {
        let mut out = Vec::new();
        for f in filters {
            let Some(m) = &f.request_mirror else { continue };
            let r = self.backend(&m.backend_ref, kind, ns);
            note(&r);
            if let Ok(target) = r.target {
                let fraction = match (&m.percent, &m.fraction) {
                    (Some(p), _) => f64::from(*p) / 100.0,
                    (None, Some(fr)) => {
                        f64::from(fr.numerator) / f64::from(fr.denominator.unwrap_or(100).max(1))
                    }
                    (None, None) => 1.0,
                };
                out.push(Mirror { target, fraction });
            }
        }
        out
    }

    fn backend(&self, b: &BackendRef, from_kind: Kind, route_ns: &str) -> ResolvedBackend {
        let group = b.group.as_deref().unwrap_or("");
        let kind = b.kind.as_deref().unwrap_or("Service");
        let ns = b.namespace.as_deref().unwrap_or(route_ns);
        let weight = u32::try_from(b.weight.unwrap_or(1)).unwrap_or(0);
        let err = |reason: Reason, message: String| ResolvedBackend {
            weight,
            target: Err(BackendError { reason, message }),
            filters: b.filters.clone(),
            extension_refs: Vec::new(),
        };
        if !group.is_empty() || kind != "Service" {
            return err(
                Reason::InvalidKind,
                format!("backendRef {group}/{kind} {} is not a Service", b.name),
            );
        }
        if !self.permitted(from_kind.as_str(), route_ns, "", "Service", ns, &b.name) {
            return err(
                Reason::RefNotPermitted,
                format!(
                    "Service {ns}/{} is in another namespace and no ReferenceGrant allows it",
                    b.name
                ),
            );
        }
        let Some(Object::Service(svc)) =
            self.snap
                .get(&ObjectKey::new(Kind::Service, ns, b.name.clone()))
        else {
            return err(
                Reason::BackendNotFound,
                format!("Service {ns}/{} does not exist", b.name),
            );
        };
        let Some(port) = b.port else {
            return err(
                Reason::BackendNotFound,
                format!("backendRef to Service {ns}/{} has no port", b.name),
            );
        };
        let sp = svc.spec.ports.iter().find(|p| p.port == port);
        let Some(sp) = sp else {
            return err(
                Reason::BackendNotFound,
                format!("Service {ns}/{} has no port {port}", b.name),
            );
        };
        if let Some(ap) = &sp.app_protocol
            && !SUPPORTED_APP_PROTOCOLS
                .iter()
                .any(|p| p.eq_ignore_ascii_case(ap))
        {
            return err(
                Reason::UnsupportedProtocolBackend,
                format!(
                    "Service {ns}/{} port {port} has appProtocol {ap}, which gwcore does not speak",
                    b.name
                ),
            );
        }
        ResolvedBackend {
            weight,
            target: Ok(BackendTarget {
                service: ObjectKey::new(Kind::Service, ns, b.name.clone()),
                port: u16::try_from(port).unwrap_or(0),
                app_protocol: sp.app_protocol.clone(),
                tls: self.backend_tls(ns, &b.name, sp.name.as_deref()),
            }),
            filters: b.filters.clone(),
            extension_refs: Vec::new(),
        }
    }

    /// The BackendTLSPolicy that applies to a Service port.
    ///
    /// Spec (BackendTLSPolicy): the policy lives in the Service's namespace
    /// and targets the Service, or one port of it by `sectionName`; a policy
    /// that names the port is more specific than one that names only the
    /// Service, and wins. Among policies with the same target the oldest
    /// wins (then by name), the others are `Conflicted` and not applied. An
    /// Accepted policy whose CA references do not resolve still applies: the
    /// backend is then not reached (`BackendTls::invalid`), never reached in
    /// plain text.
    fn backend_tls(
        &self,
        ns: &str,
        service: &str,
        port_name: Option<&str>,
    ) -> Option<Arc<BackendTls>> {
        let mut best: Option<(bool, (bool, &str), &str, &crate::model::BackendTlsPolicy)> = None;
        for o in self.snap.in_namespace(Kind::BackendTLSPolicy, ns) {
            let Object::BackendTlsPolicy(p) = o else {
                continue;
            };
            let specific = p
                .spec
                .target_refs
                .iter()
                .filter(|t| t.group.is_empty() && t.kind == "Service" && t.name == service)
                .filter_map(|t| match (&t.section_name, port_name) {
                    (None, _) => Some(false),
                    (Some(s), Some(n)) if s == n => Some(true),
                    _ => None,
                })
                .max();
            let Some(specific) = specific else { continue };
            if self.policy_conflict(p).is_some() {
                continue;
            }
            // More specific first, then older, then by name.
            let better = match &best {
                None => true,
                Some((bs, bt, bn, _)) => {
                    (
                        std::cmp::Reverse(specific),
                        ts_key(&p.metadata),
                        p.metadata.name.as_str(),
                    ) < (std::cmp::Reverse(*bs), *bt, *bn)
                }
            };
            if better {
                best = Some((specific, ts_key(&p.metadata), p.metadata.name.as_str(), p));
            }
        }
        let (_, _, _, p) = best?;
        let v = &p.spec.validation;
        let (ca_certificates, invalid) = match self.policy_ca_bundles(p) {
            Ok(keys) => (keys, None),
            Err((_, m)) => (Vec::new(), Some(m)),
        };
        let subject_alt_names = v
            .subject_alt_names
            .iter()
            .filter_map(|san| match (san.type_.as_str(), &san.hostname, &san.uri) {
                ("Hostname", Some(h), _) => Some(SubjectAltName::Hostname(h.clone())),
                ("URI", _, Some(u)) => Some(SubjectAltName::Uri(u.clone())),
                _ => None,
            })
            .collect();
        Some(Arc::new(BackendTls {
            policy: ObjectKey::new(Kind::BackendTLSPolicy, ns, p.metadata.name.clone()),
            hostname: v.hostname.clone(),
            ca_certificates,
            system_roots: v.well_known_ca_certificates.as_deref() == Some("System"),
            subject_alt_names,
            invalid,
        }))
    }

    // ---------------------------------------------------------------- policies

    /// BackendTLSPolicy statuses: one ancestor entry per Gateway of ours
    /// that routes to a targeted Service.
    fn policies(&self, gws: &BTreeMap<ObjectKey, Gw>) -> BTreeMap<ObjectKey, ObjectStatus> {
        let mut out = BTreeMap::new();
        for o in self.snap.of_kind(Kind::BackendTLSPolicy) {
            let Object::BackendTlsPolicy(p) = o else {
                continue;
            };
            let ns = p.metadata.ns();
            // Ancestors: our Gateways with a route whose backend is a target.
            let targets: BTreeSet<(String, String)> = p
                .spec
                .target_refs
                .iter()
                .filter(|t| t.group.is_empty() && t.kind == "Service")
                .map(|t| (ns.to_string(), t.name.clone()))
                .collect();
            let mut ancestors: Vec<&ObjectKey> = Vec::new();
            for (gk, gw) in gws {
                let uses = gw.listeners.iter().any(|l| {
                    l.attached.values().any(|r| {
                        route_backends(&r.rules).any(|t| {
                            targets.contains(&(t.service.namespace.clone(), t.service.name.clone()))
                        })
                    })
                });
                if uses {
                    ancestors.push(gk);
                }
            }
            if ancestors.is_empty() {
                continue;
            }
            let resolved = self.policy_ca_bundles(p).map(|_| ());
            let conflicted = self.policy_conflict(p);
            let mut entries: Vec<PolicyAncestorStatus> = p
                .status
                .as_ref()
                .map(|s| {
                    s.ancestors
                        .iter()
                        .filter(|a| a.controller_name != self.opts.controller_name)
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            for gk in ancestors {
                let aref = ParentReference {
                    group: Some(GATEWAY_GROUP.into()),
                    kind: Some("Gateway".into()),
                    namespace: Some(gk.namespace.clone()),
                    name: gk.name.clone(),
                    section_name: None,
                    port: None,
                };
                let conds = match &resolved {
                    Ok(()) => vec![
                        cond(T::Accepted, true, Reason::Accepted, "policy accepted"),
                        cond(
                            T::ResolvedRefs,
                            true,
                            Reason::ResolvedRefs,
                            "all references resolved",
                        ),
                    ],
                    Err((r, m)) => vec![
                        cond(T::Accepted, false, Reason::NoValidCaCertificate, m.clone()),
                        cond(T::ResolvedRefs, false, *r, m.clone()),
                    ],
                };
                let conds = match &conflicted {
                    Some(m) => vec![
                        cond(T::Accepted, false, Reason::Conflicted, m.clone()),
                        conds[1].clone(),
                    ],
                    None => conds,
                };
                let prev = p
                    .status
                    .as_ref()
                    .and_then(|s| {
                        s.ancestors.iter().find(|a| {
                            a.controller_name == self.opts.controller_name
                                && a.ancestor_ref.name == aref.name
                                && a.ancestor_ref.namespace == aref.namespace
                        })
                    })
                    .map(|a| a.conditions.as_slice())
                    .unwrap_or(&[]);
                let conditions = stamp(conds, prev, &p.metadata, &self.opts.now);
                entries.push(PolicyAncestorStatus {
                    ancestor_ref: aref,
                    controller_name: self.opts.controller_name.clone(),
                    conditions,
                });
            }
            out.insert(
                o.key(),
                ObjectStatus::Policy(PolicyStatus { ancestors: entries }),
            );
        }
        out
    }

    /// A BackendTLSPolicy's CA bundles, resolved, or the first that fails.
    fn policy_ca_bundles(
        &self,
        p: &crate::model::BackendTlsPolicy,
    ) -> Result<Vec<ObjectKey>, Fail> {
        let ns = p.metadata.ns();
        p.spec
            .validation
            .ca_certificate_refs
            .iter()
            .map(|c| {
                let r = SecretObjectReference {
                    group: Some(c.group.clone()),
                    kind: Some(c.kind.clone()),
                    name: c.name.clone(),
                    namespace: None,
                };
                self.ca_bundle(&r, "BackendTLSPolicy", ns, Reason::InvalidKind)
            })
            .collect()
    }

    /// Spec (BackendTLSPolicy, GEP-713): when policies target the same
    /// Service (and sectionName), the oldest wins, then the first by
    /// namespace/name; the others are `Accepted=False` with reason
    /// `Conflicted`.
    fn policy_conflict(&self, p: &crate::model::BackendTlsPolicy) -> Option<String> {
        let mine = &p.metadata;
        for o in self.snap.of_kind(Kind::BackendTLSPolicy) {
            let Object::BackendTlsPolicy(q) = o else {
                continue;
            };
            let theirs = &q.metadata;
            if theirs.ns() != mine.ns() || theirs.name == mine.name {
                continue;
            }
            let earlier =
                (ts_key(theirs), theirs.name.as_str()) < (ts_key(mine), mine.name.as_str());
            if !earlier {
                continue;
            }
            if let Some(t) = p
                .spec
                .target_refs
                .iter()
                .find(|t| q.spec.target_refs.contains(t))
            {
                return Some(format!(
                    "BackendTLSPolicy {}/{} already targets {} {}{}",
                    theirs.ns(),
                    theirs.name,
                    t.kind,
                    t.name,
                    t.section_name
                        .as_deref()
                        .map(|s| format!(" port {s}"))
                        .unwrap_or_default()
                ));
            }
        }
        None
    }

    /// Resolves a CA bundle reference (a ConfigMap, or a Secret, holding a
    /// PEM `ca.crt`).
    fn ca_bundle(
        &self,
        c: &SecretObjectReference,
        owner_kind: &str,
        owner_ns: &str,
        bad_kind: Reason,
    ) -> Result<ObjectKey, Fail> {
        let group = c.group.as_deref().unwrap_or("");
        let kind = match (group, c.kind.as_deref().unwrap_or("ConfigMap")) {
            ("", "ConfigMap") => Kind::ConfigMap,
            ("", "Secret") => Kind::Secret,
            (g, k) => {
                return Err((
                    bad_kind,
                    format!(
                        "caCertificateRef {g}/{k} {} is not a ConfigMap or Secret",
                        c.name
                    ),
                ));
            }
        };
        let ns = c.namespace.as_deref().unwrap_or(owner_ns);
        if !self.permitted(owner_kind, owner_ns, "", kind.as_str(), ns, &c.name) {
            return Err((
                Reason::RefNotPermitted,
                format!(
                    "{kind} {ns}/{} is in another namespace and no ReferenceGrant allows it",
                    c.name
                ),
            ));
        }
        let key = ObjectKey::new(kind, ns, c.name.clone());
        let data = match self.snap.get(&key) {
            Some(Object::ConfigMap(cm)) => cm.data.get("ca.crt").cloned().unwrap_or_default(),
            Some(Object::Secret(s)) => secret_value(s, "ca.crt")
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default(),
            _ => {
                return Err((
                    Reason::InvalidCaCertificateRef,
                    format!("{kind} {ns}/{} does not exist", c.name),
                ));
            }
        };
        if !data.contains("-----BEGIN CERTIFICATE-----") {
            return Err((
                Reason::InvalidCaCertificateRef,
                format!("{kind} {ns}/{} has no PEM certificate in ca.crt", c.name),
            ));
        }
        Ok(key)
    }

    /// Frontend client-certificate validation of an HTTPS listener: the
    /// `perPort` entry for its port, else the default.
    fn frontend_validation(
        &self,
        gw: &Gateway,
        l: &Listener,
    ) -> Result<Option<FrontendValidation>, Fail> {
        let Some(front) = gw.spec.tls.as_ref().and_then(|t| t.frontend.as_ref()) else {
            return Ok(None);
        };
        let cfg = front
            .per_port
            .iter()
            .find(|p| p.port == l.port)
            .map(|p| &p.tls)
            .or(front.default.as_ref());
        let Some(v) = cfg.and_then(|c| c.validation.as_ref()) else {
            return Ok(None);
        };
        let ca_certificates = v
            .ca_certificate_refs
            .iter()
            .map(|c| {
                self.ca_bundle(
                    c,
                    "Gateway",
                    gw.metadata.ns(),
                    Reason::InvalidCaCertificateKind,
                )
            })
            .collect::<Result<Vec<_>, Fail>>()?;
        Ok(Some(FrontendValidation {
            ca_certificates,
            allow_insecure_fallback: v.mode.as_deref() == Some("AllowInsecureFallback"),
        }))
    }

    /// `spec.tls.backend.clientCertificateRef`, when set.
    fn backend_client_certificate(&self, gw: &Gateway) -> Option<Result<ObjectKey, Fail>> {
        let r = gw
            .spec
            .tls
            .as_ref()?
            .backend
            .as_ref()?
            .client_certificate_ref
            .as_ref()?;
        let key = ObjectKey::new(Kind::Gateway, gw.metadata.ns(), gw.metadata.name.clone());
        Some(
            self.certificate(r, &key, gw.metadata.ns())
                .map_err(|(reason, m)| {
                    let reason = if reason == Reason::RefNotPermitted {
                        reason
                    } else {
                        Reason::InvalidClientCertificateRef
                    };
                    (reason, m)
                }),
        )
    }

    // ---------------------------------------------------------------- output

    fn stamp(
        &self,
        conds: Vec<Condition>,
        prev: &[Condition],
        meta: &ObjectMeta,
    ) -> Vec<Condition> {
        stamp(conds, prev, meta, &self.opts.now)
    }

    fn listener_status(
        &self,
        l: &Lst,
        prev: &[ListenerStatus],
        meta: &ObjectMeta,
    ) -> ListenerStatus {
        let mut conds = Vec::new();
        match (&l.accepted, &l.conflict) {
            (Err((r, m)), _) => conds.push(cond(T::Accepted, false, *r, m.clone())),
            (Ok(()), Some((r, m))) => conds.push(cond(T::Accepted, false, *r, m.clone())),
            (Ok(()), None) => conds.push(cond(
                T::Accepted,
                true,
                Reason::Accepted,
                "listener accepted",
            )),
        }
        conds.push(match &l.conflict {
            Some((r, m)) => cond(T::Conflicted, true, *r, m.clone()),
            None => cond(T::Conflicted, false, Reason::NoConflicts, "no conflicts"),
        });
        conds.push(match &l.resolved {
            Ok(()) => cond(
                T::ResolvedRefs,
                true,
                Reason::ResolvedRefs,
                "all references resolved",
            ),
            Err((r, m)) => cond(T::ResolvedRefs, false, *r, m.clone()),
        });
        conds.push(match (&l.accepted, &l.conflict, &l.resolved) {
            (Ok(()), None, Ok(())) => cond(
                T::Programmed,
                true,
                Reason::Programmed,
                "listener programmed",
            ),
            (_, Some((r, m)), _) => cond(T::Programmed, false, *r, m.clone()),
            _ => cond(
                T::Programmed,
                false,
                Reason::Invalid,
                "listener is not valid",
            ),
        });
        let prev_conds = prev
            .iter()
            .find(|p| p.name == l.spec.name)
            .map(|p| p.conditions.as_slice())
            .unwrap_or(&[]);
        ListenerStatus {
            name: l.spec.name.clone(),
            supported_kinds: l.supported.clone(),
            attached_routes: i32::try_from(l.attached.len()).unwrap_or(i32::MAX),
            conditions: self.stamp(conds, prev_conds, meta),
        }
    }

    /// The statuses of a Gateway and of its ListenerSets.
    fn gateway_statuses(&self, key: &ObjectKey, gw: &Gw) -> Vec<(ObjectKey, ObjectStatus)> {
        let mut out = Vec::new();
        {
            let own: Vec<&Lst> = gw.listeners.iter().filter(|l| &l.owner == key).collect();
            let prev = gw.obj.status.as_ref();
            let prev_listeners = prev.map(|s| s.listeners.as_slice()).unwrap_or(&[]);
            let listeners: Vec<ListenerStatus> = own
                .iter()
                .map(|l| self.listener_status(l, prev_listeners, &gw.obj.metadata))
                .collect();
            let valid = own.iter().filter(|l| l.valid()).count();
            let all_ok = own.iter().all(|l| l.valid());
            let accepted = match &gw.params {
                Err((r, m)) => cond(T::Accepted, false, *r, m.clone()),
                Ok(()) if valid == 0 => cond(
                    T::Accepted,
                    false,
                    Reason::ListenersNotValid,
                    "no listener is valid",
                ),
                Ok(()) if !all_ok => cond(
                    T::Accepted,
                    true,
                    Reason::ListenersNotValid,
                    "some listeners are not valid",
                ),
                Ok(()) => cond(T::Accepted, true, Reason::Accepted, "gateway accepted"),
            };
            let programmed = if accepted.is_true() {
                cond(
                    T::Programmed,
                    true,
                    Reason::Programmed,
                    "gateway programmed",
                )
            } else {
                cond(
                    T::Programmed,
                    false,
                    Reason::Invalid,
                    accepted.message.clone(),
                )
            };
            let mut conds = vec![accepted, programmed];
            conds.push(match self.backend_client_certificate(&gw.obj) {
                Some(Err((r, m))) => cond(T::ResolvedRefs, false, r, m),
                _ => cond(
                    T::ResolvedRefs,
                    true,
                    Reason::ResolvedRefs,
                    "all references resolved",
                ),
            });
            let insecure = gw
                .obj
                .spec
                .tls
                .as_ref()
                .and_then(|t| t.frontend.as_ref())
                .is_some_and(|f| {
                    f.default
                        .iter()
                        .chain(f.per_port.iter().map(|p| &p.tls))
                        .any(|c| {
                            c.validation.as_ref().and_then(|v| v.mode.as_deref())
                                == Some("AllowInsecureFallback")
                        })
                });
            if insecure {
                conds.push(cond(
                    T::InsecureFrontendValidationMode,
                    true,
                    Reason::ConfigurationChanged,
                    "client certificate validation allows insecure fallback",
                ));
            }
            let prev_conds = prev.map(|s| s.conditions.as_slice()).unwrap_or(&[]);
            let conditions = self.stamp(conds, prev_conds, &gw.obj.metadata);
            let mut addresses: Vec<GatewayStatusAddress> = gw
                .obj
                .spec
                .addresses
                .iter()
                .filter(|a| !a.value.is_empty())
                .map(|a| GatewayStatusAddress {
                    type_: a.type_.clone().or(Some("IPAddress".into())),
                    value: a.value.clone(),
                })
                .collect();
            if addresses.is_empty() {
                addresses = self.opts.addresses.clone();
            }
            // Spec: attachedListenerSets counts the ListenerSets that are Accepted.
            let accepted_sets = gw
                .sets
                .iter()
                .filter(|s| {
                    s.allowed.is_ok() && gw.listeners.iter().any(|l| l.owner == s.key && l.valid())
                })
                .count();
            let attached_listener_sets = (gw.obj.spec.allowed_listeners.is_some()
                || !gw.sets.is_empty())
            .then(|| i32::try_from(accepted_sets).unwrap_or(i32::MAX));
            out.push((
                key.clone(),
                ObjectStatus::Gateway(GatewayStatus {
                    addresses,
                    conditions,
                    listeners,
                    attached_listener_sets,
                }),
            ));
            // ListenerSets.
            for s in &gw.sets {
                let prev = s.obj.status.as_ref();
                let prev_conds = prev.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
                let prev_l = prev.map(|p| p.listeners.as_slice()).unwrap_or(&[]);
                let (conds, listeners) = match &s.allowed {
                    Err((r, m)) => (
                        vec![
                            cond(T::Accepted, false, *r, m.clone()),
                            cond(T::Programmed, false, *r, m.clone()),
                        ],
                        vec![],
                    ),
                    Ok(()) => {
                        let mine: Vec<&Lst> =
                            gw.listeners.iter().filter(|l| l.owner == s.key).collect();
                        let valid = mine.iter().filter(|l| l.valid()).count();
                        let all_ok = mine.iter().all(|l| l.valid());
                        let conds = if valid == 0 {
                            vec![
                                cond(
                                    T::Accepted,
                                    false,
                                    Reason::ListenersNotValid,
                                    "no listener is valid",
                                ),
                                cond(
                                    T::Programmed,
                                    false,
                                    Reason::ListenersNotValid,
                                    "no listener is valid",
                                ),
                            ]
                        } else {
                            vec![
                                if all_ok {
                                    cond(
                                        T::Accepted,
                                        true,
                                        Reason::Accepted,
                                        "listener set accepted",
                                    )
                                } else {
                                    cond(
                                        T::Accepted,
                                        true,
                                        Reason::ListenersNotValid,
                                        "some listeners are not valid",
                                    )
                                },
                                cond(
                                    T::Programmed,
                                    true,
                                    Reason::Programmed,
                                    "listener set programmed",
                                ),
                            ]
                        };
                        (
                            conds,
                            mine.iter()
                                .map(|l| self.listener_status(l, prev_l, &s.obj.metadata))
                                .collect(),
                        )
                    }
                };
                let conditions = self.stamp(conds, prev_conds, &s.obj.metadata);
                out.push((
                    s.key.clone(),
                    ObjectStatus::ListenerSet(ListenerSetStatus {
                        conditions,
                        listeners,
                    }),
                ));
            }
        }
        out
    }
}

/// The routing input of a Gateway: usable listeners only, routes by key.
fn gateway_routing(key: &ObjectKey, gw: &Gw) -> GatewayRouting {
    let listeners = gw
        .listeners
        .iter()
        .filter(|l| l.usable())
        .filter_map(|l| {
            let protocol = l.protocol?;
            let routes: Vec<Arc<AttachedRoute>> = l.attached.values().cloned().collect();
            Some(ListenerRouting {
                name: l.spec.name.clone(),
                source: l.owner.clone(),
                port: u16::try_from(l.spec.port).unwrap_or(0),
                protocol,
                hostname: l.spec.hostname.clone(),
                tls_mode: l.spec.tls.as_ref().map(|t| {
                    if t.mode.as_deref() == Some("Passthrough") {
                        TlsMode::Passthrough
                    } else {
                        TlsMode::Terminate
                    }
                }),
                certificates: l.certs.clone(),
                frontend_validation: l.frontend.clone(),
                routes,
            })
        })
        .collect();
    GatewayRouting {
        gateway: key.clone(),
        listeners,
        backend_client_certificate: gw.backend_client_certificate.clone(),
        policies: BTreeMap::new(),
    }
}

type RouteStatusRef = RouteStatus;

/// Checks that every regular expression of an HTTPRoute rule compiles
/// (anchored, size-limited, as the routing table compiles it).
fn http_rule_regexes(rule: &crate::model::HttpRouteRule) -> Result<(), String> {
    for m in &rule.matches {
        if let Some(p) = &m.path
            && p.type_.as_deref() == Some("RegularExpression")
        {
            regex_ok("path", p.value.as_deref().unwrap_or(""))?;
        }
        for (what, list) in [("header", &m.headers), ("query parameter", &m.query_params)] {
            for h in list
                .iter()
                .filter(|h| h.type_.as_deref() == Some("RegularExpression"))
            {
                regex_ok(&format!("{what} {}", h.name), &h.value)?;
            }
        }
    }
    Ok(())
}

/// Checks the regular expressions of a GRPCRoute rule.
fn grpc_rule_regexes(rule: &crate::model::GrpcRouteRule) -> Result<(), String> {
    for m in &rule.matches {
        if let Some(mm) = &m.method
            && mm.type_.as_deref() == Some("RegularExpression")
        {
            for v in [&mm.service, &mm.method].into_iter().flatten() {
                regex_ok("method", v)?;
            }
        }
        for h in m
            .headers
            .iter()
            .filter(|h| h.type_.as_deref() == Some("RegularExpression"))
        {
            regex_ok(&format!("header {}", h.name), &h.value)?;
        }
    }
    Ok(())
}

fn regex_ok(what: &str, pattern: &str) -> Result<(), String> {
    crate::table::compile_regex(pattern)
        .map(|_| ())
        .map_err(|e| format!("{what} regular expression {pattern:?} is not supported: {e}"))
}

/// The Services a route refers to (backendRefs, backend filters' and rule
/// filters' mirrors), and the namespaces of its cross-namespace references.
fn route_refs(
    o: &Object,
    ext: &Extensions,
    services: &mut BTreeSet<ObjectKey>,
    grant_ns: &mut BTreeSet<String>,
) {
    let ns = o.meta().ns();
    let mut extension_keys = Vec::new();
    let mut add = |b: &BackendRef| {
        let bns = b.namespace.as_deref().unwrap_or(ns);
        services.insert(ObjectKey::new(Kind::Service, bns, b.name.clone()));
        if bns != ns {
            grant_ns.insert(bns.to_string());
        }
    };
    // The objects of ExtensionRef filters (of registered kinds) count
    // with the Services: a change to one recomputes the route.
    let mut filters = |fs: &[HttpRouteFilter], add: &mut dyn FnMut(&BackendRef)| {
        for f in fs {
            if let Some(m) = &f.request_mirror {
                add(&m.backend_ref);
            }
            if let Some(x) = &f.extension_ref
                && let Some(k) = ext.kind(&x.group, &x.kind)
            {
                extension_keys.push(ObjectKey::new(Kind::Extension(k), ns, x.name.clone()));
            }
        }
    };
    match o {
        Object::HttpRoute(r) => {
            for rule in &r.spec.rules {
                filters(&rule.filters, &mut add);
                for b in &rule.backend_refs {
                    add(b);
                    filters(&b.filters, &mut add);
                }
            }
        }
        Object::GrpcRoute(r) => {
            for rule in &r.spec.rules {
                filters(&rule.filters, &mut add);
                for b in &rule.backend_refs {
                    add(b);
                    filters(&b.filters, &mut add);
                }
            }
        }
        Object::TlsRoute(r) | Object::TcpRoute(r) | Object::UdpRoute(r) => {
            for rule in &r.spec.rules {
                for b in &rule.backend_refs {
                    add(b);
                }
            }
        }
        _ => {}
    }
    services.extend(extension_keys);
}

/// A Secret's value: `stringData` first, then base64-decoded `data`.
fn secret_value(s: &crate::model::Secret, key: &str) -> Option<Vec<u8>> {
    if let Some(v) = s.string_data.get(key) {
        return Some(v.as_bytes().to_vec());
    }
    s.data.get(key).and_then(|v| {
        base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .ok()
    })
}

/// `appProtocol`s gwcore can speak to a backend.
const SUPPORTED_APP_PROTOCOLS: [&str; 6] = [
    "http",
    "kubernetes.io/h2c",
    "kubernetes.io/ws",
    "kubernetes.io/wss",
    "https",
    "h2c",
];

fn route_backends(rules: &RouteRules) -> Box<dyn Iterator<Item = &BackendTarget> + '_> {
    fn ok(bs: &[ResolvedBackend]) -> impl Iterator<Item = &BackendTarget> {
        bs.iter().filter_map(|b| b.target.as_ref().ok())
    }
    match rules {
        RouteRules::Http(rs) => Box::new(rs.iter().flat_map(|r| ok(&r.backends))),
        RouteRules::Grpc(rs) => Box::new(rs.iter().flat_map(|r| ok(&r.backends))),
        RouteRules::L4(rs) => Box::new(rs.iter().flat_map(|r| ok(&r.backends))),
    }
}

fn namespace_allowed_free(
    ns_labels: &BTreeMap<String, BTreeMap<String, String>>,
    from: &RouteNamespaces,
    owner_ns: &str,
    ns: &str,
) -> Result<(), String> {
    match from.from.as_deref().unwrap_or("Same") {
        "All" => Ok(()),
        "Same" if owner_ns == ns => Ok(()),
        "Same" => Err(format!("only routes from namespace {owner_ns} may attach")),
        "Selector" => {
            let empty = LabelSelector::default();
            let sel = from.selector.as_ref().unwrap_or(&empty);
            let none = BTreeMap::new();
            let labels = ns_labels.get(ns).unwrap_or(&none);
            if selector::matches(sel, labels) {
                Ok(())
            } else {
                Err(format!(
                    "namespace {ns} lacks label {}",
                    describe_selector(sel)
                ))
            }
        }
        other => Err(format!("allowedRoutes from {other} admits nothing")),
    }
}

fn describe_selector(sel: &LabelSelector) -> String {
    let mut parts: Vec<String> = sel
        .match_labels
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    for e in &sel.match_expressions {
        parts.push(match e.operator.as_str() {
            "Exists" => e.key.clone(),
            "DoesNotExist" => format!("!{}", e.key),
            op => format!("{} {} ({})", e.key, op.to_lowercase(), e.values.join(",")),
        });
    }
    parts.join(",")
}

fn describe_parent(ns: &str, pr: &ParentReference) -> String {
    let mut s = format!("{ns}/{}", pr.name);
    if pr.kind.as_deref() == Some("ListenerSet") {
        s = format!("ListenerSet {s}");
    }
    if let Some(sec) = &pr.section_name {
        s.push('/');
        s.push_str(sec);
    }
    if let Some(p) = pr.port {
        s.push_str(&format!(":{p}"));
    }
    s
}

fn same_parent(a: &ParentReference, b: &ParentReference, route_ns: &str) -> bool {
    group_of(&a.group, GATEWAY_GROUP) == group_of(&b.group, GATEWAY_GROUP)
        && a.kind.as_deref().unwrap_or("Gateway") == b.kind.as_deref().unwrap_or("Gateway")
        && a.namespace.as_deref().unwrap_or(route_ns) == b.namespace.as_deref().unwrap_or(route_ns)
        && a.name == b.name
        && a.section_name == b.section_name
        && a.port == b.port
}

fn ts_key(m: &ObjectMeta) -> (bool, &str) {
    // Objects without a timestamp count as equally old (and older than any
    // stamped one, which sorts them first, then by key).
    (
        m.creation_timestamp.is_some(),
        m.creation_timestamp.as_deref().unwrap_or(""),
    )
}

/// Transport family of a protocol, for conflicts: listeners on one port must
/// share it (UDP lives beside the TCP-based ones).
fn family(p: Option<ListenerProtocol>) -> Option<&'static str> {
    Some(match p? {
        ListenerProtocol::Http => "http",
        ListenerProtocol::Https | ListenerProtocol::Tls => "tls",
        ListenerProtocol::Tcp => "tcp",
        ListenerProtocol::Udp => "udp",
    })
}

/// Marks listeners that clash with an earlier (higher-precedence) one.
fn resolve_conflicts(ls: &mut [Lst]) {
    for i in 0..ls.len() {
        if ls[i].accepted.is_err() {
            continue;
        }
        let fi = family(ls[i].protocol);
        for j in 0..i {
            if ls[j].accepted.is_err()
                || ls[j].conflict.is_some()
                || ls[j].spec.port != ls[i].spec.port
            {
                continue;
            }
            let fj = family(ls[j].protocol);
            let udp = |f: Option<&str>| f == Some("udp");
            if udp(fi) != udp(fj) {
                continue;
            }
            if fi != fj {
                ls[i].conflict = Some((
                    Reason::ProtocolConflict,
                    format!(
                        "port {} is already used by listener {} with protocol {}",
                        ls[i].spec.port, ls[j].spec.name, ls[j].spec.protocol
                    ),
                ));
                break;
            }
            if ls[i].spec.hostname == ls[j].spec.hostname {
                ls[i].conflict = Some((
                    Reason::HostnameConflict,
                    format!(
                        "listener {} already serves hostname {} on port {}",
                        ls[j].spec.name,
                        ls[j].spec.hostname.as_deref().unwrap_or("(any)"),
                        ls[i].spec.port
                    ),
                ));
                break;
            }
        }
    }
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
