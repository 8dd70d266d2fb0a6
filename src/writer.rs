//! The one writer: stages changes in an arena and commits them atomically.
//!
//! A commit runs in one redb write transaction:
//!
//! 1. look up where every staged id lives now;
//! 2. if the growing segment would reach the threshold, seal its live rows and
//!    the staged rows — with the live rows of any segments the tiered merge
//!    policy folds in — into a new segment: its column file and the HNSW links
//!    file built over the same rows (each to a temporary name, synced, renamed),
//!    then sync the directory; otherwise add the staged rows to the growing
//!    segment's table;
//! 3. record ids, tombstones, payloads and the new generation, and commit redb.
//!
//! Step 3's redb commit is the commit point: a crash before it leaves at most
//! an unnamed column file, which the next `open` removes. Only after it does
//! the writer publish a new [`Snapshot`](crate::Snapshot).

use crate::db::DbInner;
use crate::error::{Error, Result};
use crate::manifest::{Location, SegmentMeta, State, Update, GROWING_SEGMENT};
use crate::merge;
use crate::segment::{self, Segment};
use crate::snapshot::{prepare_vector, GrowingChunk, GrowingView, SealedView, SnapshotState};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::Ordering;
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
    /// Segments retired because every row in them was deleted or replaced,
    /// or because they were merged into the sealed segment.
    pub retired_segments: usize,
    /// Segments merged into the sealed segment by the tiered merge policy
    /// (see [`MERGE_FACTOR`](crate::MERGE_FACTOR)).
    pub merged_segments: usize,
}

/// The database's one writer. Get it with [`Database::writer`](crate::Database::writer).
///
/// Changes are staged in memory and become visible, all at once and durably,
/// when [`Writer::commit`] returns. Dropping the writer discards what is
/// staged and not committed.
#[derive(Debug)]
pub struct Writer {
    pub(crate) db: Arc<DbInner>,
    staged: BTreeMap<u64, Staged>,
    /// Staged vectors, `dim` floats each, already normalised for cosine.
    arena: Vec<f32>,
}

impl Writer {
    pub(crate) fn new(db: Arc<DbInner>) -> Writer {
        Writer {
            db,
            staged: BTreeMap::new(),
            arena: Vec::new(),
        }
    }

    /// Stages `vector` (and `payload`) under `id`, replacing what `id` held.
    ///
    /// # Errors
    /// [`Error::Dimension`], [`Error::NonFinite`], [`Error::ZeroVector`]
    /// (cosine), [`Error::PayloadTooLarge`]. Nothing is staged on error.
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
                prepare_vector(v, dim, self.db.metric(), self.db.kernels).map_err(|e| match e {
                    Error::NonFinite { position, value } => Error::NonFinite {
                        position: i * dim + position,
                        value,
                    },
                    other => other,
                })
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

    /// Stages the deletion of `id`.
    ///
    /// # Errors
    /// [`Error::UnknownId`] if `id` is neither committed nor staged (or is
    /// already staged for deletion).
    pub fn delete(&mut self, id: u64) -> Result<()> {
        let committed = self.db.published.load().reader.location(id)?.is_some();
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
            Some(Staged::Delete) | None => return Err(Error::UnknownId { id }),
        }
        Ok(())
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
        if self.db.failed.load(Ordering::Acquire) {
            return Err(Error::WriterFailed);
        }
        let base = self.db.published.load();
        if self.staged.is_empty() {
            return Ok(CommitInfo {
                generation: base.state.generation,
                upserted: 0,
                deleted: 0,
                sealed: None,
                retired_segments: 0,
                merged_segments: 0,
            });
        }
        match self.commit_staged(&base) {
            Ok(info) => {
                self.rollback();
                Ok(info)
            }
            Err(e) => {
                self.db.failed.store(true, Ordering::Release);
                Err(e)
            }
        }
    }

    fn commit_staged(&mut self, base: &SnapshotState) -> Result<CommitInfo> {
        let db = &*self.db;
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
        let mut outcome = None;
        db.manifest.commit(&ids, |before| {
            let plan = plan_commit(db, base, &ids, before, &upserts)?;
            let update = plan.update(&upserts);
            outcome = Some(plan);
            Ok(update)
        })?;
        let plan = outcome
            .ok_or_else(|| Error::corrupted(db.manifest.path(), "commit produced no plan"))?;
        let reader = db.manifest.reader()?;
        let info = CommitInfo {
            generation: plan.state.generation,
            upserted: upserts.len(),
            deleted,
            sealed: plan.sealed.as_ref().map(|(s, _)| (s.id(), s.rows())),
            retired_segments: plan.retired.len(),
            merged_segments: plan.merged,
        };
        let state = plan.into_snapshot(base, &upserts, reader);
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

/// What one commit does, decided inside its redb transaction.
struct Plan {
    state: State,
    /// Sealed rows that stop being live, by segment (segments that stay).
    tombstones: BTreeMap<u64, Vec<u64>>,
    /// Segments whose every row stops being live.
    retired: Vec<u64>,
    /// Growing rows that stop being live.
    growing_removed: Vec<u64>,
    /// Ids deleted.
    deleted: Vec<u64>,
    /// Staged ids that were live before this commit (only those can have a
    /// payload to remove).
    existed: HashSet<u64>,
    /// The segment this commit sealed, with the ids of its rows.
    sealed: Option<(Arc<Segment>, SegmentMeta)>,
    sealed_ids: Vec<u64>,
    /// First growing row of the staged upserts, when they go to the growing segment.
    first_growing_row: u64,
    /// Segments folded into the sealed one (also listed in `retired`).
    merged: usize,
}

fn plan_commit(
    db: &DbInner,
    base: &SnapshotState,
    ids: &[u64],
    before: &[Option<Location>],
    upserts: &[StagedRow<'_>],
) -> Result<Plan> {
    let dim = db.dim();
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
    let growing_after = base.growing.live - growing_removed.len() + upserts.len();
    let mut plan = Plan {
        state,
        tombstones,
        retired,
        growing_removed,
        deleted,
        existed,
        sealed: None,
        sealed_ids: Vec::new(),
        first_growing_row: state.next_growing_row,
        merged: 0,
    };
    if growing_after >= db.options.growing_threshold {
        let gone: HashSet<u64> = plan.growing_removed.iter().copied().collect();
        let new_rows: Vec<(u64, &[f32])> = base
            .growing
            .live_rows(dim)
            .filter(|(row, _, _)| !gone.contains(row))
            .map(|(_, id, v)| (id, v))
            .chain(upserts.iter().map(|u| (u.id, u.vector)))
            .collect();
        // Segments that fill a tier with the new one are folded into it.
        let existing: Vec<(u64, usize)> = base
            .segments
            .iter()
            .filter(|s| !plan.retired.contains(&s.segment.id()))
            .map(|s| {
                let id = s.segment.id();
                (id, s.live - plan.tombstones.get(&id).map_or(0, Vec::len))
            })
            .collect();
        let chosen = if db.options.auto_merge {
            merge::choose(&existing, new_rows.len(), db.options.growing_threshold)
        } else {
            Vec::new()
        };
        let views: Vec<&SealedView> = base
            .segments
            .iter()
            .filter(|s| chosen.contains(&s.segment.id()))
            .collect();
        let dropped: HashSet<(u64, u64)> = chosen
            .iter()
            .flat_map(|&s| {
                let rows = plan.tombstones.remove(&s).unwrap_or_default();
                rows.into_iter().map(move |r| (s, r))
            })
            .collect();
        let mut rows = merge::live_rows(&views, &dropped)?;
        rows.extend(new_rows);
        plan.merged = chosen.len();
        plan.retired.extend(chosen);
        let id = state.next_segment_id;
        state.next_segment_id += 1;
        let meta = segment::write_segment(
            &*db.vfs,
            &db.dir,
            id,
            dim,
            db.scorer(),
            &db.graph_params(),
            &rows,
        )?;
        let seg = Segment::open(db.vfs.clone(), &db.dir, id, &meta, dim, db.metric())?;
        seg.mark_verified();
        plan.sealed_ids = rows.iter().map(|r| r.0).collect();
        plan.sealed = Some((Arc::new(seg), meta));
    } else {
        state.next_growing_row += upserts.len() as u64;
    }
    plan.state = state;
    Ok(plan)
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
        match &self.sealed {
            Some((seg, meta)) => {
                u.growing_cleared = true;
                u.segments_added.push((seg.id(), *meta));
                u.ids_set = self
                    .sealed_ids
                    .iter()
                    .enumerate()
                    .map(|(row, &id)| {
                        let loc = Location {
                            segment: seg.id(),
                            row: row as u64,
                        };
                        (id, loc)
                    })
                    .collect();
            }
            None => {
                u.growing_removed = self.growing_removed.clone();
                for (i, &StagedRow { id, vector, .. }) in upserts.iter().enumerate() {
                    let row = self.first_growing_row + i as u64;
                    u.growing_added.push((row, id, vector));
                    let loc = Location {
                        segment: GROWING_SEGMENT,
                        row,
                    };
                    u.ids_set.push((id, loc));
                }
            }
        }
        u
    }

    /// The snapshot after this plan's commit, built from the one before it.
    fn into_snapshot(
        self,
        base: &SnapshotState,
        upserts: &[StagedRow<'_>],
        reader: crate::manifest::Reader,
    ) -> SnapshotState {
        let mut segments: Vec<SealedView> = Vec::with_capacity(base.segments.len() + 1);
        for view in &base.segments {
            let id = view.segment.id();
            if self.retired.contains(&id) {
                view.segment.retire();
                continue;
            }
            let mut view = view.clone();
            if let Some(rows) = self.tombstones.get(&id) {
                let deleted = Arc::make_mut(&mut view.deleted);
                for &row in rows {
                    if deleted.insert(row as usize) {
                        view.live -= 1;
                    }
                }
            }
            segments.push(view);
        }
        let growing = match self.sealed {
            Some((seg, _)) => {
                segments.push(SealedView::fresh(seg));
                GrowingView::default()
            }
            None => {
                let mut growing = base.growing.clone();
                if !self.growing_removed.is_empty() {
                    let dead = Arc::make_mut(&mut growing.dead);
                    dead.extend(self.growing_removed.iter().copied());
                    growing.live -= self.growing_removed.len();
                }
                if !upserts.is_empty() {
                    let n = upserts.len() as u64;
                    growing.chunks.push(Arc::new(GrowingChunk {
                        rows: (self.first_growing_row..self.first_growing_row + n).collect(),
                        ids: upserts.iter().map(|u| u.id).collect(),
                        vectors: upserts
                            .iter()
                            .flat_map(|u| u.vector.iter().copied())
                            .collect(),
                    }));
                    growing.live += upserts.len();
                }
                growing
            }
        };
        base.successor(self.state, segments, growing, reader)
    }
}
