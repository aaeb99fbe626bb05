//! Defaults and validation, as the API server applies them from the CRDs.
//!
//! The API server fills in `kubebuilder:default`s and rejects objects that
//! break the OpenAPI schema or a CEL rule. gwcore reads files that never went
//! through an API server, so it does both here: [`validate`] applies the
//! defaults in place and returns every failure; an object with failures is
//! left out, as the API server would have refused it.

use crate::values::{
    AddressType, Duration, ExternalAuthProtocol, FilterType, FromNamespaces, MatchType,
    PathMatchType, PathModifierType, ProtocolType, TlsModeType,
};
use std::collections::BTreeSet;

use crate::hostname;
use crate::model::{
    BackendRef, ExternalAuth, GATEWAY_GROUP, GrpcRoute, HttpHeaderMatch, HttpPathMatch, HttpRoute,
    HttpRouteFilter, HttpRouteMatch, HttpRouteRule, L4Route, Listener, Object, ParentReference,
};
use crate::selector;

/// One validation failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Field path, e.g. `spec.listeners[1].hostname`.
    pub field: String,
    /// What is wrong and what was expected.
    pub message: String,
}

#[derive(Default)]
struct Errs(Vec<FieldError>);

impl Errs {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    fn max_items(&mut self, field: &str, len: usize, max: usize) {
        if len > max {
            self.push(field, format!("has {len} items; at most {max} are allowed"));
        }
    }
}

/// Applies the CRD defaults to `obj` and returns every validation failure.
/// An object with failures must be left out, as the API server would reject it.
pub fn validate(obj: &mut Object) -> Vec<FieldError> {
    let mut e = Errs::default();
    let meta = obj.meta();
    if meta.name.is_empty() {
        e.push("metadata.name", "required");
    } else if meta.name.len() > 253 || !is_dns_subdomain(&meta.name) {
        e.push(
            "metadata.name",
            format!(
                "{:?} is not a valid name: lowercase letters, digits, '-' and '.', at most 253 characters",
                meta.name
            ),
        );
    }
    match obj {
        Object::GatewayClass(gc) => {
            if gc.spec.controller_name.is_empty() {
                e.push("spec.controllerName", "required");
            }
        }
        Object::Gateway(gw) => {
            if gw.spec.gateway_class_name.is_empty() {
                e.push("spec.gatewayClassName", "required");
            }
            listeners(&mut e, "spec.listeners", &mut gw.spec.listeners, 1);
            e.max_items("spec.addresses", gw.spec.addresses.len(), 16);
            for (i, a) in gw.spec.addresses.iter_mut().enumerate() {
                let ty = a.type_.get_or_insert(AddressType::IpAddress);
                if *ty == AddressType::IpAddress
                    && !a.value.is_empty()
                    && a.value.parse::<std::net::IpAddr>().is_err()
                {
                    e.push(
                        format!("spec.addresses[{i}].value"),
                        format!("{:?} is not an IP address", a.value),
                    );
                }
            }
            if let Some(al) = &gw.spec.allowed_listeners
                && let Some(ns) = &al.namespaces
            {
                from_field(
                    &mut e,
                    "spec.allowedListeners.namespaces",
                    ns,
                    &["All", "Same", "Selector", "None"],
                );
            }
        }
        Object::ListenerSet(ls) => {
            if ls.spec.parent_ref.name.is_empty() {
                e.push("spec.parentRef.name", "required");
            }
            listeners(&mut e, "spec.listeners", &mut ls.spec.listeners, 1);
        }
        Object::HttpRoute(r) => http_route(&mut e, r),
        Object::GrpcRoute(r) => grpc_route(&mut e, r),
        Object::TlsRoute(r) => l4_route(&mut e, r, true),
        Object::TcpRoute(r) | Object::UdpRoute(r) => l4_route(&mut e, r, false),
        Object::ReferenceGrant(g) => {
            if g.spec.from.is_empty() {
                e.push("spec.from", "at least one entry is required");
            }
            if g.spec.to.is_empty() {
                e.push("spec.to", "at least one entry is required");
            }
            e.max_items("spec.from", g.spec.from.len(), 16);
            e.max_items("spec.to", g.spec.to.len(), 16);
            for (i, f) in g.spec.from.iter().enumerate() {
                if f.kind.is_empty() {
                    e.push(format!("spec.from[{i}].kind"), "required");
                }
                if f.namespace.is_empty() {
                    e.push(format!("spec.from[{i}].namespace"), "required");
                }
            }
            for (i, t) in g.spec.to.iter().enumerate() {
                if t.kind.is_empty() {
                    e.push(format!("spec.to[{i}].kind"), "required");
                }
            }
        }
        Object::BackendTlsPolicy(p) => {
            if p.spec.target_refs.is_empty() {
                e.push("spec.targetRefs", "at least one target is required");
            }
            e.max_items("spec.targetRefs", p.spec.target_refs.len(), 16);
            if p.spec.validation.hostname.is_empty() {
                e.push("spec.validation.hostname", "required");
            }
        }
        Object::Namespace(n) if !n.metadata.name.is_empty() && !is_dns_label(&n.metadata.name) => {
            e.push(
                "metadata.name",
                format!(
                    "{:?} is not a valid namespace name: a DNS label of at most 63 characters",
                    n.metadata.name
                ),
            );
        }
        Object::Service(s) => {
            if !s.metadata.name.is_empty() && !is_dns_label(&s.metadata.name) {
                e.push(
                    "metadata.name",
                    format!(
                        "{:?} is not a valid Service name: a DNS label of at most 63 characters",
                        s.metadata.name
                    ),
                );
            }
            for (i, p) in s.spec.ports.iter().enumerate() {
                port_range(&mut e, &format!("spec.ports[{i}].port"), p.port);
            }
        }
        Object::Namespace(_)
        | Object::EndpointSlice(_)
        | Object::Secret(_)
        | Object::ConfigMap(_)
        // An extension's objects are checked by the extension.
        | Object::Extension(_) => {}
    }
    e.0
}

fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// RFC 1123 subdomain as Kubernetes checks it: at most 253 characters of
/// dot-separated alphanumeric runs with inner dashes (no per-label limit).
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253
        && s.split('.').all(|l| {
            !l.is_empty()
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        })
}

fn port_range(e: &mut Errs, field: &str, port: i32) {
    if !(1..=65535).contains(&port) {
        e.push(field, format!("{port} is not a port number (1 to 65535)"));
    }
}

fn from_field(e: &mut Errs, field: &str, ns: &crate::model::RouteNamespaces, allowed: &[&str]) {
    if let Some(from) = &ns.from
        && !allowed.contains(&from.as_str())
    {
        e.push(
            format!("{field}.from"),
            format!("{from:?} is not one of {}", allowed.join(", ")),
        );
    }
    if let Some(sel) = &ns.selector
        && let Err(err) = selector::check(sel)
    {
        e.push(format!("{field}.selector"), err.to_string());
    }
}

fn section_name_ok(s: &str) -> bool {
    s.len() <= 253 && is_dns_subdomain(s)
}

fn listeners(e: &mut Errs, field: &str, ls: &mut [Listener], min: usize) {
    if ls.len() < min {
        e.push(field, format!("at least {min} listener is required"));
    }
    e.max_items(field, ls.len(), 64);
    let mut names = BTreeSet::new();
    let mut combos = BTreeSet::new();
    for (i, l) in ls.iter_mut().enumerate() {
        let f = format!("{field}[{i}]");
        if l.name.is_empty() {
            e.push(format!("{f}.name"), "required");
        } else if !section_name_ok(&l.name) {
            e.push(
                format!("{f}.name"),
                format!("{:?} is not a valid section name", l.name),
            );
        } else if !names.insert(l.name.clone()) {
            e.push(
                format!("{f}.name"),
                format!("duplicate listener name {:?}; names must be unique", l.name),
            );
        }
        port_range(e, &format!("{f}.port"), l.port);
        if l.protocol.as_str().is_empty() {
            e.push(format!("{f}.protocol"), "required");
        } else if !protocol_ok(l.protocol.as_str()) {
            e.push(
                format!("{f}.protocol"),
                format!("{:?} is not a valid protocol name", l.protocol),
            );
        }
        if let Some(h) = &l.hostname
            && !hostname::is_valid(h)
        {
            e.push(
                format!("{f}.hostname"),
                format!("{h:?} is not a valid hostname: lowercase DNS name, optionally starting with '*.'; no IP addresses"),
            );
        }
        if matches!(l.protocol, ProtocolType::Tcp | ProtocolType::Udp) && l.hostname.is_some() {
            e.push(
                format!("{f}.hostname"),
                format!("must not be set for protocol {}", l.protocol),
            );
        }
        match l.protocol.as_str() {
            "HTTP" | "TCP" | "UDP" if l.tls.is_some() => {
                e.push(
                    format!("{f}.tls"),
                    format!("must not be set for protocol {}", l.protocol),
                );
            }
            // The CRDs' CEL requires `tls` (with a mode) for TLS only; an
            // HTTPS listener without it is accepted by the API server and
            // marked invalid by the engine (Accepted=False, Invalid).
            "TLS" if l.tls.is_none() => {
                e.push(
                    format!("{f}.tls"),
                    format!("required for protocol {}", l.protocol),
                );
            }
            _ => {}
        }
        if let Some(tls) = &mut l.tls {
            let mode = tls.mode.get_or_insert(TlsModeType::Terminate);
            match mode {
                TlsModeType::Terminate => {
                    if tls.certificate_refs.is_empty() && tls.options.is_empty() {
                        e.push(
                            format!("{f}.tls.certificateRefs"),
                            "certificateRefs or options must be set when mode is Terminate",
                        );
                    }
                }
                TlsModeType::Passthrough => {
                    if l.protocol == ProtocolType::Https {
                        e.push(
                            format!("{f}.tls.mode"),
                            "Passthrough is not allowed for protocol HTTPS",
                        );
                    }
                }
                TlsModeType::Other(other) => e.push(
                    format!("{f}.tls.mode"),
                    format!("{other:?} is not Terminate or Passthrough"),
                ),
            }
            e.max_items(
                &format!("{f}.tls.certificateRefs"),
                tls.certificate_refs.len(),
                64,
            );
            for c in &mut tls.certificate_refs {
                c.group.get_or_insert_with(String::new);
                c.kind.get_or_insert_with(|| "Secret".into());
            }
        }
        let ar = l.allowed_routes.get_or_insert_with(Default::default);
        let ns = ar.namespaces.get_or_insert_with(Default::default);
        ns.from.get_or_insert(FromNamespaces::Same);
        from_field(
            e,
            &format!("{f}.allowedRoutes.namespaces"),
            ns,
            &["All", "Same", "Selector"],
        );
        e.max_items(&format!("{f}.allowedRoutes.kinds"), ar.kinds.len(), 8);
        for k in &mut ar.kinds {
            k.group.get_or_insert_with(|| GATEWAY_GROUP.into());
        }
        let combo = (l.port, l.protocol.clone(), l.hostname.clone());
        if !combos.insert(combo) {
            e.push(
                f.clone(),
                "the combination of port, protocol and hostname must be unique for each listener",
            );
        }
    }
}

fn protocol_ok(p: &str) -> bool {
    let simple = |s: &str| {
        !s.is_empty()
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    };
    match p.split_once('/') {
        None => simple(p),
        Some((domain, name)) => {
            is_dns_subdomain(domain)
                && !name.is_empty()
                && name.bytes().all(|b| b.is_ascii_alphanumeric())
        }
    }
}

fn parent_refs(e: &mut Errs, refs: &mut [ParentReference]) {
    e.max_items("spec.parentRefs", refs.len(), 32);
    for (i, p) in refs.iter_mut().enumerate() {
        p.group.get_or_insert_with(|| GATEWAY_GROUP.into());
        p.kind.get_or_insert_with(|| "Gateway".into());
        if p.name.is_empty() {
            e.push(format!("spec.parentRefs[{i}].name"), "required");
        }
        if let Some(port) = p.port {
            port_range(e, &format!("spec.parentRefs[{i}].port"), port);
        }
    }
    // CEL: "sectionName or port must be specified when parentRefs includes 2
    // or more references to the same parent" and "sectionName or port must be
    // unique when parentRefs includes 2 or more references to the same parent".
    for i in 0..refs.len() {
        for j in (i + 1)..refs.len() {
            let (a, b) = (&refs[i], &refs[j]);
            let same_parent = a.group == b.group
                && a.kind == b.kind
                && a.name == b.name
                && a.namespace.as_deref().unwrap_or("") == b.namespace.as_deref().unwrap_or("");
            if !same_parent {
                continue;
            }
            let unset = |p: &ParentReference| {
                p.section_name.as_deref().unwrap_or("").is_empty() && p.port.is_none()
            };
            if unset(a) || unset(b) {
                e.push(
                    format!("spec.parentRefs[{j}]"),
                    "sectionName or port must be set when parentRefs names the same parent twice",
                );
            } else if a.section_name == b.section_name && a.port == b.port {
                e.push(
                    format!("spec.parentRefs[{j}]"),
                    "duplicate parentRef: sectionName or port must be unique for the same parent",
                );
            }
        }
    }
}

fn hostnames(e: &mut Errs, hs: &[String]) {
    e.max_items("spec.hostnames", hs.len(), 16);
    for (i, h) in hs.iter().enumerate() {
        if !hostname::is_valid(h) {
            e.push(
                format!("spec.hostnames[{i}]"),
                format!("{h:?} is not a valid hostname: lowercase DNS name, optionally starting with '*.'; no IP addresses"),
            );
        }
    }
}

/// The route kind whose filters a backendRef may have (HTTPRoute and
/// GRPCRoute backendRefs have filters; others and a filter's own
/// backendRef have none).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FilterOwner {
    Http,
    Grpc,
}

fn backend_ref(e: &mut Errs, f: &str, b: &mut BackendRef, owner: Option<FilterOwner>) {
    b.group.get_or_insert_with(String::new);
    b.kind.get_or_insert_with(|| "Service".into());
    let w = *b.weight.get_or_insert(1);
    if !(0..=1_000_000).contains(&w) {
        e.push(
            format!("{f}.weight"),
            format!("{w} is not between 0 and 1000000"),
        );
    }
    if b.name.is_empty() {
        e.push(format!("{f}.name"), "required");
    }
    match b.port {
        Some(p) => port_range(e, &format!("{f}.port"), p),
        None if b.group.as_deref() == Some("") && b.kind.as_deref() == Some("Service") => {
            e.push(format!("{f}.port"), "required when referring to a Service");
        }
        None => {}
    }
    if let Some(owner) = owner {
        filters(e, &format!("{f}.filters"), &mut b.filters, None, owner);
    }
}

const HEADER_NAME_CHARS: &[u8] = b"!#$%&'*+-.^_`|~";

fn header_name_ok(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 256
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || HEADER_NAME_CHARS.contains(&b))
}

fn header_matches(e: &mut Errs, f: &str, hs: &mut Vec<HttpHeaderMatch>, header: bool) {
    e.max_items(f, hs.len(), 16);
    let mut seen = BTreeSet::new();
    for (i, h) in hs.iter_mut().enumerate() {
        let ty = h.type_.get_or_insert(MatchType::Exact);
        if !ty.is_known() {
            e.push(
                format!("{f}[{i}].type"),
                format!("{ty:?} is not Exact or RegularExpression"),
            );
        }
        // A regular expression the implementation cannot compile is not an
        // API error: the engine drops that rule (PartiallyInvalid).
        if !header_name_ok(&h.name) {
            e.push(
                format!("{f}[{i}].name"),
                format!("{:?} is not a valid HTTP header or parameter name", h.name),
            );
        }
        // The list is a map keyed by name: the API server refuses the same
        // name twice.
        if !seen.insert(h.name.clone()) {
            e.push(
                format!("{f}[{i}].name"),
                format!("duplicate name {:?}", h.name),
            );
        }
        if h.value.len() > 4096 {
            e.push(format!("{f}[{i}].value"), "longer than 4096 characters");
        }
    }
    // Header names are case-insensitive (query parameter names are not).
    // Spec (HTTPHeaderMatch.name): "only the first entry with an equivalent
    // name MUST be considered for a match. Subsequent entries with an
    // equivalent header name MUST be ignored."
    if header {
        let mut first = BTreeSet::new();
        hs.retain(|h| first.insert(h.name.to_ascii_lowercase()));
    }
}

fn path_match(e: &mut Errs, f: &str, p: &mut HttpPathMatch) {
    let ty = p.type_.get_or_insert_with(|| "PathPrefix".into()).clone();
    let v = p.value.get_or_insert_with(|| "/".into());
    if v.len() > 1024 {
        e.push(format!("{f}.value"), "longer than 1024 characters");
    }
    match ty.as_str() {
        "Exact" | "PathPrefix" => {
            // CEL rules of HTTPPathMatch.
            if !v.starts_with('/') {
                e.push(
                    format!("{f}.value"),
                    format!("{v:?} must be an absolute path (start with '/')"),
                );
            }
            for bad in ["//", "/./", "/../", "%2f", "%2F", "#"] {
                if v.contains(bad) {
                    e.push(
                        format!("{f}.value"),
                        format!("{v:?} must not contain {bad:?}"),
                    );
                }
            }
            if v.ends_with("/..") || v.ends_with("/.") {
                e.push(
                    format!("{f}.value"),
                    format!("{v:?} must not end with '/..' or '/.'"),
                );
            }
        }
        "RegularExpression" => {}
        other => e.push(
            format!("{f}.type"),
            format!("{other:?} is not Exact, PathPrefix or RegularExpression"),
        ),
    }
}

const METHODS: [&str; 9] = [
    "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
];

fn http_match(e: &mut Errs, f: &str, m: &mut HttpRouteMatch) {
    path_match(
        e,
        &format!("{f}.path"),
        m.path.get_or_insert_with(Default::default),
    );
    header_matches(e, &format!("{f}.headers"), &mut m.headers, true);
    header_matches(e, &format!("{f}.queryParams"), &mut m.query_params, false);
    if let Some(method) = &m.method
        && !METHODS.contains(&method.as_str())
    {
        e.push(
            format!("{f}.method"),
            format!("{method:?} is not one of {}", METHODS.join(", ")),
        );
    }
}

fn header_modifier(e: &mut Errs, f: &str, m: &crate::model::HeaderModifier) {
    let mut names = BTreeSet::new();
    for (list, items) in [("set", &m.set), ("add", &m.add)] {
        e.max_items(&format!("{f}.{list}"), items.len(), 16);
        names.clear();
        for (i, h) in items.iter().enumerate() {
            if !header_name_ok(&h.name) {
                e.push(
                    format!("{f}.{list}[{i}].name"),
                    format!("{:?} is not a valid header name", h.name),
                );
            }
            if !names.insert(h.name.to_ascii_lowercase()) {
                e.push(
                    format!("{f}.{list}[{i}].name"),
                    format!("duplicate header {:?}", h.name),
                );
            }
        }
    }
    e.max_items(&format!("{f}.remove"), m.remove.len(), 16);
}

fn path_modifier(e: &mut Errs, f: &str, p: &crate::model::HttpPathModifier) {
    match p.type_.as_str() {
        "ReplaceFullPath" => {
            if p.replace_full_path.is_none() {
                e.push(
                    format!("{f}.replaceFullPath"),
                    "required when type is ReplaceFullPath",
                );
            }
            if p.replace_prefix_match.is_some() {
                e.push(
                    format!("{f}.replacePrefixMatch"),
                    "must not be set when type is ReplaceFullPath",
                );
            }
        }
        "ReplacePrefixMatch" => {
            if p.replace_prefix_match.is_none() {
                e.push(
                    format!("{f}.replacePrefixMatch"),
                    "required when type is ReplacePrefixMatch",
                );
            }
            if p.replace_full_path.is_some() {
                e.push(
                    format!("{f}.replaceFullPath"),
                    "must not be set when type is ReplacePrefixMatch",
                );
            }
        }
        other => e.push(
            format!("{f}.type"),
            format!("{other:?} is not ReplaceFullPath or ReplacePrefixMatch"),
        ),
    }
}

const FILTER_TYPES: [&str; 8] = [
    "RequestHeaderModifier",
    "ResponseHeaderModifier",
    "RequestMirror",
    "RequestRedirect",
    "URLRewrite",
    "CORS",
    "ExternalAuth",
    "ExtensionRef",
];

/// Validates filters; `matches` is given for rule-level filters so that
/// ReplacePrefixMatch can be checked against the rule's path matches.
fn filters(
    e: &mut Errs,
    f: &str,
    fs: &mut [HttpRouteFilter],
    matches: Option<&[HttpRouteMatch]>,
    owner: FilterOwner,
) {
    e.max_items(f, fs.len(), 16);
    let mut seen = BTreeSet::new();
    for (i, flt) in fs.iter_mut().enumerate() {
        let ff = format!("{f}[{i}]");
        let ty = flt.type_.clone();
        if !FILTER_TYPES.contains(&ty.as_str()) {
            e.push(
                format!("{ff}.type"),
                format!("{ty:?} is not one of {}", FILTER_TYPES.join(", ")),
            );
            continue;
        }
        // CEL: each filter's config field must be set exactly when its type says so.
        let set = [
            (
                "RequestHeaderModifier",
                flt.request_header_modifier.is_some(),
                "requestHeaderModifier",
            ),
            (
                "ResponseHeaderModifier",
                flt.response_header_modifier.is_some(),
                "responseHeaderModifier",
            ),
            (
                "RequestMirror",
                flt.request_mirror.is_some(),
                "requestMirror",
            ),
            (
                "RequestRedirect",
                flt.request_redirect.is_some(),
                "requestRedirect",
            ),
            ("URLRewrite", flt.url_rewrite.is_some(), "urlRewrite"),
            ("ExternalAuth", flt.external_auth.is_some(), "externalAuth"),
            ("ExtensionRef", flt.extension_ref.is_some(), "extensionRef"),
        ];
        for (t, present, field) in set {
            if t == ty.as_str() && !present {
                e.push(
                    format!("{ff}.{field}"),
                    format!("required when type is {t}"),
                );
            } else if t != ty.as_str() && present {
                e.push(
                    format!("{ff}.{field}"),
                    format!("must not be set when type is {ty}"),
                );
            }
        }
        if !matches!(
            ty,
            FilterType::RequestMirror | FilterType::ExtensionRef | FilterType::ExternalAuth
        ) && !seen.insert(ty.clone())
        {
            e.push(format!("{ff}.type"), format!("{ty} cannot be repeated"));
        }
        if let Some(a) = &mut flt.external_auth {
            // The GRPCRoute CRD has no ExternalAuth filter type.
            if owner == FilterOwner::Grpc {
                e.push(
                    format!("{ff}.type"),
                    "ExternalAuth is a filter of HTTPRoute, not of GRPCRoute",
                );
            }
            external_auth(e, &format!("{ff}.externalAuth"), a);
        }
        if let Some(m) = &flt.request_header_modifier {
            header_modifier(e, &format!("{ff}.requestHeaderModifier"), m);
        }
        if let Some(m) = &flt.response_header_modifier {
            header_modifier(e, &format!("{ff}.responseHeaderModifier"), m);
        }
        if let Some(m) = &mut flt.request_mirror {
            backend_ref(
                e,
                &format!("{ff}.requestMirror.backendRef"),
                &mut m.backend_ref,
                None,
            );
            if m.percent.is_some() && m.fraction.is_some() {
                e.push(
                    format!("{ff}.requestMirror"),
                    "only one of percent or fraction may be set",
                );
            }
            if let Some(p) = m.percent
                && !(0..=100).contains(&p)
            {
                e.push(
                    format!("{ff}.requestMirror.percent"),
                    format!("{p} is not between 0 and 100"),
                );
            }
            if let Some(fr) = &m.fraction {
                let d = fr.denominator.unwrap_or(100);
                if d <= 0 || fr.numerator < 0 || fr.numerator > d {
                    e.push(
                        format!("{ff}.requestMirror.fraction"),
                        "numerator must be between 0 and the denominator, which must be positive",
                    );
                }
            }
        }
        if let Some(r) = &flt.request_redirect {
            if let Some(s) = &r.scheme
                && s != "http"
                && s != "https"
            {
                e.push(
                    format!("{ff}.requestRedirect.scheme"),
                    format!("{s:?} is not http or https"),
                );
            }
            if let Some(h) = &r.hostname
                && (!hostname::is_valid(h) || hostname::is_wildcard(h))
            {
                e.push(
                    format!("{ff}.requestRedirect.hostname"),
                    format!("{h:?} is not a valid precise hostname"),
                );
            }
            if let Some(p) = r.port {
                port_range(e, &format!("{ff}.requestRedirect.port"), p);
            }
            if let Some(c) = r.status_code
                && ![301, 302, 303, 307, 308].contains(&c)
            {
                e.push(
                    format!("{ff}.requestRedirect.statusCode"),
                    format!("{c} is not one of 301, 302, 303, 307, 308"),
                );
            }
            if let Some(p) = &r.path {
                path_modifier(e, &format!("{ff}.requestRedirect.path"), p);
            }
        }
        if let Some(u) = &flt.url_rewrite {
            if let Some(h) = &u.hostname
                && (!hostname::is_valid(h) || hostname::is_wildcard(h))
            {
                e.push(
                    format!("{ff}.urlRewrite.hostname"),
                    format!("{h:?} is not a valid precise hostname"),
                );
            }
            if let Some(p) = &u.path {
                path_modifier(e, &format!("{ff}.urlRewrite.path"), p);
            }
        }
        // CEL: "When using ReplacePrefixMatch, exactly one PathPrefix match
        // must be specified" (rule-level filters).
        let prefix_replace = flt
            .request_redirect
            .as_ref()
            .and_then(|r| r.path.as_ref())
            .or(flt.url_rewrite.as_ref().and_then(|u| u.path.as_ref()))
            .is_some_and(|p| p.type_ == PathModifierType::ReplacePrefixMatch);
        if prefix_replace && let Some(ms) = matches {
            let all_prefix = ms.len() == 1
                && ms[0].path.as_ref().and_then(|p| p.type_.as_ref())
                    == Some(&PathMatchType::PathPrefix);
            if !all_prefix {
                e.push(
                    ff.clone(),
                    "ReplacePrefixMatch needs the rule to have exactly one PathPrefix match",
                );
            }
        }
    }
    if seen.contains(&FilterType::RequestRedirect) && seen.contains(&FilterType::UrlRewrite) {
        e.push(f, "RequestRedirect and URLRewrite cannot be used together");
    }
}

/// `HTTPExternalAuthFilter`: its schema and CEL rules (GEP-1494).
fn external_auth(e: &mut Errs, f: &str, a: &mut ExternalAuth) {
    backend_ref(e, &format!("{f}.backendRef"), &mut a.backend_ref, None);
    // CEL: "grpc must be specified when protocol is set to 'GRPC'",
    // "protocol must be 'GRPC' when grpc is set", and the same for http.
    match &a.protocol {
        ExternalAuthProtocol::Grpc => {
            if a.grpc.is_none() {
                e.push(format!("{f}.grpc"), "required when protocol is GRPC");
            }
            if a.http.is_some() {
                e.push(format!("{f}.http"), "must not be set when protocol is GRPC");
            }
        }
        ExternalAuthProtocol::Http => {
            if a.http.is_none() {
                e.push(format!("{f}.http"), "required when protocol is HTTP");
            }
            if a.grpc.is_some() {
                e.push(format!("{f}.grpc"), "must not be set when protocol is HTTP");
            }
        }
        other => e.push(
            format!("{f}.protocol"),
            if other.as_str().is_empty() {
                "required: HTTP or GRPC".to_owned()
            } else {
                format!("{:?} is not HTTP or GRPC", other.as_str())
            },
        ),
    }
    if let Some(g) = &a.grpc {
        header_name_set(e, &format!("{f}.grpc.allowedHeaders"), &g.allowed_headers);
    }
    if let Some(h) = &a.http {
        header_name_set(e, &format!("{f}.http.allowedHeaders"), &h.allowed_headers);
        header_name_set(
            e,
            &format!("{f}.http.allowedResponseHeaders"),
            &h.allowed_response_headers,
        );
        if let Some(p) = &h.path
            && !auth_path_ok(p)
        {
            e.push(
                format!("{f}.http.path"),
                format!(
                    "{p:?} is not a path: 1 to 1024 of the characters A-Z a-z 0-9 - / . _ ~ ! $ & ' ( ) * + , ; = : @ or %-escapes"
                ),
            );
        }
    }
    if let Some(max) = a.forward_body.as_ref().and_then(|b| b.max_size)
        && max < 0
    {
        e.push(
            format!("{f}.forwardBody.maxSize"),
            format!("{max} is negative"),
        );
    }
}

/// A `listType=set` list of at most 64 header names: each one once.
fn header_name_set(e: &mut Errs, f: &str, names: &[String]) {
    e.max_items(f, names.len(), 64);
    let mut seen = BTreeSet::new();
    for (i, n) in names.iter().enumerate() {
        if !header_name_ok(n) {
            e.push(
                format!("{f}[{i}]"),
                format!("{n:?} is not a valid HTTP header name"),
            );
        } else if !seen.insert(n.to_ascii_lowercase()) {
            e.push(format!("{f}[{i}]"), format!("duplicate name {n:?}"));
        }
    }
}

/// `externalAuth.http.path`: the CRD's pattern
/// `^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$`, at most 1024
/// characters.
fn auth_path_ok(p: &str) -> bool {
    let b = p.as_bytes();
    if b.is_empty() || b.len() > 1024 {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                if i + 2 >= b.len()
                    || !b[i + 1].is_ascii_hexdigit()
                    || !b[i + 2].is_ascii_hexdigit()
                {
                    return false;
                }
                i += 3;
            }
            c if c.is_ascii_alphanumeric() || b"-/._~!$&'()*+,;=:@".contains(&c) => i += 1,
            _ => return false,
        }
    }
    true
}

fn http_rule(e: &mut Errs, f: &str, r: &mut HttpRouteRule) {
    if r.matches.is_empty() {
        r.matches.push(HttpRouteMatch::default());
    }
    e.max_items(&format!("{f}.matches"), r.matches.len(), 64);
    for (i, m) in r.matches.iter_mut().enumerate() {
        http_match(e, &format!("{f}.matches[{i}]"), m);
    }
    filters(
        e,
        &format!("{f}.filters"),
        &mut r.filters,
        Some(&r.matches),
        FilterOwner::Http,
    );
    e.max_items(&format!("{f}.backendRefs"), r.backend_refs.len(), 16);
    for (i, b) in r.backend_refs.iter_mut().enumerate() {
        backend_ref(
            e,
            &format!("{f}.backendRefs[{i}]"),
            b,
            Some(FilterOwner::Http),
        );
    }
    if let Some(name) = &r.name
        && !section_name_ok(name)
    {
        e.push(
            format!("{f}.name"),
            format!("{name:?} is not a valid section name"),
        );
    }
    if let Some(t) = &r.timeouts {
        for (field, v) in [
            ("request", &t.request),
            ("backendRequest", &t.backend_request),
        ] {
            if let Some(v) = v
                && v.value().is_none()
            {
                e.push(
                    format!("{f}.timeouts.{field}"),
                    format!("{v:?} is not a duration like 10s or 1m30s"),
                );
            }
        }
        if let (Some(req), Some(be)) = (
            t.request.as_ref().and_then(Duration::value),
            t.backend_request.as_ref().and_then(Duration::value),
        ) && !req.is_zero()
            && be > req
        {
            e.push(
                format!("{f}.timeouts.backendRequest"),
                "must be no greater than request",
            );
        }
    }
    if let Some(rt) = &r.retry {
        for (i, c) in rt.codes.iter().enumerate() {
            if !(400..=599).contains(c) {
                e.push(
                    format!("{f}.retry.codes[{i}]"),
                    format!("{c} is not between 400 and 599"),
                );
            }
        }
        if let Some(b) = &rt.backoff
            && b.value().is_none()
        {
            e.push(
                format!("{f}.retry.backoff"),
                format!("{b:?} is not a duration"),
            );
        }
    }
}

fn unique_rule_names<'a>(e: &mut Errs, names: impl Iterator<Item = Option<&'a String>>) {
    let mut seen = BTreeSet::new();
    for (i, n) in names.enumerate() {
        if let Some(n) = n
            && !seen.insert(n.clone())
        {
            e.push(
                format!("spec.rules[{i}].name"),
                format!("duplicate rule name {n:?}"),
            );
        }
    }
}

fn http_route(e: &mut Errs, r: &mut HttpRoute) {
    parent_refs(e, &mut r.spec.parent_refs);
    hostnames(e, &r.spec.hostnames);
    if r.spec.rules.is_empty() {
        r.spec.rules.push(HttpRouteRule::default());
    }
    e.max_items("spec.rules", r.spec.rules.len(), 16);
    for (i, rule) in r.spec.rules.iter_mut().enumerate() {
        http_rule(e, &format!("spec.rules[{i}]"), rule);
    }
    let total: usize = r.spec.rules.iter().map(|r| r.matches.len()).sum();
    if total > 128 {
        e.push(
            "spec.rules",
            format!("{total} matches in all; at most 128 are allowed"),
        );
    }
    unique_rule_names(e, r.spec.rules.iter().map(|r| r.name.as_ref()));
}

fn grpc_route(e: &mut Errs, r: &mut GrpcRoute) {
    parent_refs(e, &mut r.spec.parent_refs);
    hostnames(e, &r.spec.hostnames);
    e.max_items("spec.rules", r.spec.rules.len(), 16);
    for (i, rule) in r.spec.rules.iter_mut().enumerate() {
        let f = format!("spec.rules[{i}]");
        e.max_items(&format!("{f}.matches"), rule.matches.len(), 64);
        for (j, m) in rule.matches.iter_mut().enumerate() {
            let mf = format!("{f}.matches[{j}]");
            if let Some(mm) = &mut m.method {
                let ty = mm.type_.get_or_insert_with(|| "Exact".into()).clone();
                match ty.as_str() {
                    "Exact" => {
                        if mm.service.is_none() && mm.method.is_none() {
                            e.push(
                                format!("{mf}.method"),
                                "one or both of service and method must be set",
                            );
                        }
                        if let Some(s) = &mm.service
                            && !s
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_')
                        {
                            e.push(
                                format!("{mf}.method.service"),
                                format!("{s:?} is not a valid gRPC service name"),
                            );
                        }
                        if let Some(m) = &mm.method
                            && !m.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
                        {
                            e.push(
                                format!("{mf}.method.method"),
                                format!("{m:?} is not a valid gRPC method name"),
                            );
                        }
                    }
                    // Compiled by the engine, which drops rules it cannot serve.
                    "RegularExpression" => {}
                    other => e.push(
                        format!("{mf}.method.type"),
                        format!("{other:?} is not Exact or RegularExpression"),
                    ),
                }
            }
            header_matches(e, &format!("{mf}.headers"), &mut m.headers, true);
        }
        filters(
            e,
            &format!("{f}.filters"),
            &mut rule.filters,
            None,
            FilterOwner::Grpc,
        );
        e.max_items(&format!("{f}.backendRefs"), rule.backend_refs.len(), 16);
        for (j, b) in rule.backend_refs.iter_mut().enumerate() {
            backend_ref(
                e,
                &format!("{f}.backendRefs[{j}]"),
                b,
                Some(FilterOwner::Grpc),
            );
        }
    }
    unique_rule_names(e, r.spec.rules.iter().map(|r| r.name.as_ref()));
}

fn l4_route(e: &mut Errs, r: &mut L4Route, tls: bool) {
    parent_refs(e, &mut r.spec.parent_refs);
    if tls {
        hostnames(e, &r.spec.hostnames);
    }
    if r.spec.rules.is_empty() {
        e.push("spec.rules", "at least one rule is required");
    }
    e.max_items("spec.rules", r.spec.rules.len(), 16);
    for (i, rule) in r.spec.rules.iter_mut().enumerate() {
        if rule.backend_refs.is_empty() {
            e.push(
                format!("spec.rules[{i}].backendRefs"),
                "at least one backendRef is required",
            );
        }
        e.max_items(
            &format!("spec.rules[{i}].backendRefs"),
            rule.backend_refs.len(),
            16,
        );
        for (j, b) in rule.backend_refs.iter_mut().enumerate() {
            backend_ref(e, &format!("spec.rules[{i}].backendRefs[{j}]"), b, None);
        }
    }
    unique_rule_names(e, r.spec.rules.iter().map(|r| r.name.as_ref()));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::load_str;

    fn errors(yaml: &str) -> Vec<String> {
        load_str("t.yaml", yaml)
            .diagnostics
            .into_iter()
            .map(|d| format!("{}: {}", d.field.unwrap_or_default(), d.message))
            .collect()
    }

    const GW: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g, namespace: n}\nspec:\n  gatewayClassName: c\n  listeners:\n";

    #[test]
    fn duplicate_listener_name_is_refused() {
        let errs = errors(&format!(
            "{GW}  - {{name: a, port: 80, protocol: HTTP}}\n  - {{name: a, port: 81, protocol: HTTP}}\n"
        ));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("spec.listeners[1].name: duplicate listener name"),
            "{errs:?}"
        );
    }

    #[test]
    fn invalid_hostname_is_refused() {
        let errs = errors(&format!(
            "{GW}  - {{name: a, port: 80, protocol: HTTP, hostname: 'Foo_.com'}}\n"
        ));
        assert!(
            errs[0].starts_with("spec.listeners[0].hostname:"),
            "{errs:?}"
        );
    }

    #[test]
    fn defaults_are_applied() {
        let l = load_str(
            "t.yaml",
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: n}\nspec:\n  parentRefs: [{name: g}]\n  rules:\n  - backendRefs: [{name: s, port: 80}]\n",
        );
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
        let Object::HttpRoute(r) = &l.objects[0].0 else {
            panic!("not a route")
        };
        let m = &r.spec.rules[0].matches[0];
        assert_eq!(
            m.path.as_ref().unwrap().type_,
            Some(PathMatchType::PathPrefix)
        );
        assert_eq!(m.path.as_ref().unwrap().value.as_deref(), Some("/"));
        assert_eq!(
            r.spec.rules[0].backend_refs[0].kind.as_deref(),
            Some("Service")
        );
        assert_eq!(r.spec.rules[0].backend_refs[0].weight, Some(1));
        assert_eq!(r.spec.parent_refs[0].kind.as_deref(), Some("Gateway"));
    }

    #[test]
    fn path_rules_follow_the_cel() {
        for bad in ["foo", "/a//b", "/a/../b", "/a%2Fb", "/a/."] {
            let errs = errors(&format!(
                "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r, namespace: n}}\nspec:\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: '{bad}'}}}}]\n"
            ));
            assert!(!errs.is_empty(), "{bad} accepted");
            assert!(
                errs[0].starts_with("spec.rules[0].matches[0].path.value"),
                "{errs:?}"
            );
        }
    }

    #[test]
    fn same_parent_twice_needs_section_names() {
        let errs = errors(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: n}\nspec:\n  parentRefs: [{name: g}, {name: g}]\n",
        );
        assert!(errs[0].starts_with("spec.parentRefs[1]"), "{errs:?}");
    }
}
