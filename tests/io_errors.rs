//! I/O failures surface as typed errors, never panics, and a failed commit
//! leaves the last committed state and a writer that refuses to go on.
//!
//! The heart of it is an exhaustive sweep: a fault injector over [`MemFs`]
//! counts every operation of a scripted workload by kind, and then the
//! workload is rerun once per operation with exactly that operation failing
//! (EIO, then ENOSPC). Each rerun must end in a typed error from the call
//! that hit the fault (or in no error at all, for the few failures Quiver
//! documents as harmless), and reopening the *same* file system — its live
//! state, as after an error in a process that goes on running — must show
//! exactly the last committed state.

mod common;

use common::panic_message;
use quiver::fs::{FileKind, LockGuard, Mapping, MemFs, Vfs, VfsFile};
use quiver::{CompactOptions, Database, Error, Metric, Options, Writer};
use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

const EIO: i32 = 5;
const ENOSPC: i32 = 28;
const DIR: &str = "/db";
const DIM: usize = 4;

// ---------------------------------------------------------------------------
// The fault injector.

/// A kind of file-system operation the injector counts and can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    // On files.
    WriteAt,
    Sync,
    SetLen,
    ReadAt,
    Len,
    // On the file system.
    Open,
    Rename,
    SyncDir,
    Remove,
    Map,
    Lock,
    List,
    Kind,
    CreateDir,
}

const ALL_OPS: [Op; 14] = [
    Op::WriteAt,
    Op::Sync,
    Op::SetLen,
    Op::ReadAt,
    Op::Len,
    Op::Open,
    Op::Rename,
    Op::SyncDir,
    Op::Remove,
    Op::Map,
    Op::Lock,
    Op::List,
    Op::Kind,
    Op::CreateDir,
];

/// Which operation to fail: the `nth` (from 1) of kind `op`, or of any kind.
#[derive(Debug, Clone, Copy)]
struct Target {
    op: Option<Op>,
    nth: u64,
    errno: i32,
}

/// The operation that was failed, and when.
#[derive(Debug, Clone)]
struct Fired {
    op: Op,
    path: PathBuf,
    /// The workload step that was running.
    step: usize,
    /// Whether the harness was dropping handles (errors there go nowhere).
    dropping: bool,
}

#[derive(Debug, Default)]
struct FaultState {
    counts: BTreeMap<Op, u64>,
    total: u64,
    target: Option<Target>,
    fired: Option<Fired>,
    step: usize,
    dropping: bool,
}

/// Shared by a [`FaultFs`] and every file it opened.
#[derive(Debug, Default)]
struct Faults(Mutex<FaultState>);

impl Faults {
    fn with(target: Option<Target>) -> Arc<Faults> {
        let faults = Faults::default();
        faults.lock().target = target;
        Arc::new(faults)
    }

    fn lock(&self) -> MutexGuard<'_, FaultState> {
        // A panic under test (caught and reported) must not hide the counts.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Counts one `op` on `path`, failing it if it is the target.
    fn check(&self, op: Op, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        let n = {
            let n = s.counts.entry(op).or_default();
            *n += 1;
            *n
        };
        s.total += 1;
        let hit = s.target.is_some_and(|t| match t.op {
            Some(kind) => kind == op && t.nth == n,
            None => t.nth == s.total,
        });
        if !hit {
            return Ok(());
        }
        let errno = s.target.map_or(EIO, |t| t.errno);
        s.fired = Some(Fired {
            op,
            path: path.to_path_buf(),
            step: s.step,
            dropping: s.dropping,
        });
        Err(io::Error::from_raw_os_error(errno))
    }

    /// Fails the next operation of kind `op` with `errno`.
    fn fail_next(&self, op: Op, errno: i32) {
        self.fail_later(op, 1, errno);
    }

    /// Fails the `k`-th operation of kind `op` from now (the next is 1).
    fn fail_later(&self, op: Op, k: u64, errno: i32) {
        let mut s = self.lock();
        let nth = s.counts.get(&op).copied().unwrap_or(0) + k;
        s.target = Some(Target {
            op: Some(op),
            nth,
            errno,
        });
    }

    fn fired(&self) -> Option<Fired> {
        self.lock().fired.clone()
    }
}

/// A [`MemFs`] that counts every operation and fails the one [`Faults`] targets.
#[derive(Debug, Clone)]
struct FaultFs {
    inner: MemFs,
    faults: Arc<Faults>,
}

#[derive(Debug)]
struct FaultFile {
    inner: Arc<dyn VfsFile>,
    path: PathBuf,
    faults: Arc<Faults>,
}

impl VfsFile for FaultFile {
    fn len(&self) -> io::Result<u64> {
        self.faults.check(Op::Len, &self.path)?;
        self.inner.len()
    }
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.faults.check(Op::ReadAt, &self.path)?;
        self.inner.read_at(offset, buf)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.faults.check(Op::WriteAt, &self.path)?;
        self.inner.write_at(offset, data)
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.faults.check(Op::SetLen, &self.path)?;
        self.inner.set_len(len)
    }
    fn sync(&self) -> io::Result<()> {
        self.faults.check(Op::Sync, &self.path)?;
        self.inner.sync()
    }
}

impl Vfs for FaultFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.faults.check(Op::CreateDir, dir)?;
        self.inner.create_dir_all(dir)
    }
    fn kind(&self, path: &Path) -> io::Result<Option<FileKind>> {
        self.faults.check(Op::Kind, path)?;
        self.inner.kind(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.faults.check(Op::List, dir)?;
        self.inner.list(dir)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn VfsFile>> {
        self.faults.check(Op::Open, path)?;
        Ok(Arc::new(FaultFile {
            inner: self.inner.open(path, create)?,
            path: path.to_path_buf(),
            faults: self.faults.clone(),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.faults.check(Op::Rename, to)?;
        self.inner.rename(from, to)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.faults.check(Op::Remove, path)?;
        self.inner.remove(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.faults.check(Op::SyncDir, dir)?;
        self.inner.sync_dir(dir)
    }
    fn map(&self, path: &Path) -> io::Result<Arc<dyn Mapping>> {
        self.faults.check(Op::Map, path)?;
        self.inner.map(path)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn LockGuard>>> {
        self.faults.check(Op::Lock, path)?;
        self.inner.try_lock(path)
    }
}

// ---------------------------------------------------------------------------
// The scripted workload and its model.

fn options() -> Options {
    // A tiny threshold and graph: every seal, merge and compaction stays cheap,
    // so that the workload can be rerun once per operation it performs.
    Options::new(DIM, Metric::L2)
        .growing_threshold(4)
        .m(4)
        .ef_construction(8)
        .auto_merge(false)
}

#[derive(Debug, Clone, PartialEq)]
struct Row {
    vector: Vec<f32>,
    payload: Option<Vec<u8>>,
}

type Model = BTreeMap<u64, Row>;

/// Every id the workload touches is below this.
const ID_SPACE: u64 = 80;

#[derive(Debug)]
enum Step {
    /// Drop the handles (if any) and open the directory again.
    Open,
    /// Upsert (id, with a payload?) and delete ids, then commit.
    Commit {
        upserts: &'static [(u64, bool)],
        deletes: &'static [u64],
    },
    /// `Writer::compact` with the default options.
    Compact,
    /// `Database::merge_pending`: the merges the policy wants, on this
    /// thread (the workload's options turn the background merger off, so
    /// that every operation happens in the script's order).
    Merge,
}

/// With a growing threshold of 4, no background merger, and merges run by
/// `Step::Merge`.
const SCRIPT: &[Step] = &[
    Step::Open, // creates the database
    Step::Commit {
        upserts: &[(1, true), (2, true), (3, false)],
        deletes: &[],
    }, // growing: 1 2 3
    Step::Commit {
        upserts: &[(2, false)],
        deletes: &[3],
    }, // 2 replaced (its payload removed), 3 deleted: 4 rows appended, sealed as
    // segment 1 with 2 of them deleted
    Step::Commit {
        upserts: &[(10, true), (11, false), (12, true)],
        deletes: &[],
    }, // growing: 10 11 12
    Step::Commit {
        upserts: &[(11, true), (20, true)],
        deletes: &[10],
    }, // 10 and 11 leave the growing segment; seals it (segment 2) when 20 fills it
    Step::Open, // reopens with segments with tombstones
    Step::Commit {
        upserts: &[(21, false), (22, true)],
        deletes: &[],
    }, // seals segment 3
    Step::Commit {
        upserts: &[(30, true), (31, false), (32, true), (33, false)],
        deletes: &[],
    }, // a batch of a whole growing segment: segment 4
    Step::Commit {
        upserts: &[],
        deletes: &[30, 31, 32, 33],
    }, // retires segment 4
    Step::Commit {
        upserts: &[(40, true), (41, false), (42, false), (43, true)],
        deletes: &[],
    }, // segment 5
    Step::Commit {
        upserts: &[(50, false), (51, true), (52, false), (53, true)],
        deletes: &[2],
    }, // segment 6
    Step::Merge, // merges the small segments (extending the largest one's graph)
    Step::Commit {
        upserts: &[(1, false), (60, true)],
        deletes: &[51],
    }, // growing: 1 60; a tombstone in a merged segment
    Step::Compact, // one clean segment with every live row
    Step::Open, // removes the compacted-away files if they are still there
    Step::Commit {
        upserts: &[(70, true), (71, false)],
        deletes: &[60],
    },
];

/// The manifest's file name.
fn quiver_manifest() -> &'static str {
    "quiver.redb"
}

fn row(step: usize, id: u64, payload: bool) -> Row {
    Row {
        vector: (0..DIM)
            .map(|d| id as f32 + step as f32 * 0.25 + d as f32 * 0.125)
            .collect(),
        payload: payload.then(|| format!("payload of {id} at step {step}").into_bytes()),
    }
}

/// How a run of the workload ended.
#[derive(Debug)]
struct Ending {
    /// The state and generation of the last commit that returned `Ok`.
    committed: (Model, u64),
    /// The state the failed commit would have made, if a step failed.
    attempted: Option<(Model, u64)>,
    /// The step that returned an error, and the error.
    failed: Option<(usize, Error)>,
    /// What each commit that returned `Ok` did: (step, segment sealed,
    /// segments retired).
    commits: Vec<(usize, Option<u64>, usize)>,
    /// Merges switched in by `Step::Merge`.
    merges: usize,
}

/// Runs the script through `fs`, stopping at the first step that fails, and
/// drops every handle. Returns a description of anything the run got wrong.
fn run_script(fs: &FaultFs, errno: Option<i32>) -> Result<Ending, String> {
    let faults = &fs.faults;
    let mut db: Option<Database> = None;
    let mut w: Option<Writer> = None;
    let mut model = Model::new();
    let mut generation = 0u64;
    let mut ending = Ending {
        committed: (Model::new(), 0),
        attempted: None,
        failed: None,
        commits: Vec::new(),
        merges: 0,
    };
    let drop_all = |db: &mut Option<Database>, w: &mut Option<Writer>| {
        faults.lock().dropping = true;
        drop(w.take());
        drop(db.take());
        faults.lock().dropping = false;
    };
    for (i, step) in SCRIPT.iter().enumerate() {
        faults.lock().step = i;
        let mut next = model.clone();
        let mut next_generation = generation;
        let outcome = match step {
            Step::Open => {
                drop_all(&mut db, &mut w);
                Database::open_with_vfs(Arc::new(fs.clone()), DIR, options()).and_then(|d| {
                    w = Some(d.writer()?);
                    db = Some(d);
                    Ok(())
                })
            }
            Step::Commit { upserts, deletes } => {
                let writer = w.as_mut().ok_or("no writer")?;
                // Staging looks ids up in the manifest (is it held
                // already?), so a failed read there fails the step before
                // its commit: the same outcome as a failed commit.
                let staged = (|| {
                    for &(id, payload) in upserts.iter() {
                        let r = row(i, id, payload);
                        writer.upsert(id, &r.vector, r.payload.as_deref())?;
                        next.insert(id, r);
                    }
                    for &id in deletes.iter() {
                        writer.delete(id)?;
                        next.remove(&id);
                    }
                    Ok(())
                })();
                next_generation += 1;
                staged.and_then(|()| writer.commit()).map(|info| {
                    ending
                        .commits
                        .push((i, info.sealed.map(|s| s.0), info.retired_segments));
                })
            }
            Step::Compact => {
                next_generation += 1;
                let writer = w.as_mut().ok_or("no writer")?;
                writer
                    .compact(&CompactOptions::new(), &mut |_, _| {})
                    .map(drop)
            }
            Step::Merge => db
                .as_ref()
                .ok_or("no database")?
                .merge_pending()
                .map(|n| ending.merges += n),
        };
        match outcome {
            Ok(()) => {
                model = next;
                generation = next_generation;
                let snap = db.as_ref().ok_or("no database")?.snapshot();
                if snap.generation() != generation {
                    return Err(format!(
                        "step {i}: generation {} after the step, expected {generation}",
                        snap.generation()
                    ));
                }
                if let Some(f) = faults.fired().filter(|f| f.step == i && !f.dropping) {
                    // The only failure Quiver may swallow outside a drop: the
                    // unlink of a retired segment's file, which the next open
                    // redoes (FORMAT.md §6, step 13).
                    let segment_file =
                        f.path
                            .file_name()
                            .and_then(|n| n.to_str())
                            .is_some_and(|n| {
                                n.starts_with("seg-")
                                    && (n.ends_with(".col") || n.ends_with(".hnsw"))
                            });
                    // And the manifest's size, read for a compaction's report
                    // after it committed.
                    let report_size = f.op == Op::Len && matches!(step, Step::Compact);
                    let late_unlink = f.op == Op::Remove && segment_file;
                    if !late_unlink && !report_size {
                        return Err(format!(
                            "step {i} ({step:?}) succeeded although its {:?} on {} failed",
                            f.op,
                            f.path.display()
                        ));
                    }
                }
            }
            Err(e) => {
                let Some(fired) = faults.fired() else {
                    return Err(format!("step {i} ({step:?}) failed with no fault: {e}"));
                };
                let typed = match &e {
                    Error::Io { source, .. } => source.raw_os_error() == errno,
                    _ => false,
                };
                if !typed {
                    return Err(format!(
                        "step {i} ({step:?}): the failed {:?} on {} gave {e:?}, not the injected I/O error",
                        fired.op,
                        fired.path.display()
                    ));
                }
                let wrote = matches!(
                    fired.op,
                    Op::WriteAt | Op::Sync | Op::SetLen | Op::Rename | Op::SyncDir | Op::Remove
                );
                if let (Some(d), Some(writer)) = (db.as_ref(), w.as_mut()) {
                    // The handle still serves the last committed state...
                    let snap = d.snapshot();
                    if snap.generation() != generation {
                        return Err(format!(
                            "step {i}: a failed step moved the handle to generation {}",
                            snap.generation()
                        ));
                    }
                    // (redb fails every later access through the manifest's
                    // handle, reads included, once a read or a length of its
                    // file failed: then a read that missed redb's cache
                    // reports that, and reopening is the way on. A read that
                    // answers must still answer the last committed state.)
                    let manifest_latched = fired.path.ends_with(quiver_manifest())
                        && matches!(fired.op, Op::ReadAt | Op::Len);
                    let latched = |r: &Result<_, Error>| {
                        manifest_latched
                            && matches!(r, Err(Error::Io { path, source })
                                if path.ends_with(quiver_manifest())
                                    && source.raw_os_error().is_none()
                                    && source.to_string().ends_with("reopen the database"))
                    };
                    for (id, r) in &model {
                        match snap.get(*id) {
                            Ok(Some(got)) if got.vector == r.vector && got.payload == r.payload => {
                            }
                            other if latched(&other) => {}
                            other => {
                                return Err(format!(
                                    "step {i}: after the failure, id {id} reads {other:?}"
                                ))
                            }
                        }
                    }
                    // ...and, once a write or a sync failed, refuses to write
                    // until it is reopened. (A failed read or length before
                    // anything was written need not poison the writer, nor
                    // a merge that failed writing its own new files: those
                    // are named by no manifest and nothing else changed.
                    // Only its switch, a manifest commit, poisons.)
                    let merge_files =
                        matches!(step, Step::Merge) && !fired.path.ends_with(quiver_manifest());
                    let poisoned = wrote && !merge_files;
                    // The refusal names the failure that caused it.
                    let refused = |r: Result<_, Error>| matches!(r, Err(Error::WriterFailed { cause }) if cause == e.to_string());
                    if poisoned && !refused(writer.commit().map(drop)) {
                        return Err(format!(
                            "step {i}: the writer commits after a failure, or is refused without its cause"
                        ));
                    }
                    if merge_files && writer.commit().is_err() {
                        return Err(format!(
                            "step {i}: a merge that failed before its switch stopped the writer"
                        ));
                    }
                    w = None;
                    if poisoned && !refused(d.writer().map(drop)) {
                        return Err(format!("step {i}: a new writer after a failure"));
                    }
                }
                ending.attempted = Some((next, next_generation));
                ending.failed = Some((i, e));
                break;
            }
        }
    }
    drop_all(&mut db, &mut w);
    ending.committed = (model, generation);
    Ok(ending)
}

/// Opens `mem` with no fault and checks that it holds exactly `expected`
/// (`alternative` too is accepted: see the caller), verifies it, and commits
/// once more. Returns the generation it found.
fn check_reopened(
    mem: &MemFs,
    expected: &(Model, u64),
    alternative: Option<&(Model, u64)>,
) -> Result<u64, String> {
    let db = Database::open_with_vfs(Arc::new(mem.clone()), DIR, options())
        .map_err(|e| format!("reopening failed: {e}"))?;
    let g = db.snapshot().generation();
    let model = match alternative {
        _ if g == expected.1 => &expected.0,
        Some(alt) if g == alt.1 => &alt.0,
        _ => {
            return Err(format!(
                "reopened at generation {g}, expected {}",
                expected.1
            ))
        }
    };
    if db.len() != model.len() {
        return Err(format!(
            "reopened with {} rows, expected {}",
            db.len(),
            model.len()
        ));
    }
    for id in 0..ID_SPACE {
        let got = db.get(id).map_err(|e| format!("get {id}: {e}"))?;
        let got = got.map(|r| Row {
            vector: r.vector,
            payload: r.payload,
        });
        if got.as_ref() != model.get(&id) {
            return Err(format!(
                "id {id} reads {got:?} after reopening, expected {:?}",
                model.get(&id)
            ));
        }
    }
    db.verify().map_err(|e| format!("verify: {e}"))?;
    let mut w = db.writer().map_err(|e| format!("writer: {e}"))?;
    w.upsert(ID_SPACE, &[0.5; DIM], None)
        .map_err(|e| e.to_string())?;
    w.commit()
        .map_err(|e| format!("commit after reopening: {e}"))?;
    Ok(g)
}

/// What a sweep found for one kind of operation.
#[derive(Debug, Default)]
struct KindReport {
    /// Runs in which an operation of this kind was failed.
    failed: u64,
    /// Of those, runs where the step that hit the fault returned an error.
    errors: u64,
    /// Runs where the fault was swallowed harmlessly (a drop, a late unlink,
    /// the size read for a compaction's report).
    swallowed: u64,
    /// Runs where the manifest's commit reached the file before its sync (or
    /// trim) failed, so that the reopened database holds the failed commit.
    ahead: u64,
}

/// How a sweep picks the operation to fail.
#[derive(Debug, Clone, Copy)]
enum Sweep {
    /// The n-th operation of one kind, for every kind and n.
    EachKind,
    /// The n-th operation of any kind, for every n.
    AnyKind,
}

/// Runs the workload once per operation it performs, with that operation
/// failing with `errno`; returns every problem found.
fn sweep(how: Sweep, errno: i32) -> Vec<String> {
    let started = Instant::now();
    let counter = FaultFs {
        inner: MemFs::new(),
        faults: Faults::with(None),
    };
    let clean = run_script(&counter, None).expect("the workload runs without faults");
    assert!(clean.failed.is_none());
    check_reopened(&counter.inner, &clean.committed, None).expect("the clean run reopens");
    let (counts, total) = {
        let s = counter.faults.lock();
        (s.counts.clone(), s.total)
    };
    let count_of = |lane: Option<Op>, counts: &BTreeMap<Op, u64>, total: u64| match lane {
        Some(op) => counts.get(&op).copied().unwrap_or(0),
        None => total,
    };
    let lanes: Vec<Option<Op>> = match how {
        Sweep::EachKind => ALL_OPS.iter().copied().map(Some).collect(),
        Sweep::AnyKind => vec![None],
    };

    let mut problems = Vec::new();
    let mut reports: BTreeMap<Op, KindReport> = BTreeMap::new();
    let mut runs = 0;
    for lane in lanes {
        // The counts vary by a few between runs: snapshots are freed by the
        // epoch collector at no fixed point, and while one lives its redb
        // read transaction keeps pages from reuse. Every run that goes
        // further than the clean one extends the sweep.
        let mut n_ops = count_of(lane, &counts, total);
        let mut nth = 0;
        while nth < n_ops {
            nth += 1;
            runs += 1;
            let mem = MemFs::new();
            let fs = FaultFs {
                inner: mem.clone(),
                faults: Faults::with(Some(Target {
                    op: lane,
                    nth,
                    errno,
                })),
            };
            let what = match lane {
                Some(op) => format!("errno {errno}, {op:?} #{nth}"),
                None => format!("errno {errno}, operation #{nth}"),
            };
            let outcome = catch_unwind(AssertUnwindSafe(|| {
                let ending = run_script(&fs, Some(errno))?;
                let fired = fs.faults.fired();
                // redb writes its commit header before its last fsync, and
                // trims the file after it (reading its length, then setting
                // it): when one of these fails, the commit is in the live file
                // although `commit` returned the error. As with any failed
                // fsync the outcome is unknown, and either the state before or
                // the state after is acceptable; never a mix of the two.
                let ambiguous = fired.as_ref().is_some_and(|f| {
                    matches!(f.op, Op::Sync | Op::SetLen | Op::Len)
                        && is_manifest(&f.path)
                        && ending.failed.is_some()
                });
                let alternative = ending.attempted.as_ref().filter(|_| ambiguous);
                let reopened = check_reopened(&mem, &ending.committed, alternative)?;
                Ok::<_, String>((ending, reopened))
            }));
            {
                let s = fs.faults.lock();
                n_ops = n_ops.max(count_of(lane, &s.counts, s.total));
            }
            let fired = fs.faults.fired();
            let what = match &fired {
                Some(f) => format!("{what} ({:?} on {})", f.op, f.path.display()),
                None => what,
            };
            match outcome {
                Err(panic) => {
                    problems.push(format!("{what}: panicked: {}", panic_message(&*panic)));
                }
                Ok(Err(problem)) => problems.push(format!("{what}: {problem}")),
                Ok(Ok((ending, reopened))) => {
                    // No fault: this run had fewer operations of the kind.
                    if let Some(f) = fired {
                        let report = reports.entry(f.op).or_default();
                        report.failed += 1;
                        if ending.failed.is_some() {
                            report.errors += 1;
                        } else {
                            report.swallowed += 1;
                        }
                        if ending.failed.is_some() && reopened > ending.committed.1 {
                            report.ahead += 1;
                        }
                    }
                }
            }
        }
    }
    let mut table = String::new();
    let mut failed = 0;
    for (op, r) in &reports {
        failed += r.failed;
        let _ = writeln!(
            table,
            "  {:<9} {:4} failed: {:4} returned an error, {:3} swallowed, {:3} left the failed commit",
            format!("{op:?}"),
            r.failed,
            r.errors,
            r.swallowed,
            r.ahead
        );
    }
    eprintln!(
        "errno {errno}, {how:?}: the workload performs {total} operations; \
         {runs} runs, {failed} with an operation failed, {} problems, {:.1} s\n{table}",
        problems.len(),
        started.elapsed().as_secs_f64()
    );
    problems
}

fn assert_no_problems(problems: Vec<String>) {
    assert!(
        problems.is_empty(),
        "{} problems:\n{}",
        problems.len(),
        problems[..problems.len().min(40)].join("\n")
    );
}

#[test]
fn the_workload_seals_merges_retires_and_compacts() {
    // The sweep is only as good as its script: check that it does what its
    // comments say.
    let fs = counting(&MemFs::new());
    let ending = run_script(&fs, None).unwrap();
    assert!(ending.failed.is_none());
    let sealing: Vec<(usize, Option<u64>, usize)> = ending
        .commits
        .iter()
        .copied()
        .filter(|c| c.1.is_some() || c.2 > 0)
        .collect();
    assert_eq!(
        sealing,
        [
            (2, Some(1), 0),
            (4, Some(2), 0),
            (6, Some(3), 0),
            (7, Some(4), 0),
            (8, None, 1),
            (9, Some(5), 0),
            (10, Some(6), 0),
        ]
    );
    assert!(ending.merges >= 1, "the merge step merged nothing");
    // 11 commits and a compaction (merges keep the generation).
    assert_eq!(ending.committed.1, 12);
}

#[test]
fn every_operation_failing_with_eio_gives_an_error_and_keeps_the_last_commit() {
    assert_no_problems(sweep(Sweep::EachKind, EIO));
}

#[test]
fn every_operation_failing_with_enospc_gives_an_error_and_keeps_the_last_commit() {
    assert_no_problems(sweep(Sweep::EachKind, ENOSPC));
}

#[test]
fn the_nth_operation_of_any_kind_failing_gives_an_error_and_keeps_the_last_commit() {
    // The same operations as kind by kind, counted in the order they run;
    // since late unlinks shift that order a little from run to run, it
    // also hits a few neighbouring ones twice.
    assert_no_problems(sweep(Sweep::AnyKind, EIO));
}

/// Whether a fault hit the manifest. A new database's manifest is created as
/// `quiver.redb.tmp` and renamed while open, so its handle keeps that name.
fn is_manifest(path: &std::path::Path) -> bool {
    path.ends_with("quiver.redb") || path.ends_with("quiver.redb.tmp")
}

/// A [`FaultFs`] with no target: it only counts.
fn counting(mem: &MemFs) -> FaultFs {
    FaultFs {
        inner: mem.clone(),
        faults: Faults::with(None),
    }
}

#[test]
fn failed_creation_of_the_manifest_leaves_a_directory_that_opens_as_new() {
    // The first write and the first sync of the manifest are redb's, before
    // it writes its magic number.
    for op in [Op::WriteAt, Op::Sync, Op::SetLen] {
        let mem = MemFs::new();
        let fs = counting(&mem);
        fs.faults.fail_next(op, EIO);
        match Database::open_with_vfs(Arc::new(fs.clone()), DIR, options()) {
            Err(Error::Io { path, source }) => {
                // The manifest is created under a temporary name.
                assert!(
                    path.ends_with("quiver.redb.tmp"),
                    "{op:?}: {}",
                    path.display()
                );
                assert_eq!(source.raw_os_error(), Some(EIO));
            }
            other => panic!("{op:?}: expected an I/O error, got {other:?}"),
        }
        let db = Database::open_with_vfs(Arc::new(mem), DIR, options())
            .unwrap_or_else(|e| panic!("{op:?}: the directory does not open again: {e}"));
        assert_eq!((db.snapshot().generation(), db.len()), (0, 0));
        let mut w = db.writer().unwrap();
        w.upsert(1, &[1.0; DIM], None).unwrap();
        w.commit().unwrap();
    }
}

/// A [`MemFs`] whose listings also name a file that is not there, as when
/// another handle unlinks a file between the listing and its removal.
#[derive(Debug)]
struct StaleListing {
    inner: MemFs,
    ghost: &'static str,
}

impl Vfs for StaleListing {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn kind(&self, path: &Path) -> io::Result<Option<FileKind>> {
        self.inner.kind(path)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = self.inner.list(dir)?;
        names.push(self.ghost.to_string());
        Ok(names)
    }
    fn open(&self, path: &Path, create: bool) -> io::Result<Arc<dyn VfsFile>> {
        self.inner.open(path, create)
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
fn orphan_unlinked_after_the_listing_does_not_fail_open() {
    // A retired segment of a dropped handle unlinks its files when the epoch
    // collector frees its last snapshot, which may be in the middle of the
    // next open's orphan sweep.
    let mem = MemFs::new();
    let db = Database::open_with_vfs(Arc::new(mem.clone()), DIR, options()).unwrap();
    let mut w = db.writer().unwrap();
    w.upsert(1, &[1.0; DIM], Some(b"kept")).unwrap();
    w.commit().unwrap();
    drop((w, db));
    let fs = StaleListing {
        inner: mem,
        ghost: "seg-00000000000000ff.col",
    };
    let db = Database::open_with_vfs(Arc::new(fs), DIR, options()).unwrap();
    assert_eq!(
        db.get(1).unwrap().unwrap().payload.as_deref(),
        Some(&b"kept"[..])
    );
}

#[test]
fn compaction_returns_an_error_only_if_it_did_not_commit() {
    // A compaction reads the manifest's length before it starts, inside
    // redb's commit when redb trims the file, and after it committed, for
    // its report. Failing each in turn: an error must leave the handle at
    // the generation before, and a compaction that committed returns `Ok`.
    let mut after_commit = 0;
    for k in 1.. {
        let fs = counting(&MemFs::new());
        let db = Database::open_with_vfs(Arc::new(fs.clone()), DIR, options()).unwrap();
        let mut w = db.writer().unwrap();
        for id in 0..10u64 {
            w.upsert(id, &[id as f32; DIM], None).unwrap();
            if id % 3 == 2 {
                w.commit().unwrap();
            }
        }
        w.delete(4).unwrap();
        w.commit().unwrap();
        let before = db.snapshot().generation();
        fs.faults.fail_later(Op::Len, k, EIO);
        let result = w.compact(&CompactOptions::new(), &mut |_, _| {});
        let Some(fired) = fs.faults.fired() else {
            result.unwrap();
            break;
        };
        let generation = db.snapshot().generation();
        match result {
            Ok(report) => {
                assert_eq!((report.generation, generation), (before + 1, before + 1));
                assert_eq!(db.len(), 9);
                assert!(is_manifest(&fired.path), "{fired:?}");
                w.upsert(100, &[1.0; DIM], None).unwrap();
                w.commit().unwrap();
                after_commit += 1;
            }
            Err(e) => assert_eq!(
                generation, before,
                "length read {k} failed the compaction ({e}) after it was published"
            ),
        }
    }
    assert!(after_commit > 0, "no length read after the commit");
}

#[test]
fn failed_sync_fails_the_commit_and_the_writer_refuses_more() {
    for seal in [false, true] {
        let mem = MemFs::new();
        let fs = counting(&mem);
        let options = Options::new(2, Metric::L2).growing_threshold(if seal { 1 } else { 100 });
        let db = Database::open_with_vfs(Arc::new(fs.clone()), DIR, options.clone()).unwrap();
        let mut w = db.writer().unwrap();
        w.upsert(1, &[1.0, 1.0], None).unwrap();
        w.commit().unwrap();
        fs.faults.fail_next(Op::Sync, EIO);
        w.upsert(2, &[2.0, 2.0], None).unwrap();
        match w.commit() {
            Err(Error::Io { source, .. }) => assert_eq!(source.raw_os_error(), Some(EIO)),
            other => panic!("expected an I/O error, got {other:?}"),
        }
        assert!(
            db.get(2).unwrap().is_none(),
            "a failed commit must not be visible"
        );
        assert!(matches!(w.commit(), Err(Error::WriterFailed { .. })));
        drop(w);
        assert!(matches!(db.writer(), Err(Error::WriterFailed { .. })));
        drop(db);
        // After a power cut, the disk holds the last good commit.
        let db = Database::open_with_vfs(Arc::new(mem.crash()), DIR, options).unwrap();
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
