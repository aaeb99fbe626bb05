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
                            mirrors: vec![],
                            backends: vec![backend()],
                            timeouts: None,
                            retry: None,
                        })
                        .collect(),
                ))
            };
            AttachedRoute {
                key: ObjectKey::new(
                    if grpc {
                        Kind::GRPCRoute
                    } else {
                        Kind::HTTPRoute
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
