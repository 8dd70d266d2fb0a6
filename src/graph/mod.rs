//! An HNSW graph (Malkov & Yashunin) over the rows of a segment: built in
//! memory in parallel, persisted as a links file, searched in place; or grown
//! in memory commit by commit while readers search it.
//!
//! ```text
//!                     GraphParams
//!                          ▼
//!   rows: impl Rows ──► LinkStore ◄── insert / insert_all (writer, rayon)
//!     build() ─────────►   │   ▲
//!     extend(&GraphView)─► │   └── LinkStore::from_view(GraphView)
//!                          │ view(limit, entry): StoreView ──┐ lock-free readers
//!                 to_graph │                                 │
//!                          ▼                                 │
//!                        Graph ──encode()──► bytes (links file)
//!                                                   │ GraphView::decode()
//!                                                   ▼ validated, zero-copy
//!   query, k, ef, skip ───────► search(&impl Links, rows, ..) ◄┘
//!                        Visited / with_visited   (scratch reused per thread)
//! ```
//!
//! | file        | role |
//! |-------------|------|
//! | `build.rs`  | [`GraphParams`], [`Graph`], [`build`], `extend` (insert new rows into a persisted graph), the repair pass that leaves every node reachable |
//! | `store.rs`  | `LinkStore`: levels drawn up front, lists in flat atomic slots read without locks, concurrent insertion and the neighbour-selection heuristic; `StoreView`, a searchable prefix of it |
//! | `layout.rs` | the links-file byte map, [`Graph::encode`], [`GraphView::decode`] (validates everything), [`LinksError`] |
//! | `search.rs` | [`Rows`], [`Links`], [`search`]: greedy descent and the level-0 best-first loop; [`Visited`], [`with_visited`] |
//!
//! ```
//! use quiver::graph::{build, search, with_visited, GraphParams, GraphView, Rows};
//!
//! struct Packed(Vec<[f32; 2]>);
//! impl Rows for Packed {
//!     fn len(&self) -> usize { self.0.len() }
//!     fn row(&self, i: u32) -> &[f32] { &self.0[i as usize] }
//! }
//!
//! let rows = Packed((0..100).map(|i| [i as f32, 0.0]).collect());
//! let k = quiver::kernels::select();
//! let dist = |a: &[f32], b: &[f32]| k.l2_squared(a, b);
//! let bytes = build(&rows, &dist, &GraphParams::default()).encode();
//! let view = GraphView::decode(&bytes).expect("just encoded");
//! let hits = with_visited(view.len(), |v| {
//!     search(&view, &rows, &dist, &[41.8, 0.0], 2, 64, &|_| false, v)
//! });
//! assert_eq!(hits.iter().map(|h| h.1).collect::<Vec<_>>(), [42, 41]);
//! ```

mod build;
mod layout;
mod search;
mod store;

pub use build::{build, Graph, GraphParams};
/// Not API: public for the benchmarks.
#[doc(hidden)]
pub use build::{extend, extend_hinted};
pub use layout::{
    GraphView, LinksError, LinksLayout, LINKS_HEADER_LEN, LINKS_MAGIC, LINKS_VERSION,
};
pub(crate) use search::Hiding;
pub use search::{search, with_visited, Links, Rows, Visited};
pub(crate) use store::LinkStore;
