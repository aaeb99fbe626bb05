//! Route attachment: parentRefs, sectionName and port, allowedRoutes,
//! hostnames, and each route's status.parents.

use super::*;
use crate::model::ListenerSetKind;
use crate::values::{FromNamespaces, GatewayDefaultScope};

impl Ctx<'_> {
    // ---------------------------------------------------------------- routes

    /// Computes one route against the current Gateways.
    pub(super) fn route(&self, o: &Object, gws: &BTreeMap<ObjectKey, Gw>) -> RouteState {
        let mut state = RouteState::default();
        let key = o.key();
        let meta = o.meta();
        let route_ns = meta.ns();
        let (parent_refs, hostnames, use_default, prev): (
            &[ParentReference],
            &[String],
            Option<&GatewayDefaultScope>,
            Option<&RouteStatusRef>,
        ) = match o {
            Object::HttpRoute(r) => (
                &r.spec.parent_refs,
                &r.spec.hostnames,
                r.spec.use_default_gateways.as_ref(),
                r.status.as_ref(),
            ),
            Object::GrpcRoute(r) => (
                &r.spec.parent_refs,
                &r.spec.hostnames,
                r.spec.use_default_gateways.as_ref(),
                r.status.as_ref(),
            ),
            Object::TlsRoute(r) | Object::TcpRoute(r) | Object::UdpRoute(r) => (
                &r.spec.parent_refs,
                &r.spec.hostnames,
                r.spec.use_default_gateways.as_ref(),
                r.status.as_ref(),
            ),
            _ => return state,
        };
        let default_refs = default_parent_refs(use_default, parent_refs, route_ns, gws);
        state.defaulted = use_default.is_some_and(claims);
        let mut services = BTreeSet::new();
        let mut grant_namespaces = BTreeSet::new();
        let mut parent_keys = BTreeSet::new();
        route_refs(
            o,
            &self.opts.extensions,
            &mut services,
            &mut grant_namespaces,
        );
        services.extend(self.extension_backend_services(o));
        // Collected from the sets (sorted, no duplicates) into Vecs of
        // exactly their length: what the engine keeps per route.
        state.services = services.into_iter().collect();
        state.grant_namespaces = grant_namespaces.into_iter().collect();
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
        for pr in parent_refs.iter().chain(&default_refs) {
            let group = group_of(&pr.group, GATEWAY_GROUP);
            let pkind = pr.kind.as_deref().unwrap_or("Gateway");
            let pns = pr.namespace.as_deref().unwrap_or(route_ns);
            // A Gateway, or a ListenerSet by the name it is served under
            // (`ListenerSet` in the Gateway API group, `XListenerSet` in
            // the experimental one); any other parent is not ours.
            let set_kind = ListenerSetKind::of_ref(&group, pkind);
            let is_gateway = group == GATEWAY_GROUP && pkind == Kind::Gateway.as_str();
            if !is_gateway && set_kind.is_none() {
                continue;
            }
            // Find the Gateway this parentRef leads to, and the listeners it may use.
            let (gw_key, set_key) = if is_gateway {
                let gk = ObjectKey::new(Kind::Gateway, pns, pr.name.clone());
                parent_keys.insert(gk.clone());
                (gk, None)
            } else {
                let lk = ObjectKey::new(Kind::ListenerSet, pns, pr.name.clone());
                parent_keys.insert(lk.clone());
                // A set read as one name is not found by a reference to
                // the other, as on a cluster serving both.
                let Some(Object::ListenerSet(ls)) = self.snap.get(&lk) else {
                    continue;
                };
                if Some(ls.served_as) != set_kind {
                    continue;
                }
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
                            || key.kind == Kind::TcpRoute
                            || key.kind == Kind::UdpRoute,
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
                        reason: *reason,
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
            let mut conditions = stamp(conds, prev_conds, meta, &self.opts.now);
            // Kept for the route's lifetime: no spare capacity.
            conditions.shrink_to_fit();
            ours.push(RouteParentStatus {
                parent_ref: status_ref,
                controller_name: self.opts.controller_name.clone(),
                conditions,
            });
        }
        state.parents = parent_keys.into_iter().collect();
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
            parents.shrink_to_fit();
            state.status = Some(RouteStatus { parents });
        }
        state
    }
}

pub(super) type RouteStatusRef = RouteStatus;

/// Whether a scope asks for (in a route) or offers (in a Gateway) default
/// Gateways: `All`. `None`, and a value gwcore does not know, do not.
pub(super) fn claims(scope: &GatewayDefaultScope) -> bool {
    *scope == GatewayDefaultScope::All
}

/// The parentRefs a route asking for default Gateways (`useDefaultGateways`)
/// gets from them, one per Gateway of ours whose `defaultScope` is the same.
///
/// GEP-3793: "If spec.defaultScope is set, the Gateway MUST claim Routes
/// that have set spec.useDefaultGateway to a matching value (subject to the
/// usual Gateway API rules about which Routes may be bound to a Gateway)";
/// "All other characteristics of a defaulted Route MUST behave the same as
/// if all default Gateways were explicitly specified in parentRefs"; and
/// "Gateways MUST NOT attempt to enforce a single default Gateway". A
/// default Gateway the route already names in its own parentRefs is left
/// to those (which may pick a listener).
fn default_parent_refs(
    scope: Option<&GatewayDefaultScope>,
    explicit: &[ParentReference],
    route_ns: &str,
    gws: &BTreeMap<ObjectKey, Gw>,
) -> Vec<ParentReference> {
    let Some(scope) = scope.filter(|s| claims(s)) else {
        return Vec::new();
    };
    let named = |gk: &ObjectKey| {
        explicit.iter().any(|pr| {
            group_of(&pr.group, GATEWAY_GROUP) == GATEWAY_GROUP
                && pr.kind.as_deref().unwrap_or("Gateway") == Kind::Gateway.as_str()
                && pr.namespace.as_deref().unwrap_or(route_ns) == gk.namespace
                && pr.name == gk.name
        })
    };
    gws.iter()
        .filter(|(_, gw)| gw.obj.spec.default_scope.as_ref() == Some(scope))
        .filter(|(gk, _)| !named(gk))
        .map(|(gk, _)| ParentReference {
            group: Some(GATEWAY_GROUP.to_string()),
            kind: Some(Kind::Gateway.as_str().to_string()),
            namespace: Some(gk.namespace.clone()),
            name: gk.name.clone(),
            section_name: None,
            port: None,
        })
        .collect()
}

pub(super) fn namespace_allowed_free(
    ns_labels: &BTreeMap<String, BTreeMap<String, String>>,
    from: &RouteNamespaces,
    owner_ns: &str,
    ns: &str,
) -> Result<(), String> {
    match from.from.as_ref().unwrap_or(&FromNamespaces::Same) {
        FromNamespaces::All => Ok(()),
        FromNamespaces::Same if owner_ns == ns => Ok(()),
        FromNamespaces::Same => Err(format!("only routes from namespace {owner_ns} may attach")),
        FromNamespaces::Selector => {
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

pub(super) fn describe_selector(sel: &LabelSelector) -> String {
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

pub(super) fn describe_parent(ns: &str, pr: &ParentReference) -> String {
    let mut s = format!("{ns}/{}", pr.name);
    if let Some(k) = pr.kind.as_deref().and_then(ListenerSetKind::parse) {
        s = format!("{k} {s}");
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

pub(super) fn same_parent(a: &ParentReference, b: &ParentReference, route_ns: &str) -> bool {
    group_of(&a.group, GATEWAY_GROUP) == group_of(&b.group, GATEWAY_GROUP)
        && a.kind.as_deref().unwrap_or("Gateway") == b.kind.as_deref().unwrap_or("Gateway")
        && a.namespace.as_deref().unwrap_or(route_ns) == b.namespace.as_deref().unwrap_or(route_ns)
        && a.name == b.name
        && a.section_name == b.section_name
        && a.port == b.port
}
