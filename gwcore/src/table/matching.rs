//! Compiled match conditions: method, headers, query parameters, regex
//! paths, gRPC service/method.
//!
//! Regular expressions are Rust `regex` (RE2-like: no backreferences, linear
//! time), anchored at both ends (`^(?:...)$`: a regex must match the whole
//! value, as the spec's Exact does) and limited to
//! [`REGEX_SIZE_LIMIT`] bytes of compiled program. A regex that does not
//! compile matches nothing, and is listed in the table's problems.

use crate::values::MatchType;
use http::{HeaderName, Method};
use regex::bytes::{Regex, RegexBuilder};

use crate::model::{GrpcRouteMatch, HttpHeaderMatch};

use super::request::RequestHead;

/// The compiled size limit of one regular expression (64 KiB).
pub const REGEX_SIZE_LIMIT: usize = 1 << 16;

/// A value of a route that the table cannot compile (a regular expression,
/// a header name or value): the part it belongs to answers 500 or never
/// matches, and the message says why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub(crate) String);

/// Compiles an anchored, size-limited regex.
pub fn compile_regex(pattern: &str) -> Result<Regex, InvalidValue> {
    RegexBuilder::new(&format!("^(?:{pattern})$"))
        .size_limit(REGEX_SIZE_LIMIT)
        .build()
        .map_err(|e| InvalidValue(format!("invalid regular expression {pattern:?}: {e}")))
}

/// How a value is compared.
#[derive(Debug, Clone)]
pub(crate) enum ValueMatch {
    Exact(Box<[u8]>),
    Regex(Regex),
    /// Invalid configuration: matches nothing.
    Never,
}

impl ValueMatch {
    fn compile(type_: Option<&MatchType>, value: &str, problems: &mut Vec<String>) -> ValueMatch {
        match type_.unwrap_or(&MatchType::Exact) {
            MatchType::Exact => ValueMatch::Exact(value.as_bytes().into()),
            MatchType::RegularExpression => compile_regex(value).map_or_else(
                |e| {
                    problems.push(e.to_string());
                    ValueMatch::Never
                },
                ValueMatch::Regex,
            ),
            other => {
                problems.push(format!("match type {other:?} is not supported"));
                ValueMatch::Never
            }
        }
    }

    #[inline]
    pub(crate) fn is_match(&self, v: &[u8]) -> bool {
        match self {
            ValueMatch::Exact(e) => **e == *v,
            ValueMatch::Regex(r) => r.is_match(v),
            ValueMatch::Never => false,
        }
    }
}

/// Drops repeated names, keeping the first. Spec: "If multiple entries
/// specify equivalent header names, only the first entry with an equivalent
/// name MUST be considered for a match."
pub(crate) fn dedup_by_name(
    list: &[HttpHeaderMatch],
    case_insensitive: bool,
) -> Vec<&HttpHeaderMatch> {
    let mut seen: Vec<String> = Vec::new();
    let mut out = Vec::new();
    for m in list {
        let key = if case_insensitive {
            m.name.to_ascii_lowercase()
        } else {
            m.name.clone()
        };
        if !seen.contains(&key) {
            seen.push(key);
            out.push(m);
        }
    }
    out
}

/// The gRPC service/method condition.
#[derive(Debug, Clone)]
pub(crate) struct GrpcCond {
    service: Option<ValueMatch>,
    method: Option<ValueMatch>,
}

impl GrpcCond {
    /// The service and method when both are Exact.
    pub(crate) fn exact_parts(&self) -> Option<(&str, &str)> {
        match (&self.service, &self.method) {
            (Some(ValueMatch::Exact(s)), Some(ValueMatch::Exact(m))) => {
                Some((std::str::from_utf8(s).ok()?, std::str::from_utf8(m).ok()?))
            }
            _ => None,
        }
    }
}

/// Splits a gRPC path `/{service}/{method}`.
pub(crate) fn grpc_parts(path: &str) -> Option<(&str, &str)> {
    let (service, method) = path.strip_prefix('/')?.split_once('/')?;
    if service.is_empty() || method.is_empty() || method.contains('/') {
        return None;
    }
    Some((service, method))
}

/// Everything but the path trie position that a candidate checks. Most
/// matches have no condition besides the path (and maybe a method), so the
/// rest lives behind one pointer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Conditions {
    pub(crate) method: Option<Method>,
    pub(crate) extra: Option<Box<Extra>>,
}

/// The rarer conditions.
#[derive(Debug, Clone, Default)]
pub(crate) struct Extra {
    pub(crate) headers: Box<[(HeaderName, ValueMatch)]>,
    pub(crate) queries: Box<[(Box<str>, ValueMatch)]>,
    pub(crate) path_regex: Option<ValueMatch>,
    pub(crate) grpc: Option<GrpcCond>,
}

impl Extra {
    fn boxed(self) -> Option<Box<Extra>> {
        let empty = self.headers.is_empty()
            && self.queries.is_empty()
            && self.path_regex.is_none()
            && self.grpc.is_none();
        (!empty).then(|| Box::new(self))
    }
}

impl Conditions {
    /// Conditions made of `extra` only (for `explain`).
    pub(crate) fn only(extra: Extra) -> Conditions {
        Conditions {
            method: None,
            extra: extra.boxed(),
        }
    }

    pub(crate) fn headers(&self) -> &[(HeaderName, ValueMatch)] {
        self.extra.as_ref().map_or(&[], |e| &e.headers)
    }

    pub(crate) fn queries(&self) -> &[(Box<str>, ValueMatch)] {
        self.extra.as_ref().map_or(&[], |e| &e.queries)
    }

    pub(crate) fn path_regex(&self) -> Option<&ValueMatch> {
        self.extra.as_ref().and_then(|e| e.path_regex.as_ref())
    }

    pub(crate) fn grpc(&self) -> Option<&GrpcCond> {
        self.extra.as_ref().and_then(|e| e.grpc.as_ref())
    }

    /// HTTP conditions of one match (the path is checked by the trie unless
    /// it is a regex).
    pub(crate) fn http(
        method: Option<&str>,
        headers: &[HttpHeaderMatch],
        queries: &[HttpHeaderMatch],
        path_regex: Option<&str>,
        problems: &mut Vec<String>,
    ) -> Conditions {
        let method = method.map(|m| {
            Method::from_bytes(m.as_bytes()).unwrap_or_else(|_| {
                problems.push(format!("invalid method {m:?}"));
                // A method no request carries.
                Method::from_bytes(b"GWCORE-INVALID-METHOD").unwrap_or(Method::CONNECT)
            })
        });
        let extra = Extra {
            headers: header_conds(headers, problems),
            queries: dedup_by_name(queries, false)
                .into_iter()
                .map(|q| {
                    (
                        q.name.as_str().into(),
                        ValueMatch::compile(q.type_.as_ref(), &q.value, problems),
                    )
                })
                .collect(),
            path_regex: path_regex
                .map(|p| ValueMatch::compile(Some(&MatchType::RegularExpression), p, problems)),
            grpc: None,
        };
        Conditions {
            method,
            extra: extra.boxed(),
        }
    }

    /// gRPC conditions of one match (`None`: every gRPC request).
    pub(crate) fn for_grpc(m: Option<&GrpcRouteMatch>, problems: &mut Vec<String>) -> Conditions {
        let Some(m) = m else {
            return Conditions::only(Extra {
                grpc: Some(GrpcCond {
                    service: None,
                    method: None,
                }),
                ..Default::default()
            });
        };
        let (service, method) = match &m.method {
            None => (None, None),
            Some(mm) => {
                let t = mm.type_.as_ref();
                let c = |v: &Option<String>, problems: &mut Vec<String>| {
                    v.as_deref()
                        .filter(|s| !s.is_empty())
                        .map(|s| ValueMatch::compile(t, s, problems))
                };
                (c(&mm.service, problems), c(&mm.method, problems))
            }
        };
        Conditions::only(Extra {
            headers: header_conds(&m.headers, problems),
            grpc: Some(GrpcCond { service, method }),
            ..Default::default()
        })
    }

    /// Whether `head` satisfies every condition. `path` is the normalized
    /// path.
    #[inline]
    pub(crate) fn matches(&self, head: &RequestHead, path: &str) -> bool {
        if let Some(m) = &self.method
            && m != head.method()
        {
            return false;
        }
        let Some(x) = &self.extra else { return true };
        if let Some(r) = &x.path_regex
            && !r.is_match(path.as_bytes())
        {
            return false;
        }
        if let Some(g) = &x.grpc {
            let Some((service, method)) = grpc_parts(path) else {
                return false;
            };
            if let Some(s) = &g.service
                && !s.is_match(service.as_bytes())
            {
                return false;
            }
            if let Some(m) = &g.method
                && !m.is_match(method.as_bytes())
            {
                return false;
            }
        }
        for (name, vm) in x.headers.iter() {
            match head.header_value(name) {
                Some(v) if vm.is_match(&v) => {}
                _ => return false,
            }
        }
        for (name, vm) in x.queries.iter() {
            match head.query_param(name) {
                Some(v) if vm.is_match(v.as_bytes()) => {}
                _ => return false,
            }
        }
        true
    }
}

fn header_conds(
    headers: &[HttpHeaderMatch],
    problems: &mut Vec<String>,
) -> Box<[(HeaderName, ValueMatch)]> {
    dedup_by_name(headers, true)
        .into_iter()
        .map(|h| match HeaderName::from_bytes(h.name.as_bytes()) {
            Ok(n) => (n, ValueMatch::compile(h.type_.as_ref(), &h.value, problems)),
            Err(_) => {
                problems.push(format!("invalid header name {:?}", h.name));
                (
                    HeaderName::from_static("x-gwcore-invalid"),
                    ValueMatch::Never,
                )
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regexes_are_anchored_and_bounded() {
        let r = compile_regex("/v[0-9]+").unwrap();
        assert!(r.is_match(b"/v12"));
        assert!(!r.is_match(b"/v12/x"), "anchored at the end");
        assert!(!r.is_match(b"/x/v12"), "anchored at the start");
        assert!(compile_regex("(").is_err());
        assert!(compile_regex("a{1000}{1000}").is_err(), "size limit");
    }

    #[test]
    fn grpc_paths() {
        assert_eq!(grpc_parts("/a.B/C"), Some(("a.B", "C")));
        assert_eq!(grpc_parts("/a.B/C/D"), None);
        assert_eq!(grpc_parts("/a.B"), None);
    }
}
