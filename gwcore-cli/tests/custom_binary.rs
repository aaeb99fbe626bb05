//! An embedder's own `gwcore` (`examples/custom_binary.rs`: `Cli` with an
//! `ApiKey` filter kind and a `CacheControl` policy kind) reads, resolves
//! and serves its kinds in `check` and `serve`; the stock `gwcore`, on the
//! same manifests, says `InvalidKind`.
//!
//! This test target is that program too (`harness = false`): started with
//! `GWCORE_TEST_AS_CLI` set, it runs the example's `main`, so each check
//! below runs the embedder's binary as a process, as a user would.

#[allow(dead_code, unreachable_pub, missing_docs)]
#[path = "../examples/custom_binary.rs"]
mod example;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Set in the environment of the copies of this program that act as the
/// embedder's binary.
const AS_CLI: &str = "GWCORE_TEST_AS_CLI";

const MANIFESTS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: shared}
spec: {controllerName: example.com/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: shared, namespace: shop}
spec:
  gatewayClassName: shared
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: catalog, namespace: shop}
spec: {ports: [{port: 8080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: catalog, namespace: shop}
spec:
  parentRefs: [{name: shared}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /private}}]
    filters:
    - type: ExtensionRef
      extensionRef: {group: example.com, kind: ApiKey, name: needs-key}
    backendRefs: [{name: catalog, port: 8080}]
  - backendRefs: [{name: catalog, port: 8080}]
---
apiVersion: example.com/v1
kind: ApiKey
metadata: {name: needs-key, namespace: shop}
spec: {header: x-api-key}
---
apiVersion: example.com/v1
kind: CacheControl
metadata: {name: short, namespace: shop}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: catalog}]
  value: max-age=60
"#;

fn main() -> ExitCode {
    if std::env::var_os(AS_CLI).is_some() {
        return example::main();
    }
    // `cargo test -- --list` (and runners that list first): one test.
    if std::env::args().any(|a| a == "--list") {
        println!("custom_binary: test");
        return ExitCode::SUCCESS;
    }
    let dir = manifests();
    check_with_the_extensions_resolves_the_filter_and_accepts_the_policy(&dir);
    check_without_the_extensions_says_invalid_kind(&dir);
    serve_with_the_extensions_runs_both_plugins(&dir);
    let _ = std::fs::remove_dir_all(&dir);
    println!("custom_binary: 3 checks passed");
    ExitCode::SUCCESS
}

/// A folder of its own holding [`MANIFESTS`].
fn manifests() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gwcore-custom-binary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    std::fs::write(dir.join("shop.yaml"), MANIFESTS).expect("write manifests");
    dir
}

/// The embedder's binary: this program, acting as the example.
fn custom_gwcore() -> Command {
    let mut c = Command::new(std::env::current_exe().expect("own path"));
    c.env(AS_CLI, "1");
    c
}

/// `gwcore check -o json` of `bin` on `dir`; the documents printed.
fn check(mut bin: Command, dir: &Path) -> (Output, Vec<Value>) {
    let out = bin
        .args(["check", "-o", "json"])
        .arg(dir)
        .output()
        .expect("gwcore check runs");
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check prints a JSON list ({e}):\n{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let items = list["items"].as_array().cloned().unwrap_or_default();
    (out, items)
}

/// The conditions of the document of `kind` at `at` (a JSON pointer from
/// `status`), as `(type, status, reason)`.
fn conditions(docs: &[Value], kind: &str, at: &str) -> Vec<(String, String, String)> {
    let doc = docs
        .iter()
        .find(|d| d["kind"] == kind)
        .unwrap_or_else(|| panic!("no {kind} status printed: {docs:#?}"));
    doc["status"]
        .pointer(at)
        .and_then(Value::as_array)
        .unwrap_or_else(|| panic!("{kind} has no {at}: {doc:#}"))
        .iter()
        .map(|c| {
            let s = |f: &str| c[f].as_str().unwrap_or_default().to_owned();
            (s("type"), s("status"), s("reason"))
        })
        .collect()
}

fn has(conds: &[(String, String, String)], ty: &str, status: &str, reason: &str) -> bool {
    conds
        .iter()
        .any(|(t, s, r)| t == ty && s == status && r == reason)
}

fn check_with_the_extensions_resolves_the_filter_and_accepts_the_policy(dir: &Path) {
    let (out, docs) = check(custom_gwcore(), dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        !stderr.contains("is not read by gwcore"),
        "the registered kinds are read: {stderr}"
    );
    let route = conditions(&docs, "HTTPRoute", "/parents/0/conditions");
    assert!(
        has(&route, "ResolvedRefs", "True", "ResolvedRefs"),
        "the ExtensionRef resolves: {route:?}"
    );
    assert!(has(&route, "Accepted", "True", "Accepted"), "{route:?}");
    let policy = conditions(&docs, "CacheControl", "/ancestors/0/conditions");
    assert!(
        has(&policy, "Accepted", "True", "Accepted"),
        "the policy is accepted on the Gateway: {policy:?}"
    );
    let doc = docs.iter().find(|d| d["kind"] == "CacheControl").unwrap();
    assert_eq!(doc["apiVersion"], "example.com/v1", "{doc:#}");
    assert_eq!(
        doc["status"]["ancestors"][0]["controllerName"], "example.com/gateway-controller",
        "{doc:#}"
    );
    assert_eq!(
        doc["status"]["ancestors"][0]["ancestorRef"]["name"], "shared",
        "{doc:#}"
    );
}

fn check_without_the_extensions_says_invalid_kind(dir: &Path) {
    let (out, docs) = check(Command::new(env!("CARGO_BIN_EXE_gwcore")), dir);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let route = conditions(&docs, "HTTPRoute", "/parents/0/conditions");
    assert!(
        has(&route, "ResolvedRefs", "False", "InvalidKind"),
        "the stock gwcore knows no ApiKey filter: {route:?}"
    );
    assert!(
        docs.iter().all(|d| d["kind"] != "CacheControl"),
        "nor CacheControl policies: {docs:#?}"
    );
    assert!(
        stderr.contains("kind ApiKey") && stderr.contains("kind CacheControl"),
        "the objects of both kinds are reported as not read: {stderr}"
    );
}

/// The process; killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// `GET path` on 127.0.0.1:port: the response head, lowercased, or `None`
/// while the port does not answer.
fn get(port: u16, path: &str, key: Option<&str>) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let key = key.map_or(String::new(), |k| format!("x-api-key: {k}\r\n"));
    let req =
        format!("GET {path} HTTP/1.1\r\nhost: shop.example\r\n{key}connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp).ok()?;
    let text = String::from_utf8_lossy(&resp).to_lowercase();
    Some(text.split("\r\n\r\n").next()?.to_owned())
}

fn serve_with_the_extensions_runs_both_plugins(dir: &Path) {
    let port = free_port();
    let _serve = Running(
        custom_gwcore()
            .arg("serve")
            .arg(dir)
            .args(["--echo-backends", "--listen"])
            .arg(format!("80=127.0.0.1:{port}"))
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("gwcore serve runs"),
    );
    let start = Instant::now();
    let open = loop {
        if let Some(head) = get(port, "/", None) {
            break head;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "gwcore serve did not answer on port {port} within 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(open.starts_with("http/1.1 200"), "{open}");
    assert!(
        open.contains("cache-control: max-age=60"),
        "the CacheControl policy's plug-in sets the header: {open}"
    );
    let denied = get(port, "/private", None).expect("answer");
    assert!(
        denied.starts_with("http/1.1 401"),
        "the ApiKey filter answers 401 without the header: {denied}"
    );
    let allowed = get(port, "/private", Some("k")).expect("answer");
    assert!(allowed.starts_with("http/1.1 200"), "{allowed}");
}
