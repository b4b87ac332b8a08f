//! The manifest's module list, in shared groups that may lie elsewhere.
//!
//! A reload that finds a stretch of modules unchanged but moved (an
//! earlier module grew, so every later segment, block and index starts
//! further on) takes each whole group of them from the loaded list as it
//! is, shared, with the move noted beside it. The moved copy of a group is
//! made the first time one of its modules is read, which a reload of a few
//! changed modules rarely does: putting the list together and dropping it
//! costs a count per group, not a copy per module. Moves noted on a group
//! taken again add up, so a group is copied at most once however many
//! reloads move it.

use std::ops::{Index, IndexMut};
use std::sync::{Arc, OnceLock};

use crate::{Module, Span, GROUP};

/// How far a module's places moved: segment (and the code and unwind
/// table inside it), initial bytes, function and object ids, block.
/// Signed, wide enough for any difference of two places.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Moves {
    pub seg: i128,
    pub init: i128,
    pub f: i128,
    pub o: i128,
    pub block: i128,
}

impl Moves {
    fn then(self, b: Moves) -> Moves {
        Moves {
            seg: self.seg + b.seg,
            init: self.init + b.init,
            f: self.f + b.f,
            o: self.o + b.o,
            block: self.block + b.block,
        }
    }

    fn none(&self) -> bool {
        *self == Moves::default()
    }
}

/// A 32-bit place moved by `by`; the caller checked the result is in range
/// (see `codec::Next::shifted_run`).
pub(crate) fn mv32(v: u32, by: i128) -> u32 {
    (i128::from(v) + by) as u32
}

/// A 64-bit place moved by `by` (as [`mv32`]).
pub(crate) fn mv64(v: u64, by: i128) -> u64 {
    (i128::from(v) + by) as u64
}

impl Module {
    /// This module with its places moved by `by`. The caller checked that
    /// the moved places are in range (see `codec::Next::shifted_run`).
    pub(crate) fn moved(&self, by: Moves) -> Module {
        let sh = |s: Span, by: i128| Span::new(mv32(s.start, by), mv32(s.end, by));
        let mut md = self.clone();
        md.seg = sh(self.seg, by.seg);
        md.text = sh(self.text, by.seg);
        md.eh_frame = sh(self.eh_frame, by.seg);
        md.functions = sh(self.functions, by.f);
        md.objects = sh(self.objects, by.o);
        md.init.0 = mv64(self.init.0, by.init);
        md.block.0 = mv64(self.block.0, by.block);
        md
    }
}

/// One group: modules as some list holds them, and how far they moved
/// since.
#[derive(Clone, Debug)]
struct Group {
    base: Arc<[Module]>,
    by: Moves,
    /// `base` moved by `by`, made on first read (unused when `by` is none).
    moved: OnceLock<Arc<[Module]>>,
}

impl Group {
    fn of(base: Arc<[Module]>) -> Self {
        Group {
            base,
            by: Moves::default(),
            moved: OnceLock::new(),
        }
    }

    #[inline]
    fn get(&self) -> &[Module] {
        if self.by.none() {
            return &self.base;
        }
        self.moved
            .get_or_init(|| self.base.iter().map(|m| m.moved(self.by)).collect())
    }

    /// The modules for writing: the group becomes this list's own.
    fn get_mut(&mut self) -> &mut [Module] {
        if !self.by.none() {
            let by = self.by;
            let moved = match self.moved.take() {
                Some(m) => m,
                None => self.base.iter().map(|m| m.moved(by)).collect(),
            };
            *self = Group::of(moved);
        }
        Arc::make_mut(&mut self.base)
    }
}

/// The modules of a manifest, in order ([`crate::Manifest::modules`]).
#[derive(Clone, Debug, Default)]
pub struct ModuleList {
    groups: Vec<Group>,
    len: usize,
}

impl ModuleList {
    /// Number of modules.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Module `i`, if any.
    #[inline]
    pub fn get(&self, i: usize) -> Option<&Module> {
        self.groups.get(i / GROUP)?.get().get(i % GROUP)
    }

    /// Module `i`, copied alone: a group whose move is not applied yet
    /// stays so (for a reader of a few modules of a list it will not
    /// read otherwise).
    pub(crate) fn get_alone(&self, i: usize) -> Option<Module> {
        self.get_moved(i, Moves::default())
    }

    /// Module `i` moved further by `by`, copied alone (see
    /// [`ModuleList::get_alone`]).
    pub(crate) fn get_moved(&self, i: usize, by: Moves) -> Option<Module> {
        let g = self.groups.get(i / GROUP)?;
        if let Some(moved) = g.moved.get() {
            return moved.get(i % GROUP).map(|md| md.moved(by));
        }
        Some(g.base.get(i % GROUP)?.moved(g.by.then(by)))
    }

    /// Module `i` for writing, if any.
    pub fn get_mut(&mut self, i: usize) -> Option<&mut Module> {
        if i >= self.len {
            return None;
        }
        self.groups[i / GROUP].get_mut().get_mut(i % GROUP)
    }

    /// Every module in order.
    pub fn iter(&self) -> Iter<'_> {
        Iter {
            groups: self.groups.iter(),
            inner: [].iter(),
            left: self.len,
        }
    }

    /// Every module in order, for writing.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Module> {
        self.groups.iter_mut().flat_map(|g| g.get_mut().iter_mut())
    }

    /// Appends `md` (copying the last group when it is shared: for tests
    /// and small lists; [`ModuleListBuilder`] builds large ones).
    pub fn push(&mut self, md: Module) {
        match self.groups.last_mut() {
            Some(g) if g.base.len() < GROUP => {
                let mut v = g.get().to_vec();
                v.push(md);
                *g = Group::of(Arc::from(v));
            }
            _ => self.groups.push(Group::of(Arc::from(vec![md]))),
        }
        self.len += 1;
    }

    /// The number of leading modules for which `pred` holds (true for a
    /// prefix of the list, false after it), as `slice::partition_point`.
    pub fn partition_point(&self, mut pred: impl FnMut(&Module) -> bool) -> usize {
        let g = self
            .groups
            .partition_point(|g| g.get().last().is_some_and(&mut pred));
        match self.groups.get(g) {
            Some(group) => g * GROUP + group.get().partition_point(pred),
            None => self.len,
        }
    }

    /// True when group `g` of this list holds the same modules as group
    /// `g` of `other`, shared and not moved since (for tests).
    #[cfg(test)]
    pub(crate) fn shares_group(&self, other: &ModuleList, g: usize) -> bool {
        match (self.groups.get(g), other.groups.get(g)) {
            (Some(a), Some(b)) => Arc::ptr_eq(&a.base, &b.base),
            _ => false,
        }
    }
}

impl PartialEq for ModuleList {
    fn eq(&self, other: &Self) -> bool {
        self.len == other.len && self.iter().eq(other.iter())
    }
}

impl Eq for ModuleList {}

impl Index<usize> for ModuleList {
    type Output = Module;
    #[inline]
    fn index(&self, i: usize) -> &Module {
        match self.get(i) {
            Some(md) => md,
            None => panic!("module {i} out of range for a list of {}", self.len),
        }
    }
}

impl IndexMut<usize> for ModuleList {
    fn index_mut(&mut self, i: usize) -> &mut Module {
        let len = self.len;
        match self.get_mut(i) {
            Some(md) => md,
            None => panic!("module {i} out of range for a list of {len}"),
        }
    }
}

impl FromIterator<Module> for ModuleList {
    fn from_iter<I: IntoIterator<Item = Module>>(it: I) -> Self {
        let mut b = ModuleListBuilder::default();
        for md in it {
            b.push(md);
        }
        b.finish()
    }
}

impl<'a> IntoIterator for &'a ModuleList {
    type Item = &'a Module;
    type IntoIter = Iter<'a>;
    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

/// The modules of a [`ModuleList`] in order.
pub struct Iter<'a> {
    groups: std::slice::Iter<'a, Group>,
    inner: std::slice::Iter<'a, Module>,
    left: usize,
}

impl<'a> Iterator for Iter<'a> {
    type Item = &'a Module;
    #[inline]
    fn next(&mut self) -> Option<&'a Module> {
        loop {
            if let Some(md) = self.inner.next() {
                self.left -= 1;
                return Some(md);
            }
            self.inner = self.groups.next()?.get().iter();
        }
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for Iter<'_> {}

/// Builds a [`ModuleList`] module by module, taking whole groups of a
/// loaded list where they fit.
#[derive(Default)]
pub(crate) struct ModuleListBuilder {
    groups: Vec<Group>,
    cur: Vec<Module>,
    len: usize,
}

impl ModuleListBuilder {
    pub fn with_capacity(n: usize) -> Self {
        ModuleListBuilder {
            groups: Vec::with_capacity(n.div_ceil(GROUP)),
            cur: Vec::with_capacity(GROUP.min(n)),
            len: 0,
        }
    }

    #[inline]
    pub fn push(&mut self, md: Module) {
        self.cur.push(md);
        self.len += 1;
        if self.cur.len() == GROUP {
            let cur = std::mem::replace(&mut self.cur, Vec::with_capacity(GROUP));
            self.groups.push(Group::of(Arc::from(cur)));
        }
    }

    /// Appends group `g` of `old`, moved by `by`, shared; false (nothing
    /// appended) unless this list ends at a group boundary and the group
    /// is a full one.
    pub fn push_moved_group(&mut self, old: &ModuleList, g: usize, by: Moves) -> bool {
        let Some(og) = old.groups.get(g) else {
            return false;
        };
        if !self.cur.is_empty() || og.base.len() != GROUP {
            return false;
        }
        let group = match by.none() {
            // Not moved again: its moved copy, if made, is shared too.
            true => og.clone(),
            false => Group {
                base: og.base.clone(),
                by: og.by.then(by),
                moved: OnceLock::new(),
            },
        };
        self.groups.push(group);
        self.len += GROUP;
        true
    }

    pub fn finish(mut self) -> ModuleList {
        if !self.cur.is_empty() {
            let cur = std::mem::take(&mut self.cur);
            self.groups.push(Group::of(Arc::from(cur)));
        }
        ModuleList {
            groups: self.groups,
            len: self.len,
        }
    }
}
