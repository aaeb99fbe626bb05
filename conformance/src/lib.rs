//! # gwcore-conformance — runs Gateway API conformance vectors against gwcore
//!
//! A vector (schema: `shared/conformance/FORMAT.md`) says: given these
//! manifests, after these edits, the status must be this and these requests
//! must get these answers. In **engine mode** the runner plays the API
//! server itself and calls gwcore's engine as a controller would:
//!
//! ```text
//!  vector ──▶ Cluster (simulated API server: generation, merge patch, edits)
//!               │ snapshot                       ▲ status write-back
//!               ▼                                │
//!          engine::compute(snapshot, controller, now) ──▶ statuses
//!               │                                        │
//!               ▼                                        ▼
//!          request checks (routing table)         status checks (FORMAT.md rules)
//! ```
//!
//! Every check of every vector is counted, run or not: what engine mode
//! cannot judge (addresses assigned by a data plane, `wire_only` requests,
//! TCP/UDP/TLS/websocket/DNS requests, traffic shares and mirrors) is
//! reported as not run. Choices the simulation makes:
//!
//! - Upstream vectors get a GatewayClass `gateway-conformance` with our
//!   controllerName, the generated certificates of FORMAT.md (ECDSA, see
//!   [`certs`]) and the applier's overrides; our scenarios (top-level
//!   `controllerName`) are applied as written.
//! - `namespacesReady` checks the Gateways; the simulated cluster has no
//!   kubelet, so its Pods count as Ready.
//! - Objects created after the initial manifests get a `creationTimestamp`
//!   from a simulated clock that moves one second per step (see
//!   [`cluster`]); "now" for the engine comes from the same clock.
//! - After each step the engine runs, its statuses are written back, and it
//!   runs once more on them: that second computation must change nothing.
//! - A request is judged by every weighted backend of the matched rule, and
//!   a Service answers through the pods of the Deployments its selector
//!   picks (or its EndpointSlices' pods, or itself when it has neither).
//!
//! In **wire mode** ([`wire`]) the same simulated cluster plays the API
//! server and the controller, and its objects are served for real by
//! `gwcore-proxy` on loopback: echo servers stand for the pods of its
//! Deployments, and every request is sent over a socket (HTTP/1.1, HTTP/2,
//! TLS with SNI, gRPC, TCP, TLS handshakes, WebSocket, UDP, DNS) and judged
//! by what the echo backend reports, with the comparisons of engine mode.
//! Traffic shares and mirrors are measured over the samples the vector asks
//! for. Nothing is left as not run: what the data plane lacks (TLS to
//! backends) fails, and
//! `conformance/wire-expected-failures.txt` says why.
//!
//! ```no_run
//! use gwcore_conformance::{run_paths, RunOptions};
//!
//! let report = run_paths(&["../shared/conformance/vectors".into()], &RunOptions::default())
//!     .expect("vectors readable");
//! for line in report.lines() {
//!     println!("{line}");
//! }
//! ```

pub mod certs;
pub mod check;
pub mod cluster;
pub mod features;
mod requests;
pub mod runner;
pub mod vector;
pub mod wire;

pub use check::{CheckKind, CheckResult, Outcome};
pub use runner::{Mode, Report, RunOptions, Runner, Tally, VectorResult, Verdict, run_paths};
