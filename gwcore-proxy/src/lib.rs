//! # gwcore-proxy — a data plane for gwcore
//!
//! Serves the routing table that `gwcore` compiles. The file provider
//! ([`files`]) reads manifests from files and folders so it runs with no
//! cluster.

pub mod files;
