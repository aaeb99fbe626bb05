//! `gwcore controller`: the Kubernetes controller, status only; and the
//! Kubernetes side of `gwcore serve --kubernetes`.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use gwcore::extension::Extensions;
use gwcore::status::GatewayStatusAddress;
use gwcore_k8s::{Controller, GatewayServiceOptions, LeaseOptions, Metrics, Options, State};
use gwcore_proxy::provider::{Runtime, RuntimeOptions};
use gwcore_proxy::server::ListenOptions;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// How to reach the API server and elect a leader (shared by `gwcore
/// controller` and `gwcore serve --kubernetes`).
#[derive(clap::Args, Debug, Clone)]
pub(crate) struct KubeArgs {
    /// Kubeconfig file. Default: `$KUBECONFIG`, then `~/.kube/config`, then
    /// the in-cluster service account.
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the leader-election Lease. Default: `$POD_NAMESPACE`,
    /// else the namespace of the in-cluster service account; without
    /// either, `gwcore` exits with an error naming this flag.
    #[arg(long, value_name = "NS")]
    lease_namespace: Option<String>,
    /// Name of the leader-election Lease.
    #[arg(long, default_value = "gwcore-controller")]
    lease_name: String,
    /// This replica's identity in the Lease. Default: `$POD_NAME`, else the
    /// host name and process id.
    #[arg(long)]
    identity: Option<String>,
    /// Write status without electing a leader (only for a single replica).
    #[arg(long)]
    no_leader_election: bool,
    /// Report this address in Gateways' `status.addresses` (repeatable; an
    /// IP is an `IPAddress`, anything else a `Hostname`).
    #[arg(long = "gateway-address", value_name = "ADDR")]
    gateway_addresses: Vec<String>,
    /// Report the load-balancer addresses of this Service (`NS/NAME`) in
    /// Gateways' `status.addresses`.
    #[arg(long, value_name = "NS/NAME", value_parser = parse_ns_name)]
    address_service: Option<(String, String)>,
    /// Give each of our Gateways a Service of its own, in its namespace,
    /// named `gwcore-<gateway>`, with a port per listener port, the
    /// Gateway's `spec.infrastructure` labels and annotations, and the
    /// Gateway as owner; the Gateway's `status.addresses` are the
    /// Service's. Needs RBAC to create, patch and delete Services.
    #[arg(long)]
    gateway_services: bool,
    /// The `spec.type` of the Gateways' Services.
    #[arg(long, value_name = "TYPE", default_value = "LoadBalancer", value_parser = ["LoadBalancer", "NodePort", "ClusterIP"])]
    gateway_service_type: String,
    /// A label of the proxy pods the Gateways' Services select
    /// (repeatable). Default: deploy/'s, `app.kubernetes.io/name=gwcore`
    /// and `app.kubernetes.io/component=gateway`.
    #[arg(long = "gateway-service-selector", value_name = "KEY=VALUE", value_parser = parse_label)]
    gateway_service_selector: Vec<(String, String)>,
    /// The pods' port (a number or a container port's name) for Gateway
    /// port PORT in the Gateways' Services (repeatable); a port without
    /// one goes to the same number on the pods.
    #[arg(long = "gateway-service-target-port", value_name = "PORT=TARGET", value_parser = parse_target_port)]
    gateway_service_target_ports: Vec<(u16, String)>,
    /// The namespace of the proxy pods. The Service of a Gateway there
    /// selects them; a Gateway in another namespace gets a Service without
    /// selector and EndpointSlices gwcore keeps listing the ready pods
    /// (RBAC: list and watch pods there; create, patch and delete
    /// EndpointSlices). Default: with `serve --kubernetes`, the proxy's
    /// own (`$POD_NAMESPACE`, else the in-cluster service account's);
    /// with `controller`, none: every Service has the selector.
    #[arg(long = "gateway-service-pods-namespace", value_name = "NS")]
    gateway_service_pods_namespace: Option<String>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.into(), v.into())),
        _ => Err(format!("{s:?}: expected KEY=VALUE")),
    }
}

fn parse_target_port(s: &str) -> Result<(u16, String), String> {
    let Some((port, target)) = s.split_once('=') else {
        return Err(format!("{s:?}: expected PORT=TARGET"));
    };
    let port = port
        .parse::<u16>()
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| format!("{s:?}: {port:?} is not a port number"))?;
    // Checked here, so that a bad one is refused with the other flags.
    GatewayServiceOptions::default().with_target_port(port, target)?;
    Ok((port, target.into()))
}

/// The Gateways' Services `kube` asks for (`--gateway-services` and the
/// flags that shape them); `None` without `--gateway-services`.
///
/// With `serve` (the proxy this process runs is what the Services send
/// to, `serve = Some((listen, pod namespace))`): a Gateway port bound
/// elsewhere by `--listen PORT=ADDR` (or `NS/NAME:PORT=ADDR`, for one
/// Gateway) goes to ADDR's port on the pods, unless
/// `--gateway-service-target-port` names the port's target; the pods'
/// namespace is this pod's unless `--gateway-service-pods-namespace`
/// is given.
fn gateway_services(
    kube: &KubeArgs,
    serve: Option<(&ListenOptions, Option<String>)>,
) -> Result<Option<GatewayServiceOptions>, String> {
    if !kube.gateway_services {
        return Ok(None);
    }
    let mut opts = GatewayServiceOptions::default();
    opts.service_type = kube.gateway_service_type.clone();
    if !kube.gateway_service_selector.is_empty() {
        opts.selector = kube.gateway_service_selector.iter().cloned().collect();
    }
    for (port, target) in &kube.gateway_service_target_ports {
        opts = opts.with_target_port(*port, target)?;
    }
    opts.pods_namespace = kube.gateway_service_pods_namespace.clone();
    if let Some((listen, pod_namespace)) = serve {
        let named: BTreeSet<u16> = opts.target_ports.keys().copied().collect();
        // A bound port is never 0 (`--listen` takes a port number; 0
        // asks for an ephemeral one): such a port is left to its own
        // number.
        for (port, addr) in &listen.map {
            if !named.contains(port) && addr.port() != 0 {
                opts = opts.with_target_port(*port, &addr.port().to_string())?;
            }
        }
        for (gp, addr) in &listen.gateway_map {
            if !named.contains(&gp.port) && addr.port() != 0 {
                opts = opts.with_gateway_target_port(
                    gp.gateway.clone(),
                    gp.port,
                    &addr.port().to_string(),
                )?;
            }
        }
        if opts.pods_namespace.is_none() {
            opts.pods_namespace = pod_namespace;
        }
    }
    Ok(Some(opts))
}

/// Where the in-cluster service account's namespace is mounted.
const SERVICE_ACCOUNT_NAMESPACE: &str = "/var/run/secrets/kubernetes.io/serviceaccount/namespace";

/// The namespace of the leader-election Lease: `--lease-namespace`
/// (`flag`), else `$POD_NAMESPACE` (`pod`), else the in-cluster service
/// account's (`service_account`, the file's content). None of them (a
/// controller run outside a cluster without the flag) is an error naming
/// the flags that fix it: guessing a namespace would leave the controller
/// retrying forever against one that may not exist.
fn lease_namespace(
    flag: Option<&str>,
    pod: Option<&str>,
    service_account: Option<&str>,
) -> Result<String, String> {
    [flag, pod, service_account]
        .into_iter()
        .flatten()
        .map(str::trim)
        .find(|ns| !ns.is_empty())
        .map(str::to_string)
        .ok_or_else(|| {
            "cannot tell the namespace of the leader-election Lease: pass \
             --lease-namespace NS (or set POD_NAMESPACE), or --no-leader-election to \
             write status without electing a leader (a single replica only)"
                .to_string()
        })
}

fn parse_ns_name(s: &str) -> Result<(String, String), String> {
    match s.split_once('/') {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() => Ok((ns.into(), name.into())),
        _ => Err(format!("expected NAMESPACE/NAME, got {s:?}")),
    }
}

/// Arguments of `gwcore controller`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Act as this controller: process GatewayClasses whose
    /// `spec.controllerName` is this.
    #[arg(long, default_value = "gwcore.dev/gateway-controller")]
    controller_name: String,
    #[command(flatten)]
    kube: KubeArgs,
    /// Serve /healthz, /readyz (200 once every kind is listed) and /metrics
    /// on this address.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum LogFormat {
    Text,
    Json,
}

/// Runs `gwcore controller`, watching and resolving the kinds `extensions`
/// register too.
pub(crate) fn run(args: Args, extensions: Extensions) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // A program embedding the command may have set its own subscriber
    // already: that one is kept.
    let _ = match args.log_format {
        LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).try_init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .try_init(),
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(async move {
        let stop = crate::serve::shutdown_signal();
        tokio::pin!(stop);
        let ctl = tokio::select! {
            c = start(&args.controller_name, &args.kube, extensions, None) => match c {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::FAILURE;
                }
            },
            _ = &mut stop => return ExitCode::SUCCESS,
        };
        if let Some(addr) = args.admin {
            match admin(addr, ctl.state(), ctl.metrics()).await {
                Ok(local) => tracing::info!(addr = %local, "admin endpoint"),
                Err(e) => {
                    eprintln!("error: cannot serve the admin endpoint on {addr}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
        stop.await;
        tracing::info!("stopping: releasing the lease");
        ctl.shutdown().await;
        ExitCode::SUCCESS
    })
}

/// Connects to the API server and starts the controller, watching the
/// kinds `extensions` register too, retrying discovery (every 2 s) while
/// the API server cannot be reached.
///
/// `listen` is `gwcore serve --kubernetes`'s (the Gateways' Services send
/// to the ports it binds); `None` for `gwcore controller`.
pub(crate) async fn start(
    controller_name: &str,
    kube: &KubeArgs,
    extensions: Extensions,
    listen: Option<&ListenOptions>,
) -> Result<Controller, String> {
    // Settled before connecting: a Lease without a namespace is an error
    // at once, not a retry loop.
    let lease = if kube.no_leader_election {
        None
    } else {
        let ns = lease_namespace(
            kube.lease_namespace.as_deref(),
            std::env::var("POD_NAMESPACE").ok().as_deref(),
            std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE)
                .ok()
                .as_deref(),
        )?;
        let identity = kube
            .identity
            .clone()
            .or_else(|| std::env::var("POD_NAME").ok())
            .unwrap_or_else(|| {
                let host = std::fs::read_to_string("/etc/hostname")
                    .ok()
                    .map(|h| h.trim().to_string())
                    .filter(|h| !h.is_empty())
                    .unwrap_or_else(|| "gwcore".into());
                format!("{host}-{}", std::process::id())
            });
        let mut lease = LeaseOptions::new(ns, identity);
        lease.name = kube.lease_name.clone();
        Some(lease)
    };
    let config = match &kube.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| format!("bad kubeconfig {}: {e}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| format!("no Kubernetes configuration (kubeconfig or in-cluster): {e}"))?,
    };
    let client =
        kube::Client::try_from(config).map_err(|e| format!("cannot build the client: {e}"))?;
    let mut opts = Options::new(controller_name).with_extensions(extensions);
    opts.addresses = kube
        .gateway_addresses
        .iter()
        .map(|a| GatewayStatusAddress {
            type_: Some(
                if a.parse::<IpAddr>().is_ok() {
                    "IPAddress"
                } else {
                    "Hostname"
                }
                .into(),
            ),
            value: a.clone(),
        })
        .collect();
    opts.address_service = kube.address_service.clone();
    let pod_namespace = || {
        std::env::var("POD_NAMESPACE").ok().or_else(|| {
            std::fs::read_to_string(SERVICE_ACCOUNT_NAMESPACE)
                .ok()
                .map(|s| s.trim().to_string())
        })
    };
    opts.gateway_services = gateway_services(kube, listen.map(|l| (l, pod_namespace())))?;
    opts.lease = lease;
    loop {
        match Controller::start(client.clone(), opts.clone()).await {
            Ok(c) => {
                tracing::info!(
                    controller = controller_name,
                    kinds = ?c.served().iter().map(|(k, r)| format!("{k} {}", r.api_version)).collect::<Vec<_>>(),
                    "watching"
                );
                return Ok(c);
            }
            Err(gwcore_k8s::DiscoveryError::Api(e)) => {
                tracing::warn!(error = %e, "cannot reach the API server; retrying in 2 s");
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            // Installed in the wrong order (gwcore before the CRDs): wait
            // rather than crash-loop.
            Err(e @ gwcore_k8s::DiscoveryError::MissingCrds(_)) => {
                tracing::warn!(error = %e, "waiting for the Gateway API CRDs; retrying in 5 s");
                tokio::time::sleep(Duration::from_secs(5)).await;
            }
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// `gwcore serve --kubernetes`: the controller feeds the proxy. Every
/// replica serves; the Lease holder also writes status.
pub(crate) async fn serve(
    controller_name: &str,
    kube: &KubeArgs,
    opts: RuntimeOptions,
    serve: gwcore_proxy::server::ServeOptions,
    admin_addr: Option<SocketAddr>,
    grace: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> ExitCode {
    tokio::pin!(stop);
    let ctl = tokio::select! {
        c = start(controller_name, kube, opts.plugins.extensions().clone(), Some(&opts.listen)) => match c {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        },
        _ = &mut stop => return ExitCode::SUCCESS,
    };
    let mut state = ctl.state();
    tokio::select! {
        _ = ctl.synced() => {}
        _ = &mut stop => { ctl.shutdown().await; return ExitCode::SUCCESS }
    }
    let (first, mut served) = {
        let s = state.borrow_and_update();
        let served = Served {
            objects_version: s.objects_version,
            status_behind: false,
            quiet: STATUS_CATCH_UP_QUIET,
        };
        (s.snapshot.clone(), served)
    };
    let mut runtime = match Runtime::from_snapshot_with(first, opts, serve).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let Ok(_admin) = crate::common::start_admin(runtime.proxy(), admin_addr).await else {
        return ExitCode::FAILURE;
    };
    loop {
        let next = tokio::select! {
            _ = &mut stop => break,
            next = next_objects(&mut state, &mut served) => next,
        };
        let Some(next) = next else { break };
        let applying = std::time::Instant::now();
        let outcome = runtime.apply(next.snapshot).await;
        // The proxy's share of a served change (benches/k8s reads it):
        // waking up for the state, taking it, then building and swapping
        // the configuration.
        tracing::debug!(
            objects_version = served.objects_version,
            status_only = next.status_only,
            outcome = ?outcome,
            wake_ms = next.published.map(|p| ms(next.woke.saturating_duration_since(p))),
            take_ms = ms(applying - next.woke),
            apply_ms = ms(applying.elapsed()),
            "proxy swap"
        );
    }
    runtime.shutdown(grace).await;
    ctl.shutdown().await;
    ExitCode::SUCCESS
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// How long the states must stay the same before the proxy takes up the
/// status changes it has skipped ([`next_objects`]).
const STATUS_CATCH_UP_QUIET: Duration = Duration::from_secs(1);

/// What the serve loop has served of the controller's states.
struct Served {
    /// The `objects_version` of the objects served.
    objects_version: u64,
    /// Whether states changing status alone came since the last swap.
    status_behind: bool,
    /// How long the states must stay the same before those are taken up.
    quiet: Duration,
}

/// What the proxy serves next.
struct Next {
    snapshot: gwcore::Snapshot,
    /// Whether only statuses changed since the last swap.
    status_only: bool,
    /// When the controller published it.
    published: Option<std::time::Instant>,
    /// When the serve loop woke up for it.
    woke: std::time::Instant,
}

/// Waits for a state whose objects differ from those served (`served`,
/// updated), and takes its snapshot; `None` once the controller is gone.
/// The channel keeps only the newest state: the states published while
/// the proxy swaps are one swap after it, for the newest of them (whatever
/// came meanwhile waits for at most one swap to end, and none is lost).
///
/// Status changes alone do not change what is served and are skipped,
/// but not forever: the proxy's configuration takes up every object it is
/// handed, the status echoes too, and after a controller start (a status
/// written for every route) the first change served would take up all of
/// them (at 10 000 routes 101 ms instead of ~25, in benches/k8s). Once the
/// states have stayed the same for `served.quiet` after such changes, their
/// snapshot is served, off the path of any change.
async fn next_objects(
    state: &mut watch::Receiver<Arc<State>>,
    served: &mut Served,
) -> Option<Next> {
    loop {
        let changed = if served.status_behind {
            match tokio::time::timeout(served.quiet, state.changed()).await {
                Ok(r) => r,
                Err(_) => {
                    served.status_behind = false;
                    let woke = std::time::Instant::now();
                    let s = state.borrow_and_update();
                    return Some(Next {
                        snapshot: s.snapshot.clone(),
                        status_only: true,
                        published: s.published_at(),
                        woke,
                    });
                }
            }
        } else {
            state.changed().await
        };
        changed.ok()?;
        let woke = std::time::Instant::now();
        let s = state.borrow_and_update();
        if s.objects_version != served.objects_version {
            served.objects_version = s.objects_version;
            served.status_behind = false;
            return Some(Next {
                snapshot: s.snapshot.clone(),
                status_only: false,
                published: s.published_at(),
                woke,
            });
        }
        served.status_behind = true;
    }
}

/// A minimal HTTP/1.1 admin endpoint: `/healthz` (the process runs),
/// `/readyz` (200 once every watched kind has been listed and the engine
/// has run), `/metrics` (Prometheus text). One request per connection.
async fn admin(
    addr: SocketAddr,
    state: watch::Receiver<Arc<State>>,
    metrics: Arc<Metrics>,
) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                continue;
            };
            let state = state.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut n = 0;
                while n < buf.len() {
                    match tokio::time::timeout(Duration::from_secs(5), sock.read(&mut buf[n..]))
                        .await
                    {
                        Ok(Ok(0)) | Err(_) | Ok(Err(_)) => return,
                        Ok(Ok(k)) => n += k,
                    }
                    if buf[..n].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                let head = String::from_utf8_lossy(&buf[..n]);
                let path = head.split_whitespace().nth(1).unwrap_or("/");
                let (code, body) = match path {
                    "/healthz" => ("200 OK", "ok\n".to_string()),
                    "/readyz" if state.borrow().synced => ("200 OK", "ready\n".to_string()),
                    "/readyz" => ("503 Service Unavailable", "not synced yet\n".to_string()),
                    "/metrics" => ("200 OK", metrics.prometheus()),
                    _ => ("404 Not Found", "not found\n".to_string()),
                };
                let resp = format!(
                    "HTTP/1.1 {code}\r\ncontent-type: text/plain; charset=utf-8\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = sock.write_all(resp.as_bytes()).await;
            });
        }
    });
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::lease_namespace;
    use std::sync::Arc;
    use std::time::Duration;

    /// A controller state at `objects_version`, its snapshot one Namespace
    /// named after `tag`.
    fn state(objects_version: u64, tag: &str) -> Arc<gwcore_k8s::State> {
        let mut s = gwcore_k8s::State::default();
        s.objects_version = objects_version;
        s.snapshot = gwcore::Snapshot::from_objects([gwcore::model::Object::Namespace(
            gwcore::model::Namespace {
                metadata: gwcore::model::ObjectMeta {
                    name: tag.into(),
                    ..Default::default()
                },
            },
        )]);
        Arc::new(s)
    }

    fn tag(s: &gwcore::Snapshot) -> Vec<String> {
        s.iter().map(|o| o.meta().name.clone()).collect()
    }

    /// What the serve loop takes next within 100 ms, if anything: the
    /// snapshot's tag, and whether it is for status alone.
    async fn next_within(
        rx: &mut tokio::sync::watch::Receiver<Arc<gwcore_k8s::State>>,
        served: &mut super::Served,
    ) -> Option<(Vec<String>, bool)> {
        tokio::time::timeout(Duration::from_millis(100), super::next_objects(rx, served))
            .await
            .ok()
            .flatten()
            .map(|n| (tag(&n.snapshot), n.status_only))
    }

    fn served(quiet: Duration) -> super::Served {
        super::Served {
            objects_version: 1,
            status_behind: false,
            quiet,
        }
    }

    /// The serve loop takes states as they come: the states published
    /// while the proxy swaps (here: between two calls) queue one swap, for
    /// the newest objects, and no more; a change of status alone is none.
    #[tokio::test]
    async fn changes_published_during_a_swap_are_served_by_one_next_swap() {
        let (tx, mut rx) = tokio::sync::watch::channel(state(1, "v1"));
        rx.borrow_and_update();
        let mut served = served(Duration::from_secs(60));
        tx.send(state(1, "v1 with a status")).unwrap();
        assert_eq!(next_within(&mut rx, &mut served).await, None, "status only");
        // A swap is under way; three states come meanwhile.
        tx.send(state(2, "v2")).unwrap();
        tx.send(state(3, "v3")).unwrap();
        tx.send(state(3, "v3 with a status")).unwrap();
        assert_eq!(
            next_within(&mut rx, &mut served).await,
            Some((vec!["v3 with a status".to_string()], false))
        );
        assert_eq!(served.objects_version, 3);
        assert_eq!(
            next_within(&mut rx, &mut served).await,
            None,
            "one swap was all they needed"
        );
        tx.send(state(3, "v3 again")).unwrap();
        tx.send(state(4, "v4")).unwrap();
        assert_eq!(
            next_within(&mut rx, &mut served).await,
            Some((vec!["v4".to_string()], false))
        );
        drop(tx);
        assert!(super::next_objects(&mut rx, &mut served).await.is_none());
    }

    /// Status changes alone are taken up once the states stay the same for
    /// the quiet time, and not while they keep coming, nor after a change
    /// served them.
    #[tokio::test]
    async fn status_changes_are_served_once_the_states_are_quiet() {
        let (tx, mut rx) = tokio::sync::watch::channel(state(1, "v1"));
        rx.borrow_and_update();
        let mut served = served(Duration::from_millis(50));
        tx.send(state(1, "v1 with a status")).unwrap();
        // Statuses keep coming, 20 ms apart: not quiet.
        for i in 0..4 {
            tokio::time::sleep(Duration::from_millis(20)).await;
            tx.send(state(1, &format!("v1 with status {i}"))).unwrap();
        }
        let t = std::time::Instant::now();
        let next = tokio::time::timeout(
            Duration::from_secs(2),
            super::next_objects(&mut rx, &mut served),
        )
        .await
        .expect("served once quiet")
        .unwrap();
        assert!(next.status_only);
        assert_eq!(tag(&next.snapshot), ["v1 with status 3"]);
        assert!(
            t.elapsed() >= Duration::from_millis(40),
            "{:?}",
            t.elapsed()
        );
        assert_eq!(next_within(&mut rx, &mut served).await, None, "once");
        // A change that comes first takes the statuses with it.
        tx.send(state(1, "v1 with status 4")).unwrap();
        tx.send(state(2, "v2")).unwrap();
        assert_eq!(
            next_within(&mut rx, &mut served).await,
            Some((vec!["v2".to_string()], false))
        );
        assert_eq!(next_within(&mut rx, &mut served).await, None);
    }

    #[test]
    fn the_lease_namespace_comes_from_the_flag_then_the_pod_then_the_service_account() {
        assert_eq!(
            lease_namespace(Some("a"), Some("b"), Some("c")),
            Ok("a".into())
        );
        assert_eq!(lease_namespace(None, Some("b"), Some("c")), Ok("b".into()));
        assert_eq!(lease_namespace(None, Some(""), Some("c\n")), Ok("c".into()));
    }

    #[test]
    fn no_lease_namespace_is_an_error_naming_the_flags() {
        let e = lease_namespace(None, None, None).expect_err("no namespace");
        assert!(e.contains("--lease-namespace NS"), "{e}");
        assert!(e.contains("--no-leader-election"), "{e}");
    }

    #[test]
    fn gateway_service_flags_shape_the_services() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            kube: super::KubeArgs,
        }
        let parse = |args: &[&str]| {
            Cli::try_parse_from(std::iter::once("gwcore").chain(args.iter().copied()))
                .map(|c| super::gateway_services(&c.kube, None))
        };
        assert_eq!(parse(&[]).unwrap(), Ok(None), "off by default");
        let o = parse(&[
            "--gateway-services",
            "--gateway-service-type=NodePort",
            "--gateway-service-selector=app=proxy",
            "--gateway-service-target-port=80=http",
            "--gateway-service-target-port=443=8443",
        ])
        .unwrap()
        .unwrap()
        .unwrap();
        assert_eq!(o.service_type, "NodePort");
        assert_eq!(
            o.selector,
            [("app".to_string(), "proxy".to_string())].into()
        );
        let want = super::GatewayServiceOptions::default()
            .with_target_port(80, "http")
            .and_then(|w| w.with_target_port(443, "8443"))
            .unwrap();
        assert_eq!(o.target_ports, want.target_ports);
        for bad in [
            "--gateway-service-target-port=80=HTTP",
            "--gateway-service-target-port=x=http",
            "--gateway-service-selector==v",
            "--gateway-service-type=External",
        ] {
            assert!(parse(&["--gateway-services", bad]).is_err(), "{bad}");
        }
    }

    #[test]
    fn serve_sends_each_gateway_port_to_the_port_it_binds() {
        use clap::Parser;
        use gwcore::model::{Kind, ObjectKey};
        use gwcore_proxy::config::GatewayPort;
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            kube: super::KubeArgs,
        }
        let gw = ObjectKey::new(Kind::Gateway, "infra", "gw");
        let listen = super::ListenOptions {
            map: [
                (80, "0.0.0.0:8080".parse().unwrap()),
                (443, "0.0.0.0:8443".parse().unwrap()),
            ]
            .into(),
            gateway_map: [(
                GatewayPort::new(gw.clone(), 9000),
                "0.0.0.0:9090".parse().unwrap(),
            )]
            .into(),
            ..super::ListenOptions::default()
        };
        let services = |args: &[&str], pod_ns: Option<&str>| {
            let c = Cli::try_parse_from(
                ["gwcore", "--gateway-services"]
                    .into_iter()
                    .chain(args.iter().copied()),
            )
            .unwrap();
            super::gateway_services(&c.kube, Some((&listen, pod_ns.map(String::from))))
                .unwrap()
                .unwrap()
        };
        let o = services(
            &["--gateway-service-target-port=443=https"],
            Some("gwcore-system"),
        );
        let other = ObjectKey::new(Kind::Gateway, "infra", "other");
        let t = |gw: &ObjectKey, port| serde_json::to_value(o.target_port(gw, port)).unwrap();
        assert_eq!(t(&other, 80), 8080, "--listen 80=0.0.0.0:8080");
        assert_eq!(t(&other, 443), "https", "a named target port wins");
        assert_eq!(t(&gw, 9000), 9090, "one Gateway's port");
        assert_eq!(t(&other, 9000), 9000, "another's is bound at its number");
        assert_eq!(t(&other, 8081), 8081);
        assert_eq!(
            o.pods_namespace.as_deref(),
            Some("gwcore-system"),
            "this pod's"
        );
        let o = services(
            &["--gateway-service-pods-namespace=proxies"],
            Some("gwcore-system"),
        );
        assert_eq!(
            o.pods_namespace.as_deref(),
            Some("proxies"),
            "the flag wins"
        );
    }
}
