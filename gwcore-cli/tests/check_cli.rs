//! `gwcore check` as a CI gate before `kubectl apply`: its exit status, and
//! the pipeline script and manifests of `examples/ci/`, which these tests
//! run so they stay correct.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/ci")
}

fn gwcore_check(paths: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gwcore"))
        .arg("check")
        .args(paths)
        .current_dir(examples())
        .output()
        .expect("gwcore runs")
}

fn script(args: &[&str]) -> Output {
    Command::new("bash")
        .arg("check-manifests.sh")
        .args(args)
        .env("GWCORE", env!("CARGO_BIN_EXE_gwcore"))
        .current_dir(examples())
        .output()
        .expect("bash runs")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn valid_manifests_pass_and_print_the_statuses() {
    let out = gwcore_check(&["manifests/good"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("kind: HTTPRoute") && stdout.contains("reason: Accepted"),
        "the route's computed status is printed:\n{stdout}"
    );
}

#[test]
fn an_invalid_manifest_fails_and_names_file_and_field() {
    let out = gwcore_check(&["manifests/good/gateway.yaml", "manifests/bad"]);
    assert_eq!(out.status.code(), Some(1));
    let err = stderr(&out);
    assert!(
        err.contains("manifests/bad/shop.yaml") && err.contains("spec.hostnames[0]"),
        "{err}"
    );
    assert!(err.contains("spec.rules[0].matches[0].path.value"), "{err}");
}

#[test]
fn a_refused_route_is_reported_but_is_not_an_invalid_manifest() {
    let out = gwcore_check(&["manifests/good", "manifests/refused"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("refused (NotAllowedByListeners): blog/posts"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn pipeline_script_exit_codes() {
    let ok = script(&["manifests/good"]);
    assert_eq!(ok.status.code(), Some(0), "{}", stderr(&ok));

    let invalid = script(&["manifests/good/gateway.yaml", "manifests/bad"]);
    assert_eq!(invalid.status.code(), Some(1), "{}", stderr(&invalid));
    assert!(stderr(&invalid).contains("apply nothing"));

    let refused = script(&["manifests/good", "manifests/refused"]);
    assert_eq!(
        refused.status.code(),
        Some(0),
        "without --strict a refusal is only reported: {}",
        stderr(&refused)
    );
    let strict = script(&["--strict", "manifests/good", "manifests/refused"]);
    assert_eq!(strict.status.code(), Some(2), "{}", stderr(&strict));
    let strict_ok = script(&["--strict", "manifests/good"]);
    assert_eq!(strict_ok.status.code(), Some(0), "{}", stderr(&strict_ok));
}

#[test]
fn pipeline_script_writes_the_statuses_as_json() {
    let dir = std::env::temp_dir().join(format!("gwcore-check-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("statuses.json");
    let out = Command::new("bash")
        .arg("check-manifests.sh")
        .arg("manifests/good")
        .env("GWCORE", env!("CARGO_BIN_EXE_gwcore"))
        .env("GWCORE_STATUS_OUT", &file)
        .current_dir(examples())
        .output()
        .expect("bash runs");
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(&file).expect("statuses written");
    let list: serde_json::Value = serde_json::from_str(&text).expect("JSON");
    let kinds: Vec<&str> = list["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["kind"].as_str())
        .collect();
    assert_eq!(kinds, ["GatewayClass", "Gateway", "HTTPRoute"]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// A generated cluster of `routes` HTTPRoutes (`gwcore gen`), in a file.
fn generated(routes: usize) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gwcore-check-gen-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join(format!("routes-{routes}.yaml"));
    let out = Command::new(env!("CARGO_BIN_EXE_gwcore"))
        .args(["gen", "--routes", &routes.to_string(), "--namespaces", "50"])
        .args(["--gateways", "3"])
        .output()
        .expect("gwcore gen runs");
    assert!(out.status.success(), "{}", stderr(&out));
    std::fs::write(&file, &out.stdout).expect("written");
    file
}

/// The statuses of many routes are written as they are built (by a second
/// thread where there is a second core): every one, in the order of the
/// kinds and then of the objects' keys, YAML and JSON alike.
#[test]
fn every_status_of_a_large_input_is_written_in_order() {
    let file = generated(1_500);
    let yaml = gwcore_check(&[file.to_str().expect("UTF-8 path")]);
    assert!(yaml.status.success(), "{}", stderr(&yaml));
    let text = String::from_utf8_lossy(&yaml.stdout);
    // Each document's own kind, at the start of a line.
    let kinds: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("kind: "))
        .collect();
    assert_eq!(kinds.len(), 1 + 3 + 1_500, "a document per status");
    assert_eq!(
        kinds[..4],
        ["GatewayClass", "Gateway", "Gateway", "Gateway"]
    );
    // Routes in key order: namespace, then name.
    let keys: Vec<(String, String)> = text
        .split("---\n")
        .filter(|d| d.contains("\nkind: HTTPRoute\n"))
        .map(|d| {
            let field = |f: &str| {
                d.lines()
                    .find_map(|l| l.strip_prefix(f))
                    .expect("metadata field")
                    .to_string()
            };
            (field("  namespace: "), field("  name: "))
        })
        .collect();
    assert_eq!(keys.len(), 1_500);
    assert!(keys.is_sorted(), "routes in key order");

    let json = Command::new(env!("CARGO_BIN_EXE_gwcore"))
        .args(["check", "-o", "json"])
        .arg(&file)
        .output()
        .expect("gwcore runs");
    assert!(json.status.success(), "{}", stderr(&json));
    let list: serde_json::Value = serde_json::from_slice(&json.stdout).expect("JSON");
    let items = list["items"].as_array().expect("items");
    let json_kinds: Vec<&str> = items.iter().filter_map(|i| i["kind"].as_str()).collect();
    assert_eq!(json_kinds, kinds, "the same documents as YAML");
}

/// A reader that stops early (`gwcore check big.yaml | head`) ends
/// `gwcore check` with status 2; it does not hang with documents still
/// being built.
#[test]
fn a_closed_output_ends_check() {
    use std::io::Read;
    let file = generated(3_000);
    let mut child = Command::new(env!("CARGO_BIN_EXE_gwcore"))
        .arg("check")
        .arg(&file)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("gwcore runs");
    let mut stdout = child.stdout.take().expect("piped");
    let mut first = [0u8; 4];
    stdout.read_exact(&mut first).expect("output starts");
    assert_eq!(&first, b"---\n");
    drop(stdout);
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        if start.elapsed() > std::time::Duration::from_secs(60) {
            let _ = child.kill();
            panic!("gwcore check still running a minute after its output closed");
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(2));
}
