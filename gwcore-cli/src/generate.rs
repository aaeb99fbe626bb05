//! `gwcore gen`: a large, realistic cluster as YAML, for benchmarks and load
//! tests (see `gwcore::scale`).

use std::io::Write;
use std::process::ExitCode;

use gwcore::scale::{ScaleSpec, generate};

/// Arguments of `gwcore gen`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Number of HTTPRoutes.
    #[arg(long, default_value_t = 10_000)]
    routes: usize,
    /// Number of team namespaces.
    #[arg(long, default_value_t = 1_000)]
    namespaces: usize,
    /// Number of Gateways.
    #[arg(long, default_value_t = 10)]
    gateways: usize,
    /// Number of distinct hostnames.
    #[arg(long, default_value_t = 1_000)]
    hostnames: usize,
    /// Seed of the pseudo-random choices; the same seed gives the same output.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The GatewayClass's controllerName.
    #[arg(long, default_value = "gwcore.dev/gateway-controller")]
    controller_name: String,
}

pub(crate) fn run(args: Args) -> ExitCode {
    let spec = ScaleSpec {
        routes: args.routes,
        namespaces: args.namespaces.max(1),
        gateways: args.gateways.max(1),
        hostnames: args.hostnames.max(1),
        seed: args.seed,
        controller_name: args.controller_name,
    };
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for o in generate(&spec) {
        let text = match serde_norway::to_string(&o.to_manifest()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", o.key());
                return ExitCode::from(2);
            }
        };
        if writeln!(out, "---\n{}", text.trim_end()).is_err() {
            return ExitCode::from(2);
        }
    }
    if out.flush().is_err() {
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}
