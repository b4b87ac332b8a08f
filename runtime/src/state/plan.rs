//! What a reload changes: the pure diff of the loaded manifest against a
//! new one, the cached answer for the image on disk, and which modules keep
//! their relocated segments.

use super::*;

/// Pure: what changes between the loaded manifest and a new one. A module
/// counts as changed when its timestamp differs and its content differs.
pub fn plan_reload(old: Option<&Manifest>, new: &Manifest) -> Diff {
    let mut d = Diff::default();
    let old_loaded = old.map(loaded_names).unwrap_or_default();
    let new_loaded = loaded_names(new);
    for &i in &new.init_order() {
        let md = &new.modules[i.0 as usize];
        let name = new.str(md.name);
        match (old, old_loaded.get(name)) {
            (Some(o), Some(&oi)) => {
                let om = &o.modules[oi];
                if om.content_hash != md.content_hash && om.mtime_ns != md.mtime_ns {
                    d.changed.push(name.to_string());
                }
            }
            _ => d.added.push(name.to_string()),
        }
    }
    if let Some(o) = old {
        for &i in &o.init_order() {
            let name = o.module_name(i);
            if !new_loaded.contains_key(name) {
                d.removed.push(name.to_string());
            }
        }
    }
    d
}

/// The loaded (reachable) modules of `m` whose names are in `names`.
pub(super) fn loaded_among<'a>(
    m: &'a Manifest,
    names: &'a HashSet<&str>,
) -> impl Iterator<Item = &'a hcr_image::Module> {
    m.modules
        .iter()
        .filter(move |md| md.reachable && names.contains(m.str(md.name)))
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
/// symbols: a reachable module calls `dlopen`/`dlmopen`, the image names
/// libraries (which may load plugins themselves), or `HCR_EXPORT_SYMBOLS=1`
/// asks for it. Publishing costs about a microsecond per exported name, so
/// programs that never load plugins do not pay it.
pub(super) fn may_load_plugins(m: &Manifest) -> bool {
    if !m.libraries.is_empty() || std::env::var_os("HCR_EXPORT_SYMBOLS").is_some_and(|v| v == "1") {
        return true;
    }
    m.modules.iter().filter(|md| md.reachable).any(|md| {
        md.undefined.iter().any(|h| {
            m.hosts
                .get(h.0 as usize)
                .is_some_and(|h| matches!(m.str(h.name), "dlopen" | "dlmopen"))
        })
    })
}

impl State {
    /// The diff between the loaded image and the one on disk; one `stat`
    /// when the file is the one loaded or already examined.
    pub fn disk_diff(&mut self) -> Result<Diff, Error> {
        let stat = FileStat::of(&self.path)
            .map_err(|e| Error::Io(format!("{}: {e}", self.path.display())))?;
        if self.current.as_ref().is_some_and(|c| c.stat == stat) {
            return Ok(Diff::default());
        }
        if self.disk.stat == Some(stat) {
            return Ok(self.disk.diff.clone());
        }
        let file = ImageFile::open(&self.path, self.allow_insecure_image)?;
        let bytes = file.read(Parts::Manifest, &mut self.scratch)?;
        let (_, manifest) = ImageView::parse_manifest(bytes).map_err(|e| self.image_error(e))?;
        let stat2 = file.stat;
        let diff = plan_reload(self.current.as_ref().map(|c| &c.manifest), &manifest);
        self.disk = DiskCache {
            stat: Some(stat2),
            diff: diff.clone(),
        };
        Ok(diff)
    }

    /// Which old module's segment each module of `m` keeps (`NONE`: it is
    /// loaded). A reachable module keeps its segment when its link identity
    /// ([`hcr_image::Module::link_hash`]: content, layout, and every fixup's
    /// target by name) is the one loaded and every module it refers into
    /// keeps its segment too; then its relocated bytes would come out the
    /// same, so they are not redone. Under a debugger every module is
    /// loaded (the debugger is given one object per load).
    pub(super) fn reuse_plan(&self, m: &Manifest, old_modules: &HashMap<&str, usize>) -> Vec<u32> {
        let mut reuse = vec![NONE; m.modules.len()];
        let Some(c) = &self.current else {
            return reuse;
        };
        if crate::gdb_jit::wanted() {
            return reuse;
        }
        for (i, md) in m.modules.iter().enumerate() {
            if !md.reachable {
                continue;
            }
            let Some(&oi) = old_modules.get(m.str(md.name)) else {
                continue;
            };
            let om = &c.manifest.modules[oi];
            if om.link_hash == md.link_hash
                && om.seg.len() == md.seg.len()
                && om.functions.len() == md.functions.len()
                && om.objects.len() == md.objects.len()
                && c.areas[oi].is_some()
            {
                reuse[i] = oi as u32;
            }
        }
        loop {
            let mut again = false;
            for i in 0..reuse.len() {
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
