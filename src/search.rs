//! Searching one state: the graph walk of every segment (sealed and growing)
//! into one top-k, and the exact scan.
//!
//! The work one query needs is done once, not once per segment: the query is
//! checked and normalised once, one [`TopK`] collects every segment's hits,
//! and every graph walk reuses the thread's visited set and heaps.

use crate::error::Result;
use crate::graph;
use crate::options::check_search;
use crate::state::{SealedView, SnapshotState};
use crate::topk::{Hit, TopK};
use crate::vector::prepare_vector;
use rayon::prelude::*;

/// How a search runs: [`Database::search_with`](crate::Database::search_with).
///
/// ```
/// use quiver::SearchParams;
/// let params = SearchParams::new(10).ef(128);
/// assert_eq!((params.k, params.ef, params.exact), (10, Some(128), false));
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SearchParams {
    /// Number of results.
    pub k: usize,
    /// Candidate list size of the graph search (at least `k`), the same on
    /// every segment; larger is slower and more accurate. `None`: each
    /// segment's calibrated `ef` for `target_recall` (or
    /// [`Options::ef_search`](crate::Options::ef_search) if the options set one).
    pub ef: Option<usize>,
    /// The recall@10 each segment's `ef` is chosen for when `ef` is `None`,
    /// as measured on the segment's own rows (see
    /// [`SearchParams::target_recall`]). `None`: the default, which gives
    /// about 0.95–0.975 on new queries.
    pub target_recall: Option<f64>,
    /// Scan every row instead of searching the graphs: exact, and slow on
    /// large data. For verification.
    pub exact: bool,
}

impl SearchParams {
    /// `k` results with the default `ef`, approximate.
    pub fn new(k: usize) -> Self {
        SearchParams {
            k,
            ef: None,
            target_recall: None,
            exact: false,
        }
    }

    /// With candidate list size `ef`.
    pub fn ef(mut self, ef: usize) -> Self {
        self.ef = Some(ef);
        self
    }

    /// Chooses each segment's `ef` as the smallest whose measured recall@10
    /// reaches `recall` (from 0 to 1, checked by [`SearchParams::validate`]):
    /// a trade of speed for accuracy that adapts to the data, where
    /// [`SearchParams::ef`] is one fixed effort. Measured on the segments' own rows, which are easier queries
    /// than new vectors, so new queries see somewhat lower recall.
    ///
    /// ```
    /// use quiver::SearchParams;
    /// let params = SearchParams::new(10).target_recall(0.99);
    /// assert_eq!(params.target_recall, Some(0.99));
    /// ```
    pub fn target_recall(mut self, recall: f64) -> Self {
        self.target_recall = Some(recall);
        self
    }

    /// Exact (brute-force) or approximate.
    pub fn exact(mut self, exact: bool) -> Self {
        self.exact = exact;
        self
    }

    /// Checks the parameters as every search does before it starts: `k`
    /// from 1 to [`MAX_EF`](crate::MAX_EF), `ef` from `k` to `MAX_EF`,
    /// `target_recall` from 0 to 1. Nothing is clamped.
    ///
    /// ```
    /// use quiver::SearchParams;
    /// let e = SearchParams::new(10).ef(5).validate().unwrap_err();
    /// assert_eq!(e.to_string(), "ef is 5: it must be between k (10) and 65536");
    /// ```
    ///
    /// # Errors
    /// [`Error::OutOfRange`](crate::Error::OutOfRange) stating the range.
    pub fn validate(&self) -> Result<()> {
        check_search(self.k, self.ef, self.target_recall)
    }
}

/// Rows scanned by one task of a parallel exact search.
const SCAN_TASK_ROWS: usize = 16_384;
/// Below this many rows an exact search runs on the calling thread only.
const PARALLEL_SCAN_ROWS: usize = 65_536;

/// The search `params` ask for, over `state`.
pub(crate) fn search_with(
    state: &SnapshotState,
    query: &[f32],
    params: &SearchParams,
) -> Result<Vec<Hit>> {
    params.validate()?;
    if params.exact {
        return search_exact(state, query, params.k);
    }
    let q = prepare_vector(query, state.dim, state.metric, state.scorer.kernels)?;
    let plan = state.ef_plan(params.k, params.target_recall);
    let ef =
        |s: Option<&SealedView>, live| params.ef.unwrap_or_else(|| plan.ef(s, live)).max(params.k);
    let mut top = TopK::new(params.k);
    for s in &state.segments {
        search_sealed(state, s, &q, params.k, ef(Some(s), s.live), &mut top)?;
    }
    let growing_ef = ef(None, state.growing.live);
    state
        .growing
        .search(state.scorer, &q, params.k, growing_ef, &mut |d, id| {
            top.push(d, id)
        });
    Ok(top.into_sorted())
}

/// Graph search of one sealed segment; deleted rows are walked through but
/// never returned.
fn search_sealed(
    state: &SnapshotState,
    s: &SealedView,
    q: &[f32],
    k: usize,
    ef: usize,
    top: &mut TopK,
) -> Result<()> {
    if s.live == 0 {
        return Ok(());
    }
    let seg = &s.segment;
    seg.verify()?;
    let graph = seg.graph()?;
    let rows = seg.rows_view();
    let ids = seg.ids();
    let dist = |a: &[f32], b: &[f32]| state.scorer.distance(a, b);
    let skip = |row: u32| s.deleted.contains(row as usize);
    let hits = graph::with_visited(graph.len(), |visited| {
        graph::search(&graph, &rows, &dist, q, k, ef, &skip, visited)
    });
    for (d, row) in hits {
        top.push(d, ids[row as usize]);
    }
    Ok(())
}

/// Exact k-nearest search over every live row.
pub(crate) fn search_exact(state: &SnapshotState, query: &[f32], k: usize) -> Result<Vec<Hit>> {
    check_search(k, None, None)?;
    let q = prepare_vector(query, state.dim, state.metric, state.scorer.kernels)?;
    for s in &state.segments {
        s.segment.verify_rows()?;
    }
    let total = state.len();
    let top = if total < PARALLEL_SCAN_ROWS {
        let mut top = TopK::new(k);
        for s in &state.segments {
            scan_sealed(state, s, 0..s.segment.rows(), &q, &mut top);
        }
        scan_growing(state, &q, &mut top);
        top
    } else {
        let tasks: Vec<(usize, usize)> = state
            .segments
            .iter()
            .enumerate()
            .flat_map(|(i, s)| {
                (0..s.segment.rows())
                    .step_by(SCAN_TASK_ROWS)
                    .map(move |start| (i, start))
            })
            .collect();
        let sealed = tasks
            .par_iter()
            .map(|&(i, start)| {
                let s = &state.segments[i];
                let end = (start + SCAN_TASK_ROWS).min(s.segment.rows());
                let mut top = TopK::new(k);
                scan_sealed(state, s, start..end, &q, &mut top);
                top
            })
            .reduce(|| TopK::new(k), TopK::merge);
        let mut growing = TopK::new(k);
        scan_growing(state, &q, &mut growing);
        sealed.merge(growing)
    };
    Ok(top.into_sorted())
}

fn scan_sealed(
    state: &SnapshotState,
    s: &SealedView,
    rows: std::ops::Range<usize>,
    q: &[f32],
    top: &mut TopK,
) {
    let seg = &s.segment;
    let ids = seg.ids();
    let vectors = seg.vectors();
    let stride = seg.stride_floats();
    for row in rows {
        if s.deleted.contains(row) {
            continue;
        }
        let start = row * stride;
        let d = state.scorer.distance(q, &vectors[start..start + state.dim]);
        top.push(d, ids[row]);
    }
}

fn scan_growing(state: &SnapshotState, q: &[f32], top: &mut TopK) {
    for (_, id, v) in state.growing.live_rows() {
        top.push(state.scorer.distance(q, v), id);
    }
}
