//! The vector schema of `shared/conformance/FORMAT.md`, as serde types.
//!
//! Every struct denies unknown fields: a field the runner does not know is a
//! check it would silently skip, so a vector using one fails to read instead.

use std::collections::BTreeMap;

use serde::Deserialize;

/// One vector file: manifests, then steps of edits and expectations.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Vector {
    /// Upstream ShortName (or our scenario's name).
    pub name: String,
    /// What the vector checks.
    #[serde(default)]
    pub description: String,
    /// The upstream Go file the vector was transcribed from.
    #[serde(default)]
    pub upstream: Option<String>,
    /// Another upstream test whose Go body this one reuses.
    #[serde(default)]
    pub upstream_test: Option<String>,
    /// Upstream feature names this vector needs.
    #[serde(default)]
    pub features: Vec<String>,
    /// Manifest files applied in order before the first step.
    #[serde(default)]
    pub manifests: Vec<String>,
    /// The expectations need a real data plane.
    #[serde(default, rename = "wire_only")]
    pub wire_only: bool,
    /// Upstream marks the test provisional.
    #[serde(default)]
    pub provisional: bool,
    /// Passes vacuously if the implementation supports any of these.
    #[serde(default)]
    pub skip_if_features: Vec<String>,
    /// Passes vacuously unless the implementation supports all of these.
    #[serde(default)]
    pub run_if_features: Vec<String>,
    /// Objects the upstream suite creates in code.
    #[serde(default)]
    pub generated: Vec<Generated>,
    /// Our scenarios: the controller the implementation acts as. Absent for
    /// upstream vectors, which get a runner-made GatewayClass.
    #[serde(default)]
    pub controller_name: Option<String>,
    /// Upstream checks that do not fit the schema.
    #[serde(default)]
    pub notes: Option<String>,
    /// The steps, in order.
    pub steps: Vec<Step>,
}

/// A generated Secret or ConfigMap holding certificates.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Generated {
    /// `Secret` or `ConfigMap`.
    pub kind: String,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// `self-signed`, `ca`, `server` or `client`.
    pub cert: String,
    /// DNS names (and `spiffe://` URIs) for the certificate's SANs.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// The signing CA's ConfigMap name (same namespace).
    #[serde(default)]
    pub ca: Option<String>,
}

/// One step: edits, then checks.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Step {
    /// Extra manifest files to apply.
    #[serde(default)]
    pub apply: Vec<String>,
    /// Inline objects to create.
    #[serde(default)]
    pub create: Vec<serde_json::Value>,
    /// Patches.
    #[serde(default)]
    pub patch: Vec<Patch>,
    /// Deletions.
    #[serde(default)]
    pub delete: Vec<ObjectRef>,
    /// Namespaces whose Gateways (and Pods) must be ready.
    #[serde(default)]
    pub namespaces_ready: Vec<String>,
    /// GatewayClass expectations.
    #[serde(default)]
    pub gateway_classes: Vec<GatewayClassExpect>,
    /// Gateway expectations.
    #[serde(default)]
    pub gateways: Vec<GatewayExpect>,
    /// ListenerSet expectations (same shape as Gateways).
    #[serde(default)]
    pub listener_sets: Vec<GatewayExpect>,
    /// Route expectations.
    #[serde(default)]
    pub routes: Vec<RouteExpect>,
    /// Policy expectations.
    #[serde(default)]
    pub policies: Vec<PolicyExpect>,
    /// Requests.
    #[serde(default)]
    pub requests: Vec<RequestExpect>,
}

/// `{kind, namespace, name}`; `namespace` omitted for cluster-scoped kinds.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ObjectRef {
    /// Kind.
    pub kind: String,
    /// Namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
}

/// A patch: a JSON merge patch or one of the edits of FORMAT.md.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Patch {
    /// Kind.
    pub kind: String,
    /// Namespace (absent for cluster-scoped kinds).
    #[serde(default)]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// A JSON merge patch (RFC 7386).
    #[serde(default)]
    pub merge: Option<serde_json::Value>,
    /// Listeners to append to `spec.listeners`.
    #[serde(default)]
    pub append_listeners: Option<Vec<serde_json::Value>>,
    /// Listener names to keep in `spec.listeners`.
    #[serde(default)]
    pub keep_listeners: Option<Vec<String>>,
    /// `spec.addresses` values to drop.
    #[serde(default)]
    pub remove_addresses: Option<Vec<String>>,
    /// Rename one backendRef.
    #[serde(default)]
    pub set_backend_ref: Option<SetBackendRef>,
    /// Fill an EndpointSlice from a Deployment's pods.
    #[serde(default)]
    pub set_endpoints_from: Option<SetEndpointsFrom>,
    /// `metadata.generation` must change.
    #[serde(default)]
    pub expect_generation_change: bool,
}

/// `setBackendRef`: `spec.rules[rule].backendRefs[backendRef].name = name`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetBackendRef {
    /// Rule index.
    pub rule: usize,
    /// BackendRef index.
    pub backend_ref: usize,
    /// New name.
    pub name: String,
}

/// `setEndpointsFrom`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SetEndpointsFrom {
    /// `namespace/name` of the Deployment.
    pub deployment: String,
    /// `IPv4` or `IPv6`.
    pub address_family: String,
}

/// An expected condition: type, and status / reason when given.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CondExpect {
    /// Condition type.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True` / `False` / `Unknown`; absent = any.
    #[serde(default)]
    pub status: Option<String>,
    /// Reason; absent = any.
    #[serde(default)]
    pub reason: Option<String>,
}

impl std::fmt::Display for CondExpect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}={}",
            self.type_,
            self.status.as_deref().unwrap_or("*")
        )?;
        if let Some(r) = &self.reason {
            write!(f, " ({r})")?;
        }
        Ok(())
    }
}

/// GatewayClass expectations.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayClassExpect {
    /// Cluster-scoped name.
    pub name: String,
    /// Every condition's observedGeneration is current.
    #[serde(default)]
    pub latest_conditions: bool,
    /// Conditions that must be present.
    #[serde(default)]
    pub conditions: Vec<CondExpect>,
}

/// Gateway (or ListenerSet) expectations.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GatewayExpect {
    /// `namespace/name`.
    pub name: String,
    /// Every condition's observedGeneration is current.
    #[serde(default)]
    pub latest_conditions: bool,
    /// Conditions that must be present.
    #[serde(default)]
    pub conditions: Vec<CondExpect>,
    /// Listener expectations, by name.
    #[serde(default)]
    pub listeners: Vec<ListenerExpect>,
    /// `status.listeners` has exactly as many entries as listed.
    #[serde(default)]
    pub listeners_exact: bool,
    /// `present` or `absent`.
    #[serde(default)]
    pub addresses: Option<String>,
    /// Address list expectations.
    #[serde(default)]
    pub status_addresses: Option<StatusAddresses>,
    /// No listener, or one listener with 0 attached routes.
    #[serde(default)]
    pub zero_routes: bool,
    /// `status.attachedListenerSets`.
    #[serde(default)]
    pub attached_listener_sets: Option<i64>,
}

/// `statusAddresses`.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusAddresses {
    /// Exact number of addresses.
    #[serde(default)]
    pub count: Option<usize>,
    /// Values that must be present.
    #[serde(default)]
    pub includes: Vec<String>,
    /// Values that must be absent.
    #[serde(default)]
    pub excludes: Vec<String>,
    /// Each address's type equals the spec's.
    #[serde(default)]
    pub type_matches_spec: bool,
}

/// Listener expectations.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ListenerExpect {
    /// Listener name.
    pub name: String,
    /// Exact `attachedRoutes`.
    #[serde(default)]
    pub attached_routes: Option<i64>,
    /// Kinds that must be listed; `[]` = the list must be empty.
    #[serde(default)]
    pub supported_kinds: Option<Vec<KindExpect>>,
    /// Conditions that must be present.
    #[serde(default)]
    pub conditions: Vec<CondExpect>,
}

/// A route kind with its group.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindExpect {
    /// Group; absent = `gateway.networking.k8s.io`.
    #[serde(default)]
    pub group: Option<String>,
    /// Kind.
    pub kind: String,
}

/// Route expectations.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteExpect {
    /// Route kind.
    pub kind: String,
    /// `namespace/name`.
    pub name: String,
    /// Every `status.parents[].conditions` entry is current.
    #[serde(default)]
    pub latest_conditions: bool,
    /// Parent expectations.
    #[serde(default)]
    pub parents: Vec<ParentExpect>,
    /// parentRefs that must not appear in `status.parents`.
    #[serde(default)]
    pub not_parents: Vec<ParentRefExpect>,
    /// No parent, or one parent with Accepted=False.
    #[serde(default)]
    pub no_accepted_parents: bool,
}

/// One expected `status.parents` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParentExpect {
    /// The parentRef fields to match.
    pub parent_ref: ParentRefExpect,
    /// `controllerName` that must be equal (`{CONTROLLER_NAME}` = ours).
    #[serde(default)]
    pub controller_name: Option<String>,
    /// Whether `parentRef.namespace` must be present; default: route
    /// namespace ≠ parent namespace.
    #[serde(default)]
    pub namespace_required: Option<bool>,
    /// Conditions that must be present.
    #[serde(default)]
    pub conditions: Vec<CondExpect>,
}

/// The parentRef fields a check compares.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ParentRefExpect {
    /// Group, compared when listed.
    #[serde(default)]
    pub group: Option<String>,
    /// Kind, compared when listed.
    #[serde(default)]
    pub kind: Option<String>,
    /// Namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Name.
    pub name: String,
    /// Never compared upstream.
    #[serde(default)]
    pub section_name: Option<String>,
    /// Never compared upstream.
    #[serde(default)]
    pub port: Option<i64>,
}

/// Policy expectations.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyExpect {
    /// Policy kind.
    pub kind: String,
    /// `namespace/name`.
    pub name: String,
    /// Every `status.ancestors[].conditions` entry is current.
    #[serde(default)]
    pub latest_conditions: bool,
    /// Ancestor expectations.
    #[serde(default)]
    pub ancestors: Vec<AncestorExpect>,
}

/// One expected `status.ancestors` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AncestorExpect {
    /// The ancestor to find.
    pub ancestor_ref: ParentRefExpect,
    /// Conditions that must be present.
    #[serde(default)]
    pub conditions: Vec<CondExpect>,
}

/// A request sent to a Gateway and what must come back.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestExpect {
    /// `http` (default), `grpc`, `tcp`, `udp`, `tls-connect`, `websocket`, `dns`.
    #[serde(default)]
    pub kind: Option<String>,
    /// `namespace/name` of the Gateway.
    pub gateway: String,
    /// The Gateway port.
    #[serde(default)]
    pub port: Option<u16>,
    /// Upstream test-case name.
    #[serde(default)]
    pub name: Option<String>,
    /// Needs a real data plane.
    #[serde(default, rename = "wire_only")]
    pub wire_only: bool,
    /// The request.
    #[serde(default)]
    pub request: RequestSpec,
    /// TLS for HTTPS / TLS requests.
    #[serde(default)]
    pub tls: Option<TlsSpec>,
    /// What the backend must receive.
    #[serde(default)]
    pub expected_request: Option<ExpectedRequest>,
    /// Expected redirect target.
    #[serde(default)]
    pub redirect_request: Option<RedirectExpect>,
    /// Headers the echo backend is asked to set in its response.
    #[serde(default)]
    pub backend_set_response_headers: BTreeMap<String, String>,
    /// The response.
    #[serde(default)]
    pub response: ResponseExpect,
    /// Service name (pod name prefix) that must answer.
    #[serde(default)]
    pub backend: Option<String>,
    /// The backend's namespace.
    #[serde(default)]
    pub namespace: Option<String>,
    /// Mirror targets.
    #[serde(default)]
    pub mirrored_to: Vec<MirrorExpect>,
    /// Append a request id to the path.
    #[serde(default)]
    pub add_request_id: bool,
    /// Expected traffic shares.
    #[serde(default)]
    pub weights: BTreeMap<String, f64>,
    /// Tolerance of `weights`.
    #[serde(default)]
    pub tolerance: Option<f64>,
    /// Samples per attempt.
    #[serde(default)]
    pub samples: Option<u32>,
    /// Attempts.
    #[serde(default)]
    pub attempts: Option<u32>,
    /// Binomial tolerance of mirrored percentages.
    #[serde(default)]
    pub tolerance_std_devs: Option<f64>,
    /// Send N times.
    #[serde(default)]
    pub repeat: Option<u32>,
    /// The backend saw exactly one header H and the pod name starts with its value.
    #[serde(default)]
    pub backend_matches_request_header: Option<String>,
    /// `status`, `transport` or `rejected`.
    #[serde(default)]
    pub expect_failure: Option<String>,
    /// tcp: a connection opens.
    #[serde(default)]
    pub connect_only: bool,
    /// tcp: one greeting round-trip.
    #[serde(default)]
    pub echo_only: bool,
    /// websocket messages.
    #[serde(default)]
    pub messages: Vec<serde_json::Value>,
    /// udp: the echo's service field.
    #[serde(default)]
    pub service: Option<String>,
    /// udp: pod name minus its last two `-` parts.
    #[serde(default)]
    pub backend_name: Option<String>,
}

/// The request part (http, grpc, dns and websocket fields together).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestSpec {
    /// Host header.
    #[serde(default)]
    pub host: Option<String>,
    /// HTTP method (http) or gRPC method (grpc).
    #[serde(default)]
    pub method: Option<String>,
    /// Path, possibly with a query.
    #[serde(default)]
    pub path: Option<String>,
    /// Request headers.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// `H2` or `H2C_PRIOR_KNOWLEDGE`.
    #[serde(default)]
    pub protocol: Option<String>,
    /// TLS server name.
    #[serde(default)]
    pub sni: Option<String>,
    /// Do not follow redirects.
    #[serde(default)]
    pub unfollow_redirect: bool,
    /// grpc: service.
    #[serde(default)]
    pub service: Option<String>,
    /// grpc: authority.
    #[serde(default)]
    pub authority: Option<String>,
    /// grpc: metadata.
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// dns: question.
    #[serde(default)]
    pub question: Option<String>,
    /// dns: record type.
    #[serde(default, rename = "type")]
    pub type_: Option<String>,
    /// websocket: Origin.
    #[serde(default)]
    pub origin: Option<String>,
    /// Client certificate to offer.
    #[serde(default)]
    pub client_cert: Option<serde_json::Value>,
}

/// TLS client settings.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsSpec {
    /// SNI.
    #[serde(default)]
    pub server_name: Option<String>,
    /// Trust the `tls.crt` of this Secret.
    #[serde(default)]
    pub trust_secret: Option<String>,
    /// Trust the `ca.crt` of this ConfigMap.
    #[serde(default)]
    pub trust_config_map: Option<String>,
    /// Client certificate Secret.
    #[serde(default)]
    pub client_cert_secret: Option<String>,
}

/// What the backend must receive.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExpectedRequest {
    /// Host; empty = not checked.
    #[serde(default)]
    pub host: Option<String>,
    /// Path (with query); `""` = no echo body.
    #[serde(default)]
    pub path: Option<String>,
    /// Method; empty = GET.
    #[serde(default)]
    pub method: Option<String>,
    /// Headers (repeated values joined by `,`).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers that must be absent.
    #[serde(default)]
    pub absent_headers: Vec<String>,
    /// SNI the backend saw.
    #[serde(default)]
    pub sni: Option<String>,
    /// Client certificate the backend saw.
    #[serde(default)]
    pub client_cert: Option<serde_json::Value>,
    /// Port the backend saw.
    #[serde(default)]
    pub http_port: Option<serde_json::Value>,
}

/// Expected redirect target.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedirectExpect {
    /// Scheme; empty = the request's.
    #[serde(default)]
    pub scheme: Option<String>,
    /// Host; empty = any.
    #[serde(default)]
    pub host: Option<String>,
    /// Port; empty = default port or absent.
    #[serde(default)]
    pub port: Option<String>,
    /// Path; empty = the request's.
    #[serde(default)]
    pub path: Option<String>,
}

/// Expected response.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResponseExpect {
    /// Acceptable status codes.
    #[serde(default)]
    pub status_codes: Vec<u16>,
    /// Response headers that must be equal.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Response headers that must be absent.
    #[serde(default)]
    pub absent_headers: Vec<String>,
    /// Each listed header must have one of these values.
    #[serde(default)]
    pub valid_header_values: BTreeMap<String, Vec<String>>,
    /// Compare header values ignoring whitespace.
    #[serde(default)]
    pub ignore_whitespace: bool,
    /// grpc: code name.
    #[serde(default)]
    pub code: Option<String>,
    /// tcp: the backend saw TLS.
    #[serde(default, rename = "backendIsTLS")]
    pub backend_is_tls: Option<bool>,
    /// tcp: the SNI the backend saw.
    #[serde(default)]
    pub sni: Option<String>,
    /// tcp: TLS protocol.
    #[serde(default)]
    pub tls_protocol: Option<String>,
}

/// A mirror target.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MirrorExpect {
    /// Service name.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Port.
    #[serde(default)]
    pub port: Option<u16>,
    /// Mirrored share, percent.
    #[serde(default)]
    pub percent: Option<f64>,
}

/// Reads a vector from YAML text; the error names the field path.
pub fn parse_vector(text: &str) -> Result<Vector, String> {
    let de = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        format!("at {path}: {}", e.into_inner())
    })
}
