//! The kinds gwcore-k8s watches: where each is served, and how an API
//! object becomes a [`gwcore::model::Object`].
//!
//! Objects are watched as [`DynamicObject`]s and converted with serde into
//! gwcore's own model, then defaulted and validated by
//! [`gwcore::validate::validate`] — the same path `gwcore check` takes for
//! files. Why not typed CRD structs (the `gateway-api` crate):
//! - a typed watcher fails a whole list when one object does not
//!   deserialize, and API servers older than 1.25 accept objects the CRDs'
//!   CEL rules would refuse; here a bad object costs only itself and gets a
//!   diagnostic naming the field;
//! - one kind is served under several versions (TLSRoute `v1alpha2`,
//!   `v1alpha3`, `v1`; EndpointSlice `discovery.k8s.io/v1beta1` before 1.21,
//!   which k8s-openapi no longer models), so the version is chosen at run
//!   time by discovery;
//! - the conversion into gwcore's model is serde either way; a typed
//!   intermediate would only add a lossy hop and a large compile.

use std::collections::BTreeMap;

use gwcore::extension::{ExtensionKind, Extensions};
use gwcore::model::{Kind, Object, ObjectKey};
use gwcore::status::GatewayStatusAddress;
use kube::Client;
use kube::core::{ApiResource, DynamicObject, GroupVersionKind, Version};
use kube::discovery;

/// The API groups whose kinds are found by discovery.
/// The Gateway API group comes first: a kind served in both (ListenerSet
/// as `ListenerSet` and as `XListenerSet`) is watched from it.
const GATEWAY_GROUPS: [&str; 2] = [gwcore::model::GATEWAY_GROUP, gwcore::model::GATEWAY_X_GROUP];

/// Kinds without which the controller has nothing to do.
const REQUIRED: [Kind; 3] = [Kind::GatewayClass, Kind::Gateway, Kind::HttpRoute];

/// Where each watched kind is served: one [`ApiResource`] per kind.
#[derive(Debug, Clone, Default)]
pub struct Served {
    resources: BTreeMap<Kind, ApiResource>,
}

impl Served {
    /// The resource of `kind`, when the server serves it.
    pub fn resource(&self, kind: Kind) -> Option<&ApiResource> {
        self.resources.get(&kind)
    }

    /// Every served kind with its resource, in [`Kind`] order.
    pub fn iter(&self) -> impl Iterator<Item = (Kind, &ApiResource)> {
        self.resources.iter().map(|(k, r)| (*k, r))
    }

    /// Builds the set from explicit resources (for tests and fixed setups).
    pub fn from_resources(resources: impl IntoIterator<Item = (Kind, ApiResource)>) -> Served {
        Served {
            resources: resources.into_iter().collect(),
        }
    }

    /// Asks the API server which versions it serves and picks, for each
    /// kind gwcore reads, the most stable version gwcore accepts.
    ///
    /// Core kinds (Namespace, Service, Secret, ConfigMap) are always `v1`.
    /// EndpointSlice is `discovery.k8s.io/v1`, or `v1beta1` where v1 is not
    /// served (Kubernetes < 1.21). ConfigMaps are only watched when
    /// BackendTLSPolicy is served: they are read only as its CA
    /// certificates.
    ///
    /// [`Kind::ListenerSet`] is `ListenerSet` in
    /// `gateway.networking.k8s.io` where that is served (Gateway API v1.5
    /// on), else `XListenerSet` in `gateway.networking.x-k8s.io` (the
    /// experimental channel of v1.3 and v1.4): one of the two is watched,
    /// and statuses are written to the one watched.
    pub async fn discover(client: &Client) -> Result<Served, DiscoveryError> {
        Served::discover_extended(client, &Extensions::default()).await
    }

    /// [`Served::discover`], and the kinds `extensions` register (filter
    /// and policy kinds, [`gwcore::extension`]): for each, the version
    /// the kind names when the server serves it, else the group's most
    /// stable version serving the kind; its plural comes from the server.
    ///
    /// A registered kind the server does not serve (its CRD is not
    /// installed), or serves cluster-scoped (gwcore resolves extension
    /// objects in a namespace), is skipped with a warning: references to
    /// its objects do not resolve and its policies apply nowhere. Kinds
    /// are discovered once, when the controller starts: a CRD installed
    /// later is read after a restart.
    pub async fn discover_extended(
        client: &Client,
        extensions: &Extensions,
    ) -> Result<Served, DiscoveryError> {
        let mut resources = BTreeMap::new();
        for kind in [Kind::Namespace, Kind::Service, Kind::Secret] {
            resources.insert(kind, core_v1(kind));
        }
        let slices = discovery::group(client, "discovery.k8s.io").await?;
        if let Some(ar) = best_version(&slices, Kind::EndpointSlice) {
            resources.insert(Kind::EndpointSlice, ar);
        }
        let groups = client.list_api_groups().await?;
        for name in GATEWAY_GROUPS {
            if !groups.groups.iter().any(|g| g.name == name) {
                continue;
            }
            let group = discovery::group(client, name).await?;
            for kind in Kind::ALL {
                if resources.contains_key(&kind) || kind.group() != gwcore::model::GATEWAY_GROUP {
                    continue;
                }
                if let Some(ar) = best_version(&group, kind) {
                    resources.insert(kind, ar);
                }
            }
        }
        if resources.contains_key(&Kind::BackendTlsPolicy) {
            resources.insert(Kind::ConfigMap, core_v1(Kind::ConfigMap));
        }
        let mut extension_groups: BTreeMap<&str, discovery::ApiGroup> = BTreeMap::new();
        for ext in extensions.kinds() {
            let group = ext.group();
            if !extension_groups.contains_key(group) {
                if !groups.groups.iter().any(|g| g.name == group) {
                    tracing::warn!(kind = %ext, api_version = ext.api_version(),
                        "extension kind not served (no API group {group}; is its CRD installed?); its objects are not read");
                    continue;
                }
                extension_groups.insert(group, discovery::group(client, group).await?);
            }
            let group = &extension_groups[group];
            match extension_version(group, ext) {
                Some((ar, true)) => {
                    resources.insert(Kind::Extension(ext), ar);
                }
                Some((ar, false)) => tracing::warn!(
                    kind = %ext, api_version = %ar.api_version,
                    "extension kind served cluster-scoped; gwcore reads extension objects in namespaces only: its objects are not read"
                ),
                None => tracing::warn!(
                    kind = %ext, api_version = ext.api_version(),
                    "extension kind not served (is its CRD installed?); its objects are not read"
                ),
            }
        }
        let missing: Vec<&str> = REQUIRED
            .iter()
            .filter(|k| !resources.contains_key(k))
            .map(|k| k.as_str())
            .collect();
        if !missing.is_empty() {
            return Err(DiscoveryError::MissingCrds(missing.join(", ")));
        }
        Ok(Served { resources })
    }
}

/// Why discovery failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DiscoveryError {
    /// The API server could not be asked.
    #[error("discovery: {0}")]
    Api(#[from] kube::Error),
    /// The Gateway API CRDs are not installed.
    #[error(
        "the Gateway API CRDs are not installed (not served: {0}); install them first: https://gateway-api.sigs.k8s.io/guides/#installing-gateway-api"
    )]
    MissingCrds(String),
}

fn core_v1(kind: Kind) -> ApiResource {
    let plural = match kind {
        Kind::Namespace => "namespaces",
        Kind::Service => "services",
        Kind::Secret => "secrets",
        _ => "configmaps",
    };
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk("", "v1", kind.as_str()), plural)
}

/// The most stable version of `kind` in `group` that gwcore reads; else
/// (a version newer than gwcore knows, such as TCPRoute `v1` of Gateway API
/// 1.5+) the most stable version served. Gateway API versions of one kind
/// share one schema — the server converts between them with no webhook —
/// so gwcore's model reads any of them.
fn best_version(group: &discovery::ApiGroup, kind: Kind) -> Option<ApiResource> {
    let mut versions: Vec<&str> = group.versions().collect();
    versions.sort_by_key(|v| std::cmp::Reverse(Version::parse(v).priority()));
    let served = versions
        .into_iter()
        .flat_map(|v| group.versioned_resources(v))
        .map(|(ar, _)| ar);
    pick_version(served, kind)
}

/// [`best_version`] among a group's resources, most stable version first:
/// the first that gwcore reads as `kind` ([`Kind::reads`]: for a
/// ListenerSet, `XListenerSet` in the experimental group), else the first
/// spelled as `kind`.
fn pick_version(served: impl IntoIterator<Item = ApiResource>, kind: Kind) -> Option<ApiResource> {
    let served: Vec<ApiResource> = served
        .into_iter()
        .filter(|ar| kind.is_spelled(&ar.kind))
        .collect();
    served
        .iter()
        .find(|ar| kind.reads(&ar.kind, &ar.api_version))
        .or(served.first())
        .cloned()
}

/// The resource of a registered kind: its own version when served, else
/// the group's most stable version serving it; with whether it is
/// namespaced.
fn extension_version(
    group: &discovery::ApiGroup,
    kind: ExtensionKind,
) -> Option<(ApiResource, bool)> {
    let mut versions: Vec<&str> = group.versions().collect();
    versions.sort_by_key(|v| std::cmp::Reverse(Version::parse(v).priority()));
    let served: Vec<(ApiResource, bool)> = versions
        .into_iter()
        .flat_map(|v| group.versioned_resources(v))
        .filter(|(ar, _)| ar.kind == kind.kind())
        .map(|(ar, caps)| (ar, caps.scope == discovery::Scope::Namespaced))
        .collect();
    served
        .iter()
        .find(|(ar, _)| ar.api_version == kind.api_version())
        .or(served.first())
        .cloned()
}

/// An API object after conversion.
#[derive(Debug, Clone, PartialEq)]
// Nearly every update is `Valid`; boxing it would cost an allocation each.
#[allow(clippy::large_enum_variant)]
pub enum Converted {
    /// A valid object, CRD defaults applied.
    Valid(Object),
    /// An object gwcore refuses (it would have failed the CRDs' validation,
    /// which API servers older than 1.25 do not fully run). Left out of the
    /// snapshot, as the file loader leaves it out.
    Invalid {
        /// The object.
        key: ObjectKey,
        /// Its `metadata.resourceVersion`.
        resource_version: Option<String>,
        /// One line per problem: `field: message`.
        errors: Vec<String>,
    },
}

impl Converted {
    /// The object's key.
    pub fn key(&self) -> ObjectKey {
        match self {
            Converted::Valid(o) => o.key(),
            Converted::Invalid { key, .. } => key.clone(),
        }
    }
}

/// Converts a watched object of `kind` into gwcore's model.
///
/// An object of a registered kind ([`Kind::Extension`]) becomes an
/// [`Object::Extension`], its `spec` and `status` kept as JSON for the
/// extension to parse, with the `apiVersion` it was read with.
///
/// `metadata.managedFields` is dropped first: gwcore never reads it, and it
/// is often the largest part of an object.
pub fn convert(kind: Kind, mut obj: DynamicObject) -> Converted {
    obj.metadata.managed_fields = None;
    let key = ObjectKey::new(
        kind,
        obj.metadata.namespace.clone().unwrap_or_default(),
        obj.metadata.name.clone().unwrap_or_default(),
    );
    let resource_version = obj.metadata.resource_version.clone();
    let value = match serde_json::to_value(&obj) {
        Ok(v) => v,
        Err(e) => {
            return Converted::Invalid {
                key,
                resource_version,
                errors: vec![format!("cannot be read as JSON: {e}")],
            };
        }
    };
    let mut object = match Object::from_value(kind, value) {
        Ok(o) => o,
        Err(e) => {
            let path = e.path().to_string();
            return Converted::Invalid {
                key,
                resource_version,
                errors: vec![format!("{path}: {}", e.into_inner())],
            };
        }
    };
    let errors = gwcore::validate::validate(&mut object);
    if errors.is_empty() {
        Converted::Valid(object)
    } else {
        Converted::Invalid {
            key,
            resource_version,
            errors: errors
                .into_iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect(),
        }
    }
}

/// The addresses in a Service's `status.loadBalancer.ingress`, as Gateway
/// status addresses (`IPAddress` or `Hostname`).
pub fn load_balancer_addresses(obj: &DynamicObject) -> Vec<GatewayStatusAddress> {
    let ingress = obj
        .data
        .pointer("/status/loadBalancer/ingress")
        .and_then(|i| i.as_array());
    let mut out = Vec::new();
    for entry in ingress.into_iter().flatten() {
        if let Some(ip) = entry.get("ip").and_then(|v| v.as_str()) {
            out.push(GatewayStatusAddress {
                type_: Some(gwcore::values::AddressType::IpAddress),
                value: ip.to_string(),
            });
        } else if let Some(host) = entry.get("hostname").and_then(|v| v.as_str()) {
            out.push(GatewayStatusAddress {
                type_: Some(gwcore::values::AddressType::Hostname),
                value: host.to_string(),
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dynamic(kind: &str, api_version: &str, v: serde_json::Value) -> DynamicObject {
        let mut v = v;
        v["kind"] = kind.into();
        v["apiVersion"] = api_version.into();
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn route_is_converted_with_defaults() {
        let obj = dynamic(
            "HTTPRoute",
            "gateway.networking.k8s.io/v1",
            serde_json::json!({
                "metadata": {"name": "r", "namespace": "n", "resourceVersion": "7", "generation": 2,
                    "managedFields": [{"manager": "kubectl"}]},
                "spec": {"parentRefs": [{"name": "gw"}], "rules": [{"backendRefs": [{"name": "s", "port": 80}]}]},
                "status": {"parents": [{"parentRef": {"name": "gw"}, "controllerName": "other.io/c", "conditions": []}]}
            }),
        );
        let Converted::Valid(Object::HttpRoute(r)) = convert(Kind::HttpRoute, obj) else {
            panic!("expected a valid HTTPRoute")
        };
        assert_eq!(r.metadata.resource_version.as_deref(), Some("7"));
        assert_eq!(r.metadata.generation, Some(2));
        // The path match default `PathPrefix /` is applied, as the API server would.
        let m = &r.spec.rules[0].matches[0];
        assert_eq!(m.path.as_ref().and_then(|p| p.value.as_deref()), Some("/"));
        // The current status is kept: the engine preserves other controllers' entries from it.
        assert_eq!(r.status.unwrap().parents[0].controller_name, "other.io/c");
    }

    #[test]
    fn object_failing_validation_is_invalid_with_field() {
        // Accepted by a 1.20 API server (the rule is CEL), refused by the CRD on 1.25+.
        let obj = dynamic(
            "HTTPRoute",
            "gateway.networking.k8s.io/v1",
            serde_json::json!({
                "metadata": {"name": "r", "namespace": "n", "resourceVersion": "3"},
                "spec": {"rules": [{"matches": [{"path": {"type": "Exact", "value": "no-slash"}}]}]}
            }),
        );
        match convert(Kind::HttpRoute, obj) {
            Converted::Invalid {
                key,
                resource_version,
                errors,
            } => {
                assert_eq!(key, ObjectKey::new(Kind::HttpRoute, "n", "r"));
                assert_eq!(resource_version.as_deref(), Some("3"));
                assert!(
                    errors[0].starts_with("spec.rules[0].matches[0].path"),
                    "{errors:?}"
                );
            }
            other => panic!("expected Invalid, got {other:?}"),
        }
    }

    #[test]
    fn wrong_type_names_the_field() {
        let obj = dynamic(
            "Gateway",
            "gateway.networking.k8s.io/v1",
            serde_json::json!({
                "metadata": {"name": "g", "namespace": "n"},
                "spec": {"gatewayClassName": "c", "listeners": [{"name": "a", "port": "eighty", "protocol": "HTTP"}]}
            }),
        );
        let Converted::Invalid { errors, .. } = convert(Kind::Gateway, obj) else {
            panic!("expected Invalid")
        };
        assert!(
            errors[0].starts_with("spec.listeners[0].port"),
            "{errors:?}"
        );
    }

    fn resource(api_version: &str, kind: &str, plural: &str) -> ApiResource {
        let (group, version) = api_version.rsplit_once('/').unwrap_or(("", api_version));
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
    }

    #[test]
    fn listenerset_is_found_under_either_name() {
        // The experimental group of Gateway API v1.4: XListenerSet.
        let x = [
            resource(
                "gateway.networking.x-k8s.io/v1alpha1",
                "XBackendTrafficPolicy",
                "xbackendtrafficpolicies",
            ),
            resource(
                "gateway.networking.x-k8s.io/v1alpha1",
                "XListenerSet",
                "xlistenersets",
            ),
        ];
        let ar = pick_version(x, Kind::ListenerSet).expect("XListenerSet found");
        assert_eq!(
            (ar.kind.as_str(), ar.plural.as_str()),
            ("XListenerSet", "xlistenersets")
        );
        // The Gateway API group of v1.5 on: ListenerSet.
        let std = [
            resource("gateway.networking.k8s.io/v1", "Gateway", "gateways"),
            resource(
                "gateway.networking.k8s.io/v1",
                "ListenerSet",
                "listenersets",
            ),
        ];
        let ar = pick_version(std, Kind::ListenerSet).expect("ListenerSet found");
        assert_eq!(ar.kind, "ListenerSet");
        // Neither name is another kind.
        let x = [resource(
            "gateway.networking.x-k8s.io/v1alpha1",
            "XListenerSet",
            "xlistenersets",
        )];
        assert_eq!(pick_version(x, Kind::Gateway), None);
    }

    #[test]
    fn xlistenerset_is_a_listenerset_served_under_its_name() {
        let obj = dynamic(
            "XListenerSet",
            "gateway.networking.x-k8s.io/v1alpha1",
            serde_json::json!({
                "metadata": {"name": "ls", "namespace": "n"},
                "spec": {"parentRef": {"name": "gw"}, "listeners": [{"name": "l", "port": 80, "protocol": "HTTP"}]}
            }),
        );
        let Converted::Valid(o) = convert(Kind::ListenerSet, obj) else {
            panic!("expected a valid XListenerSet")
        };
        assert_eq!(o.key(), ObjectKey::new(Kind::ListenerSet, "n", "ls"));
        let Object::ListenerSet(ls) = &o else {
            panic!("{o:?}")
        };
        assert_eq!(ls.served_as, gwcore::model::ListenerSetKind::XListenerSet);
        assert_eq!(o.manifest_kind(), "XListenerSet");
    }

    #[test]
    fn v1beta1_endpoint_slice_is_read() {
        let obj = dynamic(
            "EndpointSlice",
            "discovery.k8s.io/v1beta1",
            serde_json::json!({
                "metadata": {"name": "s-1", "namespace": "n", "labels": {"kubernetes.io/service-name": "s"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.0.0.1"], "conditions": {"ready": true}, "topology": {"kubernetes.io/hostname": "a"}}],
                "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}]
            }),
        );
        let Converted::Valid(Object::EndpointSlice(s)) = convert(Kind::EndpointSlice, obj) else {
            panic!("expected a valid EndpointSlice")
        };
        assert_eq!(s.endpoints[0].addresses, vec!["10.0.0.1".to_string()]);
        assert_eq!(s.ports[0].port, Some(8080));
    }

    #[test]
    fn object_of_a_registered_kind_is_an_extension_object() {
        const TEST_POLICY: ExtensionKind = ExtensionKind::new("example.com/v1", "TestPolicy");
        let obj = dynamic(
            "TestPolicy",
            "example.com/v1beta1",
            serde_json::json!({
                "metadata": {"name": "p", "namespace": "n", "resourceVersion": "4", "generation": 3,
                    "managedFields": [{"manager": "kubectl"}]},
                "spec": {"targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}],
                    "limit": 10},
                "status": {"ancestors": [], "observed": "theirs"}
            }),
        );
        let Converted::Valid(Object::Extension(p)) = convert(Kind::Extension(TEST_POLICY), obj)
        else {
            panic!("expected a valid extension object")
        };
        assert_eq!(p.kind, TEST_POLICY);
        // Read as served; the kind still names its registered version.
        assert_eq!(p.api_version, "example.com/v1beta1");
        assert_eq!(
            Object::Extension(p.clone()).key(),
            ObjectKey::new(Kind::Extension(TEST_POLICY), "n", "p")
        );
        assert_eq!(p.metadata.resource_version.as_deref(), Some("4"));
        assert_eq!(p.metadata.generation, Some(3));
        assert_eq!(p.spec["limit"], 10);
        assert_eq!(p.status.unwrap()["observed"], "theirs");
    }

    #[test]
    fn load_balancer_ingress_becomes_addresses() {
        let obj = dynamic(
            "Service",
            "v1",
            serde_json::json!({
                "metadata": {"name": "gw", "namespace": "gwcore-system"},
                "status": {"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}, {"hostname": "lb.example.com"}]}}
            }),
        );
        let a = load_balancer_addresses(&obj);
        assert_eq!(a.len(), 2);
        assert_eq!(
            (a[0].type_.as_ref().map(|t| t.as_str()), a[0].value.as_str()),
            (Some("IPAddress"), "203.0.113.7")
        );
        assert_eq!(
            (a[1].type_.as_ref().map(|t| t.as_str()), a[1].value.as_str()),
            (Some("Hostname"), "lb.example.com")
        );
    }
}
