//! Opening a database directory: the lock, the manifest, the segments, the first snapshot.

use crate::bitset::Bitset;
use crate::calibrate::Calibration;
use crate::error::{Error, Result};
use crate::format::{self, LOCK_FILE, MANIFEST_FILE, TMP_SUFFIX};
use crate::fs::{FileKind, RealFs, Vfs};
use crate::growing::{GrowingView, NewRow};
use crate::inner::DbInner;
use crate::kernels::{self, Kernels};
use crate::manifest::{Manifest, Reader, StoredConfig};
use crate::merger::Merger;
use crate::options::{Metric, Options, Scorer};
use crate::search::SearchParams;
use crate::segment::Segment;
use crate::snapshot::{Record, Snapshot};
use crate::state::{SealedView, SnapshotState};
use crate::topk::Hit;
use crate::writer::Writer;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

/// An open Quiver database: a directory of column files and a redb manifest.
///
/// Cheap to clone (all clones share one handle) and safe to use from any
/// number of threads. Searches read the current [`Snapshot`] and never wait for
/// the writer. A handle from [`Database::open`] keeps the directory locked
/// against other writers until the last clone is dropped; one from
/// [`Database::open_read_only`] takes no lock and never writes.
///
/// # Memory-mapped files
/// Column and links files are mapped read-only and read in place. Quiver never
/// modifies a segment file after it is published (it only writes new files and removes
/// retired ones), so the mappings never change under a reader. Another program
/// that writes to or truncates these files while the database is open breaks
/// that contract; the directory lock keeps other Quiver writers out, and
/// Quiver's read-only handles in other processes only map them. What such a
/// program causes is outside Quiver's control: a read past a truncated end
/// raises `SIGBUS` (the process dies), and bytes changed under a mapping
/// that was already checked are read as they now are, which Rust counts as
/// undefined behaviour. Likewise a disk error while a mapped page is read
/// in is `SIGBUS`, not an [`Error::Io`]: only reads through file calls
/// (the manifest, the checks at open) become typed errors.
///
/// ```
/// use quiver::{Database, Metric, Options};
/// # fn main() -> quiver::Result<()> {
/// # let tmp = tempfile::tempdir().unwrap();
/// let db = Database::open(tmp.path().join("db"), Options::new(3, Metric::L2))?;
/// let mut w = db.writer()?;
/// w.upsert(1, &[1.0, 0.0, 0.0], Some(b"first"))?;
/// w.upsert(2, &[0.0, 1.0, 0.0], None)?;
/// w.commit()?;
/// let hits = db.search(&[0.9, 0.1, 0.0], 1)?;
/// assert_eq!(hits[0].id, 1);
/// assert_eq!(db.get(1)?.unwrap().payload.as_deref(), Some(&b"first"[..]));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Database {
    inner: Arc<DbInner>,
    /// The background merger; it stops when the last clone is dropped.
    /// `None` for a read-only handle, which has no writer and merges nothing.
    merger: Option<Arc<Merger>>,
}

/// Sizes and counts of a database.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Commit generation.
    pub generation: u64,
    /// Live vectors.
    pub rows: usize,
    /// Rows of sealed segments that were deleted or replaced and still take space.
    pub deleted_rows: usize,
    /// Sealed segments.
    pub segments: usize,
    /// Live rows in the growing segment (stored in the manifest).
    pub growing_rows: usize,
    /// Rows appended to the growing segment since it was last sealed,
    /// deleted ones included: what counts against
    /// [`Options::growing_threshold`].
    pub growing_appended: usize,
    /// Background merges switched in since this handle was opened.
    pub merges: u64,
    /// Sealed segments whose recall per `ef` has been measured, which sets
    /// their default `ef` (see [`SearchParams`](crate::SearchParams)). A
    /// segment sealed from the growing one is measured by the merger soon
    /// after; one that a commit of its own rows or a merge wrote is
    /// measured before it is published.
    pub calibrated_segments: usize,
    /// Bytes of all column files.
    pub column_bytes: u64,
    /// Bytes of all links (graph) files.
    pub links_bytes: u64,
    /// Bytes of the manifest file.
    pub manifest_bytes: u64,
    /// All bytes on disk.
    pub bytes_on_disk: u64,
    /// Searches run through this handle since it was opened (exact ones and
    /// those of [`Database::search_batch`] included).
    pub queries: u64,
    /// Median search latency, `None` before the first search; from a
    /// histogram with buckets a quarter of a power of two wide, so it may
    /// read up to 25 % high.
    pub query_p50: Option<Duration>,
    /// 99th-percentile search latency, as `query_p50`.
    pub query_p99: Option<Duration>,
}

impl Database {
    /// Opens the database in `dir`, creating it if `dir` is missing or empty.
    ///
    /// A new database stores `options.dim()` and `options.metric()`; reopening
    /// checks that they match. Opening maps the column files and checks their
    /// headers; no sealed segment's graph is rebuilt, so it costs
    /// milliseconds however large the database. Only the growing segment's
    /// in-memory graph is rebuilt from its rows (at most
    /// [`Options::growing_threshold`] of them, in parallel). The handle holds
    /// an OS lock on `dir/LOCK` until it is dropped, and runs a background
    /// merger thread until its last clone is dropped.
    ///
    /// # Errors
    /// - [`Error::OutOfRange`]: an option out of its range (see
    ///   [`Options::validate`]).
    /// - [`Error::NotADatabase`]: `dir` is a file, or a non-empty directory without a manifest.
    /// - [`Error::OptionsMismatch`]: the stored dimension or metric differ.
    /// - [`Error::UnsupportedVersion`]: written by a newer Quiver.
    /// - [`Error::WriterBusy`]: another process (or handle) has the directory
    ///   open for writing; read-only handles do not count.
    /// - [`Error::Corrupted`]: a file fails its checks (the error names it).
    /// - [`Error::Io`].
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Database> {
        Database::open_with_vfs(Arc::new(RealFs), dir, options)
    }

    /// [`Database::open`] through another [`Vfs`], such as the power-loss
    /// simulating [`MemFs`](crate::fs::MemFs) of the reliability tests.
    ///
    /// # Errors
    /// As [`Database::open`].
    pub fn open_with_vfs(
        vfs: Arc<dyn Vfs>,
        dir: impl AsRef<Path>,
        options: Options,
    ) -> Result<Database> {
        options.validate()?;
        let verify = options.verify_on_open;
        Database::open_inner(vfs, dir.as_ref(), Some(options), verify)
    }

    /// Opens an existing database with the dimension, metric and graph
    /// parameters it was created with, as a tool that does not know them
    /// does (the `quiver` command line).
    ///
    /// ```
    /// use quiver::{Database, Metric, Options};
    /// # fn main() -> quiver::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// let dir = tmp.path().join("db");
    /// drop(Database::open(&dir, Options::new(3, Metric::Cosine).m(8))?);
    /// let db = Database::open_existing(&dir)?;
    /// assert_eq!((db.dim(), db.metric()), (3, Metric::Cosine));
    /// assert!(Database::open_existing(tmp.path().join("missing")).is_err());
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Database::open`], and [`Error::NotADatabase`] if `dir` does not
    /// exist or holds no manifest (this never creates a database).
    pub fn open_existing(dir: impl AsRef<Path>) -> Result<Database> {
        Database::open_inner(Arc::new(RealFs), dir.as_ref(), None, false)
    }

    /// [`Database::open_existing`] that also checks, before anything is
    /// read, every page checksum of the manifest (redb's integrity check,
    /// which its normal reads skip) and every segment's data checksums, as
    /// [`Options::verify_on_open`] does for [`Database::open`]. `quiver
    /// verify` opens this way.
    ///
    /// # Errors
    /// As [`Database::open_existing`]; damage anywhere is [`Error::Corrupted`]
    /// naming the file.
    pub fn open_existing_verified(dir: impl AsRef<Path>) -> Result<Database> {
        Database::open_inner(Arc::new(RealFs), dir.as_ref(), None, true)
    }

    /// Opens an existing database for reading only, with the options it
    /// was created with, as of its latest commit.
    ///
    /// A read-only handle never writes to the directory: it takes no lock
    /// (and creates no `LOCK` file), rewrites no manifest, removes no file,
    /// runs no merger, and [`Database::writer`] and
    /// [`Database::merge_pending`] return [`Error::ReadOnly`]. So it works on
    /// read-only media and on a directory owned by another user, and any
    /// number of processes may hold one.
    ///
    /// # Readers beside a writer in another process
    /// One process may hold the directory for writing ([`Database::open`])
    /// while others read it this way:
    /// - The handle sees the state of the last commit before it opened, and
    ///   keeps seeing it (search, get and stats agree) until
    ///   [`Database::refresh`] moves it to the latest commit. Every answer
    ///   belongs to one committed state, never to a commit in progress.
    /// - Segment files are never changed once published, and a segment id is
    ///   never reused. The writer removes a retired segment's files once its
    ///   own process no longer reads them; a reader that has them mapped
    ///   keeps reading them (an unlinked file lives on while it is mapped,
    ///   on Linux and the other Unixes). A reader that finds a file missing
    ///   while it loads a state, because a newer commit retired it
    ///   meanwhile, loads again from the newer commit.
    /// - redb's byte-range locks (its `SingleWriter` mode) keep the
    ///   manifest's pages that a reader's commit uses from being reused while
    ///   the reader holds it; on file systems without such locks (the
    ///   in-memory [`MemFs`](crate::fs::MemFs)) a read-only handle must not
    ///   be open beside a writer.
    ///
    /// ```
    /// use quiver::{Database, Error, Metric, Options};
    /// # fn main() -> quiver::Result<()> {
    /// # let tmp = tempfile::tempdir().unwrap();
    /// let dir = tmp.path().join("db");
    /// let db = Database::open(&dir, Options::new(2, Metric::L2))?;
    /// let mut w = db.writer()?;
    /// w.upsert(1, &[1.0, 0.0], None)?;
    /// w.commit()?;
    /// let reader = Database::open_read_only(&dir)?;
    /// w.upsert(2, &[0.0, 1.0], None)?;
    /// w.commit()?;
    /// assert_eq!(reader.len(), 1); // as of its open
    /// reader.refresh()?;
    /// assert_eq!(reader.len(), 2);
    /// assert!(matches!(reader.writer(), Err(Error::ReadOnly { .. })));
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// - [`Error::NotADatabase`]: `dir` does not exist, is a file, holds no
    ///   manifest, or is still being created (retry once its creator is done).
    /// - [`Error::ReadOnly`]: its manifest was not closed cleanly (a writer
    ///   crashed) and only a writer's open repairs it.
    /// - [`Error::UnsupportedVersion`], [`Error::Corrupted`], [`Error::Io`]
    ///   as for [`Database::open`].
    pub fn open_read_only(dir: impl AsRef<Path>) -> Result<Database> {
        Database::open_read_only_with_vfs(Arc::new(RealFs), dir)
    }

    /// [`Database::open_read_only`] that first checks, as
    /// [`Database::open_existing_verified`] does, every page checksum of the
    /// manifest (redb's integrity check, run on a copy of the file in
    /// memory, since it repairs what it finds) and every segment's data
    /// checksums. `quiver verify` opens this way.
    ///
    /// # Errors
    /// As [`Database::open_read_only`]; damage anywhere is
    /// [`Error::Corrupted`] naming the file.
    pub fn open_read_only_verified(dir: impl AsRef<Path>) -> Result<Database> {
        Database::open_reader(Arc::new(RealFs), dir.as_ref(), true)
    }

    /// [`Database::open_read_only`] through another [`Vfs`].
    ///
    /// # Errors
    /// As [`Database::open_read_only`].
    pub fn open_read_only_with_vfs(vfs: Arc<dyn Vfs>, dir: impl AsRef<Path>) -> Result<Database> {
        Database::open_reader(vfs, dir.as_ref(), false)
    }

    /// Moves a read-only handle to the latest commit, and returns the
    /// generation it now reads. Snapshots taken before keep their state.
    /// Segments the handle already maps are reused; the growing segment's
    /// graph is rebuilt from its rows. A handle from [`Database::open`] is
    /// always at its latest commit, and this returns at once.
    ///
    /// # Errors
    /// As [`Database::open_read_only`]: the latest commit's files are checked
    /// as an open checks them.
    pub fn refresh(&self) -> Result<u64> {
        let inner = &self.inner;
        if !inner.read_only() {
            return Ok(inner.published.load().state.generation);
        }
        // One refresh at a time; a handle without a writer has no other use
        // for the commit lock.
        let _refreshing = inner.lock_commits();
        let current = inner.published.load();
        if inner.manifest.reader()?.state()? == current.state {
            return Ok(current.state.generation);
        }
        let state = load_latest(
            &inner.vfs,
            &inner.dir,
            &inner.manifest,
            &inner.options,
            inner.kernels,
            &current.segments,
        )?;
        let generation = state.state.generation;
        inner.published.publish(Arc::new(state));
        Ok(generation)
    }

    /// The read-only open: see [`Database::open_read_only`].
    fn open_reader(vfs: Arc<dyn Vfs>, dir: &Path, verify: bool) -> Result<Database> {
        let dir = dir.to_path_buf();
        if !existing_dir(&*vfs, &dir)? {
            return Err(Error::NotADatabase {
                path: dir,
                why: "it does not exist",
            });
        }
        let names = vfs.list(&dir).map_err(|e| Error::io(&dir, e))?;
        if !names.iter().any(|n| n == MANIFEST_FILE) {
            let creating = format!("{MANIFEST_FILE}{TMP_SUFFIX}");
            let why = if names.iter().all(|n| *n == LOCK_FILE || *n == creating) {
                "it holds no manifest yet: it is being created (retry once that is done), \
                 or its create was interrupted"
            } else {
                "the directory is not empty and holds no quiver.redb manifest"
            };
            return Err(Error::NotADatabase { path: dir, why });
        }
        let mut manifest = Manifest::open_read_only(&*vfs, &dir.join(MANIFEST_FILE))?;
        let Some(stored) = manifest.config()? else {
            return Err(Error::NotADatabase {
                path: dir,
                why: "its manifest was never initialised (an interrupted create)",
            });
        };
        let options = stored_options(stored, &dir.join(MANIFEST_FILE))?.verify_on_open(verify);
        if verify {
            manifest.check_integrity()?;
        }
        if manifest.needs_upgrade()? {
            return Err(Error::ReadOnly {
                path: dir,
                why: "its manifest is of format version 1, which a writer upgrades at open: \
                      open the database for writing once",
            });
        }
        let kernels = kernels::select();
        let state = load_latest(&vfs, &dir, &manifest, &options, kernels, &[])?;
        let inner = Arc::new(DbInner::new(
            state, manifest, dir, vfs, options, kernels, None,
        ));
        Ok(Database {
            inner,
            merger: None,
        })
    }

    /// Opens `dir` with `requested` options, or with the stored ones if
    /// `None` (and then only an existing database).
    fn open_inner(
        vfs: Arc<dyn Vfs>,
        dir: &Path,
        requested: Option<Options>,
        verify: bool,
    ) -> Result<Database> {
        let dir = dir.to_path_buf();
        let io = |e| Error::io(&dir, e);
        if !existing_dir(&*vfs, &dir)? {
            if requested.is_none() {
                return Err(Error::NotADatabase {
                    path: dir,
                    why: "it does not exist",
                });
            }
            vfs.create_dir_all(&dir).map_err(io)?;
            // Make the new directory's own entry durable too.
            if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
                vfs.sync_dir(parent).map_err(|e| Error::io(parent, e))?;
            }
        }
        // A new manifest is made under this name and renamed into place, so
        // that a create killed half way leaves only this behind.
        let creating = format!("{MANIFEST_FILE}{TMP_SUFFIX}");
        let is_database = |names: &[String]| {
            names.iter().any(|n| n == MANIFEST_FILE)
                || (requested.is_some() && names.iter().all(|n| n == LOCK_FILE || *n == creating))
        };
        if !is_database(&vfs.list(&dir).map_err(io)?) {
            return Err(Error::NotADatabase {
                path: dir,
                why: "the directory is not empty and holds no quiver.redb manifest",
            });
        }
        let lock = vfs
            .try_lock(&dir.join(LOCK_FILE))
            .map_err(|e| Error::io(dir.join(LOCK_FILE), e))?
            .ok_or_else(|| Error::WriterBusy {
                path: dir.clone(),
                why:
                    "another process (or another handle in this one) has it open; close that first",
            })?;
        // Listed again under the lock: what the orphan sweep may remove.
        let names = vfs.list(&dir).map_err(io)?;
        let has_manifest = names.iter().any(|n| n == MANIFEST_FILE);
        let manifest_path = dir.join(MANIFEST_FILE);
        let mut manifest = match (&requested, has_manifest) {
            (_, true) => Manifest::open(&*vfs, &manifest_path, false)?,
            (None, false) => {
                return Err(Error::NotADatabase {
                    path: dir,
                    why: "it holds only the start of an interrupted create",
                })
            }
            (Some(options), false) => {
                // Create and initialise under a temporary name, then rename:
                // a crash or an error at any point leaves at most the
                // temporary, which the next create replaces.
                let temp = dir.join(&creating);
                if names.contains(&creating) {
                    vfs.remove(&temp).map_err(|e| Error::io(&temp, e))?;
                }
                // The manifest stays open across the rename (the handle
                // follows the file), so that no close can fail unseen.
                let mut new = Manifest::open(&*vfs, &temp, true)?;
                new.initialise(options)?;
                vfs.rename(&temp, &manifest_path)
                    .map_err(|e| Error::io(&manifest_path, e))?;
                vfs.sync_dir(&dir).map_err(io)?;
                new.moved_to(manifest_path.clone());
                new
            }
        };
        let options = match (manifest.config()?, requested) {
            (None, None) => {
                return Err(Error::NotADatabase {
                    path: dir,
                    why: "its manifest was never initialised (an interrupted create)",
                })
            }
            (None, Some(options)) => {
                // Only an interrupted create of an older version leaves a
                // manifest without a config, and then no segment was ever
                // written: segment files beside it mean the manifest is damaged
                // (emptied, say), and taking it for new would sweep them away.
                if names
                    .iter()
                    .any(|n| format::parse_segment_file_name(n).is_some())
                {
                    return Err(Error::corrupted(
                        &manifest_path,
                        "it holds no configuration but the directory holds segment files",
                    ));
                }
                manifest.initialise(&options)?;
                vfs.sync_dir(&dir).map_err(io)?;
                options
            }
            (Some(stored), None) => stored_options(stored, &manifest_path)?,
            (Some(StoredConfig { dim, metric, .. }), Some(options)) => {
                if dim != options.dim {
                    return Err(Error::OptionsMismatch {
                        field: "dimension",
                        stored: dim.to_string(),
                        requested: options.dim.to_string(),
                    });
                }
                if metric != options.metric {
                    return Err(Error::OptionsMismatch {
                        field: "metric",
                        stored: metric.to_string(),
                        requested: options.metric.to_string(),
                    });
                }
                options
            }
        };
        let options = options.verify_on_open(verify);
        if verify {
            manifest.check_integrity()?;
        }
        manifest.upgrade()?;
        let kernels = kernels::select();
        let state = load_latest(&vfs, &dir, &manifest, &options, kernels, &[])?;
        sweep_orphans(&*vfs, &dir, &state, &names)?;
        let inner = Arc::new(DbInner::new(
            state,
            manifest,
            dir,
            vfs,
            options,
            kernels,
            Some(lock),
        ));
        let merger = Arc::new(Merger::start(inner.clone())?);
        Ok(Database {
            inner,
            merger: Some(merger),
        })
    }

    /// The writer. There is one per database: a second call while the first
    /// writer lives returns [`Error::WriterBusy`].
    ///
    /// # Errors
    /// [`Error::WriterBusy`]; [`Error::WriterFailed`] after a failed commit, compaction or
    /// merge switch; [`Error::ReadOnly`] on a handle from
    /// [`Database::open_read_only`].
    pub fn writer(&self) -> Result<Writer> {
        let Some(merger) = &self.merger else {
            return Err(self.read_only_refusal(
                "it has no writer: open it with Database::open (or `quiver` commands that change it) in one process",
            ));
        };
        self.inner.failed.check()?;
        if self
            .inner
            .writer_taken
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(Error::WriterBusy {
                path: self.inner.dir.clone(),
                why: "a Writer for this database is alive; drop it or commit through it",
            });
        }
        Ok(Writer::new(self.inner.clone(), merger.clone()))
    }

    fn read_only_refusal(&self, why: &'static str) -> Error {
        Error::ReadOnly {
            path: self.inner.dir.clone(),
            why,
        }
    }

    /// The current committed state, for several reads that must agree.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            state: self.inner.published.load(),
            db: self.inner.clone(),
        }
    }

    /// The `k` nearest vectors to `query` in the current state, nearest first.
    ///
    /// # Errors
    /// As [`Snapshot::search`].
    pub fn search(&self, query: &[f32], k: usize) -> Result<Vec<Hit>> {
        self.snapshot().search(query, k)
    }

    /// A search as `params` say: `k`, `ef`, or an exact scan.
    ///
    /// # Errors
    /// As [`Snapshot::search`].
    pub fn search_with(&self, query: &[f32], params: &SearchParams) -> Result<Vec<Hit>> {
        self.snapshot().search_with(query, params)
    }

    /// Many queries in parallel; see [`Snapshot::search_batch`].
    ///
    /// # Errors
    /// As [`Snapshot::search_batch`].
    pub fn search_batch(&self, queries: &[f32], params: &SearchParams) -> Result<Vec<Vec<Hit>>> {
        self.snapshot().search_batch(queries, params)
    }

    /// The vector and payload stored under `id`, or `None`.
    ///
    /// # Errors
    /// As [`Snapshot::get`].
    pub fn get(&self, id: u64) -> Result<Option<Record>> {
        self.snapshot().get(id)
    }

    /// Number of live vectors.
    pub fn len(&self) -> usize {
        self.snapshot().len()
    }

    /// Whether the database holds no live vector.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The vector dimension.
    pub fn dim(&self) -> usize {
        self.inner.options.dim
    }

    /// The metric.
    pub fn metric(&self) -> Metric {
        self.inner.options.metric
    }

    /// The database directory.
    pub fn path(&self) -> &Path {
        &self.inner.dir
    }

    /// Counts and sizes of the current state.
    ///
    /// # Errors
    /// [`Error::Io`] reading the manifest file's size.
    pub fn stats(&self) -> Result<Stats> {
        Database::stats_of(&self.inner, &self.inner.published.load())
    }

    /// The stats of `snap`, a state of `inner`.
    pub(crate) fn stats_of(inner: &DbInner, snap: &SnapshotState) -> Result<Stats> {
        let column_bytes = snap.segments.iter().map(|s| s.segment.column_len()).sum();
        let links_bytes = snap.segments.iter().map(|s| s.segment.links_len()).sum();
        let manifest_bytes = inner.manifest.file_len()?;
        Ok(Stats {
            generation: snap.state.generation,
            rows: snap.len(),
            deleted_rows: snap
                .segments
                .iter()
                .map(|s| s.segment.rows() - s.live)
                .sum(),
            segments: snap.segments.len(),
            growing_rows: snap.growing.live,
            growing_appended: snap.growing.appended(),
            merges: inner.merges.load(Ordering::Acquire),
            calibrated_segments: snap
                .segments
                .iter()
                .filter(|s| s.calibration.is_some())
                .count(),
            column_bytes,
            links_bytes,
            manifest_bytes,
            bytes_on_disk: column_bytes + links_bytes + manifest_bytes,
            queries: inner.queries.count(),
            query_p50: inner.queries.quantile(0.5),
            query_p99: inner.queries.quantile(0.99),
        })
    }

    /// Blocks until the background merger has nothing left to do: every
    /// merge the policy wants for the current state has been switched in.
    /// Returns at once with [`Options::auto_merge`] off. For tests,
    /// benchmarks and tools that want the settled state; searches never
    /// need to wait.
    pub fn wait_for_merges(&self) {
        if let Some(merger) = &self.merger {
            merger.wait_idle();
        }
    }

    /// Runs, on the calling thread, every merge the merge policy wants for
    /// the current state (and measures the default `ef` of new segments);
    /// returns how many merges it switched in. With
    /// [`Options::auto_merge`] off this is how merges happen when the
    /// application chooses; with it on, the background merger does the same
    /// work on its own.
    ///
    /// # Errors
    /// [`Error::Corrupted`] if a segment to merge fails its checksums (nothing
    /// is changed then); [`Error::Io`]. After an I/O error in the switch's
    /// manifest commit the database refuses further commits until reopened,
    /// as after a failed [`Writer::commit`]. [`Error::ReadOnly`] on a
    /// read-only handle.
    pub fn merge_pending(&self) -> Result<usize> {
        match &self.merger {
            Some(merger) => merger.run_now(),
            None => Err(self.read_only_refusal(
                "it merges nothing: the writer's process merges, and refresh() shows the result",
            )),
        }
    }

    /// The error of the last background merge that failed, if one did (a
    /// failed merge changes nothing visible; the merger tries again after the
    /// next commit).
    pub fn merge_error(&self) -> Option<String> {
        self.merger.as_ref().and_then(|m| m.last_error())
    }

    /// Closes this handle and shrinks the manifest file to its live pages,
    /// holding the directory lock throughout; returns the file's new length.
    /// For the offline [`compact`](crate::compact), which owns the only
    /// handle: with another clone or snapshot alive it changes nothing.
    pub(crate) fn compact_manifest(self) -> Result<u64> {
        let Database { inner, merger } = self;
        // The merger holds the database too: stop it first.
        drop(merger);
        let Ok(inner) = Arc::try_unwrap(inner) else {
            return Ok(0);
        };
        let (mut manifest, _lock) = inner.into_manifest();
        // Snapshots replaced by earlier commits hold read transactions until
        // the epoch collector frees them; a few pins let it run.
        for _ in 0..1000 {
            if manifest.compact_file()? {
                break;
            }
            crossbeam_epoch::pin().flush();
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        manifest.file_len()
    }

    /// Checks the data checksums of every column and links file and every
    /// graph link (in parallel), the checksum of every manifest entry, and
    /// that the manifest and the files agree.
    ///
    /// # Errors
    /// [`Error::Corrupted`] naming the first damaged file found; see
    /// [`Database::check`] for all of them, and [`verify`](crate::verify()) for a
    /// check of a directory that may not open.
    pub fn verify(&self) -> Result<()> {
        match self.check().into_iter().next() {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Every problem [`Database::verify`] finds, not just the first: one error
    /// per damaged region of a segment file (vector rows, id column, links
    /// file) and per damaged manifest entry (naming its table and key), then,
    /// if there were none, any disagreement between the manifest's ids and
    /// the files (an id pointing at a missing, deleted or differently
    /// numbered row, or a live row without an id). Empty when all is well.
    pub fn check(&self) -> Vec<Error> {
        let snap = self.inner.published.load();
        let mut problems: Vec<Error> = snap
            .segments
            .par_iter()
            .flat_map_iter(|s| s.segment.check())
            .collect();
        problems.extend(snap.reader.check(snap.dim).problems);
        if problems.is_empty() {
            problems.extend(Database::check_ids(&snap));
        }
        problems
    }

    /// The first disagreement between the ids of `snap`'s manifest and its
    /// files, if there is one.
    pub(crate) fn check_ids(snap: &SnapshotState) -> Option<Error> {
        let manifest = snap.reader.path();
        let disagree = |what: String| Error::corrupted(manifest, what);
        let growing: HashSet<u64> = snap.growing.live_rows().map(|r| r.0).collect();
        let mut ids = 0usize;
        let walked = snap.reader.for_each_location(|id, loc| {
            ids += 1;
            let fault = if loc.segment == crate::manifest::GROWING_SEGMENT {
                (!growing.contains(&loc.row)).then(|| {
                    format!(
                        "id {id} points at growing row {}, which is not live",
                        loc.row
                    )
                })
            } else {
                match snap.segment(loc.segment) {
                    None => Some(format!(
                        "id {id} points at segment {}, which the manifest does not list",
                        loc.segment
                    )),
                    Some(s) => match usize::try_from(loc.row)
                        .ok()
                        .filter(|&r| r < s.segment.rows())
                    {
                        None => Some(format!(
                            "id {id} points at row {} of segment {}, which has {} rows",
                            loc.row,
                            loc.segment,
                            s.segment.rows()
                        )),
                        Some(r) if s.deleted.contains(r) => Some(format!(
                            "id {id} points at deleted row {r} of segment {}",
                            loc.segment
                        )),
                        Some(r) if s.segment.ids()[r] != id => Some(format!(
                            "id {id} points at row {r} of segment {}, which holds id {}",
                            loc.segment,
                            s.segment.ids()[r]
                        )),
                        Some(_) => None,
                    },
                }
            };
            match fault {
                Some(what) => Err(disagree(what)),
                None => Ok(()),
            }
        });
        match walked {
            Err(e) => Some(e),
            Ok(()) if ids != snap.len() => Some(disagree(format!(
                "{ids} ids are listed but {} rows are live",
                snap.len()
            ))),
            Ok(()) => None,
        }
    }
}

/// Whether `dir` exists as a directory; a file there is not a database.
fn existing_dir(vfs: &dyn Vfs, dir: &Path) -> Result<bool> {
    match vfs.kind(dir).map_err(|e| Error::io(dir, e))? {
        Some(FileKind::Dir) => Ok(true),
        None => Ok(false),
        Some(FileKind::File) => Err(Error::NotADatabase {
            path: dir.to_path_buf(),
            why: "it is a file, not a directory",
        }),
    }
}

/// The options a database was created with; stored values out of range are
/// damage (a version-2 manifest's checksum makes that unlikely, a version-1
/// one has none).
fn stored_options(stored: StoredConfig, manifest: &Path) -> Result<Options> {
    let options = Options::new(stored.dim, stored.metric);
    let options = match stored.m {
        Some(m) => options.m(m),
        None => options,
    };
    let options = match stored.ef_construction {
        Some(ef) => options.ef_construction(ef),
        None => options,
    };
    options.validate().map_err(|e| {
        Error::corrupted(
            manifest,
            format!("its stored options are out of range: {e}"),
        )
    })?;
    Ok(options)
}

/// Loads started over after a writer in another process retired files.
const LOAD_TRIES: usize = 16;

/// The state of the latest commit, with the files it names mapped (those of
/// `known`, segments of a state already loaded, are reused). A writer in
/// another process may retire a segment and remove its files between the
/// commit this reads and their mapping: a load that fails while a newer
/// commit has appeared starts over from that commit. An error that stays at
/// the latest commit is returned (with one writer in this process, the
/// manifest never moves, so an error is returned at once).
fn load_latest(
    vfs: &Arc<dyn Vfs>,
    dir: &Path,
    manifest: &Manifest,
    options: &Options,
    kernels: &'static Kernels,
    known: &[SealedView],
) -> Result<SnapshotState> {
    let mut tries = 1;
    loop {
        let at = manifest.reader()?;
        let read = at.state()?;
        match load_snapshot(vfs, dir, manifest, at, options, kernels, known) {
            Ok(state) => return Ok(state),
            Err(_) if tries < LOAD_TRIES && manifest.reader()?.state()? != read => tries += 1,
            Err(e) => return Err(e),
        }
    }
}

/// Builds a snapshot of the commit `at` reads from the manifest and the files
/// it names.
fn load_snapshot(
    vfs: &Arc<dyn Vfs>,
    dir: &Path,
    manifest: &Manifest,
    at: Reader,
    options: &Options,
    kernels: &'static Kernels,
    known: &[SealedView],
) -> Result<SnapshotState> {
    let loaded = at.load(options.dim)?;
    let mut deleted: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for &(segment, row) in &loaded.tombstones {
        deleted.entry(segment).or_default().push(row);
    }
    let mut calibrations: BTreeMap<u64, Vec<u8>> = loaded.calibrations.iter().cloned().collect();
    let mut segments = Vec::with_capacity(loaded.segments.len());
    for (id, meta) in &loaded.segments {
        let segment = match known.iter().find(|k| k.segment.id() == *id) {
            Some(k) => k.segment.clone(),
            None => Arc::new(Segment::open(
                vfs.clone(),
                dir,
                *id,
                meta,
                options.dim,
                options.metric,
            )?),
        };
        let rows = segment.rows();
        let mut bits = Bitset::new(rows);
        let mut live = rows;
        for &row in deleted.remove(id).iter().flatten() {
            if row >= rows as u64 {
                return Err(Error::corrupted(
                    manifest.path(),
                    format!("tombstone for row {row} of segment {id}, which has {rows} rows"),
                ));
            }
            if bits.insert(row as usize) {
                live -= 1;
            }
        }
        let calibration = match calibrations.remove(id) {
            Some(record) => Some(Arc::new(Calibration::decode(&record).map_err(|what| {
                Error::corrupted(manifest.path(), format!("segment {id}: {what}"))
            })?)),
            None => None,
        };
        segments.push(SealedView {
            segment,
            deleted: Arc::new(bits),
            live,
            calibration,
        });
    }
    if let Some((segment, _)) = deleted.into_iter().next() {
        return Err(Error::corrupted(
            manifest.path(),
            format!("tombstones name segment {segment}, which the manifest does not hold"),
        ));
    }
    if options.verify_on_open {
        segments.par_iter().try_for_each(|s| s.segment.verify())?;
    }

    // The growing segment's graph lives in memory only: rebuilt from its
    // rows (at most one growing segment's worth), in parallel.
    let mut growing = GrowingView::empty(options.dim);
    let rows: Vec<NewRow<'_>> = loaded
        .growing
        .iter()
        .map(|g| (g.row, g.id, g.vector.as_slice()))
        .collect();
    let scorer = Scorer {
        metric: options.metric,
        kernels,
    };
    growing.append(
        &rows,
        options.growing_threshold,
        scorer,
        &crate::inner::graph_params(options),
    );
    Ok(SnapshotState {
        state: loaded.state,
        dim: options.dim,
        metric: options.metric,
        segments,
        growing,
        reader: at,
        scorer,
        ef_search: options.ef_search,
    })
}

/// Removes the files of `dir` (listed in `names`) that `state`, the
/// writer's first, does not name: column files of commits that never
/// happened or of retired segments, and temporaries of interrupted writes.
fn sweep_orphans(vfs: &dyn Vfs, dir: &Path, state: &SnapshotState, names: &[String]) -> Result<()> {
    let live_ids: HashSet<u64> = state.segments.iter().map(|s| s.segment.id()).collect();
    let mut removed = false;
    for name in names {
        let orphan = match format::parse_segment_file_name(name) {
            Some(id) => !live_ids.contains(&id),
            None => name.ends_with(TMP_SUFFIX),
        };
        if orphan {
            let path = dir.join(name);
            match vfs.remove(&path) {
                Ok(()) => removed = true,
                // Already gone: a retired segment of an earlier handle in this
                // process can unlink its files after they were listed.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
    }
    if removed {
        vfs.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}
