//! `quiver demo`: the storage engine end to end on a generated data set.

use crate::check_flag;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use quiver::{synth, Database, Metric, Options, SearchParams};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Arguments of `quiver demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Vectors in the generated data set.
    #[arg(long, default_value_t = 100_000)]
    rows: usize,
    /// Dimension of the vectors.
    #[arg(long, default_value_t = 128)]
    dim: usize,
    /// Rows per commit while loading.
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// Queries to run.
    #[arg(long, default_value_t = 200)]
    queries: usize,
    /// Database directory (default: a fresh one in the temp directory, removed afterwards).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

fn secs(d: Duration) -> String {
    if d.as_secs_f64() >= 1.0 {
        format!("{:.2} s", d.as_secs_f64())
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1e3)
    }
}

/// Runs the demo.
pub fn run(args: &DemoArgs) -> Result<(), Box<dyn std::error::Error>> {
    check_flag("--rows", args.rows, 1, quiver::MAX_SEGMENT_ROWS)?;
    check_flag("--batch", args.batch, 1, quiver::MAX_SEGMENT_ROWS)?;
    check_flag("--queries", args.queries, 1, usize::MAX)?;
    let (dir, temporary) = match &args.dir {
        Some(d) => (d.clone(), false),
        None => (
            std::env::temp_dir().join(format!("quiver-demo-{}", std::process::id())),
            true,
        ),
    };
    let options = Options::new(args.dim, Metric::L2);
    say!(
        "Quiver demo: {} clustered {}-d vectors (seed 42), L2, in {}",
        args.rows,
        args.dim,
        dir.display()
    );

    let t = Instant::now();
    let data = synth::clustered(args.rows, args.dim, 100, 0.15, 42);
    say!("  generated data set                 {}", secs(t.elapsed()));

    let db = Database::open(&dir, options.clone())?;
    let mut writer = db.writer()?;
    let bar = ProgressBar::new(args.rows as u64).with_style(ProgressStyle::with_template(
        "  loading {bar:30} {pos}/{len} rows {per_sec}",
    )?);
    let t = Instant::now();
    let mut commits = 0;
    for (b, chunk) in data.chunks(args.batch * args.dim).enumerate() {
        let first = (b * args.batch) as u64;
        let ids: Vec<u64> = (first..first + (chunk.len() / args.dim) as u64).collect();
        writer.upsert_batch(&ids, chunk, None)?;
        writer.commit()?;
        commits += 1;
        bar.inc(ids.len() as u64);
    }
    bar.finish_and_clear();
    let load = t.elapsed();
    say!(
        "  loaded {} rows in {} commits (HNSW built per segment) {} ({:.0} rows/s)",
        args.rows,
        commits,
        secs(load),
        args.rows as f64 / load.as_secs_f64()
    );

    let t = Instant::now();
    let small = 100;
    for i in 0..small {
        let id = (args.rows + i) as u64;
        writer.upsert(id, &data[..args.dim], Some(b"small commit"))?;
        writer.commit()?;
    }
    let per_commit = t.elapsed() / small as u32;
    say!(
        "  {small} one-vector durable commits      {} each",
        secs(per_commit)
    );
    drop(writer);

    // Queries: stored vectors nudged a little; the source row should come back first.
    let mut rng = synth::SplitMix64::new(7);
    let queries: Vec<(u64, Vec<f32>)> = (0..args.queries)
        .map(|_| {
            let row = (rng.next_u64() % args.rows as u64) as usize;
            let q = data[row * args.dim..(row + 1) * args.dim]
                .iter()
                .map(|x| x + 0.001 * rng.normal() as f32)
                .collect();
            (row as u64, q)
        })
        .collect();
    let search_all = |db: &Database,
                      params: &SearchParams|
     -> Result<(Duration, usize, Vec<Vec<u64>>), quiver::Error> {
        let t = Instant::now();
        let mut found = 0;
        let mut results = Vec::new();
        for (row, q) in &queries {
            let hits = db.search_with(q, params)?;
            found += usize::from(hits.first().map(|h| h.id) == Some(*row));
            results.push(hits.iter().map(|h| h.id).collect());
        }
        Ok((t.elapsed(), found, results))
    };
    let hnsw = SearchParams::new(10);
    let (took, found, before) = search_all(&db, &hnsw)?;
    say!(
        "  {} HNSW k=10 searches                {} ({:.0} queries/s), source row first in {found}/{}",
        queries.len(),
        secs(took),
        queries.len() as f64 / took.as_secs_f64(),
        queries.len()
    );
    let (took, _, exact) = search_all(&db, &SearchParams::new(10).exact(true))?;
    let agree: usize = before
        .iter()
        .zip(&exact)
        .map(|(a, e)| a.iter().filter(|id| e.contains(id)).count())
        .sum();
    say!(
        "  {} exact k=10 searches               {} ({:.0} queries/s), HNSW recall@10 {:.3}",
        queries.len(),
        secs(took),
        queries.len() as f64 / took.as_secs_f64(),
        agree as f64 / (10 * queries.len()) as f64
    );
    let stats = db.stats()?;
    drop(db);

    let t = Instant::now();
    let db = Database::open(&dir, options)?;
    let open = t.elapsed();
    say!(
        "  reopened                           {} ({} rows, {} segments, {} growing rows)",
        secs(open),
        db.len(),
        stats.segments,
        stats.growing_rows
    );
    let t = Instant::now();
    db.verify()?;
    say!("  verified every checksum            {}", secs(t.elapsed()));
    let (took, _, after) = search_all(&db, &hnsw)?;
    if after != before {
        return Err("results after reopening differ from results before".into());
    }
    say!(
        "  same {} searches after reopen      {} (identical results)",
        queries.len(),
        secs(took)
    );
    say!(
        "  on disk: {:.1} MiB ({:.1} MiB column files, {:.1} MiB graphs, {:.1} MiB manifest)",
        stats.bytes_on_disk as f64 / 1048576.0,
        stats.column_bytes as f64 / 1048576.0,
        stats.links_bytes as f64 / 1048576.0,
        stats.manifest_bytes as f64 / 1048576.0
    );
    drop(db);
    if temporary {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(())
}
