//! Readers search while the writer commits: every result comes from exactly one
//! committed state, and nobody waits on anybody.

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
