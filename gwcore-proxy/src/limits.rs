//! Resource limits of client connections, and which peers are trusted to
//! have set proxy headers.
//!
//! Every limit has a default that suits a public gateway; `gwcore serve`
//! exposes each one as a flag. What a client gets when it crosses one:
//!
//! | Limit | Default | HTTP/1.1 | HTTP/2 |
//! |---|---|---|---|
//! | [`Limits::max_header_bytes`] | 64 KiB | 431, connection closed | 431 on the stream |
//! | [`Limits::max_headers`] | 100 | 431, connection closed | 431 |
//! | [`Limits::max_uri_bytes`] | 8 KiB | 414 | 414 |
//! | [`Limits::header_read_timeout`] | 30 s | connection closed | connection closed (first request only) |
//! | [`Limits::idle_timeout`] | 60 s | connection closed | GOAWAY, then closed |
//! | [`Limits::http2_keep_alive_interval`] / [`Limits::http2_keep_alive_timeout`] | 30 s / 20 s | — | closed when a PING is not answered |
//! | [`Limits::max_connections`] | 10 000 | accepted and closed at once | same |
//! | [`Limits::http2_max_concurrent_streams`] | 100 | — | `RST_STREAM(REFUSED_STREAM)` |
//! | [`Limits::max_request_body_bytes`] | unlimited | 413 (at once when `Content-Length` says so; a streamed body is cut at the limit) | same |
//! | [`Limits::request_body_timeout`] | 30 s | 408, connection closed | 408 on the stream |
//! | [`Limits::min_request_body_rate`] | 1 KiB/s (after `request_body_timeout`) | 408, connection closed | 408 on the stream |
//! | [`Limits::request_body_buffer_bytes`] | 64 KiB | a body up to this size is read whole before the backend sees its request; malformed: 400 | — |
//! | [`Limits::response_write_timeout`] | 30 s | connection closed | connection closed |
//! | [`Limits::http2_max_control_frames_per_second`] | 100 (bursts of 1 000) | — | `GOAWAY(ENHANCE_YOUR_CALM)`, closed |
//! | [`Limits::http2_max_pending_accept_reset_streams`] | 20 | — | `GOAWAY(ENHANCE_YOUR_CALM)`, closed |
//! | [`Limits::http2_max_local_error_reset_streams`] | 1 024 | — | `GOAWAY(ENHANCE_YOUR_CALM)`, closed |
//!
//! HTTP/2 has more limits that follow from these or are h2's own (all
//! answer `GOAWAY(ENHANCE_YOUR_CALM)` and close the connection): a header
//! block may have as many CONTINUATION frames as `max_header_bytes` needs
//! in 16 KiB frames, plus a quarter (at least 5); HPACK decoding stops
//! when the decoded header list passes four times `max_header_bytes`, so
//! a small block that refers to a large table entry again and again costs
//! little; more than 100 empty DATA frames (without END_STREAM) on one
//! connection are refused. `docs/isolation.md` lists the attacks each one
//! stops.

use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

/// The default of [`Limits::header_read_timeout`]: how long a client may
/// take to send a request head on HTTP/1.1 (and so how long an idle
/// keep-alive connection is kept).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);

/// How client connections are served: their limits and which peers may set
/// proxy headers. Default is [`Limits::default`] and no trusted peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServeOptions {
    /// Resource limits of client connections.
    pub limits: Limits,
    /// Peers whose `X-Forwarded-*` headers are kept (appended to); from
    /// others they are replaced. Behind a PROXY protocol header, the peer
    /// checked is the client the header carries.
    pub trusted_proxies: TrustedProxies,
    /// Gateway ports whose connections start with a PROXY protocol header
    /// from a TCP load balancer ([`crate::proxy_protocol`]); the address it
    /// carries is the client's. Default is none.
    pub proxy_protocol: crate::proxy_protocol::ProxyProtocolPorts,
    /// What a request path holding `%2F` or `%5C` gets where no
    /// `PathPolicy` applies ([`crate::path_policy`]). Default is
    /// [`EscapedSlashes::UnescapeAndRedirect`].
    ///
    /// [`EscapedSlashes::UnescapeAndRedirect`]: gwcore::table::slashes::EscapedSlashes::UnescapeAndRedirect
    pub escaped_slashes: gwcore::table::slashes::EscapedSlashes,
    /// Spans of requests exported over OTLP, and W3C Trace Context
    /// ([`crate::tracing_otel`]). Default is off.
    pub tracing: crate::tracing_otel::TracingOptions,
}

/// Limits on what one client connection may hold or send.
///
/// A zero timeout or count disables that limit, except
/// `http2_max_concurrent_streams` (zero refuses every stream, as
/// RFC 9113 §6.5.2 allows).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// The largest request head: on HTTP/1.1 the request line and header
    /// fields together (the connection's read buffer, at least 8 KiB); on
    /// HTTP/2 the header list as RFC 9113 §6.5.2 counts it
    /// (`SETTINGS_MAX_HEADER_LIST_SIZE`). Larger heads get 431 (RFC 6585
    /// §5). Default is 64 KiB.
    pub max_header_bytes: usize,
    /// The most header fields in one request; more get 431. Default is 100.
    pub max_headers: usize,
    /// The longest path and query of a request target; longer ones get 414
    /// (RFC 9110 §15.5.15). Default is 8 KiB.
    /// A target longer than `max_header_bytes` is refused with 431 first.
    pub max_uri_bytes: usize,
    /// How long a client may take to send a request head on HTTP/1.1, and
    /// to send its first request on a new connection (either protocol);
    /// the connection is closed after it, which stops clients that send
    /// their head a byte at a time (slowloris). HTTP/1.1 starts this timer
    /// when it waits for the next request, so an idle keep-alive
    /// connection is closed after this time or `idle_timeout`, whichever is
    /// shorter. Default is 30 s.
    pub header_read_timeout: Duration,
    /// How long a connection may stay without any request in flight (none
    /// waiting for, or streaming, its response) before it is closed
    /// (HTTP/2: GOAWAY, then closed). Default is 60 s.
    pub idle_timeout: Duration,
    /// How often an HTTP/2 connection that received nothing is PINGed, to
    /// find dead peers; `None` sends no PING. Default is 30 s.
    pub http2_keep_alive_interval: Option<Duration>,
    /// How long a PING may go unanswered before the connection is closed.
    /// Default is 20 s.
    pub http2_keep_alive_timeout: Duration,
    /// The most client connections open at once, over all ports (HTTP,
    /// HTTPS, TLS and TCP listeners). A connection over the limit is
    /// accepted and closed at once, so the client learns it right away
    /// instead of waiting in the listen queue; it is counted in
    /// `gwcore_connections_refused_total`. Default is 10 000.
    pub max_connections: usize,
    /// The most concurrent streams an HTTP/2 client may open on one
    /// connection (`SETTINGS_MAX_CONCURRENT_STREAMS`); one more is refused
    /// with `RST_STREAM(REFUSED_STREAM)`, which a client may retry
    /// (RFC 9113 §8.7). Default is 100, the least RFC 9113 §6.5.2
    /// recommends.
    pub http2_max_concurrent_streams: u32,
    /// The largest request body, in bytes, where no `BodyLimitPolicy`
    /// applies (one that does replaces it, larger or smaller). A request
    /// whose `Content-Length` is larger gets 413 without its backend being
    /// contacted; a streamed body (HTTP/1.1 chunked, HTTP/2 without
    /// `Content-Length`) is cut when it passes the limit: the backend gets
    /// at most this many bytes and never a complete request, and the client
    /// 413 unless the backend answered already ([`crate::body_limit`]).
    /// Zero means no limit. Default is no limit: gwcore streams bodies
    /// without holding them, so a large upload costs it no memory; set a
    /// limit here or per route to protect backends.
    pub max_request_body_bytes: u64,
    /// The longest a request body may keep gwcore waiting for its next
    /// bytes (time spent waiting on a slow backend does not count). A
    /// client that stalls longer gets 408 (RFC 9110 §15.5.9) and, on
    /// HTTP/1.1, its connection is closed. Default is 30 s.
    pub request_body_timeout: Duration,
    /// The least average rate, in bytes per second, at which a request
    /// body must arrive once gwcore has waited `request_body_timeout` for
    /// it in all: a client trickling a few bytes just often enough to beat
    /// the timeout (slow POST) gets 408 too. Zero disables it. Default is
    /// 1 024.
    pub min_request_body_rate: u64,
    /// HTTP/1.x request bodies of at most this many bytes (declared, or
    /// chunked and ending within it) are read whole, their framing checked,
    /// before the backend is contacted: a malformed one gets 400 and no
    /// backend sees any of its request. Larger bodies are streamed as they
    /// are checked; one that turns out malformed ends the backend's
    /// connection without the body's end (it never receives a complete
    /// request). HTTP/2 frames its bodies itself and is not buffered (gRPC
    /// streams would stall). Zero streams every body. Default is 64 KiB.
    pub request_body_buffer_bytes: usize,
    /// The longest a write to a client may make no progress (a client
    /// that does not read its responses, filling the connection's buffers);
    /// the connection is closed after it. Default is 30 s.
    pub response_write_timeout: Duration,
    /// The most PING and SETTINGS frames (other than acknowledgements)
    /// and RST_STREAM frames an HTTP/2 client may send per second on one
    /// connection, in bursts of up to ten seconds' worth: each makes the
    /// server work (an acknowledgement, a request cancelled) while asking
    /// for nothing, so a flood of them is refused with
    /// `GOAWAY(ENHANCE_YOUR_CALM)` and the connection closed. This stops
    /// PING and SETTINGS floods (CVE-2019-9512, CVE-2019-9515) and rapid
    /// reset (CVE-2023-44487) when the resets come too slowly for
    /// `http2_max_pending_accept_reset_streams`. Default is 100.
    pub http2_max_control_frames_per_second: u32,
    /// The most HTTP/2 streams a client may reset before the server took
    /// them up, at once; one more is refused with
    /// `GOAWAY(ENHANCE_YOUR_CALM)` (rapid reset, CVE-2023-44487). Default
    /// is 20.
    pub http2_max_pending_accept_reset_streams: usize,
    /// The most HTTP/2 streams the server may reset for a client's
    /// protocol errors (a malformed or empty header block, say) on one
    /// connection; one more is refused with `GOAWAY(ENHANCE_YOUR_CALM)`.
    /// Default is 1 024.
    pub http2_max_local_error_reset_streams: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_header_bytes: 64 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            header_read_timeout: HEADER_READ_TIMEOUT,
            idle_timeout: Duration::from_secs(60),
            http2_keep_alive_interval: Some(Duration::from_secs(30)),
            http2_keep_alive_timeout: Duration::from_secs(20),
            max_connections: 10_000,
            http2_max_concurrent_streams: 100,
            max_request_body_bytes: 0,
            request_body_timeout: Duration::from_secs(30),
            min_request_body_rate: 1024,
            request_body_buffer_bytes: 64 * 1024,
            response_write_timeout: Duration::from_secs(30),
            http2_max_control_frames_per_second: 100,
            http2_max_pending_accept_reset_streams: 20,
            http2_max_local_error_reset_streams: 1024,
        }
    }
}

/// An IP network: an address and a prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

impl IpNet {
    /// Whether `ip` is in this network. An IPv4-mapped IPv6 address
    /// (`::ffff:10.0.0.1`) is compared as the IPv4 address it maps.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(u32::from(net)) << 96,
                u128::from(u32::from(ip)) << 96,
                self.prefix,
            ),
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix_eq(u128::from(net), u128::from(ip), self.prefix)
            }
            // A network written in IPv6 form (`::ffff:10.0.0.0/104`) holds
            // the IPv4 addresses it maps.
            (IpAddr::V6(net), IpAddr::V4(ip)) => prefix_eq(
                u128::from(net),
                u128::from(ip.to_ipv6_mapped()),
                self.prefix,
            ),
            (IpAddr::V4(_), IpAddr::V6(_)) => false,
        }
    }
}

fn prefix_eq(a: u128, b: u128, prefix: u8) -> bool {
    if prefix == 0 {
        return true;
    }
    let shift = 128 - u32::from(prefix);
    a >> shift == b >> shift
}

/// Why a network could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum IpNetError {
    /// Not an IP address.
    #[error("{0:?} is not an IP address")]
    Address(String),
    /// The prefix length is not a number within the address's bits.
    #[error("bad prefix length in {0:?}")]
    Prefix(String),
}

impl FromStr for IpNet {
    type Err = IpNetError;

    /// `10.0.0.0/8`, `fd00::/8`, or an address alone (a network of one).
    fn from_str(s: &str) -> Result<IpNet, IpNetError> {
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| IpNetError::Address(s.to_owned()))?;
        let bits = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => bits,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= bits)
                .ok_or_else(|| IpNetError::Prefix(s.to_owned()))?,
        };
        Ok(IpNet { addr, prefix })
    }
}

impl std::fmt::Display for IpNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// The peers whose `X-Forwarded-For`, `X-Forwarded-Proto`,
/// `X-Forwarded-Host` and `Forwarded` headers are believed: proxies or load
/// balancers in front of the gateway. From any other peer those headers
/// are replaced by the gateway's own (`Forwarded` is removed), since a
/// client can write anything in them. Default is none: no peer is trusted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    /// Trusts the peers in `nets`.
    pub fn new(nets: Vec<IpNet>) -> TrustedProxies {
        TrustedProxies(nets)
    }

    /// Whether a peer at `ip` is trusted.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|n| n.contains(ip))
    }

    /// The trusted networks.
    pub fn nets(&self) -> &[IpNet] {
        &self.0
    }
}

impl FromStr for TrustedProxies {
    type Err = IpNetError;

    /// A comma-separated list of networks (`10.0.0.0/8,192.0.2.7`); empty
    /// trusts no one.
    fn from_str(s: &str) -> Result<TrustedProxies, IpNetError> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(IpNet::from_str)
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_contain_their_addresses_only() {
        let t: TrustedProxies = "10.0.0.0/8, 192.0.2.7,fd00::/8".parse().unwrap();
        for (addr, want) in [
            ("10.1.2.3", true),
            ("11.0.0.1", false),
            ("192.0.2.7", true),
            ("192.0.2.8", false),
            ("fd12::1", true),
            ("fe80::1", false),
            ("::ffff:10.9.9.9", true),
        ] {
            assert_eq!(t.contains(ip(addr)), want, "{addr}");
        }
        let all: TrustedProxies = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("203.0.113.1")));
        assert!(
            !all.contains(ip("2001:db8::1")),
            "an IPv4 network holds no IPv6 peer"
        );
        assert!(!TrustedProxies::default().contains(ip("127.0.0.1")));
    }

    /// A network written as IPv4-mapped IPv6 held none of its addresses:
    /// peers are compared in IPv4 form (the `cidr` fuzz target checks that
    /// every network contains its own address).
    #[test]
    fn an_ipv4_mapped_network_holds_what_it_maps() {
        let t: TrustedProxies = "::ffff:10.0.0.0/104,::ffff:192.0.2.7".parse().unwrap();
        for (addr, want) in [
            ("10.1.2.3", true),
            ("::ffff:10.1.2.3", true),
            ("11.0.0.1", false),
            ("192.0.2.7", true),
            ("::ffff:192.0.2.7", true),
            ("192.0.2.8", false),
            ("::a00:1", false),
        ] {
            assert_eq!(t.contains(ip(addr)), want, "{addr}");
        }
    }

    #[test]
    fn bad_networks_are_refused() {
        assert_eq!(
            "10.0.0.0/33".parse::<IpNet>(),
            Err(IpNetError::Prefix("10.0.0.0/33".into()))
        );
        assert_eq!(
            "example.com".parse::<IpNet>(),
            Err(IpNetError::Address("example.com".into()))
        );
        assert!("".parse::<TrustedProxies>().unwrap().nets().is_empty());
    }
}
