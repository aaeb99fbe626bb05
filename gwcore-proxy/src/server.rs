//! Sockets: one per Gateway port, reconciled with each configuration.
//!
//! A port keeps its socket across reloads as long as some Gateway still
//! serves it; a port no Gateway wants stops accepting (its open connections
//! finish on their own); a new port is bound when a Gateway asks for it.
//! A reload that changes no port touches no socket.
//!
//! Thread-per-core ([`set_workers`]): with `n` workers, each TCP port is
//! bound `n` times with `SO_REUSEPORT`, one socket per worker, and every
//! worker is a single-threaded runtime on a thread of its own. The kernel
//! spreads new connections over the sockets; a connection then stays on
//! its worker's thread from accept to close (no work stealing, no wake-up
//! of another thread per request), and so do the backend connections it
//! takes from the keep-alive pool, which keeps one list per worker.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::{oneshot, watch};
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

/// Worker threads of servers created from now on; 0 and 1 serve on the
/// runtime calling [`Server::reconcile`].
static WORKERS: AtomicUsize = AtomicUsize::new(0);

/// Serves the TCP ports of every [`Server`] created after this call on `n`
/// threads of their own, one single-threaded runtime each, with one
/// `SO_REUSEPORT` socket per worker and port (thread-per-core; see the
/// module documentation). `0` or `1` (the default) serves them on the
/// runtime that calls [`Server::reconcile`], as before. UDP ports, the
/// configuration and the admin endpoint stay on that runtime.
pub fn set_workers(n: usize) {
    WORKERS.store(n, Ordering::Relaxed);
}

/// Threads each driving a single-threaded runtime until the set is dropped.
struct Workers {
    handles: Vec<tokio::runtime::Handle>,
    /// Dropping one ends its worker's runtime, with the tasks left on it.
    _stops: Vec<oneshot::Sender<()>>,
}

impl Workers {
    fn start(n: usize) -> std::io::Result<Workers> {
        let mut handles = Vec::with_capacity(n);
        let mut stops = Vec::with_capacity(n);
        for i in 1..=n {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            handles.push(rt.handle().clone());
            let (stop, stopped) = oneshot::channel::<()>();
            stops.push(stop);
            std::thread::Builder::new()
                .name(format!("gwcore-worker-{i}"))
                .spawn(move || {
                    crate::worker::set_index(i);
                    rt.block_on(async {
                        let _ = stopped.await;
                    });
                })?;
        }
        Ok(Workers {
            handles,
            _stops: stops,
        })
    }
}

/// A listening socket on `addr` as `TcpListener::bind` makes it
/// (`SO_REUSEADDR`, a backlog of 1 024), and with `SO_REUSEPORT` when
/// `shared`; registered with the caller's runtime.
fn bind_tcp(addr: SocketAddr, shared: bool) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if shared {
        socket.set_reuseport(true)?;
    }
    socket.bind(addr)?;
    socket.listen(1024)
}

/// `n` listening sockets on `addr` sharing it with `SO_REUSEPORT` (the
/// first one picks the port when `addr` has none), taken off the caller's
/// runtime: each is handed to the worker that serves it.
///
/// `SO_REUSEPORT` would also let another process of the same user (a
/// second gwcore started by mistake) bind the address and silently take a
/// share of its connections, and let this one join another's. So unless
/// `ours_before` (the port's sockets of this process may still be closing),
/// a socket without it is bound first: while any other socket listens on
/// the address its bind fails, and the port is refused with that reason.
fn bind_shared(
    addr: SocketAddr,
    n: usize,
    ours_before: bool,
) -> std::io::Result<Vec<std::net::TcpListener>> {
    if addr.port() != 0 && !ours_before {
        ensure_unused(addr)?;
    }
    let mut out = Vec::with_capacity(n);
    let mut at = addr;
    for _ in 0..n {
        let listener = bind_tcp(at, true)?;
        at = listener.local_addr()?;
        out.push(listener.into_std()?);
    }
    Ok(out)
}

/// Fails when another socket listens on `addr` (this process has none
/// there): binding one without `SO_REUSEPORT`, dropped at once, conflicts
/// with a listening socket (`SO_REUSEADDR` only lets it past connections
/// still closing).
fn ensure_unused(addr: SocketAddr) -> std::io::Result<()> {
    let probe = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    probe.set_reuseaddr(true)?;
    probe.bind(addr).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AddrInUse {
            std::io::Error::new(
                e.kind(),
                format!("{e}: another process listens on {addr} (another gwcore?)"),
            )
        } else {
            e
        }
    })
}

struct Bound {
    info: BoundPort,
    /// The accept loops: one, or one per worker.
    tasks: Vec<JoinHandle<()>>,
}

impl Bound {
    fn abort(&self) {
        for t in &self.tasks {
            t.abort();
        }
    }
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
    /// Thread-per-core serving ([`set_workers`]); `None`: on the caller's
    /// runtime.
    workers: Option<Workers>,
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
    /// A server with no socket yet; call [`Server::reconcile`]. With
    /// [`set_workers`] above 1 it starts its worker threads (or, when the
    /// system refuses a thread, logs why and serves on the caller's
    /// runtime).
    pub fn new(proxy: Arc<Proxy>, opts: ListenOptions) -> Server {
        let n = WORKERS.load(Ordering::Relaxed);
        let workers = if n > 1 {
            Workers::start(n)
                .inspect_err(|e| {
                    tracing::error!(workers = n, error = %e, "cannot start the worker threads; serving on one");
                })
                .ok()
        } else {
            None
        };
        Server {
            proxy,
            opts,
            bound: BTreeMap::new(),
            errors: BTreeMap::new(),
            drain: watch::channel(false).0,
            workers,
        }
    }

    /// Binds a TCP port and starts its accept loops: on the caller's
    /// runtime, or one per worker on sockets sharing the address.
    ///
    /// `ours_before`: this process served the port until now (its mode
    /// changed) and its sockets may still be closing.
    fn listen_tcp(
        &self,
        addr: SocketAddr,
        gp: &GatewayPort,
        mode: PortMode,
        ours_before: bool,
    ) -> std::io::Result<(SocketAddr, Vec<JoinHandle<()>>)> {
        let Some(workers) = &self.workers else {
            let listener = bind_tcp(addr, false)?;
            let local = listener.local_addr().unwrap_or(addr);
            let task = tokio::spawn(accept_loop(
                listener,
                gp.clone(),
                mode,
                self.proxy.clone(),
                self.drain.subscribe(),
            ));
            return Ok((local, vec![task]));
        };
        let listeners = bind_shared(addr, workers.handles.len(), ours_before)?;
        let local = listeners[0].local_addr()?;
        let tasks = listeners
            .into_iter()
            .zip(&workers.handles)
            .map(|(listener, handle)| {
                let (gp, proxy, drain) = (gp.clone(), self.proxy.clone(), self.drain.subscribe());
                handle.spawn(async move {
                    // Registered with the worker's own reactor.
                    match TcpListener::from_std(listener) {
                        Ok(listener) => accept_loop(listener, gp, mode, proxy, drain).await,
                        Err(e) => {
                            tracing::error!(gateway_port = %gp, error = %e, "worker cannot listen")
                        }
                    }
                })
            })
            .collect();
        Ok((local, tasks))
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
        for gp in &stale {
            if let Some(b) = self.bound.remove(gp) {
                tracing::info!(gateway_port = %gp, addr = %b.info.addr, "closing listener");
                b.abort();
            }
        }
        self.errors.clear();
        for (gp, mode) in &cfg.ports {
            if self.bound.contains_key(gp) {
                continue;
            }
            let addr = self.opts.addr(gp);
            let bound = match mode {
                PortMode::Udp => crate::udp::bind(addr, gp.clone(), self.proxy.clone())
                    .await
                    .map(|(local, task)| (local, vec![task])),
                _ => self.listen_tcp(addr, gp, *mode, stale.contains(gp)),
            };
            match bound {
                Ok((local, tasks)) => {
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
                            tasks,
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
            b.abort();
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
            b.abort();
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
