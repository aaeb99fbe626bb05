//! `gwcore check FILE|DIR...`: validate manifests and show what the
//! controller would write, without a cluster.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use gwcore::Snapshot;
use gwcore::engine::Refusal;
use gwcore::extension::Extensions;
use gwcore::load::Loaded;
use gwcore::model::Kind;

use crate::common::{
    ControllerArgs, OutputFormat, api_versions, run_controllers, status_documents,
};

/// Arguments of `gwcore check`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Manifest files or folders (YAML or JSON; folders are read recursively).
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    controller: ControllerArgs,
    /// Output format of the statuses.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Yaml)]
    output: OutputFormat,
}

/// Runs `gwcore check`, reading and resolving the kinds `extensions`
/// register too.
pub(crate) fn run(args: Args, extensions: &Extensions) -> ExitCode {
    let loaded: Loaded = gwcore_proxy::files::read_manifests_extended(&args.paths, extensions);
    for d in &loaded.diagnostics {
        eprintln!("{d}");
    }
    let snapshot = Snapshot::from_objects(loaded.objects.iter().map(|(o, _)| o.clone()));
    let controllers = match args.controller.controllers(&snapshot) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if controllers.is_empty() {
        eprintln!(
            "note: no GatewayClass in the input, so no status is computed; \
             add the GatewayClasses and Gateways the routes attach to"
        );
    }
    let (computed, refusals) = run_controllers(
        &snapshot,
        &controllers,
        &gwcore_proxy::provider::now_rfc3339(),
        extensions,
    );
    let built_in = [
        Kind::GatewayClass,
        Kind::Gateway,
        Kind::ListenerSet,
        Kind::HttpRoute,
        Kind::GrpcRoute,
        Kind::TlsRoute,
        Kind::TcpRoute,
        Kind::UdpRoute,
        Kind::BackendTlsPolicy,
    ];
    // Then the registered policy kinds, whose `status.ancestors` the
    // engine computed.
    let kinds: Vec<Kind> = built_in
        .into_iter()
        .chain(extensions.policies().map(|p| Kind::Extension(p.kind())))
        .collect();
    let docs = status_documents(&computed, &kinds, &api_versions(&loaded));
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    match args.output {
        OutputFormat::Yaml => {
            for d in &docs {
                let text = serde_norway::to_string(d).unwrap_or_default();
                if writeln!(out, "---\n{}", text.trim_end()).is_err() {
                    return ExitCode::from(2);
                }
            }
        }
        OutputFormat::Json => {
            let mut list = serde_json::Map::new();
            list.insert("apiVersion".into(), "v1".into());
            list.insert("kind".into(), "List".into());
            list.insert("items".into(), serde_json::Value::Array(docs));
            if serde_json::to_writer_pretty(&mut out, &list).is_err() || writeln!(out).is_err() {
                return ExitCode::from(2);
            }
        }
    }
    if out.flush().is_err() {
        return ExitCode::from(2);
    }
    for r in &refusals {
        print_refusal(r);
    }
    if loaded.has_errors() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

fn print_refusal(r: &Refusal) {
    eprintln!("refused ({}): {}", r.reason, r.message);
}
