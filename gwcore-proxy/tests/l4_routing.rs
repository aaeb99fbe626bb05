//! Which route and which listener a TCP or TLS connection reaches, over
//! real sockets: the oldest TCPRoute on a TCP listener, and a port whose
//! TLS listeners mix Passthrough and Terminate (and HTTPS).

mod common;

use common::certs::Cert;

use std::net::SocketAddr;

use gwcore_proxy::echo::EchoIdentity;
use gwcore_proxy::provider::{Runtime, RuntimeOptions};
use gwcore_proxy::tcp_echo::{TcpEchoServer, TcpEchoed};
use rustls::pki_types::ServerName;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// Ports mapped to ephemeral ones; echo backends stand in for the Services
/// without endpoints.
fn options(ports: &[u16]) -> RuntimeOptions {
    common::options_on(ports, true)
}

/// Writes the manifests into a fresh folder, removed on drop.
fn manifests_dir(docs: &[String]) -> common::TempDir {
    common::manifest_dir("l4-routing", &docs.join("---\n"))
}

/// A Service `name` in `default` on `port`, served by `backend`.
fn service(name: &str, port: u16, backend: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec: {{ports: [{{port: {port}}}]}}\n---\n{}",
        slice(name, 1, backend.port())
    )
}

/// EndpointSlice `n` of Service `name`: 127.0.0.1 at `port`.
fn slice(name: &str, n: u32, port: u16) -> String {
    format!(
        "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-{n}, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{port: {port}}}]\nendpoints: [{{addresses: [127.0.0.1]}}]\n"
    )
}

/// A TCP echo backend (the conformance protocol) for Service `service`;
/// with `tls`, it terminates TLS itself with that certificate.
async fn echo_tls(service: &str, tls: Option<&Cert>) -> TcpEchoServer {
    let tls = tls.map(|c| gwcore_proxy::tcp_echo::tls_config(c.key()).unwrap());
    TcpEchoServer::start(
        EchoIdentity::new("default", service, 0),
        "127.0.0.1:0".parse().unwrap(),
        tls,
    )
    .await
    .unwrap()
}

/// A plain TCP echo backend for Service `service`.
async fn echo(service: &str) -> TcpEchoServer {
    TcpEchoServer::start(
        EchoIdentity::new("default", service, 0),
        "127.0.0.1:0".parse().unwrap(),
        None,
    )
    .await
    .unwrap()
}

/// Asks the echo backend at the other end of `stream` who it is.
async fn who<S: AsyncRead + AsyncWrite + Unpin>(stream: S) -> TcpEchoed {
    let mut r = BufReader::new(stream);
    let mut greeting = String::new();
    r.read_line(&mut greeting).await.unwrap();
    assert!(greeting.starts_with("HELLO "), "{greeting:?}");
    r.get_mut().write_all(b"TEST\n").await.unwrap();
    let mut answer = String::new();
    r.read_line(&mut answer).await.unwrap();
    serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{answer:?}: {e}"))
}

/// Serves a Gateway `default/gw` with one TCP listener `tcp` on `port`,
/// and `docs` (Services, routes); returns the manifest folder and the
/// runtime (keep both, in this order, for the test's life: the runtime is
/// dropped first) and where `port` is served.
async fn serve_tcp(port: u16, docs: &[String]) -> (common::TempDir, Runtime, SocketAddr) {
    let gateway = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: default}}\nspec:\n  gatewayClassName: gc\n  listeners:\n  - {{name: tcp, port: {port}, protocol: TCP, allowedRoutes: {{kinds: [{{kind: TCPRoute}}]}}}}\n"
    );
    let mut all = vec![common::GATEWAY_CLASS.to_owned(), gateway];
    all.extend_from_slice(docs);
    let dir = manifests_dir(&all);
    let rt = Runtime::start(vec![dir.0.clone()], options(&[port]))
        .await
        .unwrap();
    let addr = rt.local_addr(port).expect("the TCP port is served");
    (dir, rt, addr)
}

fn tcp_route(name: &str, created: &str, backend: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {{name: {name}, namespace: default, creationTimestamp: \"{created}\"}}\nspec:\n  parentRefs: [{{name: gw, sectionName: tcp}}]\n  rules: [{{backendRefs: [{{name: {backend}, port: 3000}}]}}]\n"
    )
}

#[tokio::test]
async fn the_oldest_tcp_route_on_a_listener_carries_every_connection() {
    let (older, newer) = (echo("older").await, echo("newer").await);
    // The newer route's name sorts first: age, not name, must decide.
    let (_dir, rt, addr) = serve_tcp(
        9310,
        &[
            service("older", 3000, older.addr()),
            service("newer", 3000, newer.addr()),
            tcp_route("a-newer", "2026-01-02T00:00:00Z", "newer"),
            tcp_route("b-older", "2026-01-01T00:00:00Z", "older"),
        ],
    )
    .await;
    for i in 0..20 {
        let got = who(TcpStream::connect(addr).await.unwrap()).await;
        assert_eq!(got.service, "older", "connection {i}");
    }
    let metrics = rt.proxy().metrics().render();
    let line = r#"gwcore_streams_total{gateway="default/gw",route="TCPRoute default/b-older",backend="default/older:3000",result="forwarded"} 20"#;
    assert!(metrics.contains(line), "{line} missing from\n{metrics}");
}

#[tokio::test]
async fn a_tcp_connection_goes_past_an_endpoint_that_refuses() {
    let live = echo("half").await;
    // A port nothing listens on: the second endpoint of the Service.
    let gone = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_dir, _rt, addr) = serve_tcp(
        9312,
        &[
            service("half", 3000, live.addr()),
            slice("half", 2, gone),
            tcp_route("r", "2026-01-01T00:00:00Z", "half"),
        ],
    )
    .await;
    // Each connection picks an endpoint at random: without trying another,
    // about half would be closed.
    for i in 0..20 {
        let got = who(TcpStream::connect(addr).await.unwrap()).await;
        assert_eq!(got.service, "half", "connection {i}");
    }
}

#[tokio::test]
async fn tcp_routes_of_the_same_age_go_by_name() {
    let (a, b) = (echo("a").await, echo("b").await);
    let same = "2026-01-01T00:00:00Z";
    let (_dir, _rt, addr) = serve_tcp(
        9311,
        &[
            service("a", 3000, a.addr()),
            service("b", 3000, b.addr()),
            tcp_route("route-b", same, "b"),
            tcp_route("route-a", same, "a"),
        ],
    )
    .await;
    let got = who(TcpStream::connect(addr).await.unwrap()).await;
    assert_eq!(got.service, "a");
}

/// A self-signed certificate and its key.
/// A TLS client that trusts only `trust`.
async fn tls_connect(
    addr: SocketAddr,
    sni: &str,
    trust: &Cert,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(trust.client_config(alpn))
        .connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp)
        .await
}

/// GETs `/` over TLS with SNI and Host `host`, HTTP/1.1.
async fn https_get(
    addr: SocketAddr,
    host: &str,
    trust: &Cert,
) -> (http::StatusCode, gwcore_proxy::echo::Echoed) {
    use http_body_util::BodyExt;
    let tls = tls_connect(addr, host, trust, &[b"http/1.1"])
        .await
        .expect("TLS handshake with the gateway");
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"http/1.1"[..]));
    let io = hyper_util::rt::TokioIo::new(tls);
    let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .uri("/")
        .header("host", host)
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    let status = resp.status();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap())
}

#[tokio::test]
async fn one_port_passes_through_terminates_and_serves_https_by_sni() {
    let gateway_cert = Cert::new(&["tls.example.com", "www.example.com"]);
    let backend_cert = Cert::new(&["abc.example.com"]);
    let plain = echo_tls("plain", None).await;
    let secure = echo_tls("secure", Some(&backend_cert)).await;
    // Passthrough takes every name under example.com but the two exact
    // hostnames of the Terminate and HTTPS listeners, which are more
    // specific.
    let gateway = r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: gc
  listeners:
  - {name: https, port: 8883, protocol: HTTPS, hostname: www.example.com, tls: {certificateRefs: [{name: gateway-cert}]}}
  - {name: terminate, port: 8883, protocol: TLS, hostname: tls.example.com, tls: {mode: Terminate, certificateRefs: [{name: gateway-cert}]}, allowedRoutes: {kinds: [{kind: TLSRoute}]}}
  - {name: passthrough, port: 8883, protocol: TLS, hostname: "*.example.com", tls: {mode: Passthrough}, allowedRoutes: {kinds: [{kind: TLSRoute}]}}
"#;
    let routes = r#"apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: terminated, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: terminate}]
  rules: [{backendRefs: [{name: plain, port: 3000}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: passed, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: passthrough}]
  rules: [{backendRefs: [{name: secure, port: 8443}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: web, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: https}]
  rules: [{backendRefs: [{name: web, port: 80}]}]
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: default}
spec: {ports: [{port: 80}]}
"#;
    let dir = manifests_dir(&[
        common::GATEWAY_CLASS.to_owned(),
        gateway.to_owned(),
        gateway_cert.secret("gateway-cert"),
        service("plain", 3000, plain.addr()),
        service("secure", 8443, secure.addr()),
        routes.to_owned(),
    ]);
    let rt = Runtime::start(vec![dir.0.clone()], options(&[8883]))
        .await
        .unwrap();
    let status = rt.proxy().status_json();
    assert_eq!(
        status["certificateErrors"],
        serde_json::json!([]),
        "{status:#}"
    );
    let addr = rt.local_addr(8883).expect("8883 is served");

    // Passthrough: the client's TLS session is the backend's own — the
    // gateway's certificate would not do — and the backend saw the SNI.
    assert!(
        tls_connect(addr, "abc.example.com", &gateway_cert, &[])
            .await
            .is_err(),
        "a passthrough name is not answered with the gateway's certificate"
    );
    let s = tls_connect(addr, "abc.example.com", &backend_cert, &[])
        .await
        .expect("TLS handshake with the backend");
    let got = who(s).await;
    assert_eq!(
        (got.service.as_str(), got.tls, got.sni.as_deref()),
        ("secure", true, Some("abc.example.com"))
    );

    // Terminate: our certificate, plain bytes to the backend, and no HTTP
    // offered by ALPN although the port has an HTTPS listener.
    let s = tls_connect(
        addr,
        "tls.example.com",
        &gateway_cert,
        &[b"h2", b"http/1.1"],
    )
    .await
    .expect("TLS handshake with the gateway");
    assert_eq!(s.get_ref().1.alpn_protocol(), None);
    let got = who(s).await;
    assert_eq!((got.service.as_str(), got.tls), ("plain", false));

    // HTTPS: our certificate, then HTTP routing.
    let (status, echoed) = https_get(addr, "www.example.com", &gateway_cert).await;
    assert_eq!(status, http::StatusCode::OK);
    assert_eq!(echoed.service, "web");
    assert_eq!(echoed.headers["X-Forwarded-Proto"], ["https"]);

    // No listener takes this name: the connection is closed.
    assert!(
        tls_connect(addr, "other.org", &gateway_cert, &[])
            .await
            .is_err()
    );
}
