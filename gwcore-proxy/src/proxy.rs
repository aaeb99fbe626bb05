//! The proxy's shared state: the configuration being served (swapped whole
//! on reload), the backend connection pools, metrics, and the answer to each
//! request.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use http::{Request, Response};
use hyper::body::Incoming;
use serde::Serialize;

use crate::body::Body;
use crate::config::Config;
use crate::forward::ClientInfo;
use crate::forward::Forwarder;
use crate::metrics::Metrics;
use crate::server::{BoundPort, ConnInfo, ServeOptions};

/// A refused reload, kept until the next good one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReloadError {
    /// When it happened (RFC 3339).
    pub at: String,
    /// What was wrong, one line per problem.
    pub errors: Vec<String>,
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
    pub fn with_options(initial: Config, options: ServeOptions) -> Arc<Proxy> {
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
            connection_slots,
        })
    }

    /// How client connections are served.
    pub fn options(&self) -> &ServeOptions {
        &self.options
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

    /// Answers one request received on a connection.
    pub async fn handle(
        self: &Arc<Self>,
        conn: &ConnInfo,
        req: Request<Incoming>,
    ) -> Response<Body> {
        let start = Instant::now();
        let cfg = self.config();
        // What the access log needs is kept only when it is written.
        let log = tracing::enabled!(target: "gwcore::access", tracing::Level::INFO);
        let head = log.then(|| {
            let host = req
                .uri()
                .authority()
                .map(|a| a.to_string())
                .or_else(|| {
                    req.headers()
                        .get(http::header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .map(str::to_owned)
                })
                .unwrap_or_default();
            (req.method().clone(), req.uri().clone(), req.version(), host)
        });
        let is_head = req.method() == http::Method::HEAD;
        let answered = crate::route::answer(self, &cfg, conn, req, log).await;
        let status = answered.response.status().as_u16();
        let elapsed = start.elapsed();
        self.metrics.record(&answered.series, status, elapsed);
        if let Some((method, uri, version, host)) = head {
            tracing::info!(
                target: "gwcore::access",
                client = %conn.client.peer,
                port = conn.port,
                method = %method,
                host = %host,
                uri = %uri,
                version = ?version,
                status,
                micros = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX),
                gateway = %answered.series.gateway,
                route = %answered.series.route,
                backend = %answered.series.backend,
                matched = %answered.provenance,
                generation = cfg.generation,
            );
        }
        // RFC 9110 §9.3.2: a response to HEAD has no content. The gateway's
        // own answers (404, 400, 421...) carry a body for GET; over HTTP/2
        // sending it after a HEAD is a protocol error, so it is dropped here
        // for every answer (a backend's HEAD answer has none anyway).
        if is_head {
            let (parts, _) = answered.response.into_parts();
            return Response::from_parts(parts, crate::body::empty());
        }
        answered.response
    }
}
