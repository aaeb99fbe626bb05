//! Properties of the engine on generated snapshots: determinism under any
//! input order, idempotence, and the attachment invariants.
#![cfg(feature = "proptest")]

use std::collections::{BTreeMap, BTreeSet};

use gwcore::Snapshot;
use gwcore::engine::{Computed, compute};
use gwcore::model::{Kind, Object, ObjectKey};
use gwcore::selector;
use gwcore::status::ObjectStatus;
use gwcore::testing::snapshot::{objects, options};
use gwcore::values::FromNamespaces;
use proptest::prelude::*;

const NOW: &str = "2026-01-01T00:00:00Z";

fn serialized(out: &Computed) -> String {
    let statuses: BTreeMap<String, &ObjectStatus> = out
        .statuses
        .iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    let routing: BTreeMap<String, _> = out
        .routing
        .iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    serde_json::to_string(&(statuses, routing, &out.refusals)).expect("serializable")
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// The same objects in any order give byte-identical output.
    #[test]
    fn output_does_not_depend_on_input_order(objs in objects(), seed in any::<u64>()) {
        let a = compute(&Snapshot::from_objects(objs.clone()), &options(NOW));
        let mut shuffled = objs;
        // A seeded Fisher-Yates shuffle, so failures reproduce.
        let mut s = seed | 1;
        for i in (1..shuffled.len()).rev() {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            shuffled.swap(i, (s % (i as u64 + 1)) as usize);
        }
        let b = compute(&Snapshot::from_objects(shuffled), &options(NOW));
        prop_assert_eq!(serialized(&a), serialized(&b));
    }

    /// Computing again on the written-back status changes nothing, even later.
    #[test]
    fn compute_is_idempotent(objs in objects()) {
        let mut snap = Snapshot::from_objects(objs);
        let first = compute(&snap, &options(NOW));
        snap.apply_statuses(&first.statuses);
        let second = compute(&snap, &options("2027-06-01T00:00:00Z"));
        prop_assert_eq!(serialized(&first), serialized(&second));
    }

    /// No route is attached through a listener that rejects its namespace or
    /// kind, and attachedRoutes counts exactly the attached Accepted routes.
    #[test]
    fn attachment_invariants(objs in objects()) {
        let snap = Snapshot::from_objects(objs);
        let out = compute(&snap, &options(NOW));
        for (gw_key, routing) in &out.routing {
            let Some(Object::Gateway(gw)) = snap.get(gw_key) else { panic!("routing for a missing gateway") };
            let Some(ObjectStatus::Gateway(status)) = out.statuses.get(gw_key) else { panic!("no gateway status") };
            for l in &routing.listeners {
                let spec = gw.spec.listeners.iter().find(|s| s.name == l.name).expect("listener in spec");
                let from = spec.allowed_routes.as_ref().and_then(|a| a.namespaces.as_ref()).expect("defaulted");
                let mut attached = BTreeSet::new();
                for r in &l.routes {
                    prop_assert_eq!(r.key.kind, Kind::HttpRoute);
                    prop_assert!(matches!(spec.protocol.as_str(), "HTTP" | "HTTPS"), "HTTPRoute on a {} listener", spec.protocol);
                    let allowed = match &from.from {
                        Some(FromNamespaces::All) => true,
                        Some(FromNamespaces::Same) => r.key.namespace == gw.metadata.ns(),
                        Some(FromNamespaces::Selector) => {
                            let labels = match snap.get(&ObjectKey::new(Kind::Namespace, "", r.key.namespace.clone())) {
                                Some(Object::Namespace(n)) => n.metadata.labels.clone(),
                                _ => BTreeMap::new(),
                            };
                            selector::matches(from.selector.as_ref().expect("selector"), &labels)
                        }
                        other => panic!("unexpected from {other:?}"),
                    };
                    prop_assert!(allowed, "{} attached to {}/{} against allowedRoutes", r.key, gw_key, l.name);
                    // The route's own status says Accepted for this Gateway.
                    let Some(ObjectStatus::Route(rs)) = out.statuses.get(&r.key) else { panic!("no route status") };
                    prop_assert!(rs.parents.iter().any(|p| p.parent_ref.name == gw_key.name
                        && p.parent_ref.namespace.as_deref() == Some(gw_key.namespace.as_str())
                        && p.conditions.iter().any(|c| c.type_ == "Accepted" && c.status == "True")));
                    attached.insert(r.key.clone());
                }
                let ls = status.listeners.iter().find(|s| s.name == l.name).expect("listener status");
                prop_assert_eq!(ls.attached_routes as usize, attached.len());
            }
        }
    }

    /// Every ExtensionRef filter of an attached rule is in the table as
    /// the extension's filter exactly when its object exists in the
    /// route's namespace and passes the kind's check; otherwise the rule
    /// answers 500 (the filter is never skipped).
    #[test]
    fn extension_filters_resolve_or_answer_500(objs in objects()) {
        use gwcore::table::Filter;
        use gwcore::testing::snapshot::TEST_FILTER;
        let snap = Snapshot::from_objects(objs);
        let out = compute(&snap, &options(NOW));
        for routing in out.routing.values() {
            for l in &routing.listeners {
                for r in &l.routes {
                    let gwcore::attachments::RouteRules::Http(rules) = &r.rules else { continue };
                    for rule in rules.iter() {
                        for f in &rule.filters {
                            let Some(x) = &f.extension_ref else { continue };
                            let key = ObjectKey::new(Kind::Extension(TEST_FILTER), r.key.namespace.clone(), x.name.clone());
                            let valid = matches!(snap.get(&key), Some(Object::Extension(o)) if o.spec["valid"] == true);
                            let compiled = Filter::compile_with(f, &rule.extension_refs);
                            prop_assert_eq!(matches!(compiled, Filter::Extension(_)), valid, "{} {}", r.key, x.name);
                            prop_assert_eq!(matches!(compiled, Filter::Unsupported(_)), !valid);
                        }
                    }
                }
            }
        }
    }
}
