//! `gwcore check` on an `XListenerSet` (Gateway API v1.3–v1.4
//! experimental channel): its status is printed under `kind: XListenerSet`
//! and its own apiVersion, as it would be written back to that resource,
//! and a route naming it attaches (issue 14).

use std::process::Command;

const MANIFESTS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: c}
spec: {controllerName: example.com/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: c
  allowedListeners: {namespaces: {from: All}}
  listeners:
  - {name: http, port: 80, protocol: HTTP, hostname: a.example.com}
---
apiVersion: gateway.networking.x-k8s.io/v1alpha1
kind: XListenerSet
metadata: {name: team, namespace: app}
spec:
  parentRef: {name: gw, namespace: infra}
  listeners:
  - {name: team-http, port: 80, protocol: HTTP, hostname: team.example.com}
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: app}
spec: {ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: app}
spec:
  parentRefs: [{group: gateway.networking.x-k8s.io, kind: XListenerSet, name: team}]
  rules:
  - backendRefs: [{name: svc, port: 80}]
"#;

#[test]
fn an_xlistenerset_status_is_printed_under_its_own_kind() {
    let dir = std::env::temp_dir().join(format!("gwcore-xlistenerset-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("x.yaml");
    std::fs::write(&file, MANIFESTS).expect("manifests written");
    let out = Command::new(env!("CARGO_BIN_EXE_gwcore"))
        .args(["check", "--output", "json"])
        .arg(&file)
        .output()
        .expect("gwcore runs");
    let _ = std::fs::remove_dir_all(&dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "no diagnostic, no refusal: {stderr}");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let items = list["items"].as_array().expect("items");
    let set = items
        .iter()
        .find(|i| i["metadata"]["name"] == "team")
        .expect("the set's status is printed");
    assert_eq!(set["kind"], "XListenerSet");
    assert_eq!(set["apiVersion"], "gateway.networking.x-k8s.io/v1alpha1");
    assert_eq!(set["metadata"]["namespace"], "app");
    let accepted = |conds: &serde_json::Value| {
        conds
            .as_array()
            .expect("conditions")
            .iter()
            .find(|c| c["type"] == "Accepted")
            .map(|c| c["status"].clone())
    };
    assert_eq!(accepted(&set["status"]["conditions"]), Some("True".into()));
    assert_eq!(set["status"]["listeners"][0]["attachedRoutes"], 1);
    let route = items
        .iter()
        .find(|i| i["kind"] == "HTTPRoute")
        .expect("the route's status is printed");
    let parent = &route["status"]["parents"][0];
    assert_eq!(parent["parentRef"]["kind"], "XListenerSet");
    assert_eq!(accepted(&parent["conditions"]), Some("True".into()));
    assert!(
        !items.iter().any(|i| i["kind"] == "ListenerSet"),
        "nothing under the other name"
    );
}
