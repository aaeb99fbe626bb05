//! # gwcore-k8s — gwcore as a Kubernetes controller
//!
//! Watches the Gateway API and the objects it refers to, keeps a
//! [`gwcore::Snapshot`] of them, runs [`gwcore::engine::compute`] after each
//! burst of changes, and writes the statuses that changed — from one elected
//! replica only. Every replica publishes the computed state, so each can
//! serve traffic from it (see `gwcore serve --kubernetes`).
//!
//! ```text
//!  API server ──watch (one per kind)──▶ kinds::convert ──Update──▶ reducer::Index (Snapshot)
//!      ▲                                                                │ at most every 10 ms
//!      │                                                                ▼
//!      │                                            engine::Engine (changes only) ──▶ State (watch channel)
//!      │                                                                │              └──▶ proxy
//!      └── PUT /status (rv precondition) ◀── writer::plan (changed only) ◀┘
//!                 only while leader::run holds the Lease
//! ```
//!
//! The reducer is synchronous and pure ([`reducer::Index::apply`]); only the
//! writer and the Lease task write to the API server.
//!
//! With [`Options::gateway_services`] the leader also keeps a Service per
//! Gateway ([`gateway_service::desired`]) and, for a Gateway outside the
//! proxy pods' namespace, where a selector would reach none, the
//! EndpointSlices listing the ready pods it watches
//! ([`gateway_service::desired_slices`]); the Gateway's addresses are its
//! Service's (docs/kubernetes.md, "Gateway infrastructure").
//!
//! The filter and policy kinds an embedder registers
//! ([`gwcore::extension::Extensions`], passed with
//! [`Options::with_extensions`]) are watched too, at the version and under
//! the plural discovery finds for them; the engine resolves them, and the
//! `status.ancestors` it computes for policies of a registered kind are
//! written through their `status` subresource, as BackendTLSPolicy's
//! (docs/extensions.md, "Kubernetes").
//!
//! To drive gwcore from your own kube-rs code instead, the pieces are
//! public: [`kinds::Served::discover`] finds the served versions,
//! [`kinds::convert`] turns a `DynamicObject` into gwcore's model, and
//! [`writer::current_status`] / [`writer::same_status`] tell which computed
//! statuses differ from the server's. `examples/status_controller.rs` is a
//! complete status-only controller built from them.
//!
//! ```no_run
//! use gwcore_k8s::{Controller, Options};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let client = kube::Client::try_default().await?;
//! let controller = Controller::start(client, Options::new("gwcore.dev/gateway-controller")).await?;
//! controller.synced().await;
//! let state = controller.state().borrow().clone();
//! for (key, status) in &state.statuses() {
//!     println!("{key}: {}", serde_json::to_string(status)?);
//! }
//! controller.shutdown().await;
//! # Ok(()) }
//! ```

pub mod controller;
pub mod gateway_service;
pub mod kinds;
pub mod leader;
pub mod metrics;
pub mod reducer;
mod service_writer;
pub mod writer;

pub use controller::{Controller, Options, State};
pub use gateway_service::GatewayServiceOptions;
pub use kinds::{Converted, DiscoveryError, Served};
pub use leader::LeaseOptions;
pub use metrics::{Counters, Metrics};
pub use writer::WriterOptions;
