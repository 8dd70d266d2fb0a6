//! The database commands: `create`, `import`, `search`, `get`, `delete`,
//! `stats`, `verify`.

use crate::import::{Batch, VectorReader};
use crate::{check_flag, interrupt, CliResult, Exit, Failure, Outcome};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use quiver::{Database, Error, Metric, Options, SearchParams, FORMAT_VERSION};
use serde_json::json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Arguments of `quiver create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Directory to create the database in (missing or empty).
    pub dir: PathBuf,
    /// Dimension of the vectors.
    #[arg(long)]
    dim: usize,
    /// Distance: l2 (squared Euclidean), ip (inner product) or cosine.
    #[arg(long)]
    metric: Metric,
    /// HNSW links per node (level 0 keeps twice as many), 2 to 1024.
    #[arg(long, default_value_t = quiver::DEFAULT_M)]
    m: usize,
    /// HNSW candidate list size while building, m to 65536.
    #[arg(long, default_value_t = quiver::DEFAULT_EF_CONSTRUCTION)]
    ef_construction: usize,
}

/// Arguments of `quiver import` (its `--help` in `main.rs` says how ids
/// are chosen and what stops an import).
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// Database directory (made by `quiver create`).
    pub dir: PathBuf,
    /// Vectors: .fvecs, .bvecs, .fbin, .u8bin, .npy (2-D float32) or .jsonl.
    file: PathBuf,
    /// JSON Lines only: take each row's id from this field (default: row numbers).
    #[arg(long, conflicts_with = "id_offset")]
    ids_from_field: Option<String>,
    /// Add this to every row number to make its id: `--id-offset 1000000`
    /// puts a second file after a first of a million rows.
    #[arg(long, default_value_t = 0)]
    id_offset: u64,
    /// Overwrite rows whose id is already in the database (by default such a
    /// row stops the import).
    #[arg(long)]
    replace: bool,
    /// Rows per commit, at least 1.
    #[arg(long, default_value_t = DEFAULT_IMPORT_BATCH)]
    batch: usize,
    /// Skip this many rows first: resumes an interrupted import.
    #[arg(long, default_value_t = 0)]
    start: u64,
}

/// Default rows per commit of `quiver import`.
const DEFAULT_IMPORT_BATCH: usize = 10_000;

/// Arguments of `quiver search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// Database directory.
    pub dir: PathBuf,
    /// Query vectors, in any format `import` reads.
    #[arg(long, required_unless_present = "vector")]
    query: Option<PathBuf>,
    /// One query given inline, comma-separated: --vector 0.1,0.2,0.3
    #[arg(
        long,
        value_delimiter = ',',
        allow_hyphen_values = true,
        conflicts_with = "query"
    )]
    vector: Option<Vec<f32>>,
    /// Neighbours per query, 1 to 65536.
    #[arg(short, long, default_value_t = 10)]
    k: usize,
    /// Candidate list size of the graph search, k to 65536 (default: each
    /// segment's calibrated one).
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
    pub dir: PathBuf,
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
    pub dir: PathBuf,
    /// Ids to delete; every one must exist, or nothing is deleted.
    #[arg(required = true)]
    ids: Vec<u64>,
}

/// Arguments of `quiver stats`.
#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Database directory.
    pub dir: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

/// Arguments of `quiver verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// Database directory.
    pub dir: PathBuf,
}

/// Opens an existing database, with advice when there is none.
pub fn open(dir: &Path) -> Result<Database, Box<dyn std::error::Error>> {
    Database::open_existing(dir).map_err(|e| with_advice(dir, e))
}

/// Opens an existing database read-only, for the commands that only read:
/// they write nothing, and run beside a process that writes.
fn open_read_only(dir: &Path) -> Result<Database, Box<dyn std::error::Error>> {
    Database::open_read_only(dir).map_err(|e| with_advice(dir, e))
}

/// `e` from opening `dir`, with what to do next when `dir` is no database:
/// to create one only where `quiver create` works.
pub fn with_advice(dir: &Path, e: Error) -> Box<dyn std::error::Error> {
    if !matches!(e, Error::NotADatabase { .. }) {
        return e.into();
    }
    let advice = match std::fs::metadata(dir) {
        Ok(m) if !m.is_dir() => "give the directory `quiver create` made".to_owned(),
        Ok(_) if !holds_only_an_interrupted_create(dir) => {
            "give the directory `quiver create` made, or create one in a new directory".to_owned()
        }
        _ => format!(
            "create one with `quiver create {} --dim D --metric cosine`",
            dir.display()
        ),
    };
    Failure::new(Exit::Failed, format!("{e} ({advice})")).into()
}

/// Whether `dir` holds nothing, or only what a `create` that was cut off
/// leaves (the lock file and a manifest, finished or not), so that `quiver
/// create` works on it.
fn holds_only_an_interrupted_create(dir: &Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.flatten().all(|e| {
            matches!(
                e.file_name().to_str(),
                Some("LOCK" | "quiver.redb" | "quiver.redb.tmp")
            )
        })
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

/// `quiver create`: a new database in a missing or empty directory, or
/// in one an interrupted create left.
pub fn create(args: &CreateArgs) -> CliResult {
    let options = Options::new(args.dim, args.metric)
        .m(args.m)
        .ef_construction(args.ef_construction);
    options.validate()?;
    match Database::open_existing(&args.dir) {
        Ok(db) => {
            return Err(format!(
                "{} already holds a Quiver database ({}-d, {}, {} rows); pick a new directory",
                args.dir.display(),
                db.dim(),
                db.metric(),
                db.len()
            )
            .into())
        }
        Err(Error::NotADatabase { .. }) => {}
        Err(e) => return Err(e.into()),
    }
    let db = Database::open(&args.dir, options).map_err(|e| match e {
        Error::NotADatabase { .. } => {
            format!("{e}: `quiver create` needs a new or empty directory").into()
        }
        e => Box::<dyn std::error::Error>::from(e),
    })?;
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

/// How an import that stopped may go on.
enum Next {
    /// Run again from the first uncommitted row.
    Resume,
    /// The row is bad: fix it in the file first.
    FixRow(u64),
    /// The row's id is already in the database.
    Present,
}

impl ImportArgs {
    /// This import's command, with every option that changes what it does,
    /// from row `start` with `id_offset` and `replace`.
    fn command(&self, start: u64, id_offset: u64, replace: bool) -> String {
        let mut command = format!(
            "quiver import {} {}",
            shell_word(&self.dir),
            shell_word(&self.file)
        );
        if let Some(field) = &self.ids_from_field {
            command += &format!(" --ids-from-field {field}");
        }
        if id_offset != 0 {
            command += &format!(" --id-offset {id_offset}");
        }
        if self.batch != DEFAULT_IMPORT_BATCH {
            command += &format!(" --batch {}", self.batch);
        }
        if replace {
            command += " --replace";
        }
        if start != 0 {
            command += &format!(" --start {start}");
        }
        command
    }

    /// The command that resumes this import at row `start`.
    fn resume_command(&self, start: u64, replace: bool) -> String {
        self.command(start, self.id_offset, replace)
    }

    /// The error that ends an import which stopped on `e`, with rows before
    /// `committed` committed: its kind, and the command that goes on.
    fn stopped(
        &self,
        db: &Database,
        committed: u64,
        e: &(dyn std::error::Error + 'static),
        next: Next,
    ) -> Box<dyn std::error::Error> {
        let exit = Exit::of(e);
        let done = format!("rows before {committed} are committed");
        let message = match next {
            // Resuming would meet the damage again; `main` adds what to do.
            _ if exit == Exit::Damaged => format!("{e}; {done}"),
            Next::Resume => format!(
                "{e}; {done}: resume with `{}`",
                self.resume_command(committed, self.replace)
            ),
            Next::FixRow(row) => format!(
                "{e}; {done}: fix row {row} of {}, then resume with `{}`",
                self.file.display(),
                self.resume_command(committed, self.replace)
            ),
            Next::Present if committed == 0 && self.ids_from_field.is_none() => {
                let after = db.snapshot().ids().into_iter().max().map_or(0, |id| id + 1);
                format!(
                    "{e}; import replaces no row unless told to: `{}` adds the rows after \
                     the ids present, `{}` overwrites",
                    self.command(0, after, self.replace),
                    self.command(0, self.id_offset, true)
                )
            }
            Next::Present => format!(
                "{e}; import replaces no row unless given --replace; {done}: `{}` overwrites it",
                self.resume_command(committed, true)
            ),
        };
        Failure::new(exit, message).into()
    }
}

/// `path` as one shell word: quoted when it holds anything but plain
/// characters.
fn shell_word(path: &Path) -> String {
    let text = path.display().to_string();
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+,:=@%".contains(c);
    if !text.is_empty() && text.chars().all(plain) {
        return text;
    }
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// `quiver import`: streams the file in batches, one commit per batch.
pub fn import(args: &ImportArgs) -> CliResult {
    check_flag("--batch", args.batch, 1, quiver::MAX_SEGMENT_ROWS)?;
    let db = open(&args.dir)?;
    let mut reader = VectorReader::open(&args.file, args.ids_from_field.as_deref())?;
    reader.expect_dim(db.dim())?;
    reader.skip(args.start)?;
    interrupt::catch()?;
    let mut writer = db.writer()?;
    let bar = progress(
        reader.total_bytes(),
        "  importing {wide_bar} {bytes}/{total_bytes} {msg} ({eta} left)",
    );
    bar.set_position(reader.bytes_read());
    let mut batch = Batch::default();
    let mut committed = reader.position();
    // The ids staged in this batch, by row: a second row with one of them
    // would replace the first.
    let mut staged = HashMap::new();
    loop {
        if interrupt::requested() {
            let e = Failure::new(Exit::Interrupted, "interrupted");
            return Err(args.stopped(&db, committed, &e, Next::Resume));
        }
        let rows = match reader.next_batch(args.batch, &mut batch) {
            Ok(0) => break,
            Ok(rows) => rows,
            Err(e) => {
                let next = e.row.map_or(Next::Resume, Next::FixRow);
                return Err(args.stopped(&db, committed, &e, next));
            }
        };
        let snapshot = db.snapshot();
        staged.clear();
        let rows_of_batch = batch
            .ids
            .iter()
            .zip(batch.vectors.chunks_exact(db.dim()))
            .zip(&batch.payloads);
        for (i, ((&number, v), p)) in (committed..).zip(rows_of_batch) {
            let row_error = |e: &dyn std::fmt::Display| -> Box<dyn std::error::Error> {
                Failure::new(
                    Exit::Failed,
                    format!("{}: row {i}: {e}", args.file.display()),
                )
                .into()
            };
            let id = if args.ids_from_field.is_some() {
                number
            } else {
                number.checked_add(args.id_offset).ok_or_else(|| {
                    row_error(&format!(
                        "--id-offset {} makes its id overflow",
                        args.id_offset
                    ))
                })?
            };
            if !args.replace {
                let first = staged.insert(id, i);
                let present = match first {
                    Some(first) => Some(format!("id {id} is also the id of row {first}")),
                    None => snapshot
                        .contains(id)
                        .map_err(|e| args.stopped(&db, committed, &e, Next::Resume))?
                        .then(|| format!("id {id} is already in {}", args.dir.display())),
                };
                if let Some(present) = present {
                    let e = row_error(&present);
                    return Err(args.stopped(&db, committed, &*e, Next::Present));
                }
            }
            if let Err(e) = writer.upsert(id, v, p.as_deref()) {
                let e = row_error(&e);
                return Err(args.stopped(&db, committed, &*e, Next::FixRow(i)));
            }
        }
        if let Err(e) = writer.commit() {
            return Err(args.stopped(&db, committed, &e, Next::Resume));
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
    let params = SearchParams {
        ef: args.ef,
        exact: args.exact,
        ..SearchParams::new(args.k)
    };
    params.validate()?;
    let db = open_read_only(&args.dir)?;
    let queries = match (&args.vector, &args.query) {
        (Some(v), _) if v.len() != db.dim() => {
            return Err(format!(
                "--vector has {} values but the database stores {}-d vectors",
                v.len(),
                db.dim()
            )
            .into())
        }
        (Some(v), _) => v.clone(),
        (None, Some(path)) => {
            let mut reader = VectorReader::open(path, None)?;
            reader.expect_dim(db.dim())?;
            reader.read_all()?.vectors
        }
        (None, None) => return Err("give --query FILE or --vector X,Y,...".into()),
    };
    if queries.is_empty() {
        return Err("no queries: the query file holds no vector".into());
    }
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
    let record = db.get(args.id)?.ok_or_else(|| {
        let message = format!("id {} is not in {}", args.id, args.dir.display());
        Failure::new(Exit::NotFound, message)
    })?;
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

/// `quiver delete`: the ids that are there, in one commit; the others are
/// named, with exit 1 (not found), as deleting is idempotent.
pub fn delete(args: &DeleteArgs) -> CliResult {
    let db = open(&args.dir)?;
    let mut absent = Vec::new();
    for &id in &args.ids {
        if db.get(id)?.is_none() {
            absent.push(id);
        }
    }
    absent.sort_unstable();
    absent.dedup();
    let mut writer = db.writer()?;
    let deleted = writer.delete_batch(&args.ids)?;
    let info = writer.commit()?;
    say!(
        "deleted {deleted} ids (generation {}, {} live rows)",
        info.generation,
        db.len()
    );
    if !absent.is_empty() {
        let message = format!("not present, nothing to delete: {absent:?}");
        return Err(Failure::new(Exit::NotFound, message).into());
    }
    Ok(Outcome::Done)
}

/// `quiver stats`.
pub fn stats(args: &StatsArgs) -> CliResult {
    let db = open_read_only(&args.dir)?;
    let s = db.stats()?;
    let snapshot = db.snapshot();
    let options = snapshot.options();
    if args.json {
        say!(
            "{}",
            json!({
                "format_version": FORMAT_VERSION,
                "dim": db.dim(),
                "metric": db.metric().to_string(),
                "m": options.graph_m(),
                "ef_construction": options.graph_ef_construction(),
                "generation": s.generation,
                "rows": s.rows,
                "deleted_rows": s.deleted_rows,
                "segments": s.segments,
                "calibrated_segments": s.calibrated_segments,
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
    say!(
        "  graphs           m {}, ef_construction {}",
        options.graph_m(),
        options.graph_ef_construction()
    );
    say!("  generation       {}", s.generation);
    say!("  live rows        {}", s.rows);
    say!("  deleted rows     {} (still on disk)", s.deleted_rows);
    say!(
        "  sealed segments  {} ({} calibrated)",
        s.segments,
        s.calibrated_segments
    );
    say!("  growing rows     {}", s.growing_rows);
    say!("  column files     {:.2} MiB", mib(s.column_bytes));
    say!("  links files      {:.2} MiB", mib(s.links_bytes));
    say!("  manifest         {:.2} MiB", mib(s.manifest_bytes));
    say!("  total            {:.2} MiB", mib(s.bytes_on_disk));
    Ok(Outcome::Done)
}

/// `quiver verify`: exit 3 and name every damaged file, region and manifest
/// entry if anything is damaged (a file of a newer format is no damage: its
/// error says to upgrade).
pub fn verify(args: &VerifyArgs) -> CliResult {
    let spinner = progress(0, "  verifying {spinner} {elapsed}");
    let report = quiver::verify(&args.dir);
    spinner.finish_and_clear();
    let mut report = report.map_err(|e| with_advice(&args.dir, e))?;
    if let Some(newer) = report
        .problems
        .iter()
        .position(|p| matches!(p, Error::UnsupportedVersion { .. }))
    {
        return Err(with_advice(&args.dir, report.problems.swap_remove(newer)));
    }
    for p in &report.problems {
        say!("BAD {p}");
    }
    match (report.problems.is_empty(), report.stats) {
        (true, Some(s)) => {
            say!(
                "ok: {} rows (sealed segments: {}, growing rows: {}), every checksum and id checked",
                s.rows,
                s.segments,
                s.growing_rows
            );
            Ok(Outcome::Done)
        }
        _ => Ok(Outcome::Damaged),
    }
}
