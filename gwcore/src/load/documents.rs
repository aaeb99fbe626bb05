//! Reloading sources document by document: what is kept of each document
//! read (a hash of its text, the keys of its objects, its diagnostics), so
//! that reading a source again parses only the documents whose text
//! changed and tells which objects changed.
//!
//! ```text
//!  source texts ──► split into documents ──► hash each ──► same as before? ──► reuse keys + diagnostics
//!  (changed ones)   (YAML `---`; a JSON      (of its text)       │ no
//!                    source is one document)                     ▼
//!                                                           parse it alone (load_str_extended)
//!                                                                │
//!  keys that left or entered a document ◄────────────────────────┘
//!        │
//!        ▼
//!  each such key: one document holds it now ──► upsert its new object
//!                 none                       ──► remove it
//!                 several (a duplicate)      ──► not decidable here: read everything again
//! ```
//!
//! A document is parsed on its own exactly as [`super::load_str_extended`]
//! parses it within its source, and its diagnostics are moved to its place
//! (source, document index, lines), so the objects and diagnostics of a
//! reload equal those of a fresh load. Sources that cannot be split that
//! way are handled whole: JSON, a source over [`Limits::max_source_bytes`]
//! or with more documents or objects than [`Limits::max_documents`], and a
//! YAML stream with a document that starts with `{` or `[` (alone, it would
//! be read as JSON).
//!
//! Nothing is kept of an object but its key: the objects themselves live
//! in whatever serves them (a [`crate::Snapshot`], an engine). A key held
//! by several documents is the one case where the cache cannot tell the
//! new object from the documents parsed; [`Changes::Unknown`] then asks
//! for a [`DocumentCache::reload_all`].
//!
//! A reload is a proposal: [`DocumentCache::reload`] does not change the
//! cache, [`DocumentCache::commit`] takes it once what it says has been
//! served. A refused reload (its input has errors) is simply not committed,
//! and the next one is computed against what is served.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{BuildHasher, BuildHasherDefault, DefaultHasher};
use std::sync::Arc;

use super::{Diagnostic, Limits, Severity, is_blank_yaml, load_str_extended, split_yaml};
use crate::extension::Extensions;
use crate::model::{Object, ObjectKey};

/// What a document (or a source read whole) gave, positioned at its start:
/// document index 0, lines counted from 1, source name empty.
#[derive(Debug)]
struct Parsed {
    keys: Vec<ObjectKey>,
    diagnostics: Vec<Diagnostic>,
}

/// One document of a source as last read.
#[derive(Debug, Clone)]
struct Document {
    hash: u64,
    len: usize,
    /// Its index among the source's documents (0 for a source read whole).
    index: usize,
    /// The line it starts on (1 for a source read whole).
    start_line: usize,
    parsed: Arc<Parsed>,
}

impl Document {
    /// A diagnostic of this document, moved to where the document is.
    fn place(&self, source: &str, d: &Diagnostic) -> Diagnostic {
        let mut d = d.clone();
        source.clone_into(&mut d.source);
        d.document += self.index;
        d.line = d.line.map(|l| l + self.start_line - 1);
        d
    }
}

/// The documents of one source, in order.
#[derive(Debug, Default)]
struct Source {
    documents: Vec<Document>,
}

/// One source of a reload: its name and, when it may have changed since
/// the last commit, its text.
#[derive(Debug, Clone, Copy)]
pub struct SourceInput<'t> {
    name: &'t str,
    text: Option<&'t str>,
}

impl<'t> SourceInput<'t> {
    /// A source whose text is `text` (read again because it may have
    /// changed; an unchanged text costs a hash of it).
    pub fn text(name: &'t str, text: &'t str) -> SourceInput<'t> {
        SourceInput {
            name,
            text: Some(text),
        }
    }

    /// A source known not to have changed since the last commit, by its
    /// name. One the cache does not hold counts as changed, and its
    /// reload is [`Changes::Unknown`].
    pub fn unchanged(name: &'t str) -> SourceInput<'t> {
        SourceInput { name, text: None }
    }
}

/// What changed in the objects, from a [`DocumentCache`].
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Changes {
    /// The objects whose key entered or left a document, each with its
    /// object now (`None`: no document holds it any more), in key order.
    /// An object whose text changed but reads the same is listed too: the
    /// receiver compares it with what it serves.
    Some(Vec<(ObjectKey, Option<Object>)>),
    /// Every object, in reading order (later objects with the same key
    /// win, as in [`crate::Snapshot::from_objects`]): the result of
    /// [`DocumentCache::reload_all`].
    All(Vec<Object>),
    /// A key held by several documents entered or left one, or the
    /// documents holding one moved: which object wins needs every source
    /// parsed. Read them all and call [`DocumentCache::reload_all`].
    Unknown,
}

/// A reload proposed by [`DocumentCache::reload`]: what changed, the
/// diagnostics of every source, and the state to commit once served.
#[derive(Debug)]
pub struct Reload {
    changes: Changes,
    diagnostics: Vec<Diagnostic>,
    parsed: usize,
    order: Vec<String>,
    sources: BTreeMap<String, Arc<Source>>,
    /// How many more (or fewer) documents hold each key.
    deltas: BTreeMap<ObjectKey, i64>,
    /// Whether `sources` replace the cache's state (not a delta on it).
    full: bool,
    /// The documents of the sources this reload read, before it.
    previous: BTreeMap<String, Arc<Source>>,
}

impl Reload {
    /// What changed.
    pub fn changes(&self) -> &Changes {
        &self.changes
    }

    /// Takes the changes out (leaving [`Changes::Unknown`]).
    pub fn take_changes(&mut self) -> Changes {
        std::mem::replace(&mut self.changes, Changes::Unknown)
    }

    /// Every diagnostic of every source, in reading order, as a fresh load
    /// of the same texts gives them.
    pub fn diagnostics(&self) -> &[Diagnostic] {
        &self.diagnostics
    }

    /// Whether any diagnostic is an error.
    pub fn has_errors(&self) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error)
    }

    /// How many documents (or sources read whole) this reload parsed.
    pub fn documents_parsed(&self) -> usize {
        self.parsed
    }

    /// The keys of the objects that the document `document` of `source`
    /// held at the last commit, when this reload read that source and the
    /// document there now is another text: for an error in it, the
    /// objects whose previous version keeps serving while it is refused.
    pub fn previous_keys(&self, source: &str, document: usize) -> &[ObjectKey] {
        let Some(old) = self.previous.get(source) else {
            return &[];
        };
        let Some(before) = old.documents.iter().find(|d| d.index == document) else {
            return &[];
        };
        let now = self
            .sources
            .get(source)
            .and_then(|s| s.documents.iter().find(|d| d.index == document));
        match now {
            Some(now) if now.hash == before.hash && now.len == before.len => &[],
            _ => &before.parsed.keys,
        }
    }
}

/// The documents last read from each source: see the [module
/// docs](self). `S` hashes document texts; the default has fixed keys
/// (deterministic, as this crate is); a program reading input it does not
/// trust passes a keyed one such as `std::hash::RandomState`.
#[derive(Debug, Clone)]
pub struct DocumentCache<S = BuildHasherDefault<DefaultHasher>> {
    hasher: S,
    limits: Limits,
    extensions: Extensions,
    order: Vec<String>,
    sources: BTreeMap<String, Arc<Source>>,
    /// How many documents hold each key.
    counts: BTreeMap<ObjectKey, u32>,
    /// The keys held by more than one document.
    duplicated: BTreeSet<ObjectKey>,
}

impl DocumentCache {
    /// An empty cache reading with `limits`, objects of the kinds
    /// `extensions` register included.
    pub fn new(limits: Limits, extensions: Extensions) -> DocumentCache {
        DocumentCache::with_hasher(limits, extensions, BuildHasherDefault::default())
    }
}

impl<S: BuildHasher + Clone> DocumentCache<S> {
    /// [`DocumentCache::new`] hashing document texts with `hasher`.
    pub fn with_hasher(limits: Limits, extensions: Extensions, hasher: S) -> DocumentCache<S> {
        DocumentCache {
            hasher,
            limits,
            extensions,
            order: Vec::new(),
            sources: BTreeMap::new(),
            counts: BTreeMap::new(),
            duplicated: BTreeSet::new(),
        }
    }

    /// Whether nothing has been committed yet.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Reads `sources` (all of them, in reading order; one not listed is
    /// gone) against what was last committed: only documents whose text is
    /// new are parsed. See [`Changes`] for what it tells.
    pub fn reload<'t>(&self, sources: impl IntoIterator<Item = SourceInput<'t>>) -> Reload {
        self.run(sources, false)
    }

    /// Reads every source anew (each must come with its text) and lists
    /// every object ([`Changes::All`]); committing it replaces the cache's
    /// state.
    pub fn reload_all<'t>(&self, sources: impl IntoIterator<Item = SourceInput<'t>>) -> Reload {
        self.run(sources, true)
    }

    /// Takes `reload` as the state what is served was built from.
    pub fn commit(&mut self, reload: Reload) {
        if reload.full {
            self.counts.clear();
            self.duplicated.clear();
        }
        for (key, delta) in reload.deltas {
            let now = i64::from(self.counts.get(&key).copied().unwrap_or(0)) + delta;
            let now = u32::try_from(now.max(0)).unwrap_or(u32::MAX);
            if now > 1 {
                self.duplicated.insert(key.clone());
            } else {
                self.duplicated.remove(&key);
            }
            if now == 0 {
                self.counts.remove(&key);
            } else {
                self.counts.insert(key, now);
            }
        }
        if reload.full {
            self.sources = reload.sources;
        } else {
            self.sources.retain(|name, _| reload.order.contains(name));
            self.sources.extend(reload.sources);
        }
        self.order = reload.order;
    }

    fn run<'t>(&self, sources: impl IntoIterator<Item = SourceInput<'t>>, full: bool) -> Reload {
        let mut order = Vec::new();
        let mut read = BTreeMap::new();
        let mut previous = BTreeMap::new();
        // Objects of the documents parsed, in reading order.
        let mut objects: Vec<Object> = Vec::new();
        let mut deltas: BTreeMap<ObjectKey, i64> = BTreeMap::new();
        let mut parsed = 0usize;
        let mut unknown = false;
        for input in sources {
            order.push(input.name.to_owned());
            let old = if full {
                None
            } else {
                self.sources.get(input.name)
            };
            let Some(text) = input.text else {
                if old.is_none() {
                    unknown = true;
                }
                continue;
            };
            let empty = Source::default();
            let old_docs = old.map_or(&empty, |s| s);
            let (source, used) =
                self.read_source(text, old_docs, &mut objects, &mut deltas, &mut parsed);
            for (d, used) in old_docs.documents.iter().zip(used) {
                if !used {
                    for k in &d.parsed.keys {
                        *deltas.entry(k.clone()).or_default() -= 1;
                    }
                }
            }
            if let Some(old) = old {
                previous.insert(input.name.to_owned(), old.clone());
            }
            read.insert(input.name.to_owned(), Arc::new(source));
        }
        if !full {
            for (name, gone) in &self.sources {
                if order.contains(name) {
                    continue;
                }
                for d in &gone.documents {
                    for k in &d.parsed.keys {
                        *deltas.entry(k.clone()).or_default() -= 1;
                    }
                }
            }
        }
        let source_of = |name: &str| read.get(name).or_else(|| self.sources.get(name));
        let mut diagnostics = Vec::new();
        for name in &order {
            if let Some(s) = source_of(name) {
                for d in &s.documents {
                    diagnostics.extend(d.parsed.diagnostics.iter().map(|x| d.place(name, x)));
                }
            }
        }
        let changes = if full {
            Changes::All(objects)
        } else if unknown || self.moves_a_duplicate(&read, &deltas) {
            Changes::Unknown
        } else {
            self.changes(objects, &deltas)
        };
        Reload {
            changes,
            diagnostics,
            parsed,
            order,
            sources: read,
            deltas,
            full,
            previous,
        }
    }

    /// Whether a key held by several documents (before or after) is in a
    /// source read again: its winner may have changed or moved.
    fn moves_a_duplicate(
        &self,
        read: &BTreeMap<String, Arc<Source>>,
        deltas: &BTreeMap<ObjectKey, i64>,
    ) -> bool {
        let count = |k: &ObjectKey| i64::from(self.counts.get(k).copied().unwrap_or(0));
        if deltas.iter().any(|(k, d)| count(k) > 1 || count(k) + d > 1) {
            return true;
        }
        if self.duplicated.is_empty() {
            return false;
        }
        let holds = |s: &Source| {
            s.documents
                .iter()
                .flat_map(|d| &d.parsed.keys)
                .any(|k| self.duplicated.contains(k))
        };
        // (A source gone shows its keys in `deltas`, checked above.)
        read.iter()
            .any(|(name, s)| holds(s) || self.sources.get(name).is_some_and(|old| holds(old)))
    }

    /// The changes of the keys in `deltas`, each held by at most one
    /// document now ([`DocumentCache::moves_a_duplicate`] said so): that
    /// document was parsed, so its object is among `objects`.
    fn changes(&self, objects: Vec<Object>, deltas: &BTreeMap<ObjectKey, i64>) -> Changes {
        let mut by_key: BTreeMap<ObjectKey, Object> =
            objects.into_iter().map(|o| (o.key(), o)).collect();
        let mut out = Vec::new();
        for (key, delta) in deltas {
            let now = i64::from(self.counts.get(key).copied().unwrap_or(0)) + delta;
            if now == 0 {
                out.push((key.clone(), None));
            } else {
                match by_key.remove(key) {
                    Some(o) => out.push((key.clone(), Some(o))),
                    // Held by a document that was not parsed: only a
                    // duplicate can be, which was ruled out; stay safe.
                    None => return Changes::Unknown,
                }
            }
        }
        Changes::Some(out)
    }

    /// Reads one source's text against its previous documents `old`:
    /// the new documents, and which of the old ones were reused.
    fn read_source(
        &self,
        text: &str,
        old: &Source,
        objects: &mut Vec<Object>,
        deltas: &mut BTreeMap<ObjectKey, i64>,
        parsed: &mut usize,
    ) -> (Source, Vec<bool>) {
        let mut used = vec![false; old.documents.len()];
        let (pieces, whole) = self.split(text);
        let mut documents = Vec::new();
        let mut new_objects = Vec::new();
        let mut new_deltas: Vec<ObjectKey> = Vec::new();
        let mut count = 0usize;
        // Old documents by text, built at the first document not found
        // where the previous one was (a document inserted or removed).
        let mut by_hash: Option<BTreeMap<(u64, usize), Vec<usize>>> = None;
        let mut cursor = 0usize;
        let mut guessed = false;
        for (index, (start_line, piece)) in pieces.iter().enumerate() {
            let hash = self.hasher.hash_one(piece);
            let len = piece.len();
            let same = |i: usize| {
                old.documents
                    .get(i)
                    .is_some_and(|d| d.hash == hash && d.len == len)
            };
            let found = if same(cursor) {
                Some(cursor)
            } else if cursor < old.documents.len() && !same(cursor + 1) && !guessed {
                // Taken as edited in place, once: a second document not
                // found where expected means documents were inserted or
                // removed, and the map of old ones finds them.
                guessed = true;
                None
            } else {
                let map = by_hash.get_or_insert_with(|| {
                    let mut m: BTreeMap<(u64, usize), Vec<usize>> = BTreeMap::new();
                    for (i, d) in old.documents.iter().enumerate() {
                        m.entry((d.hash, d.len)).or_default().push(i);
                    }
                    m
                });
                map.get(&(hash, len)).and_then(|is| {
                    is.iter()
                        .copied()
                        .find(|&i| !used[i])
                        .or(is.first().copied())
                })
            };
            let doc = match found {
                Some(i) if !used[i] => {
                    used[i] = true;
                    cursor = i + 1;
                    old.documents[i].parsed.clone()
                }
                // The same text twice: its keys are held once more.
                Some(i) => {
                    let p = old.documents[i].parsed.clone();
                    new_deltas.extend(p.keys.iter().cloned());
                    p
                }
                None => {
                    cursor += 1;
                    *parsed += 1;
                    let loaded = load_str_extended("", piece, self.limits, &self.extensions);
                    let mut keys = Vec::with_capacity(loaded.objects.len());
                    for (o, _) in loaded.objects {
                        keys.push(o.key());
                        new_objects.push(o);
                    }
                    new_deltas.extend(keys.iter().cloned());
                    Arc::new(Parsed {
                        keys,
                        diagnostics: loaded.diagnostics,
                    })
                }
            };
            count += doc.keys.len();
            documents.push(Document {
                hash,
                len,
                index,
                start_line: *start_line,
                parsed: doc,
            });
        }
        if !whole && count > self.limits.max_documents {
            // The objects' budget is the source's: read it whole.
            return self.read_whole(text, old, objects, deltas, parsed);
        }
        objects.extend(new_objects);
        for k in new_deltas {
            *deltas.entry(k).or_default() += 1;
        }
        (Source { documents }, used)
    }

    /// Reads `text` as one piece (its objects over the budget of
    /// documents, which is the source's): none of `old` is reused.
    fn read_whole(
        &self,
        text: &str,
        old: &Source,
        objects: &mut Vec<Object>,
        deltas: &mut BTreeMap<ObjectKey, i64>,
        parsed: &mut usize,
    ) -> (Source, Vec<bool>) {
        *parsed += 1;
        let loaded = load_str_extended("", text, self.limits, &self.extensions);
        let mut keys = Vec::with_capacity(loaded.objects.len());
        for (o, _) in loaded.objects {
            let k = o.key();
            *deltas.entry(k.clone()).or_default() += 1;
            keys.push(k);
            objects.push(o);
        }
        let document = Document {
            hash: self.hasher.hash_one(text),
            len: text.len(),
            index: 0,
            start_line: 1,
            parsed: Arc::new(Parsed {
                keys,
                diagnostics: loaded.diagnostics,
            }),
        };
        (
            Source {
                documents: vec![document],
            },
            vec![false; old.documents.len()],
        )
    }

    /// The pieces `text` is parsed in, each with the line it starts on: its
    /// YAML documents (blank ones left out, as the loader does), or the
    /// whole text where documents cannot be read apart (see the module
    /// docs), with whether that is the whole text.
    fn split<'t>(&self, text: &'t str) -> (Vec<(usize, &'t str)>, bool) {
        let whole = (vec![(1, text)], true);
        if text.len() > self.limits.max_source_bytes || starts_json(text) {
            return whole;
        }
        let mut pieces = Vec::new();
        for (line, doc) in split_yaml(text) {
            if is_blank_yaml(doc) {
                continue;
            }
            if starts_json(doc) || pieces.len() == self.limits.max_documents {
                return whole;
            }
            pieces.push((line, doc));
        }
        if pieces.is_empty() {
            return whole;
        }
        (pieces, false)
    }
}

/// Whether the loader reads `text` as JSON (as `load_str_extended` decides).
fn starts_json(text: &str) -> bool {
    let trimmed = text.trim_start_matches('\u{feff}').trim_start();
    trimmed.starts_with('{') || trimmed.starts_with('[')
}

#[cfg(test)]
mod tests;
