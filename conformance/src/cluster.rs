//! A simulated API server: an object store with the server-side behaviour
//! the vectors rely on.
//!
//! - Objects are kept as JSON, as the API server keeps them, so JSON merge
//!   patches (RFC 7386) apply to what was written, and kinds gwcore does not
//!   read (Deployments, Pods) are kept for the edits that need them.
//! - `metadata.generation` is 1 on create and goes up by one whenever
//!   anything outside `metadata` and `status` changes on apply or patch.
//! - `metadata.creationTimestamp` is kept when the manifest sets it. Objects
//!   created by the manifests before the first step without one keep none
//!   (they count as equally old); objects created later (a step's `apply` or
//!   `create`) are stamped with the simulated clock, so they are newer than
//!   everything before them, as in a real cluster.
//! - Gateway API objects are validated as the API server would (through
//!   `gwcore::load`, which applies the CRDs' defaults and rules); an invalid
//!   object is refused and the edit fails.
//! - `status` is written only by [`Cluster::write_statuses`], as a
//!   controller's status update would.

use std::collections::BTreeMap;

use gwcore::Snapshot;
use gwcore::engine::Computed;
use gwcore::load::{Diagnostic, Severity, load_str};
use gwcore::model::{Kind, ListenerSetKind};
use serde_json::{Map, Value, json};

/// Identifies a stored object: kind as written, namespace (`""` when
/// cluster-scoped), name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StoreKey {
    /// Kind, as in the manifest.
    pub kind: String,
    /// Namespace, `""` when cluster-scoped.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl std::fmt::Display for StoreKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

/// Whether objects of `kind` are cluster-scoped.
fn cluster_scoped(kind: &str) -> bool {
    match Kind::parse(kind) {
        Some(k) => !k.is_namespaced(),
        None => matches!(
            kind,
            "ClusterRole"
                | "ClusterRoleBinding"
                | "CustomResourceDefinition"
                | "PersistentVolume"
                | "StorageClass"
                | "ValidatingAdmissionPolicy"
                | "ValidatingAdmissionPolicyBinding"
        ),
    }
}

impl StoreKey {
    /// Builds a key; the namespace is dropped for cluster-scoped kinds and
    /// defaults to `default` for namespaced ones.
    pub fn new(kind: &str, namespace: Option<&str>, name: &str) -> Self {
        let namespace = if cluster_scoped(kind) {
            String::new()
        } else {
            match namespace {
                Some(ns) if !ns.is_empty() => ns.to_string(),
                _ => "default".to_string(),
            }
        };
        StoreKey {
            kind: kind.to_string(),
            namespace,
            name: name.to_string(),
        }
    }

    /// The key of a JSON object.
    pub fn of(value: &Value) -> Result<Self, String> {
        let kind = value
            .get("kind")
            .and_then(Value::as_str)
            .filter(|k| !k.is_empty())
            .ok_or("object without kind")?;
        let meta = value.get("metadata");
        let name = meta
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty())
            .ok_or_else(|| format!("{kind} without metadata.name"))?;
        let ns = meta
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str);
        Ok(StoreKey::new(kind, ns, name))
    }
}

/// The simulated cluster.
#[derive(Debug, Clone, Default)]
pub struct Cluster {
    objects: BTreeMap<StoreKey, Value>,
    /// Simulated seconds since the start of the run.
    clock: u64,
    /// Whether new objects get a creationTimestamp.
    stamp_new: bool,
    next_uid: u64,
}

/// The time the simulated clock starts at: 2026-01-01T00:00:00Z, in
/// seconds since the Unix epoch.
const EPOCH: u64 = 1_767_225_600;

/// RFC 3339 for `secs` seconds after [`EPOCH`] (less than a day apart is
/// all a run needs, but any count works up to the year 9999).
fn rfc3339(secs: u64) -> String {
    gwcore_proxy::provider::rfc3339(EPOCH.saturating_add(secs))
}

/// Applies an RFC 7386 JSON merge patch.
pub fn merge_patch(target: &mut Value, patch: &Value) {
    match patch {
        Value::Object(p) => {
            if !target.is_object() {
                *target = Value::Object(Map::new());
            }
            if let Value::Object(t) = target {
                for (k, v) in p {
                    if v.is_null() {
                        t.remove(k);
                    } else {
                        merge_patch(t.entry(k.clone()).or_insert(Value::Null), v);
                    }
                }
            }
        }
        other => *target = other.clone(),
    }
}

/// Everything but `metadata` and `status`: what bumps the generation.
fn spec_part(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| k.as_str() != "metadata" && k.as_str() != "status")
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect(),
        ),
        other => other.clone(),
    }
}

fn diagnostics_text(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| {
            let mut s = String::new();
            if let Some(f) = &d.field {
                s.push_str(f);
                s.push_str(": ");
            }
            s.push_str(&d.message);
            s
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl Cluster {
    /// An empty cluster; its clock at 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// "Now" on the simulated clock (RFC 3339).
    pub fn now(&self) -> String {
        rfc3339(self.clock)
    }

    /// Moves the simulated clock on by `secs` seconds.
    pub fn tick(&mut self, secs: u64) {
        self.clock += secs;
    }

    /// From now on, objects created without a creationTimestamp get one.
    pub fn stamp_new_objects(&mut self) {
        self.stamp_new = true;
    }

    /// A stored object.
    pub fn get(&self, key: &StoreKey) -> Option<&Value> {
        self.objects.get(key)
    }

    /// Every stored object, ordered by key.
    pub fn iter(&self) -> impl Iterator<Item = (&StoreKey, &Value)> {
        self.objects.iter()
    }

    /// Refuses what the API server would refuse: Gateway API objects (and
    /// the core kinds gwcore reads) that fail gwcore's load and validation.
    fn validate(key: &StoreKey, value: &Value) -> Result<(), String> {
        if Kind::parse(&key.kind).is_none() {
            return Ok(());
        }
        let loaded = load_str(&key.to_string(), &value.to_string());
        if loaded.has_errors() {
            return Err(format!(
                "{key} refused: {}",
                diagnostics_text(&loaded.diagnostics)
            ));
        }
        Ok(())
    }

    /// Creates an object; fails when it exists or is invalid.
    pub fn create(&mut self, mut value: Value) -> Result<StoreKey, String> {
        let key = StoreKey::of(&value)?;
        if self.objects.contains_key(&key) {
            return Err(format!("{key} already exists"));
        }
        self.next_uid += 1;
        let stamp = self.stamp_new.then(|| self.now());
        let uid = format!("00000000-0000-4000-8000-{:012}", self.next_uid);
        let meta = value
            .as_object_mut()
            .ok_or_else(|| format!("{key} is not a JSON object"))?
            .entry("metadata")
            .or_insert_with(|| json!({}));
        if let Value::Object(m) = meta {
            m.insert("generation".into(), json!(1));
            m.insert("uid".into(), json!(uid));
            m.insert("resourceVersion".into(), json!(self.next_uid.to_string()));
            if !key.namespace.is_empty() {
                m.insert("namespace".into(), json!(key.namespace));
            }
            if !m.contains_key("creationTimestamp")
                && let Some(ts) = stamp
            {
                m.insert("creationTimestamp".into(), json!(ts));
            }
        }
        if let Value::Object(m) = &mut value {
            m.remove("status");
        }
        Self::validate(&key, &value)?;
        self.objects.insert(key.clone(), value);
        Ok(key)
    }

    /// `kubectl apply`: creates, or replaces everything but the
    /// server-managed metadata and the status.
    pub fn apply(&mut self, value: Value) -> Result<StoreKey, String> {
        let key = StoreKey::of(&value)?;
        let Some(old) = self.objects.get(&key).cloned() else {
            return self.create(value);
        };
        let mut new = value;
        self.carry_over(&old, &mut new);
        self.replace(&key, &old, new)
    }

    /// Keeps server-managed metadata and the status of `old` in `new`.
    fn carry_over(&self, old: &Value, new: &mut Value) {
        let Some(n) = new.as_object_mut() else {
            return;
        };
        if let Some(status) = old.get("status") {
            n.insert("status".into(), status.clone());
        } else {
            n.remove("status");
        }
        let meta = n.entry("metadata").or_insert_with(|| json!({}));
        if let (Value::Object(m), Some(Value::Object(om))) = (meta, old.get("metadata")) {
            for k in [
                "generation",
                "uid",
                "resourceVersion",
                "creationTimestamp",
                "namespace",
            ] {
                match om.get(k) {
                    Some(v) => {
                        m.insert(k.into(), v.clone());
                    }
                    None => {
                        m.remove(k);
                    }
                }
            }
        }
    }

    /// Stores `new` in place of `old`, bumping the generation when the spec
    /// part changed.
    fn replace(&mut self, key: &StoreKey, old: &Value, mut new: Value) -> Result<StoreKey, String> {
        let generation = old
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
            .unwrap_or(1);
        let changed = spec_part(old) != spec_part(&new);
        self.next_uid += 1;
        if let Some(Value::Object(m)) = new.get_mut("metadata") {
            m.insert(
                "generation".into(),
                json!(if changed { generation + 1 } else { generation }),
            );
            m.insert("resourceVersion".into(), json!(self.next_uid.to_string()));
        }
        if StoreKey::of(&new)? != *key {
            return Err(format!(
                "{key}: an edit may not change kind, namespace or name"
            ));
        }
        Self::validate(key, &new)?;
        self.objects.insert(key.clone(), new);
        Ok(key.clone())
    }

    /// Applies a JSON merge patch to a stored object.
    pub fn merge(&mut self, key: &StoreKey, patch: &Value) -> Result<(), String> {
        let old = self
            .objects
            .get(key)
            .cloned()
            .ok_or_else(|| format!("{key} not found"))?;
        let mut new = old.clone();
        merge_patch(&mut new, patch);
        // A merge patch may not touch what the server manages.
        self.carry_over(&old, &mut new);
        self.replace(key, &old, new).map(|_| ())
    }

    /// Deletes an object; fails when it does not exist.
    pub fn delete(&mut self, key: &StoreKey) -> Result<(), String> {
        self.objects
            .remove(key)
            .map(|_| ())
            .ok_or_else(|| format!("{key} not found"))
    }

    /// The metadata.generation of a stored object.
    pub fn generation(&self, key: &StoreKey) -> Option<i64> {
        self.objects
            .get(key)?
            .pointer("/metadata/generation")
            .and_then(Value::as_i64)
    }

    /// The snapshot gwcore sees: every stored object of a kind it reads,
    /// loaded through `gwcore::load`. Diagnostics of objects that no longer
    /// load are returned (they were valid when stored, so there should be
    /// none).
    pub fn snapshot(&self) -> (Snapshot, Vec<Diagnostic>) {
        let mut snap = Snapshot::new();
        let mut diags = Vec::new();
        for (key, value) in &self.objects {
            if Kind::parse(&key.kind).is_none() {
                continue;
            }
            let loaded = load_str(&key.to_string(), &value.to_string());
            diags.extend(
                loaded
                    .diagnostics
                    .into_iter()
                    .filter(|d| d.severity == Severity::Error),
            );
            for (obj, _) in loaded.objects {
                snap.insert(obj);
            }
        }
        (snap, diags)
    }

    /// Writes the engine's statuses into the stored objects, as the
    /// controller's status updates would. Returns whether anything changed.
    pub fn write_statuses(&mut self, computed: &Computed) -> Result<bool, String> {
        let mut changed = false;
        for (key, status) in &computed.statuses {
            // A ListenerSet is stored under the kind it was written as
            // (`ListenerSet` or `XListenerSet`).
            let skey = match key.kind {
                Kind::ListenerSet => ListenerSetKind::ALL
                    .into_iter()
                    .map(|k| StoreKey::new(k.as_str(), Some(&key.namespace), &key.name))
                    .find(|k| self.objects.contains_key(k)),
                _ => None,
            }
            .unwrap_or_else(|| StoreKey::new(key.kind.as_str(), Some(&key.namespace), &key.name));
            let value = serde_json::to_value(status)
                .map_err(|e| format!("status of {skey} does not serialize: {e}"))?;
            let Some(Value::Object(obj)) = self.objects.get_mut(&skey) else {
                // Status of an object that is not stored: a real API server
                // answers 404 and the controller drops it.
                continue;
            };
            if obj.get("status") != Some(&value) {
                obj.insert("status".into(), value);
                changed = true;
            }
        }
        Ok(changed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(listeners: Value) -> Value {
        json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "Gateway",
            "metadata": {"name": "g", "namespace": "n"},
            "spec": {"gatewayClassName": "c", "listeners": listeners},
        })
    }

    #[test]
    fn generation_starts_at_one_and_moves_only_with_the_spec() {
        let mut c = Cluster::new();
        let key = c
            .create(gateway(
                json!([{"name": "a", "port": 80, "protocol": "HTTP"}]),
            ))
            .expect("created");
        assert_eq!(c.generation(&key), Some(1));
        c.merge(&key, &json!({"metadata": {"labels": {"x": "y"}}}))
            .expect("patched");
        assert_eq!(c.generation(&key), Some(1), "a label is not a spec change");
        c.merge(&key, &json!({"spec": {"gatewayClassName": "d"}}))
            .expect("patched");
        assert_eq!(c.generation(&key), Some(2));
        c.apply(gateway(
            json!([{"name": "a", "port": 80, "protocol": "HTTP"}]),
        ))
        .expect("applied");
        assert_eq!(c.generation(&key), Some(3), "apply restored the class name");
    }

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut t = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut t, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(t, json!({"a": "z", "c": {"d": "e"}}));
        let mut t = json!({"a": [1, 2]});
        merge_patch(&mut t, &json!({"a": [3]}));
        assert_eq!(t, json!({"a": [3]}), "arrays are replaced whole");
    }

    #[test]
    fn later_objects_are_stamped_newer() {
        let mut c = Cluster::new();
        let ns =
            |n: &str| json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": n}});
        let a = c.create(ns("a")).expect("created");
        c.stamp_new_objects();
        c.tick(1);
        let b = c.create(ns("b")).expect("created");
        let ts = |k: &StoreKey| {
            c.get(k)
                .and_then(|v| v.pointer("/metadata/creationTimestamp"))
                .cloned()
        };
        assert_eq!(ts(&a), None);
        assert_eq!(ts(&b), Some(json!("2026-01-01T00:00:01Z")));
    }

    #[test]
    fn creating_twice_fails() {
        let mut c = Cluster::new();
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "a"}});
        c.create(ns.clone()).expect("created");
        assert!(c.create(ns).is_err());
    }

    #[test]
    fn clock_formats_rfc3339() {
        assert_eq!(rfc3339(0), "2026-01-01T00:00:00Z");
        assert_eq!(rfc3339(86_400 * 31 + 3661), "2026-02-01T01:01:01Z");
        assert_eq!(rfc3339(86_400 * 365 * 4 + 59), "2029-12-31T00:00:59Z");
    }
}
