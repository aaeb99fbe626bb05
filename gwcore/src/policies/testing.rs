//! What the tests of gwcore's own policy kinds share: computing a cluster
//! with one kind registered, reading a policy's `Accepted` condition, and
//! finding the policy that applies to a request.

use std::any::Any;

use crate::Snapshot;
use crate::engine::{ComputeOptions, Computed, compute};
use crate::extension::{ExtensionKind, Extensions, PolicyKind};
use crate::load::{Limits, load_str_extended};
use crate::model::{Kind, ObjectKey};
use crate::status::ObjectStatus;
use crate::table::{Action, RequestHead, Table};

const CTRL: &str = "example.com/gateway-controller";

/// Loads `yaml` (which must load without errors) and computes it with
/// `policy` registered, as controller `example.com/gateway-controller`.
pub(crate) fn run(policy: impl PolicyKind, yaml: &str) -> Computed {
    let ext = Extensions::new().with_policy(policy);
    let l = load_str_extended("test.yaml", yaml, Limits::default(), &ext);
    assert!(!l.has_errors(), "{:#?}", l.diagnostics);
    let snap = Snapshot::from_objects(l.objects.into_iter().map(|(o, _)| o));
    compute(
        &snap,
        &ComputeOptions::new(CTRL, "2026-06-01T00:00:00Z").with_extensions(ext),
    )
}

/// The `Accepted` condition of the policy `ns/name` of `kind`, which has
/// one ancestor: (status, reason, message).
pub(crate) fn accepted(
    out: &Computed,
    kind: ExtensionKind,
    ns: &str,
    name: &str,
) -> (String, String, String) {
    match out
        .statuses
        .get(&ObjectKey::new(Kind::Extension(kind), ns, name))
    {
        Some(ObjectStatus::Policy(p)) => {
            assert_eq!(p.ancestors.len(), 1, "{p:?}");
            let c = &p.ancestors[0].conditions[0];
            assert_eq!(c.type_, "Accepted");
            (c.status.clone(), c.reason.clone(), c.message.clone())
        }
        other => panic!("no status for {name}: {other:?}"),
    }
}

/// The policy of `kind` that applies to a `method` request for `path`
/// on port 80 of the (only) Gateway, by name, with what `read` takes from
/// its value (of type `T`).
pub(crate) fn applied<T: Any, R>(
    out: &Computed,
    kind: ExtensionKind,
    method: &str,
    path: &str,
    read: impl Fn(&T) -> R,
) -> Option<(String, R)> {
    let t = Table::compile(out.routing.values().next().expect("our Gateway"));
    let d = t.find(&RequestHead::new(80, "a.example", method, path));
    let Action::Forward(f) = &d.action else {
        panic!("not forwarded: {:?}", d.action)
    };
    let p = f.policy(kind, Some(f.pick(0)))?;
    let v = p.value.get::<T>().expect("a value of the kind's type");
    Some((p.policy.name.clone(), read(v)))
}
