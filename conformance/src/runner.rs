//! Running vectors: set up the simulated cluster, play the steps, check.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use gwcore::engine::{ComputeOptions, Computed, compute};
use gwcore::status::GatewayClassStatus;
use gwcore::status::GatewayStatusAddress;
use serde::Serialize;
use serde_json::{Value, json};

use crate::certs::{CertFactory, upstream_table};
use crate::check::{CheckKind, CheckResult, Outcome, StepChecks};
use crate::cluster::{Cluster, StoreKey};
use crate::requests::{EngineView, judge};
use crate::vector::{Generated, Patch, Step, Vector, parse_vector};

/// The GatewayClass name the runner creates for upstream vectors.
pub const GATEWAY_CLASS_NAME: &str = "gateway-conformance";

/// Our controllerName for upstream vectors, unless told otherwise.
pub const DEFAULT_CONTROLLER_NAME: &str = "gateway.networking.k8s.io/gateway-controller";

/// How many times the engine runs per step: a controller reacts to its own
/// status writes, so the engine runs again on the statuses it wrote, and
/// that second computation must change nothing (issue 2: "computing twice
/// changes nothing").
const MAX_RECONCILES: usize = 2;

/// Where vectors are judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The engine in a simulated cluster; requests through the routing table.
    Engine,
    /// A real proxy on loopback.
    Wire,
}

/// What a run needs besides the vectors.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Engine or wire.
    pub mode: Mode,
    /// Folders searched for manifests after the vector's own `manifests/`.
    pub manifest_dirs: Vec<PathBuf>,
    /// controllerName for upstream vectors (ours acts as it).
    pub controller_name: String,
}

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            mode: Mode::Engine,
            manifest_dirs: Vec::new(),
            controller_name: DEFAULT_CONTROLLER_NAME.to_string(),
        }
    }
}

/// A vector's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    /// Every check that ran held, and at least one ran.
    Pass,
    /// A check failed, or the vector could not be played.
    Fail,
    /// Nothing could be judged (features, or every check needs a data plane).
    Skip,
}

/// The result of one vector.
#[derive(Debug, Clone, Serialize)]
pub struct VectorResult {
    /// The vector's name (the file name when it cannot be read).
    pub name: String,
    /// The vector file.
    pub file: PathBuf,
    /// The verdict.
    pub verdict: Verdict,
    /// The first failing check, or why the vector was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Every check, run or not.
    pub checks: Vec<CheckResult>,
}

impl VectorResult {
    /// The line printed for this vector.
    pub fn line(&self) -> String {
        match (self.verdict, &self.message) {
            (Verdict::Pass, _) => format!("PASS {}", self.name),
            (Verdict::Fail, m) => format!("FAIL {}: {}", self.name, m.as_deref().unwrap_or("")),
            (Verdict::Skip, m) => format!("SKIP {}: {}", self.name, m.as_deref().unwrap_or("")),
        }
    }
}

/// Passed / total counts of one kind of check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Tally {
    /// Checks that held.
    pub passed: usize,
    /// Checks that failed.
    pub failed: usize,
    /// Checks that could not run.
    pub not_run: usize,
    /// All checks, run or not.
    pub total: usize,
}

/// The results of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// The mode.
    pub mode: Mode,
    /// One result per vector, in the order run.
    pub vectors: Vec<VectorResult>,
}

impl Report {
    /// Tally of the checks of one kind.
    pub fn tally(&self, kind: CheckKind) -> Tally {
        let mut t = Tally::default();
        for c in self.vectors.iter().flat_map(|v| &v.checks) {
            if c.kind != kind {
                continue;
            }
            t.total += 1;
            match c.outcome {
                Outcome::Pass => t.passed += 1,
                Outcome::Fail(_) => t.failed += 1,
                Outcome::NotRun(_) => t.not_run += 1,
            }
        }
        t
    }

    /// Number of vectors with this verdict.
    pub fn count(&self, verdict: Verdict) -> usize {
        self.vectors.iter().filter(|v| v.verdict == verdict).count()
    }

    /// The lines the command prints: one per vector, then the totals.
    pub fn lines(&self) -> Vec<String> {
        let mut out: Vec<String> = self.vectors.iter().map(VectorResult::line).collect();
        let s = self.tally(CheckKind::Status);
        let r = self.tally(CheckKind::Request);
        out.push(format!("status checks: {}/{} passed", s.passed, s.total));
        out.push(format!("request checks: {}/{} passed", r.passed, r.total));
        out.push(format!(
            "{} passed, {} failed, {} skipped",
            self.count(Verdict::Pass),
            self.count(Verdict::Fail),
            self.count(Verdict::Skip)
        ));
        out
    }

    /// The report as JSON (per vector and per check, with the totals).
    pub fn to_json(&self) -> Value {
        json!({
            "mode": self.mode,
            "vectors": self.vectors,
            "statusChecks": self.tally(CheckKind::Status),
            "requestChecks": self.tally(CheckKind::Request),
            "passed": self.count(Verdict::Pass),
            "failed": self.count(Verdict::Fail),
            "skipped": self.count(Verdict::Skip),
        })
    }
}

/// Vector files under `paths` (files as given, folders searched for
/// `*.yaml` / `*.yml`, recursively, in name order, skipping `manifests/`
/// folders so that a corpus root can be given).
pub fn vector_files(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| format!("{}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n == "manifests") {
                    continue;
                }
                walk(&p, out)?;
            } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out)?;
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(format!("{}: no such file or folder", p.display()));
        }
    }
    Ok(out)
}

/// Runs every vector under `paths`. Wire mode runs several vectors at once
/// (each has its own proxy and backends on ephemeral ports), on
/// [`crate::wire::parallelism`] threads; the report keeps the file order.
pub fn run_paths(paths: &[PathBuf], opts: &RunOptions) -> Result<Report, String> {
    let files = vector_files(paths)?;
    let vectors = match opts.mode {
        Mode::Engine => {
            let mut runner = Runner::new(opts.clone());
            files.iter().map(|f| runner.run_file(f)).collect()
        }
        Mode::Wire => run_parallel(&files, opts, crate::wire::parallelism()),
    };
    Ok(Report {
        mode: opts.mode,
        vectors,
    })
}

/// Runs `files` on `threads` threads, each with its own [`Runner`]; the
/// results come back in the order of `files`.
fn run_parallel(files: &[PathBuf], opts: &RunOptions, threads: usize) -> Vec<VectorResult> {
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<Option<VectorResult>>> = Mutex::new(vec![None; files.len()]);
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut runner = Runner::new(opts.clone());
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(f) = files.get(i) else { break };
                    let r = runner.run_file(f);
                    // Only these stores touch the vector; a panic elsewhere
                    // cannot leave it half-written.
                    results.lock().unwrap_or_else(|e| e.into_inner())[i] = Some(r);
                }
            });
        }
    });
    results
        .into_inner()
        .unwrap_or_else(|e| e.into_inner())
        .into_iter()
        .zip(files)
        .map(|(r, f)| {
            r.unwrap_or_else(|| VectorResult {
                name: f
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                file: f.clone(),
                verdict: Verdict::Fail,
                message: Some("the runner thread stopped before this vector".to_string()),
                checks: Vec::new(),
            })
        })
        .collect()
}

/// How a step's requests are judged once the step is played and the
/// statuses settled: by the routing table (engine mode) or for real on a
/// proxy (wire mode).
pub(crate) trait Judge {
    /// The request checks of step `n`.
    fn judge_step(&mut self, n: usize, step: &Step, at: StepState<'_>) -> Vec<CheckResult>;
}

/// What a step left behind, for its requests.
#[derive(Debug, Clone, Copy)]
pub(crate) struct StepState<'a> {
    /// The simulated cluster, statuses written back.
    pub(crate) cluster: &'a Cluster,
    /// The engine's output for it.
    pub(crate) computed: &'a Computed,
    /// The controllerName gwcore acts as.
    pub(crate) controller: &'a str,
}

/// Engine mode: each request through the routing table.
struct EngineJudge;

impl Judge for EngineJudge {
    fn judge_step(&mut self, n: usize, step: &Step, at: StepState<'_>) -> Vec<CheckResult> {
        let view = EngineView {
            computed: at.computed,
            cluster: at.cluster,
        };
        step.requests
            .iter()
            .map(|r| CheckResult {
                step: n,
                kind: CheckKind::Request,
                check: request_name(r),
                outcome: judge(r, view),
            })
            .collect()
    }
}

/// Runs vectors one after another, sharing generated certificates.
#[derive(Debug)]
pub struct Runner {
    opts: RunOptions,
    certs: CertFactory,
}

/// Why a vector stopped before its checks could all run.
struct Abort {
    step: usize,
    message: String,
}

impl Runner {
    /// A runner.
    pub fn new(opts: RunOptions) -> Self {
        Runner {
            opts,
            certs: CertFactory::new(),
        }
    }

    /// Runs one vector file.
    pub fn run_file(&mut self, file: &Path) -> VectorResult {
        let fallback_name = file
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        let fail = |name: String, message: String| VectorResult {
            name,
            file: file.to_path_buf(),
            verdict: Verdict::Fail,
            message: Some(message),
            checks: Vec::new(),
        };
        let text = match std::fs::read_to_string(file) {
            Ok(t) => t,
            Err(e) => {
                return fail(
                    fallback_name,
                    format!("cannot read {}: {e}", file.display()),
                );
            }
        };
        let text = addresses(&text);
        let vector = match parse_vector(&text) {
            Ok(v) => v,
            Err(e) => return fail(fallback_name, format!("not a vector: {e}")),
        };
        self.run_vector(&vector, file)
    }

    /// Runs one vector read from `file` (used to find its manifests).
    pub fn run_vector(&mut self, vector: &Vector, file: &Path) -> VectorResult {
        let mut checks: Vec<CheckResult> = Vec::new();
        let result = match self.opts.mode {
            Mode::Engine => self.play(vector, file, &mut checks, &mut EngineJudge),
            Mode::Wire => {
                let mut wire = crate::wire::WireJudge::new();
                let r = self.play(vector, file, &mut checks, &mut wire);
                wire.stop();
                r
            }
        };
        let mut skip = None;
        let mut abort = None;
        match result {
            Ok(s) => skip = s,
            Err(a) => abort = Some(a),
        }
        // Everything not reached counts, as not run.
        let reached = checks.iter().map(|c| c.step).max().unwrap_or(0);
        let why_not = match (&abort, &skip) {
            (Some(a), _) => format!("not reached: {}", a.message),
            (None, Some(s)) => s.clone(),
            (None, None) => String::new(),
        };
        for (i, step) in vector.steps.iter().enumerate() {
            let n = i + 1;
            if n <= reached {
                continue;
            }
            checks.extend(unrun_checks(n, step, &why_not));
        }
        let first_fail = checks.iter().find_map(|c| match &c.outcome {
            Outcome::Fail(d) => Some(format!("step {}: {}: {d}", c.step, c.check)),
            _ => None,
        });
        let (verdict, message) = if let Some(a) = abort {
            let where_ = if a.step == 0 {
                "setup".to_string()
            } else {
                format!("step {}", a.step)
            };
            (Verdict::Fail, Some(format!("{where_}: {}", a.message)))
        } else if let Some(f) = first_fail {
            (Verdict::Fail, Some(f))
        } else if let Some(s) = skip {
            (Verdict::Skip, Some(s))
        } else if !checks.iter().any(|c| c.outcome == Outcome::Pass) {
            let why = checks
                .iter()
                .find_map(|c| match &c.outcome {
                    Outcome::NotRun(w) => Some(w.clone()),
                    _ => None,
                })
                .unwrap_or_else(|| "the vector has no checks".to_string());
            let mode = match self.opts.mode {
                Mode::Engine => "engine",
                Mode::Wire => "wire",
            };
            (
                Verdict::Skip,
                Some(format!("no check can run in {mode} mode: {why}")),
            )
        } else {
            (Verdict::Pass, None)
        };
        VectorResult {
            name: vector.name.clone(),
            file: file.to_path_buf(),
            verdict,
            message,
            checks,
        }
    }

    /// Plays a vector in the simulated cluster. `Ok(Some(why))` = skipped
    /// for its features before any step.
    fn play(
        &mut self,
        vector: &Vector,
        file: &Path,
        checks: &mut Vec<CheckResult>,
        requests: &mut dyn Judge,
    ) -> Result<Option<String>, Abort> {
        let setup = |message: String| Abort { step: 0, message };
        let upstream = vector.controller_name.is_none();
        let controller = vector
            .controller_name
            .clone()
            .unwrap_or_else(|| self.opts.controller_name.clone());
        let mut cluster = Cluster::new();
        if upstream {
            for g in generated_objects(vector) {
                let obj = self.certs.object(&g).map_err(setup)?;
                cluster.create(obj).map_err(setup)?;
            }
            cluster
                .create(json!({
                    "apiVersion": "gateway.networking.k8s.io/v1",
                    "kind": "GatewayClass",
                    "metadata": {"name": GATEWAY_CLASS_NAME},
                    "spec": {"controllerName": controller},
                }))
                .map_err(setup)?;
        }
        let subst = Substitution {
            upstream,
            controller: &controller,
        };
        for m in &vector.manifests {
            self.apply_file(&mut cluster, file, m, &subst)
                .map_err(setup)?;
        }
        let now = cluster.now();
        let computed = reconcile(&mut cluster, &controller, &now).map_err(setup)?;
        if let Some(why) = feature_skip(vector, &cluster, &controller) {
            return Ok(Some(why));
        }
        drop(computed);
        cluster.stamp_new_objects();
        for (i, step) in vector.steps.iter().enumerate() {
            let n = i + 1;
            let abort = |message: String| Abort { step: n, message };
            cluster.tick(1);
            for m in &step.apply {
                self.apply_file(&mut cluster, file, m, &subst)
                    .map_err(abort)?;
            }
            for obj in &step.create {
                let obj = copy_of(obj, &cluster).map_err(abort)?;
                cluster.create(obj).map_err(abort)?;
            }
            let mut generation_checks = Vec::new();
            for p in &step.patch {
                let key = StoreKey::new(&p.kind, p.namespace.as_deref(), &p.name);
                let before = cluster.generation(&key);
                patch(&mut cluster, &key, p).map_err(abort)?;
                if p.expect_generation_change {
                    let after = cluster.generation(&key);
                    let outcome = if before != after {
                        Outcome::Pass
                    } else {
                        Outcome::Fail(format!("generation stayed {before:?}"))
                    };
                    generation_checks.push(CheckResult {
                        step: n,
                        kind: CheckKind::Status,
                        check: format!("{key}: generation changes"),
                        outcome,
                    });
                }
            }
            for d in &step.delete {
                let key = StoreKey::new(&d.kind, d.namespace.as_deref(), &d.name);
                cluster.delete(&key).map_err(abort)?;
            }
            let now = cluster.now();
            let computed = reconcile(&mut cluster, &controller, &now).map_err(abort)?;
            checks.extend(generation_checks);
            let mut sc = StepChecks {
                step: n,
                cluster: &cluster,
                controller: &controller,
                out: Vec::new(),
            };
            sc.run(step);
            checks.extend(sc.out);
            let at = StepState {
                cluster: &cluster,
                computed: &computed,
                controller: &controller,
            };
            checks.extend(requests.judge_step(n, step, at));
        }
        Ok(None)
    }

    /// Applies one manifest file, found beside the vector's folder or in a
    /// `--manifests` folder.
    fn apply_file(
        &self,
        cluster: &mut Cluster,
        vector_file: &Path,
        name: &str,
        subst: &Substitution<'_>,
    ) -> Result<(), String> {
        let path = self.find_manifest(vector_file, name)?;
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        for doc in documents(&path, &subst.text(&text))? {
            cluster.apply(subst.object(doc))?;
        }
        Ok(())
    }

    fn find_manifest(&self, vector_file: &Path, name: &str) -> Result<PathBuf, String> {
        let mut tried = Vec::new();
        let beside = vector_file
            .parent()
            .and_then(Path::parent)
            .map(|root| root.join("manifests"));
        for dir in beside.iter().chain(self.opts.manifest_dirs.iter()) {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(p);
            }
            tried.push(dir.display().to_string());
        }
        Err(format!("manifest {name} not found in {}", tried.join(", ")))
    }
}

/// The placeholder substitution and the applier's overrides of FORMAT.md.
struct Substitution<'a> {
    upstream: bool,
    controller: &'a str,
}

impl Substitution<'_> {
    /// Text placeholders: `{GATEWAY_CLASS_NAME}` (upstream vectors only)
    /// and the controller name.
    fn text(&self, text: &str) -> String {
        let mut t = addresses(text)
            .replace("{GATEWAY_CONTROLLER_NAME}", self.controller)
            .replace("{CONTROLLER_NAME}", self.controller);
        if self.upstream {
            t = t.replace("{GATEWAY_CLASS_NAME}", GATEWAY_CLASS_NAME);
        }
        t
    }

    /// Upstream's applier overwrites every Gateway's
    /// `spec.gatewayClassName` and every GatewayClass's
    /// `spec.controllerName`; our scenarios are applied as written.
    fn object(&self, mut v: Value) -> Value {
        if !self.upstream {
            return v;
        }
        let kind = v
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        if let Some(Value::Object(spec)) = v.get_mut("spec") {
            match kind.as_str() {
                "Gateway" => {
                    spec.insert("gatewayClassName".into(), json!(GATEWAY_CLASS_NAME));
                }
                "GatewayClass" => {
                    spec.insert("controllerName".into(), json!(self.controller));
                }
                _ => {}
            }
        }
        v
    }
}

/// The documents of a YAML stream as JSON, `kind: *List` flattened.
fn documents(path: &Path, text: &str) -> Result<Vec<Value>, String> {
    use serde::Deserialize as _;
    let mut out = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let v =
            Value::deserialize(doc).map_err(|e| format!("{} document {i}: {e}", path.display()))?;
        flatten(v, &mut out);
    }
    Ok(out)
}

fn flatten(v: Value, out: &mut Vec<Value>) {
    match v {
        Value::Null => {}
        Value::Object(mut m)
            if m.get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List"))
                && m.contains_key("items") =>
        {
            if let Some(Value::Array(items)) = m.remove("items") {
                for i in items {
                    flatten(i, out);
                }
            }
        }
        other => out.push(other),
    }
}

/// FORMAT.md's table plus the vector's own `generated` entries (which win).
fn generated_objects(vector: &Vector) -> Vec<Generated> {
    let mut all = upstream_table();
    for g in &vector.generated {
        all.retain(|t| !(t.kind == g.kind && t.namespace == g.namespace && t.name == g.name));
        all.push(g.clone());
    }
    // CAs first: a signed certificate needs its CA made (any order works,
    // the factory makes CAs on demand, but keep creation order stable).
    all.sort_by_key(|g| g.cert != "ca");
    all
}

/// Resolves `{COPY_OF:Kind/ns/name:key}` in every string of `v`.
fn copy_of(v: &Value, cluster: &Cluster) -> Result<Value, String> {
    match v {
        Value::String(s) => {
            let mut s = s.clone();
            while let Some(start) = s.find("{COPY_OF:") {
                let end = s[start..]
                    .find('}')
                    .map(|e| start + e)
                    .ok_or_else(|| format!("unterminated placeholder in {s:?}"))?;
                let inner = &s[start + "{COPY_OF:".len()..end];
                let (obj, key) = inner
                    .rsplit_once(':')
                    .ok_or_else(|| format!("bad placeholder {inner:?}"))?;
                let mut parts = obj.splitn(3, '/');
                let (Some(kind), Some(ns), Some(name)) = (parts.next(), parts.next(), parts.next())
                else {
                    return Err(format!("bad placeholder {inner:?}"));
                };
                let skey = StoreKey::new(kind, Some(ns), name);
                let value = cluster
                    .get(&skey)
                    .and_then(|o| o.get("data"))
                    .and_then(|d| d.get(key))
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("{{COPY_OF:{inner}}}: {skey} has no data key {key}"))?
                    .to_string();
                s.replace_range(start..=end, &value);
            }
            Ok(Value::String(s))
        }
        Value::Array(a) => a
            .iter()
            .map(|x| copy_of(x, cluster))
            .collect::<Result<_, _>>()
            .map(Value::Array),
        Value::Object(m) => {
            let mut out = serde_json::Map::new();
            for (k, x) in m {
                out.insert(k.clone(), copy_of(x, cluster)?);
            }
            Ok(Value::Object(out))
        }
        other => Ok(other.clone()),
    }
}

/// Applies one `patch` entry.
fn patch(cluster: &mut Cluster, key: &StoreKey, p: &Patch) -> Result<(), String> {
    let current = cluster
        .get(key)
        .cloned()
        .ok_or_else(|| format!("patch {key}: not found"))?;
    let mut merges: Vec<Value> = Vec::new();
    if let Some(m) = &p.merge {
        merges.push(copy_of(m, cluster)?);
    }
    let listeners = || -> Vec<Value> {
        current
            .pointer("/spec/listeners")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
    };
    if let Some(add) = &p.append_listeners {
        let mut l = listeners();
        l.extend(add.iter().cloned());
        merges.push(json!({"spec": {"listeners": l}}));
    }
    if let Some(keep) = &p.keep_listeners {
        let l: Vec<Value> = listeners()
            .into_iter()
            .filter(|x| {
                x.get("name")
                    .and_then(Value::as_str)
                    .is_some_and(|n| keep.iter().any(|k| k == n))
            })
            .collect();
        merges.push(json!({"spec": {"listeners": l}}));
    }
    if let Some(drop) = &p.remove_addresses {
        let a: Vec<Value> = current
            .pointer("/spec/addresses")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .filter(|x| {
                !x.get("value")
                    .and_then(Value::as_str)
                    .is_some_and(|v| drop.iter().any(|d| d == v))
            })
            .collect();
        merges.push(json!({"spec": {"addresses": a}}));
    }
    if let Some(s) = &p.set_backend_ref {
        let mut rules = current
            .pointer("/spec/rules")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let br = rules
            .get_mut(s.rule)
            .and_then(|r| r.get_mut("backendRefs"))
            .and_then(|b| b.get_mut(s.backend_ref))
            .and_then(Value::as_object_mut)
            .ok_or_else(|| {
                format!(
                    "patch {key}: no spec.rules[{}].backendRefs[{}]",
                    s.rule, s.backend_ref
                )
            })?;
        br.insert("name".into(), json!(s.name));
        merges.push(json!({"spec": {"rules": rules}}));
    }
    if let Some(e) = &p.set_endpoints_from
        && let Some(m) = endpoints_from(cluster, e)?
    {
        merges.push(m);
    }
    for m in merges {
        cluster
            .merge(key, &m)
            .map_err(|e| format!("patch {key}: {e}"))?;
    }
    Ok(())
}

/// `setEndpointsFrom`: one ready endpoint per pod of the Deployment. The
/// simulated cluster is single-stack IPv4: its pods get addresses in
/// 10.244.0.0/16 (made up, nothing is sent to them), and an IPv6 slice is
/// left unpatched, as upstream leaves slices with no matching pod IP.
fn endpoints_from(
    cluster: &Cluster,
    e: &crate::vector::SetEndpointsFrom,
) -> Result<Option<Value>, String> {
    let (ns, name) = e.deployment.split_once('/').ok_or_else(|| {
        format!(
            "setEndpointsFrom: deployment {:?} is not namespace/name",
            e.deployment
        )
    })?;
    let key = StoreKey::new("Deployment", Some(ns), name);
    let deployment = cluster
        .get(&key)
        .ok_or_else(|| format!("setEndpointsFrom: {key} not found"))?;
    if e.address_family != "IPv4" {
        return Ok(None);
    }
    let index = cluster
        .iter()
        .filter(|(k, _)| k.kind == "Deployment")
        .position(|(k, _)| *k == key)
        .unwrap_or(0);
    let replicas = deployment
        .pointer("/spec/replicas")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let endpoints: Vec<Value> = (0..replicas)
        .map(|r| {
            json!({
                "addresses": [format!("10.244.{}.{}", index % 256, r + 1)],
                "conditions": {"ready": true, "serving": true},
                "targetRef": {"kind": "Pod", "namespace": ns, "name": format!("{name}-0-{r}")},
            })
        })
        .collect();
    Ok(Some(json!({"endpoints": endpoints})))
}

/// The address the simulated deployment serves its Gateways on: engine mode
/// plays a data plane listening on loopback, as wire mode does for real.
const GATEWAY_ADDRESS: &str = "127.0.0.1";

/// An address the data plane serves Gateways on (`{USABLE_ADDRESS}`).
const USABLE_ADDRESS: &str = GATEWAY_ADDRESS;

/// An address it cannot serve (`{UNUSABLE_ADDRESS}`): TEST-NET-1, never
/// assigned to a host.
const UNUSABLE_ADDRESS: &str = "192.0.2.1";

/// Fills in the address placeholders of a vector or manifest: FORMAT.md's
/// `{USABLE_ADDRESS}` / `{UNUSABLE_ADDRESS}`, and the values upstream's
/// applier replaces in a Gateway's `spec.addresses`
/// (`PLACEHOLDER_USABLE_ADDRS` / `PLACEHOLDER_UNUSABLE_ADDRS`; the runner
/// supplies one address of each).
fn addresses(text: &str) -> String {
    if !text.contains("ADDRESS}") && !text.contains("PLACEHOLDER_") {
        return text.to_owned();
    }
    text.replace("{USABLE_ADDRESS}", USABLE_ADDRESS)
        .replace("{UNUSABLE_ADDRESS}", UNUSABLE_ADDRESS)
        .replace("PLACEHOLDER_USABLE_ADDRS", USABLE_ADDRESS)
        .replace("PLACEHOLDER_UNUSABLE_ADDRS", UNUSABLE_ADDRESS)
}

/// Runs the engine until its statuses settle, writing them back.
fn reconcile(cluster: &mut Cluster, controller: &str, now: &str) -> Result<Computed, String> {
    let opts = ComputeOptions::new(controller, now)
        .with_addresses(vec![GatewayStatusAddress {
            type_: Some("IPAddress".into()),
            value: GATEWAY_ADDRESS.into(),
        }])
        .with_usable_addresses([GATEWAY_ADDRESS]);
    for _ in 0..MAX_RECONCILES {
        let (snapshot, diags) = cluster.snapshot();
        if let Some(d) = diags.first() {
            return Err(format!("stored object no longer loads: {d}"));
        }
        let computed = compute(&snapshot, &opts);
        if !cluster.write_statuses(&computed)? {
            return Ok(computed);
        }
    }
    Err(format!(
        "the engine is not idempotent: statuses still changed on computation {MAX_RECONCILES} at the same time"
    ))
}

/// Features our GatewayClasses declare in `status.supportedFeatures`.
fn supported_features(cluster: &Cluster, controller: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for (key, v) in cluster.iter() {
        if key.kind != "GatewayClass"
            || v.pointer("/spec/controllerName").and_then(Value::as_str) != Some(controller)
        {
            continue;
        }
        if let Some(s) = v.get("status")
            && let Ok(st) = serde_json::from_value::<GatewayClassStatus>(s.clone())
        {
            out.extend(st.supported_features.into_iter().map(|f| f.name));
        }
    }
    out
}

/// `skipIfFeatures` / `runIfFeatures`, judged against the features our
/// GatewayClass declares. While it declares none, every vector runs.
fn feature_skip(vector: &Vector, cluster: &Cluster, controller: &str) -> Option<String> {
    let supported = supported_features(cluster, controller);
    if supported.is_empty() {
        return None;
    }
    if let Some(f) = vector
        .skip_if_features
        .iter()
        .find(|f| supported.contains(*f))
    {
        return Some(format!("skipIfFeatures: {f} is supported"));
    }
    if let Some(f) = vector
        .run_if_features
        .iter()
        .find(|f| !supported.contains(*f))
    {
        return Some(format!("runIfFeatures: {f} is not supported"));
    }
    None
}

/// A request's name in the report.
pub(crate) fn request_name(r: &crate::vector::RequestExpect) -> String {
    let kind = r.kind.as_deref().unwrap_or("http");
    let target = match kind {
        "grpc" => format!(
            "{}/{}",
            r.request.service.as_deref().unwrap_or(""),
            r.request.method.as_deref().unwrap_or("")
        ),
        _ => format!(
            "{}{}",
            r.request.host.as_deref().unwrap_or(""),
            r.request.path.as_deref().unwrap_or("")
        ),
    };
    let mut s = format!(
        "{kind} {}:{} {target}",
        r.gateway,
        r.port.map_or_else(|| "-".to_string(), |p| p.to_string())
    );
    if let Some(n) = &r.name {
        s.push_str(&format!(" ({n})"));
    }
    s
}

/// The checks of a step that was not reached, each as not run.
fn unrun_checks(n: usize, step: &Step, why: &str) -> Vec<CheckResult> {
    let cluster = Cluster::new();
    let mut sc = StepChecks {
        step: n,
        cluster: &cluster,
        controller: "",
        out: Vec::new(),
    };
    sc.run(step);
    let mut out: Vec<CheckResult> = step
        .patch
        .iter()
        .filter(|p| p.expect_generation_change)
        .map(|p| CheckResult {
            step: n,
            kind: CheckKind::Status,
            check: format!(
                "{}: generation changes",
                StoreKey::new(&p.kind, p.namespace.as_deref(), &p.name)
            ),
            outcome: Outcome::NotRun(why.to_string()),
        })
        .collect();
    out.extend(sc.out.into_iter().map(|mut c| {
        c.outcome = Outcome::NotRun(why.to_string());
        c
    }));
    out.extend(step.requests.iter().map(|r| CheckResult {
        step: n,
        kind: CheckKind::Request,
        check: request_name(r),
        outcome: Outcome::NotRun(why.to_string()),
    }));
    out
}
