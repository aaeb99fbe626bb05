//! BackendTLSPolicy: gwcore's own policy kind on the policy attachment of
//! [`super::policy`].
//!
//! Spec (BackendTLSPolicy): the policy lives in the Service's namespace and
//! targets the Service, or one port of it by `sectionName`
//! ([`crate::extension::TargetKind::Service`]; targetRefs of other kinds
//! are ignored, as are `sectionName`s naming no port). A policy that names
//! the port is more specific than one that names only the Service, and
//! wins. When policies name the same target (and sectionName), the oldest
//! wins, then the first by name; the others are `Accepted=False` with
//! reason `Conflicted` and apply nowhere
//! ([`crate::extension::Conflicts::WholePolicy`]).
//!
//! Parsing resolves `validation.caCertificateRefs` (ConfigMaps or Secrets
//! with a PEM `ca.crt`, in the policy's namespace) through the
//! [`PolicyContext`], so a change to one of them parses the policy again.
//! Each ancestor entry carries `ResolvedRefs`; a policy whose CA references
//! do not resolve is `Accepted=False` (reason `NoValidCACertificate`) but
//! still applies: its backends are then not reached at all
//! ([`BackendTls::invalid`]), never in plain text.

use super::gateways::secret_value;
use super::*;
use crate::extension::{
    Attachment, ExtensionKind, PolicyContext, PolicyKind, PolicyValue, Refused, TargetKind,
};
use crate::values::{SanType, WellKnownCaCertificates};

/// The kind: its value is an `Arc<BackendTls>`, each backend's
/// `BackendTarget::tls`.
#[derive(Debug)]
pub(super) struct BackendTlsPolicyKind;

impl PolicyKind for BackendTlsPolicyKind {
    fn kind(&self) -> ExtensionKind {
        ExtensionKind::new("gateway.networking.k8s.io/v1", "BackendTLSPolicy")
    }

    fn targets(&self) -> &'static [TargetKind] {
        &[TargetKind::Service]
    }

    fn attachment(&self) -> Attachment {
        Attachment::BACKEND_TLS_POLICY
    }

    fn parse(&self, policy: &Object, cx: &mut PolicyContext<'_>) -> Result<PolicyValue, Refused> {
        let Object::BackendTlsPolicy(p) = policy else {
            return Err("not a BackendTLSPolicy".into());
        };
        let ns = p.metadata.ns();
        let v = &p.spec.validation;
        let (ca_certificates, invalid) = match ca_bundles(p, cx) {
            Ok(keys) => {
                cx.condition(cond(
                    T::ResolvedRefs,
                    true,
                    Reason::ResolvedRefs,
                    "all references resolved",
                ));
                (keys, None)
            }
            Err((r, m)) => {
                cx.not_accepted(Reason::NoValidCaCertificate, m.clone());
                cx.condition(cond(T::ResolvedRefs, false, r, m.clone()));
                (Vec::new(), Some(m))
            }
        };
        let subject_alt_names = v
            .subject_alt_names
            .iter()
            .filter_map(|san| match (&san.type_, &san.hostname, &san.uri) {
                (SanType::Hostname, Some(h), _) => Some(SubjectAltName::Hostname(h.clone())),
                (SanType::Uri, _, Some(u)) => Some(SubjectAltName::Uri(u.clone())),
                _ => None,
            })
            .collect();
        Ok(PolicyValue::new(Arc::new(BackendTls {
            policy: ObjectKey::new(Kind::BackendTlsPolicy, ns, p.metadata.name.clone()),
            hostname: v.hostname.clone(),
            ca_certificates,
            system_roots: v.well_known_ca_certificates == Some(WellKnownCaCertificates::System),
            subject_alt_names,
            invalid,
        })))
    }
}

/// A BackendTLSPolicy's CA bundles, resolved, or the first that fails.
///
/// Spec: `caCertificateRefs` are ConfigMaps or Secrets (core group) in the
/// policy's namespace; another kind is `InvalidKind`, a missing object or
/// one without a PEM `ca.crt` `InvalidCACertificateRef`.
fn ca_bundles(
    p: &crate::model::BackendTlsPolicy,
    cx: &mut PolicyContext<'_>,
) -> Result<Vec<ObjectKey>, Fail> {
    let ns = p.metadata.ns();
    p.spec
        .validation
        .ca_certificate_refs
        .iter()
        .map(|c| {
            let kind = match (c.group.as_str(), c.kind.as_str()) {
                ("", "ConfigMap") => Kind::ConfigMap,
                ("", "Secret") => Kind::Secret,
                (g, k) => {
                    return Err((
                        Reason::InvalidKind,
                        format!(
                            "caCertificateRef {g}/{k} {} is not a ConfigMap or Secret",
                            c.name
                        ),
                    ));
                }
            };
            let key = ObjectKey::new(kind, ns, c.name.clone());
            let data = match cx.get(&key) {
                Some(Object::ConfigMap(cm)) => cm.data.get("ca.crt").cloned().unwrap_or_default(),
                Some(Object::Secret(s)) => secret_value(s, "ca.crt")
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
                    .unwrap_or_default(),
                _ => {
                    return Err((
                        Reason::InvalidCaCertificateRef,
                        format!("{kind} {ns}/{} does not exist", c.name),
                    ));
                }
            };
            if !data.contains("-----BEGIN CERTIFICATE-----") {
                return Err((
                    Reason::InvalidCaCertificateRef,
                    format!("{kind} {ns}/{} has no PEM certificate in ca.crt", c.name),
                ));
            }
            Ok(key)
        })
        .collect()
}

impl Ctx<'_> {
    /// The BackendTLSPolicy that applies to a Service port (see the module
    /// docs), as the backend's TLS settings.
    pub(super) fn backend_tls(
        &self,
        ns: &str,
        service: &str,
        port_name: Option<&str>,
    ) -> Option<Arc<BackendTls>> {
        self.service_policy(Kind::BackendTlsPolicy, ns, service, port_name)?
            .get::<Arc<BackendTls>>()
            .cloned()
    }
}
