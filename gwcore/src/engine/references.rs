//! A route's references: backendRefs (with the BackendTLSPolicy of each,
//! [`Ctx::backend_tls`]), mirrors, ExternalAuth services, ExtensionRef
//! filters, ReferenceGrants, and the checks of rule regular expressions.

use super::*;
use crate::values::{MatchType, PathMatchType};

impl Ctx<'_> {
    /// Resolves every backendRef of a route; returns its rules and the first
    /// failing reference.
    pub(super) fn resolve_rules(
        &self,
        o: &Object,
    ) -> (RouteRules, Result<(), Fail>, Vec<(usize, String)>) {
        // The rules are kept while the route is attached (shared by every
        // listener it attaches to and by the table), so each Vec is shrunk
        // to its length.
        let mut invalid: Vec<(usize, String)> = Vec::new();
        let meta = o.meta();
        let kind = o.kind();
        let mut first: Result<(), Fail> = Ok(());
        let mut note = |r: &ResolvedBackend| {
            if let (Ok(()), Err(e)) = (&first, &r.target) {
                first = Err((e.reason, e.message.clone()));
            }
        };
        let rules = match o {
            Object::HttpRoute(r) => {
                let mut out = Vec::new();
                for (i, rule) in r.spec.rules.iter().enumerate() {
                    let refs = self.rule_refs(
                        &rule.filters,
                        &rule.backend_refs,
                        kind,
                        meta.ns(),
                        &mut note,
                    );
                    if let Err(m) = http_rule_regexes(rule) {
                        invalid.push((i, m));
                        continue;
                    }
                    let session_persistence =
                        match session_persistence(rule.session_persistence.as_deref(), meta, i) {
                            Ok(sp) => sp,
                            Err(m) => {
                                invalid.push((i, m));
                                continue;
                            }
                        };
                    out.push(HttpRule {
                        index: i,
                        name: rule.name.clone(),
                        matches: rule.matches.clone(),
                        filters: rule.filters.clone(),
                        extension_refs: refs.extension_refs,
                        external_auth: refs.external_auth,
                        mirrors: refs.mirrors,
                        backends: refs.backends,
                        timeouts: rule.timeouts.clone(),
                        retry: rule.retry.clone(),
                        session_persistence,
                    });
                }
                out.shrink_to_fit();
                RouteRules::Http(Arc::new(out))
            }
            Object::GrpcRoute(r) => {
                let mut out = Vec::new();
                for (i, rule) in r.spec.rules.iter().enumerate() {
                    // A GRPCRoute has no ExternalAuth filter (validation
                    // refuses it), so `refs.external_auth` is empty.
                    let refs = self.rule_refs(
                        &rule.filters,
                        &rule.backend_refs,
                        kind,
                        meta.ns(),
                        &mut note,
                    );
                    if let Err(m) = grpc_rule_regexes(rule) {
                        invalid.push((i, m));
                        continue;
                    }
                    let session_persistence =
                        match session_persistence(rule.session_persistence.as_deref(), meta, i) {
                            Ok(sp) => sp,
                            Err(m) => {
                                invalid.push((i, m));
                                continue;
                            }
                        };
                    out.push(GrpcRule {
                        index: i,
                        name: rule.name.clone(),
                        matches: rule.matches.clone(),
                        filters: rule.filters.clone(),
                        extension_refs: refs.extension_refs,
                        mirrors: refs.mirrors,
                        backends: refs.backends,
                        session_persistence,
                    });
                }
                out.shrink_to_fit();
                RouteRules::Grpc(Arc::new(out))
            }
            Object::TlsRoute(r) | Object::TcpRoute(r) | Object::UdpRoute(r) => {
                let out = r
                    .spec
                    .rules
                    .iter()
                    .enumerate()
                    .map(|(i, rule)| L4Rule {
                        index: i,
                        name: rule.name.clone(),
                        backends: self.backends(&rule.backend_refs, kind, meta.ns(), &mut note),
                    })
                    .collect();
                RouteRules::L4(Arc::new(out))
            }
            _ => RouteRules::L4(Arc::new(Vec::new())),
        };
        (rules, first, invalid)
    }

    /// Resolves backendRefs, noting each.
    fn backends(
        &self,
        refs: &[BackendRef],
        kind: Kind,
        ns: &str,
        note: &mut dyn FnMut(&ResolvedBackend),
    ) -> Vec<ResolvedBackend> {
        refs.iter()
            .map(|b| {
                let r = self.backend(b, kind, ns);
                note(&r);
                r
            })
            .collect()
    }

    /// What HTTPRoute and GRPCRoute rules resolve alike: the mirrors,
    /// `ExternalAuth` services and `ExtensionRef`s of the rule's filters,
    /// then its backends (each with its own filters' `ExternalAuth`
    /// services and `ExtensionRef`s), noted in that order.
    fn rule_refs(
        &self,
        filters: &[HttpRouteFilter],
        refs: &[BackendRef],
        kind: Kind,
        ns: &str,
        note: &mut dyn FnMut(&ResolvedBackend),
    ) -> RuleRefs {
        let mirrors = self.mirrors(filters, kind, ns, note);
        let external_auth = self.external_auth(filters, kind, ns, note);
        let extension_refs = self.extension_refs(filters, ns, note);
        let mut backends = self.backends(refs, kind, ns, note);
        for b in &mut backends {
            b.external_auth = self.external_auth(&b.filters, kind, ns, note);
            b.extension_refs = self.extension_refs(&b.filters, ns, note);
        }
        RuleRefs {
            mirrors,
            external_auth,
            extension_refs,
            backends,
        }
    }

    /// Resolves the backendRefs of the `ExternalAuth` filters of one list,
    /// in filter order, as any backendRef (a Service port; across
    /// namespaces only with a ReferenceGrant). Each that fails is noted:
    /// ResolvedRefs=False with its reason (`BackendNotFound`,
    /// `RefNotPermitted`, `InvalidKind`...), and the table answers the
    /// requests of its rule 500. Spec (HTTPExternalAuthFilter): "If there
    /// is any problem communicating with the external service, this filter
    /// MUST fail closed"; (HTTPRouteFilter): a filter that cannot be
    /// resolved "MUST NOT be skipped".
    fn external_auth(
        &self,
        filters: &[HttpRouteFilter],
        kind: Kind,
        ns: &str,
        note: &mut dyn FnMut(&ResolvedBackend),
    ) -> Vec<Result<BackendTarget, BackendError>> {
        let mut out = Vec::new();
        for a in filters.iter().filter_map(|f| f.external_auth.as_ref()) {
            let mut r = self.backend(&a.backend_ref, kind, ns);
            if let Err(e) = &mut r.target {
                e.message = format!(
                    "ExternalAuth backendRef: {}; matching requests get 500",
                    e.message
                );
            }
            note(&r);
            out.push(r.target);
        }
        out
    }

    /// Resolves the `ExtensionRef` filters of one list: the objects they
    /// name, in filter order, each of a registered kind, present in the
    /// route's namespace and passing its kind's check. Each that fails is
    /// noted (and its requests get 500 from the table): spec
    /// (RouteConditionReason): `InvalidKind` for "an unknown or
    /// unsupported Group and/or Kind", `BackendNotFound` for "a resource
    /// that does not exist"; an object its extension refuses is
    /// `InvalidParameters`.
    pub(super) fn extension_refs(
        &self,
        filters: &[HttpRouteFilter],
        ns: &str,
        note: &mut dyn FnMut(&ResolvedBackend),
    ) -> Vec<Arc<ExtensionObject>> {
        let mut out = Vec::new();
        for f in filters {
            let Some(x) = &f.extension_ref else { continue };
            let fail = |reason: Reason, message: String| ResolvedBackend {
                weight: 0,
                target: Err(BackendError { reason, message }),
                filters: vec![],
                extension_refs: vec![],
                external_auth: vec![],
            };
            let Some(filter) = self.opts.extensions.filter(&x.group, &x.kind) else {
                note(&fail(
                    Reason::InvalidKind,
                    format!(
                        "ExtensionRef filter {}/{} {}: no extension of this controller implements that kind; matching requests get 500",
                        x.group, x.kind, x.name
                    ),
                ));
                continue;
            };
            let key = ObjectKey::new(Kind::Extension(filter.kind()), ns, x.name.clone());
            let Some(Object::Extension(obj)) = self.snap.get(&key) else {
                note(&fail(
                    Reason::BackendNotFound,
                    format!(
                        "ExtensionRef filter {}/{} {ns}/{} does not exist; matching requests get 500",
                        x.group, x.kind, x.name
                    ),
                ));
                continue;
            };
            if let Err(m) = filter.check(obj) {
                note(&fail(
                    Reason::InvalidParameters,
                    format!(
                        "ExtensionRef filter {}/{} {ns}/{}: {m}; matching requests get 500",
                        x.group, x.kind, x.name
                    ),
                ));
                continue;
            }
            out.push(Arc::new(obj.clone()));
        }
        out
    }

    pub(super) fn mirrors(
        &self,
        filters: &[HttpRouteFilter],
        kind: Kind,
        ns: &str,
        note: &mut dyn FnMut(&ResolvedBackend),
    ) -> Vec<Mirror> {
        let mut out = Vec::new();
        for f in filters {
            let Some(m) = &f.request_mirror else { continue };
            let r = self.backend(&m.backend_ref, kind, ns);
            note(&r);
            if let Ok(target) = r.target {
                let fraction = match (&m.percent, &m.fraction) {
                    (Some(p), _) => f64::from(*p) / 100.0,
                    (None, Some(fr)) => {
                        f64::from(fr.numerator) / f64::from(fr.denominator.unwrap_or(100).max(1))
                    }
                    (None, None) => 1.0,
                };
                out.push(Mirror { target, fraction });
            }
        }
        out
    }

    /// The Services that backendRefs (and mirrors) of extension backend
    /// kinds stand for, resolved now: a change to one recomputes the route.
    pub(super) fn extension_backend_services(&self, o: &Object) -> Vec<ObjectKey> {
        let ns = o.meta().ns();
        let mut refs: Vec<&BackendRef> = Vec::new();
        visit_refs(o, &mut |b| refs.push(b), &mut |_| {});
        let mut out = Vec::new();
        for b in refs {
            let (Some(group), Some(kind)) = (b.group.as_deref(), b.kind.as_deref()) else {
                continue;
            };
            let Some(x) = self.opts.extensions.backend(group, kind) else {
                continue;
            };
            let bns = b.namespace.as_deref().unwrap_or(ns);
            let key = ObjectKey::new(Kind::Extension(x.kind()), bns, b.name.clone());
            if let Some(Object::Extension(obj)) = self.snap.get(&key)
                && let Ok(sp) = x.resolve(obj, b.port.and_then(|p| u16::try_from(p).ok()))
            {
                out.push(ObjectKey::new(Kind::Service, sp.namespace, sp.name));
            }
        }
        out
    }

    pub(super) fn backend(
        &self,
        b: &BackendRef,
        from_kind: Kind,
        route_ns: &str,
    ) -> ResolvedBackend {
        let group = b.group.as_deref().unwrap_or("");
        let kind = b.kind.as_deref().unwrap_or("Service");
        let ns = b.namespace.as_deref().unwrap_or(route_ns);
        let weight = u32::try_from(b.weight.unwrap_or(1)).unwrap_or(0);
        let err = |reason: Reason, message: String| ResolvedBackend {
            weight,
            target: Err(BackendError { reason, message }),
            filters: b.filters.clone(),
            extension_refs: Vec::new(),
            external_auth: Vec::new(),
        };
        let is_service = group.is_empty() && kind == "Service";
        let extension = (!is_service)
            .then(|| self.opts.extensions.backend(group, kind))
            .flatten();
        if !is_service && extension.is_none() {
            return err(
                Reason::InvalidKind,
                format!("backendRef {group}/{kind} {} is not a Service", b.name),
            );
        }
        if !self.permitted(from_kind.as_str(), route_ns, group, kind, ns, &b.name) {
            return err(
                Reason::RefNotPermitted,
                format!(
                    "{kind} {ns}/{} is in another namespace and no ReferenceGrant allows it",
                    b.name
                ),
            );
        }
        // A backend kind of an extension stands for a Service port.
        let (ns, name, port) = match extension {
            None => (ns.to_owned(), b.name.clone(), b.port),
            Some(x) => {
                let key = ObjectKey::new(Kind::Extension(x.kind()), ns, b.name.clone());
                let Some(Object::Extension(obj)) = self.snap.get(&key) else {
                    return err(
                        Reason::BackendNotFound,
                        format!("{kind} {ns}/{} does not exist", b.name),
                    );
                };
                let port = b.port.and_then(|p| u16::try_from(p).ok());
                match x.resolve(obj, port) {
                    Ok(sp) => (sp.namespace, sp.name, Some(i32::from(sp.port))),
                    Err(m) => {
                        return err(
                            Reason::BackendNotFound,
                            format!("{kind} {ns}/{}: {m}", b.name),
                        );
                    }
                }
            }
        };
        let (ns, name) = (ns.as_str(), &name);
        let Some(Object::Service(svc)) =
            self.snap
                .get(&ObjectKey::new(Kind::Service, ns, name.clone()))
        else {
            return err(
                Reason::BackendNotFound,
                format!("Service {ns}/{name} does not exist"),
            );
        };
        let Some(port) = port else {
            return err(
                Reason::BackendNotFound,
                format!("backendRef to Service {ns}/{name} has no port"),
            );
        };
        let sp = svc.spec.ports.iter().find(|p| p.port == port);
        let Some(sp) = sp else {
            return err(
                Reason::BackendNotFound,
                format!("Service {ns}/{name} has no port {port}"),
            );
        };
        if let Some(ap) = &sp.app_protocol
            && !SUPPORTED_APP_PROTOCOLS
                .iter()
                .any(|p| p.eq_ignore_ascii_case(ap))
        {
            return err(
                Reason::UnsupportedProtocolBackend,
                format!(
                    "Service {ns}/{name} port {port} has appProtocol {ap}, which gwcore does not speak"
                ),
            );
        }
        ResolvedBackend {
            weight,
            target: Ok(BackendTarget {
                service: ObjectKey::new(Kind::Service, ns, name.clone()),
                port: u16::try_from(port).unwrap_or(0),
                app_protocol: sp.app_protocol.clone(),
                tls: self.backend_tls(ns, name, sp.name.as_deref()),
            }),
            filters: b.filters.clone(),
            extension_refs: Vec::new(),
            external_auth: Vec::new(),
        }
    }
}

/// What one rule's references resolve to ([`Ctx::rule_refs`]).
struct RuleRefs {
    mirrors: Vec<Mirror>,
    external_auth: Vec<Result<BackendTarget, BackendError>>,
    extension_refs: Vec<Arc<ExtensionObject>>,
    backends: Vec<ResolvedBackend>,
}

/// A rule's `sessionPersistence`, parsed (GEP-1619); its default name is
/// made from the route and the rule's index.
fn session_persistence(
    spec: Option<&crate::model::SessionPersistenceSpec>,
    meta: &crate::model::ObjectMeta,
    rule: usize,
) -> Result<Option<Arc<crate::session::SessionPersistence>>, String> {
    let Some(spec) = spec else {
        return Ok(None);
    };
    let scope = format!("{}/{} rule {rule}", meta.ns(), meta.name);
    crate::session::SessionPersistence::parse(
        spec,
        &scope,
        &format!("spec.rules[{rule}].sessionPersistence"),
    )
    .map(|sp| Some(Arc::new(sp)))
}

/// Checks that every regular expression of an HTTPRoute rule compiles
/// (anchored, size-limited, as the routing table compiles it).
pub(super) fn http_rule_regexes(rule: &crate::model::HttpRouteRule) -> Result<(), String> {
    for m in &rule.matches {
        if let Some(p) = &m.path
            && p.type_ == Some(PathMatchType::RegularExpression)
        {
            regex_ok("path", p.value.as_deref().unwrap_or(""))?;
        }
        for (what, list) in [("header", &m.headers), ("query parameter", &m.query_params)] {
            for h in list
                .iter()
                .filter(|h| h.type_ == Some(MatchType::RegularExpression))
            {
                regex_ok(&format!("{what} {}", h.name), &h.value)?;
            }
        }
    }
    Ok(())
}

/// Checks the regular expressions of a GRPCRoute rule.
pub(super) fn grpc_rule_regexes(rule: &crate::model::GrpcRouteRule) -> Result<(), String> {
    for m in &rule.matches {
        if let Some(mm) = &m.method
            && mm.type_ == Some(MatchType::RegularExpression)
        {
            for v in [&mm.service, &mm.method].into_iter().flatten() {
                regex_ok("method", v)?;
            }
        }
        for h in m
            .headers
            .iter()
            .filter(|h| h.type_ == Some(MatchType::RegularExpression))
        {
            regex_ok(&format!("header {}", h.name), &h.value)?;
        }
    }
    Ok(())
}

pub(super) fn regex_ok(what: &str, pattern: &str) -> Result<(), String> {
    crate::table::compile_regex(pattern)
        .map(|_| ())
        .map_err(|e| format!("{what} regular expression {pattern:?} is not supported: {e}"))
}

/// The Services a route refers to (backendRefs, backend filters' and rule
/// filters' mirrors and ExternalAuth services), and the namespaces of its
/// cross-namespace references.
pub(super) fn route_refs(
    o: &Object,
    ext: &Extensions,
    services: &mut BTreeSet<ObjectKey>,
    grant_ns: &mut BTreeSet<String>,
) {
    let ns = o.meta().ns();
    let mut extension_keys = Vec::new();
    let mut add = |b: &BackendRef| {
        let bns = b.namespace.as_deref().unwrap_or(ns);
        let kind = match (b.group.as_deref(), b.kind.as_deref()) {
            (None | Some(""), None | Some("Service")) => Kind::Service,
            (g, Some(k)) => ext
                .backend(g.unwrap_or(""), k)
                .map_or(Kind::Service, |x| Kind::Extension(x.kind())),
            _ => Kind::Service,
        };
        services.insert(ObjectKey::new(kind, bns, b.name.clone()));
        if bns != ns {
            grant_ns.insert(bns.to_string());
        }
    };
    // The objects of ExtensionRef filters (of registered kinds) count
    // with the Services: a change to one recomputes the route.
    let mut filter = |f: &HttpRouteFilter| {
        if let Some(x) = &f.extension_ref
            && let Some(k) = ext.kind(&x.group, &x.kind)
        {
            extension_keys.push(ObjectKey::new(Kind::Extension(k), ns, x.name.clone()));
        }
    };
    visit_refs(o, &mut add, &mut filter);
    services.extend(extension_keys);
}

/// Walks a route's references: `backend` sees every backendRef (of rules,
/// and of RequestMirror and ExternalAuth filters, the rules' and the
/// backends' own), `filter` every filter of a rule or a backendRef.
fn visit_refs<'o>(
    o: &'o Object,
    backend: &mut dyn FnMut(&'o BackendRef),
    filter: &mut dyn FnMut(&'o HttpRouteFilter),
) {
    let filters = |fs: &'o [HttpRouteFilter],
                   backend: &mut dyn FnMut(&'o BackendRef),
                   filter: &mut dyn FnMut(&'o HttpRouteFilter)| {
        for f in fs {
            if let Some(m) = &f.request_mirror {
                backend(&m.backend_ref);
            }
            if let Some(a) = &f.external_auth {
                backend(&a.backend_ref);
            }
            filter(f);
        }
    };
    let mut rule = |rule_filters: &'o [HttpRouteFilter], refs: &'o [BackendRef]| {
        filters(rule_filters, backend, filter);
        for b in refs {
            backend(b);
            filters(&b.filters, backend, filter);
        }
    };
    match o {
        Object::HttpRoute(r) => {
            for x in &r.spec.rules {
                rule(&x.filters, &x.backend_refs);
            }
        }
        Object::GrpcRoute(r) => {
            for x in &r.spec.rules {
                rule(&x.filters, &x.backend_refs);
            }
        }
        Object::TlsRoute(r) | Object::TcpRoute(r) | Object::UdpRoute(r) => {
            for x in &r.spec.rules {
                rule(&[], &x.backend_refs);
            }
        }
        _ => {}
    }
}

/// `appProtocol`s gwcore can speak to a backend.
pub(super) const SUPPORTED_APP_PROTOCOLS: [&str; 6] = [
    "http",
    "kubernetes.io/h2c",
    "kubernetes.io/ws",
    "kubernetes.io/wss",
    "https",
    "h2c",
];

pub(super) fn route_backends(rules: &RouteRules) -> Box<dyn Iterator<Item = &BackendTarget> + '_> {
    fn ok(bs: &[ResolvedBackend]) -> impl Iterator<Item = &BackendTarget> {
        bs.iter().filter_map(|b| b.target.as_ref().ok())
    }
    match rules {
        RouteRules::Http(rs) => Box::new(rs.iter().flat_map(|r| ok(&r.backends))),
        RouteRules::Grpc(rs) => Box::new(rs.iter().flat_map(|r| ok(&r.backends))),
        RouteRules::L4(rs) => Box::new(rs.iter().flat_map(|r| ok(&r.backends))),
    }
}
