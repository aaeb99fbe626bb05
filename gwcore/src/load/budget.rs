//! Budgets on the work one document may ask of the loader, checked in time
//! linear in its text.
//!
//! libyaml (under `serde_norway`) does work that grows with the square of
//! the flow nesting depth (each token looks at every open `[`/`{` level), and
//! `serde_norway` reads a whole document into events before its own
//! recursion limit (128) refuses it: 200 000 nested `[` took over 100 s.
//! Aliases make the parsed value larger than its text ("billion laughs").
//! So each YAML document is scanned first ([`scan_yaml`]), once, left to
//! right, with no backtracking:
//!
//! - block collections are tracked by indentation (a stack of the columns of
//!   the open sequences and mappings, `- ` items, `key:` lines, compact
//!   sequences at their key's column), flow collections by their brackets
//!   (and the mappings of one pair in a flow sequence, `[a: b]`); their sum
//!   is the nesting depth, refused over [`Limits::max_depth`];
//! - quoted scalars, plain scalars (with their continuation lines), block
//!   scalars (`|`, `>`) and comments are skipped the way libyaml reads them,
//!   line breaks as libyaml knows them (`\n`, `\r`, NEL, LS, PS), so that a
//!   bracket libyaml counts is not hidden in what the scan takes for text;
//! - every node is counted; an anchored node's size is the number of nodes
//!   in it (aliases within it counted at their own size), and each alias
//!   adds the size of the node it names: their sum over the document is
//!   refused over [`Limits::max_alias_expansion`]. The scan stops at the
//!   first budget crossed, so an exponential alias chain costs no more than
//!   its text.
//!
//! While parsing, [`ValueSeed`] builds the value and counts again, exactly:
//! collections nested deeper than the budget, and more values than the
//! document's text can spell out without aliases (two per byte, plus one)
//! plus the alias budget, stop it. That second count needs nothing from the
//! scan, so a document the scan misreads still cannot make the loader build
//! more than a linear amount.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{DeserializeSeed, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::Limits;

/// A budget a document went over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Crossed {
    /// Collections nested deeper than the limit.
    Depth(usize),
    /// Aliases standing for more nodes than the limit; the alias at which
    /// the sum went over.
    Aliases { limit: usize, alias: String },
    /// More values than the text holds plus the alias budget (seen while
    /// parsing).
    Values(usize),
}

impl fmt::Display for Crossed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Crossed::Depth(limit) => write!(
                f,
                "nesting deeper than {limit} levels (limit max_depth); nothing read from this document"
            ),
            Crossed::Aliases { limit, alias } => write!(
                f,
                "aliases expand to more than {limit} nodes (limit max_alias_expansion, crossed at *{alias}); nothing read from this document"
            ),
            Crossed::Values(limit) => write!(
                f,
                "more than {limit} values once aliases are expanded (limit max_alias_expansion, over what the text holds); nothing read from this document"
            ),
        }
    }
}

/// Where in the document a budget was crossed (a byte offset), and which.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Over {
    pub(crate) offset: usize,
    pub(crate) crossed: Crossed,
}

/// Scans one YAML document (the text between two `---` lines).
pub(crate) fn scan_yaml(doc: &str, limits: &Limits) -> Result<(), Over> {
    let mut s = Scan {
        b: doc.as_bytes(),
        pos: 0,
        line_start: 0,
        max_depth: limits.max_depth,
        max_alias: u64::try_from(limits.max_alias_expansion).unwrap_or(u64::MAX),
        stack: Vec::new(),
        flow: 0,
        flow_kinds: Vec::new(),
        implicit: 0,
        block_scalar: None,
        nodes: 0,
        expansion: 0,
        sizes: BTreeMap::new(),
        pending: None,
        open_flow: Vec::new(),
        open_block: Vec::new(),
    };
    s.run()
}

/// Scans a JSON text (a stream of values) for values nested deeper than
/// the budget: the 0-based index of each (counting the top-level arrays
/// and objects), with where it went over.
pub(crate) fn scan_json(text: &str, limits: &Limits) -> Vec<(usize, Over)> {
    let b = text.as_bytes();
    let mut out = Vec::new();
    let (mut depth, mut doc, mut i) = (0usize, 0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'[' | b'{' => {
                depth += 1;
                if depth > limits.max_depth && out.last().is_none_or(|(d, _)| *d != doc) {
                    let crossed = Crossed::Depth(limits.max_depth);
                    out.push((doc, Over { offset: i, crossed }));
                }
            }
            b']' | b'}' if depth > 0 => {
                depth -= 1;
                if depth == 0 {
                    doc += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coll {
    Seq,
    Map,
}

/// A block scalar being skipped: its lines are those indented more than
/// `parent` and at least `content` (the first line's, unless given).
#[derive(Debug, Clone, Copy)]
struct BlockScalar {
    parent: isize,
    content: Option<usize>,
}

struct Scan<'a> {
    b: &'a [u8],
    pos: usize,
    /// The offset of the current line's first byte.
    line_start: usize,
    max_depth: usize,
    max_alias: u64,
    /// Open block collections: column and kind.
    stack: Vec<(usize, Coll)>,
    /// Open flow collections.
    flow: usize,
    /// Each open flow collection: whether it is a sequence, and whether a
    /// single-pair mapping (`[a: b]`) is open in it.
    flow_kinds: Vec<(bool, bool)>,
    /// The single-pair mappings open.
    implicit: usize,
    block_scalar: Option<BlockScalar>,
    /// Nodes so far, aliases counted at the size of what they name.
    nodes: u64,
    /// Nodes aliases stood for so far.
    expansion: u64,
    /// The size of each anchored node read whole.
    sizes: BTreeMap<&'a [u8], u64>,
    /// An anchor waiting for its node: its name and `nodes` before it.
    pending: Option<(&'a [u8], u64)>,
    /// Anchored flow collections still open: name, flow level, start.
    open_flow: Vec<(&'a [u8], usize, u64)>,
    /// Anchored block collections still open: name, stack length, start.
    open_block: Vec<(&'a [u8], usize, u64)>,
}

/// The length of the line break at `i`, if there is one (libyaml's breaks:
/// LF, CR, CR LF, NEL, LS, PS).
fn brk(b: &[u8], i: usize) -> Option<usize> {
    match *b.get(i)? {
        b'\n' => Some(1),
        b'\r' => Some(if b.get(i + 1) == Some(&b'\n') { 2 } else { 1 }),
        0xC2 if b.get(i + 1) == Some(&0x85) => Some(2),
        0xE2 if b.get(i + 1) == Some(&0x80) && matches!(b.get(i + 2), Some(0xA8 | 0xA9)) => Some(3),
        _ => None,
    }
}

/// Whether the byte at `i` is a space, a tab, a line break or the end.
fn blank_or_end(b: &[u8], i: usize) -> bool {
    matches!(b.get(i), None | Some(b' ' | b'\t')) || brk(b, i).is_some()
}

fn flow_indicator(c: u8) -> bool {
    matches!(c, b',' | b'[' | b']' | b'{' | b'}')
}

impl<'a> Scan<'a> {
    fn over(&self, crossed: Crossed) -> Over {
        Over {
            offset: self.pos.min(self.b.len()),
            crossed,
        }
    }

    fn depth_check(&self) -> Result<(), Over> {
        if self.stack.len() + self.flow + self.implicit > self.max_depth {
            return Err(self.over(Crossed::Depth(self.max_depth)));
        }
        Ok(())
    }

    /// The offset of the line break ending the line at `i` (or the end).
    fn eol(&self, mut i: usize) -> usize {
        while i < self.b.len() && brk(self.b, i).is_none() {
            i += 1;
        }
        i
    }

    /// The offset after the line break at or after `i`.
    fn next_line(&self, i: usize) -> usize {
        let e = self.eol(i);
        e + brk(self.b, e).unwrap_or(0)
    }

    /// The column of the innermost block collection (libyaml's indent).
    fn block_indent(&self) -> isize {
        self.stack.last().map_or(-1, |&(c, _)| c as isize)
    }

    fn run(&mut self) -> Result<(), Over> {
        let b = self.b;
        while self.pos < b.len() {
            self.line_start = self.pos;
            let mut c = self.pos;
            while b.get(c) == Some(&b' ') {
                c += 1;
            }
            let indent = c - self.pos;
            // Blank: only spaces and tabs, or a BOM.
            let mut t = c;
            while matches!(b.get(t), Some(b' ' | b'\t')) {
                t += 1;
            }
            let blank = t >= b.len() || brk(b, t).is_some();
            if let Some(bs) = &mut self.block_scalar {
                if blank {
                    self.pos = self.next_line(c);
                    continue;
                }
                let content = *bs.content.get_or_insert(indent);
                if indent as isize > bs.parent && indent >= content {
                    self.pos = self.next_line(c);
                    continue;
                }
                self.block_scalar = None;
            }
            if blank || b[t] == b'#' || (b[c] == b'%' && indent == 0 && self.stack.is_empty()) {
                self.pos = self.next_line(c);
                continue;
            }
            self.close_block(|&(col, _)| col > indent);
            let dash = b[c] == b'-' && blank_or_end(b, c + 1);
            if !dash && self.stack.last() == Some(&(indent, Coll::Seq)) {
                self.close_block(|&(col, k)| col == indent && k == Coll::Seq);
            }
            self.pos = c;
            self.line()?;
        }
        Ok(())
    }

    /// Pops the block collections on top of the stack for which `f` holds.
    fn close_block(&mut self, f: impl Fn(&(usize, Coll)) -> bool) {
        while self.stack.last().is_some_and(&f) {
            self.stack.pop();
            while let Some(&(name, len, start)) = self.open_block.last() {
                if len <= self.stack.len() {
                    break;
                }
                self.open_block.pop();
                self.sizes.insert(name, self.nodes - start);
            }
        }
    }

    /// A block collection of `kind` at `col`: the open one if it is there,
    /// else a new one.
    fn block(&mut self, col: usize, kind: Coll) -> Result<(), Over> {
        if self.stack.last() == Some(&(col, kind)) {
            return Ok(());
        }
        self.stack.push((col, kind));
        self.depth_check()?;
        self.nodes = self.nodes.saturating_add(1);
        if let Some((name, start)) = self.pending.take() {
            self.open_block.push((name, self.stack.len(), start));
        }
        Ok(())
    }

    /// A scalar node (or a node not otherwise tracked).
    fn scalar(&mut self) {
        self.nodes = self.nodes.saturating_add(1);
        if let Some((name, start)) = self.pending.take() {
            self.sizes.insert(name, self.nodes - start);
        }
    }

    /// One line in block context, from its first token; leaves `pos` at
    /// the start of the next line for [`Scan::run`] (past any lines a flow
    /// collection or a scalar took).
    fn line(&mut self) -> Result<(), Over> {
        let b = self.b;
        // `- ` items (compact ones nested on one line) and `? ` keys.
        loop {
            let col = self.pos - self.line_start;
            let kind = match b.get(self.pos) {
                Some(b'-') if blank_or_end(b, self.pos + 1) => Coll::Seq,
                // An explicit key, and its value.
                Some(b'?' | b':') if blank_or_end(b, self.pos + 1) => Coll::Map,
                _ => break,
            };
            self.block(col, kind)?;
            self.pos += 1;
            while matches!(b.get(self.pos), Some(b' ' | b'\t')) {
                self.pos += 1;
            }
        }
        let key_col = self.pos - self.line_start;
        let mut first = true;
        loop {
            self.skip_blanks();
            let Some(&c) = b.get(self.pos) else {
                return Ok(());
            };
            if let Some(n) = brk(b, self.pos) {
                if self.flow == 0 {
                    self.pos += n;
                    return Ok(());
                }
                self.pos += n;
                continue;
            }
            let token = self.pos;
            match c {
                b'#' => {
                    self.pos = self.eol(self.pos);
                }
                b'[' | b'{' => {
                    self.flow += 1;
                    self.flow_kinds.push((c == b'[', false));
                    self.depth_check()?;
                    self.nodes = self.nodes.saturating_add(1);
                    if let Some((name, start)) = self.pending.take() {
                        self.open_flow.push((name, self.flow, start));
                    }
                    self.pos += 1;
                }
                b']' | b'}' => {
                    self.pos += 1;
                    if self.flow > 0 {
                        self.flow -= 1;
                        if let Some((_, true)) = self.flow_kinds.pop() {
                            self.implicit -= 1;
                        }
                        while let Some(&(name, level, start)) = self.open_flow.last() {
                            if level <= self.flow {
                                break;
                            }
                            self.open_flow.pop();
                            self.sizes.insert(name, self.nodes - start);
                        }
                    }
                }
                b',' if self.flow > 0 => {
                    if let Some(last @ (true, true)) = self.flow_kinds.last_mut() {
                        last.1 = false;
                        self.implicit -= 1;
                    }
                    self.pos += 1;
                }
                b'?' if self.flow > 0 && blank_or_end(b, self.pos + 1) => {
                    // `[? a : b]`: an explicit key opens a mapping of one
                    // pair in a sequence too.
                    if let Some(last @ (true, false)) = self.flow_kinds.last_mut() {
                        last.1 = true;
                        self.implicit += 1;
                        self.depth_check()?;
                    }
                    self.pos += 1;
                }
                b':' if self.flow > 0 || blank_or_end(b, self.pos + 1) => {
                    if self.flow == 0 {
                        self.block(key_col, Coll::Map)?;
                    } else if let Some(last @ (true, false)) = self.flow_kinds.last_mut() {
                        // `[a: b]`: a mapping of one pair in the sequence.
                        last.1 = true;
                        self.implicit += 1;
                        self.depth_check()?;
                    }
                    self.pos += 1;
                }
                b'&' | b'*' | b'!' => {
                    let start = self.pos + 1;
                    let mut e = start;
                    while !blank_or_end(b, e) && !flow_indicator(b[e]) {
                        e += 1;
                    }
                    self.pos = e;
                    let name = &b[start..e];
                    if c == b'&' {
                        self.pending = Some((name, self.nodes));
                    } else if c == b'*' {
                        self.alias(name, token)?;
                    }
                    continue;
                }
                b'|' | b'>' if self.flow == 0 && self.block_scalar_header() => {
                    let parent = self.block_indent();
                    let explicit = b[token + 1..self.pos]
                        .iter()
                        .find(|c| c.is_ascii_digit())
                        .map(|d| usize::from(d - b'0'));
                    let content = explicit.map(|d| parent.max(0) as usize + d);
                    self.scalar();
                    self.block_scalar = Some(BlockScalar { parent, content });
                    self.pos = self.next_line(self.pos);
                    return Ok(());
                }
                b'"' | b'\'' => {
                    self.quoted(c);
                    self.node(first && self.flow == 0, key_col)?;
                }
                _ => {
                    self.plain();
                    self.node(first && self.flow == 0, key_col)?;
                }
            }
            first = false;
        }
    }

    /// After a scalar that may be the key of a block mapping (the line's
    /// first token): if a `:` follows, the mapping comes first, so that an
    /// anchor before the line names the mapping.
    fn node(&mut self, maybe_key: bool, key_col: usize) -> Result<(), Over> {
        if maybe_key {
            let mut i = self.pos;
            while matches!(self.b.get(i), Some(b' ' | b'\t')) {
                i += 1;
            }
            if self.b.get(i) == Some(&b':') && blank_or_end(self.b, i + 1) {
                self.block(key_col, Coll::Map)?;
            }
        }
        self.scalar();
        Ok(())
    }

    fn alias(&mut self, name: &'a [u8], at: usize) -> Result<(), Over> {
        // An alias of a node still open (a recursive one) counts what the
        // node holds so far; an unknown one (an error for the parser) one.
        let open = self
            .open_flow
            .iter()
            .chain(&self.open_block)
            .rev()
            .find(|o| o.0 == name)
            .map(|o| self.nodes - o.2);
        let size = self.sizes.get(name).copied().or(open).unwrap_or(1).max(1);
        self.pending = None;
        self.expansion = self.expansion.saturating_add(size);
        self.nodes = self.nodes.saturating_add(size);
        if self.expansion > self.max_alias {
            return Err(Over {
                offset: at,
                crossed: Crossed::Aliases {
                    limit: self.max_alias as usize,
                    alias: String::from_utf8_lossy(name).into_owned(),
                },
            });
        }
        Ok(())
    }

    /// Spaces, tabs and BOMs; in a flow collection, line breaks too.
    fn skip_blanks(&mut self) {
        let b = self.b;
        loop {
            match b.get(self.pos) {
                Some(b' ' | b'\t') => self.pos += 1,
                Some(0xEF) if b.get(self.pos + 1..self.pos + 3) == Some(&[0xBB, 0xBF]) => {
                    self.pos += 3;
                }
                _ => match brk(b, self.pos) {
                    Some(n) if self.flow > 0 => self.pos += n,
                    _ => return,
                },
            }
        }
    }

    /// Whether `|` or `>` at `pos` starts a block scalar (its header:
    /// an indentation digit and a chomping sign, then a comment or the
    /// line's end); if so, `pos` is after the header.
    fn block_scalar_header(&mut self) -> bool {
        let b = self.b;
        let mut i = self.pos + 1;
        while matches!(b.get(i), Some(b'1'..=b'9' | b'+' | b'-')) && i - self.pos <= 2 {
            i += 1;
        }
        let mut j = i;
        while matches!(b.get(j), Some(b' ' | b'\t')) {
            j += 1;
        }
        let ends = j >= b.len() || brk(b, j).is_some() || (b[j] == b'#' && j > i);
        if ends {
            self.pos = i;
        }
        ends
    }

    /// A quoted scalar from its opening quote; it may span lines.
    fn quoted(&mut self, q: u8) {
        let b = self.b;
        let mut i = self.pos + 1;
        while i < b.len() {
            match b[i] {
                b'\\' if q == b'"' => i += 2,
                b'\'' if q == b'\'' && b.get(i + 1) == Some(&b'\'') => i += 2,
                c if c == q => {
                    i += 1;
                    break;
                }
                _ => i += 1,
            }
        }
        self.pos = i.min(b.len());
    }

    /// A plain scalar from its first byte. In a flow collection it ends at
    /// a flow indicator, at `: `, and at ` #`; in block context at `: `, at
    /// ` #`, and at a line's end unless the next line that is not blank is
    /// indented deeper than the innermost block collection (libyaml's
    /// continuation lines).
    fn plain(&mut self) {
        let b = self.b;
        let mut i = self.pos;
        while let Some(&c) = b.get(i) {
            if let Some(n) = brk(b, i) {
                if self.flow > 0 {
                    i += n;
                    continue;
                }
                // A continuation line?
                let mut j = i + n;
                let next = loop {
                    let start = j;
                    while b.get(j) == Some(&b' ') {
                        j += 1;
                    }
                    let mut t = j;
                    while matches!(b.get(t), Some(b' ' | b'\t')) {
                        t += 1;
                    }
                    match brk(b, t) {
                        Some(m) => j = t + m,
                        None if t >= b.len() => break None,
                        None => break Some((start, j - start, t)),
                    }
                };
                match next {
                    Some((start, indent, t))
                        if indent as isize > self.block_indent() && b[t] != b'#' =>
                    {
                        self.line_start = start;
                        i = t;
                        continue;
                    }
                    _ => break,
                }
            }
            let prev_blank = i > self.pos && matches!(b[i - 1], b' ' | b'\t');
            match c {
                b'#' if prev_blank => break,
                b':' if blank_or_end(b, i + 1)
                    || (self.flow > 0 && b.get(i + 1).is_some_and(|&n| flow_indicator(n))) =>
                {
                    break;
                }
                c if self.flow > 0 && flow_indicator(c) => break,
                _ => i += 1,
            }
        }
        self.pos = i.max(self.pos + 1).min(b.len());
    }
}

/// Builds a [`serde_json::Value`] as its own `Deserialize` does, counting
/// the values and the nesting as it goes; over a budget, it stops with an
/// error and says which budget in `crossed`.
pub(crate) struct ValueSeed<'c> {
    pub(crate) max_depth: usize,
    /// Values left before the budget is spent.
    pub(crate) values_left: &'c Cell<u64>,
    pub(crate) depth: usize,
    pub(crate) crossed: &'c Cell<Option<Budget>>,
}

/// Which budget [`ValueSeed`] stopped at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Budget {
    Depth,
    Values,
}

impl<'c> ValueSeed<'c> {
    /// The values a document of `len` bytes may yield: what its text can
    /// spell out (two per byte, plus one) and `max_alias_expansion` more.
    pub(crate) fn values_budget(len: usize, limits: &Limits) -> u64 {
        let len = u64::try_from(len).unwrap_or(u64::MAX);
        let alias = u64::try_from(limits.max_alias_expansion).unwrap_or(u64::MAX);
        len.saturating_mul(2)
            .saturating_add(1)
            .saturating_add(alias)
    }

    fn count<E: serde::de::Error>(&self) -> Result<(), E> {
        let left = self.values_left.get();
        if left == 0 {
            self.crossed.set(Some(Budget::Values));
            return Err(E::custom("value budget spent"));
        }
        self.values_left.set(left - 1);
        Ok(())
    }

    fn child(&self) -> ValueSeed<'c> {
        ValueSeed {
            max_depth: self.max_depth,
            values_left: self.values_left,
            depth: self.depth + 1,
            crossed: self.crossed,
        }
    }

    fn enter<E: serde::de::Error>(&self) -> Result<(), E> {
        if self.depth >= self.max_depth {
            self.crossed.set(Some(Budget::Depth));
            return Err(E::custom("nesting budget spent"));
        }
        Ok(())
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any value")
    }

    fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Value, E> {
        self.count()?;
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Value, E> {
        self.count()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Value, E> {
        self.count()?;
        Ok(Value::Number(v.into()))
    }

    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Value, E> {
        self.count()?;
        serde::Deserialize::deserialize(serde::de::value::I128Deserializer::<E>::new(v))
            .map(Value::Number)
    }

    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Value, E> {
        self.count()?;
        serde::Deserialize::deserialize(serde::de::value::U128Deserializer::<E>::new(v))
            .map(Value::Number)
    }

    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Value, E> {
        self.count()?;
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Value, E> {
        self.count()?;
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Value, E> {
        self.count()?;
        Ok(Value::String(v))
    }

    fn visit_none<E: serde::de::Error>(self) -> Result<Value, E> {
        self.count()?;
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_unit<E: serde::de::Error>(self) -> Result<Value, E> {
        self.count()?;
        Ok(Value::Null)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        self.count()?;
        self.enter()?;
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(self.child())? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        self.count()?;
        self.enter()?;
        let mut out = Map::new();
        while let Some(k) = map.next_key::<String>()? {
            let v = map.next_value_seed(self.child())?;
            out.insert(k, v);
        }
        Ok(Value::Object(out))
    }
}

/// `kind ns/name` of a document, when its block-style text says so at the
/// top level (`kind:`, and `name:`/`namespace:` under `metadata:`).
pub(crate) fn label(doc: &str) -> Option<String> {
    let (mut kind, mut name, mut ns) = (None, None, None);
    let mut in_meta = false;
    let mut meta_indent = None;
    for line in doc.lines() {
        let content = line.trim_start_matches(' ');
        let indent = line.len() - content.len();
        if content.is_empty() || content.starts_with('#') {
            continue;
        }
        let Some((key, value)) = content.split_once(':') else {
            in_meta &= indent > 0;
            continue;
        };
        let value = value.split(" #").next().unwrap_or("").trim();
        let value = if value.starts_with('{') {
            value
        } else {
            value.trim_matches(|c| c == '"' || c == '\'')
        };
        if indent == 0 {
            in_meta = key == "metadata";
            meta_indent = None;
            if key == "kind" && !value.is_empty() {
                kind = Some(value.to_owned());
            }
            // `metadata: {name: a, namespace: b}` on one line.
            if let Some(inner) = value.strip_prefix('{').and_then(|v| v.strip_suffix('}'))
                && in_meta
            {
                for entry in inner.split(',') {
                    let Some((k, v)) = entry.split_once(':') else {
                        continue;
                    };
                    let v = v.trim().trim_matches(|c| c == '"' || c == '\'');
                    match k.trim() {
                        "name" if !v.is_empty() => name = Some(v.to_owned()),
                        "namespace" if !v.is_empty() => ns = Some(v.to_owned()),
                        _ => {}
                    }
                }
            }
        } else if in_meta && *meta_indent.get_or_insert(indent) == indent {
            match key {
                "name" if !value.is_empty() => name = Some(value.to_owned()),
                "namespace" if !value.is_empty() => ns = Some(value.to_owned()),
                _ => {}
            }
        }
    }
    let kind = kind?;
    Some(match (ns, name) {
        (Some(ns), Some(name)) => format!("{kind} {ns}/{name}"),
        (None, Some(name)) => format!("{kind} {name}"),
        _ => kind,
    })
}

#[cfg(test)]
mod tests;
