//! Bookkeeping of the incremental engine: the reverse indexes from an
//! object to the routes that depend on it, and the status map with its
//! delta.

use std::collections::{BTreeMap, BTreeSet};

use super::incremental::{Delta, RouteKey};
use crate::attachments::{GatewayRouting, ListenerRouting};
use crate::model::{Kind, Object, ObjectKey};
use crate::snapshot::SharedMap;
use crate::status::ObjectStatus;

/// Adds `route` to the set under `k` (the key is cloned only when new).
pub(super) fn index_add<K, Q>(idx: &mut BTreeMap<K, BTreeSet<RouteKey>>, k: &Q, route: &RouteKey)
where
    K: Ord + std::borrow::Borrow<Q>,
    Q: Ord + ?Sized + ToOwned<Owned = K>,
{
    match idx.get_mut(k) {
        Some(set) => {
            set.insert(route.clone());
        }
        None => {
            idx.insert(k.to_owned(), BTreeSet::from([route.clone()]));
        }
    }
}

/// The routes of an index entry, as keys.
pub(super) fn indexed<'a>(
    set: Option<&'a BTreeSet<RouteKey>>,
) -> impl Iterator<Item = ObjectKey> + 'a {
    set.into_iter().flatten().map(|k| ObjectKey::clone(k))
}

pub(super) fn index_remove(
    idx: &mut BTreeMap<ObjectKey, BTreeSet<RouteKey>>,
    k: &ObjectKey,
    route: &ObjectKey,
) {
    if let Some(set) = idx.get_mut(k) {
        set.remove(route);
        if set.is_empty() {
            idx.remove(k);
        }
    }
}

/// Whether two routing inputs are equal; route lists skip the chunks they
/// share ([`crate::attachments::RouteList`]), so an unchanged Gateway
/// costs a pointer comparison per chunk of routes.
pub(super) fn same_routing(a: &GatewayRouting, b: &GatewayRouting) -> bool {
    // Destructured so that a new field cannot be forgotten here.
    let GatewayRouting {
        gateway,
        listeners,
        backend_client_certificate,
        policies,
    } = a;
    gateway == &b.gateway
        && backend_client_certificate == &b.backend_client_certificate
        && policies == &b.policies
        && listeners.len() == b.listeners.len()
        && listeners.iter().zip(&b.listeners).all(|(x, y)| {
            let ListenerRouting {
                name,
                source,
                port,
                protocol,
                hostname,
                tls_mode,
                certificates,
                frontend_validation,
                routes,
            } = x;
            name == &y.name
                && source == &y.source
                && port == &y.port
                && protocol == &y.protocol
                && hostname == &y.hostname
                && tls_mode == &y.tls_mode
                && certificates == &y.certificates
                && frontend_validation == &y.frontend_validation
                && routes == &y.routes
        })
}

/// Whether `obj` carries `status` as its status (as
/// [`crate::Snapshot::set_status`] would store it).
pub(super) fn carries_status(obj: &Object, status: &ObjectStatus) -> bool {
    match (obj, status) {
        (Object::GatewayClass(o), ObjectStatus::GatewayClass(s)) => o.status.as_ref() == Some(s),
        (Object::Gateway(o), ObjectStatus::Gateway(s)) => o.status.as_ref() == Some(s),
        (Object::ListenerSet(o), ObjectStatus::ListenerSet(s)) => o.status.as_ref() == Some(s),
        (Object::HttpRoute(o), ObjectStatus::Route(s)) => o.status.as_ref() == Some(s),
        (Object::GrpcRoute(o), ObjectStatus::Route(s)) => o.status.as_ref() == Some(s),
        (
            Object::TlsRoute(o) | Object::TcpRoute(o) | Object::UdpRoute(o),
            ObjectStatus::Route(s),
        ) => o.status.as_ref() == Some(s),
        (Object::BackendTlsPolicy(o), ObjectStatus::Policy(s)) => o.status.as_ref() == Some(s),
        (Object::Extension(o), ObjectStatus::Policy(s)) => {
            o.status.is_some() && o.status == serde_json::to_value(s).ok()
        }
        _ => false,
    }
}

/// The keys of one kind's statuses (a range of the ordered map, not a scan).
pub(super) fn status_keys(
    statuses: &SharedMap<ObjectKey, ObjectStatus>,
    kind: Kind,
) -> impl Iterator<Item = &ObjectKey> {
    statuses
        .range_from(&ObjectKey::new(kind, "", ""))
        .map(|(k, _)| k)
        .take_while(move |k| k.kind == kind)
}

/// Stores `new` as the status of `key` (removes it when `None`), and records
/// it in the delta when it differs from what was stored.
/// With `delta: None` (loading a whole snapshot, whose delta nobody reads)
/// nothing is recorded, which saves a deep copy of every status.
pub(super) fn put_status(
    statuses: &mut SharedMap<ObjectKey, ObjectStatus>,
    delta: Option<&mut Delta>,
    key: &ObjectKey,
    new: Option<ObjectStatus>,
) {
    if statuses.get(key) == new.as_ref() {
        return;
    }
    let Some(delta) = delta else {
        match new {
            Some(s) => statuses.insert(key.clone(), s),
            None => statuses.remove(key),
        };
        return;
    };
    match &new {
        Some(s) => {
            statuses.insert(key.clone(), s.clone());
        }
        None => {
            statuses.remove(key);
        }
    }
    delta.statuses.insert(key.clone(), new);
}

/// Replaces the statuses under `old_keys` with `new`: keys absent from
/// `new` are removed, the others stored (each change recorded in the delta).
pub(super) fn replace_statuses(
    statuses: &mut SharedMap<ObjectKey, ObjectStatus>,
    mut delta: Option<&mut Delta>,
    old_keys: Vec<ObjectKey>,
    new: BTreeMap<ObjectKey, ObjectStatus>,
) {
    for k in old_keys {
        if !new.contains_key(&k) {
            put_status(statuses, delta.as_deref_mut(), &k, None);
        }
    }
    for (k, s) in new {
        put_status(statuses, delta.as_deref_mut(), &k, Some(s));
    }
}
