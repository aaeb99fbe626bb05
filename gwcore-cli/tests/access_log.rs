//! `gwcore serve`'s access log is buffered off the request path
//! (`gwcore_proxy::access_log`):
//!
//! - nothing of it is lost when the process stops on SIGTERM: every
//!   request's line is on standard error, in the order the requests were
//!   answered, in the subscriber's text format;
//! - its memory is bounded and serving never waits for it: when standard
//!   error is not read at all, requests are still answered and the lines
//!   past the buffer are dropped and counted in `/metrics`;
//! - the lines gwcore writes itself (`gwcore_proxy::access_log::install`)
//!   are in the documented format, text and JSON, with a client's hostile
//!   bytes escaped, and `RUST_LOG` still switches them off.

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
    serve_with(&[], "info")
}

/// [`serve`] with more arguments and another `RUST_LOG`.
fn serve_with(args: &[&str], rust_log: &str) -> (Child, u16, u16) {
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
        .args(args)
        .env("RUST_LOG", rust_log)
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

/// Sends `raw` (a request head) on a new connection and reads the status line and
/// the rest of the answer (the echo backend's, `connection: close`).
fn send_raw(port: u16, raw: &[u8]) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(raw).expect("request sent");
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).expect("answer");
    String::from_utf8_lossy(&answer).into_owned()
}

/// Stops `child` with SIGTERM; its standard error.
fn stop(mut child: Child) -> String {
    let killed = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(killed.success());
    let mut err = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr read");
    assert!(child.wait().expect("exit").success(), "{err}");
    err
}

/// Hostile requests: a C1 control (CSI, U+009B, sent as UTF-8) in the
/// path (answered), and a space and a tab in Host that would forge a
/// `status=500` field, with a backslash (refused: 400, logged all the
/// same).
const HOSTILE_PATH: &[u8] =
    b"GET /careers/\xc2\x9b31m/{x} HTTP/1.1\r\nhost: acme.example.com\r\nconnection: close\r\n\r\n";
const HOSTILE_HOST: &[u8] =
    b"GET /careers/x HTTP/1.1\r\nhost: evil status=500\tx\\y\r\nconnection: close\r\n\r\n";

/// `line` with its timestamp, client port and `micros` value replaced by
/// `T`, `P` and `M`.
fn blank(line: &str, json: bool) -> String {
    assert!(line.len() > 40, "{line}");
    let (time, rest) = if json {
        let rest = line
            .strip_prefix("{\"timestamp\":\"")
            .expect("timestamp first");
        rest.split_at(27)
    } else {
        line.split_at(27)
    };
    assert!(time.ends_with('Z') && time.as_bytes()[10] == b'T', "{line}");
    let mut out = format!("T{rest}");
    for (field, end) in [
        ("127.0.0.1:", if json { '"' } else { ' ' }),
        (
            if json { "\"micros\":" } else { " micros=" },
            if json { ',' } else { ' ' },
        ),
    ] {
        let at = out.find(field).expect(field) + field.len();
        let len = out[at..].find(end).expect("field end");
        assert!(
            out[at..at + len].bytes().all(|b| b.is_ascii_digit()),
            "{line}"
        );
        out.replace_range(
            at..at + len,
            if field.contains("micros") { "M" } else { "P" },
        );
    }
    out
}

#[test]
fn hostile_requests_have_the_documented_text_and_json_lines() {
    let matched = "listener=infra-ns/shared-gateway/shared-http route=HTTPRoute careers/careers rule=0 match=0";
    for json in [false, true] {
        let args: &[&str] = if json { &["--log-format", "json"] } else { &[] };
        let (child, port, _admin) = serve_with(args, "info");
        drop(ready(port));
        let answer = send_raw(port, HOSTILE_PATH);
        assert!(answer.starts_with("HTTP/1.1 200 "), "{answer}");
        let answer = send_raw(port, HOSTILE_HOST);
        assert!(answer.starts_with("HTTP/1.1 400 "), "{answer}");
        let err = stop(child);
        let lines: Vec<String> = err
            .lines()
            .filter(|l| l.contains("gwcore::access") && !l.contains("/careers/ready"))
            .map(|l| blank(l, json))
            .collect();
        let want = if json {
            [
                format!(
                    "T\",\"level\":\"INFO\",\"fields\":{{\"client\":\"127.0.0.1:P\",\"port\":80,\
                     \"method\":\"GET\",\"host\":\"acme.example.com\",\
                     \"uri\":\"/careers/\\\\u{{9b}}31m/{{x}}\",\"version\":\"HTTP/1.1\",\
                     \"status\":200,\"micros\":M,\"gateway\":\"infra-ns/shared-gateway\",\
                     \"route\":\"HTTPRoute careers/careers\",\"backend\":\"careers/careers:9080\",\
                     \"matched\":\"{matched}\",\"ext_auth\":\"\",\"generation\":1,\
                     \"trace_id\":\"\"}},\"target\":\"gwcore::access\"}}"
                ),
                "T\",\"level\":\"INFO\",\"fields\":{\"client\":\"127.0.0.1:P\",\"port\":80,\
                 \"method\":\"GET\",\"host\":\"evil\\\\x20status=500\\\\x09x\\\\x5cy\",\
                 \"uri\":\"/careers/x\",\"version\":\"HTTP/1.1\",\
                 \"status\":400,\"micros\":M,\"gateway\":\"infra-ns/shared-gateway\",\
                 \"route\":\"\",\"backend\":\"\",\"matched\":\"\",\"ext_auth\":\"\",\
                 \"generation\":1,\"trace_id\":\"\"},\"target\":\"gwcore::access\"}"
                    .to_string(),
            ]
        } else {
            [
                format!(
                    "T  INFO gwcore::access: client=127.0.0.1:P port=80 method=GET \
                     host=acme.example.com uri=/careers/\\u{{9b}}31m/{{x}} version=HTTP/1.1 \
                     status=200 micros=M gateway=infra-ns/shared-gateway \
                     route=HTTPRoute careers/careers backend=careers/careers:9080 \
                     matched={matched} ext_auth=\"\" generation=1 trace_id="
                ),
                "T  INFO gwcore::access: client=127.0.0.1:P port=80 method=GET \
                 host=evil\\x20status=500\\x09x\\x5cy uri=/careers/x version=HTTP/1.1 \
                 status=400 micros=M gateway=infra-ns/shared-gateway route= backend= \
                 matched= ext_auth=\"\" generation=1 trace_id="
                    .to_string(),
            ]
        };
        assert_eq!(lines, want, "{err}");
    }
}

#[test]
fn rust_log_still_switches_the_access_log_off() {
    let (child, port, _admin) = serve_with(&[], "info,gwcore::access=off");
    let mut conn = ready(port);
    for i in 0..10 {
        assert_eq!(conn.get(&format!("/careers/{i}")).expect("answer"), 200);
    }
    drop(conn);
    let err = stop(child);
    assert!(!err.contains("gwcore::access"), "{err}");
    // Other lines are still written.
    assert!(err.contains(" INFO "), "{err}");
}
