//! Extension filter plug-ins over the wire: the `header_auth` example's
//! HeaderAuth filter (401 without the header, headers changed both ways),
//! and the 500 of a filter kind no plug-in runs.

mod common;

#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../examples/header_auth.rs"]
mod example;

use std::time::Duration;

use bytes::Bytes;
use gwcore::extension::{ExtensionKind, FilterKind};
use gwcore_proxy::plugin::{BoxFuture, FilterPlugin, FilterRequest, Plugins, Verdict};
use gwcore_proxy::provider::{Runtime, RuntimeOptions};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};

/// Port 80 on an ephemeral loopback port, echo backends, the examples'
/// controller name, and `plugins`.
fn options(plugins: Plugins) -> RuntimeOptions {
    {
        let mut o = common::options(true);
        o.controller_name = "example.com/demo".into();
        o.plugins = plugins;
        o
    }
}

async fn get(
    addr: std::net::SocketAddr,
    path: &str,
    token: Option<&str>,
) -> (StatusCode, http::HeaderMap, String) {
    let mut req = Request::get(format!("http://{addr}{path}"));
    if let Some(t) = token {
        req = req.header("x-token", t);
    }
    let resp = common::client()
        .request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .expect("request");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.unwrap().to_bytes();
    (
        parts.status,
        parts.headers,
        String::from_utf8_lossy(&body).to_lowercase(),
    )
}

#[tokio::test]
async fn header_auth_answers_401_without_the_header_and_forwards_with_it() {
    let rt = example::start().await.expect("start");
    let addr = rt.local_addr(80).expect("port 80");

    // The rule without the filter is open.
    let (status, headers, _) = get(addr, "/", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(headers.get("x-header-auth").is_none());

    for token in [None, Some("wrong")] {
        let (status, headers, body) = get(addr, "/admin", token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "token {token:?}");
        assert_eq!(headers["www-authenticate"], "Header");
        assert!(
            !body.contains("\"service\""),
            "the backend answered: {body}"
        );
    }
    // HTTP/2 clients get the same answer.
    let (status, _) = common::h2c_get(addr, "a.example", "/admin/x").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, headers, body) = get(addr, "/admin/users", Some("s3cret")).await;
    assert_eq!(status, StatusCode::OK);
    // The plug-in changed the request (credential removed, identity
    // added) and the response.
    assert!(
        body.contains("\"x-authenticated-by\":[\"admin-token\"]"),
        "{body}"
    );
    assert!(!body.contains("x-token"), "{body}");
    assert_eq!(headers["x-header-auth"], "passed");
    rt.shutdown(Duration::from_secs(1)).await;
}

/// A plug-in of another kind than the route's filter.
#[derive(Debug)]
struct Other;

impl FilterPlugin for Other {
    fn kind(&self) -> ExtensionKind {
        ExtensionKind::new("example.com/v1", "Other")
    }
    fn on_request<'a>(&'a self, _: FilterRequest<'a>) -> BoxFuture<'a, Verdict> {
        Box::pin(async { Verdict::Continue })
    }
}

#[tokio::test]
async fn a_resolved_filter_without_a_plug_in_answers_500() {
    // The engine resolves HeaderAuth (its deciding half is registered),
    // but no plug-in runs it: the filter must not be skipped.
    let decide_only = Plugins::new().with_filter(example::HeaderAuth, Other);
    assert_eq!(FilterKind::kind(&example::HeaderAuth), example::HEADER_AUTH);
    let opts = options(decide_only.clone());
    let rt = Runtime::from_snapshot(example::snapshot(&decide_only), opts)
        .await
        .expect("start");
    let addr = rt.local_addr(80).expect("port 80");
    let (status, _, _) = get(addr, "/admin", Some("s3cret")).await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    let (status, _, _) = get(addr, "/", None).await;
    assert_eq!(status, StatusCode::OK);
    rt.shutdown(Duration::from_secs(1)).await;
}

// ---------------------------------------------------------------- policies

mod stamp {
    use gwcore::extension::{ExtensionKind, PolicyContext, PolicyKind, PolicyValue, Refused};
    use gwcore::model::Object;
    use gwcore_proxy::plugin::{BoxFuture, PolicyPlugin, PolicyRequest, PolicyResponse, Verdict};
    use http::{HeaderValue, StatusCode};

    pub(crate) const STAMP: ExtensionKind = ExtensionKind::new("example.com/v1", "Stamp");

    /// `spec.value`: a header value stamped on requests, or `deny` (429).
    #[derive(Debug)]
    pub(crate) struct Stamp;

    impl PolicyKind for Stamp {
        fn kind(&self) -> ExtensionKind {
            STAMP
        }
        fn parse(
            &self,
            policy: &Object,
            _: &mut PolicyContext<'_>,
        ) -> Result<PolicyValue, Refused> {
            let Object::Extension(o) = policy else {
                return Err("not a Stamp".into());
            };
            match o.spec.get("value").and_then(|v| v.as_str()) {
                Some("deny") => Ok(PolicyValue::new(None::<HeaderValue>)),
                Some(v) => HeaderValue::from_str(v)
                    .map(|h| PolicyValue::new(Some(h)))
                    .map_err(|_| "spec.value is not a header value".into()),
                None => Err("spec.value is required".into()),
            }
        }
    }

    impl PolicyPlugin for Stamp {
        fn kind(&self) -> ExtensionKind {
            STAMP
        }
        fn on_request<'a>(&'a self, request: PolicyRequest<'a>) -> BoxFuture<'a, Verdict> {
            Box::pin(async move {
                match request.policy.value.get::<Option<HeaderValue>>() {
                    Some(Some(v)) => {
                        request.head.headers.insert("x-stamp", v.clone());
                        Verdict::Continue
                    }
                    _ => Verdict::Respond(gwcore_proxy::route::status_response(
                        StatusCode::TOO_MANY_REQUESTS,
                        "denied by policy\n",
                    )),
                }
            })
        }
        fn on_response(&self, response: PolicyResponse<'_>) {
            if let Ok(v) = HeaderValue::from_str(&response.policy.policy.name) {
                response.head.headers.insert("x-stamped-by", v);
            }
        }
    }
}

const STAMPED: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: demo}
spec: {controllerName: example.com/demo}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: demo
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: app, namespace: default}
spec: {ports: [{port: 8080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: app, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - name: admin
    matches: [{path: {type: PathPrefix, value: /admin}}]
    backendRefs: [{name: app, port: 8080}]
  - backendRefs: [{name: app, port: 8080}]
---
apiVersion: example.com/v1
kind: Stamp
metadata: {name: gateway-wide, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  value: from-the-gateway
---
apiVersion: example.com/v1
kind: Stamp
metadata: {name: no-admin, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: app, sectionName: admin}]
  value: deny
"#;

#[tokio::test]
async fn a_policy_plug_in_runs_where_its_policy_applies() {
    let plugins = Plugins::new().with_policy_plugin(stamp::Stamp, stamp::Stamp);
    let loaded = gwcore::load::load_str_extended(
        "stamped.yaml",
        STAMPED,
        gwcore::load::Limits::default(),
        plugins.extensions(),
    );
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    let opts = options(plugins);
    let rt = Runtime::from_snapshot(loaded.to_snapshot(), opts)
        .await
        .expect("start");
    let addr = rt.local_addr(80).expect("port 80");
    // The Gateway's policy on every rule: the request is stamped, and so
    // is the response.
    let (status, headers, body) = get(addr, "/things", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.contains("\"x-stamp\":[\"from-the-gateway\"]"),
        "{body}"
    );
    assert_eq!(headers["x-stamped-by"], "gateway-wide");
    // The rule's own policy is more specific, and answers itself.
    let (status, headers, body) = get(addr, "/admin/users", None).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert!(headers.get("x-stamped-by").is_none());
    assert!(
        !body.contains("\"service\""),
        "the backend answered: {body}"
    );
    rt.shutdown(Duration::from_secs(1)).await;
}
