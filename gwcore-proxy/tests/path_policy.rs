//! Escaped slashes over the wire: each of the four settings as the
//! proxy's default (`ServeOptions::escaped_slashes`, `gwcore serve
//! --escaped-slashes`), and a PathPolicy on the Gateway and on one
//! listener overriding it.

mod common;

use std::time::Duration;

use bytes::Bytes;
use gwcore::table::slashes::EscapedSlashes;
use gwcore_proxy::echo::Echoed;
use gwcore_proxy::provider::Runtime;
use gwcore_proxy::server::ServeOptions;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};

/// `/public` and `/keys` open; `/admin` only with `x-role: admin`; two
/// listeners on port 80, `web.example` and `api.example`.
const ROUTES: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gc}
spec: {controllerName: example.com/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: gc
  listeners:
  - {name: web, port: 80, protocol: HTTP, hostname: web.example}
  - {name: api, port: 80, protocol: HTTP, hostname: api.example}
---
apiVersion: v1
kind: Service
metadata: {name: public, namespace: default}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: keys, namespace: default}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: admin, namespace: default}
spec: {ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /public}}]
    backendRefs: [{name: public, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /keys}}]
    backendRefs: [{name: keys, port: 80}]
  - matches:
    - path: {type: PathPrefix, value: /admin}
      headers: [{name: x-role, value: admin}]
    backendRefs: [{name: admin, port: 80}]
"#;

fn policy(name: &str, section: Option<&str>, action: EscapedSlashes) -> String {
    let section = section.map_or(String::new(), |s| format!(", sectionName: {s}"));
    format!(
        "---\napiVersion: policy.gwcore.dev/v1alpha1\nkind: PathPolicy\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: gw{section}}}]\n  escapedSlashesAction: {action}\n"
    )
}

async fn start(manifest: &str, default: EscapedSlashes) -> (Runtime, common::TempDir) {
    let dir = common::manifest_dir("path-policy", manifest);
    let rt = Runtime::start_with(
        vec![dir.0.clone()],
        {
            let mut o = common::options(true);
            o.plugins = gwcore_proxy::first_party::plugins();
            o
        },
        ServeOptions {
            escaped_slashes: default,
            ..ServeOptions::default()
        },
    )
    .await
    .expect("start");
    (rt, dir)
}

/// What the gateway answers for `path` on `host` (with `x-role: admin`):
/// `fwd <service> <path as the backend received it>`, `redirect
/// <location>` or the status.
async fn outcome(rt: &Runtime, host: &str, path: &str) -> String {
    let addr = rt.local_addr(80).expect("port 80");
    let req = Request::get(format!("http://{addr}{path}"))
        .header("host", host)
        .header("x-role", "admin")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = common::client().request(req).await.expect("request");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    match parts.status {
        StatusCode::OK => {
            let e: Echoed = serde_json::from_slice(&body).expect("an echo answer");
            format!("fwd {} {}", e.service, e.path)
        }
        StatusCode::TEMPORARY_REDIRECT => format!(
            "redirect {}",
            parts.headers[http::header::LOCATION].to_str().unwrap()
        ),
        s => s.as_u16().to_string(),
    }
}

/// The requests every setting is tried with, and the answer under
/// KeepUnchanged, RejectRequest, UnescapeAndRedirect, UnescapeAndForward.
const ROWS: &[(&str, [&str; 4])] = &[
    // Decoded, it is the admin rule's: not the public backend's to serve.
    (
        "/public/..%2Fadmin?x=1",
        ["400", "400", "redirect /admin?x=1", "fwd admin /admin?x=1"],
    ),
    (
        "/public/..%5cadmin",
        ["400", "400", "redirect /admin", "fwd admin /admin"],
    ),
    (
        "/public/%2e%2e%2fkeys",
        ["400", "400", "redirect /keys", "fwd keys /keys"],
    ),
    // Decoded, still the rule that receives it.
    (
        "/keys/a%2Fb",
        [
            "fwd keys /keys/a%2Fb",
            "400",
            "redirect /keys/a/b",
            "fwd keys /keys/a/b",
        ],
    ),
    // Nothing escaped: routed as it is under every setting.
    (
        "/public/x?y=%2F",
        [
            "fwd public /public/x?y=%2F",
            "fwd public /public/x?y=%2F",
            "fwd public /public/x?y=%2F",
            "fwd public /public/x?y=%2F",
        ],
    ),
];

#[tokio::test]
async fn each_setting_as_the_default() {
    for (i, setting) in EscapedSlashes::ALL.into_iter().enumerate() {
        let (rt, _dir) = start(ROUTES, setting).await;
        for (path, want) in ROWS {
            assert_eq!(
                outcome(&rt, "web.example", path).await,
                want[i],
                "{path} under {setting}"
            );
        }
        rt.shutdown(Duration::from_secs(1)).await;
    }
}

#[tokio::test]
async fn the_default_default_redirects() {
    assert_eq!(
        ServeOptions::default().escaped_slashes,
        EscapedSlashes::UnescapeAndRedirect
    );
    let (rt, _dir) = start(ROUTES, EscapedSlashes::default()).await;
    assert_eq!(
        outcome(&rt, "web.example", "/public/..%2Fadmin").await,
        "redirect /admin"
    );
    rt.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_listener_policy_beats_the_gateway_policy_which_beats_the_default() {
    let manifest = format!(
        "{ROUTES}{}{}",
        policy("all", None, EscapedSlashes::UnescapeAndForward),
        policy("api", Some("api"), EscapedSlashes::KeepUnchanged),
    );
    let (rt, _dir) = start(&manifest, EscapedSlashes::RejectRequest).await;
    // The Gateway's policy on the web listener.
    assert_eq!(
        outcome(&rt, "web.example", "/keys/a%2Fb").await,
        "fwd keys /keys/a/b"
    );
    // The listener's own on the api listener.
    assert_eq!(
        outcome(&rt, "api.example", "/keys/a%2Fb").await,
        "fwd keys /keys/a%2Fb"
    );
    assert_eq!(
        outcome(&rt, "api.example", "/public/..%2Fadmin").await,
        "400"
    );
    rt.shutdown(Duration::from_secs(1)).await;

    // Without policies, the default.
    let (rt, _dir) = start(ROUTES, EscapedSlashes::RejectRequest).await;
    assert_eq!(outcome(&rt, "api.example", "/keys/a%2Fb").await, "400");
    rt.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn http2_requests_get_the_same_answers() {
    let (rt, _dir) = start(ROUTES, EscapedSlashes::UnescapeAndForward).await;
    let addr = rt.local_addr(80).expect("port 80");
    let (status, body) = common::h2c_get(addr, "web.example", "/public/..%2Fkeys/k").await;
    assert_eq!(status, StatusCode::OK);
    let e: Echoed = serde_json::from_slice(&body).expect("an echo answer");
    assert_eq!((e.service.as_str(), e.path.as_str()), ("keys", "/keys/k"));
    rt.shutdown(Duration::from_secs(1)).await;

    let (rt, _dir) = start(ROUTES, EscapedSlashes::KeepUnchanged).await;
    let addr = rt.local_addr(80).expect("port 80");
    let (status, _) = common::h2c_get(addr, "web.example", "/public/..%2Fkeys/k").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    rt.shutdown(Duration::from_secs(1)).await;
}
