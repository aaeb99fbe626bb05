//! A Gateway's `spec.addresses` are judged against where it is served
//! (issue 14, item 3): `gwcore serve FILE` takes the addresses it listens
//! on as the usable ones (a wildcard listen makes every address usable);
//! `gwcore check` takes every address as usable unless `--usable-address`
//! says which are.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Two Gateways of one class: `near` asks for 127.0.0.1 (port 80), `far`
/// for 192.0.2.7, an address of no host here (port 81).
const MANIFESTS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: gc}
spec: {controllerName: example.com/addresses}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: near, namespace: infra}
spec:
  gatewayClassName: gc
  addresses: [{value: 127.0.0.1}]
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: far, namespace: infra}
spec:
  gatewayClassName: gc
  addresses: [{type: IPAddress, value: 192.0.2.7}]
  listeners: [{name: http, port: 81, protocol: HTTP}]
"#;

/// A manifest file in a temporary folder of its own, removed when dropped.
struct Manifest(PathBuf);

impl Drop for Manifest {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn manifest() -> Manifest {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!(
        "gwcore-addresses-{}-{}",
        std::process::id(),
        CALLS.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("gateways.yaml");
    std::fs::write(&file, MANIFESTS).expect("manifests written");
    Manifest(file)
}

/// The `gwcore` process; killed when dropped.
struct Gwcore(Child);

impl Drop for Gwcore {
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

/// The JSON body of `GET /status` on the admin port, once it answers.
fn admin_status(port: u16) -> Option<serde_json::Value> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(b"GET /status HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n")
        .ok()?;
    let mut response = Vec::new();
    s.read_to_end(&mut response).ok()?;
    let text = String::from_utf8(response).ok()?;
    let (_, body) = text.split_once("\r\n\r\n")?;
    serde_json::from_str(body).ok()
}

/// The first `conditions` array found in `v`.
fn conditions(v: &serde_json::Value) -> Option<&Vec<serde_json::Value>> {
    match v {
        serde_json::Value::Object(m) => m
            .get("conditions")
            .and_then(|c| c.as_array())
            .or_else(|| m.values().find_map(conditions)),
        serde_json::Value::Array(a) => a.iter().find_map(conditions),
        _ => None,
    }
}

/// Gateway `name`'s Programmed condition as (status, reason).
fn programmed(status: &serde_json::Value, name: &str) -> (String, String) {
    let c = conditions(status)
        .unwrap_or_else(|| panic!("Gateway {name} has no conditions: {status}"))
        .iter()
        .find(|c| c["type"] == "Programmed")
        .unwrap_or_else(|| panic!("Gateway {name} has no Programmed condition: {status}"));
    (
        c["status"].as_str().unwrap_or_default().to_string(),
        c["reason"].as_str().unwrap_or_default().to_string(),
    )
}

/// Runs `gwcore serve` with the two Gateways' ports on `ip` and returns
/// each Gateway's Programmed condition, from `/status`.
fn serve_on(ip: &str) -> [(String, String); 2] {
    let file = manifest();
    let admin = free_port();
    let mut child = Gwcore(
        Command::new(env!("CARGO_BIN_EXE_gwcore"))
            .arg("serve")
            .arg(&file.0)
            .args(["--listen", &format!("80={ip}:{}", free_port())])
            .args(["--listen", &format!("81={ip}:{}", free_port())])
            .args(["--admin", &format!("127.0.0.1:{admin}")])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("gwcore runs"),
    );
    let start = Instant::now();
    let status = loop {
        if let Some(s) = admin_status(admin) {
            break s;
        }
        assert!(
            child.0.try_wait().expect("wait").is_none(),
            "gwcore serve exited"
        );
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "no /status after 30 s"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let gateway = |name: &str| {
        status["objects"]
            .as_array()
            .expect("objects")
            .iter()
            .find(|o| o["kind"] == "Gateway" && o["name"] == name)
            .unwrap_or_else(|| panic!("no status for Gateway {name}: {status}"))
            .clone()
    };
    [
        programmed(&gateway("near"), "near"),
        programmed(&gateway("far"), "far"),
    ]
}

fn pair(status: &str, reason: &str) -> (String, String) {
    (status.to_string(), reason.to_string())
}

#[test]
fn serve_takes_the_addresses_it_listens_on_as_the_usable_ones() {
    let [near, far] = serve_on("127.0.0.1");
    assert_eq!(near, pair("True", "Programmed"));
    assert_eq!(far, pair("False", "AddressNotUsable"));
}

#[test]
fn serve_on_a_wildcard_address_can_use_every_address() {
    let [near, far] = serve_on("0.0.0.0");
    assert_eq!(near, pair("True", "Programmed"));
    assert_eq!(far, pair("True", "Programmed"));
}

fn check(args: &[&str]) -> Output {
    let file = manifest();
    Command::new(env!("CARGO_BIN_EXE_gwcore"))
        .args(["check", "-o", "json"])
        .args(args)
        .arg(&file.0)
        .output()
        .expect("gwcore runs")
}

/// Gateway `name`'s Programmed condition in `gwcore check` output.
fn checked(o: &Output, name: &str) -> (String, String) {
    assert_eq!(
        o.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&o.stdout).expect("JSON");
    let gw = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|i| i["kind"] == "Gateway" && i["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no status for Gateway {name}"))
        .clone();
    programmed(&gw, name)
}

#[test]
fn check_takes_every_address_as_usable_by_default() {
    let out = check(&[]);
    assert_eq!(checked(&out, "near"), pair("True", "Programmed"));
    assert_eq!(checked(&out, "far"), pair("True", "Programmed"));
}

#[test]
fn check_judges_addresses_against_usable_address_flags() {
    let out = check(&["--usable-address", "192.0.2.7"]);
    assert_eq!(checked(&out, "near"), pair("False", "AddressNotUsable"));
    assert_eq!(checked(&out, "far"), pair("True", "Programmed"));
}

#[test]
fn check_refuses_a_usable_address_that_is_no_address() {
    let out = check(&["--usable-address", "not an address"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("expected an IP address or a hostname"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
