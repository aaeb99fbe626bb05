//! Your own `gwcore` binary: the stock command with your filter and policy
//! kinds, in every subcommand (`check`, `explain`, `serve`, `controller`).
//!
//! ```text
//! cargo run -p gwcore-cli --example custom_binary -- check manifests.yaml
//! cargo run -p gwcore-cli --example custom_binary -- serve manifests.yaml \
//!     --echo-backends --listen 80=127.0.0.1:8080
//! ```
//!
//! It registers two kinds of the `example.com` group, both halves of each
//! (what gwcore's engine decides, what the proxy does):
//!
//! - `ApiKey`, an `ExtensionRef` filter: a request without the header named
//!   in `spec.header` gets 401 (the backend is not contacted);
//! - `CacheControl`, a policy attached by `targetRefs` (GEP-713): the
//!   responses of the routes it targets get `cache-control: <spec.value>`.
//!
//! ```yaml
//! apiVersion: example.com/v1
//! kind: ApiKey
//! metadata: {name: needs-key, namespace: shop}
//! spec: {header: x-api-key}
//! ---
//! apiVersion: example.com/v1
//! kind: CacheControl
//! metadata: {name: short, namespace: shop}
//! spec:
//!   targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: catalog}]
//!   value: max-age=60
//! ```
//!
//! `gwcore check` prints the route's `ResolvedRefs=True` and the policy's
//! `status.ancestors` (`Accepted`); the stock `gwcore`, which knows neither
//! kind, says `InvalidKind` (`gwcore-cli/tests/custom_binary.rs` runs this
//! program both ways).

use std::process::ExitCode;

use gwcore::extension::{
    ExtensionKind, ExtensionObject, FilterKind, PolicyContext, PolicyKind, PolicyValue, Refused,
    TargetKind,
};
use gwcore::model::Object;
use gwcore_proxy::plugin::{
    BoxFuture, FilterPlugin, FilterRequest, Plugins, PolicyPlugin, PolicyRequest, PolicyResponse,
    Verdict,
};
use http::{HeaderName, HeaderValue, StatusCode};

/// The filter kind.
const API_KEY: ExtensionKind = ExtensionKind::new("example.com/v1", "ApiKey");
/// The policy kind.
const CACHE_CONTROL: ExtensionKind = ExtensionKind::new("example.com/v1", "CacheControl");

/// An `ApiKey` object's spec.
#[derive(Debug, serde::Deserialize)]
struct ApiKeySpec {
    /// The header a request must carry.
    header: String,
}

/// The `ApiKey` filter: the engine resolves references to it (deciding
/// half), the proxy runs it (acting half).
#[derive(Debug)]
struct ApiKey;

impl ApiKey {
    fn header(object: &ExtensionObject) -> Result<HeaderName, Refused> {
        let spec: ApiKeySpec = object.spec_as()?;
        HeaderName::try_from(spec.header.as_str()).map_err(|_| {
            Refused::new(format!(
                "spec.header: {:?} is not a header name",
                spec.header
            ))
        })
    }
}

impl FilterKind for ApiKey {
    fn kind(&self) -> ExtensionKind {
        API_KEY
    }

    /// An object whose header is not a header name leaves the reference
    /// unresolved (`ResolvedRefs=False`, `InvalidParameters`).
    fn check(&self, object: &ExtensionObject) -> Result<(), Refused> {
        ApiKey::header(object).map(|_| ())
    }
}

impl FilterPlugin for ApiKey {
    fn kind(&self) -> ExtensionKind {
        API_KEY
    }

    fn on_request<'a>(&'a self, req: FilterRequest<'a>) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            // `check` accepted the object, so its header parses.
            let present =
                ApiKey::header(req.object).is_ok_and(|h| req.head.headers.contains_key(h));
            if present {
                Verdict::Continue
            } else {
                Verdict::Respond(gwcore_proxy::route::status_response(
                    StatusCode::UNAUTHORIZED,
                    "missing API key\n",
                ))
            }
        })
    }
}

/// A `CacheControl` policy's spec (its `targetRefs` are the engine's).
#[derive(Debug, serde::Deserialize)]
struct CacheControlSpec {
    /// The `cache-control` value of the responses.
    value: String,
}

/// The `CacheControl` policy kind.
#[derive(Debug)]
struct CacheControl;

impl PolicyKind for CacheControl {
    fn kind(&self) -> ExtensionKind {
        CACHE_CONTROL
    }

    fn targets(&self) -> &'static [TargetKind] {
        &[TargetKind::Gateway, TargetKind::HttpRoute]
    }

    /// Parsed once per change of the policy: the header value the proxy
    /// sets. A value that cannot be a header value makes the policy
    /// `Accepted=False` (`Invalid`).
    fn parse(&self, policy: &Object, _: &mut PolicyContext<'_>) -> Result<PolicyValue, Refused> {
        let Object::Extension(object) = policy else {
            return Err(Refused::new("not a CacheControl object"));
        };
        let spec: CacheControlSpec = object.spec_as()?;
        let value = HeaderValue::try_from(spec.value.as_str()).map_err(|_| {
            Refused::new(format!(
                "spec.value: {:?} is not a header value",
                spec.value
            ))
        })?;
        Ok(PolicyValue::new(value))
    }
}

impl PolicyPlugin for CacheControl {
    fn kind(&self) -> ExtensionKind {
        CACHE_CONTROL
    }

    fn on_request<'a>(&'a self, _: PolicyRequest<'a>) -> BoxFuture<'a, Verdict> {
        Box::pin(async { Verdict::Continue })
    }

    fn on_response(&self, response: PolicyResponse<'_>) {
        if let Some(v) = response.policy.value.get::<HeaderValue>() {
            response
                .head
                .headers
                .insert(http::header::CACHE_CONTROL, v.clone());
        }
    }
}

/// gwcore's own plug-ins and ours.
pub fn plugins() -> Plugins {
    gwcore_proxy::first_party::plugins()
        .with_filter(ApiKey, ApiKey)
        .with_policy_plugin(CacheControl, CacheControl)
}

/// The command, as `gwcore` but with [`plugins`].
pub fn main() -> ExitCode {
    gwcore_cli::Cli::new().with_plugins(plugins()).run()
}
