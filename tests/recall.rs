//! Approximate search quality: recall@10 at the default `ef` against exact
//! brute force, on clustered synthetic data and on the shared real embeddings,
//! after deletes and upserts, and identical across close and reopen.

mod common;

use quiver::{synth, Database, Metric, Options, SearchParams};
use std::collections::HashSet;
use std::path::Path;

const K: usize = 10;

fn recall(db: &Database, queries: &[f32], dim: usize) -> f64 {
    let r = common::recall(&db.snapshot(), queries, dim, K);
    eprintln!("recall@10 = {r:.4}");
    r
}

fn clustered_db(dir: &Path, n: usize, dim: usize) -> (Database, Vec<f32>) {
    let data = synth::clustered(n, dim, 200, 0.3, 5);
    let db = Database::open(dir, Options::new(dim, Metric::L2)).unwrap();
    let mut w = db.writer().unwrap();
    let ids: Vec<u64> = (0..n as u64).collect();
    w.upsert_batch(&ids, &data, None).unwrap();
    w.commit().unwrap();
    (db, data)
}

/// New vectors from the data's distribution (around the same centres, with
/// their own noise): what the default `ef`, calibrated on the data, is for.
fn queries(n: usize, dim: usize) -> Vec<f32> {
    synth::clustered_queries(n, dim, 200, 0.3, 5, 99)
}

#[test]
fn recall_at_10_is_at_least_0_95_on_clustered_data() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = clustered_db(tmp.path(), 20_000, 32);
    assert_eq!(db.stats().unwrap().segments, 1);
    let r = recall(&db, &queries(200, 32), 32);
    assert!(r >= 0.95, "recall@10 {r}");
}

#[test]
fn recall_holds_after_deleting_30_percent() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = clustered_db(tmp.path(), 20_000, 32);
    let mut w = db.writer().unwrap();
    for id in (0..20_000u64).filter(|id| id % 10 < 3) {
        w.delete(id).unwrap();
    }
    w.commit().unwrap();
    assert_eq!(db.len(), 14_000);
    let r = recall(&db, &queries(200, 32), 32);
    assert!(r >= 0.95, "recall@10 over live rows after 30% deletes: {r}");
    let q = queries(50, 32);
    for q in q.chunks(32) {
        for h in db.search(q, K).unwrap() {
            assert!(h.id % 10 >= 3, "deleted id {} returned", h.id);
        }
    }
}

#[test]
fn recall_holds_after_upserting_30_percent() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = clustered_db(tmp.path(), 20_000, 32);
    let fresh = synth::clustered(6_000, 32, 200, 0.3, 6);
    let ids: Vec<u64> = (0..20_000u64).filter(|id| id % 10 < 3).collect();
    let mut w = db.writer().unwrap();
    w.upsert_batch(&ids, &fresh, None).unwrap();
    w.commit().unwrap();
    assert_eq!(db.len(), 20_000);
    let r = recall(&db, &queries(200, 32), 32);
    assert!(r >= 0.95, "recall@10 after upserting 30%: {r}");
    // A replaced id comes back with its new vector only.
    let hit = db.search(&fresh[..32], 1).unwrap()[0];
    assert_eq!(hit.id, ids[0]);
    assert!(hit.distance < 1e-6);
}

#[test]
fn results_are_identical_after_close_and_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let q = queries(50, 32);
    // One sealed segment (its graph is persisted; a growing segment's is
    // rebuilt at open), calibrated before the first search.
    let options = Options::new(32, Metric::L2).growing_threshold(1_000);
    let before: Vec<_> = {
        let db = Database::open(tmp.path(), options.clone()).unwrap();
        let mut w = db.writer().unwrap();
        let ids: Vec<u64> = (0..5_000).collect();
        w.upsert_batch(&ids, &synth::clustered(5_000, 32, 200, 0.3, 5), None)
            .unwrap();
        w.commit().unwrap();
        db.wait_for_merges();
        assert_eq!(db.stats().unwrap().segments, 1);
        q.chunks(32).map(|q| db.search(q, K).unwrap()).collect()
    };
    let db = Database::open(tmp.path(), options).unwrap();
    let after: Vec<_> = q.chunks(32).map(|q| db.search(q, K).unwrap()).collect();
    assert_eq!(before, after);
}

#[test]
fn search_batch_equals_one_query_at_a_time() {
    let tmp = tempfile::tempdir().unwrap();
    let (db, _) = clustered_db(tmp.path(), 5_000, 32);
    let q = queries(64, 32);
    let params = SearchParams::new(K).ef(32);
    let batch = db.search_batch(&q, &params).unwrap();
    let single: Vec<_> = q
        .chunks(32)
        .map(|q| db.search_with(q, &params).unwrap())
        .collect();
    assert_eq!(batch, single);
    assert!(db.search_batch(&q[..40], &params).is_err());
}

/// The shared real data: 50k sentence embeddings, 384-d, cosine, with the
/// exact top 100 of each query shipped beside them.
#[test]
fn recall_at_10_is_at_least_0_95_on_the_shared_embeddings() {
    let Some(data) = common::shared_data() else {
        return;
    };
    let (dim, base) = common::read_fvecs(&data.join("debian50k_base.fvecs"));
    let (_, queries) = common::read_fvecs(&data.join("debian50k_query.fvecs"));
    let truth = common::read_ivecs(&data.join("debian50k_groundtruth.ivecs"));
    let tmp = tempfile::tempdir().unwrap();
    let db = Database::open(tmp.path(), Options::new(dim, Metric::Cosine)).unwrap();
    let mut w = db.writer().unwrap();
    let ids: Vec<u64> = (0..(base.len() / dim) as u64).collect();
    w.upsert_batch(&ids, &base, None).unwrap();
    w.commit().unwrap();
    let n = 300;
    let mut hits = 0;
    for (q, gt) in queries.chunks(dim).zip(&truth).take(n) {
        let want: HashSet<u64> = gt[..K].iter().map(|&i| i as u64).collect();
        hits += db
            .search(q, K)
            .unwrap()
            .iter()
            .filter(|h| want.contains(&h.id))
            .count();
    }
    let r = hits as f64 / (n * K) as f64;
    eprintln!("recall@10 on debian50k = {r:.4}");
    assert!(r >= 0.95, "recall@10 on debian50k: {r}");
}
