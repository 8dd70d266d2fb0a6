//! Running out of resources: a file-size limit hit in the middle of a commit,
//! a read-only file system, and a directory another process holds.
//!
//! The third is `tests/process_lock.rs`
//! (`second_process_is_refused_while_the_first_has_the_directory_open`): a
//! second process that opens a directory the first has open gets
//! [`Error::WriterBusy`], and opens it once the first has closed it. It is not
//! repeated here.

use quiver::fs::{FileKind, LockGuard, Mapping, MemFs, Vfs, VfsFile};
use quiver::{Database, Error, Metric, Options};
use std::collections::BTreeMap;
use std::io::{self, Write};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

// ---------------------------------------------------------------------------
// A full disk, as a file-size limit.

const CHILD_DIR_ENV: &str = "QUIVER_FSIZE_CHILD_DIR";
const CHILD_LOG_ENV: &str = "QUIVER_FSIZE_CHILD_LOG";
const CHILD_CASE_ENV: &str = "QUIVER_FSIZE_CHILD_CASE";

/// Where the limit is hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Case {
    /// Nothing is sealed and every row has a large payload: the manifest grows
    /// past the limit.
    Manifest,
    /// Every commit seals a segment and merges make them bigger: a column or
    /// links file grows past the limit.
    Segment,
}

impl Case {
    fn name(self) -> &'static str {
        match self {
            Case::Manifest => "manifest",
            Case::Segment => "segment",
        }
    }

    fn from_name(name: &str) -> Case {
        match name {
            "manifest" => Case::Manifest,
            _ => Case::Segment,
        }
    }

    fn dim(self) -> usize {
        match self {
            Case::Manifest => 8,
            Case::Segment => 64,
        }
    }

    fn options(self) -> Options {
        let options = Options::new(self.dim(), Metric::L2)
            .m(8)
            .ef_construction(32);
        match self {
            Case::Manifest => options.growing_threshold(1_000_000),
            Case::Segment => options.growing_threshold(ROWS_PER_COMMIT),
        }
    }

    /// The largest file the child may write (`RLIMIT_FSIZE`).
    fn file_size_limit(self) -> u64 {
        1 << 20
    }
}

const ROWS_PER_COMMIT: usize = 100;

#[derive(Debug, Clone, PartialEq)]
struct Row {
    vector: Vec<f32>,
    payload: Option<Vec<u8>>,
}

type Model = BTreeMap<u64, Row>;

/// The upserts and deletes of commit `g`: new rows, new versions of a few
/// earlier ones, and a delete.
fn commit_ops(case: Case, g: u64) -> (Vec<(u64, Row)>, Vec<u64>) {
    let n = ROWS_PER_COMMIT as u64;
    let first = (g - 1) * n;
    let mut ids: Vec<u64> = (first..first + n).collect();
    if g > 1 {
        // New versions of rows of the commit before.
        ids.extend([first - n + 1, first - n + 7]);
    }
    let upserts = ids
        .into_iter()
        .map(|id| {
            let vector = (0..case.dim())
                .map(|d| (id % 997) as f32 + d as f32 * 0.01 + g as f32 * 0.001)
                .collect();
            let payload = match case {
                Case::Manifest => Some(vec![(id % 251) as u8; 300]),
                Case::Segment => (id % 5 == 0).then(|| format!("{g}:{id}").into_bytes()),
            };
            (id, Row { vector, payload })
        })
        .collect();
    let deletes = if g > 2 {
        vec![first - 2 * n + 3]
    } else {
        vec![]
    };
    (upserts, deletes)
}

fn model_after(case: Case, generation: u64) -> Model {
    let mut model = Model::new();
    for g in 1..=generation {
        let (upserts, deletes) = commit_ops(case, g);
        model.extend(upserts);
        for id in deletes {
            model.remove(&id);
        }
    }
    model
}

/// Upper bound on the child's commits: far past where the limit stops it.
const MAX_COMMITS: u64 = 2_000;

/// The child's workload under a file-size limit; a no-op unless the parent
/// started this binary for it. Each line of the log is one unbuffered append.
#[test]
fn disk_full_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let case = Case::from_name(&std::env::var(CHILD_CASE_ENV).unwrap());
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(std::env::var(CHILD_LOG_ENV).unwrap())
        .unwrap();
    let limit = case.file_size_limit();
    let rlimit = libc::rlimit {
        rlim_cur: limit,
        rlim_max: limit,
    };
    // SAFETY: plain system calls on this process's own signal disposition and
    // limits, with a valid pointer to an initialised `rlimit`. Ignoring
    // SIGXFSZ turns a write past the limit into an EFBIG error instead of
    // killing the process.
    unsafe {
        assert_ne!(libc::signal(libc::SIGXFSZ, libc::SIG_IGN), libc::SIG_ERR);
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &rlimit), 0);
    }
    let db = Database::open(&dir, case.options()).unwrap();
    let mut w = db.writer().unwrap();
    for g in 1..=MAX_COMMITS {
        let (upserts, deletes) = commit_ops(case, g);
        for (id, row) in &upserts {
            w.upsert(*id, &row.vector, row.payload.as_deref()).unwrap();
        }
        for id in &deletes {
            w.delete(*id).unwrap();
        }
        match w.commit() {
            Ok(info) => {
                assert_eq!(info.generation, g);
                log.write_all(format!("committed {g}\n").as_bytes())
                    .unwrap();
            }
            Err(e) => {
                // A background merge may hit the limit first: its switch
                // fails, and the commit that follows is refused with its error.
                let efbig = io::Error::from_raw_os_error(libc::EFBIG).to_string();
                let errno = match &e {
                    Error::Io { source, .. } => source.raw_os_error().unwrap_or(-1),
                    Error::WriterFailed { cause } if cause.contains(&efbig) => libc::EFBIG,
                    _ => -1,
                };
                log.write_all(format!("failed {g} errno {errno}: {e}\n").as_bytes())
                    .unwrap();
                let refused = matches!(w.commit(), Err(Error::WriterFailed { .. }));
                log.write_all(format!("refused {refused}\n").as_bytes())
                    .unwrap();
                return;
            }
        }
    }
    log.write_all(b"never failed\n").unwrap();
}

#[test]
fn commit_past_a_file_size_limit_fails_with_efbig_and_keeps_the_last_commit() {
    for case in [Case::Manifest, Case::Segment] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("db");
        let log = tmp.path().join("progress.log");
        let out = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "disk_full_child",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, &dir)
            .env(CHILD_LOG_ENV, &log)
            .env(CHILD_CASE_ENV, case.name())
            .output()
            .unwrap();
        let lines = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            out.status.success(),
            "{case:?}: the child did not exit cleanly ({}):\n{lines}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let committed = lines
            .lines()
            .filter_map(|l| l.strip_prefix("committed "))
            .filter_map(|g| g.parse::<u64>().ok())
            .max()
            .unwrap_or(0);
        let failed = lines
            .lines()
            .find(|l| l.starts_with("failed "))
            .unwrap_or_else(|| panic!("{case:?}: no commit failed:\n{lines}"));
        assert!(
            failed.starts_with(&format!("failed {} errno {}:", committed + 1, libc::EFBIG)),
            "{case:?}: expected commit {} to fail with EFBIG: {failed}",
            committed + 1
        );
        assert!(
            lines.lines().any(|l| l == "refused true"),
            "{case:?}: the writer did not refuse to go on:\n{lines}"
        );

        // Without the limit, the directory holds exactly the last commit.
        let db = Database::open(&dir, case.options()).unwrap();
        assert_eq!(db.snapshot().generation(), committed, "{case:?}");
        db.verify().unwrap();
        let model = model_after(case, committed);
        assert_eq!(db.len(), model.len(), "{case:?}");
        let top = committed * ROWS_PER_COMMIT as u64 + 10;
        for id in 0..top {
            let got = db.get(id).unwrap().map(|r| Row {
                vector: r.vector,
                payload: r.payload,
            });
            assert_eq!(got.as_ref(), model.get(&id), "{case:?}: id {id}");
        }
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{case:?}: {leftovers:?} left behind");
        let stats = db.stats().unwrap();
        // And it goes on.
        let mut w = db.writer().unwrap();
        let (upserts, _) = commit_ops(case, committed + 1);
        for (id, row) in &upserts {
            w.upsert(*id, &row.vector, row.payload.as_deref()).unwrap();
        }
        w.commit().unwrap();
        eprintln!(
            "{case:?}: {committed} commits under a {} KiB file-size limit, then: {}\n  \
             manifest {} KiB, {} segments of {} KiB column and {} KiB links files",
            case.file_size_limit() >> 10,
            failed.split_once(": ").map_or(failed, |(_, e)| e),
            stats.manifest_bytes >> 10,
            stats.segments,
            stats.column_bytes >> 10,
            stats.links_bytes >> 10,
        );
    }
}

// ---------------------------------------------------------------------------
// A read-only file system.

const EROFS: i32 = 30;

fn erofs() -> io::Error {
    io::Error::from_raw_os_error(EROFS)
}

/// A [`MemFs`] that refuses every operation that would change it with EROFS:
/// writes, truncations, syncs, creations, renames and removals. Reading,
/// mapping, listing, opening an existing file and locking an existing `LOCK`
/// work.
///
/// This is more lenient than a real read-only mount seen through `RealFs`,
/// which opens every file (`LOCK` included) for reading and writing, and so is
/// refused at the lock already. The wrapper shows what Quiver itself needs
/// to write.
#[derive(Debug)]
struct ReadOnlyFs {
    inner: MemFs,
}

#[derive(Debug)]
struct ReadOnlyFile(Arc<dyn VfsFile>);

impl VfsFile for ReadOnlyFile {
    fn len(&self) -> io::Result<u64> {
        self.0.len()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_at(offset, buf)
    }
    fn write_at(&self, _: u64, _: &[u8]) -> io::Result<()> {
        Err(erofs())
    }
    fn set_len(&self, _: u64) -> io::Result<()> {
        Err(erofs())
    }
    fn sync(&self) -> io::Result<()> {
        Err(erofs())
    }
}

impl Vfs for ReadOnlyFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        match self.inner.kind(dir)? {
            Some(FileKind::Dir) => Ok(()),
            _ => Err(erofs()),
        }
    }
    fn kind(&self, path: &Path) -> io::Result<Option<FileKind>> {
        self.inner.kind(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn VfsFile>> {
        if create && self.inner.kind(path)?.is_none() {
            return Err(erofs());
        }
        Ok(Arc::new(ReadOnlyFile(self.inner.open(path, false)?)))
    }
    fn rename(&self, _: &Path, _: &Path) -> io::Result<()> {
        Err(erofs())
    }
    fn remove(&self, _: &Path) -> io::Result<()> {
        Err(erofs())
    }
    fn sync_dir(&self, _: &Path) -> io::Result<()> {
        Err(erofs())
    }
    fn map(&self, path: &Path) -> io::Result<Arc<dyn Mapping>> {
        self.inner.map(path)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        if self.inner.kind(path)?.is_none() {
            return Err(erofs());
        }
        self.inner.try_lock(path)
    }
}

const DIR: &str = "/db";

fn small_options() -> Options {
    Options::new(2, Metric::L2).growing_threshold(3)
}

/// A database with a sealed segment, a tombstone, growing rows and payloads,
/// closed cleanly.
fn existing_database() -> MemFs {
    let mem = MemFs::new();
    let db = Database::open_with_vfs(Arc::new(mem.clone()), DIR, small_options()).unwrap();
    let mut w = db.writer().unwrap();
    for id in 0..4u64 {
        w.upsert(id, &[id as f32, 1.0], Some(b"sealed")).unwrap();
    }
    w.commit().unwrap();
    w.delete(1).unwrap();
    w.upsert(10, &[10.0, 1.0], Some(b"growing")).unwrap();
    w.commit().unwrap();
    drop((w, db));
    mem
}

#[test]
fn existing_database_on_a_read_only_file_system_is_refused_naming_the_manifest() {
    // What the code does: redb marks the manifest as in use when it opens it
    // for writing (it writes the file's header), so `open` fails with an I/O
    // error that names `quiver.redb`, before it reads anything else. To read
    // it there, open it read-only (the next test).
    let mem = existing_database();
    let fs = ReadOnlyFs { inner: mem.clone() };
    match Database::open_with_vfs(Arc::new(fs), DIR, small_options()) {
        Err(Error::Io { path, source }) => {
            assert_eq!(path, Path::new(DIR).join("quiver.redb"));
            assert_eq!(source.raw_os_error(), Some(EROFS));
        }
        other => panic!("expected an I/O error naming the manifest, got {other:?}"),
    }
    // The refused open changed nothing.
    let db = Database::open_with_vfs(Arc::new(mem), DIR, small_options()).unwrap();
    assert_eq!(db.len(), 4);
    assert_eq!(
        db.get(10).unwrap().unwrap().payload.as_deref(),
        Some(&b"growing"[..])
    );
    db.verify().unwrap();
}

#[test]
fn existing_database_on_a_read_only_file_system_opens_read_only() {
    // Every operation that would change the file system fails with EROFS, so
    // a read-only handle that tried one would fail.
    let mem = existing_database();
    let fs = ReadOnlyFs { inner: mem.clone() };
    let db = Database::open_read_only_with_vfs(Arc::new(fs), DIR).unwrap();
    assert_eq!(db.len(), 4);
    assert_eq!(db.search(&[10.0, 1.0], 1).unwrap()[0].id, 10);
    assert_eq!(
        db.get(10).unwrap().unwrap().payload.as_deref(),
        Some(&b"growing"[..])
    );
    db.verify().unwrap();
    assert_eq!(db.refresh().unwrap(), 2);
    // It holds no lock: a writer could take the directory meanwhile.
    assert!(mem
        .try_lock(&Path::new(DIR).join("LOCK"))
        .unwrap()
        .is_some());
}

#[test]
fn new_database_on_a_read_only_file_system_is_refused_naming_the_path() {
    // A missing directory cannot be created.
    let fs = ReadOnlyFs {
        inner: MemFs::new(),
    };
    match Database::open_with_vfs(Arc::new(fs), DIR, small_options()) {
        Err(Error::Io { path, source }) => {
            assert_eq!(path, Path::new(DIR));
            assert_eq!(source.raw_os_error(), Some(EROFS));
        }
        other => panic!("expected an I/O error naming the directory, got {other:?}"),
    }
    // An empty directory cannot take the lock file.
    let mem = MemFs::new();
    mem.create_dir_all(Path::new(DIR)).unwrap();
    let fs = ReadOnlyFs { inner: mem.clone() };
    match Database::open_with_vfs(Arc::new(fs), DIR, small_options()) {
        Err(Error::Io { path, source }) => {
            assert_eq!(path, Path::new(DIR).join("LOCK"));
            assert_eq!(source.raw_os_error(), Some(EROFS));
        }
        other => panic!("expected an I/O error naming the lock file, got {other:?}"),
    }
    assert!(mem.list(Path::new(DIR)).unwrap().is_empty());
}
