//! Data-plane plug-ins: what an extension's filter does to traffic.
//!
//! gwcore decides which `ExtensionRef` filters exist and whether each
//! reference resolves ([`gwcore::extension::FilterKind`], pure); this module
//! runs them on requests. A [`FilterPlugin`] is registered by the same
//! (group, kind) in [`Plugins`], together with its deciding half:
//!
//! ```
//! use gwcore::extension::{ExtensionKind, FilterKind};
//! use gwcore_proxy::plugin::{BoxFuture, FilterPlugin, FilterRequest, Plugins, Verdict};
//!
//! const KIND: ExtensionKind = ExtensionKind::new("example.com/v1", "Deny");
//!
//! /// Answers 403 to every request its routes send through it.
//! #[derive(Debug)]
//! struct Deny;
//!
//! impl FilterKind for Deny {
//!     fn kind(&self) -> ExtensionKind { KIND }
//! }
//!
//! impl FilterPlugin for Deny {
//!     fn kind(&self) -> ExtensionKind { KIND }
//!     fn on_request<'a>(&'a self, _req: FilterRequest<'a>) -> BoxFuture<'a, Verdict> {
//!         Box::pin(async { Verdict::Respond(gwcore_proxy::route::status_response(
//!             http::StatusCode::FORBIDDEN, "denied\n")) })
//!     }
//! }
//!
//! let plugins = Plugins::new().with_filter(Deny, Deny);
//! assert!(plugins.extensions().kind("example.com", "Deny").is_some());
//! ```
//!
//! On a matched rule the proxy applies the rule's filters, then the chosen
//! backend's, in order: built-in ones as the table says, each extension's
//! by calling its plug-in's [`FilterPlugin::on_request`], which may change
//! the request head (headers, path) or answer itself ([`Verdict::Respond`],
//! e.g. 401: the backend is then not contacted). On the backend's
//! response, [`FilterPlugin::on_response`] runs for each in the same order.
//! A filter kind with no plug-in answers 500, as the spec requires of a
//! filter that cannot be applied.
//!
//! Policy kinds act through a [`PolicyPlugin`] (on the request, before
//! the filters) or, to choose which endpoint of a Service a request goes
//! to, an [`EndpointPicker`] (gwcore's `LoadBalancerPolicy` is one,
//! `crate::balance`).

use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use gwcore::attachments::AppliedPolicy;
use gwcore::extension::{ExtensionKind, ExtensionObject, Extensions, FilterKind, PolicyKind};
use gwcore::model::ObjectKey;
use http::Response;

use crate::body::Body;
use crate::endpoints::{Endpoint, Refusing};

/// A boxed future, as plug-in methods return.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What a filter decided for a request.
#[derive(Debug)]
#[non_exhaustive]
pub enum Verdict {
    /// Go on: the next filter, then the backend.
    Continue,
    /// Answer the client with this response; no later filter runs and
    /// the backend is not contacted.
    Respond(Response<Body>),
}

/// One request as a filter plug-in sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct FilterRequest<'a> {
    /// The object the `ExtensionRef` names: its spec is the filter's
    /// settings.
    pub object: &'a Arc<ExtensionObject>,
    /// The Gateway the request came to.
    pub gateway: &'a ObjectKey,
    /// The matched route.
    pub route: &'a ObjectKey,
    /// The matched rule's index in `spec.rules`.
    pub rule: usize,
    /// The client's address: the connection's peer, or on a PROXY
    /// protocol port the client its header names
    /// ([`crate::proxy_protocol`]).
    pub client: SocketAddr,
    /// The request head as it will be sent on; change it at will.
    pub head: &'a mut http::request::Parts,
    /// The request body as it will be sent on. Replace it to wrap it (a
    /// size limit, a checksum) or, having read it (see
    /// [`crate::body::buffer_prefix`]), to send on what was read.
    pub body: &'a mut Body,
}

/// One response as a filter plug-in sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct FilterResponse<'a> {
    /// The object the `ExtensionRef` names.
    pub object: &'a Arc<ExtensionObject>,
    /// The matched route.
    pub route: &'a ObjectKey,
    /// The response head as it goes to the client; change it at will.
    pub head: &'a mut http::response::Parts,
}

/// What an `ExtensionRef` filter kind does to traffic.
pub trait FilterPlugin: Send + Sync + 'static {
    /// The kind it implements (the one its [`FilterKind`] declares).
    fn kind(&self) -> ExtensionKind;

    /// Runs on a request the filter applies to, before the backend.
    fn on_request<'a>(&'a self, request: FilterRequest<'a>) -> BoxFuture<'a, Verdict>;

    /// Runs on the backend's response (not on the filter's own answers).
    /// Default: nothing.
    fn on_response(&self, response: FilterResponse<'_>) {
        let _ = response;
    }
}

/// One request as a policy plug-in sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct PolicyRequest<'a> {
    /// The policy that applies (the most specific of its kind for this
    /// rule and backend): its key, its parsed value, its object.
    pub policy: &'a AppliedPolicy,
    /// The Gateway the request came to.
    pub gateway: &'a ObjectKey,
    /// The matched route.
    pub route: &'a ObjectKey,
    /// The matched rule's index in `spec.rules`.
    pub rule: usize,
    /// The client's address: the connection's peer, or on a PROXY
    /// protocol port the client its header names
    /// ([`crate::proxy_protocol`]).
    pub client: SocketAddr,
    /// The request head as it will be sent on; change it at will.
    pub head: &'a mut http::request::Parts,
    /// The request body as it will be sent on. Replace it to wrap it (a
    /// size limit, a checksum) or, having read it (see
    /// [`crate::body::buffer_prefix`]), to send on what was read.
    pub body: &'a mut Body,
}

/// One response as a policy plug-in sees it.
#[derive(Debug)]
#[non_exhaustive]
pub struct PolicyResponse<'a> {
    /// The policy that applied.
    pub policy: &'a AppliedPolicy,
    /// The matched route.
    pub route: &'a ObjectKey,
    /// The response head as it goes to the client; change it at will.
    pub head: &'a mut http::response::Parts,
}

/// What a policy kind does to traffic: it runs on every request whose rule
/// or backend has a policy of its kind (the most specific one), before the
/// rule's filters.
pub trait PolicyPlugin: Send + Sync + 'static {
    /// The kind it implements (the one its [`PolicyKind`] declares).
    fn kind(&self) -> ExtensionKind;

    /// Runs on a request the policy applies to, before the filters and the
    /// backend.
    fn on_request<'a>(&'a self, request: PolicyRequest<'a>) -> BoxFuture<'a, Verdict>;

    /// Runs on the backend's response. Default: nothing.
    fn on_response(&self, response: PolicyResponse<'_>) {
        let _ = response;
    }

    /// Its decisions per policy, which `/metrics` shows
    /// ([`crate::admin`]). Default: none.
    fn counters(&self) -> Option<&crate::metrics::PolicyCounters> {
        None
    }
}

/// A Service port's endpoints as an [`EndpointPicker`] sees them, with the
/// policy of the picker's kind that applies to the request's backend (the
/// most specific: the port, the Service, the rule, the route, the
/// listener, the Gateway; `None` when none does).
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct EndpointSet<'a> {
    /// The policy that applies, if any.
    pub policy: Option<&'a AppliedPolicy>,
    /// The Service.
    pub service: &'a ObjectKey,
    /// The Service port.
    pub port: u16,
    /// Its ready endpoints, sorted by address, never empty.
    pub endpoints: &'a [Endpoint],
    /// An id of the list: two lists of the same (Service, port) with the
    /// same id hold the same addresses in the same order
    /// ([`crate::endpoints::Endpoints::get_with_id`]). A picker keeps its
    /// per-endpoint state across configuration reloads while it is
    /// unchanged.
    pub id: u64,
}

/// One endpoint choice: one attempt of a request, which may take several
/// choices when endpoints take no connection.
#[derive(Debug)]
#[non_exhaustive]
pub struct PickRequest<'a> {
    /// Where to choose.
    pub set: EndpointSet<'a>,
    /// Indices into `set.endpoints` this attempt tried already (they took
    /// no connection): the choice must be another.
    pub tried: &'a [usize],
    /// The client's address (as in [`PolicyRequest::client`]).
    pub client: SocketAddr,
    /// The request's headers as they will be sent.
    pub headers: &'a http::HeaderMap,
    /// The endpoint the request's persistent session (GEP-1619,
    /// [`crate::session`]) is on, when it has one that is listed and not
    /// in `tried`. A picker should return it unless it must pass it over
    /// (ejected, refusing); the session then moves to the endpoint chosen
    /// instead. `gwcore_proxy`'s own choice (no picker) honours it.
    pub pinned: Option<usize>,
    refusing: &'a Refusing,
}

impl<'a> PickRequest<'a> {
    pub(crate) fn new(
        set: EndpointSet<'a>,
        tried: &'a [usize],
        client: SocketAddr,
        headers: &'a http::HeaderMap,
        pinned: Option<usize>,
        refusing: &'a Refusing,
    ) -> PickRequest<'a> {
        PickRequest {
            set,
            tried,
            client,
            headers,
            pinned,
            refusing,
        }
    }

    /// Whether `set.endpoints[i]` refused a connection lately (any
    /// request's; see [`crate::endpoints`]): a picker should pass it over
    /// while there is another.
    pub fn is_refusing(&self, i: usize) -> bool {
        self.set
            .endpoints
            .get(i)
            .is_some_and(|e| self.refusing.is_refusing_now(e.addr))
    }

    /// Whether any endpoint may be refusing now (one atomic load): when
    /// not, [`PickRequest::is_refusing`] is `false` for every endpoint.
    pub fn any_refusing(&self) -> bool {
        self.refusing.any_now()
    }
}

/// How an attempt sent to a picked endpoint ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum PickOutcome {
    /// The endpoint answered with this status (its response head came).
    Answered(http::StatusCode),
    /// It took no connection (refused, or no connection or TLS handshake
    /// in time); the request may go to another endpoint.
    Unreachable,
    /// The connection broke (a reset, a malformed response) before the
    /// response head.
    Failed,
    /// No response head within the attempt's timeout.
    TimedOut,
    /// The attempt was given up (the client left, the request's timeout):
    /// nothing is known of the endpoint.
    Cancelled,
}

/// Chooses the endpoint of a Service port each request attempt goes to,
/// and hears how each attempt ended (to count requests in flight, or to
/// take failing endpoints out of rotation). One picker is registered in
/// [`Plugins`] ([`Plugins::with_endpoint_picker`]), with the policy kind
/// whose policies configure it; it is asked for every request to a Service
/// with endpoints, with the policy that applies or none. With no picker
/// the proxy chooses at random, passing over endpoints that refuse
/// connections.
///
/// Each [`EndpointPicker::pick`] that returns `Some(i)` is followed by
/// exactly one [`EndpointPicker::done`] for `i` with the same set, even
/// when the request is dropped midway ([`PickOutcome::Cancelled`]).
/// `pick` runs on every request: it should not allocate or block.
pub trait EndpointPicker: Send + Sync + 'static {
    /// The policy kind that configures it (the one its [`PolicyKind`]
    /// declares).
    fn kind(&self) -> ExtensionKind;

    /// The index into `request.set.endpoints` to send to: one not in
    /// `request.tried`. `None` leaves the choice to the proxy (random).
    fn pick(&self, request: &PickRequest<'_>) -> Option<usize>;

    /// How the attempt sent to `set.endpoints[endpoint]` ended.
    fn done(&self, set: &EndpointSet<'_>, endpoint: usize, outcome: PickOutcome);

    /// Its counts per policy, which `/metrics` shows ([`crate::admin`]).
    /// Default: none.
    fn counters(&self) -> Option<&crate::metrics::PolicyCounters> {
        None
    }

    /// More families of counts per policy, which `/metrics` shows after
    /// [`EndpointPicker::counters`] (gwcore's balancer: its active health
    /// checks). Default: none.
    fn more_counters(&self) -> Vec<&crate::metrics::PolicyCounters> {
        Vec::new()
    }
}

/// The plug-ins a proxy runs, with the extensions the engine resolves for
/// them. A value, cloned cheaply; set it in
/// [`crate::provider::RuntimeOptions::plugins`].
#[derive(Clone, Default)]
pub struct Plugins {
    extensions: Extensions,
    filters: BTreeMap<ExtensionKind, Arc<dyn FilterPlugin>>,
    policies: Vec<(ExtensionKind, Arc<dyn PolicyPlugin>)>,
    picker: Option<Arc<dyn EndpointPicker>>,
    sessions: Arc<crate::session::Sessions>,
    retry_budgets: Arc<crate::retry_budget::RetryBudgets>,
}

impl Plugins {
    /// No plug-ins.
    pub fn new() -> Plugins {
        Plugins::default()
    }

    /// Adds a filter kind: `decide` is what gwcore's engine resolves
    /// references with, `act` what the proxy runs.
    pub fn with_filter(mut self, decide: impl FilterKind, act: impl FilterPlugin) -> Plugins {
        self.filters.insert(act.kind(), Arc::new(act));
        self.extensions = self.extensions.with_filter(decide);
        self
    }

    /// Adds a policy kind: the engine resolves its targets and hands its
    /// parsed value to each rule and backend it applies to
    /// ([`gwcore::table::Forward::policies`]), where a filter plug-in or the
    /// embedding program reads it.
    pub fn with_policy(mut self, policy: impl PolicyKind) -> Plugins {
        self.extensions = self.extensions.with_policy(policy);
        self
    }

    /// Adds a policy kind the proxy acts on: `decide` is what the engine
    /// resolves targets with, `act` what runs on the requests it applies
    /// to ([`PolicyPlugin`]).
    pub fn with_policy_plugin(
        mut self,
        decide: impl PolicyKind,
        act: impl PolicyPlugin,
    ) -> Plugins {
        let kind = act.kind();
        self.policies.retain(|(k, _)| *k != kind);
        self.policies.push((kind, Arc::new(act)));
        self.policies.sort_by_key(|(k, _)| *k);
        self.extensions = self.extensions.with_policy(decide);
        self
    }

    /// Sets the endpoint picker (replacing any): `decide` is what the
    /// engine resolves targets with, `act` what chooses endpoints
    /// ([`EndpointPicker`]).
    pub fn with_endpoint_picker(
        mut self,
        decide: impl PolicyKind,
        act: impl EndpointPicker,
    ) -> Plugins {
        self.picker = Some(Arc::new(act));
        self.extensions = self.extensions.with_policy(decide);
        self
    }

    /// Signs session tokens (GEP-1619 session persistence,
    /// [`crate::session`]) with `key`: proxies given the same key keep
    /// each other's sessions. Default is a key drawn at random when the
    /// plug-ins are made.
    pub fn with_session_key(mut self, key: &crate::session::SessionKey) -> Plugins {
        self.sessions = Arc::new(crate::session::Sessions::new(key));
        self
    }

    pub(crate) fn sessions(&self) -> &Arc<crate::session::Sessions> {
        &self.sessions
    }

    /// The retry budgets of `XBackendTrafficPolicy` (`crate::retry_budget`):
    /// kept across reloads, as the plug-ins are.
    pub(crate) fn retry_budgets(&self) -> &crate::retry_budget::RetryBudgets {
        &self.retry_budgets
    }

    /// The endpoint picker, if one is set.
    pub fn endpoint_picker(&self) -> Option<&dyn EndpointPicker> {
        self.picker.as_deref()
    }

    /// The policy plug-ins, by kind.
    pub fn policy_plugins(&self) -> &[(ExtensionKind, Arc<dyn PolicyPlugin>)] {
        &self.policies
    }

    /// The extensions the engine and the loader run with.
    pub fn extensions(&self) -> &Extensions {
        &self.extensions
    }

    /// The plug-in of a filter kind.
    pub fn filter(&self, kind: ExtensionKind) -> Option<&dyn FilterPlugin> {
        self.filters.get(&kind).map(|f| &**f)
    }
}

impl fmt::Debug for Plugins {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plugins")
            .field("extensions", &self.extensions)
            .field("filters", &self.filters.keys().collect::<Vec<_>>())
            .field(
                "policies",
                &self.policies.iter().map(|(k, _)| k).collect::<Vec<_>>(),
            )
            .field("picker", &self.picker.as_ref().map(|p| p.kind()))
            .finish()
    }
}
