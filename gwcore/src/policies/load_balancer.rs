//! `LoadBalancerPolicy` (`policy.gwcore.dev/v1alpha1`): how requests to a
//! Service are spread over its endpoints, and which endpoints are taken
//! out of rotation for the errors they answer with (docs/load-balancing.md).
//!
//! ```yaml
//! apiVersion: policy.gwcore.dev/v1alpha1
//! kind: LoadBalancerPolicy
//! metadata: {name: cart, namespace: shop}
//! spec:
//!   targetRefs:
//!   - {group: "", kind: Service, name: cart}
//!   algorithm: ConsistentHash      # RoundRobin (default), LeastRequest
//!   consistentHash:
//!     key: {type: Header, header: x-user}   # or {type: Cookie, cookie: id},
//!                                           # or {type: ClientAddress}
//!     virtualNodes: 100
//!   outlierDetection:
//!     consecutive5xx: 5
//!     consecutiveFailures: 5
//!     baseEjectionTime: 30s
//!     maxEjectionTime: 300s
//!     maxEjectedPercent: 50
//!   healthCheck:                   # active HTTP checks, off unless given
//!     path: /healthz
//!     interval: 10s
//!     timeout: 1s
//!     unhealthyThreshold: 3
//!     healthyThreshold: 2
//!     expectedStatuses: [{min: 200, max: 399}]
//! ```
//!
//! This module is the deciding half: it parses a policy into a
//! [`LoadBalancer`] (refusing bad specs, naming the field), and the engine
//! attaches it by GEP-713's rules: the most specific policy for a request's
//! backend applies (the Service port, the Service, the rule, the route).
//! Choosing endpoints, ejecting them and probing them is the data plane's
//! (`gwcore_proxy::balance`, `gwcore_proxy::health`).

use std::time::Duration;

use serde::Deserialize;

use crate::extension::{
    ExtensionKind, PolicyContext, PolicyKind, PolicyValue, Refused, TargetKind,
};
use crate::model::Object;
use crate::values::Duration as SpecDuration;

/// The kind: `policy.gwcore.dev/v1alpha1 LoadBalancerPolicy`.
pub const KIND: ExtensionKind = ExtensionKind::new(super::API_VERSION, "LoadBalancerPolicy");

/// The most virtual nodes per endpoint on a hash ring.
pub const MAX_VIRTUAL_NODES: u32 = 1_000;

/// Virtual nodes per endpoint when `consistentHash.virtualNodes` is not
/// given.
pub const DEFAULT_VIRTUAL_NODES: u32 = 100;

/// The most consecutive errors a threshold may count.
pub const MAX_CONSECUTIVE: u32 = 1_000;

/// The longest ejection period (`baseEjectionTime`, `maxEjectionTime`).
pub const MAX_EJECTION_TIME: Duration = Duration::from_secs(3_600);

/// A parsed `LoadBalancerPolicy`: the algorithm, and the outlier detection
/// and active health checks when the policy asks for them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct LoadBalancer {
    /// How an endpoint is chosen (`spec.algorithm`).
    pub algorithm: Algorithm,
    /// When endpoints are ejected (`spec.outlierDetection`); `None`: never.
    pub outlier: Option<OutlierDetection>,
    /// How endpoints are probed (`spec.healthCheck`); `None`: never.
    pub health_check: Option<HealthCheck>,
}

impl Default for LoadBalancer {
    /// Round robin, no ejection, no probes: what requests get with no
    /// policy.
    fn default() -> LoadBalancer {
        LoadBalancer {
            algorithm: Algorithm::RoundRobin,
            outlier: None,
            health_check: None,
        }
    }
}

/// How an endpoint is chosen.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Algorithm {
    /// Each endpoint in turn.
    RoundRobin,
    /// Of two endpoints drawn at random, the one with fewer requests in
    /// flight ("power of two choices").
    LeastRequest,
    /// The endpoint a hash of the request's key lands on, on a ring of
    /// virtual nodes: a key keeps its endpoint while that endpoint stays,
    /// and when one of N endpoints comes or goes about 1/N of the keys move.
    ConsistentHash(ConsistentHash),
}

/// `spec.consistentHash`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct ConsistentHash {
    /// What is hashed.
    pub key: HashKey,
    /// Points on the ring per endpoint: more spread keys more evenly and
    /// cost memory and rebuild time (not per-request time).
    pub virtual_nodes: u32,
}

/// What a request is hashed by.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HashKey {
    /// The value of a request header (the first, when repeated).
    Header(http::HeaderName),
    /// The value of a cookie the request carries.
    Cookie(String),
    /// The client's IP address (not its port).
    ClientAddress,
}

/// `spec.outlierDetection`: passive health checking. An endpoint that
/// answers `consecutive_5xx` 5xx responses in a row, or fails
/// `consecutive_failures` attempts in a row (no connection, a reset, a
/// timeout), is ejected for `base_ejection_time` × the number of times it
/// has been ejected, at most `max_ejection_time`; never more than
/// `max_ejected_percent` of a Service port's endpoints are ejected at once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct OutlierDetection {
    /// 5xx answers in a row that eject; 0 disables.
    pub consecutive_5xx: u32,
    /// Failed attempts in a row that eject; 0 disables.
    pub consecutive_failures: u32,
    /// The first ejection's length.
    pub base_ejection_time: Duration,
    /// The longest ejection.
    pub max_ejection_time: Duration,
    /// The largest share of a Service port's endpoints ejected at once, in
    /// percent (rounded down; 0 ejects none).
    pub max_ejected_percent: u8,
}

impl Default for OutlierDetection {
    /// 5 and 5, 30 s growing to at most 300 s, at most 50 %.
    fn default() -> OutlierDetection {
        OutlierDetection {
            consecutive_5xx: 5,
            consecutive_failures: 5,
            base_ejection_time: Duration::from_secs(30),
            max_ejection_time: Duration::from_secs(300),
            max_ejected_percent: 50,
        }
    }
}

impl OutlierDetection {
    /// How long the `n`th ejection (1 for the first) lasts: base × n,
    /// capped at the maximum.
    pub fn ejection_time(&self, n: u32) -> Duration {
        self.base_ejection_time
            .saturating_mul(n.max(1))
            .min(self.max_ejection_time)
    }

    /// How many of `endpoints` endpoints may be ejected at once.
    pub fn max_ejected(&self, endpoints: usize) -> usize {
        endpoints.saturating_mul(usize::from(self.max_ejected_percent)) / 100
    }
}

/// `spec.healthCheck`: active health checking. Each endpoint of the
/// Service ports the policy applies to is sent `GET path` (HTTP/1.1, a
/// new connection each time) every `interval`; a probe passes when an
/// answer whose status is one of `expected_statuses` comes within
/// `timeout`. An endpoint whose probes fail `unhealthy_threshold` times in
/// a row is passed over until they pass `healthy_threshold` times in a
/// row; endpoints start healthy, and when every endpoint of a port is
/// unhealthy requests go to all of them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct HealthCheck {
    /// The path (and query) probed: origin form, starting with `/`.
    pub path: http::uri::PathAndQuery,
    /// The `Host` header sent; `None`: the endpoint's address.
    pub hostname: Option<http::uri::Authority>,
    /// The port probed on each endpoint's address; `None`: the endpoint's
    /// own port (the one requests go to).
    pub port: Option<u16>,
    /// Time between the starts of two probes of an endpoint.
    pub interval: Duration,
    /// How long a probe waits for a connection and the answer's head.
    pub timeout: Duration,
    /// Failed probes in a row that make a healthy endpoint unhealthy.
    pub unhealthy_threshold: u32,
    /// Passed probes in a row that make an unhealthy endpoint healthy.
    pub healthy_threshold: u32,
    /// The statuses that pass, as inclusive ranges.
    pub expected_statuses: Vec<StatusRange>,
}

/// An inclusive range of HTTP status codes (`{min: 200, max: 399}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct StatusRange {
    /// The lowest status in the range.
    pub min: u16,
    /// The highest status in the range.
    pub max: u16,
}

impl StatusRange {
    /// The statuses from `min` to `max`, both included.
    pub fn new(min: u16, max: u16) -> StatusRange {
        StatusRange { min, max }
    }
}

/// The shortest `healthCheck.interval`.
pub const MIN_HEALTH_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// The longest `healthCheck.interval` and `healthCheck.timeout`.
pub const MAX_HEALTH_CHECK_INTERVAL: Duration = Duration::from_secs(3_600);

impl HealthCheck {
    /// Whether an answer with `status` passes the check.
    pub fn passes(&self, status: u16) -> bool {
        self.expected_statuses
            .iter()
            .any(|r| (r.min..=r.max).contains(&status))
    }

    /// A check of `path` with the defaults: every 10 s, a 1 s timeout,
    /// unhealthy after 3 failures in a row, healthy again after 2 passes
    /// in a row, statuses 200 to 399 pass (as a Kubernetes `httpGet`
    /// probe), the endpoint's own address and port.
    pub fn new(path: http::uri::PathAndQuery) -> HealthCheck {
        HealthCheck {
            path,
            hostname: None,
            port: None,
            interval: Duration::from_secs(10),
            timeout: Duration::from_secs(1),
            unhealthy_threshold: 3,
            healthy_threshold: 2,
            expected_statuses: vec![StatusRange::new(200, 399)],
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Spec {
    #[allow(dead_code)] // read by the engine
    #[serde(default)]
    target_refs: serde_json::Value,
    #[serde(default)]
    algorithm: Option<AlgorithmName>,
    #[serde(default)]
    consistent_hash: Option<HashSpec>,
    #[serde(default)]
    outlier_detection: Option<OutlierSpec>,
    #[serde(default)]
    health_check: Option<HealthSpec>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HealthSpec {
    path: String,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    port: Option<u32>,
    #[serde(default)]
    interval: Option<SpecDuration>,
    #[serde(default)]
    timeout: Option<SpecDuration>,
    #[serde(default)]
    unhealthy_threshold: Option<u32>,
    #[serde(default)]
    healthy_threshold: Option<u32>,
    #[serde(default)]
    expected_statuses: Option<Vec<StatusSpec>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusSpec {
    min: u32,
    #[serde(default)]
    max: Option<u32>,
}

#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
enum AlgorithmName {
    RoundRobin,
    LeastRequest,
    ConsistentHash,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct HashSpec {
    key: KeySpec,
    #[serde(default)]
    virtual_nodes: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct KeySpec {
    #[serde(rename = "type")]
    kind: KeyType,
    #[serde(default)]
    header: Option<String>,
    #[serde(default)]
    cookie: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
enum KeyType {
    Header,
    Cookie,
    ClientAddress,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct OutlierSpec {
    #[serde(default, rename = "consecutive5xx")]
    consecutive_5xx: Option<u32>,
    #[serde(default)]
    consecutive_failures: Option<u32>,
    #[serde(default)]
    base_ejection_time: Option<SpecDuration>,
    #[serde(default)]
    max_ejection_time: Option<SpecDuration>,
    #[serde(default)]
    max_ejected_percent: Option<u32>,
}

impl LoadBalancer {
    /// Parses a `LoadBalancerPolicy` spec; the error names the field
    /// (`spec.consistentHash.key.header ...`).
    pub fn parse(spec: &serde_json::Value) -> Result<LoadBalancer, Refused> {
        let spec: Spec = serde_path_to_error::deserialize(spec)
            .map_err(|e| Refused::new(format!("spec.{}: {}", e.path(), e.inner())))?;
        let algorithm = match (spec.algorithm, spec.consistent_hash) {
            (None | Some(AlgorithmName::RoundRobin), None) => Algorithm::RoundRobin,
            (Some(AlgorithmName::LeastRequest), None) => Algorithm::LeastRequest,
            (Some(AlgorithmName::ConsistentHash), Some(h)) => Algorithm::ConsistentHash(h.parse()?),
            (Some(AlgorithmName::ConsistentHash), None) => {
                return Err("spec.consistentHash: required with algorithm ConsistentHash".into());
            }
            (_, Some(_)) => {
                return Err(
                    "spec.consistentHash: only allowed with algorithm ConsistentHash".into(),
                );
            }
        };
        let outlier = spec.outlier_detection.map(OutlierSpec::parse).transpose()?;
        let health_check = spec.health_check.map(HealthSpec::parse).transpose()?;
        Ok(LoadBalancer {
            algorithm,
            outlier,
            health_check,
        })
    }
}

impl HashSpec {
    fn parse(self) -> Result<ConsistentHash, Refused> {
        let at =
            |field: &str, why: &str| Refused::new(format!("spec.consistentHash.{field}: {why}"));
        let virtual_nodes = self.virtual_nodes.unwrap_or(DEFAULT_VIRTUAL_NODES);
        if !(1..=MAX_VIRTUAL_NODES).contains(&virtual_nodes) {
            return Err(at(
                "virtualNodes",
                &format!("must be from 1 to {MAX_VIRTUAL_NODES}"),
            ));
        }
        let k = self.key;
        let key = match (k.kind, k.header, k.cookie) {
            (KeyType::Header, Some(h), None) => match http::HeaderName::from_bytes(h.as_bytes()) {
                Ok(name) => HashKey::Header(name),
                Err(_) => return Err(at("key.header", &format!("{h:?} is not a header name"))),
            },
            (KeyType::Header, None, _) => {
                return Err(at("key.header", "required with type Header"));
            }
            (KeyType::Cookie, None, Some(c)) => {
                // RFC 6265 §4.1.1: a cookie-name is a token.
                if c.is_empty() || !c.bytes().all(is_token_byte) {
                    return Err(at("key.cookie", &format!("{c:?} is not a cookie name")));
                }
                HashKey::Cookie(c)
            }
            (KeyType::Cookie, _, None) => {
                return Err(at("key.cookie", "required with type Cookie"));
            }
            (KeyType::ClientAddress, None, None) => HashKey::ClientAddress,
            (_, Some(_), _) => return Err(at("key.header", "only allowed with type Header")),
            (_, _, Some(_)) => return Err(at("key.cookie", "only allowed with type Cookie")),
        };
        Ok(ConsistentHash { key, virtual_nodes })
    }
}

/// RFC 9110 §5.6.2 `tchar`.
fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

impl OutlierSpec {
    fn parse(self) -> Result<OutlierDetection, Refused> {
        let at = |field: &str, why: String| {
            Refused::new(format!("spec.outlierDetection.{field}: {why}"))
        };
        let d = OutlierDetection::default();
        let count = |field: &str, v: Option<u32>, default: u32| match v {
            None => Ok(default),
            Some(n) if n <= MAX_CONSECUTIVE => Ok(n),
            Some(_) => Err(at(field, format!("must be from 0 to {MAX_CONSECUTIVE}"))),
        };
        let time = |field: &str, v: Option<SpecDuration>, default: Duration| match v {
            None => Ok(default),
            Some(t) => match t.value() {
                Some(v) if !v.is_zero() && v <= MAX_EJECTION_TIME => Ok(v),
                Some(_) => Err(at(field, "must be more than zero and at most 1h".into())),
                None => Err(at(
                    field,
                    format!("{:?} is not a duration (e.g. 30s, 500ms, 1m)", t.as_str()),
                )),
            },
        };
        let consecutive_5xx = count("consecutive5xx", self.consecutive_5xx, d.consecutive_5xx)?;
        let consecutive_failures = count(
            "consecutiveFailures",
            self.consecutive_failures,
            d.consecutive_failures,
        )?;
        let base_ejection_time = time(
            "baseEjectionTime",
            self.base_ejection_time,
            d.base_ejection_time,
        )?;
        let max_ejection_time = time(
            "maxEjectionTime",
            self.max_ejection_time,
            d.max_ejection_time.max(base_ejection_time),
        )?;
        if max_ejection_time < base_ejection_time {
            return Err(at(
                "maxEjectionTime",
                "must be at least baseEjectionTime".into(),
            ));
        }
        let max_ejected_percent = match self.max_ejected_percent {
            None => d.max_ejected_percent,
            Some(p) => u8::try_from(p)
                .ok()
                .filter(|p| *p <= 100)
                .ok_or_else(|| at("maxEjectedPercent", "must be from 0 to 100".into()))?,
        };
        Ok(OutlierDetection {
            consecutive_5xx,
            consecutive_failures,
            base_ejection_time,
            max_ejection_time,
            max_ejected_percent,
        })
    }
}

impl HealthSpec {
    fn parse(self) -> Result<HealthCheck, Refused> {
        let at =
            |field: &str, why: String| Refused::new(format!("spec.healthCheck.{field}: {why}"));
        if !self.path.starts_with('/') {
            return Err(at("path", format!("{:?} must start with /", self.path)));
        }
        let path = http::uri::PathAndQuery::try_from(self.path.as_str())
            .ok()
            // A fragment is not sent; a path that has one is a mistake.
            .filter(|_| !self.path.contains('#'))
            .ok_or_else(|| at("path", format!("{:?} is not a request path", self.path)))?;
        let mut check = HealthCheck::new(path);
        if let Some(h) = self.hostname {
            check.hostname = Some(
                http::uri::Authority::try_from(h.as_str())
                    .ok()
                    .filter(|a| !a.as_str().contains('@') && !a.host().is_empty())
                    .ok_or_else(|| at("hostname", format!("{h:?} is not a host name")))?,
            );
        }
        if let Some(p) = self.port {
            check.port = Some(
                u16::try_from(p)
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or_else(|| at("port", "must be from 1 to 65535".into()))?,
            );
        }
        let time = |field: &str, v: Option<SpecDuration>, default: Duration, min: Duration| match v
        {
            None => Ok(default),
            Some(t) => match t.value() {
                Some(v) if v >= min && v <= MAX_HEALTH_CHECK_INTERVAL => Ok(v),
                Some(_) => Err(at(
                    field,
                    format!("must be from {}ms to 1h", min.as_millis()),
                )),
                None => Err(at(
                    field,
                    format!("{:?} is not a duration (e.g. 10s, 500ms, 1m)", t.as_str()),
                )),
            },
        };
        check.interval = time(
            "interval",
            self.interval,
            check.interval,
            MIN_HEALTH_CHECK_INTERVAL,
        )?;
        // The default timeout is shortened to a shorter interval.
        let default_timeout = check.timeout.min(check.interval);
        check.timeout = time(
            "timeout",
            self.timeout,
            default_timeout,
            Duration::from_millis(1),
        )?;
        if check.timeout > check.interval {
            return Err(at("timeout", "must be at most interval".into()));
        }
        let count = |field: &str, v: Option<u32>, default: u32| match v {
            None => Ok(default),
            Some(n) if (1..=MAX_CONSECUTIVE).contains(&n) => Ok(n),
            Some(_) => Err(at(field, format!("must be from 1 to {MAX_CONSECUTIVE}"))),
        };
        check.unhealthy_threshold = count(
            "unhealthyThreshold",
            self.unhealthy_threshold,
            check.unhealthy_threshold,
        )?;
        check.healthy_threshold = count(
            "healthyThreshold",
            self.healthy_threshold,
            check.healthy_threshold,
        )?;
        if let Some(statuses) = self.expected_statuses {
            if statuses.is_empty() {
                return Err(at(
                    "expectedStatuses",
                    "must list at least one range".into(),
                ));
            }
            check.expected_statuses = statuses
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    let max = r.max.unwrap_or(r.min);
                    let code = |v: u32| u16::try_from(v).ok().filter(|v| (100..=599).contains(v));
                    match (code(r.min), code(max)) {
                        (Some(min), Some(max)) if min <= max => Ok(StatusRange::new(min, max)),
                        (Some(_), Some(_)) => Err(at(
                            &format!("expectedStatuses[{i}].max"),
                            "must be at least min".into(),
                        )),
                        (None, _) => Err(at(
                            &format!("expectedStatuses[{i}].min"),
                            "must be a status from 100 to 599".into(),
                        )),
                        (_, None) => Err(at(
                            &format!("expectedStatuses[{i}].max"),
                            "must be a status from 100 to 599".into(),
                        )),
                    }
                })
                .collect::<Result<_, _>>()?;
        }
        Ok(check)
    }
}

/// The policy kind, to register with the engine
/// ([`crate::extension::Extensions::with_policy`]).
#[derive(Debug, Clone, Copy, Default)]
pub struct LoadBalancerPolicy;

impl PolicyKind for LoadBalancerPolicy {
    fn kind(&self) -> ExtensionKind {
        KIND
    }

    /// Services and their ports (what is balanced), routes and rules (all
    /// the Services they send to).
    fn targets(&self) -> &'static [TargetKind] {
        &[
            TargetKind::Service,
            TargetKind::HttpRoute,
            TargetKind::GrpcRoute,
        ]
    }

    fn parse(&self, policy: &Object, _: &mut PolicyContext<'_>) -> Result<PolicyValue, Refused> {
        let Object::Extension(object) = policy else {
            return Err("not a LoadBalancerPolicy object".into());
        };
        LoadBalancer::parse(&object.spec).map(PolicyValue::new)
    }
}

#[cfg(test)]
mod tests;
