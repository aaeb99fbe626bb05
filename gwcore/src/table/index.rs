//! The lookup structures of the table, laid out to touch few cache lines:
//! host maps with inline keys, and per-bucket path tries stored in flat
//! arrays (nodes, children with the first 8 bytes of their segment inline,
//! candidate ids, and an arena for the rest of long segments).

use std::borrow::Borrow;
use std::hash::{Hash, Hasher};

// ---------------------------------------------------------------------------
// The hasher: FxHash ([`rustc_hash`]), as in gwcore-proxy. Keys come from
// configuration (route and listener hostnames, gRPC methods), lookups from
// requests.

pub(crate) type FastMap<K, V> = rustc_hash::FxHashMap<K, V>;

// ---------------------------------------------------------------------------
// Host keys: hostnames up to 30 bytes live inside the map's slot, so a
// lookup does not follow a pointer to compare keys.

const INLINE: usize = 30;

#[derive(Clone)]
pub(crate) enum HostKey {
    Inline { len: u8, buf: [u8; INLINE] },
    Heap(Box<[u8]>),
}

impl HostKey {
    pub(crate) fn new(s: &[u8]) -> HostKey {
        if s.len() <= INLINE {
            let mut buf = [0u8; INLINE];
            buf[..s.len()].copy_from_slice(s);
            HostKey::Inline {
                len: s.len() as u8,
                buf,
            }
        } else {
            HostKey::Heap(s.into())
        }
    }

    #[inline]
    fn bytes(&self) -> &[u8] {
        match self {
            HostKey::Inline { len, buf } => &buf[..*len as usize],
            HostKey::Heap(b) => b,
        }
    }
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", String::from_utf8_lossy(self.bytes()))
    }
}

impl Borrow<[u8]> for HostKey {
    #[inline]
    fn borrow(&self) -> &[u8] {
        self.bytes()
    }
}

impl Hash for HostKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Must hash exactly as `[u8]` does, for `Borrow<[u8]>` lookups.
        self.bytes().hash(state)
    }
}

impl PartialEq for HostKey {
    fn eq(&self, other: &Self) -> bool {
        self.bytes() == other.bytes()
    }
}

impl Eq for HostKey {}

/// Entries by hostname: exact, `*.` wildcard (by suffix), and one for "no
/// hostname".
#[derive(Debug, Clone)]
pub(crate) struct HostMap<T> {
    exact: FastMap<HostKey, T>,
    /// Keyed by the wildcard's suffix including its dot (`.example.com`).
    wild: FastMap<HostKey, T>,
    /// Bit `n` set: a wildcard suffix of `n` bytes may be in `wild`
    /// (bit 63: one of 63 bytes or more), so a lookup probes only the
    /// suffixes of the host with such a length.
    wild_lens: u64,
    any: Option<T>,
}

impl<T> Default for HostMap<T> {
    fn default() -> Self {
        HostMap {
            exact: FastMap::default(),
            wild: FastMap::default(),
            wild_lens: 0,
            any: None,
        }
    }
}

impl<T> HostMap<T> {
    #[inline]
    fn len_bit(len: usize) -> u64 {
        1 << len.min(63)
    }

    fn note_wild(&mut self, suffix: &str) {
        self.wild_lens |= Self::len_bit(suffix.len());
    }

    /// Whether the only entry is the one for "no hostname".
    pub(crate) fn only_any(&self) -> bool {
        self.exact.is_empty() && self.wild.is_empty() && self.any.is_some()
    }

    /// Sets the entry of `hostname` unless it has one.
    pub(crate) fn insert_if_absent(&mut self, hostname: Option<&str>, v: T) {
        match hostname {
            None => {
                if self.any.is_none() {
                    self.any = Some(v);
                }
            }
            Some(h) => match h.strip_prefix('*') {
                Some(suffix) => {
                    self.note_wild(suffix);
                    self.wild
                        .entry(HostKey::new(suffix.as_bytes()))
                        .or_insert(v);
                }
                None => {
                    self.exact.entry(HostKey::new(h.as_bytes())).or_insert(v);
                }
            },
        }
    }

    /// The entry of `hostname` itself (not of the hostnames it accepts).
    pub(crate) fn get(&self, hostname: Option<&str>) -> Option<&T> {
        match hostname {
            None => self.any.as_ref(),
            Some(h) => match h.strip_prefix('*') {
                Some(suffix) => self.wild.get(suffix.as_bytes()),
                None => self.exact.get(h.as_bytes()),
            },
        }
    }

    /// Sets (`Some`) or removes (`None`) the entry of `hostname`.
    pub(crate) fn set(&mut self, hostname: Option<&str>, v: Option<T>) {
        match (hostname, v) {
            (None, v) => self.any = v,
            (Some(h), v) => match (h.strip_prefix('*'), v) {
                (Some(suffix), Some(v)) => {
                    self.note_wild(suffix);
                    self.wild.insert(HostKey::new(suffix.as_bytes()), v);
                }
                (Some(suffix), None) => {
                    // The length's bit stays set: at worst a probe more.
                    self.wild.remove(suffix.as_bytes());
                }
                (None, Some(v)) => {
                    self.exact.insert(HostKey::new(h.as_bytes()), v);
                }
                (None, None) => {
                    self.exact.remove(h.as_bytes());
                }
            },
        }
    }

    /// Every entry with its hostname (`*.` wildcards spelled so), in no
    /// particular order.
    pub(crate) fn entries(&self) -> impl Iterator<Item = (Option<String>, &T)> {
        let text = |k: &HostKey| String::from_utf8_lossy(k.bytes()).into_owned();
        self.exact
            .iter()
            .map(move |(k, v)| (Some(text(k)), v))
            .chain(
                self.wild
                    .iter()
                    .map(move |(k, v)| (Some(format!("*{}", text(k))), v)),
            )
            .chain(self.any.iter().map(|v| (None, v)))
    }

    /// Whether there is no entry.
    pub(crate) fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.wild.is_empty() && self.any.is_none()
    }

    /// Frees spare capacity.
    pub(crate) fn shrink(&mut self) {
        self.exact.shrink_to_fit();
        self.wild.shrink_to_fit();
    }

    /// Calls `f` on the entries that accept `host`, most specific first
    /// (exact, wildcards from the longest, none), until it returns `Some`.
    #[inline]
    pub(crate) fn find_map<'a, R>(
        &'a self,
        host: &str,
        mut f: impl FnMut(&'a T) -> Option<R>,
    ) -> Option<R> {
        let b = host.as_bytes();
        if !self.exact.is_empty()
            && let Some(t) = self.exact.get(b)
            && let Some(r) = f(t)
        {
            return Some(r);
        }
        if self.wild_lens != 0 {
            for i in 1..b.len() {
                if b[i] != b'.' || self.wild_lens & Self::len_bit(b.len() - i) == 0 {
                    continue;
                }
                if let Some(t) = self.wild.get(&b[i..])
                    && let Some(r) = f(t)
                {
                    return Some(r);
                }
            }
        }
        self.any.as_ref().and_then(f)
    }
}

// ---------------------------------------------------------------------------
// Path tries.

/// The first 8 bytes of a segment, zero-padded, big-endian: ordering these
/// then the rest orders segments as byte strings (segments hold no NUL: a
/// normalized path keeps `%00` encoded).
///
/// Built from loads of fixed width (two overlapping ones for 2 to 7 bytes),
/// not by copying into a zeroed buffer: a copy of variable length is a call
/// to `memcpy`, and the 8-byte read of its bytes stalls on store
/// forwarding, once per segment of every request.
#[inline]
fn head8(seg: &[u8]) -> u64 {
    let n = seg.len();
    if let Some(b) = seg.first_chunk::<8>() {
        return u64::from_be_bytes(*b);
    }
    let v = if n >= 4 {
        // Bytes 0..4 and n-4..n; the overlap holds the same bytes.
        let a = u32::from_be_bytes([seg[0], seg[1], seg[2], seg[3]]) as u64;
        let b = u32::from_be_bytes([seg[n - 4], seg[n - 3], seg[n - 2], seg[n - 1]]) as u64;
        (a << 32) | (b << (8 * (8 - n)))
    } else if n >= 2 {
        let a = u16::from_be_bytes([seg[0], seg[1]]) as u64;
        let b = u16::from_be_bytes([seg[n - 2], seg[n - 1]]) as u64;
        (a << 48) | (b << (8 * (8 - n)))
    } else if n == 1 {
        (seg[0] as u64) << 56
    } else {
        0
    };
    v
}

/// The hash of a segment, from its [`head8`] and the bytes after the first
/// 8, for the hashed children of a node with many.
#[inline]
fn seg_hash(head: u64, seg: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut h = (head ^ seg.len() as u64).wrapping_mul(K);
    if seg.len() > 8 {
        for chunk in seg[8..].chunks(8) {
            h = (h.rotate_left(23) ^ head8(chunk)).wrapping_mul(K);
        }
    }
    h ^ (h >> 29)
}

#[derive(Debug, Clone, Copy, Default)]
struct Span {
    start: u32,
    len: u32,
}

/// A node with more children than this finds a child by hash, not by
/// searching [`PathTrie::heads`]: a binary search among many children reads
/// a cache line at each step, a hash table one or two.
const HASHED_FROM: u32 = 8;

/// The slot count of the hash table of a node with `kids` children: a
/// power of two at least twice `kids`, so probe runs stay short.
#[inline]
fn table_len(kids: u32) -> usize {
    (kids as usize * 2).next_power_of_two()
}

/// A slot of a node's hash table: a child's [`head8`] and length inline, so
/// a probe reads [`PathTrie::entries`] only at the child that matches
/// (and the arena only for a segment longer than 8 bytes).
#[derive(Debug, Clone, Copy)]
struct HashSlot {
    head: u64,
    len: u32,
    /// The child's entry; [`EMPTY`] for a free slot.
    entry: u32,
}

const EMPTY: u32 = u32::MAX;

/// One edge of the trie and everything about the node it leads to, so that
/// a walk reads one array: children groups are laid out depth-first, so the
/// next level is usually on a nearby cache line. The first 8 bytes of the
/// edge's segment are in [`PathTrie::heads`], at the same index.
#[derive(Debug, Clone, Copy)]
struct Child {
    len: u32,
    /// Offset in the arena of the bytes after the first 8.
    off: u32,
    /// The node's children.
    kids: Span,
    /// Where the node's hash table starts in [`PathTrie::table`], when it
    /// has more than [`HASHED_FROM`] children.
    table: u32,
    /// Candidates of the Exact paths ending at the node (see [`Ids`]).
    exact: Span,
    /// Candidates of the PathPrefixes ending at the node (see [`Ids`]).
    prefix: Span,
    /// The parent's entry, [`ROOT`] for the root.
    up: u32,
}

/// The cursor of the root.
pub(crate) const ROOT: u32 = u32::MAX;

/// A path trie by segment. Exact paths end at the node of their last
/// segment (a trailing `/` is a last, empty segment); PathPrefixes at the
/// node of their last segment with their trailing `/` dropped. Nodes are
/// named by cursors: [`ROOT`] or the index of the edge leading to them.
///
/// A candidate list of one id (the common case) is kept in its span
/// itself (`start` is the id), so reading it touches no other array.
#[derive(Debug, Default)]
pub(crate) struct PathTrie {
    /// [`head8`] of each entry's segment: a child of a node with few
    /// children is searched for here, eight children to a cache line, and
    /// [`PathTrie::entries`] is read only at the one that matches.
    heads: Box<[u64]>,
    entries: Box<[Child]>,
    /// The hash tables of the nodes with many children, one after another.
    table: Box<[HashSlot]>,
    ids: Box<[u32]>,
    arena: Box<[u8]>,
    root_kids: Span,
    root_table: u32,
    root_exact: Span,
    root_prefix: Span,
}

impl PathTrie {
    #[inline]
    fn ids<'a>(&'a self, s: &'a Span) -> &'a [u32] {
        if s.len == 1 {
            std::slice::from_ref(&s.start)
        } else {
            &self.ids[s.start as usize..(s.start + s.len) as usize]
        }
    }

    /// Whether entry `i` is the edge of segment `seg`, whose length and
    /// head already matched.
    #[inline]
    fn rest_matches(&self, i: usize, seg: &[u8]) -> bool {
        if seg.len() <= 8 {
            return true;
        }
        let c = &self.entries[i];
        self.arena[c.off as usize..(c.off + c.len - 8) as usize] == seg[8..]
    }

    #[inline]
    fn child(&self, kids: Span, table: u32, seg: &[u8]) -> Option<u32> {
        let start = kids.start as usize;
        let head = head8(seg);
        if kids.len > HASHED_FROM {
            let slots = &self.table[table as usize..table as usize + table_len(kids.len)];
            let mask = slots.len() - 1;
            let mut i = seg_hash(head, seg) as usize & mask;
            loop {
                let s = &slots[i];
                if s.entry == EMPTY {
                    return None;
                }
                if s.head == head
                    && s.len as usize == seg.len()
                    && self.rest_matches(s.entry as usize, seg)
                {
                    return Some(s.entry);
                }
                i = (i + 1) & mask;
            }
        }
        let heads = &self.heads[start..start + kids.len as usize];
        // Children are sorted by segment, so by head: the first with this
        // head, then those that share it (segments longer than 8 bytes).
        let first = heads.iter().position(|&h| h >= head)?;
        for (i, &h) in heads.iter().enumerate().skip(first) {
            if h != head {
                return None;
            }
            let c = &self.entries[start + i];
            if c.len as usize == seg.len() && self.rest_matches(start + i, seg) {
                return Some((start + i) as u32);
            }
        }
        None
    }

    /// Walks `path` (normalized) as deep as the trie goes: the cursor of the
    /// node reached and whether every segment was consumed.
    #[inline]
    pub(crate) fn walk(&self, path: &str) -> (u32, bool) {
        let mut cur = ROOT;
        let mut kids = self.root_kids;
        let mut table = self.root_table;
        let p = path.as_bytes();
        let p = p.strip_prefix(b"/").unwrap_or(p);
        for seg in p.split(|&c| c == b'/') {
            if kids.len == 0 {
                return (cur, false);
            }
            match self.child(kids, table, seg) {
                Some(c) => {
                    cur = c;
                    let e = &self.entries[c as usize];
                    kids = e.kids;
                    table = e.table;
                }
                None => return (cur, false),
            }
        }
        (cur, true)
    }

    /// Candidates of the Exact paths ending at `cur`, best first.
    #[inline]
    pub(crate) fn exact(&self, cur: u32) -> &[u32] {
        match self.entries.get(cur as usize) {
            Some(c) => self.ids(&c.exact),
            None => self.ids(&self.root_exact),
        }
    }

    /// Candidates of the PathPrefixes ending at `cur`, best first.
    #[inline]
    pub(crate) fn prefix(&self, cur: u32) -> &[u32] {
        match self.entries.get(cur as usize) {
            Some(c) => self.ids(&c.prefix),
            None => self.ids(&self.root_prefix),
        }
    }

    /// The parent of `cur` (the root is its own parent).
    #[inline]
    pub(crate) fn parent(&self, cur: u32) -> u32 {
        self.entries.get(cur as usize).map_or(ROOT, |c| c.up)
    }
}

#[derive(Debug, Default)]
struct BuildNode {
    children: Vec<(Box<str>, u32)>,
    exact: Vec<u32>,
    prefix: Vec<u32>,
}

/// Builds a [`PathTrie`].
#[derive(Debug)]
pub(crate) struct TrieBuilder {
    nodes: Vec<BuildNode>,
}

impl TrieBuilder {
    pub(crate) fn new() -> TrieBuilder {
        TrieBuilder {
            nodes: vec![BuildNode::default()],
        }
    }

    fn node_for<'s>(&mut self, segs: impl Iterator<Item = &'s str>) -> usize {
        let mut n = 0usize;
        for s in segs {
            n = match self.nodes[n].children.iter().find(|(c, _)| **c == *s) {
                Some(c) => c.1 as usize,
                None => {
                    let id = self.nodes.len();
                    self.nodes.push(BuildNode::default());
                    self.nodes[n].children.push((s.into(), id as u32));
                    id
                }
            };
        }
        n
    }

    /// Adds an Exact path.
    pub(crate) fn add_exact(&mut self, path: &str, id: u32) {
        let n = self.node_for(super::path::segments(path));
        self.nodes[n].exact.push(id);
    }

    /// Adds a PathPrefix.
    pub(crate) fn add_prefix(&mut self, prefix: &str, id: u32) {
        let n = self.node_for(super::path::prefix_segments(prefix).into_iter());
        self.nodes[n].prefix.push(id);
    }

    /// Freezes. Candidate lists keep the order their ids were added in
    /// (the table adds them best first).
    pub(crate) fn build(mut self) -> PathTrie {
        let n = self.nodes.len();
        let mut ids: Vec<u32> = Vec::new();
        let spans = |v: &mut Vec<u32>, ids: &mut Vec<u32>| match v[..] {
            // One id: kept in the span (see `PathTrie::ids`).
            [id] => Span { start: id, len: 1 },
            _ => {
                let s = Span {
                    start: ids.len() as u32,
                    len: v.len() as u32,
                };
                ids.extend(v.iter().copied());
                s
            }
        };
        let mut exact = vec![Span::default(); n];
        let mut prefix = vec![Span::default(); n];
        for (i, node) in self.nodes.iter_mut().enumerate() {
            exact[i] = spans(&mut node.exact, &mut ids);
            prefix[i] = spans(&mut node.prefix, &mut ids);
            node.children.sort_by(|a, b| a.0.cmp(&b.0));
        }
        // Depth-first layout of the children groups.
        let mut entry_of = vec![ROOT; n];
        let mut kids = vec![Span::default(); n];
        let mut tables = vec![0u32; n];
        let mut entries: Vec<Child> = Vec::with_capacity(n.saturating_sub(1));
        let mut heads: Vec<u64> = Vec::with_capacity(n.saturating_sub(1));
        let mut table: Vec<HashSlot> = Vec::new();
        let mut arena = Vec::new();
        let mut stack = vec![0usize];
        while let Some(b) = stack.pop() {
            let start = entries.len() as u32;
            for (seg, child) in &self.nodes[b].children {
                let bytes = seg.as_bytes();
                let c = *child as usize;
                entry_of[c] = entries.len() as u32;
                heads.push(head8(bytes));
                entries.push(Child {
                    len: bytes.len() as u32,
                    off: arena.len() as u32,
                    kids: Span::default(),
                    table: 0,
                    exact: exact[c],
                    prefix: prefix[c],
                    up: entry_of[b],
                });
                if bytes.len() > 8 {
                    arena.extend_from_slice(&bytes[8..]);
                }
            }
            let len = self.nodes[b].children.len() as u32;
            kids[b] = Span { start, len };
            if len > HASHED_FROM {
                // Linear probing in a table at most half full.
                tables[b] = table.len() as u32;
                let at = table.len();
                let size = table_len(len);
                table.resize(
                    at + size,
                    HashSlot {
                        head: 0,
                        len: 0,
                        entry: EMPTY,
                    },
                );
                let slots = &mut table[at..];
                for (k, (seg, _)) in self.nodes[b].children.iter().enumerate() {
                    let bytes = seg.as_bytes();
                    let head = head8(bytes);
                    let mut i = seg_hash(head, bytes) as usize & (size - 1);
                    while slots[i].entry != EMPTY {
                        i = (i + 1) & (size - 1);
                    }
                    slots[i] = HashSlot {
                        head,
                        len: bytes.len() as u32,
                        entry: start + k as u32,
                    };
                }
            }
            stack.extend(
                self.nodes[b]
                    .children
                    .iter()
                    .rev()
                    .map(|(_, c)| *c as usize),
            );
        }
        for b in 1..n {
            let e = &mut entries[entry_of[b] as usize];
            e.kids = kids[b];
            e.table = tables[b];
        }
        PathTrie {
            heads: heads.into_boxed_slice(),
            entries: entries.into_boxed_slice(),
            table: table.into_boxed_slice(),
            ids: ids.into_boxed_slice(),
            arena: arena.into_boxed_slice(),
            root_kids: kids[0],
            root_table: tables[0],
            root_exact: exact[0],
            root_prefix: prefix[0],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trie_walks_long_and_short_segments() {
        let mut b = TrieBuilder::new();
        b.add_prefix("/a/averyveryverylongsegment/x/", 1);
        b.add_exact("/a/averyveryverylongsegmenT", 2);
        b.add_exact("/", 3);
        for i in 0..20 {
            b.add_prefix(&format!("/many/s{i}"), 100 + i);
        }
        let t = b.build();
        let (n, done) = t.walk("/a/averyveryverylongsegment/x/y");
        assert!(!done);
        assert_eq!(t.prefix(n), &[1]);
        let (n, done) = t.walk("/a/averyveryverylongsegmenT");
        assert!(done);
        assert_eq!(t.exact(n), &[2]);
        let (n, done) = t.walk("/");
        assert!(done);
        assert_eq!(t.exact(n), &[3]);
        for i in 0..20 {
            let (n, _) = t.walk(&format!("/many/s{i}/z"));
            assert_eq!(t.prefix(n), &[100 + i], "binary search among many children");
        }
        let (n, done) = t.walk("/many/s7x");
        assert!(!done);
        assert!(t.prefix(n).is_empty());
        assert_eq!(t.parent(t.parent(n)), ROOT);
    }

    #[test]
    fn head8_is_the_zero_padded_prefix() {
        let bytes = b"abcdefghijklmnop";
        for n in 0..=bytes.len() {
            let mut b = [0u8; 8];
            b[..n.min(8)].copy_from_slice(&bytes[..n.min(8)]);
            assert_eq!(head8(&bytes[..n]), u64::from_be_bytes(b), "length {n}");
        }
    }

    #[test]
    fn hashed_children_tell_apart_segments_sharing_a_head() {
        // More than HASHED_FROM children, all with the same first 8 bytes
        // and many with the same length: only the arena tells them apart.
        let mut b = TrieBuilder::new();
        let segs: Vec<String> = (0..40)
            .map(|i| format!("/commonhead{i}"))
            .chain((0..12).map(|i| format!("/s{i}")))
            .collect();
        for (i, s) in segs.iter().enumerate() {
            b.add_prefix(s, i as u32);
            b.add_exact(&format!("{s}/"), 1000 + i as u32);
        }
        let t = b.build();
        assert!(t.root_kids.len > HASHED_FROM);
        for (i, s) in segs.iter().enumerate() {
            let (n, done) = t.walk(&format!("{s}/x"));
            assert!(!done, "{s}");
            assert_eq!(t.prefix(n), &[i as u32], "{s}");
            let (n, done) = t.walk(&format!("{s}/"));
            assert!(done, "{s}");
            assert_eq!(t.exact(n), &[1000 + i as u32], "{s}");
        }
        for miss in [
            "/commonhead",
            "/commonhead40",
            "/commonhea",
            "/s12",
            "/s",
            "/",
        ] {
            let (n, _) = t.walk(miss);
            assert_eq!(n, ROOT, "{miss}");
        }
    }

    #[test]
    fn candidate_lists_of_one_and_many() {
        let mut b = TrieBuilder::new();
        b.add_prefix("/a", 7);
        b.add_prefix("/b", 1);
        b.add_prefix("/b", 4);
        b.add_prefix("/b", 9);
        let t = b.build();
        assert_eq!(t.prefix(t.walk("/a").0), &[7]);
        assert_eq!(t.prefix(t.walk("/b").0), &[1, 4, 9]);
        assert_eq!(t.exact(t.walk("/b").0), &[] as &[u32]);
    }

    #[test]
    fn host_keys_inline_and_heap() {
        let mut m: HostMap<u32> = HostMap::default();
        let long = "a-very-long-host-name-that-does-not-fit.example.com";
        m.insert_if_absent(Some("a.example.com"), 1);
        m.insert_if_absent(Some(long), 2);
        m.insert_if_absent(Some("*.example.com"), 3);
        m.insert_if_absent(Some("a.example.com"), 9);
        assert_eq!(
            m.find_map("a.example.com", |&v| Some(v)),
            Some(1),
            "first insert wins"
        );
        assert_eq!(m.find_map(long, |&v| Some(v)), Some(2));
        assert_eq!(m.find_map("b.example.com", |&v| Some(v)), Some(3));
        assert_eq!(m.find_map("example.com", |&v| Some(v)), None);
    }
}
