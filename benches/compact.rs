//! Search speed before and after an offline compaction (not criterion: one
//! build, two measurements, printed as a ratio).
//!
//! Builds a directory the way `tests/compact.rs` does, at benchmark size:
//! 200 commits of 500 clustered 128-d rows, each also deleting ~30 % and
//! re-writing ~10 % as many existing ids as it adds, with online merging off
//! (`Options::auto_merge(false)`), so every commit leaves a segment. Then
//! measures single-thread QPS and recall@10 (against exact search) on 200
//! stored vectors, runs `quiver::compact`, and measures again.
//!
//! `cargo bench --bench compact`

use quiver::{compact, synth, CompactOptions, Database, Metric, Options, SearchParams};
use std::time::Instant;

const DIM: usize = 128;
const COMMITS: usize = 200;
const PER_COMMIT: usize = 500;

fn measure(db: &Database, queries: &[Vec<f32>]) -> (f64, f64) {
    let params = SearchParams::new(10);
    let exact = SearchParams::new(10).exact(true);
    let mut found = 0;
    for q in queries {
        let truth = db.search_with(q, &exact).expect("exact");
        let hits = db.search_with(q, &params).expect("search");
        found += hits
            .iter()
            .filter(|h| truth.iter().any(|t| t.id == h.id))
            .count();
    }
    let start = Instant::now();
    let mut n = 0;
    while n < 5 * queries.len() || start.elapsed().as_secs_f64() < 2.0 {
        for q in queries {
            std::hint::black_box(db.search_with(q, &params).expect("search"));
        }
        n += queries.len();
    }
    let qps = n as f64 / start.elapsed().as_secs_f64();
    (qps, found as f64 / (10 * queries.len()) as f64)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo bench -- --list` asks every bench for its names.
    }
    let tmp = tempfile::tempdir().expect("temp dir");
    let options = Options::new(DIM, Metric::L2)
        .growing_threshold(1)
        .auto_merge(false);
    let db = Database::open(tmp.path(), options).expect("open");
    let data = synth::clustered(COMMITS * PER_COMMIT, DIM, 100, 0.15, 42);
    let mut rng = synth::SplitMix64::new(9);
    let mut live: Vec<u64> = Vec::new();
    let mut w = db.writer().expect("writer");
    let started = Instant::now();
    for c in 0..COMMITS {
        for r in 0..PER_COMMIT {
            let id = (c * PER_COMMIT + r) as u64;
            w.upsert(id, &data[id as usize * DIM..(id as usize + 1) * DIM], None)
                .expect("upsert");
            live.push(id);
        }
        for _ in 0..PER_COMMIT * 3 / 10 {
            let i = (rng.next_u64() % live.len() as u64) as usize;
            let id = live.swap_remove(i);
            w.delete(id).expect("delete");
        }
        for _ in 0..PER_COMMIT / 10 {
            let id = live[(rng.next_u64() % live.len() as u64) as usize];
            let src = (rng.next_u64() % data.len() as u64 / DIM as u64) as usize;
            w.upsert(id, &data[src * DIM..(src + 1) * DIM], None)
                .expect("upsert");
        }
        w.commit().expect("commit");
    }
    drop(w);
    println!(
        "built {} live rows in {COMMITS} commits in {:.1} s",
        live.len(),
        started.elapsed().as_secs_f64()
    );
    let queries: Vec<Vec<f32>> = (0..200)
        .map(|_| {
            let id = live[(rng.next_u64() % live.len() as u64) as usize];
            db.get(id).expect("get").expect("live").vector
        })
        .collect();
    let before = db.stats().expect("stats");
    let (qps_before, recall_before) = measure(&db, &queries);
    drop(db);

    let started = Instant::now();
    let report = compact(tmp.path(), &CompactOptions::new()).expect("compact");
    let took = started.elapsed().as_secs_f64();
    let db = Database::open_existing(tmp.path()).expect("reopen");
    let after = db.stats().expect("stats");
    let (qps_after, recall_after) = measure(&db, &queries);
    println!("compaction took {took:.1} s");
    println!(
        "segments {} -> {}, rows dropped {}, bytes {} -> {}",
        before.segments,
        after.segments,
        report.rows_dropped,
        before.bytes_on_disk,
        after.bytes_on_disk
    );
    println!("recall@10 {recall_before:.3} -> {recall_after:.3}");
    println!(
        "single-thread QPS {qps_before:.0} -> {qps_after:.0}: {:.1}x (target >= 3x)",
        qps_after / qps_before
    );
}
