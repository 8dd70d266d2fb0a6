//! The shared state behind every handle of one open database: the writer,
//! the merger and every snapshot reach the manifest, the files and the
//! published state through it.

use crate::error::{Error, Result};
use crate::fs::{LockGuard, Vfs};
use crate::graph::{Graph, GraphParams};
use crate::kernels::Kernels;
use crate::manifest::{Manifest, Reader, SegmentMeta, Update};
use crate::options::{Metric, Options, Scorer};
use crate::publish::Published;
use crate::query_stats::QueryStats;
use crate::segment::{self, Segment};
use crate::state::SnapshotState;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Set once a commit, a compaction or a merge's switch failed after it had
/// started changing the manifest: the manifest may then hold the change
/// while the published state does not, and nothing may change either until
/// the database is reopened. The first failure's message is kept, so that
/// whoever is refused next learns why (a merge on the background thread may
/// have hit it).
#[derive(Debug, Default)]
pub(crate) struct Failure {
    set: AtomicBool,
    cause: Mutex<Option<String>>,
}

impl Failure {
    /// Marks the database failed by `cause`, unless it already was.
    pub(crate) fn record(&self, cause: &Error) {
        let mut first = self.cause.lock().unwrap_or_else(PoisonError::into_inner);
        first.get_or_insert_with(|| cause.to_string());
        self.set.store(true, Ordering::Release);
    }

    pub(crate) fn is_set(&self) -> bool {
        self.set.load(Ordering::Acquire)
    }

    /// [`Error::WriterFailed`] with the first failure's message, once one
    /// was recorded.
    pub(crate) fn check(&self) -> Result<()> {
        if !self.is_set() {
            return Ok(());
        }
        let cause = self.cause.lock().unwrap_or_else(PoisonError::into_inner);
        Err(Error::WriterFailed {
            cause: cause.clone().unwrap_or_default(),
        })
    }
}

/// The shared state behind every clone of a [`Database`](crate::Database),
/// its writer, its merger and its snapshots.
#[derive(Debug)]
pub(crate) struct DbInner {
    pub(crate) published: Published,
    pub(crate) manifest: Manifest,
    pub(crate) dir: PathBuf,
    pub(crate) vfs: Arc<dyn Vfs>,
    pub(crate) options: Options,
    pub(crate) kernels: &'static Kernels,
    /// A [`Writer`](crate::Writer) exists.
    pub(crate) writer_taken: AtomicBool,
    /// A change to the manifest failed part way: refuse further changes
    /// until reopened.
    pub(crate) failed: Failure,
    /// Searches counted by every snapshot of this handle.
    pub(crate) queries: Arc<QueryStats>,
    /// Held by whoever changes the manifest and publishes: a commit, a
    /// compaction, or the merger's short switch.
    commit_lock: Mutex<()>,
    /// The next segment id to hand out. The writer and the merger both write
    /// segments; ids are reserved here, before their files are written, and
    /// the manifest's counter is raised past them when they commit.
    next_segment_id: AtomicU64,
    /// Tells the merger there may be work.
    pub(crate) merge_work: Arc<WorkSignal>,
    /// Background merges switched in since the database was opened.
    pub(crate) merges: AtomicU64,
    /// The directory lock of the writing handle; `None` for a read-only
    /// handle, which takes none and never writes.
    lock: Option<Box<dyn LockGuard>>,
}

impl DbInner {
    /// The shared state of a database just opened at `state`; `lock` is the
    /// directory lock a writable handle holds (`None` when read-only).
    pub(crate) fn new(
        state: SnapshotState,
        manifest: Manifest,
        dir: PathBuf,
        vfs: Arc<dyn Vfs>,
        options: Options,
        kernels: &'static Kernels,
        lock: Option<Box<dyn LockGuard>>,
    ) -> DbInner {
        let next_segment_id = state.state.next_segment_id;
        DbInner {
            published: Published::new(Arc::new(state)),
            manifest,
            dir,
            vfs,
            options,
            kernels,
            writer_taken: AtomicBool::new(false),
            failed: Failure::default(),
            queries: Arc::default(),
            commit_lock: Mutex::new(()),
            next_segment_id: AtomicU64::new(next_segment_id),
            merge_work: Arc::default(),
            merges: AtomicU64::new(0),
            lock,
        }
    }

    /// Opened by [`Database::open_read_only`](crate::Database::open_read_only).
    pub(crate) fn read_only(&self) -> bool {
        self.lock.is_none()
    }

    pub(crate) fn dim(&self) -> usize {
        self.options.dim
    }

    pub(crate) fn metric(&self) -> Metric {
        self.options.metric
    }

    pub(crate) fn scorer(&self) -> Scorer {
        Scorer {
            metric: self.options.metric,
            kernels: self.kernels,
        }
    }

    pub(crate) fn graph_params(&self) -> GraphParams {
        graph_params(&self.options)
    }

    /// Takes the commit lock: the manifest and the published state change
    /// only under it.
    pub(crate) fn lock_commits(&self) -> MutexGuard<'_, ()> {
        self.commit_lock
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// A segment id no other segment of this database has or will get.
    pub(crate) fn reserve_segment_id(&self) -> u64 {
        self.next_segment_id.fetch_add(1, Ordering::AcqRel)
    }

    /// Writes `rows` and `graph` (built over the same rows, in order) as a
    /// new segment under a fresh id, through the durable path, and maps it
    /// (its checksums known good: they were just computed from the bytes
    /// written). Returns it with its manifest record; the caller commits.
    pub(crate) fn write_segment(
        &self,
        rows: &[(u64, &[f32])],
        graph: &Graph,
    ) -> Result<(Arc<Segment>, SegmentMeta)> {
        let id = self.reserve_segment_id();
        let meta = segment::write_segment(
            &*self.vfs,
            &self.dir,
            id,
            self.dim(),
            self.metric(),
            rows,
            graph,
            self.options.ef_construction,
        )?;
        let seg = Segment::open(
            self.vfs.clone(),
            &self.dir,
            id,
            &meta,
            self.dim(),
            self.metric(),
        )?;
        seg.mark_verified();
        Ok((Arc::new(seg), meta))
    }

    /// Commits `update` to the manifest and opens a read transaction on the
    /// result, for the state to publish. Any failure marks the database
    /// failed: the manifest may hold the commit while the published state
    /// does not, so nothing may commit again until it is reopened.
    pub(crate) fn commit_manifest(&self, update: Update<'_>) -> Result<Reader> {
        let committed = self
            .manifest
            .commit(update)
            .and_then(|()| self.manifest.reader());
        if let Err(e) = &committed {
            self.failed.record(e);
        }
        committed
    }

    /// Closes everything but the manifest and the directory lock, for a
    /// caller that still has to work on the manifest file alone.
    pub(crate) fn into_manifest(self) -> (Manifest, Option<Box<dyn LockGuard>>) {
        let DbInner {
            published,
            manifest,
            lock,
            ..
        } = self;
        drop(published);
        (manifest, lock)
    }

    /// Tells the merger to look (publishing already reclaimed what readers
    /// no longer hold).
    pub(crate) fn after_publish(&self) {
        self.merge_work.notify();
    }
}

/// The graph build parameters `options` give.
pub(crate) fn graph_params(options: &Options) -> GraphParams {
    GraphParams {
        m: options.m,
        ef_construction: options.ef_construction,
        ..GraphParams::default()
    }
}

/// A wake-up flag with a condition variable: the writer raises it after each
/// commit, the merger sleeps on it; `wait_idle` lets a caller wait until the
/// merger has nothing left to do.
#[derive(Debug, Default)]
pub(crate) struct WorkSignal {
    state: Mutex<SignalState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct SignalState {
    /// Work may be waiting.
    pending: bool,
    /// The merger is working.
    busy: bool,
    /// The merger must stop.
    stop: bool,
    /// A merger thread runs.
    running: bool,
}

/// What the merger should do next.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Wake {
    Work,
    Idle,
    Stop,
}

impl WorkSignal {
    fn lock(&self) -> MutexGuard<'_, SignalState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// There may be work.
    pub(crate) fn notify(&self) {
        self.lock().pending = true;
        self.changed.notify_all();
    }

    /// The merger must stop (and waiters stop waiting for it).
    pub(crate) fn stop(&self) {
        self.lock().stop = true;
        self.changed.notify_all();
    }

    /// Marks the merger thread started or ended.
    pub(crate) fn set_running(&self, running: bool) {
        let mut s = self.lock();
        s.running = running;
        s.busy &= running;
        drop(s);
        self.changed.notify_all();
    }

    /// The merger waits up to `timeout` for work; on `Work` it is busy until
    /// the next call.
    pub(crate) fn wait_for_work(&self, timeout: Duration) -> Wake {
        let mut s = self.lock();
        s.busy = false;
        self.changed.notify_all();
        if !s.pending && !s.stop {
            s = self
                .changed
                .wait_timeout(s, timeout)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        if s.stop {
            return Wake::Stop;
        }
        if std::mem::take(&mut s.pending) {
            s.busy = true;
            return Wake::Work;
        }
        Wake::Idle
    }

    /// Blocks until no work is pending and the merger is not working (at
    /// once if no merger runs).
    pub(crate) fn wait_idle(&self) {
        let mut s = self.lock();
        while s.running && !s.stop && (s.pending || s.busy) {
            s = self.changed.wait(s).unwrap_or_else(PoisonError::into_inner);
        }
    }
}
