//! `gwcore serve --kubernetes` against a genuine kube-apiserver (started by
//! `source .ci/k8s.sh`; see gwcore-k8s/tests/support): the ACME scenario
//! served through the API, and the time from applying a route to the
//! proxy's first 200.

#[path = "../../gwcore-k8s/tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use kube::api::PostParams;
use kube::core::DynamicObject;
use serde_json::json;
use support::serve::{Gwcore, free_port, get, percentile};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// `gwcore serve --kubernetes` for controller `ours` (no leader election,
/// echo backends), port 80 served on `port`, with `extra` arguments.
fn serve_kubernetes(ours: &str, port: u16, extra: &[&str]) -> Gwcore {
    let kubeconfig = std::env::var("KUBECONFIG").expect("KUBECONFIG");
    Gwcore(
        Command::new(env!("CARGO_BIN_EXE_gwcore"))
            .args(["serve", "--kubernetes", "--kubeconfig", &kubeconfig])
            .args(["--controller-name", ours, "--no-leader-election"])
            .args([
                "--echo-backends",
                "--listen",
                &format!("80=127.0.0.1:{port}"),
            ])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

async fn wait_code(port: u16, path: &str, want: u16) -> Duration {
    eventually(
        &format!("GET {path} → {want}"),
        Duration::from_secs(30),
        || async move {
            let got = get(port, path).await;
            if got == Some(want) {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        },
    )
    .await
    .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_kubernetes_serves_acme_and_new_routes_quickly() {
    let Some(c) = cluster().await else { return };
    let sfx = suffix("serve");
    let ours = format!("example.com/gwcore-serve-{sfx}");
    let objs = acme(&sfx, &ours);
    let (careers, product, hr) = (
        format!("careers-{sfx}"),
        format!("product-{sfx}"),
        format!("hr-{sfx}"),
    );
    c.apply_all(&objs).await;

    let port = free_port().unwrap();
    let _gwcore = serve_kubernetes(&ours, port, &[]);
    wait_code(port, "/careers", 200).await;
    wait_code(port, "/product", 200).await;
    assert_eq!(
        get(port, "/hr").await,
        Some(404),
        "hr is refused: NotAllowedByListeners"
    );
    wait_route(&c, &hr, "hr", &ours, refused("NotAllowedByListeners")).await;
    wait_route(&c, &careers, "careers", &ours, accepted()).await;

    c.set_shared_gateway_access(&hr, true).await;
    let t = wait_code(port, "/hr", 200).await;
    eprintln!("serve --kubernetes: hr labelled → /hr 200 within {t:?}");
    c.set_shared_gateway_access(&product, false).await;
    wait_code(port, "/product", 404).await;

    // Apply one new route at a time; time until the proxy first answers 200.
    let routes = c.api(HTTP_V1, "HTTPRoute", &careers);
    let ar = c.resource(HTTP_V1, "HTTPRoute");
    let infra = format!("infra-ns-{sfx}");
    let mut took = Vec::new();
    let mut api_calls = Vec::new();
    for i in 0..100 {
        let mut r = DynamicObject::new(&format!("p{i:03}"), &ar);
        r.data = json!({"spec": {
            "parentRefs": [{"name": "shared-gateway", "namespace": infra}],
            "rules": [{"matches": [{"path": {"type": "Exact", "value": format!("/p{i}")}}],
                       "backendRefs": [{"name": "careers", "port": 9080}]}]}});
        let t0 = Instant::now();
        routes.create(&PostParams::default(), &r).await.unwrap();
        api_calls.push(t0.elapsed());
        loop {
            if get(port, &format!("/p{i}")).await == Some(200) {
                break;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "route p{i} not served after 10 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        took.push(t0.elapsed());
    }
    took.sort();
    api_calls.sort();
    eprintln!(
        "serve --kubernetes: apply → first 200 over {} routes: p50 {:?}, p90 {:?}, p99 {:?}, max {:?} (of which the create call itself: p50 {:?}, p99 {:?})",
        took.len(),
        percentile(&took, 0.5),
        percentile(&took, 0.9),
        percentile(&took, 0.99),
        took[took.len() - 1],
        percentile(&api_calls, 0.5),
        percentile(&api_calls, 0.99),
    );
    for i in 0..100 {
        c.delete(HTTP_V1, "HTTPRoute", &careers, &format!("p{i:03}"))
            .await;
    }
    c.cleanup(&objs).await;
}

/// The proxy's configuration reloads so far (every result), from `/metrics`
/// of the admin endpoint on `admin`.
async fn reloads(admin: u16) -> u64 {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", admin))
        .await
        .expect("the admin endpoint");
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    body.lines()
        .filter(|l| l.starts_with("gwcore_reloads_total{"))
        .map(|l| {
            l.rsplit(' ')
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("bad metric line {l:?}"))
        })
        .sum()
}

/// Waits until the reload count has not moved for `quiet`; returns it.
async fn settled_reloads(admin: u16, quiet: Duration) -> u64 {
    let mut last = reloads(admin).await;
    let mut since = Instant::now();
    let t = Instant::now();
    while since.elapsed() < quiet {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "reloads never settle"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = reloads(admin).await;
        if now != last {
            (last, since) = (now, Instant::now());
        }
    }
    last
}

/// In Kubernetes mode every status write comes back through the watch (and
/// other controllers write status too): none of that changes what is
/// served, and the proxy must not build a configuration for each (with
/// 10 000 routes each build cost hundreds of milliseconds, and a new
/// route's first 200 waited behind them). A new route is one build; the
/// status changes are taken up by one more once they stop, so that the
/// next change does not carry them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_kubernetes_rebuilds_the_proxy_for_served_changes_only() {
    let Some(c) = cluster().await else { return };
    let sfx = suffix("echo");
    let ours = format!("example.com/gwcore-echo-{sfx}");
    let objs = acme(&sfx, &ours);
    let careers = format!("careers-{sfx}");
    c.apply_all(&objs).await;

    let (port, admin) = (free_port().unwrap(), free_port().unwrap());
    let _gwcore = serve_kubernetes(&ours, port, &["--admin", &format!("127.0.0.1:{admin}")]);
    wait_code(port, "/careers", 200).await;
    wait_route(&c, &careers, "careers", &ours, accepted()).await;
    // Longer than the quiet time after which gwcore serve takes up status
    // changes (1 s), so that the count has settled.
    let before = settled_reloads(admin, Duration::from_secs(3)).await;

    // Another controller adds its entry to the route's status.
    let r = c
        .get(HTTP_V1, "HTTPRoute", &careers, "careers")
        .await
        .unwrap();
    let mut status = r.data["status"].clone();
    let mut theirs = status["parents"][0].clone();
    theirs["controllerName"] = "other.example/c".into();
    status["parents"].as_array_mut().unwrap().push(theirs);
    c.put_status(&r, status).await.unwrap();

    // A new route: served, and its status (and the Gateway's) written.
    let routes = c.api(HTTP_V1, "HTTPRoute", &careers);
    let mut n = DynamicObject::new("new", &c.resource(HTTP_V1, "HTTPRoute"));
    n.data = json!({"spec": {
        "parentRefs": [{"name": "shared-gateway", "namespace": format!("infra-ns-{sfx}")}],
        "rules": [{"matches": [{"path": {"type": "Exact", "value": "/new"}}],
                   "backendRefs": [{"name": "careers", "port": 9080}]}]}});
    routes.create(&PostParams::default(), &n).await.unwrap();
    wait_code(port, "/new", 200).await;
    wait_route(&c, &careers, "new", &ours, accepted()).await;
    let theirs_kept = c
        .get(HTTP_V1, "HTTPRoute", &careers, "careers")
        .await
        .unwrap()
        .data["status"]["parents"]
        .as_array()
        .unwrap()
        .iter()
        .any(|p| p["controllerName"] == "other.example/c");
    assert!(theirs_kept, "the other controller's entry is kept");
    let after = settled_reloads(admin, Duration::from_secs(3)).await;
    assert_eq!(
        after,
        before + 2,
        "one configuration build for the new route, and one taking up the status \
         changes once they stopped; none per status change"
    );
    c.delete(HTTP_V1, "HTTPRoute", &careers, "new").await;
    c.cleanup(&objs).await;
}
