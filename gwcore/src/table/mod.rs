//! The compiled routing table: from the engine's [`GatewayRouting`] to a
//! [`Decision`] per request.
//!
//! ```text
//!  GatewayRouting ──Table::compile──▶ Table (immutable, Send + Sync, share in an Arc)
//!                                       │
//!  http::request::Parts ──RequestHead::from_parts──▶ Table::find ──▶ Decision
//!                                                                    ├─ listener (always, when one accepts the request)
//!                                                                    ├─ matched: route ns/name, rule index + name, match index
//!                                                                    └─ action: Forward | Redirect | Respond(status)
//! ```
//!
//! # Stable API
//!
//! - [`Table::compile`] / [`Tables::compile`], [`Table::find`],
//!   [`Table::explain`], [`Table::problems`].
//! - [`RequestHead`]: [`RequestHead::from_parts`], [`RequestHead::new`],
//!   [`RequestHead::grpc`], `with_header`, `with_sni`.
//! - [`Decision`] with [`Action`]: [`Forward`] (weighted backends with
//!   [`Forward::pick`], [`Forward::apply_request`],
//!   [`Forward::apply_response`], timeouts, retry, mirrors), redirects with
//!   their `Location`, and direct responses with a [`RespondReason`].
//!
//! # How a request is matched
//!
//! 1. **Port**, then **listener**: on a port, listeners are chosen by
//!    hostname — an exact listener hostname beats a wildcard, a longer
//!    wildcard beats a shorter, any hostname beats none. A request is
//!    served by one listener only. With TLS the listener is chosen by SNI;
//!    if the Host would choose another listener the answer is 421
//!    (Misdirected Request, RFC 9110 §15.5.20), so a connection set up for
//!    one listener never reaches another listener's routes.
//! 2. **Route hostname buckets** of that listener: the exact Host, then
//!    wildcard hostnames from the longest, then routes without hostnames.
//!    Hostname specificity is the first step of the precedence, so the first
//!    bucket with a matching rule holds the winner.
//! 3. In a bucket, a **path trie** by segment: Exact paths at the node where
//!    the path ends, PathPrefix candidates on the way back from the deepest
//!    node (a deeper node is a longer prefix), then RegularExpression paths.
//!    Each list is sorted by [`Precedence`], so the first candidate whose
//!    method, headers and query parameters match wins.
//!
//! A match costs one hash lookup per host label and one step per path
//! segment; it does not grow with the number of routes.
//!
//! # Choices the spec leaves to implementations
//!
//! - **Paths** are normalized before matching and forwarded normalized
//!   ([`path`]): dot segments removed, unreserved escapes decoded, repeated
//!   `/` merged. An encoded `/` (`%2F`) or `\` (`%5C`) is kept as data: it
//!   never separates segments ([`slashes::route`] applies a Gateway's
//!   setting for such paths before matching). A raw `\`, a control
//!   character or a bad escape is answered with 400.
//! - **RegularExpression** paths rank after every Exact and PathPrefix
//!   match; regexes are Rust `regex`, anchored at both ends and
//!   size-limited ([`REGEX_SIZE_LIMIT`]). Regex header and query matches
//!   count as header and query matches.
//! - **Repeated headers** are matched as their values joined by `,`;
//!   **repeated query parameters** by their first value.
//! - **Weights**: [`Forward::pick`] takes the caller's random draw, so the
//!   table stays deterministic; invalid backends keep their weight and their
//!   share answers 500.
//!
//! GRPCRoute rules are kept apart (spec: "Merging MUST not be done between
//! GRPCRoutes and HTTPRoutes"): a gRPC request (`content-type:
//! application/grpc...`) is matched against the GRPCRoute rules first and
//! falls back to HTTPRoute rules only if none matches; other requests never
//! match GRPCRoute rules. The engine has already rejected one of two
//! routes of different families with intersecting hostnames.

pub mod explain;
pub mod filters;
mod index;
mod matching;
pub mod path;
mod precedence;
mod request;
pub mod slashes;
#[cfg(test)]
mod tests;
#[cfg(all(test, feature = "proptest"))]
mod update_tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, StatusCode};
use serde::Serialize;

use crate::attachments::{
    AppliedPolicy, AttachedRoute, BackendError, BackendTarget, GatewayRouting, ListenerProtocol,
    ListenerRouting, Mirror, PolicyTarget, RouteList, RouteRules, TlsMode,
};
use crate::model::{HttpRouteRetry, HttpRouteTimeouts, ObjectKey};
use crate::values::{FilterType, MatchType, PathMatchType};

pub use filters::{
    AuthProtocol, ExtensionFilter, ExternalAuth, Filter, GrpcAuth, HttpAuth, check_filters,
    replace_prefix,
};
pub use matching::{InvalidValue, REGEX_SIZE_LIMIT, compile_regex};
pub use path::PathError;
pub use precedence::{CreationTime, HostRank, MatchRank, PathRank, Precedence, RouteRank, Step};
pub use request::{RequestHead, normalize_host};

use index::{FastMap, HostMap, PathTrie, ROOT, SegKeyed, SegMap, TrieBuilder};
use matching::Conditions;

// ---------------------------------------------------------------------------
// Public descriptions.

/// A listener, as a decision names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct ListenerInfo {
    /// Listener name.
    pub name: String,
    /// The Gateway or ListenerSet that declares it.
    pub source: ObjectKey,
    /// Port.
    pub port: u16,
    /// `HTTP` or `HTTPS`.
    pub protocol: ListenerProtocol,
    /// Hostname; `None` accepts every host.
    pub hostname: Option<String>,
}

impl ListenerInfo {
    /// `http` or `https`: the scheme clients used to reach this listener.
    pub fn scheme(&self) -> &'static str {
        if self.protocol == ListenerProtocol::Https {
            "https"
        } else {
            "http"
        }
    }
}

/// A route attached to a listener.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct RouteInfo {
    /// Kind, namespace, name.
    pub key: ObjectKey,
    /// `metadata.creationTimestamp`.
    pub creation_timestamp: Option<String>,
    /// Effective hostnames on this listener (empty: all it accepts).
    pub hostnames: Vec<String>,
}

/// The family of a matched rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Family {
    /// HTTPRoute.
    Http,
    /// GRPCRoute.
    Grpc,
}

/// A rule's timeouts, parsed. `Some(Duration::ZERO)` disables the timeout
/// (spec: "Setting a timeout to the zero duration (e.g. "0s") SHOULD disable
/// the timeout completely").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Timeouts {
    /// `timeouts.request`.
    pub request: Option<Duration>,
    /// `timeouts.backendRequest`.
    pub backend_request: Option<Duration>,
}

impl Timeouts {
    fn parse(t: Option<&HttpRouteTimeouts>) -> Timeouts {
        let Some(t) = t else {
            return Timeouts::default();
        };
        Timeouts {
            request: t.request.as_ref().and_then(crate::values::Duration::value),
            backend_request: t
                .backend_request
                .as_ref()
                .and_then(crate::values::Duration::value),
        }
    }
}

/// A rule's retry policy (HTTPRouteRetry), parsed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Retry {
    /// Statuses that are retried (400 to 599, as validation ensures).
    pub codes: Vec<u16>,
    /// Retries after the first attempt. Unset, gwcore retries once (the
    /// spec leaves the number to the implementation).
    pub attempts: u32,
    /// Wait between attempts; unset, none.
    pub backoff: Duration,
}

impl Retry {
    fn parse(r: &HttpRouteRetry) -> Retry {
        Retry {
            codes: r
                .codes
                .iter()
                .filter_map(|c| u16::try_from(*c).ok())
                .collect(),
            attempts: r.attempts.map_or(1, |a| u32::try_from(a).unwrap_or(0)),
            backoff: r
                .backoff
                .as_ref()
                .and_then(crate::values::Duration::value)
                .unwrap_or_default(),
        }
    }
}

/// A backend of a rule.
#[derive(Debug, Clone)]
pub struct Backend {
    weight: u32,
    target: Result<BackendTarget, BackendError>,
    filters: Box<[Filter]>,
    /// Whether a filter runs in the data plane ([`Filter::runs_in_data_plane`]).
    extensions: bool,
    /// Policies on its Service, then on its port.
    policies: Box<[AppliedPolicy]>,
}

impl Backend {
    /// The extension policies on the backend's Service, then on its port
    /// (least specific first).
    pub fn policies(&self) -> &[AppliedPolicy] {
        &self.policies
    }

    /// Weight (0: never chosen).
    pub fn weight(&self) -> u32 {
        self.weight
    }

    /// The Service port, or why the backendRef is invalid (its share of
    /// requests answers 500).
    pub fn target(&self) -> Result<&BackendTarget, &BackendError> {
        self.target.as_ref()
    }

    /// Backend-level filters.
    pub fn filters(&self) -> &[Filter] {
        &self.filters
    }
}

/// A compiled rule.
#[derive(Debug)]
pub struct Rule {
    family: Family,
    index: usize,
    name: Option<String>,
    filters: Box<[Filter]>,
    backends: Box<[Backend]>,
    total_weight: u64,
    mirrors: Box<[Mirror]>,
    timeouts: Timeouts,
    retry: Option<Box<Retry>>,
    /// `sessionPersistence` (GEP-1619).
    session_persistence: Option<Arc<crate::session::SessionPersistence>>,
    /// Whether a filter can answer by itself (Unsupported, RequestRedirect,
    /// CORS preflight); when not, `decide` skips the filters.
    scan_filters: bool,
    /// Why the rule cannot forward at all, decided at compile time.
    no_forward: Option<RespondReason>,
    /// Whether a filter runs in the data plane ([`Filter::runs_in_data_plane`]).
    extensions: bool,
    /// Extension policies on the Gateway, the listener, the route and the
    /// rule, least specific first.
    policies: Box<[AppliedPolicy]>,
}

/// The extension policies of one rule being compiled.
struct Policies<'a> {
    index: &'a BTreeMap<PolicyTarget, Vec<AppliedPolicy>>,
    rule: Box<[AppliedPolicy]>,
}

impl<'a> Policies<'a> {
    /// Those on the Gateway, `listener`, `route` and its rule `rule`,
    /// least specific first.
    fn new(
        index: &'a BTreeMap<PolicyTarget, Vec<AppliedPolicy>>,
        listener: &str,
        route: &ObjectKey,
        rule: Option<&str>,
    ) -> Policies<'a> {
        if index.is_empty() {
            return Policies {
                index,
                rule: Box::default(),
            };
        }
        let mut targets = vec![
            PolicyTarget::Gateway,
            PolicyTarget::Listener(listener.to_owned()),
            PolicyTarget::Route(route.clone()),
        ];
        if let Some(r) = rule {
            targets.push(PolicyTarget::Rule(route.clone(), r.to_owned()));
        }
        Policies {
            index,
            rule: gather(index, targets),
        }
    }

    /// Those on a backend's Service, then its port.
    fn backend(&self, target: &Result<BackendTarget, BackendError>) -> Box<[AppliedPolicy]> {
        match target {
            Ok(t) if !self.index.is_empty() => gather(
                self.index,
                [
                    PolicyTarget::Service(t.service.clone()),
                    PolicyTarget::ServicePort(t.service.clone(), t.port),
                ],
            ),
            _ => Box::default(),
        }
    }
}

fn gather(
    index: &BTreeMap<PolicyTarget, Vec<AppliedPolicy>>,
    targets: impl IntoIterator<Item = PolicyTarget>,
) -> Box<[AppliedPolicy]> {
    targets
        .into_iter()
        .filter_map(|t| index.get(&t))
        .flatten()
        .cloned()
        .collect()
}

impl Rule {
    /// Index in `spec.rules`.
    pub fn index(&self) -> usize {
        self.index
    }

    /// `rules[].name`.
    pub fn name(&self) -> Option<&str> {
        self.name.as_deref()
    }

    /// The family.
    pub fn family(&self) -> Family {
        self.family
    }

    /// The rule's filters, in order.
    pub fn filters(&self) -> &[Filter] {
        &self.filters
    }

    /// The backends.
    pub fn backends(&self) -> &[Backend] {
        &self.backends
    }
}

/// How a candidate's path was matched.
#[derive(Debug, Clone)]
enum CandPath {
    Exact(Box<str>),
    Prefix(Box<str>),
    Regex(Box<str>),
    Grpc,
}

/// One match of one rule under one hostname. The conditions a lookup
/// checks come first, on the cache line of the slot's rule and route.
#[derive(Debug, Clone)]
#[repr(C)]
struct Candidate {
    cond: Conditions,
    /// Index in the route's [`CompiledRoute::rules`].
    rule: u32,
    match_index: u32,
    path: CandPath,
    hostname: Option<Arc<str>>,
    prec: Precedence,
}

/// One route compiled for one listener: what its candidates point to.
/// Shared by every bucket holding one of its candidates, and by the next
/// version of the table while the route does not change.
#[derive(Debug)]
struct CompiledRoute {
    info: RouteInfo,
    rules: Box<[Arc<Rule>]>,
    problems: Box<[Problem]>,
}

/// The bucket keys of a route's hostnames (`None`: the route has none).
fn bucket_keys(hostnames: &[String]) -> Vec<Option<Arc<str>>> {
    if hostnames.is_empty() {
        vec![None]
    } else {
        hostnames
            .iter()
            .map(|h| Some(Arc::from(h.as_str())))
            .collect()
    }
}

/// One candidate per route hostname of match `match_index` of rule
/// `rule_id` (spec index `rule_index`), pushed onto `out`.
fn push_candidates(
    out: &mut Vec<Candidate>,
    hostnames: &[Option<Arc<str>>],
    rank: &Arc<RouteRank>,
    matched: MatchRank,
    (rule_id, rule_index, match_index): (u32, usize, usize),
    cond: &Conditions,
    path: &CandPath,
) {
    for h in hostnames {
        out.push(Candidate {
            prec: Precedence {
                host: HostRank::of(h.as_deref()),
                matched,
                route: rank.clone(),
                rule: rule_index as u32,
                match_index: match_index as u32,
            },
            hostname: h.clone(),
            cond: cond.clone(),
            path: path.clone(),
            rule: rule_id,
            match_index: match_index as u32,
        });
    }
}

/// The messages a rule's compilation left, as problems of the route.
fn drain_problems(
    problems: &mut BTreeSet<Problem>,
    route: &ObjectKey,
    rule: usize,
    msgs: &mut Vec<String>,
) {
    problems.extend(msgs.drain(..).map(|message| Problem {
        route: route.clone(),
        rule,
        message,
    }));
}

/// A candidate in a bucket, with its rule and the route it belongs to.
/// What a hit reads — the conditions, the two pointers and what the rule
/// decides without looking at the request ([`Quick`]) — is in the first
/// 64 bytes, one cache line: the `Rule` itself is not read by a lookup.
#[derive(Debug, Clone)]
#[repr(C, align(64))]
struct Slot {
    rule: Arc<Rule>,
    route: Arc<CompiledRoute>,
    quick: Quick,
    cand: Candidate,
}

/// What [`decide`] reads of a rule before its filters, copied next to the
/// candidate.
#[derive(Debug, Clone, Copy)]
struct Quick {
    /// [`Rule::scan_filters`].
    scan_filters: bool,
    /// [`Rule::no_forward`].
    no_forward: Option<RespondReason>,
}

impl Slot {
    fn new(route: &Arc<CompiledRoute>, cand: Candidate) -> Slot {
        let rule = route.rules[cand.rule as usize].clone();
        Slot {
            quick: Quick {
                scan_filters: rule.scan_filters,
                no_forward: rule.no_forward,
            },
            rule,
            route: route.clone(),
            cand,
        }
    }
}

/// Sorts a bucket's slots best first, so that a candidate's id (its index)
/// is its rank: lists of ids are in precedence order when ascending.
fn sort_slots(slots: &mut [Slot]) {
    slots.sort_by(|a, b| {
        a.cand
            .prec
            .cmp(&b.cand.prec)
            .then_with(|| a.route.info.key.cmp(&b.route.info.key))
    });
}

/// The HTTP candidates of one route hostname, split into sub-buckets by
/// the first segment of their path, each compiled on its own: a change of
/// a route rebuilds the sub-buckets of its paths, not every path of the
/// hostname (a Gateway whose N routes have no hostname has one bucket of
/// N paths). What a lookup reads first — the sub-bucket map's entries
/// pointer and the remaining candidates' pointer — is on one cache line
/// (`repr(C)`, aligned: the `Arc`'s counts, which a lookup does not read,
/// are on the line before).
#[derive(Debug, Default)]
#[repr(C, align(64))]
struct HttpBucket {
    /// The Exact paths and PathPrefixes with a first segment, by it.
    subs: SegMap<Arc<HttpSub>>,
    /// The candidates without a first segment, best first: PathPrefix
    /// `/`, then RegularExpression paths (they rank below every PathPrefix,
    /// [`Precedence`]). A lookup tries them after its sub-bucket's.
    /// Shared by the next version of the bucket unless a change reaches it.
    rest: Arc<[Slot]>,
}

/// The candidates of one bucket whose path starts with the segment
/// `seg`: their slots and a path trie of the segments after it.
#[derive(Debug)]
#[repr(C, align(64))]
struct HttpSub {
    /// Best first: an id is an index here.
    slots: Box<[Slot]>,
    /// Rooted at the node of `seg`.
    trie: PathTrie,
    seg: Box<[u8]>,
}

impl SegKeyed for Arc<HttpSub> {
    fn seg(&self) -> &[u8] {
        &self.seg
    }
}

/// The first segment of an Exact path (`exact`) or PathPrefix `value`, and
/// the segments after it; `None` for the PathPrefix `/`, which has none.
fn split_first_segment(exact: bool, value: &str) -> Option<(&str, std::str::Split<'_, char>)> {
    let value = if exact {
        value
    } else {
        value.trim_end_matches('/')
    };
    if !exact && value.is_empty() {
        return None;
    }
    let mut segs = path::segments(value);
    let first = segs.next()?;
    Some((first, segs))
}

/// The sub-bucket of a candidate's path (`None`: the bucket's
/// [`HttpBucket::rest`]).
fn sub_key(path: &CandPath) -> Option<&str> {
    match path {
        CandPath::Exact(p) => split_first_segment(true, p).map(|s| s.0),
        CandPath::Prefix(p) => split_first_segment(false, p).map(|s| s.0),
        CandPath::Regex(_) | CandPath::Grpc => None,
    }
}

/// The slots of `old` whose route is not in `gone`, then `new`.
fn kept_slots(old: &[Slot], gone: &rustc_hash::FxHashSet<&ObjectKey>, new: Vec<Slot>) -> Vec<Slot> {
    old.iter()
        .filter(|s| !gone.contains(&s.route.info.key))
        .cloned()
        .chain(new)
        .collect()
}

/// The new HTTP slots of a bucket, by sub-bucket ([`sub_key`]): every
/// key present is rebuilt, with or without new slots.
type SubChanges = BTreeMap<Option<Box<str>>, Vec<Slot>>;

impl HttpSub {
    fn build(seg: &str, mut slots: Vec<Slot>) -> HttpSub {
        sort_slots(&mut slots);
        let mut trie = TrieBuilder::new();
        for (id, s) in slots.iter().enumerate() {
            let (exact, value) = match &s.cand.path {
                CandPath::Exact(p) => (true, p),
                CandPath::Prefix(p) => (false, p),
                // Not in a sub-bucket (`sub_key`).
                CandPath::Regex(_) | CandPath::Grpc => continue,
            };
            if let Some((_, rest)) = split_first_segment(exact, value) {
                trie.add(rest, exact, id as u32);
            }
        }
        HttpSub {
            slots: slots.into_boxed_slice(),
            trie: trie.build(),
            seg: seg.as_bytes().into(),
        }
    }
}

impl HttpBucket {
    /// `old` (`None`: an empty bucket) without the slots of the routes in
    /// `gone`, with the new slots of `changes`: the sub-buckets of the keys
    /// in `changes` are built again, the others shared with `old`. `None`
    /// when no slot is left.
    fn update(
        old: Option<&HttpBucket>,
        gone: &rustc_hash::FxHashSet<&ObjectKey>,
        changes: SubChanges,
    ) -> Option<HttpBucket> {
        let mut rest: Arc<[Slot]> = old.map_or_else(|| Arc::from(Vec::new()), |b| b.rest.clone());
        let Some(old) = old else {
            // A new bucket: its map is built in one go.
            let mut subs = Vec::with_capacity(changes.len());
            for (key, slots) in changes {
                match key {
                    None => {
                        let mut slots = slots;
                        sort_slots(&mut slots);
                        rest = slots.into();
                    }
                    Some(k) if !slots.is_empty() => subs.push(Arc::new(HttpSub::build(&k, slots))),
                    Some(_) => {}
                }
            }
            let subs = SegMap::from_values(subs.into_iter());
            return (subs.len() > 0 || !rest.is_empty()).then_some(HttpBucket { subs, rest });
        };
        let mut subs = old.subs.clone();
        for (key, new) in changes {
            match key {
                None => {
                    let mut slots = kept_slots(&rest, gone, new);
                    sort_slots(&mut slots);
                    rest = slots.into();
                }
                Some(k) => {
                    let before = subs.get(k.as_bytes()).map_or(&[][..], |b| &b.slots[..]);
                    let slots = kept_slots(before, gone, new);
                    let sub = (!slots.is_empty()).then(|| Arc::new(HttpSub::build(&k, slots)));
                    subs.set(k.as_bytes(), sub);
                }
            }
        }
        (subs.len() > 0 || !rest.is_empty()).then_some(HttpBucket { subs, rest })
    }

    /// Every slot, the sub-buckets' in no particular order, then the rest.
    fn slots(&self) -> impl Iterator<Item = &Slot> {
        self.subs
            .values()
            .flat_map(|s| s.slots.iter())
            .chain(self.rest.iter())
    }
}

#[derive(Debug, Default)]
struct GrpcBucket {
    /// Best first: an id is an index here.
    slots: Box<[Slot]>,
    /// Exact `service/method` matches.
    exact: FastMap<Box<str>, Vec<u32>>,
    other: Vec<u32>,
}

impl GrpcBucket {
    fn build(mut slots: Vec<Slot>) -> GrpcBucket {
        sort_slots(&mut slots);
        let mut exact: FastMap<Box<str>, Vec<u32>> = FastMap::default();
        let mut other = Vec::new();
        for (id, s) in slots.iter().enumerate() {
            let id = id as u32;
            let c = &s.cand;
            let key = match (&c.prec.matched, c.cond.grpc()) {
                (
                    MatchRank::Grpc {
                        service_chars,
                        method_chars,
                        ..
                    },
                    Some(_),
                ) if *service_chars > 0 && *method_chars > 0 => grpc_exact_key(c),
                _ => None,
            };
            match key {
                Some(k) => exact.entry(k.into()).or_default().push(id),
                None => other.push(id),
            }
        }
        GrpcBucket {
            slots: slots.into_boxed_slice(),
            exact,
            other,
        }
    }
}

/// The buckets of one family by route hostname.
type Buckets<B> = HostMap<Arc<B>>;

#[derive(Debug)]
struct ListenerTable {
    info: ListenerInfo,
    /// The routes it was compiled from: the next update compiles only
    /// what differs from them ([`RouteList::diff`]).
    source: RouteList,
    http: Buckets<HttpBucket>,
    grpc: Buckets<GrpcBucket>,
    /// Extension policies on the listener itself.
    policies: Box<[AppliedPolicy]>,
    /// The problems of its routes.
    problems: BTreeSet<Problem>,
}

#[derive(Debug)]
struct PortTable {
    port: u16,
    listeners: Vec<Arc<ListenerTable>>,
    select: HostMap<u32>,
    /// One listener, without hostname: it serves every request on the port.
    single: bool,
}

/// A configuration problem found while compiling: the part it affects
/// answers 500 or never matches, it is never silently skipped.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Problem {
    /// The route.
    pub route: ObjectKey,
    /// The rule index.
    pub rule: usize,
    /// What is wrong.
    pub message: String,
}

/// The compiled routing table of one Gateway.
#[derive(Debug)]
pub struct Table {
    gateway: ObjectKey,
    ports: Vec<PortTable>,
    problems: Vec<Problem>,
    /// Extension policies on the Gateway itself.
    policies: Box<[AppliedPolicy]>,
    /// The routing's policies this table was compiled with: every rule's
    /// and backend's policies come from them, so an update that changes
    /// them compiles the table again.
    policy_index: BTreeMap<PolicyTarget, Vec<AppliedPolicy>>,
}

fn u16_len(s: &str) -> u16 {
    u16::try_from(s.len()).unwrap_or(u16::MAX)
}

fn u8_count(n: usize) -> u8 {
    u8::try_from(n).unwrap_or(u8::MAX)
}

/// The path type and value of an HTTPRoute match, with the defaults
/// (PathPrefix `/`).
fn match_path(m: &crate::model::HttpRouteMatch) -> (&PathMatchType, &str) {
    match &m.path {
        None => (&PathMatchType::PathPrefix, "/"),
        Some(p) => (
            p.type_.as_ref().unwrap_or(&PathMatchType::PathPrefix),
            p.value.as_deref().unwrap_or("/"),
        ),
    }
}

/// Compiles one attached route for the listener `listener`: the route,
/// and its HTTP and gRPC candidates (each naming its route hostname).
fn compile_route(
    route: &Arc<AttachedRoute>,
    listener: &str,
    policies: &BTreeMap<PolicyTarget, Vec<AppliedPolicy>>,
) -> (Arc<CompiledRoute>, Vec<Candidate>, Vec<Candidate>) {
    let rank = Arc::new(RouteRank {
        created: CreationTime::parse(route.creation_timestamp.as_deref()),
        namespace: route.key.namespace.clone(),
        name: route.key.name.clone(),
    });
    let hostnames = bucket_keys(&route.hostnames);
    let mut rules = Vec::new();
    let mut http = Vec::new();
    let mut grpc = Vec::new();
    let mut problems = BTreeSet::new();
    let mut msgs = Vec::new();
    match &route.rules {
        RouteRules::Http(list) => {
            for rule in list.iter() {
                let rule_id = rules.len() as u32;
                rules.push(compile_rule(
                    Family::Http,
                    rule.index,
                    &rule.name,
                    (&rule.filters, &rule.extension_refs, &rule.external_auth),
                    &rule.backends,
                    &rule.mirrors,
                    Timeouts::parse(rule.timeouts.as_deref()),
                    rule.retry.as_deref().cloned(),
                    Policies::new(policies, listener, &route.key, rule.name.as_deref()),
                    &mut msgs,
                ));
                if let Some(last) = rules.last_mut() {
                    last.session_persistence = rule.session_persistence.clone();
                }
                for (mi, m) in rule.matches.iter().enumerate() {
                    let (ptype, pvalue) = match_path(m);
                    let (path, rank_path, regex) = match ptype {
                        PathMatchType::Exact => {
                            (CandPath::Exact(pvalue.into()), PathRank::Exact, None)
                        }
                        PathMatchType::PathPrefix => (
                            CandPath::Prefix(pvalue.into()),
                            PathRank::Prefix(u16_len(pvalue.trim_end_matches('/'))),
                            None,
                        ),
                        PathMatchType::RegularExpression => (
                            CandPath::Regex(pvalue.into()),
                            PathRank::RegularExpression,
                            Some(pvalue),
                        ),
                        other => {
                            msgs.push(format!("path match type {other:?} is not supported"));
                            continue;
                        }
                    };
                    let cond = Conditions::http(
                        m.method.as_deref(),
                        &m.headers,
                        &m.query_params,
                        regex,
                        &mut msgs,
                    );
                    let matched = MatchRank::Http {
                        path: rank_path,
                        method: m.method.is_some(),
                        headers: u8_count(cond.headers().len()),
                        query_params: u8_count(cond.queries().len()),
                    };
                    push_candidates(
                        &mut http,
                        &hostnames,
                        &rank,
                        matched,
                        (rule_id, rule.index, mi),
                        &cond,
                        &path,
                    );
                }
                drain_problems(&mut problems, &route.key, rule.index, &mut msgs);
            }
        }
        RouteRules::Grpc(list) => {
            for rule in list.iter() {
                let rule_id = rules.len() as u32;
                rules.push(compile_rule(
                    Family::Grpc,
                    rule.index,
                    &rule.name,
                    (&rule.filters, &rule.extension_refs, &[]),
                    &rule.backends,
                    &rule.mirrors,
                    Timeouts::default(),
                    None,
                    Policies::new(policies, listener, &route.key, rule.name.as_deref()),
                    &mut msgs,
                ));
                if let Some(last) = rules.last_mut() {
                    last.session_persistence = rule.session_persistence.clone();
                }
                let matches: Vec<Option<&crate::model::GrpcRouteMatch>> = if rule.matches.is_empty()
                {
                    vec![None]
                } else {
                    rule.matches.iter().map(Some).collect()
                };
                for (mi, m) in matches.into_iter().enumerate() {
                    let cond = Conditions::for_grpc(m, &mut msgs);
                    let (sc, mc) = match m.and_then(|m| m.method.as_ref()) {
                        Some(mm)
                            if mm.type_.as_ref().unwrap_or(&MatchType::Exact)
                                == &MatchType::Exact =>
                        {
                            (
                                mm.service.as_deref().map_or(0, u16_len),
                                mm.method.as_deref().map_or(0, u16_len),
                            )
                        }
                        _ => (0, 0),
                    };
                    let matched = MatchRank::Grpc {
                        service_chars: sc,
                        method_chars: mc,
                        headers: u8_count(cond.headers().len()),
                    };
                    push_candidates(
                        &mut grpc,
                        &hostnames,
                        &rank,
                        matched,
                        (rule_id, rule.index, mi),
                        &cond,
                        &CandPath::Grpc,
                    );
                }
                drain_problems(&mut problems, &route.key, rule.index, &mut msgs);
            }
        }
        RouteRules::L4(_) => {}
    }
    let compiled = Arc::new(CompiledRoute {
        info: RouteInfo {
            key: route.key.clone(),
            creation_timestamp: route.creation_timestamp.clone(),
            hostnames: route.hostnames.clone(),
        },
        rules: rules.into_iter().map(Arc::new).collect(),
        problems: problems.into_iter().collect(),
    });
    (compiled, http, grpc)
}

/// The routes of a listener update: the previous version's routes that are
/// gone or changed, and the new versions with their candidates.
#[derive(Default)]
struct RouteChanges {
    removed: Vec<Arc<AttachedRoute>>,
    added: Vec<(Arc<CompiledRoute>, Vec<Candidate>, Vec<Candidate>)>,
}

impl ListenerTable {
    /// A listener with no routes.
    fn empty(
        l: &ListenerRouting,
        policies: &BTreeMap<PolicyTarget, Vec<AppliedPolicy>>,
    ) -> ListenerTable {
        ListenerTable {
            info: ListenerInfo {
                name: l.name.clone(),
                source: l.source.clone(),
                port: l.port,
                protocol: l.protocol,
                hostname: l.hostname.clone(),
            },
            source: RouteList::new(),
            http: HostMap::default(),
            grpc: HostMap::default(),
            policies: policies
                .get(&PolicyTarget::Listener(l.name.clone()))
                .map(|p| p.clone().into_boxed_slice())
                .unwrap_or_default(),
            problems: BTreeSet::new(),
        }
    }

    /// Compiles a listener's routes.
    fn compile(
        l: &ListenerRouting,
        policies: &BTreeMap<PolicyTarget, Vec<AppliedPolicy>>,
    ) -> ListenerTable {
        let mut changes = RouteChanges::default();
        for r in &l.routes {
            changes.added.push(compile_route(r, &l.name, policies));
        }
        ListenerTable::empty(l, policies).with_changes(l.routes.clone(), changes)
    }

    /// This listener with the routes of `l` (the same listener: same
    /// name, port, protocol and hostname; same policies): routes that are
    /// the same `Arc` or equal keep their compilation, and only the
    /// buckets of the hostnames of changed routes are built again; the
    /// others are shared with `self`. What changed is found by
    /// [`RouteList::diff`], which skips the chunks of routes the two lists
    /// share, so its cost follows the change, not the number of routes.
    /// `None`: nothing changed.
    fn update(
        &self,
        l: &ListenerRouting,
        policies: &BTreeMap<PolicyTarget, Vec<AppliedPolicy>>,
    ) -> Option<ListenerTable> {
        let mut changes = RouteChanges::default();
        let walked = self.source.diff(&l.routes, |old, new| {
            if let (Some(o), Some(n)) = (old, new)
                && o == n
            {
                return std::ops::ControlFlow::Continue(());
            }
            changes.removed.extend(old.cloned());
            if let Some(n) = new {
                changes.added.push(compile_route(n, &l.name, policies));
            }
            std::ops::ControlFlow::Continue(())
        });
        debug_assert!(walked.is_continue());
        if changes.removed.is_empty() && changes.added.is_empty() {
            return None;
        }
        let next = ListenerTable {
            info: self.info.clone(),
            source: RouteList::new(),
            http: self.http.clone(),
            grpc: self.grpc.clone(),
            policies: self.policies.clone(),
            problems: self.problems.clone(),
        };
        Some(next.with_changes(l.routes.clone(), changes))
    }

    /// Applies `changes` to the buckets and problems, with `source` the
    /// listener's routes after them.
    fn with_changes(mut self, source: RouteList, changes: RouteChanges) -> Self {
        self.source = source;
        /// What changes under one route hostname: the HTTP sub-buckets
        /// to build again with their new slots, and the new gRPC slots
        /// (`None`: the gRPC bucket stays).
        #[derive(Default)]
        struct Touched {
            http: SubChanges,
            grpc: Option<Vec<Slot>>,
        }
        let mut touched: BTreeMap<Option<Arc<str>>, Touched> = BTreeMap::new();
        // A listener holds one route per key: the slots of a removed
        // route are those of its key.
        let mut gone: rustc_hash::FxHashSet<&ObjectKey> = Default::default();
        for r in &changes.removed {
            gone.insert(&r.key);
            for h in bucket_keys(&r.hostnames) {
                let t = touched.entry(h).or_default();
                match &r.rules {
                    // The sub-buckets its paths went to (a key without
                    // one of its slots is rebuilt unchanged).
                    RouteRules::Http(rules) => {
                        for m in rules.iter().flat_map(|rule| rule.matches.iter()) {
                            let (ptype, pvalue) = match_path(m);
                            let key = match ptype {
                                PathMatchType::Exact => split_first_segment(true, pvalue),
                                PathMatchType::PathPrefix => split_first_segment(false, pvalue),
                                _ => None,
                            };
                            t.http.entry(key.map(|k| k.0.into())).or_default();
                        }
                    }
                    RouteRules::Grpc(_) => {
                        t.grpc.get_or_insert_default();
                    }
                    RouteRules::L4(_) => {}
                }
            }
            let first = Problem {
                route: r.key.clone(),
                rule: 0,
                message: String::new(),
            };
            let problems: Vec<Problem> = self
                .problems
                .range(first..)
                .take_while(|p| p.route == r.key)
                .cloned()
                .collect();
            for p in &problems {
                self.problems.remove(p);
            }
        }
        for (r, http, grpc) in changes.added {
            self.problems.extend(r.problems.iter().cloned());
            for cand in http {
                let slot = Slot::new(&r, cand);
                let key = sub_key(&slot.cand.path).map(Box::from);
                touched
                    .entry(slot.cand.hostname.clone())
                    .or_default()
                    .http
                    .entry(key)
                    .or_default()
                    .push(slot);
            }
            for cand in grpc {
                let slot = Slot::new(&r, cand);
                touched
                    .entry(slot.cand.hostname.clone())
                    .or_default()
                    .grpc
                    .get_or_insert_default()
                    .push(slot);
            }
        }
        for (h, t) in touched {
            let h = h.as_deref();
            if !t.http.is_empty() {
                let old = self.http.get(h).map(|b| &**b);
                let bucket = HttpBucket::update(old, &gone, t.http);
                self.http.set(h, bucket.map(Arc::new));
            }
            if let Some(new) = t.grpc {
                let old = self.grpc.get(h).map_or(&[][..], |b| &b.slots[..]);
                let slots = kept_slots(old, &gone, new);
                self.grpc.set(
                    h,
                    (!slots.is_empty()).then(|| Arc::new(GrpcBucket::build(slots))),
                );
            }
        }
        self.http.shrink();
        self
    }

    #[inline]
    fn first_match(slots: &[Slot], ids: &[u32], head: &RequestHead, path: &str) -> Option<u32> {
        ids.iter()
            .copied()
            .find(|&id| slots[id as usize].cand.cond.matches(head, path))
    }

    #[inline]
    fn find_http<'b>(b: &'b HttpBucket, head: &RequestHead, path: &str) -> Option<&'b Slot> {
        let p = path.as_bytes();
        let p = p.strip_prefix(b"/").unwrap_or(p);
        let mut segs = p.split(|&c| c == b'/');
        if let Some(first) = segs.next()
            && let Some(sub) = b.subs.get(first)
            && let Some(slot) = Self::find_sub(sub, segs, head, path)
        {
            return Some(slot);
        }
        b.rest.iter().find(|s| s.cand.cond.matches(head, path))
    }

    /// The best candidate of `b` for `path`, whose segments after the
    /// sub-bucket's are `segs`: the Exact path where the walk ends, then
    /// PathPrefixes from the deepest up to the sub-bucket's segment.
    #[inline]
    fn find_sub<'b, 'p>(
        b: &'b HttpSub,
        segs: impl Iterator<Item = &'p [u8]>,
        head: &RequestHead,
        path: &str,
    ) -> Option<&'b Slot> {
        let s = &b.slots[..];
        let (mut node, complete) = b.trie.walk_segs(segs);
        if complete && let Some(id) = Self::first_match(s, b.trie.exact(node), head, path) {
            return Some(&s[id as usize]);
        }
        loop {
            if let Some(id) = Self::first_match(s, b.trie.prefix(node), head, path) {
                return Some(&s[id as usize]);
            }
            if node == ROOT {
                return None;
            }
            node = b.trie.parent(node);
        }
    }

    fn find_grpc<'b>(b: &'b GrpcBucket, head: &RequestHead, path: &str) -> Option<&'b Slot> {
        let s = &b.slots[..];
        let exact = path
            .strip_prefix('/')
            .and_then(|k| b.exact.get(k))
            .and_then(|ids| Self::first_match(s, ids, head, path));
        let other = Self::first_match(s, &b.other, head, path);
        // Ids are in precedence order.
        let id = match (exact, other) {
            (Some(a), Some(o)) => Some(a.min(o)),
            (a, o) => a.or(o),
        };
        id.map(|id| &s[id as usize])
    }

    fn find(&self, head: &RequestHead, path: &str) -> Option<&Slot> {
        let host = head.host();
        if !self.grpc.is_empty() && head.is_grpc() {
            let found = self.grpc.find_map(host, |b| Self::find_grpc(b, head, path));
            if found.is_some() {
                return found;
            }
        }
        self.http.find_map(host, |b| Self::find_http(b, head, path))
    }
}

/// The exact `service/method` key of a gRPC candidate with an Exact
/// service and method.
fn grpc_exact_key(c: &Candidate) -> Option<String> {
    // The configured strings are not kept in the condition; rebuild them from
    // the Exact value matches.
    let g = c.cond.grpc()?;
    let (s, m) = g.exact_parts()?;
    Some(format!("{s}/{m}"))
}

/// A rule's filters with what the engine resolved for them: the objects
/// of their `ExtensionRef`s, and the services of their `ExternalAuth`s (one
/// per filter, in order).
type ResolvedFilters<'a> = (
    &'a [crate::model::HttpRouteFilter],
    &'a [Arc<crate::extension::ExtensionObject>],
    &'a [Result<BackendTarget, BackendError>],
);

#[allow(clippy::too_many_arguments)]
fn compile_rule(
    family: Family,
    index: usize,
    name: &Option<String>,
    filters: ResolvedFilters<'_>,
    backends: &[crate::attachments::ResolvedBackend],
    mirrors: &[Mirror],
    timeouts: Timeouts,
    retry: Option<HttpRouteRetry>,
    policies: Policies<'_>,
    msgs: &mut Vec<String>,
) -> Rule {
    let mut compile_filters = |fs: &[crate::model::HttpRouteFilter],
                               refs: &[Arc<crate::extension::ExtensionObject>],
                               auth: &[Result<BackendTarget, BackendError>]|
     -> Box<[Filter]> {
        // The engine resolved one authorization service per ExternalAuth
        // filter, in filter order.
        let mut auth = auth.iter();
        fs.iter()
            .map(|f| {
                let a = (f.type_ == FilterType::ExternalAuth)
                    .then(|| auth.next())
                    .flatten();
                let c = Filter::compile_resolved(f, refs, a);
                if let Filter::Unsupported(m) = &c {
                    msgs.push(m.clone());
                }
                c
            })
            .collect()
    };
    let filters = compile_filters(filters.0, filters.1, filters.2);
    let backends: Box<[Backend]> = backends
        .iter()
        .map(|b| {
            let filters = compile_filters(&b.filters, &b.extension_refs, &b.external_auth);
            Backend {
                weight: b.weight,
                policies: policies.backend(&b.target),
                target: b.target.clone(),
                extensions: filters.iter().any(Filter::runs_in_data_plane),
                filters,
            }
        })
        .collect();
    let extensions = filters.iter().any(Filter::runs_in_data_plane);
    let total_weight: u64 = backends.iter().map(|b| u64::from(b.weight)).sum();
    let no_forward = if total_weight == 0 {
        Some(RespondReason::NoBackends)
    } else if backends.iter().all(|b| b.weight == 0 || b.target.is_err()) {
        Some(RespondReason::InvalidBackends)
    } else {
        None
    };
    Rule {
        family,
        index,
        name: name.clone(),
        scan_filters: filters.iter().any(|f| {
            matches!(
                f,
                Filter::Unsupported(_) | Filter::Redirect(_) | Filter::Cors(_)
            )
        }),
        no_forward,
        extensions,
        policies: policies.rule,
        filters,
        total_weight,
        backends,
        mirrors: mirrors.into(),
        timeouts,
        retry: retry.as_ref().map(|r| Box::new(Retry::parse(r))),
        session_persistence: None,
    }
}

/// Why the table answers a request itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub enum RespondReason {
    /// No listener on this port accepts the Host (or SNI): 404.
    NoListener,
    /// The Host belongs to another listener than the connection's SNI: 421.
    Misdirected,
    /// The path cannot be normalized: 400.
    BadPath(PathError),
    /// No rule matches: 404. Spec: "When no rules matching a request have
    /// been successfully attached to the parent a request is coming from, a
    /// HTTP 404 status code MUST be returned."
    NoRoute,
    /// The rule has no backendRefs, or all weights are 0: 500.
    NoBackends,
    /// Every backend with weight is invalid: 500. Spec: "If *all* entries in
    /// BackendRefs are invalid, and there are also no filters specified in
    /// this route rule, *all* traffic which matches this rule MUST receive a
    /// 500 status code." (gRPC: `UNAVAILABLE`.)
    InvalidBackends,
    /// A filter of the rule cannot be applied: 500.
    UnsupportedFilter,
    /// A CORS preflight answered by the gateway: 200.
    CorsPreflight,
}

impl RespondReason {
    /// The HTTP status.
    pub fn status(self) -> StatusCode {
        match self {
            RespondReason::NoListener | RespondReason::NoRoute => StatusCode::NOT_FOUND,
            RespondReason::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            RespondReason::BadPath(_) => StatusCode::BAD_REQUEST,
            RespondReason::NoBackends
            | RespondReason::InvalidBackends
            | RespondReason::UnsupportedFilter => StatusCode::INTERNAL_SERVER_ERROR,
            RespondReason::CorsPreflight => StatusCode::OK,
        }
    }
}

/// The rule that matched, and where it comes from.
#[derive(Debug, Clone, Copy)]
pub struct Matched<'t> {
    route: &'t RouteInfo,
    rule: &'t Rule,
    cand: &'t Candidate,
}

impl<'t> Matched<'t> {
    /// The route.
    pub fn route(&self) -> &'t ObjectKey {
        &self.route.key
    }

    /// The route's description.
    pub fn route_info(&self) -> &'t RouteInfo {
        self.route
    }

    /// The rule.
    pub fn rule(&self) -> &'t Rule {
        self.rule
    }

    /// The rule's index in `spec.rules`.
    pub fn rule_index(&self) -> usize {
        self.rule.index
    }

    /// The rule's name.
    pub fn rule_name(&self) -> Option<&'t str> {
        self.rule.name.as_deref()
    }

    /// The match index in `rules[].matches` (0 for a gRPC rule without
    /// matches).
    pub fn match_index(&self) -> usize {
        self.cand.match_index as usize
    }

    /// The route hostname that matched (`None`: the route names none).
    pub fn hostname(&self) -> Option<&'t str> {
        self.cand.hostname.as_deref()
    }

    /// The candidate's rank.
    pub fn precedence(&self) -> &'t Precedence {
        &self.cand.prec
    }

    /// The PathPrefix value that matched, for `ReplacePrefixMatch`.
    pub fn matched_prefix(&self) -> Option<&'t str> {
        match &self.cand.path {
            CandPath::Prefix(p) => Some(p),
            CandPath::Exact(p) => Some(p),
            _ => None,
        }
    }
}

/// A redirect answered by the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RedirectTo {
    /// 301, 302, 303, 307 or 308.
    pub status: StatusCode,
    /// The `Location` header.
    pub location: String,
}

/// A response made by the gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Respond {
    /// Why.
    pub reason: RespondReason,
    /// Headers to send (CORS preflight answers).
    pub headers: HeaderMap,
}

impl Respond {
    fn new(reason: RespondReason) -> Respond {
        Respond {
            reason,
            headers: HeaderMap::new(),
        }
    }

    /// The status.
    pub fn status(&self) -> StatusCode {
        self.reason.status()
    }
}

/// What to do with a request.
#[derive(Debug, Clone)]
pub enum Action<'t> {
    /// Send it to one of the rule's backends.
    Forward(Forward<'t>),
    /// Answer with a redirect.
    Redirect(RedirectTo),
    /// Answer with a status.
    Respond(Respond),
}

/// A request to forward.
#[derive(Debug, Clone, Copy)]
pub struct Forward<'t> {
    listener: &'t ListenerInfo,
    matched: Matched<'t>,
}

/// What to do once a backend was picked.
#[derive(Debug, Clone)]
pub enum BackendAction<'t> {
    /// Forward to this Service port.
    Forward(&'t BackendTarget),
    /// A backend-level RequestRedirect.
    Redirect(RedirectTo),
    /// Answer with this status (500 for an invalid backend or filter).
    Respond(Respond),
}

impl<'t> Forward<'t> {
    /// The rule's backends, weights included.
    pub fn backends(&self) -> &'t [Backend] {
        &self.matched.rule.backends
    }

    /// The sum of the weights (never 0 for a forward).
    pub fn total_weight(&self) -> u64 {
        self.matched.rule.total_weight
    }

    /// Picks a backend by weight with a random `draw` supplied by the caller
    /// (any `u64`; `draw % total_weight` is used). Invalid backends keep
    /// their weight: spec: "the proportion of requests that would otherwise
    /// have been routed to an invalid backend MUST receive a 500".
    pub fn pick(&self, draw: u64) -> &'t Backend {
        let rule = self.matched.rule;
        let mut x = draw % rule.total_weight.max(1);
        for b in &rule.backends {
            let w = u64::from(b.weight);
            if x < w {
                return b;
            }
            x -= w;
        }
        // total_weight > 0 for a Forward, so the loop returns; keep a
        // defined answer anyway.
        &rule.backends[0]
    }

    /// What to do with the picked backend.
    pub fn backend_action(&self, head: &RequestHead, backend: &'t Backend) -> BackendAction<'t> {
        let target = match &backend.target {
            Ok(t) => t,
            Err(_) => return BackendAction::Respond(Respond::new(RespondReason::InvalidBackends)),
        };
        for f in &backend.filters {
            match f {
                Filter::Unsupported(_) => {
                    return BackendAction::Respond(Respond::new(RespondReason::UnsupportedFilter));
                }
                Filter::Redirect(r) => {
                    return BackendAction::Redirect(RedirectTo {
                        status: r.status(),
                        location: r.location(
                            head,
                            self.listener.scheme(),
                            self.listener.port,
                            self.matched.matched_prefix(),
                        ),
                    });
                }
                _ => {}
            }
        }
        BackendAction::Forward(target)
    }

    /// The matched rule.
    pub fn matched(&self) -> Matched<'t> {
        self.matched
    }

    /// The rule's timeouts.
    pub fn timeouts(&self) -> Timeouts {
        self.matched.rule.timeouts
    }

    /// The rule's retry policy.
    pub fn retry(&self) -> Option<&'t Retry> {
        self.matched.rule.retry.as_deref()
    }

    /// The rule's `sessionPersistence` (GEP-1619).
    pub fn session_persistence(&self) -> Option<&'t Arc<crate::session::SessionPersistence>> {
        self.matched.rule.session_persistence.as_ref()
    }

    /// Where to mirror, with the share of requests for each.
    pub fn mirrors(&self) -> &'t [Mirror] {
        &self.matched.rule.mirrors
    }

    /// Rewrites an outgoing request: the normalized path (query kept), then
    /// the rule's filters in order (RequestHeaderModifier, URLRewrite), then
    /// those of `backend`.
    pub fn apply_request(
        &self,
        head: &RequestHead,
        backend: Option<&Backend>,
        parts: &mut http::request::Parts,
    ) {
        // The normalized path goes to the backend; a target that is
        // already normal is kept as it is.
        self.apply_path(head, parts);
        for f in self.filters(backend) {
            self.apply_request_filter(f, parts);
        }
    }

    /// Whether [`Forward::apply_response`] reads the request's header fields
    /// (a CORS filter reads `Origin`): a proxy that took the header map out
    /// of the head to send it on ([`RequestHead::take_headers`]) keeps a
    /// copy in the head then.
    pub fn reads_request_headers(&self, backend: Option<&Backend>) -> bool {
        let backend_filters = backend.map(|b| &b.filters[..]).unwrap_or(&[]);
        self.matched
            .rule
            .filters
            .iter()
            .chain(backend_filters)
            .any(|f| matches!(f, Filter::Cors(_)))
    }

    /// The extension policies that apply to the matched rule: on the
    /// Gateway, the listener, the route, then the rule (least specific
    /// first). Those on the chosen backend are [`Backend::policies`].
    pub fn policies(&self) -> &'t [AppliedPolicy] {
        &self.matched.rule.policies
    }

    /// The most specific policy of `kind` for a request to `backend`: the
    /// backend's port, its Service, the rule, the route, the listener,
    /// then the Gateway.
    pub fn policy(
        &self,
        kind: crate::extension::ExtensionKind,
        backend: Option<&'t Backend>,
    ) -> Option<&'t AppliedPolicy> {
        let on_backend = backend.map(|b| &b.policies[..]).unwrap_or(&[]);
        self.matched
            .rule
            .policies
            .iter()
            .chain(on_backend)
            .rev()
            .find(|p| p.kind() == kind)
    }

    /// Whether the rule or `backend` has a filter the data plane runs
    /// itself ([`Filter::runs_in_data_plane`]: an extension's, or
    /// `ExternalAuth`): a data plane then applies the filters one by one,
    /// in order ([`Forward::filters`], [`Forward::apply_request_filter`]),
    /// running each of those in its place; otherwise
    /// [`Forward::apply_request`] does it all.
    pub fn has_extension_filters(&self, backend: Option<&Backend>) -> bool {
        self.matched.rule.extensions || backend.is_some_and(|b| b.extensions)
    }

    /// The filters that apply to a request forwarded to `backend`: the
    /// rule's in order, then the backend's.
    pub fn filters<'a>(&'a self, backend: Option<&'a Backend>) -> impl Iterator<Item = &'a Filter> {
        let backend_filters = backend.map(|b| &b.filters[..]).unwrap_or(&[]);
        self.matched.rule.filters.iter().chain(backend_filters)
    }

    /// The first step of [`Forward::apply_request`]: the normalized path
    /// (query kept) goes to the backend.
    pub fn apply_path(&self, head: &RequestHead, parts: &mut http::request::Parts) {
        if let Ok(p) = head.path()
            && (parts.uri.path() != p || parts.uri.query() != head.query())
        {
            filters::set_path(&mut parts.uri, p, head.query());
        }
    }

    /// Applies one built-in request filter (RequestHeaderModifier,
    /// URLRewrite) of [`Forward::filters`]; others change nothing.
    pub fn apply_request_filter(&self, filter: &Filter, parts: &mut http::request::Parts) {
        match filter {
            Filter::RequestHeaders(ops) => ops.apply(&mut parts.headers),
            Filter::Rewrite(r) => r.apply(parts, self.matched.matched_prefix()),
            _ => {}
        }
    }

    /// Applies one built-in response filter (ResponseHeaderModifier, CORS)
    /// of [`Forward::filters`]; others change nothing.
    pub fn apply_response_filter(
        &self,
        filter: &Filter,
        head: &RequestHead,
        parts: &mut http::response::Parts,
    ) {
        match filter {
            Filter::ResponseHeaders(ops) => ops.apply(&mut parts.headers),
            Filter::Cors(c) => c.apply_response(head, &mut parts.headers),
            _ => {}
        }
    }

    /// Rewrites a response: ResponseHeaderModifier of the rule then of
    /// `backend`, and CORS headers.
    pub fn apply_response(
        &self,
        head: &RequestHead,
        backend: Option<&Backend>,
        parts: &mut http::response::Parts,
    ) {
        for f in self.filters(backend) {
            self.apply_response_filter(f, head, parts);
        }
    }
}

/// The table's answer for one request.
#[derive(Debug, Clone)]
pub struct Decision<'t> {
    /// The listener that serves the request (`None` when no listener on the
    /// port accepts it).
    pub listener: Option<&'t ListenerInfo>,
    /// The rule that matched.
    pub matched: Option<Matched<'t>>,
    /// What to do.
    pub action: Action<'t>,
}

impl Decision<'_> {
    /// The status the gateway answers with itself; `None` when forwarding.
    pub fn status(&self) -> Option<StatusCode> {
        match &self.action {
            Action::Forward(_) => None,
            Action::Redirect(r) => Some(r.status),
            Action::Respond(r) => Some(r.status()),
        }
    }
}

impl Table {
    /// Compiles the routing of one Gateway. Never fails: problems are
    /// recorded in [`Table::problems`] and the affected rules answer 500 or
    /// never match.
    pub fn compile(routing: &GatewayRouting) -> Table {
        Table::build(routing, None)
    }

    /// This table after a change of its Gateway's routing: the table
    /// [`Table::compile`] gives for `routing`, built from this one. Routes
    /// that did not change (the same `Arc<AttachedRoute>`, as the
    /// incremental engine hands them, or an equal route) keep their
    /// compilation; only the route hostname buckets holding a changed
    /// route are built again, and listeners without a changed route are
    /// shared. A change of the Gateway's extension policies, or another
    /// Gateway, compiles it whole.
    ///
    /// One route changed on a Gateway of N routes costs its buckets plus a
    /// pointer comparison per chunk of routes the two routings share
    /// ([`crate::attachments::RouteList`]), not a compilation of N routes.
    pub fn update(&self, routing: &GatewayRouting) -> Table {
        if routing.gateway != self.gateway || routing.policies != self.policy_index {
            return Table::compile(routing);
        }
        Table::build(routing, Some(self))
    }

    fn build(routing: &GatewayRouting, previous: Option<&Table>) -> Table {
        let mut ports: Vec<PortTable> = Vec::new();
        for l in &routing.listeners {
            let http_like = matches!(l.protocol, ListenerProtocol::Http)
                || (l.protocol == ListenerProtocol::Https
                    && l.tls_mode != Some(TlsMode::Passthrough));
            if !http_like {
                continue;
            }
            let pt = match ports.iter().position(|p| p.port == l.port) {
                Some(i) => &mut ports[i],
                None => {
                    ports.push(PortTable {
                        port: l.port,
                        listeners: Vec::new(),
                        select: HostMap::default(),
                        single: false,
                    });
                    let last = ports.len() - 1;
                    &mut ports[last]
                }
            };
            let idx = pt.listeners.len() as u32;
            // The first listener with a hostname keeps it (the engine marks
            // later duplicates Conflicted).
            pt.select.insert_if_absent(l.hostname.as_deref(), idx);
            let before = previous.and_then(|t| {
                t.port(l.port)?.listeners.iter().find(|o| {
                    o.info.name == l.name
                        && o.info.source == l.source
                        && o.info.protocol == l.protocol
                        && o.info.hostname == l.hostname
                })
            });
            let lt = match before {
                Some(before) => match before.update(l, &routing.policies) {
                    Some(lt) => Arc::new(lt),
                    None => before.clone(),
                },
                None => Arc::new(ListenerTable::compile(l, &routing.policies)),
            };
            pt.listeners.push(lt);
        }
        ports.sort_by_key(|p| p.port);
        for pt in &mut ports {
            pt.single = pt.listeners.len() == 1 && pt.select.only_any();
        }
        let mut problems = BTreeSet::new();
        for pt in &ports {
            for lt in &pt.listeners {
                problems.extend(lt.problems.iter().cloned());
            }
        }
        Table {
            gateway: routing.gateway.clone(),
            ports,
            problems: problems.into_iter().collect(),
            policies: routing
                .policies
                .get(&PolicyTarget::Gateway)
                .map(|p| p.clone().into_boxed_slice())
                .unwrap_or_default(),
            policy_index: routing.policies.clone(),
        }
    }

    /// The Gateway.
    pub fn gateway(&self) -> &ObjectKey {
        &self.gateway
    }

    /// Configuration problems found while compiling.
    pub fn problems(&self) -> &[Problem] {
        &self.problems
    }

    /// The ports with at least one HTTP or HTTPS listener.
    pub fn ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.ports.iter().map(|p| p.port)
    }

    /// The listeners of a port, in the order given.
    pub fn listeners(&self, port: u16) -> impl Iterator<Item = &ListenerInfo> + '_ {
        self.port(port)
            .into_iter()
            .flat_map(|p| p.listeners.iter().map(|l| &l.info))
    }

    /// The most specific extension policy of `kind` on the listener that
    /// serves `head` (the one [`Table::find`] chooses), else on the
    /// Gateway: for a policy that acts before a route is chosen, such as
    /// how the path is read ([`slashes`]). Policies on routes, rules and
    /// backends are the matched rule's ([`Forward::policy`]).
    pub fn listener_policy(
        &self,
        kind: crate::extension::ExtensionKind,
        head: &RequestHead,
    ) -> Option<&AppliedPolicy> {
        let listener = self.port(head.port()).and_then(|pt| {
            let i = self.select_listener(pt, head).ok()?;
            Some(&pt.listeners[i as usize])
        });
        let on_listener = listener.map_or(&[][..], |l| &l.policies[..]);
        on_listener
            .iter()
            .chain(self.policies.iter())
            .find(|p| p.kind() == kind)
    }

    #[inline]
    fn port(&self, port: u16) -> Option<&PortTable> {
        self.ports.iter().find(|p| p.port == port)
    }

    /// The listener index that serves `head` on its port, or the reason
    /// none does.
    fn select_listener<'t>(
        &'t self,
        pt: &'t PortTable,
        head: &RequestHead,
    ) -> Result<u32, (Option<u32>, RespondReason)> {
        if pt.single {
            // Every Host and every SNI choose it.
            return Ok(0);
        }
        let by_host = pt.select.find_map(head.host(), |&i| Some(i));
        match head.sni() {
            Some(sni) => match pt.select.find_map(sni, |&i| Some(i)) {
                None => Err((None, RespondReason::NoListener)),
                Some(s) if by_host == Some(s) => Ok(s),
                Some(s) => Err((Some(s), RespondReason::Misdirected)),
            },
            None => by_host.ok_or((None, RespondReason::NoListener)),
        }
    }

    /// Routes one request.
    pub fn find<'t>(&'t self, head: &RequestHead) -> Decision<'t> {
        let respond = |listener, reason| Decision {
            listener,
            matched: None,
            action: Action::Respond(Respond::new(reason)),
        };
        let Some(pt) = self.port(head.port()) else {
            return respond(None, RespondReason::NoListener);
        };
        let li = match self.select_listener(pt, head) {
            Ok(i) => i,
            Err((l, reason)) => return respond(l.map(|i| &pt.listeners[i as usize].info), reason),
        };
        let lt = &pt.listeners[li as usize];
        let path = match head.path() {
            Ok(p) => p,
            Err(e) => return respond(Some(&lt.info), RespondReason::BadPath(e)),
        };
        let Some(slot) = lt.find(head, path) else {
            return respond(Some(&lt.info), RespondReason::NoRoute);
        };
        let cand = &slot.cand;
        let matched = Matched {
            route: &slot.route.info,
            rule: &slot.rule,
            cand,
        };
        let action = decide(&lt.info, matched, slot.quick, head);
        Decision {
            listener: Some(&lt.info),
            matched: Some(matched),
            action,
        }
    }
}

fn decide<'t>(
    listener: &'t ListenerInfo,
    matched: Matched<'t>,
    quick: Quick,
    head: &RequestHead,
) -> Action<'t> {
    let rule = matched.rule;
    let filters: &[Filter] = if quick.scan_filters {
        &rule.filters
    } else {
        &[]
    };
    for f in filters {
        match f {
            Filter::Unsupported(_) => {
                return Action::Respond(Respond::new(RespondReason::UnsupportedFilter));
            }
            Filter::Redirect(r) => {
                return Action::Redirect(RedirectTo {
                    status: r.status(),
                    location: r.location(
                        head,
                        listener.scheme(),
                        listener.port,
                        matched.matched_prefix(),
                    ),
                });
            }
            Filter::Cors(c) if filters::Cors::is_preflight(head) => {
                return Action::Respond(Respond {
                    reason: RespondReason::CorsPreflight,
                    headers: c.preflight_headers(head),
                });
            }
            _ => {}
        }
    }
    if let Some(reason) = quick.no_forward {
        return Action::Respond(Respond::new(reason));
    }
    Action::Forward(Forward { listener, matched })
}

/// The compiled tables of every Gateway.
#[derive(Debug, Default)]
pub struct Tables {
    by_gateway: BTreeMap<ObjectKey, Arc<Table>>,
}

impl Tables {
    /// Compiles the routing of each Gateway: `Computed::routing`, or the
    /// shared routing of an incremental engine (`Engine::routing`).
    pub fn compile<R: std::borrow::Borrow<GatewayRouting>>(
        routing: &BTreeMap<ObjectKey, R>,
    ) -> Tables {
        Tables {
            by_gateway: routing
                .iter()
                .map(|(k, r)| (k.clone(), Arc::new(Table::compile(r.borrow()))))
                .collect(),
        }
    }

    /// These tables after a change: the tables of the Gateways in
    /// `changed` are updated ([`Table::update`]: only the buckets of the
    /// routes that changed are compiled again) or dropped, for `None`;
    /// every other table is shared with `self`. `changed` is [`crate::engine::Delta::routing`].
    pub fn update(&self, changed: &BTreeMap<ObjectKey, Option<Arc<GatewayRouting>>>) -> Tables {
        let mut by_gateway = self.by_gateway.clone();
        for (k, r) in changed {
            match r {
                Some(r) => {
                    let table = match self.by_gateway.get(k) {
                        Some(before) => before.update(r),
                        None => Table::compile(r),
                    };
                    by_gateway.insert(k.clone(), Arc::new(table))
                }
                None => by_gateway.remove(k),
            };
        }
        Tables { by_gateway }
    }

    /// The table of one Gateway.
    pub fn get(&self, gateway: &ObjectKey) -> Option<&Arc<Table>> {
        self.by_gateway.get(gateway)
    }

    /// Every table, by Gateway.
    pub fn iter(&self) -> impl Iterator<Item = (&ObjectKey, &Arc<Table>)> {
        self.by_gateway.iter()
    }
}
