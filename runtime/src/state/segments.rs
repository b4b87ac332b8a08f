//! Reading module segments into their window chunk: each piece faulted in,
//! read with one `pread` and its segments verified, by two threads when
//! there is enough to read (a first load reads the whole area: 8 MiB for
//! 500 modules × 50 functions) and a second CPU to run on.

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

/// Why a read failed.
pub(super) enum Failure {
    Io(Error),
    Image(ImageError),
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

/// CPUs this thread may run on.
pub(super) fn cpus() -> usize {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; sched_getaffinity
    // writes at most its size.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) != 0 {
            return 1;
        }
        libc::CPU_COUNT(&set) as usize
    }
}

/// Reads `pieces` (sorted, disjoint, inside `dst`) from `file`, whose load
/// area starts at file offset `area`, and verifies the segment of every
/// module marked in `load`.
pub(super) fn read(
    file: &ImageFile<'_>,
    view: &ImageView<'_>,
    area: u64,
    load: &[bool],
    dst: &mut [u8],
    pieces: &[Piece],
) -> Result<(), Failure> {
    // One disjoint slice of the chunk per piece.
    let mut jobs: Vec<(&Piece, &mut [u8])> = Vec::with_capacity(pieces.len());
    let mut rest = dst;
    let mut pos = 0usize;
    for p in pieces {
        let too_far = || Failure::Io(Error::Io("load area larger than its chunk".into()));
        let skip = p.dst.start.checked_sub(pos).ok_or_else(too_far)?;
        if skip.saturating_add(p.dst.len()) > rest.len() {
            return Err(too_far());
        }
        let (_, tail) = std::mem::take(&mut rest).split_at_mut(skip);
        let (mine, tail) = tail.split_at_mut(p.dst.len());
        jobs.push((p, mine));
        rest = tail;
        pos = p.dst.end;
    }
    let total: usize = pieces.iter().map(|p| p.dst.len()).sum();
    let one = |jobs: Vec<(&Piece, &mut [u8])>| -> Result<(), Failure> {
        for (p, bytes) in jobs {
            read_piece(file, view, area, load, p, bytes)?;
        }
        Ok(())
    };
    if jobs.len() < 2 || total < PARALLEL_MIN || cpus() < 2 || std::env::var_os("HCR_ONE").is_some()
    {
        return one(jobs);
    }
    // Two halves by bytes, the second on a thread of its own.
    let mut acc = 0usize;
    let split = jobs
        .iter()
        .position(|(p, _)| {
            acc += p.dst.len();
            acc * 2 >= total
        })
        .map_or(jobs.len(), |i| (i + 1).min(jobs.len() - 1));
    // The second half is taken by whoever runs it: the new thread, or
    // this one when no thread can be started.
    let second = std::sync::Mutex::new(Some(jobs.split_off(split)));
    let take = || {
        second
            .lock()
            .ok()
            .and_then(|mut g| g.take())
            .unwrap_or_default()
    };
    std::thread::scope(|s| {
        let other = std::thread::Builder::new()
            .name("hcr-read".into())
            .spawn_scoped(s, || one(take()));
        let mine = one(jobs);
        let theirs = match other {
            Ok(h) => h
                .join()
                .unwrap_or_else(|_| Err(Failure::Io(Error::Internal("reader panicked".into())))),
            Err(_) => one(take()),
        };
        mine.and(theirs)
    })
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
        let seg = &m.modules[mi].seg;
        let range = seg
            .start
            .checked_sub(p.from)
            .zip(seg.end.checked_sub(p.from));
        let Some(b) = range.and_then(|(s, e)| bytes.get(s as usize..e as usize)) else {
            return Err(Failure::Image(ImageError::Truncated("module segment")));
        };
        view.verify_segment(mi, b).map_err(Failure::Image)?;
    }
    Ok(())
}
