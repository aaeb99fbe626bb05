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
use gwcore::model::Object;
use gwcore::model::ObjectKey;
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
    /// Backend addresses.
    pub endpoints: Endpoints,
    /// Metric and log labels of every Gateway, route and backend, made once.
    pub labels: Labels,
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
}

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
        }
    }

    /// The engine's options.
    fn compute_options(&self) -> ComputeOptions {
        let opts = ComputeOptions::new(self.controller_name.clone(), self.now.clone())
            .with_extensions(self.plugins.extensions().clone());
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
                })
                .map(|e| (p, e))
        });
        let (engine, tables) = match taken {
            Some((previous, mut engine)) => {
                engine.set_now(opts.now.clone());
                let mut delta = Delta::default();
                for (key, now) in engine.snapshot().differences(&snapshot) {
                    // A change of status alone (in Kubernetes mode, the
                    // echo of each status write) changes nothing served:
                    // the data plane reads no status, and the statuses
                    // are written by the controller's engine. Telling the
                    // engine costs a recomputation of the object (after
                    // a burst of writes, one per route) for nothing.
                    if let Some(obj) = now
                        && engine
                            .snapshot()
                            .get(&key)
                            .is_some_and(|old| old.same_but_status(obj))
                    {
                        continue;
                    }
                    delta.absorb(match now {
                        Some(obj) => engine.apply(obj.clone()),
                        None => engine.delete(&key),
                    });
                }
                let tables = previous.tables.update(&delta.routing);
                (engine, tables)
            }
            None => {
                let engine = Engine::from_snapshot(snapshot.clone(), opts.compute_options());
                // The engine's shared routing, compiled where it is.
                let tables = gwcore::table::Tables::compile(engine.routing());
                (engine, tables)
            }
        };
        // The engine's objects equal `snapshot`'s now; keep its copies
        // (those of unchanged objects are the previous generation's), so
        // that the freshly read ones are freed and not held twice.
        let snapshot = engine.snapshot().clone();
        let computed = engine.computed();
        let mut endpoints = Endpoints::from_snapshot(&snapshot);
        let mut echo_backends = BTreeMap::new();
        for (key, addr) in extra_endpoints {
            if endpoints.has_service(key) {
                continue;
            }
            if let Some(gwcore::model::Object::Service(svc)) = snapshot.get(key) {
                endpoints.insert_all_ports(svc, key, *addr);
                echo_backends.insert(key.clone(), *addr);
            }
        }
        let ports = ports(&computed.routing);
        let mut tls = BTreeMap::new();
        let mut tls_errors = Vec::new();
        let tls_gateways: std::collections::BTreeSet<&ObjectKey> = ports
            .iter()
            .filter(|(_, m)| {
                matches!(
                    m,
                    PortMode::Https | PortMode::TlsTerminate | PortMode::TlsMixed
                )
            })
            .map(|(gp, _)| &gp.gateway)
            .collect();
        for gw in tls_gateways {
            if let Some(r) = computed.routing.get(gw) {
                let (configs, errors) = crate::certs::server_configs(r, &snapshot);
                tls_errors.extend(errors);
                for (port, c) in configs {
                    tls.insert(GatewayPort::new(gw.clone(), port), c);
                }
            }
        }
        let labels = Labels::new(&computed.routing);
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

/// The labels requests are counted and logged under, made once per
/// configuration so that a request only clones shared strings.
#[derive(Debug, Default)]
pub struct Labels {
    gateways: BTreeMap<ObjectKey, Arc<str>>,
    routes: BTreeMap<ObjectKey, Arc<str>>,
    backends: BTreeMap<ObjectKey, BTreeMap<u16, Arc<str>>>,
}

impl Labels {
    fn new(routing: &BTreeMap<ObjectKey, GatewayRouting>) -> Labels {
        use gwcore::attachments::RouteRules;
        let mut l = Labels::default();
        for (gw, r) in routing {
            l.gateways
                .insert(gw.clone(), format!("{}/{}", gw.namespace, gw.name).into());
            for listener in &r.listeners {
                for route in &listener.routes {
                    l.routes
                        .entry(route.key.clone())
                        .or_insert_with(|| route_label(&route.key).into());
                    let backends: Vec<&gwcore::attachments::ResolvedBackend> = match &route.rules {
                        RouteRules::Http(rules) => rules.iter().flat_map(|r| &r.backends).collect(),
                        RouteRules::Grpc(rules) => rules.iter().flat_map(|r| &r.backends).collect(),
                        RouteRules::L4(rules) => rules.iter().flat_map(|r| &r.backends).collect(),
                    };
                    for b in backends {
                        if let Ok(t) = &b.target {
                            l.backends
                                .entry(t.service.clone())
                                .or_default()
                                .entry(t.port)
                                .or_insert_with(|| backend_label(&t.service, t.port).into());
                        }
                    }
                }
            }
        }
        l
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
            .cloned()
            .unwrap_or_else(|| route_label(key).into())
    }

    /// `namespace/service:port` of a backend.
    pub fn backend(&self, service: &ObjectKey, port: u16) -> Arc<str> {
        self.backends
            .get(service)
            .and_then(|ports| ports.get(&port))
            .cloned()
            .unwrap_or_else(|| backend_label(service, port).into())
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
}
