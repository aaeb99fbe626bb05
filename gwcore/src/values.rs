//! Typed spec values: every Gateway API enum as a Rust enum, and durations
//! parsed once.
//!
//! The model ([`crate::model`]) reads these straight from manifests, so a
//! spec value is parsed at the edge and compared as an enum everywhere
//! after. A value this version of gwcore does not know is kept as
//! `Other(text)`: it round-trips unchanged, and the engine gives it the
//! spec's outcome for an unsupported value (an unknown listener protocol is
//! `UnsupportedProtocol`, an unknown filter type `UnsupportedValue`...)
//! instead of failing to read the object.

use std::fmt;

use serde::{Deserialize, Serialize};

macro_rules! spec_enum {
    (
        $(#[$meta:meta])*
        $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident = $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        #[non_exhaustive]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
            /// A value gwcore does not know, as written.
            Other(String),
        }

        impl $name {
            /// Parses a value as spelled in manifests.
            pub fn parse(text: &str) -> $name {
                match text {
                    $( $text => $name::$variant, )+
                    other => $name::Other(other.to_owned()),
                }
            }

            /// The value as spelled in manifests.
            pub fn as_str(&self) -> &str {
                match self {
                    $( $name::$variant => $text, )+
                    $name::Other(text) => text,
                }
            }

            /// Whether gwcore knows the value.
            pub fn is_known(&self) -> bool {
                !matches!(self, $name::Other(_))
            }
        }

        impl Default for $name {
            /// An empty value (`Other("")`): what a missing required field
            /// reads as, for validation to refuse.
            fn default() -> $name {
                $name::Other(String::new())
            }
        }

        impl From<&str> for $name {
            fn from(text: &str) -> $name {
                $name::parse(text)
            }
        }

        impl From<String> for $name {
            fn from(text: String) -> $name {
                $name::parse(&text)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<$name, D::Error> {
                let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
                Ok($name::parse(&text))
            }
        }
    };
}

spec_enum! {
    /// `Listener.protocol`.
    ProtocolType {
        /// `HTTP`
        Http = "HTTP",
        /// `HTTPS`
        Https = "HTTPS",
        /// `TLS`
        Tls = "TLS",
        /// `TCP`
        Tcp = "TCP",
        /// `UDP`
        Udp = "UDP",
    }
}

spec_enum! {
    /// `Listener.tls.mode`.
    TlsModeType {
        /// `Terminate` (the default).
        Terminate = "Terminate",
        /// `Passthrough`
        Passthrough = "Passthrough",
    }
}

spec_enum! {
    /// `allowedRoutes.namespaces.from`.
    FromNamespaces {
        /// `All`
        All = "All",
        /// `Same` (the default).
        Same = "Same",
        /// `Selector`
        Selector = "Selector",
        /// `None` (ListenerSets' `allowedListeners`).
        None = "None",
    }
}

spec_enum! {
    /// `HTTPPathMatch.type`.
    PathMatchType {
        /// `Exact`
        Exact = "Exact",
        /// `PathPrefix` (the default).
        PathPrefix = "PathPrefix",
        /// `RegularExpression`
        RegularExpression = "RegularExpression",
    }
}

spec_enum! {
    /// The `type` of a header, query parameter or gRPC method match.
    MatchType {
        /// `Exact` (the default).
        Exact = "Exact",
        /// `RegularExpression`
        RegularExpression = "RegularExpression",
    }
}

spec_enum! {
    /// `HTTPRouteFilter.type` (and GRPCRouteFilter's).
    FilterType {
        /// `RequestHeaderModifier`
        RequestHeaderModifier = "RequestHeaderModifier",
        /// `ResponseHeaderModifier`
        ResponseHeaderModifier = "ResponseHeaderModifier",
        /// `RequestRedirect`
        RequestRedirect = "RequestRedirect",
        /// `URLRewrite`
        UrlRewrite = "URLRewrite",
        /// `RequestMirror`
        RequestMirror = "RequestMirror",
        /// `CORS`
        Cors = "CORS",
        /// `ExternalAuth` (experimental).
        ExternalAuth = "ExternalAuth",
        /// `ExtensionRef`
        ExtensionRef = "ExtensionRef",
    }
}

spec_enum! {
    /// `ExternalAuth` filter `protocol` (GEP-1494): how the gateway talks
    /// to the authorization service.
    ExternalAuthProtocol {
        /// `HTTP`: the request's method, path and chosen headers go to the
        /// service; `200` allows.
        Http = "HTTP",
        /// `GRPC`: Envoy's `envoy.service.auth.v3.Authorization/Check`.
        Grpc = "GRPC",
    }
}

spec_enum! {
    /// `HTTPPathModifier.type`.
    PathModifierType {
        /// `ReplaceFullPath`
        ReplaceFullPath = "ReplaceFullPath",
        /// `ReplacePrefixMatch`
        ReplacePrefixMatch = "ReplacePrefixMatch",
    }
}

spec_enum! {
    /// `BackendTLSPolicy` `subjectAltNames[].type`.
    SanType {
        /// `Hostname`
        Hostname = "Hostname",
        /// `URI`
        Uri = "URI",
    }
}

spec_enum! {
    /// `frontendValidation.mode` of a Gateway's client certificate
    /// validation.
    FrontendValidationMode {
        /// `AllowValidOnly` (the default).
        AllowValidOnly = "AllowValidOnly",
        /// `AllowInsecureFallback`
        AllowInsecureFallback = "AllowInsecureFallback",
    }
}

spec_enum! {
    /// `GatewaySpecAddress.type` (and a status address's).
    AddressType {
        /// `IPAddress` (the default).
        IpAddress = "IPAddress",
        /// `Hostname`
        Hostname = "Hostname",
        /// `NamedAddress`
        NamedAddress = "NamedAddress",
    }
}

spec_enum! {
    /// `BackendTLSPolicy` `validation.wellKnownCACertificates`.
    WellKnownCaCertificates {
        /// `System`
        System = "System",
    }
}

spec_enum! {
    /// `Gateway.spec.defaultScope` and a route's `spec.useDefaultGateways`
    /// (GEP-3793, Default Gateways).
    GatewayDefaultScope {
        /// `All`: a Gateway claims every route asking for a default
        /// Gateway; a route asks to be claimed by every such Gateway.
        All = "All",
        /// `None`: as if unset.
        None = "None",
    }
}

spec_enum! {
    /// `sessionPersistence.type` (GEP-1619).
    SessionPersistenceType {
        /// `Cookie` (the default).
        Cookie = "Cookie",
        /// `Header`
        Header = "Header",
    }
}

spec_enum! {
    /// `sessionPersistence.cookie.lifetimeType` (GEP-1619).
    CookieLifetimeType {
        /// `Session` (the default): no `Max-Age`; the browser drops the
        /// cookie when its session ends.
        Session = "Session",
        /// `Permanent`: `Max-Age` from `absoluteTimeout`.
        Permanent = "Permanent",
    }
}

/// A Gateway API `Duration` (GEP-2257): `1h`, `30s`, `500ms`, `1h30m`...
/// parsed once when read. The text is kept as written (it round-trips);
/// [`Duration::value`] is `None` when the text is not a valid duration,
/// which validation refuses as the API server's pattern does.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Duration {
    text: String,
    value: Option<std::time::Duration>,
}

impl Duration {
    /// Parses a duration.
    pub fn parse(text: &str) -> Duration {
        Duration {
            text: text.to_owned(),
            value: parse_duration(text),
        }
    }

    /// The duration, when the text is valid.
    pub fn value(&self) -> Option<std::time::Duration> {
        self.value
    }

    /// The text as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }
}

impl From<&str> for Duration {
    fn from(text: &str) -> Duration {
        Duration::parse(text)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Duration {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = std::borrow::Cow::<'de, str>::deserialize(d)?;
        Ok(Duration::parse(&text))
    }
}

/// Parses a Gateway API duration as the CRDs' pattern admits it
/// (`^([0-9]{1,5}(h|m|s|ms)){1,4}$`, GEP-2257): one to four
/// `<digits><unit>` pairs, units `h`, `m`, `s`, `ms`.
fn parse_duration(s: &str) -> Option<std::time::Duration> {
    let mut rest = s;
    let mut parts = 0;
    let mut total_ms: u64 = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 || digits > 5 {
            return None;
        }
        let n: u64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        // `ms` before `m`: the longer unit name first.
        let (unit_ms, len) = if rest.starts_with("ms") {
            (1, 2)
        } else {
            match rest.bytes().next()? {
                b'h' => (3_600_000, 1),
                b'm' => (60_000, 1),
                b's' => (1_000, 1),
                _ => return None,
            }
        };
        total_ms += n * unit_ms;
        rest = &rest[len..];
        parts += 1;
    }
    (1..=4)
        .contains(&parts)
        .then(|| std::time::Duration::from_millis(total_ms))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enums_round_trip_known_and_unknown_values() {
        assert_eq!(ProtocolType::parse("HTTPS"), ProtocolType::Https);
        let custom = ProtocolType::parse("example.com/quic");
        assert_eq!(custom.as_str(), "example.com/quic");
        assert!(!custom.is_known());
        let json = serde_json::to_string(&FilterType::UrlRewrite).unwrap();
        assert_eq!(json, "\"URLRewrite\"");
        let back: FilterType = serde_json::from_str("\"Teleport\"").unwrap();
        assert_eq!(back, FilterType::Other("Teleport".into()));
    }

    #[test]
    fn durations() {
        let d = |s: &str| Duration::parse(s).value();
        assert_eq!(d("1h30m"), Some(std::time::Duration::from_secs(5400)));
        assert_eq!(d("500ms"), Some(std::time::Duration::from_millis(500)));
        assert_eq!(d("1s500ms"), Some(std::time::Duration::from_millis(1500)));
        assert_eq!(d("0s"), Some(std::time::Duration::ZERO));
        // The pattern lets units repeat and come in any order.
        assert_eq!(d("1s2s"), Some(std::time::Duration::from_secs(3)));
        assert_eq!(d("1m1h"), Some(std::time::Duration::from_secs(3660)));
        for bad in [
            "",
            "1.5s",
            "1s2s3s4s5s",
            "s",
            "123456s",
            "10",
            "1d",
            "-1s",
            "1 s",
        ] {
            assert_eq!(d(bad), None, "{bad}");
        }
        assert_eq!(Duration::parse("1.5s").as_str(), "1.5s");
    }
}
