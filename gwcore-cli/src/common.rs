//! Pieces the subcommands share: controller selection, status output, time.

use std::collections::{BTreeMap, BTreeSet};

use gwcore::Snapshot;
use gwcore::engine::{ComputeOptions, Refusal, compute};
use gwcore::load::Loaded;
use gwcore::model::{Kind, Object, ObjectKey};

/// The controller to act as.
#[derive(clap::Args, Clone)]
pub(crate) struct ControllerArgs {
    /// Act as this controller (a GatewayClass `spec.controllerName`).
    /// Default: every controller named by a GatewayClass in the input, in turn.
    #[arg(long = "controller-name")]
    pub(crate) controller_name: Option<String>,
}

impl ControllerArgs {
    pub(crate) fn controllers(&self, snap: &Snapshot) -> Vec<String> {
        if let Some(c) = &self.controller_name {
            return vec![c.clone()];
        }
        let set: BTreeSet<String> = snap
            .of_kind(Kind::GatewayClass)
            .filter_map(|o| match o {
                Object::GatewayClass(gc) => Some(gc.spec.controller_name.clone()),
                _ => None,
            })
            .collect();
        set.into_iter().collect()
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
/// refusal.
pub(crate) fn run_controllers(
    snap: &Snapshot,
    controllers: &[String],
    now: &str,
) -> (Snapshot, Vec<Refusal>) {
    let mut snap = snap.clone();
    let mut refusals = Vec::new();
    for c in controllers {
        let out = compute(&snap, &ComputeOptions::new(c.clone(), now));
        snap.apply_statuses(&out.statuses);
        refusals.extend(out.refusals);
    }
    (snap, refusals)
}

/// The `apiVersion` each loaded object was read with (of the last object
/// with a key, the one a snapshot keeps).
pub(crate) fn api_versions(loaded: &Loaded) -> BTreeMap<ObjectKey, String> {
    loaded
        .objects
        .iter()
        .map(|(o, origin)| (o.key(), origin.api_version.clone()))
        .collect()
}

/// `{apiVersion, kind, metadata, status}` for every object of `kinds` that
/// has a status. The apiVersion is the one in `api_versions` (the one the
/// object was read with), else the kind's default.
pub(crate) fn status_documents(
    snap: &Snapshot,
    kinds: &[Kind],
    api_versions: &BTreeMap<ObjectKey, String>,
) -> Vec<serde_json::Value> {
    let mut docs = Vec::new();
    for &k in kinds {
        for o in snap.of_kind(k) {
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
                _ => None,
            };
            let Some(Ok(status)) = status else { continue };
            let api_version = api_versions
                .get(&o.key())
                .map_or(k.api_version(), String::as_str);
            let m = o.meta();
            let mut meta = serde_json::json!({"name": m.name});
            if let Some(ns) = &m.namespace {
                meta["namespace"] = serde_json::Value::String(ns.clone());
            }
            docs.push(serde_json::json!({
                "apiVersion": api_version,
                "kind": k.as_str(),
                "metadata": meta,
                "status": status,
            }));
        }
    }
    docs
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

/// The current UTC time in RFC 3339, whole seconds.
pub(crate) fn now_rfc3339() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    gwcore_proxy::provider::rfc3339(secs)
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_formats_known_instants() {
        assert_eq!(gwcore_proxy::provider::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(
            gwcore_proxy::provider::rfc3339(1_795_000_000),
            "2026-11-18T11:06:40Z"
        );
        assert_eq!(
            gwcore_proxy::provider::rfc3339(951_782_400),
            "2000-02-29T00:00:00Z"
        );
    }
}
