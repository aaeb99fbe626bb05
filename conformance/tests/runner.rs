//! The runner judges: wrong expectations fail with the check that failed,
//! what engine mode cannot judge is counted as not run, and edits behave as
//! the API server's do. Vectors are written to a temporary folder and use
//! the project's ACME scenario manifest.

mod common;

use gwcore_conformance::{CheckKind, Mode, Outcome, Report, VectorResult, Verdict};

/// Runs one vector given as YAML text.
fn run(test: &str, yaml: &str) -> (Report, VectorResult) {
    common::run_one(test, yaml, Mode::Engine)
}

const HEAD: &str = common::ACME_HEAD;

#[test]
fn a_wrong_condition_fails_with_the_check_that_failed() {
    let yaml = format!(
        "{HEAD}steps:\n- routes:\n  - kind: HTTPRoute\n    name: hr/hr\n    parents:\n    - parentRef: {{namespace: infra-ns, name: shared-gateway}}\n      conditions:\n      - {{type: Accepted, status: \"True\"}}\n"
    );
    let (_, v) = run("wrong-condition", &yaml);
    assert_eq!(v.verdict, Verdict::Fail);
    let msg = v.message.expect("a failing vector says why");
    assert!(
        msg.starts_with("step 1: HTTPRoute hr/hr: parent infra-ns/shared-gateway"),
        "{msg}"
    );
    assert!(
        msg.contains("NotAllowedByListeners"),
        "shows what status holds: {msg}"
    );
}

#[test]
fn a_wrong_backend_fails_the_request_check() {
    let yaml = format!(
        "{HEAD}steps:\n- requests:\n  - {{gateway: infra-ns/shared-gateway, port: 80, request: {{path: /careers}}, response: {{statusCodes: [200]}}, backend: product, namespace: product}}\n"
    );
    let (report, v) = run("wrong-backend", &yaml);
    assert_eq!(v.verdict, Verdict::Fail, "{:?}", v.message);
    let r = report.tally(CheckKind::Request);
    assert_eq!((r.passed, r.failed, r.total), (0, 1, 1));
}

#[test]
fn a_refused_route_gets_404_and_a_right_expectation_passes() {
    let yaml = format!(
        "{HEAD}steps:\n- requests:\n  - {{gateway: infra-ns/shared-gateway, port: 80, request: {{path: /hr}}, response: {{statusCodes: [404]}}}}\n  - {{gateway: infra-ns/shared-gateway, port: 80, request: {{path: /product/x}}, backend: product, namespace: product}}\n"
    );
    let (report, v) = run("right", &yaml);
    assert_eq!(v.verdict, Verdict::Pass, "{:?}", v.message);
    assert_eq!(report.tally(CheckKind::Request).passed, 2);
}

#[test]
fn wire_only_requests_count_but_do_not_run() {
    let yaml = format!(
        "{HEAD}steps:\n- requests:\n  - {{gateway: infra-ns/shared-gateway, port: 80, request: {{path: /careers}}, backend: careers, wire_only: true}}\n"
    );
    let (report, v) = run("wire-only", &yaml);
    assert_eq!(
        v.verdict,
        Verdict::Skip,
        "nothing could be judged: {:?}",
        v.message
    );
    let r = report.tally(CheckKind::Request);
    assert_eq!((r.passed, r.not_run, r.total), (0, 1, 1));
    assert!(
        report
            .lines()
            .contains(&"request checks: 0/1 passed".to_string())
    );
}

#[test]
fn a_failed_edit_fails_the_vector_and_later_checks_count_as_not_run() {
    let yaml = format!(
        "{HEAD}steps:\n- gateways:\n  - name: infra-ns/shared-gateway\n    conditions: [{{type: Accepted, status: \"True\"}}]\n- delete: [{{kind: HTTPRoute, namespace: hr, name: nope}}]\n  gateways:\n  - name: infra-ns/shared-gateway\n    conditions: [{{type: Accepted, status: \"True\"}}]\n"
    );
    let (report, v) = run("failed-edit", &yaml);
    assert_eq!(v.verdict, Verdict::Fail);
    assert_eq!(
        v.message.as_deref(),
        Some("step 2: HTTPRoute hr/nope not found")
    );
    let s = report.tally(CheckKind::Status);
    assert_eq!((s.passed, s.not_run, s.total), (1, 1, 2));
}

#[test]
fn patches_bump_the_generation_and_the_engine_sees_them() {
    // Labelling hr lets its route attach; a spec patch bumps the generation.
    let yaml = format!(
        "{HEAD}steps:\n- patch:\n  - {{kind: Namespace, name: hr, merge: {{metadata: {{labels: {{shared-gateway-access: \"true\"}}}}}}}}\n  - {{kind: HTTPRoute, namespace: hr, name: hr, merge: {{spec: {{hostnames: [hr.example.com]}}}}, expectGenerationChange: true}}\n  routes:\n  - kind: HTTPRoute\n    name: hr/hr\n    latestConditions: true\n    parents:\n    - parentRef: {{namespace: infra-ns, name: shared-gateway}}\n      conditions: [{{type: Accepted, status: \"True\", reason: Accepted}}]\n  requests:\n  - {{gateway: infra-ns/shared-gateway, port: 80, request: {{host: hr.example.com, path: /hr}}, backend: hr, namespace: hr}}\n"
    );
    let (report, v) = run("patch", &yaml);
    assert_eq!(v.verdict, Verdict::Pass, "{:?}", v.message);
    let s = report.tally(CheckKind::Status);
    assert_eq!(
        (s.passed, s.total),
        (3, 3),
        "generation, latestConditions, Accepted"
    );
    assert!(v.checks.iter().all(|c| c.outcome == Outcome::Pass));
}

#[test]
fn a_missing_manifest_fails_the_setup() {
    let yaml = "name: T\ncontrollerName: x\nmanifests: [absent.yaml]\nsteps:\n- gateways:\n  - {name: a/b, latestConditions: true}\n";
    let (report, v) = run("missing-manifest", yaml);
    assert_eq!(v.verdict, Verdict::Fail);
    assert!(
        v.message
            .as_deref()
            .unwrap_or("")
            .starts_with("setup: manifest absent.yaml not found"),
        "{:?}",
        v.message
    );
    assert_eq!(report.tally(CheckKind::Status).not_run, 1);
}

#[test]
fn unknown_fields_make_a_vector_unreadable() {
    let yaml =
        format!("{HEAD}steps:\n- gateways:\n  - {{name: infra-ns/shared-gateway, listenrs: []}}\n");
    let (_, v) = run("unknown-field", &yaml);
    assert_eq!(v.verdict, Verdict::Fail);
    assert!(
        v.message.as_deref().unwrap_or("").contains("listenrs"),
        "{:?}",
        v.message
    );
}

/// The runner honours `skipIfFeatures` / `runIfFeatures` against what our
/// GatewayClass declares in `status.supportedFeatures`
/// (`gwcore::features`): a vector is skipped for a feature gwcore supports
/// or, with `runIfFeatures`, lacks; otherwise it runs (and here fails, to
/// show that it ran).
#[test]
fn features_the_gateway_class_declares_decide_which_vectors_run() {
    let failing_step = "steps:\n- routes:\n  - kind: HTTPRoute\n    name: hr/hr\n    parents:\n    - parentRef: {namespace: infra-ns, name: shared-gateway}\n      conditions:\n      - {type: Accepted, status: \"True\"}\n";
    let with = |extra: &str| format!("{HEAD}{extra}{failing_step}");
    let (_, skipped) = run("skip-supported", &with("skipIfFeatures: [HTTPRoute]\n"));
    assert_eq!(skipped.verdict, Verdict::Skip, "{:?}", skipped.message);
    assert!(
        skipped
            .message
            .as_deref()
            .is_some_and(|m| m.contains("HTTPRoute is supported")),
        "{:?}",
        skipped.message
    );
    let (_, lacking) = run(
        "run-unsupported",
        &with("runIfFeatures: [GatewayStaticAddresses]\n"),
    );
    assert_eq!(lacking.verdict, Verdict::Skip, "{:?}", lacking.message);
    let (_, ran) = run(
        "run-supported",
        &with("runIfFeatures: [HTTPRoute, TLSRoute]\n"),
    );
    assert_eq!(
        ran.verdict,
        Verdict::Fail,
        "the vector ran: {:?}",
        ran.message
    );
}

/// The address placeholders are filled in (`PLACEHOLDER_*_ADDRS` in
/// objects, `{USABLE_ADDRESS}` / `{UNUSABLE_ADDRESS}` anywhere in a vector)
/// and judged against what the runner's data plane serves: the unusable
/// address keeps the Gateway from being Programmed until a patch removes
/// it (GatewayStaticAddresses).
#[test]
fn address_placeholders_are_filled_in_and_judged() {
    let yaml = format!(
        "{HEAD}steps:\n\
         - create:\n  \
           - {{apiVersion: gateway.networking.k8s.io/v1, kind: Gateway, metadata: {{name: static, namespace: infra-ns}}, spec: {{gatewayClassName: acme, addresses: [{{type: IPAddress, value: PLACEHOLDER_UNUSABLE_ADDRS}}, {{type: IPAddress, value: PLACEHOLDER_USABLE_ADDRS}}], listeners: [{{name: http, port: 8080, protocol: HTTP}}]}}}}\n  \
           gateways:\n  \
           - name: infra-ns/static\n    \
             conditions: [{{type: Accepted, status: \"True\"}}, {{type: Programmed, status: \"False\", reason: AddressNotUsable}}]\n\
         - patch: [{{kind: Gateway, namespace: infra-ns, name: static, removeAddresses: [\"{{UNUSABLE_ADDRESS}}\"]}}]\n  \
           gateways:\n  \
           - name: infra-ns/static\n    \
             conditions: [{{type: Programmed, status: \"True\", reason: Programmed}}]\n    \
             addresses: present\n"
    );
    let (_, v) = run("static-addresses", &yaml);
    assert_eq!(v.verdict, Verdict::Pass, "{:?}", v.message);
}
