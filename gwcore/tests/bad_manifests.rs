//! Bad manifests give clear diagnostics (file, document, line, object,
//! field) and cost only themselves: everything else still loads.

use gwcore::load::{Severity, load_str};

const GOOD_NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: fine}\n";

#[test]
fn truncated_yaml_names_the_document_and_line() {
    let text = format!(
        "{GOOD_NS}---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: g\n  namespace: \"unterminated\nspec: {{\n"
    );
    let l = load_str("cut.yaml", &text);
    assert_eq!(l.objects.len(), 1, "the good document still loads");
    let d = &l.diagnostics[0];
    assert_eq!(
        (d.severity, d.source.as_str(), d.document),
        (Severity::Error, "cut.yaml", 1)
    );
    assert!(
        d.line.is_some_and(|line| line >= 5),
        "line points into the second document: {d:?}"
    );
    assert!(d.message.starts_with("invalid YAML"), "{d}");
}

#[test]
fn wrong_type_names_object_and_field_path() {
    let text = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: n}\nspec:\n  rules:\n  - backendRefs:\n    - {name: svc, port: [80]}\n";
    let l = load_str("r.yaml", text);
    assert!(l.objects.is_empty());
    let d = &l.diagnostics[0];
    assert_eq!(d.object.as_deref(), Some("HTTPRoute n/r"));
    assert_eq!(
        d.field.as_deref(),
        Some("spec.rules[0].backendRefs[0].port")
    );
    assert!(
        d.to_string().contains(
            "r.yaml:7 (document 0) HTTPRoute n/r field spec.rules[0].backendRefs[0].port"
        ),
        "{d}"
    );
}

#[test]
fn invalid_hostname_and_duplicate_listener_are_reported_together() {
    let text = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g, namespace: n}\nspec:\n  gatewayClassName: c\n  listeners:\n  - {name: web, port: 80, protocol: HTTP, hostname: 'bad host'}\n  - {name: web, port: 81, protocol: HTTP}\n";
    let l = load_str("g.yaml", text);
    assert!(l.objects.is_empty(), "an invalid Gateway is left out");
    let fields: Vec<_> = l
        .diagnostics
        .iter()
        .map(|d| d.field.clone().unwrap_or_default())
        .collect();
    assert_eq!(
        fields,
        vec!["spec.listeners[0].hostname", "spec.listeners[1].name"]
    );
}

#[test]
fn a_ten_megabyte_document_loads_without_panic() {
    // One ConfigMap holding 10 MB of data, then a good object.
    let big = "x".repeat(10 << 20);
    let text = format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: big, namespace: n}}\ndata:\n  blob: {big}\n---\n{GOOD_NS}"
    );
    let l = load_str("big.yaml", &text);
    assert_eq!(l.objects.len(), 2);
    assert!(l.diagnostics.is_empty());
}

#[test]
fn a_source_over_the_limit_is_refused_whole() {
    let limits = gwcore::load::Limits::default().with_max_source_bytes(1024);
    let text = format!("{GOOD_NS}# {}\n", "y".repeat(2048));
    let l = gwcore::load::load_str_with("huge.yaml", &text, limits);
    assert!(l.objects.is_empty());
    assert!(
        l.diagnostics[0].message.contains("larger than the limit"),
        "{:?}",
        l.diagnostics
    );
}

#[test]
fn garbage_never_panics() {
    for text in [
        "",
        "---\n---\n",
        "[1, 2",
        "{",
        "- a\n- b\n",
        "kind: [",
        "\u{0}\u{1}",
        "apiVersion: v1\nkind: Namespace\nmetadata: 7\n",
        "a: &a [*a]\n",
        "{\"kind\": 5}",
    ] {
        let l = load_str("junk", text);
        assert!(l.objects.is_empty(), "{text:?}");
    }
}

#[test]
fn tcp_and_udp_routes_are_read_as_v1_and_v1alpha2() {
    for v in ["v1", "v1alpha2"] {
        let text = format!(
            "apiVersion: gateway.networking.k8s.io/{v}\nkind: TCPRoute\nmetadata: {{name: t, namespace: n}}\nspec:\n  rules: [{{backendRefs: [{{name: s, port: 9}}]}}]\n"
        );
        let l = load_str("t.yaml", &text);
        assert_eq!(l.objects.len(), 1, "{v}: {:?}", l.diagnostics);
    }
}
