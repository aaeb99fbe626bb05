//! Heap bytes held by a compiled table, per route, at 1 000 to 50 000
//! routes (run with `cargo bench -p gwcore-benches --bench table_size`).

use std::alloc::System;

use gwcore::table::Table;
use gwcore_benches::routing;
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

fn main() {
    for n in [1_000usize, 10_000, 50_000] {
        let r = routing(n);
        let region = Region::new(GLOBAL);
        let table = Table::compile(&r);
        let stats = region.change();
        // `realloc` is already counted in allocated/deallocated.
        let live = stats.bytes_allocated as i64 - stats.bytes_deallocated as i64;
        println!(
            "table_size/{n}: {live} bytes, {} bytes per route ({} live allocations per route)",
            live / n as i64,
            (stats.allocations as i64 - stats.deallocations as i64) / n as i64
        );
        drop(table);
    }
}
