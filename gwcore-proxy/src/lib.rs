//! # gwcore-proxy — a data plane for gwcore
//!
//! Serves the routing table that `gwcore` compiles: HTTP/1.1 with
//! keep-alive, HTTP/2 (h2c with prior knowledge, and over TLS by ALPN),
//! HTTPS listeners terminating TLS with the certificates of their Secrets
//! (chosen by SNI, 421 for a Host of another listener), TLS listeners in
//! Passthrough mode routed by the ClientHello's SNI and in Terminate mode,
//! TCPRoutes, UDPRoutes (a session per client address), forwarding to
//! backends over pooled connections (HTTP/2 for gRPC and
//! `kubernetes.io/h2c` backends), weights, timeouts, retries,
//! mirrors, WebSocket upgrades, hot reload without dropping connections,
//! an admin endpoint, and (feature `echo`) echo backends for demos and
//! conformance.
//!
//! ```text
//!  files ──FileProvider──▶ Snapshot ──Config::build──▶ Config (tables, endpoints, TLS)
//!    ▲  poll mtimes            ▲                           │ ArcSwap (whole swap)
//!    └──── Runtime::poll       └── Runtime::apply ◀────────┤ (embedding programs)
//!                                                          ▼
//!  client ──socket per Gateway port──▶ Proxy::handle ──table.find(head)──▶ Decision
//!                                                          │
//!                   respond (404/421/500/redirect) ◀───────┴──▶ route::forward ──▶ backend
//!  TLS passthrough / TLS terminate / TCP ──l4 (SNI, TLSRoute/TCPRoute)──▶ byte copy ──▶ backend
//! ```
//!
//! The proxy holds no HTTP routing logic of its own: [`gwcore::table`]
//! decides, filters are the table's pure functions, and [`route`] maps each
//! decision to an HTTP exchange. TLSRoute and TCPRoute, which the table
//! does not cover, are chosen by the pure functions of [`l4`].
//!
//! Modules, from the outside in; each uses only modules further down the
//! list (`.ci/module_cycles.py` checks that no two modules use each other,
//! even through others): [`provider`] (file watching, reloads,
//! [`provider::Runtime`]) and [`admin`]; [`server`] (sockets per port,
//! draining); the private `tcp` and `udp` modules (TLS passthrough, TCP
//! and UDP routes); [`tls`] (the handshake); the private `conn` module
//! (HTTP on one connection, its timeouts, and [`proxy::Proxy::handle`]:
//! access log and metrics of each request; HTTP/1.x is read and written
//! by the private `h1_server` module, HTTP/2 by hyper, and a WebSocket
//! upgrade hands the connection over through the private `upgrade`
//! module); [`route`]; [`path_policy`]
//! (paths with escaped slashes, before routing); [`ext_auth`] (the
//! `ExternalAuth` filter, asking authorization services); [`proxy`] (shared
//! state); [`forward`] (proxy headers, pools; HTTP/1.1 to backends is
//! spoken on the request's own task by the private `h1` module) and
//! [`config`]; [`backend_tls`], [`plugin`]; and below them all [`certs`]
//! (certificates and keys from Secrets), [`endpoints`], [`limits`]
//! (connection limits, trusted proxies), [`proxy_protocol`] (the header
//! a TCP load balancer sends first), [`metrics`], [`l4`], [`files`],
//! [`body`], [`tracing_otel`] (spans of requests, exported over OTLP)
//! and [`trace_context`] (W3C `traceparent`), and, with the non-default
//! feature `echo`, the stand-in
//! backends `echo` and `tcp_echo` (test servers, not part of the default
//! API).
//!
//! Examples: `examples/embed.rs` runs this proxy inside your program and
//! swaps its configuration ([`provider::Runtime::from_snapshot`],
//! [`provider::Runtime::apply`]); `examples/custom_proxy.rs` does without
//! this crate — your own hyper server on gwcore's table, in under 100
//! lines — for when you want gwcore's decisions and your own data plane.
//!
//! ```no_run
//! use gwcore_proxy::provider::{Runtime, RuntimeOptions};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let mut opts = RuntimeOptions::new("example.com/gateway-controller");
//! opts.listen.map.insert(80, "127.0.0.1:8080".parse()?);
//! // With the `echo` feature, `opts.echo_backends = true` starts a stand-in
//! // backend for every Service without endpoints.
//! let rt = Runtime::start(vec!["examples/acme".into()], opts).await?;
//! rt.run_until(
//!     std::time::Duration::from_secs(1),
//!     std::time::Duration::from_secs(10),
//!     async { let _ = tokio::signal::ctrl_c().await; },
//! )
//! .await;
//! # Ok(()) }
//! ```

#[doc(hidden)]
pub mod __fuzz;
pub mod access_log;
pub mod admin;
pub mod backend_tls;
pub mod balance;
pub mod body;
pub mod body_limit;
pub mod certs;
pub mod client_body;
pub mod config;
mod conn;
#[cfg(feature = "echo")]
pub mod echo;
pub mod endpoints;
pub mod ext_auth;
pub mod files;
pub mod first_party;
pub mod forward;
mod h1;
mod h1_server;
mod h2_flood;
mod health;
pub mod l4;
pub mod limits;
pub mod metrics;
pub mod path_policy;
pub mod plugin;
pub mod provider;
pub mod proxy;
pub mod proxy_protocol;
pub mod rate_limit;
mod retry_budget;
pub mod route;
pub mod server;
pub mod session;
mod tcp;
#[cfg(feature = "echo")]
pub mod tcp_echo;
pub mod tls;
pub mod trace_context;
pub mod tracing_otel;
mod udp;
mod upgrade;
mod worker;
mod write_timeout;
