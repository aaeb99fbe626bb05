//! A small description of a cluster that `arbitrary` can fill in, turned
//! into gwcore objects.
//!
//! Every name comes from an alphabet of two or three, so references collide
//! often: a route names a Gateway that exists, or one in another namespace,
//! or a ListenerSet; two Gateways share a port; a grant admits the namespace
//! a backendRef needs, or the one next to it. Objects can be invalid (empty
//! rules, bad hostnames, unknown protocols): when `admit` is set, the case
//! keeps only what `gwcore::validate::validate` admits (with its defaults
//! applied), as an API server would; otherwise the engine gets them raw.

use std::collections::BTreeMap;

use arbitrary::Arbitrary;
use gwcore::model::{
    AllowedListeners, AllowedRoutes, BackendRef, BackendTlsPolicy, BackendTlsPolicySpec,
    BackendTlsValidation, ConfigMap, FrontendTls, FrontendTlsConfig, FrontendValidation,
    GATEWAY_GROUP, Gateway, GatewayClass, GatewayClassSpec, GatewaySpec, GatewayTlsConfig,
    GrpcMethodMatch, GrpcRoute, GrpcRouteMatch, GrpcRouteRule, GrpcRouteSpec, HttpPathMatch,
    HttpPathModifier, HttpRoute, HttpRouteFilter, HttpRouteMatch, HttpRouteRule, HttpRouteSpec,
    L4Route, L4RouteRule, L4RouteSpec, LabelSelector, Listener, ListenerSet, ListenerSetSpec,
    ListenerTls, LocalObjectReference, Namespace, Object, ObjectMeta, ParametersReference,
    ParentGatewayReference, ParentReference, PolicyTargetReference, ReferenceGrant,
    ReferenceGrantFrom, ReferenceGrantSpec, ReferenceGrantTo, RequestMirror, RequestRedirect,
    RouteGroupKind, RouteNamespaces, Secret, SecretObjectReference, Service, ServicePort,
    ServiceSpec, UrlRewrite,
};

use crate::engine_check::{CONTROLLER, Case, Op};

/// At most this many objects and steps per case (keeps one run fast).
const MAX_OBJECTS: usize = 24;
const MAX_OPS: usize = 32;

const PEM_CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";
const PEM_KEY: &str = "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n";

/// The fuzzer's input.
#[derive(Arbitrary, Debug)]
pub(crate) struct Cluster {
    admit: bool,
    initial: u8,
    objects: Vec<Obj>,
    ops: Vec<Step>,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Step {
    Apply(u8),
    Delete(u8),
    Echo(u8),
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Ns {
    A,
    B,
    C,
}

impl Ns {
    fn s(self) -> &'static str {
        match self {
            Ns::A => "a",
            Ns::B => "b",
            Ns::C => "c",
        }
    }
}

/// Names shared by every kind (a Gateway `x` and a ListenerSet `x` exist
/// side by side; a parentRef of the wrong kind finds the other).
#[derive(Arbitrary, Debug, Clone, Copy)]
enum Name {
    X,
    Y,
    Z,
}

impl Name {
    fn s(self) -> &'static str {
        match self {
            Name::X => "x",
            Name::Y => "y",
            Name::Z => "z",
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Class {
    Ours,
    Theirs,
    Missing,
}

impl Class {
    fn s(self) -> &'static str {
        match self {
            Class::Ours => "ours",
            Class::Theirs => "theirs",
            Class::Missing => "missing",
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Port {
    P80,
    P443,
    P8080,
}

impl Port {
    fn n(self) -> i32 {
        match self {
            Port::P80 => 80,
            Port::P443 => 443,
            Port::P8080 => 8080,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Host {
    Exact,
    Wild,
    Apex,
    DeepWild,
    Other,
    Upper,
    Ip,
}

impl Host {
    fn s(self) -> &'static str {
        match self {
            Host::Exact => "a.example.com",
            Host::Wild => "*.example.com",
            Host::Apex => "example.com",
            Host::DeepWild => "*.a.example.com",
            Host::Other => "b.example.org",
            Host::Upper => "A.Example.com",
            Host::Ip => "10.0.0.1",
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Meta {
    Plain,
    Gen(u8),
    GenAt(u8, u8),
}

impl Meta {
    fn build(self, ns: Option<Ns>, name: &str) -> ObjectMeta {
        let (generation, ts) = match self {
            Meta::Plain => (None, None),
            Meta::Gen(g) => (Some(i64::from(g) + 1), None),
            Meta::GenAt(g, t) => (Some(i64::from(g) + 1), Some(t % 3)),
        };
        ObjectMeta {
            name: name.to_string(),
            namespace: ns.map(|n| n.s().to_string()),
            generation,
            creation_timestamp: ts.map(|t| format!("2026-01-01T00:00:0{t}Z")),
            ..Default::default()
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum From {
    All,
    Same,
    Prod,
    None,
    Bogus,
}

impl From {
    fn build(self) -> RouteNamespaces {
        let (from, selector) = match self {
            From::All => ("All", None),
            From::Same => ("Same", None),
            From::Prod => (
                "Selector",
                Some(LabelSelector {
                    match_labels: [("env".to_string(), "prod".to_string())].into(),
                    ..Default::default()
                }),
            ),
            From::None => ("None", None),
            From::Bogus => ("Elsewhere", None),
        };
        RouteNamespaces {
            from: Some(from.into()),
            selector,
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum RouteKind {
    Http,
    Grpc,
    Tls,
    Tcp,
    Udp,
    Bogus,
}

impl RouteKind {
    fn s(self) -> &'static str {
        match self {
            RouteKind::Http => "HTTPRoute",
            RouteKind::Grpc => "GRPCRoute",
            RouteKind::Tls => "TLSRoute",
            RouteKind::Tcp => "TCPRoute",
            RouteKind::Udp => "UDPRoute",
            RouteKind::Bogus => "Ingress",
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum Protocol {
    Http,
    Https,
    Tls,
    Tcp,
    Udp,
    Bogus,
}

#[derive(Arbitrary, Debug, Clone)]
struct CertRef {
    ns: Option<Ns>,
    name: Name,
    not_a_secret: bool,
}

impl CertRef {
    fn build(&self) -> SecretObjectReference {
        SecretObjectReference {
            kind: self.not_a_secret.then(|| "ConfigMap".to_string()),
            name: self.name.s().into(),
            namespace: self.ns.map(|n| n.s().into()),
            ..Default::default()
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
struct L {
    name: Name,
    port: Port,
    protocol: Protocol,
    hostname: Option<Host>,
    passthrough: bool,
    certs: Vec<CertRef>,
    from: Option<From>,
    kinds: Vec<RouteKind>,
}

impl L {
    fn build(&self) -> Listener {
        let protocol = match self.protocol {
            Protocol::Http => "HTTP",
            Protocol::Https => "HTTPS",
            Protocol::Tls => "TLS",
            Protocol::Tcp => "TCP",
            Protocol::Udp => "UDP",
            Protocol::Bogus => "SCTP",
        };
        let tls = matches!(self.protocol, Protocol::Https | Protocol::Tls).then(|| ListenerTls {
            mode: self.passthrough.then(|| "Passthrough".into()),
            certificate_refs: self.certs.iter().take(2).map(CertRef::build).collect(),
            ..Default::default()
        });
        Listener {
            name: format!("l{}", self.name.s()),
            hostname: self.hostname.map(|h| h.s().to_string()),
            port: self.port.n(),
            protocol: protocol.into(),
            tls,
            allowed_routes: (self.from.is_some() || !self.kinds.is_empty()).then(|| {
                AllowedRoutes {
                    namespaces: self.from.map(From::build),
                    kinds: self
                        .kinds
                        .iter()
                        .take(2)
                        .map(|k| RouteGroupKind {
                            group: None,
                            kind: k.s().into(),
                        })
                        .collect(),
                }
            }),
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
struct PRef {
    listener_set: bool,
    ns: Option<Ns>,
    name: Name,
    section: Option<Name>,
    port: Option<Port>,
}

impl PRef {
    fn build(&self) -> ParentReference {
        ParentReference {
            group: None,
            kind: self.listener_set.then(|| "ListenerSet".to_string()),
            namespace: self.ns.map(|n| n.s().into()),
            name: self.name.s().into(),
            section_name: self.section.map(|s| format!("l{}", s.s())),
            port: self.port.map(Port::n),
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
struct BRef {
    not_a_service: bool,
    ns: Option<Ns>,
    name: Name,
    port: Option<Port>,
    weight: Option<u8>,
}

impl BRef {
    fn build(&self) -> BackendRef {
        BackendRef {
            kind: self.not_a_service.then(|| "ConfigMap".to_string()),
            name: self.name.s().into(),
            namespace: self.ns.map(|n| n.s().into()),
            port: self.port.map(Port::n),
            weight: self.weight.map(|w| i32::from(w % 4)),
            ..Default::default()
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
enum Filter {
    Mirror(BRef),
    Redirect(Option<Host>),
    Rewrite(bool),
    Extension(Name),
}

impl Filter {
    fn build(&self) -> HttpRouteFilter {
        match self {
            Filter::Mirror(b) => HttpRouteFilter {
                type_: "RequestMirror".into(),
                request_mirror: Some(Box::new(RequestMirror {
                    backend_ref: b.build(),
                    ..Default::default()
                })),
                ..Default::default()
            },
            Filter::Redirect(h) => HttpRouteFilter {
                type_: "RequestRedirect".into(),
                request_redirect: Some(Box::new(RequestRedirect {
                    hostname: h.map(|h| h.s().to_string()),
                    status_code: Some(301),
                    ..Default::default()
                })),
                ..Default::default()
            },
            Filter::Rewrite(prefix) => HttpRouteFilter {
                type_: "URLRewrite".into(),
                url_rewrite: Some(Box::new(UrlRewrite {
                    hostname: None,
                    path: Some(if *prefix {
                        HttpPathModifier {
                            type_: "ReplacePrefixMatch".into(),
                            replace_prefix_match: Some("/new".into()),
                            ..Default::default()
                        }
                    } else {
                        HttpPathModifier {
                            type_: "ReplaceFullPath".into(),
                            replace_full_path: Some("/full".into()),
                            ..Default::default()
                        }
                    }),
                })),
                ..Default::default()
            },
            Filter::Extension(n) => HttpRouteFilter {
                type_: "ExtensionRef".into(),
                extension_ref: Some(LocalObjectReference {
                    group: "example.net".into(),
                    kind: "Thing".into(),
                    name: n.s().into(),
                }),
                ..Default::default()
            },
        }
    }
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum PathKind {
    Exact,
    Prefix,
    Regex,
}

#[derive(Arbitrary, Debug, Clone, Copy)]
enum PathValue {
    Root,
    A,
    AB,
    Trailing,
    Bad,
}

#[derive(Arbitrary, Debug, Clone)]
struct HRule {
    matches: Vec<(PathKind, PathValue)>,
    filters: Vec<Filter>,
    backends: Vec<BRef>,
}

impl HRule {
    fn build(&self) -> HttpRouteRule {
        HttpRouteRule {
            matches: self
                .matches
                .iter()
                .take(3)
                .map(|(k, v)| HttpRouteMatch {
                    path: Some(HttpPathMatch {
                        type_: Some(
                            match k {
                                PathKind::Exact => "Exact",
                                PathKind::Prefix => "PathPrefix",
                                PathKind::Regex => "RegularExpression",
                            }
                            .into(),
                        ),
                        value: Some(
                            match v {
                                PathValue::Root => "/",
                                PathValue::A => "/a",
                                PathValue::AB => "/a/b",
                                PathValue::Trailing => "/a/",
                                PathValue::Bad => "a//b",
                            }
                            .into(),
                        ),
                    }),
                    ..Default::default()
                })
                .collect(),
            filters: self.filters.iter().take(2).map(Filter::build).collect(),
            backend_refs: self.backends.iter().take(3).map(BRef::build).collect(),
            ..Default::default()
        }
    }
}

#[derive(Arbitrary, Debug, Clone)]
enum Obj {
    Class {
        class: Class,
        ours: bool,
        params: Option<(Ns, Name)>,
        meta: Meta,
    },
    Namespace {
        ns: Ns,
        prod: bool,
    },
    Service {
        ns: Ns,
        name: Name,
        ports: Vec<(Port, Option<bool>)>,
        external: bool,
    },
    Secret {
        ns: Ns,
        name: Name,
        valid: bool,
    },
    ConfigMap {
        ns: Ns,
        name: Name,
        ca: bool,
    },
    Gateway {
        ns: Ns,
        name: Name,
        class: Class,
        meta: Meta,
        listeners: Vec<L>,
        allow_sets: Option<From>,
        frontend_ca: Option<CertRef>,
    },
    ListenerSet {
        ns: Ns,
        name: Name,
        meta: Meta,
        parent_ns: Option<Ns>,
        parent: Name,
        listeners: Vec<L>,
    },
    HttpRoute {
        ns: Ns,
        name: Name,
        meta: Meta,
        parents: Vec<PRef>,
        hostnames: Vec<Host>,
        rules: Vec<HRule>,
    },
    GrpcRoute {
        ns: Ns,
        name: Name,
        meta: Meta,
        parents: Vec<PRef>,
        hostnames: Vec<Host>,
        service: bool,
        backends: Vec<BRef>,
    },
    L4Route {
        kind: u8,
        ns: Ns,
        name: Name,
        meta: Meta,
        parents: Vec<PRef>,
        hostnames: Vec<Host>,
        backends: Vec<BRef>,
    },
    Grant {
        ns: Ns,
        name: Name,
        from: Vec<(RouteKind, Ns)>,
        to: Vec<(u8, Option<Name>)>,
    },
    Policy {
        ns: Ns,
        name: Name,
        meta: Meta,
        targets: Vec<(Name, Option<Port>)>,
        ca: Option<(bool, Name)>,
        hostname: Host,
    },
}

fn parents(p: &[PRef]) -> Vec<ParentReference> {
    p.iter().take(3).map(PRef::build).collect()
}

fn hostnames(h: &[Host]) -> Vec<String> {
    h.iter().take(3).map(|h| h.s().to_string()).collect()
}

fn backends(b: &[BRef]) -> Vec<BackendRef> {
    b.iter().take(3).map(BRef::build).collect()
}

impl Obj {
    fn build(&self) -> Object {
        match self {
            Obj::Class {
                class,
                ours,
                params,
                meta,
            } => Object::GatewayClass(Box::new(GatewayClass {
                metadata: meta.build(None, class.s()),
                spec: GatewayClassSpec {
                    controller_name: if *ours {
                        CONTROLLER
                    } else {
                        "example.net/other"
                    }
                    .into(),
                    parameters_ref: params.map(|(ns, n)| ParametersReference {
                        group: String::new(),
                        kind: "ConfigMap".into(),
                        name: n.s().into(),
                        namespace: Some(ns.s().into()),
                    }),
                    ..Default::default()
                },
                status: None,
            })),
            Obj::Namespace { ns, prod } => Object::Namespace(Namespace {
                metadata: ObjectMeta {
                    name: ns.s().into(),
                    labels: [(
                        "env".to_string(),
                        if *prod { "prod" } else { "dev" }.to_string(),
                    )]
                    .into(),
                    ..Default::default()
                },
            }),
            Obj::Service {
                ns,
                name,
                ports,
                external,
            } => Object::Service(Service {
                metadata: Meta::Plain.build(Some(*ns), name.s()),
                spec: ServiceSpec {
                    type_: external.then(|| "ExternalName".to_string()),
                    external_name: external.then(|| "db.example.net".to_string()),
                    ports: ports
                        .iter()
                        .take(2)
                        .map(|(p, h2)| ServicePort {
                            name: Some(format!("p{}", p.n())),
                            port: p.n(),
                            app_protocol: h2
                                .map(|h2| if h2 { "kubernetes.io/h2c" } else { "mqtt" }.into()),
                            ..Default::default()
                        })
                        .collect(),
                    ..Default::default()
                },
            }),
            Obj::Secret { ns, name, valid } => {
                let mut string_data = BTreeMap::new();
                string_data.insert("tls.crt".to_string(), PEM_CERT.to_string());
                string_data.insert("ca.crt".to_string(), PEM_CERT.to_string());
                if *valid {
                    string_data.insert("tls.key".to_string(), PEM_KEY.to_string());
                }
                Object::Secret(Secret {
                    metadata: Meta::Plain.build(Some(*ns), name.s()),
                    type_: Some("kubernetes.io/tls".into()),
                    string_data,
                    ..Default::default()
                })
            }
            Obj::ConfigMap { ns, name, ca } => Object::ConfigMap(ConfigMap {
                metadata: Meta::Plain.build(Some(*ns), name.s()),
                data: [(
                    "ca.crt".to_string(),
                    if *ca { PEM_CERT } else { "not a certificate" }.to_string(),
                )]
                .into(),
            }),
            Obj::Gateway {
                ns,
                name,
                class,
                meta,
                listeners,
                allow_sets,
                frontend_ca,
            } => Object::Gateway(Box::new(Gateway {
                metadata: meta.build(Some(*ns), name.s()),
                spec: GatewaySpec {
                    gateway_class_name: class.s().into(),
                    listeners: listeners.iter().take(4).map(L::build).collect(),
                    allowed_listeners: allow_sets.map(|f| AllowedListeners {
                        namespaces: Some(f.build()),
                    }),
                    tls: frontend_ca.as_ref().map(|c| GatewayTlsConfig {
                        frontend: Some(FrontendTls {
                            default: Some(FrontendTlsConfig {
                                validation: Some(FrontendValidation {
                                    ca_certificate_refs: vec![c.build()],
                                    mode: None,
                                }),
                            }),
                            per_port: vec![],
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                },
                status: None,
            })),
            Obj::ListenerSet {
                ns,
                name,
                meta,
                parent_ns,
                parent,
                listeners,
            } => Object::ListenerSet(Box::new(ListenerSet {
                served_as: Default::default(),
                metadata: meta.build(Some(*ns), name.s()),
                spec: ListenerSetSpec {
                    parent_ref: ParentGatewayReference {
                        group: None,
                        kind: None,
                        name: parent.s().into(),
                        namespace: parent_ns.map(|n| n.s().into()),
                    },
                    listeners: listeners.iter().take(3).map(L::build).collect(),
                },
                status: None,
            })),
            Obj::HttpRoute {
                ns,
                name,
                meta,
                parents: p,
                hostnames: h,
                rules,
            } => Object::HttpRoute(HttpRoute {
                metadata: meta.build(Some(*ns), name.s()),
                spec: HttpRouteSpec {
                    parent_refs: parents(p),
                    hostnames: hostnames(h),
                    rules: rules.iter().take(3).map(HRule::build).collect(),
                    use_default_gateways: None,
                },
                status: None,
            }),
            Obj::GrpcRoute {
                ns,
                name,
                meta,
                parents: p,
                hostnames: h,
                service,
                backends: b,
            } => Object::GrpcRoute(GrpcRoute {
                metadata: meta.build(Some(*ns), name.s()),
                spec: GrpcRouteSpec {
                    parent_refs: parents(p),
                    hostnames: hostnames(h),
                    rules: vec![GrpcRouteRule {
                        matches: vec![GrpcRouteMatch {
                            method: Some(GrpcMethodMatch {
                                type_: None,
                                service: service.then(|| "pkg.Svc".to_string()),
                                method: Some("Get".into()),
                            }),
                            headers: vec![],
                        }],
                        backend_refs: backends(b),
                        ..Default::default()
                    }],
                    use_default_gateways: None,
                },
                status: None,
            }),
            Obj::L4Route {
                kind,
                ns,
                name,
                meta,
                parents: p,
                hostnames: h,
                backends: b,
            } => {
                let route = L4Route {
                    metadata: meta.build(Some(*ns), name.s()),
                    spec: L4RouteSpec {
                        parent_refs: parents(p),
                        hostnames: if kind % 3 == 0 { hostnames(h) } else { vec![] },
                        rules: vec![L4RouteRule {
                            name: None,
                            backend_refs: backends(b),
                        }],
                        use_default_gateways: None,
                    },
                    status: None,
                };
                match kind % 3 {
                    0 => Object::TlsRoute(route),
                    1 => Object::TcpRoute(route),
                    _ => Object::UdpRoute(route),
                }
            }
            Obj::Grant { ns, name, from, to } => Object::ReferenceGrant(ReferenceGrant {
                metadata: Meta::Plain.build(Some(*ns), name.s()),
                spec: ReferenceGrantSpec {
                    from: from
                        .iter()
                        .take(2)
                        .map(|(k, ns)| ReferenceGrantFrom {
                            group: GATEWAY_GROUP.into(),
                            kind: match k {
                                RouteKind::Bogus => "Gateway",
                                k => k.s(),
                            }
                            .into(),
                            namespace: ns.s().into(),
                        })
                        .collect(),
                    to: to
                        .iter()
                        .take(2)
                        .map(|(k, n)| ReferenceGrantTo {
                            group: String::new(),
                            kind: match k % 3 {
                                0 => "Service",
                                1 => "Secret",
                                _ => "ConfigMap",
                            }
                            .into(),
                            name: n.map(|n| n.s().to_string()),
                        })
                        .collect(),
                },
            }),
            Obj::Policy {
                ns,
                name,
                meta,
                targets,
                ca,
                hostname,
            } => Object::BackendTlsPolicy(Box::new(BackendTlsPolicy {
                metadata: meta.build(Some(*ns), name.s()),
                spec: BackendTlsPolicySpec {
                    target_refs: targets
                        .iter()
                        .take(2)
                        .map(|(n, port)| PolicyTargetReference {
                            group: String::new(),
                            kind: "Service".into(),
                            name: n.s().into(),
                            section_name: port.map(|p| format!("p{}", p.n())),
                        })
                        .collect(),
                    validation: BackendTlsValidation {
                        ca_certificate_refs: ca
                            .iter()
                            .map(|(secret, n)| LocalObjectReference {
                                group: String::new(),
                                kind: if *secret { "Secret" } else { "ConfigMap" }.into(),
                                name: n.s().into(),
                            })
                            .collect(),
                        well_known_ca_certificates: ca.is_none().then(|| "System".into()),
                        hostname: hostname.s().into(),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                status: None,
            })),
        }
    }
}

impl Cluster {
    /// The engine case this description stands for.
    pub(crate) fn case(&self) -> Case {
        let mut objects: Vec<Object> = self
            .objects
            .iter()
            .take(MAX_OBJECTS)
            .map(Obj::build)
            .collect();
        if self.admit {
            objects.retain_mut(|o| gwcore::validate::validate(o).is_empty());
        }
        let ops = self
            .ops
            .iter()
            .take(MAX_OPS)
            .map(|s| match *s {
                Step::Apply(i) => Op::Apply(usize::from(i)),
                Step::Delete(i) => Op::Delete(usize::from(i)),
                Step::Echo(i) => Op::Echo(usize::from(i)),
            })
            .collect();
        Case {
            initial: usize::from(self.initial),
            objects,
            ops,
        }
    }
}

/// A case as JSON (read back by [`Case::from_json`]).
pub(crate) fn to_json(case: &Case) -> serde_json::Value {
    serde_json::json!({
        "initial": case.initial,
        "objects": case.objects.iter().map(Object::to_manifest).collect::<Vec<_>>(),
        "ops": case.ops.iter().map(|op| match *op {
            Op::Apply(i) => serde_json::json!(["apply", i]),
            Op::Delete(i) => serde_json::json!(["delete", i]),
            Op::Echo(i) => serde_json::json!(["echo", i]),
        }).collect::<Vec<_>>(),
    })
}
