//! I/O failures surface as typed errors, never panics, and a failed commit
//! leaves the last committed state and a writer that refuses to go on.

use quiver::fs::{FileKind, LockGuard, Mapping, MemFs, Vfs, VfsFile};
use quiver::{Database, Error, Metric, Options};
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// A [`MemFs`] whose file syncs start failing with EIO after a countdown.
#[derive(Debug, Clone)]
struct FailingFs {
    inner: MemFs,
    syncs_left: Arc<AtomicI64>,
}

#[derive(Debug)]
struct FailingFile {
    inner: Arc<dyn VfsFile>,
    syncs_left: Arc<AtomicI64>,
}

impl VfsFile for FailingFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.inner.write_at(offset, data)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync(&self) -> io::Result<()> {
        if self.syncs_left.fetch_sub(1, Ordering::SeqCst) <= 0 {
            return Err(io::Error::from_raw_os_error(5)); // EIO
        }
        self.inner.sync()
    }
}

impl Vfs for FailingFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn kind(&self, path: &Path) -> io::Result<Option<FileKind>> {
        self.inner.kind(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn VfsFile>> {
        Ok(Arc::new(FailingFile {
            inner: self.inner.open(path, create)?,
            syncs_left: self.syncs_left.clone(),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.inner.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }
    fn map(&self, path: &Path) -> io::Result<Arc<dyn Mapping>> {
        self.inner.map(path)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        self.inner.try_lock(path)
    }
}

#[test]
fn failed_sync_fails_the_commit_and_the_writer_refuses_more() {
    for seal in [false, true] {
        let mem = MemFs::new();
        let fs = FailingFs {
            inner: mem.clone(),
            syncs_left: Arc::new(AtomicI64::new(i64::MAX)),
        };
        let options = Options::new(2, Metric::L2).growing_threshold(if seal { 1 } else { 100 });
        let db = Database::open_with_vfs(Arc::new(fs.clone()), "/db", options.clone()).unwrap();
        let mut w = db.writer().unwrap();
        w.upsert(1, &[1.0, 1.0], None).unwrap();
        w.commit().unwrap();
        fs.syncs_left.store(0, Ordering::SeqCst);
        w.upsert(2, &[2.0, 2.0], None).unwrap();
        match w.commit() {
            Err(Error::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(5)),
            other => panic!("expected an I/O error, got {other:?}"),
        }
        assert!(
            db.get(2).unwrap().is_none(),
            "a failed commit must not be visible"
        );
        assert!(matches!(w.commit(), Err(Error::WriterFailed)));
        drop(w);
        assert!(matches!(db.writer(), Err(Error::WriterFailed)));
        drop(db);
        // After a power cut, the disk holds the last good commit.
        let db = Database::open_with_vfs(Arc::new(mem.crash()), "/db", options).unwrap();
        assert_eq!(db.len(), 1);
        assert!(db.get(1).unwrap().is_some());
    }
}

#[test]
fn path_under_a_file_is_an_io_error_with_its_path() {
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    match Database::open(file.join("db"), Options::new(2, Metric::L2)) {
        Err(Error::Io { path, .. }) => assert_eq!(path, file.join("db")),
        other => panic!("expected an I/O error, got {other:?}"),
    }
}
