//! Request framing over the wire: no backend ever receives a request whose
//! body framing gwcore has not validated. 100 000 malformed chunked bodies
//! (seeded, every method) go to a backend that answers as soon as it has
//! read a request head; it must never see one of them, and each client
//! gets 400. Then the slow clients: a request body that stalls or
//! trickles gets 408 and the connection closed; a client that does not
//! read its response is disconnected.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use futures_util::StreamExt as _;
use gwcore_proxy::limits::Limits;
use gwcore_proxy::provider::Runtime;
use gwcore_proxy::server::ServeOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// What the backend saw.
#[derive(Debug, Default)]
struct Seen {
    /// Request heads read.
    heads: AtomicU64,
    /// Requests read whole: head and a complete body.
    complete: AtomicU64,
}

/// A backend that answers 200 as soon as it has a request head, then
/// reads the body by its framing (strictly) to count complete requests.
async fn eager_backend(seen: Arc<Seen>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else { return };
            tokio::spawn(eager_conn(s, seen.clone()));
        }
    });
    addr
}

async fn eager_conn(mut s: TcpStream, seen: Arc<Seen>) {
    let mut buf = Vec::new();
    loop {
        let Some(end) = read_until(&mut s, &mut buf, b"\r\n\r\n").await else {
            return;
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        buf.drain(..end + 4);
        seen.heads.fetch_add(1, Ordering::Relaxed);
        if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 8\r\n\r\nanswered")
            .await
            .is_err()
        {
            return;
        }
        let whole = if head.contains("transfer-encoding: chunked") {
            read_chunked(&mut s, &mut buf).await
        } else {
            let n: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < n {
                if read_more(&mut s, &mut buf).await == 0 {
                    return;
                }
            }
            buf.drain(..n);
            true
        };
        if !whole {
            return;
        }
        seen.complete.fetch_add(1, Ordering::Relaxed);
    }
}

async fn read_more(s: &mut TcpStream, buf: &mut Vec<u8>) -> usize {
    let mut tmp = [0u8; 4096];
    match s.read(&mut tmp).await {
        Ok(n) => {
            buf.extend_from_slice(&tmp[..n]);
            n
        }
        Err(_) => 0,
    }
}

async fn read_until(s: &mut TcpStream, buf: &mut Vec<u8>, pat: &[u8]) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(pat.len()).position(|w| w == pat) {
            return Some(i);
        }
        if read_more(s, buf).await == 0 {
            return None;
        }
    }
}

/// Reads one chunked body off `buf`/`s`; whether it was complete and
/// valid.
async fn read_chunked(s: &mut TcpStream, buf: &mut Vec<u8>) -> bool {
    loop {
        let Some(end) = read_until(s, buf, b"\r\n").await else {
            return false;
        };
        let line = buf[..end].to_vec();
        buf.drain(..end + 2);
        let digits = line.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        let Some(size) = std::str::from_utf8(&line[..digits])
            .ok()
            .and_then(|d| usize::from_str_radix(d, 16).ok())
        else {
            return false;
        };
        if size == 0 {
            // Trailers, then the empty line.
            loop {
                let Some(end) = read_until(s, buf, b"\r\n").await else {
                    return false;
                };
                buf.drain(..end + 2);
                if end == 0 {
                    return true;
                }
            }
        }
        while buf.len() < size + 2 {
            if read_more(s, buf).await == 0 {
                return false;
            }
        }
        if &buf[size..size + 2] != b"\r\n" {
            return false;
        }
        buf.drain(..size + 2);
    }
}

// ------------------------------------------------------------ generator

/// Whether `body` is a valid chunked body by RFC 9112 §7.1 (a strict
/// reading: `chunk-size [ chunk-ext ] CRLF`, extensions as tokens or
/// quoted strings around BWS, trailer fields as field lines), with nothing
/// after it.
fn strictly_valid(body: &[u8]) -> bool {
    fn tchar(b: u8) -> bool {
        b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
    }
    fn line(rest: &[u8]) -> Option<(&[u8], &[u8])> {
        let i = rest.windows(2).position(|w| w == b"\r\n")?;
        Some((&rest[..i], &rest[i + 2..]))
    }
    fn ext_ok(mut e: &[u8]) -> bool {
        let bws = |e: &mut &[u8]| {
            while let [b' ' | b'\t', r @ ..] = *e {
                *e = r;
            }
        };
        loop {
            bws(&mut e);
            if e.is_empty() {
                return true;
            }
            let [b';', r @ ..] = e else { return false };
            e = r;
            bws(&mut e);
            let n = e.iter().take_while(|b| tchar(**b)).count();
            if n == 0 {
                return false;
            }
            e = &e[n..];
            let save = e;
            bws(&mut e);
            if let [b'=', r @ ..] = e {
                e = r;
                bws(&mut e);
                if let [b'"', r @ ..] = e {
                    let mut r = r;
                    loop {
                        match r {
                            [b'"', t @ ..] => {
                                e = t;
                                break;
                            }
                            [b'\\', c, t @ ..] if *c == b'\t' || (0x20..0x7f).contains(c) => r = t,
                            [c, t @ ..]
                                if *c == b'\t' || (0x20..0x7f).contains(c) && *c != b'\\' =>
                            {
                                r = t
                            }
                            _ => return false,
                        }
                    }
                } else {
                    let n = e.iter().take_while(|b| tchar(**b)).count();
                    if n == 0 {
                        return false;
                    }
                    e = &e[n..];
                }
            } else {
                e = save;
            }
        }
    }
    let mut rest = body;
    loop {
        let Some((l, r)) = line(rest) else {
            return false;
        };
        let digits = l.iter().take_while(|b| b.is_ascii_hexdigit()).count();
        if digits == 0 || digits > 15 || !ext_ok(&l[digits..]) {
            return false;
        }
        let size = usize::from_str_radix(std::str::from_utf8(&l[..digits]).unwrap(), 16).unwrap();
        rest = r;
        if size == 0 {
            loop {
                let Some((t, r)) = line(rest) else {
                    return false;
                };
                rest = r;
                if t.is_empty() {
                    return rest.is_empty();
                }
                let Some(colon) = t.iter().position(|b| *b == b':') else {
                    return false;
                };
                if colon == 0
                    || !t[..colon].iter().all(|b| tchar(*b))
                    || t[colon + 1..]
                        .iter()
                        .any(|b| *b != b'\t' && (*b < 0x20 || *b == 0x7f))
                {
                    return false;
                }
            }
        }
        if rest.len() < size + 2 || &rest[size..size + 2] != b"\r\n" {
            return false;
        }
        rest = &rest[size + 2..];
    }
}

/// A valid chunked body: its chunks (data), then trailers.
struct Valid {
    chunks: Vec<Vec<u8>>,
    exts: Vec<Option<&'static str>>,
    trailers: Vec<(&'static str, &'static str)>,
}

impl Valid {
    fn draw(rng: &mut fastrand::Rng) -> Valid {
        let n = rng.usize(1..5);
        let chunks = (0..n)
            .map(|_| {
                (0..rng.usize(1..40))
                    .map(|_| rng.alphanumeric() as u8)
                    .collect()
            })
            .collect();
        let exts = (0..n)
            .map(|_| {
                rng.bool()
                    .then(|| *rng.choice(&[";a=b", " ; name", ";x=\"q v\""]).unwrap())
            })
            .collect();
        let trailers = if rng.u8(..4) == 0 {
            vec![("x-sum", "12")]
        } else {
            Vec::new()
        };
        Valid {
            chunks,
            exts,
            trailers,
        }
    }

    /// The chunks' lines, each size line already written; `size` writes
    /// the size of chunk `i` of length `len`.
    fn encode(&self, size: &mut dyn FnMut(usize, usize) -> Vec<u8>) -> Vec<u8> {
        let mut out = Vec::new();
        for (i, c) in self.chunks.iter().enumerate() {
            out.extend_from_slice(&size(i, c.len()));
            if let Some(e) = self.exts[i] {
                out.extend_from_slice(e.as_bytes());
            }
            out.extend_from_slice(b"\r\n");
            out.extend_from_slice(c);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n");
        for (k, v) in &self.trailers {
            out.extend_from_slice(format!("{k}: {v}\r\n").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        out
    }

    fn wire(&self) -> Vec<u8> {
        self.encode(&mut |_, len| format!("{len:x}").into_bytes())
    }
}

/// A malformed chunked body, and whether the client ends its side of the
/// connection after it (a body cut short).
fn malformed(rng: &mut fastrand::Rng) -> (Vec<u8>, bool) {
    let v = Valid::draw(rng);
    let at = rng.usize(..v.chunks.len());
    let wire = v.wire();
    let body = match rng.u8(..14) {
        // A size that is not hex.
        0 => v.encode(&mut |i, len| {
            if i == at {
                format!("{len:x}{}", *rng.choice(&["g", "x", "-1", "z"]).unwrap()).into_bytes()
            } else {
                format!("{len:x}").into_bytes()
            }
        }),
        // "0x" and sign prefixes.
        1 => v.encode(&mut |i, len| {
            if i == at {
                format!("{}{len:x}", *rng.choice(&["0x", "+", "-", " "]).unwrap()).into_bytes()
            } else {
                format!("{len:x}").into_bytes()
            }
        }),
        // A size larger than the data.
        2 => v.encode(&mut |i, len| {
            let len = if i == at { len + rng.usize(1..4) } else { len };
            format!("{len:x}").into_bytes()
        }),
        // A size smaller than the data.
        3 => v.encode(&mut |i, len| {
            let len = if i == at { len - 1 } else { len };
            format!("{len:x}").into_bytes()
        }),
        // A bare LF ending a size line or a chunk's data.
        4 => {
            let mut w = wire.clone();
            let crlfs: Vec<usize> = (0..w.len() - 1)
                .filter(|i| &w[*i..*i + 2] == b"\r\n")
                .collect();
            // Not the last CRLF: without it the body is merely cut.
            let i = crlfs[rng.usize(..crlfs.len() - 1)];
            w.remove(i);
            w
        }
        // A CR not followed by LF.
        5 => {
            let mut w = wire.clone();
            let crlfs: Vec<usize> = (0..w.len() - 1)
                .filter(|i| &w[*i..*i + 2] == b"\r\n")
                .collect();
            let i = crlfs[rng.usize(..crlfs.len())];
            w[i + 1] = b'X';
            w
        }
        // A size too large for 64 bits.
        6 => v.encode(&mut |i, len| {
            if i == at {
                format!("1{:016x}", len).into_bytes()
            } else {
                format!("{len:x}").into_bytes()
            }
        }),
        // An empty size line.
        7 => v.encode(&mut |i, len| {
            if i == at {
                Vec::new()
            } else {
                format!("{len:x}").into_bytes()
            }
        }),
        // A bare LF inside a chunk extension.
        8 => v.encode(&mut |i, len| {
            if i == at {
                format!("{len:x};a\nb").into_bytes()
            } else {
                format!("{len:x}").into_bytes()
            }
        }),
        // A trailer that is not a field line.
        9 => {
            let mut w = wire[..wire.len()
                - 2
                - v.trailers
                    .iter()
                    .map(|(k, x)| k.len() + x.len() + 4)
                    .sum::<usize>()]
                .to_vec();
            w.extend_from_slice(
                rng.choice([&b"no colon\r\n"[..], b": empty-name\r\n", b"a b: c\r\n"])
                    .unwrap(),
            );
            w.extend_from_slice(b"\r\n");
            w
        }
        // Whitespace between the size and the line's end, no extension.
        10 => v.encode(&mut |i, len| {
            if i == at {
                format!("{len:x} x").into_bytes()
            } else {
                format!("{len:x}").into_bytes()
            }
        }),
        // Cut anywhere before its end.
        11 => {
            let cut = rng.usize(1..wire.len() - 1);
            return (wire[..cut].to_vec(), true);
        }
        // The last chunk without the empty line after it.
        12 => {
            let mut w = wire.clone();
            w.truncate(w.len() - 2);
            return (w, true);
        }
        // Data after a chunk's data but before its CRLF.
        _ => {
            let mut w = v.encode(&mut |_, len| format!("{len:x}").into_bytes());
            let first_data_end =
                w.windows(2).position(|x| x == b"\r\n").unwrap() + 2 + v.chunks[0].len();
            w.insert(first_data_end, b'!');
            w
        }
    };
    (body, false)
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "PURGE"];

/// Sends one request with `body` (chunked), ending the client's side of
/// the connection after it when `shutdown`, and reads the status (0 for
/// none before the connection closed).
async fn send(addr: SocketAddr, method: &str, body: &[u8], pieces: usize, shutdown: bool) -> u16 {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut wire = format!(
        "{method} /up HTTP/1.1\r\nhost: a.example\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    wire.extend_from_slice(body);
    let step = wire.len().div_ceil(pieces);
    for part in wire.chunks(step) {
        if s.write_all(part).await.is_err() {
            break;
        }
        if pieces > 1 {
            tokio::task::yield_now().await;
        }
    }
    // Done sending: a body that says more is to come (a chunk larger than
    // its data) is then cut short, not waited for.
    if shutdown {
        let _ = s.shutdown().await;
    }
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut got)).await;
    std::str::from_utf8(got.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn manifest(backend: SocketAddr) -> String {
    format!(
        "{}---
apiVersion: v1
kind: Service
metadata: {{name: app, namespace: default}}
spec: {{ports: [{{port: 80}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: app, namespace: default, labels: {{kubernetes.io/service-name: app}}}}
addressType: IPv4
ports: [{{port: {}}}]
endpoints: [{{addresses: [127.0.0.1]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: app, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules: [{{backendRefs: [{{name: app, port: 80}}]}}]
",
        common::HTTP_GATEWAY,
        backend.port()
    )
}

async fn start(backend: SocketAddr) -> (Runtime, SocketAddr) {
    start_with(backend, Limits::default()).await
}

async fn start_with(backend: SocketAddr, limits: Limits) -> (Runtime, SocketAddr) {
    let loaded = gwcore::load::load_str("framing.yaml", &manifest(backend));
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    let serve = ServeOptions {
        limits,
        ..ServeOptions::default()
    };
    let rt = Runtime::from_snapshot_with(loaded.to_snapshot(), common::options(false), serve)
        .await
        .unwrap();
    let addr = rt.local_addr(80).unwrap();
    (rt, addr)
}

#[test]
fn the_generator_makes_malformed_bodies_only() {
    let mut rng = fastrand::Rng::with_seed(7);
    for _ in 0..200 {
        assert!(strictly_valid(&Valid::draw(&mut rng).wire()));
    }
    let mut rng = fastrand::Rng::with_seed(18);
    for _ in 0..100_000 {
        let (body, cut) = malformed(&mut rng);
        assert!(
            !strictly_valid(&body),
            "generated a valid body (cut {cut}): {:?}",
            String::from_utf8_lossy(&body)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_malformed_chunked_body_reaches_a_backend() {
    let seen = Arc::new(Seen::default());
    let backend = eager_backend(seen.clone()).await;
    let (rt, addr) = start(backend).await;

    // The same backend serves well-framed requests: the route works.
    let mut rng = fastrand::Rng::with_seed(1);
    for m in METHODS {
        let v = Valid::draw(&mut rng);
        assert_eq!(send(addr, m, &v.wire(), 1, false).await, 200, "{m}");
    }
    // (The backend answers before it reads a body; whether the rest of it
    // is sent after the answer does not matter here.)
    assert_eq!(seen.heads.load(Ordering::Relaxed), METHODS.len() as u64);
    seen.heads.store(0, Ordering::Relaxed);
    seen.complete.store(0, Ordering::Relaxed);

    let total: usize = std::env::var("GWCORE_FRAMING_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(100_000);
    let statuses = Arc::new(std::sync::Mutex::new(std::collections::BTreeMap::new()));
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (next, statuses) = (next.clone(), statuses.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total as u64 {
                    return;
                }
                let mut rng = fastrand::Rng::with_seed(18 ^ (i << 8));
                let (body, cut) = malformed(&mut rng);
                let method = METHODS[rng.usize(..METHODS.len())];
                let pieces = rng.usize(1..4);
                let status = send(addr, method, &body, pieces, true).await;
                *statuses
                    .lock()
                    .unwrap()
                    .entry((status, cut))
                    .or_insert(0u64) += 1;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let statuses = statuses.lock().unwrap().clone();
    let heads = seen.heads.load(Ordering::Relaxed);
    let complete = seen.complete.load(Ordering::Relaxed);
    eprintln!(
        "{total} malformed bodies: backend saw {heads} heads, {complete} complete requests; client statuses (status, cut): {statuses:?}"
    );
    assert_eq!(complete, 0, "complete requests a backend received");
    assert_eq!(heads, 0, "request heads a backend received");
    for ((status, cut), n) in &statuses {
        // A client that cut its body short may be gone before the answer.
        assert!(
            *status == 400 || (*cut && *status == 0),
            "{n} clients got {status} (cut {cut})"
        );
    }
    rt.shutdown(Duration::from_secs(1)).await;
}

// ----------------------------------------------------------- slow clients

/// Writes `parts` with `gap` between them, then reads until the proxy
/// closes the connection (at most `within`): the status, and how long
/// after the first write the connection closed (`None`: still open).
async fn trickle(
    addr: SocketAddr,
    parts: Vec<Vec<u8>>,
    gap: Duration,
    within: Duration,
) -> (u16, Option<Duration>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let start = std::time::Instant::now();
    let (mut r, mut w) = s.split();
    let write = async {
        for p in parts {
            if w.write_all(&p).await.is_err() {
                return;
            }
            tokio::time::sleep(gap).await;
        }
        // Then stall, without closing.
        std::future::pending::<()>().await;
    };
    let read = async {
        let mut got = Vec::new();
        let _ = r.read_to_end(&mut got).await;
        got
    };
    let got = tokio::select! {
        got = read => Some(got),
        _ = write => None,
        _ = tokio::time::sleep(within) => None,
    };
    let closed = got.is_some().then(|| start.elapsed());
    let got = got.unwrap_or_default();
    let status = std::str::from_utf8(got.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, closed)
}

fn slow_limits() -> Limits {
    Limits {
        request_body_timeout: Duration::from_millis(400),
        min_request_body_rate: 2000,
        ..Limits::default()
    }
}

#[tokio::test]
async fn a_stalled_request_body_gets_408_and_the_connection_closed() {
    let seen = Arc::new(Seen::default());
    let (rt, addr) = start_with(eager_backend(seen.clone()).await, slow_limits()).await;
    // Small and declared: read whole before the backend is contacted.
    let head = b"POST /up HTTP/1.1\r\nhost: a.example\r\ncontent-length: 10\r\n\r\n123".to_vec();
    let (status, closed) = trickle(addr, vec![head], Duration::ZERO, Duration::from_secs(5)).await;
    assert_eq!(status, 408);
    let closed = closed.expect("the connection is closed");
    assert!(closed >= Duration::from_millis(400), "{closed:?}");
    assert_eq!(seen.heads.load(Ordering::Relaxed), 0, "no backend saw it");
    rt.shutdown(Duration::from_secs(1)).await;

    // Streamed (nothing read whole): the backend has the head, never the
    // body's end.
    let seen = Arc::new(Seen::default());
    let limits = Limits {
        request_body_buffer_bytes: 0,
        ..slow_limits()
    };
    let (rt, addr) = start_with(eager_backend(seen.clone()).await, limits).await;
    let head =
        b"POST /up HTTP/1.1\r\nhost: a.example\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n"
            .to_vec();
    let (status, closed) = trickle(addr, vec![head], Duration::ZERO, Duration::from_secs(5)).await;
    // The eager backend answered before the body's end: its answer goes on.
    assert!(status == 200 || status == 408, "{status}");
    assert!(closed.is_some(), "the connection is closed");
    assert_eq!(seen.complete.load(Ordering::Relaxed), 0);
    rt.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_trickling_request_body_gets_408_by_its_rate() {
    let seen = Arc::new(Seen::default());
    let (rt, addr) = start_with(eager_backend(seen.clone()).await, slow_limits()).await;
    // A byte every 250 ms never stalls 400 ms, but is far below 2 000 B/s.
    let mut parts =
        vec![b"POST /up HTTP/1.1\r\nhost: a.example\r\ncontent-length: 100\r\n\r\n".to_vec()];
    parts.extend((0..100).map(|_| b"x".to_vec()));
    let (status, closed) = trickle(
        addr,
        parts,
        Duration::from_millis(250),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(status, 408);
    assert!(closed.expect("closed") < Duration::from_secs(5));
    assert_eq!(seen.heads.load(Ordering::Relaxed), 0);

    // The same body at a fine pace is served.
    let mut parts = vec![
        b"POST /up HTTP/1.1\r\nhost: a.example\r\ncontent-length: 100\r\nconnection: close\r\n\r\n"
            .to_vec(),
    ];
    parts.extend((0..10).map(|_| vec![b'x'; 10]));
    let (status, _) = trickle(
        addr,
        parts,
        Duration::from_millis(5),
        Duration::from_secs(5),
    )
    .await;
    assert_eq!(status, 200);
    rt.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn a_stalled_http2_request_body_gets_408_on_its_stream() {
    let seen = Arc::new(Seen::default());
    let (rt, addr) = start_with(eager_backend(seen.clone()).await, slow_limits()).await;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    // Five bytes, then nothing (the body never ends).
    let body = http_body_util::StreamBody::new(
        futures_util::stream::iter(vec![Ok::<_, std::io::Error>(hyper::body::Frame::data(
            bytes::Bytes::from_static(b"hello"),
        ))])
        .chain(futures_util::stream::pending()),
    );
    let req = http::Request::post("http://a.example/up")
        .body(body)
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), send.send_request(req))
        .await
        .expect("answered in time")
        .unwrap();
    // The eager backend may have answered first (HTTP/2 bodies stream).
    assert!(
        resp.status() == 408 || resp.status() == 200,
        "{}",
        resp.status()
    );
    assert_eq!(seen.complete.load(Ordering::Relaxed), 0);
    rt.shutdown(Duration::from_secs(1)).await;
}

/// A backend that answers every request with `size` bytes.
async fn big_backend(size: usize) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buf = Vec::new();
                if read_until(&mut s, &mut buf, b"\r\n\r\n").await.is_none() {
                    return;
                }
                let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {size}\r\n\r\n");
                if s.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                let chunk = vec![b'x'; 64 * 1024];
                let mut left = size;
                while left > 0 {
                    let n = left.min(chunk.len());
                    if s.write_all(&chunk[..n]).await.is_err() {
                        return;
                    }
                    left -= n;
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn a_client_that_does_not_read_is_disconnected() {
    const SIZE: usize = 256 << 20;
    let limits = Limits {
        response_write_timeout: Duration::from_millis(500),
        ..Limits::default()
    };
    let (rt, addr) = start_with(big_backend(SIZE).await, limits).await;
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /big HTTP/1.1\r\nhost: a.example\r\n\r\n")
        .await
        .unwrap();
    // Read nothing for a while: the proxy's writes stall.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut got = 0usize;
    let mut buf = vec![0u8; 1 << 16];
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got += n,
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection is still open");
    assert!(got < SIZE, "the whole response came ({got} bytes)");
    rt.shutdown(Duration::from_secs(1)).await;
}
