//! Tracing: W3C Trace Context sent on to backends, spans exported over
//! OTLP/gRPC to a collector (here a fake one, a tonic server of the OTLP
//! trace service), and the trace id in the access log.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use gwcore_proxy::provider::Runtime;
use gwcore_proxy::server::ServeOptions;
use gwcore_proxy::tracing_otel::{SamplingRatio, TracingOptions};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use tokio::net::TcpListener;

const EXAMPLE_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const EXAMPLE_PARENT: &str = "00f067aa0ba902b7";

/// A gateway and a route whose rule 1 retries 503 twice, both to the
/// echo backend `echo` (started for the Service without endpoints).
fn manifest() -> String {
    format!(
        "{}---\n{}",
        common::HTTP_GATEWAY,
        r#"apiVersion: v1
kind: Service
metadata: {name: echo, namespace: default}
spec: {ports: [{port: 80}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: traced, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /plain}}]
    backendRefs: [{name: echo, port: 80}]
  - matches: [{path: {type: PathPrefix, value: /retry}}]
    retry: {codes: [503], attempts: 2}
    backendRefs: [{name: echo, port: 80}]
"#
    )
}

// ---------------------------------------------------------------- collector

/// The spans a fake collector received.
#[derive(Clone, Default)]
struct Collector(Arc<Mutex<Vec<Span>>>);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.0.lock().unwrap();
        for rs in request.into_inner().resource_spans {
            for ss in rs.scope_spans {
                spans.extend(ss.spans);
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

/// Serves the OTLP trace service (gRPC, h2c) on an ephemeral port.
async fn collector() -> (Collector, SocketAddr) {
    let c = Collector::default();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let svc = TraceServiceServer::new(c.clone());
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let svc = hyper_util::service::TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (c, addr)
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn attribute(span: &Span, key: &str) -> Option<Value> {
    span.attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone()?.value)
}

// ---------------------------------------------------------------- access log

/// Log lines of every test of this binary (a global subscriber: tracing
/// caches per call site whether anyone listens).
fn log_sink() -> Arc<Mutex<Vec<u8>>> {
    static SINK: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    SINK.get_or_init(|| {
        let sink = Arc::new(Mutex::new(Vec::new()));
        let writer = Writer(sink.clone());
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
        sink
    })
    .clone()
}

#[derive(Clone)]
struct Writer(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Writer {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The access log lines for `path`.
fn access_lines(path: &str) -> Vec<String> {
    let log = String::from_utf8(log_sink().lock().unwrap().clone()).unwrap();
    log.lines()
        .filter(|l| l.contains("gwcore::access") && l.contains(&format!("uri={path} ")))
        .map(str::to_owned)
        .collect()
}

// ---------------------------------------------------------------- requests

async fn start(tracing: TracingOptions) -> (Runtime, common::TempDir) {
    log_sink();
    let dir = common::manifest_dir("tracing", &manifest());
    let serve = ServeOptions {
        tracing,
        ..ServeOptions::default()
    };
    let rt = Runtime::start_with(vec![dir.0.clone()], common::options(true), serve)
        .await
        .unwrap();
    (rt, dir)
}

fn traced(collector: SocketAddr, ratio: f64) -> TracingOptions {
    TracingOptions {
        otlp_endpoint: Some(format!("http://{collector}").parse().unwrap()),
        sampling_ratio: SamplingRatio::try_from(ratio).unwrap(),
    }
}

/// GETs `path` with `headers`; the status and the request headers the
/// echo backend saw (names in lower case; a header seen twice is joined
/// by commas).
async fn send(
    rt: &Runtime,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, std::collections::BTreeMap<String, String>) {
    let addr = rt.local_addr(80).unwrap();
    let mut req = http::Request::builder()
        .uri(format!("http://{addr}{path}"))
        .header("host", "example.com");
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = common::client()
        .request(req.body(Full::new(Bytes::new())).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let echoed: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let mut seen = std::collections::BTreeMap::new();
    if let Some(h) = echoed["headers"].as_object() {
        for (k, v) in h {
            let joined = v
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap())
                .collect::<Vec<_>>()
                .join(",");
            seen.insert(k.to_ascii_lowercase(), joined);
        }
    }
    (status, seen)
}

/// `traceparent`'s four fields.
fn fields(tp: &str) -> [String; 4] {
    let parts: Vec<&str> = tp.split('-').collect();
    assert_eq!(parts.len(), 4, "{tp}");
    assert_eq!(tp.len(), 55, "{tp}");
    [0, 1, 2, 3].map(|i| parts[i].to_owned())
}

/// Waits for the tracer to export what is pending.
async fn flush(rt: &Runtime) {
    let proxy = rt.proxy().clone();
    tokio::task::spawn_blocking(move || proxy.tracer().expect("tracing is on").flush())
        .await
        .unwrap();
}

// ---------------------------------------------------------------- tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracing_on_continues_the_callers_trace_and_exports_the_span() {
    let (spans, at) = collector().await;
    let (rt, _dir) = start(traced(at, 1.0)).await;
    let incoming = format!("00-{EXAMPLE_TRACE}-{EXAMPLE_PARENT}-01");
    let uuid = format!("u{}", fastrand::u64(..));
    let path = format!("/retry?uuid={uuid}&succeedAfter=2&responseCode=503");
    let (status, seen) = send(
        &rt,
        &path,
        &[
            ("traceparent", &incoming),
            ("tracestate", "congo=t61rcWkgMzE"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    // The backend sees the caller's trace with the proxy's span as parent.
    let [version, trace, parent, flags] = fields(&seen["traceparent"]);
    assert_eq!(
        (version.as_str(), trace.as_str(), flags.as_str()),
        ("00", EXAMPLE_TRACE, "01")
    );
    assert_ne!(parent, EXAMPLE_PARENT);
    assert_ne!(parent, "0000000000000000");
    assert_eq!(seen["tracestate"], "congo=t61rcWkgMzE");

    flush(&rt).await;
    let spans = spans.0.lock().unwrap().clone();
    let span = spans
        .iter()
        .find(|s| hex(&s.span_id) == parent)
        .unwrap_or_else(|| panic!("no span {parent} among {spans:?}"));
    assert_eq!(hex(&span.trace_id), EXAMPLE_TRACE);
    assert_eq!(hex(&span.parent_span_id), EXAMPLE_PARENT);
    assert_eq!(span.name, "GET HTTPRoute default/traced");
    let s = |v: &str| Some(Value::StringValue(v.into()));
    assert_eq!(attribute(span, "gwcore.gateway"), s("default/gw"));
    assert_eq!(
        attribute(span, "gwcore.route"),
        s("HTTPRoute default/traced")
    );
    assert_eq!(attribute(span, "gwcore.rule"), Some(Value::IntValue(1)));
    assert_eq!(attribute(span, "gwcore.backend"), s("default/echo:80"));
    assert_eq!(attribute(span, "url.path"), s("/retry"));
    assert_eq!(
        attribute(span, "http.response.status_code"),
        Some(Value::IntValue(200))
    );
    assert_eq!(attribute(span, "gwcore.retries"), Some(Value::IntValue(2)));

    // The access log carries the trace id.
    let lines = access_lines(&path);
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(&format!("trace_id={EXAMPLE_TRACE}")),
        "{}",
        lines[0]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tracing_on_starts_a_trace_when_none_or_an_invalid_one_came() {
    let (_spans, at) = collector().await;
    let (rt, _dir) = start(traced(at, 1.0)).await;
    let (status, seen) = send(&rt, "/plain/none", &[]).await;
    assert_eq!(status, 200);
    let [version, trace, parent, flags] = fields(&seen["traceparent"]);
    assert_eq!((version.as_str(), flags.as_str()), ("00", "01"));
    assert_ne!(trace, "0".repeat(32));
    assert_ne!(parent, "0".repeat(16));
    let lines = access_lines("/plain/none");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(&format!("trace_id={trace}")),
        "{}",
        lines[0]
    );

    // An all-zero trace id is invalid: a new trace, and the old state
    // goes with it.
    let zero = format!("00-{}-{EXAMPLE_PARENT}-01", "0".repeat(32));
    let (_, seen) = send(
        &rt,
        "/plain/zero",
        &[("traceparent", &zero), ("tracestate", "congo=t61rcWkgMzE")],
    )
    .await;
    let [_, trace2, _, _] = fields(&seen["traceparent"]);
    assert_ne!(trace2, "0".repeat(32));
    assert_ne!(trace2, trace);
    assert!(!seen.contains_key("tracestate"), "{seen:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sampling_follows_the_caller_then_the_ratio() {
    let (spans, at) = collector().await;
    // A ratio of zero: only traces a caller sampled are.
    let (rt, _dir) = start(traced(at, 0.0)).await;
    let sampled = format!("00-{EXAMPLE_TRACE}-{EXAMPLE_PARENT}-01");
    let unsampled_trace = "0af7651916cd43dd8448eb211c80319c";
    let unsampled = format!("00-{unsampled_trace}-b7ad6b7169203331-00");
    let (_, a) = send(&rt, "/plain/a", &[("traceparent", &sampled)]).await;
    let (_, b) = send(&rt, "/plain/b", &[("traceparent", &unsampled)]).await;
    let (_, c) = send(&rt, "/plain/c", &[]).await;
    let [_, _, _, fa] = fields(&a["traceparent"]);
    let [_, tb, _, fb] = fields(&b["traceparent"]);
    let [_, _, _, fc] = fields(&c["traceparent"]);
    assert_eq!((fa.as_str(), fb.as_str(), fc.as_str()), ("01", "00", "00"));
    assert_eq!(tb, unsampled_trace);
    flush(&rt).await;
    let spans = spans.0.lock().unwrap().clone();
    let paths: Vec<_> = spans
        .iter()
        .filter_map(|s| attribute(s, "url.path"))
        .collect();
    assert_eq!(paths, vec![Value::StringValue("/plain/a".into())]);
}

#[tokio::test]
async fn tracing_off_passes_the_context_through_and_logs_its_trace_id() {
    let (rt, _dir) = start(TracingOptions::default()).await;
    assert!(rt.proxy().tracer().is_none());
    let incoming = format!("00-{EXAMPLE_TRACE}-{EXAMPLE_PARENT}-01");
    let (status, seen) = send(
        &rt,
        "/plain/off",
        &[
            ("traceparent", &incoming),
            ("tracestate", "congo=t61rcWkgMzE"),
        ],
    )
    .await;
    assert_eq!(status, 200);
    // Not a participant: the backend sees what the client sent.
    assert_eq!(seen["traceparent"], incoming);
    assert_eq!(seen["tracestate"], "congo=t61rcWkgMzE");
    let lines = access_lines("/plain/off");
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(
        lines[0].contains(&format!("trace_id={EXAMPLE_TRACE}")),
        "{}",
        lines[0]
    );
    // Without one, none is made.
    let (_, seen) = send(&rt, "/plain/off-none", &[]).await;
    assert!(!seen.contains_key("traceparent"), "{seen:?}");
}
