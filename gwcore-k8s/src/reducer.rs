//! The reducer: watch events applied synchronously to a [`Snapshot`].
//!
//! Every watcher turns its events into [`Update`]s; one task applies them,
//! in arrival order, to an [`Index`]. Applying is pure and synchronous, so
//! it is tested here without an API server.
//!
//! A watch that restarts (after a lost connection or an expired
//! `resourceVersion`) lists again: [`Update::Restart`], one
//! [`Update::Listed`] per object, [`Update::Done`]. Until `Done`, the old
//! objects of that kind stay in the snapshot (the last good state keeps
//! serving); at `Done` the listed set replaces them, so objects deleted while
//! the watch was down disappear and nothing is lost.

use std::collections::{BTreeMap, BTreeSet};

use gwcore::Snapshot;
use gwcore::model::{Kind, Object, ObjectKey};
use gwcore::status::GatewayStatusAddress;

use crate::kinds::Converted;

/// One change seen on the API server.
#[derive(Debug, Clone, PartialEq)]
pub enum Update {
    /// The watch of this kind (re)starts listing.
    Restart(Kind),
    /// An object of the list in progress.
    Listed(Converted),
    /// The list of this kind is complete.
    Done(Kind),
    /// An object was added or modified.
    Applied(Converted),
    /// An object was deleted.
    Deleted(ObjectKey),
    /// The object as a status write returned it, or as read after a
    /// conflict: newer than the watch may have delivered yet.
    Fresh(Converted),
    /// The load-balancer addresses of the Service named by
    /// [`crate::Options::address_service`] changed.
    Addresses(Vec<GatewayStatusAddress>),
    /// The addresses of the Service made for a Gateway
    /// ([`crate::Options::gateway_services`]) changed; empty when it is
    /// gone.
    GatewayAddresses(ObjectKey, Vec<GatewayStatusAddress>),
}

/// What an update changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// Nothing the engine reads.
    None,
    /// Only the status (and `resourceVersion`) of this object: when the new
    /// status is the one the engine last computed — the echo of our own
    /// write — running the engine again would give the same output.
    Status(ObjectKey),
    /// Anything else.
    Objects,
}

impl Change {
    /// Whether anything changed.
    pub fn any(&self) -> bool {
        *self != Change::None
    }

    fn or(self, other: Change) -> Change {
        match (self, other) {
            (Change::None, c) | (c, Change::None) => c,
            _ => Change::Objects,
        }
    }
}

/// The objects seen so far, and what the reducer knows about them.
#[derive(Debug, Default)]
pub struct Index {
    snapshot: Snapshot,
    listing: BTreeMap<Kind, BTreeMap<ObjectKey, Converted>>,
    synced: BTreeSet<Kind>,
    invalid: BTreeMap<ObjectKey, (Option<String>, Vec<String>)>,
    addresses: Vec<GatewayStatusAddress>,
    gateway_addresses: BTreeMap<ObjectKey, Vec<GatewayStatusAddress>>,
    /// Gateways whose own addresses changed since the last
    /// [`Index::take_changed_gateway_addresses`].
    changed_gateway_addresses: BTreeSet<ObjectKey>,
    /// While Services are listed: the Gateways whose Service addresses
    /// came again. At the end of the list the others are dropped: their
    /// Service was deleted while the watch was down.
    relisted_gateway_addresses: Option<BTreeSet<ObjectKey>>,
    /// Objects added, changed (status included) or removed since the last
    /// [`Index::take_changed`].
    changed: BTreeSet<ObjectKey>,
    /// Whether [`Index::invalid`] changed since the last
    /// [`Index::take_invalid_changed`].
    invalid_changed: bool,
}

/// `resourceVersion`s are opaque, but every API server backed by etcd
/// issues them as increasing integers; where both parse, an older one is
/// recognised so that a write's response, applied early, is not undone by
/// the watch event that precedes it. Where they do not parse, the later
/// arrival wins.
fn older(new: Option<&str>, old: Option<&str>) -> bool {
    match (
        new.and_then(|v| v.parse::<u64>().ok()),
        old.and_then(|v| v.parse::<u64>().ok()),
    ) {
        (Some(n), Some(o)) => n < o,
        _ => false,
    }
}

impl Index {
    /// An empty index.
    pub fn new() -> Index {
        Index::default()
    }

    /// The current objects.
    pub fn snapshot(&self) -> &Snapshot {
        &self.snapshot
    }

    /// Whether every kind in `kinds` has been listed at least once.
    pub fn synced(&self, kinds: impl IntoIterator<Item = Kind>) -> bool {
        kinds.into_iter().all(|k| self.synced.contains(&k))
    }

    /// Objects left out because gwcore's validation refused them, with the
    /// problems found.
    pub fn invalid(&self) -> &BTreeMap<ObjectKey, (Option<String>, Vec<String>)> {
        &self.invalid
    }

    /// Whether [`Index::invalid`] changed (an entry came, went or was
    /// replaced) since the last call.
    pub fn take_invalid_changed(&mut self) -> bool {
        std::mem::take(&mut self.invalid_changed)
    }

    /// The objects added, changed (their status included) or removed since
    /// the last call: what an incremental engine must be told.
    pub fn take_changed(&mut self) -> BTreeSet<ObjectKey> {
        std::mem::take(&mut self.changed)
    }

    /// The load-balancer addresses last seen.
    pub fn addresses(&self) -> &[GatewayStatusAddress] {
        &self.addresses
    }

    /// The addresses of each Gateway's own Service, last seen.
    pub fn gateway_addresses(&self) -> &BTreeMap<ObjectKey, Vec<GatewayStatusAddress>> {
        &self.gateway_addresses
    }

    /// The Gateways whose own addresses changed since the last call.
    pub fn take_changed_gateway_addresses(&mut self) -> BTreeSet<ObjectKey> {
        std::mem::take(&mut self.changed_gateway_addresses)
    }

    /// Applies one update; returns what changed.
    pub fn apply(&mut self, update: Update) -> Change {
        match update {
            Update::Restart(kind) => {
                self.listing.insert(kind, BTreeMap::new());
                if kind == Kind::Service {
                    self.relisted_gateway_addresses = Some(BTreeSet::new());
                }
                Change::None
            }
            Update::Listed(c) => {
                let kind = c.key().kind;
                match self.listing.get_mut(&kind) {
                    Some(buf) => {
                        buf.insert(c.key(), c);
                        Change::None
                    }
                    // A list item without a list in progress: treat as an apply.
                    None => self.upsert(c),
                }
            }
            Update::Done(kind) => {
                let listed = self.listing.remove(&kind).unwrap_or_default();
                let first = self.synced.insert(kind);
                let mut change = self.replace_kind(kind, listed);
                if kind == Kind::Service
                    && let Some(relisted) = self.relisted_gateway_addresses.take()
                {
                    let gone: Vec<ObjectKey> = self
                        .gateway_addresses
                        .keys()
                        .filter(|g| !relisted.contains(*g))
                        .cloned()
                        .collect();
                    for g in gone {
                        self.gateway_addresses.remove(&g);
                        self.changed_gateway_addresses.insert(g);
                        change = Change::Objects;
                    }
                }
                if first { Change::Objects } else { change }
            }
            Update::Applied(c) | Update::Fresh(c) => self.upsert(c),
            Update::Deleted(key) => {
                let was_invalid = self.invalid.remove(&key).is_some();
                self.invalid_changed |= was_invalid;
                if let Some(buf) = self.listing.get_mut(&key.kind) {
                    buf.remove(&key);
                }
                if self.snapshot.remove(&key).is_some() {
                    self.changed.insert(key);
                    Change::Objects
                } else if was_invalid {
                    Change::Objects
                } else {
                    Change::None
                }
            }
            Update::Addresses(a) => {
                if self.addresses == a {
                    Change::None
                } else {
                    self.addresses = a;
                    Change::Objects
                }
            }
            Update::GatewayAddresses(gateway, a) => {
                if let Some(relisted) = &mut self.relisted_gateway_addresses {
                    relisted.insert(gateway.clone());
                }
                let old = if a.is_empty() {
                    self.gateway_addresses.remove(&gateway)
                } else {
                    self.gateway_addresses.insert(gateway.clone(), a.clone())
                };
                if old.unwrap_or_default() == a {
                    Change::None
                } else {
                    self.changed_gateway_addresses.insert(gateway);
                    Change::Objects
                }
            }
        }
    }

    fn upsert(&mut self, c: Converted) -> Change {
        let key = c.key();
        let current_rv = self
            .snapshot
            .get(&key)
            .and_then(|o| o.meta().resource_version.clone())
            .or_else(|| self.invalid.get(&key).and_then(|(rv, _)| rv.clone()));
        match c {
            Converted::Valid(obj) => {
                if older(
                    obj.meta().resource_version.as_deref(),
                    current_rv.as_deref(),
                ) {
                    return Change::None;
                }
                self.invalid_changed |= self.invalid.remove(&key).is_some();
                let change = match self.snapshot.get(&key) {
                    Some(old) if *old == obj => return Change::None,
                    Some(old) if old.same_but_status(&obj) => Change::Status(key.clone()),
                    _ => Change::Objects,
                };
                self.snapshot.insert(obj);
                self.changed.insert(key);
                change
            }
            Converted::Invalid {
                resource_version,
                errors,
                ..
            } => {
                if older(resource_version.as_deref(), current_rv.as_deref()) {
                    return Change::None;
                }
                if self
                    .invalid
                    .get(&key)
                    .is_none_or(|(rv, _)| *rv != resource_version)
                {
                    tracing::warn!(object = %key, errors = ?errors, "left out: the object is not valid");
                }
                let entry = (resource_version, errors);
                if self.invalid.get(&key) != Some(&entry) {
                    self.invalid.insert(key.clone(), entry);
                    self.invalid_changed = true;
                }
                if self.snapshot.remove(&key).is_some() {
                    self.changed.insert(key);
                    Change::Objects
                } else {
                    Change::None
                }
            }
        }
    }

    fn replace_kind(&mut self, kind: Kind, listed: BTreeMap<ObjectKey, Converted>) -> Change {
        let mut change = Change::None;
        let gone: Vec<ObjectKey> = self
            .snapshot
            .of_kind(kind)
            .map(Object::key)
            .filter(|k| !listed.contains_key(k))
            .collect();
        for k in gone {
            self.snapshot.remove(&k);
            self.changed.insert(k);
            change = Change::Objects;
        }
        let before = self.invalid.len();
        self.invalid
            .retain(|k, _| k.kind != kind || listed.contains_key(k));
        self.invalid_changed |= self.invalid.len() != before;
        for (_, c) in listed {
            change = change.or(self.upsert(c));
        }
        change
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gwcore::model::{Namespace, ObjectMeta};

    fn ns(name: &str, rv: &str, label: Option<&str>) -> Converted {
        let mut metadata = ObjectMeta {
            name: name.into(),
            resource_version: Some(rv.into()),
            ..Default::default()
        };
        // As the API server writes every Namespace (and the snapshot keeps it).
        metadata
            .labels
            .insert("kubernetes.io/metadata.name".into(), name.into());
        if let Some(l) = label {
            metadata.labels.insert("team".into(), l.into());
        }
        Converted::Valid(Object::Namespace(Namespace { metadata }))
    }

    fn key(name: &str) -> ObjectKey {
        ObjectKey::new(Kind::Namespace, "", name)
    }

    fn label(ix: &Index, name: &str) -> Option<String> {
        ix.snapshot()
            .get(&key(name))
            .and_then(|o| o.meta().labels.get("team").cloned())
    }

    #[test]
    fn initial_list_syncs_and_applies() {
        let mut ix = Index::new();
        assert!(!ix.apply(Update::Restart(Kind::Namespace)).any());
        assert!(!ix.apply(Update::Listed(ns("a", "1", None))).any());
        assert!(ix.snapshot().is_empty(), "listed objects wait for Done");
        assert!(!ix.synced([Kind::Namespace]));
        assert!(ix.apply(Update::Done(Kind::Namespace)).any());
        assert!(ix.synced([Kind::Namespace]));
        assert_eq!(ix.snapshot().len(), 1);
    }

    #[test]
    fn empty_first_list_still_counts_as_a_change() {
        let mut ix = Index::new();
        ix.apply(Update::Restart(Kind::Namespace));
        assert!(
            ix.apply(Update::Done(Kind::Namespace)).any(),
            "the first sync must trigger a compute"
        );
        ix.apply(Update::Restart(Kind::Namespace));
        assert!(
            !ix.apply(Update::Done(Kind::Namespace)).any(),
            "an unchanged relist changes nothing"
        );
    }

    #[test]
    fn relist_keeps_old_state_until_done_then_drops_deleted_objects() {
        let mut ix = Index::new();
        ix.apply(Update::Restart(Kind::Namespace));
        ix.apply(Update::Listed(ns("a", "1", None)));
        ix.apply(Update::Listed(ns("b", "2", None)));
        ix.apply(Update::Done(Kind::Namespace));
        // The watch breaks; while it was down, b was deleted and a relabelled.
        ix.apply(Update::Restart(Kind::Namespace));
        ix.apply(Update::Listed(ns("a", "5", Some("x"))));
        assert_eq!(
            ix.snapshot().len(),
            2,
            "the last good state serves during the relist"
        );
        assert!(ix.apply(Update::Done(Kind::Namespace)).any());
        assert_eq!(ix.snapshot().len(), 1);
        assert_eq!(label(&ix, "a").as_deref(), Some("x"));
    }

    #[test]
    fn stale_event_does_not_undo_a_fresher_write_response() {
        let mut ix = Index::new();
        ix.apply(Update::Applied(ns("a", "10", None)));
        assert!(
            ix.apply(Update::Fresh(ns("a", "12", Some("written"))))
                .any()
        );
        assert!(
            !ix.apply(Update::Applied(ns("a", "11", Some("older"))))
                .any()
        );
        assert_eq!(label(&ix, "a").as_deref(), Some("written"));
        assert!(
            !ix.apply(Update::Applied(ns("a", "12", Some("written"))))
                .any(),
            "same object: no change"
        );
    }

    #[test]
    fn invalid_object_replaces_its_valid_version_and_is_reported() {
        let mut ix = Index::new();
        ix.apply(Update::Applied(ns("a", "1", None)));
        let bad = Converted::Invalid {
            key: key("a"),
            resource_version: Some("2".into()),
            errors: vec!["metadata.name: bad".into()],
        };
        assert!(ix.apply(Update::Applied(bad)).any());
        assert!(ix.snapshot().is_empty());
        assert_eq!(
            ix.invalid()[&key("a")].1,
            vec!["metadata.name: bad".to_string()]
        );
        assert!(
            ix.apply(Update::Applied(ns("a", "3", None))).any(),
            "fixed again"
        );
        assert!(ix.invalid().is_empty());
    }

    /// The reducer republishes the invalid objects only when they change:
    /// valid objects coming and going, and an invalid one seen again
    /// unchanged, leave the published map as it was.
    #[test]
    fn the_invalid_objects_are_reported_changed_only_when_they_change() {
        let bad = |rv: &str, error: &str| Converted::Invalid {
            key: key("a"),
            resource_version: Some(rv.into()),
            errors: vec![error.into()],
        };
        let mut ix = Index::new();
        ix.apply(Update::Applied(ns("b", "1", None)));
        ix.apply(Update::Deleted(key("b")));
        assert!(!ix.take_invalid_changed(), "valid objects only");
        ix.apply(Update::Applied(bad("2", "metadata.name: bad")));
        assert!(ix.take_invalid_changed(), "an entry came");
        ix.apply(Update::Applied(bad("2", "metadata.name: bad")));
        assert!(!ix.take_invalid_changed(), "the same entry again");
        ix.apply(Update::Applied(bad("3", "metadata.name: worse")));
        assert!(ix.take_invalid_changed(), "the entry replaced");
        ix.apply(Update::Applied(ns("a", "4", None)));
        assert!(ix.take_invalid_changed(), "the entry went: fixed");
        ix.apply(Update::Applied(bad("5", "metadata.name: bad")));
        ix.take_invalid_changed();
        ix.apply(Update::Restart(Kind::Namespace));
        ix.apply(Update::Done(Kind::Namespace));
        assert!(
            ix.take_invalid_changed(),
            "the entry went: not listed again"
        );
        ix.apply(Update::Applied(bad("6", "metadata.name: bad")));
        ix.take_invalid_changed();
        ix.apply(Update::Deleted(key("a")));
        assert!(ix.take_invalid_changed(), "the entry went: deleted");
    }

    #[test]
    fn a_status_write_echo_is_a_status_only_change() {
        use gwcore::model::HttpRoute;
        use gwcore::status::RouteStatus;
        let route = |rv: &str, status: Option<RouteStatus>, generation: i64| {
            Converted::Valid(Object::HttpRoute(HttpRoute {
                metadata: ObjectMeta {
                    name: "r".into(),
                    namespace: Some("n".into()),
                    resource_version: Some(rv.into()),
                    generation: Some(generation),
                    ..Default::default()
                },
                status,
                ..Default::default()
            }))
        };
        let key = ObjectKey::new(Kind::HttpRoute, "n", "r");
        let mut ix = Index::new();
        assert_eq!(
            ix.apply(Update::Applied(route("1", None, 1))),
            Change::Objects
        );
        assert_eq!(
            ix.apply(Update::Fresh(route("2", Some(RouteStatus::default()), 1))),
            Change::Status(key)
        );
        assert_eq!(
            ix.apply(Update::Applied(route("3", Some(RouteStatus::default()), 2))),
            Change::Objects,
            "a spec change"
        );
    }

    #[test]
    fn delete_removes() {
        let mut ix = Index::new();
        ix.apply(Update::Applied(ns("a", "1", None)));
        assert!(ix.apply(Update::Deleted(key("a"))).any());
        assert!(!ix.apply(Update::Deleted(key("a"))).any());
        assert!(ix.snapshot().is_empty());
    }

    #[test]
    fn addresses_change_only_when_different() {
        let mut ix = Index::new();
        let a = vec![GatewayStatusAddress {
            type_: Some("IPAddress".into()),
            value: "192.0.2.1".into(),
        }];
        assert!(ix.apply(Update::Addresses(a.clone())).any());
        assert!(!ix.apply(Update::Addresses(a)).any());
    }

    #[test]
    fn gateway_addresses_are_kept_per_gateway_and_reported_once() {
        let mut ix = Index::new();
        let gw = ObjectKey::new(Kind::Gateway, "n", "gw");
        let a = vec![GatewayStatusAddress {
            type_: Some("IPAddress".into()),
            value: "10.96.0.9".into(),
        }];
        assert!(
            ix.apply(Update::GatewayAddresses(gw.clone(), a.clone()))
                .any()
        );
        assert!(
            !ix.apply(Update::GatewayAddresses(gw.clone(), a.clone()))
                .any()
        );
        assert_eq!(ix.gateway_addresses()[&gw], a);
        assert!(ix.addresses().is_empty(), "not every Gateway's");
        assert_eq!(
            ix.take_changed_gateway_addresses(),
            BTreeSet::from([gw.clone()])
        );
        assert!(ix.take_changed_gateway_addresses().is_empty());
        // The Service gone: the Gateway has no addresses of its own.
        assert!(
            ix.apply(Update::GatewayAddresses(gw.clone(), Vec::new()))
                .any()
        );
        assert!(ix.gateway_addresses().is_empty());
        assert_eq!(ix.take_changed_gateway_addresses(), BTreeSet::from([gw]));
    }

    /// Regression: a Gateway's Service deleted while the watch was down
    /// (no delete event) left its addresses to the Gateway after the list
    /// that followed.
    #[test]
    fn a_relist_without_the_service_drops_the_gateways_addresses() {
        let mut ix = Index::new();
        let (kept, gone) = (
            ObjectKey::new(Kind::Gateway, "n", "kept"),
            ObjectKey::new(Kind::Gateway, "n", "gone"),
        );
        let a = |ip: &str| {
            vec![GatewayStatusAddress {
                type_: Some("IPAddress".into()),
                value: ip.into(),
            }]
        };
        ix.apply(Update::Restart(Kind::Service));
        ix.apply(Update::GatewayAddresses(kept.clone(), a("10.96.0.1")));
        ix.apply(Update::GatewayAddresses(gone.clone(), a("10.96.0.2")));
        ix.apply(Update::Done(Kind::Service));
        ix.take_changed_gateway_addresses();
        // The watch restarts; only `kept`'s Service is listed.
        ix.apply(Update::Restart(Kind::Service));
        ix.apply(Update::GatewayAddresses(kept.clone(), a("10.96.0.1")));
        assert!(ix.apply(Update::Done(Kind::Service)).any());
        assert_eq!(
            ix.gateway_addresses().keys().collect::<Vec<_>>(),
            [&kept],
            "the unlisted Service's addresses are gone"
        );
        assert_eq!(ix.take_changed_gateway_addresses(), BTreeSet::from([gone]));
    }
}
