//! The database as applications leave it: built by many commits of any
//! size, with deletes and upserts and the background merger running. Recall
//! at the default `ef` for every build pattern, consistent reads while merges
//! switch, and bounded memory under endless updates of the same ids.

mod common;

use common::Rng;
use quiver::{synth, Database, Metric, Options, SearchParams};
use std::collections::BTreeMap;

const DIM: usize = 32;
const K: usize = 10;

/// How a test database is built.
#[derive(Debug, Clone, Copy)]
enum Pattern {
    /// All rows in one commit.
    OneCommit,
    /// Commits of this many rows.
    Commits(usize),
    /// Commits of 100 rows, then 30 % deleted and 10 % replaced in 100-row commits.
    Churn,
}

/// Builds `n` clustered rows into a new database in `dir` by `pattern`;
/// returns it with the live rows.
fn build(
    dir: &std::path::Path,
    n: usize,
    pattern: Pattern,
    options: Options,
) -> (Database, BTreeMap<u64, Vec<f32>>) {
    let data = synth::clustered(n, DIM, 100, 0.3, 5);
    let db = Database::open(dir, options).unwrap();
    let mut w = db.writer().unwrap();
    let per_commit = match pattern {
        Pattern::OneCommit => n,
        Pattern::Commits(c) => c,
        Pattern::Churn => 100,
    };
    let mut live = BTreeMap::new();
    for (c, chunk) in data.chunks(per_commit * DIM).enumerate() {
        let first = (c * per_commit) as u64;
        let ids: Vec<u64> = (first..first + (chunk.len() / DIM) as u64).collect();
        w.upsert_batch(&ids, chunk, None).unwrap();
        w.commit().unwrap();
        for (id, v) in ids.iter().zip(chunk.chunks(DIM)) {
            live.insert(*id, v.to_vec());
        }
    }
    if let Pattern::Churn = pattern {
        let mut rng = Rng::new(17);
        let mut order: Vec<u64> = live.keys().copied().collect();
        for i in (1..order.len()).rev() {
            order.swap(i, rng.below(i as u64 + 1) as usize);
        }
        let (gone, rest) = order.split_at(n * 3 / 10);
        let replaced = &rest[..n / 10];
        let fresh = synth::clustered(replaced.len(), DIM, 100, 0.3, 6);
        for (c, ids) in gone.chunks(100).enumerate() {
            for id in ids {
                w.delete(*id).unwrap();
                live.remove(id);
            }
            if let Some(up) = replaced.chunks(100).nth(c) {
                let vectors = &fresh[c * 100 * DIM..(c * 100 + up.len()) * DIM];
                w.upsert_batch(up, vectors, None).unwrap();
                for (id, v) in up.iter().zip(vectors.chunks(DIM)) {
                    live.insert(*id, v.to_vec());
                }
            }
            w.commit().unwrap();
        }
    }
    drop(w);
    (db, live)
}

/// Mean recall@10 at the default `ef` against exact search, over held-out queries.
fn recall(db: &Database) -> f64 {
    let queries = synth::clustered_queries(200, DIM, 100, 0.3, 5, 77);
    common::recall(&db.snapshot(), &queries, DIM, K)
}

fn options() -> Options {
    Options::new(DIM, Metric::L2).growing_threshold(2_000)
}

#[test]
fn recall_at_the_default_ef_is_at_least_0_95_for_every_build_pattern() {
    for pattern in [
        Pattern::OneCommit,
        Pattern::Commits(2_000),
        Pattern::Commits(100),
        Pattern::Churn,
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let (db, live) = build(tmp.path(), 12_000, pattern, options());
        let running = recall(&db);
        db.wait_for_merges();
        let settled = recall(&db);
        let s = db.stats().unwrap();
        eprintln!(
            "{pattern:?}: recall@10 {running:.4} while merging, {settled:.4} settled; \
             {} segments, {} growing rows, {} merges",
            s.segments, s.growing_rows, s.merges
        );
        assert_eq!(db.len(), live.len());
        assert!(
            running >= 0.95 && settled >= 0.95,
            "{pattern:?}: {running} / {settled}"
        );
    }
}

#[test]
fn segments_a_commit_or_a_merge_writes_are_published_calibrated() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = build(
        tmp.path(),
        6_000,
        Pattern::Commits(2_000),
        options().auto_merge(false),
    );
    // Nothing runs in the background: each commit measured its own segment.
    let s = db.stats().unwrap();
    assert_eq!((s.segments, s.calibrated_segments), (3, 3));
    assert!(db.merge_pending().unwrap() >= 1);
    let s = db.stats().unwrap();
    assert_eq!(s.segments, 1);
    assert_eq!(s.calibrated_segments, 1);
    // The curve is in the manifest: a reopened database has it too.
    let path = db.path().to_path_buf();
    drop(db);
    let db = Database::open_existing(&path).unwrap();
    assert_eq!(db.stats().unwrap().calibrated_segments, 1);
}

#[test]
fn merges_keep_few_segments_and_lose_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, live) = build(tmp.path(), 12_000, Pattern::Churn, options());
    db.wait_for_merges();
    let s = db.stats().unwrap();
    assert!(s.merges > 0, "the workload must merge");
    assert!(s.segments <= 3, "{} segments", s.segments);
    assert_eq!(db.len(), live.len());
    for (id, v) in live.iter().step_by(37) {
        assert_eq!(&db.get(*id).unwrap().unwrap().vector, v, "id {id}");
    }
    let all = db
        .search_with(&[0.0; DIM], &SearchParams::new(live.len() + 10).exact(true))
        .unwrap();
    assert_eq!(all.len(), live.len(), "a row is duplicated or lost");
    db.verify().unwrap();
    drop(db);
    let db = Database::open(tmp.path(), options()).unwrap();
    assert_eq!(db.len(), live.len());
    db.verify().unwrap();
    let files = common::count_files(tmp.path(), |n| n.starts_with("seg-"));
    assert_eq!(files, 2 * db.stats().unwrap().segments);
}

#[test]
fn a_snapshot_taken_before_merges_reads_the_same_until_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, live) = build(tmp.path(), 6_000, Pattern::Commits(1_000), options());
    let snap = db.snapshot();
    let queries = synth::clustered_queries(20, DIM, 100, 0.3, 5, 78);
    let exact = SearchParams::new(K).exact(true);
    let before: Vec<_> = queries
        .chunks(DIM)
        .map(|q| snap.search_with(q, &exact).unwrap())
        .collect();
    // More commits and the merges they trigger, while the snapshot lives.
    let mut w = db.writer().unwrap();
    let extra = synth::clustered(4_000, DIM, 100, 0.3, 9);
    for (c, chunk) in extra.chunks(500 * DIM).enumerate() {
        let first = 100_000 + (c * 500) as u64;
        let ids: Vec<u64> = (first..first + 500).collect();
        w.upsert_batch(&ids, chunk, None).unwrap();
        w.delete(c as u64).unwrap();
        w.commit().unwrap();
    }
    db.wait_for_merges();
    assert!(db.stats().unwrap().merges > 0);
    for (q, want) in queries.chunks(DIM).zip(&before) {
        assert_eq!(&snap.search_with(q, &exact).unwrap(), want);
    }
    assert_eq!(snap.len(), live.len());
    assert_eq!(snap.get(0).unwrap().unwrap().vector, live[&0]);
    drop(snap);
    assert_eq!(db.len(), live.len() + 4_000 - 8);
}

#[test]
fn readers_see_whole_commits_while_merges_switch() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Database::open(tmp.path(), options().growing_threshold(300)).unwrap();
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        for t in 0..2 {
            let (db, stop) = (&db, &stop);
            s.spawn(move || {
                let mut rng = Rng::new(t);
                while !stop.load(std::sync::atomic::Ordering::Acquire) {
                    let snap = db.snapshot();
                    // Every commit adds exactly 100 rows: a snapshot holds a
                    // multiple of 100, and its exact scan finds all of them.
                    let n = snap.len();
                    assert_eq!(n % 100, 0, "a half commit is visible");
                    let q = rng.vector(DIM);
                    let all = snap
                        .search_with(&q, &SearchParams::new(n + 1).exact(true))
                        .unwrap();
                    assert_eq!(all.len(), n);
                    let approx = snap.search(&q, K).unwrap();
                    assert_eq!(approx.len(), K.min(n));
                }
            });
        }
        let mut w = db.writer().unwrap();
        let data = synth::clustered(6_000, DIM, 100, 0.3, 3);
        for (c, chunk) in data.chunks(100 * DIM).enumerate() {
            let ids: Vec<u64> = (c as u64 * 100..c as u64 * 100 + 100).collect();
            w.upsert_batch(&ids, chunk, None).unwrap();
            w.commit().unwrap();
        }
        db.wait_for_merges();
        stop.store(true, std::sync::atomic::Ordering::Release);
    });
    assert!(db.stats().unwrap().merges > 0);
    assert_eq!(db.len(), 6_000);
}

#[test]
fn endless_updates_of_the_same_ids_hold_a_bounded_number_of_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let threshold = 1_000;
    let db = Database::open(tmp.path(), options().growing_threshold(threshold)).unwrap();
    let mut w = db.writer().unwrap();
    let mut rng = Rng::new(5);
    let ids: Vec<u64> = (0..100).collect();
    let mut most_held = 0;
    // 100 ids updated 1,000 times each: 100,000 updates.
    for _ in 0..1_000 {
        w.upsert_batch(&ids, &rng.vectors(100, DIM), None).unwrap();
        w.commit().unwrap();
        let s = db.stats().unwrap();
        // Rows held: live and deleted rows of sealed segments, and every row
        // appended to the growing segment.
        let held = s.rows - s.growing_rows + s.deleted_rows + s.growing_appended;
        most_held = most_held.max(held);
        assert!(held <= threshold + 2 * 100, "{held} rows held: {s:?}");
        assert!(s.segments <= 2, "{} segments", s.segments);
    }
    eprintln!("at most {most_held} rows held");
    assert_eq!(db.len(), 100);
}

#[test]
fn an_old_snapshot_of_the_growing_segment_still_finds_k_good_rows() {
    // Later commits re-prune the links of the rows an old snapshot holds; its
    // searches must still return k rows, and good ones.
    let tmp = tempfile::tempdir().unwrap();
    let db = Database::open(tmp.path(), options().growing_threshold(6_000)).unwrap();
    let data = synth::clustered(5_000, DIM, 100, 0.3, 21);
    let mut w = db.writer().unwrap();
    let ids: Vec<u64> = (0..500).collect();
    w.upsert_batch(&ids, &data[..500 * DIM], None).unwrap();
    w.commit().unwrap();
    let old = db.snapshot();
    for (c, chunk) in data[500 * DIM..].chunks(100 * DIM).enumerate() {
        let first = 500 + c as u64 * 100;
        let ids: Vec<u64> = (first..first + 100).collect();
        w.upsert_batch(&ids, chunk, None).unwrap();
        w.commit().unwrap();
    }
    assert_eq!(db.stats().unwrap().segments, 0, "all rows still growing");
    let queries = synth::clustered_queries(100, DIM, 100, 0.3, 21, 5);
    for q in queries.chunks(DIM) {
        let got = old.search(q, K).unwrap();
        assert!(
            got.iter().all(|h| h.id < 500),
            "a row newer than the snapshot"
        );
    }
    let r = common::recall(&old, &queries, DIM, K);
    assert!(r >= 0.9, "recall@10 of the old snapshot {r}");
}
