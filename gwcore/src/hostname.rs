//! Hostnames: syntax, wildcard matching and intersection.
//!
//! Spec (`Hostname` type): "Hostname is the fully qualified domain name of a
//! network host. [...] Hostname can be "precise" which is a domain name
//! without the terminating dot of a network host (e.g. "foo.example.com") or
//! "wildcard", which is a domain name prefixed with a single wildcard label
//! (e.g. `*.example.com`)." and "a wildcard label must appear by itself as
//! the first label." IP addresses are not allowed.
//!
//! Spec (HTTPRoute `hostnames`): "The wildcard character `*` ... matches one
//! or more DNS labels"; `*.example.com` never matches `example.com`.

/// Whether `h` is a valid Gateway API hostname (precise or wildcard).
pub fn is_valid(h: &str) -> bool {
    if h.is_empty() || h.len() > 253 {
        return false;
    }
    let rest = match h.strip_prefix("*.") {
        Some(r) => r,
        None if h == "*" => return false,
        None => h,
    };
    if rest.is_empty() {
        return false;
    }
    // No IP addresses.
    if rest.parse::<std::net::Ipv4Addr>().is_ok() {
        return false;
    }
    rest.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    })
}

/// Whether `h` is a wildcard hostname.
pub fn is_wildcard(h: &str) -> bool {
    h.starts_with("*.")
}

/// Whether the concrete host `host` (lowercase, no port) matches `pattern`
/// (precise or wildcard). A wildcard matches one or more labels, never the
/// apex.
pub fn matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix('*') {
        Some(suffix) => host.len() > suffix.len() && host.ends_with(suffix),
        None => pattern == host,
    }
}

/// The intersection of a listener hostname and a route hostname, as the spec
/// defines for attachment: `None` when they share no host, otherwise the more
/// specific of the two.
///
/// Spec (HTTPRoute `hostnames`): "A Listener with `test.example.com` as the
/// hostname matches HTTPRoutes that have either not specified any hostnames,
/// or have specified at least one of `test.example.com` or `*.example.com`.
/// A Listener with `*.example.com` as the hostname matches HTTPRoutes that
/// have either not specified any hostnames or have specified at least one
/// hostname that matches the Listener hostname. For example,
/// `*.example.com`, `test.example.com`, and `foo.test.example.com` would all
/// match."
pub fn intersect<'a>(listener: &'a str, route: &'a str) -> Option<&'a str> {
    match (is_wildcard(listener), is_wildcard(route)) {
        (false, false) => (listener == route).then_some(route),
        (false, true) => matches(route, listener).then_some(listener),
        (true, false) => matches(listener, route).then_some(route),
        (true, true) => {
            // The longer wildcard is the narrower one; they intersect when it
            // lies within the shorter.
            let (l, r) = (&listener[1..], &route[1..]);
            if r.ends_with(l) {
                Some(route)
            } else if l.ends_with(r) {
                Some(listener)
            } else {
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_never_matches_apex() {
        assert!(!matches("*.example.com", "example.com"));
        assert!(matches("*.example.com", "a.example.com"));
        assert!(matches("*.example.com", "a.b.example.com"));
        assert!(!matches("*.example.com", "aexample.com"));
    }

    #[test]
    fn intersection_picks_the_narrower() {
        assert_eq!(
            intersect("*.example.com", "foo.example.com"),
            Some("foo.example.com")
        );
        assert_eq!(
            intersect("foo.example.com", "*.example.com"),
            Some("foo.example.com")
        );
        assert_eq!(
            intersect("*.example.com", "*.foo.example.com"),
            Some("*.foo.example.com")
        );
        assert_eq!(
            intersect("*.foo.example.com", "*.example.com"),
            Some("*.foo.example.com")
        );
        assert_eq!(intersect("*.example.com", "example.com"), None);
        assert_eq!(intersect("*.example.com", "*.example.net"), None);
        assert_eq!(intersect("a.com", "b.com"), None);
    }

    #[test]
    fn syntax() {
        for ok in ["example.com", "*.example.com", "a-b.c", "localhost"] {
            assert!(is_valid(ok), "{ok}");
        }
        for bad in [
            "",
            "*",
            "Example.com",
            "a..b",
            "-a.com",
            "*.*.com",
            "foo.*.com",
            "1.2.3.4",
            "a_b.com",
            "example.com.",
        ] {
            assert!(!is_valid(bad), "{bad}");
        }
    }
}
