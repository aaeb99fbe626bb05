//! Inputs the fuzz targets in `fuzz/` failed on, replayed without the
//! fuzzer so that a fixed bug stays fixed.
//!
//! `fuzz/regressions/engine/*.json` are cases of the `engine` target (a pool
//! of objects, how many are loaded at once, then applies, deletes and status
//! echoes; see `fuzz/src/engine_check.rs` for the properties). A case the
//! engine still fails lives in `fuzz/regressions/engine/open/` and has its
//! own `#[ignore]`d test below naming the bug; once fixed, move the file up
//! one directory and delete its test.
//!
//! To turn a new fuzz artifact into a case:
//! `GWCORE_FUZZ_DUMP=case.json <fuzz-target-dir>/release/engine artifacts/engine/crash-...`.

use std::path::{Path, PathBuf};

#[path = "../../fuzz/src/engine_check.rs"]
mod engine_check;

fn regressions(dir: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../fuzz/regressions")
        .join(dir);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    files
}

fn replay(path: &Path) {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: serde_json::Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let case =
        engine_check::Case::from_json(&json).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let result = std::panic::catch_unwind(|| case.check());
    if let Err(e) = result {
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!("{}: {msg}", path.display());
    }
}

/// Every fixed engine case still passes.
#[test]
fn engine_cases() {
    for path in regressions("engine") {
        replay(&path);
    }
}
