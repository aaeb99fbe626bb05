//! Request checks in engine mode.
//!
//! Engine mode judges a request by what gwcore's routing table decides for
//! it, with upstream's `CompareRoundTrip` rules (FORMAT.md, "Requests"):
//! the response status, on a redirect the `Location`, and on a 200 the
//! backend chosen, its namespace, the request the backend would receive
//! after filters and the response headers filters set. What only a data
//! plane can show (TLS handshakes, traffic shares, mirrors, timeouts,
//! retries, TCP/UDP/TLS/websocket/DNS) is not run.
//!
//! A rule may split traffic between backends; since any of them may answer
//! a real request, every backend with a weight must meet the expectation.

use gwcore::engine::Computed;
use gwcore::model::{Kind, ObjectKey};
use gwcore::table::{Action, Backend, BackendAction, RequestHead, Table};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::Value;

use crate::check::Outcome;
use crate::cluster::{Cluster, StoreKey};
use crate::vector::RequestExpect;

/// The Host sent when a vector names none: upstream sends the Gateway's
/// address. This one is from TEST-NET-1 (RFC 5737); nothing is sent to it,
/// and no listener or route hostname can match an IP literal.
const GATEWAY_ADDRESS: &str = "192.0.2.1";

/// What a request is judged against: the engine's output for the step and
/// the cluster it was computed from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EngineView<'a> {
    pub(crate) computed: &'a Computed,
    pub(crate) cluster: &'a Cluster,
}

/// Why engine mode cannot judge `req` at all, if it cannot.
pub(crate) fn needs_data_plane(req: &RequestExpect) -> Option<String> {
    if req.wire_only {
        return Some("needs a data plane (wire_only)".to_string());
    }
    let kind = req.kind.as_deref().unwrap_or("http");
    if kind != "http" && kind != "grpc" {
        return Some(format!("{kind} requests need a data plane"));
    }
    if let Some(f) = &req.expect_failure
        && f != "status"
    {
        return Some(format!("expectFailure: {f} is judged on the wire"));
    }
    if !req.weights.is_empty() || !req.mirrored_to.is_empty() {
        return Some("traffic shares and mirrors need a data plane".to_string());
    }
    if req.backend_matches_request_header.is_some() {
        return Some("backendMatchesRequestHeader needs a data plane".to_string());
    }
    None
}

/// Judges one request in engine mode.
pub(crate) fn judge(req: &RequestExpect, view: EngineView<'_>) -> Outcome {
    if let Some(why) = needs_data_plane(req) {
        return Outcome::NotRun(why);
    }
    match judge_inner(req, view) {
        Ok(()) => Outcome::Pass,
        Err(why) => Outcome::Fail(why),
    }
}

fn judge_inner(req: &RequestExpect, view: EngineView<'_>) -> Result<(), String> {
    let (ns, name) = req
        .gateway
        .split_once('/')
        .ok_or_else(|| format!("gateway {:?} is not namespace/name", req.gateway))?;
    let gw = ObjectKey::new(Kind::Gateway, ns, name);
    let routing = view
        .computed
        .routing
        .get(&gw)
        .ok_or_else(|| format!("the engine gives no routing for Gateway {ns}/{name}"))?;
    let table = Table::compile(routing);
    let tls = req.tls.is_some() || req.request.protocol.as_deref() == Some("H2");
    let port = req.port.unwrap_or(if tls { 443 } else { 80 });
    let r = &req.request;
    let grpc = req.kind.as_deref() == Some("grpc");
    let host = r
        .host
        .as_deref()
        .or(if grpc { r.authority.as_deref() } else { None })
        .filter(|h| !h.is_empty())
        .unwrap_or(GATEWAY_ADDRESS)
        .to_string();
    let mut headers = HeaderMap::new();
    let extra = if grpc { &r.metadata } else { &r.headers };
    for (k, v) in extra {
        let n = HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("header {k}: {e}"))?;
        let v = HeaderValue::from_str(v).map_err(|e| format!("header {k}: {e}"))?;
        headers.append(n, v);
    }
    let method = r
        .method
        .as_deref()
        .filter(|m| !m.is_empty())
        .unwrap_or("GET");
    let path = r.path.as_deref().filter(|p| !p.is_empty()).unwrap_or("/");
    let mut head = if grpc {
        let service = r.service.as_deref().unwrap_or("");
        let mut h = RequestHead::grpc(port, &host, service, method);
        let mut all = h.headers().clone();
        for (k, v) in &headers {
            all.append(k.clone(), v.clone());
        }
        h = h.with_headers(all);
        h
    } else {
        RequestHead::new(port, &host, method, path).with_headers(headers.clone())
    };
    if tls {
        let sni = req
            .tls
            .as_ref()
            .and_then(|t| t.server_name.clone())
            .or_else(|| r.sni.clone())
            .unwrap_or_else(|| host.clone());
        head = head.with_sni(sni);
    }
    let decision = table.find(&head);
    let forward = match &decision.action {
        Action::Forward(f) => *f,
        Action::Redirect(to) => return check_answer(req, to.status, Some(&to.location), tls, grpc),
        Action::Respond(resp) => return check_answer(req, resp.status(), None, tls, grpc),
    };
    let weighted: Vec<&Backend> = forward
        .backends()
        .iter()
        .filter(|b| b.weight() > 0)
        .collect();
    if weighted.is_empty() {
        return Err("the table forwards to a rule without weighted backends".to_string());
    }
    for backend in weighted {
        let label = match backend.target() {
            Ok(t) => format!("backend {}/{}", t.service.namespace, t.service.name),
            Err(e) => format!("invalid backend ({})", e.reason),
        };
        let target = match forward.backend_action(&head, backend) {
            BackendAction::Forward(t) => t,
            BackendAction::Redirect(to) => {
                check_answer(req, to.status, Some(&to.location), tls, grpc)
                    .map_err(|e| format!("{label}: {e}"))?;
                continue;
            }
            BackendAction::Respond(resp) => {
                check_answer(req, resp.status(), None, tls, grpc)
                    .map_err(|e| format!("{label}: {e}"))?;
                continue;
            }
        };
        check_answer(req, StatusCode::OK, None, tls, grpc).map_err(|e| format!("{label}: {e}"))?;
        if req.expect_failure.is_some() {
            continue;
        }
        // The echo backend answered: who, and what did it see?
        let pods = pod_prefixes(view.cluster, &target.service);
        check_who(req, &target.service.namespace, &pods).map_err(|e| format!("{label}: {e}"))?;
        if grpc {
            continue;
        }
        check_backend_request(req, &head, &forward, backend, &host, method, path)
            .map_err(|e| format!("{label}: {e}"))?;
        check_response_headers(req, &head, &forward, backend)
            .map_err(|e| format!("{label}: {e}"))?;
    }
    Ok(())
}

/// Who answered: the namespace exactly, and every pod (name, or name
/// prefix) starting with `backend`.
pub(crate) fn check_who(
    req: &RequestExpect,
    namespace: &str,
    pods: &[String],
) -> Result<(), String> {
    if let Some(ns) = req.namespace.as_deref().filter(|n| !n.is_empty())
        && namespace != ns
    {
        return Err(format!(
            "answered from namespace {namespace}, expected {ns}"
        ));
    }
    if let Some(b) = req.backend.as_deref().filter(|b| !b.is_empty())
        && !pods.iter().all(|p| p.starts_with(b))
    {
        return Err(format!(
            "answered by pods of {}, expected {b}",
            pods.join(", ")
        ));
    }
    Ok(())
}

/// The status (gRPC: the code class), and on a redirect its `Location`.
pub(crate) fn check_answer(
    req: &RequestExpect,
    status: StatusCode,
    location: Option<&str>,
    tls: bool,
    grpc: bool,
) -> Result<(), String> {
    if grpc {
        let ok = status == StatusCode::OK && location.is_none();
        let want = req.response.code.as_deref().unwrap_or("OK");
        return match (req.expect_failure.is_some() || want != "OK", ok) {
            (false, true) | (true, false) => Ok(()),
            (false, false) => Err(format!("answered HTTP {status} instead of gRPC OK")),
            (true, true) => Err(format!(
                "answered OK, expected {}",
                if req.expect_failure.is_some() {
                    "a failure"
                } else {
                    want
                }
            )),
        };
    }
    if req.expect_failure.is_some() {
        // Every answer must be an HTTP response other than 200, 408 or 504.
        return if matches!(status.as_u16(), 200 | 408 | 504) {
            Err(format!("answered {status}, expected a failure status"))
        } else {
            Ok(())
        };
    }
    let codes: &[u16] = if req.response.status_codes.is_empty() {
        &[200]
    } else {
        &req.response.status_codes
    };
    // FORMAT.md: "if it is 408 or 504 and a timeout code is expected, it
    // passes".
    let timeout = |c: u16| c == 408 || c == 504;
    let accepted = codes.contains(&status.as_u16())
        || (timeout(status.as_u16()) && codes.iter().any(|c| timeout(*c)));
    if !accepted {
        return Err(format!(
            "answered {}{}, expected {codes:?}",
            status.as_u16(),
            location.map(|l| format!(" to {l}")).unwrap_or_default()
        ));
    }
    if status.is_redirection() {
        let loc = location.ok_or_else(|| format!("a {status} without Location"))?;
        check_redirect(req, loc, tls)?;
    }
    Ok(())
}

/// The parts of a `Location` that are compared.
#[derive(Debug, PartialEq, Eq)]
struct Location {
    scheme: String,
    host: String,
    port: Option<String>,
    path: String,
}

fn parse_location(loc: &str) -> Result<Location, String> {
    let (scheme, rest) = loc
        .split_once("://")
        .ok_or_else(|| format!("Location {loc:?} is not absolute"))?;
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
            if p.bytes().all(|b| b.is_ascii_digit()) && !p.is_empty() {
                (h.to_string(), Some(p.to_string()))
            } else {
                (authority.to_string(), None)
            }
        }
        _ => (authority.to_string(), None),
    };
    let path = tail.split(['?', '#']).next().unwrap_or("");
    Ok(Location {
        scheme: scheme.to_ascii_lowercase(),
        host,
        port,
        path: if path.is_empty() {
            "/".into()
        } else {
            path.into()
        },
    })
}

/// On a redirect only `redirectRequest` is checked: empty `host` = any,
/// empty `scheme`/`path` = the request's, empty `port` = the scheme's
/// default port or none.
fn check_redirect(req: &RequestExpect, loc: &str, tls: bool) -> Result<(), String> {
    let got = parse_location(loc)?;
    let want = req.redirect_request.clone().unwrap_or_default();
    let nonempty = |s: &Option<String>| s.clone().filter(|x| !x.is_empty());
    let scheme =
        nonempty(&want.scheme).unwrap_or_else(|| if tls { "https" } else { "http" }.into());
    if got.scheme != scheme {
        return Err(format!(
            "redirected to {loc}: scheme {}, expected {scheme}",
            got.scheme
        ));
    }
    if let Some(h) = nonempty(&want.host)
        && got.host != h
    {
        return Err(format!(
            "redirected to {loc}: host {}, expected {h}",
            got.host
        ));
    }
    let req_path = req
        .request
        .path
        .as_deref()
        .unwrap_or("/")
        .split('?')
        .next()
        .unwrap_or("/")
        .to_string();
    let path = nonempty(&want.path).unwrap_or(req_path);
    if got.path != path {
        return Err(format!(
            "redirected to {loc}: path {}, expected {path}",
            got.path
        ));
    }
    match nonempty(&want.port) {
        Some(p) => {
            if got.port.as_deref() != Some(p.as_str()) {
                return Err(format!(
                    "redirected to {loc}: port {:?}, expected {p}",
                    got.port
                ));
            }
        }
        None => {
            let default = if got.scheme == "https" { "443" } else { "80" };
            if got.port.as_deref().is_some_and(|p| p != default) {
                return Err(format!(
                    "redirected to {loc}: port {:?}, expected the default or none",
                    got.port
                ));
            }
        }
    }
    Ok(())
}

/// All values of a header, joined by `,` as upstream compares them.
pub(crate) fn joined(headers: &HeaderMap, name: &str) -> Option<String> {
    let values: Vec<String> = headers
        .get_all(name)
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    (!values.is_empty()).then(|| values.join(","))
}

/// What the backend receives: `expectedRequest` (or the request itself).
fn check_backend_request(
    req: &RequestExpect,
    head: &RequestHead,
    forward: &gwcore::table::Forward<'_>,
    backend: &Backend,
    host: &str,
    method: &str,
    path: &str,
) -> Result<(), String> {
    let mut builder = http::Request::builder().method(method).uri(path);
    if let Some(h) = builder.headers_mut() {
        for (k, v) in head.headers() {
            h.append(k.clone(), v.clone());
        }
        if let Ok(v) = HeaderValue::from_str(host) {
            h.insert(http::header::HOST, v);
        }
    }
    let (mut parts, ()) = builder
        .body(())
        .map_err(|e| format!("request {method} {path} cannot be built: {e}"))?
        .into_parts();
    forward.apply_request(head, Some(backend), &mut parts);
    let got = Received {
        method: parts.method.as_str().to_string(),
        path: parts
            .uri
            .path_and_query()
            .map_or("/", |pq| pq.as_str())
            .to_string(),
        host: joined(&parts.headers, "host")
            .or_else(|| parts.uri.host().map(str::to_string))
            .unwrap_or_default(),
        headers: parts.headers,
    };
    check_received(req, &got)
}

/// What a backend received: as the engine's filters make it, or as the
/// echo backend reports it on the wire.
#[derive(Debug, Clone)]
pub(crate) struct Received {
    /// The method.
    pub(crate) method: String,
    /// Path and query.
    pub(crate) path: String,
    /// The Host (or `:authority`).
    pub(crate) host: String,
    /// The headers.
    pub(crate) headers: HeaderMap,
}

/// `expectedRequest` (or the request itself) against what the backend
/// received: path exact, method (empty = GET), host only if set, each
/// header equal, `absentHeaders`.
pub(crate) fn check_received(req: &RequestExpect, got: &Received) -> Result<(), String> {
    let (want_path, want_method, want_host, want_headers, absent) = match &req.expected_request {
        Some(e) => (
            e.path.clone(),
            e.method.clone(),
            e.host.clone(),
            e.headers.clone(),
            e.absent_headers.clone(),
        ),
        None => (
            req.request.path.clone(),
            req.request.method.clone(),
            None,
            req.request.headers.clone(),
            Vec::new(),
        ),
    };
    let got_path = &got.path;
    if let Some(p) = want_path.filter(|p| !p.is_empty())
        && *got_path != p
    {
        return Err(format!("backend received path {got_path}, expected {p}"));
    }
    let want_method = want_method
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| "GET".into());
    if got.method != want_method {
        return Err(format!(
            "backend received method {}, expected {want_method}",
            got.method
        ));
    }
    if let Some(h) = want_host.filter(|h| !h.is_empty())
        && got.host != h
    {
        return Err(format!("backend received Host {}, expected {h}", got.host));
    }
    for (name, want) in &want_headers {
        match joined(&got.headers, name) {
            Some(got) if got == *want => {}
            Some(got) => {
                return Err(format!(
                    "backend received header {name}: {got}, expected {want}"
                ));
            }
            None => return Err(format!("backend did not receive header {name}: {want}")),
        }
    }
    for name in &absent {
        if let Some(got) = joined(&got.headers, name) {
            return Err(format!(
                "backend received header {name}: {got}, expected none"
            ));
        }
    }
    Ok(())
}

/// Response headers: those the echo was asked to set, then the filters.
fn check_response_headers(
    req: &RequestExpect,
    head: &RequestHead,
    forward: &gwcore::table::Forward<'_>,
    backend: &Backend,
) -> Result<(), String> {
    if !expects_response_headers(req) {
        return Ok(());
    }
    let mut builder = http::Response::builder().status(200);
    if let Some(h) = builder.headers_mut() {
        for (k, v) in &req.backend_set_response_headers {
            let n = HeaderName::from_bytes(k.as_bytes()).map_err(|e| format!("header {k}: {e}"))?;
            let v = HeaderValue::from_str(v).map_err(|e| format!("header {k}: {e}"))?;
            h.append(n, v);
        }
    }
    let (mut parts, ()) = builder
        .body(())
        .map_err(|e| format!("response cannot be built: {e}"))?
        .into_parts();
    forward.apply_response(head, Some(backend), &mut parts);
    check_response_header_map(req, &parts.headers)
}

/// Whether the vector says anything about response headers.
pub(crate) fn expects_response_headers(req: &RequestExpect) -> bool {
    let resp = &req.response;
    !(resp.headers.is_empty()
        && resp.absent_headers.is_empty()
        && resp.valid_header_values.is_empty())
}

/// Response `headers` equal, `validHeaderValues` one of, `absentHeaders`,
/// with `ignoreWhitespace`.
pub(crate) fn check_response_header_map(
    req: &RequestExpect,
    headers: &HeaderMap,
) -> Result<(), String> {
    let resp = &req.response;
    let norm = |s: &str| {
        if resp.ignore_whitespace {
            s.split_whitespace().collect::<String>()
        } else {
            s.to_string()
        }
    };
    for (name, want) in &resp.headers {
        match joined(headers, name) {
            Some(got) if norm(&got) == norm(want) => {}
            Some(got) => return Err(format!("response header {name}: {got}, expected {want}")),
            None => return Err(format!("response lacks header {name}: {want}")),
        }
    }
    for (name, valid) in &resp.valid_header_values {
        let got = joined(headers, name).unwrap_or_default();
        if !valid.iter().any(|v| norm(v) == norm(&got)) {
            return Err(format!(
                "response header {name}: {got:?}, expected one of {valid:?}"
            ));
        }
    }
    for name in &resp.absent_headers {
        if let Some(got) = joined(headers, name) {
            return Err(format!("response header {name}: {got}, expected none"));
        }
    }
    Ok(())
}

/// The pod name prefixes (Deployment names) that would answer for a
/// Service: Deployments whose pod labels match its selector, or for a
/// Service without selector the pods its EndpointSlices point at (pod name
/// minus its last two `-` parts). When neither names a pod, the Service is
/// its own backend, as when a runner plays the data plane with one echo
/// server per Service (FORMAT.md, "The echo backend").
fn pod_prefixes(cluster: &Cluster, service: &ObjectKey) -> Vec<String> {
    let own = || vec![service.name.clone()];
    let Some(svc) = cluster.get(&StoreKey::new(
        "Service",
        Some(&service.namespace),
        &service.name,
    )) else {
        return own();
    };
    let selector = svc
        .pointer("/spec/selector")
        .and_then(Value::as_object)
        .filter(|s| !s.is_empty());
    let mut out = Vec::new();
    if let Some(sel) = selector {
        for (key, d) in cluster.iter() {
            if key.kind != "Deployment" || key.namespace != service.namespace {
                continue;
            }
            let labels = d.pointer("/spec/template/metadata/labels");
            let matches = sel
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v));
            if matches {
                out.push(key.name.clone());
            }
        }
    } else {
        for (key, s) in cluster.iter() {
            if key.kind != "EndpointSlice"
                || key.namespace != service.namespace
                || s.pointer("/metadata/labels/kubernetes.io~1service-name")
                    .and_then(Value::as_str)
                    != Some(service.name.as_str())
            {
                continue;
            }
            for e in s
                .get("endpoints")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(pod) = e.pointer("/targetRef/name").and_then(Value::as_str) {
                    let parts: Vec<&str> = pod.split('-').collect();
                    if parts.len() > 2 {
                        out.push(parts[..parts.len() - 2].join("-"));
                    }
                }
            }
        }
    }
    out.sort();
    out.dedup();
    if out.is_empty() { own() } else { out }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn location_parts() {
        assert_eq!(
            parse_location("https://example.org:8443/a/b?x=1").expect("parses"),
            Location {
                scheme: "https".into(),
                host: "example.org".into(),
                port: Some("8443".into()),
                path: "/a/b".into()
            }
        );
        assert_eq!(
            parse_location("http://example.org").expect("parses").path,
            "/"
        );
        assert!(parse_location("/relative").is_err());
    }
}
