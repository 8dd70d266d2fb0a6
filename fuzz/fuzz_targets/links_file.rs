//! `GraphView::decode` on arbitrary bytes, then a search over what it accepts.
//!
//! Each input is decoded twice from an 8-byte-aligned copy (as a mapping
//! would give): as it is, and "resealed", with the three region checksums
//! and the header checksum recomputed wherever the header's offsets allow,
//! so that the structural checks behind the checksums are reached (counts,
//! neighbour ranges, the upper index, levels, the entry point).
//!
//! `decode` must never panic. When it accepts the bytes, searches over the
//! view with dummy rows must not panic either, and must return at most `k`
//! distinct nodes of the graph, nearest first, with their true distances.

#![no_main]

use libfuzzer_sys::fuzz_target;
use quiver::graph::{search, with_visited, GraphView, Rows, LINKS_HEADER_LEN};

/// Header fields (docs/FORMAT.md §4): where each region's offset, length
/// and checksum sit.
const REGIONS: [(usize, usize, usize); 3] = [(40, 48, 88), (56, 64, 92), (72, 80, 96)];
const HEADER_CRC_AT: usize = 124;

/// Row `i` is `(i, i mod 7)`: distinct points, so that distances differ.
struct Dummy(Vec<f32>);

impl Rows for Dummy {
    fn len(&self) -> usize {
        self.0.len() / 2
    }
    fn row(&self, i: u32) -> &[f32] {
        &self.0[i as usize * 2..i as usize * 2 + 2]
    }
}

fn l2(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// Recomputes the region checksums (where the header's offsets lie inside
/// the buffer) and then the header checksum.
fn reseal(b: &mut [u8]) {
    for (off_at, len_at, crc_at) in REGIONS {
        let (off, len) = (u64_at(b, off_at), u64_at(b, len_at));
        let region = usize::try_from(off)
            .ok()
            .zip(usize::try_from(len).ok())
            .and_then(|(off, len)| b.get(off..off.checked_add(len)?));
        if let Some(region) = region {
            let crc = crc32fast::hash(region);
            b[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
        }
    }
    let crc = crc32fast::hash(&b[..HEADER_CRC_AT]);
    b[HEADER_CRC_AT..HEADER_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
}

fn check(bytes: &[u8], knobs: &[u8]) {
    // An 8-byte-aligned copy, as a mapping would be.
    let mut words = vec![0u64; bytes.len().div_ceil(8)];
    let aligned = &mut bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..bytes.len()];
    aligned.copy_from_slice(bytes);
    let aligned: &[u8] = aligned;
    let Ok(view) = GraphView::decode(aligned) else {
        return;
    };
    let rows = Dummy(
        (0..view.len())
            .flat_map(|i| [i as f32, (i % 7) as f32])
            .collect(),
    );
    let knob = |i: usize| knobs.get(i).copied().unwrap_or(1);
    for round in 0..3 {
        let query = [
            f32::from(knob(round * 3)),
            f32::from(knob(round * 3 + 1) % 7),
        ];
        let k = 1 + usize::from(knob(round * 3 + 2) % 10);
        let ef = 1 + usize::from(knob(9 + round) % 64);
        let skip_mod = u32::from(knob(12 + round) % 4);
        let skip = move |node: u32| skip_mod > 1 && node.is_multiple_of(skip_mod);
        let hits = with_visited(view.len(), |visited| {
            search(&view, &rows, &l2, &query, k, ef, &skip, visited)
        });
        assert!(hits.len() <= k, "{} hits for k = {k}", hits.len());
        let mut seen = std::collections::HashSet::new();
        for (i, &(distance, node)) in hits.iter().enumerate() {
            assert!(
                (node as usize) < view.len(),
                "node {node} of {}",
                view.len()
            );
            assert!(!skip(node), "skipped node {node} returned");
            assert!(seen.insert(node), "node {node} returned twice");
            assert_eq!(distance, l2(rows.row(node), &query));
            if i > 0 {
                assert!(hits[i - 1].0 <= distance, "hits out of order: {hits:?}");
            }
        }
    }
}

fuzz_target!(|data: &[u8]| {
    // The last 16 bytes (when there are more) steer the searches.
    let (file, knobs) = if data.len() >= LINKS_HEADER_LEN + 16 {
        data.split_at(data.len() - 16)
    } else {
        (data, &[][..])
    };
    check(file, knobs);
    if file.len() >= LINKS_HEADER_LEN {
        let mut resealed = file.to_vec();
        reseal(&mut resealed);
        check(&resealed, knobs);
    }
});
