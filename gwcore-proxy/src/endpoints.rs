//! Where a Service port's traffic goes: addresses from EndpointSlices, or
//! from echo backends started for Services that have none.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use gwcore::Snapshot;
use gwcore::model::{EndpointSlice, Kind, Object, ObjectKey, Service, ServicePort};

/// The label that ties an EndpointSlice to its Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// One backend address, with its URI authority made once (a request to it
/// needs one; formatting it per request costs more than the lookup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The address.
    pub addr: SocketAddr,
    /// `addr` as a URI authority.
    pub authority: http::uri::Authority,
}

impl Endpoint {
    /// The endpoint at `addr`.
    pub fn new(addr: SocketAddr) -> Endpoint {
        // A socket address always spells a valid authority (`1.2.3.4:80`,
        // `[::1]:80`); the fallback is never taken.
        let authority = http::uri::Authority::try_from(addr.to_string().as_str())
            .unwrap_or_else(|_| http::uri::Authority::from_static("invalid"));
        Endpoint { addr, authority }
    }
}

/// Ready addresses per Service port, keyed by (Service, Service port).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoints {
    map: BTreeMap<ObjectKey, BTreeMap<u16, Vec<Endpoint>>>,
}

impl Endpoints {
    /// Reads every Service's EndpointSlices. A slice port is tied to the
    /// Service port of the same name (both unnamed counts as the same name);
    /// endpoints whose `conditions.ready` is `false` are left out, as
    /// Kubernetes says consumers should ("ready indicates that this endpoint
    /// is ready to receive traffic").
    pub fn from_snapshot(snapshot: &Snapshot) -> Endpoints {
        let mut slices: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
        for o in snapshot.of_kind(Kind::EndpointSlice) {
            if let Object::EndpointSlice(s) = o
                && let Some(svc) = s.metadata.labels.get(SERVICE_NAME_LABEL)
            {
                slices
                    .entry((s.metadata.ns().to_owned(), svc.clone()))
                    .or_default()
                    .push(s);
            }
        }
        let mut map = BTreeMap::new();
        for o in snapshot.of_kind(Kind::Service) {
            let Object::Service(svc) = o else { continue };
            let key = o.key();
            let Some(svc_slices) = slices.get(&(key.namespace.clone(), key.name.clone())) else {
                continue;
            };
            for port in &svc.spec.ports {
                let Ok(service_port) = u16::try_from(port.port) else {
                    continue;
                };
                let addrs = slice_addresses(svc_slices, port);
                if !addrs.is_empty() {
                    map.entry(key.clone())
                        .or_insert_with(BTreeMap::new)
                        .insert(service_port, addrs);
                }
            }
        }
        Endpoints { map }
    }

    /// The endpoints of a Service port (empty when it has none).
    pub fn get(&self, service: &ObjectKey, port: u16) -> &[Endpoint] {
        self.map
            .get(service)
            .and_then(|ports| ports.get(&port))
            .map_or(&[], Vec::as_slice)
    }

    /// Sends every port of `service` to `addr` (an echo backend).
    pub fn insert_all_ports(&mut self, svc: &Service, key: &ObjectKey, addr: SocketAddr) {
        for p in &svc.spec.ports {
            if let Ok(port) = u16::try_from(p.port) {
                self.map
                    .entry(key.clone())
                    .or_default()
                    .insert(port, vec![Endpoint::new(addr)]);
            }
        }
    }

    /// Whether a Service has an address for at least one port.
    pub fn has_service(&self, service: &ObjectKey) -> bool {
        self.map.get(service).is_some_and(|ports| !ports.is_empty())
    }

    /// Every (Service, port) with its endpoints.
    pub fn iter(&self) -> impl Iterator<Item = (&ObjectKey, u16, &[Endpoint])> {
        self.map
            .iter()
            .flat_map(|(k, ports)| ports.iter().map(move |(p, a)| (k, *p, a.as_slice())))
    }
}

fn slice_addresses(slices: &[&EndpointSlice], port: &ServicePort) -> Vec<Endpoint> {
    let mut out = Vec::new();
    for s in slices {
        let slice_port = s
            .ports
            .iter()
            .find(|p| p.name.as_deref().unwrap_or("") == port.name.as_deref().unwrap_or(""))
            .and_then(|p| p.port)
            .and_then(|p| u16::try_from(p).ok());
        let Some(target) = slice_port else { continue };
        for e in &s.endpoints {
            if e.conditions.as_ref().and_then(|c| c.ready) == Some(false) {
                continue;
            }
            for a in &e.addresses {
                if let Ok(ip) = a.parse::<IpAddr>() {
                    out.push(SocketAddr::new(ip, target));
                }
            }
        }
    }
    out.sort();
    out.dedup();
    out.into_iter().map(Endpoint::new).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use gwcore::load::load_str;

    fn snapshot(yaml: &str) -> Snapshot {
        let loaded = load_str("test.yaml", yaml);
        assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
        Snapshot::from_objects(loaded.objects.into_iter().map(|(o, _)| o))
    }

    #[test]
    fn slice_ports_are_tied_by_name_and_unready_endpoints_left_out() {
        let s = snapshot(
            r#"
apiVersion: v1
kind: Service
metadata: {name: web, namespace: ns}
spec:
  ports: [{name: http, port: 80}, {name: admin, port: 9000}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: web-abc, namespace: ns, labels: {kubernetes.io/service-name: web}}
addressType: IPv4
ports: [{name: http, port: 8080}]
endpoints:
- addresses: [10.0.0.2]
- addresses: [10.0.0.1]
  conditions: {ready: true}
- addresses: [10.0.0.3]
  conditions: {ready: false}
"#,
        );
        let e = Endpoints::from_snapshot(&s);
        let web = ObjectKey::new(Kind::Service, "ns", "web");
        let addrs: Vec<SocketAddr> = e.get(&web, 80).iter().map(|e| e.addr).collect();
        assert_eq!(
            addrs,
            [
                "10.0.0.1:8080".parse::<SocketAddr>().unwrap(),
                "10.0.0.2:8080".parse().unwrap()
            ]
        );
        assert_eq!(e.get(&web, 80)[0].authority, "10.0.0.1:8080");
        assert!(e.get(&web, 9000).is_empty(), "no slice port named admin");
        assert!(e.has_service(&web));
    }
}
