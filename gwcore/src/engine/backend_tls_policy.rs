//! BackendTLSPolicy statuses and conflicts.

use super::*;

impl Ctx<'_> {
    // ---------------------------------------------------------------- policies

    /// BackendTLSPolicy statuses: one ancestor entry per Gateway of ours
    /// that routes to a targeted Service.
    pub(super) fn policies(
        &self,
        gws: &BTreeMap<ObjectKey, Gw>,
    ) -> BTreeMap<ObjectKey, ObjectStatus> {
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
    pub(super) fn policy_ca_bundles(
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
    pub(super) fn policy_conflict(&self, p: &crate::model::BackendTlsPolicy) -> Option<String> {
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
}
