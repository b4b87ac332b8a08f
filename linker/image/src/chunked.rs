//! Tables a reload shares with the previous manifest instead of decoding or
//! copying them. A [`Grouped`] list keeps its elements in groups of
//! [`GROUP`], each group shared through an `Arc`: a manifest that keeps
//! most modules shares whole groups, so putting it together and dropping it
//! costs a few atomic operations per group, not per module. A [`Chunked`]
//! table is one part per module, indexed by global position.

use std::ops::Index;
use std::sync::Arc;

/// Elements per shared group.
pub const GROUP: usize = 64;

/// A list of `T` stored in shared groups of [`GROUP`].
#[derive(Clone, Debug)]
pub struct Grouped<T> {
    groups: Vec<Arc<[T]>>,
    len: usize,
}

impl<T> Default for Grouped<T> {
    fn default() -> Self {
        Grouped {
            groups: Vec::new(),
            len: 0,
        }
    }
}

impl<T: PartialEq> PartialEq for Grouped<T> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl<T: Eq> Eq for Grouped<T> {}

impl<T: Clone + Default> Grouped<T> {
    /// The list of `items`.
    pub fn from_vec(items: Vec<T>) -> Self {
        let len = items.len();
        let groups = items.chunks(GROUP).map(Arc::from).collect();
        Grouped { groups, len }
    }

    /// A list of `len` elements whose element `i` is the item given for
    /// `i` in `items` (in increasing order of `i`), or else `old`'s element
    /// `i`. A group with no item given (and as long as `old`'s) is `old`'s
    /// group, shared: the work is per group and per item, not per element.
    pub fn from_sparse(len: usize, items: Vec<(usize, T)>, old: Option<&Grouped<T>>) -> Self {
        let mut groups = Vec::with_capacity(len.div_ceil(GROUP));
        let mut items = items.into_iter().peekable();
        for g in 0..len.div_ceil(GROUP) {
            let (start, end) = (g * GROUP, len.min((g + 1) * GROUP));
            let none_here = items.peek().is_none_or(|(i, _)| *i >= end);
            let shared = old
                .and_then(|o| o.groups.get(g))
                .filter(|og| none_here && og.len() == end - start);
            if let Some(og) = shared {
                groups.push(og.clone());
                continue;
            }
            // An element `old` lacks has nothing to share: it is empty.
            let built: Arc<[T]> = (start..end)
                .map(|i| match items.next_if(|(k, _)| *k == i) {
                    Some((_, t)) => t,
                    None => old.and_then(|o| o.get(i)).cloned().unwrap_or_default(),
                })
                .collect();
            groups.push(built);
        }
        Grouped { groups, len }
    }
}

impl<T> Grouped<T> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Element `i`, if any.
    pub fn get(&self, i: usize) -> Option<&T> {
        self.groups.get(i / GROUP)?.get(i % GROUP)
    }

    /// Every element in order.
    pub fn iter(&self) -> GroupedIter<'_, T> {
        GroupedIter {
            groups: self.groups.iter(),
            inner: [].iter(),
            left: self.len,
        }
    }
}

impl<'a, T> IntoIterator for &'a Grouped<T> {
    type Item = &'a T;
    type IntoIter = GroupedIter<'a, T>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

/// The elements of a [`Grouped`] list in order.
pub struct GroupedIter<'a, T> {
    groups: std::slice::Iter<'a, Arc<[T]>>,
    inner: std::slice::Iter<'a, T>,
    left: usize,
}

impl<'a, T> Iterator for GroupedIter<'a, T> {
    type Item = &'a T;
    #[inline]
    fn next(&mut self) -> Option<&'a T> {
        loop {
            if let Some(t) = self.inner.next() {
                self.left -= 1;
                return Some(t);
            }
            self.inner = self.groups.next()?.iter();
        }
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<T> ExactSizeIterator for GroupedIter<'_, T> {}

/// One list made of per-module parts (one part per module, empty ones
/// included), indexed by global position.
#[derive(Clone, Debug)]
pub struct Chunked<T> {
    parts: Grouped<Arc<[T]>>,
    /// Global index of each part's first element.
    starts: Vec<u32>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            parts: Grouped::default(),
            starts: Vec::new(),
            len: 0,
        }
    }
}

impl<T: PartialEq> PartialEq for Chunked<T> {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl<T: Eq> Eq for Chunked<T> {}

impl<T> Chunked<T> {
    /// A table of these parts, in order.
    pub fn from_parts(parts: Vec<Arc<[T]>>) -> Self {
        Self::with_parts(Grouped::from_vec(parts))
    }

    /// A table of `n` parts whose part `k` is the one given for `k` in
    /// `parts` (in increasing order of `k`), or else `old`'s part `k`
    /// (groups of such parts are shared with `old`).
    pub fn from_sparse(n: usize, parts: Vec<(usize, Arc<[T]>)>, old: Option<&Chunked<T>>) -> Self {
        let parts = Grouped::from_sparse(n, parts, old.map(|o| &o.parts));
        let Some(old) = old else {
            return Self::with_parts(parts);
        };
        // A group shared with `old` has its parts' lengths: its starts are
        // `old`'s, moved by what the groups before it grew or shrank, and
        // its parts are not looked at.
        let mut starts = Vec::with_capacity(n);
        let mut len = 0usize;
        for (g, group) in parts.groups.iter().enumerate() {
            let (lo, hi) = (g * GROUP, g * GROUP + group.len());
            let shared = old
                .parts
                .groups
                .get(g)
                .is_some_and(|og| Arc::ptr_eq(og, group));
            if let (true, Some(os)) = (shared, old.starts.get(lo..hi)) {
                let base = os[0] as usize;
                let end = old.starts.get(hi).map_or(old.len, |&e| e as usize);
                starts.extend(os.iter().map(|&s| (s as usize - base + len) as u32));
                len += end - base;
                continue;
            }
            for p in group.iter() {
                starts.push(len as u32);
                len += p.len();
            }
        }
        Chunked { parts, starts, len }
    }

    fn with_parts(parts: Grouped<Arc<[T]>>) -> Self {
        let mut starts = Vec::with_capacity(parts.len());
        let mut len = 0usize;
        for p in parts.iter() {
            starts.push(len as u32);
            len += p.len();
        }
        Chunked { parts, starts, len }
    }

    /// `all` cut into parts of the given lengths (which must add up to
    /// `all.len()`; a shortfall ends in one last part).
    pub fn from_vec(all: Vec<T>, lens: impl IntoIterator<Item = usize>) -> Self {
        let mut it = all.into_iter();
        let mut parts: Vec<Arc<[T]>> = lens
            .into_iter()
            .map(|n| it.by_ref().take(n).collect())
            .collect();
        let rest: Vec<T> = it.collect();
        if !rest.is_empty() {
            parts.push(rest.into());
        }
        Self::from_parts(parts)
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Element `i`, if any.
    pub fn get(&self, i: usize) -> Option<&T> {
        if i >= self.len {
            return None;
        }
        let p = self.starts.partition_point(|&s| s as usize <= i) - 1;
        self.part(p).get(i - self.starts[p] as usize)
    }

    /// A reader for lookups that walk the table in order (or stay within
    /// one part for a while): see [`Cursor`].
    pub fn cursor(&self) -> Cursor<'_, T> {
        Cursor {
            table: self,
            part: 0,
            start: 0,
            end: 0,
        }
    }

    /// Part `k` (module `k`'s elements); empty when there is no such part.
    pub fn part(&self, k: usize) -> &[T] {
        self.parts.get(k).map_or(&[], |p| &p[..])
    }

    /// Part `k` as the shared list it is held in: what a reader that
    /// outlives this table keeps instead of a copy.
    pub fn shared_part(&self, k: usize) -> Option<&Arc<[T]>> {
        self.parts.get(k)
    }

    /// Number of parts.
    pub fn parts(&self) -> usize {
        self.parts.len()
    }

    /// Every element in order.
    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            table: self,
            next_part: 0,
            inner: [].iter(),
        }
    }
}

/// The elements of a [`Chunked`] table in order.
pub struct Iter<'a, T> {
    table: &'a Chunked<T>,
    next_part: usize,
    inner: std::slice::Iter<'a, T>,
}

impl<'a, T> Iterator for Iter<'a, T> {
    type Item = &'a T;
    fn next(&mut self) -> Option<&'a T> {
        loop {
            if let Some(t) = self.inner.next() {
                return Some(t);
            }
            if self.next_part >= self.table.parts() {
                return None;
            }
            self.inner = self.table.part(self.next_part).iter();
            self.next_part += 1;
        }
    }
}

/// Looks elements of a [`Chunked`] table up by position, trying the part
/// of the previous lookup first: a walk through the elements of a module
/// after another searches the table of part starts once per module, not
/// once per element as [`Chunked::get`] does (at 100 000 globals that
/// search was a tenth of the first load's bookkeeping).
pub struct Cursor<'a, T> {
    table: &'a Chunked<T>,
    part: usize,
    start: usize,
    end: usize,
}

impl<'a, T> Cursor<'a, T> {
    /// Element `i`, if any (as [`Chunked::get`]).
    pub fn get(&mut self, i: usize) -> Option<&'a T> {
        if i < self.start || i >= self.end {
            if i >= self.table.len {
                return None;
            }
            let p = self.table.starts.partition_point(|&s| s as usize <= i) - 1;
            self.part = p;
            self.start = self.table.starts[p] as usize;
            self.end = self.start + self.table.part(p).len();
        }
        self.table.part(self.part).get(i - self.start)
    }
}

impl<T> Index<usize> for Chunked<T> {
    type Output = T;
    fn index(&self, i: usize) -> &T {
        match self.get(i) {
            Some(t) => t,
            None => panic!("index {i} out of range for a table of {}", self.len),
        }
    }
}

impl<'a, T> IntoIterator for &'a Chunked<T> {
    type Item = &'a T;
    type IntoIter = Iter<'a, T>;
    fn into_iter(self) -> Iter<'a, T> {
        self.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unchanged_groups_are_shared_and_changed_ones_rebuilt() {
        let n = GROUP * 2 + 5;
        let parts: Vec<Arc<[u32]>> = (0..n as u32).map(|i| Arc::from(vec![i, i])).collect();
        let old = Chunked::from_parts(parts);
        // Part 70 (second group) changes; the rest is shared.
        let t = Chunked::from_sparse(n, vec![(70, Arc::from(vec![7u32]))], Some(&old));
        assert_eq!(t.parts(), n);
        assert_eq!(t.len(), old.len() - 1);
        assert_eq!(t.part(70), &[7]);
        assert_eq!(t.part(71), &[71, 71]);
        assert_eq!(t[140], 7); // parts 0..70 hold two elements each
        assert_eq!(t[141], 71);
        assert!(Arc::ptr_eq(&t.parts.groups[0], &old.parts.groups[0]));
        assert!(!Arc::ptr_eq(&t.parts.groups[1], &old.parts.groups[1]));
        assert!(Arc::ptr_eq(&t.parts.groups[2], &old.parts.groups[2]));
        assert_eq!(t.iter().count(), t.len());
        // Every start (shared groups' moved by the change before them) is
        // what a table built from scratch has.
        let whole = Chunked::from_parts((0..n).map(|k| Arc::from(t.part(k))).collect());
        assert_eq!(t.starts, whole.starts);
        assert_eq!(t.len, whole.len);
        // Grown back: the third group's starts move up again.
        let back = Chunked::from_sparse(n, vec![(70, Arc::from(vec![70u32, 70]))], Some(&t));
        assert_eq!(back.starts, old.starts);
        assert!((0..back.len()).all(|i| back[i] == old[i]));
    }

    #[test]
    fn a_cursor_finds_what_get_finds_in_any_order() {
        // Empty parts between, at the start and at the end.
        let lens = [0usize, 3, 0, 0, 2, 5, 0, 1, 0];
        let all: Vec<u32> = (0..lens.iter().sum::<usize>() as u32).collect();
        let t = Chunked::from_vec(all, lens);
        let mut c = t.cursor();
        for i in 0..t.len() + 2 {
            assert_eq!(c.get(i), t.get(i), "in order, {i}");
        }
        let mut c = t.cursor();
        for i in [10, 0, 4, 3, 9, 11, 2, 5, 5, 1, 7, 6, 8] {
            assert_eq!(c.get(i), t.get(i), "out of order, {i}");
        }
        let empty: Chunked<u32> = Chunked::from_vec(Vec::new(), [0, 0]);
        assert_eq!(empty.cursor().get(0), None);
    }

    #[test]
    fn a_grouped_list_reads_like_a_vector() {
        let v: Vec<u32> = (0..(GROUP as u32) * 3 + 7).collect();
        let g = Grouped::from_vec(v.clone());
        assert_eq!(g.len(), v.len());
        assert!(g.iter().eq(v.iter()));
        assert_eq!(g.iter().len(), v.len());
        assert_eq!(g.get(GROUP + 1), Some(&(GROUP as u32 + 1)));
        assert_eq!(g.get(v.len()), None);
    }
}
