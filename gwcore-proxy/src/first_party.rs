//! The plug-ins gwcore ships: the data-plane halves of gwcore's own policy
//! kinds ([`gwcore::policies`]), registered on the same seam as an
//! embedder's ([`crate::plugin`]). `gwcore serve` runs with [`plugins`];
//! an embedding program adds its own to them.

use crate::plugin::Plugins;

/// gwcore's own plug-ins, with the extensions the engine and the loader
/// need for them: `RateLimitPolicy` ([`crate::rate_limit`]),
/// `BodyLimitPolicy` ([`crate::body_limit`]), `PathPolicy`
/// ([`crate::path_policy`]), `LoadBalancerPolicy` ([`crate::balance`]:
/// round robin where no policy applies), and upstream's experimental
/// `XBackendTrafficPolicy` (its `sessionPersistence`: [`crate::session`]).
pub fn plugins() -> Plugins {
    Plugins::new()
        .with_policy_plugin(
            gwcore::policies::rate_limit::RateLimitPolicy,
            crate::rate_limit::RateLimit::new(),
        )
        .with_policy_plugin(
            gwcore::policies::body_limit::BodyLimitPolicy,
            crate::body_limit::BodyLimiter::new(),
        )
        .with_endpoint_picker(
            gwcore::policies::load_balancer::LoadBalancerPolicy,
            crate::balance::Balancer::new(),
        )
        // Read before routing by `crate::path_policy`, not on a rule.
        .with_policy(gwcore::policies::path::PathPolicy)
        // Its sessions are kept by `crate::route` (`crate::session`).
        .with_policy(gwcore::policies::backend_traffic::BackendTrafficPolicy)
}

/// A data-plane feature gwcore ships that is not a policy kind (it is set
/// by `gwcore serve` flags or [`crate::limits::ServeOptions`]), as the
/// feature table (`docs/features.md`) lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct DataPlaneFeature {
    /// What it is.
    pub name: &'static str,
    /// How it is turned on or tuned.
    pub setting: &'static str,
    /// Its page under `docs/`.
    pub doc: &'static str,
}

/// gwcore's data-plane features beyond its policy kinds.
pub const DATA_PLANE_FEATURES: &[DataPlaneFeature] = &[
    DataPlaneFeature {
        name: "PROXY protocol v1 and v2 (client address from a TCP load balancer)",
        setting: "`--proxy-protocol PORTS`, `ServeOptions::proxy_protocol`",
        doc: "docs/proxy-protocol.md",
    },
    DataPlaneFeature {
        name: "Request body limit (Gateway-wide default; per route: BodyLimitPolicy)",
        setting: "`--max-request-body-bytes`, `Limits::max_request_body_bytes`",
        doc: "docs/body-limits.md",
    },
    DataPlaneFeature {
        name: "Slow clients: request body timeout and minimum rate, response write timeout",
        setting: "`--request-body-timeout`, `--min-request-body-rate`, `--response-write-timeout`",
        doc: "docs/body-limits.md",
    },
    DataPlaneFeature {
        name: "Request framing validated before a backend sees a request",
        setting: "`--request-body-buffer-bytes`",
        doc: "docs/body-limits.md",
    },
    DataPlaneFeature {
        name: "Escaped slashes in paths (default; per Gateway or listener: PathPolicy)",
        setting: "`--escaped-slashes`, `ServeOptions::escaped_slashes`",
        doc: "docs/path-policy.md",
    },
    DataPlaneFeature {
        name: "HTTP/2 abuse limits (rapid reset, CONTINUATION, control-frame floods, HPACK bombs)",
        setting: "`--http2-max-control-frames-per-second` and the other `--http2-*` limits",
        doc: "docs/isolation.md",
    },
    DataPlaneFeature {
        name: "Tracing: W3C trace context, spans over OTLP, trace id in access logs",
        setting: "`--otlp-endpoint`, `--trace-sampling-ratio`, `ServeOptions::tracing`",
        doc: "docs/tracing.md",
    },
    DataPlaneFeature {
        name: "External authorization (the ExternalAuth filter, HTTP and Envoy ext_authz gRPC)",
        setting: "HTTPRoute filter `type: ExternalAuth`",
        doc: "docs/external-auth.md",
    },
    DataPlaneFeature {
        name: "Session persistence (GEP-1619): cookie and header sessions, timeouts, retry budget",
        setting: "route rule `sessionPersistence`, XBackendTrafficPolicy, `--session-key-file`",
        doc: "docs/session-persistence.md",
    },
    DataPlaneFeature {
        name: "Load balancing, outlier ejection and active HTTP health checks",
        setting: "LoadBalancerPolicy (round robin without one)",
        doc: "docs/load-balancing.md",
    },
];
