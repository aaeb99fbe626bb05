//! UDP ports: datagrams forwarded to the port's UDPRoute, one session per
//! client address.
//!
//! ```text
//!  client A ─datagram─▶ port socket ──sessions[A]──▶ upstream socket A (connected) ──▶ backend
//!  client A ◀─────────── port socket ◀──reply task A── upstream socket A ◀──────────────┘
//! ```
//!
//! The first datagram of a client opens its session: the route is chosen
//! as for a TCP connection ([`l4::udp`]: the oldest UDPRoute on the port's
//! UDP listener), a backend by weight, an endpoint of it, and a socket of
//! our own connected to that endpoint. The backend's replies arrive on that
//! socket, so they go back to that client, from the port's socket (the
//! address the client sent to). Later datagrams of the client follow its
//! session; a session without traffic either way for [`IDLE_TIMEOUT`]
//! ends. Sessions keep the backend they chose: a reload reaches new
//! sessions only, as a reload reaches new TCP connections only.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

use crate::config::GatewayPort;
use crate::l4;
use crate::metrics::SeriesKey;
use crate::proxy::Proxy;

/// How long a session lives without a datagram either way.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// The most sessions one port keeps; datagrams of further clients are
/// dropped until sessions end.
pub(crate) const MAX_SESSIONS: usize = 4096;

/// The largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

/// Binds a UDP port and serves it until the returned task is aborted.
pub(crate) async fn bind(
    addr: SocketAddr,
    gp: GatewayPort,
    proxy: Arc<Proxy>,
) -> std::io::Result<(SocketAddr, JoinHandle<()>)> {
    let socket = UdpSocket::bind(addr).await?;
    let local = socket.local_addr().unwrap_or(addr);
    let task = tokio::spawn(serve(Arc::new(socket), gp, proxy));
    Ok((local, task))
}

/// When a session last saw a datagram, and whether it ended.
struct Activity {
    /// Milliseconds since the port's clock started.
    last_ms: AtomicU64,
    ended: AtomicBool,
}

/// A client's session: the socket connected to its backend and the task
/// relaying the backend's replies (stopped when the session is dropped).
struct Session {
    upstream: Arc<UdpSocket>,
    activity: Arc<Activity>,
    relay: JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

/// Milliseconds from `start` to now.
fn ms_since(start: tokio::time::Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// The receive loop of one port: it alone owns the session table, so
/// forwarding a datagram of a known client is a lookup and a send.
async fn serve(socket: Arc<UdpSocket>, gp: GatewayPort, proxy: Arc<Proxy>) {
    let start = tokio::time::Instant::now();
    let mut sessions: HashMap<SocketAddr, Session> = HashMap::new();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        let (n, client) = match socket.recv_from(&mut buf).await {
            Ok(r) => r,
            Err(e) => {
                // A failed receive concerns one datagram (an ICMP error
                // reported late, a truncation); the socket goes on.
                tracing::debug!(gateway_port = %gp, error = %e, "UDP receive failed");
                continue;
            }
        };
        let live = sessions
            .get(&client)
            .is_some_and(|s| !s.activity.ended.load(Ordering::Acquire));
        if !live {
            sessions.remove(&client);
            if sessions.len() >= MAX_SESSIONS {
                sessions.retain(|_, s| !s.activity.ended.load(Ordering::Acquire));
            }
            if sessions.len() >= MAX_SESSIONS {
                tracing::debug!(gateway_port = %gp, %client, "UDP session limit reached; datagram dropped");
                continue;
            }
            let Some(s) = open(&socket, client, &gp, &proxy, start).await else {
                continue;
            };
            sessions.insert(client, s);
        }
        let Some(session) = sessions.get(&client) else {
            continue;
        };
        session
            .activity
            .last_ms
            .store(ms_since(start), Ordering::Relaxed);
        if let Err(e) = session.upstream.send(&buf[..n]).await {
            tracing::debug!(gateway_port = %gp, %client, error = %e, "UDP send to the backend failed");
        }
    }
}

/// Opens a session for `client` with the routing served now: `None` (the
/// datagram is dropped and counted as refused) when the port has no route,
/// the route no valid backend, or the backend no ready endpoint.
async fn open(
    socket: &Arc<UdpSocket>,
    client: SocketAddr,
    gp: &GatewayPort,
    proxy: &Proxy,
    start: tokio::time::Instant,
) -> Option<Session> {
    let cfg = proxy.config();
    let port = gp.port;
    let mut series = SeriesKey {
        gateway: cfg.labels.gateway(&gp.gateway),
        ..SeriesKey::default()
    };
    let refuse = |series: &SeriesKey| proxy.metrics().record_stream(series, false);
    let Some(choice) = cfg
        .computed
        .routing
        .get(&gp.gateway)
        .and_then(|r| l4::udp(r, port))
    else {
        tracing::debug!(target: "gwcore::access", port, %client, "no UDP route; datagram dropped");
        refuse(&series);
        return None;
    };
    series.route = cfg.labels.route(&choice.route.key);
    let Some(target) = l4::pick(choice.rule, fastrand::u64(..)) else {
        tracing::debug!(target: "gwcore::access", port, %client, route = %choice.route.key, "no valid backend; datagram dropped");
        refuse(&series);
        return None;
    };
    series.backend = cfg.labels.backend(&target.service, target.port);
    let addrs = cfg.endpoints.get(&target.service, target.port);
    if addrs.is_empty() {
        tracing::debug!(target: "gwcore::access", port, %client, service = %target.service, "no ready endpoints; datagram dropped");
        refuse(&series);
        return None;
    }
    let backend = addrs[fastrand::usize(..addrs.len())].addr;
    let local: SocketAddr = match backend.ip() {
        IpAddr::V4(_) => (IpAddr::from([0u8; 4]), 0).into(),
        IpAddr::V6(_) => (IpAddr::from([0u16; 8]), 0).into(),
    };
    let upstream = match UdpSocket::bind(local).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(port, %client, error = %e, "cannot open a UDP socket for a session");
            refuse(&series);
            return None;
        }
    };
    if let Err(e) = upstream.connect(backend).await {
        tracing::info!(target: "gwcore::access", port, %client, %backend, error = %e, "backend unreachable; datagram dropped");
        refuse(&series);
        return None;
    }
    proxy.metrics().record_stream(&series, true);
    tracing::info!(
        target: "gwcore::access",
        port,
        client = %client,
        listener = %choice.listener.name,
        route = %choice.route.key,
        backend = %backend,
        "UDP session opened"
    );
    let upstream = Arc::new(upstream);
    let activity = Arc::new(Activity {
        last_ms: AtomicU64::new(ms_since(start)),
        ended: AtomicBool::new(false),
    });
    let relay = tokio::spawn(relay(
        upstream.clone(),
        socket.clone(),
        client,
        activity.clone(),
        start,
    ));
    Some(Session {
        upstream,
        activity,
        relay,
    })
}

/// Sends the backend's replies to `client` from the port's socket until the
/// session has been idle for [`IDLE_TIMEOUT`].
async fn relay(
    upstream: Arc<UdpSocket>,
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    activity: Arc<Activity>,
    start: tokio::time::Instant,
) {
    let mut buf = vec![0u8; MAX_DATAGRAM];
    let idle_ms = u64::try_from(IDLE_TIMEOUT.as_millis()).unwrap_or(u64::MAX);
    loop {
        let last = activity.last_ms.load(Ordering::Relaxed);
        let deadline = start + Duration::from_millis(last.saturating_add(idle_ms));
        match tokio::time::timeout_at(deadline, upstream.recv(&mut buf)).await {
            Ok(Ok(n)) => {
                activity.last_ms.store(ms_since(start), Ordering::Relaxed);
                if let Err(e) = socket.send_to(&buf[..n], client).await {
                    tracing::debug!(%client, error = %e, "UDP reply to the client failed");
                }
            }
            // The backend's port refused a datagram (ICMP port
            // unreachable): the session stays, the backend may come back.
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {}
            Ok(Err(e)) => {
                tracing::debug!(%client, error = %e, "UDP session ended: receive failed");
                break;
            }
            // Traffic from the client moved the deadline on meanwhile:
            // wait again until the new one.
            Err(_) if activity.last_ms.load(Ordering::Relaxed) != last => {}
            Err(_) => break,
        }
    }
    activity.ended.store(true, Ordering::Release);
}
