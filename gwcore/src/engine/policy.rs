//! Policy attachment: GEP-713 direct attachment for every policy kind
//! ([`crate::extension::PolicyKind`]): gwcore's own BackendTLSPolicy
//! ([`super::backend_tls_policy`]) and those an embedder registers.
//!
//! A policy's `spec.targetRefs` (or the single `spec.targetRef`) name
//! objects in the policy's namespace: a Gateway (`sectionName`: a
//! listener), an HTTPRoute or GRPCRoute (`sectionName`: a rule's name), a
//! Service (`sectionName`: a port's name). Each policy is parsed once by its
//! kind ([`PolicyCache`]; what the parse looked up is recorded, so that a
//! change to it parses the policy again). For each of our Gateways the
//! engine finds the targets that are part of it (the Gateway itself, the
//! routes attached to it, the Services those routes send to), and:
//!
//! - hands each target its policies of the embedder's kinds
//!   ([`GatewayRouting::policies`]), which the table gives to every
//!   listener, rule and backend they cover; BackendTLSPolicy's value goes
//!   into each backend's `BackendTarget::tls` instead
//!   ([`Ctx::service_policy`]);
//! - settles conflicts as GEP-713 says: among policies of one kind with the
//!   same target, the oldest (`creationTimestamp`) wins, then the first by
//!   namespace and name; the others do not apply there (or, with
//!   [`Conflicts::WholePolicy`], nowhere);
//! - writes `status.ancestors`, one entry per Gateway of ours the policy
//!   is part of, under our controller name: `Accepted=True`, or
//!   `Accepted=False` with reason `Invalid` (the kind's parser refused the
//!   spec, or a target of a kind it cannot take), `Conflicted` (every
//!   target on that Gateway is held by an older policy), the reason the
//!   parser gave ([`crate::extension::PolicyContext::not_accepted`]) or
//!   `TargetNotFound` (every `sectionName` on that Gateway names no
//!   listener, rule or port); then the conditions the parser added.
//!
//! A policy whose targets exist nowhere on our Gateways gets no entry: the
//! objects it names may belong to another controller.
//!
//! [`GatewayRouting::policies`]: crate::attachments::GatewayRouting::policies

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{Ctx, Gw, cond, route_backends, stamp, ts_key};
use crate::attachments::{AppliedPolicy, AttachedRoute, PolicyTarget, RouteRules};
use crate::extension::{
    Conflicts, ExtensionObject, Extensions, MissingSections, OtherTargets, PolicyContext,
    PolicyKind, PolicyValue, TargetKind,
};
use crate::model::{
    GATEWAY_GROUP, Kind, Object, ObjectKey, ParentReference, PolicyTargetReference,
};
use crate::snapshot::Snapshot;
use crate::status::{
    Condition, ConditionType as T, ObjectStatus, PolicyAncestorStatus, PolicyStatus, Reason,
};

/// gwcore's own policy kinds.
static BACKEND_TLS_POLICY: super::backend_tls_policy::BackendTlsPolicyKind =
    super::backend_tls_policy::BackendTlsPolicyKind;

/// A policy kind the engine resolves, with the kind of its objects.
#[derive(Clone, Copy)]
pub(super) struct Resolved<'a> {
    /// The kind of its objects in the snapshot.
    pub object_kind: Kind,
    pub kind: &'a dyn PolicyKind,
    /// Its value goes into each backend (`BackendTarget::tls`), not into
    /// [`crate::attachments::GatewayRouting::policies`]: gwcore's own.
    pub into_backends: bool,
}

/// Every policy kind: gwcore's own, then the embedder's (one of the same
/// group and kind as a built-in one is not resolved).
pub(super) fn policy_kinds(ext: &Extensions) -> impl Iterator<Item = Resolved<'_>> {
    let builtin = Resolved {
        object_kind: Kind::BackendTlsPolicy,
        kind: &BACKEND_TLS_POLICY,
        into_backends: true,
    };
    let own = BACKEND_TLS_POLICY.kind();
    std::iter::once(builtin).chain(ext.policies().filter(move |k| k.kind() != own).map(|kind| {
        Resolved {
            object_kind: Kind::Extension(kind.kind()),
            kind,
            into_backends: false,
        }
    }))
}

/// The policy kind of objects of `object_kind`.
pub(super) fn policy_kind(ext: &Extensions, object_kind: Kind) -> Option<Resolved<'_>> {
    policy_kinds(ext).find(|r| r.object_kind == object_kind)
}

/// A policy's `targetRefs` (or its single `targetRef`), as written.
pub(super) fn policy_refs(p: &Object) -> Vec<PolicyTargetReference> {
    match p {
        Object::BackendTlsPolicy(p) => p.spec.target_refs.clone(),
        Object::Extension(p) => target_refs(p),
        _ => Vec::new(),
    }
}

fn target_refs(p: &ExtensionObject) -> Vec<PolicyTargetReference> {
    let many = p
        .spec
        .get("targetRefs")
        .and_then(|v| serde_json::from_value::<Vec<PolicyTargetReference>>(v.clone()).ok());
    let one = p
        .spec
        .get("targetRef")
        .and_then(|v| serde_json::from_value::<PolicyTargetReference>(v.clone()).ok());
    many.unwrap_or_default().into_iter().chain(one).collect()
}

/// A policy's `status.ancestors`, as read.
fn previous_ancestors(p: &Object) -> Vec<PolicyAncestorStatus> {
    match p {
        Object::BackendTlsPolicy(p) => p
            .status
            .as_ref()
            .map(|s| s.ancestors.clone())
            .unwrap_or_default(),
        Object::Extension(p) => p
            .status
            .as_ref()
            .and_then(|s| s.get("ancestors"))
            .and_then(|a| serde_json::from_value(a.clone()).ok())
            .unwrap_or_default(),
        _ => Vec::new(),
    }
}

fn describe(t: &PolicyTargetReference) -> String {
    match &t.section_name {
        Some(s) => format!("{} {} section {s}", t.kind, t.name),
        None => format!("{} {}", t.kind, t.name),
    }
}

// ------------------------------------------------------------ parsed policies

/// One policy, parsed by its kind.
#[derive(Debug, Clone)]
pub(super) struct Parsed {
    pub value: Result<PolicyValue, String>,
    /// Conditions after `Accepted`.
    pub conditions: Vec<Condition>,
    /// Applies, but `Accepted=False` with this reason.
    pub not_accepted: Option<(Reason, String)>,
    /// The keys the parse looked up.
    pub reads: BTreeSet<ObjectKey>,
    /// The objects of those keys that exist, as looked up.
    pub read: Arc<Vec<Object>>,
}

fn parse(snap: &Snapshot, kind: &dyn PolicyKind, policy: &Object) -> Parsed {
    let mut cx = PolicyContext::new(snap);
    let value = kind.parse(policy, &mut cx).map_err(|r| r.to_string());
    let read = cx
        .reads
        .iter()
        .filter_map(|k| snap.get(k))
        .cloned()
        .collect();
    Parsed {
        value,
        conditions: cx.conditions,
        not_accepted: cx.not_accepted,
        reads: cx.reads,
        read: Arc::new(read),
    }
}

/// Every policy of the snapshot, parsed, and who read what: kept by the
/// engine, so that a policy is parsed once per change to it or to an object
/// its parse looked up (not once per Gateway and backend).
#[derive(Debug, Clone, Default)]
pub(super) struct PolicyCache {
    parsed: BTreeMap<ObjectKey, Parsed>,
    /// Key looked up -> the policies whose parse looked it up.
    read_by: BTreeMap<ObjectKey, BTreeSet<ObjectKey>>,
}

impl PolicyCache {
    /// Every policy of `snap` parsed.
    pub(super) fn load(snap: &Snapshot, ext: &Extensions) -> PolicyCache {
        let mut cache = PolicyCache::default();
        for r in policy_kinds(ext) {
            for o in snap.of_kind(r.object_kind) {
                cache.store(o.key(), parse(snap, r.kind, o));
            }
        }
        cache
    }

    fn store(&mut self, key: ObjectKey, parsed: Parsed) {
        for r in &parsed.reads {
            self.read_by
                .entry(r.clone())
                .or_default()
                .insert(key.clone());
        }
        self.parsed.insert(key, parsed);
    }

    /// Parses the policy of `key` again (forgets it when it is gone).
    pub(super) fn refresh(&mut self, snap: &Snapshot, ext: &Extensions, key: &ObjectKey) {
        if let Some(old) = self.parsed.remove(key) {
            for r in &old.reads {
                if let Some(set) = self.read_by.get_mut(r) {
                    set.remove(key);
                    if set.is_empty() {
                        self.read_by.remove(r);
                    }
                }
            }
        }
        if let (Some(r), Some(o)) = (policy_kind(ext, key.kind), snap.get(key)) {
            self.store(key.clone(), parse(snap, r.kind, o));
        }
    }

    /// The policies whose parse looked up `key`.
    pub(super) fn readers(&self, key: &ObjectKey) -> Vec<ObjectKey> {
        self.read_by
            .get(key)
            .map(|s| s.iter().cloned().collect())
            .unwrap_or_default()
    }
}

// ------------------------------------------------------------ on a Gateway

/// What one policy became on one Gateway.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    /// Targets where it applies.
    applied: usize,
    /// Targets an older policy holds, said for people.
    conflicts: Vec<String>,
    /// `sectionName`s that name nothing, said for people.
    missing: Vec<String>,
    /// Why it cannot apply at all.
    invalid: Option<String>,
    /// Applies, but is not reported Accepted (the parser's reason).
    not_accepted: Option<(Reason, String)>,
    /// Conditions after `Accepted` (the parser's).
    conditions: Vec<Condition>,
}

/// The policies on one Gateway, by target, and each policy's outcome.
pub(super) type GatewayPolicies = (
    BTreeMap<PolicyTarget, Vec<AppliedPolicy>>,
    BTreeMap<ObjectKey, Outcome>,
);

/// One candidate for a target: the sort key of GEP-713 precedence (older
/// first, then namespace and name), the policy, and what the table gets
/// (policies of the embedder's kinds).
type Candidate<'a> = (
    (bool, &'a str),
    &'a str,
    &'a str,
    ObjectKey,
    Option<AppliedPolicy>,
);

impl Ctx<'_> {
    /// A policy, parsed (as the engine keeps it, else now).
    fn parsed<'s>(&'s self, o: &Object, kind: &dyn PolicyKind) -> Cow<'s, Parsed> {
        match self.policies.parsed.get(&o.key()) {
            Some(p) => Cow::Borrowed(p),
            None => Cow::Owned(parse(self.snap, kind, o)),
        }
    }

    /// [`Conflicts::WholePolicy`]: the first policy of the kind in `p`'s
    /// namespace that precedes it (older, then by name) and has one of its
    /// targetRefs, said for people.
    pub(super) fn whole_conflict(&self, r: Resolved<'_>, p: &Object) -> Option<String> {
        let mine = p.meta();
        let my_refs = policy_refs(p);
        for q in self.snap.in_namespace(r.object_kind, mine.ns()) {
            let theirs = q.meta();
            if theirs.name == mine.name {
                continue;
            }
            let earlier =
                (ts_key(theirs), theirs.name.as_str()) < (ts_key(mine), mine.name.as_str());
            if !earlier {
                continue;
            }
            let their_refs = policy_refs(q);
            if let Some(t) = my_refs.iter().find(|t| their_refs.contains(t)) {
                let section = match (&t.section_name, t.kind.as_str()) {
                    (Some(s), "Service") => format!(" port {s}"),
                    (Some(s), _) => format!(" section {s}"),
                    (None, _) => String::new(),
                };
                return Some(format!(
                    "{} {}/{} already targets {} {}{section}",
                    r.kind.kind().kind(),
                    theirs.ns(),
                    theirs.name,
                    t.kind,
                    t.name,
                ));
            }
        }
        None
    }

    /// The value of the policy of kind `object_kind` that applies to a
    /// port of Service `ns/service` (named `port_name`), for kinds whose
    /// value goes into the backend.
    ///
    /// The policy lives in the Service's namespace and targets the
    /// Service, or that port by `sectionName`; one that names the port is
    /// more specific than one that names only the Service, and wins; among
    /// policies with the same target the oldest wins (then by name). A
    /// policy the parser refused, or one `Conflicted` as a whole, does not
    /// apply.
    pub(super) fn service_policy(
        &self,
        object_kind: Kind,
        ns: &str,
        service: &str,
        port_name: Option<&str>,
    ) -> Option<PolicyValue> {
        let r = policy_kind(&self.opts.extensions, object_kind)?;
        let mut best: Option<(bool, (bool, &str), &str, PolicyValue)> = None;
        for o in self.snap.in_namespace(object_kind, ns) {
            let specific = policy_refs(o)
                .iter()
                .filter(|t| t.group.is_empty() && t.kind == "Service" && t.name == service)
                .filter_map(|t| match (&t.section_name, port_name) {
                    (None, _) => Some(false),
                    (Some(s), Some(n)) if s == n => Some(true),
                    _ => None,
                })
                .max();
            let Some(specific) = specific else { continue };
            let Ok(value) = &self.parsed(o, r.kind).value else {
                continue;
            };
            if r.kind.attachment().conflicts == Conflicts::WholePolicy
                && self.whole_conflict(r, o).is_some()
            {
                continue;
            }
            let meta = o.meta();
            // More specific first, then older, then by name.
            let better = match &best {
                None => true,
                Some((bs, bt, bn, _)) => {
                    (
                        std::cmp::Reverse(specific),
                        ts_key(meta),
                        meta.name.as_str(),
                    ) < (std::cmp::Reverse(*bs), *bt, *bn)
                }
            };
            if better {
                best = Some((specific, ts_key(meta), meta.name.as_str(), value.clone()));
            }
        }
        best.map(|(_, _, _, v)| v)
    }

    /// The policies on Gateway `gk`: with `routing`, only the kinds whose
    /// values go to the table ([`crate::attachments::GatewayRouting::policies`]).
    pub(super) fn gateway_policies(
        &self,
        gk: &ObjectKey,
        gw: &Gw,
        routing: bool,
    ) -> GatewayPolicies {
        let mut index: BTreeMap<PolicyTarget, Vec<AppliedPolicy>> = BTreeMap::new();
        let mut outcomes: BTreeMap<ObjectKey, Outcome> = BTreeMap::new();
        let ext = &self.opts.extensions;
        let kinds: Vec<Resolved> = policy_kinds(ext)
            .filter(|r| !(routing && r.into_backends))
            .filter(|r| self.snap.of_kind(r.object_kind).next().is_some())
            .collect();
        if kinds.is_empty() {
            return (index, outcomes);
        }
        let listeners: BTreeSet<&str> = gw
            .listeners
            .iter()
            .filter(|l| l.usable())
            .map(|l| l.spec.name.as_str())
            .collect();
        let mut routes: BTreeMap<&ObjectKey, &AttachedRoute> = BTreeMap::new();
        for l in &gw.listeners {
            for r in &l.attached {
                routes.insert(&r.key, r);
            }
        }
        let services: BTreeSet<&ObjectKey> = routes
            .values()
            .flat_map(|r| route_backends(&r.rules))
            .map(|t| &t.service)
            .collect();

        // (target, kind) -> candidates.
        let mut candidates: BTreeMap<(PolicyTarget, Kind), Vec<Candidate>> = BTreeMap::new();
        for r in kinds {
            let kind = r.kind;
            let rules = kind.attachment();
            for o in self.snap.of_kind(r.object_kind) {
                let meta = o.meta();
                let ns = meta.ns();
                let mut outcome = Outcome::default();
                let mut targets = Vec::new();
                let mut part_of_it = false;
                for t in policy_refs(o) {
                    let tk = TargetKind::parse(&t.group, &t.kind).filter(|tk| {
                        rules.other_targets == OtherTargets::Invalid || kind.targets().contains(tk)
                    });
                    let Some(tk) = tk else {
                        if rules.other_targets == OtherTargets::Invalid {
                            outcome.invalid = Some(format!(
                                "targetRef {}/{} {} is not a kind a policy can target",
                                t.group, t.kind, t.name
                            ));
                        }
                        continue;
                    };
                    let found = match tk {
                        TargetKind::Gateway => {
                            (ns == gk.namespace && t.name == gk.name).then(|| {
                                match &t.section_name {
                                    None => Some(PolicyTarget::Gateway),
                                    Some(s) => listeners
                                        .contains(s.as_str())
                                        .then(|| PolicyTarget::Listener(s.clone())),
                                }
                            })
                        }
                        TargetKind::HttpRoute | TargetKind::GrpcRoute => {
                            let key = ObjectKey::new(tk.object_kind(), ns, t.name.clone());
                            routes.get(&key).map(|r| match &t.section_name {
                                None => Some(PolicyTarget::Route(key.clone())),
                                Some(s) => rule_named(&r.rules, s)
                                    .then(|| PolicyTarget::Rule(key.clone(), s.clone())),
                            })
                        }
                        TargetKind::Service => {
                            let key = ObjectKey::new(Kind::Service, ns, t.name.clone());
                            services.contains(&key).then(|| match &t.section_name {
                                None => Some(PolicyTarget::Service(key.clone())),
                                Some(s) => self
                                    .service_port(&key, s)
                                    .map(|port| PolicyTarget::ServicePort(key.clone(), port)),
                            })
                        }
                    };
                    // Not part of this Gateway: nothing to say here.
                    let Some(found) = found else { continue };
                    part_of_it = true;
                    if !kind.targets().contains(&tk) {
                        outcome.invalid =
                            Some(format!("{} cannot target a {}", kind.kind(), t.kind));
                        continue;
                    }
                    match found {
                        Some(target) => targets.push((target, describe(&t))),
                        None if rules.missing_sections == MissingSections::TargetNotFound => {
                            outcome.missing.push(format!(
                                "{} does not exist on Gateway {}/{}",
                                describe(&t),
                                gk.namespace,
                                gk.name
                            ))
                        }
                        None => {}
                    }
                }
                if !part_of_it {
                    continue;
                }
                let parsed = self.parsed(o, kind);
                outcome.conditions = parsed.conditions.clone();
                outcome.not_accepted = parsed.not_accepted.clone();
                if outcome.invalid.is_none() {
                    match &parsed.value {
                        Ok(value) => {
                            let whole = match rules.conflicts {
                                Conflicts::WholePolicy => self.whole_conflict(r, o),
                                Conflicts::PerTarget => None,
                            };
                            if let Some(m) = whole {
                                outcome.conflicts.push(m);
                            } else {
                                let applied = match o {
                                    Object::Extension(p) if !r.into_backends => {
                                        Some(AppliedPolicy {
                                            policy: o.key(),
                                            value: value.clone(),
                                            object: Arc::new(p.clone()),
                                            read: parsed.read.clone(),
                                        })
                                    }
                                    _ => None,
                                };
                                for (target, _) in targets {
                                    candidates
                                        .entry((target, r.object_kind))
                                        .or_default()
                                        .push((
                                            ts_key(meta),
                                            ns,
                                            meta.name.as_str(),
                                            o.key(),
                                            applied.clone(),
                                        ));
                                }
                            }
                        }
                        Err(m) => outcome.invalid = Some(m.clone()),
                    }
                }
                outcomes.insert(o.key(), outcome);
            }
        }
        for ((target, _), mut cands) in candidates {
            cands.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
            let mut cands = cands.into_iter();
            let Some((_, _, _, winner, applied)) = cands.next() else {
                continue;
            };
            if let Some(o) = outcomes.get_mut(&winner) {
                o.applied += 1;
            }
            for (_, _, _, loser, _) in cands {
                // A policy Conflicted as a whole was said above.
                let per_target = policy_kind(&self.opts.extensions, loser.kind)
                    .is_some_and(|r| r.kind.attachment().conflicts == Conflicts::PerTarget);
                if let Some(o) = outcomes.get_mut(&loser)
                    && per_target
                {
                    o.conflicts.push(format!(
                        "{}/{} (older) already targets {target:?}",
                        winner.namespace, winner.name
                    ));
                }
            }
            if let Some(applied) = applied {
                index.entry(target).or_default().push(applied);
            }
        }
        (index, outcomes)
    }

    /// The number of the port of Service `key` named `name`.
    fn service_port(&self, key: &ObjectKey, name: &str) -> Option<u16> {
        let Some(Object::Service(svc)) = self.snap.get(key) else {
            return None;
        };
        svc.spec
            .ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name))
            .and_then(|p| u16::try_from(p.port).ok())
    }

    /// `status.ancestors` of every policy (of every kind) that is part of
    /// one of our Gateways.
    pub(super) fn policy_statuses(
        &self,
        gws: &BTreeMap<ObjectKey, Gw>,
    ) -> BTreeMap<ObjectKey, ObjectStatus> {
        let mut per_policy: BTreeMap<ObjectKey, Vec<(&ObjectKey, Outcome)>> = BTreeMap::new();
        for (gk, gw) in gws {
            for (pk, outcome) in self.gateway_policies(gk, gw, false).1 {
                per_policy.entry(pk).or_default().push((gk, outcome));
            }
        }
        let mut out = BTreeMap::new();
        for (pk, entries) in per_policy {
            let Some(p) = self.snap.get(&pk) else {
                continue;
            };
            let meta = p.meta();
            let previous = previous_ancestors(p);
            let mut ancestors: Vec<PolicyAncestorStatus> = previous
                .iter()
                .filter(|a| a.controller_name != self.opts.controller_name)
                .cloned()
                .collect();
            for (gk, o) in entries {
                let aref = ParentReference {
                    group: Some(GATEWAY_GROUP.into()),
                    kind: Some("Gateway".into()),
                    namespace: Some(gk.namespace.clone()),
                    name: gk.name.clone(),
                    section_name: None,
                    port: None,
                };
                let accepted = match (&o.invalid, o.applied, &o.not_accepted) {
                    (Some(m), _, _) => cond(T::Accepted, false, Reason::Invalid, m.clone()),
                    (None, 0, _) if !o.conflicts.is_empty() => cond(
                        T::Accepted,
                        false,
                        Reason::Conflicted,
                        o.conflicts.join("; "),
                    ),
                    (None, _, Some((reason, m))) => cond(T::Accepted, false, *reason, m.clone()),
                    (None, 0, None) if !o.missing.is_empty() => cond(
                        T::Accepted,
                        false,
                        Reason::TargetNotFound,
                        o.missing.join("; "),
                    ),
                    (None, _, None) => {
                        let mut m = "policy accepted".to_owned();
                        for extra in o.conflicts.iter().chain(&o.missing) {
                            m.push_str("; ");
                            m.push_str(extra);
                        }
                        cond(T::Accepted, true, Reason::Accepted, m)
                    }
                };
                let mut conds = vec![accepted];
                conds.extend(o.conditions);
                let prev = previous
                    .iter()
                    .find(|a| {
                        a.controller_name == self.opts.controller_name
                            && a.ancestor_ref.name == aref.name
                            && a.ancestor_ref.namespace == aref.namespace
                    })
                    .map(|a| a.conditions.as_slice())
                    .unwrap_or(&[]);
                ancestors.push(PolicyAncestorStatus {
                    ancestor_ref: aref,
                    controller_name: self.opts.controller_name.clone(),
                    conditions: stamp(conds, prev, meta, &self.opts.now),
                });
            }
            out.insert(pk, ObjectStatus::Policy(PolicyStatus { ancestors }));
        }
        out
    }
}

/// Whether the rules have one named `name`.
fn rule_named(rules: &RouteRules, name: &str) -> bool {
    match rules {
        RouteRules::Http(rs) => rs.iter().any(|r| r.name.as_deref() == Some(name)),
        RouteRules::Grpc(rs) => rs.iter().any(|r| r.name.as_deref() == Some(name)),
        RouteRules::L4(rs) => rs.iter().any(|r| r.name.as_deref() == Some(name)),
    }
}
