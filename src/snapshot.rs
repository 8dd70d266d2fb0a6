//! [`Snapshot`]: the public, consistent view of one committed generation, and
//! its reads (search, point lookups, the id listing).

use crate::error::{Error, Result};
use crate::inner::DbInner;
use crate::manifest::{Location, GROWING_SEGMENT};
use crate::options::Options;
use crate::search::{self, SearchParams};
use crate::state::SnapshotState;
use crate::topk::Hit;
use rayon::prelude::*;
use std::sync::Arc;
use std::time::Instant;

/// A stored vector and its payload.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    /// The vector (unit length for a cosine database).
    pub vector: Vec<f32>,
    /// The payload, if one was stored.
    pub payload: Option<Vec<u8>>,
}

/// A consistent, immutable view of one committed generation of a database.
///
/// Cheap to clone and safe to share between threads. Every read through one
/// snapshot sees the same state, however many commits and background merges
/// happen meanwhile; the files it reads stay mapped until the last clone is
/// dropped. A snapshot keeps its database open (and the directory locked)
/// until it is dropped, even if every [`Database`](crate::Database) handle
/// was dropped first.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub(crate) state: Arc<SnapshotState>,
    /// The database the snapshot came from. Holding it keeps the manifest
    /// (whose read transaction the snapshot reads payloads and ids through)
    /// and the directory lock open for as long as the snapshot lives; it
    /// also holds the query counters that every search updates.
    pub(crate) db: Arc<DbInner>,
}

impl Snapshot {
    /// The commit generation this snapshot shows (0 for a new database):
    /// the number of commits that changed data. Background merges, which
    /// change only how rows are stored, keep it.
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

    /// The options of the database handle this snapshot came from: those
    /// stored at creation for [`Database::open_existing`](crate::Database::open_existing).
    pub fn options(&self) -> &Options {
        &self.db.options
    }

    /// The `k` nearest live vectors to `query`, nearest first, by HNSW search
    /// of every segment, the growing one included (at the database's default
    /// `ef`).
    ///
    /// # Errors
    /// [`Error::OutOfRange`] (see [`SearchParams::validate`]),
    /// [`Error::Dimension`], [`Error::NonFinite`], [`Error::ZeroVector`]
    /// (cosine), [`Error::Magnitude`] (L2 and inner product), or
    /// [`Error::Corrupted`] if a file it
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
        let hits = search::search_with(&self.state, query, params);
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
        let s = &self.state;
        let Some(Location { segment, row }) = s.location(id)? else {
            return Ok(None);
        };
        let vector = if segment == GROWING_SEGMENT {
            s.growing.vector(row).map(<[f32]>::to_vec)
        } else {
            match s.segment(segment) {
                Some(view) => {
                    view.segment.verify_rows()?;
                    usize::try_from(row)
                        .ok()
                        .filter(|&r| r < view.segment.rows())
                        .map(|r| view.segment.row(r).to_vec())
                }
                None => None,
            }
        };
        let Some(vector) = vector else {
            return Err(Error::corrupted(
                s.reader.path(),
                format!("id {id} points at segment {segment} row {row}, which this snapshot does not hold"),
            ));
        };
        Ok(Some(Record {
            vector,
            payload: s.reader.payload(id)?,
        }))
    }

    /// Whether `id` is live in this snapshot.
    ///
    /// # Errors
    /// As [`Snapshot::get`].
    pub fn contains(&self, id: u64) -> Result<bool> {
        Ok(self.state.location(id)?.is_some())
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
        ids.extend(s.growing.live_rows().map(|(_, id, _)| id));
        ids
    }
}
