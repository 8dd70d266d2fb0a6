//! Background merges: small sealed segments are merged by the database's
//! merger thread as commits seal them, and nothing is lost or duplicated on
//! the way.

mod common;

use common::Rng;
use quiver::{Database, Metric, Options, SearchParams};
use std::collections::BTreeMap;

#[test]
fn small_segments_are_merged_and_every_row_survives() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let options = Options::new(8, Metric::L2).growing_threshold(20);
    let db = Database::open(&dir, options.clone()).unwrap();
    let mut w = db.writer().unwrap();
    let mut rng = Rng::new(3);
    let mut model = BTreeMap::new();
    for commit in 0..120u64 {
        for _ in 0..5 {
            let id = rng.below(400);
            let v = rng.vector(8);
            w.upsert(id, &v, None).unwrap();
            model.insert(id, v);
        }
        if commit % 4 == 3 {
            let id = *model
                .keys()
                .nth(rng.below(model.len() as u64) as usize)
                .unwrap();
            w.delete(id).unwrap();
            model.remove(&id);
        }
        w.commit().unwrap();
    }
    db.wait_for_merges();
    let stats = db.stats().unwrap();
    assert!(stats.merges > 0, "the workload must merge");
    assert!(stats.segments <= 3, "{} segments", stats.segments);
    let check = |db: &Database| {
        assert_eq!(db.len(), model.len());
        for (id, v) in &model {
            assert_eq!(&db.get(*id).unwrap().unwrap().vector, v, "id {id}");
        }
        let all = db
            .search_with(&[0.0; 8], &SearchParams::new(1000).exact(true))
            .unwrap();
        assert_eq!(all.len(), model.len(), "a row is duplicated or lost");
        db.verify().unwrap();
    };
    check(&db);
    drop((w, db));
    check(&Database::open(&dir, options).unwrap());
    // Retired segments' files are gone once their snapshots are: only live
    // segments' files remain (two per segment).
    let db = Database::open(&dir, Options::new(8, Metric::L2)).unwrap();
    let files = common::count_files(&dir, |n| n.starts_with("seg-"));
    assert_eq!(files, 2 * db.stats().unwrap().segments);
}

/// The `aliases` table of the manifest in `dir`: retired segment → segment.
fn aliases(dir: &std::path::Path) -> Vec<(u64, u64)> {
    let table: redb::TableDefinition<u64, (u64, u32)> = redb::TableDefinition::new("aliases");
    let db = redb::Database::open(dir.join("quiver.redb")).unwrap();
    let tx = redb::ReadableDatabase::begin_read(&db).unwrap();
    let t = tx.open_table(table).unwrap();
    redb::ReadableTable::iter(&t)
        .unwrap()
        .map(|e| {
            let (k, v) = e.unwrap();
            (k.value(), v.value().0)
        })
        .collect()
}

/// A merge leaves the `ids` entries of its largest input's rows as they are
/// and records an alias instead; every id stays found, replaceable and
/// deletable through it, across reopens and further merges, and the aliases
/// stay one step long and go once no live segment is at their end.
#[test]
fn the_kept_inputs_ids_are_found_through_aliases_across_merges() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("db");
    let options = Options::new(8, Metric::L2)
        .growing_threshold(50)
        .auto_merge(false);
    let mut rng = Rng::new(17);
    let mut model: BTreeMap<u64, Vec<f32>> = BTreeMap::new();
    let commit_rows = |ids: std::ops::Range<u64>, rng: &mut Rng, model: &mut BTreeMap<_, _>| {
        let db = Database::open(&dir, options.clone()).unwrap();
        let mut w = db.writer().unwrap();
        for id in ids {
            let v = rng.vector(8);
            w.upsert(id, &v, None).unwrap();
            model.insert(id, v);
        }
        assert!(w.commit().unwrap().sealed.is_some());
        drop(w);
        db
    };
    let check = |db: &Database, model: &BTreeMap<u64, Vec<f32>>| {
        assert_eq!(db.len(), model.len());
        for (id, v) in model {
            assert_eq!(&db.get(*id).unwrap().unwrap().vector, v, "id {id}");
        }
        db.verify().unwrap();
    };
    // Segment 1 (200 rows) and 2 (60): 1 is kept, 2 inserted into it.
    drop(commit_rows(0..200, &mut rng, &mut model));
    let db = commit_rows(200..260, &mut rng, &mut model);
    assert_eq!(db.merge_pending().unwrap(), 1);
    check(&db, &model);
    // Replace and delete rows of the kept input, through the alias.
    let mut w = db.writer().unwrap();
    let v = rng.vector(8);
    w.upsert(3, &v, None).unwrap();
    model.insert(3, v);
    w.delete(4).unwrap();
    model.remove(&4);
    w.commit().unwrap();
    drop(w);
    check(&db, &model);
    drop(db);
    assert_eq!(aliases(&dir), [(1, 3)]);
    check(&Database::open(&dir, options.clone()).unwrap(), &model);

    // Merged on as the kept input again: both aliases lead to the new one.
    let db = commit_rows(260..360, &mut rng, &mut model);
    assert_eq!(db.merge_pending().unwrap(), 1);
    check(&db, &model);
    assert_eq!(db.stats().unwrap().segments, 1);
    drop(db);
    let found = aliases(&dir);
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().all(|&(_, to)| to == found[0].1), "{found:?}");
    check(&Database::open(&dir, options.clone()).unwrap(), &model);

    // Merged as the small side of a larger segment: its rows' ids are
    // rewritten, and the aliases that led to it go.
    let db = commit_rows(1000..2000, &mut rng, &mut model);
    assert_eq!(db.merge_pending().unwrap(), 1);
    check(&db, &model);
    drop(db);
    let found = aliases(&dir);
    assert_eq!(found.len(), 1, "{found:?}");
    check(&Database::open(&dir, options).unwrap(), &model);
    let report = quiver::verify(&dir).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}
