//! The file provider: reads manifests, watches them, and reloads.
//!
//! Watching polls: every interval it lists the manifest files under the
//! given paths and compares each file's length and modification time with
//! the last look. Polling needs no platform API, sees files replaced by
//! rename (as editors and `kubectl`-style tools write them), and costs one
//! `stat` per file per interval.
//!
//! A reload never makes things worse:
//! - input with load errors is refused; the last good configuration keeps
//!   serving, and the errors are logged and shown on `/status` until input
//!   without errors comes;
//! - a file being written is not read half-way: [`Runtime::run_until`]
//!   reloads once the inputs have stayed the same for one poll interval
//!   ([`FileProvider::settled`]), since a prefix of a manifest is often a
//!   valid, smaller configuration; a deleted input, a folder left without
//!   manifests and a file over the loader's size limit are errors
//!   ([`crate::files::read_manifests`]); reading and parsing run off the
//!   async workers, so a huge file does not stall the connections;
//! - input whose objects equal the served ones changes nothing (no new
//!   generation, no socket touched);
//! - otherwise a new [`Config`] is built and swapped in whole.
//!
//! A reload reads and parses only what changed ([`FileProvider::reload`]):
//! a file whose length and modification time are those of the last reload
//! served is not read; in a file read, only the documents whose text hash
//! changed are parsed ([`gwcore::load::documents::DocumentCache`]); what
//! is served is then the served snapshot with only the objects of those
//! documents put in or taken out. Its diagnostics and objects are those of
//! a fresh read of every file. A document with an error refuses the whole
//! reload, as any error does: the objects the previous version of that
//! document held keep serving, and the refusal names them. Where an
//! object's key is held by several documents (a duplicate; the later one
//! wins, as in a fresh read), a change touching it reads every file again.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use std::hash::RandomState;

use gwcore::Snapshot;
use gwcore::load::documents::{Changes, DocumentCache, Reload, SourceInput};
use gwcore::load::{Limits, Loaded};
#[cfg(feature = "echo")]
use gwcore::model::Kind;
use gwcore::model::ObjectKey;

use crate::config::{BuildOptions, Config};
#[cfg(feature = "echo")]
use crate::echo::{EchoIdentity, EchoServer};
#[cfg(feature = "echo")]
use crate::endpoints::Endpoints;
use crate::metrics::ReloadOutcome;
use crate::proxy::{Proxy, ReloadError};
use crate::server::{ListenOptions, ServeOptions, Server};

/// One look at the inputs: every manifest file with its length and mtime.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Stamp(Vec<(PathBuf, u64, Option<SystemTime>)>);

/// Reads manifests from files and folders.
#[derive(Debug, Clone)]
pub struct FileProvider {
    paths: Vec<PathBuf>,
    last: Option<Stamp>,
    /// The previous look of [`FileProvider::settled`].
    previous: Option<Stamp>,
    /// The extension kinds read besides the built-in ones.
    extensions: gwcore::extension::Extensions,
    /// The documents of the last reload committed.
    cache: DocumentCache<RandomState>,
    /// The length and modification time of each file of the last reload
    /// committed, taken before it was read.
    stats: BTreeMap<PathBuf, FileStat>,
    /// Files read so far.
    files_read: u64,
    /// Documents parsed so far.
    documents_parsed: u64,
}

/// How recent a modification time must be for a file's stat not to be
/// trusted to tell it unchanged (coarse file-system clocks tick every few
/// milliseconds; some every second or two).
const RACY: Duration = Duration::from_secs(3);

/// A file's length and modification time.
type FileStat = (u64, Option<SystemTime>);

/// A file of a reload: its path, its source name, its stat and its text
/// when read.
type FileEntry = (PathBuf, String, Option<FileStat>, Option<String>);

/// The sources of `entries` for the document cache, those that could not
/// be read (`failed`) left out.
fn inputs<'e>(
    entries: &'e [FileEntry],
    failed: &BTreeMap<String, gwcore::load::Diagnostic>,
) -> Vec<SourceInput<'e>> {
    entries
        .iter()
        .filter(|(_, name, _, _)| !failed.contains_key(name))
        .map(|(_, name, _, text)| match text {
            Some(t) => SourceInput::text(name, t),
            None => SourceInput::unchanged(name),
        })
        .collect()
}

/// A reload read by [`FileProvider::reload`], to serve and then
/// [`FileProvider::commit`] (or drop, when it is refused).
#[derive(Debug)]
pub struct Reading {
    reload: Reload,
    diagnostics: Vec<gwcore::load::Diagnostic>,
    stats: BTreeMap<PathBuf, FileStat>,
    files_read: usize,
}

impl Reading {
    /// Every diagnostic, as [`crate::files::read_manifests`] gives them.
    pub fn diagnostics(&self) -> &[gwcore::load::Diagnostic] {
        &self.diagnostics
    }

    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == gwcore::load::Severity::Error)
    }

    /// What changed since the last commit: [`Changes::Some`], or
    /// [`Changes::All`] after a full read; never [`Changes::Unknown`].
    pub fn changes(&self) -> &Changes {
        self.reload.changes()
    }

    /// How many files this reading read.
    pub fn files_read(&self) -> usize {
        self.files_read
    }

    /// How many documents it parsed.
    pub fn documents_parsed(&self) -> usize {
        self.reload.documents_parsed()
    }

    /// The error lines of a refused reload: each error, then for each
    /// document in error that held objects at the last commit, which of
    /// them keep serving in their previous version.
    pub fn error_lines(&self) -> Vec<String> {
        let errors = self
            .diagnostics
            .iter()
            .filter(|d| d.severity == gwcore::load::Severity::Error);
        let mut out: Vec<String> = errors.clone().map(ToString::to_string).collect();
        let mut seen = std::collections::BTreeSet::new();
        for d in errors {
            if !seen.insert((&d.source, d.document)) {
                continue;
            }
            let kept = self.reload.previous_keys(&d.source, d.document);
            if !kept.is_empty() {
                let names: Vec<String> = kept.iter().map(ToString::to_string).collect();
                out.push(format!(
                    "{} (document {}) is refused; its previous version keeps serving: {}",
                    d.source,
                    d.document,
                    names.join(", ")
                ));
            }
        }
        out
    }
}

impl FileProvider {
    /// A provider for `paths` (files or folders, walked recursively).
    pub fn new(paths: Vec<PathBuf>) -> FileProvider {
        FileProvider {
            paths,
            last: None,
            previous: None,
            extensions: Default::default(),
            cache: FileProvider::cache(Default::default()),
            stats: BTreeMap::new(),
            files_read: 0,
            documents_parsed: 0,
        }
    }

    fn cache(extensions: gwcore::extension::Extensions) -> DocumentCache<RandomState> {
        // Keyed hashes: whoever writes the manifests cannot make two
        // documents collide on purpose.
        DocumentCache::with_hasher(Limits::default(), extensions, RandomState::new())
    }

    /// Reads the objects of the kinds `extensions` register too.
    pub fn with_extensions(mut self, extensions: gwcore::extension::Extensions) -> FileProvider {
        self.cache = FileProvider::cache(extensions.clone());
        self.stats.clear();
        self.extensions = extensions;
        self
    }

    /// How many times a file's content has been read by
    /// [`FileProvider::reload`] since this provider was made.
    pub fn files_read(&self) -> u64 {
        self.files_read
    }

    /// How many documents (or files read whole, such as JSON) it has
    /// parsed.
    pub fn documents_parsed(&self) -> u64 {
        self.documents_parsed
    }

    /// Reads what changed since the last [`FileProvider::commit`]: files
    /// whose length or modification time differ (or all, the first time),
    /// and in them the documents whose text differs. When that cannot
    /// tell the objects (see [`Changes::Unknown`]), every file is read.
    pub fn reload(&mut self) -> Reading {
        let (files, mut diagnostics) = crate::files::list_manifests(&self.paths);
        // Each file: its name, its stat, and its text when read.
        let mut entries: Vec<FileEntry> = Vec::new();
        let mut failed: BTreeMap<String, gwcore::load::Diagnostic> = BTreeMap::new();
        let mut files_read = 0;
        let full = self.cache.is_empty();
        for f in files {
            let name = f.display().to_string();
            let meta = std::fs::metadata(&f).ok();
            let stat = meta.as_ref().map(|m| (m.len(), m.modified().ok()));
            if !full && stat.is_some() && self.stats.get(&f) == stat.as_ref() {
                entries.push((f, name, stat, None));
                continue;
            }
            files_read += 1;
            match crate::files::read_manifest(&f, stat.map(|s| s.0)) {
                Ok(text) => entries.push((f, name, stat, Some(text))),
                Err(d) => {
                    failed.insert(name.clone(), *d);
                    entries.push((f, name, None, None));
                }
            }
        }
        let mut reload = if full {
            self.cache.reload_all(inputs(&entries, &failed))
        } else {
            self.cache.reload(inputs(&entries, &failed))
        };
        if reload.changes() == &Changes::Unknown {
            for (f, name, stat, text) in &mut entries {
                if text.is_none() && !failed.contains_key(name.as_str()) {
                    files_read += 1;
                    match crate::files::read_manifest(f, stat.map(|s| s.0)) {
                        Ok(t) => *text = Some(t),
                        Err(d) => {
                            failed.insert(name.clone(), *d);
                        }
                    }
                }
            }
            self.documents_parsed += reload.documents_parsed() as u64;
            reload = self.cache.reload_all(inputs(&entries, &failed));
        }
        self.files_read += files_read as u64;
        self.documents_parsed += reload.documents_parsed() as u64;
        // The diagnostics in a fresh read's order: the paths', then each
        // file's own.
        let mut of_files = reload.diagnostics().iter().peekable();
        for (_, name, _, _) in &entries {
            if let Some(d) = failed.remove(name) {
                diagnostics.push(d);
            }
            while let Some(d) = of_files.next_if(|d| d.source == *name) {
                diagnostics.push(d.clone());
            }
        }
        diagnostics.extend(of_files.cloned());
        // A file changed within the last moments may change again within
        // the same mtime tick and keep its length: its stat is not
        // trusted, and it is read (and its hash compared) next time too.
        let recent = SystemTime::now()
            .checked_sub(RACY)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let stats = entries
            .into_iter()
            .filter_map(|(f, _, stat, _)| Some((f, stat?)))
            .filter(|(_, (_, mtime))| mtime.is_some_and(|m| m < recent))
            .collect();
        Reading {
            reload,
            diagnostics,
            stats,
            files_read,
        }
    }

    /// Takes `reading` as what is served: the next
    /// [`FileProvider::reload`] reads what changed since.
    pub fn commit(&mut self, reading: Reading) {
        self.cache.commit(reading.reload);
        self.stats = reading.stats;
    }

    /// The inputs' current stamp. A path that cannot be read gets an entry
    /// of its own so that its coming back counts as a change.
    pub fn stamp(&self) -> Stamp {
        let files = match crate::files::manifest_files(&self.paths) {
            Ok(f) => f,
            Err((p, _)) => return Stamp(vec![(p, u64::MAX, None)]),
        };
        Stamp(
            files
                .into_iter()
                .map(|f| {
                    let meta = std::fs::metadata(&f).ok();
                    let len = meta.as_ref().map_or(u64::MAX, |m| m.len());
                    let mtime = meta.and_then(|m| m.modified().ok());
                    (f, len, mtime)
                })
                .collect(),
        )
    }

    /// Whether the inputs changed since the last call (the first call says
    /// yes).
    pub fn changed(&mut self) -> bool {
        let now = self.stamp();
        let changed = self.last.as_ref() != Some(&now);
        self.last = Some(now);
        changed
    }

    /// Whether the inputs changed since they were last taken and have not
    /// changed since the previous call: a file being written is taken once
    /// its writer has been done for one interval between calls. The first
    /// call says yes, as [`FileProvider::changed`] does.
    pub fn settled(&mut self) -> bool {
        let now = self.stamp();
        let steady = self.last.is_none() || self.previous.as_ref() == Some(&now);
        self.previous = Some(now.clone());
        if steady && self.last.as_ref() != Some(&now) {
            self.last = Some(now);
            true
        } else {
            false
        }
    }

    /// Reads every manifest.
    pub fn load(&self) -> Loaded {
        crate::files::read_manifests_extended(&self.paths, &self.extensions)
    }
}

/// Echo backends for Services without endpoints, started on demand
/// (feature `echo`).
#[cfg(feature = "echo")]
#[derive(Debug, Default)]
pub struct EchoBackends {
    servers: BTreeMap<ObjectKey, EchoServer>,
}

#[cfg(feature = "echo")]
impl EchoBackends {
    /// Echo backends listening on ephemeral ports of `127.0.0.1`.
    pub fn new() -> EchoBackends {
        EchoBackends::default()
    }

    /// The echo backend standing for `service`.
    pub fn get(&self, service: &ObjectKey) -> Option<&EchoServer> {
        self.servers.get(service)
    }

    /// Starts an echo server for every Service of `snapshot` that has no
    /// endpoint, stops those whose Service is gone or has endpoints now, and
    /// returns the address of each.
    pub async fn sync(
        &mut self,
        snapshot: &Snapshot,
    ) -> std::io::Result<BTreeMap<ObjectKey, SocketAddr>> {
        let endpoints = Endpoints::from_snapshot(snapshot);
        let wanted: Vec<ObjectKey> = snapshot
            .of_kind(Kind::Service)
            .map(|o| o.key())
            .filter(|k| !endpoints.has_service(k))
            .collect();
        self.servers.retain(|k, _| wanted.contains(k));
        let ip = std::net::IpAddr::from([127, 0, 0, 1]);
        for k in wanted {
            if let std::collections::btree_map::Entry::Vacant(slot) = self.servers.entry(k) {
                let k = slot.key();
                let id = EchoIdentity::new(k.namespace.clone(), k.name.clone(), 0);
                let server = EchoServer::start(id, SocketAddr::new(ip, 0)).await?;
                tracing::info!(service = %k, addr = %server.addr(), "echo backend started");
                slot.insert(server);
            }
        }
        Ok(self
            .servers
            .iter()
            .map(|(k, s)| (k.clone(), s.addr()))
            .collect())
    }
}

/// Now, as RFC 3339 in UTC with second precision.
pub fn now_rfc3339() -> String {
    rfc3339(u64::try_from(jiff::Timestamp::now().as_second()).unwrap_or(0))
}

/// Formats seconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SSZ`. Later
/// than [`jiff::Timestamp::MAX`] (December 9999) is formatted as its second.
pub fn rfc3339(secs: u64) -> String {
    let last = jiff::Timestamp::MAX.as_second();
    let secs = i64::try_from(secs).map_or(last, |s| s.min(last));
    jiff::Timestamp::from_second(secs)
        .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
        .to_string()
}

/// Options of [`Runtime::start`].
///
/// Build it with [`RuntimeOptions::new`] and set the fields you need: a
/// struct literal does not compile the same with and without the `echo`
/// feature (which adds `echo_backends`), and features are unified across
/// a build. It may gain fields in a minor release.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RuntimeOptions {
    /// Our `controllerName`.
    pub controller_name: String,
    /// Where Gateway ports are served.
    pub listen: ListenOptions,
    /// Whether to start echo backends for Services without endpoints
    /// (feature `echo`: stand-ins for demos and tests). Default is `false`.
    #[cfg(feature = "echo")]
    pub echo_backends: bool,
    /// Extension filter and policy kinds, and the plug-ins that run them
    /// ([`crate::plugin`]). Default: none.
    pub plugins: crate::plugin::Plugins,
    /// Whether a Gateway's `spec.addresses` are judged against the
    /// addresses its ports are served on ([`ListenOptions::served_ips`]):
    /// one not among them leaves the Gateway `Programmed=False`
    /// (`AddressNotUsable`). Right where this process is what clients
    /// connect to (`gwcore serve FILE`); not behind a Kubernetes Service,
    /// whose addresses are the Gateway's. Default is `false`: every address
    /// is taken as usable.
    pub addresses_from_listen: bool,
    /// Whether another engine writes the statuses, as the controller of
    /// `gwcore serve --kubernetes` does ([`BuildOptions::routing_only`]).
    /// Default is `false`.
    pub routing_only: bool,
}

impl RuntimeOptions {
    /// Options for `controller_name`: Gateway ports bound at their own
    /// number ([`ListenOptions::default`]), no plug-ins, no echo backend.
    pub fn new(controller_name: impl Into<String>) -> RuntimeOptions {
        RuntimeOptions {
            controller_name: controller_name.into(),
            listen: ListenOptions::default(),
            #[cfg(feature = "echo")]
            echo_backends: false,
            plugins: crate::plugin::Plugins::default(),
            addresses_from_listen: false,
            routing_only: false,
        }
    }
}

/// Why the first configuration could not be served.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// The manifests have errors.
    #[error("the manifests have errors:\n{}", .0.join("\n"))]
    Invalid(Vec<String>),
    /// An echo backend could not start, or building the configuration
    /// failed.
    #[error("cannot start: {0}")]
    Io(#[from] std::io::Error),
}

/// A running proxy: the state, the sockets, the echo backends, and what a
/// reload needs. It is fed either by a [`FileProvider`] ([`Runtime::start`],
/// [`Runtime::poll`]) or by snapshots from the embedding program
/// ([`Runtime::from_snapshot`], [`Runtime::apply`]).
#[derive(Debug)]
pub struct Runtime {
    proxy: Arc<Proxy>,
    server: Server,
    provider: Option<FileProvider>,
    #[cfg(feature = "echo")]
    echo: Option<EchoBackends>,
    opts: RuntimeOptions,
}

impl Runtime {
    /// Loads the inputs, builds the first configuration, binds its ports.
    /// Fails when the first load has errors: there is no good configuration
    /// to fall back on.
    pub async fn start(paths: Vec<PathBuf>, opts: RuntimeOptions) -> Result<Runtime, StartError> {
        Runtime::start_with(paths, opts, ServeOptions::default()).await
    }

    /// [`Runtime::start`] with connection limits and trusted proxies.
    pub async fn start_with(
        paths: Vec<PathBuf>,
        opts: RuntimeOptions,
        serve: ServeOptions,
    ) -> Result<Runtime, StartError> {
        let mut provider =
            FileProvider::new(paths).with_extensions(opts.plugins.extensions().clone());
        provider.changed();
        let mut reading = provider.reload();
        if reading.has_errors() {
            return Err(StartError::Invalid(reading.error_lines()));
        }
        for d in reading.diagnostics() {
            tracing::warn!("{d}");
        }
        let objects = match reading.reload.take_changes() {
            Changes::All(objects) => objects,
            // A first reload reads everything; the others do not occur.
            _ => Vec::new(),
        };
        let snapshot = Snapshot::from_objects(objects);
        let diagnostics = reading.diagnostics.clone();
        let mut rt = Runtime::serve(snapshot, diagnostics, opts, serve).await?;
        provider.commit(reading);
        rt.provider = Some(provider);
        Ok(rt)
    }

    /// Serves `snapshot` with no file provider: for programs that embed the
    /// proxy and hold their objects themselves (the conformance runner, a
    /// controller). Feed changes with [`Runtime::apply`].
    pub async fn from_snapshot(
        snapshot: Snapshot,
        opts: RuntimeOptions,
    ) -> Result<Runtime, StartError> {
        Runtime::serve(snapshot, Vec::new(), opts, ServeOptions::default()).await
    }

    /// [`Runtime::from_snapshot`] with connection limits and trusted
    /// proxies.
    pub async fn from_snapshot_with(
        snapshot: Snapshot,
        opts: RuntimeOptions,
        serve: ServeOptions,
    ) -> Result<Runtime, StartError> {
        Runtime::serve(snapshot, Vec::new(), opts, serve).await
    }

    async fn serve(
        snapshot: Snapshot,
        diagnostics: Vec<gwcore::load::Diagnostic>,
        opts: RuntimeOptions,
        serve: ServeOptions,
    ) -> Result<Runtime, StartError> {
        #[cfg(feature = "echo")]
        let mut echo = opts.echo_backends.then(EchoBackends::new);
        #[cfg(feature = "echo")]
        let extra = match &mut echo {
            Some(e) => e.sync(&snapshot).await?,
            None => BTreeMap::new(),
        };
        #[cfg(not(feature = "echo"))]
        let extra = BTreeMap::new();
        let config = build_off_thread(
            None,
            1,
            build_options(&opts, &snapshot),
            snapshot,
            diagnostics,
            extra,
        )
        .await?;
        let proxy = Proxy::with_options(config, serve);
        proxy.metrics().record_reload(ReloadOutcome::Applied, 1);
        let mut server = Server::new(proxy.clone(), opts.listen.clone());
        server.reconcile().await;
        proxy.set_ready(true);
        Ok(Runtime {
            proxy,
            server,
            provider: None,
            #[cfg(feature = "echo")]
            echo,
            opts,
        })
    }

    /// The shared state.
    pub fn proxy(&self) -> &Arc<Proxy> {
        &self.proxy
    }

    /// The file provider feeding it, if any.
    pub fn file_provider(&self) -> Option<&FileProvider> {
        self.provider.as_ref()
    }

    /// The local address serving port `port` of the first Gateway (by
    /// namespace/name) that has it.
    pub fn local_addr(&self, port: u16) -> Option<SocketAddr> {
        self.server.local_addr(port)
    }

    /// The local address serving one Gateway's port.
    pub fn local_addr_of(&self, gp: &crate::config::GatewayPort) -> Option<SocketAddr> {
        self.server.local_addr_of(gp)
    }

    /// The echo backend standing for a Service, when there is one
    /// (feature `echo`).
    #[cfg(feature = "echo")]
    pub fn echo(&self, service: &ObjectKey) -> Option<&EchoServer> {
        self.echo.as_ref().and_then(|e| e.get(service))
    }

    /// Reloads if the inputs changed since the last look; `None` when they
    /// did not, or when there is no file provider.
    pub async fn poll(&mut self) -> Option<ReloadOutcome> {
        if !self.provider.as_mut()?.changed() {
            return None;
        }
        Some(self.reload().await)
    }

    /// Like [`Runtime::poll`], but reloads only once the inputs have not
    /// changed since the previous call ([`FileProvider::settled`]), so that
    /// a file being written is not read half-way. [`Runtime::run_until`]
    /// polls this way.
    pub async fn poll_settled(&mut self) -> Option<ReloadOutcome> {
        if !self.provider.as_mut()?.settled() {
            return None;
        }
        Some(self.reload().await)
    }

    /// Reads the inputs and serves them if they are good and different.
    /// Without a file provider there is nothing to read: `Unchanged`.
    /// Input without errors clears the last refused reload, even when it
    /// changes nothing (a broken file put back as it was). Only what
    /// changed is read and handed on ([`FileProvider::reload`]).
    pub async fn reload(&mut self) -> ReloadOutcome {
        let Some(mut provider) = self.provider.take() else {
            return ReloadOutcome::Unchanged;
        };
        let spare =
            FileProvider::new(provider.paths.clone()).with_extensions(provider.extensions.clone());
        // Reading and parsing take long for large inputs: off the workers
        // that serve connections.
        let read = tokio::task::spawn_blocking(move || {
            let reading = provider.reload();
            (provider, reading)
        })
        .await;
        let (mut provider, mut reading) = match read {
            Ok(r) => r,
            Err(e) => {
                // What was read is lost with the task: start afresh.
                self.provider = Some(spare);
                tracing::error!(target: "gwcore::reload", error = %e, "reading the inputs failed");
                return ReloadOutcome::Failed;
            }
        };
        let outcome = if reading.has_errors() {
            let errors = reading.error_lines();
            for e in &errors {
                tracing::error!(target: "gwcore::reload", "{e}");
            }
            tracing::error!(
                target: "gwcore::reload",
                generation = self.proxy.config().generation,
                "reload refused; still serving the last good configuration"
            );
            self.proxy.set_reload_error(ReloadError {
                at: now_rfc3339(),
                errors,
            });
            ReloadOutcome::Failed
        } else {
            let snapshot = match reading.reload.take_changes() {
                Changes::All(objects) => Some(Snapshot::from_objects(objects)),
                Changes::Some(changes) if changes.is_empty() => None,
                Changes::Some(changes) => {
                    // The served objects, those of unchanged documents
                    // shared, with the changed ones put in or taken out.
                    let mut snapshot = self.proxy.config().snapshot.clone();
                    for (key, object) in changes {
                        match object {
                            Some(o) => snapshot.insert(o),
                            None => snapshot.remove(&key),
                        };
                    }
                    Some(snapshot)
                }
                // FileProvider::reload reads everything instead.
                _ => None,
            };
            let outcome = match snapshot {
                Some(s) => self.swap_in(s, reading.diagnostics.clone()).await,
                None => ReloadOutcome::Unchanged,
            };
            if outcome == ReloadOutcome::Unchanged {
                self.proxy.clear_reload_error();
            }
            if outcome != ReloadOutcome::Failed {
                provider.commit(reading);
            }
            outcome
        };
        self.provider = Some(provider);
        self.proxy
            .metrics()
            .record_reload(outcome, self.proxy.config().generation);
        outcome
    }

    /// Serves `snapshot` if it differs from the served one.
    pub async fn apply(&mut self, snapshot: Snapshot) -> ReloadOutcome {
        let outcome = self.swap_in(snapshot, Vec::new()).await;
        self.proxy
            .metrics()
            .record_reload(outcome, self.proxy.config().generation);
        outcome
    }

    async fn swap_in(
        &mut self,
        snapshot: Snapshot,
        diagnostics: Vec<gwcore::load::Diagnostic>,
    ) -> ReloadOutcome {
        let current = self.proxy.config();
        if snapshot == current.snapshot {
            return ReloadOutcome::Unchanged;
        }
        let generation = current.generation + 1;
        match self.build(current, snapshot, diagnostics, generation).await {
            Ok(config) => {
                let generation = config.generation;
                self.proxy.swap(config);
                self.server.reconcile().await;
                tracing::info!(target: "gwcore::reload", generation, "configuration applied");
                ReloadOutcome::Applied
            }
            Err(e) => {
                tracing::error!(target: "gwcore::reload", error = %e, "reload refused");
                self.proxy.set_reload_error(ReloadError {
                    at: now_rfc3339(),
                    errors: vec![e.to_string()],
                });
                ReloadOutcome::Failed
            }
        }
    }

    /// Builds the next configuration from `previous` (the one served).
    async fn build(
        &mut self,
        previous: Arc<Config>,
        snapshot: Snapshot,
        diagnostics: Vec<gwcore::load::Diagnostic>,
        generation: u64,
    ) -> std::io::Result<Config> {
        #[cfg(feature = "echo")]
        let extra = match &mut self.echo {
            Some(e) => e.sync(&snapshot).await?,
            None => BTreeMap::new(),
        };
        #[cfg(not(feature = "echo"))]
        let extra = BTreeMap::new();
        build_off_thread(
            Some(previous),
            generation,
            build_options(&self.opts, &snapshot),
            snapshot,
            diagnostics,
            extra,
        )
        .await
    }

    /// Polls the inputs every `interval` until `stop` resolves, then drains
    /// open connections for at most `grace`. A change is applied once the
    /// inputs have stayed the same for one interval
    /// ([`Runtime::poll_settled`]).
    pub async fn run_until(
        mut self,
        interval: Duration,
        grace: Duration,
        stop: impl std::future::Future<Output = ()>,
    ) {
        tokio::pin!(stop);
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = &mut stop => break,
                _ = tick.tick() => { self.poll_settled().await; }
            }
        }
        self.shutdown(grace).await;
    }

    /// Stops accepting and drains open connections for at most `grace`.
    pub async fn shutdown(self, grace: Duration) {
        tracing::info!("draining connections");
        self.proxy.set_ready(false);
        self.server.shutdown(grace).await;
    }
}

/// Computes and compiles a configuration on the blocking pool: a large one
/// takes milliseconds of CPU that must not stall the connections served by
/// the async workers. From `previous`, only what changed is computed again
/// ([`Config::build_next`]).
async fn build_off_thread(
    previous: Option<Arc<Config>>,
    generation: u64,
    opts: BuildOptions,
    snapshot: Snapshot,
    diagnostics: Vec<gwcore::load::Diagnostic>,
    extra: BTreeMap<ObjectKey, SocketAddr>,
) -> std::io::Result<Config> {
    tokio::task::spawn_blocking(move || {
        Config::build_next(
            previous.as_deref(),
            generation,
            snapshot,
            diagnostics,
            &opts,
            &extra,
        )
    })
    .await
    .map_err(std::io::Error::other)
}

fn build_options(opts: &RuntimeOptions, snapshot: &Snapshot) -> BuildOptions {
    let usable_addresses = if opts.addresses_from_listen {
        let ports = crate::config::gateway_ports(snapshot, &opts.controller_name);
        opts.listen.served_ips(&ports)
    } else {
        None
    };
    BuildOptions {
        controller_name: opts.controller_name.clone(),
        now: now_rfc3339(),
        plugins: opts.plugins.clone(),
        usable_addresses,
        routing_only: opts.routing_only,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_dates_across_leap_years() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_767_225_599), "2025-12-31T23:59:59Z");
        assert_eq!(rfc3339(u64::MAX), "9999-12-30T22:00:00Z");
        assert_eq!(now_rfc3339().len(), "1970-01-01T00:00:00Z".len());
    }
}
