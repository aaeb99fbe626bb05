//! One generation of what the proxy serves, built from a snapshot.
//!
//! A [`Config`] is immutable. A reload builds a new one next to the old and
//! swaps the pointer; requests load the pointer once and keep that
//! generation until they are answered.
//!
//! Each configuration keeps the incremental engine it was computed with; the
//! next build ([`Config::build_next`]) takes it over, hands it only the
//! objects that differ, and compiles again only the tables of the Gateways
//! whose routing changed.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use gwcore::Snapshot;
use gwcore::attachments::{GatewayRouting, ListenerProtocol, TlsMode};
use gwcore::engine::{ComputeOptions, Delta, Engine};
use gwcore::load::Diagnostic;
use gwcore::model::{Object, ObjectKey};
use serde::Serialize;

use crate::endpoints::Endpoints;

/// A port of one Gateway: what one listening socket serves. Gateways are
/// separate addresses in a cluster, so two Gateways may both use port 80;
/// each gets its own socket.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct GatewayPort {
    /// The Gateway.
    pub gateway: ObjectKey,
    /// The listener port.
    pub port: u16,
}

impl GatewayPort {
    /// Port `port` of `gateway`.
    pub fn new(gateway: ObjectKey, port: u16) -> GatewayPort {
        GatewayPort { gateway, port }
    }
}

impl std::fmt::Display for GatewayPort {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}/{}:{}",
            self.gateway.namespace, self.gateway.name, self.port
        )
    }
}

/// How connections on a port are handled, from its listeners' protocols.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PortMode {
    /// Plain HTTP/1.1 and h2c.
    Http,
    /// TLS terminated here, then HTTP (HTTPS listeners).
    Https,
    /// TLS terminated here, then the decrypted bytes forwarded to the
    /// TLSRoute chosen by SNI (TLS listeners in Terminate mode, the spec's
    /// default mode).
    TlsTerminate,
    /// TLS forwarded by SNI without terminating (TLS listeners in
    /// Passthrough mode).
    TlsPassthrough,
    /// TLS listeners in different modes sharing the port (Passthrough and
    /// Terminate, or either beside HTTPS listeners): the ClientHello's SNI
    /// picks the listener, whose mode then applies.
    TlsMixed,
    /// Raw TCP forwarding.
    Tcp,
    /// UDP datagrams forwarded per client session (UDP listeners).
    Udp,
}

/// One generation of configuration.
#[derive(Debug)]
pub struct Config {
    /// Counts up from 1 with every applied reload.
    pub generation: u64,
    /// The objects it was built from.
    pub snapshot: Snapshot,
    /// The engine's output.
    pub computed: gwcore::engine::Computed,
    /// The compiled routing table of each Gateway.
    pub tables: gwcore::table::Tables,
    /// Ports to serve, each Gateway's apart.
    pub ports: BTreeMap<GatewayPort, PortMode>,
    /// Backend addresses (shared with the previous configuration when no
    /// Service or EndpointSlice changed).
    pub endpoints: Arc<Endpoints>,
    /// Metric and log labels of every Gateway, route and backend, made once
    /// (shared with the previous configuration when no routing changed).
    pub labels: Arc<Labels>,
    /// The echo backends standing for Services without endpoints.
    pub echo_backends: BTreeMap<ObjectKey, SocketAddr>,
    /// TLS settings per terminating port.
    pub tls: BTreeMap<GatewayPort, Arc<rustls::ServerConfig>>,
    /// Certificates that could not be read.
    pub tls_errors: Vec<String>,
    /// TLS to backends (BackendTLSPolicy), built on first use.
    pub backend_tls: crate::backend_tls::BackendTlsCache,
    /// Warnings from loading the manifests.
    pub diagnostics: Vec<Diagnostic>,
    /// The plug-ins that run extension filters.
    pub plugins: crate::plugin::Plugins,
    /// The engine this configuration was computed with, until the next
    /// build takes it over.
    engine: Mutex<Option<Engine>>,
    /// The echo backends asked for, whatever was done with them (the next
    /// build reuses `endpoints` only for the same ones).
    extra_endpoints: BTreeMap<ObjectKey, SocketAddr>,
    /// Per TLS Gateway, its settings per port and the certificates that
    /// could not be read (the next build reuses those of Gateways whose
    /// routing, Secrets and ConfigMaps did not change).
    tls_by_gateway: BTreeMap<ObjectKey, GatewayTls>,
}

/// A Gateway's TLS settings per port and its certificate errors.
type GatewayTls = (BTreeMap<u16, Arc<rustls::ServerConfig>>, Vec<String>);

/// Inputs besides the snapshot. Built by [`BuildOptions::new`]; it may
/// gain fields in a minor release.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct BuildOptions {
    /// Our `controllerName`.
    pub controller_name: String,
    /// "Now", RFC 3339.
    pub now: String,
    /// Extension kinds (resolved by the engine) and their plug-ins (run by
    /// the proxy). Default: none.
    pub plugins: crate::plugin::Plugins,
    /// The addresses this deployment serves Gateways on, against which a
    /// Gateway's `spec.addresses` are judged
    /// ([`ComputeOptions::with_usable_addresses`]); `None`: every address
    /// is taken as usable.
    pub usable_addresses: Option<BTreeSet<IpAddr>>,
    /// Whether another engine writes the statuses (`gwcore serve
    /// --kubernetes`, whose controller does): a change of status alone is
    /// then taken without computing ([`ComputeOptions::routing_only`]), so
    /// the echoes of the controller's writes cost the proxy nothing.
    /// Default `false`.
    pub routing_only: bool,
}

impl BuildOptions {
    /// Options for `controller_name` at `now` (RFC 3339), with no plug-in
    /// and every address taken as usable.
    pub fn new(controller_name: impl Into<String>, now: impl Into<String>) -> BuildOptions {
        BuildOptions {
            controller_name: controller_name.into(),
            now: now.into(),
            plugins: crate::plugin::Plugins::default(),
            usable_addresses: None,
            routing_only: false,
        }
    }

    /// The engine's options.
    fn compute_options(&self) -> ComputeOptions {
        let opts = ComputeOptions::new(self.controller_name.clone(), self.now.clone())
            .with_extensions(self.plugins.extensions().clone())
            .with_routing_only(self.routing_only);
        match &self.usable_addresses {
            Some(a) => opts.with_usable_addresses(a.iter().map(IpAddr::to_string)),
            None => opts,
        }
    }
}

/// The ports of the Gateways `controller_name` serves in `snapshot` (those
/// of its GatewayClasses), with the ports of the ListenerSets naming them:
/// the sockets a configuration built from it may bind, known before the
/// engine runs (a port of a listener the engine then finds invalid is
/// counted too).
pub fn gateway_ports(snapshot: &Snapshot, controller_name: &str) -> BTreeSet<GatewayPort> {
    let ours = |class: &str| {
        matches!(
            snapshot.get(&ObjectKey::cluster_scoped(gwcore::model::Kind::GatewayClass, class)),
            Some(Object::GatewayClass(gc)) if gc.spec.controller_name == controller_name
        )
    };
    let port = |p: i32| u16::try_from(p).ok();
    let mut out = BTreeSet::new();
    for o in snapshot.of_kind(gwcore::model::Kind::Gateway) {
        if let Object::Gateway(gw) = o
            && ours(&gw.spec.gateway_class_name)
        {
            let key = o.key();
            out.extend(
                gw.spec
                    .listeners
                    .iter()
                    .filter_map(|l| Some(GatewayPort::new(key.clone(), port(l.port)?))),
            );
        }
    }
    for o in snapshot.of_kind(gwcore::model::Kind::ListenerSet) {
        let Object::ListenerSet(ls) = o else { continue };
        let parent = &ls.spec.parent_ref;
        let namespace = parent
            .namespace
            .clone()
            .or_else(|| ls.metadata.namespace.clone())
            .unwrap_or_default();
        let key = ObjectKey::new(gwcore::model::Kind::Gateway, namespace, parent.name.clone());
        if matches!(snapshot.get(&key), Some(Object::Gateway(gw)) if ours(&gw.spec.gateway_class_name))
        {
            out.extend(
                ls.spec
                    .listeners
                    .iter()
                    .filter_map(|l| Some(GatewayPort::new(key.clone(), port(l.port)?))),
            );
        }
    }
    out
}

impl Config {
    /// Computes routing and statuses for `snapshot`; `extra_endpoints` (echo
    /// backends) serve every port of Services that have no endpoints.
    pub fn build(
        generation: u64,
        snapshot: Snapshot,
        diagnostics: Vec<Diagnostic>,
        opts: &BuildOptions,
        extra_endpoints: &BTreeMap<ObjectKey, SocketAddr>,
    ) -> Config {
        Config::build_next(
            None,
            generation,
            snapshot,
            diagnostics,
            opts,
            extra_endpoints,
        )
    }

    /// As [`Config::build`], from the configuration served until now: its
    /// engine is taken over and told only what differs between the two
    /// snapshots, and only the tables of Gateways whose routing changed are
    /// compiled again (the others are shared). Without `previous`, or when
    /// a build took its engine already, everything is computed.
    pub fn build_next(
        previous: Option<&Config>,
        generation: u64,
        snapshot: Snapshot,
        diagnostics: Vec<Diagnostic>,
        opts: &BuildOptions,
        extra_endpoints: &BTreeMap<ObjectKey, SocketAddr>,
    ) -> Config {
        let taken = previous.and_then(|p| {
            // A panic while building left at worst no engine behind.
            let mut slot = p.engine.lock().unwrap_or_else(|e| e.into_inner());
            slot.take()
                .filter(|e| {
                    e.options().controller_name == opts.controller_name
                        && e.options().extensions == *opts.plugins.extensions()
                        && e.options().usable_addresses == opts.compute_options().usable_addresses
                        && e.options().routing_only == opts.routing_only
                })
                .map(|e| (p, e))
        });
        // What the next steps reuse from `previous`: the routing that
        // changed, and whether objects they read changed.
        let (engine, tables, reuse): (_, _, Option<(&Config, Delta, Touched)>) = match taken {
            Some((previous, mut engine)) => {
                engine.set_now(opts.now.clone());
                let touched = Touched::between(engine.snapshot(), &snapshot);
                // A change of status alone is adopted by the engine
                // (Engine::apply_shared), computing nothing when it is the
                // echo of the status computed.
                let delta = engine.update_to(&snapshot);
                let tables = previous.tables.update(&delta.routing);
                (engine, tables, Some((previous, delta, touched)))
            }
            None => {
                let engine = Engine::from_snapshot(snapshot.clone(), opts.compute_options());
                // The engine's shared routing, compiled where it is.
                let tables = gwcore::table::Tables::compile(engine.routing());
                (engine, tables, None)
            }
        };
        // The engine holds `snapshot`'s objects themselves now
        // (Engine::update_to), so keeping `snapshot` holds no object twice.
        let computed = engine.computed();
        let (endpoints, echo_backends) = match &reuse {
            Some((p, _, touched)) if p.extra_endpoints == *extra_endpoints => {
                if touched.services.is_empty() {
                    (p.endpoints.clone(), p.echo_backends.clone())
                } else {
                    let (endpoints, echoes) =
                        endpoints_updated(p, &snapshot, &touched.services, extra_endpoints);
                    (Arc::new(endpoints), echoes)
                }
            }
            _ => {
                let (endpoints, echoes) = endpoints_with_echoes(&snapshot, extra_endpoints);
                (Arc::new(endpoints), echoes)
            }
        };
        let ports = ports(&computed.routing);
        let tls_gateways: BTreeSet<&ObjectKey> = ports
            .iter()
            .filter(|(_, m)| {
                matches!(
                    m,
                    PortMode::Https | PortMode::TlsTerminate | PortMode::TlsMixed
                )
            })
            .map(|(gp, _)| &gp.gateway)
            .collect();
        let mut tls_by_gateway = BTreeMap::new();
        for gw in tls_gateways {
            let Some(r) = computed.routing.get(gw) else {
                continue;
            };
            let kept = match &reuse {
                Some((p, delta, touched))
                    if !touched.certificates && !delta.routing.contains_key(gw) =>
                {
                    p.tls_by_gateway.get(gw).cloned()
                }
                _ => None,
            };
            let built = kept.unwrap_or_else(|| crate::certs::server_configs(r, &snapshot));
            tls_by_gateway.insert(gw.clone(), built);
        }
        let mut tls = BTreeMap::new();
        let mut tls_errors = Vec::new();
        for (gw, (configs, errors)) in &tls_by_gateway {
            tls_errors.extend(errors.iter().cloned());
            for (port, c) in configs {
                tls.insert(GatewayPort::new(gw.clone(), *port), c.clone());
            }
        }
        let labels = match &reuse {
            Some((p, delta, _)) if delta.routing.is_empty() => p.labels.clone(),
            Some((p, delta, _)) => Arc::new(p.labels.update(&p.computed.routing, &delta.routing)),
            None => Arc::new(Labels::new(&computed.routing)),
        };
        Config {
            tables,
            tls,
            tls_errors,
            backend_tls: Default::default(),
            generation,
            snapshot,
            computed,
            ports,
            endpoints,
            labels,
            echo_backends,
            diagnostics,
            plugins: opts.plugins.clone(),
            engine: Mutex::new(Some(engine)),
            extra_endpoints: extra_endpoints.clone(),
            tls_by_gateway,
        }
    }

    /// The statuses of every object, as JSON for `/status`.
    pub fn status_json(&self) -> serde_json::Value {
        let statuses: Vec<serde_json::Value> = self
            .computed
            .statuses
            .iter()
            .map(|(k, s)| {
                serde_json::json!({
                    "kind": k.kind.as_str(),
                    "namespace": k.namespace,
                    "name": k.name,
                    "status": s,
                })
            })
            .collect();
        serde_json::json!({
            "generation": self.generation,
            "objects": statuses,
            "refusals": self.computed.refusals,
            "ports": self
                .ports
                .iter()
                .map(|(gp, mode)| serde_json::json!({"gateway": gp.gateway, "port": gp.port, "mode": mode}))
                .collect::<Vec<_>>(),
            "diagnostics": self.diagnostics,
            "echoBackends": self
                .echo_backends
                .iter()
                .map(|(k, a)| serde_json::json!({"namespace": k.namespace, "service": k.name, "addr": a}))
                .collect::<Vec<_>>(),
            "certificateErrors": self.tls_errors,
            "routingProblems": self
                .tables
                .iter()
                .flat_map(|(_, t)| t.problems().iter().map(|p| format!("{} rule {}: {}", p.route, p.rule, p.message)))
                .collect::<Vec<_>>(),
        })
    }
}

/// The ports of every Gateway, and how each is served. Listeners of one
/// Gateway that share a port share its socket (the table picks the listener
/// by hostname); the first listener's protocol decides the mode (the engine
/// marks listeners whose protocols clash on a port as Conflicted), except
/// that TLS and HTTPS listeners of different modes make the port
/// [`PortMode::TlsMixed`].
fn ports(routing: &BTreeMap<ObjectKey, GatewayRouting>) -> BTreeMap<GatewayPort, PortMode> {
    let mut out = BTreeMap::new();
    for (gw, r) in routing {
        for l in &r.listeners {
            let mode = match (l.protocol, l.tls_mode) {
                (ListenerProtocol::Http, _) => PortMode::Http,
                (ListenerProtocol::Https, _) => PortMode::Https,
                (ListenerProtocol::Tls, Some(TlsMode::Passthrough)) => PortMode::TlsPassthrough,
                (ListenerProtocol::Tls, _) => PortMode::TlsTerminate,
                (ListenerProtocol::Tcp, _) => PortMode::Tcp,
                (ListenerProtocol::Udp, _) => PortMode::Udp,
            };
            let tls = |m| {
                matches!(
                    m,
                    PortMode::Https | PortMode::TlsTerminate | PortMode::TlsPassthrough
                )
            };
            let entry = out
                .entry(GatewayPort::new(gw.clone(), l.port))
                .or_insert(mode);
            if *entry != mode && (tls(*entry) || *entry == PortMode::TlsMixed) && tls(mode) {
                *entry = PortMode::TlsMixed;
            }
        }
    }
    out
}

/// Which objects the steps after the engine read changed between two
/// snapshots (compared only where the two do not share the object).
#[derive(Debug, Default)]
struct Touched {
    /// The Services whose endpoints may have changed: changed Services,
    /// and the Services of changed EndpointSlices (before and after).
    services: BTreeSet<ObjectKey>,
    /// A Secret or a ConfigMap (certificates, CA bundles).
    certificates: bool,
}

impl Touched {
    fn between(old: &Snapshot, new: &Snapshot) -> Touched {
        use gwcore::model::Kind;
        let mut t = Touched::default();
        old.unshared(new, |key, a, b| match key.kind {
            Kind::Service if a != b => {
                t.services.insert(key.clone());
            }
            Kind::EndpointSlice if a != b => {
                let services = [a, b]
                    .into_iter()
                    .flatten()
                    .filter_map(|o| crate::endpoints::slice_service(o));
                t.services.extend(services);
            }
            Kind::Secret | Kind::ConfigMap if !t.certificates && a != b => {
                t.certificates = true;
            }
            _ => {}
        });
        t
    }
}

/// The endpoints of `previous` with those of `services` read again from
/// `snapshot`, and echo backends (`extra`, the same as `previous`'s) put
/// in for those of them left without any: what
/// [`endpoints_with_echoes`] gives for `snapshot`.
fn endpoints_updated(
    previous: &Config,
    snapshot: &Snapshot,
    services: &BTreeSet<ObjectKey>,
    extra: &BTreeMap<ObjectKey, SocketAddr>,
) -> (Endpoints, BTreeMap<ObjectKey, SocketAddr>) {
    let mut endpoints = previous.endpoints.updated(snapshot, services);
    let mut used = previous.echo_backends.clone();
    for key in services {
        used.remove(key);
        if let Some(addr) = extra.get(key)
            && !endpoints.has_service(key)
            && let Some(Object::Service(svc)) = snapshot.get(key)
        {
            endpoints.insert_all_ports(svc, key, *addr);
            used.insert(key.clone(), *addr);
        }
    }
    (endpoints, used)
}

/// The EndpointSlices' addresses, and `extra` (echo backends) for every
/// port of the Services that have none; with the echo backends used.
fn endpoints_with_echoes(
    snapshot: &Snapshot,
    extra: &BTreeMap<ObjectKey, SocketAddr>,
) -> (Endpoints, BTreeMap<ObjectKey, SocketAddr>) {
    let mut endpoints = Endpoints::from_snapshot(snapshot);
    let mut used = BTreeMap::new();
    for (key, addr) in extra {
        if endpoints.has_service(key) {
            continue;
        }
        if let Some(Object::Service(svc)) = snapshot.get(key) {
            endpoints.insert_all_ports(svc, key, *addr);
            used.insert(key.clone(), *addr);
        }
    }
    (endpoints, used)
}

/// The labels requests are counted and logged under, made once per
/// configuration so that a request only clones shared strings.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Labels {
    gateways: BTreeMap<ObjectKey, Arc<str>>,
    routes: BTreeMap<ObjectKey, Counted>,
    backends: BTreeMap<ObjectKey, BTreeMap<u16, Counted>>,
}

/// A label and how many listeners' routes use it (it goes with the last).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Counted {
    label: Arc<str>,
    uses: usize,
}

impl Labels {
    fn new(routing: &BTreeMap<ObjectKey, GatewayRouting>) -> Labels {
        let mut l = Labels::default();
        for (gw, r) in routing {
            l.add(gw, r);
        }
        l
    }

    /// These labels with the routing of the Gateways in `changed` (whose
    /// routing was `before`) replaced: equal to [`Labels::new`] of the
    /// routing after.
    fn update(
        &self,
        before: &BTreeMap<ObjectKey, GatewayRouting>,
        changed: &BTreeMap<ObjectKey, Option<Arc<GatewayRouting>>>,
    ) -> Labels {
        let mut l = self.clone();
        for (gw, now) in changed {
            match (before.get(gw), now) {
                (Some(old), Some(new)) => l.replace(old, new),
                (Some(old), None) => l.remove(gw, old),
                (None, Some(new)) => l.add(gw, new),
                (None, None) => {}
            }
        }
        l
    }

    /// A Gateway's routing `old` replaced by `new`: only the routes not
    /// shared by a listener of the same name in both count.
    fn replace(&mut self, old: &GatewayRouting, new: &GatewayRouting) {
        use gwcore::attachments::{AttachedRoute, ListenerRouting};
        // Shared with the listener of the same name and source in the
        // other routing.
        let shared = |other: &GatewayRouting, l: &ListenerRouting, route: &Arc<AttachedRoute>| {
            other
                .listeners
                .iter()
                .find(|o| o.name == l.name && o.source == l.source)
                .and_then(|o| o.routes.get(&route.key))
                .is_some_and(|r| Arc::ptr_eq(r, route))
        };
        for l in &old.listeners {
            for route in &l.routes {
                if !shared(new, l, route) {
                    self.route_down(route);
                }
            }
        }
        for l in &new.listeners {
            for route in &l.routes {
                if !shared(old, l, route) {
                    self.route_up(route);
                }
            }
        }
    }

    fn route_up(&mut self, route: &gwcore::attachments::AttachedRoute) {
        count_up(self.routes.entry(route.key.clone()), || {
            route_label(&route.key)
        });
        for t in Labels::backends(route) {
            count_up(
                self.backends
                    .entry(t.service.clone())
                    .or_default()
                    .entry(t.port),
                || backend_label(&t.service, t.port),
            );
        }
    }

    fn route_down(&mut self, route: &gwcore::attachments::AttachedRoute) {
        count_down(&mut self.routes, &route.key);
        for t in Labels::backends(route) {
            if let Some(ports) = self.backends.get_mut(&t.service) {
                count_down(ports, &t.port);
                if ports.is_empty() {
                    self.backends.remove(&t.service);
                }
            }
        }
    }

    /// The targets of a route's backends.
    fn backends(
        route: &gwcore::attachments::AttachedRoute,
    ) -> impl Iterator<Item = &gwcore::attachments::BackendTarget> {
        use gwcore::attachments::RouteRules;
        let backends: Vec<&gwcore::attachments::ResolvedBackend> = match &route.rules {
            RouteRules::Http(rules) => rules.iter().flat_map(|r| &r.backends).collect(),
            RouteRules::Grpc(rules) => rules.iter().flat_map(|r| &r.backends).collect(),
            RouteRules::L4(rules) => rules.iter().flat_map(|r| &r.backends).collect(),
        };
        backends.into_iter().filter_map(|b| b.target.as_ref().ok())
    }

    fn add(&mut self, gw: &ObjectKey, r: &GatewayRouting) {
        self.gateways
            .insert(gw.clone(), format!("{}/{}", gw.namespace, gw.name).into());
        for listener in &r.listeners {
            for route in &listener.routes {
                self.route_up(route);
            }
        }
    }

    fn remove(&mut self, gw: &ObjectKey, r: &GatewayRouting) {
        self.gateways.remove(gw);
        for listener in &r.listeners {
            for route in &listener.routes {
                self.route_down(route);
            }
        }
    }

    /// `namespace/name` of a Gateway.
    pub fn gateway(&self, key: &ObjectKey) -> Arc<str> {
        self.gateways
            .get(key)
            .cloned()
            .unwrap_or_else(|| format!("{}/{}", key.namespace, key.name).into())
    }

    /// `Kind namespace/name` of a route.
    pub fn route(&self, key: &ObjectKey) -> Arc<str> {
        self.routes
            .get(key)
            .map(|c| c.label.clone())
            .unwrap_or_else(|| route_label(key).into())
    }

    /// `namespace/service:port` of a backend.
    pub fn backend(&self, service: &ObjectKey, port: u16) -> Arc<str> {
        self.backends
            .get(service)
            .and_then(|ports| ports.get(&port))
            .map(|c| c.label.clone())
            .unwrap_or_else(|| backend_label(service, port).into())
    }
}

/// One more use of a label, made when it is new.
fn count_up<K: Ord>(
    entry: std::collections::btree_map::Entry<'_, K, Counted>,
    label: impl FnOnce() -> String,
) {
    entry
        .and_modify(|c| c.uses += 1)
        .or_insert_with(|| Counted {
            label: label().into(),
            uses: 1,
        });
}

/// One use of a label less; the last takes it away.
fn count_down<K: Ord>(map: &mut BTreeMap<K, Counted>, key: &K) {
    if let Some(c) = map.get_mut(key) {
        c.uses -= 1;
        if c.uses == 0 {
            map.remove(key);
        }
    }
}

fn route_label(key: &ObjectKey) -> String {
    format!("{} {}/{}", key.kind, key.namespace, key.name)
}

fn backend_label(service: &ObjectKey, port: u16) -> String {
    format!("{}/{}:{}", service.namespace, service.name, port)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gwcore::engine::compute;
    use gwcore::model::Kind;

    const MANIFESTS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gc}
spec: {controllerName: example.com/gc}
---
apiVersion: v1
kind: Namespace
metadata: {name: apps}
---
apiVersion: v1
kind: Service
metadata: {name: web, namespace: apps}
spec: {ports: [{port: 8080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: a, namespace: apps}
spec:
  gatewayClassName: gc
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: b, namespace: apps}
spec:
  gatewayClassName: gc
  listeners: [{name: http, port: 81, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: on-a, namespace: apps}
spec:
  parentRefs: [{name: a}]
  rules: [{matches: [{path: {type: PathPrefix, value: /a}}], backendRefs: [{name: web, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: on-b, namespace: apps}
spec:
  parentRefs: [{name: b}]
  rules: [{matches: [{path: {type: PathPrefix, value: /b}}], backendRefs: [{name: web, port: 8080}]}]
"#;

    fn snapshot(manifests: &str) -> Snapshot {
        let loaded = gwcore::load::load_str("test.yaml", manifests);
        assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
        Snapshot::from_objects(loaded.objects.into_iter().map(|(o, _)| o))
    }

    fn opts() -> BuildOptions {
        BuildOptions {
            plugins: Default::default(),
            controller_name: "example.com/gc".into(),
            now: "2026-01-01T00:00:00Z".into(),
            usable_addresses: None,
            routing_only: false,
        }
    }

    #[test]
    fn a_reload_recompiles_only_the_gateways_whose_routing_changed() {
        let none = BTreeMap::new();
        let first = Config::build(1, snapshot(MANIFESTS), Vec::new(), &opts(), &none);
        let edited = MANIFESTS.replace("value: /b}", "value: /bee}");
        let next_snap = snapshot(&edited);
        let second = Config::build_next(
            Some(&first),
            2,
            next_snap.clone(),
            Vec::new(),
            &opts(),
            &none,
        );
        let a = ObjectKey::new(Kind::Gateway, "apps", "a");
        let b = ObjectKey::new(Kind::Gateway, "apps", "b");
        let table = |c: &Config, k: &ObjectKey| c.tables.get(k).cloned().expect("a table");
        assert!(Arc::ptr_eq(&table(&first, &a), &table(&second, &a)));
        assert!(!Arc::ptr_eq(&table(&first, &b), &table(&second, &b)));
        // What the engine carried over equals a computation from scratch.
        let full = compute(
            &next_snap,
            &ComputeOptions::new(opts().controller_name, opts().now),
        );
        assert_eq!(second.computed, full);
        let find = |c: &Config, path: &str| {
            let req = gwcore::table::RequestHead::new(81, "x.example", "GET", path);
            table(c, &b)
                .find(&req)
                .matched
                .map(|m| m.route().name.clone())
        };
        assert_eq!(find(&second, "/bee"), Some("on-b".to_string()));
        assert_eq!(find(&second, "/b"), None);

        // The engine moved on with the second configuration: a build from
        // the first again computes everything, and gets the same result.
        let again = Config::build_next(Some(&first), 2, next_snap, Vec::new(), &opts(), &none);
        assert_eq!(again.computed, second.computed);
        assert!(!Arc::ptr_eq(&table(&first, &a), &table(&again, &a)));
    }

    #[test]
    fn gateway_ports_are_those_of_our_gateways_and_of_the_listener_sets_naming_them() {
        let snap = snapshot(
            r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gc}
spec: {controllerName: example.com/gc}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: theirs}
spec: {controllerName: example.com/other}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: a, namespace: apps}
spec:
  gatewayClassName: gc
  allowedListeners: {namespaces: {from: All}}
  listeners:
  - {name: http, port: 80, protocol: HTTP}
  - {name: alt, port: 8080, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: other, namespace: apps}
spec:
  gatewayClassName: theirs
  allowedListeners: {namespaces: {from: All}}
  listeners: [{name: http, port: 81, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: extra, namespace: team}
spec:
  parentRef: {name: a, namespace: apps}
  listeners: [{name: more, port: 9000, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: ListenerSet
metadata: {name: elsewhere, namespace: apps}
spec:
  parentRef: {name: other}
  listeners: [{name: more, port: 9001, protocol: HTTP}]
"#,
        );
        let a = ObjectKey::new(Kind::Gateway, "apps", "a");
        let expected: BTreeSet<GatewayPort> = [80, 8080, 9000]
            .into_iter()
            .map(|p| GatewayPort::new(a.clone(), p))
            .collect();
        assert_eq!(gateway_ports(&snap, "example.com/gc"), expected);
        assert_eq!(
            gateway_ports(&snap, "example.com/other"),
            [81, 9001]
                .into_iter()
                .map(|p| GatewayPort::new(ObjectKey::new(Kind::Gateway, "apps", "other"), p))
                .collect()
        );
    }

    #[test]
    fn usable_addresses_reach_the_engine_and_a_change_of_them_recomputes() {
        let snap = snapshot(&MANIFESTS.replace(
            "metadata: {name: a, namespace: apps}\nspec:\n",
            "metadata: {name: a, namespace: apps}\nspec:\n  addresses: [{value: 192.0.2.7}]\n",
        ));
        let none = BTreeMap::new();
        let a = ObjectKey::new(Kind::Gateway, "apps", "a");
        let programmed = |c: &Config| {
            let Some(gwcore::status::ObjectStatus::Gateway(g)) = c.computed.statuses.get(&a) else {
                panic!("no status for Gateway a")
            };
            let p = g
                .conditions
                .iter()
                .find(|c| c.type_ == "Programmed")
                .expect("Programmed");
            (p.status.clone(), p.reason.clone())
        };
        let mut usable = opts();
        usable.usable_addresses = Some([IpAddr::from([127, 0, 0, 1])].into());
        let first = Config::build(1, snap.clone(), Vec::new(), &usable, &none);
        assert_eq!(
            programmed(&first),
            ("False".to_string(), "AddressNotUsable".to_string())
        );
        // The same objects with other usable addresses: the engine kept
        // from the first build must not be reused as is.
        usable.usable_addresses = Some([IpAddr::from([192, 0, 2, 7])].into());
        let next = Config::build_next(Some(&first), 2, snap, Vec::new(), &usable, &none);
        assert_eq!(
            programmed(&next),
            ("True".to_string(), "Programmed".to_string())
        );
    }

    /// Documents a random walk picks from: each object in two versions
    /// (index `2k` and `2k + 1`), among them the inputs of every step after
    /// the engine (Services, EndpointSlices, a TLS Secret, an HTTPS
    /// listener, routes to two Gateways).
    fn pool(cert: &str, key: &str) -> Vec<String> {
        let indent = |pem: &str| -> String { pem.lines().map(|l| format!("    {l}\n")).collect() };
        let gateway = |name: &str, extra: &str| {
            format!(
                "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: apps}}\nspec:\n  gatewayClassName: gc\n  listeners:\n  - {{name: http, port: 80, protocol: HTTP}}\n{extra}"
            )
        };
        let https = "  - {name: https, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: tls}]}}\n";
        let route = |name: &str, parent: &str, path: &str, svc: &str| {
            format!(
                "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: apps}}\nspec:\n  parentRefs: [{{name: {parent}}}]\n  rules: [{{matches: [{{path: {{type: PathPrefix, value: {path}}}}}], backendRefs: [{{name: {svc}, port: 8080}}]}}]\n"
            )
        };
        let slice = |ip: &str, service: &str| {
            format!(
                "apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: web-1, namespace: apps, labels: {{kubernetes.io/service-name: {service}}}}}\naddressType: IPv4\nports: [{{port: 9000}}]\nendpoints: [{{addresses: [{ip}]}}]\n"
            )
        };
        let service = |name: &str, port: u16| {
            format!(
                "apiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: apps}}\nspec: {{ports: [{{port: {port}}}]}}\n"
            )
        };
        vec![
            gateway("a", https),
            gateway("a", ""),
            gateway("b", ""),
            gateway("b", https),
            route("r1", "a", "/one", "web"),
            route("r1", "a", "/uno", "api"),
            route("r2", "b", "/two", "web"),
            route("r2", "a", "/two", "web"),
            route("r3", "a", "/three", "api"),
            route("r3", "b", "/three", "api"),
            service("web", 8080),
            service("web", 8081),
            service("api", 8080),
            service("api", 8082),
            // The second version moves the slice to another Service.
            slice("10.0.0.1", "web"),
            slice("10.0.0.2", "api"),
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: tls, namespace: apps}}\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
                indent(cert),
                indent(key)
            ),
            "apiVersion: v1\nkind: Secret\nmetadata: {name: tls, namespace: apps}\nstringData: {tls.crt: none, tls.key: none}\n".to_string(),
        ]
    }

    /// Everything a configuration serves, comparable.
    fn observed(c: &Config) -> impl PartialEq + std::fmt::Debug {
        (
            (
                c.tables
                    .iter()
                    .map(|(k, t)| (k.clone(), format!("{t:?}")))
                    .collect::<Vec<_>>(),
                c.endpoints.clone(),
                c.labels.clone(),
                c.ports.clone(),
                c.echo_backends.clone(),
            ),
            (
                c.computed.clone(),
                c.tls.keys().cloned().collect::<Vec<_>>(),
                c.tls_errors.clone(),
                c.snapshot.clone(),
            ),
        )
    }

    #[derive(Debug, Clone)]
    enum Step {
        /// Puts in a version of an object.
        Apply(usize),
        /// Takes out the object of a document.
        Delete(usize),
        /// Writes the computed status of an object back (another
        /// resourceVersion), as the API server echoes a status write.
        Echo(usize),
    }

    fn step() -> impl proptest::strategy::Strategy<Value = (Step, bool)> {
        use proptest::prelude::*;
        (
            prop_oneof![
                3 => any::<usize>().prop_map(Step::Apply),
                1 => any::<usize>().prop_map(Step::Delete),
                2 => any::<usize>().prop_map(Step::Echo),
            ],
            any::<bool>(),
        )
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 48, ..Default::default() })]

        /// A configuration built from the previous one after any changes
        /// (handed over as a clone of the served snapshot, as a file
        /// reload does, or as a separate copy of every object, as the
        /// controller does) serves exactly what one built from scratch
        /// from the same objects does.
        #[test]
        fn build_next_serves_what_a_fresh_build_does(steps in proptest::collection::vec(step(), 1..24)) {
            let c = rcgen::generate_simple_self_signed(vec!["x.example".to_owned()]).unwrap();
            let docs: Vec<Object> = pool(&c.cert.pem(), &c.key_pair.serialize_pem())
                .iter()
                .map(|d| {
                    let loaded = gwcore::load::load_str("pool.yaml", d);
                    assert!(loaded.diagnostics.is_empty(), "{:?}", loaded.diagnostics);
                    loaded.objects.into_iter().next().expect("one object").0
                })
                .collect();
            // An echo backend for `api`, served while it has no endpoints.
            let echoes = BTreeMap::from([(
                ObjectKey::new(Kind::Service, "apps", "api"),
                SocketAddr::from(([127, 0, 0, 1], 9)),
            )]);
            let mut objects = snapshot(
                "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: gc}\nspec: {controllerName: example.com/gc}\n",
            );
            let mut config = Config::build(1, objects.clone(), Vec::new(), &opts(), &echoes);
            for (i, (step, separate)) in steps.into_iter().enumerate() {
                match step {
                    Step::Apply(d) => {
                        objects.insert(docs[d % docs.len()].clone());
                    }
                    Step::Delete(d) => {
                        objects.remove(&docs[d % docs.len()].key());
                    }
                    Step::Echo(s) => {
                        let statuses = &config.computed.statuses;
                        if let Some((k, st)) = statuses.iter().nth(s % statuses.len().max(1)) {
                            objects.set_status(k, st.clone());
                            if let Some(o) = objects.get_mut(k) {
                                o.meta_mut().resource_version = Some(format!("{i}"));
                            }
                        }
                    }
                }
                let handed = if separate {
                    Snapshot::from_objects(objects.iter().cloned())
                } else {
                    objects.clone()
                };
                let generation = config.generation + 1;
                let next = Config::build_next(Some(&config), generation, handed, Vec::new(), &opts(), &echoes);
                let fresh = Config::build(generation, objects.clone(), Vec::new(), &opts(), &echoes);
                proptest::prop_assert_eq!(observed(&next), observed(&fresh));
                config = next;
            }
        }
    }

    #[test]
    fn unchanged_inputs_are_shared_with_the_previous_configuration() {
        let none = BTreeMap::new();
        let first = Config::build(1, snapshot(MANIFESTS), Vec::new(), &opts(), &none);
        // A status echo of a route, in a separate copy of every object.
        let mut objects = Snapshot::from_objects(first.snapshot.iter().cloned());
        let route = ObjectKey::new(Kind::HttpRoute, "apps", "on-a");
        objects.set_status(&route, first.computed.statuses[&route].clone());
        objects.get_mut(&route).unwrap().meta_mut().resource_version = Some("2".into());
        let second =
            Config::build_next(Some(&first), 2, objects.clone(), Vec::new(), &opts(), &none);
        assert!(Arc::ptr_eq(&first.labels, &second.labels));
        assert!(Arc::ptr_eq(&first.endpoints, &second.endpoints));
        // The echo and every equal object are the caller's now: the next
        // build compares pointers only.
        let mut unshared = 0;
        second.snapshot.unshared(&objects, |_, _, _| unshared += 1);
        assert_eq!(unshared, 0);
        let engine = second.engine.lock().unwrap();
        let mut unshared = 0;
        engine
            .as_ref()
            .unwrap()
            .snapshot()
            .unshared(&objects, |_, _, _| unshared += 1);
        assert_eq!(unshared, 0, "the engine did not take the caller's objects");
    }

    #[test]
    fn tls_settings_are_rebuilt_for_a_new_certificate_only() {
        let none = BTreeMap::new();
        let secret = |c: &rcgen::CertifiedKey| {
            let indent =
                |pem: &str| -> String { pem.lines().map(|l| format!("    {l}\n")).collect() };
            format!(
                "apiVersion: v1\nkind: Secret\nmetadata: {{name: tls, namespace: apps}}\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
                indent(&c.cert.pem()),
                indent(&c.key_pair.serialize_pem())
            )
        };
        let one = rcgen::generate_simple_self_signed(vec!["x.example".to_owned()]).unwrap();
        let two = rcgen::generate_simple_self_signed(vec!["x.example".to_owned()]).unwrap();
        let https = MANIFESTS.replace(
            "listeners: [{name: http, port: 80, protocol: HTTP}]",
            "listeners: [{name: https, port: 443, protocol: HTTPS, tls: {certificateRefs: [{name: tls}]}}]",
        );
        let first = Config::build(
            1,
            snapshot(&format!("{https}---\n{}", secret(&one))),
            Vec::new(),
            &opts(),
            &none,
        );
        let port = GatewayPort::new(ObjectKey::new(Kind::Gateway, "apps", "a"), 443);
        assert!(first.tls_errors.is_empty(), "{:?}", first.tls_errors);
        // Another route's change: the settings are shared.
        let other = snapshot(&format!(
            "{}---\n{}",
            https.replace("value: /b}", "value: /bee}"),
            secret(&one)
        ));
        let second = Config::build_next(Some(&first), 2, other, Vec::new(), &opts(), &none);
        assert!(Arc::ptr_eq(&first.tls[&port], &second.tls[&port]));
        // The certificate rotated (the routing is the same): built anew.
        let rotated = snapshot(&format!(
            "{}---\n{}",
            https.replace("value: /b}", "value: /bee}"),
            secret(&two)
        ));
        let third = Config::build_next(Some(&second), 3, rotated, Vec::new(), &opts(), &none);
        assert!(!Arc::ptr_eq(&second.tls[&port], &third.tls[&port]));
    }
}
