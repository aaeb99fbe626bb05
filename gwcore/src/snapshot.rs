//! A set of objects keyed by kind, namespace and name.

use std::sync::Arc;

use crate::model::{Kind, Object, ObjectKey};
use crate::status::ObjectStatus;

mod map;
pub use map::{Iter, Keys, SharedMap, Values};

/// The label the API server gives every Namespace (Kubernetes 1.22 and
/// later): its name. Immutable there; selectors commonly match on it.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Every object the engine looks at, keyed for deterministic iteration.
/// Inserting an object with the key of one already present replaces it.
/// Objects are shared (`Arc`) and kept in a [`SharedMap`], so cloning a
/// snapshot costs a reference count per chunk of about 64 objects, a
/// change in a clone copies the one chunk it touches (and the object
/// only when it is changed in place), and comparing two snapshots, one
/// cloned from the other, skips the chunks they share.
///
/// Every Namespace inserted carries [`NAMESPACE_NAME_LABEL`] with its name,
/// as the API server sets it (any other value is overwritten), so selectors
/// on it match in every mode, from files as in a cluster.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    objects: SharedMap<ObjectKey, Object>,
}

/// Equal objects under equal keys. An object, or a chunk of objects,
/// shared with the other snapshot (one cloned from the other and changed
/// in a few places) is equal without being compared field by field.
impl PartialEq for Snapshot {
    fn eq(&self, other: &Snapshot) -> bool {
        self.objects == other.objects
    }
}

impl Snapshot {
    /// An empty snapshot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a snapshot; later objects with the same key win.
    pub fn from_objects(objects: impl IntoIterator<Item = Object>) -> Self {
        let mut s = Snapshot::new();
        for o in objects {
            s.insert(o);
        }
        s
    }

    /// Builds a snapshot of shared objects (see [`Snapshot::insert_shared`]);
    /// later objects with the same key win.
    pub fn from_shared(objects: impl IntoIterator<Item = Arc<Object>>) -> Self {
        let mut s = Snapshot::new();
        for o in objects {
            s.insert_shared(o);
        }
        s
    }

    /// Inserts or replaces an object, returning the one it replaced. A
    /// Namespace gets [`NAMESPACE_NAME_LABEL`] (see [`Snapshot`]).
    pub fn insert(&mut self, object: Object) -> Option<Object> {
        self.insert_shared(Arc::new(object))
            .map(|old| Arc::try_unwrap(old).unwrap_or_else(|shared| (*shared).clone()))
    }

    /// [`Snapshot::insert`] without copying: the snapshot keeps `object`
    /// itself, so it stays shared with whoever else holds it (another
    /// snapshot, the controller's store), and [`Snapshot::differences`]
    /// between two snapshots holding it costs a pointer comparison. A
    /// Namespace without its [`NAMESPACE_NAME_LABEL`] is copied to get it.
    pub fn insert_shared(&mut self, mut object: Arc<Object>) -> Option<Arc<Object>> {
        if let Object::Namespace(ns) = &*object
            && ns.metadata.labels.get(NAMESPACE_NAME_LABEL) != Some(&ns.metadata.name)
            && let Object::Namespace(ns) = Arc::make_mut(&mut object)
        {
            let m = &mut ns.metadata;
            m.labels
                .insert(NAMESPACE_NAME_LABEL.to_string(), m.name.clone());
        }
        self.objects.insert_shared(object.key(), object)
    }

    /// Removes an object.
    pub fn remove(&mut self, key: &ObjectKey) -> Option<Object> {
        self.remove_shared(key)
            .map(|old| Arc::try_unwrap(old).unwrap_or_else(|shared| (*shared).clone()))
    }

    /// Removes an object, handing it back as it was shared.
    pub fn remove_shared(&mut self, key: &ObjectKey) -> Option<Arc<Object>> {
        self.objects.remove(key)
    }

    /// Looks up an object.
    pub fn get(&self, key: &ObjectKey) -> Option<&Object> {
        self.objects.get(key)
    }

    /// Looks up an object as it is shared (clone the `Arc` to hand it on
    /// without copying it).
    pub fn get_shared(&self, key: &ObjectKey) -> Option<&Arc<Object>> {
        self.objects.get_shared(key)
    }

    /// All objects as they are shared, ordered by key.
    pub fn iter_shared(&self) -> impl Iterator<Item = &Arc<Object>> {
        self.objects.iter_shared().map(|(_, o)| o)
    }

    /// Mutable lookup (copies the object first if it is shared with a clone
    /// of this snapshot). A Namespace's [`NAMESPACE_NAME_LABEL`] is the
    /// caller's to keep.
    pub fn get_mut(&mut self, key: &ObjectKey) -> Option<&mut Object> {
        self.objects.get_mut(key)
    }

    /// All objects, ordered by key.
    pub fn iter(&self) -> impl Iterator<Item = &Object> {
        self.objects.values()
    }

    /// All objects of one kind, ordered by (namespace, name).
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Object> {
        let lo = ObjectKey::new(kind, "", "");
        self.objects
            .range_from(&lo)
            .take_while(move |(k, _)| k.kind == kind)
            .map(|(_, v)| v)
    }

    /// All objects of one kind in one namespace, ordered by name.
    pub fn in_namespace<'s>(
        &'s self,
        kind: Kind,
        namespace: &'s str,
    ) -> impl Iterator<Item = &'s Object> + 's {
        let lo = ObjectKey::new(kind, namespace, "");
        self.objects
            .range_from(&lo)
            .take_while(move |(k, _)| k.kind == kind && k.namespace == namespace)
            .map(|(_, v)| v)
    }

    /// What differs from this snapshot to `newer`, in key order: each key
    /// whose object is new or changed, with `newer`'s object, and each key
    /// gone from `newer` (`None`). Objects the two snapshots share (one
    /// cloned from the other and changed in a few places) are not compared
    /// field by field, so the cost follows the keys, not the objects' size.
    pub fn differences<'a>(&self, newer: &'a Snapshot) -> Vec<(ObjectKey, Option<&'a Object>)> {
        let mut out = Vec::new();
        self.unshared(newer, |k, old, new| {
            if old.is_none_or(|o| Some(o) != new) {
                out.push((k.clone(), new.map(|o| &**o)));
            }
        });
        out
    }

    /// Calls `f` with each key under which the two snapshots do not share
    /// one object, in key order: this snapshot's object (`None`: absent
    /// here) and `newer`'s (`None`: gone there). Equal objects that are
    /// not shared are passed too (compare them to tell).
    pub fn unshared<'a, 's>(
        &'s self,
        newer: &'a Snapshot,
        mut f: impl FnMut(&ObjectKey, Option<&'s Arc<Object>>, Option<&'a Arc<Object>>),
    ) {
        self.objects.unshared(&newer.objects, |k, a, b| f(k, a, b));
    }

    /// All keys, ordered.
    pub fn keys(&self) -> impl Iterator<Item = &ObjectKey> {
        self.objects.keys()
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.objects.len()
    }

    /// Whether there are no objects.
    pub fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    /// Stores a computed status in its object, as the API server's status
    /// subresource would. Returns `false` when the object is absent or the
    /// status is of another shape.
    pub fn set_status(&mut self, key: &ObjectKey, status: ObjectStatus) -> bool {
        // Checked first: a status of another shape copies nothing.
        let fits = matches!(
            (self.objects.get(key), &status),
            (Some(Object::GatewayClass(_)), ObjectStatus::GatewayClass(_))
                | (Some(Object::Gateway(_)), ObjectStatus::Gateway(_))
                | (Some(Object::ListenerSet(_)), ObjectStatus::ListenerSet(_))
                | (
                    Some(
                        Object::HttpRoute(_)
                            | Object::GrpcRoute(_)
                            | Object::TlsRoute(_)
                            | Object::TcpRoute(_)
                            | Object::UdpRoute(_)
                    ),
                    ObjectStatus::Route(_)
                )
                | (
                    Some(Object::BackendTlsPolicy(_) | Object::Extension(_)),
                    ObjectStatus::Policy(_)
                )
        );
        let Some(obj) = self.objects.get_mut(key).filter(|_| fits) else {
            return false;
        };
        match (obj, status) {
            (Object::GatewayClass(o), ObjectStatus::GatewayClass(s)) => o.status = Some(s),
            (Object::Gateway(o), ObjectStatus::Gateway(s)) => o.status = Some(s),
            (Object::ListenerSet(o), ObjectStatus::ListenerSet(s)) => o.status = Some(s),
            (Object::HttpRoute(o), ObjectStatus::Route(s)) => o.status = Some(s),
            (Object::GrpcRoute(o), ObjectStatus::Route(s)) => o.status = Some(s),
            (
                Object::TlsRoute(o) | Object::TcpRoute(o) | Object::UdpRoute(o),
                ObjectStatus::Route(s),
            ) => o.status = Some(s),
            (Object::BackendTlsPolicy(o), ObjectStatus::Policy(s)) => o.status = Some(s),
            // An extension's policy keeps its status as JSON; this one is
            // plain data, whose serialization cannot fail.
            (Object::Extension(o), ObjectStatus::Policy(s)) => {
                o.status = serde_json::to_value(s).ok();
            }
            _ => return false,
        }
        true
    }

    /// Stores every status of an engine run (see [`Snapshot::set_status`]).
    pub fn apply_statuses<'s>(
        &mut self,
        statuses: impl IntoIterator<Item = (&'s ObjectKey, &'s ObjectStatus)>,
    ) {
        for (k, s) in statuses {
            self.set_status(k, s.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What `differences` must give: every key compared field by field.
    fn compared(old: &Snapshot, new: &Snapshot) -> Vec<(ObjectKey, Option<Object>)> {
        let mut out: Vec<(ObjectKey, Option<Object>)> = new
            .iter()
            .filter(|o| old.get(&o.key()) != Some(*o))
            .map(|o| (o.key(), Some(o.clone())))
            .collect();
        out.extend(
            old.keys()
                .filter(|k| new.get(k).is_none())
                .map(|k| (k.clone(), None)),
        );
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    proptest! {
        /// From a snapshot to a clone of it with objects removed, replaced
        /// (by an equal copy, which is no difference, or a changed one)
        /// and added, `differences` lists exactly the keys that differ.
        #[test]
        fn differences_are_the_keys_that_differ(
            objects in crate::testing::snapshot::objects(),
            extra in crate::testing::snapshot::objects(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), 0u8..4), 0..8),
        ) {
            let old = Snapshot::from_objects(objects);
            let mut new = old.clone();
            let keys: Vec<ObjectKey> = old.keys().cloned().collect();
            for (i, what) in edits {
                if keys.is_empty() {
                    break;
                }
                let key = &keys[i.index(keys.len())];
                match what {
                    0 => {
                        new.remove(key);
                    }
                    1 => {
                        // An equal copy: not shared, still no difference.
                        if let Some(o) = old.get(key) {
                            new.insert(o.clone());
                        }
                    }
                    _ => {
                        if let Some(o) = new.get_mut(key) {
                            o.meta_mut().resource_version = Some(format!("v{what}"));
                        }
                    }
                }
            }
            for o in extra {
                if old.get(&o.key()).is_none() {
                    new.insert(o);
                }
            }
            let got: Vec<(ObjectKey, Option<Object>)> = old
                .differences(&new)
                .into_iter()
                .map(|(k, o)| (k, o.cloned()))
                .collect();
            prop_assert_eq!(got, compared(&old, &new));
        }
    }
}
