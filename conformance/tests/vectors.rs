//! Runs the conformance vectors in engine mode and holds the result to the
//! checked-in list of expected failures (`conformance/expected-failures.txt`),
//! with the rules of `tests/common` (unlisted failures and listed passes
//! both fail; every entry has a reason; `GWCORE_BLESS=1` rewrites it).
//!
//! The project's own scenarios (`conformance/scenarios/`) always run. The
//! public corpus is not part of the project: it is found through
//! `GWCORE_CONFORMANCE_DIR` (default `../shared/conformance` beside the
//! workspace), with the shared scenarios in its sibling `scenarios/`. When
//! it is absent the test says so and runs only our scenarios, except under
//! `CI=true`, where a missing corpus is a failure.

mod common;

use std::path::Path;

use gwcore_conformance::{RunOptions, run_paths};

const HEADER: &str = "# Conformance vectors expected to fail in engine mode, one per line:\n\
     #   VectorName  # reason (the later issue or the missing feature)\n\
     # A vector listed here that passes fails the test: remove it.\n\
     # Regenerate with GWCORE_BLESS=1 cargo test -p gwcore-conformance --test vectors\n";

#[test]
fn vectors_fail_only_as_listed() {
    let (paths, have_corpus) = common::vector_paths();
    let report = run_paths(&paths, &RunOptions::default()).expect("vector folders readable");
    for line in report.lines() {
        println!("{line}");
    }
    let list = Path::new(env!("CARGO_MANIFEST_DIR")).join("expected-failures.txt");
    common::hold_to_list(&report, &list, HEADER, have_corpus);
}

#[test]
fn list_entries_need_reasons() {
    assert!(common::read_list("A  # issue 4: needs a data plane\n").is_ok());
    assert!(
        common::read_list("A\n").is_err(),
        "an entry without a reason"
    );
    assert!(
        common::read_list("A # r\nA # r\n").is_err(),
        "a duplicate entry"
    );
    assert_eq!(
        common::read_list("# comment\n\nB # why # more\n").expect("valid")["B"],
        "why # more"
    );
}
