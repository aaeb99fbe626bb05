//! UDPRoutes over real sockets: datagrams reach the backend of the port's
//! UDPRoute, each client's replies come back to that client, a client keeps
//! its session (and backend) across a reload while new clients follow the
//! new routing.

use std::net::SocketAddr;
use std::time::Duration;

use gwcore::Snapshot;
use gwcore_proxy::metrics::ReloadOutcome;
use gwcore_proxy::provider::{Runtime, RuntimeOptions};
use gwcore_proxy::server::ListenOptions;
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

const PORT: u16 = 5300;

/// A UDP echo backend: answers each datagram with
/// `<name> <sender address> <payload>`, so a reply tells which backend
/// answered and which of the proxy's sockets it came from.
struct UdpEcho {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for UdpEcho {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn udp_echo(name: &'static str) -> UdpEcho {
    let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = socket.local_addr().unwrap();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 2048];
        loop {
            let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                continue;
            };
            let payload = String::from_utf8_lossy(&buf[..n]);
            let reply = format!("{name} {peer} {payload}");
            let _ = socket.send_to(reply.as_bytes(), peer).await;
        }
    });
    UdpEcho { addr, task }
}

/// A Service `name` with UDP port 53, its EndpointSlice pointing at
/// `backend`.
fn service(name: &str, backend: SocketAddr) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec: {{ports: [{{name: dns, port: 53, protocol: UDP}}]}}\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-1, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{name: dns, port: {}, protocol: UDP}}]\nendpoints: [{{addresses: [127.0.0.1]}}]\n",
        backend.port()
    )
}

/// A Gateway with one UDP listener, Services `a` and `b`, and a UDPRoute
/// sending the listener's traffic to `to`.
fn snapshot(a: &UdpEcho, b: &UdpEcho, to: &str) -> Snapshot {
    let docs = [
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: gc}\nspec: {controllerName: example.com/gateway-controller}\n".to_owned(),
        format!("apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: default}}\nspec:\n  gatewayClassName: gc\n  listeners:\n  - {{name: dns, port: {PORT}, protocol: UDP, allowedRoutes: {{kinds: [{{kind: UDPRoute}}]}}}}\n"),
        service("a", a.addr),
        service("b", b.addr),
        format!("apiVersion: gateway.networking.k8s.io/v1alpha2\nkind: UDPRoute\nmetadata: {{name: dns, namespace: default}}\nspec:\n  parentRefs: [{{name: gw, sectionName: dns}}]\n  rules: [{{backendRefs: [{{name: {to}, port: 53}}]}}]\n"),
    ];
    let loaded = gwcore::load::load_str("udp.yaml", &docs.join("---\n"));
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    Snapshot::from_objects(loaded.objects.into_iter().map(|(o, _)| o))
}

fn options() -> RuntimeOptions {
    {
        let mut o = RuntimeOptions::new("example.com/gateway-controller");
        o.listen = ListenOptions {
            default_ip: [127, 0, 0, 1].into(),
            ephemeral: true,
            ..ListenOptions::default()
        };
        o
    }
}

async fn client(gateway: SocketAddr) -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.connect(gateway).await.unwrap();
    s
}

/// The next reply on `socket`, split into (backend, the proxy's address
/// the backend saw, payload).
async fn reply(socket: &UdpSocket) -> (String, String, String) {
    let mut buf = vec![0u8; 2048];
    let n = tokio::time::timeout(Duration::from_secs(5), socket.recv(&mut buf))
        .await
        .expect("a reply within 5 s")
        .unwrap();
    let text = String::from_utf8(buf[..n].to_vec()).unwrap();
    let mut parts = text.splitn(3, ' ');
    let mut next = || parts.next().unwrap_or_default().to_owned();
    (next(), next(), next())
}

#[tokio::test]
async fn each_client_gets_its_own_replies_and_reloads_reach_new_sessions() {
    let (a, b) = (udp_echo("a").await, udp_echo("b").await);
    let mut rt = Runtime::from_snapshot(snapshot(&a, &b, "a"), options())
        .await
        .unwrap();
    let gateway = rt.local_addr(PORT).expect("the UDP port is served");

    let (one, two) = (client(gateway).await, client(gateway).await);
    // Interleaved: both clients have a datagram in flight at once.
    one.send(b"one-1").await.unwrap();
    two.send(b"two-1").await.unwrap();
    let (backend1, session1, payload) = reply(&one).await;
    assert_eq!((backend1.as_str(), payload.as_str()), ("a", "one-1"));
    let (backend2, session2, payload) = reply(&two).await;
    assert_eq!((backend2.as_str(), payload.as_str()), ("a", "two-1"));
    assert_ne!(
        session1, session2,
        "each client has its own upstream socket"
    );
    // A client's later datagrams follow its session.
    one.send(b"one-2").await.unwrap();
    let (_, again, payload) = reply(&one).await;
    assert_eq!(
        (again.as_str(), payload.as_str()),
        (session1.as_str(), "one-2")
    );

    // The route now sends to b: the port keeps its socket, the open
    // session its backend, and a new client goes to b.
    assert_eq!(
        rt.apply(snapshot(&a, &b, "b")).await,
        ReloadOutcome::Applied
    );
    assert_eq!(rt.local_addr(PORT), Some(gateway), "the socket is kept");
    one.send(b"one-3").await.unwrap();
    let (backend, _, payload) = reply(&one).await;
    assert_eq!((backend.as_str(), payload.as_str()), ("a", "one-3"));
    let three = client(gateway).await;
    three.send(b"three-1").await.unwrap();
    let (backend, _, payload) = reply(&three).await;
    assert_eq!((backend.as_str(), payload.as_str()), ("b", "three-1"));

    // Three sessions opened, each counted once as a forwarded stream.
    assert_eq!(streams(&rt, "forwarded"), 3);
}

/// The sum of `gwcore_streams_total` with this result.
fn streams(rt: &Runtime, result: &str) -> u64 {
    let want = format!("result=\"{result}\"");
    rt.proxy()
        .metrics()
        .render()
        .lines()
        .filter(|l| l.starts_with("gwcore_streams_total{") && l.contains(&want))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

#[tokio::test]
async fn a_port_without_a_route_drops_datagrams_and_a_route_added_later_serves() {
    let (a, b) = (udp_echo("a").await, udp_echo("b").await);
    let snap = snapshot(&a, &b, "a");
    let route = snap
        .keys()
        .find(|k| k.kind == gwcore::model::Kind::UdpRoute)
        .cloned()
        .expect("the UDPRoute");
    let without = {
        let mut s = snap.clone();
        s.remove(&route);
        s
    };
    let mut rt = Runtime::from_snapshot(without, options()).await.unwrap();
    let gateway = rt.local_addr(PORT).expect("the UDP port is served");
    let c = client(gateway).await;
    c.send(b"lost").await.unwrap();
    let mut buf = [0u8; 64];
    assert!(
        tokio::time::timeout(Duration::from_millis(300), c.recv(&mut buf))
            .await
            .is_err(),
        "no route, no reply"
    );
    assert_eq!(rt.apply(snap.clone()).await, ReloadOutcome::Applied);
    // The same client: it had no session, so the new route serves it.
    c.send(b"found").await.unwrap();
    let (backend, _, payload) = reply(&c).await;
    assert_eq!((backend.as_str(), payload.as_str()), ("a", "found"));
    assert_eq!(streams(&rt, "refused"), 1, "the lost datagram is counted");
}
