//! Storage-engine benchmarks of the core issue, each as a ratio to a baseline
//! measured in the same run (these machines are shared and noisy):
//!
//! 1. one-vector commits against a bare redb durable commit of the same bytes;
//! 2. 1,000-vector commits per second;
//! 3. single-thread exact-search scan speed on 100k x 128 against a plain
//!    sequential sum over the same mapped bytes;
//! 4. open time of a 1M x 128 database against a 100k x 128 one.
//!
//! Run: `cargo bench --bench storage` (add `-- --quick` for a shorter run).

use quiver::{synth::SplitMix64, Database, Metric, Options};
use redb::TableDefinition;
use std::path::Path;
use std::time::{Duration, Instant};

const DIM: usize = 128;

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn random_vectors(n: usize, seed: u64) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    (0..n * DIM).map(|_| rng.next_f64() as f32 - 0.5).collect()
}

fn options() -> Options {
    Options::new(DIM, Metric::L2)
}

/// Median time of one-vector commits, Quiver and bare redb interleaved.
fn small_commits(dir: &Path, rounds: usize, per_round: usize) -> (Duration, Duration) {
    let db = Database::open(dir.join("quiver"), options()).unwrap();
    let mut w = db.writer().unwrap();
    let bare = redb::Database::create(dir.join("bare.redb")).unwrap();
    let table: TableDefinition<u64, &[u8]> = TableDefinition::new("rows");
    let v = random_vectors(1, 1);
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    let (mut q, mut r) = (Vec::new(), Vec::new());
    let mut id = 0u64;
    for _ in 0..rounds {
        for _ in 0..per_round {
            id += 1;
            let t = Instant::now();
            w.upsert(id, &v, None).unwrap();
            w.commit().unwrap();
            q.push(t.elapsed());
        }
        for _ in 0..per_round {
            id += 1;
            let t = Instant::now();
            let tx = bare.begin_write().unwrap();
            tx.open_table(table)
                .unwrap()
                .insert(id, bytes.as_slice())
                .unwrap();
            tx.commit().unwrap();
            r.push(t.elapsed());
        }
    }
    (median(q), median(r))
}

/// Median time of a 1,000-vector commit.
fn batch_commits(dir: &Path, commits: usize) -> Duration {
    let db = Database::open(dir.join("batch"), options()).unwrap();
    let mut w = db.writer().unwrap();
    let data = random_vectors(1000, 2);
    let mut times = Vec::new();
    for c in 0..commits as u64 {
        let ids: Vec<u64> = (c * 1000..(c + 1) * 1000).collect();
        let t = Instant::now();
        w.upsert_batch(&ids, &data, None).unwrap();
        w.commit().unwrap();
        times.push(t.elapsed());
    }
    median(times)
}

fn build(dir: &Path, rows: usize) -> Database {
    let db = Database::open(dir, options()).unwrap();
    let mut w = db.writer().unwrap();
    let chunk = 100_000;
    for start in (0..rows).step_by(chunk) {
        let n = chunk.min(rows - start);
        let ids: Vec<u64> = (start as u64..(start + n) as u64).collect();
        w.upsert_batch(&ids, &random_vectors(n, start as u64), None)
            .unwrap();
        w.commit().unwrap();
    }
    drop(w);
    db
}

/// A sum of the floats the compiler can vectorise: eight independent lanes.
fn plain_sum(floats: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    for chunk in floats.chunks_exact(8) {
        for (l, x) in lanes.iter_mut().zip(chunk) {
            *l += x;
        }
    }
    lanes.iter().sum()
}

/// (median exact search, median plain sum) on one thread over the same bytes.
fn scan(dir: &Path, runs: usize) -> (Duration, Duration) {
    let db = build(dir, 100_000);
    db.verify().unwrap();
    let col = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "col"))
        .unwrap();
    let file = std::fs::File::open(&col).unwrap();
    // SAFETY: the bench only reads a file of a database it owns and does not modify.
    #[allow(unsafe_code)]
    let map = unsafe { memmap2::Mmap::map(&file).unwrap() };
    let floats: &[f32] = bytemuck::cast_slice(&map[64..64 + 100_000 * DIM * 4]);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .build()
        .unwrap();
    let queries = random_vectors(runs, 9);
    let (mut s, mut p) = (Vec::new(), Vec::new());
    let mut sink = 0.0f32;
    for q in queries.chunks(DIM) {
        let t = Instant::now();
        let hits = pool.install(|| db.search(q, 10).unwrap());
        s.push(t.elapsed());
        sink += hits[0].distance;
        let t = Instant::now();
        sink += std::hint::black_box(plain_sum(std::hint::black_box(floats)));
        p.push(t.elapsed());
    }
    std::hint::black_box(sink);
    (median(s), median(p))
}

fn open_time(dir: &Path, runs: usize) -> Duration {
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        let db = Database::open(dir, options()).unwrap();
        times.push(t.elapsed());
        drop(db);
    }
    median(times)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    println!("| benchmark | Quiver | baseline | ratio | target |");
    println!("|---|---|---|---|---|");

    let (q, r) = small_commits(root, if quick { 4 } else { 10 }, 25);
    println!(
        "| 1-vector commit (median) | {:.3} ms | bare redb commit {:.3} ms | {:.2}x | <= 1.5x |",
        ms(q),
        ms(r),
        q.as_secs_f64() / r.as_secs_f64()
    );

    let b = batch_commits(root, if quick { 10 } else { 40 });
    println!(
        "| 1,000-vector commit (median) | {:.2} ms ({:.0} commits/s, {:.0} rows/s) | | | |",
        ms(b),
        1.0 / b.as_secs_f64(),
        1000.0 / b.as_secs_f64()
    );

    let (s, p) = scan(&root.join("scan"), if quick { 10 } else { 40 });
    let bytes = 100_000.0 * DIM as f64 * 4.0;
    println!(
        "| exact scan 100k x 128, 1 thread | {:.2} ms ({:.1} GB/s) | plain sum {:.2} ms ({:.1} GB/s) | {:.2} of sum speed | >= 0.7 |",
        ms(s),
        bytes / s.as_secs_f64() / 1e9,
        ms(p),
        bytes / p.as_secs_f64() / 1e9,
        p.as_secs_f64() / s.as_secs_f64()
    );

    let small = root.join("open-100k");
    let large = root.join("open-1m");
    drop(build(&small, 100_000));
    drop(build(&large, if quick { 300_000 } else { 1_000_000 }));
    let (o_small, o_large) = (open_time(&small, 15), open_time(&large, 15));
    println!(
        "| open {} x 128 (median) | {:.2} ms | open 100k x 128: {:.2} ms | {:.2}x | < 50 ms, flat |",
        if quick { "300k" } else { "1M" },
        ms(o_large),
        ms(o_small),
        o_large.as_secs_f64() / o_small.as_secs_f64()
    );
}
