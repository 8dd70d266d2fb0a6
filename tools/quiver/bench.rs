//! `quiver bench`: recall, queries per second and latency per `ef` and thread
//! count, plus build time, open time, peak memory and bytes on disk.
//!
//! With `--json` it prints one JSON object (field names documented in
//! `docs/BENCHMARKS.md`, checked by `tests/cli.rs`):
//!
//! ```text
//! { "rows", "dim", "metric", "m", "ef_construction", "k", "queries", "isa",
//!   "reused", "build_s", "open_ms", "peak_rss_bytes", "bytes_on_disk",
//!   "bytes_per_vector",
//!   "results": [ { "ef", "threads", "recall", "qps", "p50_ms", "p95_ms", "p99_ms" } ],
//!   "batch":   [ { "ef", "threads", "qps" } ] }
//! ```
//!
//! `results` holds one entry per `ef` and thread count: each of N threads runs
//! its share of the queries, one `Database::search_with` call per query; QPS
//! is queries over wall time. `batch` is `search_batch` (rayon, every core)
//! over all queries. Recall is against `--gt` or, without it, exact search.

use crate::commands::progress;
use crate::import::{read_ivecs, Batch, VectorReader};
use crate::{CliResult, Outcome};
use clap::Args;
use quiver::{Database, Metric, Options, SearchParams};
use serde_json::json;
use std::collections::HashSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Arguments of `quiver bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Base vectors (any format `import` reads); ids are row numbers.
    #[arg(long)]
    base: PathBuf,
    /// Query vectors.
    #[arg(long)]
    queries: PathBuf,
    /// Ground truth (.ivecs, row numbers of the true neighbours, nearest
    /// first); computed by exact search when missing.
    #[arg(long)]
    gt: Option<PathBuf>,
    /// Neighbours per query; recall is recall@k.
    #[arg(short, long, default_value_t = 10)]
    k: usize,
    /// Graph search candidate list sizes to measure.
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,256")]
    ef: Vec<usize>,
    /// Thread counts to measure (default: 1, 2, ... up to the number of cores).
    #[arg(long, value_delimiter = ',')]
    threads: Option<Vec<usize>>,
    /// Distance of a newly built database.
    #[arg(long, default_value = "cosine")]
    metric: Metric,
    /// HNSW links per node of a newly built database.
    #[arg(long, default_value_t = quiver::DEFAULT_M)]
    m: usize,
    /// HNSW build candidate list size of a newly built database.
    #[arg(long, default_value_t = quiver::DEFAULT_EF_CONSTRUCTION)]
    ef_construction: usize,
    /// Database directory: reused if it already holds the base, else built
    /// there (default: a temporary directory, removed afterwards).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Use at most this many queries.
    #[arg(long)]
    max_queries: Option<usize>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// One measured configuration.
struct Run {
    ef: usize,
    threads: usize,
    recall: f64,
    qps: f64,
    p50: Duration,
    p95: Duration,
    p99: Duration,
}

/// Removes a temporary database directory however the command ends.
struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Peak resident memory of this process (Linux), in bytes.
fn peak_rss() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Builds the database from `args.base` in one commit (one segment, one graph).
fn build(
    args: &BenchArgs,
    dir: &std::path::Path,
) -> Result<(Database, f64), Box<dyn std::error::Error>> {
    let mut reader = VectorReader::open(&args.base, None)?;
    let options = Options::new(reader.dim(), args.metric)
        .m(args.m)
        .ef_construction(args.ef_construction);
    let db = Database::open(dir, options)?;
    let start = Instant::now();
    let bar = progress(
        reader.total_bytes(),
        "  reading base {wide_bar} {bytes}/{total_bytes}",
    );
    let mut all = Batch::default();
    let mut batch = Batch::default();
    while reader.next_batch(100_000, &mut batch)? > 0 {
        all.ids.extend_from_slice(&batch.ids);
        all.vectors.extend_from_slice(&batch.vectors);
        bar.set_position(reader.bytes_read());
    }
    bar.finish_and_clear();
    let spinner = progress(0, "  building the index {spinner} {elapsed}");
    let mut writer = db.writer()?;
    writer.upsert_batch(&all.ids, &all.vectors, None)?;
    writer.commit()?;
    spinner.finish_and_clear();
    Ok((db, start.elapsed().as_secs_f64()))
}

/// A query's number, latency and the ids found.
type Answered = (usize, Duration, Vec<u64>);

/// Runs every query on `threads` threads (query i on thread i mod threads).
fn measure(
    db: &Database,
    queries: &[f32],
    truth: &[HashSet<u64>],
    params: &SearchParams,
    threads: usize,
) -> Result<Run, quiver::Error> {
    let dim = db.dim();
    let nq = queries.len() / dim;
    let start = Instant::now();
    let per_thread: Vec<quiver::Result<Vec<Answered>>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    (t..nq)
                        .step_by(threads)
                        .map(|i| {
                            let q = &queries[i * dim..(i + 1) * dim];
                            let began = Instant::now();
                            let hits = db.search_with(q, params)?;
                            Ok((i, began.elapsed(), hits.iter().map(|h| h.id).collect()))
                        })
                        .collect()
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect()
    });
    let wall = start.elapsed();
    let mut latencies = Vec::with_capacity(nq);
    let mut found = 0usize;
    for result in per_thread {
        for (i, took, ids) in result? {
            latencies.push(took);
            found += ids.iter().filter(|id| truth[i].contains(id)).count();
        }
    }
    latencies.sort_unstable();
    let at = |q: f64| latencies[((q * nq as f64).ceil() as usize).clamp(1, nq) - 1];
    Ok(Run {
        ef: params.ef.unwrap_or(0),
        threads,
        recall: found as f64 / (params.k * nq) as f64,
        qps: nq as f64 / wall.as_secs_f64(),
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
    })
}

/// `quiver bench`.
pub fn run(args: &BenchArgs) -> CliResult {
    if args.k == 0 || args.ef.is_empty() {
        return Err("-k and --ef must be at least 1".into());
    }
    let threads = args.threads.clone().unwrap_or_else(|| {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        (1..=cores).collect()
    });
    if threads.contains(&0) {
        return Err("--threads must be at least 1".into());
    }
    let _cleanup;
    let dir = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            let dir = std::env::temp_dir().join(format!("quiver-bench-{}", std::process::id()));
            _cleanup = RemoveOnDrop(dir.clone());
            dir
        }
    };
    let existing = dir.join("quiver.redb").exists();
    let (db, build_s) = if existing {
        (Database::open_existing(&dir)?, None)
    } else {
        let (db, secs) = build(args, &dir)?;
        (db, Some(secs))
    };
    let bytes_on_disk = db.stats()?.bytes_on_disk;
    let rows = db.len();
    drop(db);
    let start = Instant::now();
    let db = Database::open_existing(&dir)?;
    let open_ms = ms(start.elapsed());
    let mut queries = VectorReader::open(&args.queries, None)?.read_all()?.vectors;
    if queries.len() % db.dim() != 0 || queries.is_empty() {
        return Err(format!(
            "{}: the queries are not {}-d like the database",
            args.queries.display(),
            db.dim()
        )
        .into());
    }
    if let Some(max) = args.max_queries {
        queries.truncate(max.max(1) * db.dim());
    }
    let nq = queries.len() / db.dim();

    let truth: Vec<HashSet<u64>> = match &args.gt {
        Some(gt) => {
            let gt = read_ivecs(gt)?;
            if gt.len() < nq || gt.iter().take(nq).any(|r| r.len() < args.k) {
                return Err(
                    format!("{}: needs {nq} rows of at least {} ids", gt.len(), args.k).into(),
                );
            }
            gt.iter()
                .take(nq)
                .map(|r| r[..args.k].iter().map(|&x| u64::from(x)).collect())
                .collect()
        }
        None => {
            let spinner = progress(0, "  exact ground truth {spinner} {elapsed}");
            let exact = db.search_batch(&queries, &SearchParams::new(args.k).exact(true))?;
            spinner.finish_and_clear();
            exact
                .iter()
                .map(|hits| hits.iter().map(|h| h.id).collect())
                .collect()
        }
    };

    let bar = progress(
        (args.ef.len() * (threads.len() + 1)) as u64,
        "  measuring {wide_bar} {pos}/{len}",
    );
    let mut runs = Vec::new();
    let mut batch = Vec::new();
    for &ef in &args.ef {
        let params = SearchParams::new(args.k).ef(ef);
        // One untimed pass warms the page cache and the visited sets.
        measure(&db, &queries, &truth, &params, 1)?;
        for &t in &threads {
            runs.push(measure(&db, &queries, &truth, &params, t)?);
            bar.inc(1);
        }
        let start = Instant::now();
        db.search_batch(&queries, &params)?;
        batch.push((ef, nq as f64 / start.elapsed().as_secs_f64()));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let peak = peak_rss();
    let cores = rayon::current_num_threads();

    if args.json {
        let results: Vec<_> = runs
            .iter()
            .map(|r| {
                json!({"ef": r.ef, "threads": r.threads, "recall": r.recall, "qps": r.qps,
                       "p50_ms": ms(r.p50), "p95_ms": ms(r.p95), "p99_ms": ms(r.p99)})
            })
            .collect();
        let batch: Vec<_> = batch
            .iter()
            .map(|(ef, qps)| json!({"ef": ef, "threads": cores, "qps": qps}))
            .collect();
        say!(
            "{}",
            json!({
                "rows": rows, "dim": db.dim(), "metric": db.metric().to_string(),
                "m": args.m, "ef_construction": args.ef_construction, "k": args.k,
                "queries": nq, "isa": format!("{:?}", quiver::kernels::select().isa()),
                "reused": build_s.is_none(), "build_s": build_s, "open_ms": open_ms,
                "peak_rss_bytes": peak, "bytes_on_disk": bytes_on_disk,
                "bytes_per_vector": bytes_on_disk as f64 / rows.max(1) as f64,
                "results": results, "batch": batch,
            })
        );
        return Ok(Outcome::Done);
    }
    say!(
        "{rows} x {} {} vectors, {nq} queries, k {}, kernels {:?}",
        db.dim(),
        db.metric(),
        args.k,
        quiver::kernels::select().isa()
    );
    match build_s {
        Some(s) => say!(
            "build {s:.2} s (m {}, ef_construction {})",
            args.m,
            args.ef_construction
        ),
        None => say!("reused the database in {}", dir.display()),
    }
    say!(
        "open {open_ms:.2} ms, {:.0} bytes on disk per vector, peak RSS {}",
        bytes_on_disk as f64 / rows.max(1) as f64,
        peak.map_or("unknown".into(), |b| format!(
            "{:.0} MiB",
            b as f64 / 1_048_576.0
        ))
    );
    say!(
        "    ef  threads  recall@{:<3}      QPS   p50 ms   p95 ms   p99 ms",
        args.k
    );
    for r in &runs {
        say!(
            "{:>6}  {:>7}  {:>9.4}  {:>8.0}  {:>7.3}  {:>7.3}  {:>7.3}",
            r.ef,
            r.threads,
            r.recall,
            r.qps,
            ms(r.p50),
            ms(r.p95),
            ms(r.p99)
        );
    }
    for (ef, qps) in &batch {
        say!("{ef:>6}  batch {cores:>2}  search_batch {qps:>8.0} QPS");
    }
    Ok(Outcome::Done)
}
