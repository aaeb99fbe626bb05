//! `gwcore check FILE|DIR...`

use std::path::PathBuf;
use std::process::ExitCode;

/// Arguments of `gwcore check`.
#[derive(clap::Args)]
pub(crate) struct Args {
    /// Manifest files or folders.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
}

pub(crate) fn run(args: Args) -> ExitCode {
    let loaded = gwcore_proxy::files::read_manifests(&args.paths);
    for d in &loaded.diagnostics {
        eprintln!("{d}");
    }
    if loaded.has_errors() { ExitCode::from(1) } else { ExitCode::SUCCESS }
}
