//! Reading input files and writing the output: the only place the linker
//! maps memory.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use memmap2::Mmap;

/// One input file mapped into memory.
pub struct MappedInput {
    /// Path as given.
    pub path: PathBuf,
    /// The file's bytes.
    pub bytes: Bytes,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
}

/// File contents: mapped when non-empty (an empty file cannot be mapped).
pub enum Bytes {
    /// A read-only private mapping.
    Mapped(Mmap),
    /// An empty file.
    Empty,
    /// Bytes handed over in memory ([`crate::link_memory`]).
    Owned(Vec<u8>),
}

impl Bytes {
    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Bytes::Mapped(m) => m,
            Bytes::Empty => &[],
            Bytes::Owned(v) => v,
        }
    }
}

/// Maps `path` read-only.
///
/// The mapping reflects the file while linking runs: build tools replace
/// objects by writing a new file and renaming it (a new inode), which leaves
/// this mapping intact. A tool that truncates an input in place while
/// hcr-link reads it could make a read fault; that is the documented
/// contract of `hcr-link` ("inputs are not modified in place while linking").
pub fn map_input(path: &Path) -> std::io::Result<MappedInput> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(std::io::Error::other("not a regular file"));
    }
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let bytes = if meta.len() == 0 {
        Bytes::Empty
    } else {
        // SAFETY: the file is a regular file opened read-only; the mapping is
        // private and read-only, and the contract above (inputs are replaced by
        // rename, not modified in place) keeps its bytes stable while we read.
        Bytes::Mapped(unsafe { Mmap::map(&file)? })
    };
    Ok(MappedInput {
        path: path.to_path_buf(),
        bytes,
        mtime_ns,
    })
}

/// Where the image bytes are written.
pub trait Sink {
    /// A zero-filled buffer of `len` bytes for the image.
    fn buffer(&mut self, len: u64) -> std::io::Result<&mut [u8]>;
}

/// Collects the image in memory.
#[derive(Default)]
pub struct VecSink(pub Vec<u8>);

impl Sink for VecSink {
    fn buffer(&mut self, len: u64) -> std::io::Result<&mut [u8]> {
        let len = usize::try_from(len).map_err(|_| std::io::Error::other("image too large"))?;
        self.0 = vec![0; len];
        Ok(&mut self.0)
    }
}

/// Writes the image into a new file: built in memory, then written with
/// one `write`. (Writing through a shared mapping of the file was measured
/// slower: every page faults separately into the filesystem.) A full disk is
/// a clean error from `write`.
pub struct FileSink {
    file: File,
    bytes: Vec<u8>,
}

impl FileSink {
    /// A sink writing into `file`, which must be a new, empty file of ours.
    pub fn new(file: File) -> Self {
        FileSink {
            file,
            bytes: Vec::new(),
        }
    }

    /// Writes the image to the file.
    pub fn finish(mut self) -> std::io::Result<()> {
        use std::io::Write as _;
        self.file.write_all(&self.bytes)
    }
}

impl Sink for FileSink {
    fn buffer(&mut self, len: u64) -> std::io::Result<&mut [u8]> {
        let len = usize::try_from(len).map_err(|_| std::io::Error::other("image too large"))?;
        self.bytes = vec![0; len];
        Ok(&mut self.bytes)
    }
}
