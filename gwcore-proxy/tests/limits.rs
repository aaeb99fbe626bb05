//! Each resource limit of [`Limits`], on the wire, with small values so
//! that the tests are fast: what a client over the limit gets, and that a
//! client under it is served.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use gwcore_proxy::limits::Limits;
use gwcore_proxy::provider::{Runtime, RuntimeOptions};
use gwcore_proxy::server::{ListenOptions, ServeOptions};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn acme_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/acme")
}

/// Limits that never get in the way of the test at hand.
fn roomy() -> Limits {
    Limits {
        header_read_timeout: Duration::from_secs(20),
        idle_timeout: Duration::from_secs(20),
        ..Limits::default()
    }
}

async fn start(limits: Limits) -> (Runtime, SocketAddr) {
    let mut listen = ListenOptions::default();
    listen.map.insert(80, "127.0.0.1:0".parse().unwrap());
    let rt = Runtime::start_with(
        vec![acme_dir()],
        {
            let mut o = RuntimeOptions::new("example.com/gateway-controller");
            o.listen = listen;
            o.echo_backends = true;
            o
        },
        ServeOptions {
            limits,
            ..ServeOptions::default()
        },
    )
    .await
    .unwrap();
    let addr = rt.local_addr(80).unwrap();
    (rt, addr)
}

/// Writes `head` on a new connection and reads until the server closes it
/// (or `within` passes): the status of the first answer (0 for none) and
/// how long the server took to close.
async fn raw(addr: SocketAddr, head: &[u8], within: Duration) -> (u16, Option<Duration>) {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let start = Instant::now();
    // The server may answer and close before it read everything.
    let _ = s.write_all(head).await;
    let mut got = Vec::new();
    let closed = tokio::time::timeout(within, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    let status = std::str::from_utf8(got.get(9..12).unwrap_or_default())
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, closed.then(|| start.elapsed()))
}

/// A GET for `path` with `extra` header lines, closing after the answer.
fn get_head(path: &str, extra: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nHost: acme.example\r\n{extra}Connection: close\r\n\r\n")
        .into_bytes()
}

/// An HTTP/2 prior-knowledge connection from hyper's client.
async fn h2(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<Full<Bytes>> {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    send
}

async fn h2_status(
    send: &mut hyper::client::conn::http2::SendRequest<Full<Bytes>>,
    req: Request<Full<Bytes>>,
) -> StatusCode {
    let resp = send.send_request(req).await.expect("h2 request failed");
    let status = resp.status();
    let _ = resp.into_body().collect().await;
    status
}

fn h2_get(path: &str, headers: &[(String, String)]) -> Request<Full<Bytes>> {
    let mut b = Request::builder().uri(format!("http://acme.example{path}"));
    for (k, v) in headers {
        b = b.header(k, v);
    }
    b.body(Full::new(Bytes::new())).unwrap()
}

#[tokio::test]
async fn a_head_over_max_header_bytes_gets_431() {
    let (_rt, addr) = start(Limits {
        max_header_bytes: 8 * 1024,
        ..roomy()
    })
    .await;
    let within = Duration::from_secs(5);
    let small = format!("X-Pad: {}\r\n", "a".repeat(6 * 1024));
    let big = format!("X-Pad: {}\r\n", "a".repeat(10 * 1024));
    assert_eq!(
        raw(addr, &get_head("/careers", &small), within).await.0,
        200
    );
    let (status, closed) = raw(addr, &get_head("/careers", &big), within).await;
    assert_eq!(status, 431);
    assert!(closed.is_some(), "the connection is closed after a 431");

    let mut send = h2(addr).await;
    let pad = |n: usize| vec![("x-pad".to_owned(), "a".repeat(n))];
    assert_eq!(
        h2_status(&mut send, h2_get("/careers", &pad(6 * 1024))).await,
        200
    );
    let mut send = h2(addr).await;
    assert_eq!(
        h2_status(&mut send, h2_get("/careers", &pad(10 * 1024))).await,
        431
    );
}

#[tokio::test]
async fn more_than_max_headers_fields_get_431() {
    let (_rt, addr) = start(Limits {
        max_headers: 20,
        ..roomy()
    })
    .await;
    let fields = |n: usize| -> String { (0..n).map(|i| format!("X-F{i}: v\r\n")).collect() };
    let within = Duration::from_secs(5);
    // Host and Connection are fields too.
    assert_eq!(
        raw(addr, &get_head("/careers", &fields(18)), within)
            .await
            .0,
        200
    );
    assert_eq!(
        raw(addr, &get_head("/careers", &fields(25)), within)
            .await
            .0,
        431
    );

    let h = |n: usize| -> Vec<(String, String)> {
        (0..n)
            .map(|i| (format!("x-f{i}"), "v".to_owned()))
            .collect()
    };
    let mut send = h2(addr).await;
    assert_eq!(h2_status(&mut send, h2_get("/careers", &h(18))).await, 200);
    assert_eq!(h2_status(&mut send, h2_get("/careers", &h(25))).await, 431);
}

#[tokio::test]
async fn a_target_over_max_uri_bytes_gets_414() {
    let (_rt, addr) = start(Limits {
        max_uri_bytes: 100,
        ..roomy()
    })
    .await;
    let within = Duration::from_secs(5);
    let ok = format!("/careers/{}", "a".repeat(80));
    let long = format!("/careers/{}", "a".repeat(120));
    assert_eq!(raw(addr, &get_head(&ok, ""), within).await.0, 200);
    assert_eq!(raw(addr, &get_head(&long, ""), within).await.0, 414);
    let query = format!("/careers?q={}", "a".repeat(120));
    assert_eq!(
        raw(addr, &get_head(&query, ""), within).await.0,
        414,
        "the query counts"
    );
    let mut send = h2(addr).await;
    assert_eq!(h2_status(&mut send, h2_get(&ok, &[])).await, 200);
    assert_eq!(h2_status(&mut send, h2_get(&long, &[])).await, 414);
}

#[tokio::test]
async fn a_slow_head_is_cut_off_by_the_header_read_timeout() {
    let (_rt, addr) = start(Limits {
        header_read_timeout: Duration::from_millis(200),
        ..roomy()
    })
    .await;
    let within = Duration::from_secs(5);
    // Slowloris: a head that never ends.
    let (_, closed) = raw(
        addr,
        b"GET /careers HTTP/1.1\r\nHost: acme.example\r\nX-A: 1\r\n",
        within,
    )
    .await;
    let t = closed.expect("the connection is closed");
    assert!(t >= Duration::from_millis(150), "closed after {t:?}");
    assert!(t < Duration::from_secs(3), "closed after {t:?}");
    // A connection that says nothing at all, and an HTTP/2 one that sends
    // its preface but no request.
    for head in [
        &b""[..],
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0",
    ] {
        let (_, closed) = raw(addr, head, within).await;
        let t = closed.unwrap_or_else(|| panic!("not closed: {head:?}"));
        assert!(t < Duration::from_secs(3), "closed after {t:?}");
    }
    // A keep-alive connection whose second head never ends is cut off
    // too (the idle timeout, 20 s, would be much later).
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /careers HTTP/1.1\r\nHost: acme.example\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 65536];
    let n = s.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"), "first answer");
    s.write_all(b"GET /careers HTTP/1.1\r\nHost: acme.example\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let closed = tokio::time::timeout(within, async {
        while let Ok(n) = s.read(&mut buf).await {
            if n == 0 {
                return;
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "a slow second head is not cut off");
    assert!(started.elapsed() < Duration::from_secs(3));
    // A client that sends its head in time is served, with keep-alive.
    let c = common::client();
    for _ in 0..3 {
        assert_eq!(
            common::get(&c, addr, "acme.example", "/careers").await.0,
            200
        );
    }
    // HTTP/2 has no head timeout after the first request: a connection
    // idle for longer than it (not the idle timeout) still serves.
    let mut send = h2(addr).await;
    assert_eq!(h2_status(&mut send, h2_get("/careers", &[])).await, 200);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(h2_status(&mut send, h2_get("/careers", &[])).await, 200);
}

#[tokio::test]
async fn idle_connections_are_closed_after_the_idle_timeout_busy_ones_are_not() {
    let (_rt, addr) = start(Limits {
        idle_timeout: Duration::from_millis(300),
        ..roomy()
    })
    .await;
    // HTTP/1.1 keep-alive: one request, then nothing.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /careers HTTP/1.1\r\nHost: acme.example\r\n\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let mut buf = vec![0u8; 65536];
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the idle keep-alive connection is closed");
    assert!(
        start.elapsed() >= Duration::from_millis(250),
        "{:?}",
        start.elapsed()
    );

    // HTTP/2: a request that takes longer than the idle timeout is not
    // cut; the connection goes away once nothing is in flight.
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    let conn = tokio::spawn(conn);
    let status = h2_status(&mut send, h2_get("/careers?delay=700ms", &[])).await;
    assert_eq!(status, 200, "a slow answer outlives the idle timeout");
    let ended = tokio::time::timeout(Duration::from_secs(5), conn).await;
    assert!(ended.is_ok(), "the idle HTTP/2 connection is closed");
}

/// A hand-written HTTP/2 client: hyper's and h2's clients obey the
/// server's settings, so they cannot go over its limits.
struct RawH2 {
    s: TcpStream,
}

const SETTINGS: u8 = 4;
const HEADERS: u8 = 1;
const RST_STREAM: u8 = 3;
const PING: u8 = 6;
const GOAWAY: u8 = 7;

impl RawH2 {
    /// Connects, exchanges SETTINGS (acknowledging the server's).
    async fn connect(addr: SocketAddr) -> RawH2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
            .await
            .unwrap();
        let mut c = RawH2 { s };
        c.frame(SETTINGS, 0, 0, &[]).await;
        loop {
            let (ty, flags, _, _) = c.read().await.expect("server SETTINGS");
            if ty == SETTINGS && flags & 1 == 0 {
                c.frame(SETTINGS, 1, 0, &[]).await;
                break;
            }
        }
        c
    }

    async fn frame(&mut self, ty: u8, flags: u8, stream: u32, payload: &[u8]) {
        let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
        let mut f = vec![len[1], len[2], len[3], ty, flags];
        f.extend_from_slice(&stream.to_be_bytes());
        f.extend_from_slice(payload);
        self.s.write_all(&f).await.unwrap();
    }

    /// A GET `path` on `stream` (HPACK: indexed `:method GET`, `:scheme
    /// http`; literal `:path` and `:authority`).
    async fn get(&mut self, stream: u32, path: &str) {
        let mut block = vec![0x82, 0x86, 0x04, u8::try_from(path.len()).unwrap()];
        block.extend_from_slice(path.as_bytes());
        block.extend_from_slice(&[0x01, 12]);
        block.extend_from_slice(b"acme.example");
        // END_STREAM | END_HEADERS
        self.frame(HEADERS, 0x5, stream, &block).await;
    }

    /// The next frame: type, flags, stream, payload; `None` at the end.
    async fn read(&mut self) -> Option<(u8, u8, u32, Vec<u8>)> {
        let mut h = [0u8; 9];
        self.s.read_exact(&mut h).await.ok()?;
        let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
        let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
        let mut payload = vec![0u8; len];
        self.s.read_exact(&mut payload).await.ok()?;
        Some((h[3], h[4], stream, payload))
    }
}

#[tokio::test]
async fn a_stream_over_max_concurrent_streams_is_refused() {
    let (_rt, addr) = start(Limits {
        http2_max_concurrent_streams: 2,
        ..roomy()
    })
    .await;
    let mut c = RawH2::connect(addr).await;
    for id in [1, 3, 5] {
        c.get(id, "/careers?delay=500ms").await;
    }
    let mut refused = Vec::new();
    let mut answered = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), async {
        while answered.len() < 2 {
            let Some((ty, _, stream, payload)) = c.read().await else {
                break;
            };
            match ty {
                RST_STREAM => {
                    refused.push((stream, u32::from_be_bytes(payload[..4].try_into().unwrap())))
                }
                HEADERS => answered.push(stream),
                _ => {}
            }
        }
    })
    .await
    .expect("answers within 5 s");
    // RFC 9113 §8.7: REFUSED_STREAM (0x7) tells the client the stream was
    // not processed and may be retried.
    assert_eq!(refused, [(5, 0x7)]);
    assert_eq!(answered, [1, 3]);
}

#[tokio::test]
async fn an_http2_peer_that_does_not_answer_pings_is_closed() {
    let (_rt, addr) = start(Limits {
        http2_keep_alive_interval: Some(Duration::from_millis(100)),
        http2_keep_alive_timeout: Duration::from_millis(200),
        ..roomy()
    })
    .await;
    let mut c = RawH2::connect(addr).await;
    c.get(1, "/careers").await;
    let start = Instant::now();
    let mut pinged = false;
    let ended = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some((ty, _, _, _)) = c.read().await {
            pinged |= ty == PING;
            if ty == GOAWAY {
                break;
            }
        }
    })
    .await;
    assert!(ended.is_ok(), "the connection is closed");
    assert!(pinged, "the server PINGs first");
    assert!(
        start.elapsed() >= Duration::from_millis(200),
        "{:?}",
        start.elapsed()
    );

    // hyper's client answers PINGs: its connection stays open and usable.
    let mut send = h2(addr).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(h2_status(&mut send, h2_get("/careers", &[])).await, 200);
}

#[tokio::test]
async fn connections_over_max_connections_are_closed_at_once() {
    let (rt, addr) = start(Limits {
        max_connections: 2,
        ..roomy()
    })
    .await;
    let c = common::client();
    // Two open connections, served.
    let a = TcpStream::connect(addr).await.unwrap();
    let mut b = TcpStream::connect(addr).await.unwrap();
    b.write_all(&get_head("/careers", "")).await.unwrap();
    let mut buf = Vec::new();
    b.read_to_end(&mut buf).await.unwrap();
    assert!(
        buf.starts_with(b"HTTP/1.1 200"),
        "{:?}",
        String::from_utf8_lossy(&buf)
    );
    // b closed after its answer (Connection: close); a is still open and
    // holds one slot: wait until b's slot is given back.
    let deadline = Instant::now() + Duration::from_secs(5);
    while rt.proxy().metrics().connections_open() > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let _b2 = TcpStream::connect(addr).await.unwrap();
    // The third one is closed without an answer.
    let (status, closed) = raw(addr, &get_head("/careers", ""), Duration::from_secs(2)).await;
    assert_eq!(status, 0, "no answer over the limit");
    assert!(closed.is_some(), "closed at once");
    assert_eq!(rt.proxy().metrics().connections_refused(), 1);
    assert!(
        rt.proxy()
            .metrics()
            .render()
            .contains("gwcore_connections_refused_total 1\n")
    );
    // Closing one frees its slot.
    drop(a);
    let deadline = Instant::now() + Duration::from_secs(5);
    while rt.proxy().metrics().connections_open() > 1 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        common::get(&c, addr, "acme.example", "/careers").await.0,
        200
    );
}

/// What the echo backend received for a request carrying spoofed proxy
/// headers, from a proxy started with `trusted`.
async fn forwarded_headers(trusted: &str) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut listen = ListenOptions::default();
    listen.map.insert(80, "127.0.0.1:0".parse().unwrap());
    let rt = Runtime::start_with(
        vec![acme_dir()],
        {
            let mut o = RuntimeOptions::new("example.com/gateway-controller");
            o.listen = listen;
            o.echo_backends = true;
            o
        },
        ServeOptions {
            limits: roomy(),
            trusted_proxies: trusted.parse().unwrap(),
            ..ServeOptions::default()
        },
    )
    .await
    .unwrap();
    let addr = rt.local_addr(80).unwrap();
    let req = Request::builder()
        .uri(format!("http://{addr}/careers"))
        .header("host", "acme.example")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "admin.acme.example")
        .header("forwarded", "for=203.0.113.9")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let resp = common::client().request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let e: gwcore_proxy::echo::Echoed = serde_json::from_slice(&body).unwrap();
    e.headers
}

#[tokio::test]
async fn proxy_headers_are_replaced_from_untrusted_peers_and_kept_from_trusted_ones() {
    // Default: nobody is trusted; a client cannot pose as another host,
    // address or scheme to the backend.
    let h = forwarded_headers("").await;
    assert_eq!(h["X-Forwarded-For"], ["127.0.0.1"]);
    assert_eq!(h["X-Forwarded-Proto"], ["http"]);
    assert_eq!(h["X-Forwarded-Host"], ["acme.example"]);
    assert!(!h.contains_key("Forwarded"));
    // A peer in another network is not trusted either.
    let h = forwarded_headers("10.0.0.0/8").await;
    assert_eq!(h["X-Forwarded-For"], ["127.0.0.1"]);
    // A trusted proxy's values are kept, and its address appended.
    let h = forwarded_headers("127.0.0.0/8,::1").await;
    assert_eq!(h["X-Forwarded-For"], ["203.0.113.9, 127.0.0.1"]);
    assert_eq!(h["X-Forwarded-Proto"], ["https"]);
    assert_eq!(h["X-Forwarded-Host"], ["admin.acme.example"]);
    assert_eq!(h["Forwarded"], ["for=203.0.113.9"]);
}
