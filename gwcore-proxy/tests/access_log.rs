//! The access log: one line per request naming what decided it.

mod common;

use std::path::Path;
use std::sync::Arc;

use gwcore_proxy::provider::{Runtime, RuntimeOptions};

fn options() -> RuntimeOptions {
    common::options(true)
}

/// A log sink for one test.
#[derive(Clone, Default)]
struct Sink(Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn access_log_names_the_listener_route_rule_and_backend() {
    let sink = Sink::default();
    let writer = sink.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || writer.clone())
        .finish();
    // Global, and alone in its test binary: tracing caches per call site
    // whether anyone listens, which thread-local subscribers in parallel
    // tests would race on.
    tracing::subscriber::set_global_default(subscriber).unwrap();
    let rt = Runtime::start(
        vec![Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/acme")],
        options(),
    )
    .await
    .unwrap();
    let addr = rt.local_addr(80).unwrap();
    let c = common::client();
    common::get(&c, addr, "acme.example", "/careers/x").await;
    common::get(&c, addr, "acme.example", "/hr").await;
    let log = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("gwcore::access"))
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(lines[0].contains("status=200"), "{}", lines[0]);
    assert!(
        lines[0].contains("matched=listener=infra-ns/shared-gateway/shared-http route=HTTPRoute careers/careers rule=0 match=0"),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains("backend=careers/careers:9080"),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains("status=404"), "{}", lines[1]);
    assert!(lines[1].contains("uri=/hr"), "{}", lines[1]);
}
