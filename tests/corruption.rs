//! Damaged and foreign files are reported with a typed error naming the file,
//! never served and never a panic.

use quiver::{CompactOptions, Database, Error, Metric, Options, SearchParams};
use std::path::{Path, PathBuf};

/// No background merger: each case damages one file of a fixed layout, and
/// a merge would replace the damaged segment under the check.
fn options() -> Options {
    Options::new(4, Metric::L2)
        .growing_threshold(8)
        .auto_merge(false)
}

/// A database with one sealed segment of 16 rows; returns its column file.
fn sealed_db(dir: &Path) -> PathBuf {
    let db = Database::open(dir, options()).unwrap();
    let mut w = db.writer().unwrap();
    let ids: Vec<u64> = (0..16).collect();
    let data: Vec<f32> = (0..64).map(|i| i as f32).collect();
    w.upsert_batch(&ids, &data, None).unwrap();
    w.commit().unwrap();
    dir.join("seg-0000000000000001.col")
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x04;
    std::fs::write(path, bytes).unwrap();
}

fn assert_corrupted_naming<T: std::fmt::Debug>(result: quiver::Result<T>, file: &Path) {
    match result {
        Err(Error::Corrupted { file: f, what }) => {
            assert_eq!(f, file, "wrong file named ({what})");
        }
        other => panic!("expected corruption of {}, got {other:?}", file.display()),
    }
}

#[test]
fn flipped_vector_byte_is_never_served() {
    let tmp = tempfile::tempdir().unwrap();
    let col = sealed_db(tmp.path());
    flip(&col, 64 + 5);
    let db = Database::open(tmp.path(), options()).unwrap();
    assert_corrupted_naming(db.search(&[0.0; 4], 3), &col);
    assert_corrupted_naming(db.get(0), &col);
    assert_corrupted_naming(db.verify(), &col);
}

#[test]
fn flipped_id_byte_is_never_served() {
    let tmp = tempfile::tempdir().unwrap();
    let col = sealed_db(tmp.path());
    let len = std::fs::metadata(&col).unwrap().len() as usize;
    flip(&col, len - 3);
    let db = Database::open(tmp.path(), options()).unwrap();
    assert_corrupted_naming(db.search(&[0.0; 4], 3), &col);
}

#[test]
fn flipped_data_byte_fails_open_with_verify_on_open() {
    let tmp = tempfile::tempdir().unwrap();
    let col = sealed_db(tmp.path());
    flip(&col, 100);
    assert_corrupted_naming(
        Database::open(tmp.path(), options().verify_on_open(true)),
        &col,
    );
}

#[test]
fn every_flipped_header_byte_is_refused_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let col = sealed_db(tmp.path());
    let good = std::fs::read(&col).unwrap();
    for at in 0..64 {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        std::fs::write(&col, &bad).unwrap();
        match Database::open(tmp.path(), options()) {
            Err(Error::Corrupted { file, .. }) => assert_eq!(file, col, "byte {at}"),
            other => panic!("flip at header byte {at}: {other:?}"),
        }
    }
}

#[test]
fn truncated_column_file_is_refused_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let col = sealed_db(tmp.path());
    let bytes = std::fs::read(&col).unwrap();
    std::fs::write(&col, &bytes[..bytes.len() - 8]).unwrap();
    assert_corrupted_naming(Database::open(tmp.path(), options()), &col);
    std::fs::write(&col, &bytes[..30]).unwrap();
    assert_corrupted_naming(Database::open(tmp.path(), options()), &col);
}

#[test]
fn column_file_with_garbage_appended_is_refused_at_open() {
    let tmp = tempfile::tempdir().unwrap();
    let col = sealed_db(tmp.path());
    let mut bytes = std::fs::read(&col).unwrap();
    bytes.extend_from_slice(b"garbage");
    std::fs::write(&col, &bytes).unwrap();
    assert_corrupted_naming(Database::open(tmp.path(), options()), &col);
}

#[test]
fn missing_column_file_is_reported_as_corruption() {
    let tmp = tempfile::tempdir().unwrap();
    let col = sealed_db(tmp.path());
    std::fs::remove_file(&col).unwrap();
    assert_corrupted_naming(Database::open(tmp.path(), options()), &col);
}

#[test]
fn newer_column_format_version_is_reported_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    let col = sealed_db(tmp.path());
    let mut bytes = std::fs::read(&col).unwrap();
    bytes[8..12].copy_from_slice(&2u32.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&col, &bytes).unwrap();
    match Database::open(tmp.path(), options()) {
        Err(Error::UnsupportedVersion {
            file,
            found: 2,
            supported: 1,
        }) => assert_eq!(file, col),
        other => panic!("expected a version error, got {other:?}"),
    }
}

#[test]
fn newer_manifest_format_version_is_reported_as_such() {
    let tmp = tempfile::tempdir().unwrap();
    drop(Database::open(tmp.path(), options()).unwrap());
    let manifest = tmp.path().join("quiver.redb");
    {
        let db = redb::Database::open(&manifest).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let table: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("config");
            let mut config = tx.open_table(table).unwrap();
            config.insert("format_version", 9).unwrap();
        }
        tx.commit().unwrap();
    }
    match Database::open(tmp.path(), options()) {
        Err(Error::UnsupportedVersion { file, found: 9, .. }) => assert_eq!(file, manifest),
        other => panic!("expected a version error, got {other:?}"),
    }
}

/// Writes `key = value` into the `config` table of the manifest at `path`
/// through redb, leaving its `crc` entry as it was.
fn set_config(path: &Path, key: &str, value: u64) {
    let db = redb::Database::open(path).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let table: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("config");
        tx.open_table(table).unwrap().insert(key, value).unwrap();
    }
    tx.commit().unwrap();
}

/// Without the checksum a changed metric would be an options mismatch, or,
/// opened with the stored options, a database scored with the wrong metric.
#[test]
fn changed_config_value_fails_its_checksum() {
    let tmp = tempfile::tempdir().unwrap();
    sealed_db(tmp.path());
    let manifest = tmp.path().join("quiver.redb");
    set_config(&manifest, "metric", 1);
    assert_corrupted_naming(Database::open(tmp.path(), options()), &manifest);
    assert_corrupted_naming(Database::open_existing(tmp.path()), &manifest);
}

/// A version 2 damaged to 1 would skip every checksum; the `crc` entry that
/// version 1 never had gives it away.
#[test]
fn manifest_version_damaged_to_1_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    sealed_db(tmp.path());
    let manifest = tmp.path().join("quiver.redb");
    set_config(&manifest, "format_version", 1);
    assert_corrupted_naming(Database::open(tmp.path(), options()), &manifest);
}

#[test]
fn truncated_manifest_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    sealed_db(tmp.path());
    let manifest = tmp.path().join("quiver.redb");
    let bytes = std::fs::read(&manifest).unwrap();
    std::fs::write(&manifest, &bytes[..100]).unwrap();
    match Database::open(tmp.path(), options()) {
        Err(Error::Corrupted { file, .. }) | Err(Error::Io { path: file, .. }) => {
            assert_eq!(file, manifest)
        }
        other => panic!("expected the manifest to be refused, got {other:?}"),
    }
}

/// A damaged graph of the database `sealed_db` wrote: the open succeeds,
/// the graph is never searched (the error names the links file and says
/// what still works), while `get` and exact search read the intact vectors.
fn assert_graph_damage_is_contained(dir: &Path, links: &Path, case: &str) {
    let db = match Database::open(dir, options()) {
        Ok(db) => db,
        Err(Error::UnsupportedVersion { file, .. }) => {
            assert_eq!(file, links, "{case}");
            return;
        }
        Err(e) => panic!("{case}: a damaged graph made the vectors unreadable: {e:?}"),
    };
    match db.search(&[0.0; 4], 3) {
        Err(Error::Corrupted { file, what }) => {
            assert_eq!(file, links, "{case}");
            assert!(what.contains("quiver compact"), "{case}: {what}");
        }
        other => panic!("{case}: the damaged graph was searched: {other:?}"),
    }
    assert_corrupted_naming(db.verify(), links);
    for id in 0..16u64 {
        let want: Vec<f32> = (0..4).map(|d| (id * 4 + d) as f32).collect();
        assert_eq!(
            db.get(id).unwrap().unwrap().vector,
            want,
            "{case}: get({id})"
        );
    }
    let exact = db
        .search_with(&[0.0; 4], &SearchParams::new(3).exact(true))
        .unwrap();
    assert_eq!(
        exact.iter().map(|h| h.id).collect::<Vec<_>>(),
        [0, 1, 2],
        "{case}"
    );
}

#[test]
fn every_flipped_links_header_byte_leaves_the_vectors_readable() {
    let tmp = tempfile::tempdir().unwrap();
    sealed_db(tmp.path());
    let links = tmp.path().join("seg-0000000000000001.hnsw");
    let good = std::fs::read(&links).unwrap();
    for at in 0..128 {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        std::fs::write(&links, &bad).unwrap();
        assert_graph_damage_is_contained(tmp.path(), &links, &format!("links header byte {at}"));
    }
}

/// `compact` builds a damaged (or missing) graph again from the intact
/// column file, after which the database verifies and searches its graph.
#[test]
fn compact_rebuilds_a_damaged_or_missing_graph_from_the_vectors() {
    for missing in [false, true] {
        let tmp = tempfile::tempdir().unwrap();
        sealed_db(tmp.path());
        let links = tmp.path().join("seg-0000000000000001.hnsw");
        if missing {
            std::fs::remove_file(&links).unwrap();
        } else {
            flip(&links, 128 + 4);
        }
        assert_graph_damage_is_contained(tmp.path(), &links, &format!("missing {missing}"));
        let dry = quiver::compact(tmp.path(), &CompactOptions::new().dry_run(true)).unwrap();
        assert_eq!(
            dry.planned.len(),
            1,
            "the damaged graph is planned for a rebuild"
        );
        let report = quiver::compact(tmp.path(), &CompactOptions::new()).unwrap();
        assert_eq!((report.segments_after, report.rows_dropped), (1, 0));
        let db = Database::open(tmp.path(), options().verify_on_open(true)).unwrap();
        db.verify().unwrap();
        assert_eq!(db.len(), 16);
        let hits = db.search(&[0.0; 4], 3).unwrap();
        assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), [0, 1, 2]);
    }
}

/// A point lookup in redb cannot see a damaged key (the entry is just not
/// found) nor an intact entry read from a stale page: both are simulated here
/// with redb itself, and every lookup by id checks what the manifest says
/// against the files, so each is reported, never served.
#[test]
fn ids_entries_missing_or_stale_are_reported_not_served() {
    let ids: redb::TableDefinition<u64, (u64, u64, u32)> = redb::TableDefinition::new("ids");
    let tmp = tempfile::tempdir().unwrap();
    let manifest = tmp.path().join("quiver.redb");
    sealed_db(tmp.path());
    let old_9 = {
        let db = redb::Database::open(&manifest).unwrap();
        let tx = db.begin_read().unwrap();
        tx.open_table(ids).unwrap().get(9).unwrap().unwrap().value()
    };
    {
        let db = Database::open(tmp.path(), options()).unwrap();
        let mut w = db.writer().unwrap();
        for id in [9, 100, 101] {
            w.upsert(id, &[id as f32 + 0.5; 4], None).unwrap();
        }
        w.commit().unwrap();
    }
    {
        let db = redb::Database::open(&manifest).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut table = tx.open_table(ids).unwrap();
            table.remove(5).unwrap();
            table.remove(101).unwrap();
            table.insert(9, old_9).unwrap();
        }
        tx.commit().unwrap();
    }
    let db = Database::open(tmp.path(), options()).unwrap();
    for id in [5, 101, 9] {
        assert_corrupted_naming(db.get(id), &manifest);
        assert_corrupted_naming(db.snapshot().contains(id), &manifest);
    }
    assert_eq!(db.get(0).unwrap().unwrap().vector, [0.0, 1.0, 2.0, 3.0]);
    assert_eq!(db.get(100).unwrap().unwrap().vector, [100.5; 4]);
    assert!(db.get(999).unwrap().is_none());
    let mut w = db.writer().unwrap();
    w.upsert(5, &[1.0; 4], None).unwrap();
    assert_corrupted_naming(w.commit(), &manifest);
}

#[test]
fn flipped_links_byte_is_never_searched() {
    let tmp = tempfile::tempdir().unwrap();
    sealed_db(tmp.path());
    let links = tmp.path().join("seg-0000000000000001.hnsw");
    flip(&links, 128 + 4);
    let db = Database::open(tmp.path(), options()).unwrap();
    assert_corrupted_naming(db.search(&[0.0; 4], 3), &links);
    assert_corrupted_naming(db.verify(), &links);
    drop(db);
    assert_corrupted_naming(
        Database::open(tmp.path(), options().verify_on_open(true)).map(drop),
        &links,
    );
}

#[test]
fn missing_links_file_leaves_the_vectors_readable() {
    let tmp = tempfile::tempdir().unwrap();
    sealed_db(tmp.path());
    let links = tmp.path().join("seg-0000000000000001.hnsw");
    std::fs::remove_file(&links).unwrap();
    assert_graph_damage_is_contained(tmp.path(), &links, "missing links file");
}

// ---------------------------------------------------------------------------
// The damage sweep: every file kind, many kinds of damage, every answer checked.
//
// Each case damages one file of a small database (two sealed segments with
// upper graph levels, tombstones, growing rows and payloads), then opens it,
// runs `verify` and `check`, searches (graph and exact) and gets every id.
// Each call must either fail with a typed error naming a file the damage can
// explain, or give exactly the answers of the undamaged database. A case
// whose damage the format checks must be refused by `open` or `verify`; a
// case whose damage the format leaves unchecked must be harmless. Panics are
// caught and reported as failures. `--nocapture` shows the counts.

mod common;

use common::{panic_message, Rng};
use quiver::{Hit, Record};
use redb::{ReadableDatabase, ReadableTable};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// The `segments` table: (record, checksum) by segment id.
const SEGMENTS: redb::TableDefinition<u64, (&[u8], u32)> = redb::TableDefinition::new("segments");
const MANIFEST: &str = "quiver.redb";
const SWEEP_DIM: usize = 4;

/// A temporary directory in memory if the machine has one: the sweep opens
/// thousands of databases, and redb syncs at each close.
fn sweep_tempdir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(dir) = tempfile::tempdir_in(shm) {
            return dir;
        }
    }
    tempfile::tempdir().unwrap()
}

fn sweep_options() -> Options {
    Options::new(SWEEP_DIM, Metric::L2)
        .growing_threshold(40)
        .m(4)
        .ef_construction(32)
        .auto_merge(false)
}

/// What one vector id holds in the model: its vector and payload.
type Model = BTreeMap<u64, (Vec<f32>, Option<Vec<u8>>)>;

/// Everything the undamaged database answers, to compare damaged ones with.
#[derive(Debug, Clone, Default, PartialEq)]
struct Answers {
    len: usize,
    graph: Vec<Vec<Hit>>,
    exact: Vec<Vec<Hit>>,
    gets: Vec<(u64, Option<Record>)>,
}

/// A small database, its bytes, and a working copy the cases damage.
struct Fixture {
    _tmp: tempfile::TempDir,
    work: PathBuf,
    /// Every file of the database as the last commit left it.
    pristine: Vec<(String, Vec<u8>)>,
    queries: Vec<Vec<f32>>,
    /// Live ids, deleted ids and one never used, in that order.
    probe_ids: Vec<u64>,
    answers: Answers,
    /// Sealed segment ids.
    segments: Vec<u64>,
    /// Open with `Options::verify_on_open` (which also runs redb's integrity
    /// check over the manifest's pages).
    verify_on_open: bool,
}

impl Fixture {
    fn new() -> Fixture {
        let tmp = sweep_tempdir();
        let built = tmp.path().join("built");
        let mut rng = Rng::new(0x5eed);
        let mut model = Model::new();
        {
            let db = Database::open(&built, sweep_options()).unwrap();
            let mut w = db.writer().unwrap();
            // Two commits at the threshold seal segments 1 and 2; the third
            // leaves tombstones in both and rows in the growing segment.
            for ids in [0..48u64, 100..145] {
                for id in ids {
                    let v = rng.vector(SWEEP_DIM);
                    let payload = (id % 3 == 0).then(|| format!("payload {id}").into_bytes());
                    w.upsert(id, &v, payload.as_deref()).unwrap();
                    model.insert(id, (v, payload));
                }
                assert!(w.commit().unwrap().sealed.is_some());
            }
            for id in [0, 1, 2, 17, 30, 120] {
                w.delete(id).unwrap();
                model.remove(&id);
            }
            for id in [100, 101, 200, 201, 202, 203, 204, 205, 206, 207, 208] {
                let v = rng.vector(SWEEP_DIM);
                let payload = (id % 2 == 0).then(|| vec![id as u8; 3]);
                w.upsert(id, &v, payload.as_deref()).unwrap();
                model.insert(id, (v, payload));
            }
            assert!(w.commit().unwrap().sealed.is_none());
        }
        let mut pristine: Vec<(String, Vec<u8>)> = std::fs::read_dir(&built)
            .unwrap()
            .map(|e| {
                let e = e.unwrap();
                let name = e.file_name().to_string_lossy().into_owned();
                (name, std::fs::read(e.path()).unwrap())
            })
            .collect();
        pristine.sort();
        let segments: Vec<u64> = pristine
            .iter()
            .filter_map(|(n, _)| n.strip_suffix(".col"))
            .map(|n| u64::from_str_radix(&n["seg-".len()..], 16).unwrap())
            .collect();
        assert_eq!(segments, [1, 2]);

        let queries: Vec<Vec<f32>> = (0..4).map(|_| rng.vector(SWEEP_DIM)).collect();
        let mut probe_ids: Vec<u64> = model.keys().copied().collect();
        probe_ids.extend([0, 17, 120, 9_999]);
        let work = tmp.path().join("work");
        std::fs::create_dir(&work).unwrap();
        let mut fixture = Fixture {
            _tmp: tmp,
            work,
            pristine,
            queries,
            probe_ids,
            answers: Answers::default(),
            segments,
            verify_on_open: false,
        };
        fixture.reset();
        let db = Database::open(&fixture.work, sweep_options()).unwrap();
        db.verify().unwrap();
        assert!(db.check().is_empty());
        fixture.answers = fixture.ask(&db).unwrap();
        drop(db);

        // The undamaged answers are the model's.
        let a = &fixture.answers;
        assert_eq!(a.len, model.len());
        for (id, got) in &a.gets {
            let want = model.get(id).map(|(v, p)| Record {
                vector: v.clone(),
                payload: p.clone(),
            });
            assert_eq!(got, &want, "get({id})");
        }
        let rows: Vec<(u64, Vec<f32>)> = model.iter().map(|(id, r)| (*id, r.0.clone())).collect();
        for (q, hits) in fixture.queries.iter().zip(&a.exact) {
            let want: Vec<u64> = common::brute_force(Metric::L2, &rows, q, 20)
                .iter()
                .map(|h| h.0)
                .collect();
            assert_eq!(hits.iter().map(|h| h.id).collect::<Vec<_>>(), want);
        }
        fixture
    }

    fn path(&self, name: &str) -> PathBuf {
        self.work.join(name)
    }

    fn bytes(&self, name: &str) -> &[u8] {
        &self.pristine.iter().find(|(n, _)| n == name).unwrap().1
    }

    /// Makes the working copy the undamaged database again.
    fn reset(&self) {
        for entry in std::fs::read_dir(&self.work).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            if !self.pristine.iter().any(|(n, _)| *n == name) {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
        for (name, bytes) in &self.pristine {
            std::fs::write(self.work.join(name), bytes).unwrap();
        }
    }

    /// Writes `bytes` as the working copy's file `name`.
    fn damage(&self, name: &str, bytes: &[u8]) {
        std::fs::write(self.path(name), bytes).unwrap();
    }

    /// Every read the sweep compares; the first error stops it.
    fn ask(&self, db: &Database) -> quiver::Result<Answers> {
        let mut graph = Vec::new();
        let mut exact = Vec::new();
        for q in &self.queries {
            graph.push(db.search(q, 10)?);
            exact.push(db.search_with(q, &SearchParams::new(20).exact(true))?);
        }
        let gets = self
            .probe_ids
            .iter()
            .map(|&id| Ok((id, db.get(id)?)))
            .collect::<quiver::Result<_>>()?;
        Ok(Answers {
            len: db.len(),
            graph,
            exact,
            gets,
        })
    }

    /// Runs one case on the damaged working copy, then resets it.
    fn run(&self, case: &str, expect: Expect, blame: &Blame, tally: &mut Tally) {
        let outcome = catch_unwind(AssertUnwindSafe(|| self.judge(blame)));
        self.reset();
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(panic) => Err(format!("panicked: {}", panic_message(&*panic))),
        };
        tally.cases += 1;
        match (outcome, expect) {
            (Err(why), _) => tally.failures.push(format!("{case}: {why}")),
            (Ok(Outcome::Harmless), Expect::Refused) => tally.failures.push(format!(
                "{case}: damage the format checks went unnoticed (the answers were right)"
            )),
            (Ok(Outcome::Refused { .. }), Expect::Harmless) => tally
                .failures
                .push(format!("{case}: damage the format ignores was refused")),
            (
                Ok(Outcome::Refused {
                    by: Stage::Read, ..
                }),
                Expect::Refused,
            ) => tally.failures.push(format!(
                "{case}: verify passed, but reads found the damage it should have"
            )),
            (Ok(Outcome::Harmless), _) => tally.harmless += 1,
            (Ok(Outcome::Refused { by, named }), _) => {
                match by {
                    Stage::Open => tally.at_open += 1,
                    Stage::Verify => tally.by_verify += 1,
                    Stage::Read => tally.by_reads += 1,
                }
                *tally.named.entry(named).or_default() += 1;
            }
        }
    }

    /// Opens the working copy and checks every answer against the undamaged
    /// database's; `Err` describes a wrong answer or an unexpected error.
    fn judge(&self, blame: &Blame) -> Result<Outcome, String> {
        let refused = |call: &str, e: &Error| -> Result<String, String> {
            blame
                .names(e)
                .ok_or_else(|| format!("{call} returned an unexpected error: {e:?}"))
        };
        let options = sweep_options().verify_on_open(self.verify_on_open);
        let db = match Database::open(&self.work, options) {
            Ok(db) => db,
            Err(e) => {
                return Ok(Outcome::Refused {
                    by: Stage::Open,
                    named: refused("open", &e)?,
                })
            }
        };
        let verified = db.verify();
        let problems = db.check();
        if verified.is_ok() != problems.is_empty() {
            return Err(format!("verify {verified:?} but check {problems:?}"));
        }
        let mut verify_named: Option<String> = None;
        for e in verified.err().iter().chain(&problems) {
            let named = refused("verify or check", e)?;
            verify_named.get_or_insert(named);
        }
        // Each read on its own: an error is fine, a wrong answer is not.
        let a = &self.answers;
        let mut read_named: Option<String> = None;
        let mut compare = |call: String, got: quiver::Result<bool>| -> Result<(), String> {
            match got {
                Ok(true) => Ok(()),
                Ok(false) => Err(format!("{call} gave a wrong answer")),
                Err(e) => {
                    let named = refused(&call, &e)?;
                    read_named.get_or_insert(named);
                    Ok(())
                }
            }
        };
        compare("len".into(), Ok(db.len() == a.len))?;
        for (i, q) in self.queries.iter().enumerate() {
            compare(
                format!("search {i}"),
                db.search(q, 10).map(|h| h == a.graph[i]),
            )?;
            compare(
                format!("exact search {i}"),
                db.search_with(q, &SearchParams::new(20).exact(true))
                    .map(|h| h == a.exact[i]),
            )?;
        }
        for (id, want) in &a.gets {
            let got = db.get(*id);
            // The one answer a plain open can get wrong (RELIABILITY.md, "A
            // known limit"): a payload entry that vanished from redb's
            // structure reads as no payload. It must then be damage that
            // `verify` reports.
            let vanished_payload = matches!(
                (&got, want),
                (Ok(Some(g)), Some(w)) if g.vector == w.vector && g.payload.is_none() && w.payload.is_some()
            );
            if vanished_payload && verify_named.is_some() {
                continue;
            }
            let call = format!(
                "get({id}) (got {:?}, want {want:?})",
                got.as_ref().map(|r| r.as_ref().map(|r| &r.payload))
            );
            compare(call, got.map(|r| r == *want))?;
        }
        Ok(match (verify_named, read_named) {
            (Some(named), _) => Outcome::Refused {
                by: Stage::Verify,
                named,
            },
            (None, Some(named)) => Outcome::Refused {
                by: Stage::Read,
                named,
            },
            (None, None) => Outcome::Harmless,
        })
    }
}

/// What a case must end in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// The format checks these bytes: `open` or `verify` must refuse.
    Refused,
    /// The format ignores these bytes: every answer must be right.
    Harmless,
    /// Either (redb's own pages, whose free space nothing reads).
    Either,
}

#[derive(Debug)]
enum Outcome {
    /// A call failed; `named` is the file its error named.
    Refused { by: Stage, named: String },
    /// Everything succeeded with the undamaged answers.
    Harmless,
}

/// The first call that reported the damage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Open,
    /// `verify` and `check`.
    Verify,
    /// Only a search or a get, after `verify` passed.
    Read,
}

/// Which errors a case's damage can explain.
struct Blame {
    /// Files a `Corrupted` or `UnsupportedVersion` may name.
    files: Vec<PathBuf>,
    /// Whether other typed errors about the manifest are fine too (damage
    /// inside redb's pages can turn into an I/O error or a changed config).
    manifest_errors: bool,
}

impl Blame {
    fn file(path: PathBuf) -> Blame {
        Blame {
            files: vec![path],
            manifest_errors: false,
        }
    }

    /// The file name `e` names, if the damage explains `e`.
    fn names(&self, e: &Error) -> Option<String> {
        let name = |p: &PathBuf| p.file_name().unwrap().to_string_lossy().into_owned();
        match e {
            Error::Corrupted { file, .. } | Error::UnsupportedVersion { file, .. }
                if self.files.contains(file) =>
            {
                Some(name(file))
            }
            Error::Io { path, .. } if self.manifest_errors && path.ends_with(MANIFEST) => {
                Some(format!("{} (I/O error)", name(path)))
            }
            Error::OptionsMismatch { .. } if self.manifest_errors => {
                Some("options mismatch".into())
            }
            _ => None,
        }
    }
}

/// Outcomes of one class of damage.
#[derive(Debug, Default)]
struct Tally {
    cases: usize,
    at_open: usize,
    by_verify: usize,
    by_reads: usize,
    harmless: usize,
    /// How often each file (or error) was named by a refusal.
    named: BTreeMap<String, usize>,
    failures: Vec<String>,
}

impl Tally {
    fn summary(&self, what: &str) -> String {
        let mut s = format!(
            "{} {what}: {} refused at open, {} by verify",
            self.cases, self.at_open, self.by_verify
        );
        if self.by_reads > 0 {
            s += &format!(", {} only by reads", self.by_reads);
        }
        s += &format!(", {} harmless", self.harmless);
        if !self.failures.is_empty() {
            s += &format!(", {} FAILED", self.failures.len());
        }
        s
    }
}

/// Prints one line per file kind and fails with every failure found.
fn report(kind: &str, parts: &[(&str, &Tally)]) {
    let line: Vec<String> = parts.iter().map(|(what, t)| t.summary(what)).collect();
    eprintln!("{kind}: {}", line.join("; "));
    let mut named = BTreeMap::<&str, usize>::new();
    for (_, t) in parts {
        for (file, n) in &t.named {
            *named.entry(file).or_default() += n;
        }
    }
    eprintln!("{kind}: refusals named {named:?}");
    let failures: Vec<&String> = parts.iter().flat_map(|(_, t)| &t.failures).collect();
    assert!(
        failures.is_empty(),
        "{kind}: {} cases failed; the first ones:\n{}",
        failures.len(),
        failures
            .iter()
            .take(20)
            .map(|s| s.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Non-zero xor masks: a low bit, a high bit, every bit.
const MASKS: [u8; 3] = [0x01, 0x80, 0xff];

/// Flips each header byte of `name` with each mask.
fn sweep_header(fx: &Fixture, name: &str, header_len: usize, tally: &mut Tally) {
    let good = fx.bytes(name).to_vec();
    for at in 0..header_len {
        for mask in MASKS {
            flip_refused(fx, name, &good, at, mask, "header byte", tally);
        }
    }
}

/// Flips `count` seeded random bytes of `name` inside `region`, one per case.
fn sweep_region(
    fx: &Fixture,
    name: &str,
    region: std::ops::Range<usize>,
    count: usize,
    rng: &mut Rng,
    tally: &mut Tally,
) {
    assert!(!region.is_empty(), "{name}: empty region");
    let good = fx.bytes(name).to_vec();
    for _ in 0..count {
        let at = region.start + rng.below(region.len() as u64) as usize;
        let mask = (rng.below(255) + 1) as u8;
        flip_refused(fx, name, &good, at, mask, "byte", tally);
    }
}

/// One case: `name` as `good` with byte `at` xored with `mask`, which must be
/// refused naming `name`.
fn flip_refused(
    fx: &Fixture,
    name: &str,
    good: &[u8],
    at: usize,
    mask: u8,
    what: &str,
    tally: &mut Tally,
) {
    let mut bad = good.to_vec();
    bad[at] ^= mask;
    fx.damage(name, &bad);
    let case = format!("{name} {what} {at} ^ {mask:#04x}");
    fx.run(&case, Expect::Refused, &Blame::file(fx.path(name)), tally);
}

/// Cuts `name` at each length, then appends each kind of garbage to it.
fn sweep_length(
    fx: &Fixture,
    name: &str,
    lengths: &[usize],
    expect: Expect,
    blame: &Blame,
    truncations: &mut Tally,
    appends: &mut Tally,
) {
    let good = fx.bytes(name).to_vec();
    for &len in lengths {
        assert!(len < good.len());
        fx.damage(name, &good[..len]);
        fx.run(&format!("{name} cut to {len}"), expect, blame, truncations);
    }
    let mut rng = Rng::new(7);
    let garbage: [Vec<u8>; 5] = [
        vec![0],
        b"garbage!".to_vec(),
        vec![0; 64],
        (0..4096).map(|_| rng.next_u64() as u8).collect(),
        good.clone(),
    ];
    for tail in garbage {
        let mut bad = good.clone();
        bad.extend_from_slice(&tail);
        fx.damage(name, &bad);
        let case = format!("{name} with {} bytes appended", tail.len());
        fx.run(&case, expect, blame, appends);
    }
}

fn column_name(segment: u64) -> String {
    format!("seg-{segment:016x}.col")
}

fn links_name(segment: u64) -> String {
    format!("seg-{segment:016x}.hnsw")
}

fn le_u64(b: &[u8], at: usize) -> usize {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize
}

#[test]
fn damaged_column_files_are_never_served() {
    let fx = Fixture::new();
    let (mut header, mut vectors, mut ids) = Default::default();
    let (mut cut, mut appended) = Default::default();
    let mut rng = Rng::new(0xc01);
    for &segment in &fx.segments {
        let name = column_name(segment);
        sweep_header(&fx, &name, 64, &mut header);
        let bytes = fx.bytes(&name);
        let ids_at = le_u64(bytes, 40);
        let len = bytes.len();
        sweep_region(&fx, &name, 64..ids_at, 150, &mut rng, &mut vectors);
        sweep_region(&fx, &name, ids_at..len, 100, &mut rng, &mut ids);
        let lengths = [0, 1, 8, 63, 64, 65, ids_at, len / 2, len - 8, len - 1];
        let blame = Blame::file(fx.path(&name));
        sweep_length(
            &fx,
            &name,
            &lengths,
            Expect::Refused,
            &blame,
            &mut cut,
            &mut appended,
        );
    }
    report(
        "column",
        &[
            ("header flips", &header),
            ("vector-region flips", &vectors),
            ("id-region flips", &ids),
            ("truncations", &cut),
            ("appends", &appended),
        ],
    );
}

#[test]
fn damaged_links_files_are_never_searched() {
    let fx = Fixture::new();
    let (mut header, mut level0, mut index, mut upper, mut padding) = Default::default();
    let (mut cut, mut appended) = Default::default();
    let mut rng = Rng::new(0x11c);
    for &segment in &fx.segments {
        let name = links_name(segment);
        sweep_header(&fx, &name, 128, &mut header);
        let b = fx.bytes(&name);
        let len = b.len();
        let level0_end = 128 + le_u64(b, 48);
        let (index_at, index_len) = (le_u64(b, 56), le_u64(b, 64));
        let links_at = le_u64(b, 72);
        assert_eq!(links_at + le_u64(b, 80), len);
        assert!(index_len > 0, "{name} should have upper levels");
        sweep_region(&fx, &name, 128..level0_end, 125, &mut rng, &mut level0);
        sweep_region(
            &fx,
            &name,
            index_at..index_at + index_len,
            50,
            &mut rng,
            &mut index,
        );
        sweep_region(&fx, &name, links_at..len, 75, &mut rng, &mut upper);
        for gap in [level0_end..index_at, index_at + index_len..links_at] {
            if !gap.is_empty() {
                sweep_region(&fx, &name, gap, 10, &mut rng, &mut padding);
            }
        }
        let lengths = [
            0,
            1,
            8,
            127,
            128,
            129,
            level0_end,
            links_at,
            len - 4,
            len - 1,
        ];
        let blame = Blame::file(fx.path(&name));
        sweep_length(
            &fx,
            &name,
            &lengths,
            Expect::Refused,
            &blame,
            &mut cut,
            &mut appended,
        );
    }
    report(
        "links",
        &[
            ("header flips", &header),
            ("level-0 flips", &level0),
            ("upper-index flips", &index),
            ("upper-links flips", &upper),
            ("padding flips", &padding),
            ("truncations", &cut),
            ("appends", &appended),
        ],
    );
}

/// Rewrites the `segments` record of `segment` in the working copy's
/// manifest through redb, as `edit` changes it, keeping its old checksum.
fn rewrite_record(fx: &Fixture, segment: u64, edit: impl FnOnce(&mut Vec<u8>)) {
    let db = redb::Database::open(fx.path(MANIFEST)).unwrap();
    let tx = db.begin_write().unwrap();
    {
        let mut table = tx.open_table(SEGMENTS).unwrap();
        let (mut record, crc) = {
            let found = table.get(segment).unwrap().unwrap();
            let (record, crc) = found.value();
            (record.to_vec(), crc)
        };
        edit(&mut record);
        table.insert(segment, (record.as_slice(), crc)).unwrap();
    }
    tx.commit().unwrap();
}

/// Every byte of a record is covered by its checksum, `ef_construction`
/// (which nothing else checks) included.
#[test]
fn damaged_segment_records_are_refused() {
    let fx = Fixture::new();
    let (mut flipped, mut resized) = Default::default();
    let blame = Blame::file(fx.path(MANIFEST));
    for &segment in &fx.segments {
        for at in 0..37 {
            for mask in MASKS {
                rewrite_record(&fx, segment, |r| r[at] ^= mask);
                let case = format!("segment {segment} record byte {at} ^ {mask:#04x}");
                fx.run(&case, Expect::Refused, &blame, &mut flipped);
            }
        }
        for len in [0, 1, 17, 36, 38, 64] {
            rewrite_record(&fx, segment, |r| r.resize(len, 0));
            let case = format!("segment {segment} record of {len} bytes");
            fx.run(&case, Expect::Refused, &blame, &mut resized);
        }
    }
    report(
        "manifest record",
        &[("flipped bytes", &flipped), ("resized records", &resized)],
    );
}

#[test]
fn lock_file_contents_do_not_matter() {
    let fx = Fixture::new();
    let mut tally = Tally::default();
    let mut rng = Rng::new(0x10c);
    let blame = Blame::file(fx.path("LOCK"));
    for len in [1, 7, 64, 4096, 1 << 20] {
        let garbage: Vec<u8> = (0..len).map(|_| rng.next_u64() as u8).collect();
        fx.damage("LOCK", &garbage);
        fx.run(
            &format!("LOCK of {len} random bytes"),
            Expect::Harmless,
            &blame,
            &mut tally,
        );
    }
    fx.damage("LOCK", fx.bytes(MANIFEST));
    fx.run(
        "LOCK holding a manifest",
        Expect::Harmless,
        &blame,
        &mut tally,
    );
    std::fs::remove_file(fx.path("LOCK")).unwrap();
    fx.run("LOCK missing", Expect::Harmless, &blame, &mut tally);
    report("lock", &[("garbage LOCK files", &tally)]);
}

/// What damage inside redb can explain: a `Corrupted` naming the manifest,
/// or naming a segment file whose record no longer matches it, an I/O error
/// on the manifest, or a changed config.
fn manifest_blame(fx: &Fixture) -> Blame {
    let mut files = vec![fx.path(MANIFEST)];
    for &segment in &fx.segments {
        files.push(fx.path(&column_name(segment)));
        files.push(fx.path(&links_name(segment)));
    }
    Blame {
        files,
        manifest_errors: true,
    }
}

/// Flips 400 seeded bytes of the manifest, one per case, half anywhere in
/// the file (mostly free space), half in its non-zero bytes (headers and live
/// pages): each must give the right answers or an error naming the damage.
fn sweep_manifest_flips(fx: &Fixture, kind: &str) {
    let (mut anywhere, mut used) = Default::default();
    let blame = manifest_blame(fx);
    let good = fx.bytes(MANIFEST).to_vec();
    let mut rng = Rng::new(0x4edb);
    let non_zero: Vec<usize> = (0..good.len()).filter(|&i| good[i] != 0).collect();
    for i in 0..400 {
        let at = if i % 2 == 0 {
            rng.below(good.len() as u64) as usize
        } else {
            non_zero[rng.below(non_zero.len() as u64) as usize]
        };
        let mask = (rng.below(255) + 1) as u8;
        let mut bad = good.clone();
        bad[at] ^= mask;
        fx.damage(MANIFEST, &bad);
        let tally = if i % 2 == 0 { &mut anywhere } else { &mut used };
        let case = format!("{MANIFEST} byte {at} ^ {mask:#04x}");
        fx.run(&case, Expect::Either, &blame, tally);
    }
    report(
        kind,
        &[
            ("flips anywhere", &anywhere),
            ("flips of non-zero bytes", &used),
        ],
    );
}

/// With `verify_on_open`, redb's integrity check runs over every page first.
#[test]
fn damaged_manifest_file_gives_right_answers_or_an_error_when_verified_on_open() {
    let mut fx = Fixture::new();
    fx.verify_on_open = true;
    sweep_manifest_flips(&fx, "manifest file, verified on open");
}

/// Without it, the entry checksums (and `guarded`, for redb's panics) are
/// what stands between a damaged page and a wrong answer.
#[test]
fn damaged_manifest_file_gives_right_answers_or_an_error_without_verify_on_open() {
    sweep_manifest_flips(&Fixture::new(), "manifest file");
}

#[test]
fn truncated_or_extended_manifest_is_refused_or_harmless() {
    let fx = Fixture::new();
    let (mut cut, mut appended) = Default::default();
    let len = fx.bytes(MANIFEST).len();
    // Zero bytes is left to `zero_length_manifest_beside_segment_files_is_refused`.
    let lengths = [1, 100, 511, 512, 4096, len / 2, len - 4096, len - 1];
    let blame = manifest_blame(&fx);
    sweep_length(
        &fx,
        MANIFEST,
        &lengths,
        Expect::Either,
        &blame,
        &mut cut,
        &mut appended,
    );
    report(
        "manifest length",
        &[("truncations", &cut), ("appends", &appended)],
    );
}

#[test]
fn zero_length_manifest_beside_segment_files_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let col = sealed_db(tmp.path());
    let manifest = tmp.path().join(MANIFEST);
    std::fs::write(&manifest, b"").unwrap();
    let opened = Database::open(tmp.path(), options()).map(|db| db.len());
    let column_file_left = col.exists();
    match opened {
        Err(Error::Corrupted { file, .. }) => assert_eq!(file, manifest),
        other => panic!(
            "expected the empty manifest to be refused, got {other:?} \
             (column file still there: {column_file_left})"
        ),
    }
    assert!(column_file_left, "open deleted the column file");
}

/// Every offset where `needle` occurs in `haystack`.
fn find_all(haystack: &[u8], needle: &[u8]) -> Vec<usize> {
    (0..=haystack.len() - needle.len())
        .filter(|&i| haystack[i..].starts_with(needle))
        .collect()
}

#[test]
fn flipped_byte_in_a_manifest_page_is_refused_by_verify_on_open() {
    let vector = [1.5f32, -2.25, 3.125, 0.5];
    let payload = b"the payload of id 42".to_vec();
    let vector_bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut served = Vec::new();
    // The payload's first byte, and the sign byte of the vector's first value:
    // both rows live in the growing segment, inside redb pages.
    for (what, needle, offset) in [
        ("payload", payload.clone(), 0),
        ("growing vector", vector_bytes, 3),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        {
            let db = Database::open(tmp.path(), options()).unwrap();
            let mut w = db.writer().unwrap();
            w.upsert(42, &vector, Some(&payload)).unwrap();
            w.commit().unwrap();
        }
        let manifest = tmp.path().join(MANIFEST);
        let mut bytes = std::fs::read(&manifest).unwrap();
        let found = find_all(&bytes, &needle);
        assert!(!found.is_empty(), "the {what} is not in the manifest");
        for at in found {
            bytes[at + offset] ^= 0x80;
        }
        std::fs::write(&manifest, &bytes).unwrap();
        let db = match Database::open(tmp.path(), options().verify_on_open(true)) {
            Ok(db) => db,
            Err(Error::Corrupted { file, .. }) if file == manifest => continue,
            Err(e) => panic!("{what}: open failed with {e:?}"),
        };
        match db.get(42) {
            Err(Error::Corrupted { file, .. }) => assert_eq!(file, manifest, "{what}"),
            Ok(Some(r)) if r.vector == vector && r.payload == Some(payload.clone()) => {}
            other => served.push(format!(
                "{what}: get(42) gave {other:?}; verify says {:?}",
                db.verify()
            )),
        }
    }
    assert!(served.is_empty(), "{}", served.join("\n"));
}

#[test]
fn damaged_manifest_page_type_byte_never_panics() {
    let fx = Fixture::new();
    let good = fx.bytes(MANIFEST).to_vec();
    let mut panics = Vec::new();
    let pages = good.len() / 4096;
    for page in 0..pages {
        let at = page * 4096;
        if good[at..at + 4096].iter().all(|&b| b == 0) {
            continue;
        }
        let mut bad = good.clone();
        bad[at] ^= 0xff;
        fx.damage(MANIFEST, &bad);
        let ran = catch_unwind(AssertUnwindSafe(|| {
            if let Ok(db) = Database::open(&fx.work, sweep_options()) {
                let _ = db.verify();
                let _ = db.check();
                let _ = fx.ask(&db);
            }
        }));
        fx.reset();
        if let Err(panic) = ran {
            panics.push(format!("page {page}: {}", panic_message(&*panic)));
        }
    }
    assert!(
        panics.is_empty(),
        "{} of {pages} pages panicked:\n{}",
        panics.len(),
        panics.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Manifest entries carry checksums of their own (manifest version 2): a byte
// flipped inside a stored value, in the file itself, is reported, never served.

/// A database of one sealed segment (ids 0..16) and one growing row, id 42,
/// with a payload; returns the manifest's path.
fn db_with_growing_row(dir: &Path, vector: &[f32], payload: &[u8]) -> PathBuf {
    sealed_db(dir);
    let db = Database::open(dir, options()).unwrap();
    let mut w = db.writer().unwrap();
    w.upsert(42, vector, Some(payload)).unwrap();
    w.commit().unwrap();
    dir.join(MANIFEST)
}

/// Xors `mask` into byte `offset` of every copy of `needle` in `path`
/// (redb's free pages may hold older copies); returns how many it found.
fn flip_every_copy(path: &Path, needle: &[u8], offset: usize, mask: u8) -> usize {
    let mut bytes = std::fs::read(path).unwrap();
    let found = find_all(&bytes, needle);
    for &at in &found {
        bytes[at + offset] ^= mask;
    }
    std::fs::write(path, &bytes).unwrap();
    found.len()
}

#[test]
fn flipped_payload_byte_in_the_manifest_is_reported_by_get_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    let vector = [1.5f32, -2.25, 3.125, 0.5];
    let payload = b"the payload of id 42";
    let manifest = db_with_growing_row(tmp.path(), &vector, payload);
    assert!(flip_every_copy(&manifest, payload, 4, 0x01) > 0);
    // Payloads are not read at open: the damage shows at the first read.
    let db = Database::open(tmp.path(), options()).unwrap();
    assert_corrupted_naming(db.get(42), &manifest);
    assert_corrupted_naming(db.verify(), &manifest);
    let problems = db.check();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0].to_string().contains("payload of id 42"),
        "{}",
        problems[0]
    );
    // The vector is undamaged and still found.
    assert_eq!(db.search(&vector, 1).unwrap()[0].id, 42);
}

#[test]
fn flipped_growing_vector_byte_in_the_manifest_fails_open() {
    let tmp = tempfile::tempdir().unwrap();
    let vector = [1.5f32, -2.25, 3.125, 0.5];
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    let manifest = db_with_growing_row(tmp.path(), &vector, b"p");
    // The sign of the first value: without a checksum, a vector that still
    // decodes, and a search that would serve it.
    assert!(flip_every_copy(&manifest, &bytes, 3, 0x80) > 0);
    assert_corrupted_naming(Database::open(tmp.path(), options()), &manifest);
    // Both redb's page checksums and the row's own fail.
    let report = quiver::verify(tmp.path()).unwrap();
    for e in &report.problems {
        assert!(
            matches!(e, Error::Corrupted { file, .. } if *file == manifest),
            "{e:?}"
        );
    }
    assert!(
        report
            .problems
            .iter()
            .any(|e| e.to_string().contains("growing row 0")),
        "{:?}",
        report.problems
    );
}

/// The `ids` entry of id 42, (segment 0, growing row 0, crc): the key is
/// bound into the checksum, so a location flipped to another row is refused.
#[test]
fn flipped_location_in_the_manifest_is_reported_by_get() {
    let tmp = tempfile::tempdir().unwrap();
    let manifest = db_with_growing_row(tmp.path(), &[1.0, 2.0, 3.0, 4.0], b"p");
    let ids: redb::TableDefinition<u64, (u64, u64, u32)> = redb::TableDefinition::new("ids");
    let (segment, row, crc) = {
        let db = redb::Database::open(&manifest).unwrap();
        let tx = redb::ReadableDatabase::begin_read(&db).unwrap();
        let table = tx.open_table(ids).unwrap();
        let value = redb::ReadableTable::get(&table, 5)
            .unwrap()
            .unwrap()
            .value();
        value
    };
    assert_eq!((segment, row), (1, 5));
    let mut needle = Vec::new();
    needle.extend(segment.to_le_bytes());
    needle.extend(row.to_le_bytes());
    needle.extend(crc.to_le_bytes());
    // Row 5 becomes row 4: a row that exists and holds another id.
    assert!(flip_every_copy(&manifest, &needle, 8, 0x01) > 0);
    let db = Database::open(tmp.path(), options()).unwrap();
    assert_corrupted_naming(db.get(5), &manifest);
    assert_corrupted_naming(db.verify(), &manifest);
    assert_eq!(db.get(4).unwrap().unwrap().vector, [16.0, 17.0, 18.0, 19.0]);
}

/// A merge of segment 1 (16 rows, kept) and segment 2 (8 rows) leaves the
/// alias 1 → 3, through which the `ids` entries of ids 0..16 are resolved: a
/// flipped alias is reported wherever it is read, never followed.
#[test]
fn flipped_alias_in_the_manifest_is_reported_by_get_and_verify() {
    let tmp = tempfile::tempdir().unwrap();
    sealed_db(tmp.path());
    let manifest = tmp.path().join(MANIFEST);
    {
        let db = Database::open(tmp.path(), options()).unwrap();
        let mut w = db.writer().unwrap();
        let ids: Vec<u64> = (100..108).collect();
        w.upsert_batch(&ids, &[0.5; 32], None).unwrap();
        w.commit().unwrap();
        drop(w);
        assert_eq!(db.merge_pending().unwrap(), 1);
    }
    let aliases: redb::TableDefinition<u64, (u64, u32)> = redb::TableDefinition::new("aliases");
    let (to, crc) = {
        let db = redb::Database::open(&manifest).unwrap();
        let tx = redb::ReadableDatabase::begin_read(&db).unwrap();
        let table = tx.open_table(aliases).unwrap();
        let value = redb::ReadableTable::get(&table, 1)
            .unwrap()
            .unwrap()
            .value();
        value
    };
    assert_eq!(to, 3);
    let mut needle = Vec::new();
    needle.extend(to.to_le_bytes());
    needle.extend(crc.to_le_bytes());
    // Segment 3 becomes segment 2, a retired one.
    assert!(flip_every_copy(&manifest, &needle, 0, 0x01) > 0);
    let db = Database::open(tmp.path(), options()).unwrap();
    assert_corrupted_naming(db.get(5), &manifest);
    assert_corrupted_naming(db.verify(), &manifest);
    assert!(
        db.check()
            .iter()
            .any(|p| p.to_string().contains("alias of segment 1")),
        "{:?}",
        db.check()
    );
    // Ids whose entries were rewritten by the merge are still served.
    assert_eq!(db.get(100).unwrap().unwrap().vector, [0.5; 4]);
}

/// A tombstone's key flipped to another row would bring a deleted row back
/// and delete a live one; its checksum covers the key.
#[test]
fn flipped_tombstone_in_the_manifest_fails_open() {
    let tmp = tempfile::tempdir().unwrap();
    sealed_db(tmp.path());
    {
        let db = Database::open(tmp.path(), options()).unwrap();
        let mut w = db.writer().unwrap();
        w.delete(9).unwrap();
        w.commit().unwrap();
    }
    let manifest = tmp.path().join(MANIFEST);
    let tombstones: redb::TableDefinition<(u64, u64), u32> =
        redb::TableDefinition::new("tombstones");
    let crc = {
        let db = redb::Database::open(&manifest).unwrap();
        let tx = redb::ReadableDatabase::begin_read(&db).unwrap();
        let table = tx.open_table(tombstones).unwrap();
        let crc = redb::ReadableTable::get(&table, (1, 9))
            .unwrap()
            .unwrap()
            .value();
        crc
    };
    let mut needle = Vec::new();
    needle.extend(1u64.to_le_bytes());
    needle.extend(9u64.to_le_bytes());
    needle.extend(crc.to_le_bytes());
    assert!(flip_every_copy(&manifest, &needle, 8, 0x02) > 0);
    assert_corrupted_naming(Database::open(tmp.path(), options()), &manifest);
}

/// `verify` goes on after the first damage: one report names the damaged
/// column header of segment 1, its links file, both regions of segment 2's
/// column file and a damaged payload in the manifest.
#[test]
fn verify_names_every_damaged_file_and_region_in_one_run() {
    let fx = Fixture::new();
    let col1 = fx.path(&column_name(1));
    let links1 = fx.path(&links_name(1));
    let col2 = fx.path(&column_name(2));
    let manifest = fx.path(MANIFEST);
    flip(&col1, 20);
    flip(&links1, 128 + 4);
    let ids_at = le_u64(fx.bytes(&column_name(2)), 40);
    flip(&col2, 64 + 1);
    flip(&col2, ids_at + 1);
    assert!(flip_every_copy(&manifest, b"payload 3", 8, 0x01) > 0);

    let report = quiver::verify(&fx.work).unwrap();
    let named: Vec<(String, String)> = report
        .problems
        .iter()
        .map(|e| match e {
            Error::Corrupted { file, what } => (
                file.file_name().unwrap().to_string_lossy().into_owned(),
                what.clone(),
            ),
            other => panic!("unexpected problem {other:?}"),
        })
        .collect();
    let count = |file: &str, what: &str| {
        named
            .iter()
            .filter(|(f, w)| f == file && w.contains(what))
            .count()
    };
    // redb's page checksums fail too, and "payload 3" is in "payload 30" etc.
    assert!(count(MANIFEST, "payload of id 3 ") == 1, "{named:#?}");
    assert!(count(MANIFEST, "") > 1, "{named:#?}");
    assert_eq!(count(&column_name(1), ""), 1, "{named:#?}");
    assert_eq!(count(&column_name(1), "header"), 1, "{named:#?}");
    assert_eq!(count(&links_name(1), ""), 1, "{named:#?}");
    assert_eq!(count(&column_name(2), "vector data"), 1, "{named:#?}");
    assert_eq!(count(&column_name(2), "id column"), 1, "{named:#?}");
    assert_eq!(count(&links_name(2), ""), 0, "{named:#?}");
    assert_eq!(named.len(), count(MANIFEST, "") + 4, "{named:#?}");
    assert!(report.stats.is_none());
    // Damage kept it from opening, and it still holds no lock.
    assert!(Database::open(&fx.work, sweep_options()).is_err());
}

#[test]
fn verify_of_a_sound_database_reports_nothing() {
    let fx = Fixture::new();
    let report = quiver::verify(&fx.work).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.stats.unwrap().rows, fx.answers.len);
}

// ---------------------------------------------------------------------------
// Databases of manifest version 1 (`tests/fixtures/manifest-v1`, see its
// README) open, read and search as before, and are upgraded to the current
// version (`quiver::MANIFEST_VERSION`).

const V1_LIVE: usize = 254;

fn v1_vector(id: u64, version: u64) -> Vec<f32> {
    Rng::new(0xf1_7e_00 ^ (id << 8) ^ version).vector(8)
}

/// What the fixture holds for `id`, `None` for a deleted or unused id.
fn v1_record(id: u64) -> Option<Record> {
    let payload = |p: bool| p.then(|| format!("payload {id}").into_bytes());
    match id {
        5 | 10 | 15 | 150 | 1003 | 1004 => None,
        7 => Some(Record {
            vector: v1_vector(7, 1),
            payload: Some(b"payload 7, replaced".to_vec()),
        }),
        0..200 => Some(Record {
            vector: v1_vector(id, 0),
            payload: payload(id.is_multiple_of(3)),
        }),
        1000..1060 => Some(Record {
            vector: v1_vector(id, 0),
            payload: payload(id.is_multiple_of(2)),
        }),
        _ => None,
    }
}

/// The fixture copied to a temporary directory (opening it upgrades it).
fn v1_copy() -> tempfile::TempDir {
    fixture_copy("manifest-v1", 1)
}

/// `tests/fixtures/<name>`, whose one segment is `segment`, copied to a
/// temporary directory.
fn fixture_copy(name: &str, segment: u64) -> tempfile::TempDir {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name);
    let tmp = tempfile::tempdir().unwrap();
    for file in [MANIFEST, &column_name(segment), &links_name(segment)] {
        std::fs::copy(fixture.join(file), tmp.path().join(file)).unwrap();
    }
    tmp
}

fn manifest_version(dir: &Path) -> u64 {
    let config: redb::TableDefinition<&str, u64> = redb::TableDefinition::new("config");
    let db = redb::Database::open(dir.join(MANIFEST)).unwrap();
    let tx = redb::ReadableDatabase::begin_read(&db).unwrap();
    let table = tx.open_table(config).unwrap();
    let version = redb::ReadableTable::get(&table, "format_version")
        .unwrap()
        .unwrap()
        .value();
    version
}

fn v1_options() -> Options {
    Options::new(8, Metric::L2).auto_merge(false)
}

/// Every id's record and an exact and a graph search, against the fixture's
/// contents.
fn assert_holds_the_v1_rows(db: &Database) {
    assert_eq!(db.len(), V1_LIVE);
    let mut rows = Vec::new();
    for id in (0..1100).chain([9_999]) {
        let want = v1_record(id);
        assert_eq!(db.get(id).unwrap(), want, "get({id})");
        if let Some(r) = want {
            rows.push((id, r.vector));
        }
    }
    assert_eq!(rows.len(), V1_LIVE);
    let mut rng = Rng::new(0x71);
    for _ in 0..5 {
        let q = rng.vector(8);
        let want: Vec<u64> = common::brute_force(Metric::L2, &rows, &q, 10)
            .iter()
            .map(|h| h.0)
            .collect();
        let exact = db
            .search_with(&q, &SearchParams::new(10).exact(true))
            .unwrap();
        assert_eq!(exact.iter().map(|h| h.id).collect::<Vec<_>>(), want);
    }
    // The graph finds the stored vectors themselves, sealed and growing. An
    // HNSW graph built in parallel may leave a node no other node links to,
    // so this is a recall floor, not a promise for every row.
    let found = rows
        .iter()
        .filter(|(id, v)| {
            let top = db.search_with(v, &SearchParams::new(1).ef(64)).unwrap()[0];
            top.id == *id || top.distance == 0.0
        })
        .count();
    assert!(
        found * 10 >= rows.len() * 9,
        "the graph found {found} of {} stored vectors",
        rows.len()
    );
}

#[test]
fn manifest_v1_directory_is_read_in_full_and_upgraded_at_open() {
    let tmp = v1_copy();
    assert_eq!(manifest_version(tmp.path()), 1);
    {
        let db = Database::open(tmp.path(), v1_options()).unwrap();
        assert_holds_the_v1_rows(&db);
        db.verify().unwrap();
        // Segment 1's calibration record came through the upgrade.
        assert_eq!(db.merge_pending().unwrap(), 0);
    }
    assert_eq!(manifest_version(tmp.path()), quiver::MANIFEST_VERSION);
    // The upgraded directory reopens, takes commits, and verifies.
    let db = Database::open(tmp.path(), v1_options()).unwrap();
    assert_holds_the_v1_rows(&db);
    let mut w = db.writer().unwrap();
    w.delete(0).unwrap();
    w.upsert(5000, &[0.5; 8], Some(b"new")).unwrap();
    w.commit().unwrap();
    drop(w);
    drop(db);
    let db = Database::open(tmp.path(), v1_options()).unwrap();
    assert_eq!(db.len(), V1_LIVE);
    assert_eq!(db.get(0).unwrap(), None);
    assert_eq!(
        db.get(5000).unwrap().unwrap().payload.as_deref(),
        Some(&b"new"[..])
    );
    drop(db);
    let report = quiver::verify(tmp.path()).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}

#[test]
fn manifest_v1_directory_is_verified_once_a_writer_has_upgraded_it() {
    let tmp = v1_copy();
    // verify writes nothing: it says how to upgrade first.
    let before = std::fs::read(tmp.path().join(MANIFEST)).unwrap();
    match quiver::verify(tmp.path()) {
        Err(Error::ReadOnly { why, .. }) => {
            assert!(why.contains("open the database for writing once"), "{why}")
        }
        other => panic!("verify of a version-1 manifest: {other:?}"),
    }
    assert!(matches!(
        Database::open_read_only(tmp.path()),
        Err(Error::ReadOnly { .. })
    ));
    assert_eq!(std::fs::read(tmp.path().join(MANIFEST)).unwrap(), before);
    assert_eq!(manifest_version(tmp.path()), 1);
    let db = Database::open_existing(tmp.path()).unwrap();
    assert_eq!((db.dim(), db.metric()), (8, Metric::L2));
    assert_holds_the_v1_rows(&db);
    drop(db);
    assert_eq!(manifest_version(tmp.path()), quiver::MANIFEST_VERSION);
    let report = quiver::verify(tmp.path()).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(report.stats.unwrap().rows, V1_LIVE);
}

/// The upgrade is one redb transaction: a power cut at any sync point of the
/// open that upgrades leaves a directory that opens, upgraded or not yet, with
/// every row.
#[test]
fn manifest_v1_upgrade_survives_a_power_cut_at_every_sync_point() {
    use quiver::fs::{CrashKind, MemFs, Vfs};
    use std::sync::Arc;
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/manifest-v1");
    let dir = Path::new("/db");
    let fs = MemFs::new();
    fs.create_dir_all(dir).unwrap();
    for name in [MANIFEST, &column_name(1), &links_name(1)] {
        let file = fs.open(&dir.join(name), true).unwrap();
        file.write_at(0, &std::fs::read(fixture.join(name)).unwrap())
            .unwrap();
        file.sync().unwrap();
    }
    fs.sync_dir(dir).unwrap();
    fs.record_crash_images(true);
    drop(Database::open_with_vfs(Arc::new(fs.clone()), dir, v1_options()).unwrap());
    assert!(fs.sync_points() > 0);
    let mut images = 0;
    for kind in CrashKind::ALL {
        for seed in 0..3 {
            for (point, image) in fs.crash_images_with(kind, seed) {
                let db = Database::open_with_vfs(Arc::new(image), dir, v1_options())
                    .unwrap_or_else(|e| panic!("{kind:?} at sync point {point}: {e}"));
                assert_holds_the_v1_rows(&db);
                db.verify().unwrap();
                images += 1;
            }
        }
    }
    eprintln!("{images} crash images of the upgrade, every one whole");
}

// A database of manifest version 2 (`tests/fixtures/manifest-v2`: the rows of
// `manifest-v1`, its one segment a merge of two) reads without an upgrade, and a
// writer's open brings it to the current version.

#[test]
fn manifest_v2_directory_is_read_as_it_is_and_upgraded_by_a_writer() {
    let tmp = fixture_copy("manifest-v2", 3);
    assert_eq!(manifest_version(tmp.path()), 2);
    let before = std::fs::read(tmp.path().join(MANIFEST)).unwrap();
    {
        let db = Database::open_read_only(tmp.path()).unwrap();
        assert_holds_the_v1_rows(&db);
        db.verify().unwrap();
    }
    let report = quiver::verify(tmp.path()).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    assert_eq!(std::fs::read(tmp.path().join(MANIFEST)).unwrap(), before);
    {
        let db = Database::open(tmp.path(), v1_options()).unwrap();
        assert_holds_the_v1_rows(&db);
        db.verify().unwrap();
    }
    assert_eq!(manifest_version(tmp.path()), quiver::MANIFEST_VERSION);
    // The upgraded directory takes commits and merges, which now write
    // aliases, and holds every row through them.
    let db = Database::open(tmp.path(), v1_options().growing_threshold(32)).unwrap();
    let mut w = db.writer().unwrap();
    for id in 2000..2060u64 {
        w.upsert(id, &v1_vector(id, 0), None).unwrap();
    }
    assert!(w.commit().unwrap().sealed.is_some());
    drop(w);
    assert_eq!(db.merge_pending().unwrap(), 1);
    assert_eq!(db.stats().unwrap().segments, 1);
    assert_eq!(db.len(), V1_LIVE + 60);
    for id in 0..200 {
        assert_eq!(db.get(id).unwrap(), v1_record(id), "get({id})");
    }
    drop(db);
    let report = quiver::verify(tmp.path()).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}
