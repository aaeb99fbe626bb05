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
//! ```
//! use gwcore::{engine::{compute, ComputeOptions}, load::load_str, Snapshot};
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
//!   listeners: [{name: http, port: 80, protocol: HTTP}]
//! "#;
//! let loaded = load_str("example.yaml", yaml);
//! assert!(loaded.diagnostics.is_empty());
//! let snapshot = Snapshot::from_objects(loaded.objects.into_iter().map(|(o, _)| o));
//! let out = compute(&snapshot, &ComputeOptions::new("example.com/gateway-controller", "2026-01-01T00:00:00Z"));
//! assert_eq!(out.routing.len(), 1);
//! ```

#[doc(hidden)]
#[path = "fuzz.rs"]
pub mod __fuzz;
pub mod attachments;
pub mod engine;
pub mod hostname;
pub mod load;
pub mod model;
pub mod scale;
pub mod selector;
pub mod snapshot;
pub mod status;
pub mod table;
pub mod validate;

pub use snapshot::Snapshot;
#[cfg(feature = "proptest")]
pub mod testing;
