//! Extension policies: GEP-713 direct attachment for the policy kinds an
//! embedder registers ([`crate::extension::PolicyKind`]).
//!
//! A policy's `spec.targetRefs` (or the single `spec.targetRef`) name
//! objects in the policy's namespace: a Gateway (`sectionName`: a
//! listener), an HTTPRoute or GRPCRoute (`sectionName`: a rule's name), a
//! Service (`sectionName`: a port's name). For each of our Gateways the
//! engine finds the targets that are part of it (the Gateway itself, the
//! routes attached to it, the Services those routes send to), and:
//!
//! - hands each target its policies ([`GatewayRouting::policies`]), which
//!   the table gives to every listener, rule and backend they cover;
//! - settles conflicts as GEP-713 says: among policies of one kind with the
//!   same target, the oldest (`creationTimestamp`) wins, then the first by
//!   namespace and name; the others do not apply there;
//! - writes `status.ancestors`, one entry per Gateway of ours the policy
//!   is part of, under our controller name: `Accepted=True`, or
//!   `Accepted=False` with reason `Invalid` (the kind's parser refused the
//!   spec, or a target of a kind it cannot take), `Conflicted` (every
//!   target on that Gateway is held by an older policy) or
//!   `TargetNotFound` (every `sectionName` on that Gateway names no
//!   listener, rule or port).
//!
//! A policy whose targets exist nowhere on our Gateways gets no entry: the
//! objects it names may belong to another controller.
//!
//! [`GatewayRouting::policies`]: crate::attachments::GatewayRouting::policies

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use super::{Ctx, Gw, cond, route_backends, stamp, ts_key};
use crate::attachments::{AppliedPolicy, AttachedRoute, PolicyTarget, RouteRules};
use crate::extension::{ExtensionObject, TargetKind};
use crate::model::{
    GATEWAY_GROUP, Kind, Object, ObjectKey, ParentReference, PolicyTargetReference,
};
use crate::status::{ConditionType as T, ObjectStatus, PolicyAncestorStatus, PolicyStatus, Reason};

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
}

/// The policies on one Gateway, by target, and each policy's outcome.
pub(super) type GatewayPolicies = (
    BTreeMap<PolicyTarget, Vec<AppliedPolicy>>,
    BTreeMap<ObjectKey, Outcome>,
);

/// A policy's `targetRefs` (or its single `targetRef`), as written.
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

fn describe(t: &PolicyTargetReference) -> String {
    match &t.section_name {
        Some(s) => format!("{} {} section {s}", t.kind, t.name),
        None => format!("{} {}", t.kind, t.name),
    }
}

/// One candidate for a target: the sort key of GEP-713 precedence (older
/// first, then namespace and name), and the policy.
type Candidate<'a> = ((bool, &'a str), &'a str, &'a str, AppliedPolicy);

impl Ctx<'_> {
    /// The extension policies on Gateway `gk`.
    pub(super) fn gateway_policies(&self, gk: &ObjectKey, gw: &Gw) -> GatewayPolicies {
        let mut index: BTreeMap<PolicyTarget, Vec<AppliedPolicy>> = BTreeMap::new();
        let mut outcomes: BTreeMap<ObjectKey, Outcome> = BTreeMap::new();
        let ext = &self.opts.extensions;
        if ext.policies().next().is_none() {
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
            for (k, r) in &l.attached {
                routes.insert(k, r);
            }
        }
        let services: BTreeSet<&ObjectKey> = routes
            .values()
            .flat_map(|r| route_backends(&r.rules))
            .map(|t| &t.service)
            .collect();

        // (target, kind) -> candidates.
        let mut candidates: BTreeMap<
            (PolicyTarget, crate::extension::ExtensionKind),
            Vec<Candidate>,
        > = BTreeMap::new();
        for kind in ext.policies() {
            for o in self.snap.of_kind(Kind::Extension(kind.kind())) {
                let Object::Extension(p) = o else { continue };
                let ns = p.metadata.ns();
                let mut outcome = Outcome::default();
                let mut targets = Vec::new();
                let mut part_of_it = false;
                for t in target_refs(p) {
                    let Some(tk) = TargetKind::parse(&t.group, &t.kind) else {
                        outcome.invalid = Some(format!(
                            "targetRef {}/{} {} is not a kind a policy can target",
                            t.group, t.kind, t.name
                        ));
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
                        None => outcome.missing.push(format!(
                            "{} does not exist on Gateway {}/{}",
                            describe(&t),
                            gk.namespace,
                            gk.name
                        )),
                    }
                }
                if !part_of_it {
                    continue;
                }
                if outcome.invalid.is_none() {
                    match kind.parse(p) {
                        Ok(value) => {
                            let applied = AppliedPolicy {
                                policy: o.key(),
                                value,
                                object: Arc::new(p.clone()),
                            };
                            for (target, _) in targets {
                                candidates.entry((target, kind.kind())).or_default().push((
                                    ts_key(&p.metadata),
                                    ns,
                                    p.metadata.name.as_str(),
                                    applied.clone(),
                                ));
                            }
                        }
                        Err(m) => outcome.invalid = Some(m),
                    }
                }
                outcomes.insert(o.key(), outcome);
            }
        }
        for ((target, _), mut cands) in candidates {
            cands.sort_by(|a, b| (a.0, a.1, a.2).cmp(&(b.0, b.1, b.2)));
            let mut cands = cands.into_iter();
            let Some((_, _, _, winner)) = cands.next() else {
                continue;
            };
            if let Some(o) = outcomes.get_mut(&winner.policy) {
                o.applied += 1;
            }
            for (_, _, _, loser) in cands {
                if let Some(o) = outcomes.get_mut(&loser.policy) {
                    o.conflicts.push(format!(
                        "{}/{} (older) already targets {target:?}",
                        winner.policy.namespace, winner.policy.name
                    ));
                }
            }
            index.entry(target).or_default().push(winner);
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

    /// `status.ancestors` of every extension policy that is part of one of
    /// our Gateways.
    pub(super) fn extension_policy_statuses(
        &self,
        gws: &BTreeMap<ObjectKey, Gw>,
    ) -> BTreeMap<ObjectKey, ObjectStatus> {
        let mut per_policy: BTreeMap<ObjectKey, Vec<(&ObjectKey, Outcome)>> = BTreeMap::new();
        for (gk, gw) in gws {
            for (pk, outcome) in self.gateway_policies(gk, gw).1 {
                per_policy.entry(pk).or_default().push((gk, outcome));
            }
        }
        let mut out = BTreeMap::new();
        for (pk, entries) in per_policy {
            let Some(Object::Extension(p)) = self.snap.get(&pk) else {
                continue;
            };
            let previous: Vec<PolicyAncestorStatus> = p
                .status
                .as_ref()
                .and_then(|s| s.get("ancestors"))
                .and_then(|a| serde_json::from_value(a.clone()).ok())
                .unwrap_or_default();
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
                let accepted = match (&o.invalid, o.applied) {
                    (Some(m), _) => cond(T::Accepted, false, Reason::Invalid, m.clone()),
                    (None, 0) if !o.conflicts.is_empty() => cond(
                        T::Accepted,
                        false,
                        Reason::Conflicted,
                        o.conflicts.join("; "),
                    ),
                    (None, 0) if !o.missing.is_empty() => cond(
                        T::Accepted,
                        false,
                        Reason::TargetNotFound,
                        o.missing.join("; "),
                    ),
                    (None, _) => {
                        let mut m = "policy accepted".to_owned();
                        for extra in o.conflicts.iter().chain(&o.missing) {
                            m.push_str("; ");
                            m.push_str(extra);
                        }
                        cond(T::Accepted, true, Reason::Accepted, m)
                    }
                };
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
                    conditions: stamp(vec![accepted], prev, &p.metadata, &self.opts.now),
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
