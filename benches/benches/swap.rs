//! The proxy's configuration swap (`Config::build_next`) in the shape of
//! Kubernetes mode (issue 17, "new route -> first 200"): the controller
//! keeps its own copies of the objects and hands the proxy a snapshot of
//! them, which shares no object with the proxy's engine until the engine
//! takes it over. Routes of `gwcore gen` on one Gateway.
//!
//! - `one_route/N`: one route's path changed in the controller's objects,
//!   then the next configuration built from the previous one.
//! - `status_echo/N`: every route's status written back (the computed
//!   status, a new resourceVersion), as the API server echoes a burst of
//!   status writes, then the next configuration built.
//! - `one_route_after_echo/N`: `one_route` once the echoes were taken.
//!
//! Run: `cargo bench -p gwcore-benches --bench swap`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use gwcore::Snapshot;
use gwcore::model::{Kind, Object, ObjectKey};
use gwcore::scale::{ScaleSpec, generate};
use gwcore_proxy::config::{BuildOptions, Config};

/// As `gwcore serve --kubernetes` builds: the controller's engine writes
/// the statuses, the proxy's computes routing only.
fn options() -> BuildOptions {
    let mut opts = BuildOptions::new("gwcore.dev/gateway-controller", "2026-01-01T00:00:00Z");
    opts.routing_only = true;
    opts
}

/// The controller's side: its own objects, and what it hands the proxy.
struct Controller {
    objects: Snapshot,
    route: ObjectKey,
    turn: u64,
    generation: u64,
}

impl Controller {
    /// Changes one route's path (back and forth).
    fn edit_route(&mut self) {
        self.turn += 1;
        let turn = self.turn;
        let Some(Object::HttpRoute(r)) = self.objects.get_mut(&self.route) else {
            panic!("the route is there")
        };
        let path = r.spec.rules[0].matches[0]
            .path
            .as_mut()
            .expect("gen writes a path match");
        path.value = Some(format!("/edited-{}", turn % 2));
        r.metadata.generation = Some(turn as i64 + 1);
    }

    /// Writes `statuses` of every route back, each with a new
    /// resourceVersion.
    fn echo_routes(&mut self, config: &Config) {
        self.turn += 1;
        for (k, s) in config.computed.statuses.iter() {
            if k.kind == Kind::HttpRoute {
                self.objects.set_status(k, s.clone());
                if let Some(o) = self.objects.get_mut(k) {
                    o.meta_mut().resource_version = Some(format!("{}", self.turn));
                }
            }
        }
    }

    /// Builds the next configuration from `config` and the controller's
    /// objects; returns the time the build took.
    fn swap(&mut self, config: &mut Config) -> Duration {
        self.generation += 1;
        let next = self.objects.clone();
        let t = Instant::now();
        let built = Config::build_next(
            Some(config),
            self.generation,
            next,
            Vec::new(),
            &options(),
            &BTreeMap::new(),
        );
        let spent = t.elapsed();
        // The previous configuration is dropped once no request holds it:
        // not part of the swap.
        drop(std::mem::replace(config, built));
        spent
    }
}

fn swap(c: &mut Criterion) {
    for routes in [10_000, 50_000] {
        let spec = ScaleSpec {
            routes,
            gateways: 1,
            ..ScaleSpec::default()
        };
        let objects = generate(&spec);
        let route = objects
            .iter()
            .find(|o| o.key().kind == Kind::HttpRoute)
            .expect("gen makes routes")
            .key();
        // Separate copies: the proxy's first snapshot and the controller's.
        let mut config = Config::build(
            1,
            Snapshot::from_objects(objects.iter().cloned()),
            Vec::new(),
            &options(),
            &BTreeMap::new(),
        );
        let mut ctl = Controller {
            objects: Snapshot::from_objects(objects),
            route,
            turn: 0,
            generation: 1,
        };
        let mut g = c.benchmark_group("swap");
        g.sample_size(10).measurement_time(Duration::from_secs(2));
        g.bench_function(format!("one_route/{routes}"), |b| {
            b.iter_custom(|n| {
                (0..n)
                    .map(|_| {
                        ctl.edit_route();
                        ctl.swap(&mut config)
                    })
                    .sum()
            })
        });
        g.bench_function(format!("status_echo/{routes}"), |b| {
            b.iter_custom(|n| {
                (0..n)
                    .map(|_| {
                        ctl.echo_routes(&config);
                        ctl.swap(&mut config)
                    })
                    .sum()
            })
        });
        g.bench_function(format!("one_route_after_echo/{routes}"), |b| {
            b.iter_custom(|n| {
                (0..n)
                    .map(|_| {
                        ctl.edit_route();
                        ctl.swap(&mut config)
                    })
                    .sum()
            })
        });
        g.finish();
    }
}

criterion_group!(benches, swap);
criterion_main!(benches);
