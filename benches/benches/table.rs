//! Compile and match at 10 to 50 000 routes; the path normalizer.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gwcore::table::{Table, path::normalize};
use gwcore_benches::{hits, host_misses, path_misses, routing};

const SIZES: [usize; 5] = [10, 100, 1_000, 10_000, 50_000];

fn compile(c: &mut Criterion) {
    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    for n in SIZES {
        let r = routing(n);
        g.bench_with_input(BenchmarkId::from_parameter(n), &r, |b, r| {
            b.iter_with_large_drop(|| Table::compile(black_box(r)))
        });
    }
    g.finish();
}

fn find(c: &mut Criterion) {
    let mut g = c.benchmark_group("find");
    for n in SIZES {
        let r = routing(n);
        let table = Table::compile(&r);
        for (kind, reqs) in [
            ("hit", hits(&r, 1024)),
            ("host_miss", host_misses(1024)),
            ("path_miss", path_misses(&r, 1024)),
        ] {
            let mut i = 0usize;
            g.bench_function(BenchmarkId::new(kind, n), |b| {
                b.iter(|| {
                    i = (i + 1) & 1023;
                    black_box(table.find(black_box(&reqs[i])).status())
                })
            });
        }
    }
    g.finish();
}

fn normalizer(c: &mut Criterion) {
    let mut g = c.benchmark_group("normalize");
    for (name, p) in [
        ("clean", "/api/v1/users/12345/orders"),
        ("dirty", "/api//v1/./users/%7Ejohn/../12345/orders%2Fx/"),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| black_box(normalize(black_box(p)).map(|c| c.len())))
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    targets = compile, find, normalizer
}
criterion_main!(benches);
