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
    if n >= 4 {
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
    }
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

/// A list of candidate ids in one `u32` (see [`PathTrie::ids`]): [`NONE`],
/// one id (top bit clear), or [`LIST`] plus the index in
/// [`PathTrie::ids`] of a length followed by the ids.
type Ids = u32;

const NONE: Ids = u32::MAX;
const LIST: Ids = 1 << 31;

/// A node with more children than this finds a child by hash, not by
/// scanning them: its children group is an open-addressing table.
const HASHED_FROM: u32 = 4;

/// The size of the children table of a node with `n` children: a power of
/// two, at most two thirds full, so probe runs stay short.
#[inline]
fn table_len(n: usize) -> usize {
    (n + n / 2 + 1).next_power_of_two()
}

/// One edge of the trie and everything a walk reads about the node it
/// leads to, in 32 bytes: the edge's segment (its first 8 bytes inline),
/// the node's children and candidates. A node's children are one group of
/// entries, laid out depth-first so the next level is often close: up to
/// [`HASHED_FROM`] sorted by segment, or more in a linear-probing table
/// indexed by [`seg_hash`] (free slots have [`EMPTY`] as their length).
#[derive(Debug, Clone, Copy)]
#[repr(align(32))]
struct Child {
    /// [`head8`] of the segment.
    head: u64,
    /// The segment's length.
    len: u32,
    /// Offset in the arena of the segment's bytes after the first 8.
    off: u32,
    /// The first entry of the node's children group.
    kids: u32,
    /// The size of the group: the number of children, or the table's size
    /// when more than [`HASHED_FROM`].
    nkids: u32,
    /// Candidates of the Exact paths ending at the node.
    exact: Ids,
    /// Candidates of the PathPrefixes ending at the node.
    prefix: Ids,
}

/// The length of a free slot of a children table.
const EMPTY: u32 = u32::MAX;

impl Default for Child {
    fn default() -> Child {
        FREE
    }
}

const FREE: Child = Child {
    head: 0,
    len: EMPTY,
    off: 0,
    kids: 0,
    nkids: 0,
    exact: NONE,
    prefix: NONE,
};

/// The cursor of the root.
pub(crate) const ROOT: u32 = u32::MAX;

/// A path trie by segment. Exact paths end at the node of their last
/// segment (a trailing `/` is a last, empty segment); PathPrefixes at the
/// node of their last segment with their trailing `/` dropped. Nodes are
/// named by cursors: [`ROOT`] or the index of the edge leading to them.
///
/// A walk reads one entry per level (a cache line), plus the arena for a
/// segment longer than 8 bytes; a candidate list of one id (the common
/// case) is in the entry itself.
///
/// The root and the entries' pointer come first (`repr(C)`): a bucket
/// puts them on the cache line it reads first.
#[derive(Debug, Default)]
#[repr(C)]
pub(crate) struct PathTrie {
    root: Root,
    entries: Box<[Child]>,
    ids: Box<[u32]>,
    /// The parent of each entry, [`ROOT`] for the root's children: read
    /// only when a lookup falls back to a shorter prefix.
    up: Box<[u32]>,
    arena: Box<[u8]>,
}

/// The root node: a [`Child`] without an edge, in 16 bytes.
#[derive(Debug, Clone, Copy)]
struct Root {
    kids: u32,
    nkids: u32,
    exact: Ids,
    prefix: Ids,
}

impl Default for Root {
    fn default() -> Root {
        Root {
            kids: 0,
            nkids: 0,
            exact: NONE,
            prefix: NONE,
        }
    }
}

impl PathTrie {
    /// The ids of a list.
    #[inline]
    fn ids<'a>(&'a self, list: &'a Ids) -> &'a [u32] {
        match *list {
            NONE => &[],
            l if l & LIST == 0 => std::slice::from_ref(list),
            l => {
                let i = (l & !LIST) as usize;
                let n = self.ids[i] as usize;
                &self.ids[i + 1..i + 1 + n]
            }
        }
    }

    /// Whether `c` is the edge of `seg`, with head `head`.
    #[inline]
    fn is_edge(&self, c: &Child, head: u64, seg: &[u8]) -> bool {
        c.head == head
            && c.len as usize == seg.len()
            && (seg.len() <= 8
                || self.arena[c.off as usize..c.off as usize + seg.len() - 8] == seg[8..])
    }

    /// The child of the node whose children group is `kids`, `nkids`
    /// along the edge `seg`.
    #[inline]
    fn child(&self, (kids, nkids): (u32, u32), seg: &[u8]) -> Option<u32> {
        let start = kids as usize;
        let group = &self.entries[start..start + nkids as usize];
        let head = head8(seg);
        if nkids > HASHED_FROM {
            let mask = group.len() - 1;
            let mut i = seg_hash(head, seg) as usize & mask;
            loop {
                let c = &group[i];
                if c.len == EMPTY {
                    return None;
                }
                if self.is_edge(c, head, seg) {
                    return Some((start + i) as u32);
                }
                i = (i + 1) & mask;
            }
        }
        // Sorted by segment, so by head: stop past it.
        for (i, c) in group.iter().enumerate() {
            if c.head > head {
                return None;
            }
            if self.is_edge(c, head, seg) {
                return Some((start + i) as u32);
            }
        }
        None
    }

    /// The lists of Exact and PathPrefix candidates of `cur`.
    #[inline]
    fn lists(&self, cur: u32) -> (&Ids, &Ids) {
        match self.entries.get(cur as usize) {
            Some(c) => (&c.exact, &c.prefix),
            None => (&self.root.exact, &self.root.prefix),
        }
    }

    /// Walks `path` (normalized) as deep as the trie goes: the cursor of the
    /// node reached and whether every segment was consumed.
    #[cfg(test)]
    pub(crate) fn walk(&self, path: &str) -> (u32, bool) {
        let p = path.as_bytes();
        let p = p.strip_prefix(b"/").unwrap_or(p);
        self.walk_segs(p.split(|&c| c == b'/'))
    }

    /// Walks the segments `segs` as deep as the trie goes: the cursor of
    /// the node reached and whether every segment was consumed.
    #[inline]
    pub(crate) fn walk_segs<'p>(&self, segs: impl Iterator<Item = &'p [u8]>) -> (u32, bool) {
        let mut cur = ROOT;
        let mut kids = (self.root.kids, self.root.nkids);
        for seg in segs {
            if kids.1 == 0 {
                return (cur, false);
            }
            match self.child(kids, seg) {
                Some(c) => {
                    cur = c;
                    let node = &self.entries[c as usize];
                    kids = (node.kids, node.nkids);
                }
                None => return (cur, false),
            }
        }
        (cur, true)
    }

    /// Candidates of the Exact paths ending at `cur`, best first.
    #[inline]
    pub(crate) fn exact(&self, cur: u32) -> &[u32] {
        self.ids(self.lists(cur).0)
    }

    /// Candidates of the PathPrefixes ending at `cur`, best first.
    #[inline]
    pub(crate) fn prefix(&self, cur: u32) -> &[u32] {
        self.ids(self.lists(cur).1)
    }

    /// The parent of `cur` (the root is its own parent).
    #[inline]
    pub(crate) fn parent(&self, cur: u32) -> u32 {
        self.up.get(cur as usize).copied().unwrap_or(ROOT)
    }
}

// ---------------------------------------------------------------------------
// Maps by one path segment.

/// A value of a [`SegMap`], which holds its own key.
pub(crate) trait SegKeyed {
    /// The segment it is found by.
    fn seg(&self) -> &[u8];
}

/// One slot of a [`SegMap`]: the key's [`head8`] and length inline, so a
/// probe reads the value only for a key that likely is the one sought.
#[derive(Debug, Clone)]
struct SegEntry<V> {
    head: u64,
    len: u32,
    val: Option<V>,
}

/// A hash map from a path segment to a value that holds its segment
/// ([`SegKeyed`]): linear probing over [`SegEntry`]s, at most two thirds
/// full. A copy is one array copy, and a change of one key costs a probe
/// run ([`SegMap::set`]), so a bucket of N sub-buckets changes one of them
/// without building a map of N again.
#[derive(Clone)]
pub(crate) struct SegMap<V> {
    entries: Box<[SegEntry<V>]>,
    len: usize,
}

/// The values ordered by segment: where a key sits in the array depends on
/// the order keys came and went, so a map updated key by key and one built
/// at once from the same values print the same.
impl<V: SegKeyed + std::fmt::Debug> std::fmt::Debug for SegMap<V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut vals: Vec<&V> = self.values().collect();
        vals.sort_by(|a, b| a.seg().cmp(b.seg()));
        f.debug_list().entries(vals).finish()
    }
}

impl<V> Default for SegMap<V> {
    fn default() -> Self {
        SegMap {
            entries: Box::default(),
            len: 0,
        }
    }
}

impl<V: SegKeyed> SegMap<V> {
    fn with_size(size: usize) -> SegMap<V> {
        SegMap {
            entries: (0..size)
                .map(|_| SegEntry {
                    head: 0,
                    len: 0,
                    val: None,
                })
                .collect(),
            len: 0,
        }
    }

    /// A map of `vals`, whose segments are distinct.
    pub(crate) fn from_values(vals: impl ExactSizeIterator<Item = V>) -> SegMap<V> {
        if vals.len() == 0 {
            return SegMap::default();
        }
        let mut m = SegMap::with_size(table_len(vals.len()));
        for v in vals {
            let (head, len, i) = {
                let seg = v.seg();
                let head = head8(seg);
                (head, seg.len() as u32, m.free_slot(head, seg))
            };
            m.entries[i] = SegEntry {
                head,
                len,
                val: Some(v),
            };
            m.len += 1;
        }
        m
    }

    /// The number of values.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The values, in no particular order.
    pub(crate) fn values(&self) -> impl Iterator<Item = &V> {
        self.entries.iter().filter_map(|e| e.val.as_ref())
    }

    /// The index of `seg`'s entry (`Ok`), or of the free slot that ends
    /// its probe run (`Err`). The map has a free slot.
    #[inline]
    fn position(&self, head: u64, seg: &[u8]) -> Result<usize, usize> {
        let mask = self.entries.len() - 1;
        let mut i = seg_hash(head, seg) as usize & mask;
        loop {
            let e = &self.entries[i];
            let Some(v) = &e.val else {
                return Err(i);
            };
            if e.head == head
                && e.len as usize == seg.len()
                && (seg.len() <= 8 || v.seg()[8..] == seg[8..])
            {
                return Ok(i);
            }
            i = (i + 1) & mask;
        }
    }

    /// The value of `seg`.
    #[inline]
    pub(crate) fn get(&self, seg: &[u8]) -> Option<&V> {
        if self.len == 0 {
            return None;
        }
        let i = self.position(head8(seg), seg).ok()?;
        self.entries[i].val.as_ref()
    }

    /// Sets (`Some`, whose segment is `seg`) or removes (`None`) the value
    /// of `seg`.
    pub(crate) fn set(&mut self, seg: &[u8], v: Option<V>) {
        let head = head8(seg);
        let found = if self.entries.is_empty() {
            Err(0)
        } else {
            self.position(head, seg)
        };
        match (found, v) {
            (Ok(i), Some(v)) => self.entries[i].val = Some(v),
            (Ok(i), None) => {
                self.entries[i].val = None;
                self.len -= 1;
                self.close_gap(i);
            }
            (Err(_), None) => {}
            (Err(i), Some(v)) => {
                if table_len(self.len + 1) > self.entries.len() {
                    let old = std::mem::take(&mut self.entries);
                    *self = SegMap::with_size(table_len(self.len + 1));
                    for e in old.into_vec() {
                        if let Some(v) = e.val {
                            let i = self.free_slot(e.head, v.seg());
                            self.entries[i] = SegEntry { val: Some(v), ..e };
                            self.len += 1;
                        }
                    }
                    let i = self.free_slot(head, seg);
                    self.entries[i] = SegEntry {
                        head,
                        len: seg.len() as u32,
                        val: Some(v),
                    };
                } else {
                    self.entries[i] = SegEntry {
                        head,
                        len: seg.len() as u32,
                        val: Some(v),
                    };
                }
                self.len += 1;
            }
        }
    }

    /// The free slot where a key not in the map goes.
    fn free_slot(&self, head: u64, seg: &[u8]) -> usize {
        match self.position(head, seg) {
            Ok(i) | Err(i) => i,
        }
    }

    /// After the entry at `i` was emptied: moves back the entries of the
    /// probe run after it that can no longer be reached past the gap
    /// (deletion by backward shift, no tombstones).
    fn close_gap(&mut self, mut gap: usize) {
        let mask = self.entries.len() - 1;
        let mut j = gap;
        loop {
            j = (j + 1) & mask;
            let Some(v) = &self.entries[j].val else {
                return;
            };
            let home = seg_hash(self.entries[j].head, v.seg()) as usize & mask;
            // Whether `home` lies cyclically in (gap, j]: then the entry
            // stays reachable where it is.
            let stays = if gap <= j {
                gap < home && home <= j
            } else {
                gap < home || home <= j
            };
            if !stays {
                self.entries.swap(gap, j);
                gap = j;
            }
        }
    }
}

/// Children of a trie node under construction found by a scan up to
/// this many, by a hash map beyond.
const INDEXED_FROM: usize = 16;

#[derive(Debug, Default)]
struct BuildNode {
    children: Vec<(Box<str>, u32)>,
    /// `children` by segment, once there are more than
    /// [`INDEXED_FROM`]: a scan per added path made a node with N
    /// children (a bucket of N sibling paths, `/r-1` ... `/r-N`) cost
    /// O(N²) comparisons to build.
    index: FastMap<Box<str>, u32>,
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
            let node = &self.nodes[n];
            let found = if node.index.is_empty() {
                node.children.iter().find(|(c, _)| **c == *s).map(|c| c.1)
            } else {
                node.index.get(s).copied()
            };
            n = match found {
                Some(c) => c as usize,
                None => {
                    let id = self.nodes.len() as u32;
                    self.nodes.push(BuildNode::default());
                    let node = &mut self.nodes[n];
                    node.children.push((s.into(), id));
                    if !node.index.is_empty() {
                        node.index.insert(s.into(), id);
                    } else if node.children.len() > INDEXED_FROM {
                        node.index = node.children.iter().map(|(c, i)| (c.clone(), *i)).collect();
                    }
                    id as usize
                }
            };
        }
        n
    }

    /// Adds an Exact path.
    #[cfg(test)]
    pub(crate) fn add_exact(&mut self, path: &str, id: u32) {
        self.add(super::path::segments(path), true, id);
    }

    /// Adds a PathPrefix.
    #[cfg(test)]
    pub(crate) fn add_prefix(&mut self, prefix: &str, id: u32) {
        self.add(super::path::prefix_segments(prefix).into_iter(), false, id);
    }

    /// Adds the Exact path (`exact`) or PathPrefix whose segments are
    /// `segs`.
    pub(crate) fn add<'s>(&mut self, segs: impl Iterator<Item = &'s str>, exact: bool, id: u32) {
        let n = self.node_for(segs);
        let node = &mut self.nodes[n];
        if exact {
            node.exact.push(id);
        } else {
            node.prefix.push(id);
        }
    }

    /// Freezes. Candidate lists keep the order their ids were added in
    /// (the table adds them best first).
    pub(crate) fn build(mut self) -> PathTrie {
        let n = self.nodes.len();
        let mut ids: Vec<u32> = Vec::new();
        let mut list = |v: &[u32]| -> Ids {
            match *v {
                [] => NONE,
                [id] if id & LIST == 0 => id,
                _ => {
                    let at = ids.len() as u32;
                    // Bounded by the candidates of one bucket.
                    assert!(at & LIST == 0, "too many candidate ids in one bucket");
                    ids.push(v.len() as u32);
                    ids.extend_from_slice(v);
                    LIST | at
                }
            }
        };
        let mut nodes: Vec<Child> = Vec::with_capacity(n);
        for node in self.nodes.iter_mut() {
            nodes.push(Child {
                exact: list(&node.exact),
                prefix: list(&node.prefix),
                ..FREE
            });
            node.children.sort_by(|a, b| a.0.cmp(&b.0));
        }
        // Depth-first layout of the children groups.
        let mut entry_of = vec![ROOT; n];
        let mut entries: Vec<Child> = Vec::with_capacity(n.saturating_sub(1));
        let mut up: Vec<u32> = Vec::with_capacity(n.saturating_sub(1));
        let mut arena = Vec::new();
        let mut stack = vec![0usize];
        while let Some(b) = stack.pop() {
            let start = entries.len();
            let children = &self.nodes[b].children;
            let hashed = children.len() > HASHED_FROM as usize;
            let size = if hashed {
                table_len(children.len())
            } else {
                children.len()
            };
            entries.resize(start + size, FREE);
            up.resize(start + size, ROOT);
            for (k, (seg, child)) in children.iter().enumerate() {
                let bytes = seg.as_bytes();
                let head = head8(bytes);
                let mut i = k;
                if hashed {
                    i = seg_hash(head, bytes) as usize & (size - 1);
                    while entries[start + i].len != EMPTY {
                        i = (i + 1) & (size - 1);
                    }
                }
                let c = *child as usize;
                entry_of[c] = (start + i) as u32;
                up[start + i] = entry_of[b];
                entries[start + i] = Child {
                    head,
                    len: bytes.len() as u32,
                    off: arena.len() as u32,
                    ..nodes[c]
                };
                if bytes.len() > 8 {
                    arena.extend_from_slice(&bytes[8..]);
                }
            }
            nodes[b].kids = start as u32;
            nodes[b].nkids = size as u32;
            stack.extend(children.iter().rev().map(|(_, c)| *c as usize));
        }
        for b in 1..n {
            let e = &mut entries[entry_of[b] as usize];
            e.kids = nodes[b].kids;
            e.nkids = nodes[b].nkids;
        }
        PathTrie {
            entries: entries.into_boxed_slice(),
            up: up.into_boxed_slice(),
            ids: ids.into_boxed_slice(),
            arena: arena.into_boxed_slice(),
            root: Root {
                kids: nodes[0].kids,
                nkids: nodes[0].nkids,
                exact: nodes[0].exact,
                prefix: nodes[0].prefix,
            },
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

    struct Keyed(Vec<u8>, u32);

    impl SegKeyed for Keyed {
        fn seg(&self) -> &[u8] {
            &self.0
        }
    }

    /// Inserts, replacements and removals in an order that makes long
    /// probe runs (keys sharing their first 8 bytes, a table grown from
    /// empty), checked after each step against a `BTreeMap`: a removal
    /// must keep every later key of its run reachable.
    #[test]
    fn seg_map_sets_and_removes_like_a_map() {
        let key = |i: u32| -> Vec<u8> {
            match i % 3 {
                0 => format!("r-{i}").into_bytes(),
                1 => format!("commonhead-{i}").into_bytes(),
                _ => format!("{i}").into_bytes(),
            }
        };
        let mut m: SegMap<Keyed> = SegMap::default();
        let mut oracle = std::collections::BTreeMap::new();
        let check =
            |m: &SegMap<Keyed>, oracle: &std::collections::BTreeMap<Vec<u8>, u32>, step: &str| {
                assert_eq!(m.len(), oracle.len(), "{step}");
                for i in 0..300 {
                    let k = key(i);
                    assert_eq!(
                        m.get(&k).map(|v| v.1),
                        oracle.get(&k).copied(),
                        "{step}: key {i}"
                    );
                }
            };
        for i in 0..200 {
            m.set(&key(i), Some(Keyed(key(i), i)));
            oracle.insert(key(i), i);
        }
        check(&m, &oracle, "inserted");
        for i in (0..200).step_by(7) {
            m.set(&key(i), Some(Keyed(key(i), i + 1000)));
            oracle.insert(key(i), i + 1000);
        }
        check(&m, &oracle, "replaced");
        for i in (0..200).filter(|i| i % 2 == 0 || i % 5 == 0) {
            m.set(&key(i), None);
            oracle.remove(&key(i));
            check(&m, &oracle, &format!("removed {i}"));
        }
        m.set(&key(250), None);
        check(&m, &oracle, "removed an absent key");
        let fresh = SegMap::from_values(oracle.iter().map(|(k, v)| Keyed(k.clone(), *v)));
        check(&fresh, &oracle, "built at once");
        assert!(SegMap::<Keyed>::default().get(b"x").is_none());
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
        assert!(t.root.nkids > HASHED_FROM, "the root is hashed");
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
