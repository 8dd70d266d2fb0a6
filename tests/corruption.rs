//! Damaged and foreign files are reported with a typed error naming the file,
//! never served and never a panic.

use quiver::{Database, Error, Metric, Options};
use std::path::{Path, PathBuf};

fn options() -> Options {
    Options::new(4, Metric::L2).growing_threshold(8)
}

/// A database with one sealed segment of 16 rows; returns its column file.
fn sealed_db(dir: &Path) -> PathBuf {
    let db = Database::open(dir, options()).unwrap();
    let mut w = db.writer().unwrap();
    let ids: Vec<u64> = (0..16).collect();
    let data: Vec<f32> = (0..64).map(|i| i as f32).collect();
    w.upsert_batch(&ids, &data, None).unwrap();
    w.commit().unwrap();
    dir.join("seg-0000000000000001.col")
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x04;
    std::fs::write(path, bytes).unwrap();
}

fn assert_corrupted_naming<T: std::fmt::Debug>(result: quiver::Result<T>, file: &Path) {
    match result {
        Err(Error::Corrupted { file: f, what }) => {
            assert_eq!(f, file, "wrong file named ({what})");
        }
        other => panic!("expected corruption of {}, got {other:?}", file.display()),
    }
}

#[test]
fn flipped_vector_byte_is_never_served() {
    let tmp = tempfile::tempdir().unwrap();
    let col = sealed_db(tmp.path());
    flip(&col, 64 + 5);
    let db = Database::open(tmp.path(), options()).unwrap();
    assert_corrupted_naming(db.search(&[0.0; 4], 3), &col);
    assert_corrupted_naming(db.get(0), &col);
    assert_corrupted_naming(db.verify(), &col);
}

#[test]
fn flipped_id_byte_is_never_served() {
    let tmp = tempfile::tempdir().unwrap();
    let col = sealed_db(tmp.path());
    let len = std::fs::metadata(&col).unwrap().len() as usize;
    flip(&col, len - 3);
    let db = Database::open(tmp.path(), options()).unwrap();
    assert_corrupted_naming(db.search(&[0.0; 4], 3), &col);
}

#[test]
fn flipped_data_byte_fails_open_with_verify_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let col = sealed_db(tmp.path());
    flip(&col, 100);
    assert_corrupted_naming(
        Database::open(tmp.path(), options().verify_on_open(true)),
        &col,
    );
}

#[test]
fn every_flipped_header_byte_is_refused_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let col = sealed_db(tmp.path());
    let good = std::fs::read(&col).unwrap();
    for at in 0..64 {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        std::fs::write(&col, &bad).unwrap();
        match Database::open(tmp.path(), options()) {
            Err(Error::Corrupted { file, .. }) => assert_eq!(file, col, "byte {at}"),
            other => panic!("flip at header byte {at}: {other:?}"),
        }
    }
}

#[test]
fn truncated_column_file_is_refused_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let col = sealed_db(tmp.path());
    let bytes = std::fs::read(&col).unwrap();
    std::fs::write(&col, &bytes[..bytes.len() - 8]).unwrap();
    assert_corrupted_naming(Database::open(tmp.path(), options()), &col);
    std::fs::write(&col, &bytes[..30]).unwrap();
    assert_corrupted_naming(Database::open(tmp.path(), options()), &col);
}

#[test]
fn column_file_with_garbage_appended_is_refused_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let col = sealed_db(tmp.path());
    let mut bytes = std::fs::read(&col).unwrap();
    bytes.extend_from_slice(b"garbage");
    std::fs::write(&col, &bytes).unwrap();
    assert_corrupted_naming(Database::open(tmp.path(), options()), &col);
}

#[test]
fn missing_column_file_is_reported_as_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let col = sealed_db(tmp.path());
    std::fs::remove_file(&col).unwrap();
    assert_corrupted_naming(Database::open(tmp.path(), options()), &col);
}

#[test]
fn newer_column_format_version_is_reported_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    let col = sealed_db(tmp.path());
    let mut bytes = std::fs::read(&col).unwrap();
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&col, &bytes).unwrap();
    match Database::open(tmp.path(), options()) {
        Err(Error::UnsupportedVersion {
            file,
            found: 2,
            supported: 1,
        }) => assert_eq!(file, col),
        other => panic!("expected a version error, got {other:?}"),
    }
}

#[test]
fn newer_manifest_format_version_is_reported_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    drop(Database::open(tmp.path(), options()).unwrap());
    let manifest = tmp.path().join("quiver.redb");
    {
        let db = redb::Database::open(&manifest).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let table: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("config");
            let mut config = tx.open_table(table).unwrap();
            config.insert("format_version", 9).unwrap();
        }
        tx.commit().unwrap();
    }
    match Database::open(tmp.path(), options()) {
        Err(Error::UnsupportedVersion { file, found: 9, .. }) => assert_eq!(file, manifest),
        other => panic!("expected a version error, got {other:?}"),
    }
}

#[test]
fn truncated_manifest_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    sealed_db(tmp.path());
    let manifest = tmp.path().join("quiver.redb");
    let bytes = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, &bytes[..100]).unwrap();
    match Database::open(tmp.path(), options()) {
        Err(Error::Corrupted { file, .. }) | Err(Error::Io { path: file, .. }) => {
            assert_eq!(file, manifest)
        }
        other => panic!("expected the manifest to be refused, got {other:?}"),
    }
}

#[test]
fn every_flipped_links_header_byte_is_refused_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    sealed_db(tmp.path());
    let links = tmp.path().join("seg-0000000000000001.hnsw");
    let good = std::fs::read(&links).unwrap();
    for at in 0..128 {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        std::fs::write(&links, &bad).unwrap();
        match Database::open(tmp.path(), options()) {
            Err(Error::Corrupted { file, .. }) | Err(Error::UnsupportedVersion { file, .. }) => {
                assert_eq!(file, links, "byte {at}")
            }
            other => panic!("flip at links header byte {at}: {other:?}"),
        }
    }
}

#[test]
fn flipped_links_byte_is_never_searched() {
    let tmp = tempfile::tempdir().unwrap();
    sealed_db(tmp.path());
    let links = tmp.path().join("seg-0000000000000001.hnsw");
    flip(&links, 128 + 4);
    let db = Database::open(tmp.path(), options()).unwrap();
    assert_corrupted_naming(db.search(&[0.0; 4], 3), &links);
    assert_corrupted_naming(db.verify(), &links);
    drop(db);
    assert_corrupted_naming(
        Database::open(tmp.path(), options().verify_on_open(true)).map(drop),
        &links,
    );
}

#[test]
fn missing_links_file_is_reported_as_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    sealed_db(tmp.path());
    let links = tmp.path().join("seg-0000000000000001.hnsw");
    std::fs::remove_file(&links).unwrap();
    assert_corrupted_naming(Database::open(tmp.path(), options()), &links);
}
