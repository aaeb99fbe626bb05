//! Heap bytes held by the incremental engine (objects, indexes, statuses and
//! routing input), per route, on the generated clusters of `gwcore::scale`
//! (run with `cargo bench -p gwcore-benches --bench engine_size`; set
//! `ENGINE_SIZE_ROUTES=5000` for other route counts, such as a short run
//! under `valgrind --tool=dhat` that breaks the bytes down by where they
//! were allocated).

use std::alloc::System;

use gwcore::Snapshot;
use gwcore::engine::{ComputeOptions, Engine};
use gwcore::scale::{ScaleSpec, generate};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

/// The most the engine may hold per route beyond the objects themselves
/// (statuses, routing input, dependency indexes), in bytes, at 10 000
/// routes and more. Measured on 2026-12-07: 4 262 and 4 138 at 10 000 and
/// 50 000 routes; 7 495 and 7 366 before a route's dependency sets became
/// exact Vecs. A run above it fails, so that a change which grows the
/// per-route state shows here.
const ENGINE_BUDGET_PER_ROUTE: i64 = 4_600;

/// The most the snapshot's objects may take per route, in bytes, at
/// 10 000 routes and more. Measured on 2026-12-08: 1 925 and 1 741 at
/// 10 000 and 50 000 routes; 4 662 and 4 420 while every `Object` had a
/// Gateway's room (744 bytes), every HTTPRoute rule a session
/// persistence's (544) and `gwcore gen` left Vecs room for four. A run
/// above it fails, so that a model type growing inline shows here.
const OBJECTS_BUDGET_PER_ROUTE: i64 = 2_300;

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() {
    let counts: Vec<usize> = match std::env::var("ENGINE_SIZE_ROUTES") {
        Ok(v) => v
            .split(',')
            .map(|n| {
                n.trim().parse().unwrap_or_else(|e| {
                    panic!("ENGINE_SIZE_ROUTES={v:?}: {n:?} is not a count: {e}")
                })
            })
            .collect(),
        Err(_) => vec![10_000, 50_000],
    };
    for n in counts {
        let spec = ScaleSpec {
            routes: n,
            ..ScaleSpec::default()
        };
        let opts = ComputeOptions::new(spec.controller_name.clone(), "2026-01-01T00:00:00Z");
        let region = Region::new(GLOBAL);
        let objects = Snapshot::from_objects(generate(&spec));
        let after_objects = region.change();
        let engine = Engine::from_snapshot(objects, opts);
        let stats = region.change();
        let live = |s: stats_alloc::Stats| s.bytes_allocated as i64 - s.bytes_deallocated as i64;
        let objects_bytes = live(after_objects);
        let total = live(stats);
        println!(
            "engine_size/{n}: {total} bytes in all, {} bytes per route ({} of them the objects themselves)",
            total / n as i64,
            objects_bytes / n as i64
        );
        let beyond_objects = (total - objects_bytes) / n as i64;
        assert!(
            n < 10_000 || objects_bytes / n as i64 <= OBJECTS_BUDGET_PER_ROUTE,
            "engine_size/{n}: the objects take {} bytes per route, over the budget of \
             {OBJECTS_BUDGET_PER_ROUTE}",
            objects_bytes / n as i64
        );
        assert!(
            n < 10_000 || beyond_objects <= ENGINE_BUDGET_PER_ROUTE,
            "engine_size/{n}: the engine holds {beyond_objects} bytes per route beyond the \
             objects, over the budget of {ENGINE_BUDGET_PER_ROUTE}"
        );
        drop(engine);
    }
}
