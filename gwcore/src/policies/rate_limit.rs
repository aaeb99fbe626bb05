//! `RateLimitPolicy` (`policy.gwcore.dev/v1alpha1`): token-bucket limits
//! on the requests a Gateway, a listener, a route or a rule takes
//! (docs/rate-limits.md).
//!
//! ```yaml
//! apiVersion: policy.gwcore.dev/v1alpha1
//! kind: RateLimitPolicy
//! metadata: {name: careers, namespace: careers}
//! spec:
//!   targetRefs:
//!   - {group: gateway.networking.k8s.io, kind: HTTPRoute, name: careers}
//!   limits:
//!   - {requests: 100, unit: Minute}                         # the route as a whole
//!   - {requests: 5, interval: 1s, burst: 10, key: {type: ClientAddress}}
//!   - {requests: 20, interval: 10s, key: {type: Header, header: x-tenant}}
//! ```
//!
//! This module is the deciding half: it parses a policy into
//! [`RateLimits`] (refusing bad specs, naming the field) and the engine
//! attaches it by GEP-713's rules. The counting is the data plane's
//! (`gwcore_proxy::rate_limit`).

use std::time::Duration;

use serde::Deserialize;

use crate::extension::{
    ExtensionKind, PolicyContext, PolicyKind, PolicyValue, Refused, TargetKind,
};
use crate::model::Object;

/// The kind: `policy.gwcore.dev/v1alpha1 RateLimitPolicy`.
pub const KIND: ExtensionKind = ExtensionKind::new(super::API_VERSION, "RateLimitPolicy");

/// The most limits one policy may hold.
pub const MAX_LIMITS: usize = 16;

/// The most `requests` (and `burst`) a limit may say.
pub const MAX_REQUESTS: u32 = 1_000_000_000;

/// The longest `interval` a limit may say: one day.
pub const MAX_INTERVAL: Duration = Duration::from_secs(86_400);

/// A parsed `RateLimitPolicy`: every limit must let a request through.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct RateLimits {
    /// The limits, in `spec.limits` order (at least one).
    pub limits: Vec<Limit>,
}

/// One limit: a token bucket per key, refilled with [`Limit::requests`]
/// tokens per [`Limit::interval`] (evenly, not all at once) and holding
/// at most [`Limit::burst`] tokens. A request takes one token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Limit {
    /// Requests allowed per interval (at least 1).
    pub requests: u32,
    /// The interval (more than zero, at most [`MAX_INTERVAL`]).
    pub interval: Duration,
    /// The bucket's size: how many requests may come at once after a
    /// quiet time. `spec.limits[].burst`, default [`Limit::requests`].
    pub burst: u32,
    /// What the requests are counted by.
    pub key: LimitKey,
}

impl Limit {
    /// A limit of `requests` per `interval`, burst `requests`, counted
    /// for the route as a whole.
    pub fn new(requests: u32, interval: Duration) -> Limit {
        Limit {
            requests,
            interval,
            burst: requests,
            key: LimitKey::Route,
        }
    }

    /// With `burst`.
    pub fn with_burst(mut self, burst: u32) -> Limit {
        self.burst = burst;
        self
    }

    /// With `key`.
    pub fn with_key(mut self, key: LimitKey) -> Limit {
        self.key = key;
        self
    }
}

/// What a limit counts requests by. Every bucket belongs to one route as
/// well: a policy on a Gateway limits each of its routes on its own.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum LimitKey {
    /// One bucket for the route (`key: {type: Route}`, the default).
    Route,
    /// One bucket per client IP address (`key: {type: ClientAddress}`).
    ClientAddress,
    /// One bucket per value of this request header (`key: {type: Header,
    /// header: x-tenant}`); requests without it share one bucket.
    Header(http::HeaderName),
}

/// `RateLimitPolicy`'s deciding half; register it with
/// [`crate::extension::Extensions::with_policy`] (`gwcore_proxy::first_party`
/// registers it with its data-plane half).
#[derive(Debug, Clone, Copy, Default)]
pub struct RateLimitPolicy;

/// The spec as written.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Spec {
    /// Resolved by the engine, not here.
    #[serde(default)]
    #[allow(dead_code)]
    target_refs: serde_json::Value,
    #[serde(default)]
    limits: Vec<LimitSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct LimitSpec {
    requests: u32,
    #[serde(default)]
    unit: Option<Unit>,
    #[serde(default)]
    interval: Option<crate::values::Duration>,
    #[serde(default)]
    burst: Option<u32>,
    #[serde(default)]
    key: Option<KeySpec>,
}

#[derive(Deserialize, Clone, Copy)]
enum Unit {
    Second,
    Minute,
    Hour,
    Day,
}

impl Unit {
    fn duration(self) -> Duration {
        Duration::from_secs(match self {
            Unit::Second => 1,
            Unit::Minute => 60,
            Unit::Hour => 3_600,
            Unit::Day => 86_400,
        })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeySpec {
    #[serde(rename = "type")]
    kind: KeyType,
    #[serde(default)]
    header: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
enum KeyType {
    Route,
    ClientAddress,
    Header,
}

impl RateLimits {
    /// Parses a `RateLimitPolicy` spec; the error names the field
    /// (`spec.limits[1].burst ...`).
    pub fn parse(spec: &serde_json::Value) -> Result<RateLimits, Refused> {
        let spec: Spec = serde_path_to_error::deserialize(spec)
            .map_err(|e| Refused::new(format!("spec.{}: {}", e.path(), e.inner())))?;
        if spec.limits.is_empty() {
            return Err("spec.limits: at least one limit is required".into());
        }
        if spec.limits.len() > MAX_LIMITS {
            return Err(format!("spec.limits: at most {MAX_LIMITS} limits are allowed").into());
        }
        let limits = spec
            .limits
            .into_iter()
            .enumerate()
            .map(|(i, l)| l.parse(i))
            .collect::<Result<_, _>>()?;
        Ok(RateLimits { limits })
    }
}

impl LimitSpec {
    fn parse(self, i: usize) -> Result<Limit, Refused> {
        let at = |field: &str, why: &str| Refused::new(format!("spec.limits[{i}].{field}: {why}"));
        if !(1..=MAX_REQUESTS).contains(&self.requests) {
            return Err(at("requests", &format!("must be from 1 to {MAX_REQUESTS}")));
        }
        let interval = match (self.unit, &self.interval) {
            (Some(u), None) => u.duration(),
            (None, Some(d)) => match d.value() {
                Some(v) if !v.is_zero() && v <= MAX_INTERVAL => v,
                Some(_) => {
                    return Err(at("interval", "must be more than zero and at most 24h"));
                }
                None => {
                    return Err(at(
                        "interval",
                        &format!("{:?} is not a duration (e.g. 1s, 500ms, 1h30m)", d.as_str()),
                    ));
                }
            },
            (Some(_), Some(_)) => return Err(at("unit", "set either unit or interval, not both")),
            (None, None) => return Err(at("interval", "one of unit and interval is required")),
        };
        if u128::from(self.requests) > interval.as_nanos() {
            return Err(at("requests", "more than one request per nanosecond"));
        }
        let burst = self.burst.unwrap_or(self.requests);
        if !(1..=MAX_REQUESTS).contains(&burst) {
            return Err(at("burst", &format!("must be from 1 to {MAX_REQUESTS}")));
        }
        let key = match self.key {
            None => LimitKey::Route,
            Some(k) => match (k.kind, k.header) {
                (KeyType::Route, None) => LimitKey::Route,
                (KeyType::ClientAddress, None) => LimitKey::ClientAddress,
                (KeyType::Header, Some(h)) => match http::HeaderName::from_bytes(h.as_bytes()) {
                    Ok(name) => LimitKey::Header(name),
                    Err(_) => {
                        return Err(at("key.header", &format!("{h:?} is not a header name")));
                    }
                },
                (KeyType::Header, None) => {
                    return Err(at("key.header", "required with type Header"));
                }
                (_, Some(_)) => return Err(at("key.header", "only allowed with type Header")),
            },
        };
        Ok(Limit {
            requests: self.requests,
            interval,
            burst,
            key,
        })
    }
}

impl PolicyKind for RateLimitPolicy {
    fn kind(&self) -> ExtensionKind {
        KIND
    }

    /// Gateways and listeners, routes and rules: what requests go through.
    fn targets(&self) -> &'static [TargetKind] {
        &[
            TargetKind::Gateway,
            TargetKind::HttpRoute,
            TargetKind::GrpcRoute,
        ]
    }

    fn parse(&self, policy: &Object, _: &mut PolicyContext<'_>) -> Result<PolicyValue, Refused> {
        let Object::Extension(object) = policy else {
            return Err("not a RateLimitPolicy object".into());
        };
        RateLimits::parse(&object.spec).map(PolicyValue::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Computed;
    use crate::policies::testing;

    fn parse(yaml: &str) -> Result<RateLimits, Refused> {
        let spec: serde_json::Value = serde_norway::from_str(yaml).unwrap();
        RateLimits::parse(&spec)
    }

    fn refusal(yaml: &str) -> String {
        match parse(yaml) {
            Ok(v) => panic!("accepted {yaml}: {v:?}"),
            Err(e) => e.message().to_owned(),
        }
    }

    #[test]
    fn limits_parse_into_typed_values_with_defaults() {
        let v = parse(
            "targetRefs: []\nlimits:\n- {requests: 100, unit: Minute}\n- {requests: 5, interval: 1s500ms, burst: 10, key: {type: ClientAddress}}\n- {requests: 2, interval: 10ms, key: {type: Header, header: X-Tenant}}\n- {requests: 3, unit: Day, key: {type: Route}}\n",
        )
        .unwrap();
        assert_eq!(
            v.limits,
            vec![
                Limit::new(100, Duration::from_secs(60)),
                Limit::new(5, Duration::from_millis(1500))
                    .with_burst(10)
                    .with_key(LimitKey::ClientAddress),
                Limit::new(2, Duration::from_millis(10))
                    .with_key(LimitKey::Header(http::HeaderName::from_static("x-tenant"))),
                Limit::new(3, Duration::from_secs(86_400)),
            ]
        );
    }

    #[test]
    fn bad_specs_are_refused_naming_the_field() {
        for (yaml, field, why) in [
            ("limits: []", "spec.limits", "at least one"),
            ("{}", "spec.limits", "at least one"),
            (
                "limits: [{requests: 0, unit: Second}]",
                "spec.limits[0].requests",
                "from 1",
            ),
            (
                "limits: [{requests: -1, unit: Second}]",
                "spec.limits[0].requests",
                "invalid value",
            ),
            (
                "limits: [{requests: 1}]",
                "spec.limits[0].interval",
                "required",
            ),
            (
                "limits: [{requests: 1, unit: Second, interval: 1s}]",
                "spec.limits[0].unit",
                "not both",
            ),
            (
                "limits: [{requests: 1, interval: 1 second}]",
                "spec.limits[0].interval",
                "not a duration",
            ),
            (
                "limits: [{requests: 1, interval: 0s}]",
                "spec.limits[0].interval",
                "more than zero",
            ),
            (
                "limits: [{requests: 1, interval: 25h}]",
                "spec.limits[0].interval",
                "at most 24h",
            ),
            (
                "limits: [{requests: 1, unit: Week}]",
                "spec.limits[0].unit",
                "unknown variant",
            ),
            (
                "limits: [{requests: 1, unit: Second}, {requests: 1, unit: Second, burst: 0}]",
                "spec.limits[1].burst",
                "from 1",
            ),
            (
                "limits: [{requests: 1000, interval: 1ms}, {requests: 2000000, interval: 1ms}]",
                "spec.limits[1].requests",
                "per nanosecond",
            ),
            (
                "limits: [{requests: 1, unit: Second, key: {type: Header}}]",
                "spec.limits[0].key.header",
                "required",
            ),
            (
                "limits: [{requests: 1, unit: Second, key: {type: Header, header: \"a b\"}}]",
                "spec.limits[0].key.header",
                "not a header name",
            ),
            (
                "limits: [{requests: 1, unit: Second, key: {type: Route, header: x}}]",
                "spec.limits[0].key.header",
                "only allowed",
            ),
            (
                "limits: [{requests: 1, unit: Second, key: {type: Cookie}}]",
                "spec.limits[0].key.type",
                "unknown variant",
            ),
            (
                "limits: [{requests: 1, unit: Second, intervall: 1s}]",
                "spec.limits[0]",
                "unknown field `intervall`",
            ),
            ("limit: []", "spec", "unknown field `limit`"),
        ] {
            let m = refusal(yaml);
            assert!(m.starts_with(field), "{yaml}: {m} should name {field}");
            assert!(m.contains(why), "{yaml}: {m} should say {why}");
        }
        let many = format!(
            "limits: [{}]",
            vec!["{requests: 1, unit: Second}"; 17].join(", ")
        );
        assert!(refusal(&many).contains("at most 16"));
    }

    const BASE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gc}
spec: {controllerName: example.com/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: app}
spec:
  gatewayClassName: gc
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: app}
spec: {ports: [{name: web, port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: app}
spec:
  parentRefs: [{name: gw}]
  rules:
  - name: search
    matches: [{path: {type: PathPrefix, value: /search}}]
    backendRefs: [{name: svc, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: svc, port: 80}]
"#;

    fn policy(name: &str, created: &str, target: &str, limits: &str) -> String {
        format!(
            "---\napiVersion: policy.gwcore.dev/v1alpha1\nkind: RateLimitPolicy\nmetadata: {{name: {name}, namespace: app, creationTimestamp: \"{created}\"}}\nspec:\n  targetRefs: [{target}]\n  limits: {limits}\n"
        )
    }

    const ON_GATEWAY: &str = "{group: gateway.networking.k8s.io, kind: Gateway, name: gw}";
    const ON_RULE: &str =
        "{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r, sectionName: search}";

    fn run(yaml: &str) -> Computed {
        testing::run(RateLimitPolicy, yaml)
    }

    /// The Accepted condition of policy `name`: status, reason, message.
    fn accepted(out: &Computed, name: &str) -> (String, String, String) {
        testing::accepted(out, KIND, "app", name)
    }

    /// The policy and its first limit's requests for a request to `path`.
    fn applied(out: &Computed, path: &str) -> Option<(String, u32)> {
        testing::applied(out, KIND, "GET", path, |v: &RateLimits| {
            v.limits[0].requests
        })
    }

    #[test]
    fn an_accepted_policy_applies_to_its_targets_most_specific_first() {
        let yaml = format!(
            "{BASE}{}{}",
            policy(
                "gateway",
                "2026-01-01T00:00:00Z",
                ON_GATEWAY,
                "[{requests: 100, unit: Second}]"
            ),
            policy(
                "search",
                "2026-01-01T00:00:00Z",
                ON_RULE,
                "[{requests: 5, unit: Second}]"
            ),
        );
        let out = run(&yaml);
        assert_eq!(accepted(&out, "gateway").0, "True");
        assert_eq!(accepted(&out, "search").0, "True");
        assert_eq!(applied(&out, "/search"), Some(("search".into(), 5)));
        assert_eq!(applied(&out, "/other"), Some(("gateway".into(), 100)));
    }

    #[test]
    fn an_invalid_spec_is_accepted_false_invalid_naming_the_field_and_applies_nowhere() {
        let yaml = format!(
            "{BASE}{}",
            policy(
                "bad",
                "2026-01-01T00:00:00Z",
                ON_GATEWAY,
                "[{requests: 5, unit: Second, burst: 0}]"
            ),
        );
        let out = run(&yaml);
        let (status, reason, message) = accepted(&out, "bad");
        assert_eq!((status.as_str(), reason.as_str()), ("False", "Invalid"));
        assert!(message.contains("spec.limits[0].burst"), "{message}");
        assert_eq!(applied(&out, "/"), None);
    }

    #[test]
    fn a_missing_section_is_target_not_found_and_a_service_target_invalid() {
        let yaml = format!(
            "{BASE}{}{}",
            policy(
                "nowhere",
                "2026-01-01T00:00:00Z",
                "{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r, sectionName: checkout}",
                "[{requests: 5, unit: Second}]"
            ),
            policy(
                "on-service",
                "2026-01-01T00:00:00Z",
                &format!("{ON_RULE}, {{group: \"\", kind: Service, name: svc}}"),
                "[{requests: 5, unit: Second}]"
            ),
        );
        let out = run(&yaml);
        let (status, reason, message) = accepted(&out, "nowhere");
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "TargetNotFound")
        );
        assert!(message.contains("checkout"), "{message}");
        // A Service is not a target: requests are limited where they are
        // routed, not per backend.
        let (status, reason, message) = accepted(&out, "on-service");
        assert_eq!((status.as_str(), reason.as_str()), ("False", "Invalid"));
        assert!(message.contains("Service"), "{message}");
        assert_eq!(applied(&out, "/search"), None);
    }

    #[test]
    fn two_policies_on_one_target_the_older_wins_and_the_other_is_conflicted() {
        let yaml = format!(
            "{BASE}{}{}",
            policy(
                "newer",
                "2026-02-01T00:00:00Z",
                ON_RULE,
                "[{requests: 2, unit: Second}]"
            ),
            policy(
                "older",
                "2026-01-01T00:00:00Z",
                ON_RULE,
                "[{requests: 1, unit: Second}]"
            ),
        );
        let out = run(&yaml);
        assert_eq!(accepted(&out, "older").0, "True");
        let (status, reason, message) = accepted(&out, "newer");
        assert_eq!((status.as_str(), reason.as_str()), ("False", "Conflicted"));
        assert!(message.contains("app/older"), "{message}");
        assert_eq!(applied(&out, "/search"), Some(("older".into(), 1)));
        assert_eq!(applied(&out, "/"), None);
    }
}
