//! The public API on real temporary directories: durability across reopen,
//! upsert and delete semantics, and every input error.

mod common;

use common::Rng;
use quiver::{Database, Error, Metric, Options, SearchParams};
use std::path::Path;

fn opts() -> Options {
    Options::new(8, Metric::L2)
}

fn open(dir: &Path) -> Database {
    Database::open(dir, opts()).unwrap()
}

#[test]
fn reopen_after_commit_returns_the_same_data() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let mut rng = Rng::new(1);
    let rows: Vec<Vec<f32>> = (0..50).map(|_| rng.vector(8)).collect();
    {
        let db = open(&dir);
        let mut w = db.writer().unwrap();
        for (i, v) in rows.iter().enumerate() {
            w.upsert(i as u64, v, Some(format!("p{i}").as_bytes()))
                .unwrap();
        }
        let info = w.commit().unwrap();
        assert_eq!(info.upserted, 50);
        assert_eq!(info.generation, 1);
    }
    let db = open(&dir);
    assert_eq!(db.len(), 50);
    assert_eq!(db.snapshot().generation(), 1);
    for (i, v) in rows.iter().enumerate() {
        let rec = db.get(i as u64).unwrap().unwrap();
        assert_eq!(&rec.vector, v);
        assert_eq!(rec.payload.unwrap(), format!("p{i}").as_bytes());
    }
}

#[test]
fn sealed_segments_survive_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let mut rng = Rng::new(2);
    let data = rng.vectors(300, 8);
    let ids: Vec<u64> = (0..300).collect();
    let o = opts().growing_threshold(100);
    {
        let db = Database::open(&dir, o.clone()).unwrap();
        let mut w = db.writer().unwrap();
        w.upsert_batch(&ids, &data, None).unwrap();
        let info = w.commit().unwrap();
        assert_eq!(info.sealed.map(|s| s.1), Some(300));
        w.upsert(1000, &data[..8], None).unwrap();
        w.commit().unwrap();
        assert_eq!(db.stats().unwrap().segments, 1);
        assert_eq!(db.stats().unwrap().growing_rows, 1);
    }
    let db = Database::open(&dir, o).unwrap();
    assert_eq!(db.len(), 301);
    assert_eq!(db.get(299).unwrap().unwrap().vector, &data[299 * 8..]);
    assert_eq!(db.get(1000).unwrap().unwrap().vector, &data[..8]);
}

#[test]
fn uncommitted_writes_are_gone_after_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    {
        let db = open(&dir);
        let mut w = db.writer().unwrap();
        w.upsert(1, &[1.0; 8], None).unwrap();
        w.commit().unwrap();
        w.upsert(2, &[2.0; 8], None).unwrap();
        w.delete(1).unwrap();
        // dropped without commit
    }
    let db = open(&dir);
    assert!(db.get(1).unwrap().is_some());
    assert!(db.get(2).unwrap().is_none());
    assert_eq!(db.len(), 1);
}

#[test]
fn dropping_the_writer_discards_its_changes() {
    let tmp = tempfile::tempdir().unwrap();
    let db = open(&tmp.path().join("db"));
    let mut w = db.writer().unwrap();
    w.upsert(1, &[1.0; 8], None).unwrap();
    drop(w);
    let mut w = db.writer().unwrap();
    assert_eq!(w.pending(), 0);
    assert_eq!(w.commit().unwrap().upserted, 0);
    assert!(db.is_empty());
}

#[test]
fn upsert_replaces_vector_and_payload() {
    let tmp = tempfile::tempdir().unwrap();
    let db = open(&tmp.path().join("db"));
    let mut w = db.writer().unwrap();
    w.upsert(7, &[1.0; 8], Some(b"old")).unwrap();
    w.commit().unwrap();
    w.upsert(7, &[2.0; 8], None).unwrap();
    w.commit().unwrap();
    let rec = db.get(7).unwrap().unwrap();
    assert_eq!(rec.vector, vec![2.0; 8]);
    assert_eq!(rec.payload, None);
    assert_eq!(db.len(), 1);
    let hits = db.search(&[1.0; 8], 10).unwrap();
    assert_eq!(hits.len(), 1, "the old version must not be returned");
}

#[test]
fn upsert_replaces_rows_of_sealed_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let o = opts().growing_threshold(10);
    let db = Database::open(&dir, o.clone()).unwrap();
    let mut w = db.writer().unwrap();
    let ids: Vec<u64> = (0..20).collect();
    w.upsert_batch(&ids, &[1.0; 160], None).unwrap();
    w.commit().unwrap();
    w.upsert(3, &[5.0; 8], None).unwrap();
    w.delete(4).unwrap();
    w.commit().unwrap();
    let check = |db: &Database| {
        assert_eq!(db.len(), 19);
        assert_eq!(db.get(3).unwrap().unwrap().vector, vec![5.0; 8]);
        assert!(db.get(4).unwrap().is_none());
        let hits = db.search(&[5.0; 8], 30).unwrap();
        assert_eq!(hits.len(), 19);
        assert_eq!(hits[0].id, 3);
        assert_eq!(db.stats().unwrap().deleted_rows, 2);
    };
    check(&db);
    drop((w, db));
    check(&Database::open(&dir, o).unwrap());
}

#[test]
fn segment_whose_rows_are_all_replaced_is_retired_and_its_file_removed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = Database::open(&dir, opts().growing_threshold(4)).unwrap();
    let mut w = db.writer().unwrap();
    w.upsert_batch(&[1, 2, 3, 4], &[1.0; 32], None).unwrap();
    w.commit().unwrap();
    let held = db.snapshot();
    let col_files = |d: &Path| common::count_files(d, |n| n.ends_with(".col"));
    w.upsert_batch(&[1, 2, 3, 4], &[2.0; 32], None).unwrap();
    let info = w.commit().unwrap();
    assert_eq!(info.retired_segments, 1);
    assert_eq!(col_files(&dir), 2, "a snapshot still holds the old segment");
    assert_eq!(held.get(1).unwrap().unwrap().vector, vec![1.0; 8]);
    drop(held);
    // The epoch collector frees the old published pointer after later pins.
    for _ in 0..100_000 {
        if col_files(&dir) == 1 {
            break;
        }
        let _ = db.snapshot();
    }
    assert_eq!(col_files(&dir), 1);
    assert_eq!(db.get(1).unwrap().unwrap().vector, vec![2.0; 8]);
}

#[test]
fn delete_hides_the_id_from_search_and_get() {
    let tmp = tempfile::tempdir().unwrap();
    let db = open(&tmp.path().join("db"));
    let mut w = db.writer().unwrap();
    w.upsert(1, &[1.0; 8], None).unwrap();
    w.upsert(2, &[1.1; 8], None).unwrap();
    w.commit().unwrap();
    w.delete(1).unwrap();
    w.commit().unwrap();
    assert!(db.get(1).unwrap().is_none());
    let ids: Vec<u64> = db
        .search(&[1.0; 8], 5)
        .unwrap()
        .iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(ids, vec![2]);
}

#[test]
fn deleting_is_idempotent_and_says_whether_the_id_was_there() {
    let tmp = tempfile::tempdir().unwrap();
    let db = open(&tmp.path().join("db"));
    let mut w = db.writer().unwrap();
    assert!(!w.delete(99).unwrap(), "never there");
    assert_eq!(w.pending(), 0);
    w.upsert(5, &[0.5; 8], None).unwrap();
    assert!(w.delete(5).unwrap()); // staged only: cancels the upsert
    assert_eq!(w.pending(), 0);
    assert!(!w.delete(5).unwrap());
    for id in 0..4 {
        w.upsert(id, &[id as f32; 8], None).unwrap();
    }
    w.commit().unwrap();
    // Twice in one call counts once; unknown ids count zero.
    assert_eq!(w.delete_batch(&[1, 1, 2, 99, 2]).unwrap(), 2);
    assert_eq!(w.pending(), 2);
    assert_eq!(w.delete_batch(&[1, 2]).unwrap(), 0, "already staged");
    let info = w.commit().unwrap();
    assert_eq!(info.deleted, 2);
    assert_eq!(db.len(), 2);
    assert!(db.get(1).unwrap().is_none() && db.get(3).unwrap().is_some());
}

#[test]
fn options_mismatch_on_reopen_is_an_error() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    drop(open(&dir));
    match Database::open(&dir, Options::new(9, Metric::L2)) {
        Err(Error::OptionsMismatch {
            field,
            stored,
            requested,
        }) => {
            assert_eq!(
                (field, stored.as_str(), requested.as_str()),
                ("dimension", "8", "9")
            );
        }
        other => panic!("expected a mismatch, got {other:?}"),
    }
    assert!(matches!(
        Database::open(&dir, Options::new(8, Metric::Cosine)),
        Err(Error::OptionsMismatch {
            field: "metric",
            ..
        })
    ));
}

#[test]
fn wrong_dimension_is_rejected_everywhere() {
    let tmp = tempfile::tempdir().unwrap();
    let db = open(&tmp.path().join("db"));
    let mut w = db.writer().unwrap();
    assert!(matches!(
        w.upsert(1, &[1.0; 7], None),
        Err(Error::Dimension {
            expected: 8,
            got: 7
        })
    ));
    assert!(matches!(
        w.upsert_batch(&[1, 2], &[1.0; 15], None),
        Err(Error::Dimension { expected: 8, .. })
    ));
    assert!(matches!(
        w.upsert_batch(&[1, 2], &[1.0; 24], None),
        Err(Error::BatchLength {
            ids: 2,
            other: 3,
            ..
        })
    ));
    assert!(matches!(
        db.search(&[1.0; 9], 1),
        Err(Error::Dimension {
            expected: 8,
            got: 9
        })
    ));
    assert_eq!(w.pending(), 0);
}

#[test]
fn non_finite_values_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let db = open(&tmp.path().join("db"));
    let mut w = db.writer().unwrap();
    let mut v = [0.0f32; 8];
    v[3] = f32::NAN;
    assert!(matches!(
        w.upsert(1, &v, None),
        Err(Error::NonFinite { position: 3, .. })
    ));
    let mut batch = vec![0.0f32; 16];
    batch[12] = f32::INFINITY;
    assert!(matches!(
        w.upsert_batch(&[1, 2], &batch, None),
        Err(Error::NonFinite { position: 12, .. })
    ));
    assert!(matches!(db.search(&v, 1), Err(Error::NonFinite { .. })));
    assert_eq!(w.pending(), 0);
}

#[test]
fn zero_k_is_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let db = open(&tmp.path().join("db"));
    assert!(matches!(
        db.search(&[0.0; 8], 0),
        Err(Error::OutOfRange { name: "k", .. })
    ));
}

#[test]
fn zero_vector_is_rejected_for_cosine() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Database::open(tmp.path().join("db"), Options::new(4, Metric::Cosine)).unwrap();
    let mut w = db.writer().unwrap();
    assert!(matches!(
        w.upsert(1, &[0.0; 4], None),
        Err(Error::ZeroVector)
    ));
    assert!(matches!(db.search(&[0.0; 4], 1), Err(Error::ZeroVector)));
}

/// Vectors at the edges of f32: cosine ranks them whatever their scale, L2
/// and inner product refuse magnitudes whose distances would overflow or
/// underflow, at upsert, in a batch (naming the position) and as a query.
#[test]
fn magnitudes_at_the_edges_of_f32_are_ranked_or_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Database::open(tmp.path().join("cos"), Options::new(4, Metric::Cosine)).unwrap();
    let mut w = db.writer().unwrap();
    // Directions 0°, 10°, 20°, ... in the first plane, each at another scale.
    let scales = [1e19f32, 1e-30, 1.0, 1e30, 1e-37, 3e-20];
    for (i, scale) in scales.iter().enumerate() {
        let a = (i as f32 * 10.0).to_radians();
        w.upsert(
            i as u64,
            &[a.cos() * scale, a.sin() * scale, 0.0, 0.0],
            None,
        )
        .unwrap();
    }
    w.commit().unwrap();
    for query_scale in [1e-35f32, 1e25] {
        let hits = db.search(&[query_scale, 0.0, 0.0, 0.0], 6).unwrap();
        let ids: Vec<u64> = hits.iter().map(|h| h.id).collect();
        assert_eq!(ids, vec![0, 1, 2, 3, 4, 5], "query scale {query_scale:e}");
        assert!(hits.iter().all(|h| h.distance.is_finite()));
    }

    for metric in [Metric::L2, Metric::InnerProduct] {
        let dir = tmp.path().join(metric.to_string());
        let db = Database::open(&dir, Options::new(4, metric)).unwrap();
        let mut w = db.writer().unwrap();
        for bad in [1e19f32, -1e-30] {
            let v = [0.0, bad, 0.0, 0.0];
            let err = w.upsert(1, &v, None).unwrap_err();
            assert!(
                matches!(err, Error::Magnitude { position: 1, largest, .. } if largest == bad),
                "{metric} {bad:e}: {err:?}"
            );
            assert!(err.to_string().contains("scale the vectors"), "{err}");
            let batch = [[0.5f32; 4], v].concat();
            assert!(matches!(
                w.upsert_batch(&[1, 2], &batch, None),
                Err(Error::Magnitude { position: 5, .. })
            ));
            assert!(matches!(
                db.search(&v, 1),
                Err(Error::Magnitude { position: 1, .. })
            ));
        }
        assert_eq!(w.pending(), 0, "{metric}: a refused vector stages nothing");
        // Small but in range: still ranked by distance.
        w.upsert(1, &[1e-9, 0.0, 0.0, 0.0], None).unwrap();
        w.upsert(2, &[2e-9, 0.0, 0.0, 0.0], None).unwrap();
        w.commit().unwrap();
        if metric == Metric::L2 {
            let ids: Vec<u64> = db
                .search(&[1.1e-9, 0.0, 0.0, 0.0], 2)
                .unwrap()
                .iter()
                .map(|h| h.id)
                .collect();
            assert_eq!(ids, vec![1, 2]);
        }
    }
}

#[test]
fn zero_dimension_is_invalid() {
    let tmp = tempfile::tempdir().unwrap();
    assert!(matches!(
        Database::open(tmp.path().join("db"), Options::new(0, Metric::L2)),
        Err(Error::OutOfRange {
            name: "dimension",
            ..
        })
    ));
}

#[test]
fn out_of_range_options_are_refused_before_the_directory_is_made() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let cases = [
        (opts().m(1), "m is 1: it must be between 2 and 1024"),
        (opts().m(1025), "m is 1025: it must be between 2 and 1024"),
        (
            opts().m(32).ef_construction(31),
            "ef_construction is 31: it must be between m (32) and 65536",
        ),
        (
            opts().ef_search(0),
            "ef_search is 0: it must be between 1 and 65536",
        ),
        (
            opts().growing_threshold(0),
            "growing_threshold is 0: it must be between 1 and 4294967294",
        ),
    ];
    for (options, message) in cases {
        let e = Database::open(&dir, options).unwrap_err();
        assert_eq!(e.to_string(), message);
    }
    assert!(!dir.exists(), "nothing was created");
}

#[test]
fn out_of_range_search_parameters_are_refused_not_clamped() {
    let tmp = tempfile::tempdir().unwrap();
    let db = open(&tmp.path().join("db"));
    let q = [0.5; 8];
    let cases = [
        (
            SearchParams::new(0),
            "k is 0: it must be between 1 and 65536",
        ),
        (
            SearchParams::new(10).ef(9),
            "ef is 9: it must be between k (10) and 65536",
        ),
        (
            SearchParams::new(10).ef(65_537),
            "ef is 65537: it must be between k (10) and 65536",
        ),
        (
            SearchParams::new(10).target_recall(1.5),
            "target_recall is 1.5: it must be between 0 and 1",
        ),
        (
            SearchParams::new(10).target_recall(f64::NAN),
            "target_recall is NaN: it must be between 0 and 1",
        ),
        (
            SearchParams::new(65_537).exact(true),
            "k is 65537: it must be between 1 and 65536",
        ),
    ];
    for (params, message) in cases {
        assert_eq!(
            db.search_with(&q, &params).unwrap_err().to_string(),
            message
        );
    }
    assert!(db.search_with(&q, &SearchParams::new(10).ef(10)).is_ok());
}

#[test]
fn directory_that_is_not_a_database_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("notes.txt"), "hello").unwrap();
    assert!(matches!(
        Database::open(tmp.path(), opts()),
        Err(Error::NotADatabase { .. })
    ));
    let file = tmp.path().join("notes.txt");
    assert!(matches!(
        Database::open(&file, opts()),
        Err(Error::NotADatabase { .. })
    ));
}

#[test]
fn garbage_manifest_is_reported_as_corruption_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("quiver.redb"), vec![0x5a; 8192]).unwrap();
    match Database::open(tmp.path(), opts()) {
        Err(Error::Corrupted { file, .. }) => assert!(file.ends_with("quiver.redb")),
        other => panic!("expected corruption, got {other:?}"),
    }
}

#[test]
fn second_writer_in_the_same_process_is_busy() {
    let tmp = tempfile::tempdir().unwrap();
    let db = open(&tmp.path().join("db"));
    let w = db.writer().unwrap();
    assert!(matches!(db.writer(), Err(Error::WriterBusy { .. })));
    drop(w);
    assert!(db.writer().is_ok());
}

#[test]
fn second_handle_on_an_open_directory_is_busy() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = open(&dir);
    assert!(matches!(
        Database::open(&dir, opts()),
        Err(Error::WriterBusy { .. })
    ));
    drop(db);
    assert!(Database::open(&dir, opts()).is_ok());
}

#[test]
fn payload_and_batch_payload_lengths_are_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let db = open(&tmp.path().join("db"));
    let mut w = db.writer().unwrap();
    let p: &[u8] = b"x";
    assert!(matches!(
        w.upsert_batch(&[1, 2], &[0.0; 16], Some(&[p])),
        Err(Error::BatchLength {
            what: "payloads",
            ..
        })
    ));
    w.upsert_batch(&[1, 2], &[0.0; 16], Some(&[p, b"yz"]))
        .unwrap();
    w.commit().unwrap();
    assert_eq!(db.get(2).unwrap().unwrap().payload.unwrap(), b"yz");
}

#[test]
fn cosine_vectors_are_stored_normalised() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Database::open(tmp.path().join("db"), Options::new(2, Metric::Cosine)).unwrap();
    let mut w = db.writer().unwrap();
    w.upsert(1, &[3.0, 4.0], None).unwrap();
    w.commit().unwrap();
    let v = db.get(1).unwrap().unwrap().vector;
    assert!((v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6);
    let hit = db.search(&[6.0, 8.0], 1).unwrap()[0];
    assert!(hit.distance.abs() < 1e-6);
}

#[test]
fn snapshot_keeps_its_state_across_later_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let db = open(&tmp.path().join("db"));
    let mut w = db.writer().unwrap();
    w.upsert(1, &[1.0; 8], None).unwrap();
    w.commit().unwrap();
    let snap = db.snapshot();
    w.delete(1).unwrap();
    w.upsert(2, &[2.0; 8], None).unwrap();
    w.commit().unwrap();
    assert_eq!(snap.len(), 1);
    assert!(snap.get(1).unwrap().is_some());
    assert!(snap.get(2).unwrap().is_none());
    assert_eq!(snap.search(&[2.0; 8], 5).unwrap()[0].id, 1);
    assert_eq!(db.snapshot().generation(), snap.generation() + 1);
}

#[test]
fn orphan_column_files_are_removed_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    drop(open(&dir));
    std::fs::write(dir.join("seg-00000000000000ff.col"), b"left by a crash").unwrap();
    std::fs::write(dir.join("seg-0000000000000100.col.tmp"), b"half written").unwrap();
    drop(open(&dir));
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, vec!["LOCK", "quiver.redb"]);
}

#[test]
fn stats_count_rows_segments_and_bytes() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Database::open(tmp.path().join("db"), opts().growing_threshold(10)).unwrap();
    let mut w = db.writer().unwrap();
    let ids: Vec<u64> = (0..12).collect();
    w.upsert_batch(&ids, &[0.5; 96], None).unwrap();
    w.commit().unwrap();
    w.upsert(100, &[0.1; 8], None).unwrap();
    w.delete(0).unwrap();
    w.commit().unwrap();
    let s = db.stats().unwrap();
    assert_eq!(
        (s.rows, s.deleted_rows, s.segments, s.growing_rows),
        (12, 1, 1, 1)
    );
    assert_eq!(s.column_bytes, 64 + 12 * 64 + 12 * 8);
    assert!(s.manifest_bytes > 0);
    // A 128-byte header and one 192-byte level-0 slot per row at m = 16.
    assert!(s.links_bytes >= 128 + 12 * 192);
    assert_eq!(
        s.bytes_on_disk,
        s.column_bytes + s.links_bytes + s.manifest_bytes
    );
}

#[test]
fn create_killed_before_the_manifest_was_renamed_opens_as_new() {
    // What a create killed half way leaves: the lock and a partial temporary.
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("LOCK"), b"").unwrap();
    std::fs::write(tmp.path().join("quiver.redb.tmp"), b"\0\0partial").unwrap();
    assert!(matches!(
        Database::open_existing(tmp.path()),
        Err(Error::NotADatabase { .. })
    ));
    let db = Database::open(tmp.path(), Options::new(2, Metric::L2)).unwrap();
    let mut w = db.writer().unwrap();
    w.upsert(1, &[1.0, 2.0], None).unwrap();
    w.commit().unwrap();
    drop((w, db));
    assert!(!tmp.path().join("quiver.redb.tmp").exists());
    let db = Database::open_existing(tmp.path()).unwrap();
    assert_eq!(db.len(), 1);
}
