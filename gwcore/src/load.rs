//! Reading manifests: YAML (multi-document) or JSON, `kind: List`.
//!
//! Loading never fails as a whole. Each document is parsed on its own, so a
//! truncated or malformed document costs only itself; every problem becomes a
//! [`Diagnostic`] naming the source, the document index (0-based), the line
//! (of the field itself when the source text shows where it is written, see
//! [`Diagnostic::line`]), the object and the field path.
//!
//! YAML is read with `serde_norway`, a maintained fork of the deprecated
//! `serde_yaml` (same data model, libyaml-based). On the 33 MB file of
//! 50 000 routes it reads as fast as `serde_yaml_ng` (the same libyaml
//! port) and in half the time of `serde-saphyr`. The documents of a large
//! YAML source are parsed on several threads ([`Limits::max_threads`]),
//! with the same result. What one source may make the loader do is
//! bounded by [`Limits`]: its size, its number of documents, each
//! document's nesting depth and alias expansion, each checked in time
//! linear in the text before and while it is parsed.

use serde::Serialize;

use crate::extension::Extensions;
use crate::model::{Kind, Object, ObjectKey};
use crate::validate;

mod budget;
pub mod documents;
mod locate;
mod typed;

use budget::{Budget, ValueSeed};
use locate::{Locator, Syntax};
use serde::de::DeserializeSeed;

/// How bad a diagnostic is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The object (or document) was left out.
    Error,
    /// Something was skipped or defaulted; the rest was read.
    Warning,
}

/// A problem found while loading or validating.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Diagnostic {
    /// Error or warning.
    pub severity: Severity,
    /// The file (or other source) name.
    pub source: String,
    /// 0-based index of the document within the source.
    pub document: usize,
    /// 1-based line, when known: for a diagnostic on a field, the line
    /// where the field is written (its key, or its `- ` item), found by
    /// walking block-style YAML or JSON text along the field path; where
    /// the path cannot be followed (flow style `{...}`/`[...]`, aliases, a
    /// missing field), the deepest line found along it, else the line the
    /// document starts on. For a syntax error, where the parser stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// The object, when known (`HTTPRoute ns/name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub object: Option<String>,
    /// The field path (`spec.listeners[1].hostname`), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// What is wrong and what was expected.
    pub message: String,
}

impl std::fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{sev}: {}", self.source)?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, " (document {})", self.document)?;
        if let Some(obj) = &self.object {
            write!(f, " {obj}")?;
        }
        if let Some(field) = &self.field {
            write!(f, " field {field}")?;
        }
        write!(f, ": {}", self.message)
    }
}

/// Where an object was read from.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Origin {
    /// The source name.
    pub source: String,
    /// 0-based document index.
    pub document: usize,
    /// 1-based line of the document's start.
    pub line: usize,
    /// The `apiVersion` the object was written with (a kind may be served
    /// at several, e.g. TLSRoute at `v1alpha2`, `v1alpha3` and `v1`).
    pub api_version: String,
}

/// The result of loading one or more sources.
#[derive(Debug, Clone, Default)]
pub struct Loaded {
    /// Valid objects (defaults applied), in reading order.
    pub objects: Vec<(Object, Origin)>,
    /// Everything that went wrong.
    pub diagnostics: Vec<Diagnostic>,
}

impl Loaded {
    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    /// The objects, without where they came from.
    pub fn into_objects(self) -> impl Iterator<Item = Object> {
        self.objects.into_iter().map(|(o, _)| o)
    }

    /// A snapshot of the objects (later objects with the same key win).
    pub fn to_snapshot(&self) -> crate::Snapshot {
        crate::Snapshot::from_objects(self.objects.iter().map(|(o, _)| o.clone()))
    }

    /// Appends another load result. Appended to an empty one with no room
    /// reserved, its objects are taken as they are, not copied (a copy of
    /// every object of a large source, written to fresh pages).
    pub fn extend(&mut self, other: Loaded) {
        if self.objects.is_empty() && self.objects.capacity() < other.objects.len() {
            self.objects = other.objects;
        } else {
            self.objects.extend(other.objects);
        }
        self.diagnostics.extend(other.diagnostics);
    }
}

/// Budgets on what one source may hold and make the loader do.
///
/// Each is checked in time linear in the source's text, before the
/// document is parsed (a scan of its text) and while it is (a count of
/// what the parser yields), so a hostile file costs no more than its size
/// to refuse; going over one is an error [`Diagnostic`] naming the source,
/// the document and the budget, and nothing is read from that document (or,
/// for the size, from the source). docs/limits.md lists them. The defaults
/// are far above what Kubernetes manifests need: the deepest Gateway API
/// object nests about a dozen collections, a CRD's schema about 25.
///
/// ```
/// use gwcore::load::{Limits, load_str_with};
///
/// let limits = Limits::default().with_max_depth(8);
/// let deep = format!("{}{}", "[".repeat(9), "]".repeat(9));
/// let loaded = load_str_with("deep.yaml", &deep, limits);
/// assert!(loaded.diagnostics[0].message.starts_with("nesting deeper than 8 levels"));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest accepted source, in bytes. Default 64 MiB.
    pub max_source_bytes: usize,
    /// Largest number of documents, and of objects (`List` items count
    /// one each), in one source; documents past it are not parsed.
    /// Default 1 000 000.
    pub max_documents: usize,
    /// Deepest nesting of collections (block and flow sequences and
    /// mappings) in one document. Default 100. The YAML and JSON parsers
    /// stop at 128 levels on their own, so a larger value reads no deeper.
    pub max_depth: usize,
    /// Most nodes the aliases (`*name`) of one document may stand for, in
    /// total: each alias counts the nodes of the anchored node it names,
    /// aliases within that included. Default 100 000.
    pub max_alias_expansion: usize,
    /// Most threads one YAML source's documents are parsed on at once;
    /// 0 stands for the machine's parallelism
    /// ([`std::thread::available_parallelism`]). A source is split into
    /// runs of consecutive documents, at least [`MIN_DOCUMENTS_PER_THREAD`]
    /// to a run, and what they hold comes out in the source's order: the
    /// result is the same for any number of threads. JSON sources are read
    /// on one. Default 0.
    pub max_threads: usize,
}

/// The fewest documents a thread is given to parse (see
/// [`Limits::max_threads`]): below it a thread costs more than it saves.
pub const MIN_DOCUMENTS_PER_THREAD: usize = 256;

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_source_bytes: 64 << 20,
            max_documents: 1_000_000,
            max_depth: 100,
            max_alias_expansion: 100_000,
            max_threads: 0,
        }
    }
}

impl Limits {
    /// The default limits (as [`Limits::default`]).
    pub fn new() -> Limits {
        Limits::default()
    }

    /// Sets [`Limits::max_source_bytes`].
    pub fn with_max_source_bytes(mut self, bytes: usize) -> Limits {
        self.max_source_bytes = bytes;
        self
    }

    /// Sets [`Limits::max_documents`].
    pub fn with_max_documents(mut self, documents: usize) -> Limits {
        self.max_documents = documents;
        self
    }

    /// Sets [`Limits::max_depth`].
    pub fn with_max_depth(mut self, depth: usize) -> Limits {
        self.max_depth = depth;
        self
    }

    /// Sets [`Limits::max_alias_expansion`].
    pub fn with_max_alias_expansion(mut self, nodes: usize) -> Limits {
        self.max_alias_expansion = nodes;
        self
    }

    /// Sets [`Limits::max_threads`] (0: the machine's parallelism).
    pub fn with_max_threads(mut self, threads: usize) -> Limits {
        self.max_threads = threads;
        self
    }

    /// How many threads `documents` documents are parsed on.
    fn threads_for(&self, documents: usize) -> usize {
        let most = match self.max_threads {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            n => n,
        };
        most.min(documents / MIN_DOCUMENTS_PER_THREAD).max(1)
    }
}

/// Loads every object in `text` (YAML or JSON), with default limits.
pub fn load_str(source: &str, text: &str) -> Loaded {
    load_str_with(source, text, Limits::default())
}

/// Loads every object in `text` (YAML or JSON).
pub fn load_str_with(source: &str, text: &str, limits: Limits) -> Loaded {
    load_str_extended(source, text, limits, &Extensions::default())
}

/// Loads every object in `text` (YAML or JSON), objects of the kinds that
/// `extensions` register included (any version of their group; each read
/// as an [`crate::extension::ExtensionObject`], the extension parses its
/// spec).
pub fn load_str_extended(
    source: &str,
    text: &str,
    limits: Limits,
    extensions: &Extensions,
) -> Loaded {
    // Every source a test of this crate loads is read both ways.
    if cfg!(test) {
        return load_both_ways(source, text, limits, extensions);
    }
    load_str_by(source, text, limits, extensions, Path::Typed)
}

/// [`load_str_extended`], reading the YAML documents by both paths (see
/// `typed`); panics when they read apart. The unit tests of this crate and
/// the `manifests` fuzz target load by it.
pub(crate) fn load_both_ways(
    source: &str,
    text: &str,
    limits: Limits,
    extensions: &Extensions,
) -> Loaded {
    let loaded = load_str_by(source, text, limits, extensions, Path::Typed);
    let reference = load_str_by(source, text, limits, extensions, Path::Value);
    assert_eq!(loaded.objects, reference.objects, "objects of {source}");
    assert_eq!(
        loaded.diagnostics, reference.diagnostics,
        "diagnostics of {source}"
    );
    loaded
}

/// How YAML documents of built-in kinds are read (see `typed`): the
/// result is the same, the loader's tests check both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Path {
    /// Into the kind's type directly, by the value where that cannot vouch
    /// for the result.
    Typed,
    /// Always by a `serde_json::Value` (the reference).
    Value,
}

/// [`load_str_extended`], reading YAML documents by `path`.
fn load_str_by(
    source: &str,
    text: &str,
    limits: Limits,
    extensions: &Extensions,
    path: Path,
) -> Loaded {
    let mut out = Loaded::default();
    if text.len() > limits.max_source_bytes {
        out.diagnostics.push(Diagnostic {
            severity: Severity::Error,
            source: source.to_string(),
            document: 0,
            line: None,
            object: None,
            field: None,
            message: format!(
                "source is {} bytes, larger than the limit of {} bytes; nothing read from it",
                text.len(),
                limits.max_source_bytes
            ),
        });
        return out;
    }
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    if trimmed.starts_with('{') || trimmed.starts_with('[') {
        load_json(source, text, &limits, extensions, &mut out);
    } else {
        load_yaml(source, text, &limits, extensions, path, &mut out);
    }
    if out.objects.len() > limits.max_documents {
        out.objects.truncate(limits.max_documents);
        out.diagnostics.push(Diagnostic {
            severity: Severity::Error,
            source: source.to_string(),
            document: limits.max_documents,
            line: None,
            object: None,
            field: None,
            message: format!(
                "more than {} objects in one source (limit max_documents); the rest were left out",
                limits.max_documents
            ),
        });
    }
    out
}

/// An error diagnostic on document `document` of `source` over a budget.
fn over_budget(
    source: &str,
    document: usize,
    line: usize,
    object: Option<String>,
    crossed: &budget::Crossed,
) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        source: source.to_string(),
        document,
        line: Some(line),
        object,
        field: None,
        message: crossed.to_string(),
    }
}

/// The diagnostic for the documents past [`Limits::max_documents`].
fn too_many_documents(source: &str, limits: &Limits, line: usize) -> Diagnostic {
    Diagnostic {
        severity: Severity::Error,
        source: source.to_string(),
        document: limits.max_documents,
        line: Some(line),
        object: None,
        field: None,
        message: format!(
            "more than {} documents (limit max_documents); the rest were not read",
            limits.max_documents
        ),
    }
}

fn load_json(source: &str, text: &str, limits: &Limits, ext: &Extensions, out: &mut Loaded) {
    // JSON nests only by brackets: serde_json is linear and stops at 128
    // levels itself, the scan holds each document to the budget.
    let mut too_deep = budget::scan_json(text, limits).into_iter().peekable();
    let line_of = |offset: usize| 1 + text[..offset].matches('\n').count();
    let mut stream = serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>();
    // Where the previous document ended, and the line of that offset.
    let (mut end, mut end_line) = (0usize, 1usize);
    for doc in 0.. {
        if doc == limits.max_documents {
            let rest = &text[end..];
            if !rest.trim_start().is_empty() {
                let blank = rest.len() - rest.trim_start().len();
                out.diagnostics
                    .push(too_many_documents(source, limits, line_of(end + blank)));
            }
            break;
        }
        let Some(value) = stream.next() else { break };
        if let Some(over) = too_deep.next_if(|(d, _)| *d == doc).map(|(_, o)| o) {
            let line = line_of(over.offset);
            out.diagnostics
                .push(over_budget(source, doc, line, None, &over.crossed));
            if value.is_err() {
                return;
            }
            end_line = 1 + text[..stream.byte_offset()].matches('\n').count();
            end = stream.byte_offset();
            continue;
        }
        match value {
            Ok(v) => {
                let read = &text[end..stream.byte_offset()];
                let blank = read.len() - read.trim_start().len();
                let start = end + blank;
                let line = end_line + read[..blank].matches('\n').count();
                end_line = line + text[start..stream.byte_offset()].matches('\n').count();
                end = stream.byte_offset();
                let at = Locator::new(&text[start..end], line, Syntax::Json);
                read_value(source, doc, &at, "", v, ext, out);
            }
            Err(e) => {
                out.diagnostics.push(Diagnostic {
                    severity: Severity::Error,
                    source: source.to_string(),
                    document: doc,
                    line: Some(e.line()),
                    object: None,
                    field: None,
                    message: format!("invalid JSON: {e}"),
                });
                return;
            }
        }
    }
}

/// Splits a YAML stream at document markers (`---` at column 0), giving
/// each document's text and its 1-based starting line, one at a time (a
/// stream of a million empty documents costs no memory). Splitting by hand
/// keeps one broken document from hiding those after it.
fn split_yaml(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut start = 0usize;
    let mut start_line = 1usize;
    let mut offset = 0usize;
    let mut lines = text.split_inclusive('\n').enumerate();
    let mut done = false;
    std::iter::from_fn(move || {
        for (i, line) in lines.by_ref() {
            let content = line.trim_end_matches(['\n', '\r']);
            let is_marker = content == "---"
                || content.starts_with("--- ")
                || content.starts_with("---\t")
                || content == "...";
            let at = offset;
            offset += line.len();
            if is_marker {
                let doc = (start_line, &text[start..at]);
                // A `--- value` line starts a document whose content is on that line.
                if content.len() > 3 && content.starts_with("---") {
                    start = at + 3;
                    start_line = i + 1;
                } else {
                    start = at + line.len();
                    start_line = i + 2;
                }
                return Some(doc);
            }
        }
        if done {
            return None;
        }
        done = true;
        Some((start_line, &text[start..]))
    })
}

fn is_blank_yaml(doc: &str) -> bool {
    doc.lines().all(|l| {
        let t = l.trim();
        t.is_empty() || t.starts_with('#') || t.starts_with('%')
    })
}

fn load_yaml(
    source: &str,
    text: &str,
    limits: &Limits,
    ext: &Extensions,
    path: Path,
    out: &mut Loaded,
) {
    // Splitting is a cheap pass over the text; parsing is what is shared
    // out among threads.
    let mut docs: Vec<(usize, &str)> = Vec::new();
    let mut past_budget = None;
    for (line, doc) in split_yaml(text) {
        if is_blank_yaml(doc) {
            continue;
        }
        if docs.len() == limits.max_documents {
            past_budget = Some(line);
            break;
        }
        docs.push((line, doc));
    }
    let threads = limits.threads_for(docs.len());
    if threads == 1 {
        out.objects.reserve(objects_expected(&docs));
        for (i, &(line, doc)) in docs.iter().enumerate() {
            load_yaml_document(source, i, (line, doc), limits, ext, path, out);
        }
    } else {
        // Runs of consecutive documents, one a thread, joined in order.
        let run = docs.len().div_ceil(threads);
        let parts: Vec<Loaded> = std::thread::scope(|s| {
            let handles: Vec<_> = docs
                .chunks(run)
                .enumerate()
                .map(|(r, part)| {
                    s.spawn(move || {
                        let mut loaded = Loaded::default();
                        loaded.objects.reserve(objects_expected(part));
                        for (j, &(line, doc)) in part.iter().enumerate() {
                            load_yaml_document(
                                source,
                                r * run + j,
                                (line, doc),
                                limits,
                                ext,
                                path,
                                &mut loaded,
                            );
                        }
                        loaded
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
                })
                .collect()
        });
        out.objects
            .reserve(parts.iter().map(|p| p.objects.len()).sum());
        for part in parts {
            out.extend(part);
        }
    }
    if let Some(line) = past_budget {
        out.diagnostics
            .push(too_many_documents(source, limits, line));
    }
}

/// How many objects the YAML documents `docs` (line, text) are expected
/// to hold, to allocate room for them once instead of growing a vector of
/// large elements by doubling: one a document, but no more than one per
/// 40 bytes (about the smallest object, `{apiVersion: v1, kind:
/// Namespace, metadata: {name: a}}`), so that many tiny documents do not
/// reserve more than their text can hold; `List`s with more items grow the
/// vector as usual.
fn objects_expected(docs: &[(usize, &str)]) -> usize {
    let bytes: usize = docs.iter().map(|(_, d)| d.len()).sum();
    docs.len().min(bytes / 40)
}

/// Loads document `doc_index` of `source`, `doc`, which starts on line
/// `line`.
fn load_yaml_document(
    source: &str,
    doc_index: usize,
    (line, doc): (usize, &str),
    limits: &Limits,
    ext: &Extensions,
    path: Path,
    out: &mut Loaded,
) {
    // Before parsing: a scan of the text, linear in it.
    if let Err(over) = budget::scan_yaml(doc, limits) {
        let at = line + doc[..over.offset].matches('\n').count();
        let label = budget::label(doc);
        out.diagnostics
            .push(over_budget(source, doc_index, at, label, &over.crossed));
        return;
    }
    // While parsing: the value built is counted.
    let crossed = std::cell::Cell::new(None);
    let values_left = std::cell::Cell::new(ValueSeed::values_budget(doc.len(), limits));
    let seed = ValueSeed {
        max_depth: limits.max_depth,
        values_left: &values_left,
        depth: 0,
        crossed: &crossed,
    };
    if path == Path::Typed
        && let Some(t) = typed::read(doc, limits, ext)
    {
        let at = Locator::new(doc, line, Syntax::Yaml);
        accept(
            source,
            doc_index,
            &at,
            "",
            t.kind,
            t.object,
            t.api_version,
            out,
        );
        return;
    }
    match seed.deserialize(serde_norway::Deserializer::from_str(doc)) {
        Ok(v) => {
            let at = Locator::new(doc, line, Syntax::Yaml);
            read_value(source, doc_index, &at, "", v, ext, out);
        }
        Err(e) => {
            let at = e.location().map(|l| line + l.line().saturating_sub(1));
            if let Some(which) = crossed.get() {
                let crossed = match which {
                    Budget::Depth => budget::Crossed::Depth(limits.max_depth),
                    Budget::Values => {
                        budget::Crossed::Values(ValueSeed::values_budget(doc.len(), limits) as usize)
                    }
                };
                let label = budget::label(doc);
                let at = at.unwrap_or(line);
                out.diagnostics
                    .push(over_budget(source, doc_index, at, label, &crossed));
                return;
            }
            out.diagnostics.push(Diagnostic {
                severity: Severity::Error,
                source: source.to_string(),
                document: doc_index,
                line: at.or(Some(line)),
                object: None,
                field: None,
                message: format!("invalid YAML: {e}"),
            });
        }
    }
}

/// Reads one object (or the items of a `List`) of document `doc`, whose
/// text `at` locates fields in; `prefix` is the path of the value within
/// the document (`items[3].` for an item of a `List`).
fn read_value(
    source: &str,
    doc: usize,
    at: &Locator<'_>,
    prefix: &str,
    v: serde_json::Value,
    ext: &Extensions,
    out: &mut Loaded,
) {
    let diag =
        |severity, object: Option<String>, field: Option<String>, message: String| Diagnostic {
            severity,
            source: source.to_string(),
            document: doc,
            line: Some(at.line(&format!("{prefix}{}", field.as_deref().unwrap_or("")))),
            object,
            field,
            message,
        };
    if v.is_null() {
        return;
    }
    let serde_json::Value::Object(map) = &v else {
        out.diagnostics.push(diag(
            Severity::Error,
            None,
            None,
            "expected a Kubernetes object (a mapping with apiVersion and kind)".into(),
        ));
        return;
    };
    let kind_str = map.get("kind").and_then(|k| k.as_str()).unwrap_or("");
    let api_version = map.get("apiVersion").and_then(|k| k.as_str()).unwrap_or("");
    if kind_str == "List" || (kind_str.ends_with("List") && map.contains_key("items")) {
        match map.get("items") {
            Some(serde_json::Value::Array(items)) => {
                for (i, item) in items.iter().enumerate() {
                    let prefix = format!("{prefix}items[{i}].");
                    read_value(source, doc, at, &prefix, item.clone(), ext, out);
                }
            }
            Some(serde_json::Value::Null) | None => {}
            Some(_) => out.diagnostics.push(diag(
                Severity::Error,
                None,
                Some("items".into()),
                "expected a list of objects".into(),
            )),
        }
        return;
    }
    let name = map
        .get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(|n| n.as_str())
        .unwrap_or("");
    let ns = map
        .get("metadata")
        .and_then(|m| m.get("namespace"))
        .and_then(|n| n.as_str())
        .unwrap_or("");
    let label = if ns.is_empty() {
        format!("{kind_str} {name}")
    } else {
        format!("{kind_str} {ns}/{name}")
    };
    if kind_str.is_empty() || api_version.is_empty() {
        out.diagnostics.push(diag(
            Severity::Error,
            Some(label),
            Some(
                if kind_str.is_empty() {
                    "kind"
                } else {
                    "apiVersion"
                }
                .into(),
            ),
            "missing; every object needs apiVersion and kind".into(),
        ));
        return;
    }
    let group = api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let registered = ext.kind(group, kind_str).map(Kind::Extension);
    let Some(kind) = registered.or_else(|| Kind::parse(kind_str)) else {
        out.diagnostics.push(diag(
            Severity::Warning,
            Some(label),
            Some("kind".into()),
            format!("kind {kind_str} ({api_version}) is not read by gwcore; skipped"),
        ));
        return;
    };
    if !kind.reads(kind_str, api_version) {
        out.diagnostics.push(diag(
            Severity::Warning,
            Some(label),
            Some("apiVersion".into()),
            format!("{kind_str} is not served as {api_version}; skipped"),
        ));
        return;
    }
    let api_version = api_version.to_owned();
    let obj = match Object::from_value(kind, v) {
        Ok(o) => o,
        Err(e) => {
            let path = e.path().to_string();
            out.diagnostics.push(diag(
                Severity::Error,
                Some(label),
                Some(path),
                e.into_inner().to_string(),
            ));
            return;
        }
    };
    accept(source, doc, at, prefix, kind, obj, api_version, out);
}

/// Takes an object read from document `doc` (at `prefix` in it): the
/// namespace defaulted, validated as served at `api_version`, then kept,
/// or its errors given as diagnostics on the lines `at` finds.
#[allow(clippy::too_many_arguments)]
fn accept(
    source: &str,
    doc: usize,
    at: &Locator<'_>,
    prefix: &str,
    kind: Kind,
    mut obj: Object,
    api_version: String,
    out: &mut Loaded,
) {
    if kind.is_namespaced() && obj.meta().namespace.as_deref().unwrap_or("").is_empty() {
        // kubectl applies namespaced objects without a namespace to `default`.
        obj.meta_mut().namespace = Some("default".to_string());
    }
    let errors = validate::validate_served_as(&mut obj, &api_version);
    if errors.is_empty() {
        out.objects.push((
            obj,
            Origin {
                source: source.to_string(),
                document: doc,
                line: at.first_line(),
                api_version,
            },
        ));
    } else {
        let key: ObjectKey = obj.key();
        for e in errors {
            out.diagnostics.push(Diagnostic {
                severity: Severity::Error,
                source: source.to_string(),
                document: doc,
                line: Some(at.line(&format!("{prefix}{}", e.field))),
                object: Some(key.to_string()),
                field: Some(e.field),
                message: e.message,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_line_numbers() {
        let docs: Vec<_> = split_yaml("a: 1\n---\nb: 2\nc: 3\n---\nd: 4\n").collect();
        let lines: Vec<usize> = docs.iter().map(|d| d.0).collect();
        assert_eq!(lines, vec![1, 3, 6]);
    }

    #[test]
    fn broken_document_does_not_hide_the_next() {
        let text = "apiVersion: v1\nkind: Namespace\nmetadata: {name: a\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: b}\n";
        let l = load_str("x.yaml", text);
        assert_eq!(l.objects.len(), 1);
        assert_eq!(l.objects[0].0.meta().name, "b");
        assert_eq!(l.diagnostics.len(), 1);
        assert_eq!(l.diagnostics[0].document, 0);
        assert_eq!(l.diagnostics[0].severity, Severity::Error);
    }

    #[test]
    fn wrong_type_names_the_field() {
        let text = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g, namespace: n}\nspec:\n  gatewayClassName: c\n  listeners:\n  - name: a\n    port: eighty\n    protocol: HTTP\n";
        let l = load_str("g.yaml", text);
        assert!(l.objects.is_empty());
        let d = &l.diagnostics[0];
        assert_eq!(d.field.as_deref(), Some("spec.listeners[0].port"));
        assert_eq!(d.object.as_deref(), Some("Gateway n/g"));
        assert_eq!(d.line, Some(8), "the line of `port: eighty`: {d}");
    }

    /// The README's example: the second document starts on line 12, the
    /// duplicate name is on line 23.
    #[test]
    fn validation_error_gives_the_line_of_the_field() {
        let first = "# The namespace.\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: infra\n  labels:\n    # who may attach\n    shop: \"true\"\n\n\n---\n";
        let second = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: gw\n  namespace: infra\nspec:\n  gatewayClassName: gwcore\n  listeners:\n  - name: web\n    port: 80\n    protocol: HTTP\n  - name: web # again\n    port: 8080\n    protocol: HTTP\n";
        let l = load_str("bad.yaml", &format!("{first}{second}"));
        assert_eq!(l.objects.len(), 1);
        let d = &l.diagnostics[0];
        assert_eq!(d.field.as_deref(), Some("spec.listeners[1].name"));
        assert_eq!(
            d.to_string(),
            "error: bad.yaml:23 (document 1) Gateway infra/gw field spec.listeners[1].name: duplicate listener name \"web\"; names must be unique"
        );
        // The object's origin is still the document's first line.
        assert_eq!(l.objects[0].1.line, 1);
    }

    #[test]
    fn json_documents_and_list_items_give_field_lines() {
        let text = "{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"a\"}}\n\n{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"List\",\n  \"items\": [\n    {\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {\"name\": \"b\"}},\n    {\n      \"apiVersion\": \"gateway.networking.k8s.io/v1\",\n      \"kind\": \"Gateway\",\n      \"metadata\": {\"name\": \"g\", \"namespace\": \"n\"},\n      \"spec\": {\n        \"gatewayClassName\": \"c\",\n        \"listeners\": [{\"name\": \"a\", \"protocol\": \"HTTP\",\n          \"port\": \"eighty\"}]\n      }\n    }\n  ]\n}\n";
        let l = load_str("s.json", text);
        assert_eq!(l.objects.len(), 2);
        assert_eq!(l.objects[1].1.line, 3, "the second JSON document's line");
        let d = &l.diagnostics[0];
        assert_eq!(d.field.as_deref(), Some("spec.listeners[0].port"));
        assert_eq!((d.document, d.line), (1, Some(15)), "{d}");

        let yaml = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Namespace\n  metadata: {name: a}\n- apiVersion: gateway.networking.k8s.io/v1\n  kind: HTTPRoute\n  metadata: {name: r, namespace: n}\n  spec:\n    hostnames:\n    - ok.example.com\n    - bad_host\n- 42\n";
        let l = load_str("list.yaml", yaml);
        let lines: Vec<_> = l
            .diagnostics
            .iter()
            .map(|d| (d.field.clone(), d.line))
            .collect();
        assert_eq!(
            lines,
            vec![
                (Some("spec.hostnames[1]".into()), Some(13)),
                (None, Some(14))
            ]
        );
    }

    #[test]
    fn list_and_json_are_read() {
        let text = r#"{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"a"}},{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"b"}}]}"#;
        let l = load_str("l.json", text);
        assert_eq!(l.objects.len(), 2);
        assert!(l.diagnostics.is_empty());
    }

    /// The issue's input: 200 000 nested `[` (400 KB) took libyaml over
    /// 100 s to refuse. The scan refuses it before the parser sees it
    /// (benches/benches/load_depth.rs shows the time).
    #[test]
    fn a_200_000_deep_document_is_refused_before_parsing() {
        let deep = "[".repeat(200_000);
        let l = load_str("deep.yaml", &format!("spec: {deep}"));
        assert_eq!(
            l.diagnostics
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            vec![
                "error: deep.yaml:1 (document 0): nesting deeper than 100 levels (limit max_depth); nothing read from this document"
            ]
        );
        // In a manifest among others: the others are read, the diagnostic
        // names the document, its object and the line.
        let text = format!(
            "apiVersion: v1\nkind: Namespace\nmetadata: {{name: a}}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: r\n  namespace: a\nspec:\n  hostnames: {deep}\n"
        );
        let l = load_str("acme.yaml", &text);
        assert_eq!(l.objects.len(), 1);
        assert_eq!(
            l.diagnostics[0].to_string(),
            "error: acme.yaml:11 (document 1) HTTPRoute a/r: nesting deeper than 100 levels (limit max_depth); nothing read from this document"
        );
        // Block style too, and JSON.
        let mut block = String::new();
        for i in 0..2_000 {
            block.push_str(&format!("{}- k{i}:\n", " ".repeat(2 * i)));
        }
        let l = load_str("block.yaml", &block);
        assert_eq!(l.diagnostics[0].line, Some(51), "{}", l.diagnostics[0]);
        let json = format!("{}\n{deep}", ns_json("a"));
        let l = load_str("deep.json", &json);
        assert_eq!(
            l.diagnostics[0].to_string(),
            "error: deep.json:2 (document 1): nesting deeper than 100 levels (limit max_depth); nothing read from this document"
        );
    }

    #[test]
    fn depth_within_the_budget_is_read() {
        let ns =
            "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: a\n  annotations:\n    x: y\n";
        // metadata.annotations: three levels.
        assert!(
            load_str_with("n.yaml", ns, Limits::default().with_max_depth(3))
                .diagnostics
                .is_empty()
        );
        let l = load_str_with("n.yaml", ns, Limits::default().with_max_depth(2));
        assert!(l.objects.is_empty());
        assert_eq!(
            l.diagnostics[0].to_string(),
            "error: n.yaml:6 (document 0) Namespace a: nesting deeper than 2 levels (limit max_depth); nothing read from this document"
        );
    }

    #[test]
    fn documents_past_the_budget_are_not_read() {
        let ns = |n: &str| format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {n}}}\n");
        let text = format!("{}---\n---\n{}---\n{}", ns("a"), ns("b"), ns("c"));
        let l = load_str_with("n.yaml", &text, Limits::default().with_max_documents(2));
        assert_eq!(l.objects.len(), 2, "the first two");
        assert_eq!(
            l.diagnostics
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            vec![
                "error: n.yaml:10 (document 2): more than 2 documents (limit max_documents); the rest were not read"
            ]
        );
        // A million empty documents cost nothing and count nothing.
        let l = load_str_with(
            "e.yaml",
            &"---\n".repeat(1_000_000),
            Limits::default().with_max_documents(2),
        );
        assert!(l.diagnostics.is_empty());
        let json = format!("{}\n{}\n{}", ns_json("a"), ns_json("b"), ns_json("c"));
        let l = load_str_with("n.json", &json, Limits::default().with_max_documents(2));
        assert_eq!(l.objects.len(), 2);
        assert_eq!(
            l.diagnostics[0].to_string(),
            "error: n.json:3 (document 2): more than 2 documents (limit max_documents); the rest were not read"
        );
    }

    fn ns_json(n: &str) -> String {
        format!(
            "{{\"apiVersion\": \"v1\", \"kind\": \"Namespace\", \"metadata\": {{\"name\": \"{n}\"}}}}"
        )
    }

    /// Nine levels of ten aliases each: 10^9 strings from 400 bytes.
    #[test]
    fn billion_laughs_are_refused() {
        let mut text = String::from(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: lol}\ndata:\n  a0: &a0 lol\n",
        );
        for i in 1..10 {
            let uses = vec![format!("*a{}", i - 1); 10].join(", ");
            text.push_str(&format!("  a{i}: &a{i} [{uses}]\n"));
        }
        let l = load_str("lol.yaml", &text);
        assert_eq!(
            l.diagnostics
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            vec![
                "error: lol.yaml:10 (document 0) ConfigMap lol: aliases expand to more than 100000 nodes (limit max_alias_expansion, crossed at *a4); nothing read from this document"
            ]
        );
        // Aliases within the budget are read as before.
        let text = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: g, namespace: n}\nspec:\n  gatewayClassName: c\n  listeners:\n  - &l {name: a, port: 80, protocol: HTTP}\n  - {name: b, port: 81, protocol: HTTP}\n  addresses: []\n  infrastructure: {labels: {x: y}}\n";
        let l = load_str("g.yaml", text);
        assert!(l.diagnostics.is_empty(), "{:?}", l.diagnostics);
    }

    /// A source split among threads reads as it does on one: the same
    /// objects in the same order, the same diagnostics naming the same
    /// documents and lines, the document budget counted over the whole.
    #[test]
    fn threads_do_not_change_what_is_read() {
        let mut text = String::new();
        // The documents of the good objects, and how many are bad.
        let (mut good, mut bad) = (Vec::new(), 0);
        for i in 0..1_500 {
            text.push_str(&match i % 7 {
                // A wrong type: the field's line in document i.
                3 => format!(
                    "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: r{i}\n  namespace: n\nspec:\n  hostnames: [ok.example.com]\n  rules:\n  - backendRefs:\n    - name: s\n      port: eighty\n"
                ),
                // Broken YAML.
                5 => format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: b{i}\n"),
                // Over the depth budget.
                6 => format!("spec: {}\n", "[".repeat(200)),
                _ => {
                    good.push(i);
                    format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: n{i}\n")
                }
            });
            if i % 7 >= 5 || i % 7 == 3 {
                bad += 1;
            }
            text.push_str("---\n");
            if i % 100 == 0 {
                // Blank documents are not counted.
                text.push_str("# nothing\n---\n");
            }
        }
        let read = |threads: usize, documents: usize| {
            let limits = Limits::default()
                .with_max_threads(threads)
                .with_max_documents(documents);
            let l = load_str_with("many.yaml", &text, limits);
            let diagnostics: Vec<String> = l.diagnostics.iter().map(ToString::to_string).collect();
            (l.objects, diagnostics)
        };
        let one = read(1, 1_000_000);
        let documents: Vec<usize> = one.0.iter().map(|(_, o)| o.document).collect();
        assert_eq!(documents, good);
        assert_eq!(one.1.len(), bad);
        // The last three, each naming its document and line.
        assert_eq!(
            one.1[bad - 3..],
            [
                "error: many.yaml:8150 (document 1494) HTTPRoute n/r1494 field spec.rules[0].backendRefs[0].port: invalid type: string \"eighty\", expected i32",
                "error: many.yaml:8160 (document 1496): invalid YAML: did not find expected ',' or '}' at line 4 column 1, while parsing a flow mapping at line 3 column 11",
                "error: many.yaml:8161 (document 1497): nesting deeper than 100 levels (limit max_depth); nothing read from this document",
            ]
        );
        for threads in [2, 3, 5] {
            assert!(read(threads, 1_000_000) == one, "on {threads} threads");
        }
        // The budget on documents is over the whole source, not a thread's run.
        let capped = read(4, 1_200);
        assert!(capped == read(1, 1_200));
        assert!(
            capped
                .1
                .last()
                .is_some_and(|d| d.contains("(document 1200): more than 1200 documents")),
            "{:?}",
            capped.1.last()
        );
    }

    #[test]
    fn unknown_kind_is_a_warning() {
        let l = load_str(
            "d.yaml",
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\n",
        );
        assert!(l.objects.is_empty());
        assert_eq!(l.diagnostics[0].severity, Severity::Warning);
        assert!(!l.has_errors());
    }
}
