//! Power loss at every sync point, simulated with the in-memory file system of
//! the I/O seam. Each workload runs on a `MemFs` that records every sync point;
//! afterwards, at every one of them, crash images of each `CrashKind` (several
//! seeds for the kinds that draw) must reopen to exactly a committed state at or
//! after the last completed commit, pass `Database::verify`, and never panic.
//!
//! An image may hold the in-flight commit (generation `durable + 1`) only if its
//! redb commit reached the disk whole: redb's checksummed commit slot rolls a
//! partly written commit back, and segment files are complete before any commit
//! names them (docs/FORMAT.md §6). The workloads include compactions and
//! merges, which must leave each image exactly as before or exactly as after.

mod common;

use common::{panic_message, Rng};
use quiver::fs::{CrashKind, MemFs};
use quiver::{CommitInfo, CompactOptions, Database, Metric, Options, Writer};
use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

const DIM: usize = 4;
const DIR: &str = "/db";

/// Seeds per sync point of each kind: one image per seed, where the kind has
/// one (`LoseUnsynced` draws nothing; `LostMetadata` has few choices).
const SEEDS: [(CrashKind, u64); 4] = [
    (CrashKind::LoseUnsynced, 1),
    (CrashKind::PartialWriteback, 40),
    (CrashKind::TornWrite, 40),
    (CrashKind::LostMetadata, 8),
];

/// What the database holds after a commit: id → (vector, payload).
type Model = BTreeMap<u64, (Vec<f32>, Option<Vec<u8>>)>;

/// A workload running on a recording `MemFs`, with the model of every
/// generation it committed.
struct Workload {
    fs: MemFs,
    options: Options,
    db: Database,
    writer: Writer,
    /// The data as staged, committed or not.
    model: Model,
    /// `models[g]` is the data of generation `g`.
    models: Vec<Model>,
    /// `completed[g]` is the number of sync points recorded before the commit
    /// of generation `g` returned (generation 0: before `open` returned).
    completed: Vec<usize>,
    /// Ids staged since the last commit.
    touched: BTreeSet<u64>,
    /// Live ids in the growing segment, and live sealed ids by segment.
    growing: BTreeSet<u64>,
    segments: BTreeMap<u64, BTreeSet<u64>>,
    /// Whether `growing` and `segments` are still known: a merge or a
    /// compaction repacks rows.
    tracked: bool,
    /// The growing threshold, and rows appended to the growing segment
    /// since its last seal (dead ones included), to follow where rows go.
    threshold: usize,
    appended: usize,
    /// Ids upserted since the last commit.
    upserted: BTreeSet<u64>,
}

impl Workload {
    /// A workload on a new database of `options` with growing threshold
    /// `threshold`.
    fn start(threshold: usize, options: Options) -> Workload {
        let options = options.growing_threshold(threshold);
        let fs = MemFs::new();
        fs.record_crash_images(true);
        let db = Database::open_with_vfs(Arc::new(fs.clone()), DIR, options.clone()).unwrap();
        let writer = db.writer().unwrap();
        Workload {
            completed: vec![fs.sync_points()],
            fs,
            options,
            db,
            writer,
            model: Model::new(),
            models: vec![Model::new()],
            touched: BTreeSet::new(),
            growing: BTreeSet::new(),
            segments: BTreeMap::new(),
            tracked: true,
            threshold,
            appended: 0,
            upserted: BTreeSet::new(),
        }
    }

    fn upsert(&mut self, id: u64, vector: Vec<f32>, payload: Option<Vec<u8>>) {
        self.writer.upsert(id, &vector, payload.as_deref()).unwrap();
        self.model.insert(id, (vector, payload));
        self.touched.insert(id);
        self.upserted.insert(id);
    }

    fn delete(&mut self, id: u64) {
        self.writer.delete(id).unwrap();
        self.model.remove(&id);
        self.touched.insert(id);
        self.upserted.remove(&id);
    }

    fn generation_done(&mut self) {
        self.models.push(self.model.clone());
        self.completed.push(self.fs.sync_points());
    }

    fn commit(&mut self) -> CommitInfo {
        let info = self.writer.commit().unwrap();
        assert_eq!(info.generation, self.models.len() as u64);
        self.generation_done();
        // A touched id left its old row.
        for id in &self.touched {
            self.growing.remove(id);
            self.segments.values_mut().for_each(|ids| {
                ids.remove(id);
            });
        }
        self.touched.clear();
        let staged = std::mem::take(&mut self.upserted);
        // A background merge repacks rows.
        self.tracked &= self.db.stats().unwrap().merges == 0;
        // Where the staged rows went (FORMAT.md §7): a segment of their own
        // if they fill a growing segment; else into the growing segment,
        // which is sealed first if they would overflow it, or with them if
        // they fill it exactly.
        let sealed = info.sealed.filter(|_| self.tracked);
        if staged.len() >= self.threshold {
            if let Some((segment, rows)) = sealed {
                assert_eq!(rows, staged.len());
                self.segments.insert(segment, staged);
            }
        } else {
            if self.appended + staged.len() > self.threshold {
                if let Some((segment, rows)) = sealed {
                    assert_eq!(rows, self.appended);
                    self.segments
                        .insert(segment, std::mem::take(&mut self.growing));
                }
                self.appended = 0;
            }
            self.appended += staged.len();
            self.growing.extend(staged);
            if self.appended == self.threshold {
                if let Some((segment, rows)) = sealed {
                    assert_eq!(rows, self.appended);
                    self.segments
                        .insert(segment, std::mem::take(&mut self.growing));
                }
                self.appended = 0;
            }
        }
        self.segments.retain(|_, ids| !ids.is_empty());
        info
    }

    /// Compacts; a compaction that does anything is a generation of its own,
    /// with the same data.
    fn compact(&mut self, options: &CompactOptions) {
        let report = self.writer.compact(options, &mut |_, _| {}).unwrap();
        self.tracked = false;
        if report.generation == self.models.len() as u64 {
            self.generation_done();
        } else {
            assert_eq!(report.generation + 1, self.models.len() as u64);
        }
    }

    /// Cuts the power at every sync point, in every way, and checks each image.
    fn check_every_crash_image(self, name: &str) {
        let Workload {
            fs,
            options,
            db,
            writer,
            models,
            completed,
            ..
        } = self;
        // The handle's close syncs too, but when depends on epoch
        // reclamation of its last snapshot: leave it out of the recording.
        fs.record_crash_images(false);
        drop((writer, db));
        let points = fs.sync_points();
        let mut counts = [0usize; SEEDS.len()];
        // Images that hold the commit in flight at their sync point.
        let mut in_flight = [0usize; SEEDS.len()];
        let mut failures = Vec::new();
        for point in 0..points {
            // The newest commit that had returned before this sync point.
            let durable = completed.iter().rposition(|&s| s <= point).unwrap_or(0) as u64;
            for (k, &(kind, seeds)) in SEEDS.iter().enumerate() {
                for seed in 0..seeds {
                    // Whether a kind has an image depends on the sync point only.
                    let Some(image) = fs.crash_image(point, kind, seed) else {
                        break;
                    };
                    counts[k] += 1;
                    let outcome = catch_unwind(AssertUnwindSafe(|| {
                        check_image(image, &options, &models, durable)
                    }));
                    let why = match outcome {
                        Ok(Ok(g)) => {
                            in_flight[k] += usize::from(g > durable);
                            continue;
                        }
                        Ok(Err(why)) => why,
                        Err(panic) => format!("panicked: {}", panic_message(&*panic)),
                    };
                    failures.push(format!(
                        "{name}: sync point {point}, {kind:?} seed {seed} (last completed commit {durable}): {why}"
                    ));
                }
            }
        }
        let total: usize = counts.iter().sum();
        eprintln!(
            "{name}: {points} sync points, {} generations; crash images (of which at the \
             commit in flight): {} ({}) LoseUnsynced, {} ({}) PartialWriteback, {} ({}) TornWrite, \
             {} ({}) LostMetadata; {total} in all",
            models.len(),
            counts[0],
            in_flight[0],
            counts[1],
            in_flight[1],
            counts[2],
            in_flight[2],
            counts[3],
            in_flight[3],
        );
        assert!(
            failures.is_empty(),
            "{} of {total} crash images failed; the first:\n{}",
            failures.len(),
            failures[..failures.len().min(20)].join("\n")
        );
        assert!(
            counts.iter().all(|&n| n > 0),
            "a kind never had an image: {counts:?}"
        );
    }
}

/// Opens `image` and checks that it holds exactly generation `durable` or
/// `durable + 1`; returns which.
fn check_image(
    image: MemFs,
    options: &Options,
    models: &[Model],
    durable: u64,
) -> Result<u64, String> {
    // No merger on the image: what is checked is what the crash left.
    let options = options.clone().auto_merge(false);
    let db = Database::open_with_vfs(Arc::new(image), DIR, options)
        .map_err(|e| format!("does not open: {e}"))?;
    let snapshot = db.snapshot();
    let g = snapshot.generation();
    if g != durable && g != durable + 1 {
        return Err(format!("opens to generation {g}"));
    }
    let model = models
        .get(g as usize)
        .ok_or_else(|| format!("opens to generation {g}, which was never committed"))?;
    db.verify()
        .map_err(|e| format!("generation {g} fails verify: {e}"))?;
    let mut ids = snapshot.ids();
    ids.sort_unstable();
    if !ids.iter().eq(model.keys()) {
        return Err(format!(
            "generation {g} holds ids {ids:?}, expected {:?}",
            model.keys().collect::<Vec<_>>()
        ));
    }
    for (&id, (vector, payload)) in model {
        let record = snapshot
            .get(id)
            .map_err(|e| format!("generation {g}: get({id}): {e}"))?
            .ok_or_else(|| format!("generation {g}: id {id} missing"))?;
        if (&record.vector, &record.payload) != (vector, payload) {
            return Err(format!("generation {g}: id {id} holds other data"));
        }
    }
    Ok(g)
}

#[test]
fn mixed_commits_and_compactions_reopen_to_a_committed_state_after_any_power_cut() {
    let mut w = Workload::start(12, Options::new(DIM, Metric::L2));
    let mut rng = Rng::new(77);
    for n in 1..=40u64 {
        let upserts = if n.is_multiple_of(7) {
            15
        } else {
            1 + rng.below(4)
        };
        let mut touched = Vec::new();
        for _ in 0..upserts {
            let id = rng.below(40);
            w.upsert(id, rng.vector(DIM), None);
            touched.push(id);
        }
        if n.is_multiple_of(3) {
            let pick = rng.below(w.model.len() as u64) as usize;
            let id = w.model.keys().filter(|id| !touched.contains(id)).nth(pick);
            if let Some(&id) = id {
                w.delete(id);
            }
        }
        w.commit();
        if n.is_multiple_of(10) {
            w.compact(&CompactOptions::new());
        }
    }
    w.check_every_crash_image("mixed");
}

#[test]
fn sealing_commits_and_background_merges_reopen_to_a_committed_state_after_any_power_cut() {
    let mut w = Workload::start(6, Options::new(DIM, Metric::L2).m(6).ef_construction(24));
    let mut rng = Rng::new(78);
    let mut sealed = 0;
    for _ in 0..24 {
        // Each batch is above the threshold on its own, and some of its ids
        // replace sealed rows (tombstones in older segments).
        for _ in 0..7 + rng.below(20) {
            w.upsert(rng.below(400), rng.vector(DIM), None);
        }
        if rng.below(3) == 0 {
            let id = *w
                .model
                .keys()
                .nth(rng.below(w.model.len() as u64) as usize)
                .unwrap();
            w.delete(id);
        }
        let info = w.commit();
        sealed += usize::from(info.sealed.is_some());
    }
    assert_eq!(sealed, 24, "every commit seals");
    // The merger ran beside the commits; its syncs are sync points too.
    w.db.wait_for_merges();
    let merged = w.db.stats().unwrap().merges;
    assert!(merged >= 3, "only {merged} background merges");
    w.check_every_crash_image("sealing and merging");
}

#[test]
fn payloads_and_retiring_deletes_reopen_to_a_committed_state_after_any_power_cut() {
    let options = Options::new(DIM, Metric::InnerProduct)
        .auto_merge(false)
        .m(8)
        .ef_construction(32);
    let mut w = Workload::start(10, options);
    let mut rng = Rng::new(79);
    let payload = |rng: &mut Rng| match rng.below(5) {
        0 => None,
        1 => Some(Vec::new()),
        _ => Some((0..rng.below(3000)).map(|i| i as u8).collect()),
    };
    let pick = |rng: &mut Rng, ids: &BTreeSet<u64>| {
        *ids.iter()
            .nth(rng.below(ids.len() as u64) as usize)
            .unwrap()
    };
    let mut retired = 0;
    for round in 0..14u64 {
        // A batch that seals, with the growing rows, into a segment.
        for id in round * 100..round * 100 + 10 + rng.below(5) {
            let p = payload(&mut rng);
            w.upsert(id, rng.vector(DIM), p);
        }
        assert!(w.commit().sealed.is_some());
        // Small commits into the growing segment: payload updates, new ids,
        // deletes of sealed and growing rows.
        for _ in 0..2 {
            let live: BTreeSet<u64> = w.model.keys().copied().collect();
            let id = pick(&mut rng, &live);
            let (v, p) = (rng.vector(DIM), payload(&mut rng));
            w.upsert(id, v, p);
            w.upsert(
                5000 + round * 10 + rng.below(4),
                rng.vector(DIM),
                payload(&mut rng),
            );
            w.delete(pick(&mut rng, &live));
            w.commit();
        }
        // Every other round, delete every live row of a segment: it is retired.
        if round % 2 == 1 {
            assert!(w.tracked);
            let segments: BTreeSet<u64> = w.segments.keys().copied().collect();
            let segment = pick(&mut rng, &segments);
            for id in w.segments[&segment].clone() {
                w.delete(id);
            }
            let info = w.commit();
            assert!(
                info.retired_segments >= 1,
                "segment {segment} was not retired"
            );
            retired += info.retired_segments;
        }
    }
    // Many tombstones, then a compaction that drops them.
    let live: Vec<u64> = w.model.keys().copied().collect();
    for id in live.into_iter().filter(|_| rng.below(3) == 0) {
        w.delete(id);
    }
    w.commit();
    w.compact(&CompactOptions::new().target_segment_rows(40));
    assert!(retired >= 7, "only {retired} segments retired");
    w.check_every_crash_image("payloads and retiring deletes");
}
