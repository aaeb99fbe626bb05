use proptest::prelude::*;

use super::*;
use crate::Snapshot;
use crate::load::load_str;

fn ns(name: &str, label: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels:\n    v: \"{label}\"\n"
    )
}

fn route(name: &str, host: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {name}\n  namespace: a\nspec:\n  hostnames:\n  - {host}\n"
    )
}

fn stream(docs: &[String]) -> String {
    docs.iter().map(|d| format!("---\n{d}")).collect()
}

fn cache() -> DocumentCache {
    DocumentCache::new(Limits::default(), Extensions::default())
}

/// What a fresh load of `sources` gives: the snapshot and the diagnostics.
fn fresh(sources: &[(String, String)]) -> (Snapshot, Vec<Diagnostic>) {
    let mut objects = Vec::new();
    let mut diagnostics = Vec::new();
    for (name, text) in sources {
        let l = load_str(name, text);
        objects.extend(l.objects.into_iter().map(|(o, _)| o));
        diagnostics.extend(l.diagnostics);
    }
    (Snapshot::from_objects(objects), diagnostics)
}

fn apply(served: &mut Snapshot, changes: Changes) {
    match changes {
        Changes::Some(list) => {
            for (k, o) in list {
                match o {
                    Some(o) => {
                        served.insert(o);
                    }
                    None => {
                        served.remove(&k);
                    }
                }
            }
        }
        Changes::All(all) => *served = Snapshot::from_objects(all),
        Changes::Unknown => panic!("apply Unknown"),
    }
}

#[test]
fn editing_one_document_parses_only_it() {
    let mut docs: Vec<String> = (0..50)
        .map(|i| route(&format!("r{i}"), "a.example"))
        .collect();
    let mut c = cache();
    let text = stream(&docs);
    let first = c.reload([SourceInput::text("routes.yaml", &text)]);
    assert_eq!(first.documents_parsed(), 50);
    c.commit(first);

    docs[17] = route("r17", "b.example");
    let text = stream(&docs);
    let mut r = c.reload([SourceInput::text("routes.yaml", &text)]);
    assert_eq!(r.documents_parsed(), 1, "only the edited document");
    let Changes::Some(changes) = r.take_changes() else {
        panic!("expected changes")
    };
    assert_eq!(changes.len(), 1);
    assert_eq!(changes[0].0.name, "r17");
    let Some(Object::HttpRoute(hr)) = &changes[0].1 else {
        panic!("an HTTPRoute")
    };
    assert_eq!(hr.spec.hostnames[0].to_string(), "b.example");

    // Nothing changed: nothing parsed, no change.
    c.commit(r);
    let r = c.reload([SourceInput::text("routes.yaml", &text)]);
    assert_eq!(r.documents_parsed(), 0);
    assert_eq!(r.changes(), &Changes::Some(Vec::new()));
}

#[test]
fn a_document_inserted_above_moves_the_others_diagnostics() {
    let bad = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  labels: [not, a, map]\n";
    let docs = vec![ns("a", "1"), bad.to_string()];
    let mut c = cache();
    let text = stream(&docs);
    c.commit(c.reload([SourceInput::text("n.yaml", &text)]));
    let docs = vec![ns("z", "0"), ns("a", "1"), bad.to_string()];
    let text = stream(&docs);
    let r = c.reload([SourceInput::text("n.yaml", &text)]);
    assert_eq!(r.documents_parsed(), 1, "only the new one");
    let (_, want) = fresh(&[("n.yaml".into(), text.clone())]);
    assert_eq!(r.diagnostics(), want.as_slice());
    assert_eq!(
        (want[0].document, want[0].line),
        (2, Some(20)),
        "{}",
        want[0]
    );
}

#[test]
fn an_object_moving_between_files_is_one_change() {
    let mut c = cache();
    let (a, b) = (
        stream(&[ns("a", "1"), ns("b", "1")]),
        stream(&[ns("c", "1")]),
    );
    c.commit(c.reload([
        SourceInput::text("1.yaml", &a),
        SourceInput::text("2.yaml", &b),
    ]));
    let (a, b) = (
        stream(&[ns("a", "1")]),
        stream(&[ns("c", "1"), ns("b", "1")]),
    );
    let r = c.reload([
        SourceInput::text("1.yaml", &a),
        SourceInput::text("2.yaml", &b),
    ]);
    let Changes::Some(list) = r.changes() else {
        panic!("{:?}", r.changes())
    };
    assert_eq!(
        list.iter()
            .map(|(k, o)| (k.name.as_str(), o.is_some()))
            .collect::<Vec<_>>(),
        vec![("b", true)]
    );
}

#[test]
fn a_duplicate_asks_for_everything() {
    let mut c = cache();
    let (a, b) = (
        stream(&[ns("a", "1"), ns("x", "1")]),
        stream(&[ns("a", "2"), ns("y", "1")]),
    );
    let all = c.reload_all([
        SourceInput::text("1.yaml", &a),
        SourceInput::text("2.yaml", &b),
    ]);
    let mut served = Snapshot::new();
    let mut all_changes = all;
    apply(&mut served, all_changes.take_changes());
    c.commit(all_changes);
    assert_eq!(
        served,
        fresh(&[("1.yaml".into(), a.clone()), ("2.yaml".into(), b.clone())]).0
    );
    // The later one is dropped: the earlier wins again, which no document
    // parsed now holds.
    let b = stream(&[ns("y", "1")]);
    let r = c.reload([
        SourceInput::unchanged("1.yaml"),
        SourceInput::text("2.yaml", &b),
    ]);
    assert_eq!(r.changes(), &Changes::Unknown);
}

#[test]
fn a_source_not_held_is_unknown() {
    let c = cache();
    let r = c.reload([SourceInput::unchanged("1.yaml")]);
    assert_eq!(r.changes(), &Changes::Unknown);
}

#[test]
fn previous_keys_name_what_a_broken_document_held() {
    let mut c = cache();
    let text = stream(&[ns("a", "1"), ns("b", "1")]);
    c.commit(c.reload([SourceInput::text("n.yaml", &text)]));
    let text = stream(&[
        ns("a", "1"),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: b\n".into(),
    ]);
    let r = c.reload([SourceInput::text("n.yaml", &text)]);
    assert!(r.has_errors());
    assert_eq!(r.previous_keys("n.yaml", 1)[0].name, "b");
    assert!(r.previous_keys("n.yaml", 0).is_empty(), "unchanged");
}

/// One edit of the sources.
#[derive(Debug, Clone)]
enum Edit {
    Add { file: usize, at: usize, doc: usize },
    Remove { file: usize, at: usize },
    Replace { file: usize, at: usize, doc: usize },
    Move { from: usize, at: usize, to: usize },
    Touch { file: usize },
}

/// The documents the edits draw from: objects with few names (so that
/// duplicates happen), a broken one, an invalid one, a List, blank ones,
/// a flow-style one and JSON.
fn document(i: usize) -> String {
    let names = ["a", "b", "c", "d"];
    match i % 12 {
        0..=3 => ns(names[i % 4], &format!("{}", i / 12)),
        4 | 5 => route(names[i % 4], &format!("h{}.example", i / 12)),
        6 => "apiVersion: v1\nkind: Namespace\nmetadata: {name: broken\n".into(),
        7 => route(names[i % 4], "bad_host"),
        8 => format!(
            "apiVersion: v1\nkind: List\nitems:\n- {}\n- {}\n",
            "{apiVersion: v1, kind: Namespace, metadata: {name: l1}}",
            "{apiVersion: v1, kind: Namespace, metadata: {name: l2}}"
        ),
        9 => "# only a comment\n".into(),
        10 => format!(
            "{{apiVersion: v1, kind: Namespace, metadata: {{name: {}}}}}\n",
            names[i % 4]
        ),
        _ => ns(&format!("n{i}"), "x"),
    }
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        (0..3usize, 0..8usize, 0..48usize).prop_map(|(file, at, doc)| Edit::Add { file, at, doc }),
        (0..3usize, 0..8usize).prop_map(|(file, at)| Edit::Remove { file, at }),
        (0..3usize, 0..8usize, 0..48usize).prop_map(|(file, at, doc)| Edit::Replace {
            file,
            at,
            doc
        }),
        (0..3usize, 0..8usize, 0..3usize).prop_map(|(from, at, to)| Edit::Move { from, at, to }),
        (0..3usize).prop_map(|file| Edit::Touch { file }),
    ]
}

fn render(files: &[Option<Vec<String>>]) -> Vec<(String, String)> {
    files
        .iter()
        .enumerate()
        .filter_map(|(i, f)| f.as_ref().map(|docs| (format!("{i}.yaml"), stream(docs))))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// After any sequence of edits, what the cache says changed, applied to
    /// what was served, equals a fresh load; so do the diagnostics. A
    /// reload with errors is not committed (as the file provider does),
    /// and the next one still comes out right.
    #[test]
    fn incremental_reload_equals_a_fresh_load(
        start in proptest::collection::vec(proptest::collection::vec(0..48usize, 0..6), 1..4),
        edits in proptest::collection::vec(edit(), 1..25),
        commit_errors in any::<bool>(),
    ) {
        let mut files: Vec<Option<Vec<String>>> = start
            .iter()
            .map(|f| Some(f.iter().map(|&d| document(d)).collect()))
            .collect();
        files.resize(3, None);
        let mut cache = cache();
        let mut served = Snapshot::new();
        // The texts of the last commit.
        let mut committed: BTreeMap<String, String> = BTreeMap::new();
        let mut touched: BTreeSet<String> = BTreeSet::new();
        for e in std::iter::once(None).chain(edits.into_iter().map(Some)) {
            match e {
                None => {}
                Some(Edit::Add { file, at, doc }) => {
                    let f = files[file].get_or_insert_with(Vec::new);
                    f.insert(at.min(f.len()), document(doc));
                }
                Some(Edit::Remove { file, at }) => match &mut files[file] {
                    Some(f) if f.is_empty() => files[file] = None,
                    Some(f) => { f.remove(at % f.len()); }
                    None => {}
                },
                Some(Edit::Replace { file, at, doc }) => {
                    if let Some(f) = files[file].as_mut().filter(|f| !f.is_empty()) {
                        let i = at % f.len();
                        f[i] = document(doc);
                    }
                }
                Some(Edit::Move { from, at, to }) => {
                    if let Some(f) = files[from].as_mut().filter(|f| !f.is_empty()) {
                        let d = f.remove(at % f.len());
                        files[to].get_or_insert_with(Vec::new).push(d);
                    }
                }
                Some(Edit::Touch { file }) => { touched.insert(format!("{file}.yaml")); }
            }
            let sources = render(&files);
            let inputs: Vec<SourceInput<'_>> = sources
                .iter()
                .map(|(n, t)| {
                    if committed.get(n) == Some(t) && !touched.contains(n) {
                        SourceInput::unchanged(n)
                    } else {
                        SourceInput::text(n, t)
                    }
                })
                .collect();
            let mut reload = if cache.is_empty() {
                cache.reload_all(inputs.iter().copied())
            } else {
                cache.reload(inputs.iter().copied())
            };
            if reload.changes() == &Changes::Unknown {
                let all = sources.iter().map(|(n, t)| SourceInput::text(n, t));
                reload = cache.reload_all(all);
            }
            let (want, diagnostics) = fresh(&sources);
            prop_assert_eq!(reload.diagnostics(), diagnostics.as_slice());
            if reload.has_errors() && !commit_errors {
                continue;
            }
            apply(&mut served, reload.take_changes());
            prop_assert_eq!(&served, &want);
            cache.commit(reload);
            committed = sources.into_iter().collect();
            touched.clear();
        }
    }
}
