//! `XBackendTrafficPolicy` (`gateway.networking.x-k8s.io/v1alpha1`,
//! Gateway API's experimental channel): how traffic to a Service is
//! handled, `sessionPersistence` (GEP-1619) and a retry budget
//! (`retryConstraint`). Not one of gwcore's own kinds: upstream's CRD
//! (`gateway.networking.x-k8s.io_xbackendtrafficpolicies.yaml`) declares
//! it; gwcore reads it through the same seam as its own
//! ([`crate::extension::PolicyKind`]).
//!
//! ```yaml
//! apiVersion: gateway.networking.x-k8s.io/v1alpha1
//! kind: XBackendTrafficPolicy
//! metadata: {name: cart, namespace: shop}
//! spec:
//!   targetRefs: [{group: "", kind: Service, name: cart}]
//!   sessionPersistence:
//!     type: Cookie
//!     absoluteTimeout: 1h
//!     cookie: {name: cart-session, lifetimeType: Permanent}
//!   retryConstraint:
//!     budget: {percent: 20, interval: 10s}
//!     minRetryRate: {count: 10, interval: 1s}
//! ```
//!
//! A route rule's own `sessionPersistence` wins over the policy's for the
//! requests of that rule (GEP-1619: "Session persistence configuration
//! specified in a route rule SHALL override equivalent configuration" of a
//! policy); the policy stays `Accepted` and applies to the other rules.

use std::sync::Arc;
use std::time::Duration;

use crate::extension::{
    ExtensionKind, PolicyContext, PolicyKind, PolicyValue, Refused, TargetKind,
};
use crate::model::{Object, SessionPersistenceSpec};
use crate::session::SessionPersistence;

/// The kind: `gateway.networking.x-k8s.io/v1alpha1 XBackendTrafficPolicy`.
pub const KIND: ExtensionKind = ExtensionKind::new(
    "gateway.networking.x-k8s.io/v1alpha1",
    "XBackendTrafficPolicy",
);

/// A parsed `XBackendTrafficPolicy`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct BackendTraffic {
    /// `spec.sessionPersistence`; its default name is made from the
    /// policy's namespace and name.
    pub session_persistence: Option<Arc<SessionPersistence>>,
    /// `spec.retryConstraint`.
    pub retry_constraint: Option<RetryConstraint>,
}

/// `spec.retryConstraint`: a retry budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RetryConstraint {
    /// `budget.percent`: the most retries may make of the requests of the
    /// last `budget_interval`, in percent (0 to 100; default 20).
    pub budget_percent: u32,
    /// `budget.interval` (1s to 1h; default 10s).
    pub budget_interval: Duration,
    /// `minRetryRate.count`: retries allowed per `min_retry_interval`
    /// whatever the budget (default 10).
    pub min_retry_count: u32,
    /// `minRetryRate.interval` (more than 0, at most 1h; default 1s).
    pub min_retry_interval: Duration,
}

impl Default for RetryConstraint {
    fn default() -> RetryConstraint {
        RetryConstraint {
            budget_percent: 20,
            budget_interval: Duration::from_secs(10),
            min_retry_count: 10,
            min_retry_interval: Duration::from_secs(1),
        }
    }
}

const HOUR: Duration = Duration::from_secs(3600);

fn duration(v: Option<&serde_json::Value>, field: &str) -> Result<Option<Duration>, Refused> {
    let Some(v) = v else { return Ok(None) };
    let text = v
        .as_str()
        .ok_or_else(|| Refused::new(format!("{field}: {v} is not a duration")))?;
    crate::values::Duration::parse(text)
        .value()
        .map(Some)
        .ok_or_else(|| {
            Refused::new(format!(
                "{field}: {text:?} is not a duration (like 1h, 30m, 10s, 500ms)"
            ))
        })
}

fn whole(v: Option<&serde_json::Value>, field: &str, max: u64) -> Result<Option<u32>, Refused> {
    let Some(v) = v else { return Ok(None) };
    match v.as_u64() {
        Some(n) if n <= max => Ok(Some(n as u32)),
        _ => Err(Refused::new(format!(
            "{field}: {v} is not a whole number from 0 to {max}"
        ))),
    }
}

impl RetryConstraint {
    /// Parses `spec.retryConstraint`.
    pub fn parse(v: &serde_json::Value) -> Result<RetryConstraint, Refused> {
        let mut r = RetryConstraint::default();
        let f = "spec.retryConstraint";
        if let Some(b) = v.get("budget") {
            if let Some(p) = whole(b.get("percent"), &format!("{f}.budget.percent"), 100)? {
                r.budget_percent = p;
            }
            if let Some(i) = duration(b.get("interval"), &format!("{f}.budget.interval"))? {
                if !(Duration::from_secs(1)..=HOUR).contains(&i) {
                    return Err(Refused::new(format!(
                        "{f}.budget.interval: must be from 1s to 1h"
                    )));
                }
                r.budget_interval = i;
            }
        }
        if let Some(m) = v.get("minRetryRate") {
            if let Some(c) = whole(
                m.get("count"),
                &format!("{f}.minRetryRate.count"),
                1_000_000,
            )? {
                if c == 0 {
                    return Err(Refused::new(format!(
                        "{f}.minRetryRate.count: must be at least 1"
                    )));
                }
                r.min_retry_count = c;
            }
            if let Some(i) = duration(m.get("interval"), &format!("{f}.minRetryRate.interval"))? {
                if i.is_zero() || i > HOUR {
                    return Err(Refused::new(format!(
                        "{f}.minRetryRate.interval: must be more than 0 and at most 1h"
                    )));
                }
                r.min_retry_interval = i;
            }
        }
        Ok(r)
    }
}

impl BackendTraffic {
    /// Parses a policy's `spec`; `scope` (the policy's `namespace/name`)
    /// makes the session's default name.
    pub fn parse(spec: &serde_json::Value, scope: &str) -> Result<BackendTraffic, Refused> {
        let session_persistence = match spec.get("sessionPersistence") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => {
                let raw: SessionPersistenceSpec = serde_json::from_value(v.clone())
                    .map_err(|e| Refused::new(format!("spec.sessionPersistence: {e}")))?;
                Some(Arc::new(
                    SessionPersistence::parse(&raw, scope, "spec.sessionPersistence")
                        .map_err(Refused::new)?,
                ))
            }
        };
        let retry_constraint = match spec.get("retryConstraint") {
            None | Some(serde_json::Value::Null) => None,
            Some(v) => Some(RetryConstraint::parse(v)?),
        };
        Ok(BackendTraffic {
            session_persistence,
            retry_constraint,
        })
    }
}

/// The deciding half of `XBackendTrafficPolicy`: register it (gwcore's
/// binary does, `gwcore_proxy::first_party::plugins`) and the engine
/// attaches its policies to the Services they name.
#[derive(Debug, Clone, Copy, Default)]
pub struct BackendTrafficPolicy;

impl PolicyKind for BackendTrafficPolicy {
    fn kind(&self) -> ExtensionKind {
        KIND
    }

    /// Services only: the CRD's `targetRefs` name backends.
    fn targets(&self) -> &'static [TargetKind] {
        &[TargetKind::Service]
    }

    fn parse(&self, policy: &Object, _: &mut PolicyContext<'_>) -> Result<PolicyValue, Refused> {
        let Object::Extension(object) = policy else {
            return Err("not an XBackendTrafficPolicy object".into());
        };
        let scope = format!("{}/{}", object.metadata.ns(), object.metadata.name);
        BackendTraffic::parse(&object.spec, &scope).map(PolicyValue::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policies::testing;
    use crate::session::{CookieLifetime, SessionKind};

    const CLUSTER: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gc}
spec: {controllerName: example.com/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: ns}
spec:
  gatewayClassName: gc
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: ns}
spec: {ports: [{port: 8080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: ns}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: cart, port: 8080}]}]
"#;

    fn with_policy(spec: &str) -> String {
        format!(
            "{CLUSTER}---\napiVersion: gateway.networking.x-k8s.io/v1alpha1\nkind: XBackendTrafficPolicy\nmetadata: {{name: p, namespace: ns}}\nspec:\n  targetRefs: [{{group: \"\", kind: Service, name: cart}}]\n{spec}"
        )
    }

    #[test]
    fn a_session_policy_on_a_service_is_accepted_and_reaches_its_backends() {
        let out = testing::run(
            BackendTrafficPolicy,
            &with_policy(
                "  sessionPersistence: {type: Cookie, absoluteTimeout: 10m, cookie: {lifetimeType: Permanent}}\n",
            ),
        );
        let (status, reason, _) = testing::accepted(&out, KIND, "ns", "p");
        assert_eq!((status.as_str(), reason.as_str()), ("True", "Accepted"));
        let (name, sp) = testing::applied(&out, KIND, "GET", "/", |v: &BackendTraffic| {
            v.session_persistence.clone()
        })
        .expect("applies");
        assert_eq!(name, "p");
        let sp = sp.expect("session persistence");
        assert_eq!(sp.name, crate::session::default_name("ns/p"));
        assert!(matches!(
            sp.kind,
            SessionKind::Cookie {
                lifetime: CookieLifetime::Permanent,
                ..
            }
        ));
    }

    #[test]
    fn invalid_session_persistence_makes_the_policy_invalid() {
        for (spec, field) in [
            (
                "  sessionPersistence: {cookie: {lifetimeType: Permanent}}\n",
                "spec.sessionPersistence.absoluteTimeout",
            ),
            (
                "  sessionPersistence: {type: Header, cookie: {name: a}}\n",
                "spec.sessionPersistence.cookie",
            ),
            (
                "  retryConstraint: {budget: {percent: 120}}\n",
                "spec.retryConstraint.budget.percent",
            ),
            (
                "  retryConstraint: {budget: {interval: 2h}}\n",
                "spec.retryConstraint.budget.interval",
            ),
        ] {
            let out = testing::run(BackendTrafficPolicy, &with_policy(spec));
            let (status, reason, message) = testing::accepted(&out, KIND, "ns", "p");
            assert_eq!(
                (status.as_str(), reason.as_str()),
                ("False", "Invalid"),
                "{spec}"
            );
            assert!(message.contains(field), "{spec}: {message}");
        }
    }

    #[test]
    fn a_policy_naming_a_route_is_invalid() {
        let yaml = format!(
            "{CLUSTER}---\napiVersion: gateway.networking.x-k8s.io/v1alpha1\nkind: XBackendTrafficPolicy\nmetadata: {{name: p, namespace: ns}}\nspec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}}]\n  sessionPersistence: {{}}\n"
        );
        let out = testing::run(BackendTrafficPolicy, &yaml);
        let (status, reason, _) = testing::accepted(&out, KIND, "ns", "p");
        assert_eq!((status.as_str(), reason.as_str()), ("False", "Invalid"));
    }

    #[test]
    fn retry_constraint_defaults_follow_the_crd() {
        let v: serde_json::Value = serde_json::json!({"retryConstraint": {}});
        let b = BackendTraffic::parse(&v, "ns/p").unwrap();
        assert_eq!(b.retry_constraint, Some(RetryConstraint::default()));
        assert_eq!(b.retry_constraint.unwrap().budget_percent, 20);
    }
}
