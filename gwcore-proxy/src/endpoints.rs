//! Where a Service port's traffic goes: addresses from EndpointSlices, or
//! from echo backends started for Services that have none.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gwcore::Snapshot;
use gwcore::model::{EndpointSlice, Kind, Object, ObjectKey, Service, ServicePort};
use gwcore::snapshot::SharedMap;

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
/// Cloning is cheap, and [`Endpoints::updated`] copies only the part of
/// the map it changes (a [`SharedMap`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Endpoints {
    map: SharedMap<ObjectKey, BTreeMap<u16, PortEndpoints>>,
}

/// A Service port's endpoints and their list's id.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PortEndpoints {
    endpoints: Vec<Endpoint>,
    id: u64,
}

impl PortEndpoints {
    fn new(endpoints: Vec<Endpoint>) -> PortEndpoints {
        let id = list_id(&endpoints);
        PortEndpoints { endpoints, id }
    }
}

/// A 64-bit FNV-1a hash of the addresses in order: the same in every
/// process and configuration.
fn list_id(endpoints: &[Endpoint]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    };
    for e in endpoints {
        match e.addr.ip() {
            IpAddr::V4(ip) => eat(&ip.octets()),
            IpAddr::V6(ip) => eat(&ip.octets()),
        }
        eat(&e.addr.port().to_be_bytes());
    }
    h
}

/// The Service an EndpointSlice belongs to (by its
/// [`SERVICE_NAME_LABEL`]), if it names one.
pub(crate) fn slice_service(slice: &Object) -> Option<ObjectKey> {
    match slice {
        Object::EndpointSlice(s) => {
            let name = s.metadata.labels.get(SERVICE_NAME_LABEL)?;
            Some(ObjectKey::new(Kind::Service, s.metadata.ns(), name.clone()))
        }
        _ => None,
    }
}

/// A Service's ports with endpoints, from its slices.
fn service_ports(svc: &Service, slices: &[&EndpointSlice]) -> BTreeMap<u16, PortEndpoints> {
    let mut out = BTreeMap::new();
    if slices.is_empty() {
        return out;
    }
    for port in &svc.spec.ports {
        let Ok(service_port) = u16::try_from(port.port) else {
            continue;
        };
        let addrs = slice_addresses(slices, port);
        if !addrs.is_empty() {
            out.insert(service_port, PortEndpoints::new(addrs));
        }
    }
    out
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
        let mut map = SharedMap::new();
        for o in snapshot.of_kind(Kind::Service) {
            let Object::Service(svc) = o else { continue };
            let key = o.key();
            let Some(svc_slices) = slices.get(&(key.namespace.clone(), key.name.clone())) else {
                continue;
            };
            let ports = service_ports(svc, svc_slices);
            if !ports.is_empty() {
                map.insert(key, ports);
            }
        }
        Endpoints { map }
    }

    /// These endpoints with those of `services` read again from
    /// `snapshot` (whose other Services and slices are the ones these
    /// were read from): equal to [`Endpoints::from_snapshot`] of it, at a
    /// cost that follows the Services named and their namespaces' slices.
    /// Echo backends of the Services named are dropped
    /// ([`Endpoints::insert_all_ports`] again where one is wanted).
    pub fn updated<'k>(
        &self,
        snapshot: &Snapshot,
        services: impl IntoIterator<Item = &'k ObjectKey>,
    ) -> Endpoints {
        let mut next = self.clone();
        for key in services {
            let ports = match snapshot.get(key) {
                Some(Object::Service(svc)) => {
                    let slices: Vec<&EndpointSlice> = snapshot
                        .in_namespace(Kind::EndpointSlice, &key.namespace)
                        .filter_map(|o| match o {
                            Object::EndpointSlice(s)
                                if s.metadata.labels.get(SERVICE_NAME_LABEL) == Some(&key.name) =>
                            {
                                Some(s)
                            }
                            _ => None,
                        })
                        .collect();
                    service_ports(svc, &slices)
                }
                _ => BTreeMap::new(),
            };
            if ports.is_empty() {
                next.map.remove(key);
            } else {
                next.map.insert(key.clone(), ports);
            }
        }
        next
    }

    /// The endpoints of a Service port (empty when it has none).
    pub fn get(&self, service: &ObjectKey, port: u16) -> &[Endpoint] {
        self.get_with_id(service, port).0
    }

    /// The endpoints of a Service port, with an id of the list: equal
    /// lists have equal ids, in any configuration
    /// ([`crate::plugin::EndpointSet::id`]).
    pub fn get_with_id(&self, service: &ObjectKey, port: u16) -> (&[Endpoint], u64) {
        self.map
            .get(service)
            .and_then(|ports| ports.get(&port))
            .map_or((&[], list_id(&[])), |l| (l.endpoints.as_slice(), l.id))
    }

    /// Sends every port of `service` to `addr` (an echo backend).
    pub fn insert_all_ports(&mut self, svc: &Service, key: &ObjectKey, addr: SocketAddr) {
        let mut ports = self.map.get(key).cloned().unwrap_or_default();
        for p in &svc.spec.ports {
            if let Ok(port) = u16::try_from(p.port) {
                ports.insert(port, PortEndpoints::new(vec![Endpoint::new(addr)]));
            }
        }
        if !ports.is_empty() {
            self.map.insert(key.clone(), ports);
        }
    }

    /// Whether a Service has an address for at least one port.
    pub fn has_service(&self, service: &ObjectKey) -> bool {
        self.map.get(service).is_some_and(|ports| !ports.is_empty())
    }

    /// Every (Service, port) with its endpoints.
    pub fn iter(&self) -> impl Iterator<Item = (&ObjectKey, u16, &[Endpoint])> {
        self.map.iter().flat_map(|(k, ports)| {
            ports
                .iter()
                .map(move |(p, a)| (k, *p, a.endpoints.as_slice()))
        })
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

/// How long an endpoint that took no connection is passed over.
pub(crate) const REFUSING_FOR: Duration = Duration::from_secs(10);

/// How many endpoints one attempt of a request may try before it fails:
/// each takes a connection attempt (a refusal, or up to the connect
/// timeout).
pub(crate) const ENDPOINTS_PER_ATTEMPT: usize = 3;

/// Endpoints that lately took no connection (refused it, or did not
/// finish connecting or the TLS handshake in time): a pod that is gone
/// while its EndpointSlice still lists it. For [`REFUSING_FOR`] after a
/// refusal, requests choose another endpoint of the Service when there is
/// one; after that, or when the endpoint takes a connection again, it is
/// chosen as before.
#[derive(Debug, Default)]
pub(crate) struct Refusing {
    /// Whether `since` may hold anything: the common case (none) costs
    /// one load.
    any: AtomicBool,
    /// When each endpoint last refused.
    since: Mutex<HashMap<SocketAddr, Instant>>,
}

impl Refusing {
    /// `addr` took no connection at `when`.
    pub(crate) fn refused(&self, addr: SocketAddr, when: Instant) {
        let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        since.retain(|_, t| when.saturating_duration_since(*t) < REFUSING_FOR);
        since.insert(addr, when);
        self.any.store(true, Ordering::Release);
    }

    /// `endpoints[i]` took no connection for one attempt of a request,
    /// which records it in `tried`; whether the attempt may try another
    /// endpoint (at most [`ENDPOINTS_PER_ATTEMPT`], and not one twice).
    pub(crate) fn refused_try(
        &self,
        endpoints: &[Endpoint],
        i: usize,
        tried: &mut Vec<usize>,
    ) -> bool {
        self.refused(endpoints[i].addr, Instant::now());
        tried.push(i);
        tried.len() < ENDPOINTS_PER_ATTEMPT.min(endpoints.len())
    }

    /// `addr` took a connection (it answered).
    pub(crate) fn answered(&self, addr: SocketAddr) {
        if !self.any.load(Ordering::Acquire) {
            return;
        }
        let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        since.remove(&addr);
        if since.is_empty() {
            self.any.store(false, Ordering::Release);
        }
    }

    /// Whether any endpoint may be refusing (one atomic load).
    pub(crate) fn any_now(&self) -> bool {
        self.any.load(Ordering::Acquire)
    }

    /// Whether `addr` refused less than [`REFUSING_FOR`] ago.
    pub(crate) fn is_refusing_now(&self, addr: SocketAddr) -> bool {
        if !self.any_now() {
            return false;
        }
        let since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        Refusing::is_refusing(&since, addr, Instant::now())
    }

    /// Whether `addr` refused less than [`REFUSING_FOR`] before `now`.
    fn is_refusing(since: &HashMap<SocketAddr, Instant>, addr: SocketAddr, now: Instant) -> bool {
        since
            .get(&addr)
            .is_some_and(|t| now.saturating_duration_since(*t) < REFUSING_FOR)
    }

    /// The endpoint a request tries next: a random one (`random` picks)
    /// among those it has not `tried`, passing over those refusing now
    /// unless no other is left. `None` when every endpoint was tried.
    pub(crate) fn choose(
        &self,
        endpoints: &[Endpoint],
        tried: &[usize],
        random: usize,
    ) -> Option<usize> {
        let n = endpoints.len();
        if n == 0 || tried.len() >= n {
            return None;
        }
        let start = random % n;
        let fast = !self.any.load(Ordering::Acquire);
        if fast && tried.is_empty() {
            // Nearly every request: no endpoint refuses, none tried yet.
            return Some(start);
        }
        let untried = (0..n)
            .map(|k| (start + k) % n)
            .filter(|i| !tried.contains(i));
        if fast {
            return untried.clone().next();
        }
        let mut since = self.since.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        // Refusals run out (an endpoint that left its EndpointSlice never
        // answers again): once none is left, choosing is fast again.
        since.retain(|_, t| now.saturating_duration_since(*t) < REFUSING_FOR);
        if since.is_empty() {
            self.any.store(false, Ordering::Release);
        }
        untried
            .clone()
            .find(|&i| !Refusing::is_refusing(&since, endpoints[i].addr, now))
            .or_else(|| untried.clone().next())
    }
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

    fn endpoints(n: u16) -> Vec<Endpoint> {
        (1..=n)
            .map(|p| Endpoint::new(SocketAddr::from(([127, 0, 0, 1], p))))
            .collect()
    }

    #[test]
    fn a_request_tries_each_endpoint_once_starting_at_random() {
        let r = Refusing::default();
        let e = endpoints(3);
        assert_eq!(r.choose(&e, &[], 7), Some(1));
        assert_eq!(r.choose(&e, &[1], 7), Some(2));
        assert_eq!(r.choose(&e, &[1, 2], 7), Some(0));
        assert_eq!(r.choose(&e, &[1, 2, 0], 7), None);
        assert_eq!(r.choose(&[], &[], 7), None);
    }

    #[test]
    fn refusing_endpoints_are_passed_over_until_they_answer_or_the_time_is_up() {
        let r = Refusing::default();
        let e = endpoints(3);
        let now = Instant::now();
        r.refused(e[0].addr, now);
        r.refused(e[1].addr, now);
        // Whatever the random start, the one endpoint not refusing.
        for random in 0..6 {
            assert_eq!(r.choose(&e, &[], random), Some(2), "start {random}");
        }
        // Tried already: the refusing ones are all that is left.
        assert_eq!(r.choose(&e, &[2], 0), Some(0));
        assert_eq!(r.choose(&e, &[2], 1), Some(1));
        // One answers again: it is chosen as before.
        r.answered(e[1].addr);
        assert_eq!(r.choose(&e, &[], 1), Some(1));
        assert_eq!(r.choose(&e, &[], 0), Some(1), "0 still refuses");
        // A refusal older than REFUSING_FOR no longer counts, and once
        // none is left the fast path is back, without any endpoint
        // answering (one that left its slice never does).
        let Some(long_ago) = now.checked_sub(REFUSING_FOR) else {
            return; // a clock this young cannot go back that far
        };
        r.refused(e[0].addr, long_ago);
        assert_eq!(r.choose(&e, &[], 0), Some(0));
        assert!(!r.any.load(Ordering::Acquire));
    }
}
