//! The default search effort of each segment, measured on its own rows.
//!
//! A graph's recall at a given `ef` depends on the data and on the graph, so
//! one database-wide default is either slow on easy data or poor on hard
//! data. Instead, once a segment is sealed or merged, the merger measures
//! recall@[`CALIBRATION_K`] of the segment's graph at a ladder of `ef`
//! values, with a seeded sample of the segment's own live rows as queries,
//! each one held out: its node is hidden from the walk (no list leads to it)
//! and from the truth (found by an exact scan of the segment), so that it is
//! searched as a new vector would be. The curve goes into the manifest. A
//! search that names no `ef` then uses, per segment, the smallest `ef` whose
//! measured recall reaches [`DEFAULT_TARGET_RECALL`], or the target the
//! search asks for ([`SearchParams::target_recall`](crate::SearchParams::target_recall)).
//!
//! Held-out rows are harder queries than new vectors from the same
//! distribution (their nearest neighbours lost the links to them), so the
//! default target is below the recall wanted: it was tuned so that recall@10
//! of new queries lands in [0.95, 0.975] on the shared real embeddings
//! (target 0.93 gave ef 24–28 and recall 0.950–0.959 across builds) and on
//! clustered data (ef 12–14, 0.965–0.977). It was raised from 0.935 to 0.94
//! when merges began to insert with hints (a graph slightly below a full
//! insertion's): at 0.935, debian50k built in 100-row commits answered at
//! 0.947.
//! Queries from another distribution than the data's (say, around other
//! centres) get less; they need an explicit `ef` or a higher target.
//!
//! Recall is measured at several depths `j` (how many of the query's `j`
//! nearest rows in the segment the `k`-result search finds): a segment with
//! a share `p` of the rows holds about `k·p` of a query's `k` nearest, its
//! own nearest ones, so a small segment (the growing one, a recent seal)
//! is searched with the `ef` that finds its top `⌈k·p⌉ + 1` (less effort),
//! and the largest with the one that finds its top `k`.
//!
//! ```text
//! calibration record (manifest table `calibration`, segment id -> bytes)
//! offset  size  field
//!      0     1  version        u8 = 1
//!      1     1  points         u8, n ≤ 32
//!      2     1  depths         u8, d = 5: recall at depths 1, 2, 3, 5, 10
//!      3  n·(2+2d)  point i    ef u16, then d recalls u16 (× 1/65535)
//!  3+n(2+2d)  4  crc32          of every byte before it
//! ```

use crate::bitset::Bitset;
use crate::graph;
use crate::options::Scorer;
use crate::rng::SplitMix64;
use crate::segment::Segment;
use crate::topk::TopK;
use rayon::prelude::*;
use std::sync::atomic::{AtomicBool, Ordering};

/// Recall@k that a calibration measures.
pub const CALIBRATION_K: usize = 10;

/// Recall of a segment's own rows that a search with no `ef` aims for.
pub const DEFAULT_TARGET_RECALL: f64 = 0.94;

/// The `ef` values measured.
const LADDER: [u16; 14] = [10, 12, 14, 16, 20, 24, 28, 32, 40, 48, 64, 96, 128, 256];

/// The depths `j` whose recall is measured: how many of a query's `j`
/// nearest rows in the segment its `k`-result search finds. A segment that
/// holds a share `p` of a database's rows holds about `k·p` of a query's
/// `k` nearest, and those are its own nearest: it needs recall at that
/// depth, not at `k` (see [`depth_for_share`]).
const DEPTHS: [usize; 5] = [1, 2, 3, 5, 10];

/// Rows sampled as queries: up to 200, fewer on large segments, so that the
/// exact scans cost at most about 20 million distances.
fn sample_size(live: usize) -> usize {
    (20_000_000 / live.max(1)).clamp(50, 200).min(live)
}

const VERSION: u8 = 1;

/// A segment's measured recall at each `ef` of the ladder, per depth.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Calibration {
    /// (ef, recall at each of [`DEPTHS`]).
    points: Vec<(u16, [f32; DEPTHS.len()])>,
}

/// The depth whose recall a segment holding `share` of the live rows needs
/// for a `k`-nearest search: its expected part of the `k` nearest, plus one.
pub(crate) fn depth_for_share(k: usize, share: f64) -> usize {
    let expected = (k.min(CALIBRATION_K) as f64 * share.clamp(0.0, 1.0)).ceil() as usize;
    (expected + 1).min(CALIBRATION_K)
}

impl Calibration {
    /// The smallest `ef` whose measured recall at `depth` (rounded up to a
    /// measured depth) reaches `target`; past the curve, 4× its largest `ef`.
    pub(crate) fn ef_for(&self, target: f64, depth: usize) -> usize {
        let d = DEPTHS
            .iter()
            .position(|&d| d >= depth)
            .unwrap_or(DEPTHS.len() - 1);
        match self.points.iter().find(|p| f64::from(p.1[d]) >= target) {
            Some(p) => usize::from(p.0),
            None => {
                let last = self.points.last().map_or(256, |p| usize::from(p.0));
                last * 4
            }
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut b = vec![VERSION, self.points.len() as u8, DEPTHS.len() as u8];
        for (ef, recalls) in &self.points {
            b.extend(ef.to_le_bytes());
            for r in recalls {
                b.extend(((r.clamp(0.0, 1.0) * 65535.0).round() as u16).to_le_bytes());
            }
        }
        let crc = crc32fast::hash(&b);
        b.extend(crc.to_le_bytes());
        b
    }

    /// Decodes a record; `Err` says what is wrong.
    pub(crate) fn decode(b: &[u8]) -> std::result::Result<Calibration, String> {
        if b.len() < 3 {
            return Err("calibration record is truncated".into());
        }
        if b[0] != VERSION {
            return Err(format!("calibration record of version {}", b[0]));
        }
        let (n, depths) = (usize::from(b[1]), usize::from(b[2]));
        let point = 2 + 2 * depths;
        if depths != DEPTHS.len() || n > 32 || b.len() != 3 + point * n + 4 {
            return Err(format!(
                "calibration record of {} bytes for {n} points of {depths} depths",
                b.len()
            ));
        }
        let body = &b[..3 + point * n];
        let at = body.len();
        let crc = u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        if crc32fast::hash(body) != crc {
            return Err("calibration record checksum mismatch".into());
        }
        let u16_at = |c: &[u8], i: usize| u16::from_le_bytes([c[i], c[i + 1]]);
        let points = body[3..]
            .chunks_exact(point)
            .map(|c| {
                let mut recalls = [0.0; DEPTHS.len()];
                for (d, r) in recalls.iter_mut().enumerate() {
                    *r = f32::from(u16_at(c, 2 + 2 * d)) / 65535.0;
                }
                (u16_at(c, 0), recalls)
            })
            .collect();
        Ok(Calibration { points })
    }
}

/// [`calibrate`] of a segment just written, before it is published (by a
/// commit that wrote its own rows as a segment, or by a merge), so that it
/// never serves with the fallback `ef`: `dead` are its rows already
/// deleted.
pub(crate) fn calibrate_new(
    seg: &Segment,
    dead: &[u64],
    scorer: Scorer,
    cancel: &AtomicBool,
) -> Option<Calibration> {
    let mut deleted = Bitset::new(seg.rows());
    for &row in dead {
        deleted.insert(row as usize);
    }
    calibrate(seg, &deleted, scorer, cancel)
}

/// Measures the recall curve of `seg`, whose `deleted` rows are left out;
/// `None` if it has too few live rows to need one (a search then uses the
/// database's default `ef`) or fails its checksums.
/// Stops early (returning `None`) once `cancel` is raised.
pub(crate) fn calibrate(
    seg: &Segment,
    deleted: &Bitset,
    scorer: Scorer,
    cancel: &AtomicBool,
) -> Option<Calibration> {
    let live: Vec<u32> = (0..seg.rows() as u32)
        .filter(|&r| !deleted.contains(r as usize))
        .collect();
    if live.len() <= 4 * CALIBRATION_K || seg.verify().is_err() {
        return None;
    }
    let graph = seg.graph().ok()?;
    let rows = seg.rows_view();
    let dist = |a: &[f32], b: &[f32]| scorer.distance(a, b);
    let skip = |row: u32| deleted.contains(row as usize);
    let mut rng = SplitMix64::new(0x5155_4341_4c49_4252 ^ seg.id());
    let samples: Vec<u32> = (0..sample_size(live.len()))
        .map(|_| live[(rng.next_u64() % live.len() as u64) as usize])
        .collect();
    // Per sample: for each ef, how many of the j nearest were found, per depth.
    let per_sample = |s: u32| -> Vec<usize> {
        if cancel.load(Ordering::Relaxed) {
            return vec![0; LADDER.len() * DEPTHS.len()];
        }
        let q = seg.row(s as usize);
        let mut exact = TopK::new(CALIBRATION_K + 1);
        for &r in &live {
            exact.push(dist(q, seg.row(r as usize)), u64::from(r));
        }
        let truth: Vec<u64> = exact
            .into_sorted()
            .into_iter()
            .map(|h| h.id)
            .filter(|&r| r != u64::from(s))
            .take(CALIBRATION_K)
            .collect();
        let mut found = Vec::with_capacity(LADDER.len() * DEPTHS.len());
        for &ef in &LADDER {
            let hits = graph::with_visited(graph.len(), |visited| {
                graph::search(
                    &graph::Hiding {
                        links: &graph,
                        hidden: s,
                    },
                    &rows,
                    &dist,
                    q,
                    CALIBRATION_K,
                    usize::from(ef),
                    &skip,
                    visited,
                )
            });
            for &depth in &DEPTHS {
                let nearest = &truth[..depth.min(truth.len())];
                found.push(
                    hits.iter()
                        .filter(|&&(_, r)| nearest.contains(&u64::from(r)))
                        .count(),
                );
            }
        }
        found
    };
    let found = samples.par_iter().map(|&s| per_sample(s)).reduce(
        || vec![0; LADDER.len() * DEPTHS.len()],
        |a, b| a.iter().zip(&b).map(|(x, y)| x + y).collect(),
    );
    if cancel.load(Ordering::Acquire) {
        return None;
    }
    let points = LADDER
        .iter()
        .enumerate()
        .map(|(i, &ef)| {
            let mut recalls = [0.0; DEPTHS.len()];
            for (d, r) in recalls.iter_mut().enumerate() {
                *r = found[i * DEPTHS.len() + d] as f32 / (samples.len() * DEPTHS[d]) as f32;
            }
            (ef, recalls)
        })
        .collect();
    Some(Calibration { points })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_small_share_needs_a_shallow_depth() {
        assert_eq!(depth_for_share(10, 1.0), 10);
        assert_eq!(depth_for_share(10, 0.8), 9);
        assert_eq!(depth_for_share(10, 0.2), 3);
        assert_eq!(depth_for_share(10, 0.0), 1);
        assert_eq!(depth_for_share(100, 0.5), 6);
    }

    #[test]
    fn a_record_round_trips_and_damage_is_refused() {
        let c = Calibration {
            points: vec![
                (10, [0.9, 0.8, 0.7, 0.6, 0.5]),
                (32, [0.99, 0.99, 0.98, 0.97, 0.96]),
                (64, [1.0, 1.0, 1.0, 0.99, 0.99]),
            ],
        };
        let b = c.encode();
        let back = Calibration::decode(&b).unwrap();
        assert_eq!(back.ef_for(0.95, 10), 32);
        assert_eq!(back.ef_for(0.4, 10), 10);
        assert_eq!(back.ef_for(0.999, 10), 256);
        assert_eq!(back.ef_for(0.85, 1), 10);
        assert_eq!(back.ef_for(0.85, 2), 32);
        for i in 0..b.len() {
            let mut bad = b.clone();
            bad[i] ^= 1;
            assert!(Calibration::decode(&bad).is_err(), "byte {i}");
        }
        assert!(Calibration::decode(&b[..b.len() - 1]).is_err());
        assert!(Calibration::decode(&[]).is_err());
    }
}
