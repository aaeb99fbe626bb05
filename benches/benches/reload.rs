//! File-mode reload at 50 000 routes (issue 17 item 2): one route's
//! document edited in the 33 MB manifest of `gwcore gen --routes 50000`,
//! to what the provider hands on, and on to the next `Config`.
//!
//! - `read/full`: what a reload did before: every file read and parsed
//!   (`read_manifests_extended`), a whole new snapshot.
//! - `read/incremental`: `FileProvider::reload` (stat, read the changed
//!   file, hash its documents, parse the changed one) and the served
//!   snapshot with the changed object put in, then the commit.
//! - `config/full` and `config/incremental`: the same, then
//!   `Config::build_next` from the served configuration (the engine and
//!   table update, which the engine's own benches measure apart).
//!
//! Writing the file is not timed. Run:
//! `cargo bench -p gwcore-benches --bench reload`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use gwcore::Snapshot;
use gwcore::load::documents::Changes;
use gwcore::scale::{ScaleSpec, generate};
use gwcore_proxy::config::{BuildOptions, Config};
use gwcore_proxy::files::read_manifests_extended;
use gwcore_proxy::provider::FileProvider;

const ROUTES: usize = 50_000;

/// The manifest, and the same with one route's path changed.
fn manifests() -> (String, String) {
    let spec = ScaleSpec {
        routes: ROUTES,
        ..ScaleSpec::default()
    };
    let mut text = String::new();
    for o in generate(&spec) {
        let doc = serde_norway::to_string(&o.to_manifest()).expect("plain data serializes");
        text.push_str("---\n");
        text.push_str(doc.trim_end());
        text.push('\n');
    }
    let route = text
        .find(&format!("  name: route-{}\n", ROUTES / 2))
        .expect("the middle route");
    let at = route + text[route..].find("value: /svc-").expect("a path match");
    let edited = format!("{}value: /edited-svc-{}", &text[..at], &text[at + 12..]);
    (text, edited)
}

fn write(path: &Path, text: &str) {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).expect("temp dir writable");
    std::fs::rename(&tmp, path).expect("temp dir writable");
}

fn options() -> BuildOptions {
    BuildOptions::new("gwcore.dev/gateway-controller", "2026-01-01T00:00:00Z")
}

struct Setup {
    file: PathBuf,
    texts: [String; 2],
    /// Which text the file holds.
    turn: usize,
}

impl Setup {
    /// Writes the other text.
    fn flip(&mut self) {
        self.turn = 1 - self.turn;
        write(&self.file, &self.texts[self.turn]);
    }
}

fn full_read(paths: &[PathBuf]) -> (Snapshot, Vec<gwcore::load::Diagnostic>) {
    let loaded = read_manifests_extended(paths, &Default::default());
    assert!(!loaded.has_errors());
    let snapshot = Snapshot::from_objects(loaded.objects.into_iter().map(|(o, _)| o));
    (snapshot, loaded.diagnostics)
}

/// The provider's reading applied to `served`.
fn incremental_read(
    provider: &mut FileProvider,
    served: &Snapshot,
) -> (Snapshot, Vec<gwcore::load::Diagnostic>) {
    let reading = provider.reload();
    assert!(!reading.has_errors());
    let Changes::Some(changes) = reading.changes() else {
        panic!("one route changed: {:?}", reading.changes())
    };
    assert_eq!((changes.len(), reading.documents_parsed()), (1, 1));
    let mut next = served.clone();
    for (key, object) in changes {
        match object {
            Some(o) => next.insert(o.clone()),
            None => next.remove(key),
        };
    }
    let diagnostics = reading.diagnostics().to_vec();
    provider.commit(reading);
    (next, diagnostics)
}

fn reload(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("gwcore-reload-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir writable");
    let file = dir.join("big.yaml");
    let (text, edited) = manifests();
    eprintln!("{} bytes, {ROUTES} routes", text.len());
    write(&file, &text);
    let paths = vec![file.clone()];
    let mut setup = Setup {
        file,
        texts: [text, edited],
        turn: 0,
    };
    let mut provider = FileProvider::new(paths.clone());
    let first = provider.reload();
    let (snapshot, diagnostics) = full_read(&paths);
    provider.commit(first);
    let none = BTreeMap::new();
    let mut config = Config::build(1, snapshot, diagnostics, &options(), &none);

    let mut g = c.benchmark_group(format!("reload/{ROUTES}"));
    g.sample_size(10).measurement_time(Duration::from_secs(1));
    g.bench_function("read/full", |b| {
        b.iter_custom(|n| {
            after_each_edit(&mut setup, n, || {
                std::hint::black_box(full_read(&paths));
            })
        })
    });
    // The provider's state must follow the file: read what the full reads
    // left behind.
    incremental_read_any(&mut provider);
    g.bench_function("read/incremental", |b| {
        b.iter_custom(|n| {
            after_each_edit(&mut setup, n, || {
                std::hint::black_box(incremental_read(&mut provider, &config.snapshot));
            })
        })
    });
    let mut generation = 1;
    g.bench_function("config/full", |b| {
        b.iter_custom(|n| {
            after_each_edit(&mut setup, n, || {
                let read = full_read(&paths);
                next_config(&mut config, &mut generation, read);
            })
        })
    });
    incremental_read_any(&mut provider);
    g.bench_function("config/incremental", |b| {
        b.iter_custom(|n| {
            after_each_edit(&mut setup, n, || {
                let read = incremental_read(&mut provider, &config.snapshot);
                next_config(&mut config, &mut generation, read);
            })
        })
    });
    g.finish();
    let _ = std::fs::remove_dir_all(&dir);
}

/// The time `work` takes after each of `n` edits of the route's document
/// (the edit itself not counted).
fn after_each_edit(setup: &mut Setup, n: u64, mut work: impl FnMut()) -> Duration {
    let mut spent = Duration::ZERO;
    for _ in 0..n {
        setup.flip();
        let t = Instant::now();
        work();
        spent += t.elapsed();
    }
    spent
}

/// Builds the next configuration from `config` and what a read gave, as a
/// reload does.
fn next_config(
    config: &mut Config,
    generation: &mut u64,
    (snapshot, diagnostics): (Snapshot, Vec<gwcore::load::Diagnostic>),
) {
    *generation += 1;
    *config = Config::build_next(
        Some(config),
        *generation,
        snapshot,
        diagnostics,
        &options(),
        &BTreeMap::new(),
    );
}

/// Brings the provider up to the file, whatever changed.
fn incremental_read_any(provider: &mut FileProvider) {
    let reading = provider.reload();
    provider.commit(reading);
}

criterion_group!(benches, reload);
criterion_main!(benches);
