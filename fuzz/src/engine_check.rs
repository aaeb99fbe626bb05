//! The properties the `engine` fuzz target checks on one case: a pool of
//! objects, how many of them are loaded at once, then a sequence of applies,
//! deletes and status echoes.
//!
//! This file uses only gwcore and serde_json: `gwcore/tests/fuzz_regressions.rs`
//! includes it by path to replay the cases in `fuzz/regressions/engine/`.
//!
//! Properties (each failure panics with the step and the first difference):
//! 1. no panic;
//! 2. after every step, the incremental engine's output equals a full
//!    computation of its snapshot, and the step's delta names exactly what
//!    changed;
//! 3. the full computation is repeatable and independent of the order in
//!    which the objects reach an engine;
//! 4. every condition we write has `observedGeneration` equal to its
//!    object's `metadata.generation`, and only present objects get a status;
//! 5. once the statuses are written back into the objects (the API
//!    server's status subresource), a recomputation finds nothing more to
//!    write and routes the same (a fixed point: a controller does not flap).

use std::collections::BTreeSet;

use gwcore::Snapshot;
use gwcore::engine::{ComputeOptions, Computed, Delta, Engine, compute};
use gwcore::model::{Kind, Object};
use gwcore::status::{Condition, ObjectStatus};

/// Our controller name in every case.
pub(crate) const CONTROLLER: &str = "gwcore.dev/fuzz";
const NOW: &str = "2026-01-01T00:00:00Z";

/// One step of a case; indexes are taken modulo the pool size.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    /// Apply `objects[i]`.
    Apply(usize),
    /// Delete the object with the key of `objects[i]`.
    Delete(usize),
    /// Write the engine's `i`-th current status into its object and apply it.
    Echo(usize),
}

/// A pool of objects, the first `initial` of which are loaded at once, and
/// the steps applied after that.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Case {
    pub(crate) objects: Vec<Object>,
    pub(crate) initial: usize,
    pub(crate) ops: Vec<Op>,
}

impl Case {
    /// Reads a case written as `{"initial": n, "objects": [manifest...],
    /// "ops": [["apply", i] | ["delete", i] | ["echo", i]...]}`.
    pub(crate) fn from_json(v: &serde_json::Value) -> Result<Case, String> {
        let initial = v["initial"].as_u64().ok_or("initial: not a number")? as usize;
        let mut objects = Vec::new();
        for (i, m) in v["objects"]
            .as_array()
            .ok_or("objects: not a list")?
            .iter()
            .enumerate()
        {
            let kind = m["kind"]
                .as_str()
                .and_then(Kind::parse)
                .ok_or(format!("objects[{i}].kind"))?;
            let mut body = m.clone();
            if let Some(fields) = body.as_object_mut() {
                fields.remove("apiVersion");
                fields.remove("kind");
            }
            objects.push(Object::from_value(kind, body).map_err(|e| format!("objects[{i}]: {e}"))?);
        }
        let mut ops = Vec::new();
        for (i, op) in v["ops"]
            .as_array()
            .ok_or("ops: not a list")?
            .iter()
            .enumerate()
        {
            let n = op[1].as_u64().ok_or(format!("ops[{i}]: no index"))? as usize;
            ops.push(match op[0].as_str() {
                Some("apply") => Op::Apply(n),
                Some("delete") => Op::Delete(n),
                Some("echo") => Op::Echo(n),
                _ => return Err(format!("ops[{i}]: unknown op")),
            });
        }
        Ok(Case {
            objects,
            initial,
            ops,
        })
    }

    /// Checks every property; panics on the first that fails.
    pub(crate) fn check(&self) {
        let opts = ComputeOptions::new(CONTROLLER, NOW);
        let n = self.objects.len();
        let first = &self.objects[..self.initial.min(n)];
        let mut engine =
            Engine::from_snapshot(Snapshot::from_objects(first.iter().cloned()), opts.clone());
        same(
            &engine.computed(),
            &compute(engine.snapshot(), &opts),
            "after the initial load",
        );
        for (step, op) in self.ops.iter().enumerate() {
            if n == 0 {
                break;
            }
            let before = engine.computed();
            let delta = match *op {
                Op::Apply(i) => engine.apply(self.objects[i % n].clone()),
                Op::Delete(i) => engine.delete(&self.objects[i % n].key()),
                Op::Echo(i) => {
                    let statuses = engine.statuses();
                    let Some((k, s)) = statuses.iter().nth(i % statuses.len().max(1)) else {
                        continue;
                    };
                    let mut snap = engine.snapshot().clone();
                    assert!(
                        snap.set_status(k, s.clone()),
                        "{k} has a status but no object (or one of another shape)"
                    );
                    let Some(obj) = snap.get(k).cloned() else {
                        unreachable!("set_status found {k}");
                    };
                    engine.apply(obj)
                }
            };
            let after = engine.computed();
            check_delta(&before, &after, &delta, &format!("step {step} ({op:?})"));
            same(
                &after,
                &compute(engine.snapshot(), &opts),
                &format!("incremental vs full after step {step} ({op:?})"),
            );
        }

        let snap = engine.snapshot().clone();
        let full = compute(&snap, &opts);
        same(
            &compute(&snap, &opts),
            &full,
            "two full computations of one snapshot",
        );

        // The same objects reaching an engine one by one, in reverse key
        // order, end in the same place.
        let mut reversed = Engine::new(opts.clone());
        let objs: Vec<Object> = snap.iter().cloned().collect();
        for o in objs.into_iter().rev() {
            reversed.apply(o);
        }
        same(
            &reversed.computed(),
            &full,
            "objects applied in reverse key order vs full",
        );

        for (k, s) in &full.statuses {
            let Some(obj) = snap.get(k) else {
                panic!("status for {k}, which is not in the snapshot");
            };
            let generation = obj.meta().generation;
            for c in our_conditions(s) {
                assert_eq!(
                    c.observed_generation, generation,
                    "{k}: condition {} has observedGeneration {:?}, the object's generation is {:?}",
                    c.type_, c.observed_generation, generation
                );
            }
        }

        // Write every status back; a recompute must then find nothing more
        // to write and route the same.
        let mut echoed = snap.clone();
        echoed.apply_statuses(&full.statuses);
        let again = compute(&echoed, &opts);
        for (k, s) in &again.statuses {
            let held = echoed.get(k).and_then(held_status);
            assert!(
                held.as_ref() == Some(s),
                "after writing every status back, {k} would be written again\n held: {held:#?}\n  new: {s:#?}"
            );
        }
        let keys: BTreeSet<_> = again.routing.keys().chain(full.routing.keys()).collect();
        for k in keys {
            let (a, b) = (again.routing.get(k), full.routing.get(k));
            assert!(
                a == b,
                "after writing every status back, routing of {k} differs\n got: {a:#?}\nwant: {b:#?}"
            );
        }
    }
}

/// The status an object holds, as the engine writes it.
fn held_status(o: &Object) -> Option<ObjectStatus> {
    match o {
        Object::GatewayClass(o) => o.status.clone().map(ObjectStatus::GatewayClass),
        Object::Gateway(o) => o.status.clone().map(ObjectStatus::Gateway),
        Object::ListenerSet(o) => o.status.clone().map(ObjectStatus::ListenerSet),
        Object::HttpRoute(o) => o.status.clone().map(ObjectStatus::Route),
        Object::GrpcRoute(o) => o.status.clone().map(ObjectStatus::Route),
        Object::TlsRoute(o) | Object::TcpRoute(o) | Object::UdpRoute(o) => {
            o.status.clone().map(ObjectStatus::Route)
        }
        Object::BackendTlsPolicy(o) => o.status.clone().map(ObjectStatus::Policy),
        _ => None,
    }
}

/// The conditions we wrote: all of a Gateway's or GatewayClass's, and the
/// entries of routes and policies written under our controller name.
fn our_conditions(s: &ObjectStatus) -> Vec<&Condition> {
    match s {
        ObjectStatus::GatewayClass(s) => s.conditions.iter().collect(),
        ObjectStatus::Gateway(s) => s
            .conditions
            .iter()
            .chain(s.listeners.iter().flat_map(|l| &l.conditions))
            .collect(),
        ObjectStatus::ListenerSet(s) => s
            .conditions
            .iter()
            .chain(s.listeners.iter().flat_map(|l| &l.conditions))
            .collect(),
        ObjectStatus::Route(s) => s
            .parents
            .iter()
            .filter(|p| p.controller_name == CONTROLLER)
            .flat_map(|p| &p.conditions)
            .collect(),
        ObjectStatus::Policy(s) => s
            .ancestors
            .iter()
            .filter(|p| p.controller_name == CONTROLLER)
            .flat_map(|p| &p.conditions)
            .collect(),
        // A status kind this fuzz target does not know yet.
        _ => Vec::new(),
    }
}

/// Panics with the first difference between two outputs.
fn same(got: &Computed, want: &Computed, what: &str) {
    if got == want {
        return;
    }
    let keys: BTreeSet<_> = got.statuses.keys().chain(want.statuses.keys()).collect();
    for k in keys {
        let (a, b) = (got.statuses.get(k), want.statuses.get(k));
        assert!(
            a == b,
            "{what}: status of {k} differs\n got: {a:#?}\nwant: {b:#?}"
        );
    }
    let keys: BTreeSet<_> = got.routing.keys().chain(want.routing.keys()).collect();
    for k in keys {
        let (a, b) = (got.routing.get(k), want.routing.get(k));
        assert!(
            a == b,
            "{what}: routing of {k} differs\n got: {a:#?}\nwant: {b:#?}"
        );
    }
    assert_eq!(got.refusals, want.refusals, "{what}: refusals differ");
    unreachable!("{what}: outputs differ but no part does");
}

/// The delta of a step names exactly the statuses and routing that changed.
fn check_delta(before: &Computed, after: &Computed, delta: &Delta, what: &str) {
    let keys: BTreeSet<_> = before
        .statuses
        .keys()
        .chain(after.statuses.keys())
        .collect();
    for k in keys {
        let changed = before.statuses.get(k) != after.statuses.get(k);
        match delta.statuses.get(k) {
            Some(s) => assert!(
                s.as_ref() == after.statuses.get(k),
                "{what}: the delta's status of {k} is not the new status"
            ),
            None => assert!(
                !changed,
                "{what}: the status of {k} changed but is not in the delta"
            ),
        }
    }
    let keys: BTreeSet<_> = before.routing.keys().chain(after.routing.keys()).collect();
    for k in keys {
        let changed = before.routing.get(k) != after.routing.get(k);
        match delta.routing.get(k) {
            Some(r) => assert!(
                r.as_deref() == after.routing.get(k),
                "{what}: the delta's routing of {k} is not the new routing"
            ),
            None => assert!(
                !changed,
                "{what}: the routing of {k} changed but is not in the delta"
            ),
        }
    }
}
