//! What the table looks at in a request.

use std::borrow::Cow;

use http::{HeaderMap, HeaderName, HeaderValue, Method};

use super::path::{PathError, normalize};

/// The parts of a request that routing depends on, normalized once.
///
/// - `host` is lower-cased, without port and without a trailing dot; it
///   comes from the URI authority (HTTP/2 `:authority`, absolute-form) or the
///   `Host` header. Spec: "Implementations MUST ignore any port value
///   specified in the HTTP Host header while performing a match".
/// - `path` is normalized by [`super::path::normalize`] (or the reason it
///   cannot be, answered with 400).
/// - `sni` is the TLS server name of the connection, when there is one; it
///   chooses the listener on HTTPS ports (see [`super::Table::find`]).
///
/// The fields a lookup reads share one cache line: the host, the path and
/// the query are one buffer, found by offsets, next to the port and the
/// method; the SNI and the header map (read by few routes) come after.
#[derive(Clone)]
#[repr(C, align(64))]
pub struct RequestHead {
    /// The host, the normalized path (empty when it cannot be normalized),
    /// then the query.
    buf: Box<str>,
    /// The end of the host in `buf`.
    host_end: usize,
    /// The end of the path in `buf`; the query follows.
    path_end: usize,
    port: u16,
    /// Why the path could not be normalized.
    path_err: Option<PathError>,
    /// Whether there is a query (it may be empty: `/p?`).
    has_query: bool,
    method: Method,
    sni: Option<Box<str>>,
    headers: HeaderMap,
}

impl std::fmt::Debug for RequestHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestHead")
            .field("port", &self.port)
            .field("sni", &self.sni)
            .field("host", &self.host())
            .field("method", &self.method)
            .field("path", &self.path())
            .field("query", &self.query())
            .field("headers", &self.headers)
            .finish()
    }
}

/// The host of a Host value: without port and trailing dot, not yet
/// lower-cased.
fn host_part(host: &str) -> &str {
    let h = host.trim();
    let h = if let Some(rest) = h.strip_prefix('[') {
        // IPv6 literal: keep the brackets' content.
        match rest.find(']') {
            Some(end) => &h[..end + 2],
            None => h,
        }
    } else {
        match h.rfind(':') {
            Some(i) if h[i + 1..].bytes().all(|b| b.is_ascii_digit()) => &h[..i],
            _ => h,
        }
    };
    h.strip_suffix('.').unwrap_or(h)
}

/// Lower-cases a Host value and strips its port and trailing dot.
pub fn normalize_host(host: &str) -> String {
    host_part(host).to_ascii_lowercase()
}

impl RequestHead {
    /// A request to `port` for `host` (a Host value, port allowed), with
    /// `method` and `path_and_query` (`/path?query`).
    ///
    /// ```
    /// use gwcore::table::RequestHead;
    /// let head = RequestHead::new(80, "Example.COM:8080", "GET", "/a/./b?x=1");
    /// assert_eq!(head.host(), "example.com");
    /// assert_eq!(head.path(), Ok("/a/b"));
    /// assert_eq!(head.query(), Some("x=1"));
    /// ```
    ///
    /// # Panics
    ///
    /// When `method` is not an HTTP method token (RFC 9110 §9.1): this
    /// constructor is for methods written in code; requests off the wire
    /// come through [`RequestHead::try_new`] or
    /// [`RequestHead::from_parts_taking_headers`].
    pub fn new(port: u16, host: &str, method: &str, path_and_query: &str) -> RequestHead {
        match RequestHead::try_new(port, host, method, path_and_query) {
            Ok(head) => head,
            Err(_) => panic!("{method:?} is not an HTTP method"),
        }
    }

    /// [`RequestHead::new`], with an error for an invalid method.
    pub fn try_new(
        port: u16,
        host: &str,
        method: &str,
        path_and_query: &str,
    ) -> Result<RequestHead, http::method::InvalidMethod> {
        let method = Method::from_bytes(method.as_bytes())?;
        Ok(RequestHead::build(port, host, method, path_and_query))
    }

    fn build(port: u16, host: &str, method: Method, path_and_query: &str) -> RequestHead {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        // Fragments never reach a server; drop one if a caller passes it.
        let path = path.split('#').next().unwrap_or(path);
        let query = query.map(|q| q.split('#').next().unwrap_or(""));
        let mut head = RequestHead {
            buf: Box::default(),
            host_end: 0,
            path_end: 0,
            port,
            path_err: None,
            has_query: query.is_some(),
            method,
            sni: None,
            headers: HeaderMap::new(),
        };
        head.fill(host_part(host), path, query);
        head
    }

    /// Sets the buffer to `host` (lower-cased here), `path` normalized,
    /// then `query`.
    fn fill(&mut self, host: &str, path: &str, query: Option<&str>) {
        let path = normalize(path);
        let (path, path_err) = match &path {
            Ok(p) => (&p[..], None),
            Err(e) => ("", Some(*e)),
        };
        let query = query.unwrap_or("");
        let mut buf = String::with_capacity(host.len() + path.len() + query.len());
        buf.push_str(host);
        buf.make_ascii_lowercase();
        buf.push_str(path);
        buf.push_str(query);
        self.host_end = host.len();
        self.path_end = host.len() + path.len();
        self.path_err = path_err;
        self.buf = buf.into_boxed_str();
    }

    /// A gRPC call: `POST /{service}/{method}` with
    /// `content-type: application/grpc`.
    pub fn grpc(port: u16, host: &str, service: &str, method: &str) -> RequestHead {
        let mut head = RequestHead::new(port, host, "POST", &format!("/{service}/{method}"));
        head.headers.insert(
            http::header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        head
    }

    /// As [`RequestHead::from_parts`], taking the header map from `parts`
    /// instead of copying it (`parts.headers` is left empty): for a proxy
    /// that gives it back with [`RequestHead::take_headers`] once matching
    /// is done.
    pub fn from_parts_taking_headers(port: u16, parts: &mut http::request::Parts) -> RequestHead {
        let headers = std::mem::take(&mut parts.headers);
        let mut head = RequestHead::from_parts_with(port, parts, &headers);
        head.headers = headers;
        head
    }

    /// Takes the header map out, leaving this head with none.
    pub fn take_headers(&mut self) -> HeaderMap {
        std::mem::take(&mut self.headers)
    }

    /// From the head of a received request. The host comes from the URI's
    /// authority when present, else from the `Host` header.
    pub fn from_parts(port: u16, parts: &http::request::Parts) -> RequestHead {
        let mut head = RequestHead::from_parts_with(port, parts, &parts.headers);
        head.headers = parts.headers.clone();
        head
    }

    /// The head of `parts` with `headers` as its header fields, except for
    /// the header map itself (left empty).
    fn from_parts_with(
        port: u16,
        parts: &http::request::Parts,
        headers: &HeaderMap,
    ) -> RequestHead {
        let host = parts
            .uri
            .authority()
            .map(|a| a.as_str().rsplit('@').next().unwrap_or(""))
            .or_else(|| {
                headers
                    .get(http::header::HOST)
                    .and_then(|h| h.to_str().ok())
            })
            .unwrap_or_default();
        let pq = parts
            .uri
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        RequestHead::build(port, host, parts.method.clone(), pq)
    }

    /// Replaces the path (without query: the query is kept), normalized
    /// like the first ([`super::path::normalize`]): for a data plane that
    /// routes a path it rewrote, e.g. the decoded path of
    /// [`super::slashes`].
    pub fn set_path(&mut self, path: &str) {
        let path = path.split(['?', '#']).next().unwrap_or(path);
        let buf = std::mem::take(&mut self.buf);
        let query = self.has_query.then(|| &buf[self.path_end..]);
        self.fill(&buf[..self.host_end], path, query);
    }

    /// Sets the TLS server name of the connection.
    pub fn with_sni(mut self, sni: impl AsRef<str>) -> RequestHead {
        self.sni = Some(normalize_host(sni.as_ref()).into_boxed_str());
        self
    }

    /// Appends a header. Invalid names or values are ignored (a real
    /// request cannot carry them).
    pub fn with_header(mut self, name: &str, value: &str) -> RequestHead {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            self.headers.append(n, v);
        }
        self
    }

    /// Replaces the headers.
    pub fn with_headers(mut self, headers: HeaderMap) -> RequestHead {
        self.headers = headers;
        self
    }

    /// The listener port the request arrived on.
    #[inline]
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The TLS server name, lower-cased.
    pub fn sni(&self) -> Option<&str> {
        self.sni.as_deref()
    }

    /// The host, lower-cased, without port.
    #[inline]
    pub fn host(&self) -> &str {
        &self.buf[..self.host_end]
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The normalized path, or why it could not be normalized.
    #[inline]
    pub fn path(&self) -> Result<&str, PathError> {
        match self.path_err {
            None => Ok(&self.buf[self.host_end..self.path_end]),
            Some(e) => Err(e),
        }
    }

    /// The raw query string (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.has_query.then(|| &self.buf[self.path_end..])
    }

    /// The headers.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// Whether this is a gRPC request (`content-type: application/grpc`,
    /// optionally `+proto`, `+json`, ...).
    pub fn is_grpc(&self) -> bool {
        self.headers
            .get(http::header::CONTENT_TYPE)
            .map(|v| {
                let b = v.as_bytes();
                b.len() >= 16
                    && b[..16].eq_ignore_ascii_case(b"application/grpc")
                    && matches!(b.get(16), None | Some(b'+') | Some(b';'))
            })
            .unwrap_or(false)
    }

    /// The value a header match compares with: the single value, or all
    /// values joined by `,` when the header is repeated (RFC 9110 §5.3).
    pub fn header_value(&self, name: &HeaderName) -> Option<Cow<'_, [u8]>> {
        let mut it = self.headers.get_all(name).iter();
        let first = it.next()?;
        match it.next() {
            None => Some(Cow::Borrowed(first.as_bytes())),
            Some(second) => {
                let mut joined = first.as_bytes().to_vec();
                for v in std::iter::once(second).chain(it) {
                    joined.push(b',');
                    joined.extend_from_slice(v.as_bytes());
                }
                Some(Cow::Owned(joined))
            }
        }
    }

    /// The first value of query parameter `name`, percent-decoded (`+` is a
    /// space). Spec: "it is *recommended* that implementations should match
    /// against the first value of the param".
    pub fn query_param(&self, name: &str) -> Option<Cow<'_, str>> {
        let q = self.query()?;
        for pair in q.split('&') {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if k == name || (k.contains(['%', '+']) && decode_query(k) == name) {
                return Some(decode_query(v));
            }
        }
        None
    }
}

/// Decodes a query component: `%XX` escapes and `+` as space. Invalid
/// escapes are kept as written.
pub(crate) fn decode_query(s: &str) -> Cow<'_, str> {
    if !s.contains(['%', '+']) {
        return Cow::Borrowed(s);
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                let h = (b[i + 1] as char).to_digit(16);
                let l = (b[i + 2] as char).to_digit(16);
                match (h, l) {
                    (Some(h), Some(l)) => {
                        out.push((h * 16 + l) as u8);
                        i += 3;
                        continue;
                    }
                    _ => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    Cow::Owned(String::from_utf8_lossy(&out).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_is_lowercased_without_port() {
        assert_eq!(normalize_host("Foo.Example.com:8080"), "foo.example.com");
        assert_eq!(normalize_host("foo.example.com."), "foo.example.com");
        assert_eq!(normalize_host("[::1]:443"), "[::1]");
        assert_eq!(normalize_host("example.com"), "example.com");
    }

    #[test]
    fn from_parts_prefers_authority() {
        let req = http::Request::builder()
            .uri("http://a.example.com:8080/x/../y?q=1")
            .header("host", "b.example.com")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        let head = RequestHead::from_parts(80, &parts);
        assert_eq!(head.host(), "a.example.com");
        assert_eq!(head.path(), Ok("/y"));
        assert_eq!(head.query(), Some("q=1"));

        let req = http::Request::builder()
            .uri("/p")
            .header("host", "B.example.com:1")
            .body(())
            .unwrap();
        let (parts, ()) = req.into_parts();
        assert_eq!(RequestHead::from_parts(80, &parts).host(), "b.example.com");
    }

    #[test]
    fn set_path_keeps_host_query_and_an_empty_query() {
        let mut head = RequestHead::new(80, "A.example.com", "GET", "/a/b?x=1");
        head.set_path("/c/../d%7e?ignored");
        assert_eq!(head.host(), "a.example.com");
        assert_eq!(head.path(), Ok("/d~"));
        assert_eq!(head.query(), Some("x=1"));
        head.set_path("no-slash");
        assert_eq!(head.path(), Err(PathError::NotOriginForm));
        assert_eq!((head.host(), head.query()), ("a.example.com", Some("x=1")));
        head.set_path("/e");
        assert_eq!(head.path(), Ok("/e"));
        let head = RequestHead::new(80, "h", "GET", "/p?");
        assert_eq!((head.path(), head.query()), (Ok("/p"), Some("")));
        let head = RequestHead::new(80, "h", "GET", "/p");
        assert_eq!(head.query(), None);
    }

    #[test]
    fn query_params_take_the_first_value_decoded() {
        let head = RequestHead::new(80, "h", "GET", "/?a=1&b=x%20y&a=2&c+d=e+f&flag");
        assert_eq!(head.query_param("a").as_deref(), Some("1"));
        assert_eq!(head.query_param("b").as_deref(), Some("x y"));
        assert_eq!(head.query_param("c d").as_deref(), Some("e f"));
        assert_eq!(head.query_param("flag").as_deref(), Some(""));
        assert_eq!(head.query_param("A"), None, "names are case-sensitive");
    }

    #[test]
    fn repeated_headers_are_joined() {
        let head = RequestHead::new(80, "h", "GET", "/")
            .with_header("x", "1")
            .with_header("X", "2");
        let name = HeaderName::from_static("x");
        assert_eq!(head.header_value(&name).as_deref(), Some(&b"1,2"[..]));
    }

    #[test]
    fn grpc_content_types() {
        assert!(RequestHead::grpc(80, "h", "a.B", "C").is_grpc());
        let h = RequestHead::new(80, "h", "POST", "/")
            .with_header("content-type", "application/grpc+proto");
        assert!(h.is_grpc());
        let h = RequestHead::new(80, "h", "POST", "/")
            .with_header("content-type", "application/grpc-web");
        assert!(!h.is_grpc());
    }
}
