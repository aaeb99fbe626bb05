//! Session persistence (GEP-1619): what a route rule's
//! `sessionPersistence`, or an `XBackendTrafficPolicy`'s
//! ([`crate::policies::backend_traffic`]), asks of the data plane, parsed
//! once into a [`SessionPersistence`].
//!
//! ```
//! use gwcore::model::SessionPersistenceSpec;
//! use gwcore::session::{CookieLifetime, SessionKind, SessionPersistence};
//!
//! let spec: SessionPersistenceSpec = serde_json::from_value(serde_json::json!({
//!     "type": "Cookie",
//!     "absoluteTimeout": "1h",
//!     "cookie": {"name": "cart", "lifetimeType": "Permanent"},
//! })).unwrap();
//! let sp = SessionPersistence::parse(&spec, "shop/cart rule 0", "spec.rules[0].sessionPersistence").unwrap();
//! assert_eq!(sp.name, "cart");
//! assert!(matches!(&sp.kind, SessionKind::Cookie { lifetime: CookieLifetime::Permanent, .. }));
//! assert_eq!(sp.absolute_timeout, Some(std::time::Duration::from_secs(3600)));
//! ```
//!
//! The engine refuses what the spec makes invalid (a `Permanent` cookie
//! without `absoluteTimeout`, a `cookie` on a `Header` session, a name
//! that is not a token, an unknown `type`): on a route rule the rule is
//! dropped (`PartiallyInvalid`, or `Accepted=False` when every rule is, with
//! reason `UnsupportedValue`); on a policy the policy is `Invalid`. How
//! sessions are kept is the data plane's (`gwcore_proxy::session`).

use std::time::Duration;

use crate::model::SessionPersistenceSpec;
use crate::values::{CookieLifetimeType, SessionPersistenceType};

/// A parsed `sessionPersistence`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub struct SessionPersistence {
    /// The cookie's or header's name: as configured, else one made from
    /// where the configuration is ([`default_name`]): the spec asks for a
    /// unique name when none is given.
    pub name: String,
    /// Cookie or header.
    pub kind: SessionKind,
    /// `absoluteTimeout`: how long a session lasts from its first request.
    pub absolute_timeout: Option<Duration>,
    /// `idleTimeout`: how long a session lasts without a request.
    pub idle_timeout: Option<Duration>,
}

/// How the session token travels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub enum SessionKind {
    /// In a cookie the gateway sets (`Set-Cookie`) and the client sends
    /// back.
    Cookie {
        /// The cookie's `Path` attribute (`cookie.path`); `None`: none
        /// configured.
        path: Option<String>,
        /// Session or permanent cookie.
        lifetime: CookieLifetime,
    },
    /// In a header the gateway puts on responses and the client sends
    /// back on its requests.
    Header,
}

/// `cookie.lifetimeType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[non_exhaustive]
pub enum CookieLifetime {
    /// No `Max-Age`: the browser drops it when its session ends (the
    /// default).
    Session,
    /// `Max-Age` is the `absoluteTimeout`.
    Permanent,
}

/// The name a session gets when none is configured: `gw-session-` and 16
/// hex digits of a hash of `scope` (the route rule or the policy), the
/// same in every gwcore process.
pub fn default_name(scope: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in scope.as_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("gw-session-{h:016x}")
}

/// Whether `name` is an RFC 7230 token (what a cookie or header name may
/// be, and the CRD's pattern).
fn is_token(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 256
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

impl SessionPersistence {
    /// Parses `spec`; `scope` names where it is (for the default name),
    /// `field` its path in the object (for messages: `spec.rules[0].sessionPersistence`).
    pub fn parse(
        spec: &SessionPersistenceSpec,
        scope: &str,
        field: &str,
    ) -> Result<SessionPersistence, String> {
        let type_ = spec.type_.clone().unwrap_or(SessionPersistenceType::Cookie);
        let duration = |d: &Option<crate::values::Duration>, name: &str| match d {
            None => Ok(None),
            Some(d) => match d.value() {
                Some(v) if !v.is_zero() => Ok(Some(v)),
                Some(_) => Err(format!("{field}.{name}: must be more than 0")),
                None => Err(format!(
                    "{field}.{name}: {:?} is not a duration (like 1h, 30m, 10s, 500ms)",
                    d.as_str()
                )),
            },
        };
        let absolute_timeout = duration(&spec.absolute_timeout, "absoluteTimeout")?;
        let idle_timeout = duration(&spec.idle_timeout, "idleTimeout")?;
        if spec.cookie.is_some() && spec.cookie_config.is_some() {
            return Err(format!(
                "{field}: cookie and cookieConfig are the same setting in two API versions; set one"
            ));
        }
        let cookie = spec.cookie.as_ref().or(spec.cookie_config.as_ref());
        let (kind, own_name) = match type_ {
            SessionPersistenceType::Cookie => {
                if spec.header.is_some() {
                    return Err(format!(
                        "{field}.header: must not be set when type is Cookie"
                    ));
                }
                let lifetime = match cookie.and_then(|c| c.lifetime_type.as_ref()) {
                    None | Some(CookieLifetimeType::Session) => CookieLifetime::Session,
                    Some(CookieLifetimeType::Permanent) => CookieLifetime::Permanent,
                    Some(other) => {
                        return Err(format!(
                            "{field}.cookie.lifetimeType: {other:?} is not supported (Session or Permanent)",
                            other = other.as_str()
                        ));
                    }
                };
                if lifetime == CookieLifetime::Permanent && absolute_timeout.is_none() {
                    return Err(format!(
                        "{field}.absoluteTimeout: required when cookie lifetimeType is Permanent"
                    ));
                }
                let path = cookie.and_then(|c| c.path.clone());
                if let Some(p) = &path
                    && (!p.starts_with('/')
                        || p.len() > 1024
                        || p.bytes().any(|b| b.is_ascii_control() || b == b';'))
                {
                    return Err(format!(
                        "{field}.cookie.path: {p:?} is not a cookie path (starts with /, no ; or control characters)"
                    ));
                }
                (
                    SessionKind::Cookie { path, lifetime },
                    cookie.and_then(|c| c.name.clone()),
                )
            }
            SessionPersistenceType::Header => {
                if cookie.is_some() {
                    return Err(format!(
                        "{field}.cookie: must not be set when type is Header"
                    ));
                }
                (
                    SessionKind::Header,
                    spec.header.as_ref().and_then(|h| h.name.clone()),
                )
            }
            other => {
                return Err(format!(
                    "{field}.type: {:?} is not supported (Cookie or Header)",
                    other.as_str()
                ));
            }
        };
        let name = match (own_name, &spec.session_name) {
            (Some(a), Some(b)) if a != *b => {
                return Err(format!(
                    "{field}.sessionName: {b:?} differs from the name {a:?} set beside it"
                ));
            }
            (Some(a), _) => a,
            (None, Some(b)) => b.clone(),
            (None, None) => default_name(scope),
        };
        if !is_token(&name) {
            return Err(format!(
                "{field}: session name {name:?} is not a cookie or header name (letters, digits and !#$%&'*+-.^_`|~, at most 256)"
            ));
        }
        if matches!(kind, SessionKind::Header) && http_reserved(&name) {
            return Err(format!(
                "{field}.header.name: {name:?} is a header the gateway or HTTP itself uses"
            ));
        }
        Ok(SessionPersistence {
            name,
            kind,
            absolute_timeout,
            idle_timeout,
        })
    }
}

/// Headers a session must not be carried in: HTTP's own and those the
/// gateway sets.
fn http_reserved(name: &str) -> bool {
    [
        "host",
        "connection",
        "content-length",
        "transfer-encoding",
        "cookie",
        "set-cookie",
        "te",
        "upgrade",
        "keep-alive",
        "proxy-connection",
    ]
    .iter()
    .any(|r| r.eq_ignore_ascii_case(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<SessionPersistence, String> {
        let spec: SessionPersistenceSpec = serde_norway::from_str(yaml).unwrap();
        SessionPersistence::parse(&spec, "ns/route rule 0", "sp")
    }

    #[test]
    fn defaults_are_a_session_cookie_with_a_stable_generated_name() {
        let sp = parse("{}").unwrap();
        assert_eq!(sp.name, default_name("ns/route rule 0"));
        assert!(sp.name.starts_with("gw-session-"));
        assert_eq!(
            sp.kind,
            SessionKind::Cookie {
                path: None,
                lifetime: CookieLifetime::Session
            }
        );
        assert_ne!(
            default_name("ns/route rule 0"),
            default_name("ns/route rule 1")
        );
    }

    #[test]
    fn both_api_shapes_parse() {
        let old = parse(
            "{sessionName: s, type: Cookie, absoluteTimeout: 1h, idleTimeout: 10m, cookieConfig: {lifetimeType: Permanent}}",
        )
        .unwrap();
        assert_eq!(old.name, "s");
        assert_eq!(old.idle_timeout, Some(Duration::from_secs(600)));
        assert!(matches!(
            old.kind,
            SessionKind::Cookie {
                lifetime: CookieLifetime::Permanent,
                ..
            }
        ));
        let new = parse("{type: Header, header: {name: x-session}}").unwrap();
        assert_eq!(
            (new.name.as_str(), new.kind),
            ("x-session", SessionKind::Header)
        );
        let path = parse("{cookie: {name: c, path: /shop}}").unwrap();
        assert_eq!(
            path.kind,
            SessionKind::Cookie {
                path: Some("/shop".into()),
                lifetime: CookieLifetime::Session
            }
        );
    }

    #[test]
    fn invalid_configurations_name_the_field() {
        for (yaml, field) in [
            ("{cookie: {lifetimeType: Permanent}}", "sp.absoluteTimeout"),
            ("{type: Header, cookie: {name: a}}", "sp.cookie"),
            ("{type: Cookie, header: {name: a}}", "sp.header"),
            ("{type: Sticky}", "sp.type"),
            ("{absoluteTimeout: 1d}", "sp.absoluteTimeout"),
            ("{idleTimeout: 0s}", "sp.idleTimeout"),
            ("{sessionName: 'a b'}", "sp: session name"),
            ("{sessionName: a, cookie: {name: b}}", "sp.sessionName"),
            (
                "{cookie: {lifetimeType: Forever}}",
                "sp.cookie.lifetimeType",
            ),
            ("{cookie: {path: 'x;y'}}", "sp.cookie.path"),
            ("{type: Header, header: {name: Cookie}}", "sp.header.name"),
            (
                "{cookie: {}, cookieConfig: {}}",
                "sp: cookie and cookieConfig",
            ),
        ] {
            let e = parse(yaml).expect_err(yaml);
            assert!(e.starts_with(field), "{yaml}: {e}");
        }
    }
}
