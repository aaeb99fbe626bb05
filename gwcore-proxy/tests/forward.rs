//! The forwarder and the echo backend, over real sockets.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gwcore_proxy::body::empty;
use gwcore_proxy::echo::{EchoIdentity, EchoServer, Echoed};
use gwcore_proxy::forward::{
    BackendProtocol, ClientInfo, ForwardError, Forwarder, prepare_request,
};
use http::Request;
use http_body_util::BodyExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

async fn echo() -> EchoServer {
    EchoServer::start(
        EchoIdentity::new("careers", "careers", 0),
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

fn request(path: &str, host: &str) -> Request<gwcore_proxy::body::Body> {
    let (mut parts, body) = Request::builder()
        .uri(path)
        .header("host", host)
        .header("x-custom", "1")
        .header("connection", "close")
        .body(empty())
        .unwrap()
        .into_parts();
    prepare_request(
        &mut parts,
        &ClientInfo::new("192.0.2.1:40000".parse().unwrap(), false),
    );
    Request::from_parts(parts, body)
}

async fn echoed(resp: http::Response<gwcore_proxy::body::Body>) -> Echoed {
    let body: Bytes = resp.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&body).unwrap_or_else(|e| panic!("not echo JSON ({e}): {body:?}"))
}

#[tokio::test]
async fn http1_backend_sees_path_query_host_and_proxy_headers() {
    let echo = echo().await;
    let f = Forwarder::default();
    let resp = f
        .send(
            request("/careers/x?a=1", "acme.example"),
            echo.addr(),
            BackendProtocol::Http1,
            None,
        )
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let e = echoed(resp).await;
    assert_eq!(e.path, "/careers/x?a=1");
    assert_eq!(e.host, "acme.example");
    assert_eq!(e.proto, "HTTP/1.1");
    assert_eq!(e.namespace, "careers");
    assert!(e.pod.starts_with("careers-"));
    assert_eq!(e.headers["X-Forwarded-For"], ["192.0.2.1"]);
    assert_eq!(e.headers["X-Forwarded-Proto"], ["http"]);
    assert_eq!(e.headers["X-Custom"], ["1"]);
    assert_eq!(e.headers["Via"], ["1.1 gwcore"]);
    assert!(
        !e.headers.contains_key("Connection"),
        "hop-by-hop header forwarded"
    );
}

#[tokio::test]
async fn h2c_backend_gets_http2_with_the_original_authority() {
    let echo = echo().await;
    let f = Forwarder::default();
    for _ in 0..3 {
        let resp = f
            .send(
                request("/h2?x=y", "grpc.example:80"),
                echo.addr(),
                BackendProtocol::H2c,
                None,
            )
            .await
            .unwrap();
        let e = echoed(resp).await;
        assert_eq!(e.proto, "HTTP/2.0");
        assert_eq!(e.host, "grpc.example:80");
        assert_eq!(e.path, "/h2?x=y");
    }
}

#[tokio::test]
async fn closed_port_is_unreachable_and_answers_503() {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    drop(l);
    let f = Forwarder::default();
    let err = f
        .send(request("/", "x"), addr, BackendProtocol::Http1, None)
        .await
        .unwrap_err();
    assert!(matches!(err, ForwardError::Unreachable(..)), "{err:?}");
    assert_eq!(err.status(), 503);
}

#[tokio::test]
async fn slow_backend_times_out_with_504() {
    let echo = echo().await;
    let f = Forwarder::default();
    let err = f
        .send(
            request("/?delay=2s", "x"),
            echo.addr(),
            BackendProtocol::Http1,
            Some(Duration::from_millis(200)),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, ForwardError::Timeout(..)), "{err:?}");
    assert_eq!(err.status(), 504);
}

#[tokio::test]
async fn echo_sets_requested_response_headers_and_fails_retries_as_asked() {
    let echo = echo().await;
    let c = common::client();
    let (status, headers, _) = common::get(&c, echo.addr(), "x", "/").await;
    assert_eq!(status, 200);
    assert!(headers.get("x-a").is_none());
    let req = Request::builder()
        .uri(format!("http://{}/", echo.addr()))
        .header("x-echo-set-header", "X-A:1,X-B: two")
        .body(http_body_util::Full::new(Bytes::new()))
        .unwrap();
    let resp = c.request(req).await.unwrap();
    assert_eq!(resp.headers()["x-a"], "1");
    assert_eq!(resp.headers()["x-b"], "two");
    let path = "/retry/a?uuid=u1&succeedAfter=2&responseCode=503";
    assert_eq!(common::get(&c, echo.addr(), "x", path).await.0, 503);
    assert_eq!(common::get(&c, echo.addr(), "x", path).await.0, 503);
    assert_eq!(common::get(&c, echo.addr(), "x", path).await.0, 200);
}

/// A backend written byte by byte: for each connection it accepts, `serve`
/// gets the stream; the number of connections accepted is counted.
async fn raw_backend<F, Fut>(serve: F) -> (std::net::SocketAddr, Arc<AtomicUsize>)
where
    F: Fn(TcpStream) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(serve(s));
        }
    });
    (addr, accepted)
}

/// Reads one request head (through its blank line) and, when it declares
/// a length or is chunked, its body; `None` at end of stream.
async fn read_request(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = Vec::new();
    let mut byte = [0u8; 1];
    while !buf.ends_with(b"\r\n\r\n") {
        if s.read(&mut byte).await.ok()? == 0 {
            return None;
        }
        buf.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&buf).to_ascii_lowercase();
    if let Some(n) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
        .and_then(|n| n.trim().parse::<usize>().ok())
    {
        let mut body = vec![0u8; n];
        s.read_exact(&mut body).await.ok()?;
        buf.extend_from_slice(&body);
    } else if head.contains("transfer-encoding: chunked") {
        while !buf.ends_with(b"\r\n0\r\n\r\n") {
            if s.read(&mut byte).await.ok()? == 0 {
                return None;
            }
            buf.push(byte[0]);
        }
    }
    Some(buf)
}

fn get(path: &str) -> Request<gwcore_proxy::body::Body> {
    Request::builder()
        .uri(path)
        .header("host", "raw.example")
        .body(empty())
        .unwrap()
}

#[tokio::test]
async fn keep_alive_connections_are_reused_and_idle_closes_are_survived() {
    // Answers every request on a connection, and closes one left idle for
    // 50 ms, as backends with short keep-alive timeouts do.
    let (addr, accepted) = raw_backend(|mut s| async move {
        while let Ok(Some(_)) =
            tokio::time::timeout(Duration::from_millis(50), read_request(&mut s)).await
        {
            let ok = s
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .await;
            if ok.is_err() {
                return;
            }
        }
    })
    .await;
    let f = Forwarder::default();
    let fetch = || async {
        let resp = f
            .send(get("/"), addr, BackendProtocol::Http1, None)
            .await
            .expect("a request after an idle close must not fail");
        assert_eq!(resp.status(), 200);
        resp.into_body().collect().await.unwrap().to_bytes()
    };
    for _ in 0..5 {
        assert_eq!(fetch().await, "ok");
    }
    assert_eq!(
        accepted.load(Ordering::SeqCst),
        1,
        "back-to-back requests share one connection"
    );
    for round in 2..=4 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(fetch().await, "ok");
        assert_eq!(accepted.load(Ordering::SeqCst), round);
    }
}

#[tokio::test]
async fn bodies_of_unknown_length_go_chunked_and_chunked_answers_keep_their_trailers() {
    let (tx, rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
    let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
    let (addr, _) = raw_backend(move |mut s| {
        let tx = tx.clone();
        async move {
            let Some(req) = read_request(&mut s).await else {
                return;
            };
            if let Some(tx) = tx.lock().unwrap().take() {
                let _ = tx.send(req);
            }
            let _ = s
                .write_all(
                    b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
                      5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nx-checksum: 42\r\n\r\n",
                )
                .await;
        }
    })
    .await;
    // A body whose length is not known in advance: two pieces from a stream.
    let pieces = futures_util::stream::iter([
        Ok::<_, gwcore_proxy::body::BoxError>(hyper::body::Frame::data(Bytes::from_static(b"abc"))),
        Ok(hyper::body::Frame::data(Bytes::from_static(b"0123456789"))),
    ]);
    let body = http_body_util::StreamBody::new(pieces).boxed();
    let req = Request::post("/upload")
        .header("host", "raw.example")
        .body(body)
        .unwrap();
    let resp = Forwarder::default()
        .send(req, addr, BackendProtocol::Http1, None)
        .await
        .unwrap();
    let collected = resp.into_body().collect().await.unwrap();
    let trailers = collected.trailers().cloned().expect("trailers");
    assert_eq!(trailers["x-checksum"], "42");
    assert_eq!(collected.to_bytes(), "hello world");
    let sent = String::from_utf8(rx.await.unwrap()).unwrap();
    assert!(
        sent.starts_with("POST /upload HTTP/1.1\r\n"),
        "request line: {sent:?}"
    );
    assert!(
        sent.contains("\r\ntransfer-encoding: chunked\r\n"),
        "{sent:?}"
    );
    assert!(!sent.contains("content-length"), "{sent:?}");
    assert!(
        sent.ends_with("\r\n\r\n3\r\nabc\r\na\r\n0123456789\r\n0\r\n\r\n"),
        "chunked framing: {sent:?}"
    );
}

#[tokio::test]
async fn an_answer_before_the_upload_ends_is_passed_on_and_its_connection_not_reused() {
    // Refuses every upload after its head, without reading the body.
    let (addr, accepted) = raw_backend(|mut s| async move {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            if s.read(&mut byte).await.unwrap_or(0) == 0 {
                return;
            }
            buf.push(byte[0]);
        }
        let _ = s
            .write_all(b"HTTP/1.1 413 Content Too Large\r\ncontent-length: 4\r\n\r\nbig!")
            .await;
        // Keep reading (and dropping) so the proxy's writes do not block.
        let mut sink = vec![0u8; 64 * 1024];
        while s.read(&mut sink).await.unwrap_or(0) > 0 {}
    })
    .await;
    let f = Forwarder::default();
    for round in 1..=2 {
        let body = http_body_util::Full::new(Bytes::from(vec![b'x'; 8 << 20]))
            .map_err(|never| match never {})
            .boxed();
        let req = Request::put("/big")
            .header("host", "raw.example")
            .body(body)
            .unwrap();
        let resp = f
            .send(req, addr, BackendProtocol::Http1, Some(HANG))
            .await
            .unwrap();
        assert_eq!(resp.status(), 413);
        assert_eq!(resp.into_body().collect().await.unwrap().to_bytes(), "big!");
        assert_eq!(
            accepted.load(Ordering::SeqCst),
            round,
            "a connection whose request was cut short carries no other"
        );
    }
}

#[tokio::test]
async fn malformed_answers_are_bad_gateway_not_passed_on() {
    for answer in [
        &b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok!",
        b"HTTP/1.1 200 OK\r\nbad header line\r\n\r\n",
        b"not http at all\r\n\r\n",
    ] {
        let (addr, _) = raw_backend(move |mut s| async move {
            if read_request(&mut s).await.is_some() {
                let _ = s.write_all(answer).await;
            }
        })
        .await;
        let err = Forwarder::default()
            .send(get("/"), addr, BackendProtocol::Http1, Some(HANG))
            .await
            .unwrap_err();
        assert!(
            matches!(err, ForwardError::Failed(..)),
            "{:?}: {err:?}",
            String::from_utf8_lossy(answer)
        );
        assert_eq!(err.status(), 502);
    }
}

const HANG: Duration = Duration::from_secs(10);

#[tokio::test]
async fn large_answers_arrive_whole_in_both_framings() {
    const SIZE: usize = 4 << 20;
    let pattern: Arc<Vec<u8>> = Arc::new((0..SIZE).map(|i| (i % 251) as u8).collect());
    let served = pattern.clone();
    let (addr, _) = raw_backend(move |mut s| {
        let body = served.clone();
        async move {
            while let Some(req) = read_request(&mut s).await {
                if req.starts_with(b"GET /chunked") {
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n")
                        .await;
                    for piece in body.chunks(100_000) {
                        let _ = s
                            .write_all(format!("{:x}\r\n", piece.len()).as_bytes())
                            .await;
                        let _ = s.write_all(piece).await;
                        let _ = s.write_all(b"\r\n").await;
                    }
                    let _ = s.write_all(b"0\r\n\r\n").await;
                } else {
                    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
                    let _ = s.write_all(head.as_bytes()).await;
                    let _ = s.write_all(&body).await;
                }
            }
        }
    })
    .await;
    let f = Forwarder::default();
    for path in ["/length", "/chunked", "/length"] {
        let resp = f
            .send(get(path), addr, BackendProtocol::Http1, Some(HANG))
            .await
            .unwrap();
        let got = resp.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(got.len(), SIZE, "{path}");
        assert!(got[..] == pattern[..], "{path}: the bytes differ");
    }
}
