//! Merging sealed segments: the tiered policy, and the live rows a merge keeps.
//!
//! Policy: a segment's *tier* is how many times [`MERGE_FACTOR`] fits between
//! the growing threshold and its live rows (tier 0 below `threshold ×
//! MERGE_FACTOR` rows, tier 1 below `threshold × MERGE_FACTOR²`, …). When a
//! commit seals a segment and its tier then holds [`MERGE_FACTOR`] segments or
//! more, those segments and the new rows are written as one segment instead,
//! in the same commit; if that fills the next tier, it cascades. So a database
//! holds at most `MERGE_FACTOR − 1` segments per tier, a logarithmic number
//! overall, and each row is rewritten about log(rows / threshold) times.
//!
//! The row gathering ([`live_rows`]) is the piece an offline compaction reuses.

use crate::error::Result;
use crate::snapshot::SealedView;
use std::collections::HashSet;

/// Segments per size tier that make a commit merge them: a commit that seals
/// a segment folds in the other segments of its tier once the tier would hold
/// this many, so a database keeps a logarithmic number of segments.
pub const MERGE_FACTOR: usize = 4;

fn tier(rows: usize, threshold: usize) -> u32 {
    let mut tier = 0;
    let mut bound = threshold.max(1).saturating_mul(MERGE_FACTOR);
    while rows >= bound && bound < usize::MAX {
        tier += 1;
        bound = bound.saturating_mul(MERGE_FACTOR);
    }
    tier
}

/// The segments to fold into a new segment of `new_rows` rows, given the
/// other segments' (id, live rows): empty if no tier fills.
pub(crate) fn choose(existing: &[(u64, usize)], new_rows: usize, threshold: usize) -> Vec<u64> {
    let mut rest: Vec<(u64, usize)> = existing.to_vec();
    let mut rows = new_rows;
    let mut chosen = Vec::new();
    loop {
        let t = tier(rows, threshold);
        let same: Vec<(u64, usize)> = rest
            .iter()
            .copied()
            .filter(|&(_, live)| tier(live, threshold) <= t)
            .collect();
        if same.len() + 1 < MERGE_FACTOR {
            return chosen;
        }
        for (id, live) in same {
            rows += live;
            chosen.push(id);
            rest.retain(|&(other, _)| other != id);
        }
    }
}

/// The live rows of `views`, in segment then row order, as (id, vector),
/// leaving out the rows in `also_deleted` (segment, row). Checks each
/// segment's checksums first, so a merge never copies damaged data.
pub(crate) fn live_rows<'a>(
    views: &[&'a SealedView],
    also_deleted: &HashSet<(u64, u64)>,
) -> Result<Vec<(u64, &'a [f32])>> {
    let mut rows = Vec::new();
    for view in views {
        let seg = &view.segment;
        seg.verify()?;
        let ids = seg.ids();
        for (row, &id) in ids.iter().enumerate() {
            if !view.deleted.contains(row) && !also_deleted.contains(&(seg.id(), row as u64)) {
                rows.push((id, seg.row(row)));
            }
        }
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiers_grow_by_the_merge_factor() {
        assert_eq!(tier(10, 10), 0);
        assert_eq!(tier(39, 10), 0);
        assert_eq!(tier(40, 10), 1);
        assert_eq!(tier(160, 10), 2);
    }

    #[test]
    fn a_full_tier_is_merged_with_the_new_segment() {
        let existing = [(1, 10), (2, 12), (3, 11)];
        assert_eq!(choose(&existing, 10, 10), vec![1, 2, 3]);
        assert!(choose(&existing[..2], 10, 10).is_empty());
    }

    #[test]
    fn merges_cascade_into_the_next_tier() {
        // Three tier-1 segments, three tier-0 ones, and a new tier-0 one: the
        // tier-0 merge makes a tier-1 segment, which fills tier 1.
        let existing = [(1, 40), (2, 45), (3, 50), (4, 10), (5, 10), (6, 10)];
        let mut chosen = choose(&existing, 10, 10);
        chosen.sort();
        assert_eq!(chosen, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn big_segments_are_left_alone_by_small_merges() {
        let existing = [(1, 1000), (2, 10), (3, 10), (4, 10)];
        assert_eq!(choose(&existing, 10, 10), vec![2, 3, 4]);
    }
}
