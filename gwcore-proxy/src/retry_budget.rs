//! The retry budget of an `XBackendTrafficPolicy` (`spec.retryConstraint`,
//! GEP-3388), the data plane's half: how many of the retries a route
//! rule's `retry` asks for are made to a Service.
//!
//! A retry to the Service is made when either holds:
//! - the retries of the last `budget.interval` stay within `budget.percent`
//!   of the requests (first attempts) of that interval, counting this one;
//! - fewer than `minRetryRate.count` retries were made in the last
//!   `minRetryRate.interval` (so a quiet Service can still retry).
//!
//! Otherwise the attempt that failed is the answer. Each Service a policy
//! targets has one budget in the process, shared by every route and rule
//! sending to it. Windows are counted in ten slots each, so a count
//! forgets its requests a tenth of an interval at a time.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gwcore::model::ObjectKey;
use gwcore::policies::backend_traffic::RetryConstraint;

const SLOTS: usize = 10;

/// Counts over a sliding window of `SLOTS` slots.
#[derive(Debug)]
struct Window {
    width_ms: u64,
    slots: [(u64, u64); SLOTS],
}

impl Window {
    fn new(interval: Duration) -> Window {
        let ms = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        Window {
            width_ms: (ms / SLOTS as u64).max(1),
            slots: [(u64::MAX, 0); SLOTS],
        }
    }

    fn add(&mut self, now_ms: u64) {
        let id = now_ms / self.width_ms;
        let slot = &mut self.slots[(id % SLOTS as u64) as usize];
        if slot.0 != id {
            *slot = (id, 0);
        }
        slot.1 += 1;
    }

    fn sum(&self, now_ms: u64) -> u64 {
        let id = now_ms / self.width_ms;
        self.slots
            .iter()
            .filter(|(slot, _)| *slot <= id && id - *slot < SLOTS as u64)
            .map(|(_, n)| n)
            .sum()
    }
}

/// One Service's budget.
#[derive(Debug)]
pub(crate) struct Budget {
    constraint: RetryConstraint,
    started: Instant,
    counts: Mutex<Counts>,
}

#[derive(Debug)]
struct Counts {
    requests: Window,
    retries: Window,
    recent_retries: Window,
}

impl Budget {
    fn new(constraint: RetryConstraint) -> Budget {
        Budget {
            constraint,
            started: Instant::now(),
            counts: Mutex::new(Counts {
                requests: Window::new(constraint.budget_interval),
                retries: Window::new(constraint.budget_interval),
                recent_retries: Window::new(constraint.min_retry_interval),
            }),
        }
    }

    fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// A request's first attempt.
    pub(crate) fn request(&self) {
        let now = self.now_ms();
        self.counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .requests
            .add(now);
    }

    /// Whether a retry may be made now; when it may, it is counted.
    pub(crate) fn try_retry(&self) -> bool {
        let now = self.now_ms();
        let mut c = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        let c = &mut *c;
        let within_budget = (c.retries.sum(now) + 1) * 100
            <= c.requests.sum(now) * u64::from(self.constraint.budget_percent);
        let below_min_rate = c.recent_retries.sum(now) < u64::from(self.constraint.min_retry_count);
        if !(within_budget || below_min_rate) {
            return false;
        }
        c.retries.add(now);
        c.recent_retries.add(now);
        true
    }
}

/// The process's retry budgets, one per Service a policy with a
/// `retryConstraint` targets.
#[derive(Debug, Default)]
pub(crate) struct RetryBudgets {
    budgets: Mutex<HashMap<ObjectKey, Arc<Budget>>>,
}

impl RetryBudgets {
    /// The budget of `service` under `constraint`; a changed constraint
    /// starts a new one.
    pub(crate) fn of(&self, service: &ObjectKey, constraint: RetryConstraint) -> Arc<Budget> {
        let mut budgets = self.budgets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(b) = budgets.get(service)
            && b.constraint == constraint
        {
            return b.clone();
        }
        let b = Arc::new(Budget::new(constraint));
        budgets.insert(service.clone(), b.clone());
        b
    }
}

/// The budget a request's retries draw on, carried on the request to
/// `route::forward`.
#[derive(Debug, Clone)]
pub(crate) struct RetryBudget(pub(crate) Arc<Budget>);

#[cfg(test)]
mod tests {
    use super::*;

    fn constraint(percent: u32, min: u32) -> RetryConstraint {
        let mut c = RetryConstraint::default();
        c.budget_percent = percent;
        c.min_retry_count = min;
        c.budget_interval = Duration::from_secs(60);
        c.min_retry_interval = Duration::from_secs(60);
        c
    }

    #[test]
    fn retries_stay_within_the_percent_of_requests_or_the_minimum_rate() {
        let b = Budget::new(constraint(20, 1));
        // The minimum rate allows one retry before any request.
        assert!(b.try_retry());
        assert!(!b.try_retry());
        for _ in 0..10 {
            b.request();
        }
        // 20 % of 10 requests: two retries, the minimum's one included.
        assert!(b.try_retry());
        assert!(!b.try_retry());
        for _ in 0..5 {
            b.request();
        }
        // 20 % of 15: three.
        assert!(b.try_retry());
        assert!(!b.try_retry());
    }

    #[test]
    fn a_window_forgets_what_is_older_than_its_interval() {
        let mut w = Window::new(Duration::from_secs(10));
        w.add(0);
        w.add(500);
        w.add(9_000);
        assert_eq!(w.sum(9_500), 3);
        assert_eq!(w.sum(10_500), 1, "the first second's slot is gone");
        assert_eq!(w.sum(18_999), 1);
        assert_eq!(w.sum(19_000), 0);
    }

    #[test]
    fn a_changed_constraint_starts_a_new_budget() {
        let budgets = RetryBudgets::default();
        let svc = ObjectKey::new(gwcore::model::Kind::Service, "ns", "s");
        let a = budgets.of(&svc, constraint(20, 1));
        assert!(Arc::ptr_eq(&a, &budgets.of(&svc, constraint(20, 1))));
        assert!(!Arc::ptr_eq(&a, &budgets.of(&svc, constraint(30, 1))));
    }
}
