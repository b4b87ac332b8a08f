//! The permanent functions: registry index → trampoline and name, and the
//! index by `(module, name)`.
//!
//! A first load registers every function of the program (25 000 for 500
//! modules × 50 functions), so registering one costs no allocation: module
//! names are interned once, function names are appended to one buffer, and
//! the index is one hash table of registry indices hashed by `(module id,
//! name)` and compared against the names stored here, built when first
//! needed (the thread that prepares reloads builds it right after a first
//! load). Functions are never
//! unregistered (a removed one keeps its permanent address behind a stub),
//! so the buffer and the table only grow.

use std::hash::{BuildHasher, Hasher};

use hashbrown::HashTable;
use rustc_hash::FxBuildHasher;

use super::*;

/// A permanent function: its module and name. Its trampoline follows from
/// its registry index and the batch that holds it (`Functions::tramp`), so
/// an entry is 12 bytes: a first load of 25 000 functions fills 0.3 MB of
/// fresh pages here instead of 1.2 MB.
pub(super) struct FnEntry {
    /// Interned module name (`Functions::module`).
    module: u32,
    /// `name` as `(start, length)` in `Functions::names`.
    name: (u32, u32),
}

/// One registered batch of trampolines: registry indices `first ..
/// first + len` are its trampolines in order.
#[derive(Clone, Copy)]
struct Span {
    code: u64,
    slots: u64,
    first: u32,
    len: u32,
}

/// Every permanent function, by registry index.
#[derive(Default)]
pub(super) struct Functions {
    entries: Vec<FnEntry>,
    /// Module names by interned id.
    modules: Vec<Arc<str>>,
    module_ids: HashMap<Arc<str>, u32>,
    /// Every function name, one after the other.
    names: String,
    /// Registry indices hashed by `(module id, name)`: built at the first
    /// look-up (or ahead of it by [`Functions::warm_index`]) and kept up
    /// from then on, so a first load's 25 000 functions are not hashed on
    /// the loading thread.
    index: std::sync::OnceLock<HashTable<u32>>,
    /// Each batch of trampolines, in registration order (so by first
    /// registry index): what `tramp` and `owner` search.
    spans: Vec<Span>,
    /// The stub each function absent from the live image jumps to, by
    /// registry index (few at any time).
    removed: HashMap<u32, u64>,
}

fn hash(module: u32, name: &str) -> u64 {
    let mut h = FxBuildHasher.build_hasher();
    h.write_u32(module);
    h.write(name.as_bytes());
    h.finish()
}

/// Adds `entries[first..]` to `index`.
fn index_entries(index: &mut HashTable<u32>, entries: &[FnEntry], names: &str, first: usize) {
    let name_of = |e: &FnEntry| &names[e.name.0 as usize..(e.name.0 + e.name.1) as usize];
    let rehash = |t: &u32| {
        let e = &entries[*t as usize];
        hash(e.module, name_of(e))
    };
    index.reserve(entries.len().saturating_sub(first), rehash);
    for (t, e) in entries.iter().enumerate().skip(first) {
        // Room was reserved above: no rehash happens here.
        index.insert_unique(hash(e.module, name_of(e)), t as u32, rehash);
    }
}

impl Functions {
    /// Functions registered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// The interned id of `module`, if any of its functions is registered.
    pub fn module_id(&self, module: &str) -> Option<u32> {
        self.module_ids.get(module).copied()
    }

    /// The interned id of `module`, interning it when new.
    pub fn intern_module(&mut self, module: &str) -> u32 {
        if let Some(id) = self.module_id(module) {
            return id;
        }
        let id = self.modules.len() as u32;
        let name: Arc<str> = Arc::from(module);
        self.modules.push(name.clone());
        self.module_ids.insert(name, id);
        id
    }

    /// The registry index of function `name` of the module with id `module`.
    pub fn get(&self, module: u32, name: &str) -> Option<u32> {
        self.index()
            .find(hash(module, name), |&t| {
                let e = &self.entries[t as usize];
                e.module == module && self.name_of(e) == name
            })
            .copied()
    }

    /// The index, built now when no look-up has needed it yet.
    fn index(&self) -> &HashTable<u32> {
        self.index.get_or_init(|| {
            let mut index = HashTable::new();
            index_entries(&mut index, &self.entries, &self.names, 0);
            index
        })
    }

    /// Builds the index now, if it is not built (by a thread that has
    /// nothing better to do, so the first look-up finds it ready).
    pub fn warm_index(&self) {
        let _ = self.index();
    }

    /// The registry index of `module`'s function `name`.
    pub fn lookup(&self, module: &str, name: &str) -> Option<u32> {
        self.get(self.module_id(module)?, name)
    }

    fn name_of(&self, e: &FnEntry) -> &str {
        &self.names[e.name.0 as usize..(e.name.0 + e.name.1) as usize]
    }

    /// Function `t`'s module.
    pub fn module(&self, t: u32) -> &str {
        &self.modules[self.entries[t as usize].module as usize]
    }

    /// Function `t`'s name.
    pub fn name(&self, t: u32) -> &str {
        self.name_of(&self.entries[t as usize])
    }

    /// Registers the trampolines of `batch`: `fill` calls `put(i, module
    /// id, name)` once for each `i < batch.len()` (in any order);
    /// `names_len` is the total length of the names, when known (one
    /// reservation). Returns the first registry index.
    pub fn register(
        &mut self,
        batch: &Batch,
        names_len: usize,
        fill: impl FnOnce(&mut dyn FnMut(usize, u32, &str)),
    ) -> u32 {
        let first = self.entries.len();
        let n = batch.len();
        self.names.reserve(names_len);
        self.entries.reserve(n);
        // Fault the new entries' and names' pages in with one call each
        // rather than one fault per page (25 000 functions: 1.1 MB).
        let spare = &self.entries.spare_capacity_mut()[..n];
        hcr_loader::mem::populate(spare.as_ptr() as usize, std::mem::size_of_val(spare));
        let used = self.names.len();
        let names_room = names_len.min(self.names.capacity() - used);
        hcr_loader::mem::populate(self.names.as_ptr() as usize + used, names_room);
        // Unnamed until `fill` names them (it names all of them).
        self.entries.extend((0..n).map(|_| FnEntry {
            module: NONE,
            name: (0, 0),
        }));
        {
            let Functions { entries, names, .. } = self;
            let mut put = |i: usize, module: u32, name: &str| {
                if let Some(e) = entries.get_mut(first + i) {
                    e.module = module;
                    e.name = (names.len() as u32, name.len() as u32);
                    names.push_str(name);
                }
            };
            fill(&mut put);
        }
        if self.entries[first..].iter().any(|e| e.module == NONE) {
            let unnamed = self.intern_module("");
            for e in self.entries[first..]
                .iter_mut()
                .filter(|e| e.module == NONE)
            {
                e.module = unnamed;
            }
        }
        if let Some(index) = self.index.get_mut() {
            index_entries(index, &self.entries, &self.names, first);
        }
        if n > 0 {
            let t0 = batch.get(0);
            self.spans.push(Span {
                code: t0.code,
                slots: t0.slot,
                first: first as u32,
                len: n as u32,
            });
        }
        first as u32
    }

    /// Function `t`'s trampoline (`t < len()`).
    pub fn tramp(&self, t: u32) -> Trampoline {
        let k = self.spans.partition_point(|s| s.first <= t);
        let s = self.spans[k.saturating_sub(1)];
        let i = u64::from(t - s.first);
        Trampoline {
            code: s.code + i * trampoline::TRAMPOLINE_SIZE as u64,
            slot: s.slots + i * 8,
        }
    }

    /// The removed-function stub function `t` jumps to while it is absent
    /// from the live image.
    pub fn removed_stub(&self, t: u32) -> Option<u64> {
        self.removed.get(&t).copied()
    }

    /// Records (`Some`) or clears (`None`) function `t`'s removed stub.
    pub fn set_removed_stub(&mut self, t: u32, stub: Option<u64>) {
        match stub {
            Some(a) => {
                self.removed.insert(t, a);
            }
            None => {
                if !self.removed.is_empty() {
                    self.removed.remove(&t);
                }
            }
        }
    }

    /// The registry index of the function whose trampoline starts at `code`.
    pub fn owner(&self, code: u64) -> Option<u32> {
        let size = trampoline::TRAMPOLINE_SIZE as u64;
        let s = self
            .spans
            .iter()
            .find(|s| (s.code..s.code + u64::from(s.len) * size).contains(&code))?;
        let off = code - s.code;
        off.is_multiple_of(size)
            .then(|| s.first + (off / size) as u32)
    }

    /// Every registry index.
    pub fn indices(&self) -> std::ops::Range<u32> {
        0..self.entries.len() as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(window: &mut Window, n: usize) -> Batch {
        trampoline::make_batch(window, n).unwrap()
    }

    #[test]
    fn register_look_up_and_find_owners() {
        let mut window = Window::reserve(1 << 24).unwrap();
        let mut fns = Functions::default();
        let a = fns.intern_module("a");
        let b = fns.intern_module("b");
        assert_eq!(fns.intern_module("a"), a);
        let b1 = batch(&mut window, 3);
        let keys = [(a, "f"), (b, "f"), (a, "g")];
        assert_eq!(fns.register(&b1, 3, |put| put_all(&keys, put)), 0);
        // A second batch grows the table (and rehashes what it holds).
        let b2 = batch(&mut window, 100);
        let names: Vec<String> = (0..100).map(|i| format!("h{i}")).collect();
        let keys2: Vec<(u32, &str)> = names.iter().map(|n| (b, n.as_str())).collect();
        // Named in any order; the length of the names is only a hint.
        let order = |put: &mut dyn FnMut(usize, u32, &str)| {
            for (i, &(m, n)) in keys2.iter().enumerate().rev() {
                put(i, m, n);
            }
        };
        assert_eq!(fns.register(&b2, 0, order), 3);
        assert_eq!(fns.len(), 103);
        // No look-up so far: the index is built now, over both batches.
        assert!(fns.index.get().is_none());
        assert_eq!(fns.lookup("a", "f"), Some(0));
        assert_eq!(fns.lookup("b", "f"), Some(1));
        assert_eq!(fns.lookup("a", "g"), Some(2));
        assert_eq!(fns.lookup("b", "g"), None);
        assert_eq!(fns.lookup("c", "f"), None);
        for (i, n) in names.iter().enumerate() {
            assert_eq!(fns.lookup("b", n), Some(3 + i as u32));
            assert_eq!(fns.name(3 + i as u32), n);
            assert_eq!(fns.module(3 + i as u32), "b");
        }
        assert_eq!(fns.owner(b1.get(1).code), Some(1));
        assert_eq!(fns.owner(b2.get(99).code), Some(102));
        assert_eq!(fns.owner(b2.get(99).code + 1), None);
        assert_eq!(fns.owner(b2.get(99).code + 8), None);
        assert_eq!(fns.tramp(1), b1.get(1));
        assert_eq!(fns.tramp(0), b1.get(0));
        assert_eq!(fns.tramp(3), b2.get(0));
        assert_eq!(fns.tramp(102), b2.get(99));
        assert_eq!(fns.removed_stub(5), None);
        fns.set_removed_stub(5, Some(0x1234));
        assert_eq!(fns.removed_stub(5), Some(0x1234));
        fns.set_removed_stub(5, None);
        assert_eq!(fns.removed_stub(5), None);
        // A trampoline `fill` leaves unnamed is registered as ":" (module
        // and name empty), as before. (The index is built: a new batch
        // joins it as it is registered.)
        assert!(fns.index.get().is_some());
        let b3 = batch(&mut window, 2);
        assert_eq!(fns.register(&b3, 0, |put| put(0, a, "k")), 103);
        assert_eq!(fns.lookup("a", "k"), Some(103));
        assert_eq!((fns.module(104), fns.name(104)), ("", ""));
        assert_eq!(fns.lookup("", ""), Some(104));
    }

    fn put_all(keys: &[(u32, &str)], put: &mut dyn FnMut(usize, u32, &str)) {
        for (i, &(m, n)) in keys.iter().enumerate() {
            put(i, m, n);
        }
    }
}
