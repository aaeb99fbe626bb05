//! Session persistence (GEP-1619), the data plane's half: a request that
//! carries its session's token goes to the endpoint (and, for a route
//! rule's sessions, the backend) of that session; one without, or with a
//! token that no longer names a listed endpoint, is balanced as usual and
//! gets a new token (docs/session-persistence.md).
//!
//! ```text
//! route::answer ── token (cookie | header) ──▶ Sessions::read: MAC, timeouts
//!      │                                         │ backend index, endpoint tag
//!      ▼                                         ▼
//! send_to_one ── tag ──▶ Sessions::index ──▶ PickRequest::pinned ──▶ EndpointPicker
//!      │
//!      ▼ the endpoint that answered (Chosen)
//! route::answer ── Sessions::issue ──▶ Set-Cookie | response header
//! ```
//!
//! The token is opaque and stateless: 42 bytes, URL-safe base64 — a
//! version, the backend's index in the rule, when the session began and
//! when it was last used (milliseconds since the Unix epoch), the
//! endpoint's tag (a keyed hash of its address: no address is revealed,
//! and none can be named but those the gateway tagged), and an HMAC-SHA256
//! (truncated to 128 bits) of all of it together with the session's scope
//! (the route rule, and for a policy's session the Service port). Any
//! gwcore process with the same [`SessionKey`] reads the tokens of the
//! others: replicas of a Gateway given one key (`gwcore serve
//! --session-key-file`) keep each other's sessions. Without a key each
//! process draws its own at start.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gwcore::model::ObjectKey;
use gwcore::session::{CookieLifetime, SessionKind, SessionPersistence};
use http::{HeaderMap, HeaderValue};
use ring::hmac;

use crate::endpoints::Endpoint;

const VERSION: u8 = 1;
/// Version, backend, issued, touched, tag: what the MAC covers.
const BODY: usize = 1 + 1 + 8 + 8 + 8;
const MAC: usize = 16;
const TOKEN: usize = BODY + MAC;
/// Token issue times this far ahead of the clock are taken as ours (clock
/// skew between replicas); further, as forged.
const SKEW_MS: u64 = 60_000;
/// Addresses whose tags are kept; more, and the cache starts over.
const MAX_TAGS: usize = 1 << 16;

/// The secret that signs session tokens. Processes sharing one read each
/// other's tokens.
#[derive(Clone)]
pub struct SessionKey {
    bytes: Arc<[u8]>,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(..)")
    }
}

/// A key too short to sign with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a session key needs at least {MIN_KEY_BYTES} bytes, this one has {0}")]
pub struct KeyTooShort(pub usize);

/// The fewest bytes a [`SessionKey`] may have.
pub const MIN_KEY_BYTES: usize = 16;

impl SessionKey {
    /// A key of these bytes (at least [`MIN_KEY_BYTES`]; 32 random bytes
    /// are right).
    pub fn new(bytes: &[u8]) -> Result<SessionKey, KeyTooShort> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(KeyTooShort(bytes.len()));
        }
        Ok(SessionKey {
            bytes: bytes.into(),
        })
    }

    /// A key of 32 bytes from the system's random source.
    pub fn random() -> SessionKey {
        use ring::rand::SecureRandom as _;
        let mut bytes = [0u8; 32];
        if ring::rand::SystemRandom::new().fill(&mut bytes).is_err() {
            // No system randomness: fastrand's seed (itself drawn from
            // the process's hasher keys and the clock) is what is left.
            bytes.iter_mut().for_each(|b| *b = fastrand::u8(..));
        }
        SessionKey {
            bytes: bytes.as_slice().into(),
        }
    }
}

/// The process's session state: the key, and each endpoint address's tag.
pub(crate) struct Sessions {
    key: hmac::Key,
    tags: RwLock<HashMap<SocketAddr, u64, rustc_hash::FxBuildHasher>>,
}

impl Default for Sessions {
    fn default() -> Sessions {
        Sessions::new(&SessionKey::random())
    }
}

/// Where a session holds: a route rule (and a Service port, for a
/// policy's session). Rules never share sessions (GEP-1619).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scope<'a> {
    pub(crate) route: &'a ObjectKey,
    pub(crate) rule: usize,
    pub(crate) service: Option<(&'a ObjectKey, u16)>,
}

/// A token that verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Token {
    pub(crate) backend: u8,
    pub(crate) issued_ms: u64,
    pub(crate) touched_ms: u64,
    pub(crate) tag: u64,
}

/// The session's endpoint tag, carried on the request to
/// `route::send_to_one` (it survives a retry's copy of the head).
#[derive(Clone)]
pub(crate) struct Pin {
    pub(crate) sessions: Arc<Sessions>,
    pub(crate) tag: Option<u64>,
}

/// The endpoint that answered, put on the response by
/// `route::send_to_one` for the session's new token.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Chosen(pub(crate) SocketAddr);

/// The clock tokens are read and issued by: wall-clock milliseconds, the
/// same on every replica.
pub(crate) fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Sessions {
    pub(crate) fn new(key: &SessionKey) -> Sessions {
        Sessions {
            key: hmac::Key::new(hmac::HMAC_SHA256, &key.bytes),
            tags: RwLock::default(),
        }
    }

    /// The tag of an endpoint address: the first 8 bytes of its HMAC.
    pub(crate) fn tag(&self, addr: SocketAddr) -> u64 {
        if let Some(t) = self
            .tags
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&addr)
        {
            return *t;
        }
        let mut cx = hmac::Context::with_key(&self.key);
        cx.update(b"gwcore endpoint\0");
        match addr.ip() {
            IpAddr::V4(ip) => cx.update(&ip.octets()),
            IpAddr::V6(ip) => cx.update(&ip.octets()),
        }
        cx.update(&addr.port().to_be_bytes());
        let tag = first_u64(cx.sign().as_ref());
        let mut tags = self.tags.write().unwrap_or_else(|e| e.into_inner());
        if tags.len() >= MAX_TAGS {
            tags.clear();
        }
        tags.insert(addr, tag);
        tag
    }

    /// The index in `endpoints` of the endpoint tagged `tag`.
    pub(crate) fn index(&self, endpoints: &[Endpoint], tag: u64) -> Option<usize> {
        endpoints.iter().position(|e| self.tag(e.addr) == tag)
    }

    fn mac(&self, scope: &Scope<'_>, body: &[u8]) -> [u8; MAC] {
        let mut cx = hmac::Context::with_key(&self.key);
        cx.update(b"gwcore session\0");
        for key in [Some(scope.route), scope.service.map(|s| s.0)]
            .into_iter()
            .flatten()
        {
            cx.update(key.namespace.as_bytes());
            cx.update(b"\0");
            cx.update(key.name.as_bytes());
            cx.update(b"\0");
        }
        cx.update(&(scope.rule as u64).to_be_bytes());
        cx.update(&scope.service.map_or(0, |s| s.1).to_be_bytes());
        cx.update(body);
        let mut mac = [0u8; MAC];
        mac.copy_from_slice(&cx.sign().as_ref()[..MAC]);
        mac
    }

    /// The session token of a request, when it carries one that this key
    /// signed for `scope` and that has not timed out at `now`.
    pub(crate) fn read(
        &self,
        sp: &SessionPersistence,
        scope: &Scope<'_>,
        headers: &HeaderMap,
        now: u64,
    ) -> Option<Token> {
        let text = match sp.kind {
            SessionKind::Cookie { .. } => cookie(headers, &sp.name)?,
            SessionKind::Header => headers.get(sp.name.as_str())?.as_bytes(),
            _ => return None,
        };
        let mut raw = [0u8; TOKEN + 2];
        let n = URL_SAFE_NO_PAD.decode_slice(text, &mut raw).ok()?;
        if n != TOKEN || raw[0] != VERSION {
            return None;
        }
        let mac = self.mac(scope, &raw[..BODY]);
        // Constant time: a guessing client learns nothing from timing
        // (every byte is compared, the differences folded together).
        let diff = mac
            .iter()
            .zip(&raw[BODY..TOKEN])
            .fold(0u8, |d, (a, b)| d | (a ^ b));
        if std::hint::black_box(diff) != 0 {
            return None;
        }
        let token = Token {
            backend: raw[1],
            issued_ms: first_u64(&raw[2..10]),
            touched_ms: first_u64(&raw[10..18]),
            tag: first_u64(&raw[18..26]),
        };
        let expired = token.issued_ms > now.saturating_add(SKEW_MS)
            || sp
                .absolute_timeout
                .is_some_and(|t| now.saturating_sub(token.issued_ms) >= ms(t))
            || sp
                .idle_timeout
                .is_some_and(|t| now.saturating_sub(token.touched_ms) >= ms(t));
        (!expired).then_some(token)
    }

    /// A token for the session on `backend` and the endpoint at `addr`,
    /// begun at `issued`, used at `now`.
    pub(crate) fn token(
        &self,
        scope: &Scope<'_>,
        backend: u8,
        addr: SocketAddr,
        issued: u64,
        now: u64,
    ) -> String {
        let mut raw = [0u8; TOKEN];
        raw[0] = VERSION;
        raw[1] = backend;
        raw[2..10].copy_from_slice(&issued.to_be_bytes());
        raw[10..18].copy_from_slice(&now.to_be_bytes());
        raw[18..26].copy_from_slice(&self.tag(addr).to_be_bytes());
        let mac = self.mac(scope, &raw[..BODY]);
        raw[BODY..].copy_from_slice(&mac);
        URL_SAFE_NO_PAD.encode(raw)
    }
}

/// The value of cookie `name` in a request's `Cookie` headers (RFC 6265
/// §5.4: `name=value` pairs separated by `; `).
pub(crate) fn cookie<'h>(headers: &'h http::HeaderMap, name: &str) -> Option<&'h [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
}

fn first_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[..8]);
    u64::from_be_bytes(b)
}

/// A request's session, from the token it came with to the one its
/// response carries.
pub(crate) struct Session<'a> {
    pub(crate) sp: &'a SessionPersistence,
    pub(crate) scope: Scope<'a>,
    pub(crate) found: Option<Token>,
    pub(crate) now: u64,
}

impl<'a> Session<'a> {
    /// The session of a request to `forward`'s rule: `service` is the
    /// Service port of a policy's session (`None`: the rule's own).
    pub(crate) fn begin(
        sessions: &Sessions,
        sp: &'a SessionPersistence,
        forward: &gwcore::table::Forward<'a>,
        service: Option<(&'a ObjectKey, u16)>,
        headers: &HeaderMap,
    ) -> Session<'a> {
        let m = forward.matched();
        let scope = Scope {
            route: m.route(),
            rule: m.rule_index(),
            service,
        };
        let now = now_ms();
        let found = sessions.read(sp, &scope, headers, now);
        Session {
            sp,
            scope,
            found,
            now,
        }
    }

    /// Puts the session's token on `response` for the endpoint that
    /// answered (`Chosen`) on `backend`: a new one when the request had
    /// none or its endpoint changed, the same session touched now when an
    /// idle timeout needs it, else nothing. `tls`: the cookie is `Secure`.
    pub(crate) fn answer(
        &self,
        sessions: &Sessions,
        backend: u8,
        response: &mut http::response::Parts,
        tls: bool,
    ) {
        let Some(Chosen(addr)) = response.extensions.get::<Chosen>().copied() else {
            return;
        };
        let kept = self
            .found
            .filter(|t| t.backend == backend && t.tag == sessions.tag(addr));
        if kept.is_some() && self.sp.idle_timeout.is_none() {
            return;
        }
        let issued = kept.map_or(self.now, |t| t.issued_ms);
        let token = sessions.token(&self.scope, backend, addr, issued, self.now);
        match &self.sp.kind {
            SessionKind::Cookie { path, lifetime } => {
                let mut c = format!("{}={token}", self.sp.name);
                let path = path
                    .as_deref()
                    .or(self.scope.service.is_none().then_some("/"));
                if let Some(p) = path {
                    c.push_str("; Path=");
                    c.push_str(p);
                }
                if *lifetime == CookieLifetime::Permanent
                    && let Some(t) = self.sp.absolute_timeout
                {
                    let left = ms(t).saturating_sub(self.now.saturating_sub(issued));
                    c.push_str(&format!("; Max-Age={}", left.div_ceil(1000)));
                }
                c.push_str("; HttpOnly; SameSite=Strict");
                if tls {
                    c.push_str("; Secure");
                }
                if let Ok(v) = HeaderValue::from_str(&c) {
                    response.headers.append(http::header::SET_COOKIE, v);
                }
            }
            SessionKind::Header => {
                if let (Ok(n), Ok(v)) = (
                    http::HeaderName::from_bytes(self.sp.name.as_bytes()),
                    HeaderValue::from_str(&token),
                ) {
                    response.headers.insert(n, v);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gwcore::model::{Kind, SessionPersistenceSpec};

    fn sp(yaml: serde_json::Value) -> SessionPersistence {
        let spec: SessionPersistenceSpec = serde_json::from_value(yaml).unwrap();
        SessionPersistence::parse(&spec, "s", "sp").unwrap()
    }

    fn headers(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            value.parse().unwrap(),
        );
        h
    }

    #[test]
    fn tokens_verify_only_under_their_key_scope_and_times() {
        let route = ObjectKey::new(Kind::HttpRoute, "ns", "r");
        let other = ObjectKey::new(Kind::HttpRoute, "ns", "q");
        let scope = Scope {
            route: &route,
            rule: 0,
            service: None,
        };
        let s = Sessions::new(&SessionKey::new(&[7; 32]).unwrap());
        let addr: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let sp = sp(
            serde_json::json!({"type": "Header", "header": {"name": "x-s"},
            "absoluteTimeout": "10s", "idleTimeout": "2s"}),
        );
        let t = s.token(&scope, 1, addr, 1_000_000, 1_005_000);
        let read = |s: &Sessions, scope: &Scope<'_>, tok: &str, now| {
            s.read(&sp, scope, &headers("x-s", tok), now)
        };
        let got = read(&s, &scope, &t, 1_006_000).expect("valid");
        assert_eq!((got.backend, got.tag), (1, s.tag(addr)));
        assert_eq!(got.issued_ms, 1_000_000);
        // Idle for 2 s, or 10 s since it began: gone.
        assert_eq!(read(&s, &scope, &t, 1_007_000), None);
        let fresh = s.token(&scope, 1, addr, 1_000_000, 1_009_500);
        assert!(read(&s, &scope, &fresh, 1_009_900).is_some());
        assert_eq!(read(&s, &scope, &fresh, 1_010_000), None, "absolute");
        // Another rule, another key, or a changed byte: not ours.
        let rule1 = Scope { rule: 1, ..scope };
        assert_eq!(read(&s, &rule1, &t, 1_006_000), None);
        let q = Scope {
            route: &other,
            ..scope
        };
        assert_eq!(read(&s, &q, &t, 1_006_000), None);
        let s2 = Sessions::new(&SessionKey::new(&[8; 32]).unwrap());
        assert_eq!(read(&s2, &scope, &t, 1_006_000), None);
        let same_key = Sessions::new(&SessionKey::new(&[7; 32]).unwrap());
        assert!(
            read(&same_key, &scope, &t, 1_006_000).is_some(),
            "replicas agree"
        );
        let mut raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        raw[20] ^= 1;
        assert_eq!(
            read(&s, &scope, &URL_SAFE_NO_PAD.encode(&raw), 1_006_000),
            None
        );
        assert!(!t.contains("10.0.0.1"));
    }

    #[test]
    fn keys_shorter_than_16_bytes_are_refused() {
        assert_eq!(SessionKey::new(&[1; 15]).unwrap_err(), KeyTooShort(15));
    }
}
