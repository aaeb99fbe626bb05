//! Loading hostile manifests (issue 18): the time `gwcore::load` takes to
//! refuse deeply nested input grows with its size, not with the square of
//! its depth. libyaml's scanner looks at every open flow level for each
//! token, so 200 000 nested `[` used to take over 100 s; the loader's depth
//! budget ([`gwcore::load::Limits::max_depth`]) now refuses it after a scan
//! of the text.
//!
//! Groups (inputs built before timing):
//! - `flow`: `a: ` then `n` nested `[` and `n` `]` (2n bytes), n = 1 000 ..
//!   1 000 000;
//! - `json`: the same brackets alone, which the loader reads as JSON;
//! - `block_seq`: `- - - ... x`, n compact block sequences on one line;
//! - `block_map`: n nested block mappings (`k:` one space deeper each line,
//!   ~n²/2 bytes, so n stops at 10 000: 50 MB, under the 64 MiB size limit);
//! - `unbudgeted_flow`: `flow` with the depth budget lifted, the loader's
//!   work before the budget (n up to 8 000, it is quadratic).
//!
//! ```text
//! taskset -c 1 cargo bench -p gwcore-benches --bench load_depth
//! ```

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use gwcore::load::{Limits, load_str_with};

/// With `--features mimalloc`, the allocator of the `gwcore` binary.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn flow(n: usize) -> String {
    format!("a: {}{}\n", "[".repeat(n), "]".repeat(n))
}

/// Text starting with `[` or `{` is read as JSON (serde_json stops at 128
/// levels on its own, in linear time).
fn json(n: usize) -> String {
    format!("{}{}", "[".repeat(n), "]".repeat(n))
}

fn block_seq(n: usize) -> String {
    format!("{}x\n", "- ".repeat(n))
}

fn block_map(n: usize) -> String {
    let mut s = String::with_capacity(n * (n + 8) / 2);
    for i in 0..n {
        s.extend(std::iter::repeat_n(' ', i));
        s.push_str("k:\n");
    }
    s
}

fn group(
    c: &mut Criterion,
    name: &str,
    sizes: &[usize],
    make: fn(usize) -> String,
    limits: Limits,
) {
    let mut g = c.benchmark_group(format!("load_depth/{name}"));
    g.sample_size(10).warm_up_time(Duration::from_millis(500));
    for &n in sizes {
        let text = make(n);
        // Every input here is refused: the benchmark times the refusal.
        let loaded = load_str_with("deep.yaml", &text, limits);
        assert!(
            loaded.has_errors() && loaded.objects.is_empty(),
            "{name}/{n}"
        );
        g.throughput(Throughput::Bytes(text.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(n), &text, |b, text| {
            b.iter(|| load_str_with("deep.yaml", black_box(text), limits))
        });
    }
    g.finish();
}

fn budgets(c: &mut Criterion) {
    let limits = Limits::default();
    let big = [1_000, 10_000, 100_000, 1_000_000];
    group(c, "flow", &big, flow, limits);
    group(c, "json", &big, json, limits);
    group(c, "block_seq", &big, block_seq, limits);
    group(c, "block_map", &[1_000, 3_000, 10_000], block_map, limits);
    let unbudgeted = Limits::default().with_max_depth(usize::MAX);
    group(
        c,
        "unbudgeted_flow",
        &[1_000, 2_000, 4_000, 8_000],
        flow,
        unbudgeted,
    );
}

criterion_group!(benches, budgets);
criterion_main!(benches);
