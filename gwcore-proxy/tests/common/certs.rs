//! Self-signed certificates for TLS tests, and a TLS backend that says
//! which SNI it saw.

use std::net::SocketAddr;
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// A self-signed certificate and its key.
pub struct Cert {
    pub pem: String,
    pub key_pem: String,
    pub der: CertificateDer<'static>,
}

impl Cert {
    /// A certificate for `names`.
    pub fn new(names: &[&str]) -> Cert {
        let c = rcgen::generate_simple_self_signed(
            names.iter().map(|n| n.to_string()).collect::<Vec<_>>(),
        )
        .unwrap();
        Cert {
            pem: c.cert.pem(),
            key_pem: c.key_pair.serialize_pem(),
            der: c.cert.der().clone(),
        }
    }

    /// The certificate and key as rustls serves them.
    pub fn key(&self) -> rustls::sign::CertifiedKey {
        let der = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        let signer = rustls::crypto::ring::sign::any_supported_type(&der).unwrap();
        rustls::sign::CertifiedKey::new(vec![self.der.clone()], signer)
    }

    /// A `kubernetes.io/tls` Secret `name` in namespace `default` holding it.
    pub fn secret(&self, name: &str) -> String {
        let indent = |s: &str| -> String { s.lines().map(|l| format!("    {l}\n")).collect() };
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}, namespace: default}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
            indent(&self.pem),
            indent(&self.key_pem)
        )
    }

    /// A client configuration that trusts only this certificate and offers
    /// `alpn`.
    pub fn client_config(&self, alpn: &[&[u8]]) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.der.clone()).unwrap();
        let provider = rustls::ClientConfig::builder().crypto_provider().clone();
        let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
        Arc::new(cfg)
    }
}

/// A TLS server standing for a backend (TLS passthrough's) with `c`: says
/// which SNI it saw, then closes. Bytes before the handshake (a PROXY
/// header) would break it.
pub async fn tls_backend(c: &Cert) -> SocketAddr {
    let key = PrivateKeyDer::from_pem_slice(c.key_pem.as_bytes()).unwrap();
    let provider = rustls::ClientConfig::builder().crypto_provider().clone();
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![c.der.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let (s, _) = l.accept().await.unwrap();
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                if let Ok(mut tls) = acceptor.accept(s).await {
                    let sni = tls.get_ref().1.server_name().unwrap_or("").to_owned();
                    let _ = tls
                        .write_all(format!("backend saw {sni}\n").as_bytes())
                        .await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    addr
}
