//! Read-only handles: they never write to the directory, work where they may
//! not write, and read beside a writer in another process, every answer
//! belonging to one committed state.
//!
//! Child processes are this test binary run again with an environment
//! variable naming their role, as in `tests/process_lock.rs`.

use quiver::{CompactOptions, Database, Error, Metric, Options, SearchParams};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

const DIM: usize = 4;

fn options() -> Options {
    Options::new(DIM, Metric::L2)
        .growing_threshold(8)
        .m(4)
        .ef_construction(16)
}

/// A closed database with sealed segments, tombstones, growing rows and
/// payloads.
fn existing_database(dir: &Path) {
    let db = Database::open(dir, options().auto_merge(false)).unwrap();
    let mut w = db.writer().unwrap();
    for id in 0..20u64 {
        w.upsert(id, &[id as f32, 1.0, 0.0, 0.0], Some(b"sealed"))
            .unwrap();
    }
    w.commit().unwrap();
    w.delete(3).unwrap();
    w.upsert(100, &[100.0, 1.0, 0.0, 0.0], Some(b"growing"))
        .unwrap();
    w.commit().unwrap();
}

/// Every entry under `dir`: its kind, length, mode, modification time and,
/// for a file, its bytes.
type Listing = BTreeMap<PathBuf, (bool, u64, u32, SystemTime, Vec<u8>)>;

fn listing(dir: &Path) -> Listing {
    let mut out = BTreeMap::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let bytes = if meta.is_file() {
            std::fs::read(&path).unwrap()
        } else {
            Vec::new()
        };
        out.insert(
            path,
            (
                meta.is_dir(),
                meta.len(),
                meta.mode(),
                meta.modified().unwrap(),
                bytes,
            ),
        );
    }
    out
}

/// What `quiver search`, `get`, `stats`, `verify` and `compact --dry-run`
/// do, through the library; returns what went wrong, if anything.
fn read_everything(dir: &Path) -> Result<(), String> {
    let e = |e: Error| e.to_string();
    let db = Database::open_read_only(dir).map_err(e)?;
    let hits = db.search(&[5.2, 1.0, 0.0, 0.0], 3).map_err(e)?;
    if hits[0].id != 5 {
        return Err(format!("nearest to 5.2 is {hits:?}"));
    }
    let got = db.get(100).map_err(e)?.ok_or("id 100 is missing")?;
    if got.payload.as_deref() != Some(&b"growing"[..]) {
        return Err(format!("id 100 reads {got:?}"));
    }
    if db.get(3).map_err(e)?.is_some() {
        return Err("deleted id 3 is back".into());
    }
    let stats = db.stats().map_err(e)?;
    if stats.rows != 20 || stats.segments == 0 {
        return Err(format!("stats {stats:?}"));
    }
    db.refresh().map_err(e)?;
    drop(db);
    let verified = Database::open_read_only_verified(dir).map_err(e)?;
    if let Some(problem) = verified.check().into_iter().next() {
        return Err(problem.to_string());
    }
    let plan = quiver::compact(dir, &CompactOptions::new().dry_run(true)).map_err(e)?;
    if plan.planned.is_empty() {
        return Err("the dry run planned nothing for a database with a tombstone".into());
    }
    Ok(())
}

#[test]
fn read_only_commands_leave_every_file_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    existing_database(&dir);
    // No lock file, and leftovers an open for writing would sweep away.
    std::fs::remove_file(dir.join("LOCK")).unwrap();
    std::fs::write(dir.join("seg-99.col.tmp"), b"half written").unwrap();
    std::fs::write(dir.join("seg-99.col"), b"never committed").unwrap();
    let before = listing(&dir);
    // Modification times have a coarse grain on some file systems.
    std::thread::sleep(Duration::from_millis(20));
    read_everything(&dir).unwrap();
    assert_eq!(listing(&dir), before);
}

#[test]
fn read_only_verify_finds_a_flipped_manifest_byte_and_changes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    existing_database(&dir);
    // A payload lives in a redb page, whose checksum only the integrity
    // check reads.
    let payload = b"the payload of id 42";
    let db = Database::open_existing(&dir).unwrap();
    let mut w = db.writer().unwrap();
    w.upsert(42, &[42.0, 1.0, 0.0, 0.0], Some(payload)).unwrap();
    w.commit().unwrap();
    drop((w, db));
    let manifest = dir.join("quiver.redb");
    let mut bytes = std::fs::read(&manifest).unwrap();
    let found: Vec<usize> = (0..bytes.len() - payload.len())
        .filter(|&i| bytes[i..].starts_with(payload))
        .collect();
    assert!(!found.is_empty(), "the payload is not in the manifest");
    for at in found {
        bytes[at] ^= 0x80;
    }
    std::fs::write(&manifest, &bytes).unwrap();
    let before = listing(&dir);
    match Database::open_read_only_verified(&dir) {
        Err(Error::Corrupted { file, .. }) => assert_eq!(file, manifest),
        other => panic!("expected the manifest to be reported, got {other:?}"),
    }
    // The check repairs only its copy in memory.
    assert_eq!(listing(&dir), before);
}

#[test]
fn read_only_verify_beside_a_committing_writer_reports_no_damage() {
    // The integrity check runs on a copy of the manifest, which the writer
    // changes while it is taken: a torn copy would look damaged.
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = Database::open(&dir, options()).unwrap();
    commit_generation(&db, 1);
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for g in 2..=COMMITS {
                commit_generation(&db, g);
            }
            done.store(true, std::sync::atomic::Ordering::Release);
        });
        let mut checks = 0;
        while !done.load(std::sync::atomic::Ordering::Acquire) || checks == 0 {
            let verified = Database::open_read_only_verified(&dir).unwrap();
            assert!(verified.check().is_empty());
            checks += 1;
        }
        assert!(checks > 1, "no check ran while the writer committed");
    });
}

#[test]
fn read_only_handle_takes_no_lock_and_lets_a_writer_open() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    existing_database(&dir);
    let reader = Database::open_read_only(&dir).unwrap();
    let db = Database::open_existing(&dir).unwrap();
    // A second writer is still refused, readers or not.
    assert!(matches!(
        Database::open_existing(&dir),
        Err(Error::WriterBusy { .. })
    ));
    let mut w = db.writer().unwrap();
    w.upsert(200, &[200.0, 1.0, 0.0, 0.0], None).unwrap();
    w.commit().unwrap();
    let also = Database::open_read_only(&dir).unwrap();
    assert_eq!((reader.len(), also.len()), (20, 21));
}

#[test]
fn writer_and_merges_are_refused_on_a_read_only_handle() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    existing_database(&dir);
    let db = Database::open_read_only(&dir).unwrap();
    match db.writer() {
        Err(Error::ReadOnly { path, why }) => {
            assert_eq!(path, dir);
            assert!(why.contains("Database::open"), "{why}");
        }
        other => panic!("expected Error::ReadOnly, got {other:?}"),
    }
    assert!(matches!(db.merge_pending(), Err(Error::ReadOnly { .. })));
    db.wait_for_merges();
    assert_eq!(db.merge_error(), None);
    assert_eq!((db.dim(), db.metric()), (DIM, Metric::L2));
}

#[test]
fn read_only_handle_reads_its_open_state_until_refresh() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = Database::open(&dir, options().auto_merge(false)).unwrap();
    let mut w = db.writer().unwrap();
    for id in 0..8u64 {
        w.upsert(id, &[id as f32, 0.0, 0.0, 0.0], Some(b"old"))
            .unwrap();
    }
    w.commit().unwrap();
    let reader = Database::open_read_only(&dir).unwrap();
    let old = reader.snapshot();
    // Replace every row: the old segment is retired and its files removed.
    for id in 0..8u64 {
        w.upsert(id, &[id as f32, 9.0, 0.0, 0.0], Some(b"new"))
            .unwrap();
    }
    w.commit().unwrap();
    assert_eq!(db.stats().unwrap().segments, 1);
    // The reader still reads the state of its open, from the files it maps.
    assert_eq!(reader.get(2).unwrap().unwrap().payload.unwrap(), b"old");
    assert_eq!(
        reader.search(&[2.0, 0.0, 0.0, 0.0], 1).unwrap()[0].distance,
        0.0
    );
    assert_eq!(reader.refresh().unwrap(), 2);
    assert_eq!(reader.get(2).unwrap().unwrap().payload.unwrap(), b"new");
    assert_eq!(
        reader.search(&[2.0, 9.0, 0.0, 0.0], 1).unwrap()[0].distance,
        0.0
    );
    // A snapshot taken before the refresh keeps its state.
    assert_eq!(old.get(2).unwrap().unwrap().payload.unwrap(), b"old");
    assert_eq!(old.generation(), 1);
    // Nothing new: the refresh stays where it is.
    assert_eq!(reader.refresh().unwrap(), 2);
}

#[test]
fn reader_of_a_directory_being_created_is_told_so_at_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let not_a_database = |dir: &Path| match Database::open_read_only(dir) {
        Err(Error::NotADatabase { why, .. }) => why,
        other => panic!("expected NotADatabase, got {other:?}"),
    };
    assert_eq!(not_a_database(&dir), "it does not exist");
    std::fs::create_dir(&dir).unwrap();
    // What a create leaves before its manifest is renamed into place.
    std::fs::write(dir.join("LOCK"), b"").unwrap();
    std::fs::write(dir.join("quiver.redb.tmp"), b"").unwrap();
    let started = Instant::now();
    assert!(not_a_database(&dir).contains("being created"));
    assert!(started.elapsed() < Duration::from_secs(5));
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 2);
}

// ---------------------------------------------------------------------------
// A writer that died with the manifest open.

const KILLED_WRITER_ENV: &str = "QUIVER_KILLED_WRITER_CHILD_DIR";

/// Child side: commit, then exit without closing anything.
#[test]
fn killed_writer_child() {
    let Ok(dir) = std::env::var(KILLED_WRITER_ENV) else {
        return;
    };
    let db = Database::open_existing(&dir).unwrap();
    let mut w = db.writer().unwrap();
    w.upsert(500, &[500.0, 1.0, 0.0, 0.0], None).unwrap();
    w.commit().unwrap();
    std::process::exit(0);
}

#[test]
fn reader_of_a_manifest_a_killed_writer_left_open_is_told_to_open_it_for_writing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    existing_database(&dir);
    let status = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "killed_writer_child", "--test-threads=1"])
        .env(KILLED_WRITER_ENV, &dir)
        .status()
        .unwrap();
    assert!(status.success());
    let before = listing(&dir);
    match Database::open_read_only(&dir) {
        Err(Error::ReadOnly { why, .. }) => {
            assert!(why.contains("open the database for writing once"), "{why}")
        }
        other => panic!("expected Error::ReadOnly, got {other:?}"),
    }
    assert_eq!(listing(&dir), before);
    // One open for writing repairs it; the commit survived.
    drop(Database::open_existing(&dir).unwrap());
    assert_eq!(Database::open_read_only(&dir).unwrap().len(), 21);
}

// ---------------------------------------------------------------------------
// A directory owned by another user, without write permission.

const OTHER_USER_ENV: &str = "QUIVER_READ_ONLY_CHILD_DIR";

/// Child side: read everything, as whatever user it runs as.
#[test]
fn read_only_child() {
    let Ok(dir) = std::env::var(OTHER_USER_ENV) else {
        return;
    };
    match read_everything(Path::new(&dir)) {
        Ok(()) => println!("outcome: ok"),
        Err(e) => println!("outcome: {e}"),
    }
}

fn set_mode_recursively(path: &Path, dir_mode: u32, file_mode: u32) {
    let meta = std::fs::metadata(path).unwrap();
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            set_mode_recursively(&entry.unwrap().path(), dir_mode, file_mode);
        }
    }
    let mode = if meta.is_dir() { dir_mode } else { file_mode };
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

/// A database directory under `tmp` that is read-only to the commands
/// [`as_another_user`] runs: every write bit cleared, and no `LOCK`. Returns
/// the directory and its listing.
fn read_only_database(tmp: &Path) -> (PathBuf, Listing) {
    let dir = tmp.join("db");
    existing_database(&dir);
    std::fs::remove_file(dir.join("LOCK")).unwrap();
    set_mode_recursively(&dir, 0o555, 0o444);
    std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    let before = listing(&dir);
    (dir, before)
}

/// Runs `command` as a user for whom the directory of
/// [`read_only_database`] is read-only: this one, or, since permission bits
/// do not stop root, `nobody`, for whom it also belongs to another user.
/// `nobody` may not reach the program where it was built (a checkout in a
/// private directory), so it runs a copy placed in `tmp`, which
/// [`read_only_database`] opened to everyone.
fn as_another_user(command: Command, tmp: &Path) -> std::process::Output {
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        let mut command = command;
        return command.output().unwrap();
    }
    let program = Path::new(command.get_program());
    let copy = tmp.join(program.file_name().unwrap());
    if !copy.exists() {
        std::fs::copy(program, &copy).unwrap();
    }
    let mut other = Command::new(&copy);
    other.args(command.get_args());
    for (key, value) in command.get_envs() {
        match value {
            Some(value) => other.env(key, value),
            None => other.env_remove(key),
        };
    }
    std::os::unix::process::CommandExt::uid(&mut other, 65534);
    std::os::unix::process::CommandExt::gid(&mut other, 65534);
    other.output().unwrap()
}

/// Gives the directory back its write bits (so that it can be removed), and
/// checks that nothing in it changed.
fn assert_unchanged(dir: &Path, before: &Listing) {
    set_mode_recursively(dir, 0o755, 0o644);
    let mut after = listing(dir);
    for entry in after.values_mut() {
        entry.2 = if entry.0 { 0o40555 } else { 0o100444 };
    }
    assert_eq!(&after, before);
}

#[test]
fn read_only_open_works_in_a_directory_of_another_user_without_write_permission() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, before) = read_only_database(tmp.path());
    let mut child = Command::new(std::env::current_exe().unwrap());
    child
        .args([
            "--exact",
            "read_only_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(OTHER_USER_ENV, &dir);
    let out = as_another_user(child, tmp.path());
    let outcome = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.split_once("outcome: ").map(|(_, o)| o.trim().to_owned()));
    assert_eq!(
        outcome.as_deref(),
        Some("ok"),
        "child stderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_unchanged(&dir, &before);
}

#[test]
fn quiver_read_only_commands_work_in_a_directory_of_another_user_and_change_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (dir, before) = read_only_database(tmp.path());
    let quiver = |args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_quiver"));
        command.args(args.iter().map(|a| a.replace("DIR", dir.to_str().unwrap())));
        as_another_user(command, tmp.path())
    };
    for args in [
        &["search", "DIR", "--vector", "5.2,1,0,0", "-k", "3"][..],
        &["get", "DIR", "100"],
        &["stats", "DIR"],
        &["verify", "DIR"],
        &["compact", "DIR", "--dry-run"],
    ] {
        let out = quiver(args);
        assert!(
            out.status.success(),
            "quiver {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // The directory really is read-only to that user: a command that writes fails.
    assert!(!quiver(&["delete", "DIR", "5"]).status.success());
    assert_unchanged(&dir, &before);
}

// ---------------------------------------------------------------------------
// Readers in other processes beside a writer that commits in a loop.
//
// Commit g upserts ids 0..ROWS with the vector (g, id, 0, 0) and the payload
// g, and adds a marker id MARKER + g with the vector (g, -1, 0, 0). So the
// state of generation g holds exactly ROWS + g ids, and every vector and
// payload in it says which state it belongs to.

const READER_ENV: &str = "QUIVER_READER_CHILD_DIR";
const ROWS: u64 = 12;
const MARKER: u64 = 1000;
const COMMITS: u64 = 60;

fn vector_at(g: u64, id: u64) -> [f32; DIM] {
    if id >= MARKER {
        [(id - MARKER) as f32, -1.0, 0.0, 0.0]
    } else {
        [g as f32, id as f32, 0.0, 0.0]
    }
}

fn commit_generation(db: &Database, g: u64) {
    let mut w = db.writer().unwrap();
    for id in 0..ROWS {
        w.upsert(id, &vector_at(g, id), Some(&g.to_le_bytes()))
            .unwrap();
    }
    w.upsert(MARKER + g, &vector_at(g, MARKER + g), None)
        .unwrap();
    assert_eq!(w.commit().unwrap().generation, g);
}

/// Checks that the snapshot's every answer belongs to its generation.
fn check_state(snap: &quiver::Snapshot) -> Result<u64, String> {
    let e = |e: Error| e.to_string();
    let g = snap.generation();
    if snap.len() as u64 != ROWS + g {
        return Err(format!("generation {g} holds {} ids", snap.len()));
    }
    for id in 0..ROWS {
        let rec = snap
            .get(id)
            .map_err(e)?
            .ok_or(format!("id {id} missing at {g}"))?;
        if rec.vector != vector_at(g, id) || rec.payload.as_deref() != Some(&g.to_le_bytes()[..]) {
            return Err(format!("id {id} at generation {g} reads {rec:?}"));
        }
    }
    if snap.get(MARKER + g + 1).map_err(e)?.is_some() || snap.get(MARKER + g).map_err(e)?.is_none()
    {
        return Err(format!("markers of generation {g} are wrong"));
    }
    let query = [g as f32, 3.0, 0.0, 0.0];
    let distance = |id: u64| -> f32 {
        let v = vector_at(g, id);
        query.iter().zip(v).map(|(a, b)| (a - b) * (a - b)).sum()
    };
    let exact = snap
        .search_with(&query, &SearchParams::new(3).exact(true))
        .map_err(e)?;
    let ids: BTreeSet<u64> = exact.iter().map(|h| h.id).collect();
    if ids != BTreeSet::from([2, 3, 4]) {
        return Err(format!("exact search at generation {g} found {exact:?}"));
    }
    for hit in snap.search(&query, 5).map_err(e)?.iter().chain(&exact) {
        if hit.distance != distance(hit.id) {
            return Err(format!(
                "hit {hit:?} at generation {g} is not of that state"
            ));
        }
    }
    Ok(g)
}

/// Child side: reopen or refresh and check states until the last commit is
/// seen (or time runs out).
#[test]
fn reader_child() {
    let Ok(dir) = std::env::var(READER_ENV) else {
        return;
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut seen = BTreeSet::new();
    let (mut rounds, mut opens) = (0u64, 0u64);
    let mut db: Option<Database> = None;
    let outcome = loop {
        if Instant::now() > deadline {
            break format!("timed out having seen {} generations", seen.len());
        }
        rounds += 1;
        // Every third round opens a new handle, the others refresh.
        let handle = match db.take() {
            Some(db) if rounds % 3 != 0 => db.refresh().map(|_| db),
            _ => {
                opens += 1;
                Database::open_read_only(&dir)
            }
        };
        let handle = match handle {
            Ok(h) => h,
            Err(e) => break format!("open or refresh failed: {e}"),
        };
        match check_state(&handle.snapshot()) {
            Ok(g) => {
                seen.insert(g);
            }
            Err(e) => break e,
        }
        db = Some(handle);
        if seen.contains(&COMMITS) {
            break format!(
                "ok rounds={rounds} opens={opens} generations={}",
                seen.len()
            );
        }
    };
    println!("outcome: {outcome}");
}

#[test]
fn reader_processes_see_only_committed_states_while_a_writer_commits() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let db = Database::open(&dir, options()).unwrap();
    commit_generation(&db, 1);
    let readers: Vec<_> = (0..2)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--exact", "reader_child", "--nocapture", "--test-threads=1"])
                .env(READER_ENV, &dir)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut retired_files = false;
    let mut names_before: BTreeSet<_> = BTreeSet::new();
    for g in 2..=COMMITS {
        commit_generation(&db, g);
        let names: BTreeSet<_> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        retired_files |= names_before.difference(&names).next().is_some();
        names_before = names;
        std::thread::sleep(Duration::from_millis(15));
    }
    for child in readers {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let outcome = stdout
            .lines()
            .find_map(|l| l.split_once("outcome: ").map(|(_, o)| o.trim().to_owned()))
            .unwrap_or_else(|| {
                format!(
                    "no outcome; stderr: {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
        eprintln!("reader: {outcome}");
        assert!(outcome.starts_with("ok "), "reader: {outcome}");
        let generations: usize = outcome
            .rsplit_once("generations=")
            .and_then(|(_, n)| n.parse().ok())
            .unwrap();
        assert!(generations > 2, "the reader saw too few commits: {outcome}");
    }
    // The writer did remove retired segments' files while readers ran.
    assert!(retired_files, "no segment file was removed during the run");
    db.verify().unwrap();
}
