//! `quiver bench`: recall, queries per second and latency per `ef` and thread
//! count, plus build time, commit latency, open time, peak memory and bytes
//! on disk, for one or more build patterns (`--pattern one,10k,100,churn`,
//! see `bench_build.rs`).
//!
//! With `--json` it prints one JSON object (field names documented in
//! `docs/BENCHMARKS.md`, checked by `tests/cli.rs`):
//!
//! ```text
//! { "rows", "dim", "metric", "m", "ef_construction", "k", "queries", "isa",
//!   "reused", "build_s", "open_ms", "peak_rss_bytes", "bytes_on_disk",
//!   "bytes_per_vector",
//!   "results": [ { "ef", "threads", "recall", "qps", "p50_ms", "p95_ms", "p99_ms" } ],
//!   "batch":   [ { "ef", "threads", "qps" } ],
//!   "seed",
//!   "patterns": [ { "pattern", "rows", "reused", "build_s", "operations",
//!                   "commits", "commit_rows", "ingest_rows_per_s",
//!                   "commit_p50_ms", "commit_p99_ms", "commit_max_ms",
//!                   "sealing_commits",
//!                   "segments", "growing_rows", "deleted_rows", "generation",
//!                   "merges", "merges_during_queries", "merge_settle_ms",
//!                   "query_phase_ms", "merging_during_queries",
//!                   "segments_settled", "deleted_rows_settled", "truth",
//!                   "open_ms", "peak_rss_bytes", "bytes_on_disk",
//!                   "bytes_per_vector", "results": [...], "batch": [...] } ] }
//! ```
//!
//! The top-level fields describe the first pattern measured; `patterns` holds
//! one object per `--pattern`, in order. `results` holds one entry per `ef`
//! and thread count: each of N threads runs its share of the queries, one
//! `Database::search_with` call per query; QPS is queries over wall time.
//! `batch` is `search_batch` (rayon, every core) over all queries.
//!
//! Per pattern: `build_s` is the wall time of staging and committing every
//! operation (reading the file excluded); `operations` counts each upserted
//! row and each deleted id; `ingest_rows_per_s` is `operations / build_s`;
//! `commit_*_ms` are nearest-rank quantiles over the `commits` timed
//! `Writer::commit` calls, `sealing_commits` those that sealed a column file;
//! `segments`, `growing_rows`, `deleted_rows`, `generation` and `merges`
//! (background merges switched in so far) are `Database::stats()` right after
//! the last commit. The queries start right after that, on the same handle,
//! with the background merger free to go on; a thread beside them blocks in
//! `Database::wait_for_merges`: `merge_settle_ms` is how long after the
//! queries began the merger went idle, `query_phase_ms` how long the queries
//! took, `merges_during_queries` the merges switched in meanwhile, and
//! `merging_during_queries` is true when the merger was still busy when they
//! began (it took over 10 ms to go idle, or something changed under them).
//! `segments_settled` and `deleted_rows_settled` are the stats once it was
//! idle. Then the recall is scored and the database reopened for `open_ms`.
//! `truth` is `"gt"` (the `--gt` file) or `"exact"` (exact search of the
//! database; always so for `churn`, whose final state is not the file's
//! base). `peak_rss_bytes` is the process's peak so far, so it grows across
//! patterns.

use crate::bench_build::{self, Build, Pattern};
use crate::commands::progress;
use crate::import::{dim_mismatch, read_ivecs, Batch, VectorReader};
use crate::{check_flag, CliResult, Outcome};
use clap::Args;
use quiver::{Database, Metric, Options, SearchParams};
use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
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
    /// first); computed by exact search when missing, and always for the
    /// `churn` pattern.
    #[arg(long)]
    gt: Option<PathBuf>,
    /// Neighbours per query (1 to 65536); recall is recall@k.
    #[arg(short, long, default_value_t = 10)]
    k: usize,
    /// Graph search candidate list sizes to measure, each k to 65536.
    #[arg(long, value_delimiter = ',', default_value = "16,32,64,128,256")]
    ef: Vec<usize>,
    /// Thread counts to measure, each 1 to 1024 (default: 1, 2, ... up to
    /// the number of cores).
    #[arg(long, value_delimiter = ',')]
    threads: Option<Vec<usize>>,
    /// How to build: `one` commit of everything, commits of `10k` or `100`
    /// rows, or `churn` (`100`, then 30 % deleted and 10 % upserted in
    /// commits of 100); a list measures each in turn.
    #[arg(long, value_enum, value_delimiter = ',', default_value = "one")]
    pattern: Vec<Pattern>,
    /// Seed of the `churn` pattern's choice of ids.
    #[arg(long, default_value_t = 11)]
    seed: u64,
    /// Write the final state of a `churn` build here as .ivecs, one row
    /// `[id, base row whose vector it holds]` per live id.
    #[arg(long)]
    churn_map: Option<PathBuf>,
    /// Distance of a newly built database.
    #[arg(long, default_value = "cosine")]
    metric: Metric,
    /// HNSW links per node of a newly built database, 2 to 1024.
    #[arg(long, default_value_t = quiver::DEFAULT_M)]
    m: usize,
    /// HNSW build candidate list size of a newly built database, m to 65536.
    #[arg(long, default_value_t = quiver::DEFAULT_EF_CONSTRUCTION)]
    ef_construction: usize,
    /// Database directory: reused if it already holds a database, else built
    /// there (default: a temporary directory, removed afterwards). With
    /// several patterns, each uses the subdirectory named after it.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Use at most this many queries (at least 1).
    #[arg(long)]
    max_queries: Option<usize>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

/// Most threads `--threads` may ask for.
const MAX_THREADS: usize = 1024;

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

/// Everything measured for one pattern.
struct PatternReport {
    pattern: Pattern,
    rows: usize,
    dim: usize,
    metric: Metric,
    build: Option<Build>,
    /// Right after the last commit.
    stats: quiver::Stats,
    /// Once the merger was idle, after the queries.
    settled: quiver::Stats,
    merges_during_queries: u64,
    merge_settle: Duration,
    query_phase: Duration,
    merging_during_queries: bool,
    exact_truth: bool,
    open_ms: f64,
    peak: Option<u64>,
    bytes_on_disk: u64,
    runs: Vec<Run>,
    /// The same passes once the merger went idle, if it was working.
    settled_runs: Option<Vec<Run>>,
    batch: Vec<(usize, f64)>,
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

/// Reads the whole base file.
fn read_base(path: &Path) -> Result<Batch, Box<dyn std::error::Error>> {
    let mut reader = VectorReader::open(path, None)?;
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
    if all.ids.is_empty() {
        return Err(format!("{}: no vectors", path.display()).into());
    }
    Ok(all)
}

/// A query's number, latency and the ids found.
type Answered = (usize, Duration, Vec<u64>);

/// The timings of one pass, and the ids each query found (recall is scored
/// after every pass, so that the queries start right after the build).
struct Pass {
    ef: usize,
    threads: usize,
    qps: f64,
    p50: Duration,
    p95: Duration,
    p99: Duration,
    found: Vec<Vec<u64>>,
}

impl Pass {
    fn score(self, truth: &[HashSet<u64>], k: usize) -> Run {
        let hits: usize = self
            .found
            .iter()
            .zip(truth)
            .map(|(ids, t)| ids.iter().filter(|id| t.contains(id)).count())
            .sum();
        Run {
            ef: self.ef,
            threads: self.threads,
            recall: hits as f64 / (k * self.found.len().max(1)) as f64,
            qps: self.qps,
            p50: self.p50,
            p95: self.p95,
            p99: self.p99,
        }
    }
}

/// Runs every query on `threads` threads (query i on thread i mod threads).
fn measure(
    db: &Database,
    queries: &[f32],
    params: &SearchParams,
    threads: usize,
) -> Result<Pass, quiver::Error> {
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
    let mut found = vec![Vec::new(); nq];
    for result in per_thread {
        for (i, took, ids) in result? {
            latencies.push(took);
            found[i] = ids;
        }
    }
    latencies.sort_unstable();
    let at = |q: f64| latencies[((q * nq as f64).ceil() as usize).clamp(1, nq) - 1];
    Ok(Pass {
        ef: params.ef.unwrap_or(0),
        threads,
        qps: nq as f64 / wall.as_secs_f64(),
        p50: at(0.50),
        p95: at(0.95),
        p99: at(0.99),
        found,
    })
}

/// What every pattern shares: the queries, the file's ground truth and the
/// base (read on the first build).
struct Inputs {
    queries: Vec<f32>,
    /// Components per query.
    dim: usize,
    nq: usize,
    file_truth: Option<Vec<HashSet<u64>>>,
    base: Option<Batch>,
    threads: Vec<usize>,
}

/// How long the merger may take to report idle when it has nothing to do
/// (a thread wake-up on a loaded machine) before the bench counts it busy.
const MERGER_BUSY: Duration = Duration::from_millis(10);

/// Passes, `search_batch` QPS per ef, the wall time of them all, and the
/// stats right after.
type Queried = (Vec<Pass>, Vec<(usize, f64)>, Duration, quiver::Stats);

/// Every ef: one untimed pass, one timed pass per thread count, one
/// `search_batch`.
fn query_passes(db: &Database, args: &BenchArgs, inputs: &Inputs) -> quiver::Result<Queried> {
    let began = Instant::now();
    let queries = &inputs.queries;
    let bar = progress(
        ((args.ef.len() + 1) * (inputs.threads.len() + 1)) as u64,
        "  measuring {wide_bar} {pos}/{len}",
    );
    let mut passes = Vec::new();
    let mut batch = Vec::new();
    // ef 0 stands for the database's default: no ef, so that each segment
    // uses its calibrated one.
    for ef in std::iter::once(0).chain(args.ef.iter().copied()) {
        let params = match ef {
            0 => SearchParams::new(args.k),
            ef => SearchParams::new(args.k).ef(ef),
        };
        // One untimed pass warms the page cache and the visited sets.
        measure(db, queries, &params, 1)?;
        for &t in &inputs.threads {
            passes.push(measure(db, queries, &params, t)?);
            bar.inc(1);
        }
        let start = Instant::now();
        db.search_batch(queries, &params)?;
        batch.push((ef, inputs.nq as f64 / start.elapsed().as_secs_f64()));
        bar.inc(1);
    }
    bar.finish_and_clear();
    let phase = began.elapsed();
    Ok((passes, batch, phase, db.stats()?))
}

/// Whether the merger worked while the queries ran: it merged, changed the
/// state, or took longer than [`MERGER_BUSY`] to go idle.
fn merging_state(before: &quiver::Stats, after: &quiver::Stats, settle: Duration) -> bool {
    after.merges > before.merges
        || after.generation != before.generation
        || after.segments != before.segments
        || settle > MERGER_BUSY
}

/// Builds (or reuses) the database of `pattern` in `dir` and measures it.
fn run_pattern(
    args: &BenchArgs,
    pattern: Pattern,
    dir: &Path,
    inputs: &mut Inputs,
) -> Result<PatternReport, Box<dyn std::error::Error>> {
    // Checked before anything is built.
    let same_dim = |dim: usize| {
        if inputs.dim == dim {
            Ok(())
        } else {
            Err(dim_mismatch(&args.queries, inputs.dim, dim))
        }
    };
    let (db, build) = if dir.join("quiver.redb").exists() {
        let db = Database::open_existing(dir)?;
        same_dim(db.dim())?;
        (db, None)
    } else {
        if inputs.base.is_none() {
            inputs.base = Some(read_base(&args.base)?);
        }
        let base = inputs.base.as_ref().ok_or("no base")?;
        let dim = base.vectors.len() / base.ids.len();
        same_dim(dim)?;
        let options = Options::new(dim, args.metric)
            .m(args.m)
            .ef_construction(args.ef_construction);
        let db = Database::open(dir, options)?;
        let plan = match pattern {
            Pattern::Churn => bench_build::churn_plan(base.ids.len(), args.seed),
            _ => Vec::new(),
        };
        if let (Pattern::Churn, Some(path)) = (pattern, &args.churn_map) {
            bench_build::write_churn_map(path, base, &plan)
                .map_err(|e| format!("{}: {e}", path.display()))?;
        }
        let build = bench_build::build(&db, base, pattern, &plan)?;
        (db, Some(build))
    };
    let stats = db.stats()?;
    let queries = &inputs.queries;

    // The queries start now; a thread beside them waits for the background
    // merger to go idle, to tell whether merges ran under them.
    let began = Instant::now();
    let (queried, merge_settle) = std::thread::scope(|s| {
        let waiter = s.spawn(|| {
            db.wait_for_merges();
            began.elapsed()
        });
        let queried = query_passes(&db, args, inputs);
        let settle = waiter
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        (queried, settle)
    });
    let (passes, batch, query_phase, after) = queried?;
    let settled = db.stats()?;
    // Once the merger is idle: the same passes again on the settled state,
    // if the merger changed it.
    let settled_passes = if merging_state(&stats, &after, merge_settle) {
        Some(query_passes(&db, args, inputs)?.0)
    } else {
        None
    };
    let merges_during_queries = after.merges.saturating_sub(stats.merges);
    let merging_during_queries = merging_state(&stats, &after, merge_settle);

    let exact_truth = pattern == Pattern::Churn || inputs.file_truth.is_none();
    let exact;
    let truth: &[HashSet<u64>] = match (&inputs.file_truth, exact_truth) {
        (Some(t), false) => t,
        _ => {
            let spinner = progress(0, "  exact ground truth {spinner} {elapsed}");
            let hits = db.search_batch(queries, &SearchParams::new(args.k).exact(true))?;
            spinner.finish_and_clear();
            exact = hits
                .iter()
                .map(|hits| hits.iter().map(|h| h.id).collect())
                .collect::<Vec<HashSet<u64>>>();
            &exact
        }
    };
    let runs = passes.into_iter().map(|p| p.score(truth, args.k)).collect();
    let settled_runs =
        settled_passes.map(|passes| passes.into_iter().map(|p| p.score(truth, args.k)).collect());
    let (rows, dim, metric) = (db.len(), db.dim(), db.metric());
    let bytes_on_disk = settled.bytes_on_disk;
    drop(db);
    let start = Instant::now();
    let db = Database::open_existing(dir)?;
    let open_ms = ms(start.elapsed());
    drop(db);
    Ok(PatternReport {
        pattern,
        rows,
        dim,
        metric,
        build,
        stats,
        settled,
        merges_during_queries,
        merge_settle,
        query_phase,
        merging_during_queries,
        exact_truth,
        open_ms,
        peak: peak_rss(),
        bytes_on_disk,
        runs,
        settled_runs,
        batch,
    })
}

/// The file's ground truth for the first `nq` queries, as id sets of `k`.
fn file_truth(
    gt: &Path,
    nq: usize,
    k: usize,
) -> Result<Vec<HashSet<u64>>, Box<dyn std::error::Error>> {
    let path = gt.display();
    let gt = read_ivecs(gt)?;
    if gt.len() < nq {
        let rows = gt.len();
        return Err(format!("{path}: {rows} rows of ground truth for {nq} queries").into());
    }
    if let Some(row) = gt.iter().take(nq).position(|r| r.len() < k) {
        let ids = gt[row].len();
        return Err(format!("{path}: row {row}: {ids} ids, fewer than -k ({k})").into());
    }
    Ok(gt
        .iter()
        .take(nq)
        .map(|r| r[..k].iter().map(|&x| u64::from(x)).collect())
        .collect())
}

fn runs_json(runs: &[Run]) -> Vec<Value> {
    runs.iter()
        .map(|r| {
            json!({"ef": r.ef, "threads": r.threads, "recall": r.recall, "qps": r.qps,
                   "p50_ms": ms(r.p50), "p95_ms": ms(r.p95), "p99_ms": ms(r.p99)})
        })
        .collect()
}

fn results_json(r: &PatternReport) -> (Vec<Value>, Vec<Value>) {
    let cores = rayon::current_num_threads();
    let results = runs_json(&r.runs);
    let batch = r
        .batch
        .iter()
        .map(|(ef, qps)| json!({"ef": ef, "threads": cores, "qps": qps}))
        .collect();
    (results, batch)
}

fn pattern_json(r: &PatternReport) -> Value {
    let (results, batch) = results_json(r);
    let b = r.build.as_ref();
    json!({
        "pattern": r.pattern.name(), "rows": r.rows, "reused": b.is_none(),
        "build_s": b.map(|b| b.secs), "operations": b.map(|b| b.operations),
        "commits": b.map(|b| b.commits.len()), "commit_rows": r.pattern.commit_rows(),
        "ingest_rows_per_s": b.map(|b| b.operations as f64 / b.secs),
        "commit_p50_ms": b.map(|b| ms(b.commit_quantile(0.50))),
        "commit_p99_ms": b.map(|b| ms(b.commit_quantile(0.99))),
        "commit_max_ms": b.map(|b| ms(b.commit_max())),
        "sealing_commits": b.map(|b| b.sealing_commits),
        "segments": r.stats.segments, "growing_rows": r.stats.growing_rows,
        "deleted_rows": r.stats.deleted_rows, "generation": r.stats.generation,
        "merges": r.stats.merges, "merges_during_queries": r.merges_during_queries,
        "merge_settle_ms": ms(r.merge_settle), "query_phase_ms": ms(r.query_phase),
        "merging_during_queries": r.merging_during_queries,
        "segments_settled": r.settled.segments, "deleted_rows_settled": r.settled.deleted_rows,
        "truth": if r.exact_truth { "exact" } else { "gt" },
        "open_ms": r.open_ms, "peak_rss_bytes": r.peak, "bytes_on_disk": r.bytes_on_disk,
        "bytes_per_vector": r.bytes_on_disk as f64 / r.rows.max(1) as f64,
        "results": results, "batch": batch,
        "settled_results": r.settled_runs.as_deref().map(runs_json),
    })
}

fn print_pattern(args: &BenchArgs, dir: &Path, r: &PatternReport) -> std::io::Result<()> {
    say!(
        "pattern {}: {} x {} {} vectors, {} segments, {} growing rows, {} deleted rows",
        r.pattern.name(),
        r.rows,
        r.dim,
        r.metric,
        r.stats.segments,
        r.stats.growing_rows,
        r.stats.deleted_rows
    );
    match &r.build {
        Some(b) => {
            say!(
                "build {:.2} s (m {}, ef_construction {}): {} operations in {} commits, \
                 {:.0} rows/s; commit p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms; \
                 {} sealed; {} background merges",
                b.secs,
                args.m,
                args.ef_construction,
                b.operations,
                b.commits.len(),
                b.operations as f64 / b.secs,
                ms(b.commit_quantile(0.50)),
                ms(b.commit_quantile(0.99)),
                ms(b.commit_max()),
                b.sealing_commits,
                r.stats.merges
            );
        }
        None => say!("reused the database in {}", dir.display()),
    }
    say!(
        "open {:.2} ms, {:.0} bytes on disk per vector, peak RSS {}; ground truth {}; \
         {}: merger idle after {:.0} ms of the queries' {:.0} ms, {} merges under them, \
         then {} segments, {} deleted rows",
        r.open_ms,
        r.bytes_on_disk as f64 / r.rows.max(1) as f64,
        r.peak.map_or("unknown".into(), |b| format!(
            "{:.0} MiB",
            b as f64 / 1_048_576.0
        )),
        if r.exact_truth { "exact" } else { "--gt" },
        if r.merging_during_queries {
            "merging while the queries ran"
        } else {
            "no merge while the queries ran"
        },
        ms(r.merge_settle),
        ms(r.query_phase),
        r.merges_during_queries,
        r.settled.segments,
        r.settled.deleted_rows
    );
    print_runs(args, &r.runs)?;
    // The batch calls belong to the pass right after the build.
    let cores = rayon::current_num_threads();
    for (ef, qps) in &r.batch {
        say!("{ef:>6}  batch {cores:>2}  search_batch {qps:>8.0} QPS");
    }
    if let Some(settled) = &r.settled_runs {
        say!(
            "  once the merger was idle ({} segments):",
            r.settled.segments
        );
        print_runs(args, settled)?;
    }
    Ok(())
}

/// The table of `runs`; ef 0 is the database's default.
fn print_runs(args: &BenchArgs, runs: &[Run]) -> std::io::Result<()> {
    say!(
        "    ef  threads  recall@{:<3}      QPS   p50 ms   p95 ms   p99 ms",
        args.k
    );
    for r in runs {
        let ef = match r.ef {
            0 => "auto".to_string(),
            ef => ef.to_string(),
        };
        say!(
            "{:>6}  {:>7}  {:>9.4}  {:>8.0}  {:>7.3}  {:>7.3}  {:>7.3}",
            ef,
            r.threads,
            r.recall,
            r.qps,
            ms(r.p50),
            ms(r.p95),
            ms(r.p99)
        );
    }
    Ok(())
}

/// `quiver bench`.
pub fn run(args: &BenchArgs) -> CliResult {
    SearchParams::new(args.k).validate()?;
    for &ef in &args.ef {
        SearchParams::new(args.k).ef(ef).validate()?;
    }
    let mut patterns: Vec<Pattern> = Vec::new();
    for &p in &args.pattern {
        if !patterns.contains(&p) {
            patterns.push(p);
        }
    }
    if patterns.is_empty() {
        return Err("--pattern needs at least one of one, 10k, 100, churn".into());
    }
    let threads = args.threads.clone().unwrap_or_else(|| {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        (1..=cores).collect()
    });
    for &t in &threads {
        check_flag("--threads", t, 1, MAX_THREADS)?;
    }
    let _cleanup;
    let root = match &args.dir {
        Some(dir) => dir.clone(),
        None => {
            let dir = std::env::temp_dir().join(format!("quiver-bench-{}", std::process::id()));
            _cleanup = RemoveOnDrop(dir.clone());
            dir
        }
    };
    let mut reader = VectorReader::open(&args.queries, None)?;
    let qdim = reader.dim();
    let mut queries = reader.read_all()?.vectors;
    if queries.is_empty() {
        return Err(format!("{}: no queries", args.queries.display()).into());
    }
    if let Some(max) = args.max_queries {
        check_flag("--max-queries", max, 1, usize::MAX)?;
        queries.truncate(max.saturating_mul(qdim));
    }
    let nq = queries.len() / qdim;
    let file_truth = match &args.gt {
        Some(gt) => Some(file_truth(gt, nq, args.k)?),
        None => None,
    };
    let mut inputs = Inputs {
        queries,
        dim: qdim,
        nq,
        file_truth,
        base: None,
        threads,
    };
    if !args.json {
        say!(
            "{nq} queries of {qdim} dimensions, k {}, kernels {:?}",
            args.k,
            quiver::kernels::select().isa()
        );
    }
    let mut reports = Vec::new();
    for &pattern in &patterns {
        let dir = if patterns.len() == 1 {
            root.clone()
        } else {
            root.join(pattern.name())
        };
        // A temporary pattern directory goes as soon as it is measured.
        let _gone = args.dir.is_none().then(|| RemoveOnDrop(dir.clone()));
        let report = run_pattern(args, pattern, &dir, &mut inputs)?;
        if !args.json {
            print_pattern(args, &dir, &report)?;
        }
        reports.push(report);
    }
    if !args.json {
        return Ok(Outcome::Done);
    }
    let first = &reports[0];
    let (results, batch) = results_json(first);
    say!(
        "{}",
        json!({
            "rows": first.rows, "dim": first.dim, "metric": first.metric.to_string(),
            "m": args.m, "ef_construction": args.ef_construction, "k": args.k,
            "queries": nq, "isa": format!("{:?}", quiver::kernels::select().isa()),
            "reused": first.build.is_none(), "build_s": first.build.as_ref().map(|b| b.secs),
            "open_ms": first.open_ms, "peak_rss_bytes": first.peak,
            "bytes_on_disk": first.bytes_on_disk,
            "bytes_per_vector": first.bytes_on_disk as f64 / first.rows.max(1) as f64,
            "results": results, "batch": batch, "seed": args.seed,
            "patterns": reports.iter().map(pattern_json).collect::<Vec<_>>(),
        })
    );
    Ok(Outcome::Done)
}
