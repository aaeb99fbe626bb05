//! `docs/features.md` is generated from conformance runs in engine and
//! wire mode; this test runs the public vectors again in both, regenerates
//! the table and fails when the checked-in file differs, so the table
//! cannot drift from what the runner measures.
//!
//! The corpus is found like `tests/vectors.rs` finds it
//! (`GWCORE_CONFORMANCE_DIR`, default `../shared/conformance`); without it
//! the test says so and passes, except under `CI=true`.
//! `GWCORE_BLESS=1` rewrites the file.

use std::path::{Path, PathBuf};

use gwcore_conformance::features::{add_wire, render, rows, vector_features};
use gwcore_conformance::{Mode, RunOptions, run_paths};

#[test]
fn checked_in_feature_table_is_current() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the conformance crate lives in the workspace")
        .to_path_buf();
    let corpus = std::env::var_os("GWCORE_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/conformance"));
    let vectors = corpus.join("vectors");
    if !vectors.is_dir() {
        assert_ne!(
            std::env::var("CI").as_deref(),
            Ok("true"),
            "the conformance corpus is missing at {}; CI requires it",
            vectors.display()
        );
        eprintln!(
            "conformance corpus not found at {}: feature table not checked",
            vectors.display()
        );
        return;
    }
    let run = |mode| {
        let opts = RunOptions {
            mode,
            ..RunOptions::default()
        };
        run_paths(std::slice::from_ref(&vectors), &opts).expect("vector folder readable")
    };
    let mut table_rows = rows(&run(Mode::Engine), vector_features);
    add_wire(&mut table_rows, &run(Mode::Wire), vector_features);
    let table = render(&table_rows);
    let file = root.join("docs/features.md");
    if std::env::var("GWCORE_BLESS").as_deref() == Ok("1") {
        std::fs::write(&file, &table).expect("docs/features.md written");
        return;
    }
    let current = std::fs::read_to_string(&file).unwrap_or_default();
    if current != table {
        let first = current
            .lines()
            .zip(table.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| current.lines().count().min(table.lines().count()));
        panic!(
            "docs/features.md is stale (first difference at line {}: now {:?}); regenerate with \
             GWCORE_BLESS=1 cargo test -p gwcore-conformance --test feature_table",
            first + 1,
            table.lines().nth(first).unwrap_or("<end>")
        );
    }
}
