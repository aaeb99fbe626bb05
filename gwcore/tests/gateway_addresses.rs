//! Gateway `spec.addresses` as the spec has them judged (GatewayStaticAddresses):
//! an address type gwcore does not serve leaves the Gateway not Accepted
//! (`UnsupportedAddress`); an address the deployment cannot serve
//! (`ComputeOptions::with_usable_addresses`) leaves it not Programmed
//! (`AddressNotUsable`); a usable one is what `status.addresses` lists.

use gwcore::engine::{ComputeOptions, compute};
use gwcore::load::load_str;
use gwcore::model::{Kind, ObjectKey};
use gwcore::status::{GatewayStatus, ObjectStatus};

const CTRL: &str = "example.com/gateway-controller";
const NOW: &str = "2026-01-01T00:00:00Z";

fn gateway(addresses: &str) -> String {
    format!(
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: c}}
spec: {{controllerName: {CTRL}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: infra}}
spec:
  gatewayClassName: c
  addresses: {addresses}
  listeners:
  - {{name: http, port: 80, protocol: HTTP}}
"#
    )
}

fn status(addresses: &str, opts: &ComputeOptions) -> GatewayStatus {
    let loaded = load_str("gw.yaml", &gateway(addresses));
    assert!(loaded.diagnostics.is_empty(), "{:#?}", loaded.diagnostics);
    let snap = gwcore::Snapshot::from_objects(loaded.into_objects());
    let computed = compute(&snap, opts);
    match computed
        .statuses
        .get(&ObjectKey::new(Kind::Gateway, "infra", "gw"))
    {
        Some(ObjectStatus::Gateway(g)) => g.clone(),
        other => panic!("no Gateway status: {other:?}"),
    }
}

fn condition(g: &GatewayStatus, ty: &str) -> (String, String) {
    let c = g
        .conditions
        .iter()
        .find(|c| c.type_ == ty)
        .unwrap_or_else(|| panic!("no {ty} in {g:?}"));
    (c.status.clone(), c.reason.clone())
}

fn values(g: &GatewayStatus) -> Vec<&str> {
    g.addresses.iter().map(|a| a.value.as_str()).collect()
}

#[test]
fn the_static_addresses_sequence_of_the_spec() {
    let opts = ComputeOptions::new(CTRL, NOW).with_usable_addresses(["10.0.0.1", "GW.example"]);
    // An unsupported type, an unusable address and a usable one.
    let g = status(
        "[{type: NamedAddress, value: pool-a}, {type: IPAddress, value: 192.0.2.7}, {type: IPAddress, value: 10.0.0.1}]",
        &opts,
    );
    assert_eq!(
        condition(&g, "Accepted"),
        ("False".into(), "UnsupportedAddress".into())
    );
    // The unsupported one removed: accepted, but one address is unusable.
    let g = status(
        "[{type: IPAddress, value: 192.0.2.7}, {type: IPAddress, value: 10.0.0.1}]",
        &opts,
    );
    assert_eq!(
        condition(&g, "Accepted"),
        ("True".into(), "Accepted".into())
    );
    assert_eq!(
        condition(&g, "Programmed"),
        ("False".into(), "AddressNotUsable".into())
    );
    assert_eq!(values(&g), ["10.0.0.1"], "only usable addresses are listed");
    // Only the usable one: programmed, and it is the Gateway's address.
    let g = status("[{type: IPAddress, value: 10.0.0.1}]", &opts);
    assert_eq!(
        condition(&g, "Programmed"),
        ("True".into(), "Programmed".into())
    );
    assert_eq!(values(&g), ["10.0.0.1"]);
    // Hostnames compare without case (the CRD allows only lowercase in
    // spec.addresses; a deployment may report any case); IPv6 as addresses.
    let g = status("[{type: Hostname, value: gw.example}]", &opts);
    assert_eq!(condition(&g, "Programmed").0, "True");
    let v6 = ComputeOptions::new(CTRL, NOW).with_usable_addresses(["::1"]);
    let g = status("[{type: IPAddress, value: \"0:0::1\"}]", &v6);
    assert_eq!(condition(&g, "Programmed").0, "True");
}

#[test]
fn without_knowing_the_usable_addresses_every_supported_one_is_taken() {
    let opts = ComputeOptions::new(CTRL, NOW);
    let g = status("[{type: IPAddress, value: 192.0.2.7}]", &opts);
    assert_eq!(
        condition(&g, "Programmed"),
        ("True".into(), "Programmed".into())
    );
    assert_eq!(values(&g), ["192.0.2.7"]);
    let g = status("[{type: NamedAddress, value: pool-a}]", &opts);
    assert_eq!(
        condition(&g, "Accepted"),
        ("False".into(), "UnsupportedAddress".into())
    );
}

fn ip(value: &str) -> gwcore::status::GatewayStatusAddress {
    gwcore::status::GatewayStatusAddress {
        type_: Some(gwcore::values::AddressType::IpAddress),
        value: value.into(),
    }
}

#[test]
fn a_gateways_own_addresses_replace_the_deployments() {
    let key = ObjectKey::new(Kind::Gateway, "infra", "gw");
    // The deployment serves 10.0.0.1; this Gateway's own Service 10.0.0.9.
    let opts = ComputeOptions::new(CTRL, NOW)
        .with_addresses(vec![ip("10.0.0.1")])
        .with_usable_addresses(["10.0.0.1"])
        .with_gateway_addresses(key.clone(), vec![ip("10.0.0.9")]);
    let g = status("[]", &opts);
    assert_eq!(values(&g), ["10.0.0.9"], "requests none: gets its own");
    let g = status("[{type: IPAddress, value: 10.0.0.1}]", &opts);
    assert_eq!(
        condition(&g, "Programmed"),
        ("False".into(), "AddressNotUsable".into()),
        "the deployment's address is not this Gateway's"
    );
    let g = status("[{type: IPAddress, value: 10.0.0.9}]", &opts);
    assert_eq!(condition(&g, "Programmed").0, "True");
    assert_eq!(values(&g), ["10.0.0.9"]);
}

#[test]
fn setting_a_gateways_addresses_incrementally_equals_a_full_computation() {
    let key = ObjectKey::new(Kind::Gateway, "infra", "gw");
    let loaded = load_str("gw.yaml", &gateway("[{type: IPAddress, value: 10.0.0.9}]"));
    let snap = gwcore::Snapshot::from_objects(loaded.into_objects());
    let mut engine =
        gwcore::engine::Engine::from_snapshot(snap.clone(), ComputeOptions::new(CTRL, NOW));
    let before = engine.statuses()[&key].clone();
    for own in [vec![ip("10.0.0.2")], vec![ip("10.0.0.9")], vec![]] {
        let delta = engine.set_gateway_addresses(&key, Some(own.clone()));
        let full = compute(
            &snap,
            &ComputeOptions::new(CTRL, NOW).with_gateway_addresses(key.clone(), own.clone()),
        );
        assert_eq!(engine.statuses()[&key], full.statuses[&key], "{own:?}");
        assert!(
            delta.statuses.contains_key(&key),
            "{own:?}: reported changed"
        );
        assert!(
            engine.set_gateway_addresses(&key, Some(own)).is_empty(),
            "the same addresses again change nothing"
        );
    }
    engine.set_gateway_addresses(&key, None);
    assert_eq!(engine.statuses()[&key], before, "cleared: as before");
}
