//! What the vector tests share: finding the corpus, running one vector
//! given as text, and holding a run to a checked-in list of expected
//! failures.
//!
//! - A failing vector not on the list fails the test.
//! - A vector on the list that no longer fails fails it too, so the list
//!   only shrinks.
//! - Each entry needs a reason (`Name  # reason`) naming the later issue or
//!   the missing feature.
//!
//! `GWCORE_BLESS=1` rewrites a list from the current failures, keeping
//! existing reasons; new entries get a `FIXME` reason that the test refuses
//! until a person replaces it.
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use gwcore_conformance::{Mode, Report, RunOptions, VectorResult, Verdict, run_paths};

/// The start of a test vector on the project's ACME scenario.
pub const ACME_HEAD: &str =
    "name: T\ncontrollerName: example.com/gateway-controller\nmanifests: [acme.yaml]\n";

/// Runs one vector, given as YAML text, in `mode`, with the project's
/// scenario manifests (written to a temporary folder, removed after).
pub fn run_one(test: &str, yaml: &str, mode: Mode) -> (Report, VectorResult) {
    let dir = std::env::temp_dir().join(format!(
        "gwcore-conformance-{mode:?}-{test}-{}",
        std::process::id()
    ));
    let vectors = dir.join("vectors");
    std::fs::create_dir_all(&vectors).expect("temp folder");
    let file = vectors.join("v.yaml");
    std::fs::write(&file, yaml).expect("vector written");
    let opts = RunOptions {
        mode,
        manifest_dirs: vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/manifests")],
        ..RunOptions::default()
    };
    let report = run_paths(&[file], &opts).expect("vector readable");
    std::fs::remove_dir_all(&dir).ok();
    let v = report.vectors[0].clone();
    (report, v)
}

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the conformance crate lives in the workspace")
        .to_path_buf()
}

/// The vector folders to run: the project's scenarios always, the public
/// corpus (`GWCORE_CONFORMANCE_DIR`, default `../shared/conformance`) and
/// its sibling `scenarios/` when present. Without the corpus the test says
/// so and runs only the project's scenarios, except under `CI=true`, where
/// a missing corpus is a failure. Returns the folders and whether the
/// corpus was found.
pub fn vector_paths() -> (Vec<PathBuf>, bool) {
    let root = workspace_root();
    let mut paths = vec![root.join("conformance/scenarios/vectors")];
    let corpus = std::env::var_os("GWCORE_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/conformance"));
    let corpus_vectors = corpus.join("vectors");
    let have_corpus = corpus_vectors.is_dir();
    if have_corpus {
        paths.push(corpus_vectors);
        let shared_scenarios = corpus.join("../scenarios/vectors");
        if shared_scenarios.is_dir() {
            paths.push(shared_scenarios);
        }
    } else if std::env::var("CI").as_deref() == Ok("true") {
        panic!(
            "the conformance corpus is missing at {} (set GWCORE_CONFORMANCE_DIR); CI requires it",
            corpus_vectors.display()
        );
    } else {
        eprintln!(
            "conformance corpus not found at {}: running only the project's scenarios (set GWCORE_CONFORMANCE_DIR)",
            corpus_vectors.display()
        );
    }
    (paths, have_corpus)
}

/// Name → reason.
pub fn read_list(text: &str) -> Result<BTreeMap<String, String>, String> {
    let mut out = BTreeMap::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, reason) = match line.split_once('#') {
            Some((n, r)) => (n.trim(), r.trim()),
            None => (line, ""),
        };
        if reason.is_empty() {
            return Err(format!("line {}: {name} has no `# reason`", i + 1));
        }
        if out.insert(name.to_string(), reason.to_string()).is_some() {
            return Err(format!("line {}: {name} is listed twice", i + 1));
        }
    }
    Ok(out)
}

/// The list file's text for the current failures; `header` is its comment.
fn write_list(report: &Report, old: &BTreeMap<String, String>, header: &str) -> String {
    let mut failing: BTreeMap<String, String> = BTreeMap::new();
    for v in &report.vectors {
        if v.verdict == Verdict::Fail {
            let reason = old.get(&v.name).cloned().unwrap_or_else(|| {
                format!(
                    "FIXME name the issue or missing feature: {}",
                    v.message.as_deref().unwrap_or("")
                )
            });
            failing.insert(v.name.clone(), reason.replace('\n', " "));
        }
    }
    let mut text = header.to_string();
    for (name, reason) in failing {
        text.push_str(&format!("{name}  # {reason}\n"));
    }
    text
}

/// Holds `report` to the list in `list_file` (or rewrites it under
/// `GWCORE_BLESS=1`, with `header` on top).
pub fn hold_to_list(report: &Report, list_file: &Path, header: &str, have_corpus: bool) {
    let file_name = list_file
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let list_text = std::fs::read_to_string(list_file).unwrap_or_default();
    let list = read_list(&list_text).unwrap_or_else(|e| panic!("{}: {e}", list_file.display()));

    if std::env::var("GWCORE_BLESS").as_deref() == Ok("1") {
        assert!(
            have_corpus,
            "blessing needs the corpus, or it would drop its entries"
        );
        std::fs::write(list_file, write_list(report, &list, header)).expect("list written");
        eprintln!("wrote {}", list_file.display());
        return;
    }

    let mut problems = Vec::new();
    for (name, reason) in &list {
        if reason.starts_with("FIXME") {
            problems.push(format!(
                "{name}: the list's reason is still a FIXME: {reason}"
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for v in &report.vectors {
        seen.insert(v.name.clone());
        let listed = list.contains_key(&v.name);
        match v.verdict {
            Verdict::Fail if !listed => problems.push(format!(
                "{}: fails and is not in {file_name}: {}",
                v.name,
                v.message.as_deref().unwrap_or("")
            )),
            Verdict::Pass | Verdict::Skip if listed => problems.push(format!(
                "{}: listed in {file_name} but {}; remove it from the list",
                v.name,
                if v.verdict == Verdict::Pass {
                    "passes"
                } else {
                    "is skipped"
                }
            )),
            _ => {}
        }
    }
    if have_corpus {
        for name in list.keys() {
            if !seen.contains(name) {
                problems.push(format!(
                    "{name}: listed in {file_name} but no vector has this name"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "conformance vectors disagree with {file_name}:\n  {}",
        problems.join("\n  ")
    );
}
