//! New HTTPRoute → first 200 from `gwcore serve --kubernetes`, with N
//! routes already on the Gateway (issue 17).
//!
//! Run by `benches/k8s/first200.sh`, which starts the API server and builds
//! the binaries; by hand:
//!
//! ```text
//! KUBECONFIG=... cargo run --release -p gwcore-benches --features k8s --bin k8s-first200 -- \
//!     --gwcore target/release/gwcore --routes 3000 --measure 100
//! ```
//!
//! What it does, in a namespace, GatewayClass and controllerName of its
//! own (so that runs, and other controllers on the same API server, do not
//! meet):
//!
//! 1. creates a Gateway (one HTTP listener), a Service and `--routes` N
//!    HTTPRoutes on it (`--concurrency` creates in flight), each with an
//!    Exact path of its own;
//! 2. starts `gwcore serve --kubernetes` (echo backends, JSON logs at
//!    debug for the controller) and waits until it serves the last route,
//!    then until its status writes are done (the Gateway says N attached
//!    routes and the log has been quiet for `--quiet-ms`);
//! 3. creates `--measure` M new routes one at a time, `--gap-ms` apart,
//!    and from the create call probes the proxy every `--poll-us` (500 µs,
//!    on a thread of its own) until the route's path answers 200; the
//!    last probe that missed it bounds the error (the probe resolution);
//! 4. prints p50/p90/p99/max of create → first 200, of the create call
//!    alone, and per stage from gwcore's log: the API server delivering the
//!    event, the reducer picking it up (behind the run before, then
//!    coalescing), the engine run, publishing, the proxy waking, taking
//!    the State and applying it, and the poll that saw it; also the CPU
//!    time gwcore and the `--pids` processes (the API server, etcd) used
//!    during each sample, gwcore's time runnable without a CPU and its page
//!    faults (/proc), and, for the three slowest samples, all of it;
//! 5. deletes the routes (a thousand per call: the labels the preloaded
//!    ones carry), Gateway, Service and class (the namespace stays: the
//!    1.20 test server has no namespace controller).

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};

/// The probe, the process guard and percentiles, shared with the tests of
/// `gwcore serve --kubernetes`.
#[path = "../../gwcore-k8s/tests/support/serve.rs"]
mod serve;
use serve::{Gwcore, free_port, get, percentile, status_code};

const GROUP: &str = "gateway.networking.k8s.io";

/// The command line.
#[derive(Debug)]
struct Args {
    gwcore: PathBuf,
    routes: usize,
    measure: usize,
    concurrency: usize,
    gap: Duration,
    quiet: Duration,
    log: Option<PathBuf>,
    keep: bool,
    /// Between two probes of a new route.
    poll: Duration,
    /// Other processes whose CPU time each sample reports (the API server
    /// and etcd), by name.
    pids: Vec<(String, u32)>,
}

const USAGE: &str = "usage: k8s-first200 --gwcore PATH [--routes N (0)] [--measure M (100)] \
[--concurrency C (32)] [--gap-ms MS (50)] [--quiet-ms MS (2000)] [--poll-us US (500)] \
[--pids NAME=PID,... (processes whose CPU time each sample reports)] [--log FILE] [--keep]";

fn args() -> Result<Args, String> {
    let mut a = Args {
        gwcore: PathBuf::new(),
        routes: 0,
        measure: 100,
        concurrency: 32,
        gap: Duration::from_millis(50),
        quiet: Duration::from_millis(2000),
        log: None,
        keep: false,
        poll: Duration::from_micros(500),
        pids: Vec::new(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        if flag == "--keep" {
            a.keep = true;
            continue;
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = || {
            value
                .parse::<usize>()
                .map_err(|e| format!("{flag} {value}: {e}"))
        };
        match flag.as_str() {
            "--gwcore" => a.gwcore = value.clone().into(),
            "--routes" => a.routes = number()?,
            "--measure" => a.measure = number()?.max(1),
            "--concurrency" => a.concurrency = number()?.max(1),
            "--gap-ms" => a.gap = Duration::from_millis(number()? as u64),
            "--quiet-ms" => a.quiet = Duration::from_millis(number()? as u64),
            "--poll-us" => a.poll = Duration::from_micros(number()? as u64),
            "--pids" => {
                for item in value.split(',').filter(|i| !i.is_empty()) {
                    let pid = item
                        .split_once('=')
                        .and_then(|(name, pid)| Some((name.to_string(), pid.parse().ok()?)))
                        .ok_or_else(|| format!("--pids {value}: {item:?} is not NAME=PID"))?;
                    a.pids.push(pid);
                }
            }
            "--log" => a.log = Some(value.clone().into()),
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    if a.gwcore.as_os_str().is_empty() {
        return Err(format!("--gwcore is required\n{USAGE}"));
    }
    Ok(a)
}

fn api(
    client: &kube::Client,
    version: &str,
    kind: &str,
    plural: &str,
    ns: Option<&str>,
) -> Api<DynamicObject> {
    let (group, version) = version.rsplit_once('/').unwrap_or(("", version));
    let ar =
        ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural);
    match ns {
        Some(ns) => Api::namespaced_with(client.clone(), ns, &ar),
        None => Api::all_with(client.clone(), &ar),
    }
}

fn object(version: &str, kind: &str, name: &str, data: Value) -> DynamicObject {
    let (group, v) = version.rsplit_once('/').unwrap_or(("", version));
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, v, kind));
    let mut o = DynamicObject::new(name, &ar);
    o.data = data;
    o
}

fn route(path: &str) -> Value {
    json!({"spec": {
        "parentRefs": [{"name": "gw"}],
        "rules": [{"matches": [{"path": {"type": "Exact", "value": path}}],
                   "backendRefs": [{"name": "echo", "port": 8080}]}]}})
}

async fn create(api: &Api<DynamicObject>, o: &DynamicObject) -> Result<(), String> {
    match api.create(&PostParams::default(), o).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(s)) if s.is_already_exists() => Ok(()),
        Err(e) => Err(format!(
            "create {} {}: {e}",
            o.types.as_ref().map_or("", |t| t.kind.as_str()),
            o.metadata.name.as_deref().unwrap_or("")
        )),
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

/// One line of figures: p50/p90/p99/max of `v`, in ms.
fn summary(name: &str, mut v: Vec<Duration>) -> String {
    if v.is_empty() {
        return format!("{name:<34} (not found in the log)");
    }
    v.sort();
    format!(
        "{name:<34} p50 {:>7}  p90 {:>7}  p99 {:>7}  max {:>7}  (n={})",
        ms(percentile(&v, 0.5)),
        ms(percentile(&v, 0.9)),
        ms(percentile(&v, 0.99)),
        ms(v[v.len() - 1]),
        v.len()
    )
}

/// One new route's times, as wall-clock instants (to meet the log's).
struct Sample {
    start: SystemTime,
    created: SystemTime,
    served: SystemTime,
    /// The last probe that did not get the 200 was sent this long before
    /// the 200 was read.
    resolution: Option<Duration>,
    /// What gwcore and the `--pids` processes used from the create call to
    /// the 200, and how busy the machine was (0..1).
    usage: (Vec<ProcUsage>, f64),
}

/// What the log says about one route: when the engine run that took it
/// was published (and how long its parts took), and when the proxy next
/// applied a configuration.
#[derive(Default, Clone)]
struct Stages {
    published: Option<SystemTime>,
    /// From gwcore's watch receiving the run's first event to the reducer
    /// taking it (the reducer busy with the run before).
    queued: Duration,
    waited: Duration,
    lock_wait: Duration,
    engine: Duration,
    publish: Duration,
    applied: Option<SystemTime>,
    /// `gwcore serve`'s part of it.
    swap: Option<Swap>,
}

impl Stages {
    /// The reducer's time on it, from taking the event to publishing.
    fn run(&self) -> Duration {
        self.waited + self.lock_wait + self.engine + self.publish
    }

    /// When gwcore's watch received the event.
    fn received(&self) -> Option<SystemTime> {
        Some(self.published? - self.run() - self.queued)
    }
}

/// One proxy swap, as `gwcore serve` logs it.
#[derive(Default, Clone, Copy)]
struct Swap {
    /// From the State's publication to the serve loop taking it (`None`
    /// from a gwcore that does not log it).
    wake: Option<Duration>,
    /// Taking the State.
    take: Duration,
    /// `Runtime::apply`.
    apply: Duration,
}

fn parse_time(s: &str) -> Option<SystemTime> {
    let ts: jiff::Timestamp = s.parse().ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(ts.as_nanosecond()).ok()?))
}

/// The swaps of the proxy: when each configuration was applied, and
/// when `gwcore serve` logged it with its split.
type Swaps = (Vec<SystemTime>, Vec<(SystemTime, Swap)>);

/// Reads gwcore's JSON log: the engine runs that changed what a Gateway
/// routes, and the proxy's configuration swaps, in order.
fn read_log(log: &str) -> (Vec<(SystemTime, Stages)>, Swaps) {
    let mut runs = Vec::new();
    let mut applied = Vec::new();
    let mut swaps = Vec::new();
    let f = |v: &Value, k: &str| Duration::from_secs_f64(v[k].as_f64().unwrap_or(0.0) / 1000.0);
    for line in log.lines() {
        let Ok(v) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        let Some(at) = v["timestamp"].as_str().and_then(parse_time) else {
            continue;
        };
        let fields = &v["fields"];
        match fields["message"].as_str() {
            Some("engine run") if fields["changed_routing"].as_u64().unwrap_or(0) > 0 => {
                runs.push((
                    at,
                    Stages {
                        published: Some(at),
                        queued: f(fields, "queued_ms"),
                        waited: f(fields, "waited_ms"),
                        lock_wait: f(fields, "lock_wait_ms"),
                        engine: f(fields, "took_ms"),
                        publish: f(fields, "publish_ms"),
                        applied: None,
                        swap: None,
                    },
                ));
            }
            Some("configuration applied") => applied.push(at),
            Some("proxy swap") => swaps.push((
                at,
                Swap {
                    wake: fields.get("wake_ms").map(|_| f(fields, "wake_ms")),
                    take: f(fields, "take_ms"),
                    apply: f(fields, "apply_ms"),
                },
            )),
            _ => {}
        }
    }
    (runs, (applied, swaps))
}

/// The stages of a route created at `start`: the first run changing
/// routing after it (one route at a time: that run took it), and the
/// first swap after that run.
fn stages(runs: &[(SystemTime, Stages)], swaps: &Swaps, start: SystemTime) -> Option<Stages> {
    let (applied, split) = swaps;
    let i = runs.partition_point(|(t, _)| *t < start);
    let (published, mut s) = runs.get(i).cloned()?;
    let j = applied.partition_point(|t| *t < published);
    s.applied = applied.get(j).copied();
    if let Some(at) = s.applied {
        let k = split.partition_point(|(t, _)| *t < at);
        s.swap = split.get(k).map(|(_, swap)| *swap);
    }
    Some(s)
}

/// One sample's time, stage by stage (ms): the API server until gwcore's
/// watch has the event (the create call's own time beside it), the
/// reducer's stages, then the proxy's: waking, taking the State, applying
/// it (and what is left: waiting for the swap before to end), and the
/// poll; then what gwcore and the `--pids` processes used meanwhile.
fn breakdown(s: &Sample, x: &Stages, names: &[&str]) -> String {
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    let mut line = format!(
        "{} ms = create call {}",
        ms(since(s.start, s.served)),
        ms(since(s.start, s.created))
    );
    if let (Some(received), Some(published)) = (x.received(), x.published) {
        line += &format!(
            " / gwcore has the event at {} + queued {} + wait {} + lock {} + engine {} + publish {}",
            ms(since(s.start, received)),
            ms(x.queued),
            ms(x.waited),
            ms(x.lock_wait),
            ms(x.engine),
            ms(x.publish),
        );
        if let Some(applied) = x.applied {
            let to_proxy = since(published, applied);
            let sw = x.swap.unwrap_or_default();
            line += &format!(
                " + proxy {} (wake {}, take {}, apply {}, else {})",
                ms(to_proxy),
                sw.wake.map_or("?".into(), ms),
                ms(sw.take),
                ms(sw.apply),
                ms(to_proxy.saturating_sub(sw.wake.unwrap_or_default() + sw.take + sw.apply)),
            );
            line += &format!(" + poll {}", ms(since(applied, s.served)));
        }
    } else {
        line += " (no engine run found)";
    }
    if let Some(r) = s.resolution {
        line += &format!(" (probe resolution {})", ms(r));
    }
    let (procs, busy) = &s.usage;
    line += " | CPU:";
    for (name, u) in names.iter().zip(procs) {
        line += &format!(" {name} {}", ms(u.cpu));
        if *name == "gwcore" {
            line += &format!(
                " (runnable, no CPU {}; {} page faults)",
                ms(u.runnable),
                u.faults
            );
        }
    }
    line += &format!("; machine {:.0} % busy", busy * 100.0);
    line
}

fn since(a: SystemTime, b: SystemTime) -> Duration {
    b.duration_since(a).unwrap_or_default()
}

/// What a process used, from /proc (Linux): CPU time and time spent
/// runnable but waiting for a CPU, summed over its threads
/// (`/proc/PID/task/*/schedstat`), and its minor page faults
/// (`/proc/PID/stat`, dead threads included).
#[derive(Debug, Default, Clone, Copy)]
struct ProcUsage {
    cpu: Duration,
    runnable: Duration,
    faults: u64,
}

impl ProcUsage {
    fn read(pid: u32) -> ProcUsage {
        let mut u = ProcUsage::default();
        if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
            for t in tasks.flatten() {
                let Ok(s) = std::fs::read_to_string(t.path().join("schedstat")) else {
                    continue;
                };
                let mut f = s.split_whitespace().map(|x| x.parse::<u64>().unwrap_or(0));
                u.cpu += Duration::from_nanos(f.next().unwrap_or(0));
                u.runnable += Duration::from_nanos(f.next().unwrap_or(0));
            }
        }
        // Fields after "(comm) ": state is the 3rd, minflt the 10th.
        u.faults = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                s.rsplit_once(") ")?
                    .1
                    .split_whitespace()
                    .nth(7)?
                    .parse()
                    .ok()
            })
            .unwrap_or(0);
        u
    }

    /// What was used from `self` to `later` (a thread that ended in
    /// between takes its time with it: never below zero).
    fn until(self, later: ProcUsage) -> ProcUsage {
        ProcUsage {
            cpu: later.cpu.saturating_sub(self.cpu),
            runnable: later.runnable.saturating_sub(self.runnable),
            faults: later.faults.saturating_sub(self.faults),
        }
    }
}

/// The machine's CPU ticks from /proc/stat: (busy, all).
fn machine_ticks() -> (u64, u64) {
    let Ok(s) = std::fs::read_to_string("/proc/stat") else {
        return (0, 0);
    };
    let v: Vec<u64> = s
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .skip(1)
        .take(8)
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let all: u64 = v.iter().sum();
    // user nice system idle iowait irq softirq steal
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (all - idle, all)
}

/// gwcore's and the other watched processes' usage, and the machine's
/// ticks, at one moment.
struct Usage {
    procs: Vec<ProcUsage>,
    machine: (u64, u64),
}

impl Usage {
    fn read(pids: &[u32]) -> Usage {
        Usage {
            procs: pids.iter().map(|p| ProcUsage::read(*p)).collect(),
            machine: machine_ticks(),
        }
    }

    /// Per process, what was used from `self` to `later`, and the share
    /// of the machine's CPU time that was busy (any process).
    fn until(&self, later: &Usage) -> (Vec<ProcUsage>, f64) {
        let procs = self
            .procs
            .iter()
            .zip(&later.procs)
            .map(|(a, b)| a.until(*b))
            .collect();
        let busy = later.machine.0.saturating_sub(self.machine.0);
        let all = later.machine.1.saturating_sub(self.machine.1);
        (
            procs,
            if all == 0 {
                0.0
            } else {
                busy as f64 / all as f64
            },
        )
    }
}

/// Probes `path` every `interval` (each on a connection of its own) until
/// it answers 200 or `timeout` passes. Returns when the 200 was read, and
/// when the last probe that did not get it was sent: the route started to
/// be served between the two (the measurement's resolution).
fn poll_until_200(
    port: u16,
    path: &str,
    interval: Duration,
    timeout: Duration,
) -> Option<(SystemTime, Option<SystemTime>)> {
    let t = Instant::now();
    let mut last_miss = None;
    loop {
        let sent = SystemTime::now();
        if status_code(port, path) == Some(200) {
            return Some((SystemTime::now(), last_miss));
        }
        last_miss = Some(sent);
        if t.elapsed() > timeout {
            return None;
        }
        std::thread::sleep(interval);
    }
}

async fn run(a: Args) -> Result<(), String> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| format!("no usable KUBECONFIG: {e}"))?;
    let kubeconfig =
        std::env::var("KUBECONFIG").map_err(|_| "KUBECONFIG is not set".to_string())?;
    let sfx = format!(
        "{:x}",
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
            % 0xff_ffff
    );
    let ns = format!("first200-{sfx}");
    let class = format!("first200-{sfx}");
    let controller = format!("example.com/first200-{sfx}");
    let gv = format!("{GROUP}/v1");

    let namespaces = api(&client, "v1", "Namespace", "namespaces", None);
    let classes = api(&client, &gv, "GatewayClass", "gatewayclasses", None);
    let gateways = api(&client, &gv, "Gateway", "gateways", Some(&ns));
    let services = api(&client, "v1", "Service", "services", Some(&ns));
    let routes = api(&client, &gv, "HTTPRoute", "httproutes", Some(&ns));
    create(&namespaces, &object("v1", "Namespace", &ns, json!({}))).await?;
    create(
        &classes,
        &object(
            &gv,
            "GatewayClass",
            &class,
            json!({"spec": {"controllerName": controller}}),
        ),
    )
    .await?;
    create(
        &gateways,
        &object(
            &gv,
            "Gateway",
            "gw",
            json!({"spec": {
            "gatewayClassName": class,
            "listeners": [{"name": "http", "port": 80, "protocol": "HTTP",
                           "allowedRoutes": {"namespaces": {"from": "Same"}}}]}}),
        ),
    )
    .await?;
    create(
        &services,
        &object(
            "v1",
            "Service",
            "echo",
            json!({"spec": {
            "ports": [{"port": 8080, "protocol": "TCP"}]}}),
        ),
    )
    .await?;

    // Preload.
    let t = Instant::now();
    let mut next = 0usize;
    let mut inflight = tokio::task::JoinSet::new();
    while next < a.routes || !inflight.is_empty() {
        while next < a.routes && inflight.len() < a.concurrency {
            let routes = routes.clone();
            let mut o = object(
                &gv,
                "HTTPRoute",
                &format!("r{next:05}"),
                route(&format!("/r{next}")),
            );
            o.metadata.labels =
                Some([(CHUNK_LABEL.to_string(), (next / CHUNK).to_string())].into());
            inflight.spawn(async move { create(&routes, &o).await });
            next += 1;
        }
        if let Some(r) = inflight.join_next().await {
            r.map_err(|e| e.to_string())??;
        }
    }
    if a.routes > 0 {
        let took = t.elapsed();
        eprintln!(
            "preloaded {} routes in {:.1} s ({:.0}/s, {} in flight)",
            a.routes,
            took.as_secs_f64(),
            a.routes as f64 / took.as_secs_f64(),
            a.concurrency
        );
    }

    // gwcore.
    let port = free_port().map_err(|e| e.to_string())?;
    let log_path = a
        .log
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join(format!("gwcore-first200-{sfx}.log")));
    let log =
        std::fs::File::create(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let started = Instant::now();
    let gwcore = Gwcore(
        Command::new(&a.gwcore)
            .args([
                "serve",
                "--kubernetes",
                "--kubeconfig",
                &kubeconfig,
                "--controller-name",
                &controller,
            ])
            .args([
                "--no-leader-election",
                "--echo-backends",
                "--log-format",
                "json",
            ])
            .args(["--listen", &format!("80=127.0.0.1:{port}")])
            .env(
                "RUST_LOG",
                "warn,gwcore_k8s::controller=debug,gwcore_k8s::writer=debug,gwcore::reload=info,gwcore_cli::controller=debug",
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("{}: {e}", a.gwcore.display()))?,
    );
    let last = if a.routes == 0 {
        None
    } else {
        Some(format!("/r{}", a.routes - 1))
    };
    if let Some(last) = &last {
        wait(
            Duration::from_secs(600),
            &format!("GET {last} → 200"),
            || async { get(port, last).await == Some(200) },
        )
        .await?;
        eprintln!(
            "gwcore serves the last preloaded route after {:.1} s",
            started.elapsed().as_secs_f64()
        );
    } else {
        wait(Duration::from_secs(60), "the proxy's port", || async {
            get(port, "/").await.is_some()
        })
        .await?;
    }
    // Status writes done: the Gateway says N routes, and the log is quiet.
    let gw_attached = || async {
        gateways.get("gw").await.ok().and_then(|g| {
            g.data
                .pointer("/status/listeners/0/attachedRoutes")
                .and_then(Value::as_i64)
        })
    };
    wait(
        Duration::from_secs(600),
        &format!("attachedRoutes = {}", a.routes),
        || async { gw_attached().await == Some(a.routes as i64) },
    )
    .await?;
    let mut size = 0;
    let mut still = Instant::now();
    while still.elapsed() < a.quiet {
        let now = std::fs::metadata(&log_path).map(|m| m.len()).unwrap_or(0);
        if now != size {
            size = now;
            still = Instant::now();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "settled after {:.1} s; measuring {} new routes",
        started.elapsed().as_secs_f64(),
        a.measure
    );

    // Measure.
    let mut samples = Vec::new();
    // gwcore first, then the `--pids` processes.
    let watched: Vec<u32> = std::iter::once(gwcore.0.id())
        .chain(a.pids.iter().map(|(_, p)| *p))
        .collect();
    let names: Vec<&str> = std::iter::once("gwcore")
        .chain(a.pids.iter().map(|(n, _)| n.as_str()))
        .collect();
    for i in 0..a.measure {
        let name = format!("new{i:04}");
        let path = format!("/new{i}");
        let o = object(&gv, "HTTPRoute", &name, route(&path));
        let before = Usage::read(&watched);
        let start = SystemTime::now();
        create(&routes, &o).await?;
        let created = SystemTime::now();
        // On a thread of its own, so that the probes keep their pace
        // whatever the runtime does.
        let (poll, timeout) = (a.poll, Duration::from_secs(30));
        let (served, last_miss) =
            tokio::task::spawn_blocking(move || poll_until_200(port, &path, poll, timeout))
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("route {name} not served after 30 s"))?;
        let usage = before.until(&Usage::read(&watched));
        samples.push(Sample {
            start,
            created,
            served,
            resolution: last_miss.map(|m| since(m, served)),
            usage,
        });
        tokio::time::sleep(a.gap).await;
    }
    // Let the last log lines out.
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(gwcore);

    let text =
        std::fs::read_to_string(&log_path).map_err(|e| format!("{}: {e}", log_path.display()))?;
    let (runs, swaps) = read_log(&text);
    let writes = text.matches("\"status written\"").count();
    let mut total = Vec::new();
    let mut call = Vec::new();
    let mut resolution = Vec::new();
    let (mut to_watch, mut queued, mut waited, mut lock_wait, mut engine, mut publish) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let (mut to_proxy, mut wake, mut take, mut apply, mut to_poll) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut cpu: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
    let (mut runnable, mut faults) = (Vec::new(), Vec::new());
    // The slowest samples, each with its stages, for a look at the tail.
    let mut slow: Vec<(Duration, String)> = Vec::new();
    for s in &samples {
        total.push(since(s.start, s.served));
        call.push(since(s.start, s.created));
        resolution.extend(s.resolution);
        for (v, u) in cpu.iter_mut().zip(&s.usage.0) {
            v.push(u.cpu);
        }
        if let Some(g) = s.usage.0.first() {
            runnable.push(g.runnable);
            faults.push(g.faults);
        }
        let Some(x) = stages(&runs, &swaps, s.start) else {
            slow.push((
                since(s.start, s.served),
                breakdown(s, &Stages::default(), &names),
            ));
            continue;
        };
        slow.push((since(s.start, s.served), breakdown(s, &x, &names)));
        let (Some(received), Some(published)) = (x.received(), x.published) else {
            continue;
        };
        to_watch.push(since(s.start, received));
        queued.push(x.queued);
        waited.push(x.waited);
        lock_wait.push(x.lock_wait);
        engine.push(x.engine);
        publish.push(x.publish);
        if let Some(applied) = x.applied {
            to_proxy.push(since(published, applied));
            to_poll.push(since(applied, s.served));
        }
        if let Some(sw) = x.swap {
            wake.extend(sw.wake);
            take.push(sw.take);
            apply.push(sw.apply);
        }
    }
    println!(
        "new HTTPRoute → first 200, gwcore serve --kubernetes, {} routes preloaded on one Gateway, {} measured {} ms apart",
        a.routes,
        samples.len(),
        a.gap.as_millis()
    );
    println!("{}", summary("create → first 200", total));
    println!("{}", summary("  the create call itself", call));
    println!("{}", summary("  create → gwcore's watch has it", to_watch));
    println!("{}", summary("  reducer: busy with the run before", queued));
    println!("{}", summary("  reducer: coalesce wait", waited));
    println!("{}", summary("  reducer: wait for the lock", lock_wait));
    println!("{}", summary("  reducer: engine run", engine));
    println!("{}", summary("  reducer: publish the State", publish));
    println!("{}", summary("  published → proxy swapped", to_proxy));
    println!("{}", summary("    serve: wake up", wake));
    println!("{}", summary("    serve: take the State", take));
    println!("{}", summary("    serve: Runtime::apply", apply));
    println!("{}", summary("  swapped → first 200 polled", to_poll));
    println!("{}", summary("  probe resolution", resolution));
    for (name, v) in names.iter().zip(cpu) {
        println!("{}", summary(&format!("CPU used by {name} meanwhile"), v));
    }
    println!("{}", summary("  gwcore runnable without a CPU", runnable));
    faults.sort_unstable();
    if !faults.is_empty() {
        let q = |p: f64| faults[((faults.len() as f64 - 1.0) * p).round() as usize];
        println!(
            "{:<34} p50 {:>7}  p90 {:>7}  p99 {:>7}  max {:>7}",
            "  gwcore minor page faults",
            q(0.5),
            q(0.9),
            q(0.99),
            faults[faults.len() - 1]
        );
    }
    slow.sort_by_key(|s| std::cmp::Reverse(s.0));
    for (_, line) in slow.iter().take(3) {
        println!("slowest: {line}");
    }
    println!(
        "status writes logged during the whole run: {writes}; log: {}",
        log_path.display()
    );

    if !a.keep {
        delete_routes(&routes, &a).await?;
        let _ = gateways.delete("gw", &DeleteParams::default()).await;
        let _ = services.delete("echo", &DeleteParams::default()).await;
        let _ = classes.delete(&class, &DeleteParams::default()).await;
        if a.log.is_none() {
            let _ = std::fs::remove_file(&log_path);
        }
    }
    Ok(())
}

/// The label that puts a route in a group of [`CHUNK`] for deleting.
const CHUNK_LABEL: &str = "first200.gwcore.dev/chunk";
/// Routes deleted by one call: the 1.20 API server's deletecollection of
/// 10 000 routes at once exceeds its request deadline.
const CHUNK: usize = 1000;

/// Deletes every route of the run, a chunk (by label) at a time; then
/// anything left (the measured routes and any unlabelled one).
async fn delete_routes(routes: &Api<DynamicObject>, a: &Args) -> Result<(), String> {
    for chunk in 0..a.routes.div_ceil(CHUNK) {
        routes
            .delete_collection(
                &DeleteParams::default(),
                &ListParams::default().labels(&format!("{CHUNK_LABEL}={chunk}")),
            )
            .await
            .map_err(|e| format!("deleting the routes of chunk {chunk}: {e}"))?;
    }
    routes
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await
        .map_err(|e| format!("deleting the routes: {e}"))?;
    Ok(())
}

async fn wait<F, Fut>(timeout: Duration, what: &str, mut check: F) -> Result<(), String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let t = Instant::now();
    while !check().await {
        if t.elapsed() > timeout {
            return Err(format!("timed out after {timeout:?} waiting for {what}"));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    let a = match args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::from(2);
        }
    };
    match run(a).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
