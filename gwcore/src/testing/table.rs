//! A reference matcher and proptest strategies for the routing table.
//!
//! [`reference_find`] is a deliberately simple implementation of the same
//! routing rules as [`crate::table::Table::find`]: it scans every listener
//! and every match of every rule of every route, checks each condition
//! directly, and keeps the least [`Precedence`]. It shares only the
//! precedence order (there is one), path normalization and the request's
//! header/query accessors with the table. [`routing`] and [`request`]
//! generate inputs that hit the interesting cases: overlapping hostnames,
//! Exact/PathPrefix/regex paths with and without trailing slashes, methods,
//! repeated header names, query parameters, gRPC rules, SNI.
//! [`requests_for`] aims requests at the routes of a given routing (any
//! routing: one of [`routing`], or one the engine computed for a cluster),
//! so that most of them match a rule and some just miss.
//!
//! ```
//! use gwcore::table::Table;
//! use gwcore::testing::table::{reference_find, request, routing, Outcome};
//! use proptest::prelude::*;
//!
//! proptest!(ProptestConfig::with_cases(16), |(r in routing(), head in request())| {
//!     let table = Table::compile(&r);
//!     prop_assert_eq!(Outcome::of(&table.find(&head)), reference_find(&r, &head));
//! });
//! ```

use crate::values::{MatchType, PathMatchType};
use std::sync::Arc;

use proptest::prelude::*;

use crate::attachments::{
    AttachedRoute, BackendTarget, GatewayRouting, GrpcRule, HttpRule, ListenerProtocol,
    ListenerRouting, ResolvedBackend, RouteRules, TlsMode,
};
use crate::hostname;
use crate::model::{
    GrpcMethodMatch, GrpcRouteMatch, HttpHeaderMatch, HttpPathMatch, HttpRouteMatch, Kind,
    ObjectKey,
};
use crate::table::{
    Action, CreationTime, Decision, HostRank, MatchRank, PathRank, Precedence, RequestHead,
    RespondReason, RouteRank, compile_regex,
};

/// What a request gets, reduced to what both matchers must agree on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// No listener accepts the request.
    NoListener,
    /// Host and SNI choose different listeners (421); the SNI's listener.
    Misdirected(String),
    /// The path is invalid (400).
    BadPath(String),
    /// No rule matches (404).
    NoRoute(String),
    /// A rule matched.
    Matched {
        /// Listener name.
        listener: String,
        /// The route.
        route: ObjectKey,
        /// Rule index.
        rule: usize,
        /// Match index.
        match_index: usize,
    },
}

impl Outcome {
    /// The outcome of a table decision.
    pub fn of(d: &Decision<'_>) -> Outcome {
        let l = d.listener.map(|l| l.name.clone()).unwrap_or_default();
        if let Some(m) = &d.matched {
            return Outcome::Matched {
                listener: l,
                route: m.route().clone(),
                rule: m.rule_index(),
                match_index: m.match_index(),
            };
        }
        match &d.action {
            Action::Respond(r) => match r.reason {
                RespondReason::Misdirected => Outcome::Misdirected(l),
                RespondReason::BadPath(_) => Outcome::BadPath(l),
                RespondReason::NoRoute => Outcome::NoRoute(l),
                _ => Outcome::NoListener,
            },
            _ => Outcome::NoListener,
        }
    }
}

fn serves_http(l: &ListenerRouting) -> bool {
    l.protocol == ListenerProtocol::Http
        || (l.protocol == ListenerProtocol::Https && l.tls_mode != Some(TlsMode::Passthrough))
}

/// The listener of `port` that accepts `host` with the most specific
/// hostname (first one on ties).
fn pick_listener<'a>(
    routing: &'a GatewayRouting,
    port: u16,
    host: &str,
) -> Option<&'a ListenerRouting> {
    let mut best: Option<(&ListenerRouting, HostRank)> = None;
    for l in routing
        .listeners
        .iter()
        .filter(|l| l.port == port && serves_http(l))
    {
        let ok = match &l.hostname {
            None => true,
            Some(h) => hostname::matches(h, host),
        };
        if !ok {
            continue;
        }
        let rank = HostRank::of(l.hostname.as_deref());
        let better = match &best {
            None => true,
            Some((_, b)) => (rank.precise_chars, rank.chars) > (b.precise_chars, b.chars),
        };
        if better {
            best = Some((l, rank));
        }
    }
    best.map(|(l, _)| l)
}

fn first_by_name(list: &[HttpHeaderMatch], fold: bool) -> Vec<&HttpHeaderMatch> {
    let mut out: Vec<&HttpHeaderMatch> = Vec::new();
    for m in list {
        let dup = out.iter().any(|o| {
            if fold {
                o.name.eq_ignore_ascii_case(&m.name)
            } else {
                o.name == m.name
            }
        });
        if !dup {
            out.push(m);
        }
    }
    out
}

fn value_ok(type_: Option<&MatchType>, want: &str, got: &[u8]) -> bool {
    match type_.unwrap_or(&MatchType::Exact) {
        MatchType::Exact => want.as_bytes() == got,
        MatchType::RegularExpression => compile_regex(want)
            .map(|r| r.is_match(got))
            .unwrap_or(false),
        _ => false,
    }
}

fn headers_ok(head: &RequestHead, list: &[HttpHeaderMatch]) -> Option<usize> {
    let list = first_by_name(list, true);
    for h in &list {
        let Ok(name) = http::HeaderName::from_bytes(h.name.as_bytes()) else {
            return None;
        };
        let values: Vec<&[u8]> = head
            .headers()
            .get_all(&name)
            .iter()
            .map(|v| v.as_bytes())
            .collect();
        if values.is_empty() || !value_ok(h.type_.as_ref(), &h.value, &values.join(&b","[..])) {
            return None;
        }
    }
    Some(list.len())
}

fn http_match(head: &RequestHead, path: &str, m: &HttpRouteMatch) -> Option<MatchRank> {
    let (t, v) = match &m.path {
        None => (&PathMatchType::PathPrefix, "/"),
        Some(p) => (
            p.type_.as_ref().unwrap_or(&PathMatchType::PathPrefix),
            p.value.as_deref().unwrap_or("/"),
        ),
    };
    let path_rank = match t {
        PathMatchType::Exact if path == v => PathRank::Exact,
        PathMatchType::PathPrefix => {
            let p = v.trim_end_matches('/');
            if path == p || path.starts_with(&format!("{p}/")) {
                PathRank::Prefix(p.len() as u16)
            } else {
                return None;
            }
        }
        PathMatchType::RegularExpression
            if value_ok(Some(&MatchType::RegularExpression), v, path.as_bytes()) =>
        {
            PathRank::RegularExpression
        }
        _ => return None,
    };
    if let Some(method) = &m.method
        && head.method().as_str() != method
    {
        return None;
    }
    let headers = headers_ok(head, &m.headers)?;
    let queries = first_by_name(&m.query_params, false);
    for q in &queries {
        let got = head.query_param(&q.name)?;
        if !value_ok(q.type_.as_ref(), &q.value, got.as_bytes()) {
            return None;
        }
    }
    Some(MatchRank::Http {
        path: path_rank,
        method: m.method.is_some(),
        headers: headers as u8,
        query_params: queries.len() as u8,
    })
}

fn grpc_match(head: &RequestHead, path: &str, m: Option<&GrpcRouteMatch>) -> Option<MatchRank> {
    let rest = path.strip_prefix('/')?;
    let (service, method) = rest.split_once('/')?;
    if service.is_empty() || method.is_empty() || method.contains('/') {
        return None;
    }
    let Some(m) = m else {
        return Some(MatchRank::Grpc {
            service_chars: 0,
            method_chars: 0,
            headers: 0,
        });
    };
    let (mut sc, mut mc) = (0, 0);
    if let Some(mm) = &m.method {
        let t = mm.type_.as_ref().unwrap_or(&MatchType::Exact);
        if let Some(s) = mm.service.as_deref().filter(|s| !s.is_empty()) {
            if !value_ok(Some(t), s, service.as_bytes()) {
                return None;
            }
            if *t == MatchType::Exact {
                sc = s.len() as u16;
            }
        }
        if let Some(x) = mm.method.as_deref().filter(|s| !s.is_empty()) {
            if !value_ok(Some(t), x, method.as_bytes()) {
                return None;
            }
            if *t == MatchType::Exact {
                mc = x.len() as u16;
            }
        }
    }
    let headers = headers_ok(head, &m.headers)?;
    Some(MatchRank::Grpc {
        service_chars: sc,
        method_chars: mc,
        headers: headers as u8,
    })
}

/// Routes `head` by scanning everything.
pub fn reference_find(routing: &GatewayRouting, head: &RequestHead) -> Outcome {
    let by_host = pick_listener(routing, head.port(), head.host());
    let listener = match head.sni() {
        Some(sni) => match pick_listener(routing, head.port(), sni) {
            None => return Outcome::NoListener,
            Some(s) if by_host.is_some_and(|h| std::ptr::eq(h, s)) => s,
            Some(s) => return Outcome::Misdirected(s.name.clone()),
        },
        None => match by_host {
            Some(l) => l,
            None => return Outcome::NoListener,
        },
    };
    let Ok(path) = head.path() else {
        return Outcome::BadPath(listener.name.clone());
    };
    let mut best_grpc: Option<(Precedence, ObjectKey, usize, usize)> = None;
    let mut best_http: Option<(Precedence, ObjectKey, usize, usize)> = None;
    for route in &listener.routes {
        let hosts: Vec<Option<&str>> = if route.hostnames.is_empty() {
            vec![None]
        } else {
            route.hostnames.iter().map(|h| Some(h.as_str())).collect()
        };
        let rank = Arc::new(RouteRank {
            created: CreationTime::parse(route.creation_timestamp.as_deref()),
            namespace: route.key.namespace.clone(),
            name: route.key.name.clone(),
        });
        for h in hosts {
            if let Some(h) = h
                && !hostname::matches(h, head.host())
            {
                continue;
            }
            let consider = |best: &mut Option<(Precedence, ObjectKey, usize, usize)>,
                            rule: usize,
                            mi: usize,
                            matched: MatchRank| {
                let p = Precedence {
                    host: HostRank::of(h),
                    matched,
                    route: rank.clone(),
                    rule: rule as u32,
                    match_index: mi as u32,
                };
                if best.as_ref().is_none_or(|(b, ..)| p < *b) {
                    *best = Some((p, route.key.clone(), rule, mi));
                }
            };
            match &route.rules {
                RouteRules::Http(rules) => {
                    for r in rules.iter() {
                        for (mi, m) in r.matches.iter().enumerate() {
                            if let Some(rank) = http_match(head, path, m) {
                                consider(&mut best_http, r.index, mi, rank);
                            }
                        }
                    }
                }
                RouteRules::Grpc(rules) if head.is_grpc() => {
                    for r in rules.iter() {
                        let ms: Vec<Option<&GrpcRouteMatch>> = if r.matches.is_empty() {
                            vec![None]
                        } else {
                            r.matches.iter().map(Some).collect()
                        };
                        for (mi, m) in ms.into_iter().enumerate() {
                            if let Some(rank) = grpc_match(head, path, m) {
                                consider(&mut best_grpc, r.index, mi, rank);
                            }
                        }
                    }
                }
                _ => {}
            }
        }
    }
    match best_grpc.or(best_http) {
        Some((_, route, rule, match_index)) => Outcome::Matched {
            listener: listener.name.clone(),
            route,
            rule,
            match_index,
        },
        None => Outcome::NoRoute(listener.name.clone()),
    }
}

// ---------------------------------------------------------------------------
// Strategies.

const LISTENER_HOSTS: &[Option<&str>] = &[
    None,
    Some("a.example.com"),
    Some("*.example.com"),
    Some("*.a.example.com"),
    Some("b.test.io"),
];
const ROUTE_HOSTS: &[&str] = &[
    "a.example.com",
    "b.example.com",
    "*.example.com",
    "*.a.example.com",
    "x.a.example.com",
    "c.test.io",
];
const SEGMENTS: &[&str] = &["a", "b", "ab", "c"];
const TIMESTAMPS: &[Option<&str>] = &[
    None,
    Some("2020-01-01T00:00:00Z"),
    Some("2021-06-01T12:00:00+02:00"),
];

fn path_value() -> impl Strategy<Value = String> {
    (
        prop::collection::vec(prop::sample::select(SEGMENTS), 0..3),
        any::<bool>(),
    )
        .prop_map(|(segs, slash)| {
            let mut p = format!("/{}", segs.join("/"));
            if slash && !segs.is_empty() {
                p.push('/');
            }
            p
        })
}

fn header_match(names: &'static [&'static str]) -> impl Strategy<Value = HttpHeaderMatch> {
    (
        prop::sample::select(names),
        prop::sample::select(&["1", "2"][..]),
        any::<bool>(),
    )
        .prop_map(|(n, v, re)| HttpHeaderMatch {
            type_: re.then_some(MatchType::RegularExpression),
            name: n.to_owned(),
            value: if re { "[1-2]".to_owned() } else { v.to_owned() },
        })
}

fn http_match_strategy() -> impl Strategy<Value = HttpRouteMatch> {
    (
        prop::sample::select(
            &[
                "Exact",
                "PathPrefix",
                "PathPrefix",
                "RegularExpression",
                "default",
            ][..],
        ),
        path_value(),
        prop::option::of(prop::sample::select(&["GET", "POST"][..])),
        prop::collection::vec(header_match(&["x-a", "X-A", "x-b"]), 0..3),
        prop::collection::vec(header_match(&["q", "Q"]), 0..2),
    )
        .prop_map(|(t, v, method, headers, query_params)| HttpRouteMatch {
            path: match t {
                "default" => None,
                "RegularExpression" => Some(HttpPathMatch {
                    type_: Some(t.into()),
                    value: Some(format!("{v}.*")),
                }),
                _ => Some(HttpPathMatch {
                    type_: Some(t.into()),
                    value: Some(v),
                }),
            },
            headers,
            query_params,
            method: method.map(str::to_owned),
        })
}

fn backend() -> ResolvedBackend {
    ResolvedBackend {
        weight: 1,
        target: Ok(BackendTarget {
            service: ObjectKey::new(Kind::Service, "ns", "svc"),
            port: 80,
            app_protocol: None,
            tls: None,
        }),
        filters: vec![],
        extension_refs: vec![],
        external_auth: vec![],
    }
}

fn grpc_match_strategy() -> impl Strategy<Value = GrpcRouteMatch> {
    (
        prop::option::of(prop::sample::select(&["pkg.A", "pkg.B"][..])),
        prop::option::of(prop::sample::select(&["Get", "Put"][..])),
        any::<bool>(),
        prop::collection::vec(header_match(&["x-a", "x-b"]), 0..2),
    )
        .prop_map(|(s, m, re, headers)| GrpcRouteMatch {
            method: (s.is_some() || m.is_some()).then(|| GrpcMethodMatch {
                type_: re.then_some(MatchType::RegularExpression),
                service: s.map(|s| if re { format!("{s}.*") } else { s.to_owned() }),
                method: m.map(str::to_owned),
            }),
            headers,
        })
}

fn route_strategy() -> impl Strategy<Value = AttachedRoute> {
    (
        prop::sample::select(&["ns1", "ns2"][..]),
        prop::sample::select(&["r1", "r2", "r3", "r4", "r5"][..]),
        prop::sample::select(TIMESTAMPS),
        prop::collection::vec(prop::sample::select(ROUTE_HOSTS), 0..3),
        prop::bool::weighted(0.2),
        prop::collection::vec(prop::collection::vec(http_match_strategy(), 1..3), 1..4),
        prop::collection::vec(prop::collection::vec(grpc_match_strategy(), 0..3), 1..3),
    )
        .prop_map(|(ns, name, ts, hostnames, grpc, http_rules, grpc_rules)| {
            let rules = if grpc {
                RouteRules::Grpc(Arc::new(
                    grpc_rules
                        .into_iter()
                        .enumerate()
                        .map(|(index, matches)| GrpcRule {
                            index,
                            name: None,
                            matches,
                            filters: vec![],
                            extension_refs: vec![],
                            mirrors: vec![],
                            backends: vec![backend()],
                            session_persistence: None,
                        })
                        .collect(),
                ))
            } else {
                RouteRules::Http(Arc::new(
                    http_rules
                        .into_iter()
                        .enumerate()
                        .map(|(index, matches)| HttpRule {
                            index,
                            name: None,
                            matches,
                            filters: vec![],
                            extension_refs: vec![],
                            external_auth: vec![],
                            mirrors: vec![],
                            backends: vec![backend()],
                            timeouts: None,
                            retry: None,
                            session_persistence: None,
                        })
                        .collect(),
                ))
            };
            AttachedRoute {
                key: ObjectKey::new(
                    if grpc {
                        Kind::GrpcRoute
                    } else {
                        Kind::HttpRoute
                    },
                    ns,
                    name,
                ),
                creation_timestamp: ts.map(str::to_owned),
                hostnames: hostnames.into_iter().map(str::to_owned).collect(),
                rules,
            }
        })
}

/// Routing input for one Gateway: one to three HTTP/HTTPS listeners on
/// ports 80 and 443 with overlapping hostnames, each with up to five routes.
/// Route hostnames are not intersected with the listener's (the table does
/// not depend on that).
pub fn routing() -> impl Strategy<Value = GatewayRouting> {
    prop::collection::vec(
        (
            prop::sample::select(&[80u16, 443][..]),
            prop::sample::select(LISTENER_HOSTS),
            prop::collection::vec(route_strategy(), 0..6),
        ),
        1..4,
    )
    .prop_map(|ls| GatewayRouting {
        gateway: ObjectKey::new(Kind::Gateway, "infra", "gw"),
        backend_client_certificate: None,
        policies: Default::default(),
        listeners: ls
            .into_iter()
            .enumerate()
            .map(|(i, (port, hostname, mut routes))| {
                routes.sort_by(|a, b| a.key.cmp(&b.key));
                routes.dedup_by(|a, b| a.key == b.key);
                ListenerRouting {
                    name: format!("l{i}"),
                    source: ObjectKey::new(Kind::Gateway, "infra", "gw"),
                    port,
                    protocol: if port == 443 {
                        ListenerProtocol::Https
                    } else {
                        ListenerProtocol::Http
                    },
                    hostname: hostname.map(str::to_owned),
                    tls_mode: (port == 443).then_some(TlsMode::Terminate),
                    certificates: vec![],
                    frontend_validation: None,
                    routes: routes.into_iter().map(Arc::new).collect(),
                }
            })
            .collect(),
    })
}

/// A request for the hosts and paths [`routing`] uses, with noise:
/// upper-case hosts with ports, dot segments, repeated and encoded slashes,
/// headers with repeated names, query parameters, gRPC calls and SNI.
pub fn request() -> impl Strategy<Value = RequestHead> {
    let hosts = &[
        "a.example.com",
        "A.EXAMPLE.COM:443",
        "b.example.com",
        "x.a.example.com",
        "y.x.a.example.com",
        "example.com",
        "c.test.io",
        "b.test.io",
        "other.org",
    ][..];
    let pieces = &["a", "b", "ab", "c", ".", "..", "", "%61", "a%2Fb", "x"][..];
    (
        prop::sample::select(&[80u16, 443][..]),
        prop::sample::select(hosts),
        prop::option::of(prop::sample::select(hosts)),
        prop::sample::select(&["GET", "POST"][..]),
        prop::collection::vec(prop::sample::select(pieces), 0..4),
        any::<bool>(),
        prop::collection::vec(
            (
                prop::sample::select(&["x-a", "X-A", "x-b"][..]),
                prop::sample::select(&["1", "2", "3"][..]),
            ),
            0..3,
        ),
        prop::option::of(prop::sample::select(
            &["q=1", "q=2", "Q=1", "q=2&q=1", "q=%31"][..],
        )),
        prop::option::of((
            prop::sample::select(&["pkg.A", "pkg.B", "other.C"][..]),
            prop::sample::select(&["Get", "Put"][..]),
        )),
    )
        .prop_map(
            |(port, host, sni, method, segs, slash, headers, query, grpc)| {
                let mut head = match grpc {
                    Some((s, m)) => RequestHead::grpc(port, host, s, m),
                    None => {
                        let mut path = format!("/{}", segs.join("/"));
                        if slash {
                            path.push('/');
                        }
                        if let Some(q) = query {
                            path.push('?');
                            path.push_str(q);
                        }
                        RequestHead::new(port, host, method, &path)
                    }
                };
                for (n, v) in headers {
                    head = head.with_header(n, v);
                }
                if let Some(s) = sni.filter(|_| port == 443) {
                    head = head.with_sni(s);
                }
                head
            },
        )
}

// ---------------------------------------------------------------------------
// Requests aimed at a given routing.

/// One match of one rule, as [`requests_for`] aims at it.
#[derive(Debug, Clone)]
struct Target {
    port: u16,
    /// An HTTPS listener: the request carries its host as SNI.
    tls: bool,
    /// Concrete hosts the route (or else the listener) accepts.
    hosts: Vec<String>,
    aim: Aim,
}

#[derive(Debug, Clone)]
enum Aim {
    /// A listener without routes: any request.
    Listener,
    Http(HttpRouteMatch),
    /// A gRPC rule's match; `None` for a rule without matches.
    Grpc(Option<GrpcRouteMatch>),
}

/// A concrete host for a hostname pattern: `*.x` becomes `w.x`, no
/// hostname some host of no listener's.
fn concrete_host(pattern: Option<&str>) -> String {
    match pattern {
        None => "any.example.net".to_owned(),
        Some(p) => match p.strip_prefix("*.") {
            Some(suffix) => format!("w.{suffix}"),
            None => p.to_owned(),
        },
    }
}

fn targets(routing: &GatewayRouting) -> Vec<Target> {
    let mut out = Vec::new();
    // Listeners without routes, aimed at only when no route can be.
    let mut idle = Vec::new();
    for l in routing.listeners.iter().filter(|l| serves_http(l)) {
        let target = |hosts: Vec<String>, aim| Target {
            port: l.port,
            tls: l.protocol == ListenerProtocol::Https,
            hosts,
            aim,
        };
        if l.routes.is_empty() {
            idle.push(target(
                vec![concrete_host(l.hostname.as_deref())],
                Aim::Listener,
            ));
        }
        for route in &l.routes {
            let own = concrete_host(l.hostname.as_deref());
            let hosts = if route.hostnames.is_empty() {
                vec![own]
            } else {
                // Effective hostnames are within the listener's; where they
                // are not (`routing` does not intersect them), a host both
                // accept when there is one.
                let accepted = |h: &str| {
                    l.hostname
                        .as_deref()
                        .is_none_or(|l| hostname::matches(l, h))
                };
                route
                    .hostnames
                    .iter()
                    .map(|h| match concrete_host(Some(h)) {
                        c if accepted(&c) => c,
                        _ if hostname::matches(h, &own) => own.clone(),
                        c => c,
                    })
                    .collect()
            };
            // Only hosts that reach this listener (another on the port may
            // take them); a route no host reaches cannot be aimed at.
            let hosts: Vec<String> = hosts
                .into_iter()
                .filter(|h| pick_listener(routing, l.port, h).is_some_and(|p| std::ptr::eq(p, l)))
                .collect();
            if hosts.is_empty() {
                continue;
            }
            match &route.rules {
                RouteRules::Http(rules) => {
                    for r in rules.iter() {
                        if r.matches.is_empty() {
                            let m = Aim::Http(HttpRouteMatch::default());
                            out.push(target(hosts.clone(), m));
                        }
                        for m in &r.matches {
                            out.push(target(hosts.clone(), Aim::Http(m.clone())));
                        }
                    }
                }
                RouteRules::Grpc(rules) => {
                    for r in rules.iter() {
                        if r.matches.is_empty() {
                            out.push(target(hosts.clone(), Aim::Grpc(None)));
                        }
                        for m in &r.matches {
                            out.push(target(hosts.clone(), Aim::Grpc(Some(m.clone()))));
                        }
                    }
                }
                RouteRules::L4(_) => {}
            }
        }
    }
    if out.is_empty() {
        out = idle;
    }
    if out.is_empty() {
        out.push(Target {
            port: 80,
            tls: false,
            hosts: vec![concrete_host(None)],
            aim: Aim::Listener,
        });
    }
    out
}

const REGEX_META: &[char] = &[
    '\\', '^', '$', '.', '*', '+', '?', '(', ')', '[', ']', '{', '}', '|',
];

/// A value the regular expression `pattern` accepts, tried from its
/// literal-ish readings (`/a.*` → `/a`, `pkg\.A.*` → `pkg.A`) and a few
/// plain values; `None` when none fits (the request then misses).
fn regex_sample(pattern: &str, path: bool) -> Option<String> {
    let re = compile_regex(pattern).ok()?;
    let candidates = [
        pattern.replace(".*", "").replace("\\.", "."),
        pattern
            .chars()
            .take_while(|c| !REGEX_META.contains(c))
            .collect(),
        pattern
            .chars()
            .filter(|c| !REGEX_META.contains(c))
            .collect(),
        "/".to_owned(),
        "1".to_owned(),
        "2".to_owned(),
        "a".to_owned(),
    ];
    candidates
        .into_iter()
        .filter(|c| !path || c.starts_with('/'))
        .find(|c| re.is_match(c.as_bytes()))
}

/// A value a header or query parameter match accepts.
fn header_value(m: &HttpHeaderMatch) -> String {
    match m.type_.as_ref().unwrap_or(&MatchType::Exact) {
        MatchType::RegularExpression => regex_sample(&m.value, false).unwrap_or_default(),
        _ => m.value.clone(),
    }
}

/// Percent-encodes all but unreserved characters (RFC 3986).
fn encode_query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// How a near-miss request differs from a matching one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Miss {
    /// The path one segment off (beside, above or below).
    Path,
    Method,
    /// The first header the match requires is left out.
    Header,
    /// The first query parameter the match requires is left out.
    Query,
    /// A gRPC method or service other than the match's.
    GrpcName,
    /// A gRPC path without the gRPC content type.
    NotGrpc,
}

impl Target {
    /// The request for this target; `pick` chooses among equally good
    /// requests, `miss` (when applicable) makes it a near miss.
    fn request(&self, host: &str, pick: u32, miss: Option<prop::sample::Index>) -> RequestHead {
        let host_header = if pick & 1 == 1 {
            format!("{host}:{}", self.port)
        } else {
            host.to_owned()
        };
        let head = match &self.aim {
            Aim::Listener => RequestHead::new(self.port, &host_header, "GET", "/"),
            Aim::Http(m) => self.http_request(&host_header, m, pick >> 1, miss),
            Aim::Grpc(m) => self.grpc_request(&host_header, m.as_ref(), pick >> 1, miss),
        };
        if self.tls { head.with_sni(host) } else { head }
    }

    fn http_request(
        &self,
        host: &str,
        m: &HttpRouteMatch,
        pick: u32,
        miss: Option<prop::sample::Index>,
    ) -> RequestHead {
        let (t, v) = match &m.path {
            None => (&PathMatchType::PathPrefix, "/"),
            Some(p) => (
                p.type_.as_ref().unwrap_or(&PathMatchType::PathPrefix),
                p.value.as_deref().unwrap_or("/"),
            ),
        };
        let prefix = v.trim_end_matches('/');
        let mut path = match t {
            PathMatchType::Exact => v.to_owned(),
            PathMatchType::PathPrefix => match pick % 3 {
                0 if !prefix.is_empty() => prefix.to_owned(),
                0 | 1 => format!("{prefix}/x"),
                _ => format!("{prefix}/a/b"),
            },
            PathMatchType::RegularExpression => {
                regex_sample(v, true).unwrap_or_else(|| "/".to_owned())
            }
            _ => "/".to_owned(),
        };
        let mut method = m
            .method
            .clone()
            .unwrap_or_else(|| if pick & 4 == 0 { "GET" } else { "POST" }.to_owned());
        let mut headers: Vec<(String, String)> = first_by_name(&m.headers, true)
            .into_iter()
            .map(|h| (h.name.clone(), header_value(h)))
            .collect();
        let mut query: Vec<(String, String)> = first_by_name(&m.query_params, false)
            .into_iter()
            .map(|q| (q.name.clone(), header_value(q)))
            .collect();
        let path_missable = match t {
            PathMatchType::Exact => true,
            PathMatchType::PathPrefix => !prefix.is_empty(),
            _ => false,
        };
        let misses: Vec<Miss> = [
            (Miss::Path, path_missable),
            (Miss::Method, m.method.is_some()),
            (Miss::Header, !headers.is_empty()),
            (Miss::Query, !query.is_empty()),
        ]
        .into_iter()
        .filter_map(|(miss, ok)| ok.then_some(miss))
        .collect();
        match miss.filter(|_| !misses.is_empty()).map(|i| *i.get(&misses)) {
            Some(Miss::Path) => {
                let base = path.trim_end_matches('/');
                path = match (pick & 8 == 0, *t == PathMatchType::Exact) {
                    // Below an exact path.
                    (true, true) => format!("{base}/x"),
                    // Beside a prefix, sharing its characters: `/ab` for `/a`.
                    (true, false) => format!("{prefix}x"),
                    // Above: the parent.
                    (false, _) => {
                        let above = if *t == PathMatchType::Exact {
                            base
                        } else {
                            prefix
                        };
                        match above.rsplit_once('/') {
                            Some(("", _)) | None => "/".to_owned(),
                            Some((parent, _)) => parent.to_owned(),
                        }
                    }
                };
            }
            Some(Miss::Method) => {
                method = if method == "DELETE" { "PUT" } else { "DELETE" }.to_owned();
            }
            Some(Miss::Header) => {
                headers.remove(0);
            }
            Some(Miss::Query) => {
                query.remove(0);
            }
            _ => {}
        }
        if !query.is_empty() {
            let pairs: Vec<String> = query
                .iter()
                .map(|(n, v)| format!("{}={}", encode_query(n), encode_query(v)))
                .collect();
            path = format!("{path}?{}", pairs.join("&"));
        }
        let mut head = RequestHead::try_new(self.port, host, &method, &path)
            .unwrap_or_else(|_| RequestHead::new(self.port, host, "GET", &path));
        for (n, v) in &headers {
            head = head.with_header(n, v);
        }
        head
    }

    fn grpc_request(
        &self,
        host: &str,
        m: Option<&GrpcRouteMatch>,
        pick: u32,
        miss: Option<prop::sample::Index>,
    ) -> RequestHead {
        let mm = m.and_then(|m| m.method.as_ref());
        let regex = mm.is_some_and(|mm| mm.type_ == Some(MatchType::RegularExpression));
        let name = |v: Option<&String>, default: &str| match v.filter(|v| !v.is_empty()) {
            None => default.to_owned(),
            Some(v) if regex => regex_sample(v, false).unwrap_or_else(|| v.clone()),
            Some(v) => v.clone(),
        };
        let mut service = name(mm.and_then(|mm| mm.service.as_ref()), "pkg.Svc");
        let mut method = name(
            mm.and_then(|mm| mm.method.as_ref()),
            if pick & 1 == 0 { "Get" } else { "Put" },
        );
        let mut headers: Vec<(String, String)> = m
            .map(|m| first_by_name(&m.headers, true))
            .unwrap_or_default()
            .into_iter()
            .map(|h| (h.name.clone(), header_value(h)))
            .collect();
        let names = mm.is_some_and(|mm| mm.service.is_some() || mm.method.is_some());
        let misses: Vec<Miss> = [
            (Miss::GrpcName, names),
            (Miss::Header, !headers.is_empty()),
            (Miss::NotGrpc, true),
        ]
        .into_iter()
        .filter_map(|(miss, ok)| ok.then_some(miss))
        .collect();
        let mut grpc = true;
        match miss.map(|i| *i.get(&misses)) {
            Some(Miss::GrpcName) => {
                if mm.is_some_and(|mm| mm.method.as_deref().is_some_and(|s| !s.is_empty())) {
                    method = "Nope".to_owned();
                } else {
                    service = "other.Nope".to_owned();
                }
            }
            Some(Miss::Header) => {
                headers.remove(0);
            }
            Some(Miss::NotGrpc) => grpc = false,
            _ => {}
        }
        let mut head = if grpc {
            RequestHead::grpc(self.port, host, &service, &method)
        } else {
            RequestHead::new(self.port, host, "POST", &format!("/{service}/{method}"))
        };
        for (n, v) in &headers {
            head = head.with_header(n, v);
        }
        head
    }
}

/// Requests aimed at the routes of `routing`, so that most of them match a
/// rule (where about 2 % of [`request`]'s do on the clusters of
/// [`super::snapshot::objects`]).
///
/// Each request picks an HTTP or HTTPS listener (its port; its host as SNI
/// on HTTPS), a route attached to it, a host from the route's effective
/// hostnames (a wildcard `*.x` made concrete as `w.x`; no hostnames: the
/// listener's, or any host when it has none), a rule and one of its
/// matches, and satisfies that match: the exact path or a path at or under
/// the prefix, the method, the headers and query parameters (a value a
/// regular expression accepts, from its literal reading, when one is
/// easy to find); for gRPC rules, the service and method. Hosts that
/// another listener of the port takes are left out (a route no host
/// reaches is not aimed at). About one request
/// in five is a deliberate near miss: a path one segment off (`/a/x` for
/// exact `/a`, `/ab` or `/` for prefix `/a`), another method, a required
/// header or query parameter left out, another gRPC method, a gRPC path
/// without the gRPC content type. A matching request may still be answered
/// by a rule of higher precedence; near misses may still match another
/// rule. When no route can be aimed at, listeners without routes get
/// plain requests; a routing without HTTP listeners, requests for port 80.
///
/// ```
/// use gwcore::table::Table;
/// use gwcore::testing::table::{reference_find, requests_for, routing, Outcome};
/// use proptest::prelude::*;
///
/// let aimed = routing().prop_flat_map(|r| {
///     let heads = prop::collection::vec(requests_for(&r), 1..8);
///     (Just(r), heads)
/// });
/// proptest!(ProptestConfig::with_cases(16), |((r, heads) in aimed)| {
///     let table = Table::compile(&r);
///     for head in &heads {
///         prop_assert_eq!(Outcome::of(&table.find(head)), reference_find(&r, head));
///     }
/// });
/// ```
pub fn requests_for(routing: &GatewayRouting) -> impl Strategy<Value = RequestHead> + use<> {
    let targets = Arc::new(targets(routing));
    (
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        any::<u32>(),
        prop::option::weighted(0.2, any::<prop::sample::Index>()),
    )
        .prop_map(move |(target, host, pick, miss)| {
            let t = target.get(&targets[..]);
            let host: &String = host.get(&t.hosts);
            t.request(host, pick, miss)
        })
}
