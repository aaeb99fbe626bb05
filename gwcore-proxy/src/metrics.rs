//! Request metrics in the Prometheus text format.
//!
//! One series per (gateway, route, backend): request counts by status code
//! and a latency histogram. Recording takes a read lock and a few atomic
//! increments; a new series takes the write lock once.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// What a request is counted under. The labels are shared strings: a
/// request clones three pointers, not three strings.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    /// The Gateway, `namespace/name` (empty when no Gateway serves the port).
    pub gateway: Arc<str>,
    /// The route, `Kind namespace/name` (empty when no route matched).
    pub route: Arc<str>,
    /// The backend, `namespace/service:port` (empty when not forwarded).
    pub backend: Arc<str>,
}

/// Series by key. FxHash ([`rustc_hash`]), as for every map looked up on
/// each request with short keys the configuration chose (metrics series,
/// backend pool addresses), where SipHash's flood resistance buys nothing.
type SeriesMap = HashMap<SeriesKey, Arc<Series>, rustc_hash::FxBuildHasher>;

struct Series {
    /// Count per status code 100..=599, at index `code - 100`.
    codes: Box<[AtomicU64; 500]>,
    buckets: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Series {
    fn new() -> Series {
        Series {
            codes: Box::new(std::array::from_fn(|_| AtomicU64::new(0))),
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }
}

/// Counters of requests and reloads.
#[derive(Default)]
pub struct Metrics {
    series: RwLock<SeriesMap>,
    /// Byte streams (TLS passthrough, TLS terminate, TCP) by series and
    /// whether they reached a backend.
    streams: std::sync::Mutex<std::collections::BTreeMap<(SeriesKey, bool), u64>>,
    /// `ExternalAuth` decisions by Gateway, route and decision (the
    /// backend label is empty).
    ext_auth: std::sync::Mutex<std::collections::BTreeMap<(SeriesKey, AuthDecision), u64>>,
    reloads_ok: AtomicU64,
    reloads_failed: AtomicU64,
    reloads_unchanged: AtomicU64,
    generation: AtomicU64,
    connections_open: AtomicU64,
    connections_refused: AtomicU64,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// What an `ExternalAuth` filter decided for a request
/// ([`crate::ext_auth`]), as counted in `gwcore_ext_auth_decisions_total`
/// and written in the access log (`ext_auth`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum AuthDecision {
    /// The service allowed the request; it went on.
    Allowed,
    /// The service denied it; its answer went to the client.
    Denied,
    /// No decision (the service unreachable, failing or too slow): the
    /// request was denied all the same (fail closed).
    Error,
}

impl AuthDecision {
    /// `allowed`, `denied` or `error`.
    pub fn as_str(self) -> &'static str {
        match self {
            AuthDecision::Allowed => "allowed",
            AuthDecision::Denied => "denied",
            AuthDecision::Error => "error",
        }
    }
}

/// How a reload ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReloadOutcome {
    /// A new configuration is served.
    Applied,
    /// The new input was refused; the last good configuration stays.
    Failed,
    /// The input changed nothing that is served.
    Unchanged,
}

impl Metrics {
    /// Counts one answered request.
    pub fn record(&self, key: &SeriesKey, status: u16, latency: Duration) {
        let series = {
            let map = self.series.read().unwrap_or_else(|e| e.into_inner());
            map.get(key).cloned()
        };
        let series = match series {
            Some(s) => s,
            None => {
                let mut map = self.series.write().unwrap_or_else(|e| e.into_inner());
                map.entry(key.clone())
                    .or_insert_with(|| Arc::new(Series::new()))
                    .clone()
            }
        };
        if let Some(c) = status
            .checked_sub(100)
            .and_then(|i| series.codes.get(usize::from(i)))
        {
            c.fetch_add(1, Relaxed);
        }
        let secs = latency.as_secs_f64();
        if let Some(i) = BUCKETS.iter().position(|b| secs <= *b) {
            series.buckets[i].fetch_add(1, Relaxed);
        }
        series.count.fetch_add(1, Relaxed);
        series.sum_micros.fetch_add(
            u64::try_from(latency.as_micros()).unwrap_or(u64::MAX),
            Relaxed,
        );
    }

    /// Counts a TLS or TCP connection: forwarded to a backend, or refused
    /// (no route, no valid backend, backend unreachable).
    pub fn record_stream(&self, key: &SeriesKey, forwarded: bool) {
        let mut streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
        *streams.entry((key.clone(), forwarded)).or_insert(0) += 1;
    }

    /// Counts an `ExternalAuth` decision for a request counted under `key`
    /// (its Gateway and route).
    pub fn record_ext_auth(&self, key: &SeriesKey, decision: AuthDecision) {
        let key = SeriesKey {
            backend: Arc::from(""),
            ..key.clone()
        };
        let mut map = self.ext_auth.lock().unwrap_or_else(|e| e.into_inner());
        *map.entry((key, decision)).or_insert(0) += 1;
    }

    /// The number of `decision`s of `ExternalAuth` filters counted for the
    /// Gateway and route of `key`.
    pub fn ext_auth_count(&self, key: &SeriesKey, decision: AuthDecision) -> u64 {
        let key = SeriesKey {
            backend: Arc::from(""),
            ..key.clone()
        };
        let map = self.ext_auth.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&(key, decision)).copied().unwrap_or(0)
    }

    /// Counts a reload.
    pub fn record_reload(&self, outcome: ReloadOutcome, generation: u64) {
        match outcome {
            ReloadOutcome::Applied => &self.reloads_ok,
            ReloadOutcome::Failed => &self.reloads_failed,
            ReloadOutcome::Unchanged => &self.reloads_unchanged,
        }
        .fetch_add(1, Relaxed);
        self.generation.store(generation, Relaxed);
    }

    /// Counts a client connection opened.
    pub fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Relaxed);
    }

    /// Counts a client connection closed.
    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Relaxed);
    }

    /// Counts a client connection refused by the connection limit.
    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Relaxed);
    }

    /// Client connections open now.
    pub fn connections_open(&self) -> u64 {
        self.connections_open.load(Relaxed)
    }

    /// Client connections refused by the connection limit so far.
    pub fn connections_refused(&self) -> u64 {
        self.connections_refused.load(Relaxed)
    }

    /// The number of requests counted under `key` with status `code`.
    pub fn count(&self, key: &SeriesKey, code: u16) -> u64 {
        let map = self.series.read().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .and_then(|s| s.codes.get(usize::from(code.checked_sub(100)?)))
            .map_or(0, |c| c.load(Relaxed))
    }

    /// Everything, in the Prometheus text exposition format, series sorted.
    pub fn render(&self) -> String {
        let mut series: Vec<(SeriesKey, Arc<Series>)> = {
            let map = self.series.read().unwrap_or_else(|e| e.into_inner());
            map.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
        };
        series.sort_by(|a, b| a.0.cmp(&b.0));
        let mut out = String::new();
        out.push_str("# HELP gwcore_requests_total Requests answered, by gateway, route, backend and status code.\n");
        out.push_str("# TYPE gwcore_requests_total counter\n");
        for (k, s) in &series {
            for (i, c) in s.codes.iter().enumerate() {
                let n = c.load(Relaxed);
                if n > 0 {
                    let _ = writeln!(
                        out,
                        "gwcore_requests_total{{{},code=\"{}\"}} {n}",
                        labels(k),
                        i + 100
                    );
                }
            }
        }
        out.push_str(
            "# HELP gwcore_request_duration_seconds Time from request head to response head.\n",
        );
        out.push_str("# TYPE gwcore_request_duration_seconds histogram\n");
        for (k, s) in &series {
            let l = labels(k);
            let mut cumulative = 0;
            for (b, c) in BUCKETS.iter().zip(&s.buckets) {
                cumulative += c.load(Relaxed);
                let _ = writeln!(
                    out,
                    "gwcore_request_duration_seconds_bucket{{{l},le=\"{b}\"}} {cumulative}"
                );
            }
            let count = s.count.load(Relaxed);
            let _ = writeln!(
                out,
                "gwcore_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} {count}"
            );
            let sum = s.sum_micros.load(Relaxed) as f64 / 1e6;
            let _ = writeln!(out, "gwcore_request_duration_seconds_sum{{{l}}} {sum}");
            let _ = writeln!(out, "gwcore_request_duration_seconds_count{{{l}}} {count}");
        }
        out.push_str(
            "# HELP gwcore_streams_total TLS and TCP connections and UDP sessions, by result.\n",
        );
        out.push_str("# TYPE gwcore_streams_total counter\n");
        {
            let streams = self.streams.lock().unwrap_or_else(|e| e.into_inner());
            for ((k, forwarded), n) in streams.iter() {
                let result = if *forwarded { "forwarded" } else { "refused" };
                let _ = writeln!(
                    out,
                    "gwcore_streams_total{{{},result=\"{result}\"}} {n}",
                    labels(k)
                );
            }
        }
        out.push_str("# HELP gwcore_ext_auth_decisions_total ExternalAuth filter decisions, by gateway, route and result (allowed, denied, error: no answer, denied all the same).\n");
        out.push_str("# TYPE gwcore_ext_auth_decisions_total counter\n");
        {
            let map = self.ext_auth.lock().unwrap_or_else(|e| e.into_inner());
            for ((k, decision), n) in map.iter() {
                let _ = writeln!(
                    out,
                    "gwcore_ext_auth_decisions_total{{gateway=\"{}\",route=\"{}\",result=\"{}\"}} {n}",
                    escape(&k.gateway),
                    escape(&k.route),
                    decision.as_str()
                );
            }
        }
        out.push_str("# HELP gwcore_reloads_total Configuration reloads, by result.\n");
        out.push_str("# TYPE gwcore_reloads_total counter\n");
        for (result, c) in [
            ("applied", &self.reloads_ok),
            ("failed", &self.reloads_failed),
            ("unchanged", &self.reloads_unchanged),
        ] {
            let _ = writeln!(
                out,
                "gwcore_reloads_total{{result=\"{result}\"}} {}",
                c.load(Relaxed)
            );
        }
        out.push_str("# HELP gwcore_connections_open Client connections open now.\n");
        out.push_str("# TYPE gwcore_connections_open gauge\n");
        let _ = writeln!(out, "gwcore_connections_open {}", self.connections_open());
        out.push_str("# HELP gwcore_connections_refused_total Client connections closed at once because max_connections were open.\n");
        out.push_str("# TYPE gwcore_connections_refused_total counter\n");
        let _ = writeln!(
            out,
            "gwcore_connections_refused_total {}",
            self.connections_refused()
        );
        out.push_str("# HELP gwcore_log_lines_dropped_total Log lines dropped because the log output could not keep up (gwcore_proxy::access_log).\n");
        out.push_str("# TYPE gwcore_log_lines_dropped_total counter\n");
        let _ = writeln!(
            out,
            "gwcore_log_lines_dropped_total {}",
            crate::access_log::dropped_lines()
        );
        out.push_str(
            "# HELP gwcore_config_generation Generation of the configuration being served.\n",
        );
        out.push_str("# TYPE gwcore_config_generation gauge\n");
        let _ = writeln!(
            out,
            "gwcore_config_generation {}",
            self.generation.load(Relaxed)
        );
        out
    }
}

/// Counters of a policy plug-in's decisions, by policy and outcome: one
/// counter family (`name`, with labels `policy="namespace/name"` and
/// `result`), which `/metrics` shows after the proxy's own when the
/// plug-in hands it out ([`crate::plugin::PolicyPlugin::counters`]).
/// Counting takes a read lock and an atomic increment; a policy's first
/// count takes the write lock once.
pub struct PolicyCounters {
    name: &'static str,
    help: &'static str,
    outcomes: &'static [&'static str],
    by_policy:
        RwLock<HashMap<gwcore::model::ObjectKey, Arc<[AtomicU64]>, rustc_hash::FxBuildHasher>>,
}

impl std::fmt::Debug for PolicyCounters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyCounters")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl PolicyCounters {
    /// A family `name` (e.g. `gwcore_rate_limit_requests_total`) described
    /// by `help`, counting each of `outcomes` (the `result` label's values;
    /// [`PolicyCounters::add`] takes an index into them).
    pub fn new(
        name: &'static str,
        help: &'static str,
        outcomes: &'static [&'static str],
    ) -> PolicyCounters {
        PolicyCounters {
            name,
            help,
            outcomes,
            by_policy: RwLock::default(),
        }
    }

    /// Counts one `outcomes[outcome]` of `policy` (an index out of range
    /// counts nothing).
    pub fn add(&self, policy: &gwcore::model::ObjectKey, outcome: usize) {
        let counts = {
            let map = self.by_policy.read().unwrap_or_else(|e| e.into_inner());
            map.get(policy).cloned()
        };
        let counts = match counts {
            Some(c) => c,
            None => {
                let mut map = self.by_policy.write().unwrap_or_else(|e| e.into_inner());
                map.entry(policy.clone())
                    .or_insert_with(|| self.outcomes.iter().map(|_| AtomicU64::new(0)).collect())
                    .clone()
            }
        };
        if let Some(c) = counts.get(outcome) {
            c.fetch_add(1, Relaxed);
        }
    }

    /// The count of `outcomes[outcome]` for `policy`.
    pub fn count(&self, policy: &gwcore::model::ObjectKey, outcome: usize) -> u64 {
        let map = self.by_policy.read().unwrap_or_else(|e| e.into_inner());
        map.get(policy)
            .and_then(|c| c.get(outcome))
            .map_or(0, |c| c.load(Relaxed))
    }

    /// Appends the family in the Prometheus text format, policies sorted.
    pub fn render(&self, out: &mut String) {
        let mut rows: Vec<(String, Arc<[AtomicU64]>)> = {
            let map = self.by_policy.read().unwrap_or_else(|e| e.into_inner());
            map.iter()
                .map(|(k, v)| (format!("{}/{}", k.namespace, k.name), v.clone()))
                .collect()
        };
        rows.sort_by(|a, b| a.0.cmp(&b.0));
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} counter", self.name);
        for (policy, counts) in &rows {
            for (outcome, c) in self.outcomes.iter().zip(counts.iter()) {
                let _ = writeln!(
                    out,
                    "{}{{policy=\"{}\",result=\"{}\"}} {}",
                    self.name,
                    escape(policy),
                    escape(outcome),
                    c.load(Relaxed)
                );
            }
        }
    }
}

fn labels(k: &SeriesKey) -> String {
    format!(
        "gateway=\"{}\",route=\"{}\",backend=\"{}\"",
        escape(&k.gateway),
        escape(&k.route),
        escape(&k.backend)
    )
}

/// Escapes a label value: backslash, double quote and newline.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_code_and_fills_cumulative_buckets() {
        let m = Metrics::default();
        let k = SeriesKey {
            gateway: "infra/gw".into(),
            route: "HTTPRoute a/\"b\"".into(),
            backend: "a/svc:80".into(),
        };
        m.record(&k, 200, Duration::from_millis(2));
        m.record(&k, 200, Duration::from_millis(30));
        m.record(&k, 503, Duration::from_secs(10));
        assert_eq!(m.count(&k, 200), 2);
        assert_eq!(m.count(&k, 503), 1);
        let text = m.render();
        let l = r#"gateway="infra/gw",route="HTTPRoute a/\"b\"",backend="a/svc:80""#;
        assert!(
            text.contains(&format!("gwcore_requests_total{{{l},code=\"200\"}} 2\n")),
            "{text}"
        );
        assert!(text.contains(&format!("gwcore_requests_total{{{l},code=\"503\"}} 1\n")));
        assert!(text.contains(&format!(
            "gwcore_request_duration_seconds_bucket{{{l},le=\"0.0025\"}} 1\n"
        )));
        assert!(text.contains(&format!(
            "gwcore_request_duration_seconds_bucket{{{l},le=\"0.05\"}} 2\n"
        )));
        assert!(text.contains(&format!(
            "gwcore_request_duration_seconds_bucket{{{l},le=\"5\"}} 2\n"
        )));
        assert!(text.contains(&format!(
            "gwcore_request_duration_seconds_bucket{{{l},le=\"+Inf\"}} 3\n"
        )));
        assert!(text.contains(&format!("gwcore_request_duration_seconds_count{{{l}}} 3\n")));
    }
}
