//! `gwcore serve --kubernetes --gateway-services` against a genuine
//! kube-apiserver (started by `source .ci/k8s.sh`; see
//! gwcore-k8s/tests/support), as deploy/ runs it: the Gateway's Service
//! sends its port to the port `--listen` binds, and, the Gateway being in
//! another namespace than the proxy pods (`POD_NAMESPACE`), it has no
//! selector and EndpointSlices list the ready proxy pods at that port.

#[path = "../../gwcore-k8s/tests/support/mod.rs"]
mod support;

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use kube::api::{Api, ListParams};
use kube::core::DynamicObject;
use serde_json::{Value, json};
use support::*;

/// The `gwcore` process; killed when dropped.
struct Gwcore(Child);

impl Drop for Gwcore {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_kubernetes_sends_the_gateways_service_to_the_listened_port() {
    let Some(c) = cluster().await else { return };
    let sfx = suffix("servesvc");
    let ours = format!("example.com/gwcore-serve-{sfx}");
    let mut objs = acme(&sfx, &ours);
    let pods_ns = format!("gwp-{sfx}");
    objs.insert(
        0,
        json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": pods_ns}}),
    );
    c.apply_all(&objs).await;
    let app = format!("proxy-{sfx}");
    proxy_pod(&c, &pods_ns, "proxy-0", &app, "10.244.2.1", true).await;

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kubeconfig = std::env::var("KUBECONFIG").expect("KUBECONFIG");
    let _gwcore = Gwcore(
        Command::new(env!("CARGO_BIN_EXE_gwcore"))
            .args(["serve", "--kubernetes", "--kubeconfig", &kubeconfig])
            .args(["--controller-name", &ours, "--no-leader-election"])
            .args(["--listen", &format!("80=127.0.0.1:{port}")])
            .args(["--gateway-services", "--gateway-service-type=ClusterIP"])
            .arg(format!("--gateway-service-selector=app={app}"))
            // As deploy/ sets it: the namespace of the pods.
            .env("POD_NAMESPACE", &pods_ns)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap(),
    );

    let infra = format!("infra-ns-{sfx}");
    let (svc, _) = eventually("the Gateway's Service", Duration::from_secs(60), || {
        let (c, infra) = (&c, &infra);
        async move {
            c.get("v1", "Service", infra, "gwcore-shared-gateway")
                .await
                .ok_or("no Service".to_string())
        }
    })
    .await;
    assert_eq!(
        svc.data["spec"]["ports"],
        json!([{"name": "tcp-80", "port": 80, "protocol": "TCP", "targetPort": port}]),
        "port 80 goes to the port --listen binds"
    );
    assert_eq!(svc.data["spec"].get("selector"), None);

    let slices: Api<DynamicObject> =
        Api::namespaced_with(c.client.clone(), &infra, &c.endpoint_slices());
    let by_service =
        ListParams::default().labels("kubernetes.io/service-name=gwcore-shared-gateway");
    eventually(
        "the slice lists the pod at the listened port",
        Duration::from_secs(30),
        || {
            let (slices, by_service) = (&slices, &by_service);
            async move {
                let items = slices.list(by_service).await.unwrap().items;
                let got: Vec<(Value, Value)> = items
                    .iter()
                    .map(|s| {
                        (
                            s.data["endpoints"][0]["addresses"].clone(),
                            s.data["ports"].clone(),
                        )
                    })
                    .collect();
                let want = vec![(
                    json!(["10.244.2.1"]),
                    json!([{"name": "tcp-80", "port": port, "protocol": "TCP"}]),
                )];
                if got == want {
                    Ok(())
                } else {
                    Err(format!("{got:?}"))
                }
            }
        },
    )
    .await;
    c.cleanup(&objs).await;
    c.delete("v1", "Pod", &pods_ns, "proxy-0").await;
}
