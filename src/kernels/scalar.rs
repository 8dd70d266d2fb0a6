//! Portable scalar kernels: the fallback on every target and the reference the
//! SIMD paths are compared against.
//!
//! Each loop keeps 8 independent accumulators. That breaks the serial
//! dependency chain of a single running sum, which lets the compiler
//! vectorise the loop with whatever the baseline target offers (SSE2 on
//! x86_64, NEON on aarch64), and it makes the summation order close to the
//! SIMD paths' lane-wise order, so all paths round similarly.
//!
//! The functions tolerate slices of different lengths by only looking at the
//! common prefix; [`Kernels`](super::Kernels) asserts equal lengths before
//! calling them.

/// Number of independent accumulators (and the width of one unrolled step).
const LANES: usize = 8;

/// Sums the 8 accumulators.
///
/// A plain left-to-right sum on purpose: LLVM's SLP vectoriser derives the
/// vector layout of the accumulators from this final reduction, and with a
/// pairwise tree it splits them into 2-lane pieces joined by shuffles, while
/// a linear sum keeps them in whole 4-lane registers (measured on x86_64).
#[inline]
fn sum_lanes(acc: [f32; LANES]) -> f32 {
    acc.iter().sum()
}

/// Squared Euclidean distance `Σ (a[i] - b[i])²`.
pub(super) fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            let d = x[l] - y[l];
            acc[l] += d * d;
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ta.iter().zip(tb) {
        let d = x - y;
        tail += d * d;
    }
    sum_lanes(acc) + tail
}

/// Inner product `Σ a[i]·b[i]`.
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f32; LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (ta, tb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for l in 0..LANES {
            acc[l] += x[l] * y[l];
        }
    }
    let mut tail = 0.0f32;
    for (x, y) in ta.iter().zip(tb) {
        tail += x * y;
    }
    sum_lanes(acc) + tail
}

/// Squared Euclidean norm `Σ a[i]²`.
pub(super) fn norm_squared(a: &[f32]) -> f32 {
    let mut acc = [0.0f32; LANES];
    let ca = a.chunks_exact(LANES);
    let ta = ca.remainder();
    for x in ca {
        for l in 0..LANES {
            acc[l] += x[l] * x[l];
        }
    }
    let mut tail = 0.0f32;
    for x in ta {
        tail += x * x;
    }
    sum_lanes(acc) + tail
}

/// Cosine distance from `a·b`, `|a|²` and `|b|²`, gathered in one pass over
/// memory.
///
/// The pass walks both vectors in blocks of [`COSINE_BLOCK`] floats and runs
/// the three simple reductions over each block while it is hot in L1. Written
/// as a single loop updating all three sums, LLVM's SLP vectoriser bundles
/// `x·y` with `x·x` into a shuffle-heavy loop that measured ~1.7x slower.
pub(super) fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
    let (mut ab, mut aa, mut bb) = (0.0f32, 0.0f32, 0.0f32);
    for (x, y) in a.chunks(COSINE_BLOCK).zip(b.chunks(COSINE_BLOCK)) {
        ab += dot(x, y);
        aa += norm_squared(x);
        bb += norm_squared(y);
    }
    super::cosine_from_parts(ab, aa, bb)
}

/// Block length (in floats) of the cosine pass: 1 KiB per vector, so both
/// blocks stay in L1 across the three reductions.
const COSINE_BLOCK: usize = 256;
