//! Extension seams: the filter and policy kinds an embedder adds to gwcore.
//!
//! Gateway API is extended in two places this module covers:
//!
//! - **`ExtensionRef` filters** of HTTPRoute and GRPCRoute rules and
//!   backendRefs: a filter of `type: ExtensionRef` names an object of an
//!   implementation's own kind (`group`, `kind`, `name`, in the route's
//!   namespace). An embedder that implements a kind declares it with a
//!   [`FilterKind`]; the engine then resolves each reference against the
//!   snapshot and sets the route's conditions, and the compiled table hands
//!   the filter, with the object it names, to the data plane in rule order
//!   among the built-in filters ([`crate::table::Filter::Extension`]).
//! - **Policies** attached by `targetRefs` (GEP-713 direct policies): an
//!   embedder declares a [`PolicyKind`] (its group and kind, what it may
//!   target, how it attaches ([`Attachment`]), and how to parse a policy
//!   into a typed value, looking other objects up through a
//!   [`PolicyContext`] and adding conditions); the engine resolves every
//!   policy's targets (a Gateway or one of its listeners, a route or one of
//!   its rules, a Service or one of its ports), settles conflicts, writes
//!   `status.ancestors` under our controller name, and hands each compiled
//!   listener, rule and backend its effective policies
//!   ([`crate::table::Forward::policies`]). gwcore's own BackendTLSPolicy
//!   is a policy kind on the same seam.
//!
//! Extensions are a value, [`Extensions`], passed in
//! [`crate::engine::ComputeOptions`] and to the loader
//! ([`crate::load::load_str_extended`]); there is no global registry. Every
//! trait here is pure and synchronous: the engine's output stays a
//! deterministic function of its input. What acts on traffic (an
//! authentication call, a rate-limit counter) lives in the data plane, e.g.
//! `gwcore_proxy::plugin`.
//!
//! ```
//! use gwcore::extension::{ExtensionKind, ExtensionObject, Extensions, FilterKind, Refused};
//!
//! /// `example.com/v1 HeaderAuth`: requests without a header get 401.
//! #[derive(Debug)]
//! struct HeaderAuth;
//!
//! impl FilterKind for HeaderAuth {
//!     fn kind(&self) -> ExtensionKind {
//!         ExtensionKind::new("example.com/v1", "HeaderAuth")
//!     }
//!     fn check(&self, object: &ExtensionObject) -> Result<(), Refused> {
//!         match object.spec.get("header").and_then(|h| h.as_str()) {
//!             Some(h) if http::HeaderName::from_bytes(h.as_bytes()).is_ok() => Ok(()),
//!             _ => Err("spec.header must be a header name".into()),
//!         }
//!     }
//! }
//!
//! let extensions = Extensions::new().with_filter(HeaderAuth);
//! assert!(extensions.kind("example.com", "HeaderAuth").is_some());
//! ```

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::{Object, ObjectKey, ObjectMeta};
use crate::snapshot::Snapshot;
use crate::status::{Condition, Reason};

/// A kind an extension registers: its `apiVersion` (`group/version`) and
/// `kind`, both known when the program is written.
///
/// Two kinds are the same when their group and kind are: the version is
/// the one written back (statuses, manifests), any version of the group is
/// read.
#[derive(Debug, Clone, Copy)]
pub struct ExtensionKind {
    api_version: &'static str,
    kind: &'static str,
}

impl ExtensionKind {
    /// A kind served as `api_version` (`group/version`, e.g.
    /// `"example.com/v1"`).
    pub const fn new(api_version: &'static str, kind: &'static str) -> ExtensionKind {
        ExtensionKind { api_version, kind }
    }

    /// The API group (the part of `apiVersion` before the last `/`).
    pub fn group(self) -> &'static str {
        match self.api_version.rsplit_once('/') {
            Some((g, _)) => g,
            None => "",
        }
    }

    /// The `apiVersion` written for objects of this kind.
    pub fn api_version(self) -> &'static str {
        self.api_version
    }

    /// The kind, as spelled in manifests.
    pub fn kind(self) -> &'static str {
        self.kind
    }

    /// Whether `group` and `kind` name this kind.
    pub fn is(self, group: &str, kind: &str) -> bool {
        self.group() == group && self.kind == kind
    }
}

impl PartialEq for ExtensionKind {
    fn eq(&self, other: &Self) -> bool {
        self.group() == other.group() && self.kind == other.kind
    }
}

impl Eq for ExtensionKind {}

impl PartialOrd for ExtensionKind {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ExtensionKind {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.group(), self.kind).cmp(&(other.group(), other.kind))
    }
}

impl std::hash::Hash for ExtensionKind {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.group().hash(state);
        self.kind.hash(state);
    }
}

impl fmt::Display for ExtensionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.kind, self.group())
    }
}

impl Serialize for ExtensionKind {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for ExtensionKind {
    /// Extension kinds are registered in code, never read from data: this
    /// always fails (a key of a registered kind is built by the loader).
    fn deserialize<D: serde::Deserializer<'de>>(_: D) -> Result<Self, D::Error> {
        Err(serde::de::Error::custom(
            "extension kinds are registered in code, not read from data",
        ))
    }
}

/// An object of a kind an extension registered, as read: its metadata and
/// its `spec` (and `status`) as JSON, for the extension to parse.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ExtensionObject {
    /// Its kind.
    #[serde(skip)]
    pub kind: ExtensionKind,
    /// The `apiVersion` it was read with.
    #[serde(skip)]
    pub api_version: String,
    /// Metadata.
    pub metadata: ObjectMeta,
    /// `spec`, as written (`null` when absent).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub spec: serde_json::Value,
    /// `status`, as read. For a policy kind, the engine reads the previous
    /// `status.ancestors` from here (so `lastTransitionTime` stays put).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Body {
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: serde_json::Value,
    #[serde(default)]
    status: Option<serde_json::Value>,
}

impl ExtensionObject {
    /// Reads an object of `kind` from a manifest's JSON value; the error
    /// carries the field path.
    pub fn from_value(
        kind: ExtensionKind,
        value: serde_json::Value,
    ) -> Result<ExtensionObject, serde_path_to_error::Error<serde_json::Error>> {
        let api_version = value
            .get("apiVersion")
            .and_then(|v| v.as_str())
            .unwrap_or(kind.api_version)
            .to_owned();
        let body: Body = serde_path_to_error::deserialize(value)?;
        Ok(ExtensionObject {
            kind,
            api_version,
            metadata: body.metadata,
            spec: body.spec,
            status: body.status,
        })
    }

    /// An object built in code (tests, adapters).
    pub fn new(kind: ExtensionKind, metadata: ObjectMeta, spec: serde_json::Value) -> Self {
        ExtensionObject {
            kind,
            api_version: kind.api_version.to_owned(),
            metadata,
            spec,
            status: None,
        }
    }

    /// The spec as a typed value; the error names the field
    /// (`spec.limit.requests`).
    pub fn spec_as<T: serde::de::DeserializeOwned>(&self) -> Result<T, Refused> {
        serde_path_to_error::deserialize::<_, T>(&self.spec)
            .map_err(|e| Refused(format!("spec.{}: {}", e.path(), e.inner())))
    }
}

/// Why an extension refused an object: one line for people, which the
/// engine puts in the status condition it sets.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(String);

impl Refused {
    /// A refusal with this message.
    pub fn new(message: impl Into<String>) -> Refused {
        Refused(message.into())
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.0
    }
}

impl From<String> for Refused {
    fn from(message: String) -> Refused {
        Refused(message)
    }
}

impl From<&str> for Refused {
    fn from(message: &str) -> Refused {
        Refused(message.to_owned())
    }
}

/// A filter kind an embedder implements, named by `ExtensionRef` filters.
///
/// Deciding only: whether a referenced object is usable. What the filter
/// does to requests is the data plane's.
pub trait FilterKind: fmt::Debug + Send + Sync + 'static {
    /// The kind `extensionRef`s name (`group` and `kind`; the version is
    /// the one objects are written with).
    fn kind(&self) -> ExtensionKind;

    /// Checks a referenced object. An `Err` leaves the reference
    /// unresolved: the route gets `ResolvedRefs=False` (reason
    /// `InvalidParameters`, with this message) and requests the filter
    /// would process get 500, as the spec requires of a filter that cannot
    /// be applied. The default accepts every object.
    fn check(&self, object: &ExtensionObject) -> Result<(), Refused> {
        let _ = object;
        Ok(())
    }
    /// Features this kind adds to our GatewayClasses'
    /// `status.supportedFeatures` ([`crate::features`]). Default: none.
    fn features(&self) -> &'static [&'static str] {
        &[]
    }
}

/// What a policy may target (GEP-713 direct attachment).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum TargetKind {
    /// A Gateway (`sectionName`: a listener).
    Gateway,
    /// An HTTPRoute (`sectionName`: a rule's name).
    HttpRoute,
    /// A GRPCRoute (`sectionName`: a rule's name).
    GrpcRoute,
    /// A Service (`sectionName`: a port's name).
    Service,
}

impl TargetKind {
    /// Every target kind.
    pub const ALL: &'static [TargetKind] = &[
        TargetKind::Gateway,
        TargetKind::HttpRoute,
        TargetKind::GrpcRoute,
        TargetKind::Service,
    ];

    /// The kind named by a `targetRef`'s `group` and `kind`.
    pub fn parse(group: &str, kind: &str) -> Option<TargetKind> {
        Some(match (group, kind) {
            (crate::model::GATEWAY_GROUP, "Gateway") => TargetKind::Gateway,
            (crate::model::GATEWAY_GROUP, "HTTPRoute") => TargetKind::HttpRoute,
            (crate::model::GATEWAY_GROUP, "GRPCRoute") => TargetKind::GrpcRoute,
            ("", "Service") => TargetKind::Service,
            _ => return None,
        })
    }

    /// The object kind.
    pub fn object_kind(self) -> crate::model::Kind {
        use crate::model::Kind;
        match self {
            TargetKind::Gateway => Kind::Gateway,
            TargetKind::HttpRoute => Kind::HttpRoute,
            TargetKind::GrpcRoute => Kind::GrpcRoute,
            TargetKind::Service => Kind::Service,
        }
    }
}

/// A policy kind, attached by `spec.targetRefs` (each `{group, kind,
/// name, sectionName?}`, in the policy's namespace).
///
/// An embedder implements it for its own kinds (their objects are
/// [`Object::Extension`]); gwcore's built-in BackendTLSPolicy is one too
/// (its objects are [`Object::BackendTlsPolicy`], its value is each
/// backend's `BackendTarget::tls`).
pub trait PolicyKind: fmt::Debug + Send + Sync + 'static {
    /// The policy's kind.
    fn kind(&self) -> ExtensionKind;

    /// What it may target; a targetRef of another kind makes the policy
    /// `Accepted=False` (reason `Invalid`), or is ignored (see
    /// [`Attachment::other_targets`]). Default: all of
    /// [`TargetKind::ALL`].
    fn targets(&self) -> &'static [TargetKind] {
        TargetKind::ALL
    }

    /// How conflicts, targets of other kinds and `sectionName`s that name
    /// nothing are treated. Default: [`Attachment::GEP_713`].
    fn attachment(&self) -> Attachment {
        Attachment::GEP_713
    }

    /// Parses a policy (besides its `targetRefs`) into the value the data
    /// plane applies ([`PolicyValue::new`] of any type). For a kind an
    /// embedder registers, `policy` is an [`Object::Extension`].
    ///
    /// `cx` looks up other objects of the snapshot (a CA bundle, a
    /// Secret): the engine records what was looked up and parses the policy
    /// again when one of them changes, so the result must be a function of
    /// the policy's metadata and spec and of what `cx` returned (not of its
    /// status). `cx` also takes conditions written after `Accepted` in
    /// each ancestor entry (`ResolvedRefs`...) and can keep an applied
    /// policy from being reported Accepted
    /// ([`PolicyContext::not_accepted`]).
    ///
    /// An `Err` makes the policy `Accepted=False` with reason `Invalid` and
    /// this message, and it applies nowhere.
    fn parse(&self, policy: &Object, cx: &mut PolicyContext<'_>) -> Result<PolicyValue, Refused>;
    /// Features this kind adds to our GatewayClasses'
    /// `status.supportedFeatures` ([`crate::features`]). Default: none.
    fn features(&self) -> &'static [&'static str] {
        &[]
    }
}

/// How the engine attaches the policies of one kind. The default,
/// [`Attachment::GEP_713`], is GEP-713 direct attachment; BackendTLSPolicy
/// uses [`Attachment::BACKEND_TLS_POLICY`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Attachment {
    /// Policies of the kind that share a target.
    pub conflicts: Conflicts,
    /// A targetRef of a kind outside [`PolicyKind::targets`].
    pub other_targets: OtherTargets,
    /// A `sectionName` that names no listener, rule or port.
    pub missing_sections: MissingSections,
}

impl Attachment {
    /// GEP-713: conflicts per target, a targetRef of another kind is
    /// `Invalid`, a missing section `TargetNotFound`.
    pub const GEP_713: Attachment = Attachment {
        conflicts: Conflicts::PerTarget,
        other_targets: OtherTargets::Invalid,
        missing_sections: MissingSections::TargetNotFound,
    };

    /// BackendTLSPolicy's rules: a policy naming a target an older one
    /// names is `Conflicted` as a whole; targetRefs of other kinds and
    /// missing sections are ignored.
    pub const BACKEND_TLS_POLICY: Attachment = Attachment {
        conflicts: Conflicts::WholePolicy,
        other_targets: OtherTargets::Ignored,
        missing_sections: MissingSections::Ignored,
    };

    /// With `conflicts`.
    pub const fn with_conflicts(mut self, conflicts: Conflicts) -> Attachment {
        self.conflicts = conflicts;
        self
    }

    /// With `other_targets`.
    pub const fn with_other_targets(mut self, other_targets: OtherTargets) -> Attachment {
        self.other_targets = other_targets;
        self
    }

    /// With `missing_sections`.
    pub const fn with_missing_sections(mut self, missing_sections: MissingSections) -> Attachment {
        self.missing_sections = missing_sections;
        self
    }
}

impl Default for Attachment {
    fn default() -> Attachment {
        Attachment::GEP_713
    }
}

/// How policies of one kind that share a target are settled. Precedence
/// is GEP-713's either way: the oldest `creationTimestamp`, then the first
/// by namespace and name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Conflicts {
    /// Each target goes to the policy that precedes the others naming it;
    /// a policy is `Conflicted` on a Gateway only when it loses every
    /// target it has there.
    PerTarget,
    /// A policy with a targetRef (same group, kind, name and
    /// `sectionName`) that a preceding policy of its kind in its namespace
    /// also has is `Conflicted` everywhere and applies nowhere (whether the
    /// preceding one applies or not).
    WholePolicy,
}

/// What a targetRef of a kind the policy kind does not take does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum OtherTargets {
    /// The policy is `Accepted=False`, reason `Invalid`.
    Invalid,
    /// The targetRef is ignored.
    Ignored,
}

/// What a `sectionName` that names nothing does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum MissingSections {
    /// Said in `Accepted` (reason `TargetNotFound` when nothing else of
    /// the policy applies on that Gateway).
    TargetNotFound,
    /// The targetRef applies nowhere, and nothing is said.
    Ignored,
}

/// What a [`PolicyKind::parse`] sees and says besides its value: a
/// read-only view of the snapshot (every key looked up is recorded, so a
/// change to that object parses the policy again), the conditions to write
/// after `Accepted`, and whether the policy, though it applies, is reported
/// Accepted.
#[derive(Debug)]
pub struct PolicyContext<'a> {
    snapshot: &'a Snapshot,
    pub(crate) reads: BTreeSet<ObjectKey>,
    pub(crate) conditions: Vec<Condition>,
    pub(crate) not_accepted: Option<(Reason, String)>,
}

impl<'a> PolicyContext<'a> {
    /// A context over `snapshot` (the engine makes one per parse; tests of
    /// a policy kind make their own).
    pub fn new(snapshot: &'a Snapshot) -> PolicyContext<'a> {
        PolicyContext {
            snapshot,
            reads: BTreeSet::new(),
            conditions: Vec::new(),
            not_accepted: None,
        }
    }

    /// The object of `key`, if present; recorded as read either way.
    pub fn get(&mut self, key: &ObjectKey) -> Option<&'a Object> {
        if !self.reads.contains(key) {
            self.reads.insert(key.clone());
        }
        self.snapshot.get(key)
    }

    /// The keys looked up so far.
    pub fn reads(&self) -> impl Iterator<Item = &ObjectKey> + '_ {
        self.reads.iter()
    }

    /// Adds a condition, written after `Accepted` in every ancestor entry
    /// of the policy (e.g. `ResolvedRefs`); `lastTransitionTime` and
    /// `observedGeneration` are filled in by the engine.
    pub fn condition(&mut self, condition: Condition) {
        self.conditions.push(condition);
    }

    /// The conditions added so far.
    pub fn conditions(&self) -> &[Condition] {
        &self.conditions
    }

    /// The policy still applies (its value must then say how the data
    /// plane fails safe, e.g. a backend not reached at all), but is
    /// reported `Accepted=False` with this reason and message, unless it is
    /// `Invalid` or `Conflicted` there. BackendTLSPolicy: reason
    /// `NoValidCACertificate` when its CA references do not resolve.
    pub fn not_accepted(&mut self, reason: Reason, message: impl Into<String>) {
        self.not_accepted = Some((reason, message.into()));
    }

    /// What [`PolicyContext::not_accepted`] set.
    pub fn is_not_accepted(&self) -> Option<(Reason, &str)> {
        self.not_accepted.as_ref().map(|(r, m)| (*r, m.as_str()))
    }
}

/// A parsed policy: any value the policy kind produces, shared. Compare
/// policies by [`crate::attachments::AppliedPolicy::policy`]; the value is
/// a pure function of the object.
#[derive(Clone)]
pub struct PolicyValue(Arc<dyn Any + Send + Sync>);

impl PolicyValue {
    /// Wraps a parsed value.
    pub fn new<T: Any + Send + Sync>(value: T) -> PolicyValue {
        PolicyValue(Arc::new(value))
    }

    /// The value, when it is a `T`.
    pub fn get<T: Any>(&self) -> Option<&T> {
        self.0.downcast_ref::<T>()
    }
}

impl fmt::Debug for PolicyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PolicyValue(..)")
    }
}

/// The extensions one engine (and loader) runs with.
#[derive(Clone, Default)]
pub struct Extensions {
    filters: BTreeMap<ExtensionKind, Arc<dyn FilterKind>>,
    policies: BTreeMap<ExtensionKind, Arc<dyn PolicyKind>>,
    backends: BTreeMap<ExtensionKind, Arc<dyn BackendKind>>,
}

/// The Service port a backendRef of an extension's kind stands for.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub struct ServicePort {
    /// The Service's namespace.
    pub namespace: String,
    /// The Service's name.
    pub name: String,
    /// The port.
    pub port: u16,
}

impl ServicePort {
    /// The port `port` of Service `namespace/name`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>, port: u16) -> ServicePort {
        ServicePort {
            namespace: namespace.into(),
            name: name.into(),
            port,
        }
    }
}

/// A backendRef kind beyond Service (a `ServiceImport`, a named external
/// backend...): resolves an object of its kind to the Service port that
/// serves it. The engine then treats the reference as one to that Service
/// port (its endpoints, `appProtocol`, BackendTLSPolicy), so any data plane
/// serves it unchanged. A backendRef to the kind is checked like one to a
/// Service: a ReferenceGrant (`to` the kind's group and kind) is needed
/// across namespaces, and a missing object is `BackendNotFound`.
pub trait BackendKind: fmt::Debug + Send + Sync + 'static {
    /// The kind backendRefs name.
    fn kind(&self) -> ExtensionKind;

    /// The Service port behind `object` for a backendRef with `port`. An
    /// `Err` makes the backendRef unresolved: the route gets
    /// `ResolvedRefs=False` (reason `BackendNotFound`, with this message)
    /// and the backend's share of requests 500.
    fn resolve(&self, object: &ExtensionObject, port: Option<u16>) -> Result<ServicePort, Refused>;
    /// Features this kind adds to our GatewayClasses'
    /// `status.supportedFeatures` ([`crate::features`]). Default: none.
    fn features(&self) -> &'static [&'static str] {
        &[]
    }
}

impl Extensions {
    /// No extensions.
    pub fn new() -> Extensions {
        Extensions::default()
    }

    /// Adds a filter kind (replacing one of the same group and kind).
    pub fn with_filter(mut self, filter: impl FilterKind) -> Extensions {
        self.filters.insert(filter.kind(), Arc::new(filter));
        self
    }

    /// Adds a policy kind (replacing one of the same group and kind).
    pub fn with_policy(mut self, policy: impl PolicyKind) -> Extensions {
        self.policies.insert(policy.kind(), Arc::new(policy));
        self
    }

    /// Adds a backend kind (replacing one of the same group and kind).
    pub fn with_backend(mut self, backend: impl BackendKind) -> Extensions {
        self.backends.insert(backend.kind(), Arc::new(backend));
        self
    }

    /// The backend kind named by `group` and `kind`.
    pub fn backend(&self, group: &str, kind: &str) -> Option<&dyn BackendKind> {
        self.backends
            .iter()
            .find(|(k, _)| k.is(group, kind))
            .map(|(_, b)| &**b)
    }

    /// Whether no extension is registered.
    pub fn is_empty(&self) -> bool {
        self.filters.is_empty() && self.policies.is_empty() && self.backends.is_empty()
    }

    /// The registered kind named by `group` and `kind`, of any extension.
    pub fn kind(&self, group: &str, kind: &str) -> Option<ExtensionKind> {
        self.kinds().find(|k| k.is(group, kind))
    }

    /// Every registered kind: filters', policies', then backends'.
    pub fn kinds(&self) -> impl Iterator<Item = ExtensionKind> + '_ {
        self.filters
            .keys()
            .chain(self.policies.keys())
            .chain(self.backends.keys())
            .copied()
    }

    /// The filter kind named by `group` and `kind`.
    pub fn filter(&self, group: &str, kind: &str) -> Option<&dyn FilterKind> {
        self.filters
            .iter()
            .find(|(k, _)| k.is(group, kind))
            .map(|(_, f)| &**f)
    }

    /// The features the registered kinds add
    /// ([`FilterKind::features`] and the like), sorted.
    pub fn features(&self) -> std::collections::BTreeSet<&'static str> {
        self.filters
            .values()
            .flat_map(|f| f.features())
            .chain(self.policies.values().flat_map(|p| p.features()))
            .chain(self.backends.values().flat_map(|b| b.features()))
            .copied()
            .collect()
    }

    /// The features one registered kind adds (empty for a kind not
    /// registered).
    pub fn features_of(&self, kind: ExtensionKind) -> &'static [&'static str] {
        if let Some(f) = self.filters.get(&kind) {
            f.features()
        } else if let Some(p) = self.policies.get(&kind) {
            p.features()
        } else if let Some(b) = self.backends.get(&kind) {
            b.features()
        } else {
            &[]
        }
    }

    /// The registered policy kinds.
    pub fn policies(&self) -> impl Iterator<Item = &dyn PolicyKind> + '_ {
        self.policies.values().map(|p| &**p)
    }

    /// The policy kind of `kind`.
    pub fn policy(&self, kind: ExtensionKind) -> Option<&dyn PolicyKind> {
        self.policies.get(&kind).map(|p| &**p)
    }
}

impl fmt::Debug for Extensions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Extensions")
            .field("filters", &self.filters.keys().collect::<Vec<_>>())
            .field("policies", &self.policies.keys().collect::<Vec<_>>())
            .field("backends", &self.backends.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// Two registries are equal when they register the same kinds (an engine
/// compares its options to decide whether to start over).
impl PartialEq for Extensions {
    fn eq(&self, other: &Self) -> bool {
        self.filters.keys().eq(other.filters.keys())
            && self.policies.keys().eq(other.policies.keys())
            && self.backends.keys().eq(other.backends.keys())
    }
}

impl Eq for Extensions {}
