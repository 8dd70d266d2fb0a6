//! Criterion: building the HNSW graph of a sealed segment (10k x 128
//! clustered rows, m = 16, ef_construction = 200) with all cores; and a merge
//! of a 40k-row segment with 10k more rows (32 dimensions, to keep it short),
//! by extending the big segment's graph (with and without the 10k rows' own
//! graph as hints, as merges give them) against rebuilding it whole.
//!
//! `cargo bench --bench build`

use criterion::{criterion_group, criterion_main, Criterion};
use quiver::graph::{build, extend, extend_hinted, GraphParams, GraphView, Rows};
use quiver::synth;
use std::hint::black_box;

const ROWS: usize = 10_000;
const DIM: usize = 128;

/// Packed rows of one dimension.
struct Packed(Vec<f32>, usize);

impl Rows for Packed {
    fn len(&self) -> usize {
        self.0.len() / self.1
    }
    fn row(&self, i: u32) -> &[f32] {
        &self.0[i as usize * self.1..(i as usize + 1) * self.1]
    }
}

fn graph_build(c: &mut Criterion) {
    let rows = Packed(synth::clustered(ROWS, DIM, 100, 0.15, 42), DIM);
    let kernels = quiver::kernels::select();
    let dist = |a: &[f32], b: &[f32]| kernels.l2_squared(a, b);
    let mut group = c.benchmark_group("build");
    group.sample_size(10);
    group.bench_function("hnsw_10k_x_128", |b| {
        b.iter(|| black_box(build(&rows, &dist, &GraphParams::default())))
    });
    group.finish();
}

fn graph_merge(c: &mut Criterion) {
    const BIG: usize = 40_000;
    const NEW: usize = 10_000;
    const MERGE_DIM: usize = 32;
    let data = synth::clustered(BIG + NEW, MERGE_DIM, 100, 0.15, 42);
    let big = Packed(data[..BIG * MERGE_DIM].to_vec(), MERGE_DIM);
    let all = Packed(data, MERGE_DIM);
    let kernels = quiver::kernels::select();
    let dist = |a: &[f32], b: &[f32]| kernels.l2_squared(a, b);
    let params = GraphParams::default();
    // The big segment's links file, 8-byte aligned as a mapping would be.
    let encoded = build(&big, &dist, &params).encode();
    let mut words = vec![0u64; encoded.len().div_ceil(8)];
    bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..encoded.len()].copy_from_slice(&encoded);
    let bytes = &bytemuck::cast_slice::<u64, u8>(&words)[..encoded.len()];
    let view = GraphView::decode(bytes).expect("just encoded");

    let mut group = c.benchmark_group("merge_40k_plus_10k_x_32");
    group.sample_size(10);
    group.bench_function("extend", |b| {
        b.iter(|| black_box(extend(&view, &all, &dist, &params, None)))
    });
    let own = build(
        &Packed(all.0[BIG * MERGE_DIM..].to_vec(), MERGE_DIM),
        &dist,
        &params,
    );
    let hints: Vec<Vec<u32>> = (0..NEW as u32)
        .map(|n| own.level0(n).iter().map(|&x| x + BIG as u32).collect())
        .collect();
    group.bench_function("extend_hinted", |b| {
        b.iter(|| {
            let hints = hints.clone();
            black_box(extend_hinted(&view, &all, &dist, &params, hints, None))
        })
    });
    group.bench_function("full_rebuild", |b| {
        b.iter(|| black_box(build(&all, &dist, &params)))
    });
    group.finish();
}

criterion_group!(benches, graph_build, graph_merge);
criterion_main!(benches);
