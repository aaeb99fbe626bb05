//! The forwarder and the echo backend, over real sockets.

mod common;

use std::time::Duration;

use bytes::Bytes;
use gwcore_proxy::body::empty;
use gwcore_proxy::echo::{EchoIdentity, EchoServer, Echoed};
use gwcore_proxy::forward::{
    BackendProtocol, ClientInfo, ForwardError, Forwarder, prepare_request,
};
use http::Request;
use http_body_util::BodyExt;

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

async fn echoed(resp: http::Response<hyper::body::Incoming>) -> Echoed {
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
