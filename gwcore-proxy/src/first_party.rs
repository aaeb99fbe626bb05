//! The plug-ins gwcore ships: the data-plane halves of gwcore's own policy
//! kinds ([`gwcore::policies`]), registered on the same seam as an
//! embedder's ([`crate::plugin`]). `gwcore serve` runs with [`plugins`];
//! an embedding program adds its own to them.

use crate::plugin::Plugins;

/// gwcore's own plug-ins, with the extensions the engine and the loader
/// need for them: `RateLimitPolicy` ([`crate::rate_limit`]),
/// `BodyLimitPolicy` ([`crate::body_limit`]), `PathPolicy`
/// ([`crate::path_policy`]), `LoadBalancerPolicy` ([`crate::balance`]:
/// round robin where no policy applies).
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
}
