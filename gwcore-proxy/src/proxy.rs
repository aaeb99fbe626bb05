//! The proxy's shared state: the configuration being served (swapped whole
//! on reload), the backend connection pools, metrics, the bound listeners,
//! and what a connection knows about itself ([`ConnInfo`]).
//!
//! Requests are answered by [`Proxy::handle`], defined in the private
//! `conn` module with the serving of HTTP connections: it sits above
//! [`crate::route`], which this module sits below.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use gwcore::model::ObjectKey;
use serde::Serialize;

use crate::config::{Config, PortMode};
use crate::forward::{ClientInfo, Forwarder};
use crate::limits::ServeOptions;
use crate::metrics::Metrics;

/// A refused reload, kept until the next good one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadError {
    /// When it happened (RFC 3339).
    pub at: String,
    /// What was wrong, one line per problem.
    pub errors: Vec<String>,
}

/// What a connection knows about itself, handed to every request on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// The Gateway it arrived at.
    pub gateway: ObjectKey,
    /// The Gateway port it arrived on.
    pub port: u16,
    /// The client, and whether TLS was used.
    pub client: ClientInfo,
    /// The SNI the client sent, for TLS connections.
    pub sni: Option<String>,
}

/// A bound port, as `/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BoundPort {
    /// The Gateway.
    pub gateway: ObjectKey,
    /// The Gateway port.
    pub port: u16,
    /// The local address.
    pub addr: SocketAddr,
    /// How it serves.
    pub mode: PortMode,
}

/// Everything a request needs, shared by all connections.
pub struct Proxy {
    config: ArcSwap<Config>,
    pub(crate) forwarder: Forwarder,
    metrics: Metrics,
    reload_error: Mutex<Option<ReloadError>>,
    listeners: Mutex<(Vec<BoundPort>, BTreeMap<String, String>)>,
    ready: AtomicBool,
    options: ServeOptions,
    /// Makes and exports the spans of requests (`None`: tracing is off).
    tracer: Option<crate::tracing_otel::Tracer>,
    /// One permit per open client connection (`None`: no limit).
    connection_slots: Option<Arc<tokio::sync::Semaphore>>,
}

/// An open client connection, counted until it is dropped.
pub(crate) struct ConnectionSlot {
    proxy: Arc<Proxy>,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.proxy.metrics.connection_closed();
    }
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("generation", &self.config.load().generation)
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// A proxy serving `initial` with the default [`ServeOptions`].
    pub fn new(initial: Config) -> Arc<Proxy> {
        Proxy::with_options(initial, ServeOptions::default())
    }

    /// A proxy serving `initial`, its connections limited by `options`.
    /// With tracing on ([`ServeOptions::tracing`]), it must be called
    /// within a Tokio runtime; an exporter that cannot be built is logged
    /// and tracing stays off.
    pub fn with_options(initial: Config, options: ServeOptions) -> Arc<Proxy> {
        let tracer = crate::tracing_otel::Tracer::new(&options.tracing).unwrap_or_else(|e| {
            tracing::error!(error = %e, "tracing is off");
            None
        });
        let max = options.limits.max_connections;
        let connection_slots = (max > 0).then(|| {
            Arc::new(tokio::sync::Semaphore::new(
                max.min(tokio::sync::Semaphore::MAX_PERMITS),
            ))
        });
        Arc::new(Proxy {
            config: ArcSwap::from_pointee(initial),
            forwarder: Forwarder::default(),
            metrics: Metrics::default(),
            reload_error: Mutex::new(None),
            listeners: Mutex::new((Vec::new(), BTreeMap::new())),
            ready: AtomicBool::new(false),
            options,
            tracer,
            connection_slots,
        })
    }

    /// How client connections are served.
    pub fn options(&self) -> &ServeOptions {
        &self.options
    }

    /// The tracer, when tracing is on ([`ServeOptions::tracing`]).
    pub fn tracer(&self) -> Option<&crate::tracing_otel::Tracer> {
        self.tracer.as_ref()
    }

    /// A slot for a new client connection, or `None` when
    /// [`crate::limits::Limits::max_connections`] are open (the refusal is
    /// counted).
    pub(crate) fn connection_slot(self: &Arc<Self>) -> Option<ConnectionSlot> {
        let permit = match &self.connection_slots {
            Some(s) => match s.clone().try_acquire_owned() {
                Ok(p) => Some(p),
                Err(_) => {
                    self.metrics.connection_refused();
                    return None;
                }
            },
            None => None,
        };
        self.metrics.connection_opened();
        Some(ConnectionSlot {
            proxy: self.clone(),
            _permit: permit,
        })
    }

    /// Who a client at `peer` is, and whether its proxy headers are
    /// believed ([`ServeOptions::trusted_proxies`]).
    pub(crate) fn client_info(&self, peer: std::net::SocketAddr, tls: bool) -> ClientInfo {
        ClientInfo::new(peer, tls).with_trusted(self.options.trusted_proxies.contains(peer.ip()))
    }

    /// The configuration being served now.
    pub fn config(&self) -> Arc<Config> {
        self.config.load_full()
    }

    /// Serves `next` from now on. Requests already running keep the
    /// configuration they loaded.
    pub fn swap(&self, next: Config) {
        self.config.store(Arc::new(next));
        *self.reload_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Records a refused reload (the served configuration is unchanged).
    pub fn set_reload_error(&self, err: ReloadError) {
        *self.reload_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(err);
    }

    /// Forgets the last refused reload: input without errors came, though
    /// it changed nothing served.
    pub fn clear_reload_error(&self) {
        *self.reload_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// The last refused reload, if no good one came since.
    pub fn reload_error(&self) -> Option<ReloadError> {
        self.reload_error
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Marks the proxy ready (the first configuration is served).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether the first configuration is served and every port is bound.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
            && self
                .listeners
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .1
                .is_empty()
    }

    /// The ports the last reconcile could not bind (`namespace/name:port`),
    /// with the reason.
    pub fn listener_errors(&self) -> BTreeMap<String, String> {
        self.listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .1
            .clone()
    }

    pub(crate) fn set_listeners(&self, bound: Vec<BoundPort>, errors: BTreeMap<String, String>) {
        *self.listeners.lock().unwrap_or_else(|e| e.into_inner()) = (bound, errors);
    }

    /// What `/status` shows: the served generation's statuses, the sockets,
    /// and the last refused reload.
    pub fn status_json(&self) -> serde_json::Value {
        let mut v = self.config().status_json();
        let (bound, errors) = self
            .listeners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        if let Some(obj) = v.as_object_mut() {
            obj.insert("listeners".into(), serde_json::json!(bound));
            obj.insert("listenerErrors".into(), serde_json::json!(errors));
            obj.insert("reloadError".into(), serde_json::json!(self.reload_error()));
        }
        v
    }
}
