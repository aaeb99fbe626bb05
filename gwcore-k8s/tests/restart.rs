//! The API server restarts under a running controller: the controller keeps
//! its last good state while the server is gone, resyncs when it is back,
//! and ends with the right status for changes made right after the restart.
//!
//! Needs the server started by `.ci/k8s.sh` (`GWCORE_K8S_RUN` names its
//! state folder with `apiserver.pid`); etcd keeps running, so no data is
//! lost — as when a control-plane node restarts.

mod support;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use gwcore::model::{Kind, ObjectKey};
use gwcore_k8s::Options;
use kube::core::DynamicObject;
use serde_json::json;
use support::*;

fn run_dir() -> Option<PathBuf> {
    let dir = std::env::var_os("GWCORE_K8S_RUN").map(PathBuf::from);
    if dir.is_none() {
        assert!(
            std::env::var("CI").map_or(true, |v| v != "true"),
            "CI=true but GWCORE_K8S_RUN is unset: start the API server with `source .ci/k8s.sh`"
        );
        eprintln!(
            "skipping: GWCORE_K8S_RUN unset (the API server was not started by .ci/k8s.sh, so it cannot be restarted)"
        );
    }
    dir
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

/// Stops the API server and returns its command line.
fn stop_apiserver(dir: &std::path::Path) -> Vec<String> {
    let pid: u32 = std::fs::read_to_string(dir.join("apiserver.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).expect("the API server is running");
    let args: Vec<String> = cmdline
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    // SIGTERM; if the graceful shutdown (which waits for open requests)
    // takes more than 3 s, SIGKILL, as a crash would.
    let kill = |sig: &str| {
        std::process::Command::new("kill")
            .args([sig, &pid.to_string()])
            .status()
            .unwrap()
    };
    assert!(kill("-TERM").success());
    let t = Instant::now();
    while alive(pid) {
        if t.elapsed() > Duration::from_secs(3) {
            kill("-KILL");
        }
        assert!(
            t.elapsed() < Duration::from_secs(20),
            "the API server does not stop"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    args
}

/// Starts the API server again with the same command line and waits
/// until it answers; returns how long that took.
async fn start_apiserver(c: &Cluster, dir: &std::path::Path, args: &[String]) -> Duration {
    spawn_apiserver(dir, args);
    eventually(
        "the API server answers again",
        Duration::from_secs(60),
        || async {
            c.client
                .apiserver_version()
                .await
                .map(|_| ())
                .map_err(|e| e.to_string())
        },
    )
    .await
    .1
}

/// Starts the API server with `args`, detached from this test's output,
/// and records its pid where `.ci/k8s.sh` looks. It outlives the test (the
/// next test binaries use it), so it is not waited for; `.ci/k8s.sh stop`
/// stops it.
#[allow(clippy::zombie_processes)]
fn spawn_apiserver(dir: &std::path::Path, args: &[String]) {
    let log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(dir.join("apiserver.log"))
        .unwrap();
    let child = std::process::Command::new(&args[0])
        .args(&args[1..])
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .unwrap();
    std::fs::write(dir.join("apiserver.pid"), child.id().to_string()).unwrap();
}

/// The tests of this file stop the API server: one at a time.
static SERVER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_restart_mid_test_recovers_with_the_right_status() {
    let Some(c) = cluster().await else { return };
    let Some(dir) = run_dir() else { return };
    let _server = SERVER.lock().await;
    let sfx = suffix("restart");
    let ours = format!("example.com/gwcore-test-{sfx}");
    let objs = acme(&sfx, &ours);
    let (infra, careers, hr) = (
        format!("infra-ns-{sfx}"),
        format!("careers-{sfx}"),
        format!("hr-{sfx}"),
    );
    let ctl = start(&c, Options::new(&ours)).await;
    c.apply_all(&objs).await;
    wait_route(&c, &hr, "hr", &ours, refused("NotAllowedByListeners")).await;
    wait_attached(&c, &infra, "shared-gateway", 2).await;

    let args = stop_apiserver(&dir);
    let down = Instant::now();
    tokio::time::sleep(Duration::from_secs(2)).await;
    // While the server is gone the last good state stays.
    let state = ctl.state().borrow().clone();
    let route = ObjectKey::new(Kind::HttpRoute, &careers, "careers");
    assert!(
        state.snapshot.get(&route).is_some(),
        "the last good state is kept"
    );
    assert_eq!(state.routing.len(), 1, "our Gateway is still routed");

    let ready = start_apiserver(&c, &dir, &args).await;
    // Changes right after the restart, while the controller's watches are
    // still backing off.
    c.set_shared_gateway_access(&hr, true).await;
    c.delete(HTTP_V1, "HTTPRoute", &careers, "careers").await;
    let changed = Instant::now();
    wait_route(&c, &hr, "hr", &ours, accepted()).await;
    // attachedRoutes was 2 before (careers, product) and is 2 after (product,
    // hr): wait for the controller to have seen the delete, then for the
    // status.
    let state = ctl.state();
    eventually(
        "the deleted route gone from the snapshot",
        Duration::from_secs(30),
        || {
            let gone = state.borrow().snapshot.get(&route).is_none();
            async move {
                if gone {
                    Ok(())
                } else {
                    Err("still there".to_string())
                }
            }
        },
    )
    .await;
    wait_attached(&c, &infra, "shared-gateway", 2).await;
    let counters = ctl.counters();
    eprintln!(
        "restart: changes made {:?} after the kill (server answered {ready:?} after its start); right status {:?} after the changes; {counters:?}",
        down.elapsed() - changed.elapsed(),
        changed.elapsed()
    );
    assert!(
        counters.watch_errors > 0,
        "the watches did notice: {counters:?}"
    );
    c.cleanup(&objs).await;
    ctl.shutdown().await;
}

/// Deletes key `key` from the test server's etcd (its v3 JSON gateway on
/// 127.0.0.1:23790, as `.ci/k8s.sh` starts it): an object gone without
/// the API server knowing, as when it is deleted while a watch is down.
fn etcd_delete(key: &str) {
    use std::io::Write;
    let mut b64 = Vec::new();
    {
        // base64 by hand: no dependency for one call.
        const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
        for chunk in key.as_bytes().chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |n, (i, b)| n | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..4 {
                if i <= chunk.len() {
                    b64.push(A[((n >> (18 - 6 * i)) & 63) as usize]);
                } else {
                    b64.push(b'=');
                }
            }
        }
    }
    let body = format!("{{\"key\":\"{}\"}}", String::from_utf8(b64).unwrap());
    let out = std::process::Command::new("curl")
        .args([
            "-sf",
            "-X",
            "POST",
            "http://127.0.0.1:23790/v3/kv/deleterange",
            "--data-binary",
            "@-",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            child.stdin.take().unwrap().write_all(body.as_bytes())?;
            child.wait_with_output()
        })
        .expect("curl (to reach etcd)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && text.contains("\"deleted\":\"1\""),
        "etcd delete {key}: {text}"
    );
}

/// The Gateway's `status.addresses` values (none when absent).
async fn gateway_addresses(c: &Cluster, ns: &str) -> Vec<String> {
    let g = c.get(HTTP_V1, "Gateway", ns, "gw").await.unwrap();
    g.data
        .pointer("/status/addresses")
        .and_then(serde_json::Value::as_array)
        .into_iter()
        .flatten()
        .map(|a| a["value"].as_str().unwrap_or("").to_string())
        .collect()
}

/// Waits until the Gateway's addresses are `want()`'s.
async fn wait_addresses(c: &Cluster, ns: &str, what: &str, want: Vec<String>) {
    eventually(what, Duration::from_secs(30), || {
        let want = want.clone();
        async move {
            let got = gateway_addresses(c, ns).await;
            if got == want {
                Ok(())
            } else {
                Err(format!("{got:?}"))
            }
        }
    })
    .await;
}

/// Gives the Gateway's Service a load balancer address, and waits for it
/// on the Gateway.
async fn load_balancer(c: &Cluster, ns: &str, ip: &str) -> DynamicObject {
    let svc = eventually(
        "the Gateway's Service",
        Duration::from_secs(30),
        || async move {
            c.get("v1", "Service", ns, "gwcore-gw")
                .await
                .ok_or("no Service".to_string())
        },
    )
    .await
    .0;
    c.put_status(&svc, json!({"loadBalancer": {"ingress": [{"ip": ip}]}}))
        .await
        .unwrap();
    wait_addresses(c, ns, "the load balancer's address", vec![ip.into()]).await;
    svc
}

/// Waits for gwcore's own Service of the Gateway, other than `old`, and
/// for its cluster IP to be the Gateway's address.
async fn fresh_service_addresses(c: &Cluster, ns: &str, old: &DynamicObject) {
    let svc = eventually(
        "gwcore's Service made again",
        Duration::from_secs(30),
        || async move {
            match c.get("v1", "Service", ns, "gwcore-gw").await {
                Some(s)
                    if s.metadata.uid != old.metadata.uid
                        && s.metadata
                            .labels
                            .as_ref()
                            .and_then(|l| l.get("app.kubernetes.io/managed-by"))
                            .map(String::as_str)
                            == Some("gwcore") =>
                {
                    Ok(s)
                }
                _ => Err("not yet".to_string()),
            }
        },
    )
    .await
    .0;
    let ip = svc.data["spec"]["clusterIP"].as_str().unwrap().to_string();
    wait_addresses(c, ns, "the new Service's cluster IP", vec![ip]).await;
}

/// The Gateway's Service deleted while the controller was down: the new
/// one makes it again and the Gateway gets the fresh Service's address,
/// not the old load balancer's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_deleted_while_the_controller_was_down_is_made_again_with_fresh_addresses() {
    let Some(c) = cluster().await else { return };
    // Not while another test stops the API server.
    let _server = SERVER.lock().await;
    let sfx = suffix("gwrc");
    let ours = format!("example.com/gwcore-test-{sfx}");
    let (ns, objs) = gateway_objects("gwr", &sfx, &ours, json!({}));
    c.apply_all(&objs).await;
    let first = start(&c, with_gateway_services(&ours)).await;
    let old = load_balancer(&c, &ns, "203.0.113.41").await;
    first.shutdown().await;
    c.delete("v1", "Service", &ns, "gwcore-gw").await;

    let second = start(&c, with_gateway_services(&ours)).await;
    fresh_service_addresses(&c, &ns, &old).await;
    c.cleanup(&objs).await;
    second.shutdown().await;
}

/// Regression: the Gateway's Service deleted while the controller's watch
/// was down (here: from etcd while the API server is stopped, so that no
/// delete event can ever come) left its addresses to the Gateway after the
/// list that followed. A Service of that name someone else makes then
/// (which gwcore does not take over) gives the Gateway no address; once
/// it is gone gwcore makes its own, whose address the Gateway gets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_deleted_during_a_watch_gap_leaves_no_stale_address() {
    let Some(c) = cluster().await else { return };
    let Some(dir) = run_dir() else { return };
    let _server = SERVER.lock().await;
    let sfx = suffix("gwrg");
    let ours = format!("example.com/gwcore-test-{sfx}");
    let (ns, objs) = gateway_objects("gwr", &sfx, &ours, json!({}));
    c.apply_all(&objs).await;
    let ctl = start(&c, with_gateway_services(&ours)).await;
    let old = load_balancer(&c, &ns, "203.0.113.42").await;

    let args = stop_apiserver(&dir);
    etcd_delete(&format!("/registry/services/specs/{ns}/gwcore-gw"));
    start_apiserver(&c, &dir, &args).await;
    // At once, while the controller's watches are still backing off.
    let theirs = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "gwcore-gw", "namespace": ns, "labels": {"team": "x"}},
        "spec": {"selector": {"app": "theirs"}, "ports": [{"name": "theirs", "port": 9999, "protocol": "TCP"}]}});
    // (A conflict: gwcore made its own between the apply's read and its
    // create; applied again, to it.)
    let api = c.api("v1", "Service", &ns);
    let params = kube::api::PatchParams::apply("gwcore-test").force();
    for attempt in 1.. {
        match api
            .patch("gwcore-gw", &params, &kube::api::Patch::Apply(&theirs))
            .await
        {
            Ok(_) => break,
            Err(kube::Error::Api(e)) if e.code == 409 && attempt < 3 => {}
            Err(e) => panic!("apply their Service: {e}"),
        }
    }
    // Theirs: no address for the Gateway (unless gwcore's watch came
    // back before the apply above and made its own first, which the
    // apply then only labelled: then its address).
    eventually("no stale address", Duration::from_secs(60), || {
        let (c, ns) = (&c, &ns);
        async move {
            let svc = c.get("v1", "Service", ns, "gwcore-gw").await.unwrap();
            let gwcores = svc
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get("app.kubernetes.io/managed-by"))
                .is_some();
            let want: Vec<String> = if gwcores {
                vec![svc.data["spec"]["clusterIP"].as_str().unwrap().to_string()]
            } else {
                Vec::new()
            };
            let got = gateway_addresses(c, ns).await;
            if got == want {
                Ok(())
            } else {
                Err(format!("{got:?}, want {want:?}"))
            }
        }
    })
    .await;
    let live = c.get("v1", "Service", &ns, "gwcore-gw").await.unwrap();
    eprintln!(
        "after the gap the Service is {}",
        if live.metadata.labels.as_ref().is_some_and(
            |l| l.contains_key("team") && !l.contains_key("app.kubernetes.io/managed-by")
        ) {
            "theirs (the watch-gap path was taken)"
        } else {
            "gwcore's (its watch came back first)"
        }
    );
    c.delete("v1", "Service", &ns, "gwcore-gw").await;
    fresh_service_addresses(&c, &ns, &old).await;
    assert!(ctl.counters().watch_errors > 0, "the watches did notice");
    c.cleanup(&objs).await;
    ctl.shutdown().await;
}
