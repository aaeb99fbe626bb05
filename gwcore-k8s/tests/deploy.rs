//! `deploy/` against the test API server: the kustomize base applies
//! (server-side dry run), and its RBAC is enough: a controller running as
//! the `gwcore` ServiceAccount (impersonated) watches, elects and writes
//! status without a single refused request.

mod support;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use gwcore_k8s::{Controller, LeaseOptions, Options};
use support::*;

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy");

fn kubectl(args: &[&str]) -> Option<String> {
    let out = match Command::new("kubectl").args(args).output() {
        Ok(o) => o,
        Err(e) => {
            assert!(
                std::env::var("CI").map_or(true, |v| v != "true"),
                "CI=true but kubectl cannot run: {e}"
            );
            eprintln!("skipping: kubectl cannot run: {e}");
            return None;
        }
    };
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "kubectl {}: {text}", args.join(" "));
    Some(text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deploy_applies_and_its_rbac_suffices() {
    let Some(c) = cluster().await else { return };
    // A dry run cannot create the namespace the other objects go to.
    let ns_file = format!("{DEPLOY}/namespace.yaml");
    let Some(_) = kubectl(&["apply", "-f", &ns_file]) else {
        return;
    };
    // The test server is Kubernetes 1.20, older than CEL
    // (`x-kubernetes-validations`, 1.25): kubectl's client-side check of
    // the CRDs in deploy/crds refuses that field there, while the server
    // itself (checked here) ignores it.
    let out = kubectl(&[
        "apply",
        "-k",
        DEPLOY,
        "--dry-run=server",
        "--validate=false",
    ])
    .unwrap();
    for kind in [
        "serviceaccount/gwcore",
        "clusterrole",
        "rolebinding",
        "deployment.apps/gwcore",
        "service/gwcore",
        "gatewayclass",
    ] {
        assert!(out.contains(kind), "{kind} missing from:\n{out}");
    }

    // Really create the ServiceAccount and its RBAC, then act as it.
    for f in ["serviceaccount.yaml", "rbac.yaml"] {
        kubectl(&["apply", "-f", Path::new(DEPLOY).join(f).to_str().unwrap()]).unwrap();
    }
    let mut config = kube::Config::infer().await.unwrap();
    config.auth_info.impersonate = Some("system:serviceaccount:gwcore-system:gwcore".into());
    config.auth_info.impersonate_groups = Some(vec![
        "system:serviceaccounts".into(),
        "system:serviceaccounts:gwcore-system".into(),
        "system:authenticated".into(),
    ]);
    let as_sa = kube::Client::try_from(config).unwrap();

    let sfx = suffix("rbac");
    let ours = format!("example.com/gwcore-rbac-{sfx}");
    let objs = acme(&sfx, &ours);
    c.apply_all(&objs).await;
    let mut opts = Options::new(&ours);
    let mut lease = LeaseOptions::new("gwcore-system", format!("rbac-{sfx}"));
    lease.name = format!("gwcore-rbac-{sfx}");
    lease.retry_period = Duration::from_millis(250);
    opts.lease = Some(lease);
    let ctl = Controller::start(as_sa, opts)
        .await
        .expect("discovery as the ServiceAccount");
    let (hr, infra) = (format!("hr-{sfx}"), format!("infra-ns-{sfx}"));
    wait_route(&c, &hr, "hr", &ours, refused("NotAllowedByListeners")).await;
    wait_attached(&c, &infra, "shared-gateway", 2).await;
    let counters = ctl.counters();
    assert!(
        counters.leader,
        "the ServiceAccount may hold the Lease: {counters:?}"
    );
    assert_eq!(
        counters.watch_errors, 0,
        "every watch is allowed: {counters:?}"
    );
    assert_eq!(
        counters.status_failures, 0,
        "every status write is allowed: {counters:?}"
    );
    c.cleanup(&objs).await;
    ctl.shutdown().await;
}
