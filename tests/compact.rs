//! Offline compaction on a real directory built by many small commits with
//! deletes and upserts.

mod common;

use common::Rng;
use quiver::{compact, CompactOptions, Database, Metric, Options, SearchParams};
use std::collections::BTreeMap;
use std::path::Path;

const DIM: usize = 16;

/// Every commit seals a segment, and nothing merges online: the directory
/// an application that defers merging to offline compaction leaves behind.
fn options() -> Options {
    Options::new(DIM, Metric::L2)
        .growing_threshold(1)
        .auto_merge(false)
}

/// Model of what the database holds: id → (vector, payload).
type Model = BTreeMap<u64, (Vec<f32>, Vec<u8>)>;

/// 200 commits of 50 new rows each; every commit also deletes about 30 % as
/// many existing ids as it adds and writes new versions of about 10 %.
fn build(dir: &Path) -> Model {
    let db = Database::open(dir, options()).unwrap();
    let mut w = db.writer().unwrap();
    let mut rng = Rng::new(7);
    let mut model = Model::new();
    let mut next = 0u64;
    for _ in 0..200 {
        for _ in 0..50 {
            let v = rng.vector(DIM);
            let p = format!("row {next}").into_bytes();
            w.upsert(next, &v, Some(&p)).unwrap();
            model.insert(next, (v, p));
            next += 1;
        }
        let live: Vec<u64> = model.keys().copied().collect();
        for _ in 0..15 {
            let id = live[rng.below(live.len() as u64) as usize];
            if model.remove(&id).is_some() {
                w.delete(id).unwrap();
            }
        }
        for _ in 0..5 {
            let id = live[rng.below(live.len() as u64) as usize];
            if model.contains_key(&id) {
                let v = rng.vector(DIM);
                let p = format!("row {id} again").into_bytes();
                w.upsert(id, &v, Some(&p)).unwrap();
                model.insert(id, (v, p));
            }
        }
        w.commit().unwrap();
    }
    model
}

fn recall_at_10(db: &Database, model: &Model) -> f64 {
    let mut found = 0;
    let mut total = 0;
    for (_, (q, _)) in model.iter().step_by(model.len() / 200) {
        let truth = db
            .search_with(q, &SearchParams::new(10).exact(true))
            .unwrap();
        let hits = db.search(q, 10).unwrap();
        total += truth.len();
        found += hits
            .iter()
            .filter(|h| truth.iter().any(|t| t.id == h.id))
            .count();
    }
    found as f64 / total as f64
}

#[test]
fn compaction_of_many_small_commits_keeps_every_row_and_shrinks_the_directory() {
    let tmp = tempfile::tempdir().unwrap();
    let model = build(tmp.path());
    let db = Database::open_existing(tmp.path()).unwrap();
    let before = db.stats().unwrap();
    let recall_before = recall_at_10(&db, &model);
    drop(db);
    assert!(before.segments >= 10, "{before:?}");
    assert!(before.deleted_rows > 0, "{before:?}");

    let report = compact(tmp.path(), &CompactOptions::new()).unwrap();
    assert_eq!(report.segments_before, before.segments);
    assert!(
        report.segments_after * 10 <= before.segments,
        "{} segments after, {} before",
        report.segments_after,
        before.segments
    );

    let db = Database::open_existing(tmp.path()).unwrap();
    db.verify().unwrap();
    let after = db.stats().unwrap();
    assert_eq!(after.segments, report.segments_after);
    assert_eq!((after.deleted_rows, after.growing_rows), (0, 0));
    assert_eq!(after.rows, model.len());
    for (&id, (v, p)) in &model {
        let got = db.get(id).unwrap().expect("live id");
        assert_eq!(&got.vector, v, "id {id}");
        assert_eq!(got.payload.as_deref(), Some(p.as_slice()), "id {id}");
    }
    assert!(db.get(model.keys().last().unwrap() + 1).unwrap().is_none());
    let mut ids = db.snapshot().ids();
    ids.sort_unstable();
    assert_eq!(ids, model.keys().copied().collect::<Vec<_>>());

    // The directory shrinks by at least the share of rows that were dead.
    let dead_share = before.deleted_rows as f64 / (before.rows + before.deleted_rows) as f64;
    assert!(
        after.bytes_on_disk as f64 <= before.bytes_on_disk as f64 * (1.0 - dead_share),
        "{} -> {} bytes, dead share {dead_share:.2}",
        before.bytes_on_disk,
        after.bytes_on_disk
    );
    // The report's figure, taken before the reopen (which grows the redb
    // file by a few pages).
    let reported = report.bytes_after as f64;
    assert!((reported - after.bytes_on_disk as f64).abs() < 0.05 * reported);
    let recall_after = recall_at_10(&db, &model);
    assert!(
        recall_after >= recall_before - 0.005,
        "recall {recall_before} -> {recall_after}"
    );
}

#[test]
fn dry_run_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Database::open(tmp.path(), options()).unwrap();
    let mut w = db.writer().unwrap();
    let mut rng = Rng::new(3);
    for i in 0..30u64 {
        w.upsert(i, &rng.vector(DIM), None).unwrap();
        w.commit().unwrap();
    }
    drop((w, db));
    let names = || {
        let mut n: Vec<String> = std::fs::read_dir(tmp.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        n.sort();
        n
    };
    let files = names();
    let report = compact(tmp.path(), &CompactOptions::new().dry_run(true)).unwrap();
    assert!(!report.planned.is_empty());
    assert_eq!(names(), files);
    let db = Database::open_existing(tmp.path()).unwrap();
    assert_eq!(db.stats().unwrap().segments, report.segments_before);
}

#[test]
fn compaction_refuses_a_directory_another_handle_has_open() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Database::open(tmp.path(), options()).unwrap();
    let err = compact(tmp.path(), &CompactOptions::new()).unwrap_err();
    assert!(matches!(err, quiver::Error::WriterBusy { .. }), "{err}");
    drop(db);
}

#[test]
fn snapshots_taken_before_a_compaction_keep_reading_the_old_segments() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Database::open(tmp.path(), options()).unwrap();
    let mut w = db.writer().unwrap();
    let mut rng = Rng::new(5);
    let vectors: Vec<Vec<f32>> = (0..40).map(|_| rng.vector(DIM)).collect();
    for (i, v) in vectors.iter().enumerate() {
        w.upsert(i as u64, v, None).unwrap();
        if i % 4 == 3 {
            w.commit().unwrap();
        }
    }
    w.delete(0).unwrap();
    w.commit().unwrap();
    let old = db.snapshot();
    let before = old.search(&vectors[7], 3).unwrap();
    let report = w.compact(&CompactOptions::new(), &mut |_, _| {}).unwrap();
    assert_eq!(report.segments_after, 1);
    // The old snapshot still answers from the retired files, which are
    // removed once it is dropped.
    assert_eq!(old.search(&vectors[7], 3).unwrap(), before);
    assert_eq!(db.search(&vectors[7], 3).unwrap(), before);
    let cols = || {
        std::fs::read_dir(tmp.path())
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .path()
                    .extension()
                    .is_some_and(|x| x == "col")
            })
            .count()
    };
    assert!(cols() > 1);
    drop(old);
    // Retired files go once no reader holds them: the merger reclaims
    // unused states when idle (every half second), never a reader.
    for _ in 0..500 {
        crossbeam_epoch::pin().flush();
        if cols() == 1 {
            break;
        }
        let _ = db.search(&vectors[1], 1);
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(cols(), 1);
}
