//! Profiling aid: full compute on a generated cluster
//! (`cargo run --release -p gwcore --example profile_compute -- 10000`).
fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(10_000);
    let spec = gwcore::scale::ScaleSpec {
        routes: n,
        ..Default::default()
    };
    let snap = gwcore::Snapshot::from_objects(gwcore::scale::generate(&spec));
    let opts =
        gwcore::engine::ComputeOptions::new(spec.controller_name.clone(), "2026-01-01T00:00:00Z");
    let t = std::time::Instant::now();
    for _ in 0..5 {
        std::hint::black_box(gwcore::engine::compute(&snap, &opts));
    }
    eprintln!("{:?} per compute", t.elapsed() / 5);
}
