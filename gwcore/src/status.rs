//! Status types in Kubernetes shape, and the condition vocabulary.
//!
//! Condition types and reasons are enums spelled exactly as in the Gateway
//! API spec ([`ConditionType`], [`Reason`]); the serialized [`Condition`]
//! keeps them as strings so that conditions written by other controllers
//! round-trip untouched.

use serde::{Deserialize, Serialize};

use crate::model::{ParentReference, RouteGroupKind};

/// A condition type of the Gateway API.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConditionType {
    /// `Accepted`
    Accepted,
    /// `Programmed`
    Programmed,
    /// `ResolvedRefs`
    ResolvedRefs,
    /// `Conflicted`
    Conflicted,
    /// `PartiallyInvalid`
    PartiallyInvalid,
    /// `SupportedVersion`
    SupportedVersion,
    /// `OverlappingTLSConfig`
    OverlappingTlsConfig,
    /// `InsecureFrontendValidationMode`
    InsecureFrontendValidationMode,
    /// `DefaultGateway` (GEP-3793): whether the Gateway is a default
    /// Gateway.
    DefaultGateway,
}

impl ConditionType {
    /// As spelled in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionType::Accepted => "Accepted",
            ConditionType::Programmed => "Programmed",
            ConditionType::ResolvedRefs => "ResolvedRefs",
            ConditionType::Conflicted => "Conflicted",
            ConditionType::PartiallyInvalid => "PartiallyInvalid",
            ConditionType::SupportedVersion => "SupportedVersion",
            ConditionType::OverlappingTlsConfig => "OverlappingTLSConfig",
            ConditionType::InsecureFrontendValidationMode => "InsecureFrontendValidationMode",
            ConditionType::DefaultGateway => "DefaultGateway",
        }
    }
}

/// A condition reason of the Gateway API.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[allow(missing_docs)]
pub enum Reason {
    Accepted,
    Programmed,
    ResolvedRefs,
    NoConflicts,
    SupportedVersion,
    UnsupportedVersion,
    InvalidParameters,
    Invalid,
    Pending,
    ListenersNotValid,
    ListenersNotReady,
    UnsupportedAddress,
    AddressNotAssigned,
    AddressNotUsable,
    NoResources,
    UnsupportedProtocol,
    InvalidRouteKinds,
    InvalidCertificateRef,
    RefNotPermitted,
    HostnameConflict,
    ProtocolConflict,
    PortUnavailable,
    UnsupportedValue,
    NotAllowedByListeners,
    NoMatchingListenerHostname,
    NoMatchingParent,
    InvalidKind,
    BackendNotFound,
    UnsupportedProtocolBackend,
    IncompatibleFilters,
    InvalidCaCertificateRef,
    InvalidCaCertificateKind,
    NoValidCaCertificate,
    ConfigurationChanged,
    Conflicted,
    TargetNotFound,
    ParentNotAccepted,
    ParentNotPermitted,
    NotAllowed,
    ListenerSetsNotValid,
    InvalidClientCertificateRef,
    /// GEP-3793 names no reason for `DefaultGateway=True`; this one says
    /// what the condition does.
    DefaultGateway,
}

impl Reason {
    /// As spelled in the spec.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Accepted => "Accepted",
            Reason::Programmed => "Programmed",
            Reason::ResolvedRefs => "ResolvedRefs",
            Reason::NoConflicts => "NoConflicts",
            Reason::SupportedVersion => "SupportedVersion",
            Reason::UnsupportedVersion => "UnsupportedVersion",
            Reason::InvalidParameters => "InvalidParameters",
            Reason::Invalid => "Invalid",
            Reason::Pending => "Pending",
            Reason::ListenersNotValid => "ListenersNotValid",
            Reason::ListenersNotReady => "ListenersNotReady",
            Reason::UnsupportedAddress => "UnsupportedAddress",
            Reason::AddressNotAssigned => "AddressNotAssigned",
            Reason::AddressNotUsable => "AddressNotUsable",
            Reason::NoResources => "NoResources",
            Reason::UnsupportedProtocol | Reason::UnsupportedProtocolBackend => {
                "UnsupportedProtocol"
            }
            Reason::InvalidRouteKinds => "InvalidRouteKinds",
            Reason::InvalidCertificateRef => "InvalidCertificateRef",
            Reason::RefNotPermitted => "RefNotPermitted",
            Reason::HostnameConflict => "HostnameConflict",
            Reason::ProtocolConflict => "ProtocolConflict",
            Reason::PortUnavailable => "PortUnavailable",
            Reason::UnsupportedValue => "UnsupportedValue",
            Reason::NotAllowedByListeners => "NotAllowedByListeners",
            Reason::NoMatchingListenerHostname => "NoMatchingListenerHostname",
            Reason::NoMatchingParent => "NoMatchingParent",
            Reason::InvalidKind => "InvalidKind",
            Reason::InvalidCaCertificateKind => "InvalidCACertificateKind",
            Reason::ConfigurationChanged => "ConfigurationChanged",
            Reason::BackendNotFound => "BackendNotFound",
            Reason::IncompatibleFilters => "IncompatibleFilters",
            Reason::InvalidCaCertificateRef => "InvalidCACertificateRef",
            Reason::NoValidCaCertificate => "NoValidCACertificate",
            Reason::Conflicted => "Conflicted",
            Reason::TargetNotFound => "TargetNotFound",
            Reason::ParentNotAccepted => "ParentNotAccepted",
            Reason::ParentNotPermitted => "ParentNotPermitted",
            Reason::NotAllowed => "NotAllowed",
            Reason::ListenerSetsNotValid => "ListenerSetsNotValid",
            Reason::InvalidClientCertificateRef => "InvalidClientCertificateRef",
            Reason::DefaultGateway => "DefaultGateway",
        }
    }
}

impl Reason {
    /// Parses a reason as spelled in the spec; `None` for one gwcore does
    /// not know (another controller's own).
    pub fn parse(s: &str) -> Option<Reason> {
        [
            Reason::Accepted,
            Reason::Programmed,
            Reason::ResolvedRefs,
            Reason::NoConflicts,
            Reason::SupportedVersion,
            Reason::UnsupportedVersion,
            Reason::InvalidParameters,
            Reason::Invalid,
            Reason::Pending,
            Reason::ListenersNotValid,
            Reason::ListenersNotReady,
            Reason::UnsupportedAddress,
            Reason::AddressNotAssigned,
            Reason::AddressNotUsable,
            Reason::NoResources,
            Reason::UnsupportedProtocol,
            Reason::InvalidRouteKinds,
            Reason::InvalidCertificateRef,
            Reason::RefNotPermitted,
            Reason::HostnameConflict,
            Reason::ProtocolConflict,
            Reason::PortUnavailable,
            Reason::UnsupportedValue,
            Reason::NotAllowedByListeners,
            Reason::NoMatchingListenerHostname,
            Reason::NoMatchingParent,
            Reason::InvalidKind,
            Reason::BackendNotFound,
            Reason::IncompatibleFilters,
            Reason::InvalidCaCertificateRef,
            Reason::InvalidCaCertificateKind,
            Reason::NoValidCaCertificate,
            Reason::ConfigurationChanged,
            Reason::Conflicted,
            Reason::TargetNotFound,
            Reason::ParentNotAccepted,
            Reason::ParentNotPermitted,
            Reason::NotAllowed,
            Reason::ListenerSetsNotValid,
            Reason::InvalidClientCertificateRef,
            Reason::DefaultGateway,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Reason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl ConditionType {
    /// Parses a condition type as spelled in the spec; `None` for one
    /// gwcore does not know (another controller's own).
    pub fn parse(s: &str) -> Option<ConditionType> {
        use ConditionType as T;
        [
            T::Accepted,
            T::Programmed,
            T::ResolvedRefs,
            T::Conflicted,
            T::PartiallyInvalid,
            T::SupportedVersion,
            T::OverlappingTlsConfig,
            T::InsecureFrontendValidationMode,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
}

/// The `status` of a condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConditionStatus {
    /// `True`
    True,
    /// `False`
    False,
    /// `Unknown` (and any other spelling, which the API server refuses).
    Unknown,
}

impl ConditionStatus {
    /// As spelled in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            ConditionStatus::True => "True",
            ConditionStatus::False => "False",
            ConditionStatus::Unknown => "Unknown",
        }
    }

    /// Parses a status as spelled in the API.
    pub fn parse(s: &str) -> ConditionStatus {
        match s {
            "True" => ConditionStatus::True,
            "False" => ConditionStatus::False,
            _ => ConditionStatus::Unknown,
        }
    }
}

/// `metav1.Condition`.
///
/// Its fields stay text, so that conditions written by other controllers
/// (with types and reasons gwcore does not know) round-trip unchanged; read
/// gwcore's own through [`Condition::kind`], [`Condition::state`] and
/// [`Condition::why`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// The generation this condition was computed for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// When `status` last changed (RFC 3339).
    #[serde(default)]
    pub last_transition_time: String,
    /// Machine-readable reason.
    #[serde(default)]
    pub reason: String,
    /// Human-readable message.
    #[serde(default)]
    pub message: String,
}

impl Condition {
    /// The condition type, when gwcore knows it.
    pub fn kind(&self) -> Option<ConditionType> {
        ConditionType::parse(&self.type_)
    }

    /// The status.
    pub fn state(&self) -> ConditionStatus {
        ConditionStatus::parse(&self.status)
    }

    /// The reason, when gwcore knows it.
    pub fn why(&self) -> Option<Reason> {
        Reason::parse(&self.reason)
    }

    /// Builds a condition; `lastTransitionTime` and `observedGeneration` are
    /// filled in by the engine.
    pub fn new(
        ty: ConditionType,
        status: bool,
        reason: Reason,
        message: impl Into<String>,
    ) -> Self {
        Condition {
            type_: ty.as_str().to_string(),
            status: if status { "True" } else { "False" }.to_string(),
            observed_generation: None,
            last_transition_time: String::new(),
            reason: reason.as_str().to_string(),
            message: message.into(),
        }
    }

    /// Whether the status is `True`.
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// Finds a condition by type.
pub fn find_condition(conds: &[Condition], ty: ConditionType) -> Option<&Condition> {
    conds.iter().find(|c| c.type_ == ty.as_str())
}

/// `GatewayClass.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassStatus {
    /// Conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Features this implementation supports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supported_features: Vec<SupportedFeature>,
}

/// `status.supportedFeatures[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupportedFeature {
    /// Feature name.
    pub name: String,
}

/// `Gateway.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    /// Addresses the Gateway is reachable at.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<GatewayStatusAddress>,
    /// Conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Per-listener status, in spec order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerStatus>,
    /// Number of accepted ListenerSets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attached_listener_sets: Option<i32>,
}

/// `status.addresses[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GatewayStatusAddress {
    /// `IPAddress`, `Hostname` or `NamedAddress`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<crate::values::AddressType>,
    /// The address.
    pub value: String,
}

/// `status.listeners[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    /// Listener name.
    pub name: String,
    /// Route kinds that may attach.
    #[serde(default)]
    pub supported_kinds: Vec<RouteGroupKind>,
    /// Number of Accepted routes attached.
    #[serde(default)]
    pub attached_routes: i32,
    /// Conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// `ListenerSet.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerSetStatus {
    /// Conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
    /// Per-listener status.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerStatus>,
}

/// Route `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteStatus {
    /// One entry per (parentRef, controller).
    #[serde(default)]
    pub parents: Vec<RouteParentStatus>,
}

/// `status.parents[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    /// The parentRef as written in the route's spec.
    pub parent_ref: ParentReference,
    /// The controller that wrote this entry.
    pub controller_name: String,
    /// Conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// Policy `status` (BackendTLSPolicy).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyStatus {
    /// One entry per (ancestor, controller).
    #[serde(default)]
    pub ancestors: Vec<PolicyAncestorStatus>,
}

/// `status.ancestors[]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyAncestorStatus {
    /// The ancestor (a Gateway).
    pub ancestor_ref: ParentReference,
    /// The controller that wrote this entry.
    pub controller_name: String,
    /// Conditions.
    #[serde(default)]
    pub conditions: Vec<Condition>,
}

/// The status of any object the engine writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
#[non_exhaustive]
pub enum ObjectStatus {
    /// A GatewayClass's.
    GatewayClass(GatewayClassStatus),
    /// A Gateway's.
    Gateway(GatewayStatus),
    /// A ListenerSet's.
    ListenerSet(ListenerSetStatus),
    /// A route's.
    Route(RouteStatus),
    /// A policy's.
    Policy(PolicyStatus),
}
