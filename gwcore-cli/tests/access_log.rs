//! `gwcore serve`'s access log is buffered off the request path
//! (`gwcore_proxy::access_log`):
//!
//! - nothing of it is lost when the process stops on SIGTERM: every
//!   request's line is on standard error, in the order the requests were
//!   answered, in the subscriber's text format;
//! - its memory is bounded and serving never waits for it: when standard
//!   error is not read at all, requests are still answered and the lines
//!   past the buffer are dropped and counted in `/metrics`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// A keep-alive HTTP/1.1 connection to the proxy.
struct Conn(BufReader<TcpStream>);

impl Conn {
    fn open(port: u16) -> std::io::Result<Conn> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        // A proxy stalled on its log shows up as a read that times out.
        s.set_read_timeout(Some(Duration::from_secs(20)))?;
        Ok(Conn(BufReader::new(s)))
    }

    /// Sends `GET path` and reads the answer; its status code.
    fn get(&mut self, path: &str) -> std::io::Result<u16> {
        let req = format!("GET {path} HTTP/1.1\r\nhost: acme.example.com\r\n\r\n");
        self.0.get_mut().write_all(req.as_bytes())?;
        let mut status = String::new();
        self.0.read_line(&mut status)?;
        let mut len = 0usize;
        loop {
            let mut line = String::new();
            if self.0.read_line(&mut line)? == 0 {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            let line = line.to_ascii_lowercase();
            if line == "\r\n" {
                break;
            }
            if let Some(v) = line.strip_prefix("content-length:") {
                len = v.trim().parse().expect("content-length");
            }
        }
        let mut body = vec![0u8; len];
        self.0.read_exact(&mut body)?;
        Ok(status
            .get(9..12)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("status line {status:?}")))
    }
}

/// `gwcore serve examples/acme` with echo backends, its access log on
/// (RUST_LOG=info) and standard error piped; the proxy and admin ports.
fn serve() -> (Child, u16, u16) {
    let port = free_port();
    let admin = free_port();
    let acme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/acme");
    let child = Command::new(env!("CARGO_BIN_EXE_gwcore"))
        .arg("serve")
        .arg(&acme)
        .args(["--controller-name", "example.com/gateway-controller"])
        .args(["--echo-backends", "--threads", "1"])
        .args(["--listen", &format!("80=127.0.0.1:{port}")])
        .args(["--admin", &format!("127.0.0.1:{admin}")])
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gwcore runs");
    (child, port, admin)
}

/// A connection once `/careers/ready` answers 200.
fn ready(port: u16) -> Conn {
    let start = Instant::now();
    loop {
        if let Ok(mut c) = Conn::open(port)
            && c.get("/careers/ready").ok() == Some(200)
        {
            return c;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "not serving");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `gwcore_log_lines_dropped_total` from the admin port's `/metrics`.
fn dropped_lines(admin: u16) -> u64 {
    let mut m = TcpStream::connect(("127.0.0.1", admin)).expect("admin");
    m.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .expect("metrics asked");
    let mut metrics = String::new();
    m.read_to_string(&mut metrics).expect("metrics");
    metrics
        .lines()
        .find_map(|l| l.strip_prefix("gwcore_log_lines_dropped_total "))
        .unwrap_or_else(|| panic!("no gwcore_log_lines_dropped_total in {metrics}"))
        .parse()
        .expect("a count")
}

#[test]
fn every_access_line_is_written_in_order_when_serve_stops_on_sigterm() {
    let (mut child, port, admin) = serve();
    let mut conn = ready(port);
    // More lines than a pipe holds (64 KiB): standard error is read only
    // after the stop, so most of them wait in the buffer until then.
    const N: usize = 500;
    for i in 0..N {
        assert_eq!(conn.get(&format!("/careers/{i}")).expect("answer"), 200);
    }
    assert_eq!(dropped_lines(admin), 0, "no line dropped");
    drop(conn);
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    // A slow reader (a log shipper behind): the pipe is full and the rest
    // of the lines wait in the buffer. gwcore must not exit without them.
    std::thread::sleep(Duration::from_secs(1));
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr read");
    let status = child.wait().expect("exit");
    assert!(status.success(), "{status:?}\n{err}");
    let uris: Vec<&str> = err
        .lines()
        .filter(|l| l.contains(" INFO gwcore::access: ") && l.contains(" status=200 "))
        .filter_map(|l| l.split(" uri=").nth(1)?.split(' ').next())
        .filter(|u| *u != "/careers/ready")
        .collect();
    let expected: Vec<String> = (0..N).map(|i| format!("/careers/{i}")).collect();
    assert_eq!(uris, expected, "{err}");
}

#[test]
fn requests_are_answered_and_lines_dropped_when_stderr_is_never_read() {
    let (mut child, port, admin) = serve();
    let mut conn = ready(port);
    // Each access line holds the ~4 KiB target, so the buffer (4 MiB), the
    // chunk the writer is stuck writing and the pipe (64 KiB each) hold
    // about a thousand of them: the rest must be dropped, not waited for.
    let long = "x".repeat(4096);
    const N: usize = 3000;
    for i in 0..N {
        let answer = conn.get(&format!("/careers/{i}/{long}"));
        assert!(
            matches!(answer, Ok(200)),
            "request {i}: {answer:?} (serving stalled on the log?)"
        );
    }
    let dropped = dropped_lines(admin);
    // At most ~1 050 lines were kept: more than half found no room.
    assert!(
        dropped >= (N / 2) as u64 && dropped <= N as u64,
        "{dropped} of {N} lines dropped"
    );
    child.kill().expect("killed");
    child.wait().expect("exit");
}
