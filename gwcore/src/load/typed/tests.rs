use proptest::prelude::*;

use super::*;
use crate::load::{Limits, Loaded, Path, load_str_by};

/// Loads `text` by both paths and asserts they read the same.
fn both(text: &str, limits: Limits) -> Loaded {
    let ext = Extensions::default();
    let typed = load_str_by("t.yaml", text, limits, &ext, Path::Typed);
    let value = load_str_by("t.yaml", text, limits, &ext, Path::Value);
    assert_eq!(typed.objects, value.objects, "objects of:\n{text}");
    assert_eq!(
        typed.diagnostics, value.diagnostics,
        "diagnostics of:\n{text}"
    );
    typed
}

const ROUTE: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: r
  namespace: n
  labels: {app: web}
spec:
  parentRefs:
  - name: gw
    sectionName: http
  hostnames:
  - a.example.com
  rules:
  - matches:
    - path: {type: PathPrefix, value: /api}
      headers:
      - name: x-env
        value: canary
    backendRefs:
    - name: svc
      port: 8080
      weight: 3
";

/// One plain document of each kind a manifest holds most: read by the
/// typed path (not handed back), and as the value reads it.
#[test]
fn plain_documents_are_read_typed() {
    let docs = [
        ROUTE,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: n\n  labels:\n    shop: \"true\"\n",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: g\n  namespace: n\nspec:\n  gatewayClassName: c\n  listeners:\n  - name: http\n    port: 80\n    protocol: HTTP\n    allowedRoutes:\n      namespaces:\n        from: Selector\n        selector:\n          matchLabels: {a: b}\n",
        "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: n}\nspec:\n  ports:\n  - port: 80\n    targetPort: 8080\n",
        "apiVersion: gateway.networking.k8s.io/v1beta1\nkind: ReferenceGrant\nmetadata: {name: rg, namespace: n}\nspec:\n  from:\n  - {group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: m}\n  to:\n  - {group: '', kind: Service}\n",
        "apiVersion: gateway.networking.x-k8s.io/v1alpha1\nkind: XListenerSet\nmetadata: {name: ls, namespace: n}\nspec:\n  parentRef: {name: g}\n  listeners:\n  - {name: a, port: 81, protocol: HTTP}\n",
    ];
    for doc in docs {
        let typed = read(doc, &Limits::default(), &Extensions::default());
        let typed = typed.unwrap_or_else(|| panic!("not read typed:\n{doc}"));
        let loaded = both(doc, Limits::default());
        assert_eq!(loaded.diagnostics, [], "{doc}");
        assert_eq!(loaded.objects[0].1.api_version, typed.api_version);
        assert_eq!(loaded.objects[0].0.kind(), typed.kind);
    }
}

/// Documents the two paths could read apart if the typed one trusted the
/// YAML deserializer's requests: each reads as the value reads it.
#[test]
fn tricky_documents_read_as_by_the_value() {
    let header = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n";
    let cases = [
        // A number where a string is expected: an error, not "80".
        ("metadata: {name: 80, namespace: n}", false),
        ("metadata: {name: true, namespace: n}", false),
        ("metadata: {name: '80', namespace: n}", true),
        ("metadata: {name: !!str 80, namespace: n}", true),
        // Null, as each spelling.
        ("metadata: {name: r, namespace: ~}", true),
        ("metadata: {name: r, namespace: null}", true),
        ("metadata: {name: r, namespace: }", true),
        ("metadata: {name: r, namespace: n}\nspec: ~", false),
        (
            "metadata: {name: r, namespace: n}\nspec:\n  parentRefs: ~",
            false,
        ),
        // Numbers as YAML reads them.
        (
            "metadata: {name: r, namespace: n}\nspec:\n  parentRefs: [{name: g, port: 0x50}]",
            true,
        ),
        (
            "metadata: {name: r, namespace: n}\nspec:\n  parentRefs: [{name: g, port: '80'}]",
            false,
        ),
        (
            "metadata: {name: r, namespace: n}\nspec:\n  parentRefs: [{name: g, port: 80.0}]",
            false,
        ),
        (
            "metadata: {name: r, namespace: n}\nspec:\n  parentRefs: [{name: g, port: .nan}]",
            true,
        ),
        (
            "metadata: {name: r, namespace: n}\nspec:\n  parentRefs: [{name: g, port: 99999999999999999999999}]",
            false,
        ),
        (
            "metadata: {name: r, namespace: n}\nspec:\n  parentRefs: [{name: g, port: -80}]",
            false,
        ),
        // Duplicate keys: the value keeps the last.
        ("metadata: {name: a, namespace: n, name: b}", true),
        ("metadata: {name: r, namespace: n}\nkind: Gateway", false),
        (
            "metadata: {name: r, namespace: n}\nkind: [HTTPRoute]",
            false,
        ),
        // Unknown fields are read whole, keys as strings.
        (
            "metadata: {name: r, namespace: n}\nextra: {1: a, true: b, ~: c}",
            true,
        ),
        ("metadata: {name: r, namespace: n}\nextra: {[a]: b}", false),
        (
            "metadata: {name: r, namespace: n}\nextra:\n  ? {a: b}\n  : c",
            false,
        ),
        ("metadata: {name: r, namespace: n}\nextra: !Tag x", false),
        ("metadata: {name: r, namespace: n}\nextra: [[[[1]]]]", true),
        // A spec enum given a mapping, a tag, a list.
        (
            "metadata: {name: r, namespace: n}\nspec:\n  rules: [{matches: [{path: {type: {Exact: 1}, value: /}}]}]",
            false,
        ),
        (
            "metadata: {name: r, namespace: n}\nspec:\n  rules: [{matches: [{path: {type: !Exact x, value: /}}]}]",
            false,
        ),
        // Anchors and aliases.
        (
            "metadata: &m {name: r, namespace: n}\nspec:\n  parentRefs: [{name: g, namespace: n}]\nx: *m",
            true,
        ),
        (
            "metadata: {name: r, namespace: n}\nspec:\n  parentRefs: [&p {name: g}, *p]",
            false,
        ),
        (
            "metadata: {name: r, namespace: n}\nspec:\n  parentRefs: [*undefined]",
            false,
        ),
        // Sequences where structs are expected.
        ("metadata: [r, n]", true),
        ("metadata: {name: r, namespace: n}\nspec: [1, 2]", false),
        // Strings over lines.
        (
            "metadata:\n  name: r\n  namespace: n\n  annotations:\n    a: |\n      two\n      lines\n",
            true,
        ),
    ];
    let mut wrong = Vec::new();
    for (i, (body, ok)) in cases.iter().enumerate() {
        let text = format!("{header}{body}\n");
        let loaded = both(&text, Limits::default());
        if loaded.has_errors() == *ok {
            wrong.push(format!("case {i} {body:?}: {:?}", loaded.diagnostics));
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    // The top-level kind and apiVersion, however written.
    for head in [
        "apiVersion: gateway.networking.k8s.io/v1\nkind: \"HTTPRoute\"\n",
        "apiVersion: 'gateway.networking.k8s.io/v1'\nkind: HTTPRoute # a route\n",
        "kind: HTTPRoute\napiVersion: gateway.networking.k8s.io/v1\n",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: !!str HTTPRoute\n",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nkind: Gateway\n",
        "apiVersion: v1\nkind: HTTPRoute\n",
        "apiVersion: gateway.networking.k8s.io/v1\nkind:\n  HTTPRoute\n",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRouteList\nitems: []\n",
        "{apiVersion: gateway.networking.k8s.io/v1, kind: HTTPRoute}\n",
    ] {
        both(
            &format!("{head}metadata: {{name: r, namespace: n}}\n"),
            Limits::default(),
        );
    }
}

/// The budgets hold on the typed path as on the value: one value or one
/// level past them refuses the document, with the value's diagnostic.
#[test]
fn budgets_are_counted_as_the_value_counts() {
    let deep = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  annotations:\n    x: y\n";
    both(deep, Limits::default().with_max_depth(3));
    let refused = both(deep, Limits::default().with_max_depth(2));
    assert!(refused.objects.is_empty());
    // Aliases within the alias budget are read; one node past it is not.
    let aliased = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  labels: &l {a: b, c: d}\nx: [*l, *l, *l]\n";
    for budget in 0..12 {
        both(aliased, Limits::default().with_max_alias_expansion(budget));
    }
}

/// YAML scalars and snippets that read as different types, put in the
/// fields of a route.
const SCALARS: &[&str] = &[
    "80",
    "'80'",
    "\"80\"",
    "-1",
    "0x50",
    "0o17",
    "1e3",
    "80.0",
    ".nan",
    ".inf",
    "~",
    "null",
    "",
    "true",
    "yes",
    "on",
    "a",
    "'a b'",
    "!!str 80",
    "!!int 80",
    "!!null ~",
    "!Tag a",
    "[]",
    "{}",
    "[a, 1]",
    "{a: 1}",
    "{Exact: 1}",
    "Exact",
    "PathPrefix",
    "*a",
    "&a x",
    "&a [1]",
    "99999999999999999999",
    "2026-01-01",
    "|\n    text",
    "x: y",
];

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Any scalar in any of a route's fields reads as the value reads it.
    #[test]
    fn routes_with_any_scalars_read_as_by_the_value(
        slots in proptest::collection::vec(0..SCALARS.len(), 7)
    ) {
        let s = |i: usize| SCALARS[slots[i]];
        let text = format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {}\n  namespace: n\n  labels:\n    a: {}\nspec:\n  parentRefs:\n  - name: gw\n    port: {}\n  hostnames:\n  - {}\n  rules:\n  - matches:\n    - path:\n        type: {}\n        value: {}\n    backendRefs:\n    - name: s\n      port: 8080\n      weight: {}\n",
            s(0), s(1), s(2), s(3), s(4), s(5), s(6),
        );
        both(&text, Limits::default());
    }
}
