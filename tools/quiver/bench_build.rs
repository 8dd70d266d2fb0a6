//! The build patterns of `quiver bench --pattern`: how the base reaches the
//! database before it is measured.
//!
//! - `one`: every row in one commit (one segment, one graph).
//! - `10k`: commits of 10,000 rows.
//! - `100`: commits of 100 rows, default options (the growing segment seals
//!   at the growing threshold; the background merger merges by the
//!   policy of `src/merge.rs`).
//! - `churn`: `100`, then 30 % of the rows deleted and 10 % upserted with a
//!   new vector, mixed in commits of 100 operations. The choice is seeded
//!   (`--seed`): the ids are shuffled, the first 30 % are deleted and the next
//!   10 % each take the vector of one of the deleted rows (a real vector of
//!   the data set, so the final state holds no duplicate and no outlier).
//!
//! Every `writer.commit()` call is timed on its own; the build's wall time
//! covers staging and committing, not reading the file.

use crate::commands::progress;
use crate::import::Batch;
use clap::ValueEnum;
use quiver::synth::SplitMix64;
use quiver::Database;
use std::io::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

/// How the base is committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Pattern {
    /// One commit of all rows.
    #[value(name = "one")]
    One,
    /// Commits of 10,000 rows.
    #[value(name = "10k")]
    TenK,
    /// Commits of 100 rows.
    #[value(name = "100")]
    Hundred,
    /// `100`, then deletes of 30 % and upserts of 10 % of the rows in commits
    /// of 100.
    #[value(name = "churn")]
    Churn,
}

impl Pattern {
    /// The name `--pattern` takes and the JSON prints.
    pub fn name(self) -> &'static str {
        match self {
            Pattern::One => "one",
            Pattern::TenK => "10k",
            Pattern::Hundred => "100",
            Pattern::Churn => "churn",
        }
    }

    /// Rows (or operations) per commit; `None` for one commit of everything.
    pub fn commit_rows(self) -> Option<usize> {
        match self {
            Pattern::One => None,
            Pattern::TenK => Some(10_000),
            Pattern::Hundred | Pattern::Churn => Some(100),
        }
    }
}

/// Share of the rows `churn` deletes, in percent.
pub const CHURN_DELETE_PCT: usize = 30;
/// Share of the rows `churn` upserts with a new vector, in percent.
pub const CHURN_UPSERT_PCT: usize = 10;

/// One operation of the churn phase, on base row numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChurnOp {
    /// Delete the id of this row.
    Delete(usize),
    /// Give the id of row `row` the vector of row `from` (a deleted row).
    Move { row: usize, from: usize },
}

/// A uniform index below `n` (n > 0).
fn below(rng: &mut SplitMix64, n: usize) -> usize {
    (rng.next_u64() % n as u64) as usize
}

fn shuffle<T>(items: &mut [T], rng: &mut SplitMix64) {
    for i in (1..items.len()).rev() {
        items.swap(i, below(rng, i + 1));
    }
}

/// The churn phase for `n` rows, in commit order: deletes of 30 % of the rows
/// and moves onto 10 % of the others, shuffled together. Deterministic in
/// `seed`.
pub fn churn_plan(n: usize, seed: u64) -> Vec<ChurnOp> {
    let mut rng = SplitMix64::new(seed);
    let mut rows: Vec<usize> = (0..n).collect();
    shuffle(&mut rows, &mut rng);
    let deleted = n * CHURN_DELETE_PCT / 100;
    let moved = n * CHURN_UPSERT_PCT / 100;
    let mut ops: Vec<ChurnOp> = rows[..deleted]
        .iter()
        .map(|&r| ChurnOp::Delete(r))
        .collect();
    ops.extend(
        rows[deleted..deleted + moved]
            .iter()
            .zip(&rows[..moved])
            .map(|(&row, &from)| ChurnOp::Move { row, from }),
    );
    shuffle(&mut ops, &mut rng);
    ops
}

/// Writes the final state of a churn build as `.ivecs`: one row `[id, source
/// row]` per live id, by id, where the source row is the base row whose
/// vector the id holds (`peers.py` builds the peers on the same rows).
pub fn write_churn_map(path: &Path, base: &Batch, plan: &[ChurnOp]) -> std::io::Result<()> {
    let mut source: Vec<Option<usize>> = (0..base.ids.len()).map(Some).collect();
    for op in plan {
        match *op {
            ChurnOp::Delete(row) => source[row] = None,
            ChurnOp::Move { row, from } => source[row] = Some(from),
        }
    }
    let mut live: Vec<(u64, usize)> = source
        .iter()
        .enumerate()
        .filter_map(|(row, s)| s.map(|from| (base.ids[row], from)))
        .collect();
    live.sort_unstable();
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    let too_big = || std::io::Error::other("ids and rows must fit an i32 in .ivecs");
    for (id, from) in live {
        out.write_all(&2i32.to_le_bytes())?;
        out.write_all(&i32::try_from(id).map_err(|_| too_big())?.to_le_bytes())?;
        out.write_all(&i32::try_from(from).map_err(|_| too_big())?.to_le_bytes())?;
    }
    out.flush()
}

/// What a build did and how long it took.
#[derive(Debug, Default)]
pub struct Build {
    /// Wall time of the whole build (staging and commits), seconds.
    pub secs: f64,
    /// Rows upserted plus ids deleted.
    pub operations: usize,
    /// Latency of each `commit()` call, in order.
    pub commits: Vec<Duration>,
    /// Commits that sealed a column file.
    pub sealing_commits: usize,
}

impl Build {
    fn commit(&mut self, writer: &mut quiver::Writer) -> quiver::Result<()> {
        let began = Instant::now();
        let info = writer.commit()?;
        self.commits.push(began.elapsed());
        self.sealing_commits += usize::from(info.sealed.is_some());
        Ok(())
    }

    /// The nearest-rank `q` quantile of the commit latencies.
    pub fn commit_quantile(&self, q: f64) -> Duration {
        let mut sorted = self.commits.clone();
        sorted.sort_unstable();
        let n = sorted.len();
        if n == 0 {
            return Duration::ZERO;
        }
        sorted[((q * n as f64).ceil() as usize).clamp(1, n) - 1]
    }

    /// The slowest commit.
    pub fn commit_max(&self) -> Duration {
        self.commits.iter().copied().max().unwrap_or_default()
    }
}

/// Commits `base` into the empty `db` as `pattern` says (`plan`: the churn
/// phase, for [`Pattern::Churn`]).
pub fn build(
    db: &Database,
    base: &Batch,
    pattern: Pattern,
    plan: &[ChurnOp],
) -> quiver::Result<Build> {
    let dim = db.dim();
    let n = base.ids.len();
    let churn = if pattern == Pattern::Churn { plan } else { &[] };
    let mut build = Build {
        operations: n + churn.len(),
        ..Build::default()
    };
    let bar = progress(
        build.operations as u64,
        "  building {wide_bar} {pos}/{len} rows",
    );
    let mut writer = db.writer()?;
    let start = Instant::now();
    let step = pattern.commit_rows().unwrap_or(n.max(1));
    for at in (0..n).step_by(step) {
        let end = (at + step).min(n);
        writer.upsert_batch(&base.ids[at..end], &base.vectors[at * dim..end * dim], None)?;
        build.commit(&mut writer)?;
        bar.set_position(end as u64);
    }
    for (i, ops) in churn.chunks(step).enumerate() {
        for op in ops {
            match *op {
                ChurnOp::Delete(row) => {
                    writer.delete(base.ids[row])?;
                }
                ChurnOp::Move { row, from } => writer.upsert(
                    base.ids[row],
                    &base.vectors[from * dim..(from + 1) * dim],
                    None,
                )?,
            }
        }
        build.commit(&mut writer)?;
        bar.set_position((n + i * step + ops.len()) as u64);
    }
    build.secs = start.elapsed().as_secs_f64();
    bar.finish_and_clear();
    Ok(build)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn churn_plan_deletes_30_and_moves_10_percent_onto_survivors() {
        let plan = churn_plan(1000, 7);
        assert_eq!(plan, churn_plan(1000, 7), "seeded");
        let deleted: Vec<usize> = plan
            .iter()
            .filter_map(|op| match op {
                ChurnOp::Delete(r) => Some(*r),
                ChurnOp::Move { .. } => None,
            })
            .collect();
        let moves: Vec<(usize, usize)> = plan
            .iter()
            .filter_map(|op| match op {
                ChurnOp::Move { row, from } => Some((*row, *from)),
                ChurnOp::Delete(_) => None,
            })
            .collect();
        assert_eq!(deleted.len(), 300);
        assert_eq!(moves.len(), 100);
        for (row, from) in moves {
            assert!(!deleted.contains(&row), "a moved id survives");
            assert!(deleted.contains(&from), "its vector is a deleted row's");
        }
    }
}
