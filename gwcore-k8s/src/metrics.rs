//! Counters of what the controller did, for tests, logs and `/metrics`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

/// Live counters, shared by the controller's tasks.
#[derive(Debug, Default)]
pub struct Metrics {
    status_writes: AtomicU64,
    status_conflicts: AtomicU64,
    status_failures: AtomicU64,
    computes: AtomicU64,
    events: AtomicU64,
    watch_errors: AtomicU64,
    leader: AtomicBool,
    waited_micros: AtomicU64,
    lock_wait_micros: AtomicU64,
    engine_micros: AtomicU64,
    engine_max_micros: AtomicU64,
    publish_micros: AtomicU64,
}

/// How long one engine run's stages took (see [`Timings`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct RunTimes {
    pub(crate) waited: Duration,
    pub(crate) lock_wait: Duration,
    pub(crate) engine: Duration,
    pub(crate) publish: Duration,
}

/// Where the controller's time goes, summed over every engine run since
/// it started: from the watch event that started a run to the new
/// [`crate::State`] a data plane picks up. Divide by
/// [`Counters::computes`] for a mean.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Timings {
    /// From the update that started a run reaching the reducer to the
    /// engine starting: the updates queued behind it, and the coalescing
    /// window ([`crate::Options::coalesce`]) when runs follow each other.
    pub waited: Duration,
    /// Waiting for the lock the engine shares with the status writer
    /// (which holds it while it reads the statuses it is to write).
    pub lock_wait: Duration,
    /// The engine applying the changed objects (or loading the snapshot).
    pub engine: Duration,
    /// The longest single engine run.
    pub engine_max: Duration,
    /// Publishing the new [`crate::State`] (the snapshot it carries
    /// included).
    pub publish: Duration,
}

/// A copy of the counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Successful status writes.
    pub status_writes: u64,
    /// Status writes refused with 409 Conflict (retried on fresh data).
    pub status_conflicts: u64,
    /// Status writes (or reads after a conflict) that failed otherwise.
    pub status_failures: u64,
    /// Engine runs.
    pub computes: u64,
    /// Watch events received.
    pub events: u64,
    /// Watch errors (each followed by a backoff and a retry).
    pub watch_errors: u64,
    /// Whether this instance holds the lease (or runs without election).
    pub leader: bool,
}

impl Metrics {
    /// Reads every counter.
    pub fn read(&self) -> Counters {
        let r = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Counters {
            status_writes: r(&self.status_writes),
            status_conflicts: r(&self.status_conflicts),
            status_failures: r(&self.status_failures),
            computes: r(&self.computes),
            events: r(&self.events),
            watch_errors: r(&self.watch_errors),
            leader: self.leader.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn status_written(&self) {
        self.status_writes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn status_conflict(&self) {
        self.status_conflicts.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn status_failed(&self) {
        self.status_failures.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn computed(&self, t: RunTimes) {
        let micros = |d: Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        self.computes.fetch_add(1, Ordering::Relaxed);
        self.waited_micros
            .fetch_add(micros(t.waited), Ordering::Relaxed);
        self.lock_wait_micros
            .fetch_add(micros(t.lock_wait), Ordering::Relaxed);
        self.engine_micros
            .fetch_add(micros(t.engine), Ordering::Relaxed);
        self.engine_max_micros
            .fetch_max(micros(t.engine), Ordering::Relaxed);
        self.publish_micros
            .fetch_add(micros(t.publish), Ordering::Relaxed);
    }

    /// The time spent per stage so far.
    pub fn timings(&self) -> Timings {
        let r = |a: &AtomicU64| Duration::from_micros(a.load(Ordering::Relaxed));
        Timings {
            waited: r(&self.waited_micros),
            lock_wait: r(&self.lock_wait_micros),
            engine: r(&self.engine_micros),
            engine_max: r(&self.engine_max_micros),
            publish: r(&self.publish_micros),
        }
    }

    pub(crate) fn event(&self) {
        self.events.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn watch_error(&self) {
        self.watch_errors.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_leader(&self, leader: bool) {
        self.leader.store(leader, Ordering::Relaxed);
    }

    /// The counters in the Prometheus text format, names prefixed
    /// `gwcore_k8s_`.
    pub fn prometheus(&self) -> String {
        let c = self.read();
        let mut out = String::new();
        let mut line = |name: &str, kind: &str, help: &str, v: u64| {
            out.push_str(&format!(
                "# HELP gwcore_k8s_{name} {help}\n# TYPE gwcore_k8s_{name} {kind}\ngwcore_k8s_{name} {v}\n"
            ));
        };
        line(
            "status_writes_total",
            "counter",
            "Successful status writes.",
            c.status_writes,
        );
        line(
            "status_conflicts_total",
            "counter",
            "Status writes refused with 409 Conflict.",
            c.status_conflicts,
        );
        line(
            "status_failures_total",
            "counter",
            "Status writes that failed otherwise.",
            c.status_failures,
        );
        line("computes_total", "counter", "Engine runs.", c.computes);
        line(
            "watch_events_total",
            "counter",
            "Watch events received.",
            c.events,
        );
        line(
            "watch_errors_total",
            "counter",
            "Watch errors.",
            c.watch_errors,
        );
        line(
            "leader",
            "gauge",
            "1 when this instance writes status.",
            u64::from(c.leader),
        );
        let t = self.timings();
        let mut seconds = |name: &str, kind: &str, help: &str, d: Duration| {
            out.push_str(&format!(
                "# HELP gwcore_k8s_{name} {help}\n# TYPE gwcore_k8s_{name} {kind}\ngwcore_k8s_{name} {}\n",
                d.as_secs_f64()
            ));
        };
        seconds(
            "compute_wait_seconds_total",
            "counter",
            "Time from the update starting an engine run to the run (queue and coalescing).",
            t.waited,
        );
        seconds(
            "compute_lock_wait_seconds_total",
            "counter",
            "Time engine runs waited for the lock they share with the status writer.",
            t.lock_wait,
        );
        seconds(
            "compute_seconds_total",
            "counter",
            "Time the engine took.",
            t.engine,
        );
        seconds(
            "compute_max_seconds",
            "gauge",
            "The longest engine run.",
            t.engine_max,
        );
        seconds(
            "publish_seconds_total",
            "counter",
            "Time publishing the engine's output took.",
            t.publish,
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_read_and_exported() {
        let m = Metrics::default();
        m.status_written();
        m.status_written();
        m.set_leader(true);
        let c = m.read();
        assert_eq!(c.status_writes, 2);
        assert!(c.leader);
        let text = m.prometheus();
        assert!(
            text.contains("gwcore_k8s_status_writes_total 2\n"),
            "{text}"
        );
        assert!(text.contains("gwcore_k8s_leader 1\n"), "{text}");
    }

    #[test]
    fn run_times_are_summed_per_stage_with_the_longest_run() {
        let m = Metrics::default();
        let ms = Duration::from_millis;
        m.computed(RunTimes {
            waited: ms(1),
            lock_wait: ms(0),
            engine: ms(4),
            publish: ms(2),
        });
        m.computed(RunTimes {
            waited: ms(3),
            lock_wait: ms(5),
            engine: ms(2),
            publish: ms(1),
        });
        assert_eq!(m.read().computes, 2);
        let t = m.timings();
        assert_eq!(
            (t.waited, t.lock_wait, t.engine, t.engine_max, t.publish),
            (ms(4), ms(5), ms(6), ms(4), ms(3))
        );
        let text = m.prometheus();
        assert!(
            text.contains("gwcore_k8s_compute_seconds_total 0.006\n"),
            "{text}"
        );
        assert!(
            text.contains("gwcore_k8s_compute_max_seconds 0.004\n"),
            "{text}"
        );
        assert!(
            text.contains("gwcore_k8s_compute_lock_wait_seconds_total 0.005\n"),
            "{text}"
        );
    }
}
