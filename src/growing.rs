//! The growing segment: rows committed since the last seal, held in memory
//! and indexed by an HNSW graph that the writer extends as they commit.
//!
//! Rows sit in blocks of [`BLOCK_ROWS`]; a commit appends to the last block
//! (copying it first if an older snapshot still shares it) and adds blocks,
//! so a snapshot's view never changes under it. The graph is one
//! [`LinkStore`] shared by every view of this growing segment: the writer
//! inserts the new rows' nodes after their commit, and a view searches only
//! the nodes it holds (those below its `len`), from the entry point it
//! recorded, so links a later commit added are ignored.
//!
//! The segment is bounded by rows *appended*: once they would pass its
//! capacity, the commit seals it (writes its rows and this very graph as a
//! segment, with tombstones for its dead rows) and starts a new one. Deleted
//! and replaced rows are marked in a bitset.

use crate::bitset::Bitset;
use crate::graph::{self, Graph, GraphParams, LinkStore, Rows};
use crate::options::Scorer;
use std::sync::Arc;

/// Rows per block of the growing segment.
pub(crate) const BLOCK_ROWS: usize = 256;

/// Up to [`BLOCK_ROWS`] rows of the growing segment.
#[derive(Debug, Clone, Default)]
struct Block {
    /// `dim` floats per row, packed.
    vectors: Vec<f32>,
    /// User id of each row.
    ids: Vec<u64>,
    /// Growing row number of each row (the manifest's key), ascending.
    rows: Vec<u64>,
    /// (user id, index in this block) of each row, sorted: finds an id's
    /// rows without a scan.
    by_id: Vec<(u64, u16)>,
}

impl Block {
    fn push(&mut self, row: u64, id: u64, vector: &[f32]) {
        let i = u16::try_from(self.ids.len()).expect("a block holds at most BLOCK_ROWS rows");
        let at = self.by_id.partition_point(|&e| e < (id, i));
        self.by_id.insert(at, (id, i));
        self.vectors.extend_from_slice(vector);
        self.ids.push(id);
        self.rows.push(row);
    }

    /// Indexes in this block of the rows holding `id`.
    fn indexes_of(&self, id: u64) -> impl Iterator<Item = usize> + '_ {
        let from = self.by_id.partition_point(|&(i, _)| i < id);
        self.by_id[from..]
            .iter()
            .take_while(move |&&(i, _)| i == id)
            .map(|&(_, at)| usize::from(at))
    }
}

/// A row to append: (growing row number, user id, vector).
pub(crate) type NewRow<'a> = (u64, u64, &'a [f32]);

/// The growing segment as one snapshot sees it.
#[derive(Debug, Clone)]
pub(crate) struct GrowingView {
    dim: usize,
    /// The graph over every node appended so far (also those past `len`,
    /// appended after this view was made); `None` before the first row.
    index: Option<Arc<LinkStore>>,
    blocks: Vec<Arc<Block>>,
    /// Nodes this view holds: nodes `0..len`, in append order.
    len: usize,
    /// The graph's entry point when this view was made.
    entry: Option<(u32, u8)>,
    /// Nodes deleted or replaced.
    dead: Arc<Bitset>,
    /// Nodes not dead.
    pub(crate) live: usize,
}

/// The rows of a growing view, as the graph reads them.
#[derive(Clone, Copy)]
pub(crate) struct GrowingRows<'a> {
    blocks: &'a [Arc<Block>],
    dim: usize,
    len: usize,
}

impl Rows for GrowingRows<'_> {
    #[inline]
    fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn row(&self, i: u32) -> &[f32] {
        let i = i as usize;
        let at = (i % BLOCK_ROWS) * self.dim;
        &self.blocks[i / BLOCK_ROWS].vectors[at..at + self.dim]
    }
}

impl GrowingView {
    /// An empty growing segment of `dim`-dimensional rows.
    pub(crate) fn empty(dim: usize) -> GrowingView {
        GrowingView {
            dim,
            index: None,
            blocks: Vec::new(),
            len: 0,
            entry: None,
            dead: Arc::default(),
            live: 0,
        }
    }

    /// Nodes held, dead ones included: what counts against the capacity.
    pub(crate) fn appended(&self) -> usize {
        self.len
    }

    /// Room for this many more rows before the segment must be sealed.
    pub(crate) fn room(&self) -> usize {
        self.index
            .as_ref()
            .map_or(usize::MAX, |s| s.capacity() - self.len)
    }

    pub(crate) fn rows(&self) -> GrowingRows<'_> {
        GrowingRows {
            blocks: &self.blocks,
            dim: self.dim,
            len: self.len,
        }
    }

    fn at(&self, node: usize) -> (&Block, usize) {
        (&self.blocks[node / BLOCK_ROWS], node % BLOCK_ROWS)
    }

    /// The node holding growing row `row`, if this view holds it.
    pub(crate) fn node_of(&self, row: u64) -> Option<usize> {
        let b = self
            .blocks
            .partition_point(|b| b.rows.first().is_some_and(|&first| first <= row));
        let block = self.blocks.get(b.checked_sub(1)?)?;
        let i = block.rows.binary_search(&row).ok()?;
        Some((b - 1) * BLOCK_ROWS + i)
    }

    /// The vector of growing row `row`, if this view holds it live.
    pub(crate) fn vector(&self, row: u64) -> Option<&[f32]> {
        let node = self.node_of(row).filter(|&n| !self.dead.contains(n))?;
        let (block, i) = self.at(node);
        block.vectors.get(i * self.dim..(i + 1) * self.dim)
    }

    /// The id of growing row `row`, if this view holds it live.
    pub(crate) fn live_id(&self, row: u64) -> Option<u64> {
        let node = self.node_of(row).filter(|&n| !self.dead.contains(n))?;
        let (block, i) = self.at(node);
        Some(block.ids[i])
    }

    /// The growing row holding `id` live in this view, if any.
    pub(crate) fn live_row_of(&self, id: u64) -> Option<u64> {
        self.blocks.iter().enumerate().find_map(|(b, block)| {
            block
                .indexes_of(id)
                .find(|&i| !self.dead.contains(b * BLOCK_ROWS + i))
                .map(|i| block.rows[i])
        })
    }

    /// Every node as (row, id, vector, live), in append order.
    pub(crate) fn nodes(&self) -> impl Iterator<Item = (u64, u64, &[f32], bool)> {
        (0..self.len).map(move |n| {
            let (block, i) = self.at(n);
            let v = &block.vectors[i * self.dim..(i + 1) * self.dim];
            (block.rows[i], block.ids[i], v, !self.dead.contains(n))
        })
    }

    /// Every live row: (row, id, vector).
    pub(crate) fn live_rows(&self) -> impl Iterator<Item = (u64, u64, &[f32])> {
        self.nodes()
            .filter(|n| n.3)
            .map(|(row, id, v, _)| (row, id, v))
    }

    /// Whether node `node` is dead.
    pub(crate) fn is_dead(&self, node: usize) -> bool {
        self.dead.contains(node)
    }

    /// Marks the nodes of growing rows `rows` dead (rows this view does not
    /// hold are ignored).
    pub(crate) fn remove(&mut self, rows: &[u64]) {
        if rows.is_empty() {
            return;
        }
        let nodes: Vec<usize> = rows.iter().filter_map(|&r| self.node_of(r)).collect();
        let dead = Arc::make_mut(&mut self.dead);
        for n in nodes {
            if dead.insert(n) {
                self.live -= 1;
            }
        }
    }

    /// Appends `new` and inserts them into the graph (in parallel when there
    /// are many). A view without a graph gets one with room for `capacity`
    /// rows. The caller checked [`GrowingView::room`].
    pub(crate) fn append(
        &mut self,
        new: &[NewRow<'_>],
        capacity: usize,
        scorer: Scorer,
        params: &GraphParams,
    ) {
        if new.is_empty() {
            return;
        }
        if self.index.is_none() {
            let capacity = capacity.max(new.len());
            self.index = Some(Arc::new(LinkStore::new(capacity, params)));
            self.dead = Arc::new(Bitset::new(capacity));
        }
        let Some(index) = self.index.clone() else {
            return;
        };
        let first = self.len;
        for &(row, id, vector) in new {
            if self.len.is_multiple_of(BLOCK_ROWS) {
                self.blocks.push(Arc::new(Block {
                    vectors: Vec::with_capacity(BLOCK_ROWS * self.dim),
                    ids: Vec::with_capacity(BLOCK_ROWS),
                    rows: Vec::with_capacity(BLOCK_ROWS),
                    by_id: Vec::with_capacity(BLOCK_ROWS),
                }));
            }
            let block = self.blocks.last_mut().map(Arc::make_mut);
            let block = block.expect("a block was just pushed if none had room");
            block.push(row, id, vector);
            self.len += 1;
        }
        self.live += new.len();
        let rows = self.rows();
        let dist = |a: &[f32], b: &[f32]| scorer.distance(a, b);
        index.insert_all(
            first as u32..self.len as u32,
            &rows,
            &dist,
            params.ef_construction,
            None,
        );
        self.entry = index.entry();
    }

    /// The graph over every node of this view, for sealing it as a segment.
    pub(crate) fn graph(&self, scorer: Scorer) -> Graph {
        let dist = |a: &[f32], b: &[f32]| scorer.distance(a, b);
        match &self.index {
            Some(index) => index.to_graph(self.len, &self.rows(), &dist),
            None => graph::build(&self.rows(), &dist, &GraphParams::default()),
        }
    }

    /// Graph search of the live rows: up to `k` (distance, id), nearest first.
    pub(crate) fn search(
        &self,
        scorer: Scorer,
        q: &[f32],
        k: usize,
        ef: usize,
        out: &mut dyn FnMut(f32, u64),
    ) {
        let Some(index) = &self.index else { return };
        if self.live == 0 {
            return;
        }
        let view = index.view(self.len as u32, self.entry);
        let rows = self.rows();
        let dist = |a: &[f32], b: &[f32]| scorer.distance(a, b);
        let skip = |node: u32| self.dead.contains(node as usize);
        let hits = graph::with_visited(self.len, |visited| {
            graph::search(&view, &rows, &dist, q, k, ef, &skip, visited)
        });
        if hits.len() < k.min(self.live) {
            // Later commits' inserts re-prune the lists of the nodes this
            // view holds, and a view ignores links to nodes it does not
            // hold: an old snapshot's walk can reach too few rows. Its rows
            // are at most one growing segment's: scan them.
            for (_, id, v, live) in self.nodes() {
                if live {
                    out(dist(q, v), id);
                }
            }
            return;
        }
        for (d, node) in hits {
            let (block, i) = self.at(node as usize);
            out(d, block.ids[i]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::Metric;

    #[test]
    fn live_row_of_finds_an_ids_live_row_across_blocks_and_replacements() {
        let scorer = Scorer {
            metric: Metric::L2,
            kernels: crate::kernels::select(),
        };
        let params = GraphParams::default();
        let mut g = GrowingView::empty(2);
        // 600 rows over three blocks; ids repeat every 300 rows, so ids
        // 0..300 each have two rows, in different blocks.
        let vectors: Vec<[f32; 2]> = (0..600).map(|i| [i as f32, (i % 7) as f32]).collect();
        let new: Vec<NewRow<'_>> = (0..600u64)
            .map(|r| (r + 10, (r * 7919) % 300, &vectors[r as usize][..]))
            .collect();
        g.append(&new, 1000, scorer, &params);
        // The first row of every id is dead (replaced by the second).
        g.remove(&(10..310).collect::<Vec<u64>>());
        for r in 310..610u64 {
            let id = ((r - 10) * 7919) % 300;
            assert_eq!(g.live_row_of(id), Some(r), "id {id}");
            assert_eq!(g.live_id(r), Some(id));
        }
        assert_eq!(g.live_row_of(300), None);
        g.remove(&[310]);
        assert_eq!(g.live_row_of(0), None);
    }
}
