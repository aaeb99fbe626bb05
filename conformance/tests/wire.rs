//! Runs the conformance vectors in wire mode — the real data plane of
//! `gwcore-proxy` on loopback, echo backends, requests sent over sockets —
//! and holds the result to `conformance/wire-expected-failures.txt`, with
//! the rules of `tests/common`: a failing vector not on the list fails
//! this test, a listed vector that passes fails it too, every entry names
//! the missing data-plane feature. The corpus is found as in
//! `tests/vectors.rs`; without it only the project's scenarios run, except
//! under `CI=true`. `GWCORE_BLESS=1` rewrites the list.
//!
//! Vectors run on several threads (`GWCORE_WIRE_THREADS`, default the CPU
//! count up to 4), each with its own proxy and backends on ephemeral ports.

mod common;

use std::path::Path;

use gwcore_conformance::{CheckKind, Mode, RunOptions, VectorResult, Verdict, run_paths};

const HEADER: &str = "# Conformance vectors expected to fail in wire mode (the real data plane), one per line:\n\
     #   VectorName  # reason (the data-plane feature gwcore-proxy lacks)\n\
     # A vector listed here that passes fails the test: remove it.\n\
     # Regenerate with GWCORE_BLESS=1 cargo test -p gwcore-conformance --test wire\n";

#[test]
fn wire_vectors_fail_only_as_listed() {
    let (paths, have_corpus) = common::vector_paths();
    let opts = RunOptions {
        mode: Mode::Wire,
        ..RunOptions::default()
    };
    let started = std::time::Instant::now();
    let report = run_paths(&paths, &opts).expect("vector folders readable");
    for line in report.lines() {
        println!("{line}");
    }
    println!("wire mode: {:.1?}", started.elapsed());
    // Wire mode judges every request it sends: none is left as not run.
    let requests = report.tally(CheckKind::Request);
    assert_eq!(
        requests.not_run, 0,
        "wire mode left request checks unjudged"
    );
    assert!(requests.passed > 0, "no request passed on the wire");
    let list = Path::new(env!("CARGO_MANIFEST_DIR")).join("wire-expected-failures.txt");
    common::hold_to_list(&report, &list, HEADER, have_corpus);
}

fn run_one(test: &str, yaml: &str) -> (gwcore_conformance::Report, VectorResult) {
    common::run_one(test, yaml, Mode::Wire)
}

const HEAD: &str = common::ACME_HEAD;

#[test]
fn a_wrong_backend_fails_with_the_namespace_the_echo_reports() {
    let yaml = format!(
        "{HEAD}steps:\n- requests:\n  - {{gateway: infra-ns/shared-gateway, port: 80, request: {{path: /careers}}, backend: product, namespace: product}}\n"
    );
    let (report, v) = run_one("wrong-backend", &yaml);
    assert_eq!(v.verdict, Verdict::Fail, "{:?}", v.message);
    let msg = v.message.unwrap_or_default();
    assert!(
        msg.contains("answered from namespace careers, expected product"),
        "the echo backend's report decides: {msg}"
    );
    let r = report.tally(CheckKind::Request);
    assert_eq!((r.passed, r.failed, r.total), (0, 1, 1));
}

#[test]
fn what_the_backend_did_not_receive_fails() {
    let yaml = format!(
        "{HEAD}steps:\n- requests:\n  - {{gateway: infra-ns/shared-gateway, port: 80, request: {{path: /careers, headers: {{X-Sent: a}}}}, expectedRequest: {{path: /careers, headers: {{X-Sent: a, X-Never: b}}}}}}\n"
    );
    let (_, v) = run_one("missing-header", &yaml);
    assert_eq!(v.verdict, Verdict::Fail, "{:?}", v.message);
    assert!(
        v.message
            .as_deref()
            .unwrap_or("")
            .contains("backend did not receive header X-Never: b"),
        "{:?}",
        v.message
    );
}

#[test]
fn wire_only_requests_run_and_edits_reach_the_running_proxy() {
    // Step 1: hr is refused (404) while careers answers, wire_only or not.
    // Step 2: labelling hr's namespace lets its route attach; the proxy,
    // already serving, is given the new snapshot and /hr reaches hr.
    let yaml = format!(
        "{HEAD}steps:\n- requests:\n  - {{gateway: infra-ns/shared-gateway, port: 80, request: {{path: /careers}}, backend: careers, namespace: careers, wire_only: true}}\n  - {{gateway: infra-ns/shared-gateway, port: 80, request: {{path: /hr}}, response: {{statusCodes: [404]}}}}\n- patch:\n  - {{kind: Namespace, name: hr, merge: {{metadata: {{labels: {{shared-gateway-access: \"true\"}}}}}}}}\n  requests:\n  - {{gateway: infra-ns/shared-gateway, port: 80, request: {{path: /hr}}, backend: hr, namespace: hr}}\n"
    );
    let (report, v) = run_one("reload", &yaml);
    assert_eq!(v.verdict, Verdict::Pass, "{:?}", v.message);
    let r = report.tally(CheckKind::Request);
    assert_eq!((r.passed, r.not_run, r.total), (3, 0, 3));
}
