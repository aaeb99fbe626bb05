//! The policy kinds gwcore itself defines, in the API group
//! [`GROUP`] (CRDs in `deploy/crds/`): the deciding halves, pure like the
//! rest of this crate, built on the same seam as an embedder's
//! ([`crate::extension::PolicyKind`]). Their data-plane halves are in
//! `gwcore_proxy::first_party`.

/// The API group of gwcore's own policy kinds.
pub const GROUP: &str = "policy.gwcore.dev";

/// The apiVersion of gwcore's own policy kinds.
pub const API_VERSION: &str = "policy.gwcore.dev/v1alpha1";

pub mod backend_traffic;
pub mod body_limit;
pub mod load_balancer;
pub mod path;
pub mod rate_limit;
#[cfg(test)]
mod testing;
