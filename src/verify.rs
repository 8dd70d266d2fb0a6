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
use crate::format::MANIFEST_FILE;
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
/// found, as `quiver verify` does. It writes nothing and takes no lock, as a
/// [read-only handle](Database::open_read_only) does, so it runs on
/// read-only media and beside a writer in another process: a check that
/// finds damage while that writer committed (and perhaps removed a file the
/// check had listed) starts over from the newer commit. If the files pass,
/// it opens the database read-only and checks its ids against its files.
///
/// # Errors
/// Only when the check cannot start: [`Error::NotADatabase`] if `dir` holds
/// no manifest, [`Error::ReadOnly`] for a manifest of format version 1
/// (which a writer's open upgrades first), [`Error::Io`] listing it. Damage
/// is never an `Err`: it is in [`VerifyReport::problems`].
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
    let mut manifest = match Manifest::open_read_only(&vfs, &dir.join(MANIFEST_FILE)) {
        Ok(m) => m,
        Err(e @ Error::ReadOnly { .. }) => return Err(e),
        Err(e) => {
            return Ok(VerifyReport {
                problems: vec![e],
                stats: None,
            })
        }
    };
    let commit = |m: &Manifest| m.reader().and_then(|r| r.state()).ok();
    let mut tries = 1;
    let problems = loop {
        let before = commit(&manifest);
        let problems = check_files(&vfs, dir, &mut manifest)?;
        if problems.is_empty() || tries == VERIFY_TRIES || commit(&manifest) == before {
            break problems;
        }
        tries += 1;
    };
    if !problems.is_empty() {
        return Ok(VerifyReport {
            problems,
            stats: None,
        });
    }
    let db = match Database::open_read_only(dir) {
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

/// Checks started over when a writer committed meanwhile.
const VERIFY_TRIES: usize = 16;

/// The manifest's and the segment files' own checks, each going on after
/// damage as far as it can.
fn check_files(vfs: &RealFs, dir: &Path, manifest: &mut Manifest) -> Result<Vec<Error>> {
    let mut problems = Vec::new();
    if let Err(e) = manifest.check_integrity() {
        problems.push(e);
    }
    // Version 1 checksummed none of its entries, and its tables have other
    // types: a writer's open upgrades it before anything reads them.
    if manifest.needs_upgrade().unwrap_or(false) {
        return Err(Error::ReadOnly {
            path: dir.join(MANIFEST_FILE),
            why: "its manifest is of format version 1, which a writer upgrades at open: \
                  open the database for writing once, then verify it",
        });
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
