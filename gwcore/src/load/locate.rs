//! The line of a field in a document's source text, for diagnostics.
//!
//! Diagnostics name a field by path (`spec.listeners[1].name`, the form of
//! [`crate::validate::FieldError`] and of `serde_path_to_error`); the parsed
//! value no longer knows where it was written. [`Locator`] walks the text
//! itself:
//!
//! - block-style YAML: mapping keys at one indentation (plain, `"double"` or
//!   `'single'` quoted), `- ` sequence items (compact or indented, nested
//!   `- - x`), skipping blank lines, comments and deeper lines;
//! - JSON: objects and arrays, skipping values without parsing them.
//!
//! It answers the line of the last path component it could follow: the
//! field's own line when the whole path is found, else the deepest line
//! found along the path (a flow collection `{...}`/`[...]`, an alias, a
//! block scalar or a missing field stops it), else the document's line.
//! It never fails and never backtracks: YAML lines are indexed once per
//! document (each line's next line at the same or lower indentation, so a
//! sibling is one hop away), and the position of the last sequence item
//! found is remembered, so locating `items[0]`, `items[1]`, ... of a
//! `kind: List` in turn costs one walk of the list, not one each.

use std::borrow::Cow;
use std::cell::{Cell, OnceCell};

/// The syntax of a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Syntax {
    Yaml,
    Json,
}

/// Finds the lines of fields in one document.
pub(crate) struct Locator<'a> {
    text: &'a str,
    first_line: usize,
    syntax: Syntax,
    yaml: OnceCell<YamlIndex<'a>>,
    newlines: OnceCell<Vec<usize>>,
    memo: Cell<Option<Memo>>,
}

/// The last sequence item found: item `index` of the sequence at `node` is
/// at `at` (a YAML line index or a JSON byte offset).
#[derive(Debug, Clone, Copy)]
struct Memo {
    node: (usize, usize),
    index: usize,
    at: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Seg<'p> {
    Key(&'p str),
    Index(usize),
}

/// The components of a field path, up to the first one that cannot be
/// read (`?`, serde_path_to_error's unknown segment).
fn segments(path: &str) -> Vec<Seg<'_>> {
    let mut out = Vec::new();
    for part in path.split('.') {
        let (key, mut rest) = part.split_at(part.find('[').unwrap_or(part.len()));
        if key == "?" {
            return out;
        }
        if !key.is_empty() {
            out.push(Seg::Key(key));
        }
        while let Some(r) = rest.strip_prefix('[') {
            let Some((n, after)) = r.split_once(']') else {
                return out;
            };
            let Ok(n) = n.parse() else {
                return out;
            };
            out.push(Seg::Index(n));
            rest = after;
        }
        if !rest.is_empty() {
            return out;
        }
    }
    out
}

impl<'a> Locator<'a> {
    /// A locator for the document `text`, whose first line is line
    /// `first_line` (1-based) of its source.
    pub(crate) fn new(text: &'a str, first_line: usize, syntax: Syntax) -> Locator<'a> {
        Locator {
            text,
            first_line,
            syntax,
            yaml: OnceCell::new(),
            newlines: OnceCell::new(),
            memo: Cell::new(None),
        }
    }

    /// The document's first line.
    pub(crate) fn first_line(&self) -> usize {
        self.first_line
    }

    /// The 1-based line where `path` is written, or the deepest line found
    /// along it, or the document's first line.
    pub(crate) fn line(&self, path: &str) -> usize {
        let segs = segments(path);
        if segs.is_empty() {
            return self.first_line;
        }
        match self.syntax {
            Syntax::Yaml => self.yaml_line(&segs),
            Syntax::Json => self.json_line(&segs),
        }
    }

    // -- YAML ---------------------------------------------------------------

    fn yaml_line(&self, segs: &[Seg<'_>]) -> usize {
        let ix = self.yaml.get_or_init(|| YamlIndex::build(self.text));
        let mut found = self.first_line;
        let Some(root) = ix.lines.first() else {
            return found;
        };
        // A node: its content starts at column `.1` of significant line `.0`.
        let mut node = Some((0, root.indent));
        for seg in segs {
            let Some((i, col)) = node else { break };
            let hit = match *seg {
                Seg::Key(k) => ix.find_key(i, col, k),
                Seg::Index(k) => self.find_item(ix, i, col, k),
            };
            let Some((line, value)) = hit else { break };
            found = self.first_line + ix.lines[line].number;
            node = value;
        }
        found
    }

    /// Item `k` of the block sequence at (`i`, `col`): its line and its
    /// content node.
    fn find_item(
        &self,
        ix: &YamlIndex<'_>,
        i: usize,
        col: usize,
        k: usize,
    ) -> Option<(usize, Option<(usize, usize)>)> {
        if !is_dash(ix.rest(i, col)?) {
            return None;
        }
        let (mut index, mut j) = (0, i);
        if let Some(m) = self.memo.get()
            && m.node == (i, col)
            && m.index <= k
        {
            (index, j) = (m.index, m.at);
        }
        while index < k {
            j = ix.next_sibling(j, col);
            if j >= ix.lines.len() || ix.lines[j].indent != col || !is_dash(ix.rest(j, col)?) {
                return None;
            }
            index += 1;
        }
        self.memo.set(Some(Memo {
            node: (i, col),
            index: k,
            at: j,
        }));
        Some((j, ix.value(j, col + 1, col, false)))
    }

    // -- JSON ---------------------------------------------------------------

    fn json_line(&self, segs: &[Seg<'_>]) -> usize {
        let b = self.text.as_bytes();
        let mut found = None;
        let mut pos = skip_ws(b, 0);
        for seg in segs {
            let hit = match *seg {
                Seg::Key(k) => json_find_key(self.text, pos, k),
                Seg::Index(k) => self.json_item(pos, k).map(|p| (p, p)),
            };
            let Some((at, value)) = hit else { break };
            found = Some(at);
            pos = value;
        }
        let Some(at) = found else {
            return self.first_line;
        };
        let newlines = self.newlines.get_or_init(|| {
            b.iter()
                .enumerate()
                .filter(|(_, c)| **c == b'\n')
                .map(|(i, _)| i)
                .collect()
        });
        self.first_line + newlines.partition_point(|&o| o < at)
    }

    /// The offset of element `k` of the array at `pos`.
    fn json_item(&self, pos: usize, k: usize) -> Option<usize> {
        let b = self.text.as_bytes();
        if b.get(pos) != Some(&b'[') {
            return None;
        }
        let (mut index, mut p) = (0, skip_ws(b, pos + 1));
        if let Some(m) = self.memo.get()
            && m.node == (pos, 0)
            && m.index <= k
        {
            (index, p) = (m.index, m.at);
        }
        while index < k {
            p = skip_ws(b, skip_value(b, p)?);
            if b.get(p) != Some(&b',') {
                return None;
            }
            p = skip_ws(b, p + 1);
            index += 1;
        }
        if matches!(b.get(p), None | Some(b']')) {
            return None;
        }
        self.memo.set(Some(Memo {
            node: (pos, 0),
            index: k,
            at: p,
        }));
        Some(p)
    }
}

/// The significant lines of a YAML document (not blank, not only a
/// comment), each with the index of the next one at the same or a lower
/// indentation.
struct YamlIndex<'a> {
    lines: Vec<YamlLine<'a>>,
    next: Vec<usize>,
}

struct YamlLine<'a> {
    /// The line, without its line break.
    text: &'a str,
    /// Leading spaces.
    indent: usize,
    /// 0-based line number within the document.
    number: usize,
}

impl<'a> YamlIndex<'a> {
    fn build(text: &'a str) -> YamlIndex<'a> {
        let mut lines = Vec::new();
        for (number, raw) in text.split('\n').enumerate() {
            let t = raw.strip_suffix('\r').unwrap_or(raw);
            let content = t.trim_start_matches(' ');
            let indent = t.len() - content.len();
            let content = content.trim_start();
            if content.is_empty() || content.starts_with('#') {
                continue;
            }
            lines.push(YamlLine {
                text: t,
                indent,
                number,
            });
        }
        let n = lines.len();
        let mut next = vec![n; n];
        let mut stack: Vec<usize> = Vec::new();
        for i in (0..n).rev() {
            while stack
                .last()
                .is_some_and(|&top| lines[top].indent > lines[i].indent)
            {
                stack.pop();
            }
            next[i] = stack.last().copied().unwrap_or(n);
            stack.push(i);
        }
        YamlIndex { lines, next }
    }

    /// The text of line `i` from column `col`.
    fn rest(&self, i: usize, col: usize) -> Option<&'a str> {
        self.lines.get(i)?.text.get(col..)
    }

    /// The first line after `i` indented at most `col`.
    fn next_sibling(&self, i: usize, col: usize) -> usize {
        let mut j = i + 1;
        while j < self.lines.len() && self.lines[j].indent > col {
            j = self.next[j];
        }
        j
    }

    /// Entry `key` of the block mapping at (`i`, `col`): its line and its
    /// value's node.
    fn find_key(&self, i: usize, col: usize, key: &str) -> Option<(usize, Option<(usize, usize)>)> {
        let mut j = i;
        while j < self.lines.len() {
            if j != i && self.lines[j].indent != col {
                break;
            }
            let s = self.rest(j, col)?;
            if is_dash(s) {
                if j == i {
                    // A sequence, not a mapping.
                    return None;
                }
                // A compact sequence: the previous key's value.
            } else {
                match parse_key(s) {
                    Some((k, after)) if k == key => {
                        return Some((j, self.value(j, col + after, col, true)));
                    }
                    Some(_) => {}
                    None if j == i => return None,
                    None => {}
                }
            }
            j = self.next_sibling(j, col);
        }
        None
    }

    /// The node of a value that starts at column `vcol` of line `j` (after
    /// `key:` or `-`), in a collection at column `parent`; on the next lines
    /// when nothing but a comment, an anchor or a tag follows. A value on
    /// the next lines is indented deeper, or (`compact`, under a key) is a
    /// sequence at the key's column.
    fn value(&self, j: usize, vcol: usize, parent: usize, compact: bool) -> Option<(usize, usize)> {
        let line = self.lines[j].text;
        let mut s = line.get(vcol..)?.trim_start_matches([' ', '\t']);
        while s.starts_with(['&', '!']) {
            let end = s.find([' ', '\t']).unwrap_or(s.len());
            s = s[end..].trim_start_matches([' ', '\t']);
        }
        if !(s.is_empty() || s.starts_with('#')) {
            return Some((j, line.len() - s.len()));
        }
        let next = self.lines.get(j + 1)?;
        let under = next.indent > parent
            || (compact && next.indent == parent && is_dash(&next.text[parent..]));
        under.then_some((j + 1, next.indent))
    }
}

/// Whether `s` starts a block sequence item.
fn is_dash(s: &str) -> bool {
    s == "-" || s.starts_with("- ") || s.starts_with("-\t")
}

/// The key of a `key: value` line (from the key) and the offset just after
/// its colon; `None` when the line is not one (a flow collection, a
/// scalar, a complex key).
fn parse_key(s: &str) -> Option<(Cow<'_, str>, usize)> {
    let b = s.as_bytes();
    let (key, end) = match *b.first()? {
        b'"' => {
            let mut i = 1;
            loop {
                match *b.get(i)? {
                    b'\\' => i += 2,
                    b'"' => break,
                    _ => i += 1,
                }
            }
            let inner = &s[1..i];
            let key = if inner.contains('\\') {
                serde_json::from_str::<String>(&s[..=i]).map_or(Cow::Borrowed(inner), Cow::Owned)
            } else {
                Cow::Borrowed(inner)
            };
            (key, i + 1)
        }
        b'\'' => {
            let mut i = 1;
            loop {
                match *b.get(i)? {
                    b'\'' if b.get(i + 1) == Some(&b'\'') => i += 2,
                    b'\'' => break,
                    _ => i += 1,
                }
            }
            (Cow::Owned(s[1..i].replace("''", "'")), i + 1)
        }
        b'{' | b'[' | b'&' | b'*' | b'!' | b'|' | b'>' | b'?' | b'#' | b'%' | b'@' | b'`' => {
            return None;
        }
        _ => {
            let mut i = 0;
            loop {
                match *b.get(i)? {
                    b':' if matches!(b.get(i + 1), None | Some(b' ' | b'\t')) => break,
                    b'#' if matches!(b[i - 1], b' ' | b'\t') => return None,
                    _ => i += 1,
                }
            }
            return Some((Cow::Borrowed(s[..i].trim_end()), i + 1));
        }
    };
    let rest = s[end..].trim_start_matches([' ', '\t']);
    let after = rest.strip_prefix(':')?;
    Some((key, s.len() - after.len()))
}

fn skip_ws(b: &[u8], mut p: usize) -> usize {
    while matches!(b.get(p), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        p += 1;
    }
    p
}

/// The offset after the string starting at `p`.
fn skip_string(b: &[u8], p: usize) -> Option<usize> {
    let mut i = p + 1;
    loop {
        match *b.get(i)? {
            b'\\' => i += 2,
            b'"' => return Some(i + 1),
            _ => i += 1,
        }
    }
}

/// The offset after the JSON value starting at `p`.
fn skip_value(b: &[u8], p: usize) -> Option<usize> {
    match *b.get(p)? {
        b'"' => skip_string(b, p),
        b'{' | b'[' => {
            let (mut depth, mut i) = (0usize, p);
            loop {
                match *b.get(i)? {
                    b'"' => {
                        i = skip_string(b, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let mut i = p;
            while b
                .get(i)
                .is_some_and(|c| !matches!(c, b',' | b'}' | b']' | b' ' | b'\t' | b'\n' | b'\r'))
            {
                i += 1;
            }
            Some(i)
        }
    }
}

/// Member `key` of the JSON object at `pos`: the offsets of its key and of
/// its value.
fn json_find_key(text: &str, pos: usize, key: &str) -> Option<(usize, usize)> {
    let b = text.as_bytes();
    if b.get(pos) != Some(&b'{') {
        return None;
    }
    let mut p = pos + 1;
    loop {
        p = skip_ws(b, p);
        if b.get(p) != Some(&b'"') {
            return None;
        }
        let start = p;
        let end = skip_string(b, p)?;
        let raw = &text[start..end];
        let same = if raw.contains('\\') {
            serde_json::from_str::<String>(raw).is_ok_and(|k| k == key)
        } else {
            &raw[1..raw.len() - 1] == key
        };
        p = skip_ws(b, end);
        if b.get(p) != Some(&b':') {
            return None;
        }
        p = skip_ws(b, p + 1);
        if same {
            return Some((start, p));
        }
        p = skip_ws(b, skip_value(b, p)?);
        if b.get(p) != Some(&b',') {
            return None;
        }
        p += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn yaml(text: &str, path: &str) -> usize {
        Locator::new(text, 1, Syntax::Yaml).line(path)
    }

    const GATEWAY: &str = "\
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: gw
  namespace: infra
spec:
  gatewayClassName: c
  listeners:
  - name: web
    port: 80
    protocol: HTTP
  - name: web
    hostname: a.example.com
    port: 81
    protocol: HTTP
";

    #[test]
    fn paths_are_split() {
        use Seg::{Index, Key};
        assert_eq!(
            segments("spec.listeners[1].name"),
            vec![Key("spec"), Key("listeners"), Index(1), Key("name")]
        );
        assert_eq!(
            segments("items[2][0].x"),
            vec![Key("items"), Index(2), Index(0), Key("x")]
        );
        assert_eq!(segments("."), vec![]);
        assert_eq!(segments("spec.?.x"), vec![Key("spec")]);
    }

    #[test]
    fn block_mappings_and_sequences() {
        assert_eq!(yaml(GATEWAY, "kind"), 2);
        assert_eq!(yaml(GATEWAY, "metadata.namespace"), 5);
        assert_eq!(yaml(GATEWAY, "spec.listeners"), 8);
        assert_eq!(yaml(GATEWAY, "spec.listeners[0]"), 9);
        assert_eq!(yaml(GATEWAY, "spec.listeners[0].port"), 10);
        assert_eq!(yaml(GATEWAY, "spec.listeners[1].name"), 12);
        assert_eq!(yaml(GATEWAY, "spec.listeners[1].protocol"), 15);
        // A missing field, a missing item: the deepest line found.
        assert_eq!(yaml(GATEWAY, "spec.listeners[1].tls.mode"), 12);
        assert_eq!(yaml(GATEWAY, "spec.listeners[2].name"), 8);
        assert_eq!(yaml(GATEWAY, "spec.addresses[0]"), 6);
        assert_eq!(yaml(GATEWAY, "status"), 1);
        // A scalar has no fields.
        assert_eq!(yaml(GATEWAY, "spec.gatewayClassName.x"), 7);
    }

    #[test]
    fn nested_and_indented_sequences() {
        let text = "\
spec:
  rules:
    - matches:
        - path:
            type: Exact
            value: /a
        - headers:
          - name: x
            value: '1'
          - name: y
            value: '2'
      backendRefs:
      - name: svc
    -
      matches:
      - method: GET
  grid:
  - - a
    - b
  - - c
";
        assert_eq!(yaml(text, "spec.rules[0].matches[0].path.value"), 6);
        assert_eq!(yaml(text, "spec.rules[0].matches[1].headers[1].value"), 11);
        assert_eq!(yaml(text, "spec.rules[0].backendRefs[0].name"), 13);
        assert_eq!(yaml(text, "spec.rules[1]"), 14);
        assert_eq!(yaml(text, "spec.rules[1].matches[0].method"), 16);
        assert_eq!(yaml(text, "spec.grid[0][1]"), 19);
        assert_eq!(yaml(text, "spec.grid[1][0]"), 20);
        assert_eq!(yaml(text, "spec.grid[1][1]"), 20);
    }

    #[test]
    fn comments_blank_lines_and_block_scalars_are_skipped() {
        let text = "\
# a comment before the document
apiVersion: v1

kind: ConfigMap   # trailing comment
data:
  # name: not this one
  script: |
    name: not this one either

    - also not an item
  name: here
metadata: # the value is below
  # a comment inside

  name: m
";
        assert_eq!(yaml(text, "kind"), 4);
        assert_eq!(yaml(text, "data.name"), 11);
        assert_eq!(yaml(text, "data.script"), 7);
        assert_eq!(yaml(text, "data.script.name"), 7);
        assert_eq!(yaml(text, "metadata.name"), 15);
    }

    #[test]
    fn quoted_keys_anchors_and_tags() {
        let text = "\
\"spec\":
  'host names':
  - a
  - b
  \"it''s\": 1
  'it''s': 2
  \"esc\\u0061ped\": 3
  tagged: !!map
    inner: x
  anchored: &a
    inner: y
";
        assert_eq!(yaml(text, "spec.host names[1]"), 4);
        assert_eq!(yaml(text, "spec.it's"), 6);
        assert_eq!(yaml(text, "spec.escaped"), 7);
        assert_eq!(yaml(text, "spec.tagged.inner"), 9);
        assert_eq!(yaml(text, "spec.anchored.inner"), 11);
    }

    #[test]
    fn flow_style_and_aliases_fall_back_to_the_deepest_line() {
        let text = "\
metadata: {name: a, namespace: b}
spec:
  listeners: [{name: a, port: 80}]
  rules:
  - matches:
    - {path: {type: Exact, value: /a}}
  other: *alias
";
        assert_eq!(yaml(text, "metadata.name"), 1);
        assert_eq!(yaml(text, "spec.listeners[0].port"), 3);
        assert_eq!(yaml(text, "spec.rules[0].matches[0].path.value"), 6);
        assert_eq!(yaml(text, "spec.other.x"), 7);
        // Nothing to follow at all: the document's line.
        assert_eq!(Locator::new("[1, 2]\n", 9, Syntax::Yaml).line("a"), 9);
        assert_eq!(Locator::new("", 9, Syntax::Yaml).line("a"), 9);
    }

    #[test]
    fn lines_count_from_the_document_start() {
        let l = Locator::new(GATEWAY, 20, Syntax::Yaml);
        assert_eq!(l.line("spec.listeners[1].name"), 31);
        assert_eq!(l.line("."), 20);
        assert_eq!(l.first_line(), 20);
    }

    #[test]
    fn list_items_in_turn_and_out_of_order() {
        let mut text = String::from("kind: List\nitems:\n");
        for i in 0..50 {
            text.push_str(&format!("- kind: Namespace\n  metadata:\n    name: n{i}\n"));
        }
        let l = Locator::new(&text, 1, Syntax::Yaml);
        for i in (0..50).chain([7, 3, 49, 0]) {
            assert_eq!(l.line(&format!("items[{i}].metadata.name")), 5 + 3 * i);
        }
        assert_eq!(l.line("items[50].metadata"), 2);
    }

    proptest::proptest! {
        /// Any text, any path: an answer within the document, no panic.
        #[test]
        fn never_panics_and_stays_in_the_document(
            text in "[ a-c:#\\-\"'\\[\\]{},&!|\\\\\n]{0,160}",
            path in "[a-c.?\\[\\]0-2]{0,12}",
        ) {
            let lines = text.split('\n').count();
            for syntax in [Syntax::Yaml, Syntax::Json] {
                let line = Locator::new(&text, 5, syntax).line(&path);
                proptest::prop_assert!((5..5 + lines).contains(&line), "{}", line);
            }
        }
    }

    #[test]
    fn json_objects_and_arrays() {
        let text = r#"{
  "apiVersion": "gateway.networking.k8s.io/v1",
  "kind": "Gateway",
  "metadata": {"name": "gw", "annotations": {"a": "{[\"x"}},
  "spec": {
    "listeners": [
      {"name": "web", "port": 80},
      {
        "name": "web",
        "port": 81,
        "nested": [[1, 2], {"k": [3]}],
        "p\u006frt2": "eighty"
      }
    ]
  }
}"#;
        let l = Locator::new(text, 3, Syntax::Json);
        assert_eq!(l.line("kind"), 5);
        assert_eq!(l.line("spec.listeners[0].port"), 9);
        assert_eq!(l.line("spec.listeners[1]"), 10);
        assert_eq!(l.line("spec.listeners[1].name"), 11);
        assert_eq!(l.line("spec.listeners[1].nested[1].k[0]"), 13);
        assert_eq!(l.line("spec.listeners[1].port2"), 14);
        // Missing: the deepest line found, or the document's.
        assert_eq!(l.line("spec.listeners[1].hostname"), 10);
        assert_eq!(l.line("spec.listeners[2]"), 8);
        assert_eq!(l.line("status"), 3);
    }
}
