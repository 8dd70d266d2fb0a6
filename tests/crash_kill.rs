//! Kill tests: a child process commits in a loop, compacting every eighth
//! generation, while its background merger merges the segments the commits
//! seal, and reports each generation it completed; the parent SIGKILLs it at
//! random moments, reopens the directory and compares it with a model
//! replayed from the same deterministic workload.
//!
//! Every reported commit must be present and exact, the interrupted one all or
//! nothing, and every checksum must verify. `QUIVER_CRASH_ITERS` sets the
//! number of kills (default 1,000; `QUIVER_CRASH_ITERS=10000` is the long run).
//! What the reopen cleans up tells where each kill landed (while writing a
//! file, between its sync and the manifest commit, after a commit retired
//! segments, while a background merge had written files no commit names);
//! the counts are printed.

mod common;

use common::Rng;
use quiver::{CompactOptions, Database, Metric, Options};
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

const DIM: usize = 8;
const ID_SPACE: u64 = 400;
const CHILD_ENV: &str = "QUIVER_CRASH_CHILD_DIR";
const CHILD_LOG_ENV: &str = "QUIVER_CRASH_CHILD_LOG";

/// A small growing threshold, so that kills land in seals, merges and
/// retirements too.
const THRESHOLD: usize = 40;

fn options() -> Options {
    Options::new(DIM, Metric::L2).growing_threshold(THRESHOLD)
}

/// The row count in the header of each column file in `dir` (bytes 24..32).
fn column_rows(dir: &Path) -> BTreeMap<String, u64> {
    file_names(dir)
        .into_iter()
        .filter(|n| n.ends_with(".col"))
        .filter_map(|n| {
            let bytes = std::fs::read(dir.join(&n)).ok()?;
            let rows = u64::from_le_bytes(bytes.get(24..32)?.try_into().ok()?);
            Some((n, rows))
        })
        .collect()
}

#[derive(Debug, Clone, PartialEq)]
struct Row {
    vector: Vec<f32>,
    payload: Option<Vec<u8>>,
}

type Model = BTreeMap<u64, Row>;

/// The operations of commit `n`, given the state before it: upserts, then deletes
/// of ids that exist. Every 13th commit is a large batch that seals directly.
fn commit_ops(n: u64, before: &Model) -> (Vec<(u64, Row)>, Vec<u64>) {
    let mut rng = Rng::new(n);
    let count = if n.is_multiple_of(13) {
        120
    } else {
        1 + rng.below(6) as usize
    };
    let mut upserts = BTreeMap::new();
    for _ in 0..count {
        let id = rng.below(ID_SPACE);
        let vector = (0..DIM)
            .map(|d| (n * 1000 + id) as f32 + d as f32 * 0.5)
            .collect();
        let payload = (rng.below(3) != 0).then(|| format!("{n}:{id}").into_bytes());
        upserts.insert(id, Row { vector, payload });
    }
    let mut deletes = Vec::new();
    for _ in 0..rng.below(4) {
        let id = rng.below(ID_SPACE);
        if before.contains_key(&id) && !upserts.contains_key(&id) && !deletes.contains(&id) {
            deletes.push(id);
        }
    }
    (upserts.into_iter().collect(), deletes)
}

fn model_after(generation: u64) -> Model {
    let mut model = Model::new();
    for n in 1..=generation {
        let (upserts, deletes) = commit_ops(n, &model);
        for (id, row) in upserts {
            model.insert(id, row);
        }
        for id in deletes {
            model.remove(&id);
        }
    }
    model
}

/// Generation `g` is a compaction when `g` is a multiple of this, else the
/// next commit of the workload.
const COMPACT_EVERY: u64 = 8;

/// Commits among the first `generation` generations.
fn commits_in(generation: u64) -> u64 {
    generation - generation / COMPACT_EVERY
}

/// The child's workload; a no-op unless the parent started this binary for it.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_ENV) else {
        return;
    };
    // Each completed generation is appended to the log with one unbuffered write.
    let mut log = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(std::env::var(CHILD_LOG_ENV).unwrap())
        .unwrap();
    let db = Database::open(&dir, options()).unwrap();
    let mut g = db.snapshot().generation();
    let mut model = model_after(commits_in(g));
    let mut w = db.writer().unwrap();
    loop {
        g += 1;
        if g.is_multiple_of(COMPACT_EVERY) {
            // Seven commits since the last compaction always leave growing
            // rows to seal, so there is always something to rewrite.
            let report = w.compact(&CompactOptions::new(), &mut |_, _| {}).unwrap();
            assert_eq!(report.generation, g);
        } else {
            let n = commits_in(g);
            let (upserts, deletes) = commit_ops(n, &model);
            for (id, row) in &upserts {
                w.upsert(*id, &row.vector, row.payload.as_deref()).unwrap();
            }
            for id in &deletes {
                w.delete(*id).unwrap();
            }
            w.commit().unwrap();
            for (id, row) in upserts {
                model.insert(id, row);
            }
            for id in deletes {
                model.remove(&id);
            }
        }
        log.write_all(format!("committed {g}\n").as_bytes())
            .unwrap();
    }
}

fn check(dir: &Path, reported: u64) -> u64 {
    let db = Database::open(dir, options()).unwrap();
    let generation = db.snapshot().generation();
    assert!(
        generation == reported || generation == reported + 1,
        "reported {reported} commits, found generation {generation}"
    );
    db.verify().unwrap();
    let model = model_after(commits_in(generation));
    assert_eq!(db.len(), model.len());
    for id in 0..ID_SPACE {
        let got = db.get(id).unwrap().map(|r| Row {
            vector: r.vector,
            payload: r.payload,
        });
        assert_eq!(
            got.as_ref(),
            model.get(&id),
            "id {id} at generation {generation}"
        );
    }
    generation
}

fn file_names(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Where kills landed, told from what the reopen cleaned up.
#[derive(Debug, Default)]
struct Phases {
    /// A `.tmp` file was left: killed while writing a column or links file.
    writing: u64,
    /// Complete segment files newer than every committed segment: killed
    /// between syncing them and the manifest commit.
    before_commit: u64,
    /// Files of segments older than a committed one: killed after a commit
    /// retired them and before they were unlinked.
    after_commit: u64,
    /// The generation after the one found is a compaction.
    compacting: u64,
    /// Segment files no commit named although no commit or compaction was
    /// in flight: a background merge was writing them or about to switch.
    merging: u64,
}

impl Phases {
    /// `rows` holds the row count of each column file before the reopen.
    fn count(
        &mut self,
        before: &BTreeSet<String>,
        after: &BTreeSet<String>,
        rows: &BTreeMap<String, u64>,
        found: u64,
        reported: u64,
    ) {
        let id = |name: &str| {
            let hex = name.strip_prefix("seg-")?.split('.').next()?;
            u64::from_str_radix(hex, 16).ok()
        };
        let newest = after.iter().filter_map(|n| id(n)).max().unwrap_or(0);
        let removed: Vec<&String> = before.difference(after).collect();
        if removed.iter().any(|n| n.ends_with(".tmp")) {
            self.writing += 1;
        } else if removed.iter().any(|n| id(n).is_some_and(|i| i > newest)) {
            self.before_commit += 1;
        }
        if removed
            .iter()
            .any(|n| !n.ends_with(".tmp") && id(n).is_some_and(|i| i <= newest))
        {
            self.after_commit += 1;
        }
        let compacting = (found + 1).is_multiple_of(COMPACT_EVERY);
        if compacting {
            self.compacting += 1;
        }
        // A commit writes a segment of at most `growing_threshold` rows (a
        // sealed growing segment) or of exactly its own upserts (a large
        // batch); a removed column file of any other size that no commit or
        // compaction was writing is a background merge's.
        let next = commits_in(found + 1);
        let batch = commit_ops(next, &Model::new()).0.len();
        let merged = removed.iter().any(|n| {
            n.ends_with(".col")
                && rows
                    .get(*n)
                    .is_some_and(|&r| r > THRESHOLD as u64 && r != batch as u64)
        });
        if merged && found == reported && !compacting {
            self.merging += 1;
        }
    }
}

#[test]
fn killed_writer_loses_no_reported_commit_and_shows_no_partial_one() {
    let iterations: u64 = std::env::var("QUIVER_CRASH_ITERS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let exe = std::env::current_exe().unwrap();
    let log = tmp.path().join("progress.log");
    let mut rng = Rng::new(0xC0FFEE);
    let mut generation = 0;
    let mut interrupted_commits = 0;
    let mut phases = Phases::default();
    for _ in 0..iterations {
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, &dir)
            .env(CHILD_LOG_ENV, &log)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(10 + rng.below(60)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        let out = std::fs::read_to_string(&log).unwrap_or_default();
        let reported = out
            .split_inclusive('\n')
            .filter_map(|l| l.strip_suffix('\n'))
            .filter_map(|l| l.strip_prefix("committed "))
            .filter_map(|n| n.trim().parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            // A commit found durable after the last kill counts as reported.
            .max(generation);
        let before = file_names(&dir);
        let rows = column_rows(&dir);
        let found = check(&dir, reported);
        phases.count(&before, &file_names(&dir), &rows, found, reported);
        if found > reported {
            interrupted_commits += 1;
        }
        generation = found;
    }
    eprintln!(
        "{iterations} kills, {generation} generations, {interrupted_commits} durable but unreported; \
         kills that left: {} partly written files (.tmp), {} synced files no commit named, \
         {} files of segments a commit had retired; {} kills with a compaction next; \
         {} with a background merge's files unnamed",
        phases.writing, phases.before_commit, phases.after_commit, phases.compacting, phases.merging
    );
    assert!(phases.merging > 0, "no kill landed in a background merge");
    assert!(
        generation > iterations,
        "the child made too few commits to test anything"
    );
}
