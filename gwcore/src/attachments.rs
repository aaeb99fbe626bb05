//! What the attachment engine hands to the routing table: for each of our
//! Gateways, its valid listeners (ListenerSet listeners merged in) and, per
//! listener, the Accepted routes with their effective hostnames and their
//! rules with every backendRef already resolved.
//!
//! This is the contract between [`crate::engine`] and [`crate::table`]: the
//! table never looks at the snapshot, and the engine never ranks matches.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::sync::Arc;

use serde::Serialize;

use crate::status::Reason;

use crate::extension::{ExtensionKind, ExtensionObject, PolicyValue};
use crate::model::{
    GrpcRouteMatch, HttpRouteFilter, HttpRouteMatch, HttpRouteRetry, HttpRouteTimeouts, Object,
    ObjectKey,
};

/// Routing input for one Gateway.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GatewayRouting {
    /// The Gateway.
    pub gateway: ObjectKey,
    /// Valid listeners in the spec's order: the Gateway's own first, then
    /// those of accepted ListenerSets (oldest set first, then by
    /// namespace/name).
    pub listeners: Vec<ListenerRouting>,
    /// The Secret (`tls.crt`, `tls.key`) of the Gateway's
    /// `spec.tls.backend.clientCertificateRef`, resolved: the client
    /// certificate it presents to backends reached over TLS. `None` when
    /// unset or unresolvable (the Gateway's ResolvedRefs says why).
    pub backend_client_certificate: Option<ObjectKey>,
    /// The extension policies that apply on this Gateway, by what they
    /// target ([`crate::extension::PolicyKind`]); conflicts settled, only
    /// the winners. The table hands them to each listener, rule and
    /// backend.
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        serialize_with = "serialize_policies"
    )]
    pub policies: BTreeMap<PolicyTarget, Vec<AppliedPolicy>>,
}

/// What a policy applies to, on one Gateway (GEP-713 direct attachment,
/// `sectionName` resolved).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[non_exhaustive]
pub enum PolicyTarget {
    /// The whole Gateway.
    Gateway,
    /// One listener of it, by name.
    Listener(String),
    /// A route attached to it.
    Route(ObjectKey),
    /// One named rule of such a route.
    Rule(ObjectKey, String),
    /// A Service its routes send to.
    Service(ObjectKey),
    /// One port of such a Service (by number; the policy named it).
    ServicePort(ObjectKey, u16),
}

/// Policies by target, as a list of pairs (a target is no string key).
fn serialize_policies<S: serde::Serializer>(
    policies: &BTreeMap<PolicyTarget, Vec<AppliedPolicy>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(policies.iter())
}

/// A policy that applies, with its parsed value.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AppliedPolicy {
    /// The policy object.
    pub policy: ObjectKey,
    /// Its parsed value ([`crate::extension::PolicyKind::parse`]).
    pub value: PolicyValue,
    /// The object it was parsed from.
    pub object: Arc<ExtensionObject>,
    /// The objects its parse looked up that exist, in key order
    /// ([`crate::extension::PolicyContext::get`]). The value is a function
    /// of the object's spec and of these, so two applied policies are equal
    /// when those are.
    pub read: Arc<Vec<Object>>,
}

/// The policy's key and spec (what its value is parsed from).
impl Serialize for AppliedPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("AppliedPolicy", 2)?;
        st.serialize_field("policy", &self.policy)?;
        st.serialize_field("spec", &self.object.spec)?;
        st.end()
    }
}

impl AppliedPolicy {
    /// The policy's kind.
    pub fn kind(&self) -> ExtensionKind {
        self.object.kind
    }
}

/// Equal when the policy, its spec and the objects its parse read are: the
/// value is parsed from those, and a status written back to the policy
/// changes nothing that applies.
impl PartialEq for AppliedPolicy {
    fn eq(&self, other: &Self) -> bool {
        self.policy == other.policy
            && (Arc::ptr_eq(&self.object, &other.object) || self.object.spec == other.object.spec)
            && (Arc::ptr_eq(&self.read, &other.read) || self.read == other.read)
    }
}

/// The protocol of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum ListenerProtocol {
    /// `HTTP`
    Http,
    /// `HTTPS`
    Https,
    /// `TLS`
    Tls,
    /// `TCP`
    Tcp,
    /// `UDP`
    Udp,
}

impl ListenerProtocol {
    /// The protocol of a listener's spec, when gwcore serves it.
    pub fn from_spec(p: &crate::values::ProtocolType) -> Option<Self> {
        use crate::values::ProtocolType as P;
        Some(match p {
            P::Http => ListenerProtocol::Http,
            P::Https => ListenerProtocol::Https,
            P::Tls => ListenerProtocol::Tls,
            P::Tcp => ListenerProtocol::Tcp,
            P::Udp => ListenerProtocol::Udp,
            P::Other(_) => return None,
        })
    }
}

/// TLS mode of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TlsMode {
    /// TLS is terminated at the Gateway.
    Terminate,
    /// The TLS stream is forwarded by SNI.
    Passthrough,
}

/// One valid listener and the routes attached to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListenerRouting {
    /// Listener name (unique within its Gateway or ListenerSet).
    pub name: String,
    /// The Gateway or ListenerSet that declares it.
    pub source: ObjectKey,
    /// Port.
    pub port: u16,
    /// Protocol.
    pub protocol: ListenerProtocol,
    /// Hostname, possibly a wildcard (`*.example.com`); `None` matches all.
    pub hostname: Option<String>,
    /// TLS mode, for HTTPS and TLS listeners.
    pub tls_mode: Option<TlsMode>,
    /// Resolved certificate Secrets, in `certificateRefs` order.
    pub certificates: Vec<ObjectKey>,
    /// Client certificate validation for this HTTPS listener (the
    /// Gateway's `spec.tls.frontend`: the `perPort` entry of its port, else
    /// `default`); `None`: clients are not asked for a certificate.
    pub frontend_validation: Option<FrontendValidation>,
    /// Accepted routes attached to this listener, sorted by key. A
    /// persistent list: a copy shares its storage, and the copy the engine
    /// hands out after one route changed shares all but that route's
    /// chunk with the one before, which lets [`crate::table::Table::update`]
    /// find the change without comparing every route.
    pub routes: RouteList,
}

/// How an HTTPS listener validates client certificates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FrontendValidation {
    /// The CA bundles (ConfigMaps or Secrets holding a PEM `ca.crt`), in
    /// `caCertificateRefs` order, every one resolved and readable.
    pub ca_certificates: Vec<ObjectKey>,
    /// `mode: AllowInsecureFallback`: a client without a valid certificate
    /// is let in all the same (the default, `AllowValidOnly`, refuses it).
    pub allow_insecure_fallback: bool,
}

/// A route attached to one listener.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttachedRoute {
    /// The route (kind, namespace, name).
    pub key: ObjectKey,
    /// `metadata.creationTimestamp`; `None` sorts as oldest-equal.
    pub creation_timestamp: Option<String>,
    /// Effective hostnames: the intersection of the route's `hostnames` with
    /// the listener's hostname. Empty means "any host the listener accepts".
    pub hostnames: Vec<String>,
    /// The rules.
    pub rules: RouteRules,
}

/// A route's rules, by route family.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum RouteRules {
    /// HTTPRoute rules.
    Http(Arc<Vec<HttpRule>>),
    /// GRPCRoute rules.
    Grpc(Arc<Vec<GrpcRule>>),
    /// TLSRoute / TCPRoute / UDPRoute rules.
    L4(Arc<Vec<L4Rule>>),
}

/// An HTTPRoute rule with defaults applied and refs resolved. Built by the
/// engine (or by [`HttpRule::new`]); it may gain fields in a minor release.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct HttpRule {
    /// Index in `spec.rules`.
    pub index: usize,
    /// `rules[].name`.
    pub name: Option<String>,
    /// Matches (defaults applied; never empty).
    pub matches: Vec<HttpRouteMatch>,
    /// Filters as written (RequestMirror targets are in `mirrors`).
    pub filters: Vec<HttpRouteFilter>,
    /// The objects the `ExtensionRef` filters name, resolved, in filter
    /// order (an unresolved one is missing: the table answers 500 for it).
    pub extension_refs: Vec<Arc<ExtensionObject>>,
    /// The authorization services of the `ExternalAuth` filters, one per
    /// filter in filter order: the Service port, or why its backendRef
    /// does not resolve (the table answers 500 for it: fail closed).
    pub external_auth: Vec<Result<BackendTarget, BackendError>>,
    /// Resolved mirror targets of the rule's RequestMirror filters, in order.
    pub mirrors: Vec<Mirror>,
    /// Backends; empty when the rule has no backendRefs.
    pub backends: Vec<ResolvedBackend>,
    /// Timeouts.
    pub timeouts: Option<Box<HttpRouteTimeouts>>,
    /// Retry policy.
    pub retry: Option<Box<HttpRouteRetry>>,
    /// `sessionPersistence`, parsed.
    pub session_persistence: Option<Arc<crate::session::SessionPersistence>>,
}

/// A GRPCRoute rule with refs resolved. Built by the engine (or by
/// [`GrpcRule::new`]); it may gain fields in a minor release.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct GrpcRule {
    /// Index in `spec.rules`.
    pub index: usize,
    /// `rules[].name`.
    pub name: Option<String>,
    /// Matches; empty matches every gRPC request.
    pub matches: Vec<GrpcRouteMatch>,
    /// Filters as written.
    pub filters: Vec<HttpRouteFilter>,
    /// The objects the `ExtensionRef` filters name, resolved.
    pub extension_refs: Vec<Arc<ExtensionObject>>,
    /// Resolved mirror targets.
    pub mirrors: Vec<Mirror>,
    /// Backends.
    pub backends: Vec<ResolvedBackend>,
    /// `sessionPersistence`, parsed.
    pub session_persistence: Option<Arc<crate::session::SessionPersistence>>,
}

impl HttpRule {
    /// Rule `index` of its route with `matches` (never empty: a rule
    /// without matches has the one that matches every path) to `backends`,
    /// with no filter, name, timeout, retry or session: set the public
    /// fields for more. For data planes and benchmarks that build routing
    /// without the engine.
    pub fn new(index: usize, matches: Vec<HttpRouteMatch>, backends: Vec<ResolvedBackend>) -> Self {
        HttpRule {
            index,
            name: None,
            matches,
            filters: Vec::new(),
            extension_refs: Vec::new(),
            external_auth: Vec::new(),
            mirrors: Vec::new(),
            backends,
            timeouts: None,
            retry: None,
            session_persistence: None,
        }
    }
}

impl GrpcRule {
    /// Rule `index` of its route with `matches` (empty matches every gRPC
    /// request) to `backends`, with no filter, name or session: set the
    /// public fields for more.
    pub fn new(index: usize, matches: Vec<GrpcRouteMatch>, backends: Vec<ResolvedBackend>) -> Self {
        GrpcRule {
            index,
            name: None,
            matches,
            filters: Vec::new(),
            extension_refs: Vec::new(),
            mirrors: Vec::new(),
            backends,
            session_persistence: None,
        }
    }
}

/// A TLSRoute / TCPRoute / UDPRoute rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct L4Rule {
    /// Index in `spec.rules`.
    pub index: usize,
    /// `rules[].name`.
    pub name: Option<String>,
    /// Backends.
    pub backends: Vec<ResolvedBackend>,
}

/// A backendRef after resolution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolvedBackend {
    /// Weight (default 1; 0 = never chosen).
    pub weight: u32,
    /// The Service and port, or why it cannot be used. An invalid backend
    /// keeps its weight: its share of requests is answered with 500.
    pub target: Result<BackendTarget, BackendError>,
    /// Backend-level filters.
    pub filters: Vec<HttpRouteFilter>,
    /// The objects the backend's `ExtensionRef` filters name, resolved.
    pub extension_refs: Vec<Arc<ExtensionObject>>,
    /// The authorization services of the backend's `ExternalAuth`
    /// filters, one per filter in filter order ([`HttpRule::external_auth`]).
    pub external_auth: Vec<Result<BackendTarget, BackendError>>,
}

/// A resolved Service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct BackendTarget {
    /// The Service.
    pub service: ObjectKey,
    /// The Service port.
    pub port: u16,
    /// The Service port's `appProtocol` (`kubernetes.io/h2c`, `kubernetes.io/ws`...).
    pub app_protocol: Option<String>,
    /// The TLS to reach it with, when a BackendTLSPolicy targets the
    /// Service (or this port of it, which wins); `None`: plain text.
    pub tls: Option<Arc<BackendTls>>,
}

/// How a backend is reached over TLS (BackendTLSPolicy).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct BackendTls {
    /// The policy.
    pub policy: ObjectKey,
    /// `validation.hostname`: the SNI sent, and the name the certificate
    /// must carry unless `subject_alt_names` are given.
    pub hostname: String,
    /// CA bundles (ConfigMaps or Secrets holding a PEM `ca.crt`) to trust,
    /// in `caCertificateRefs` order.
    pub ca_certificates: Vec<ObjectKey>,
    /// `wellKnownCACertificates: System`: trust the system's CAs.
    pub system_roots: bool,
    /// `validation.subjectAltNames`: any one of these must be in the
    /// certificate (instead of `hostname`).
    pub subject_alt_names: Vec<SubjectAltName>,
    /// Why the policy cannot be used (its CA references do not resolve):
    /// the backend must not be reached at all, its requests answer 5xx.
    pub invalid: Option<String>,
}

/// A subject alternative name a backend certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum SubjectAltName {
    /// A DNS name.
    Hostname(String),
    /// A URI (SPIFFE IDs and the like).
    Uri(String),
}

/// Why a backendRef cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendError {
    /// The ResolvedRefs reason (`BackendNotFound`, `RefNotPermitted`, `InvalidKind`...).
    pub reason: Reason,
    /// A sentence for people.
    pub message: String,
}

/// A mirror target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mirror {
    /// Where to send the copy.
    pub target: BackendTarget,
    /// Share of requests mirrored, 0.0..=1.0 (default 1.0).
    pub fraction: f64,
}

/// Routes per chunk of a [`RouteList`] when built; a chunk splits in two
/// when it grows past twice this.
const CHUNK: usize = 64;

/// The routes attached to one listener: sorted by key, at most one per
/// key, stored in shared chunks.
///
/// Cloning copies one pointer per chunk (of up to 128 routes), not the
/// routes; [`RouteList::insert`] and [`RouteList::remove`] copy the one
/// chunk they change when it is shared, so a list and its edited copy
/// share every other chunk. What changed between two such lists is found
/// by skipping the chunks they share, in time that grows with the change,
/// not with the list.
///
/// ```
/// use std::sync::Arc;
/// use gwcore::attachments::{AttachedRoute, RouteList, RouteRules};
/// use gwcore::model::{Kind, ObjectKey};
///
/// let route = |name: &str| Arc::new(AttachedRoute {
///     key: ObjectKey::new(Kind::HttpRoute, "apps", name),
///     creation_timestamp: None,
///     hostnames: vec![],
///     rules: RouteRules::Http(Arc::new(vec![])),
/// });
/// let list: RouteList = [route("b"), route("a"), route("b")].into_iter().collect();
/// // Sorted by key; of two routes with one key, the first is kept.
/// let names: Vec<&str> = list.iter().map(|r| r.key.name.as_str()).collect();
/// assert_eq!(names, ["a", "b"]);
/// let mut edited = list.clone();
/// edited.insert(route("c"));
/// assert_eq!((list.len(), edited.len()), (2, 3));
/// ```
#[derive(Clone, Default)]
pub struct RouteList {
    /// Consecutive runs of the routes, each non-empty.
    chunks: Vec<Arc<Vec<Arc<AttachedRoute>>>>,
    len: usize,
}

impl RouteList {
    /// An empty list.
    pub fn new() -> RouteList {
        RouteList::default()
    }

    /// The number of routes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there is no route.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The routes, by key.
    pub fn iter(&self) -> RouteListIter<'_> {
        RouteListIter {
            chunks: self.chunks.iter(),
            chunk: [].iter(),
        }
    }

    /// The index of the chunk that holds `key`, or would: the first whose
    /// last key is not less than it (`chunks.len()` when every key is).
    fn chunk_of(&self, key: &ObjectKey) -> usize {
        self.chunks
            .partition_point(|c| c.last().is_some_and(|r| r.key < *key))
    }

    /// The route of `key`.
    pub fn get(&self, key: &ObjectKey) -> Option<&Arc<AttachedRoute>> {
        let chunk = self.chunks.get(self.chunk_of(key))?;
        let i = chunk.binary_search_by(|r| r.key.cmp(key)).ok()?;
        Some(&chunk[i])
    }

    /// Adds `route` in its key's place; returns the route of that key it
    /// replaces.
    pub fn insert(&mut self, route: Arc<AttachedRoute>) -> Option<Arc<AttachedRoute>> {
        if self.chunks.is_empty() {
            self.chunks.push(Arc::new(vec![route]));
            self.len = 1;
            return None;
        }
        // Past the last key: the last chunk grows.
        let ci = self.chunk_of(&route.key).min(self.chunks.len() - 1);
        let chunk = Arc::make_mut(&mut self.chunks[ci]);
        match chunk.binary_search_by(|r| r.key.cmp(&route.key)) {
            Ok(i) => Some(std::mem::replace(&mut chunk[i], route)),
            Err(i) => {
                chunk.insert(i, route);
                self.len += 1;
                if chunk.len() > 2 * CHUNK {
                    let tail = chunk.split_off(chunk.len() / 2);
                    self.chunks.insert(ci + 1, Arc::new(tail));
                }
                None
            }
        }
    }

    /// Removes the route of `key`, and returns it.
    pub fn remove(&mut self, key: &ObjectKey) -> Option<Arc<AttachedRoute>> {
        let ci = self.chunk_of(key);
        let i = self
            .chunks
            .get(ci)?
            .binary_search_by(|r| r.key.cmp(key))
            .ok()?;
        let chunk = Arc::make_mut(&mut self.chunks[ci]);
        let route = chunk.remove(i);
        if chunk.is_empty() {
            self.chunks.remove(ci);
        }
        self.len -= 1;
        Some(route)
    }

    /// Walks what differs from `self` to `newer`, in key order: `f` gets
    /// each route only `self` has (`(Some, None)`), only `newer` has
    /// (`(None, Some)`), and each key whose routes are not the same `Arc`
    /// (`(Some, Some)`, maybe equal). Chunks both lists share are skipped
    /// whole, so two versions of one list are compared in time that grows
    /// with their differences. Stops at the first `Break` of `f`.
    pub(crate) fn diff<'a>(
        &'a self,
        newer: &'a RouteList,
        mut f: impl FnMut(
            Option<&'a Arc<AttachedRoute>>,
            Option<&'a Arc<AttachedRoute>>,
        ) -> ControlFlow<()>,
    ) -> ControlFlow<()> {
        let (a, b) = (&self.chunks, &newer.chunks);
        // (chunk, index in it) of each side.
        let (mut ac, mut ai, mut bc, mut bi) = (0, 0, 0, 0);
        let step = |c: &mut usize, i: &mut usize, chunks: &[Arc<Vec<Arc<AttachedRoute>>>]| {
            *i += 1;
            if *i == chunks[*c].len() {
                *i = 0;
                *c += 1;
            }
        };
        loop {
            while ai == 0 && bi == 0 && ac < a.len() && bc < b.len() && Arc::ptr_eq(&a[ac], &b[bc])
            {
                ac += 1;
                bc += 1;
            }
            let x = a.get(ac).map(|c| &c[ai]);
            let y = b.get(bc).map(|c| &c[bi]);
            let order = match (x, y) {
                (None, None) => return ControlFlow::Continue(()),
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some(x), Some(y)) => x.key.cmp(&y.key),
            };
            match order {
                Ordering::Less => {
                    f(x, None)?;
                    step(&mut ac, &mut ai, a);
                }
                Ordering::Greater => {
                    f(None, y)?;
                    step(&mut bc, &mut bi, b);
                }
                Ordering::Equal => {
                    if let (Some(x), Some(y)) = (x, y)
                        && !Arc::ptr_eq(x, y)
                    {
                        f(Some(x), Some(y))?;
                    }
                    step(&mut ac, &mut ai, a);
                    step(&mut bc, &mut bi, b);
                }
            }
        }
    }
}

/// Sorts by key; of routes with equal keys, the first is kept.
impl FromIterator<Arc<AttachedRoute>> for RouteList {
    fn from_iter<I: IntoIterator<Item = Arc<AttachedRoute>>>(iter: I) -> RouteList {
        let mut all: Vec<Arc<AttachedRoute>> = iter.into_iter().collect();
        all.sort_by(|x, y| x.key.cmp(&y.key));
        all.dedup_by(|later, first| later.key == first.key);
        let len = all.len();
        let mut chunks = Vec::with_capacity(len.div_ceil(CHUNK));
        let mut rest = all.into_iter();
        loop {
            let chunk: Vec<_> = rest.by_ref().take(CHUNK).collect();
            if chunk.is_empty() {
                break;
            }
            chunks.push(Arc::new(chunk));
        }
        RouteList { chunks, len }
    }
}

/// As [`RouteList::from_iter`]: sorted by key, the first of equal keys kept.
impl From<Vec<Arc<AttachedRoute>>> for RouteList {
    fn from(routes: Vec<Arc<AttachedRoute>>) -> RouteList {
        routes.into_iter().collect()
    }
}

/// The `index`th route by key (walks the chunks).
///
/// # Panics
///
/// When `index` is not less than [`RouteList::len`].
impl std::ops::Index<usize> for RouteList {
    type Output = Arc<AttachedRoute>;

    fn index(&self, index: usize) -> &Arc<AttachedRoute> {
        let mut rest = index;
        for c in &self.chunks {
            if rest < c.len() {
                return &c[rest];
            }
            rest -= c.len();
        }
        panic!("route index {index} out of range for {} routes", self.len)
    }
}

/// Equal routes in the same order (shared chunks are not compared route
/// by route).
impl PartialEq for RouteList {
    fn eq(&self, other: &RouteList) -> bool {
        self.len == other.len
            && self
                .diff(other, |x, y| match (x, y) {
                    (Some(x), Some(y)) if x == y => ControlFlow::Continue(()),
                    _ => ControlFlow::Break(()),
                })
                .is_continue()
    }
}

impl std::fmt::Debug for RouteList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

/// A sequence of routes, as a `Vec` of them is.
impl Serialize for RouteList {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.iter())
    }
}

impl<'a> IntoIterator for &'a RouteList {
    type Item = &'a Arc<AttachedRoute>;
    type IntoIter = RouteListIter<'a>;

    fn into_iter(self) -> RouteListIter<'a> {
        self.iter()
    }
}

/// The routes of a [`RouteList`], by key.
#[derive(Debug, Clone)]
pub struct RouteListIter<'a> {
    chunks: std::slice::Iter<'a, Arc<Vec<Arc<AttachedRoute>>>>,
    chunk: std::slice::Iter<'a, Arc<AttachedRoute>>,
}

impl<'a> Iterator for RouteListIter<'a> {
    type Item = &'a Arc<AttachedRoute>;

    fn next(&mut self) -> Option<&'a Arc<AttachedRoute>> {
        loop {
            if let Some(r) = self.chunk.next() {
                return Some(r);
            }
            self.chunk = self.chunks.next()?.iter();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Kind;
    use proptest::prelude::*;

    fn route(name: usize, version: usize) -> Arc<AttachedRoute> {
        Arc::new(AttachedRoute {
            key: ObjectKey::new(Kind::HttpRoute, "ns", format!("r{name:04}")),
            creation_timestamp: None,
            hostnames: vec![format!("v{version}.test")],
            rules: RouteRules::Http(Arc::new(vec![])),
        })
    }

    /// What [`RouteList::diff`] reports from `old` to `new`, as
    /// (key, old hostnames, new hostnames).
    type Change = (ObjectKey, Option<Vec<String>>, Option<Vec<String>>);

    fn diff(old: &RouteList, new: &RouteList) -> Vec<Change> {
        let mut out = Vec::new();
        let _ = old.diff(new, |x, y| {
            let key = x.or(y).map(|r| r.key.clone()).expect("one side");
            out.push((
                key,
                x.map(|r| r.hostnames.clone()),
                y.map(|r| r.hostnames.clone()),
            ));
            ControlFlow::Continue(())
        });
        out
    }

    /// The same from two ordered maps.
    fn model_diff(
        old: &BTreeMap<ObjectKey, Arc<AttachedRoute>>,
        new: &BTreeMap<ObjectKey, Arc<AttachedRoute>>,
    ) -> Vec<Change> {
        let keys: std::collections::BTreeSet<&ObjectKey> = old.keys().chain(new.keys()).collect();
        keys.into_iter()
            .filter_map(|k| match (old.get(k), new.get(k)) {
                (Some(x), Some(y)) if Arc::ptr_eq(x, y) => None,
                (x, y) => Some((
                    k.clone(),
                    x.map(|r| r.hostnames.clone()),
                    y.map(|r| r.hostnames.clone()),
                )),
            })
            .collect()
    }

    proptest! {
        /// Any sequence of inserts and removes (enough to split chunks
        /// and empty them) leaves the list an ordered map would be, and
        /// `diff` between any two versions reports exactly the keys whose
        /// routes differ.
        #[test]
        fn route_list_behaves_as_an_ordered_map(
            start in 0usize..300,
            edits in prop::collection::vec((any::<bool>(), 0usize..400), 1..300),
        ) {
            let mut list: RouteList = (0..start).map(|i| route(i * 7 % 400, 0)).collect();
            let mut model: BTreeMap<ObjectKey, Arc<AttachedRoute>> =
                list.iter().map(|r| (r.key.clone(), r.clone())).collect();
            let (first, first_model) = (list.clone(), model.clone());
            for (step, (add, k)) in edits.into_iter().enumerate() {
                let (before, before_model) = (list.clone(), model.clone());
                if add {
                    let r = route(k, step + 1);
                    prop_assert_eq!(
                        list.insert(r.clone()).map(|o| o.hostnames.clone()),
                        model.insert(r.key.clone(), r).map(|o| o.hostnames.clone())
                    );
                } else {
                    let key = route(k, 0).key.clone();
                    prop_assert_eq!(list.remove(&key).is_some(), model.remove(&key).is_some());
                }
                prop_assert_eq!(list.len(), model.len());
                prop_assert!(list.chunks.iter().all(|c| !c.is_empty() && c.len() <= 2 * CHUNK));
                let keys: Vec<&ObjectKey> = list.iter().map(|r| &r.key).collect();
                prop_assert_eq!(keys, model.keys().collect::<Vec<_>>());
                let probe = route(k, 0).key.clone();
                prop_assert_eq!(list.get(&probe).is_some(), model.contains_key(&probe));
                if !list.is_empty() {
                    prop_assert_eq!(&list[list.len() - 1].key, model.keys().last().expect("not empty"));
                }
                prop_assert_eq!(diff(&before, &list), model_diff(&before_model, &model));
                prop_assert_eq!(list == before, list.iter().eq(before.iter()));
            }
            prop_assert_eq!(diff(&first, &list), model_diff(&first_model, &model));
            // A list built anew shares nothing and still diffs by key.
            let rebuilt: RouteList = model.values().cloned().collect();
            prop_assert_eq!(diff(&list, &rebuilt), Vec::<Change>::new());
            prop_assert!(list == rebuilt);
        }
    }

    /// An edit copies the one chunk it changes; the others stay shared.
    #[test]
    fn an_edit_shares_the_untouched_chunks() {
        let list: RouteList = (0..1000).map(|i| route(i, 0)).collect();
        let mut edited = list.clone();
        edited.insert(route(500, 1));
        let shared = list
            .chunks
            .iter()
            .zip(&edited.chunks)
            .filter(|(a, b)| Arc::ptr_eq(a, b))
            .count();
        assert_eq!(shared, list.chunks.len() - 1);
        assert_eq!(diff(&list, &edited).len(), 1);
    }

    /// Serialized as the sequence of its routes, as the `Vec` it replaced.
    #[test]
    fn a_route_list_serializes_as_a_sequence() {
        let list: RouteList = (0..3).rev().map(|i| route(i, 0)).collect();
        let as_vec: Vec<Arc<AttachedRoute>> = list.iter().cloned().collect();
        assert_eq!(
            serde_json::to_value(&list).expect("json"),
            serde_json::to_value(&as_vec).expect("json")
        );
        assert_eq!(format!("{list:?}"), format!("{as_vec:?}"));
    }
}
