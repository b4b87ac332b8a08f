//! What a reload changes: the pure diff of the loaded manifest against a
//! new one, the cached answer for the image on disk, and which modules keep
//! their relocated segments.

use super::*;

/// Pure: what changes between the loaded manifest and a new one. A module
/// counts as changed when its timestamp differs and its content differs.
pub fn plan_reload(old: Option<&Manifest>, new: &Manifest) -> Diff {
    let matched = old.map(|o| match_modules(o, new)).unwrap_or_default();
    let old_order = old.map(Manifest::init_order).unwrap_or_default();
    plan_matched(old, new, &matched, &new.init_order(), &old_order)
}

/// [`plan_reload`] with the modules matched ([`match_modules`]) and both
/// initialisation orders known.
pub(super) fn plan_matched(
    old: Option<&Manifest>,
    new: &Manifest,
    matched: &[u32],
    new_order: &[ModuleId],
    old_order: &[ModuleId],
) -> Diff {
    let mut d = Diff::default();
    let mut still = vec![false; old.map_or(0, |o| o.modules.len())];
    let against = old.is_some_and(|o| new.read_against(o));
    for &i in new_order {
        let mi = i.0 as usize;
        let oi = matched.get(mi).copied().unwrap_or(NONE);
        if against && oi as usize == mi && new.shared_record(mi) {
            // The loaded module's record: unchanged, without a look.
            if let Some(s) = still.get_mut(mi) {
                *s = true;
            }
            continue;
        }
        let md = &new.modules[mi];
        match (old, oi) {
            (Some(o), oi) if oi != NONE => {
                still[oi as usize] = true;
                let om = &o.modules[oi as usize];
                // (A shared record is unchanged without a look inside.)
                if !om.same_record(md)
                    && om.content_hash != md.content_hash
                    && om.mtime_ns != md.mtime_ns
                {
                    d.changed.push(new.str(md.name).to_string());
                    d.old_touched.push(ModuleId(oi));
                }
            }
            _ => d.added.push(new.str(md.name).to_string()),
        }
    }
    if let Some(o) = old {
        for &i in old_order {
            if !still[i.0 as usize] {
                d.removed.push(o.module_name(i).to_string());
                d.old_touched.push(i);
            }
        }
    }
    d
}

/// For each module of `new`, the index of the loaded (reachable) module of
/// `old` with its name, or `NONE`. The usual case, the same module list,
/// costs one name comparison per module.
pub(super) fn match_modules(old: &Manifest, new: &Manifest) -> Vec<u32> {
    let n = new.modules.len();
    let mut out = vec![NONE; n];
    let mut by_name: Option<HashMap<&str, usize>> = None;
    let (shared, reachable) = (&new.read.shared, &new.read.reachable);
    let summary = new.read_against(old) && shared.len() == n && reachable.len() == n;
    if summary {
        // A module with the loaded module's record has its name and
        // reachability: matched to it when loaded (no other has its name).
        // (A pass without a branch; a shared group of modules is not
        // looked at.)
        for (i, (o, (&s, &r))) in out.iter_mut().zip(shared.iter().zip(reachable)).enumerate() {
            *o = if s & r { i as u32 } else { NONE };
        }
    }
    let others: Box<dyn Iterator<Item = usize>> = if summary {
        Box::new(hcr_loader::unmarked(shared))
    } else {
        Box::new(0..n)
    };
    for i in others {
        let md = &new.modules[i];
        let same = old.modules.get(i).is_some_and(|om| {
            om.reachable && (om.same_record(md) || old.str(om.name) == new.str(md.name))
        });
        if same {
            out[i] = i as u32;
            continue;
        }
        let name = new.str(md.name);
        let map = by_name.get_or_insert_with(|| loaded_names(old));
        if let Some(&oi) = map.get(name) {
            out[i] = oi as u32;
        }
    }
    out
}

/// True when `new` has the root and the module list of `old` and each of
/// its modules imports what the same module of `old` does (so both have
/// the same initialisation order).
fn same_imports(old: &Manifest, new: &Manifest) -> bool {
    let against = new.read_against(old);
    old.root == new.root
        && old.modules.len() == new.modules.len()
        && (0..new.modules.len()).all(|i| {
            if against && new.shared_record(i) {
                return true; // not looked at
            }
            let (a, b) = (&old.modules[i], &new.modules[i]);
            a.same_record(b)
                || (a.reachable == b.reachable
                    && a.imports == b.imports
                    && old.str(a.name) == new.str(b.name))
        })
}

/// Reachable modules (by name) of a manifest.
pub(super) fn loaded_names(m: &Manifest) -> HashMap<&str, usize> {
    m.modules
        .iter()
        .enumerate()
        .filter(|(_, md)| md.reachable)
        .map(|(i, md)| (m.str(md.name), i))
        .collect()
}

/// Whether the program may load shared objects that need the image's
/// symbols, or look its symbols up by name: a reachable module calls
/// `dlopen`/`dlmopen` or `dlsym`/`dlvsym` (`dlsym(RTLD_DEFAULT, NAME)`
/// finds a native `-Wl,-E` program's own functions), or the image names
/// libraries (which may load plugins themselves); `Options::export_symbols`
/// asks for it whatever the image names. Publishing costs about 0.3 µs
/// per exported name, so programs that do neither do not pay it.
pub(super) fn may_load_plugins(m: &Manifest) -> bool {
    if !m.libraries.is_empty() {
        return true;
    }
    // The host symbols first (a few): most programs name neither, and then
    // no module is looked at.
    let loaders: Vec<u32> = (0..m.hosts.len() as u32)
        .filter(|&h| {
            matches!(
                m.str(m.hosts[h as usize].name),
                "dlopen" | "dlmopen" | "dlsym" | "dlvsym"
            )
        })
        .collect();
    !loaders.is_empty()
        && (0..m.modules.len())
            .filter(|&mi| m.reachable(mi))
            .any(|mi| {
                m.modules[mi]
                    .undefined
                    .iter()
                    .any(|h| loaders.contains(&h.0))
            })
}

impl State {
    /// The diff between the live image and `m`, the modules of `m` matched
    /// to the live image's, and `m`'s initialisation order.
    pub(super) fn plan(&self, m: &Manifest) -> (Diff, Vec<u32>, Vec<ModuleId>) {
        let old = self.current.as_ref();
        let matched = old
            .map(|c| match_modules(&c.manifest, m))
            .unwrap_or_else(|| vec![NONE; m.modules.len()]);
        // The same records in the same places import the same modules:
        // the order is the live image's.
        let order = match old {
            Some(c) if same_imports(&c.manifest, m) => c.order.clone(),
            _ => m.init_order(),
        };
        let diff = plan_matched(
            old.map(|c| &c.manifest),
            m,
            &matched,
            &order,
            old.map_or(&[][..], |c| &c.order),
        );
        (diff, matched, order)
    }

    /// The diff between the loaded image and the one on disk; one `stat`
    /// when the file is the one loaded or already examined.
    pub fn disk_diff(&mut self) -> Result<Diff, Error> {
        let stat = FileStat::of(&self.path)
            .map_err(|e| Error::Io(format!("{}: {e}", self.path.display())))?;
        if self
            .current
            .as_ref()
            .is_some_and(|c| c.stat.vouches_for(&stat))
        {
            return Ok(Diff::default());
        }
        if self.disk.stat.is_some_and(|d| d.vouches_for(&stat)) {
            return Ok(self.disk.diff.clone());
        }
        let path = self.path.clone();
        let file = ImageFile::open(&path, self.allow_insecure_image)?;
        if self.holds_current(&file)? {
            return Ok(Diff::default());
        }
        let old = self.current.as_ref().map(|c| &c.manifest);
        let bytes = file.read(&mut self.scratch, old)?;
        let parsed = ImageView::parse_global(&bytes, old);
        drop(bytes);
        if let Some(e) = file.torn() {
            return Err(e);
        }
        let (_, manifest) = parsed.map_err(|e| self.image_error(e))?;
        let stat2 = file.stat;
        let diff = self.plan(&manifest).0;
        self.disk = DiskCache {
            stat: Some(stat2),
            diff: diff.clone(),
        };
        Ok(diff)
    }

    /// Whether `file` holds the image the live one's status was taken of
    /// (after a roll back, the crashed image's: it counts as loaded). One
    /// `stat` tells, unless the status is racy ([`FileStat::vouches_for`])
    /// and the file's fields are still the same: then the manifest's global
    /// part is read and its checksum compared, and a status taken now
    /// replaces the racy one (once taken late enough, it vouches again).
    pub(super) fn holds_current(&mut self, file: &ImageFile<'_>) -> Result<bool, Error> {
        let Some(c) = self.current.as_ref() else {
            return Ok(false);
        };
        if c.stat.vouches_for(&file.stat) {
            return Ok(true);
        }
        if c.stat.content == 0 || !c.stat.same_fields(&file.stat) {
            return Ok(false);
        }
        let content = c.stat.content;
        let bytes = file.read(&mut self.scratch, Some(&c.manifest))?;
        let computed = ImageView::content_checksum(&bytes);
        drop(bytes);
        let computed = computed.map_err(|e| self.image_error(e))?;
        if computed != content {
            return Ok(false);
        }
        if let Some(c) = self.current.as_mut() {
            c.stat = file.stat.with_content(content);
        }
        Ok(true)
    }

    /// Which old module's segment each module of `m` keeps (`NONE`: it is
    /// loaded). A reachable module keeps its segment when its link identity
    /// ([`hcr_image::Module::link_hash`]: content, layout, and every fixup's
    /// target by name) is the one loaded and every module it refers into
    /// keeps its segment too; then its relocated bytes would come out the
    /// same, so they are not redone. Under a debugger every module is
    /// loaded (the debugger is given one object per load).
    pub(super) fn reuse_plan(&self, m: &Manifest, matched: &[u32]) -> Vec<u32> {
        let mut reuse = vec![NONE; m.modules.len()];
        let Some(c) = &self.current else {
            return reuse;
        };
        if crate::gdb_jit::wanted() {
            return reuse;
        }
        let n = m.modules.len();
        let r = &m.read;
        let summary = m.read_against(&c.manifest)
            && [
                r.shared.len(),
                r.reachable.len(),
                r.has_deps.len(),
                matched.len(),
            ]
            .iter()
            .all(|&l| l == n);
        // Kept modules that refer into others: the only ones the fixpoint
        // below can take back.
        let mut with_deps = Vec::new();
        if summary {
            // A reachable module with the loaded module's record, matched to
            // it: its link identity is the loaded one (not looked at).
            for i in 0..n {
                if r.shared[i] & r.reachable[i] & (matched[i] as usize == i)
                    && c.areas.get(i).is_some()
                {
                    reuse[i] = i as u32;
                    if r.has_deps[i] {
                        with_deps.push(i);
                    }
                }
            }
        }
        let others: Box<dyn Iterator<Item = usize>> = if summary {
            Box::new(hcr_loader::unmarked(&r.shared))
        } else {
            Box::new(0..n)
        };
        for i in others {
            if !m.reachable(i) {
                continue;
            }
            let oi = matched.get(i).copied().unwrap_or(NONE) as usize;
            if oi == NONE as usize {
                continue;
            }
            let (om, md) = (&c.manifest.modules[oi], &m.modules[i]);
            let same = om.same_record(md)
                || (om.link_hash == md.link_hash
                    && om.seg.len() == md.seg.len()
                    && om.functions.len() == md.functions.len()
                    && om.objects.len() == md.objects.len());
            if same && c.areas.get(oi).is_some() {
                reuse[i] = oi as u32;
                if m.has_deps(i) {
                    with_deps.push(i);
                }
            }
        }
        loop {
            let mut again = false;
            for &i in &with_deps {
                if reuse[i] != NONE
                    && m.modules[i]
                        .deps
                        .iter()
                        .any(|d| reuse.get(d.0 as usize).is_none_or(|&r| r == NONE))
                {
                    reuse[i] = NONE;
                    again = true;
                }
            }
            if !again {
                return reuse;
            }
        }
    }
}
