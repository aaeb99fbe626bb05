//! What the attachment engine hands to the routing table: for each of our
//! Gateways, its valid listeners (ListenerSet listeners merged in) and, per
//! listener, the Accepted routes with their effective hostnames and their
//! rules with every backendRef already resolved.
//!
//! This is the contract between [`crate::engine`] and [`crate::table`]: the
//! table never looks at the snapshot, and the engine never ranks matches.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Serialize;

use crate::status::Reason;

use crate::extension::{ExtensionKind, ExtensionObject, PolicyValue};
use crate::model::{
    GrpcRouteMatch, HttpRouteFilter, HttpRouteMatch, HttpRouteRetry, HttpRouteTimeouts, Object,
    ObjectKey,
};

/// Routing input for one Gateway.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GatewayRouting {
    /// The Gateway.
    pub gateway: ObjectKey,
    /// Valid listeners in the spec's order: the Gateway's own first, then
    /// those of accepted ListenerSets (oldest set first, then by
    /// namespace/name).
    pub listeners: Vec<ListenerRouting>,
    /// The Secret (`tls.crt`, `tls.key`) of the Gateway's
    /// `spec.tls.backend.clientCertificateRef`, resolved: the client
    /// certificate it presents to backends reached over TLS. `None` when
    /// unset or unresolvable (the Gateway's ResolvedRefs says why).
    pub backend_client_certificate: Option<ObjectKey>,
    /// The extension policies that apply on this Gateway, by what they
    /// target ([`crate::extension::PolicyKind`]); conflicts settled, only
    /// the winners. The table hands them to each listener, rule and
    /// backend.
    #[serde(
        skip_serializing_if = "BTreeMap::is_empty",
        serialize_with = "serialize_policies"
    )]
    pub policies: BTreeMap<PolicyTarget, Vec<AppliedPolicy>>,
}

/// What a policy applies to, on one Gateway (GEP-713 direct attachment,
/// `sectionName` resolved).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[non_exhaustive]
pub enum PolicyTarget {
    /// The whole Gateway.
    Gateway,
    /// One listener of it, by name.
    Listener(String),
    /// A route attached to it.
    Route(ObjectKey),
    /// One named rule of such a route.
    Rule(ObjectKey, String),
    /// A Service its routes send to.
    Service(ObjectKey),
    /// One port of such a Service (by number; the policy named it).
    ServicePort(ObjectKey, u16),
}

/// Policies by target, as a list of pairs (a target is no string key).
fn serialize_policies<S: serde::Serializer>(
    policies: &BTreeMap<PolicyTarget, Vec<AppliedPolicy>>,
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(policies.iter())
}

/// A policy that applies, with its parsed value.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct AppliedPolicy {
    /// The policy object.
    pub policy: ObjectKey,
    /// Its parsed value ([`crate::extension::PolicyKind::parse`]).
    pub value: PolicyValue,
    /// The object it was parsed from.
    pub object: Arc<ExtensionObject>,
    /// The objects its parse looked up that exist, in key order
    /// ([`crate::extension::PolicyContext::get`]). The value is a function
    /// of the object's spec and of these, so two applied policies are equal
    /// when those are.
    pub read: Arc<Vec<Object>>,
}

/// The policy's key and spec (what its value is parsed from).
impl Serialize for AppliedPolicy {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("AppliedPolicy", 2)?;
        st.serialize_field("policy", &self.policy)?;
        st.serialize_field("spec", &self.object.spec)?;
        st.end()
    }
}

impl AppliedPolicy {
    /// The policy's kind.
    pub fn kind(&self) -> ExtensionKind {
        self.object.kind
    }
}

/// Equal when the policy, its spec and the objects its parse read are: the
/// value is parsed from those, and a status written back to the policy
/// changes nothing that applies.
impl PartialEq for AppliedPolicy {
    fn eq(&self, other: &Self) -> bool {
        self.policy == other.policy
            && (Arc::ptr_eq(&self.object, &other.object) || self.object.spec == other.object.spec)
            && (Arc::ptr_eq(&self.read, &other.read) || self.read == other.read)
    }
}

/// The protocol of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum ListenerProtocol {
    /// `HTTP`
    Http,
    /// `HTTPS`
    Https,
    /// `TLS`
    Tls,
    /// `TCP`
    Tcp,
    /// `UDP`
    Udp,
}

impl ListenerProtocol {
    /// The protocol of a listener's spec, when gwcore serves it.
    pub fn from_spec(p: &crate::values::ProtocolType) -> Option<Self> {
        use crate::values::ProtocolType as P;
        Some(match p {
            P::Http => ListenerProtocol::Http,
            P::Https => ListenerProtocol::Https,
            P::Tls => ListenerProtocol::Tls,
            P::Tcp => ListenerProtocol::Tcp,
            P::Udp => ListenerProtocol::Udp,
            P::Other(_) => return None,
        })
    }
}

/// TLS mode of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum TlsMode {
    /// TLS is terminated at the Gateway.
    Terminate,
    /// The TLS stream is forwarded by SNI.
    Passthrough,
}

/// One valid listener and the routes attached to it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ListenerRouting {
    /// Listener name (unique within its Gateway or ListenerSet).
    pub name: String,
    /// The Gateway or ListenerSet that declares it.
    pub source: ObjectKey,
    /// Port.
    pub port: u16,
    /// Protocol.
    pub protocol: ListenerProtocol,
    /// Hostname, possibly a wildcard (`*.example.com`); `None` matches all.
    pub hostname: Option<String>,
    /// TLS mode, for HTTPS and TLS listeners.
    pub tls_mode: Option<TlsMode>,
    /// Resolved certificate Secrets, in `certificateRefs` order.
    pub certificates: Vec<ObjectKey>,
    /// Client certificate validation for this HTTPS listener (the
    /// Gateway's `spec.tls.frontend`: the `perPort` entry of its port, else
    /// `default`); `None`: clients are not asked for a certificate.
    pub frontend_validation: Option<FrontendValidation>,
    /// Accepted routes attached to this listener, sorted by key. Shared, so
    /// that rebuilding a listener after one route changed copies pointers,
    /// not routes.
    pub routes: Vec<Arc<AttachedRoute>>,
}

/// How an HTTPS listener validates client certificates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FrontendValidation {
    /// The CA bundles (ConfigMaps or Secrets holding a PEM `ca.crt`), in
    /// `caCertificateRefs` order, every one resolved and readable.
    pub ca_certificates: Vec<ObjectKey>,
    /// `mode: AllowInsecureFallback`: a client without a valid certificate
    /// is let in all the same (the default, `AllowValidOnly`, refuses it).
    pub allow_insecure_fallback: bool,
}

/// A route attached to one listener.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AttachedRoute {
    /// The route (kind, namespace, name).
    pub key: ObjectKey,
    /// `metadata.creationTimestamp`; `None` sorts as oldest-equal.
    pub creation_timestamp: Option<String>,
    /// Effective hostnames: the intersection of the route's `hostnames` with
    /// the listener's hostname. Empty means "any host the listener accepts".
    pub hostnames: Vec<String>,
    /// The rules.
    pub rules: RouteRules,
}

/// A route's rules, by route family.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub enum RouteRules {
    /// HTTPRoute rules.
    Http(Arc<Vec<HttpRule>>),
    /// GRPCRoute rules.
    Grpc(Arc<Vec<GrpcRule>>),
    /// TLSRoute / TCPRoute / UDPRoute rules.
    L4(Arc<Vec<L4Rule>>),
}

/// An HTTPRoute rule with defaults applied and refs resolved. Built by the
/// engine (or by [`HttpRule::new`]); it may gain fields in a minor release.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct HttpRule {
    /// Index in `spec.rules`.
    pub index: usize,
    /// `rules[].name`.
    pub name: Option<String>,
    /// Matches (defaults applied; never empty).
    pub matches: Vec<HttpRouteMatch>,
    /// Filters as written (RequestMirror targets are in `mirrors`).
    pub filters: Vec<HttpRouteFilter>,
    /// The objects the `ExtensionRef` filters name, resolved, in filter
    /// order (an unresolved one is missing: the table answers 500 for it).
    pub extension_refs: Vec<Arc<ExtensionObject>>,
    /// The authorization services of the `ExternalAuth` filters, one per
    /// filter in filter order: the Service port, or why its backendRef
    /// does not resolve (the table answers 500 for it: fail closed).
    pub external_auth: Vec<Result<BackendTarget, BackendError>>,
    /// Resolved mirror targets of the rule's RequestMirror filters, in order.
    pub mirrors: Vec<Mirror>,
    /// Backends; empty when the rule has no backendRefs.
    pub backends: Vec<ResolvedBackend>,
    /// Timeouts.
    pub timeouts: Option<HttpRouteTimeouts>,
    /// Retry policy.
    pub retry: Option<HttpRouteRetry>,
    /// `sessionPersistence`, parsed.
    pub session_persistence: Option<Arc<crate::session::SessionPersistence>>,
}

/// A GRPCRoute rule with refs resolved. Built by the engine (or by
/// [`GrpcRule::new`]); it may gain fields in a minor release.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[non_exhaustive]
pub struct GrpcRule {
    /// Index in `spec.rules`.
    pub index: usize,
    /// `rules[].name`.
    pub name: Option<String>,
    /// Matches; empty matches every gRPC request.
    pub matches: Vec<GrpcRouteMatch>,
    /// Filters as written.
    pub filters: Vec<HttpRouteFilter>,
    /// The objects the `ExtensionRef` filters name, resolved.
    pub extension_refs: Vec<Arc<ExtensionObject>>,
    /// Resolved mirror targets.
    pub mirrors: Vec<Mirror>,
    /// Backends.
    pub backends: Vec<ResolvedBackend>,
    /// `sessionPersistence`, parsed.
    pub session_persistence: Option<Arc<crate::session::SessionPersistence>>,
}

impl HttpRule {
    /// Rule `index` of its route with `matches` (never empty: a rule
    /// without matches has the one that matches every path) to `backends`,
    /// with no filter, name, timeout, retry or session: set the public
    /// fields for more. For data planes and benchmarks that build routing
    /// without the engine.
    pub fn new(index: usize, matches: Vec<HttpRouteMatch>, backends: Vec<ResolvedBackend>) -> Self {
        HttpRule {
            index,
            name: None,
            matches,
            filters: Vec::new(),
            extension_refs: Vec::new(),
            external_auth: Vec::new(),
            mirrors: Vec::new(),
            backends,
            timeouts: None,
            retry: None,
            session_persistence: None,
        }
    }
}

impl GrpcRule {
    /// Rule `index` of its route with `matches` (empty matches every gRPC
    /// request) to `backends`, with no filter, name or session: set the
    /// public fields for more.
    pub fn new(index: usize, matches: Vec<GrpcRouteMatch>, backends: Vec<ResolvedBackend>) -> Self {
        GrpcRule {
            index,
            name: None,
            matches,
            filters: Vec::new(),
            extension_refs: Vec::new(),
            mirrors: Vec::new(),
            backends,
            session_persistence: None,
        }
    }
}

/// A TLSRoute / TCPRoute / UDPRoute rule.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct L4Rule {
    /// Index in `spec.rules`.
    pub index: usize,
    /// `rules[].name`.
    pub name: Option<String>,
    /// Backends.
    pub backends: Vec<ResolvedBackend>,
}

/// A backendRef after resolution.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ResolvedBackend {
    /// Weight (default 1; 0 = never chosen).
    pub weight: u32,
    /// The Service and port, or why it cannot be used. An invalid backend
    /// keeps its weight: its share of requests is answered with 500.
    pub target: Result<BackendTarget, BackendError>,
    /// Backend-level filters.
    pub filters: Vec<HttpRouteFilter>,
    /// The objects the backend's `ExtensionRef` filters name, resolved.
    pub extension_refs: Vec<Arc<ExtensionObject>>,
    /// The authorization services of the backend's `ExternalAuth`
    /// filters, one per filter in filter order ([`HttpRule::external_auth`]).
    pub external_auth: Vec<Result<BackendTarget, BackendError>>,
}

/// A resolved Service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct BackendTarget {
    /// The Service.
    pub service: ObjectKey,
    /// The Service port.
    pub port: u16,
    /// The Service port's `appProtocol` (`kubernetes.io/h2c`, `kubernetes.io/ws`...).
    pub app_protocol: Option<String>,
    /// The TLS to reach it with, when a BackendTLSPolicy targets the
    /// Service (or this port of it, which wins); `None`: plain text.
    pub tls: Option<Arc<BackendTls>>,
}

/// How a backend is reached over TLS (BackendTLSPolicy).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct BackendTls {
    /// The policy.
    pub policy: ObjectKey,
    /// `validation.hostname`: the SNI sent, and the name the certificate
    /// must carry unless `subject_alt_names` are given.
    pub hostname: String,
    /// CA bundles (ConfigMaps or Secrets holding a PEM `ca.crt`) to trust,
    /// in `caCertificateRefs` order.
    pub ca_certificates: Vec<ObjectKey>,
    /// `wellKnownCACertificates: System`: trust the system's CAs.
    pub system_roots: bool,
    /// `validation.subjectAltNames`: any one of these must be in the
    /// certificate (instead of `hostname`).
    pub subject_alt_names: Vec<SubjectAltName>,
    /// Why the policy cannot be used (its CA references do not resolve):
    /// the backend must not be reached at all, its requests answer 5xx.
    pub invalid: Option<String>,
}

/// A subject alternative name a backend certificate must carry.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum SubjectAltName {
    /// A DNS name.
    Hostname(String),
    /// A URI (SPIFFE IDs and the like).
    Uri(String),
}

/// Why a backendRef cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendError {
    /// The ResolvedRefs reason (`BackendNotFound`, `RefNotPermitted`, `InvalidKind`...).
    pub reason: Reason,
    /// A sentence for people.
    pub message: String,
}

/// A mirror target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mirror {
    /// Where to send the copy.
    pub target: BackendTarget,
    /// Share of requests mirrored, 0.0..=1.0 (default 1.0).
    pub fraction: f64,
}
