//! Pieces the subcommands share: controller selection, status output, time.

use std::collections::{BTreeMap, BTreeSet};

use gwcore::Snapshot;
use gwcore::engine::{ComputeOptions, Refusal, compute};
use gwcore::extension::Extensions;
use gwcore::load::Loaded;
use gwcore::model::{Kind, Object, ObjectKey};

/// The controller to act as.
#[derive(clap::Args, Clone)]
pub(crate) struct ControllerArgs {
    /// Act as this controller: for the GatewayClasses whose
    /// `spec.controllerName` is this (an error when no GatewayClass in the
    /// input has it). Default: every controller named by a GatewayClass in
    /// the input, in turn.
    #[arg(long = "controller-name")]
    pub(crate) controller_name: Option<String>,
}

impl ControllerArgs {
    /// The controllers to act as, in turn (see [`select_controllers`]).
    pub(crate) fn controllers(&self, snap: &Snapshot) -> Result<Vec<String>, String> {
        select_controllers(self.controller_name.as_deref(), snap, Unnamed::Every)
    }
}

/// Whom a command acts for when `--controller-name` is not given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Unnamed {
    /// The controller of every GatewayClass in the input, in turn
    /// (`gwcore check`, `gwcore explain`); none when there is no class.
    Every,
    /// The one controllerName all the input's GatewayClasses share; an
    /// error when they have several, or there is no class (`gwcore serve`,
    /// which acts as one controller).
    Shared,
}

/// The rule `gwcore check` and `gwcore serve` share: which controllers to
/// act as for the objects of `snap`. With `--controller-name` (`given`),
/// that one, provided a GatewayClass in the input has it; without, as
/// `unnamed` says. Nothing runs doing nothing: the error names
/// `--controller-name` and the controllerNames of the classes found.
pub(crate) fn select_controllers(
    given: Option<&str>,
    snap: &Snapshot,
    unnamed: Unnamed,
) -> Result<Vec<String>, String> {
    let found: BTreeSet<&str> = snap
        .of_kind(Kind::GatewayClass)
        .filter_map(|o| match o {
            Object::GatewayClass(gc) => Some(gc.spec.controller_name.as_str()),
            _ => None,
        })
        .collect();
    let names = || found.iter().copied().collect::<Vec<_>>().join(", ");
    match (given, unnamed) {
        (Some(c), _) if found.contains(c) => Ok(vec![c.to_string()]),
        (Some(c), _) if found.is_empty() => Err(format!(
            "--controller-name {c}: the input has no GatewayClass, so none has this controllerName"
        )),
        (Some(c), _) => Err(format!(
            "--controller-name {c}: no GatewayClass in the input has this controllerName; \
             the GatewayClasses found have controllerName {}",
            names()
        )),
        (None, Unnamed::Every) => Ok(found.iter().map(|c| c.to_string()).collect()),
        (None, Unnamed::Shared) if found.len() == 1 => {
            Ok(found.iter().map(|c| c.to_string()).collect())
        }
        (None, Unnamed::Shared) if found.is_empty() => Err(
            "the input has no GatewayClass, so nothing to serve: gwcore serve acts for \
             the GatewayClasses of one controllerName (--controller-name)"
                .to_string(),
        ),
        (None, Unnamed::Shared) => Err(format!(
            "the GatewayClasses in the input have several controllerNames ({}); \
             pass --controller-name to choose the one to act as",
            names()
        )),
    }
}

/// Output formats.
#[derive(clap::ValueEnum, Clone, Copy)]
pub(crate) enum OutputFormat {
    Yaml,
    Json,
}

/// Runs the engine as each controller in turn, writing each one's statuses
/// back into the snapshot so the next sees them as the previous status (as
/// controllers sharing a cluster do). Returns the final objects and every
/// refusal. The engine resolves the kinds `extensions` register.
///
/// The snapshot is taken, not borrowed: writing a status into an object
/// the caller still shared would copy the object (every route, at scale).
pub(crate) fn run_controllers(
    mut snap: Snapshot,
    controllers: &[String],
    now: &str,
    extensions: &Extensions,
    usable_addresses: Option<&[String]>,
) -> (Snapshot, Vec<Refusal>) {
    let mut refusals = Vec::new();
    for c in controllers {
        let mut opts = ComputeOptions::new(c.clone(), now).with_extensions(extensions.clone());
        if let Some(a) = usable_addresses {
            opts = opts.with_usable_addresses(a);
        }
        let out = compute(&snap, &opts);
        snap.apply_statuses(&out.statuses);
        refusals.extend(out.refusals);
    }
    (snap, refusals)
}

/// The `apiVersion` each loaded object was read with (of the last object
/// with a key, the one a snapshot keeps), for the objects read with
/// another than the one [`status_documents`] would write by default:
/// nearly every object is read with its kind's, so this stays small.
pub(crate) fn api_versions(loaded: &Loaded) -> BTreeMap<ObjectKey, String> {
    let mut versions = BTreeMap::new();
    for (o, origin) in &loaded.objects {
        if origin.api_version == default_api_version(o) {
            versions.remove(&o.key());
        } else {
            versions.insert(o.key(), origin.api_version.clone());
        }
    }
    versions
}

/// The apiVersion a status document of `o` is written with when the
/// object's own is not known.
fn default_api_version(o: &Object) -> &'static str {
    match o {
        // A ListenerSet's status goes back under the name it was read as
        // (`XListenerSet` on v1.3–v1.4 experimental clusters).
        Object::ListenerSet(x) => x.served_as.api_version(),
        _ => o.kind().api_version(),
    }
}

/// `{apiVersion, kind, metadata, status}` for every object of `kinds` that
/// has a status, one at a time (the caller writes each before the next is
/// built). The apiVersion is the one in `api_versions` (the one the object
/// was read with), else the kind's default.
pub(crate) fn status_documents<'a>(
    snap: &'a Snapshot,
    kinds: &'a [Kind],
    api_versions: &'a BTreeMap<ObjectKey, String>,
) -> impl Iterator<Item = serde_json::Value> + 'a {
    kinds
        .iter()
        .flat_map(|&k| snap.of_kind(k))
        .filter_map(|o| status_document(o, api_versions))
}

fn status_document(
    o: &Object,
    api_versions: &BTreeMap<ObjectKey, String>,
) -> Option<serde_json::Value> {
    let status = match o {
        Object::GatewayClass(x) => x.status.as_ref().map(serde_json::to_value),
        Object::Gateway(x) => x.status.as_ref().map(serde_json::to_value),
        Object::ListenerSet(x) => x.status.as_ref().map(serde_json::to_value),
        Object::HttpRoute(x) => x.status.as_ref().map(serde_json::to_value),
        Object::GrpcRoute(x) => x.status.as_ref().map(serde_json::to_value),
        Object::TlsRoute(x) | Object::TcpRoute(x) | Object::UdpRoute(x) => {
            x.status.as_ref().map(serde_json::to_value)
        }
        Object::BackendTlsPolicy(x) => x.status.as_ref().map(serde_json::to_value),
        // A registered policy kind's status, as the engine wrote
        // it (and the fields of the kind's own it was read with).
        Object::Extension(x) => x.status.clone().map(Ok),
        _ => None,
    };
    let Some(Ok(status)) = status else {
        return None;
    };
    let api_version = match api_versions.get(&o.key()) {
        Some(v) => v.as_str(),
        None => default_api_version(o),
    };
    let m = o.meta();
    let mut meta = serde_json::json!({"name": m.name});
    if let Some(ns) = &m.namespace {
        meta["namespace"] = serde_json::Value::String(ns.clone());
    }
    Some(serde_json::json!({
        "apiVersion": api_version,
        "kind": o.manifest_kind(),
        "metadata": meta,
        "status": status,
    }))
}

/// Serves the admin endpoint (`/healthz`, `/readyz`, `/metrics`, `/status`)
/// on `addr` when one is given. The error is printed; the caller exits.
pub(crate) async fn start_admin(
    proxy: &std::sync::Arc<gwcore_proxy::proxy::Proxy>,
    addr: Option<std::net::SocketAddr>,
) -> Result<Option<tokio::task::JoinHandle<()>>, ()> {
    let Some(addr) = addr else { return Ok(None) };
    match gwcore_proxy::admin::serve(proxy.clone(), addr).await {
        Ok((local, task)) => {
            tracing::info!(addr = %local, "admin endpoint");
            Ok(Some(task))
        }
        Err(e) => {
            eprintln!("error: cannot serve the admin endpoint on {addr}: {e}");
            Err(())
        }
    }
}
