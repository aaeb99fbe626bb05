use super::*;

use std::time::Duration;

use tokio::io::{AsyncWriteExt, DuplexStream};

const LIMITS: HeadLimits = HeadLimits {
    max_bytes: 8 * 1024,
    max_fields: 100,
};

fn parse(wire: &[u8]) -> Result<Option<Head>, HeadError> {
    parse_with(wire, &LIMITS)
}

fn parse_with(wire: &[u8], limits: &HeadLimits) -> Result<Option<Head>, HeadError> {
    let mut buf = BytesMut::from(wire);
    parse_head(&mut buf, limits, &mut Vec::new(), &mut HeaderMap::new())
}

fn head(wire: &str) -> Head {
    parse(wire.as_bytes())
        .unwrap_or_else(|e| panic!("{wire:?}: {e:?}"))
        .unwrap_or_else(|| panic!("{wire:?}: incomplete"))
}

#[test]
fn a_head_is_read_with_its_framing_and_connection() {
    let h = head("POST /up?x=1 HTTP/1.1\r\nHost: a.example\r\nContent-Length: 5\r\n\r\nhello");
    assert_eq!(h.parts.method, Method::POST);
    assert_eq!(h.parts.uri, "/up?x=1");
    assert_eq!(h.parts.version, Version::HTTP_11);
    assert_eq!(h.parts.headers["host"], "a.example");
    assert_eq!(h.framing, Framing::Length(5));
    assert!(h.keep_alive);
    assert!(!h.expect_continue);

    let h = head("GET http://a.example/x HTTP/1.1\r\nHost: a.example\r\n\r\n");
    assert_eq!(h.parts.uri.authority().unwrap(), "a.example");
    assert_eq!(h.framing, Framing::Done);

    // Leading empty lines are skipped (RFC 9112 §2.2).
    let h = head("\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n");
    assert_eq!(h.parts.uri, "/");
}

#[test]
fn keep_alive_follows_the_version_and_connection_field() {
    for (wire, keep) in [
        ("GET / HTTP/1.1\r\nHost: a\r\n\r\n", true),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
            false,
        ),
        (
            "GET / HTTP/1.1\r\nHost: a\r\nConnection: foo, Close\r\n\r\n",
            false,
        ),
        ("GET / HTTP/1.0\r\n\r\n", false),
        ("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", true),
    ] {
        assert_eq!(head(wire).keep_alive, keep, "{wire:?}");
    }
}

#[test]
fn ambiguous_framing_is_refused() {
    for (wire, why) in [
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n",
            "TE and CL",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            "final coding not chunked",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;x=1\r\n\r\n",
            "coding with a parameter",
        ),
        (
            "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
            "TE on HTTP/1.0",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n",
            "conflicting CL",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n",
            "signed CL",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n",
            "CL with space",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n",
            "empty CL",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n",
            "space before colon",
        ),
        (
            "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n",
            "obs-fold",
        ),
        ("GET / HTTP/1.2\r\nHost: a\r\n\r\n", "unknown version"),
        ("GET / http/1.1\r\nHost: a\r\n\r\n", "lowercase version"),
        ("GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", "space in target"),
        ("GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", "bare CR"),
        (
            "GET / HTTP/1.1\nHost: a\r\nX\r\n\r\n",
            "field without colon",
        ),
    ] {
        match parse(wire.as_bytes()) {
            Err(HeadError::Bad(_)) => {}
            other => panic!("{why}: {wire:?} gave {other:?}"),
        }
    }
}

#[test]
fn repeated_equal_lengths_and_chunked_twice_are_read_once() {
    let h = head("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n");
    assert_eq!(h.framing, Framing::Length(5));
    let h = head(
        "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    assert_eq!(h.framing, Framing::Chunked(Chunk::Size));
    let h = head("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, Chunked\r\n\r\n");
    assert_eq!(h.framing, Framing::Chunked(Chunk::Size));
}

#[test]
fn heads_over_the_limits_are_431_and_incomplete_ones_wait() {
    let big = format!(
        "GET / HTTP/1.1\r\nHost: a\r\nX-Pad: {}\r\n\r\n",
        "a".repeat(9000)
    );
    assert_eq!(parse(big.as_bytes()).unwrap_err(), HeadError::TooLarge);
    // Incomplete and already over the limit: no use waiting.
    assert_eq!(
        parse(&big.as_bytes()[..8500]).unwrap_err(),
        HeadError::TooLarge
    );
    // Incomplete and within it: wait.
    assert!(parse(&big.as_bytes()[..4000]).unwrap().is_none());

    let fields: String = (0..21).map(|i| format!("X-F{i}: v\r\n")).collect();
    let wire = format!("GET / HTTP/1.1\r\n{fields}\r\n");
    let limits = HeadLimits {
        max_fields: 20,
        ..LIMITS
    };
    assert_eq!(
        parse_with(wire.as_bytes(), &limits).unwrap_err(),
        HeadError::TooManyFields
    );
    let fields: String = (0..20).map(|i| format!("X-F{i}: v\r\n")).collect();
    let wire = format!("GET / HTTP/1.1\r\n{fields}\r\n");
    assert!(parse_with(wire.as_bytes(), &limits).unwrap().is_some());
    // Above the stack's room.
    let fields: String = (0..150).map(|i| format!("X-F{i}: v\r\n")).collect();
    let wire = format!("GET / HTTP/1.1\r\n{fields}\r\n");
    let limits = HeadLimits {
        max_fields: 200,
        ..LIMITS
    };
    assert_eq!(
        parse_with(wire.as_bytes(), &limits)
            .unwrap()
            .unwrap()
            .parts
            .headers
            .len(),
        150
    );
}

#[test]
fn expect_continue_is_kept_only_for_a_body_on_http11() {
    let h = head("POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 3\r\n\r\n");
    assert!(h.expect_continue);
    let h = head("GET / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\n\r\n");
    assert!(!h.expect_continue);
}

/// A decoded body: its data, its trailers, and what was left after it.
type DecodedBody = (Vec<u8>, Option<HeaderMap>, Vec<u8>);

/// Decodes `wire` fed `step` bytes at a time.
fn decode_all(wire: &[u8], framing: Framing, step: usize) -> Result<DecodedBody, BoxError> {
    let mut framing = framing;
    let mut buf = BytesMut::new();
    let mut fed = 0;
    let mut data = Vec::new();
    let mut trailers = None;
    loop {
        match decode(&mut buf, &mut framing, 8192)? {
            Decoded::Frame(f) => match f.into_data() {
                Ok(d) => data.extend_from_slice(&d),
                Err(f) => trailers = f.into_trailers().ok(),
            },
            Decoded::End => return Ok((data, trailers, buf.to_vec())),
            Decoded::More if fed < wire.len() => {
                let n = step.min(wire.len() - fed);
                buf.extend_from_slice(&wire[fed..fed + n]);
                fed += n;
            }
            Decoded::More => return Err("cut short".into()),
        }
    }
}

#[test]
fn chunked_bodies_decode_whatever_the_reads() {
    let wire =
        b"5;a=b\r\nhello\r\n1 ; name\r\n \r\n6;x=\"q v\"\r\nworld!\r\n0\r\nx-sum: 12\r\n\r\nGET";
    for step in [1, 2, 3, 7, wire.len()] {
        let (data, trailers, rest) = decode_all(wire, Framing::Chunked(Chunk::Size), step).unwrap();
        assert_eq!(data, b"hello world!", "step {step}");
        assert_eq!(trailers.unwrap()["x-sum"], "12");
        // The next request's bytes are left, whatever was fed.
        assert!(b"GET".starts_with(&rest), "step {step}: {rest:?}");
    }
    let (data, _, rest) = decode_all(b"helloGET", Framing::Length(5), 3).unwrap();
    assert_eq!(data, b"hello");
    assert!(b"GET".starts_with(&rest));
}

#[test]
fn malformed_chunks_are_refused() {
    for wire in [
        &b"zz\r\nhello\r\n0\r\n\r\n"[..],
        b"5g\r\nhello\r\n0\r\n\r\n",
        b"0x5\r\nhello\r\n0\r\n\r\n",
        b"+5\r\nhello\r\n0\r\n\r\n",
        b" 5\r\nhello\r\n0\r\n\r\n",
        b"\r\nhello\r\n0\r\n\r\n",
        b"5\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\n0\r\n\r\n",
        b"5\r\nhelloX\r\n0\r\n\r\n",
        b"5\r\nhello\rX0\r\n\r\n",
        b"5 x\r\nhello\r\n0\r\n\r\n",
        b"5;a\nb\r\nhello\r\n0\r\n\r\n",
        b"5;\r\nhello\r\n0\r\n\r\n",
        b"5;a=\r\nhello\r\n0\r\n\r\n",
        b"5;a=\"open\r\nhello\r\n0\r\n\r\n",
        b"10000000000000005\r\nhello\r\n0\r\n\r\n",
        b"5\r\nhello\r\n0\r\nno colon\r\n\r\n",
        b"5\r\nhello\r\n0\r\n: empty-name\r\n\r\n",
        b"5\r\nhello\r\n0\r\na b: c\r\n\r\n",
        b"5\r\nhello\r\n0\r\nx-sum: 12\n\r\n",
        b"5\r\nhello\r\n0\r\nx-a: 1\r\nx-sum: 12\n\r\n",
    ] {
        assert!(
            decode_all(wire, Framing::Chunked(Chunk::Size), 1).is_err()
                && decode_all(wire, Framing::Chunked(Chunk::Size), wire.len()).is_err(),
            "{:?}",
            String::from_utf8_lossy(wire)
        );
    }
}

#[test]
fn dates_are_imf_fixdates() {
    assert_eq!(&date::format(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
    assert_eq!(&date::format(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
    assert_eq!(&date::format(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
    assert_eq!(
        &date::format(4_102_444_799),
        b"Thu, 31 Dec 2099 23:59:59 GMT"
    );
}

// ------------------------------------------------------------- over a pipe

/// Serves one connection over a pipe with a handler that answers
/// `method path body-length` after reading the body (unless the path is
/// `/noread`), `Connection: close` for `/close`, and a chunked body for
/// `/stream`; returns the client's end.
fn served(
    limits: HeadLimits,
) -> (
    DuplexStream,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let (client, server) = tokio::io::duplex(64 * 1024);
    let (close_tx, close_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(serve(
        server,
        BytesMut::new(),
        limits,
        |req: Request<Body>| async move {
            let (parts, body) = req.into_parts();
            let path = parts.uri.path().to_owned();
            let n = if path == "/noread" {
                0
            } else {
                match body.collect().await {
                    Ok(b) => b.to_bytes().len(),
                    Err(_) => {
                        let mut r = Response::new(crate::body::full("bad body"));
                        *r.status_mut() = StatusCode::BAD_REQUEST;
                        return r;
                    }
                }
            };
            let text = format!("{} {path} {n}", parts.method);
            if path == "/stream" {
                let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
                    Ok(Frame::data(Bytes::from("ab"))),
                    Ok(Frame::data(Bytes::from("cd"))),
                ];
                return Response::new(
                    http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed(),
                );
            }
            let mut r = Response::new(crate::body::full(text));
            if path == "/close" {
                r.headers_mut()
                    .insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            r
        },
        close_rx,
    ));
    (client, close_tx, task)
}

/// Reads what the server sends until it closes (or a second passes).
async fn read_all(c: &mut DuplexStream) -> String {
    let mut got = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(1), c.read_to_end(&mut got)).await;
    String::from_utf8_lossy(&got).into_owned()
}

/// The responses in `wire`: status line and body of each.
fn responses(wire: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = wire;
    while let Some(end) = rest.find("\r\n\r\n") {
        let head = &rest[..end];
        let status = head.lines().next().unwrap_or_default().to_owned();
        let lower = head.to_ascii_lowercase();
        let mut after = &rest[end + 4..];
        let body;
        if let Some(n) = lower
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .and_then(|n| n.parse::<usize>().ok())
        {
            body = after[..n].to_owned();
            after = &after[n..];
        } else if lower.contains("transfer-encoding: chunked") {
            let mut b = String::new();
            loop {
                let line_end = after.find("\r\n").unwrap();
                let size = usize::from_str_radix(&after[..line_end], 16).unwrap();
                after = &after[line_end + 2..];
                if size == 0 {
                    after = &after[2..];
                    break;
                }
                b.push_str(&after[..size]);
                after = &after[size + 2..];
            }
            body = b;
        } else {
            body = String::new();
        }
        out.push((status, body));
        rest = after;
    }
    out
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order_on_one_connection() {
    let (mut c, _close, task) = served(LIMITS);
    c.write_all(
        b"GET /a HTTP/1.1\r\nHost: x\r\n\r\nPOST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcPOST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\nGET /stream HTTP/1.1\r\nHost: x\r\n\r\nGET /d HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let got = read_all(&mut c).await;
    let r = responses(&got);
    assert_eq!(
        r,
        vec![
            ("HTTP/1.1 200 OK".into(), "GET /a 0".into()),
            ("HTTP/1.1 200 OK".into(), "POST /b 3".into()),
            ("HTTP/1.1 200 OK".into(), "POST /c 2".into()),
            ("HTTP/1.1 200 OK".into(), "abcd".into()),
            ("HTTP/1.1 200 OK".into(), "GET /d 0".into()),
        ],
        "{got}"
    );
    // The last asked to close: the server said so and closed.
    assert!(got.ends_with("GET /d 0"), "{got}");
    assert!(got.contains("connection: close\r\n"), "{got}");
    assert!(got.contains("date: "), "{got}");
    task.await.unwrap();
}

#[tokio::test]
async fn http10_gets_http10_answers_and_closes_unless_kept_alive() {
    let (mut c, _close, task) = served(LIMITS);
    c.write_all(b"GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /stream HTTP/1.0\r\n\r\n")
        .await
        .unwrap();
    let got = read_all(&mut c).await;
    assert!(got.starts_with("HTTP/1.0 200 OK\r\n"), "{got}");
    assert!(got.contains("connection: keep-alive\r\n"), "{got}");
    // No chunked coding for HTTP/1.0: the body ends with the connection.
    assert!(got.ends_with("\r\n\r\nabcd"), "{got}");
    assert!(!got.contains("transfer-encoding"), "{got}");
    task.await.unwrap();
}

#[tokio::test]
async fn head_answers_carry_no_body() {
    let (mut c, _close, task) = served(LIMITS);
    c.write_all(b"HEAD /stream HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let got = read_all(&mut c).await;
    let first_end = got.find("\r\n\r\n").unwrap() + 4;
    assert!(
        got[first_end..].starts_with("HTTP/1.1 200 OK\r\n"),
        "the next answer follows the HEAD answer's head: {got}"
    );
    task.await.unwrap();
}

#[tokio::test]
async fn continue_is_sent_when_the_body_is_read_and_not_before() {
    let (mut c, _close, _task) = served(LIMITS);
    c.write_all(
        b"POST /b HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 25];
    tokio::time::timeout(Duration::from_secs(1), c.read_exact(&mut buf))
        .await
        .expect("100 Continue in time")
        .unwrap();
    assert_eq!(&buf[..], CONTINUE);
    c.write_all(b"abc").await.unwrap();
    let mut got = vec![0u8; 512];
    let n = c.read(&mut got).await.unwrap();
    let got = String::from_utf8_lossy(&got[..n]);
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.ends_with("POST /b 3"), "{got}");

    // Answered without reading the body: no 100, and the connection closes.
    let (mut c, _close, task) = served(LIMITS);
    c.write_all(
        b"POST /noread HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
    )
    .await
    .unwrap();
    let got = read_all(&mut c).await;
    assert!(got.starts_with("HTTP/1.1 200 OK\r\n"), "{got}");
    assert!(got.contains("connection: close\r\n"), "{got}");
    task.await.unwrap();
}

#[tokio::test]
async fn refused_heads_get_their_status_and_the_connection_closes() {
    for (wire, status) in [
        (
            format!(
                "GET / HTTP/1.1\r\nHost: x\r\nX: {}\r\n\r\n",
                "a".repeat(9000)
            ),
            "431",
        ),
        (
            "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_owned(),
            "400",
        ),
        ("GET / HTTP/1.1\r\nHost : x\r\n\r\n".to_owned(), "400"),
    ] {
        let (mut c, _close, task) = served(LIMITS);
        c.write_all(wire.as_bytes()).await.unwrap();
        let got = read_all(&mut c).await;
        assert!(got.starts_with(&format!("HTTP/1.1 {status} ")), "{got}");
        assert!(got.contains("connection: close"), "{got}");
        task.await.unwrap();
    }
}

#[tokio::test]
async fn a_malformed_body_fails_the_body_and_closes() {
    let (mut c, _close, task) = served(LIMITS);
    c.write_all(b"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\nGET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let got = read_all(&mut c).await;
    let r = responses(&got);
    assert_eq!(r.len(), 1, "nothing after the broken body is read: {got}");
    assert!(r[0].0.contains("400"), "{got}");
    assert!(got.contains("connection: close"), "{got}");
    task.await.unwrap();
}

#[tokio::test]
async fn closing_ends_an_idle_connection_and_lets_a_request_finish() {
    let (mut c, close, task) = served(LIMITS);
    c.write_all(b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut got = vec![0u8; 512];
    let n = c.read(&mut got).await.unwrap();
    assert!(String::from_utf8_lossy(&got[..n]).ends_with("GET /a 0"));
    close.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(1), task)
        .await
        .expect("an idle connection closes")
        .unwrap();
}

#[tokio::test]
async fn a_switched_connection_reaches_the_claim_with_what_followed_the_head() {
    let (client, server) = tokio::io::duplex(4096);
    let (claims_tx, mut claims_rx) = tokio::sync::mpsc::unbounded_channel();
    let (_close_tx, close_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(
        server,
        BytesMut::new(),
        LIMITS,
        move |mut req: Request<Body>| {
            let claim = req
                .extensions_mut()
                .remove::<crate::upgrade::ClientUpgrade>();
            let _ = claims_tx.send(claim);
            async move {
                let mut r = Response::new(crate::body::empty());
                *r.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
                r.headers_mut()
                    .insert(header::UPGRADE, HeaderValue::from_static("websocket"));
                r
            }
        },
        close_rx,
    ));
    let mut client = client;
    client
        .write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\nearly")
        .await
        .unwrap();
    let claim = claims_rx.recv().await.unwrap().expect("a claim");
    let mut io = claim.connection().await.expect("the connection");
    let mut early = [0u8; 5];
    io.read_exact(&mut early).await.unwrap();
    assert_eq!(&early, b"early");
    io.write_all(b"pong").await.unwrap();
    let mut got = vec![0u8; 512];
    let mut seen = String::new();
    while !seen.ends_with("pong") {
        let n = client.read(&mut got).await.unwrap();
        assert!(n > 0, "{seen}");
        seen.push_str(&String::from_utf8_lossy(&got[..n]));
    }
    assert!(
        seen.starts_with("HTTP/1.1 101 Switching Protocols\r\n"),
        "{seen}"
    );
    assert!(!seen.contains("content-length"), "{seen}");
}

#[tokio::test]
async fn large_bodies_go_out_whole_with_their_framing() {
    let (client, server) = tokio::io::duplex(16 * 1024);
    let (_close_tx, close_rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve(
        server,
        BytesMut::new(),
        LIMITS,
        |req: Request<Body>| async move {
            let big = Bytes::from(vec![b'x'; 200_000]);
            if req.uri().path() == "/chunked" {
                let frames: Vec<Result<Frame<Bytes>, BoxError>> =
                    vec![Ok(Frame::data(big.clone())), Ok(Frame::data(big))];
                Response::new(
                    http_body_util::StreamBody::new(futures_util::stream::iter(frames)).boxed(),
                )
            } else {
                Response::new(crate::body::full(big))
            }
        },
        close_rx,
    ));
    let mut client = client;
    client
        .write_all(b"GET /length HTTP/1.1\r\nHost: x\r\n\r\nGET /chunked HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let got = read_all(&mut client).await;
    let r = responses(&got);
    assert_eq!(r.len(), 2, "{}", &got[..200.min(got.len())]);
    assert_eq!(r[0].1.len(), 200_000);
    assert_eq!(r[1].1.len(), 400_000);
    assert!(r.iter().all(|(_, b)| b.bytes().all(|c| c == b'x')));
}

/// The `h1_request` fuzz target's properties hold on its seeds: read whole
/// or in reads of 1 to 32 bytes, each request reads the same.
#[test]
fn the_fuzz_property_holds_on_the_seed_requests() {
    let seeds: [&[u8]; 8] = [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET",
        b"POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhelloPOST",
        b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;a=b\r\nhello\r\n0\r\nx-sum: 1\r\n\r\nGET",
        b"POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
        b"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET http://a.example/x?y HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        b"\r\nOPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\ncut",
    ];
    for seed in seeds {
        for first in 0u8..32 {
            let mut data = vec![first];
            data.extend_from_slice(seed);
            crate::__fuzz::h1_request(&data);
        }
    }
    // And they read as meant.
    let r = read_request(seeds[2], 3).unwrap().unwrap();
    assert_eq!(r.body, b"hello");
    assert_eq!(r.rest, 3);
    assert!(read_request(seeds[3], 1).is_err());
    assert!(read_request(seeds[7], 4).unwrap().is_none());
}
