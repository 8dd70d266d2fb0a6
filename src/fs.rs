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

use std::collections::{BTreeMap, BTreeSet};
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

#[derive(Debug)]
struct RealFile(std::fs::File);

impl VfsFile for RealFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::read_exact_at(&self.0, buf, offset)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        std::os::unix::fs::FileExt::write_all_at(&self.0, data, offset)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn sync(&self) -> io::Result<()> {
        self.0.sync_data()
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
        Ok(Arc::new(RealFile(file)))
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
/// [`VfsFile::sync`] last made durable). Each directory entry is live at once
/// and durable once its directory is synced. [`MemFs::crash`] returns the file
/// system a reboot would find: durable entries holding durable bytes.
///
/// With [`MemFs::record_crash_images`] it also keeps the crash image of every
/// sync point, taken just before the sync, so that a test can reopen each.
#[derive(Debug, Clone, Default)]
pub struct MemFs {
    state: Arc<Mutex<MemState>>,
}

#[derive(Debug, Default)]
struct MemState {
    live: BTreeMap<PathBuf, Arc<MemFile>>,
    durable: BTreeMap<PathBuf, Arc<MemFile>>,
    dirs: BTreeSet<PathBuf>,
    locks: BTreeSet<PathBuf>,
    record: bool,
    images: Vec<MemFs>,
}

#[derive(Debug, Default)]
struct MemFile {
    bytes: Mutex<MemBytes>,
}

#[derive(Debug, Default, Clone)]
struct MemBytes {
    live: Vec<u8>,
    durable: Vec<u8>,
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

    /// Keep a crash image at every sync point from now on (see [`MemFs::crash_images`]).
    pub fn record_crash_images(&self, on: bool) {
        lock(&self.state).record = on;
    }

    /// The crash images recorded so far, one per sync point, oldest first.
    pub fn crash_images(&self) -> Vec<MemFs> {
        lock(&self.state).images.clone()
    }

    /// The file system a reboot after a power cut now would find.
    pub fn crash(&self) -> MemFs {
        Self::image(&lock(&self.state))
    }

    fn image(state: &MemState) -> MemFs {
        let durable = state
            .durable
            .iter()
            .map(|(path, file)| {
                let bytes = lock(&file.bytes).durable.clone();
                let file = MemFile {
                    bytes: Mutex::new(MemBytes {
                        live: bytes.clone(),
                        durable: bytes,
                    }),
                };
                (path.clone(), Arc::new(file))
            })
            .collect::<BTreeMap<_, _>>();
        MemFs {
            state: Arc::new(Mutex::new(MemState {
                live: durable.clone(),
                durable,
                dirs: state.dirs.clone(),
                ..MemState::default()
            })),
        }
    }

    fn sync_point(&self) {
        let mut state = lock(&self.state);
        if state.record {
            let image = Self::image(&state);
            state.images.push(image);
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
        Ok(lock(&self.file.bytes).live.len() as u64)
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let bytes = lock(&self.file.bytes);
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::UnexpectedEof)?;
        let src = start
            .checked_add(buf.len())
            .and_then(|end| bytes.live.get(start..end))
            .ok_or(io::ErrorKind::UnexpectedEof)?;
        buf.copy_from_slice(src);
        Ok(())
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let mut bytes = lock(&self.file.bytes);
        let start = usize::try_from(offset).map_err(|_| io::ErrorKind::InvalidInput)?;
        let end = start + data.len();
        if bytes.live.len() < end {
            bytes.live.resize(end, 0);
        }
        bytes.live[start..end].copy_from_slice(data);
        Ok(())
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        let len = usize::try_from(len).map_err(|_| io::ErrorKind::InvalidInput)?;
        lock(&self.file.bytes).live.resize(len, 0);
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
    fn new(bytes: &[u8]) -> Self {
        let mut blocks = vec![Align64([0; 64]); bytes.len().div_ceil(64)];
        bytemuck::cast_slice_mut::<Align64, u8>(&mut blocks)[..bytes.len()].copy_from_slice(bytes);
        MemMapping {
            blocks,
            len: bytes.len(),
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
/// goes through the same seam as the column files.
#[derive(Debug)]
pub(crate) struct RedbFile(pub(crate) Arc<dyn VfsFile>);

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

    #[test]
    fn real_lock_refuses_a_second_holder() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("LOCK");
        let first = RealFs.try_lock(&path).unwrap();
        assert!(first.is_some());
        assert!(RealFs.try_lock(&path).unwrap().is_none());
    }
}
