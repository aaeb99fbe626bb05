//! `RateLimitPolicy`'s data-plane half: token buckets in this process
//! (docs/rate-limits.md).
//!
//! gwcore parses each policy into [`RateLimits`] and attaches it
//! ([`gwcore::policies::rate_limit`]); this plug-in runs on every request
//! a policy applies to. Each limit of the policy takes one token from the
//! request's bucket; when every limit has one, the request goes on, else
//! the client gets `429 Too Many Requests` with `Retry-After` (whole
//! seconds until the bucket that refused has a token, rounded up) and
//! `RateLimit-Limit`, `RateLimit-Remaining` and `RateLimit-Reset`, and
//! the tokens the other limits gave are handed back.
//!
//! ```text
//!  request ──▶ for each limit: bucket (policy, limit, route, key) ──▶ all had a token ──▶ on
//!                                   │ one had none
//!                                   ▼
//!                   429 + Retry-After (tokens of the others handed back)
//! ```
//!
//! A bucket is one number, the time at which it will be full again
//! (GCRA, the generic cell rate algorithm: a token bucket refilled
//! continuously, `requests` per `interval`, holding `burst`). Buckets
//! live in the plug-in, which lives as long as the process, not in the
//! configuration: a reload that leaves a policy's limit as it was keeps
//! its buckets; a changed limit starts with full ones.
//!
//! Memory is bounded ([`RateLimit::with_max_keys`]): a bucket that is full
//! again is dropped when room is needed (a full bucket and no bucket are
//! the same); only when every bucket is in use are the fullest dropped,
//! an eighth at a time.

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gwcore::extension::ExtensionKind;
use gwcore::model::ObjectKey;
use gwcore::policies::rate_limit::{KIND, Limit, LimitKey, RateLimits};
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::body::{Body, full};
use crate::metrics::PolicyCounters;
use crate::plugin::{BoxFuture, PolicyPlugin, PolicyRequest, Verdict};

/// The default of [`RateLimit::with_max_keys`].
pub const DEFAULT_MAX_KEYS: usize = 65_536;

/// Shards of the bucket map, each behind its own lock.
const SHARDS: usize = 16;

/// The `result` label values of the counters, by index.
const OUTCOMES: &[&str] = &["allowed", "limited"];
const ALLOWED: usize = 0;
const LIMITED: usize = 1;

/// The plug-in: buckets and counters, shared by every request and kept
/// across reloads. Register it with
/// [`crate::plugin::Plugins::with_policy_plugin`] (as
/// [`crate::first_party::plugins`] does).
pub struct RateLimit {
    /// Keys bucket identities (and the shards' maps) with a per-process
    /// secret, so no client can aim its key at another's bucket or flood
    /// one shard's map.
    hasher: RandomState,
    epoch: Instant,
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    counters: PolicyCounters,
}

impl std::fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RateLimit")
            .field("max_keys", &(self.per_shard * SHARDS))
            .finish_non_exhaustive()
    }
}

/// The buckets of one shard: the time (nanoseconds since the plug-in's
/// epoch) at which each will be full again; a bucket not here is full.
struct Shard {
    buckets: HashMap<Key, u64, RandomState>,
}

/// A bucket's identity. `limit` and `route` are keyed hashes of the
/// policy's key with the limit's index and value, and of the route's key:
/// 64 bits with a secret key, so two of them meet by chance only (about
/// once in 10^10 among 100 000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key {
    limit: u64,
    route: u64,
    value: Value,
}

/// What the limit counts by, for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Value {
    Route,
    Client(IpAddr),
    /// A keyed hash of the header's value (no copy of what a client sent
    /// is kept).
    Header(u64),
    /// Requests without the header: one shared bucket.
    NoHeader,
}

/// What [`RateLimit::decide`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Allowed,
    Limited {
        /// The limit that refused.
        requests: u32,
        /// Until its bucket has a token.
        retry_after: Duration,
        /// Until its bucket is full.
        reset: Duration,
    },
}

/// A limit's bucket arithmetic, in nanoseconds: a request costs
/// `emission`; a bucket may run `tolerance` ahead of now.
#[derive(Debug, Clone, Copy)]
struct Rate {
    emission: u64,
    tolerance: u64,
}

impl Rate {
    fn of(limit: &Limit) -> Rate {
        let interval = u64::try_from(limit.interval.as_nanos()).unwrap_or(u64::MAX);
        // gwcore refuses more than one request per nanosecond; `max(1)`
        // keeps a bucket draining if a hand-built limit does.
        let emission = (interval / u64::from(limit.requests.max(1))).max(1);
        Rate {
            emission,
            tolerance: emission.saturating_mul(u64::from(limit.burst.max(1) - 1)),
        }
    }
}

impl Default for RateLimit {
    fn default() -> RateLimit {
        RateLimit::new()
    }
}

impl RateLimit {
    /// A plug-in with no buckets yet, holding at most [`DEFAULT_MAX_KEYS`].
    pub fn new() -> RateLimit {
        let hasher = RandomState::new();
        RateLimit {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Shard {
                        buckets: HashMap::with_hasher(hasher.clone()),
                    })
                })
                .collect(),
            hasher,
            epoch: Instant::now(),
            per_shard: DEFAULT_MAX_KEYS / SHARDS,
            counters: PolicyCounters::new(
                "gwcore_rate_limit_requests_total",
                "Requests a RateLimitPolicy let through or answered 429, by policy.",
                OUTCOMES,
            ),
        }
    }

    /// Holds at most about `max` buckets (all policies together; at least
    /// one per shard of 16). Default is [`DEFAULT_MAX_KEYS`] (a few MB).
    pub fn with_max_keys(mut self, max: usize) -> RateLimit {
        self.per_shard = max.div_ceil(SHARDS).max(1);
        self
    }

    /// The requests `policy` let through and refused so far (also on
    /// `/metrics`).
    pub fn requests(&self, policy: &ObjectKey) -> (u64, u64) {
        (
            self.counters.count(policy, ALLOWED),
            self.counters.count(policy, LIMITED),
        )
    }

    /// Buckets held now (for tests of the bound).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).buckets.len())
            .sum()
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn shard(&self, key: &Key) -> &Mutex<Shard> {
        // usize from u64: the remainder is below SHARDS.
        &self.shards[(self.hasher.hash_one(key) % SHARDS as u64) as usize]
    }

    /// Takes a token from each limit's bucket at `now`, or none.
    fn decide(
        &self,
        now: u64,
        policy: &ObjectKey,
        limits: &RateLimits,
        route: &ObjectKey,
        client: IpAddr,
        headers: &HeaderMap,
    ) -> Decision {
        let route = self.hasher.hash_one(route);
        let mut taken: Vec<(Key, Rate)> = Vec::with_capacity(limits.limits.len());
        for (i, limit) in limits.limits.iter().enumerate() {
            let value = match &limit.key {
                LimitKey::Route => Value::Route,
                LimitKey::ClientAddress => Value::Client(client),
                LimitKey::Header(name) => match headers.get(name) {
                    Some(v) => Value::Header(self.hasher.hash_one(v.as_bytes())),
                    None => Value::NoHeader,
                },
                // A key this version does not know: count per route.
                _ => Value::Route,
            };
            let key = Key {
                limit: self.hasher.hash_one((policy, i, limit)),
                route,
                value,
            };
            let rate = Rate::of(limit);
            let took = self
                .shard(&key)
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take(key, rate, now, self.per_shard);
            match took {
                Ok(()) => taken.push((key, rate)),
                Err((wait, full_in)) => {
                    for (key, rate) in taken {
                        self.shard(&key)
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .give_back(&key, rate);
                    }
                    return Decision::Limited {
                        requests: limit.requests,
                        retry_after: Duration::from_nanos(wait),
                        reset: Duration::from_nanos(full_in),
                    };
                }
            }
        }
        Decision::Allowed
    }
}

impl Shard {
    /// Takes a token at `now`; else how long until one comes and until
    /// the bucket is full.
    fn take(&mut self, key: Key, rate: Rate, now: u64, cap: usize) -> Result<(), (u64, u64)> {
        let full_at = self.buckets.get(&key).copied().unwrap_or(now).max(now);
        let ahead = full_at - now;
        if ahead > rate.tolerance {
            return Err((ahead - rate.tolerance, ahead));
        }
        let next = full_at.saturating_add(rate.emission);
        if let Some(b) = self.buckets.get_mut(&key) {
            *b = next;
            return Ok(());
        }
        if self.buckets.len() >= cap {
            self.make_room(now, cap);
        }
        self.buckets.insert(key, next);
        Ok(())
    }

    /// Hands back a token taken by a request another limit refused.
    fn give_back(&mut self, key: &Key, rate: Rate) {
        if let Some(b) = self.buckets.get_mut(key) {
            *b = b.saturating_sub(rate.emission);
        }
    }

    /// Drops the buckets that are full again (no loss: a missing bucket is
    /// full); if that is not enough, the eighth nearest to full.
    fn make_room(&mut self, now: u64, cap: usize) {
        self.buckets.retain(|_, full_at| *full_at > now);
        if self.buckets.len() < cap {
            return;
        }
        let n = (cap / 8).max(1);
        let mut by_time: Vec<(u64, Key)> = self.buckets.iter().map(|(k, t)| (*t, *k)).collect();
        by_time.select_nth_unstable_by_key(n - 1, |(t, _)| *t);
        for (_, key) in &by_time[..n] {
            self.buckets.remove(key);
        }
        tracing::debug!(
            kept = self.buckets.len(),
            "rate-limit buckets in use dropped to stay within max keys"
        );
    }
}

/// Whole seconds, rounded up, at least 1.
fn ceil_secs(d: Duration) -> u64 {
    (d.as_secs() + u64::from(d.subsec_nanos() > 0)).max(1)
}

fn too_many_requests(requests: u32, retry_after: Duration, reset: Duration) -> Response<Body> {
    let mut r = Response::new(full("rate limit exceeded\n"));
    *r.status_mut() = StatusCode::TOO_MANY_REQUESTS;
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(http::header::RETRY_AFTER, ceil_secs(retry_after).into());
    h.insert("ratelimit-limit", requests.into());
    h.insert("ratelimit-remaining", HeaderValue::from_static("0"));
    h.insert("ratelimit-reset", ceil_secs(reset).into());
    r
}

impl PolicyPlugin for RateLimit {
    fn kind(&self) -> ExtensionKind {
        KIND
    }

    fn on_request<'a>(&'a self, request: PolicyRequest<'a>) -> BoxFuture<'a, Verdict> {
        let verdict = match request.policy.value.get::<RateLimits>() {
            None => {
                tracing::warn!(policy = %request.policy.policy, "a RateLimitPolicy value this plug-in does not know; not limited");
                Verdict::Continue
            }
            Some(limits) => {
                let policy = &request.policy.policy;
                match self.decide(
                    self.now(),
                    policy,
                    limits,
                    request.route,
                    request.client.ip(),
                    &request.head.headers,
                ) {
                    Decision::Allowed => {
                        self.counters.add(policy, ALLOWED);
                        Verdict::Continue
                    }
                    Decision::Limited {
                        requests,
                        retry_after,
                        reset,
                    } => {
                        self.counters.add(policy, LIMITED);
                        Verdict::Respond(too_many_requests(requests, retry_after, reset))
                    }
                }
            }
        };
        Box::pin(std::future::ready(verdict))
    }

    fn counters(&self) -> Option<&PolicyCounters> {
        Some(&self.counters)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gwcore::model::Kind;

    const SEC: u64 = 1_000_000_000;

    fn policy(name: &str) -> ObjectKey {
        ObjectKey::new(Kind::Extension(KIND), "app", name)
    }

    fn route(name: &str) -> ObjectKey {
        ObjectKey::new(Kind::HttpRoute, "app", name)
    }

    fn limits(limits: Vec<Limit>) -> RateLimits {
        let spec = serde_json::json!({"limits": limits.iter().map(|l| {
            let mut v = serde_json::json!({
                "requests": l.requests,
                "interval": format!("{}ms", l.interval.as_millis()),
                "burst": l.burst,
            });
            match &l.key {
                LimitKey::ClientAddress => v["key"] = serde_json::json!({"type": "ClientAddress"}),
                LimitKey::Header(h) => v["key"] = serde_json::json!({"type": "Header", "header": h.as_str()}),
                _ => {}
            }
            v
        }).collect::<Vec<_>>()});
        let parsed = RateLimits::parse(&spec).unwrap();
        assert_eq!(parsed.limits, limits);
        parsed
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    /// Allowed requests of `n` tries at `now`.
    fn tries(rl: &RateLimit, at: u64, l: &RateLimits, r: &str, client: IpAddr, n: usize) -> usize {
        (0..n)
            .filter(|_| {
                rl.decide(at, &policy("p"), l, &route(r), client, &HeaderMap::new())
                    == Decision::Allowed
            })
            .count()
    }

    #[test]
    fn a_bucket_lets_burst_through_then_refills_evenly() {
        let rl = RateLimit::new();
        let l = limits(vec![Limit::new(2, Duration::from_secs(1)).with_burst(4)]);
        assert_eq!(tries(&rl, SEC, &l, "r", ip(1), 10), 4);
        match rl.decide(SEC, &policy("p"), &l, &route("r"), ip(1), &HeaderMap::new()) {
            Decision::Limited {
                requests,
                retry_after,
                reset,
            } => {
                assert_eq!(requests, 2);
                assert_eq!(retry_after, Duration::from_millis(500));
                assert_eq!(reset, Duration::from_secs(2));
            }
            other => panic!("{other:?}"),
        }
        // Half a second brings one token; two seconds fill the bucket.
        assert_eq!(tries(&rl, SEC + SEC / 2, &l, "r", ip(1), 10), 1);
        assert_eq!(tries(&rl, 4 * SEC, &l, "r", ip(1), 10), 4);
        // Another route has its own bucket.
        assert_eq!(tries(&rl, 4 * SEC, &l, "other", ip(1), 10), 4);
    }

    #[test]
    fn a_refused_request_gives_back_the_tokens_other_limits_gave() {
        let rl = RateLimit::new();
        let l = limits(vec![
            Limit::new(10, Duration::from_secs(1)),
            Limit::new(1, Duration::from_secs(1)).with_key(LimitKey::ClientAddress),
        ]);
        // Client 1 is refused by its own limit 9 times: the route's
        // bucket keeps those tokens for the others.
        assert_eq!(tries(&rl, SEC, &l, "r", ip(1), 10), 1);
        let others: usize = (2..=20).map(|c| tries(&rl, SEC, &l, "r", ip(c), 1)).sum();
        assert_eq!(others, 9);
    }

    #[test]
    fn header_keys_count_apart_and_requests_without_it_share_one_bucket() {
        let rl = RateLimit::new();
        let l =
            limits(vec![Limit::new(1, Duration::from_secs(60)).with_key(
                LimitKey::Header(http::HeaderName::from_static("x-tenant")),
            )]);
        let with = |v: Option<&'static str>| {
            let mut h = HeaderMap::new();
            if let Some(v) = v {
                h.insert("x-tenant", HeaderValue::from_static(v));
            }
            rl.decide(SEC, &policy("p"), &l, &route("r"), ip(1), &h) == Decision::Allowed
        };
        assert!(with(Some("a")));
        assert!(!with(Some("a")));
        assert!(with(Some("b")));
        assert!(with(None));
        assert!(!with(None));
    }

    #[test]
    fn a_changed_limit_starts_afresh_and_an_unchanged_one_keeps_its_bucket() {
        let rl = RateLimit::new();
        let one = limits(vec![Limit::new(1, Duration::from_secs(60))]);
        assert_eq!(tries(&rl, SEC, &one, "r", ip(1), 3), 1);
        // The same limit parsed again (a reload): still empty.
        let again = limits(vec![Limit::new(1, Duration::from_secs(60))]);
        assert_eq!(tries(&rl, SEC, &again, "r", ip(1), 3), 0);
        let two = limits(vec![Limit::new(2, Duration::from_secs(60))]);
        assert_eq!(tries(&rl, SEC, &two, "r", ip(1), 3), 2);
    }

    #[test]
    fn memory_stays_bounded() {
        let rl = RateLimit::new().with_max_keys(SHARDS * 8);
        let l = limits(vec![
            Limit::new(1, Duration::from_secs(1)).with_key(LimitKey::ClientAddress),
        ]);
        for c in 0..=255u8 {
            for d in 0..4u8 {
                let client = IpAddr::from([10, 1, c, d]);
                assert_eq!(tries(&rl, SEC, &l, "r", client, 1), 1);
            }
        }
        let held = rl.len();
        assert!((SHARDS..=SHARDS * 8).contains(&held), "{held} buckets");
    }

    #[test]
    fn full_buckets_are_dropped_before_busy_ones() {
        let key = |n: u8| Key {
            limit: 1,
            route: 2,
            value: Value::Client(ip(n)),
        };
        let slow = Rate {
            emission: 10 * SEC,
            tolerance: 0,
        };
        let fast = Rate {
            emission: SEC,
            tolerance: 0,
        };
        let mut shard = Shard {
            buckets: HashMap::with_hasher(RandomState::new()),
        };
        shard.take(key(1), slow, 0, 4).unwrap();
        for n in 2..=4 {
            shard.take(key(n), fast, 0, 4).unwrap();
        }
        // At 2 s, buckets 2 to 4 are full again: they make room, and
        // key 1 is still refused.
        shard.take(key(5), fast, 2 * SEC, 4).unwrap();
        assert_eq!(shard.buckets.len(), 2);
        assert_eq!(
            shard.take(key(1), slow, 2 * SEC, 4),
            Err((8 * SEC, 8 * SEC))
        );
        // When every bucket is busy, the one nearest to full goes.
        shard.take(key(6), slow, 2 * SEC, 4).unwrap();
        shard.take(key(7), slow, 2 * SEC, 4).unwrap();
        shard.take(key(8), slow, 2 * SEC, 4).unwrap();
        assert_eq!(shard.buckets.len(), 4);
        assert!(!shard.buckets.contains_key(&key(5)));
        assert!(shard.buckets.contains_key(&key(1)));
    }

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(ceil_secs(Duration::from_millis(1)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1000)), 1);
        assert_eq!(ceil_secs(Duration::from_millis(1001)), 2);
        let r = too_many_requests(5, Duration::from_millis(1500), Duration::from_secs(3));
        assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(r.headers()["retry-after"], "2");
        assert_eq!(r.headers()["ratelimit-limit"], "5");
        assert_eq!(r.headers()["ratelimit-remaining"], "0");
        assert_eq!(r.headers()["ratelimit-reset"], "3");
    }
}
