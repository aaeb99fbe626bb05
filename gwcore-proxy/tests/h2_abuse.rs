//! HTTP/2 abuse, with frames written by hand (`h2wire`): rapid reset,
//! CONTINUATION floods, SETTINGS, PING and empty-frame floods, HPACK
//! bombs. Each attack's connection gets `GOAWAY(ENHANCE_YOUR_CALM)` within
//! a bounded number of frames, while a well-behaved HTTP/2 client on
//! another connection keeps getting 200s, during the attack and after.

mod common;
mod h2wire;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gwcore_proxy::limits::Limits;
use gwcore_proxy::provider::Runtime;
use gwcore_proxy::server::{ListenOptions, ServeOptions};
use h2wire::*;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

async fn start(limits: Limits) -> (Runtime, SocketAddr) {
    let mut listen = ListenOptions::default();
    listen.map.insert(80, "127.0.0.1:0".parse().unwrap());
    let mut options = common::options(true);
    options.listen = listen;
    let rt = Runtime::start_with(
        vec![common::acme_dir()],
        options,
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

/// A well-behaved HTTP/2 client (hyper's) asking for `/careers` in a loop
/// on its own connection, until stopped.
struct Bystander {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<(usize, Vec<String>)>,
}

impl Bystander {
    async fn start(addr: SocketAddr) -> Bystander {
        let tcp = TcpStream::connect(addr).await.unwrap();
        let (mut send, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
                .await
                .unwrap();
        tokio::spawn(conn);
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let task = tokio::spawn(async move {
            let (mut ok, mut failed) = (0, Vec::new());
            while !stopped.load(Ordering::Relaxed) {
                let req = Request::get("http://acme.example/careers")
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                match send.send_request(req).await {
                    Ok(resp) if resp.status() == 200 => {
                        let _ = resp.into_body().collect().await;
                        ok += 1;
                    }
                    Ok(resp) => failed.push(format!("status {}", resp.status())),
                    Err(e) => failed.push(e.to_string()),
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
            (ok, failed)
        });
        Bystander { stop, task }
    }

    /// Stops the loop, checks that every answer was a 200, and that a new
    /// connection is served too.
    async fn check(self, addr: SocketAddr) {
        self.stop.store(true, Ordering::Relaxed);
        let (ok, failed) = self.task.await.unwrap();
        assert!(failed.is_empty(), "the bystander got {failed:?}");
        assert!(ok > 0, "the bystander was served during the attack");
        let (status, _) = common::h2c_get(addr, "acme.example", "/careers").await;
        assert_eq!(status, 200, "served after the attack");
    }
}

/// Runs `attack` on a raw connection beside a bystander; the attack's
/// connection must end with `GOAWAY(ENHANCE_YOUR_CALM)` (its debug data
/// one of `debug`) although no more than `max` batches were sent: so the
/// server gave up within `max` batches.
async fn abuse(limits: Limits, max: usize, debug: &[&str], attack: impl FnMut(usize) -> Vec<u8>) {
    let (_rt, addr) = start(limits).await;
    let bystander = Bystander::start(addr).await;
    // The bystander is served before the attack starts.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut raw = RawH2::connect(addr).await;
    let (end, sent) = raw.flood(max, attack).await;
    match &end {
        End::GoAway(ENHANCE_YOUR_CALM, d) if debug.contains(&d.as_str()) => {}
        other => panic!(
            "after {sent} of at most {max} batches: {other:?}, not GOAWAY(ENHANCE_YOUR_CALM, {debug:?})"
        ),
    }
    bystander.check(addr).await;
}

fn roomy() -> Limits {
    Limits {
        header_read_timeout: Duration::from_secs(20),
        idle_timeout: Duration::from_secs(20),
        ..Limits::default()
    }
}

/// CVE-2023-44487: 100 streams opened and at once reset, in one write;
/// h2 refuses more than 20 reset before the server took them up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_gets_goaway() {
    abuse(roomy(), 1, &["too_many_resets"], |_| {
        let mut b = Vec::new();
        for j in 0..100 {
            let id = 2 * j + 1;
            b.extend(frame(
                HEADERS,
                END_STREAM | END_HEADERS,
                id,
                &request_block("GET", "/careers"),
            ));
            b.extend(frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes()));
        }
        b
    })
    .await;
}

/// Rapid reset paced so that the server takes each stream up before its
/// reset comes (h2's pending-accept limit never sees it): the control
/// frame budget ends it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paced_rapid_reset_gets_goaway() {
    let limits = Limits {
        http2_max_control_frames_per_second: 5,
        ..roomy()
    };
    let (_rt, addr) = start(limits).await;
    let bystander = Bystander::start(addr).await;
    let mut raw = RawH2::connect(addr).await;
    let mut end = End::Open;
    let mut sent = 0u32;
    while end == End::Open && sent < 200 {
        let id = 2 * sent + 1;
        let mut b = frame(
            HEADERS,
            END_STREAM | END_HEADERS,
            id,
            &request_block("GET", "/careers?delay=1s"),
        );
        raw.w.write_all(&b).await.unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        b = frame(RST_STREAM, 0, id, &CANCEL.to_be_bytes());
        if raw.w.write_all(&b).await.is_err() {
            break;
        }
        sent += 1;
        end = raw.end.borrow().clone();
    }
    let mut watch = raw.end.clone();
    let _ = tokio::time::timeout(Duration::from_secs(2), watch.wait_for(|e| *e != End::Open)).await;
    let end = raw.end.borrow().clone();
    assert_eq!(
        end,
        End::GoAway(ENHANCE_YOUR_CALM, "too_many_control_frames".into()),
        "after {sent} streams reset"
    );
    // 50 in the burst, 5 a second after it.
    assert!((50..=60).contains(&sent), "{sent} streams reset");
    bystander.check(addr).await;
}

/// A header block that never ends: CONTINUATION frames, each with one
/// more field, 7 of them. h2 allows the frames `max_header_bytes` needs
/// and a quarter more (5 for 64 KiB).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_flood_gets_goaway() {
    abuse(roomy(), 8, &["too_many_continuations"], |i| {
        if i == 0 {
            return frame(HEADERS, END_STREAM, 1, &request_block("GET", "/careers"));
        }
        let mut field = Vec::new();
        literal(&mut field, "x-more", b"and more");
        frame(CONTINUATION, 0, 1, &field)
    })
    .await;
}

/// SETTINGS frames, each to be acknowledged: 1 200 in batches of 100,
/// over the budget's burst of 1 000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_flood_gets_goaway() {
    abuse(roomy(), 12, &["too_many_control_frames"], |_| {
        frame(SETTINGS, 0, 0, &[]).repeat(100)
    })
    .await;
}

/// PING frames, each to be answered: 1 200 in batches of 100, over the
/// budget's burst of 1 000.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ping_flood_gets_goaway() {
    abuse(roomy(), 12, &["too_many_control_frames"], |i| {
        frame(PING, 0, 0, &(i as u64).to_be_bytes()).repeat(100)
    })
    .await;
}

/// Empty DATA frames on an open request: 150, in batches of 50; h2
/// allows 100 on a connection (a limit of its own, not configurable).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_data_flood_gets_goaway() {
    abuse(roomy(), 4, &["too_many_data_frames"], |i| {
        if i == 0 {
            return frame(HEADERS, END_HEADERS, 1, &request_block("POST", "/careers"));
        }
        frame(DATA, 0, 1, &[]).repeat(50)
    })
    .await;
}

/// Empty HEADERS frames, each opening a stream with no request in it
/// (a stream error, RST_STREAM): 300 in batches of 100, over a limit of
/// 200 streams reset for the client's errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_headers_flood_gets_goaway() {
    abuse(
        Limits {
            http2_max_local_error_reset_streams: 200,
            ..roomy()
        },
        3,
        &["too_many_internal_resets"],
        |i| {
            let mut b = Vec::new();
            for j in 0..100 {
                let id = u32::try_from(2 * (100 * i + j) + 1).unwrap();
                b.extend(frame(HEADERS, END_STREAM | END_HEADERS, id, &[]));
            }
            b
        },
    )
    .await;
}

/// An HPACK bomb: a 4 000-byte field put in the dynamic table, then
/// referred to by one byte again and again in the same block (16 KiB of
/// block, 49 MB of header list). h2 stops decoding at four times
/// `max_header_bytes`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hpack_bomb_gets_goaway() {
    abuse(roomy(), 1, &["header_list_way_too_large"], |_| {
        let mut block = request_block("GET", "/careers");
        literal_indexed(&mut block, "x-bomb", &[b'a'; 4000]);
        // The newest dynamic table entry: index 62.
        block.resize(16_384, 0x80 | 62);
        frame(HEADERS, END_STREAM | END_HEADERS, 1, &block)
    })
    .await;
}
