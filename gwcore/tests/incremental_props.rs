//! The incremental engine ends where a full computation of the final
//! snapshot does, after any sequence of applies, deletes and status echoes.
#![cfg(feature = "proptest")]

use gwcore::Snapshot;
use gwcore::engine::{Delta, Engine, compute};
use gwcore::model::Object;
use gwcore::testing::snapshot::{objects, options};
use proptest::prelude::*;

const NOW: &str = "2026-01-01T00:00:00Z";

#[derive(Debug, Clone)]
enum Op {
    Apply(usize),
    Delete(usize),
    /// Write a computed status back into its object, as the API server's
    /// status subresource does, and apply that.
    EchoStatus(usize),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<usize>().prop_map(Op::Apply),
        1 => any::<usize>().prop_map(Op::Delete),
        1 => any::<usize>().prop_map(Op::EchoStatus),
    ]
}

fn check_delta(
    before: &gwcore::engine::Computed,
    after: &gwcore::engine::Computed,
    delta: &Delta,
) -> Result<(), TestCaseError> {
    // The delta names exactly the statuses that changed.
    let keys: std::collections::BTreeSet<_> = before
        .statuses
        .keys()
        .chain(after.statuses.keys())
        .collect();
    for k in keys {
        let changed = before.statuses.get(k) != after.statuses.get(k);
        match delta.statuses.get(k) {
            Some(s) => prop_assert_eq!(
                s.as_ref(),
                after.statuses.get(k),
                "delta for {} is not the new status",
                k
            ),
            None => prop_assert!(!changed, "{} changed but is not in the delta", k),
        }
    }
    for (k, r) in &delta.routing {
        prop_assert_eq!(
            r.as_deref(),
            after.routing.get(k),
            "routing delta for {}",
            k
        );
    }
    for (k, r) in &after.routing {
        if before.routing.get(k) != Some(r) {
            prop_assert!(
                delta.routing.contains_key(k),
                "routing of {} changed but is not in the delta",
                k
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn incremental_equals_full(a in objects(), b in objects(), ops in proptest::collection::vec(op(), 1..40)) {
        let opts = options(NOW);
        let pool: Vec<Object> = a.iter().chain(b.iter()).cloned().collect();
        let mut engine = Engine::from_snapshot(Snapshot::from_objects(a), opts.clone());
        // The deltas absorbed in order say what the whole sequence changed
        // (what an adapter that batches changes acts on).
        let initial = engine.computed();
        let mut total = Delta::default();
        for op in ops {
            let before = engine.computed();
            let delta = match op {
                Op::Apply(i) => engine.apply(pool[i % pool.len()].clone()),
                Op::Delete(i) => engine.delete(&pool[i % pool.len()].key()),
                Op::EchoStatus(i) => {
                    let statuses = engine.statuses().clone();
                    if statuses.is_empty() {
                        continue;
                    }
                    let (k, s) = statuses.iter().nth(i % statuses.len()).expect("non-empty");
                    let mut snap = engine.snapshot().clone();
                    snap.set_status(k, s.clone());
                    let obj = snap.get(k).expect("status of a present object").clone();
                    engine.apply(obj)
                }
            };
            let after = engine.computed();
            check_delta(&before, &after, &delta)?;
            total.absorb(delta);
            let full = compute(engine.snapshot(), &opts);
            prop_assert_eq!(&after, &full);
        }
        check_delta(&initial, &engine.computed(), &total)?;
    }

    /// A change that alters no status produces no status delta.
    #[test]
    fn reapplying_an_object_is_quiet(a in objects(), i in any::<usize>()) {
        let opts = options(NOW);
        let mut engine = Engine::from_snapshot(Snapshot::from_objects(a.clone()), opts);
        let delta = engine.apply(a[i % a.len()].clone());
        prop_assert!(delta.is_empty(), "{:?}", delta);
    }
}
