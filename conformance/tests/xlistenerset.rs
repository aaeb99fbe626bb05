//! The public corpus's ListenerSet vectors, rewritten on the fly as a
//! cluster on the experimental channel of Gateway API v1.3–v1.4 would hold
//! them: every ListenerSet object becomes an `XListenerSet` of
//! `gateway.networking.x-k8s.io/v1alpha1`, and every reference to one (the
//! routes' parentRefs, the vectors' expected route parents) names
//! `{group: gateway.networking.x-k8s.io, kind: XListenerSet}`. Each must
//! pass in engine mode as the original does: the sets attach their
//! listeners, routes naming them attach, and the statuses are the same.

mod common;

use std::path::{Path, PathBuf};

use gwcore_conformance::{Outcome, RunOptions, Verdict, run_paths};
use serde_json::Value;

const X_GROUP: &str = "gateway.networking.x-k8s.io";

/// Renames every ListenerSet in `v`: objects (a mapping with `apiVersion`)
/// get the experimental apiVersion, references get the experimental group
/// (a reference without one would mean `gateway.networking.k8s.io`).
/// Returns how many were renamed.
fn to_x(v: &mut Value) -> usize {
    match v {
        Value::Object(map) => {
            let mut n = 0;
            if map.get("kind").and_then(Value::as_str) == Some("ListenerSet") {
                map.insert("kind".into(), "XListenerSet".into());
                if map.contains_key("apiVersion") {
                    map.insert("apiVersion".into(), format!("{X_GROUP}/v1alpha1").into());
                } else {
                    map.insert("group".into(), X_GROUP.into());
                }
                n += 1;
            }
            n + map.values_mut().map(to_x).sum::<usize>()
        }
        Value::Array(items) => items.iter_mut().map(to_x).sum(),
        _ => 0,
    }
}

/// The YAML documents of `text`, as JSON values.
fn documents(text: &str) -> Vec<Value> {
    serde_norway::Deserializer::from_str(text)
        .map(|d| serde::Deserialize::deserialize(d).expect("YAML document"))
        .filter(|v: &Value| !v.is_null())
        .collect()
}

fn corpus() -> Option<PathBuf> {
    let dir = std::env::var_os("GWCORE_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| common::workspace_root().join("../shared/conformance"));
    if dir.join("vectors").is_dir() {
        Some(dir)
    } else if std::env::var("CI").as_deref() == Ok("true") {
        panic!("the conformance corpus is missing at {}", dir.display());
    } else {
        eprintln!("no conformance corpus at {}; skipped", dir.display());
        None
    }
}

/// Writes the rewritten vectors and the manifests they name under `out`
/// (`vectors/`, `manifests/`); returns the vector files.
fn rewrite_corpus(corpus: &Path, out: &Path) -> Vec<PathBuf> {
    let vectors_out = out.join("vectors");
    let manifests_out = out.join("manifests");
    std::fs::create_dir_all(&vectors_out).expect("temp folder");
    std::fs::create_dir_all(&manifests_out).expect("temp folder");
    let mut names: Vec<PathBuf> = std::fs::read_dir(corpus.join("vectors"))
        .expect("corpus vectors")
        .map(|e| e.expect("entry").path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("listenerset-") && n.ends_with(".yaml"))
        })
        .collect();
    names.sort();
    let mut files = Vec::new();
    for path in names {
        let text = std::fs::read_to_string(&path).expect("vector readable");
        let mut vector: Value = serde_norway::from_str(&text).expect("vector is YAML");
        to_x(&mut vector);
        let mut renamed_objects = 0;
        for m in vector["manifests"].as_array().expect("manifests").clone() {
            let name = m.as_str().expect("manifest name");
            let text = std::fs::read_to_string(corpus.join("manifests").join(name))
                .expect("manifest readable");
            let mut docs = documents(&text);
            for d in &mut docs {
                if d.get("apiVersion").is_some() && to_x(d) > 0 {
                    renamed_objects += 1;
                }
            }
            let yaml: Vec<String> = docs
                .iter()
                .map(|d| serde_norway::to_string(d).expect("YAML"))
                .collect();
            std::fs::write(manifests_out.join(name), yaml.join("---\n")).expect("written");
        }
        assert!(
            renamed_objects > 0,
            "{}: no ListenerSet to rewrite",
            path.display()
        );
        let file = vectors_out.join(path.file_name().expect("file name"));
        std::fs::write(&file, serde_norway::to_string(&vector).expect("YAML")).expect("written");
        files.push(file);
    }
    files
}

#[test]
fn listenerset_vectors_pass_as_xlistenerset() {
    let Some(corpus) = corpus() else { return };
    let out = std::env::temp_dir().join(format!("gwcore-xlistenerset-{}", std::process::id()));
    let files = rewrite_corpus(&corpus, &out);
    assert!(files.len() >= 10, "the corpus has 10 ListenerSet vectors");
    let opts = RunOptions {
        manifest_dirs: vec![corpus.join("manifests")],
        ..RunOptions::default()
    };
    let report = run_paths(&files, &opts).expect("vectors readable");
    std::fs::remove_dir_all(&out).ok();
    let mut failed = Vec::new();
    for v in &report.vectors {
        println!("{}", v.line());
        if v.verdict != Verdict::Pass {
            failed.push(format!("{}: {:?}", v.name, v.message));
        }
    }
    assert!(failed.is_empty(), "as XListenerSet: {failed:#?}");
    // The sets' own expectations were judged on the XListenerSet objects.
    let judged = report
        .vectors
        .iter()
        .flat_map(|v| &v.checks)
        .filter(|c| c.check.starts_with("XListenerSet ") && c.outcome == Outcome::Pass)
        .count();
    assert!(judged > 20, "only {judged} XListenerSet checks passed");
}

#[test]
fn rewrite_renames_objects_and_references() {
    let mut docs = documents(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: ListenerSet\nmetadata: {name: s}\n\
         spec:\n  parentRef: {name: gw}\n---\n\
         apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r}\n\
         spec:\n  parentRefs: [{kind: ListenerSet, name: s}, {name: gw}]\n",
    );
    assert_eq!(docs.iter_mut().map(to_x).sum::<usize>(), 2);
    assert_eq!(
        docs[0]["apiVersion"],
        "gateway.networking.x-k8s.io/v1alpha1"
    );
    assert_eq!(docs[0]["kind"], "XListenerSet");
    assert_eq!(
        docs[0]["spec"]["parentRef"],
        serde_json::json!({"name": "gw"})
    );
    assert_eq!(
        docs[1]["spec"]["parentRefs"],
        serde_json::json!([{"group": X_GROUP, "kind": "XListenerSet", "name": "s"}, {"name": "gw"}])
    );
}
