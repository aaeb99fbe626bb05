//! `gwcore check` and `gwcore serve` act for the same GatewayClasses, and
//! neither runs doing nothing (issue 14): `--controller-name` must name the
//! controllerName of a GatewayClass in the input; without it `check` acts
//! for every class and `serve` for the one controllerName the classes
//! share.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

const ACME_CONTROLLER: &str = "example.com/gateway-controller";

fn acme() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/acme")
}

/// A manifest file in a temporary folder of its own, removed when dropped.
struct Manifest(PathBuf);

impl Drop for Manifest {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// The ACME scenario plus a GatewayClass of another controller, in a file
/// of its own for each caller (the tests run at once).
fn acme_and_another_class() -> Manifest {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "gwcore-controllers-{}-{}",
        std::process::id(),
        CALLS.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let acme = std::fs::read_to_string(acme().join("acme.yaml")).expect("acme.yaml");
    let other = "---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\n\
                 metadata: {name: other}\nspec: {controllerName: other.example/ctl}\n";
    let file = dir.join("two-controllers.yaml");
    std::fs::write(&file, format!("{acme}\n{other}")).expect("manifests written");
    Manifest(file)
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn check(args: &[&str], path: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gwcore"))
        .arg("check")
        .args(args)
        .arg(path)
        .output()
        .expect("gwcore runs")
}

/// The GatewayClasses `gwcore check` wrote a status for.
fn classes_with_status(o: &Output) -> Vec<String> {
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["kind"] == "GatewayClass")
        .map(|i| i["metadata"]["name"].as_str().expect("name").to_string())
        .collect()
}

/// The `gwcore` process; killed when dropped.
struct Gwcore(Child);

impl Drop for Gwcore {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(args: &[&str]) -> Gwcore {
    Gwcore(
        Command::new(env!("CARGO_BIN_EXE_gwcore"))
            .arg("serve")
            .args(args)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("gwcore runs"),
    )
}

/// Waits up to 20 s for `gwcore serve` to exit; its exit code and standard
/// error. Panics when it is still running (it started doing nothing).
fn exit_of(mut g: Gwcore) -> (Option<i32>, String) {
    let start = Instant::now();
    loop {
        if let Some(status) = g.0.try_wait().expect("wait") {
            let mut err = String::new();
            if let Some(mut e) = g.0.stderr.take() {
                let _ = e.read_to_string(&mut err);
            }
            return (status.code(), err);
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "gwcore serve is still running after 20 s: it should have refused to start"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// The status code of `GET path` on 127.0.0.1:port, or `None` when the
/// port does not answer.
fn get(port: u16, path: &str) -> Option<u16> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nhost: acme.example.com\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut head = [0u8; 12];
    s.read_exact(&mut head).ok()?;
    std::str::from_utf8(&head).ok()?.get(9..12)?.parse().ok()
}

#[test]
fn check_acts_for_every_class_without_controller_name() {
    let file = acme_and_another_class();
    let out = check(&["-o", "json"], &file.0);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(classes_with_status(&out), ["acme", "other"]);
}

#[test]
fn check_acts_for_the_classes_of_the_controller_named() {
    let file = acme_and_another_class();
    let out = check(
        &["-o", "json", "--controller-name", "other.example/ctl"],
        &file.0,
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(classes_with_status(&out), ["other"]);
}

#[test]
fn check_refuses_a_controller_name_no_class_has() {
    let out = check(
        &["--controller-name", "nobody.example/ctl"],
        &acme().join("acme.yaml"),
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("--controller-name nobody.example/ctl") && err.contains(ACME_CONTROLLER),
        "names the flag and the controllerNames found: {err}"
    );
    assert!(out.stdout.is_empty(), "no statuses are written");
}

#[test]
fn serve_refuses_a_controller_name_no_class_has() {
    let port = free_port();
    let acme = acme();
    let g = serve(&[
        acme.to_str().expect("path"),
        "--controller-name",
        "nobody.example/ctl",
        "--echo-backends",
        "--listen",
        &format!("80=127.0.0.1:{port}"),
    ]);
    let (code, err) = exit_of(g);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--controller-name nobody.example/ctl") && err.contains(ACME_CONTROLLER),
        "names the flag and the controllerNames found: {err}"
    );
}

#[test]
fn serve_without_controller_name_refuses_classes_of_several_controllers() {
    let port = free_port();
    let file = acme_and_another_class();
    let g = serve(&[
        file.0.to_str().expect("path"),
        "--echo-backends",
        "--listen",
        &format!("80=127.0.0.1:{port}"),
    ]);
    let (code, err) = exit_of(g);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("--controller-name")
            && err.contains(ACME_CONTROLLER)
            && err.contains("other.example/ctl"),
        "names the flag and the controllerNames found: {err}"
    );
}

#[test]
fn serve_without_controller_name_acts_for_the_one_controller_of_the_classes() {
    let port = free_port();
    let acme = acme();
    let _g = serve(&[
        acme.to_str().expect("path"),
        "--echo-backends",
        "--listen",
        &format!("80=127.0.0.1:{port}"),
    ]);
    let start = Instant::now();
    loop {
        match get(port, "/careers") {
            Some(200) => break,
            got => assert!(
                start.elapsed() < Duration::from_secs(20),
                "GET /careers: {got:?} after 20 s"
            ),
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(get(port, "/hr"), Some(404));
}

#[test]
fn serve_as_the_readme_runs_it() {
    let port = free_port();
    let acme = acme();
    let _g = serve(&[
        acme.to_str().expect("path"),
        "--controller-name",
        ACME_CONTROLLER,
        "--echo-backends",
        "--listen",
        &format!("80=127.0.0.1:{port}"),
    ]);
    let start = Instant::now();
    while get(port, "/careers") != Some(200) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "GET /careers is not 200 after 20 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
