//! `BodyLimitPolicy` (`policy.gwcore.dev/v1alpha1`): the largest request
//! body a Gateway, a listener, a route or a rule takes
//! (docs/body-limits.md).
//!
//! ```yaml
//! apiVersion: policy.gwcore.dev/v1alpha1
//! kind: BodyLimitPolicy
//! metadata: {name: uploads, namespace: careers}
//! spec:
//!   targetRefs:
//!   - {group: gateway.networking.k8s.io, kind: HTTPRoute, name: careers, sectionName: upload}
//!   maxBytes: 10Mi        # or a number of bytes: 10485760
//! ```
//!
//! This module is the deciding half: it parses a policy into a
//! [`BodyLimit`] (refusing bad specs, naming the field) and the engine
//! attaches it by GEP-713's rules (the most specific policy applies). The
//! cutting is the data plane's (`gwcore_proxy::body_limit`).

use crate::extension::{
    ExtensionKind, PolicyContext, PolicyKind, PolicyValue, Refused, TargetKind,
};
use crate::model::Object;

/// The kind: `policy.gwcore.dev/v1alpha1 BodyLimitPolicy`.
pub const KIND: ExtensionKind = ExtensionKind::new(super::API_VERSION, "BodyLimitPolicy");

/// The largest `maxBytes`: 1 TiB. A larger body is not one to forward;
/// the bound keeps the number well inside every integer type it meets.
pub const MAX_BYTES: u64 = 1 << 40;

/// A parsed `BodyLimitPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct BodyLimit {
    /// The most bytes a request body may have (`spec.maxBytes`); zero
    /// allows only empty bodies.
    pub max_bytes: u64,
}

impl BodyLimit {
    /// A limit of `max_bytes`.
    pub fn new(max_bytes: u64) -> BodyLimit {
        BodyLimit { max_bytes }
    }

    /// Parses a policy's `spec`.
    pub fn parse(spec: &serde_json::Value) -> Result<BodyLimit, Refused> {
        let v = spec
            .get("maxBytes")
            .ok_or_else(|| Refused::new("spec.maxBytes: required"))?;
        let bytes = match v {
            serde_json::Value::Number(n) => n.as_u64().ok_or_else(|| {
                Refused::new(format!(
                    "spec.maxBytes: {n} is not a whole number of bytes at least 0"
                ))
            })?,
            serde_json::Value::String(s) => parse_quantity(s).ok_or_else(|| {
                Refused::new(format!(
                    "spec.maxBytes: {s:?} is not a number of bytes (digits, then optionally k, M, G, T, Ki, Mi, Gi or Ti)"
                ))
            })?,
            other => {
                return Err(Refused::new(format!(
                    "spec.maxBytes: {other} is not a number of bytes"
                )));
            }
        };
        if bytes > MAX_BYTES {
            return Err(Refused::new(format!(
                "spec.maxBytes: {bytes} is more than the most allowed, {MAX_BYTES} (1Ti)"
            )));
        }
        Ok(BodyLimit { max_bytes: bytes })
    }
}

/// A Kubernetes quantity of bytes, in the forms a size takes: digits, then
/// one of the decimal (`k`, `M`, `G`, `T`) or binary (`Ki`, `Mi`, `Gi`,
/// `Ti`) suffixes, or none. No fractions, signs or exponents.
fn parse_quantity(s: &str) -> Option<u64> {
    let digits = s.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || digits > 20 {
        return None;
    }
    let n: u64 = s[..digits].parse().ok()?;
    let unit: u64 = match &s[digits..] {
        "" => 1,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        _ => return None,
    };
    n.checked_mul(unit)
}

/// The policy kind, to register with the engine
/// ([`crate::extension::Extensions::with_policy`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct BodyLimitPolicy;

impl PolicyKind for BodyLimitPolicy {
    fn kind(&self) -> ExtensionKind {
        KIND
    }

    /// Gateways and listeners, routes and rules: where requests come in.
    fn targets(&self) -> &'static [TargetKind] {
        &[
            TargetKind::Gateway,
            TargetKind::HttpRoute,
            TargetKind::GrpcRoute,
        ]
    }

    fn parse(&self, policy: &Object, _: &mut PolicyContext<'_>) -> Result<PolicyValue, Refused> {
        let Object::Extension(object) = policy else {
            return Err("not a BodyLimitPolicy object".into());
        };
        BodyLimit::parse(&object.spec).map(PolicyValue::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Computed;
    use crate::model::{Kind, ObjectKey};
    use crate::policies::testing;
    use crate::status::ObjectStatus;

    fn parse(yaml: &str) -> Result<BodyLimit, Refused> {
        let spec: serde_json::Value = serde_norway::from_str(yaml).unwrap();
        BodyLimit::parse(&spec)
    }

    #[test]
    fn sizes_parse_as_numbers_or_quantities() {
        for (yaml, want) in [
            ("maxBytes: 0", 0),
            ("maxBytes: 1048576", 1 << 20),
            ("maxBytes: \"512\"", 512),
            ("maxBytes: 10k", 10_000),
            ("maxBytes: 10Ki", 10 * 1024),
            ("maxBytes: 3Mi", 3 << 20),
            ("maxBytes: 2G", 2_000_000_000),
            ("maxBytes: 1Ti", 1 << 40),
        ] {
            assert_eq!(parse(yaml), Ok(BodyLimit::new(want)), "{yaml}");
        }
    }

    #[test]
    fn bad_sizes_are_refused_naming_the_field() {
        for (yaml, why) in [
            ("{}", "required"),
            ("maxBytes: -1", "at least 0"),
            ("maxBytes: 1.5", "whole number"),
            ("maxBytes: 10MB", "is not a number of bytes"),
            ("maxBytes: 1.5Mi", "is not a number of bytes"),
            ("maxBytes: \"\"", "is not a number of bytes"),
            ("maxBytes: 2Ti", "most allowed"),
            (
                "maxBytes: 99999999999999999999Ki",
                "is not a number of bytes",
            ),
            ("maxBytes: [1]", "is not a number of bytes"),
        ] {
            let m = match parse(yaml) {
                Ok(v) => panic!("accepted {yaml}: {v:?}"),
                Err(e) => e.message().to_owned(),
            };
            assert!(m.starts_with("spec.maxBytes"), "{yaml}: {m}");
            assert!(m.contains(why), "{yaml}: {m} should say {why}");
        }
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
  - name: upload
    matches: [{path: {type: PathPrefix, value: /upload}}]
    backendRefs: [{name: svc, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: svc, port: 80}]
"#;

    fn policy(name: &str, created: &str, target: &str, max: &str) -> String {
        format!(
            "---\napiVersion: policy.gwcore.dev/v1alpha1\nkind: BodyLimitPolicy\nmetadata: {{name: {name}, namespace: app, creationTimestamp: \"{created}\"}}\nspec:\n  targetRefs: [{target}]\n  maxBytes: {max}\n"
        )
    }

    const ON_GATEWAY: &str = "{group: gateway.networking.k8s.io, kind: Gateway, name: gw}";
    const ON_RULE: &str =
        "{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r, sectionName: upload}";

    fn run(yaml: &str) -> Computed {
        testing::run(BodyLimitPolicy, yaml)
    }

    fn accepted(out: &Computed, name: &str) -> (String, String, String) {
        testing::accepted(out, KIND, "app", name)
    }

    /// The policy and its limit for a request to `path`.
    fn applied(out: &Computed, path: &str) -> Option<(String, u64)> {
        testing::applied(out, KIND, "POST", path, |v: &BodyLimit| v.max_bytes)
    }

    #[test]
    fn the_most_specific_policy_applies() {
        let yaml = format!(
            "{BASE}{}{}",
            policy("gateway", "2026-01-01T00:00:00Z", ON_GATEWAY, "1Mi"),
            policy("upload", "2026-01-01T00:00:00Z", ON_RULE, "100Mi"),
        );
        let out = run(&yaml);
        assert_eq!(accepted(&out, "gateway").0, "True");
        assert_eq!(accepted(&out, "upload").0, "True");
        assert_eq!(
            applied(&out, "/upload/x"),
            Some(("upload".into(), 100 << 20))
        );
        assert_eq!(applied(&out, "/other"), Some(("gateway".into(), 1 << 20)));
    }

    #[test]
    fn an_invalid_spec_is_accepted_false_invalid_and_applies_nowhere() {
        let yaml = format!(
            "{BASE}{}",
            policy("bad", "2026-01-01T00:00:00Z", ON_GATEWAY, "lots")
        );
        let out = run(&yaml);
        let (status, reason, message) = accepted(&out, "bad");
        assert_eq!((status.as_str(), reason.as_str()), ("False", "Invalid"));
        assert!(message.contains("spec.maxBytes"), "{message}");
        assert_eq!(applied(&out, "/"), None);
    }

    #[test]
    fn a_service_target_is_invalid_and_a_conflict_goes_to_the_older() {
        let yaml = format!(
            "{BASE}{}{}{}",
            policy(
                "on-service",
                "2026-01-01T00:00:00Z",
                "{group: \"\", kind: Service, name: svc}",
                "1k"
            ),
            policy("newer", "2026-02-01T00:00:00Z", ON_RULE, "2k"),
            policy("older", "2026-01-01T00:00:00Z", ON_RULE, "1k"),
        );
        let out = run(&yaml);
        assert_eq!(accepted(&out, "older").0, "True");
        let (status, reason, _) = accepted(&out, "newer");
        assert_eq!((status.as_str(), reason.as_str()), ("False", "Conflicted"));
        assert_eq!(applied(&out, "/upload"), Some(("older".into(), 1000)));
        assert!(
            !matches!(
                out.statuses.get(&ObjectKey::new(Kind::Extension(KIND), "app", "on-service")),
                Some(ObjectStatus::Policy(p)) if p.ancestors.iter().any(|a| a.conditions[0].status == "True")
            ),
            "a Service is not a target"
        );
    }
}
