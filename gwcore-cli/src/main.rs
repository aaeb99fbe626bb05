//! The `gwcore` command: [`gwcore_cli::Cli`] with gwcore's own plug-ins.

use std::process::ExitCode;

/// The allocator of the `gwcore` binary. The engine and the proxy allocate
/// and free many small objects (keys, conditions, headers); glibc's malloc
/// spends much of a full compute consolidating freed chunks, mimalloc does
/// not (`benches/README.md`, engine figures with and without it).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    gwcore_cli::Cli::new()
        .with_plugins(gwcore_proxy::first_party::plugins())
        .run()
}
