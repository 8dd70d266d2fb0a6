//! Exact search returns what a brute-force reference returns, for every metric,
//! across sealed segments, the growing segment, deletes and replacements.

mod common;

use common::{brute_force, Rng};
use quiver::{Database, Metric, Options, SearchParams};
use std::collections::BTreeMap;

fn check_against_reference(metric: Metric, dim: usize, rows: usize, threshold: usize, seed: u64) {
    let tmp = tempfile::tempdir().unwrap();
    let db = Database::open(
        tmp.path().join("db"),
        Options::new(dim, metric).growing_threshold(threshold),
    )
    .unwrap();
    let mut rng = Rng::new(seed);
    let mut model: BTreeMap<u64, Vec<f32>> = BTreeMap::new();
    let mut w = db.writer().unwrap();
    // A big batch (sealed), then small commits (growing), with deletes and replacements.
    let ids: Vec<u64> = (0..rows as u64).collect();
    let data = rng.vectors(rows, dim);
    w.upsert_batch(&ids, &data, None).unwrap();
    for (i, v) in data.chunks(dim).enumerate() {
        model.insert(i as u64, v.to_vec());
    }
    w.commit().unwrap();
    for round in 0..10u64 {
        for _ in 0..20 {
            let id = rng.below(rows as u64 + 200);
            let v = rng.vector(dim);
            w.upsert(id, &v, None).unwrap();
            model.insert(id, v);
        }
        for _ in 0..10 {
            let id = rng.below(rows as u64 + 200);
            if model.remove(&id).is_some() {
                w.delete(id).unwrap();
            }
        }
        w.commit().unwrap();
        assert_eq!(db.len(), model.len(), "round {round}");
    }
    let reference: Vec<(u64, Vec<f32>)> = model.into_iter().collect();
    for _ in 0..20 {
        let q = rng.vector(dim);
        let k = 10;
        let got = db
            .search_with(&q, &SearchParams::new(k).exact(true))
            .unwrap();
        let want = brute_force(metric, &reference, &q, k);
        let got_ids: Vec<u64> = got.iter().map(|h| h.id).collect();
        let want_ids: Vec<u64> = want.iter().map(|w| w.0).collect();
        assert_eq!(got_ids, want_ids, "{metric} dim {dim}");
        for (h, (_, d)) in got.iter().zip(&want) {
            let tolerance = 1e-4 * d.abs().max(1.0);
            assert!(
                (h.distance as f64 - d).abs() <= tolerance,
                "{metric}: {} vs {d}",
                h.distance
            );
        }
    }
}

#[test]
fn exact_search_matches_brute_force_for_l2() {
    check_against_reference(Metric::L2, 17, 2_000, 500, 11);
}

#[test]
fn exact_search_matches_brute_force_for_inner_product() {
    check_against_reference(Metric::InnerProduct, 32, 2_000, 500, 12);
}

#[test]
fn exact_search_matches_brute_force_for_cosine() {
    check_against_reference(Metric::Cosine, 100, 2_000, 500, 13);
}

#[test]
fn parallel_exact_scan_matches_brute_force() {
    // Past the row count where the scan fans out over rayon tasks.
    check_against_reference(Metric::L2, 8, 70_000, 10_000, 14);
}

#[test]
fn k_larger_than_the_database_returns_every_row() {
    let tmp = tempfile::tempdir().unwrap();
    let db = Database::open(tmp.path().join("db"), Options::new(2, Metric::L2)).unwrap();
    let mut w = db.writer().unwrap();
    w.upsert_batch(&[1, 2, 3], &[0.0, 0.0, 1.0, 1.0, 2.0, 2.0], None)
        .unwrap();
    w.commit().unwrap();
    let ids: Vec<u64> = db
        .search(&[0.0, 0.0], 100)
        .unwrap()
        .iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(ids, vec![1, 2, 3]);
    assert!(Database::open(
        tempfile::tempdir().unwrap().path(),
        Options::new(2, Metric::L2)
    )
    .unwrap()
    .search(&[0.0, 0.0], 5)
    .unwrap()
    .is_empty());
}
