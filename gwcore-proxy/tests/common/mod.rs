//! Helpers shared by the socket tests.
#![allow(dead_code, unreachable_pub)]

pub mod certs;

use std::net::SocketAddr;

use bytes::Bytes;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// A keep-alive HTTP/1.1 client.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

/// GETs `http://{authority}{path}` over a new HTTP/2 prior-knowledge
/// connection to `addr`; returns status and body.
pub async fn h2c_get(addr: SocketAddr, authority: &str, path: &str) -> (StatusCode, Bytes) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = Request::builder()
        .uri(format!("http://{authority}{path}"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.expect("request failed");
    assert_eq!(resp.version(), http::Version::HTTP_2);
    let status = resp.status();
    (status, resp.into_body().collect().await.unwrap().to_bytes())
}

/// GETs `path` from `addr` with a Host header; returns status, headers, body.
pub async fn get(
    client: &Client<HttpConnector, Full<Bytes>>,
    addr: SocketAddr,
    host: &str,
    path: &str,
) -> (StatusCode, http::HeaderMap, Bytes) {
    let req = Request::builder()
        .uri(format!("http://{addr}{path}"))
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = client.request(req).await.expect("request failed");
    let (parts, body) = resp.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    (parts.status, parts.headers, body)
}

/// Writes `text` to `path` so that the change is visible to mtime polling
/// even within one second: a fresh file is renamed over the old one.
pub fn write_file(path: &std::path::Path, text: &str) {
    let tmp = path.with_extension("tmp-write");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The controllerName of the test GatewayClasses.
pub const CONTROLLER: &str = "example.com/gateway-controller";

/// A GatewayClass `gc` of ours and a Gateway `default/gw` with one HTTP
/// listener on port 80: the head of most test manifests.
pub const HTTP_GATEWAY: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gc}
spec: {controllerName: example.com/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: gc
  listeners: [{name: http, port: 80, protocol: HTTP}]
"#;

/// The GatewayClass `gc` of ours alone, for manifests that bring their own
/// Gateway.
pub const GATEWAY_CLASS: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: gc}\nspec: {controllerName: example.com/gateway-controller}\n";

/// Runtime options serving Gateway port 80 on an ephemeral loopback port.
pub fn options(echo_backends: bool) -> gwcore_proxy::provider::RuntimeOptions {
    options_on(&[80], echo_backends)
}

/// Runtime options serving each Gateway port of `ports` on an ephemeral
/// loopback port.
pub fn options_on(ports: &[u16], echo_backends: bool) -> gwcore_proxy::provider::RuntimeOptions {
    let mut listen = gwcore_proxy::server::ListenOptions::default();
    for p in ports {
        listen.map.insert(*p, "127.0.0.1:0".parse().unwrap());
    }
    {
        let mut o = gwcore_proxy::provider::RuntimeOptions::new(CONTROLLER);
        o.listen = listen;
        o.echo_backends = echo_backends;
        o
    }
}

/// A temporary folder holding `manifest` as `gw.yaml`, removed on drop.
pub fn manifest_dir(name: &str, manifest: &str) -> TempDir {
    let dir = TempDir::new(name);
    std::fs::write(dir.0.join("gw.yaml"), manifest).unwrap();
    dir
}

/// The ACME example folder (`examples/acme`).
pub fn acme_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/acme")
}

/// A temporary folder, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    /// A new empty folder whose name starts with `gwcore-{name}`.
    pub fn new(name: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "gwcore-{name}-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// An EndpointSlice of Service `ns/service` with one endpoint,
/// 127.0.0.1:`port`.
pub fn endpoint_slice(ns: &str, service: &str, port: u16) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {service}-1, namespace: {ns}, labels: {{kubernetes.io/service-name: {service}}}}}\naddressType: IPv4\nports: [{{port: {port}}}]\nendpoints: [{{addresses: [127.0.0.1]}}]\n"
    )
}

/// The engine's statuses for `examples/<example>` read with gwcore's
/// first-party kinds, as `gwcore serve` reads it (a load error fails).
pub fn example_statuses(example: &str) -> gwcore::engine::Computed {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(example);
    let text = std::fs::read_to_string(&path).unwrap();
    let plugins = gwcore_proxy::first_party::plugins();
    let loaded = gwcore::load::load_str_extended(
        example,
        &text,
        gwcore::load::Limits::default(),
        plugins.extensions(),
    );
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    gwcore::engine::compute(
        &loaded.to_snapshot(),
        &gwcore::engine::ComputeOptions::new(CONTROLLER, "2026-06-01T00:00:00Z")
            .with_extensions(plugins.extensions().clone()),
    )
}

/// Asserts that policy `namespace/name` of `kind` is `Accepted=True` for
/// its first ancestor in `out`.
pub fn assert_policy_accepted(
    out: &gwcore::engine::Computed,
    kind: gwcore::extension::ExtensionKind,
    namespace: &str,
    name: &str,
) {
    let key = gwcore::model::ObjectKey::new(gwcore::model::Kind::Extension(kind), namespace, name);
    let Some(gwcore::status::ObjectStatus::Policy(p)) = out.statuses.get(&key) else {
        panic!("no status for the example's policy {namespace}/{name}");
    };
    let c = &p.ancestors[0].conditions[0];
    assert_eq!(
        (c.type_.as_str(), c.status.as_str()),
        ("Accepted", "True"),
        "{c:?}"
    );
}
