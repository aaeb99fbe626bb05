//! `gwcore check FILE|DIR...`: validate manifests and show what the
//! controller would write, without a cluster.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use gwcore::Snapshot;
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
    /// An address the Gateways will be served on, an IP address or a
    /// hostname (repeatable): a Gateway whose `spec.addresses` asks for
    /// another is `Programmed=False` (`AddressNotUsable`). Default: every
    /// address is usable, as `gwcore check` cannot know where the Gateways
    /// will be served.
    #[arg(long = "usable-address", value_name = "ADDR", value_parser = parse_address)]
    usable_addresses: Vec<String>,
}

/// An IP address or a hostname, as a Gateway's `spec.addresses` holds.
fn parse_address(s: &str) -> Result<String, String> {
    if s.parse::<std::net::IpAddr>().is_ok()
        || (gwcore::hostname::is_valid(s) && !gwcore::hostname::is_wildcard(s))
    {
        Ok(s.to_string())
    } else {
        Err(format!(
            "expected an IP address or a hostname, such as 192.0.2.1 or gw.example.com, got {s:?}"
        ))
    }
}

/// Runs `gwcore check`, reading and resolving the kinds `extensions`
/// register too.
pub(crate) fn run(args: Args, extensions: &Extensions) -> ExitCode {
    let loaded: Loaded = gwcore_proxy::files::read_manifests_extended(&args.paths, extensions);
    {
        let mut err = std::io::BufWriter::new(std::io::stderr().lock());
        for d in &loaded.diagnostics {
            // Nothing more to say if standard error is gone.
            let _ = writeln!(err, "{d}");
        }
        let _ = err.flush();
    }
    // What the output needs from the load, then the objects move into the
    // snapshot (no copy of them is kept).
    let versions = api_versions(&loaded);
    let has_errors = loaded.has_errors();
    let snapshot = Snapshot::from_objects(loaded.into_objects());
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
        snapshot,
        &controllers,
        &gwcore_proxy::provider::now_rfc3339(),
        extensions,
        (!args.usable_addresses.is_empty()).then_some(args.usable_addresses.as_slice()),
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
    // Each document is written as it is built: no list of them all. With
    // a second core, one thread builds the documents (in batches) while
    // this one writes them, in the same order.
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let parallel = std::thread::available_parallelism().is_ok_and(|n| n.get() > 1);
    let written = if parallel {
        std::thread::scope(|s| {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<serde_json::Value>>(4);
            let (computed, kinds, versions) = (&computed, &kinds, &versions);
            s.spawn(move || {
                let mut docs = status_documents(computed, kinds, versions);
                loop {
                    let batch: Vec<_> = docs.by_ref().take(BATCH).collect();
                    // The writer stopped (stdout closed): nothing more to build.
                    if batch.is_empty() || tx.send(batch).is_err() {
                        break;
                    }
                }
            });
            write_statuses(&mut out, args.output, rx.into_iter().flatten())
        })
    } else {
        write_statuses(
            &mut out,
            args.output,
            status_documents(&computed, &kinds, &versions),
        )
    };
    if written.and_then(|()| out.flush()).is_err() {
        return ExitCode::from(2);
    }
    drop(out);
    let mut err = std::io::BufWriter::new(std::io::stderr().lock());
    for r in &refusals {
        // Nothing more to say if standard error is gone.
        let _ = writeln!(err, "refused ({}): {}", r.reason, r.message);
    }
    let _ = err.flush();
    if has_errors {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// A `kind: List` whose items are serialized as the iterator yields them.
struct List<'i, I>(Items<'i, I>);

impl<I: Iterator<Item = serde_json::Value>> serde::Serialize for List<'_, I> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        // The keys in the order a map of them had them (sorted).
        let mut m = s.serialize_map(Some(3))?;
        m.serialize_entry("apiVersion", "v1")?;
        m.serialize_entry("items", &self.0)?;
        m.serialize_entry("kind", "List")?;
        m.end()
    }
}

/// The items of a [`List`].
struct Items<'i, I>(std::cell::RefCell<&'i mut I>);

impl<I: Iterator<Item = serde_json::Value>> serde::Serialize for Items<'_, I> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(&mut **self.0.borrow_mut())
    }
}

/// How many status documents are built at a time while the previous ones
/// are written.
const BATCH: usize = 256;

/// Writes the status documents `docs` to `out` as they come: YAML
/// documents one after another, or a JSON `kind: List`.
fn write_statuses(
    out: &mut impl Write,
    format: OutputFormat,
    mut docs: impl Iterator<Item = serde_json::Value>,
) -> std::io::Result<()> {
    match format {
        OutputFormat::Yaml => {
            for d in docs {
                out.write_all(b"---\n")?;
                serde_norway::to_writer(&mut *out, &d).map_err(std::io::Error::other)?;
            }
        }
        OutputFormat::Json => {
            let list = List(Items(std::cell::RefCell::new(&mut docs)));
            serde_json::to_writer_pretty(&mut *out, &list)?;
            writeln!(out)?;
        }
    }
    Ok(())
}
