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
//! common prefix; [`Kernels`](super::Kernels) and
//! [`I8Kernels`](super::I8Kernels) assert equal lengths before calling them.
//!
//! The `i8` kernels are plain loops with one integer accumulator: integer sums
//! are exact in any order, so there is no rounding to match, and these loops
//! are the reference the SIMD `i8` paths must equal bit for bit.

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

/// Inner product of `i8` codes, `Σ a[i]·b[i]`, over the common prefix.
///
/// Each product lies in `-16_256..=16_384`, so the `i32` sum is exact for
/// inputs up to [`MAX_I8_LEN`](super::MAX_I8_LEN) long (`|sum| <= 2^30`); the
/// wrapper checks that bound, so the `+=` never overflows.
pub(super) fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    let mut sum = 0i32;
    for (&x, &y) in a.iter().zip(b) {
        sum += i32::from(x) * i32::from(y);
    }
    sum
}

/// Squared Euclidean distance of `i8` codes, `Σ (a[i] - b[i])²`, over the
/// common prefix.
///
/// Each term is at most `255² = 65_025`, so the `u32` sum is exact for inputs
/// up to [`MAX_I8_LEN`](super::MAX_I8_LEN) long (at most `4_261_478_400 <
/// 2^32`); the wrapper checks that bound, so the `+=` never overflows.
pub(super) fn l2_i8(a: &[i8], b: &[i8]) -> u32 {
    let mut sum = 0u32;
    for (&x, &y) in a.iter().zip(b) {
        let d = (i32::from(x) - i32::from(y)).unsigned_abs();
        sum += d * d;
    }
    sum
}
