//! [`Table::update`] gives the table [`Table::compile`] gives, after any
//! sequence of route edits, and shares what an edit does not touch.

use std::fmt::Write;
use std::sync::Arc;

use proptest::prelude::*;

use super::*;
use crate::attachments::{AttachedRoute, GatewayRouting};
use crate::testing::table::{Outcome, request, routing};

/// Everything a table decides with, in a canonical text: listeners in
/// order, buckets by hostname, each bucket's candidates in rank order with
/// their route, rule and conditions, its path trie, and the problems.
fn canonical(t: &Table) -> String {
    let mut out = String::new();
    writeln!(out, "gateway {:?} problems {:?}", t.gateway, t.problems).unwrap();
    for pt in &t.ports {
        let mut select: Vec<_> = pt.select.entries().map(|(h, i)| (h, *i)).collect();
        select.sort();
        writeln!(out, "port {} select {select:?}", pt.port).unwrap();
        for lt in &pt.listeners {
            writeln!(out, " listener {:?} problems {:?}", lt.info, lt.problems).unwrap();
            let keys: Vec<_> = lt.source.iter().map(|r| &r.key).collect();
            writeln!(out, "  routes {keys:?}").unwrap();
            // Each compiled route once, from the slots pointing to it.
            let mut compiled: BTreeMap<&ObjectKey, &CompiledRoute> = BTreeMap::new();
            let http = lt.http.entries().flat_map(|(_, b)| b.slots());
            let grpc = lt.grpc.entries().flat_map(|(_, b)| b.slots.iter());
            for s in http.chain(grpc) {
                compiled.insert(&s.route.info.key, &s.route);
            }
            for r in compiled.values() {
                writeln!(out, "  route {:?} rules {:?}", r.info, r.rules).unwrap();
            }
            let slot = |out: &mut String, s: &Slot| {
                writeln!(
                    out,
                    "    {} rule {} {:?} {:?} {:?} {:?}",
                    s.route.info.key,
                    s.cand.rule,
                    s.cand.prec,
                    s.cand.hostname,
                    s.cand.path,
                    s.cand.cond
                )
                .unwrap();
            };
            let mut http: Vec<_> = lt.http.entries().collect();
            http.sort_by(|a, b| a.0.cmp(&b.0));
            for (h, b) in http {
                writeln!(out, "  http {h:?}").unwrap();
                // Sub-buckets by segment: where the map puts them depends
                // on the order they were added in, not what they hold.
                let mut subs: Vec<_> = b.subs.values().collect();
                subs.sort_by(|x, y| x.seg.cmp(&y.seg));
                for sub in subs {
                    writeln!(out, "   sub {:?} trie {:?}", sub.seg, sub.trie).unwrap();
                    for s in sub.slots.iter() {
                        slot(&mut out, s);
                    }
                }
                writeln!(out, "   rest").unwrap();
                for s in b.rest.iter() {
                    slot(&mut out, s);
                }
            }
            let mut grpc: Vec<_> = lt.grpc.entries().collect();
            grpc.sort_by(|a, b| a.0.cmp(&b.0));
            for (h, b) in grpc {
                let mut exact: Vec<_> = b.exact.iter().collect();
                exact.sort();
                writeln!(out, "  grpc {h:?} exact {exact:?} other {:?}", b.other).unwrap();
                for s in b.slots.iter() {
                    slot(&mut out, s);
                }
            }
        }
    }
    out
}

#[derive(Debug, Clone)]
enum Edit {
    /// Adds route `.1` of the pool to listener `.0` (replacing one with its key).
    Add(usize, usize),
    /// Removes route `.1` of listener `.0`.
    Remove(usize, usize),
    /// Gives route `.1` of listener `.0` the hostnames and rules of pool route `.2`.
    Change(usize, usize, usize),
    /// Hands route `.1` of listener `.0` again as an equal copy in a new `Arc`.
    Copy(usize, usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        2 => (any::<usize>(), any::<usize>()).prop_map(|(l, p)| Edit::Add(l, p)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(l, r)| Edit::Remove(l, r)),
        2 => (any::<usize>(), any::<usize>(), any::<usize>()).prop_map(|(l, r, p)| Edit::Change(l, r, p)),
        1 => (any::<usize>(), any::<usize>()).prop_map(|(l, r)| Edit::Copy(l, r)),
    ]
}

/// Applies `e` the way the engine hands a change: unchanged routes keep
/// their `Arc` and the list shares its untouched chunks.
fn apply(r: &mut GatewayRouting, pool: &[Arc<AttachedRoute>], e: &Edit) {
    let (li, pick) = match e {
        Edit::Add(l, _) | Edit::Remove(l, _) | Edit::Change(l, _, _) | Edit::Copy(l, _) => {
            (*l % r.listeners.len(), pool.len())
        }
    };
    let routes = &mut r.listeners[li].routes;
    match *e {
        Edit::Add(_, p) if pick > 0 => {
            routes.insert(pool[p % pick].clone());
        }
        Edit::Remove(_, i) if !routes.is_empty() => {
            let n = routes.len();
            let key = routes[i % n].key.clone();
            routes.remove(&key);
        }
        Edit::Change(_, i, p) if !routes.is_empty() && pick > 0 => {
            let n = routes.len();
            let from = &pool[p % pick];
            let mut changed = AttachedRoute::clone(&routes[i % n]);
            changed.hostnames = from.hostnames.clone();
            changed.rules = from.rules.clone();
            routes.insert(Arc::new(changed));
        }
        Edit::Copy(_, i) if !routes.is_empty() => {
            let n = routes.len();
            let copy = Arc::new(AttachedRoute::clone(&routes[i % n]));
            routes.insert(copy);
        }
        _ => {}
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn updated_table_equals_compiled_table(
        start in routing(),
        more in routing(),
        edits in prop::collection::vec(edit(), 1..12),
        heads in prop::collection::vec(request(), 1..8),
    ) {
        let pool: Vec<Arc<AttachedRoute>> =
            more.listeners.iter().flat_map(|l| l.routes.iter().cloned()).collect();
        let mut r = start;
        let mut table = Table::compile(&r);
        for e in &edits {
            apply(&mut r, &pool, e);
            table = table.update(&r);
            let fresh = Table::compile(&r);
            prop_assert_eq!(canonical(&table), canonical(&fresh), "after {:?}", e);
            for head in &heads {
                prop_assert_eq!(Outcome::of(&table.find(head)), Outcome::of(&fresh.find(head)));
            }
        }
    }

    #[test]
    fn compiled_table_does_not_depend_on_route_order(r in routing(), seed in any::<u64>()) {
        let mut shuffled = r.clone();
        for l in &mut shuffled.listeners {
            // Copies of the routes in another order: a list of them is
            // built anew, sharing nothing with the original.
            let mut routes: Vec<Arc<AttachedRoute>> =
                l.routes.iter().map(|r| Arc::new(AttachedRoute::clone(r))).collect();
            let n = routes.len();
            for i in (1..n).rev() {
                let j = (seed.wrapping_mul(i as u64 + 7) % (i as u64 + 1)) as usize;
                routes.swap(i, j);
            }
            l.routes = routes.into();
        }
        prop_assert_eq!(canonical(&Table::compile(&r)), canonical(&Table::compile(&shuffled)));
        // An update to a shuffled order gives the same table too.
        let updated = Table::compile(&r).update(&shuffled);
        prop_assert_eq!(canonical(&updated), canonical(&Table::compile(&r)));
    }
}

/// The routing of the one Gateway in `yaml`, as the engine computes it.
fn routing_of(yaml: &str) -> GatewayRouting {
    let loaded = crate::load::load_str("t.yaml", yaml);
    let snapshot = crate::Snapshot::from_objects(loaded.objects.into_iter().map(|(o, _)| o));
    let out = crate::engine::compute(
        &snapshot,
        &crate::engine::ComputeOptions::new("example.com/c", "2026-01-01T00:00:00Z"),
    );
    out.routing.into_values().next().expect("the Gateway")
}

/// A Gateway with two listeners (ports 80 and 81) and HTTPRoutes `r1`,
/// `r2`, `r3` on hosts `a.test`, `b.test`, `c.test` on port 80, `r4` on
/// `a.test` on port 81, as the engine computes it.
fn two_listeners() -> GatewayRouting {
    let mut yaml = String::from(
        "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: c}
spec: {controllerName: example.com/c}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: c
  listeners:
  - {name: a, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
  - {name: b, port: 81, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
",
    );
    for (i, host, section) in [(1, "a", "a"), (2, "b", "a"), (3, "c", "a"), (4, "a", "b")] {
        write!(
            yaml,
            "---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r{i}, namespace: ns}}
spec:
  parentRefs: [{{name: gw, namespace: infra, sectionName: {section}}}]
  hostnames: [{host}.test]
  rules: [{{matches: [{{path: {{type: PathPrefix, value: /p{i}}}}}]}}]
"
        )
        .unwrap();
    }
    routing_of(&yaml)
}

/// One route changed: the buckets of its hostname are built again; every
/// other bucket, and every other listener, is the previous table's.
#[test]
fn an_update_shares_untouched_buckets_and_listeners() {
    let before = two_listeners();
    assert_eq!(before.listeners[0].routes.len(), 3);
    let mut after = before.clone();
    let mut r2 = AttachedRoute::clone(&after.listeners[0].routes[1]);
    assert_eq!(r2.key.name, "r2");
    let RouteRules::Http(rules) = &mut r2.rules else {
        panic!("an HTTPRoute")
    };
    let path = Arc::make_mut(rules)[0].matches[0]
        .path
        .as_mut()
        .expect("a path");
    path.value = Some("/p9".into());
    after.listeners[0].routes.insert(Arc::new(r2));

    let t0 = Table::compile(&before);
    let t1 = t0.update(&after);
    let (l0, l1) = (&t0.ports[0].listeners[0], &t1.ports[0].listeners[0]);
    let bucket = |l: &ListenerTable, h: &str| l.http.get(Some(h)).cloned().expect("bucket");
    assert!(!Arc::ptr_eq(&bucket(l0, "b.test"), &bucket(l1, "b.test")));
    assert!(Arc::ptr_eq(&bucket(l0, "a.test"), &bucket(l1, "a.test")));
    assert!(Arc::ptr_eq(&bucket(l0, "c.test"), &bucket(l1, "c.test")));
    assert!(Arc::ptr_eq(
        &t0.ports[1].listeners[0],
        &t1.ports[1].listeners[0]
    ));
    assert_eq!(canonical(&t1), canonical(&Table::compile(&after)));
    let name = |t: &Table, path: &str| {
        let head = RequestHead::new(80, "b.test", "GET", path);
        t.find(&head).matched.map(|m| m.route().name.clone())
    };
    assert_eq!(name(&t1, "/p9/x").as_deref(), Some("r2"));
    assert_eq!(name(&t1, "/p2/x"), None);
    assert_eq!(name(&t0, "/p2/x").as_deref(), Some("r2"));
}

/// A Gateway whose `n` HTTPRoutes `r0`... have no hostname and an Exact
/// path `/r-<i>/x` each (all in one bucket, as in the first200 bench).
fn one_bucket(n: usize) -> GatewayRouting {
    let mut yaml = String::from(
        "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: c}
spec: {controllerName: example.com/c}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: infra}
spec:
  gatewayClassName: c
  listeners:
  - {name: a, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: All}}}
",
    );
    for i in 0..n {
        write!(
            yaml,
            "---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r{i}, namespace: ns}}
spec:
  parentRefs: [{{name: gw, namespace: infra}}]
  rules: [{{matches: [{{path: {{type: Exact, value: /r-{i}/x}}}}]}}]
"
        )
        .unwrap();
    }
    routing_of(&yaml)
}

/// One route of a bucket of many moved to another path: the sub-buckets
/// of its old and new first segment are built again, every other
/// sub-bucket is the previous table's (a change costs what it touches,
/// not the bucket's size), and the table is the compiled one.
#[test]
fn a_change_in_a_large_bucket_rebuilds_only_its_sub_buckets() {
    let before = one_bucket(40);
    let mut after = before.clone();
    let i = after.listeners[0]
        .routes
        .iter()
        .position(|r| r.key.name == "r7")
        .expect("r7");
    let mut r7 = AttachedRoute::clone(&after.listeners[0].routes[i]);
    let RouteRules::Http(rules) = &mut r7.rules else {
        panic!("an HTTPRoute")
    };
    Arc::make_mut(rules)[0].matches[0]
        .path
        .as_mut()
        .expect("a path")
        .value = Some("/moved/x".into());
    after.listeners[0].routes.insert(Arc::new(r7));

    let t0 = Table::compile(&before);
    let t1 = t0.update(&after);
    assert_eq!(canonical(&t1), canonical(&Table::compile(&after)));
    let bucket = |t: &Table| {
        t.ports[0].listeners[0]
            .http
            .get(None)
            .cloned()
            .expect("bucket")
    };
    let (b0, b1) = (bucket(&t0), bucket(&t1));
    assert_eq!((b0.subs.len(), b1.subs.len()), (40, 40));
    for seg in (0..40).map(|i| format!("r-{i}")) {
        let (s0, s1) = (b0.subs.get(seg.as_bytes()), b1.subs.get(seg.as_bytes()));
        if seg == "r-7" {
            assert!(s0.is_some() && s1.is_none(), "{seg} is gone");
        } else {
            assert!(
                Arc::ptr_eq(s0.expect("before"), s1.expect("after")),
                "{seg} is shared"
            );
        }
    }
    assert!(b1.subs.get(b"moved").is_some());
    let name = |t: &Table, path: &str| {
        let head = RequestHead::new(80, "any.test", "GET", path);
        t.find(&head).matched.map(|m| m.route().name.clone())
    };
    assert_eq!(name(&t1, "/moved/x").as_deref(), Some("r7"));
    assert_eq!(name(&t1, "/r-7/x"), None);
    assert_eq!(name(&t1, "/r-8/x").as_deref(), Some("r8"));
}

/// Edits carried from the engine to the table on a Gateway of hundreds of
/// routes (several chunks of its route list, shared between versions):
/// after each, the updated table is the compiled one.
#[cfg(feature = "scale")]
#[test]
fn engine_edits_carried_to_the_table_at_scale() {
    use crate::engine::{ComputeOptions, Engine};
    use crate::model::{Kind, Object};
    use crate::scale::{ScaleSpec, generate};

    let spec = ScaleSpec {
        routes: 600,
        gateways: 1,
        hostnames: 60,
        namespaces: 30,
        ..ScaleSpec::default()
    };
    let objs = generate(&spec);
    let route = |name: &str| {
        objs.iter()
            .find(|o| o.kind() == Kind::HttpRoute && o.meta().name == name)
            .cloned()
            .expect("generated route")
    };
    let opts = ComputeOptions::new(spec.controller_name.clone(), "2026-01-01T00:00:00Z");
    let mut engine = Engine::from_snapshot(crate::Snapshot::from_objects(objs.clone()), opts);
    let gateway = |e: &Engine| e.routing().values().next().cloned().expect("the Gateway");
    assert!(gateway(&engine).listeners[0].routes.len() > 300);
    let mut table = Table::compile(&gateway(&engine));
    let mut edits: Vec<Object> = Vec::new();
    for (i, name) in ["route-150", "route-151", "route-420", "route-598"]
        .into_iter()
        .enumerate()
    {
        let mut changed = route(name);
        if let Object::HttpRoute(r) = &mut changed {
            r.spec.rules[0].matches[0]
                .path
                .as_mut()
                .expect("path")
                .value = Some(format!("/edited-{i}"));
            r.spec.hostnames = vec![format!("app-{i}.example.com")];
        }
        edits.push(changed);
        let mut added = route(name);
        added.meta_mut().name = format!("{name}-copy");
        edits.push(added);
    }
    for (step, obj) in edits.into_iter().enumerate() {
        let key = obj.key();
        for delete in [false, true] {
            let delta = if delete {
                engine.delete(&key)
            } else {
                engine.apply(obj.clone())
            };
            let Some(Some(r)) = delta.routing.values().next() else {
                panic!("step {step}: the edit of {key} changes the Gateway's routing")
            };
            table = table.update(r);
            assert_eq!(
                canonical(&table),
                canonical(&Table::compile(r)),
                "step {step} (delete {delete}): {key}"
            );
        }
    }
}
