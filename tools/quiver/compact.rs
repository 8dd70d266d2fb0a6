//! `quiver compact`: rewrites a database directory into fewer, cleaner
//! segments (the library's `Writer::compact`), with a progress bar and a
//! before/after summary.

use crate::commands::{open, progress, with_advice};
use crate::{CliResult, Outcome};
use clap::Args;
use quiver::{synth::SplitMix64, CompactOptions, Database, SearchParams};
use std::path::PathBuf;
use std::time::Instant;

/// Arguments of `quiver compact`.
#[derive(Debug, Args)]
pub struct CompactArgs {
    /// Database directory; no other process may have it open.
    pub dir: PathBuf,
    /// Pack segments up to this many live rows (at least 1).
    #[arg(long, default_value_t = quiver::compact::DEFAULT_TARGET_SEGMENT_ROWS)]
    target_segment_rows: usize,
    /// HNSW links per node of the new graphs, 2 to 1024 (rebuilds every segment).
    #[arg(long)]
    m: Option<usize>,
    /// HNSW build candidate list size of the new graphs, m to 65536 (rebuilds
    /// every segment).
    #[arg(long)]
    ef_construction: Option<usize>,
    /// Print the plan and change nothing.
    #[arg(long)]
    dry_run: bool,
}

/// Queries for the before/after figures: up to 200 stored vectors, drawn
/// with a fixed seed.
fn sample_queries(db: &Database) -> quiver::Result<Vec<Vec<f32>>> {
    let ids = db.snapshot().ids();
    let mut rng = SplitMix64::new(200);
    let mut out = Vec::new();
    for _ in 0..ids.len().min(200) {
        let id = ids[(rng.next_u64() % ids.len() as u64) as usize];
        if let Some(record) = db.get(id)? {
            out.push(record.vector);
        }
    }
    Ok(out)
}

/// Recall@10 against exact search, and single-thread queries per second.
fn quality(db: &Database, queries: &[Vec<f32>]) -> quiver::Result<(f64, f64)> {
    if queries.is_empty() {
        return Ok((1.0, 0.0));
    }
    let params = SearchParams::new(10);
    let exact = SearchParams::new(10).exact(true);
    let mut found = 0;
    let mut total = 0;
    for q in queries {
        let truth = db.search_with(q, &exact)?;
        let hits = db.search_with(q, &params)?;
        total += truth.len();
        found += hits
            .iter()
            .filter(|h| truth.iter().any(|t| t.id == h.id))
            .count();
    }
    let start = Instant::now();
    let mut runs = 0;
    while runs < 3 || start.elapsed().as_secs_f64() < 0.5 {
        for q in queries {
            db.search_with(q, &params)?;
        }
        runs += 1;
    }
    let qps = (runs * queries.len()) as f64 / start.elapsed().as_secs_f64();
    Ok((found as f64 / total.max(1) as f64, qps))
}

/// `quiver compact`.
pub fn run(args: &CompactArgs) -> CliResult {
    let started = Instant::now();
    let mut options = CompactOptions::new()
        .target_segment_rows(args.target_segment_rows)
        .dry_run(args.dry_run);
    options.m = args.m;
    options.ef_construction = args.ef_construction;
    if args.dry_run {
        let report = quiver::compact(&args.dir, &options).map_err(|e| with_advice(&args.dir, e))?;
        say!(
            "plan for {} ({} segments, {} growing rows):",
            args.dir.display(),
            report.segments_before,
            report.growing_rows_before
        );
        if report.planned.is_empty() {
            say!("  nothing to do");
        }
        for p in &report.planned {
            say!(
                "  write one segment of {} rows from segments {:?}{}, dropping {} deleted or replaced rows",
                p.rows,
                p.from,
                if p.growing { " and the growing rows" } else { "" },
                p.dropped
            );
        }
        say!(
            "  segments {} -> {}; nothing was changed (dry run)",
            report.segments_before,
            report.segments_after
        );
        return Ok(Outcome::Done);
    }
    // Measured on a handle of their own: the compaction opens the directory
    // itself and holds its lock from start to end.
    let db = open(&args.dir)?;
    let queries = sample_queries(&db)?;
    let (recall_before, qps_before) = quality(&db, &queries)?;
    drop(db);
    let bar = progress(0, "  compacting {wide_bar} {pos}/{len} rows ({eta} left)");
    let report = quiver::compact_with_progress(&args.dir, &options, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
    })?;
    bar.finish_and_clear();
    let db = Database::open_existing(&args.dir)?;
    let (recall_after, qps_after) = quality(&db, &queries)?;
    let mib = |b: u64| b as f64 / 1_048_576.0;
    say!(
        "compacted {} in {:.2} s",
        args.dir.display(),
        started.elapsed().as_secs_f64()
    );
    say!(
        "  segments      {} -> {} ({} growing rows sealed)",
        report.segments_before,
        report.segments_after,
        report.growing_rows_before
    );
    say!("  rows dropped  {}", report.rows_dropped);
    say!(
        "  bytes         {:.2} MiB -> {:.2} MiB",
        mib(report.bytes_before),
        mib(report.bytes_after)
    );
    say!(
        "  recall@10     {recall_before:.3} -> {recall_after:.3} ({} stored vectors as queries)",
        queries.len()
    );
    say!("  queries/s     {qps_before:.0} -> {qps_after:.0} (one thread)");
    Ok(Outcome::Done)
}
