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

/// Loading manifests never panics, every object loaded has a kind and
/// a name or a diagnostic, and reading YAML documents straight into their
/// types gives what reading them by a `serde_json::Value` gives.
pub fn manifests(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let loaded = crate::load::load_both_ways(
        "fuzz.yaml",
        &text,
        crate::load::Limits::default(),
        &crate::extension::Extensions::default(),
    );
    for (obj, _) in &loaded.objects {
        let _ = obj.key();
    }
}

/// The compiled table agrees with the reference matcher on a table and
/// requests generated from the bytes (proptest strategies driven by a
/// random stream seeded with the bytes), and on the bytes used raw as a
/// request path and Host.
#[cfg(feature = "proptest")]
pub fn table_vs_reference(data: &[u8]) {
    use proptest::strategy::{Strategy, ValueTree};
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

    use crate::table::{RequestHead, Table};
    use crate::testing::table::{Outcome, reference_find, request, routing};

    // A pass-through RNG (the bytes as the random stream) yields zeros once
    // the bytes run out, on which rejection sampling never ends; so the
    // bytes seed a ChaCha stream instead (same bytes, same table).
    let mut seed = [0u8; 32];
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    for (i, chunk) in seed.chunks_mut(8).enumerate() {
        for &b in data {
            x = (x ^ u64::from(b))
                .wrapping_mul(0x100_0000_01b3)
                .rotate_left(i as u32 + 1);
        }
        x ^= x >> 31;
        chunk.copy_from_slice(&x.to_le_bytes());
    }
    let rng = TestRng::from_seed(RngAlgorithm::ChaCha, &seed);
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
