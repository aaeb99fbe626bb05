//! The PROXY protocol over real sockets: a client standing for a TCP load
//! balancer writes a v1 or v2 header, then speaks HTTP, TLS or raw TCP;
//! the address in the header is the client's (X-Forwarded-For, the access
//! log, plug-ins' `client`, the trusted-proxies decision). Without a valid
//! header such a port closes the connection; other ports are unaffected.

mod common;

use common::certs::{Cert, tls_backend};

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use bytes::Bytes;
use gwcore::extension::{ExtensionKind, PolicyContext, PolicyKind, PolicyValue, Refused};
use gwcore::model::Object;
use gwcore_proxy::echo::Echoed;
use gwcore_proxy::limits::Limits;
use gwcore_proxy::plugin::{BoxFuture, Plugins, PolicyPlugin, PolicyRequest, Verdict};
use gwcore_proxy::provider::Runtime;
use gwcore_proxy::server::ServeOptions;
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use ppp::v2;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The load balancer's view: the client it names and the address it was
/// reached at.
const CLIENT_V4: &str = "203.0.113.7:56324";
const CLIENT_V6: &str = "[2001:db8::7]:4000";
const FRONT: &str = "192.0.2.1:443";

/// A v1 header naming `client`.
fn v1(client: &str) -> Vec<u8> {
    let client: SocketAddr = client.parse().unwrap();
    let front: SocketAddr = if client.is_ipv4() {
        FRONT.parse().unwrap()
    } else {
        "[2001:db8::1]:443".parse().unwrap()
    };
    ppp::v1::Addresses::from((client, front))
        .to_string()
        .into_bytes()
}

/// A v2 PROXY header naming `client`, with a TLV the gateway must skip.
fn v2(client: &str) -> Vec<u8> {
    let client: SocketAddr = client.parse().unwrap();
    let front: SocketAddr = if client.is_ipv4() {
        FRONT.parse().unwrap()
    } else {
        "[2001:db8::1]:443".parse().unwrap()
    };
    v2::Builder::with_addresses(
        v2::Version::Two | v2::Command::Proxy,
        v2::Protocol::Stream,
        (client, front),
    )
    .write_tlv(0xea_u8, b"vpce-0123456789")
    .unwrap()
    .build()
    .unwrap()
}

/// A v2 LOCAL header: the balancer's own health check.
fn v2_local() -> Vec<u8> {
    v2::Builder::new(v2::Version::Two | v2::Command::Local, 0)
        .build()
        .unwrap()
}

/// A TCP backend that echoes what it reads, and keeps everything it read.
async fn tcp_echo(seen: Arc<Mutex<Vec<u8>>>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        break;
                    }
                    seen.lock().unwrap().extend_from_slice(&buf[..n]);
                    if s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A policy kind whose plug-in writes the `client` it is given into a
/// request header, as a rate limiter would key on it.
mod client_key {
    use super::*;

    pub(crate) const KIND: ExtensionKind = ExtensionKind::new("example.com/v1", "ClientKey");

    #[derive(Debug)]
    pub(crate) struct ClientKey;

    impl PolicyKind for ClientKey {
        fn kind(&self) -> ExtensionKind {
            KIND
        }
        fn parse(&self, _: &Object, _: &mut PolicyContext<'_>) -> Result<PolicyValue, Refused> {
            Ok(PolicyValue::new(()))
        }
    }

    impl PolicyPlugin for ClientKey {
        fn kind(&self) -> ExtensionKind {
            KIND
        }
        fn on_request<'a>(&'a self, request: PolicyRequest<'a>) -> BoxFuture<'a, Verdict> {
            Box::pin(async move {
                let key = http::HeaderValue::try_from(request.client.to_string()).unwrap();
                request.head.headers.insert("x-client-key", key);
                Verdict::Continue
            })
        }
    }
}

/// The test's Gateway: HTTP on 80 and 8080, HTTPS on 443, TLS passthrough
/// on 8443, TCP on 9000; echo backends for the HTTP routes, `tls` and
/// `tcp` for the others. Every request gets the ClientKey policy.
fn manifest(cert: &Cert, tls: SocketAddr, tcp: SocketAddr) -> String {
    [
        r#"apiVersion: gateway.networking.k8s.io/v1
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
  - {name: http, port: 80, protocol: HTTP}
  - {name: plain, port: 8080, protocol: HTTP}
  - {name: https, port: 443, protocol: HTTPS, hostname: a.example, tls: {certificateRefs: [{name: cert-a}]}}
  - {name: pass, port: 8443, protocol: TLS, hostname: pass.example, tls: {mode: Passthrough}, allowedRoutes: {kinds: [{kind: TLSRoute}]}}
  - {name: tcp, port: 9000, protocol: TCP, allowedRoutes: {kinds: [{kind: TCPRoute}]}}
---
apiVersion: v1
kind: Service
metadata: {name: app, namespace: default}
spec: {ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: app, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: http}, {name: gw, sectionName: plain}, {name: gw, sectionName: https}]
  rules: [{backendRefs: [{name: app, port: 80}]}]
---
apiVersion: example.com/v1
kind: ClientKey
metadata: {name: key, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
---
apiVersion: v1
kind: Service
metadata: {name: secure, namespace: default}
spec: {ports: [{port: 443}]}
---
apiVersion: v1
kind: Service
metadata: {name: raw, namespace: default}
spec: {ports: [{port: 7}]}
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: secure, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: pass}]
  hostnames: [pass.example]
  rules: [{backendRefs: [{name: secure, port: 443}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: raw, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: tcp}]
  rules: [{backendRefs: [{name: raw, port: 7}]}]
"#
        .to_owned(),
        cert.secret("cert-a"),
        common::endpoint_slice("default", "secure", tls.port()),
        common::endpoint_slice("default", "raw", tcp.port()),
    ]
    .join("---\n")
}

/// A running gateway and what its backends saw.
struct Gateway {
    rt: Runtime,
    cert: Cert,
    /// The passthrough backend's certificate.
    pass: Cert,
    tcp_seen: Arc<Mutex<Vec<u8>>>,
    _dir: common::TempDir,
}

impl Gateway {
    /// Serves the test's Gateway with PROXY protocol on 80, 443, 8443 and
    /// 9000 (not 8080), trusting `trusted` to set proxy headers.
    async fn start(trusted: &str) -> Gateway {
        log_init();
        let cert = Cert::new(&["a.example"]);
        let pass = Cert::new(&["pass.example"]);
        let tcp_seen = Arc::new(Mutex::new(Vec::new()));
        let tls = tls_backend(&pass).await;
        let tcp = tcp_echo(tcp_seen.clone()).await;
        let dir = common::manifest_dir("proxy-protocol", &manifest(&cert, tls, tcp));
        let plugins =
            Plugins::new().with_policy_plugin(client_key::ClientKey, client_key::ClientKey);
        let opts = {
            let mut o = common::options_on(&[80, 8080, 443, 8443, 9000], true);
            o.plugins = plugins;
            o
        };
        let serve = ServeOptions {
            limits: Limits {
                header_read_timeout: Duration::from_millis(500),
                ..Limits::default()
            },
            trusted_proxies: trusted.parse().unwrap(),
            proxy_protocol: "80,443,8443,9000".parse().unwrap(),
            ..ServeOptions::default()
        };
        let rt = Runtime::start_with(vec![dir.0.clone()], opts, serve)
            .await
            .unwrap();
        let status = rt.proxy().status_json();
        assert_eq!(
            status["certificateErrors"],
            serde_json::json!([]),
            "{status:#}"
        );
        Gateway {
            rt,
            cert,
            pass,
            tcp_seen,
            _dir: dir,
        }
    }

    fn addr(&self, port: u16) -> SocketAddr {
        self.rt.local_addr(port).expect("port served")
    }
}

/// Connects to `addr` and writes `header` first, as a load balancer does.
async fn connect_with(addr: SocketAddr, header: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(header).await.unwrap();
    s
}

/// Sends GETs for `paths` (HTTP/1.1, keep-alive) over `io`, with an
/// `X-Forwarded-For` when given; what the echo backend saw for each.
async fn get_over<S>(io: S, xff: Option<&str>, paths: &[&str]) -> Vec<Echoed>
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut out = Vec::new();
    for path in paths {
        let mut req = Request::get(*path).header("host", "a.example");
        if let Some(x) = xff {
            req = req.header("x-forwarded-for", x);
        }
        let resp = send
            .send_request(req.body(Empty::<Bytes>::new()).unwrap())
            .await
            .expect("response");
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        out.push(serde_json::from_slice(&body).unwrap());
    }
    out
}

fn xff(e: &Echoed) -> &[String] {
    &e.headers["X-Forwarded-For"]
}

/// Reads until the gateway closes the connection (at most 5 s): what it
/// sent before closing.
async fn until_closed(mut s: TcpStream) -> Vec<u8> {
    let mut got = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut got)).await;
    assert!(read.is_ok(), "the connection was not closed");
    got
}

/// The access log, shared by the tests of this binary (the subscriber is
/// global; each test looks for its own client address).
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct Sink;

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_init() {
    static INIT: Once = Once::new();
    INIT.call_once(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(|| Sink)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
}

fn access_lines(needle: &str) -> Vec<String> {
    String::from_utf8_lossy(&LOG.lock().unwrap())
        .lines()
        .filter(|l| l.contains("gwcore::access") && l.contains(needle))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn v1_and_v2_headers_name_the_client_everywhere_it_is_used() {
    let gw = Gateway::start("").await;
    let addr = gw.addr(80);

    // v1, two requests on one connection: both from the carried client
    // (an address of this test's own, for its access log lines).
    let client = "203.0.113.77:41000";
    let seen = get_over(connect_with(addr, &v1(client)).await, None, &["/a", "/b"]).await;
    for e in &seen {
        assert_eq!(xff(e), ["203.0.113.77"], "{:?}", e.headers);
        assert_eq!(e.headers["X-Client-Key"], [client], "plug-ins' client");
    }
    // v2 over IPv6, with a TLV.
    let seen = get_over(connect_with(addr, &v2(CLIENT_V6)).await, None, &["/"]).await;
    assert_eq!(xff(&seen[0]), ["2001:db8::7"]);
    assert_eq!(seen[0].headers["X-Client-Key"], [CLIENT_V6]);
    // LOCAL (health checks) and UNKNOWN: the socket's peer is the client.
    for header in [v2_local(), b"PROXY UNKNOWN\r\n".to_vec()] {
        let seen = get_over(connect_with(addr, &header).await, None, &["/"]).await;
        assert_eq!(xff(&seen[0]), ["127.0.0.1"], "{header:?}");
    }
    // HTTP/2 with prior knowledge after the header.
    let io = TokioIo::new(connect_with(addr, &v1("198.51.100.20:1000")).await);
    let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
        .await
        .unwrap();
    tokio::spawn(conn);
    let resp = send
        .send_request(
            Request::get("http://a.example/h2")
                .body(Empty::<Bytes>::new())
                .unwrap(),
        )
        .await
        .unwrap();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let e: Echoed = serde_json::from_slice(&body).unwrap();
    assert_eq!(xff(&e), ["198.51.100.20"]);

    // A port without the option is unaffected: its peer is the client,
    // and a header there is the start of a bad request.
    let plain = gw.addr(8080);
    let seen = get_over(TcpStream::connect(plain).await.unwrap(), None, &["/"]).await;
    assert_eq!(xff(&seen[0]), ["127.0.0.1"]);
    let mut bytes = v1(client);
    bytes.extend_from_slice(b"GET / HTTP/1.1\r\nhost: a.example\r\n\r\n");
    let got = until_closed(connect_with(plain, &bytes).await).await;
    let got = String::from_utf8_lossy(&got);
    assert!(got.starts_with("HTTP/1.1 400"), "{got}");

    // The access log names the carried client.
    let lines = access_lines(&format!("client={client} "));
    assert_eq!(lines.len(), 2, "{lines:#?}");
    assert!(lines.iter().all(|l| l.contains("status=200")), "{lines:#?}");
}

#[tokio::test]
async fn https_reads_the_header_before_the_tls_handshake() {
    let gw = Gateway::start("").await;
    for (header, want) in [
        (v1(CLIENT_V4), "203.0.113.7"),
        (v2(CLIENT_V6), "2001:db8::7"),
    ] {
        let tcp = connect_with(gw.addr(443), &header).await;
        let tls = tokio_rustls::TlsConnector::from(gw.cert.client_config(&[b"http/1.1"]))
            .connect(ServerName::try_from("a.example").unwrap(), tcp)
            .await
            .expect("TLS handshake after the header");
        let seen = get_over(tls, None, &["/secure"]).await;
        assert_eq!(xff(&seen[0]), [want]);
        assert_eq!(seen[0].headers["X-Forwarded-Proto"], ["https"]);
    }
}

#[tokio::test]
async fn tls_passthrough_and_tcp_listeners_work_behind_the_header() {
    let gw = Gateway::start("").await;
    // Passthrough: the header is read before the ClientHello, and not
    // passed on (the backend's TLS handshake would fail on it).
    for header in [v1(CLIENT_V4), v2(CLIENT_V6)] {
        let tcp = connect_with(gw.addr(8443), &header).await;
        let mut tls = tokio_rustls::TlsConnector::from(gw.pass.client_config(&[]))
            .connect(ServerName::try_from("pass.example").unwrap(), tcp)
            .await
            .expect("TLS handshake with the backend");
        let mut out = String::new();
        tls.read_to_string(&mut out).await.unwrap();
        assert_eq!(out, "backend saw pass.example\n");
    }
    // TCP: the backend gets the bytes after the header, not the header,
    // even when they came in the same segment.
    let mut first = v2(CLIENT_V4);
    first.extend_from_slice(b"ping\n");
    let mut s = connect_with(gw.addr(9000), &first).await;
    let mut buf = [0u8; 5];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping\n");
    drop(s);
    assert_eq!(gw.tcp_seen.lock().unwrap().as_slice(), b"ping\n");
    // The stream's access line names the carried client.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let lines = access_lines("stream forwarded");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("client=203.0.113.7:56324")
                && l.contains("route=TCPRoute default/raw")),
        "{lines:#?}"
    );
}

#[tokio::test]
async fn a_missing_or_malformed_header_closes_the_connection() {
    let gw = Gateway::start("").await;
    let request = b"GET /nope HTTP/1.1\r\nhost: a.example\r\n\r\n";
    let mut bad_version = v2(CLIENT_V4);
    bad_version[12] = 0x11;
    let mut too_long = v2(CLIENT_V4);
    too_long[14..16].copy_from_slice(&0xffff_u16.to_be_bytes());
    for (name, header) in [
        ("missing", Vec::new()),
        ("v1 garbage", b"PROXY TCP4 nonsense\r\n".to_vec()),
        (
            "v1 bad address",
            b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n".to_vec(),
        ),
        ("v2 bad version", bad_version),
        ("v2 over the size bound", too_long),
    ] {
        // HTTP: no answer at all, not even 400.
        let mut bytes = header.clone();
        bytes.extend_from_slice(request);
        let got = until_closed(connect_with(gw.addr(80), &bytes).await).await;
        assert!(got.is_empty(), "{name}: {}", String::from_utf8_lossy(&got));
        // TCP: nothing reaches the backend.
        let mut bytes = header.clone();
        bytes.extend_from_slice(b"ping\n");
        let got = until_closed(connect_with(gw.addr(9000), &bytes).await).await;
        assert!(got.is_empty(), "{name}");
        // HTTPS: no handshake.
        let tcp = connect_with(gw.addr(443), &header).await;
        let tls = tokio_rustls::TlsConnector::from(gw.cert.client_config(&[]))
            .connect(ServerName::try_from("a.example").unwrap(), tcp)
            .await;
        assert!(tls.is_err(), "{name}");
    }
    // A client that sends nothing is closed after the header read timeout.
    let start = std::time::Instant::now();
    let got = until_closed(TcpStream::connect(gw.addr(80)).await.unwrap()).await;
    assert!(got.is_empty());
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );
    assert!(
        gw.tcp_seen.lock().unwrap().is_empty(),
        "the TCP backend got bytes"
    );
    let metrics = gw.rt.proxy().metrics().render();
    assert!(
        !metrics.contains("gwcore_requests_total{"),
        "a request was answered:\n{metrics}"
    );
}

#[tokio::test]
async fn trusted_proxies_are_judged_on_the_carried_client_not_the_balancer() {
    // The carried client is trusted: its X-Forwarded-For is appended to.
    let gw = Gateway::start("203.0.113.0/24").await;
    let seen = get_over(
        connect_with(gw.addr(80), &v1(CLIENT_V4)).await,
        Some("198.51.100.9"),
        &["/"],
    )
    .await;
    assert_eq!(xff(&seen[0]), ["198.51.100.9, 203.0.113.7"]);
    drop(gw);

    // Only the balancer (the socket's peer) is trusted: what the client
    // wrote is replaced.
    let gw = Gateway::start("127.0.0.1").await;
    let seen = get_over(
        connect_with(gw.addr(80), &v1(CLIENT_V4)).await,
        Some("198.51.100.9"),
        &["/"],
    )
    .await;
    assert_eq!(xff(&seen[0]), ["203.0.113.7"]);
}
