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
//!    and polls the proxy every millisecond from the create call until the
//!    route's path answers 200;
//! 4. prints p50/p90/p99/max of create → first 200, of the create call
//!    alone, and per stage from gwcore's log: the API server delivering the
//!    event and the reducer picking it up, the engine run, publishing, the
//!    proxy building and swapping its configuration, and the poll that saw
//!    it;
//! 5. deletes the routes, Gateway, Service and class (the namespace stays:
//!    the 1.20 test server has no namespace controller).

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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
}

const USAGE: &str = "usage: k8s-first200 --gwcore PATH [--routes N (0)] [--measure M (100)] \
[--concurrency C (32)] [--gap-ms MS (50)] [--quiet-ms MS (2000)] [--log FILE] [--keep]";

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
            "--log" => a.log = Some(value.clone().into()),
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        }
    }
    if a.gwcore.as_os_str().is_empty() {
        return Err(format!("--gwcore is required\n{USAGE}"));
    }
    Ok(a)
}

/// The `gwcore` process; killed when dropped.
struct Gwcore(Child);

impl Drop for Gwcore {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// The status code of `GET path` on 127.0.0.1:port, or `None` when the
/// port does not answer.
async fn get(port: u16, path: &str) -> Option<u16> {
    let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .ok()?;
    s.set_nodelay(true).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nhost: example.com\r\nconnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.ok()?;
    let mut buf = [0u8; 32];
    let mut n = 0;
    while n < 12 {
        let k = s.read(&mut buf[n..]).await.ok()?;
        if k == 0 {
            break;
        }
        n += k;
    }
    std::str::from_utf8(&buf[..n])
        .ok()?
        .get(9..12)?
        .parse()
        .ok()
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

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
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
}

/// What the log says about one route: when the engine run that took it
/// was published (and how long its parts took), and when the proxy next
/// applied a configuration.
#[derive(Default, Clone)]
struct Stages {
    published: Option<SystemTime>,
    waited: Duration,
    lock_wait: Duration,
    engine: Duration,
    publish: Duration,
    applied: Option<SystemTime>,
    /// `gwcore serve`'s split of the swap: taking the State, then
    /// `Runtime::apply`.
    swap: Option<(Duration, Duration)>,
}

fn parse_time(s: &str) -> Option<SystemTime> {
    let ts: jiff::Timestamp = s.parse().ok()?;
    Some(SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(ts.as_nanosecond()).ok()?))
}

/// The swaps of the proxy: when each configuration was applied, and
/// when `gwcore serve` logged it with its split (take, apply).
type Swaps = (Vec<SystemTime>, Vec<(SystemTime, Duration, Duration)>);

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
            Some("proxy swap") => swaps.push((at, f(fields, "take_ms"), f(fields, "apply_ms"))),
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
        let k = split.partition_point(|(t, _, _)| *t < at);
        s.swap = split.get(k).map(|(_, take, apply)| (*take, *apply));
    }
    Some(s)
}

/// One sample's time, stage by stage (ms): the create call, the rest of
/// the way to the reducer, the reducer's stages, then the proxy's: waking
/// (or waiting for the swap before to end), taking the State, applying it,
/// and the poll.
fn breakdown(s: &Sample, x: &Stages) -> String {
    let ms = |d: Duration| format!("{:.1}", d.as_secs_f64() * 1000.0);
    let Some(published) = x.published else {
        return format!("{} ms (no engine run found)", ms(since(s.start, s.served)));
    };
    let run = x.waited + x.lock_wait + x.engine + x.publish;
    let received = since(s.start, published).saturating_sub(run);
    let mut line = format!(
        "{} ms = create {} + to reducer {} + wait {} + lock {} + engine {} + publish {}",
        ms(since(s.start, s.served)),
        ms(since(s.start, s.created)),
        ms(received.saturating_sub(since(s.start, s.created))),
        ms(x.waited),
        ms(x.lock_wait),
        ms(x.engine),
        ms(x.publish),
    );
    if let Some(applied) = x.applied {
        let (take, apply) = x.swap.unwrap_or_default();
        let to_proxy = since(published, applied);
        line += &format!(
            " + proxy {} (wake/queue {}, take {}, apply {}) + poll {}",
            ms(to_proxy),
            ms(to_proxy.saturating_sub(take + apply)),
            ms(take),
            ms(apply),
            ms(since(applied, s.served)),
        );
    }
    line
}

fn since(a: SystemTime, b: SystemTime) -> Duration {
    b.duration_since(a).unwrap_or_default()
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
            let o = object(
                &gv,
                "HTTPRoute",
                &format!("r{next:05}"),
                route(&format!("/r{next}")),
            );
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
    for i in 0..a.measure {
        let name = format!("new{i:04}");
        let path = format!("/new{i}");
        let o = object(&gv, "HTTPRoute", &name, route(&path));
        let start = SystemTime::now();
        let t0 = Instant::now();
        create(&routes, &o).await?;
        let created = SystemTime::now();
        loop {
            if get(port, &path).await == Some(200) {
                break;
            }
            if t0.elapsed() > Duration::from_secs(30) {
                return Err(format!("route {name} not served after 30 s"));
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let served = SystemTime::now();
        samples.push(Sample {
            start,
            created,
            served,
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
    let (mut to_reducer, mut waited, mut engine, mut publish, mut to_proxy, mut to_poll) = (
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
        Vec::new(),
    );
    let (mut take, mut apply, mut lock_wait) = (Vec::new(), Vec::new(), Vec::new());
    // The slowest samples, each with its stages, for a look at the tail.
    let mut slow: Vec<(Duration, String)> = Vec::new();
    for s in &samples {
        total.push(since(s.start, s.served));
        call.push(since(s.start, s.created));
        let Some(x) = stages(&runs, &swaps, s.start) else {
            continue;
        };
        slow.push((since(s.start, s.served), breakdown(s, &x)));
        let Some(published) = x.published else {
            continue;
        };
        let run = x.waited + x.lock_wait + x.engine + x.publish;
        // Received by the reducer = published − (waited + lock wait +
        // engine + publish).
        to_reducer.push(since(s.start, published).saturating_sub(run));
        waited.push(x.waited);
        lock_wait.push(x.lock_wait);
        engine.push(x.engine);
        publish.push(x.publish);
        if let Some(applied) = x.applied {
            to_proxy.push(since(published, applied));
            to_poll.push(since(applied, s.served));
        }
        if let Some((t, a)) = x.swap {
            take.push(t);
            apply.push(a);
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
    println!(
        "{}",
        summary("  create → reducer has the event", to_reducer)
    );
    println!("{}", summary("  reducer: queue/coalesce wait", waited));
    println!("{}", summary("  reducer: wait for the lock", lock_wait));
    println!("{}", summary("  reducer: engine run", engine));
    println!("{}", summary("  reducer: publish the State", publish));
    println!("{}", summary("  published → proxy swapped", to_proxy));
    println!("{}", summary("    serve: take the State", take));
    println!("{}", summary("    serve: Runtime::apply", apply));
    println!("{}", summary("  swapped → first 200 polled", to_poll));
    slow.sort_by_key(|s| std::cmp::Reverse(s.0));
    for (_, line) in slow.iter().take(3) {
        println!("slowest: {line}");
    }
    println!(
        "status writes logged during the whole run: {writes}; log: {}",
        log_path.display()
    );

    if !a.keep {
        routes
            .delete_collection(&DeleteParams::default(), &ListParams::default())
            .await
            .map_err(|e| format!("deleting the routes: {e}"))?;
        let _ = gateways.delete("gw", &DeleteParams::default()).await;
        let _ = services.delete("echo", &DeleteParams::default()).await;
        let _ = classes.delete(&class, &DeleteParams::default()).await;
        if a.log.is_none() {
            let _ = std::fs::remove_file(&log_path);
        }
    }
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
