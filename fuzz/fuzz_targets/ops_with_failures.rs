//! Random workloads against a file system that starts failing, checked
//! against a `BTreeMap` model (after redb's `fuzz_redb`).
//!
//! The input decodes into options, a countdown and a list of operations:
//! upserts, deletes, commits, rollbacks, compactions, reopens, power cuts,
//! searches and gets, over a small id space so that replacements and
//! deletes are common and segments seal and merge. The database lives in a
//! [`MemFs`] behind a [`Vfs`] wrapper that, once a countdown of mutating
//! operations (and optionally reads) runs out, fails every such operation with
//! EIO. A countdown starts once a few initial rows are committed, and again
//! after each recovery, up to four times.
//!
//! Checked:
//! * nothing panics;
//! * while nothing has failed, every commit succeeds, every read gives the
//!   model's answer (exact searches the brute-force ranking, graph searches
//!   only live ids at their true distances), and reopening or cutting the
//!   power keeps the last commit;
//! * after an injected failure, the handle is dropped and the database
//!   reopened with failures off, from the live files (a crash of the process)
//!   or from what a power cut keeps: it must show the last committed state (or,
//!   from the live files only, the state of a commit that failed part way),
//!   and pass `verify`. The workload then goes on.

#![no_main]

use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use quiver::fs::{FileKind, LockGuard, Mapping, MemFs, Vfs, VfsFile};
use quiver::{CompactOptions, Database, Error, Metric, Options, SearchParams, Writer};
use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

const DIR: &str = "/db";
const DIM: usize = 2;
/// Ids are taken modulo this, so that they collide.
const IDS: u64 = 24;
const MAX_OPS: usize = 96;

#[derive(Arbitrary, Debug)]
struct Input {
    /// Growing threshold 1..=8: seals (and merges) are frequent.
    threshold: u8,
    /// HNSW `m`, 2..=9.
    m: u8,
    /// Rows (modulo 16) committed before the first countdown starts.
    initial_rows: u8,
    /// Countdowns: the number (modulo 64; a commit takes about 10, one that
    /// seals about 25) of mutating file operations that succeed before the
    /// failures start, counted from the initial commit, and again from each
    /// recovery.
    countdowns: [u16; 4],
    /// How many of the countdowns to use (modulo 5); none left, no more
    /// failures.
    failures: u8,
    /// Reads fail too once a countdown has run out.
    fail_reads: bool,
    /// Recover from a failure through a power cut rather than a process crash.
    power_cut: bool,
    ops: Vec<Op>,
}

#[derive(Arbitrary, Debug)]
enum Op {
    Upsert {
        id: u8,
        x: i8,
        y: i8,
        payload: Option<u8>,
    },
    Delete {
        id: u8,
    },
    Commit,
    Rollback,
    Compact {
        target_rows: u8,
    },
    Reopen,
    PowerCut,
    Search {
        x: i8,
        y: i8,
        k: u8,
        exact: bool,
    },
    Get {
        id: u8,
    },
}

/// What the database holds: id → (vector, payload).
type Model = BTreeMap<u64, ([f32; DIM], Option<Vec<u8>>)>;

// ---------------------------------------------------------------------------
// A file system that fails on a countdown.

#[derive(Debug, Default)]
struct Faults {
    armed: AtomicBool,
    reads_too: AtomicBool,
    countdown: AtomicI64,
    tripped: AtomicBool,
}

impl Faults {
    fn write(&self) -> io::Result<()> {
        if self.armed.load(Ordering::SeqCst) && self.countdown.fetch_sub(1, Ordering::SeqCst) <= 0 {
            self.tripped.store(true, Ordering::SeqCst);
            return Err(io::Error::from_raw_os_error(5)); // EIO
        }
        Ok(())
    }

    fn read(&self) -> io::Result<()> {
        if self.reads_too.load(Ordering::SeqCst) {
            self.write()
        } else {
            Ok(())
        }
    }
}

#[derive(Debug, Clone)]
struct Faulty {
    inner: MemFs,
    faults: Arc<Faults>,
}

#[derive(Debug)]
struct FaultyFile {
    inner: Arc<dyn VfsFile>,
    faults: Arc<Faults>,
}

impl VfsFile for FaultyFile {
    fn len(&self) -> io::Result<u64> {
        self.faults.read()?;
        self.inner.len()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.faults.read()?;
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.faults.write()?;
        self.inner.write_at(offset, data)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.faults.write()?;
        self.inner.set_len(len)
    }
    fn sync(&self) -> io::Result<()> {
        self.faults.write()?;
        self.inner.sync()
    }
}

impl Vfs for Faulty {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.faults.write()?;
        self.inner.create_dir_all(dir)
    }
    fn kind(&self, path: &Path) -> io::Result<Option<FileKind>> {
        self.faults.read()?;
        self.inner.kind(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.faults.read()?;
        self.inner.list(dir)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn VfsFile>> {
        if create {
            self.faults.write()?;
        } else {
            self.faults.read()?;
        }
        Ok(Arc::new(FaultyFile {
            inner: self.inner.open(path, create)?,
            faults: self.faults.clone(),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.faults.write()?;
        self.inner.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.faults.write()?;
        self.inner.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.faults.write()?;
        self.inner.sync_dir(dir)
    }
    fn map(&self, path: &Path) -> io::Result<Arc<dyn Mapping>> {
        self.faults.read()?;
        self.inner.map(path)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        self.faults.write()?;
        self.inner.try_lock(path)
    }
}

// ---------------------------------------------------------------------------
// The workload and its model.

struct Run {
    options: Options,
    /// Countdowns not used yet, next last.
    countdowns: Vec<u16>,
    mem: MemFs,
    faults: Arc<Faults>,
    power_cut: bool,
    db: Option<Database>,
    writer: Option<Writer>,
    /// The last committed state.
    committed: Model,
    /// The committed state with the writer's staged changes applied.
    staged: Model,
    /// A commit that failed part way: from the live files it may have landed.
    maybe: Option<Model>,
}

fn vector(x: i8, y: i8) -> [f32; DIM] {
    [f32::from(x), f32::from(y)]
}

fn distance(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

impl Run {
    fn open(&mut self) -> quiver::Result<()> {
        let vfs = Faulty {
            inner: self.mem.clone(),
            faults: self.faults.clone(),
        };
        self.db = Some(Database::open_with_vfs(
            Arc::new(vfs),
            DIR,
            self.options.clone(),
        )?);
        Ok(())
    }

    fn tripped(&self) -> bool {
        self.faults.tripped.load(Ordering::SeqCst)
    }

    /// `result` of an operation: fine, or an error only an injected failure
    /// explains.
    fn expect_ok<T>(&self, what: &str, result: quiver::Result<T>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) if self.tripped() => {
                assert!(
                    matches!(e, Error::Io { .. } | Error::WriterFailed { .. }),
                    "{what} failed after an I/O error with {e:?}"
                );
                None
            }
            Err(e) => panic!("{what} failed with no failure injected: {e:?}"),
        }
    }

    fn db(&self) -> &Database {
        self.db.as_ref().expect("the database is open")
    }

    fn writer(&mut self) -> Option<&mut Writer> {
        if self.writer.is_none() {
            let w = self.db().writer();
            self.writer = Some(self.expect_ok("writer", w)?);
        }
        self.writer.as_mut()
    }

    /// Closes the database and opens it again with failures off, from the
    /// live files or from a power cut, and checks it holds one of `allowed`.
    fn reopen_safely(&mut self, power_cut: bool, allowed: &[Model]) {
        self.writer = None;
        self.db = None;
        self.faults.armed.store(false, Ordering::SeqCst);
        self.faults.tripped.store(false, Ordering::SeqCst);
        if power_cut {
            self.mem = self.mem.crash();
        }
        if let Err(e) = self.open() {
            panic!("reopen (power cut: {power_cut}) failed: {e:?}");
        }
        let found = self.observe().expect("reading after reopen");
        assert!(
            allowed.contains(&found),
            "reopened (power cut: {power_cut}) to {found:?}, expected one of {allowed:?}"
        );
        self.db().verify().expect("verify after reopen");
        self.committed = found.clone();
        self.staged = found;
        self.maybe = None;
        self.arm();
    }

    /// Starts the next countdown, if any is left.
    fn arm(&mut self) {
        if let Some(n) = self.countdowns.pop() {
            let n = i64::from(n % 64);
            self.faults.countdown.store(n, Ordering::SeqCst);
            self.faults.armed.store(true, Ordering::SeqCst);
        }
    }

    /// After an injected failure: reopen with failures off and check that
    /// nothing committed was lost and nothing uncommitted appeared.
    fn recover(&mut self) {
        let mut allowed = vec![self.committed.clone()];
        if !self.power_cut {
            allowed.extend(self.maybe.take());
        }
        self.reopen_safely(self.power_cut, &allowed);
    }

    /// A reopen the workload asks for, failures still armed.
    fn reopen(&mut self, power_cut: bool) {
        self.writer = None;
        self.db = None;
        // Uncommitted changes went with the writer.
        self.staged = self.committed.clone();
        if power_cut {
            self.mem = self.mem.crash();
        }
        let opened = self.open();
        if self.expect_ok("reopen", opened).is_none() {
            return;
        }
        let observed = self.observe();
        if let Some(found) = self.expect_ok("reading after reopen", observed) {
            assert_eq!(found, self.committed, "reopen (power cut: {power_cut})");
        }
    }

    /// Everything the open database holds, read through `get`; checks that
    /// `len` and an exact search over all of it agree.
    fn observe(&self) -> quiver::Result<Model> {
        let db = self.db();
        let mut found = Model::new();
        for id in 0..IDS {
            if let Some(r) = db.get(id)? {
                let v: [f32; DIM] = r.vector.as_slice().try_into().expect("dimension");
                found.insert(id, (v, r.payload));
            }
        }
        assert_eq!(db.len(), found.len(), "len disagrees with get");
        let all = db.search_with(&[0.0; DIM], &SearchParams::new(64).exact(true))?;
        assert_eq!(all, brute_force(&found, &[0.0; DIM], 64));
        Ok(found)
    }

    fn step(&mut self, op: &Op) {
        match *op {
            Op::Upsert { id, x, y, payload } => {
                let id = u64::from(id) % IDS;
                let v = vector(x, y);
                let payload = payload.map(|b| vec![b; usize::from(b % 5)]);
                let Some(w) = self.writer() else { return };
                let result = w.upsert(id, &v, payload.as_deref());
                if self.expect_ok("upsert", result).is_some() {
                    self.staged.insert(id, (v, payload));
                }
            }
            Op::Delete { id } => {
                let id = u64::from(id) % IDS;
                let Some(w) = self.writer() else { return };
                let result = w.delete(id);
                match result {
                    Ok(existed) => {
                        assert_eq!(
                            self.staged.remove(&id).is_some(),
                            existed,
                            "delete of {id} misreports whether it was there"
                        );
                    }
                    Err(e) => {
                        self.expect_ok("delete", Err::<(), _>(e));
                    }
                }
            }
            Op::Commit => {
                let Some(w) = self.writer() else { return };
                let result = w.commit();
                let attempted = self.staged.clone();
                if self.expect_ok("commit", result).is_some() {
                    self.committed = attempted;
                } else {
                    self.maybe = Some(attempted);
                }
            }
            Op::Rollback => {
                let Some(w) = self.writer() else { return };
                w.rollback();
                self.staged = self.committed.clone();
            }
            Op::Compact { target_rows } => {
                let options = CompactOptions::new().target_segment_rows(usize::from(target_rows));
                let Some(w) = self.writer() else { return };
                if w.pending() > 0 {
                    return;
                }
                let result = w.compact(&options, &mut |_, _| {});
                self.expect_ok("compact", result);
            }
            Op::Reopen => self.reopen(false),
            Op::PowerCut => self.reopen(true),
            Op::Search { x, y, k, exact } => {
                let query = vector(x, y);
                let k = 1 + usize::from(k % 32);
                let result = self
                    .db()
                    .search_with(&query, &SearchParams::new(k).exact(exact));
                let Some(hits) = self.expect_ok("search", result) else {
                    return;
                };
                if exact {
                    assert_eq!(hits, brute_force(&self.committed, &query, k));
                } else {
                    assert!(hits.len() <= k);
                    let mut seen = std::collections::HashSet::new();
                    for (i, h) in hits.iter().enumerate() {
                        let (v, _) = self.committed.get(&h.id).expect("a dead id was found");
                        assert_eq!(h.distance, distance(v, &query));
                        assert!(seen.insert(h.id), "id {} found twice", h.id);
                        if i > 0 {
                            let prev = &hits[i - 1];
                            assert!((prev.distance, prev.id) < (h.distance, h.id));
                        }
                    }
                }
            }
            Op::Get { id } => {
                let id = u64::from(id) % IDS;
                let result = self.db().get(id);
                let Some(record) = self.expect_ok("get", result) else {
                    return;
                };
                let want = self.committed.get(&id);
                match (record, want) {
                    (None, None) => {}
                    (Some(r), Some((v, p))) => {
                        assert_eq!(r.vector.as_slice(), v.as_slice(), "get({id})");
                        assert_eq!(&r.payload, p, "get({id}) payload");
                    }
                    (got, want) => panic!("get({id}) gave {got:?}, the model {want:?}"),
                }
            }
        }
        if self.tripped() {
            self.recover();
        }
    }
}

/// The `k` nearest of `model` to `query`, ordered by distance and then id.
fn brute_force(model: &Model, query: &[f32], k: usize) -> Vec<quiver::Hit> {
    let mut all: Vec<quiver::Hit> = model
        .iter()
        .map(|(&id, (v, _))| quiver::Hit {
            id,
            distance: distance(v, query),
        })
        .collect();
    all.sort_by(|a, b| a.distance.total_cmp(&b.distance).then(a.id.cmp(&b.id)));
    all.truncate(k);
    all
}

fuzz_target!(|input: Input| {
    let options = Options::new(DIM, Metric::L2)
        .growing_threshold(1 + usize::from(input.threshold % 8))
        .m(2 + usize::from(input.m % 8))
        .ef_construction(16);
    let mut countdowns = input.countdowns.to_vec();
    countdowns.truncate(usize::from(input.failures % 5));
    countdowns.reverse();
    let mut run = Run {
        options,
        countdowns,
        mem: MemFs::new(),
        faults: Arc::default(),
        power_cut: input.power_cut,
        db: None,
        writer: None,
        committed: Model::new(),
        staged: Model::new(),
        maybe: None,
    };
    run.open().expect("create");
    run.faults
        .reads_too
        .store(input.fail_reads, Ordering::SeqCst);
    // A committed state for the failures to threaten.
    let initial = u64::from(input.initial_rows % 16);
    if initial > 0 {
        for id in 0..initial {
            let v = vector(id as i8, -(id as i8));
            let w = run.writer().expect("no failure is armed yet");
            w.upsert(id, &v, None).unwrap();
            run.staged.insert(id, (v, None));
        }
        run.step(&Op::Commit);
    }
    run.arm();
    for op in input.ops.iter().take(MAX_OPS) {
        run.step(op);
    }
    // However the run ended, the last commit survives a power cut.
    if run.tripped() {
        run.recover();
    }
    run.countdowns.clear();
    let committed = run.committed.clone();
    run.reopen_safely(true, &[committed]);
});
