//! The attachment engine at scale (issue 6): full compute, and the
//! incremental engine's reaction to one change, on generated clusters of 10
//! Gateways, 1 000 namespaces and 10 000 / 50 000 HTTPRoutes with mixed
//! matches and cross-namespace backends (`gwcore::scale`, fixed seed).

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use gwcore::Snapshot;
use gwcore::engine::{ComputeOptions, Engine, compute};
use gwcore::model::{Kind, Object, ObjectKey};
use gwcore::scale::{HOT_GRANT, HOT_NAMESPACE, ScaleSpec, generate};
use gwcore::table::Tables;

/// With `--features mimalloc`, the allocator of the `gwcore` binary.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SIZES: [usize; 2] = [10_000, 50_000];
const NOW: &str = "2026-01-01T00:00:00Z";

fn setup(routes: usize) -> (ScaleSpec, Vec<Object>, ComputeOptions) {
    let spec = ScaleSpec {
        routes,
        ..ScaleSpec::default()
    };
    let objs = generate(&spec);
    let opts = ComputeOptions::new(spec.controller_name.clone(), NOW);
    (spec, objs, opts)
}

fn full(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_full");
    g.sample_size(10);
    for n in SIZES {
        let (_, objs, opts) = setup(n);
        let snap = Snapshot::from_objects(objs);
        g.bench_with_input(BenchmarkId::from_parameter(n), &snap, |b, snap| {
            b.iter(|| compute(black_box(snap), &opts))
        });
    }
    g.finish();
}

fn route_of(objs: &[Object], name: &str) -> Object {
    objs.iter()
        .find(|o| o.kind() == Kind::HttpRoute && o.meta().name == name)
        .cloned()
        .expect("generated route")
}

fn incremental(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_incremental");
    for n in SIZES {
        let (_, objs, opts) = setup(n);
        let base = Engine::from_snapshot(Snapshot::from_objects(objs.clone()), opts.clone());

        // One route added then deleted (each iteration does both: report / 2).
        let mut new_route = route_of(&objs, "route-500");
        new_route.meta_mut().name = "route-new".into();
        let mut e = base.clone();
        g.bench_function(BenchmarkId::new("add_and_delete_route", n), |b| {
            b.iter(|| {
                black_box(e.apply(new_route.clone()));
                black_box(e.delete(&new_route.key()));
            })
        });

        // One route changed back and forth (a path edit).
        let a = route_of(&objs, "route-700");
        let mut b2 = a.clone();
        if let Object::HttpRoute(r) = &mut b2 {
            r.spec.rules[0].matches[0]
                .path
                .as_mut()
                .expect("path")
                .value = Some("/changed".into());
        }
        let mut e = base.clone();
        let mut flip = false;
        g.bench_function(BenchmarkId::new("change_route", n), |b| {
            b.iter(|| {
                flip = !flip;
                black_box(e.apply(if flip { b2.clone() } else { a.clone() }))
            })
        });

        // The same change carried on to compiled routing tables, as the
        // proxy does on a reload: the engine's delta, then the table of the
        // one Gateway it names compiled again (the other nine are shared).
        let mut e = base.clone();
        let mut tables = Tables::compile(&e.computed().routing);
        let mut flip = false;
        g.bench_function(BenchmarkId::new("change_route_to_tables", n), |b| {
            b.iter(|| {
                flip = !flip;
                let d = e.apply(if flip { b2.clone() } else { a.clone() });
                debug_assert_eq!(d.routing.len(), 1);
                tables = tables.update(&d.routing);
                black_box(&tables);
            })
        });

        // A namespace label flip detaching then attaching 100 routes.
        let ns_key = ObjectKey::new(Kind::Namespace, "", HOT_NAMESPACE);
        let labelled = base
            .snapshot()
            .get(&ns_key)
            .cloned()
            .expect("hot namespace");
        let mut unlabelled = labelled.clone();
        unlabelled.meta_mut().labels.remove("gateway-access");
        let mut e = base.clone();
        let mut flip = false;
        g.bench_function(
            BenchmarkId::new("namespace_label_flip_100_routes", n),
            |b| {
                b.iter(|| {
                    flip = !flip;
                    let d = e.apply(if flip {
                        unlabelled.clone()
                    } else {
                        labelled.clone()
                    });
                    debug_assert!(d.statuses.len() >= 100);
                    black_box(d)
                })
            },
        );

        // A ReferenceGrant revoked and restored, affecting 100 routes.
        let grant_key = ObjectKey::new(Kind::ReferenceGrant, HOT_GRANT.0, HOT_GRANT.1);
        let grant = base.snapshot().get(&grant_key).cloned().expect("hot grant");
        let mut e = base.clone();
        g.bench_function(
            BenchmarkId::new("grant_revoke_and_restore_100_routes", n),
            |b| {
                b.iter(|| {
                    black_box(e.delete(&grant_key));
                    black_box(e.apply(grant.clone()));
                })
            },
        );
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = full, incremental
}
criterion_main!(benches);
