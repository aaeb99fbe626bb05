//! A controller with its own policy kind: `example.com/v1 RequestBudget`,
//! attached by `targetRefs` to a Gateway, a listener, a route, a rule or a
//! Service port (GEP-713 direct attachment).
//!
//! ```text
//! cargo run -p gwcore --example policy_controller
//! ```
//!
//! The program registers the kind ([`PolicyKind`]: its group and kind, and
//! how its spec parses), reads manifests holding RequestBudgets, and
//! prints what a controller writes and what a data plane applies:
//!
//! - each policy's `status.ancestors` (`Accepted`, or why not: `Conflicted`,
//!   `TargetNotFound`, `Invalid`);
//! - for each rule of each route, the budget that applies (the most
//!   specific policy: a Service port, a rule, a route, a listener, then the
//!   Gateway).
//!
//! `cargo test -p gwcore --example policy_controller` checks the output.

use gwcore::Snapshot;
use gwcore::engine::{ComputeOptions, Computed, compute};
use gwcore::extension::{
    ExtensionKind, Extensions, PolicyContext, PolicyKind, PolicyValue, Refused,
};
use gwcore::load::{Limits, load_str_extended};
use gwcore::model::{Kind, Object};
use gwcore::status::ObjectStatus;
use gwcore::table::{Action, RequestHead, Table};

/// The kind.
const BUDGET: ExtensionKind = ExtensionKind::new("example.com/v1", "RequestBudget");

/// What a RequestBudget means to a data plane, parsed once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Budget {
    requests_per_second: u32,
    #[serde(default)]
    burst: u32,
}

#[derive(Debug)]
struct RequestBudget;

impl PolicyKind for RequestBudget {
    fn kind(&self) -> ExtensionKind {
        BUDGET
    }

    fn parse(&self, policy: &Object, _: &mut PolicyContext<'_>) -> Result<PolicyValue, Refused> {
        let Object::Extension(object) = policy else {
            unreachable!("the objects of a registered kind are Object::Extension")
        };
        let b: Budget = object.spec_as()?;
        if b.requests_per_second == 0 {
            return Err("spec.requestsPerSecond must be at least 1".into());
        }
        Ok(PolicyValue::new(b))
    }
}

const MANIFESTS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: shared}
spec: {controllerName: example.com/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: shared, namespace: shop}
spec:
  gatewayClassName: shared
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: catalog, namespace: shop}
spec: {ports: [{name: http, port: 8080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: store, namespace: shop}
spec:
  parentRefs: [{name: shared}]
  rules:
  - name: search
    matches: [{path: {type: PathPrefix, value: /search}}]
    backendRefs: [{name: catalog, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: catalog, port: 8080}]
---
apiVersion: example.com/v1
kind: RequestBudget
metadata: {name: gateway-default, namespace: shop, creationTimestamp: "2026-01-01T00:00:00Z"}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: shared}]
  requestsPerSecond: 100
---
apiVersion: example.com/v1
kind: RequestBudget
metadata: {name: search-is-expensive, namespace: shop, creationTimestamp: "2026-01-02T00:00:00Z"}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: store, sectionName: search}]
  requestsPerSecond: 5
  burst: 10
---
apiVersion: example.com/v1
kind: RequestBudget
metadata: {name: late-duplicate, namespace: shop, creationTimestamp: "2026-03-01T00:00:00Z"}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: shared}]
  requestsPerSecond: 1000
---
apiVersion: example.com/v1
kind: RequestBudget
metadata: {name: wrong-listener, namespace: shop}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: shared, sectionName: https}]
  requestsPerSecond: 1
"#;

/// Computes everything for `MANIFESTS` with the kind registered.
fn run() -> Computed {
    let extensions = Extensions::new().with_policy(RequestBudget);
    let loaded = load_str_extended("example.yaml", MANIFESTS, Limits::default(), &extensions);
    for d in &loaded.diagnostics {
        eprintln!("{d}");
    }
    let snapshot = Snapshot::from_objects(loaded.objects.into_iter().map(|(o, _)| o));
    let opts = ComputeOptions::new("example.com/gateway-controller", "2026-12-01T00:00:00Z")
        .with_extensions(extensions);
    compute(&snapshot, &opts)
}

/// What a controller writes: one line per policy and Gateway.
fn ancestor_lines(out: &Computed) -> Vec<String> {
    let mut lines = Vec::new();
    for (key, status) in &out.statuses {
        let (Kind::Extension(_), ObjectStatus::Policy(p)) = (key.kind, status) else {
            continue;
        };
        for a in &p.ancestors {
            for c in &a.conditions {
                lines.push(format!(
                    "{}/{} on Gateway {}: {}={} ({}): {}",
                    key.namespace,
                    key.name,
                    a.ancestor_ref.name,
                    c.type_,
                    c.status,
                    c.reason,
                    c.message
                ));
            }
        }
    }
    lines
}

/// What a data plane applies: the budget of a request to `path`.
fn budget_for(table: &Table, path: &str) -> Option<(String, Budget)> {
    let decision = table.find(&RequestHead::new(80, "shop.example", "GET", path));
    let Action::Forward(forward) = decision.action else {
        return None;
    };
    let backend = forward.pick(0);
    let policy = forward.policy(BUDGET, Some(backend))?;
    let budget = *policy.value.get::<Budget>()?;
    Some((policy.policy.name.clone(), budget))
}

fn main() {
    let out = run();
    println!("status.ancestors:");
    for line in ancestor_lines(&out) {
        println!("  {line}");
    }
    let table = Table::compile(out.routing.values().next().expect("one Gateway of ours"));
    println!("effective budget per request:");
    for path in ["/search?q=shoes", "/cart"] {
        match budget_for(&table, path) {
            Some((from, b)) => println!(
                "  GET {path}: {} req/s, burst {} (from {from})",
                b.requests_per_second, b.burst
            ),
            None => println!("  GET {path}: no budget"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_effective_values_are_what_the_example_prints() {
        let out = run();
        let lines = ancestor_lines(&out).join("\n");
        assert!(lines.contains("shop/gateway-default on Gateway shared: Accepted=True (Accepted)"));
        assert!(
            lines.contains("shop/search-is-expensive on Gateway shared: Accepted=True (Accepted)")
        );
        assert!(
            lines.contains("shop/late-duplicate on Gateway shared: Accepted=False (Conflicted)"),
            "{lines}"
        );
        assert!(
            lines
                .contains("shop/wrong-listener on Gateway shared: Accepted=False (TargetNotFound)"),
            "{lines}"
        );
        let table = Table::compile(out.routing.values().next().unwrap());
        let (from, b) = budget_for(&table, "/search").unwrap();
        assert_eq!(
            (from.as_str(), b.requests_per_second, b.burst),
            ("search-is-expensive", 5, 10)
        );
        let (from, b) = budget_for(&table, "/cart").unwrap();
        assert_eq!(
            (from.as_str(), b.requests_per_second),
            ("gateway-default", 100)
        );
    }
}
