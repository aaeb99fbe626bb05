//! A generator of large, realistic clusters, for benchmarks and load tests
//! (`gwcore gen`). Deterministic: the same [`ScaleSpec`] (seed included)
//! always gives the same objects.
//!
//! The cluster: one GatewayClass; `gateways` Gateways in namespace
//! `gw-infra`, each with an HTTP listener on port 80 admitting namespaces
//! labelled `gateway-access: "true"`; `namespaces` team namespaces (`ns-0`
//! ...), nine in ten labelled; a Service `svc` in each; `routes` HTTPRoutes
//! spread over 1 000 hostnames (`app-N.example.com`), with Exact and
//! PathPrefix paths, some header, query and method matches, weighted
//! backends, and one route in ten sending to a shared backend namespace
//! through a ReferenceGrant.
//!
//! Two fixtures for benchmarks: the first 100 routes (or all, if fewer) live
//! in `ns-0`, so flipping that namespace's label attaches or detaches 100
//! routes; and all of them send to `shared-0` through the one grant
//! `shared-0/from-ns-0`, so revoking it touches 100 routes.

use crate::values::{FromNamespaces, MatchType, PathMatchType, ProtocolType};
use std::collections::BTreeMap;

use crate::model::{
    AllowedRoutes, BackendRef, GATEWAY_GROUP, Gateway, GatewayClass, GatewayClassSpec, GatewaySpec,
    HttpHeaderMatch, HttpPathMatch, HttpRoute, HttpRouteMatch, HttpRouteRule, HttpRouteSpec,
    LabelSelector, Listener, Namespace, Object, ObjectMeta, ParentReference, ReferenceGrant,
    ReferenceGrantFrom, ReferenceGrantSpec, ReferenceGrantTo, RouteNamespaces, Service,
    ServicePort, ServiceSpec,
};

/// What to generate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleSpec {
    /// HTTPRoutes. Default 10 000.
    pub routes: usize,
    /// Team namespaces. Default 1 000.
    pub namespaces: usize,
    /// Gateways. Default 10.
    pub gateways: usize,
    /// Distinct hostnames. Default 1 000.
    pub hostnames: usize,
    /// Seed of the pseudo-random choices. Default 1.
    pub seed: u64,
    /// The GatewayClass's controllerName. Default `gwcore.dev/gateway-controller`.
    pub controller_name: String,
}

impl Default for ScaleSpec {
    fn default() -> Self {
        ScaleSpec {
            routes: 10_000,
            namespaces: 1_000,
            gateways: 10,
            hostnames: 1_000,
            seed: 1,
            controller_name: "gwcore.dev/gateway-controller".into(),
        }
    }
}

/// Namespace that holds the first 100 routes.
pub const HOT_NAMESPACE: &str = "ns-0";
/// The grant the hot namespace's routes rely on.
pub const HOT_GRANT: (&str, &str) = ("shared-0", "from-ns-0");
/// Number of shared backend namespaces.
const SHARED: usize = 10;

/// A small xorshift generator: deterministic, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
}

fn meta(ns: Option<&str>, name: String) -> ObjectMeta {
    ObjectMeta {
        name,
        namespace: ns.map(str::to_string),
        generation: Some(1),
        ..Default::default()
    }
}

fn timestamp(i: usize) -> String {
    // 2026-01-01T00:00:00Z plus i seconds, within one day per 86 400 routes.
    let day = 1 + i / 86_400;
    let s = i % 86_400;
    format!(
        "2026-01-{day:02}T{:02}:{:02}:{:02}Z",
        s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// The namespace of route `i`.
pub fn route_namespace(spec: &ScaleSpec, i: usize) -> String {
    if i < 100 {
        HOT_NAMESPACE.to_string()
    } else {
        format!("ns-{}", i % spec.namespaces.max(1))
    }
}

/// Generates the objects of a scale scenario.
pub fn generate(spec: &ScaleSpec) -> Vec<Object> {
    let mut rng = Rng(spec.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let mut out = Vec::new();
    out.push(Object::GatewayClass(Box::new(GatewayClass {
        metadata: meta(None, "gwcore".into()),
        spec: GatewayClassSpec {
            controller_name: spec.controller_name.clone(),
            ..Default::default()
        },
        status: None,
    })));
    out.push(Object::Namespace(Namespace {
        metadata: meta(None, "gw-infra".into()),
    }));
    let selector = RouteNamespaces {
        from: Some(FromNamespaces::Selector),
        selector: Some(LabelSelector {
            match_labels: [("gateway-access".to_string(), "true".to_string())].into(),
            ..Default::default()
        }),
    };
    for g in 0..spec.gateways {
        out.push(Object::Gateway(Box::new(Gateway {
            metadata: meta(Some("gw-infra"), format!("gw-{g}")),
            spec: GatewaySpec {
                gateway_class_name: "gwcore".into(),
                listeners: vec![Listener {
                    name: "http".into(),
                    port: 80,
                    protocol: ProtocolType::Http,
                    allowed_routes: Some(AllowedRoutes {
                        namespaces: Some(selector.clone()),
                        kinds: vec![],
                    }),
                    ..Default::default()
                }],
                ..Default::default()
            },
            status: None,
        })));
    }
    let svc = |ns: &str| {
        Object::Service(Service {
            metadata: meta(Some(ns), "svc".into()),
            spec: ServiceSpec {
                ports: vec![ServicePort {
                    port: 8080,
                    ..Default::default()
                }],
                ..Default::default()
            },
        })
    };
    for n in 0..spec.namespaces {
        let name = format!("ns-{n}");
        let mut labels = BTreeMap::new();
        labels.insert("team".to_string(), format!("team-{}", n % 50));
        if n % 10 != 9 {
            labels.insert("gateway-access".to_string(), "true".to_string());
        }
        out.push(Object::Namespace(Namespace {
            metadata: ObjectMeta {
                labels,
                ..meta(None, name.clone())
            },
        }));
        out.push(svc(&name));
    }
    for s in 0..SHARED {
        let ns = format!("shared-{s}");
        out.push(Object::Namespace(Namespace {
            metadata: meta(None, ns.clone()),
        }));
        out.push(svc(&ns));
    }
    // One grant per (shared namespace, team namespace) that uses it.
    let mut grants: BTreeMap<(String, String), ()> = BTreeMap::new();
    for i in 0..spec.routes {
        let ns = route_namespace(spec, i);
        let hostname = format!("app-{}.example.com", rng.below(spec.hostnames));
        let rule_count = 1 + rng.below(3);
        let mut rules = Vec::with_capacity(rule_count);
        for r in 0..rule_count {
            let mut m = HttpRouteMatch {
                path: Some(HttpPathMatch {
                    type_: Some(if rng.chance(20) {
                        PathMatchType::Exact
                    } else {
                        PathMatchType::PathPrefix
                    }),
                    value: Some(format!("/svc-{i}/r{r}")),
                }),
                ..Default::default()
            };
            // Vecs of exactly their length, as a manifest loads them (a
            // push would leave room for four).
            if rng.chance(15) {
                m.headers = vec![HttpHeaderMatch {
                    type_: Some(MatchType::Exact),
                    name: "x-variant".into(),
                    value: "canary".into(),
                }];
            }
            if rng.chance(10) {
                m.query_params = vec![HttpHeaderMatch {
                    type_: Some(MatchType::Exact),
                    name: "v".into(),
                    value: "2".into(),
                }];
            }
            if rng.chance(10) {
                m.method = Some("GET".into());
            }
            let cross = ns == HOT_NAMESPACE || rng.chance(10);
            let backend_ns = if cross {
                let shared = if ns == HOT_NAMESPACE {
                    0
                } else {
                    rng.below(SHARED)
                };
                let sns = format!("shared-{shared}");
                grants.insert((sns.clone(), ns.clone()), ());
                Some(sns)
            } else {
                None
            };
            let canary = rng.chance(20);
            let mut backend_refs = Vec::with_capacity(1 + usize::from(canary));
            backend_refs.push(BackendRef {
                name: "svc".into(),
                namespace: backend_ns,
                port: Some(8080),
                weight: Some(90),
                ..Default::default()
            });
            if canary {
                backend_refs.push(BackendRef {
                    name: "svc".into(),
                    port: Some(8080),
                    weight: Some(10),
                    ..Default::default()
                });
            }
            rules.push(HttpRouteRule {
                matches: vec![m],
                backend_refs,
                ..Default::default()
            });
        }
        out.push(Object::HttpRoute(HttpRoute {
            metadata: ObjectMeta {
                creation_timestamp: Some(timestamp(i)),
                ..meta(Some(&ns), format!("route-{i}"))
            },
            spec: HttpRouteSpec {
                parent_refs: vec![ParentReference {
                    namespace: Some("gw-infra".into()),
                    name: format!("gw-{}", i % spec.gateways.max(1)),
                    ..Default::default()
                }],
                hostnames: vec![hostname],
                rules,
                use_default_gateways: None,
            },
            status: None,
        }));
    }
    for (sns, from_ns) in grants.into_keys() {
        out.push(Object::ReferenceGrant(ReferenceGrant {
            metadata: meta(Some(&sns), format!("from-{from_ns}")),
            spec: ReferenceGrantSpec {
                from: vec![ReferenceGrantFrom {
                    group: GATEWAY_GROUP.into(),
                    kind: "HTTPRoute".into(),
                    namespace: from_ns,
                }],
                to: vec![ReferenceGrantTo {
                    group: String::new(),
                    kind: "Service".into(),
                    name: None,
                }],
            },
        }));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{ComputeOptions, compute};
    use crate::model::Kind;

    #[test]
    fn generated_objects_are_valid_and_mostly_attach() {
        let spec = ScaleSpec {
            routes: 500,
            namespaces: 50,
            ..Default::default()
        };
        let objs = generate(&spec);
        for o in &objs {
            let mut o = o.clone();
            assert_eq!(crate::validate::validate(&mut o), vec![], "{}", o.key());
        }
        let snap = crate::Snapshot::from_objects(objs);
        let out = compute(
            &snap,
            &ComputeOptions::new(spec.controller_name.clone(), "2026-01-01T00:00:00Z"),
        );
        let attached: usize = out
            .routing
            .values()
            .flat_map(|g| &g.listeners)
            .map(|l| l.routes.len())
            .sum();
        // ns-9, ns-19... are unlabelled: about one route in ten is refused.
        assert!(attached > 400 && attached < 500, "{attached} attached");
        assert_eq!(out.refusals.len(), 500 - attached);
        assert_eq!(snap.of_kind(Kind::HttpRoute).count(), 500);
    }

    #[test]
    fn generation_is_deterministic() {
        let spec = ScaleSpec {
            routes: 50,
            namespaces: 5,
            ..Default::default()
        };
        assert_eq!(generate(&spec), generate(&spec));
        let other = ScaleSpec {
            seed: 2,
            ..spec.clone()
        };
        assert_ne!(generate(&spec), generate(&other));
    }
}
