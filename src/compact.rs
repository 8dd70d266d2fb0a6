//! Compaction: rewrites a database's segments into fewer, cleaner ones.
//!
//! Deleted and replaced rows are dropped, small segments (and the growing
//! segment's rows) are packed together up to a target size, and each new
//! segment gets a fresh HNSW graph, built in parallel. It uses the writer's
//! machinery end to end: [`merge::live_rows`] gathers the rows as an online
//! merge does, [`segment::write_segment`] writes each file through the same
//! durable path as a commit (temporary name, fsync, rename, directory fsync),
//! and one redb transaction switches the manifest from the old segments to
//! the new ones. That transaction is the commit point: a crash before it
//! leaves files no manifest names, which the next open removes; a crash after
//! it leaves old files, removed the same way. So an interrupted compaction
//! leaves the directory exactly as before or exactly as after.
//!
//! Readers are never blocked: snapshots taken before the switch keep reading
//! the old segments, whose files are removed only when the last such snapshot
//! is dropped.

use crate::db::{Database, Stats};
use crate::error::{Error, Result};
use crate::graph::GraphParams;
use crate::growing::GrowingView;
use crate::manifest::{Location, Update};
use crate::merge::{self, MAX_SEGMENT_ROWS};
use crate::options::{check_graph, check_range};
use crate::state::{SealedView, SnapshotState};
use crate::writer::Writer;
use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

/// Default largest segment a compaction writes, in rows.
pub const DEFAULT_TARGET_SEGMENT_ROWS: usize = 1 << 20;

/// How [`compact`] rewrites a database.
///
/// ```
/// use quiver::CompactOptions;
/// let options = CompactOptions::new().target_segment_rows(500_000).dry_run(true);
/// assert_eq!(options.target_segment_rows, 500_000);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactOptions {
    /// Segments are packed up to this many live rows (a single larger
    /// segment is only cleaned, never split). Default 2^20.
    pub target_segment_rows: usize,
    /// HNSW links per node for the new graphs; setting it (or
    /// `ef_construction`) rebuilds every segment. Default: the database's.
    pub m: Option<usize>,
    /// HNSW build candidate list size for the new graphs.
    pub ef_construction: Option<usize>,
    /// Plan only: change nothing.
    pub dry_run: bool,
}

impl Default for CompactOptions {
    fn default() -> Self {
        CompactOptions {
            target_segment_rows: DEFAULT_TARGET_SEGMENT_ROWS,
            m: None,
            ef_construction: None,
            dry_run: false,
        }
    }
}

impl CompactOptions {
    /// The defaults.
    pub fn new() -> Self {
        CompactOptions::default()
    }

    /// Sets [`CompactOptions::target_segment_rows`]: from 1 to
    /// [`MAX_SEGMENT_ROWS`](crate::MAX_SEGMENT_ROWS), checked by
    /// [`Writer::compact`].
    pub fn target_segment_rows(mut self, rows: usize) -> Self {
        self.target_segment_rows = rows;
        self
    }

    /// Sets [`CompactOptions::m`].
    pub fn m(mut self, m: usize) -> Self {
        self.m = Some(m);
        self
    }

    /// Sets [`CompactOptions::ef_construction`].
    pub fn ef_construction(mut self, ef: usize) -> Self {
        self.ef_construction = Some(ef);
        self
    }

    /// Sets [`CompactOptions::dry_run`].
    pub fn dry_run(mut self, on: bool) -> Self {
        self.dry_run = on;
        self
    }
}

/// One segment a compaction writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedSegment {
    /// The sealed segments it replaces.
    pub from: Vec<u64>,
    /// Whether it also takes in the growing segment's rows.
    pub growing: bool,
    /// Live rows it will hold.
    pub rows: usize,
    /// Deleted or replaced rows of `from` that it leaves out.
    pub dropped: usize,
}

/// What a compaction did (or, for a dry run, would do).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactReport {
    /// The segments written, in order.
    pub planned: Vec<PlannedSegment>,
    /// Sealed segments before and after.
    pub segments_before: usize,
    /// Sealed segments after (as planned, for a dry run).
    pub segments_after: usize,
    /// Growing-segment rows before (they are sealed by a compaction).
    pub growing_rows_before: usize,
    /// Deleted or replaced rows dropped.
    pub rows_dropped: usize,
    /// Bytes of the database before.
    pub bytes_before: u64,
    /// Bytes after (equal to `bytes_before` for a dry run).
    pub bytes_after: u64,
    /// The generation the compaction committed (unchanged for a dry run or
    /// when there was nothing to do).
    pub generation: u64,
}

/// Compacts the database in `dir`, holding its lock for the whole run: see
/// the [module docs](self) and [`Writer::compact`]. A
/// [dry run](CompactOptions::dry_run) only plans, on a read-only handle
/// ([`Database::open_read_only`]): it writes nothing and may run while
/// another process has the directory open.
///
/// # Errors
/// As [`Database::open_existing`] ([`Error::WriterBusy`] if another process
/// has it open) and [`Writer::compact`]; a dry run as
/// [`Database::open_read_only`].
pub fn compact(dir: impl AsRef<Path>, options: &CompactOptions) -> Result<CompactReport> {
    compact_with_progress(dir, options, &mut |_, _| {})
}

/// [`compact`], calling `progress(rows written, rows to write)` as it goes.
/// After the segments, it also shrinks the manifest file to its live pages
/// (which [`Writer::compact`], working under open snapshots, cannot).
///
/// # Errors
/// As [`compact`].
pub fn compact_with_progress(
    dir: impl AsRef<Path>,
    options: &CompactOptions,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<CompactReport> {
    if options.dry_run {
        // A plan changes nothing: planned on a read-only handle, which
        // writes nothing and runs beside a writer.
        let snap = Database::open_read_only(dir)?.snapshot();
        check_options(options, snap.db.graph_params())?;
        let stats = Database::stats_of(&snap.db, &snap.state)?;
        return Ok(planned_report(&snap.state, &stats, options));
    }
    let db = Database::open_existing(dir)?;
    let mut writer = db.writer()?;
    let mut report = writer.compact(options, progress)?;
    drop(writer);
    if !options.dry_run && !report.planned.is_empty() {
        let before = db.stats()?.manifest_bytes;
        let after = db.compact_manifest()?;
        if after > 0 {
            report.bytes_after = report.bytes_after + after - before;
        }
    }
    Ok(report)
}

/// [`Error::OutOfRange`] if `options` ask for a segment size or graph
/// parameters out of range, for graphs now built with `built`.
fn check_options(options: &CompactOptions, built: GraphParams) -> Result<()> {
    check_range(
        "target_segment_rows",
        options.target_segment_rows,
        1,
        MAX_SEGMENT_ROWS,
    )?;
    check_graph(
        options.m.unwrap_or(built.m),
        options.ef_construction.unwrap_or(built.ef_construction),
    )
}

/// What compacting `base` (whose stats are `stats`) as `options` say would
/// do: the report of a dry run.
pub(crate) fn planned_report(
    base: &SnapshotState,
    stats: &Stats,
    options: &CompactOptions,
) -> CompactReport {
    let rebuild_all = options.m.is_some() || options.ef_construction.is_some();
    let damaged_graph: HashSet<u64> = base
        .segments
        .iter()
        .filter(|s| !s.segment.graph_sound())
        .map(|s| s.segment.id())
        .collect();
    let segments: Vec<(u64, usize, usize)> = base
        .segments
        .iter()
        .map(|s| (s.segment.id(), s.segment.rows(), s.live))
        .collect();
    let planned = plan(
        &segments,
        base.growing.live,
        options.target_segment_rows,
        |id| rebuild_all || damaged_graph.contains(&id),
    );
    let replaced: HashSet<u64> = planned.iter().flat_map(|p| p.from.clone()).collect();
    CompactReport {
        segments_before: base.segments.len(),
        segments_after: base.segments.len() - replaced.len()
            + planned.iter().filter(|p| p.rows > 0).count(),
        growing_rows_before: base.growing.live,
        rows_dropped: planned.iter().map(|p| p.dropped).sum(),
        bytes_before: stats.bytes_on_disk,
        bytes_after: stats.bytes_on_disk,
        generation: base.state.generation,
        planned,
    }
}

/// Groups the sealed segments (id, rows, live) and the growing rows into the
/// segments to write. Segments are packed in id order (oldest first); a
/// segment that would be copied alone and unchanged is left as it is, unless
/// `rewrite` says so (new graph parameters, a damaged graph). Segments with
/// no live row are dropped without a replacement.
fn plan(
    segments: &[(u64, usize, usize)],
    growing: usize,
    target: usize,
    rewrite: impl Fn(u64) -> bool,
) -> Vec<PlannedSegment> {
    let mut groups: Vec<PlannedSegment> = Vec::new();
    let mut open = PlannedSegment {
        from: Vec::new(),
        growing: false,
        rows: 0,
        dropped: 0,
    };
    let mut push = |open: &mut PlannedSegment| {
        let untouched =
            open.from.len() == 1 && !rewrite(open.from[0]) && !open.growing && open.dropped == 0;
        if !untouched && (!open.from.is_empty() || open.growing) {
            groups.push(open.clone());
        }
        *open = PlannedSegment {
            from: Vec::new(),
            growing: false,
            rows: 0,
            dropped: 0,
        };
    };
    for &(id, rows, live) in segments {
        if open.rows > 0 && open.rows + live > target {
            push(&mut open);
        }
        open.from.push(id);
        open.rows += live;
        open.dropped += rows - live;
    }
    if growing > 0 {
        if open.rows > 0 && open.rows + growing > target {
            push(&mut open);
        }
        open.growing = true;
        open.rows += growing;
    }
    push(&mut open);
    groups
}

impl Writer {
    /// Compacts the database this writer belongs to (see the
    /// [module docs](crate::compact)); `progress(done, total)` is called with
    /// rows written so far as each new segment is written.
    ///
    /// ```
    /// use quiver::{CompactOptions, Database, Metric, Options};
    /// # fn main() -> quiver::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// let db = Database::open(tmp.path(), Options::new(2, Metric::L2).growing_threshold(10))?;
    /// let mut w = db.writer()?;
    /// for i in 0..100u64 {
    ///     w.upsert(i, &[i as f32, 1.0], None)?;
    ///     if i % 10 == 9 { w.commit()?; }
    /// }
    /// for i in (0..100).step_by(3) { w.delete(i)?; }
    /// w.commit()?;
    /// let report = w.compact(&CompactOptions::new(), &mut |_, _| {})?;
    /// assert_eq!((report.segments_after, report.rows_dropped), (1, 34));
    /// assert_eq!(db.search(&[5.2, 1.0], 1)?[0].id, 5);
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// [`Error::InvalidOptions`] if changes are staged (commit or roll them
    /// back first); [`Error::OutOfRange`] for a `target_segment_rows`, `m` or
    /// `ef_construction` out of the ranges of [`Options`](crate::Options)
    /// (`ef_construction` at least the `m` the graphs are built with);
    /// [`Error::Corrupted`] if a segment to copy fails its
    /// checksums (nothing is changed then); [`Error::Io`]. After an I/O error
    /// once it has started writing, the database refuses further commits
    /// until reopened, as after a failed commit, and the directory is as
    /// before the compaction (or, if the manifest's own fsync failed,
    /// possibly as after it: see [`Writer::commit`]).
    pub fn compact(
        &mut self,
        options: &CompactOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<CompactReport> {
        if self.pending() > 0 {
            return Err(Error::InvalidOptions {
                what: "compact with uncommitted changes: commit or roll them back first",
            });
        }
        check_options(options, self.db.graph_params())?;
        let db = self.db.clone();
        // The background merger switches only between compactions.
        let _commits = db.lock_commits();
        db.failed.check()?;
        let base = db.published.load();
        let stats_before = Database::stats_of(&db, &base)?;
        let mut report = planned_report(&base, &stats_before, options);
        if options.dry_run || report.planned.is_empty() {
            return Ok(report);
        }
        match self.compact_planned(&base, &report.planned, options, progress) {
            Ok(state) => {
                report.generation = state.state.generation;
                db.published.publish(Arc::new(state));
                db.after_publish();
                // Committed: nothing after this may make the compaction an
                // error. A manifest whose size cannot be read now counts with
                // its size before.
                let after = db.published.load();
                let files: u64 = after
                    .segments
                    .iter()
                    .map(|s| s.segment.column_len() + s.segment.links_len())
                    .sum();
                let manifest = db
                    .manifest
                    .file_len()
                    .unwrap_or(stats_before.manifest_bytes);
                report.bytes_after = files + manifest;
                Ok(report)
            }
            Err(e) => {
                // A corrupt source is found before anything is written.
                if !matches!(e, Error::Corrupted { .. }) {
                    db.failed.record(&e);
                }
                Err(e)
            }
        }
    }

    /// Writes the planned segments, commits the switch, and returns the
    /// snapshot after it (not yet published).
    fn compact_planned(
        &self,
        base: &SnapshotState,
        planned: &[PlannedSegment],
        options: &CompactOptions,
        progress: &mut dyn FnMut(usize, usize),
    ) -> Result<SnapshotState> {
        let db = &*self.db;
        let dim = db.dim();
        let mut params = db.graph_params();
        params.m = options.m.unwrap_or(params.m);
        params.ef_construction = options.ef_construction.unwrap_or(params.ef_construction);
        // Check every source first, so that damage is reported before any
        // file is written.
        for view in &base.segments {
            if planned.iter().any(|p| p.from.contains(&view.segment.id())) {
                view.segment.verify_rows()?;
            }
        }
        let total: usize = planned.iter().map(|p| p.rows).sum();
        let mut done = 0;
        progress(done, total);
        let mut state = base.state;
        state.generation += 1;
        let mut update = Update::default();
        let mut written = Vec::new();
        for p in planned {
            update.segments_removed.extend(&p.from);
            if p.rows == 0 {
                continue;
            }
            let views: Vec<&SealedView> = base
                .segments
                .iter()
                .filter(|s| p.from.contains(&s.segment.id()))
                .collect();
            let mut rows = merge::live_rows(&views)?;
            if p.growing {
                rows.extend(base.growing.live_rows().map(|(_, id, v)| (id, v)));
                update.growing_cleared = true;
            }
            let graph = merge::build_graph(&rows, db.scorer(), &params);
            let (seg, meta) = db.write_segment(&rows, &graph)?;
            let id = seg.id();
            state.next_segment_id = state.next_segment_id.max(id + 1);
            update
                .ids_set
                .extend(rows.iter().enumerate().map(|(row, &(rid, _))| {
                    let loc = Location {
                        segment: id,
                        row: row as u64,
                    };
                    (rid, loc)
                }));
            update.segments_added.push((id, meta));
            written.push(seg);
            done += rows.len();
            progress(done, total);
        }
        update.state = state;
        let reader = db.commit_manifest(update)?;

        let removed: HashSet<u64> = planned.iter().flat_map(|p| p.from.clone()).collect();
        let mut segments = base.segments_without(|id| removed.contains(&id));
        // New ids are larger than every id handed out before: sorted still.
        segments.extend(written.into_iter().map(SealedView::fresh));
        let growing = if planned.iter().any(|p| p.growing) {
            GrowingView::empty(dim)
        } else {
            base.growing.clone()
        };
        Ok(base.successor(state, segments, growing, reader))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_segments_and_growing_rows_pack_up_to_the_target() {
        let segs = [(1, 100, 90), (2, 100, 100), (3, 50, 50)];
        let p = plan(&segs, 20, 1000, |_| false);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].from, vec![1, 2, 3]);
        assert!(p[0].growing);
        assert_eq!((p[0].rows, p[0].dropped), (260, 10));
    }

    #[test]
    fn a_clean_segment_alone_in_its_group_is_left_as_it_is() {
        let segs = [(1, 1000, 1000), (2, 10, 10), (3, 10, 5)];
        let p = plan(&segs, 0, 1000, |_| false);
        assert_eq!(p.len(), 1, "{p:?}");
        assert_eq!(p[0].from, vec![2, 3]);
        // Forced (new graph parameters): everything is rewritten.
        assert_eq!(plan(&segs, 0, 1000, |_| true).len(), 2);
    }

    #[test]
    fn a_segment_with_deletes_is_cleaned_even_when_alone() {
        let p = plan(&[(1, 100, 60)], 0, 50, |_| false);
        assert_eq!(p.len(), 1);
        assert_eq!((p[0].rows, p[0].dropped), (60, 40));
    }

    #[test]
    fn fully_deleted_segments_are_dropped_without_a_replacement() {
        let p = plan(&[(1, 100, 0)], 0, 1000, |_| false);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].rows, 0);
    }

    #[test]
    fn nothing_to_do_plans_nothing() {
        assert!(plan(&[(1, 100, 100)], 0, 1000, |_| false).is_empty());
        // A segment to rewrite (a damaged graph) is rewritten even alone.
        let p = plan(&[(1, 100, 100), (2, 100, 100)], 0, 100, |id| id == 2);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].from, vec![2]);
        assert!(plan(&[], 0, 1000, |_| false).is_empty());
    }
}
