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
            let mut yaml = BlockYaml::default();
            for d in docs {
                out.write_all(b"---\n")?;
                if yaml.document(&d) {
                    out.write_all(&yaml.buf)?;
                } else {
                    serde_norway::to_writer(&mut *out, &d).map_err(std::io::Error::other)?;
                }
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

/// Writes a status document as block-style YAML, byte for byte as
/// `serde_norway` (libyaml's emitter) writes it, without going through
/// libyaml's event machinery, which was most of the time `gwcore check`
/// spent writing (a fifth of its whole run on 50 000 routes).
///
/// It writes what a status holds: mappings and sequences with content,
/// strings on one line, integers, booleans and null. A document holding
/// anything else (an empty collection, a float, a string over several
/// lines, a key that is not a plain word) is left to `serde_norway`
/// ([`BlockYaml::document`] says so). A string is written plain when it is
/// a word libyaml and `serde_norway` write plain ([`plain_word`]); any
/// other is written as `serde_norway` writes it on its own, remembered so
/// that a string repeated in many documents (a timestamp, a message) is
/// rendered once.
#[derive(Default)]
struct BlockYaml {
    /// The document written by the last [`BlockYaml::document`].
    buf: Vec<u8>,
    /// Strings that are not plain words, as `serde_norway` writes them.
    rendered: std::collections::HashMap<String, Box<str>>,
}

/// The most strings [`BlockYaml`] remembers (then it starts over), so that
/// an output of millions of distinct strings does not keep them all.
const RENDERED_CAPACITY: usize = 1 << 16;

impl BlockYaml {
    /// Writes `doc` (a mapping) into `self.buf`; false when it holds what
    /// only `serde_norway` writes (`self.buf` is then to be ignored).
    fn document(&mut self, doc: &serde_json::Value) -> bool {
        self.buf.clear();
        match doc {
            serde_json::Value::Object(map) if !map.is_empty() => self.mapping(map, 0, false),
            _ => false,
        }
    }

    /// A mapping whose keys are at column `indent`; `inline` when its first
    /// key goes right after a `- ` already written.
    fn mapping(
        &mut self,
        map: &serde_json::Map<String, serde_json::Value>,
        indent: usize,
        inline: bool,
    ) -> bool {
        for (i, (key, value)) in map.iter().enumerate() {
            if !plain_word(key) {
                return false;
            }
            if i > 0 || !inline {
                self.indent(indent);
            }
            self.buf.extend_from_slice(key.as_bytes());
            self.buf.push(b':');
            let ok = match value {
                serde_json::Value::Object(m) if !m.is_empty() => {
                    self.buf.push(b'\n');
                    self.mapping(m, indent + 2, false)
                }
                // A sequence in a mapping is written at the mapping's
                // column (libyaml's indentless sequence).
                serde_json::Value::Array(items) if !items.is_empty() => {
                    self.buf.push(b'\n');
                    self.sequence(items, indent)
                }
                scalar => {
                    self.buf.push(b' ');
                    self.scalar(scalar)
                }
            };
            if !ok {
                return false;
            }
        }
        true
    }

    /// A sequence whose `- ` are at column `indent`.
    fn sequence(&mut self, items: &[serde_json::Value], indent: usize) -> bool {
        for item in items {
            self.indent(indent);
            self.buf.extend_from_slice(b"- ");
            let ok = match item {
                serde_json::Value::Object(m) if !m.is_empty() => self.mapping(m, indent + 2, true),
                serde_json::Value::Array(_) | serde_json::Value::Object(_) => false,
                scalar => self.scalar(scalar),
            };
            if !ok {
                return false;
            }
        }
        true
    }

    fn indent(&mut self, indent: usize) {
        self.buf.resize(self.buf.len() + indent, b' ');
    }

    /// A scalar and its line's end.
    fn scalar(&mut self, v: &serde_json::Value) -> bool {
        match v {
            serde_json::Value::Null => self.buf.extend_from_slice(b"null"),
            serde_json::Value::Bool(b) => {
                self.buf
                    .extend_from_slice(if *b { b"true" } else { b"false" })
            }
            serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => {
                // serde_json writes integers as serde_norway does (itoa).
                self.buf.extend_from_slice(n.to_string().as_bytes());
            }
            serde_json::Value::String(s) if plain_word(s) => {
                self.buf.extend_from_slice(s.as_bytes())
            }
            serde_json::Value::String(s) => {
                if let Some(r) = self.rendered.get(s.as_str()) {
                    self.buf.extend_from_slice(r.as_bytes());
                } else {
                    // On its own, a string on one line is written on one
                    // line, as it is as a value in block style; one over
                    // several lines (a block scalar, `|-`, or a quoted
                    // string folded at a break) depends on the indentation
                    // and is left to serde_norway.
                    if s.contains(LINE_BREAKS) {
                        return false;
                    }
                    let Ok(r) = serde_norway::to_string(s) else {
                        return false;
                    };
                    let Some(r) = r.strip_suffix('\n').filter(|r| !r.contains('\n')) else {
                        return false;
                    };
                    if self.rendered.len() == RENDERED_CAPACITY {
                        self.rendered.clear();
                    }
                    self.buf.extend_from_slice(r.as_bytes());
                    self.rendered.insert(s.clone(), r.into());
                }
            }
            // Floats and empty collections.
            _ => return false,
        }
        self.buf.push(b'\n');
        true
    }
}

/// The characters libyaml takes for a line break.
const LINE_BREAKS: [char; 5] = ['\n', '\r', '\u{85}', '\u{2028}', '\u{2029}'];

/// Whether `s` is a word that `serde_norway` writes plain, as it is: an
/// ASCII letter, then letters, digits, `-`, `.`, `_` and `/` (nothing
/// libyaml takes for an indicator, a space or a break), other than the
/// words YAML reads as a boolean or null. A word starting with a letter is
/// never an integer, and the only floats Rust's parser reads from one
/// (`inf`, `nan`, `infinity`) are not finite, which serde_norway reads as
/// strings.
fn plain_word(s: &str) -> bool {
    let b = s.as_bytes();
    b.first().is_some_and(u8::is_ascii_alphabetic)
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'/'))
        && !matches!(
            s,
            "true" | "True" | "TRUE" | "false" | "False" | "FALSE" | "null" | "Null" | "NULL"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Strings that YAML writers treat differently: words, words YAML
    /// reads as other types, indicators at each place, spaces, quotes,
    /// breaks, non-ASCII and control characters.
    const STRINGS: &[&str] = &[
        "route-1",
        "gw-infra",
        "app-9.example.com",
        "gateway.networking.k8s.io/v1",
        "HTTPRoute",
        "True",
        "False",
        "true",
        "yes",
        "no",
        "on",
        "off",
        "y",
        "n",
        "null",
        "Null",
        "NULL",
        "~",
        "",
        " ",
        "inf",
        "nan",
        "infinity",
        ".inf",
        "-.inf",
        ".nan",
        "12",
        "0123",
        "-7",
        "+3",
        "1.5",
        "1e3",
        "e3",
        "0x1F",
        "0o17",
        "1_000",
        "a: b",
        "a:b",
        "a:",
        "key #c",
        "a#b",
        "#c",
        "-a",
        "- a",
        "-",
        "--",
        "---",
        "...",
        "?a",
        "? a",
        ":a",
        ",a",
        "a,b",
        "[a",
        "a]",
        "{a",
        "a}",
        "&a",
        "*a",
        "!a",
        "|a",
        ">a",
        "'a",
        "a'b",
        "\"a",
        "a\"b",
        "%a",
        "@a",
        "`a",
        " lead",
        "trail ",
        "in side",
        "tab\tin",
        "a\\b",
        "ünï",
        "日本",
        "\u{85}",
        "a\u{2028}b",
        "a\u{2029}b",
        "a\rb",
        "a\r\nb",
        "\u{1}",
        "\u{feff}x",
        "2026-12-07T20:50:02Z",
        "not allowed: namespace ns-1 lacks label a=true",
        "handled by gwcore.dev/gateway-controller",
        "two\nlines",
        "end\n",
        "a/b_c.d-e",
        "x/",
        "/x",
        "_x",
        ".x",
        "Infinity",
        "NaN",
        "nan.x",
        "a b: c",
    ];

    fn rendered_by_serde_norway(doc: &serde_json::Value) -> String {
        format!(
            "---\n{}",
            serde_norway::to_string(doc).expect("a Value serializes")
        )
    }

    fn rendered(doc: &serde_json::Value) -> Option<String> {
        let mut yaml = BlockYaml::default();
        // Twice: the second time from what the first remembered.
        let first = yaml.document(doc).then(|| yaml.buf.clone());
        let second = yaml.document(doc).then(|| yaml.buf.clone());
        assert_eq!(first, second);
        first.map(|b| format!("---\n{}", String::from_utf8(b).expect("UTF-8")))
    }

    /// Every string, as a value, an item and in a nested mapping, written
    /// as serde_norway writes it; strings on several lines are left to it.
    /// As a key, every plain word; any other key is left to serde_norway.
    #[test]
    fn writes_as_serde_norway_does() {
        for s in STRINGS {
            let doc = serde_json::json!({
                "apiVersion": "gateway.networking.k8s.io/v1",
                "kind": "HTTPRoute",
                "metadata": {"name": s, "namespace": "ns"},
                "status": {
                    "parents": [
                        {"conditions": [{"message": s, "observedGeneration": 3, "status": "True"}],
                         "parentRef": {"name": s, "port": 80}},
                        s,
                        {"deep": {"deeper": [s, true, null, -1, u64::MAX]}},
                    ],
                }
            });
            match rendered(&doc) {
                Some(ours) => assert_eq!(ours, rendered_by_serde_norway(&doc), "{s:?}"),
                None => assert!(s.contains(LINE_BREAKS), "{s:?} left to serde_norway"),
            }
            let key = serde_json::json!({"status": {"conditions": [{(*s): 1}]}});
            match rendered(&key) {
                Some(ours) => assert_eq!(ours, rendered_by_serde_norway(&key), "key {s:?}"),
                None => assert!(!plain_word(s), "key {s:?} left to serde_norway"),
            }
        }
    }

    #[test]
    fn leaves_empty_collections_and_floats_to_serde_norway() {
        for v in [
            serde_json::json!({"status": {"conditions": []}}),
            serde_json::json!({"status": {"x": {}}}),
            serde_json::json!({"status": {"w": 0.5}}),
            serde_json::json!({"status": [[1]]}),
            serde_json::json!({}),
        ] {
            assert_eq!(rendered(&v), None, "{v}");
        }
    }
}
