//! Status checks, with FORMAT.md's matching rules.
//!
//! Each counted assertion (one expected condition, one listener's
//! `attachedRoutes`, one flag such as `latestConditions`...) becomes one
//! [`CheckResult`]; INDEX.md counts status checks the same way.

use gwcore::model::ListenerSetKind;
use gwcore::status::{
    Condition, GatewayClassStatus, GatewayStatus, ListenerSetStatus, ListenerStatus, PolicyStatus,
    RouteStatus,
};
use gwcore::values::AddressType;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::cluster::{Cluster, StoreKey};
use crate::vector::{
    CondExpect, GatewayClassExpect, GatewayExpect, ListenerExpect, ParentRefExpect, PolicyExpect,
    RouteExpect, Step,
};

/// The group route kinds default to.
const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// Whether a check is about status or about a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CheckKind {
    /// A status assertion.
    Status,
    /// A request expectation.
    Request,
}

/// How one check went.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", content = "detail", rename_all = "kebab-case")]
pub enum Outcome {
    /// It held.
    Pass,
    /// It did not; why.
    Fail(String),
    /// It could not be judged in this mode; why.
    NotRun(String),
}

/// One check of one step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckResult {
    /// 1-based step number.
    pub step: usize,
    /// Status or request.
    pub kind: CheckKind,
    /// What is checked, e.g. `Gateway ns/gw: listener http: attachedRoutes=1`.
    pub check: String,
    /// The outcome.
    #[serde(flatten)]
    pub outcome: Outcome,
}

/// Collects the results of one step.
#[derive(Debug)]
pub(crate) struct StepChecks<'a> {
    pub(crate) step: usize,
    pub(crate) cluster: &'a Cluster,
    /// Our controllerName, for `{CONTROLLER_NAME}`.
    pub(crate) controller: &'a str,
    pub(crate) out: Vec<CheckResult>,
}

fn pass_if(ok: bool, why: impl FnOnce() -> String) -> Outcome {
    if ok {
        Outcome::Pass
    } else {
        Outcome::Fail(why())
    }
}

fn show_cond(c: &Condition) -> String {
    let mut s = format!("{}={}", c.type_, c.status);
    if !c.reason.is_empty() {
        s.push_str(&format!(" ({})", c.reason));
    }
    s
}

fn show_conds(conds: &[Condition]) -> String {
    if conds.is_empty() {
        "no conditions".to_string()
    } else {
        format!(
            "has {}",
            conds.iter().map(show_cond).collect::<Vec<_>>().join(", ")
        )
    }
}

/// A listed condition matches when `type` is equal, `status` is equal (no
/// `status` = any) and `reason` is equal when given.
fn cond_matches(c: &Condition, e: &CondExpect) -> bool {
    c.type_ == e.type_
        && e.status.as_ref().is_none_or(|s| *s == c.status)
        && e.reason.as_ref().is_none_or(|r| *r == c.reason)
}

fn check_cond(conds: &[Condition], e: &CondExpect) -> Outcome {
    pass_if(conds.iter().any(|c| cond_matches(c, e)), || {
        format!("{} missing; {}", e, show_conds(conds))
    })
}

/// `latestConditions`: there are conditions, and each one's
/// observedGeneration equals metadata.generation. An object without any
/// condition has not been processed, so it fails.
fn check_latest<'c>(
    generation: Option<i64>,
    conds: impl IntoIterator<Item = &'c Condition>,
) -> Outcome {
    let generation = generation.unwrap_or(0);
    let mut any = false;
    let mut stale = Vec::new();
    for c in conds {
        any = true;
        if c.observed_generation != Some(generation) {
            stale.push(format!(
                "{} observedGeneration {}",
                c.type_,
                c.observed_generation
                    .map_or_else(|| "absent".to_string(), |g| g.to_string())
            ));
        }
    }
    if !any {
        return Outcome::Fail("no conditions".to_string());
    }
    pass_if(stale.is_empty(), || {
        format!("stale for generation {generation}: {}", stale.join(", "))
    })
}

/// Splits `namespace/name`.
fn split_nn(s: &str) -> (Option<&str>, &str) {
    match s.split_once('/') {
        Some((ns, n)) => (Some(ns), n),
        None => (None, s),
    }
}

/// The object's status, typed; `Ok(None)` when it has none yet.
fn status_of<T: DeserializeOwned + Default>(value: &Value) -> Result<T, String> {
    match value.get("status") {
        None | Some(Value::Null) => Ok(T::default()),
        Some(s) => {
            serde_json::from_value(s.clone()).map_err(|e| format!("status does not parse: {e}"))
        }
    }
}

impl StepChecks<'_> {
    fn push(&mut self, check: String, outcome: Outcome) {
        self.out.push(CheckResult {
            step: self.step,
            kind: CheckKind::Status,
            check,
            outcome,
        });
    }

    /// Looks an object up; on failure every check of it fails with why.
    fn lookup(&self, kind: &str, nn: &str) -> Result<(StoreKey, &Value), String> {
        let (ns, name) = split_nn(nn);
        let key = StoreKey::new(kind, ns, name);
        match self.cluster.get(&key) {
            Some(v) => Ok((key, v)),
            None => Err(format!("{key} not found")),
        }
    }

    /// The checks of a step, in the order they are listed.
    pub(crate) fn run(&mut self, step: &Step) {
        for ns in &step.namespaces_ready {
            let o = self.namespace_ready(ns);
            self.push(format!("namespacesReady {ns}"), o);
        }
        for e in &step.gateway_classes {
            self.gateway_class(e);
        }
        for e in &step.gateways {
            self.gateway_like("Gateway", e);
        }
        for e in &step.listener_sets {
            // Stored under the name it was written as: `ListenerSet`, or
            // `XListenerSet` (Gateway API v1.3–v1.4 experimental channel).
            let kind = ListenerSetKind::ALL
                .into_iter()
                .map(ListenerSetKind::as_str)
                .find(|k| self.lookup(k, &e.name).is_ok())
                .unwrap_or(ListenerSetKind::ListenerSet.as_str());
            self.gateway_like(kind, e);
        }
        for e in &step.routes {
            self.route(e);
        }
        for e in &step.policies {
            self.policy(e);
        }
    }

    /// Every Gateway in `ns` (except those annotated
    /// `gateway-api/skip-this-for-readiness: "true"`) has Accepted=True and
    /// Programmed=True with current observedGeneration. The simulated
    /// cluster runs no kubelet: its Pods are taken as Ready.
    fn namespace_ready(&self, ns: &str) -> Outcome {
        let mut bad = Vec::new();
        for (key, value) in self.cluster.iter() {
            if key.kind != "Gateway" || key.namespace != ns {
                continue;
            }
            let skip = value
                .pointer("/metadata/annotations/gateway-api~1skip-this-for-readiness")
                .and_then(Value::as_str)
                == Some("true");
            if skip {
                continue;
            }
            let generation = value
                .pointer("/metadata/generation")
                .and_then(Value::as_i64);
            let status: GatewayStatus = match status_of(value) {
                Ok(s) => s,
                Err(e) => {
                    bad.push(format!("{}: {e}", key.name));
                    continue;
                }
            };
            for ty in ["Accepted", "Programmed"] {
                let ok = status.conditions.iter().any(|c| {
                    c.type_ == ty && c.status == "True" && c.observed_generation == generation
                });
                if !ok {
                    let has = status
                        .conditions
                        .iter()
                        .find(|c| c.type_ == ty)
                        .map_or_else(|| "absent".to_string(), show_cond);
                    bad.push(format!("{} {ty}=True not current ({has})", key.name));
                }
            }
        }
        pass_if(bad.is_empty(), || {
            format!("Gateways not ready: {}", bad.join("; "))
        })
    }

    fn gateway_class(&mut self, e: &GatewayClassExpect) {
        let what = format!("GatewayClass {}", e.name);
        let found = self.lookup("GatewayClass", &e.name).and_then(|(_, v)| {
            let st: GatewayClassStatus = status_of(v)?;
            Ok((
                v.pointer("/metadata/generation").and_then(Value::as_i64),
                st,
            ))
        });
        if e.latest_conditions {
            let o = match &found {
                Ok((g, st)) => check_latest(*g, &st.conditions),
                Err(err) => Outcome::Fail(err.clone()),
            };
            self.push(format!("{what}: latestConditions"), o);
        }
        for c in &e.conditions {
            let o = match &found {
                Ok((_, st)) => check_cond(&st.conditions, c),
                Err(err) => Outcome::Fail(err.clone()),
            };
            self.push(format!("{what}: condition {c}"), o);
        }
    }

    /// Gateways and ListenerSets share their expectation shape.
    fn gateway_like(&mut self, kind: &str, e: &GatewayExpect) {
        let what = format!("{kind} {}", e.name);
        // (generation, conditions, listeners, addresses, attachedListenerSets)
        type Seen = (Option<i64>, GatewayStatus);
        let found: Result<Seen, String> = self.lookup(kind, &e.name).and_then(|(_, v)| {
            let generation = v.pointer("/metadata/generation").and_then(Value::as_i64);
            let st = if ListenerSetKind::parse(kind).is_some() {
                let ls: ListenerSetStatus = status_of(v)?;
                GatewayStatus {
                    conditions: ls.conditions,
                    listeners: ls.listeners,
                    ..GatewayStatus::default()
                }
            } else {
                status_of::<GatewayStatus>(v)?
            };
            Ok((generation, st))
        });
        let with = |f: &dyn Fn(&Seen) -> Outcome| match &found {
            Ok(s) => f(s),
            Err(err) => Outcome::Fail(err.clone()),
        };
        if e.latest_conditions {
            let o = with(&|(g, st)| check_latest(*g, &st.conditions));
            self.push(format!("{what}: latestConditions"), o);
        }
        for c in &e.conditions {
            let o = with(&|(_, st)| check_cond(&st.conditions, c));
            self.push(format!("{what}: condition {c}"), o);
        }
        if let Some(want) = &e.addresses {
            let o = with(&|(_, st)| addresses(kind, want, st));
            self.push(format!("{what}: addresses {want}"), o);
        }
        if let Some(sa) = &e.status_addresses {
            let spec = self
                .lookup(kind, &e.name)
                .ok()
                .and_then(|(_, v)| v.pointer("/spec/addresses").cloned());
            let o = with(&|(_, st)| status_addresses(sa, st, spec.as_ref()));
            self.push(format!("{what}: statusAddresses"), o);
        }
        if e.listeners_exact {
            let n = e.listeners.len();
            let o = with(&|(_, st)| {
                pass_if(st.listeners.len() == n, || {
                    format!(
                        "{} listeners in status ({}), expected {n}",
                        st.listeners.len(),
                        st.listeners
                            .iter()
                            .map(|l| l.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
            });
            self.push(format!("{what}: listenersExact {n}"), o);
        }
        if e.zero_routes {
            let o = with(&|(_, st)| {
                let ok = st.listeners.is_empty()
                    || (st.listeners.len() == 1 && st.listeners[0].attached_routes == 0);
                pass_if(ok, || {
                    format!(
                        "listeners: {}",
                        st.listeners
                            .iter()
                            .map(|l| format!("{}={}", l.name, l.attached_routes))
                            .collect::<Vec<_>>()
                            .join(", ")
                    )
                })
            });
            self.push(format!("{what}: zeroRoutes"), o);
        }
        if let Some(n) = e.attached_listener_sets {
            let o = if kind == "Gateway" {
                with(&|(_, st)| {
                    let got = i64::from(st.attached_listener_sets.unwrap_or(0));
                    pass_if(got == n, || format!("attachedListenerSets is {got}"))
                })
            } else {
                Outcome::Fail("attachedListenerSets is a Gateway field".to_string())
            };
            self.push(format!("{what}: attachedListenerSets={n}"), o);
        }
        for l in &e.listeners {
            let lwhat = format!("{what}: listener {}", l.name);
            let listener: Result<ListenerStatus, String> =
                found.as_ref().map_err(Clone::clone).and_then(|(_, st)| {
                    st.listeners
                        .iter()
                        .find(|s| s.name == l.name)
                        .cloned()
                        .ok_or_else(|| {
                            format!(
                                "not in status.listeners ({})",
                                st.listeners
                                    .iter()
                                    .map(|s| s.name.as_str())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            )
                        })
                });
            self.listener(&lwhat, l, &listener);
        }
    }

    fn listener(&mut self, what: &str, l: &ListenerExpect, found: &Result<ListenerStatus, String>) {
        let with = |f: &dyn Fn(&ListenerStatus) -> Outcome| match found {
            Ok(s) => f(s),
            Err(err) => Outcome::Fail(err.clone()),
        };
        if let Some(n) = l.attached_routes {
            let o = with(&|s| {
                pass_if(i64::from(s.attached_routes) == n, || {
                    format!("attachedRoutes is {}", s.attached_routes)
                })
            });
            self.push(format!("{what}: attachedRoutes={n}"), o);
        }
        if let Some(kinds) = &l.supported_kinds {
            let shown = kinds
                .iter()
                .map(|k| k.kind.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            let o = with(&|s| {
                let have: Vec<(String, String)> = s
                    .supported_kinds
                    .iter()
                    .map(|k| {
                        (
                            k.group.clone().unwrap_or_else(|| GATEWAY_GROUP.to_string()),
                            k.kind.clone(),
                        )
                    })
                    .collect();
                let show_have = || {
                    have.iter()
                        .map(|(g, k)| format!("{g}/{k}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                if kinds.is_empty() {
                    return pass_if(have.is_empty(), || {
                        format!("must be empty; has {}", show_have())
                    });
                }
                let missing: Vec<String> = kinds
                    .iter()
                    .filter(|k| {
                        let g = k.group.as_deref().unwrap_or(GATEWAY_GROUP);
                        !have.iter().any(|(hg, hk)| hg == g && *hk == k.kind)
                    })
                    .map(|k| k.kind.clone())
                    .collect();
                pass_if(missing.is_empty(), || {
                    format!("missing {}; has [{}]", missing.join(", "), show_have())
                })
            });
            self.push(format!("{what}: supportedKinds [{shown}]"), o);
        }
        for c in &l.conditions {
            let o = with(&|s| check_cond(&s.conditions, c));
            self.push(format!("{what}: condition {c}"), o);
        }
    }

    fn route(&mut self, e: &RouteExpect) {
        let what = format!("{} {}", e.kind, e.name);
        let found = self.lookup(&e.kind, &e.name).and_then(|(key, v)| {
            let generation = v.pointer("/metadata/generation").and_then(Value::as_i64);
            let st: RouteStatus = status_of(v)?;
            Ok((key, generation, st))
        });
        if e.latest_conditions {
            let o = match &found {
                Ok((_, g, st)) => {
                    if st.parents.is_empty() {
                        Outcome::Fail("no status.parents".to_string())
                    } else {
                        check_latest(*g, st.parents.iter().flat_map(|p| &p.conditions))
                    }
                }
                Err(err) => Outcome::Fail(err.clone()),
            };
            self.push(format!("{what}: latestConditions"), o);
        }
        if e.no_accepted_parents {
            let o = match &found {
                Ok((_, _, st)) => {
                    let ok = st.parents.is_empty()
                        || (st.parents.len() == 1
                            && st.parents[0]
                                .conditions
                                .iter()
                                .any(|c| c.type_ == "Accepted" && c.status == "False"));
                    pass_if(ok, || {
                        format!(
                            "status.parents: {}",
                            st.parents
                                .iter()
                                .map(|p| format!(
                                    "{} [{}]",
                                    p.parent_ref.name,
                                    p.conditions
                                        .iter()
                                        .map(show_cond)
                                        .collect::<Vec<_>>()
                                        .join(", ")
                                ))
                                .collect::<Vec<_>>()
                                .join("; ")
                        )
                    })
                }
                Err(err) => Outcome::Fail(err.clone()),
            };
            self.push(format!("{what}: noAcceptedParents"), o);
        }
        for p in &e.parents {
            let pwhat = format!("{what}: parent {}", show_ref(&p.parent_ref));
            let matching: Result<Vec<&gwcore::status::RouteParentStatus>, String> = match &found {
                Ok((key, _, st)) => {
                    let required = p.namespace_required.unwrap_or_else(|| {
                        p.parent_ref.namespace.as_deref().unwrap_or(&key.namespace) != key.namespace
                    });
                    let want_controller = p
                        .controller_name
                        .as_ref()
                        .map(|c| c.replace("{CONTROLLER_NAME}", self.controller));
                    let m: Vec<_> = st
                        .parents
                        .iter()
                        .filter(|s| {
                            parent_matches(&s.parent_ref, &p.parent_ref, required)
                                && want_controller
                                    .as_ref()
                                    .is_none_or(|c| *c == s.controller_name)
                        })
                        .collect();
                    if m.is_empty() {
                        Err(format!(
                            "no matching status.parents entry{}; has [{}]",
                            want_controller
                                .map(|c| format!(" of controller {c}"))
                                .unwrap_or_default(),
                            st.parents
                                .iter()
                                .map(|s| format!(
                                    "{}/{}/{} ns={} by {}",
                                    s.parent_ref.group.as_deref().unwrap_or("-"),
                                    s.parent_ref.kind.as_deref().unwrap_or("-"),
                                    s.parent_ref.name,
                                    s.parent_ref.namespace.as_deref().unwrap_or("-"),
                                    s.controller_name
                                ))
                                .collect::<Vec<_>>()
                                .join("; ")
                        ))
                    } else {
                        Ok(m)
                    }
                }
                Err(err) => Err(err.clone()),
            };
            for c in &p.conditions {
                let o = match &matching {
                    Ok(m) => {
                        if m.iter()
                            .any(|s| s.conditions.iter().any(|x| cond_matches(x, c)))
                        {
                            Outcome::Pass
                        } else {
                            let all: Vec<Condition> =
                                m.iter().flat_map(|s| s.conditions.clone()).collect();
                            Outcome::Fail(format!("{c} missing; {}", show_conds(&all)))
                        }
                    }
                    Err(err) => Outcome::Fail(err.clone()),
                };
                self.push(format!("{pwhat}: condition {c}"), o);
            }
        }
        for n in &e.not_parents {
            let o = match &found {
                Ok((_, _, st)) => {
                    let hit = st
                        .parents
                        .iter()
                        .any(|s| parent_matches(&s.parent_ref, n, false));
                    pass_if(!hit, || "present in status.parents".to_string())
                }
                Err(err) => Outcome::Fail(err.clone()),
            };
            self.push(format!("{what}: not parent {}", show_ref(n)), o);
        }
    }

    fn policy(&mut self, e: &PolicyExpect) {
        let what = format!("{} {}", e.kind, e.name);
        let found = self.lookup(&e.kind, &e.name).and_then(|(_, v)| {
            let generation = v.pointer("/metadata/generation").and_then(Value::as_i64);
            let st: PolicyStatus = status_of(v)?;
            Ok((generation, st))
        });
        if e.latest_conditions {
            let o = match &found {
                Ok((g, st)) => {
                    if st.ancestors.is_empty() {
                        Outcome::Fail("no status.ancestors".to_string())
                    } else {
                        check_latest(*g, st.ancestors.iter().flat_map(|a| &a.conditions))
                    }
                }
                Err(err) => Outcome::Fail(err.clone()),
            };
            self.push(format!("{what}: latestConditions"), o);
        }
        for a in &e.ancestors {
            let awhat = format!("{what}: ancestor {}", show_ref(&a.ancestor_ref));
            for c in &a.conditions {
                let o = match &found {
                    Ok((_, st)) => {
                        let m: Vec<_> = st
                            .ancestors
                            .iter()
                            .filter(|s| {
                                s.ancestor_ref.name == a.ancestor_ref.name
                                    && (s.ancestor_ref.namespace.is_none()
                                        || s.ancestor_ref.namespace == a.ancestor_ref.namespace)
                            })
                            .collect();
                        if m.is_empty() {
                            Outcome::Fail(format!(
                                "no matching status.ancestors entry; has [{}]",
                                st.ancestors
                                    .iter()
                                    .map(|s| s.ancestor_ref.name.clone())
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ))
                        } else if m
                            .iter()
                            .any(|s| s.conditions.iter().any(|x| cond_matches(x, c)))
                        {
                            Outcome::Pass
                        } else {
                            let all: Vec<Condition> =
                                m.iter().flat_map(|s| s.conditions.clone()).collect();
                            Outcome::Fail(format!("{c} missing; {}", show_conds(&all)))
                        }
                    }
                    Err(err) => Outcome::Fail(err.clone()),
                };
                self.push(format!("{awhat}: condition {c}"), o);
            }
        }
    }
}

fn show_ref(r: &ParentRefExpect) -> String {
    match &r.namespace {
        Some(ns) => format!("{ns}/{}", r.name),
        None => r.name.clone(),
    }
}

/// FORMAT.md: equal `name`; `namespace` present and equal when required,
/// otherwise absent or equal; `group`/`kind`, when listed, present in status
/// with these values. `sectionName` and `port` are never compared.
fn parent_matches(
    have: &gwcore::model::ParentReference,
    want: &ParentRefExpect,
    namespace_required: bool,
) -> bool {
    if have.name != want.name {
        return false;
    }
    let ns_ok = match (&have.namespace, &want.namespace) {
        (Some(h), Some(w)) => h == w,
        (None, _) => !namespace_required,
        (Some(_), None) => !namespace_required,
    };
    ns_ok
        && want
            .group
            .as_ref()
            .is_none_or(|g| have.group.as_ref() == Some(g))
        && want
            .kind
            .as_ref()
            .is_none_or(|k| have.kind.as_ref() == Some(k))
}

/// `addresses: present` needs an address a data plane assigned: when the
/// engine wrote none, engine mode cannot judge it. `absent` is checked.
fn addresses(kind: &str, want: &str, st: &GatewayStatus) -> Outcome {
    if kind != "Gateway" {
        return Outcome::Fail(format!("{kind} has no status.addresses"));
    }
    let typed = st.addresses.iter().any(|a| a.type_.is_some());
    match want {
        "present" if typed => Outcome::Pass,
        "present" => Outcome::NotRun(
            "status.addresses are assigned by a data plane; the engine wrote none".to_string(),
        ),
        "absent" => pass_if(st.addresses.is_empty(), || {
            format!("{} addresses present", st.addresses.len())
        }),
        other => Outcome::Fail(format!("unknown addresses expectation {other:?}")),
    }
}

fn status_addresses(
    sa: &crate::vector::StatusAddresses,
    st: &GatewayStatus,
    spec: Option<&Value>,
) -> Outcome {
    let values: Vec<&str> = st.addresses.iter().map(|a| a.value.as_str()).collect();
    if let Some(n) = sa.count
        && values.len() != n
    {
        return Outcome::Fail(format!("{} addresses, expected {n}", values.len()));
    }
    for i in &sa.includes {
        if !values.contains(&i.as_str()) {
            return Outcome::Fail(format!("{i} missing from status.addresses"));
        }
    }
    for x in &sa.excludes {
        if values.contains(&x.as_str()) {
            return Outcome::Fail(format!("{x} present in status.addresses"));
        }
    }
    if sa.type_matches_spec {
        let spec = spec.and_then(Value::as_array).cloned().unwrap_or_default();
        for a in &st.addresses {
            let spec_type = spec
                .iter()
                .find(|s| s.get("value").and_then(Value::as_str) == Some(a.value.as_str()))
                .and_then(|s| s.get("type").and_then(Value::as_str))
                .map_or(AddressType::IpAddress, AddressType::parse);
            if a.type_.as_ref().unwrap_or(&AddressType::IpAddress) != &spec_type {
                return Outcome::Fail(format!(
                    "{} has type {:?}, spec says {spec_type}",
                    a.value, a.type_
                ));
            }
        }
    }
    Outcome::Pass
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(ty: &str, status: &str, reason: &str, generation: Option<i64>) -> Condition {
        Condition {
            type_: ty.into(),
            status: status.into(),
            observed_generation: generation,
            last_transition_time: String::new(),
            reason: reason.into(),
            message: String::new(),
        }
    }

    fn expect(ty: &str, status: Option<&str>, reason: Option<&str>) -> CondExpect {
        CondExpect {
            type_: ty.into(),
            status: status.map(Into::into),
            reason: reason.map(Into::into),
        }
    }

    #[test]
    fn condition_without_status_or_reason_matches_any() {
        let conds = [cond("Accepted", "False", "Invalid", Some(1))];
        assert_eq!(
            check_cond(&conds, &expect("Accepted", None, None)),
            Outcome::Pass
        );
        assert_eq!(
            check_cond(&conds, &expect("Accepted", Some("False"), None)),
            Outcome::Pass
        );
        assert!(matches!(
            check_cond(&conds, &expect("Accepted", Some("True"), None)),
            Outcome::Fail(_)
        ));
        assert!(matches!(
            check_cond(&conds, &expect("Accepted", Some("False"), Some("Accepted"))),
            Outcome::Fail(_)
        ));
    }

    #[test]
    fn latest_conditions_needs_conditions_and_current_generation() {
        assert!(matches!(check_latest(Some(2), &[]), Outcome::Fail(_)));
        let conds = [cond("Accepted", "True", "Accepted", Some(1))];
        assert!(matches!(check_latest(Some(2), &conds), Outcome::Fail(_)));
        assert_eq!(check_latest(Some(1), &conds), Outcome::Pass);
    }

    fn pref(ns: Option<&str>, name: &str) -> gwcore::model::ParentReference {
        gwcore::model::ParentReference {
            namespace: ns.map(Into::into),
            name: name.into(),
            ..Default::default()
        }
    }

    fn want(ns: Option<&str>, name: &str) -> ParentRefExpect {
        ParentRefExpect {
            group: None,
            kind: None,
            namespace: ns.map(Into::into),
            name: name.into(),
            section_name: None,
            port: None,
        }
    }

    #[test]
    fn namespace_must_be_present_only_when_required() {
        let have = pref(None, "gw");
        assert!(parent_matches(&have, &want(Some("infra"), "gw"), false));
        assert!(!parent_matches(&have, &want(Some("infra"), "gw"), true));
        let have = pref(Some("other"), "gw");
        assert!(!parent_matches(&have, &want(Some("infra"), "gw"), false));
    }

    #[test]
    fn listed_group_must_be_present_in_status() {
        let have = pref(Some("infra"), "gw");
        let mut w = want(Some("infra"), "gw");
        w.group = Some(GATEWAY_GROUP.into());
        assert!(!parent_matches(&have, &w, true), "status omits group");
    }
}
