//! `Runtime` end to end over real sockets: the ACME scenario, reloads,
//! h2c, WebSockets, the admin endpoint and graceful shutdown.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use gwcore_proxy::echo::Echoed;
use gwcore_proxy::metrics::ReloadOutcome;
use gwcore_proxy::provider::{Runtime, RuntimeOptions};
use gwcore_proxy::server::ListenOptions;
use tokio_tungstenite::tungstenite::Message;

use common::{CONTROLLER, HTTP_GATEWAY, TempDir, acme_dir};

fn options() -> RuntimeOptions {
    common::options(true)
}

fn echoed(body: &[u8]) -> Echoed {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not echo JSON ({e}): {:?}", String::from_utf8_lossy(body)))
}

#[tokio::test]
async fn acme_careers_and_product_are_served_and_hr_gets_404() {
    let rt = Runtime::start(vec![acme_dir()], options()).await.unwrap();
    let addr = rt.local_addr(80).expect("port 80 is served");
    let c = common::client();
    for (path, ns) in [
        ("/careers", "careers"),
        ("/product", "product"),
        ("/careers/jobs?id=7", "careers"),
    ] {
        let (status, _, body) = common::get(&c, addr, "anything", path).await;
        assert_eq!(status, 200, "{path}");
        let e = echoed(&body);
        assert_eq!(e.path, path);
        assert_eq!(e.namespace, ns);
        assert!(e.pod.starts_with(&format!("{ns}-")), "{}", e.pod);
        assert_eq!(e.host, "anything");
    }
    let (status, _, _) = common::get(&c, addr, "anything", "/hr").await;
    assert_eq!(status, 404, "the hr route is not allowed to attach");
    let (status, _, _) = common::get(&c, addr, "anything", "/").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn h2c_prior_knowledge_clients_are_served() {
    let rt = Runtime::start(vec![acme_dir()], options()).await.unwrap();
    let addr = rt.local_addr(80).unwrap();
    let (status, body) = common::h2c_get(addr, "acme.example", "/product/x").await;
    assert_eq!(status, 200);
    let e = echoed(&body);
    assert_eq!(
        e.host, "acme.example",
        "the HTTP/2 authority reaches the backend as Host"
    );
    assert_eq!(e.headers["Via"], ["2 gwcore"]);
}

#[tokio::test]
async fn admin_endpoint_reports_health_metrics_and_status() {
    let rt = Runtime::start(vec![acme_dir()], options()).await.unwrap();
    let addr = rt.local_addr(80).unwrap();
    let (admin, task) =
        gwcore_proxy::admin::serve(rt.proxy().clone(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
    let c = common::client();
    common::get(&c, addr, "x", "/careers").await;
    common::get(&c, addr, "x", "/hr").await;
    assert_eq!(common::get(&c, admin, "x", "/healthz").await.0, 200);
    assert_eq!(common::get(&c, admin, "x", "/readyz").await.0, 200);
    let (_, _, metrics) = common::get(&c, admin, "x", "/metrics").await;
    let metrics = String::from_utf8(metrics.to_vec()).unwrap();
    assert!(
        metrics.contains(r#"gwcore_requests_total{gateway="infra-ns/shared-gateway",route="HTTPRoute careers/careers",backend="careers/careers:9080",code="200"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains(r#"gwcore_requests_total{gateway="infra-ns/shared-gateway",route="",backend="",code="404"} 1"#));
    let (_, _, status) = common::get(&c, admin, "x", "/status").await;
    let status: serde_json::Value = serde_json::from_slice(&status).unwrap();
    assert_eq!(status["generation"], 1);
    let hr = status["refusals"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["route"]["namespace"] == "hr")
        .expect("the hr route is refused");
    assert_eq!(hr["reason"], "NotAllowedByListeners");
    let echoes: Vec<&str> = status["echoBackends"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["service"].as_str().unwrap())
        .collect();
    assert_eq!(echoes, ["careers", "hr", "product"]);
    task.abort();
}

#[tokio::test]
async fn reload_applies_good_changes_refuses_bad_ones_and_ignores_no_ops() {
    let dir = TempDir::new("reload");
    let file = dir.0.join("acme.yaml");
    let acme = std::fs::read_to_string(acme_dir().join("acme.yaml")).unwrap();
    common::write_file(&file, &acme);
    let mut rt = Runtime::start(vec![dir.0.clone()], options())
        .await
        .unwrap();
    let addr = rt.local_addr(80).unwrap();
    let c = common::client();
    assert_eq!(common::get(&c, addr, "x", "/hr").await.0, 404);

    // The same objects again: nothing changes.
    common::write_file(&file, &format!("# touched\n{acme}"));
    assert_eq!(rt.poll().await, Some(ReloadOutcome::Unchanged));
    assert_eq!(rt.proxy().config().generation, 1);
    assert_eq!(rt.poll().await, None, "no change since the last look");

    // Label the hr namespace: its route attaches.
    let labelled = acme.replacen(
        "  name: hr\n---",
        "  name: hr\n  labels:\n    shared-gateway-access: \"true\"\n---",
        1,
    );
    assert_ne!(labelled, acme);
    common::write_file(&file, &labelled);
    assert_eq!(rt.poll().await, Some(ReloadOutcome::Applied));
    assert_eq!(rt.proxy().config().generation, 2);
    assert_eq!(rt.local_addr(80), Some(addr), "the socket is kept");
    let (status, _, body) = common::get(&c, addr, "x", "/hr").await;
    assert_eq!(status, 200);
    assert_eq!(echoed(&body).namespace, "hr");

    // A broken file is refused; the last good configuration keeps serving.
    common::write_file(&file, &format!("{labelled}\n---\nkind: [unclosed\n"));
    assert_eq!(rt.poll().await, Some(ReloadOutcome::Failed));
    assert_eq!(rt.proxy().config().generation, 2);
    assert!(rt.proxy().reload_error().is_some());
    assert_eq!(common::get(&c, addr, "x", "/hr").await.0, 200);
    let status = rt.proxy().status_json();
    assert!(
        !status["reloadError"]["errors"]
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Fixing it clears the error.
    common::write_file(&file, &acme);
    assert_eq!(rt.poll().await, Some(ReloadOutcome::Applied));
    assert!(rt.proxy().reload_error().is_none());
    assert_eq!(common::get(&c, addr, "x", "/hr").await.0, 404);
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    let rt = Runtime::start(vec![acme_dir()], options()).await.unwrap();
    let addr = rt.local_addr(80).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner =
        tokio::spawn(
            rt.run_until(Duration::from_millis(100), Duration::from_secs(5), async {
                let _ = stop_rx.await;
            }),
        );
    let c = common::client();
    let slow =
        tokio::spawn(async move { common::get(&c, addr, "x", "/careers?delay=500ms").await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    stop_tx.send(()).unwrap();
    let (status, _, body) = slow.await.unwrap();
    assert_eq!(status, 200, "the in-flight request completes");
    assert_eq!(echoed(&body).path, "/careers?delay=500ms");
    tokio::time::timeout(Duration::from_secs(5), runner)
        .await
        .unwrap()
        .unwrap();
    assert!(
        tokio::net::TcpStream::connect(addr).await.is_err(),
        "no longer accepting after shutdown"
    );
}

/// A Gateway with one route to `echo` (the whole path space) and, in the
/// `variant` configuration, a second route with a header filter: each
/// switch is a real change.
fn reload_manifest(variant: bool) -> String {
    let mut s = String::from(HTTP_GATEWAY);
    s.push_str(
        r#"---
apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec: {ports: [{port: 8080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: all, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - backendRefs: [{name: echo, port: 8080}]
"#,
    );
    if variant {
        s.push_str(
            r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: extra, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /extra}}]
    filters:
    - type: RequestHeaderModifier
      requestHeaderModifier: {set: [{name: x-variant, value: "1"}]}
    backendRefs: [{name: echo, port: 8080}]
"#,
        );
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundred_reloads_lose_no_request_and_keep_a_websocket_open() {
    let dir = TempDir::new("hundred");
    let file = dir.0.join("gw.yaml");
    common::write_file(&file, &reload_manifest(false));
    let mut rt = Runtime::start(vec![dir.0.clone()], options())
        .await
        .unwrap();
    let addr: SocketAddr = rt.local_addr(80).unwrap();

    // A WebSocket through the proxy to the echo backend.
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut ws, resp) = tokio_tungstenite::client_async(format!("ws://{addr}/ws"), stream)
        .await
        .expect("websocket handshake through the proxy");
    assert_eq!(resp.status(), 101);
    ws.send(Message::text("hello")).await.unwrap();
    assert_eq!(ws.next().await.unwrap().unwrap(), Message::text("hello"));

    // Clients sending requests all along, on keep-alive connections.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        clients.push(tokio::spawn(async move {
            let c = common::client();
            while !stop.load(Ordering::Relaxed) {
                let (status, _, body) = common::get(&c, addr, "x", "/a?b=c").await;
                if status == 200 && echoed(&body).path == "/a?b=c" {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    for i in 0..100 {
        common::write_file(&file, &reload_manifest(i % 2 == 0));
        assert_eq!(rt.reload().await, ReloadOutcome::Applied, "reload {i}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(rt.proxy().config().generation, 101);
    assert_eq!(rt.local_addr(80), Some(addr));

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "failed requests");
    assert!(
        ok.load(Ordering::Relaxed) > 100,
        "requests ran during the reloads"
    );

    ws.send(Message::text("still here")).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::text("still here")
    );
    ws.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(
        ws.next().await.unwrap().unwrap(),
        Message::binary(vec![1u8, 2, 3])
    );
}

#[tokio::test]
async fn listeners_are_bound_and_closed_as_gateways_change() {
    let dir = TempDir::new("ports");
    let file = dir.0.join("gw.yaml");
    common::write_file(&file, &reload_manifest(false));
    let mut opts = options();
    opts.listen.map.insert(81, "127.0.0.1:0".parse().unwrap());
    let mut rt = Runtime::start(vec![dir.0.clone()], opts).await.unwrap();
    let port80 = rt.local_addr(80).unwrap();
    assert_eq!(rt.local_addr(81), None);

    let two_ports = reload_manifest(false).replace(
        "listeners: [{name: http, port: 80, protocol: HTTP}]",
        "listeners: [{name: http, port: 80, protocol: HTTP}, {name: other, port: 81, protocol: HTTP}]",
    );
    common::write_file(&file, &two_ports);
    assert_eq!(rt.reload().await, ReloadOutcome::Applied);
    let port81 = rt.local_addr(81).expect("the new listener's port is bound");
    assert_eq!(rt.local_addr(80), Some(port80), "port 80 keeps its socket");
    let c = common::client();
    assert_eq!(common::get(&c, port81, "x", "/").await.0, 200);

    common::write_file(&file, &reload_manifest(false));
    assert_eq!(rt.reload().await, ReloadOutcome::Applied);
    assert_eq!(rt.local_addr(81), None);
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(
        tokio::net::TcpStream::connect(port81).await.is_err(),
        "port 81 no longer accepts"
    );
    assert_eq!(common::get(&c, port80, "x", "/").await.0, 200);
}

fn snapshot(yaml: &str) -> gwcore::Snapshot {
    let loaded = gwcore::load::load_str("test.yaml", yaml);
    assert!(!loaded.has_errors(), "{:?}", loaded.diagnostics);
    gwcore::Snapshot::from_objects(loaded.objects.into_iter().map(|(o, _)| o))
}

#[tokio::test]
async fn an_embedding_program_feeds_snapshots_on_ephemeral_ports() {
    let listen = ListenOptions {
        default_ip: "127.0.0.1".parse().unwrap(),
        ephemeral: true,
        ..ListenOptions::default()
    };
    let opts = {
        let mut o = RuntimeOptions::new(CONTROLLER);
        o.listen = listen;
        o.echo_backends = true;
        o
    };
    let mut rt = Runtime::from_snapshot(snapshot(&reload_manifest(false)), opts)
        .await
        .unwrap();
    let addr = rt.local_addr(80).expect("port 80 on an ephemeral port");
    assert_ne!(addr.port(), 80);
    let echo = gwcore::model::ObjectKey::new(gwcore::model::Kind::Service, "default", "echo");
    let echo_server = rt
        .echo(&echo)
        .expect("an echo backend stands for the Service");
    assert!(echo_server.seen().is_empty());
    let c = common::client();
    let (_, _, body) = common::get(&c, addr, "x", "/extra").await;
    assert!(!echoed(&body).headers.contains_key("X-Variant"));
    assert_eq!(rt.echo(&echo).unwrap().seen(), ["/extra"]);

    assert_eq!(
        rt.apply(snapshot(&reload_manifest(true))).await,
        ReloadOutcome::Applied
    );
    let (_, _, body) = common::get(&c, addr, "x", "/extra").await;
    assert_eq!(echoed(&body).headers["X-Variant"], ["1"]);
    assert_eq!(
        rt.apply(snapshot(&reload_manifest(true))).await,
        ReloadOutcome::Unchanged
    );
    assert_eq!(rt.poll().await, None, "no file provider");
    rt.shutdown(Duration::from_secs(1)).await;
}

#[tokio::test]
async fn two_gateways_on_the_same_port_number_get_a_socket_each() {
    let yaml = r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gc}
spec: {controllerName: example.com/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: a, namespace: default}
spec:
  gatewayClassName: gc
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: b, namespace: default}
spec:
  gatewayClassName: gc
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: svc-a, namespace: default}
spec: {ports: [{port: 8080}]}
---
apiVersion: v1
kind: Service
metadata: {name: svc-b, namespace: default}
spec: {ports: [{port: 8080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: to-a, namespace: default}
spec:
  parentRefs: [{name: a}]
  rules: [{backendRefs: [{name: svc-a, port: 8080}]}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: to-b, namespace: default}
spec:
  parentRefs: [{name: b}]
  rules: [{backendRefs: [{name: svc-b, port: 8080}]}]
"#;
    use gwcore::model::{Kind, ObjectKey};
    use gwcore_proxy::config::GatewayPort;
    let gw = |n: &str| GatewayPort::new(ObjectKey::new(Kind::Gateway, "default", n), 80);
    let mut listen = ListenOptions {
        default_ip: "127.0.0.1".parse().unwrap(),
        ephemeral: true,
        ..ListenOptions::default()
    };
    let pinned = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    listen.gateway_map.insert(gw("b"), pinned);
    let opts = {
        let mut o = RuntimeOptions::new(CONTROLLER);
        o.listen = listen;
        o.echo_backends = true;
        o
    };
    let rt = Runtime::from_snapshot(snapshot(yaml), opts).await.unwrap();
    let a = rt.local_addr_of(&gw("a")).expect("a's port 80");
    let b = rt.local_addr_of(&gw("b")).expect("b's port 80");
    assert_eq!(b, pinned, "b's port is where --listen put it");
    assert_ne!(a, b);
    let c = common::client();
    let (_, _, body) = common::get(&c, a, "x", "/").await;
    assert_eq!(echoed(&body).service, "svc-a");
    let (_, _, body) = common::get(&c, b, "x", "/").await;
    assert_eq!(echoed(&body).service, "svc-b");
}

/// Sends raw bytes, returns the status line of the answer.
async fn raw_status(addr: SocketAddr, request: &[u8]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(request).await.unwrap();
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
        .await
        .expect("an answer")
        .unwrap();
    String::from_utf8_lossy(&buf[..n])
        .lines()
        .next()
        .unwrap_or("")
        .to_owned()
}

#[tokio::test]
async fn ambiguous_hosts_are_refused_with_400() {
    let rt = Runtime::start(vec![acme_dir()], options()).await.unwrap();
    let addr = rt.local_addr(80).unwrap();
    let rows: [(&[u8], &str, &str); 4] = [
        (
            b"GET /careers HTTP/1.1\r\nHost: a\r\n\r\n",
            "HTTP/1.1 200 OK",
            "one Host",
        ),
        (
            b"GET /careers HTTP/1.1\r\n\r\n",
            "HTTP/1.1 400 Bad Request",
            "no Host (RFC 9112 3.2)",
        ),
        (
            b"GET /careers HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            "HTTP/1.1 400 Bad Request",
            "two Hosts (RFC 9112 3.2)",
        ),
        (
            b"GET /careers HTTP/1.0\r\n\r\n",
            "HTTP/1.0 200 OK",
            "HTTP/1.0 needs no Host",
        ),
    ];
    for (request, want, why) in rows {
        assert_eq!(raw_status(addr, request).await, want, "{why}");
    }
}

#[tokio::test]
async fn http2_host_differing_from_authority_is_refused_with_400() {
    use http_body_util::{BodyExt, Full};
    let rt = Runtime::start(vec![acme_dir()], options()).await.unwrap();
    let addr = rt.local_addr(80).unwrap();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    for (host, want) in [
        (None, 200),
        (Some("A.example"), 200),
        (Some("b.example"), 400),
    ] {
        let mut req = http::Request::builder().uri("http://a.example/careers");
        if let Some(h) = host {
            req = req.header("host", h);
        }
        let resp = send
            .send_request(req.body(Full::new(bytes::Bytes::new())).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.status(), want, "host {host:?}");
        let _ = resp.into_body().collect().await;
    }
}

/// Sets a file's modification time an hour back, as an input left alone
/// since long (one changed in the last seconds is read at every reload).
fn age(path: &std::path::Path) {
    let hour_ago = std::time::SystemTime::now() - Duration::from_secs(3600);
    std::fs::File::options()
        .write(true)
        .open(path)
        .and_then(|f| f.set_modified(hour_ago))
        .unwrap();
}

/// The ACME example cut in two files: the namespaces, class, Gateway and
/// Services; and the three routes.
fn acme_in_two() -> (String, String) {
    let acme = std::fs::read_to_string(acme_dir().join("acme.yaml")).unwrap();
    let at = acme
        .find("---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute")
        .unwrap();
    (acme[..at].to_string(), acme[at..].to_string())
}

#[tokio::test]
async fn a_reload_reads_only_the_changed_file_and_parses_only_the_changed_document() {
    let dir = TempDir::new("incremental");
    let (base, routes) = acme_in_two();
    let (base_file, routes_file) = (dir.0.join("base.yaml"), dir.0.join("routes.yaml"));
    common::write_file(&base_file, &base);
    common::write_file(&routes_file, &routes);
    age(&base_file);
    age(&routes_file);
    let mut rt = Runtime::start(vec![dir.0.clone()], options())
        .await
        .unwrap();
    let addr = rt.local_addr(80).unwrap();
    let c = common::client();
    assert_eq!(common::get(&c, addr, "x", "/product").await.0, 200);
    let counts = |rt: &Runtime| {
        let p = rt.file_provider().unwrap();
        (p.files_read(), p.documents_parsed())
    };
    assert_eq!(counts(&rt), (2, 12), "the first reload reads everything");

    // One route edited: only its file is read, only its document parsed.
    common::write_file(
        &routes_file,
        &routes.replace("value: /product", "value: /products"),
    );
    assert_eq!(rt.reload().await, ReloadOutcome::Applied);
    assert_eq!(counts(&rt), (3, 13));
    assert_eq!(common::get(&c, addr, "x", "/products").await.0, 200);
    assert_eq!(common::get(&c, addr, "x", "/product").await.0, 404);
    assert_eq!(common::get(&c, addr, "x", "/careers").await.0, 200);

    // Nothing changed since: nothing read.
    age(&routes_file);
    assert_eq!(rt.reload().await, ReloadOutcome::Unchanged);
    assert_eq!(
        counts(&rt),
        (4, 13),
        "read once more: changed within the last seconds"
    );
    assert_eq!(rt.reload().await, ReloadOutcome::Unchanged);
    assert_eq!(
        counts(&rt),
        (4, 13),
        "not read: its length and time are those last served"
    );

    // What is served equals a fresh read of the files.
    let fresh = gwcore_proxy::files::read_manifests(std::slice::from_ref(&dir.0)).to_snapshot();
    assert_eq!(rt.proxy().config().snapshot, fresh);
}

/// Objects moving between files, a duplicate across files (the later file
/// wins, as in a fresh read) and a file removed: after each reload, what
/// is served equals a fresh read.
#[tokio::test]
async fn moved_and_duplicated_objects_are_served_as_a_fresh_read_serves_them() {
    let dir = TempDir::new("moves");
    let (base, routes) = acme_in_two();
    let (a, b) = (dir.0.join("a.yaml"), dir.0.join("b.yaml"));
    common::write_file(&a, &base);
    common::write_file(&b, &routes);
    let mut rt = Runtime::start(vec![dir.0.clone()], options())
        .await
        .unwrap();
    let addr = rt.local_addr(80).unwrap();
    let c = common::client();
    let fresh = |rt: &Runtime| {
        let want = gwcore_proxy::files::read_manifests(std::slice::from_ref(&dir.0)).to_snapshot();
        assert_eq!(rt.proxy().config().snapshot, want);
    };
    let hr_route = &routes[routes
        .find(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: hr",
        )
        .unwrap()..];
    let labelled_hr = "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: hr\n  labels:\n    shared-gateway-access: \"true\"\n";
    let steps: [(&str, String, String); 4] = [
        // The hr route moves to a.yaml.
        (
            "moved",
            format!("{base}{hr_route}"),
            routes.replace(hr_route, ""),
        ),
        // A later file labels the hr namespace: its duplicate wins.
        (
            "duplicate",
            format!("{base}{hr_route}"),
            format!("{}{labelled_hr}", routes.replace(hr_route, "")),
        ),
        // The later one edited again.
        (
            "duplicate edited",
            format!("{base}{hr_route}"),
            format!(
                "{}{}",
                routes.replace(hr_route, ""),
                labelled_hr.replace("\"true\"", "\"no\"")
            ),
        ),
        // And gone: the first one serves again.
        (
            "duplicate gone",
            format!("{base}{hr_route}"),
            routes.replace(hr_route, ""),
        ),
    ];
    let mut hr = Vec::new();
    for (name, a_text, b_text) in steps {
        common::write_file(&a, &a_text);
        common::write_file(&b, &b_text);
        let outcome = rt.reload().await;
        assert_ne!(outcome, ReloadOutcome::Failed, "{name}");
        fresh(&rt);
        hr.push(common::get(&c, addr, "x", "/hr").await.0);
    }
    assert_eq!(hr, [404, 200, 404, 404]);
    std::fs::remove_file(&b).unwrap();
    assert_eq!(rt.reload().await, ReloadOutcome::Applied);
    fresh(&rt);
    assert_eq!(common::get(&c, addr, "x", "/careers").await.0, 404);
}
