//! Typed Kubernetes objects, as read from manifests.
//!
//! Field names are the Kubernetes ones (`camelCase`), so real manifests
//! deserialize as they are. Unknown fields are ignored. Only what the engine
//! needs is modelled; `status` is kept where the engine must preserve what
//! other controllers wrote (route `status.parents`) or where
//! `lastTransitionTime` must be carried over.
//!
//! Defaults that the API server applies from the CRDs' `kubebuilder:default`
//! markers are applied by [`crate::validate`], not by serde, so that a
//! diagnostic can tell "absent" from "set".

pub use crate::values::{
    AddressType, Duration, ExternalAuthProtocol, FilterType, FromNamespaces,
    FrontendValidationMode, MatchType, PathMatchType, PathModifierType, ProtocolType, SanType,
    TlsModeType, WellKnownCaCertificates,
};
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::status::{
    GatewayClassStatus, GatewayStatus, ListenerSetStatus, PolicyStatus, RouteStatus,
};

/// The API group of the Gateway API.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// The API group of the Gateway API's experimental kinds (`XListenerSet`,
/// `XBackendTrafficPolicy`...).
pub const GATEWAY_X_GROUP: &str = "gateway.networking.x-k8s.io";

/// `metadata` of any object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ObjectMeta {
    /// `metadata.name`.
    #[serde(default)]
    pub name: String,
    /// `metadata.namespace`; absent for cluster-scoped objects.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// `metadata.labels`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// `metadata.annotations`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// `metadata.generation`: bumped by the API server on every spec change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub generation: Option<i64>,
    /// `metadata.creationTimestamp` (RFC 3339). Decides route precedence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_timestamp: Option<String>,
    /// `metadata.resourceVersion`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
    /// `metadata.uid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

impl ObjectMeta {
    /// The namespace, or `""` for cluster-scoped objects.
    pub fn ns(&self) -> &str {
        self.namespace.as_deref().unwrap_or("")
    }
}

/// `metav1.LabelSelector`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelector {
    /// Every pair must be present.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub match_labels: BTreeMap<String, String>,
    /// Every expression must hold.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub match_expressions: Vec<LabelSelectorRequirement>,
}

/// One `matchExpressions` entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelSelectorRequirement {
    /// The label key.
    pub key: String,
    /// `In`, `NotIn`, `Exists` or `DoesNotExist`.
    pub operator: String,
    /// Values for `In` / `NotIn`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
}

// ---------------------------------------------------------------------------
// GatewayClass

/// `GatewayClass`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClass {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: GatewayClassSpec,
    /// Status as last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<GatewayClassStatus>,
}

/// `GatewayClass.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassSpec {
    /// The controller that manages Gateways of this class.
    #[serde(default)]
    pub controller_name: String,
    /// Implementation-specific parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters_ref: Option<ParametersReference>,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A reference to a parameters object.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParametersReference {
    /// API group.
    #[serde(default)]
    pub group: String,
    /// Kind.
    #[serde(default)]
    pub kind: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Namespace, for namespaced kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

// ---------------------------------------------------------------------------
// Gateway

/// `Gateway`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Gateway {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: GatewaySpec,
    /// Status as last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<GatewayStatus>,
}

/// `Gateway.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    /// The GatewayClass this Gateway belongs to.
    #[serde(default)]
    pub gateway_class_name: String,
    /// Listeners, in document order.
    #[serde(default)]
    pub listeners: Vec<Listener>,
    /// Requested addresses.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<GatewayAddress>,
    /// Infrastructure labels/annotations and parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infrastructure: Option<GatewayInfrastructure>,
    /// Which ListenerSets may attach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_listeners: Option<AllowedListeners>,
    /// Gateway-level TLS settings: client certificate validation of
    /// frontend connections, and the client certificate shown to backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<GatewayTlsConfig>,
    /// `defaultScope` (experimental, GEP-3793): with `All`, the Gateway
    /// claims the routes whose `useDefaultGateways` is `All`, as if they
    /// named it in their parentRefs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_scope: Option<crate::values::GatewayDefaultScope>,
}

/// `Gateway.spec.tls`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayTlsConfig {
    /// TLS towards backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<GatewayBackendTls>,
    /// TLS towards clients.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontend: Option<FrontendTls>,
}

/// `Gateway.spec.tls.backend`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayBackendTls {
    /// The client certificate the Gateway presents to backends.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_certificate_ref: Option<SecretObjectReference>,
}

/// `Gateway.spec.tls.frontend`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FrontendTls {
    /// Settings for every HTTPS listener without a per-port entry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<FrontendTlsConfig>,
    /// Settings per port.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub per_port: Vec<FrontendTlsPerPort>,
}

/// `frontend.perPort[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FrontendTlsPerPort {
    /// The port.
    #[serde(default)]
    pub port: i32,
    /// Its settings.
    #[serde(default)]
    pub tls: FrontendTlsConfig,
}

/// Frontend TLS settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FrontendTlsConfig {
    /// Client certificate validation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<FrontendValidation>,
}

/// Client certificate validation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FrontendValidation {
    /// CA bundles (ConfigMaps with `ca.crt`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca_certificate_refs: Vec<SecretObjectReference>,
    /// `AllowValidOnly` (default) or `AllowInsecureFallback`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<FrontendValidationMode>,
}

/// `spec.addresses[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayAddress {
    /// `IPAddress` (default), `Hostname` or `NamedAddress`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<AddressType>,
    /// The address; may be empty (the implementation picks one).
    #[serde(default)]
    pub value: String,
}

/// `spec.infrastructure`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayInfrastructure {
    /// Labels for generated resources.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// Annotations for generated resources.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// Implementation-specific parameters (local reference).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters_ref: Option<ParametersReference>,
}

/// `spec.allowedListeners`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowedListeners {
    /// Namespaces whose ListenerSets may attach. Default `from: None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<RouteNamespaces>,
}

/// A Listener of a Gateway or a ListenerSet entry.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    /// Unique within the Gateway (or ListenerSet).
    #[serde(default)]
    pub name: String,
    /// Optional hostname; may be a wildcard `*.example.com`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Port, 1..=65535.
    #[serde(default)]
    pub port: i32,
    /// `HTTP`, `HTTPS`, `TLS`, `TCP`, `UDP` or a domain-prefixed protocol.
    #[serde(default)]
    pub protocol: ProtocolType,
    /// TLS settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ListenerTls>,
    /// Which routes may attach.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_routes: Option<AllowedRoutes>,
}

/// `listeners[].tls`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerTls {
    /// `Terminate` (default) or `Passthrough`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mode: Option<TlsModeType>,
    /// Certificates to serve.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub certificate_refs: Vec<SecretObjectReference>,
    /// Implementation-specific options.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
    /// Experimental client certificate validation (kept opaque).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub frontend_validation: Option<serde_json::Value>,
}

/// A reference to a Secret (or another kind) that may cross namespaces.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SecretObjectReference {
    /// Group; `""` (core) by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind; `Secret` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Namespace; the referrer's by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `allowedRoutes`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowedRoutes {
    /// Namespaces routes may come from. Default `from: Same`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<RouteNamespaces>,
    /// Kinds of routes; empty means those the protocol supports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kinds: Vec<RouteGroupKind>,
}

/// `allowedRoutes.namespaces`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteNamespaces {
    /// `All`, `Same`, `Selector` (or `None` for ListenerSets).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<FromNamespaces>,
    /// With `from: Selector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<LabelSelector>,
}

/// A route kind, with its group.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteGroupKind {
    /// Group; `gateway.networking.k8s.io` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind.
    pub kind: String,
}

// ---------------------------------------------------------------------------
// ListenerSet

/// `ListenerSet`: listeners attached to a parent Gateway from elsewhere.
///
/// The same object is served under two names: `ListenerSet`
/// (`gateway.networking.k8s.io`, Gateway API v1.5 on) and `XListenerSet`
/// (`gateway.networking.x-k8s.io/v1alpha1`, the experimental channel of
/// v1.3 and v1.4). Both are [`Kind::ListenerSet`], keyed alike;
/// [`ListenerSet::served_as`] remembers which name the object came under,
/// so that a route's parentRef must name it that way and its status goes
/// back to the resource it was read from.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSet {
    /// The kind the object was read as (from its manifest's `kind`; set by
    /// [`Object::from_value`], not serialized with the fields).
    #[serde(skip)]
    pub served_as: ListenerSetKind,
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: ListenerSetSpec,
    /// Status as last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<ListenerSetStatus>,
}

/// The names a [`ListenerSet`] is served under.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[non_exhaustive]
pub enum ListenerSetKind {
    /// `ListenerSet` in `gateway.networking.k8s.io` (standard since
    /// Gateway API v1.5).
    #[default]
    ListenerSet,
    /// `XListenerSet` in `gateway.networking.x-k8s.io` (experimental
    /// channel of Gateway API v1.3 and v1.4).
    XListenerSet,
}

impl ListenerSetKind {
    /// Both names, the standard one first.
    pub const ALL: [ListenerSetKind; 2] =
        [ListenerSetKind::ListenerSet, ListenerSetKind::XListenerSet];

    /// The kind as spelled in manifests and references.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerSetKind::ListenerSet => "ListenerSet",
            ListenerSetKind::XListenerSet => "XListenerSet",
        }
    }

    /// Parses a kind as spelled in manifests.
    pub fn parse(kind: &str) -> Option<ListenerSetKind> {
        ListenerSetKind::ALL
            .into_iter()
            .find(|k| k.as_str() == kind)
    }

    /// The API group serving this name.
    pub fn group(self) -> &'static str {
        match self {
            ListenerSetKind::ListenerSet => GATEWAY_GROUP,
            ListenerSetKind::XListenerSet => GATEWAY_X_GROUP,
        }
    }

    /// The `apiVersion` gwcore writes under this name when it has none
    /// from the object.
    pub fn api_version(self) -> &'static str {
        match self {
            ListenerSetKind::ListenerSet => "gateway.networking.k8s.io/v1",
            ListenerSetKind::XListenerSet => "gateway.networking.x-k8s.io/v1alpha1",
        }
    }

    /// The name a reference with this `group` and `kind` (defaults
    /// applied) gives, if it names a ListenerSet: `XListenerSet` only in
    /// the experimental group, `ListenerSet` only in the Gateway API group.
    pub fn of_ref(group: &str, kind: &str) -> Option<ListenerSetKind> {
        ListenerSetKind::parse(kind).filter(|k| k.group() == group)
    }

    /// Whether objects are read under this name at `api_version`.
    pub fn accepts_api_version(self, api_version: &str) -> bool {
        match api_version.rsplit_once('/') {
            Some((group, version)) if group == self.group() => match self {
                ListenerSetKind::ListenerSet => matches!(version, "v1" | "v1alpha1"),
                ListenerSetKind::XListenerSet => version == "v1alpha1",
            },
            _ => false,
        }
    }
}

impl std::fmt::Display for ListenerSetKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `ListenerSet.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSetSpec {
    /// The Gateway this set attaches to.
    #[serde(default)]
    pub parent_ref: ParentGatewayReference,
    /// Listeners, in document order.
    #[serde(default)]
    pub listeners: Vec<Listener>,
}

/// `ListenerSet.spec.parentRef`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentGatewayReference {
    /// Group; `gateway.networking.k8s.io` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind; `Gateway` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Namespace; the ListenerSet's by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

// ---------------------------------------------------------------------------
// Routes

/// `parentRefs[]` of a route.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    /// Group; `gateway.networking.k8s.io` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind; `Gateway` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Namespace; the route's by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// A listener name (or ListenerSet entry name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// A listener port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// A backendRef of any route kind.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendRef {
    /// Group; `""` (core) by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind; `Service` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Namespace; the route's by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Port; required for Services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Weight; 1 by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight: Option<i32>,
    /// Backend-level filters (HTTPRoute, GRPCRoute).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<HttpRouteFilter>,
}

/// `HTTPRoute`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRoute {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: HttpRouteSpec,
    /// Status as last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RouteStatus>,
}

/// `HTTPRoute.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteSpec {
    /// Where this route attaches.
    #[serde(default)]
    pub parent_refs: Vec<ParentReference>,
    /// Hostnames to match against Host.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Rules, in document order. Default: one rule matching `PathPrefix /`.
    #[serde(default)]
    pub rules: Vec<HttpRouteRule>,
    /// `useDefaultGateways` (experimental, GEP-3793): with `All`, the route
    /// is also claimed by every Gateway whose `defaultScope` is `All`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_default_gateways: Option<crate::values::GatewayDefaultScope>,
}

/// `HTTPRoute.spec.rules[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRule {
    /// Optional rule name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Matches (ORed). Default: one `PathPrefix /` match.
    #[serde(default)]
    pub matches: Vec<HttpRouteMatch>,
    /// Filters applied to matching requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<HttpRouteFilter>,
    /// Backends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<BackendRef>,
    /// Timeouts (boxed, as the retry policy and session persistence: most
    /// rules have none, and every rule would carry their room).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<Box<HttpRouteTimeouts>>,
    /// Retry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Box<HttpRouteRetry>>,
    /// Session persistence (GEP-1619), as written; parsed into
    /// [`crate::session::SessionPersistence`] by the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_persistence: Option<Box<SessionPersistenceSpec>>,
}

/// `rules[].sessionPersistence` (HTTPRoute, GRPCRoute) and
/// `XBackendTrafficPolicy.spec.sessionPersistence` (GEP-1619), as
/// written. Both shapes upstream has served are read: `sessionName`,
/// `idleTimeout` and `cookieConfig` (v1.1 to v1.4), and `cookie` and
/// `header` with their own names (later).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionPersistenceSpec {
    /// `sessionName`: the cookie's or header's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_name: Option<String>,
    /// `type`: `Cookie` (the default) or `Header`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<crate::values::SessionPersistenceType>,
    /// `absoluteTimeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub absolute_timeout: Option<Duration>,
    /// `idleTimeout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
    /// `cookieConfig`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_config: Option<SessionCookieSpec>,
    /// `cookie`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<SessionCookieSpec>,
    /// `header`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<SessionHeaderSpec>,
}

/// `sessionPersistence.cookie` (or `cookieConfig`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionCookieSpec {
    /// `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `path`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// `lifetimeType`: `Session` (the default) or `Permanent`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifetime_type: Option<crate::values::CookieLifetimeType>,
}

/// `sessionPersistence.header`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionHeaderSpec {
    /// `name`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `rules[].timeouts`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteTimeouts {
    /// Whole request, Gateway API duration (`10s`, `1m30s`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<Duration>,
    /// One try to the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_request: Option<Duration>,
}

/// `rules[].retry`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteRetry {
    /// HTTP status codes to retry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub codes: Vec<i32>,
    /// Maximum retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attempts: Option<i32>,
    /// Backoff between retries, Gateway API duration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Duration>,
}

/// `rules[].matches[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteMatch {
    /// Path match. Default `PathPrefix /`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<HttpPathMatch>,
    /// Header matches (ANDed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HttpHeaderMatch>,
    /// Query parameter matches (ANDed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub query_params: Vec<HttpHeaderMatch>,
    /// Method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// `matches[].path`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpPathMatch {
    /// `Exact`, `PathPrefix` (default) or `RegularExpression`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<PathMatchType>,
    /// The value; `/` by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
}

/// A header or query parameter match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpHeaderMatch {
    /// `Exact` (default) or `RegularExpression`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<MatchType>,
    /// Header name (case-insensitive) or query parameter name (exact).
    #[serde(default)]
    pub name: String,
    /// Value to match.
    #[serde(default)]
    pub value: String,
}

/// A filter of an HTTPRoute or GRPCRoute rule or backendRef.
///
/// One field is set, the one of [`HttpRouteFilter::type_`]; the large ones
/// are boxed, so that a filter takes the room of the one it has.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpRouteFilter {
    /// The filter type.
    #[serde(default, rename = "type")]
    pub type_: FilterType,
    /// `RequestHeaderModifier`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_header_modifier: Option<HeaderModifier>,
    /// `ResponseHeaderModifier`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_header_modifier: Option<HeaderModifier>,
    /// `RequestMirror`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_mirror: Option<Box<RequestMirror>>,
    /// `RequestRedirect`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_redirect: Option<Box<RequestRedirect>>,
    /// `URLRewrite`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url_rewrite: Option<Box<UrlRewrite>>,
    /// `CORS`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Box<Cors>>,
    /// `ExternalAuth` (experimental, GEP-1494).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_auth: Option<Box<ExternalAuth>>,
    /// `ExtensionRef`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extension_ref: Option<LocalObjectReference>,
}

/// A typed local reference.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LocalObjectReference {
    /// Group.
    #[serde(default)]
    pub group: String,
    /// Kind.
    #[serde(default)]
    pub kind: String,
    /// Name.
    #[serde(default)]
    pub name: String,
}

/// `requestHeaderModifier` / `responseHeaderModifier`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HeaderModifier {
    /// Replace (or add) these headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub set: Vec<HttpHeader>,
    /// Append these headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<HttpHeader>,
    /// Remove these header names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

/// A header name and value.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HttpHeader {
    /// Name.
    #[serde(default)]
    pub name: String,
    /// Value.
    #[serde(default)]
    pub value: String,
}

/// `requestMirror`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestMirror {
    /// Where to mirror.
    #[serde(default)]
    pub backend_ref: BackendRef,
    /// Share of requests to mirror, 0..=100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<i32>,
    /// Share of requests to mirror as a fraction.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<Fraction>,
}

/// `externalAuth` (`HTTPExternalAuthFilter`, GEP-1494): send the request's
/// details to an authorization service, which allows or denies it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalAuth {
    /// `HTTP` or `GRPC` (Envoy's ext_authz protocol); required.
    #[serde(default)]
    pub protocol: ExternalAuthProtocol,
    /// The authorization service; required.
    #[serde(default)]
    pub backend_ref: BackendRef,
    /// Settings of the `GRPC` protocol; set exactly when it is chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcAuthConfig>,
    /// Settings of the `HTTP` protocol; set exactly when it is chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpAuthConfig>,
    /// Whether (and how much of) the request body goes to the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_body: Option<ForwardBodyConfig>,
}

/// `externalAuth.grpc`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcAuthConfig {
    /// Client request headers sent to the service; empty: all of them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_headers: Vec<String>,
}

/// `externalAuth.http`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpAuthConfig {
    /// A prefix put before the request's path on the way to the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Client request headers sent besides `Host`, `Authorization` and
    /// `Content-Length`, which always are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_headers: Vec<String>,
    /// Headers of the service's answer copied into the request sent on;
    /// empty: all of them but `Host`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowed_response_headers: Vec<String>,
}

/// `externalAuth.forwardBody`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ForwardBodyConfig {
    /// At most this many bytes of the body go to the service; 0 (the
    /// default): none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_size: Option<i32>,
}

/// `numerator / denominator`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fraction {
    /// Numerator.
    #[serde(default)]
    pub numerator: i32,
    /// Denominator; 100 by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub denominator: Option<i32>,
}

/// `requestRedirect`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestRedirect {
    /// `http` or `https`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<String>,
    /// New host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// New path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<HttpPathModifier>,
    /// New port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// 301 (default), 302, 303, 307 or 308.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<i32>,
}

/// `urlRewrite`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UrlRewrite {
    /// New Host header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// New path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<HttpPathModifier>,
}

/// A path modifier of a redirect or rewrite.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HttpPathModifier {
    /// `ReplaceFullPath` or `ReplacePrefixMatch`.
    #[serde(default, rename = "type")]
    pub type_: PathModifierType,
    /// With `ReplaceFullPath`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_full_path: Option<String>,
    /// With `ReplacePrefixMatch`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_prefix_match: Option<String>,
}

/// `cors`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cors {
    /// Allowed origins (`*`, exact, or `scheme://*.host` wildcards).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origins: Vec<String>,
    /// Whether credentials are allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    /// Allowed methods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    /// Allowed request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    /// Headers exposed to the client.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    /// Preflight cache time in seconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<i32>,
}

/// `GRPCRoute`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRoute {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: GrpcRouteSpec,
    /// Status as last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RouteStatus>,
}

/// `GRPCRoute.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteSpec {
    /// Where this route attaches.
    #[serde(default)]
    pub parent_refs: Vec<ParentReference>,
    /// Hostnames to match against `:authority`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Rules.
    #[serde(default)]
    pub rules: Vec<GrpcRouteRule>,
    /// `useDefaultGateways` (experimental, GEP-3793): with `All`, the route
    /// is also claimed by every Gateway whose `defaultScope` is `All`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_default_gateways: Option<crate::values::GatewayDefaultScope>,
}

/// `GRPCRoute.spec.rules[]`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteRule {
    /// Optional rule name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Matches (ORed); none matches all gRPC requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub matches: Vec<GrpcRouteMatch>,
    /// Filters.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub filters: Vec<HttpRouteFilter>,
    /// Backends.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<BackendRef>,
    /// Session persistence (GEP-1619), as written (boxed: rare); parsed
    /// into [`crate::session::SessionPersistence`] by the engine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_persistence: Option<Box<SessionPersistenceSpec>>,
}

/// `GRPCRoute` match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcRouteMatch {
    /// Service/method match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<GrpcMethodMatch>,
    /// Header matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HttpHeaderMatch>,
}

/// `GRPCRoute` method match.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GrpcMethodMatch {
    /// `Exact` (default) or `RegularExpression`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<MatchType>,
    /// Fully-qualified service, e.g. `foo.Bar`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Method name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

/// `TLSRoute`, `TCPRoute` and `UDPRoute` share one shape (TCP/UDP have no hostnames).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L4Route {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: L4RouteSpec,
    /// Status as last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<RouteStatus>,
}

/// Spec of a TLS/TCP/UDP route.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L4RouteSpec {
    /// Where this route attaches.
    #[serde(default)]
    pub parent_refs: Vec<ParentReference>,
    /// SNI hostnames (TLSRoute only).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hostnames: Vec<String>,
    /// Rules.
    #[serde(default)]
    pub rules: Vec<L4RouteRule>,
    /// `useDefaultGateways` (experimental, GEP-3793): with `All`, the route
    /// is also claimed by every Gateway whose `defaultScope` is `All`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_default_gateways: Option<crate::values::GatewayDefaultScope>,
}

/// A TLS/TCP/UDP route rule.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L4RouteRule {
    /// Optional rule name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Backends.
    #[serde(default)]
    pub backend_refs: Vec<BackendRef>,
}

// ---------------------------------------------------------------------------
// Policies and grants

/// `ReferenceGrant`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrant {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: ReferenceGrantSpec,
}

/// `ReferenceGrant.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantSpec {
    /// Who may refer.
    #[serde(default)]
    pub from: Vec<ReferenceGrantFrom>,
    /// What they may refer to, in the grant's namespace.
    #[serde(default)]
    pub to: Vec<ReferenceGrantTo>,
}

/// `ReferenceGrant.spec.from[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantFrom {
    /// Group of the referrer.
    #[serde(default)]
    pub group: String,
    /// Kind of the referrer.
    #[serde(default)]
    pub kind: String,
    /// Namespace of the referrer.
    #[serde(default)]
    pub namespace: String,
}

/// `ReferenceGrant.spec.to[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ReferenceGrantTo {
    /// Group of the target.
    #[serde(default)]
    pub group: String,
    /// Kind of the target.
    #[serde(default)]
    pub kind: String,
    /// Name of the target; all of that kind when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// `BackendTLSPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendTlsPolicy {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: BackendTlsPolicySpec,
    /// Status as last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<PolicyStatus>,
}

/// `BackendTLSPolicy.spec`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendTlsPolicySpec {
    /// Targets (Services, optionally a port by sectionName).
    #[serde(default)]
    pub target_refs: Vec<PolicyTargetReference>,
    /// How to validate the backend's certificate.
    #[serde(default)]
    pub validation: BackendTlsValidation,
    /// Implementation-specific options.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub options: BTreeMap<String, String>,
}

/// A policy target.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyTargetReference {
    /// Group.
    #[serde(default)]
    pub group: String,
    /// Kind.
    #[serde(default)]
    pub kind: String,
    /// Name.
    #[serde(default)]
    pub name: String,
    /// A port name of the Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// `BackendTLSPolicy.spec.validation`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BackendTlsValidation {
    /// CA bundles (ConfigMaps or Secrets) in the policy's namespace.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca_certificate_refs: Vec<LocalObjectReference>,
    /// `System` to use the system trust store.
    #[serde(
        default,
        rename = "wellKnownCACertificates",
        skip_serializing_if = "Option::is_none"
    )]
    pub well_known_ca_certificates: Option<WellKnownCaCertificates>,
    /// SNI and name to verify.
    #[serde(default)]
    pub hostname: String,
    /// Subject alternative names to accept instead of `hostname`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<SubjectAltName>,
}

/// A SAN to verify.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SubjectAltName {
    /// `Hostname` or `URI`.
    #[serde(default, rename = "type")]
    pub type_: SanType,
    /// With `Hostname`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// With `URI`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
}

// ---------------------------------------------------------------------------
// Core kinds

/// `v1/Namespace`: only the labels matter.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Namespace {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
}

/// `v1/Service`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Service {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Spec.
    #[serde(default)]
    pub spec: ServiceSpec,
}

/// `Service.spec`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceSpec {
    /// `ClusterIP` (default), `NodePort`, `LoadBalancer` or `ExternalName`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Ports.
    #[serde(default)]
    pub ports: Vec<ServicePort>,
    /// Cluster IP; `None` for headless Services.
    #[serde(default, rename = "clusterIP", skip_serializing_if = "Option::is_none")]
    pub cluster_ip: Option<String>,
    /// For `ExternalName` Services.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_name: Option<String>,
    /// Pod selector.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
}

/// `Service.spec.ports[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServicePort {
    /// Port name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Service port.
    #[serde(default)]
    pub port: i32,
    /// Target port (number or name).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_port: Option<serde_json::Value>,
    /// `TCP` (default), `UDP`, `SCTP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// e.g. `kubernetes.io/h2c`, `kubernetes.io/ws`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

/// `discovery.k8s.io/v1` `EndpointSlice`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointSlice {
    /// Object metadata; label `kubernetes.io/service-name` names the Service.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// `IPv4`, `IPv6` or `FQDN`.
    #[serde(default)]
    pub address_type: String,
    /// Endpoints.
    #[serde(default)]
    pub endpoints: Vec<Endpoint>,
    /// Ports.
    #[serde(default)]
    pub ports: Vec<EndpointPort>,
}

/// One endpoint.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Endpoint {
    /// Addresses.
    #[serde(default)]
    pub addresses: Vec<String>,
    /// Conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<EndpointConditions>,
}

/// Endpoint readiness.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointConditions {
    /// Ready; unknown counts as ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready: Option<bool>,
}

/// An EndpointSlice port.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointPort {
    /// Matches the Service port name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Port number.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
    /// Protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
    /// Application protocol.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
}

/// `v1/Secret` (base64 `data`, or `stringData`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// e.g. `kubernetes.io/tls`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// Base64-encoded values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
    /// Plain values (merged over `data` by the API server).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub string_data: BTreeMap<String, String>,
}

/// `v1/ConfigMap`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigMap {
    /// Object metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Values.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub data: BTreeMap<String, String>,
}

// ---------------------------------------------------------------------------
// Any object

/// The kinds gwcore reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// `GatewayClass`
    GatewayClass,
    /// `Gateway`
    Gateway,
    /// `ListenerSet`
    ListenerSet,
    /// `HTTPRoute`
    #[serde(rename = "HTTPRoute")]
    HttpRoute,
    /// `GRPCRoute`
    #[serde(rename = "GRPCRoute")]
    GrpcRoute,
    /// `TLSRoute`
    #[serde(rename = "TLSRoute")]
    TlsRoute,
    /// `TCPRoute`
    #[serde(rename = "TCPRoute")]
    TcpRoute,
    /// `UDPRoute`
    #[serde(rename = "UDPRoute")]
    UdpRoute,
    /// `ReferenceGrant`
    ReferenceGrant,
    /// `BackendTLSPolicy`
    #[serde(rename = "BackendTLSPolicy")]
    BackendTlsPolicy,
    /// `Namespace`
    Namespace,
    /// `Service`
    Service,
    /// `EndpointSlice`
    EndpointSlice,
    /// `Secret`
    Secret,
    /// `ConfigMap`
    ConfigMap,
    /// A kind an extension registered ([`crate::extension`]).
    Extension(crate::extension::ExtensionKind),
}

impl Kind {
    /// Every built-in kind, in a fixed order.
    pub const ALL: [Kind; 15] = [
        Kind::GatewayClass,
        Kind::Gateway,
        Kind::ListenerSet,
        Kind::HttpRoute,
        Kind::GrpcRoute,
        Kind::TlsRoute,
        Kind::TcpRoute,
        Kind::UdpRoute,
        Kind::ReferenceGrant,
        Kind::BackendTlsPolicy,
        Kind::Namespace,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Secret,
        Kind::ConfigMap,
    ];

    /// The kind as spelled in manifests.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::GatewayClass => "GatewayClass",
            Kind::Gateway => "Gateway",
            Kind::ListenerSet => "ListenerSet",
            Kind::HttpRoute => "HTTPRoute",
            Kind::GrpcRoute => "GRPCRoute",
            Kind::TlsRoute => "TLSRoute",
            Kind::TcpRoute => "TCPRoute",
            Kind::UdpRoute => "UDPRoute",
            Kind::ReferenceGrant => "ReferenceGrant",
            Kind::BackendTlsPolicy => "BackendTLSPolicy",
            Kind::Namespace => "Namespace",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
            Kind::Extension(k) => k.kind(),
        }
    }

    /// Parses a built-in kind as spelled in manifests. `XListenerSet` is
    /// [`Kind::ListenerSet`] ([`ListenerSetKind`]).
    pub fn parse(s: &str) -> Option<Kind> {
        if ListenerSetKind::parse(s).is_some() {
            return Some(Kind::ListenerSet);
        }
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// Whether `kind`, as spelled in a manifest, names this kind: its
    /// [`Kind::as_str`], or for [`Kind::ListenerSet`] either
    /// [`ListenerSetKind`] name.
    pub fn is_spelled(self, kind: &str) -> bool {
        match self {
            Kind::ListenerSet => ListenerSetKind::parse(kind).is_some(),
            _ => self.as_str() == kind,
        }
    }

    /// Whether an object written with this `kind` and `apiVersion` is read
    /// as this kind: [`Kind::is_spelled`] and [`Kind::accepts_api_version`],
    /// with the name and group paired as served (`XListenerSet` only in
    /// `gateway.networking.x-k8s.io`, `ListenerSet` only in
    /// `gateway.networking.k8s.io`).
    pub fn reads(self, kind: &str, api_version: &str) -> bool {
        match self {
            Kind::ListenerSet => {
                ListenerSetKind::parse(kind).is_some_and(|k| k.accepts_api_version(api_version))
            }
            _ => self.is_spelled(kind) && self.accepts_api_version(api_version),
        }
    }

    /// The API group (`""` for core kinds).
    pub fn group(self) -> &'static str {
        match self {
            Kind::Namespace | Kind::Service | Kind::Secret | Kind::ConfigMap => "",
            Kind::EndpointSlice => "discovery.k8s.io",
            Kind::Extension(k) => k.group(),
            _ => GATEWAY_GROUP,
        }
    }

    /// The `apiVersion` gwcore writes for this kind.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Namespace | Kind::Service | Kind::Secret | Kind::ConfigMap => "v1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            Kind::TlsRoute | Kind::TcpRoute | Kind::UdpRoute => {
                "gateway.networking.k8s.io/v1alpha2"
            }
            Kind::Extension(k) => k.api_version(),
            _ => "gateway.networking.k8s.io/v1",
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn is_namespaced(self) -> bool {
        !matches!(self, Kind::GatewayClass | Kind::Namespace)
    }

    /// Whether this is a route kind.
    pub fn is_route(self) -> bool {
        matches!(
            self,
            Kind::HttpRoute | Kind::GrpcRoute | Kind::TlsRoute | Kind::TcpRoute | Kind::UdpRoute
        )
    }

    /// The `apiVersion`s under which this kind is read.
    pub fn accepts_api_version(self, api_version: &str) -> bool {
        let (group, version) = match api_version.rsplit_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        if group != self.group() && self != Kind::ListenerSet {
            return false;
        }
        match self {
            Kind::Namespace | Kind::Service | Kind::Secret | Kind::ConfigMap => version == "v1",
            Kind::EndpointSlice => matches!(version, "v1" | "v1beta1"),
            Kind::GatewayClass | Kind::Gateway | Kind::HttpRoute => {
                matches!(version, "v1" | "v1beta1")
            }
            Kind::GrpcRoute => matches!(version, "v1" | "v1alpha2"),
            Kind::ReferenceGrant => matches!(version, "v1" | "v1beta1" | "v1alpha2"),
            Kind::TlsRoute => matches!(version, "v1" | "v1alpha2" | "v1alpha3"),
            Kind::TcpRoute | Kind::UdpRoute => matches!(version, "v1" | "v1alpha2"),
            Kind::BackendTlsPolicy => matches!(version, "v1" | "v1alpha3"),
            // Either name: `ListenerSet` or `XListenerSet` (see
            // [`Kind::reads`] for the pairing of name and group).
            Kind::ListenerSet => ListenerSetKind::ALL
                .into_iter()
                .any(|k| k.accepts_api_version(api_version)),
            // Any version of a registered group: the extension parses it.
            Kind::Extension(_) => !version.is_empty(),
        }
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identifies one object: kind, namespace (`""` if cluster-scoped), name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectKey {
    /// Kind.
    pub kind: Kind,
    /// Namespace, `""` for cluster-scoped kinds.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl ObjectKey {
    /// Builds a key.
    pub fn new(kind: Kind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ObjectKey {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }

    /// The key of a cluster-scoped object (a GatewayClass, a Namespace).
    pub fn cluster_scoped(kind: Kind, name: impl Into<String>) -> Self {
        ObjectKey::new(kind, "", name)
    }

    /// The key of the Namespace `name`.
    pub fn namespace(name: impl Into<String>) -> Self {
        ObjectKey::cluster_scoped(Kind::Namespace, name)
    }
}

impl std::fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// Any object gwcore reads.
///
/// The kinds there are few of and whose specs are large (GatewayClass,
/// Gateway, ListenerSet, BackendTLSPolicy) are boxed, so that an object is
/// the size of a route: a snapshot holds one per route, and each Gateway's
/// inline fields would otherwise make every route's allocation as large.
#[derive(Debug, Clone, PartialEq)]
pub enum Object {
    /// A GatewayClass.
    GatewayClass(Box<GatewayClass>),
    /// A Gateway.
    Gateway(Box<Gateway>),
    /// A ListenerSet.
    ListenerSet(Box<ListenerSet>),
    /// An HTTPRoute.
    HttpRoute(HttpRoute),
    /// A GRPCRoute.
    GrpcRoute(GrpcRoute),
    /// A TLSRoute.
    TlsRoute(L4Route),
    /// A TCPRoute.
    TcpRoute(L4Route),
    /// A UDPRoute.
    UdpRoute(L4Route),
    /// A ReferenceGrant.
    ReferenceGrant(ReferenceGrant),
    /// A BackendTLSPolicy.
    BackendTlsPolicy(Box<BackendTlsPolicy>),
    /// A Namespace.
    Namespace(Namespace),
    /// A Service.
    Service(Service),
    /// An EndpointSlice.
    EndpointSlice(EndpointSlice),
    /// A Secret.
    Secret(Secret),
    /// A ConfigMap.
    ConfigMap(ConfigMap),
    /// An object of a kind an extension registered.
    Extension(crate::extension::ExtensionObject),
}

impl Object {
    /// The object's kind.
    pub fn kind(&self) -> Kind {
        match self {
            Object::GatewayClass(_) => Kind::GatewayClass,
            Object::Gateway(_) => Kind::Gateway,
            Object::ListenerSet(_) => Kind::ListenerSet,
            Object::HttpRoute(_) => Kind::HttpRoute,
            Object::GrpcRoute(_) => Kind::GrpcRoute,
            Object::TlsRoute(_) => Kind::TlsRoute,
            Object::TcpRoute(_) => Kind::TcpRoute,
            Object::UdpRoute(_) => Kind::UdpRoute,
            Object::ReferenceGrant(_) => Kind::ReferenceGrant,
            Object::BackendTlsPolicy(_) => Kind::BackendTlsPolicy,
            Object::Namespace(_) => Kind::Namespace,
            Object::Service(_) => Kind::Service,
            Object::EndpointSlice(_) => Kind::EndpointSlice,
            Object::Secret(_) => Kind::Secret,
            Object::ConfigMap(_) => Kind::ConfigMap,
            Object::Extension(o) => Kind::Extension(o.kind),
        }
    }

    /// The kind as the object was written: [`Kind::as_str`], except for a
    /// ListenerSet read as `XListenerSet` ([`ListenerSet::served_as`]).
    pub fn manifest_kind(&self) -> &'static str {
        match self {
            Object::ListenerSet(o) => o.served_as.as_str(),
            _ => self.kind().as_str(),
        }
    }

    /// The object's metadata.
    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Object::GatewayClass(o) => &o.metadata,
            Object::Gateway(o) => &o.metadata,
            Object::ListenerSet(o) => &o.metadata,
            Object::HttpRoute(o) => &o.metadata,
            Object::GrpcRoute(o) => &o.metadata,
            Object::TlsRoute(o) | Object::TcpRoute(o) | Object::UdpRoute(o) => &o.metadata,
            Object::ReferenceGrant(o) => &o.metadata,
            Object::BackendTlsPolicy(o) => &o.metadata,
            Object::Namespace(o) => &o.metadata,
            Object::Service(o) => &o.metadata,
            Object::EndpointSlice(o) => &o.metadata,
            Object::Secret(o) => &o.metadata,
            Object::ConfigMap(o) => &o.metadata,
            Object::Extension(o) => &o.metadata,
        }
    }

    /// Mutable metadata.
    pub fn meta_mut(&mut self) -> &mut ObjectMeta {
        match self {
            Object::GatewayClass(o) => &mut o.metadata,
            Object::Gateway(o) => &mut o.metadata,
            Object::ListenerSet(o) => &mut o.metadata,
            Object::HttpRoute(o) => &mut o.metadata,
            Object::GrpcRoute(o) => &mut o.metadata,
            Object::TlsRoute(o) | Object::TcpRoute(o) | Object::UdpRoute(o) => &mut o.metadata,
            Object::ReferenceGrant(o) => &mut o.metadata,
            Object::BackendTlsPolicy(o) => &mut o.metadata,
            Object::Namespace(o) => &mut o.metadata,
            Object::Service(o) => &mut o.metadata,
            Object::EndpointSlice(o) => &mut o.metadata,
            Object::Secret(o) => &mut o.metadata,
            Object::ConfigMap(o) => &mut o.metadata,
            Object::Extension(o) => &mut o.metadata,
        }
    }

    /// The object's key.
    pub fn key(&self) -> ObjectKey {
        let m = self.meta();
        ObjectKey::new(self.kind(), m.ns(), m.name.clone())
    }

    /// Whether `other` is this object with at most what the API server
    /// changes on a status write changed (see [`Object::without_status`]):
    /// the echo of a status write, or no change at all.
    pub fn same_but_status(&self, other: &Object) -> bool {
        self.without_status() == other.without_status()
    }

    /// The object without what the API server changes on a status write
    /// (`status` and `metadata.resourceVersion`): two versions that compare
    /// equal this way differ only by a status echo.
    pub fn without_status(&self) -> Object {
        let mut o = self.clone();
        o.meta_mut().resource_version = None;
        match &mut o {
            Object::GatewayClass(x) => x.status = None,
            Object::Gateway(x) => x.status = None,
            Object::ListenerSet(x) => x.status = None,
            Object::HttpRoute(x) => x.status = None,
            Object::GrpcRoute(x) => x.status = None,
            Object::TlsRoute(x) | Object::TcpRoute(x) | Object::UdpRoute(x) => x.status = None,
            Object::BackendTlsPolicy(x) => x.status = None,
            Object::Extension(x) => x.status = None,
            Object::ReferenceGrant(_)
            | Object::Namespace(_)
            | Object::Service(_)
            | Object::EndpointSlice(_)
            | Object::Secret(_)
            | Object::ConfigMap(_) => {}
        }
        o
    }

    /// The object as a manifest: `apiVersion`, `kind`, then its fields.
    pub fn to_manifest(&self) -> serde_json::Value {
        let body = match self {
            Object::GatewayClass(o) => serde_json::to_value(o),
            Object::Gateway(o) => serde_json::to_value(o),
            Object::ListenerSet(o) => serde_json::to_value(o),
            Object::HttpRoute(o) => serde_json::to_value(o),
            Object::GrpcRoute(o) => serde_json::to_value(o),
            Object::TlsRoute(o) | Object::TcpRoute(o) | Object::UdpRoute(o) => {
                serde_json::to_value(o)
            }
            Object::ReferenceGrant(o) => serde_json::to_value(o),
            Object::BackendTlsPolicy(o) => serde_json::to_value(o),
            Object::Namespace(o) => serde_json::to_value(o),
            Object::Service(o) => serde_json::to_value(o),
            Object::EndpointSlice(o) => serde_json::to_value(o),
            Object::Secret(o) => serde_json::to_value(o),
            Object::ConfigMap(o) => serde_json::to_value(o),
            Object::Extension(o) => serde_json::to_value(o),
        };
        let mut map = serde_json::Map::new();
        let api_version = match self {
            Object::Extension(o) => o.api_version.as_str(),
            Object::ListenerSet(o) => o.served_as.api_version(),
            _ => self.kind().api_version(),
        };
        map.insert("apiVersion".into(), api_version.into());
        map.insert("kind".into(), self.manifest_kind().into());
        // Serializing these plain data types cannot fail (no maps with
        // non-string keys, no custom serializers).
        if let Ok(serde_json::Value::Object(fields)) = body {
            map.extend(fields);
        }
        serde_json::Value::Object(map)
    }

    /// Deserializes an object of a known kind from a JSON value.
    /// The error carries the field path (`spec.listeners[0].port`).
    pub fn from_value(
        kind: Kind,
        value: serde_json::Value,
    ) -> Result<Object, serde_path_to_error::Error<serde_json::Error>> {
        fn de<T: serde::de::DeserializeOwned>(
            v: serde_json::Value,
        ) -> Result<T, serde_path_to_error::Error<serde_json::Error>> {
            serde_path_to_error::deserialize(v)
        }
        Ok(match kind {
            Kind::GatewayClass => Object::GatewayClass(de(value)?),
            Kind::Gateway => Object::Gateway(de(value)?),
            Kind::ListenerSet => {
                // The name it was served under, from the manifest's `kind`.
                let served_as = value
                    .get("kind")
                    .and_then(serde_json::Value::as_str)
                    .and_then(ListenerSetKind::parse)
                    .unwrap_or_default();
                let mut ls: Box<ListenerSet> = de(value)?;
                ls.served_as = served_as;
                Object::ListenerSet(ls)
            }
            Kind::HttpRoute => Object::HttpRoute(de(value)?),
            Kind::GrpcRoute => Object::GrpcRoute(de(value)?),
            Kind::TlsRoute => Object::TlsRoute(de(value)?),
            Kind::TcpRoute => Object::TcpRoute(de(value)?),
            Kind::UdpRoute => Object::UdpRoute(de(value)?),
            Kind::ReferenceGrant => Object::ReferenceGrant(de(value)?),
            Kind::BackendTlsPolicy => Object::BackendTlsPolicy(de(value)?),
            Kind::Namespace => Object::Namespace(de(value)?),
            Kind::Service => Object::Service(de(value)?),
            Kind::EndpointSlice => Object::EndpointSlice(de(value)?),
            Kind::Secret => Object::Secret(de(value)?),
            Kind::ConfigMap => Object::ConfigMap(de(value)?),
            Kind::Extension(k) => {
                Object::Extension(crate::extension::ExtensionObject::from_value(k, value)?)
            }
        })
    }
}
