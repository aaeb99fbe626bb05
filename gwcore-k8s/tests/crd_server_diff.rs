//! gwcore's validation against a current API server's (issue 14, item 9).
//!
//! What a cluster can hold is what its CRDs accept. This test sends
//! generated objects and edits of them to the upstream CRD server of
//! Kubernetes 1.36 (`k8s.io/apiextensions-apiserver` v0.36, CEL included)
//! with the Gateway API CRDs of the experimental channel applied unmodified
//! (`source .ci/crd-server.sh`, which exports `GWCORE_CRD_SERVER`, the
//! server's kubeconfig), as `POST ...?dryRun=All`, and requires gwcore's
//! verdict on the same JSON text to match the server's on every case, on
//! at least [`MIN_CASES`] cases.
//!
//! # The verdict
//!
//! - **The server accepts** (2xx): the object is one a cluster can hold.
//!   gwcore must read it: [`gwcore::load::load_str`] on the same text gives
//!   the object in `Loaded::objects` and no [`Severity::Error`] diagnostic.
//!   (Warnings may say what gwcore ignores; what the object asks for that
//!   gwcore cannot serve is said by the engine in its status, e.g. a
//!   listener `Accepted=False`/`Invalid` or a route `UnsupportedValue`: the
//!   engine computes every object it is given, so an object in `objects`
//!   is never dropped.)
//! - **The server refuses** (422 Invalid or 400 BadRequest): gwcore must
//!   flag it: an error diagnostic, and the object left out, as `gwcore
//!   check` exits 1 on it.
//!
//! Any other answer of the server (404, 409, 5xx...) fails the test as a
//! broken harness, not as a disagreement.
//!
//! # The cases
//!
//! The objects of `gwcore::testing::snapshot::objects()` (GatewayClasses,
//! Gateways, HTTPRoutes, ReferenceGrants, BackendTLSPolicies), and derived
//! from them ListenerSets (a Gateway's listeners), GRPCRoutes, TLSRoutes,
//! TCPRoutes and UDPRoutes (a route's parents, hostnames and backends),
//! drawn with a fixed seed ([`SEED`]) so every run sends the same cases;
//! each as generated and edited by the [`mutations`], which each aim at one
//! CEL rule (`x-kubernetes-validations`) or one OpenAPI constraint of the
//! CRDs, most with both a side the rule refuses and one it accepts. A
//! mutation marked `Refuse` must be refused by the server at least once,
//! and one marked `Accept` accepted at least once, so a mutation that
//! misses its rule fails the test too.
//!
//! The test has no exceptions: every case is judged alike. What gwcore
//! and the server decided differently, and how it was settled, is in
//! docs/validation.md.
//!
//! Without `GWCORE_CRD_SERVER` the test skips, saying so, except under
//! `CI=true`, where that is a failure.

use std::collections::BTreeMap;
use std::time::Instant;

use futures_util::StreamExt;
use gwcore::load::{Severity, load_str};
use gwcore::model::Object;
use kube::Client;
use kube::api::PostParams;
use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config as RunnerConfig, RngAlgorithm, TestRng, TestRunner};
use serde_json::{Value, json};

/// The least number of cases a run sends.
const MIN_CASES: usize = 10_000;
/// Requests in flight at once.
const IN_FLIGHT: usize = 12;
/// The seed of the generated objects and of the choice of edits.
const SEED: [u8; 32] = *b"gwcore/crd-server-diff/seed/0001";

/// What the server is meant to answer to a mutation: the side of the rule
/// it aims at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Aim {
    /// The edit breaks the rule: the server must refuse at least once.
    Refuse,
    /// The edit keeps to the rule (its accepted side).
    Accept,
}

/// One edit of an object, aimed at one rule of the CRDs.
struct Mutation {
    /// `kind/what`, e.g. `Gateway/tls-on-http`.
    name: &'static str,
    /// The kinds it applies to.
    kinds: &'static [&'static str],
    /// The rule's side it aims at.
    aim: Aim,
    /// Edits the object; `false` when it does not apply to this one.
    edit: fn(&mut Value) -> bool,
}

const LISTENERS: &[&str] = &["Gateway", "ListenerSet"];
const ROUTES: &[&str] = &["HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute"];
const HTTP: &[&str] = &["HTTPRoute"];
const HTTP_GRPC: &[&str] = &["HTTPRoute", "GRPCRoute"];
const ALL: &[&str] = &[
    "GatewayClass",
    "Gateway",
    "ListenerSet",
    "HTTPRoute",
    "GRPCRoute",
    "TLSRoute",
    "TCPRoute",
    "UDPRoute",
    "ReferenceGrant",
    "BackendTLSPolicy",
];

/// `o[path...]`, creating objects on the way.
fn at<'a>(o: &'a mut Value, path: &[&str]) -> &'a mut Value {
    let mut v = o;
    for p in path {
        if !v.is_object() {
            *v = json!({});
        }
        v = v
            .as_object_mut()
            .expect("made an object")
            .entry(p.to_string())
            .or_insert(Value::Null);
    }
    v
}

/// The array at `o[path...]`, if there is one.
fn arr<'a>(o: &'a mut Value, path: &[&str]) -> Option<&'a mut Vec<Value>> {
    let mut v = o;
    for p in path {
        v = v.get_mut(*p)?;
    }
    v.as_array_mut()
}

/// The first listener.
fn listener0(o: &mut Value) -> Option<&mut Value> {
    arr(o, &["spec", "listeners"])?.first_mut()
}

/// The first rule.
fn rule0(o: &mut Value) -> Option<&mut Value> {
    arr(o, &["spec", "rules"])?.first_mut()
}

/// The first match of the first rule (created if the rule has none).
fn match0(o: &mut Value) -> Option<&mut Value> {
    let r = rule0(o)?;
    let ms = at(r, &["matches"]);
    if !ms.is_array() || ms.as_array().is_some_and(Vec::is_empty) {
        *ms = json!([{}]);
    }
    ms.as_array_mut()?.first_mut()
}

/// The first backendRef of the first rule.
fn backend0(o: &mut Value) -> Option<&mut Value> {
    arr(rule0(o)?, &["backendRefs"])?.first_mut()
}

/// Sets the first rule's filters (HTTPRoute).
fn set_filters(o: &mut Value, fs: Value) -> bool {
    let Some(r) = rule0(o) else { return false };
    r["filters"] = fs;
    true
}

/// Sets listener 0's protocol and tls (removing tls when `tls` is null) and
/// hostname handling for L4.
fn listener_as(o: &mut Value, protocol: &str, tls: Value) -> bool {
    let Some(l) = listener0(o) else { return false };
    l["protocol"] = protocol.into();
    let m = l.as_object_mut().expect("listener object");
    if tls.is_null() {
        m.remove("tls");
    } else {
        m.insert("tls".into(), tls);
    }
    if matches!(protocol, "TCP" | "UDP") {
        m.remove("hostname");
    }
    true
}

fn cert_tls() -> Value {
    json!({"certificateRefs": [{"name": "cert"}]})
}

/// The edits, each aimed at one rule of the CRDs.
fn mutations() -> Vec<Mutation> {
    use Aim::{Accept, Refuse};
    macro_rules! m {
        ($name:expr, $kinds:expr, $aim:expr, $edit:expr) => {
            Mutation {
                name: $name,
                kinds: $kinds,
                aim: $aim,
                edit: $edit,
            }
        };
    }
    vec![
        // ---- metadata and object shape (OpenAPI) ----
        m!("any/name-uppercase", ALL, Refuse, |o| {
            o["metadata"]["name"] = "Bad-Name".into();
            true
        }),
        m!("any/name-dots", ALL, Accept, |o| {
            o["metadata"]["name"] = "a.b-c".into();
            true
        }),
        // ---- GatewayClass ----
        m!(
            "GatewayClass/controllerName-without-path",
            &["GatewayClass"],
            Refuse,
            |o| {
                o["spec"]["controllerName"] = "example.com".into();
                true
            }
        ),
        m!(
            "GatewayClass/controllerName-empty-path",
            &["GatewayClass"],
            Refuse,
            |o| {
                o["spec"]["controllerName"] = "example.com/".into();
                true
            }
        ),
        m!(
            "GatewayClass/controllerName-uppercase-domain",
            &["GatewayClass"],
            Refuse,
            |o| {
                o["spec"]["controllerName"] = "Example.com/x".into();
                true
            }
        ),
        m!(
            "GatewayClass/controllerName-path-chars",
            &["GatewayClass"],
            Accept,
            |o| {
                o["spec"]["controllerName"] = "example.com/a/b-c_d.e~f%20".into();
                true
            }
        ),
        m!(
            "GatewayClass/controllerName-space",
            &["GatewayClass"],
            Refuse,
            |o| {
                o["spec"]["controllerName"] = "example.com/a b".into();
                true
            }
        ),
        m!(
            "GatewayClass/description-too-long",
            &["GatewayClass"],
            Refuse,
            |o| {
                o["spec"]["description"] = "x".repeat(65).into();
                true
            }
        ),
        // ---- listeners (Gateway, ListenerSet) ----
        m!("listeners/tls-on-http", LISTENERS, Refuse, |o| listener_as(
            o,
            "HTTP",
            cert_tls()
        )),
        m!("listeners/tls-on-tcp", LISTENERS, Refuse, |o| listener_as(
            o,
            "TCP",
            cert_tls()
        )),
        m!("listeners/tls-on-udp", LISTENERS, Refuse, |o| listener_as(
            o,
            "UDP",
            cert_tls()
        )),
        m!("listeners/https-without-tls", LISTENERS, Accept, |o| {
            listener_as(o, "HTTPS", Value::Null)
        }),
        m!("listeners/https-passthrough", LISTENERS, Refuse, |o| {
            listener_as(o, "HTTPS", json!({"mode": "Passthrough"}))
        }),
        m!("listeners/https-terminate", LISTENERS, Accept, |o| {
            listener_as(
                o,
                "HTTPS",
                json!({"mode": "Terminate", "certificateRefs": [{"name": "c"}]}),
            )
        }),
        m!("listeners/tls-without-tls", LISTENERS, Refuse, |o| {
            listener_as(o, "TLS", Value::Null)
        }),
        m!("listeners/tls-empty-mode", LISTENERS, Refuse, |o| {
            listener_as(o, "TLS", json!({"mode": ""}))
        }),
        m!("listeners/tls-defaulted-mode", LISTENERS, Accept, |o| {
            listener_as(o, "TLS", cert_tls())
        }),
        m!("listeners/tls-passthrough", LISTENERS, Accept, |o| {
            listener_as(o, "TLS", json!({"mode": "Passthrough"}))
        }),
        m!("listeners/tls-bogus-mode", LISTENERS, Refuse, |o| {
            listener_as(o, "TLS", json!({"mode": "Bogus"}))
        }),
        m!(
            "listeners/terminate-without-certs",
            LISTENERS,
            Refuse,
            |o| { listener_as(o, "HTTPS", json!({"mode": "Terminate"})) }
        ),
        m!("listeners/terminate-with-options", LISTENERS, Accept, |o| {
            listener_as(
                o,
                "HTTPS",
                json!({"mode": "Terminate", "options": {"example.com/k": "v"}}),
            )
        }),
        m!("listeners/hostname-on-tcp", LISTENERS, Refuse, |o| {
            listener_as(o, "TCP", Value::Null)
                && listener0(o).is_some_and(|l| {
                    l["hostname"] = "a.example.com".into();
                    true
                })
        }),
        m!("listeners/hostname-on-udp", LISTENERS, Refuse, |o| {
            listener_as(o, "UDP", Value::Null)
                && listener0(o).is_some_and(|l| {
                    l["hostname"] = "a.example.com".into();
                    true
                })
        }),
        m!("listeners/hostname-ip", LISTENERS, Accept, |o| {
            listener_as(o, "HTTP", Value::Null)
                && listener0(o).is_some_and(|l| {
                    l["hostname"] = "10.1.2.3".into();
                    true
                })
        }),
        m!("listeners/hostname-uppercase", LISTENERS, Refuse, |o| {
            listener0(o).is_some_and(|l| {
                l["protocol"] = "HTTP".into();
                l.as_object_mut().map(|m| m.remove("tls"));
                l["hostname"] = "A.example.com".into();
                true
            })
        }),
        m!(
            "listeners/hostname-inner-wildcard",
            LISTENERS,
            Refuse,
            |o| {
                listener0(o).is_some_and(|l| {
                    l["protocol"] = "HTTP".into();
                    l.as_object_mut().map(|m| m.remove("tls"));
                    l["hostname"] = "a.*.example.com".into();
                    true
                })
            }
        ),
        m!("listeners/hostname-wildcard", LISTENERS, Accept, |o| {
            listener0(o).is_some_and(|l| {
                l["protocol"] = "HTTP".into();
                l.as_object_mut().map(|m| m.remove("tls"));
                l["hostname"] = "*.x.example.com".into();
                true
            })
        }),
        m!("listeners/duplicate-name", LISTENERS, Refuse, |o| {
            let Some(ls) = arr(o, &["spec", "listeners"]) else {
                return false;
            };
            let mut l = ls[0].clone();
            l["port"] = 9999.into();
            ls.push(l);
            true
        }),
        m!(
            "listeners/duplicate-port-protocol-hostname",
            LISTENERS,
            Refuse,
            |o| {
                let Some(ls) = arr(o, &["spec", "listeners"]) else {
                    return false;
                };
                let mut l = ls[0].clone();
                l["name"] = "copy".into();
                ls.push(l);
                true
            }
        ),
        m!(
            "listeners/same-port-other-hostname",
            LISTENERS,
            Accept,
            |o| {
                let Some(ls) = arr(o, &["spec", "listeners"]) else {
                    return false;
                };
                let mut l = ls[0].clone();
                if matches!(l["protocol"].as_str(), Some("TCP" | "UDP")) {
                    return false;
                }
                l["name"] = "copy".into();
                l["hostname"] = "other.unique.example".into();
                ls.push(l);
                true
            }
        ),
        m!("listeners/name-invalid", LISTENERS, Refuse, |o| {
            listener0(o).is_some_and(|l| {
                l["name"] = "Not_A_Name".into();
                true
            })
        }),
        m!("listeners/port-zero", LISTENERS, Refuse, |o| {
            listener0(o).is_some_and(|l| {
                l["port"] = 0.into();
                true
            })
        }),
        m!("listeners/port-too-big", LISTENERS, Refuse, |o| {
            listener0(o).is_some_and(|l| {
                l["port"] = 65536.into();
                true
            })
        }),
        m!(
            "listeners/protocol-domain-prefixed",
            LISTENERS,
            Accept,
            |o| {
                listener0(o).is_some_and(|l| {
                    l["protocol"] = "example.com/quic".into();
                    l.as_object_mut().map(|m| m.remove("tls"));
                    true
                })
            }
        ),
        m!("listeners/protocol-bad-chars", LISTENERS, Refuse, |o| {
            listener0(o).is_some_and(|l| {
                l["protocol"] = "no spaces".into();
                l.as_object_mut().map(|m| m.remove("tls"));
                true
            })
        }),
        m!("listeners/protocol-empty", LISTENERS, Refuse, |o| {
            listener0(o).is_some_and(|l| {
                l["protocol"] = "".into();
                l.as_object_mut().map(|m| m.remove("tls"));
                true
            })
        }),
        m!("listeners/from-bogus", LISTENERS, Refuse, |o| {
            listener0(o).is_some_and(|l| {
                *at(l, &["allowedRoutes", "namespaces", "from"]) = "Bogus".into();
                true
            })
        }),
        m!(
            "listeners/from-selector-without-selector",
            LISTENERS,
            Accept,
            |o| {
                listener0(o).is_some_and(|l| {
                    *at(l, &["allowedRoutes", "namespaces"]) = json!({"from": "Selector"});
                    true
                })
            }
        ),
        // The CRDs take a LabelSelector's operator as any string (the
        // API server checks it only in its own kinds): the object is
        // stored, and gwcore's engine has the selector select no namespace.
        m!("listeners/selector-bad-operator", LISTENERS, Accept, |o| {
            listener0(o).is_some_and(|l| {
                *at(l, &["allowedRoutes", "namespaces"]) = json!({"from": "Selector",
                    "selector": {"matchExpressions": [{"key": "k", "operator": "Near", "values": ["v"]}]}});
                true
            })
        }),
        m!("listeners/kinds-too-many", LISTENERS, Refuse, |o| {
            listener0(o).is_some_and(|l| {
                *at(l, &["allowedRoutes", "kinds"]) = (0..9)
                    .map(|i| json!({"kind": format!("K{i}")}))
                    .collect::<Vec<_>>()
                    .into();
                true
            })
        }),
        m!("listeners/kind-invalid", LISTENERS, Refuse, |o| {
            listener0(o).is_some_and(|l| {
                *at(l, &["allowedRoutes", "kinds"]) = json!([{"kind": "not a kind"}]);
                true
            })
        }),
        m!("listeners/none", LISTENERS, Refuse, |o| {
            o["spec"]["listeners"] = json!([]);
            true
        }),
        m!("listeners/too-many", LISTENERS, Refuse, |o| {
            o["spec"]["listeners"] = (0..65)
                .map(|i| json!({"name": format!("l{i}"), "port": 1000 + i, "protocol": "HTTP"}))
                .collect::<Vec<_>>()
                .into();
            true
        }),
        m!(
            "listeners/certificate-refs-too-many",
            LISTENERS,
            Refuse,
            |o| {
                let refs: Vec<Value> = (0..65).map(|i| json!({"name": format!("c{i}")})).collect();
                listener_as(o, "HTTPS", json!({"certificateRefs": refs}))
            }
        ),
        // ---- Gateway ----
        m!("Gateway/class-empty", &["Gateway"], Refuse, |o| {
            o["spec"]["gatewayClassName"] = "".into();
            true
        }),
        m!("Gateway/address-ip-duplicate", &["Gateway"], Refuse, |o| {
            o["spec"]["addresses"] = json!([{"type": "IPAddress", "value": "10.0.0.1"},
                    {"type": "IPAddress", "value": "10.0.0.1"}]);
            true
        }),
        m!("Gateway/address-ip-two", &["Gateway"], Accept, |o| {
            o["spec"]["addresses"] = json!([{"type": "IPAddress", "value": "10.0.0.1"},
                {"value": "10.0.0.2"}]);
            true
        }),
        // The schema's oneOf: an IPAddress value has format ipv4 or ipv6.
        m!("Gateway/address-ip-invalid", &["Gateway"], Refuse, |o| {
            o["spec"]["addresses"] = json!([{"type": "IPAddress", "value": "not-an-ip"}]);
            true
        }),
        m!(
            "Gateway/address-hostname-duplicate",
            &["Gateway"],
            Refuse,
            |o| {
                o["spec"]["addresses"] = json!([{"type": "Hostname", "value": "lb.example.com"},
                    {"type": "Hostname", "value": "lb.example.com"}]);
                true
            }
        ),
        m!(
            "Gateway/address-hostname-invalid",
            &["Gateway"],
            Refuse,
            |o| {
                o["spec"]["addresses"] = json!([{"type": "Hostname", "value": "LB_.example.com"}]);
                true
            }
        ),
        m!(
            "Gateway/address-hostname-valid",
            &["Gateway"],
            Accept,
            |o| {
                o["spec"]["addresses"] = json!([{"type": "Hostname", "value": "lb.example.com"}]);
                true
            }
        ),
        m!("Gateway/address-named", &["Gateway"], Accept, |o| {
            o["spec"]["addresses"] = json!([{"type": "NamedAddress", "value": "pool-1"}]);
            true
        }),
        m!("Gateway/address-type-custom", &["Gateway"], Accept, |o| {
            o["spec"]["addresses"] = json!([{"type": "example.com/custom", "value": "x"}]);
            true
        }),
        m!("Gateway/address-without-value", &["Gateway"], Accept, |o| {
            o["spec"]["addresses"] = json!([{"type": "IPAddress"}]);
            true
        }),
        m!("Gateway/addresses-too-many", &["Gateway"], Refuse, |o| {
            o["spec"]["addresses"] = (0..17)
                .map(|i| json!({"value": format!("10.0.0.{i}")}))
                .collect::<Vec<_>>()
                .into();
            true
        }),
        m!(
            "Gateway/infrastructure-label-key-invalid",
            &["Gateway"],
            Refuse,
            |o| {
                o["spec"]["infrastructure"] = json!({"labels": {"bad key!": "v"}});
                true
            }
        ),
        m!(
            "Gateway/infrastructure-annotation-key-invalid",
            &["Gateway"],
            Refuse,
            |o| {
                o["spec"]["infrastructure"] = json!({"annotations": {"-x/y": "v"}});
                true
            }
        ),
        m!(
            "Gateway/infrastructure-label-prefix-too-long",
            &["Gateway"],
            Refuse,
            |o| {
                let key = format!("{}.com/x", "a".repeat(253));
                o["spec"]["infrastructure"] = json!({"labels": {key: "v"}});
                true
            }
        ),
        m!("Gateway/infrastructure-valid", &["Gateway"], Accept, |o| {
            o["spec"]["infrastructure"] = json!({"labels": {"example.com/team": "a"},
                    "annotations": {"note": "b"}});
            true
        }),
        m!(
            "Gateway/frontend-tls-port-duplicate",
            &["Gateway"],
            Refuse,
            |o| {
                let v = json!({"caCertificateRefs": [{"group": "", "kind": "ConfigMap", "name": "ca"}]});
                o["spec"]["tls"] = json!({"frontend": {"default": {"validation": v.clone()},
                    "perPort": [{"port": 443, "tls": {"validation": v.clone()}},
                                {"port": 443, "tls": {"validation": v}}]}});
                true
            }
        ),
        m!(
            "Gateway/allowed-listeners-bogus",
            &["Gateway"],
            Refuse,
            |o| {
                o["spec"]["allowedListeners"] = json!({"namespaces": {"from": "Everywhere"}});
                true
            }
        ),
        m!(
            "Gateway/allowed-listeners-none",
            &["Gateway"],
            Accept,
            |o| {
                o["spec"]["allowedListeners"] = json!({"namespaces": {"from": "None"}});
                true
            }
        ),
        // ---- ListenerSet ----
        m!(
            "ListenerSet/parent-without-name",
            &["ListenerSet"],
            Refuse,
            |o| {
                o["spec"]["parentRef"] = json!({"kind": "Gateway"});
                true
            }
        ),
        m!(
            "ListenerSet/listener-without-port",
            &["ListenerSet"],
            Refuse,
            |o| {
                listener0(o).is_some_and(|l| {
                    l.as_object_mut().map(|m| m.remove("port"));
                    true
                })
            }
        ),
        // ---- routes: parentRefs ----
        m!("routes/parent-twice-bare", ROUTES, Refuse, |o| {
            o["spec"]["parentRefs"] = json!([{"name": "gw"}, {"name": "gw"}]);
            true
        }),
        m!("routes/parent-twice-one-section", ROUTES, Refuse, |o| {
            o["spec"]["parentRefs"] = json!([{"name": "gw", "sectionName": "a"}, {"name": "gw"}]);
            true
        }),
        m!("routes/parent-twice-same-section", ROUTES, Refuse, |o| {
            o["spec"]["parentRefs"] = json!([{"name": "gw", "sectionName": "a"},
                {"name": "gw", "sectionName": "a"}]);
            true
        }),
        m!("routes/parent-twice-other-sections", ROUTES, Accept, |o| {
            o["spec"]["parentRefs"] = json!([{"name": "gw", "sectionName": "a"},
                {"name": "gw", "sectionName": "b"}]);
            true
        }),
        m!("routes/parent-twice-ports", ROUTES, Accept, |o| {
            o["spec"]["parentRefs"] = json!([{"name": "gw", "port": 80},
                {"name": "gw", "port": 443}]);
            true
        }),
        m!("routes/parent-twice-same-port", ROUTES, Refuse, |o| {
            o["spec"]["parentRefs"] = json!([{"name": "gw", "port": 80},
                {"name": "gw", "port": 80}]);
            true
        }),
        m!("routes/parent-other-namespaces", ROUTES, Accept, |o| {
            o["spec"]["parentRefs"] = json!([{"name": "gw", "namespace": "a"},
                {"name": "gw", "namespace": "b"}]);
            true
        }),
        m!("routes/parent-empty-namespace-twice", ROUTES, Refuse, |o| {
            o["spec"]["parentRefs"] = json!([{"name": "gw", "namespace": ""}, {"name": "gw"}]);
            true
        }),
        m!("routes/parent-port-zero", ROUTES, Refuse, |o| {
            o["spec"]["parentRefs"] = json!([{"name": "gw", "port": 0}]);
            true
        }),
        m!("routes/parent-section-invalid", ROUTES, Refuse, |o| {
            o["spec"]["parentRefs"] = json!([{"name": "gw", "sectionName": "Bad_Section"}]);
            true
        }),
        m!("routes/parents-too-many", ROUTES, Refuse, |o| {
            o["spec"]["parentRefs"] = (0..33)
                .map(|i| json!({"name": format!("gw{i}")}))
                .collect::<Vec<_>>()
                .into();
            true
        }),
        m!("routes/parent-listenerset", ROUTES, Accept, |o| {
            o["spec"]["parentRefs"] = json!([{"kind": "ListenerSet", "name": "ls"}]);
            true
        }),
        // ---- routes: backendRefs ----
        m!("routes/backend-without-port", ROUTES, Refuse, |o| {
            backend0(o).is_some_and(|b| {
                b.as_object_mut().map(|m| m.remove("port"));
                true
            })
        }),
        m!(
            "routes/backend-other-kind-without-port",
            ROUTES,
            Accept,
            |o| {
                backend0(o).is_some_and(|b| {
                    b.as_object_mut().map(|m| m.remove("port"));
                    b["group"] = "example.com".into();
                    b["kind"] = "Bucket".into();
                    true
                })
            }
        ),
        m!("routes/backend-weight-negative", ROUTES, Refuse, |o| {
            backend0(o).is_some_and(|b| {
                b["weight"] = (-1).into();
                true
            })
        }),
        m!("routes/backend-weight-too-big", ROUTES, Refuse, |o| {
            backend0(o).is_some_and(|b| {
                b["weight"] = 1_000_001.into();
                true
            })
        }),
        m!("routes/backend-weight-zero", ROUTES, Accept, |o| {
            backend0(o).is_some_and(|b| {
                b["weight"] = 0.into();
                true
            })
        }),
        m!("routes/backend-name-empty", ROUTES, Refuse, |o| {
            backend0(o).is_some_and(|b| {
                b["name"] = "".into();
                true
            })
        }),
        m!("routes/backends-too-many", ROUTES, Refuse, |o| {
            rule0(o).is_some_and(|r| {
                r["backendRefs"] = (0..17)
                    .map(|i| json!({"name": format!("s{i}"), "port": 80}))
                    .collect::<Vec<_>>()
                    .into();
                true
            })
        }),
        m!("routes/rule-name-duplicate", ROUTES, Refuse, |o| {
            let Some(rs) = arr(o, &["spec", "rules"]) else {
                return false;
            };
            let mut r = rs[0].clone();
            r["name"] = "same".into();
            rs[0]["name"] = "same".into();
            rs.push(r);
            true
        }),
        m!("routes/rule-names-distinct", HTTP_GRPC, Accept, |o| {
            let Some(rs) = arr(o, &["spec", "rules"]) else {
                return false;
            };
            let mut r = rs[0].clone();
            r["name"] = "second".into();
            rs[0]["name"] = "first".into();
            rs.push(r);
            true
        }),
        m!("routes/rule-name-invalid", ROUTES, Refuse, |o| {
            rule0(o).is_some_and(|r| {
                r["name"] = "Bad Name".into();
                true
            })
        }),
        // ---- hostnames ----
        // Only TLSRoute's CEL refuses IP addresses; the Hostname pattern
        // of HTTPRoute and GRPCRoute takes `10.0.0.1` (it matches no
        // request's Host, which the engine computes as it is).
        m!(
            "routes/hostname-ip",
            &["HTTPRoute", "GRPCRoute"],
            Accept,
            |o| {
                o["spec"]["hostnames"] = json!(["10.0.0.1"]);
                true
            }
        ),
        m!("TLSRoute/hostname-ip", &["TLSRoute"], Refuse, |o| {
            o["spec"]["hostnames"] = json!(["10.0.0.1"]);
            true
        }),
        m!(
            "routes/hostname-uppercase",
            &["HTTPRoute", "GRPCRoute", "TLSRoute"],
            Refuse,
            |o| {
                o["spec"]["hostnames"] = json!(["A.example.com"]);
                true
            }
        ),
        m!(
            "routes/hostname-inner-wildcard",
            &["HTTPRoute", "GRPCRoute", "TLSRoute"],
            Refuse,
            |o| {
                o["spec"]["hostnames"] = json!(["a.*.example.com"]);
                true
            }
        ),
        m!(
            "routes/hostname-wildcard",
            &["HTTPRoute", "GRPCRoute", "TLSRoute"],
            Accept,
            |o| {
                o["spec"]["hostnames"] = json!(["*.example.com", "x.example.com"]);
                true
            }
        ),
        m!(
            "routes/hostnames-too-many",
            &["HTTPRoute", "GRPCRoute", "TLSRoute"],
            Refuse,
            |o| {
                o["spec"]["hostnames"] = (0..17)
                    .map(|i| format!("h{i}.example.com"))
                    .collect::<Vec<_>>()
                    .into();
                true
            }
        ),
        // ---- HTTPRoute: path matches (CEL of HTTPPathMatch) ----
        m!("HTTPRoute/path-relative", HTTP, Refuse, |o| path(
            o,
            "PathPrefix",
            "a/b"
        )),
        m!("HTTPRoute/path-double-slash", HTTP, Refuse, |o| path(
            o, "Exact", "/a//b"
        )),
        m!("HTTPRoute/path-dot-segment", HTTP, Refuse, |o| path(
            o,
            "PathPrefix",
            "/a/./b"
        )),
        m!("HTTPRoute/path-dotdot-segment", HTTP, Refuse, |o| path(
            o,
            "PathPrefix",
            "/a/../b"
        )),
        m!(
            "HTTPRoute/path-encoded-slash-lower",
            HTTP,
            Refuse,
            |o| path(o, "Exact", "/a%2fb")
        ),
        m!(
            "HTTPRoute/path-encoded-slash-upper",
            HTTP,
            Refuse,
            |o| path(o, "Exact", "/a%2Fb")
        ),
        m!("HTTPRoute/path-hash", HTTP, Refuse, |o| path(
            o,
            "PathPrefix",
            "/a#b"
        )),
        m!("HTTPRoute/path-ends-dotdot", HTTP, Refuse, |o| path(
            o,
            "PathPrefix",
            "/a/.."
        )),
        m!("HTTPRoute/path-ends-dot", HTTP, Refuse, |o| path(
            o, "Exact", "/a/."
        )),
        m!("HTTPRoute/path-space", HTTP, Refuse, |o| path(
            o,
            "PathPrefix",
            "/a b"
        )),
        m!("HTTPRoute/path-question-mark", HTTP, Refuse, |o| path(
            o, "Exact", "/a?b"
        )),
        m!("HTTPRoute/path-bad-percent", HTTP, Refuse, |o| path(
            o,
            "PathPrefix",
            "/a%zz"
        )),
        m!("HTTPRoute/path-unicode", HTTP, Refuse, |o| path(
            o,
            "PathPrefix",
            "/caf\u{e9}"
        )),
        m!("HTTPRoute/path-sub-delims", HTTP, Accept, |o| {
            path(o, "PathPrefix", "/a-b_c.d~e!$&'()*+,;=:@/%41")
        }),
        m!("HTTPRoute/path-type-bogus", HTTP, Refuse, |o| path(
            o, "Glob", "/a"
        )),
        m!("HTTPRoute/path-regex-any", HTTP, Accept, |o| path(
            o,
            "RegularExpression",
            "a b?["
        )),
        m!("HTTPRoute/path-too-long", HTTP, Refuse, |o| {
            path(o, "PathPrefix", &format!("/{}", "a".repeat(1024)))
        }),
        // ---- HTTPRoute/GRPCRoute: header and query matches ----
        m!("matches/header-duplicate", HTTP_GRPC, Refuse, |o| {
            match0(o).is_some_and(|m| {
                m["headers"] =
                    json!([{"name": "x-a", "value": "1"}, {"name": "x-a", "value": "2"}]);
                true
            })
        }),
        m!("matches/header-case-variants", HTTP_GRPC, Accept, |o| {
            match0(o).is_some_and(|m| {
                m["headers"] =
                    json!([{"name": "X-A", "value": "1"}, {"name": "x-a", "value": "2"}]);
                true
            })
        }),
        m!("matches/header-name-invalid", HTTP_GRPC, Refuse, |o| {
            match0(o).is_some_and(|m| {
                m["headers"] = json!([{"name": "x a", "value": "1"}]);
                true
            })
        }),
        m!("matches/header-name-colon", HTTP_GRPC, Refuse, |o| {
            match0(o).is_some_and(|m| {
                m["headers"] = json!([{"name": ":authority", "value": "1"}]);
                true
            })
        }),
        m!("matches/header-type-bogus", HTTP_GRPC, Refuse, |o| {
            match0(o).is_some_and(|m| {
                m["headers"] = json!([{"name": "x-a", "type": "Prefix", "value": "1"}]);
                true
            })
        }),
        m!("matches/header-value-too-long", HTTP_GRPC, Refuse, |o| {
            match0(o).is_some_and(|m| {
                m["headers"] = json!([{"name": "x-a", "value": "v".repeat(4097)}]);
                true
            })
        }),
        m!("matches/header-value-empty", HTTP_GRPC, Refuse, |o| {
            match0(o).is_some_and(|m| {
                m["headers"] = json!([{"name": "x-a", "value": ""}]);
                true
            })
        }),
        m!("matches/headers-too-many", HTTP_GRPC, Refuse, |o| {
            match0(o).is_some_and(|m| {
                m["headers"] = (0..17)
                    .map(|i| json!({"name": format!("x-{i}"), "value": "v"}))
                    .collect::<Vec<_>>()
                    .into();
                true
            })
        }),
        m!("HTTPRoute/query-duplicate", HTTP, Refuse, |o| {
            match0(o).is_some_and(|m| {
                m["queryParams"] =
                    json!([{"name": "a", "value": "1"}, {"name": "a", "value": "2"}]);
                true
            })
        }),
        m!("HTTPRoute/query-case-variants", HTTP, Accept, |o| {
            match0(o).is_some_and(|m| {
                m["queryParams"] =
                    json!([{"name": "A", "value": "1"}, {"name": "a", "value": "2"}]);
                true
            })
        }),
        m!("HTTPRoute/method-bogus", HTTP, Refuse, |o| {
            match0(o).is_some_and(|m| {
                m["method"] = "FETCH".into();
                true
            })
        }),
        m!("HTTPRoute/method-lowercase", HTTP, Refuse, |o| {
            match0(o).is_some_and(|m| {
                m["method"] = "get".into();
                true
            })
        }),
        m!("HTTPRoute/matches-too-many-in-all", HTTP, Refuse, |o| {
            let Some(rs) = arr(o, &["spec", "rules"]) else {
                return false;
            };
            let ms: Vec<Value> = (0..60)
                .map(|i| json!({"path": {"type": "Exact", "value": format!("/m{i}")}}))
                .collect();
            let mut r = rs[0].clone();
            r.as_object_mut().map(|m| m.remove("name"));
            r.as_object_mut().map(|m| m.remove("filters"));
            r["matches"] = ms.into();
            rs.clear();
            rs.extend([r.clone(), r.clone(), r]);
            true
        }),
        m!("HTTPRoute/matches-64-per-rule", HTTP, Accept, |o| {
            rule0(o).is_some_and(|r| {
                r.as_object_mut().map(|m| m.remove("filters"));
                r["matches"] = (0..64)
                    .map(|i| json!({"path": {"type": "Exact", "value": format!("/m{i}")}}))
                    .collect::<Vec<_>>()
                    .into();
                true
            })
        }),
        m!("HTTPRoute/rules-too-many", HTTP, Refuse, |o| {
            let Some(rs) = arr(o, &["spec", "rules"]) else {
                return false;
            };
            let mut r = rs[0].clone();
            r.as_object_mut().map(|m| m.remove("name"));
            rs.clear();
            rs.extend(std::iter::repeat_n(r, 17));
            true
        }),
        // ---- HTTPRoute filters: type/config agreement, repeats ----
        m!("filters/type-without-config", HTTP_GRPC, Refuse, |o| {
            set_filters(o, json!([{"type": "RequestHeaderModifier"}]))
        }),
        m!("filters/config-without-type", HTTP_GRPC, Refuse, |o| {
            set_filters(
                o,
                json!([{"type": "ResponseHeaderModifier",
                "requestHeaderModifier": {"set": [{"name": "a", "value": "b"}]},
                "responseHeaderModifier": {"set": [{"name": "a", "value": "b"}]}}]),
            )
        }),
        m!("filters/header-modifier-repeated", HTTP_GRPC, Refuse, |o| {
            let f = json!({"type": "RequestHeaderModifier", "requestHeaderModifier": {"add": [{"name": "a", "value": "b"}]}});
            set_filters(o, json!([f.clone(), f]))
        }),
        m!(
            "filters/response-modifier-repeated",
            HTTP_GRPC,
            Refuse,
            |o| {
                let f = json!({"type": "ResponseHeaderModifier", "responseHeaderModifier": {"remove": ["a"]}});
                set_filters(o, json!([f.clone(), f]))
            }
        ),
        m!(
            "filters/header-modifier-set-duplicate",
            HTTP_GRPC,
            Refuse,
            |o| {
                set_filters(
                    o,
                    json!([{"type": "RequestHeaderModifier",
                "requestHeaderModifier": {"set": [{"name": "a", "value": "1"}, {"name": "a", "value": "2"}]}}]),
                )
            }
        ),
        m!(
            "filters/header-modifier-set-case-variants",
            HTTP_GRPC,
            Accept,
            |o| {
                set_filters(
                    o,
                    json!([{"type": "RequestHeaderModifier",
                "requestHeaderModifier": {"set": [{"name": "A", "value": "1"}, {"name": "a", "value": "2"}]}}]),
                )
            }
        ),
        m!(
            "filters/header-modifier-remove-duplicate",
            HTTP_GRPC,
            Refuse,
            |o| {
                set_filters(
                    o,
                    json!([{"type": "RequestHeaderModifier",
                "requestHeaderModifier": {"remove": ["x-a", "x-a"]}}]),
                )
            }
        ),
        m!(
            "filters/header-modifier-name-invalid",
            HTTP_GRPC,
            Refuse,
            |o| {
                set_filters(
                    o,
                    json!([{"type": "RequestHeaderModifier",
                "requestHeaderModifier": {"add": [{"name": "a b", "value": "1"}]}}]),
                )
            }
        ),
        m!("filters/mirror-repeated", HTTP_GRPC, Accept, |o| {
            let f = json!({"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "m", "port": 80}}});
            set_filters(o, json!([f.clone(), f]))
        }),
        m!(
            "filters/mirror-percent-and-fraction",
            HTTP_GRPC,
            Refuse,
            |o| {
                set_filters(
                    o,
                    json!([{"type": "RequestMirror", "requestMirror": {
                "backendRef": {"name": "m", "port": 80}, "percent": 5, "fraction": {"numerator": 1}}}]),
                )
            }
        ),
        m!("filters/mirror-fraction-over-one", HTTP_GRPC, Refuse, |o| {
            set_filters(
                o,
                json!([{"type": "RequestMirror", "requestMirror": {
                "backendRef": {"name": "m", "port": 80}, "fraction": {"numerator": 3, "denominator": 2}}}]),
            )
        }),
        m!(
            "filters/mirror-fraction-default-denominator",
            HTTP_GRPC,
            Accept,
            |o| {
                set_filters(
                    o,
                    json!([{"type": "RequestMirror", "requestMirror": {
                "backendRef": {"name": "m", "port": 80}, "fraction": {"numerator": 100}}}]),
                )
            }
        ),
        m!("filters/mirror-percent-too-big", HTTP_GRPC, Refuse, |o| {
            set_filters(
                o,
                json!([{"type": "RequestMirror", "requestMirror": {
                "backendRef": {"name": "m", "port": 80}, "percent": 101}}]),
            )
        }),
        m!("filters/mirror-without-port", HTTP_GRPC, Refuse, |o| {
            set_filters(
                o,
                json!([{"type": "RequestMirror", "requestMirror": {
                "backendRef": {"name": "m"}}}]),
            )
        }),
        m!(
            "filters/extension-ref-without-config",
            HTTP_GRPC,
            Refuse,
            |o| { set_filters(o, json!([{"type": "ExtensionRef"}])) }
        ),
        m!("filters/type-bogus", HTTP_GRPC, Refuse, |o| {
            set_filters(o, json!([{"type": "Teleport"}]))
        }),
        m!("filters/too-many", HTTP, Refuse, |o| {
            let f = json!({"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "m", "port": 80}}});
            set_filters(o, (0..17).map(|_| f.clone()).collect::<Vec<_>>().into())
        }),
        m!("HTTPRoute/redirect-and-rewrite", HTTP, Refuse, |o| {
            set_filters(
                o,
                json!([{"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}},
                {"type": "URLRewrite", "urlRewrite": {"hostname": "a.example.com"}}]),
            ) && rule0(o).is_some_and(|r| {
                r.as_object_mut().map(|m| m.remove("backendRefs"));
                true
            })
        }),
        m!("HTTPRoute/redirect-repeated", HTTP, Refuse, |o| {
            let f = json!({"type": "RequestRedirect", "requestRedirect": {"statusCode": 301}});
            set_filters(o, json!([f.clone(), f]))
                && rule0(o).is_some_and(|r| {
                    r.as_object_mut().map(|m| m.remove("backendRefs"));
                    true
                })
        }),
        m!("HTTPRoute/redirect-with-backends", HTTP, Refuse, |o| {
            set_filters(
                o,
                json!([{"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}}]),
            ) && backend0(o).is_some()
        }),
        m!("HTTPRoute/redirect-alone", HTTP, Accept, |o| {
            set_filters(
                o,
                json!([{"type": "RequestRedirect", "requestRedirect": {"scheme": "https", "statusCode": 302}}]),
            ) && rule0(o).is_some_and(|r| {
                r.as_object_mut().map(|m| m.remove("backendRefs"));
                true
            })
        }),
        m!("HTTPRoute/redirect-status-bogus", HTTP, Refuse, |o| {
            set_filters(
                o,
                json!([{"type": "RequestRedirect", "requestRedirect": {"statusCode": 305}}]),
            ) && rule0(o).is_some_and(|r| {
                r.as_object_mut().map(|m| m.remove("backendRefs"));
                true
            })
        }),
        m!("HTTPRoute/redirect-scheme-bogus", HTTP, Refuse, |o| {
            set_filters(
                o,
                json!([{"type": "RequestRedirect", "requestRedirect": {"scheme": "ftp"}}]),
            ) && rule0(o).is_some_and(|r| {
                r.as_object_mut().map(|m| m.remove("backendRefs"));
                true
            })
        }),
        m!("HTTPRoute/redirect-hostname-wildcard", HTTP, Refuse, |o| {
            set_filters(
                o,
                json!([{"type": "RequestRedirect", "requestRedirect": {"hostname": "*.example.com"}}]),
            ) && rule0(o).is_some_and(|r| {
                r.as_object_mut().map(|m| m.remove("backendRefs"));
                true
            })
        }),
        m!(
            "HTTPRoute/rewrite-full-path-without-value",
            HTTP,
            Refuse,
            |o| {
                set_filters(
                    o,
                    json!([{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplaceFullPath"}}}]),
                )
            }
        ),
        m!(
            "HTTPRoute/rewrite-full-path-wrong-field",
            HTTP,
            Refuse,
            |o| {
                set_filters(
                    o,
                    json!([{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplaceFullPath", "replacePrefixMatch": "/x"}}}]),
                )
            }
        ),
        m!(
            "HTTPRoute/rewrite-prefix-without-value",
            HTTP,
            Refuse,
            |o| {
                set_filters(
                    o,
                    json!([{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch"}}}]),
                )
            }
        ),
        m!("HTTPRoute/rewrite-prefix-wrong-field", HTTP, Refuse, |o| {
            set_filters(
                o,
                json!([{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replaceFullPath": "/x"}}}]),
            )
        }),
        m!(
            "HTTPRoute/rewrite-prefix-one-prefix-match",
            HTTP,
            Accept,
            |o| {
                set_filters(
                    o,
                    json!([{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/x"}}}]),
                ) && rule0(o).is_some_and(|r| {
                    r["matches"] = json!([{"path": {"type": "PathPrefix", "value": "/a"}}]);
                    true
                })
            }
        ),
        m!("HTTPRoute/rewrite-prefix-exact-match", HTTP, Refuse, |o| {
            set_filters(
                o,
                json!([{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/x"}}}]),
            ) && rule0(o).is_some_and(|r| {
                r["matches"] = json!([{"path": {"type": "Exact", "value": "/a"}}]);
                true
            })
        }),
        m!("HTTPRoute/rewrite-prefix-two-matches", HTTP, Refuse, |o| {
            set_filters(
                o,
                json!([{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/x"}}}]),
            ) && rule0(o).is_some_and(|r| {
                r["matches"] = json!([{"path": {"type": "PathPrefix", "value": "/a"}},
                        {"path": {"type": "PathPrefix", "value": "/b"}}]);
                true
            })
        }),
        m!(
            "HTTPRoute/rewrite-prefix-default-match",
            HTTP,
            Accept,
            |o| {
                set_filters(
                    o,
                    json!([{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/x"}}}]),
                ) && rule0(o).is_some_and(|r| {
                    r.as_object_mut().map(|m| m.remove("matches"));
                    true
                })
            }
        ),
        m!("HTTPRoute/redirect-prefix-two-matches", HTTP, Refuse, |o| {
            set_filters(
                o,
                json!([{"type": "RequestRedirect", "requestRedirect": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/x"}}}]),
            ) && rule0(o).is_some_and(|r| {
                r.as_object_mut().map(|m| m.remove("backendRefs"));
                r["matches"] = json!([{"path": {"type": "PathPrefix", "value": "/a"}},
                        {"path": {"type": "PathPrefix", "value": "/b"}}]);
                true
            })
        }),
        m!(
            "HTTPRoute/backend-rewrite-prefix-two-matches",
            HTTP,
            Refuse,
            |o| {
                rule0(o).is_some_and(|r| {
                r["matches"] = json!([{"path": {"type": "PathPrefix", "value": "/a"}},
                    {"path": {"type": "PathPrefix", "value": "/b"}}]);
                true
            }) && backend0(o).is_some_and(|b| {
                b["filters"] = json!([{"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/x"}}}]);
                true
            })
            }
        ),
        m!(
            "HTTPRoute/backend-redirect-and-rewrite",
            HTTP,
            Refuse,
            |o| {
                backend0(o).is_some_and(|b| {
                b["filters"] = json!([{"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}},
                    {"type": "URLRewrite", "urlRewrite": {"hostname": "a.example.com"}}]);
                true
            })
            }
        ),
        m!("HTTPRoute/backend-filter-header", HTTP_GRPC, Accept, |o| {
            backend0(o).is_some_and(|b| {
                b["filters"] = json!([{"type": "RequestHeaderModifier", "requestHeaderModifier": {"set": [{"name": "a", "value": "b"}]}}]);
                true
            })
        }),
        m!(
            "HTTPRoute/backend-filter-repeated",
            HTTP_GRPC,
            Refuse,
            |o| {
                backend0(o).is_some_and(|b| {
                let f = json!({"type": "ResponseHeaderModifier", "responseHeaderModifier": {"remove": ["a"]}});
                b["filters"] = json!([f.clone(), f]);
                true
            })
            }
        ),
        // ---- HTTPRoute: CORS ----
        m!("HTTPRoute/cors-without-config", HTTP, Refuse, |o| {
            set_filters(o, json!([{"type": "CORS"}]))
        }),
        m!("HTTPRoute/cors-config-other-type", HTTP, Refuse, |o| {
            set_filters(
                o,
                json!([{"type": "RequestMirror", "requestMirror": {"backendRef": {"name": "m", "port": 80}},
                "cors": {"allowOrigins": ["https://a.example.com"]}}]),
            )
        }),
        m!("HTTPRoute/cors-repeated", HTTP, Refuse, |o| {
            let f = json!({"type": "CORS", "cors": {"allowOrigins": ["https://a.example.com"]}});
            set_filters(o, json!([f.clone(), f]))
        }),
        m!(
            "HTTPRoute/cors-wildcard-origin-and-more",
            HTTP,
            Refuse,
            |o| {
                set_filters(
                    o,
                    json!([{"type": "CORS", "cors": {"allowOrigins": ["*", "https://a.example.com"]}}]),
                )
            }
        ),
        m!(
            "HTTPRoute/cors-wildcard-method-and-more",
            HTTP,
            Refuse,
            |o| {
                set_filters(
                    o,
                    json!([{"type": "CORS", "cors": {"allowMethods": ["*", "GET"]}}]),
                )
            }
        ),
        m!(
            "HTTPRoute/cors-wildcard-header-and-more",
            HTTP,
            Refuse,
            |o| {
                set_filters(
                    o,
                    json!([{"type": "CORS", "cors": {"allowHeaders": ["*", "x-a"]}}]),
                )
            }
        ),
        m!("HTTPRoute/cors-valid", HTTP, Accept, |o| {
            set_filters(
                o,
                json!([{"type": "CORS", "cors": {"allowOrigins": ["https://a.example.com", "https://*.b.example.com"],
                "allowMethods": ["GET", "POST"], "allowHeaders": ["x-a"], "maxAge": 60}}]),
            )
        }),
        m!("HTTPRoute/cors-wildcards-alone", HTTP, Accept, |o| {
            set_filters(
                o,
                json!([{"type": "CORS", "cors": {"allowOrigins": ["*"],
                "allowMethods": ["*"], "allowHeaders": ["*"]}}]),
            )
        }),
        m!("HTTPRoute/cors-method-bogus", HTTP, Refuse, |o| {
            set_filters(
                o,
                json!([{"type": "CORS", "cors": {"allowMethods": ["FETCH"]}}]),
            )
        }),
        // ---- HTTPRoute: ExternalAuth ----
        m!("HTTPRoute/ext-auth-grpc-without-grpc", HTTP, Refuse, |o| {
            set_filters(
                o,
                json!([{"type": "ExternalAuth", "externalAuth": {"protocol": "GRPC",
                "backendRef": {"name": "auth", "port": 9000}}}]),
            )
        }),
        m!("HTTPRoute/ext-auth-http-without-http", HTTP, Refuse, |o| {
            set_filters(
                o,
                json!([{"type": "ExternalAuth", "externalAuth": {"protocol": "HTTP",
                "backendRef": {"name": "auth", "port": 9000}}}]),
            )
        }),
        m!("HTTPRoute/ext-auth-grpc-with-http", HTTP, Refuse, |o| {
            set_filters(
                o,
                json!([{"type": "ExternalAuth", "externalAuth": {"protocol": "GRPC",
                "backendRef": {"name": "auth", "port": 9000}, "grpc": {}, "http": {}}}]),
            )
        }),
        m!("HTTPRoute/ext-auth-grpc", HTTP, Accept, |o| {
            set_filters(
                o,
                json!([{"type": "ExternalAuth", "externalAuth": {"protocol": "GRPC",
                "backendRef": {"name": "auth", "port": 9000}, "grpc": {"allowedHeaders": ["x-a"]}}}]),
            )
        }),
        m!("HTTPRoute/ext-auth-http", HTTP, Accept, |o| {
            set_filters(
                o,
                json!([{"type": "ExternalAuth", "externalAuth": {"protocol": "HTTP",
                "backendRef": {"name": "auth", "port": 9000}, "http": {"path": "/check"}}}]),
            )
        }),
        m!("HTTPRoute/ext-auth-without-config", HTTP, Refuse, |o| {
            set_filters(o, json!([{"type": "ExternalAuth"}]))
        }),
        m!("HTTPRoute/ext-auth-protocol-bogus", HTTP, Refuse, |o| {
            set_filters(
                o,
                json!([{"type": "ExternalAuth", "externalAuth": {"protocol": "SOAP",
                "backendRef": {"name": "auth", "port": 9000}}}]),
            )
        }),
        m!("GRPCRoute/ext-auth", &["GRPCRoute"], Refuse, |o| {
            set_filters(
                o,
                json!([{"type": "ExternalAuth", "externalAuth": {"protocol": "GRPC",
                "backendRef": {"name": "auth", "port": 9000}, "grpc": {}}}]),
            )
        }),
        m!("GRPCRoute/redirect", &["GRPCRoute"], Refuse, |o| {
            set_filters(
                o,
                json!([{"type": "RequestRedirect", "requestRedirect": {"scheme": "https"}}]),
            )
        }),
        // ---- HTTPRoute: timeouts and retry ----
        m!(
            "HTTPRoute/timeout-backend-over-request",
            HTTP,
            Refuse,
            |o| {
                rule0(o).is_some_and(|r| {
                    r["timeouts"] = json!({"request": "1s", "backendRequest": "2s"});
                    true
                })
            }
        ),
        m!(
            "HTTPRoute/timeout-backend-under-request",
            HTTP,
            Accept,
            |o| {
                rule0(o).is_some_and(|r| {
                    r["timeouts"] = json!({"request": "1m", "backendRequest": "500ms"});
                    true
                })
            }
        ),
        m!("HTTPRoute/timeout-request-zero", HTTP, Accept, |o| {
            rule0(o).is_some_and(|r| {
                r["timeouts"] = json!({"request": "0s", "backendRequest": "1h"});
                true
            })
        }),
        m!("HTTPRoute/timeout-bogus", HTTP, Refuse, |o| {
            rule0(o).is_some_and(|r| {
                r["timeouts"] = json!({"request": "1 s"});
                true
            })
        }),
        m!("HTTPRoute/timeout-fraction", HTTP, Refuse, |o| {
            rule0(o).is_some_and(|r| {
                r["timeouts"] = json!({"request": "1.5s"});
                true
            })
        }),
        m!("HTTPRoute/retry-code-bogus", HTTP, Refuse, |o| {
            rule0(o).is_some_and(|r| {
                r["retry"] = json!({"codes": [200]});
                true
            })
        }),
        m!("HTTPRoute/retry-valid", HTTP, Accept, |o| {
            rule0(o).is_some_and(|r| {
                r["retry"] = json!({"codes": [500, 503], "attempts": 2, "backoff": "100ms"});
                true
            })
        }),
        m!("HTTPRoute/retry-backoff-bogus", HTTP, Refuse, |o| {
            rule0(o).is_some_and(|r| {
                r["retry"] = json!({"backoff": "soon"});
                true
            })
        }),
        // ---- HTTPRoute/GRPCRoute: sessionPersistence ----
        m!(
            "sessions/cookie-permanent-without-timeout",
            HTTP_GRPC,
            Refuse,
            |o| {
                rule0(o).is_some_and(|r| {
                    r["sessionPersistence"] =
                        json!({"type": "Cookie", "cookie": {"lifetimeType": "Permanent"}});
                    true
                })
            }
        ),
        m!(
            "sessions/cookie-permanent-with-timeout",
            HTTP_GRPC,
            Accept,
            |o| {
                rule0(o).is_some_and(|r| {
                    r["sessionPersistence"] = json!({"type": "Cookie", "absoluteTimeout": "1h",
                    "cookie": {"lifetimeType": "Permanent"}});
                    true
                })
            }
        ),
        m!("sessions/cookie-on-header-type", HTTP_GRPC, Refuse, |o| {
            rule0(o).is_some_and(|r| {
                r["sessionPersistence"] =
                    json!({"type": "Header", "header": {"name": "x-s"}, "cookie": {}});
                true
            })
        }),
        m!("sessions/header-without-config", HTTP_GRPC, Refuse, |o| {
            rule0(o).is_some_and(|r| {
                r["sessionPersistence"] = json!({"type": "Header"});
                true
            })
        }),
        m!("sessions/header-on-cookie-type", HTTP_GRPC, Refuse, |o| {
            rule0(o).is_some_and(|r| {
                r["sessionPersistence"] =
                    json!({"type": "Cookie", "cookie": {}, "header": {"name": "x-s"}});
                true
            })
        }),
        m!("sessions/cookie-without-config", HTTP_GRPC, Refuse, |o| {
            rule0(o).is_some_and(|r| {
                r["sessionPersistence"] = json!({"type": "Cookie"});
                true
            })
        }),
        m!("sessions/empty", HTTP_GRPC, Refuse, |o| {
            rule0(o).is_some_and(|r| {
                r["sessionPersistence"] = json!({});
                true
            })
        }),
        m!(
            "sessions/cookie-config-v1.4-shape",
            HTTP_GRPC,
            Refuse,
            |o| {
                rule0(o).is_some_and(|r| {
                    r["sessionPersistence"] = json!({"sessionName": "s", "absoluteTimeout": "1h",
                    "cookieConfig": {"lifetimeType": "Permanent"}});
                    true
                })
            }
        ),
        m!("sessions/type-bogus", HTTP_GRPC, Refuse, |o| {
            rule0(o).is_some_and(|r| {
                r["sessionPersistence"] = json!({"type": "Sticky", "cookie": {}});
                true
            })
        }),
        m!("sessions/cookie-name-bad", HTTP_GRPC, Refuse, |o| {
            rule0(o).is_some_and(|r| {
                r["sessionPersistence"] = json!({"cookie": {"name": "a b"}});
                true
            })
        }),
        m!("sessions/header-name-missing", HTTP_GRPC, Refuse, |o| {
            rule0(o).is_some_and(|r| {
                r["sessionPersistence"] = json!({"type": "Header", "header": {}});
                true
            })
        }),
        m!("sessions/timeout-bogus", HTTP_GRPC, Refuse, |o| {
            rule0(o).is_some_and(|r| {
                r["sessionPersistence"] = json!({"absoluteTimeout": "1d", "cookie": {}});
                true
            })
        }),
        // What the CRDs leave to the implementation: the server stores it,
        // gwcore reads it and the engine drops the rule with a status.
        m!("sessions/timeout-zero", HTTP_GRPC, Accept, |o| {
            rule0(o).is_some_and(|r| {
                r["sessionPersistence"] = json!({"absoluteTimeout": "0s", "cookie": {}});
                true
            })
        }),
        m!("sessions/cookie-path-relative", HTTP_GRPC, Accept, |o| {
            rule0(o).is_some_and(|r| {
                r["sessionPersistence"] = json!({"cookie": {"path": "shop"}});
                true
            })
        }),
        m!("sessions/header-valid", HTTP_GRPC, Accept, |o| {
            rule0(o).is_some_and(|r| {
                r["sessionPersistence"] =
                    json!({"type": "Header", "header": {"name": "x-session"}});
                true
            })
        }),
        // ---- GRPCRoute: method matches ----
        m!("GRPCRoute/method-neither", &["GRPCRoute"], Refuse, |o| {
            match0(o).is_some_and(|m| {
                m["method"] = json!({"type": "Exact"});
                true
            })
        }),
        m!(
            "GRPCRoute/method-service-only",
            &["GRPCRoute"],
            Accept,
            |o| {
                match0(o).is_some_and(|m| {
                    m["method"] = json!({"service": "pkg.v1.Svc"});
                    true
                })
            }
        ),
        m!(
            "GRPCRoute/method-service-bad",
            &["GRPCRoute"],
            Refuse,
            |o| {
                match0(o).is_some_and(|m| {
                    m["method"] = json!({"service": "pkg..Svc"});
                    true
                })
            }
        ),
        m!(
            "GRPCRoute/method-service-digit-start",
            &["GRPCRoute"],
            Refuse,
            |o| {
                match0(o).is_some_and(|m| {
                    m["method"] = json!({"service": "9pkg.Svc"});
                    true
                })
            }
        ),
        m!(
            "GRPCRoute/method-service-leading-dot",
            &["GRPCRoute"],
            Accept,
            |o| {
                match0(o).is_some_and(|m| {
                    m["method"] = json!({"service": ".pkg.Svc"});
                    true
                })
            }
        ),
        m!("GRPCRoute/method-name-bad", &["GRPCRoute"], Refuse, |o| {
            match0(o).is_some_and(|m| {
                m["method"] = json!({"method": "Get-It"});
                true
            })
        }),
        m!(
            "GRPCRoute/method-name-digit-start",
            &["GRPCRoute"],
            Refuse,
            |o| {
                match0(o).is_some_and(|m| {
                    m["method"] = json!({"method": "1Get"});
                    true
                })
            }
        ),
        m!("GRPCRoute/method-regex-any", &["GRPCRoute"], Accept, |o| {
            match0(o).is_some_and(|m| {
                m["method"] =
                    json!({"type": "RegularExpression", "service": "pkg\\..*", "method": "Get.*"});
                true
            })
        }),
        m!("GRPCRoute/method-type-bogus", &["GRPCRoute"], Refuse, |o| {
            match0(o).is_some_and(|m| {
                m["method"] = json!({"type": "Prefix", "service": "a"});
                true
            })
        }),
        // ---- L4 routes ----
        m!(
            "l4/rules-empty",
            &["TCPRoute", "UDPRoute", "TLSRoute"],
            Refuse,
            |o| {
                o["spec"]["rules"] = json!([]);
                true
            }
        ),
        m!(
            "l4/backends-empty",
            &["TCPRoute", "UDPRoute", "TLSRoute"],
            Refuse,
            |o| {
                rule0(o).is_some_and(|r| {
                    r["backendRefs"] = json!([]);
                    true
                })
            }
        ),
        // v1 allows one rule, v1alpha2 sixteen: gwcore judges by the
        // apiVersion an object is written in.
        m!(
            "l4/rules-two",
            &["TCPRoute", "UDPRoute", "TLSRoute"],
            Refuse,
            two_rules
        ),
        m!(
            "l4/rules-two-v1alpha2",
            &["TCPRoute", "UDPRoute", "TLSRoute"],
            Accept,
            |o| {
                o["apiVersion"] = "gateway.networking.k8s.io/v1alpha2".into();
                two_rules(o)
            }
        ),
        m!(
            "l4/rule-names-duplicate-v1alpha2",
            &["TCPRoute", "UDPRoute", "TLSRoute"],
            Refuse,
            |o| {
                o["apiVersion"] = "gateway.networking.k8s.io/v1alpha2".into();
                two_rules(o)
                    && arr(o, &["spec", "rules"]).is_some_and(|rs| {
                        rs.iter_mut().for_each(|r| r["name"] = "same".into());
                        true
                    })
            }
        ),
        m!("TLSRoute/hostnames-none", &["TLSRoute"], Refuse, |o| {
            o["spec"].as_object_mut().map(|m| m.remove("hostnames"));
            true
        }),
        m!(
            "TLSRoute/hostnames-none-v1alpha2",
            &["TLSRoute"],
            Accept,
            |o| {
                o["apiVersion"] = "gateway.networking.k8s.io/v1alpha2".into();
                o["spec"].as_object_mut().map(|m| m.remove("hostnames"));
                true
            }
        ),
        m!(
            "TLSRoute/hostname-ip-v1alpha2",
            &["TLSRoute"],
            Accept,
            |o| {
                o["apiVersion"] = "gateway.networking.k8s.io/v1alpha2".into();
                o["spec"]["hostnames"] = json!(["10.0.0.1"]);
                true
            }
        ),
        // ---- ReferenceGrant ----
        m!(
            "ReferenceGrant/from-empty",
            &["ReferenceGrant"],
            Refuse,
            |o| {
                o["spec"]["from"] = json!([]);
                true
            }
        ),
        m!(
            "ReferenceGrant/to-empty",
            &["ReferenceGrant"],
            Refuse,
            |o| {
                o["spec"]["to"] = json!([]);
                true
            }
        ),
        m!(
            "ReferenceGrant/from-kind-empty",
            &["ReferenceGrant"],
            Refuse,
            |o| {
                o["spec"]["from"] =
                    json!([{"group": "gateway.networking.k8s.io", "kind": "", "namespace": "a"}]);
                true
            }
        ),
        m!(
            "ReferenceGrant/from-namespace-bad",
            &["ReferenceGrant"],
            Refuse,
            |o| {
                o["spec"]["from"] = json!([{"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": "Bad_NS"}]);
                true
            }
        ),
        m!("ReferenceGrant/to-name", &["ReferenceGrant"], Accept, |o| {
            o["spec"]["to"] = json!([{"group": "", "kind": "Service", "name": "svc"}]);
            true
        }),
        m!(
            "ReferenceGrant/from-too-many",
            &["ReferenceGrant"],
            Refuse,
            |o| {
                o["spec"]["from"] = (0..17)
                .map(|i| json!({"group": "gateway.networking.k8s.io", "kind": "HTTPRoute", "namespace": format!("n{i}")}))
                .collect::<Vec<_>>()
                .into();
                true
            }
        ),
        // ---- BackendTLSPolicy ----
        m!(
            "BackendTLSPolicy/target-twice-bare",
            &["BackendTLSPolicy"],
            Refuse,
            |o| {
                o["spec"]["targetRefs"] = json!([{"group": "", "kind": "Service", "name": "svc"},
                {"group": "", "kind": "Service", "name": "svc"}]);
                true
            }
        ),
        m!(
            "BackendTLSPolicy/target-twice-one-section",
            &["BackendTLSPolicy"],
            Refuse,
            |o| {
                o["spec"]["targetRefs"] = json!([{"group": "", "kind": "Service", "name": "svc", "sectionName": "http"},
                {"group": "", "kind": "Service", "name": "svc"}]);
                true
            }
        ),
        m!(
            "BackendTLSPolicy/target-twice-same-section",
            &["BackendTLSPolicy"],
            Refuse,
            |o| {
                o["spec"]["targetRefs"] = json!([{"group": "", "kind": "Service", "name": "svc", "sectionName": "http"},
                {"group": "", "kind": "Service", "name": "svc", "sectionName": "http"}]);
                true
            }
        ),
        m!(
            "BackendTLSPolicy/target-twice-other-sections",
            &["BackendTLSPolicy"],
            Accept,
            |o| {
                o["spec"]["targetRefs"] = json!([{"group": "", "kind": "Service", "name": "svc", "sectionName": "http"},
                {"group": "", "kind": "Service", "name": "svc", "sectionName": "https"}]);
                true
            }
        ),
        m!(
            "BackendTLSPolicy/targets-none",
            &["BackendTLSPolicy"],
            Refuse,
            |o| {
                o["spec"]["targetRefs"] = json!([]);
                true
            }
        ),
        m!(
            "BackendTLSPolicy/ca-and-well-known",
            &["BackendTLSPolicy"],
            Refuse,
            |o| {
                o["spec"]["validation"]["wellKnownCACertificates"] = "System".into();
                true
            }
        ),
        m!(
            "BackendTLSPolicy/neither-ca-nor-well-known",
            &["BackendTLSPolicy"],
            Refuse,
            |o| {
                o["spec"]["validation"]
                    .as_object_mut()
                    .map(|m| m.remove("caCertificateRefs"));
                true
            }
        ),
        m!(
            "BackendTLSPolicy/well-known-only",
            &["BackendTLSPolicy"],
            Accept,
            |o| {
                let v = &mut o["spec"]["validation"];
                v.as_object_mut().map(|m| m.remove("caCertificateRefs"));
                v["wellKnownCACertificates"] = "System".into();
                true
            }
        ),
        m!(
            "BackendTLSPolicy/well-known-bogus",
            &["BackendTLSPolicy"],
            Refuse,
            |o| {
                let v = &mut o["spec"]["validation"];
                v.as_object_mut().map(|m| m.remove("caCertificateRefs"));
                v["wellKnownCACertificates"] = "Everyone".into();
                true
            }
        ),
        m!(
            "BackendTLSPolicy/hostname-empty",
            &["BackendTLSPolicy"],
            Refuse,
            |o| {
                o["spec"]["validation"]["hostname"] = "".into();
                true
            }
        ),
        m!(
            "BackendTLSPolicy/hostname-wildcard",
            &["BackendTLSPolicy"],
            Refuse,
            |o| {
                o["spec"]["validation"]["hostname"] = "*.example.com".into();
                true
            }
        ),
        m!(
            "BackendTLSPolicy/hostname-uppercase",
            &["BackendTLSPolicy"],
            Refuse,
            |o| {
                o["spec"]["validation"]["hostname"] = "A.example.com".into();
                true
            }
        ),
        m!(
            "BackendTLSPolicy/san-hostname-without-value",
            &["BackendTLSPolicy"],
            Refuse,
            |o| {
                o["spec"]["validation"]["subjectAltNames"] = json!([{"type": "Hostname"}]);
                true
            }
        ),
        m!(
            "BackendTLSPolicy/san-hostname-with-uri",
            &["BackendTLSPolicy"],
            Refuse,
            |o| {
                o["spec"]["validation"]["subjectAltNames"] = json!([{"type": "Hostname", "hostname": "a.example.com", "uri": "spiffe://a/b"}]);
                true
            }
        ),
        m!(
            "BackendTLSPolicy/san-uri-without-value",
            &["BackendTLSPolicy"],
            Refuse,
            |o| {
                o["spec"]["validation"]["subjectAltNames"] = json!([{"type": "URI"}]);
                true
            }
        ),
        m!(
            "BackendTLSPolicy/san-uri-with-hostname",
            &["BackendTLSPolicy"],
            Refuse,
            |o| {
                o["spec"]["validation"]["subjectAltNames"] =
                    json!([{"type": "URI", "uri": "spiffe://a/b", "hostname": "a.example.com"}]);
                true
            }
        ),
        m!(
            "BackendTLSPolicy/san-valid",
            &["BackendTLSPolicy"],
            Accept,
            |o| {
                o["spec"]["validation"]["subjectAltNames"] = json!([{"type": "Hostname", "hostname": "a.example.com"},
                {"type": "URI", "uri": "spiffe://td/ns/a"}]);
                true
            }
        ),
        m!(
            "BackendTLSPolicy/san-type-bogus",
            &["BackendTLSPolicy"],
            Refuse,
            |o| {
                o["spec"]["validation"]["subjectAltNames"] =
                    json!([{"type": "Email", "hostname": "a.example.com"}]);
                true
            }
        ),
        m!(
            "BackendTLSPolicy/ca-refs-too-many",
            &["BackendTLSPolicy"],
            Refuse,
            |o| {
                o["spec"]["validation"]["caCertificateRefs"] = (0..9)
                    .map(|i| json!({"group": "", "kind": "ConfigMap", "name": format!("ca{i}")}))
                    .collect::<Vec<_>>()
                    .into();
                true
            }
        ),
    ]
}

/// Repeats the first rule.
fn two_rules(o: &mut Value) -> bool {
    let Some(rs) = arr(o, &["spec", "rules"]) else {
        return false;
    };
    let r = rs[0].clone();
    rs.push(r);
    true
}

/// Sets the first match's path.
fn path(o: &mut Value, ty: &str, value: &str) -> bool {
    match0(o).is_some_and(|m| {
        m["path"] = json!({"type": ty, "value": value});
        true
    })
}

/// One object to judge.
struct Case {
    kind: String,
    mutation: &'static str,
    aim: Option<Aim>,
    object: Value,
}

/// Removes `null`s (serialization artefacts of the generated objects).
fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|_, x| !x.is_null());
            m.values_mut().for_each(strip_nulls);
        }
        Value::Array(a) => a.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// The generated objects of one snapshot, as manifests, with the kinds
/// derived from them (see the module docs).
fn bases(objects: &[Object], n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for o in objects {
        let mut v = o.to_manifest();
        strip_nulls(&mut v);
        let kind = v["kind"].as_str().unwrap_or_default().to_string();
        match kind.as_str() {
            "GatewayClass" | "ReferenceGrant" | "BackendTLSPolicy" => out.push(v),
            "Gateway" => {
                let ls = json!({
                    "apiVersion": "gateway.networking.k8s.io/v1",
                    "kind": "ListenerSet",
                    "metadata": {"name": format!("ls-{}", v["metadata"]["name"].as_str().unwrap_or("x")),
                                 "namespace": v["metadata"]["namespace"].clone()},
                    "spec": {"parentRef": {"name": v["metadata"]["name"].clone()},
                             "listeners": v["spec"]["listeners"].clone()},
                });
                out.push(v);
                out.push(ls);
            }
            "HTTPRoute" => {
                let spec = &v["spec"];
                let backends = |r: &Value| {
                    let mut bs = r["backendRefs"].clone();
                    if let Some(a) = bs.as_array_mut() {
                        for b in a {
                            b.as_object_mut().map(|m| m.remove("filters"));
                        }
                    }
                    bs
                };
                let rules = spec["rules"].as_array().cloned().unwrap_or_default();
                let meta = |prefix: &str| {
                    json!({"name": format!("{prefix}-{}", v["metadata"]["name"].as_str().unwrap_or("x")),
                           "namespace": v["metadata"]["namespace"].clone()})
                };
                // One derived route per HTTPRoute, in turn.
                let derived = match (n + out.len()) % 4 {
                    0 => json!({
                        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GRPCRoute",
                        "metadata": meta("g"),
                        "spec": {"parentRefs": spec["parentRefs"].clone(), "hostnames": spec["hostnames"].clone(),
                            "rules": rules.iter().enumerate().map(|(i, r)| {
                                let mut g = json!({"matches": [{"method": {"service": format!("pkg.v1.Svc{i}"), "method": "Get"}}],
                                    "backendRefs": backends(r)});
                                if let Some(name) = r.get("name") { g["name"] = name.clone(); }
                                g
                            }).collect::<Vec<_>>()},
                    }),
                    1 => json!({
                        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "TLSRoute",
                        "metadata": meta("t"),
                        "spec": {"parentRefs": spec["parentRefs"].clone(),
                            "hostnames": if spec["hostnames"].as_array().is_some_and(|h| !h.is_empty()) {
                                spec["hostnames"].clone() } else { json!(["tls.example.com"]) },
                            "rules": [{"backendRefs": backends(&rules[0])}]},
                    }),
                    2 => json!({
                        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "TCPRoute",
                        "metadata": meta("tcp"),
                        "spec": {"parentRefs": spec["parentRefs"].clone(),
                            "rules": [{"backendRefs": backends(&rules[0])}]},
                    }),
                    _ => json!({
                        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "UDPRoute",
                        "metadata": meta("udp"),
                        "spec": {"parentRefs": spec["parentRefs"].clone(),
                            "rules": [{"backendRefs": backends(&rules[0])}]},
                    }),
                };
                let mut derived = derived;
                strip_nulls(&mut derived);
                out.push(v);
                out.push(derived);
            }
            // Namespaces, Services, ConfigMaps and extension objects are not
            // served by the CRD server.
            _ => {}
        }
    }
    out
}

/// The cases: every base as generated, and edits of it; every mutation on
/// the first snapshots' bases it applies to, then each with a probability.
fn cases() -> Vec<Case> {
    let mut runner = TestRunner::new_with_rng(
        RunnerConfig::default(),
        TestRng::from_seed(RngAlgorithm::ChaCha, &SEED),
    );
    let mut pick =
        fastrand::Rng::with_seed(u64::from_le_bytes(SEED[..8].try_into().expect("8 bytes")));
    let strategy = gwcore::testing::snapshot::objects();
    let muts = mutations();
    let mut out = Vec::new();
    let mut n = 0;
    while out.len() < MIN_CASES + MIN_CASES / 10 {
        let objects = strategy
            .new_tree(&mut runner)
            .expect("a generated snapshot")
            .current();
        for base in bases(&objects, n) {
            let kind = base["kind"].as_str().unwrap_or_default().to_string();
            // The two GatewayClasses are the same in every snapshot.
            if kind == "GatewayClass" && n > 2 {
                continue;
            }
            out.push(Case {
                kind: kind.clone(),
                mutation: "as generated",
                aim: None,
                object: base.clone(),
            });
            for m in &muts {
                if !m.kinds.contains(&kind.as_str()) {
                    continue;
                }
                if n > 2 && kind != "GatewayClass" && pick.u32(0..100) >= 22 {
                    continue;
                }
                let mut o = base.clone();
                if (m.edit)(&mut o) {
                    out.push(Case {
                        kind: kind.clone(),
                        mutation: m.name,
                        aim: Some(m.aim),
                        object: o,
                    });
                }
            }
        }
        n += 1;
    }
    out
}

/// The resource path of an object (by its apiVersion, kind and namespace).
fn resource_path(o: &Value) -> String {
    let api_version = o["apiVersion"].as_str().unwrap_or_default();
    let plural = match o["kind"].as_str().unwrap_or_default() {
        "GatewayClass" => "gatewayclasses",
        "Gateway" => "gateways",
        "ListenerSet" => "listenersets",
        "HTTPRoute" => "httproutes",
        "GRPCRoute" => "grpcroutes",
        "TLSRoute" => "tlsroutes",
        "TCPRoute" => "tcproutes",
        "UDPRoute" => "udproutes",
        "ReferenceGrant" => "referencegrants",
        "BackendTLSPolicy" => "backendtlspolicies",
        other => panic!("no resource for kind {other}"),
    };
    match o["metadata"]["namespace"].as_str() {
        Some(ns) => format!("/apis/{api_version}/namespaces/{ns}/{plural}"),
        None => format!("/apis/{api_version}/{plural}"),
    }
}

/// The server's verdict: `Ok(true)` accepted, `Ok(false)` refused (with its
/// message), `Err` anything else.
async fn server_verdict(client: &Client, o: &Value) -> ServerVerdict {
    let body = serde_json::to_vec(o).expect("JSON");
    let pp = PostParams {
        dry_run: true,
        ..Default::default()
    };
    let req = kube::core::Request::new(resource_path(o))
        .create(&pp, body)
        .map_err(|e| e.to_string())?;
    match client.request::<Value>(req).await {
        Ok(_) => Ok((true, String::new())),
        Err(kube::Error::Api(s)) if s.code == 422 || s.code == 400 => Ok((false, s.message)),
        Err(e) => Err(e.to_string()),
    }
}

/// gwcore's verdict on the same text: `Ok` when it reads the object,
/// `Err(diagnostics)` when it flags it.
fn gwcore_verdict(text: &str) -> Result<(), String> {
    let loaded = load_str("case.json", text);
    let errors: Vec<String> = loaded
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .map(|d| format!("{}: {}", d.field.as_deref().unwrap_or("-"), d.message))
        .collect();
    if errors.is_empty() && loaded.objects.len() == 1 {
        Ok(())
    } else if errors.is_empty() {
        Err(format!(
            "left out without an error ({} objects; {:?})",
            loaded.objects.len(),
            loaded.diagnostics
        ))
    } else {
        Err(errors.join("; "))
    }
}

/// Connects to the CRD server named by `GWCORE_CRD_SERVER`, or skips.
async fn crd_server() -> Option<Client> {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let Some(path) = std::env::var_os("GWCORE_CRD_SERVER") else {
        assert!(
            !ci,
            "CI=true but no CRD server: run `source .ci/crd-server.sh` before the tests (it sets GWCORE_CRD_SERVER)"
        );
        eprintln!(
            "skipping: no CRD server (run `source .ci/crd-server.sh`, which sets GWCORE_CRD_SERVER to its kubeconfig)"
        );
        return None;
    };
    let kubeconfig = kube::config::Kubeconfig::read_from(&path)
        .unwrap_or_else(|e| panic!("GWCORE_CRD_SERVER={path:?}: {e}"));
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap_or_else(|e| panic!("GWCORE_CRD_SERVER={path:?}: {e}"));
    Some(Client::try_from(config).expect("a client for the CRD server"))
}

/// What the server said of one case: accepted or not, and its message; or
/// why it could not be asked.
type ServerVerdict = Result<(bool, String), String>;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gwcore_validates_as_the_api_server_does() {
    let Some(client) = crd_server().await else {
        return;
    };
    let started = Instant::now();
    let cases = cases();
    let generated = started.elapsed();
    assert!(cases.len() >= MIN_CASES, "only {} cases", cases.len());

    let results: Vec<(usize, ServerVerdict)> = futures_util::stream::iter(cases.iter().enumerate())
        .map(|(i, c)| {
            let client = client.clone();
            async move { (i, server_verdict(&client, &c.object).await) }
        })
        .buffer_unordered(IN_FLIGHT)
        .collect()
        .await;
    let sent = started.elapsed() - generated;

    let mut harness = Vec::new();
    let mut disagreements = Vec::new();
    // Per mutation: cases, refused by the server.
    let mut per_mutation: BTreeMap<&str, (usize, usize, Option<Aim>)> = BTreeMap::new();
    let (mut accepted, mut refused) = (0usize, 0usize);
    for (i, r) in results {
        let c = &cases[i];
        let (ok, message) = match r {
            Ok(v) => v,
            Err(e) => {
                harness.push(format!("{} {}: {e}", c.kind, c.mutation));
                continue;
            }
        };
        let entry = per_mutation.entry(c.mutation).or_insert((0, 0, c.aim));
        entry.0 += 1;
        if ok {
            accepted += 1;
        } else {
            refused += 1;
            entry.1 += 1;
        }
        let text = serde_json::to_string(&c.object).expect("JSON");
        let ours = gwcore_verdict(&text);
        match (ok, ours) {
            (true, Ok(())) | (false, Err(_)) => {}
            (true, Err(why)) => disagreements.push(format!(
                "{} / {}: the server ACCEPTS, gwcore refuses: {why}\n    {text}",
                c.kind, c.mutation
            )),
            (false, Ok(())) => disagreements.push(format!(
                "{} / {}: the server REFUSES ({message}), gwcore accepts\n    {text}",
                c.kind, c.mutation
            )),
        }
    }
    let judged = started.elapsed() - generated - sent;
    eprintln!(
        "crd_server_diff: {} cases ({accepted} accepted, {refused} refused by the server), {} mutations; \
         generated in {:.1} s, sent ({IN_FLIGHT} in flight) in {:.1} s, judged in {:.1} s; total {:.1} s",
        cases.len(),
        per_mutation.len() - 1,
        generated.as_secs_f64(),
        sent.as_secs_f64(),
        judged.as_secs_f64(),
        started.elapsed().as_secs_f64(),
    );
    for (name, (n, r, _)) in &per_mutation {
        eprintln!("  {name}: {n} cases, {r} refused");
    }
    assert!(
        harness.is_empty(),
        "{} requests failed outside validation (is the CRD server up, with the CRDs of .ci/crd-server.sh?):\n{}",
        harness.len(),
        harness[..harness.len().min(20)].join("\n")
    );
    let unused: Vec<&str> = mutations()
        .iter()
        .map(|m| m.name)
        .filter(|n| !per_mutation.contains_key(n))
        .collect();
    assert!(unused.is_empty(), "mutations never applied: {unused:?}");
    let missed: Vec<&str> = per_mutation
        .iter()
        .filter(|(_, (_, r, aim))| *aim == Some(Aim::Refuse) && *r == 0)
        .map(|(n, _)| *n)
        .collect();
    let never_accepted: Vec<&str> = per_mutation
        .iter()
        .filter(|(_, (n, r, aim))| *aim == Some(Aim::Accept) && r == n)
        .map(|(n, _)| *n)
        .collect();
    let mut report = String::new();
    if !missed.is_empty() {
        report += &format!(
            "mutations aimed at a rule the server never refused (the mutation misses its rule): {missed:?}\n"
        );
    }
    if !never_accepted.is_empty() {
        report += &format!(
            "mutations aimed at the accepted side of a rule that the server always refused: {never_accepted:?}\n"
        );
    }
    if !disagreements.is_empty() {
        let mut by_mutation: BTreeMap<String, Vec<&String>> = BTreeMap::new();
        for d in &disagreements {
            let key = d.split(':').next().unwrap_or_default().to_string();
            by_mutation.entry(key).or_default().push(d);
        }
        report += &format!(
            "{} disagreements with the API server, in {} kinds of case (3 examples each):\n",
            disagreements.len(),
            by_mutation.len()
        );
        for (key, ds) in &by_mutation {
            report += &format!("{key}: {} cases\n", ds.len());
            for d in ds.iter().take(3) {
                report += &format!("  {d}\n");
            }
        }
    }
    assert!(report.is_empty(), "{report}");
}
