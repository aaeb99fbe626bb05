//! Embedding the proxy: serve Gateway API objects held in memory, change
//! them, and see the change on the wire.
//!
//! ```text
//! cargo run -p gwcore-proxy --example embed
//! ```

use std::time::Duration;

use gwcore::Snapshot;
use gwcore_proxy::provider::{Runtime, RuntimeOptions};
use gwcore_proxy::server::ListenOptions;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

const MANIFESTS: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: demo}
spec: {controllerName: example.com/demo}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: demo
  listeners: [{name: http, port: 80, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: hello, namespace: default}
spec: {ports: [{port: 8080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: hello, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /hello}}]
    backendRefs: [{name: hello, port: 8080}]
"#;

const BYE_ROUTE: &str = r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: bye, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /bye}}]
    backendRefs: [{name: hello, port: 8080}]
"#;

fn snapshot(yaml: &str) -> Snapshot {
    let loaded = gwcore::load::load_str("example", yaml);
    for d in &loaded.diagnostics {
        eprintln!("{d}");
    }
    Snapshot::from_objects(loaded.objects.into_iter().map(|(o, _)| o))
}

async fn get(url: &str) -> Result<(u16, String), Box<dyn std::error::Error>> {
    let client: Client<_, http_body_util::Empty<bytes::Bytes>> =
        Client::builder(TokioExecutor::new()).build_http();
    let resp = client.get(url.parse()?).await?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let opts = {
        let mut o = RuntimeOptions::new("example.com/demo");
        // Every Gateway port on an ephemeral port of 127.0.0.1.
        o.listen = ListenOptions {
            default_ip: "127.0.0.1".parse()?,
            ephemeral: true,
            ..ListenOptions::default()
        };
        // The `hello` Service has no endpoints: an echo backend stands in.
        o.echo_backends = true;
        o
    };
    let mut rt = Runtime::from_snapshot(snapshot(MANIFESTS), opts).await?;
    let addr = rt.local_addr(80).ok_or("port 80 is not served")?;
    println!("Gateway port 80 is served on {addr}");

    let (status, body) = get(&format!("http://{addr}/hello/world")).await?;
    println!("GET /hello/world -> {status} {body}");
    let (status, _) = get(&format!("http://{addr}/bye")).await?;
    println!("GET /bye -> {status}");

    // Route /bye too; the new table is swapped in, the socket stays.
    let outcome = rt
        .apply(snapshot(&format!("{MANIFESTS}---{BYE_ROUTE}")))
        .await;
    println!("apply: {outcome:?}");
    let (status, _) = get(&format!("http://{addr}/bye")).await?;
    println!("GET /bye -> {status}");

    rt.shutdown(Duration::from_secs(1)).await;
    Ok(())
}
