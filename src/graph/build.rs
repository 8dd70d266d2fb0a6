//! Building an HNSW graph (Malkov & Yashunin, 2016/2018) in one go
//! ([`build`]) or by adding rows to a persisted one ([`extend`], as Lucene's
//! `IncrementalHnswGraphMerger` does), both by inserting into a
//! [`LinkStore`]; and the repair pass every built graph gets, which leaves
//! every node reachable from the entry point and able to lead back to it.
//!
//! Levels are drawn up front from a seeded generator (`⌊−ln U · 1/ln m⌋`), so
//! they depend only on the seed and the row count. The first row is inserted
//! alone and becomes the entry point; the rest are inserted in parallel with
//! rayon. On a single rayon thread rows are inserted in order and the build
//! is deterministic; in parallel the links depend on thread timing.

use super::layout::GraphView;
use super::search::Rows;
use super::store::{Hints, LinkStore};
use std::sync::atomic::AtomicBool;

/// How a graph is built.
#[derive(Debug, Clone, Copy)]
pub struct GraphParams {
    /// Links per node on the upper levels; level 0 keeps up to `2·m`.
    /// Clamped to `2..=1024`. Default 16.
    pub m: usize,
    /// Frontier size while searching for a new node's neighbours (raised to
    /// at least `m`). Larger builds slower and searches better. Default 200.
    pub ef_construction: usize,
    /// Seed of the level generator.
    pub seed: u64,
}

impl Default for GraphParams {
    fn default() -> Self {
        GraphParams {
            m: 16,
            ef_construction: 200,
            seed: 0x5155_4956_4552_4e53,
        }
    }
}

/// An HNSW graph built in memory. Persist it with [`Graph::encode`] and search
/// it through a [`GraphView`](super::GraphView).
#[derive(Debug, Clone)]
pub struct Graph {
    /// Links per node above level 0 (level 0 holds up to `2m`).
    pub(super) m: usize,
    /// `links[row][level]`: one list per level the row is on.
    pub(super) links: Vec<Vec<Vec<u32>>>,
    pub(super) entry: Option<u32>,
    pub(super) max_level: u8,
}

impl Graph {
    /// The level-0 neighbours of `node`.
    ///
    /// # Panics
    ///
    /// Panics if `node` is not below [`Graph::len`].
    pub fn level0(&self, node: u32) -> &[u32] {
        &self.links[node as usize][0]
    }

    /// The node searches start from; `None` for an empty graph.
    pub fn entry_point(&self) -> Option<u32> {
        self.entry
    }

    /// The entry point's level, the highest in the graph.
    pub fn max_level(&self) -> u8 {
        self.max_level
    }

    /// Number of nodes (rows).
    pub fn len(&self) -> usize {
        self.links.len()
    }

    /// Whether the graph has no nodes.
    pub fn is_empty(&self) -> bool {
        self.links.is_empty()
    }

    /// The `m` the graph was built with (after clamping).
    pub fn m(&self) -> usize {
        self.m
    }
}

/// Builds an HNSW graph over every row of `rows`, `dist` giving the distance
/// (smaller is nearer) between two rows.
///
/// Uses the rayon thread pool it is called in.
///
/// # Panics
///
/// Panics if `rows` has `u32::MAX` rows or more, or if `dist` panics.
pub fn build<R: Rows, D: Fn(&[f32], &[f32]) -> f32 + Sync>(
    rows: &R,
    dist: &D,
    params: &GraphParams,
) -> Graph {
    let n = rows.len();
    assert!(
        n < u32::MAX as usize,
        "a graph holds fewer than 2^32 - 1 rows"
    );
    let store = LinkStore::new(n, params);
    store.insert_all(0..n as u32, rows, dist, params.ef_construction, None);
    store.to_graph(n, rows, dist)
}

/// Builds the graph over every row of `rows` by inserting, into a copy of
/// `view`, only the rows past the view's: `rows` holds the view's
/// `view.len()` rows first, then the new ones. Costs about what inserting the
/// new rows costs, not a rebuild. The graph keeps the view's `m`; the new
/// rows' levels are drawn from `params.seed` as a full build's would be.
///
/// Returns `None` if it stopped early because `cancel` became true.
///
/// # Panics
///
/// Panics if `rows` has fewer rows than the view has nodes, or `u32::MAX`
/// rows or more, or if `dist` panics.
pub fn extend<R: Rows, D: Fn(&[f32], &[f32]) -> f32 + Sync>(
    view: &GraphView<'_>,
    rows: &R,
    dist: &D,
    params: &GraphParams,
    cancel: Option<&AtomicBool>,
) -> Option<Graph> {
    extend_hinted(view, rows, dist, params, Vec::new(), cancel)
}

/// A hinted insert searches with `ef_construction` divided by this. On
/// debian50k (five 10k-row segments merged into one) a third took 6.6–7.5 s
/// against 14 s at the full `ef_construction`, with recall@10 at `ef` 24
/// 0.947 against 0.953; without the hints it fell to 0.935.
const HINTED_EF_DIVISOR: usize = 3;

/// [`extend`], where `hints[i]` are the level-0 neighbours new row `i` had
/// in a graph of its own (as row numbers of `rows`; rows past `hints` have
/// none). Each hinted row's search then runs with a third of
/// `ef_construction`, and its hints join the candidates it found: about
/// half the cost of an insertion.
pub fn extend_hinted<R: Rows, D: Fn(&[f32], &[f32]) -> f32 + Sync>(
    view: &GraphView<'_>,
    rows: &R,
    dist: &D,
    params: &GraphParams,
    hints: Vec<Vec<u32>>,
    cancel: Option<&AtomicBool>,
) -> Option<Graph> {
    let (old, n) = (view.len(), rows.len());
    assert!(
        old <= n && n < u32::MAX as usize,
        "{n} rows for a graph of {old} nodes"
    );
    let store = LinkStore::from_view(view, n - old, params);
    let first = old as u32;
    let hinted = first + hints.len() as u32;
    let ef = params.ef_construction / HINTED_EF_DIVISOR;
    let hints = Hints {
        first,
        lists: hints,
    };
    let done = store.insert_hinted(first..hinted, rows, dist, ef, Some(&hints), cancel)
        && store.insert_all(hinted..n as u32, rows, dist, params.ef_construction, cancel);
    done.then(|| store.to_graph(n, rows, dist))
}

impl Graph {
    /// The level-0 nodes reachable from the entry point.
    pub(super) fn reachable(&self) -> Vec<bool> {
        let mut seen = vec![false; self.links.len()];
        if let Some(entry) = self.entry {
            self.mark_reachable(entry, &mut seen);
        }
        seen
    }

    /// Marks `from` and every node reachable from it at level 0.
    fn mark_reachable(&self, from: u32, seen: &mut [bool]) {
        let mut stack = vec![from];
        seen[from as usize] = true;
        while let Some(n) = stack.pop() {
            for &x in &self.links[n as usize][0] {
                if !std::mem::replace(&mut seen[x as usize], true) {
                    stack.push(x);
                }
            }
        }
    }

    /// How many level-0 lists name each node.
    fn in_degrees(&self) -> Vec<u32> {
        let mut in_degree = vec![0u32; self.links.len()];
        for lists in &self.links {
            for &x in &lists[0] {
                in_degree[x as usize] += 1;
            }
        }
        in_degree
    }

    /// Adds `to` to `from`'s level-0 list. A full list gives up its link
    /// farthest from `from` among those to nodes with other in-links (so no
    /// node loses its only one); returns `false`, changing nothing, if there
    /// is none.
    fn add_link<R: Rows, D: Fn(&[f32], &[f32]) -> f32>(
        &mut self,
        from: u32,
        to: u32,
        in_degree: &mut [u32],
        rows: &R,
        dist: &D,
    ) -> bool {
        let cap = 2 * self.m;
        let near = |x: u32| dist(rows.row(from), rows.row(x));
        let list = &mut self.links[from as usize][0];
        if list.len() >= cap {
            let victim = (0..list.len())
                .filter(|&i| in_degree[list[i] as usize] > 1)
                .max_by(|&a, &b| near(list[a]).total_cmp(&near(list[b])));
            let Some(i) = victim else { return false };
            in_degree[list[i] as usize] -= 1;
            list[i] = to;
        } else {
            list.push(to);
        }
        in_degree[to as usize] += 1;
        true
    }

    /// The level-0 nodes from which the entry point can be reached, found by
    /// walking the links backwards from it.
    fn reaching_entry(&self) -> Vec<bool> {
        let n = self.links.len();
        let mut offsets = vec![0usize; n + 1];
        for lists in &self.links {
            for &x in &lists[0] {
                offsets[x as usize + 1] += 1;
            }
        }
        for i in 0..n {
            offsets[i + 1] += offsets[i];
        }
        let mut fill = offsets.clone();
        let mut sources = vec![0u32; offsets[n]];
        for (from, lists) in self.links.iter().enumerate() {
            for &x in &lists[0] {
                sources[fill[x as usize]] = from as u32;
                fill[x as usize] += 1;
            }
        }
        let mut seen = vec![false; n];
        let Some(entry) = self.entry else {
            return seen;
        };
        let mut stack = vec![entry];
        seen[entry as usize] = true;
        while let Some(x) = stack.pop() {
            for &from in &sources[offsets[x as usize]..offsets[x as usize + 1]] {
                if !std::mem::replace(&mut seen[from as usize], true) {
                    stack.push(from);
                }
            }
        }
        seen
    }

    /// A search's level-0 walk starts where the descent through the upper
    /// levels ends, not at the entry point, so every node must also lead
    /// back to the entry point (on mostly one-dimensional data the parallel
    /// build can leave a chain whose links all point one way). Gives each
    /// node that cannot reach it a link to the nearest node that can,
    /// replacing its farthest link to a node with other in-links if its list
    /// is full; returns whether anything changed.
    fn connect_to_entry<R: Rows, D: Fn(&[f32], &[f32]) -> f32>(
        &mut self,
        rows: &R,
        dist: &D,
    ) -> bool {
        let mut reach = self.reaching_entry();
        if reach.iter().all(|&r| r) {
            return false;
        }
        let mut in_degree = self.in_degrees();
        for u in 0..self.links.len() as u32 {
            if reach[u as usize] {
                continue;
            }
            let near = |v: &u32| dist(rows.row(u), rows.row(*v));
            let Some(v) = (0..self.links.len() as u32)
                .filter(|&v| reach[v as usize])
                .min_by(|a, b| near(a).total_cmp(&near(b)))
            else {
                break;
            };
            if !self.add_link(u, v, &mut in_degree, rows, dist) {
                continue;
            }
            // u reaches the entry point now, and so does every node that
            // reaches u; the next pass of the caller's loop recomputes anyway.
            reach[u as usize] = true;
            let mut changed = true;
            while changed {
                changed = false;
                for x in 0..self.links.len() {
                    if !reach[x] && self.links[x][0].iter().any(|&y| reach[y as usize]) {
                        reach[x] = true;
                        changed = true;
                    }
                }
            }
        }
        true
    }

    /// Pruning reverse links can leave a node that no level-0 list names, so
    /// no search can find it. Gives each such node an in-link from a nearby
    /// reachable node: one of its own neighbours with a free slot, else the
    /// nearest one, whose farthest link to a node that has other in-links
    /// gives way. Repeats, a bounded number of times, while nodes are stranded.
    pub(super) fn connect_unreachable<R: Rows, D: Fn(&[f32], &[f32]) -> f32>(
        &mut self,
        rows: &R,
        dist: &D,
    ) {
        let cap = 2 * self.m;
        for _ in 0..8 {
            let mut seen = self.reachable();
            if seen.iter().all(|&s| s) {
                if self.connect_to_entry(rows, dist) {
                    continue;
                }
                return;
            }
            let mut in_degree = self.in_degrees();
            for u in 0..self.links.len() as u32 {
                if seen[u as usize] {
                    continue;
                }
                let near = |v: &u32| dist(rows.row(u), rows.row(*v));
                let mut candidates: Vec<u32> = self.links[u as usize][0]
                    .iter()
                    .copied()
                    .filter(|&v| seen[v as usize])
                    .collect();
                if candidates.is_empty() {
                    // None of its own neighbours is reachable: the nearest
                    // reachable node with a free slot, found by a scan.
                    candidates.extend(
                        (0..self.links.len() as u32)
                            .filter(|&v| seen[v as usize] && self.links[v as usize][0].len() < cap)
                            .min_by(|a, b| near(a).total_cmp(&near(b))),
                    );
                }
                candidates.sort_by(|a, b| near(a).total_cmp(&near(b)));
                let Some(&v) = candidates
                    .iter()
                    .find(|&&v| self.links[v as usize][0].len() < cap)
                    .or(candidates.first())
                else {
                    continue;
                };
                if self.links[v as usize][0].contains(&u)
                    || !self.add_link(v, u, &mut in_degree, rows, dist)
                {
                    continue;
                }
                // Everything u leads to is reachable now too, so no later
                // node gets a link it already has.
                self.mark_reachable(u, &mut seen);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::search::test_support::{normalise, recall, Aligned, Packed};
    use crate::synth::{clustered, clustered_queries};
    use std::sync::atomic::Ordering;

    fn l2(a: &[f32], b: &[f32]) -> f32 {
        crate::kernels::select().l2_squared(a, b)
    }

    fn rows(n: usize) -> Packed {
        Packed {
            data: clustered(n, 16, 8, 0.3, 21),
            dim: 16,
        }
    }

    #[test]
    fn single_threaded_build_is_deterministic() {
        let rows = rows(2000);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let params = GraphParams::default();
        let a = pool.install(|| build(&rows, &l2, &params)).encode();
        let b = pool.install(|| build(&rows, &l2, &params)).encode();
        assert_eq!(a, b);
    }

    #[test]
    fn lists_respect_capacity_and_link_only_nodes_on_their_level() {
        let rows = rows(3000);
        let params = GraphParams {
            m: 6,
            ..GraphParams::default()
        };
        let g = build(&rows, &l2, &params);
        let top = g.links[g.entry.unwrap() as usize].len() - 1;
        assert_eq!(top, usize::from(g.max_level()));
        for (r, lists) in g.links.iter().enumerate() {
            assert!(lists.len() <= top + 1);
            for (level, list) in lists.iter().enumerate() {
                let cap = if level == 0 { 12 } else { 6 };
                assert!(list.len() <= cap, "node {r} level {level}: {}", list.len());
                for &n in list {
                    assert_ne!(n as usize, r, "self link");
                    assert!(
                        g.links[n as usize].len() > level,
                        "link to a node not on level {level}"
                    );
                }
                let mut sorted = list.clone();
                sorted.sort_unstable();
                sorted.dedup();
                assert_eq!(sorted.len(), list.len(), "duplicate links at node {r}");
            }
        }
    }

    #[test]
    fn every_node_is_reachable_from_the_entry_point_at_level_0() {
        // Parallel builds included: the repair pass runs after every build.
        for seed in 0..4 {
            let rows = rows(5000);
            let params = GraphParams {
                seed,
                m: 4,
                ..GraphParams::default()
            };
            let g = build(&rows, &l2, &params);
            assert!(g.reachable().iter().all(|&s| s), "seed {seed}");
        }
    }

    #[test]
    fn m_is_clamped_to_at_least_two() {
        let rows = rows(50);
        let g = build(
            &rows,
            &l2,
            &GraphParams {
                m: 0,
                ..GraphParams::default()
            },
        );
        assert_eq!(g.m(), 2);
        assert!(g.links.iter().all(|l| l[0].len() <= 4));
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        1.0 - crate::kernels::select().dot(a, b)
    }

    /// 10k rows of 32 dimensions in 10 wide clusters, and 100 queries around
    /// the same centres; unit length if `unit`.
    fn merge_data(unit: bool) -> (Packed, Vec<f32>) {
        let mut data = clustered(10_000, 32, 10, 0.5, 7);
        let mut queries = clustered_queries(100, 32, 10, 0.5, 7, 8);
        if unit {
            normalise(&mut data, 32);
            normalise(&mut queries, 32);
        }
        (Packed { data, dim: 32 }, queries)
    }

    /// The first `n` rows, as a graph built over them alone, encoded.
    fn prefix_graph(rows: &Packed, n: usize, dist: fn(&[f32], &[f32]) -> f32) -> Aligned {
        let prefix = Packed {
            data: rows.data[..n * rows.dim].to_vec(),
            dim: rows.dim,
        };
        Aligned::new(&build(&prefix, &dist, &GraphParams::default()).encode())
    }

    /// Recall@10 at ef 64 of a full build and of an 8k-row graph extended by
    /// the other 2k rows (`hinted`: with their links in a graph of their own
    /// as hints, as a merge does).
    fn full_and_extended_recall(
        dist: fn(&[f32], &[f32]) -> f32,
        unit: bool,
        hinted: bool,
    ) -> (f64, f64) {
        let (rows, queries) = merge_data(unit);
        let params = GraphParams::default();
        let base = prefix_graph(&rows, 8000, dist);
        let view = GraphView::decode(base.bytes()).unwrap();
        let hints = if hinted {
            let rest = Packed {
                data: rows.data[8000 * rows.dim..].to_vec(),
                dim: rows.dim,
            };
            let own = build(&rest, &dist, &params);
            (0..own.len() as u32)
                .map(|n| own.level0(n).iter().map(|&x| x + 8000).collect())
                .collect()
        } else {
            Vec::new()
        };
        let extended = extend_hinted(&view, &rows, &dist, &params, hints, None).unwrap();
        assert_eq!(extended.len(), 10_000);
        assert!(extended.reachable().iter().all(|&r| r), "unreachable nodes");
        let full = build(&rows, &dist, &params);
        let recall_of = |g: &Graph| {
            let bytes = Aligned::new(&g.encode());
            let view = GraphView::decode(bytes.bytes()).unwrap();
            recall(&view, &rows, dist, &queries, (10, 64), &|_| false)
        };
        (recall_of(&full), recall_of(&extended))
    }

    #[test]
    fn l2_graph_extended_by_2k_rows_has_the_recall_of_a_full_build() {
        let (full, extended) = full_and_extended_recall(l2, false, false);
        eprintln!("L2 recall@10 at ef=64: full {full:.4}, extended {extended:.4}");
        assert!(extended >= full - 0.01, "full {full}, extended {extended}");
    }

    #[test]
    fn cosine_graph_extended_by_2k_rows_has_the_recall_of_a_full_build() {
        let (full, extended) = full_and_extended_recall(cosine, true, false);
        eprintln!("cosine recall@10 at ef=64: full {full:.4}, extended {extended:.4}");
        assert!(extended >= full - 0.01, "full {full}, extended {extended}");
    }

    #[test]
    fn graph_extended_by_2k_hinted_rows_keeps_nearly_the_recall_of_a_full_build() {
        for (dist, unit) in [(l2 as fn(&[f32], &[f32]) -> f32, false), (cosine, true)] {
            let (full, hinted) = full_and_extended_recall(dist, unit, true);
            eprintln!("recall@10 at ef=64: full {full:.4}, hinted extend {hinted:.4}");
            assert!(hinted >= full - 0.02, "full {full}, hinted {hinted}");
        }
    }

    #[test]
    fn extend_by_no_rows_gives_back_the_graph() {
        let rows = rows(1000);
        let base = prefix_graph(&rows, 1000, l2);
        let view = GraphView::decode(base.bytes()).unwrap();
        let same = extend(&view, &rows, &l2, &GraphParams::default(), None).unwrap();
        assert_eq!(same.encode(), base.bytes());
    }

    #[test]
    fn extend_of_an_empty_graph_is_a_build() {
        let rows = rows(500);
        let empty = Packed {
            data: Vec::new(),
            dim: 16,
        };
        let base = Aligned::new(&build(&empty, &l2, &GraphParams::default()).encode());
        let view = GraphView::decode(base.bytes()).unwrap();
        let g = extend(&view, &rows, &l2, &GraphParams::default(), None).unwrap();
        assert_eq!(g.len(), 500);
        assert!(g.reachable().iter().all(|&r| r));
    }

    #[test]
    fn cancelled_extend_returns_none() {
        let rows = rows(2000);
        let base = prefix_graph(&rows, 1000, l2);
        let view = GraphView::decode(base.bytes()).unwrap();
        let cancel = AtomicBool::new(false);
        cancel.store(true, Ordering::Relaxed);
        let params = GraphParams::default();
        assert!(extend(&view, &rows, &l2, &params, Some(&cancel)).is_none());
    }
}
