//! HTTPS termination, TLS passthrough and TCP forwarding over real sockets.

mod common;

use common::certs::{Cert, tls_backend};

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use gwcore_proxy::echo::Echoed;
use gwcore_proxy::provider::{Runtime, RuntimeOptions};
use http::{Request, StatusCode, Version};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn cert(names: &[&str]) -> Cert {
    Cert::new(names)
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

fn secret(ns: &str, name: &str, c: &Cert) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: {ns}}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&c.pem),
        indent(&c.key_pem)
    )
}

fn client_config(trust: &CertificateDer<'static>, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(trust.clone()).unwrap();
    let provider = rustls::ClientConfig::builder().crypto_provider().clone();
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(cfg)
}

async fn tls_connect(
    addr: SocketAddr,
    sni: &str,
    trust: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(client_config(trust, alpn))
        .connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp)
        .await
}

/// Sends one GET over a fresh TLS connection; HTTP/2 when ALPN chose it.
async fn https_get(
    addr: SocketAddr,
    sni: &str,
    host: &str,
    trust: &CertificateDer<'static>,
    alpn: &[&[u8]],
) -> (StatusCode, Version, Bytes) {
    let tls = tls_connect(addr, sni, trust, alpn)
        .await
        .expect("TLS handshake");
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(tls);
    let resp = if h2 {
        let (mut send, conn) = hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
            .await
            .unwrap();
        tokio::spawn(conn);
        let req = Request::builder()
            .uri(format!("https://{host}/app"))
            .body(Empty::<Bytes>::new())
            .unwrap();
        send.send_request(req).await.unwrap()
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(io).await.unwrap();
        tokio::spawn(conn);
        let req = Request::builder()
            .uri("/app")
            .header("host", host)
            .body(Empty::<Bytes>::new())
            .unwrap();
        send.send_request(req).await.unwrap()
    };
    let status = resp.status();
    let version = resp.version();
    (
        status,
        version,
        resp.into_body().collect().await.unwrap().to_bytes(),
    )
}

fn options(ports: &[u16]) -> RuntimeOptions {
    common::options_on(ports, true)
}

#[tokio::test]
async fn https_picks_the_certificate_by_sni_negotiates_h2_and_answers_421_for_another_listeners_host()
 {
    let (a, b) = (cert(&["a.example"]), cert(&["b.example"]));
    let manifest = [
        common::GATEWAY_CLASS.to_owned(),
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: gc
  listeners:
  - {name: a, port: 443, protocol: HTTPS, hostname: a.example, tls: {certificateRefs: [{name: cert-a}]}}
  - {name: b, port: 443, protocol: HTTPS, hostname: b.example, tls: {certificateRefs: [{name: cert-b}]}}
"#
        .to_owned(),
        secret("default", "cert-a", &a),
        secret("default", "cert-b", &b),
        "apiVersion: v1\nkind: Service\nmetadata: {name: app, namespace: default}\nspec: {ports: [{port: 80}]}\n".to_owned(),
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: app, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules: [{backendRefs: [{name: app, port: 80}]}]
"#
        .to_owned(),
    ]
    .join("---\n");
    let dir = common::manifest_dir("tls", &manifest);
    let rt = Runtime::start(vec![dir.0.clone()], options(&[443]))
        .await
        .unwrap();
    let addr = rt.local_addr(443).expect("443 is served");
    let status = rt.proxy().status_json();
    assert_eq!(
        status["certificateErrors"],
        serde_json::json!([]),
        "{status:#}"
    );

    // Each listener's certificate is the one offered for its SNI.
    let (s, v, body) = https_get(addr, "a.example", "a.example", &a.der, &[b"http/1.1"]).await;
    assert_eq!((s, v), (StatusCode::OK, Version::HTTP_11));
    let e: Echoed = serde_json::from_slice(&body).unwrap();
    assert_eq!(e.headers["X-Forwarded-Proto"], ["https"]);
    assert_eq!(e.path, "/app");
    assert!(
        tls_connect(addr, "b.example", &a.der, &[]).await.is_err(),
        "b.example is not served with a's certificate"
    );
    let (s, _, _) = https_get(addr, "b.example", "b.example", &b.der, &[]).await;
    assert_eq!(s, StatusCode::OK);

    // ALPN h2.
    let (s, v, body) = https_get(
        addr,
        "a.example",
        "a.example",
        &a.der,
        &[b"h2", b"http/1.1"],
    )
    .await;
    assert_eq!((s, v), (StatusCode::OK, Version::HTTP_2));
    let e: Echoed = serde_json::from_slice(&body).unwrap();
    assert_eq!(e.host, "a.example");

    // A connection made for a.example asking for b.example's host.
    let (s, _, _) = https_get(addr, "a.example", "b.example", &a.der, &[]).await;
    assert_eq!(s, StatusCode::MISDIRECTED_REQUEST);
}

/// A TCP server that echoes what it reads.
async fn tcp_echo() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = l.accept().await.unwrap();
            tokio::spawn(async move {
                let (mut r, mut w) = s.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn tls_routes_pass_through_or_terminate_and_tcp_routes_forward_bytes() {
    let pass = cert(&["pass.example"]);
    let term = cert(&["term.example"]);
    let tls_addr = tls_backend(&pass).await;
    let tcp_addr = tcp_echo().await;
    let manifest = [
        common::GATEWAY_CLASS.to_owned(),
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: gc
  listeners:
  - {name: tls, port: 8443, protocol: TLS, hostname: "*.example", tls: {mode: Passthrough}, allowedRoutes: {kinds: [{kind: TLSRoute}]}}
  - {name: tcp, port: 9000, protocol: TCP, allowedRoutes: {kinds: [{kind: TCPRoute}]}}
  - {name: term, port: 8444, protocol: TLS, hostname: term.example, tls: {mode: Terminate, certificateRefs: [{name: cert-term}]}, allowedRoutes: {kinds: [{kind: TLSRoute}]}}
"#
        .to_owned(),
        secret("default", "cert-term", &term),
        "apiVersion: v1\nkind: Service\nmetadata: {name: secure, namespace: default}\nspec: {ports: [{port: 443}]}\n".to_owned(),
        common::endpoint_slice("default", "secure", tls_addr.port()),
        "apiVersion: v1\nkind: Service\nmetadata: {name: raw, namespace: default}\nspec: {ports: [{port: 7}]}\n".to_owned(),
        common::endpoint_slice("default", "raw", tcp_addr.port()),
        r#"apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: secure, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: tls}]
  hostnames: [pass.example]
  rules: [{backendRefs: [{name: secure, port: 443}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: term, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: term}]
  hostnames: [term.example]
  rules: [{backendRefs: [{name: raw, port: 7}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: raw, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: tcp}]
  rules: [{backendRefs: [{name: raw, port: 7}]}]
"#
        .to_owned(),
    ]
    .join("---\n");
    let dir = common::manifest_dir("l4", &manifest);
    let rt = Runtime::start(vec![dir.0.clone()], options(&[8443, 8444, 9000]))
        .await
        .unwrap();
    let tls_port = rt.local_addr(8443).expect("8443 is served");
    let tcp_port = rt.local_addr(9000).expect("9000 is served");

    // The client's TLS session ends at the backend: it trusts only the
    // backend's certificate, and the backend saw the client's SNI.
    let mut s = tls_connect(tls_port, "pass.example", &pass.der, &[])
        .await
        .expect("handshake with the backend");
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    assert_eq!(out, "backend saw pass.example\n");

    // No TLSRoute for this name: the connection is closed.
    assert!(
        tls_connect(tls_port, "other.example", &pass.der, &[])
            .await
            .is_err()
    );

    // Terminate mode: the gateway's certificate, plain bytes to the backend.
    let term_port = rt.local_addr(8444).expect("8444 is served");
    let mut s = tls_connect(term_port, "term.example", &term.der, &[])
        .await
        .expect("handshake with the gateway");
    s.write_all(b"hello\n").await.unwrap();
    let mut buf = [0u8; 6];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"hello\n", "echoed by the plain TCP backend");

    let mut t = TcpStream::connect(tcp_port).await.unwrap();
    t.write_all(b"ping\n").await.unwrap();
    let mut buf = [0u8; 5];
    t.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"ping\n");

    let metrics = rt.proxy().metrics().render();
    for line in [
        r#"gwcore_streams_total{gateway="default/gw",route="TLSRoute default/secure",backend="default/secure:443",result="forwarded"} 1"#,
        r#"gwcore_streams_total{gateway="default/gw",route="",backend="",result="refused"} 1"#,
        r#"gwcore_streams_total{gateway="default/gw",route="TLSRoute default/term",backend="default/raw:7",result="forwarded"} 1"#,
        r#"gwcore_streams_total{gateway="default/gw",route="TCPRoute default/raw",backend="default/raw:7",result="forwarded"} 1"#,
    ] {
        assert!(metrics.contains(line), "{line} missing from\n{metrics}");
    }
}

/// Reads one line.
async fn line<S: tokio::io::AsyncRead + Unpin>(r: &mut tokio::io::BufReader<S>) -> String {
    use tokio::io::AsyncBufReadExt;
    let mut l = String::new();
    r.read_line(&mut l).await.unwrap();
    l.trim_end().to_owned()
}

#[tokio::test]
async fn tcp_echo_backends_answer_the_conformance_protocol_through_the_proxy() {
    use gwcore_proxy::echo::EchoIdentity;
    use gwcore_proxy::tcp_echo::{TcpEchoServer, TcpEchoed, tls_config};
    let abc = cert(&["abc.example.com"]);
    let key = {
        let der = PrivateKeyDer::from_pem_slice(abc.key_pem.as_bytes()).unwrap();
        let signer = rustls::crypto::ring::sign::any_supported_type(&der).unwrap();
        rustls::sign::CertifiedKey::new(vec![abc.der.clone()], signer)
    };
    let id = EchoIdentity::new("infra", "tcp-backend", 0);
    let bind = "127.0.0.1:0".parse().unwrap();
    let plain = TcpEchoServer::start(id.clone(), bind, None).await.unwrap();
    let tls = TcpEchoServer::start(id, bind, Some(tls_config(key).unwrap()))
        .await
        .unwrap();
    let manifest = [
        common::GATEWAY_CLASS.to_owned(),
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: gc
  listeners:
  - {name: tls, port: 443, protocol: TLS, tls: {mode: Passthrough}, allowedRoutes: {kinds: [{kind: TLSRoute}]}}
  - {name: tcp, port: 9300, protocol: TCP, allowedRoutes: {kinds: [{kind: TCPRoute}]}}
---
apiVersion: v1
kind: Service
metadata: {name: tcp-backend, namespace: infra}
spec: {ports: [{name: plain, port: 3000}, {name: tls, port: 8443}]}
"#
        .to_owned(),
        format!(
            "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: a, namespace: infra, labels: {{kubernetes.io/service-name: tcp-backend}}}}\naddressType: IPv4\nports: [{{name: plain, port: {}}}]\nendpoints: [{{addresses: [127.0.0.1]}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: b, namespace: infra, labels: {{kubernetes.io/service-name: tcp-backend}}}}\naddressType: IPv4\nports: [{{name: tls, port: {}}}]\nendpoints: [{{addresses: [127.0.0.1]}}]\n",
            plain.addr().port(),
            tls.addr().port()
        ),
        r#"apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TLSRoute
metadata: {name: t, namespace: infra}
spec:
  parentRefs: [{name: gw, sectionName: tls}]
  hostnames: [abc.example.com]
  rules: [{backendRefs: [{name: tcp-backend, port: 8443}]}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {name: p, namespace: infra}
spec:
  parentRefs: [{name: gw, sectionName: tcp}]
  rules: [{backendRefs: [{name: tcp-backend, port: 3000}]}]
"#
        .to_owned(),
    ]
    .join("---\n");
    let dir = common::manifest_dir("tcpecho", &manifest);
    let rt = Runtime::start(vec![dir.0.clone()], options(&[443, 9300]))
        .await
        .unwrap();

    let s = tls_connect(
        rt.local_addr(443).unwrap(),
        "abc.example.com",
        &abc.der,
        &[],
    )
    .await
    .expect("TLS through to the backend");
    let mut s = tokio::io::BufReader::new(s);
    assert_eq!(line(&mut s).await, "HELLO tcp-backend-echo-0 infra");
    s.get_mut().write_all(b"IS_TLS\nTEST\n").await.unwrap();
    assert_eq!(line(&mut s).await, "true");
    let e: TcpEchoed = serde_json::from_str(&line(&mut s).await).unwrap();
    assert_eq!(e.sni.as_deref(), Some("abc.example.com"));
    assert!(e.tls && e.pod.starts_with("tcp-backend-"));

    let t = TcpStream::connect(rt.local_addr(9300).unwrap())
        .await
        .unwrap();
    let mut t = tokio::io::BufReader::new(t);
    assert_eq!(line(&mut t).await, "HELLO tcp-backend-echo-0 infra");
    t.get_mut()
        .write_all(b"PING\nIS_TLS\nhello\n")
        .await
        .unwrap();
    assert_eq!(line(&mut t).await, "PONG");
    assert_eq!(line(&mut t).await, "false");
    assert_eq!(line(&mut t).await, "hello");
}
