//! The manifest: every redb table of a database, and the only code that touches redb.
//!
//! | table | key → value | holds |
//! |---|---|---|
//! | `config` | `&str` → `u64` | `format_version`, `dim`, `metric`, `m`, `ef_construction`, `crc` |
//! | `state` | `&str` → `u64` | `generation`, `next_segment_id`, `next_growing_row`, `crc` |
//! | `segments` | segment id → (record, crc) | the live sealed segments (the manifest proper) |
//! | `ids` | user id → (segment, row, crc) | where each live id's vector is; segment 0 is the growing segment |
//! | `tombstones` | (segment, row) → crc | sealed rows that were deleted or replaced |
//! | `growing` | growing row → (user id, f32 bytes, crc) | the growing segment's rows |
//! | `payloads` | user id → (bytes, crc) | payloads |
//! | `calibration` | segment id → (record, crc) | a segment's measured recall per `ef` (see `calibrate.rs`) |
//! | `aliases` | retired segment id → (live segment id, crc) | a merged segment that holds a retired one's rows at the same row numbers |
//!
//! One redb write transaction per commit changes all of them at once: the redb
//! commit is Quiver's only commit point.
//!
//! redb checks its page checksums only in its integrity check, so every entry
//! carries a crc32 of its own (manifest version 2): over the table's name, the
//! key and the value, so that a value changed, or moved to another key or
//! table, fails it. `config` and `state` hold one `crc` entry over all their
//! other entries instead. Every read checks it, and a failure is
//! [`Error::Corrupted`] naming the manifest. A version-1 manifest (no
//! checksums) is upgraded in one transaction when it is loaded.
//!
//! A merge that keeps its largest input's rows in place (rows 0.. of the
//! merged segment, in their order) does not rewrite their `ids` entries: it
//! records an alias from that input to the merged segment instead (manifest
//! version 3), so that its switch costs the small side, as its graph does.
//! Every location read from `ids` is resolved through `aliases`; aliases are
//! kept one step long (an alias to a segment that is merged on is pointed
//! at the new one) and dropped once they lead to no live segment.

use crate::error::{Error, Result};
use crate::format::{u32_at, u64_at, MANIFEST_VERSION};
use crate::fs::{RedbFile, Vfs, VfsFile};
use crate::options::{Metric, Options};
use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const CONFIG: TableDefinition<&str, u64> = TableDefinition::new("config");
const STATE: TableDefinition<&str, u64> = TableDefinition::new("state");
const SEGMENTS: TableDefinition<u64, (&[u8], u32)> = TableDefinition::new("segments");
const IDS: TableDefinition<u64, (u64, u64, u32)> = TableDefinition::new("ids");
const TOMBSTONES: TableDefinition<(u64, u64), u32> = TableDefinition::new("tombstones");
const GROWING: TableDefinition<u64, (u64, &[u8], u32)> = TableDefinition::new("growing");
const PAYLOADS: TableDefinition<u64, (&[u8], u32)> = TableDefinition::new("payloads");
const CALIBRATION: TableDefinition<u64, (&[u8], u32)> = TableDefinition::new("calibration");
const ALIASES: TableDefinition<u64, (u64, u32)> = TableDefinition::new("aliases");

/// The key of the checksum entry of `config` and `state`.
const CRC_KEY: &str = "crc";

/// What a damaged manifest tells its reader to do.
const RESTORE: &str = "restore the database from a backup";

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

impl State {
    /// The counters as the `state` table holds them.
    fn entries(&self) -> BTreeMap<String, u64> {
        [
            ("generation", self.generation),
            ("next_segment_id", self.next_segment_id),
            ("next_growing_row", self.next_growing_row),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
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
    /// (retired segment, merged segment) pairs: the merged segment holds
    /// the retired one's rows at the same row numbers, and the `ids`
    /// entries that point at them are left as they are.
    pub aliases_set: Vec<(u64, u64)>,
    /// The counters after this commit.
    pub state: State,
}

/// The redb database of a Quiver directory.
#[derive(Debug)]
pub struct Manifest {
    /// Taken only by `drop`, which closes it.
    db: Option<Redb>,
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

impl Drop for Manifest {
    /// Closing a redb database commits its allocator state, and redb panics
    /// on some damaged files while it does: that is caught here, as every
    /// other call into redb is caught by `guarded`, so that dropping a
    /// database over a damaged manifest never panics. The damage itself was
    /// or will be reported by the reads and checks.
    fn drop(&mut self) {
        let db = self.db.take();
        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || drop(db)));
    }
}

impl Manifest {
    fn redb(&self) -> &Redb {
        self.db
            .as_ref()
            .expect("the manifest is open until dropped")
    }

    fn redb_mut(&mut self) -> &mut Redb {
        self.db
            .as_mut()
            .expect("the manifest is open until dropped")
    }

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
                db: Some(Redb::Writer(db)),
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
                db: Some(Redb::ReadOnly {
                    db,
                    file: file.clone(),
                }),
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
        guarded(&path, || match self.redb_mut().check_integrity() {
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
        guarded(&path, || match self.redb_mut().compact() {
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
            let tx = self.redb().begin_read().map_err(|e| self.err(e))?;
            let Some(entries) = read_config(&tx, &self.path)? else {
                return Ok(None);
            };
            let get = |key: &str| entries.get(key).copied();
            let missing =
                |what: &str| Error::corrupted(&self.path, format!("config has no {what}"));
            let dim = get("dim").ok_or_else(|| missing("dim"))?;
            let metric = get("metric").ok_or_else(|| missing("metric"))?;
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
            let build = |key: &str| get(key).and_then(|v| usize::try_from(v).ok());
            Ok(Some(StoredConfig {
                dim,
                metric,
                m: build("m"),
                ef_construction: build("ef_construction"),
            }))
        })
    }

    /// Writes the config and empty tables of a new database.
    pub fn initialise(&self, options: &Options) -> Result<()> {
        guarded(&self.path, || {
            let tx = self.redb().begin_write().map_err(|e| self.err(e))?;
            {
                let config: BTreeMap<String, u64> = [
                    ("format_version", MANIFEST_VERSION),
                    ("dim", options.dim as u64),
                    ("metric", u64::from(options.metric.code())),
                    ("m", options.m as u64),
                    ("ef_construction", options.ef_construction as u64),
                ]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v))
                .collect();
                let mut table = tx.open_table(CONFIG).map_err(|e| self.err(e))?;
                write_counters(&mut table, CONFIG, &config).map_err(|e| self.err(e))?;
                let mut table = tx.open_table(STATE).map_err(|e| self.err(e))?;
                let state = State {
                    generation: 0,
                    next_segment_id: 1,
                    next_growing_row: 0,
                };
                write_counters(&mut table, STATE, &state.entries()).map_err(|e| self.err(e))?;
                tx.open_table(SEGMENTS).map_err(|e| self.err(e))?;
                tx.open_table(IDS).map_err(|e| self.err(e))?;
                tx.open_table(TOMBSTONES).map_err(|e| self.err(e))?;
                tx.open_table(GROWING).map_err(|e| self.err(e))?;
                tx.open_table(PAYLOADS).map_err(|e| self.err(e))?;
                tx.open_table(CALIBRATION).map_err(|e| self.err(e))?;
                tx.open_table(ALIASES).map_err(|e| self.err(e))?;
            }
            tx.commit().map_err(|e| self.err(e))
        })
    }

    /// The stored `format_version`; `None` for a manifest never initialised.
    fn version(&self) -> Result<Option<u64>> {
        guarded(&self.path, || {
            let tx = self.redb().begin_read().map_err(|e| self.err(e))?;
            Ok(read_config(&tx, &self.path)?.and_then(|c| c.get("format_version").copied()))
        })
    }

    /// Whether the manifest is of version 1, which [`Manifest::upgrade`]
    /// rewrites before anything else reads it. (Version 2 reads as version
    /// 3 without aliases; a writer's open still upgrades it, so that older
    /// code refuses it once a merge has written an alias.)
    pub fn needs_upgrade(&self) -> Result<bool> {
        Ok(self.version()? == Some(1))
    }

    /// Brings an older manifest to version 3, in one transaction. Version 1
    /// is rewritten: every entry gets its checksum. Version 2 gets the
    /// `aliases` table. Does nothing to a manifest of version 3.
    ///
    /// Version 1 checksummed nothing, so damage from before the upgrade is
    /// sealed in with the rest; [`Manifest::check_integrity`] first finds
    /// what redb's page checksums can.
    pub fn upgrade(&self) -> Result<()> {
        guarded(&self.path, || {
            let version = match self.version()? {
                Some(v) if v < MANIFEST_VERSION => v,
                _ => return Ok(()),
            };
            let e = |err: redb::StorageError| self.err(err);
            let tx = self.redb().begin_write().map_err(|e| self.err(e))?;
            {
                let mut config = tx.open_table(CONFIG).map_err(|e| self.err(e))?;
                let mut entries = read_counters(&config).map_err(e)?;
                entries.insert("format_version".into(), MANIFEST_VERSION);
                write_counters(&mut config, CONFIG, &entries).map_err(e)?;
                tx.open_table(ALIASES).map_err(|e| self.err(e))?;
            }
            if version >= 2 {
                return tx.commit().map_err(|e| self.err(e));
            }
            {
                let mut state = tx.open_table(STATE).map_err(|e| self.err(e))?;
                let entries = read_counters(&state).map_err(e)?;
                write_counters(&mut state, STATE, &entries).map_err(e)?;
            }
            self.migrate(&tx, v1::SEGMENTS, SEGMENTS, |t, id, record| {
                t.insert(id, (record, bytes_crc(SEGMENTS, id, record)))
                    .map(drop)
            })?;
            self.migrate(&tx, v1::IDS, IDS, |t, id, (segment, row)| {
                let crc = location_crc(id, Location { segment, row });
                t.insert(id, (segment, row, crc)).map(drop)
            })?;
            self.migrate(&tx, v1::TOMBSTONES, TOMBSTONES, |t, key, ()| {
                t.insert(key, tombstone_crc(key)).map(drop)
            })?;
            self.migrate(&tx, v1::GROWING, GROWING, |t, row, (id, vector)| {
                t.insert(row, (id, vector, growing_crc(row, id, vector)))
                    .map(drop)
            })?;
            self.migrate(&tx, v1::PAYLOADS, PAYLOADS, |t, id, payload| {
                t.insert(id, (payload, bytes_crc(PAYLOADS, id, payload)))
                    .map(drop)
            })?;
            self.migrate(&tx, v1::CALIBRATION, CALIBRATION, |t, id, record| {
                t.insert(id, (record, bytes_crc(CALIBRATION, id, record)))
                    .map(drop)
            })?;
            tx.commit().map_err(|e| self.err(e))
        })
    }

    /// Moves every entry of the version-1 table `old` into the version-2
    /// table `new` of the same name, as `put` rewrites it; a missing `old`
    /// (`calibration` before its first record) leaves `new` empty.
    fn migrate<K: redb::Key + 'static, V: redb::Value + 'static, W: redb::Value + 'static>(
        &self,
        tx: &redb::WriteTransaction,
        old: TableDefinition<K, V>,
        new: TableDefinition<K, W>,
        mut put: impl for<'a> FnMut(
            &mut redb::Table<K, W>,
            K::SelfType<'a>,
            V::SelfType<'a>,
        ) -> std::result::Result<(), redb::StorageError>,
    ) -> Result<()> {
        let moved_name = format!("{}.v1", old.name());
        let moved = TableDefinition::<K, V>::new(&moved_name);
        match tx.rename_table(old, moved) {
            Ok(()) => {}
            Err(redb::TableError::TableDoesNotExist(_)) => {
                tx.open_table(new).map_err(|e| self.err(e))?;
                return Ok(());
            }
            Err(e) => return Err(self.err(e)),
        }
        {
            let from = tx.open_table(moved).map_err(|e| self.err(e))?;
            let mut to = tx.open_table(new).map_err(|e| self.err(e))?;
            for entry in from.iter().map_err(|e| self.err(e))? {
                let (k, v) = entry.map_err(|e| self.err(e))?;
                put(&mut to, k.value(), v.value()).map_err(|e| self.err(e))?;
            }
        }
        tx.delete_table(moved).map_err(|e| self.err(e))?;
        Ok(())
    }

    /// A read transaction on the latest commit, for a snapshot's point lookups.
    pub fn reader(&self) -> Result<Reader> {
        guarded(&self.path, || {
            Ok(Reader {
                tx: self.redb().begin_read().map_err(|e| self.err(e))?,
                path: self.path.clone(),
            })
        })
    }

    /// Applies `update` to the manifest in one durable redb commit.
    pub fn commit(&self, update: Update<'_>) -> Result<()> {
        guarded(&self.path, || {
            let tx = self.redb().begin_write().map_err(|e| self.err(e))?;
            self.apply(&tx, &update)?;
            tx.commit().map_err(|e| self.err(e))
        })
    }

    /// Adds the aliases `set` and keeps every alias one step long: one
    /// that led to a segment now aliased itself leads on to that alias's
    /// segment, and one that leads to no live segment (`segments` as this
    /// transaction leaves it) goes, since no `ids` entry can use it: the
    /// segment it led to was retired with no live row, or merged with its
    /// rows' `ids` entries rewritten.
    fn update_aliases(
        &self,
        tx: &redb::WriteTransaction,
        segments: &redb::Table<u64, (&[u8], u32)>,
        set: &[(u64, u64)],
    ) -> Result<()> {
        let e = |err: redb::StorageError| self.err(err);
        let mut aliases = tx.open_table(ALIASES).map_err(|err| self.err(err))?;
        let mut stored = BTreeMap::new();
        for entry in aliases.iter().map_err(e)? {
            let (from, v) = entry.map_err(e)?;
            let from = from.value();
            stored.insert(from, decode_alias(&self.path, from, v.value())?);
        }
        let onward: BTreeMap<u64, u64> = set.iter().copied().collect();
        let mut all = stored.clone();
        all.extend(set.iter().copied());
        for (from, to) in all {
            let to = onward.get(&to).copied().unwrap_or(to);
            if segments.get(to).map_err(e)?.is_none() {
                aliases.remove(from).map_err(e)?;
            } else if stored.get(&from) != Some(&to) {
                aliases.insert(from, (to, alias_crc(from, to))).map_err(e)?;
            }
        }
        Ok(())
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
                let crc = growing_crc(row, id, &bytes);
                growing
                    .insert(row, (id, bytes.as_slice(), crc))
                    .map_err(e)?;
            }
        }
        {
            let mut ids = tx.open_table(IDS).map_err(|err| self.err(err))?;
            for id in &u.ids_removed {
                ids.remove(id).map_err(e)?;
            }
            for &(id, loc) in &u.ids_set {
                ids.insert(id, (loc.segment, loc.row, location_crc(id, loc)))
                    .map_err(e)?;
            }
        }
        {
            let mut payloads = tx.open_table(PAYLOADS).map_err(|err| self.err(err))?;
            for id in &u.payloads_removed {
                payloads.remove(id).map_err(e)?;
            }
            for &(id, payload) in &u.payloads_set {
                payloads
                    .insert(id, (payload, bytes_crc(PAYLOADS, id, payload)))
                    .map_err(e)?;
            }
        }
        {
            let mut tombstones = tx.open_table(TOMBSTONES).map_err(|err| self.err(err))?;
            for &key in &u.tombstones_added {
                tombstones.insert(key, tombstone_crc(key)).map_err(e)?;
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
            for &(segment, meta) in &u.segments_added {
                let record = meta.encode();
                let crc = bytes_crc(SEGMENTS, segment, &record);
                segments
                    .insert(segment, (record.as_slice(), crc))
                    .map_err(e)?;
            }
            if !u.aliases_set.is_empty() || !u.segments_removed.is_empty() {
                self.update_aliases(tx, &segments, &u.aliases_set)?;
            }
        }
        if !u.segments_removed.is_empty() || !u.calibrations_set.is_empty() {
            let mut calibration = tx.open_table(CALIBRATION).map_err(|err| self.err(err))?;
            for segment in &u.segments_removed {
                calibration.remove(segment).map_err(e)?;
            }
            for (segment, record) in &u.calibrations_set {
                let crc = bytes_crc(CALIBRATION, *segment, record);
                calibration
                    .insert(segment, (record.as_slice(), crc))
                    .map_err(e)?;
            }
        }
        let mut state = tx.open_table(STATE).map_err(|err| self.err(err))?;
        write_counters(&mut state, STATE, &u.state.entries()).map_err(e)
    }
}

/// The version-1 tables, as [`Manifest::upgrade`] reads them: the same names
/// and keys, values without checksums, and `calibration` possibly missing.
mod v1 {
    use redb::TableDefinition;

    pub const SEGMENTS: TableDefinition<u64, &[u8]> = TableDefinition::new("segments");
    pub const IDS: TableDefinition<u64, (u64, u64)> = TableDefinition::new("ids");
    pub const TOMBSTONES: TableDefinition<(u64, u64), ()> = TableDefinition::new("tombstones");
    pub const GROWING: TableDefinition<u64, (u64, &[u8])> = TableDefinition::new("growing");
    pub const PAYLOADS: TableDefinition<u64, &[u8]> = TableDefinition::new("payloads");
    pub const CALIBRATION: TableDefinition<u64, &[u8]> = TableDefinition::new("calibration");
}

/// A redb read transaction pinned to one commit: point lookups for a snapshot.
#[derive(Debug)]
pub struct Reader {
    tx: redb::ReadTransaction,
    path: PathBuf,
}

/// What [`Reader::check`] found.
#[derive(Debug, Default)]
pub struct Checked {
    /// The segment records that passed their checks.
    pub segments: Vec<(u64, SegmentMeta)>,
    /// One error per damaged entry (the first [`SHOWN_PER_TABLE`] of each
    /// table, then one that counts the rest), or per table redb could not read.
    pub problems: Vec<Error>,
}

/// Damaged entries of one table that [`Reader::check`] names one by one.
pub const SHOWN_PER_TABLE: usize = 10;

impl Reader {
    /// The manifest file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: impl Into<redb::Error>) -> Error {
        Error::redb(&self.path, e)
    }

    /// Calls `each` with every entry of `table` as `decode` reads it, damaged
    /// ones as their error; a redb error (or one `each` returns) ends the walk.
    fn walk<K: redb::Key + 'static, V: redb::Value + 'static, T>(
        &self,
        table: TableDefinition<K, V>,
        decode: impl for<'a> Fn(K::SelfType<'a>, V::SelfType<'a>) -> Result<T>,
        mut each: impl FnMut(Result<T>) -> Result<()>,
    ) -> Result<()> {
        guarded(&self.path, || {
            let table = self.tx.open_table(table).map_err(|e| self.err(e))?;
            for entry in table.iter().map_err(|e| self.err(e))? {
                let (k, v) = entry.map_err(|e| self.err(e))?;
                each(decode(k.value(), v.value()))?;
            }
            Ok(())
        })
    }

    /// Every entry of `table`, stopping at the first damaged one.
    fn all<K: redb::Key + 'static, V: redb::Value + 'static, T>(
        &self,
        table: TableDefinition<K, V>,
        decode: impl for<'a> Fn(K::SelfType<'a>, V::SelfType<'a>) -> Result<T>,
    ) -> Result<Vec<T>> {
        let mut all = Vec::new();
        self.walk(table, decode, |entry| {
            all.push(entry?);
            Ok(())
        })?;
        Ok(all)
    }

    /// The counters of the commit this transaction reads, checked. Every
    /// commit changes them (a data commit the generation, a merge or a
    /// compaction the next segment id), except one that only records a
    /// calibration.
    pub fn state(&self) -> Result<State> {
        guarded(&self.path, || {
            let table = self.tx.open_table(STATE).map_err(|e| self.err(e))?;
            let entries = read_counters(&table).map_err(|e| self.err(e))?;
            check_counters(&self.path, STATE, &entries)?;
            let get = |key: &str| {
                entries
                    .get(key)
                    .copied()
                    .ok_or_else(|| Error::corrupted(&self.path, format!("state has no {key}")))
            };
            Ok(State {
                generation: get("generation")?,
                next_segment_id: get("next_segment_id")?,
                next_growing_row: get("next_growing_row")?,
            })
        })
    }

    /// Everything `open` needs, from this one transaction (so that the
    /// state and a snapshot's later lookups agree, even while a writer in
    /// another process commits); the first damaged entry is the error.
    pub fn load(&self, dim: usize) -> Result<Loaded> {
        let path = &self.path;
        Ok(Loaded {
            state: self.state()?,
            segments: self.all(SEGMENTS, |k, v| decode_segment(path, k, v))?,
            tombstones: self.all(TOMBSTONES, |k, v| decode_tombstone(path, k, v))?,
            growing: self.all(GROWING, |k, v| decode_growing(path, dim, k, v))?,
            calibrations: self.all(CALIBRATION, |k, v| {
                decode_calibration(path, k, v).map(|(id, record)| (id, record.to_vec()))
            })?,
        })
    }

    /// Reads every entry of every table and checks it, as `open` and reads
    /// do, but goes on after damage: every damaged entry is reported.
    pub fn check(&self, dim: usize) -> Checked {
        let path = &self.path;
        let mut checked = Checked::default();
        if let Err(e) = read_config(&self.tx, path) {
            checked.problems.push(e);
        }
        if let Err(e) = self.state() {
            checked.problems.push(e);
        }
        let problems = &mut checked.problems;
        let segments = &mut checked.segments;
        self.check_table(
            problems,
            SEGMENTS,
            |k, v| decode_segment(path, k, v),
            |s| segments.push(s),
        );
        self.check_table(problems, IDS, |k, v| decode_location(path, k, v), drop);
        self.check_table(
            problems,
            TOMBSTONES,
            |k, v| decode_tombstone(path, k, v),
            drop,
        );
        self.check_table(
            problems,
            GROWING,
            |k, v| decode_growing(path, dim, k, v),
            drop,
        );
        self.check_table(
            problems,
            PAYLOADS,
            |k, v| decode_payload(path, k, v).map(drop),
            drop,
        );
        // A record that passes its entry checksum is as it was written;
        // `open` decodes it.
        self.check_table(
            problems,
            CALIBRATION,
            |k, v| decode_calibration(path, k, v).map(drop),
            drop,
        );
        match self.aliases_table() {
            Ok(Some(_)) => self.check_table(
                problems,
                ALIASES,
                |k, v| decode_alias(path, k, v).map(drop),
                drop,
            ),
            Ok(None) => {}
            Err(e) => problems.push(e),
        }
        checked
    }

    /// Walks `table` for [`Reader::check`], passing each good entry to `keep`.
    fn check_table<K: redb::Key + 'static, V: redb::Value + 'static, T>(
        &self,
        problems: &mut Vec<Error>,
        table: TableDefinition<K, V>,
        decode: impl for<'a> Fn(K::SelfType<'a>, V::SelfType<'a>) -> Result<T>,
        mut keep: impl FnMut(T),
    ) {
        let mut damaged = 0usize;
        let walked = self.walk(table, decode, |entry| {
            match entry {
                Ok(entry) => keep(entry),
                Err(e) => {
                    damaged += 1;
                    if damaged <= SHOWN_PER_TABLE {
                        problems.push(e);
                    }
                }
            }
            Ok(())
        });
        if damaged > SHOWN_PER_TABLE {
            problems.push(Error::corrupted(
                &self.path,
                format!(
                    "{} more entries of `{}` fail their checks: {RESTORE}",
                    damaged - SHOWN_PER_TABLE,
                    table.name()
                ),
            ));
        }
        if let Err(e) = walked {
            problems.push(e);
        }
    }

    /// Where `id` lives, if it is live: its `ids` entry, resolved through
    /// `aliases`.
    pub fn location(&self, id: u64) -> Result<Option<Location>> {
        guarded(&self.path, || {
            let table = self.tx.open_table(IDS).map_err(|e| self.err(e))?;
            let Some(v) = table.get(id).map_err(|e| self.err(e))? else {
                return Ok(None);
            };
            let mut loc = decode_location(&self.path, id, v.value())?.1;
            if loc.segment == GROWING_SEGMENT {
                return Ok(Some(loc));
            }
            let Some(aliases) = self.aliases_table()? else {
                return Ok(Some(loc));
            };
            while let Some(v) = aliases.get(loc.segment).map_err(|e| self.err(e))? {
                loc.segment = decode_alias(&self.path, loc.segment, v.value())?;
            }
            Ok(Some(loc))
        })
    }

    /// The `aliases` table; `None` in a version-2 manifest, which has none.
    fn aliases_table(&self) -> Result<Option<redb::ReadOnlyTable<u64, (u64, u32)>>> {
        match self.tx.open_table(ALIASES) {
            Ok(t) => Ok(Some(t)),
            Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
            Err(e) => Err(self.err(e)),
        }
    }

    /// Every alias, checked: retired segment → the segment holding its rows.
    fn aliases(&self) -> Result<BTreeMap<u64, u64>> {
        if self.aliases_table()?.is_none() {
            return Ok(BTreeMap::new());
        }
        let path = &self.path;
        Ok(self
            .all(ALIASES, |from, v| Ok((from, decode_alias(path, from, v)?)))?
            .into_iter()
            .collect())
    }

    /// Calls `f` with every live id and its location (resolved through
    /// `aliases`), in id order, stopping at the first error `f` returns or
    /// the first damaged entry.
    pub fn for_each_location(&self, mut f: impl FnMut(u64, Location) -> Result<()>) -> Result<()> {
        let path = &self.path;
        let aliases = self.aliases()?;
        self.walk(
            IDS,
            |k, v| decode_location(path, k, v),
            |entry| {
                let (id, mut loc) = entry?;
                while let Some(&to) = aliases.get(&loc.segment) {
                    loc.segment = to;
                }
                f(id, loc)
            },
        )
    }

    /// The payload of `id`, if it has one.
    pub fn payload(&self, id: u64) -> Result<Option<Vec<u8>>> {
        guarded(&self.path, || {
            let table = self.tx.open_table(PAYLOADS).map_err(|e| self.err(e))?;
            match table.get(id).map_err(|e| self.err(e))? {
                Some(v) => Ok(Some(decode_payload(&self.path, id, v.value())?.to_vec())),
                None => Ok(None),
            }
        })
    }
}

/// The entries of `config`, checked, or `None` for a manifest that was never
/// initialised. `initialise` writes the whole config in one transaction: a
/// config table without a version is damage.
fn read_config(tx: &redb::ReadTransaction, path: &Path) -> Result<Option<BTreeMap<String, u64>>> {
    let table = match tx.open_table(CONFIG) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
        Err(e) => return Err(Error::redb(path, e)),
    };
    let entries = read_counters(&table).map_err(|e| Error::redb(path, e))?;
    let version = *entries
        .get("format_version")
        .ok_or_else(|| Error::corrupted(path, "config has no format_version"))?;
    if version == 0 {
        return Err(Error::corrupted(path, "format version 0"));
    }
    if version > MANIFEST_VERSION {
        return Err(Error::UnsupportedVersion {
            file: path.to_path_buf(),
            found: version,
            supported: MANIFEST_VERSION,
        });
    }
    if version == 1 {
        // Version 1 had no checksums; a `crc` entry means the version itself
        // was damaged.
        if entries.contains_key(CRC_KEY) {
            return Err(Error::corrupted(
                path,
                format!("config says version 1 but holds a checksum: {RESTORE}"),
            ));
        }
    } else {
        check_counters(path, CONFIG, &entries)?;
    }
    Ok(Some(entries))
}

/// Every entry of a `&str → u64` table.
fn read_counters(
    table: &impl ReadableTable<&'static str, u64>,
) -> std::result::Result<BTreeMap<String, u64>, redb::StorageError> {
    let mut entries = BTreeMap::new();
    for entry in table.iter()? {
        let (k, v) = entry?;
        entries.insert(k.value().to_string(), v.value());
    }
    Ok(entries)
}

/// Writes `entries` and their `crc` entry.
fn write_counters(
    table: &mut redb::Table<&str, u64>,
    name: TableDefinition<&str, u64>,
    entries: &BTreeMap<String, u64>,
) -> std::result::Result<(), redb::StorageError> {
    for (k, v) in entries {
        table.insert(k.as_str(), v)?;
    }
    table.insert(CRC_KEY, u64::from(counters_crc(name, entries)))?;
    Ok(())
}

/// The `crc` entry of a `config` or `state` table: every other entry in key
/// order, each as its key's length (`u32`), its key and its value.
fn counters_crc(table: TableDefinition<&str, u64>, entries: &BTreeMap<String, u64>) -> u32 {
    let mut h = hasher(table.name());
    for (k, v) in entries.iter().filter(|(k, _)| *k != CRC_KEY) {
        h.update(&(k.len() as u32).to_le_bytes());
        h.update(k.as_bytes());
        h.update(&v.to_le_bytes());
    }
    h.finalize()
}

fn check_counters(
    path: &Path,
    table: TableDefinition<&str, u64>,
    entries: &BTreeMap<String, u64>,
) -> Result<()> {
    match entries.get(CRC_KEY) {
        Some(&crc) if crc == u64::from(counters_crc(table, entries)) => Ok(()),
        found => Err(Error::corrupted(
            path,
            format!(
                "the `{}` table {}: {RESTORE}",
                table.name(),
                if found.is_some() {
                    "fails its checksum"
                } else {
                    "has no checksum"
                }
            ),
        )),
    }
}

/// A crc32 hasher that has taken in `table`'s name and a zero byte.
fn hasher(table: &str) -> crc32fast::Hasher {
    let mut h = crc32fast::Hasher::new();
    h.update(table.as_bytes());
    h.update(&[0]);
    h
}

/// The checksum of an entry: its table's name, then `fields`, the key's and
/// the value's fields in order as little-endian bytes.
fn entry_crc(table: &str, fields: &[&[u8]]) -> u32 {
    let mut h = hasher(table);
    for f in fields {
        h.update(f);
    }
    h.finalize()
}

/// The checksum of a `segments`, `payloads` or `calibration` entry.
fn bytes_crc(table: TableDefinition<u64, (&[u8], u32)>, key: u64, bytes: &[u8]) -> u32 {
    entry_crc(table.name(), &[&key.to_le_bytes(), bytes])
}

fn location_crc(id: u64, loc: Location) -> u32 {
    entry_crc(
        IDS.name(),
        &[
            &id.to_le_bytes(),
            &loc.segment.to_le_bytes(),
            &loc.row.to_le_bytes(),
        ],
    )
}

fn alias_crc(from: u64, to: u64) -> u32 {
    entry_crc(ALIASES.name(), &[&from.to_le_bytes(), &to.to_le_bytes()])
}

/// The segment the alias of segment `from` leads to. Merged segments get
/// ids larger than their inputs', so an alias that does not lead upward is
/// damage (and a chain of aliases cannot loop).
fn decode_alias(path: &Path, from: u64, (to, crc): (u64, u32)) -> Result<u64> {
    if crc != alias_crc(from, to) {
        return Err(damaged(path, format!("the alias of segment {from}")));
    }
    if to <= from || from == GROWING_SEGMENT {
        return Err(Error::corrupted(
            path,
            format!(
                "segment {from} is aliased to segment {to}, which is not a later one: {RESTORE}"
            ),
        ));
    }
    Ok(to)
}

fn tombstone_crc((segment, row): (u64, u64)) -> u32 {
    entry_crc(
        TOMBSTONES.name(),
        &[&segment.to_le_bytes(), &row.to_le_bytes()],
    )
}

fn growing_crc(row: u64, id: u64, vector: &[u8]) -> u32 {
    entry_crc(
        GROWING.name(),
        &[&row.to_le_bytes(), &id.to_le_bytes(), vector],
    )
}

/// The error of an entry whose checksum fails; `entry` names it.
fn damaged(path: &Path, entry: String) -> Error {
    Error::corrupted(path, format!("{entry} fails its checksum: {RESTORE}"))
}

fn decode_segment(path: &Path, id: u64, (record, crc): (&[u8], u32)) -> Result<(u64, SegmentMeta)> {
    if crc != bytes_crc(SEGMENTS, id, record) {
        return Err(damaged(
            path,
            format!("the `segments` entry of segment {id}"),
        ));
    }
    let meta = SegmentMeta::decode(record).map_err(|e| match e {
        Some(what) => Error::corrupted(path, format!("segment {id}: {what}")),
        None => Error::UnsupportedVersion {
            file: path.to_path_buf(),
            found: u64::from(record[0]),
            supported: u64::from(SEGMENT_META_VERSION),
        },
    })?;
    Ok((id, meta))
}

fn decode_location(
    path: &Path,
    id: u64,
    (segment, row, crc): (u64, u64, u32),
) -> Result<(u64, Location)> {
    let loc = Location { segment, row };
    if crc != location_crc(id, loc) {
        return Err(damaged(path, format!("the `ids` entry of id {id}")));
    }
    Ok((id, loc))
}

fn decode_tombstone(path: &Path, key: (u64, u64), crc: u32) -> Result<(u64, u64)> {
    if crc != tombstone_crc(key) {
        return Err(damaged(
            path,
            format!("the tombstone of row {} of segment {}", key.1, key.0),
        ));
    }
    Ok(key)
}

fn decode_growing(
    path: &Path,
    dim: usize,
    row: u64,
    (id, bytes, crc): (u64, &[u8], u32),
) -> Result<GrowingRow> {
    if crc != growing_crc(row, id, bytes) {
        return Err(damaged(path, format!("growing row {row}")));
    }
    let vector = decode_vector(bytes, dim).ok_or_else(|| {
        Error::corrupted(path, format!("growing row {row} has {} bytes", bytes.len()))
    })?;
    Ok(GrowingRow { row, id, vector })
}

fn decode_payload<'a>(path: &Path, id: u64, (payload, crc): (&'a [u8], u32)) -> Result<&'a [u8]> {
    if crc != bytes_crc(PAYLOADS, id, payload) {
        return Err(damaged(path, format!("the payload of id {id}")));
    }
    Ok(payload)
}

fn decode_calibration<'a>(
    path: &Path,
    id: u64,
    (record, crc): (&'a [u8], u32),
) -> Result<(u64, &'a [u8])> {
    if crc != bytes_crc(CALIBRATION, id, record) {
        return Err(damaged(
            path,
            format!("the calibration record of segment {id}"),
        ));
    }
    Ok((id, record))
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

    #[test]
    fn entry_checksums_bind_the_table_and_the_key() {
        let crc = bytes_crc(PAYLOADS, 1, b"value");
        assert_ne!(crc, bytes_crc(PAYLOADS, 2, b"value"));
        assert_ne!(crc, bytes_crc(CALIBRATION, 1, b"value"));
        assert_ne!(crc, bytes_crc(PAYLOADS, 1, b"valuf"));
        assert_ne!(tombstone_crc((1, 2)), tombstone_crc((2, 1)));
        let path = Path::new("quiver.redb");
        let loc = Location { segment: 3, row: 4 };
        let good = (3, 4, location_crc(9, loc));
        assert_eq!(decode_location(path, 9, good).unwrap(), (9, loc));
        assert!(decode_location(path, 8, good).is_err());
        assert!(decode_location(path, 9, (3, 5, good.2)).is_err());
    }

    #[test]
    fn counters_checksum_covers_every_entry_but_its_own() {
        let state = State {
            generation: 5,
            next_segment_id: 2,
            next_growing_row: 7,
        };
        let mut entries = state.entries();
        entries.insert(CRC_KEY.into(), u64::from(counters_crc(STATE, &entries)));
        let path = Path::new("quiver.redb");
        check_counters(path, STATE, &entries).unwrap();
        assert!(check_counters(path, CONFIG, &entries).is_err());
        let mut changed = entries.clone();
        changed.insert("generation".into(), 6);
        assert!(check_counters(path, STATE, &changed).is_err());
        let mut extra = entries.clone();
        extra.insert("other".into(), 0);
        assert!(check_counters(path, STATE, &extra).is_err());
        entries.remove(CRC_KEY);
        assert!(check_counters(path, STATE, &entries).is_err());
    }
}
