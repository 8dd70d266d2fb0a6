//! # Quiver
//!
//! An embedded, persistent vector database. A database is a directory: vectors
//! live in memory-mapped, 64-byte-aligned column files read in place by SIMD
//! distance kernels; ids, tombstones, payloads and the manifest of live
//! segments live in a [redb](https://docs.rs/redb) file. One writer commits
//! atomically and durably; any number of threads search lock-free on immutable
//! snapshots, and any number of other processes read the directory through
//! [`Database::open_read_only`] handles, which never write to it.
//!
//! ```
//! use quiver::{Database, Metric, Options};
//! # fn main() -> quiver::Result<()> {
//! # let tmp = tempfile::tempdir().unwrap();
//! # let dir = tmp.path().join("vectors.quiver");
//! let db = Database::open(&dir, Options::new(4, Metric::Cosine))?;
//!
//! let mut writer = db.writer()?;
//! writer.upsert(42, &[0.1, 0.9, 0.0, 0.2], Some(b"payload bytes"))?;
//! writer.upsert_batch(&[1, 2], &[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0], None)?;
//! writer.delete(2)?;
//! let info = writer.commit()?; // atomic and durable when it returns
//! assert_eq!(info.upserted, 2);
//!
//! let hits = db.search(&[0.0, 1.0, 0.0, 0.1], 2)?;
//! assert_eq!(hits[0].id, 42);
//! assert_eq!(db.len(), 2);
//! drop((writer, db));
//!
//! // Reopening maps the files again; nothing is rebuilt.
//! let db = Database::open(&dir, Options::new(4, Metric::Cosine))?;
//! assert_eq!(db.get(42)?.unwrap().payload.as_deref(), Some(&b"payload bytes"[..]));
//! # Ok(()) }
//! ```
//!
//! Distances follow one convention for every [`Metric`]: smaller is nearer.
//! `docs/FORMAT.md` describes the files byte by byte and the commit protocol.

#![deny(unsafe_code)]
#![warn(missing_docs)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod bitset;
mod calibrate;
pub mod compact;
mod db;
mod error;
mod format;
pub mod fs;
pub mod graph;
mod growing;
mod inner;
pub mod kernels;
mod manifest;
mod merge;
mod merger;
mod options;
mod publish;
mod query_stats;
mod rng;
mod search;
mod segment;
mod snapshot;
mod state;
pub mod synth;
mod topk;
mod vector;
mod verify;
mod writer;

/// The README's example, compiled and run as a doctest.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;

pub use calibrate::DEFAULT_TARGET_RECALL;
pub use compact::{compact, compact_with_progress, CompactOptions, CompactReport, PlannedSegment};
pub use db::{Database, Stats};
pub use error::{Error, Result};
pub use format::{FORMAT_VERSION, MANIFEST_VERSION};
pub use merge::{MAX_SEGMENT_ROWS, MERGE_RATIO, VACUUM_SHARE};
pub use options::{
    Metric, Options, DEFAULT_EF_CONSTRUCTION, DEFAULT_EF_SEARCH, DEFAULT_GROWING_THRESHOLD,
    DEFAULT_M, MAX_EF, MAX_M, MIN_M,
};
#[doc(hidden)]
pub use query_stats::QueryStats;
pub use search::SearchParams;
pub use snapshot::{Record, Snapshot};
pub use topk::Hit;
pub use verify::{verify, VerifyReport};
pub use writer::{CommitInfo, Writer, MAX_PAYLOAD};
