//! Properties of the routing table on generated tables and requests: the
//! fast matcher agrees with the reference matcher, the answer does not
//! depend on the order routes are given in, and path normalization is a
//! normal form.
#![cfg(feature = "proptest")]

use gwcore::table::{Table, path::normalize};
use gwcore::testing::table::{Outcome, reference_find, request, routing};
use proptest::prelude::*;

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
    fn route_order_does_not_matter(r in routing(), heads in prop::collection::vec(request(), 1..8), seed in any::<u64>()) {
        let table = Table::compile(&r);
        let mut shuffled = r.clone();
        for l in &mut shuffled.listeners {
            // A deterministic permutation from the seed.
            let n = l.routes.len();
            for i in (1..n).rev() {
                let j = (seed.wrapping_mul(i as u64 + 7) % (i as u64 + 1)) as usize;
                l.routes.swap(i, j);
            }
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
