//! TLS from the proxy to backends (BackendTLSPolicy).
//!
//! A backend that a BackendTLSPolicy targets is reached over TLS: the
//! proxy connects TCP, sends the policy's `validation.hostname` as SNI,
//! and checks the backend's certificate against the policy's CA bundles
//! (or the system's CAs) and names. One client configuration is built per
//! policy and ALPN and kept with the configuration generation
//! ([`BackendTlsCache`]); connections made with it are pooled apart from
//! plain ones (see `forward.rs`).
//!
//! Spec (BackendTLSPolicyValidation `hostname`): "Hostname is used for two
//! purposes in the connection between Gateways and backends: 1. Hostname
//! MUST be used as the SNI to connect to the backend (RFC 6066). 2. If
//! SubjectAltNames is not specified, Hostname MUST be used for
//! authentication and MUST match the certificate served by the matching
//! backend."
//!
//! Spec (`subjectAltNames`): "When specified, the certificate served from
//! the backend MUST have at least one Subject Alternate Name matching one
//! of the specified SubjectAltNames."

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use gwcore::Snapshot;
use gwcore::attachments::{BackendTls, SubjectAltName};
use gwcore::model::ObjectKey;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::client::TlsStream;

/// How to open TLS to the backends of one policy: the client
/// configuration (roots, verifier, ALPN) and the SNI.
#[derive(Debug)]
pub struct BackendConnector {
    config: Arc<rustls::ClientConfig>,
    server_name: ServerName<'static>,
    /// Set when the configuration generation that built it is dropped:
    /// its pooled HTTP/2 connections are then closed.
    retired: AtomicBool,
}

impl BackendConnector {
    /// The client handshake over `stream`, with the policy's hostname as
    /// SNI; fails when the backend's certificate does not verify.
    pub async fn connect<S>(&self, stream: S) -> std::io::Result<TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        tokio_rustls::TlsConnector::from(self.config.clone())
            .connect(self.server_name.clone(), stream)
            .await
    }
}

/// Builds the connector of `tls`: `alpn` says what is offered (`None`:
/// nothing, a byte stream of a TLSRoute); `client_certificate` is the
/// Secret (`tls.crt`, `tls.key`) of the Gateway's
/// `spec.tls.backend.clientCertificateRef`, presented when the backend
/// asks for a certificate. An error says why the policy cannot be used (it
/// is invalid, its CA bundles or the certificate do not read, its hostname
/// is not a name).
pub fn connector(
    snapshot: &Snapshot,
    tls: &BackendTls,
    alpn: Option<Alpn>,
    client_certificate: Option<&ObjectKey>,
) -> Result<BackendConnector, String> {
    if let Some(why) = &tls.invalid {
        return Err(why.clone());
    }
    let mut roots =
        crate::certs::ca_roots(snapshot, &tls.ca_certificates).map_err(|e| e.to_string())?;
    if tls.system_roots {
        // Spec (`wellKnownCACertificates: System`): the platform's trust
        // store. Certificates that do not parse are skipped.
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::debug!(error = %e, "system CA certificates");
        }
        roots.add_parsable_certificates(native.certs);
    }
    if roots.is_empty() {
        return Err(format!(
            "BackendTLSPolicy {}/{}: no CA certificate to trust",
            tls.policy.namespace, tls.policy.name
        ));
    }
    let server_name = ServerName::try_from(tls.hostname.clone())
        .map_err(|e| format!("hostname {:?}: {e}", tls.hostname))?;
    let provider = crate::certs::crypto_provider();
    let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| e.to_string())?;
    let verifier: Arc<dyn ServerCertVerifier> = if tls.subject_alt_names.is_empty() {
        webpki
    } else {
        Arc::new(SanVerifier {
            inner: webpki,
            names: tls.subject_alt_names.clone(),
        })
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    // Spec (GatewayTLSConfig `backend`): "Backend describes TLS
    // configuration for gateway when connecting to backends"; its
    // `clientCertificateRef` "references an object that contains a client
    // certificate and its associated private key": presented to every
    // backend reached over TLS that asks for one.
    let mut config = match client_certificate {
        None => builder.with_no_client_auth(),
        Some(key) => {
            let certified =
                crate::certs::certified_key(snapshot, key).map_err(|e| e.to_string())?;
            builder.with_client_cert_resolver(Arc::new(ClientCertificate(Arc::new(certified))))
        }
    };
    config.alpn_protocols = match alpn {
        Some(Alpn::H2) => vec![b"h2".to_vec()],
        Some(Alpn::Http1) => vec![b"http/1.1".to_vec()],
        None => Vec::new(),
    };
    Ok(BackendConnector {
        config: Arc::new(config),
        server_name,
        retired: AtomicBool::new(false),
    })
}

/// Presents the Gateway's client certificate whatever the backend asks.
#[derive(Debug)]
struct ClientCertificate(Arc<CertifiedKey>);

impl rustls::client::ResolvesClientCert for ClientCertificate {
    fn resolve(&self, _: &[&[u8]], _: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The application protocol offered in the handshake.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Alpn {
    /// `http/1.1`.
    Http1,
    /// `h2`.
    H2,
}

/// The connectors of one configuration generation, built on first use.
#[derive(Debug, Default)]
pub struct BackendTlsCache {
    built: Mutex<HashMap<CacheKey, Built>>,
}

type CacheKey = (Arc<BackendTls>, Option<Alpn>, Option<ObjectKey>);
type Built = Result<Arc<BackendConnector>, Arc<str>>;

impl BackendTlsCache {
    /// The connector of `tls` (see [`connector`]), built once per
    /// generation; the error when the policy cannot be used.
    pub fn get(
        &self,
        snapshot: &Snapshot,
        tls: &Arc<BackendTls>,
        alpn: Option<Alpn>,
        client_certificate: Option<&ObjectKey>,
    ) -> Built {
        let key = (tls.clone(), alpn, client_certificate.cloned());
        // Held while building: a policy is built once, not by every
        // request racing for it.
        let mut built = self.built.lock().unwrap_or_else(|e| e.into_inner());
        built
            .entry(key)
            .or_insert_with(|| {
                connector(snapshot, tls, alpn, client_certificate).map(Arc::new).map_err(|e| {
                    tracing::warn!(policy = %format!("{}/{}", tls.policy.namespace, tls.policy.name), error = %e, "backend TLS cannot be used");
                    Arc::from(e)
                })
            })
            .clone()
    }
}

impl Drop for BackendTlsCache {
    fn drop(&mut self) {
        let built = self.built.get_mut().unwrap_or_else(|e| e.into_inner());
        for c in built.values().flatten() {
            c.retired.store(true, Ordering::Relaxed);
        }
    }
}

/// A key of the connection pools: whether its connections belong to a
/// configuration generation that is gone (they are then not kept).
pub(crate) trait PoolKey {
    /// Whether the connections under this key should be let go.
    fn retired(&self) -> bool;
}

impl PoolKey for SocketAddr {
    fn retired(&self) -> bool {
        false
    }
}

impl PoolKey for TlsKey {
    fn retired(&self) -> bool {
        self.connector.retired.load(Ordering::Relaxed)
    }
}

/// A pooled backend connection's key when it runs over TLS: the endpoint
/// and the connector (by identity), so that connections of different
/// policies, ALPN or generations, and plain ones, are never mixed.
#[derive(Debug, Clone)]
pub(crate) struct TlsKey {
    pub(crate) addr: SocketAddr,
    pub(crate) connector: Arc<BackendConnector>,
}

impl PartialEq for TlsKey {
    fn eq(&self, other: &Self) -> bool {
        self.addr == other.addr && Arc::ptr_eq(&self.connector, &other.connector)
    }
}

impl Eq for TlsKey {}

impl Hash for TlsKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.addr.hash(state);
        std::ptr::hash(Arc::as_ptr(&self.connector), state);
    }
}

/// Checks the chain as webpki does, then the certificate's names against
/// the policy's `subjectAltNames` instead of the hostname: any one must be
/// there, a DNS name among its DNS names, a URI among its URIs.
#[derive(Debug)]
struct SanVerifier {
    inner: Arc<WebPkiServerVerifier>,
    names: Vec<SubjectAltName>,
}

/// Whether a verification failed on the name only: webpki verifies the
/// chain (and revocation) before the name, so the chain is good.
fn name_mismatch(e: &rustls::Error) -> bool {
    matches!(
        e,
        rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }
        )
    )
}

impl ServerCertVerifier for SanVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let mut chain_ok = false;
        for name in &self.names {
            let SubjectAltName::Hostname(h) = name else {
                continue;
            };
            let Ok(n) = ServerName::try_from(h.as_str()) else {
                continue;
            };
            match self
                .inner
                .verify_server_cert(end_entity, intermediates, &n, ocsp_response, now)
            {
                Ok(v) => return Ok(v),
                Err(e) if name_mismatch(&e) => chain_ok = true,
                Err(e) => return Err(e),
            }
        }
        let uris: Vec<&str> = self
            .names
            .iter()
            .filter_map(|n| match n {
                SubjectAltName::Uri(u) => Some(u.as_str()),
                SubjectAltName::Hostname(_) => None,
            })
            .collect();
        if !uris.is_empty() {
            if !chain_ok {
                // The chain alone: a name no certificate carries.
                let probe = ServerName::from(std::net::Ipv4Addr::UNSPECIFIED);
                match self.inner.verify_server_cert(
                    end_entity,
                    intermediates,
                    &probe,
                    ocsp_response,
                    now,
                ) {
                    Ok(_) => {}
                    Err(e) if name_mismatch(&e) => {}
                    Err(e) => return Err(e),
                }
            }
            if uri_sans(end_entity)
                .iter()
                .any(|have| uris.iter().any(|want| have == want))
            {
                return Ok(ServerCertVerified::assertion());
            }
        }
        Err(rustls::Error::InvalidCertificate(
            CertificateError::NotValidForName,
        ))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// One DER element: its tag, its contents and what follows it.
fn der(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |l, b| (l << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The elements of a DER sequence's contents.
fn elements(mut contents: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (tag, value, rest) = der(contents)?;
        contents = rest;
        Some((tag, value))
    })
}

/// The URIs among a certificate's subject alternative names (RFC 5280
/// §4.2.1.6: `uniformResourceIdentifier [6] IA5String`). webpki checks
/// DNS names and IP addresses only.
fn uri_sans(cert: &[u8]) -> Vec<String> {
    const SAN_OID: &[u8] = &[0x55, 0x1d, 0x11];
    let mut out = Vec::new();
    let Some((0x30, certificate, _)) = der(cert) else {
        return out;
    };
    let Some((0x30, tbs, _)) = der(certificate) else {
        return out;
    };
    // `extensions [3] EXPLICIT Extensions`.
    let Some((_, exts)) = elements(tbs).find(|(tag, _)| *tag == 0xa3) else {
        return out;
    };
    let Some((0x30, exts, _)) = der(exts) else {
        return out;
    };
    for (_, ext) in elements(exts) {
        let mut fields = elements(ext);
        if fields.next() != Some((0x06, SAN_OID)) {
            continue;
        }
        // `critical BOOLEAN DEFAULT FALSE`, then the OCTET STRING.
        let Some((_, value)) = fields.find(|(tag, _)| *tag == 0x04) else {
            continue;
        };
        let Some((0x30, names, _)) = der(value) else {
            continue;
        };
        out.extend(
            elements(names)
                .filter(|(tag, _)| *tag == 0x86)
                .filter_map(|(_, v)| std::str::from_utf8(v).ok().map(str::to_owned)),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(ca: Option<&str>, invalid: Option<&str>) -> (Snapshot, Arc<BackendTls>) {
        let (ca_key, mut snapshot) = (
            ObjectKey::new(gwcore::model::Kind::ConfigMap, "infra", "ca"),
            Snapshot::default(),
        );
        if let Some(pem) = ca {
            let indent: String = pem.lines().map(|l| format!("    {l}\n")).collect();
            let yaml = format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: ca, namespace: infra}}\ndata:\n  ca.crt: |\n{indent}"
            );
            let loaded = gwcore::load::load_str("ca.yaml", &yaml);
            snapshot = Snapshot::from_objects(loaded.objects.into_iter().map(|(o, _)| o));
        }
        let tls = BackendTls {
            policy: ObjectKey::new(gwcore::model::Kind::BackendTlsPolicy, "infra", "p"),
            hostname: "abc.example.com".into(),
            ca_certificates: vec![ca_key],
            system_roots: false,
            subject_alt_names: Vec::new(),
            invalid: invalid.map(str::to_owned),
        };
        (snapshot, Arc::new(tls))
    }

    #[test]
    fn connectors_are_built_once_per_generation_and_retired_with_it() {
        let ca = rcgen::generate_simple_self_signed(vec!["abc.example.com".to_owned()]).unwrap();
        let (snapshot, tls) = policy(Some(&ca.cert.pem()), None);
        let cache = BackendTlsCache::default();
        let a = cache.get(&snapshot, &tls, Some(Alpn::Http1), None).unwrap();
        let b = cache.get(&snapshot, &tls, Some(Alpn::Http1), None).unwrap();
        assert!(Arc::ptr_eq(&a, &b), "cached");
        let h2 = cache.get(&snapshot, &tls, Some(Alpn::H2), None).unwrap();
        assert!(!Arc::ptr_eq(&a, &h2), "one per ALPN");
        assert_eq!(h2.config.alpn_protocols, vec![b"h2".to_vec()]);
        let key = TlsKey {
            addr: "127.0.0.1:1".parse().unwrap(),
            connector: a,
        };
        assert!(!key.retired());
        drop(cache);
        assert!(key.retired(), "its generation is gone");
    }

    #[test]
    fn an_invalid_policy_or_a_missing_ca_gives_no_connector() {
        let (snapshot, tls) = policy(None, Some("CA ConfigMap infra/ca not found"));
        let cache = BackendTlsCache::default();
        let e = cache.get(&snapshot, &tls, None, None).unwrap_err();
        assert!(e.contains("not found"), "{e}");
        let (snapshot, tls) = policy(None, None);
        assert!(connector(&snapshot, &tls, None, None).is_err());
    }

    #[test]
    fn uri_sans_are_read_from_the_certificate() {
        let mut params = rcgen::CertificateParams::new(vec!["abc.example.com".to_owned()]).unwrap();
        params.subject_alt_names.push(rcgen::SanType::URI(
            "spiffe://abc.example.com/test-identity".try_into().unwrap(),
        ));
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(
            uri_sans(cert.der()),
            vec!["spiffe://abc.example.com/test-identity".to_owned()]
        );
        let plain = rcgen::generate_simple_self_signed(vec!["a.example".to_owned()]).unwrap();
        assert!(uri_sans(plain.cert.der()).is_empty());
        assert!(uri_sans(b"\x30\x05garbage").is_empty());
    }
}
