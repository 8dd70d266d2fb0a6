//! Parallel construction of an HNSW graph (Malkov & Yashunin, 2016/2018).
//!
//! Levels are drawn up front from a seeded generator (`⌊−ln U · 1/ln m⌋`), so
//! they depend only on the seed and the row count. The first row is inserted
//! alone and becomes the entry point; the rest are inserted in parallel with
//! rayon. Level-0 lists live in one flat array of fixed slots that readers
//! load without locking (see [`Level0`]); each node has a mutex that guards
//! writes to its slot and its upper-level lists. A thread holds at most one
//! node lock at a time, so inserts cannot deadlock. The entry point and top
//! level sit behind one more lock, read once per insert and held for a whole
//! insert only by the rare node that raises the top level (as hnswlib does),
//! never taken while a node lock is held.
//!
//! On a single rayon thread rows are inserted in order and the build is
//! deterministic; in parallel the links depend on thread timing.

use super::layout::{MAX_LEVEL, MAX_M};
use super::search::{prefetch, prefetch_row, with_visited, Cand, Rows, Visited};
use crate::synth::SplitMix64;
use rayon::prelude::*;
use std::cmp::Reverse;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

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
    let m = params.m.clamp(2, MAX_M);
    let levels = draw_levels(n, m, params.seed);
    if n == 0 {
        return Graph {
            m,
            links: Vec::new(),
            entry: None,
            max_level: 0,
        };
    }
    let builder = Builder {
        rows,
        dist,
        m,
        ef: params.ef_construction.max(m),
        nodes: levels
            .iter()
            .map(|&l| Mutex::new(vec![Vec::new(); usize::from(l)]))
            .collect(),
        level0: Level0::new(n, 2 * m),
        levels,
        entry: Mutex::new((0, 0)),
    };
    *lock(&builder.entry) = (0, builder.levels[0]);
    (1..n as u32)
        .into_par_iter()
        .for_each(|row| builder.insert(row));
    let (entry, max_level) = *lock(&builder.entry);
    let mut graph = Graph {
        m,
        links: builder.into_links(),
        entry: Some(entry),
        max_level,
    };
    graph.connect_unreachable(rows, dist);
    graph
}

impl Graph {
    /// The level-0 nodes reachable from the entry point.
    fn reachable(&self) -> Vec<bool> {
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
    fn connect_unreachable<R: Rows, D: Fn(&[f32], &[f32]) -> f32>(&mut self, rows: &R, dist: &D) {
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

/// Locks `m`, ignoring poisoning: a panicking insert leaves lists that are
/// still valid (each update is a single push or a swap of the whole list).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every node's level-0 list in one flat array of fixed slots (a count, then
/// `2m` ids), as hnswlib keeps them: one contiguous read per node, no pointer
/// to chase, and nothing to lock for a reader.
///
/// Writers hold the node's mutex; readers load without one. A reader racing a
/// writer may see a mix of the old and new list, which is harmless here: every
/// slot always holds some valid row (slots start at 0, and the count is
/// published after the ids it covers), and HNSW only needs *good* neighbours.
struct Level0 {
    cap: usize,
    slots: Vec<AtomicU32>,
}

impl Level0 {
    fn new(n: usize, cap: usize) -> Level0 {
        Level0 {
            cap,
            slots: (0..n * (cap + 1)).map(|_| AtomicU32::new(0)).collect(),
        }
    }

    fn slot(&self, node: u32) -> &[AtomicU32] {
        let at = node as usize * (self.cap + 1);
        &self.slots[at..at + self.cap + 1]
    }

    /// Appends `node`'s list to `buf`.
    fn read(&self, node: u32, buf: &mut Vec<u32>) {
        let slot = self.slot(node);
        let len = (slot[0].load(Ordering::Acquire) as usize).min(self.cap);
        buf.extend(slot[1..=len].iter().map(|x| x.load(Ordering::Relaxed)));
    }

    /// Replaces `node`'s list; the caller holds the node's lock.
    fn write(&self, node: u32, list: &[u32]) {
        let slot = self.slot(node);
        for (s, &x) in slot[1..].iter().zip(list) {
            s.store(x, Ordering::Relaxed);
        }
        slot[0].store(list.len() as u32, Ordering::Release);
    }
}

struct Builder<'r, R, D> {
    rows: &'r R,
    dist: &'r D,
    m: usize,
    ef: usize,
    levels: Vec<u8>,
    /// Each node's lock, and its lists above level 0 (`upper[l - 1]`).
    nodes: Vec<Mutex<Vec<Vec<u32>>>>,
    level0: Level0,
    /// The entry point and the top level.
    entry: Mutex<(u32, u8)>,
}

impl<R: Rows, D: Fn(&[f32], &[f32]) -> f32 + Sync> Builder<'_, R, D> {
    fn dist_rows(&self, a: u32, b: u32) -> f32 {
        (self.dist)(self.rows.row(a), self.rows.row(b))
    }

    /// Copies `node`'s list at `level` into `buf` (empty if it has none).
    fn copy_links(&self, node: u32, level: u8, buf: &mut Vec<u32>) {
        buf.clear();
        if level == 0 {
            self.level0.read(node, buf);
            return;
        }
        let upper = lock(&self.nodes[node as usize]);
        if let Some(list) = upper.get(usize::from(level) - 1) {
            buf.extend_from_slice(list);
        }
    }

    /// The lists of every node, level 0 first.
    fn into_links(self) -> Vec<Vec<Vec<u32>>> {
        let level0 = self.level0;
        self.nodes
            .into_iter()
            .enumerate()
            .map(|(node, upper)| {
                let mut lists = vec![Vec::new()];
                level0.read(node as u32, &mut lists[0]);
                lists.extend(upper.into_inner().unwrap_or_else(PoisonError::into_inner));
                lists
            })
            .collect()
    }

    fn insert(&self, row: u32) {
        let level = self.levels[row as usize];
        let query = self.rows.row(row);
        let guard = lock(&self.entry);
        let (entry, top) = *guard;
        // Hold the entry lock through the insert only if this node will
        // become the new entry point.
        let promote = if level > top {
            Some(guard)
        } else {
            drop(guard);
            None
        };

        let mut buf = Vec::with_capacity(2 * self.m + 1);
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
            let found = with_visited(self.nodes.len(), |v| {
                self.search_level(query, cur, l, v, &mut buf)
            });
            let chosen: Vec<u32> = self.select(&found, self.m).iter().map(|c| c.id).collect();
            {
                let mut upper = lock(&self.nodes[row as usize]);
                match l {
                    0 => self.level0.write(row, &chosen),
                    _ => upper[usize::from(l) - 1] = chosen.clone(),
                }
            }
            for &c in &chosen {
                self.link_back(c, row, l);
            }
            if let Some(&nearest) = found.first() {
                cur = nearest;
            }
        }

        if let Some(mut guard) = promote {
            *guard = (row, level);
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
        v.start(self.nodes.len());
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
                    prefetch(self.level0.slot(next).as_ptr());
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
        let cap = if level == 0 { 2 * self.m } else { self.m };
        let mut upper = lock(&self.nodes[node as usize]);
        let mut current = Vec::with_capacity(cap + 1);
        match level {
            0 => self.level0.read(node, &mut current),
            _ => match upper.get(usize::from(level) - 1) {
                Some(list) => current.extend_from_slice(list),
                None => return,
            },
        }
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
        match level {
            0 => self.level0.write(node, &current),
            _ => upper[usize::from(level) - 1] = current,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::search::test_support::Packed;
    use crate::synth::clustered;

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
}
