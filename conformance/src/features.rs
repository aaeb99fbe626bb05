//! The feature table: every Gateway API feature, grouped by conformance
//! profile and support level, with what the conformance vectors measured
//! for it.
//!
//! `docs/features.md` is generated from a [`Report`] by [`render`] (the
//! `feature-table` binary), and a test regenerates it and fails when the
//! checked-in file differs, so the table cannot drift from the runner.
//!
//! ```text
//!  vectors ──run_paths──▶ Report ──┐
//!  vector files ──features:────────┴─▶ FeatureRow per feature ──render──▶ docs/features.md
//! ```
//!
//! Profiles follow upstream's conformance suite (GEP-1709): "a group of
//! features that have a related purpose", each with core and extended
//! features. A vector counts toward every feature in its `features` list;
//! the mesh profiles are out of scope for a gateway and are not listed.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::Path;

use crate::check::{CheckKind, Outcome};
use crate::runner::{Report, Verdict};

/// A support level, as upstream's conformance profiles name them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Required by the profile.
    Core,
    /// Optional; an implementation opts in.
    Extended,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Core => "Core",
            Level::Extended => "Extended",
        }
    }
}

/// The gateway conformance profiles, in the order the table lists them.
pub const PROFILES: [&str; 4] = ["GATEWAY-HTTP", "GATEWAY-GRPC", "GATEWAY-TLS", "GATEWAY-TCP"];

/// Features upstream defines (sigs.k8s.io/gateway-api/pkg/features) that no
/// vector may name yet: gwcore's own declaration of what it knows
/// ([`gwcore::features::UPSTREAM`]), listed so the table shows them as
/// unmeasured rather than leaving them out. Features named by vectors are
/// added to these.
fn known_features() -> impl Iterator<Item = &'static str> {
    gwcore::features::UPSTREAM.iter().map(|f| f.name)
}

/// The profiles a feature belongs to, with its level in each; empty for a
/// feature in no gateway profile (UDPRoute has none upstream).
///
/// Upstream's profiles: GATEWAY-HTTP has core Gateway, ReferenceGrant and
/// HTTPRoute and extends with the Gateway, HTTPRoute and BackendTLSPolicy
/// features; GATEWAY-GRPC, GATEWAY-TLS and GATEWAY-TCP have Gateway (plus
/// ReferenceGrant for gRPC and TLS) and their route kind as core, and
/// extend with the Gateway features and their route kind's own.
pub fn profiles(feature: &str) -> Vec<(&'static str, Level)> {
    let gateway_extended =
        (feature.starts_with("Gateway") && feature != "Gateway") || feature == "ListenerSet";
    let mut out = Vec::new();
    for profile in PROFILES {
        let (route, with_grant) = match profile {
            "GATEWAY-HTTP" => ("HTTPRoute", true),
            "GATEWAY-GRPC" => ("GRPCRoute", true),
            "GATEWAY-TLS" => ("TLSRoute", true),
            _ => ("TCPRoute", false),
        };
        let level = if feature == "Gateway"
            || feature == route
            || (with_grant && feature == "ReferenceGrant")
        {
            Some(Level::Core)
        } else if gateway_extended
            || feature.starts_with(route)
            || (profile == "GATEWAY-HTTP" && feature.starts_with("BackendTLSPolicy"))
        {
            Some(Level::Extended)
        } else {
            None
        };
        if let Some(level) = level {
            out.push((profile, level));
        }
    }
    out
}

/// What the vectors measured for one feature.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FeatureRow {
    /// Vectors naming the feature.
    pub vectors: usize,
    /// Of those, passing.
    pub passed: usize,
    /// Of those, failing.
    pub failed: usize,
    /// Status checks that held / all status checks.
    pub status: (usize, usize),
    /// Request checks that held / all request checks.
    pub requests: (usize, usize),
    /// Request checks engine mode could not judge (they need a data plane).
    pub requests_not_run: usize,
    /// What wire mode measured, when it ran.
    pub wire: Option<WireRow>,
}

/// What wire mode (the real data plane) measured for one feature.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WireRow {
    /// Vectors naming the feature.
    pub vectors: usize,
    /// Of those, passing on the wire.
    pub passed: usize,
    /// Of those, failing on the wire.
    pub failed: usize,
    /// Request checks that held on the wire / all request checks.
    pub requests: (usize, usize),
}

impl FeatureRow {
    /// The one-word verdict shown in the table.
    pub fn verdict(&self) -> &'static str {
        if self.vectors == 0 {
            "no vector"
        } else if self.failed > 0 {
            "failing"
        } else if self.passed == 0 {
            "skipped"
        } else {
            match self.wire {
                // On the wire every request is sent and judged.
                Some(w) if w.failed == 0 && w.passed > 0 => "passes",
                Some(_) => "passes (engine)",
                None if self.requests_not_run > 0 || self.status.0 < self.status.1 => {
                    "passes (engine)"
                }
                None => "passes",
            }
        }
    }
}

/// The `features` list of a vector file, read without the rest of the
/// schema. A file that cannot be read names no feature.
pub fn vector_features(file: &Path) -> Vec<String> {
    #[derive(serde::Deserialize)]
    struct Features {
        #[serde(default)]
        features: Vec<String>,
    }
    std::fs::read_to_string(file)
        .ok()
        .and_then(|t| serde_norway::from_str::<Features>(&t).ok())
        .map(|f| f.features)
        .unwrap_or_default()
}

/// One row per feature: the known features, and every feature a vector of
/// the report names. `features_of` gives a vector file's features.
pub fn rows(
    report: &Report,
    features_of: impl Fn(&Path) -> Vec<String>,
) -> BTreeMap<String, FeatureRow> {
    let mut out: BTreeMap<String, FeatureRow> = known_features()
        .map(|f| (f.to_string(), FeatureRow::default()))
        .collect();
    for v in &report.vectors {
        let features: BTreeSet<String> = features_of(&v.file).into_iter().collect();
        for f in features {
            let row = out.entry(f).or_default();
            row.vectors += 1;
            match v.verdict {
                Verdict::Pass => row.passed += 1,
                Verdict::Fail => row.failed += 1,
                Verdict::Skip => {}
            }
            for c in &v.checks {
                let held = c.outcome == Outcome::Pass;
                match c.kind {
                    CheckKind::Status => {
                        row.status.1 += 1;
                        row.status.0 += usize::from(held);
                    }
                    CheckKind::Request => {
                        row.requests.1 += 1;
                        row.requests.0 += usize::from(held);
                        if matches!(c.outcome, Outcome::NotRun(_)) {
                            row.requests_not_run += 1;
                        }
                    }
                }
            }
        }
    }
    out
}

/// Adds what a wire-mode run measured to `rows` (from an engine-mode run
/// of the same vectors).
pub fn add_wire(
    rows: &mut BTreeMap<String, FeatureRow>,
    wire: &Report,
    features_of: impl Fn(&Path) -> Vec<String>,
) {
    for row in rows.values_mut() {
        row.wire = Some(WireRow::default());
    }
    for (name, w) in self::rows(wire, features_of) {
        let row = rows.entry(name).or_default();
        row.wire = Some(WireRow {
            vectors: w.vectors,
            passed: w.passed,
            failed: w.failed,
            requests: w.requests,
        });
    }
}

fn ratio((a, b): (usize, usize)) -> String {
    if b == 0 {
        "—".to_string()
    } else {
        format!("{a}/{b}")
    }
}

fn line(out: &mut String, name: &str, level: &str, row: &FeatureRow) {
    let not_run = if row.requests_not_run > 0 {
        format!(" ({} not run)", row.requests_not_run)
    } else {
        String::new()
    };
    let wire = row.wire.map_or_else(String::new, |w| {
        format!(" {}/{} | {} |", w.passed, w.vectors, ratio(w.requests))
    });
    // Writing to a String cannot fail.
    let _ = writeln!(
        out,
        "| {name} | {level} | {} | {} | {}/{} | {} | {}{not_run} |{wire}",
        if gwcore::features::is_supported(name) {
            "yes"
        } else {
            "no"
        },
        row.verdict(),
        row.passed,
        row.vectors,
        ratio(row.status),
        ratio(row.requests),
    );
}

/// The Markdown table of `docs/features.md`.
pub fn render(rows: &BTreeMap<String, FeatureRow>) -> String {
    let wire = rows.values().any(|r| r.wire.is_some());
    let mut out = String::from(
        "<!-- Generated by `cargo run --release -p gwcore-conformance --bin feature-table -- \
         --out docs/features.md ../shared/conformance/vectors`; do not edit. \
         conformance/tests/feature_table.rs fails when this file is stale. -->\n\n\
         # Gateway API features\n\n",
    );
    if wire {
        out.push_str(
            "What gwcore supports, measured by the conformance vectors twice: in engine mode \
             (gwcore's engine in a simulated cluster, requests answered by the routing table) \
             and in wire mode (the same cluster served by gwcore-proxy on loopback, every \
             request sent over a socket to echo backends). A vector counts toward every \
             feature it needs.\n\n\
             - **passes**: every vector needing the feature passes in both modes.\n\
             - **passes (engine)**: every vector passes in engine mode; some fail on the \
             wire, where the data plane lacks part of the feature (see \
             `conformance/wire-expected-failures.txt` for why).\n\
             - **failing**: a vector needing the feature fails in engine mode.\n\
             - **no vector**: the public corpus has no vector for it yet; not measured.\n\n\
             Columns: vectors passed/total, status checks held/total and request checks \
             held/total in engine mode (*not run*: the check needs a real data plane); then \
             vectors passed/total and request checks held/total on the wire.\n",
        );
    } else {
        out.push_str(
            "What gwcore supports, measured by the conformance vectors in engine mode \
             (gwcore's engine in a simulated cluster, requests answered by the routing table). \
             A vector counts toward every feature it needs.\n\n\
             - **passes**: every vector needing the feature passes and every check ran.\n\
             - **passes (engine)**: every vector passes; some request checks need a real data \
             plane (traffic shares, mirrors, TLS and TCP bytes, WebSockets) and are not run in \
             engine mode.\n\
             - **failing**: a vector needing the feature fails.\n\
             - **no vector**: the public corpus has no vector for it yet; not measured.\n\n\
             Columns: vectors passed/total; status checks held/total; request checks held/total \
             (*not run*: the check needs a real data plane).\n",
        );
    }
    out.push_str(
        "\n**Declared**: whether gwcore's GatewayClasses list the feature in \
         `status.supportedFeatures` (GEP-2162). One declaration in code, \
         `gwcore::features::UPSTREAM`, feeds that status, this column and the conformance \
         runner, which honours a vector's `skipIfFeatures` / `runIfFeatures` against it.\n",
    );
    let header = if wire {
        "| Feature | Level | Declared | Status | Vectors | Status checks | Request checks | Wire vectors | Wire request checks |\n|---|---|---|---|---|---|---|---|---|\n"
    } else {
        "| Feature | Level | Declared | Status | Vectors | Status checks | Request checks |\n|---|---|---|---|---|---|---|\n"
    };
    for profile in PROFILES {
        let _ = write!(out, "\n## {profile}\n\n{header}");
        for level in [Level::Core, Level::Extended] {
            for (name, row) in rows {
                if profiles(name).contains(&(profile, level)) {
                    line(&mut out, name, level.as_str(), row);
                }
            }
        }
    }
    let others: Vec<_> = rows
        .iter()
        .filter(|(name, _)| profiles(name).is_empty())
        .collect();
    if !others.is_empty() {
        let _ = write!(out, "\n## Outside the gateway profiles\n\n{header}");
        for (name, row) in others {
            line(&mut out, name, "—", row);
        }
    }
    own_kinds(&mut out);
    data_plane(&mut out);
    out
}

/// The section of gwcore's data-plane features that are not kinds
/// ([`gwcore_proxy::first_party::DATA_PLANE_FEATURES`]).
fn data_plane(out: &mut String) {
    out.push_str(
        "\n## gwcore's data-plane features\n\n\
         Set by `gwcore serve` flags or `ServeOptions` rather than by a kind; tested by \
         gwcore's own wire tests.\n\n\
         | Feature | Setting | Docs |\n|---|---|---|\n",
    );
    for f in gwcore_proxy::first_party::DATA_PLANE_FEATURES {
        let _ = writeln!(
            out,
            "| {} | {} | [{}]({}) |",
            f.name,
            f.setting,
            f.doc,
            // The table is itself in docs/: links are relative to it.
            f.doc.strip_prefix("docs/").unwrap_or(f.doc)
        );
    }
}

/// The section of gwcore's own policy kinds: the ones `gwcore serve`
/// registers ([`gwcore_proxy::first_party::plugins`]), with the features
/// each adds to `status.supportedFeatures`.
fn own_kinds(out: &mut String) {
    let plugins = gwcore_proxy::first_party::plugins();
    let extensions = plugins.extensions();
    let kinds: Vec<_> = extensions.kinds().collect();
    if kinds.is_empty() {
        return;
    }
    out.push_str(
        "\n## gwcore's own kinds\n\n\
         Kinds gwcore defines beyond the Gateway API (CRDs in `deploy/crds/`), built on \
         the same extension seams an embedder uses (`docs/extensions.md`); the `gwcore` \
         binary registers them. Their behaviour is tested by gwcore's own tests, not by \
         the upstream vectors.\n\n\
         | Kind | apiVersion | Declared features |\n|---|---|---|\n",
    );
    for kind in kinds {
        let features = extensions.features_of(kind);
        let features = if features.is_empty() {
            "—".to_string()
        } else {
            features.join(", ")
        };
        let _ = writeln!(
            out,
            "| {} | {} | {features} |",
            kind.kind(),
            kind.api_version()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_profile_has_its_core_and_extended_features() {
        assert!(profiles("HTTPRoute").contains(&("GATEWAY-HTTP", Level::Core)));
        assert!(profiles("ReferenceGrant").contains(&("GATEWAY-HTTP", Level::Core)));
        assert!(
            !profiles("ReferenceGrant")
                .iter()
                .any(|(p, _)| *p == "GATEWAY-TCP")
        );
        assert_eq!(
            profiles("HTTPRouteQueryParamMatching"),
            vec![("GATEWAY-HTTP", Level::Extended)]
        );
        assert_eq!(
            profiles("BackendTLSPolicy"),
            vec![("GATEWAY-HTTP", Level::Extended)]
        );
    }

    #[test]
    fn gateway_features_extend_every_profile() {
        assert_eq!(profiles("GatewayPort8080").len(), PROFILES.len());
        assert_eq!(profiles("ListenerSet").len(), PROFILES.len());
        assert!(profiles("Gateway").iter().all(|(_, l)| *l == Level::Core));
    }

    #[test]
    fn udproute_is_in_no_gateway_profile() {
        assert!(profiles("UDPRoute").is_empty());
    }

    #[test]
    fn verdict_separates_unmeasured_failing_and_partial() {
        let none = FeatureRow::default();
        assert_eq!(none.verdict(), "no vector");
        let failing = FeatureRow {
            vectors: 2,
            passed: 1,
            failed: 1,
            ..FeatureRow::default()
        };
        assert_eq!(failing.verdict(), "failing");
        let partial = FeatureRow {
            vectors: 1,
            passed: 1,
            status: (3, 3),
            requests: (1, 2),
            requests_not_run: 1,
            ..FeatureRow::default()
        };
        assert_eq!(partial.verdict(), "passes (engine)");
        let full = FeatureRow {
            requests_not_run: 0,
            requests: (2, 2),
            ..partial.clone()
        };
        assert_eq!(full.verdict(), "passes");
        let on_the_wire = FeatureRow {
            wire: Some(WireRow {
                vectors: 1,
                passed: 1,
                failed: 0,
                requests: (2, 2),
            }),
            ..partial.clone()
        };
        assert_eq!(
            on_the_wire.verdict(),
            "passes",
            "what engine mode cannot run passed on the wire"
        );
        let lacking = FeatureRow {
            wire: Some(WireRow {
                vectors: 1,
                passed: 0,
                failed: 1,
                requests: (1, 2),
            }),
            ..full
        };
        assert_eq!(
            lacking.verdict(),
            "passes (engine)",
            "the data plane fails a vector the engine passes"
        );
    }
}
