//! Request checks in engine mode.
//!
//! Engine mode judges a request by what the routing table decides for it:
//! the backend chosen, the status code, a redirect's location, the request
//! the backend would receive after filters and the response headers filters
//! set. What only a data plane can show (TLS handshakes, traffic shares,
//! mirrors, timeouts, retries, other protocols) is not run.

use gwcore::engine::Computed;

use crate::check::Outcome;
use crate::cluster::Cluster;
use crate::vector::RequestExpect;

/// What a request is judged against: the engine's output for the step and
/// the cluster it was computed from.
#[derive(Debug, Clone, Copy)]
pub(crate) struct EngineView<'a> {
    pub(crate) computed: &'a Computed,
    #[allow(dead_code)]
    pub(crate) cluster: &'a Cluster,
}

/// Why engine mode cannot judge `req` at all, if it cannot.
pub(crate) fn needs_data_plane(req: &RequestExpect) -> Option<String> {
    if req.wire_only {
        return Some("needs a data plane (wire_only)".to_string());
    }
    let kind = req.kind.as_deref().unwrap_or("http");
    if kind != "http" {
        return Some(format!("{kind} requests need a data plane"));
    }
    if let Some(f) = &req.expect_failure
        && f != "status"
    {
        return Some(format!("expectFailure: {f} is judged on the wire"));
    }
    if !req.weights.is_empty() || !req.mirrored_to.is_empty() {
        return Some("traffic shares and mirrors need a data plane".to_string());
    }
    None
}

/// Judges one request in engine mode.
pub(crate) fn judge(req: &RequestExpect, view: EngineView<'_>) -> Outcome {
    if let Some(why) = needs_data_plane(req) {
        return Outcome::NotRun(why);
    }
    let _ = view.computed;
    Outcome::NotRun("the routing table (issue 3) is not in gwcore yet".to_string())
}
