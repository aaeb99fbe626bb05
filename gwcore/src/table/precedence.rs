//! Route precedence: the one ordering of candidate matches.
//!
//! [`Precedence`] is a total order over "this match of this rule of this
//! route, under this hostname". The compiled table sorts its candidate lists
//! with it, the reference matcher in `gwcore::testing` takes the minimum with
//! it, and `explain` asks it on which step two candidates differ. There is no
//! other comparator.

use std::cmp::Ordering;
use std::sync::Arc;

use serde::Serialize;

/// How specific the route hostname that matched the request's Host is.
///
/// Spec (HTTPRoute `hostnames`): "precedence must be given to rules from the
/// HTTPRoute with the largest number of: Characters in a matching
/// non-wildcard hostname. Characters in a matching hostname."
///
/// A route without hostnames (it accepts any host its listener accepts)
/// ranks `(0, 0)`, below every route that names a hostname.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize)]
pub struct HostRank {
    /// Length of the matching hostname when it is precise, else 0.
    pub precise_chars: u16,
    /// Length of the matching hostname (wildcards included), 0 for none.
    pub chars: u16,
}

impl HostRank {
    /// The rank of a route hostname (precise or `*.` wildcard); `None` for a
    /// route that names no hostname.
    pub fn of(hostname: Option<&str>) -> HostRank {
        match hostname {
            None => HostRank::default(),
            Some(h) => {
                let chars = u16::try_from(h.len()).unwrap_or(u16::MAX);
                let precise_chars = if h.starts_with('*') { 0 } else { chars };
                HostRank {
                    precise_chars,
                    chars,
                }
            }
        }
    }
}

/// The path part of an HTTPRoute match, ranked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum PathRank {
    /// An `Exact` path match.
    Exact,
    /// A `PathPrefix` match; the length of the value without its trailing
    /// `/` (the spec ignores a trailing `/` when matching, so `/foo/` and
    /// `/foo` are the same prefix and rank the same).
    Prefix(u16),
    /// A `RegularExpression` match. The spec leaves their precedence to the
    /// implementation; gwcore ranks every regex path below every Exact and
    /// PathPrefix match, and regexes among themselves by the later steps
    /// (method, headers, ...) only.
    RegularExpression,
}

/// The part of a match's rank that depends on the route family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum MatchRank {
    /// An HTTPRoute match.
    Http {
        /// Path type and length.
        path: PathRank,
        /// Whether the match names a method.
        method: bool,
        /// Number of header matches (after dropping repeated names).
        headers: u8,
        /// Number of query parameter matches (after dropping repeated names).
        query_params: u8,
    },
    /// A GRPCRoute match.
    Grpc {
        /// Characters of an `Exact` service match (0 for none or regex).
        service_chars: u16,
        /// Characters of an `Exact` method match (0 for none or regex).
        method_chars: u16,
        /// Number of header matches.
        headers: u8,
    },
}

/// A Kubernetes `creationTimestamp`, ordered by instant.
///
/// RFC 3339 strings do not sort as strings once fractions or offsets appear,
/// so they are parsed; an unparsable value sorts after every parsable one
/// (by its text), and a missing one before all (the oldest).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub enum CreationTime {
    /// No timestamp: treated as the oldest.
    Unknown,
    /// Seconds since the epoch and nanoseconds.
    At(i64, u32),
    /// A value that does not parse as a timestamp.
    Unparsable(String),
}

impl CreationTime {
    /// Parses `metadata.creationTimestamp`.
    pub fn parse(ts: Option<&str>) -> CreationTime {
        match ts {
            None => CreationTime::Unknown,
            Some(s) => match parse_rfc3339(s) {
                Some((secs, nanos)) => CreationTime::At(secs, nanos),
                None => CreationTime::Unparsable(s.to_owned()),
            },
        }
    }
}

/// Parses an RFC 3339 timestamp into seconds since the Unix epoch and
/// nanoseconds (`0..1e9`, also before 1970), with [`jiff::Timestamp`].
///
/// jiff reads the Temporal format, a superset of RFC 3339 (it also takes
/// `T00:00Z`, `+01`, `+0100`, basic ISO 8601 and `[UTC]` annotations, as
/// the Kubernetes adapter's `metav1.Time` does); it refuses dates that do
/// not exist (`02-30`) and offsets beyond 25 hours. It reads at most 9
/// fraction digits where RFC 3339 allows any number: longer fractions are
/// cut to nanoseconds here. A leap second (`:60`) reads as `:59`; instants
/// beyond jiff's range (after 9999-12-30T22:00:00Z) do not parse.
fn parse_rfc3339(s: &str) -> Option<(i64, u32)> {
    let t = match s.parse::<jiff::Timestamp>() {
        Ok(t) => t,
        Err(_) => nanosecond_fraction(s)?.parse().ok()?,
    };
    let ns = t.as_nanosecond();
    let secs = i64::try_from(ns.div_euclid(1_000_000_000)).ok()?;
    let nanos = u32::try_from(ns.rem_euclid(1_000_000_000)).ok()?;
    Some((secs, nanos))
}

/// `s` with its seconds fraction cut to 9 digits, when it has more.
fn nanosecond_fraction(s: &str) -> Option<String> {
    let dot = s.find('.')?;
    let digits = s[dot + 1..].bytes().take_while(u8::is_ascii_digit).count();
    (digits > 9).then(|| format!("{}{}", &s[..dot + 10], &s[dot + 1 + digits..]))
}

/// The route-level tie breakers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct RouteRank {
    /// `metadata.creationTimestamp`.
    pub created: CreationTime,
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

/// The full rank of one candidate match. `a < b` means `a` takes
/// precedence over `b`; the winner of a request is the least matching
/// candidate.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
pub struct Precedence {
    /// The matching route hostname.
    pub host: HostRank,
    /// Path, method, headers, query (HTTP) or service, method, headers (gRPC).
    pub matched: MatchRank,
    /// Creation time and name of the route (shared by all its candidates).
    pub route: Arc<RouteRank>,
    /// Index of the rule in `spec.rules`.
    pub rule: u32,
    /// Index of the match in `rules[].matches`.
    pub match_index: u32,
}

/// The step of the precedence order on which two candidates differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub enum Step {
    /// Characters in a matching non-wildcard hostname.
    PreciseHostname,
    /// Characters in a matching hostname.
    Hostname,
    /// Exact, then PathPrefix, then RegularExpression.
    PathType,
    /// Characters in the PathPrefix.
    PathLength,
    /// Method match.
    Method,
    /// Characters in a matching gRPC service.
    GrpcService,
    /// Characters in a matching gRPC method.
    GrpcMethod,
    /// Number of header matches.
    Headers,
    /// Number of query parameter matches.
    QueryParams,
    /// The route family (HTTPRoute and GRPCRoute rules are never merged; a
    /// GRPCRoute candidate only competes with GRPCRoute candidates).
    Family,
    /// The oldest route.
    CreationTimestamp,
    /// `{namespace}/{name}` in alphabetical order.
    RouteName,
    /// Rule order within the route.
    RuleOrder,
    /// Match order within the rule.
    MatchOrder,
}

impl Step {
    /// A short description for people.
    pub fn describe(self) -> &'static str {
        match self {
            Step::PreciseHostname => "characters in a matching non-wildcard hostname",
            Step::Hostname => "characters in a matching hostname",
            Step::PathType => "path match type (Exact, then PathPrefix, then RegularExpression)",
            Step::PathLength => "characters in the PathPrefix",
            Step::Method => "method match",
            Step::GrpcService => "characters in a matching gRPC service",
            Step::GrpcMethod => "characters in a matching gRPC method",
            Step::Headers => "number of header matches",
            Step::QueryParams => "number of query parameter matches",
            Step::Family => "route family",
            Step::CreationTimestamp => "oldest creationTimestamp",
            Step::RouteName => "{namespace}/{name} in alphabetical order",
            Step::RuleOrder => "rule order within the route",
            Step::MatchOrder => "match order within the rule",
        }
    }
}

impl Precedence {
    /// Compares two candidates and names the step that decided.
    /// `Ordering::Less` means `self` takes precedence. On `Equal` the step
    /// is [`Step::MatchOrder`].
    ///
    /// Spec (HTTPRoute `hostnames`): "precedence must be given to rules from
    /// the HTTPRoute with the largest number of: Characters in a matching
    /// non-wildcard hostname. Characters in a matching hostname."
    ///
    /// Spec (HTTPRouteRule `matches`): "Across all rules specified on
    /// applicable Routes, precedence must be given to the match having:
    /// "Exact" path match. "Prefix" path match with largest number of
    /// characters. Method match. Largest number of header matches. Largest
    /// number of query param matches. Note: The precedence of
    /// RegularExpression path matches are implementation-specific. If ties
    /// still exist across multiple Routes, matching precedence MUST be
    /// determined in order of the following criteria, continuing on ties:
    /// The oldest Route based on creation timestamp. The Route appearing
    /// first in alphabetical order by "{namespace}/{name}". If ties still
    /// exist within an HTTPRoute, matching precedence MUST be granted to the
    /// FIRST matching rule (in list order) with a match meeting the above
    /// criteria."
    ///
    /// Spec (GRPCRouteRule `matches`): "Precedence MUST be given to the rule
    /// with the largest number of: Characters in a matching non-wildcard
    /// hostname. Characters in a matching hostname. Characters in a matching
    /// service. Characters in a matching method. Header matches." then the
    /// same route tie breakers. Regex service/method matches count 0
    /// characters here (implementation-specific).
    pub fn compare(&self, other: &Precedence) -> (Ordering, Step) {
        let steps = [
            (
                other.host.precise_chars.cmp(&self.host.precise_chars),
                Step::PreciseHostname,
            ),
            (other.host.chars.cmp(&self.host.chars), Step::Hostname),
        ];
        for (o, s) in steps {
            if o != Ordering::Equal {
                return (o, s);
            }
        }
        const EQ: (Ordering, Step) = (Ordering::Equal, Step::MatchOrder);
        let matched: [(Ordering, Step); 5] = match (&self.matched, &other.matched) {
            (
                MatchRank::Http {
                    path: p1,
                    method: m1,
                    headers: h1,
                    query_params: q1,
                },
                MatchRank::Http {
                    path: p2,
                    method: m2,
                    headers: h2,
                    query_params: q2,
                },
            ) => {
                let type_order = |p: &PathRank| match p {
                    PathRank::Exact => 0u8,
                    PathRank::Prefix(_) => 1,
                    PathRank::RegularExpression => 2,
                };
                let len = |p: &PathRank| match p {
                    PathRank::Prefix(n) => *n,
                    _ => 0,
                };
                [
                    (type_order(p1).cmp(&type_order(p2)), Step::PathType),
                    (len(p2).cmp(&len(p1)), Step::PathLength),
                    (m2.cmp(m1), Step::Method),
                    (h2.cmp(h1), Step::Headers),
                    (q2.cmp(q1), Step::QueryParams),
                ]
            }
            (
                MatchRank::Grpc {
                    service_chars: s1,
                    method_chars: m1,
                    headers: h1,
                },
                MatchRank::Grpc {
                    service_chars: s2,
                    method_chars: m2,
                    headers: h2,
                },
            ) => [
                (s2.cmp(s1), Step::GrpcService),
                (m2.cmp(m1), Step::GrpcMethod),
                (h2.cmp(h1), Step::Headers),
                EQ,
                EQ,
            ],
            // Never compared in the table: families are matched apart.
            (MatchRank::Grpc { .. }, MatchRank::Http { .. }) => {
                [(Ordering::Less, Step::Family), EQ, EQ, EQ, EQ]
            }
            (MatchRank::Http { .. }, MatchRank::Grpc { .. }) => {
                [(Ordering::Greater, Step::Family), EQ, EQ, EQ, EQ]
            }
        };
        for (o, s) in matched {
            if o != Ordering::Equal {
                return (o, s);
            }
        }
        let rest = [
            (
                self.route.created.cmp(&other.route.created),
                Step::CreationTimestamp,
            ),
            (
                (&*self.route.namespace, &*self.route.name)
                    .cmp(&(&*other.route.namespace, &*other.route.name)),
                Step::RouteName,
            ),
            (self.rule.cmp(&other.rule), Step::RuleOrder),
            (self.match_index.cmp(&other.match_index), Step::MatchOrder),
        ];
        for (o, s) in rest {
            if o != Ordering::Equal {
                return (o, s);
            }
        }
        (Ordering::Equal, Step::MatchOrder)
    }
}

impl Ord for Precedence {
    fn cmp(&self, other: &Self) -> Ordering {
        self.compare(other).0
    }
}

impl PartialOrd for Precedence {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn http(path: PathRank, method: bool, headers: u8, query_params: u8) -> MatchRank {
        MatchRank::Http {
            path,
            method,
            headers,
            query_params,
        }
    }

    fn prec(
        host: Option<&str>,
        m: MatchRank,
        ts: Option<&str>,
        ns: &str,
        name: &str,
        rule: u32,
    ) -> Precedence {
        Precedence {
            host: HostRank::of(host),
            matched: m,
            route: Arc::new(RouteRank {
                created: CreationTime::parse(ts),
                namespace: ns.into(),
                name: name.into(),
            }),
            rule,
            match_index: 0,
        }
    }

    #[test]
    fn spec_order_row_by_row() {
        let base = http(PathRank::Prefix(4), false, 0, 0);
        let rows: Vec<(&str, Precedence, Precedence, Step)> = vec![
            (
                "precise hostname beats a longer wildcard",
                prec(Some("a.example.com"), base, None, "n", "z", 0),
                prec(Some("*.foo.example.com"), base, None, "n", "a", 0),
                Step::PreciseHostname,
            ),
            (
                "longer wildcard beats shorter",
                prec(Some("*.foo.example.com"), base, None, "n", "z", 0),
                prec(Some("*.example.com"), base, None, "n", "a", 0),
                Step::Hostname,
            ),
            (
                "any hostname beats none",
                prec(Some("*.com"), base, None, "n", "z", 0),
                prec(None, base, None, "n", "a", 0),
                Step::Hostname,
            ),
            (
                "exact beats a long prefix",
                prec(None, http(PathRank::Exact, false, 0, 0), None, "n", "z", 0),
                prec(
                    None,
                    http(PathRank::Prefix(100), true, 9, 9),
                    None,
                    "n",
                    "a",
                    0,
                ),
                Step::PathType,
            ),
            (
                "prefix beats regex",
                prec(
                    None,
                    http(PathRank::Prefix(0), false, 0, 0),
                    None,
                    "n",
                    "z",
                    0,
                ),
                prec(
                    None,
                    http(PathRank::RegularExpression, true, 9, 9),
                    None,
                    "n",
                    "a",
                    0,
                ),
                Step::PathType,
            ),
            (
                "longer prefix wins",
                prec(
                    None,
                    http(PathRank::Prefix(5), false, 0, 0),
                    None,
                    "n",
                    "z",
                    0,
                ),
                prec(
                    None,
                    http(PathRank::Prefix(4), true, 9, 9),
                    None,
                    "n",
                    "a",
                    0,
                ),
                Step::PathLength,
            ),
            (
                "method beats headers",
                prec(
                    None,
                    http(PathRank::Prefix(4), true, 0, 0),
                    None,
                    "n",
                    "z",
                    0,
                ),
                prec(
                    None,
                    http(PathRank::Prefix(4), false, 9, 9),
                    None,
                    "n",
                    "a",
                    0,
                ),
                Step::Method,
            ),
            (
                "more headers beat more query params",
                prec(
                    None,
                    http(PathRank::Prefix(4), false, 2, 0),
                    None,
                    "n",
                    "z",
                    0,
                ),
                prec(
                    None,
                    http(PathRank::Prefix(4), false, 1, 9),
                    None,
                    "n",
                    "a",
                    0,
                ),
                Step::Headers,
            ),
            (
                "more query params win",
                prec(
                    None,
                    http(PathRank::Prefix(4), false, 1, 2),
                    None,
                    "n",
                    "z",
                    0,
                ),
                prec(
                    None,
                    http(PathRank::Prefix(4), false, 1, 1),
                    None,
                    "n",
                    "a",
                    0,
                ),
                Step::QueryParams,
            ),
            (
                "older route wins",
                prec(None, base, Some("2020-01-01T00:00:00Z"), "n", "z", 3),
                prec(None, base, Some("2020-01-01T00:00:01Z"), "a", "a", 0),
                Step::CreationTimestamp,
            ),
            (
                "fractions and offsets are instants, not strings",
                prec(None, base, Some("2020-01-01T01:00:00+02:00"), "n", "z", 3),
                prec(None, base, Some("2020-01-01T00:00:00.5Z"), "a", "a", 0),
                Step::CreationTimestamp,
            ),
            (
                "then namespace/name",
                prec(None, base, Some("2020-01-01T00:00:00Z"), "a", "z", 3),
                prec(None, base, Some("2020-01-01T00:00:00Z"), "b", "a", 0),
                Step::RouteName,
            ),
            (
                "then rule order",
                prec(None, base, None, "a", "a", 1),
                prec(None, base, None, "a", "a", 2),
                Step::RuleOrder,
            ),
        ];
        for (msg, better, worse, step) in rows {
            assert_eq!(better.compare(&worse), (Ordering::Less, step), "{msg}");
            assert_eq!(
                worse.compare(&better),
                (Ordering::Greater, step),
                "{msg} (reversed)"
            );
        }
    }

    #[test]
    fn grpc_ranks_service_then_method_then_headers() {
        let g = |s, m, h| MatchRank::Grpc {
            service_chars: s,
            method_chars: m,
            headers: h,
        };
        let a = prec(None, g(10, 0, 0), None, "n", "z", 0);
        let b = prec(None, g(0, 10, 5), None, "n", "a", 0);
        assert_eq!(a.compare(&b), (Ordering::Less, Step::GrpcService));
        let c = prec(None, g(10, 4, 0), None, "n", "z", 0);
        assert_eq!(c.compare(&a), (Ordering::Less, Step::GrpcMethod));
    }

    #[test]
    fn timestamps_parse() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some((0, 0)));
        assert_eq!(
            parse_rfc3339("1970-01-02T00:00:01.25Z"),
            Some((86_401, 250_000_000))
        );
        assert_eq!(
            parse_rfc3339("2000-03-01T00:00:00Z"),
            Some((951_868_800, 0))
        );
        assert_eq!(parse_rfc3339("1970-01-01T02:00:00+02:00"), Some((0, 0)));
        assert_eq!(parse_rfc3339("yesterday"), None);
        assert_eq!(parse_rfc3339("2020-13-01T00:00:00Z"), None);
        assert!(CreationTime::parse(None) < CreationTime::parse(Some("1900-01-01T00:00:00Z")));
    }

    #[test]
    fn timestamps_parse_every_rfc3339_form() {
        let epoch = Some((0, 0));
        for s in [
            "1970-01-01t00:00:00z",
            "1970-01-01 00:00:00Z",
            "1970-01-01T00:00:00-00:00",
            "1969-12-31T23:00:00-01:00",
            "1970-01-01T00:00:00.000000000000Z",
        ] {
            assert_eq!(parse_rfc3339(s), epoch, "{s}");
        }
        // Before 1970 the nanoseconds still count up from the second.
        assert_eq!(
            parse_rfc3339("1969-12-31T23:59:59.25Z"),
            Some((-1, 250_000_000))
        );
        // More than 9 fraction digits: cut, not refused.
        assert_eq!(
            parse_rfc3339("1970-01-01T00:00:01.1234567899+00:00"),
            Some((1, 123_456_789))
        );
        assert_eq!(
            parse_rfc3339("0000-01-01T00:00:00Z"),
            Some((-62_167_219_200, 0))
        );
        for s in [
            "2021-02-29T00:00:00Z",
            "2020-01-01T00:00:00.Z",
            "2020-01-01T00:00:00",
        ] {
            assert_eq!(parse_rfc3339(s), None, "{s}");
        }
    }

    #[test]
    fn unparsable_sorts_after_every_instant_by_text() {
        let (a, b) = (
            CreationTime::parse(Some("a")),
            CreationTime::parse(Some("b")),
        );
        assert_eq!(a, CreationTime::Unparsable("a".into()));
        assert!(CreationTime::parse(Some("9999-12-30T22:00:00Z")) < a);
        assert!(a < b);
        assert_eq!(CreationTime::parse(None), CreationTime::Unknown);
    }
}
