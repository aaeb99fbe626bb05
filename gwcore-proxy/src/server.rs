//! Sockets: one per Gateway port, reconciled with each configuration.
//!
//! A port keeps its socket across reloads as long as some Gateway still
//! serves it; a port no Gateway wants stops accepting (its open connections
//! finish on their own); a new port is bound when a Gateway asks for it.
//! A reload that changes no port touches no socket.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::config::{GatewayPort, PortMode};
use crate::conn::serve_http;
use crate::proxy::Proxy;

// Defined further down (`limits`, `proxy`), where connections and requests
// are served; also found here, beside the sockets.
pub use crate::limits::{HEADER_READ_TIMEOUT, ServeOptions};
pub use crate::proxy::{BoundPort, ConnInfo};

/// Where each Gateway port is served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenOptions {
    /// Explicit addresses per port number, for every Gateway with that
    /// port (`--listen 80=127.0.0.1:8080`).
    pub map: BTreeMap<u16, SocketAddr>,
    /// Explicit addresses for one Gateway's port
    /// (`--listen infra/gw:80=127.0.0.1:8080`); they win over `map`.
    pub gateway_map: BTreeMap<GatewayPort, SocketAddr>,
    /// The address other ports are bound on, at their own number.
    /// Default is `0.0.0.0`.
    pub default_ip: IpAddr,
    /// Bind ports without an explicit address on an ephemeral port of
    /// `default_ip` instead of their own number (tests, the conformance
    /// runner). Default is `false`.
    pub ephemeral: bool,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            map: BTreeMap::new(),
            gateway_map: BTreeMap::new(),
            default_ip: IpAddr::from([0, 0, 0, 0]),
            ephemeral: false,
        }
    }
}

impl ListenOptions {
    /// The address a Gateway's port is served on: its own entry in
    /// `gateway_map`, else its number's in `map`, else `default_ip` at the
    /// same number (or an ephemeral one).
    pub fn addr(&self, gp: &GatewayPort) -> SocketAddr {
        self.gateway_map
            .get(gp)
            .or_else(|| self.map.get(&gp.port))
            .copied()
            .unwrap_or(SocketAddr::new(
                self.default_ip,
                if self.ephemeral { 0 } else { gp.port },
            ))
    }

    /// The IP addresses `ports` are served on: the addresses at which
    /// their Gateways can be reached, so the ones their `spec.addresses`
    /// may ask for. `None` when one of them is bound on a wildcard
    /// (`0.0.0.0`, `::`): such a socket takes connections to every address
    /// the host has or is given later (a load balancer's or a NAT's
    /// forwarded to it), which cannot be listed, so every address counts as
    /// usable.
    pub fn served_ips<'a>(
        &self,
        ports: impl IntoIterator<Item = &'a GatewayPort>,
    ) -> Option<BTreeSet<IpAddr>> {
        ports
            .into_iter()
            .map(|gp| self.addr(gp).ip())
            .map(|ip| (!ip.is_unspecified()).then_some(ip))
            .collect()
    }
}

struct Bound {
    info: BoundPort,
    task: JoinHandle<()>,
}

/// The set of listening sockets.
pub struct Server {
    proxy: Arc<Proxy>,
    opts: ListenOptions,
    bound: BTreeMap<GatewayPort, Bound>,
    /// Bind failures of the last reconcile.
    errors: BTreeMap<GatewayPort, String>,
    /// Closed (value set to `true`) to start draining; every connection
    /// holds a receiver, so `closed()` tells when the last one is done.
    drain: watch::Sender<bool>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field(
                "bound",
                &self.bound.values().map(|b| &b.info).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

impl Server {
    /// A server with no socket yet; call [`Server::reconcile`].
    pub fn new(proxy: Arc<Proxy>, opts: ListenOptions) -> Server {
        Server {
            proxy,
            opts,
            bound: BTreeMap::new(),
            errors: BTreeMap::new(),
            drain: watch::channel(false).0,
        }
    }

    /// Binds the ports the current configuration serves that are not bound
    /// yet (or whose mode changed) and closes those it no longer serves.
    /// A port that cannot be bound is logged, kept in [`Server::errors`],
    /// and retried at the next reconcile.
    pub async fn reconcile(&mut self) {
        let cfg = self.proxy.config();
        let stale: Vec<GatewayPort> = self
            .bound
            .iter()
            .filter(|(gp, b)| cfg.ports.get(gp) != Some(&b.info.mode))
            .map(|(gp, _)| gp.clone())
            .collect();
        for gp in stale {
            if let Some(b) = self.bound.remove(&gp) {
                tracing::info!(gateway_port = %gp, addr = %b.info.addr, "closing listener");
                b.task.abort();
            }
        }
        self.errors.clear();
        for (gp, mode) in &cfg.ports {
            if self.bound.contains_key(gp) {
                continue;
            }
            let addr = self.opts.addr(gp);
            let bound = match mode {
                PortMode::Udp => crate::udp::bind(addr, gp.clone(), self.proxy.clone()).await,
                _ => TcpListener::bind(addr).await.map(|listener| {
                    let local = listener.local_addr().unwrap_or(addr);
                    let task = tokio::spawn(accept_loop(
                        listener,
                        gp.clone(),
                        *mode,
                        self.proxy.clone(),
                        self.drain.subscribe(),
                    ));
                    (local, task)
                }),
            };
            match bound {
                Ok((local, task)) => {
                    tracing::info!(gateway_port = %gp, addr = %local, ?mode, "listening");
                    self.bound.insert(
                        gp.clone(),
                        Bound {
                            info: BoundPort {
                                gateway: gp.gateway.clone(),
                                port: gp.port,
                                addr: local,
                                mode: *mode,
                            },
                            task,
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(gateway_port = %gp, %addr, error = %e, "cannot listen");
                    self.errors
                        .insert(gp.clone(), format!("cannot listen on {addr}: {e}"));
                }
            }
        }
        self.proxy.set_listeners(
            self.bound.values().map(|b| b.info.clone()).collect(),
            self.errors
                .iter()
                .map(|(gp, e)| (gp.to_string(), e.clone()))
                .collect(),
        );
    }

    /// The local address serving port `port` of the first Gateway (by
    /// namespace/name) that has it.
    pub fn local_addr(&self, port: u16) -> Option<SocketAddr> {
        self.bound
            .iter()
            .find(|(gp, _)| gp.port == port)
            .map(|(_, b)| b.info.addr)
    }

    /// The local address serving one Gateway's port.
    pub fn local_addr_of(&self, gp: &GatewayPort) -> Option<SocketAddr> {
        self.bound.get(gp).map(|b| b.info.addr)
    }

    /// Ports that could not be bound, with the reason.
    pub fn errors(&self) -> &BTreeMap<GatewayPort, String> {
        &self.errors
    }

    /// Stops accepting, asks every open connection to finish its in-flight
    /// requests and close, and waits for them up to `grace`.
    pub async fn shutdown(mut self, grace: Duration) {
        for (_, b) in std::mem::take(&mut self.bound) {
            b.task.abort();
        }
        let _ = self.drain.send(true);
        if tokio::time::timeout(grace, self.drain.closed())
            .await
            .is_err()
        {
            tracing::warn!(
                ?grace,
                "connections still open after the grace period; closing"
            );
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        for b in self.bound.values() {
            b.task.abort();
        }
    }
}

async fn accept_loop(
    listener: TcpListener,
    gp: GatewayPort,
    mode: PortMode,
    proxy: Arc<Proxy>,
    drain: watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!(gateway_port = %gp, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        // Over the connection limit: closed at once, so that the client
        // learns it now rather than after waiting in the listen queue.
        let Some(slot) = proxy.connection_slot() else {
            tracing::debug!(gateway_port = %gp, %peer, "connection limit reached; closing");
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        let drain = drain.clone();
        let gp = gp.clone();
        tokio::spawn(async move {
            let _slot = slot;
            let mut stream = stream;
            // Behind a TCP load balancer speaking the PROXY protocol, its
            // header comes first (before TLS, before the SNI is read) and
            // names the client, which is the peer from here on.
            let peer = if proxy.options().proxy_protocol.expects(&gp.gateway, gp.port) {
                let timeout = proxy.options().limits.header_read_timeout;
                match crate::proxy_protocol::read_header(&mut stream, timeout).await {
                    Ok(client) => client.unwrap_or(peer),
                    Err(e) => {
                        tracing::info!(target: "gwcore::access", port = gp.port, client = %peer, error = %e, "PROXY protocol header refused; closing");
                        return;
                    }
                }
            } else {
                peer
            };
            match mode {
                PortMode::Http => {
                    let info = ConnInfo {
                        gateway: gp.gateway,
                        port: gp.port,
                        client: proxy.client_info(peer, false),
                        sni: None,
                    };
                    serve_http(TokioIo::new(stream), info, proxy, drain).await;
                }
                PortMode::Https => crate::tls::serve_https(stream, peer, gp, proxy, drain).await,
                PortMode::TlsTerminate | PortMode::TlsPassthrough | PortMode::TlsMixed => {
                    crate::tcp::serve_tls(stream, peer, gp, proxy, drain).await;
                }
                PortMode::Tcp => {
                    // Byte streams are not drained: they end with their peers.
                    drop(drain);
                    crate::tcp::serve_tcp(stream, peer, gp, proxy).await;
                }
                // UDP ports have no TCP listener: `crate::udp` serves them.
                PortMode::Udp => {}
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gwcore::model::{Kind, ObjectKey};

    fn port(gateway: &str, port: u16) -> GatewayPort {
        GatewayPort::new(ObjectKey::new(Kind::Gateway, "infra", gateway), port)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("an IP address")
    }

    #[test]
    fn served_ips_are_the_addresses_the_ports_are_bound_on() {
        let listen = ListenOptions {
            map: [(80, "127.0.0.1:8080".parse().expect("addr"))].into(),
            gateway_map: [(port("b", 443), "[::1]:8443".parse().expect("addr"))].into(),
            default_ip: ip("10.0.0.1"),
            ephemeral: false,
        };
        // By port number, by Gateway, and the default address for the rest.
        let served = listen.served_ips(&[port("a", 80), port("b", 443), port("c", 81)]);
        assert_eq!(
            served,
            Some([ip("127.0.0.1"), ip("::1"), ip("10.0.0.1")].into())
        );
        // Only the ports asked about count.
        assert_eq!(
            listen.served_ips(&[port("a", 80)]),
            Some([ip("127.0.0.1")].into())
        );
    }

    #[test]
    fn a_port_bound_on_a_wildcard_address_makes_every_address_usable() {
        for wildcard in ["0.0.0.0", "::"] {
            let listen = ListenOptions {
                map: [(80, "127.0.0.1:8080".parse().expect("addr"))].into(),
                default_ip: ip(wildcard),
                ..ListenOptions::default()
            };
            assert_eq!(
                listen.served_ips(&[port("a", 80)]),
                Some([ip("127.0.0.1")].into())
            );
            assert_eq!(
                listen.served_ips(&[port("a", 80), port("a", 81)]),
                None,
                "port 81 is bound on {wildcard}"
            );
        }
    }
}
