//! Isolation under hostile input (issue 7, item 1), at the wire level.
//!
//! The ACME scenario (the `hr` route is not allowed to attach) plus a route
//! guarded by a header match (`careers/careers-admin`: host
//! `admin.acme.example`, PathPrefix `/admin`, header `x-role: admin`) is
//! served by the real proxy with echo backends on loopback. A seeded
//! generator writes hostile HTTP/1 requests byte by byte on raw sockets,
//! and HTTP/2 (h2c prior knowledge) requests whose `:authority` and `host`
//! disagree. The compiled routing table of the running configuration is
//! the oracle. Asserted for every request:
//!
//! 1. an answer from an echo backend is one the table gives to that
//!    backend: for the request as an RFC 9112 server must read it (when it
//!    is unambiguous) and for the request as the backend received it; never
//!    `hr`'s backend; `careers-admin`'s only with `x-role: admin`;
//! 2. every request gets well-formed HTTP answers or a clean close, never
//!    a hang or stray bytes; requests that RFC 9112 says MUST be rejected
//!    get a 4xx or a close.
//!
//! The short run is part of `cargo test`. The long run:
//! `GWCORE_ISOLATION_LONG=1 cargo test --release -p gwcore-proxy --test
//! isolation -- --nocapture` (at least 100 000 distinct requests) prints
//! the figures reported in docs/isolation.md.

#[path = "isolation/decoding.rs"]
mod decoding;
#[path = "isolation/hostile.rs"]
mod hostile;
#[path = "isolation/wire.rs"]
mod wire;

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gwcore::model::{Kind, ObjectKey};
use gwcore::table::path::{normalize, prefix_matches};
use gwcore::table::slashes::{self, EscapedSlashes};
use gwcore::table::{Action, RequestHead, Table, normalize_host};
use gwcore_proxy::echo::Echoed;
use gwcore_proxy::provider::{Runtime, RuntimeOptions};
use gwcore_proxy::server::{ListenOptions, ServeOptions};
use http_body_util::{BodyExt, Full};

use decoding::DecodingBackend;
use hostile::Req;
use wire::Exchange;

const CONTROLLER: &str = "example.com/gateway-controller";

/// The extra route: `/admin` on `admin.acme.example`, only with
/// `x-role: admin`, to its own Service.
const ADMIN_ROUTE: &str = r#"
apiVersion: v1
kind: Service
metadata:
  name: careers-admin
  namespace: careers
spec:
  ports:
  - port: 9080
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: careers-admin
  namespace: careers
spec:
  parentRefs:
  - name: shared-gateway
    namespace: infra-ns
  hostnames:
  - admin.acme.example
  rules:
  - matches:
    - path:
        type: PathPrefix
        value: /admin
      headers:
      - name: x-role
        value: admin
    backendRefs:
    - name: careers-admin
      port: 9080
"#;

const HR: &str = "hr/hr";
const ADMIN: &str = "careers/careers-admin";

/// Each route's path as its owner means it, `hr` included: what a lenient
/// backend reading is compared with.
const INTENDED: &[(&str, &str)] = &[
    ("/careers", "careers/careers"),
    ("/product", "product/product"),
    ("/hr", HR),
    ("/admin", ADMIN),
];

/// A temporary folder removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new() -> TempDir {
        let p = std::env::temp_dir().join(format!(
            "gwcore-isolation-{}-{}",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

struct Fixture {
    _rt: Runtime,
    addr: SocketAddr,
    table: Arc<Judge>,
    /// Each Service's decoding backend, with the prefix its route owns
    /// (`None`: `hr`, which nothing may reach).
    backends: Vec<(Option<&'static str>, DecodingBackend)>,
    _dir: TempDir,
}

/// The oracle: the compiled table of the running configuration, and the
/// escaped-slashes setting it is served with.
struct Judge {
    table: Arc<Table>,
    setting: EscapedSlashes,
}

/// The Services, each with the prefix its route owns.
const SERVICES: &[(&str, &str, Option<&str>)] = &[
    ("hr", "hr", None),
    ("careers", "careers", Some("/careers")),
    ("product", "product", Some("/product")),
    ("careers", "careers-admin", Some("/admin")),
];

/// The gateway's default setting (no PathPolicy).
async fn start() -> Fixture {
    start_with(EscapedSlashes::default()).await
}

/// The ACME scenario and the admin route, every Service served by a
/// [`DecodingBackend`], with `setting` as the proxy's default.
async fn start_with(setting: EscapedSlashes) -> Fixture {
    let dir = TempDir::new();
    let acme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/acme/acme.yaml");
    std::fs::copy(&acme, dir.0.join("acme.yaml")).unwrap();
    std::fs::write(dir.0.join("admin.yaml"), ADMIN_ROUTE).unwrap();
    let mut backends = Vec::new();
    let mut slices = String::new();
    for (ns, name, prefix) in SERVICES {
        let b = DecodingBackend::start(ns, name).await;
        slices.push_str(&format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-decoding, namespace: {ns}, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{port: {}}}]\nendpoints: [{{addresses: [127.0.0.1]}}]\n",
            b.addr.port()
        ));
        backends.push((*prefix, b));
    }
    std::fs::write(dir.0.join("endpoints.yaml"), slices).unwrap();
    let mut listen = ListenOptions::default();
    listen.map.insert(80, "127.0.0.1:0".parse().unwrap());
    let rt = Runtime::start_with(
        vec![dir.0.clone()],
        {
            let mut o = RuntimeOptions::new(CONTROLLER);
            o.listen = listen;
            o
        },
        ServeOptions {
            escaped_slashes: setting,
            ..ServeOptions::default()
        },
    )
    .await
    .unwrap();
    let addr = rt.local_addr(80).expect("port 80 is served");
    let cfg = rt.proxy().config();
    let gw = ObjectKey::new(Kind::Gateway, "infra-ns", "shared-gateway");
    let table = cfg.tables.get(&gw).expect("the gateway's table").clone();
    Fixture {
        _rt: rt,
        addr,
        table: Arc::new(Judge { table, setting }),
        backends,
        _dir: dir,
    }
}

/// What the table does with a request.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Verdict {
    /// Forwarded to this Service (`namespace/name`).
    Forward(String),
    /// Answered by the gateway with this status.
    Status(u16),
}

fn oracle(judge: &Judge, method: &str, host: &str, pq: &str, roles: &[String]) -> Verdict {
    let mut head = RequestHead::new(80, host, method, pq);
    for r in roles {
        head = head.with_header("x-role", r);
    }
    let d = match slashes::route(&judge.table, &mut head, judge.setting) {
        Ok(d) => d,
        Err(slashes::Answer::Redirect(_)) => return Verdict::Status(307),
        Err(_) => return Verdict::Status(400),
    };
    verdict(&d)
}

/// What the table alone does with a request (no escaped-slashes setting):
/// whose path a decoding backend's reading is.
fn table_verdict(table: &Table, method: &str, host: &str, pq: &str, roles: &[String]) -> Verdict {
    let mut head = RequestHead::new(80, host, method, pq);
    for r in roles {
        head = head.with_header("x-role", r);
    }
    verdict(&table.find(&head))
}

fn verdict(d: &gwcore::table::Decision<'_>) -> Verdict {
    match &d.action {
        Action::Forward(f) => match f.backends()[0].target() {
            Ok(t) => Verdict::Forward(format!("{}/{}", t.service.namespace, t.service.name)),
            Err(_) => Verdict::Status(500),
        },
        _ => Verdict::Status(d.status().map_or(0, |s| s.as_u16())),
    }
}

fn pct_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%'
            && i + 2 < b.len()
            && let (Some(h), Some(l)) = (
                (b[i + 1] as char).to_digit(16),
                (b[i + 2] as char).to_digit(16),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One lenient way of reading a path, as backends behind gateways do.
#[derive(Debug, Clone, Copy)]
struct Reader {
    name: &'static str,
    /// How many times `%XX` escapes are decoded.
    decodes: usize,
    /// Whether `\` separates segments.
    backslash: bool,
    /// Whether `;params` are dropped from each segment.
    params: bool,
}

/// Each lenient behaviour alone, then all of them together.
const READERS: &[Reader] = &[
    Reader {
        name: "decodes once, reads \\ as / (%2F, %5C separate)",
        decodes: 1,
        backslash: true,
        params: false,
    },
    Reader {
        name: "decodes twice (%252e is a dot, %2F separates)",
        decodes: 2,
        backslash: false,
        params: false,
    },
    Reader {
        name: "drops ;params",
        decodes: 0,
        backslash: false,
        params: true,
    },
];

/// The path a lenient backend serves for `path` (as it received it):
/// percent-decoded twice, `\` read as `/`, `;params` dropped from each
/// segment, dot segments resolved, repeated `/` merged.
fn lenient(path: &str) -> String {
    read_as(
        Reader {
            name: "all",
            decodes: 2,
            backslash: true,
            params: true,
        },
        path,
    )
}

fn read_as(r: Reader, path: &str) -> String {
    let mut decoded = path.split('?').next().unwrap_or("").to_owned();
    for _ in 0..r.decodes {
        decoded = pct_decode(&decoded);
    }
    if r.backslash {
        decoded = decoded.replace('\\', "/");
    }
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        let seg = if r.params {
            seg.split(';').next().unwrap_or("")
        } else {
            seg
        };
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    format!("/{}", out.join("/"))
}

fn intended_owner(path: &str) -> Option<&'static str> {
    INTENDED
        .iter()
        .find(|(p, _)| prefix_matches(p, path))
        .map(|(_, s)| *s)
}

/// Figures of a run.
#[derive(Default)]
struct Tally {
    tried: u64,
    distinct: u64,
    h2_tried: u64,
    /// Responses by status (`closed`/`reset` for no answer).
    by_status: BTreeMap<String, u64>,
    /// Echo answers by backend.
    by_backend: BTreeMap<String, u64>,
    /// Isolation breaches, described.
    breaches: Vec<String>,
    /// No answer in time, or bytes that are not HTTP.
    failures: Vec<String>,
    /// Requests RFC 9112 says MUST be rejected that were not, by reason.
    not_rejected: BTreeMap<&'static str, u64>,
    not_rejected_examples: BTreeMap<&'static str, String>,
    /// The table would forward, the proxy (hyper) refused first.
    stricter: u64,
    /// The table and the proxy disagree otherwise (neither forwards to a
    /// wrong backend, but the status differs).
    mismatches: Vec<String>,
    /// Answers of an HTTP/2 request whose `host` and `:authority` disagree.
    h2_disagree: BTreeMap<u16, u64>,
    /// Backend answers whose lenient reading lands on another route's path.
    lenient_other: u64,
    /// ... of which on `/hr`.
    lenient_hr: u64,
    /// ... same, case-insensitively.
    lenient_other_nocase: u64,
    lenient_examples: Vec<String>,
    /// ... by each lenient behaviour alone.
    lenient_by_reader: BTreeMap<&'static str, u64>,
    /// Requests that reached some backend.
    forwarded: u64,
    /// Backend answers whose Host carried userinfo (`@`): of an
    /// absolute-form target, or in the Host field itself (see the
    /// `finding_` tests).
    host_userinfo: u64,
    host_userinfo_example: Option<String>,
    /// HTTP/2 HEAD requests answered with a stream error (see
    /// `h2_head_of_a_gateway_answer_has_no_content`; fixed).
    h2_head_errors: u64,
    /// Backend answers whose `X-Forwarded-Host` names another host than
    /// the one the request was routed by (a client-sent value is kept).
    xfh_other: u64,
    /// How often the echo backends' logs were read.
    backend_log_looks: u64,
    /// Per shape: tried, reached a backend, refused (4xx other than
    /// 404/421, or closed), 404/421 from the gateway, other answers.
    by_shape: BTreeMap<&'static str, [u64; 5]>,
}

impl Tally {
    fn merge(&mut self, o: Tally) {
        self.tried += o.tried;
        self.h2_tried += o.h2_tried;
        for (k, v) in o.by_status {
            *self.by_status.entry(k).or_default() += v;
        }
        for (k, v) in o.by_backend {
            *self.by_backend.entry(k).or_default() += v;
        }
        self.breaches.extend(o.breaches);
        self.failures.extend(o.failures);
        for (k, v) in o.not_rejected {
            *self.not_rejected.entry(k).or_default() += v;
        }
        for (k, v) in o.not_rejected_examples {
            self.not_rejected_examples.entry(k).or_insert(v);
        }
        self.stricter += o.stricter;
        self.mismatches.extend(o.mismatches);
        for (k, v) in o.h2_disagree {
            *self.h2_disagree.entry(k).or_default() += v;
        }
        self.lenient_other += o.lenient_other;
        self.lenient_hr += o.lenient_hr;
        self.lenient_other_nocase += o.lenient_other_nocase;
        for (k, v) in o.lenient_by_reader {
            *self.lenient_by_reader.entry(k).or_default() += v;
        }
        for e in o.lenient_examples {
            if self.lenient_examples.len() < 12 {
                self.lenient_examples.push(e);
            }
        }
        self.forwarded += o.forwarded;
        self.host_userinfo += o.host_userinfo;
        if self.host_userinfo_example.is_none() {
            self.host_userinfo_example = o.host_userinfo_example;
        }
        self.h2_head_errors += o.h2_head_errors;
        self.xfh_other += o.xfh_other;
        for (k, v) in o.by_shape {
            let e = self.by_shape.entry(k).or_default();
            for i in 0..5 {
                e[i] += v[i];
            }
        }
    }

    /// Checks one answer that came from an echo backend; `sent` is the
    /// unambiguous reading of the request it answers, when known.
    fn reached(
        &mut self,
        table: &Judge,
        e: &Echoed,
        sent: Option<&hostile::Interp>,
        what: &dyn Fn() -> String,
    ) {
        let backend = format!("{}/{}", e.namespace, e.service);
        *self.by_backend.entry(backend.clone()).or_default() += 1;
        self.forwarded += 1;
        if backend == HR {
            self.breaches
                .push(format!("reached the unattached hr backend: {}", what()));
        }
        let roles = e.headers.get("X-Role").cloned().unwrap_or_default();
        // The table routes an absolute-form target by its host, without
        // userinfo; the proxy forwards the authority as Host, userinfo
        // included (a finding, counted apart from isolation).
        let host = e.host.rsplit('@').next().unwrap_or("");
        if e.host.contains('@') {
            self.host_userinfo += 1;
            self.host_userinfo_example.get_or_insert_with(what);
        }
        let as_received = oracle(table, &e.method, host, &e.path, &roles);
        if e.headers
            .get("X-Forwarded-Host")
            .is_some_and(|v| v.iter().any(|x| normalize_host(x) != normalize_host(host)))
        {
            self.xfh_other += 1;
        }
        if as_received != Verdict::Forward(backend.clone()) {
            self.breaches.push(format!(
                "{backend} received {} {} (host {:?}, x-role {roles:?}), which the table answers {as_received:?}: {}",
                e.method,
                e.path,
                e.host,
                what()
            ));
        }
        if backend == ADMIN && (roles != ["admin"] || normalize_host(host) != "admin.acme.example")
        {
            self.breaches.push(format!(
                "the admin backend answered without x-role: admin on its host: {}",
                what()
            ));
        }
        if let Some(i) = sent {
            let v = oracle(table, &i.method, &i.host, &i.path_and_query, &i.roles);
            if v != Verdict::Forward(backend.clone()) {
                self.breaches.push(format!(
                    "{backend} answered a request the table answers {v:?}: {}",
                    what()
                ));
            }
        }
        let l = lenient(&e.path);
        if let Some(owner) = intended_owner(&l).filter(|o| *o != backend) {
            self.lenient_other += 1;
            if owner == HR {
                self.lenient_hr += 1;
            }
            if self.lenient_examples.len() < 12 {
                self.lenient_examples
                    .push(format!("{backend} got {:?}, read leniently {l:?}", e.path));
            }
        }
        if intended_owner(&l.to_ascii_lowercase()).is_some_and(|o| o != backend) {
            self.lenient_other_nocase += 1;
        }
        for r in READERS {
            if intended_owner(&read_as(*r, &e.path)).is_some_and(|o| o != backend) {
                *self.lenient_by_reader.entry(r.name).or_default() += 1;
            }
        }
    }
}

fn echoed(r: &wire::Response) -> Option<Echoed> {
    if r.status != 200 {
        return None;
    }
    serde_json::from_slice(&r.body).ok()
}

/// Short description of a request for messages: its bytes, cut.
fn show(bytes: &[u8]) -> String {
    let cut = &bytes[..bytes.len().min(600)];
    format!(
        "{:?}{}",
        String::from_utf8_lossy(cut),
        if bytes.len() > 600 { "..." } else { "" }
    )
}

fn check_h1(table: &Judge, req: &Req, ex: Exchange, t: &mut Tally) {
    t.tried += 1;
    let what = || show(&req.bytes);
    let big = req
        .shapes
        .iter()
        .any(|s| matches!(*s, "header:huge-value" | "header:many" | "path:overlong"));
    let class = match &ex {
        Exchange::Answered(rs) if echoed(&rs[0]).is_some() => 1,
        Exchange::Answered(rs) if matches!(rs[0].status, 404 | 421) => 3,
        Exchange::Answered(rs) if (400..500).contains(&rs[0].status) => 2,
        Exchange::Answered(_) => 4,
        _ => 2,
    };
    for s in &req.shapes {
        let e = t.by_shape.entry(s).or_default();
        e[0] += 1;
        e[class] += 1;
    }
    match ex {
        Exchange::Answered(rs) => {
            if rs.len() > 1 && !req.multi {
                t.failures
                    .push(format!("{} answers to one request: {}", rs.len(), what()));
            }
            for (i, r) in rs.iter().enumerate() {
                *t.by_status.entry(r.status.to_string()).or_default() += 1;
                if let Some(e) = echoed(r) {
                    let sent = if i == 0 { req.interp.as_ref() } else { None };
                    t.reached(table, &e, sent, &what);
                }
            }
            let first = &rs[0];
            if let Some(reason) = req.must_reject
                && !(400..500).contains(&first.status)
            {
                *t.not_rejected.entry(reason).or_default() += 1;
                t.not_rejected_examples
                    .entry(reason)
                    .or_insert_with(|| format!("{} for {}", first.status, what()));
            }
            if let Some(i) = &req.interp
                && echoed(first).is_none()
            {
                match oracle(table, &i.method, &i.host, &i.path_and_query, &i.roles) {
                    Verdict::Forward(_) if (400..500).contains(&first.status) => t.stricter += 1,
                    Verdict::Status(s) if s == first.status => {}
                    // Limits and syntax checks of the HTTP layer come first.
                    Verdict::Status(_) if matches!(first.status, 400 | 413 | 414 | 431) => {
                        t.stricter += 1
                    }
                    // HEAD answers have no body to tell the backend by.
                    Verdict::Forward(_) if i.method == "HEAD" && first.status == 200 => {}
                    v => t.mismatches.push(format!(
                        "table {v:?}, proxy {}: {}",
                        first.status,
                        what()
                    )),
                }
            }
        }
        Exchange::Closed | Exchange::Reset => {
            let k = if matches!(ex, Exchange::Closed) {
                "closed"
            } else {
                "reset"
            };
            *t.by_status.entry(k.into()).or_default() += 1;
            if req.must_reject.is_none() && !big {
                t.failures
                    .push(format!("{k} without an answer: {}", what()));
            }
        }
        Exchange::Hang(got) => t.failures.push(format!(
            "no complete answer in time (got {:?}): {}",
            String::from_utf8_lossy(&got[..got.len().min(200)]),
            what()
        )),
        Exchange::Garbled(g) => t.failures.push(format!("{g}: {}", what())),
    }
}

/// Generates `n` distinct requests from `seed`.
fn generate(seed: u64, n: usize) -> Vec<Req> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let r = hostile::request(&mut rng);
        let mut h = std::collections::hash_map::DefaultHasher::new();
        r.bytes.hash(&mut h);
        if seen.insert(h.finish()) {
            out.push(r);
        }
    }
    out
}

async fn run_h1(f: &Fixture, reqs: Arc<Vec<Req>>, workers: usize, timeout: Duration) -> Tally {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (reqs, next, table, addr) = (reqs.clone(), next.clone(), f.table.clone(), f.addr);
        tasks.push(tokio::spawn(async move {
            let mut t = Tally::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(req) = reqs.get(i) else { break };
                let head_first = req.bytes.starts_with(b"HEAD ");
                let ex = wire::exchange(
                    addr,
                    &req.bytes,
                    head_first,
                    timeout,
                    Duration::from_millis(300),
                )
                .await;
                check_h1(&table, req, ex, &mut t);
            }
            t
        }));
    }
    let mut t = Tally {
        distinct: reqs.len() as u64,
        ..Tally::default()
    };
    for task in tasks {
        t.merge(task.await.unwrap());
    }
    t
}

/// `:authority` values an `http::Uri` accepts.
const H2_AUTHORITIES: &[&str] = &[
    "acme.example",
    "admin.acme.example",
    "ADMIN.acme.example",
    "admin.acme.example.",
    "admin.acme.example:80",
    "admin.acme.example:8080",
    "127.0.0.1",
    "[::1]:80",
    "evil.example",
    "xadmin.acme.example",
];

async fn h2_connect(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    send
}

/// HTTP/2 requests over prior-knowledge connections: `:authority` and
/// `host` disagree (or agree, or `host` is absent), paths and `x-role` as
/// in HTTP/1.
async fn run_h2(f: &Fixture, seed: u64, n: usize) -> Tally {
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut t = Tally::default();
    let mut seen = HashSet::new();
    let mut batch = Vec::new();
    // One connection per batch of 32 streams: the client closes a
    // connection after too many stream errors (h2's
    // `max_local_error_reset_streams`), which the HEAD finding causes.
    let mut send = h2_connect(f.addr).await;
    while t.h2_tried < n as u64 {
        let g = hostile::request(&mut rng);
        let Some(i) = g.interp else { continue };
        if !i.path_and_query.starts_with('/') {
            continue;
        }
        let authority = H2_AUTHORITIES[rng.usize(..H2_AUTHORITIES.len())];
        let host = match rng.u32(..4) {
            0 => None,
            1 => Some(authority.to_owned()),
            _ => Some(H2_AUTHORITIES[rng.usize(..H2_AUTHORITIES.len())].to_owned()),
        };
        let mut b = http::Request::builder()
            .method(i.method.as_str())
            .uri(format!("http://{authority}{}", i.path_and_query));
        if let Some(h) = &host {
            b = b.header("host", h.as_str());
        }
        for r in &i.roles {
            b = b.header("x-role", r.as_str());
        }
        let Ok(req) = b.body(Full::new(Bytes::new())) else {
            continue;
        };
        let key = format!("{:?} {:?} {:?}", req.uri(), req.headers(), req.method());
        if !seen.insert(key.clone()) {
            continue;
        }
        t.h2_tried += 1;
        let sent = hostile::Interp {
            method: i.method.clone(),
            host: authority.to_owned(),
            path_and_query: req
                .uri()
                .path_and_query()
                .map_or("/".to_owned(), |p| p.as_str().to_owned()),
            roles: i.roles.clone(),
        };
        let disagree = host
            .as_deref()
            .is_some_and(|h| normalize_host(h) != normalize_host(authority));
        // The proxy compares the two values as written (ASCII case aside).
        let differs = host
            .as_deref()
            .is_some_and(|h| !h.eq_ignore_ascii_case(authority));
        let mut sender = send.clone();
        batch.push(async move {
            let res = tokio::time::timeout(Duration::from_secs(10), async {
                let resp = sender.send_request(req).await?;
                let status = resp.status().as_u16();
                let body = resp.into_body().collect().await?.to_bytes();
                Ok::<_, hyper::Error>((status, body))
            })
            .await;
            (key, sent, disagree || differs, res)
        });
        if batch.len() == 32 || t.h2_tried == n as u64 {
            for (key, sent, disagree, res) in futures_util::future::join_all(batch.drain(..)).await
            {
                let what = || format!("h2 {key}");
                match res {
                    Err(_) => t.failures.push(format!("no answer in time: {}", what())),
                    Ok(Err(_)) if key.ends_with(" HEAD") => t.h2_head_errors += 1,
                    Ok(Err(e)) => t.failures.push(format!("{e}: {}", what())),
                    Ok(Ok((status, body))) => {
                        *t.by_status.entry(format!("h2 {status}")).or_default() += 1;
                        if disagree {
                            *t.h2_disagree.entry(status).or_default() += 1;
                        }
                        let r = wire::Response {
                            status,
                            body: body.to_vec(),
                        };
                        if let Some(e) = echoed(&r) {
                            t.reached(&f.table, &e, Some(&sent), &what);
                        } else if disagree && status == 400 {
                            // RFC 9113 §8.3.1: a Host that differs from
                            // :authority SHOULD make the request malformed.
                        } else {
                            let v = oracle(
                                &f.table,
                                &sent.method,
                                &sent.host,
                                &sent.path_and_query,
                                &sent.roles,
                            );
                            match v {
                                Verdict::Status(s) if s == status => {}
                                Verdict::Forward(_) if sent.method == "HEAD" && status == 200 => {}
                                // The proxy's limits (target length, header
                                // count) come before routing.
                                _ if matches!(status, 414 | 431) => t.stricter += 1,
                                v => t
                                    .mismatches
                                    .push(format!("table {v:?}, proxy {status}: {}", what())),
                            }
                        }
                    }
                }
            }
            send = h2_connect(f.addr).await;
        }
    }
    t
}

/// What every echo backend remembers of the last requests it received must
/// be its route's: nothing at all for `hr`.
fn check_backend_logs(f: &Fixture, found: &mut BTreeSet<String>) {
    for (prefix, b) in &f.backends {
        let who = format!("{}/{}", b.identity.namespace, b.identity.service);
        for s in b.take() {
            let path = s.received.split('?').next().unwrap_or("");
            let ok = prefix.is_some_and(|pre| {
                normalize(path).is_ok_and(|n| n == path && prefix_matches(pre, path))
            });
            if !ok {
                found.insert(format!("the {who} backend received {:?}", s.received));
            }
            // What it serves, decoding `%2F` and `%5C`, must be a path the
            // table gives it.
            let host = s.host.rsplit('@').next().unwrap_or("");
            for read in [&s.read_as_separators, &s.read_slash_only] {
                let v = table_verdict(&f.table.table, &s.method, host, read, &s.roles);
                if v != Verdict::Forward(who.clone()) {
                    found.insert(format!(
                        "the {who} backend received {:?} and, decoding escaped separators, serves {read:?}, which the table answers {v:?} (host {host:?}, x-role {:?})",
                        s.received, s.roles
                    ));
                }
            }
        }
    }
}

fn report(t: &Tally, elapsed: Duration) {
    println!(
        "isolation: {} HTTP/1 requests tried ({} distinct), {} HTTP/2 requests, in {:.1}s",
        t.tried,
        t.distinct,
        t.h2_tried,
        elapsed.as_secs_f64()
    );
    println!(
        "isolation: breaches: {} (backend logs read {} times)",
        t.breaches.len(),
        t.backend_log_looks
    );
    for b in t.breaches.iter().take(20) {
        println!("  BREACH {b}");
    }
    println!(
        "isolation: failures (hang, stray bytes, no answer): {}",
        t.failures.len()
    );
    for b in t.failures.iter().take(20) {
        println!("  FAIL {b}");
    }
    println!("isolation: answers by status: {:?}", t.by_status);
    println!("isolation: echo answers by backend: {:?}", t.by_backend);
    println!(
        "isolation: forwarded {}; refused by the HTTP layer where the table would have answered otherwise: {}",
        t.forwarded, t.stricter
    );
    println!(
        "isolation: status differs from the table's: {}",
        t.mismatches.len()
    );
    for m in t.mismatches.iter().take(10) {
        println!("  MISMATCH {m}");
    }
    println!(
        "isolation: RFC 9112 MUST-reject requests not answered 4xx: {:?}",
        t.not_rejected
    );
    for (k, v) in &t.not_rejected_examples {
        println!("  e.g. {k}: {v}");
    }
    println!(
        "isolation: HTTP/2 with a host field differing from :authority, answers by status: {:?}",
        t.h2_disagree
    );
    println!(
        "isolation: HTTP/2 HEAD answered with a stream error: {}",
        t.h2_head_errors
    );
    println!(
        "isolation: backend answers with an X-Forwarded-Host other than the routed host: {}",
        t.xfh_other
    );
    println!(
        "isolation: backend answers with userinfo (`@`) in Host: {}{}",
        t.host_userinfo,
        t.host_userinfo_example
            .as_ref()
            .map_or(String::new(), |e| format!(", e.g. {e}"))
    );
    println!(
        "isolation: by shape: [tried, reached a backend, refused (4xx, close), 404/421, other]"
    );
    for (k, v) in &t.by_shape {
        println!("  {k:32} {v:?}");
    }
    println!(
        "isolation: lenient reading (decode twice, \\ as /, drop ;params) lands on another route's path: {} of {} forwarded ({} on /hr; {} case-insensitively)",
        t.lenient_other, t.forwarded, t.lenient_hr, t.lenient_other_nocase
    );
    for (k, v) in &t.lenient_by_reader {
        println!("  a backend that only {k}: {v}");
    }
    for e in &t.lenient_examples {
        println!("  e.g. {e}");
    }
}

/// The RFC 9112 MUST-reject rules that the proxy does not enforce yet
/// (the Host rules of §3.2 are enforced: see `rfc9112_host_rules_are_enforced`).
/// Every other MUST-reject shape must get a 4xx or a close.
const KNOWN_NOT_REJECTED: &[&str] = &[
    // The head is forwarded before the body is read: a broken chunked body
    // is answered 400 when it fails the exchange, but a backend that
    // answers without reading the body (a GET) has already answered.
    "an invalid chunk size (RFC 9112 §7.1)",
];

fn assert_clean(t: &Tally) {
    assert!(
        t.breaches.is_empty(),
        "isolation breaches:\n{}",
        t.breaches.join("\n")
    );
    assert!(
        t.failures.is_empty(),
        "failures:\n{}",
        t.failures.join("\n")
    );
    assert!(
        t.mismatches.is_empty(),
        "mismatches:\n{}",
        t.mismatches.join("\n")
    );
    let unexpected: Vec<_> = t
        .not_rejected
        .keys()
        .filter(|k| !KNOWN_NOT_REJECTED.contains(k))
        .collect();
    assert!(
        unexpected.is_empty(),
        "MUST-reject requests answered otherwise: {unexpected:?}: {:?}",
        t.not_rejected_examples
    );
}

async fn run(seed: u64, n: usize, h2: usize, workers: usize, timeout: Duration) -> Tally {
    run_with(
        EscapedSlashes::default(),
        Vec::new(),
        seed,
        n,
        h2,
        workers,
        timeout,
    )
    .await
}

/// [`run`] with `setting` as the gateway's default, and `extra` requests
/// after the generated ones.
async fn run_with(
    setting: EscapedSlashes,
    extra: Vec<Req>,
    seed: u64,
    n: usize,
    h2: usize,
    workers: usize,
    timeout: Duration,
) -> Tally {
    let f = start_with(setting).await;
    let started = Instant::now();
    let mut reqs = generate(seed, n);
    reqs.extend(extra);
    let reqs = Arc::new(reqs);
    let done = AtomicBool::new(false);
    let work = async {
        let mut t = run_h1(&f, reqs, workers, timeout).await;
        t.merge(run_h2(&f, seed ^ 0x5eed, h2).await);
        done.store(true, Ordering::SeqCst);
        t
    };
    // The backends' own logs, read every 20 ms while the requests run (an
    // echo backend remembers its last 1024 paths): a request smuggled to a
    // backend behind the proxy's back would show there, answered or not.
    let watch = async {
        let mut found = BTreeSet::new();
        let mut looks = 0u64;
        loop {
            let last = done.load(Ordering::SeqCst);
            check_backend_logs(&f, &mut found);
            looks += 1;
            if last {
                break (found, looks);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let (mut t, (found, looks)) = tokio::join!(work, watch);
    t.breaches.extend(found);
    t.backend_log_looks = looks;
    report(&t, started.elapsed());
    t
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_never_cross_routes() {
    let t = run(7, 3000, 300, 8, Duration::from_secs(20)).await;
    assert!(t.forwarded > 100, "the generator reaches backends too");
    assert!(t.by_backend.contains_key(ADMIN), "and the admin route");
    assert_clean(&t);
}

/// Under `setting`, the generated requests and every spelling of the
/// escaped-separator family: no breach, the decoding backends included;
/// the family's figures `[tried, reached a backend, refused, 404/421,
/// other]`.
async fn escaped_slashes_run(setting: EscapedSlashes) -> [u64; 5] {
    let family = hostile::escaped_slashes();
    let t = run_with(setting, family, 18, 1000, 100, 8, Duration::from_secs(20)).await;
    assert!(t.forwarded > 30, "the requests reach backends");
    assert_clean(&t);
    t.by_shape["path:escaped-separator-family"]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escaped_slashes_kept_never_reach_another_route() {
    let [tried, reached, refused, ..] = escaped_slashes_run(EscapedSlashes::KeepUnchanged).await;
    // Those whose decoded path stays in their route are served as sent.
    assert!(
        reached > 0 && refused > 0,
        "{reached} reached, {refused} refused of {tried}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escaped_slashes_rejected_never_reach_a_backend() {
    let [tried, reached, refused, ..] = escaped_slashes_run(EscapedSlashes::RejectRequest).await;
    assert_eq!((reached, refused), (0, tried));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escaped_slashes_redirected_never_reach_a_backend() {
    let [tried, reached, _, _, other] =
        escaped_slashes_run(EscapedSlashes::UnescapeAndRedirect).await;
    // Every one is answered 307 (checked against the oracle).
    assert_eq!((reached, other), (0, tried));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn escaped_slashes_decoded_reach_their_decoded_route_only() {
    let [tried, reached, ..] = escaped_slashes_run(EscapedSlashes::UnescapeAndForward).await;
    assert!(reached > 0, "{reached} of {tried} reached a backend");
}

/// The long run: set `GWCORE_ISOLATION_LONG=1` (and use `--release`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_requests_never_cross_routes_long() {
    if std::env::var_os("GWCORE_ISOLATION_LONG").is_none() {
        return;
    }
    let t = run(20_261_126, 100_000, 10_000, 16, Duration::from_secs(30)).await;
    assert!(t.distinct >= 100_000);
    assert_clean(&t);
}

#[test]
fn lenient_reading_examples() {
    assert_eq!(lenient("/careers/..;/hr"), "/hr");
    assert_eq!(lenient("/careers/%252e%252e/hr?x=1"), "/hr");
    assert_eq!(lenient("/careers/..%5Chr"), "/hr");
    assert_eq!(lenient("/careers/..%2Fhr"), "/hr");
    assert_eq!(lenient("/careers/jobs"), "/careers/jobs");
    let [once, twice, params] = [READERS[0], READERS[1], READERS[2]];
    assert_eq!(read_as(once, "/careers/..%2Fhr"), "/hr");
    assert_eq!(read_as(once, "/careers/..%5Chr"), "/hr");
    assert_eq!(
        read_as(once, "/careers/%252e%252e/hr"),
        "/careers/%2e%2e/hr"
    );
    assert_eq!(read_as(twice, "/careers/%252e%252e/hr"), "/hr");
    assert_eq!(read_as(twice, "/careers/..;/hr"), "/careers/..;/hr");
    assert_eq!(read_as(params, "/careers/..;/hr"), "/hr");
    assert_eq!(read_as(params, "/careers/..%2Fhr"), "/careers/..%2Fhr");
    assert_eq!(intended_owner("/hr"), Some(HR));
    assert_eq!(intended_owner("/hrx"), None);
}

#[test]
fn the_generator_is_deterministic_and_varied() {
    let a = generate(1, 500);
    let b = generate(1, 500);
    assert!(a.iter().zip(&b).all(|(x, y)| x.bytes == y.bytes));
    let shapes: HashSet<&str> = a.iter().flat_map(|r| r.shapes.iter().copied()).collect();
    for s in [
        "target:absolute",
        "host:twice-different",
        "frame:te-cl",
        "role:admin",
    ] {
        assert!(shapes.contains(s), "{s} is generated");
    }
}

// Findings of the suite: requests the proxy does not answer as it should.
// None lets a request reach a backend that the table does not give it, so
// none is an isolation breach; each is pinned here, ignored until the proxy
// (gwcore-proxy/src, not this file's owner) is fixed. Run them with
// `cargo test -p gwcore-proxy --test isolation -- --ignored`.

/// Sends `bytes` on a new connection; the single answer.
async fn one_answer(f: &Fixture, bytes: &[u8]) -> wire::Response {
    match wire::exchange(
        f.addr,
        bytes,
        false,
        Duration::from_secs(10),
        Duration::from_millis(200),
    )
    .await
    {
        Exchange::Answered(mut rs) if rs.len() == 1 => rs.remove(0),
        other => panic!("one answer expected, got {other:?}"),
    }
}

/// Fixed finding (the proxy now answers 400): an absolute-form target's userinfo reaches the backend in
/// `Host`. The table routes `http://evil.example@admin.acme.example/admin`
/// by `admin.acme.example` (correctly), but the proxy sets the backend's
/// Host to the whole authority, `evil.example@admin.acme.example`: a Host
/// no client may send (RFC 9110 §4.2.4: "A sender MUST NOT generate the
/// userinfo subcomponent (and its "@" delimiter) when an "http" URI
/// reference is generated within a message as a target URI or field
/// value"), which a backend splitting at `@` or `:` reads as another host.
/// Either refuse it (RFC 9110 §4.2.4: a recipient "SHOULD parse for
/// userinfo and treat its presence as an error") or strip the userinfo.
#[tokio::test]

async fn userinfo_in_the_target_is_refused() {
    let f = start().await;
    let r = one_answer(
        &f,
        b"GET http://evil.example@admin.acme.example/admin HTTP/1.1\r\nHost: admin.acme.example\r\nx-role: admin\r\nConnection: close\r\n\r\n",
    )
    .await;
    if r.status != 400 {
        let e = echoed(&r).expect("an echo answer");
        assert_eq!(e.service, "careers-admin");
        assert!(!e.host.contains('@'), "the backend got Host {:?}", e.host);
    }
}

/// Fixed finding: RFC 9112 §3.2: "A server MUST respond with a 400 (Bad
/// Request) status code to any HTTP/1.1 request message that lacks a Host
/// header field and to any that contains more than one Host header field
/// line or a Host header field with an invalid field value." Duplicate
/// Host lines are refused; a missing Host next to an absolute-form target
/// and Host values that are not `uri-host [ ":" port ]` are forwarded
/// (the routes of the ACME scenario have no hostnames, so any host
/// reaches them).
#[tokio::test]

async fn rfc9112_host_rules_are_enforced() {
    let f = start().await;
    let mut wrong = Vec::new();
    for req in [
        &b"GET http://acme.example/careers HTTP/1.1\r\nConnection: close\r\n\r\n"[..],
        b"GET /careers HTTP/1.1\r\nHost: evil.example/admin.acme.example\r\nConnection: close\r\n\r\n",
        b"GET /careers HTTP/1.1\r\nHost: adm in.acme.example\r\nConnection: close\r\n\r\n",
        b"GET /careers HTTP/1.1\r\nHost: evil.example@admin.acme.example\r\nConnection: close\r\n\r\n",
        b"GET /careers HTTP/1.1\r\nHost: admin.acme.example:abc\r\nConnection: close\r\n\r\n",
        b"GET /careers HTTP/1.1\r\nHost: admin.acme.example, evil.example\r\nConnection: close\r\n\r\n",
    ] {
        let r = one_answer(&f, req).await;
        if r.status != 400 {
            wrong.push(format!("{} for {:?}", r.status, String::from_utf8_lossy(req)));
        }
    }
    assert!(wrong.is_empty(), "not refused:\n{}", wrong.join("\n"));
}

/// Fixed finding (the body is now dropped for HEAD): over HTTP/2, a HEAD request that the gateway answers itself
/// (404 here; also 400, 421, 500) gets a stream reset (PROTOCOL_ERROR)
/// instead of its status: the gateway's answer keeps its body, which
/// HTTP/2 then sends as DATA after a HEAD (RFC 9110 §9.3.2: "the server
/// MUST NOT send content in the response"). curl --http2-prior-knowledge
/// -I shows the same. HEAD answers from a backend are fine.
#[tokio::test]

async fn h2_head_of_a_gateway_answer_has_no_content() {
    let f = start().await;
    let tcp = tokio::net::TcpStream::connect(f.addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::builder()
        .method("HEAD")
        .uri("http://acme.example/hr")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 404);
    let body = resp.into_body().collect().await;
    assert!(body.is_ok(), "the HEAD answer ends cleanly: {body:?}");
}

/// Fixed finding: a request whose chunked body is malformed was answered
/// 502 Bad Gateway, blaming the backend for the client's framing (the head
/// is forwarded before the body is read). A 400 is the client's answer
/// (RFC 9110 §15.5.1); the proxy now tells a failed client body from a
/// failed backend.
#[tokio::test]
async fn malformed_chunked_body_is_answered_400() {
    let f = start().await;
    let r = one_answer(
        &f,
        b"POST /careers HTTP/1.1\r\nHost: acme.example\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
    )
    .await;
    assert_eq!(r.status, 400);
}

/// The rows of the path table in docs/isolation.md: what the table makes
/// of each spelling (400, or the normalized path it matches and forwards),
/// which attached route gets it, and what a lenient backend reads there.
#[test]
fn documented_path_decisions() {
    // (sent, forwarded path or None for 400, route, lenient reading)
    let rows: &[(&str, Option<&str>, Option<&str>, &str)] = &[
        ("/careers/../hr", Some("/hr"), None, "/hr"),
        ("/careers/%2e%2e/hr", Some("/hr"), None, "/hr"),
        ("/careers/%2E%2e/hr", Some("/hr"), None, "/hr"),
        ("/careers/.%2e/hr", Some("/hr"), None, "/hr"),
        ("/careers//..//hr", Some("/hr"), None, "/hr"),
        ("/%68r", Some("/hr"), None, "/hr"),
        ("/HR", Some("/HR"), None, "/HR"),
        ("/Careers", Some("/Careers"), None, "/Careers"),
        ("/careers;x=1", Some("/careers;x=1"), None, "/careers"),
        (
            "/careers/%252e%252e/hr",
            Some("/careers/%252e%252e/hr"),
            Some("careers/careers"),
            "/hr",
        ),
        (
            "/careers/..%2fhr",
            Some("/careers/..%2Fhr"),
            Some("careers/careers"),
            "/hr",
        ),
        (
            "/careers/..%5chr",
            Some("/careers/..%5Chr"),
            Some("careers/careers"),
            "/hr",
        ),
        (
            "/careers%2f..%2fhr",
            Some("/careers%2F..%2Fhr"),
            None,
            "/hr",
        ),
        (
            "/careers/..;/hr",
            Some("/careers/..;/hr"),
            Some("careers/careers"),
            "/hr",
        ),
        (
            "/careers/%c0%ae%c0%ae/hr",
            Some("/careers/%C0%AE%C0%AE/hr"),
            Some("careers/careers"),
            "/careers/\u{fffd}\u{fffd}\u{fffd}\u{fffd}/hr",
        ),
        (
            "/careers/%00",
            Some("/careers/%00"),
            Some("careers/careers"),
            "/careers/\0",
        ),
        ("/careers/..\\hr", None, None, ""),
        ("/careers/%zz", None, None, ""),
        ("/careers/a b", None, None, ""),
    ];
    for (sent, fwd, route, read) in rows {
        let got = normalize(sent).ok().map(|p| p.into_owned());
        assert_eq!(got.as_deref(), *fwd, "{sent}");
        let Some(fwd) = fwd else { continue };
        let owner = intended_owner(fwd).filter(|o| *o != HR && *o != ADMIN);
        assert_eq!(owner, *route, "{sent}");
        assert_eq!(lenient(fwd), *read, "{sent}");
    }
}
