//! `gwcore check` writes each status with the apiVersion its object was
//! read with (a kind is served at several: TLSRoute at v1alpha2, v1alpha3
//! and v1), not the kind's default (issue 14).

use std::path::PathBuf;
use std::process::Command;

const MANIFESTS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: c}
spec: {controllerName: example.com/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: c
  listeners:
  - name: tls
    port: 443
    protocol: TLS
    tls: {mode: Passthrough}
    allowedRoutes: {namespaces: {from: All}}
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: app}
spec: {ports: [{port: 443}]}
---
apiVersion: gateway.networking.k8s.io/v1alpha3
kind: TLSRoute
metadata: {name: new, namespace: app}
spec:
  parentRefs: [{name: gw, namespace: infra}]
  hostnames: [new.example.com]
  rules:
  - backendRefs: [{name: svc, port: 443}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: old, namespace: app}
spec:
  parentRefs: [{name: gw, namespace: infra}]
  hostnames: [old.example.com]
  rules:
  - backendRefs: [{name: svc, port: 443}]
"#;

fn write_manifests() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gwcore-api-version-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("tls.yaml");
    std::fs::write(&file, MANIFESTS).expect("manifests written");
    file
}

#[test]
fn statuses_keep_the_api_version_they_were_read_with() {
    let file = write_manifests();
    let out = Command::new(env!("CARGO_BIN_EXE_gwcore"))
        .args(["check", "--output", "json"])
        .arg(&file)
        .output()
        .expect("gwcore runs");
    let _ = std::fs::remove_dir_all(file.parent().expect("dir"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    let written: Vec<(&str, &str, &str)> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["kind"].as_str().expect("kind"),
                i["metadata"]["name"].as_str().expect("name"),
                i["apiVersion"].as_str().expect("apiVersion"),
            )
        })
        .collect();
    assert_eq!(
        written,
        [
            ("GatewayClass", "c", "gateway.networking.k8s.io/v1"),
            ("Gateway", "gw", "gateway.networking.k8s.io/v1beta1"),
            ("TLSRoute", "new", "gateway.networking.k8s.io/v1alpha3"),
            ("TLSRoute", "old", "gateway.networking.k8s.io/v1alpha2"),
        ],
        "{stderr}"
    );
    // The route was computed, not merely echoed.
    let route = &list["items"][2];
    assert_eq!(
        route["status"]["parents"][0]["conditions"][0]["reason"], "Accepted",
        "{route}"
    );
}
