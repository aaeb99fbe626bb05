//! `gwcore-conformance`: runs conformance vectors and prints one line per
//! vector, then the check and vector totals.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, ValueEnum};
use gwcore_conformance::{Mode, RunOptions, Verdict, run_paths};

/// Runs Gateway API conformance vectors (FORMAT.md) against gwcore.
#[derive(Parser)]
#[command(name = "gwcore-conformance", version, about)]
struct Cli {
    /// `engine`: gwcore's engine in a simulated cluster; `wire`: the same
    /// cluster served by gwcore-proxy on loopback, requests sent for real.
    #[arg(long, value_enum, default_value_t = CliMode::Engine)]
    mode: CliMode,
    /// Folder searched for manifests after the `manifests/` folder beside
    /// each vector's `vectors/` folder. Repeatable.
    #[arg(long = "manifests", value_name = "DIR")]
    manifests: Vec<PathBuf>,
    /// Also write the results, per vector and per check, as JSON.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// The controllerName gwcore acts as for upstream vectors.
    #[arg(long, default_value = gwcore_conformance::runner::DEFAULT_CONTROLLER_NAME)]
    controller_name: String,
    /// Vector files or folders.
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
enum CliMode {
    Engine,
    Wire,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let opts = RunOptions {
        mode: match cli.mode {
            CliMode::Engine => Mode::Engine,
            CliMode::Wire => Mode::Wire,
        },
        manifest_dirs: cli.manifests,
        controller_name: cli.controller_name,
    };
    let report = match run_paths(&cli.paths, &opts) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("gwcore-conformance: {e}");
            return ExitCode::from(2);
        }
    };
    for line in report.lines() {
        println!("{line}");
    }
    if let Some(path) = cli.json {
        let text = match serde_json::to_string_pretty(&report.to_json()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("gwcore-conformance: cannot serialize the report: {e}");
                return ExitCode::from(2);
            }
        };
        if let Err(e) = std::fs::write(&path, text + "\n") {
            eprintln!("gwcore-conformance: cannot write {}: {e}", path.display());
            return ExitCode::from(2);
        }
    }
    if report.count(Verdict::Fail) == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
