//! The query loop over a graph's [`Links`] (a mapped [`GraphView`], or the
//! in-memory store of a growing segment), and the visited set it reuses.
//!
//! As in hnswlib: a greedy descent through the upper levels to a good start,
//! then a best-first search at level 0 bounded by `ef`, with a generation-
//! tagged visited set (one `u32` store per node, cleared only when the
//! generation counter wraps) and a software prefetch of the next neighbour's
//! vector and link slot while the current one's distance is computed. The
//! loop is generic over [`Links`], so each kind of graph gets its own
//! compiled copy: over a `GraphView` it reads the mapped slices in place.

use super::layout::GraphView;
use std::cell::RefCell;
use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;

/// Rows a graph indexes, addressed by row number.
///
/// Row numbers run from 0 to `len() - 1`; every row has the same length as
/// the queries the distance function is given.
pub trait Rows: Sync {
    /// Number of rows.
    fn len(&self) -> usize;

    /// Whether there are no rows.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The vector of row `i` (`i < len()`); may panic otherwise.
    fn row(&self, i: u32) -> &[f32];
}

/// A graph [`search`] can walk: a [`GraphView`], or the crate's in-memory
/// link store. Sealed: implemented only inside this crate.
pub trait Links: sealed::Sealed {
    /// Number of nodes; every neighbour and the entry point are below it.
    fn len(&self) -> usize;

    /// Whether the graph has no nodes.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The node searches start from; `None` if there is none.
    fn entry_point(&self) -> Option<u32>;

    /// The entry point's level, the highest a search descends from.
    fn max_level(&self) -> u8;

    /// The level-0 neighbours of `node` (`node < len()`).
    fn level0(&self, node: u32) -> impl Iterator<Item = u32> + '_;

    /// The neighbours of `node` at `level` ≥ 1; none if it is not on that
    /// level.
    fn upper(&self, node: u32, level: u8) -> impl Iterator<Item = u32> + '_;

    /// Hints the CPU to fetch `node`'s level-0 list.
    fn prefetch_links(&self, node: u32);
}

/// A graph with one node taken out: no list names it and no walk starts
/// from it. Searching it with that node's own vector as the query is a
/// held-out query, as a new vector would be (the calibration's view).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Hiding<'a, L> {
    pub(crate) links: &'a L,
    pub(crate) hidden: u32,
}

impl<L: Links> sealed::Sealed for Hiding<'_, L> {}

impl<L: Links> Links for Hiding<'_, L> {
    fn len(&self) -> usize {
        self.links.len()
    }

    fn entry_point(&self) -> Option<u32> {
        let entry = self.links.entry_point()?;
        if entry != self.hidden {
            return Some(entry);
        }
        self.links.level0(entry).find(|&n| n != self.hidden)
    }

    fn max_level(&self) -> u8 {
        self.links.max_level()
    }

    fn level0(&self, node: u32) -> impl Iterator<Item = u32> + '_ {
        self.links.level0(node).filter(move |&n| n != self.hidden)
    }

    fn upper(&self, node: u32, level: u8) -> impl Iterator<Item = u32> + '_ {
        self.links
            .upper(node, level)
            .filter(move |&n| n != self.hidden)
    }

    fn prefetch_links(&self, node: u32) {
        self.links.prefetch_links(node);
    }
}

/// Keeps [`Links`] implemented only in this crate.
pub(crate) mod sealed {
    /// The supertrait of [`Links`](super::Links); not nameable outside the crate.
    pub trait Sealed {}
}

impl sealed::Sealed for GraphView<'_> {}

/// Zero copy: the lists are slices of the mapped file.
impl Links for GraphView<'_> {
    #[inline]
    fn len(&self) -> usize {
        GraphView::len(self)
    }

    #[inline]
    fn entry_point(&self) -> Option<u32> {
        GraphView::entry_point(self)
    }

    #[inline]
    fn max_level(&self) -> u8 {
        GraphView::max_level(self)
    }

    #[inline]
    fn level0(&self, node: u32) -> impl Iterator<Item = u32> + '_ {
        self.level0_neighbours(node).iter().copied()
    }

    #[inline]
    fn upper(&self, node: u32, level: u8) -> impl Iterator<Item = u32> + '_ {
        self.upper_neighbours(node, level).iter().copied()
    }

    #[inline]
    fn prefetch_links(&self, node: u32) {
        prefetch(self.slot_ptr(node));
    }
}

/// A candidate: a distance and a row, ordered by distance (total order, NaN
/// last) then row, so ties break deterministically.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Cand {
    pub(crate) d: f32,
    pub(crate) id: u32,
}

impl PartialEq for Cand {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Cand {}

impl PartialOrd for Cand {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Cand {
    fn cmp(&self, other: &Self) -> Ordering {
        self.d.total_cmp(&other.d).then(self.id.cmp(&other.id))
    }
}

/// The visited set of a search, plus the heaps a search fills, kept so that
/// a thread searching repeatedly allocates nothing after its first query.
///
/// A node is visited in the current search iff its tag equals the current
/// generation; starting a search bumps the generation instead of clearing, so
/// the tags are zeroed only once every 2³² − 1 searches.
///
/// ```
/// use quiver::graph::Visited;
/// let mut visited = Visited::with_capacity(1000); // reuse across queries
/// # let _ = &mut visited;
/// ```
#[derive(Debug, Default)]
pub struct Visited {
    tags: Vec<u32>,
    generation: u32,
    /// Nearest-first frontier.
    pub(crate) near: BinaryHeap<Reverse<Cand>>,
    /// The `ef` best seen (farthest on top).
    pub(crate) far: BinaryHeap<Cand>,
    /// The unvisited neighbours of the node being expanded.
    fresh: Vec<u32>,
}

impl Visited {
    /// An empty set; it grows on first use.
    pub fn new() -> Visited {
        Visited::default()
    }

    /// A set ready for graphs of up to `len` nodes.
    pub fn with_capacity(len: usize) -> Visited {
        Visited {
            tags: vec![0; len],
            ..Visited::default()
        }
    }

    /// Starts a new search over `len` nodes: nothing is visited afterwards.
    pub(crate) fn start(&mut self, len: usize) {
        if self.tags.len() < len {
            self.tags.resize(len, 0);
        }
        self.generation = self.generation.wrapping_add(1);
        if self.generation == 0 {
            self.tags.fill(0);
            self.generation = 1;
        }
        self.near.clear();
        self.far.clear();
    }

    /// Marks `node` visited; returns whether it was not visited before.
    #[inline]
    pub(crate) fn insert(&mut self, node: u32) -> bool {
        let tag = &mut self.tags[node as usize];
        let fresh = *tag != self.generation;
        *tag = self.generation;
        fresh
    }
}

thread_local! {
    static POOL: RefCell<Visited> = RefCell::new(Visited::new());
}

/// Runs `f` with this thread's [`Visited`] set, ready for graphs of `len`
/// nodes, so repeated searches on a thread allocate nothing for it.
///
/// A nested call on the same thread gets a fresh set instead.
pub fn with_visited<T>(len: usize, f: impl FnOnce(&mut Visited) -> T) -> T {
    POOL.with(|cell| match cell.try_borrow_mut() {
        Ok(mut v) => {
            if v.tags.len() < len {
                v.tags.resize(len, 0);
            }
            f(&mut v)
        }
        Err(_) => f(&mut Visited::with_capacity(len)),
    })
}

/// Hints the CPU to pull the cache line at `p` into all cache levels.
#[inline(always)]
#[allow(unsafe_code)]
pub(crate) fn prefetch<T>(p: *const T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: `_mm_prefetch` is only a hint: it never faults and never reads
    // into a register, whatever the address (even unmapped or dangling), and
    // SSE is part of the x86_64 baseline, so its target feature is present.
    unsafe {
        core::arch::x86_64::_mm_prefetch::<{ core::arch::x86_64::_MM_HINT_T0 }>(p.cast::<i8>());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

/// Prefetches every cache line of a row: a vector spans many lines, and the
/// distance kernel reads them all.
#[inline(always)]
pub(crate) fn prefetch_row(row: &[f32]) {
    for line in row.chunks(16) {
        prefetch(line.as_ptr());
    }
}

/// Finds up to `k` rows nearest `query` in the graph `view` (a [`GraphView`],
/// or a view of the in-memory store), nearest first, as `(distance, row)`.
///
/// `ef` (raised to at least `k`) bounds the level-0 frontier: larger is
/// slower and more accurate. Rows for which `skip(row)` is true (deleted
/// rows) are walked through like any node, so they keep the graph connected,
/// but are never returned; while fewer than `k` rows have been found the
/// search keeps going, so a heavily filtered search still fills its result
/// when enough rows remain reachable.
///
/// `visited` is scratch reused across queries; see also [`with_visited`].
///
/// # Panics
///
/// Panics if `rows` has fewer rows than the graph has nodes, or if `dist`
/// panics (e.g. on a query of the wrong length).
#[allow(clippy::too_many_arguments)]
pub fn search<L: Links, R: Rows, D: Fn(&[f32], &[f32]) -> f32>(
    view: &L,
    rows: &R,
    dist: &D,
    query: &[f32],
    k: usize,
    ef: usize,
    skip: &dyn Fn(u32) -> bool,
    visited: &mut Visited,
) -> Vec<(f32, u32)> {
    let Some(entry) = view.entry_point() else {
        return Vec::new();
    };
    if k == 0 {
        return Vec::new();
    }
    assert!(
        rows.len() >= view.len(),
        "graph has {} nodes but only {} rows were given",
        view.len(),
        rows.len()
    );

    // Greedy descent: at each upper level move to the nearest neighbour until
    // none is nearer.
    let mut cur = Cand {
        d: dist(query, rows.row(entry)),
        id: entry,
    };
    for level in (1..=view.max_level()).rev() {
        loop {
            let mut moved = false;
            for n in view.upper(cur.id, level) {
                let d = dist(query, rows.row(n));
                if d < cur.d {
                    cur = Cand { d, id: n };
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
    }

    // Best-first search at level 0, as hnswlib does it with deletions:
    // `near` holds the nodes still to expand, skipped or not, so the walk goes
    // through deleted rows; `far` holds the `ef` nearest rows that may be
    // returned, and its worst bounds the walk. Skipped rows never use up `ef`.
    let ef = ef.max(k);
    visited.start(view.len());
    visited.insert(cur.id);
    visited.near.push(Reverse(cur));
    if !skip(cur.id) {
        visited.far.push(cur);
    }
    let bound = |v: &Visited| match v.far.peek() {
        Some(worst) if v.far.len() >= ef => worst.d,
        _ => f32::INFINITY,
    };
    while let Some(Reverse(c)) = visited.near.pop() {
        if c.d > bound(visited) {
            break;
        }
        // Take the unvisited neighbours first, so that prefetches go only to
        // rows whose distance will be computed.
        let mut fresh = std::mem::take(&mut visited.fresh);
        fresh.clear();
        fresh.extend(view.level0(c.id).filter(|&n| visited.insert(n)));
        if let Some(&first) = fresh.first() {
            prefetch_row(rows.row(first));
        }
        for (i, &n) in fresh.iter().enumerate() {
            if let Some(&next) = fresh.get(i + 1) {
                prefetch_row(rows.row(next));
                view.prefetch_links(next);
            }
            let d = dist(query, rows.row(n));
            if d < bound(visited) {
                let cand = Cand { d, id: n };
                visited.near.push(Reverse(cand));
                if !skip(n) {
                    visited.far.push(cand);
                    if visited.far.len() > ef {
                        visited.far.pop();
                    }
                }
            }
        }
        visited.fresh = fresh;
    }
    while visited.far.len() > k {
        visited.far.pop();
    }
    let mut out: Vec<Cand> = visited.far.drain().collect();
    out.sort_unstable();
    out.into_iter().map(|c| (c.d, c.id)).collect()
}

/// Helpers shared by the graph module's tests.
#[cfg(test)]
pub(crate) mod test_support {
    use super::{search, Cand, Links, Rows, Visited};

    /// Packed rows of one dimension.
    pub(crate) struct Packed {
        pub(crate) data: Vec<f32>,
        pub(crate) dim: usize,
    }

    impl Rows for Packed {
        fn len(&self) -> usize {
            self.data.len() / self.dim
        }

        fn row(&self, i: u32) -> &[f32] {
            let at = i as usize * self.dim;
            &self.data[at..at + self.dim]
        }
    }

    /// Scales every row to unit length.
    pub(crate) fn normalise(data: &mut [f32], dim: usize) {
        for row in data.chunks_exact_mut(dim) {
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            row.iter_mut().for_each(|x| *x /= norm);
        }
    }

    /// The exact `k` nearest rows of `rows` to `q`, skipped rows left out.
    pub(crate) fn brute_force<R: Rows>(
        rows: &R,
        dist: fn(&[f32], &[f32]) -> f32,
        q: &[f32],
        k: usize,
        skip: &dyn Fn(u32) -> bool,
    ) -> Vec<u32> {
        let mut all: Vec<Cand> = (0..rows.len() as u32)
            .filter(|&r| !skip(r))
            .map(|r| Cand {
                d: dist(q, rows.row(r)),
                id: r,
            })
            .collect();
        all.sort_unstable();
        all.into_iter().take(k).map(|c| c.id).collect()
    }

    /// Mean recall@k of graph search at `ef` over `queries` (packed, of the
    /// rows' dimension), against [`brute_force`] over every row of `rows`;
    /// checks that each search returns `k` rows, nearest first.
    pub(crate) fn recall<L: Links>(
        view: &L,
        rows: &Packed,
        dist: fn(&[f32], &[f32]) -> f32,
        queries: &[f32],
        (k, ef): (usize, usize),
        skip: &dyn Fn(u32) -> bool,
    ) -> f64 {
        let mut visited = Visited::new();
        let mut hits = 0;
        for q in queries.chunks_exact(rows.dim) {
            let found = search(view, rows, &dist, q, k, ef, skip, &mut visited);
            let truth = brute_force(rows, dist, q, k, skip);
            assert_eq!(found.len(), k);
            assert!(found.windows(2).all(|w| w[0].0 <= w[1].0), "not sorted");
            hits += found.iter().filter(|(_, r)| truth.contains(r)).count();
        }
        hits as f64 / (k * queries.len() / rows.dim) as f64
    }

    /// A copy of some bytes at an 8-byte-aligned address, as a mapping gives.
    pub(crate) struct Aligned {
        words: Vec<u64>,
        len: usize,
    }

    impl Aligned {
        pub(crate) fn new(bytes: &[u8]) -> Aligned {
            let mut words = vec![0u64; bytes.len().div_ceil(8)];
            bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()].copy_from_slice(bytes);
            Aligned {
                words,
                len: bytes.len(),
            }
        }

        pub(crate) fn bytes(&self) -> &[u8] {
            &bytemuck::cast_slice(&self.words)[..self.len]
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{self, normalise, Aligned, Packed};
    use super::*;
    use crate::graph::{build, GraphParams};
    use crate::kernels;
    use crate::synth::clustered;
    use std::sync::OnceLock;

    const DIM: usize = 32;
    const N: usize = 10_000;
    const QUERIES: usize = 100;

    /// An indexed data set, held queries, and its encoded graph.
    struct Fixture {
        rows: Packed,
        queries: Vec<f32>,
        bytes: Aligned,
        dist: fn(&[f32], &[f32]) -> f32,
    }

    fn l2(a: &[f32], b: &[f32]) -> f32 {
        kernels::select().l2_squared(a, b)
    }

    fn cosine(a: &[f32], b: &[f32]) -> f32 {
        1.0 - kernels::select().dot(a, b)
    }

    /// 10k rows in 10 wide clusters plus 100 held-out queries from the same
    /// distribution (the generator draws the centres first, then the rows).
    fn fixture(dist: fn(&[f32], &[f32]) -> f32, unit: bool) -> Fixture {
        let mut data = clustered(N + QUERIES, DIM, 10, 0.5, 7);
        if unit {
            normalise(&mut data, DIM);
        }
        let queries = data.split_off(N * DIM);
        let rows = Packed { data, dim: DIM };
        let graph = build(&rows, &dist, &GraphParams::default());
        Fixture {
            bytes: Aligned::new(&graph.encode()),
            rows,
            queries,
            dist,
        }
    }

    fn l2_fixture() -> &'static Fixture {
        static F: OnceLock<Fixture> = OnceLock::new();
        F.get_or_init(|| fixture(l2, false))
    }

    fn cosine_fixture() -> &'static Fixture {
        static F: OnceLock<Fixture> = OnceLock::new();
        F.get_or_init(|| fixture(cosine, true))
    }

    /// Mean recall@k of graph search at `ef` over the fixture's queries.
    fn recall(f: &Fixture, k: usize, ef: usize, skip: &dyn Fn(u32) -> bool) -> f64 {
        let view = GraphView::decode(f.bytes.bytes()).unwrap();
        test_support::recall(&view, &f.rows, f.dist, &f.queries, (k, ef), skip)
    }

    #[test]
    fn l2_recall_at_10_is_at_least_0_95_with_ef_64() {
        let r = recall(l2_fixture(), 10, 64, &|_| false);
        eprintln!("L2 recall@10 at ef=64: {r:.4}");
        assert!(r >= 0.95, "recall {r}");
    }

    #[test]
    fn cosine_recall_at_10_is_at_least_0_95_with_ef_64() {
        let r = recall(cosine_fixture(), 10, 64, &|_| false);
        eprintln!("cosine recall@10 at ef=64: {r:.4}");
        assert!(r >= 0.95, "recall {r}");
    }

    #[test]
    fn skipped_rows_are_never_returned_and_recall_over_the_rest_holds() {
        let f = l2_fixture();
        let skip_even = |r: u32| r.is_multiple_of(2);
        let view = GraphView::decode(f.bytes.bytes()).unwrap();
        let mut visited = Visited::new();
        for q in f.queries.chunks_exact(DIM) {
            let found = search(&view, &f.rows, &f.dist, q, 10, 64, &skip_even, &mut visited);
            assert_eq!(found.len(), 10);
            assert!(found.iter().all(|&(_, r)| r % 2 == 1), "{found:?}");
        }
        let r = recall(f, 10, 64, &skip_even);
        eprintln!("L2 recall@10 over odd rows at ef=64: {r:.4}");
        assert!(r >= 0.9, "recall {r}");
    }

    #[test]
    fn decoded_copies_of_one_encoding_give_identical_search_results() {
        let f = l2_fixture();
        let copy = Aligned::new(f.bytes.bytes());
        let (a, b) = (
            GraphView::decode(f.bytes.bytes()).unwrap(),
            GraphView::decode(copy.bytes()).unwrap(),
        );
        let (mut va, mut vb) = (Visited::new(), Visited::new());
        for q in f.queries.chunks_exact(DIM) {
            let ra = search(&a, &f.rows, &f.dist, q, 10, 64, &|_| false, &mut va);
            let rb = search(&b, &f.rows, &f.dist, q, 10, 64, &|_| false, &mut vb);
            assert_eq!(ra, rb);
        }
    }

    #[test]
    fn search_results_do_not_depend_on_the_visited_set_history() {
        let f = l2_fixture();
        let view = GraphView::decode(f.bytes.bytes()).unwrap();
        let mut reused = Visited::new();
        for q in f.queries.chunks_exact(DIM).take(20) {
            let a = search(&view, &f.rows, &f.dist, q, 10, 32, &|_| false, &mut reused);
            let b = search(
                &view,
                &f.rows,
                &f.dist,
                q,
                10,
                32,
                &|_| false,
                &mut Visited::new(),
            );
            let c = with_visited(view.len(), |v| {
                search(&view, &f.rows, &f.dist, q, 10, 32, &|_| false, v)
            });
            assert_eq!(a, b);
            assert_eq!(a, c);
        }
    }

    fn small(n: usize, seed: u64) -> (Packed, Aligned) {
        let rows = Packed {
            data: clustered(n, 8, 3, 0.3, seed),
            dim: 8,
        };
        let params = GraphParams {
            m: 4,
            ..GraphParams::default()
        };
        let bytes = Aligned::new(&build(&rows, &l2, &params).encode());
        (rows, bytes)
    }

    #[test]
    fn k_larger_than_the_graph_returns_every_non_skipped_row() {
        let (rows, bytes) = small(300, 11);
        let view = GraphView::decode(bytes.bytes()).unwrap();
        let skip = |r: u32| r.is_multiple_of(3);
        let found = search(
            &view,
            &rows,
            &l2,
            &[0.0; 8],
            1000,
            16,
            &skip,
            &mut Visited::new(),
        );
        let mut got: Vec<u32> = found.iter().map(|h| h.1).collect();
        got.sort_unstable();
        let want: Vec<u32> = (0..300).filter(|&r| !skip(r)).collect();
        assert_eq!(got, want);
        assert!(found.windows(2).all(|w| w[0].0 <= w[1].0));
    }

    #[test]
    fn skipping_every_row_returns_nothing() {
        let (rows, bytes) = small(100, 12);
        let view = GraphView::decode(bytes.bytes()).unwrap();
        let found = search(
            &view,
            &rows,
            &l2,
            &[0.0; 8],
            10,
            16,
            &|_| true,
            &mut Visited::new(),
        );
        assert!(found.is_empty());
    }

    #[test]
    fn heavily_filtered_search_still_fills_k() {
        let (rows, bytes) = small(2000, 13);
        let view = GraphView::decode(bytes.bytes()).unwrap();
        let keep = |r: u32| r % 97 != 5; // about 20 rows survive
        let found = search(
            &view,
            &rows,
            &l2,
            rows.row(0),
            10,
            16,
            &keep,
            &mut Visited::new(),
        );
        assert_eq!(found.len(), 10);
        assert!(found.iter().all(|&(_, r)| r % 97 == 5));
    }

    #[test]
    fn empty_graph_builds_encodes_decodes_and_searches_to_nothing() {
        let rows = Packed {
            data: Vec::new(),
            dim: 4,
        };
        let graph = build(&rows, &l2, &GraphParams::default());
        assert_eq!(
            (graph.len(), graph.entry_point(), graph.max_level()),
            (0, None, 0)
        );
        let bytes = Aligned::new(&graph.encode());
        let view = GraphView::decode(bytes.bytes()).unwrap();
        assert!(view.is_empty());
        assert_eq!(view.entry_point(), None);
        let found = search(
            &view,
            &rows,
            &l2,
            &[1.0; 4],
            10,
            64,
            &|_| false,
            &mut Visited::new(),
        );
        assert!(found.is_empty());
    }

    #[test]
    fn one_row_graph_returns_its_row() {
        let rows = Packed {
            data: vec![1.0, 2.0, 3.0],
            dim: 3,
        };
        let graph = build(&rows, &l2, &GraphParams::default());
        assert_eq!((graph.len(), graph.entry_point()), (1, Some(0)));
        let bytes = Aligned::new(&graph.encode());
        let view = GraphView::decode(bytes.bytes()).unwrap();
        let found = search(
            &view,
            &rows,
            &l2,
            &[1.0, 2.0, 4.0],
            5,
            64,
            &|_| false,
            &mut Visited::new(),
        );
        assert_eq!(found, vec![(1.0, 0)]);
        let none = search(
            &view,
            &rows,
            &l2,
            &[0.0; 3],
            5,
            64,
            &|_| true,
            &mut Visited::new(),
        );
        assert!(none.is_empty());
        let zero_k = search(
            &view,
            &rows,
            &l2,
            &[0.0; 3],
            0,
            64,
            &|_| false,
            &mut Visited::new(),
        );
        assert!(zero_k.is_empty());
    }

    #[test]
    fn visited_set_is_cleared_when_its_generation_wraps() {
        let mut v = Visited::with_capacity(4);
        v.start(4);
        assert!(v.insert(2));
        assert!(!v.insert(2));
        v.generation = u32::MAX - 1;
        v.tags[1] = u32::MAX; // stale tag equal to the next generation
        v.start(4);
        assert_eq!(v.generation, u32::MAX);
        assert!(!v.insert(1), "a tag from 2^32 searches ago looks visited");
        v.tags[3] = 1; // stale tag equal to the generation after the wrap
        v.start(4);
        assert_eq!(v.generation, 1);
        assert!(
            (0..4).all(|i| v.insert(i)),
            "wrap-around must clear every tag"
        );
    }

    #[test]
    fn visited_set_grows_to_the_graph() {
        let mut v = Visited::new();
        v.start(10);
        assert!(v.insert(9));
        v.start(20);
        assert!(v.insert(9) && v.insert(19));
    }

    #[test]
    fn nested_with_visited_gets_a_fresh_set() {
        let n = with_visited(8, |outer| {
            outer.start(8);
            outer.insert(3);
            with_visited(8, |inner| {
                inner.start(8);
                inner.insert(3)
            })
        });
        assert!(n);
    }
}
