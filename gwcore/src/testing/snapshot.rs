//! proptest strategies for valid snapshots.
//!
//! [`objects`] generates a small cluster: GatewayClasses (ours and another
//! controller's), labelled Namespaces, Services, Gateways with mixed
//! listeners, HTTPRoutes with parentRefs, hostnames, path matches and
//! (sometimes cross-namespace) backendRefs and `ExtensionRef` filters,
//! ReferenceGrants, BackendTLSPolicies, and objects of the [`extensions`]'
//! filter and policy kinds (compute with [`options`] to resolve them). Every
//! object has passed [`crate::validate::validate`], so the API server would
//! have admitted it, and keys are unique.
//!
//! ```
//! use gwcore::testing::snapshot::{objects, CONTROLLER};
//! use gwcore::engine::{compute, ComputeOptions};
//! use proptest::prelude::*;
//!
//! proptest!(|(objs in objects())| {
//!     let snap = gwcore::Snapshot::from_objects(objs);
//!     let out = compute(&snap, &ComputeOptions::new(CONTROLLER, "2026-01-01T00:00:00Z"));
//!     prop_assert!(out.routing.len() <= 3);
//! });
//! ```

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::extension::{
    ExtensionKind, ExtensionObject, Extensions, FilterKind, PolicyContext, PolicyKind, PolicyValue,
    Refused,
};
use crate::model::{
    AllowedRoutes, BackendRef, BackendTlsPolicy, BackendTlsPolicySpec, BackendTlsValidation,
    ConfigMap, Gateway, GatewayClass, GatewayClassSpec, GatewaySpec, HttpPathMatch, HttpRoute,
    HttpRouteFilter, HttpRouteMatch, HttpRouteRule, HttpRouteSpec, LabelSelector, Listener,
    ListenerTls, LocalObjectReference, Namespace, Object, ObjectMeta, ParentReference,
    PolicyTargetReference, ReferenceGrant, ReferenceGrantFrom, ReferenceGrantSpec,
    ReferenceGrantTo, RouteNamespaces, SecretObjectReference, Service, ServicePort, ServiceSpec,
};
use crate::validate::validate;

/// The controller name the generated "ours" GatewayClass uses.
pub const CONTROLLER: &str = "gwcore.dev/test-controller";

/// Namespaces the generator draws from.
pub const NAMESPACES: [&str; 4] = ["ns-a", "ns-b", "ns-c", "ns-d"];

const HOSTNAMES: [&str; 5] = [
    "a.example.com",
    "*.example.com",
    "b.example.org",
    "*.b.example.com",
    "example.com",
];
const PATHS: [&str; 5] = ["/", "/a", "/a/b", "/b", "/api"];

fn meta(ns: Option<&str>, name: String, labels: BTreeMap<String, String>) -> ObjectMeta {
    ObjectMeta {
        name,
        namespace: ns.map(str::to_string),
        labels,
        ..Default::default()
    }
}

fn namespace() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(&NAMESPACES[..])
}

fn listener(i: usize) -> impl Strategy<Value = Listener> {
    (
        proptest::sample::select(&[80i32, 443, 8080][..]),
        proptest::sample::select(&["HTTP", "HTTPS", "TCP", "UDP", "TLS"][..]),
        proptest::option::of(proptest::sample::select(&HOSTNAMES[..])),
        0u8..3,
    )
        .prop_map(move |(port, protocol, hostname, from)| {
            let l4 = matches!(protocol, "TCP" | "UDP");
            let tls = match protocol {
                "HTTPS" => Some(ListenerTls {
                    certificate_refs: vec![SecretObjectReference {
                        name: "cert".into(),
                        ..Default::default()
                    }],
                    ..Default::default()
                }),
                "TLS" => Some(ListenerTls {
                    mode: Some("Passthrough".into()),
                    ..Default::default()
                }),
                _ => None,
            };
            let namespaces = match from {
                0 => RouteNamespaces {
                    from: Some("All".into()),
                    selector: None,
                },
                1 => RouteNamespaces {
                    from: Some("Same".into()),
                    selector: None,
                },
                _ => RouteNamespaces {
                    from: Some("Selector".into()),
                    selector: Some(LabelSelector {
                        match_labels: [("env".to_string(), "prod".to_string())].into(),
                        ..Default::default()
                    }),
                },
            };
            Listener {
                name: format!("l{i}"),
                hostname: if l4 {
                    None
                } else {
                    hostname.map(str::to_string)
                },
                port,
                protocol: protocol.into(),
                tls,
                allowed_routes: Some(AllowedRoutes {
                    namespaces: Some(namespaces),
                    kinds: vec![],
                }),
            }
        })
}

fn gateway(i: usize) -> impl Strategy<Value = Object> {
    (
        proptest::collection::vec((0usize..4).prop_flat_map(listener), 1..4),
        proptest::bool::weighted(0.8),
    )
        .prop_map(move |(mut listeners, ours)| {
            let ns = NAMESPACES[i % NAMESPACES.len()];
            for (j, l) in listeners.iter_mut().enumerate() {
                l.name = format!("l{j}");
            }
            Object::Gateway(Box::new(Gateway {
                metadata: meta(Some(ns), format!("gw{i}"), BTreeMap::new()),
                spec: GatewaySpec {
                    gateway_class_name: if ours { "ours".into() } else { "theirs".into() },
                    listeners,
                    ..Default::default()
                },
                status: None,
            }))
        })
}

fn route(i: usize, gateways: usize) -> impl Strategy<Value = Object> {
    (
        namespace(),
        proptest::collection::vec(
            (
                0..gateways.max(1),
                proptest::option::weighted(0.2, namespace()),
                proptest::option::weighted(0.3, 0usize..3),
            ),
            1..3,
        ),
        proptest::collection::vec(proptest::sample::select(&HOSTNAMES[..]), 0..3),
        proptest::collection::vec(
            (
                proptest::sample::select(&PATHS[..]),
                any::<bool>(),
                proptest::option::of(namespace()),
                proptest::option::weighted(0.25, 0usize..3),
            ),
            1..4,
        ),
        any::<bool>(),
    )
        .prop_map(move |(ns, parents, hostnames, rules, first_named)| {
            let mut parent_refs: Vec<ParentReference> = parents
                .into_iter()
                .map(|(g, wrong_ns, section)| ParentReference {
                    namespace: Some(
                        wrong_ns
                            .unwrap_or(NAMESPACES[g % NAMESPACES.len()])
                            .to_string(),
                    ),
                    name: format!("gw{g}"),
                    section_name: section.map(|s| format!("l{s}")),
                    ..Default::default()
                })
                .collect();
            parent_refs.sort();
            parent_refs.dedup_by(|a, b| a.namespace == b.namespace && a.name == b.name);
            let mut hostnames: Vec<String> = hostnames.into_iter().map(str::to_string).collect();
            hostnames.sort();
            hostnames.dedup();
            let rules = rules
                .into_iter()
                .enumerate()
                .map(|(j, (path, exact, backend_ns, filter))| HttpRouteRule {
                    name: (j == 0 && first_named).then(|| "first".into()),
                    filters: filter
                        .map(|f| HttpRouteFilter {
                            type_: "ExtensionRef".into(),
                            extension_ref: Some(LocalObjectReference {
                                group: TEST_FILTER.group().into(),
                                kind: TEST_FILTER.kind().into(),
                                name: format!("filter{f}"),
                            }),
                            ..Default::default()
                        })
                        .into_iter()
                        .collect(),
                    matches: vec![HttpRouteMatch {
                        path: Some(HttpPathMatch {
                            type_: Some(if exact { "Exact" } else { "PathPrefix" }.into()),
                            value: Some(path.into()),
                        }),
                        ..Default::default()
                    }],
                    backend_refs: vec![BackendRef {
                        name: "svc".into(),
                        namespace: backend_ns.map(str::to_string),
                        port: Some(80),
                        ..Default::default()
                    }],
                    ..Default::default()
                })
                .collect();
            Object::HttpRoute(HttpRoute {
                metadata: meta(Some(ns), format!("r{i}"), BTreeMap::new()),
                spec: HttpRouteSpec {
                    parent_refs,
                    hostnames,
                    rules,
                    use_default_gateways: None,
                },
                status: None,
            })
        })
}

fn grant(i: usize) -> impl Strategy<Value = Object> {
    (namespace(), namespace()).prop_map(move |(to_ns, from_ns)| {
        Object::ReferenceGrant(ReferenceGrant {
            metadata: meta(Some(to_ns), format!("grant{i}"), BTreeMap::new()),
            spec: ReferenceGrantSpec {
                from: vec![ReferenceGrantFrom {
                    group: crate::model::GATEWAY_GROUP.into(),
                    kind: "HTTPRoute".into(),
                    namespace: from_ns.into(),
                }],
                to: vec![ReferenceGrantTo {
                    group: String::new(),
                    kind: "Service".into(),
                    name: None,
                }],
            },
        })
    })
}

/// A BackendTLSPolicy in a random namespace, for that namespace's `svc`
/// (the whole Service or its port `http`), trusting the ConfigMap `ca`,
/// which may or may not exist.
fn backend_tls_policy(i: usize) -> impl Strategy<Value = Object> {
    (namespace(), any::<bool>(), 0usize..3).prop_map(move |(ns, port, age)| {
        let mut metadata = meta(Some(ns), format!("tls{i}"), BTreeMap::new());
        metadata.creation_timestamp = Some(format!("2026-01-0{}T00:00:00Z", age + 1));
        Object::BackendTlsPolicy(Box::new(BackendTlsPolicy {
            metadata,
            spec: BackendTlsPolicySpec {
                target_refs: vec![PolicyTargetReference {
                    group: String::new(),
                    kind: "Service".into(),
                    name: "svc".into(),
                    section_name: port.then(|| "http".into()),
                }],
                validation: BackendTlsValidation {
                    ca_certificate_refs: vec![LocalObjectReference {
                        group: String::new(),
                        kind: "ConfigMap".into(),
                        name: "ca".into(),
                    }],
                    hostname: format!("backend{i}.example.com"),
                    ..Default::default()
                },
                ..Default::default()
            },
            status: None,
        }))
    })
}

/// The ConfigMap `ca` with a PEM `ca.crt`, in a random namespace.
fn ca_bundle() -> impl Strategy<Value = Object> {
    namespace().prop_map(|ns| {
        Object::ConfigMap(ConfigMap {
            metadata: meta(Some(ns), "ca".into(), BTreeMap::new()),
            data: [(
                "ca.crt".to_string(),
                "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n".to_string(),
            )]
            .into(),
        })
    })
}

/// The filter kind of the generated `ExtensionRef`s: `spec.valid` must be
/// `true` ([`extensions`]).
pub const TEST_FILTER: ExtensionKind = ExtensionKind::new("testing.gwcore.dev/v1", "TestFilter");

/// The policy kind of the generated policies: `spec.value`, at least 1.
pub const TEST_POLICY: ExtensionKind = ExtensionKind::new("testing.gwcore.dev/v1", "TestPolicy");

#[derive(Debug)]
struct TestFilter;

impl FilterKind for TestFilter {
    fn kind(&self) -> ExtensionKind {
        TEST_FILTER
    }
    fn check(&self, object: &ExtensionObject) -> Result<(), Refused> {
        match object.spec.get("valid") {
            Some(serde_json::Value::Bool(true)) => Ok(()),
            _ => Err("spec.valid is not true".into()),
        }
    }
}

#[derive(Debug)]
struct TestPolicy;

impl PolicyKind for TestPolicy {
    fn kind(&self) -> ExtensionKind {
        TEST_POLICY
    }
    fn parse(&self, policy: &Object, _: &mut PolicyContext<'_>) -> Result<PolicyValue, Refused> {
        let Object::Extension(object) = policy else {
            return Err("not a TestPolicy".into());
        };
        match object.spec.get("value").and_then(serde_json::Value::as_u64) {
            Some(v) if v > 0 => Ok(PolicyValue::new(v)),
            _ => Err("spec.value must be at least 1".into()),
        }
    }
}

/// The extensions the generated objects use: [`TEST_FILTER`] and
/// [`TEST_POLICY`].
pub fn extensions() -> Extensions {
    Extensions::new()
        .with_filter(TestFilter)
        .with_policy(TestPolicy)
}

/// Options for our controller at `now`, with [`extensions`].
pub fn options(now: &str) -> crate::engine::ComputeOptions {
    crate::engine::ComputeOptions::new(CONTROLLER, now).with_extensions(extensions())
}

/// A TestFilter object `filter{i}`, valid or not, in a random namespace.
fn test_filter(i: usize) -> impl Strategy<Value = Object> {
    (namespace(), proptest::bool::weighted(0.8)).prop_map(move |(ns, valid)| {
        Object::Extension(ExtensionObject::new(
            TEST_FILTER,
            meta(Some(ns), format!("filter{i}"), BTreeMap::new()),
            serde_json::json!({ "valid": valid }),
        ))
    })
}

/// A TestPolicy in a random namespace, targeting a Gateway (or its
/// listener `l0`), a route (or its rule `first`) or the Service `svc` (or
/// its port `http`), of a random age and value (0 is refused).
fn test_policy(i: usize, gateways: usize, routes: usize) -> impl Strategy<Value = Object> {
    (
        namespace(),
        0usize..3,
        0..gateways.max(1),
        0..routes.max(1),
        any::<bool>(),
        0usize..3,
        0u64..4,
    )
        .prop_map(move |(ns, what, g, r, section, age, value)| {
            let mut metadata = meta(Some(ns), format!("policy{i}"), BTreeMap::new());
            metadata.creation_timestamp = Some(format!("2026-01-0{}T00:00:00Z", age + 1));
            let target = match what {
                0 => serde_json::json!({"group": crate::model::GATEWAY_GROUP, "kind": "Gateway",
                    "name": format!("gw{g}"), "sectionName": section.then_some("l0")}),
                1 => serde_json::json!({"group": crate::model::GATEWAY_GROUP, "kind": "HTTPRoute",
                    "name": format!("r{r}"), "sectionName": section.then_some("first")}),
                _ => serde_json::json!({"group": "", "kind": "Service",
                    "name": "svc", "sectionName": section.then_some("http")}),
            };
            Object::Extension(ExtensionObject::new(
                TEST_POLICY,
                metadata,
                serde_json::json!({ "targetRefs": [target], "value": value }),
            ))
        })
}

/// A valid set of objects with unique keys (see the module docs).
pub fn objects() -> impl Strategy<Value = Vec<Object>> {
    (
        1usize..4,
        0usize..9,
        0usize..3,
        0usize..3,
        0usize..3,
        0usize..3,
    )
        .prop_flat_map(|(gws, routes, grants, policies, filters, ext_policies)| {
            (
                proptest::collection::vec(any::<bool>(), NAMESPACES.len()),
                (0..gws).map(gateway).collect::<Vec<_>>(),
                (0..routes).map(move |i| route(i, gws)).collect::<Vec<_>>(),
                (0..grants).map(grant).collect::<Vec<_>>(),
                (
                    (0..policies).map(backend_tls_policy).collect::<Vec<_>>(),
                    proptest::option::of(ca_bundle()),
                ),
                (
                    (0..filters).map(test_filter).collect::<Vec<_>>(),
                    (0..ext_policies)
                        .map(move |i| test_policy(i, gws, routes))
                        .collect::<Vec<_>>(),
                ),
            )
        })
        .prop_map(
            |(prod, gateways, routes, grants, (policies, ca), (filters, ext_policies))| {
                let mut out = vec![
                    Object::GatewayClass(Box::new(GatewayClass {
                        metadata: meta(None, "ours".into(), BTreeMap::new()),
                        spec: GatewayClassSpec {
                            controller_name: CONTROLLER.into(),
                            ..Default::default()
                        },
                        status: None,
                    })),
                    Object::GatewayClass(Box::new(GatewayClass {
                        metadata: meta(None, "theirs".into(), BTreeMap::new()),
                        spec: GatewayClassSpec {
                            controller_name: "example.net/other".into(),
                            ..Default::default()
                        },
                        status: None,
                    })),
                ];
                for (ns, prod) in NAMESPACES.iter().zip(prod) {
                    let labels = if prod {
                        [("env".to_string(), "prod".to_string())].into()
                    } else {
                        BTreeMap::new()
                    };
                    out.push(Object::Namespace(Namespace {
                        metadata: meta(None, ns.to_string(), labels),
                    }));
                    out.push(Object::Service(Service {
                        metadata: meta(Some(ns), "svc".into(), BTreeMap::new()),
                        spec: ServiceSpec {
                            ports: vec![ServicePort {
                                name: Some("http".into()),
                                port: 80,
                                ..Default::default()
                            }],
                            ..Default::default()
                        },
                    }));
                }
                out.extend(gateways);
                out.extend(routes);
                out.extend(grants);
                out.extend(policies);
                out.extend(ca);
                out.extend(filters);
                out.extend(ext_policies);
                out.into_iter()
                    .filter_map(|mut o| validate(&mut o).is_empty().then_some(o))
                    .collect()
            },
        )
}
