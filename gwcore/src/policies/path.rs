//! `PathPolicy` (`policy.gwcore.dev/v1alpha1`): how a Gateway, or one of
//! its listeners, reads request paths that hold an encoded `/` (`%2F`) or
//! `\` (`%5C`) (docs/path-policy.md).
//!
//! ```yaml
//! apiVersion: policy.gwcore.dev/v1alpha1
//! kind: PathPolicy
//! metadata: {name: keys-api, namespace: infra-ns}
//! spec:
//!   targetRefs:
//!   - {group: gateway.networking.k8s.io, kind: Gateway, name: shared-gateway, sectionName: api}
//!   escapedSlashesAction: KeepUnchanged
//! ```
//!
//! This module is the deciding half: it parses a policy into
//! [`PathSettings`] (refusing bad specs, naming the field) and the engine
//! attaches it to a Gateway or a listener by GEP-713's rules (the oldest
//! policy wins a target; one on a listener beats one on its Gateway). What
//! each setting does to a request is [`crate::table::slashes`]; the data
//! plane reads the policy before routing
//! ([`crate::table::Table::listener_policy`]) and falls back to its own
//! default (`gwcore serve --escaped-slashes`) where none applies.

use serde::Deserialize;

use crate::extension::{
    ExtensionKind, PolicyContext, PolicyKind, PolicyValue, Refused, TargetKind,
};
use crate::model::Object;
use crate::table::slashes::EscapedSlashes;

/// The kind: `policy.gwcore.dev/v1alpha1 PathPolicy`.
pub const KIND: ExtensionKind = ExtensionKind::new(super::API_VERSION, "PathPolicy");

/// A parsed `PathPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct PathSettings {
    /// `spec.escapedSlashesAction`.
    pub escaped_slashes: EscapedSlashes,
}

impl PathSettings {
    /// Settings with `escaped_slashes`.
    pub fn new(escaped_slashes: EscapedSlashes) -> PathSettings {
        PathSettings { escaped_slashes }
    }

    /// Parses a policy's `spec`; the error names the field.
    pub fn parse(spec: &serde_json::Value) -> Result<PathSettings, Refused> {
        let spec: Spec = serde_path_to_error::deserialize(spec)
            .map_err(|e| Refused::new(format!("spec.{}: {}", e.path(), e.inner())))?;
        let Some(action) = spec.escaped_slashes_action else {
            return Err(Refused::new(
                "spec.escapedSlashesAction: required (KeepUnchanged, RejectRequest, UnescapeAndRedirect or UnescapeAndForward)",
            ));
        };
        let escaped_slashes = action
            .parse()
            .map_err(|e| Refused::new(format!("spec.escapedSlashesAction: {e}")))?;
        Ok(PathSettings { escaped_slashes })
    }
}

/// The spec as written.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Spec {
    /// Resolved by the engine, not here.
    #[serde(default)]
    #[allow(dead_code)]
    target_refs: serde_json::Value,
    #[serde(default)]
    escaped_slashes_action: Option<String>,
}

/// `PathPolicy`'s deciding half; register it with
/// [`crate::extension::Extensions::with_policy`] (`gwcore_proxy::first_party`
/// registers it).
#[derive(Debug, Clone, Copy, Default)]
pub struct PathPolicy;

impl PolicyKind for PathPolicy {
    fn kind(&self) -> ExtensionKind {
        KIND
    }

    /// Gateways, and listeners by `sectionName`: a path is read before any
    /// route is chosen.
    fn targets(&self) -> &'static [TargetKind] {
        &[TargetKind::Gateway]
    }

    fn parse(&self, policy: &Object, _: &mut PolicyContext<'_>) -> Result<PolicyValue, Refused> {
        let Object::Extension(object) = policy else {
            return Err("not a PathPolicy object".into());
        };
        PathSettings::parse(&object.spec).map(PolicyValue::new)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Computed;
    use crate::policies::testing;
    use crate::table::{RequestHead, Table};

    fn parse(yaml: &str) -> Result<PathSettings, Refused> {
        let spec: serde_json::Value = serde_norway::from_str(yaml).unwrap();
        PathSettings::parse(&spec)
    }

    #[test]
    fn each_action_parses() {
        for s in EscapedSlashes::ALL {
            let yaml = format!("targetRefs: []\nescapedSlashesAction: {s}\n");
            assert_eq!(parse(&yaml), Ok(PathSettings::new(s)));
        }
    }

    #[test]
    fn bad_specs_are_refused_naming_the_field() {
        for (yaml, field, why) in [
            ("{}", "spec.escapedSlashesAction", "required"),
            (
                "escapedSlashesAction: Unescape",
                "spec.escapedSlashesAction",
                "is not one of",
            ),
            (
                "escapedSlashesAction: keepunchanged",
                "spec.escapedSlashesAction",
                "is not one of",
            ),
            (
                "escapedSlashesAction: 3",
                "spec.escapedSlashesAction",
                "invalid type",
            ),
            (
                "escapedSlashAction: RejectRequest",
                "spec",
                "unknown field `escapedSlashAction`",
            ),
        ] {
            let m = parse(yaml).expect_err(yaml).message().to_owned();
            assert!(m.starts_with(field), "{yaml}: {m} should name {field}");
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
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: gc
  listeners:
  - {name: web, port: 80, protocol: HTTP, hostname: web.example}
  - {name: api, port: 80, protocol: HTTP, hostname: api.example}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: infra}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{name: svc, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: infra}
spec: {ports: [{port: 80}]}
"#;

    fn policy(name: &str, created: &str, target: &str, action: &str) -> String {
        format!(
            "---\napiVersion: policy.gwcore.dev/v1alpha1\nkind: PathPolicy\nmetadata: {{name: {name}, namespace: infra, creationTimestamp: \"{created}\"}}\nspec:\n  targetRefs: [{target}]\n  escapedSlashesAction: {action}\n"
        )
    }

    const ON_GATEWAY: &str = "{group: gateway.networking.k8s.io, kind: Gateway, name: gw}";
    const ON_API: &str =
        "{group: gateway.networking.k8s.io, kind: Gateway, name: gw, sectionName: api}";

    fn run(yaml: &str) -> Computed {
        testing::run(PathPolicy, yaml)
    }

    /// `Accepted` of policy `name`: (status, reason, message).
    fn accepted(out: &Computed, name: &str) -> (String, String, String) {
        testing::accepted(out, KIND, "infra", name)
    }

    /// The setting a request to `host` is read with; `None`: the data
    /// plane's default.
    fn setting(out: &Computed, host: &str) -> Option<EscapedSlashes> {
        let t = Table::compile(out.routing.values().next().expect("our Gateway"));
        t.listener_policy(KIND, &RequestHead::new(80, host, "GET", "/"))
            .and_then(|p| p.value.get::<PathSettings>())
            .map(|s| s.escaped_slashes)
    }

    #[test]
    fn a_listener_policy_beats_the_gateway_one() {
        let out = run(BASE);
        assert_eq!(setting(&out, "web.example"), None, "no policy: the default");

        let yaml = format!(
            "{BASE}{}{}",
            policy("all", "2026-01-01T00:00:00Z", ON_GATEWAY, "RejectRequest"),
            policy("api", "2026-01-01T00:00:00Z", ON_API, "KeepUnchanged"),
        );
        let out = run(&yaml);
        assert_eq!(accepted(&out, "all").0, "True");
        assert_eq!(accepted(&out, "api").0, "True");
        assert_eq!(
            setting(&out, "web.example"),
            Some(EscapedSlashes::RejectRequest)
        );
        assert_eq!(
            setting(&out, "api.example"),
            Some(EscapedSlashes::KeepUnchanged)
        );
        // A host no listener takes: the Gateway's.
        assert_eq!(
            setting(&out, "other.example"),
            Some(EscapedSlashes::RejectRequest)
        );
    }

    #[test]
    fn an_invalid_spec_is_not_accepted_and_applies_nowhere() {
        let yaml = format!(
            "{BASE}{}",
            policy("bad", "2026-01-01T00:00:00Z", ON_GATEWAY, "Unescape"),
        );
        let out = run(&yaml);
        let (status, reason, message) = accepted(&out, "bad");
        assert_eq!((status.as_str(), reason.as_str()), ("False", "Invalid"));
        assert!(message.contains("spec.escapedSlashesAction"), "{message}");
        assert_eq!(setting(&out, "web.example"), None);
    }

    #[test]
    fn a_route_target_is_invalid() {
        let on_route = "{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}";
        let yaml = format!(
            "{BASE}{}",
            policy("route", "2026-01-01T00:00:00Z", on_route, "RejectRequest"),
        );
        let out = run(&yaml);
        let (status, reason, _) = accepted(&out, "route");
        assert_eq!((status.as_str(), reason.as_str()), ("False", "Invalid"));
    }

    #[test]
    fn the_older_policy_wins_and_the_newer_is_conflicted() {
        let yaml = format!(
            "{BASE}{}{}",
            policy("newer", "2026-02-01T00:00:00Z", ON_GATEWAY, "KeepUnchanged"),
            policy(
                "older",
                "2026-01-01T00:00:00Z",
                ON_GATEWAY,
                "UnescapeAndForward"
            ),
        );
        let out = run(&yaml);
        assert_eq!(accepted(&out, "older").0, "True");
        let (status, reason, _) = accepted(&out, "newer");
        assert_eq!((status.as_str(), reason.as_str()), ("False", "Conflicted"));
        assert_eq!(
            setting(&out, "web.example"),
            Some(EscapedSlashes::UnescapeAndForward)
        );
    }

    #[test]
    fn a_missing_listener_is_target_not_found() {
        let on_nothing =
            "{group: gateway.networking.k8s.io, kind: Gateway, name: gw, sectionName: nope}";
        let yaml = format!(
            "{BASE}{}",
            policy("lost", "2026-01-01T00:00:00Z", on_nothing, "RejectRequest"),
        );
        let out = run(&yaml);
        let (status, reason, _) = accepted(&out, "lost");
        assert_eq!(
            (status.as_str(), reason.as_str()),
            ("False", "TargetNotFound")
        );
        assert_eq!(setting(&out, "api.example"), None);
    }
}
