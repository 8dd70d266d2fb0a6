//! The I/O seam: every file operation Quiver performs goes through [`Vfs`].
//!
//! | implementation | for |
//! |---|---|
//! | [`RealFs`] | the operating system's file system; what [`Database::open`](crate::Database::open) uses |
//! | [`MemFs`] | tests: an in-memory file system that keeps *live* and *durable* bytes apart, so a test can cut the power at any sync point and reopen what a disk would have kept |
//!
//! The manifest's redb file goes through the same seam (`RedbFile` adapts a
//! [`VfsFile`] to redb's `StorageBackend`), so a simulated power cut hits the
//! manifest and the column files alike.
//!
//! Contract: a file that has been published (renamed to its final name) is never
//! opened for writing again; Quiver only maps it read-only and eventually removes
//! it. That is what makes reading mapped files in place sound.

use crate::rng::SplitMix64;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

/// A file opened for reading and writing at explicit offsets.
#[allow(clippy::len_without_is_empty)]
pub trait VfsFile: Send + Sync + fmt::Debug {
    /// Current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Fills `buf` from `offset`; reading past the end is an error.
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Writes all of `data` at `offset`, growing the file if needed.
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Truncates or extends (with zeros) to `len`.
    fn set_len(&self, len: u64) -> io::Result<()>;
    /// Makes the file's contents durable (`fdatasync`).
    fn sync(&self) -> io::Result<()>;
    /// redb's byte-range locks on this file, through which processes share
    /// the manifest (one writer, any number of read-only handles: redb's
    /// `SingleWriter` mode). `None`, the default, for a file without them: a
    /// manifest on it is then shared by the handles of one process only.
    fn range_locks(&self) -> Option<&dyn redb::StorageBackend> {
        None
    }
}

/// A read-only view of a whole file, mapped or copied into memory.
///
/// The bytes start at an address aligned to at least 64 bytes.
pub trait Mapping: Send + Sync + fmt::Debug {
    /// The file's bytes.
    fn bytes(&self) -> &[u8];
}

/// An exclusive lock on a file, released on drop.
pub trait LockGuard: Send + Sync + fmt::Debug {}

/// The file-system operations Quiver uses, and nothing else.
pub trait Vfs: Send + Sync + fmt::Debug + 'static {
    /// Creates `dir` and its parents.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// What is at `path`: `None` if nothing.
    fn kind(&self, path: &Path) -> io::Result<Option<FileKind>>;
    /// Names of the entries of `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens `path` for reading and writing, creating it if `create`.
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn VfsFile>>;
    /// Opens the existing file at `path` for reading only, as a read-only
    /// handle does, so that it works where it may not write. The default
    /// opens it as [`Vfs::open`] does, for file systems without permissions.
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn VfsFile>> {
        self.open(path, false)
    }
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes the file at `path`.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes the entries of `dir` (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Maps the whole file read-only.
    fn map(&self, path: &Path) -> io::Result<Arc<dyn Mapping>>;
    /// Takes an exclusive lock on `path` (created if missing) without waiting:
    /// `Ok(None)` if someone else holds it.
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>>;
}

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
}

// ---------------------------------------------------------------------------
// The operating system's file system.

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

/// A real file, held by redb's own file backend: its positioned reads and
/// writes are plain `pread`/`pwrite`, and it brings the byte-range locks
/// (open file description locks on Linux) that let processes share a manifest.
#[derive(Debug)]
struct RealFile(redb::backends::FileBackend);

impl RealFile {
    fn new(file: std::fs::File) -> io::Result<Self> {
        redb::backends::FileBackend::new(file)
            .map(RealFile)
            .map_err(io::Error::other)
    }
}

impl VfsFile for RealFile {
    fn len(&self) -> io::Result<u64> {
        redb::StorageBackend::len(&self.0)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        redb::StorageBackend::read(&self.0, offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        redb::StorageBackend::write(&self.0, offset, data)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        redb::StorageBackend::set_len(&self.0, len)
    }
    fn sync(&self) -> io::Result<()> {
        redb::StorageBackend::sync_data(&self.0)
    }
    fn range_locks(&self) -> Option<&dyn redb::StorageBackend> {
        Some(&self.0)
    }
}

#[derive(Debug)]
struct RealMapping(memmap2::Mmap);

impl Mapping for RealMapping {
    fn bytes(&self) -> &[u8] {
        &self.0
    }
}

#[derive(Debug)]
struct RealLock(#[allow(dead_code)] std::fs::File);

impl LockGuard for RealLock {}

impl Vfs for RealFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }
    fn kind(&self, path: &Path) -> io::Result<Option<FileKind>> {
        match std::fs::metadata(path) {
            Ok(m) if m.is_dir() => Ok(Some(FileKind::Dir)),
            Ok(_) => Ok(Some(FileKind::File)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn VfsFile>> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(false)
            .open(path)?;
        Ok(Arc::new(RealFile::new(file)?))
    }
    fn open_read(&self, path: &Path) -> io::Result<Arc<dyn VfsFile>> {
        Ok(Arc::new(RealFile::new(std::fs::File::open(path)?)?))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        std::fs::File::open(dir)?.sync_all()
    }
    #[allow(unsafe_code)]
    fn map(&self, path: &Path) -> io::Result<Arc<dyn Mapping>> {
        let file = std::fs::File::open(path)?;
        // The mapped files are Quiver's published files (the contract at the top of
        // this module and on `Database::open`); a process outside Quiver that
        // modifies them breaks it, as it would for any mapped database file.
        // SAFETY: published files are never opened for writing, truncated or
        // modified after they are renamed into place, so the mapping never changes.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(Arc::new(RealMapping(map)))
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Box::new(RealLock(file)))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

// ---------------------------------------------------------------------------
// The in-memory file system that can lose power.

/// An in-memory file system that models what a disk keeps across a power cut.
///
/// Each file has *live* bytes (what reads see) and *durable* bytes (what
/// [`VfsFile::sync`] last made durable: the bytes and the length). Each
/// directory entry (a creation, a rename, a removal) is live at once and
/// durable once its directory is synced ([`Vfs::sync_dir`]). Directories
/// themselves are always durable. Nothing else is durable: a sync guarantees
/// the synced file only, and a directory sync only that directory's entries.
///
/// A power cut keeps the durable state and some part of the rest; a
/// [`CrashKind`] says which part. [`MemFs::crash_with`] builds the file system a
/// reboot could find now, and [`MemFs::crash`] the one that keeps nothing
/// unsynced.
///
/// With [`MemFs::record_crash_images`] it also records every *sync point* (each
/// call of [`VfsFile::sync`] or [`Vfs::sync_dir`]), just before the sync runs,
/// so that a test can later cut the power at each one:
/// [`MemFs::crash_image`] builds the image of one sync point for a kind and a
/// seed. A record holds the live and the durable contents of every file as
/// shared 4 KiB blocks (a write copies only the blocks it changes), so it costs
/// a pointer per block, and recording keeps in memory about as many bytes as
/// were written while it was on.
///
/// ```
/// use quiver::fs::{CrashKind, MemFs, Vfs};
/// use std::path::Path;
///
/// let fs = MemFs::new();
/// fs.record_crash_images(true);
/// fs.create_dir_all(Path::new("/d")).unwrap();
/// let file = fs.open(Path::new("/d/f"), true).unwrap();
/// file.write_at(0, &[1; 10_000]).unwrap();
/// file.sync().unwrap(); // sync point 0: the power may fail just before it
/// fs.sync_dir(Path::new("/d")).unwrap(); // sync point 1
/// assert_eq!(fs.sync_points(), 2);
/// // Before the directory sync, the file's entry was not durable yet.
/// let image = fs.crash_image(1, CrashKind::LoseUnsynced, 0).unwrap();
/// assert!(image.list(Path::new("/d")).unwrap().is_empty());
/// // After it, the file and its synced bytes survive any cut.
/// assert_eq!(fs.crash().open(Path::new("/d/f"), false).unwrap().len().unwrap(), 10_000);
/// ```
#[derive(Debug, Clone, Default)]
pub struct MemFs {
    state: Arc<Mutex<MemState>>,
}

/// What a power cut keeps of the state that was not yet synced, for
/// [`MemFs::crash_with`] and [`MemFs::crash_image`].
///
/// Every kind keeps all that was synced. A file's contents are 4 KiB blocks;
/// a block is *unsynced* when its live bytes differ from its durable ones. A
/// kind that draws its choices draws them from the image's seed: the same
/// recording, sync point, kind and seed always give the same image.
///
/// | kind | directory entries | file contents | failure it stands for |
/// |---|---|---|---|
/// | [`LoseUnsynced`](Self::LoseUnsynced) | as last synced | as last synced | a disk that wrote nothing since the last sync |
/// | [`PartialWriteback`](Self::PartialWriteback) | as last synced | some unsynced blocks new, the rest old | page-cache writeback in any order (ext4 `data=ordered`) |
/// | [`TornWrite`](Self::TornWrite) | as last synced | as `PartialWriteback`, plus one block torn at a 512-byte sector | a power cut in the middle of a page write |
/// | [`LostMetadata`](Self::LostMetadata) | some unsynced changes lost | every write kept, some length changes lost | a metadata journal commit that never happened |
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum CrashKind {
    /// Every unsynced write and directory change is lost: each durable entry
    /// holds its file's durable bytes and length. The disk wrote nothing
    /// after the last sync. Every sync point has this image.
    LoseUnsynced,
    /// Writeback got part of the way. Each unsynced block of a file with a
    /// durable entry reached the disk or not, independently, with a
    /// probability drawn for the image (at least one change reaches it), and
    /// each file's length is its durable or its live one; bytes past the
    /// durable length that did not reach the disk read as zeros. Directory
    /// entries are as last synced. This is the page cache writing dirty pages
    /// back in any order before the cut, as ext4 `data=ordered` (and every
    /// other file system) may: before a sync returns, any subset of the
    /// writes it covers may be durable. A sync point without unsynced changes
    /// in a durable file has no such image.
    PartialWriteback,
    /// As [`PartialWriteback`](Self::PartialWriteback), plus one unsynced
    /// block, drawn, torn: its first `n × 512` bytes (`n` drawn from 1 to 7)
    /// are new and the rest old. If the block lies past the durable length,
    /// the length is the live one, so that the tear shows. This is a disk that
    /// writes 512-byte sectors atomically but not 4 KiB pages, losing power in
    /// the middle of one (a torn write). A sync point without an unsynced
    /// block in a durable file has no such image.
    TornWrite,
    /// Metadata lost, data kept. Every unsynced write reached the disk, but a
    /// drawn subset (at least one) of the unsynced metadata changes did not:
    /// * a file's length change: its length goes back to the durable one,
    ///   while its writes inside that length are kept (an extension lost; a
    ///   lost truncation brings old bytes back past the live end);
    /// * a file's unsynced creation, rename or removal: that file's entries
    ///   go back to how the last sync of their directory left them, while its
    ///   contents keep their unsynced bytes. Files that share a name (one
    ///   renamed over the other) keep or lose their changes together, so a
    ///   rename stays atomic: each file has its old names or its new ones.
    ///
    /// This is a file system that journals metadata apart from data: the data
    /// blocks reached the disk, but the journal commit holding the new size or
    /// the directory change did not (ext4 writes data in place before its
    /// metadata commits in `data=ordered` mode, and regardless of it in
    /// `data=writeback`). A sync point without unsynced metadata has no such
    /// image.
    LostMetadata,
}

impl CrashKind {
    /// Every kind, in the order of the table above.
    pub const ALL: [CrashKind; 4] = [
        CrashKind::LoseUnsynced,
        CrashKind::PartialWriteback,
        CrashKind::TornWrite,
        CrashKind::LostMetadata,
    ];
}

#[derive(Debug, Default)]
struct MemState {
    live: BTreeMap<PathBuf, Arc<MemFile>>,
    durable: BTreeMap<PathBuf, Arc<MemFile>>,
    dirs: BTreeSet<PathBuf>,
    locks: BTreeSet<PathBuf>,
    record: bool,
    points: Vec<Arc<SyncPoint>>,
}

#[derive(Debug, Default)]
struct MemFile {
    bytes: Mutex<MemBytes>,
}

#[derive(Debug, Default, Clone)]
struct MemBytes {
    live: Content,
    durable: Content,
}

/// Bytes per block of a [`MemFs`] file: what reaches the disk whole or not at
/// all in a [`CrashKind::PartialWriteback`] image.
const BLOCK: usize = 4096;
/// Bytes per sector: what a [`CrashKind::TornWrite`] tears at.
const SECTOR: usize = 512;

/// A file's bytes as shared blocks: a clone shares them, and a write copies
/// only the blocks it changes.
///
/// Invariant: `blocks.len() == len.div_ceil(BLOCK)`, and the bytes of the last
/// block past `len` are zero.
#[derive(Debug, Clone, Default)]
struct Content {
    blocks: Vec<Arc<[u8; BLOCK]>>,
    len: usize,
}

static ZERO_BLOCK: [u8; BLOCK] = [0; BLOCK];

/// Where [`Content::compose`] takes one block from.
#[derive(Debug, Clone, Copy)]
enum Pick {
    Old,
    New,
    /// The first this many bytes from the new content, the rest from the old.
    NewPrefix(usize),
}

impl Content {
    /// Block `b`, zeros past the end.
    fn block(&self, b: usize) -> &[u8; BLOCK] {
        self.blocks.get(b).map_or(&ZERO_BLOCK, |block| block)
    }

    fn same_block(&self, other: &Content, b: usize) -> bool {
        match (self.blocks.get(b), other.blocks.get(b)) {
            (Some(x), Some(y)) if Arc::ptr_eq(x, y) => true,
            _ => self.block(b) == other.block(b),
        }
    }

    /// Calls `f(block, offset in block, range in the request)` for each piece
    /// of the byte range `[offset, offset + len)`.
    fn pieces(offset: usize, len: usize, mut f: impl FnMut(usize, usize, std::ops::Range<usize>)) {
        let mut done = 0;
        while done < len {
            let at = offset + done;
            let n = (BLOCK - at % BLOCK).min(len - done);
            f(at / BLOCK, at % BLOCK, done..done + n);
            done += n;
        }
    }

    /// Fills `buf` from `offset`; `false` if that reads past the end.
    fn read(&self, offset: usize, buf: &mut [u8]) -> bool {
        if offset
            .checked_add(buf.len())
            .is_none_or(|end| end > self.len)
        {
            return false;
        }
        Content::pieces(offset, buf.len(), |b, at, range| {
            let n = range.len();
            buf[range].copy_from_slice(&self.blocks[b][at..at + n]);
        });
        true
    }

    /// Writes `data` at `offset`, growing the content if needed. The caller
    /// checked that `offset + data.len()` does not overflow.
    fn write(&mut self, offset: usize, data: &[u8]) {
        let end = offset + data.len();
        if end > self.len {
            self.set_len(end);
        }
        let blocks = &mut self.blocks;
        Content::pieces(offset, data.len(), |b, at, range| {
            let n = range.len();
            Arc::make_mut(&mut blocks[b])[at..at + n].copy_from_slice(&data[range]);
        });
    }

    /// Truncates, or extends with zeros.
    fn set_len(&mut self, len: usize) {
        if len < self.len {
            self.blocks.truncate(len.div_ceil(BLOCK));
            let tail = len % BLOCK;
            if let Some(last) = self.blocks.last_mut().filter(|_| tail != 0) {
                if last[tail..].iter().any(|&x| x != 0) {
                    Arc::make_mut(last)[tail..].fill(0);
                }
            }
        } else {
            // One shared zero block; the first write to each copies it.
            let zero = Arc::new([0; BLOCK]);
            self.blocks.resize(len.div_ceil(BLOCK), zero);
        }
        self.len = len;
    }

    /// Blocks whose bytes differ between `self` and `other`, zeros past the
    /// end of either.
    fn differing_blocks(&self, other: &Content) -> Vec<usize> {
        let blocks = self.blocks.len().max(other.blocks.len());
        (0..blocks)
            .filter(|&b| !self.same_block(other, b))
            .collect()
    }

    /// A content of `len` bytes whose block `b` comes from `old` or `new` as
    /// `pick(b)` says.
    fn compose(
        old: &Content,
        new: &Content,
        len: usize,
        mut pick: impl FnMut(usize) -> Pick,
    ) -> Content {
        let zero = Arc::new([0; BLOCK]);
        let blocks = (0..len.div_ceil(BLOCK))
            .map(|b| {
                let from = |content: &Content| content.blocks.get(b).unwrap_or(&zero).clone();
                match pick(b) {
                    Pick::Old => from(old),
                    Pick::New => from(new),
                    Pick::NewPrefix(n) => {
                        let mut block = *old.block(b);
                        block[..n].copy_from_slice(&new.block(b)[..n]);
                        Arc::new(block)
                    }
                }
            })
            .collect();
        let mut content = Content {
            blocks,
            len: len.div_ceil(BLOCK) * BLOCK,
        };
        // Zero what a new block holds past a shorter length.
        content.set_len(len);
        content
    }

    /// All bytes, copied.
    fn copy_to(&self, out: &mut [u8]) {
        Content::pieces(0, self.len, |b, at, range| {
            let n = range.len();
            out[range].copy_from_slice(&self.blocks[b][at..at + n]);
        });
    }
}

/// The whole file system at one sync point, just before the sync ran.
#[derive(Debug)]
struct SyncPoint {
    /// Each file's live and durable contents.
    files: Vec<MemBytes>,
    /// The entries reads see: path → index in `files`.
    live: BTreeMap<PathBuf, usize>,
    /// The entries as the last sync of their directory left them.
    durable: BTreeMap<PathBuf, usize>,
    dirs: BTreeSet<PathBuf>,
    /// The sync point's number (for a crash now, the next one's), which
    /// the seed of an image is mixed with.
    number: u64,
}

/// One unsynced metadata change, for [`CrashKind::LostMetadata`].
#[derive(Debug, Clone, Copy)]
enum MetadataChange {
    /// The entries of a group of files (an index into the groups) differ
    /// from their durable ones.
    Entries(usize),
    /// The file's live length differs from its durable one.
    Length(usize),
}

/// Uniform in `0..n`; `n > 0`.
fn below(rng: &mut SplitMix64, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}

impl SyncPoint {
    fn capture(state: &MemState) -> SyncPoint {
        let mut index: HashMap<*const MemFile, usize> = HashMap::new();
        let mut files = Vec::new();
        let mut entries = |map: &BTreeMap<PathBuf, Arc<MemFile>>| {
            map.iter()
                .map(|(path, file)| {
                    let i = *index.entry(Arc::as_ptr(file)).or_insert_with(|| {
                        files.push(lock(&file.bytes).clone());
                        files.len() - 1
                    });
                    (path.clone(), i)
                })
                .collect::<BTreeMap<_, _>>()
        };
        let live = entries(&state.live);
        let durable = entries(&state.durable);
        SyncPoint {
            files,
            live,
            durable,
            dirs: state.dirs.clone(),
            number: state.points.len() as u64,
        }
    }

    /// The image a power cut here leaves, or `None` if `kind` has nothing to
    /// vary here.
    fn image(&self, kind: CrashKind, seed: u64) -> Option<MemFs> {
        // Each sync point and kind draws its own choices from a seed: the
        // same seeds at every point would give every point the same draws.
        let kind_number = CrashKind::ALL.iter().position(|&k| k == kind).unwrap_or(0) as u64;
        let mut rng = SplitMix64::new(seed);
        let mixed =
            rng.next_u64() ^ self.number.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ kind_number << 56;
        let mut rng = SplitMix64::new(mixed);
        let (entries, contents) = match kind {
            CrashKind::LoseUnsynced => {
                let contents = self
                    .durable
                    .values()
                    .map(|&i| (i, self.files[i].durable.clone()))
                    .collect();
                (self.durable.clone(), contents)
            }
            CrashKind::PartialWriteback => (self.durable.clone(), self.writeback(false, &mut rng)?),
            CrashKind::TornWrite => (self.durable.clone(), self.writeback(true, &mut rng)?),
            CrashKind::LostMetadata => self.lost_metadata(&mut rng)?,
        };
        Some(MemFs::from_parts(&entries, contents, self.dirs.clone()))
    }

    /// The contents of the durable entries' files after a partial writeback,
    /// with one block torn if `torn` ([`CrashKind::PartialWriteback`],
    /// [`CrashKind::TornWrite`]).
    fn writeback(&self, torn: bool, rng: &mut SplitMix64) -> Option<BTreeMap<usize, Content>> {
        let files: BTreeSet<usize> = self.durable.values().copied().collect();
        // Every unsynced change of those files: a block, or (None) the length.
        let mut changes: Vec<(usize, Option<usize>)> = Vec::new();
        for &i in &files {
            let f = &self.files[i];
            let blocks = f.live.differing_blocks(&f.durable);
            changes.extend(blocks.into_iter().map(|b| (i, Some(b))));
            if f.live.len != f.durable.len {
                changes.push((i, None));
            }
        }
        let tear = if torn {
            // Blocks holding written bytes, not just a truncation.
            let written: Vec<(usize, usize)> = changes
                .iter()
                .filter_map(|&(i, b)| Some((i, b?)))
                .filter(|&(i, b)| b * BLOCK < self.files[i].live.len)
                .collect();
            if written.is_empty() {
                return None;
            }
            let (i, b) = written[below(rng, written.len())];
            let sectors = 1 + below(rng, BLOCK / SECTOR - 1);
            Some((i, b, sectors * SECTOR))
        } else if changes.is_empty() {
            return None;
        } else {
            None
        };
        let p = rng.next_f64();
        let mut kept: BTreeSet<(usize, Option<usize>)> = changes
            .iter()
            .copied()
            .filter(|_| rng.next_f64() < p)
            .collect();
        if let Some((i, b, _)) = tear {
            kept.remove(&(i, Some(b)));
            if b * BLOCK >= self.files[i].durable.len {
                kept.insert((i, None));
            }
        } else if kept.is_empty() {
            kept.insert(changes[below(rng, changes.len())]);
        }
        let contents = files
            .iter()
            .map(|&i| {
                let f = &self.files[i];
                let len = if kept.contains(&(i, None)) {
                    f.live.len
                } else {
                    f.durable.len
                };
                let content = Content::compose(&f.durable, &f.live, len, |b| match tear {
                    Some((ti, tb, n)) if (ti, tb) == (i, b) => Pick::NewPrefix(n),
                    _ if kept.contains(&(i, Some(b))) => Pick::New,
                    _ => Pick::Old,
                });
                (i, content)
            })
            .collect();
        Some(contents)
    }

    /// Entries and contents after some unsynced metadata changes were lost
    /// ([`CrashKind::LostMetadata`]).
    #[allow(clippy::type_complexity)]
    fn lost_metadata(
        &self,
        rng: &mut SplitMix64,
    ) -> Option<(BTreeMap<PathBuf, usize>, BTreeMap<usize, Content>)> {
        let names = |entries: &BTreeMap<PathBuf, usize>| {
            let mut names: BTreeMap<usize, BTreeSet<PathBuf>> = BTreeMap::new();
            for (path, &i) in entries {
                names.entry(i).or_default().insert(path.clone());
            }
            names
        };
        let (live, durable) = (names(&self.live), names(&self.durable));
        let files: BTreeSet<usize> = live.keys().chain(durable.keys()).copied().collect();
        let no_names = BTreeSet::new();
        let names_of = |i: usize| {
            let live = live.get(&i).unwrap_or(&no_names);
            live.iter().chain(durable.get(&i).unwrap_or(&no_names))
        };
        // Files whose entries changed, grouped so that files sharing a name
        // (one renamed over the other) keep or lose their changes together:
        // a rename is atomic. Reverting a whole group gives each of its
        // files its durable names, which no file outside the group claims.
        let changed: Vec<usize> = files
            .iter()
            .copied()
            .filter(|i| live.get(i) != durable.get(i))
            .collect();
        let mut holders: BTreeMap<&PathBuf, Vec<usize>> = BTreeMap::new();
        for &i in &changed {
            for path in names_of(i) {
                holders.entry(path).or_default().push(i);
            }
        }
        let mut groups: Vec<Vec<usize>> = Vec::new();
        let mut grouped = BTreeSet::new();
        for &first in &changed {
            if !grouped.insert(first) {
                continue;
            }
            let (mut group, mut todo) = (Vec::new(), vec![first]);
            while let Some(i) = todo.pop() {
                group.push(i);
                for path in names_of(i) {
                    todo.extend(holders[path].iter().filter(|&&j| grouped.insert(j)));
                }
            }
            groups.push(group);
        }
        let mut changes: Vec<MetadataChange> =
            (0..groups.len()).map(MetadataChange::Entries).collect();
        changes.extend(
            files
                .iter()
                .filter(|&&i| self.files[i].live.len != self.files[i].durable.len)
                .map(|&i| MetadataChange::Length(i)),
        );
        if changes.is_empty() {
            return None;
        }
        let p = rng.next_f64();
        let mut lost: Vec<bool> = changes.iter().map(|_| rng.next_f64() < p).collect();
        if !lost.contains(&true) {
            lost[below(rng, changes.len())] = true;
        }
        let (mut reverted, mut shortened) = (BTreeSet::new(), BTreeSet::new());
        for (change, _) in changes.iter().zip(lost).filter(|(_, lost)| *lost) {
            match *change {
                MetadataChange::Entries(g) => reverted.extend(groups[g].iter().copied()),
                MetadataChange::Length(i) => {
                    shortened.insert(i);
                }
            }
        }
        let mut entries: BTreeMap<PathBuf, usize> = BTreeMap::new();
        entries.extend(
            self.live
                .iter()
                .filter(|(_, i)| !reverted.contains(*i))
                .map(|(p, &i)| (p.clone(), i)),
        );
        entries.extend(
            self.durable
                .iter()
                .filter(|(_, i)| reverted.contains(*i))
                .map(|(p, &i)| (p.clone(), i)),
        );
        let contents = entries
            .values()
            .map(|&i| {
                let f = &self.files[i];
                let content = if shortened.contains(&i) {
                    // The live bytes, at the durable length.
                    let end = f.live.len;
                    Content::compose(&f.durable, &f.live, f.durable.len, |b| {
                        if (b + 1) * BLOCK <= end {
                            Pick::New
                        } else if b * BLOCK < end {
                            Pick::NewPrefix(end - b * BLOCK)
                        } else {
                            Pick::Old
                        }
                    })
                } else {
                    f.live.clone()
                };
                (i, content)
            })
            .collect();
        Some((entries, contents))
    }
}

/// A [`VfsFile`] of a [`MemFs`].
#[derive(Debug)]
struct MemHandle {
    fs: MemFs,
    file: Arc<MemFile>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave the maps half-updated in a way
    // that matters to a test double; keep going.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(
        io::ErrorKind::NotFound,
        format!("{} not found", path.display()),
    )
}

impl MemFs {
    /// An empty file system.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records every sync point from now on (`true`), or no more (`false`);
    /// see [`MemFs::crash_image`]. Points already recorded are kept.
    pub fn record_crash_images(&self, on: bool) {
        lock(&self.state).record = on;
    }

    /// How many sync points have been recorded. Sync point `k` is the
    /// `k`-th sync (0-based) while recording was on.
    pub fn sync_points(&self) -> usize {
        lock(&self.state).points.len()
    }

    /// The file system a reboot finds after a power cut just before sync
    /// point `point`, losing what `kind` says, with its choices drawn from
    /// `seed`. `None` if `kind` has nothing to vary at that point (see each
    /// [`CrashKind`]); [`CrashKind::LoseUnsynced`] always gives an image.
    ///
    /// # Panics
    /// If `point >= self.sync_points()`.
    pub fn crash_image(&self, point: usize, kind: CrashKind, seed: u64) -> Option<MemFs> {
        let point = lock(&self.state).points[point].clone();
        point.image(kind, seed)
    }

    /// The images of `kind` with `seed` at every recorded sync point that has
    /// one, oldest first, each with its sync point. Built one at a time as
    /// the iterator advances.
    pub fn crash_images_with(
        &self,
        kind: CrashKind,
        seed: u64,
    ) -> impl Iterator<Item = (usize, MemFs)> {
        let points = lock(&self.state).points.clone();
        points
            .into_iter()
            .enumerate()
            .filter_map(move |(k, point)| Some((k, point.image(kind, seed)?)))
    }

    /// The [`CrashKind::LoseUnsynced`] image of every recorded sync point,
    /// oldest first.
    pub fn crash_images(&self) -> Vec<MemFs> {
        self.crash_images_with(CrashKind::LoseUnsynced, 0)
            .map(|(_, image)| image)
            .collect()
    }

    /// The file system a reboot after a power cut now would find, losing
    /// what `kind` says, with its choices drawn from `seed`; `None` as for
    /// [`MemFs::crash_image`].
    pub fn crash_with(&self, kind: CrashKind, seed: u64) -> Option<MemFs> {
        let point = SyncPoint::capture(&lock(&self.state));
        point.image(kind, seed)
    }

    /// The file system a reboot after a power cut now would find, keeping
    /// nothing unsynced ([`CrashKind::LoseUnsynced`]).
    pub fn crash(&self) -> MemFs {
        let point = SyncPoint::capture(&lock(&self.state));
        // Every state has a LoseUnsynced image.
        point.image(CrashKind::LoseUnsynced, 0).unwrap_or_default()
    }

    /// A file system whose entries are all durable and hold durable bytes.
    /// `entries` maps each path to a key of `contents`; paths sharing a key
    /// share the file.
    fn from_parts(
        entries: &BTreeMap<PathBuf, usize>,
        contents: BTreeMap<usize, Content>,
        dirs: BTreeSet<PathBuf>,
    ) -> MemFs {
        let files: BTreeMap<usize, Arc<MemFile>> = contents
            .into_iter()
            .map(|(i, content)| {
                let bytes = MemBytes {
                    live: content.clone(),
                    durable: content,
                };
                let file = MemFile {
                    bytes: Mutex::new(bytes),
                };
                (i, Arc::new(file))
            })
            .collect();
        let entries: BTreeMap<PathBuf, Arc<MemFile>> = entries
            .iter()
            .map(|(path, i)| (path.clone(), files[i].clone()))
            .collect();
        MemFs {
            state: Arc::new(Mutex::new(MemState {
                live: entries.clone(),
                durable: entries,
                dirs,
                ..MemState::default()
            })),
        }
    }

    fn sync_point(&self) {
        let mut state = lock(&self.state);
        if state.record {
            let point = SyncPoint::capture(&state);
            state.points.push(Arc::new(point));
        }
    }

    fn file(&self, path: &Path) -> io::Result<Arc<MemFile>> {
        lock(&self.state)
            .live
            .get(path)
            .cloned()
            .ok_or_else(|| not_found(path))
    }
}

impl VfsFile for MemHandle {
    fn len(&self) -> io::Result<u64> {
        Ok(lock(&self.file.bytes).live.len as u64)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let bytes = lock(&self.file.bytes);
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        if !bytes.live.read(start, buf) {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        Ok(())
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        start
            .checked_add(data.len())
            .ok_or(io::ErrorKind::InvalidInput)?;
        lock(&self.file.bytes).live.write(start, data);
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        lock(&self.file.bytes).live.set_len(len);
        Ok(())
    }
    fn sync(&self) -> io::Result<()> {
        self.fs.sync_point();
        let mut bytes = lock(&self.file.bytes);
        bytes.durable = bytes.live.clone();
        Ok(())
    }
}

/// One 64-byte-aligned block, so that a copied file starts where a mapping would.
#[derive(Debug, Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Align64([u8; 64]);

/// A copy of a file's bytes in 64-byte-aligned memory.
#[derive(Debug)]
struct MemMapping {
    blocks: Vec<Align64>,
    len: usize,
}

impl MemMapping {
    fn new(content: &Content) -> Self {
        let mut blocks = vec![Align64([0; 64]); content.len.div_ceil(64)];
        content.copy_to(&mut bytemuck::cast_slice_mut::<Align64, u8>(&mut blocks)[..content.len]);
        MemMapping {
            blocks,
            len: content.len,
        }
    }
}

impl Mapping for MemMapping {
    fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice::<Align64, u8>(&self.blocks)[..self.len]
    }
}

#[derive(Debug)]
struct MemLock {
    fs: MemFs,
    path: PathBuf,
}

impl LockGuard for MemLock {}

impl Drop for MemLock {
    fn drop(&mut self) {
        lock(&self.fs.state).locks.remove(&self.path);
    }
}

impl Vfs for MemFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        for ancestor in dir.ancestors() {
            state.dirs.insert(ancestor.to_path_buf());
        }
        Ok(())
    }
    fn kind(&self, path: &Path) -> io::Result<Option<FileKind>> {
        let state = lock(&self.state);
        Ok(if state.dirs.contains(path) {
            Some(FileKind::Dir)
        } else if state.live.contains_key(path) {
            Some(FileKind::File)
        } else {
            None
        })
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let state = lock(&self.state);
        if !state.dirs.contains(dir) {
            return Err(not_found(dir));
        }
        Ok(state
            .live
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect())
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn VfsFile>> {
        let mut state = lock(&self.state);
        let parent = path.parent().unwrap_or(Path::new(""));
        if !state.dirs.contains(parent) {
            return Err(not_found(parent));
        }
        let file = match state.live.get(path) {
            Some(file) => file.clone(),
            None if create => {
                let file = Arc::new(MemFile::default());
                state.live.insert(path.to_path_buf(), file.clone());
                file
            }
            None => return Err(not_found(path)),
        };
        Ok(Arc::new(MemHandle {
            fs: self.clone(),
            file,
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut state = lock(&self.state);
        let file = state.live.remove(from).ok_or_else(|| not_found(from))?;
        state.live.insert(to.to_path_buf(), file);
        Ok(())
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        lock(&self.state)
            .live
            .remove(path)
            .map(drop)
            .ok_or_else(|| not_found(path))
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.sync_point();
        let mut state = lock(&self.state);
        let state = &mut *state;
        state.durable.retain(|p, _| p.parent() != Some(dir));
        for (path, file) in &state.live {
            if path.parent() == Some(dir) {
                state.durable.insert(path.clone(), file.clone());
            }
        }
        Ok(())
    }
    fn map(&self, path: &Path) -> io::Result<Arc<dyn Mapping>> {
        let file = self.file(path)?;
        let map = MemMapping::new(&lock(&file.bytes).live);
        Ok(Arc::new(map))
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        self.open(path, true)?;
        let mut state = lock(&self.state);
        if !state.locks.insert(path.to_path_buf()) {
            return Ok(None);
        }
        Ok(Some(Box::new(MemLock {
            fs: self.clone(),
            path: path.to_path_buf(),
        })))
    }
}

// ---------------------------------------------------------------------------
// redb on top of the seam.

/// Adapts a [`VfsFile`] to redb's storage backend, so that the manifest's I/O
/// goes through the same seam as the column files. The locks are the file's
/// [`VfsFile::range_locks`], or none.
#[derive(Debug)]
pub(crate) struct RedbFile(pub(crate) Arc<dyn VfsFile>);

impl RedbFile {
    /// Whether other processes can share the file: then the manifest runs
    /// in redb's `SingleWriter` mode, else in its exclusive one.
    pub(crate) fn concurrency_mode(&self) -> redb::ConcurrencyMode {
        match self.0.range_locks() {
            Some(_) => redb::ConcurrencyMode::SingleWriter,
            None => redb::ConcurrencyMode::ExclusiveWriter,
        }
    }

    fn locks(&self) -> Result<&dyn redb::StorageBackend, redb::BackendError> {
        self.0.range_locks().ok_or(redb::BackendError::Unsupported)
    }
}

type Bounds = std::ops::Bound<u64>;

impl redb::StorageBackend for RedbFile {
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
    fn read(&self, offset: u64, out: &mut [u8]) -> io::Result<()> {
        self.0.read_at(offset, out)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.0.sync()
    }
    fn write(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_at(offset, data)
    }
    fn close(&self) -> io::Result<()> {
        self.0.range_locks().map_or(Ok(()), |locks| locks.close())
    }
    fn try_lock_range(&self, start: Bounds, end: Bounds) -> Result<bool, redb::BackendError> {
        self.locks()?.try_lock_range(start, end)
    }
    fn try_lock_shared_range(
        &self,
        start: Bounds,
        end: Bounds,
    ) -> Result<bool, redb::BackendError> {
        self.locks()?.try_lock_shared_range(start, end)
    }
    fn lock_range(&self, start: Bounds, end: Bounds) -> Result<(), redb::BackendError> {
        self.locks()?.lock_range(start, end)
    }
    fn lock_shared_range(&self, start: Bounds, end: Bounds) -> Result<(), redb::BackendError> {
        self.locks()?.lock_shared_range(start, end)
    }
    fn unlock_range(&self, start: Bounds, end: Bounds) -> Result<(), redb::BackendError> {
        self.locks()?.unlock_range(start, end)
    }
    fn query_lock_range(&self, start: Bounds, end: Bounds) -> Result<bool, redb::BackendError> {
        self.locks()?.query_lock_range(start, end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `data` to a new file at `path` and syncs it. The file must not exist.
    fn write_new_file(vfs: &dyn Vfs, path: &Path, data: &[&[u8]]) -> io::Result<()> {
        let file = vfs.open(path, true)?;
        file.set_len(0)?;
        let mut offset = 0u64;
        for part in data {
            file.write_at(offset, part)?;
            offset += part.len() as u64;
        }
        file.sync()
    }

    #[test]
    fn memfs_crash_drops_unsynced_bytes_and_entries() {
        let fs = MemFs::new();
        let dir = Path::new("/db");
        fs.create_dir_all(dir).unwrap();
        write_new_file(&fs, &dir.join("a"), &[b"synced"]).unwrap();
        fs.sync_dir(dir).unwrap();
        let a = fs.open(&dir.join("a"), false).unwrap();
        a.write_at(0, b"SYNCED and more").unwrap();
        write_new_file(&fs, &dir.join("b"), &[b"never in a synced dir"]).unwrap();

        let after = fs.crash();
        assert_eq!(after.list(dir).unwrap(), vec!["a".to_string()]);
        let mut buf = vec![0; 6];
        after
            .open(&dir.join("a"), false)
            .unwrap()
            .read_at(0, &mut buf)
            .unwrap();
        assert_eq!(&buf, b"synced");
        assert_eq!(after.open(&dir.join("a"), false).unwrap().len().unwrap(), 6);
    }

    #[test]
    fn memfs_lock_is_exclusive_until_dropped() {
        let fs = MemFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        let guard = fs.try_lock(Path::new("/d/LOCK")).unwrap();
        assert!(guard.is_some());
        assert!(fs.try_lock(Path::new("/d/LOCK")).unwrap().is_none());
        drop(guard);
        assert!(fs.try_lock(Path::new("/d/LOCK")).unwrap().is_some());
    }

    #[test]
    fn memfs_mapping_is_64_byte_aligned() {
        let fs = MemFs::new();
        fs.create_dir_all(Path::new("/d")).unwrap();
        write_new_file(&fs, Path::new("/d/f"), &[&[7u8; 100]]).unwrap();
        let map = fs.map(Path::new("/d/f")).unwrap();
        assert_eq!(map.bytes().as_ptr() as usize % 64, 0);
        assert_eq!(map.bytes(), &[7u8; 100][..]);
    }

    /// All bytes of `path` in `fs`.
    fn read_all(fs: &MemFs, path: &Path) -> Vec<u8> {
        let file = fs.open(path, false).unwrap();
        let mut buf = vec![0; file.len().unwrap() as usize];
        file.read_at(0, &mut buf).unwrap();
        buf
    }

    /// A file system with `/d/f` holding `durable`, synced and named durably,
    /// then overwritten in place with `live` (not synced).
    fn synced_then_overwritten(durable: &[u8], live: &[u8]) -> MemFs {
        let fs = MemFs::new();
        let dir = Path::new("/d");
        fs.create_dir_all(dir).unwrap();
        write_new_file(&fs, &dir.join("f"), &[durable]).unwrap();
        fs.sync_dir(dir).unwrap();
        fs.open(&dir.join("f"), false)
            .unwrap()
            .write_at(0, live)
            .unwrap();
        fs
    }

    #[test]
    fn memfs_records_each_sync_point_before_the_sync() {
        let fs = MemFs::new();
        fs.record_crash_images(true);
        let dir = Path::new("/d");
        fs.create_dir_all(dir).unwrap();
        write_new_file(&fs, &dir.join("f"), &[b"bytes"]).unwrap();
        fs.sync_dir(dir).unwrap();
        assert_eq!(fs.sync_points(), 2);
        assert_eq!(fs.crash_images().len(), 2);
        // Before the file sync and before the directory sync, no entry was durable.
        for point in 0..2 {
            let image = fs.crash_image(point, CrashKind::LoseUnsynced, 0).unwrap();
            assert!(image.list(dir).unwrap().is_empty(), "sync point {point}");
            // No durable file had unsynced blocks to keep or tear.
            assert!(fs
                .crash_image(point, CrashKind::PartialWriteback, 0)
                .is_none());
            assert!(fs.crash_image(point, CrashKind::TornWrite, 0).is_none());
        }
        // Before the directory sync, the lost creation is the one metadata change.
        let image = fs.crash_image(1, CrashKind::LostMetadata, 0).unwrap();
        assert!(image.list(dir).unwrap().is_empty());
        assert_eq!(read_all(&fs.crash(), &dir.join("f")), b"bytes");
    }

    #[test]
    fn memfs_partial_writeback_keeps_some_unsynced_blocks_whole() {
        let fs = synced_then_overwritten(&[1; 4 * BLOCK], &[2; 4 * BLOCK]);
        let mut patterns = BTreeSet::new();
        for seed in 0..64 {
            let image = fs.crash_with(CrashKind::PartialWriteback, seed).unwrap();
            let bytes = read_all(&image, Path::new("/d/f"));
            assert_eq!(bytes.len(), 4 * BLOCK);
            let pattern: Vec<u8> = bytes
                .chunks(BLOCK)
                .map(|block| {
                    assert!(
                        block.iter().all(|&x| x == block[0]),
                        "seed {seed}: a block is mixed"
                    );
                    block[0]
                })
                .collect();
            assert!(pattern.contains(&2), "seed {seed}: no unsynced block kept");
            patterns.insert(pattern);
        }
        assert!(patterns.len() > 8, "only {} block subsets", patterns.len());
        // The same seed gives the same image.
        let again = |seed| {
            read_all(
                &fs.crash_with(CrashKind::PartialWriteback, seed).unwrap(),
                Path::new("/d/f"),
            )
        };
        assert_eq!(again(5), again(5));
    }

    #[test]
    fn memfs_torn_write_keeps_a_sector_prefix_of_one_block() {
        let fs = synced_then_overwritten(&[1; BLOCK], &[2; BLOCK]);
        let mut sectors = BTreeSet::new();
        for seed in 0..64 {
            let image = fs.crash_with(CrashKind::TornWrite, seed).unwrap();
            let bytes = read_all(&image, Path::new("/d/f"));
            let new = bytes.iter().take_while(|&&x| x == 2).count();
            assert!(bytes[new..].iter().all(|&x| x == 1), "seed {seed}");
            assert_eq!(new % SECTOR, 0, "seed {seed}");
            sectors.insert(new / SECTOR);
        }
        assert_eq!(sectors, (1..8).collect::<BTreeSet<_>>());
    }

    #[test]
    fn memfs_lost_metadata_loses_an_extension_but_keeps_writes_in_place() {
        let mut live = vec![2; BLOCK];
        live.extend([3; BLOCK]);
        let fs = synced_then_overwritten(&[1; BLOCK], &live);
        for seed in 0..16 {
            let image = fs.crash_with(CrashKind::LostMetadata, seed).unwrap();
            assert_eq!(
                read_all(&image, Path::new("/d/f")),
                vec![2; BLOCK],
                "seed {seed}"
            );
        }
    }

    #[test]
    fn memfs_lost_metadata_undoes_a_rename_but_keeps_the_bytes() {
        let fs = synced_then_overwritten(b"old!", b"new!");
        fs.rename(Path::new("/d/f"), Path::new("/d/g")).unwrap();
        let image = fs.crash_with(CrashKind::LostMetadata, 0).unwrap();
        assert_eq!(image.list(Path::new("/d")).unwrap(), vec!["f".to_string()]);
        assert_eq!(read_all(&image, Path::new("/d/f")), b"new!");
    }

    #[test]
    fn memfs_lost_metadata_keeps_a_rename_over_another_file_atomic() {
        let fs = MemFs::new();
        let dir = Path::new("/d");
        fs.create_dir_all(dir).unwrap();
        write_new_file(&fs, &dir.join("a"), &[b"aaaa"]).unwrap();
        write_new_file(&fs, &dir.join("b"), &[b"bbbb"]).unwrap();
        fs.sync_dir(dir).unwrap();
        fs.rename(&dir.join("a"), &dir.join("b")).unwrap();
        for seed in 0..16 {
            // The rename is the one change, so it is lost whole: both files as before.
            let image = fs.crash_with(CrashKind::LostMetadata, seed).unwrap();
            assert_eq!(read_all(&image, &dir.join("a")), b"aaaa", "seed {seed}");
            assert_eq!(read_all(&image, &dir.join("b")), b"bbbb", "seed {seed}");
        }
    }

    #[test]
    fn real_lock_refuses_a_second_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("LOCK");
        let first = RealFs.try_lock(&path).unwrap();
        assert!(first.is_some());
        assert!(RealFs.try_lock(&path).unwrap().is_none());
    }
}
