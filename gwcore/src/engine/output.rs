//! What the engine hands out per Gateway: the statuses of the Gateway,
//! its listeners and ListenerSets, and its routing input.

use super::*;

impl Ctx<'_> {
    // ---------------------------------------------------------------- output

    pub(super) fn stamp(
        &self,
        conds: Vec<Condition>,
        prev: &[Condition],
        meta: &ObjectMeta,
    ) -> Vec<Condition> {
        stamp(conds, prev, meta, &self.opts.now)
    }

    pub(super) fn listener_status(
        &self,
        l: &Lst,
        prev: &[ListenerStatus],
        meta: &ObjectMeta,
    ) -> ListenerStatus {
        let mut conds = Vec::new();
        match (&l.accepted, &l.conflict) {
            (Err((r, m)), _) => conds.push(cond(T::Accepted, false, *r, m.clone())),
            (Ok(()), Some((r, m))) => conds.push(cond(T::Accepted, false, *r, m.clone())),
            (Ok(()), None) => conds.push(cond(
                T::Accepted,
                true,
                Reason::Accepted,
                "listener accepted",
            )),
        }
        conds.push(match &l.conflict {
            Some((r, m)) => cond(T::Conflicted, true, *r, m.clone()),
            None => cond(T::Conflicted, false, Reason::NoConflicts, "no conflicts"),
        });
        conds.push(match &l.resolved {
            Ok(()) => cond(
                T::ResolvedRefs,
                true,
                Reason::ResolvedRefs,
                "all references resolved",
            ),
            Err((r, m)) => cond(T::ResolvedRefs, false, *r, m.clone()),
        });
        conds.push(match (&l.accepted, &l.conflict, &l.resolved) {
            (Ok(()), None, Ok(())) => cond(
                T::Programmed,
                true,
                Reason::Programmed,
                "listener programmed",
            ),
            (_, Some((r, m)), _) => cond(T::Programmed, false, *r, m.clone()),
            _ => cond(
                T::Programmed,
                false,
                Reason::Invalid,
                "listener is not valid",
            ),
        });
        let prev_conds = prev
            .iter()
            .find(|p| p.name == l.spec.name)
            .map(|p| p.conditions.as_slice())
            .unwrap_or(&[]);
        ListenerStatus {
            name: l.spec.name.clone(),
            supported_kinds: l.supported.clone(),
            attached_routes: i32::try_from(l.attached.len()).unwrap_or(i32::MAX),
            conditions: self.stamp(conds, prev_conds, meta),
        }
    }

    /// The statuses of a Gateway and of its ListenerSets.
    pub(super) fn gateway_statuses(
        &self,
        key: &ObjectKey,
        gw: &Gw,
    ) -> Vec<(ObjectKey, ObjectStatus)> {
        let mut out = Vec::new();
        {
            let own: Vec<&Lst> = gw.listeners.iter().filter(|l| &l.owner == key).collect();
            let prev = gw.obj.status.as_ref();
            let prev_listeners = prev.map(|s| s.listeners.as_slice()).unwrap_or(&[]);
            let listeners: Vec<ListenerStatus> = own
                .iter()
                .map(|l| self.listener_status(l, prev_listeners, &gw.obj.metadata))
                .collect();
            let valid = own.iter().filter(|l| l.valid()).count();
            let all_ok = own.iter().all(|l| l.valid());
            let accepted = match &gw.params {
                Err((r, m)) => cond(T::Accepted, false, *r, m.clone()),
                Ok(()) if valid == 0 => cond(
                    T::Accepted,
                    false,
                    Reason::ListenersNotValid,
                    "no listener is valid",
                ),
                Ok(()) if !all_ok => cond(
                    T::Accepted,
                    true,
                    Reason::ListenersNotValid,
                    "some listeners are not valid",
                ),
                Ok(()) => cond(T::Accepted, true, Reason::Accepted, "gateway accepted"),
            };
            // Spec (GatewayReasonAddressNotUsable): an address the
            // deployment cannot serve leaves the Gateway not Programmed.
            let (deployment_addresses, usable_addresses) = self.opts.addressing(key);
            let unusable =
                usable_addresses.as_ref().and_then(|usable| {
                    gw.obj.spec.addresses.iter().find(|a| {
                        !a.value.is_empty() && !usable.contains(&canonical_address(&a.value))
                    })
                });
            let programmed = if let (true, Some(a)) = (accepted.is_true(), unusable) {
                let served: Vec<&str> = usable_addresses
                    .iter()
                    .flat_map(|u| u.iter())
                    .map(String::as_str)
                    .collect();
                cond(
                    T::Programmed,
                    false,
                    Reason::AddressNotUsable,
                    format!(
                        "address {} cannot be used: this deployment serves {}",
                        a.value,
                        if served.is_empty() {
                            "no address".to_string()
                        } else {
                            served.join(", ")
                        }
                    ),
                )
            } else if accepted.is_true() {
                cond(
                    T::Programmed,
                    true,
                    Reason::Programmed,
                    "gateway programmed",
                )
            } else {
                cond(
                    T::Programmed,
                    false,
                    Reason::Invalid,
                    accepted.message.clone(),
                )
            };
            let mut conds = vec![accepted, programmed];
            conds.push(match self.backend_client_certificate(&gw.obj) {
                Some(Err((r, m))) => cond(T::ResolvedRefs, false, r, m),
                _ => cond(
                    T::ResolvedRefs,
                    true,
                    Reason::ResolvedRefs,
                    "all references resolved",
                ),
            });
            let insecure = gw
                .obj
                .spec
                .tls
                .as_ref()
                .and_then(|t| t.frontend.as_ref())
                .is_some_and(|f| {
                    f.default
                        .iter()
                        .chain(f.per_port.iter().map(|p| &p.tls))
                        .any(|c| {
                            c.validation.as_ref().and_then(|v| v.mode.as_ref())
                                == Some(
                                    &crate::values::FrontendValidationMode::AllowInsecureFallback,
                                )
                        })
                });
            if insecure {
                conds.push(cond(
                    T::InsecureFrontendValidationMode,
                    true,
                    Reason::ConfigurationChanged,
                    "client certificate validation allows insecure fallback",
                ));
            }
            // GEP-3793: a Gateway with spec.defaultScope set "MUST update
            // its own status with a condition of type DefaultGateway and
            // status true"; without it, it "MUST NOT set the DefaultGateway
            // condition".
            match &gw.obj.spec.default_scope {
                None | Some(crate::values::GatewayDefaultScope::None) => {}
                Some(scope) if gw.is_default() => conds.push(cond(
                    T::DefaultGateway,
                    true,
                    Reason::DefaultGateway,
                    format!("Gateway has default scope {scope}"),
                )),
                Some(scope) => conds.push(cond(
                    T::DefaultGateway,
                    false,
                    Reason::UnsupportedValue,
                    format!("spec.defaultScope: unsupported value {scope:?}; supported: All, None"),
                )),
            }
            let prev_conds = prev.map(|s| s.conditions.as_slice()).unwrap_or(&[]);
            let conditions = self.stamp(conds, prev_conds, &gw.obj.metadata);
            let mut addresses: Vec<GatewayStatusAddress> = gw
                .obj
                .spec
                .addresses
                .iter()
                .filter(|a| !a.value.is_empty())
                .filter(|a| {
                    usable_addresses
                        .as_ref()
                        .is_none_or(|u| u.contains(&canonical_address(&a.value)))
                })
                .map(|a| GatewayStatusAddress {
                    type_: a
                        .type_
                        .clone()
                        .or(Some(crate::values::AddressType::IpAddress)),
                    value: a.value.clone(),
                })
                .collect();
            // Only a Gateway that asks for no address of its own gets the
            // deployment's; one whose addresses cannot be used lists none.
            if addresses.is_empty() && gw.obj.spec.addresses.iter().all(|a| a.value.is_empty()) {
                addresses = deployment_addresses.to_vec();
            }
            // Spec: attachedListenerSets counts the ListenerSets that are Accepted.
            let accepted_sets = gw
                .sets
                .iter()
                .filter(|s| {
                    s.allowed.is_ok() && gw.listeners.iter().any(|l| l.owner == s.key && l.valid())
                })
                .count();
            let attached_listener_sets = (gw.obj.spec.allowed_listeners.is_some()
                || !gw.sets.is_empty())
            .then(|| i32::try_from(accepted_sets).unwrap_or(i32::MAX));
            out.push((
                key.clone(),
                ObjectStatus::Gateway(GatewayStatus {
                    addresses,
                    conditions,
                    listeners,
                    attached_listener_sets,
                }),
            ));
            // ListenerSets.
            for s in &gw.sets {
                let prev = s.obj.status.as_ref();
                let prev_conds = prev.map(|p| p.conditions.as_slice()).unwrap_or(&[]);
                let prev_l = prev.map(|p| p.listeners.as_slice()).unwrap_or(&[]);
                let (conds, listeners) = match &s.allowed {
                    Err((r, m)) => (
                        vec![
                            cond(T::Accepted, false, *r, m.clone()),
                            cond(T::Programmed, false, *r, m.clone()),
                        ],
                        vec![],
                    ),
                    Ok(()) => {
                        let mine: Vec<&Lst> =
                            gw.listeners.iter().filter(|l| l.owner == s.key).collect();
                        let valid = mine.iter().filter(|l| l.valid()).count();
                        let all_ok = mine.iter().all(|l| l.valid());
                        let conds = if valid == 0 {
                            vec![
                                cond(
                                    T::Accepted,
                                    false,
                                    Reason::ListenersNotValid,
                                    "no listener is valid",
                                ),
                                cond(
                                    T::Programmed,
                                    false,
                                    Reason::ListenersNotValid,
                                    "no listener is valid",
                                ),
                            ]
                        } else {
                            vec![
                                if all_ok {
                                    cond(
                                        T::Accepted,
                                        true,
                                        Reason::Accepted,
                                        "listener set accepted",
                                    )
                                } else {
                                    cond(
                                        T::Accepted,
                                        true,
                                        Reason::ListenersNotValid,
                                        "some listeners are not valid",
                                    )
                                },
                                cond(
                                    T::Programmed,
                                    true,
                                    Reason::Programmed,
                                    "listener set programmed",
                                ),
                            ]
                        };
                        (
                            conds,
                            mine.iter()
                                .map(|l| self.listener_status(l, prev_l, &s.obj.metadata))
                                .collect(),
                        )
                    }
                };
                let conditions = self.stamp(conds, prev_conds, &s.obj.metadata);
                out.push((
                    s.key.clone(),
                    ObjectStatus::ListenerSet(ListenerSetStatus {
                        conditions,
                        listeners,
                    }),
                ));
            }
        }
        out
    }
}

/// The routing input of a Gateway: usable listeners only, routes by key.
pub(super) fn gateway_routing(key: &ObjectKey, gw: &Gw) -> GatewayRouting {
    let listeners = gw
        .listeners
        .iter()
        .filter(|l| l.usable())
        .filter_map(|l| {
            let protocol = l.protocol?;
            let routes = l.attached.clone();
            Some(ListenerRouting {
                name: l.spec.name.clone(),
                source: l.owner.clone(),
                port: u16::try_from(l.spec.port).unwrap_or(0),
                protocol,
                hostname: l.spec.hostname.clone(),
                tls_mode: l.spec.tls.as_ref().map(|t| {
                    if t.mode == Some(crate::values::TlsModeType::Passthrough) {
                        TlsMode::Passthrough
                    } else {
                        TlsMode::Terminate
                    }
                }),
                certificates: l.certs.clone(),
                frontend_validation: l.frontend.clone(),
                routes,
            })
        })
        .collect();
    GatewayRouting {
        gateway: key.clone(),
        listeners,
        backend_client_certificate: gw.backend_client_certificate.clone(),
        policies: BTreeMap::new(),
    }
}
