//! Quiver's side of the peer benchmark (`benches/peers/peers.py`): builds a
//! database from an .fvecs file, then runs single-thread queries, one per
//! call, for each `ef`, and prints one JSON object on its last line:
//! `{"build_s", "open_ms", "bytes_per_vector", "results": {"<ef>": {"recall", "qps", "p50_ms", "p99_ms"}}}`.
//!
//! ```sh
//! cargo run --release --example ann_bench -- --base B.fvecs --queries Q.fvecs \
//!     [--gt GT.ivecs] [--metric cosine] [--m 16] [--ef-construction 200] [--ef 16,32,64] [-k 10] [--dir D] [--repeat N]
//! ```

use quiver::{Database, Metric, Options, SearchParams};
use std::collections::HashSet;
use std::time::Instant;

fn read_vecs(path: &str) -> (usize, Vec<[u8; 4]>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let dim = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes")) as usize;
    let mut out = Vec::new();
    for row in bytes.chunks_exact(4 + 4 * dim) {
        out.extend(row[4..].chunks_exact(4).map(|c| [c[0], c[1], c[2], c[3]]));
    }
    (dim, out)
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let need = |n: &str| arg(&args, n).unwrap_or_else(|| panic!("missing {n}"));
    let (dim, base) = read_vecs(&need("--base"));
    let base: Vec<f32> = base.into_iter().map(f32::from_le_bytes).collect();
    let (_, queries) = read_vecs(&need("--queries"));
    let queries: Vec<f32> = queries.into_iter().map(f32::from_le_bytes).collect();
    let metric: Metric = arg(&args, "--metric")
        .unwrap_or_else(|| "cosine".into())
        .parse()
        .expect("metric");
    let m: usize = arg(&args, "--m").map_or(16, |s| s.parse().expect("m"));
    let efc: usize = arg(&args, "--ef-construction").map_or(200, |s| s.parse().expect("efc"));
    let k: usize = arg(&args, "-k").map_or(10, |s| s.parse().expect("k"));
    let efs: Vec<usize> = arg(&args, "--ef")
        .unwrap_or_else(|| "16,32,64,128,256".into())
        .split(',')
        .map(|s| s.parse().expect("ef"))
        .collect();

    // --dir keeps the database, and reuses one a previous run built.
    let tmp = tempfile::tempdir().expect("temp dir");
    let dir = arg(&args, "--dir").map_or_else(|| tmp.path().to_path_buf(), Into::into);
    let options = Options::new(dim, metric).m(m).ef_construction(efc);
    let db = Database::open(&dir, options.clone()).expect("open");
    let rows = base.len() / dim;
    let t = Instant::now();
    if db.is_empty() {
        let mut w = db.writer().expect("writer");
        let ids: Vec<u64> = (0..rows as u64).collect();
        w.upsert_batch(&ids, &base, None).expect("upsert");
        w.commit().expect("commit");
    }
    let build_s = t.elapsed().as_secs_f64();
    let bytes = db.stats().expect("stats").bytes_on_disk;
    drop(db);
    let t = Instant::now();
    let db = Database::open(&dir, options).expect("reopen");
    let open_ms = t.elapsed().as_secs_f64() * 1e3;
    db.verify().expect("verify");

    let nq = queries.len() / dim;
    let truth: Vec<HashSet<u64>> = match arg(&args, "--gt") {
        Some(gt) => {
            let (gd, gt) = read_vecs(&gt);
            gt.chunks(gd)
                .take(nq)
                .map(|r| {
                    r[..k]
                        .iter()
                        .map(|c| i32::from_le_bytes(*c) as u64)
                        .collect()
                })
                .collect()
        }
        None => queries
            .chunks(dim)
            .map(|q| {
                let exact = SearchParams::new(k).exact(true);
                db.search_with(q, &exact)
                    .expect("exact")
                    .iter()
                    .map(|h| h.id)
                    .collect()
            })
            .collect(),
    };
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .expect("pool");
    let mut results = Vec::new();
    for ef in efs {
        let params = SearchParams::new(k).ef(ef);
        let (hits, mut lat) = pool.install(|| {
            let mut hits = 0;
            let mut lat = Vec::with_capacity(nq);
            for (q, want) in queries.chunks(dim).zip(&truth) {
                let t = Instant::now();
                let got = db.search_with(q, &params).expect("search");
                lat.push(t.elapsed().as_secs_f64());
                hits += got.iter().filter(|h| want.contains(&h.id)).count();
            }
            (hits, lat)
        });
        let total: f64 = lat.iter().sum();
        lat.sort_by(f64::total_cmp);
        let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)] * 1e3;
        results.push(format!(
            "\"{ef}\": {{\"recall\": {:.4}, \"qps\": {:.1}, \"p50_ms\": {:.4}, \"p99_ms\": {:.4}}}",
            hits as f64 / (nq * k) as f64,
            nq as f64 / total,
            pct(0.5),
            pct(0.99)
        ));
    }
    println!(
        "{{\"build_s\": {build_s:.3}, \"open_ms\": {open_ms:.3}, \"bytes_per_vector\": {:.1}, \"results\": {{{}}}}}",
        bytes as f64 / rows as f64,
        results.join(", ")
    );
}
