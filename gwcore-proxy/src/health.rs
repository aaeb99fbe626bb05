//! Active HTTP health checks: `LoadBalancerPolicy`'s `spec.healthCheck`
//! ([`gwcore::policies::load_balancer::HealthCheck`], parsed by gwcore;
//! docs/load-balancing.md). The [`crate::balance::Balancer`] passes over
//! the endpoints found unhealthy here.
//!
//! ```text
//! pick(set, policy with healthCheck) ──▶ Checks::port ── first time for this
//!        ▲                                   │            (Service, port, policy,
//!        │ is_unhealthy(i)                   │             endpoint list, check):
//!        │                                   ▼            spawn a prober
//!   PortHealth ◀── every interval: GET path on each endpoint (HTTP/1.1,
//!   per endpoint:   a new connection, within timeout) → Health::next
//!   healthy, streak  → on a change: a log line, gwcore_health_checks_total
//! ```
//!
//! Probers are started lazily, by the first request picked for a Service
//! port under a policy with a health check (the balancer sees the
//! configuration only through requests), and run on a timer of their own,
//! off the request path. A prober is keyed by (Service, port, policy) and
//! runs for one list of endpoints and one check: a reload that keeps
//! both keeps it (and its counts); a request that sees another list or
//! check replaces it, and each address that stays keeps its health. A
//! prober stops by itself when the policy object it was started for is
//! gone (deleted or changed, once no configuration being served holds
//! it), and when no request was picked for its port for
//! [`idle_limit`] (endpoints or Service gone while no request comes); the
//! next request starts it again, health kept. Dropping the balancer stops
//! every prober.
//!
//! Probes are plain HTTP/1.1 over TCP, even when requests reach the
//! Service over TLS (BackendTLSPolicy) or HTTP/2 (`appProtocol`): a
//! check's `port` can name a plain HTTP health port instead.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use bytes::Bytes;
use gwcore::attachments::AppliedPolicy;
use gwcore::extension::ExtensionObject;
use gwcore::model::ObjectKey;
use gwcore::policies::load_balancer::HealthCheck;
use http_body_util::Empty;
use hyper_util::rt::TokioIo;

use crate::metrics::PolicyCounters;
use crate::plugin::EndpointSet;

/// The `result` values of `gwcore_health_checks_total`.
const RESULTS: &[&str] = &["passed", "failed", "unhealthy", "healthy"];
const PASSED: usize = 0;
const FAILED: usize = 1;
const BECAME_UNHEALTHY: usize = 2;
const BECAME_HEALTHY: usize = 3;

/// The shortest time without requests after which a port's prober stops.
const MIN_IDLE: Duration = Duration::from_secs(300);

/// How long a port's prober goes on without a request picked for the
/// port: 5 minutes, or two intervals when that is longer.
pub(crate) fn idle_limit(check: &HealthCheck) -> Duration {
    MIN_IDLE.max(check.interval.saturating_mul(2))
}

/// One endpoint's health as its probes decide it: healthy or not, and how
/// many probes in a row said otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Health {
    healthy: bool,
    /// Probes in a row that disagreed with `healthy`.
    streak: u32,
}

impl Health {
    /// What an endpoint starts as: healthy (Kubernetes lists only ready
    /// endpoints; a check that starts them unhealthy would hold a new
    /// Service's traffic back for `healthy_threshold` intervals).
    pub(crate) const NEW: Health = Health {
        healthy: true,
        streak: 0,
    };

    /// The health after one more probe, which `passed` or not.
    pub(crate) fn next(self, passed: bool, check: &HealthCheck) -> Health {
        if passed == self.healthy {
            return Health { streak: 0, ..self };
        }
        let streak = self.streak.saturating_add(1);
        let threshold = if self.healthy {
            check.unhealthy_threshold
        } else {
            check.healthy_threshold
        };
        if streak >= threshold {
            Health {
                healthy: passed,
                streak: 0,
            }
        } else {
            Health { streak, ..self }
        }
    }

    /// Whether the endpoint is healthy.
    pub(crate) fn is_healthy(self) -> bool {
        self.healthy
    }
}

/// One endpoint's health, shared by its prober (which writes it) and the
/// balancer (which reads `unhealthy`).
struct EndpointHealth {
    health: Mutex<Health>,
    unhealthy: AtomicBool,
}

impl EndpointHealth {
    fn new(health: Health) -> EndpointHealth {
        EndpointHealth {
            health: Mutex::new(health),
            unhealthy: AtomicBool::new(!health.healthy),
        }
    }

    fn health(&self) -> Health {
        *self.health.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The health of one list of a Service port's endpoints, under one
/// policy's check.
pub(crate) struct PortHealth {
    addrs: Vec<SocketAddr>,
    endpoints: Vec<EndpointHealth>,
    /// How many endpoints are unhealthy.
    unhealthy: AtomicUsize,
    /// Whether a request was picked since the prober last looked.
    used: AtomicBool,
    /// Whether the prober stopped (a request then starts another).
    stopped: AtomicBool,
}

impl PortHealth {
    fn new(addrs: Vec<SocketAddr>, old: Option<&PortHealth>) -> PortHealth {
        let endpoints: Vec<EndpointHealth> = addrs
            .iter()
            .map(|a| {
                let carried = old.and_then(|o| {
                    let i = o.addrs.iter().position(|b| b == a)?;
                    Some(o.endpoints[i].health())
                });
                EndpointHealth::new(carried.unwrap_or(Health::NEW))
            })
            .collect();
        let unhealthy = endpoints
            .iter()
            .filter(|e| e.unhealthy.load(Relaxed))
            .count();
        PortHealth {
            addrs,
            endpoints,
            unhealthy: AtomicUsize::new(unhealthy),
            used: AtomicBool::new(true),
            stopped: AtomicBool::new(false),
        }
    }

    /// Whether requests should pass some endpoints over: some are
    /// unhealthy, and not all (when every endpoint is unhealthy, requests
    /// go to all of them, as if none were).
    pub(crate) fn passes_over(&self) -> bool {
        let n = self.unhealthy.load(Relaxed);
        n > 0 && n < self.endpoints.len()
    }

    /// Whether endpoint `i` of the list is unhealthy.
    pub(crate) fn is_unhealthy(&self, i: usize) -> bool {
        self.endpoints
            .get(i)
            .is_some_and(|e| e.unhealthy.load(Relaxed))
    }

    fn mark_used(&self) {
        if !self.used.load(Relaxed) {
            self.used.store(true, Relaxed);
        }
    }

    /// Records a probe of endpoint `i`; the new health when it changed.
    fn record(&self, i: usize, passed: bool, check: &HealthCheck) -> Option<bool> {
        let e = &self.endpoints[i];
        let mut h = e.health.lock().unwrap_or_else(|e| e.into_inner());
        let before = *h;
        *h = before.next(passed, check);
        let healthy = h.is_healthy();
        if healthy == before.is_healthy() {
            return None;
        }
        e.unhealthy.store(!healthy, Relaxed);
        if healthy {
            self.unhealthy.fetch_sub(1, Relaxed);
        } else {
            self.unhealthy.fetch_add(1, Relaxed);
        }
        Some(healthy)
    }
}

/// A running prober and what it runs for.
struct Prober {
    port: u16,
    policy: ObjectKey,
    /// The endpoint list's id ([`EndpointSet::id`]).
    id: u64,
    check: HealthCheck,
    /// The policy object it was started for: gone, the prober stops.
    object: Weak<ExtensionObject>,
    health: Arc<PortHealth>,
    task: Option<tokio::task::AbortHandle>,
}

impl Drop for Prober {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

impl Prober {
    fn serves(&self, set: &EndpointSet<'_>, policy: &AppliedPolicy, check: &HealthCheck) -> bool {
        self.id == set.id
            && Weak::as_ptr(&self.object) == Arc::as_ptr(&policy.object)
            && self.check == *check
            && !self.health.stopped.load(Relaxed)
    }
}

/// Each Service's probers.
type Probers = HashMap<ObjectKey, Vec<Prober>, rustc_hash::FxBuildHasher>;

/// The probers of a balancer, and their counts
/// (`gwcore_health_checks_total`).
pub(crate) struct Checks {
    probers: RwLock<Probers>,
    counters: Arc<PolicyCounters>,
}

impl Checks {
    pub(crate) fn new() -> Checks {
        Checks {
            probers: RwLock::default(),
            counters: Arc::new(PolicyCounters::new(
                "gwcore_health_checks_total",
                "Active health-check probes of a LoadBalancerPolicy that passed or failed, and endpoints that became unhealthy or healthy again.",
                RESULTS,
            )),
        }
    }

    pub(crate) fn counters(&self) -> &PolicyCounters {
        &self.counters
    }

    /// The count of `result` (`passed`, `failed`, `unhealthy`, `healthy`)
    /// for `policy`.
    pub(crate) fn count(&self, policy: &ObjectKey, result: &str) -> u64 {
        RESULTS
            .iter()
            .position(|r| *r == result)
            .map_or(0, |i| self.counters.count(policy, i))
    }

    /// The health of `set`'s endpoints under `policy`'s `check`, starting
    /// (or restarting) its prober when none runs for them.
    pub(crate) fn port(
        &self,
        set: &EndpointSet<'_>,
        policy: &AppliedPolicy,
        check: &HealthCheck,
    ) -> Arc<PortHealth> {
        {
            let probers = self.probers.read().unwrap_or_else(|e| e.into_inner());
            if let Some(p) = probers.get(set.service).and_then(|v| {
                v.iter()
                    .find(|p| p.port == set.port && p.policy == policy.policy)
            }) && p.serves(set, policy, check)
            {
                p.health.mark_used();
                return p.health.clone();
            }
        }
        let mut probers = self.probers.write().unwrap_or_else(|e| e.into_inner());
        let of_service = probers.entry(set.service.clone()).or_default();
        let at = of_service
            .iter()
            .position(|p| p.port == set.port && p.policy == policy.policy);
        if let Some(p) = at.map(|k| &of_service[k])
            && p.serves(set, policy, check)
        {
            return p.health.clone();
        }
        let old = at.map(|k| of_service.swap_remove(k));
        let addrs = set.endpoints.iter().map(|e| e.addr).collect();
        let health = Arc::new(PortHealth::new(addrs, old.as_ref().map(|o| &*o.health)));
        // Stop the old prober before the new one starts.
        drop(old);
        let task = tokio::runtime::Handle::try_current().ok().map(|rt| {
            let run = Run {
                service: set.service.clone(),
                port: set.port,
                policy: policy.policy.clone(),
                check: check.clone(),
                object: Arc::downgrade(&policy.object),
                health: health.clone(),
                counters: self.counters.clone(),
            };
            rt.spawn(run.run()).abort_handle()
        });
        of_service.push(Prober {
            port: set.port,
            policy: policy.policy.clone(),
            id: set.id,
            check: check.clone(),
            object: Arc::downgrade(&policy.object),
            health: health.clone(),
            task,
        });
        health
    }
}

/// What a prober task holds.
struct Run {
    service: ObjectKey,
    port: u16,
    policy: ObjectKey,
    check: HealthCheck,
    object: Weak<ExtensionObject>,
    health: Arc<PortHealth>,
    counters: Arc<PolicyCounters>,
}

impl Run {
    async fn run(self) {
        let mut ticks = tokio::time::interval(self.check.interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let idle_limit = idle_limit(&self.check);
        let mut idle = Duration::ZERO;
        loop {
            ticks.tick().await;
            if self.object.strong_count() == 0 {
                tracing::debug!(service = %self.service, port = self.port, policy = %self.policy, "health checks stop: the policy is gone");
                break;
            }
            if self.health.used.swap(false, Relaxed) {
                idle = Duration::ZERO;
            } else {
                idle = idle.saturating_add(self.check.interval);
                if idle >= idle_limit {
                    tracing::debug!(service = %self.service, port = self.port, policy = %self.policy, "health checks stop: no requests");
                    break;
                }
            }
            let mut probes = tokio::task::JoinSet::new();
            for (i, addr) in self.health.addrs.iter().enumerate() {
                let check = self.check.clone();
                let addr = *addr;
                probes.spawn(async move { (i, probe(addr, &check).await) });
            }
            while let Some(done) = probes.join_next().await {
                let Ok((i, outcome)) = done else { continue };
                self.record(i, outcome);
            }
        }
        self.health.stopped.store(true, Relaxed);
        // Its entry stays (with the health a restart carries over).
    }

    fn record(&self, i: usize, outcome: Result<u16, ProbeError>) {
        let passed = matches!(outcome, Ok(status) if self.check.passes(status));
        self.counters
            .add(&self.policy, if passed { PASSED } else { FAILED });
        let Some(healthy) = self.health.record(i, passed, &self.check) else {
            return;
        };
        let endpoint = self.health.addrs[i];
        let probe = match outcome {
            Ok(status) => format!("status {status}"),
            Err(e) => e.to_string(),
        };
        if healthy {
            self.counters.add(&self.policy, BECAME_HEALTHY);
            tracing::info!(
                %endpoint,
                service = %self.service,
                port = self.port,
                policy = %self.policy,
                probe,
                "health check: endpoint healthy again"
            );
        } else {
            self.counters.add(&self.policy, BECAME_UNHEALTHY);
            tracing::warn!(
                %endpoint,
                service = %self.service,
                port = self.port,
                policy = %self.policy,
                probe,
                "health check: endpoint unhealthy, passed over"
            );
        }
    }
}

/// Why a probe got no status.
#[derive(Debug, thiserror::Error)]
enum ProbeError {
    #[error("no answer within {0:?}")]
    TimedOut(Duration),
    #[error("connection failed: {0}")]
    Connect(std::io::Error),
    #[error("HTTP error: {0}")]
    Http(#[from] hyper::Error),
}

/// One probe of the endpoint at `addr`: `GET check.path` on a new HTTP/1.1
/// connection, the status of the answer (its body is not read).
async fn probe(addr: SocketAddr, check: &HealthCheck) -> Result<u16, ProbeError> {
    let addr = SocketAddr::new(addr.ip(), check.port.unwrap_or(addr.port()));
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(ProbeError::Connect)?;
        let _ = stream.set_nodelay(true);
        let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        let conn = tokio::spawn(conn);
        let host = match &check.hostname {
            Some(h) => http::HeaderValue::from_str(h.as_str()),
            None => http::HeaderValue::from_str(&addr.to_string()),
        };
        let mut req = http::Request::new(Empty::<Bytes>::new());
        *req.uri_mut() = http::Uri::from(check.path.clone());
        let headers = req.headers_mut();
        // A socket address or a parsed authority is always a valid
        // header value.
        if let Ok(host) = host {
            headers.insert(http::header::HOST, host);
        }
        headers.insert(
            http::header::USER_AGENT,
            http::HeaderValue::from_static("gwcore-health-check"),
        );
        headers.insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        let answer = send.send_request(req).await;
        conn.abort();
        Ok(answer?.status().as_u16())
    };
    tokio::time::timeout(check.timeout, exchange)
        .await
        .unwrap_or(Err(ProbeError::TimedOut(check.timeout)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(unhealthy: u32, healthy: u32) -> HealthCheck {
        let mut c = HealthCheck::new(http::uri::PathAndQuery::from_static("/healthz"));
        c.unhealthy_threshold = unhealthy;
        c.healthy_threshold = healthy;
        c
    }

    /// The health after each of `probes` (`+` passed, `-` failed), from
    /// healthy.
    fn trace(check: &HealthCheck, probes: &str) -> String {
        let mut h = Health::NEW;
        probes
            .chars()
            .map(|p| {
                h = h.next(p == '+', check);
                if h.is_healthy() { 'H' } else { 'U' }
            })
            .collect()
    }

    #[test]
    fn an_endpoint_turns_unhealthy_after_the_threshold_of_failures_in_a_row_and_back_after_passes()
    {
        let c = check(3, 2);
        for (probes, health, why) in [
            ("---", "HHU", "three failures in a row"),
            ("--+--+", "HHHHHH", "a pass starts the count again"),
            ("---+-+", "HHUUUU", "passes must come in a row"),
            ("---++", "HHUUH", "two passes bring it back"),
            ("---++--", "HHUUHHH", "back, it needs three failures again"),
            ("---+++", "HHUUHH", "more passes keep it healthy"),
        ] {
            assert_eq!(trace(&c, probes), health, "{why}: {probes}");
        }
        let c = check(1, 1);
        assert_eq!(
            trace(&c, "-+-+"),
            "UHUH",
            "thresholds of 1 follow each probe"
        );
    }

    #[test]
    fn a_port_passes_over_some_endpoints_but_never_all() {
        let c = check(1, 1);
        let addrs: Vec<SocketAddr> = (1..=3)
            .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
            .collect();
        let h = PortHealth::new(addrs.clone(), None);
        assert!(!h.passes_over());
        assert_eq!(h.record(0, false, &c), Some(false));
        assert_eq!(h.record(0, false, &c), None, "no change, no news");
        assert!(h.passes_over() && h.is_unhealthy(0) && !h.is_unhealthy(1));
        h.record(1, false, &c);
        assert!(h.passes_over());
        h.record(2, false, &c);
        assert!(!h.passes_over(), "all unhealthy: none is passed over");
        assert_eq!(h.record(2, true, &c), Some(true));
        assert!(h.passes_over() && !h.is_unhealthy(2));
        // A new list carries the health of the addresses it keeps; a new
        // address starts healthy.
        let next = vec![addrs[1], SocketAddr::from(([127, 0, 0, 1], 9))];
        let h2 = PortHealth::new(next, Some(&h));
        assert!(h2.is_unhealthy(0) && !h2.is_unhealthy(1));
        assert!(h2.passes_over());
    }

    #[test]
    fn probers_stop_after_idle_minutes_or_two_intervals() {
        let mut c = check(1, 1);
        assert_eq!(idle_limit(&c), Duration::from_secs(300));
        c.interval = Duration::from_secs(3_600);
        assert_eq!(idle_limit(&c), Duration::from_secs(7_200));
    }
}
