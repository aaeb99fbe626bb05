//! Your own filter kind on gwcore's proxy: `example.com/v1 HeaderAuth`, an
//! `ExtensionRef` filter that answers 401 to requests without a header.
//!
//! ```text
//! cargo run -p gwcore-proxy --example header_auth
//! ```
//!
//! Two halves, registered together in [`Plugins`]:
//! - [`FilterKind`] (gwcore, pure): which objects are valid filters. The
//!   engine resolves every `extensionRef` against them and sets the route's
//!   `ResolvedRefs` (a missing or invalid object makes the rule answer 500).
//! - [`FilterPlugin`] (the proxy, async): what the filter does to each
//!   request it applies to, in rule order among the built-in filters.
//!
//! `gwcore-proxy/tests/plugins.rs` runs this file's [`plugins`] over the
//! wire.

use std::time::Duration;

use gwcore::Snapshot;
use gwcore::extension::{ExtensionKind, ExtensionObject, FilterKind, Refused};
use gwcore_proxy::plugin::{
    BoxFuture, FilterPlugin, FilterRequest, FilterResponse, Plugins, Verdict,
};
use gwcore_proxy::provider::{Runtime, RuntimeOptions};
use gwcore_proxy::server::ListenOptions;
use http::{HeaderName, HeaderValue, StatusCode};

/// The kind, as manifests spell it.
pub const HEADER_AUTH: ExtensionKind = ExtensionKind::new("example.com/v1", "HeaderAuth");

/// `spec` of a HeaderAuth object.
#[derive(Debug, serde::Deserialize)]
pub struct HeaderAuthSpec {
    /// The header a request must carry.
    pub header: String,
    /// The value it must have; any value when absent.
    #[serde(default)]
    pub value: Option<String>,
}

/// The filter kind (both halves).
#[derive(Debug)]
pub struct HeaderAuth;

fn parse(object: &ExtensionObject) -> Result<(HeaderName, Option<HeaderValue>), Refused> {
    let spec: HeaderAuthSpec = object.spec_as()?;
    let name = HeaderName::from_bytes(spec.header.as_bytes()).map_err(|_| {
        Refused::new(format!(
            "spec.header: {:?} is not a header name",
            spec.header
        ))
    })?;
    let value = spec
        .value
        .map(|v| HeaderValue::from_str(&v).map_err(|_| "spec.value: not a header value"))
        .transpose()?;
    Ok((name, value))
}

impl FilterKind for HeaderAuth {
    fn kind(&self) -> ExtensionKind {
        HEADER_AUTH
    }

    fn check(&self, object: &ExtensionObject) -> Result<(), Refused> {
        parse(object).map(|_| ())
    }
}

impl FilterPlugin for HeaderAuth {
    fn kind(&self) -> ExtensionKind {
        HEADER_AUTH
    }

    fn on_request<'a>(&'a self, request: FilterRequest<'a>) -> BoxFuture<'a, Verdict> {
        Box::pin(async move {
            // The engine checked the object; a failure here cannot happen,
            // and would deny.
            let Ok((name, expected)) = parse(request.object) else {
                return Verdict::Respond(unauthorized());
            };
            let ok = match (request.head.headers.get(&name), &expected) {
                (Some(_), None) => true,
                (Some(got), Some(want)) => got == want,
                (None, _) => false,
            };
            if !ok {
                return Verdict::Respond(unauthorized());
            }
            // The credential stays at the Gateway; the backend is told who
            // let the request in.
            request.head.headers.remove(&name);
            request.head.headers.insert(
                "x-authenticated-by",
                HeaderValue::from_str(&request.object.metadata.name)
                    .unwrap_or(HeaderValue::from_static("header-auth")),
            );
            Verdict::Continue
        })
    }

    fn on_response(&self, response: FilterResponse<'_>) {
        response
            .head
            .headers
            .insert("x-header-auth", HeaderValue::from_static("passed"));
    }
}

fn unauthorized() -> http::Response<gwcore_proxy::body::Body> {
    let mut r = gwcore_proxy::route::status_response(StatusCode::UNAUTHORIZED, "unauthorized\n");
    r.headers_mut()
        .insert("www-authenticate", HeaderValue::from_static("Header"));
    r
}

/// The plug-ins to run the proxy with.
pub fn plugins() -> Plugins {
    Plugins::new().with_filter(HeaderAuth, HeaderAuth)
}

/// A Gateway, a route whose `/admin` rule needs `x-token: s3cret`, and the
/// HeaderAuth object it names.
pub const MANIFESTS: &str = r#"
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
apiVersion: example.com/v1
kind: HeaderAuth
metadata: {name: admin-token, namespace: default}
spec: {header: x-token, value: s3cret}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: app, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /admin}}]
    filters:
    - type: ExtensionRef
      extensionRef: {group: example.com, kind: HeaderAuth, name: admin-token}
    backendRefs: [{name: app, port: 8080}]
  - backendRefs: [{name: app, port: 8080}]
"#;

/// Reads `MANIFESTS` with the kinds `plugins` register.
pub fn snapshot(plugins: &Plugins) -> Snapshot {
    let loaded = gwcore::load::load_str_extended(
        "example",
        MANIFESTS,
        gwcore::load::Limits::default(),
        plugins.extensions(),
    );
    for d in &loaded.diagnostics {
        eprintln!("{d}");
    }
    Snapshot::from_objects(loaded.objects.into_iter().map(|(o, _)| o))
}

/// Starts the proxy on an ephemeral port of 127.0.0.1, with echo backends.
pub async fn start() -> Result<Runtime, Box<dyn std::error::Error>> {
    let plugins = plugins();
    let opts = {
        let mut o = RuntimeOptions::new("example.com/demo");
        o.listen = ListenOptions {
            default_ip: "127.0.0.1".parse()?,
            ephemeral: true,
            ..ListenOptions::default()
        };
        o.echo_backends = true;
        o.plugins = plugins.clone();
        o
    };
    Ok(Runtime::from_snapshot(snapshot(&plugins), opts).await?)
}

#[allow(dead_code)]
#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let rt = start().await?;
    let addr = rt.local_addr(80).ok_or("port 80 is not served")?;
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Empty<bytes::Bytes>>();
    for (path, token) in [
        ("/", None),
        ("/admin", None),
        ("/admin", Some("wrong")),
        ("/admin", Some("s3cret")),
    ] {
        let mut req = http::Request::get(format!("http://{addr}{path}"));
        if let Some(t) = token {
            req = req.header("x-token", t);
        }
        let resp = client.request(req.body(Default::default())?).await?;
        println!("GET {path} x-token={token:?} -> {}", resp.status());
    }
    rt.shutdown(Duration::from_secs(1)).await;
    Ok(())
}
