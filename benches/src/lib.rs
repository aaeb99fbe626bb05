//! Inputs for the routing table benchmarks, built from a fixed seed.
//!
//! [`routing`] builds `n` HTTPRoutes on one listener, spread over up to
//! 1 000 hostnames (5 % of them wildcards) and 1 000 namespaces, each with
//! one to three rules: PathPrefix and Exact paths two to four segments deep,
//! and on some rules a header, a query parameter or a method match.
//! [`hits`], [`host_misses`] and [`path_misses`] build requests for it.

use std::sync::Arc;

use gwcore::attachments::{
    AttachedRoute, BackendTarget, GatewayRouting, HttpRule, ListenerProtocol, ListenerRouting,
    ResolvedBackend, RouteRules,
};
use gwcore::model::{HttpHeaderMatch, HttpPathMatch, HttpRouteMatch, Kind, ObjectKey};
use gwcore::table::RequestHead;

/// A xorshift64* generator: deterministic, no dependency.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// A value below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

/// The seed every bench uses.
pub const SEED: u64 = 0x6777_636f_7265;

fn hostname(i: usize) -> String {
    if i % 20 == 19 {
        format!("*.w{i}.example.com")
    } else {
        format!("app{i}.team{}.example.com", i % 37)
    }
}

/// `n` HTTPRoutes on one HTTP listener on port 80.
pub fn routing(n: usize) -> GatewayRouting {
    let mut rng = Rng::new(SEED);
    let hosts = n.clamp(1, 1000);
    let mut routes = Vec::with_capacity(n);
    for i in 0..n {
        let host = hostname(rng.below(hosts));
        let rules = 1 + rng.below(3);
        let rules = (0..rules)
            .map(|index| {
                let depth = 2 + rng.below(3);
                let mut path = String::new();
                for d in 0..depth {
                    path.push_str(&format!("/s{}", if d == 0 { i } else { rng.below(50) }));
                }
                let kind = if rng.below(4) == 0 {
                    "Exact"
                } else {
                    "PathPrefix"
                };
                let mut m = HttpRouteMatch {
                    path: Some(HttpPathMatch {
                        type_: Some(kind.into()),
                        value: Some(path),
                    }),
                    ..Default::default()
                };
                match rng.below(10) {
                    0 | 1 => {
                        m.headers = vec![HttpHeaderMatch {
                            type_: None,
                            name: "x-version".into(),
                            value: format!("v{}", rng.below(3)),
                        }]
                    }
                    2 => {
                        m.query_params = vec![HttpHeaderMatch {
                            type_: None,
                            name: "tenant".into(),
                            value: format!("t{}", rng.below(5)),
                        }]
                    }
                    3 => {
                        m.method = Some(if rng.below(2) == 0 {
                            "GET".into()
                        } else {
                            "POST".into()
                        })
                    }
                    _ => {}
                }
                HttpRule::new(
                    index,
                    vec![m],
                    vec![ResolvedBackend {
                        weight: 1,
                        target: Ok(BackendTarget {
                            service: ObjectKey::new(Kind::Service, "ns", format!("svc{i}")),
                            port: 8080,
                            app_protocol: None,
                            tls: None,
                        }),
                        filters: vec![],
                        extension_refs: vec![],
                        external_auth: vec![],
                    }],
                )
            })
            .collect();
        routes.push(AttachedRoute {
            key: ObjectKey::new(
                Kind::HttpRoute,
                format!("ns{}", rng.below(1000)),
                format!("route-{i}"),
            ),
            creation_timestamp: Some(format!("2026-01-01T00:{:02}:{:02}Z", (i / 60) % 60, i % 60)),
            hostnames: vec![host],
            rules: RouteRules::Http(Arc::new(rules)),
        });
    }
    routes.sort_by(|a, b| a.key.cmp(&b.key));
    GatewayRouting {
        gateway: ObjectKey::new(Kind::Gateway, "infra", "gw"),
        backend_client_certificate: None,
        policies: Default::default(),
        listeners: vec![ListenerRouting {
            name: "http".into(),
            source: ObjectKey::new(Kind::Gateway, "infra", "gw"),
            port: 80,
            protocol: ListenerProtocol::Http,
            hostname: None,
            tls_mode: None,
            certificates: vec![],
            frontend_validation: None,
            routes: routes.into_iter().map(Arc::new).collect(),
        }],
    }
}

/// `count` requests that each match some rule of `r`.
pub fn hits(r: &GatewayRouting, count: usize) -> Vec<RequestHead> {
    let mut rng = Rng::new(SEED ^ 1);
    let routes = &r.listeners[0].routes;
    (0..count)
        .map(|_| {
            let route = &routes[rng.below(routes.len())];
            let RouteRules::Http(rules) = &route.rules else {
                unreachable!("benchmark routes are HTTPRoutes")
            };
            let rule = &rules[rng.below(rules.len())];
            let m = &rule.matches[0];
            let host = route.hostnames[0].replace('*', "x");
            let path = m
                .path
                .as_ref()
                .and_then(|p| p.value.clone())
                .unwrap_or_default();
            let exact = m.path.as_ref().and_then(|p| p.type_.as_ref())
                == Some(&gwcore::values::PathMatchType::Exact);
            let mut pq = if exact {
                path
            } else {
                format!("{path}/item/42")
            };
            if let Some(q) = m.query_params.first() {
                pq.push_str(&format!("?{}={}", q.name, q.value));
            }
            let mut head = RequestHead::new(80, &host, m.method.as_deref().unwrap_or("GET"), &pq)
                .with_header("user-agent", "bench")
                .with_header("accept", "*/*");
            for h in &m.headers {
                head = head.with_header(&h.name, &h.value);
            }
            head
        })
        .collect()
}

/// `count` requests for hosts no route names.
pub fn host_misses(count: usize) -> Vec<RequestHead> {
    (0..count)
        .map(|i| {
            RequestHead::new(
                80,
                &format!("app{i}.unknown.example.org"),
                "GET",
                "/s1/s2/item",
            )
        })
        .collect()
}

/// `count` requests for known hosts and paths no rule matches.
pub fn path_misses(r: &GatewayRouting, count: usize) -> Vec<RequestHead> {
    let mut rng = Rng::new(SEED ^ 2);
    let routes = &r.listeners[0].routes;
    (0..count)
        .map(|_| {
            let route = &routes[rng.below(routes.len())];
            RequestHead::new(
                80,
                &route.hostnames[0].replace('*', "x"),
                "GET",
                "/nothing/here/at/all",
            )
        })
        .collect()
}
