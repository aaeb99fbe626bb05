//! Judging one request of a vector on the wire (FORMAT.md, "Requests").
//!
//! The comparisons are engine mode's ([`crate::requests`]): the status and
//! redirect ([`check_answer`]), who answered ([`check_who`]), what the
//! backend received ([`check_received`]) and the response headers
//! ([`check_response_header_map`]); here the facts come from the socket and
//! from the echo backend's report instead of from the routing table.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use gwcore::model::{Kind, ObjectKey};
use gwcore_proxy::config::GatewayPort;
use gwcore_proxy::echo::{Echoed, parse_echoed};
use gwcore_proxy::provider::Runtime;
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use serde_json::Value;

use super::backends::{GrpcEchoed, Pods, deployment_of, grpc_frame};
use super::client::{self, Answer, ClientCert, Proto, Target, Tls, WsMessage};
use crate::cluster::{Cluster, StoreKey};
use crate::requests::{
    Received, check_answer, check_received, check_response_header_map, check_who,
    expects_response_headers,
};
use crate::vector::RequestExpect;

/// How many samples run at once in weighted and mirror checks (upstream
/// sends 10 at a time).
const CONCURRENCY: usize = 10;

/// How long a mirrored copy may take to reach its backend.
const MIRROR_WAIT: Duration = Duration::from_secs(5);

/// What a request is judged against.
pub(crate) struct Context<'a> {
    pub(crate) proxy: &'a Runtime,
    pub(crate) pods: &'a Pods,
    pub(crate) cluster: &'a Cluster,
}

/// Sends `req` for real and judges the answers.
pub(crate) async fn judge(req: &RequestExpect, ctx: &Context<'_>) -> Result<(), String> {
    match req.kind.as_deref().unwrap_or("http") {
        "http" => http(req, ctx).await,
        "grpc" => grpc(req, ctx).await,
        "tcp" => tcp(req, ctx).await,
        "tls-connect" => tls_connect(req, ctx).await,
        "websocket" => websocket(req, ctx).await,
        "udp" => udp(req, ctx).await,
        "dns" => dns(req, ctx).await,
        other => Err(format!("unknown request kind {other}")),
    }
}

/// The proxy's socket for the request's Gateway port.
fn addr(req: &RequestExpect, ctx: &Context<'_>, tls: bool) -> Result<std::net::SocketAddr, String> {
    let (ns, name) = req
        .gateway
        .split_once('/')
        .ok_or_else(|| format!("gateway {:?} is not namespace/name", req.gateway))?;
    let port = req.port.unwrap_or(if tls { 443 } else { 80 });
    let gp = GatewayPort::new(ObjectKey::new(Kind::Gateway, ns, name), port);
    ctx.proxy
        .local_addr_of(&gp)
        .ok_or_else(|| format!("the proxy serves no socket for {gp}"))
}

/// The trust a request names: a Secret's `tls.crt` or a ConfigMap's
/// `ca.crt`.
fn roots(
    req: &RequestExpect,
    cluster: &Cluster,
) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, String> {
    let Some(t) = &req.tls else {
        return Ok(Vec::new());
    };
    let lookup = |kind: &str, nn: &str| -> Result<Value, String> {
        let (ns, name) = nn
            .split_once('/')
            .ok_or_else(|| format!("{kind} {nn:?} is not namespace/name"))?;
        let key = StoreKey::new(kind, Some(ns), name);
        cluster
            .get(&key)
            .cloned()
            .ok_or_else(|| format!("trust: {key} not found"))
    };
    if let Some(s) = &t.trust_secret {
        let secret = lookup("Secret", s)?;
        let b64 = secret
            .pointer("/data/tls.crt")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("trust: Secret {s} has no tls.crt"))?;
        let pem = base64::engine::general_purpose::STANDARD
            .decode(b64.split_whitespace().collect::<String>())
            .map_err(|e| format!("trust: Secret {s} tls.crt: {e}"))?;
        return client::pem_certs(&pem);
    }
    if let Some(c) = &t.trust_config_map {
        let cm = lookup("ConfigMap", c)?;
        let pem = cm
            .pointer("/data/ca.crt")
            .and_then(Value::as_str)
            .ok_or_else(|| format!("trust: ConfigMap {c} has no ca.crt"))?;
        return client::pem_certs(pem.as_bytes());
    }
    Ok(Vec::new())
}

/// The client certificate a request offers (`tls.clientCertSecret`), as
/// PEM `tls.crt` and `tls.key`.
fn client_cert(req: &RequestExpect, cluster: &Cluster) -> Result<Option<ClientCert>, String> {
    let Some(nn) = req
        .tls
        .as_ref()
        .and_then(|t| t.client_cert_secret.as_deref())
    else {
        return Ok(None);
    };
    let (ns, name) = nn
        .split_once('/')
        .ok_or_else(|| format!("Secret {nn:?} is not namespace/name"))?;
    let key = StoreKey::new("Secret", Some(ns), name);
    let secret = cluster
        .get(&key)
        .ok_or_else(|| format!("client certificate: {key} not found"))?;
    let field = |k: &str| -> Result<Vec<u8>, String> {
        let b64 = secret
            .get("data")
            .and_then(|d| d.get(k))
            .and_then(Value::as_str)
            .ok_or_else(|| format!("client certificate: {key} has no {k}"))?;
        base64::engine::general_purpose::STANDARD
            .decode(b64.split_whitespace().collect::<String>())
            .map_err(|e| format!("client certificate: {key} {k}: {e}"))
    };
    Ok(Some((field("tls.crt")?, field("tls.key")?)))
}

/// The certificate the backend must have seen from the gateway
/// (`clientCert: {secret: ns/name}` of `expectedRequest`, else of the
/// request): the first certificate of that Secret's `tls.crt`, DER.
fn backend_client_cert(req: &RequestExpect, cluster: &Cluster) -> Result<Option<Vec<u8>>, String> {
    let want = match &req.expected_request {
        Some(e) => e.client_cert.as_ref(),
        None => req.request.client_cert.as_ref(),
    };
    let Some(nn) = want.and_then(|v| v.get("secret")).and_then(Value::as_str) else {
        return Ok(None);
    };
    let (ns, name) = nn
        .split_once('/')
        .ok_or_else(|| format!("Secret {nn:?} is not namespace/name"))?;
    let key = StoreKey::new("Secret", Some(ns), name);
    let pem = cluster
        .get(&key)
        .and_then(|s| s.get("data"))
        .and_then(|d| d.get("tls.crt"))
        .and_then(Value::as_str)
        .ok_or_else(|| format!("backend client certificate: {key} has no tls.crt"))?;
    let pem = base64::engine::general_purpose::STANDARD
        .decode(pem.split_whitespace().collect::<String>())
        .map_err(|e| format!("backend client certificate: {key} tls.crt: {e}"))?;
    use rustls::pki_types::pem::PemObject as _;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(&pem)
        .map_err(|e| format!("backend client certificate: {key} tls.crt: {e}"))?;
    Ok(Some(der.as_ref().to_vec()))
}

/// Where to connect, with TLS when `tls`: SNI from `tls.serverName`, else
/// `request.sni`, else the Host.
fn target(req: &RequestExpect, ctx: &Context<'_>, tls: bool, host: &str) -> Result<Target, String> {
    let addr = addr(req, ctx, tls)?;
    let tls = if tls {
        let server_name = req
            .tls
            .as_ref()
            .and_then(|t| t.server_name.clone())
            .or_else(|| req.request.sni.clone())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| host.split(':').next().unwrap_or(host).to_string());
        Some(Tls {
            server_name,
            roots: roots(req, ctx.cluster)?,
            client_cert: client_cert(req, ctx.cluster)?,
        })
    } else {
        None
    };
    Ok(Target { addr, tls })
}

fn nonempty(s: &Option<String>) -> Option<&str> {
    s.as_deref().filter(|s| !s.is_empty())
}

/// The request with `gateway-api-conformance-request-id=<id>` appended to
/// its path and its expected path.
fn with_request_id(req: &RequestExpect, id: &str) -> RequestExpect {
    let add = |p: &str| {
        let sep = if p.contains('?') { '&' } else { '?' };
        format!("{p}{sep}gateway-api-conformance-request-id={id}")
    };
    let mut r = req.clone();
    let path = nonempty(&r.request.path).unwrap_or("/").to_string();
    r.request.path = Some(add(&path));
    if let Some(e) = &mut r.expected_request
        && let Some(p) = e.path.clone().filter(|p| !p.is_empty())
    {
        e.path = Some(add(&p));
    }
    r
}

/// A random UUID (version 4 layout): request ids and `{UUID}`.
fn request_id() -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        fastrand::u32(..),
        fastrand::u16(..),
        fastrand::u16(..0x1000),
        0x8000 | fastrand::u16(..0x4000),
        fastrand::u64(..1 << 48)
    )
}

/// An HTTP request, planned once and sent as often as the vector says.
struct HttpPlan {
    target: Target,
    proto: Proto,
    method: String,
    host: String,
    headers: HeaderMap,
    tls: bool,
    /// The certificate (DER) the backend must have seen from the gateway.
    backend_client_cert: Option<Vec<u8>>,
}

impl HttpPlan {
    fn new(req: &RequestExpect, ctx: &Context<'_>) -> Result<HttpPlan, String> {
        let r = &req.request;
        let h2 = matches!(r.protocol.as_deref(), Some("H2" | "H2C_PRIOR_KNOWLEDGE"));
        let tls = req.tls.is_some() || r.protocol.as_deref() == Some("H2");
        let gateway_addr = addr(req, ctx, tls)?;
        let host = nonempty(&r.host).map_or_else(|| gateway_addr.to_string(), str::to_string);
        let mut headers = client::header_map(&r.headers)?;
        if !req.backend_set_response_headers.is_empty() {
            let v = req
                .backend_set_response_headers
                .iter()
                .map(|(k, v)| format!("{k}:{v}"))
                .collect::<Vec<_>>()
                .join(",");
            headers.append(
                HeaderName::from_static("x-echo-set-header"),
                HeaderValue::from_str(&v).map_err(|e| format!("X-Echo-Set-Header: {e}"))?,
            );
        }
        Ok(HttpPlan {
            target: target(req, ctx, tls, &host)?,
            proto: if h2 { Proto::H2 } else { Proto::H1 },
            method: nonempty(&r.method).unwrap_or("GET").to_string(),
            host,
            headers,
            tls,
            backend_client_cert: backend_client_cert(req, ctx.cluster)?,
        })
    }

    async fn send(&self, path: &str) -> Result<Answer, String> {
        client::http(
            &self.target,
            self.proto,
            &self.method,
            path,
            &self.host,
            &self.headers,
            Bytes::new(),
        )
        .await
    }
}

fn path_of(req: &RequestExpect) -> String {
    nonempty(&req.request.path).unwrap_or("/").to_string()
}

/// The echo's report as what the backend received.
fn received(e: &Echoed) -> Received {
    let mut headers = HeaderMap::new();
    for (name, values) in &e.headers {
        let Ok(n) = HeaderName::from_bytes(name.as_bytes()) else {
            continue;
        };
        for v in values {
            if let Ok(v) = HeaderValue::from_str(v) {
                headers.append(n.clone(), v);
            }
        }
    }
    Received {
        method: e.method.clone(),
        path: e.path.clone(),
        host: e.host.clone(),
        headers,
    }
}

/// One HTTP answer against the plain expectation; the echo's report when
/// the backend answered with one.
fn judge_answer(
    req: &RequestExpect,
    a: &Answer,
    plan: &HttpPlan,
) -> Result<Option<Echoed>, String> {
    let tls = plan.tls;
    let location = a
        .headers
        .get(http::header::LOCATION)
        .and_then(|l| l.to_str().ok());
    check_answer(req, a.status, location, tls, false)?;
    if req.expect_failure.is_some() || !a.status.is_success() {
        return Ok(None);
    }
    let Some(e) = parse_echoed(&a.body) else {
        let no_body_expected = req
            .expected_request
            .as_ref()
            .is_some_and(|e| e.path.as_deref() == Some(""));
        if no_body_expected && nonempty(&req.namespace).is_none() {
            return Ok(None);
        }
        return Err(format!("answered {} without the echo's JSON", a.status));
    };
    check_who(req, &e.namespace, std::slice::from_ref(&e.pod))?;
    check_received(req, &received(&e))?;
    check_backend_tls(req, tls, &e, plan.backend_client_cert.as_deref())?;
    if expects_response_headers(req) {
        check_response_header_map(req, &a.headers)?;
    }
    if let Some(h) = nonempty(&req.backend_matches_request_header) {
        let values = e
            .headers
            .get(&gwcore_proxy::echo::canonical_header_name(h))
            .cloned()
            .unwrap_or_default();
        match values.as_slice() {
            [one] if e.pod.starts_with(one.as_str()) => {}
            [one] => {
                return Err(format!(
                    "answered by pod {}, which does not start with its {h}: {one}",
                    e.pod
                ));
            }
            other => {
                return Err(format!(
                    "the backend saw {} {h} headers, expected one",
                    other.len()
                ));
            }
        }
    }
    Ok(Some(e))
}

/// `sni` / `clientCert` the backend must have seen over TLS (of
/// `expectedRequest`, or of a plain request itself): the echo reports the
/// SNI of a TLS connection (`tls.serverName`); it does not report client
/// certificates, and gwcore-proxy presents none to backends.
fn check_backend_tls(
    req: &RequestExpect,
    tls: bool,
    e: &Echoed,
    client_cert_der: Option<&[u8]>,
) -> Result<(), String> {
    let (sni, cert) = match &req.expected_request {
        Some(e) => (nonempty(&e.sni), e.client_cert.as_ref()),
        None if !tls => (nonempty(&req.request.sni), req.request.client_cert.as_ref()),
        None => (None, req.request.client_cert.as_ref()),
    };
    let mut wanted = Vec::new();
    if let Some(s) = sni {
        match &e.tls {
            Some(t) if t.server_name == s => {}
            Some(t) => {
                return Err(format!(
                    "the backend saw SNI {:?}, expected {s}",
                    t.server_name
                ));
            }
            None => wanted.push(format!("SNI {s}")),
        }
    }
    if let Some(c) = cert {
        let seen = e.tls.as_ref().is_some_and(|t| {
            t.peer_certificates.iter().any(|pem| {
                use rustls::pki_types::pem::PemObject as _;
                rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes())
                    .is_ok_and(|der| Some(der.as_ref()) == client_cert_der)
            })
        });
        if !seen {
            wanted.push(format!("client certificate {c}"));
        }
    }
    if wanted.is_empty() {
        return Ok(());
    }
    if e.tls.is_none() {
        return Err(format!(
            "the backend was reached without TLS, expected it to see {}",
            wanted.join(" and ")
        ));
    }
    Err(format!(
        "the backend did not see {} (gwcore-proxy presents no client certificate to backends)",
        wanted.join(" and ")
    ))
}

/// One HTTP exchange and its judgement.
async fn http_sample(req: &RequestExpect, plan: &HttpPlan) -> Result<Option<Echoed>, String> {
    let answer = plan.send(&path_of(req)).await;
    match (req.expect_failure.as_deref(), answer) {
        (Some("transport"), Err(_)) => Ok(None),
        (Some("transport"), Ok(a)) => Err(format!(
            "answered {}, expected no HTTP answer at all",
            a.status
        )),
        (_, Err(e)) => Err(e),
        (_, Ok(a)) => judge_answer(req, &a, plan),
    }
}

async fn http(req: &RequestExpect, ctx: &Context<'_>) -> Result<(), String> {
    let plan = match HttpPlan::new(req, ctx) {
        Ok(p) => p,
        // No socket for the port: no HTTP answer at all.
        Err(_) if req.expect_failure.as_deref() == Some("transport") => return Ok(()),
        Err(e) => return Err(e),
    };
    if !req.weights.is_empty() {
        let plan = &plan;
        return weighted(req, |r| async move {
            let e = http_sample(r, plan).await?;
            e.map(|e| e.pod)
                .ok_or_else(|| "the answer names no pod".to_string())
        })
        .await;
    }
    if !req.mirrored_to.is_empty() {
        return mirrored(req, ctx, &plan).await;
    }
    if req.expect_failure.as_deref() == Some("status") {
        return failing_status(req, &plan).await;
    }
    for _ in 0..req.repeat.unwrap_or(1).max(1) {
        http_sample(&fresh_uuid(req), &plan).await?;
    }
    Ok(())
}

/// `{UUID}` in the paths: a fresh one per attempt (FORMAT.md), so that the
/// echo's `/retry` counts start over.
fn fresh_uuid(req: &RequestExpect) -> RequestExpect {
    let id = request_id();
    let mut r = req.clone();
    r.request.path = r.request.path.map(|p| p.replace("{UUID}", &id));
    if let Some(e) = &mut r.expected_request {
        e.path = e.path.take().map(|p| p.replace("{UUID}", &id));
    }
    r
}

/// `expectFailure: status`: three HTTP answers in a row, none 200, 408 or
/// 504; transport errors do not count.
async fn failing_status(req: &RequestExpect, plan: &HttpPlan) -> Result<(), String> {
    let mut answers = 0;
    let mut last_error = String::new();
    for _ in 0..10 {
        match plan.send(&path_of(&fresh_uuid(req))).await {
            Ok(a) => {
                judge_answer(req, &a, plan)?;
                answers += 1;
                if answers == 3 {
                    return Ok(());
                }
            }
            Err(e) => last_error = e,
        }
    }
    Err(format!(
        "{answers} HTTP answers in 10 tries, expected 3 failing ones; last error: {last_error}"
    ))
}

/// Runs `samples` of `one` at most [`CONCURRENCY`] at a time; each returns
/// the pod that answered.
async fn sample_pods<'r, F, Fut>(
    req: &'r RequestExpect,
    samples: u32,
    one: &F,
) -> Result<Vec<String>, String>
where
    F: Fn(&'r RequestExpect) -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    let mut pods = Vec::with_capacity(samples as usize);
    let mut left = samples;
    while left > 0 {
        let n = left.min(CONCURRENCY as u32);
        left -= n;
        let batch = futures_util::future::join_all((0..n).map(|_| one(req))).await;
        for r in batch {
            pods.push(r?);
        }
    }
    Ok(pods)
}

/// `weights`: every sample meets the plain expectation, and each backend's
/// share of the samples (pod name minus its last two `-` parts) is within
/// `tolerance` of its weight; weight 0 = no traffic. Up to `attempts`.
async fn weighted<'r, F, Fut>(req: &'r RequestExpect, one: F) -> Result<(), String>
where
    F: Fn(&'r RequestExpect) -> Fut,
    Fut: std::future::Future<Output = Result<String, String>>,
{
    let samples = req.samples.unwrap_or(100).max(1);
    let attempts = req.attempts.unwrap_or(1).max(1);
    let tolerance = req.tolerance.unwrap_or(0.05);
    let mut last = String::new();
    for _ in 0..attempts {
        let pods = sample_pods(req, samples, &one).await?;
        let mut counts: BTreeMap<String, u32> = BTreeMap::new();
        for p in &pods {
            *counts.entry(deployment_of(p).to_string()).or_default() += 1;
        }
        let share = |b: &str| f64::from(counts.get(b).copied().unwrap_or(0)) / f64::from(samples);
        let mut wrong = Vec::new();
        for (backend, weight) in &req.weights {
            let got = share(backend);
            let off = if *weight == 0.0 {
                got > 0.0
            } else {
                (got - weight).abs() > tolerance
            };
            if off {
                wrong.push(format!("{backend} {got:.3} (expected {weight})"));
            }
        }
        for b in counts.keys() {
            if !req.weights.contains_key(b) {
                wrong.push(format!("{b} {:.3} (expected none)", share(b)));
            }
        }
        if wrong.is_empty() {
            return Ok(());
        }
        last = format!("shares over {samples} samples: {}", wrong.join(", "));
    }
    Err(format!("{last} (after {attempts} attempts)"))
}

/// How many requests for `path` the pods of the mirror targets logged.
fn mirror_count(req: &RequestExpect, ctx: &Context<'_>, path: &str) -> Vec<(String, usize)> {
    req.mirrored_to
        .iter()
        .map(|m| {
            let n = ctx
                .pods
                .of_service(&m.namespace, &m.name)
                .iter()
                .filter_map(|p| ctx.pods.http_echo(p))
                .map(|e| e.seen().iter().filter(|s| *s == path).count())
                .sum();
            (format!("{}/{}", m.namespace, m.name), n)
        })
        .collect()
}

/// Waits until the mirrors' counts for `path` stop changing (or reach
/// `enough` on every target), at most [`MIRROR_WAIT`].
async fn settled_mirror_counts(
    req: &RequestExpect,
    ctx: &Context<'_>,
    path: &str,
    enough: usize,
) -> Vec<(String, usize)> {
    let start = tokio::time::Instant::now();
    let mut last = mirror_count(req, ctx, path);
    let mut still_since = tokio::time::Instant::now();
    loop {
        if last.iter().all(|(_, n)| *n >= enough)
            || start.elapsed() > MIRROR_WAIT
            || still_since.elapsed() > Duration::from_millis(500)
        {
            return last;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let now = mirror_count(req, ctx, path);
        if now != last {
            still_since = tokio::time::Instant::now();
            last = now;
        }
    }
}

/// The path the mirror's backend receives: the expected path, else the
/// request's.
fn mirrored_path(req: &RequestExpect) -> String {
    req.expected_request
        .as_ref()
        .and_then(|e| nonempty(&e.path))
        .map_or_else(|| path_of(req), str::to_string)
}

/// `mirroredTo`: the request succeeds and every mirror logs it; with
/// `percent`, `samples` requests per attempt are mirrored within
/// `toleranceStdDevs` binomial standard deviations.
async fn mirrored(req: &RequestExpect, ctx: &Context<'_>, plan: &HttpPlan) -> Result<(), String> {
    let percent = req.mirrored_to.iter().find_map(|m| m.percent);
    let Some(percent) = percent else {
        let r = if req.add_request_id {
            with_request_id(req, &request_id())
        } else {
            req.clone()
        };
        http_sample(&r, plan).await?;
        let path = mirrored_path(&r);
        let counts = settled_mirror_counts(&r, ctx, &path, 1).await;
        let missing: Vec<&String> = counts
            .iter()
            .filter(|(_, n)| *n == 0)
            .map(|(t, _)| t)
            .collect();
        return if missing.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "no mirrored copy of {path} reached {}",
                missing
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ))
        };
    };
    // First the request succeeds as it is.
    http_sample(req, plan).await?;
    let samples = req.samples.unwrap_or(100).max(1);
    let attempts = req.attempts.unwrap_or(1).max(1);
    let k = req.tolerance_std_devs.unwrap_or(3.0);
    let p = percent / 100.0;
    let n = f64::from(samples);
    let expected = n * p;
    let sd = (n * p * (1.0 - p)).sqrt();
    let mut last = String::new();
    for _ in 0..attempts {
        let r = with_request_id(req, &request_id());
        let path = mirrored_path(&r);
        sample_pods(&r, samples, &|r| async move {
            http_sample(r, plan).await.map(|_| String::new())
        })
        .await?;
        let counts = settled_mirror_counts(&r, ctx, &path, samples as usize).await;
        let wrong: Vec<String> = counts
            .iter()
            .filter(|(_, c)| (*c as f64 - expected).abs() > k * sd)
            .map(|(t, c)| format!("{t} got {c} of {samples}"))
            .collect();
        if wrong.is_empty() {
            return Ok(());
        }
        last = format!(
            "mirrored {} (expected {expected:.0} ± {:.1})",
            wrong.join(", "),
            k * sd
        );
    }
    Err(format!("{last} (after {attempts} attempts)"))
}

/// A gRPC call: `/<service>/<method>` with an empty message over HTTP/2.
async fn grpc_sample(req: &RequestExpect, ctx: &Context<'_>) -> Result<Option<String>, String> {
    let r = &req.request;
    let tls = req.tls.is_some();
    let gateway_addr = addr(req, ctx, tls)?;
    let host = nonempty(&r.authority)
        .or(nonempty(&r.host))
        .map_or_else(|| gateway_addr.to_string(), str::to_string);
    let target = target(req, ctx, tls, &host)?;
    let path = format!(
        "/{}/{}",
        r.service.as_deref().unwrap_or(""),
        r.method.as_deref().unwrap_or("")
    );
    let mut headers = client::header_map(&r.metadata)?;
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert(http::header::TE, HeaderValue::from_static("trailers"));
    let answer = client::http(
        &target,
        Proto::H2,
        "POST",
        &path,
        &host,
        &headers,
        grpc_frame(&[]),
    )
    .await;
    // A gRPC client reports a broken call as UNAVAILABLE: not OK.
    let (status, detail, body) = match answer {
        Ok(a) => {
            let code = a
                .trailers
                .get("grpc-status")
                .or_else(|| a.headers.get("grpc-status"))
                .and_then(|v| v.to_str().ok())
                .map(str::to_string);
            let ok = a.status == StatusCode::OK && code.as_deref() == Some("0");
            let status = match (ok, a.status) {
                (true, _) => StatusCode::OK,
                (false, StatusCode::OK) => StatusCode::BAD_GATEWAY,
                (false, s) => s,
            };
            let detail = format!(
                "HTTP {}, grpc-status {}",
                a.status,
                code.as_deref().unwrap_or("absent")
            );
            (status, detail, a.body)
        }
        Err(e) => (StatusCode::SERVICE_UNAVAILABLE, e, Bytes::new()),
    };
    check_answer(req, status, None, tls, true).map_err(|e| format!("{e} ({detail})"))?;
    if status != StatusCode::OK || req.expect_failure.is_some() {
        return Ok(None);
    }
    let echoed: GrpcEchoed = body
        .get(5..)
        .and_then(|m| serde_json::from_slice(m).ok())
        .ok_or_else(|| "the gRPC answer is not the echo's".to_string())?;
    if echoed.fully_qualified_method != path {
        return Err(format!(
            "the backend received {}, expected {path}",
            echoed.fully_qualified_method
        ));
    }
    check_who(req, &echoed.namespace, std::slice::from_ref(&echoed.pod))?;
    Ok(Some(echoed.pod))
}

async fn grpc(req: &RequestExpect, ctx: &Context<'_>) -> Result<(), String> {
    if !req.weights.is_empty() {
        return weighted(req, |r| async move {
            grpc_sample(r, ctx)
                .await?
                .ok_or_else(|| "the call was not answered OK".to_string())
        })
        .await;
    }
    for _ in 0..req.repeat.unwrap_or(1).max(1) {
        grpc_sample(req, ctx).await?;
    }
    Ok(())
}

/// One TCP echo exchange, judged; the pod that answered.
async fn tcp_sample(req: &RequestExpect, target: &Target) -> Result<String, String> {
    let a = client::tcp(target, req.connect_only).await?;
    let Some(t) = a.test else {
        return Ok(String::new());
    };
    if a.greeting.is_empty() {
        return Err("no greeting".to_string());
    }
    if let Some(b) = nonempty(&req.backend)
        && !t.pod.starts_with(&format!("{b}-"))
    {
        return Err(format!("answered by pod {}, expected {b}-*", t.pod));
    }
    if req.echo_only {
        return Ok(t.pod);
    }
    if let Some(ns) = nonempty(&req.namespace)
        && t.namespace != ns
    {
        return Err(format!(
            "answered from namespace {}, expected {ns}",
            t.namespace
        ));
    }
    let resp = &req.response;
    if let Some(want) = resp.backend_is_tls
        && t.tls != want
    {
        return Err(format!("the backend saw TLS: {}, expected {want}", t.tls));
    }
    if let Some(want) = nonempty(&resp.sni)
        && t.sni.as_deref() != Some(want)
    {
        return Err(format!("the backend saw SNI {:?}, expected {want}", t.sni));
    }
    if let Some(want) = nonempty(&resp.tls_protocol)
        && t.tls_protocol.as_deref() != Some(want)
    {
        return Err(format!(
            "the backend saw TLS protocol {:?}, expected {want}",
            t.tls_protocol
        ));
    }
    Ok(t.pod)
}

async fn tcp(req: &RequestExpect, ctx: &Context<'_>) -> Result<(), String> {
    let tls = req.tls.is_some();
    let host = req
        .tls
        .as_ref()
        .and_then(|t| t.server_name.clone())
        .unwrap_or_default();
    let target = target(req, ctx, tls, &host)?;
    if !req.weights.is_empty() {
        let target = &target;
        return weighted(req, |r| async move { tcp_sample(r, target).await }).await;
    }
    for _ in 0..req.repeat.unwrap_or(1).max(1) {
        tcp_sample(req, &target).await?;
    }
    Ok(())
}

/// FORMAT.md, udp: the echo's `service` and `namespace` fields exact,
/// `backendName` the pod name minus its last two `-` parts.
async fn udp(req: &RequestExpect, ctx: &Context<'_>) -> Result<(), String> {
    let addr = addr(req, ctx, false)?;
    let got = super::udp::echo(addr).await?;
    if let Some(want) = nonempty(&req.service)
        && got.service != want
    {
        return Err(format!(
            "answered for Service {}, expected {want}",
            got.service
        ));
    }
    if let Some(want) = nonempty(&req.namespace)
        && got.namespace != want
    {
        return Err(format!(
            "answered from namespace {}, expected {want}",
            got.namespace
        ));
    }
    if let Some(want) = nonempty(&req.backend_name)
        && deployment_of(&got.pod) != want
    {
        return Err(format!("answered by pod {}, expected {want}-*-*", got.pod));
    }
    Ok(())
}

/// FORMAT.md, dns: the query `request.question` / `request.type` (A when
/// absent); any DNS reply to it passes.
async fn dns(req: &RequestExpect, ctx: &Context<'_>) -> Result<(), String> {
    let addr = addr(req, ctx, false)?;
    let question = nonempty(&req.request.question)
        .ok_or_else(|| "a dns request without a question".to_string())?;
    let type_ = nonempty(&req.request.type_).unwrap_or("A");
    super::udp::dns(addr, question, type_).await.map(|_| ())
}

async fn tls_connect(req: &RequestExpect, ctx: &Context<'_>) -> Result<(), String> {
    let server_name = req
        .tls
        .as_ref()
        .and_then(|t| t.server_name.clone())
        .or_else(|| req.request.sni.clone())
        .unwrap_or_default();
    let addr = addr(req, ctx, true)?;
    let tls = Tls {
        server_name,
        roots: roots(req, ctx.cluster)?,
        client_cert: client_cert(req, ctx.cluster)?,
    };
    let result = client::tls_connect(addr, &tls).await;
    match (req.expect_failure.as_deref(), result) {
        (Some("rejected" | "transport"), Err(_)) | (None, Ok(())) => Ok(()),
        (Some(_), Ok(())) => Err("the TLS handshake succeeded, expected a refusal".to_string()),
        (_, Err(e)) => Err(e),
    }
}

async fn websocket(req: &RequestExpect, ctx: &Context<'_>) -> Result<(), String> {
    let r = &req.request;
    let tls = req.tls.is_some();
    let gateway_addr = addr(req, ctx, tls)?;
    let host = nonempty(&r.host).map_or_else(|| gateway_addr.to_string(), str::to_string);
    let target = target(req, ctx, tls, &host)?;
    let messages: Vec<WsMessage> = req
        .messages
        .iter()
        .map(|m| {
            if let Some(t) = m.get("text").and_then(Value::as_str) {
                Ok(WsMessage::Text(t.to_string()))
            } else if let Some(b) = m.get("binary").and_then(Value::as_array) {
                b.iter()
                    .map(|x| {
                        x.as_u64()
                            .and_then(|x| u8::try_from(x).ok())
                            .ok_or_else(|| format!("websocket binary message {m}: not bytes"))
                    })
                    .collect::<Result<Vec<u8>, String>>()
                    .map(WsMessage::Binary)
            } else {
                Err(format!("websocket message {m}: neither text nor binary"))
            }
        })
        .collect::<Result<_, _>>()?;
    // `{TEST_NAME}` is any string (FORMAT.md).
    let origin = r
        .origin
        .as_deref()
        .map(|o| o.replace("{TEST_NAME}", "wire"));
    client::websocket(&target, &host, &path_of(req), origin.as_deref(), &messages).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_go_into_the_query() {
        let mut req: RequestExpect = serde_norway::from_str(
            "{gateway: a/b, request: {path: /m}, expectedRequest: {path: /m}}",
        )
        .expect("a request");
        req = with_request_id(&req, "42");
        assert_eq!(
            req.request.path.as_deref(),
            Some("/m?gateway-api-conformance-request-id=42")
        );
        assert_eq!(
            req.expected_request.and_then(|e| e.path).as_deref(),
            Some("/m?gateway-api-conformance-request-id=42")
        );
        let q: RequestExpect =
            serde_norway::from_str("{gateway: a/b, request: {path: '/m?x=1'}}").expect("a request");
        assert_eq!(
            with_request_id(&q, "7").request.path.as_deref(),
            Some("/m?x=1&gateway-api-conformance-request-id=7")
        );
    }
}
