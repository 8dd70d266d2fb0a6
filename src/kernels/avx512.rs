//! AVX-512F kernels (16 `f32` lanes per register).
//!
//! Layout of every kernel: 4 independent 16-lane accumulators consume 64 floats
//! per iteration, then single 16-float steps, then one masked load
//! (`_mm512_maskz_loadu_ps`) for the last `n % 16` elements. Masked-off lanes are
//! neither read (so they cannot fault) nor counted (they load as zero, which adds
//! nothing to any of the sums). All loads are unaligned.
//!
//! # Soundness
//!
//! The `#[target_feature]` functions are `unsafe` because calling them on a CPU
//! without AVX-512F is undefined behaviour. The safe wrappers below are private
//! to this module; the only way to reach them is the [`Kernels`] table returned
//! by [`kernels`], which checks `is_x86_feature_detected!("avx512f")` before
//! handing the wrappers out. The kernels read only the common prefix
//! `min(a.len(), b.len())` of their inputs, so they are in bounds for any
//! slices; [`Kernels`] additionally asserts equal lengths.
#![deny(unsafe_op_in_unsafe_fn)]

use core::arch::x86_64::{
    __m512, __mmask16, _mm512_add_ps, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_maskz_loadu_ps,
    _mm512_reduce_add_ps, _mm512_setzero_ps, _mm512_sub_ps,
};

use super::{Isa, Kernels};

/// Returns the AVX-512F kernel table, or `None` if the running CPU lacks it.
pub(super) fn kernels() -> Option<Kernels> {
    if is_x86_feature_detected!("avx512f") {
        Some(Kernels {
            isa: Isa::Avx512,
            l2_squared,
            dot,
            cosine_distance,
            norm_squared,
        })
    } else {
        None
    }
}

// ---------------------------------------------------------------------------
// Safe wrappers: private, only reachable through the table built by `kernels`.
// ---------------------------------------------------------------------------

/// Safe entry point for [`l2_squared_avx512`]; see the module's soundness notes.
#[allow(unsafe_code)]
fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: this private function is only stored in the table built by
    // `kernels()`, which returns it only after avx512f was detected at run time;
    // the kernel reads only min(a.len(), b.len()) elements of each slice.
    unsafe { l2_squared_avx512(a, b) }
}

/// Safe entry point for [`dot_avx512`]; see the module's soundness notes.
#[allow(unsafe_code)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: this private function is only stored in the table built by
    // `kernels()`, which returns it only after avx512f was detected at run time;
    // the kernel reads only min(a.len(), b.len()) elements of each slice.
    unsafe { dot_avx512(a, b) }
}

/// Safe entry point for [`cosine_distance_avx512`]; see the module's soundness notes.
#[allow(unsafe_code)]
fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: this private function is only stored in the table built by
    // `kernels()`, which returns it only after avx512f was detected at run time;
    // the kernel reads only min(a.len(), b.len()) elements of each slice.
    unsafe { cosine_distance_avx512(a, b) }
}

/// Safe entry point for [`norm_squared_avx512`]; see the module's soundness notes.
#[allow(unsafe_code)]
fn norm_squared(a: &[f32]) -> f32 {
    // SAFETY: this private function is only stored in the table built by
    // `kernels()`, which returns it only after avx512f was detected at run time;
    // the kernel reads only a.len() elements of `a`.
    unsafe { norm_squared_avx512(a) }
}

// ---------------------------------------------------------------------------
// Kernels.
// ---------------------------------------------------------------------------

/// Mask selecting the low `rem` lanes, for `rem` in `1..16`.
#[inline]
fn tail_mask(rem: usize) -> __mmask16 {
    debug_assert!(rem > 0 && rem < 16);
    ((1u32 << rem) - 1) as __mmask16
}

/// Adds the four accumulators pairwise and sums the lanes.
#[inline]
#[target_feature(enable = "avx512f")]
fn reduce4(a0: __m512, a1: __m512, a2: __m512, a3: __m512) -> f32 {
    _mm512_reduce_add_ps(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)))
}

/// Squared Euclidean distance over the common prefix of `a` and `b`.
///
/// # Safety
///
/// The CPU must support AVX-512F.
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f")]
unsafe fn l2_squared_avx512(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm512_setzero_ps();
    let mut acc1 = _mm512_setzero_ps();
    let mut acc2 = _mm512_setzero_ps();
    let mut acc3 = _mm512_setzero_ps();
    let mut i = 0;
    while i + 64 <= n {
        // SAFETY: i + 64 <= n <= a.len(), b.len(), so the 64 floats starting at
        // pa + i and pb + i are in bounds; loadu has no alignment requirement.
        unsafe {
            let d0 = _mm512_sub_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)));
            let d1 = _mm512_sub_ps(
                _mm512_loadu_ps(pa.add(i + 16)),
                _mm512_loadu_ps(pb.add(i + 16)),
            );
            let d2 = _mm512_sub_ps(
                _mm512_loadu_ps(pa.add(i + 32)),
                _mm512_loadu_ps(pb.add(i + 32)),
            );
            let d3 = _mm512_sub_ps(
                _mm512_loadu_ps(pa.add(i + 48)),
                _mm512_loadu_ps(pb.add(i + 48)),
            );
            acc0 = _mm512_fmadd_ps(d0, d0, acc0);
            acc1 = _mm512_fmadd_ps(d1, d1, acc1);
            acc2 = _mm512_fmadd_ps(d2, d2, acc2);
            acc3 = _mm512_fmadd_ps(d3, d3, acc3);
        }
        i += 64;
    }
    while i + 16 <= n {
        // SAFETY: i + 16 <= n <= a.len(), b.len(), so the 16 floats starting at
        // pa + i and pb + i are in bounds; loadu has no alignment requirement.
        let d = unsafe { _mm512_sub_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i))) };
        acc0 = _mm512_fmadd_ps(d, d, acc0);
        i += 16;
    }
    if i < n {
        let m = tail_mask(n - i);
        // SAFETY: the mask enables only the n - i < 16 lanes at pa + i .. pa + n
        // and pb + i .. pb + n, which are in bounds; masked-off lanes are not
        // accessed, so they cannot fault.
        let d = unsafe {
            _mm512_sub_ps(
                _mm512_maskz_loadu_ps(m, pa.add(i)),
                _mm512_maskz_loadu_ps(m, pb.add(i)),
            )
        };
        acc1 = _mm512_fmadd_ps(d, d, acc1);
    }
    reduce4(acc0, acc1, acc2, acc3)
}

/// Inner product over the common prefix of `a` and `b`.
///
/// # Safety
///
/// The CPU must support AVX-512F.
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f")]
unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm512_setzero_ps();
    let mut acc1 = _mm512_setzero_ps();
    let mut acc2 = _mm512_setzero_ps();
    let mut acc3 = _mm512_setzero_ps();
    let mut i = 0;
    while i + 64 <= n {
        // SAFETY: i + 64 <= n <= a.len(), b.len(), so the 64 floats starting at
        // pa + i and pb + i are in bounds; loadu has no alignment requirement.
        unsafe {
            acc0 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm512_fmadd_ps(
                _mm512_loadu_ps(pa.add(i + 16)),
                _mm512_loadu_ps(pb.add(i + 16)),
                acc1,
            );
            acc2 = _mm512_fmadd_ps(
                _mm512_loadu_ps(pa.add(i + 32)),
                _mm512_loadu_ps(pb.add(i + 32)),
                acc2,
            );
            acc3 = _mm512_fmadd_ps(
                _mm512_loadu_ps(pa.add(i + 48)),
                _mm512_loadu_ps(pb.add(i + 48)),
                acc3,
            );
        }
        i += 64;
    }
    while i + 16 <= n {
        // SAFETY: i + 16 <= n <= a.len(), b.len(), so the 16 floats starting at
        // pa + i and pb + i are in bounds; loadu has no alignment requirement.
        acc0 = unsafe {
            _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), acc0)
        };
        i += 16;
    }
    if i < n {
        let m = tail_mask(n - i);
        // SAFETY: the mask enables only the n - i < 16 lanes at pa + i .. pa + n
        // and pb + i .. pb + n, which are in bounds; masked-off lanes are not
        // accessed, so they cannot fault.
        acc1 = unsafe {
            _mm512_fmadd_ps(
                _mm512_maskz_loadu_ps(m, pa.add(i)),
                _mm512_maskz_loadu_ps(m, pb.add(i)),
                acc1,
            )
        };
    }
    reduce4(acc0, acc1, acc2, acc3)
}

/// Squared Euclidean norm of `a`.
///
/// # Safety
///
/// The CPU must support AVX-512F.
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f")]
unsafe fn norm_squared_avx512(a: &[f32]) -> f32 {
    let n = a.len();
    let pa = a.as_ptr();
    let mut acc0 = _mm512_setzero_ps();
    let mut acc1 = _mm512_setzero_ps();
    let mut acc2 = _mm512_setzero_ps();
    let mut acc3 = _mm512_setzero_ps();
    let mut i = 0;
    while i + 64 <= n {
        // SAFETY: i + 64 <= n == a.len(), so the 64 floats starting at pa + i
        // are in bounds; loadu has no alignment requirement.
        unsafe {
            let x0 = _mm512_loadu_ps(pa.add(i));
            let x1 = _mm512_loadu_ps(pa.add(i + 16));
            let x2 = _mm512_loadu_ps(pa.add(i + 32));
            let x3 = _mm512_loadu_ps(pa.add(i + 48));
            acc0 = _mm512_fmadd_ps(x0, x0, acc0);
            acc1 = _mm512_fmadd_ps(x1, x1, acc1);
            acc2 = _mm512_fmadd_ps(x2, x2, acc2);
            acc3 = _mm512_fmadd_ps(x3, x3, acc3);
        }
        i += 64;
    }
    while i + 16 <= n {
        // SAFETY: i + 16 <= n == a.len(), so the 16 floats starting at pa + i
        // are in bounds; loadu has no alignment requirement.
        let x = unsafe { _mm512_loadu_ps(pa.add(i)) };
        acc0 = _mm512_fmadd_ps(x, x, acc0);
        i += 16;
    }
    if i < n {
        let m = tail_mask(n - i);
        // SAFETY: the mask enables only the n - i < 16 lanes at pa + i .. pa + n,
        // which are in bounds; masked-off lanes are not accessed, so they cannot
        // fault.
        let x = unsafe { _mm512_maskz_loadu_ps(m, pa.add(i)) };
        acc1 = _mm512_fmadd_ps(x, x, acc1);
    }
    reduce4(acc0, acc1, acc2, acc3)
}

/// Cosine distance over the common prefix of `a` and `b`, accumulating
/// `a·b`, `|a|²` and `|b|²` in a single pass (12 accumulators).
///
/// # Safety
///
/// The CPU must support AVX-512F.
#[allow(unsafe_code)]
#[target_feature(enable = "avx512f")]
unsafe fn cosine_distance_avx512(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut ab = [_mm512_setzero_ps(); 4];
    let mut aa = [_mm512_setzero_ps(); 4];
    let mut bb = [_mm512_setzero_ps(); 4];
    let mut i = 0;
    while i + 64 <= n {
        for k in 0..4 {
            // SAFETY: i + 16k + 16 <= i + 64 <= n <= a.len(), b.len(), so the 16
            // floats starting at pa + i + 16k and pb + i + 16k are in bounds;
            // loadu has no alignment requirement.
            let (x, y) = unsafe {
                (
                    _mm512_loadu_ps(pa.add(i + 16 * k)),
                    _mm512_loadu_ps(pb.add(i + 16 * k)),
                )
            };
            ab[k] = _mm512_fmadd_ps(x, y, ab[k]);
            aa[k] = _mm512_fmadd_ps(x, x, aa[k]);
            bb[k] = _mm512_fmadd_ps(y, y, bb[k]);
        }
        i += 64;
    }
    while i + 16 <= n {
        // SAFETY: i + 16 <= n <= a.len(), b.len(), so the 16 floats starting at
        // pa + i and pb + i are in bounds; loadu has no alignment requirement.
        let (x, y) = unsafe { (_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i))) };
        ab[0] = _mm512_fmadd_ps(x, y, ab[0]);
        aa[0] = _mm512_fmadd_ps(x, x, aa[0]);
        bb[0] = _mm512_fmadd_ps(y, y, bb[0]);
        i += 16;
    }
    if i < n {
        let m = tail_mask(n - i);
        // SAFETY: the mask enables only the n - i < 16 lanes at pa + i .. pa + n
        // and pb + i .. pb + n, which are in bounds; masked-off lanes are not
        // accessed, so they cannot fault.
        let (x, y) = unsafe {
            (
                _mm512_maskz_loadu_ps(m, pa.add(i)),
                _mm512_maskz_loadu_ps(m, pb.add(i)),
            )
        };
        ab[1] = _mm512_fmadd_ps(x, y, ab[1]);
        aa[1] = _mm512_fmadd_ps(x, x, aa[1]);
        bb[1] = _mm512_fmadd_ps(y, y, bb[1]);
    }
    super::cosine_from_parts(
        reduce4(ab[0], ab[1], ab[2], ab[3]),
        reduce4(aa[0], aa[1], aa[2], aa[3]),
        reduce4(bb[0], bb[1], bb[2], bb[3]),
    )
}
