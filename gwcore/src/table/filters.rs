//! HTTPRoute and GRPCRoute filters as pure functions over `http` types.
//!
//! Each filter of the model is compiled once ([`Filter::compile`]) into a
//! form that needs no parsing per request: header names and values are
//! checked `http` types. A filter that cannot be compiled (unknown type,
//! unresolved `ExtensionRef`, invalid header name) becomes [`Filter::Unsupported`]; the
//! rule then answers 500 — spec: "If a reference to a custom filter type
//! cannot be resolved, the filter MUST NOT be skipped. Instead, requests
//! that would have been processed by that filter MUST receive a HTTP error
//! response." — and the table lists it in [`super::Table::problems`].

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, StatusCode};

use std::sync::Arc;

use crate::attachments::{BackendError, BackendTarget};
use crate::extension::{ExtensionKind, ExtensionObject};
use crate::model::{HeaderModifier, HttpPathModifier, HttpRouteFilter};
use crate::values::{ExternalAuthProtocol, FilterType, PathModifierType};

use super::matching::InvalidValue;

use super::path::prefix_matches;
use super::request::RequestHead;

/// A compiled filter.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Filter {
    /// `RequestHeaderModifier`.
    RequestHeaders(HeaderOps),
    /// `ResponseHeaderModifier`.
    ResponseHeaders(HeaderOps),
    /// `RequestRedirect`.
    Redirect(Redirect),
    /// `URLRewrite`.
    Rewrite(Rewrite),
    /// `CORS`.
    Cors(Cors),
    /// `RequestMirror`: the resolved targets are in the rule's mirrors.
    Mirror,
    /// `ExtensionRef` to an object of a kind an extension registered,
    /// resolved: the data plane runs the extension's filter here, in rule
    /// order among the built-in filters (one that cannot answers 500).
    Extension(ExtensionFilter),
    /// `ExternalAuth`, its authorization service resolved: the data plane
    /// asks the service here, in rule order, and forwards only what it
    /// allows (an unresolved one is [`Filter::Unsupported`]: 500).
    ExternalAuth(ExternalAuth),
    /// A filter gwcore cannot apply; requests it would process get 500.
    Unsupported(String),
}

impl Filter {
    /// Whether the data plane runs this filter itself, in its place among
    /// the others: an extension's ([`Filter::Extension`]), or
    /// [`Filter::ExternalAuth`], which waits on a service. The others are
    /// the table's pure functions ([`super::Forward::apply_request_filter`]).
    pub fn runs_in_data_plane(&self) -> bool {
        matches!(self, Filter::Extension(_) | Filter::ExternalAuth(_))
    }
}

/// An `ExtensionRef` filter, resolved: the object it names.
#[derive(Debug, Clone)]
pub struct ExtensionFilter {
    object: Arc<ExtensionObject>,
}

impl ExtensionFilter {
    /// The filter's kind.
    pub fn kind(&self) -> ExtensionKind {
        self.object.kind
    }

    /// The object the filter names (its spec is the filter's settings).
    pub fn object(&self) -> &Arc<ExtensionObject> {
        &self.object
    }
}

impl Filter {
    /// Compiles one filter of the model; an `ExtensionRef` is
    /// [`Filter::Unsupported`] (see [`Filter::compile_with`]).
    pub fn compile(f: &HttpRouteFilter) -> Filter {
        Filter::compile_with(f, &[])
    }

    /// Compiles one filter of the model; an `ExtensionRef` becomes
    /// [`Filter::Extension`] when `resolved` (the engine's
    /// [`crate::attachments::HttpRule::extension_refs`]) holds the object it
    /// names, else [`Filter::Unsupported`]; so does an `ExternalAuth` (see
    /// [`Filter::compile_resolved`]).
    pub fn compile_with(f: &HttpRouteFilter, resolved: &[Arc<ExtensionObject>]) -> Filter {
        Filter::compile_resolved(f, resolved, None)
    }

    /// [`Filter::compile_with`], and an `ExternalAuth` filter becomes
    /// [`Filter::ExternalAuth`] with `external_auth`, its authorization
    /// service as the engine resolved it (the entry of
    /// [`crate::attachments::HttpRule::external_auth`] for this filter);
    /// [`Filter::Unsupported`] when that is missing or failed.
    pub fn compile_resolved(
        f: &HttpRouteFilter,
        resolved: &[Arc<ExtensionObject>],
        external_auth: Option<&Result<BackendTarget, BackendError>>,
    ) -> Filter {
        let missing = || Filter::Unsupported(format!("filter {} has no configuration", f.type_));
        match &f.type_ {
            FilterType::RequestHeaderModifier => match &f.request_header_modifier {
                Some(m) => HeaderOps::compile(m).map_or_else(
                    |e| Filter::Unsupported(e.to_string()),
                    Filter::RequestHeaders,
                ),
                None => missing(),
            },
            FilterType::ResponseHeaderModifier => match &f.response_header_modifier {
                Some(m) => HeaderOps::compile(m).map_or_else(
                    |e| Filter::Unsupported(e.to_string()),
                    Filter::ResponseHeaders,
                ),
                None => missing(),
            },
            FilterType::RequestRedirect => match &f.request_redirect {
                Some(r) => Redirect::compile(r).map_or_else(Filter::Unsupported, Filter::Redirect),
                None => missing(),
            },
            FilterType::UrlRewrite => match &f.url_rewrite {
                Some(r) => Rewrite::compile(r).map_or_else(Filter::Unsupported, Filter::Rewrite),
                None => missing(),
            },
            FilterType::Cors => match &f.cors {
                Some(c) => Filter::Cors(Cors::compile(c)),
                None => missing(),
            },
            FilterType::RequestMirror => Filter::Mirror,
            FilterType::ExternalAuth => match (&f.external_auth, external_auth) {
                (None, _) => missing(),
                (Some(_), None) => {
                    Filter::Unsupported("ExternalAuth backendRef is not resolved".to_owned())
                }
                (Some(_), Some(Err(e))) => Filter::Unsupported(e.message.clone()),
                (Some(a), Some(Ok(target))) => ExternalAuth::compile(a, target.clone())
                    .map_or_else(Filter::Unsupported, Filter::ExternalAuth),
            },
            FilterType::ExtensionRef => match &f.extension_ref {
                Some(r) => match resolved
                    .iter()
                    .find(|o| o.kind.is(&r.group, &r.kind) && o.metadata.name == r.name)
                {
                    Some(o) => Filter::Extension(ExtensionFilter { object: o.clone() }),
                    None => Filter::Unsupported(format!(
                        "ExtensionRef {}/{} {} is not resolved",
                        r.group, r.kind, r.name
                    )),
                },
                None => Filter::Unsupported("ExtensionRef without a reference".to_owned()),
            },
            other => {
                Filter::Unsupported(format!("filter type {:?} is not supported", other.as_str()))
            }
        }
    }
}

/// A compiled `ExternalAuth` filter: the authorization service, how to
/// speak to it and what to send it.
///
/// Spec (HTTPExternalAuthFilter): "The external service MUST authenticate
/// the request, and MAY authorize the request as well. If there is any
/// problem communicating with the external service, this filter MUST fail
/// closed."
#[derive(Debug, Clone)]
pub struct ExternalAuth {
    target: BackendTarget,
    protocol: AuthProtocol,
    forward_body: usize,
}

/// The protocol of an [`ExternalAuth`] filter, with its settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum AuthProtocol {
    /// `HTTP`.
    Http(HttpAuth),
    /// `GRPC`: Envoy's `envoy.service.auth.v3.Authorization/Check`.
    Grpc(GrpcAuth),
}

/// `externalAuth.http`, compiled.
#[derive(Debug, Clone)]
pub struct HttpAuth {
    /// The path prefix: starts with `/`, no trailing `/`; empty for none.
    prefix: String,
    allowed_headers: Vec<HeaderName>,
    allowed_response_headers: Vec<HeaderName>,
}

/// `externalAuth.grpc`, compiled.
#[derive(Debug, Clone)]
pub struct GrpcAuth {
    /// Empty: every header.
    allowed_headers: Vec<HeaderName>,
}

/// Header names of a `listType=set` list. A name that is not a valid
/// header name (validation refuses it) can match no header: it is left out.
fn header_names(names: &[String]) -> Vec<HeaderName> {
    names
        .iter()
        .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
        .collect()
}

impl ExternalAuth {
    fn compile(
        a: &crate::model::ExternalAuth,
        target: BackendTarget,
    ) -> Result<ExternalAuth, String> {
        let protocol = match &a.protocol {
            ExternalAuthProtocol::Http => {
                let h = a.http.clone().unwrap_or_default();
                // Spec: "implementations MUST sanitize this input before
                // using it directly": validation held it to the CRD's
                // pattern (path characters and %-escapes); here it becomes
                // one absolute prefix without a trailing slash, so that
                // `prefix + path` is one path.
                let p = h.path.as_deref().unwrap_or("").trim_end_matches('/');
                let prefix = if p.is_empty() || p.starts_with('/') {
                    p.to_owned()
                } else {
                    format!("/{p}")
                };
                if prefix.bytes().any(|b| b == b'?' || b == b'#' || b <= b' ') {
                    return Err(format!("ExternalAuth http.path {p:?} is not a path"));
                }
                AuthProtocol::Http(HttpAuth {
                    prefix,
                    allowed_headers: header_names(&h.allowed_headers),
                    allowed_response_headers: header_names(&h.allowed_response_headers),
                })
            }
            ExternalAuthProtocol::Grpc => AuthProtocol::Grpc(GrpcAuth {
                allowed_headers: header_names(
                    &a.grpc
                        .as_ref()
                        .map(|g| g.allowed_headers.clone())
                        .unwrap_or_default(),
                ),
            }),
            other => {
                return Err(format!(
                    "ExternalAuth protocol {:?} is not supported",
                    other.as_str()
                ));
            }
        };
        let forward_body = a
            .forward_body
            .as_ref()
            .and_then(|b| b.max_size)
            .and_then(|n| usize::try_from(n).ok())
            .unwrap_or(0);
        Ok(ExternalAuth {
            target,
            protocol,
            forward_body,
        })
    }

    /// The authorization service's Service port (with its
    /// BackendTLSPolicy, if any).
    pub fn target(&self) -> &BackendTarget {
        &self.target
    }

    /// The protocol and its settings.
    pub fn protocol(&self) -> &AuthProtocol {
        &self.protocol
    }

    /// At most this many bytes of the request body go to the service
    /// (`forwardBody.maxSize`); 0: no body.
    ///
    /// Spec (`maxSize`): "If the body size is larger than `maxSize`, then
    /// the body sent to the authorization server must be truncated to
    /// `maxSize` bytes." The request itself goes on whole.
    pub fn forward_body(&self) -> usize {
        self.forward_body
    }
}

impl HttpAuth {
    /// The path (and query) of the request to the service for a client
    /// request to `path_and_query`: the filter's `path` prefix before it.
    ///
    /// Spec (`path`): "Path sets the prefix that paths from the client
    /// request will have added when forwarded to the authorization server.
    /// When empty or unspecified, no prefix is added."
    pub fn path(&self, path_and_query: &str) -> String {
        let mut out = String::with_capacity(self.prefix.len() + path_and_query.len() + 1);
        out.push_str(&self.prefix);
        if !path_and_query.starts_with('/') {
            out.push('/');
        }
        out.push_str(path_and_query);
        out
    }

    /// Whether a client request header goes to the service.
    ///
    /// Spec (`allowedHeaders`): "The following headers must always be sent
    /// to the authorization server, regardless of this setting: `Host`,
    /// `Method`, `Path`, `Content-Length`, `Authorization`". Method and
    /// path are the request line's; `Content-Length` is that of the body
    /// the service is sent, so the data plane writes it itself.
    pub fn sends(&self, name: &HeaderName) -> bool {
        *name == header::HOST
            || *name == header::AUTHORIZATION
            || self.allowed_headers.contains(name)
    }

    /// Whether a header of the service's `200` answer is copied into the
    /// request sent on.
    ///
    /// Spec (`allowedResponseHeaders`): "If this list is empty, then all
    /// headers from the authorization server except Authority or Host must
    /// be copied." Headers about the answer's own message rather than the
    /// request (`Content-Length`, `Content-Type`, `Content-Encoding`,
    /// `Transfer-Encoding` and the hop-by-hop ones) are not copied either:
    /// they would misdescribe the client's body.
    pub fn copies_back(&self, name: &HeaderName) -> bool {
        if self.allowed_response_headers.is_empty() {
            !is_message_header(name)
        } else {
            self.allowed_response_headers.contains(name) && *name != header::HOST
        }
    }
}

/// Headers that describe a message itself, or one connection: never copied
/// from an authorization answer into the request.
fn is_message_header(name: &HeaderName) -> bool {
    [
        header::HOST,
        header::CONTENT_LENGTH,
        header::CONTENT_TYPE,
        header::CONTENT_ENCODING,
        header::TRANSFER_ENCODING,
        header::CONNECTION,
        header::TE,
        header::TRAILER,
        header::UPGRADE,
        header::PROXY_AUTHENTICATE,
        header::PROXY_AUTHORIZATION,
    ]
    .contains(name)
        || name.as_str() == "keep-alive"
        || name.as_str() == "proxy-connection"
}

impl GrpcAuth {
    /// Whether a client request header goes to the service.
    ///
    /// Spec (`grpc.allowedHeaders`): "If this list is empty, then all
    /// headers must be sent. If the list has entries, only those entries
    /// must be sent."
    pub fn sends(&self, name: &HeaderName) -> bool {
        self.allowed_headers.is_empty() || self.allowed_headers.contains(name)
    }
}

/// Checks a list of filters; the message of each one that cannot be
/// applied. The engine uses this to set `Accepted`/`ResolvedRefs` reasons.
pub fn check_filters(filters: &[HttpRouteFilter]) -> Vec<String> {
    filters
        .iter()
        .filter_map(|f| match Filter::compile(f) {
            Filter::Unsupported(m) => Some(m),
            _ => None,
        })
        .collect()
}

/// Compiled `set` / `add` / `remove` of a header modifier.
#[derive(Debug, Clone, Default)]
pub struct HeaderOps {
    set: Vec<(HeaderName, HeaderValue)>,
    add: Vec<(HeaderName, HeaderValue)>,
    remove: Vec<HeaderName>,
}

fn header_pair(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), InvalidValue> {
    let n = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| InvalidValue(format!("invalid header name {name:?}")))?;
    let v = HeaderValue::from_str(value)
        .map_err(|_| InvalidValue(format!("invalid value for header {name:?}")))?;
    Ok((n, v))
}

impl HeaderOps {
    /// Compiles a header modifier.
    pub fn compile(m: &HeaderModifier) -> Result<HeaderOps, InvalidValue> {
        Ok(HeaderOps {
            set: m
                .set
                .iter()
                .map(|h| header_pair(&h.name, &h.value))
                .collect::<Result<_, _>>()?,
            add: m
                .add
                .iter()
                .map(|h| header_pair(&h.name, &h.value))
                .collect::<Result<_, _>>()?,
            remove: m
                .remove
                .iter()
                .map(|n| {
                    HeaderName::from_bytes(n.as_bytes())
                        .map_err(|_| InvalidValue(format!("invalid header name {n:?}")))
                })
                .collect::<Result<_, _>>()?,
        })
    }

    /// Applies `set`, then `add`, then `remove`.
    ///
    /// Spec: "Set overwrites the request with the given header (name,
    /// value)"; "Add adds the given header(s) (name, value) to the request
    /// before the action. It appends to any existing values associated with
    /// the header name." — its example turns `my-header: foo` plus
    /// `bar,baz` into `my-header: foo,bar,baz`, one line, which is what
    /// `add` writes.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for (n, v) in &self.set {
            headers.insert(n.clone(), v.clone());
        }
        for (n, v) in &self.add {
            let joined = {
                let existing: Vec<&[u8]> = headers
                    .get_all(n)
                    .iter()
                    .map(HeaderValue::as_bytes)
                    .collect();
                if existing.is_empty() {
                    None
                } else {
                    let mut b = existing.join(&b","[..]);
                    b.push(b',');
                    b.extend_from_slice(v.as_bytes());
                    HeaderValue::from_bytes(&b).ok()
                }
            };
            match joined {
                Some(j) => {
                    headers.insert(n.clone(), j);
                }
                None => {
                    headers.insert(n.clone(), v.clone());
                }
            }
        }
        for n in &self.remove {
            headers.remove(n);
        }
    }
}

/// How a redirect or rewrite changes the path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PathChange {
    /// `ReplaceFullPath`.
    Full(String),
    /// `ReplacePrefixMatch`.
    Prefix(String),
}

impl PathChange {
    fn compile(m: &HttpPathModifier) -> Result<PathChange, String> {
        match &m.type_ {
            PathModifierType::ReplaceFullPath => Ok(PathChange::Full(
                m.replace_full_path.clone().unwrap_or_default(),
            )),
            PathModifierType::ReplacePrefixMatch => Ok(PathChange::Prefix(
                m.replace_prefix_match.clone().unwrap_or_default(),
            )),
            other => Err(format!(
                "path modifier type {:?} is not supported",
                other.as_str()
            )),
        }
    }

    /// The new path for `path`, which matched the PathPrefix `matched`
    /// (`None` for Exact or regex matches: then `ReplacePrefixMatch` leaves
    /// the path as is — the spec allows it only with a PathPrefix match).
    pub fn apply(&self, path: &str, matched: Option<&str>) -> String {
        match self {
            PathChange::Full(p) => {
                if p.is_empty() {
                    "/".to_owned()
                } else {
                    p.clone()
                }
            }
            PathChange::Prefix(r) => match matched {
                Some(m) if prefix_matches(m, path) => replace_prefix(path, m, r),
                _ => path.to_owned(),
            },
        }
    }
}

/// `ReplacePrefixMatch`: replaces the element-wise prefix `prefix` of `path`
/// with `replacement`. Trailing slashes of both are ignored, and the path
/// keeps its own trailing slash; an empty result is `/`.
///
/// Spec table (request, prefix, replacement → result): `/foo/bar`,`/foo`,
/// `/xyz` → `/xyz/bar`; `/foo/bar`,`/foo`,`/xyz/` → `/xyz/bar`; `/foo/`,
/// `/foo`,`/xyz` → `/xyz/`; `/foo/bar`,`/foo`,`` → `/bar`; `/foo`,`/foo`,
/// `` → `/`; `/foo/`,`/foo`,`/` → `/`.
pub fn replace_prefix(path: &str, prefix: &str, replacement: &str) -> String {
    let m = prefix.trim_end_matches('/');
    let rest = path.get(m.len()..).unwrap_or("");
    let r = replacement.trim_end_matches('/');
    let mut out = String::with_capacity(r.len() + rest.len() + 1);
    out.push_str(r);
    out.push_str(rest);
    if out.is_empty() {
        out.push('/');
    } else if !out.starts_with('/') {
        out.insert(0, '/');
    }
    out
}

/// A compiled `RequestRedirect`.
#[derive(Debug, Clone)]
pub struct Redirect {
    scheme: Option<String>,
    hostname: Option<String>,
    path: Option<PathChange>,
    port: Option<u16>,
    status: StatusCode,
}

impl Redirect {
    fn compile(r: &crate::model::RequestRedirect) -> Result<Redirect, String> {
        let status = match r.status_code.unwrap_or(302) {
            c @ (301 | 302 | 303 | 307 | 308) => {
                // The match arm lists valid status codes only.
                StatusCode::from_u16(c as u16).map_err(|e| e.to_string())?
            }
            c => return Err(format!("redirect status code {c} is not supported")),
        };
        let scheme = match r.scheme.as_deref() {
            None => None,
            Some(s @ ("http" | "https")) => Some(s.to_owned()),
            Some(s) => return Err(format!("redirect scheme {s:?} is not supported")),
        };
        let port = match r.port {
            None => None,
            Some(p) => Some(
                u16::try_from(p)
                    .ok()
                    .filter(|p| *p > 0)
                    .ok_or(format!("invalid redirect port {p}"))?,
            ),
        };
        Ok(Redirect {
            scheme,
            hostname: r.hostname.clone(),
            path: r.path.as_ref().map(PathChange::compile).transpose()?,
            port,
            status,
        })
    }

    /// The redirect status (default 302).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The `Location` for a request that arrived on a listener with
    /// `listener_scheme` (`http`/`https`) and `listener_port`, whose path
    /// matched the PathPrefix `matched` (if any). The query is kept.
    ///
    /// Spec (`port`): "If no port is specified, the redirect port MUST be
    /// derived using the following rules: If redirect scheme is not-empty,
    /// the redirect port MUST be the well-known port associated with the
    /// redirect scheme. Specifically "http" to port 80 and "https" to port
    /// 443. [...] If redirect scheme is empty, the redirect port MUST be the
    /// Gateway Listener port. Implementations SHOULD NOT add the port number
    /// in the 'Location' header in the following cases: A Location header
    /// that will use HTTP [...] _and_ use port 80. A Location header that
    /// will use HTTPS [...] _and_ use port 443."
    pub fn location(
        &self,
        head: &RequestHead,
        listener_scheme: &str,
        listener_port: u16,
        matched: Option<&str>,
    ) -> String {
        let scheme = self.scheme.as_deref().unwrap_or(listener_scheme);
        let port = match (self.port, &self.scheme) {
            (Some(p), _) => p,
            (None, Some(s)) => {
                if s == "https" {
                    443
                } else {
                    80
                }
            }
            (None, None) => listener_port,
        };
        let host = self.hostname.as_deref().unwrap_or(head.host());
        let path = head.path().unwrap_or("/");
        let path = match &self.path {
            Some(change) => change.apply(path, matched),
            None => path.to_owned(),
        };
        let default_port = (scheme == "http" && port == 80) || (scheme == "https" && port == 443);
        let mut loc = format!("{scheme}://{host}");
        if !default_port {
            loc.push(':');
            loc.push_str(&port.to_string());
        }
        loc.push_str(&path);
        if let Some(q) = head.query() {
            loc.push('?');
            loc.push_str(q);
        }
        loc
    }
}

/// A compiled `URLRewrite`.
#[derive(Debug, Clone)]
pub struct Rewrite {
    hostname: Option<HeaderValue>,
    path: Option<PathChange>,
}

impl Rewrite {
    fn compile(r: &crate::model::UrlRewrite) -> Result<Rewrite, String> {
        Ok(Rewrite {
            hostname: r
                .hostname
                .as_deref()
                .map(|h| {
                    HeaderValue::from_str(h).map_err(|_| format!("invalid rewrite hostname {h:?}"))
                })
                .transpose()?,
            path: r.path.as_ref().map(PathChange::compile).transpose()?,
        })
    }

    /// Rewrites the Host and path of an outgoing request (the query is
    /// kept). `matched` is the PathPrefix that matched, if any.
    pub fn apply(&self, parts: &mut http::request::Parts, matched: Option<&str>) {
        if let Some(h) = &self.hostname {
            parts.headers.insert(header::HOST, h.clone());
            if parts.uri.authority().is_some()
                && let Ok(a) = http::uri::Authority::try_from(h.as_bytes())
            {
                let mut up = std::mem::take(&mut parts.uri).into_parts();
                up.authority = Some(a);
                parts.uri = http::Uri::from_parts(up).unwrap_or_default();
            }
        }
        if let Some(change) = &self.path {
            let path = parts.uri.path().to_owned();
            let query = parts.uri.query().map(str::to_owned);
            let new_path = change.apply(&path, matched);
            set_path(&mut parts.uri, &new_path, query.as_deref());
        }
    }
}

/// Replaces the path (and query) of a URI, keeping scheme and authority.
pub(crate) fn set_path(uri: &mut http::Uri, path: &str, query: Option<&str>) {
    let pq = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let Ok(pq) = http::uri::PathAndQuery::try_from(pq) else {
        return;
    };
    let mut up = std::mem::take(uri).into_parts();
    up.path_and_query = Some(pq);
    *uri = http::Uri::from_parts(up).unwrap_or_default();
}

/// A compiled `CORS` filter.
#[derive(Debug, Clone)]
pub struct Cors {
    origins: Vec<String>,
    credentials: bool,
    methods: Vec<String>,
    headers: Vec<String>,
    expose: Vec<String>,
    max_age: i32,
}

/// An origin as (scheme, host, port).
fn parse_origin(o: &str) -> Option<(&str, &str, u16)> {
    let (scheme, rest) = o.split_once("://")?;
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => {
            (h, p.parse().ok()?)
        }
        _ => (
            rest,
            if scheme.eq_ignore_ascii_case("https") {
                443
            } else {
                80
            },
        ),
    };
    Some((scheme, host, port))
}

impl Cors {
    fn compile(c: &crate::model::Cors) -> Cors {
        Cors {
            origins: c.allow_origins.clone(),
            credentials: c.allow_credentials.unwrap_or(false),
            methods: c.allow_methods.clone(),
            headers: c.allow_headers.clone(),
            expose: c.expose_headers.clone(),
            max_age: c.max_age.unwrap_or(5),
        }
    }

    /// Whether `origin` is allowed.
    ///
    /// Spec: "`*` is a greedy match to the _left_, including any number of
    /// DNS labels to the left of its position"; "if not included, port `80`
    /// is assumed for `http` scheme origins, and port `443` is assumed for
    /// `https` origins."
    pub fn allows(&self, origin: &str) -> bool {
        let Some((s, h, p)) = parse_origin(origin) else {
            return false;
        };
        self.origins.iter().any(|allowed| {
            if allowed == "*" {
                return true;
            }
            let Some((as_, ah, ap)) = parse_origin(allowed) else {
                return false;
            };
            if !as_.eq_ignore_ascii_case(s) || ap != p {
                return false;
            }
            match ah.strip_prefix('*') {
                Some(suffix) => {
                    h.len() > suffix.len()
                        && h.to_ascii_lowercase()
                            .ends_with(&suffix.to_ascii_lowercase())
                }
                None => ah.eq_ignore_ascii_case(h),
            }
        })
    }

    /// Whether `head` is a CORS preflight (OPTIONS with `Origin` and
    /// `Access-Control-Request-Method`).
    pub fn is_preflight(head: &RequestHead) -> bool {
        head.method() == Method::OPTIONS
            && head.headers().contains_key(header::ORIGIN)
            && head
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    fn list(
        values: &[String],
        credentials: bool,
        echo: Option<&HeaderValue>,
    ) -> Option<HeaderValue> {
        if values.iter().any(|v| v == "*") {
            if credentials {
                // Spec: "the gateway must not return `*` [...] it must
                // return [...] the value of the request header".
                return echo.cloned();
            }
            return Some(HeaderValue::from_static("*"));
        }
        if values.is_empty() {
            return None;
        }
        HeaderValue::from_str(&values.join(", ")).ok()
    }

    /// The headers of the answer to a preflight; without CORS headers when
    /// the origin is not allowed (spec: "the gateway returns 204/200 response
    /// but doesn't set the relevant cross-origin response headers").
    pub fn preflight_headers(&self, head: &RequestHead) -> HeaderMap {
        let mut out = HeaderMap::new();
        let req = head.headers();
        let Some(origin) = req.get(header::ORIGIN) else {
            return out;
        };
        if !origin.to_str().map(|o| self.allows(o)).unwrap_or(false) {
            return out;
        }
        out.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if self.credentials {
            out.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(v) = Self::list(
            &self.methods,
            self.credentials,
            req.get(header::ACCESS_CONTROL_REQUEST_METHOD),
        ) {
            out.insert(header::ACCESS_CONTROL_ALLOW_METHODS, v);
        }
        if let Some(v) = Self::list(
            &self.headers,
            self.credentials,
            req.get(header::ACCESS_CONTROL_REQUEST_HEADERS),
        ) {
            out.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
        }
        out.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from(self.max_age),
        );
        out
    }

    /// Adds the CORS headers of an actual (not preflight) response.
    pub fn apply_response(&self, head: &RequestHead, headers: &mut HeaderMap) {
        let Some(origin) = head.headers().get(header::ORIGIN) else {
            return;
        };
        if !origin.to_str().map(|o| self.allows(o)).unwrap_or(false) {
            return;
        }
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        if self.credentials {
            headers.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        let expose = if self.credentials {
            self.expose
                .iter()
                .filter(|e| *e != "*")
                .cloned()
                .collect::<Vec<_>>()
        } else {
            self.expose.clone()
        };
        if !expose.is_empty()
            && let Ok(v) = HeaderValue::from_str(&expose.join(", "))
        {
            headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, v);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{HttpHeader, RequestRedirect};

    #[test]
    fn replace_prefix_spec_table() {
        let rows = [
            ("/foo/bar", "/foo", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo", "/xyz/", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz", "/xyz/bar"),
            ("/foo/bar", "/foo/", "/xyz/", "/xyz/bar"),
            ("/foo", "/foo", "/xyz", "/xyz"),
            ("/foo/", "/foo", "/xyz", "/xyz/"),
            ("/foo/bar", "/foo", "", "/bar"),
            ("/foo/", "/foo", "", "/"),
            ("/foo", "/foo", "", "/"),
            ("/foo/", "/foo", "/", "/"),
            ("/foo", "/foo", "/", "/"),
            ("/anything", "/", "/xyz", "/xyz/anything"),
        ];
        for (path, prefix, repl, want) in rows {
            assert_eq!(
                replace_prefix(path, prefix, repl),
                want,
                "{path} {prefix} {repl}"
            );
        }
    }

    fn redirect(scheme: Option<&str>, port: Option<i32>) -> Redirect {
        Redirect::compile(&RequestRedirect {
            scheme: scheme.map(str::to_owned),
            hostname: Some("example.org".into()),
            port,
            ..Default::default()
        })
        .unwrap()
    }

    #[test]
    fn redirect_port_defaulting() {
        let head = RequestHead::new(80, "gw", "GET", "/p?q=1");
        let rows = [
            (
                None,
                None,
                "http",
                80,
                "http://example.org/p?q=1",
                "no scheme, no port: listener port 80 omitted",
            ),
            (
                None,
                None,
                "http",
                8080,
                "http://example.org:8080/p?q=1",
                "no scheme: listener port",
            ),
            (
                None,
                Some(80),
                "http",
                8080,
                "http://example.org/p?q=1",
                "port 80 with http omitted",
            ),
            (
                None,
                Some(8080),
                "http",
                80,
                "http://example.org:8080/p?q=1",
                "explicit port",
            ),
            (
                Some("https"),
                None,
                "http",
                80,
                "https://example.org/p?q=1",
                "https scheme: 443 omitted",
            ),
            (
                Some("https"),
                None,
                "http",
                8080,
                "https://example.org/p?q=1",
                "scheme given: well-known port, not the listener's",
            ),
            (
                Some("https"),
                Some(443),
                "http",
                80,
                "https://example.org/p?q=1",
                "443 with https omitted",
            ),
            (
                Some("https"),
                Some(8443),
                "http",
                80,
                "https://example.org:8443/p?q=1",
                "explicit https port",
            ),
            (
                Some("http"),
                None,
                "https",
                443,
                "http://example.org/p?q=1",
                "http scheme from https",
            ),
            (
                None,
                None,
                "https",
                443,
                "https://example.org/p?q=1",
                "https listener keeps scheme and 443",
            ),
        ];
        for (scheme, port, ls, lp, want, msg) in rows {
            assert_eq!(
                redirect(scheme, port).location(&head, ls, lp, None),
                want,
                "{msg}"
            );
        }
        assert_eq!(
            redirect(None, None).status(),
            StatusCode::FOUND,
            "302 by default"
        );
    }

    #[test]
    fn header_ops_set_add_remove() {
        let ops = HeaderOps::compile(&HeaderModifier {
            set: vec![HttpHeader {
                name: "X-Set".into(),
                value: "s".into(),
            }],
            add: vec![HttpHeader {
                name: "x-add".into(),
                value: "b,c".into(),
            }],
            remove: vec!["X-Gone".into()],
        })
        .unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-set", HeaderValue::from_static("old"));
        h.insert("x-add", HeaderValue::from_static("a"));
        h.insert("x-gone", HeaderValue::from_static("bye"));
        ops.apply(&mut h);
        assert_eq!(h["x-set"], "s");
        assert_eq!(h["x-add"], "a,b,c");
        assert!(!h.contains_key("x-gone"));
        let mut empty = HeaderMap::new();
        ops.apply(&mut empty);
        assert_eq!(empty["x-add"], "b,c", "add without an existing value");
    }

    #[test]
    fn invalid_header_names_are_unsupported_not_skipped() {
        let f = HttpRouteFilter {
            type_: "RequestHeaderModifier".into(),
            request_header_modifier: Some(HeaderModifier {
                set: vec![HttpHeader {
                    name: "bad name".into(),
                    value: "v".into(),
                }],
                ..Default::default()
            }),
            ..Default::default()
        };
        assert!(matches!(Filter::compile(&f), Filter::Unsupported(_)));
        assert_eq!(check_filters(&[f]).len(), 1);
    }

    #[test]
    fn cors_origins() {
        let c = Cors::compile(&crate::model::Cors {
            allow_origins: vec![
                "https://www.foo.com".into(),
                "https://*.bar.com".into(),
                "http://x.com:8080".into(),
            ],
            ..Default::default()
        });
        assert!(c.allows("https://www.foo.com"));
        assert!(c.allows("https://www.foo.com:443"), "default port");
        assert!(!c.allows("http://www.foo.com"), "scheme differs");
        assert!(
            c.allows("https://a.b.bar.com"),
            "wildcard is greedy to the left"
        );
        assert!(!c.allows("https://bar.com"));
        assert!(c.allows("http://x.com:8080"));
        assert!(!c.allows("http://x.com"));
    }
}
