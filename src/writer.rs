//! The one writer: stages changes in an arena and commits them atomically.
//!
//! A commit, under the database's commit lock (which the background merger
//! takes only for its short switch):
//!
//! 1. looks up where every staged id lives now (in the published state,
//!    which under the lock is the manifest's last commit);
//! 2. places the staged rows: into the growing segment, whose in-memory
//!    graph they are inserted into; or, when they would overflow it, the
//!    growing segment is first sealed (its rows and its graph written out as
//!    a segment, nothing rebuilt) and they start a new one; or, as many as a
//!    whole growing segment holds, they are written as a segment of their
//!    own. A segment's files go to temporary names, are synced and renamed,
//!    and the directory is synced;
//! 3. records ids, tombstones, payloads, the growing rows and the new
//!    generation in one redb transaction and commits it;
//! 4. publishes the new state and wakes the merger.
//!
//! A commit never merges segments: the [merger](crate::merger) does that in
//! the background. Step 3's redb commit is the commit point: a crash before
//! it leaves at most files no manifest names, which the next `open` removes.

use crate::calibrate::{calibrate_new, Calibration};
use crate::error::{Error, Result};
use crate::growing::{GrowingView, NewRow};
use crate::inner::DbInner;
use crate::manifest::{Location, SegmentMeta, State, Update, GROWING_SEGMENT};
use crate::merge;
use crate::merger::Merger;
use crate::segment::Segment;
use crate::state::{SealedView, SnapshotState};
use crate::vector::prepare_vector;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Largest payload stored, in bytes.
pub const MAX_PAYLOAD: usize = 1 << 30;

/// A change staged in the writer.
#[derive(Debug)]
enum Staged {
    /// Row `at` of the arena, with its payload.
    Upsert { at: usize, payload: Option<Vec<u8>> },
    /// Delete a committed id.
    Delete,
}

/// A staged upsert as a commit sees it.
#[derive(Debug, Clone, Copy)]
struct StagedRow<'a> {
    id: u64,
    vector: &'a [f32],
    payload: Option<&'a [u8]>,
}

/// What a commit wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CommitInfo {
    /// The generation the commit created (unchanged if nothing was staged).
    pub generation: u64,
    /// Ids inserted or replaced.
    pub upserted: usize,
    /// Ids deleted.
    pub deleted: usize,
    /// The column file sealed by this commit, if any: (segment id, rows).
    pub sealed: Option<(u64, usize)>,
    /// Segments retired because every row in them was deleted or replaced.
    pub retired_segments: usize,
}

/// The database's one writer. Get it with [`Database::writer`](crate::Database::writer).
///
/// Changes are staged in memory and become visible, all at once and durably,
/// when [`Writer::commit`] returns. Dropping the writer discards what is
/// staged and not committed.
#[derive(Debug)]
pub struct Writer {
    pub(crate) db: Arc<DbInner>,
    /// Keeps the merger running while the writer lives.
    _merger: Arc<Merger>,
    staged: BTreeMap<u64, Staged>,
    /// Staged vectors, `dim` floats each, already normalised for cosine.
    arena: Vec<f32>,
}

impl Writer {
    pub(crate) fn new(db: Arc<DbInner>, merger: Arc<Merger>) -> Writer {
        Writer {
            db,
            _merger: merger,
            staged: BTreeMap::new(),
            arena: Vec::new(),
        }
    }

    /// Stages `vector` (and `payload`) under `id`, replacing what `id` held.
    ///
    /// # Errors
    /// [`Error::Dimension`], [`Error::NonFinite`], [`Error::ZeroVector`]
    /// (cosine), [`Error::Magnitude`] (L2 and inner product: components so
    /// large or so small that distances would leave f32),
    /// [`Error::PayloadTooLarge`]. Nothing is staged on error.
    pub fn upsert(&mut self, id: u64, vector: &[f32], payload: Option<&[u8]>) -> Result<()> {
        check_payload(payload)?;
        let prepared = prepare_vector(vector, self.db.dim(), self.db.metric(), self.db.kernels)?;
        self.stage_upsert(id, &prepared, payload);
        Ok(())
    }

    /// Stages many rows at once: `vectors` holds `ids.len()` vectors back to
    /// back; `payloads`, if given, one payload per id.
    ///
    /// # Errors
    /// As [`Writer::upsert`], plus [`Error::BatchLength`]. The batch is checked
    /// whole first: on error nothing of it is staged.
    pub fn upsert_batch(
        &mut self,
        ids: &[u64],
        vectors: &[f32],
        payloads: Option<&[&[u8]]>,
    ) -> Result<()> {
        let dim = self.db.dim();
        if vectors.len() != ids.len() * dim {
            if !vectors.len().is_multiple_of(dim) {
                return Err(Error::Dimension {
                    expected: dim,
                    got: vectors.len() % dim,
                });
            }
            return Err(Error::BatchLength {
                ids: ids.len(),
                other: vectors.len() / dim,
                what: "vectors",
            });
        }
        if let Some(p) = payloads {
            if p.len() != ids.len() {
                return Err(Error::BatchLength {
                    ids: ids.len(),
                    other: p.len(),
                    what: "payloads",
                });
            }
            p.iter().try_for_each(|p| check_payload(Some(p)))?;
        }
        let prepared = vectors
            .chunks_exact(dim)
            .enumerate()
            .map(|(i, v)| {
                prepare_vector(v, dim, self.db.metric(), self.db.kernels)
                    .map_err(|e| e.at_offset(i * dim))
            })
            .collect::<Result<Vec<_>>>()?;
        for (i, (&id, v)) in ids.iter().zip(&prepared).enumerate() {
            self.stage_upsert(id, v, payloads.map(|p| p[i]));
        }
        Ok(())
    }

    fn stage_upsert(&mut self, id: u64, prepared: &[f32], payload: Option<&[u8]>) {
        let at = self.arena.len() / self.db.dim();
        self.arena.extend_from_slice(prepared);
        self.staged.insert(
            id,
            Staged::Upsert {
                at,
                payload: payload.map(<[u8]>::to_vec),
            },
        );
    }

    /// Stages the deletion of `id`; returns whether it was there to delete.
    ///
    /// Deleting is idempotent, as in most key-value stores: an id that is
    /// neither committed nor staged (or is already staged for deletion)
    /// stages nothing and returns `false`. An id staged by
    /// [`upsert`](Self::upsert) in this writer and not committed before has
    /// its upsert cancelled.
    ///
    /// # Errors
    /// [`Error::Corrupted`] or [`Error::Io`] if the manifest cannot be read.
    pub fn delete(&mut self, id: u64) -> Result<bool> {
        let committed = self.db.published.load().location(id)?.is_some();
        Ok(self.stage_delete(id, committed))
    }

    /// Stages the deletion of every id in `ids`, as [`delete`](Self::delete)
    /// does one by one; returns how many were there to delete (an id given
    /// twice counts once).
    ///
    /// # Errors
    /// As [`delete`](Self::delete); nothing is staged on error.
    pub fn delete_batch(&mut self, ids: &[u64]) -> Result<usize> {
        let base = self.db.published.load();
        let committed = ids
            .iter()
            .map(|&id| Ok(base.location(id)?.is_some()))
            .collect::<Result<Vec<bool>>>()?;
        Ok(ids
            .iter()
            .zip(committed)
            .filter(|&(&id, committed)| self.stage_delete(id, committed))
            .count())
    }

    /// Stages the deletion of `id`, committed or not; returns whether there
    /// was something to delete.
    fn stage_delete(&mut self, id: u64, committed: bool) -> bool {
        match self.staged.get(&id) {
            Some(Staged::Upsert { .. }) if committed => {
                self.staged.insert(id, Staged::Delete);
            }
            Some(Staged::Upsert { .. }) => {
                self.staged.remove(&id);
            }
            None if committed => {
                self.staged.insert(id, Staged::Delete);
            }
            Some(Staged::Delete) | None => return false,
        }
        true
    }

    /// Number of staged changes.
    pub fn pending(&self) -> usize {
        self.staged.len()
    }

    /// Discards every staged change.
    pub fn rollback(&mut self) {
        self.staged.clear();
        self.arena.clear();
    }

    /// Commits every staged change atomically and durably, then publishes the
    /// new state to readers.
    ///
    /// # Errors
    /// [`Error::Io`] or [`Error::Corrupted`] from the disk. After a failed
    /// commit nothing of it is visible, and this database handle refuses
    /// further commits with [`Error::WriterFailed`]: reopen it. The reopened
    /// database holds the state before the commit, except when the error
    /// came from the manifest's own fsync (or from redb trimming the file
    /// after it): then, as after any failed fsync, the commit may have
    /// reached the disk, and the reopened database holds the state before it
    /// or the state after it, never a mixture.
    pub fn commit(&mut self) -> Result<CommitInfo> {
        self.db.failed.check()?;
        if self.staged.is_empty() {
            return Ok(CommitInfo {
                generation: self.db.published.load().state.generation,
                upserted: 0,
                deleted: 0,
                sealed: None,
                retired_segments: 0,
            });
        }
        let db = self.db.clone();
        let committed = {
            let _commits = db.lock_commits();
            // A merge's switch may have failed while this commit waited.
            db.failed.check()?;
            self.commit_staged()
        };
        match committed {
            Ok(info) => {
                self.rollback();
                db.after_publish();
                Ok(info)
            }
            Err(e) => {
                db.failed.record(&e);
                Err(e)
            }
        }
    }

    /// The commit proper; the caller holds the commit lock.
    fn commit_staged(&mut self) -> Result<CommitInfo> {
        let db = &*self.db;
        let base = db.published.load();
        let dim = db.dim();
        let ids: Vec<u64> = self.staged.keys().copied().collect();
        let upserts: Vec<StagedRow<'_>> = self
            .staged
            .iter()
            .filter_map(|(&id, s)| match s {
                Staged::Upsert { at, payload } => Some(StagedRow {
                    id,
                    vector: &self.arena[at * dim..(at + 1) * dim],
                    payload: payload.as_deref(),
                }),
                Staged::Delete => None,
            })
            .collect();
        let deleted = ids.len() - upserts.len();
        let before = ids
            .iter()
            .map(|&id| base.location(id))
            .collect::<Result<Vec<_>>>()?;
        let plan = plan_commit(db, &base, &ids, &before, &upserts)?;
        let update = plan.update(&upserts);
        let reader = db.commit_manifest(update)?;
        let info = CommitInfo {
            generation: plan.state.generation,
            upserted: upserts.len(),
            deleted,
            sealed: plan
                .sealed
                .as_ref()
                .map(|s| (s.segment.id(), s.segment.rows())),
            retired_segments: plan.retired.len(),
        };
        let state = plan.into_snapshot(&base, reader);
        db.published.publish(Arc::new(state));
        Ok(info)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.db.writer_taken.store(false, Ordering::Release);
    }
}

fn check_payload(payload: Option<&[u8]>) -> Result<()> {
    match payload {
        Some(p) if p.len() > MAX_PAYLOAD => Err(Error::PayloadTooLarge {
            len: p.len(),
            limit: MAX_PAYLOAD,
        }),
        _ => Ok(()),
    }
}

/// A segment a commit wrote, with what the manifest records of it.
struct Sealed {
    segment: Arc<Segment>,
    meta: SegmentMeta,
    /// (id, row) of its live rows.
    live: Vec<(u64, u64)>,
    /// Its rows that are already deleted (a sealed growing segment's dead rows).
    dead: Vec<u64>,
    /// Whether it holds the growing segment's rows (which leave its table).
    from_growing: bool,
    /// Its recall curve, measured before the commit for a segment of the
    /// commit's own rows (a sealed growing segment is left to the merger,
    /// which keeps small commits short).
    calibration: Option<Calibration>,
}

/// What one commit does, decided before its redb transaction.
struct Plan {
    state: State,
    /// Sealed rows that stop being live, by segment (segments that stay).
    tombstones: BTreeMap<u64, Vec<u64>>,
    /// Segments whose every row stops being live.
    retired: Vec<u64>,
    /// Growing rows that stop being live (while they stay in its table).
    growing_removed: Vec<u64>,
    /// Ids deleted.
    deleted: Vec<u64>,
    /// Staged ids that were live before this commit (only those can have a
    /// payload to remove).
    existed: HashSet<u64>,
    /// The segment this commit wrote, if any.
    sealed: Option<Sealed>,
    /// The growing segment after this commit.
    growing: GrowingView,
    /// Growing rows this commit adds: (row, id) of each staged upsert placed
    /// there, in staged order.
    growing_added: Vec<(u64, u64)>,
}

fn plan_commit(
    db: &DbInner,
    base: &SnapshotState,
    ids: &[u64],
    before: &[Option<Location>],
    upserts: &[StagedRow<'_>],
) -> Result<Plan> {
    let mut removed_sealed: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    let mut growing_removed = Vec::new();
    for loc in before.iter().flatten() {
        if loc.segment == GROWING_SEGMENT {
            growing_removed.push(loc.row);
        } else {
            removed_sealed.entry(loc.segment).or_default().push(loc.row);
        }
    }
    let deleted: Vec<u64> = ids
        .iter()
        .zip(before)
        .filter(|(id, loc)| loc.is_some() && upserts.binary_search_by_key(*id, |u| u.id).is_err())
        .map(|(&id, _)| id)
        .collect();
    let existed: HashSet<u64> = ids
        .iter()
        .zip(before)
        .filter(|(_, loc)| loc.is_some())
        .map(|(&id, _)| id)
        .collect();

    let mut retired = Vec::new();
    let mut tombstones = BTreeMap::new();
    for (segment, rows) in removed_sealed {
        let live = base.segment(segment).map_or(0, |s| s.live);
        if rows.len() >= live {
            retired.push(segment);
        } else {
            tombstones.insert(segment, rows);
        }
    }

    let mut state = State {
        generation: base.state.generation + 1,
        ..base.state
    };
    let capacity = db.options.growing_threshold;
    let mut growing = base.growing.clone();
    growing.remove(&growing_removed);
    let mut sealed = None;
    let mut growing_added = Vec::new();
    let scorer = db.scorer();
    let params = db.graph_params();
    if upserts.len() >= capacity {
        // As many rows as a whole growing segment: a segment of their own.
        let rows: Vec<(u64, &[f32])> = upserts.iter().map(|u| (u.id, u.vector)).collect();
        let graph = merge::build_graph(&rows, scorer, &params);
        let mut own = write_sealed(db, &mut state, &rows, &[], &graph, false)?;
        own.calibration = calibrate_new(&own.segment, &[], scorer, &AtomicBool::new(false));
        sealed = Some(own);
    } else {
        if growing.room() < upserts.len() {
            // They would overflow it: seal the growing segment as it is.
            sealed = seal_growing(db, &mut state, &growing)?;
            growing = GrowingView::empty(db.dim());
        }
        let first = state.next_growing_row;
        let new: Vec<NewRow<'_>> = upserts
            .iter()
            .enumerate()
            .map(|(i, u)| (first + i as u64, u.id, u.vector))
            .collect();
        state.next_growing_row += upserts.len() as u64;
        growing_added = new.iter().map(|&(row, id, _)| (row, id)).collect();
        growing.append(&new, capacity, scorer, &params);
        if sealed.is_none() && growing.room() == 0 {
            // Full now: sealed with the rows just added.
            sealed = seal_growing(db, &mut state, &growing)?;
            growing = GrowingView::empty(db.dim());
            growing_added.clear();
        }
    }
    Ok(Plan {
        state,
        tombstones,
        retired,
        growing_removed,
        deleted,
        existed,
        sealed,
        growing,
        growing_added,
    })
}

/// Writes the growing segment's every row, and its graph, as a segment
/// (`None` if no row of it is live).
fn seal_growing(db: &DbInner, state: &mut State, growing: &GrowingView) -> Result<Option<Sealed>> {
    if growing.live == 0 {
        return Ok(None);
    }
    let rows: Vec<(u64, &[f32])> = growing.nodes().map(|(_, id, v, _)| (id, v)).collect();
    let dead: Vec<u64> = (0..rows.len())
        .filter(|&n| growing.is_dead(n))
        .map(|n| n as u64)
        .collect();
    let graph = growing.graph(db.scorer());
    write_sealed(db, state, &rows, &dead, &graph, true).map(Some)
}

/// Writes `rows` and `graph` as a new segment, `dead` of its rows deleted.
fn write_sealed(
    db: &DbInner,
    state: &mut State,
    rows: &[(u64, &[f32])],
    dead: &[u64],
    graph: &crate::graph::Graph,
    from_growing: bool,
) -> Result<Sealed> {
    let (segment, meta) = db.write_segment(rows, graph)?;
    state.next_segment_id = state.next_segment_id.max(segment.id() + 1);
    let mut is_dead = vec![false; rows.len()];
    for &d in dead {
        is_dead[d as usize] = true;
    }
    let live = rows
        .iter()
        .enumerate()
        .filter(|(row, _)| !is_dead[*row])
        .map(|(row, &(user_id, _))| (user_id, row as u64))
        .collect();
    Ok(Sealed {
        segment,
        meta,
        live,
        dead: dead.to_vec(),
        from_growing,
        calibration: None,
    })
}

impl Plan {
    /// The manifest changes of this plan.
    fn update<'a>(&self, upserts: &[StagedRow<'a>]) -> Update<'a> {
        let mut u = Update {
            ids_removed: self.deleted.clone(),
            tombstones_added: self
                .tombstones
                .iter()
                .flat_map(|(&s, rows)| rows.iter().map(move |&r| (s, r)))
                .collect(),
            payloads_removed: self.deleted.clone(),
            segments_removed: self.retired.clone(),
            state: self.state,
            ..Update::default()
        };
        for row in upserts {
            match row.payload {
                Some(p) => u.payloads_set.push((row.id, p)),
                None if self.existed.contains(&row.id) => u.payloads_removed.push(row.id),
                None => {}
            }
        }
        if let Some(s) = &self.sealed {
            let id = s.segment.id();
            u.segments_added.push((id, s.meta));
            u.calibrations_set
                .extend(s.calibration.as_ref().map(|c| (id, c.encode())));
            u.tombstones_added.extend(s.dead.iter().map(|&r| (id, r)));
            u.ids_set.extend(
                s.live
                    .iter()
                    .map(|&(user_id, row)| (user_id, Location { segment: id, row })),
            );
            u.growing_cleared = s.from_growing;
        }
        if !u.growing_cleared {
            u.growing_removed = self.growing_removed.clone();
        }
        let vectors: BTreeMap<u64, &'a [f32]> = upserts.iter().map(|r| (r.id, r.vector)).collect();
        for &(row, id) in &self.growing_added {
            u.growing_added.push((row, id, vectors[&id]));
            let loc = Location {
                segment: GROWING_SEGMENT,
                row,
            };
            u.ids_set.push((id, loc));
        }
        u
    }

    /// The state after this plan's commit, built from the one before it.
    fn into_snapshot(self, base: &SnapshotState, reader: crate::manifest::Reader) -> SnapshotState {
        let mut segments = base.segments_without(|id| self.retired.contains(&id));
        for view in &mut segments {
            if let Some(rows) = self.tombstones.get(&view.segment.id()) {
                view.delete(rows);
            }
        }
        if let Some(s) = self.sealed {
            let at = segments.partition_point(|v| v.segment.id() < s.segment.id());
            let mut view = SealedView::with_deleted(s.segment, &s.dead);
            view.calibration = s.calibration.map(Arc::new);
            segments.insert(at, view);
        }
        base.successor(self.state, segments, self.growing, reader)
    }
}
