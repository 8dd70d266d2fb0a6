//! `verify`: every check of a database directory in one pass, reporting every
//! damaged file, region and manifest entry rather than the first.
//!
//! [`Database::verify`] needs an open database, and opening stops at the first
//! damaged header or manifest entry it loads. [`verify`] checks the pieces one
//! by one instead, each as far as the damage before it allows: redb's page
//! checksums, the config, every manifest entry, then both files of every
//! segment the manifest records (a damaged column file still lets its links
//! file be checked). Only if all of that passes does it open the database and
//! check that the manifest's ids and the files agree.

use crate::db::{Database, Stats};
use crate::error::{Error, Result};
use crate::format::{LOCK_FILE, MANIFEST_FILE};
use crate::fs::{FileKind, RealFs, Vfs};
use crate::manifest::Manifest;
use crate::segment::Segment;
use rayon::prelude::*;
use std::path::Path;

/// What [`verify`] found.
#[derive(Debug)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Every problem found, each an [`Error`] naming its file: one per
    /// damaged region of a segment file, per damaged manifest entry, per
    /// check that failed. Empty when the database is sound.
    pub problems: Vec<Error>,
    /// The database's stats, when it was sound enough to open.
    pub stats: Option<Stats>,
}

/// Checks every file of the database in `dir` and reports every problem
/// found, as `quiver verify` does. Holds the directory lock while it reads
/// the files, and upgrades a version-1 manifest as every open does, but only
/// once redb's page checksums have passed; if the files pass, opens the
/// database as [`Database::open_existing`] does and checks its ids against
/// its files.
///
/// # Errors
/// Only when the check cannot start: [`Error::NotADatabase`] if `dir` holds
/// no manifest, [`Error::WriterBusy`] if another handle has it open,
/// [`Error::Io`] listing or locking it. Damage is never an `Err`: it is in
/// [`VerifyReport::problems`].
pub fn verify(dir: impl AsRef<Path>) -> Result<VerifyReport> {
    let dir = dir.as_ref();
    let vfs = RealFs;
    let io = |e| Error::io(dir, e);
    let not_a_database = |why| Error::NotADatabase {
        path: dir.to_path_buf(),
        why,
    };
    if vfs.kind(dir).map_err(io)? != Some(FileKind::Dir) {
        return Err(not_a_database("it is not a directory"));
    }
    if !vfs
        .list(dir)
        .map_err(io)?
        .iter()
        .any(|n| n == MANIFEST_FILE)
    {
        return Err(not_a_database("it holds no quiver.redb manifest"));
    }
    let lock_path = dir.join(LOCK_FILE);
    let lock = vfs
        .try_lock(&lock_path)
        .map_err(|e| Error::io(&lock_path, e))?
        .ok_or_else(|| Error::WriterBusy {
            path: dir.to_path_buf(),
            why: "another process (or another handle in this one) has it open; close that first",
        })?;
    let problems = check_files(&vfs, dir)?;
    drop(lock);
    if !problems.is_empty() {
        return Ok(VerifyReport {
            problems,
            stats: None,
        });
    }
    let db = match Database::open_existing(dir) {
        Ok(db) => db,
        Err(e @ (Error::Corrupted { .. } | Error::UnsupportedVersion { .. })) => {
            return Ok(VerifyReport {
                problems: vec![e],
                stats: None,
            })
        }
        Err(e) => return Err(e),
    };
    let problems = Database::check_ids(&db.snapshot().state)
        .into_iter()
        .collect();
    Ok(VerifyReport {
        problems,
        stats: Some(db.stats()?),
    })
}

/// The manifest's and the segment files' own checks, each going on after
/// damage as far as it can.
fn check_files(vfs: &RealFs, dir: &Path) -> Result<Vec<Error>> {
    let mut manifest = match Manifest::open(vfs, &dir.join(MANIFEST_FILE), false) {
        Ok(m) => m,
        Err(e) => return Ok(vec![e]),
    };
    let mut problems = Vec::new();
    // Version 1 checksummed nothing: upgrade it only if redb's own page
    // checksums pass, so that no damage is sealed in.
    match manifest.check_integrity() {
        Ok(()) => {
            if let Err(e) = manifest.upgrade() {
                return Ok(vec![e]);
            }
        }
        Err(e) => problems.push(e),
    }
    let config = match manifest.config() {
        Ok(Some(config)) => config,
        Ok(None) => {
            return Err(Error::NotADatabase {
                path: dir.to_path_buf(),
                why: "its manifest was never initialised (an interrupted create)",
            })
        }
        Err(e) => {
            problems.push(e);
            return Ok(problems);
        }
    };
    let checked = match manifest.reader() {
        Ok(reader) => reader.check(config.dim),
        Err(e) => {
            problems.push(e);
            return Ok(problems);
        }
    };
    problems.extend(checked.problems);
    let segments: Vec<Error> = checked
        .segments
        .par_iter()
        .flat_map_iter(|(id, meta)| {
            Segment::check_files(vfs, dir, *id, meta, config.dim, config.metric)
        })
        .collect();
    problems.extend(segments);
    Ok(problems)
}
