//! One generation of what the proxy serves, built from a snapshot.
//!
//! A [`Config`] is immutable. A reload builds a new one next to the old and
//! swaps the pointer; requests load the pointer once and keep that
//! generation until they are answered.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use gwcore::Snapshot;
use gwcore::attachments::{GatewayRouting, ListenerProtocol, TlsMode};
use gwcore::engine::{ComputeOptions, compute};
use gwcore::load::Diagnostic;
use gwcore::model::ObjectKey;
use serde::Serialize;

use crate::endpoints::Endpoints;

/// What one Gateway port serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortConfig {
    /// The Gateway that owns the port.
    pub gateway: ObjectKey,
    /// How connections on the port are handled.
    pub mode: PortMode,
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
    /// Raw TCP forwarding.
    Tcp,
}

/// A port two Gateways both ask for; the first (by key) keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PortConflict {
    /// The port.
    pub port: u16,
    /// The Gateway serving it.
    pub served_by: ObjectKey,
    /// The Gateway left without it.
    pub refused: ObjectKey,
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
    /// Ports to serve.
    pub ports: BTreeMap<u16, PortConfig>,
    /// Ports asked for by more than one Gateway.
    pub port_conflicts: Vec<PortConflict>,
    /// Backend addresses.
    pub endpoints: Endpoints,
    /// TLS settings per terminating port.
    pub tls: BTreeMap<u16, Arc<rustls::ServerConfig>>,
    /// Certificates that could not be read.
    pub tls_errors: Vec<String>,
    /// Warnings from loading the manifests.
    pub diagnostics: Vec<Diagnostic>,
}

/// Inputs besides the snapshot.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Our `controllerName`.
    pub controller_name: String,
    /// "Now", RFC 3339.
    pub now: String,
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
        let computed = compute(
            &snapshot,
            &ComputeOptions::new(opts.controller_name.clone(), opts.now.clone()),
        );
        let mut endpoints = Endpoints::from_snapshot(&snapshot);
        for (key, addr) in extra_endpoints {
            if endpoints.has_service(key) {
                continue;
            }
            if let Some(gwcore::model::Object::Service(svc)) = snapshot.get(key) {
                endpoints.insert_all_ports(svc, key, *addr);
            }
        }
        let (ports, port_conflicts) = ports(&computed.routing);
        let mut tls = BTreeMap::new();
        let mut tls_errors = Vec::new();
        let https_gateways: std::collections::BTreeSet<&ObjectKey> = ports
            .values()
            .filter(|pc| matches!(pc.mode, PortMode::Https | PortMode::TlsTerminate))
            .map(|pc| &pc.gateway)
            .collect();
        for gw in https_gateways {
            if let Some(r) = computed.routing.get(gw) {
                let (configs, errors) = crate::tls::server_configs(r, &snapshot);
                tls_errors.extend(errors);
                for (port, c) in configs {
                    // Only the ports this Gateway actually serves.
                    if ports.get(&port).is_some_and(|pc| pc.gateway == *gw) {
                        tls.insert(port, c);
                    }
                }
            }
        }
        let tables = gwcore::table::Tables::compile(&computed.routing);
        Config {
            tables,
            tls,
            tls_errors,
            generation,
            snapshot,
            computed,
            ports,
            port_conflicts,
            endpoints,
            diagnostics,
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
            "ports": self.ports,
            "portConflicts": self.port_conflicts,
            "diagnostics": self.diagnostics,
            "certificateErrors": self.tls_errors,
            "routingProblems": self
                .tables
                .iter()
                .flat_map(|(_, t)| t.problems().iter().map(|p| format!("{} rule {}: {}", p.route, p.rule, p.message)))
                .collect::<Vec<_>>(),
        })
    }
}

/// Which Gateway serves each port, and in which mode. Listeners of one
/// Gateway that share a port share its socket (the table picks the listener
/// by hostname); a port wanted by several Gateways goes to the first by key.
fn ports(
    routing: &BTreeMap<ObjectKey, GatewayRouting>,
) -> (BTreeMap<u16, PortConfig>, Vec<PortConflict>) {
    let mut out: BTreeMap<u16, PortConfig> = BTreeMap::new();
    let mut conflicts = Vec::new();
    for (gw, r) in routing {
        for l in &r.listeners {
            let mode = match (l.protocol, l.tls_mode) {
                (ListenerProtocol::Http, _) => PortMode::Http,
                (ListenerProtocol::Https, _) => PortMode::Https,
                (ListenerProtocol::Tls, Some(TlsMode::Passthrough)) => PortMode::TlsPassthrough,
                (ListenerProtocol::Tls, _) => PortMode::TlsTerminate,
                (ListenerProtocol::Tcp, _) => PortMode::Tcp,
                (ListenerProtocol::Udp, _) => continue,
            };
            match out.get(&l.port) {
                Some(existing) if existing.gateway != *gw => {
                    let c = PortConflict {
                        port: l.port,
                        served_by: existing.gateway.clone(),
                        refused: gw.clone(),
                    };
                    if !conflicts.contains(&c) {
                        conflicts.push(c);
                    }
                }
                Some(_) => {}
                None => {
                    out.insert(
                        l.port,
                        PortConfig {
                            gateway: gw.clone(),
                            mode,
                        },
                    );
                }
            }
        }
    }
    (out, conflicts)
}
