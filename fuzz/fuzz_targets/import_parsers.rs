//! The `quiver import` readers (tools/quiver/import.rs) on arbitrary files.
//!
//! Each input is written to a temporary file once per supported extension
//! (`.fvecs`, `.bvecs`, `.fbin`, `.u8bin`, `.npy`, `.jsonl`, `.ndjson`, and
//! `.ivecs` for ground truth), and every row is read: in small batches, and
//! again after skipping the first row. Nothing may panic, and what the reader
//! returns must hold together: `dim` finite values per row, one id and one
//! payload slot per row, ids that are row numbers unless a JSON Lines id
//! field is named, no payloads outside JSON Lines, and as many rows as
//! `rows_hint` promised when the whole file read cleanly.

#![no_main]

#[allow(dead_code)]
#[path = "../../tools/quiver/import.rs"]
mod import;

use import::{read_ivecs, Batch, Format, VectorReader};
use libfuzzer_sys::fuzz_target;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

const EXTENSIONS: [&str; 7] = ["fvecs", "bvecs", "fbin", "u8bin", "npy", "jsonl", "ndjson"];
const BATCH: usize = 3;

/// A directory for the input files, in memory where the machine has one:
/// rewriting a file on a disk file system can cost a flush each time.
fn dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        tempfile::tempdir_in("/dev/shm").unwrap_or_else(|_| tempfile::tempdir().unwrap())
    })
    .path()
}

fn write(ext: &str, data: &[u8]) -> PathBuf {
    let path = dir().join(format!("input.{ext}"));
    std::fs::write(&path, data).unwrap();
    path
}

/// Reads every row of `path` after skipping `skip`, checking each batch.
fn read_all(path: &Path, ids_field: Option<&str>, skip: u64) {
    let Ok(mut reader) = VectorReader::open(path, ids_field) else {
        return;
    };
    let dim = reader.dim();
    assert!(dim >= 1, "dimension 0 accepted");
    let hint = reader.rows_hint();
    if reader.skip(skip).is_err() {
        return;
    }
    let mut rows = skip;
    let mut batch = Batch::default();
    loop {
        match reader.next_batch(BATCH, &mut batch) {
            Ok(0) => break,
            Ok(n) => {
                assert!(n <= BATCH);
                assert_eq!(batch.ids.len(), n);
                assert_eq!(batch.payloads.len(), n);
                assert_eq!(batch.vectors.len(), n * dim, "dimension {dim}");
                assert!(
                    batch.vectors.iter().all(|v| v.is_finite()),
                    "non-finite value"
                );
                if ids_field.is_none() {
                    let want: Vec<u64> = (rows..rows + n as u64).collect();
                    assert_eq!(batch.ids, want, "ids are not row numbers");
                }
                if reader.format() != Format::Jsonl {
                    assert!(batch.payloads.iter().all(Option::is_none));
                }
                rows += n as u64;
                assert_eq!(reader.position(), rows);
            }
            // After an error the reader is spent.
            Err(_) => return,
        }
    }
    if let Some(hint) = hint {
        assert_eq!(rows, hint, "rows read disagree with rows_hint");
    }
    assert!(reader.bytes_read() <= reader.total_bytes());
}

fuzz_target!(|data: &[u8]| {
    for ext in EXTENSIONS {
        let path = write(ext, data);
        let json = matches!(ext, "jsonl" | "ndjson");
        for skip in [0, 1] {
            read_all(&path, None, skip);
            if json {
                read_all(&path, Some("id"), skip);
            }
        }
    }
    let path = write("ivecs", data);
    if let Ok(rows) = read_ivecs(&path) {
        let ints: usize = rows.iter().map(|r| 1 + r.len()).sum();
        assert_eq!(ints * 4, data.len(), "ivecs rows do not cover the file");
    }
});
