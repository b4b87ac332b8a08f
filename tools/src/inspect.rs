//! `hcr inspect IMAGE [--json]`: modules, import tree, symbols, timestamps,
//! hashes, undefined symbols and load-plan statistics.

use std::io::Write;
use std::path::Path;

use anyhow::Context as _;
use hcr_image::{ImageView, Manifest, ModuleId, TargetClass};
use serde_json::json;

/// Prints the description of the image at `path`.
///
/// # Errors
/// The image cannot be read or fails verification.
pub fn run(path: &Path, as_json: bool, out: &mut dyn Write) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    let view = ImageView::parse(&bytes).with_context(|| format!("{}", path.display()))?;
    if as_json {
        let v = to_json(&view, path, bytes.len());
        writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        human(&view, path, bytes.len(), out)?;
    }
    Ok(())
}

struct Residuals {
    area: usize,
    objects: usize,
    by_class: [usize; 4],
}

fn residuals(view: &ImageView<'_>) -> Residuals {
    let mut by_class = [0usize; 4];
    for f in view
        .fixups
        .iter()
        .chain(&view.object_fixups)
        .flat_map(|(_, t)| t.all())
    {
        by_class[f.class as usize] += 1;
    }
    Residuals {
        area: view.fixups.iter().map(|(_, t)| t.len()).sum(),
        objects: view.object_fixups.iter().map(|(_, t)| t.len()).sum(),
        by_class,
    }
}

/// `YYYY-MM-DD HH:MM:SS.nnnnnnnnn UTC` for nanoseconds since the epoch.
pub fn format_time(ns: i64) -> String {
    let secs = ns.div_euclid(1_000_000_000);
    let nanos = ns.rem_euclid(1_000_000_000);
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{nanos:09} UTC",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn name(m: &Manifest, id: ModuleId) -> &str {
    m.modules
        .get(id.0 as usize)
        .map_or("?", |md| m.str(md.name))
}

fn human(view: &ImageView<'_>, path: &Path, len: usize, out: &mut dyn Write) -> anyhow::Result<()> {
    let m = &view.manifest;
    writeln!(
        out,
        "image {}: format {}, {} bytes, checksum {:#018x} ok",
        path.display(),
        view.header.version,
        len,
        view.header.checksum
    )?;
    writeln!(out, "root: {}", name(m, m.root))?;
    let order: Vec<&str> = m.init_order().iter().map(|&i| name(m, i)).collect();
    writeln!(out, "init order: {}", order.join(", "))?;
    if !m.libraries.is_empty() {
        let libs: Vec<String> = m
            .libraries
            .iter()
            .map(|l| {
                format!(
                    "{} (-l {}, {})",
                    m.str(l.soname),
                    m.str(l.request),
                    m.str(l.path)
                )
            })
            .collect();
        writeln!(out, "libraries: {}", libs.join(", "))?;
    }
    writeln!(out)?;
    writeln!(out, "import tree:")?;
    let mut seen = vec![false; m.modules.len()];
    tree(m, m.root, "", true, true, &mut seen, out)?;
    let unreachable: Vec<&str> = m
        .modules
        .iter()
        .filter(|md| !md.reachable)
        .map(|md| m.str(md.name))
        .collect();
    if !unreachable.is_empty() {
        writeln!(
            out,
            "unreachable (kept, not loaded): {}",
            unreachable.join(", ")
        )?;
    }
    writeln!(out)?;
    writeln!(
        out,
        "{:<20} {:<9} {:>8} {:>8} {:>6} {:>8} {:<18} {:<35} source",
        "module", "status", "text", "rodata", "funcs", "globals", "hash", "mtime"
    )?;
    for (i, md) in m.modules.iter().enumerate() {
        let status = if i == m.root.0 as usize {
            "root"
        } else if md.reachable {
            "reachable"
        } else {
            "unreached"
        };
        writeln!(
            out,
            "{:<20} {:<9} {:>8} {:>8} {:>6} {:>8} {:#018x} {:<35} {}",
            m.str(md.name),
            status,
            md.text_size,
            md.rodata_size,
            md.functions.len(),
            md.objects.len(),
            md.content_hash,
            format_time(md.mtime_ns),
            if md.source.len == 0 {
                m.str(md.object)
            } else {
                m.str(md.source)
            }
        )?;
    }
    for md in &m.modules {
        writeln!(out)?;
        writeln!(out, "module {} ({})", m.str(md.name), m.str(md.object))?;
        let imports: Vec<&str> = md.imports.iter().map(|&i| name(m, i)).collect();
        writeln!(
            out,
            "  imports: {}",
            if imports.is_empty() {
                "-".to_string()
            } else {
                imports.join(", ")
            }
        )?;
        writeln!(
            out,
            "  constructors: {}  on-reload blocks: {}  destructors: {}",
            md.ctors.len(),
            md.on_reload.len(),
            md.dtors.len()
        )?;
        for f in md.functions.range().map(|i| &m.functions[i]) {
            writeln!(
                out,
                "  function {:<32} {:>7} bytes {}",
                m.str(f.name),
                f.size,
                if f.global { "global" } else { "static" }
            )?;
        }
        for o in md.objects.range().map(|i| &m.objects[i]) {
            writeln!(
                out,
                "  {:<8} {:<32} {:>7} bytes align {:<3} {}{}{}{}",
                if o.tls { "tls" } else { "global" },
                m.str(o.name),
                o.size,
                o.align,
                if o.global { "global" } else { "static" },
                if o.init.is_none() { " zero-init" } else { "" },
                identity_note(m, o),
                if o.tls { " thread-local" } else { "" }
            )?;
        }
        let undef: Vec<&str> = md
            .undefined
            .iter()
            .filter_map(|h| m.hosts.get(h.0 as usize))
            .map(|h| m.str(h.name))
            .collect();
        writeln!(
            out,
            "  undefined (resolved by the host): {}",
            if undef.is_empty() {
                "-".to_string()
            } else {
                undef.join(", ")
            }
        )?;
    }
    let r = residuals(view);
    let s = &m.stats;
    writeln!(out)?;
    writeln!(out, "load plan:")?;
    writeln!(
        out,
        "  area: {} bytes (text {} + read-only {}), initial data {} bytes",
        m.layout.area_size,
        m.modules.iter().map(|md| md.text.len()).sum::<u32>(),
        m.modules
            .iter()
            .map(|md| md.seg.len() - md.text.len())
            .sum::<u32>(),
        view.init.len()
    )?;
    writeln!(out, "  relocations: {}", s.relocations)?;
    // Shares of what the plan resolves: a relocation applied at link time,
    // or a fixup left to the loader (GOT entries and PLT stubs add fixups of
    // their own, so the two need not add up to the relocation count).
    let resolved = s.applied_at_link + (r.area + r.objects) as u64;
    writeln!(
        out,
        "  applied at link time: {} ({:.1}% of {} resolved)",
        s.applied_at_link,
        pct(s.applied_at_link, resolved),
        resolved
    )?;
    writeln!(
        out,
        "  residual fixups: {} ({:.1}%): area {}, inside globals {}; by target: image {}, function {}, global {}, host {}",
        r.area + r.objects,
        pct((r.area + r.objects) as u64, resolved),
        r.area,
        r.objects,
        r.by_class[TargetClass::Area as usize],
        r.by_class[TargetClass::Function as usize],
        r.by_class[TargetClass::Object as usize],
        r.by_class[TargetClass::Host as usize]
    )?;
    writeln!(
        out,
        "  GOT entries: {}, PLT stubs: {}, functions: {}, globals: {}, host symbols: {}",
        s.got_entries,
        s.plt_stubs,
        m.functions.len(),
        m.objects.len(),
        m.hosts.len()
    )?;
    Ok(())
}

/// ` identity KEY` when a global is keyed by more than its name (gcc's
/// numbered function statics), with what the identity assumes.
fn identity_note(m: &hcr_image::Manifest, o: &hcr_image::Object) -> String {
    if o.identity.len == 0 {
        return String::new();
    }
    let mut s = format!(" identity {}", m.str(o.identity));
    if o.assumed.len > 0 {
        s.push_str(&format!(" (assumed: {})", m.str(o.assumed)));
    }
    s
}

fn pct(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 * 100.0 / b as f64
    }
}

fn tree(
    m: &Manifest,
    id: ModuleId,
    prefix: &str,
    last: bool,
    top: bool,
    seen: &mut [bool],
    out: &mut dyn Write,
) -> std::io::Result<()> {
    let branch = if top {
        ""
    } else if last {
        "└─ "
    } else {
        "├─ "
    };
    let again = seen[id.0 as usize];
    writeln!(
        out,
        "  {prefix}{branch}{}{}",
        name(m, id),
        if again { " (see above)" } else { "" }
    )?;
    if again {
        return Ok(());
    }
    seen[id.0 as usize] = true;
    let child_prefix = if top {
        String::new()
    } else {
        format!("{prefix}{}", if last { "   " } else { "│  " })
    };
    let imports = &m.modules[id.0 as usize].imports;
    for (i, &c) in imports.iter().enumerate() {
        tree(
            m,
            c,
            &child_prefix,
            i + 1 == imports.len(),
            false,
            seen,
            out,
        )?;
    }
    Ok(())
}

fn to_json(view: &ImageView<'_>, path: &Path, len: usize) -> serde_json::Value {
    let m = &view.manifest;
    let r = residuals(view);
    let modules: Vec<_> = m
        .modules
        .iter()
        .enumerate()
        .map(|(i, md)| {
            json!({
                "name": m.str(md.name),
                "root": i == m.root.0 as usize,
                "reachable": md.reachable,
                "source": m.str(md.source),
                "object": m.str(md.object),
                "mtime_ns": md.mtime_ns,
                "mtime": format_time(md.mtime_ns),
                "content_hash": format!("{:016x}", md.content_hash),
                "imports": md.imports.iter().map(|&i| name(m, i)).collect::<Vec<_>>(),
                "text_bytes": md.text_size,
                "rodata_bytes": md.rodata_size,
                "constructors": md.ctors.len(),
                "on_reload_blocks": md.on_reload.len(),
                "destructors": md.dtors.len(),
                "functions": md.functions.range().map(|i| &m.functions[i]).map(|f| json!({
                    "name": m.str(f.name), "size": f.size, "global": f.global,
                })).collect::<Vec<_>>(),
                "globals": md.objects.range().map(|i| &m.objects[i]).map(|o| json!({
                    "name": m.str(o.name), "identity": m.object_key(o), "assumed": m.str(o.assumed),
                    "size": o.size, "align": o.align, "global": o.global,
                    "zero_init": o.init.is_none(), "thread_local": o.tls,
                })).collect::<Vec<_>>(),
                "undefined": md.undefined.iter().filter_map(|h| m.hosts.get(h.0 as usize)).map(|h| m.str(h.name)).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({
        "image": path.display().to_string(),
        "format_version": view.header.version,
        "bytes": len,
        "checksum": format!("{:016x}", view.header.checksum),
        "root": name(m, m.root),
        "init_order": m.init_order().iter().map(|&i| name(m, i)).collect::<Vec<_>>(),
        "modules": modules,
        "host_symbols": m.hosts.iter().map(|h| json!({"name": m.str(h.name), "weak": h.weak})).collect::<Vec<_>>(),
        "libraries": m.libraries.iter().map(|l| json!({"request": m.str(l.request), "soname": m.str(l.soname), "path": m.str(l.path)})).collect::<Vec<_>>(),
        "plan": {
            "area_bytes": m.layout.area_size,
            "text_bytes": m.modules.iter().map(|md| md.text.len()).sum::<u32>(),
            "rodata_bytes": m.modules.iter().map(|md| md.seg.len() - md.text.len()).sum::<u32>(),
            "init_bytes": view.init.len(),
            "relocations": m.stats.relocations,
            "applied_at_link": m.stats.applied_at_link,
            "residual_fixups": r.area + r.objects,
            "area_fixups": r.area,
            "global_fixups": r.objects,
            "fixups_by_target": {
                "image": r.by_class[TargetClass::Area as usize],
                "function": r.by_class[TargetClass::Function as usize],
                "global": r.by_class[TargetClass::Object as usize],
                "host": r.by_class[TargetClass::Host as usize],
            },
            "got_entries": m.stats.got_entries,
            "plt_stubs": m.stats.plt_stubs,
        }
    })
}
