//! The clients of wire mode: HTTP/1.1, HTTP/2 (over TLS by ALPN, or h2c
//! with prior knowledge), gRPC, TCP echo, TLS handshakes and WebSocket, each
//! on a fresh connection to the proxy.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// How long one exchange may take: longer than any delay or timeout a
/// vector asks the backend for.
pub(crate) const EXCHANGE_TIMEOUT: Duration = Duration::from_secs(15);

/// How long a TCP echo exchange may take: the echo answers at once.
const TCP_TIMEOUT: Duration = Duration::from_secs(5);

/// Which HTTP the client speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Proto {
    /// HTTP/1.1.
    H1,
    /// HTTP/2: over TLS by ALPN, or cleartext with prior knowledge.
    H2,
}

/// TLS towards the proxy.
#[derive(Clone)]
pub(crate) struct Tls {
    /// The SNI sent.
    pub(crate) server_name: String,
    /// Roots trusted; empty = any certificate is accepted (the vector
    /// names no trust: only routing is judged).
    pub(crate) roots: Vec<CertificateDer<'static>>,
    /// The client certificate offered when the proxy asks: PEM chain and
    /// key.
    pub(crate) client_cert: Option<ClientCert>,
}

/// A client certificate: PEM chain and PEM key.
pub(crate) type ClientCert = (Vec<u8>, Vec<u8>);

/// Where and how to connect.
#[derive(Clone)]
pub(crate) struct Target {
    /// The proxy's socket for the Gateway port.
    pub(crate) addr: SocketAddr,
    /// TLS, when the vector asks for it.
    pub(crate) tls: Option<Tls>,
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) headers: HeaderMap,
    pub(crate) body: Bytes,
    pub(crate) trailers: HeaderMap,
}

/// Any byte stream the clients run over.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Accepts any server certificate: for vectors that name no trust.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Verifies chains with webpki, and names as Go's `crypto/x509` does, as
/// the upstream suite's client does: a wildcard stands for exactly one
/// leftmost label, whatever follows (`*.org` covers `example.org`, which
/// webpki refuses as too broad). The trust certificates of the vectors rely
/// on it.
#[derive(Debug)]
struct GoNames {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    /// The trust bundle itself: Go trusts a certificate found in it as is.
    roots: Vec<CertificateDer<'static>>,
}

impl GoNames {
    /// Go's `x509.Certificate.Verify` takes a leaf that is itself in the
    /// root pool as a chain of one (whatever signed it, CA or not); webpki
    /// only builds chains up to an anchor's subject, so it refuses such a
    /// leaf. Upstream's suite trusts a listener's or backend's own
    /// certificate this way (`tls.trustSecret`). The name is still checked
    /// (Go's rules); the validity period is not (the suite's certificates
    /// are made when it runs).
    fn trusted_as_root(
        &self,
        end_entity: &CertificateDer<'_>,
        server_name: &ServerName<'_>,
    ) -> bool {
        if !self.roots.iter().any(|r| r.as_ref() == end_entity.as_ref()) {
            return false;
        }
        let Ok(cert) = webpki::EndEntityCert::try_from(end_entity) else {
            return false;
        };
        match cert.verify_is_valid_for_subject_name(server_name) {
            Ok(()) => true,
            Err(webpki::Error::CertNotValidForName(cx)) => match server_name {
                ServerName::DnsName(host) => cx
                    .presented
                    .iter()
                    .any(|p| go_name_matches(p, host.as_ref())),
                _ => false,
            },
            Err(_) => false,
        }
    }
}

/// Go's hostname match: same number of labels, each equal, the first may be
/// `*`.
fn go_name_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    let p: Vec<&str> = pattern.split('.').collect();
    let h: Vec<&str> = host.split('.').collect();
    p.len() == h.len()
        && p.iter()
            .zip(&h)
            .enumerate()
            .all(|(i, (p, h))| p == h || (i == 0 && *p == "*"))
}

impl rustls::client::danger::ServerCertVerifier for GoNames {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            // webpki checks the name after the chain: this error means the
            // chain is trusted. `presented` lists the names as
            // `DnsName("…")`.
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext {
                    expected: ServerName::DnsName(host),
                    presented,
                },
            )) if presented.iter().any(|p| {
                p.strip_prefix("DnsName(\"")
                    .and_then(|p| p.strip_suffix("\")"))
                    .is_some_and(|p| go_name_matches(p, host.as_ref()))
            }) =>
            {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            Err(_) if self.trusted_as_root(end_entity, server_name) => {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            other => other,
        }
    }
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }
    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::go_name_matches;

    /// A leaf signed by a CA the client does not know, the leaf itself in
    /// the trust bundle: trusted (as Go trusts it) for its own names only;
    /// another leaf of the same CA is not.
    #[test]
    fn a_leaf_in_the_trust_bundle_is_trusted_as_go_trusts_it() {
        use rustls::pki_types::{ServerName, UnixTime};

        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca.self_signed(&ca_key).unwrap();
        let leaf = |name: &str| {
            let key = rcgen::KeyPair::generate().unwrap();
            rcgen::CertificateParams::new(vec![name.to_string()])
                .unwrap()
                .signed_by(&key, &ca, &ca_key)
                .unwrap()
        };
        let trusted = leaf("example.org");
        let other = leaf("example.org");
        let tls = super::Tls {
            server_name: "example.org".into(),
            roots: vec![trusted.der().clone()],
            client_cert: None,
        };
        let verifier = super::server_verifier(
            &tls,
            rustls::ClientConfig::builder().crypto_provider().clone(),
        )
        .unwrap();
        let check = |cert: &rcgen::Certificate, name: &str| {
            verifier
                .verify_server_cert(
                    cert.der(),
                    &[],
                    &ServerName::try_from(name.to_string()).unwrap(),
                    &[],
                    UnixTime::now(),
                )
                .is_ok()
        };
        assert!(check(&trusted, "example.org"));
        assert!(!check(&trusted, "second-example.org"), "names still count");
        assert!(!check(&other, "example.org"), "only the leaf in the bundle");
    }

    #[test]
    fn wildcards_cover_one_leftmost_label_as_in_go() {
        assert!(go_name_matches("*.org", "example.org"));
        assert!(go_name_matches("*.wildcard.org", "a.wildcard.org"));
        assert!(go_name_matches("Example.ORG", "example.org."));
        assert!(
            !go_name_matches("*", "example.org"),
            "labels must be as many"
        );
        assert!(!go_name_matches("*.org", "a.b.org"));
        assert!(
            !go_name_matches("a.*.org", "a.b.org"),
            "only the first label"
        );
    }
}

/// PEM certificates of a trust bundle.
pub(crate) fn pem_certs(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("trust bundle: {e}"))
}

/// How the client checks the proxy's certificate: not at all when the
/// vector names no trust, else as Go's client does.
fn server_verifier(
    tls: &Tls,
    provider: Arc<rustls::crypto::CryptoProvider>,
) -> Result<Arc<dyn rustls::client::danger::ServerCertVerifier>, String> {
    if tls.roots.is_empty() {
        return Ok(Arc::new(AnyCert(provider)));
    }
    let mut roots = rustls::RootCertStore::empty();
    for c in &tls.roots {
        roots
            .add(c.clone())
            .map_err(|e| format!("trust bundle: {e}"))?;
    }
    let webpki =
        rustls::client::WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| format!("trust bundle: {e}"))?;
    Ok(Arc::new(GoNames {
        webpki,
        roots: tls.roots.clone(),
    }))
}

fn client_config(tls: &Tls, alpn: &[&[u8]]) -> Result<rustls::ClientConfig, String> {
    let provider = rustls::ClientConfig::builder().crypto_provider().clone();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let verifier = server_verifier(tls, provider)?;
    let builder = builder
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut cfg = match &tls.client_cert {
        None => builder.with_no_client_auth(),
        Some((crt, key)) => {
            let chain = pem_certs(crt)?;
            let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(key)
                .map_err(|e| format!("client key: {e}"))?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| format!("client certificate: {e}"))?
        }
    };
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(cfg)
}

/// The TLS handshake with the proxy; returns the stream and the ALPN
/// protocol chosen.
async fn handshake(
    tcp: TcpStream,
    tls: &Tls,
    alpn: &[&[u8]],
) -> Result<(tokio_rustls::client::TlsStream<TcpStream>, Option<Vec<u8>>), String> {
    let cfg = client_config(tls, alpn)?;
    let name = ServerName::try_from(tls.server_name.clone())
        .map_err(|e| format!("server name {:?}: {e}", tls.server_name))?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(cfg))
        .connect(name, tcp)
        .await
        .map_err(|e| format!("TLS handshake: {e}"))?;
    let alpn = stream.get_ref().1.alpn_protocol().map(<[u8]>::to_vec);
    Ok((stream, alpn))
}

async fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    Ok(tcp)
}

/// Opens the connection: TCP, then TLS when asked. Returns whether HTTP/2
/// is to be spoken.
async fn open(target: &Target, proto: Proto) -> Result<(Box<dyn Io>, bool), String> {
    let tcp = connect(target.addr).await?;
    match &target.tls {
        None => Ok((Box::new(tcp), proto == Proto::H2)),
        Some(tls) => {
            let alpn: &[&[u8]] = match proto {
                Proto::H2 => &[b"h2"],
                Proto::H1 => &[b"http/1.1"],
            };
            let (stream, chosen) = handshake(tcp, tls, alpn).await?;
            let h2 = chosen.as_deref() == Some(b"h2".as_slice());
            if proto == Proto::H2 && !h2 {
                return Err("the proxy did not negotiate h2 by ALPN".to_string());
            }
            Ok((Box::new(stream), h2))
        }
    }
}

/// One HTTP request on a fresh connection. `host` is the Host header
/// (HTTP/1.1) or `:authority` (HTTP/2).
pub(crate) async fn http(
    target: &Target,
    proto: Proto,
    method: &str,
    path: &str,
    host: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Answer, String> {
    tokio::time::timeout(
        EXCHANGE_TIMEOUT,
        http_inner(target, proto, method, path, host, headers, body),
    )
    .await
    .map_err(|_| format!("no answer within {EXCHANGE_TIMEOUT:?}"))?
}

async fn http_inner(
    target: &Target,
    proto: Proto,
    method: &str,
    path: &str,
    host: &str,
    headers: &HeaderMap,
    body: Bytes,
) -> Result<Answer, String> {
    let method = Method::from_bytes(method.as_bytes()).map_err(|e| format!("method: {e}"))?;
    let (io, h2) = open(target, proto).await?;
    let scheme = if target.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let mut builder = Request::builder().method(method);
    builder = if h2 {
        builder.uri(format!("{scheme}://{host}{path}"))
    } else {
        builder.uri(path).header(http::header::HOST, host)
    };
    if let Some(h) = builder.headers_mut() {
        for (k, v) in headers {
            h.append(k.clone(), v.clone());
        }
    }
    let req = builder
        .body(Full::new(body))
        .map_err(|e| format!("request {path}: {e}"))?;
    let resp = if h2 {
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io))
                .await
                .map_err(|e| format!("HTTP/2 handshake: {e}"))?;
        tokio::spawn(conn);
        send.send_request(req).await
    } else {
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
            .await
            .map_err(|e| format!("HTTP/1.1 handshake: {e}"))?;
        tokio::spawn(conn);
        send.send_request(req).await
    }
    .map_err(|e| format!("no answer: {e}"))?;
    let (parts, body) = resp.into_parts();
    let collected = body
        .collect()
        .await
        .map_err(|e| format!("answer {} with a broken body: {e}", parts.status))?;
    let trailers = collected.trailers().cloned().unwrap_or_default();
    Ok(Answer {
        status: parts.status,
        headers: parts.headers,
        body: collected.to_bytes(),
        trailers,
    })
}

/// Headers from the vector's map.
pub(crate) fn header_map<'a>(
    pairs: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<HeaderMap, String> {
    let mut out = HeaderMap::new();
    for (k, v) in pairs {
        let n = HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("header {k}: {e}"))?;
        let v = HeaderValue::from_str(v).map_err(|e| format!("header {k}: {e}"))?;
        out.append(n, v);
    }
    Ok(out)
}

/// What the TCP echo says, and what the TLS handshake showed.
#[derive(Debug, Clone)]
pub(crate) struct TcpAnswer {
    /// The greeting line: `HELLO <pod> <namespace>`.
    pub(crate) greeting: String,
    /// The answer to `TEST`, unless only the connection was asked for.
    pub(crate) test: Option<gwcore_proxy::tcp_echo::TcpEchoed>,
}

/// Opens a TCP connection (with TLS when asked) and, unless `connect_only`,
/// reads the greeting and asks `TEST`.
pub(crate) async fn tcp(target: &Target, connect_only: bool) -> Result<TcpAnswer, String> {
    tokio::time::timeout(TCP_TIMEOUT, async {
        let tcp = connect(target.addr).await?;
        let io: Box<dyn Io> = match &target.tls {
            None => Box::new(tcp),
            Some(tls) => Box::new(handshake(tcp, tls, &[]).await?.0),
        };
        if connect_only {
            return Ok(TcpAnswer {
                greeting: String::new(),
                test: None,
            });
        }
        let (r, mut w) = tokio::io::split(io);
        let mut lines = BufReader::new(r).lines();
        let greeting = lines
            .next_line()
            .await
            .map_err(|e| format!("no greeting: {e}"))?
            .ok_or("the connection closed before the greeting")?;
        w.write_all(b"TEST\n")
            .await
            .map_err(|e| format!("TEST not sent: {e}"))?;
        let line = lines
            .next_line()
            .await
            .map_err(|e| format!("no answer to TEST: {e}"))?
            .ok_or("the connection closed before the answer to TEST")?;
        let test = serde_json::from_str(&line)
            .map_err(|e| format!("the answer to TEST is not the echo's JSON ({e}): {line}"))?;
        Ok(TcpAnswer {
            greeting,
            test: Some(test),
        })
    })
    .await
    .map_err(|_| format!("no answer within {TCP_TIMEOUT:?}"))?
}

/// A TLS handshake and nothing else.
pub(crate) async fn tls_connect(addr: SocketAddr, tls: &Tls) -> Result<(), String> {
    tokio::time::timeout(EXCHANGE_TIMEOUT, async {
        let tcp = connect(addr).await?;
        let (mut stream, _) = handshake(tcp, tls, &[]).await?;
        // rustls finishes the client's side before the server has read its
        // Finished; a refusal shows up on the first read.
        let _ = stream.flush().await;
        Ok(())
    })
    .await
    .map_err(|_| format!("no handshake within {EXCHANGE_TIMEOUT:?}"))?
}

/// A WebSocket message of a vector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WsMessage {
    Text(String),
    Binary(Vec<u8>),
}

/// Dials `ws://host/path` through the proxy with `origin`, sends each
/// message and expects it echoed back unchanged.
pub(crate) async fn websocket(
    target: &Target,
    host: &str,
    path: &str,
    origin: Option<&str>,
    messages: &[WsMessage],
) -> Result<(), String> {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    tokio::time::timeout(EXCHANGE_TIMEOUT, async {
        let (io, _) = open(target, Proto::H1).await?;
        let scheme = if target.tls.is_some() { "wss" } else { "ws" };
        let mut req = format!("{scheme}://{host}{path}")
            .into_client_request()
            .map_err(|e| format!("websocket request: {e}"))?;
        if let Some(o) = origin {
            let v = HeaderValue::from_str(o).map_err(|e| format!("origin: {e}"))?;
            req.headers_mut().insert(http::header::ORIGIN, v);
        }
        let (mut ws, _) = tokio_tungstenite::client_async(req, io)
            .await
            .map_err(|e| format!("websocket upgrade: {e}"))?;
        for m in messages {
            let sent = match m {
                WsMessage::Text(t) => Message::text(t.clone()),
                WsMessage::Binary(b) => Message::binary(b.clone()),
            };
            ws.send(sent.clone())
                .await
                .map_err(|e| format!("websocket send: {e}"))?;
            let got = loop {
                match ws.next().await {
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                    Some(Ok(m)) => break m,
                    Some(Err(e)) => return Err(format!("websocket read: {e}")),
                    None => return Err("the websocket closed before the echo".to_string()),
                }
            };
            if got != sent {
                return Err(format!("websocket echoed {got:?}, sent {sent:?}"));
            }
        }
        let _ = ws.close(None).await;
        Ok(())
    })
    .await
    .map_err(|_| format!("no websocket exchange within {EXCHANGE_TIMEOUT:?}"))?
}
