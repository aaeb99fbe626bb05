//! Properties of the routing table on generated tables and requests: the
//! fast matcher agrees with the reference matcher, the answer does not
//! depend on the order routes are given in, and path normalization is a
//! normal form; requests aimed at a routing's routes ([`requests_for`])
//! mostly match, and the table agrees with the reference on them.
#![cfg(feature = "proptest")]

use gwcore::Snapshot;
use gwcore::engine::compute;
use gwcore::table::{RequestHead, Table, path::normalize};
use gwcore::testing::snapshot::{objects, options};
use gwcore::testing::table::{Outcome, reference_find, request, requests_for, routing};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::TestRunner;

/// Matched and total requests, by where they come from.
#[derive(Debug, Default)]
struct Rate {
    matched: usize,
    total: usize,
}

impl Rate {
    fn add(&mut self, outcome: &Outcome) {
        self.total += 1;
        self.matched += usize::from(matches!(outcome, Outcome::Matched { .. }));
    }

    fn value(&self) -> f64 {
        self.matched as f64 / self.total.max(1) as f64
    }
}

/// Draws `n` requests from `strategy`, routes them with the table and the
/// reference (which must agree) and counts the matches.
fn route_all(
    runner: &mut TestRunner,
    r: &gwcore::attachments::GatewayRouting,
    table: &Table,
    strategy: impl Strategy<Value = RequestHead>,
    n: usize,
    rate: &mut Rate,
) {
    for _ in 0..n {
        let head = strategy.new_tree(runner).unwrap().current();
        let slow = reference_find(r, &head);
        assert_eq!(
            Outcome::of(&table.find(&head)),
            slow,
            "Gateway {}, request {head:?}",
            r.gateway
        );
        rate.add(&slow);
    }
}

/// On the routing the engine computes for generated clusters (Gateways
/// with at least one route), at least half of the requests aimed at the
/// routes match a rule, where few random requests do; the table agrees
/// with the reference on all of them.
#[test]
fn aimed_requests_mostly_match_on_clusters() {
    let mut runner = TestRunner::deterministic();
    let (mut aimed, mut random) = (Rate::default(), Rate::default());
    let mut gateways = 0;
    for _ in 0..300 {
        let objs = objects().new_tree(&mut runner).unwrap().current();
        let out = compute(
            &Snapshot::from_objects(objs),
            &options("2026-01-01T00:00:00Z"),
        );
        for r in out.routing.values() {
            if r.listeners.iter().all(|l| l.routes.is_empty()) {
                continue;
            }
            gateways += 1;
            let table = Table::compile(r);
            route_all(&mut runner, r, &table, requests_for(r), 20, &mut aimed);
            route_all(&mut runner, r, &table, request(), 20, &mut random);
        }
    }
    eprintln!(
        "clusters: {gateways} Gateways with routes; aimed requests match {:.1} % ({}/{}), random ones {:.1} % ({}/{})",
        100.0 * aimed.value(),
        aimed.matched,
        aimed.total,
        100.0 * random.value(),
        random.matched,
        random.total
    );
    assert!(gateways >= 50, "only {gateways} Gateways with routes");
    assert!(aimed.value() >= 0.5, "aimed: {aimed:?}");
    assert!(aimed.value() < 0.95, "some aimed requests miss: {aimed:?}");
    assert!(random.value() < 0.2, "random: {random:?}");
}

/// The same on [`routing`]'s tables (regular expressions, headers, query
/// parameters, gRPC rules, overlapping listeners).
#[test]
fn aimed_requests_mostly_match_on_generated_tables() {
    let mut runner = TestRunner::deterministic();
    let (mut aimed, mut random) = (Rate::default(), Rate::default());
    for _ in 0..500 {
        let r = routing().new_tree(&mut runner).unwrap().current();
        if r.listeners.iter().all(|l| l.routes.is_empty()) {
            continue;
        }
        let table = Table::compile(&r);
        route_all(&mut runner, &r, &table, requests_for(&r), 20, &mut aimed);
        route_all(&mut runner, &r, &table, request(), 20, &mut random);
    }
    eprintln!(
        "tables: aimed requests match {:.1} % ({}/{}), random ones {:.1} % ({}/{})",
        100.0 * aimed.value(),
        aimed.matched,
        aimed.total,
        100.0 * random.value(),
        random.matched,
        random.total
    );
    assert!(aimed.value() >= 0.5, "aimed: {aimed:?}");
    assert!(aimed.value() > random.value(), "random: {random:?}");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn fast_matcher_equals_reference(r in routing(), heads in prop::collection::vec(request(), 1..16)) {
        let table = Table::compile(&r);
        for head in &heads {
            let fast = Outcome::of(&table.find(head));
            let slow = reference_find(&r, head);
            prop_assert_eq!(fast, slow, "request {:?}", head);
        }
    }

    #[test]
    fn fast_matcher_equals_reference_on_aimed_requests(
        (r, heads) in routing().prop_flat_map(|r| {
            let heads = prop::collection::vec(requests_for(&r), 1..16);
            (Just(r), heads)
        }),
    ) {
        let table = Table::compile(&r);
        for head in &heads {
            prop_assert_eq!(Outcome::of(&table.find(head)), reference_find(&r, head), "request {:?}", head);
        }
    }

    #[test]
    fn route_order_does_not_matter(r in routing(), heads in prop::collection::vec(request(), 1..8), seed in any::<u64>()) {
        let table = Table::compile(&r);
        let mut shuffled = r.clone();
        for l in &mut shuffled.listeners {
            // A deterministic permutation from the seed.
            let mut routes: Vec<_> = l.routes.iter().cloned().collect();
            let n = routes.len();
            for i in (1..n).rev() {
                let j = (seed.wrapping_mul(i as u64 + 7) % (i as u64 + 1)) as usize;
                routes.swap(i, j);
            }
            l.routes = routes.into();
        }
        let other = Table::compile(&shuffled);
        for head in &heads {
            prop_assert_eq!(Outcome::of(&table.find(head)), Outcome::of(&other.find(head)));
        }
    }

    #[test]
    fn normalized_paths_are_a_normal_form(segs in prop::collection::vec("[a-c.%/2Ff~]{0,4}", 0..6)) {
        let raw = format!("/{}", segs.join("/"));
        if let Ok(once) = normalize(&raw) {
            let once = once.into_owned();
            prop_assert_eq!(normalize(&once).map(|c| c.into_owned()), Ok(once.clone()), "idempotent");
            prop_assert!(once.starts_with('/'));
            prop_assert!(!once.contains("//"), "{}", once);
            for seg in once.split('/') {
                prop_assert!(seg != "." && seg != "..", "{}", once);
            }
        }
    }
}
