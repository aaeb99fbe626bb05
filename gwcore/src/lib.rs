//! # gwcore — the Kubernetes Gateway API as a library
//!
//! gwcore computes what a Gateway API controller computes — which Routes
//! attach to which Gateways, every status condition, and the routing table a
//! data plane serves — as a pure, deterministic function of a snapshot of
//! objects. No I/O, no async, no clock: time and the previous status come in
//! as arguments, so the same input in any order gives byte-identical output.
//!
//! ```text
//!  manifests ──load──▶ Snapshot ──engine::compute──▶ statuses (Kubernetes shape)
//!                                        │
//!                                        └──▶ GatewayRouting ──table──▶ Table::find(request) ──▶ Decision
//! ```
//!
//! In more detail, one step per module:
//!
//! 1. **snapshot** — [`load`] reads manifests (or an adapter converts API
//!    objects), [`validate`] applies the CRDs' defaults and rules, and a
//!    [`Snapshot`] holds the objects by kind, namespace and name.
//! 2. **attach** — [`engine::compute`] decides which listeners accept which
//!    routes ([`attachments`]: hostnames, `allowedRoutes`, ReferenceGrants,
//!    sectionName and port).
//! 3. **status** — the same call returns every status the controller owns
//!    ([`status`]: conditions with the spec's types and reasons, listener
//!    `attachedRoutes`), and a [`engine::Computed::routing`] per Gateway.
//! 4. **table** — [`table::Table::compile`] turns one Gateway's routing into
//!    an immutable table to share between threads.
//! 5. **match** — [`table::Table::find`] answers each request with a
//!    [`table::Decision`]: forward (filters, weighted backends), redirect,
//!    or a status.
//!
//! ```
//! use gwcore::engine::{compute, ComputeOptions};
//! use gwcore::load::load_str;
//! use gwcore::status::ObjectStatus;
//! use gwcore::table::{Action, RequestHead, Table};
//! use gwcore::Snapshot;
//!
//! let yaml = r#"
//! apiVersion: gateway.networking.k8s.io/v1
//! kind: GatewayClass
//! metadata: {name: acme}
//! spec: {controllerName: example.com/gateway-controller}
//! ---
//! apiVersion: gateway.networking.k8s.io/v1
//! kind: Gateway
//! metadata: {name: gw, namespace: infra}
//! spec:
//!   gatewayClassName: acme
//!   listeners: [{name: http, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}]
//! ---
//! apiVersion: v1
//! kind: Service
//! metadata: {name: store, namespace: shop}
//! spec: {ports: [{port: 8080}]}
//! ---
//! apiVersion: gateway.networking.k8s.io/v1
//! kind: HTTPRoute
//! metadata: {name: store, namespace: shop}
//! spec:
//!   parentRefs: [{name: gw, namespace: infra}]
//!   hostnames: [shop.example.com]
//!   rules:
//!   - matches: [{path: {type: PathPrefix, value: /cart}}]
//!     backendRefs: [{name: store, port: 8080}]
//! "#;
//! // 1. snapshot
//! let loaded = load_str("example.yaml", yaml);
//! assert!(loaded.diagnostics.is_empty());
//! let snapshot = Snapshot::from_objects(loaded.objects.into_iter().map(|(o, _)| o));
//!
//! // 2. attach and 3. status: what a controller would write.
//! let out = compute(&snapshot, &ComputeOptions::new("example.com/gateway-controller", "2026-01-01T00:00:00Z"));
//! assert_eq!(out.routing.len(), 1);
//! let route = out.statuses.iter().find(|(k, _)| k.name == "store" && k.kind.as_str() == "HTTPRoute");
//! let Some((_, ObjectStatus::Route(status))) = route else { panic!("the route has a status") };
//! let accepted = status.parents[0].conditions.iter().find(|c| c.type_ == "Accepted").unwrap();
//! assert_eq!((accepted.status.as_str(), accepted.reason.as_str()), ("True", "Accepted"));
//!
//! // 4. table and 5. match: what a data plane does per request.
//! let table = Table::compile(out.routing.values().next().unwrap());
//! let decision = table.find(&RequestHead::new(80, "shop.example.com", "GET", "/cart/42"));
//! let Action::Forward(forward) = decision.action else { panic!("forwarded") };
//! let backend = forward.pick(0).target().unwrap();
//! assert_eq!((backend.service.name.as_str(), backend.port), ("store", 8080));
//! // Another host, or a path outside /cart: 404 from the gateway itself.
//! assert_eq!(table.find(&RequestHead::new(80, "shop.example.com", "GET", "/")).status(), Some(http::StatusCode::NOT_FOUND));
//! ```
//!
//! # Where next
//!
//! - Examples (built in CI): `gwcore-proxy/examples/custom_proxy.rs` (your
//!   own hyper proxy on [`table::Table`], under 100 lines),
//!   `gwcore-k8s/examples/status_controller.rs` (gwcore in your own kube-rs
//!   controller, status only), `gwcore/examples/proptest_harness.rs` (hold
//!   your router to the reference matcher with `gwcore::testing`, feature
//!   `proptest`), and `examples/ci/` (`gwcore check` before `kubectl apply`).
//! - `docs/features.md`: every Gateway API feature by conformance profile,
//!   as the conformance vectors measure it; `docs/semver.md`: what a
//!   version number promises.
//! - Cargo features: `proptest` exports the strategies and the reference
//!   matcher as `gwcore::testing`. Default features: none; gwcore depends on
//!   no async runtime, HTTP stack or Kubernetes client.

#[doc(hidden)]
#[path = "fuzz.rs"]
pub mod __fuzz;
pub mod attachments;
pub mod engine;
pub mod extension;
pub mod features;
pub mod hostname;
pub mod load;
pub mod model;
pub mod policies;
#[cfg(feature = "scale")]
pub mod scale;
pub mod selector;
pub mod session;
pub mod snapshot;
pub mod status;
pub mod table;
pub mod validate;
pub mod values;

pub use snapshot::Snapshot;

/// The README's Rust examples, run as doctests so they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
#[cfg(feature = "proptest")]
pub mod testing;
