//! Readers search while the writer commits: every result comes from exactly one
//! committed state, and nobody waits on anybody. The stress test runs for
//! `QUIVER_STRESS_SECS` (default 4) with seals, merges and compactions under
//! the readers, then checks that no retired segment is still open or mapped.

use quiver::{Database, Metric, Options};
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

const DIM: usize = 4;
const COMMITS: u64 = 1_000;

/// The ids live after generation `g`: the marker 0, every id 1..=g, except
/// that commit i (i a multiple of 10) deleted id i - 5. Nothing at generation 0.
fn expected_ids(g: u64) -> BTreeSet<u64> {
    if g == 0 {
        return BTreeSet::new();
    }
    (0..=g).filter(|&j| !(j % 10 == 5 && j + 5 <= g)).collect()
}

#[test]
fn readers_see_whole_commits_while_the_writer_makes_a_thousand() {
    let tmp = tempfile::tempdir().unwrap();
    // A small threshold, so that seals happen under the readers too.
    let db = Database::open(
        tmp.path().join("db"),
        Options::new(DIM, Metric::L2).growing_threshold(64),
    )
    .unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4)
        .map(|r| {
            let db = db.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let mut checked = 0u64;
                let mut last_generation = 0;
                while !done.load(Ordering::Acquire) || checked == 0 {
                    // Alternate between a held snapshot and the database's own search.
                    let hits = if r % 2 == 0 {
                        let snap = db.snapshot();
                        let g = snap.generation();
                        assert!(g >= last_generation, "generations went backwards");
                        last_generation = g;
                        let hits = snap.search(&[0.0; DIM], 5_000).unwrap();
                        let ids: BTreeSet<u64> = hits.iter().map(|h| h.id).collect();
                        assert_eq!(ids, expected_ids(g), "snapshot of generation {g}");
                        hits
                    } else {
                        db.search(&[0.0; DIM], 5_000).unwrap()
                    };
                    // The marker (id 0) holds [g; DIM] at generation g: its distance
                    // names the state the result came from.
                    let marker = hits.iter().find(|h| h.id == 0).map_or(0.0, |h| h.distance);
                    let g = ((marker / DIM as f32).sqrt()).round() as u64;
                    let ids: BTreeSet<u64> = hits.iter().map(|h| h.id).collect();
                    if g > 0 {
                        assert_eq!(
                            ids,
                            expected_ids(g),
                            "torn read: marker says generation {g}"
                        );
                    }
                    checked += 1;
                }
                checked
            })
        })
        .collect();

    let mut w = db.writer().unwrap();
    for i in 1..=COMMITS {
        w.upsert(i, &[1_000_000.0 + i as f32; DIM], None).unwrap();
        w.upsert(0, &[i as f32; DIM], None).unwrap();
        if i.is_multiple_of(10) {
            w.delete(i - 5).unwrap();
        }
        assert_eq!(w.commit().unwrap().generation, i);
    }
    done.store(true, Ordering::Release);
    let total: u64 = readers.into_iter().map(|r| r.join().unwrap()).sum();
    assert!(total >= 4);
    let ids: BTreeSet<u64> = db
        .search(&[0.0; DIM], 5_000)
        .unwrap()
        .iter()
        .map(|h| h.id)
        .collect();
    assert_eq!(ids, expected_ids(COMMITS));
    assert!(
        db.stats().unwrap().segments >= 1,
        "the test must exercise seals"
    );
}

// ---------------------------------------------------------------------------
// The stress test: four readers and the writer for a bounded time, with seals,
// merges, retirements and compactions, then a count of what is still open.

const STRESS_DIM: usize = 4;
/// Ids live in a sliding window of this many commits.
const WINDOW: u64 = 100;
/// Ids the writer stages and rolls back: never visible.
const JUNK: u64 = 1 << 40;
/// More than the live rows ever are: a search returns every one.
const ALL: usize = 5_000;

/// How long the stress test runs: `QUIVER_STRESS_SECS` (at least 1), default 4.
fn stress_secs() -> u64 {
    std::env::var("QUIVER_STRESS_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(4)
        .max(1)
}

/// Whether id `j` is live after the writer's `c`-th commit. Commit `c` adds
/// id `c`; id `j` with `j % 10 == 5` is deleted by commit `j + 5`, every other
/// id by commit `j + WINDOW`. The marker, id 0, is live from commit 1 on.
fn window_live(j: u64, c: u64) -> bool {
    if j == 0 {
        return c >= 1;
    }
    j <= c && !(j % 10 == 5 && c >= j + 5) && c < j + WINDOW
}

/// The commit that last wrote id `j` as of commit `c` (`j` live): commit
/// `j + 3` rewrites ids divisible by 3, commit `j + 50` those that are 1 mod 4
/// (and not 5 mod 10).
fn window_version(j: u64, c: u64) -> u64 {
    if j == 0 {
        return c;
    }
    let mut v = j;
    if j.is_multiple_of(3) && c >= j + 3 {
        v = j + 3;
    }
    if j % 4 == 1 && j % 10 != 5 && c >= j + 50 {
        v = j + 50;
    }
    v
}

/// The ids live after commit `c`.
fn window_ids(c: u64) -> BTreeSet<u64> {
    std::iter::once(0)
        .chain(c.saturating_sub(WINDOW).max(1)..=c)
        .filter(|&j| window_live(j, c))
        .collect()
}

/// What id `j` holds when written by commit `v`. The marker holds `[c; DIM]`
/// after commit `c`: its distance to the origin, `DIM * c²`, names the commit
/// a result came from.
fn window_vector(j: u64, v: u64) -> [f32; STRESS_DIM] {
    if j == 0 {
        [v as f32; STRESS_DIM]
    } else {
        [j as f32, v as f32, 1.0, -1.0]
    }
}

fn window_distance(j: u64, c: u64) -> f64 {
    let v = window_vector(j, window_version(j, c));
    v.iter().map(|x| f64::from(*x).powi(2)).sum()
}

/// The commit a search at the origin reflects (0 if it holds no marker),
/// after checking that every hit is a live id at the distance of its version
/// as of that commit, and (`complete`) that every live id is there.
fn check_window_hits(hits: &[quiver::Hit], complete: bool, who: &str) -> Option<u64> {
    let c = match hits.iter().find(|h| h.id == 0) {
        Some(m) => ((f64::from(m.distance) / STRESS_DIM as f64).sqrt()).round() as u64,
        None if complete => {
            assert!(hits.is_empty(), "{who}: rows but no marker: {hits:?}");
            0
        }
        None => return None,
    };
    let mut seen = BTreeSet::new();
    for h in hits {
        assert!(seen.insert(h.id), "{who}: id {} twice", h.id);
        assert!(
            window_live(h.id, c),
            "torn read ({who}): id {} is not live at commit {c}",
            h.id
        );
        let d = window_distance(h.id, c);
        assert!(
            (f64::from(h.distance) - d).abs() <= 1e-6 * d,
            "torn read ({who}): id {} at distance {} but its version at commit {c} is at {d}",
            h.id,
            h.distance
        );
    }
    if complete {
        assert_eq!(seen, window_ids(c), "torn read ({who}): commit {c}");
    }
    Some(c)
}

/// Checks every read of `snap` against commit `c` (found by its exact search).
fn check_window_snapshot(snap: &quiver::Snapshot, rng: &mut u64, who: &str) -> u64 {
    let exact = quiver::SearchParams::new(ALL).exact(true);
    let hits = snap.search_with(&[0.0; STRESS_DIM], &exact).unwrap();
    let c = check_window_hits(&hits, true, who).unwrap();
    assert!(snap.generation() >= c, "{who}: generation below commit");
    assert_eq!(snap.len(), window_ids(c).len(), "{who}: len at commit {c}");
    // A few point reads: live, rewritten, deleted, expired, future and junk ids.
    *rng = rng
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let random = (*rng >> 33) % (c + 2);
    for j in [
        0,
        c,
        c.saturating_sub(3),
        c.saturating_sub(50),
        c.saturating_sub(5),
    ]
    .into_iter()
    .chain([c.saturating_sub(WINDOW), random, c + 1, JUNK + c])
    {
        let got = snap.get(j).unwrap();
        if window_live(j, c) {
            let v = window_version(j, c);
            let record = got.unwrap_or_else(|| panic!("torn read ({who}): {j} missing at {c}"));
            assert_eq!(record.vector, window_vector(j, v), "torn read ({who}): {j}");
            assert_eq!(record.payload, Some(v.to_le_bytes().to_vec()), "{who}: {j}");
        } else {
            assert!(got.is_none(), "torn read ({who}): {j} is not live at {c}");
        }
        assert_eq!(snap.contains(j).unwrap(), window_live(j, c), "{who}: {j}");
    }
    c
}

/// The paths of the open file descriptors and of the mapped files of this
/// process that lie in `dir` (one entry per descriptor and per mapping).
fn open_and_mapped(dir: &std::path::Path) -> (Vec<String>, Vec<String>) {
    let prefix = format!("{}/", dir.display());
    let fds = std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|p| p.to_string_lossy().into_owned())
        .filter(|p| p.starts_with(&prefix))
        .collect();
    let maps = std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter_map(|line| {
            // address perms offset device inode path (the path may hold spaces)
            let path = line.splitn(6, ' ').nth(5)?.trim_start();
            path.starts_with(&prefix).then(|| path.to_string())
        })
        .collect();
    (fds, maps)
}

/// Lets crossbeam-epoch run the destructors of unpublished snapshots: pins
/// and flushes (each flush frees at most a few sealed bags, and only once the
/// global epoch has moved on, which a pinned thread elsewhere in the process
/// can delay) until `released()` holds, for at most 5 s. Returns the rounds
/// it took, or `None` if `released()` never held.
fn collect_garbage(db: &Database, released: impl Fn() -> bool) -> Option<usize> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    for round in 0.. {
        for _ in 0..64 {
            crossbeam_epoch::pin().flush();
            db.search(&[0.0; STRESS_DIM], 1).unwrap();
        }
        if released() {
            return Some(round);
        }
        if std::time::Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    unreachable!()
}

#[test]
fn readers_and_writer_under_stress_see_whole_commits_and_release_retired_segments() {
    let secs = stress_secs();
    // A watchdog: nothing may deadlock. It stands down when the test ends,
    // whether it passed or panicked (the sender is dropped).
    let (finished, watch) = std::sync::mpsc::channel::<()>();
    let limit = std::time::Duration::from_secs(10 * secs);
    std::thread::spawn(move || {
        if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = watch.recv_timeout(limit) {
            eprintln!("the stress test is still running after {limit:?} (10 x QUIVER_STRESS_SECS): deadlock; aborting");
            std::process::abort();
        }
    });

    let tmp = tempfile::tempdir().unwrap();
    let dir = std::fs::canonicalize(tmp.path()).unwrap().join("db");
    let options = Options::new(STRESS_DIM, Metric::L2).growing_threshold(8);
    let db = Database::open(&dir, options.clone()).unwrap();
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..4u64)
        .map(|r| {
            let db = db.clone();
            let done = done.clone();
            std::thread::spawn(move || {
                let who = format!("reader {r}");
                let mut rng = r;
                let mut reads = 0u64;
                let mut last = (0u64, 0u64); // (generation, commit)
                let mut held: Option<(quiver::Snapshot, u64)> = None;
                while !done.load(Ordering::Acquire) || reads == 0 {
                    let c = match r {
                        // Snapshots, one of them held across ~100 reads while
                        // the writer retires and removes its segments' files.
                        0 | 2 => {
                            let snap = db.snapshot();
                            let g = snap.generation();
                            let c = check_window_snapshot(&snap, &mut rng, &who);
                            assert!(g >= last.0, "{who}: generations went backwards");
                            last.0 = g;
                            if r == 0 {
                                if let Some((old, c)) = &held {
                                    let again = check_window_snapshot(old, &mut rng, &who);
                                    assert_eq!(again, *c, "{who}: a held snapshot changed");
                                }
                                if reads.is_multiple_of(100) {
                                    held = Some((snap, c));
                                }
                            }
                            Some(c)
                        }
                        1 => {
                            let exact = quiver::SearchParams::new(ALL).exact(true);
                            let hits = db.search_with(&[0.0; STRESS_DIM], &exact).unwrap();
                            check_window_hits(&hits, true, &who)
                        }
                        _ => {
                            let hits = db.search(&[0.0; STRESS_DIM], ALL).unwrap();
                            check_window_hits(&hits, false, &who)
                        }
                    };
                    if let Some(c) = c {
                        assert!(c >= last.1, "{who}: commit {c} after {}", last.1);
                        last.1 = c;
                    }
                    reads += 1;
                }
                reads
            })
        })
        .collect();

    let started = std::time::Instant::now();
    let mut w = db.writer().unwrap();
    let (mut c, mut generation) = (0u64, 0u64);
    let (mut seals, mut retired, mut compactions) = (0, 0, 0);
    while started.elapsed().as_secs() < secs {
        c += 1;
        // Staged and rolled back: no reader may ever see it.
        w.upsert(JUNK + c, &[0.5; STRESS_DIM], None).unwrap();
        w.delete(0).ok();
        w.rollback();
        let mut write = |j: u64| {
            let v = window_version(j, c);
            w.upsert(j, &window_vector(j, v), Some(&v.to_le_bytes()))
                .unwrap();
        };
        write(0);
        write(c);
        if c > 3 && (c - 3).is_multiple_of(3) {
            write(c - 3);
        }
        if c > 50 && (c - 50) % 4 == 1 && (c - 50) % 10 != 5 {
            write(c - 50);
        }
        if c >= 10 && c.is_multiple_of(10) {
            w.delete(c - 5).unwrap();
        }
        if c > WINDOW && (c - WINDOW) % 10 != 5 {
            w.delete(c - WINDOW).unwrap();
        }
        let info = w.commit().unwrap();
        generation += 1;
        assert_eq!(info.generation, generation);
        seals += usize::from(info.sealed.is_some());
        retired += info.retired_segments;
        if c.is_multiple_of(50) {
            let report = w
                .compact(&quiver::CompactOptions::new(), &mut |_, _| {})
                .unwrap();
            if !report.planned.is_empty() {
                generation += 1;
                compactions += 1;
            }
            assert_eq!(report.generation, generation);
        }
    }
    done.store(true, Ordering::Release);
    let reads: Vec<u64> = readers.into_iter().map(|r| r.join().unwrap()).collect();
    drop(w);
    // Background merges, counted by the handle; the directory settles once
    // the merger is idle.
    db.wait_for_merges();
    let merged = db.stats().unwrap().merges;
    eprintln!(
        "stress: {secs} s, {c} commits, {seals} seals, {merged} merged, {retired} retired, \
         {compactions} compactions; reads per reader {reads:?}"
    );
    assert!(
        seals > 0 && merged > 0 && compactions > 0,
        "the stress test must seal, merge and compact (merged segments are retired too)"
    );
    assert_eq!(
        check_window_snapshot(&db.snapshot(), &mut 7, "final"),
        c,
        "the last commit is visible"
    );
    db.verify().unwrap();

    // Every snapshot is gone: only the live segments' files may remain open
    // or mapped, and no removed file may be.
    let segments = db.stats().unwrap().segments;
    let rounds = collect_garbage(&db, || {
        let (_, maps) = open_and_mapped(&dir);
        maps.len() == 2 * segments && std::fs::read_dir(&dir).unwrap().count() == 2 * segments + 2
    });
    let (fds, maps) = open_and_mapped(&dir);
    eprintln!(
        "stress: {segments} live segments, {} mappings, open {fds:?}; \
         released after {rounds:?} extra rounds of 64 flushes",
        maps.len()
    );
    let listed: BTreeSet<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        listed.len(),
        2 * segments + 2,
        "files in the directory: {listed:?}"
    );
    assert!(
        !fds.iter().chain(&maps).any(|p| p.ends_with("(deleted)")),
        "a removed file is still open or mapped: {fds:?} {maps:?}"
    );
    // The manifest (redb's file) and the lock are open; segments' files are
    // mapped, not kept open.
    let mut fds_sorted = fds.clone();
    fds_sorted.sort();
    assert_eq!(
        fds_sorted,
        vec![
            format!("{}/LOCK", dir.display()),
            format!("{}/quiver.redb", dir.display())
        ],
        "open descriptors"
    );
    // One mapping per live segment file: its .col and its .hnsw.
    let mapped: BTreeSet<String> = maps.iter().cloned().collect();
    assert_eq!(maps.len(), 2 * segments, "mappings: {maps:?}");
    assert_eq!(mapped.len(), 2 * segments, "mapped files: {maps:?}");
    assert!(
        mapped.is_subset(&listed),
        "mapped {mapped:?}, listed {listed:?}"
    );

    // Closing the database releases everything.
    drop(db);
    let probe = Database::open(tmp.path().join("probe"), options.clone()).unwrap();
    collect_garbage(&probe, || {
        let (fds, maps) = open_and_mapped(&dir);
        fds.is_empty() && maps.is_empty()
    });
    drop(probe);
    let (fds, maps) = open_and_mapped(&dir);
    assert!(
        fds.is_empty() && maps.is_empty(),
        "after close: {fds:?} {maps:?}"
    );
    let db = Database::open(&dir, options).unwrap();
    assert_eq!(check_window_snapshot(&db.snapshot(), &mut 9, "reopened"), c);
    drop(finished);
}

/// Reduced from an intermittent failure of
/// `readers_see_whole_commits_while_the_writer_makes_a_thousand` (all four
/// readers reporting a "torn read" at once), which a writer alone reproduces:
/// after some seal, `db.search(&[0.0; 4], 5_000)` misses the newest ~20 rows
/// of the newest segment (7 of 60 runs of its 1,000 commits). The cause is in
/// the graph, not in publication. On collinear rows (that test's
/// `[1e6 + i; 4]`) the neighbour heuristic leaves each row about two level-0
/// links, a chain, and the parallel build now and then breaks it in one
/// direction: in one dumped segment no row left of id 324 links to it or
/// beyond, while 324 links back to 311. `connect_unreachable` makes every row
/// reachable from the entry point (here on the right), but the level-0 walk
/// starts where the greedy descent ends (on the left, near the query), and
/// the right part cannot be reached from there: a search with `ef` above the
/// row count returns 43 of 64 rows. About 3 in 1,000 parallel builds of this
/// segment fail; none in 5,000 with a one-thread pool.
#[test]
fn hnsw_search_with_ef_above_the_row_count_returns_every_row() {
    use quiver::graph::{build, search, with_visited, GraphParams, GraphView, Rows};
    struct Packed(Vec<[f32; 4]>);
    impl Rows for Packed {
        fn len(&self) -> usize {
            self.0.len()
        }
        fn row(&self, i: u32) -> &[f32] {
            &self.0[i as usize]
        }
    }
    let kernels = quiver::kernels::select();
    let dist = |a: &[f32], b: &[f32]| kernels.l2_squared(a, b);
    // The rows of the segment sealed by commit 345 of that test: its growing
    // segment's last 62 live ids, then the staged marker and id 345.
    let c = 345u64;
    let live: Vec<u64> = (1..c).filter(|j| !(j % 10 == 5 && c >= j + 5)).collect();
    let mut rows: Vec<[f32; 4]> = live[live.len() - 62..]
        .iter()
        .map(|&j| [1_000_000.0 + j as f32; 4])
        .collect();
    rows.push([c as f32; 4]);
    rows.push([1_000_000.0 + c as f32; 4]);
    let rows = Packed(rows);
    for build_no in 0..20_000 {
        let bytes = build(&rows, &dist, &GraphParams::default()).encode();
        let view = GraphView::decode(&bytes).unwrap();
        let hits = with_visited(view.len(), |v| {
            search(&view, &rows, &dist, &[0.0; 4], 100, 100, &|_| false, v)
        });
        assert_eq!(
            hits.len(),
            rows.len(),
            "build {build_no}: a search with ef = 100 over {} rows",
            rows.len()
        );
    }
}
