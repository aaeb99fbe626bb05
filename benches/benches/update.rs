//! One route change on one Gateway of N routes, carried all the way to
//! swapped routing tables (issue 17: "one route change in a Gateway of N
//! routes updates the compiled table in time independent of N"). The
//! generated cluster (`gwcore::scale`, fixed seed) has a single Gateway and
//! one route hostname per ten routes, so that the hostname bucket a change
//! touches is the same size at every N: what grows with N is only what an
//! update should not touch.
//!
//! - `engine_apply`: the engine's reaction to one edited HTTPRoute (its
//!   [`Delta`]);
//! - `tables_update`: [`Tables::update`] with that delta;
//! - `apply_to_tables`: both, as a data plane does on a change;
//! - `one_hostname`: `apply_to_tables` with every route under one
//!   hostname, so the bucket a change touches holds all N routes (as in
//!   `benches/k8s/first200`, whose routes have no hostname): the bucket is
//!   rebuilt, O(N), but must not be worse.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gwcore::Snapshot;
use gwcore::engine::{ComputeOptions, Delta, Engine};
use gwcore::model::{Kind, Object};
use gwcore::scale::{ScaleSpec, generate};
use gwcore::table::Tables;

/// With `--features mimalloc`, the allocator of the `gwcore` binary.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SIZES: [usize; 3] = [1_000, 10_000, 50_000];
const NOW: &str = "2026-01-01T00:00:00Z";

/// An engine loaded with `routes` HTTPRoutes on one Gateway, and a route of
/// it with the edited copy an iteration flips to and back.
fn setup(routes: usize, hostnames: usize) -> (Engine, Object, Object) {
    let spec = ScaleSpec {
        routes,
        gateways: 1,
        hostnames,
        ..ScaleSpec::default()
    };
    let objs = generate(&spec);
    let opts = ComputeOptions::new(spec.controller_name.clone(), NOW);
    // Route 700 is in a namespace allowed on the Gateway's listener.
    let a = objs
        .iter()
        .find(|o| o.kind() == Kind::HttpRoute && o.meta().name == "route-700")
        .cloned()
        .expect("generated route");
    let mut b = a.clone();
    if let Object::HttpRoute(r) = &mut b {
        r.spec.rules[0].matches[0]
            .path
            .as_mut()
            .expect("generated routes have paths")
            .value = Some("/changed".into());
    }
    let engine = Engine::from_snapshot(Snapshot::from_objects(objs), opts);
    (engine, a, b)
}

fn update(c: &mut Criterion) {
    let mut g = c.benchmark_group("update");
    for n in SIZES {
        let (base, a, b) = setup(n, n / 10);

        let mut e = base.clone();
        let mut flip = false;
        g.bench_function(BenchmarkId::new("engine_apply", n), |bn| {
            bn.iter(|| {
                flip = !flip;
                black_box(e.apply(if flip { b.clone() } else { a.clone() }))
            })
        });

        // The two deltas of the flip, computed once.
        let mut e = base.clone();
        let to_b: Delta = e.apply(b.clone());
        let to_a: Delta = e.apply(a.clone());
        assert_eq!(to_b.routing.len(), 1, "the edit changes one Gateway");
        let mut tables = Tables::compile(e.routing());
        let mut flip = false;
        g.bench_function(BenchmarkId::new("tables_update", n), |bn| {
            bn.iter(|| {
                flip = !flip;
                tables = tables.update(if flip { &to_b.routing } else { &to_a.routing });
                black_box(&tables);
            })
        });

        let mut e = base.clone();
        let mut tables = Tables::compile(e.routing());
        let mut flip = false;
        g.bench_function(BenchmarkId::new("apply_to_tables", n), |bn| {
            bn.iter(|| {
                flip = !flip;
                let d = e.apply(if flip { b.clone() } else { a.clone() });
                tables = tables.update(&d.routing);
                black_box(&tables);
            })
        });
    }
    for n in [1_000, 10_000] {
        let (mut e, a, b) = setup(n, 1);
        let mut tables = Tables::compile(e.routing());
        let mut flip = false;
        g.bench_function(BenchmarkId::new("one_hostname", n), |bn| {
            bn.iter(|| {
                flip = !flip;
                let d = e.apply(if flip { b.clone() } else { a.clone() });
                tables = tables.update(&d.routing);
                black_box(&tables);
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = update
}
criterion_main!(benches);
