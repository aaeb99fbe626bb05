//! Which route and which listener a TCP or TLS connection reaches, over
//! real sockets: the oldest TCPRoute on a TCP listener, and a port whose
//! TLS listeners mix Passthrough and Terminate (and HTTPS).

use std::net::SocketAddr;
use std::path::PathBuf;

use gwcore_proxy::echo::EchoIdentity;
use gwcore_proxy::provider::{Runtime, RuntimeOptions};
use gwcore_proxy::server::ListenOptions;
use gwcore_proxy::tcp_echo::{TcpEchoServer, TcpEchoed};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

const CLASS: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: gc}\nspec: {controllerName: example.com/gateway-controller}\n";

fn options(ports: &[u16]) -> RuntimeOptions {
    let mut listen = ListenOptions::default();
    for p in ports {
        listen.map.insert(*p, "127.0.0.1:0".parse().unwrap());
    }
    RuntimeOptions {
        controller_name: "example.com/gateway-controller".into(),
        listen,
        echo_backends: false,
    }
}

/// Writes the manifests into a fresh folder.
fn manifests_dir(docs: &[String]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "gwcore-l4-routing-{}-{}",
        std::process::id(),
        fastrand::u64(..)
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("gw.yaml"), docs.join("---\n")).unwrap();
    dir
}

/// A Service `name` in `default` on `port`, served by `backend`.
fn service(name: &str, port: u16, backend: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec: {{ports: [{{port: {port}}}]}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-1, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{port: {}}}]\nendpoints: [{{addresses: [127.0.0.1]}}]\n",
        backend.port()
    )
}

/// A plain TCP echo backend (the conformance protocol) for Service
/// `service`.
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

fn tcp_route(name: &str, created: &str, backend: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {{name: {name}, namespace: default, creationTimestamp: \"{created}\"}}\nspec:\n  parentRefs: [{{name: gw, sectionName: tcp}}]\n  rules: [{{backendRefs: [{{name: {backend}, port: 3000}}]}}]\n"
    )
}

#[tokio::test]
async fn the_oldest_tcp_route_on_a_listener_carries_every_connection() {
    let (older, newer) = (echo("older").await, echo("newer").await);
    let gateway = r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: gc
  listeners:
  - {name: tcp, port: 9310, protocol: TCP, allowedRoutes: {kinds: [{kind: TCPRoute}]}}
"#;
    // The newer route's name sorts first: age, not name, must decide.
    let dir = manifests_dir(&[
        CLASS.to_owned(),
        gateway.to_owned(),
        service("older", 3000, older.addr()),
        service("newer", 3000, newer.addr()),
        tcp_route("a-newer", "2026-01-02T00:00:00Z", "newer"),
        tcp_route("b-older", "2026-01-01T00:00:00Z", "older"),
    ]);
    let rt = Runtime::start(vec![dir.clone()], options(&[9310]))
        .await
        .unwrap();
    let addr = rt.local_addr(9310).expect("9310 is served");
    for i in 0..20 {
        let got = who(TcpStream::connect(addr).await.unwrap()).await;
        assert_eq!(got.service, "older", "connection {i}");
    }
    let metrics = rt.proxy().metrics().render();
    let line = r#"gwcore_streams_total{gateway="default/gw",route="TCPRoute default/b-older",backend="default/older:3000",result="forwarded"} 20"#;
    assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn tcp_routes_of_the_same_age_go_by_name() {
    let (a, b) = (echo("a").await, echo("b").await);
    let gateway = r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: gc
  listeners:
  - {name: tcp, port: 9311, protocol: TCP, allowedRoutes: {kinds: [{kind: TCPRoute}]}}
"#;
    let same = "2026-01-01T00:00:00Z";
    let dir = manifests_dir(&[
        CLASS.to_owned(),
        gateway.to_owned(),
        service("a", 3000, a.addr()),
        service("b", 3000, b.addr()),
        tcp_route("route-b", same, "b"),
        tcp_route("route-a", same, "a"),
    ]);
    let rt = Runtime::start(vec![dir.clone()], options(&[9311]))
        .await
        .unwrap();
    let addr = rt.local_addr(9311).expect("9311 is served");
    let got = who(TcpStream::connect(addr).await.unwrap()).await;
    assert_eq!(got.service, "a");
    let _ = std::fs::remove_dir_all(&dir);
}
