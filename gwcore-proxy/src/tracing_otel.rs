//! Tracing: a span for each request, its W3C Trace Context sent on to the
//! backend, spans exported over OTLP/gRPC to a collector
//! (`docs/tracing.md`).
//!
//! Off (no [`TracingOptions::otlp_endpoint`], the default), the proxy is
//! not a participant: `traceparent` and `tracestate` go to the backend as
//! the client sent them, no span is made, and the access log shows the
//! trace id of a valid incoming `traceparent`. On, each request gets a
//! server span ([`Tracer::start`]): a valid incoming `traceparent` is its
//! parent (same trace id), otherwise a new trace starts; the backend gets
//! a `traceparent` naming the proxy's span, and the incoming `tracestate`
//! (bounded, [`crate::trace_context::bounded_tracestate`]) when the
//! incoming context was valid. Sampling is parent-based: a caller's
//! `sampled` flag is followed; a new trace is sampled with
//! [`TracingOptions::sampling_ratio`].

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, Status, TraceContextExt, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue, StringValue, Value};
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::{Sampler, SdkTracerProvider};

use crate::metrics::SeriesKey;
use crate::trace_context::{FLAG_SAMPLED, TRACEPARENT, TRACESTATE, TraceIdHex, TraceParent};

/// How requests are traced. Default: off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TracingOptions {
    /// The OTLP/gRPC collector spans are exported to, e.g.
    /// `http://127.0.0.1:4317`; `None` turns tracing off.
    pub otlp_endpoint: Option<http::Uri>,
    /// The share of new traces sampled; a caller's decision is followed.
    pub sampling_ratio: SamplingRatio,
}

/// A sampling ratio in `0.0..=1.0`. Default `1.0` (every trace).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct SamplingRatio(f64);

// Never NaN: `TryFrom` refuses it.
impl Eq for SamplingRatio {}

impl Default for SamplingRatio {
    fn default() -> SamplingRatio {
        SamplingRatio(1.0)
    }
}

impl SamplingRatio {
    /// The ratio.
    pub fn get(self) -> f64 {
        self.0
    }
}

/// A sampling ratio outside `0.0..=1.0`.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("a sampling ratio is between 0.0 and 1.0, not {0}")]
pub struct BadSamplingRatio(pub f64);

impl TryFrom<f64> for SamplingRatio {
    type Error = BadSamplingRatio;

    fn try_from(r: f64) -> Result<SamplingRatio, BadSamplingRatio> {
        if (0.0..=1.0).contains(&r) {
            Ok(SamplingRatio(r))
        } else {
            Err(BadSamplingRatio(r))
        }
    }
}

impl std::str::FromStr for SamplingRatio {
    type Err = String;

    fn from_str(s: &str) -> Result<SamplingRatio, String> {
        let r: f64 = s
            .parse()
            .map_err(|_| format!("{s:?} is not a number between 0.0 and 1.0"))?;
        SamplingRatio::try_from(r).map_err(|e| e.to_string())
    }
}

/// The exporter could not be set up.
#[derive(Debug, thiserror::Error)]
#[error("the OTLP exporter to {endpoint} cannot be built: {reason}")]
pub struct TracerError {
    endpoint: String,
    reason: String,
}

/// Makes the spans of requests and exports them ([`TracingOptions`]).
/// Dropping it flushes what is pending.
pub struct Tracer {
    provider: SdkTracerProvider,
    tracer: opentelemetry_sdk::trace::Tracer,
}

impl std::fmt::Debug for Tracer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tracer").finish_non_exhaustive()
    }
}

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(5);

impl Tracer {
    /// The tracer of `options`, `None` when tracing is off. Must be called
    /// within a Tokio runtime (the exporter's connection runs on it).
    pub fn new(options: &TracingOptions) -> Result<Option<Tracer>, TracerError> {
        let Some(endpoint) = &options.otlp_endpoint else {
            return Ok(None);
        };
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_tonic()
            .with_endpoint(endpoint.to_string())
            .with_timeout(EXPORT_TIMEOUT)
            .build()
            .map_err(|e| TracerError {
                endpoint: endpoint.to_string(),
                reason: e.to_string(),
            })?;
        let provider = SdkTracerProvider::builder()
            .with_batch_exporter(exporter)
            .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
                options.sampling_ratio.get(),
            ))))
            .with_resource(
                opentelemetry_sdk::Resource::builder()
                    .with_service_name("gwcore")
                    .build(),
            )
            .build();
        let tracer = provider.tracer("gwcore-proxy");
        Ok(Some(Tracer { provider, tracer }))
    }

    /// Starts the span of a request and rewrites its `traceparent` (and
    /// `tracestate`) for the backend: the proxy's span is the parent.
    pub fn start(&self, method: &http::Method, headers: &mut http::HeaderMap) -> RequestSpan {
        let incoming = TraceParent::from_headers(headers);
        let parent = match &incoming {
            Some(tp) => Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from_bytes(tp.trace_id),
                SpanId::from_bytes(tp.parent_id),
                TraceFlags::new(tp.flags),
                true,
                TraceState::NONE,
            )),
            None => Context::new(),
        };
        let builder = self
            .tracer
            .span_builder(Cow::Owned(method.as_str().to_owned()))
            .with_kind(SpanKind::Server);
        let span = self.tracer.build_with_context(builder, &parent);
        let sc = span.span_context();
        let ours = TraceParent {
            trace_id: sc.trace_id().to_bytes(),
            parent_id: sc.span_id().to_bytes(),
            flags: (incoming.map_or(0, |tp| tp.flags) & !FLAG_SAMPLED)
                | if sc.is_sampled() { FLAG_SAMPLED } else { 0 },
        };
        let tracestate = match incoming {
            Some(_) => crate::trace_context::bounded_tracestate(headers),
            // A new trace: the old state belongs to no trace we continue.
            None => None,
        };
        headers.insert(TRACEPARENT, ours.to_header());
        match tracestate {
            Some(v) => {
                headers.insert(TRACESTATE, v);
            }
            None => {
                headers.remove(TRACESTATE);
            }
        }
        RequestSpan {
            span,
            trace_id: ours.trace_id_hex(),
            method: method.clone(),
        }
    }

    /// Exports the spans pending now (the exporter otherwise sends them
    /// in batches, every few seconds). Blocks: call it off the runtime's
    /// threads, e.g. with `tokio::task::spawn_blocking`.
    pub fn flush(&self) {
        if let Err(e) = self.provider.force_flush() {
            tracing::warn!(error = %e, "flushing spans failed");
        }
    }
}

/// The span of one request, ended by [`RequestSpan::end`].
#[derive(Debug)]
pub struct RequestSpan {
    span: opentelemetry_sdk::trace::Span,
    trace_id: TraceIdHex,
    method: http::Method,
}

/// What a request's span records at its end.
#[derive(Debug)]
pub struct SpanEnd<'a> {
    /// The Gateway, route and backend.
    pub series: &'a SeriesKey,
    /// The index of the rule that matched, if one did.
    pub rule: Option<usize>,
    /// The request path.
    pub path: &'a str,
    /// The status answered.
    pub status: u16,
    /// Attempts after the first.
    pub retries: u32,
}

impl RequestSpan {
    /// The trace id, for the access log.
    pub fn trace_id(&self) -> TraceIdHex {
        self.trace_id
    }

    /// Records what happened and ends the span (an unsampled span records
    /// nothing).
    pub fn end(mut self, end: SpanEnd<'_>) {
        if !self.span.is_recording() {
            return;
        }
        fn shared(s: &Arc<str>) -> Value {
            Value::String(StringValue::from(s.clone()))
        }
        let mut attributes = Vec::with_capacity(8);
        attributes.push(KeyValue::new("gwcore.gateway", shared(&end.series.gateway)));
        if !end.series.route.is_empty() {
            attributes.push(KeyValue::new("gwcore.route", shared(&end.series.route)));
        }
        if let Some(rule) = end.rule {
            attributes.push(KeyValue::new(
                "gwcore.rule",
                i64::try_from(rule).unwrap_or(i64::MAX),
            ));
        }
        if !end.series.backend.is_empty() {
            attributes.push(KeyValue::new("gwcore.backend", shared(&end.series.backend)));
        }
        attributes.push(KeyValue::new("url.path", end.path.to_owned()));
        attributes.push(KeyValue::new(
            "http.response.status_code",
            i64::from(end.status),
        ));
        attributes.push(KeyValue::new("gwcore.retries", i64::from(end.retries)));
        self.span.set_attributes(attributes);
        if !end.series.route.is_empty() {
            // OpenTelemetry's HTTP server span name: method and route.
            let name = format!("{} {}", self.method, end.series.route);
            self.span.update_name(name);
        }
        // Semantic conventions: a server span is an error for 5xx only.
        if end.status >= 500 {
            self.span.set_status(Status::error(""));
        }
        self.span.end();
    }
}

/// A response extension: the index of the rule that matched (set by
/// [`crate::route::answer`] when tracing is on).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuleIndex(pub usize);

/// A response extension: the attempts after the first
/// ([`crate::route::forward`], set when there were some).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retries(pub u32);

/// The trace id of a request's valid `traceparent`, for the access log
/// when tracing is off.
pub fn incoming_trace_id(headers: &http::HeaderMap) -> Option<TraceIdHex> {
    TraceParent::from_headers(headers).map(|tp| tp.trace_id_hex())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sampling_ratios_outside_0_to_1_are_refused() {
        assert_eq!("0.25".parse::<SamplingRatio>().unwrap().get(), 0.25);
        assert_eq!("1".parse::<SamplingRatio>().unwrap().get(), 1.0);
        assert_eq!("0".parse::<SamplingRatio>().unwrap().get(), 0.0);
        for bad in ["1.5", "-0.1", "NaN", "half"] {
            assert!(bad.parse::<SamplingRatio>().is_err(), "{bad}");
        }
    }
}
