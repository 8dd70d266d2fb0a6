//! Writes the deterministic clustered synthetic data set of the benchmarks as
//! .fvecs files: `base.fvecs` and `query.fvecs` (queries drawn from the same
//! clusters with another seed).
//!
//! ```sh
//! cargo run --release --example gen_synth -- --rows 1000000 --dim 128 --queries 1000 --out target/synth-1m
//! ```

use quiver::synth;
use std::io::Write;

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .map_or(default, |s| s.parse().expect("a number"))
}

fn write_fvecs(path: &std::path::Path, data: &[f32], dim: usize) -> std::io::Result<()> {
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    for row in data.chunks(dim) {
        out.write_all(&(dim as u32).to_le_bytes())?;
        for x in row {
            out.write_all(&x.to_le_bytes())?;
        }
    }
    out.flush()
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let rows = arg(&args, "--rows", 1_000_000);
    let dim = arg(&args, "--dim", 128);
    let queries = arg(&args, "--queries", 1_000);
    let out = args
        .iter()
        .position(|a| a == "--out")
        .and_then(|i| args.get(i + 1))
        .map_or_else(|| "target/synth".into(), std::path::PathBuf::from);
    std::fs::create_dir_all(&out)?;
    // Up to 1,000 clusters, spread 0.15, centres from seed 42; the queries
    // share the centres and draw their own noise from seed 43.
    let clusters = (rows / 1000).clamp(10, 1000);
    write_fvecs(
        &out.join("base.fvecs"),
        &synth::clustered(rows, dim, clusters, 0.15, 42),
        dim,
    )?;
    let q = synth::clustered_queries(queries, dim, clusters, 0.15, 42, 43);
    write_fvecs(&out.join("query.fvecs"), &q, dim)?;
    println!(
        "wrote {rows} x {dim} base and {queries} queries to {}",
        out.display()
    );
    Ok(())
}
