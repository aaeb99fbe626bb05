//! Behaviour of the compiled table, from struct literals.

use std::sync::Arc;

use http::StatusCode;

use super::*;
use crate::attachments::{AttachedRoute, GrpcRule, HttpRule, ResolvedBackend};
use crate::model::{
    GrpcMethodMatch, GrpcRouteMatch, HttpHeaderMatch, HttpPathMatch, HttpPathModifier,
    HttpRouteFilter, HttpRouteMatch, Kind, RequestRedirect, UrlRewrite,
};

fn svc(name: &str) -> ResolvedBackend {
    ResolvedBackend {
        weight: 1,
        target: Ok(BackendTarget {
            service: ObjectKey::new(Kind::Service, "ns", name),
            port: 8080,
            app_protocol: None,
            tls: None,
        }),
        filters: vec![],
        extension_refs: vec![],
        external_auth: vec![],
    }
}

fn m(kind: &str, value: &str) -> HttpRouteMatch {
    HttpRouteMatch {
        path: Some(HttpPathMatch {
            type_: Some(kind.into()),
            value: Some(value.into()),
        }),
        ..Default::default()
    }
}

fn rule(index: usize, matches: Vec<HttpRouteMatch>, backend: &str) -> HttpRule {
    HttpRule {
        index,
        name: None,
        matches,
        filters: vec![],
        extension_refs: vec![],
        external_auth: vec![],
        mirrors: vec![],
        backends: vec![svc(backend)],
        timeouts: None,
        retry: None,
        session_persistence: None,
    }
}

fn route(name: &str, hostnames: &[&str], rules: Vec<HttpRule>) -> AttachedRoute {
    AttachedRoute {
        key: ObjectKey::new(Kind::HttpRoute, "ns", name),
        creation_timestamp: Some("2026-01-01T00:00:00Z".into()),
        hostnames: hostnames.iter().map(|s| s.to_string()).collect(),
        rules: RouteRules::Http(Arc::new(rules)),
    }
}

fn listener(
    name: &str,
    port: u16,
    hostname: Option<&str>,
    routes: Vec<AttachedRoute>,
) -> ListenerRouting {
    ListenerRouting {
        name: name.into(),
        source: ObjectKey::new(Kind::Gateway, "ns", "gw"),
        port,
        protocol: ListenerProtocol::Http,
        hostname: hostname.map(str::to_owned),
        tls_mode: None,
        certificates: vec![],
        frontend_validation: None,
        routes: routes.into_iter().map(Arc::new).collect(),
    }
}

fn table(listeners: Vec<ListenerRouting>) -> Table {
    Table::compile(&GatewayRouting {
        gateway: ObjectKey::new(Kind::Gateway, "ns", "gw"),
        listeners,
        backend_client_certificate: None,
        policies: Default::default(),
    })
}

/// The backend Service name a request is forwarded to, or the status.
fn answer(t: &Table, head: &RequestHead) -> String {
    let d = t.find(head);
    match &d.action {
        Action::Forward(f) => match f.pick(0).target() {
            Ok(target) => target.service.name.clone(),
            Err(_) => "invalid".into(),
        },
        Action::Redirect(r) => format!("{} {}", r.status.as_u16(), r.location),
        Action::Respond(r) => r.status().as_u16().to_string(),
    }
}

fn get(t: &Table, host: &str, path: &str) -> String {
    answer(t, &RequestHead::new(80, host, "GET", path))
}

#[test]
fn path_precedence_exact_then_longest_prefix() {
    let t = table(vec![listener(
        "http",
        80,
        None,
        vec![route(
            "r",
            &[],
            vec![
                rule(0, vec![m("PathPrefix", "/")], "root"),
                rule(1, vec![m("PathPrefix", "/a")], "a"),
                rule(2, vec![m("PathPrefix", "/a/b/")], "ab"),
                rule(3, vec![m("Exact", "/a")], "exact-a"),
                rule(4, vec![m("Exact", "/a/")], "exact-a-slash"),
                rule(5, vec![m("RegularExpression", "/a/b/[0-9]+")], "regex"),
            ],
        )],
    )]);
    let rows = [
        ("/", "root", "only / matches"),
        ("/a", "exact-a", "exact beats prefix"),
        (
            "/a/",
            "exact-a-slash",
            "exact with trailing slash is its own path",
        ),
        ("/ab", "root", "prefix is element-wise"),
        ("/a/x", "a", "prefix /a"),
        ("/a/b", "ab", "trailing slash of a prefix is ignored"),
        ("/a/b/1", "ab", "regex ranks below prefixes"),
        ("/a//b/./c/../", "ab", "path normalized before matching"),
        ("/a/%62/c", "ab", "unreserved escapes decoded"),
        ("/a%2Fb", "root", "encoded slash is data"),
    ];
    for (path, want, msg) in rows {
        assert_eq!(get(&t, "h", path), want, "{msg}: {path}");
    }
}

#[test]
fn regex_path_used_when_nothing_else_matches() {
    let t = table(vec![listener(
        "http",
        80,
        None,
        vec![route(
            "r",
            &[],
            vec![
                rule(0, vec![m("PathPrefix", "/x")], "x"),
                rule(1, vec![m("RegularExpression", "/v[0-9]+/.*")], "re"),
            ],
        )],
    )]);
    assert_eq!(get(&t, "h", "/v2/items"), "re");
    assert_eq!(get(&t, "h", "/v/items"), "404");
}

#[test]
fn hostname_specificity_comes_first() {
    let t = table(vec![listener(
        "http",
        80,
        None,
        vec![
            route(
                "exact",
                &["a.example.com"],
                vec![rule(0, vec![m("PathPrefix", "/only")], "exact")],
            ),
            route(
                "wild",
                &["*.example.com"],
                vec![rule(0, vec![m("Exact", "/x")], "wild")],
            ),
            route(
                "longwild",
                &["*.a.example.com"],
                vec![rule(0, vec![m("PathPrefix", "/")], "longwild")],
            ),
            route("any", &[], vec![rule(0, vec![m("Exact", "/x")], "any")]),
        ],
    )]);
    let rows = [
        ("a.example.com", "/only/1", "exact", "precise hostname"),
        (
            "a.example.com",
            "/x",
            "wild",
            "falls to the wildcard when the exact host has no matching rule",
        ),
        (
            "b.a.example.com",
            "/x",
            "longwild",
            "longer wildcard beats shorter even against Exact path",
        ),
        (
            "A.Example.COM:8080",
            "/only",
            "exact",
            "Host case and port ignored",
        ),
        (
            "example.com",
            "/x",
            "any",
            "a wildcard never matches the apex",
        ),
        (
            "other.org",
            "/x",
            "any",
            "routes without hostnames accept any host",
        ),
        ("other.org", "/y", "404", "no route"),
    ];
    for (host, path, want, msg) in rows {
        assert_eq!(get(&t, host, path), want, "{msg}");
    }
}

#[test]
fn method_headers_query_then_age_then_name() {
    let mut hm = m("PathPrefix", "/");
    hm.headers = vec![HttpHeaderMatch {
        type_: None,
        name: "Version".into(),
        value: "2".into(),
    }];
    let mut hm2 = hm.clone();
    hm2.headers.push(HttpHeaderMatch {
        type_: Some("RegularExpression".into()),
        name: "color".into(),
        value: "bl.*".into(),
    });
    // Repeated names are ignored after the first.
    hm2.headers.push(HttpHeaderMatch {
        type_: None,
        name: "VERSION".into(),
        value: "nope".into(),
    });
    let mut qm = m("PathPrefix", "/");
    qm.query_params = vec![HttpHeaderMatch {
        type_: None,
        name: "animal".into(),
        value: "whale".into(),
    }];
    let mut mm = m("PathPrefix", "/");
    mm.method = Some("POST".into());
    let mut old = route(
        "zz-old",
        &[],
        vec![rule(0, vec![m("PathPrefix", "/")], "old")],
    );
    old.creation_timestamp = Some("2020-01-01T00:00:00Z".into());
    let t = table(vec![listener(
        "http",
        80,
        None,
        vec![
            route(
                "b",
                &[],
                vec![rule(0, vec![m("PathPrefix", "/")], "b-root")],
            ),
            route(
                "a",
                &[],
                vec![
                    rule(0, vec![hm], "v2"),
                    rule(1, vec![hm2], "v2-blue"),
                    rule(2, vec![qm], "whale"),
                    rule(3, vec![mm], "post"),
                ],
            ),
            old,
        ],
    )]);
    let h = |method: &str, path: &str, hdrs: &[(&str, &str)]| {
        let mut head = RequestHead::new(80, "h", method, path);
        for (n, v) in hdrs {
            head = head.with_header(n, v);
        }
        answer(&t, &head)
    };
    assert_eq!(h("GET", "/", &[]), "old", "oldest route wins among equals");
    assert_eq!(h("GET", "/", &[("version", "2")]), "v2");
    assert_eq!(
        h("GET", "/", &[("version", "2"), ("color", "blue")]),
        "v2-blue",
        "more headers win"
    );
    assert_eq!(h("GET", "/", &[("version", "2"), ("color", "red")]), "v2");
    assert_eq!(
        h("GET", "/?animal=whale", &[("version", "2")]),
        "v2",
        "headers beat query params"
    );
    assert_eq!(h("GET", "/?animal=whale", &[]), "whale");
    assert_eq!(
        h("GET", "/?ANIMAL=whale", &[]),
        "old",
        "query names are case-sensitive"
    );
    assert_eq!(
        h("POST", "/?animal=whale", &[("version", "2")]),
        "post",
        "method beats headers"
    );
}

#[test]
fn listener_selection_and_misdirected_requests() {
    let mk = |name: &str, host: Option<&str>, backend: &str| {
        let mut l = listener(
            name,
            443,
            host,
            vec![route(
                backend,
                &[],
                vec![rule(0, vec![m("PathPrefix", "/")], backend)],
            )],
        );
        l.protocol = ListenerProtocol::Https;
        l.tls_mode = Some(TlsMode::Terminate);
        l
    };
    let t = table(vec![
        mk("any", None, "v-any"),
        mk("second", Some("second.example.org"), "v-second"),
        mk("wild", Some("*.wildcard.org"), "v-wild"),
        mk("longwild", Some("*.deep.wildcard.org"), "v-longwild"),
    ]);
    let req = |host: &str, sni: Option<&str>| {
        let mut head = RequestHead::new(443, host, "GET", "/");
        if let Some(s) = sni {
            head = head.with_sni(s);
        }
        let d = t.find(&head);
        (answer(&t, &head), d.listener.map(|l| l.name.clone()))
    };
    assert_eq!(
        req("second.example.org", None),
        ("v-second".into(), Some("second".into())),
        "exact listener"
    );
    assert_eq!(
        req("a.deep.wildcard.org", None),
        ("v-longwild".into(), Some("longwild".into())),
        "longer wildcard"
    );
    assert_eq!(
        req("a.wildcard.org", None),
        ("v-wild".into(), Some("wild".into()))
    );
    assert_eq!(
        req("example.org", None),
        ("v-any".into(), Some("any".into())),
        "listener without hostname"
    );
    assert_eq!(req("example.org", Some("example.org")).0, "v-any");
    assert_eq!(
        req("second.example.org", Some("example.org")),
        ("421".into(), Some("any".into())),
        "Host of another listener"
    );
    assert_eq!(req("unknown.org", Some("second.example.org")).0, "421");
    assert_eq!(
        req("second.example.org", Some("second.example.org")).0,
        "v-second"
    );
    assert_eq!(
        answer(&t, &RequestHead::new(80, "x", "GET", "/")),
        "404",
        "no listener on the port"
    );
}

#[test]
fn bad_paths_answer_400() {
    let t = table(vec![listener(
        "http",
        80,
        None,
        vec![route(
            "r",
            &[],
            vec![rule(0, vec![m("PathPrefix", "/")], "b")],
        )],
    )]);
    assert_eq!(get(&t, "h", "/a\\b"), "400");
    assert_eq!(get(&t, "h", "/a%zz"), "400");
    let d = t.find(&RequestHead::new(80, "h", "GET", "/a%zz"));
    assert_eq!(
        d.listener.map(|l| l.name.as_str()),
        Some("http"),
        "the listener is known"
    );
}

#[test]
fn invalid_and_missing_backends_answer_500() {
    let mut invalid = rule(0, vec![m("Exact", "/invalid")], "x");
    invalid.backends[0].target = Err(BackendError {
        reason: crate::status::Reason::BackendNotFound,
        message: "no Service".into(),
    });
    let mut none = rule(1, vec![m("Exact", "/none")], "x");
    none.backends.clear();
    let mut zero = rule(2, vec![m("Exact", "/zero")], "x");
    zero.backends[0].weight = 0;
    let mut half = rule(3, vec![m("Exact", "/half")], "good");
    half.backends.push(ResolvedBackend {
        weight: 1,
        target: invalid.backends[0].target.clone(),
        filters: vec![],
        extension_refs: vec![],
        external_auth: vec![],
    });
    let t = table(vec![listener(
        "http",
        80,
        None,
        vec![route("r", &[], vec![invalid, none, zero, half])],
    )]);
    assert_eq!(get(&t, "h", "/invalid"), "500");
    assert_eq!(get(&t, "h", "/none"), "500");
    assert_eq!(get(&t, "h", "/zero"), "500");
    let d = t.find(&RequestHead::new(80, "h", "GET", "/half"));
    let Action::Forward(f) = &d.action else {
        panic!("half valid forwards")
    };
    let head = RequestHead::new(80, "h", "GET", "/half");
    let picks: Vec<bool> = (0..4)
        .map(|draw| {
            matches!(
                f.backend_action(&head, f.pick(draw)),
                BackendAction::Forward(_)
            )
        })
        .collect();
    assert_eq!(
        picks,
        vec![true, false, true, false],
        "the invalid half answers 500"
    );
}

#[test]
fn redirects_and_rewrites() {
    let redirect = |index, path: &str, r: RequestRedirect| {
        let mut x = rule(index, vec![m("PathPrefix", path)], "x");
        x.backends.clear();
        x.filters = vec![HttpRouteFilter {
            type_: "RequestRedirect".into(),
            request_redirect: Some(Box::new(r)),
            ..Default::default()
        }];
        x
    };
    let prefix = redirect(
        0,
        "/prefix/one",
        RequestRedirect {
            path: Some(HttpPathModifier {
                type_: "ReplacePrefixMatch".into(),
                replace_full_path: None,
                replace_prefix_match: Some("/two".into()),
            }),
            status_code: Some(308),
            ..Default::default()
        },
    );
    let port = redirect(
        1,
        "/port",
        RequestRedirect {
            port: Some(8443),
            scheme: Some("https".into()),
            ..Default::default()
        },
    );
    let mut rewrite = rule(2, vec![m("PathPrefix", "/rewrite")], "rw");
    rewrite.filters = vec![HttpRouteFilter {
        type_: "URLRewrite".into(),
        url_rewrite: Some(Box::new(UrlRewrite {
            hostname: Some("new.example.com".into()),
            path: Some(HttpPathModifier {
                type_: "ReplacePrefixMatch".into(),
                replace_full_path: None,
                replace_prefix_match: Some("/".into()),
            }),
        })),
        ..Default::default()
    }];
    let t = table(vec![listener(
        "http",
        80,
        None,
        vec![route("r", &[], vec![prefix, port, rewrite])],
    )]);
    assert_eq!(
        get(&t, "gw.example.com", "/prefix/one/three?x=1"),
        "308 http://gw.example.com/two/three?x=1"
    );
    assert_eq!(
        get(&t, "gw.example.com:80", "/port"),
        "302 https://gw.example.com:8443/port"
    );

    let head = RequestHead::new(80, "gw.example.com", "GET", "/rewrite/./a?q=1");
    let d = t.find(&head);
    let Action::Forward(f) = &d.action else {
        panic!("forward")
    };
    let (mut parts, ()) = http::Request::builder()
        .uri("/rewrite/./a?q=1")
        .header("host", "gw.example.com")
        .body(())
        .unwrap()
        .into_parts();
    f.apply_request(&head, Some(f.pick(0)), &mut parts);
    assert_eq!(parts.uri.to_string(), "/a?q=1");
    assert_eq!(parts.headers["host"], "new.example.com");
}

#[test]
fn a_head_can_lend_its_header_map_to_the_forwarded_request() {
    let mut cors = rule(0, vec![m("PathPrefix", "/cors")], "c");
    cors.filters = vec![HttpRouteFilter {
        type_: "CORS".into(),
        cors: Some(Box::new(crate::model::Cors {
            allow_origins: vec!["https://app.example".into()],
            ..Default::default()
        })),
        ..Default::default()
    }];
    let plain = rule(1, vec![m("PathPrefix", "/plain")], "p");
    let t = table(vec![listener(
        "http",
        80,
        None,
        vec![route("r", &[], vec![cors, plain])],
    )]);
    let request = |path: &str| {
        http::Request::builder()
            .uri(path)
            .header("host", "gw.example.com")
            .header("origin", "https://app.example")
            .body(())
            .unwrap()
            .into_parts()
            .0
    };
    for (path, reads) in [("/cors/a", true), ("/plain/a", false)] {
        let mut parts = request(path);
        let copied = RequestHead::from_parts(80, &parts);
        let mut head = RequestHead::from_parts_taking_headers(80, &mut parts);
        assert!(parts.headers.is_empty(), "taken");
        assert_eq!(
            (head.host(), head.path(), head.headers()),
            (copied.host(), copied.path(), copied.headers())
        );
        let d = t.find(&head);
        let Action::Forward(f) = &d.action else {
            panic!("{path}: forward")
        };
        let backend = f.pick(0);
        assert_eq!(f.reads_request_headers(Some(backend)), reads, "{path}");
        parts.headers = head.take_headers();
        assert!(head.headers().is_empty());
        assert_eq!(parts.headers["origin"], "https://app.example");
    }
}

#[test]
fn grpc_rules_are_matched_apart() {
    let grpc = |svc_: Option<&str>, method: Option<&str>, t: Option<&str>, backend: &str, index| {
        GrpcRule {
            index,
            name: Some(format!("rule-{backend}")),
            matches: vec![GrpcRouteMatch {
                method: Some(GrpcMethodMatch {
                    type_: t.map(Into::into),
                    service: svc_.map(str::to_owned),
                    method: method.map(str::to_owned),
                }),
                headers: vec![],
            }],
            filters: vec![],
            extension_refs: vec![],
            mirrors: vec![],
            backends: vec![svc(backend)],
            session_persistence: None,
        }
    };
    let groute = AttachedRoute {
        key: ObjectKey::new(Kind::GrpcRoute, "ns", "g"),
        creation_timestamp: None,
        hostnames: vec!["grpc.example.com".into()],
        rules: RouteRules::Grpc(Arc::new(vec![
            grpc(Some("pkg.Echo"), None, None, "service-only", 0),
            grpc(Some("pkg.Echo"), Some("Echo"), None, "exact", 1),
            grpc(None, Some("Ping"), None, "method-only", 2),
            grpc(
                Some("pkg\\..*"),
                Some("Re.*"),
                Some("RegularExpression"),
                "regex",
                3,
            ),
        ])),
    };
    let t = table(vec![listener(
        "http",
        80,
        None,
        vec![
            groute,
            route(
                "h",
                &["grpc.example.com"],
                vec![rule(0, vec![m("PathPrefix", "/")], "http")],
            ),
        ],
    )]);
    let call = |s: &str, m: &str| answer(&t, &RequestHead::grpc(80, "grpc.example.com", s, m));
    assert_eq!(call("pkg.Echo", "Echo"), "exact");
    assert_eq!(call("pkg.Echo", "Other"), "service-only");
    assert_eq!(call("x.Y", "Ping"), "method-only");
    assert_eq!(call("pkg.Z", "Reverse"), "regex");
    assert_eq!(call("x.Y", "Nope"), "http", "falls back to HTTPRoute rules");
    assert_eq!(
        get(&t, "grpc.example.com", "/pkg.Echo/Echo"),
        "http",
        "not gRPC: GRPCRoute rules ignored"
    );
    let d = t.find(&RequestHead::grpc(
        80,
        "grpc.example.com",
        "pkg.Echo",
        "Echo",
    ));
    let m = d.matched.unwrap();
    assert_eq!(
        (m.rule_index(), m.rule_name(), m.match_index()),
        (1, Some("rule-exact"), 0)
    );
}

#[test]
fn unsupported_filters_answer_500_and_are_reported() {
    let mut r = rule(0, vec![m("PathPrefix", "/")], "x");
    r.filters = vec![HttpRouteFilter {
        type_: "ExtensionRef".into(),
        ..Default::default()
    }];
    let t = table(vec![listener(
        "http",
        80,
        None,
        vec![route("r", &[], vec![r])],
    )]);
    assert_eq!(get(&t, "h", "/"), "500");
    assert_eq!(t.problems().len(), 1);
    assert_eq!(t.problems()[0].route.name, "r");
}

#[test]
fn explain_names_the_winner_and_the_losing_step() {
    let t = table(vec![listener(
        "http",
        80,
        None,
        vec![route(
            "r",
            &[],
            vec![
                rule(0, vec![m("PathPrefix", "/")], "root"),
                rule(1, vec![m("PathPrefix", "/careers")], "careers"),
                rule(2, vec![m("Exact", "/other")], "other"),
            ],
        )],
    )]);
    let ex = t.explain(&RequestHead::new(80, "h", "GET", "/careers/x"));
    let winner = ex.candidates.iter().find(|c| c.winner).unwrap();
    assert_eq!(winner.rule, 1);
    let root = ex.candidates.iter().find(|c| c.rule == 0).unwrap();
    assert_eq!(root.lost_on, Some(Step::PathLength));
    let other = ex.candidates.iter().find(|c| c.rule == 2).unwrap();
    assert!(other.why_not.is_some());
    let text = ex.to_string();
    assert!(text.contains("WINNER"), "{text}");
    assert_eq!(
        t.find(&RequestHead::new(80, "h", "GET", "/")).status(),
        None
    );
    assert_eq!(
        t.find(&RequestHead::new(81, "h", "GET", "/")).status(),
        Some(StatusCode::NOT_FOUND)
    );
}

#[test]
fn table_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Table>();
    check::<Tables>();
}

proptest::proptest! {
    /// backendRef weights are honoured: over uniform draws, each backend
    /// gets its weight's share of requests within a bound (2 % of all
    /// draws, over five standard deviations for 20 000 draws), and a
    /// weight of 0 gets none.
    #[test]
    fn weights_are_honoured_within_a_bound(
        weights in proptest::collection::vec(0u32..=1000, 1..6),
        seed: u64,
    ) {
        proptest::prop_assume!(weights.iter().any(|w| *w > 0));
        let mut r = rule(0, vec![m("PathPrefix", "/")], "b0");
        r.backends = weights
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let mut b = svc(&format!("b{i}"));
                b.weight = *w;
                b
            })
            .collect();
        let t = table(vec![listener("http", 80, None, vec![route("r", &[], vec![r])])]);
        let head = RequestHead::new(80, "h", "GET", "/x");
        let d = t.find(&head);
        let Action::Forward(f) = &d.action else {
            panic!("a rule with a positive weight forwards")
        };
        let draws = 20_000u64;
        let mut state = seed;
        let mut counts = vec![0u64; weights.len()];
        for _ in 0..draws {
            // splitmix64: uniform draws, as the proxy's RNG gives.
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            let b = f.pick(z ^ (z >> 31));
            let i = f
                .backends()
                .iter()
                .position(|x| std::ptr::eq(x, b))
                .expect("a backend of the rule");
            counts[i] += 1;
        }
        let total: u64 = weights.iter().map(|w| u64::from(*w)).sum();
        for (i, w) in weights.iter().enumerate() {
            let expected = draws as f64 * f64::from(*w) / total as f64;
            if *w == 0 {
                proptest::prop_assert_eq!(counts[i], 0, "weight 0 gets no request");
            } else {
                proptest::prop_assert!(
                    (counts[i] as f64 - expected).abs() <= draws as f64 * 0.02,
                    "backend {} of weights {:?}: {} requests, {:.0} expected",
                    i, weights, counts[i], expected
                );
            }
        }
    }
}
