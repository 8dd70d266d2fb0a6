//! Criterion: single-query latency on a 20k x 128 clustered database (one
//! sealed segment), HNSW at several `ef` and the exact scan; and what
//! counting a query in the lock-free latency histogram costs (two clock reads
//! and two atomic adds), to compare with a search.
//!
//! `cargo bench --bench search`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use quiver::{synth, Database, Metric, Options, SearchParams};
use std::hint::black_box;

const ROWS: usize = 20_000;
const DIM: usize = 128;

fn single_query(c: &mut Criterion) {
    let tmp = tempfile::tempdir().expect("temp dir");
    let db = Database::open(tmp.path(), Options::new(DIM, Metric::L2)).expect("open");
    let data = synth::clustered(ROWS, DIM, 100, 0.15, 42);
    let mut w = db.writer().expect("writer");
    let ids: Vec<u64> = (0..ROWS as u64).collect();
    w.upsert_batch(&ids, &data, None).expect("upsert");
    w.commit().expect("commit");
    db.verify().expect("verify");
    let queries = synth::clustered(256, DIM, 100, 0.15, 7);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");

    let mut group = c.benchmark_group("search_20k_x_128");
    for ef in [16, 64, 256] {
        let params = SearchParams::new(10).ef(ef);
        group.bench_with_input(BenchmarkId::new("hnsw_ef", ef), &params, |b, params| {
            let mut i = 0;
            b.iter(|| {
                let q = &queries[(i % 256) * DIM..(i % 256 + 1) * DIM];
                i += 1;
                pool.install(|| black_box(db.search_with(q, params).expect("search")))
            })
        });
    }
    let exact = SearchParams::new(10).exact(true);
    group.sample_size(20);
    group.bench_function("exact", |b| {
        b.iter(|| {
            pool.install(|| black_box(db.search_with(&queries[..DIM], &exact).expect("search")))
        })
    });
    group.finish();

    let stats = quiver::QueryStats::default();
    c.bench_function("query_stats_record", |b| {
        b.iter(|| {
            let start = std::time::Instant::now();
            stats.record(black_box(start.elapsed()));
        })
    });
}

criterion_group!(benches, single_query);
criterion_main!(benches);
