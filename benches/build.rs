//! Criterion: building the HNSW graph of a sealed segment (10k x 128
//! clustered rows, m = 16, ef_construction = 200) with all cores.
//!
//! `cargo bench --bench build`

use criterion::{criterion_group, criterion_main, Criterion};
use quiver::graph::{build, GraphParams, Rows};
use quiver::synth;
use std::hint::black_box;

const ROWS: usize = 10_000;
const DIM: usize = 128;

struct Packed(Vec<f32>);

impl Rows for Packed {
    fn len(&self) -> usize {
        self.0.len() / DIM
    }
    fn row(&self, i: u32) -> &[f32] {
        &self.0[i as usize * DIM..(i as usize + 1) * DIM]
    }
}

fn graph_build(c: &mut Criterion) {
    let rows = Packed(synth::clustered(ROWS, DIM, 100, 0.15, 42));
    let kernels = quiver::kernels::select();
    let dist = |a: &[f32], b: &[f32]| kernels.l2_squared(a, b);
    let mut group = c.benchmark_group("build");
    group.sample_size(10);
    group.bench_function("hnsw_10k_x_128", |b| {
        b.iter(|| black_box(build(&rows, &dist, &GraphParams::default())))
    });
    group.finish();
}

criterion_group!(benches, graph_build);
criterion_main!(benches);
