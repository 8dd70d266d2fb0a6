//! [`LinkStore`]: an HNSW graph's links held in memory, for up to a fixed
//! number of nodes, that writers insert into while readers search it.
//!
//! Every node's level is drawn when the store is made, so each list has a
//! fixed slot from the start: level 0 in one flat array of `1 + 2m` `u32`s per
//! node, the upper levels in another of `1 + m` per (node, level), found
//! through a prefix sum of the levels. A slot holds a count, then the ids; it
//! is read with atomic loads and never locked, so any number of readers can
//! search while a writer inserts, and a graph in memory is searched by the
//! same loop as a mapped one ([`StoreView`] implements [`Links`]).
//!
//! Writers take a per-node mutex before changing a node's lists, and a thread
//! holds at most one node lock at a time, so inserts cannot deadlock. The
//! entry point and top level sit behind one more lock, read once per insert
//! and held for a whole insert only by the rare node that raises the top
//! level (as hnswlib does), never taken while a node lock is held; readers
//! load its copy in one `AtomicU64`.
//!
//! A reader racing a writer may see a mix of a list's old and new ids, which
//! is harmless here: a count is published with `Release` after the ids it
//! covers and loaded with `Acquire` before them, so every id a reader loads
//! is one some writer stored (slots start zeroed, and a count never covers a
//! word not yet written), counts are clamped to the slot, and HNSW only
//! needs *good* neighbours. A view also drops ids at or past its limit, the
//! nodes inserted after its snapshot.

use super::build::{Graph, GraphParams};
use super::layout::{GraphView, MAX_LEVEL, MAX_M};
use super::search::{prefetch, prefetch_row, sealed, with_visited, Cand, Links, Rows, Visited};
use crate::rng::SplitMix64;
use rayon::prelude::*;
use std::cmp::Reverse;
use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

/// The published entry point of an empty store.
const NO_ENTRY: u64 = u64::MAX;

fn pack(node: u32, level: u8) -> u64 {
    u64::from(node) << 8 | u64::from(level)
}

/// Fixed-size slots, each a count then up to `cap` ids, in one flat array of
/// atomics (as hnswlib keeps its level 0): one contiguous read per list, no
/// pointer to chase, nothing to lock for a reader.
struct Slots {
    cap: usize,
    words: Vec<AtomicU32>,
}

impl Slots {
    fn new(slots: usize, cap: usize) -> Slots {
        Slots {
            cap,
            words: (0..slots * (cap + 1)).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    fn get(&self, i: usize) -> &[AtomicU32] {
        let at = i * (self.cap + 1);
        &self.words[at..at + self.cap + 1]
    }

    /// Address of slot `i`, for prefetching (never dereferenced here; an
    /// out-of-range slot gives a harmless dangling address).
    fn ptr(&self, i: usize) -> *const AtomicU32 {
        self.words.as_ptr().wrapping_add(i * (self.cap + 1))
    }
}

/// The ids in `slot`; the count is loaded first (`Acquire`, pairing with
/// [`write`]) and clamped to the slot.
#[inline]
fn ids(slot: &[AtomicU32]) -> impl Iterator<Item = u32> + '_ {
    let (count, ids) = slot
        .split_first()
        .map_or((0, &[][..]), |(c, ids)| (c.load(Ordering::Acquire), ids));
    ids[..(count as usize).min(ids.len())]
        .iter()
        .map(|x| x.load(Ordering::Relaxed))
}

/// Replaces the list in `slot`: ids first, then the count (`Release`), so a
/// reader that sees the count sees ids at least that new. The caller holds
/// the node's lock; `list` fits the slot.
fn write(slot: &[AtomicU32], list: &[u32]) {
    debug_assert!(list.len() < slot.len());
    for (s, &x) in slot[1..].iter().zip(list) {
        s.store(x, Ordering::Relaxed);
    }
    slot[0].store(list.len() as u32, Ordering::Release);
}

/// Locks `m`, ignoring poisoning: a panicking insert leaves lists that are
/// still valid (each update rewrites a slot that always holds valid ids).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Levels for `n` rows: level `l` with probability `m^-l · (1 − 1/m)`.
fn draw_levels(n: usize, m: usize, seed: u64) -> Vec<u8> {
    let mult = 1.0 / (m as f64).ln();
    let mut rng = SplitMix64::new(seed);
    (0..n)
        .map(|_| {
            let u = 1.0 - rng.next_f64(); // in (0, 1]
            let level = (-u.ln() * mult).floor();
            level.min(f64::from(MAX_LEVEL)) as u8
        })
        .collect()
}

/// The links of an HNSW graph of up to `capacity` nodes, in memory: insert
/// nodes from any number of threads, search it from any number more without
/// locks (through [`LinkStore::view`]), copy it out as a [`Graph`].
pub(crate) struct LinkStore {
    m: usize,
    /// Every node's level, drawn up front.
    levels: Vec<u8>,
    /// One slot of `2m` per node.
    level0: Slots,
    /// One slot of `m` per (node, level ≥ 1).
    upper: Slots,
    /// Index in `upper` of each node's level-1 slot; its level-`l` slot
    /// follows at `+ l − 1`.
    upper_first: Vec<usize>,
    /// Guards writes to each node's lists.
    locks: Vec<Mutex<()>>,
    /// The entry point and top level, for writers.
    entry: Mutex<Option<(u32, u8)>>,
    /// A copy of `entry` for readers ([`pack`]ed, or [`NO_ENTRY`]).
    published: AtomicU64,
}

impl fmt::Debug for LinkStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LinkStore")
            .field("capacity", &self.capacity())
            .field("m", &self.m)
            .field("entry", &self.entry())
            .finish_non_exhaustive()
    }
}

impl LinkStore {
    /// An empty store for nodes `0..capacity`, their levels drawn from
    /// `params.seed` (`m` clamped to `2..=MAX_M`).
    ///
    /// # Panics
    ///
    /// Panics if `capacity` is `u32::MAX` or more.
    pub(crate) fn new(capacity: usize, params: &GraphParams) -> LinkStore {
        let m = params.m.clamp(2, MAX_M);
        LinkStore::with_levels(m, draw_levels(capacity, m, params.seed))
    }

    /// An empty store with the given levels.
    fn with_levels(m: usize, levels: Vec<u8>) -> LinkStore {
        let capacity = levels.len();
        assert!(
            capacity < u32::MAX as usize,
            "a graph holds fewer than 2^32 - 1 nodes"
        );
        let upper_first: Vec<usize> = levels
            .iter()
            .scan(0, |next, &l| {
                let first = *next;
                *next += usize::from(l);
                Some(first)
            })
            .collect();
        let upper_slots = levels.iter().map(|&l| usize::from(l)).sum();
        LinkStore {
            m,
            level0: Slots::new(capacity, 2 * m),
            upper: Slots::new(upper_slots, m),
            upper_first,
            locks: (0..capacity).map(|_| Mutex::new(())).collect(),
            levels,
            entry: Mutex::new(None),
            published: AtomicU64::new(NO_ENTRY),
        }
    }

    /// A store holding every list of `view`, with room for `extra` more
    /// nodes after its own, whose levels are drawn from `params.seed` as if
    /// the whole store had been made by [`LinkStore::new`]. The store keeps
    /// the view's `m` (`params.m` is not used).
    pub(crate) fn from_view(view: &GraphView<'_>, extra: usize, params: &GraphParams) -> LinkStore {
        let (n, m) = (view.len(), view.m());
        let mut levels = draw_levels(n + extra, m, params.seed);
        levels[..n].fill(0);
        for (node, level) in view.upper_nodes() {
            levels[node as usize] = level;
        }
        let store = LinkStore::with_levels(m, levels);
        for node in 0..n as u32 {
            write(
                store.level0.get(node as usize),
                view.level0_neighbours(node),
            );
            for level in 1..=store.levels[node as usize] {
                if let Some(slot) = store.slot(node, level) {
                    write(slot, view.upper_neighbours(node, level));
                }
            }
        }
        if let Some(entry) = view.entry_point() {
            store.set_entry(&mut lock(&store.entry), (entry, view.max_level()));
        }
        store
    }

    /// Nodes the store has room for.
    pub(crate) fn capacity(&self) -> usize {
        self.levels.len()
    }

    /// Links per node above level 0 (level 0 holds up to `2m`).
    pub(crate) fn m(&self) -> usize {
        self.m
    }

    /// The entry point and top level now; `None` before the first insert.
    pub(crate) fn entry(&self) -> Option<(u32, u8)> {
        match self.published.load(Ordering::Acquire) {
            NO_ENTRY => None,
            p => Some(((p >> 8) as u32, p as u8)),
        }
    }

    fn set_entry(&self, guard: &mut Option<(u32, u8)>, entry: (u32, u8)) {
        *guard = Some(entry);
        self.published
            .store(pack(entry.0, entry.1), Ordering::Release);
    }

    /// `node`'s slot at `level`; `None` if it is not on that level.
    #[inline]
    fn slot(&self, node: u32, level: u8) -> Option<&[AtomicU32]> {
        let n = node as usize;
        match level {
            0 => Some(self.level0.get(n)),
            l if l <= self.levels[n] => {
                Some(self.upper.get(self.upper_first[n] + usize::from(l) - 1))
            }
            _ => None,
        }
    }

    /// `node`'s neighbours at `level` (none if it is not on that level).
    #[inline]
    fn neighbours(&self, node: u32, level: u8) -> impl Iterator<Item = u32> + '_ {
        self.slot(node, level).into_iter().flat_map(ids)
    }

    /// Inserts `node`: finds its neighbours from the entry point down, links
    /// it to them and them back to it (re-pruning full lists with the
    /// neighbour-selection heuristic), and makes it the entry point if its
    /// level is above the top. The first node inserted into an empty store
    /// becomes the entry point.
    ///
    /// `rows` covers `node` and every node inserted before; each node is
    /// inserted at most once. Safe to call from many threads at once.
    ///
    /// # Panics
    ///
    /// Panics if `node` is not below the capacity, or if `dist` panics.
    pub(crate) fn insert<R: Rows, D: Fn(&[f32], &[f32]) -> f32 + Sync>(
        &self,
        node: u32,
        rows: &R,
        dist: &D,
        ef_construction: usize,
    ) {
        Inserter::new(self, rows, dist, ef_construction).insert(node);
    }

    /// Inserts `nodes` in parallel with rayon (the first alone if the store
    /// is empty, so that it becomes the entry point; on one rayon thread in
    /// order, which makes the links deterministic). Returns `false` if it
    /// stopped early because `cancel` became true; the nodes inserted by then
    /// stay inserted.
    ///
    /// # Panics
    ///
    /// As [`LinkStore::insert`].
    pub(crate) fn insert_all<R: Rows, D: Fn(&[f32], &[f32]) -> f32 + Sync>(
        &self,
        nodes: Range<u32>,
        rows: &R,
        dist: &D,
        ef_construction: usize,
        cancel: Option<&AtomicBool>,
    ) -> bool {
        self.insert_hinted(nodes, rows, dist, ef_construction, None, cancel)
    }

    /// [`LinkStore::insert_all`], each node's search found candidates joined
    /// by its `hints`.
    pub(crate) fn insert_hinted<R: Rows, D: Fn(&[f32], &[f32]) -> f32 + Sync>(
        &self,
        mut nodes: Range<u32>,
        rows: &R,
        dist: &D,
        ef_construction: usize,
        hints: Option<&Hints>,
        cancel: Option<&AtomicBool>,
    ) -> bool {
        let cancelled = || cancel.is_some_and(|c| c.load(Ordering::Relaxed));
        if self.entry().is_none() {
            match nodes.next() {
                Some(_) if cancelled() => return false,
                Some(first) => self.insert(first, rows, dist, ef_construction),
                None => return true,
            }
        }
        let inserter = Inserter {
            hints,
            ..Inserter::new(self, rows, dist, ef_construction)
        };
        nodes
            .into_par_iter()
            .try_for_each(|node| {
                if cancelled() {
                    return Err(());
                }
                inserter.insert(node);
                Ok(())
            })
            .is_ok()
    }

    /// A copy of the lists of nodes `0..len` as a [`Graph`], without links to
    /// nodes at or past `len` (inserted meanwhile or later), after the repair
    /// pass that leaves every node reachable. The store stays usable.
    ///
    /// Nodes `0..len` have been inserted, and `rows` covers them. If the entry
    /// point is not below `len`, the graph's is the first of its nodes on its
    /// top level.
    ///
    /// # Panics
    ///
    /// Panics if `len` is above the capacity, or if `dist` panics.
    pub(crate) fn to_graph<R: Rows, D: Fn(&[f32], &[f32]) -> f32>(
        &self,
        len: usize,
        rows: &R,
        dist: &D,
    ) -> Graph {
        assert!(
            len <= self.capacity(),
            "{len} nodes, capacity {}",
            self.capacity()
        );
        let limit = len as u32;
        let links = (0..limit)
            .map(|node| {
                (0..=self.levels[node as usize])
                    .map(|level| {
                        let mut list = Vec::new();
                        // A list read mid-update may repeat an id.
                        for x in self.neighbours(node, level) {
                            if x < limit && !list.contains(&x) {
                                list.push(x);
                            }
                        }
                        list
                    })
                    .collect()
            })
            .collect();
        let entry = match self.entry() {
            Some((e, top)) if e < limit => Some((e, top)),
            _ => (0..limit)
                .max_by_key(|&n| (self.levels[n as usize], Reverse(n)))
                .map(|n| (n, self.levels[n as usize])),
        };
        let mut graph = Graph {
            m: self.m(),
            links,
            entry: entry.map(|e| e.0),
            max_level: entry.map_or(0, |e| e.1),
        };
        graph.connect_unreachable(rows, dist);
        graph
    }

    /// The nodes below `limit` (clamped to the capacity) as a graph to
    /// [`search`](super::search) from `entry`: the entry point a reader
    /// recorded with [`LinkStore::entry`] when it took its snapshot, since a
    /// later insert may have promoted a node past `limit`. Links to nodes at
    /// or past `limit` are ignored; an `entry` not below it gives a view with
    /// no entry point, which finds nothing.
    pub(crate) fn view(&self, limit: u32, entry: Option<(u32, u8)>) -> StoreView<'_> {
        let limit = limit.min(self.capacity() as u32);
        debug_assert!(
            entry.is_none_or(|e| e.0 < limit),
            "entry {entry:?} past {limit}"
        );
        StoreView {
            store: self,
            limit,
            entry: entry.filter(|e| e.0 < limit),
        }
    }
}

/// The nodes of a [`LinkStore`] below a limit, searched from a recorded
/// entry point; made by [`LinkStore::view`].
#[derive(Clone, Copy)]
pub(crate) struct StoreView<'s> {
    store: &'s LinkStore,
    limit: u32,
    entry: Option<(u32, u8)>,
}

impl fmt::Debug for StoreView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreView")
            .field("limit", &self.limit)
            .field("entry", &self.entry)
            .finish_non_exhaustive()
    }
}

impl sealed::Sealed for StoreView<'_> {}

impl Links for StoreView<'_> {
    #[inline]
    fn len(&self) -> usize {
        self.limit as usize
    }

    #[inline]
    fn entry_point(&self) -> Option<u32> {
        self.entry.map(|e| e.0)
    }

    #[inline]
    fn max_level(&self) -> u8 {
        self.entry.map_or(0, |e| e.1)
    }

    #[inline]
    fn level0(&self, node: u32) -> impl Iterator<Item = u32> + '_ {
        let limit = self.limit;
        ids(self.store.level0.get(node as usize)).filter(move |&x| x < limit)
    }

    #[inline]
    fn upper(&self, node: u32, level: u8) -> impl Iterator<Item = u32> + '_ {
        let limit = self.limit;
        self.store
            .neighbours(node, level)
            .filter(move |&x| x < limit)
    }

    #[inline]
    fn prefetch_links(&self, node: u32) {
        prefetch(self.store.level0.ptr(node as usize));
    }
}

/// Level-0 neighbours the nodes being inserted already had in a graph of
/// their own (a merge's smaller input), as node numbers of the store: list
/// `i` is node `first + i`'s. An insert adds its hints to the candidates its
/// search found, so that it can search with a smaller `ef`.
#[derive(Debug, Default)]
pub(crate) struct Hints {
    pub(crate) first: u32,
    pub(crate) lists: Vec<Vec<u32>>,
}

impl Hints {
    fn of(&self, node: u32) -> &[u32] {
        node.checked_sub(self.first)
            .and_then(|i| self.lists.get(i as usize))
            .map_or(&[], Vec::as_slice)
    }
}

/// One insert's (or one batch's) view of the store, the rows and the metric.
struct Inserter<'a, R, D> {
    store: &'a LinkStore,
    rows: &'a R,
    dist: &'a D,
    ef: usize,
    hints: Option<&'a Hints>,
}

impl<'a, R: Rows, D: Fn(&[f32], &[f32]) -> f32 + Sync> Inserter<'a, R, D> {
    fn new(store: &'a LinkStore, rows: &'a R, dist: &'a D, ef_construction: usize) -> Self {
        Inserter {
            store,
            rows,
            dist,
            ef: ef_construction.max(store.m),
            hints: None,
        }
    }

    fn dist_rows(&self, a: u32, b: u32) -> f32 {
        (self.dist)(self.rows.row(a), self.rows.row(b))
    }

    /// Copies `node`'s list at `level` into `buf` (empty if it has none).
    fn copy_links(&self, node: u32, level: u8, buf: &mut Vec<u32>) {
        buf.clear();
        buf.extend(self.store.neighbours(node, level));
    }

    fn insert(&self, row: u32) {
        let store = self.store;
        assert!(
            (row as usize) < store.capacity(),
            "node {row} is past the store's capacity {}",
            store.capacity()
        );
        let level = store.levels[row as usize];
        let query = self.rows.row(row);
        let mut guard = lock(&store.entry);
        let Some((entry, top)) = *guard else {
            store.set_entry(&mut guard, (row, level));
            return;
        };
        // Hold the entry lock through the insert only if this node will
        // become the new entry point.
        let promote = if level > top {
            Some(guard)
        } else {
            drop(guard);
            None
        };

        let mut buf = Vec::with_capacity(2 * store.m + 1);
        let mut cur = Cand {
            d: (self.dist)(query, self.rows.row(entry)),
            id: entry,
        };
        for l in (level.saturating_add(1)..=top).rev() {
            loop {
                let mut moved = false;
                self.copy_links(cur.id, l, &mut buf);
                for &n in &buf {
                    let d = (self.dist)(query, self.rows.row(n));
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

        for l in (0..=level.min(top)).rev() {
            let mut found = with_visited(store.capacity(), |v| {
                self.search_level(query, cur, l, v, &mut buf)
            });
            if l == 0 {
                self.add_hints(row, &mut found);
            }
            let chosen: Vec<u32> = self.select(&found, store.m).iter().map(|c| c.id).collect();
            if let Some(slot) = store.slot(row, l) {
                let _node = lock(&store.locks[row as usize]);
                write(slot, &chosen);
            }
            for &c in &chosen {
                self.link_back(c, row, l);
            }
            if let Some(&nearest) = found.first() {
                cur = nearest;
            }
        }

        if let Some(mut guard) = promote {
            store.set_entry(&mut guard, (row, level));
        }
    }

    /// The `ef` nodes nearest `query` at `level` reachable from `start`,
    /// nearest first.
    fn search_level(
        &self,
        query: &[f32],
        start: Cand,
        level: u8,
        v: &mut Visited,
        buf: &mut Vec<u32>,
    ) -> Vec<Cand> {
        v.start(self.store.capacity());
        v.insert(start.id);
        v.near.push(Reverse(start));
        v.far.push(start);
        while let Some(Reverse(c)) = v.near.pop() {
            if v.far.len() >= self.ef && v.far.peek().is_some_and(|w| c.d > w.d) {
                break;
            }
            self.copy_links(c.id, level, buf);
            // Only rows not seen yet get a distance, so only they are
            // prefetched, one ahead of the kernel.
            buf.retain(|&n| v.insert(n));
            if let Some(&first) = buf.first() {
                prefetch_row(self.rows.row(first));
            }
            for (i, &n) in buf.iter().enumerate() {
                if let Some(&next) = buf.get(i + 1) {
                    prefetch_row(self.rows.row(next));
                    prefetch(self.store.level0.ptr(next as usize));
                }
                let d = (self.dist)(query, self.rows.row(n));
                if v.far.len() < self.ef || v.far.peek().is_some_and(|w| d < w.d) {
                    let cand = Cand { d, id: n };
                    v.near.push(Reverse(cand));
                    v.far.push(cand);
                    if v.far.len() > self.ef {
                        v.far.pop();
                    }
                }
            }
        }
        let mut found: Vec<Cand> = v.far.drain().collect();
        found.sort_unstable();
        found
    }

    /// Adds `row`'s hints to `found` (nearest first, kept so).
    fn add_hints(&self, row: u32, found: &mut Vec<Cand>) {
        let Some(hints) = self.hints else { return };
        let before = found.len();
        for &h in hints.of(row) {
            if h != row && !found.iter().any(|c| c.id == h) {
                found.push(Cand {
                    d: self.dist_rows(row, h),
                    id: h,
                });
            }
        }
        if found.len() > before {
            found.sort_unstable();
        }
    }

    /// Malkov's neighbour-selection heuristic over `cands` (nearest first,
    /// distances to the base node): keep a candidate only if it is nearer the
    /// base than every candidate already kept, up to `keep` of them. This
    /// favours links in diverse directions, which keeps clusters connected.
    fn select(&self, cands: &[Cand], keep: usize) -> Vec<Cand> {
        if cands.len() <= keep {
            return cands.to_vec();
        }
        let mut kept: Vec<Cand> = Vec::with_capacity(keep);
        for &c in cands {
            if kept.len() >= keep {
                break;
            }
            if kept.iter().all(|s| self.dist_rows(c.id, s.id) >= c.d) {
                kept.push(c);
            }
        }
        kept
    }

    /// Adds `row` to `node`'s list at `level`, re-pruning the list with the
    /// heuristic if it is full.
    fn link_back(&self, node: u32, row: u32, level: u8) {
        let Some(slot) = self.store.slot(node, level) else {
            return;
        };
        let cap = slot.len() - 1;
        let _node = lock(&self.store.locks[node as usize]);
        let mut current = Vec::with_capacity(cap + 1);
        current.extend(ids(slot));
        if current.contains(&row) {
            return;
        }
        current.push(row);
        if current.len() > cap {
            let mut cands: Vec<Cand> = current
                .iter()
                .map(|&id| Cand {
                    d: self.dist_rows(node, id),
                    id,
                })
                .collect();
            cands.sort_unstable();
            current = self.select(&cands, cap).iter().map(|c| c.id).collect();
        }
        write(slot, &current);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::search::search;
    use crate::graph::search::test_support::{recall, Aligned, Packed};
    use crate::synth::{clustered, clustered_queries};
    use std::sync::atomic::AtomicUsize;

    const DIM: usize = 32;

    fn l2(a: &[f32], b: &[f32]) -> f32 {
        crate::kernels::select().l2_squared(a, b)
    }

    /// `n` rows in 10 wide clusters, and 100 queries around the same centres.
    fn data(n: usize) -> (Packed, Vec<f32>) {
        let rows = Packed {
            data: clustered(n, DIM, 10, 0.5, 7),
            dim: DIM,
        };
        (rows, clustered_queries(100, DIM, 10, 0.5, 7, 8))
    }

    /// The first `len` rows of some rows: reading a row past them panics, so
    /// an insert that touched a node not yet committed would fail the test.
    struct Prefix<'a>(&'a Packed, usize);

    impl Rows for Prefix<'_> {
        fn len(&self) -> usize {
            self.1
        }

        fn row(&self, i: u32) -> &[f32] {
            assert!((i as usize) < self.1, "row {i} read before its commit");
            self.0.row(i)
        }
    }

    /// Recall@10 at ef 64 of `n` rows inserted commit by commit, 100 at a
    /// time, by `insert`.
    fn recall_after_commits(n: usize, insert: impl Fn(&LinkStore, Range<u32>, &Prefix<'_>)) -> f64 {
        let (rows, queries) = data(n);
        let store = LinkStore::new(n, &GraphParams::default());
        for start in (0..n as u32).step_by(100) {
            let end = (start + 100).min(n as u32);
            insert(&store, start..end, &Prefix(&rows, end as usize));
        }
        let view = store.view(n as u32, store.entry());
        recall(&view, &rows, l2, &queries, (10, 64), &|_| false)
    }

    #[test]
    fn levels_depend_only_on_the_seed_and_are_geometric() {
        let a = draw_levels(100_000, 16, 1);
        assert_eq!(a, draw_levels(100_000, 16, 1));
        assert_ne!(a, draw_levels(100_000, 16, 2));
        // P(level ≥ 1) = 1/m, P(level ≥ 2) = 1/m².
        let above = |l: u8| a.iter().filter(|&&x| x >= l).count() as f64 / a.len() as f64;
        assert!((above(1) - 1.0 / 16.0).abs() < 0.005, "{}", above(1));
        assert!((above(2) - 1.0 / 256.0).abs() < 0.001, "{}", above(2));
        assert!(a.iter().all(|&l| l <= MAX_LEVEL));
    }

    #[test]
    fn store_filled_by_single_inserts_commit_by_commit_has_recall_at_least_0_95() {
        let r = recall_after_commits(10_000, |store, nodes, rows| {
            for node in nodes {
                store.insert(node, rows, &l2, 200);
            }
        });
        eprintln!("recall@10 at ef=64, single inserts: {r:.4}");
        assert!(r >= 0.95, "recall {r}");
    }

    #[test]
    fn store_filled_by_insert_all_commit_by_commit_has_recall_at_least_0_95() {
        let r = recall_after_commits(10_000, |store, nodes, rows| {
            assert!(store.insert_all(nodes, rows, &l2, 200, None));
        });
        eprintln!("recall@10 at ef=64, parallel batches: {r:.4}");
        assert!(r >= 0.95, "recall {r}");
    }

    #[test]
    fn first_insert_into_an_empty_store_becomes_the_entry_point() {
        let (rows, _) = data(10);
        let store = LinkStore::new(10, &GraphParams::default());
        assert_eq!(store.entry(), None);
        store.insert(3, &rows, &l2, 16);
        assert_eq!(store.entry(), Some((3, store.levels[3])));
    }

    #[test]
    #[should_panic(expected = "past the store's capacity")]
    fn inserting_a_node_past_the_capacity_panics() {
        let (rows, _) = data(10);
        let store = LinkStore::new(5, &GraphParams::default());
        store.insert(0, &rows, &l2, 16);
        store.insert(5, &rows, &l2, 16);
    }

    #[test]
    fn view_of_an_older_snapshot_returns_only_its_nodes() {
        let (rows, queries) = data(1000);
        let store = LinkStore::new(1000, &GraphParams::default());
        assert!(store.insert_all(0..500, &rows, &l2, 100, None));
        let entry = store.entry();
        assert!(store.insert_all(500..1000, &rows, &l2, 100, None));
        let view = store.view(500, entry);
        let mut visited = Visited::new();
        for q in queries.chunks_exact(DIM) {
            let found = search(&view, &rows, &l2, q, 50, 64, &|_| false, &mut visited);
            // Later inserts re-pruned some of the old nodes' lists, and links
            // to nodes past the view are ignored, so the walk may reach
            // fewer than 50 (the growing segment then scans its rows).
            assert!(!found.is_empty() && found.len() <= 50);
            assert!(found.iter().all(|&(_, n)| n < 500), "{found:?}");
        }
    }

    #[test]
    fn readers_searching_while_the_writer_inserts_see_only_inserted_nodes() {
        const N: u32 = 5_000;
        let (rows, queries) = data(N as usize);
        let store = LinkStore::new(N as usize, &GraphParams::default());
        // What a snapshot records: the nodes it holds and the entry point.
        let snapshot = Mutex::new((0u32, None));
        let done = AtomicBool::new(false);
        let searches: usize = std::thread::scope(|s| {
            let readers: Vec<_> = (0..3)
                .map(|t| {
                    let (store, rows, queries) = (&store, &rows, &queries);
                    let (snapshot, done) = (&snapshot, &done);
                    s.spawn(move || {
                        let mut visited = Visited::new();
                        let mut searches = 0;
                        while !done.load(Ordering::Acquire) {
                            let (limit, entry) = *lock(snapshot);
                            let view = store.view(limit, entry);
                            for q in queries.chunks_exact(DIM).skip(t).step_by(10) {
                                let found =
                                    search(&view, rows, &l2, q, 10, 32, &|_| false, &mut visited);
                                assert_eq!(found.len(), 10.min(limit as usize));
                                assert!(found.iter().all(|&(_, n)| n < limit), "{found:?}");
                                assert!(found.windows(2).all(|w| w[0] <= w[1]), "{found:?}");
                                searches += 1;
                            }
                        }
                        searches
                    })
                })
                .collect();
            for start in (0..N).step_by(100) {
                let end = start + 100;
                assert!(store.insert_all(start..end, &Prefix(&rows, end as usize), &l2, 100, None));
                *lock(&snapshot) = (end, store.entry());
            }
            done.store(true, Ordering::Release);
            readers.into_iter().map(|r| r.join().unwrap()).sum()
        });
        eprintln!("{searches} searches raced the inserts");
        assert!(searches > 0);
    }

    #[test]
    fn to_graph_of_a_prefix_links_only_below_its_length_and_decodes() {
        let (rows, _) = data(3000);
        let params = GraphParams {
            m: 4,
            ..GraphParams::default()
        };
        let store = LinkStore::new(3000, &params);
        assert!(store.insert_all(0..3000, &rows, &l2, 40, None));
        let (entry, _) = store.entry().unwrap();
        assert!(
            entry > 0,
            "the prefix below the entry point must not be empty"
        );
        // `entry` as a length: the store's entry point is past the prefix.
        for len in [1, 1500, entry as usize, 3000] {
            let g = store.to_graph(len, &rows, &l2);
            assert_eq!(g.len(), len);
            for (node, lists) in g.links.iter().enumerate() {
                assert_eq!(lists.len(), 1 + usize::from(store.levels[node]));
                for list in lists {
                    assert!(list.iter().all(|&x| (x as usize) < len), "{node}: {list:?}");
                }
            }
            let top = g.entry_point().unwrap();
            assert!((top as usize) < len);
            assert_eq!(g.links[top as usize].len() - 1, usize::from(g.max_level()));
            assert!(g.reachable().iter().all(|&r| r), "len {len}");
            let bytes = Aligned::new(&g.encode());
            let view = GraphView::decode(bytes.bytes()).unwrap();
            assert_eq!(view.len(), len);
        }
    }

    #[test]
    fn from_view_then_to_graph_gives_back_the_graph() {
        let (rows, _) = data(2000);
        let params = GraphParams {
            m: 4,
            ..GraphParams::default()
        };
        let bytes = Aligned::new(&crate::graph::build(&rows, &l2, &params).encode());
        let view = GraphView::decode(bytes.bytes()).unwrap();
        for extra in [0, 500] {
            let store = LinkStore::from_view(&view, extra, &params);
            assert_eq!(store.capacity(), 2000 + extra);
            assert_eq!(store.m(), 4);
            assert_eq!(
                store.entry(),
                Some((view.entry_point().unwrap(), view.max_level()))
            );
            assert_eq!(store.to_graph(2000, &rows, &l2).encode(), bytes.bytes());
        }
    }

    #[test]
    fn insert_all_stops_early_and_returns_false_once_cancelled() {
        let (rows, _) = data(20_000);
        let store = LinkStore::new(20_000, &GraphParams::default());
        let cancel = AtomicBool::new(true);
        assert!(!store.insert_all(0..20_000, &rows, &l2, 200, Some(&cancel)));
        assert_eq!(store.entry(), None, "nothing is inserted once cancelled");

        // Cancelled mid-way: a full insert costs hundreds of millions of
        // distances; once the flag rises only the inserts under way finish.
        cancel.store(false, Ordering::Relaxed);
        let calls = AtomicUsize::new(0);
        let dist = |a: &[f32], b: &[f32]| {
            if calls.fetch_add(1, Ordering::Relaxed) == 100_000 {
                cancel.store(true, Ordering::Relaxed);
            }
            l2(a, b)
        };
        assert!(!store.insert_all(0..20_000, &rows, &dist, 200, Some(&cancel)));
        let calls = calls.load(Ordering::Relaxed);
        assert!(calls < 1_000_000, "{calls} distances after cancelling");
    }
}
