//! The Service each of our Gateways gets when [`crate::Options::gateway_services`]
//! is set: which one, as a pure function of the Gateway (no API server
//! here; the controller applies what [`desired`] returns with server-side
//! apply and reads addresses back with [`service_addresses`]).
//!
//! - Name: `gwcore-<gateway name>` ([`service_name`]), in the Gateway's
//!   namespace.
//! - Ports: one per distinct (port, protocol) of the Gateway's listeners
//!   and of the listeners of its accepted ListenerSets; `UDP` for `UDP`
//!   listeners, `TCP` for the others; listeners of a protocol gwcore does
//!   not serve add none. No port: no Service.
//! - Labels and annotations: the Gateway's `spec.infrastructure` ones,
//!   plus `gateway.networking.k8s.io/gateway-name` (as the spec
//!   recommends) and `app.kubernetes.io/managed-by: gwcore`, which win.
//! - Annotations: the Gateway's `spec.infrastructure` ones, plus
//!   [`CONTROLLER_ANNOTATION`] naming the controller that made it, which
//!   wins.
//! - Owner: the Gateway (`controller: true`), so that a cluster's garbage
//!   collector deletes the Service with it. gwcore does not count on one
//!   (a cluster without kube-controller-manager has none, and a Service
//!   could outlive its Gateway while gwcore was down): the Services
//!   [`stale`] finds, those it made whose Gateway is gone or no longer
//!   wants one, are deleted by the controller too.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use gwcore::attachments::{GatewayRouting, ListenerProtocol};
use gwcore::model::{Gateway, Kind, ObjectKey};
use gwcore::snapshot::Snapshot;
use gwcore::status::GatewayStatusAddress;
use k8s_openapi::api::core::v1::{Pod, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::core::{ApiResource, DynamicObject};
use serde_json::json;

/// The label naming the Gateway a Service was made for.
pub const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";
/// The label marking the Services gwcore manages.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// [`MANAGED_BY_LABEL`]'s value.
pub const MANAGED_BY: &str = "gwcore";
/// The annotation naming the controller (`controllerName`) a Service was
/// made by: each gwcore deployment cleans up only its own.
pub const CONTROLLER_ANNOTATION: &str = "gwcore.dev/controller-name";
/// The label naming the Service an EndpointSlice belongs to.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming the controller that keeps an EndpointSlice: Kubernetes'
/// own leaves the slices of other values alone.
pub const SLICE_MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// [`SLICE_MANAGED_BY_LABEL`]'s value on gwcore's slices (a label value:
/// no `/`, so not the controller name, which is in
/// [`CONTROLLER_ANNOTATION`]).
pub const SLICE_MANAGED_BY: &str = "endpointslice-controller.gwcore.dev";
/// The most endpoints one EndpointSlice may hold (the API's limit).
pub const MAX_SLICE_ENDPOINTS: usize = 1000;

/// What the Services of Gateways look like.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GatewayServiceOptions {
    /// `spec.type`. Default `LoadBalancer`.
    pub service_type: String,
    /// The labels of the gwcore proxy pods. Default: deploy/'s labels,
    /// `app.kubernetes.io/name: gwcore`, `app.kubernetes.io/component: gateway`.
    /// A Service selects pods of its own namespace only, the Gateway's:
    /// see [`GatewayServiceOptions::pods_namespace`].
    pub selector: BTreeMap<String, String>,
    /// The namespace the proxy pods run in. A Gateway there gets a
    /// Service with [`GatewayServiceOptions::selector`] as `spec.selector`;
    /// a Gateway in another namespace, where no selector could reach the
    /// pods, gets a Service without one and EndpointSlices
    /// ([`desired_slices`]) that gwcore keeps listing the ready pods.
    /// Default `None`: every Service has the selector (the pods run in
    /// each Gateway's namespace).
    pub pods_namespace: Option<String>,
    /// The pods' port (number or name) for a Gateway port; a port not
    /// listed goes to the same number. Default: none.
    pub target_ports: BTreeMap<u16, IntOrString>,
    /// The pods' port for a port of one Gateway: wins over
    /// [`GatewayServiceOptions::target_ports`] (as `gwcore serve --listen
    /// NS/NAME:PORT=ADDR` binds one Gateway's port elsewhere). Default: none.
    pub gateway_target_ports: BTreeMap<ObjectKey, BTreeMap<u16, IntOrString>>,
    /// The field manager of server-side apply. Default `gwcore`.
    pub field_manager: String,
}

impl Default for GatewayServiceOptions {
    fn default() -> Self {
        GatewayServiceOptions {
            service_type: "LoadBalancer".into(),
            selector: [
                ("app.kubernetes.io/name", "gwcore"),
                ("app.kubernetes.io/component", "gateway"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
            pods_namespace: None,
            target_ports: BTreeMap::new(),
            gateway_target_ports: BTreeMap::new(),
            field_manager: "gwcore".into(),
        }
    }
}

impl GatewayServiceOptions {
    /// Sends Gateway port `port` to `target` on the pods: a port number
    /// (`8080`) or the name of a container port (`http`). The error says
    /// what is wrong with `target`.
    pub fn with_target_port(mut self, port: u16, target: &str) -> Result<Self, String> {
        self.target_ports.insert(port, parse_target(target)?);
        Ok(self)
    }

    /// Sends port `port` of Gateway `gateway` only to `target` on the pods
    /// (as [`GatewayServiceOptions::with_target_port`]; this wins over it).
    pub fn with_gateway_target_port(
        mut self,
        gateway: ObjectKey,
        port: u16,
        target: &str,
    ) -> Result<Self, String> {
        let t = parse_target(target)?;
        self.gateway_target_ports
            .entry(gateway)
            .or_default()
            .insert(port, t);
        Ok(self)
    }

    /// The pods' port for port `port` of Gateway `gateway`: that
    /// Gateway's ([`GatewayServiceOptions::gateway_target_ports`]), else
    /// the port's ([`GatewayServiceOptions::target_ports`]), else `port`.
    pub fn target_port(&self, gateway: &ObjectKey, port: u16) -> IntOrString {
        self.gateway_target_ports
            .get(gateway)
            .and_then(|m| m.get(&port))
            .or_else(|| self.target_ports.get(&port))
            .cloned()
            .unwrap_or(IntOrString::Int(i32::from(port)))
    }

    /// Whether the Service of a Gateway in namespace `namespace` selects
    /// the proxy pods itself (they run there, or
    /// [`GatewayServiceOptions::pods_namespace`] is not set); else gwcore
    /// writes its EndpointSlices.
    pub fn selects_pods(&self, namespace: &str) -> bool {
        self.pods_namespace
            .as_deref()
            .is_none_or(|ns| ns == namespace)
    }
}

/// A target port: a port number or a container port's name.
fn parse_target(target: &str) -> Result<IntOrString, String> {
    Ok(match target.parse::<u16>() {
        Ok(0) => return Err(format!("target port {target}: 0 is not a port")),
        Ok(n) => IntOrString::Int(i32::from(n)),
        // A container port's name (IANA_SVC_NAME): at most 15
        // lowercase letters, digits and single inner dashes, with a
        // letter.
        Err(_)
            if target.len() <= 15
                && target
                    .bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
                && target.bytes().any(|c| c.is_ascii_lowercase())
                && !target.starts_with('-')
                && !target.ends_with('-')
                && !target.contains("--") =>
        {
            IntOrString::String(target.to_string())
        }
        Err(_) => {
            return Err(format!(
                "target port {target:?}: neither a port number nor a container port name \
                 (at most 15 lowercase letters, digits and dashes)"
            ));
        }
    })
}

/// The name of Gateway `gateway`'s Service: `gwcore-<gateway>`, a valid
/// Service name (a DNS-1035 label). A Gateway name that does not fit as
/// is (dots, over 56 characters) is shortened and given a hash of the
/// whole name, so that two Gateways never share a Service.
pub fn service_name(gateway: &str) -> String {
    let plain = format!("gwcore-{gateway}");
    if plain.len() <= 63 && !gateway.contains('.') {
        return plain;
    }
    // FNV-1a, 32 bits: stable across releases and platforms.
    let hash = gateway.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    let mut stem: String = plain.replace('.', "-").chars().take(63 - 9).collect();
    while stem.ends_with('-') {
        stem.pop();
    }
    format!("{stem}-{hash:08x}")
}

/// The distinct (port, protocol) pairs a Gateway's Service exposes: its
/// own listeners and those `routing` adds (accepted ListenerSets'), sorted.
pub fn listener_ports(
    gateway: &Gateway,
    routing: Option<&GatewayRouting>,
) -> BTreeSet<(u16, ListenerProtocol)> {
    let own = gateway.spec.listeners.iter().filter_map(|l| {
        let port = u16::try_from(l.port).ok().filter(|p| *p != 0)?;
        Some((port, ListenerProtocol::from_spec(&l.protocol)?))
    });
    let sets = routing
        .into_iter()
        .flat_map(|r| r.listeners.iter().map(|l| (l.port, l.protocol)));
    own.chain(sets).collect()
}

/// The core/v1 Service port protocol carrying listener protocol `p`.
fn l4(p: ListenerProtocol) -> &'static str {
    match p {
        ListenerProtocol::Udp => "UDP", // not a Gateway API value
        _ => "TCP",                     // not a Gateway API value
    }
}

/// The Service Gateway `gateway` should have, or `None` when it should
/// have none (no port to expose, or no `uid` to own it by).
/// `gateway_api_version` is the apiVersion the Gateway is served at (the
/// owner reference's); `controller_name` is ours
/// ([`CONTROLLER_ANNOTATION`]).
pub fn desired(
    gateway: &Gateway,
    routing: Option<&GatewayRouting>,
    gateway_api_version: &str,
    controller_name: &str,
    opts: &GatewayServiceOptions,
) -> Option<Service> {
    let uid = gateway.metadata.uid.clone()?;
    let mut seen = BTreeSet::new();
    let ports: Vec<ServicePort> = listener_ports(gateway, routing)
        .into_iter()
        .filter(|(port, p)| seen.insert((*port, l4(*p))))
        .map(|(port, p)| ServicePort {
            name: Some(format!("{}-{port}", l4(p).to_ascii_lowercase())),
            port: i32::from(port),
            protocol: Some(l4(p).into()),
            target_port: Some(opts.target_port(
                &ObjectKey::new(
                    Kind::Gateway,
                    gateway.metadata.ns(),
                    gateway.metadata.name.clone(),
                ),
                port,
            )),
            ..ServicePort::default()
        })
        .collect();
    if ports.is_empty() {
        return None;
    }
    let infra = gateway.spec.infrastructure.as_ref();
    let mut labels = infra.map(|i| i.labels.clone()).unwrap_or_default();
    // A label value is at most 63 characters; a longer Gateway name is
    // only in the owner reference.
    if gateway.metadata.name.len() <= 63 {
        labels.insert(GATEWAY_NAME_LABEL.into(), gateway.metadata.name.clone());
    }
    labels.insert(MANAGED_BY_LABEL.into(), MANAGED_BY.into());
    let mut annotations = infra.map(|i| i.annotations.clone()).unwrap_or_default();
    annotations.insert(CONTROLLER_ANNOTATION.into(), controller_name.into());
    Some(Service {
        metadata: ObjectMeta {
            name: Some(service_name(&gateway.metadata.name)),
            namespace: Some(gateway.metadata.ns().to_string()),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![OwnerReference {
                api_version: gateway_api_version.into(),
                kind: "Gateway".into(),
                name: gateway.metadata.name.clone(),
                uid,
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..ObjectMeta::default()
        },
        spec: Some(ServiceSpec {
            type_: Some(opts.service_type.clone()),
            // A Service selects pods of its own namespace only: elsewhere
            // none, and gwcore writes the EndpointSlices.
            selector: opts
                .selects_pods(gateway.metadata.ns())
                .then(|| opts.selector.clone()),
            ports: Some(ports),
            ..ServiceSpec::default()
        }),
        status: None,
    })
}

/// Whether gwcore made the object with `meta` for controller
/// `controller_name`: it carries [`MANAGED_BY_LABEL`] and
/// [`CONTROLLER_ANNOTATION`].
pub fn made_by(meta: &gwcore::model::ObjectMeta, controller_name: &str) -> bool {
    meta.labels.get(MANAGED_BY_LABEL).map(String::as_str) == Some(MANAGED_BY)
        && meta
            .annotations
            .get(CONTROLLER_ANNOTATION)
            .map(String::as_str)
            == Some(controller_name)
}

/// The Services in `snapshot` that controller `controller_name` made
/// ([`made_by`]) and that are not `wanted` (the Services its Gateways
/// should have now): their Gateway is gone, is no longer ours, or has no
/// listener left to expose. They are to be deleted.
pub fn stale(
    snapshot: &Snapshot,
    controller_name: &str,
    wanted: &BTreeSet<ObjectKey>,
) -> Vec<ObjectKey> {
    stale_of_kind(Kind::Service, snapshot, controller_name, wanted)
}

/// The EndpointSlices in `snapshot` that controller `controller_name` made
/// ([`made_by`]) and that are not `wanted` (the ones [`desired_slices`]
/// gives now): their Service is gone or selects the pods itself, or the
/// pods they listed are. They are to be deleted.
pub fn stale_endpoint_slices(
    snapshot: &Snapshot,
    controller_name: &str,
    wanted: &BTreeSet<ObjectKey>,
) -> Vec<ObjectKey> {
    stale_of_kind(Kind::EndpointSlice, snapshot, controller_name, wanted)
}

fn stale_of_kind(
    kind: Kind,
    snapshot: &Snapshot,
    controller_name: &str,
    wanted: &BTreeSet<ObjectKey>,
) -> Vec<ObjectKey> {
    snapshot
        .of_kind(kind)
        .filter(|o| made_by(o.meta(), controller_name))
        .map(|o| o.key())
        .filter(|k| !wanted.contains(k))
        .collect()
}

/// A proxy pod, as much of it as a Gateway's EndpointSlices list.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ProxyPod {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its `uid` (the endpoints' `targetRef`).
    pub uid: Option<String>,
    /// `status.podIPs` (else `status.podIP`).
    pub ips: Vec<IpAddr>,
    /// Whether it can take traffic: its `Ready` condition is `True` and it
    /// is not being deleted.
    pub ready: bool,
    /// Its containers' named ports: name → (number, protocol), for the
    /// target ports given by name.
    pub named_ports: BTreeMap<String, (i32, String)>,
}

impl ProxyPod {
    /// The pod as the API server gives it; `None` without a name.
    pub fn from_pod(pod: &Pod) -> Option<ProxyPod> {
        let meta = &pod.metadata;
        let status = pod.status.as_ref();
        let ready = meta.deletion_timestamp.is_none()
            && status
                .and_then(|s| s.conditions.as_ref())
                .into_iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
        let mut ips: Vec<IpAddr> = status
            .and_then(|s| s.pod_ips.as_ref())
            .into_iter()
            .flatten()
            .filter_map(|ip| ip.ip.parse().ok())
            .collect();
        if ips.is_empty() {
            ips.extend(
                status
                    .and_then(|s| s.pod_ip.as_deref())
                    .and_then(|ip| ip.parse::<IpAddr>().ok()),
            );
        }
        let named_ports = pod
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .flat_map(|c| c.ports.iter().flatten())
            .filter_map(|p| {
                let proto = p.protocol.clone().unwrap_or_else(|| "TCP".into()); // not a Gateway API value
                Some((p.name.clone()?, (p.container_port, proto)))
            })
            .collect();
        Some(ProxyPod {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone()?,
            uid: meta.uid.clone(),
            ips,
            ready,
            named_ports,
        })
    }
}

/// The EndpointSlices of `service` (a [`desired`] Service without
/// selector, whose `uid` is `service_uid`): the ready `pods`' addresses
/// with each Service port's target port on them, at `resource`'s
/// apiVersion (`discovery.k8s.io/v1`, or `v1beta1` before Kubernetes
/// 1.21; the fields written are the same in both).
///
/// One slice per address family and set of ports (a target port given by
/// name can be another number on another pod; a pod without it leaves
/// that port out, and a pod with no port left is not listed), of at most
/// [`MAX_SLICE_ENDPOINTS`] endpoints (the pods in name order), named
/// `<service>-ipv4-<hash of the ports>` (`-ipv6-`; `-1`, `-2`, ... after
/// the first thousand endpoints). Each carries [`SERVICE_NAME_LABEL`], [`SLICE_MANAGED_BY_LABEL`],
/// the Service's labels and [`CONTROLLER_ANNOTATION`], and the Service as
/// controlling owner. No ready pod: no slice.
pub fn desired_slices(
    service: &Service,
    service_uid: &str,
    resource: &ApiResource,
    pods: &[ProxyPod],
) -> Vec<DynamicObject> {
    let (Some(name), Some(namespace)) = (&service.metadata.name, &service.metadata.namespace)
    else {
        return Vec::new();
    };
    let ports: &[ServicePort] = service
        .spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or_default();
    // (family, ports) → endpoints, each a pod and one of its addresses.
    type SlicePorts = Vec<(String, i32, String)>;
    let mut groups: BTreeMap<(&str, SlicePorts), Vec<(&ProxyPod, IpAddr)>> = BTreeMap::new();
    let mut ready: Vec<&ProxyPod> = pods.iter().filter(|p| p.ready).collect();
    ready.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    for pod in ready {
        let resolved: SlicePorts = ports
            .iter()
            .filter_map(|p| {
                let protocol = p.protocol.clone().unwrap_or_else(|| "TCP".into()); // not a Gateway API value
                let number = match p.target_port.as_ref() {
                    Some(IntOrString::Int(n)) => *n,
                    Some(IntOrString::String(port_name)) => {
                        let (n, proto) = pod.named_ports.get(port_name)?;
                        if *proto != protocol {
                            return None;
                        }
                        *n
                    }
                    None => p.port,
                };
                Some((p.name.clone().unwrap_or_default(), number, protocol))
            })
            .collect();
        if resolved.is_empty() {
            continue;
        }
        for ip in &pod.ips {
            let family = if ip.is_ipv4() { "IPv4" } else { "IPv6" };
            groups
                .entry((family, resolved.clone()))
                .or_default()
                .push((pod, *ip));
        }
    }
    let mut labels = service.metadata.labels.clone().unwrap_or_default();
    labels.insert(SERVICE_NAME_LABEL.into(), name.clone());
    labels.insert(SLICE_MANAGED_BY_LABEL.into(), SLICE_MANAGED_BY.into());
    let annotations: BTreeMap<String, String> = service
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CONTROLLER_ANNOTATION))
        .map(|c| (CONTROLLER_ANNOTATION.to_string(), c.clone()))
        .into_iter()
        .collect();
    let mut slices = Vec::new();
    for ((family, ports), endpoints) in groups {
        // FNV-1a of the ports: a stable name for each set.
        let hash = format!("{ports:?}").bytes().fold(0x811c_9dc5_u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
        });
        for (i, chunk) in endpoints.chunks(MAX_SLICE_ENDPOINTS).enumerate() {
            let mut slice_name = format!("{name}-{}-{hash:08x}", family.to_ascii_lowercase());
            if i > 0 {
                slice_name.push_str(&format!("-{i}"));
            }
            let endpoints: Vec<serde_json::Value> = chunk
                .iter()
                .map(|(pod, ip)| {
                    let mut target =
                        json!({"kind": "Pod", "namespace": pod.namespace, "name": pod.name});
                    if let Some(uid) = &pod.uid {
                        target["uid"] = uid.as_str().into();
                    }
                    json!({
                        "addresses": [ip.to_string()],
                        "conditions": {"ready": true},
                        "targetRef": target,
                    })
                })
                .collect();
            let ports: Vec<serde_json::Value> = ports
                .iter()
                .map(|(n, port, protocol)| json!({"name": n, "port": port, "protocol": protocol}))
                .collect();
            let mut slice = DynamicObject::new(&slice_name, resource).within(namespace);
            slice.metadata.labels = Some(labels.clone());
            slice.metadata.annotations = Some(annotations.clone());
            slice.metadata.owner_references = Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "Service".into(),
                name: name.clone(),
                uid: service_uid.into(),
                controller: Some(true),
                block_owner_deletion: None,
            }]);
            slice.data = json!({"addressType": family, "endpoints": endpoints, "ports": ports});
            slices.push(slice);
        }
    }
    slices
}

/// The Gateway a Service was made for by gwcore: its controlling owner,
/// when that is a Gateway and the Service carries [`MANAGED_BY_LABEL`].
pub fn gateway_of(service: &DynamicObject) -> Option<ObjectKey> {
    let meta = &service.metadata;
    if meta.labels.as_ref()?.get(MANAGED_BY_LABEL)? != MANAGED_BY {
        return None;
    }
    let owner = meta.owner_references.as_ref()?.iter().find(|o| {
        o.controller == Some(true)
            && o.kind == "Gateway"
            && o.api_version.starts_with("gateway.networking.k8s.io/")
    })?;
    Some(ObjectKey::new(
        Kind::Gateway,
        meta.namespace.clone().unwrap_or_default(),
        owner.name.clone(),
    ))
}

/// A Gateway's addresses from its Service: the load balancer's
/// (`status.loadBalancer.ingress`, IPs and hostnames) once it has any,
/// else the cluster IPs.
pub fn service_addresses(service: &DynamicObject) -> Vec<GatewayStatusAddress> {
    let lb = crate::kinds::load_balancer_addresses(service);
    if !lb.is_empty() {
        return lb;
    }
    let spec = service.data.get("spec");
    let ips: Vec<&str> = match spec.and_then(|s| s.get("clusterIPs")?.as_array()) {
        Some(ips) => ips.iter().filter_map(|v| v.as_str()).collect(),
        None => spec
            .and_then(|s| s.get("clusterIP")?.as_str())
            .into_iter()
            .collect(),
    };
    ips.into_iter()
        .filter(|ip| ip.parse::<std::net::IpAddr>().is_ok())
        .map(|ip| GatewayStatusAddress {
            type_: Some(gwcore::values::AddressType::IpAddress),
            value: ip.to_string(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gwcore::model::Object;

    fn gateway(yaml_spec: &str) -> Gateway {
        let yaml = format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gw, namespace: infra, uid: u-1}}\nspec:\n{yaml_spec}"
        );
        let loaded = gwcore::load::load_str("gw.yaml", &yaml);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        match loaded.into_objects().last() {
            Some(Object::Gateway(g)) => Gateway::clone(&g),
            other => panic!("{other:?}"),
        }
    }

    const LISTENERS: &str = "  gatewayClassName: c
  listeners:
  - {name: a, port: 80, protocol: HTTP}
  - {name: b, port: 80, protocol: HTTP, hostname: b.example}
  - {name: c, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: s}]}}
  - {name: d, port: 53, protocol: UDP}
  - {name: e, port: 53, protocol: TCP}
  - {name: f, port: 9000, protocol: example.com/quic}
";

    fn ports(s: &Service) -> Vec<(String, i32, String, IntOrString)> {
        s.spec
            .as_ref()
            .unwrap()
            .ports
            .iter()
            .flatten()
            .map(|p| {
                (
                    p.name.clone().unwrap(),
                    p.port,
                    p.protocol.clone().unwrap(),
                    p.target_port.clone().unwrap(),
                )
            })
            .collect()
    }

    #[test]
    fn ports_are_the_listeners_deduplicated_with_their_l4_protocol() {
        let mut opts = GatewayServiceOptions::default();
        opts.target_ports
            .insert(80, IntOrString::String("http".into()));
        let s = desired(
            &gateway(LISTENERS),
            None,
            "gateway.networking.k8s.io/v1",
            "example.com/c",
            &opts,
        )
        .expect("a Service");
        let p = |n: &str, port, proto: &str, t| (n.to_string(), port, proto.to_string(), t);
        assert_eq!(
            ports(&s),
            [
                p("tcp-53", 53, "TCP", IntOrString::Int(53)),
                p("udp-53", 53, "UDP", IntOrString::Int(53)),
                p("tcp-80", 80, "TCP", IntOrString::String("http".into())),
                p("tcp-443", 443, "TCP", IntOrString::Int(443)),
            ]
        );
        let spec = s.spec.as_ref().unwrap();
        assert_eq!(spec.type_.as_deref(), Some("LoadBalancer"));
        assert_eq!(spec.selector.as_ref(), Some(&opts.selector));
    }

    #[test]
    fn labels_annotations_and_owner() {
        let g = gateway(&format!(
            "{LISTENERS}  infrastructure:\n    labels: {{team: a, {MANAGED_BY_LABEL}: someone}}\n    annotations: {{lb.example/internal: \"true\"}}\n"
        ));
        let s = desired(
            &g,
            None,
            "gateway.networking.k8s.io/v1beta1",
            "example.com/c",
            &GatewayServiceOptions::default(),
        )
        .unwrap();
        let m = &s.metadata;
        assert_eq!(m.name.as_deref(), Some("gwcore-gw"));
        assert_eq!(m.namespace.as_deref(), Some("infra"));
        let labels = m.labels.as_ref().unwrap();
        assert_eq!(labels["team"], "a");
        assert_eq!(labels[GATEWAY_NAME_LABEL], "gw");
        assert_eq!(labels[MANAGED_BY_LABEL], "gwcore", "ours win");
        let annotations = m.annotations.as_ref().unwrap();
        assert_eq!(annotations["lb.example/internal"], "true");
        assert_eq!(annotations[CONTROLLER_ANNOTATION], "example.com/c");
        let owner = &m.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (
                owner.api_version.as_str(),
                owner.kind.as_str(),
                owner.name.as_str(),
                owner.uid.as_str(),
                owner.controller
            ),
            (
                "gateway.networking.k8s.io/v1beta1",
                "Gateway",
                "gw",
                "u-1",
                Some(true)
            )
        );
        // And it is recognised as the Gateway's when read back.
        let back: DynamicObject =
            serde_json::from_value(serde_json::to_value(&s).unwrap()).unwrap();
        assert_eq!(
            gateway_of(&back),
            Some(ObjectKey::new(Kind::Gateway, "infra", "gw"))
        );
    }

    #[test]
    fn target_ports_are_numbers_or_container_port_names() {
        let o = GatewayServiceOptions::default()
            .with_target_port(80, "8080")
            .and_then(|o| o.with_target_port(443, "https"))
            .expect("valid");
        assert_eq!(o.target_ports[&80], IntOrString::Int(8080));
        assert_eq!(o.target_ports[&443], IntOrString::String("https".into()));
        for bad in ["0", "HTTP", "a-very-long-port-name", "-x", "70000", ""] {
            let e = GatewayServiceOptions::default()
                .with_target_port(80, bad)
                .expect_err(bad);
            assert!(e.contains("target port"), "{e}");
        }
    }

    #[test]
    fn no_servable_listener_no_service() {
        let g = gateway(
            "  gatewayClassName: c\n  listeners: [{name: f, port: 9000, protocol: example.com/quic}]\n",
        );
        assert!(desired(&g, None, "v", "c", &GatewayServiceOptions::default()).is_none());
    }

    #[test]
    fn names_are_valid_and_distinct() {
        assert_eq!(service_name("web"), "gwcore-web");
        let dotted = service_name("a.b");
        let dashed = service_name("a-b");
        assert_ne!(dotted, dashed);
        assert!(!dotted.contains('.'));
        let long = "x".repeat(200);
        let a = service_name(&long);
        let b = service_name(&format!("{long}y"));
        assert_ne!(a, b);
        for n in [dotted, a, b] {
            assert!(n.len() <= 63, "{n}");
            assert!(
                n.bytes()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
            );
            assert!(!n.ends_with('-'));
        }
    }

    #[test]
    fn addresses_are_the_load_balancers_else_the_cluster_ips() {
        let svc = |status: serde_json::Value| -> DynamicObject {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "s", "namespace": "n"},
                "spec": {"clusterIP": "10.96.0.7", "clusterIPs": ["10.96.0.7", "fd00::7"]},
                "status": status,
            }))
            .unwrap()
        };
        let values = |o: &DynamicObject| -> Vec<String> {
            service_addresses(o).into_iter().map(|a| a.value).collect()
        };
        assert_eq!(
            values(&svc(serde_json::json!({}))),
            ["10.96.0.7", "fd00::7"]
        );
        assert_eq!(
            values(&svc(
                serde_json::json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.9"}]}})
            )),
            ["203.0.113.9"]
        );
    }

    #[test]
    fn a_service_without_our_label_or_owner_is_not_a_gateways() {
        let svc = |labels: serde_json::Value, controller: bool| -> DynamicObject {
            serde_json::from_value(serde_json::json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": "s", "namespace": "n", "labels": labels,
                    "ownerReferences": [{"apiVersion": "gateway.networking.k8s.io/v1",
                        "kind": "Gateway", "name": "gw", "uid": "u", "controller": controller}]},
            }))
            .unwrap()
        };
        let ours = serde_json::json!({MANAGED_BY_LABEL: MANAGED_BY});
        assert!(gateway_of(&svc(ours.clone(), true)).is_some());
        assert!(gateway_of(&svc(ours, false)).is_none());
        assert!(gateway_of(&svc(serde_json::json!({}), true)).is_none());
    }

    #[test]
    fn stale_services_are_ours_and_unwanted_only() {
        let svc = |name: &str, labels: &str, annotations: &str| {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: n, labels: {{{labels}}}, annotations: {{{annotations}}}}}\nspec: {{}}\n---\n"
            )
        };
        let ours_l = format!("{MANAGED_BY_LABEL}: {MANAGED_BY}");
        let ours_a = format!("{CONTROLLER_ANNOTATION}: example.com/c");
        let yaml = [
            svc("gwcore-kept", &ours_l, &ours_a),
            svc("gwcore-gone", &ours_l, &ours_a),
            svc(
                "gwcore-other-controller",
                &ours_l,
                &format!("{CONTROLLER_ANNOTATION}: example.com/d"),
            ),
            svc("gwcore-users", "team: a", &ours_a),
            svc("plain", "", ""),
        ]
        .concat();
        let loaded = gwcore::load::load_str("s.yaml", &yaml);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        let snapshot = Snapshot::from_objects(loaded.into_objects());
        let key = |n: &str| ObjectKey::new(Kind::Service, "n", n);
        let wanted = BTreeSet::from([key("gwcore-kept")]);
        assert_eq!(
            stale(&snapshot, "example.com/c", &wanted),
            [key("gwcore-gone")]
        );
        assert_eq!(
            stale(&snapshot, "example.com/d", &wanted),
            [key("gwcore-other-controller")]
        );
    }

    fn pod(name: &str, ips: &[&str], ready: bool, named: &[(&str, i32)]) -> ProxyPod {
        ProxyPod {
            namespace: "proxies".into(),
            name: name.into(),
            uid: Some(format!("uid-{name}")),
            ips: ips.iter().map(|i| i.parse().unwrap()).collect(),
            ready,
            named_ports: named
                .iter()
                .map(|(n, p)| (n.to_string(), (*p, "TCP".to_string())))
                .collect(),
        }
    }

    fn slice_resource() -> ApiResource {
        ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("discovery.k8s.io", "v1beta1", "EndpointSlice"),
            "endpointslices",
        )
    }

    #[test]
    fn a_gateway_outside_the_pods_namespace_gets_no_selector() {
        let mut opts = GatewayServiceOptions {
            pods_namespace: Some("proxies".into()),
            ..GatewayServiceOptions::default()
        };
        let g = gateway(LISTENERS);
        let s = desired(&g, None, "v", "example.com/c", &opts).unwrap();
        assert_eq!(s.spec.unwrap().selector, None, "the Gateway is in infra");
        opts.pods_namespace = Some("infra".into());
        let s = desired(&g, None, "v", "example.com/c", &opts).unwrap();
        assert_eq!(s.spec.unwrap().selector, Some(opts.selector.clone()));
    }

    #[test]
    fn a_gateways_own_target_port_wins() {
        let mut opts = GatewayServiceOptions::default()
            .with_target_port(80, "8080")
            .unwrap();
        let gw = ObjectKey::new(Kind::Gateway, "infra", "gw");
        opts.gateway_target_ports
            .insert(gw.clone(), BTreeMap::from([(80, IntOrString::Int(9080))]));
        let other = ObjectKey::new(Kind::Gateway, "infra", "other");
        assert_eq!(opts.target_port(&gw, 80), IntOrString::Int(9080));
        assert_eq!(opts.target_port(&other, 80), IntOrString::Int(8080));
        assert_eq!(opts.target_port(&gw, 443), IntOrString::Int(443));
        let s = desired(&gateway(LISTENERS), None, "v", "c", &opts).unwrap();
        assert!(ports(&s).contains(&("tcp-80".into(), 80, "TCP".into(), IntOrString::Int(9080))));
    }

    #[test]
    fn slices_list_the_ready_pods_per_family_with_target_ports() {
        let mut opts = GatewayServiceOptions::default()
            .with_target_port(80, "8080")
            .and_then(|o| o.with_target_port(443, "https"))
            .unwrap();
        opts.pods_namespace = Some("proxies".into());
        let g = gateway(
            "  gatewayClassName: c\n  listeners:\n  - {name: a, port: 80, protocol: HTTP}\n  - {name: c, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: s}]}}\n",
        );
        let svc = desired(&g, None, "v", "example.com/c", &opts).unwrap();
        let pods = [
            pod("b", &["10.0.0.2", "fd00::2"], true, &[("https", 8443)]),
            pod("a", &["10.0.0.1"], true, &[("https", 8443)]),
            pod("unready", &["10.0.0.3"], false, &[("https", 8443)]),
            // Without the named port: only port 80 for it.
            pod("c", &["10.0.0.4"], true, &[]),
        ];
        let slices = desired_slices(&svc, "svc-uid", &slice_resource(), &pods);
        let view: Vec<(String, serde_json::Value, Vec<String>, serde_json::Value)> = slices
            .iter()
            .map(|s| {
                let ips = s.data["endpoints"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|e| e["addresses"][0].as_str().unwrap().to_string())
                    .collect();
                (
                    s.metadata.namespace.clone().unwrap(),
                    s.data["addressType"].clone(),
                    ips,
                    s.data["ports"].clone(),
                )
            })
            .collect();
        let both = serde_json::json!([
            {"name": "tcp-80", "port": 8080, "protocol": "TCP"},
            {"name": "tcp-443", "port": 8443, "protocol": "TCP"},
        ]);
        let only_80 = serde_json::json!([{"name": "tcp-80", "port": 8080, "protocol": "TCP"}]);
        let mut want = vec![
            (
                "infra".to_string(),
                "IPv4".into(),
                vec!["10.0.0.1".to_string(), "10.0.0.2".into()],
                both.clone(),
            ),
            (
                "infra".to_string(),
                "IPv4".into(),
                vec!["10.0.0.4".to_string()],
                only_80,
            ),
            (
                "infra".to_string(),
                "IPv6".into(),
                vec!["fd00::2".to_string()],
                both,
            ),
        ];
        let mut got = view.clone();
        got.sort_by_key(|v| format!("{v:?}"));
        want.sort_by_key(|v| format!("{v:?}"));
        assert_eq!(got, want);
        for s in &slices {
            let labels = s.metadata.labels.as_ref().unwrap();
            assert_eq!(labels[SERVICE_NAME_LABEL], "gwcore-gw");
            assert_eq!(labels[SLICE_MANAGED_BY_LABEL], SLICE_MANAGED_BY);
            assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);
            assert_eq!(
                s.metadata.annotations.as_ref().unwrap()[CONTROLLER_ANNOTATION],
                "example.com/c"
            );
            let owner = &s.metadata.owner_references.as_ref().unwrap()[0];
            assert_eq!(
                (owner.kind.as_str(), owner.uid.as_str()),
                ("Service", "svc-uid")
            );
            assert_eq!(
                s.types.as_ref().unwrap().api_version,
                "discovery.k8s.io/v1beta1"
            );
            assert_eq!(s.data["endpoints"][0]["targetRef"]["namespace"], "proxies");
            assert!(
                s.metadata
                    .name
                    .as_ref()
                    .unwrap()
                    .starts_with("gwcore-gw-ipv")
            );
        }
        assert!(
            desired_slices(&svc, "svc-uid", &slice_resource(), &pods[2..3]).is_empty(),
            "no ready pod, no slice"
        );
    }

    #[test]
    fn a_pod_is_ready_by_its_condition_and_not_while_deleted() {
        let p: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "namespace": "proxies", "uid": "u"},
            "spec": {"containers": [{"name": "gwcore", "ports": [{"name": "http", "containerPort": 8080}]}]},
            "status": {"podIP": "10.0.0.9", "conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .unwrap();
        let pp = ProxyPod::from_pod(&p).unwrap();
        assert!(pp.ready);
        assert_eq!(pp.ips, ["10.0.0.9".parse::<IpAddr>().unwrap()]);
        assert_eq!(pp.named_ports["http"], (8080, "TCP".to_string()));
        let mut unready = p.clone();
        unready
            .status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()[0]
            .status = "False".into();
        assert!(!ProxyPod::from_pod(&unready).unwrap().ready);
        let mut deleting = p;
        deleting.metadata.deletion_timestamp =
            Some(serde_json::from_value(serde_json::json!("2026-01-01T00:00:00Z")).unwrap());
        assert!(!ProxyPod::from_pod(&deleting).unwrap().ready);
    }

    /// The slices are written at the version discovery finds; their
    /// fields are discovery.k8s.io/v1's (read back through the typed v1
    /// EndpointSlice, which drops a misspelled field).
    #[test]
    fn slices_carry_the_discovered_version_and_v1_fields() {
        let opts = GatewayServiceOptions {
            pods_namespace: Some("proxies".into()),
            ..GatewayServiceOptions::default()
        };
        let svc = desired(&gateway(LISTENERS), None, "v", "example.com/c", &opts).unwrap();
        let v1 = ApiResource::from_gvk_with_plural(
            &kube::core::GroupVersionKind::gvk("discovery.k8s.io", "v1", "EndpointSlice"),
            "endpointslices",
        );
        let slices = desired_slices(&svc, "svc-uid", &v1, &[pod("a", &["10.0.0.1"], true, &[])]);
        assert_eq!(slices.len(), 1);
        let typed: k8s_openapi::api::discovery::v1::EndpointSlice =
            serde_json::from_value(serde_json::to_value(&slices[0]).unwrap()).unwrap();
        assert_eq!(
            serde_json::to_value(&slices[0]).unwrap()["apiVersion"],
            "discovery.k8s.io/v1"
        );
        assert_eq!(typed.address_type, "IPv4");
        let e = &typed.endpoints[0];
        assert_eq!(e.addresses, ["10.0.0.1"]);
        assert_eq!(e.conditions.as_ref().unwrap().ready, Some(true));
        let target = e.target_ref.as_ref().unwrap();
        assert_eq!(
            (
                target.kind.as_deref(),
                target.namespace.as_deref(),
                target.name.as_deref()
            ),
            (Some("Pod"), Some("proxies"), Some("a"))
        );
        let ports: Vec<(Option<String>, Option<i32>, Option<String>)> = typed
            .ports
            .unwrap()
            .into_iter()
            .map(|p| (p.name, p.port, p.protocol))
            .collect();
        assert!(ports.contains(&(Some("tcp-80".into()), Some(80), Some("TCP".into()))));
        assert!(ports.contains(&(Some("udp-53".into()), Some(53), Some("UDP".into()))));
    }
}
