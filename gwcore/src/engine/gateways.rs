//! Gateways and their listeners: GatewayClasses, listener validity and
//! conflicts, ListenerSets, certificates and CA bundles.

use super::*;
use crate::status::SupportedFeature;
use crate::values::{AddressType, FromNamespaces, FrontendValidationMode, TlsModeType};

impl Ctx<'_> {
    // ---------------------------------------------------------------- classes

    /// GatewayClass statuses, and the names of our accepted classes.
    pub(super) fn classes(&self) -> (BTreeMap<ObjectKey, ObjectStatus>, BTreeSet<String>) {
        let mut statuses = BTreeMap::new();
        let mut ours = BTreeSet::new();
        for o in self.snap.of_kind(Kind::GatewayClass) {
            let Object::GatewayClass(gc) = o else {
                continue;
            };
            if gc.spec.controller_name != self.opts.controller_name {
                continue;
            }
            let accepted = match &gc.spec.parameters_ref {
                None => Ok(()),
                Some(p) => {
                    let found = p.group.is_empty()
                        && p.kind == "ConfigMap"
                        && p.namespace.as_deref().is_some_and(|ns| {
                            self.snap
                                .get(&ObjectKey::new(Kind::ConfigMap, ns, p.name.clone()))
                                .is_some()
                        });
                    if found {
                        Ok(())
                    } else {
                        Err((
                            Reason::InvalidParameters,
                            format!(
                                "parametersRef {}/{} {} is not a ConfigMap that exists",
                                p.group, p.kind, p.name
                            ),
                        ))
                    }
                }
            };
            let mut conds = vec![match &accepted {
                Ok(()) => cond(
                    T::Accepted,
                    true,
                    Reason::Accepted,
                    format!("handled by {}", self.opts.controller_name),
                ),
                Err((r, m)) => cond(T::Accepted, false, *r, m.clone()),
            }];
            conds.push(cond(
                T::SupportedVersion,
                true,
                Reason::SupportedVersion,
                "Gateway API CRDs are a supported version",
            ));
            if accepted.is_ok() {
                ours.insert(gc.metadata.name.clone());
            }
            let prev = gc
                .status
                .as_ref()
                .map(|s| s.conditions.as_slice())
                .unwrap_or(&[]);
            let conditions = self.stamp(conds, prev, &gc.metadata);
            statuses.insert(
                o.key(),
                ObjectStatus::GatewayClass(GatewayClassStatus {
                    conditions,
                    supported_features: if accepted.is_ok() {
                        crate::features::supported_features(&self.opts.extensions)
                            .into_iter()
                            .map(|name| SupportedFeature { name: name.into() })
                            .collect()
                    } else {
                        Vec::new()
                    },
                }),
            );
        }
        (statuses, ours)
    }

    /// Whether a reference from (`from_kind` in `from_ns`) to (`to_group`,
    /// `to_kind`, `to_name` in `to_ns`) is allowed: same namespace, or a
    /// ReferenceGrant in the target namespace permits it.
    pub(super) fn permitted(
        &self,
        from_kind: &str,
        from_ns: &str,
        to_group: &str,
        to_kind: &str,
        to_ns: &str,
        to_name: &str,
    ) -> bool {
        self.permitted_from(
            GATEWAY_GROUP,
            from_kind,
            from_ns,
            to_group,
            to_kind,
            to_ns,
            to_name,
        )
    }

    /// [`Ctx::permitted`] for a referrer of any group (an `XListenerSet` is
    /// granted as `gateway.networking.x-k8s.io`).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn permitted_from(
        &self,
        from_group: &str,
        from_kind: &str,
        from_ns: &str,
        to_group: &str,
        to_kind: &str,
        to_ns: &str,
        to_name: &str,
    ) -> bool {
        if from_ns == to_ns {
            return true;
        }
        let Some(grants) = self
            .grants
            .get(to_ns)
            .and_then(|by_from| by_from.get(from_ns))
        else {
            return false;
        };
        grants.values().any(|g| {
            g.from
                .iter()
                .any(|f| f.group == from_group && f.kind == from_kind && f.namespace == from_ns)
                && g.to.iter().any(|t| {
                    t.group == to_group
                        && t.kind == to_kind
                        && t.name
                            .as_deref()
                            .is_none_or(|n| n.is_empty() || n == to_name)
                })
        })
    }

    pub(super) fn namespace_allowed(
        &self,
        from: &RouteNamespaces,
        owner_ns: &str,
        ns: &str,
    ) -> Result<(), String> {
        namespace_allowed_free(self.ns_labels, from, owner_ns, ns)
    }

    // ---------------------------------------------------------------- gateways

    /// The state of one Gateway, or `None` when it is absent or not ours.
    pub(super) fn gateway(&self, key: &ObjectKey) -> Option<Gw> {
        let Some(Object::Gateway(gw)) = self.snap.get(key) else {
            return None;
        };
        if !self
            .our_classes
            .contains(gw.spec.gateway_class_name.as_str())
        {
            return None;
        }
        let key = key.clone();
        {
            let params = match gw
                .spec
                .infrastructure
                .as_ref()
                .and_then(|i| i.parameters_ref.as_ref())
            {
                None => Ok(()),
                Some(p) => {
                    let ok = p.group.is_empty()
                        && p.kind == "ConfigMap"
                        && self
                            .snap
                            .get(&ObjectKey::new(
                                Kind::ConfigMap,
                                gw.metadata.ns(),
                                p.name.clone(),
                            ))
                            .is_some();
                    if ok {
                        Ok(())
                    } else {
                        Err((
                            Reason::InvalidParameters,
                            format!(
                                "infrastructure.parametersRef {}/{} {} is not a ConfigMap in namespace {}",
                                p.group,
                                p.kind,
                                p.name,
                                gw.metadata.ns()
                            ),
                        ))
                    }
                }
            };
            // Spec (GatewayReasonUnsupportedAddress): an address type the
            // implementation does not support leaves the Gateway not
            // Accepted. gwcore serves IP addresses and hostnames.
            let params = params.and_then(|()| {
                match gw.spec.addresses.iter().find_map(|a| match &a.type_ {
                    None | Some(AddressType::IpAddress | AddressType::Hostname) => None,
                    Some(other) => Some(other),
                }) {
                    None => Ok(()),
                    Some(ty) => Err((
                        Reason::UnsupportedAddress,
                        format!(
                            "address type {} is not supported: gwcore serves IPAddress and Hostname addresses",
                            ty.as_str()
                        ),
                    )),
                }
            });
            let mut listeners: Vec<Lst> = gw
                .spec
                .listeners
                .iter()
                .map(|l| {
                    let mut lst = self.listener(l, &key, gw.metadata.ns());
                    if lst.protocol == Some(ListenerProtocol::Https) && lst.accepted.is_ok() {
                        match self.frontend_validation(gw, l) {
                            Ok(v) => lst.frontend = v,
                            Err(f) => {
                                lst.accepted = Err((Reason::NoValidCaCertificate, f.1.clone()));
                                lst.resolved = Err(f);
                            }
                        }
                    }
                    lst
                })
                .collect();
            // ListenerSets targeting this Gateway.
            let mut sets: Vec<Ls> = Vec::new();
            for so in self.snap.of_kind(Kind::ListenerSet) {
                let Object::ListenerSet(ls) = so else {
                    continue;
                };
                let p = &ls.spec.parent_ref;
                let pns = p.namespace.as_deref().unwrap_or(ls.metadata.ns());
                if group_of(&p.group, GATEWAY_GROUP) != GATEWAY_GROUP
                    || p.kind.as_deref().unwrap_or("Gateway") != "Gateway"
                    || pns != gw.metadata.ns()
                    || p.name != gw.metadata.name
                {
                    continue;
                }
                let allowed = self.listener_set_allowed(gw, ls.metadata.ns());
                sets.push(Ls {
                    obj: (**ls).clone(),
                    key: so.key(),
                    allowed,
                });
            }
            // Precedence among ListenerSets: oldest first, then namespace/name.
            sets.sort_by(|a, b| {
                ts_key(&a.obj.metadata)
                    .cmp(&ts_key(&b.obj.metadata))
                    .then_with(|| a.key.cmp(&b.key))
            });
            for s in &sets {
                if s.allowed.is_ok() {
                    for l in &s.obj.spec.listeners {
                        let lst = self.listener(l, &s.key, s.obj.metadata.ns());
                        listeners.push(lst);
                    }
                }
            }
            resolve_conflicts(&mut listeners);
            Some(Gw {
                obj: (**gw).clone(),
                params,
                backend_client_certificate: self
                    .backend_client_certificate(gw)
                    .and_then(Result::ok),
                listeners,
                sets,
            })
        }
    }

    pub(super) fn listener_set_allowed(&self, gw: &Gateway, ls_ns: &str) -> Result<(), Fail> {
        let none = RouteNamespaces {
            from: Some(FromNamespaces::None),
            selector: None,
        };
        let from = gw
            .spec
            .allowed_listeners
            .as_ref()
            .and_then(|a| a.namespaces.as_ref())
            .unwrap_or(&none);
        match from.from.as_ref().unwrap_or(&FromNamespaces::None) {
            FromNamespaces::None => Err((
                Reason::NotAllowed,
                format!(
                    "Gateway {}/{} does not allow ListenerSets (allowedListeners)",
                    gw.metadata.ns(),
                    gw.metadata.name
                ),
            )),
            _ => self
                .namespace_allowed(from, gw.metadata.ns(), ls_ns)
                .map_err(|m| {
                    (
                        Reason::NotAllowed,
                        format!(
                            "not allowed by Gateway {}/{}: {m}",
                            gw.metadata.ns(),
                            gw.metadata.name
                        ),
                    )
                }),
        }
    }

    pub(super) fn listener(&self, l: &Listener, owner: &ObjectKey, owner_ns: &str) -> Lst {
        let protocol = ListenerProtocol::from_spec(&l.protocol);
        let tls_mode = l
            .tls
            .as_ref()
            .and_then(|t| t.mode.as_ref())
            .unwrap_or(&TlsModeType::Terminate);
        let native: Vec<&str> = match protocol {
            Some(ListenerProtocol::Http | ListenerProtocol::Https) => {
                vec!["HTTPRoute", "GRPCRoute"]
            }
            Some(ListenerProtocol::Tls) => vec!["TLSRoute"],
            Some(ListenerProtocol::Tcp) => vec!["TCPRoute"],
            Some(ListenerProtocol::Udp) => vec!["UDPRoute"],
            None => vec![],
        };
        let accepted = match protocol {
            // The CRDs accept an HTTPS listener without `tls` (only TLS
            // listeners need it by CEL); the spec says the field is
            // required for HTTPS: the listener is invalid, and says so,
            // rather than its Gateway or ListenerSet being refused whole.
            Some(ListenerProtocol::Https) if l.tls.is_none() => Err((
                Reason::Invalid,
                format!("listener {}: tls is required for protocol HTTPS", l.name),
            )),
            Some(_) => Ok(()),
            None => Err((
                Reason::UnsupportedProtocol,
                format!("protocol {} is not supported", l.protocol),
            )),
        };
        let mut resolved = Ok(());
        let kinds = l
            .allowed_routes
            .as_ref()
            .map(|a| a.kinds.as_slice())
            .unwrap_or(&[]);
        let supported: Vec<RouteGroupKind> = if accepted.is_err() {
            vec![]
        } else if kinds.is_empty() {
            native
                .iter()
                .map(|k| RouteGroupKind {
                    group: Some(GATEWAY_GROUP.into()),
                    kind: k.to_string(),
                })
                .collect()
        } else {
            let mut out = Vec::new();
            for k in kinds {
                let g = group_of(&k.group, GATEWAY_GROUP);
                if g == GATEWAY_GROUP && native.contains(&k.kind.as_str()) {
                    let gk = RouteGroupKind {
                        group: Some(g),
                        kind: k.kind.clone(),
                    };
                    if !out.contains(&gk) {
                        out.push(gk);
                    }
                } else if resolved.is_ok() {
                    resolved = Err((
                        Reason::InvalidRouteKinds,
                        format!(
                            "route kind {g}/{} is not supported on a {} listener",
                            k.kind, l.protocol
                        ),
                    ));
                }
            }
            out
        };
        let mut certs = Vec::new();
        let terminates = matches!(protocol, Some(ListenerProtocol::Https))
            || (matches!(protocol, Some(ListenerProtocol::Tls))
                && *tls_mode == TlsModeType::Terminate);
        if terminates && let Some(tls) = &l.tls {
            for c in &tls.certificate_refs {
                match self.certificate(c, owner, owner_ns) {
                    Ok(k) => certs.push(k),
                    Err(f) => {
                        if resolved.is_ok()
                            || matches!(resolved, Err((Reason::InvalidRouteKinds, _)))
                        {
                            resolved = Err(f);
                        }
                    }
                }
            }
        }
        Lst {
            spec: l.clone(),
            owner: owner.clone(),
            owner_ns: owner_ns.to_string(),
            protocol,
            supported,
            accepted,
            resolved,
            conflict: None,
            certs,
            frontend: None,
            attached: RouteList::new(),
        }
    }

    pub(super) fn certificate(
        &self,
        c: &SecretObjectReference,
        owner: &ObjectKey,
        owner_ns: &str,
    ) -> Result<ObjectKey, Fail> {
        let group = c.group.as_deref().unwrap_or("");
        let kind = c.kind.as_deref().unwrap_or("Secret");
        if !group.is_empty() || kind != "Secret" {
            return Err((
                Reason::InvalidCertificateRef,
                format!(
                    "certificateRef {group}/{kind} {} is not a core Secret",
                    c.name
                ),
            ));
        }
        let ns = c.namespace.as_deref().unwrap_or(owner_ns);
        // A ListenerSet is granted under the name it is served as.
        let (from_group, from_kind) = match self.snap.get(owner) {
            Some(Object::ListenerSet(ls)) => (ls.served_as.group(), ls.served_as.as_str()),
            _ => (GATEWAY_GROUP, owner.kind.as_str()),
        };
        if !self.permitted_from(from_group, from_kind, owner_ns, "", "Secret", ns, &c.name) {
            return Err((
                Reason::RefNotPermitted,
                format!(
                    "Secret {ns}/{} is in another namespace and no ReferenceGrant allows it",
                    c.name
                ),
            ));
        }
        let key = ObjectKey::new(Kind::Secret, ns, c.name.clone());
        let Some(Object::Secret(s)) = self.snap.get(&key) else {
            return Err((
                Reason::InvalidCertificateRef,
                format!("Secret {ns}/{} does not exist", c.name),
            ));
        };
        let crt = secret_value(s, "tls.crt").unwrap_or_default();
        let keyb = secret_value(s, "tls.key").unwrap_or_default();
        let has = |b: &[u8], needle: &str| String::from_utf8_lossy(b).contains(needle);
        if !has(&crt, "-----BEGIN CERTIFICATE-----") || !has(&keyb, "PRIVATE KEY-----") {
            return Err((
                Reason::InvalidCertificateRef,
                format!(
                    "Secret {ns}/{} does not hold a PEM certificate and private key in tls.crt and tls.key",
                    c.name
                ),
            ));
        }
        Ok(key)
    }

    /// Resolves a CA bundle reference (a ConfigMap, or a Secret, holding a
    /// PEM `ca.crt`).
    pub(super) fn ca_bundle(
        &self,
        c: &SecretObjectReference,
        owner_kind: &str,
        owner_ns: &str,
        bad_kind: Reason,
    ) -> Result<ObjectKey, Fail> {
        let group = c.group.as_deref().unwrap_or("");
        let kind = match (group, c.kind.as_deref().unwrap_or("ConfigMap")) {
            ("", "ConfigMap") => Kind::ConfigMap,
            ("", "Secret") => Kind::Secret,
            (g, k) => {
                return Err((
                    bad_kind,
                    format!(
                        "caCertificateRef {g}/{k} {} is not a ConfigMap or Secret",
                        c.name
                    ),
                ));
            }
        };
        let ns = c.namespace.as_deref().unwrap_or(owner_ns);
        if !self.permitted(owner_kind, owner_ns, "", kind.as_str(), ns, &c.name) {
            return Err((
                Reason::RefNotPermitted,
                format!(
                    "{kind} {ns}/{} is in another namespace and no ReferenceGrant allows it",
                    c.name
                ),
            ));
        }
        let key = ObjectKey::new(kind, ns, c.name.clone());
        let data = match self.snap.get(&key) {
            Some(Object::ConfigMap(cm)) => cm.data.get("ca.crt").cloned().unwrap_or_default(),
            Some(Object::Secret(s)) => secret_value(s, "ca.crt")
                .map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_default(),
            _ => {
                return Err((
                    Reason::InvalidCaCertificateRef,
                    format!("{kind} {ns}/{} does not exist", c.name),
                ));
            }
        };
        if !data.contains("-----BEGIN CERTIFICATE-----") {
            return Err((
                Reason::InvalidCaCertificateRef,
                format!("{kind} {ns}/{} has no PEM certificate in ca.crt", c.name),
            ));
        }
        Ok(key)
    }

    /// Frontend client-certificate validation of an HTTPS listener: the
    /// `perPort` entry for its port, else the default.
    pub(super) fn frontend_validation(
        &self,
        gw: &Gateway,
        l: &Listener,
    ) -> Result<Option<FrontendValidation>, Fail> {
        let Some(front) = gw.spec.tls.as_ref().and_then(|t| t.frontend.as_ref()) else {
            return Ok(None);
        };
        let cfg = front
            .per_port
            .iter()
            .find(|p| p.port == l.port)
            .map(|p| &p.tls)
            .or(front.default.as_ref());
        let Some(v) = cfg.and_then(|c| c.validation.as_ref()) else {
            return Ok(None);
        };
        let ca_certificates = v
            .ca_certificate_refs
            .iter()
            .map(|c| {
                self.ca_bundle(
                    c,
                    "Gateway",
                    gw.metadata.ns(),
                    Reason::InvalidCaCertificateKind,
                )
            })
            .collect::<Result<Vec<_>, Fail>>()?;
        Ok(Some(FrontendValidation {
            ca_certificates,
            allow_insecure_fallback: v.mode == Some(FrontendValidationMode::AllowInsecureFallback),
        }))
    }

    /// `spec.tls.backend.clientCertificateRef`, when set.
    pub(super) fn backend_client_certificate(
        &self,
        gw: &Gateway,
    ) -> Option<Result<ObjectKey, Fail>> {
        let r = gw
            .spec
            .tls
            .as_ref()?
            .backend
            .as_ref()?
            .client_certificate_ref
            .as_ref()?;
        let key = ObjectKey::new(Kind::Gateway, gw.metadata.ns(), gw.metadata.name.clone());
        Some(
            self.certificate(r, &key, gw.metadata.ns())
                .map_err(|(reason, m)| {
                    let reason = if reason == Reason::RefNotPermitted {
                        reason
                    } else {
                        Reason::InvalidClientCertificateRef
                    };
                    (reason, m)
                }),
        )
    }
}

/// A Secret's value: `stringData` first, then base64-decoded `data`.
pub(super) fn secret_value(s: &crate::model::Secret, key: &str) -> Option<Vec<u8>> {
    if let Some(v) = s.string_data.get(key) {
        return Some(v.as_bytes().to_vec());
    }
    s.data.get(key).and_then(|v| {
        base64::engine::general_purpose::STANDARD
            .decode(v.trim())
            .ok()
    })
}

/// Transport family of a protocol, for conflicts: listeners on one port must
/// share it (UDP lives beside the TCP-based ones).
pub(super) fn family(p: Option<ListenerProtocol>) -> Option<&'static str> {
    Some(match p? {
        ListenerProtocol::Http => "http",
        ListenerProtocol::Https | ListenerProtocol::Tls => "tls",
        ListenerProtocol::Tcp => "tcp",
        ListenerProtocol::Udp => "udp",
    })
}

/// Marks listeners that clash with an earlier (higher-precedence) one.
pub(super) fn resolve_conflicts(ls: &mut [Lst]) {
    for i in 0..ls.len() {
        if ls[i].accepted.is_err() {
            continue;
        }
        let fi = family(ls[i].protocol);
        for j in 0..i {
            if ls[j].accepted.is_err()
                || ls[j].conflict.is_some()
                || ls[j].spec.port != ls[i].spec.port
            {
                continue;
            }
            let fj = family(ls[j].protocol);
            let udp = |f: Option<&str>| f == Some("udp");
            if udp(fi) != udp(fj) {
                continue;
            }
            if fi != fj {
                ls[i].conflict = Some((
                    Reason::ProtocolConflict,
                    format!(
                        "port {} is already used by listener {} with protocol {}",
                        ls[i].spec.port, ls[j].spec.name, ls[j].spec.protocol
                    ),
                ));
                break;
            }
            if ls[i].spec.hostname == ls[j].spec.hostname {
                ls[i].conflict = Some((
                    Reason::HostnameConflict,
                    format!(
                        "listener {} already serves hostname {} on port {}",
                        ls[j].spec.name,
                        ls[j].spec.hostname.as_deref().unwrap_or("(any)"),
                        ls[i].spec.port
                    ),
                ));
                break;
            }
        }
    }
}
