//! Reading module segments into their window chunk: each piece faulted in,
//! read with one `pread` and its segments verified while they are in the
//! cache; shared with the helper thread (`crate::helper`) when there is
//! enough to read (a first load reads the whole area: 8 MiB for 500
//! modules × 50 functions).

use std::ops::Range;

use hcr_image::{ImageError, ImageView, Manifest};

use crate::image_file::ImageFile;
use crate::Error;

/// Bytes read with one `pread`, then verified.
const PIECE: usize = 256 << 10;
/// Reads totalling at least this much use a second thread.
const PARALLEL_MIN: usize = 2 << 20;

/// Part of the load area read with one `pread`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Piece {
    /// Load area offset of the first byte.
    pub from: u32,
    /// Where the bytes go in the chunk.
    pub dst: Range<usize>,
    /// The modules whose segments lie in it.
    pub modules: Range<usize>,
}

impl Piece {
    /// Where module `md`'s segment lies in the piece's bytes (`None`: it
    /// starts before the piece).
    fn segment(&self, md: &hcr_image::Module) -> Option<Range<usize>> {
        let s = md.seg.start.checked_sub(self.from)?;
        let e = md.seg.end.checked_sub(self.from)?;
        Some(s as usize..e as usize)
    }
}

/// Why a read failed.
pub(super) enum Failure {
    Io(Error),
    Image(ImageError),
}

/// Run on each piece right after it is read and verified, while its bytes
/// are in the cache: `None` when it did nothing to the piece (it is done
/// later), otherwise what came of its work.
pub(super) type After<'a> =
    &'a (dyn Fn(&Piece, &mut [u8]) -> Option<Result<(), hcr_loader::LoadError>> + Sync);

/// An [`After`] that leaves every piece as read.
pub(super) fn nothing_after(_: &Piece, _: &mut [u8]) -> Option<Result<(), hcr_loader::LoadError>> {
    None
}

/// Relocates the modules marked in `load` whose segments lie in `bytes`,
/// piece `p` of the chunk (with `tables` and `place` as complete as the
/// loader needs them). Stops at the first failure.
pub(super) fn relocate_piece(
    view: &ImageView<'_>,
    (tables, place): (&hcr_loader::Tables, &hcr_loader::Placement),
    load: &[bool],
    p: &Piece,
    bytes: &mut [u8],
) -> Result<(), hcr_loader::LoadError> {
    let m = &view.manifest;
    for mi in p.modules.clone().filter(|&mi| load[mi]) {
        let range = p.segment(&m.modules[mi]);
        let seg_bytes = range.and_then(|r| bytes.get_mut(r)).ok_or_else(|| {
            hcr_loader::LoadError::Window(format!(
                "module {}: segment outside the piece read",
                m.str(m.modules[mi].name)
            ))
        })?;
        hcr_loader::relocate_segment(view, tables, place, mi, seg_bytes)?;
    }
    Ok(())
}

/// Adds the pieces of the run of modules `first..=last`, whose bytes
/// `[from, to)` of the load area go to chunk offset `at`: cut at module
/// starts into pieces of about [`PIECE`] bytes, each verified right after
/// its read, while its bytes are still in the cache.
pub(super) fn split_run(
    m: &Manifest,
    (first, last): (usize, usize),
    (from, to): (u32, u32),
    at: usize,
    out: &mut Vec<Piece>,
) {
    let piece_len = PIECE as u32;
    let mut start = (first, from);
    for k in first + 1..=last {
        let c = m.modules[k].seg.start;
        if c.saturating_sub(start.1) >= piece_len && start.1 < c && c < to {
            out.push(Piece {
                from: start.1,
                dst: at + (start.1 - from) as usize..at + (c - from) as usize,
                modules: start.0..k,
            });
            start = (k, c);
        }
    }
    out.push(Piece {
        from: start.1,
        dst: at + (start.1 - from) as usize..at + to.saturating_sub(from) as usize,
        modules: start.0..last + 1,
    });
}

/// Whether [`read`] shares reading `pieces` through its `share` (else it
/// reads them on the calling thread without calling it).
pub(super) fn shared(pieces: &[Piece]) -> bool {
    let total: usize = pieces.iter().map(|p| p.dst.len()).sum();
    pieces.len() >= 2 && total >= PARALLEL_MIN
}

/// One disjoint slice of `dst` per piece.
pub(super) fn piece_slices<'d>(
    dst: &'d mut [u8],
    pieces: &[Piece],
) -> Result<Vec<&'d mut [u8]>, Failure> {
    hcr_loader::split_disjoint(dst, pieces.iter().map(|p| p.dst.clone()))
        .map_err(|_| Failure::Io(Error::Io("load area larger than its chunk".into())))
}

/// Reads `pieces` (sorted, disjoint, inside `dst`) from `file`, whose load
/// area starts at file offset `area`, verifies the segment of every module
/// marked in `load`, then runs `after` on the piece. A large read is
/// shared through `share` (the helper thread, [`crate::helper::lend`], or
/// a caller's work done meanwhile, [`crate::helper::share`]); a small one
/// is read here without calling it. Returns what `after` answered for each
/// piece; a failed read or check is the error, whatever `after` answered.
pub(super) fn read(
    file: &ImageFile<'_>,
    view: &ImageView<'_>,
    (area, load): (u64, &[bool]),
    dst: &mut [u8],
    pieces: &[Piece],
    (share, after): (hcr_loader::Share<'_>, After<'_>),
) -> Result<Vec<Option<Result<(), hcr_loader::LoadError>>>, Failure> {
    let slices = piece_slices(dst, pieces)?;
    let one = |(p, bytes): (&Piece, &mut [u8])| {
        read_piece(file, view, area, load, p, bytes).map(|()| after(p, bytes))
    };
    if !shared(pieces) {
        return pieces.iter().zip(slices).map(one).collect();
    }
    // Pieces taken in order by whichever thread is free (this one, and the
    // helper when it gets to run), each result kept with its piece.
    let jobs = pieces.iter().zip(slices).collect();
    hcr_loader::run_shared(jobs, share, one)
        .into_iter()
        // A piece whose reader panicked has no result.
        .map(|r| {
            r.ok_or_else(|| Failure::Io(Error::Internal("reading the load area failed".into())))?
        })
        .collect()
}

fn read_piece(
    file: &ImageFile<'_>,
    view: &ImageView<'_>,
    area: u64,
    load: &[bool],
    p: &Piece,
    bytes: &mut [u8],
) -> Result<(), Failure> {
    hcr_loader::mem::populate(bytes.as_ptr() as usize, bytes.len());
    file.read_area_into(area + u64::from(p.from), bytes)
        .map_err(Failure::Io)?;
    let m = &view.manifest;
    for mi in p.modules.clone().filter(|&mi| load[mi]) {
        let Some(b) = p.segment(&m.modules[mi]).and_then(|r| bytes.get(r)) else {
            return Err(Failure::Image(ImageError::Truncated("module segment")));
        };
        view.verify_segment(mi, b).map_err(Failure::Image)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    // (`Module` has private fields: no struct literal.)
    #[allow(clippy::field_reassign_with_default)]
    #[test]
    fn runs_are_cut_at_module_starts_into_pieces() {
        // 40 modules of 100 KiB from area offset 0.
        let mut m = Manifest::default();
        let seg = 100 << 10;
        for i in 0..40u32 {
            let mut md = hcr_image::Module::default();
            md.seg = hcr_image::Span::new(i * seg, (i + 1) * seg);
            m.modules.push(md);
        }
        // The whole area (with 64 bytes after the last segment).
        let mut out = Vec::new();
        split_run(&m, (0, 39), (0, 40 * seg + 64), 0, &mut out);
        assert!(out.len() > 1);
        assert!(out
            .iter()
            .all(|p| p.dst.len() >= PIECE || p.modules.end == 40));
        // Contiguous, covering every byte and every module once.
        assert_eq!(
            (out[0].from, out[0].dst.start, out[0].modules.start),
            (0, 0, 0)
        );
        for w in out.windows(2) {
            assert_eq!(w[0].dst.end, w[1].dst.start);
            assert_eq!(w[0].modules.end, w[1].modules.start);
            assert_eq!(w[1].from, m.modules[w[1].modules.start].seg.start);
        }
        let last = out.last().unwrap();
        assert_eq!(
            (last.dst.end, last.modules.end),
            (40 * seg as usize + 64, 40)
        );
        // A run placed elsewhere in the chunk keeps its offsets relative
        // to where it starts; a short run is one piece.
        let mut out = Vec::new();
        split_run(&m, (3, 4), (3 * seg, 5 * seg), 4096, &mut out);
        assert_eq!(
            out,
            [Piece {
                from: 3 * seg,
                dst: 4096..4096 + 2 * seg as usize,
                modules: 3..5
            }]
        );
    }
}
