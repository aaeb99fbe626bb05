//! Compile and match at 10 to 50 000 routes; one route changed on a
//! compiled table (`incremental`); the path normalizer.
//!
//! With `GWCORE_TABLE_LOOP=<kind>/<routes>` (kind `hit`, `host_miss` or
//! `path_miss`) it runs no benchmark but looks the bench's 1 024 requests
//! of that kind up 100 times each (`GWCORE_TABLE_LOOP_ROUNDS` to change),
//! in [`lookups`], for a run under callgrind that counts only the
//! lookups:
//!
//! ```text
//! GWCORE_TABLE_LOOP=hit/50000 valgrind --tool=callgrind \
//!   --toggle-collect='*lookups*' --cache-sim=yes <target>/release/deps/table-<hash>
//! ```
//!
//! (instructions per lookup: the `Ir` total over 102 400).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group};
use gwcore::attachments::{AttachedRoute, RouteRules};
use gwcore::table::{RequestHead, Table, path::normalize};
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

/// One route of a Gateway of `n` routes changed back and forth (its first
/// path edited), carried to the compiled table with [`Table::update`], as
/// the proxy does on a reload or a watch event: the cost must not grow with
/// `n` (compare `compile/n`, a recompilation of the whole table).
fn incremental(c: &mut Criterion) {
    let mut g = c.benchmark_group("incremental");
    for n in [1_000, 10_000, 50_000] {
        let a = routing(n);
        let mut b2 = a.clone();
        let routes = &mut b2.listeners[0].routes;
        let mut route = AttachedRoute::clone(&routes[n / 2]);
        let RouteRules::Http(rules) = &mut route.rules else {
            unreachable!("benchmark routes are HTTPRoutes")
        };
        let path = Arc::make_mut(rules)[0].matches[0]
            .path
            .as_mut()
            .expect("benchmark matches have a path");
        path.value = Some("/changed".into());
        routes.insert(Arc::new(route));
        let mut table = Arc::new(Table::compile(&a));
        let mut flip = false;
        g.bench_function(BenchmarkId::new("change_route", n), |b| {
            b.iter(|| {
                flip = !flip;
                let next = table.update(black_box(if flip { &b2 } else { &a }));
                // Swapped in as the proxy does: the previous table is
                // dropped (its unshared parts freed) here.
                table = Arc::new(next);
            })
        });
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

/// Each of `reqs` looked up `rounds` times: the loop callgrind counts.
#[inline(never)]
fn lookups(table: &Table, reqs: &[RequestHead], rounds: usize) -> usize {
    let mut found = 0;
    for _ in 0..rounds {
        for r in reqs {
            found += usize::from(table.find(black_box(r)).matched.is_some());
        }
    }
    found
}

/// The `GWCORE_TABLE_LOOP` run (see the module's documentation).
fn lookup_loop(spec: &str) {
    let (kind, n) = spec
        .split_once('/')
        .and_then(|(k, n)| Some((k, n.parse::<usize>().ok()?)))
        .unwrap_or_else(|| panic!("GWCORE_TABLE_LOOP={spec}: expected <kind>/<routes>"));
    let rounds: usize = std::env::var("GWCORE_TABLE_LOOP_ROUNDS")
        .ok()
        .map(|r| r.parse().expect("GWCORE_TABLE_LOOP_ROUNDS: a number"))
        .unwrap_or(100);
    let r = routing(n);
    let table = Table::compile(&r);
    let reqs = match kind {
        "hit" => hits(&r, 1024),
        "host_miss" => host_misses(1024),
        "path_miss" => path_misses(&r, 1024),
        other => panic!("GWCORE_TABLE_LOOP={spec}: unknown kind {other}"),
    };
    let found = lookups(&table, &reqs, rounds);
    println!(
        "{kind}/{n}: {} lookups, {found} matched",
        reqs.len() * rounds
    );
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    targets = compile, find, incremental, normalizer
}

fn main() {
    if let Ok(spec) = std::env::var("GWCORE_TABLE_LOOP") {
        lookup_loop(&spec);
        return;
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
