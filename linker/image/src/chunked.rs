//! A table split into one shared part per module: a reload that keeps a
//! module shares its part with the previous manifest instead of decoding or
//! copying it, and the table still reads as one list indexed by global id.

use std::ops::Index;
use std::sync::Arc;

/// One list made of per-module parts (one part per module, empty ones
/// included), indexed by global position.
#[derive(Clone, Debug)]
pub struct Chunked<T> {
    parts: Vec<Arc<[T]>>,
    /// Global index of each part's first element.
    starts: Vec<u32>,
    len: usize,
}

impl<T> Default for Chunked<T> {
    fn default() -> Self {
        Chunked {
            parts: Vec::new(),
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
        let mut starts = Vec::with_capacity(parts.len());
        let mut len = 0usize;
        for p in &parts {
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
        self.parts[p].get(i - self.starts[p] as usize)
    }

    /// Part `k` (module `k`'s elements); empty when there is no such part.
    pub fn part(&self, k: usize) -> &[T] {
        self.parts.get(k).map_or(&[], |p| &p[..])
    }

    /// Part `k` as shared, to reuse in another table.
    pub fn shared_part(&self, k: usize) -> Option<&Arc<[T]>> {
        self.parts.get(k)
    }

    /// Number of parts.
    pub fn parts(&self) -> usize {
        self.parts.len()
    }

    /// Every element in order.
    pub fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.parts.iter().flat_map(|p| p.iter())
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
    type IntoIter = std::iter::FlatMap<
        std::slice::Iter<'a, Arc<[T]>>,
        std::slice::Iter<'a, T>,
        fn(&'a Arc<[T]>) -> std::slice::Iter<'a, T>,
    >;
    fn into_iter(self) -> Self::IntoIter {
        fn each<T>(p: &Arc<[T]>) -> std::slice::Iter<'_, T> {
            p.iter()
        }
        self.parts.iter().flat_map(each as fn(&'a Arc<[T]>) -> _)
    }
}
