//! `LoadBalancerPolicy`'s data-plane half: which endpoint of a Service
//! port each request goes to, and which endpoints are out of rotation
//! (docs/load-balancing.md). The policy is parsed by
//! [`gwcore::policies::load_balancer`]; [`Balancer`] is the
//! [`EndpointPicker`] that [`crate::first_party::plugins`] registers.
//!
//! ```text
//! route::send_to_one ── pick(set, tried, headers, client) ──▶ Balancer
//!        │                                                     │ state per (Service, port):
//!        │                                                     │ round-robin counter, ring,
//!        ▼                                                     │ per endpoint: in flight,
//!   endpoint i ── done(i, Answered(503) | Failed | ...) ──────▶│ errors in a row, ejection
//! ```
//!
//! State is kept per (Service, port) and per endpoint address, under the
//! endpoint list's id ([`EndpointSet::id`]): a configuration reload that
//! leaves a Service's endpoints as they were keeps its counters, requests
//! in flight, ring and ejections as they are; a change of endpoints
//! carries each remaining address's state over and rebuilds the ring
//! (only then). Round robin costs a map lookup under a read lock and one
//! atomic increment per request, and allocates nothing.
//!
//! With a policy's `healthCheck`, endpoints its probes (the private
//! `health` module, which runs them on timers of its own) found unhealthy
//! are passed over as ejected ones are, unless every endpoint is; that
//! costs one more map lookup under a read lock per request.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use gwcore::extension::ExtensionKind;
use gwcore::model::ObjectKey;
use gwcore::policies::load_balancer::{
    Algorithm, ConsistentHash, HashKey, KIND, LoadBalancer, OutlierDetection,
};

use crate::metrics::PolicyCounters;
use crate::plugin::{EndpointPicker, EndpointSet, PickOutcome, PickRequest};

/// What the policy is when none applies: round robin, no ejection.
static DEFAULT: std::sync::LazyLock<LoadBalancer> = std::sync::LazyLock::new(LoadBalancer::default);

/// The `result` values of `gwcore_outlier_ejections_total`.
const EJECTION_RESULTS: &[&str] = &["ejected", "returned", "over_max_share"];
const EJECTED: usize = 0;
const RETURNED: usize = 1;
const OVER_MAX_SHARE: usize = 2;

/// Each Service's ports' states.
type PortStates = HashMap<ObjectKey, Vec<(u16, Arc<PortState>)>, rustc_hash::FxBuildHasher>;

/// The picker of `LoadBalancerPolicy`: round robin by default, least
/// request, consistent hashing, with outlier ejection. Its state lives as
/// long as the plug-in (across reloads).
pub struct Balancer {
    ports: RwLock<PortStates>,
    epoch: Instant,
    counters: PolicyCounters,
    /// Active health checks (`spec.healthCheck`, [`crate::health`]).
    health: crate::health::Checks,
}

impl std::fmt::Debug for Balancer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balancer").finish_non_exhaustive()
    }
}

impl Default for Balancer {
    fn default() -> Balancer {
        Balancer::new()
    }
}

/// One Service port's state, for one list of endpoints.
struct PortState {
    id: u64,
    addrs: Vec<SocketAddr>,
    slots: Vec<Slot>,
    /// The next round-robin turn.
    next: AtomicUsize,
    /// How many endpoints are ejected (an ejection that ran out still
    /// counts until a pick or a done sees it).
    ejected: AtomicUsize,
    /// Ejections are decided one at a time (the share is a count).
    ejecting: Mutex<()>,
    ring: RwLock<Option<Ring>>,
}

/// One endpoint's state.
#[derive(Default)]
struct Slot {
    in_flight: AtomicU32,
    /// 5xx answers in a row.
    errors: AtomicU32,
    /// Attempts without an answer in a row.
    failures: AtomicU32,
    /// How many times it was ejected (the next ejection lasts longer).
    ejections: AtomicU32,
    /// Until when it is ejected, in nanoseconds since the balancer's
    /// epoch; 0: it is not.
    ejected_until: AtomicU64,
    /// When its last ejection ended (same clock); 0: never ejected.
    returned_at: AtomicU64,
}

impl Slot {
    fn carry(&self) -> Slot {
        Slot {
            in_flight: AtomicU32::new(self.in_flight.load(Relaxed)),
            errors: AtomicU32::new(self.errors.load(Relaxed)),
            failures: AtomicU32::new(self.failures.load(Relaxed)),
            ejections: AtomicU32::new(self.ejections.load(Relaxed)),
            ejected_until: AtomicU64::new(self.ejected_until.load(Relaxed)),
            returned_at: AtomicU64::new(self.returned_at.load(Relaxed)),
        }
    }
}

/// A hash ring: `virtual_nodes` points per endpoint, sorted by hash.
struct Ring {
    virtual_nodes: u32,
    points: Vec<(u64, u32)>,
}

impl Ring {
    fn new(addrs: &[SocketAddr], virtual_nodes: u32) -> Ring {
        let mut points = Vec::with_capacity(addrs.len() * virtual_nodes as usize);
        for (i, a) in addrs.iter().enumerate() {
            for v in 0..virtual_nodes {
                let mut h = Fnv::new();
                h.addr(a);
                h.bytes(&v.to_be_bytes());
                // Indices fit: a Service port has far fewer than 2^32
                // endpoints.
                points.push((h.finish(), i as u32));
            }
        }
        points.sort_unstable();
        Ring {
            virtual_nodes,
            points,
        }
    }

    /// The endpoints in the order the ring gives them for `hash`: the
    /// first point at or after it, then clockwise.
    fn walk(&self, hash: u64) -> impl Iterator<Item = usize> + '_ {
        let start = self.points.partition_point(|(h, _)| *h < hash);
        let n = self.points.len();
        (0..n).map(move |k| self.points[(start + k) % n].1 as usize)
    }
}

/// FNV-1a, finished with a 64-bit mix: stable across processes (every
/// replica of a Gateway sends a key to the same endpoint) and spread well
/// enough for a ring.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    fn ip(&mut self, ip: IpAddr) {
        match ip {
            IpAddr::V4(ip) => self.bytes(&ip.octets()),
            IpAddr::V6(ip) => self.bytes(&ip.octets()),
        }
    }

    fn addr(&mut self, addr: &SocketAddr) {
        self.ip(addr.ip());
        self.bytes(&addr.port().to_be_bytes());
    }

    fn finish(&self) -> u64 {
        // splitmix64's finalizer.
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

impl PortState {
    fn new(set: &EndpointSet<'_>, old: Option<&PortState>) -> PortState {
        let addrs: Vec<SocketAddr> = set.endpoints.iter().map(|e| e.addr).collect();
        let slots: Vec<Slot> = addrs
            .iter()
            .map(|a| {
                old.and_then(|o| o.slot_of(*a))
                    .map_or_else(Slot::default, Slot::carry)
            })
            .collect();
        let ejected = slots
            .iter()
            .filter(|s| s.ejected_until.load(Relaxed) != 0)
            .count();
        PortState {
            id: set.id,
            addrs,
            slots,
            next: AtomicUsize::new(old.map_or(0, |o| o.next.load(Relaxed))),
            ejected: AtomicUsize::new(ejected),
            ejecting: Mutex::new(()),
            ring: RwLock::new(None),
        }
    }

    fn slot_of(&self, addr: SocketAddr) -> Option<&Slot> {
        self.addrs
            .iter()
            .position(|a| *a == addr)
            .map(|i| &self.slots[i])
    }

    /// Whether endpoint `i` is ejected at `now`; an ejection that ran out
    /// ends here (the endpoint is back).
    fn is_ejected(
        &self,
        i: usize,
        now: u64,
        counters: &PolicyCounters,
        policy: Option<&ObjectKey>,
    ) -> bool {
        let slot = &self.slots[i];
        let until = slot.ejected_until.load(Relaxed);
        if until == 0 {
            return false;
        }
        if now < until {
            return true;
        }
        if slot
            .ejected_until
            .compare_exchange(until, 0, Relaxed, Relaxed)
            .is_ok()
        {
            slot.returned_at.store(now.max(1), Relaxed);
            self.ejected.fetch_sub(1, Relaxed);
            if let Some(p) = policy {
                counters.add(p, RETURNED);
            }
        }
        false
    }
}

impl Balancer {
    /// A balancer with no state yet.
    pub fn new() -> Balancer {
        Balancer {
            ports: RwLock::default(),
            epoch: Instant::now(),
            counters: PolicyCounters::new(
                "gwcore_outlier_ejections_total",
                "Endpoints ejected by a LoadBalancerPolicy's outlier detection (ejected), back after their ejection (returned), and not ejected because the policy's share of ejected endpoints was reached (over_max_share).",
                EJECTION_RESULTS,
            ),
            health: crate::health::Checks::new(),
        }
    }

    fn now(&self) -> u64 {
        // Nanoseconds since the epoch fit a u64 for 584 years; +1 keeps 0
        // meaning "not ejected".
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX) + 1
    }

    /// The state of `set`'s port for its list of endpoints, made (carrying
    /// over what each remaining address had) when the list changed.
    fn state(&self, set: &EndpointSet<'_>) -> Arc<PortState> {
        {
            let ports = self.ports.read().unwrap_or_else(|e| e.into_inner());
            if let Some(s) = ports
                .get(set.service)
                .and_then(|v| v.iter().find(|(p, _)| *p == set.port))
                .map(|(_, s)| s)
                && s.id == set.id
            {
                return s.clone();
            }
        }
        let mut ports = self.ports.write().unwrap_or_else(|e| e.into_inner());
        let of_service = ports.entry(set.service.clone()).or_default();
        match of_service.iter_mut().find(|(p, _)| *p == set.port) {
            Some((_, s)) if s.id == set.id => s.clone(),
            Some((_, s)) => {
                *s = Arc::new(PortState::new(set, Some(s)));
                s.clone()
            }
            None => {
                let s = Arc::new(PortState::new(set, None));
                of_service.push((set.port, s.clone()));
                s
            }
        }
    }

    /// The port's current state and the index in it of
    /// `set.endpoints[endpoint]` (the list may have changed since the
    /// pick: a reload), without making any.
    fn current(&self, set: &EndpointSet<'_>, endpoint: usize) -> Option<(Arc<PortState>, usize)> {
        let ports = self.ports.read().unwrap_or_else(|e| e.into_inner());
        let state = ports
            .get(set.service)?
            .iter()
            .find(|(p, _)| *p == set.port)
            .map(|(_, s)| s.clone())?;
        let i = if state.id == set.id {
            endpoint
        } else {
            let addr = set.endpoints.get(endpoint)?.addr;
            state.addrs.iter().position(|a| *a == addr)?
        };
        (i < state.slots.len()).then_some((state, i))
    }

    /// The count of `result` (`ejected`, `returned`, `over_max_share`)
    /// for `policy` ([`PolicyCounters::count`]).
    pub fn ejections(&self, policy: &ObjectKey, result: &str) -> u64 {
        EJECTION_RESULTS
            .iter()
            .position(|r| *r == result)
            .map_or(0, |i| self.counters.count(policy, i))
    }

    /// The count of `result` (`passed`, `failed`, `unhealthy`, `healthy`)
    /// of `policy`'s active health checks (`gwcore_health_checks_total`).
    pub fn health_checks(&self, policy: &ObjectKey, result: &str) -> u64 {
        self.health.count(policy, result)
    }

    fn choose(
        &self,
        state: &PortState,
        lb: &LoadBalancer,
        request: &PickRequest<'_>,
        health: Option<&crate::health::PortHealth>,
    ) -> Option<usize> {
        let n = request.set.endpoints.len();
        if n == 0 || request.tried.len() >= n {
            return None;
        }
        let ejecting = state.ejected.load(Relaxed) > 0;
        let refusing = request.any_refusing();
        // Unhealthy endpoints are passed over, unless all are.
        let sick = health.filter(|h| h.passes_over());
        let policy = request.set.policy.map(|p| &p.policy);
        // Nearly every request: nothing tried, ejected, refusing or
        // unhealthy.
        let fast = request.tried.is_empty() && !ejecting && !refusing && sick.is_none();
        let now = if ejecting { self.now() } else { 0 };
        let usable = |i: usize| {
            let passed_over = request.tried.contains(&i)
                || (ejecting && state.is_ejected(i, now, &self.counters, policy))
                || (refusing && request.is_refusing(i))
                || sick.is_some_and(|h| h.is_unhealthy(i));
            !passed_over
        };
        // A persistent session's endpoint, unless it is passed over (the
        // session then moves).
        if let Some(i) = request.pinned.filter(|&i| i < n && usable(i)) {
            return Some(i);
        }
        let round_robin = || {
            let start = state.next.fetch_add(1, Relaxed);
            if fast {
                return Some(start % n);
            }
            (0..n).map(|k| (start + k) % n).find(|&i| usable(i))
        };
        let chosen = match &lb.algorithm {
            Algorithm::LeastRequest => {
                if n == 1 {
                    Some(0)
                } else if fast {
                    // Power of two choices: two distinct endpoints at
                    // random, the one with fewer requests in flight.
                    let a = fastrand::usize(..n);
                    let b = (a + 1 + fastrand::usize(..n - 1)) % n;
                    let load = |i: usize| state.slots[i].in_flight.load(Relaxed);
                    Some(if load(b) < load(a) { b } else { a })
                } else {
                    let start = fastrand::usize(..n);
                    (0..n)
                        .map(|k| (start + k) % n)
                        .filter(|&i| usable(i))
                        .min_by_key(|&i| state.slots[i].in_flight.load(Relaxed))
                }
            }
            Algorithm::ConsistentHash(h) => match hash_of(h, request) {
                None => round_robin(),
                Some(hash) => {
                    let ring = self.ring(state, h);
                    let ring = ring.read().unwrap_or_else(|e| e.into_inner());
                    match ring.as_ref() {
                        Some(r) if fast => r.walk(hash).next(),
                        Some(r) => r.walk(hash).find(|&i| usable(i)),
                        None => None,
                    }
                }
            },
            _ => round_robin(),
        };
        // Every endpoint not tried is ejected or refusing: one of them
        // rather than none (the share bound keeps this rare).
        chosen.or_else(|| (0..n).find(|i| !request.tried.contains(i)))
    }

    /// `state`'s ring for `h`, built when it has none of that size.
    fn ring<'s>(&self, state: &'s PortState, h: &ConsistentHash) -> &'s RwLock<Option<Ring>> {
        let built = state
            .ring
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|r| r.virtual_nodes == h.virtual_nodes);
        if !built {
            let mut ring = state.ring.write().unwrap_or_else(|e| e.into_inner());
            if ring
                .as_ref()
                .is_none_or(|r| r.virtual_nodes != h.virtual_nodes)
            {
                *ring = Some(Ring::new(&state.addrs, h.virtual_nodes));
            }
        }
        &state.ring
    }

    /// Counts an attempt's outcome against its endpoint, ejecting it when
    /// it passed a threshold and the share allows.
    fn outcome(
        &self,
        state: &PortState,
        i: usize,
        outlier: &OutlierDetection,
        policy: &ObjectKey,
        outcome: PickOutcome,
    ) {
        let slot = &state.slots[i];
        let (count, threshold) = match outcome {
            PickOutcome::Answered(s) if s.is_server_error() => {
                slot.failures.store(0, Relaxed);
                (
                    slot.errors.fetch_add(1, Relaxed) + 1,
                    outlier.consecutive_5xx,
                )
            }
            PickOutcome::Answered(_) => {
                slot.errors.store(0, Relaxed);
                slot.failures.store(0, Relaxed);
                // Back and well for as long as the longest ejection: its
                // next ejection starts from the base again.
                let back = slot.returned_at.load(Relaxed);
                if back != 0
                    && self.now().saturating_sub(back)
                        >= outlier.max_ejection_time.as_nanos() as u64
                {
                    slot.ejections.store(0, Relaxed);
                    slot.returned_at.store(0, Relaxed);
                }
                return;
            }
            PickOutcome::Unreachable | PickOutcome::Failed | PickOutcome::TimedOut => (
                slot.failures.fetch_add(1, Relaxed) + 1,
                outlier.consecutive_failures,
            ),
            _ => return,
        };
        if threshold == 0 || count < threshold {
            return;
        }
        let _one_at_a_time = state.ejecting.lock().unwrap_or_else(|e| e.into_inner());
        let now = self.now();
        if slot.ejected_until.load(Relaxed) > now {
            return;
        }
        // Ejections that ran out are not counted against the share.
        let ejected = (0..state.slots.len())
            .filter(|&k| state.is_ejected(k, now, &self.counters, Some(policy)))
            .count();
        if ejected >= outlier.max_ejected(state.slots.len()) {
            self.counters.add(policy, OVER_MAX_SHARE);
            return;
        }
        let n = slot.ejections.fetch_add(1, Relaxed) + 1;
        let period = outlier.ejection_time(n).as_nanos() as u64;
        slot.errors.store(0, Relaxed);
        slot.failures.store(0, Relaxed);
        slot.ejected_until
            .store(now.saturating_add(period), Relaxed);
        state.ejected.fetch_add(1, Relaxed);
        self.counters.add(policy, EJECTED);
        tracing::info!(
            endpoint = %state.addrs[i],
            ejection = n,
            seconds = outlier.ejection_time(n).as_secs_f64(),
            "outlier ejected"
        );
    }
}

/// The hash of a request's key; `None` when it has none (no such header
/// or cookie).
fn hash_of(h: &ConsistentHash, request: &PickRequest<'_>) -> Option<u64> {
    let mut f = Fnv::new();
    match &h.key {
        HashKey::Header(name) => f.bytes(request.headers.get(name)?.as_bytes()),
        HashKey::Cookie(name) => f.bytes(crate::session::cookie(request.headers, name)?),
        HashKey::ClientAddress => f.ip(request.client.ip()),
        _ => return None,
    }
    Some(f.finish())
}

/// The policy's value, or the default's.
fn policy_of<'a>(set: &EndpointSet<'a>) -> &'a LoadBalancer {
    set.policy
        .and_then(|p| p.value.get::<LoadBalancer>())
        .unwrap_or(&*DEFAULT)
}

impl EndpointPicker for Balancer {
    fn kind(&self) -> ExtensionKind {
        KIND
    }

    fn pick(&self, request: &PickRequest<'_>) -> Option<usize> {
        let lb = policy_of(&request.set);
        let state = self.state(&request.set);
        let health = lb
            .health_check
            .as_ref()
            .zip(request.set.policy)
            .map(|(check, policy)| self.health.port(&request.set, policy, check));
        let i = self.choose(&state, lb, request, health.as_deref())?;
        if matches!(lb.algorithm, Algorithm::LeastRequest) {
            state.slots[i].in_flight.fetch_add(1, Relaxed);
        }
        Some(i)
    }

    fn done(&self, set: &EndpointSet<'_>, endpoint: usize, outcome: PickOutcome) {
        let lb = policy_of(set);
        let counts_in_flight = matches!(lb.algorithm, Algorithm::LeastRequest);
        let outlier = lb.outlier.as_ref().zip(set.policy);
        if !counts_in_flight && outlier.is_none() {
            return;
        }
        let Some((state, i)) = self.current(set, endpoint) else {
            return;
        };
        if counts_in_flight {
            let _ = state.slots[i]
                .in_flight
                .fetch_update(Relaxed, Relaxed, |n| n.checked_sub(1));
        }
        if let Some((outlier, policy)) = outlier {
            self.outcome(&state, i, outlier, &policy.policy, outcome);
        }
    }

    fn counters(&self) -> Option<&PolicyCounters> {
        Some(&self.counters)
    }

    fn more_counters(&self) -> Vec<&PolicyCounters> {
        vec![self.health.counters()]
    }
}

#[cfg(test)]
mod tests;
