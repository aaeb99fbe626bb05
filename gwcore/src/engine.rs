//! The attachment and status engine.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::attachments::GatewayRouting;
use crate::model::ObjectKey;
use crate::snapshot::Snapshot;
use crate::status::ObjectStatus;

/// What the engine needs besides the snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputeOptions {
    /// Our `controllerName`; only GatewayClasses naming it are processed.
    pub controller_name: String,
    /// "Now" (RFC 3339), used as `lastTransitionTime` of changed conditions.
    pub now: String,
}

impl ComputeOptions {
    /// Options for `controller_name` at time `now`.
    pub fn new(controller_name: impl Into<String>, now: impl Into<String>) -> Self {
        ComputeOptions {
            controller_name: controller_name.into(),
            now: now.into(),
        }
    }
}

/// A refused attachment, explained for people.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Refusal {
    /// The route.
    pub route: ObjectKey,
    /// The parent as `namespace/name` (with `/section` or `:port` when given).
    pub parent: String,
    /// The condition reason (`NotAllowedByListeners`...).
    pub reason: String,
    /// One line a person understands.
    pub message: String,
}

/// The engine's output.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Computed {
    /// The status of every object we own a part of, keyed by object.
    pub statuses: BTreeMap<ObjectKey, ObjectStatus>,
    /// Routing input for each of our Gateways.
    pub routing: BTreeMap<ObjectKey, GatewayRouting>,
    /// Every refused route attachment, ordered by route then parent.
    pub refusals: Vec<Refusal>,
}

/// Computes every status and the routing input from a snapshot.
pub fn compute(snapshot: &Snapshot, opts: &ComputeOptions) -> Computed {
    let _ = (snapshot, opts);
    Computed::default()
}
