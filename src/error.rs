//! The one error type of the crate.
//!
//! Every variant carries what a caller needs to act on it: the expected and the
//! received dimension, the file that failed a check, the path of an I/O error.
//! Nothing in Quiver panics on bad input or on a damaged file; it returns one of
//! these.

use std::path::PathBuf;

/// The result type of every fallible Quiver call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in Quiver.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A vector's length is not the database's dimension.
    #[error("wrong vector dimension: the database stores {expected}-dimensional vectors, got {got} values")]
    Dimension {
        /// The database's dimension.
        expected: usize,
        /// The number of values received.
        got: usize,
    },

    /// A vector holds NaN or an infinity; such a vector has no meaningful distance.
    #[error("vector value at position {position} is {value}: vectors must be finite")]
    NonFinite {
        /// Position of the first bad value in the slice that was passed in.
        position: usize,
        /// The bad value.
        value: f32,
    },

    /// An L2 or inner-product vector too large or too small for its
    /// distances to fit in f32: they would overflow to infinity, or underflow
    /// until different vectors tie at distance 0.
    #[error("vector value at position {position}, its largest in magnitude, is {largest:e}: a {dim}-dimensional {metric} database takes 0 or magnitudes within [{min:e}, {max:e}], so that distances fit in f32; scale the vectors (or use cosine, which normalises them)")]
    Magnitude {
        /// Position of the vector's largest component (in magnitude) in the
        /// slice that was passed in.
        position: usize,
        /// That component.
        largest: f32,
        /// The database's dimension.
        dim: usize,
        /// The database's metric.
        metric: crate::Metric,
        /// The smallest largest-magnitude a non-zero vector may have.
        min: f32,
        /// The largest magnitude a component may have.
        max: f32,
    },

    /// A cosine database cannot store or search with an all-zero vector.
    #[error("zero vector: cosine distance is undefined for a vector of norm 0")]
    ZeroVector,

    /// A numeric option or search parameter is outside the range Quiver
    /// accepts; nothing is clamped, so the value is refused.
    #[error("{name} is {value}: it must be {allowed}")]
    OutOfRange {
        /// The option or parameter ("m", "ef", "k", ...).
        name: &'static str,
        /// The value given.
        value: String,
        /// The values accepted, in words: "between 2 and 1024".
        allowed: String,
    },

    /// A batch call got slices of different lengths.
    #[error("batch length mismatch: {ids} ids but {other} {what}")]
    BatchLength {
        /// Number of ids.
        ids: usize,
        /// Number of the other items.
        other: usize,
        /// What the other items are ("vectors", "payloads").
        what: &'static str,
    },

    /// A payload is larger than Quiver stores.
    #[error("payload of {len} bytes is larger than the limit of {limit} bytes")]
    PayloadTooLarge {
        /// The payload's length.
        len: usize,
        /// The largest payload accepted.
        limit: usize,
    },

    /// A commit would seal more rows into one segment than a graph addresses.
    #[error("a segment holds at most {limit} rows; this commit would seal {rows}: commit in smaller batches")]
    SegmentTooLarge {
        /// Rows the segment would hold.
        rows: usize,
        /// The most a segment holds.
        limit: usize,
    },

    /// The options passed to [`Options::new`](crate::Options::new) are unusable.
    #[error("invalid options: {what}")]
    InvalidOptions {
        /// What is wrong.
        what: &'static str,
    },

    /// The path exists but is not a Quiver database directory.
    #[error("{path} is not a Quiver database: {why}")]
    NotADatabase {
        /// The path that was opened.
        path: PathBuf,
        /// What was found instead.
        why: &'static str,
    },

    /// The database was created with other options than the ones given to `open`.
    #[error("options do not match the database: it was created with {field} = {stored}, open asked for {requested}")]
    OptionsMismatch {
        /// Which option differs ("dimension", "metric").
        field: &'static str,
        /// The stored value.
        stored: String,
        /// The requested value.
        requested: String,
    },

    /// A file was written by a newer Quiver; upgrade Quiver to read it.
    #[error("{file} has format version {found}, this Quiver reads up to version {supported}: upgrade Quiver")]
    UnsupportedVersion {
        /// The file whose version is too new.
        file: PathBuf,
        /// The version found in the file.
        found: u64,
        /// The newest version this build reads.
        supported: u64,
    },

    /// A file failed a check: bad magic, checksum, length or an inconsistent field.
    /// The data in it is never served.
    #[error("{file} is corrupted: {what}")]
    Corrupted {
        /// The damaged file.
        file: PathBuf,
        /// Which check failed.
        what: String,
    },

    /// Another writer holds the database: a live [`Writer`](crate::Writer) in this
    /// process, or another process that has the directory open.
    #[error("the database at {path} is busy: {why}")]
    WriterBusy {
        /// The database directory.
        path: PathBuf,
        /// Who holds it.
        why: &'static str,
    },

    /// The handle was opened with
    /// [`Database::open_read_only`](crate::Database::open_read_only), which
    /// never writes, or such a handle cannot read the directory as it is.
    #[error("the database at {path} is open read-only: {why}")]
    ReadOnly {
        /// The database directory (or its manifest).
        path: PathBuf,
        /// What was refused, and what to do instead.
        why: &'static str,
    },

    /// An earlier commit, compaction or background merge failed after it had
    /// started changing the manifest; the in-memory state can no longer be
    /// trusted to match the disk. Reopen the database.
    #[error("the database refuses further changes after an earlier failure ({cause}): reopen it")]
    WriterFailed {
        /// The message of the failure that stopped it.
        cause: String,
    },

    /// An operating-system I/O error.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// This error with the vector position it names moved by `offset`: for
    /// a vector checked on its own that came from a longer slice.
    pub(crate) fn at_offset(mut self, offset: usize) -> Self {
        if let Error::NonFinite { position, .. } | Error::Magnitude { position, .. } = &mut self {
            *position += offset;
        }
        self
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupted(file: impl Into<PathBuf>, what: impl Into<String>) -> Self {
        Error::Corrupted {
            file: file.into(),
            what: what.into(),
        }
    }

    /// Maps an error of the manifest's redb file to ours, naming the file.
    pub(crate) fn redb(file: &std::path::Path, err: impl Into<redb::Error>) -> Self {
        match err.into() {
            // redb reports a file that is not a redb database as InvalidData.
            redb::Error::Io(source) if source.kind() == std::io::ErrorKind::InvalidData => {
                Error::corrupted(file, source.to_string())
            }
            redb::Error::Io(source) => Error::io(file, source),
            redb::Error::DatabaseAlreadyOpen => Error::WriterBusy {
                path: file.to_path_buf(),
                why: "the manifest is open elsewhere",
            },
            redb::Error::Corrupted(what) => Error::corrupted(file, what),
            // Not damage: redb refuses every access to the file, reads
            // included, once a read, a write or a sync of it failed.
            redb::Error::PreviousIo => Error::io(
                file,
                std::io::Error::other("an earlier access to it failed: reopen the database"),
            ),
            other => Error::corrupted(file, other.to_string()),
        }
    }
}
