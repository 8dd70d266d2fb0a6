//! Merging sealed segments: the merge policy, and the rows and graph of a
//! merged segment. The background [merger](crate::merger) runs them; an
//! offline compaction reuses the row gathering.
//!
//! # Policy
//! Segments are taken smallest first (by live rows): the smallest is taken,
//! and each next one joins while it holds at most [`MERGE_RATIO`] times the
//! live rows taken so far. If two or more were taken, they are merged. So a
//! segment is merged into once the segments smaller than it add up to a
//! quarter of it: sizes stay geometric, a database of `n` rows holds about
//! log₅(n / growing capacity) + 1 segments, and each merge costs about the
//! size of its smaller side (see below). With no such merge, the segment
//! whose deleted share is largest, if over [`VACUUM_SHARE`], is rewritten
//! alone without its deleted rows. A merge whose result would pass
//! [`MAX_SEGMENT_ROWS`] is never chosen, so no limit can stop the writer.
//!
//! # Merged segments cost the small side
//! The largest input keeps its graph: its rows are copied first, in their
//! order (its deleted rows too, as deleted rows of the new segment), and the
//! other inputs' live rows are inserted into that graph (as Lucene's
//! incremental HNSW merge does), each with its links in its own segment's
//! graph as hints, so that its search can be a third of a full insertion's
//! ([`graph::extend_hinted`]). Only a largest input whose deleted share
//! passes [`VACUUM_SHARE`] is rebuilt from its live rows instead.

use crate::error::Result;
use crate::graph::{self, Graph, GraphParams, Rows};
use crate::options::Scorer;
use crate::state::SealedView;
use std::sync::atomic::AtomicBool;

/// A segment joins a merge while it holds at most this many times the live
/// rows of the smaller segments already in it.
pub const MERGE_RATIO: usize = 4;

/// Share of deleted rows past which a segment is rewritten without them
/// (and past which a merge rebuilds, rather than extends, its graph).
pub const VACUUM_SHARE: f64 = 0.2;

/// Rows a merge may produce: a segment's graph numbers rows with `u32`.
pub const MAX_SEGMENT_ROWS: usize = u32::MAX as usize - 1;

/// The segments to merge next, given every sealed segment's (id, rows, live
/// rows); `None` if the policy finds nothing to do.
pub(crate) fn choose(segments: &[(u64, usize, usize)], max_rows: usize) -> Option<Vec<u64>> {
    let mut by_size: Vec<(u64, usize, usize)> = segments.to_vec();
    by_size.sort_by_key(|&(id, _, live)| (live, id));
    let mut taken: Vec<u64> = Vec::new();
    let mut sum = 0usize;
    for &(id, _, live) in &by_size {
        let fits = sum.saturating_add(live) <= max_rows;
        if !fits || (!taken.is_empty() && live > MERGE_RATIO.saturating_mul(sum)) {
            break;
        }
        taken.push(id);
        sum += live;
    }
    if taken.len() >= 2 {
        return Some(taken);
    }
    segments
        .iter()
        .filter(|&&(_, rows, live)| rows > 0 && dead_share(rows, live) > VACUUM_SHARE)
        .max_by(|a, b| dead_share(a.1, a.2).total_cmp(&dead_share(b.1, b.2)))
        .map(|&(id, _, _)| vec![id])
}

fn dead_share(rows: usize, live: usize) -> f64 {
    (rows - live) as f64 / rows as f64
}

/// Rows given as (id, vector) pairs, as the graph build reads them.
pub(crate) struct SealingRows<'a>(pub(crate) &'a [(u64, &'a [f32])]);

impl Rows for SealingRows<'_> {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn row(&self, i: u32) -> &[f32] {
        self.0[i as usize].1
    }
}

/// A fresh graph over `rows` (in parallel, on the calling rayon pool).
pub(crate) fn build_graph(rows: &[(u64, &[f32])], scorer: Scorer, params: &GraphParams) -> Graph {
    graph::build(
        &SealingRows(rows),
        &|a: &[f32], b: &[f32]| scorer.distance(a, b),
        params,
    )
}

/// The rows of `view` as (row, id, vector), in row order: every row, or
/// only the live ones.
fn rows_of<'a>(
    view: &'a SealedView,
    with_deleted: bool,
) -> impl Iterator<Item = (u64, u64, &'a [f32])> + 'a {
    let seg = &view.segment;
    seg.ids()
        .iter()
        .enumerate()
        .filter(move |(row, _)| with_deleted || !view.deleted.contains(*row))
        .map(move |(row, &id)| (row as u64, id, seg.row(row)))
}

/// The live rows of `views`, in segment then row order, as (id, vector).
/// Checks each segment's checksums first, so that no damaged data is copied.
pub(crate) fn live_rows<'a>(views: &[&'a SealedView]) -> Result<Vec<(u64, &'a [f32])>> {
    let mut rows = Vec::new();
    for view in views {
        view.segment.verify_rows()?;
        rows.extend(rows_of(view, false).map(|(_, id, v)| (id, v)));
    }
    Ok(rows)
}

/// The content of a merged segment, before it is written.
pub(crate) struct Merged<'a> {
    /// (id, vector) of every row, in the new segment's order.
    pub(crate) rows: Vec<(u64, &'a [f32])>,
    /// Where each row comes from: (segment, row).
    pub(crate) sources: Vec<(u64, u64)>,
    /// The input whose graph was kept, and its row count: its rows are the
    /// first rows, every one at its own row number.
    pub(crate) kept: Option<(u64, usize)>,
    pub(crate) graph: Graph,
}

/// Gathers the rows of merging `views` and their graph: the largest input's
/// graph extended with the other inputs' live rows, or (if its deleted share
/// passes [`VACUUM_SHARE`], or it is alone) a new graph over the live rows.
/// `None` if `cancel` was raised.
///
/// # Errors
/// [`Error::Corrupted`](crate::Error::Corrupted) if an input fails its
/// checksums.
pub(crate) fn merge_rows<'a>(
    views: &[&'a SealedView],
    scorer: Scorer,
    params: &GraphParams,
    cancel: &AtomicBool,
) -> Result<Option<Merged<'a>>> {
    for v in views {
        v.segment.verify_rows()?;
    }
    let largest = views
        .iter()
        .enumerate()
        .max_by_key(|(_, v)| (v.segment.rows(), std::cmp::Reverse(v.segment.id())))
        .map(|(i, _)| i);
    let reuse = largest.filter(|&i| {
        views.len() > 1 && views[i].dead_share() <= VACUUM_SHARE && views[i].segment.graph_sound()
    });
    // The reused graph's rows first, every one in its order; then the
    // others' live rows.
    let order = reuse
        .into_iter()
        .chain((0..views.len()).filter(|&i| Some(i) != reuse));
    let mut rows = Vec::new();
    let mut sources = Vec::new();
    // Each other input's level-0 lists, renumbered into `rows`, as hints
    // for the inserts (an input whose graph is damaged gives none).
    let mut hints: Vec<Vec<u32>> = Vec::new();
    let mut reused = 0;
    for i in order {
        let view = views[i];
        let first = rows.len();
        for (row, id, vector) in rows_of(view, Some(i) == reuse) {
            rows.push((id, vector));
            sources.push((view.segment.id(), row));
        }
        if Some(i) == reuse {
            reused = rows.len();
        } else if reuse.is_some() {
            hints.resize(first - reused, Vec::new());
            hints.extend(renumbered_links(view, first as u32));
        }
    }
    let dist = |a: &[f32], b: &[f32]| scorer.distance(a, b);
    let graph = match reuse {
        Some(i) => {
            let view = views[i].segment.graph()?;
            let rows = SealingRows(&rows);
            graph::extend_hinted(&view, &rows, &dist, params, hints, Some(cancel))
        }
        None => {
            let g = build_graph(&rows, scorer, params);
            (!cancel.load(std::sync::atomic::Ordering::Acquire)).then_some(g)
        }
    };
    let kept = reuse.map(|i| (views[i].segment.id(), reused));
    Ok(graph.map(|graph| Merged {
        rows,
        sources,
        kept,
        graph,
    }))
}

/// The level-0 lists of `view`'s live rows (in order), to live rows only,
/// numbered from `first` in that order; none if its graph is damaged.
fn renumbered_links(view: &SealedView, first: u32) -> Vec<Vec<u32>> {
    let Ok(graph) = view.segment.graph() else {
        return Vec::new();
    };
    let rows = view.segment.rows();
    let mut number = vec![u32::MAX; rows];
    let mut next = first;
    for (row, n) in number.iter_mut().enumerate() {
        if !view.deleted.contains(row) {
            *n = next;
            next += 1;
        }
    }
    (0..rows)
        .filter(|&row| !view.deleted.contains(row))
        .map(|row| {
            graph
                .level0_neighbours(row as u32)
                .iter()
                .filter_map(|&x| number.get(x as usize).copied())
                .filter(|&x| x != u32::MAX)
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(c: Option<Vec<u64>>) -> Vec<u64> {
        let mut c = c.unwrap_or_default();
        c.sort_unstable();
        c
    }

    #[test]
    fn two_equal_segments_are_merged() {
        assert_eq!(ids(choose(&[(1, 10, 10), (2, 10, 10)], 1000)), [1, 2]);
    }

    #[test]
    fn one_segment_alone_is_left_alone() {
        assert_eq!(choose(&[(1, 10, 10)], 1000), None);
    }

    #[test]
    fn a_big_segment_waits_until_the_small_ones_add_up_to_a_quarter_of_it() {
        assert_eq!(choose(&[(1, 50, 50), (2, 10, 10)], 1000), None);
        assert_eq!(ids(choose(&[(1, 40, 40), (2, 10, 10)], 1000)), [1, 2]);
        assert_eq!(
            ids(choose(&[(1, 50, 50), (2, 10, 10), (3, 10, 10)], 1000)),
            [1, 2, 3]
        );
        // The small ones merge among themselves first when the big one is far.
        assert_eq!(
            ids(choose(&[(1, 1000, 1000), (2, 10, 10), (3, 10, 10)], 10_000)),
            [2, 3]
        );
    }

    #[test]
    fn a_merge_past_the_row_limit_is_not_chosen() {
        assert_eq!(choose(&[(1, 60, 60), (2, 60, 60)], 100), None);
    }

    #[test]
    fn a_segment_mostly_deleted_is_vacuumed_alone() {
        assert_eq!(
            choose(&[(1, 100, 70), (2, 10_000, 10_000)], 1 << 20),
            Some(vec![1])
        );
        assert_eq!(choose(&[(1, 100, 90), (2, 10_000, 10_000)], 1 << 20), None);
    }
}
