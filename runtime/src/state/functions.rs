//! The permanent functions: registry index → trampoline and name, and the
//! index by `(module, name)`.
//!
//! A first load registers every function of the program (25 000 for 500
//! modules × 50 functions), so registering costs nothing per function: a
//! module whose functions are all new is one run of registry indices named
//! by the manifest's own function records and string table, shared rather
//! than copied (a first load touches no fresh page here); names given one
//! by one (a reload's new functions) are copied into one table per batch.
//! Module names are interned once, and the index is one hash table of
//! registry indices hashed by `(module id, name)`, built when first needed
//! (the thread that prepares reloads builds it right after a first load).
//! Functions are never unregistered (a removed one keeps its permanent
//! address behind a stub), so the runs and the table only grow.

use std::hash::{BuildHasher, Hasher};

use hashbrown::HashTable;
use hcr_image::Function;
use rustc_hash::FxBuildHasher;

use super::*;

/// Registry indices `first .. first + len`: functions of one module, named
/// by the function records `fns[from ..]`, whose names lie in `table`
/// (an index past `fns` is unnamed: "").
struct Run {
    first: u32,
    len: u32,
    /// Interned module name (`Functions::module`).
    module: u32,
    from: u32,
    fns: Arc<[Function]>,
    table: Arc<str>,
}

impl Run {
    /// The name of registry index `t` (inside this run).
    fn name(&self, t: u32) -> &str {
        let k = (self.from + (t - self.first)) as usize;
        self.fns.get(k).map_or("", |f| f.name.within(&self.table))
    }
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
    /// Names of registry indices `0 .. len`, sorted by first index, one
    /// after the other.
    runs: Vec<Run>,
    len: u32,
    /// Module names by interned id.
    modules: Vec<Arc<str>>,
    module_ids: HashMap<Arc<str>, u32>,
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

/// How a batch being registered is named ([`Functions::register`]).
pub(super) struct Naming {
    /// The batch's length.
    n: u32,
    /// Runs named by shared records, batch-relative first indices.
    runs: Vec<Run>,
    /// `(index in the batch, module, name's range in text)`.
    one: Vec<(u32, u32, u32, u32)>,
    text: String,
}

impl Naming {
    /// Names batch entry `i` `module:name` (a copy of the name is kept).
    pub fn one(&mut self, i: usize, module: u32, name: &str) {
        if i < self.n as usize {
            let at = self.text.len() as u32;
            self.text.push_str(name);
            self.one.push((i as u32, module, at, name.len() as u32));
        }
    }

    /// Names batch entries `first .. first + fns.len()` after the function
    /// records `fns`, all of `module`, whose names lie in `table` (both
    /// shared, not copied).
    pub fn run(&mut self, first: usize, module: u32, fns: &Arc<[Function]>, table: &Arc<str>) {
        let len = fns.len().min((self.n as usize).saturating_sub(first));
        if len > 0 {
            self.runs.push(Run {
                first: first as u32,
                len: len as u32,
                module,
                from: 0,
                fns: fns.clone(),
                table: table.clone(),
            });
        }
    }

    /// The batch's runs, sorted, covering `0 .. n` with registry indices
    /// from `base`: the shared ones, the names given one by one in one
    /// table, and what neither named (name "", module `NONE` for the
    /// caller to name "").
    fn into_runs(self, base: u32) -> Vec<Run> {
        let Naming {
            n,
            mut runs,
            mut one,
            text,
        } = self;
        if !one.is_empty() {
            // (Named twice: the last name given wins.)
            one.reverse();
            one.sort_by_key(|e| e.0);
            one.dedup_by_key(|e| e.0);
            let table: Arc<str> = Arc::from(text);
            let fns: Arc<[Function]> = (one.iter())
                .map(|&(_, _, off, len)| Function {
                    name: hcr_image::Str { off, len, table: 0 },
                    ..Function::default()
                })
                .collect();
            let mut k = 0;
            while k < one.len() {
                let (i, module, ..) = one[k];
                let mut len = 1;
                while one
                    .get(k + len)
                    .is_some_and(|e| e.0 == i + len as u32 && e.1 == module)
                {
                    len += 1;
                }
                runs.push(Run {
                    first: i,
                    len: len as u32,
                    module,
                    from: k as u32,
                    fns: fns.clone(),
                    table: table.clone(),
                });
                k += len;
            }
        }
        runs.sort_by_key(|r| r.first);
        let mut out: Vec<Run> = Vec::with_capacity(runs.len() + 1);
        let mut at = 0u32;
        let gap = |first: u32, len: u32| Run {
            first,
            len,
            module: NONE,
            from: 0,
            fns: Arc::from([]),
            table: Arc::from(""),
        };
        for mut r in runs {
            // (Overlaps are cut: every index has one name.)
            if r.first < at {
                let cut = at - r.first;
                if cut >= r.len {
                    continue;
                }
                r.first = at;
                r.from += cut;
                r.len -= cut;
            }
            if r.first > at {
                out.push(gap(at, r.first - at));
            }
            at = r.first + r.len;
            out.push(r);
        }
        if at < n {
            out.push(gap(at, n - at));
        }
        for r in &mut out {
            r.first += base;
        }
        out
    }
}

fn hash(module: u32, name: &str) -> u64 {
    let mut h = FxBuildHasher.build_hasher();
    h.write_u32(module);
    h.write(name.as_bytes());
    h.finish()
}

/// Adds the registry indices of `runs` from `first` on to `index`.
fn index_runs(index: &mut HashTable<u32>, runs: &[Run], first: u32) {
    let key = |t: u32| {
        let r = &runs[run_of(runs, t)];
        hash(r.module, r.name(t))
    };
    let end = runs.last().map_or(0, |r| r.first + r.len);
    index.reserve(end.saturating_sub(first) as usize, |&t| key(t));
    for r in runs.iter().filter(|r| r.first + r.len > first) {
        for t in r.first.max(first)..r.first + r.len {
            // Room was reserved above: no rehash happens here.
            index.insert_unique(hash(r.module, r.name(t)), t, |&t| key(t));
        }
    }
}

/// The run holding registry index `t` (which must be registered).
fn run_of(runs: &[Run], t: u32) -> usize {
    runs.partition_point(|r| r.first <= t).saturating_sub(1)
}

impl Functions {
    /// Functions registered.
    pub fn len(&self) -> usize {
        self.len as usize
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
            .find(hash(module, name), |&t| self.key(t) == (module, name))
            .copied()
    }

    /// The interned module and the name of registry index `t`.
    fn key(&self, t: u32) -> (u32, &str) {
        match self.runs.get(run_of(&self.runs, t)) {
            Some(r) if t < self.len => (r.module, r.name(t)),
            _ => (NONE, ""),
        }
    }

    /// The index, built now when no look-up has needed it yet.
    fn index(&self) -> &HashTable<u32> {
        self.index.get_or_init(|| {
            let mut index = HashTable::new();
            index_runs(&mut index, &self.runs, 0);
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

    /// Function `t`'s module.
    pub fn module(&self, t: u32) -> &str {
        let (m, _) = self.key(t);
        self.modules.get(m as usize).map_or("", |m| &m[..])
    }

    /// Function `t`'s name.
    pub fn name(&self, t: u32) -> &str {
        self.key(t).1
    }

    /// Registers the trampolines of `batch`: `fill` names each `i <
    /// batch.len()` ([`Naming`]: one by one, in any order, or in runs
    /// named by shared function records); one it leaves unnamed is
    /// registered as module "" and name "". Returns the first registry
    /// index.
    pub fn register(&mut self, batch: &Batch, fill: impl FnOnce(&mut Naming)) -> u32 {
        let first = self.len;
        let n = batch.len() as u32;
        let mut naming = Naming {
            n,
            runs: Vec::new(),
            one: Vec::new(),
            text: String::new(),
        };
        fill(&mut naming);
        let mut runs = naming.into_runs(first);
        if runs.iter().any(|r| r.module == NONE) {
            let unnamed = self.intern_module("");
            for r in runs.iter_mut().filter(|r| r.module == NONE) {
                r.module = unnamed;
            }
        }
        self.runs.extend(runs);
        self.len = first + n;
        if let Some(index) = self.index.get_mut() {
            index_runs(index, &self.runs, first);
        }
        if n > 0 {
            let t0 = batch.get(0);
            self.spans.push(Span {
                code: t0.code,
                slots: t0.slot,
                first,
                len: n,
            });
        }
        first
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

    /// Every registry index with its module and name, in order (one pass
    /// over the runs, no search per index).
    pub fn named(&self) -> impl Iterator<Item = (u32, &str, &str)> {
        self.runs.iter().flat_map(move |r| {
            let module = self.modules.get(r.module as usize).map_or("", |m| &m[..]);
            (r.first..r.first + r.len).map(move |t| (t, module, r.name(t)))
        })
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
        assert_eq!(fns.register(&b1, |put| put_all(&keys, put)), 0);
        // A second batch grows the table (and rehashes what it holds).
        let b2 = batch(&mut window, 100);
        let names: Vec<String> = (0..100).map(|i| format!("h{i}")).collect();
        let keys2: Vec<(u32, &str)> = names.iter().map(|n| (b, n.as_str())).collect();
        // Named in any order; the length of the names is only a hint.
        let order = |put: &mut Naming| {
            for (i, &(m, n)) in keys2.iter().enumerate().rev() {
                put.one(i, m, n);
            }
        };
        assert_eq!(fns.register(&b2, order), 3);
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
        assert_eq!(fns.register(&b3, |put| put.one(0, a, "k")), 103);
        assert_eq!(fns.lookup("a", "k"), Some(103));
        assert_eq!((fns.module(104), fns.name(104)), ("", ""));
        assert_eq!(fns.lookup("", ""), Some(104));
    }

    fn put_all(keys: &[(u32, &str)], put: &mut Naming) {
        for (i, &(m, n)) in keys.iter().enumerate() {
            put.one(i, m, n);
        }
    }

    /// Records named `names` in one shared table, as a manifest holds a
    /// module's functions.
    fn records(names: &[&str]) -> (Arc<[Function]>, Arc<str>) {
        let mut text = String::new();
        let fns = (names.iter())
            .map(|n| {
                let name = hcr_image::Str {
                    off: text.len() as u32,
                    len: n.len() as u32,
                    table: 1,
                };
                text.push_str(n);
                Function {
                    name,
                    ..Function::default()
                }
            })
            .collect();
        (fns, Arc::from(text))
    }

    #[test]
    fn runs_of_shared_records_and_names_given_one_by_one() {
        let mut window = Window::reserve(1 << 24).unwrap();
        let mut fns = Functions::default();
        let (a, b) = (fns.intern_module("a"), fns.intern_module("b"));
        let (ra, ta) = records(&["f", "g", "h"]);
        let (rb, tb) = records(&["x", "y"]);
        // Entries 0-2 by a's records, 3 one by one, 4-5 by b's records,
        // 6 unnamed, 7 one by one, 8-9 by b's records again.
        let b1 = batch(&mut window, 10);
        let first = fns.register(&b1, |n| {
            n.one(7, a, "late");
            n.run(4, b, &rb, &tb);
            n.one(3, b, "z");
            n.run(0, a, &ra, &ta);
            n.run(8, b, &rb, &tb);
        });
        assert_eq!(first, 0);
        assert_eq!(fns.len(), 10);
        let got: Vec<(&str, &str)> = (0..fns.len() as u32)
            .map(|t| (fns.module(t), fns.name(t)))
            .collect();
        assert_eq!(
            got,
            [
                ("a", "f"),
                ("a", "g"),
                ("a", "h"),
                ("b", "z"),
                ("b", "x"),
                ("b", "y"),
                ("", ""),
                ("a", "late"),
                ("b", "x"),
                ("b", "y"),
            ]
        );
        assert_eq!(fns.lookup("a", "h"), Some(2));
        assert_eq!(fns.lookup("b", "z"), Some(3));
        assert_eq!(fns.lookup("a", "late"), Some(7));
        // A run longer than the batch is cut to it.
        let b2 = batch(&mut window, 2);
        assert_eq!(fns.register(&b2, |n| n.run(0, a, &ra, &ta)), 10);
        assert_eq!((fns.len(), fns.name(11)), (12, "g"));
        assert_eq!(fns.lookup("a", "g"), Some(1));
        assert_eq!(fns.name(12), "");
    }
}
