//! Power loss at every sync point, simulated with the in-memory file system of
//! the I/O seam: each crash image keeps only what had been synced, and must
//! reopen to exactly a committed state at or after the last completed commit.
//! The workload includes offline-style compactions, which must leave each image
//! exactly as before or exactly as after them.

mod common;

use common::Rng;
use quiver::fs::MemFs;
use quiver::{CompactOptions, Database, Metric, Options};
use std::collections::BTreeMap;
use std::sync::Arc;

const DIM: usize = 4;
const DIR: &str = "/db";

fn options() -> Options {
    Options::new(DIM, Metric::L2).growing_threshold(12)
}

type Model = BTreeMap<u64, Vec<f32>>;

#[test]
fn every_crash_image_reopens_to_a_committed_state() {
    let fs = MemFs::new();
    fs.record_crash_images(true);
    let db = Database::open_with_vfs(Arc::new(fs.clone()), DIR, options()).unwrap();
    let mut w = db.writer().unwrap();
    let mut rng = Rng::new(77);
    // models[g] is the state after commit g; synced[g] the sync points before it returned.
    let mut models = vec![Model::new()];
    let mut synced = vec![fs.crash_images().len()];
    let mut model = Model::new();
    for n in 1..=40u64 {
        let upserts = if n.is_multiple_of(7) {
            15
        } else {
            1 + rng.below(4)
        };
        let mut touched = Vec::new();
        for _ in 0..upserts {
            let id = rng.below(40);
            let v = rng.vector(DIM);
            w.upsert(id, &v, None).unwrap();
            model.insert(id, v);
            touched.push(id);
        }
        if n.is_multiple_of(3) {
            let pick = rng.below(model.len() as u64) as usize;
            if let Some(&id) = model.keys().filter(|id| !touched.contains(id)).nth(pick) {
                w.delete(id).unwrap();
                model.remove(&id);
            }
        }
        assert_eq!(w.commit().unwrap().generation, models.len() as u64);
        models.push(model.clone());
        synced.push(fs.crash_images().len());
        if n.is_multiple_of(10) {
            // A compaction is a generation of its own, with the same data.
            let report = w.compact(&CompactOptions::new(), &mut |_, _| {}).unwrap();
            assert_eq!(report.generation, models.len() as u64);
            models.push(model.clone());
            synced.push(fs.crash_images().len());
        }
    }
    drop((w, db));

    let images = fs.crash_images();
    assert!(images.len() > 50, "only {} sync points", images.len());
    for (i, image) in images.into_iter().enumerate() {
        // The newest commit that had returned before this sync point.
        let durable = synced.iter().rposition(|&s| s <= i).map_or(0, |g| g as u64);
        let db = Database::open_with_vfs(Arc::new(image), DIR, options())
            .unwrap_or_else(|e| panic!("crash image {i} does not open: {e}"));
        let g = db.snapshot().generation();
        assert!(
            g == durable || g == durable + 1,
            "image {i}: generation {g}, last completed commit {durable}"
        );
        db.verify().unwrap();
        let model = &models[g as usize];
        assert_eq!(db.len(), model.len(), "image {i}");
        for (id, v) in model {
            assert_eq!(
                &db.get(*id).unwrap().unwrap().vector,
                v,
                "image {i} id {id}"
            );
        }
    }
}
