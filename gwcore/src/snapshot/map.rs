//! [`SharedMap`]: an ordered map whose clones share storage.

use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::ops::Index;
use std::sync::Arc;

/// How many entries a chunk holds after a split; a chunk splits when it
/// grows past twice this.
const CHUNK: usize = 64;

/// One chunk: entries in key order, never empty inside a map.
type Chunk<K, V> = Vec<(K, Arc<V>)>;

/// An ordered map whose clone shares its storage with the original, and
/// whose change copies only the part it changes.
///
/// The entries are kept in key order in chunks of about 64, each behind an
/// `Arc`, and every value is itself behind an `Arc`. Cloning the map
/// clones the list of chunks (one reference count per chunk, not per
/// entry); inserting or removing in a clone copies the one chunk it
/// touches (its keys, and references to its values). Two maps of which
/// one was cloned from the other and changed in a few places tell their
/// differences ([`SharedMap::unshared`]) and equality by comparing the
/// chunks they still share by pointer, so the cost follows the chunks
/// changed, not the size of the map.
///
/// Lookups cost two binary searches (the chunk, then the entry in it).
#[derive(Clone)]
pub struct SharedMap<K, V> {
    chunks: Vec<Arc<Chunk<K, V>>>,
    len: usize,
}

impl<K, V> Default for SharedMap<K, V> {
    fn default() -> Self {
        SharedMap {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for SharedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K, V> SharedMap<K, V> {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every entry, in key order.
    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter {
            chunks: self.chunks.iter(),
            current: [].iter(),
            back: [].iter(),
            left: self.len,
        }
    }

    /// Every entry with its value as it is shared, in key order.
    pub fn iter_shared(&self) -> impl Iterator<Item = (&K, &Arc<V>)> {
        self.chunks
            .iter()
            .flat_map(|c| c.iter().map(|(k, v)| (k, v)))
    }

    /// Every key, in order.
    pub fn keys(&self) -> Keys<'_, K, V> {
        Keys(self.iter())
    }

    /// Every value, in key order.
    pub fn values(&self) -> Values<'_, K, V> {
        Values(self.iter())
    }
}

impl<K: Ord, V> SharedMap<K, V> {
    /// The chunk that holds `key` or would take it: the first whose last
    /// key is not below it (the last chunk for a key past them all).
    /// `None` for an empty map.
    fn chunk_of<Q>(&self, key: &Q) -> Option<usize>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        if self.chunks.is_empty() {
            return None;
        }
        let i = self
            .chunks
            .partition_point(|c| c.last().is_some_and(|(k, _)| k.borrow() < key));
        Some(i.min(self.chunks.len() - 1))
    }

    /// Where `key` is: (chunk, `Ok(index)` when present, else
    /// `Err(index)` where it would go).
    fn locate<Q>(&self, key: &Q) -> Option<(usize, Result<usize, usize>)>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let c = self.chunk_of(key)?;
        Some((
            c,
            self.chunks[c].binary_search_by(|(k, _)| k.borrow().cmp(key)),
        ))
    }

    /// The value under `key`.
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.get_shared(key).map(|v| &**v)
    }

    /// The value under `key`, as it is shared.
    pub fn get_shared<Q>(&self, key: &Q) -> Option<&Arc<V>>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match self.locate(key)? {
            (c, Ok(i)) => Some(&self.chunks[c][i].1),
            _ => None,
        }
    }

    /// Whether `key` has a value.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.get_shared(key).is_some()
    }

    /// The entries from the first key not below `key` on, in key order.
    pub fn range_from<Q>(&self, key: &Q) -> Iter<'_, K, V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let Some((c, at)) = self.locate(key) else {
            return self.iter();
        };
        let i = at.unwrap_or_else(|i| i);
        let skipped: usize = self.chunks[..c].iter().map(|c| c.len()).sum::<usize>() + i;
        Iter {
            chunks: self.chunks[c + 1..].iter(),
            current: self.chunks[c][i..].iter(),
            back: [].iter(),
            left: self.len - skipped,
        }
    }

    /// Puts `value` under `key` as it is shared (whoever else holds the
    /// `Arc` keeps sharing it), returning the value it replaced.
    pub fn insert_shared(&mut self, key: K, value: Arc<V>) -> Option<Arc<V>>
    where
        K: Clone,
    {
        let Some((c, at)) = self.locate(&key) else {
            self.chunks.push(Arc::new(vec![(key, value)]));
            self.len = 1;
            return None;
        };
        let chunk = Arc::make_mut(&mut self.chunks[c]);
        match at {
            Ok(i) => Some(std::mem::replace(&mut chunk[i].1, value)),
            Err(i) => {
                chunk.insert(i, (key, value));
                self.len += 1;
                if chunk.len() > 2 * CHUNK {
                    let right = chunk.split_off(chunk.len() / 2);
                    self.chunks.insert(c + 1, Arc::new(right));
                }
                None
            }
        }
    }

    /// Puts `value` under `key`, returning the value it replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<Arc<V>>
    where
        K: Clone,
    {
        self.insert_shared(key, Arc::new(value))
    }

    /// Takes the value under `key` out.
    pub fn remove<Q>(&mut self, key: &Q) -> Option<Arc<V>>
    where
        K: Borrow<Q> + Clone,
        Q: Ord + ?Sized,
    {
        let (c, Ok(i)) = self.locate(key)? else {
            return None;
        };
        let (_, old) = Arc::make_mut(&mut self.chunks[c]).remove(i);
        self.len -= 1;
        if self.chunks[c].is_empty() {
            self.chunks.remove(c);
        } else {
            // Two neighbours that fit in one chunk become one, so that the
            // map keeps about `len / CHUNK` chunks whatever was removed.
            if c + 1 < self.chunks.len() {
                self.merge(c);
            }
            if c > 0 {
                self.merge(c - 1);
            }
        }
        Some(old)
    }

    /// Merges chunk `c + 1` into chunk `c` when both fit in one.
    fn merge(&mut self, c: usize)
    where
        K: Clone,
    {
        if self.chunks[c].len() + self.chunks[c + 1].len() > CHUNK {
            return;
        }
        let next = self.chunks.remove(c + 1);
        let next = Arc::try_unwrap(next).unwrap_or_else(|shared| (*shared).clone());
        Arc::make_mut(&mut self.chunks[c]).extend(next);
    }

    /// The value under `key` to change in place: copied first where it is
    /// shared (its chunk with a clone of this map, the value with anyone).
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q> + Clone,
        Q: Ord + ?Sized,
        V: Clone,
    {
        let (c, Ok(i)) = self.locate(key)? else {
            return None;
        };
        Some(Arc::make_mut(&mut Arc::make_mut(&mut self.chunks[c])[i].1))
    }

    /// Calls `f` with each key under which the two maps do not share one
    /// value, in key order: this map's value (`None`: absent here) and
    /// `newer`'s (`None`: absent there). Chunks the two maps share are
    /// skipped whole; equal values that are not shared are passed too
    /// (compare them to tell).
    pub fn unshared<'a, 's>(
        &'s self,
        newer: &'a SharedMap<K, V>,
        mut f: impl FnMut(&K, Option<&'s Arc<V>>, Option<&'a Arc<V>>),
    ) {
        self.walk(newer, |k, a, b| {
            f(k, a, b);
            true
        });
    }

    /// [`SharedMap::unshared`] that stops when `f` returns `false`;
    /// returns whether it went through.
    fn walk<'a, 's>(
        &'s self,
        newer: &'a SharedMap<K, V>,
        mut f: impl FnMut(&K, Option<&'s Arc<V>>, Option<&'a Arc<V>>) -> bool,
    ) -> bool {
        let mut old = Cursor::new(&self.chunks);
        let mut new = Cursor::new(&newer.chunks);
        loop {
            if old.at == 0
                && new.at == 0
                && let (Some(a), Some(b)) = (old.chunk(), new.chunk())
                && Arc::ptr_eq(a, b)
            {
                old.next_chunk();
                new.next_chunk();
                continue;
            }
            let go_on = match (old.peek(), new.peek()) {
                (None, None) => return true,
                (Some((k, v)), None) => {
                    old.advance();
                    f(k, Some(v), None)
                }
                (None, Some((k, v))) => {
                    new.advance();
                    f(k, None, Some(v))
                }
                (Some((ko, vo)), Some((kn, vn))) => match ko.cmp(kn) {
                    Ordering::Less => {
                        old.advance();
                        f(ko, Some(vo), None)
                    }
                    Ordering::Greater => {
                        new.advance();
                        f(kn, None, Some(vn))
                    }
                    Ordering::Equal => {
                        old.advance();
                        new.advance();
                        Arc::ptr_eq(vo, vn) || f(kn, Some(vo), Some(vn))
                    }
                },
            };
            if !go_on {
                return false;
            }
        }
    }
}

/// Equal values under equal keys. Chunks and values the two maps share
/// are equal without being compared.
impl<K: Ord, V: PartialEq> PartialEq for SharedMap<K, V> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len
            && self.walk(other, |_, a, b| match (a, b) {
                (Some(a), Some(b)) => a == b,
                _ => false,
            })
    }
}

impl<K: Ord, V: Eq> Eq for SharedMap<K, V> {}

impl<K: Ord + Clone, V> FromIterator<(K, V)> for SharedMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut m = SharedMap::new();
        m.extend(iter);
        m
    }
}

impl<K: Ord + Clone, V> Extend<(K, V)> for SharedMap<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<K, Q, V> Index<&Q> for SharedMap<K, V>
where
    K: Ord + Borrow<Q>,
    Q: Ord + ?Sized,
{
    type Output = V;

    /// # Panics
    ///
    /// When `key` has no value, as [`std::collections::BTreeMap`]'s.
    fn index(&self, key: &Q) -> &V {
        match self.get(key) {
            Some(v) => v,
            None => panic!("no entry for the key in the SharedMap"),
        }
    }
}

impl<'a, K, V> IntoIterator for &'a SharedMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;

    fn into_iter(self) -> Iter<'a, K, V> {
        self.iter()
    }
}

/// The entries of a [`SharedMap`], in key order (from either end).
pub struct Iter<'a, K, V> {
    chunks: std::slice::Iter<'a, Arc<Chunk<K, V>>>,
    current: std::slice::Iter<'a, (K, Arc<V>)>,
    /// The chunk iteration from the back is in.
    back: std::slice::Iter<'a, (K, Arc<V>)>,
    left: usize,
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((k, v)) = self.current.next() {
                self.left -= 1;
                return Some((k, &**v));
            }
            match self.chunks.next() {
                Some(c) => self.current = c.iter(),
                None => {
                    let (k, v) = self.back.next()?;
                    self.left -= 1;
                    return Some((k, &**v));
                }
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<K, V> DoubleEndedIterator for Iter<'_, K, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((k, v)) = self.back.next_back() {
                self.left -= 1;
                return Some((k, &**v));
            }
            match self.chunks.next_back() {
                Some(c) => self.back = c.iter(),
                None => {
                    let (k, v) = self.current.next_back()?;
                    self.left -= 1;
                    return Some((k, &**v));
                }
            }
        }
    }
}

impl<K, V> ExactSizeIterator for Iter<'_, K, V> {}

// Not derived: a derive would ask for `K: Clone, V: Clone`.
impl<K, V> Clone for Iter<'_, K, V> {
    fn clone(&self) -> Self {
        Iter {
            chunks: self.chunks.clone(),
            current: self.current.clone(),
            back: self.back.clone(),
            left: self.left,
        }
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for Iter<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.clone()).finish()
    }
}

impl<K, V> std::iter::FusedIterator for Iter<'_, K, V> {}

/// The keys of a [`SharedMap`], in order (printed as a list).
pub struct Keys<'a, K, V>(Iter<'a, K, V>);

impl<K, V> Clone for Keys<'_, K, V> {
    fn clone(&self) -> Self {
        Keys(self.0.clone())
    }
}

impl<'a, K, V> Iterator for Keys<'a, K, V> {
    type Item = &'a K;

    fn next(&mut self) -> Option<&'a K> {
        self.0.next().map(|(k, _)| k)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<K, V> DoubleEndedIterator for Keys<'_, K, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|(k, _)| k)
    }
}

impl<K, V> ExactSizeIterator for Keys<'_, K, V> {}

impl<K: fmt::Debug, V> fmt::Debug for Keys<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

/// The values of a [`SharedMap`], in key order (printed as a list).
pub struct Values<'a, K, V>(Iter<'a, K, V>);

impl<K, V> Clone for Values<'_, K, V> {
    fn clone(&self) -> Self {
        Values(self.0.clone())
    }
}

impl<'a, K, V> Iterator for Values<'a, K, V> {
    type Item = &'a V;

    fn next(&mut self) -> Option<&'a V> {
        self.0.next().map(|(_, v)| v)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<K, V> DoubleEndedIterator for Values<'_, K, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|(_, v)| v)
    }
}

impl<K, V> ExactSizeIterator for Values<'_, K, V> {}

impl<K, V: fmt::Debug> fmt::Debug for Values<'_, K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.clone()).finish()
    }
}

/// A position in a map's chunks: chunk `chunk`, entry `at` of it.
struct Cursor<'a, K, V> {
    chunks: &'a [Arc<Chunk<K, V>>],
    chunk: usize,
    at: usize,
}

impl<'a, K, V> Cursor<'a, K, V> {
    fn new(chunks: &'a [Arc<Chunk<K, V>>]) -> Self {
        Cursor {
            chunks,
            chunk: 0,
            at: 0,
        }
    }

    fn chunk(&self) -> Option<&'a Arc<Chunk<K, V>>> {
        self.chunks.get(self.chunk)
    }

    fn peek(&self) -> Option<&'a (K, Arc<V>)> {
        self.chunk().and_then(|c| c.get(self.at))
    }

    fn advance(&mut self) {
        self.at += 1;
        if self.chunk().is_none_or(|c| self.at >= c.len()) {
            self.next_chunk();
        }
    }

    fn next_chunk(&mut self) {
        self.chunk += 1;
        self.at = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16, u8),
        Remove(u16),
        /// Changes a value in place.
        Bump(u16),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Keys from a range several chunks wide, so that chunks split and
        // merge.
        prop_oneof![
            3 => (0u16..600, any::<u8>()).prop_map(|(k, v)| Op::Insert(k, v)),
            2 => (0u16..600).prop_map(Op::Remove),
            1 => (0u16..600).prop_map(Op::Bump),
        ]
    }

    fn run(map: &mut SharedMap<u16, u8>, model: &mut BTreeMap<u16, u8>, op: &Op) {
        match *op {
            Op::Insert(k, v) => {
                assert_eq!(map.insert(k, v).map(|o| *o), model.insert(k, v));
            }
            Op::Remove(k) => {
                assert_eq!(map.remove(&k).map(|o| *o), model.remove(&k));
            }
            Op::Bump(k) => {
                if let Some(v) = map.get_mut(&k) {
                    *v = v.wrapping_add(1);
                }
                if let Some(v) = model.get_mut(&k) {
                    *v = v.wrapping_add(1);
                }
            }
        }
    }

    /// Checks the map against the model and the chunks' invariants.
    fn same(map: &SharedMap<u16, u8>, model: &BTreeMap<u16, u8>) -> Result<(), TestCaseError> {
        let got: Vec<(u16, u8)> = map.iter().map(|(k, v)| (*k, *v)).collect();
        let want: Vec<(u16, u8)> = model.iter().map(|(k, v)| (*k, *v)).collect();
        prop_assert_eq!(&got, &want);
        let back: Vec<(u16, u8)> = map.iter().rev().map(|(k, v)| (*k, *v)).collect();
        prop_assert_eq!(back, want.iter().rev().copied().collect::<Vec<_>>());
        prop_assert_eq!(map.len(), model.len());
        prop_assert_eq!(map.iter().len(), model.len());
        prop_assert!(
            map.chunks
                .iter()
                .all(|c| !c.is_empty() && c.len() <= 2 * CHUNK)
        );
        for k in [0u16, 1, 77, 300, 599, 600] {
            prop_assert_eq!(map.get(&k), model.get(&k));
            let from: Vec<u16> = map.range_from(&k).map(|(k, _)| *k).collect();
            prop_assert_eq!(from, model.range(k..).map(|(k, _)| *k).collect::<Vec<_>>());
            prop_assert_eq!(map.range_from(&k).len(), model.range(k..).count());
        }
        Ok(())
    }

    proptest! {
        /// Any sequence of changes leaves the map holding what a
        /// `BTreeMap` given the same changes holds, in the same order.
        #[test]
        fn behaves_as_a_btree_map(ops in proptest::collection::vec(op(), 0..700)) {
            let mut map = SharedMap::new();
            let mut model = BTreeMap::new();
            for op in &ops {
                run(&mut map, &mut model, op);
            }
            same(&map, &model)?;
        }

        /// A clone changed in a few places: the original is untouched,
        /// `unshared` names exactly the keys whose values differ (plus
        /// equal values put in anew), equality is the model's, and the
        /// chunks not touched are still shared.
        #[test]
        fn a_changed_clone_differs_where_it_was_changed(
            base in proptest::collection::btree_map(0u16..600, any::<u8>(), 0..500),
            ops in proptest::collection::vec(op(), 0..12),
        ) {
            let map: SharedMap<u16, u8> = base.iter().map(|(k, v)| (*k, *v)).collect();
            let mut changed = map.clone();
            let mut model = base.clone();
            let mut touched = std::collections::BTreeSet::new();
            for op in &ops {
                run(&mut changed, &mut model, op);
                touched.insert(match *op {
                    Op::Insert(k, _) | Op::Remove(k) | Op::Bump(k) => k,
                });
            }
            same(&map, &base)?;
            same(&changed, &model)?;
            let mut seen = Vec::new();
            map.unshared(&changed, |k, a, b| {
                seen.push(*k);
                assert_eq!(a.map(|v| **v), base.get(k).copied());
                assert_eq!(b.map(|v| **v), model.get(k).copied());
            });
            let differing: Vec<u16> = base
                .keys()
                .chain(model.keys())
                .filter(|k| base.get(k) != model.get(k))
                .copied()
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect();
            prop_assert!(seen.windows(2).all(|w| w[0] < w[1]), "in key order");
            prop_assert!(differing.iter().all(|k| seen.contains(k)), "{differing:?} {seen:?}");
            prop_assert!(seen.iter().all(|k| touched.contains(k)), "only touched keys");
            prop_assert_eq!(map == changed, base == model);
            prop_assert!(changed == changed.clone());
            // Each change copies at most a chunk and its neighbours.
            let shared = changed
                .chunks
                .iter()
                .filter(|c| map.chunks.iter().any(|o| Arc::ptr_eq(o, c)))
                .count();
            prop_assert!(shared + 3 * ops.len() >= map.chunks.len(), "{shared} of {}", map.chunks.len());
        }
    }

    #[test]
    fn shared_chunks_are_not_compared() {
        /// A value whose comparison panics: shared ones must not be
        /// compared.
        #[derive(Debug, Clone)]
        struct NoCompare(u32);
        impl PartialEq for NoCompare {
            fn eq(&self, _: &NoCompare) -> bool {
                panic!("compared {}", self.0)
            }
        }
        let map: SharedMap<u32, NoCompare> = (0..1000).map(|i| (i, NoCompare(i))).collect();
        let mut next = map.clone();
        assert!(map == next, "a clone is equal without comparing");
        next.insert(500, NoCompare(7));
        let mut seen = Vec::new();
        map.unshared(&next, |k, _, _| seen.push(*k));
        assert_eq!(seen, vec![500]);
    }
}
