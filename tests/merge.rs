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
