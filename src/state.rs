//! The state of one committed generation: what a snapshot reads. Immutable
//! once published; a commit or a merge builds the next one from it.

use crate::bitset::Bitset;
use crate::calibrate::{depth_for_share, Calibration, DEFAULT_TARGET_RECALL};
use crate::error::{Error, Result};
use crate::growing::GrowingView;
use crate::manifest::{Location, Reader, State, GROWING_SEGMENT};
use crate::options::{Metric, Scorer, DEFAULT_EF_SEARCH};
use crate::segment::Segment;
use std::sync::Arc;

/// A sealed segment as one snapshot sees it.
#[derive(Debug, Clone)]
pub(crate) struct SealedView {
    pub(crate) segment: Arc<Segment>,
    pub(crate) deleted: Arc<Bitset>,
    pub(crate) live: usize,
    /// The segment's measured recall per `ef`, once the merger measured it.
    pub(crate) calibration: Option<Arc<Calibration>>,
}

impl SealedView {
    /// A segment just written: every row live.
    pub(crate) fn fresh(segment: Arc<Segment>) -> SealedView {
        let rows = segment.rows();
        SealedView {
            deleted: Arc::new(Bitset::new(rows)),
            live: rows,
            segment,
            calibration: None,
        }
    }

    /// A segment just written with `dead` rows already deleted.
    pub(crate) fn with_deleted(segment: Arc<Segment>, dead: &[u64]) -> SealedView {
        let mut view = SealedView::fresh(segment);
        view.delete(dead);
        view
    }

    /// Marks `rows` deleted (copy on write).
    pub(crate) fn delete(&mut self, rows: &[u64]) {
        if rows.is_empty() {
            return;
        }
        let deleted = Arc::make_mut(&mut self.deleted);
        for &row in rows {
            if deleted.insert(row as usize) {
                self.live -= 1;
            }
        }
    }

    /// Share of the rows that are deleted or replaced.
    pub(crate) fn dead_share(&self) -> f64 {
        let rows = self.segment.rows();
        if rows == 0 {
            return 0.0;
        }
        (rows - self.live) as f64 / rows as f64
    }
}

/// The state of one committed generation.
#[derive(Debug)]
pub(crate) struct SnapshotState {
    /// The manifest counters as of this commit.
    pub(crate) state: State,
    pub(crate) dim: usize,
    pub(crate) metric: Metric,
    /// Live sealed segments, sorted by id.
    pub(crate) segments: Vec<SealedView>,
    pub(crate) growing: GrowingView,
    /// A redb read transaction on this commit, for point lookups.
    pub(crate) reader: Reader,
    pub(crate) scorer: Scorer,
    /// The `ef` of a search that names none, if the options set one;
    /// otherwise each segment's calibrated `ef` is used.
    pub(crate) ef_search: Option<usize>,
}

impl SnapshotState {
    /// Live rows.
    pub(crate) fn len(&self) -> usize {
        self.segments.iter().map(|s| s.live).sum::<usize>() + self.growing.live
    }

    /// The state a commit makes from this one: what changed, and this
    /// state's dimension, metric, kernels and default `ef`.
    pub(crate) fn successor(
        &self,
        state: State,
        segments: Vec<SealedView>,
        growing: GrowingView,
        reader: Reader,
    ) -> SnapshotState {
        SnapshotState {
            state,
            dim: self.dim,
            metric: self.metric,
            segments,
            growing,
            reader,
            scorer: self.scorer,
            ef_search: self.ef_search,
        }
    }

    /// How a `k`-nearest search aiming at `target` recall chooses each
    /// segment's `ef`: worked out once per query, from one pass over the
    /// segments.
    pub(crate) fn ef_plan(&self, k: usize, target: Option<f64>) -> EfPlan<'_> {
        EfPlan {
            k,
            target,
            ef_search: self.ef_search,
            // The growing segment, and a segment not calibrated yet, go by
            // the largest calibrated segment: the same data, most likely.
            fallback: self
                .segments
                .iter()
                .filter(|s| s.calibration.is_some())
                .max_by_key(|s| s.live)
                .and_then(|s| s.calibration.as_deref()),
            total: self.len().max(1),
        }
    }

    /// This state's segments but those `removed` names, which are retired:
    /// their files go once no state holds them.
    pub(crate) fn segments_without(&self, removed: impl Fn(u64) -> bool) -> Vec<SealedView> {
        let mut kept = Vec::with_capacity(self.segments.len() + 1);
        for view in &self.segments {
            if removed(view.segment.id()) {
                view.segment.retire();
            } else {
                kept.push(view.clone());
            }
        }
        kept
    }

    /// Where `id` lives in this state, or `None`: the manifest's `ids`
    /// entry, checked against the files. A point lookup in redb cannot see
    /// an entry whose key was damaged (it is simply not found), nor one read
    /// from a stale page (an older, intact entry): so a location must name a
    /// live row whose own id is `id`, and an id the manifest does not know
    /// must be held live by no segment. Either failing is damage.
    ///
    /// # Errors
    /// [`Error::Corrupted`] naming the manifest when it and the files
    /// disagree (or a segment file if its checksums fail); [`Error::Io`].
    pub(crate) fn location(&self, id: u64) -> Result<Option<Location>> {
        let found = self.reader.location(id)?;
        let what = match found {
            Some(loc) if self.holds_live(id, loc)? => return Ok(found),
            Some(Location { segment, row }) => format!(
                "id {id} points at segment {segment} row {row}, which this state does not hold live under that id"
            ),
            None => match self.live_row_of(id)? {
                None => return Ok(None),
                Some(Location { segment, row }) => format!(
                    "the ids table has no entry for id {id}, which segment {segment} holds live at row {row}"
                ),
            },
        };
        Err(Error::corrupted(
            self.reader.path(),
            format!("{what}: run `quiver verify` and restore the database from a backup"),
        ))
    }

    /// Whether `loc` is a live row of this state whose id is `id`.
    fn holds_live(&self, id: u64, loc: Location) -> Result<bool> {
        if loc.segment == GROWING_SEGMENT {
            return Ok(self.growing.live_id(loc.row) == Some(id));
        }
        let Some(view) = self.segment(loc.segment) else {
            return Ok(false);
        };
        let Some(row) = usize::try_from(loc.row)
            .ok()
            .filter(|&r| r < view.segment.rows() && !view.deleted.contains(r))
        else {
            return Ok(false);
        };
        view.segment.verify_rows()?;
        Ok(view.segment.ids()[row] == id)
    }

    /// A live row holding `id`, found in the files rather than the manifest.
    fn live_row_of(&self, id: u64) -> Result<Option<Location>> {
        for view in &self.segments {
            view.segment.verify_rows()?;
            if let Some(row) = view
                .segment
                .rows_of(id)
                .find(|&r| !view.deleted.contains(r))
            {
                return Ok(Some(Location {
                    segment: view.segment.id(),
                    row: row as u64,
                }));
            }
        }
        Ok(self.growing.live_row_of(id).map(|row| Location {
            segment: GROWING_SEGMENT,
            row,
        }))
    }

    /// The live sealed segment `id`.
    pub(crate) fn segment(&self, id: u64) -> Option<&SealedView> {
        self.segments
            .binary_search_by_key(&id, |s| s.segment.id())
            .ok()
            .map(|i| &self.segments[i])
    }
}

/// The per-query rule for each segment's `ef` ([`SnapshotState::ef_plan`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct EfPlan<'a> {
    k: usize,
    target: Option<f64>,
    ef_search: Option<usize>,
    fallback: Option<&'a Calibration>,
    total: usize,
}

impl EfPlan<'_> {
    /// The `ef` of segment `s` (`None`: the growing segment, of `live`
    /// rows): from its calibration at the depth its share of the rows
    /// needs (the fallback curve for the growing segment and a segment not
    /// calibrated yet), or [`DEFAULT_EF_SEARCH`] before any segment is.
    pub(crate) fn ef(&self, s: Option<&SealedView>, live: usize) -> usize {
        let calibration = s.and_then(|s| s.calibration.as_deref()).or(self.fallback);
        let share = live as f64 / self.total as f64;
        match (self.ef_search, calibration, self.target) {
            (Some(ef), _, None) => ef,
            (_, Some(c), target) => c.ef_for(
                target.unwrap_or(DEFAULT_TARGET_RECALL),
                depth_for_share(self.k, share),
            ),
            (_, None, _) => self.ef_search.unwrap_or(DEFAULT_EF_SEARCH),
        }
    }
}
