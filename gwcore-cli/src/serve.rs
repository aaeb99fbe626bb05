//! `gwcore serve FILE|DIR...`: the data plane with the file provider.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use gwcore::Snapshot;
use gwcore::model::{Kind, ObjectKey};
use gwcore_proxy::access_log::{AccessFormat, LogBuffer, LogBufferOptions, LogHandle, LogWriter};
use gwcore_proxy::config::GatewayPort;
use gwcore_proxy::limits::{Limits, TrustedProxies};
use gwcore_proxy::plugin::Plugins;
use gwcore_proxy::provider::{Runtime, RuntimeOptions};
use gwcore_proxy::server::{ListenOptions, ServeOptions};

use crate::common::{Unnamed, select_controllers};

/// Arguments of `gwcore serve`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Manifest files or folders, watched for changes.
    #[arg(required_unless_present = "kubernetes")]
    paths: Vec<PathBuf>,
    /// Act as this controller: serve the Gateways of GatewayClasses whose
    /// `spec.controllerName` is this (an error when no GatewayClass in the
    /// input has it). Default: the controllerName the input's
    /// GatewayClasses share (an error when they have several); with
    /// `--kubernetes`, gwcore.dev/gateway-controller.
    #[arg(long)]
    controller_name: Option<String>,
    /// Serve Gateway port PORT on ADDR (repeatable), e.g.
    /// `80=127.0.0.1:8080`; `NAMESPACE/NAME:PORT=ADDR` for the port of one
    /// Gateway when several use the same number.
    #[arg(long = "listen", value_name = "[NS/NAME:]PORT=ADDR", value_parser = parse_listen)]
    listen: Vec<(Option<ObjectKey>, u16, SocketAddr)>,
    /// Address for Gateway ports without `--listen`, bound at their own
    /// number.
    #[arg(long, default_value = "0.0.0.0")]
    bind: IpAddr,
    /// Start an echo backend for every Service without endpoints.
    #[arg(long)]
    echo_backends: bool,
    /// Serve /healthz, /readyz, /metrics and /status on this address.
    #[arg(long, value_name = "ADDR")]
    admin: Option<SocketAddr>,
    /// How often the inputs are checked for changes, in milliseconds.
    #[arg(long, default_value_t = 1000)]
    poll_ms: u64,
    /// How long open connections may take to finish on SIGTERM/SIGINT, in
    /// seconds.
    #[arg(long, default_value_t = 10)]
    grace_secs: u64,
    /// Worker threads serving connections, each with a socket of its own
    /// per port (`SO_REUSEPORT`) and no work stealing: a connection stays
    /// on the thread that accepted it. Default: one per CPU.
    #[arg(long)]
    threads: Option<usize>,
    /// Log format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    /// Watch a Kubernetes API server instead of files: every replica
    /// serves; the elected one also writes status (as `gwcore controller`).
    #[arg(long, conflicts_with = "paths")]
    kubernetes: bool,
    /// Sign session-persistence tokens (GEP-1619 cookies and headers) with
    /// the key in FILE (at least 16 bytes; surrounding whitespace is
    /// ignored, so `head -c 32 /dev/urandom | base64 > FILE` makes one):
    /// replicas given the same file keep each other's sessions. Default:
    /// a random key per process, so a session stays with the replica
    /// that began it.
    #[arg(long, value_name = "FILE")]
    session_key_file: Option<PathBuf>,
    #[command(flatten)]
    kube: crate::controller::KubeArgs,
    // Boxed: the other subcommands' arguments are much smaller.
    #[command(flatten)]
    limits: Box<LimitArgs>,
}

/// Client connection limits and trusted proxies (`gwcore_proxy::limits`).
/// Durations are Gateway API durations (`500ms`, `30s`, `1m`); `0s` and
/// `0` disable a limit.
#[derive(clap::Args)]
pub(crate) struct LimitArgs {
    /// Largest request head (HTTP/1.1 request line and fields, at least
    /// 8192; HTTP/2 header list), in bytes; larger gets 431.
    #[arg(long, default_value_t = Limits::default().max_header_bytes)]
    max_header_bytes: usize,
    /// Most header fields in a request; more gets 431.
    #[arg(long, default_value_t = Limits::default().max_headers)]
    max_headers: usize,
    /// Longest path and query of a request target, in bytes; longer gets
    /// 414.
    #[arg(long, default_value_t = Limits::default().max_uri_bytes)]
    max_uri_bytes: usize,
    /// Time to send a request head (HTTP/1.1) and a connection's first
    /// request; the connection is closed after it.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    header_read_timeout: Duration,
    /// A connection with no request in flight this long is closed.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// HTTP/2 connections that received nothing this long are PINGed.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    http2_keep_alive_interval: Duration,
    /// An HTTP/2 PING unanswered this long closes the connection.
    #[arg(long, default_value = "20s", value_parser = parse_duration)]
    http2_keep_alive_timeout: Duration,
    /// Most client connections open at once; more are closed at once.
    #[arg(long, default_value_t = Limits::default().max_connections)]
    max_connections: usize,
    /// Most concurrent streams per HTTP/2 connection; more are refused
    /// (REFUSED_STREAM).
    #[arg(long, default_value_t = Limits::default().http2_max_concurrent_streams)]
    http2_max_concurrent_streams: u32,
    /// Most PING, SETTINGS and RST_STREAM frames per second per HTTP/2
    /// connection (bursts of ten seconds' worth); more get
    /// GOAWAY(ENHANCE_YOUR_CALM). 0: no limit.
    #[arg(long, default_value_t = Limits::default().http2_max_control_frames_per_second)]
    http2_max_control_frames_per_second: u32,
    /// Most HTTP/2 streams reset by the client before they were taken up,
    /// at once (rapid reset); more get GOAWAY(ENHANCE_YOUR_CALM).
    #[arg(long, default_value_t = Limits::default().http2_max_pending_accept_reset_streams)]
    http2_max_pending_accept_reset_streams: usize,
    /// Most HTTP/2 streams reset for the client's protocol errors per
    /// connection; more get GOAWAY(ENHANCE_YOUR_CALM).
    #[arg(long, default_value_t = Limits::default().http2_max_local_error_reset_streams)]
    http2_max_local_error_reset_streams: usize,
    /// Largest request body, in bytes, where no BodyLimitPolicy applies;
    /// larger gets 413 (a streamed body is cut at the limit). 0: no limit
    /// (the default).
    #[arg(long, default_value_t = Limits::default().max_request_body_bytes)]
    max_request_body_bytes: u64,
    /// Longest wait for more of a request body; longer gets 408 and the
    /// connection closed.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    request_body_timeout: Duration,
    /// Least average rate of a request body, in bytes per second, once
    /// --request-body-timeout of waiting is spent; slower gets 408. 0: none.
    #[arg(long, default_value_t = Limits::default().min_request_body_rate)]
    min_request_body_rate: u64,
    /// HTTP/1.x request bodies up to this size are read whole, and their
    /// framing checked, before the backend is contacted. 0: stream all.
    #[arg(long, default_value_t = Limits::default().request_body_buffer_bytes)]
    request_body_buffer_bytes: usize,
    /// A client that takes no response bytes for this long is
    /// disconnected.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    response_write_timeout: Duration,
    /// Peers (comma-separated IPs or CIDRs) whose X-Forwarded-For/Proto/Host
    /// are kept and appended to; from others they are replaced. Default:
    /// none.
    #[arg(long, value_name = "CIDR,...", default_value = "")]
    trusted_proxies: TrustedProxies,
    /// Gateway ports (comma-separated PORT or NAMESPACE/NAME:PORT) whose
    /// connections start with a PROXY protocol v1 or v2 header from a TCP
    /// load balancer: the address it carries is the client's; a connection
    /// without a valid header is closed. Default: none.
    #[arg(long, value_name = "PORT,...", default_value = "")]
    proxy_protocol: gwcore_proxy::proxy_protocol::ProxyProtocolPorts,
    /// What a request path with an encoded slash or backslash (%2F, %5C)
    /// gets where no PathPolicy applies: UnescapeAndRedirect (307 to the
    /// decoded path), UnescapeAndForward, RejectRequest (400) or
    /// KeepUnchanged (as is, when its decoded path has the same route;
    /// else 400).
    #[arg(long, value_name = "ACTION", default_value_t = Default::default())]
    escaped_slashes: gwcore::table::slashes::EscapedSlashes,
    /// Trace requests: a span for each, exported over OTLP/gRPC to the
    /// collector at this URL (e.g. http://127.0.0.1:4317), and W3C
    /// trace contexts continued with it. Default: off (traceparent and
    /// tracestate reach backends as clients sent them).
    #[arg(long, value_name = "URL", value_parser = parse_otlp_endpoint)]
    otlp_endpoint: Option<http::Uri>,
    /// The share of new traces sampled with --otlp-endpoint, 0.0 to 1.0;
    /// a caller's sampled flag is followed.
    #[arg(long, value_name = "RATIO", default_value = "1.0")]
    trace_sampling_ratio: gwcore_proxy::tracing_otel::SamplingRatio,
}

impl LimitArgs {
    pub(crate) fn serve_options(&self) -> ServeOptions {
        ServeOptions {
            limits: Limits {
                max_header_bytes: self.max_header_bytes,
                max_headers: self.max_headers,
                max_uri_bytes: self.max_uri_bytes,
                header_read_timeout: self.header_read_timeout,
                idle_timeout: self.idle_timeout,
                http2_keep_alive_interval: Some(self.http2_keep_alive_interval)
                    .filter(|d| !d.is_zero()),
                http2_keep_alive_timeout: self.http2_keep_alive_timeout,
                max_connections: self.max_connections,
                http2_max_concurrent_streams: self.http2_max_concurrent_streams,
                http2_max_control_frames_per_second: self.http2_max_control_frames_per_second,
                http2_max_pending_accept_reset_streams: self.http2_max_pending_accept_reset_streams,
                http2_max_local_error_reset_streams: self.http2_max_local_error_reset_streams,
                max_request_body_bytes: self.max_request_body_bytes,
                request_body_timeout: self.request_body_timeout,
                min_request_body_rate: self.min_request_body_rate,
                request_body_buffer_bytes: self.request_body_buffer_bytes,
                response_write_timeout: self.response_write_timeout,
            },
            trusted_proxies: self.trusted_proxies.clone(),
            proxy_protocol: self.proxy_protocol.clone(),
            escaped_slashes: self.escaped_slashes,
            tracing: gwcore_proxy::tracing_otel::TracingOptions {
                otlp_endpoint: self.otlp_endpoint.clone(),
                sampling_ratio: self.trace_sampling_ratio,
            },
        }
    }
}

/// An OTLP collector's URL: `http://` and a host (the exporter speaks
/// plain-text gRPC; put a local collector in front of a TLS one).
fn parse_otlp_endpoint(s: &str) -> Result<http::Uri, String> {
    let uri: http::Uri = s.parse().map_err(|e| format!("{s:?}: {e}"))?;
    match (uri.scheme_str(), uri.authority()) {
        (Some("http"), Some(_)) => Ok(uri),
        _ => Err(format!(
            "expected a collector URL such as http://127.0.0.1:4317, got {s:?}"
        )),
    }
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    gwcore::values::Duration::parse(s)
        .value()
        .ok_or_else(|| format!("expected a duration such as 500ms, 30s or 1m, got {s:?}"))
}

#[derive(clap::ValueEnum, Clone, Copy)]
enum LogFormat {
    Text,
    Json,
}

fn parse_listen(s: &str) -> Result<(Option<ObjectKey>, u16, SocketAddr), String> {
    let (left, addr) = s
        .split_once('=')
        .ok_or_else(|| format!("expected [NS/NAME:]PORT=ADDR, got {s:?}"))?;
    let (gateway, port) = match left.rsplit_once(':') {
        Some((gw, port)) => {
            let (ns, name) = gw
                .split_once('/')
                .ok_or_else(|| format!("expected NAMESPACE/NAME before ':', got {gw:?}"))?;
            (Some(ObjectKey::new(Kind::Gateway, ns, name)), port)
        }
        None => (None, left),
    };
    let port = port
        .parse()
        .map_err(|e| format!("bad Gateway port {port:?}: {e}"))?;
    let addr = addr
        .parse()
        .map_err(|e| format!("bad address {addr:?} (want IP:PORT): {e}"))?;
    Ok((gateway, port, addr))
}

/// Runs `gwcore serve` with `plugins`: their kinds are read and resolved,
/// their plug-ins act on requests.
pub(crate) fn run(args: Args, plugins: Plugins) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Log lines (one access line per request) are buffered and written by
    // a thread of their own (`gwcore_proxy::access_log`): a request costs a
    // copy of its line, not a write; other lines are written at once. A
    // full buffer drops lines (counted in /metrics) rather than stall
    // requests. Dropping the buffer at the end of `run` (after a graceful
    // stop, on SIGTERM too) writes what is left.
    let logs = match LogBuffer::start(std::io::stderr(), LogBufferOptions::default()) {
        Ok(logs) => logs,
        Err(e) => {
            eprintln!("error: cannot start the log writer: {e}");
            return ExitCode::FAILURE;
        }
    };
    let writer = MakeLogWriter(logs.handle());
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    // A program embedding the command may have set its own subscriber
    // already: that one is kept, and gets the access lines as events.
    let ours = match args.log_format {
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_ansi(ansi)
            .with_writer(writer)
            .try_init(),
        LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .with_writer(writer)
            .try_init(),
    }
    .is_ok();
    if ours {
        // HTTP requests' access lines skip the subscriber's formatting:
        // the proxy writes them into the buffer itself, in the same
        // format (RUST_LOG still decides whether they are written).
        let format = match args.log_format {
            LogFormat::Text => AccessFormat::Text { ansi },
            LogFormat::Json => AccessFormat::Json,
        };
        gwcore_proxy::access_log::install(logs.handle(), format);
    }
    // Thread-per-core: `threads` workers, each a current-thread runtime
    // with its own SO_REUSEPORT socket per port (gwcore_proxy::server::
    // set_workers), so a connection and its backend connections stay on
    // one thread. The configuration, UDP and the admin endpoint run on
    // this thread's runtime, which with one worker also serves the ports.
    let threads = args
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    gwcore_proxy::server::set_workers(threads);
    let mut builder = tokio::runtime::Builder::new_current_thread();
    let rt = match builder.enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = rt.block_on(serve(args, plugins));
    drop(rt);
    drop(logs);
    code
}

/// `tracing_subscriber`'s access to a [`LogBuffer`]: access lines wait for
/// the buffer's size or interval, other lines are written at once.
struct MakeLogWriter(LogHandle);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for MakeLogWriter {
    type Writer = LogWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        self.0.writer(true)
    }

    fn make_writer_for(&'a self, meta: &tracing::Metadata<'_>) -> Self::Writer {
        self.0.writer(LogHandle::is_urgent(meta.target()))
    }
}

/// The session key in `path`: its bytes, without the whitespace around
/// them.
fn read_session_key(path: &std::path::Path) -> Result<gwcore_proxy::session::SessionKey, String> {
    let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
    gwcore_proxy::session::SessionKey::new(bytes.trim_ascii()).map_err(|e| e.to_string())
}

/// The controller of `--kubernetes` when `--controller-name` is not given.
const KUBERNETES_CONTROLLER: &str = "gwcore.dev/gateway-controller";

/// The controller to serve the input files as: the rule `gwcore check`
/// follows too ([`select_controllers`]), except that without
/// `--controller-name` the input's GatewayClasses must share one
/// controllerName. Manifests with errors are left to
/// [`Runtime::start_with`], which reports them and does not start.
fn files_controller(args: &Args, plugins: &Plugins) -> Result<String, String> {
    let loaded = gwcore_proxy::files::read_manifests_extended(&args.paths, plugins.extensions());
    if loaded.has_errors() {
        return Ok(args.controller_name.clone().unwrap_or_default());
    }
    let snapshot = Snapshot::from_objects(loaded.objects.into_iter().map(|(o, _)| o));
    let chosen = select_controllers(args.controller_name.as_deref(), &snapshot, Unnamed::Shared)?;
    Ok(chosen.into_iter().next().unwrap_or_default())
}

async fn serve(args: Args, plugins: Plugins) -> ExitCode {
    let controller_name = if args.kubernetes {
        args.controller_name
            .clone()
            .unwrap_or_else(|| KUBERNETES_CONTROLLER.to_string())
    } else {
        match files_controller(&args, &plugins) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        }
    };
    let mut opts = RuntimeOptions::new(controller_name.clone());
    opts.listen = ListenOptions {
        map: args
            .listen
            .iter()
            .filter(|(gw, _, _)| gw.is_none())
            .map(|(_, port, addr)| (*port, *addr))
            .collect(),
        gateway_map: args
            .listen
            .iter()
            .filter_map(|(gw, port, addr)| Some((GatewayPort::new(gw.clone()?, *port), *addr)))
            .collect(),
        default_ip: args.bind,
        ephemeral: false,
    };
    opts.echo_backends = args.echo_backends;
    opts.plugins = match &args.session_key_file {
        None => plugins,
        Some(path) => match read_session_key(path) {
            Ok(key) => plugins.with_session_key(&key),
            Err(e) => {
                eprintln!("error: --session-key-file {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
    };
    // In file mode clients connect to this process, so a Gateway can have
    // only the addresses it listens on; behind a Kubernetes Service, the
    // Service's addresses are the Gateway's.
    opts.addresses_from_listen = !args.kubernetes;
    // Behind a Kubernetes controller, whose engine writes the statuses,
    // the proxy's engine computes routing only: the echo of each status
    // write is taken without computing (a controller's clock stamps the
    // conditions, so they are rarely the proxy's own to the second).
    opts.routing_only = args.kubernetes;
    if args.kubernetes {
        let grace = Duration::from_secs(args.grace_secs);
        return crate::controller::serve(
            &controller_name,
            &args.kube,
            opts,
            args.limits.serve_options(),
            args.admin,
            grace,
            shutdown_signal(),
        )
        .await;
    }
    let runtime =
        match Runtime::start_with(args.paths.clone(), opts, args.limits.serve_options()).await {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
    // A port another process holds (a second gwcore on the same
    // addresses, say) is refused at start rather than retried in the
    // background: sharing it, or serving without it, would go unnoticed.
    let refused = runtime.proxy().listener_errors();
    if !refused.is_empty() {
        for (port, why) in &refused {
            eprintln!("error: Gateway port {port}: {why}");
        }
        return ExitCode::FAILURE;
    }
    let cfg = runtime.proxy().config();
    if cfg.ports.is_empty() {
        tracing::warn!(
            controller = %controller_name,
            "no Gateway to serve yet: no Gateway of this controller's GatewayClasses has a port"
        );
    }
    let Ok(_admin) = crate::common::start_admin(runtime.proxy(), args.admin).await else {
        return ExitCode::FAILURE;
    };
    runtime
        .run_until(
            Duration::from_millis(args.poll_ms.max(50)),
            Duration::from_secs(args.grace_secs),
            shutdown_signal(),
        )
        .await;
    ExitCode::SUCCESS
}

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
pub(crate) async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

#[cfg(test)]
mod tests {
    use super::read_session_key;

    #[test]
    fn a_session_key_file_is_trimmed_and_needs_16_bytes() {
        let dir = std::env::temp_dir().join(format!("gwcore-session-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let good = dir.join("good");
        std::fs::write(&good, "  0123456789abcdef0123\n").unwrap();
        assert!(read_session_key(&good).is_ok());
        // 15 bytes once the newline is trimmed.
        let short = dir.join("short");
        std::fs::write(&short, "0123456789abcde\n").unwrap();
        let e = read_session_key(&short).unwrap_err();
        assert!(e.contains("16") && e.contains("15"), "{e}");
        let missing = read_session_key(&dir.join("missing")).unwrap_err();
        assert!(!missing.is_empty());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
