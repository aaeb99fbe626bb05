//! Defaults and validation, as the API server applies them from the CRDs.
//!
//! The API server fills in `kubebuilder:default`s and rejects objects that
//! break the OpenAPI schema or a CEL rule. gwcore reads files that never went
//! through an API server, so it does both here: [`validate`] applies the
//! defaults in place and returns every failure; an object with failures is
//! left out, as the API server would have refused it.

use crate::values::{
    AddressType, Duration, ExternalAuthProtocol, FilterType, FromNamespaces, MatchType,
    PathMatchType, PathModifierType, ProtocolType, SanType, TlsModeType,
};
use std::collections::BTreeSet;

use crate::hostname;
use crate::model::{
    BackendRef, ExternalAuth, GATEWAY_GROUP, GrpcRoute, HttpHeaderMatch, HttpPathMatch, HttpRoute,
    HttpRouteFilter, HttpRouteMatch, HttpRouteRule, L4Route, Listener, Object, ParentReference,
};

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
///
/// Where the served versions of a kind differ (TLSRoute, TCPRoute and
/// UDPRoute: `v1` allows one rule, `v1alpha2` sixteen; TLSRoute `v1` and
/// `v1alpha3` require hostnames and refuse IP addresses among them), this
/// checks what every served version requires: it refuses only what no
/// version accepts. [`validate_served_as`] checks one version's rules.
pub fn validate(obj: &mut Object) -> Vec<FieldError> {
    validate_version(obj, None)
}

/// [`validate`] by the schema of the version `api_version` (e.g.
/// `gateway.networking.k8s.io/v1`) an object was written in, as the API
/// server validates it: what [`crate::load`] uses, knowing the version.
pub fn validate_served_as(obj: &mut Object, api_version: &str) -> Vec<FieldError> {
    let version = api_version.rsplit_once('/').map_or(api_version, |(_, v)| v);
    validate_version(obj, Some(version))
}

fn validate_version(obj: &mut Object, version: Option<&str>) -> Vec<FieldError> {
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
            } else if !controller_name_ok(&gc.spec.controller_name) {
                e.push(
                    "spec.controllerName",
                    format!(
                        "{:?} is not a controller name: a domain, '/', and a path (e.g. example.com/gateway-controller), at most 253 characters",
                        gc.spec.controller_name
                    ),
                );
            }
            if let Some(d) = &gc.spec.description
                && d.chars().count() > 64
            {
                e.push("spec.description", "longer than 64 characters");
            }
        }
        Object::Gateway(gw) => {
            if gw.spec.gateway_class_name.is_empty() {
                e.push("spec.gatewayClassName", "required");
            }
            listeners(&mut e, "spec.listeners", &mut gw.spec.listeners, 1);
            e.max_items("spec.addresses", gw.spec.addresses.len(), 16);
            let mut seen = BTreeSet::new();
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
                // CEL: a Hostname address is empty or a hostname.
                if *ty == AddressType::Hostname && !a.value.is_empty() && !crd_hostname_ok(&a.value)
                {
                    e.push(
                        format!("spec.addresses[{i}].value"),
                        format!("{:?} is not a valid hostname", a.value),
                    );
                }
                // CEL: "IPAddress values must be unique", "Hostname values
                // must be unique".
                if matches!(ty, AddressType::IpAddress | AddressType::Hostname)
                    && !a.value.is_empty()
                    && !seen.insert((ty.clone(), a.value.clone()))
                {
                    e.push(
                        format!("spec.addresses[{i}].value"),
                        format!("duplicate {} address {:?}", ty, a.value),
                    );
                }
            }
            if let Some(infra) = &gw.spec.infrastructure {
                for (what, map) in [("labels", &infra.labels), ("annotations", &infra.annotations)] {
                    for key in map.keys() {
                        if !qualified_key_ok(key) {
                            e.push(
                                format!("spec.infrastructure.{what}"),
                                format!("{key:?} is not a valid key: an optional DNS subdomain prefix (under 253 characters) and '/', then a name of up to 63 characters"),
                            );
                        }
                    }
                }
            }
            if let Some(frontend) = gw.spec.tls.as_ref().and_then(|t| t.frontend.as_ref()) {
                let mut ports = BTreeSet::new();
                for (i, pp) in frontend.per_port.iter().enumerate() {
                    if !ports.insert(pp.port) {
                        e.push(
                            format!("spec.tls.frontend.perPort[{i}].port"),
                            format!("duplicate port {}; each port once", pp.port),
                        );
                    }
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
        // `v1alpha2` is the lenient schema of each: sixteen rules, hostnames
        // optional and not checked for IP addresses.
        Object::TlsRoute(r) => l4_route(
            &mut e,
            r,
            true,
            version.is_some_and(|v| matches!(v, "v1" | "v1alpha3")),
        ),
        Object::TcpRoute(r) | Object::UdpRoute(r) => {
            l4_route(&mut e, r, false, version == Some("v1"))
        }
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
                } else if !kind_ok(&f.kind) {
                    e.push(
                        format!("spec.from[{i}].kind"),
                        format!("{:?} is not a valid kind", f.kind),
                    );
                }
                if !group_ok(&f.group) {
                    e.push(
                        format!("spec.from[{i}].group"),
                        format!("{:?} is not a valid API group", f.group),
                    );
                }
                if f.namespace.is_empty() {
                    e.push(format!("spec.from[{i}].namespace"), "required");
                } else if !is_dns_label(&f.namespace) {
                    e.push(
                        format!("spec.from[{i}].namespace"),
                        format!("{:?} is not a valid namespace name", f.namespace),
                    );
                }
            }
            for (i, t) in g.spec.to.iter().enumerate() {
                if t.kind.is_empty() {
                    e.push(format!("spec.to[{i}].kind"), "required");
                } else if !kind_ok(&t.kind) {
                    e.push(
                        format!("spec.to[{i}].kind"),
                        format!("{:?} is not a valid kind", t.kind),
                    );
                }
                if !group_ok(&t.group) {
                    e.push(
                        format!("spec.to[{i}].group"),
                        format!("{:?} is not a valid API group", t.group),
                    );
                }
            }
        }
        Object::BackendTlsPolicy(p) => {
            if p.spec.target_refs.is_empty() {
                e.push("spec.targetRefs", "at least one target is required");
            }
            e.max_items("spec.targetRefs", p.spec.target_refs.len(), 16);
            backend_tls_policy(&mut e, p);
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

/// `BackendTLSPolicy`: the CRD's OpenAPI and CEL rules.
fn backend_tls_policy(e: &mut Errs, p: &crate::model::BackendTlsPolicy) {
    // CEL on targetRefs: references to one target either all have a
    // sectionName or none does, and no two are the same.
    let refs = &p.spec.target_refs;
    for (j, b) in refs.iter().enumerate() {
        for a in &refs[..j] {
            if (&a.group, &a.kind, &a.name) != (&b.group, &b.kind, &b.name) {
                continue;
            }
            let section = |r: &crate::model::PolicyTargetReference| {
                r.section_name.clone().filter(|s| !s.is_empty())
            };
            let (sa, sb) = (section(a), section(b));
            if sa.is_some() != sb.is_some() {
                e.push(
                    format!("spec.targetRefs[{j}]"),
                    "sectionName must be set on every reference to the same target, or on none",
                );
            } else if sa == sb {
                e.push(
                    format!("spec.targetRefs[{j}]"),
                    "duplicate target: sectionName must be unique for the same target",
                );
            }
        }
    }
    let v = &p.spec.validation;
    if v.hostname.is_empty() {
        e.push("spec.validation.hostname", "required");
    } else if v.hostname.len() > 253 || !is_dns_subdomain(&v.hostname) {
        e.push(
            "spec.validation.hostname",
            format!(
                "{:?} is not a valid hostname: a lowercase DNS name, no wildcard",
                v.hostname
            ),
        );
    }
    e.max_items(
        "spec.validation.caCertificateRefs",
        v.ca_certificate_refs.len(),
        8,
    );
    let well_known = v
        .well_known_ca_certificates
        .as_ref()
        .filter(|w| !w.as_str().is_empty());
    match (v.ca_certificate_refs.is_empty(), well_known) {
        (false, Some(_)) => e.push(
            "spec.validation",
            "must not set both caCertificateRefs and wellKnownCACertificates",
        ),
        (true, None) => e.push(
            "spec.validation",
            "must set caCertificateRefs or wellKnownCACertificates",
        ),
        _ => {}
    }
    // `^(System|<domain>/<path>)$`: other names are implementation-specific.
    if let Some(w) = well_known
        && !w.is_known()
        && !controller_name_ok(w.as_str())
    {
        e.push(
            "spec.validation.wellKnownCACertificates",
            format!("{:?} is not System or a domain-prefixed name", w.as_str()),
        );
    }
    e.max_items(
        "spec.validation.subjectAltNames",
        v.subject_alt_names.len(),
        5,
    );
    for (i, san) in v.subject_alt_names.iter().enumerate() {
        let f = format!("spec.validation.subjectAltNames[{i}]");
        let hostname = san.hostname.as_deref().filter(|h| !h.is_empty());
        let uri = san.uri.as_deref().filter(|u| !u.is_empty());
        match san.type_ {
            SanType::Hostname => {
                if hostname.is_none() {
                    e.push(format!("{f}.hostname"), "required when type is Hostname");
                }
                if uri.is_some() {
                    e.push(format!("{f}.uri"), "must not be set when type is Hostname");
                }
            }
            SanType::Uri => {
                if uri.is_none() {
                    e.push(format!("{f}.uri"), "required when type is URI");
                }
                if hostname.is_some() {
                    e.push(format!("{f}.hostname"), "must not be set when type is URI");
                }
            }
            SanType::Other(ref t) => {
                e.push(format!("{f}.type"), format!("{t:?} is not Hostname or URI"))
            }
        }
    }
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

/// The CRD's `GatewayController` pattern: a lowercase domain (DNS
/// subdomain syntax), `/`, and a path of
/// `A-Z a-z 0-9 / - . _ ~ % ! $ & ' ( ) * + , ; = :`; at most 253
/// characters.
fn controller_name_ok(s: &str) -> bool {
    let Some((domain, path)) = s.split_once('/') else {
        return false;
    };
    s.len() <= 253
        && is_dns_subdomain(domain)
        && !path.is_empty()
        && path
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-._~%!$&'()*+,;=:".contains(&b))
}

/// The CRDs' `Hostname` pattern
/// `^(\*\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`,
/// at most 253 characters: what the API server stores (IPv4-looking names
/// and labels over 63 characters included, unlike [`hostname::is_valid`]).
fn crd_hostname_ok(h: &str) -> bool {
    let rest = h.strip_prefix("*.").unwrap_or(h);
    h.len() <= 253 && is_dns_subdomain(rest)
}

/// A label or annotation key as the Gateway CRD's CEL checks it: an
/// optional DNS subdomain prefix (under 253 characters) and `/`, then a
/// name of 1 to 63 of `A-Z a-z 0-9 - _ .`, alphanumeric at both ends.
fn qualified_key_ok(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((p, n)) => (Some(p), n),
        None => (None, key),
    };
    let b = name.as_bytes();
    prefix.is_none_or(|p| p.len() < 253 && is_dns_subdomain(p))
        && (1..=63).contains(&b.len())
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.".contains(c))
}

/// A Gateway API `Kind`.
fn kind_ok(k: &str) -> bool {
    // `^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$`, at most 63 characters.
    let b = k.as_bytes();
    (1..=63).contains(&b.len())
        && b[0].is_ascii_alphabetic()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// A Gateway API `Group`: empty or a DNS subdomain, at most 253.
fn group_ok(g: &str) -> bool {
    g.is_empty() || is_dns_subdomain(g)
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
    // The CRDs do not check a selector's operators or values: the API
    // server stores a malformed selector, which selects no namespace
    // (`selector::matches`).
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
            && !crd_hostname_ok(h)
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
        for (j, k) in ar.kinds.iter_mut().enumerate() {
            let g = k.group.get_or_insert_with(|| GATEWAY_GROUP.into());
            if !group_ok(g) {
                e.push(
                    format!("{f}.allowedRoutes.kinds[{j}].group"),
                    format!("{g:?} is not a valid API group"),
                );
            }
            if !kind_ok(&k.kind) {
                e.push(
                    format!("{f}.allowedRoutes.kinds[{j}].kind"),
                    format!("{:?} is not a valid kind", k.kind),
                );
            }
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
        if let Some(s) = &p.section_name
            && !section_name_ok(s)
        {
            e.push(
                format!("spec.parentRefs[{i}].sectionName"),
                format!("{s:?} is not a valid section name"),
            );
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

fn hostnames(e: &mut Errs, hs: &[String], max: usize) {
    e.max_items("spec.hostnames", hs.len(), max);
    for (i, h) in hs.iter().enumerate() {
        if !crd_hostname_ok(h) {
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

/// The CRDs' `HeaderValue`: `^[!-~]+([\t ]?[!-~]+)*$`, at most 4096
/// characters.
fn header_value_ok(v: &str) -> bool {
    let b = v.as_bytes();
    let visible = |c: u8| (b'!'..=b'~').contains(&c);
    !b.is_empty()
        && b.len() <= 4096
        && b.iter().all(|&c| visible(c) || c == b' ' || c == b'\t')
        && visible(b[0])
        && visible(b[b.len() - 1])
        && !b.windows(2).any(|w| !visible(w[0]) && !visible(w[1]))
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
        // Header values: 1 to 4096 visible ASCII characters, single spaces
        // or tabs between; query parameter values: 1 to 1024 characters.
        if header && !header_value_ok(&h.value) {
            e.push(
                format!("{f}[{i}].value"),
                "must be 1 to 4096 visible ASCII characters, with single spaces or tabs between them",
            );
        } else if !header && !(1..=1024).contains(&h.value.chars().count()) {
            e.push(format!("{f}[{i}].value"), "must be 1 to 1024 characters");
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
            // CEL: "must only contain valid characters (matching
            // ^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$)".
            if !uri_path_chars_ok(v) {
                e.push(
                    format!("{f}.value"),
                    format!(
                        "{v:?} must only contain the characters A-Z a-z 0-9 - / . _ ~ ! $ & ' ( ) * + , ; = : @ and %-escapes"
                    ),
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
            // A list-map keyed by name: the API server refuses the same
            // name twice, and stores names that differ only in case (they
            // apply in order, so the last one wins).
            if !names.insert(h.name.as_str()) {
                e.push(
                    format!("{f}.{list}[{i}].name"),
                    format!("duplicate header {:?}", h.name),
                );
            }
            if !header_value_ok(&h.value) {
                e.push(
                    format!("{f}.{list}[{i}].value"),
                    "must be 1 to 4096 visible ASCII characters, with single spaces or tabs between them",
                );
            }
        }
    }
    e.max_items(&format!("{f}.remove"), m.remove.len(), 16);
    // A list-type set: each name once.
    let mut removed = BTreeSet::new();
    for (i, n) in m.remove.iter().enumerate() {
        if !removed.insert(n.as_str()) {
            e.push(format!("{f}.remove[{i}]"), format!("duplicate name {n:?}"));
        }
    }
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
            ("CORS", flt.cors.is_some(), "cors"),
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
        // The GRPCRoute CRD's filter types.
        if owner == FilterOwner::Grpc
            && !matches!(
                ty,
                FilterType::RequestHeaderModifier
                    | FilterType::ResponseHeaderModifier
                    | FilterType::RequestMirror
                    | FilterType::ExtensionRef
            )
        {
            e.push(
                format!("{ff}.type"),
                format!("{ty} is a filter of HTTPRoute, not of GRPCRoute"),
            );
        }
        if let Some(a) = &mut flt.external_auth {
            external_auth(e, &format!("{ff}.externalAuth"), a);
        }
        if let Some(c) = &flt.cors {
            cors(e, &format!("{ff}.cors"), c);
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

/// `HTTPCORSFilter`: its schema and CEL rules.
fn cors(e: &mut Errs, f: &str, c: &crate::model::Cors) {
    // CEL: "AllowOrigins cannot contain '*' alongside other origins", and
    // the same for methods and headers.
    for (list, items) in [
        ("allowOrigins", &c.allow_origins),
        ("allowMethods", &c.allow_methods),
        ("allowHeaders", &c.allow_headers),
    ] {
        if items.len() > 1 && items.iter().any(|i| i == "*") {
            e.push(
                format!("{f}.{list}"),
                "'*' must be the only entry when it is given",
            );
        }
    }
    for (i, m) in c.allow_methods.iter().enumerate() {
        if m != "*" && !METHODS.contains(&m.as_str()) {
            e.push(
                format!("{f}.allowMethods[{i}]"),
                format!("{m:?} is not one of {} or *", METHODS.join(", ")),
            );
        }
    }
    if let Some(age) = c.max_age
        && age < 1
    {
        e.push(format!("{f}.maxAge"), format!("{age} is less than 1"));
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
    p.len() <= 1024 && uri_path_chars_ok(p)
}

/// `^(?:[-A-Za-z0-9/._~!$&'()*+,;=:@]|[%][0-9a-fA-F]{2})+$`: the characters
/// of a URI path, `%` only as an escape (HTTPPathMatch's CEL, ExternalAuth's
/// `http.path`).
fn uri_path_chars_ok(p: &str) -> bool {
    let b = p.as_bytes();
    if b.is_empty() {
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
    // CEL: "RequestRedirect filter must not be used together with
    // backendRefs".
    if !r.backend_refs.is_empty() && r.filters.iter().any(|x| x.request_redirect.is_some()) {
        e.push(
            format!("{f}.filters"),
            "a RequestRedirect filter must not be used together with backendRefs",
        );
    }
    // CEL: "Within backendRefs, when using RequestRedirect (URLRewrite)
    // filter with path.replacePrefixMatch, exactly one PathPrefix match must
    // be specified" — as written, when exactly one backendRef has exactly
    // one such filter.
    let one_prefix = r.matches.len() == 1
        && r.matches[0].path.as_ref().and_then(|p| p.type_.as_ref())
            == Some(&PathMatchType::PathPrefix);
    let prefix = |p: Option<&crate::model::HttpPathModifier>| {
        p.is_some_and(|p| {
            p.type_ == PathModifierType::ReplacePrefixMatch && p.replace_prefix_match.is_some()
        })
    };
    for (what, uses) in [
        (
            "RequestRedirect",
            &(|x: &HttpRouteFilter| {
                prefix(x.request_redirect.as_ref().and_then(|r| r.path.as_ref()))
            }) as &dyn Fn(&HttpRouteFilter) -> bool,
        ),
        ("URLRewrite", &|x: &HttpRouteFilter| {
            prefix(x.url_rewrite.as_ref().and_then(|u| u.path.as_ref()))
        }),
    ] {
        let backends = r
            .backend_refs
            .iter()
            .filter(|b| b.filters.iter().filter(|x| uses(x)).count() == 1)
            .count();
        if backends == 1 && !one_prefix {
            e.push(
                format!("{f}.backendRefs"),
                format!("a backendRef's {what} filter with ReplacePrefixMatch needs the rule to have exactly one PathPrefix match"),
            );
        }
    }
    if let Some(sp) = &r.session_persistence {
        session_persistence(e, &format!("{f}.sessionPersistence"), sp);
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
            && !section_name_ok(n)
        {
            e.push(
                format!("spec.rules[{i}].name"),
                format!("{n:?} is not a valid section name"),
            );
        } else if let Some(n) = n
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
    hostnames(e, &r.spec.hostnames, 16);
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
    hostnames(e, &r.spec.hostnames, 16);
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
                            && !grpc_service_ok(s)
                        {
                            e.push(
                                format!("{mf}.method.service"),
                                format!("{s:?} is not a valid gRPC service name"),
                            );
                        }
                        if let Some(m) = &mm.method
                            && !grpc_ident_ok(m)
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
        if let Some(sp) = &rule.session_persistence {
            session_persistence(e, &format!("{f}.sessionPersistence"), sp);
        }
    }
    unique_rule_names(e, r.spec.rules.iter().map(|r| r.name.as_ref()));
}

/// A route rule's `sessionPersistence` (GEP-1619) by the current CRDs'
/// schema and CEL rules. What they leave to the implementation (a timeout
/// of 0, a cookie path, a reserved header name) the engine judges, dropping
/// the rule with a status ([`crate::session`]).
///
/// `cookieConfig`, `sessionName` and `idleTimeout` are fields of the
/// v1.1-v1.4 CRDs, which current ones do not keep (the API server prunes
/// them before it validates): they neither satisfy nor break these rules.
fn session_persistence(e: &mut Errs, f: &str, sp: &crate::model::SessionPersistenceSpec) {
    use crate::values::{CookieLifetimeType, SessionPersistenceType};
    // `type` defaults to `Cookie` before the CEL rules run.
    let ty = sp.type_.clone().unwrap_or(SessionPersistenceType::Cookie);
    if !ty.is_known() {
        e.push(
            format!("{f}.type"),
            format!("{:?} is not Cookie or Header", ty.as_str()),
        );
    }
    if let Some(d) = &sp.absolute_timeout
        && d.value().is_none()
    {
        e.push(
            format!("{f}.absoluteTimeout"),
            format!("{:?} is not a duration like 10s or 1h30m", d.as_str()),
        );
    }
    let token = |e: &mut Errs, field: String, name: &str| {
        if !is_token(name) {
            e.push(
                field,
                format!("{name:?} is not 1 to 256 of A-Z a-z 0-9 ! # $ % & ' * + - . ^ _ ` | ~"),
            );
        }
    };
    if let Some(c) = &sp.cookie {
        if let Some(n) = &c.name {
            token(e, format!("{f}.cookie.name"), n);
        }
        if let Some(p) = &c.path
            && p.len() > 1024
        {
            e.push(format!("{f}.cookie.path"), "longer than 1024 characters");
        }
        match &c.lifetime_type {
            Some(CookieLifetimeType::Permanent) if sp.absolute_timeout.is_none() => e.push(
                format!("{f}.absoluteTimeout"),
                "required when cookie lifetimeType is Permanent",
            ),
            Some(l) if !l.is_known() => e.push(
                format!("{f}.cookie.lifetimeType"),
                format!("{:?} is not Permanent or Session", l.as_str()),
            ),
            _ => {}
        }
    }
    if let Some(h) = &sp.header {
        match &h.name {
            Some(n) => token(e, format!("{f}.header.name"), n),
            None => e.push(format!("{f}.header.name"), "required"),
        }
    }
    // CEL: "cookie must be nil if type is not Cookie", "cookie must be
    // specified for Cookie type", and the same for header.
    let cookie = ty == SessionPersistenceType::Cookie;
    let header = ty == SessionPersistenceType::Header;
    if sp.cookie.is_some() && !cookie {
        e.push(
            format!("{f}.cookie"),
            "must not be set unless type is Cookie",
        );
    }
    if sp.cookie.is_none() && cookie {
        let old = if sp.cookie_config.is_some() {
            " (cookieConfig, its v1.1-v1.4 name, is not kept by current CRDs)"
        } else {
            ""
        };
        e.push(
            format!("{f}.cookie"),
            format!("required when type is Cookie (the default){old}"),
        );
    }
    if sp.header.is_some() && !header {
        e.push(
            format!("{f}.header"),
            "must not be set unless type is Header",
        );
    }
    if sp.header.is_none() && header {
        e.push(format!("{f}.header"), "required when type is Header");
    }
}

/// An RFC 7230 token of at most 256 characters: the CRDs' pattern for
/// session cookie and header names.
fn is_token(name: &str) -> bool {
    (1..=256).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// `^[A-Za-z_][A-Za-z_0-9]*$` (a gRPC method; a service's dotted parts).
fn grpc_ident_ok(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'_')
}

/// `^(?i)\.?[a-z_][a-z_0-9]*(\.[a-z_][a-z_0-9]*)*$`: a gRPC service name,
/// optionally with a leading dot.
fn grpc_service_ok(s: &str) -> bool {
    s.strip_prefix('.')
        .unwrap_or(s)
        .split('.')
        .all(grpc_ident_ok)
}

/// `v1`: the schema of TLSRoute `v1`/`v1alpha3`, TCPRoute and UDPRoute
/// `v1` (one rule; a TLSRoute needs hostnames, none an IP address) rather
/// than `v1alpha2`'s.
fn l4_route(e: &mut Errs, r: &mut L4Route, tls: bool, v1: bool) {
    parent_refs(e, &mut r.spec.parent_refs);
    if tls {
        hostnames(e, &r.spec.hostnames, 1024);
        if v1 && r.spec.hostnames.is_empty() {
            e.push("spec.hostnames", "at least one hostname is required");
        }
        // CEL: "Hostnames cannot contain an IP".
        for (i, h) in r.spec.hostnames.iter().enumerate() {
            if v1 && h.parse::<std::net::IpAddr>().is_ok() {
                e.push(
                    format!("spec.hostnames[{i}]"),
                    format!("{h:?} is an IP address, not a hostname"),
                );
            }
        }
    }
    if r.spec.rules.is_empty() {
        e.push("spec.rules", "at least one rule is required");
    }
    e.max_items("spec.rules", r.spec.rules.len(), if v1 { 1 } else { 16 });
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
mod crd_rules;

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
