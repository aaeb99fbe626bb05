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
//! cannot judge (Pod readiness, addresses assigned by a data plane,
//! `wire_only` requests) is reported as not run.
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
mod requests;
pub mod runner;
pub mod vector;

pub use check::{CheckKind, CheckResult, Outcome};
pub use runner::{Mode, Report, RunOptions, Runner, Tally, VectorResult, Verdict, run_paths};
