//! Choosing the backend of a TLS-passthrough or TCP connection.
//!
//! The routing table in `gwcore::table` covers HTTP and gRPC; these pure
//! functions do the same job for TLSRoute and TCPRoute from the engine's
//! [`GatewayRouting`], with no I/O, so the connection code (`tcp.rs`)
//! stays thin.

use gwcore::attachments::{
    AttachedRoute, BackendTarget, GatewayRouting, L4Rule, ListenerProtocol, ListenerRouting,
    RouteRules, TlsMode,
};
use gwcore::table::{CreationTime, HostRank};

/// What a connection is forwarded to, and why.
#[derive(Debug, Clone, Copy)]
pub struct L4Choice<'r> {
    /// The listener that accepted the connection.
    pub listener: &'r ListenerRouting,
    /// The route.
    pub route: &'r AttachedRoute,
    /// The rule (a TLSRoute or TCPRoute has its backends in its rules).
    pub rule: &'r L4Rule,
}

/// How specific a hostname is, as the routing table ranks it: a precise
/// hostname beats any wildcard, a longer wildcard a shorter one, and any
/// hostname beats none.
fn rank(hostname: Option<&str>) -> (u16, u16) {
    let r = HostRank::of(hostname);
    (r.precise_chars, r.chars)
}

fn matches(pattern: Option<&str>, name: &str) -> bool {
    pattern.is_none_or(|p| gwcore::hostname::matches(p, name))
}

fn first_rule(route: &AttachedRoute) -> Option<&L4Rule> {
    match &route.rules {
        RouteRules::L4(rules) => rules.first(),
        _ => None,
    }
}

/// Of `candidates`, the one whose listener hostname (`hostname` of it)
/// matches the SNI most specifically: an exact hostname, then the longest
/// wildcard, then a listener without hostname; the first such candidate on
/// a tie. A connection without SNI can reach only a listener without
/// hostname.
///
/// Spec (Listener `hostname`): "TLS: The Listener Hostname MUST match the
/// SNI", and "Hostnames that are prefixed with a wildcard label (`*.`) are
/// interpreted as a suffix match". Among several matching listeners of a
/// port the more specific wins, as the routing table chooses HTTPS
/// listeners (`gwcore::table`), with the table's [`HostRank`].
pub fn by_listener_hostname<'c, T>(
    candidates: impl IntoIterator<Item = &'c T>,
    hostname: impl Fn(&T) -> Option<&str>,
    sni: Option<&str>,
) -> Option<&'c T> {
    let sni = sni.map(str::to_ascii_lowercase);
    candidates
        .into_iter()
        .filter(|c| match (hostname(c), &sni) {
            (None, _) => true,
            (Some(h), Some(sni)) => gwcore::hostname::matches(h, sni),
            (Some(_), None) => false,
        })
        .min_by_key(|c| std::cmp::Reverse(rank(hostname(c))))
}

/// The listener of `port` that a TLS connection with this SNI reaches: among
/// the port's TLS and HTTPS listeners, whatever their modes, the one whose
/// hostname matches the SNI most specifically ([`by_listener_hostname`]).
/// Its protocol and mode then say what happens to the connection: forwarded
/// as it is (Passthrough), or terminated here and routed by TLSRoute
/// (Terminate) or by HTTPRoute (HTTPS).
pub fn tls_listener<'r>(
    routing: &'r GatewayRouting,
    port: u16,
    sni: Option<&str>,
) -> Option<&'r ListenerRouting> {
    by_listener_hostname(
        routing.listeners.iter().filter(|l| {
            l.port == port && matches!(l.protocol, ListenerProtocol::Tls | ListenerProtocol::Https)
        }),
        |l| l.hostname.as_deref(),
        sni,
    )
}

/// The TLSRoute serving a TLS connection with this SNI on `port`, when the
/// listener it reaches ([`tls_listener`]) is a TLS listener in `mode`
/// (Passthrough, or Terminate when the gateway ended the TLS session
/// itself).
///
/// On that listener, the route whose hostname matches the SNI most
/// specifically wins, ties going to the older route, then by
/// namespace/name. Spec (TLSRoute `hostnames`): "Hostnames that are
/// prefixed with a wildcard label (`*.`) are interpreted as a suffix
/// match", and a connection without SNI cannot be routed by hostname.
pub fn tls_route<'r>(
    routing: &'r GatewayRouting,
    port: u16,
    sni: &str,
    mode: TlsMode,
) -> Option<L4Choice<'r>> {
    let listener = tls_listener(routing, port, Some(sni))?;
    if listener.protocol != ListenerProtocol::Tls
        || listener.tls_mode.unwrap_or(TlsMode::Terminate) != mode
    {
        return None;
    }
    let sni = sni.to_ascii_lowercase();
    // The most specific matching route hostname, then the oldest route.
    let route = listener
        .routes
        .iter()
        .filter_map(|route| {
            let rank = if route.hostnames.is_empty() {
                Some(rank(None))
            } else {
                route
                    .hostnames
                    .iter()
                    .filter(|h| matches(Some(h), &sni))
                    .map(|h| rank(Some(h)))
                    .max()
            };
            Some((std::cmp::Reverse(rank?), age(route), route))
        })
        .min_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)))?
        .2;
    Some(L4Choice {
        listener,
        route,
        rule: first_rule(route)?,
    })
}

/// The TCPRoute serving a connection on `port`: the port's TCP listener
/// and, among its routes, the oldest.
///
/// A TCP connection carries nothing to match on, so every route attached
/// to the listener matches it equally and precedence alone decides. Spec
/// (Listener `allowedRoutes`): "Matching precedence MUST be determined in
/// order of the following criteria: The most specific match as defined by
/// the Route type. The oldest Route based on creation timestamp. [...] If
/// everything else is equivalent, the Route appearing first in
/// alphabetical order (namespace/name) should be given precedence."
pub fn tcp<'r>(routing: &'r GatewayRouting, port: u16) -> Option<L4Choice<'r>> {
    oldest(routing, port, ListenerProtocol::Tcp)
}

/// The UDPRoute serving datagrams on `port`: the port's UDP listener and,
/// among its routes, the oldest, for the reason [`tcp`] gives (a datagram
/// carries nothing a UDPRoute matches on).
pub fn udp<'r>(routing: &'r GatewayRouting, port: u16) -> Option<L4Choice<'r>> {
    oldest(routing, port, ListenerProtocol::Udp)
}

/// The oldest route of the `protocol` listener on `port`.
fn oldest<'r>(
    routing: &'r GatewayRouting,
    port: u16,
    protocol: ListenerProtocol,
) -> Option<L4Choice<'r>> {
    let listener = routing
        .listeners
        .iter()
        .find(|l| l.port == port && l.protocol == protocol)?;
    let route = listener.routes.iter().min_by_key(|r| age(r))?;
    Some(L4Choice {
        listener,
        route,
        rule: first_rule(route)?,
    })
}

/// Orders routes oldest first, then by namespace/name: the spec's
/// tie-breakers once two routes match a connection equally well. A route
/// without a timestamp counts as the oldest, as in the routing table.
fn age(route: &AttachedRoute) -> (CreationTime, &str, &str) {
    (
        CreationTime::parse(route.creation_timestamp.as_deref()),
        &route.key.namespace,
        &route.key.name,
    )
}

/// Picks a backend by weight with `draw` (any `u64`). `None` when no backend
/// has weight, or when the draw lands on an invalid one: the connection is
/// then refused (the L4 analogue of the HTTP 500 share).
pub fn pick(rule: &L4Rule, draw: u64) -> Option<&BackendTarget> {
    let total: u64 = rule.backends.iter().map(|b| u64::from(b.weight)).sum();
    if total == 0 {
        return None;
    }
    let mut x = draw % total;
    for b in &rule.backends {
        let w = u64::from(b.weight);
        if x < w {
            return b.target.as_ref().ok();
        }
        x -= w;
    }
    None
}

/// The SNI of a TLS ClientHello, from the first bytes of a connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hello {
    /// More bytes are needed.
    Incomplete,
    /// Not a TLS ClientHello.
    NotTls,
    /// A complete ClientHello, with its server name if it sent one.
    Complete(Option<String>),
}

/// Parses the ClientHello at the start of `buf` (which may span several
/// TLS records) far enough to find the `server_name` extension (RFC 6066 §3).
pub fn client_hello_sni(buf: &[u8]) -> Hello {
    // Reassemble the handshake payload from consecutive handshake records.
    let mut hs = Vec::new();
    let mut at = 0;
    let needed = loop {
        if hs.len() >= 4 {
            let len = usize::from(hs[1]) << 16 | usize::from(hs[2]) << 8 | usize::from(hs[3]);
            if hs.len() >= 4 + len {
                break len;
            }
        }
        let Some(header) = buf.get(at..at + 5) else {
            return Hello::Incomplete;
        };
        if header[0] != 22 || header[1] != 3 {
            return Hello::NotTls;
        }
        let len = usize::from(header[3]) << 8 | usize::from(header[4]);
        let Some(body) = buf.get(at + 5..at + 5 + len) else {
            return Hello::Incomplete;
        };
        hs.extend_from_slice(body);
        at += 5 + len;
    };
    if hs[0] != 1 {
        return Hello::NotTls;
    }
    match parse_hello(&hs[4..4 + needed]) {
        Some(sni) => Hello::Complete(sni),
        None => Hello::NotTls,
    }
}

/// `Some(None)`: a valid hello without SNI; `None`: malformed.
fn parse_hello(h: &[u8]) -> Option<Option<String>> {
    let mut r = Reader(h);
    r.take(2 + 32)?; // version, random
    let n = usize::from(r.u8()?);
    r.take(n)?; // session id
    let n = usize::from(r.u16()?);
    r.take(n)?; // cipher suites
    let n = usize::from(r.u8()?);
    r.take(n)?; // compression methods
    if r.0.is_empty() {
        return Some(None);
    }
    let n = usize::from(r.u16()?);
    let mut ext = Reader(r.take(n)?);
    while !ext.0.is_empty() {
        let ty = ext.u16()?;
        let n = usize::from(ext.u16()?);
        let data = ext.take(n)?;
        if ty == 0 {
            let mut d = Reader(data);
            let n = usize::from(d.u16()?);
            let mut list = Reader(d.take(n)?);
            while !list.0.is_empty() {
                let name_type = list.u8()?;
                let n = usize::from(list.u16()?);
                let name = list.take(n)?;
                if name_type == 0 {
                    return server_name(name);
                }
            }
        }
    }
    Some(None)
}

/// A `host_name` of the `server_name` extension: RFC 6066 §3 "the fully
/// qualified DNS hostname of the server, as understood by the client",
/// without a trailing dot, and "Literal IPv4 and IPv6 addresses are not
/// permitted". `Some(None)` (no SNI) for an address, as rustls does;
/// `None` (malformed: the connection is refused, as rustls refuses it in
/// Terminate mode) for anything else that is not a precise hostname, so
/// that no wildcard, control or non-ASCII byte reaches the listener and
/// route matching.
fn server_name(name: &[u8]) -> Option<Option<String>> {
    let name = std::str::from_utf8(name).ok()?;
    if name.parse::<std::net::IpAddr>().is_ok() {
        return Some(None);
    }
    let lower = name.to_ascii_lowercase();
    (!gwcore::hostname::is_wildcard(&lower) && gwcore::hostname::is_valid(&lower))
        .then(|| Some(name.to_owned()))
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Some(a)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A ClientHello as rustls writes it, captured through a pipe.
    fn hello(sni: &str) -> Vec<u8> {
        let provider = crate::certs::crypto_provider();
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from(sni.to_owned()).unwrap();
        let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).unwrap();
        let mut out = Vec::new();
        conn.write_tls(&mut out).unwrap();
        out
    }

    #[test]
    fn reads_the_sni_of_a_real_client_hello() {
        let h = hello("abc.example.com");
        assert_eq!(
            client_hello_sni(&h),
            Hello::Complete(Some("abc.example.com".into()))
        );
        for cut in [0, 3, 5, 40, h.len() - 1] {
            assert_eq!(
                client_hello_sni(&h[..cut]),
                Hello::Incomplete,
                "cut at {cut}"
            );
        }
    }

    #[test]
    fn a_hello_split_across_records_is_reassembled() {
        let h = hello("split.example");
        let body = &h[5..];
        let (a, b) = body.split_at(30);
        let mut two = Vec::new();
        for part in [a, b] {
            two.extend_from_slice(&[22, 3, 1]);
            two.extend_from_slice(&u16::try_from(part.len()).unwrap().to_be_bytes());
            two.extend_from_slice(part);
        }
        assert_eq!(
            client_hello_sni(&two),
            Hello::Complete(Some("split.example".into()))
        );
    }

    #[test]
    fn plain_http_is_not_tls() {
        assert_eq!(client_hello_sni(b"GET / HTTP/1.1\r\n\r\n"), Hello::NotTls);
    }

    /// A minimal ClientHello record whose `server_name` holds `name` as is.
    fn hello_naming(name: &[u8]) -> Vec<u8> {
        let n = u16::try_from(name.len()).unwrap();
        let mut sni = Vec::new();
        sni.extend_from_slice(&(n + 3).to_be_bytes());
        sni.push(0);
        sni.extend_from_slice(&n.to_be_bytes());
        sni.extend_from_slice(name);
        let mut ext = vec![0, 0];
        ext.extend_from_slice(&u16::try_from(sni.len()).unwrap().to_be_bytes());
        ext.extend_from_slice(&sni);
        let mut body = vec![3, 3];
        body.extend_from_slice(&[7; 32]);
        body.extend_from_slice(&[0, 0, 2, 0x13, 0x01, 1, 0]);
        body.extend_from_slice(&u16::try_from(ext.len()).unwrap().to_be_bytes());
        body.extend_from_slice(&ext);
        let mut hs = vec![1, 0];
        hs.extend_from_slice(&u16::try_from(body.len()).unwrap().to_be_bytes());
        hs.extend_from_slice(&body);
        let mut record = vec![22, 3, 1];
        record.extend_from_slice(&u16::try_from(hs.len()).unwrap().to_be_bytes());
        record.extend_from_slice(&hs);
        record
    }

    /// Any UTF-8 server name used to be taken as the SNI, `*.example.com`
    /// or `a\0b` included, and matched against listener and route
    /// hostnames (the `tls_client_hello` fuzz target checks that a name
    /// read is a precise hostname).
    #[test]
    fn a_server_name_that_is_not_a_hostname_is_refused() {
        for (name, want, why) in [
            (
                &b"Shop.Example.com"[..],
                Hello::Complete(Some("Shop.Example.com".into())),
                "valid, any case",
            ),
            (
                b"10.0.0.1",
                Hello::Complete(None),
                "an address is no SNI (RFC 6066 §3)",
            ),
            (
                b"2001:db8::1",
                Hello::Complete(None),
                "an IPv6 address is no SNI",
            ),
            (b"*.example.com", Hello::NotTls, "a wildcard"),
            (b"a\0b.example.com", Hello::NotTls, "a control byte"),
            (b"example.com.", Hello::NotTls, "a trailing dot"),
            (b"", Hello::NotTls, "empty"),
            ("caf\u{e9}.example".as_bytes(), Hello::NotTls, "not ASCII"),
        ] {
            assert_eq!(client_hello_sni(&hello_naming(name)), want, "{why}");
        }
    }

    use gwcore::model::{Kind, ObjectKey};
    use std::sync::Arc;

    fn route(name: &str, created: Option<&str>, hostnames: &[&str]) -> Arc<AttachedRoute> {
        Arc::new(AttachedRoute {
            key: ObjectKey::new(Kind::TlsRoute, "default", name),
            creation_timestamp: created.map(str::to_owned),
            hostnames: hostnames.iter().map(|h| h.to_string()).collect(),
            rules: RouteRules::L4(Arc::new(vec![L4Rule {
                index: 0,
                name: None,
                backends: Vec::new(),
            }])),
        })
    }

    fn listener(
        name: &str,
        port: u16,
        protocol: ListenerProtocol,
        mode: Option<TlsMode>,
        hostname: Option<&str>,
        routes: Vec<Arc<AttachedRoute>>,
    ) -> ListenerRouting {
        ListenerRouting {
            name: name.into(),
            source: ObjectKey::new(Kind::Gateway, "default", "gw"),
            port,
            protocol,
            hostname: hostname.map(str::to_owned),
            tls_mode: mode,
            certificates: Vec::new(),
            frontend_validation: None,
            routes: routes.into(),
        }
    }

    /// Port 8883 mixes every TLS mode; port 9000 has a catch-all that must
    /// never answer for 8883.
    fn mixed() -> GatewayRouting {
        use ListenerProtocol::{Https, Tls};
        use TlsMode::{Passthrough, Terminate};
        GatewayRouting {
            gateway: ObjectKey::new(Kind::Gateway, "default", "gw"),
            backend_client_certificate: None,
            policies: Default::default(),
            listeners: vec![
                listener(
                    "www",
                    8883,
                    Https,
                    Some(Terminate),
                    Some("www.example.com"),
                    vec![],
                ),
                listener(
                    "term",
                    8883,
                    Tls,
                    Some(Terminate),
                    Some("tls.example.com"),
                    vec![route("t", None, &[])],
                ),
                listener(
                    "pass",
                    8883,
                    Tls,
                    Some(Passthrough),
                    Some("*.example.com"),
                    vec![route("p", None, &[])],
                ),
                listener(
                    "any",
                    8883,
                    Tls,
                    Some(Passthrough),
                    None,
                    vec![route("a", None, &[])],
                ),
                listener("other-port", 9000, Tls, Some(Terminate), None, vec![]),
            ],
        }
    }

    #[test]
    fn sni_picks_the_most_specific_listener_whatever_its_mode() {
        let r = mixed();
        let name = |sni: Option<&str>| tls_listener(&r, 8883, sni).map(|l| l.name.as_str());
        for (sni, want, why) in [
            (
                Some("www.example.com"),
                Some("www"),
                "exact HTTPS beats the wildcard",
            ),
            (
                Some("WWW.Example.com"),
                Some("www"),
                "SNI is case-insensitive",
            ),
            (
                Some("tls.example.com"),
                Some("term"),
                "exact Terminate beats the wildcard",
            ),
            (
                Some("abc.example.com"),
                Some("pass"),
                "the wildcard beats no hostname",
            ),
            (
                Some("example.com"),
                Some("any"),
                "a wildcard never matches its apex",
            ),
            (Some("other.org"), Some("any"), "no hostname takes the rest"),
            (
                None,
                Some("any"),
                "without SNI only a listener without hostname",
            ),
        ] {
            assert_eq!(name(sni), want, "{sni:?}: {why}");
        }
        assert!(tls_listener(&r, 8884, Some("www.example.com")).is_none());
    }

    #[test]
    fn a_tls_route_is_served_only_by_the_listener_the_sni_reaches() {
        let r = mixed();
        let route = |sni, mode| tls_route(&r, 8883, sni, mode).map(|c| c.route.key.name.clone());
        assert_eq!(
            route("tls.example.com", TlsMode::Terminate),
            Some("t".into())
        );
        // The Passthrough wildcard matches too, but the Terminate listener
        // is more specific: its name is never passed through.
        assert_eq!(route("tls.example.com", TlsMode::Passthrough), None);
        assert_eq!(
            route("abc.example.com", TlsMode::Passthrough),
            Some("p".into())
        );
        assert_eq!(
            route("www.example.com", TlsMode::Terminate),
            None,
            "an HTTPS listener has no TLSRoutes"
        );
    }

    #[test]
    fn equally_specific_tls_routes_go_to_the_oldest_then_by_name() {
        let routes = vec![
            route("a-newer", Some("2026-01-02T00:00:00Z"), &["*.example.com"]),
            route("b-older", Some("2026-01-01T00:00:00Z"), &["*.example.com"]),
            route("c-older", Some("2026-01-01T00:00:00Z"), &["*.example.com"]),
            route(
                "d-exact-newest",
                Some("2026-01-03T00:00:00Z"),
                &["x.example.com"],
            ),
        ];
        let r = GatewayRouting {
            gateway: ObjectKey::new(Kind::Gateway, "default", "gw"),
            backend_client_certificate: None,
            policies: Default::default(),
            listeners: vec![listener(
                "pass",
                443,
                ListenerProtocol::Tls,
                Some(TlsMode::Passthrough),
                None,
                routes,
            )],
        };
        let name =
            |sni| tls_route(&r, 443, sni, TlsMode::Passthrough).map(|c| c.route.key.name.clone());
        assert_eq!(name("y.example.com"), Some("b-older".into()));
        assert_eq!(
            name("x.example.com"),
            Some("d-exact-newest".into()),
            "hostname specificity comes before age"
        );
    }
}
