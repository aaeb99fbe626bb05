//! The `gwcore` command.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The allocator of the `gwcore` binary. The engine and the proxy allocate
/// and free many small objects (keys, conditions, headers); glibc's malloc
/// spends much of a full compute consolidating freed chunks, mimalloc does
/// not (`benches/README.md`, engine figures with and without it).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

mod check;
mod common;
mod controller;
mod explain;
mod generate;
mod serve;

/// Kubernetes Gateway API tooling: check manifests, explain routing, serve.
#[derive(Parser)]
#[command(name = "gwcore", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Load manifests, print diagnostics and the status of every object.
    Check(check::Args),
    /// Explain how one request to a Gateway is routed, and why.
    Explain(explain::Args),
    /// Print a large generated cluster (YAML) for benchmarks and load tests.
    #[command(name = "gen")]
    Generate(generate::Args),
    /// Serve Gateways from manifests (watched for changes): the data plane.
    Serve(serve::Args),
    /// Run the Kubernetes controller: watch the API server and write
    /// status (from the elected replica).
    Controller(controller::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check(args) => check::run(args),
        Command::Serve(args) => serve::run(args),
        Command::Controller(args) => controller::run(args),
        Command::Explain(args) => explain::run(args),
        Command::Generate(args) => generate::run(args),
    }
}
