//! The certificates the upstream suite creates in Go code before applying
//! `base.yaml` (FORMAT.md, "Generated objects"), made with `rcgen`.
//!
//! Upstream uses RSA 2048 valid for one year; we use ECDSA P-256 (what
//! `rcgen` makes by default) with `rcgen`'s default validity (1975–4096), so
//! the certificates are valid whatever "now" the engine is given. Nothing
//! checked by a vector depends on the key algorithm.

use std::collections::BTreeMap;

use base64::Engine as _;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose, SanType,
};
use serde_json::{Value, json};

use crate::vector::Generated;

/// The objects of FORMAT.md's table, created for every upstream vector.
/// A vector's own `generated` entries are added to (or replace) these.
pub fn upstream_table() -> Vec<Generated> {
    let g = |kind: &str, ns: &str, name: &str, cert: &str, hosts: &[&str], ca: Option<&str>| {
        Generated {
            kind: kind.to_string(),
            namespace: ns.to_string(),
            name: name.to_string(),
            cert: cert.to_string(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            ca: ca.map(str::to_string),
        }
    };
    const INFRA: &str = "gateway-conformance-infra";
    const WEB: &str = "gateway-conformance-web-backend";
    const APP: &str = "gateway-conformance-app-backend";
    let ca_c = Some("tls-checks-ca-certificate");
    vec![
        g("Secret", WEB, "certificate", "self-signed", &["*"], None),
        g(
            "Secret",
            INFRA,
            "tls-validity-checks-certificate",
            "self-signed",
            &["*", "*.org", "*.wildcard.org"],
            None,
        ),
        g(
            "ConfigMap",
            WEB,
            "web-backend-cm",
            "ca",
            &[],
            Some("web-backend-cm"),
        ),
        g(
            "ConfigMap",
            INFRA,
            "tls-validity-checks-ca-certificate",
            "ca",
            &[],
            Some("tls-validity-checks-ca-certificate"),
        ),
        g(
            "Secret",
            INFRA,
            "tls-validity-checks-client-certificate",
            "client",
            &[],
            Some("tls-validity-checks-ca-certificate"),
        ),
        g(
            "ConfigMap",
            INFRA,
            "tls-validity-checks-per-port-ca-certificate",
            "ca",
            &[],
            Some("tls-validity-checks-per-port-ca-certificate"),
        ),
        g(
            "Secret",
            INFRA,
            "tls-validity-checks-per-port-client-certificate",
            "client",
            &[],
            Some("tls-validity-checks-per-port-ca-certificate"),
        ),
        g(
            "ConfigMap",
            INFRA,
            "tls-checks-ca-certificate",
            "ca",
            &[],
            ca_c,
        ),
        g(
            "Secret",
            INFRA,
            "tls-checks-certificate",
            "server",
            &[
                "abc.example.com",
                "spiffe://abc.example.com/test-identity",
                "other.example.com",
            ],
            ca_c,
        ),
        g(
            "Secret",
            INFRA,
            "tls-checks-client-certificate",
            "client",
            &[],
            ca_c,
        ),
        g(
            "Secret",
            INFRA,
            "tls-passthrough-checks-certificate",
            "server",
            &["abc.example.com"],
            ca_c,
        ),
        g(
            "Secret",
            APP,
            "tls-passthrough-checks-certificate",
            "server",
            &["abc.example.com"],
            ca_c,
        ),
        g(
            "Secret",
            INFRA,
            "tls-terminate-checks-certificate",
            "server",
            &["tls.example.com"],
            ca_c,
        ),
        g(
            "ConfigMap",
            INFRA,
            "mismatch-ca-certificate",
            "ca",
            &[],
            Some("mismatch-ca-certificate"),
        ),
    ]
}

/// A made certificate: PEM of the certificate and of its key.
#[derive(Debug, Clone)]
struct Made {
    cert_pem: String,
    key_pem: String,
}

/// A CA that can sign: its parameters and key.
struct Ca {
    params: CertificateParams,
    key: KeyPair,
    cert_pem: String,
}

/// Makes certificates, remembering each so that every vector of a run sees
/// the same objects (and key generation happens once per object).
#[derive(Default)]
pub struct CertFactory {
    cas: BTreeMap<String, Ca>,
    made: BTreeMap<(String, String, String), Made>,
}

impl std::fmt::Debug for CertFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertFactory")
            .field("cas", &self.cas.keys().collect::<Vec<_>>())
            .field("made", &self.made.len())
            .finish()
    }
}

impl CertFactory {
    /// A factory with nothing made yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// The Kubernetes object (JSON) for one generated entry.
    pub fn object(&mut self, g: &Generated) -> Result<Value, String> {
        let made = self.make(g)?;
        let metadata = json!({"name": g.name, "namespace": g.namespace});
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
        match g.kind.as_str() {
            "Secret" => Ok(json!({
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": metadata,
                "type": "kubernetes.io/tls",
                "data": {"tls.crt": b64(&made.cert_pem), "tls.key": b64(&made.key_pem)},
            })),
            "ConfigMap" => Ok(json!({
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": metadata,
                "data": {"ca.crt": made.cert_pem},
            })),
            other => Err(format!(
                "generated {}/{}: kind {other} is neither Secret nor ConfigMap",
                g.namespace, g.name
            )),
        }
    }

    fn make(&mut self, g: &Generated) -> Result<Made, String> {
        let key = (g.kind.clone(), g.namespace.clone(), g.name.clone());
        if let Some(m) = self.made.get(&key) {
            return Ok(m.clone());
        }
        let err = |e: rcgen::Error| format!("generated {}/{}: {e}", g.namespace, g.name);
        let made = match g.cert.as_str() {
            "ca" => {
                let name = g.ca.clone().unwrap_or_else(|| g.name.clone());
                let ca = self.ca(&name)?;
                Made {
                    cert_pem: ca.cert_pem.clone(),
                    key_pem: ca.key.serialize_pem(),
                }
            }
            "self-signed" => {
                let params = leaf_params(&g.name, &g.hosts, false).map_err(err)?;
                let key = KeyPair::generate().map_err(err)?;
                let cert = params.self_signed(&key).map_err(err)?;
                Made {
                    cert_pem: cert.pem(),
                    key_pem: key.serialize_pem(),
                }
            }
            "server" | "client" => {
                let ca_name = g.ca.clone().ok_or_else(|| {
                    format!(
                        "generated {}/{}: a {} certificate needs `ca`",
                        g.namespace, g.name, g.cert
                    )
                })?;
                let params = leaf_params(&g.name, &g.hosts, g.cert == "client").map_err(err)?;
                let key = KeyPair::generate().map_err(err)?;
                let ca = self.ca(&ca_name)?;
                let issuer = ca.params.clone().self_signed(&ca.key).map_err(err)?;
                let cert = params.signed_by(&key, &issuer, &ca.key).map_err(err)?;
                Made {
                    cert_pem: cert.pem(),
                    key_pem: key.serialize_pem(),
                }
            }
            other => {
                return Err(format!(
                    "generated {}/{}: unknown cert type {other:?}",
                    g.namespace, g.name
                ));
            }
        };
        self.made.insert(key, made.clone());
        Ok(made)
    }

    /// The CA named `name`, made on first use. CA names are unique across
    /// namespaces in the upstream table.
    fn ca(&mut self, name: &str) -> Result<&Ca, String> {
        if !self.cas.contains_key(name) {
            let err = |e: rcgen::Error| format!("CA {name}: {e}");
            let mut params = CertificateParams::default();
            params.distinguished_name.push(DnType::CommonName, name);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            let key = KeyPair::generate().map_err(err)?;
            let cert = params.clone().self_signed(&key).map_err(err)?;
            self.cas.insert(
                name.to_string(),
                Ca {
                    params,
                    key,
                    cert_pem: cert.pem(),
                },
            );
        }
        // Just inserted when absent.
        self.cas
            .get(name)
            .ok_or_else(|| format!("CA {name} could not be stored"))
    }
}

/// Parameters of a leaf certificate: DNS SANs, `spiffe://` URI SANs.
fn leaf_params(
    name: &str,
    hosts: &[String],
    client: bool,
) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::default();
    params.distinguished_name.push(DnType::CommonName, name);
    for h in hosts {
        let ia5 = rcgen::Ia5String::try_from(h.as_str())?;
        params.subject_alt_names.push(if h.contains("://") {
            SanType::URI(ia5)
        } else {
            SanType::DnsName(ia5)
        });
    }
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![if client {
        ExtendedKeyUsagePurpose::ClientAuth
    } else {
        ExtendedKeyUsagePurpose::ServerAuth
    }];
    Ok(params)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_hold_pem_cert_and_key_in_base64() {
        let mut f = CertFactory::new();
        let table = upstream_table();
        let g = table
            .iter()
            .find(|g| g.name == "tls-checks-certificate")
            .expect("in table");
        let obj = f.object(g).expect("made");
        let crt = obj["data"]["tls.crt"].as_str().expect("tls.crt");
        let pem = base64::engine::general_purpose::STANDARD
            .decode(crt)
            .expect("base64");
        let pem = String::from_utf8(pem).expect("utf8");
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        let key = obj["data"]["tls.key"].as_str().expect("tls.key");
        let key = base64::engine::general_purpose::STANDARD
            .decode(key)
            .expect("base64");
        assert!(
            String::from_utf8(key)
                .expect("utf8")
                .contains("PRIVATE KEY")
        );
    }

    #[test]
    fn a_ca_config_map_matches_the_ca_that_signs() {
        let mut f = CertFactory::new();
        let table = upstream_table();
        let cm = table
            .iter()
            .find(|g| g.name == "tls-checks-ca-certificate")
            .expect("in table");
        let a = f.object(cm).expect("made");
        let b = f.object(cm).expect("made again");
        assert_eq!(a, b, "the same object is returned on every use");
        assert!(
            a["data"]["ca.crt"]
                .as_str()
                .expect("ca.crt")
                .starts_with("-----BEGIN CERTIFICATE-----")
        );
    }
}
