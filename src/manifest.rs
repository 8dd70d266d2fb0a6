//! The manifest: every redb table of a database, and the only code that touches redb.
//!
//! | table | key → value | holds |
//! |---|---|---|
//! | `config` | `&str` → `u64` | `format_version`, `dim`, `metric` |
//! | `state` | `&str` → `u64` | `generation`, `next_segment_id`, `next_growing_row` |
//! | `segments` | segment id → record | the live sealed segments (the manifest proper) |
//! | `ids` | user id → (segment, row) | where each live id's vector is; segment 0 is the growing segment |
//! | `tombstones` | (segment, row) → () | sealed rows that were deleted or replaced |
//! | `growing` | growing row → (user id, f32 bytes) | the growing segment's rows |
//! | `payloads` | user id → bytes | payloads |
//! | `calibration` | segment id → record | a segment's measured recall per `ef` (see `calibrate.rs`) |
//!
//! One redb write transaction per commit changes all of them at once: the redb
//! commit is Quiver's only commit point.

use crate::error::{Error, Result};
use crate::format::{u32_at, u64_at, FORMAT_VERSION};
use crate::fs::{RedbFile, Vfs, VfsFile};
use crate::options::{Metric, Options};
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const CONFIG: TableDefinition<&str, u64> = TableDefinition::new("config");
const STATE: TableDefinition<&str, u64> = TableDefinition::new("state");
const SEGMENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("segments");
const IDS: TableDefinition<u64, (u64, u64)> = TableDefinition::new("ids");
const TOMBSTONES: TableDefinition<(u64, u64), ()> = TableDefinition::new("tombstones");
const GROWING: TableDefinition<u64, (u64, &[u8])> = TableDefinition::new("growing");
const PAYLOADS: TableDefinition<u64, &[u8]> = TableDefinition::new("payloads");
const CALIBRATION: TableDefinition<u64, &[u8]> = TableDefinition::new("calibration");

/// Segment id of the growing segment in `ids` and in [`Location`].
pub const GROWING_SEGMENT: u64 = 0;

/// The options a database was created with, as its config table holds them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredConfig {
    pub dim: usize,
    pub metric: Metric,
    /// `None` in databases created before these were stored.
    pub m: Option<usize>,
    pub ef_construction: Option<usize>,
}

/// Where a live id's vector is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// The sealed segment, or [`GROWING_SEGMENT`].
    pub segment: u64,
    /// Row inside the segment (for the growing segment: its growing row number).
    pub row: u64,
}

/// A sealed segment's record in the `segments` table.
///
/// Encoded as 37 little-endian bytes: version `u8` = 1, rows `u64`,
/// vectors_crc `u32`, ids_crc `u32`, then the graph: links header crc `u32`,
/// entry point `u32` (`u32::MAX` for none), max level `u32`, m `u32`,
/// ef_construction `u32`. The checksums must equal the files', which ties the
/// files to the manifest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentMeta {
    /// Rows in the column file.
    pub rows: u64,
    /// The column file's vector checksum.
    pub vectors_crc: u32,
    /// The column file's id checksum.
    pub ids_crc: u32,
    /// The links file's graph.
    pub graph: GraphMeta,
}

/// What the manifest records of a segment's graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GraphMeta {
    /// crc32 of the links file's header.
    pub header_crc: u32,
    /// Entry point row, `u32::MAX` for an empty graph.
    pub entry_point: u32,
    /// Level of the entry point.
    pub max_level: u32,
    /// Links per node and upper level.
    pub m: u32,
    /// Candidate list size the graph was built with.
    pub ef_construction: u32,
}

const SEGMENT_META_VERSION: u8 = 1;
const SEGMENT_META_LEN: usize = 37;

impl SegmentMeta {
    fn encode(&self) -> [u8; SEGMENT_META_LEN] {
        let mut b = [0u8; SEGMENT_META_LEN];
        b[0] = SEGMENT_META_VERSION;
        b[1..9].copy_from_slice(&self.rows.to_le_bytes());
        let words = [
            self.vectors_crc,
            self.ids_crc,
            self.graph.header_crc,
            self.graph.entry_point,
            self.graph.max_level,
            self.graph.m,
            self.graph.ef_construction,
        ];
        for (i, w) in words.iter().enumerate() {
            b[9 + 4 * i..13 + 4 * i].copy_from_slice(&w.to_le_bytes());
        }
        b
    }

    /// Decodes a record; `Err(None)` for a newer record version, `Err(Some(what))` for damage.
    fn decode(b: &[u8]) -> std::result::Result<SegmentMeta, Option<String>> {
        if b.first().is_some_and(|&v| v > SEGMENT_META_VERSION) {
            return Err(None);
        }
        if b.first() != Some(&SEGMENT_META_VERSION) || b.len() != SEGMENT_META_LEN {
            return Err(Some(format!(
                "segment record of {} bytes with version {:?}",
                b.len(),
                b.first()
            )));
        }
        let word = |i: usize| u32_at(b, 9 + 4 * i);
        Ok(SegmentMeta {
            rows: u64_at(b, 1),
            vectors_crc: word(0),
            ids_crc: word(1),
            graph: GraphMeta {
                header_crc: word(2),
                entry_point: word(3),
                max_level: word(4),
                m: word(5),
                ef_construction: word(6),
            },
        })
    }
}

/// The counters of the `state` table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct State {
    /// Number of commits so far.
    pub generation: u64,
    /// Id the next sealed segment gets (starts at 1; 0 is the growing segment).
    pub next_segment_id: u64,
    /// Row number the next growing row gets.
    pub next_growing_row: u64,
}

/// A growing row as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct GrowingRow {
    /// Growing row number.
    pub row: u64,
    /// User id.
    pub id: u64,
    /// The vector.
    pub vector: Vec<f32>,
}

/// Everything `open` needs from the manifest.
#[derive(Debug)]
pub struct Loaded {
    /// Counters.
    pub state: State,
    /// Live sealed segments, by id.
    pub segments: Vec<(u64, SegmentMeta)>,
    /// Deleted sealed rows, sorted.
    pub tombstones: Vec<(u64, u64)>,
    /// The growing segment, by row number.
    pub growing: Vec<GrowingRow>,
    /// Calibration records by segment (absent in older databases).
    pub calibrations: Vec<(u64, Vec<u8>)>,
}

/// All that one commit changes in the manifest.
#[derive(Debug, Default)]
pub struct Update<'a> {
    /// Ids that now live at a new place.
    pub ids_set: Vec<(u64, Location)>,
    /// Ids deleted.
    pub ids_removed: Vec<u64>,
    /// Sealed rows that stop being live.
    pub tombstones_added: Vec<(u64, u64)>,
    /// New growing rows: (row, id, vector).
    pub growing_added: Vec<(u64, u64, &'a [f32])>,
    /// Growing rows that stop being live.
    pub growing_removed: Vec<u64>,
    /// The growing segment was sealed: drop all its rows first.
    pub growing_cleared: bool,
    /// Payloads written.
    pub payloads_set: Vec<(u64, &'a [u8])>,
    /// Payloads removed.
    pub payloads_removed: Vec<u64>,
    /// Segments sealed by this commit.
    pub segments_added: Vec<(u64, SegmentMeta)>,
    /// Segments retired by this commit (their tombstones go too).
    pub segments_removed: Vec<u64>,
    /// Calibration records to set, by segment.
    pub calibrations_set: Vec<(u64, Vec<u8>)>,
    /// The counters after this commit.
    pub state: State,
}

/// The redb database of a Quiver directory.
#[derive(Debug)]
pub struct Manifest {
    db: Redb,
    file: Arc<dyn VfsFile>,
    path: PathBuf,
}

/// redb's handle on the manifest: read-write for the writer, read-only for
/// the handles that only read. Reads go through either; a read-only handle
/// refuses every write with an error (Quiver never asks it for one).
enum Redb {
    Writer(redb::Database),
    ReadOnly {
        db: redb::ReadOnlyDatabase,
        /// The file, for the integrity check on a copy of it.
        file: Arc<dyn VfsFile>,
    },
}

/// Tries at copying a manifest that a writer keeps changing.
const COPY_TRIES: usize = 8;
/// Bytes at the start of a redb file that every commit rewrites (its header).
const REDB_HEADER: usize = 512;

impl std::fmt::Debug for Redb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Redb::Writer(_) => "Redb::Writer",
            Redb::ReadOnly { .. } => "Redb::ReadOnly",
        })
    }
}

fn read_only_refusal() -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::ReadOnlyFilesystem,
        "the manifest is open read-only: open the database with Database::open to change it",
    )
}

impl Redb {
    fn begin_read(&self) -> std::result::Result<redb::ReadTransaction, redb::TransactionError> {
        match self {
            Redb::Writer(db) => db.begin_read(),
            Redb::ReadOnly { db, .. } => db.begin_read(),
        }
    }

    fn begin_write(&self) -> std::result::Result<redb::WriteTransaction, redb::Error> {
        match self {
            Redb::Writer(db) => Ok(db.begin_write()?),
            Redb::ReadOnly { .. } => Err(redb::Error::Io(read_only_refusal())),
        }
    }

    fn compact(&mut self) -> std::result::Result<bool, redb::CompactionError> {
        match self {
            Redb::Writer(db) => db.compact(),
            Redb::ReadOnly { .. } => Err(redb::CompactionError::Storage(redb::StorageError::Io(
                read_only_refusal(),
            ))),
        }
    }

    /// redb's integrity check. It repairs what it finds, and so writes: a
    /// read-only handle runs it on a copy of the file in memory instead.
    fn check_integrity(&mut self) -> std::result::Result<bool, redb::DatabaseError> {
        match self {
            Redb::Writer(db) => db.check_integrity(),
            Redb::ReadOnly { file, .. } => {
                let copy = copy_to_memory(&**file)?;
                redb::Builder::new()
                    .create_with_backend(copy)?
                    .check_integrity()
            }
        }
    }
}

/// A copy of `file` in memory, taken whole between two commits of a writer
/// in another process: a commit rewrites the header (and may shrink the
/// file), so a copy whose header changed while it was taken, or that ran
/// past a shrunk end, is taken again.
fn copy_to_memory(
    file: &dyn VfsFile,
) -> std::result::Result<redb::backends::InMemoryBackend, redb::StorageError> {
    use redb::StorageBackend;
    let header = |buf: &mut [u8; REDB_HEADER]| file.read_at(0, buf);
    for _ in 0..COPY_TRIES {
        let (mut before, mut after) = ([0u8; REDB_HEADER], [0u8; REDB_HEADER]);
        header(&mut before)?;
        let len = file.len()?;
        let copy = redb::backends::InMemoryBackend::new();
        copy.set_len(len)?;
        let mut chunk = vec![0u8; 1 << 20];
        let mut offset = 0u64;
        let mut whole = true;
        while offset < len {
            let n = (len - offset).min(chunk.len() as u64) as usize;
            if file.read_at(offset, &mut chunk[..n]).is_err() {
                whole = false;
                break;
            }
            copy.write(offset, &chunk[..n])?;
            offset += n as u64;
        }
        header(&mut after)?;
        if whole && before == after {
            return Ok(copy);
        }
    }
    Err(redb::StorageError::Io(std::io::Error::other(
        "a writer changed the manifest during every copy taken to check it: retry when it is idle",
    )))
}

impl Manifest {
    /// Opens (or creates, if `create`) the manifest file at `path` through
    /// `vfs`, for the one writer. Where the file has byte-range locks, other
    /// processes may open it read-only meanwhile (redb's `SingleWriter`).
    pub fn open(vfs: &dyn Vfs, path: &Path, create: bool) -> Result<Manifest> {
        guarded(path, || {
            let file = vfs.open(path, create).map_err(|e| Error::io(path, e))?;
            let backend = RedbFile(file.clone());
            let db = redb::Builder::new()
                .set_concurrency_mode(backend.concurrency_mode())
                .create_with_backend(backend)
                .map_err(|e| Error::redb(path, e))?;
            Ok(Manifest {
                db: Redb::Writer(db),
                file,
                path: path.to_path_buf(),
            })
        })
    }

    /// Opens the existing manifest at `path` read-only: nothing is written
    /// to the file, not even the mark of an open, and a writer in another
    /// process may commit meanwhile; every read transaction sees the latest
    /// commit as it begins.
    ///
    /// # Errors
    /// [`Error::ReadOnly`] if the file was not closed cleanly and no writer
    /// has it open (only a writer repairs it); as [`Manifest::open`].
    pub fn open_read_only(vfs: &dyn Vfs, path: &Path) -> Result<Manifest> {
        guarded(path, || {
            let file = vfs.open_read(path).map_err(|e| Error::io(path, e))?;
            let backend = RedbFile(file.clone());
            let db = redb::Builder::new()
                .set_concurrency_mode(backend.concurrency_mode())
                .open_read_only_with_backend(backend)
                .map_err(|e| match e {
                    redb::DatabaseError::RepairAborted => Error::ReadOnly {
                        path: path.to_path_buf(),
                        why: "its manifest was not closed cleanly and only a writer repairs it: \
                              open the database for writing once (or retry once the writer \
                              that is opening it has finished)",
                    },
                    e => Error::redb(path, e),
                })?;
            Ok(Manifest {
                db: Redb::ReadOnly {
                    db,
                    file: file.clone(),
                },
                file,
                path: path.to_path_buf(),
            })
        })
    }

    /// The manifest file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes the manifest file takes.
    pub fn file_len(&self) -> Result<u64> {
        self.file.len().map_err(|e| Error::io(&self.path, e))
    }

    /// Checks every page checksum and the allocator state (redb's integrity
    /// check; its ordinary reads skip it). redb repairs what it can, and
    /// either way damage is reported.
    pub fn check_integrity(&mut self) -> Result<()> {
        let path = self.path.clone();
        guarded(&path, || match self.db.check_integrity() {
            Ok(true) => Ok(()),
            Ok(false) => Err(Error::corrupted(
                &self.path,
                "damaged pages were found (redb repaired what it could); restore it from a backup",
            )),
            Err(e) => Err(Error::redb(&self.path, e)),
        })
    }

    /// Records that the file was renamed to `path` (for error messages).
    pub fn moved_to(&mut self, path: PathBuf) {
        self.path = path;
    }

    /// Rewrites the file without its free pages (redb's compaction).
    /// Returns `false`, changing nothing, while a read transaction is open.
    pub fn compact_file(&mut self) -> Result<bool> {
        let path = self.path.clone();
        guarded(&path, || match self.db.compact() {
            Ok(_) => Ok(true),
            Err(redb::CompactionError::TransactionInProgress) => Ok(false),
            Err(redb::CompactionError::Storage(e)) => Err(self.err(e)),
            Err(e) => Err(Error::corrupted(&self.path, e.to_string())),
        })
    }

    fn err(&self, e: impl Into<redb::Error>) -> Error {
        Error::redb(&self.path, e)
    }

    /// The stored options, or `None` for a manifest that was never initialised.
    pub fn config(&self) -> Result<Option<StoredConfig>> {
        guarded(&self.path, || {
            let tx = self.db.begin_read().map_err(|e| self.err(e))?;
            let table = match tx.open_table(CONFIG) {
                Ok(t) => t,
                Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
                Err(e) => return Err(self.err(e)),
            };
            let get = |key: &str| -> Result<Option<u64>> {
                Ok(table.get(key).map_err(|e| self.err(e))?.map(|v| v.value()))
            };
            // `initialise` writes the whole config in one transaction: a config table
            // without a version is damage, not a database that was never set up.
            let version = get("format_version")?
                .ok_or_else(|| Error::corrupted(&self.path, "config has no format_version"))?;
            if version == 0 {
                return Err(Error::corrupted(&self.path, "format version 0"));
            }
            if version > u64::from(FORMAT_VERSION) {
                return Err(Error::UnsupportedVersion {
                    file: self.path.clone(),
                    found: version,
                    supported: u64::from(FORMAT_VERSION),
                });
            }
            let missing =
                |what: &str| Error::corrupted(&self.path, format!("config has no {what}"));
            let dim = get("dim")?.ok_or_else(|| missing("dim"))?;
            let metric = get("metric")?.ok_or_else(|| missing("metric"))?;
            let metric = u32::try_from(metric)
                .ok()
                .and_then(Metric::from_code)
                .ok_or_else(|| {
                    Error::corrupted(&self.path, format!("unknown metric code {metric}"))
                })?;
            let dim = usize::try_from(dim)
                .ok()
                .filter(|&d| d > 0 && d <= crate::options::MAX_DIM)
                .ok_or_else(|| Error::corrupted(&self.path, format!("dimension {dim}")))?;
            // Written since the command line's `create`; older databases lack
            // them and use the caller's options.
            let build = |key: &str| -> Result<Option<usize>> {
                Ok(get(key)?.and_then(|v| usize::try_from(v).ok()))
            };
            Ok(Some(StoredConfig {
                dim,
                metric,
                m: build("m")?,
                ef_construction: build("ef_construction")?,
            }))
        })
    }

    /// Writes the config and empty tables of a new database.
    pub fn initialise(&self, options: &Options) -> Result<()> {
        guarded(&self.path, || {
            let tx = self.db.begin_write().map_err(|e| self.err(e))?;
            {
                let mut config = tx.open_table(CONFIG).map_err(|e| self.err(e))?;
                let mut put =
                    |k: &str, v: u64| config.insert(k, v).map(drop).map_err(|e| self.err(e));
                put("format_version", u64::from(FORMAT_VERSION))?;
                put("dim", options.dim as u64)?;
                put("metric", u64::from(options.metric.code()))?;
                put("m", options.m as u64)?;
                put("ef_construction", options.ef_construction as u64)?;
                let mut state = tx.open_table(STATE).map_err(|e| self.err(e))?;
                state.insert("generation", 0).map_err(|e| self.err(e))?;
                state
                    .insert("next_segment_id", 1)
                    .map_err(|e| self.err(e))?;
                state
                    .insert("next_growing_row", 0)
                    .map_err(|e| self.err(e))?;
                tx.open_table(SEGMENTS).map_err(|e| self.err(e))?;
                tx.open_table(IDS).map_err(|e| self.err(e))?;
                tx.open_table(TOMBSTONES).map_err(|e| self.err(e))?;
                tx.open_table(GROWING).map_err(|e| self.err(e))?;
                tx.open_table(PAYLOADS).map_err(|e| self.err(e))?;
            }
            tx.commit().map_err(|e| self.err(e))
        })
    }

    /// Reads everything `open` needs, from the commit `at` reads (so that
    /// the state and the snapshot's later lookups agree, even while a
    /// writer in another process commits).
    pub fn load(&self, at: &Reader, dim: usize) -> Result<Loaded> {
        guarded(&self.path, || {
            let tx = &at.tx;
            let state = at.state()?;
            let mut segments = Vec::new();
            for entry in tx
                .open_table(SEGMENTS)
                .map_err(|e| self.err(e))?
                .iter()
                .map_err(|e| self.err(e))?
            {
                let (k, v) = entry.map_err(|e| self.err(e))?;
                let meta = SegmentMeta::decode(v.value()).map_err(|e| match e {
                    Some(what) => Error::corrupted(&self.path, what),
                    None => Error::UnsupportedVersion {
                        file: self.path.clone(),
                        found: u64::from(v.value()[0]),
                        supported: u64::from(SEGMENT_META_VERSION),
                    },
                })?;
                segments.push((k.value(), meta));
            }
            let mut tombstones = Vec::new();
            for entry in tx
                .open_table(TOMBSTONES)
                .map_err(|e| self.err(e))?
                .iter()
                .map_err(|e| self.err(e))?
            {
                tombstones.push(entry.map_err(|e| self.err(e))?.0.value());
            }
            let mut growing = Vec::new();
            for entry in tx
                .open_table(GROWING)
                .map_err(|e| self.err(e))?
                .iter()
                .map_err(|e| self.err(e))?
            {
                let (k, v) = entry.map_err(|e| self.err(e))?;
                let (id, bytes) = v.value();
                let vector = decode_vector(bytes, dim).ok_or_else(|| {
                    Error::corrupted(
                        &self.path,
                        format!("growing row {} has {} bytes", k.value(), bytes.len()),
                    )
                })?;
                growing.push(GrowingRow {
                    row: k.value(),
                    id,
                    vector,
                });
            }
            let mut calibrations = Vec::new();
            // Databases written before calibration have no such table.
            match tx.open_table(CALIBRATION) {
                Ok(table) => {
                    for entry in table.iter().map_err(|e| self.err(e))? {
                        let (k, v) = entry.map_err(|e| self.err(e))?;
                        calibrations.push((k.value(), v.value().to_vec()));
                    }
                }
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(self.err(e)),
            }
            Ok(Loaded {
                state,
                segments,
                tombstones,
                growing,
                calibrations,
            })
        })
    }

    /// A read transaction on the latest commit, for a snapshot's point lookups.
    pub fn reader(&self) -> Result<Reader> {
        guarded(&self.path, || {
            Ok(Reader {
                tx: self.db.begin_read().map_err(|e| self.err(e))?,
                path: self.path.clone(),
            })
        })
    }

    /// Applies `plan` to the manifest in one durable redb commit. `lookup` runs
    /// first, inside the same transaction, to find where the given ids live now.
    pub fn commit<'a, F>(&self, ids: &[u64], plan: F) -> Result<()>
    where
        F: FnOnce(&[Option<Location>]) -> Result<Update<'a>>,
    {
        guarded(&self.path, || {
            let tx = self.db.begin_write().map_err(|e| self.err(e))?;
            let before = {
                let table = tx.open_table(IDS).map_err(|e| self.err(e))?;
                ids.iter()
                    .map(|&id| {
                        Ok(table.get(id).map_err(|e| self.err(e))?.map(|v| {
                            let (segment, row) = v.value();
                            Location { segment, row }
                        }))
                    })
                    .collect::<Result<Vec<_>>>()?
            };
            let update = plan(&before)?;
            self.apply(&tx, &update)?;
            tx.commit().map_err(|e| self.err(e))
        })
    }

    fn apply(&self, tx: &redb::WriteTransaction, u: &Update<'_>) -> Result<()> {
        let e = |err: redb::StorageError| self.err(err);
        {
            let mut growing = tx.open_table(GROWING).map_err(|err| self.err(err))?;
            if u.growing_cleared {
                growing.retain(|_, _| false).map_err(e)?;
            }
            for row in &u.growing_removed {
                growing.remove(row).map_err(e)?;
            }
            let mut bytes = Vec::new();
            for &(row, id, vector) in &u.growing_added {
                bytes.clear();
                bytes.extend(vector.iter().flat_map(|x| x.to_le_bytes()));
                growing.insert(row, (id, bytes.as_slice())).map_err(e)?;
            }
        }
        {
            let mut ids = tx.open_table(IDS).map_err(|err| self.err(err))?;
            for id in &u.ids_removed {
                ids.remove(id).map_err(e)?;
            }
            for &(id, loc) in &u.ids_set {
                ids.insert(id, (loc.segment, loc.row)).map_err(e)?;
            }
        }
        {
            let mut payloads = tx.open_table(PAYLOADS).map_err(|err| self.err(err))?;
            for id in &u.payloads_removed {
                payloads.remove(id).map_err(e)?;
            }
            for &(id, payload) in &u.payloads_set {
                payloads.insert(id, payload).map_err(e)?;
            }
        }
        {
            let mut tombstones = tx.open_table(TOMBSTONES).map_err(|err| self.err(err))?;
            for &key in &u.tombstones_added {
                tombstones.insert(key, ()).map_err(e)?;
            }
            for &segment in &u.segments_removed {
                tombstones
                    .retain_in((segment, 0)..=(segment, u64::MAX), |_, _| false)
                    .map_err(e)?;
            }
            let mut segments = tx.open_table(SEGMENTS).map_err(|err| self.err(err))?;
            for segment in &u.segments_removed {
                segments.remove(segment).map_err(e)?;
            }
            for (segment, meta) in &u.segments_added {
                segments
                    .insert(segment, meta.encode().as_slice())
                    .map_err(e)?;
            }
        }
        if !u.segments_removed.is_empty() || !u.calibrations_set.is_empty() {
            let mut calibration = tx.open_table(CALIBRATION).map_err(|err| self.err(err))?;
            for segment in &u.segments_removed {
                calibration.remove(segment).map_err(e)?;
            }
            for (segment, record) in &u.calibrations_set {
                calibration.insert(segment, record.as_slice()).map_err(e)?;
            }
        }
        let mut state = tx.open_table(STATE).map_err(|err| self.err(err))?;
        state.insert("generation", u.state.generation).map_err(e)?;
        state
            .insert("next_segment_id", u.state.next_segment_id)
            .map_err(e)?;
        state
            .insert("next_growing_row", u.state.next_growing_row)
            .map_err(e)?;
        Ok(())
    }
}

/// A redb read transaction pinned to one commit: point lookups for a snapshot.
#[derive(Debug)]
pub struct Reader {
    tx: redb::ReadTransaction,
    path: PathBuf,
}

impl Reader {
    /// The manifest file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The counters of the commit this transaction reads. Every commit
    /// changes them (a data commit the generation, a merge or a compaction
    /// the next segment id), except one that only records a calibration.
    pub fn state(&self) -> Result<State> {
        guarded(&self.path, || {
            let table = self.tx.open_table(STATE).map_err(|e| self.err(e))?;
            let get = |key: &str| -> Result<u64> {
                table
                    .get(key)
                    .map_err(|e| self.err(e))?
                    .map(|v| v.value())
                    .ok_or_else(|| Error::corrupted(&self.path, format!("state has no {key}")))
            };
            Ok(State {
                generation: get("generation")?,
                next_segment_id: get("next_segment_id")?,
                next_growing_row: get("next_growing_row")?,
            })
        })
    }

    fn err(&self, e: impl Into<redb::Error>) -> Error {
        Error::redb(&self.path, e)
    }

    /// Where `id` lives, if it is live.
    pub fn location(&self, id: u64) -> Result<Option<Location>> {
        guarded(&self.path, || {
            let table = self.tx.open_table(IDS).map_err(|e| self.err(e))?;
            let found = table.get(id).map_err(|e| self.err(e))?;
            Ok(found.map(|v| {
                let (segment, row) = v.value();
                Location { segment, row }
            }))
        })
    }

    /// Calls `f` with every live id and its location, in id order, stopping
    /// at the first error `f` returns.
    pub fn for_each_location(&self, mut f: impl FnMut(u64, Location) -> Result<()>) -> Result<()> {
        guarded(&self.path, || {
            let table = self.tx.open_table(IDS).map_err(|e| self.err(e))?;
            for entry in table.iter().map_err(|e| self.err(e))? {
                let (id, loc) = entry.map_err(|e| self.err(e))?;
                let (segment, row) = loc.value();
                f(id.value(), Location { segment, row })?;
            }
            Ok(())
        })
    }

    /// The payload of `id`, if it has one.
    pub fn payload(&self, id: u64) -> Result<Option<Vec<u8>>> {
        guarded(&self.path, || {
            let table = self.tx.open_table(PAYLOADS).map_err(|e| self.err(e))?;
            let found = table.get(id).map_err(|e| self.err(e))?;
            Ok(found.map(|v| v.value().to_vec()))
        })
    }
}

/// Runs `f`, turning a panic inside redb into [`Error::Corrupted`] naming
/// `path`: redb checks page checksums only in its integrity check, and some
/// damaged pages make it panic (an invalid page type, a malformed allocator
/// state) instead of returning an error. Quiver promises an error.
fn guarded<T>(path: &Path, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|panic| {
        let why = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("no message");
        Err(Error::corrupted(
            path,
            format!("reading it failed inside redb ({why}); restore it from a backup"),
        ))
    })
}

/// Decodes little-endian f32 bytes of a `dim`-vector.
fn decode_vector(bytes: &[u8], dim: usize) -> Option<Vec<f32>> {
    if bytes.len() != dim * 4 {
        return None;
    }
    Some(
        bytes
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_meta_round_trips_and_rejects_other_versions() {
        let meta = SegmentMeta {
            rows: 12,
            vectors_crc: 7,
            ids_crc: 9,
            graph: GraphMeta {
                header_crc: 1,
                entry_point: 2,
                max_level: 3,
                m: 16,
                ef_construction: 200,
            },
        };
        let mut b = meta.encode();
        assert_eq!(SegmentMeta::decode(&b), Ok(meta));
        b[0] = 2;
        assert!(SegmentMeta::decode(&b).is_err());
        assert!(SegmentMeta::decode(&b[..5]).is_err());
    }
}
