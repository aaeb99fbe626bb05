use super::*;
use crate::engine::Computed;
use crate::policies::testing;

fn parse(yaml: &str) -> Result<LoadBalancer, Refused> {
    let spec: serde_json::Value = serde_norway::from_str(yaml).unwrap();
    LoadBalancer::parse(&spec)
}

#[test]
fn algorithms_parse_with_their_settings_and_defaults() {
    assert_eq!(parse("{}"), Ok(LoadBalancer::default()));
    assert_eq!(
        parse("algorithm: LeastRequest").map(|l| l.algorithm),
        Ok(Algorithm::LeastRequest)
    );
    for (yaml, key, nodes) in [
        (
            "{algorithm: ConsistentHash, consistentHash: {key: {type: Header, header: X-User}}}",
            HashKey::Header(http::HeaderName::from_static("x-user")),
            DEFAULT_VIRTUAL_NODES,
        ),
        (
            "{algorithm: ConsistentHash, consistentHash: {key: {type: Cookie, cookie: sid}, virtualNodes: 7}}",
            HashKey::Cookie("sid".into()),
            7,
        ),
        (
            "{algorithm: ConsistentHash, consistentHash: {key: {type: ClientAddress}}}",
            HashKey::ClientAddress,
            DEFAULT_VIRTUAL_NODES,
        ),
    ] {
        assert_eq!(
            parse(yaml).map(|l| l.algorithm),
            Ok(Algorithm::ConsistentHash(ConsistentHash {
                key,
                virtual_nodes: nodes
            })),
            "{yaml}"
        );
    }
    let o =
        parse("outlierDetection: {consecutive5xx: 3, baseEjectionTime: 1s, maxEjectedPercent: 34}")
            .unwrap()
            .outlier
            .unwrap();
    assert_eq!(
        o,
        OutlierDetection {
            consecutive_5xx: 3,
            consecutive_failures: 5,
            base_ejection_time: Duration::from_secs(1),
            max_ejection_time: Duration::from_secs(300),
            max_ejected_percent: 34,
        }
    );
    // A base longer than the default maximum raises the maximum to it.
    let o = parse("outlierDetection: {baseEjectionTime: 10m}")
        .unwrap()
        .outlier
        .unwrap();
    assert_eq!(o.max_ejection_time, Duration::from_secs(600));
}

#[test]
fn a_health_check_needs_only_a_path_and_takes_kubernetes_like_defaults() {
    let h = parse("healthCheck: {path: /healthz}")
        .unwrap()
        .health_check
        .unwrap();
    assert_eq!(
        h,
        HealthCheck::new(http::uri::PathAndQuery::from_static("/healthz"))
    );
    assert_eq!(
        (
            h.interval,
            h.timeout,
            h.unhealthy_threshold,
            h.healthy_threshold
        ),
        (Duration::from_secs(10), Duration::from_secs(1), 3, 2)
    );
    for (status, passes) in [
        (199, false),
        (200, true),
        (302, true),
        (399, true),
        (404, false),
        (503, false),
    ] {
        assert_eq!(h.passes(status), passes, "{status}");
    }
    assert_eq!(
        parse("{}").unwrap().health_check,
        None,
        "off unless asked for"
    );
    let h = parse(
        "healthCheck: {path: \"/ready?deep=1\", hostname: app.internal, port: 8081, interval: 500ms, \
         unhealthyThreshold: 1, healthyThreshold: 4, expectedStatuses: [{min: 204}, {min: 500, max: 502}]}",
    )
    .unwrap()
    .health_check
    .unwrap();
    assert_eq!(h.path.as_str(), "/ready?deep=1");
    assert_eq!(
        h.hostname.as_ref().map(|a| a.as_str()),
        Some("app.internal")
    );
    assert_eq!(h.port, Some(8081));
    assert_eq!(h.interval, Duration::from_millis(500));
    // The default timeout (1s) is cut to a shorter interval.
    assert_eq!(h.timeout, Duration::from_millis(500));
    assert_eq!((h.unhealthy_threshold, h.healthy_threshold), (1, 4));
    assert_eq!(
        h.expected_statuses,
        vec![StatusRange::new(204, 204), StatusRange::new(500, 502)]
    );
    for (status, passes) in [
        (200, false),
        (204, true),
        (500, true),
        (502, true),
        (503, false),
    ] {
        assert_eq!(h.passes(status), passes, "{status}");
    }
}

#[test]
fn ejections_grow_by_the_base_up_to_the_maximum_and_the_share_rounds_down() {
    let o = OutlierDetection {
        base_ejection_time: Duration::from_secs(30),
        max_ejection_time: Duration::from_secs(100),
        ..OutlierDetection::default()
    };
    assert_eq!(o.ejection_time(1), Duration::from_secs(30));
    assert_eq!(o.ejection_time(3), Duration::from_secs(90));
    assert_eq!(o.ejection_time(4), Duration::from_secs(100));
    assert_eq!(o.ejection_time(u32::MAX), Duration::from_secs(100));
    assert_eq!(o.max_ejected(4), 2);
    assert_eq!(o.max_ejected(3), 1);
    assert_eq!(
        o.max_ejected(1),
        0,
        "a lone endpoint is never ejected at 50 %"
    );
}

#[test]
fn bad_specs_are_refused_naming_the_field() {
    for (yaml, field, why) in [
        ("algorithm: Random", "spec.algorithm", "unknown variant"),
        (
            "algorithm: ConsistentHash",
            "spec.consistentHash",
            "required",
        ),
        (
            "{algorithm: LeastRequest, consistentHash: {key: {type: ClientAddress}}}",
            "spec.consistentHash",
            "only allowed",
        ),
        (
            "{algorithm: ConsistentHash, consistentHash: {key: {type: Header}}}",
            "spec.consistentHash.key.header",
            "required",
        ),
        (
            "{algorithm: ConsistentHash, consistentHash: {key: {type: Header, header: \"a b\"}}}",
            "spec.consistentHash.key.header",
            "not a header name",
        ),
        (
            "{algorithm: ConsistentHash, consistentHash: {key: {type: Cookie, cookie: \"a;b\"}}}",
            "spec.consistentHash.key.cookie",
            "not a cookie name",
        ),
        (
            "{algorithm: ConsistentHash, consistentHash: {key: {type: ClientAddress, header: x}}}",
            "spec.consistentHash.key.header",
            "only allowed",
        ),
        (
            "{algorithm: ConsistentHash, consistentHash: {key: {type: ClientAddress}, virtualNodes: 0}}",
            "spec.consistentHash.virtualNodes",
            "from 1 to 1000",
        ),
        (
            "outlierDetection: {consecutive5xx: 1001}",
            "spec.outlierDetection.consecutive5xx",
            "from 0 to 1000",
        ),
        (
            "outlierDetection: {baseEjectionTime: 0s}",
            "spec.outlierDetection.baseEjectionTime",
            "more than zero",
        ),
        (
            "outlierDetection: {baseEjectionTime: soon}",
            "spec.outlierDetection.baseEjectionTime",
            "not a duration",
        ),
        (
            "outlierDetection: {baseEjectionTime: 1m, maxEjectionTime: 30s}",
            "spec.outlierDetection.maxEjectionTime",
            "at least baseEjectionTime",
        ),
        (
            "outlierDetection: {maxEjectedPercent: 101}",
            "spec.outlierDetection.maxEjectedPercent",
            "from 0 to 100",
        ),
        (
            "outlierDetection: {interval: 1s}",
            "spec.outlierDetection",
            "unknown field",
        ),
        (
            "healthCheck: {interval: 1s}",
            "spec.healthCheck",
            "missing field `path`",
        ),
        (
            "healthCheck: {path: healthz}",
            "spec.healthCheck.path",
            "must start with /",
        ),
        (
            "healthCheck: {path: \"/a b\"}",
            "spec.healthCheck.path",
            "not a request path",
        ),
        (
            "healthCheck: {path: \"/a#b\"}",
            "spec.healthCheck.path",
            "not a request path",
        ),
        (
            "healthCheck: {path: /, hostname: \"a/b\"}",
            "spec.healthCheck.hostname",
            "not a host name",
        ),
        (
            "healthCheck: {path: /, port: 0}",
            "spec.healthCheck.port",
            "from 1 to 65535",
        ),
        (
            "healthCheck: {path: /, port: 65536}",
            "spec.healthCheck.port",
            "from 1 to 65535",
        ),
        (
            "healthCheck: {path: /, interval: 10ms}",
            "spec.healthCheck.interval",
            "from 100ms to 1h",
        ),
        (
            "healthCheck: {path: /, interval: 2h}",
            "spec.healthCheck.interval",
            "from 100ms to 1h",
        ),
        (
            "healthCheck: {path: /, interval: often}",
            "spec.healthCheck.interval",
            "not a duration",
        ),
        (
            "healthCheck: {path: /, interval: 1s, timeout: 2s}",
            "spec.healthCheck.timeout",
            "at most interval",
        ),
        (
            "healthCheck: {path: /, timeout: 0s}",
            "spec.healthCheck.timeout",
            "from 1ms to 1h",
        ),
        (
            "healthCheck: {path: /, unhealthyThreshold: 0}",
            "spec.healthCheck.unhealthyThreshold",
            "from 1 to 1000",
        ),
        (
            "healthCheck: {path: /, healthyThreshold: 1001}",
            "spec.healthCheck.healthyThreshold",
            "from 1 to 1000",
        ),
        (
            "healthCheck: {path: /, expectedStatuses: []}",
            "spec.healthCheck.expectedStatuses",
            "at least one",
        ),
        (
            "healthCheck: {path: /, expectedStatuses: [{min: 200}, {min: 99}]}",
            "spec.healthCheck.expectedStatuses[1].min",
            "from 100 to 599",
        ),
        (
            "healthCheck: {path: /, expectedStatuses: [{min: 200, max: 600}]}",
            "spec.healthCheck.expectedStatuses[0].max",
            "from 100 to 599",
        ),
        (
            "healthCheck: {path: /, expectedStatuses: [{min: 300, max: 200}]}",
            "spec.healthCheck.expectedStatuses[0].max",
            "at least min",
        ),
        (
            "healthCheck: {path: /, expectedStatuses: [{min: 200, to: 300}]}",
            "spec.healthCheck.expectedStatuses[0]",
            "unknown field",
        ),
        (
            "healthCheck: {path: /, method: HEAD}",
            "spec.healthCheck",
            "unknown field",
        ),
    ] {
        let m = match parse(yaml) {
            Ok(v) => panic!("accepted {yaml}: {v:?}"),
            Err(e) => e.message().to_owned(),
        };
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
metadata: {name: gw, namespace: app}
spec:
  gatewayClassName: gc
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: app}
spec: {ports: [{name: web, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: search, namespace: app}
spec: {ports: [{name: web, port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: app}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /cart}}]
    backendRefs: [{name: cart, port: 80}]
  - name: search
    matches: [{path: {type: PathPrefix, value: /}}]
    backendRefs: [{name: search, port: 80}]
"#;

fn policy(name: &str, target: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: policy.gwcore.dev/v1alpha1\nkind: LoadBalancerPolicy\nmetadata: {{name: {name}, namespace: app, creationTimestamp: \"2026-01-01T00:00:00Z\"}}\nspec:\n  targetRefs: [{target}]\n{spec}\n"
    )
}

const ON_CART: &str = "{group: \"\", kind: Service, name: cart}";

fn run(yaml: &str) -> Computed {
    testing::run(LoadBalancerPolicy, yaml)
}

fn accepted(out: &Computed, name: &str) -> (String, String, String) {
    testing::accepted(out, KIND, "app", name)
}

/// The policy and its algorithm for a request to `path`'s backend.
fn applied(out: &Computed, path: &str) -> Option<(String, Algorithm)> {
    testing::applied(out, KIND, "GET", path, |v: &LoadBalancer| {
        v.algorithm.clone()
    })
}

#[test]
fn a_policy_on_a_service_is_accepted_and_applies_to_requests_for_it_only() {
    let yaml = format!(
        "{BASE}{}",
        policy("cart", ON_CART, "  algorithm: LeastRequest")
    );
    let out = run(&yaml);
    assert_eq!(
        accepted(&out, "cart"),
        ("True".into(), "Accepted".into(), accepted(&out, "cart").2)
    );
    assert_eq!(
        applied(&out, "/cart/1"),
        Some(("cart".into(), Algorithm::LeastRequest))
    );
    assert_eq!(applied(&out, "/books"), None, "search has no policy");
}

#[test]
fn the_service_policy_beats_the_rule_policy() {
    let yaml = format!(
        "{BASE}{}{}",
        policy("cart", ON_CART, "  algorithm: LeastRequest"),
        policy(
            "route",
            "{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}",
            "  algorithm: RoundRobin"
        ),
    );
    let out = run(&yaml);
    assert_eq!(
        applied(&out, "/cart"),
        Some(("cart".into(), Algorithm::LeastRequest))
    );
    assert_eq!(
        applied(&out, "/books"),
        Some(("route".into(), Algorithm::RoundRobin))
    );
}

#[test]
fn an_invalid_spec_is_accepted_false_invalid_naming_the_field_and_applies_nowhere() {
    let yaml = format!(
        "{BASE}{}",
        policy(
            "bad",
            ON_CART,
            "  algorithm: ConsistentHash\n  consistentHash: {key: {type: Header, header: \"no way\"}}"
        )
    );
    let out = run(&yaml);
    let (status, reason, message) = accepted(&out, "bad");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Invalid"));
    assert!(
        message.contains("spec.consistentHash.key.header"),
        "{message}"
    );
    assert_eq!(applied(&out, "/cart"), None);
}

#[test]
fn a_port_that_does_not_exist_is_target_not_found_and_a_gateway_target_invalid() {
    let yaml = format!(
        "{BASE}{}{}",
        policy(
            "no-port",
            "{group: \"\", kind: Service, name: cart, sectionName: grpc}",
            "  algorithm: LeastRequest"
        ),
        policy(
            "on-gateway",
            &format!("{ON_CART}, {{group: gateway.networking.k8s.io, kind: Gateway, name: gw}}"),
            "  algorithm: LeastRequest"
        ),
    );
    let out = run(&yaml);
    let (status, reason, message) = accepted(&out, "no-port");
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("False", "TargetNotFound")
    );
    assert!(message.contains("grpc"), "{message}");
    let (status, reason, message) = accepted(&out, "on-gateway");
    assert_eq!((status.as_str(), reason.as_str()), ("False", "Invalid"));
    assert!(message.contains("Gateway"), "{message}");
}
