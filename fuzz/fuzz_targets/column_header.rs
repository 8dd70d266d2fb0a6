//! A column file of arbitrary bytes beside a valid manifest.
//!
//! A small database with one sealed segment is built once in a
//! [`MemFs`]. Each input replaces that segment's column file, twice:
//!
//! 1. as the whole file, byte for byte;
//! 2. laid over the start of the valid file, with the header checksum
//!    recomputed, so that the checks behind the checksum (version, metric,
//!    dimension, stride, row count, ids offset, length, the manifest record)
//!    are reached.
//!
//! Then `open`, `search`, `get` and `verify` run. None may panic. A file equal
//! to the valid one must give the valid answers; any other file must be
//! refused by `open` or `verify` with `Corrupted` (or `UnsupportedVersion`)
//! naming the column file, and a search or get may only fail the same way or
//! answer exactly as the valid database does.

#![no_main]

use libfuzzer_sys::fuzz_target;
use quiver::fs::{MemFs, Vfs};
use quiver::{Database, Error, Hit, Metric, Options, Record};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

const DIR: &str = "/db";
const DIM: usize = 3;
const HEADER_LEN: usize = 64;
const HEADER_CRC_AT: usize = 60;
const QUERY: [f32; DIM] = [0.5, -1.0, 2.0];

fn options() -> Options {
    Options::new(DIM, Metric::L2).growing_threshold(8).m(4)
}

fn column_path() -> PathBuf {
    Path::new(DIR).join("seg-0000000000000001.col")
}

/// The valid database: its file system, column file and answers.
struct Base {
    fs: MemFs,
    column: Vec<u8>,
    hits: Vec<Hit>,
    record: Option<Record>,
}

fn base() -> &'static Base {
    static BASE: OnceLock<Base> = OnceLock::new();
    BASE.get_or_init(|| {
        let fs = MemFs::new();
        {
            let db = Database::open_with_vfs(Arc::new(fs.clone()), DIR, options()).unwrap();
            let mut w = db.writer().unwrap();
            for id in 0..12u64 {
                let v = [id as f32, (id % 4) as f32, -(id as f32) / 2.0];
                w.upsert(id, &v, (id % 2 == 0).then_some(&b"p"[..]))
                    .unwrap();
            }
            assert!(w.commit().unwrap().sealed.is_some());
        }
        // The image a reboot would find: every file the commit made durable.
        let fs = fs.crash();
        let file = fs.open(&column_path(), false).unwrap();
        let mut column = vec![0; file.len().unwrap() as usize];
        file.read_at(0, &mut column).unwrap();
        let db = Database::open_with_vfs(Arc::new(fs.crash()), DIR, options()).unwrap();
        let hits = db.search(&QUERY, 5).unwrap();
        let record = db.get(3).unwrap();
        assert!(record.is_some());
        Base {
            fs,
            column,
            hits,
            record,
        }
    })
}

/// Whether `e` is the refusal a damaged column file must give.
fn names_column(e: &Error) -> bool {
    match e {
        Error::Corrupted { file, .. } | Error::UnsupportedVersion { file, .. } => {
            *file == column_path()
        }
        _ => false,
    }
}

/// Opens the base database with `column` as its column file and checks
/// every answer.
fn check(column: &[u8]) {
    let base = base();
    let fs = base.fs.crash();
    let file = fs.open(&column_path(), false).unwrap();
    file.set_len(0).unwrap();
    file.write_at(0, column).unwrap();
    let same = column == base.column.as_slice();

    let db = match Database::open_with_vfs(Arc::new(fs), DIR, options()) {
        Ok(db) => db,
        Err(e) if !same && names_column(&e) => return,
        Err(e) => panic!("open: {e:?}"),
    };
    let hits = db.search(&QUERY, 5);
    let record = db.get(3);
    let verified = db.verify();
    if same {
        assert_eq!(hits.unwrap(), base.hits);
        assert_eq!(record.unwrap(), base.record);
        verified.unwrap();
        return;
    }
    match verified {
        Err(e) if names_column(&e) => {}
        other => panic!("a changed column file passed verify: {other:?}"),
    }
    match hits {
        Ok(hits) => assert_eq!(hits, base.hits, "a changed column file was searched"),
        Err(e) => assert!(names_column(&e), "search: {e:?}"),
    }
    match record {
        Ok(record) => assert_eq!(record, base.record, "a changed column file was read"),
        Err(e) => assert!(names_column(&e), "get: {e:?}"),
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);

    let mut laid = base().column.clone();
    let n = data.len().min(laid.len());
    laid[..n].copy_from_slice(&data[..n]);
    if laid.len() >= HEADER_LEN {
        let crc = crc32fast::hash(&laid[..HEADER_CRC_AT]);
        laid[HEADER_CRC_AT..HEADER_LEN].copy_from_slice(&crc.to_le_bytes());
    }
    check(&laid);
});
