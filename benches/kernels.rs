//! Criterion: one call of each distance kernel (`l2_squared`, `dot`,
//! `cosine_distance`) at d ∈ {128, 384, 768, 1536}, for every ISA this CPU can
//! run (`kernels::available()`, forced with `kernels::for_isa`), and of each
//! `i8` code kernel (`dot_i8`, `l2_i8`) for every `kernels::available_i8()`
//! level (groups `kernels/<metric>_i8/d<dim>`).
//!
//! Both vectors are fixed per dimension and stay in L1, so this is the
//! kernel's compute cost (plus the length check and the table's indirect
//! call), not memory bandwidth. Groups are named `kernels/<metric>/d<dim>`
//! with the ISA as the function id. About a minute on two cores:
//!
//! `cargo bench --bench kernels`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use quiver::kernels::{self, I8Kernels, Kernels};
use quiver::synth::SplitMix64;
use std::hint::black_box;
use std::time::Duration;

const DIMS: [usize; 4] = [128, 384, 768, 1536];

/// A two-vector kernel, called through the table as normal code does.
type Metric = fn(&Kernels, &[f32], &[f32]) -> f32;

const METRICS: [(&str, Metric); 3] = [
    ("l2_squared", Kernels::l2_squared),
    ("dot", Kernels::dot),
    ("cosine_distance", Kernels::cosine_distance),
];

/// `dim` values uniform in [-1, 1), deterministic in the generator's seed.
fn vector(rng: &mut SplitMix64, dim: usize) -> Vec<f32> {
    (0..dim)
        .map(|_| (rng.next_f64() * 2.0 - 1.0) as f32)
        .collect()
}

fn distance_kernels(c: &mut Criterion) {
    let isas = kernels::available();
    for (name, metric) in METRICS {
        for dim in DIMS {
            let mut rng = SplitMix64::new(dim as u64);
            let (a, b) = (vector(&mut rng, dim), vector(&mut rng, dim));
            let mut group = c.benchmark_group(format!("kernels/{name}/d{dim}"));
            for &isa in &isas {
                let k = kernels::for_isa(isa).expect("available() lists only runnable ISAs");
                group.bench_function(BenchmarkId::from_parameter(isa), |bench| {
                    bench.iter(|| metric(k, black_box(a.as_slice()), black_box(b.as_slice())))
                });
            }
            group.finish();
        }
    }
}

/// `dim` codes uniform over all of `i8`, deterministic in the seed.
fn codes(rng: &mut SplitMix64, dim: usize) -> Vec<i8> {
    (0..dim)
        .map(|_| (rng.next_u64() >> 56) as u8 as i8)
        .collect()
}

fn code_kernels(c: &mut Criterion) {
    let levels = kernels::available_i8();
    for dim in DIMS {
        let mut rng = SplitMix64::new(dim as u64);
        let (a, b) = (codes(&mut rng, dim), codes(&mut rng, dim));
        for name in ["dot_i8", "l2_i8"] {
            let mut group = c.benchmark_group(format!("kernels/{name}/d{dim}"));
            for &isa in &levels {
                let k =
                    kernels::for_i8_isa(isa).expect("available_i8() lists only runnable levels");
                group.bench_function(BenchmarkId::from_parameter(isa), |bench| {
                    bench.iter(|| {
                        let (x, y) = (black_box(a.as_slice()), black_box(b.as_slice()));
                        if name == "dot_i8" {
                            i64::from(I8Kernels::dot_i8(k, x, y))
                        } else {
                            i64::from(I8Kernels::l2_i8(k, x, y))
                        }
                    })
                });
            }
            group.finish();
        }
    }
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(30)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1))
}

criterion_group! {
    name = benches;
    config = config();
    targets = distance_kernels, code_kernels
}
criterion_main!(benches);
