//! Manifest files that go bad while `gwcore serve FILE|DIR` watches them:
//! made invalid, truncated, half-written, deleted, replaced by a huge one,
//! joined by one nested too deep.
//! The last good configuration keeps serving, the error is visible (log,
//! admin `/status` and `/metrics`, and `gwcore check`, which reads files
//! with the same [`read_manifests`]), and fixing the file recovers without
//! a restart.
//!
//! `GWCORE_FAULTS_LONG=1` makes the huge file 50 MB (default 8 MB).

mod common;

use common::{TempDir, acme_dir, options};

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gwcore_proxy::files::read_manifests;
use gwcore_proxy::metrics::ReloadOutcome;
use gwcore_proxy::provider::Runtime;
use gwcore_proxy::proxy::Proxy;

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    http_body_util::Full<bytes::Bytes>,
>;

fn acme() -> String {
    std::fs::read_to_string(acme_dir().join("acme.yaml")).unwrap()
}

/// Log lines, captured.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn take(&self) -> String {
        String::from_utf8_lossy(&std::mem::take(&mut *self.0.lock().unwrap())).into_owned()
    }
}

/// Clients looping on `/careers` and `/product` until stopped; returns the
/// answers other than 200, and the slowest answer.
fn clients(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<(u64, Vec<String>, Duration)> {
    tokio::spawn(async move {
        let c = common::client();
        let (mut ok, mut other, mut slowest) = (0, Vec::new(), Duration::ZERO);
        while !stop.load(Ordering::Relaxed) {
            for path in ["/careers", "/product"] {
                let t = Instant::now();
                let (status, _, _) = common::get(&c, addr, "acme.example", path).await;
                slowest = slowest.max(t.elapsed());
                if status == 200 {
                    ok += 1;
                } else {
                    other.push(format!("{status} for {path}"));
                }
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        (ok, other, slowest)
    })
}

async fn admin_status(c: &Client, admin: SocketAddr) -> serde_json::Value {
    let (_, _, body) = common::get(c, admin, "x", "/status").await;
    serde_json::from_slice(&body).unwrap()
}

/// Waits until `f` holds, for at most 20 s.
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Breaks the input with `break_it`, checks that the error is visible and
/// that serving goes on, then restores the good file and checks recovery.
#[allow(clippy::too_many_arguments)]
async fn fault(
    name: &str,
    proxy: &Arc<Proxy>,
    admin: SocketAddr,
    log: &Captured,
    inputs: &[PathBuf],
    break_it: impl FnOnce() + Send + 'static,
    expect: &str,
    restore: impl FnOnce() + Send + 'static,
) {
    let c = common::client();
    let generation = proxy.config().generation;
    log.take();
    // Files are written off the runtime that serves the clients too.
    tokio::task::spawn_blocking(break_it).await.unwrap();
    until(&format!("{name}: the error shows"), || {
        proxy.reload_error().is_some()
    })
    .await;
    assert_eq!(
        proxy.config().generation,
        generation,
        "{name}: the last good configuration is still served"
    );
    // Admin endpoint.
    let status = admin_status(&c, admin).await;
    let errors = status["reloadError"]["errors"].to_string();
    assert!(errors.contains(expect), "{name}: /status says {errors}");
    let (_, _, metrics) = common::get(&c, admin, "x", "/metrics").await;
    let metrics = String::from_utf8_lossy(&metrics).into_owned();
    let failed = metrics
        .lines()
        .find(|l| l.starts_with("gwcore_reloads_total{result=\"failed\"}"))
        .unwrap_or_default()
        .to_owned();
    assert!(!failed.ends_with(" 0"), "{name}: {failed}");
    // Log.
    let logged = log.take();
    assert!(
        logged.contains("reload refused") && logged.contains(expect),
        "{name}: the log says {logged:?}"
    );
    // `gwcore check` reads files with the same function.
    // (Off the runtime: parsing a huge file takes seconds.)
    let owned = inputs.to_vec();
    let checked = tokio::task::spawn_blocking(move || read_manifests(&owned))
        .await
        .unwrap();
    assert!(
        checked.has_errors(),
        "{name}: gwcore check finds nothing wrong"
    );
    assert!(
        checked
            .diagnostics
            .iter()
            .any(|d| d.to_string().contains(expect)),
        "{name}: gwcore check says {:?}",
        checked.diagnostics
    );
    // Fixing the file recovers, without a restart.
    tokio::task::spawn_blocking(restore).await.unwrap();
    until(&format!("{name}: recovery"), || {
        proxy.reload_error().is_none()
    })
    .await;
    let status = admin_status(&c, admin).await;
    assert!(status["reloadError"].is_null(), "{name}: {status}");
}

fn huge_len() -> usize {
    if std::env::var_os("GWCORE_FAULTS_LONG").is_some() {
        50 << 20
    } else {
        8 << 20
    }
}

#[tokio::test]
async fn broken_files_keep_the_last_good_configuration_and_recover() {
    let log = Captured::default();
    let writer = log.clone();
    let _log = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish(),
    );
    let dir = TempDir::new("watch");
    let file = dir.0.join("acme.yaml");
    let good = acme();
    common::write_file(&file, &good);
    let inputs = vec![dir.0.clone()];
    let rt = Runtime::start(inputs.clone(), options(true)).await.unwrap();
    let addr = rt.local_addr(80).unwrap();
    let proxy = rt.proxy().clone();
    let (admin, admin_task) =
        gwcore_proxy::admin::serve(proxy.clone(), "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runner =
        tokio::spawn(
            rt.run_until(Duration::from_millis(50), Duration::from_secs(1), async {
                let _ = stop_rx.await;
            }),
        );
    let stop = Arc::new(AtomicBool::new(false));
    let load = clients(addr, stop.clone());
    let restore = || {
        let (file, good) = (file.clone(), good.clone());
        move || common::write_file(&file, &good)
    };

    // Invalid YAML.
    fault(
        "invalid",
        &proxy,
        admin,
        &log,
        &inputs,
        {
            let (file, good) = (file.clone(), good.clone());
            move || common::write_file(&file, &format!("{good}\n---\nkind: [unclosed\n"))
        },
        "acme.yaml",
        restore(),
    )
    .await;
    // Truncated in the middle of an object.
    let cut = good.find("  rules:").expect("a route with rules") + 4;
    assert!(
        read_manifests(std::slice::from_ref(&file))
            .diagnostics
            .is_empty()
    );
    fault(
        "truncated",
        &proxy,
        admin,
        &log,
        &inputs,
        {
            let (file, good) = (file.clone(), good.clone());
            move || common::write_file(&file, &good[..cut])
        },
        "acme.yaml",
        restore(),
    )
    .await;
    // Deleted: the folder holds no manifest any more.
    fault(
        "deleted",
        &proxy,
        admin,
        &log,
        &inputs,
        {
            let file = file.clone();
            move || std::fs::remove_file(&file).unwrap()
        },
        "no manifest file",
        restore(),
    )
    .await;
    // Replaced by a huge invalid file: parsed off the async workers, so
    // the clients' answers stay quick.
    fault(
        "huge",
        &proxy,
        admin,
        &log,
        &inputs,
        {
            let (file, good) = (file.clone(), good.clone());
            move || {
                let mut huge = format!("{good}\n---\n");
                while huge.len() < huge_len() {
                    huge.push_str(
                        "garbage garbage garbage garbage garbage garbage garbage garbage\n",
                    );
                }
                common::write_file(&file, &huge);
            }
        },
        "expected a Kubernetes object",
        restore(),
    )
    .await;
    // Over the loader's depth budget: 200 000 nested `[` (400 KB), which
    // took the YAML parser minutes to refuse, refused by a scan first.
    fault(
        "nested too deep",
        &proxy,
        admin,
        &log,
        &inputs,
        {
            let deep = dir.0.join("deep.yaml");
            move || common::write_file(&deep, &format!("deep: {}", "[".repeat(200_000)))
        },
        "deep.yaml:1 (document 0): nesting deeper than 100 levels",
        {
            let deep = dir.0.join("deep.yaml");
            move || std::fs::remove_file(&deep).unwrap()
        },
    )
    .await;
    // Over the loader's size limit: refused before it is read.
    fault(
        "over the size limit",
        &proxy,
        admin,
        &log,
        &inputs,
        {
            let sparse = dir.0.join("sparse.yaml");
            move || {
                let f = std::fs::File::create(&sparse).unwrap();
                f.set_len((64 << 20) + 1).unwrap();
            }
        },
        "larger than the limit",
        {
            let sparse = dir.0.join("sparse.yaml");
            move || std::fs::remove_file(&sparse).unwrap()
        },
    )
    .await;

    stop.store(true, Ordering::Relaxed);
    let (ok, other, slowest) = load.await.unwrap();
    assert!(other.is_empty(), "answers other than 200: {other:?}");
    assert!(ok > 20, "{ok}");
    assert!(
        slowest < Duration::from_secs(1),
        "a reload stalled the clients for {slowest:?}"
    );
    assert_eq!(proxy.config().generation, 1, "every fault was refused");
    stop_tx.send(()).unwrap();
    runner.await.unwrap();
    admin_task.abort();
}

#[tokio::test]
async fn a_deleted_file_given_by_name_keeps_serving() {
    let dir = TempDir::new("file");
    let file = dir.0.join("acme.yaml");
    let good = acme();
    common::write_file(&file, &good);
    let mut rt = Runtime::start(vec![file.clone()], options(true))
        .await
        .unwrap();
    let addr = rt.local_addr(80).unwrap();
    let c = common::client();
    std::fs::remove_file(&file).unwrap();
    assert_eq!(rt.poll().await, Some(ReloadOutcome::Failed));
    let err = rt.proxy().reload_error().expect("the error is kept");
    assert!(err.errors[0].contains("cannot read"), "{err:?}");
    assert_eq!(common::get(&c, addr, "x", "/careers").await.0, 200);
    common::write_file(&file, &good);
    assert_eq!(rt.poll().await, Some(ReloadOutcome::Unchanged));
    assert!(
        rt.proxy().reload_error().is_none(),
        "the same good file again clears the error"
    );
}

#[tokio::test]
async fn a_file_being_written_is_read_once_its_writer_is_done() {
    let dir = TempDir::new("half");
    let file = dir.0.join("acme.yaml");
    let good = acme();
    common::write_file(&file, &good);
    let mut rt = Runtime::start(vec![dir.0.clone()], options(true))
        .await
        .unwrap();
    let addr = rt.local_addr(80).unwrap();
    let c = common::client();
    // The first half of the file is a valid, smaller configuration: its
    // last documents are missing. Reading it would drop routes.
    let half = &good[..good.rfind("\n---\n").expect("several documents")];
    let loaded = read_manifests(std::slice::from_ref(&dir.0));
    assert!(!loaded.has_errors());
    std::fs::write(&file, half).unwrap();
    assert!(
        !read_manifests(std::slice::from_ref(&dir.0)).has_errors(),
        "the half file alone is valid"
    );
    assert_eq!(rt.poll_settled().await, None, "just changed: not read yet");
    // The writer finishes before the next look.
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&file)
        .unwrap();
    f.write_all(&good.as_bytes()[half.len()..]).unwrap();
    drop(f);
    assert_eq!(rt.poll_settled().await, None, "changed again: not read yet");
    assert_eq!(
        rt.poll_settled().await,
        Some(ReloadOutcome::Unchanged),
        "read once steady; the whole file is what is served"
    );
    assert_eq!(rt.proxy().config().generation, 1);
    for path in ["/careers", "/product"] {
        assert_eq!(common::get(&c, addr, "x", path).await.0, 200, "{path}");
    }
    assert_eq!(rt.poll_settled().await, None, "nothing new");
}

/// A reload reads only the documents that changed; one broken among them
/// refuses the whole reload (the good edit beside it waits too), the
/// objects of the broken document's previous version keep serving, and
/// the error says so, naming them.
#[tokio::test]
async fn a_broken_document_keeps_its_previous_objects_serving_and_says_so() {
    let dir = TempDir::new("document");
    let file = dir.0.join("acme.yaml");
    let good = acme();
    common::write_file(&file, &good);
    let mut rt = Runtime::start(vec![file.clone()], options(true))
        .await
        .unwrap();
    let addr = rt.local_addr(80).unwrap();
    let c = common::client();
    let careers_moved = good.replace("value: /careers", "value: /jobs");
    let broken = careers_moved.replacen(
        "    - name: product\n      port: 9080",
        "    - name: product\n      port: nine",
        1,
    );
    assert_ne!(broken, careers_moved);
    common::write_file(&file, &broken);
    assert_eq!(rt.reload().await, ReloadOutcome::Failed);
    let err = rt.proxy().reload_error().expect("the error is kept");
    assert!(
        err.errors[0].contains("HTTPRoute product/product field spec.rules[0].backendRefs[0].port"),
        "the field: {err:?}"
    );
    assert!(
        err.errors.iter().any(|e| e.ends_with(
            "acme.yaml (document 10) is refused; its previous version keeps serving: HTTPRoute product/product"
        ) && e.contains(&*file.display().to_string())),
        "what keeps serving: {err:?}"
    );
    assert_eq!(common::get(&c, addr, "x", "/product").await.0, 200);
    assert_eq!(common::get(&c, addr, "x", "/careers").await.0, 200);
    assert_eq!(common::get(&c, addr, "x", "/jobs").await.0, 404);

    // Fixed: the good edit that waited is served with it.
    common::write_file(&file, &careers_moved);
    assert_eq!(rt.reload().await, ReloadOutcome::Applied);
    assert!(rt.proxy().reload_error().is_none());
    assert_eq!(common::get(&c, addr, "x", "/jobs").await.0, 200);
    assert_eq!(common::get(&c, addr, "x", "/product").await.0, 200);
    let fresh = read_manifests(std::slice::from_ref(&file)).to_snapshot();
    assert_eq!(rt.proxy().config().snapshot, fresh);
}
