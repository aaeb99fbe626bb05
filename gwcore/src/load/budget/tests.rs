use super::*;

fn depth(limit: usize) -> Limits {
    Limits::default().with_max_depth(limit)
}

/// The crossed budget and the 0-based line it was crossed on.
fn crossed(doc: &str, limits: Limits) -> Option<(Crossed, usize)> {
    scan_yaml(doc, &limits)
        .err()
        .map(|o| (o.crossed, doc[..o.offset].matches('\n').count()))
}

/// The deepest nesting the scan lets through: the smallest limit it
/// accepts.
fn measured(doc: &str) -> usize {
    (0..200)
        .find(|&d| scan_yaml(doc, &depth(d)).is_ok())
        .expect("nested less than 200 deep")
}

/// The depth `serde_norway` itself sees: collections nested in the value.
fn parsed(doc: &str) -> usize {
    let v = serde_norway::from_str::<Value>(doc);
    let v = v.unwrap_or_else(|e| panic!("valid YAML: {doc:?}: {e}"));
    fn d(v: &Value) -> usize {
        match v {
            Value::Array(a) => 1 + a.iter().map(d).max().unwrap_or(0),
            Value::Object(m) => 1 + m.values().map(d).max().unwrap_or(0),
            _ => 0,
        }
    }
    d(&v)
}

#[test]
fn depth_is_the_parsers_for_block_and_flow_styles() {
    let cases = [
        ("scalar", "just text\n"),
        ("mapping", "a: 1\nb: 2\n"),
        ("nested mappings", "a:\n  b:\n    c: 1\n  d: 2\ne: 3\n"),
        ("compact sequence", "a:\n- x\n- y: 1\n  z:\n  - 1\nb: 2\n"),
        ("indented sequence", "a:\n  - - x\n    - y\n  - z\n"),
        ("flow in block", "a: [1, {b: [2]}]\nc: {d: 1}\n"),
        (
            "multi-line flow",
            "a: [\n  1,\n  {b: [2,\n 3]}\n]\nc:\n  d: [[1]]\n",
        ),
        ("complex key", "? a\n: - b\n  - c: [1]\n"),
        (
            "anchors and tags",
            "a: &x\n  b: !!str 1\nc: *x\nd: !!map\n  e: [1]\n",
        ),
        ("quoted keys", "\"a\": [1]\n'b c':\n  - {\"d\": [2]}\n"),
        (
            "pairs in flow sequences",
            "a: [b: [c, d: {e: [? f : g]}], h]\n",
        ),
    ];
    for (name, doc) in cases {
        assert_eq!(measured(doc), parsed(doc), "{name}: {doc:?}");
    }
}

#[test]
fn brackets_in_text_are_not_nesting() {
    let cases = [
        ("plain", "a: see [1] and {x\nb: x [[ y\nc:\n- d\n"),
        ("quoted", "a: \"[[[[\\\"[[\"\nb: '[[['' [[['\n"),
        ("multi-line quoted", "a: \"[[[\n  [[[\"\nb: '[[\n  [[['\n"),
        ("comment", "a: 1 # [[[[\n# {{{{\n"),
        (
            "block scalars",
            "a: |\n  [[[[\n   {{{{\n\n  [[\nb: >-\n  [[[[\nc: |2\n   [[[[\n",
        ),
        ("continued plain", "a: x\n  [[[[\n  {{{\nb: 1\n"),
        ("in flow", "a: [\"]]]\", 'x]]', b # ]]\n  ]\n"),
    ];
    for (name, doc) in cases {
        assert_eq!(measured(doc), parsed(doc), "{name}: {doc:?}");
        assert!(measured(doc) <= 2, "{name}: {doc:?}");
    }
}

/// libyaml ends a comment, a plain scalar and a line at NEL, LS, PS and a
/// lone CR too: brackets after them are nesting, not text.
#[test]
fn every_line_break_libyaml_knows_ends_a_comment() {
    for br in ["\r", "\u{85}", "\u{2028}", "\u{2029}"] {
        let doc = format!("a: 1 # c{br}b: [[[[1]]]]\n");
        assert_eq!(
            crossed(&doc, depth(3)).map(|c| c.0),
            Some(Crossed::Depth(3)),
            "{br:?}"
        );
    }
}

/// A quote opens a quoted scalar only where a token starts: `a:"b` in a
/// flow mapping is one plain scalar, and what follows is nesting.
#[test]
fn a_quote_inside_a_plain_scalar_hides_nothing() {
    let doc = "x: {a:\"b}\ny: [[[[1]]]]\nz: \"\n";
    assert_eq!(crossed(doc, depth(3)).map(|c| c.0), Some(Crossed::Depth(3)));
    let doc = "x: plain\n  \"continued\ny: [[[[1]]]]\nz: \"\n";
    assert_eq!(crossed(doc, depth(3)).map(|c| c.0), Some(Crossed::Depth(3)));
}

#[test]
fn deep_nesting_is_refused_on_the_line_it_crosses() {
    let flow = format!("a: 1\nb:\n  c: {}{}\n", "[".repeat(300), "]".repeat(300));
    assert_eq!(crossed(&flow, depth(100)), Some((Crossed::Depth(100), 2)));
    let mut block = String::new();
    for i in 0..120 {
        block.push_str(&format!("{}k{i}:\n", " ".repeat(i)));
    }
    assert_eq!(
        crossed(&block, depth(100)),
        Some((Crossed::Depth(100), 100))
    );
    let dashes = format!("{}x\n", "- ".repeat(150));
    assert_eq!(crossed(&dashes, depth(100)), Some((Crossed::Depth(100), 0)));
    // Unclosed: refused all the same, before the parser sees it.
    let open = "[".repeat(200_000);
    assert_eq!(crossed(&open, depth(100)), Some((Crossed::Depth(100), 0)));
}

/// Nine anchors, each naming ten uses of the one before: 10^9 strings.
fn laughs(levels: usize) -> String {
    let mut doc = String::from("a0: &a0 lol\n");
    for i in 1..levels {
        let uses = vec![format!("*a{}", i - 1); 10].join(", ");
        doc.push_str(&format!("a{i}: &a{i} [{uses}]\n"));
    }
    doc
}

#[test]
fn billion_laughs_are_refused_before_parsing() {
    let doc = laughs(10);
    let (c, line) = crossed(&doc, Limits::default()).expect("refused");
    assert_eq!(
        c,
        Crossed::Aliases {
            limit: 100_000,
            alias: "a4".into()
        }
    );
    assert_eq!(line, 5, "the first line whose aliases go over");
    // Block style counts the same.
    let mut block = String::from("a0: &a0\n  x: lol\n");
    for i in 1..10 {
        block.push_str(&format!("a{i}: &a{i}\n"));
        for _ in 0..10 {
            block.push_str(&format!("  - *a{}\n", i - 1));
        }
    }
    assert!(matches!(
        crossed(&block, Limits::default()),
        Some((Crossed::Aliases { .. }, _))
    ));
}

#[test]
fn aliases_within_the_budget_are_read() {
    let doc = "defaults: &d\n  port: 80\n  protocol: HTTP\nlisteners:\n- *d\n- *d\n";
    assert_eq!(scan_yaml(doc, &Limits::default()), Ok(()));
    // Each use of `*d` stands for the mapping and its four scalars.
    let tight = Limits::default().with_max_alias_expansion(9);
    assert_eq!(
        crossed(doc, tight),
        Some((
            Crossed::Aliases {
                limit: 9,
                alias: "d".into()
            },
            5
        ))
    );
    assert_eq!(
        scan_yaml(doc, &Limits::default().with_max_alias_expansion(10)),
        Ok(())
    );
}

/// What the scan cannot see, the count while parsing still bounds.
#[test]
fn the_parse_counts_values_and_depth_on_its_own() {
    // A thousand uses of a thousand scalars: a million values, under
    // serde_norway's own limit (a hundred alias uses per event).
    let doc = format!(
        "a: &a [{}]\nb: [{}]\n",
        vec!["x"; 1000].join(", "),
        vec!["*a"; 1000].join(", ")
    );
    let limits = Limits::default();
    let crossed = Cell::new(None);
    let left = Cell::new(ValueSeed::values_budget(doc.len(), &limits));
    let seed = ValueSeed {
        max_depth: 100,
        values_left: &left,
        depth: 0,
        crossed: &crossed,
    };
    assert!(
        seed.deserialize(serde_norway::Deserializer::from_str(&doc))
            .is_err()
    );
    assert_eq!(crossed.get(), Some(Budget::Values));

    let doc = format!("{}1{}", "[".repeat(6), "]".repeat(6));
    for (max_depth, expect) in [(5, Some(Budget::Depth)), (6, None)] {
        let crossed = Cell::new(None);
        let left = Cell::new(u64::MAX);
        let seed = ValueSeed {
            max_depth,
            values_left: &left,
            depth: 0,
            crossed: &crossed,
        };
        let got = seed.deserialize(serde_norway::Deserializer::from_str(&doc));
        assert_eq!(got.is_ok(), expect.is_none());
        assert_eq!(crossed.get(), expect, "{max_depth}");
    }
}

/// The value built is the one `serde_json::Value` builds itself.
#[test]
fn the_counting_parse_builds_the_same_value() {
    let doc =
        "a: [1, -2, 3.5, .nan, true, ~, \"s\", 18446744073709551615]\nb: {c: {d: []}}\n1: x\n";
    let crossed = Cell::new(None);
    let left = Cell::new(u64::MAX);
    let seed = ValueSeed {
        max_depth: 100,
        values_left: &left,
        depth: 0,
        crossed: &crossed,
    };
    let ours = seed
        .deserialize(serde_norway::Deserializer::from_str(doc))
        .unwrap();
    assert_eq!(ours, serde_norway::from_str::<Value>(doc).unwrap());
    assert_eq!(u64::MAX - left.get(), 14, "values counted");
}

#[test]
fn json_depth_per_document() {
    let text = "{\"a\": [[1]]}\n[\"]]]]\", [[[[1]]]]]\n{}\n[[[[[1]]]]]";
    let over: Vec<_> = scan_json(text, &depth(4))
        .into_iter()
        .map(|(d, o)| (d, o.crossed))
        .collect();
    assert_eq!(over, vec![(1, Crossed::Depth(4)), (3, Crossed::Depth(4))]);
}

#[test]
fn labels_from_block_text() {
    let doc = "apiVersion: v1\nkind: HTTPRoute # c\nmetadata:\n  name: r\n  labels:\n    name: no\n  namespace: \"n\"\nspec: {}\n";
    assert_eq!(label(doc).as_deref(), Some("HTTPRoute n/r"));
    assert_eq!(label("kind: Gateway\n").as_deref(), Some("Gateway"));
    let flow = "kind: Gateway\nmetadata: {name: g, namespace: 'n'}\n";
    assert_eq!(label(flow).as_deref(), Some("Gateway n/g"));
    assert_eq!(label("[[[").as_deref(), None);
}

proptest::proptest! {
    /// Any text: no panic, and a limit large enough is never crossed by
    /// depth.
    #[test]
    fn never_panics(text in "[ a-c:#\\-\"'\\[\\]{},&*!|>?%\\\\\t\r\n]{0,200}") {
        let _ = scan_yaml(&text, &depth(0));
        let _ = scan_json(&text, &depth(0));
        let deep = matches!(
            scan_yaml(&text, &depth(usize::MAX)),
            Err(Over { crossed: Crossed::Depth(_), .. })
        );
        proptest::prop_assert!(!deep);
    }
}
