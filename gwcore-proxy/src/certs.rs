//! Certificates and keys from Secrets and ConfigMaps: the certificate and
//! key of a `kubernetes.io/tls` Secret, CA bundles (`ca.crt`), client
//! certificate verifiers (frontend validation), and the TLS server settings
//! of each terminating port, its certificate chosen by SNI. Used by
//! [`crate::config`] to build them, by [`crate::backend_tls`] for
//! BackendTLSPolicy, and read by [`crate::tls`] when it terminates TLS.
//!
//! Spec (Listener `hostname`): for HTTPS, "the hostname is also used to
//! select the certificate" — among the port's listeners, the one whose
//! hostname matches the SNI most specifically (exact, then longer wildcard,
//! then no hostname) provides its first certificate.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use gwcore::Snapshot;
use gwcore::attachments::{GatewayRouting, ListenerProtocol, TlsMode};
use gwcore::model::{Object, ObjectKey};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The rustls crypto provider of every TLS configuration gwcore-proxy
/// builds: the process's default when the program installed one, else the
/// one rustls's crate features select, installed as the default: *ring*,
/// the only one this crate enables. (From rustls 0.23.48 on,
/// `rustls::crypto::ring::default_provider` is deprecated.)
pub(crate) fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    // Panics only when several providers are compiled in and none is
    // installed; gwcore-proxy enables rustls's `ring` feature alone.
    rustls::ClientConfig::builder().crypto_provider().clone()
}

/// A certificate and key read from a `kubernetes.io/tls` Secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertError {
    /// The Secret is not in the snapshot.
    #[error("Secret {0} not found")]
    NotFound(String),
    /// A key is missing or not valid base64/PEM.
    #[error("Secret {0}: {1}")]
    Invalid(String, String),
}

/// A value of a Secret: `stringData` as written, else `data` decoded from
/// base64.
fn secret_value(s: &gwcore::model::Secret, name: &str, k: &str) -> Result<Vec<u8>, CertError> {
    if let Some(v) = s.string_data.get(k) {
        return Ok(v.as_bytes().to_vec());
    }
    let v = s
        .data
        .get(k)
        .ok_or_else(|| CertError::Invalid(name.to_owned(), format!("no {k}")))?;
    base64::engine::general_purpose::STANDARD
        .decode(v.split_whitespace().collect::<String>())
        .map_err(|e| CertError::Invalid(name.to_owned(), format!("{k} is not base64: {e}")))
}

/// Reads `tls.crt` and `tls.key` of a Secret (`data` is base64,
/// `stringData` plain) into a signing key with its chain.
pub fn certified_key(snapshot: &Snapshot, secret: &ObjectKey) -> Result<CertifiedKey, CertError> {
    let name = format!("{}/{}", secret.namespace, secret.name);
    let Some(Object::Secret(s)) = snapshot.get(secret) else {
        return Err(CertError::NotFound(name));
    };
    let crt = secret_value(s, &name, "tls.crt")?;
    let key = secret_value(s, &name, "tls.key")?;
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&crt)
        .collect::<Result<_, _>>()
        .map_err(|e| CertError::Invalid(name.clone(), format!("tls.crt: {e}")))?;
    if chain.is_empty() {
        return Err(CertError::Invalid(
            name,
            "tls.crt holds no certificate".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_slice(&key)
        .map_err(|e| CertError::Invalid(name.clone(), format!("tls.key: {e}")))?;
    let signer = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| CertError::Invalid(name.clone(), format!("tls.key: {e}")))?;
    Ok(CertifiedKey::new(chain, signer))
}

/// A verifier of client certificates (frontend validation) trusting the
/// CA certificates in `ca.crt` of each ConfigMap or Secret in `bundles`.
///
/// Spec (Gateway `spec.tls.frontend`, `FrontendValidation`): with mode
/// `AllowValidOnly` (the default) a connection is allowed only if the
/// client presented a valid certificate; with `AllowInsecureFallback`
/// (`allow_missing`) the certificate is still asked for and checked, but
/// the connection goes on without one, and with one that does not verify
/// (upstream's conformance test sends a certificate of another CA there and
/// expects 200). The Gateway reports that mode with its
/// `InsecureFrontendValidationMode` condition.
pub fn client_verifier(
    snapshot: &Snapshot,
    bundles: &[ObjectKey],
    allow_missing: bool,
) -> Result<Arc<dyn rustls::server::danger::ClientCertVerifier>, CertError> {
    let roots = ca_roots(snapshot, bundles)?;
    if roots.is_empty() {
        return Err(CertError::Invalid(
            "frontend validation".into(),
            "no CA certificate to trust".into(),
        ));
    }
    let provider = crate::certs::crypto_provider();
    let builder =
        rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider);
    if !allow_missing {
        return builder
            .build()
            .map_err(|e| CertError::Invalid("frontend validation".into(), e.to_string()));
    }
    let checked = builder
        .allow_unauthenticated()
        .build()
        .map_err(|e| CertError::Invalid("frontend validation".into(), e.to_string()))?;
    Ok(Arc::new(InsecureFallback(checked)))
}

/// The CA certificates in `ca.crt` of each ConfigMap or Secret in
/// `bundles` (`data` of a ConfigMap is plain PEM, of a Secret base64):
/// what frontend validation trusts for client certificates and a
/// BackendTLSPolicy for backend certificates.
pub fn ca_roots(
    snapshot: &Snapshot,
    bundles: &[ObjectKey],
) -> Result<rustls::RootCertStore, CertError> {
    let mut roots = rustls::RootCertStore::empty();
    for key in bundles {
        let name = format!("{} {}/{}", key.kind, key.namespace, key.name);
        let pem = match snapshot.get(key) {
            Some(Object::ConfigMap(cm)) => cm
                .data
                .get("ca.crt")
                .map(|v| v.as_bytes().to_vec())
                .ok_or_else(|| CertError::Invalid(name.clone(), "no ca.crt".into()))?,
            Some(Object::Secret(s)) => secret_value(s, &name, "ca.crt")?,
            _ => return Err(CertError::NotFound(name)),
        };
        for der in CertificateDer::pem_slice_iter(&pem) {
            let der = der.map_err(|e| CertError::Invalid(name.clone(), format!("ca.crt: {e}")))?;
            roots
                .add(der)
                .map_err(|e| CertError::Invalid(name.clone(), format!("ca.crt: {e}")))?;
        }
    }
    Ok(roots)
}

/// `AllowInsecureFallback`: asks for a certificate and checks it as the
/// wrapped verifier does, but lets the connection in when the chain does
/// not verify. The handshake signatures are still checked (a client that
/// presents a certificate must hold its key).
#[derive(Debug)]
struct InsecureFallback(Arc<dyn rustls::server::danger::ClientCertVerifier>);

impl rustls::server::danger::ClientCertVerifier for InsecureFallback {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    fn root_hint_subjects(&self) -> &[rustls::DistinguishedName] {
        self.0.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::server::danger::ClientCertVerified, rustls::Error> {
        if let Err(e) = self.0.verify_client_cert(end_entity, intermediates, now) {
            tracing::debug!(error = %e, "client certificate does not verify; let in (AllowInsecureFallback)");
        }
        Ok(rustls::server::danger::ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// A listener hostname (`None`: any) and its certificate.
type HostCert = (Option<String>, Arc<CertifiedKey>);

/// Picks a certificate by SNI among a port's listeners.
#[derive(Debug)]
struct SniResolver {
    /// (listener hostname, certificate), in listener order.
    certs: Vec<HostCert>,
}

impl SniResolver {
    /// The certificate of the listener the SNI reaches, chosen as the
    /// connection's listener is ([`crate::l4::by_listener_hostname`]).
    fn pick(&self, sni: Option<&str>) -> Option<Arc<CertifiedKey>> {
        crate::l4::by_listener_hostname(&self.certs, |(h, _)| h.as_deref(), sni)
            .map(|(_, c)| c.clone())
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.pick(hello.server_name())
    }
}

/// TLS server settings for every terminating port of a Gateway, and the
/// certificates that could not be read.
pub fn server_configs(
    routing: &GatewayRouting,
    snapshot: &Snapshot,
) -> (BTreeMap<u16, Arc<rustls::ServerConfig>>, Vec<String>) {
    let mut per_port: BTreeMap<u16, Vec<HostCert>> = BTreeMap::new();
    // Client certificate validation is the Gateway's per port (its
    // `spec.tls.frontend`), so every HTTPS listener of a port carries the same.
    let mut validation: BTreeMap<u16, &gwcore::attachments::FrontendValidation> = BTreeMap::new();
    let mut http_ports = std::collections::BTreeSet::new();
    let mut errors = Vec::new();
    for l in &routing.listeners {
        let terminates = l.protocol == ListenerProtocol::Https
            || (l.protocol == ListenerProtocol::Tls && l.tls_mode == Some(TlsMode::Terminate));
        if !terminates {
            continue;
        }
        if l.protocol == ListenerProtocol::Https {
            http_ports.insert(l.port);
        }
        if let Some(v) = &l.frontend_validation {
            validation.entry(l.port).or_insert(v);
        }
        let entry = per_port.entry(l.port).or_default();
        // The first certificate that reads is used; rustls offers one chain
        // per handshake.
        for secret in &l.certificates {
            match certified_key(snapshot, secret) {
                Ok(c) => {
                    entry.push((l.hostname.clone(), Arc::new(c)));
                    break;
                }
                Err(e) => errors.push(format!("listener {}: {e}", l.name)),
            }
        }
    }
    let provider = crate::certs::crypto_provider();
    let mut out = BTreeMap::new();
    for (port, certs) in per_port {
        let builder = match rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
        {
            Ok(b) => b,
            Err(e) => {
                errors.push(format!("port {port}: {e}"));
                continue;
            }
        };
        let builder = match validation.get(&port) {
            None => builder.with_no_client_auth(),
            Some(v) => {
                match client_verifier(snapshot, &v.ca_certificates, v.allow_insecure_fallback) {
                    Ok(verifier) => builder.with_client_cert_verifier(verifier),
                    // Never serve without the validation asked for.
                    Err(e) => {
                        errors.push(format!("port {port}: client certificate validation: {e}"));
                        continue;
                    }
                }
            }
        };
        let mut cfg = builder.with_cert_resolver(Arc::new(SniResolver { certs }));
        // HTTP is negotiated on HTTPS ports only; a TLS port in Terminate
        // mode carries whatever its clients speak.
        if http_ports.contains(&port) {
            cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        }
        out.insert(port, Arc::new(cfg));
    }
    (out, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> Arc<CertifiedKey> {
        let c = rcgen::generate_simple_self_signed(vec!["x.example".to_owned()]).unwrap();
        let der = PrivateKeyDer::try_from(c.key_pair.serialize_der()).unwrap();
        let signer = rustls::crypto::ring::sign::any_supported_type(&der).unwrap();
        Arc::new(CertifiedKey::new(vec![c.cert.der().clone()], signer))
    }

    #[test]
    fn sni_picks_exact_then_longest_wildcard_then_catch_all() {
        let (exact, wild, longer, any) = (key(), key(), key(), key());
        let r = SniResolver {
            certs: vec![
                (None, any.clone()),
                (Some("*.example.com".into()), wild.clone()),
                (Some("*.a.example.com".into()), longer.clone()),
                (Some("foo.a.example.com".into()), exact.clone()),
            ],
        };
        let is = |got: Option<Arc<CertifiedKey>>, want: &Arc<CertifiedKey>| {
            got.is_some_and(|g| Arc::ptr_eq(&g, want))
        };
        assert!(is(r.pick(Some("foo.a.example.com")), &exact));
        assert!(
            is(r.pick(Some("FOO.A.example.com")), &exact),
            "SNI is case-insensitive"
        );
        assert!(is(r.pick(Some("bar.a.example.com")), &longer));
        assert!(is(r.pick(Some("bar.example.com")), &wild));
        assert!(is(r.pick(Some("other.org")), &any));
        assert!(is(r.pick(None), &any));
    }

    /// A CA and a client certificate it signed, as PEM and DER.
    fn ca_and_client() -> (String, CertificateDer<'static>) {
        use rcgen::{BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair};
        let ca_key = KeyPair::generate().unwrap();
        let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca.self_signed(&ca_key).unwrap();
        let client_key = KeyPair::generate().unwrap();
        let mut client = CertificateParams::new(vec!["client.example".to_owned()]).unwrap();
        client.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client = client.signed_by(&client_key, &ca, &ca_key).unwrap();
        (ca.pem(), client.der().clone())
    }

    fn snapshot_with_bundle(kind: &str, pem: &str) -> (Snapshot, ObjectKey) {
        let indent: String = pem.lines().map(|l| format!("    {l}\n")).collect();
        let yaml = match kind {
            "ConfigMap" => format!(
                "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: ca, namespace: infra}}\ndata:\n  ca.crt: |\n{indent}"
            ),
            _ => format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: ca, namespace: infra}}\nstringData:\n  ca.crt: |\n{indent}"
            ),
        };
        let loaded = gwcore::load::load_str("ca.yaml", &yaml);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        let snapshot = Snapshot::from_objects(loaded.objects.into_iter().map(|(o, _)| o));
        let kind = gwcore::model::Kind::parse(kind).unwrap();
        (snapshot, ObjectKey::new(kind, "infra", "ca"))
    }

    #[test]
    fn client_certificates_verify_only_against_the_bundles_cas() {
        use rustls::pki_types::UnixTime;
        let (ca, signed) = ca_and_client();
        let (_, stranger) = ca_and_client();
        for kind in ["ConfigMap", "Secret"] {
            let (snap, key) = snapshot_with_bundle(kind, &ca);
            let v = client_verifier(&snap, &[key], false).unwrap();
            assert!(v.client_auth_mandatory(), "{kind}: AllowValidOnly");
            assert!(
                v.verify_client_cert(&signed, &[], UnixTime::now()).is_ok(),
                "{kind}: a certificate the CA signed is valid"
            );
            assert!(
                v.verify_client_cert(&stranger, &[], UnixTime::now())
                    .is_err(),
                "{kind}: a certificate of another CA is refused"
            );
        }
    }

    #[test]
    fn insecure_fallback_asks_for_a_certificate_but_lets_every_client_in() {
        use rustls::pki_types::UnixTime;
        let (ca, signed) = ca_and_client();
        let (_, stranger) = ca_and_client();
        let (snap, key) = snapshot_with_bundle("ConfigMap", &ca);
        let v = client_verifier(&snap, &[key], true).unwrap();
        assert!(v.offer_client_auth(), "the certificate is still asked for");
        assert!(!v.client_auth_mandatory(), "a client without one is let in");
        assert!(v.verify_client_cert(&signed, &[], UnixTime::now()).is_ok());
        assert!(
            v.verify_client_cert(&stranger, &[], UnixTime::now())
                .is_ok(),
            "a certificate of another CA is let in too"
        );
    }

    #[test]
    fn a_bundle_without_certificates_is_an_error() {
        let (snap, key) = snapshot_with_bundle("ConfigMap", "not a certificate");
        assert!(matches!(
            client_verifier(&snap, &[key], false),
            Err(CertError::Invalid(..))
        ));
        let missing = ObjectKey::new(gwcore::model::Kind::ConfigMap, "infra", "gone");
        assert!(matches!(
            client_verifier(&snap, &[missing], false),
            Err(CertError::NotFound(_))
        ));
    }
}
