//! Counters of what the controller did, for tests, logs and `/metrics`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

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

    pub(crate) fn computed(&self) {
        self.computes.fetch_add(1, Ordering::Relaxed);
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
}
