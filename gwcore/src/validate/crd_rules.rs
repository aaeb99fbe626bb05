//! One row per rule of the CRDs that [`super::validate`] checks, each on
//! the side the API server refuses (the field the error must name) and,
//! where the rule has one, the side it accepts. The rows were settled
//! against the upstream CRD server of Kubernetes 1.36
//! (gwcore-k8s/tests/crd_server_diff.rs, docs/validation.md).

use crate::load::load_str;
use crate::model::Object;
use crate::values::WellKnownCaCertificates;

const V1: &str = "apiVersion: gateway.networking.k8s.io/v1";

fn gateway_class(spec: &str) -> String {
    format!("{V1}\nkind: GatewayClass\nmetadata: {{name: c}}\nspec: {spec}\n")
}

/// A Gateway with one HTTP listener and `extra` spec fields (YAML flow).
fn gateway(extra: &str) -> String {
    format!(
        "{V1}\nkind: Gateway\nmetadata: {{name: g, namespace: n}}\nspec: {{gatewayClassName: c, listeners: [{{name: a, port: 80, protocol: HTTP}}]{extra}}}\n"
    )
}

/// A Gateway whose only listener is `listener` (YAML flow).
fn listener(listener: &str) -> String {
    format!(
        "{V1}\nkind: Gateway\nmetadata: {{name: g, namespace: n}}\nspec: {{gatewayClassName: c, listeners: [{listener}]}}\n"
    )
}

/// An HTTPRoute with `spec` (YAML flow, the braces' content).
fn http_route(spec: &str) -> String {
    format!("{V1}\nkind: HTTPRoute\nmetadata: {{name: r, namespace: n}}\nspec: {{{spec}}}\n")
}

/// An HTTPRoute with one rule (YAML flow, the braces' content).
fn http_rule(rule: &str) -> String {
    http_route(&format!("rules: [{{{rule}}}]"))
}

fn grpc_rule(rule: &str) -> String {
    format!(
        "{V1}\nkind: GRPCRoute\nmetadata: {{name: r, namespace: n}}\nspec: {{rules: [{{{rule}}}]}}\n"
    )
}

fn l4(kind: &str, version: &str, spec: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/{version}\nkind: {kind}\nmetadata: {{name: r, namespace: n}}\nspec: {{{spec}}}\n"
    )
}

fn grant(spec: &str) -> String {
    format!("{V1}\nkind: ReferenceGrant\nmetadata: {{name: g, namespace: n}}\nspec: {{{spec}}}\n")
}

/// A BackendTLSPolicy with `validation` (YAML flow, the braces' content).
fn tls_policy(targets: &str, validation: &str) -> String {
    format!(
        "{V1}\nkind: BackendTLSPolicy\nmetadata: {{name: p, namespace: n}}\nspec: {{targetRefs: {targets}, validation: {{{validation}}}}}\n"
    )
}

const SVC: &str = "[{group: '', kind: Service, name: s}]";
const CA: &str = "caCertificateRefs: [{group: '', kind: ConfigMap, name: ca}], hostname: b.example";
const BACKEND: &str = "backendRefs: [{name: s, port: 80}]";

/// The error fields of loading `yaml`, or `[]` when it loads.
fn errors(yaml: &str) -> Vec<String> {
    let l = load_str("t.yaml", yaml);
    let errs: Vec<String> = l
        .diagnostics
        .iter()
        .filter(|d| d.severity == crate::load::Severity::Error)
        .map(|d| format!("{}: {}", d.field.as_deref().unwrap_or("-"), d.message))
        .collect();
    if errs.is_empty() {
        assert_eq!(l.objects.len(), 1, "{yaml}: loaded without an error");
    }
    errs
}

/// Checks every row; reports every row that fails, not only the first.
fn check(rows: &[(&str, String, Option<&str>)]) {
    let mut failed = Vec::new();
    for (what, yaml, field) in rows {
        let errs = errors(yaml);
        match field {
            None if !errs.is_empty() => failed.push(format!("{what}: refused: {errs:?}")),
            Some(f) if !errs.iter().any(|e| e.starts_with(f)) => {
                failed.push(format!("{what}: expected an error at {f}, got {errs:?}"))
            }
            _ => {}
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} rows:\n{}",
        failed.len(),
        rows.len(),
        failed.join("\n")
    );
}

#[test]
fn gateway_class_rules() {
    check(&[
        (
            "controllerName without a path",
            gateway_class("{controllerName: example.com}"),
            Some("spec.controllerName"),
        ),
        (
            "controllerName with an empty path",
            gateway_class("{controllerName: example.com/}"),
            Some("spec.controllerName"),
        ),
        (
            "controllerName with an uppercase domain",
            gateway_class("{controllerName: Example.com/x}"),
            Some("spec.controllerName"),
        ),
        (
            "controllerName with a space",
            gateway_class("{controllerName: 'example.com/a b'}"),
            Some("spec.controllerName"),
        ),
        (
            "controllerName with the path's characters",
            gateway_class("{controllerName: 'example.com/a/b-c_d.e~f%20'}"),
            None,
        ),
        (
            "description of 65 characters",
            gateway_class(&format!(
                "{{controllerName: example.com/x, description: {}}}",
                "d".repeat(65)
            )),
            Some("spec.description"),
        ),
        (
            "description of 64 characters",
            gateway_class(&format!(
                "{{controllerName: example.com/x, description: {}}}",
                "d".repeat(64)
            )),
            None,
        ),
    ]);
}

#[test]
fn gateway_rules() {
    check(&[
        (
            "Hostname address not a hostname",
            gateway(", addresses: [{type: Hostname, value: LB_.example.com}]"),
            Some("spec.addresses[0].value"),
        ),
        (
            "Hostname address in uppercase",
            gateway(", addresses: [{type: Hostname, value: GW.example}]"),
            Some("spec.addresses[0].value"),
        ),
        (
            "Hostname address",
            gateway(", addresses: [{type: Hostname, value: lb.example.com}]"),
            None,
        ),
        (
            "the same IP address twice",
            gateway(", addresses: [{value: 10.0.0.1}, {type: IPAddress, value: 10.0.0.1}]"),
            Some("spec.addresses[1].value"),
        ),
        (
            "the same Hostname address twice",
            gateway(
                ", addresses: [{type: Hostname, value: a.example}, {type: Hostname, value: a.example}]",
            ),
            Some("spec.addresses[1].value"),
        ),
        (
            "the same value as an IP and a named address",
            gateway(", addresses: [{value: 10.0.0.1}, {type: NamedAddress, value: 10.0.0.1}]"),
            None,
        ),
        (
            "an infrastructure label key with '!'",
            gateway(", infrastructure: {labels: {'bad key!': v}}"),
            Some("spec.infrastructure.labels"),
        ),
        (
            "an infrastructure annotation key starting with '-'",
            gateway(", infrastructure: {annotations: {'-x/y': v}}"),
            Some("spec.infrastructure.annotations"),
        ),
        (
            "an infrastructure label prefix of 257 characters",
            gateway(&format!(
                ", infrastructure: {{labels: {{'{}.com/x': v}}}}",
                "a".repeat(253)
            )),
            Some("spec.infrastructure.labels"),
        ),
        (
            "infrastructure keys with and without a prefix",
            gateway(", infrastructure: {labels: {example.com/team: a}, annotations: {note: b}}"),
            None,
        ),
        (
            "frontend TLS for one port twice",
            gateway(
                ", tls: {frontend: {default: {validation: {caCertificateRefs: [{kind: ConfigMap, name: ca}]}}, perPort: [{port: 443, tls: {validation: {caCertificateRefs: [{kind: ConfigMap, name: ca}]}}}, {port: 443, tls: {validation: {caCertificateRefs: [{kind: ConfigMap, name: ca}]}}}]}}",
            ),
            Some("spec.tls.frontend.perPort[1].port"),
        ),
    ]);
}

#[test]
fn listener_rules() {
    check(&[
        (
            "a hostname that looks like an IPv4 address",
            listener("{name: a, port: 80, protocol: HTTP, hostname: 10.1.2.3}"),
            None,
        ),
        (
            "an allowed kind's group with '_'",
            listener(
                "{name: a, port: 80, protocol: HTTP, allowedRoutes: {kinds: [{group: a_b, kind: HTTPRoute}]}}",
            ),
            Some("spec.listeners[0].allowedRoutes.kinds[0].group"),
        ),
        (
            "an allowed kind with a space",
            listener(
                "{name: a, port: 80, protocol: HTTP, allowedRoutes: {kinds: [{kind: 'not a kind'}]}}",
            ),
            Some("spec.listeners[0].allowedRoutes.kinds[0].kind"),
        ),
        (
            // The CRDs take any operator; the engine's selector selects no
            // namespace with it.
            "a selector with an unknown operator",
            listener(
                "{name: a, port: 80, protocol: HTTP, allowedRoutes: {namespaces: {from: Selector, selector: {matchExpressions: [{key: k, operator: Near, values: [v]}]}}}}",
            ),
            None,
        ),
    ]);
}

#[test]
fn reference_grant_rules() {
    let to = "to: [{group: '', kind: Service}]";
    let from = "from: [{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: a}]";
    check(&[
        (
            "from a kind with a space",
            grant(&format!(
                "from: [{{group: '', kind: 'a b', namespace: a}}], {to}"
            )),
            Some("spec.from[0].kind"),
        ),
        (
            "from a group with '_'",
            grant(&format!(
                "from: [{{group: a_b, kind: HTTPRoute, namespace: a}}], {to}"
            )),
            Some("spec.from[0].group"),
        ),
        (
            "from a namespace with '_'",
            grant(&format!(
                "from: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: Bad_NS}}], {to}"
            )),
            Some("spec.from[0].namespace"),
        ),
        (
            "to a kind starting with a digit",
            grant(&format!("{from}, to: [{{group: '', kind: 9Service}}]")),
            Some("spec.to[0].kind"),
        ),
        (
            "to a group with uppercase",
            grant(&format!(
                "{from}, to: [{{group: Example.com, kind: Service}}]"
            )),
            Some("spec.to[0].group"),
        ),
        ("valid", grant(&format!("{from}, {to}")), None),
    ]);
}

#[test]
fn backend_tls_policy_rules() {
    let sans = |s: &str| tls_policy(SVC, &format!("{CA}, subjectAltNames: [{s}]"));
    check(&[
        (
            "one target with and without a sectionName",
            tls_policy(
                "[{group: '', kind: Service, name: s, sectionName: h}, {group: '', kind: Service, name: s}]",
                CA,
            ),
            Some("spec.targetRefs[1]"),
        ),
        (
            "one target and sectionName twice",
            tls_policy(
                "[{group: '', kind: Service, name: s, sectionName: h}, {group: '', kind: Service, name: s, sectionName: h}]",
                CA,
            ),
            Some("spec.targetRefs[1]"),
        ),
        (
            "one target twice without sectionName",
            tls_policy(
                "[{group: '', kind: Service, name: s}, {group: '', kind: Service, name: s}]",
                CA,
            ),
            Some("spec.targetRefs[1]"),
        ),
        (
            "one target, two sectionNames",
            tls_policy(
                "[{group: '', kind: Service, name: s, sectionName: h}, {group: '', kind: Service, name: s, sectionName: i}]",
                CA,
            ),
            None,
        ),
        (
            "a wildcard hostname",
            tls_policy(
                SVC,
                "caCertificateRefs: [{group: '', kind: ConfigMap, name: ca}], hostname: '*.example.com'",
            ),
            Some("spec.validation.hostname"),
        ),
        (
            "nine CA references",
            tls_policy(
                SVC,
                &format!(
                    "hostname: b.example, caCertificateRefs: [{}]",
                    ["{group: '', kind: ConfigMap, name: ca}"; 9].join(", ")
                ),
            ),
            Some("spec.validation.caCertificateRefs"),
        ),
        (
            "CA references and well-known CAs",
            tls_policy(SVC, &format!("{CA}, wellKnownCACertificates: System")),
            Some("spec.validation"),
        ),
        (
            "neither CA references nor well-known CAs",
            tls_policy(SVC, "hostname: b.example"),
            Some("spec.validation"),
        ),
        (
            "well-known CAs only",
            tls_policy(SVC, "hostname: b.example, wellKnownCACertificates: System"),
            None,
        ),
        (
            "well-known CAs neither System nor domain-prefixed",
            tls_policy(
                SVC,
                "hostname: b.example, wellKnownCACertificates: Everyone",
            ),
            Some("spec.validation.wellKnownCACertificates"),
        ),
        (
            "six SANs",
            sans(&["{type: Hostname, hostname: a.example}"; 6].join(", ")),
            Some("spec.validation.subjectAltNames"),
        ),
        (
            "a Hostname SAN without a hostname",
            sans("{type: Hostname}"),
            Some("spec.validation.subjectAltNames[0].hostname"),
        ),
        (
            "a Hostname SAN with a URI",
            sans("{type: Hostname, hostname: a.example, uri: 'spiffe://a/b'}"),
            Some("spec.validation.subjectAltNames[0].uri"),
        ),
        (
            "a URI SAN without a URI",
            sans("{type: URI}"),
            Some("spec.validation.subjectAltNames[0].uri"),
        ),
        (
            "a URI SAN with a hostname",
            sans("{type: URI, uri: 'spiffe://a/b', hostname: a.example}"),
            Some("spec.validation.subjectAltNames[0].hostname"),
        ),
        (
            "a SAN of another type",
            sans("{type: Email, hostname: a.example}"),
            Some("spec.validation.subjectAltNames[0].type"),
        ),
        (
            "a Hostname and a URI SAN",
            sans("{type: Hostname, hostname: a.example}, {type: URI, uri: 'spiffe://td/ns/a'}"),
            None,
        ),
    ]);
}

/// `wellKnownCACertificates` is read under its CRD spelling (it was
/// `wellKnownCaCertificates`, so the field was never read).
#[test]
fn well_known_ca_certificates_is_read() {
    let l = load_str(
        "t.yaml",
        &tls_policy(SVC, "hostname: b.example, wellKnownCACertificates: System"),
    );
    let Some((Object::BackendTlsPolicy(p), _)) = l.objects.first() else {
        panic!("not loaded: {:?}", l.diagnostics)
    };
    assert_eq!(
        p.spec.validation.well_known_ca_certificates,
        Some(WellKnownCaCertificates::System)
    );
}

#[test]
fn route_rules() {
    check(&[
        (
            "a parentRef's sectionName with uppercase",
            http_route("parentRefs: [{name: g, sectionName: Http}]"),
            Some("spec.parentRefs[0].sectionName"),
        ),
        (
            "a rule name with uppercase",
            http_rule(&format!("name: First, {BACKEND}")),
            Some("spec.rules[0].name"),
        ),
        (
            "an HTTPRoute hostname that looks like an IPv4 address",
            http_route("hostnames: [10.0.0.1]"),
            None,
        ),
        (
            "a header match value with two spaces",
            http_rule("matches: [{headers: [{name: x, value: 'a  b'}]}]"),
            Some("spec.rules[0].matches[0].headers[0].value"),
        ),
        (
            "a header match value starting with a space",
            http_rule("matches: [{headers: [{name: x, value: ' a'}]}]"),
            Some("spec.rules[0].matches[0].headers[0].value"),
        ),
        (
            "an empty header match value",
            http_rule("matches: [{headers: [{name: x, value: ''}]}]"),
            Some("spec.rules[0].matches[0].headers[0].value"),
        ),
        (
            "a header match value with a tab between words",
            http_rule("matches: [{headers: [{name: x, value: \"a\\tb\"}]}]"),
            None,
        ),
        (
            "an empty query parameter value",
            http_rule("matches: [{queryParams: [{name: x, value: ''}]}]"),
            Some("spec.rules[0].matches[0].queryParams[0].value"),
        ),
        (
            "a query parameter value of 1025 characters",
            http_rule(&format!(
                "matches: [{{queryParams: [{{name: x, value: {}}}]}}]",
                "v".repeat(1025)
            )),
            Some("spec.rules[0].matches[0].queryParams[0].value"),
        ),
        (
            "a query parameter value with spaces",
            http_rule("matches: [{queryParams: [{name: x, value: 'a  b'}]}]"),
            None,
        ),
        (
            "a path with a space",
            http_rule("matches: [{path: {type: PathPrefix, value: '/a b'}}]"),
            Some("spec.rules[0].matches[0].path.value"),
        ),
        (
            "a path with '#'",
            http_rule("matches: [{path: {type: PathPrefix, value: '/a#b'}}]"),
            Some("spec.rules[0].matches[0].path.value"),
        ),
        (
            "a path with a '%' that escapes nothing",
            http_rule("matches: [{path: {type: PathPrefix, value: '/a%zz'}}]"),
            Some("spec.rules[0].matches[0].path.value"),
        ),
        (
            "a path with sub-delimiters and an escape",
            http_rule("matches: [{path: {type: PathPrefix, value: \"/a!$&'()*+,;=:@%20\"}}]"),
            None,
        ),
    ]);
}

#[test]
fn filter_rules() {
    let filter = |f: &str| http_rule(&format!("filters: [{f}], {BACKEND}"));
    let modifier = |m: &str| {
        filter(&format!(
            "{{type: RequestHeaderModifier, requestHeaderModifier: {m}}}"
        ))
    };
    let cors = |c: &str| filter(&format!("{{type: CORS, cors: {c}}}"));
    check(&[
        (
            "a header set twice by the same name",
            modifier("{set: [{name: x-a, value: '1'}, {name: x-a, value: '2'}]}"),
            Some("spec.rules[0].filters[0].requestHeaderModifier.set[1].name"),
        ),
        (
            "header names that differ only in case",
            modifier("{set: [{name: x-a, value: '1'}, {name: X-A, value: '2'}]}"),
            None,
        ),
        (
            "a header value with a leading space",
            modifier("{add: [{name: x-a, value: ' 1'}]}"),
            Some("spec.rules[0].filters[0].requestHeaderModifier.add[0].value"),
        ),
        (
            "a header removed twice",
            modifier("{remove: [x-a, x-a]}"),
            Some("spec.rules[0].filters[0].requestHeaderModifier.remove[1]"),
        ),
        (
            "a CORS config on another filter type",
            filter("{type: RequestHeaderModifier, cors: {allowOrigins: ['*']}}"),
            Some("spec.rules[0].filters[0]"),
        ),
        (
            "'*' and another origin",
            cors("{allowOrigins: ['*', 'https://a.example']}"),
            Some("spec.rules[0].filters[0].cors.allowOrigins"),
        ),
        (
            "'*' and another method",
            cors("{allowMethods: ['*', GET]}"),
            Some("spec.rules[0].filters[0].cors.allowMethods"),
        ),
        (
            "'*' and another header",
            cors("{allowHeaders: ['*', x-a]}"),
            Some("spec.rules[0].filters[0].cors.allowHeaders"),
        ),
        (
            "a method that is not one",
            cors("{allowMethods: [FETCH]}"),
            Some("spec.rules[0].filters[0].cors.allowMethods[0]"),
        ),
        (
            "a maxAge of 0",
            cors("{maxAge: 0}"),
            Some("spec.rules[0].filters[0].cors.maxAge"),
        ),
        (
            "wildcards alone",
            cors("{allowOrigins: ['*'], allowMethods: ['*'], allowHeaders: ['*'], maxAge: 5}"),
            None,
        ),
        (
            "a RequestRedirect with backendRefs",
            filter("{type: RequestRedirect, requestRedirect: {hostname: a.example}}"),
            Some("spec.rules[0].filters"),
        ),
        (
            "a backendRef's URLRewrite with ReplacePrefixMatch and two matches",
            http_rule(
                "matches: [{path: {type: PathPrefix, value: /a}}, {path: {type: PathPrefix, value: /b}}], backendRefs: [{name: s, port: 80, filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /c}}}]}]",
            ),
            Some("spec.rules[0].backendRefs"),
        ),
        (
            "a backendRef's URLRewrite with ReplacePrefixMatch and one PathPrefix match",
            http_rule(
                "matches: [{path: {type: PathPrefix, value: /a}}], backendRefs: [{name: s, port: 80, filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /c}}}]}]",
            ),
            None,
        ),
    ]);
}

#[test]
fn grpc_route_rules() {
    check(&[
        (
            "a URLRewrite filter",
            grpc_rule("filters: [{type: URLRewrite, urlRewrite: {hostname: a.example}}]"),
            Some("spec.rules[0].filters[0].type"),
        ),
        (
            "a service starting with a digit",
            grpc_rule("matches: [{method: {service: 9pkg.Svc}}]"),
            Some("spec.rules[0].matches[0].method.service"),
        ),
        (
            "a service with an empty part",
            grpc_rule("matches: [{method: {service: pkg..Svc}}]"),
            Some("spec.rules[0].matches[0].method.service"),
        ),
        (
            "a method starting with a digit",
            grpc_rule("matches: [{method: {method: 1Get}}]"),
            Some("spec.rules[0].matches[0].method.method"),
        ),
        (
            "a service with a leading dot",
            grpc_rule("matches: [{method: {service: .pkg.Svc, method: Get}}]"),
            None,
        ),
    ]);
}

#[test]
fn session_persistence_rules() {
    let sp = |s: &str| http_rule(&format!("sessionPersistence: {s}, {BACKEND}"));
    let f = "spec.rules[0].sessionPersistence";
    check(&[
        ("empty (a Cookie session)", sp("{}"), Some(f)),
        (
            "a Cookie session without cookie",
            sp("{type: Cookie}"),
            Some(f),
        ),
        (
            "cookieConfig, the v1.1-v1.4 field, without cookie",
            sp("{absoluteTimeout: 1h, cookieConfig: {lifetimeType: Permanent}}"),
            Some(f),
        ),
        (
            "a Header session without header",
            sp("{type: Header}"),
            Some(f),
        ),
        (
            "a cookie on a Header session",
            sp("{type: Header, header: {name: x-s}, cookie: {}}"),
            Some(f),
        ),
        (
            "a header on a Cookie session",
            sp("{cookie: {}, header: {name: x-s}}"),
            Some(f),
        ),
        (
            "a Permanent cookie without absoluteTimeout",
            sp("{cookie: {lifetimeType: Permanent}}"),
            Some(f),
        ),
        ("an unknown type", sp("{type: Sticky, cookie: {}}"), Some(f)),
        (
            "an unknown lifetimeType",
            sp("{cookie: {lifetimeType: Forever}}"),
            Some(f),
        ),
        (
            "a cookie name with a space",
            sp("{cookie: {name: 'a b'}}"),
            Some(f),
        ),
        (
            "a header without a name",
            sp("{type: Header, header: {}}"),
            Some(f),
        ),
        (
            "an absoluteTimeout in days",
            sp("{absoluteTimeout: 1d, cookie: {}}"),
            Some(f),
        ),
        (
            "a Permanent cookie with absoluteTimeout",
            sp("{absoluteTimeout: 1h, cookie: {name: cart, lifetimeType: Permanent}}"),
            None,
        ),
        (
            "a Header session",
            sp("{type: Header, header: {name: x-session}}"),
            None,
        ),
        (
            // Left to the implementation: the engine drops the rule.
            "an absoluteTimeout of 0",
            sp("{absoluteTimeout: 0s, cookie: {}}"),
            None,
        ),
        (
            "on a GRPCRoute rule, a cookie on a Header session",
            grpc_rule("sessionPersistence: {type: Header, header: {name: x-s}, cookie: {}}"),
            Some(f),
        ),
    ]);
}

#[test]
fn l4_route_rules_follow_the_version_written() {
    let two = format!("rules: [{{{BACKEND}}}, {{{BACKEND}}}]");
    let one = format!("rules: [{{{BACKEND}}}]");
    check(&[
        (
            "TCPRoute v1 with two rules",
            l4("TCPRoute", "v1", &two),
            Some("spec.rules"),
        ),
        (
            "UDPRoute v1 with two rules",
            l4("UDPRoute", "v1", &two),
            Some("spec.rules"),
        ),
        (
            "TCPRoute v1alpha2 with two rules",
            l4("TCPRoute", "v1alpha2", &two),
            None,
        ),
        (
            "TLSRoute v1 with two rules",
            l4("TLSRoute", "v1", &format!("hostnames: [a.example], {two}")),
            Some("spec.rules"),
        ),
        (
            "TLSRoute v1 without hostnames",
            l4("TLSRoute", "v1", &one),
            Some("spec.hostnames"),
        ),
        (
            "TLSRoute v1alpha3 without hostnames",
            l4("TLSRoute", "v1alpha3", &one),
            Some("spec.hostnames"),
        ),
        (
            "TLSRoute v1alpha2 without hostnames",
            l4("TLSRoute", "v1alpha2", &one),
            None,
        ),
        (
            "TLSRoute v1 with an IP address",
            l4("TLSRoute", "v1", &format!("hostnames: [10.0.0.1], {one}")),
            Some("spec.hostnames[0]"),
        ),
        (
            "TLSRoute v1alpha2 with an IP address",
            l4(
                "TLSRoute",
                "v1alpha2",
                &format!("hostnames: [10.0.0.1], {one}"),
            ),
            None,
        ),
        (
            "TLSRoute v1 with 17 hostnames",
            l4(
                "TLSRoute",
                "v1",
                &format!(
                    "hostnames: [{}], {one}",
                    (0..17)
                        .map(|i| format!("h{i}.example"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            None,
        ),
    ]);
}

/// Without a version, what every served version accepts passes.
#[test]
fn validate_without_a_version_takes_what_any_version_accepts() {
    let l = load_str(
        "t.yaml",
        &l4(
            "TCPRoute",
            "v1alpha2",
            &format!("rules: [{{{BACKEND}}}, {{{BACKEND}}}]"),
        ),
    );
    let (mut obj, _) = l.objects.into_iter().next().expect("v1alpha2 loads");
    assert_eq!(super::validate(&mut obj), vec![]);
    assert_eq!(
        super::validate_served_as(&mut obj, "gateway.networking.k8s.io/v1")
            .iter()
            .map(|e| e.field.as_str())
            .collect::<Vec<_>>(),
        ["spec.rules"]
    );
}
