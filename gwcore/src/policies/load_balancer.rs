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
//! ```
//!
//! This module is the deciding half: it parses a policy into a
//! [`LoadBalancer`] (refusing bad specs, naming the field), and the engine
//! attaches it by GEP-713's rules: the most specific policy for a request's
//! backend applies (the Service port, the Service, the rule, the route).
//! Choosing endpoints and ejecting them is the data plane's
//! (`gwcore_proxy::balance`).

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
/// when the policy asks for it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct LoadBalancer {
    /// How an endpoint is chosen (`spec.algorithm`).
    pub algorithm: Algorithm,
    /// When endpoints are ejected (`spec.outlierDetection`); `None`: never.
    pub outlier: Option<OutlierDetection>,
}

impl Default for LoadBalancer {
    /// Round robin, no ejection: what requests get with no policy.
    fn default() -> LoadBalancer {
        LoadBalancer {
            algorithm: Algorithm::RoundRobin,
            outlier: None,
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
        Ok(LoadBalancer { algorithm, outlier })
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
