//! Escaped slashes: the decision per setting, and the invariant that no
//! forwarded path is read by a decoding backend outside the rule that
//! received it.

use proptest::prelude::*;

use super::*;
use crate::engine::{ComputeOptions, compute};
use crate::load::load_str;
use crate::snapshot::Snapshot;

const ALL: [EscapedSlashes; 4] = EscapedSlashes::ALL;

/// `/public`, `/keys` and `/admin` (only with `x-role: admin`), each to
/// its own Service; `/exact` as an Exact match; `/rewrite` rewritten to
/// `/static`.
const ROUTES: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: c}
spec: {controllerName: example.com/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: app}
spec:
  gatewayClassName: c
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: public, namespace: app}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: keys, namespace: app}
spec: {ports: [{port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: admin, namespace: app}
spec: {ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: r, namespace: app}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /public}}]
    backendRefs: [{name: public, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /keys}}]
    backendRefs: [{name: keys, port: 80}]
  - matches:
    - path: {type: PathPrefix, value: /admin}
      headers: [{name: x-role, value: admin}]
    backendRefs: [{name: admin, port: 80}]
  - matches: [{path: {type: Exact, value: /exact}}]
    backendRefs: [{name: public, port: 80}]
"#;

fn table() -> Table {
    let loaded = load_str("routes.yaml", ROUTES);
    assert!(!loaded.has_errors(), "{:#?}", loaded.diagnostics);
    let snap = Snapshot::from_objects(loaded.objects.into_iter().map(|(o, _)| o));
    let out = compute(
        &snap,
        &ComputeOptions::new("example.com/gateway-controller", "2026-01-01T00:00:00Z"),
    );
    Table::compile(out.routing.values().next().expect("our Gateway"))
}

fn head(pq: &str, admin: bool) -> RequestHead {
    let h = RequestHead::new(80, "a.example", "GET", pq);
    if admin {
        h.with_header("x-role", "admin")
    } else {
        h
    }
}

/// What [`route`] does, in short: `fwd <service> <path>`, a status, or
/// `redirect <location>`.
fn outcome(t: &Table, pq: &str, admin: bool, setting: EscapedSlashes) -> String {
    let mut h = head(pq, admin);
    match route(t, &mut h, setting) {
        Ok(decision) => match &decision.action {
            Action::Forward(f) => format!(
                "fwd {} {}",
                f.pick(0).target().expect("a backend").service.name,
                h.path().expect("a path")
            ),
            _ => decision.status().expect("a status").as_u16().to_string(),
        },
        Err(Answer::Redirect(l)) => format!("redirect {l}"),
        Err(Answer::Refused(_)) => "400".into(),
    }
}

#[test]
fn each_setting_on_a_path_that_reads_as_another_route() {
    let t = table();
    // (path, KeepUnchanged, RejectRequest, UnescapeAndRedirect, UnescapeAndForward)
    let rows: &[(&str, bool, [&str; 4])] = &[
        (
            "/public/..%2Fadmin",
            true,
            ["400", "400", "redirect /admin", "fwd admin /admin"],
        ),
        (
            "/public/..%2fadmin?x=1",
            false,
            ["400", "400", "redirect /admin?x=1", "404"],
        ),
        (
            "/public/..%5Cadmin",
            true,
            ["400", "400", "redirect /admin", "fwd admin /admin"],
        ),
        (
            "/public/%2e%2e%2Fkeys/k",
            false,
            ["400", "400", "redirect /keys/k", "fwd keys /keys/k"],
        ),
        // Decoded, still under the rule that received it.
        (
            "/keys/a%2Fb",
            false,
            [
                "fwd keys /keys/a%2Fb",
                "400",
                "redirect /keys/a/b",
                "fwd keys /keys/a/b",
            ],
        ),
        (
            "/public/a%2F..%2Fb",
            false,
            [
                "fwd public /public/a%2F..%2Fb",
                "400",
                "redirect /public/b",
                "fwd public /public/b",
            ],
        ),
        // Climbing out and back in is not the same rule's match any more.
        (
            "/public/a%2F..%2F..%2Fpublic",
            false,
            [
                "fwd public /public/a%2F..%2F..%2Fpublic",
                "400",
                "redirect /public",
                "fwd public /public",
            ],
        ),
        // An Exact match with an escaped slash: decoded it is another path.
        (
            "/exact%2F",
            false,
            ["404", "400", "redirect /exact/", "404"],
        ),
        // Nothing escaped: every setting routes as received.
        (
            "/public/x",
            false,
            [
                "fwd public /public/x",
                "fwd public /public/x",
                "fwd public /public/x",
                "fwd public /public/x",
            ],
        ),
        // `%252F` is `%2F` of data to a backend that decodes once.
        (
            "/public/..%252Fadmin",
            false,
            [
                "fwd public /public/..%252Fadmin",
                "fwd public /public/..%252Fadmin",
                "fwd public /public/..%252Fadmin",
                "fwd public /public/..%252Fadmin",
            ],
        ),
        // A path the table refuses stays the table's 400.
        ("/public/%zz%2F", false, ["400", "400", "400", "400"]),
    ];
    for (path, admin, want) in rows {
        for (setting, want) in ALL.iter().zip(want) {
            assert_eq!(
                outcome(&t, path, *admin, *setting),
                *want,
                "{path} (admin {admin}) under {setting}"
            );
        }
    }
}

#[test]
fn keep_refuses_a_path_that_decodes_onto_a_header_guarded_rule() {
    // `/public/..%2Fadmin` with the admin header: decoded it is the admin
    // rule, not the public one that would receive it.
    let t = table();
    let mut h = head("/public/..%2Fadmin", true);
    assert_eq!(
        route(&t, &mut h, EscapedSlashes::KeepUnchanged).map(|_| ()),
        Err(Answer::Refused(Refusal::DecodedElsewhere))
    );
    assert_eq!(
        route(&t, &mut h, EscapedSlashes::RejectRequest).map(|_| ()),
        Err(Answer::Refused(Refusal::EscapedSeparator))
    );
}

#[test]
fn names_are_the_crd_enum() {
    for s in ALL {
        assert_eq!(s.as_str().parse::<EscapedSlashes>(), Ok(s));
        assert_eq!(s.to_string(), s.as_str());
    }
    assert_eq!(
        EscapedSlashes::default(),
        EscapedSlashes::UnescapeAndRedirect
    );
    for bad in ["", "keepunchanged", "Reject", "UnescapeAndRedirect "] {
        assert!(bad.parse::<EscapedSlashes>().is_err(), "{bad:?}");
    }
}

/// How a backend that decodes `%2F` and `%5C` as separators reads a path,
/// written apart from [`super::super::path::decode_separators`]: replace
/// the escapes, then let the table's normalization resolve the rest.
fn decoding_reader(path: &str) -> String {
    let mut s = path.to_owned();
    for e in ["%2F", "%2f", "%5C", "%5c"] {
        s = s.replace(e, "/");
    }
    s
}

/// A path: segments joined by separators, each drawn from the spellings
/// that gateways and backends read differently.
fn path() -> impl Strategy<Value = String> {
    let segment = prop::sample::select(vec![
        "public", "keys", "admin", "exact", "x", "..", ".", "%2e%2E", ".%2e", "%25", "a%2Fb", "",
    ]);
    let separator = prop::sample::select(vec!["/", "/", "%2F", "%2f", "%5C", "%5c", "//"]);
    let query = prop::sample::select(vec!["", "", "?q=%2F"]);
    (prop::collection::vec((separator, segment), 1..7), query).prop_map(|(parts, q)| {
        let mut p = String::from("/");
        for (sep, seg) in parts {
            p.push_str(sep);
            p.push_str(seg);
        }
        p.push_str(q);
        p
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Whatever the setting, a forwarded path read by a decoding backend is
    /// routed by the table to the same rule that received it.
    #[test]
    fn no_forwarded_path_decodes_outside_its_rule(pq in path(), admin in any::<bool>()) {
        let t = table();
        for setting in ALL {
            let mut routed = head(&pq, admin);
            let Ok(decision) = route(&t, &mut routed, setting) else { continue };
            let Action::Forward(f) = &decision.action else { continue };
            let sent = routed.path().expect("a forwarded path is normal");
            let read = head(&decoding_reader(sent), admin);
            let again = t.find(&read);
            let Action::Forward(g) = &again.action else {
                prop_assert!(false, "{pq} under {setting}: {sent} reads as {:?}, answered {:?}", read.path(), again.status());
                unreachable!()
            };
            prop_assert!(
                std::ptr::eq(f.matched().rule(), g.matched().rule()),
                "{pq} under {setting}: {sent} reads as {:?}, another rule", read.path()
            );
        }
    }

    /// The decoded path is what the reader makes of it, normalized, and a
    /// decoding backend reads it unchanged.
    #[test]
    fn decoding_matches_the_reader_and_is_stable(pq in path()) {
        let raw = pq.split('?').next().unwrap_or("/");
        let Ok(p) = super::super::path::normalize(raw) else { return Ok(()) };
        match decode_separators(&p) {
            None => prop_assert!(!super::super::path::has_encoded_separator(&p)),
            Some(d) => {
                let read = decoding_reader(&p);
                let want = super::super::path::normalize(&read).expect("normal");
                prop_assert_eq!(d.as_str(), &*want);
                prop_assert_eq!(decode_separators(&d), None);
                prop_assert_eq!(decide(&d, EscapedSlashes::RejectRequest), PathDecision::AsReceived);
            }
        }
    }
}
