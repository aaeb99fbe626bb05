//! # gwcore-cli — the `gwcore` command, as a library
//!
//! The `gwcore` binary (`check`, `explain`, `gen`, `serve`, `controller`)
//! is [`Cli`] run with gwcore's own plug-ins
//! ([`gwcore_proxy::first_party::plugins`]). An embedder who implements
//! filter or policy kinds ([`gwcore::extension`], [`gwcore_proxy::plugin`])
//! builds the same command with them, in a `main.rs` of three lines, and
//! every subcommand then reads and resolves their kinds:
//!
//! ```text
//!  Plugins ──Cli::with_plugins──▶ Cli::run (argv)
//!     │ extensions()                 ├─ check, explain: loader (load_str_extended) + engine (ComputeOptions::with_extensions)
//!     │                              ├─ serve FILES: Runtime (RuntimeOptions::plugins): loader, engine, plug-ins on requests
//!     └──────────────────────────────┴─ controller, serve --kubernetes: gwcore-k8s (Options::with_extensions) watches the kinds
//! ```
//!
//! Without a kind's extension, a route's `ExtensionRef` to it is
//! `ResolvedRefs=False` (`InvalidKind`) and objects of the kind are not
//! read (the loader warns); with it, they are resolved, and policies of a
//! registered kind get their `status.ancestors`.
//!
//! ```no_run
//! use std::process::ExitCode;
//!
//! use gwcore::extension::{ExtensionKind, FilterKind};
//! use gwcore_proxy::plugin::{BoxFuture, FilterPlugin, FilterRequest, Verdict};
//!
//! const DENY: ExtensionKind = ExtensionKind::new("example.com/v1", "Deny");
//!
//! /// Answers 403 to every request its routes send through it.
//! #[derive(Debug)]
//! struct Deny;
//!
//! impl FilterKind for Deny {
//!     fn kind(&self) -> ExtensionKind { DENY }
//! }
//!
//! impl FilterPlugin for Deny {
//!     fn kind(&self) -> ExtensionKind { DENY }
//!     fn on_request<'a>(&'a self, _req: FilterRequest<'a>) -> BoxFuture<'a, Verdict> {
//!         Box::pin(async {
//!             Verdict::Respond(gwcore_proxy::route::status_response(
//!                 http::StatusCode::FORBIDDEN,
//!                 "denied\n",
//!             ))
//!         })
//!     }
//! }
//!
//! fn main() -> ExitCode {
//!     // gwcore's own policy kinds, and ours.
//!     let plugins = gwcore_proxy::first_party::plugins().with_filter(Deny, Deny);
//!     gwcore_cli::Cli::new().with_plugins(plugins).run()
//! }
//! ```
//!
//! `gwcore-cli/examples/custom_binary.rs` is a complete one, with a filter
//! kind and a policy kind.
//!
//! The stock binary sets mimalloc as its global allocator; a library cannot
//! choose the allocator of your program, so set one in your `main.rs` if
//! you want it (see `gwcore-cli/src/main.rs`).

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use gwcore_proxy::plugin::Plugins;

mod check;
mod common;
mod controller;
mod explain;
mod generate;
mod serve;

/// The `gwcore` command, with the plug-ins it runs.
///
/// Build it with [`Cli::new`] and [`Cli::with_plugins`], then
/// [`Cli::run`] it on the process's arguments (or [`Cli::run_from`] on
/// your own).
#[derive(Debug, Clone, Default)]
pub struct Cli {
    plugins: Plugins,
}

impl Cli {
    /// The command with no plug-ins: only the built-in kinds of Gateway
    /// API. The stock `gwcore` binary adds gwcore's own
    /// ([`gwcore_proxy::first_party::plugins`]).
    pub fn new() -> Cli {
        Cli::default()
    }

    /// Runs with `plugins`: their extensions (filter, policy and backend
    /// kinds) are read by the loader, resolved by the engine and watched by
    /// the controller; their plug-ins act on requests in `gwcore serve`.
    /// Replaces the plug-ins set before; to keep gwcore's own policy kinds,
    /// start from [`gwcore_proxy::first_party::plugins`] and add yours to
    /// them. Default: none.
    pub fn with_plugins(mut self, plugins: Plugins) -> Cli {
        self.plugins = plugins;
        self
    }

    /// The plug-ins it runs with.
    pub fn plugins(&self) -> &Plugins {
        &self.plugins
    }

    /// Runs the command on the process's arguments
    /// ([`std::env::args_os`]), as `gwcore` does.
    pub fn run(self) -> ExitCode {
        self.run_from(std::env::args_os())
    }

    /// Runs the command on `args`, the first being the program's name (as
    /// in [`std::env::args_os`]). Bad arguments, `--help` and `--version`
    /// print what clap prints and return its exit status (2 for a usage
    /// error); the process is never exited from here.
    ///
    /// Exit statuses: 0 success; 1 invalid manifests (`check`) or a
    /// failure to start (`serve`, `controller`); 2 bad arguments or a
    /// controller name no GatewayClass has.
    pub fn run_from<I, T>(self, args: I) -> ExitCode
    where
        I: IntoIterator<Item = T>,
        T: Into<OsString> + Clone,
    {
        let parsed = match Args::try_parse_from(args) {
            Ok(a) => a,
            Err(e) => {
                // Help and version go to stdout, errors to stderr; a
                // closed stream leaves nothing to report to.
                let _ = e.print();
                return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
            }
        };
        match parsed.command {
            Command::Check(args) => check::run(args, self.plugins.extensions()),
            Command::Serve(args) => serve::run(args, self.plugins),
            Command::Controller(args) => controller::run(args, self.plugins.extensions().clone()),
            Command::Explain(args) => explain::run(args, self.plugins.extensions()),
            Command::Generate(args) => generate::run(args),
        }
    }
}

/// Kubernetes Gateway API tooling: check manifests, explain routing, serve.
#[derive(Parser)]
#[command(name = "gwcore", version, about)]
struct Args {
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
