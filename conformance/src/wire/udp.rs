//! UDP in wire mode: the UDP echo and DNS pods, and their clients.
//!
//! Upstream's `echo-basic` with `UDP_ECHO_SERVER` answers every datagram
//! with JSON naming the pod; the pod here answers a [`UdpEchoed`] (both
//! ends are the runner's). The `coredns` Deployment of `base.yaml` is
//! played by a small DNS server that answers every query (FORMAT.md: "any
//! answer passes"), with an A record of the asker's address as CoreDNS's
//! `whoami` does.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use gwcore_proxy::echo::EchoIdentity;
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio::task::JoinHandle;

/// How long the client waits for a reply before sending again.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// How many times a datagram is sent before the exchange fails (UDP may
/// lose one; upstream polls once per second).
const ATTEMPTS: u32 = 5;

/// What the UDP echo answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UdpEchoed {
    /// The Service it stands for.
    pub(crate) service: String,
    /// The pod's namespace.
    pub(crate) namespace: String,
    /// The pod name.
    pub(crate) pod: String,
}

/// What a UDP pod serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum UdpKind {
    /// Answers each datagram with a [`UdpEchoed`].
    Echo,
    /// Answers each DNS query.
    Dns,
}

/// A UDP pod server; stops when dropped.
pub(crate) struct UdpServer {
    addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for UdpServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl UdpServer {
    /// Binds `bind` and answers every datagram as `kind` says.
    pub(crate) async fn start(
        kind: UdpKind,
        identity: EchoIdentity,
        bind: SocketAddr,
    ) -> std::io::Result<UdpServer> {
        let socket = UdpSocket::bind(bind).await?;
        let addr = socket.local_addr()?;
        let echoed = UdpEchoed {
            service: identity.service,
            namespace: identity.namespace,
            pod: identity.pod,
        };
        let task = tokio::spawn(async move {
            let mut buf = vec![0u8; 65_535];
            loop {
                let Ok((n, peer)) = socket.recv_from(&mut buf).await else {
                    continue;
                };
                let reply = match kind {
                    UdpKind::Echo => serde_json::to_vec(&echoed).ok(),
                    UdpKind::Dns => dns_answer(&buf[..n], peer.ip()),
                };
                if let Some(reply) = reply {
                    let _ = socket.send_to(&reply, peer).await;
                }
            }
        });
        Ok(UdpServer { addr, task })
    }

    /// Its address.
    pub(crate) fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// Sends `payload` to `addr` from a fresh socket until a datagram comes
/// back (at most [`ATTEMPTS`] times, [`RETRY_AFTER`] apart) and returns it;
/// `accept` tells a reply from a stray datagram.
async fn exchange(
    addr: SocketAddr,
    payload: &[u8],
    accept: impl Fn(&[u8]) -> bool,
) -> Result<Vec<u8>, String> {
    let local: SocketAddr = match addr.ip() {
        IpAddr::V4(_) => ([127, 0, 0, 1], 0).into(),
        IpAddr::V6(_) => (IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1]), 0).into(),
    };
    let socket = UdpSocket::bind(local)
        .await
        .map_err(|e| format!("UDP client socket: {e}"))?;
    socket
        .connect(addr)
        .await
        .map_err(|e| format!("UDP connect {addr}: {e}"))?;
    let mut buf = vec![0u8; 65_535];
    for _ in 0..ATTEMPTS {
        socket
            .send(payload)
            .await
            .map_err(|e| format!("UDP send to {addr}: {e}"))?;
        let deadline = tokio::time::Instant::now() + RETRY_AFTER;
        loop {
            match tokio::time::timeout_at(deadline, socket.recv(&mut buf)).await {
                Ok(Ok(n)) if accept(&buf[..n]) => return Ok(buf[..n].to_vec()),
                // A stray datagram, or an ICMP error from a port not yet
                // served: wait on.
                Ok(_) => {}
                Err(_) => break,
            }
        }
    }
    Err(format!(
        "no UDP reply from {addr} after {ATTEMPTS} datagrams {RETRY_AFTER:?} apart"
    ))
}

/// Asks the UDP echo behind `addr` who it is.
pub(crate) async fn echo(addr: SocketAddr) -> Result<UdpEchoed, String> {
    let reply = exchange(addr, b"gwcore-wire", |b| {
        serde_json::from_slice::<UdpEchoed>(b).is_ok()
    })
    .await?;
    serde_json::from_slice(&reply).map_err(|e| format!("UDP echo reply: {e}"))
}

/// A DNS reply's header fields that a judge looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DnsReply {
    /// The response code (0 = NOERROR).
    pub(crate) rcode: u8,
    /// How many answer records it holds.
    pub(crate) answers: u16,
}

/// Sends a DNS query for `name` (`type_`: A, AAAA, …) to `addr` and reads
/// the reply to it.
pub(crate) async fn dns(addr: SocketAddr, name: &str, type_: &str) -> Result<DnsReply, String> {
    let qtype = record_type(type_).ok_or_else(|| format!("unknown DNS record type {type_}"))?;
    let id = fastrand::u16(..);
    let query = dns_query(id, name, qtype)?;
    let reply = exchange(addr, &query, |b| {
        b.len() >= 12 && u16::from_be_bytes([b[0], b[1]]) == id && b[2] & 0x80 != 0
    })
    .await?;
    Ok(DnsReply {
        rcode: reply[3] & 0x0f,
        answers: u16::from_be_bytes([reply[6], reply[7]]),
    })
}

/// The code of a DNS record type.
fn record_type(name: &str) -> Option<u16> {
    Some(match name.to_ascii_uppercase().as_str() {
        "A" => 1,
        "NS" => 2,
        "CNAME" => 5,
        "SOA" => 6,
        "PTR" => 12,
        "MX" => 15,
        "TXT" => 16,
        "AAAA" => 28,
        "SRV" => 33,
        "ANY" => 255,
        _ => return None,
    })
}

/// A recursive query (RFC 1035 §4.1) with one question.
fn dns_query(id: u16, name: &str, qtype: u16) -> Result<Vec<u8>, String> {
    let mut q = Vec::with_capacity(32 + name.len());
    q.extend_from_slice(&id.to_be_bytes());
    // Flags: a standard query, recursion desired; one question.
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.split('.').filter(|l| !l.is_empty()) {
        let len = u8::try_from(label.len())
            .ok()
            .filter(|l| *l <= 63)
            .ok_or_else(|| format!("DNS label {label:?} is longer than 63 bytes"))?;
        q.push(len);
        q.extend_from_slice(label.as_bytes());
    }
    q.push(0);
    q.extend_from_slice(&qtype.to_be_bytes());
    q.extend_from_slice(&1u16.to_be_bytes());
    Ok(q)
}

/// The answer to a DNS query: its question back, and for an A question
/// about an IPv4 asker one A record of the asker's address; `None` for what
/// is not a query with one well-formed question.
fn dns_answer(query: &[u8], asker: IpAddr) -> Option<Vec<u8>> {
    if query.len() < 12 || query[2] & 0x80 != 0 || u16::from_be_bytes([query[4], query[5]]) != 1 {
        return None;
    }
    // The question: labels up to the root, then type and class.
    let mut end = 12;
    loop {
        let len = usize::from(*query.get(end)?);
        if len & 0xc0 != 0 {
            return None;
        }
        end += 1 + len;
        if len == 0 {
            break;
        }
    }
    let question = query.get(12..end + 4)?;
    let qtype = u16::from_be_bytes([question[question.len() - 4], question[question.len() - 3]]);
    let record = match (qtype, asker) {
        (1, IpAddr::V4(ip)) => Some(ip.octets()),
        _ => None,
    };
    let mut r = Vec::with_capacity(query.len() + 16);
    r.extend_from_slice(&query[0..2]);
    // A response, authoritative, recursion desired as asked, available;
    // NOERROR.
    r.push(0x84 | (query[2] & 0x01));
    r.push(0x80);
    r.extend_from_slice(&[0, 1, 0, u8::from(record.is_some()), 0, 0, 0, 0]);
    r.extend_from_slice(question);
    if let Some(ip) = record {
        // The name points at the question's (offset 12); class IN, TTL 0.
        r.extend_from_slice(&[0xc0, 12, 0, 1, 0, 1, 0, 0, 0, 0, 0, 4]);
        r.extend_from_slice(&ip);
    }
    Some(r)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_query_is_answered_with_the_askers_address() {
        let q = dns_query(0xbeef, "foo.bar.com.", 1).unwrap();
        let r = dns_answer(&q, IpAddr::from([10, 1, 2, 3])).unwrap();
        assert_eq!(&r[0..2], &[0xbe, 0xef], "the query's id");
        assert_ne!(r[2] & 0x80, 0, "a response");
        assert_eq!(r[3] & 0x0f, 0, "NOERROR");
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 1, "one answer");
        assert_eq!(&r[12..q.len()], &q[12..], "the question comes back");
        assert_eq!(&r[r.len() - 4..], &[10, 1, 2, 3]);
    }

    #[test]
    fn what_is_not_a_query_gets_no_answer() {
        let q = dns_query(1, "example.com", 28).unwrap();
        let r = dns_answer(&q, IpAddr::from([127, 0, 0, 1])).unwrap();
        assert_eq!(u16::from_be_bytes([r[6], r[7]]), 0, "no AAAA record");
        assert!(dns_answer(&r, IpAddr::from([127, 0, 0, 1])).is_none());
        assert!(dns_answer(b"gwcore-wire", IpAddr::from([127, 0, 0, 1])).is_none());
        assert!(dns_query(1, &"x".repeat(64), 1).is_err());
    }

    #[tokio::test]
    async fn the_pods_answer_their_clients() {
        let id = EchoIdentity {
            namespace: "ns".into(),
            service: "svc".into(),
            pod: "svc-wire-0".into(),
        };
        let bind = SocketAddr::from(([127, 0, 0, 1], 0));
        let e = UdpServer::start(UdpKind::Echo, id.clone(), bind)
            .await
            .unwrap();
        let got = echo(e.addr()).await.unwrap();
        assert_eq!(
            (got.service.as_str(), got.pod.as_str()),
            ("svc", "svc-wire-0")
        );
        let d = UdpServer::start(UdpKind::Dns, id, bind).await.unwrap();
        let got = dns(d.addr(), "foo.bar.com.", "A").await.unwrap();
        assert_eq!(
            got,
            DnsReply {
                rcode: 0,
                answers: 1
            }
        );
    }
}
