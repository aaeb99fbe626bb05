//! `feature-table`: runs conformance vectors in engine mode and in wire
//! mode and writes the feature table (`docs/features.md`) from the results.
//!
//! ```text
//! cargo run --release -p gwcore-conformance --bin feature-table -- \
//!     --out docs/features.md ../shared/conformance/vectors
//! ```
//!
//! With `--check`, the file is compared instead of written, and the command
//! fails when it is stale.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use gwcore_conformance::features::{add_wire, render, rows, vector_features};
use gwcore_conformance::{Mode, RunOptions, run_paths};

/// Writes the Gateway API feature table from a conformance run.
#[derive(Parser)]
#[command(name = "feature-table", version, about)]
struct Cli {
    /// Where the table goes; standard output when absent.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// Compare with `--out` instead of writing it; fail when it differs.
    #[arg(long, requires = "out")]
    check: bool,
    /// Vector files or folders (the public corpus: `../shared/conformance/vectors`).
    #[arg(required = true, value_name = "PATH")]
    paths: Vec<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let run = |mode| {
        let opts = RunOptions {
            mode,
            ..RunOptions::default()
        };
        run_paths(&cli.paths, &opts)
    };
    let (engine, wire) = match (run(Mode::Engine), run(Mode::Wire)) {
        (Ok(e), Ok(w)) => (e, w),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("feature-table: {e}");
            return ExitCode::from(2);
        }
    };
    let mut table_rows = rows(&engine, vector_features);
    add_wire(&mut table_rows, &wire, vector_features);
    let table = render(&table_rows);
    let Some(out) = cli.out else {
        print!("{table}");
        return ExitCode::SUCCESS;
    };
    if cli.check {
        let current = std::fs::read_to_string(&out).unwrap_or_default();
        if current == table {
            return ExitCode::SUCCESS;
        }
        eprintln!(
            "feature-table: {} is stale; regenerate it without --check",
            out.display()
        );
        return ExitCode::FAILURE;
    }
    if let Err(e) = std::fs::write(&out, table) {
        eprintln!("feature-table: cannot write {}: {e}", out.display());
        return ExitCode::from(2);
    }
    ExitCode::SUCCESS
}
