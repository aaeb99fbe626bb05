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

use gwcore_conformance::{CheckKind, Mode, RunOptions, run_paths};

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
