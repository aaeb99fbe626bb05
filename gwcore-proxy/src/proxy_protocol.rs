//! The PROXY protocol (versions 1 and 2, as HAProxy specifies it): how a
//! TCP load balancer in front of the gateway tells it who the client is.
//!
//! A load balancer that forwards TCP connections (AWS NLB, GCP's TCP proxy,
//! HAProxy in `mode tcp`, ...) hides the client: the gateway's peer is the
//! balancer. With the PROXY protocol, the balancer writes one header at the
//! start of every connection saying whom it came from. On the Gateway
//! ports that expect it ([`ProxyProtocolPorts`], `gwcore serve
//! --proxy-protocol 80,443`), the gateway reads that header before
//! anything else (before a TLS handshake, before the ClientHello is read
//! for its SNI), and the address in it is the client's from then on:
//! `X-Forwarded-For`, the access log, [`crate::plugin::PolicyRequest`]'s and
//! [`crate::plugin::FilterRequest`]'s `client` (rate-limit keys), and the
//! [`crate::limits::TrustedProxies`] decision all see the carried address.
//!
//! ```text
//!  client ──TCP──▶ load balancer ──"PROXY TCP4 203.0.113.7 ..."+bytes──▶ gateway port
//!                                   read_header: client = 203.0.113.7  │
//!                                   then TLS / SNI / HTTP / TCP as without it
//! ```
//!
//! What a header may say, and what the gateway does:
//!
//! | Header | Client address |
//! |---|---|
//! | v1 `TCP4`/`TCP6`, v2 `PROXY` over IPv4/IPv6 | the header's source address and port |
//! | v2 `LOCAL` (the balancer's own health checks) | the connection's peer |
//! | v1 `UNKNOWN`, v2 `UNSPEC` or `UNIX` family | the connection's peer |
//! | v2 TLVs | skipped, never interpreted |
//! | no header, a malformed one, one over [`MAX_HEADER_BYTES`], or none within the timeout | the connection is closed, nothing is answered or forwarded |
//!
//! The header is consumed exactly: the bytes after it are left on the
//! socket for what comes next (the socket is peeked, and only the header's
//! bytes are read), so protocols where the server speaks first work on TCP
//! listeners too.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;
use std::time::Duration;

use gwcore::model::{Kind, ObjectKey};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// The largest header read: a v1 header is at most 107 bytes, a v2 header
/// 16 bytes plus its addresses and TLVs. A v2 header announcing more is
/// refused before its body is read. 4 KiB leaves room for the TLVs cloud
/// load balancers add (endpoint IDs, TLS details).
pub const MAX_HEADER_BYTES: usize = 4096;

/// The longest v1 (text) header, `\r\n` included.
const MAX_V1_BYTES: usize = 107;

/// The v2 signature, the first 12 bytes of every v2 header.
const V2_SIGNATURE: &[u8; 12] = b"\r\n\r\n\0\r\nQUIT\n";

/// The fixed part of a v2 header: signature, version and command, family
/// and protocol, and the length of what follows.
const V2_FIXED: usize = 16;

/// How long the header may take when the header read timeout is disabled.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// The Gateway ports whose connections start with a PROXY protocol header:
/// a port number for every Gateway with that port, or one Gateway's port.
/// Default is none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProxyProtocolPorts {
    ports: BTreeSet<u16>,
    gateway_ports: BTreeSet<(ObjectKey, u16)>,
}

impl ProxyProtocolPorts {
    /// No port expects a header.
    pub fn new() -> ProxyProtocolPorts {
        ProxyProtocolPorts::default()
    }

    /// Port `port` of every Gateway expects a header.
    pub fn with_port(mut self, port: u16) -> ProxyProtocolPorts {
        self.ports.insert(port);
        self
    }

    /// Port `port` of `gateway` expects a header.
    pub fn with_gateway_port(mut self, gateway: ObjectKey, port: u16) -> ProxyProtocolPorts {
        self.gateway_ports.insert((gateway, port));
        self
    }

    /// Whether connections to `gateway`'s port `port` start with a header.
    pub fn expects(&self, gateway: &ObjectKey, port: u16) -> bool {
        self.ports.contains(&port)
            || (!self.gateway_ports.is_empty()
                && self.gateway_ports.contains(&(gateway.clone(), port)))
    }

    /// Whether no port expects a header.
    pub fn is_empty(&self) -> bool {
        self.ports.is_empty() && self.gateway_ports.is_empty()
    }
}

/// Why a list of ports could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PortsError {
    /// An item is neither `PORT` nor `NAMESPACE/NAME:PORT`.
    #[error("expected PORT or NAMESPACE/NAME:PORT, got {0:?}")]
    Item(String),
    /// The port is not a number from 1 to 65535.
    #[error("bad Gateway port in {0:?}")]
    Port(String),
}

impl FromStr for ProxyProtocolPorts {
    type Err = PortsError;

    /// A comma-separated list of `PORT` (every Gateway's) and
    /// `NAMESPACE/NAME:PORT` (one Gateway's): `80,443,infra/edge:8443`.
    /// Empty is none.
    fn from_str(s: &str) -> Result<ProxyProtocolPorts, PortsError> {
        let mut set = ProxyProtocolPorts::new();
        for item in s.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (gateway, port) = match item.rsplit_once(':') {
                Some((gw, port)) => match gw.split_once('/') {
                    Some((ns, name)) if !ns.is_empty() && !name.is_empty() => {
                        (Some(ObjectKey::new(Kind::Gateway, ns, name)), port)
                    }
                    _ => return Err(PortsError::Item(item.to_owned())),
                },
                None => (None, item),
            };
            let port = port
                .parse::<u16>()
                .ok()
                .filter(|p| *p != 0)
                .ok_or_else(|| PortsError::Port(item.to_owned()))?;
            set = match gateway {
                Some(gw) => set.with_gateway_port(gw, port),
                None => set.with_port(port),
            };
        }
        Ok(set)
    }
}

/// A PROXY protocol header read from the start of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Header {
    /// Its length in bytes.
    pub len: usize,
    /// The protocol version: 1 (text) or 2 (binary).
    pub version: u8,
    /// The client's address, or `None` when the connection's peer stands
    /// for the client (v2 `LOCAL`, v1 `UNKNOWN`, v2 `UNSPEC` and `UNIX`
    /// families). An IPv4-mapped IPv6 address is given as the IPv4 address
    /// it maps, as a peer on IPv4 would be.
    pub client: Option<SocketAddr>,
}

/// Why a connection's PROXY protocol header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HeaderError {
    /// The bytes are not a PROXY protocol header (nor the start of one).
    #[error("not a PROXY protocol header: {0}")]
    Malformed(String),
    /// The header is longer than allowed ([`MAX_HEADER_BYTES`], or 107
    /// bytes for version 1).
    #[error("PROXY protocol header longer than {0} bytes")]
    TooLong(usize),
    /// The connection closed before the header was complete.
    #[error("connection closed before the PROXY protocol header was complete")]
    Closed,
    /// The header did not come within the timeout.
    #[error("no complete PROXY protocol header within {0:?}")]
    Timeout(Duration),
    /// Reading from the socket failed.
    #[error("reading the PROXY protocol header: {0}")]
    Io(String),
}

/// Parses the header at the start of `buf`: `Ok(None)` while `buf` is the
/// start of a header that is not complete yet. Bytes after the header are
/// ignored. The answer for a prefix of some bytes is `Ok(None)` or the
/// answer for all of them: a header is judged only once it is complete
/// (v1: at its line feed; v2: at the length it announces) or can no longer
/// become valid.
pub fn parse(buf: &[u8]) -> Result<Option<Header>, HeaderError> {
    let sig = buf.len().min(V2_SIGNATURE.len());
    if buf[..sig] == V2_SIGNATURE[..sig] {
        if buf.len() < V2_FIXED {
            return Ok(None);
        }
        return parse_v2(buf);
    }
    parse_v1(buf)
}

fn parse_v2(buf: &[u8]) -> Result<Option<Header>, HeaderError> {
    let len = V2_FIXED + usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if len > MAX_HEADER_BYTES {
        return Err(HeaderError::TooLong(MAX_HEADER_BYTES));
    }
    if buf.len() < len {
        // Judged on the fixed part now rather than after the rest came: a
        // bad version, command or family fails at once.
        return match ppp::v2::Header::try_from(&buf[..V2_FIXED]) {
            Err(ppp::v2::ParseError::Partial(..)) => Ok(None),
            Err(e) => Err(HeaderError::Malformed(e.to_string())),
            // Complete with only the fixed part, so `len == V2_FIXED`.
            Ok(_) => Ok(None),
        };
    }
    let header = ppp::v2::Header::try_from(&buf[..len])
        .map_err(|e| HeaderError::Malformed(e.to_string()))?;
    // The TLVs after the addresses are not read: nothing here needs them,
    // and a malformed one harms nothing.
    let client = match (header.command, header.addresses) {
        (ppp::v2::Command::Local, _) => None,
        (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv4(a)) => {
            Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
        }
        (ppp::v2::Command::Proxy, ppp::v2::Addresses::IPv6(a)) => Some(SocketAddr::new(
            IpAddr::V6(a.source_address).to_canonical(),
            a.source_port,
        )),
        // The spec lets a receiver use the connection's own addresses for
        // families it does not support.
        (ppp::v2::Command::Proxy, _) => None,
    };
    Ok(Some(Header {
        len,
        version: 2,
        client,
    }))
}

fn parse_v1(buf: &[u8]) -> Result<Option<Header>, HeaderError> {
    const PREFIX: &[u8] = b"PROXY ";
    let start = buf.len().min(PREFIX.len());
    if buf[..start] != PREFIX[..start] {
        return Err(HeaderError::Malformed(
            "neither the v2 signature nor \"PROXY \"".into(),
        ));
    }
    let window = &buf[..buf.len().min(MAX_V1_BYTES)];
    let Some(lf) = window.iter().position(|b| *b == b'\n') else {
        return if buf.len() >= MAX_V1_BYTES {
            Err(HeaderError::TooLong(MAX_V1_BYTES))
        } else {
            Ok(None)
        };
    };
    let line = &buf[..=lf];
    let header =
        ppp::v1::Header::try_from(line).map_err(|e| HeaderError::Malformed(e.to_string()))?;
    // ppp reads up to the first `\r` and one byte more: the line is the
    // header only when that `\r` is the one before the line feed.
    if header.header.len() != line.len() {
        return Err(HeaderError::Malformed(
            "a carriage return inside the v1 header".into(),
        ));
    }
    let client = match header.addresses {
        ppp::v1::Addresses::Tcp4(a) => {
            Some(SocketAddr::new(IpAddr::V4(a.source_address), a.source_port))
        }
        ppp::v1::Addresses::Tcp6(a) => Some(SocketAddr::new(
            IpAddr::V6(a.source_address).to_canonical(),
            a.source_port,
        )),
        ppp::v1::Addresses::Unknown => None,
    };
    Ok(Some(Header {
        len: line.len(),
        version: 1,
        client,
    }))
}

/// Reads a header from the start of a connection, one peek at a time,
/// consuming exactly the header's bytes.
#[derive(Debug, Default)]
struct Reader {
    /// The header's bytes consumed so far (all of them belong to it).
    taken: Vec<u8>,
}

/// What to do after a peek.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Consume this many of the bytes peeked (all belong to the header)
    /// and peek again.
    More(usize),
    /// Consume this many of the bytes peeked: the header ends there.
    Done(usize, Header),
}

impl Reader {
    /// How many bytes to peek at most: no more than the header may hold.
    fn room(&self) -> usize {
        MAX_HEADER_BYTES - self.taken.len()
    }

    /// Given the bytes on the socket not consumed yet (`peeked`, at least
    /// one), says how many of them to consume.
    fn step(&mut self, peeked: &[u8]) -> Result<Step, HeaderError> {
        let before = self.taken.len();
        self.taken.extend_from_slice(peeked);
        match parse(&self.taken)? {
            Some(h) => {
                self.taken.truncate(h.len);
                Ok(Step::Done(h.len - before, h))
            }
            None if self.taken.len() >= MAX_HEADER_BYTES => {
                Err(HeaderError::TooLong(MAX_HEADER_BYTES))
            }
            // Incomplete: every byte there belongs to the header.
            None => Ok(Step::More(peeked.len())),
        }
    }
}

/// Reads the PROXY protocol header at the start of `stream`, leaving the
/// bytes after it unread: `Ok(Some(client))` with the address it carries,
/// `Ok(None)` when the connection's peer stands for the client (a `LOCAL`
/// or `UNKNOWN` header), an error (the connection should be closed) when
/// there is no valid header within `timeout` (zero: 10 s).
pub async fn read_header(
    stream: &mut TcpStream,
    timeout: Duration,
) -> Result<Option<SocketAddr>, HeaderError> {
    let timeout = if timeout.is_zero() {
        DEFAULT_TIMEOUT
    } else {
        timeout
    };
    let read = async {
        let mut reader = Reader::default();
        // Most headers fit in the first peek; a v2 header with large TLVs
        // gets a larger buffer when it announces its length.
        let mut buf = vec![0u8; 256];
        loop {
            let want = reader.room().min(buf.len());
            let n = stream
                .peek(&mut buf[..want])
                .await
                .map_err(|e| HeaderError::Io(e.to_string()))?;
            if n == 0 {
                return Err(HeaderError::Closed);
            }
            let (consume, done) = match reader.step(&buf[..n])? {
                Step::More(c) => (c, None),
                Step::Done(c, h) => (c, Some(h)),
            };
            stream
                .read_exact(&mut buf[..consume])
                .await
                .map_err(|e| HeaderError::Io(e.to_string()))?;
            if let Some(h) = done {
                return Ok(h.client);
            }
            if buf.len() < MAX_HEADER_BYTES && reader.taken.len() >= V2_FIXED {
                buf.resize(MAX_HEADER_BYTES, 0);
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(HeaderError::Timeout(timeout)))
}

/// The fuzz target's entry (`fuzz/fuzz_targets/proxy_protocol.rs`).
#[doc(hidden)]
pub mod __fuzz {
    use super::*;

    /// Feeds `data` to the header reader as a socket would, in peeks whose
    /// sizes the first byte chooses, and checks that the reader never
    /// consumes past the header and agrees with [`parse`] on all the bytes;
    /// then that a v1 and a v2 header built from bytes of `data` give back
    /// the address they carry, with `data` after them left unread.
    pub fn read_header(data: &[u8]) {
        let Some((&seed, input)) = data.split_first() else {
            return;
        };
        let whole = parse(input);
        let mut reader = Reader::default();
        let mut at = 0;
        let mut chunk = 1 + usize::from(seed % 64);
        let outcome = loop {
            let avail = &input[at..];
            if avail.is_empty() {
                break Ok(None);
            }
            let peeked = &avail[..avail.len().min(chunk).min(reader.room())];
            chunk = chunk * 3 % 97 + 1;
            match reader.step(peeked) {
                Ok(Step::More(n)) => {
                    assert_eq!(n, peeked.len(), "an incomplete header takes all peeked");
                    at += n;
                }
                Ok(Step::Done(n, h)) => {
                    assert!(n <= peeked.len(), "consumed more than peeked");
                    at += n;
                    assert_eq!(at, h.len, "consumed other than the header");
                    break Ok(Some(h));
                }
                Err(e) => break Err(e),
            }
        };
        match (&whole, &outcome) {
            (Ok(Some(a)), Ok(Some(b))) => assert_eq!(a, b),
            (Err(_), Err(_)) | (Ok(None), Ok(None)) => {}
            // The reader stops at its size bound where parse would wait.
            (Ok(None), Err(HeaderError::TooLong(_))) => {}
            _ => panic!("reader {outcome:?} but parse {whole:?}"),
        }

        // Round trips through headers built with ppp.
        let mut b = [0u8; 36];
        for (i, x) in input.iter().take(36).enumerate() {
            b[i] = *x;
        }
        let port = u16::from_be_bytes([b[0], b[1]]);
        let (src, dst): (SocketAddr, SocketAddr) = if seed & 1 == 0 {
            let s = std::net::Ipv4Addr::new(b[2], b[3], b[4], b[5]);
            let d = std::net::Ipv4Addr::new(b[6], b[7], b[8], b[9]);
            ((s, port).into(), (d, 443).into())
        } else {
            let mut s = [0u8; 16];
            s.copy_from_slice(&b[2..18]);
            let mut d = [0u8; 16];
            d.copy_from_slice(&b[18..34]);
            (
                (std::net::Ipv6Addr::from(s), port).into(),
                (std::net::Ipv6Addr::from(d), 443).into(),
            )
        };
        let want = SocketAddr::new(src.ip().to_canonical(), src.port());
        let v1 = ppp::v1::Addresses::from((src, dst)).to_string();
        let v2 = ppp::v2::Builder::with_addresses(
            ppp::v2::Version::Two | ppp::v2::Command::Proxy,
            ppp::v2::Protocol::Stream,
            (src, dst),
        )
        .write_tlv(ppp::v2::Type::NoOp, &input[..input.len().min(64)])
        .and_then(|b| b.build())
        .expect("a v2 header builds");
        for (version, header) in [(1, v1.into_bytes()), (2, v2)] {
            let mut stream = header.clone();
            stream.extend_from_slice(input);
            let got = parse(&stream).expect("a built header parses");
            assert_eq!(
                got,
                Some(Header {
                    len: header.len(),
                    version,
                    client: Some(want),
                })
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, payload: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(0x20 | command);
        h.push(family);
        h.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
        h.extend_from_slice(payload);
        h
    }

    fn client(s: &str) -> Option<SocketAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn v1_headers_carry_their_source() {
        for (text, want) in [
            (
                "PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n",
                client("203.0.113.7:56324"),
            ),
            (
                "PROXY TCP6 2001:db8::7 2001:db8::1 4000 80\r\n",
                client("[2001:db8::7]:4000"),
            ),
            (
                "PROXY TCP6 ::ffff:198.51.100.2 ::1 4000 80\r\n",
                client("198.51.100.2:4000"),
            ),
            ("PROXY UNKNOWN\r\n", None),
            ("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", None),
        ] {
            let mut bytes = text.as_bytes().to_vec();
            bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
            let h = parse(&bytes).unwrap().unwrap_or_else(|| panic!("{text}"));
            assert_eq!(
                (h.len, h.version, h.client),
                (text.len(), 1, want),
                "{text}"
            );
        }
    }

    #[test]
    fn v2_headers_carry_their_source_and_skip_tlvs() {
        let ipv4 = [203, 0, 113, 7, 192, 0, 2, 1, 0xdc, 0x04, 1, 187];
        let mut with_tlvs = ipv4.to_vec();
        // An AWS-like TLV, and one whose length runs past the end: TLVs are
        // not read.
        with_tlvs.extend_from_slice(&[0xea, 0, 3, 1, 2, 3, 0x04, 0, 9]);
        let mut ipv6 = vec![0x20, 0x01, 0x0d, 0xb8];
        ipv6.extend_from_slice(&[0; 11]);
        ipv6.push(7);
        ipv6.extend_from_slice(&[0; 16]);
        ipv6.extend_from_slice(&[0x0f, 0xa0, 0, 80]);
        for (name, header, want) in [
            ("ipv4", v2(1, 0x11, &ipv4), client("203.0.113.7:56324")),
            ("tlvs", v2(1, 0x11, &with_tlvs), client("203.0.113.7:56324")),
            ("ipv6", v2(1, 0x21, &ipv6), client("[2001:db8::7]:4000")),
            ("local", v2(0, 0x00, &[]), None),
            ("local with addresses", v2(0, 0x11, &ipv4), None),
            ("unspec", v2(1, 0x00, &[]), None),
            ("unix", v2(1, 0x31, &[0; 216]), None),
        ] {
            let mut bytes = header.clone();
            bytes.extend_from_slice(b"\x16\x03\x01");
            let h = parse(&bytes).unwrap().unwrap_or_else(|| panic!("{name}"));
            assert_eq!(
                (h.len, h.version, h.client),
                (header.len(), 2, want),
                "{name}"
            );
        }
    }

    #[test]
    fn partial_headers_wait_for_more() {
        let v1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n";
        let v2 = v2(1, 0x11, &[203, 0, 113, 7, 192, 0, 2, 1, 0xdc, 0x04, 1, 187]);
        for full in [&v1[..], &v2[..]] {
            for end in 0..full.len() {
                assert_eq!(parse(&full[..end]), Ok(None), "{:?}", &full[..end]);
            }
            assert!(parse(full).unwrap().is_some());
        }
    }

    #[test]
    fn malformed_headers_are_refused() {
        let long_v2 = {
            let mut h = V2_SIGNATURE.to_vec();
            h.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
            h
        };
        for (name, bytes) in [
            ("http", &b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"[..]),
            ("tls", &b"\x16\x03\x01\x02\x00\x01"[..]),
            ("lowercase", &b"proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"[..]),
            ("bad family", &b"PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"[..]),
            ("bad address", &b"PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"[..]),
            ("v6 in TCP4", &b"PROXY TCP4 ::1 ::2 1 2\r\n"[..]),
            ("bad port", &b"PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"[..]),
            ("no cr", &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"[..]),
            ("cr inside", &b"PROXY UNKNOWN\rx\r\n"[..]),
            (
                "v2 version 1",
                &{
                    let mut h = v2(1, 0x11, &[0; 12]);
                    h[12] = 0x11;
                    h
                }[..],
            ),
            ("v2 command 2", &v2(2, 0x11, &[0; 12])[..]),
            ("v2 family 4", &v2(1, 0x41, &[0; 12])[..]),
            ("v2 short addresses", &v2(1, 0x11, &[0; 8])[..]),
        ] {
            assert!(
                matches!(parse(bytes), Err(HeaderError::Malformed(_))),
                "{name}: {:?}",
                parse(bytes)
            );
        }
        assert_eq!(
            parse(&[b'P', b'R', b'O', b'X', b'Y', b' ', b'A'].repeat(20)),
            Err(HeaderError::TooLong(MAX_V1_BYTES))
        );
        assert_eq!(
            parse(&long_v2),
            Err(HeaderError::TooLong(MAX_HEADER_BYTES)),
            "refused from its length alone"
        );
    }

    #[test]
    fn the_reader_consumes_the_header_only() {
        let mut bytes = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n".to_vec();
        let len = bytes.len();
        bytes.extend_from_slice(b"GET / HTTP/1.1\r\n");
        let mut r = Reader::default();
        assert_eq!(r.step(&bytes[..10]), Ok(Step::More(10)));
        let Ok(Step::Done(n, h)) = r.step(&bytes[10..]) else {
            panic!("not done");
        };
        assert_eq!((n, h.len), (len - 10, len));
        assert_eq!(h.client, client("203.0.113.7:56324"));
    }

    #[test]
    fn port_lists_name_ports_of_all_or_one_gateway() {
        let ports: ProxyProtocolPorts = "80, 443,infra/edge:8443".parse().unwrap();
        let edge = ObjectKey::new(Kind::Gateway, "infra", "edge");
        let other = ObjectKey::new(Kind::Gateway, "infra", "other");
        assert!(ports.expects(&other, 80));
        assert!(ports.expects(&edge, 443));
        assert!(ports.expects(&edge, 8443));
        assert!(!ports.expects(&other, 8443));
        assert!(!ports.expects(&edge, 8080));
        assert!("".parse::<ProxyProtocolPorts>().unwrap().is_empty());
        for bad in ["http", "0", "70000", "edge:80", "/edge:80", "infra/:80"] {
            assert!(bad.parse::<ProxyProtocolPorts>().is_err(), "{bad}");
        }
    }
}
