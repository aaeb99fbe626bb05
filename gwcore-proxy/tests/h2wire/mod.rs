//! A hand-written HTTP/2 client for the abuse tests: frames and HPACK
//! blocks encoded here, byte by byte, so that a test can send what no
//! well-behaved client (hyper's, h2's) would.
#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::watch;

pub const DATA: u8 = 0x0;
pub const HEADERS: u8 = 0x1;
pub const RST_STREAM: u8 = 0x3;
pub const SETTINGS: u8 = 0x4;
pub const PING: u8 = 0x6;
pub const GOAWAY: u8 = 0x7;
pub const CONTINUATION: u8 = 0x9;

pub const END_STREAM: u8 = 0x1;
pub const ACK: u8 = 0x1;
pub const END_HEADERS: u8 = 0x4;

pub const CANCEL: u32 = 0x8;
pub const ENHANCE_YOUR_CALM: u32 = 0xb;

/// One frame on the wire (RFC 9113 §4.1).
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut f = vec![len[1], len[2], len[3], kind, flags];
    f.extend_from_slice(&stream.to_be_bytes());
    f.extend_from_slice(payload);
    f
}

/// An HPACK integer with an `n`-bit prefix (RFC 7541 §5.1), the prefix's
/// other bits set to `high`.
pub fn int(out: &mut Vec<u8>, high: u8, n: u32, mut v: usize) {
    let max = (1usize << n) - 1;
    if v < max {
        out.push(high | u8::try_from(v).unwrap());
        return;
    }
    out.push(high | u8::try_from(max).unwrap());
    v -= max;
    while v >= 128 {
        out.push(u8::try_from(v % 128).unwrap() | 0x80);
        v /= 128;
    }
    out.push(u8::try_from(v).unwrap());
}

/// A string literal, not Huffman-coded (RFC 7541 §5.2).
pub fn string(out: &mut Vec<u8>, s: &[u8]) {
    int(out, 0, 7, s.len());
    out.extend_from_slice(s);
}

/// A header field with a new name, not indexed (RFC 7541 §6.2.2).
pub fn literal(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(0x00);
    string(out, name.as_bytes());
    string(out, value);
}

/// A header field with a new name, added to the dynamic table
/// (RFC 7541 §6.2.1).
pub fn literal_indexed(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.push(0x40);
    string(out, name.as_bytes());
    string(out, value);
}

/// The pseudo-header fields of a request: `:method` and `:scheme http`
/// from the static table, `:path` and `:authority` literal with indexed
/// names (static entries 4 and 1), not indexed.
pub fn request_block(method: &str, path: &str) -> Vec<u8> {
    let mut b = Vec::new();
    match method {
        "GET" => b.push(0x82),
        "POST" => b.push(0x83),
        other => panic!("no static entry for {other}"),
    }
    b.push(0x86);
    int(&mut b, 0, 4, 4);
    string(&mut b, path.as_bytes());
    int(&mut b, 0, 4, 1);
    string(&mut b, b"acme.example");
    b
}

/// How a connection ended, as its reader saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// Still open.
    Open,
    /// GOAWAY: its error code and debug data.
    GoAway(u32, String),
    /// Closed without a GOAWAY.
    Closed,
}

/// A connection that has done the handshake; its frames are read on a
/// task of their own, which reports how the connection ended.
pub struct RawH2 {
    pub w: OwnedWriteHalf,
    pub end: watch::Receiver<End>,
}

impl RawH2 {
    /// Connects, sends the preface and SETTINGS, and acknowledges the
    /// server's SETTINGS.
    pub async fn connect(addr: SocketAddr) -> RawH2 {
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend(frame(SETTINGS, 0, 0, &[]));
        s.write_all(&hello).await.unwrap();
        loop {
            let (kind, flags, _, _) = read_frame(&mut s).await.expect("the server's SETTINGS");
            if kind == SETTINGS && flags & ACK == 0 {
                s.write_all(&frame(SETTINGS, ACK, 0, &[])).await.unwrap();
                break;
            }
        }
        let (mut r, w) = s.into_split();
        let (tx, end) = watch::channel(End::Open);
        tokio::spawn(async move {
            loop {
                match read_frame(&mut r).await {
                    Some((GOAWAY, _, _, payload)) => {
                        let code = u32::from_be_bytes(payload[4..8].try_into().unwrap());
                        let debug = String::from_utf8_lossy(&payload[8..]).into_owned();
                        let _ = tx.send(End::GoAway(code, debug));
                        return;
                    }
                    Some(_) => {}
                    None => {
                        let _ = tx.send(End::Closed);
                        return;
                    }
                }
            }
        });
        RawH2 { w, end }
    }

    /// Sends `batch(i)` for i = 0, 1, ... until the connection ends or
    /// `max` batches are sent; then waits up to two seconds for the end.
    /// Returns how it ended and how many batches were sent.
    pub async fn flood(
        &mut self,
        max: usize,
        mut batch: impl FnMut(usize) -> Vec<u8>,
    ) -> (End, usize) {
        let mut sent = 0;
        while sent < max && *self.end.borrow() == End::Open {
            let bytes = batch(sent);
            // The server may stop reading (it refuses the connection, or
            // its answers are not read fast enough): the end is watched
            // meanwhile.
            let mut end = self.end.clone();
            tokio::select! {
                r = self.w.write_all(&bytes) => if r.is_err() { break },
                _ = end.wait_for(|e| *e != End::Open) => break,
            }
            sent += 1;
        }
        let mut end = self.end.clone();
        let _ =
            tokio::time::timeout(Duration::from_secs(2), end.wait_for(|e| *e != End::Open)).await;
        let end = self.end.borrow().clone();
        (end, sent)
    }
}

/// The next frame: type, flags, stream, payload; `None` at the end.
pub async fn read_frame<R: AsyncReadExt + Unpin>(r: &mut R) -> Option<(u8, u8, u32, Vec<u8>)> {
    let mut h = [0u8; 9];
    r.read_exact(&mut h).await.ok()?;
    let len = usize::from(h[0]) << 16 | usize::from(h[1]) << 8 | usize::from(h[2]);
    let stream = u32::from_be_bytes([h[5], h[6], h[7], h[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    r.read_exact(&mut payload).await.ok()?;
    Some((h[3], h[4], stream, payload))
}
