//! The database commands: `create`, `import`, `search`, `get`, `delete`,
//! `stats`, `verify`.

use crate::import::{Batch, VectorReader};
use crate::{CliResult, Outcome};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use quiver::{Database, Error, Metric, Options, SearchParams, FORMAT_VERSION};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Arguments of `quiver create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Directory to create the database in (missing or empty).
    dir: PathBuf,
    /// Dimension of the vectors.
    #[arg(long)]
    dim: usize,
    /// Distance: l2 (squared Euclidean), ip (inner product) or cosine.
    #[arg(long)]
    metric: Metric,
    /// HNSW links per node (level 0 keeps twice as many).
    #[arg(long, default_value_t = quiver::DEFAULT_M)]
    m: usize,
    /// HNSW candidate list size while building.
    #[arg(long, default_value_t = quiver::DEFAULT_EF_CONSTRUCTION)]
    ef_construction: usize,
}

/// Arguments of `quiver import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Database directory (made by `quiver create`).
    dir: PathBuf,
    /// Vectors: .fvecs, .bvecs, .fbin, .u8bin, .npy (2-D float32) or .jsonl.
    file: PathBuf,
    /// JSON Lines only: take each row's id from this field (default: row numbers).
    #[arg(long)]
    ids_from_field: Option<String>,
    /// Rows per commit.
    #[arg(long, default_value_t = 10_000)]
    batch: usize,
    /// Skip this many rows first: resumes an interrupted import.
    #[arg(long, default_value_t = 0)]
    start: u64,
}

/// Arguments of `quiver search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Database directory.
    dir: PathBuf,
    /// Query vectors, in any format `import` reads.
    #[arg(long, required_unless_present = "vector")]
    query: Option<PathBuf>,
    /// One query given inline, comma-separated: --vector 0.1,0.2,0.3
    #[arg(long, value_delimiter = ',', allow_hyphen_values = true)]
    vector: Option<Vec<f32>>,
    /// Neighbours per query.
    #[arg(short, long, default_value_t = 10)]
    k: usize,
    /// Candidate list size of the graph search (default: the database's).
    #[arg(long)]
    ef: Option<usize>,
    /// Scan every row instead of searching the graphs.
    #[arg(long)]
    exact: bool,
    /// One JSON object per query instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of `quiver get`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// Database directory.
    dir: PathBuf,
    /// The id to look up.
    id: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of `quiver delete`.
#[derive(Debug, Args)]
pub struct DeleteArgs {
    /// Database directory.
    dir: PathBuf,
    /// Ids to delete; every one must exist, or nothing is deleted.
    #[arg(required = true)]
    ids: Vec<u64>,
}

/// Arguments of `quiver stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Database directory.
    dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of `quiver verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Database directory.
    dir: PathBuf,
}

/// Opens an existing database, with advice when there is none.
fn open(dir: &Path) -> Result<Database, Box<dyn std::error::Error>> {
    advise(dir, Database::open_existing(dir))
}

/// Opens an existing database read-only, for the commands that only read:
/// they write nothing, and run beside a process that writes.
fn open_read_only(dir: &Path) -> Result<Database, Box<dyn std::error::Error>> {
    advise(dir, Database::open_read_only(dir))
}

/// The result of an open, with advice when there is no database.
fn advise(
    dir: &Path,
    opened: quiver::Result<Database>,
) -> Result<Database, Box<dyn std::error::Error>> {
    opened.map_err(|e| match e {
        Error::NotADatabase { .. } => format!(
            "{e} (create one with `quiver create {} --dim D --metric cosine`)",
            dir.display()
        )
        .into(),
        e => e.into(),
    })
}

/// A progress bar on stderr (hidden when stderr is not a terminal).
pub fn progress(len: u64, template: &str) -> ProgressBar {
    let style = ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    let bar = ProgressBar::new(len).with_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

/// `quiver create`.
pub fn create(args: &CreateArgs) -> CliResult {
    if std::fs::read_dir(&args.dir).is_ok_and(|mut d| d.next().is_some()) {
        return Err(format!(
            "{} already exists and is not empty; pick a new directory",
            args.dir.display()
        )
        .into());
    }
    let options = Options::new(args.dim, args.metric)
        .m(args.m)
        .ef_construction(args.ef_construction);
    let db = Database::open(&args.dir, options)?;
    say!(
        "created {} ({}-d, {}, m {}, ef_construction {})",
        db.path().display(),
        db.dim(),
        db.metric(),
        args.m,
        args.ef_construction
    );
    Ok(Outcome::Done)
}

/// `quiver import`: streams the file in batches, one commit per batch.
pub fn import(args: &ImportArgs) -> CliResult {
    if args.batch == 0 {
        return Err("--batch must be at least 1".into());
    }
    let db = open(&args.dir)?;
    let mut reader = VectorReader::open(&args.file, args.ids_from_field.as_deref())?;
    if reader.dim() != db.dim() {
        return Err(format!(
            "{} holds {}-d vectors but the database stores {}-d ones",
            args.file.display(),
            reader.dim(),
            db.dim()
        )
        .into());
    }
    reader.skip(args.start)?;
    let mut writer = db.writer()?;
    let bar = progress(
        reader.total_bytes(),
        "  importing {wide_bar} {bytes}/{total_bytes} {msg} ({eta} left)",
    );
    bar.set_position(reader.bytes_read());
    let mut batch = Batch::default();
    let mut committed = reader.position();
    let resume = |row: u64, e: &dyn std::fmt::Display| -> Box<dyn std::error::Error> {
        format!(
            "{e}; rows before {row} are committed: resume with `quiver import {} {} --start {row}`",
            args.dir.display(),
            args.file.display()
        )
        .into()
    };
    loop {
        let rows = match reader.next_batch(args.batch, &mut batch) {
            Ok(0) => break,
            Ok(rows) => rows,
            Err(e) => return Err(resume(committed, &e)),
        };
        let staged = if batch.payloads.iter().all(Option::is_none) {
            writer.upsert_batch(&batch.ids, &batch.vectors, None)
        } else {
            batch
                .ids
                .iter()
                .zip(batch.vectors.chunks_exact(db.dim()))
                .zip(&batch.payloads)
                .try_for_each(|((&id, v), p)| writer.upsert(id, v, p.as_deref()))
        };
        if let Err(e) = staged.and_then(|()| writer.commit().map(drop)) {
            return Err(resume(committed, &e));
        }
        debug_assert_eq!(committed + rows as u64, reader.position());
        committed = reader.position();
        bar.set_position(reader.bytes_read());
        bar.set_message(format!("{committed} rows committed"));
    }
    bar.finish_and_clear();
    say!(
        "imported {} rows from {} ({}) into {} ({} live rows)",
        committed - args.start,
        args.file.display(),
        reader.format(),
        args.dir.display(),
        db.len()
    );
    Ok(Outcome::Done)
}

/// `quiver search`.
pub fn search(args: &SearchArgs) -> CliResult {
    let db = open_read_only(&args.dir)?;
    let queries = match (&args.vector, &args.query) {
        (Some(v), _) => v.clone(),
        (None, Some(path)) => VectorReader::open(path, None)?.read_all()?.vectors,
        (None, None) => return Err("give --query FILE or --vector X,Y,...".into()),
    };
    if queries.is_empty() || queries.len() % db.dim() != 0 {
        return Err(format!(
            "queries have {} values, not a whole number of {}-d vectors",
            queries.len(),
            db.dim()
        )
        .into());
    }
    let params = SearchParams {
        ef: args.ef,
        exact: args.exact,
        ..SearchParams::new(args.k)
    };
    let snapshot = db.snapshot();
    for (i, q) in queries.chunks_exact(db.dim()).enumerate() {
        let hits = snapshot.search_with(q, &params)?;
        if args.json {
            let hits: Vec<_> = hits
                .iter()
                .map(|h| json!({"id": h.id, "distance": h.distance}))
                .collect();
            say!("{}", json!({"query": i, "hits": hits}));
        } else {
            let list: Vec<String> = hits
                .iter()
                .map(|h| format!("{} ({:.6})", h.id, h.distance))
                .collect();
            say!("query {i}: {}", list.join(", "));
        }
    }
    Ok(Outcome::Done)
}

/// A payload as text when it is UTF-8, else as hex.
fn payload_text(p: &[u8]) -> String {
    match std::str::from_utf8(p) {
        Ok(s) => s.to_owned(),
        Err(_) => p.iter().map(|b| format!("{b:02x}")).collect(),
    }
}

/// `quiver get`.
pub fn get(args: &GetArgs) -> CliResult {
    let db = open_read_only(&args.dir)?;
    let record = db
        .get(args.id)?
        .ok_or_else(|| format!("id {} is not in {}", args.id, args.dir.display()))?;
    if args.json {
        let payload = record.payload.as_deref().map(payload_text);
        say!(
            "{}",
            json!({"id": args.id, "vector": record.vector, "payload": payload})
        );
    } else {
        let vector: Vec<String> = record.vector.iter().map(f32::to_string).collect();
        say!("id {}", args.id);
        say!("vector [{}]", vector.join(", "));
        match &record.payload {
            Some(p) => say!("payload {}", payload_text(p)),
            None => say!("payload none"),
        }
    }
    Ok(Outcome::Done)
}

/// `quiver delete`: all ids in one commit, or none if one is unknown.
pub fn delete(args: &DeleteArgs) -> CliResult {
    let db = open(&args.dir)?;
    let mut writer = db.writer()?;
    for &id in &args.ids {
        writer.delete(id)?;
    }
    let info = writer.commit()?;
    say!(
        "deleted {} ids (generation {}, {} live rows)",
        args.ids.len(),
        info.generation,
        db.len()
    );
    Ok(Outcome::Done)
}

/// `quiver stats`.
pub fn stats(args: &StatsArgs) -> CliResult {
    let db = open_read_only(&args.dir)?;
    let s = db.stats()?;
    if args.json {
        say!(
            "{}",
            json!({
                "format_version": FORMAT_VERSION,
                "dim": db.dim(),
                "metric": db.metric().to_string(),
                "generation": s.generation,
                "rows": s.rows,
                "deleted_rows": s.deleted_rows,
                "segments": s.segments,
                "growing_rows": s.growing_rows,
                "column_bytes": s.column_bytes,
                "links_bytes": s.links_bytes,
                "manifest_bytes": s.manifest_bytes,
                "bytes_on_disk": s.bytes_on_disk,
            })
        );
        return Ok(Outcome::Done);
    }
    let mib = |b: u64| b as f64 / 1_048_576.0;
    say!("{}", args.dir.display());
    say!("  format version   {FORMAT_VERSION}");
    say!("  vectors          {}-d, {}", db.dim(), db.metric());
    say!("  generation       {}", s.generation);
    say!("  live rows        {}", s.rows);
    say!("  deleted rows     {} (still on disk)", s.deleted_rows);
    say!("  sealed segments  {}", s.segments);
    say!("  growing rows     {}", s.growing_rows);
    say!("  column files     {:.2} MiB", mib(s.column_bytes));
    say!("  links files      {:.2} MiB", mib(s.links_bytes));
    say!("  manifest         {:.2} MiB", mib(s.manifest_bytes));
    say!("  total            {:.2} MiB", mib(s.bytes_on_disk));
    Ok(Outcome::Done)
}

/// `quiver verify`: exit 1 and name each bad file if anything is damaged.
pub fn verify(args: &VerifyArgs) -> CliResult {
    let db = match Database::open_read_only_verified(&args.dir) {
        Ok(db) => db,
        Err(e @ (Error::Corrupted { .. } | Error::UnsupportedVersion { .. })) => {
            say!("BAD {e}");
            return Ok(Outcome::Damaged);
        }
        Err(e) => return Err(e.into()),
    };
    let spinner = progress(0, "  verifying {spinner} {elapsed}");
    let problems = db.check();
    spinner.finish_and_clear();
    for p in &problems {
        say!("BAD {p}");
    }
    if !problems.is_empty() {
        return Ok(Outcome::Damaged);
    }
    let s = db.stats()?;
    say!(
        "ok: {} rows (sealed segments: {}, growing rows: {}), every checksum and id checked",
        s.rows,
        s.segments,
        s.growing_rows
    );
    Ok(Outcome::Done)
}
