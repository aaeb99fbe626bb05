//! Driving a `gwcore serve` process from outside, with the standard library
//! only: a free port for it, the process killed when dropped, the status
//! code of one request, percentiles of timings. Shared by the tests of
//! `gwcore serve --kubernetes` (gwcore-cli/tests) and the first-200
//! benchmark driver (benches/k8s/first200.rs), which includes this file
//! by path.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::Child;
use std::time::Duration;

/// A `gwcore` process; killed (and reaped) when dropped.
pub struct Gwcore(pub Child);

impl Drop for Gwcore {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port nothing listens on now (the OS's pick for 127.0.0.1:0).
pub fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The status code of `GET path` (host `example.com`) on 127.0.0.1:`port`,
/// on a connection of its own, or `None` when the port does not answer
/// (or answers something that is not HTTP/1.x). Blocks for at most a
/// second.
pub fn status_code(port: u16, path: &str) -> Option<u16> {
    let timeout = Duration::from_secs(1);
    let mut s = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), timeout).ok()?;
    s.set_nodelay(true).ok()?;
    s.set_read_timeout(Some(timeout)).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    // "HTTP/1.1 200": the code is bytes 9..12.
    let mut buf = [0u8; 12];
    let mut n = 0;
    while n < buf.len() {
        match s.read(&mut buf[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    if !buf[..n].starts_with(b"HTTP/1.") {
        return None;
    }
    std::str::from_utf8(buf.get(9..12)?).ok()?.parse().ok()
}

/// [`status_code`] from async code (on Tokio's blocking pool).
pub async fn get(port: u16, path: &str) -> Option<u16> {
    let path = path.to_string();
    tokio::task::spawn_blocking(move || status_code(port, &path))
        .await
        .ok()
        .flatten()
}

/// The `p` quantile (0..=1) of `sorted`, the nearest rank; `sorted` must
/// not be empty.
pub fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}
