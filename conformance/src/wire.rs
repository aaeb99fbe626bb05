//! Wire mode: the vectors played against the real data plane.
//!
//! The simulated cluster of engine mode still plays the API server and the
//! controller (edits, generations, statuses, the status checks). What
//! changes is how requests are judged: the cluster's objects are served by
//! `gwcore-proxy` in-process, on ephemeral loopback ports, and each request
//! is sent for real over a socket.
//!
//! ```text
//!  Cluster ──snapshot──┬──────────────────────────────▶ Runtime (gwcore-proxy)
//!    │ Deployments     │ EndpointSlices → echo pods         │ 127.0.0.1:ephemeral per Gateway port
//!    ▼                 │                                    ▼
//!  Pods: one echo server per pod (HTTP, gRPC, TCP, TCP+TLS, UDP, DNS) ◀── proxied request ◀── client (h1, h2, TLS, ws, grpc, tcp, udp, dns)
//!                                                            echo report ──▶ checks shared with engine mode
//! ```
//!
//! The runner plays kubelet and the EndpointSlice controller: every pod a
//! Deployment asks for becomes an echo server on loopback, named
//! `<deployment>-wire-<n>`, and every Service gets EndpointSlices naming
//! the echo servers of the pods it selects (or of the pods its own
//! EndpointSlices point at). A Service that selects no pod answers through
//! an echo server of its own, as in engine mode. The proxy is applied a
//! new snapshot after each step with requests, as a controller would, and
//! the routing it computes must equal the controller's (else the step's
//! requests fail).
//!
//! Judging follows FORMAT.md: the status and redirect, what the echo
//! backend reports it saw, the response headers, with the comparisons of
//! engine mode (the `requests` module). Traffic shares, mirrors, retries and
//! timeouts are measured for real; backends over TLS report the SNI and
//! client certificate they saw. What the data plane does not serve fails
//! with the reason; the wire test holds those failures to
//! `wire-expected-failures.txt`.

mod backends;
mod client;
mod judge;
mod udp;

use std::sync::OnceLock;

use gwcore_proxy::provider::{Runtime, RuntimeOptions};
use gwcore_proxy::server::ListenOptions;

use crate::check::{CheckKind, CheckResult, Outcome};
use crate::runner::{Judge, StepState, request_name};
use crate::vector::Step;

/// The threads that play vectors at once in wire mode:
/// `GWCORE_WIRE_THREADS`, or the number of CPUs, at most 4.
pub fn parallelism() -> usize {
    if let Some(n) = std::env::var("GWCORE_WIRE_THREADS")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
    {
        return n;
    }
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(4)
}

/// The async runtime shared by every vector of the process: proxies, echo
/// servers and clients all run on it.
fn tokio() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        // Without a runtime wire mode cannot do anything; failing to build
        // one (no threads left) is not something a run can recover from.
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .thread_name("gwcore-wire")
            .build()
            .expect("a tokio runtime for wire mode")
    })
}

/// Wire mode's request judge: one proxy and its echo pods per vector.
pub(crate) struct WireJudge {
    proxy: Option<Runtime>,
    pods: backends::Pods,
}

impl WireJudge {
    /// A judge with nothing started yet: the proxy starts at the first step
    /// with requests.
    pub(crate) fn new() -> Self {
        WireJudge {
            proxy: None,
            pods: backends::Pods::default(),
        }
    }

    /// Stops the proxy and the echo servers.
    pub(crate) fn stop(self) {
        let WireJudge { proxy, pods } = self;
        tokio().block_on(async move {
            if let Some(p) = proxy {
                p.shutdown(std::time::Duration::from_millis(100)).await;
            }
            drop(pods);
        });
    }

    /// Serves the cluster as it is now: echo pods for its Deployments,
    /// EndpointSlices for its Services, the snapshot applied to the proxy.
    async fn sync(&mut self, at: StepState<'_>) -> Result<(), String> {
        let (mut snapshot, diags) = at.cluster.snapshot();
        if let Some(d) = diags.first() {
            return Err(format!("stored object no longer loads: {d}"));
        }
        let slices = self.pods.sync(at.cluster, &snapshot).await?;
        let stale: Vec<_> = snapshot
            .of_kind(gwcore::model::Kind::EndpointSlice)
            .map(gwcore::model::Object::key)
            .collect();
        for k in stale {
            snapshot.remove(&k);
        }
        for s in slices {
            snapshot.insert(s);
        }
        match &mut self.proxy {
            Some(p) => {
                p.apply(snapshot).await;
            }
            None => {
                let listen = ListenOptions {
                    default_ip: std::net::IpAddr::from([127, 0, 0, 1]),
                    ephemeral: true,
                    ..ListenOptions::default()
                };
                let opts = {
                    let mut o = RuntimeOptions::new(at.controller.to_string());
                    o.listen = listen;
                    o
                };
                let rt = Runtime::from_snapshot(snapshot, opts)
                    .await
                    .map_err(|e| format!("the proxy does not start: {e}"))?;
                self.proxy = Some(rt);
            }
        }
        // The data plane computes its routing itself; it must be the
        // controller's, or the requests would judge another configuration.
        if let Some(p) = &self.proxy {
            let served = p.proxy().config();
            let differs: std::collections::BTreeSet<String> = at
                .computed
                .routing
                .keys()
                .chain(served.computed.routing.keys())
                .filter(|gw| at.computed.routing.get(*gw) != served.computed.routing.get(*gw))
                .map(|gw| format!("{}/{}", gw.namespace, gw.name))
                .collect();
            if !differs.is_empty() {
                let differs: Vec<String> = differs.into_iter().collect();
                return Err(format!(
                    "the proxy serves a routing other than the controller's for {}",
                    differs.join(", ")
                ));
            }
        }
        Ok(())
    }
}

impl Judge for WireJudge {
    fn judge_step(&mut self, n: usize, step: &Step, at: StepState<'_>) -> Vec<CheckResult> {
        if step.requests.is_empty() {
            return Vec::new();
        }
        tokio().block_on(async {
            let synced = self.sync(at).await;
            let mut out = Vec::new();
            for r in &step.requests {
                let outcome = match (&synced, &self.proxy) {
                    (Err(e), _) => Outcome::Fail(e.clone()),
                    (Ok(()), None) => Outcome::Fail("the proxy is not running".to_string()),
                    (Ok(()), Some(proxy)) => {
                        let ctx = judge::Context {
                            proxy,
                            pods: &self.pods,
                            cluster: at.cluster,
                        };
                        match judge::judge(r, &ctx).await {
                            Ok(()) => Outcome::Pass,
                            Err(why) => Outcome::Fail(why),
                        }
                    }
                };
                out.push(CheckResult {
                    step: n,
                    kind: CheckKind::Request,
                    check: request_name(r),
                    outcome,
                });
            }
            out
        })
    }
}
