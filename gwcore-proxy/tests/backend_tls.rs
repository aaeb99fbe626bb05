//! TLS from the proxy to backends (BackendTLSPolicy), over real sockets: a
//! rustls backend with a certificate of a test CA.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use gwcore_proxy::provider::Runtime;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::TcpListener;

/// A CA and a server certificate it issued for `abc.example.com` and
/// `spiffe://abc.example.com/test-identity`.
struct Pki {
    ca_pem: String,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn ca() -> (rcgen::Certificate, rcgen::KeyPair) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "test CA");
    let key = rcgen::KeyPair::generate().unwrap();
    (params.self_signed(&key).unwrap(), key)
}

fn pki() -> Pki {
    let (ca, ca_key) = ca();
    let mut params = rcgen::CertificateParams::new(vec!["abc.example.com".to_owned()]).unwrap();
    params.subject_alt_names.push(rcgen::SanType::URI(
        "spiffe://abc.example.com/test-identity".try_into().unwrap(),
    ));
    let key = rcgen::KeyPair::generate().unwrap();
    let leaf = params.signed_by(&key, &ca, &ca_key).unwrap();
    Pki {
        ca_pem: ca.pem(),
        chain: vec![leaf.der().clone()],
        key: PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
    }
}

/// A TLS backend answering every request with the SNI and ALPN it saw;
/// counts the TCP connections it accepted.
struct Backend {
    addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    /// The first byte of each connection.
    first_bytes: Arc<Mutex<Vec<u8>>>,
}

/// Serves one backend connection (HTTP/1.1, or HTTP/2 when negotiated),
/// answering every request with `answer`.
async fn answer_every_request<S>(io: S, answer: String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let svc = hyper::service::service_fn(move |_req: Request<hyper::body::Incoming>| {
        let body = answer.clone();
        async move { Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from(body)))) }
    });
    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
        .serve_connection(TokioIo::new(io), svc)
        .await;
}

async fn backend(pki: &Pki) -> Backend {
    let provider = rustls::ClientConfig::builder().crypto_provider().clone();
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(pki.chain.clone(), pki.key.clone_key())
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let first_bytes = Arc::new(Mutex::new(Vec::new()));
    let (count, seen) = (accepted.clone(), first_bytes.clone());
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            count.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            let seen = seen.clone();
            tokio::spawn(async move {
                let mut first = [0u8; 1];
                if tcp.peek(&mut first).await.unwrap_or(0) == 1 {
                    seen.lock().unwrap().push(first[0]);
                }
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let sni = tls.get_ref().1.server_name().map(str::to_owned);
                let alpn = tls
                    .get_ref()
                    .1
                    .alpn_protocol()
                    .map(|p| String::from_utf8_lossy(p).into_owned());
                let answer = format!(
                    "tls sni={} alpn={}",
                    sni.unwrap_or_default(),
                    alpn.unwrap_or_default()
                );
                answer_every_request(tls, answer).await;
            });
        }
    });
    Backend {
        addr,
        accepted,
        first_bytes,
    }
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

fn ca_config_map(name: &str, pem: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: default}}\ndata:\n  ca.crt: |\n{}",
        indent(pem)
    )
}

/// A Service `name` whose endpoint is `addr`, a rule sending `/name` to
/// it, and a BackendTLSPolicy on it with `validation`.
fn tls_service(name: &str, addr: SocketAddr, validation: &str) -> String {
    let port = addr.port();
    format!(
        r#"apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec: {{ports: [{{port: 443}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{port: {port}}}]
endpoints: [{{addresses: [127.0.0.1]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules: [{{matches: [{{path: {{type: PathPrefix, value: /{name}}}}}], backendRefs: [{{name: {name}, port: 443}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: BackendTLSPolicy
metadata: {{name: {name}, namespace: default}}
spec:
  targetRefs: [{{group: "", kind: Service, name: {name}}}]
  validation: {validation}
"#
    )
}

#[tokio::test]
async fn backends_with_a_policy_are_reached_over_verified_tls() {
    let good = pki();
    let (other_ca, _) = ca();
    let shared = backend(&good).await;
    let lonely = backend(&good).await;
    let manifest = [
        common::HTTP_GATEWAY.to_owned(),
        ca_config_map("ca", &good.ca_pem),
        ca_config_map("other-ca", &other_ca.pem()),
        tls_service(
            "right",
            shared.addr,
            "{caCertificateRefs: [{group: \"\", kind: ConfigMap, name: ca}], hostname: abc.example.com}",
        ),
        // The same address, the connection of `right` pooled: it must not
        // be reused for another policy.
        tls_service(
            "wrong-ca",
            shared.addr,
            "{caCertificateRefs: [{group: \"\", kind: ConfigMap, name: other-ca}], hostname: abc.example.com}",
        ),
        tls_service(
            "wrong-host",
            shared.addr,
            "{caCertificateRefs: [{group: \"\", kind: ConfigMap, name: ca}], hostname: abc.example.org}",
        ),
        tls_service(
            "san-uri",
            shared.addr,
            "{caCertificateRefs: [{group: \"\", kind: ConfigMap, name: ca}], hostname: other.example.com, subjectAltNames: [{type: Hostname, hostname: nope.example.com}, {type: URI, uri: \"spiffe://abc.example.com/test-identity\"}]}",
        ),
        tls_service(
            "san-dns",
            shared.addr,
            "{caCertificateRefs: [{group: \"\", kind: ConfigMap, name: ca}], hostname: other.example.com, subjectAltNames: [{type: Hostname, hostname: abc.example.com}]}",
        ),
        tls_service(
            "san-mismatch",
            shared.addr,
            "{caCertificateRefs: [{group: \"\", kind: ConfigMap, name: ca}], hostname: abc.example.com, subjectAltNames: [{type: Hostname, hostname: nope.example.com}, {type: URI, uri: \"spiffe://abc.example.com/other\"}]}",
        ),
        tls_service(
            "san-uri-other-ca",
            shared.addr,
            "{caCertificateRefs: [{group: \"\", kind: ConfigMap, name: other-ca}], hostname: abc.example.com, subjectAltNames: [{type: URI, uri: \"spiffe://abc.example.com/test-identity\"}]}",
        ),
        // HTTP/2 to the backend (appProtocol h2c): over TLS, ALPN h2.
        tls_service(
            "h2",
            shared.addr,
            "{caCertificateRefs: [{group: \"\", kind: ConfigMap, name: ca}], hostname: abc.example.com}",
        )
        .replace(
            "spec: {ports: [{port: 443}]}",
            "spec: {ports: [{port: 443, appProtocol: kubernetes.io/h2c}]}",
        ),
        tls_service(
            "invalid",
            lonely.addr,
            "{caCertificateRefs: [{group: \"\", kind: ConfigMap, name: missing}], hostname: abc.example.com}",
        ),
    ]
    .join("---\n");
    let dir = common::TempDir::new("backend-tls");
    std::fs::write(dir.0.join("gw.yaml"), manifest).unwrap();
    let rt = Runtime::start(vec![dir.0.clone()], common::options(false))
        .await
        .unwrap();
    let addr = rt.local_addr(80).unwrap();
    let client = common::client();
    let get = |path: &'static str| {
        let client = client.clone();
        async move { common::get(&client, addr, "example.com", path).await }
    };

    // The right CA and hostname: the backend saw the policy's hostname as
    // SNI and ALPN http/1.1.
    let (s, _, body) = get("/right").await;
    assert_eq!(s, StatusCode::OK, "{body:?}");
    assert_eq!(body, "tls sni=abc.example.com alpn=http/1.1");
    let (s, _, _) = get("/right").await;
    assert_eq!(s, StatusCode::OK);

    // A certificate the policy's CA did not issue, or not for its
    // hostname: refused, never answered by the backend nor sent in plain
    // text.
    for path in [
        "/wrong-ca",
        "/wrong-host",
        "/san-mismatch",
        "/san-uri-other-ca",
    ] {
        let (s, _, body) = get(path).await;
        assert!(
            s == StatusCode::BAD_GATEWAY || s == StatusCode::SERVICE_UNAVAILABLE,
            "{path}: {s} {body:?}"
        );
        assert!(!body.starts_with(b"tls "), "{path}: {body:?}");
    }

    // subjectAltNames replace the hostname for verification (any one of
    // them, a URI as well as a DNS name); the hostname stays the SNI.
    for path in ["/san-uri", "/san-dns"] {
        let (s, _, body) = get(path).await;
        assert_eq!(s, StatusCode::OK, "{path}: {body:?}");
        assert_eq!(body, "tls sni=other.example.com alpn=http/1.1", "{path}");
    }

    let (s, _, body) = get("/h2").await;
    assert_eq!(s, StatusCode::OK, "{body:?}");
    assert_eq!(body, "tls sni=abc.example.com alpn=h2");

    // An invalid policy: 5xx, and the backend is not contacted at all.
    let (s, _, _) = get("/invalid").await;
    assert!(s.is_server_error(), "{s}");
    assert_eq!(lonely.accepted.load(Ordering::SeqCst), 0);

    // Every connection the shared backend accepted began with a TLS
    // handshake record (0x16): none was plain text.
    let first = shared.first_bytes.lock().unwrap().clone();
    assert!(!first.is_empty());
    assert!(first.iter().all(|b| *b == 0x16), "{first:?}");
}

/// A backend that asks for a client certificate of `client_ca` and
/// answers with the subject of the one it got.
async fn mtls_backend(pki: &Pki, client_ca: &rcgen::Certificate) -> SocketAddr {
    let provider = rustls::ClientConfig::builder().crypto_provider().clone();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(client_ca.der().clone()).unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_client_cert_verifier(verifier)
        .with_single_cert(pki.chain.clone(), pki.key.clone_key())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let certs = tls.get_ref().1.peer_certificates().map_or(0, <[_]>::len);
                let answer = format!("client certificates={certs}");
                answer_every_request(tls, answer).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn the_gateways_backend_client_certificate_is_presented_to_backends_that_ask() {
    let server = pki();
    let (client_ca, client_ca_key) = ca();
    let client_key = rcgen::KeyPair::generate().unwrap();
    let client = rcgen::CertificateParams::new(vec!["gateway.example".to_owned()])
        .unwrap()
        .signed_by(&client_key, &client_ca, &client_ca_key)
        .unwrap();
    let backend = mtls_backend(&server, &client_ca).await;
    let policy = "{caCertificateRefs: [{group: \"\", kind: ConfigMap, name: ca}], hostname: abc.example.com}";
    let gateway = |client_certificate: bool| {
        let tls = if client_certificate {
            "  tls: {backend: {clientCertificateRef: {group: \"\", kind: Secret, name: client}}}\n"
        } else {
            ""
        };
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: gc}}\nspec: {{controllerName: {}}}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: default}}\nspec:\n  gatewayClassName: gc\n  listeners: [{{name: http, port: 80, protocol: HTTP}}]\n{tls}",
            common::CONTROLLER
        )
    };
    let client_secret = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: client, namespace: default}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&client.pem()),
        indent(&client_key.serialize_pem())
    );
    let manifest = |client_certificate: bool| {
        [
            gateway(client_certificate),
            ca_config_map("ca", &server.ca_pem),
            client_secret.clone(),
            tls_service("mtls", backend, policy),
        ]
        .join("---\n")
    };
    let dir = common::TempDir::new("backend-mtls");
    let file = dir.0.join("gw.yaml");
    std::fs::write(&file, manifest(true)).unwrap();
    let mut rt = Runtime::start(vec![dir.0.clone()], common::options(false))
        .await
        .unwrap();
    let addr = rt.local_addr(80).unwrap();
    let http = common::client();
    let (s, _, body) = common::get(&http, addr, "example.com", "/mtls").await;
    assert_eq!(s, StatusCode::OK, "{body:?}");
    assert_eq!(body, "client certificates=1");

    // Without the Gateway's certificate the backend refuses the handshake.
    common::write_file(&file, &manifest(false));
    assert_eq!(
        rt.reload().await,
        gwcore_proxy::metrics::ReloadOutcome::Applied
    );
    let (s, _, body) = common::get(&http, addr, "example.com", "/mtls").await;
    assert!(s.is_server_error(), "{s} {body:?}");
}
