//! A property-test harness for code that embeds gwcore: "my router agrees
//! with gwcore's reference matcher".
//!
//! `MyRouter` is the part of a custom proxy that turns the `http::Request`
//! its server hands it into a routing decision: it picks the Gateway's table
//! and builds the [`RequestHead`] from the request's parts. That glue is
//! where embedding goes wrong (Host versus `:authority`, ports, the TLS
//! server name), so the harness drives it with `gwcore::testing`'s
//! strategies and holds every answer to [`reference_find`], a plain scan of
//! every rule that shares no index with the table:
//!
//! 1. routing tables from [`routing()`] and requests from [`request()`];
//! 2. whole clusters from [`objects()`], through the engine, so the tables
//!    are the ones `compute` really produces; with random requests and
//!    with requests aimed at each Gateway's routes ([`requests_for`]),
//!    most of which match a rule (few random ones do).
//!
//! ```text
//! cargo run -p gwcore --features proptest --example proptest_harness
//! cargo test -p gwcore --features proptest --example proptest_harness
//! ```
//!
//! In your own crate, enable the strategies for tests only:
//! `gwcore = { version = "0.1", features = ["proptest"] }` under
//! `[dev-dependencies]`.

use std::collections::BTreeMap;

use gwcore::Snapshot;
use gwcore::attachments::GatewayRouting;
use gwcore::engine::compute;
use gwcore::model::{Object, ObjectKey};
use gwcore::table::{RequestHead, Table};
use gwcore::testing::snapshot::{objects, options};
use gwcore::testing::table::{Outcome, reference_find, request, requests_for, routing};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// The router of a custom proxy: one compiled table per Gateway.
struct MyRouter {
    tables: BTreeMap<ObjectKey, Table>,
}

impl MyRouter {
    fn new<'a>(routing: impl IntoIterator<Item = &'a GatewayRouting>) -> MyRouter {
        let tables = routing
            .into_iter()
            .map(|r| (r.gateway.clone(), Table::compile(r)))
            .collect();
        MyRouter { tables }
    }

    /// Routes a request that arrived on `port` of `gateway`, over TLS with
    /// server name `sni` when there is one.
    fn route(
        &self,
        gateway: &ObjectKey,
        port: u16,
        sni: Option<&str>,
        req: &http::Request<()>,
    ) -> Option<Outcome> {
        let table = self.tables.get(gateway)?;
        let (parts, ()) = req.clone().into_parts();
        let mut head = RequestHead::from_parts(port, &parts);
        if let Some(sni) = sni {
            head = head.with_sni(sni);
        }
        Some(Outcome::of(&table.find(&head)))
    }
}

/// The request a client would send for `head`: origin-form URI, `Host`
/// header, the same headers. `None` when the path cannot be normalized
/// (that request never reaches a router: the server answers 400).
fn client_request(head: &RequestHead) -> Option<http::Request<()>> {
    let mut target = head.path().ok()?.to_owned();
    if let Some(q) = head.query() {
        target.push('?');
        target.push_str(q);
    }
    let mut builder = http::Request::builder()
        .method(head.method().clone())
        .uri(target)
        .header(http::header::HOST, head.host());
    for (name, value) in head.headers() {
        builder = builder.header(name, value);
    }
    builder.body(()).ok()
}

/// Property 1: on any table and request, my router answers as the
/// reference matcher does.
fn agrees_on_tables(r: &GatewayRouting, head: &RequestHead) -> Result<(), TestCaseError> {
    let Some(req) = client_request(head) else {
        return Ok(());
    };
    let router = MyRouter::new([r]);
    let mine = router.route(&r.gateway, head.port(), head.sni(), &req);
    prop_assert_eq!(mine, Some(reference_find(r, head)));
    Ok(())
}

const NOW: &str = "2026-01-01T00:00:00Z";

/// Requests aimed at the routes of each Gateway of a cluster.
type Aimed = Vec<(ObjectKey, Vec<RequestHead>)>;

/// A generated cluster with requests aimed at each of its Gateways'
/// routes: the routing is computed here to aim at it (and again by the
/// property, as the embedder's code would).
fn cluster_and_aimed_requests() -> impl Strategy<Value = (Vec<Object>, Aimed)> {
    objects().prop_flat_map(|objs| {
        let out = compute(&Snapshot::from_objects(objs.clone()), &options(NOW));
        let aimed: Vec<_> = out
            .routing
            .iter()
            .map(|(gateway, r)| {
                (
                    Just(gateway.clone()),
                    prop::collection::vec(requests_for(r), 1..16),
                )
            })
            .collect();
        (Just(objs), aimed)
    })
}

/// Property 2: on the tables the engine computes for a generated cluster,
/// the same holds for every Gateway, on random requests and on those
/// aimed at that Gateway's routes.
fn agrees_on_clusters(
    objs: Vec<Object>,
    heads: &[RequestHead],
    aimed: &Aimed,
) -> Result<(), TestCaseError> {
    let snapshot = Snapshot::from_objects(objs);
    // With the strategies' extension kinds registered, as an embedder
    // runs the engine with its own (`gwcore::extension`).
    let out = compute(&snapshot, &options(NOW));
    let router = MyRouter::new(out.routing.values());
    for (gateway, r) in &out.routing {
        let mine = aimed.iter().filter(|(g, _)| g == gateway);
        for head in heads.iter().chain(mine.flat_map(|(_, h)| h)) {
            let Some(req) = client_request(head) else {
                continue;
            };
            let mine = router.route(gateway, head.port(), head.sni(), &req);
            prop_assert_eq!(mine, Some(reference_find(r, head)), "Gateway {}", gateway);
        }
    }
    Ok(())
}

/// Runs one property on 256 generated cases with a fresh runner; on failure,
/// prints the minimal failing input and exits 1.
fn check<S: Strategy>(
    name: &str,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) {
    // No regression file for a binary: the minimal input is printed instead.
    let mut runner = TestRunner::new(Config {
        cases: 256,
        failure_persistence: None,
        ..Config::default()
    });
    match runner.run(&strategy, test) {
        Ok(()) => println!("{name}: my router agrees with the reference matcher (256 cases)"),
        Err(e) => {
            eprintln!("{name}: {e}");
            std::process::exit(1);
        }
    }
}

fn main() {
    check("tables", (routing(), request()), |(r, head)| {
        agrees_on_tables(&r, &head)
    });
    check(
        "clusters",
        (
            cluster_and_aimed_requests(),
            prop::collection::vec(request(), 1..16),
        ),
        |((objs, aimed), heads)| agrees_on_clusters(objs, &heads, &aimed),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    proptest! {
        #![proptest_config(Config::with_cases(64))]

        #[test]
        fn my_router_agrees_on_tables(r in routing(), head in request()) {
            agrees_on_tables(&r, &head)?;
        }

        #[test]
        fn my_router_agrees_on_clusters(
            (objs, aimed) in cluster_and_aimed_requests(),
            heads in prop::collection::vec(request(), 1..16),
        ) {
            agrees_on_clusters(objs, &heads, &aimed)?;
        }
    }
}
