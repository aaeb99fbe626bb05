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

/// Starts the API server again with the same command line, detached from
/// this test's output, and records its pid where `.ci/k8s.sh` looks. It
/// outlives the test (the next test binaries use it), so it is not waited
/// for; `.ci/k8s.sh stop` stops it.
#[allow(clippy::zombie_processes)]
fn start_apiserver(dir: &std::path::Path, args: &[String]) {
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_server_restart_mid_test_recovers_with_the_right_status() {
    let Some(c) = cluster().await else { return };
    let Some(dir) = run_dir() else { return };
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

    start_apiserver(&dir, &args);
    let (_, ready) = eventually(
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
    .await;
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
