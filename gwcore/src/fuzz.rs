//! Entry points for the fuzz targets in `fuzz/` (not a public API). Each
//! function takes the fuzzer's bytes and panics when a property fails.

use crate::table::path::normalize;

/// Path normalization never panics and yields a normal form: it starts with
/// `/`, has no empty or dot segments (but a trailing `/`), and normalizing
/// it again changes nothing.
pub fn path_normalization(data: &[u8]) {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(once) = normalize(s) else { return };
    assert!(once.starts_with('/'), "{s:?} -> {once:?}");
    assert!(!once.contains("//"), "{s:?} -> {once:?}");
    assert!(once.is_ascii(), "{s:?} -> {once:?}");
    for seg in once.split('/') {
        assert!(seg != "." && seg != "..", "{s:?} -> {once:?}");
    }
    assert_eq!(
        normalize(&once).as_deref(),
        Ok(&*once),
        "not idempotent for {s:?}"
    );
}

/// Loading manifests never panics, and every object loaded has a kind and
/// a name or a diagnostic.
pub fn manifests(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let loaded = crate::load::load_str("fuzz.yaml", &text);
    for (obj, _) in &loaded.objects {
        let _ = obj.key();
    }
}

/// The compiled table agrees with the reference matcher on a table and
/// requests generated from the bytes (proptest strategies driven by the
/// bytes as their random stream), and on the bytes used raw as a request
/// path and Host.
#[cfg(feature = "proptest")]
pub fn table_vs_reference(data: &[u8]) {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

    use crate::table::{RequestHead, Table};
    use crate::testing::table::{Outcome, reference_find, request, routing};

    let rng = TestRng::from_seed(RngAlgorithm::PassThrough, data);
    let mut runner = TestRunner::new_with_rng(Config::default(), rng);
    let Ok(tree) = (routing(), proptest::collection::vec(request(), 1..8)).new_tree(&mut runner)
    else {
        return;
    };
    let (r, mut heads) = tree.current();
    let raw = String::from_utf8_lossy(data);
    let (host, path) = raw.split_once(' ').unwrap_or(("a.example.com", &raw));
    heads.push(RequestHead::new(80, host, "GET", path));
    heads.push(RequestHead::new(443, "a.example.com", "GET", path).with_sni(host));
    let table = Table::compile(&r);
    for head in &heads {
        assert_eq!(
            Outcome::of(&table.find(head)),
            reference_find(&r, head),
            "request {head:?}"
        );
        let _ = table.explain(head);
    }
}
