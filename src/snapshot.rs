//! The published, immutable state of a database and its lock-free publication.
//!
//! A [`Snapshot`] is one committed generation: the live sealed segments with
//! their deleted rows, the growing segment's rows, and a redb read transaction
//! pinned to the same commit for point lookups. It never changes; the writer
//! builds a new one after each commit and publishes it through
//! [`Published`], a crossbeam-epoch atomic pointer. Readers pin the epoch only
//! long enough to clone the `Arc`, so a search never holds a guard and never
//! waits for the writer.

use crate::db::DbInner;
use crate::error::{Error, Result};
use crate::graph;
use crate::kernels::Kernels;
use crate::manifest::{Location, Reader, State, GROWING_SEGMENT};
use crate::options::{Metric, Scorer};
use crate::segment::Segment;
use crossbeam_epoch::{self as epoch, Atomic, Owned};
use rayon::prelude::*;
use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashSet};
use std::sync::atomic::Ordering as AtomicOrdering;
use std::sync::Arc;
use std::time::Instant;

/// One search result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// The vector's id.
    pub id: u64,
    /// Its distance to the query; smaller is nearer (see [`Metric`]).
    pub distance: f32,
}

/// A stored vector and its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The vector (unit length for a cosine database).
    pub vector: Vec<f32>,
    /// The payload, if one was stored.
    pub payload: Option<Vec<u8>>,
}

/// How a search runs: [`Database::search_with`](crate::Database::search_with).
///
/// ```
/// use quiver::SearchParams;
/// let params = SearchParams::new(10).ef(128);
/// assert_eq!((params.k, params.ef, params.exact), (10, Some(128), false));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SearchParams {
    /// Number of results.
    pub k: usize,
    /// Candidate list size of the graph search (at least `k`); larger is
    /// slower and more accurate. `None`: the database's default
    /// ([`Options::ef_search`](crate::Options::ef_search)).
    pub ef: Option<usize>,
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
            exact: false,
        }
    }

    /// With candidate list size `ef`.
    pub fn ef(mut self, ef: usize) -> Self {
        self.ef = Some(ef);
        self
    }

    /// Exact (brute-force) or approximate.
    pub fn exact(mut self, exact: bool) -> Self {
        self.exact = exact;
        self
    }
}

/// A fixed-size set of bits: the deleted rows of a sealed segment.
#[derive(Debug, Clone, Default)]
pub(crate) struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    pub(crate) fn new(bits: usize) -> Self {
        Bitset {
            words: vec![0; bits.div_ceil(64)],
        }
    }

    #[inline]
    pub(crate) fn contains(&self, bit: usize) -> bool {
        self.words
            .get(bit / 64)
            .is_some_and(|w| w & (1 << (bit % 64)) != 0)
    }

    /// Sets `bit`; returns whether it was newly set.
    pub(crate) fn insert(&mut self, bit: usize) -> bool {
        match self.words.get_mut(bit / 64) {
            Some(w) => {
                let was = *w & (1 << (bit % 64)) != 0;
                *w |= 1 << (bit % 64);
                !was
            }
            None => false,
        }
    }
}

/// A sealed segment as one snapshot sees it.
#[derive(Debug, Clone)]
pub(crate) struct SealedView {
    pub(crate) segment: Arc<Segment>,
    pub(crate) deleted: Arc<Bitset>,
    pub(crate) live: usize,
}

impl SealedView {
    /// A segment just written: every row live.
    pub(crate) fn fresh(segment: Arc<Segment>) -> SealedView {
        let rows = segment.rows();
        SealedView {
            deleted: Arc::new(Bitset::new(rows)),
            live: rows,
            segment,
        }
    }
}

/// Rows the growing segment gained in one commit (or that were loaded at open).
#[derive(Debug)]
pub(crate) struct GrowingChunk {
    /// Growing row numbers, ascending.
    pub(crate) rows: Vec<u64>,
    /// User id of each row.
    pub(crate) ids: Vec<u64>,
    /// `dim` floats per row, packed.
    pub(crate) vectors: Vec<f32>,
}

/// The growing segment as one snapshot sees it.
#[derive(Debug, Clone, Default)]
pub(crate) struct GrowingView {
    /// Chunks in ascending row order.
    pub(crate) chunks: Vec<Arc<GrowingChunk>>,
    /// Growing rows deleted or replaced since their chunk was made.
    pub(crate) dead: Arc<HashSet<u64>>,
    pub(crate) live: usize,
}

impl GrowingView {
    /// The vector of growing row `row`, if the view holds it.
    pub(crate) fn vector(&self, row: u64, dim: usize) -> Option<&[f32]> {
        let c = self
            .chunks
            .partition_point(|c| c.rows.first().is_some_and(|&first| first <= row));
        let chunk = self.chunks.get(c.checked_sub(1)?)?;
        let i = chunk.rows.binary_search(&row).ok()?;
        chunk.vectors.get(i * dim..(i + 1) * dim)
    }

    /// Every live growing row: (row, id, vector).
    pub(crate) fn live_rows(&self, dim: usize) -> impl Iterator<Item = (u64, u64, &[f32])> {
        self.chunks.iter().flat_map(move |chunk| {
            chunk
                .rows
                .iter()
                .zip(&chunk.ids)
                .zip(chunk.vectors.chunks_exact(dim))
                .filter(|((row, _), _)| !self.dead.contains(row))
                .map(|((&row, &id), v)| (row, id, v))
        })
    }
}

/// The state of one committed generation. Immutable once published.
#[derive(Debug)]
pub(crate) struct SnapshotState {
    /// The manifest counters as of this commit.
    pub(crate) state: State,
    pub(crate) dim: usize,
    pub(crate) metric: Metric,
    /// Live sealed segments, sorted by id.
    pub(crate) segments: Vec<SealedView>,
    pub(crate) growing: GrowingView,
    pub(crate) reader: Reader,
    pub(crate) scorer: Scorer,
    /// The `ef` of a search that names none.
    pub(crate) ef_search: usize,
}

/// Rows scanned by one task of a parallel exact search.
const SCAN_TASK_ROWS: usize = 16_384;
/// Below this many rows an exact search runs on the calling thread only.
const PARALLEL_SCAN_ROWS: usize = 65_536;

impl SnapshotState {
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

    pub(crate) fn segment(&self, id: u64) -> Option<&SealedView> {
        self.segments
            .binary_search_by_key(&id, |s| s.segment.id())
            .ok()
            .map(|i| &self.segments[i])
    }

    /// Checks a query and returns it ready for the kernels (unit length for cosine).
    pub(crate) fn prepare_query(&self, query: &[f32]) -> Result<Vec<f32>> {
        prepare_vector(query, self.dim, self.metric, self.scorer.kernels)
    }

    #[inline]
    fn distance(&self, q: &[f32], v: &[f32]) -> f32 {
        self.scorer.distance(q, v)
    }

    /// The search `params` ask for.
    pub(crate) fn search_with(&self, query: &[f32], params: &SearchParams) -> Result<Vec<Hit>> {
        if params.exact {
            return self.search_exact(query, params.k);
        }
        if params.k == 0 {
            return Err(Error::ZeroK);
        }
        let q = self.prepare_query(query)?;
        let ef = params.ef.unwrap_or(self.ef_search).max(params.k);
        let mut top = TopK::new(params.k);
        for s in &self.segments {
            self.search_sealed(s, &q, params.k, ef, &mut top)?;
        }
        self.scan_growing(&q, &mut top);
        Ok(top.into_sorted())
    }

    /// Graph search of one sealed segment; deleted rows are walked through but
    /// never returned.
    fn search_sealed(
        &self,
        s: &SealedView,
        q: &[f32],
        k: usize,
        ef: usize,
        top: &mut TopK,
    ) -> Result<()> {
        let seg = &s.segment;
        seg.verify()?;
        let graph = seg.graph()?;
        let rows = seg.rows_view();
        let ids = seg.ids();
        let dist = |a: &[f32], b: &[f32]| self.scorer.distance(a, b);
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
    pub(crate) fn search_exact(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        if k == 0 {
            return Err(Error::ZeroK);
        }
        let q = self.prepare_query(query)?;
        for s in &self.segments {
            s.segment.verify()?;
        }
        let total = self.len();
        let top = if total < PARALLEL_SCAN_ROWS {
            let mut top = TopK::new(k);
            for s in &self.segments {
                self.scan_sealed(s, 0..s.segment.rows(), &q, &mut top);
            }
            self.scan_growing(&q, &mut top);
            top
        } else {
            let tasks: Vec<(usize, usize)> = self
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
                    let s = &self.segments[i];
                    let end = (start + SCAN_TASK_ROWS).min(s.segment.rows());
                    let mut top = TopK::new(k);
                    self.scan_sealed(s, start..end, &q, &mut top);
                    top
                })
                .reduce(|| TopK::new(k), TopK::merge);
            let mut growing = TopK::new(k);
            self.scan_growing(&q, &mut growing);
            sealed.merge(growing)
        };
        Ok(top.into_sorted())
    }

    fn scan_sealed(&self, s: &SealedView, rows: std::ops::Range<usize>, q: &[f32], top: &mut TopK) {
        let seg = &s.segment;
        let ids = seg.ids();
        let vectors = seg.vectors();
        let stride = seg.stride_floats();
        for row in rows {
            if s.deleted.contains(row) {
                continue;
            }
            let start = row * stride;
            let d = self.distance(q, &vectors[start..start + self.dim]);
            top.push(d, ids[row]);
        }
    }

    fn scan_growing(&self, q: &[f32], top: &mut TopK) {
        for (_, id, v) in self.growing.live_rows(self.dim) {
            top.push(self.distance(q, v), id);
        }
    }

    pub(crate) fn get(&self, id: u64) -> Result<Option<Record>> {
        let Some(Location { segment, row }) = self.reader.location(id)? else {
            return Ok(None);
        };
        let vector = if segment == GROWING_SEGMENT {
            self.growing.vector(row, self.dim).map(<[f32]>::to_vec)
        } else {
            match self.segment(segment) {
                Some(s) => {
                    s.segment.verify()?;
                    usize::try_from(row)
                        .ok()
                        .filter(|&r| r < s.segment.rows())
                        .map(|r| s.segment.row(r).to_vec())
                }
                None => None,
            }
        };
        let Some(vector) = vector else {
            return Err(Error::corrupted(
                self.reader.path(),
                format!("id {id} points at segment {segment} row {row}, which this snapshot does not hold"),
            ));
        };
        Ok(Some(Record {
            vector,
            payload: self.reader.payload(id)?,
        }))
    }
}

/// Validates `v` (dimension, finite values) and returns the copy the kernels
/// use: normalised to unit length for cosine.
pub(crate) fn prepare_vector(
    v: &[f32],
    dim: usize,
    metric: Metric,
    kernels: &Kernels,
) -> Result<Vec<f32>> {
    if v.len() != dim {
        return Err(Error::Dimension {
            expected: dim,
            got: v.len(),
        });
    }
    if let Some((position, &value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(Error::NonFinite { position, value });
    }
    let mut out = v.to_vec();
    if metric == Metric::Cosine {
        let norm = kernels.norm_squared(v).sqrt();
        if norm == 0.0 || !norm.is_finite() {
            return Err(Error::ZeroVector);
        }
        out.iter_mut().for_each(|x| *x /= norm);
    }
    Ok(out)
}

/// A search candidate, ordered by distance, then id (so ties are deterministic).
#[derive(Debug, Clone, Copy)]
struct Candidate {
    distance: f32,
    id: u64,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then(self.id.cmp(&other.id))
    }
}

/// The k smallest candidates seen so far (a max-heap of size k).
#[derive(Debug)]
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Candidate>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k.min(4096) + 1),
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, distance: f32, id: u64) {
        let c = Candidate { distance, id };
        if self.heap.len() < self.k {
            self.heap.push(c);
        } else if self.heap.peek().is_some_and(|worst| c < *worst) {
            self.heap.pop();
            self.heap.push(c);
        }
    }

    pub(crate) fn merge(mut self, other: TopK) -> TopK {
        for c in other.heap {
            self.push(c.distance, c.id);
        }
        self
    }

    pub(crate) fn into_sorted(self) -> Vec<Hit> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|c| Hit {
                id: c.id,
                distance: c.distance,
            })
            .collect()
    }
}

/// A consistent, immutable view of one committed generation of a database.
///
/// Cheap to clone and safe to share between threads. Every read through one
/// snapshot sees the same state, however many commits happen meanwhile; the
/// files it reads stay mapped until the last clone is dropped. A snapshot
/// keeps its database open (and the directory locked) until it is dropped,
/// even if every [`Database`](crate::Database) handle was dropped first.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub(crate) state: Arc<SnapshotState>,
    /// The database the snapshot came from. Holding it keeps the manifest
    /// (whose read transaction the snapshot reads payloads and ids through)
    /// and the directory lock open for as long as the snapshot lives, even
    /// after every `Database` handle is dropped; it also holds the query
    /// counters that every search updates.
    pub(crate) db: Arc<DbInner>,
}

impl Snapshot {
    /// The commit generation this snapshot shows (0 for a new database).
    pub fn generation(&self) -> u64 {
        self.state.state.generation
    }

    /// Number of live vectors.
    pub fn len(&self) -> usize {
        self.state.len()
    }

    /// Whether the snapshot holds no live vector.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `k` nearest live vectors to `query`, nearest first, by HNSW search
    /// of the sealed segments (at the database's default `ef`) and an exact
    /// scan of the growing segment.
    ///
    /// # Errors
    /// [`Error::ZeroK`], [`Error::Dimension`], [`Error::NonFinite`],
    /// [`Error::ZeroVector`] (cosine), or [`Error::Corrupted`] if a file it
    /// reads fails its checksum.
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        self.search_with(query, &SearchParams::new(k))
    }

    /// A search as `params` say: `k`, `ef`, or an exact scan.
    ///
    /// # Errors
    /// As [`Snapshot::search`].
    pub fn search_with(&self, query: &[f32], params: &SearchParams) -> Result<Vec<Hit>> {
        let start = Instant::now();
        let hits = self.state.search_with(query, params);
        self.db.queries.record(start.elapsed());
        hits
    }

    /// Runs many queries in parallel (rayon). `queries` holds them back to
    /// back, `dim` values each; the results come in the same order.
    ///
    /// # Errors
    /// As [`Snapshot::search`]; [`Error::Dimension`] if `queries` is not a
    /// whole number of vectors. The first failing query's error is returned.
    pub fn search_batch(&self, queries: &[f32], params: &SearchParams) -> Result<Vec<Vec<Hit>>> {
        let dim = self.state.dim;
        if !queries.len().is_multiple_of(dim) {
            return Err(Error::Dimension {
                expected: dim,
                got: queries.len() % dim,
            });
        }
        queries
            .par_chunks(dim)
            .map(|q| self.search_with(q, params))
            .collect()
    }

    /// The vector and payload stored under `id`, or `None`.
    ///
    /// # Errors
    /// [`Error::Corrupted`] if the file holding it is damaged; [`Error::Io`] or
    /// [`Error::Corrupted`] from the manifest.
    pub fn get(&self, id: u64) -> Result<Option<Record>> {
        self.state.get(id)
    }

    /// Whether `id` is live in this snapshot.
    ///
    /// # Errors
    /// As [`Snapshot::get`].
    pub fn contains(&self, id: u64) -> Result<bool> {
        Ok(self.state.reader.location(id)?.is_some())
    }

    /// Every live id, sealed segments first (in segment and row order), then
    /// the growing segment's. Reads the mapped id columns, not the manifest.
    pub fn ids(&self) -> Vec<u64> {
        let s = &self.state;
        let mut ids = Vec::with_capacity(s.len());
        for view in &s.segments {
            ids.extend(
                view.segment
                    .ids()
                    .iter()
                    .enumerate()
                    .filter(|(row, _)| !view.deleted.contains(*row))
                    .map(|(_, &id)| id),
            );
        }
        ids.extend(s.growing.live_rows(s.dim).map(|(_, id, _)| id));
        ids
    }
}

/// The current snapshot, swapped atomically by the writer.
#[derive(Debug)]
pub(crate) struct Published {
    current: Atomic<Arc<SnapshotState>>,
}

impl Published {
    pub(crate) fn new(state: Arc<SnapshotState>) -> Self {
        Published {
            current: Atomic::new(state),
        }
    }

    /// The current state. Pins the epoch only while cloning the `Arc`.
    #[allow(unsafe_code)]
    pub(crate) fn load(&self) -> Arc<SnapshotState> {
        let guard = epoch::pin();
        let shared = self.current.load(AtomicOrdering::Acquire, &guard);
        // `current` is set in `new` and only ever swapped for another non-null
        // pointer; `publish` retires old ones with `defer_destroy`.
        // SAFETY: non-null, and not destroyed while `guard` is pinned.
        let state = unsafe { shared.deref() };
        Arc::clone(state)
    }

    /// Makes `state` current. Readers that already loaded the old state keep it
    /// (their `Arc`); the old pointer is freed once no pinned reader can see it.
    #[allow(unsafe_code)]
    pub(crate) fn publish(&self, state: Arc<SnapshotState>) {
        let guard = epoch::pin();
        let old = self
            .current
            .swap(Owned::new(state), AtomicOrdering::AcqRel, &guard);
        // SAFETY: `old` was unlinked by the swap above, so no reader can load it
        // again; readers that loaded it before are pinned, and `defer_destroy`
        // waits for them to unpin.
        unsafe { guard.defer_destroy(old) };
        guard.flush();
    }
}

impl Drop for Published {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: `&mut self` means no thread can be loading `current` any more,
        // so the pointer can be taken back without a guard; it is non-null.
        unsafe {
            let current = self
                .current
                .load(AtomicOrdering::Acquire, epoch::unprotected());
            drop(current.into_owned());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topk_keeps_the_k_smallest_in_order() {
        let mut top = TopK::new(3);
        for (d, id) in [(5.0, 1), (1.0, 2), (3.0, 3), (0.5, 4), (9.0, 5)] {
            top.push(d, id);
        }
        let ids: Vec<u64> = top.into_sorted().iter().map(|h| h.id).collect();
        assert_eq!(ids, vec![4, 2, 3]);
    }

    #[test]
    fn topk_breaks_distance_ties_by_id() {
        let mut top = TopK::new(2);
        for id in [9, 3, 7] {
            top.push(1.0, id);
        }
        let ids: Vec<u64> = top.into_sorted().iter().map(|h| h.id).collect();
        assert_eq!(ids, vec![3, 7]);
    }

    #[test]
    fn bitset_sets_and_reports_bits() {
        let mut b = Bitset::new(130);
        assert!(b.insert(129));
        assert!(!b.insert(129));
        assert!(b.contains(129));
        assert!(!b.contains(128));
        assert!(!b.contains(1000));
    }

    #[test]
    fn prepare_vector_rejects_bad_input() {
        let k = crate::kernels::select();
        assert!(matches!(
            prepare_vector(&[1.0, 2.0], 3, Metric::L2, k),
            Err(Error::Dimension {
                expected: 3,
                got: 2
            })
        ));
        assert!(matches!(
            prepare_vector(&[1.0, f32::NAN], 2, Metric::L2, k),
            Err(Error::NonFinite { position: 1, .. })
        ));
        assert!(matches!(
            prepare_vector(&[0.0, 0.0], 2, Metric::Cosine, k),
            Err(Error::ZeroVector)
        ));
        let unit = prepare_vector(&[3.0, 4.0], 2, Metric::Cosine, k).unwrap();
        assert!((unit[0] - 0.6).abs() < 1e-6 && (unit[1] - 0.8).abs() < 1e-6);
    }
}
