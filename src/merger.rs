//! The background merger: one thread per open database that merges sealed
//! segments as the [policy](crate::merge) picks them, off the commit path.
//!
//! A merge reads only immutable sealed segments of the state published when
//! it starts, writes the merged segment's files through the durable path
//! (temporary name, fsync, rename, directory fsync) without any lock, and
//! then *switches*: under the commit lock, it checks that its inputs are all
//! still live, carries over the deletes and replacements that committed
//! while it ran (a source row deleted now is a deleted row of the merged
//! segment), and commits one short manifest transaction that swaps the
//! inputs for the merged segment. Readers never wait; the writer waits only
//! for the switch. A crash before the switch's redb commit leaves files no
//! manifest names (removed at the next open); after it, the merged state.
//!
//! Dropping the last [`Database`](crate::Database) handle stops the merger:
//! a merge in progress is cancelled between graph insertions and its files,
//! if any, are removed.

use crate::calibrate;
use crate::error::{Error, Result};
use crate::inner::{DbInner, Wake};
use crate::manifest::{Location, Update};
use crate::merge;
use crate::state::{SealedView, SnapshotState};
use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

/// How long the merger sleeps without news before it reclaims unused states.
const IDLE_WAKE: Duration = Duration::from_millis(500);

/// The merger thread of one database; stops it when dropped.
#[derive(Debug)]
pub(crate) struct Merger {
    inner: Arc<DbInner>,
    cancel: Arc<AtomicBool>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// The last merge error, for [`Merger::last_error`].
    error: Arc<Mutex<Option<Error>>>,
}

impl Merger {
    /// Starts the merger thread of `inner`. With `auto_merge` off it only
    /// reclaims what readers let go of (so that retired files still go
    /// once their last snapshot is dropped).
    pub(crate) fn start(inner: Arc<DbInner>) -> Result<Merger> {
        let cancel = Arc::new(AtomicBool::new(false));
        let error: Arc<Mutex<Option<Error>>> = Arc::default();
        let (db, stop, err) = (inner.clone(), cancel.clone(), error.clone());
        if inner.options.auto_merge {
            inner.merge_work.set_running(true);
        }
        let spawned = std::thread::Builder::new()
            .name("quiver-merger".into())
            .spawn(move || match merge_pool() {
                // The merger's graph work runs on a pool of its own: on the
                // global pool, a commit's parallel graph inserts would queue
                // behind a merge's.
                Ok(pool) => pool.install(|| run(&db, &stop, &err)),
                Err(_) => run(&db, &stop, &err),
            });
        let thread = match spawned {
            Ok(handle) => handle,
            Err(e) => {
                inner.merge_work.set_running(false);
                return Err(Error::io(&inner.dir, e));
            }
        };
        inner.merge_work.notify();
        Ok(Merger {
            inner,
            cancel,
            thread: Mutex::new(Some(thread)),
            error,
        })
    }

    /// Runs every merge (and calibration) the policy wants now, on the
    /// calling thread; returns how many merges it switched in.
    pub(crate) fn run_now(&self) -> Result<usize> {
        let mut tried = HashSet::new();
        let never = AtomicBool::new(false);
        let mut merges = 0;
        loop {
            if calibrate_once(&self.inner, &mut tried, &never)? {
                continue;
            }
            if merge_once(&self.inner, &never)? {
                merges += 1;
            } else {
                self.inner.published.reclaim();
                return Ok(merges);
            }
        }
    }

    /// Blocks until the merger has nothing left to do.
    pub(crate) fn wait_idle(&self) {
        self.inner.merge_work.wait_idle();
    }

    /// The error of the last merge that failed, if any (a failed merge
    /// changes nothing; the next commit tries again).
    pub(crate) fn last_error(&self) -> Option<String> {
        self.error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .as_ref()
            .map(ToString::to_string)
    }
}

impl Drop for Merger {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::Release);
        self.inner.merge_work.stop();
        let thread = self
            .thread
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(t) = thread {
            let _ = t.join();
        }
    }
}

/// A rayon pool for merges: half the cores (at least one), so that merges
/// leave the rest to searches and commits.
fn merge_pool() -> std::result::Result<rayon::ThreadPool, rayon::ThreadPoolBuildError> {
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    rayon::ThreadPoolBuilder::new()
        .num_threads((cores / 2).max(1))
        .thread_name(|i| format!("quiver-merge-{i}"))
        .build()
}

fn run(db: &DbInner, cancel: &AtomicBool, error: &Mutex<Option<Error>>) {
    // Segments whose calibration was tried (and needs no second try).
    let mut calibrated = HashSet::new();
    loop {
        match db.merge_work.wait_for_work(IDLE_WAKE) {
            Wake::Stop => break,
            Wake::Idle => db.published.reclaim(),
            Wake::Work if !db.options.auto_merge => db.published.reclaim(),
            Wake::Work => loop {
                if cancel.load(Ordering::Acquire) {
                    break;
                }
                // Calibrating a new segment is cheap and makes its searches
                // cheaper at once: it goes before merges.
                let step = match calibrate_once(db, &mut calibrated, cancel) {
                    Ok(false) => merge_once(db, cancel),
                    other => other,
                };
                match step {
                    Ok(true) => db.published.reclaim(),
                    Ok(false) => break,
                    Err(e) => {
                        *error.lock().unwrap_or_else(PoisonError::into_inner) = Some(e);
                        break;
                    }
                }
            },
        }
    }
    if db.options.auto_merge {
        db.merge_work.set_running(false);
    }
}

/// Runs one merge if the policy picks one; returns whether it did.
pub(crate) fn merge_once(db: &DbInner, cancel: &AtomicBool) -> Result<bool> {
    if db.failed.is_set() {
        return Ok(false);
    }
    let base = db.published.load();
    let sizes: Vec<(u64, usize, usize)> = base
        .segments
        .iter()
        .map(|s| (s.segment.id(), s.segment.rows(), s.live))
        .collect();
    let Some(inputs) = merge::choose(&sizes, merge::MAX_SEGMENT_ROWS) else {
        return Ok(false);
    };
    let views: Vec<&SealedView> = base
        .segments
        .iter()
        .filter(|s| inputs.contains(&s.segment.id()))
        .collect();
    let params = db.graph_params();
    let Some(merged) = merge::merge_rows(&views, db.scorer(), &params, cancel)? else {
        return Ok(false);
    };
    let (seg, meta) = db.write_segment(&merged.rows, &merged.graph)?;
    let id = seg.id();
    // Calibrated before the switch, so that it never serves uncalibrated.
    let dead_now = dead_rows(&base, &merged.sources);
    let curve = calibrate::calibrate_new(&seg, &dead_now, db.scorer(), cancel);
    // The switch.
    let _commits = db.lock_commits();
    let current = db.published.load();
    let still_live = inputs.iter().all(|&i| current.segment(i).is_some());
    if !still_live || cancel.load(Ordering::Acquire) || db.failed.is_set() {
        // A compaction replaced an input meanwhile, or the database closes:
        // the merged files are named by no manifest.
        seg.retire();
        return Ok(still_live);
    }
    let dead = dead_rows(&current, &merged.sources);
    // The kept input's rows stay where their `ids` entries point, through
    // an alias: the switch writes the small side's entries only.
    let (aliases_set, kept_rows) = match merged.kept {
        Some((from, rows)) => (vec![(from, id)], rows),
        None => (Vec::new(), 0),
    };
    let mut ids_set = Vec::with_capacity(merged.rows.len() - kept_rows);
    let mut dead_at = dead
        .iter()
        .skip_while(|&&r| r < kept_rows as u64)
        .peekable();
    for (row, &(user_id, _)) in merged.rows.iter().enumerate().skip(kept_rows) {
        if dead_at.next_if_eq(&&(row as u64)).is_none() {
            let loc = Location {
                segment: id,
                row: row as u64,
            };
            ids_set.push((user_id, loc));
        }
    }
    // A merge changes no row: the generation, which counts commits that
    // change data, stays.
    let mut state = current.state;
    state.next_segment_id = state.next_segment_id.max(id + 1);
    let update = Update {
        ids_set,
        tombstones_added: dead.iter().map(|&r| (id, r)).collect(),
        segments_added: vec![(id, meta)],
        segments_removed: inputs.clone(),
        calibrations_set: curve.iter().map(|c| (id, c.encode())).collect(),
        aliases_set,
        state,
        ..Update::default()
    };
    // On failure the manifest may or may not hold the switch: as after a
    // failed commit, the database refuses further commits until reopened.
    let reader = db.commit_manifest(update)?;
    let mut segments = current.segments_without(|id| inputs.contains(&id));
    let at = segments.partition_point(|s| s.segment.id() < id);
    let mut view = SealedView::with_deleted(seg, &dead);
    view.calibration = curve.map(Arc::new);
    segments.insert(at, view);
    let next = current.successor(state, segments, current.growing.clone(), reader);
    db.published.publish(Arc::new(next));
    db.merges.fetch_add(1, Ordering::AcqRel);
    Ok(true)
}

/// The rows of a merged segment (whose rows came from `sources`, as
/// (segment, row)) that `state` no longer holds live, ascending.
fn dead_rows(state: &SnapshotState, sources: &[(u64, u64)]) -> Vec<u64> {
    sources
        .iter()
        .enumerate()
        .filter(|(_, &(source, row))| {
            state
                .segment(source)
                .is_none_or(|v| v.deleted.contains(row as usize))
        })
        .map(|(row, _)| row as u64)
        .collect()
}

/// Measures the recall curve of one segment that has none yet and records
/// it; returns whether it did. Segments in `tried` are skipped (a segment
/// too small to need a curve is tried once).
fn calibrate_once(db: &DbInner, tried: &mut HashSet<u64>, cancel: &AtomicBool) -> Result<bool> {
    if db.failed.is_set() {
        return Ok(false);
    }
    let base = db.published.load();
    let Some(view) = base
        .segments
        .iter()
        .find(|s| s.calibration.is_none() && !tried.contains(&s.segment.id()))
    else {
        return Ok(false);
    };
    let id = view.segment.id();
    tried.insert(id);
    let Some(curve) = calibrate::calibrate(&view.segment, &view.deleted, db.scorer(), cancel)
    else {
        return Ok(!cancel.load(Ordering::Acquire));
    };
    let _commits = db.lock_commits();
    let current = db.published.load();
    if current.segment(id).is_none() || db.failed.is_set() {
        return Ok(true);
    }
    let update = Update {
        calibrations_set: vec![(id, curve.encode())],
        state: current.state,
        ..Update::default()
    };
    let reader = db.commit_manifest(update)?;
    let curve = Arc::new(curve);
    let segments = current
        .segments
        .iter()
        .map(|s| {
            let mut s = s.clone();
            if s.segment.id() == id {
                s.calibration = Some(curve.clone());
            }
            s
        })
        .collect();
    let next = current.successor(current.state, segments, current.growing.clone(), reader);
    db.published.publish(Arc::new(next));
    Ok(true)
}
