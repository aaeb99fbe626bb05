//! The fuzz targets' harness code that does not fit in `gwcore::__fuzz`
//! because it needs `arbitrary`: the `engine` target's cluster description.

mod cluster;
mod engine_check;

/// The `engine` target: the bytes describe a cluster and a sequence of
/// changes (see [`cluster`]); every property of [`engine_check`] must hold.
///
/// With `GWCORE_FUZZ_DUMP=<file>` set, the case is also written to `<file>`
/// as JSON, the format `gwcore/tests/fuzz_regressions.rs` replays from
/// `fuzz/regressions/engine/`:
///
/// ```text
/// GWCORE_FUZZ_DUMP=case.json target/.../engine artifacts/engine/crash-...
/// ```
pub fn engine(data: &[u8]) {
    let Ok(c) = arbitrary::Unstructured::new(data).arbitrary::<cluster::Cluster>() else {
        return;
    };
    let case = c.case();
    if let Some(path) = std::env::var_os("GWCORE_FUZZ_DUMP") {
        let json = cluster::to_json(&case);
        let back = engine_check::Case::from_json(&json);
        assert_eq!(
            back.as_ref(),
            Ok(&case),
            "the dump does not read back as the same case"
        );
        let text = serde_json::to_string_pretty(&json).unwrap_or_default();
        if let Err(e) = std::fs::write(&path, text + "\n") {
            eprintln!("GWCORE_FUZZ_DUMP: {e}");
        }
    }
    case.check();
}
