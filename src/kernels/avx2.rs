//! AVX2 + FMA kernels (8 `f32` lanes per register).
//!
//! Layout of every kernel: 4 independent 8-lane accumulators consume 32 floats
//! per iteration (enough independent FMA chains to hide the FMA latency), then
//! single 8-float steps, then a scalar tail of at most 7 elements. All loads are
//! unaligned (`_mm256_loadu_ps`), so any sub-slice works.
//!
//! # Soundness
//!
//! The `#[target_feature]` functions are `unsafe` because calling them on a CPU
//! without AVX2/FMA is undefined behaviour. The safe wrappers below are private
//! to this module; the only way to reach them is the [`Kernels`] table returned
//! by [`kernels`], which checks `is_x86_feature_detected!` for both features
//! before handing the wrappers out. The kernels read only the common prefix
//! `min(a.len(), b.len())` of their inputs, so they are in bounds for any
//! slices; [`Kernels`] additionally asserts equal lengths.
//!
//! # `i8` codes
//!
//! [`i8_kernels`] builds the [`I8Kernels`] table, which needs AVX2 only (no
//! FMA). Both kernels widen the bytes to 16-bit lanes before multiplying, so
//! every product and every pairwise sum of `_mm256_madd_epi16` is exact (no
//! `_mm256_maddubs_epi16`, whose saturating 16-bit sums would be wrong for
//! `(-128)·(-128) + (-128)·(-128)`). The 32-bit lane sums wrap modulo 2^32,
//! and for inputs up to [`MAX_I8_LEN`](super::MAX_I8_LEN) long the true result
//! fits the return type, so the wrapped sum is the exact one. `dot_i8` takes
//! 32 codes per step, then 16; `l2_i8` takes 64, then 32; the scalar loop
//! finishes the last few codes (fewer than 16 or 32).
#![deny(unsafe_op_in_unsafe_fn)]

use core::arch::x86_64::{
    __m128i, __m256, __m256i, _mm256_add_epi32, _mm256_add_ps, _mm256_castps256_ps128,
    _mm256_castsi256_si128, _mm256_cvtepi8_epi16, _mm256_extractf128_ps, _mm256_extracti128_si256,
    _mm256_fmadd_ps, _mm256_loadu_ps, _mm256_loadu_si256, _mm256_madd_epi16, _mm256_max_epi8,
    _mm256_min_epi8, _mm256_setzero_ps, _mm256_setzero_si256, _mm256_sub_epi8, _mm256_sub_ps,
    _mm256_unpackhi_epi8, _mm256_unpacklo_epi8, _mm_add_epi32, _mm_add_ps, _mm_add_ss,
    _mm_cvtsi128_si32, _mm_cvtss_f32, _mm_loadu_si128, _mm_movehdup_ps, _mm_movehl_ps,
    _mm_shuffle_epi32,
};

use super::{I8Isa, I8Kernels, Isa, Kernels};

/// Returns the AVX2+FMA kernel table, or `None` if the running CPU lacks
/// either feature.
pub(super) fn kernels() -> Option<Kernels> {
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        Some(Kernels {
            isa: Isa::Avx2,
            l2_squared,
            dot,
            cosine_distance,
            norm_squared,
        })
    } else {
        None
    }
}

/// Returns the AVX2 table for `i8` codes, or `None` if the running CPU lacks
/// AVX2.
pub(super) fn i8_kernels() -> Option<I8Kernels> {
    if is_x86_feature_detected!("avx2") {
        Some(I8Kernels {
            isa: I8Isa::Avx2,
            dot_i8,
            l2_i8,
        })
    } else {
        None
    }
}

// ---------------------------------------------------------------------------
// Safe wrappers: private, only reachable through the table built by `kernels`.
// Each compiles to a tail jump into the `#[target_feature]` function.
// ---------------------------------------------------------------------------

/// Safe entry point for [`l2_squared_avx2`]; see the module's soundness notes.
#[allow(unsafe_code)]
fn l2_squared(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: this private function is only stored in the table built by
    // `kernels()`, which returns it only after avx2 and fma were detected at run
    // time; the kernel reads only min(a.len(), b.len()) elements of each slice.
    unsafe { l2_squared_avx2(a, b) }
}

/// Safe entry point for [`dot_avx2`]; see the module's soundness notes.
#[allow(unsafe_code)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: this private function is only stored in the table built by
    // `kernels()`, which returns it only after avx2 and fma were detected at run
    // time; the kernel reads only min(a.len(), b.len()) elements of each slice.
    unsafe { dot_avx2(a, b) }
}

/// Safe entry point for [`cosine_distance_avx2`]; see the module's soundness notes.
#[allow(unsafe_code)]
fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
    // SAFETY: this private function is only stored in the table built by
    // `kernels()`, which returns it only after avx2 and fma were detected at run
    // time; the kernel reads only min(a.len(), b.len()) elements of each slice.
    unsafe { cosine_distance_avx2(a, b) }
}

/// Safe entry point for [`norm_squared_avx2`]; see the module's soundness notes.
#[allow(unsafe_code)]
fn norm_squared(a: &[f32]) -> f32 {
    // SAFETY: this private function is only stored in the table built by
    // `kernels()`, which returns it only after avx2 and fma were detected at run
    // time; the kernel reads only a.len() elements of `a`.
    unsafe { norm_squared_avx2(a) }
}

/// Safe entry point for [`dot_i8_avx2`]; see the module's soundness notes.
#[allow(unsafe_code)]
fn dot_i8(a: &[i8], b: &[i8]) -> i32 {
    // SAFETY: this private function is only stored in the table built by
    // `i8_kernels()`, which returns it only after avx2 was detected at run
    // time; the kernel reads only min(a.len(), b.len()) elements of each slice.
    unsafe { dot_i8_avx2(a, b) }
}

/// Safe entry point for [`l2_i8_avx2`]; see the module's soundness notes.
#[allow(unsafe_code)]
fn l2_i8(a: &[i8], b: &[i8]) -> u32 {
    // SAFETY: this private function is only stored in the table built by
    // `i8_kernels()`, which returns it only after avx2 was detected at run
    // time; the kernel reads only min(a.len(), b.len()) elements of each slice.
    unsafe { l2_i8_avx2(a, b) }
}

// ---------------------------------------------------------------------------
// Kernels.
// ---------------------------------------------------------------------------

/// Horizontal sum of the 8 lanes of `v`.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn hsum(v: __m256) -> f32 {
    let lo = _mm256_castps256_ps128(v);
    let hi = _mm256_extractf128_ps::<1>(v);
    let s = _mm_add_ps(lo, hi); // 4 lanes: [s0, s1, s2, s3]
    let odd = _mm_movehdup_ps(s); // [s1, s1, s3, s3]
    let s = _mm_add_ps(s, odd); // [s0+s1, _, s2+s3, _]
    let high = _mm_movehl_ps(odd, s); // [s2+s3, ...]
    _mm_cvtss_f32(_mm_add_ss(s, high))
}

/// Adds the four accumulators pairwise and sums the lanes.
#[inline]
#[target_feature(enable = "avx2,fma")]
fn reduce4(a0: __m256, a1: __m256, a2: __m256, a3: __m256) -> f32 {
    hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)))
}

/// Squared Euclidean distance over the common prefix of `a` and `b`.
///
/// # Safety
///
/// The CPU must support AVX2 and FMA.
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
unsafe fn l2_squared_avx2(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut acc2 = _mm256_setzero_ps();
    let mut acc3 = _mm256_setzero_ps();
    let mut i = 0;
    while i + 32 <= n {
        // SAFETY: i + 32 <= n <= a.len(), b.len(), so the 32 floats starting at
        // pa + i and pb + i are in bounds; loadu has no alignment requirement.
        unsafe {
            let d0 = _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)));
            let d1 = _mm256_sub_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
            );
            let d2 = _mm256_sub_ps(
                _mm256_loadu_ps(pa.add(i + 16)),
                _mm256_loadu_ps(pb.add(i + 16)),
            );
            let d3 = _mm256_sub_ps(
                _mm256_loadu_ps(pa.add(i + 24)),
                _mm256_loadu_ps(pb.add(i + 24)),
            );
            acc0 = _mm256_fmadd_ps(d0, d0, acc0);
            acc1 = _mm256_fmadd_ps(d1, d1, acc1);
            acc2 = _mm256_fmadd_ps(d2, d2, acc2);
            acc3 = _mm256_fmadd_ps(d3, d3, acc3);
        }
        i += 32;
    }
    while i + 8 <= n {
        // SAFETY: i + 8 <= n <= a.len(), b.len(), so the 8 floats starting at
        // pa + i and pb + i are in bounds; loadu has no alignment requirement.
        let d = unsafe { _mm256_sub_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
        acc0 = _mm256_fmadd_ps(d, d, acc0);
        i += 8;
    }
    let mut sum = reduce4(acc0, acc1, acc2, acc3);
    for (x, y) in a[i..n].iter().zip(&b[i..n]) {
        let d = x - y;
        sum += d * d;
    }
    sum
}

/// Inner product over the common prefix of `a` and `b`.
///
/// # Safety
///
/// The CPU must support AVX2 and FMA.
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut acc2 = _mm256_setzero_ps();
    let mut acc3 = _mm256_setzero_ps();
    let mut i = 0;
    while i + 32 <= n {
        // SAFETY: i + 32 <= n <= a.len(), b.len(), so the 32 floats starting at
        // pa + i and pb + i are in bounds; loadu has no alignment requirement.
        unsafe {
            acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0);
            acc1 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 8)),
                _mm256_loadu_ps(pb.add(i + 8)),
                acc1,
            );
            acc2 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 16)),
                _mm256_loadu_ps(pb.add(i + 16)),
                acc2,
            );
            acc3 = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i + 24)),
                _mm256_loadu_ps(pb.add(i + 24)),
                acc3,
            );
        }
        i += 32;
    }
    while i + 8 <= n {
        // SAFETY: i + 8 <= n <= a.len(), b.len(), so the 8 floats starting at
        // pa + i and pb + i are in bounds; loadu has no alignment requirement.
        acc0 = unsafe {
            _mm256_fmadd_ps(_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i)), acc0)
        };
        i += 8;
    }
    let mut sum = reduce4(acc0, acc1, acc2, acc3);
    for (x, y) in a[i..n].iter().zip(&b[i..n]) {
        sum += x * y;
    }
    sum
}

/// Squared Euclidean norm of `a`.
///
/// # Safety
///
/// The CPU must support AVX2 and FMA.
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
unsafe fn norm_squared_avx2(a: &[f32]) -> f32 {
    let n = a.len();
    let pa = a.as_ptr();
    let mut acc0 = _mm256_setzero_ps();
    let mut acc1 = _mm256_setzero_ps();
    let mut acc2 = _mm256_setzero_ps();
    let mut acc3 = _mm256_setzero_ps();
    let mut i = 0;
    while i + 32 <= n {
        // SAFETY: i + 32 <= n == a.len(), so the 32 floats starting at pa + i
        // are in bounds; loadu has no alignment requirement.
        unsafe {
            let x0 = _mm256_loadu_ps(pa.add(i));
            let x1 = _mm256_loadu_ps(pa.add(i + 8));
            let x2 = _mm256_loadu_ps(pa.add(i + 16));
            let x3 = _mm256_loadu_ps(pa.add(i + 24));
            acc0 = _mm256_fmadd_ps(x0, x0, acc0);
            acc1 = _mm256_fmadd_ps(x1, x1, acc1);
            acc2 = _mm256_fmadd_ps(x2, x2, acc2);
            acc3 = _mm256_fmadd_ps(x3, x3, acc3);
        }
        i += 32;
    }
    while i + 8 <= n {
        // SAFETY: i + 8 <= n == a.len(), so the 8 floats starting at pa + i are
        // in bounds; loadu has no alignment requirement.
        let x = unsafe { _mm256_loadu_ps(pa.add(i)) };
        acc0 = _mm256_fmadd_ps(x, x, acc0);
        i += 8;
    }
    let mut sum = reduce4(acc0, acc1, acc2, acc3);
    for x in &a[i..n] {
        sum += x * x;
    }
    sum
}

/// Cosine distance over the common prefix of `a` and `b`, accumulating
/// `a·b`, `|a|²` and `|b|²` in a single pass (12 accumulators).
///
/// # Safety
///
/// The CPU must support AVX2 and FMA.
#[allow(unsafe_code)]
#[target_feature(enable = "avx2,fma")]
unsafe fn cosine_distance_avx2(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut ab = [_mm256_setzero_ps(); 4];
    let mut aa = [_mm256_setzero_ps(); 4];
    let mut bb = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    while i + 32 <= n {
        for k in 0..4 {
            // SAFETY: i + 8k + 8 <= i + 32 <= n <= a.len(), b.len(), so the 8
            // floats starting at pa + i + 8k and pb + i + 8k are in bounds;
            // loadu has no alignment requirement.
            let (x, y) = unsafe {
                (
                    _mm256_loadu_ps(pa.add(i + 8 * k)),
                    _mm256_loadu_ps(pb.add(i + 8 * k)),
                )
            };
            ab[k] = _mm256_fmadd_ps(x, y, ab[k]);
            aa[k] = _mm256_fmadd_ps(x, x, aa[k]);
            bb[k] = _mm256_fmadd_ps(y, y, bb[k]);
        }
        i += 32;
    }
    while i + 8 <= n {
        // SAFETY: i + 8 <= n <= a.len(), b.len(), so the 8 floats starting at
        // pa + i and pb + i are in bounds; loadu has no alignment requirement.
        let (x, y) = unsafe { (_mm256_loadu_ps(pa.add(i)), _mm256_loadu_ps(pb.add(i))) };
        ab[0] = _mm256_fmadd_ps(x, y, ab[0]);
        aa[0] = _mm256_fmadd_ps(x, x, aa[0]);
        bb[0] = _mm256_fmadd_ps(y, y, bb[0]);
        i += 8;
    }
    let mut sab = reduce4(ab[0], ab[1], ab[2], ab[3]);
    let mut saa = reduce4(aa[0], aa[1], aa[2], aa[3]);
    let mut sbb = reduce4(bb[0], bb[1], bb[2], bb[3]);
    for (x, y) in a[i..n].iter().zip(&b[i..n]) {
        sab += x * y;
        saa += x * x;
        sbb += y * y;
    }
    super::cosine_from_parts(sab, saa, sbb)
}

// ---------------------------------------------------------------------------
// Kernels on `i8` codes.
// ---------------------------------------------------------------------------

/// Wrapping sum of the 8 `i32` lanes of `v`.
#[inline]
#[target_feature(enable = "avx2")]
fn hsum_epi32(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s)); // + the other 64-bit half
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s)); // + the neighbouring lane
    _mm_cvtsi128_si32(s)
}

/// `Σ x[i]·y[i]` of 16 sign-extended codes, as 8 `i32` lanes.
///
/// `_mm256_madd_epi16` adds two products of at most `2^14` each: exact.
#[inline]
#[target_feature(enable = "avx2")]
fn dot16_epi32(x: __m128i, y: __m128i) -> __m256i {
    _mm256_madd_epi16(_mm256_cvtepi8_epi16(x), _mm256_cvtepi8_epi16(y))
}

/// Inner product of `i8` codes over the common prefix of `a` and `b`.
///
/// # Safety
///
/// The CPU must support AVX2.
#[allow(unsafe_code)]
#[target_feature(enable = "avx2")]
unsafe fn dot_i8_avx2(a: &[i8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm256_setzero_si256();
    let mut acc1 = _mm256_setzero_si256();
    let mut i = 0;
    while i + 32 <= n {
        // SAFETY: i + 32 <= n <= a.len(), b.len(), so the 32 bytes starting at
        // pa + i and pb + i are in bounds; loadu has no alignment requirement.
        let (x0, y0, x1, y1) = unsafe {
            (
                _mm_loadu_si128(pa.add(i).cast::<__m128i>()),
                _mm_loadu_si128(pb.add(i).cast::<__m128i>()),
                _mm_loadu_si128(pa.add(i + 16).cast::<__m128i>()),
                _mm_loadu_si128(pb.add(i + 16).cast::<__m128i>()),
            )
        };
        acc0 = _mm256_add_epi32(acc0, dot16_epi32(x0, y0));
        acc1 = _mm256_add_epi32(acc1, dot16_epi32(x1, y1));
        i += 32;
    }
    if i + 16 <= n {
        // SAFETY: i + 16 <= n <= a.len(), b.len(), so the 16 bytes starting at
        // pa + i and pb + i are in bounds; loadu has no alignment requirement.
        let (x, y) = unsafe {
            (
                _mm_loadu_si128(pa.add(i).cast::<__m128i>()),
                _mm_loadu_si128(pb.add(i).cast::<__m128i>()),
            )
        };
        acc0 = _mm256_add_epi32(acc0, dot16_epi32(x, y));
        i += 16;
    }
    hsum_epi32(_mm256_add_epi32(acc0, acc1)).wrapping_add(super::scalar::dot_i8(&a[i..n], &b[i..n]))
}

/// `Σ (x[i] - y[i])²` of 32 codes, as 8 `i32` lanes.
///
/// `max - min` of two signed bytes lies in `0..=255`, which the wrapping byte
/// subtraction yields exactly when read as unsigned; zero-extended to 16 bits,
/// `_mm256_madd_epi16` adds two squares of at most `255²`: exact. The unpacks
/// interleave within 128-bit lanes, which reorders terms but not their sum.
#[inline]
#[target_feature(enable = "avx2")]
fn l2_32_epi32(x: __m256i, y: __m256i) -> __m256i {
    let d = _mm256_sub_epi8(_mm256_max_epi8(x, y), _mm256_min_epi8(x, y));
    let zero = _mm256_setzero_si256();
    let lo = _mm256_unpacklo_epi8(d, zero);
    let hi = _mm256_unpackhi_epi8(d, zero);
    _mm256_add_epi32(_mm256_madd_epi16(lo, lo), _mm256_madd_epi16(hi, hi))
}

/// Squared Euclidean distance of `i8` codes over the common prefix of `a` and
/// `b`.
///
/// # Safety
///
/// The CPU must support AVX2.
#[allow(unsafe_code)]
#[target_feature(enable = "avx2")]
unsafe fn l2_i8_avx2(a: &[i8], b: &[i8]) -> u32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm256_setzero_si256();
    let mut acc1 = _mm256_setzero_si256();
    let mut i = 0;
    while i + 64 <= n {
        // SAFETY: i + 64 <= n <= a.len(), b.len(), so the 64 bytes starting at
        // pa + i and pb + i are in bounds; loadu has no alignment requirement.
        let (x0, y0, x1, y1) = unsafe {
            (
                _mm256_loadu_si256(pa.add(i).cast::<__m256i>()),
                _mm256_loadu_si256(pb.add(i).cast::<__m256i>()),
                _mm256_loadu_si256(pa.add(i + 32).cast::<__m256i>()),
                _mm256_loadu_si256(pb.add(i + 32).cast::<__m256i>()),
            )
        };
        acc0 = _mm256_add_epi32(acc0, l2_32_epi32(x0, y0));
        acc1 = _mm256_add_epi32(acc1, l2_32_epi32(x1, y1));
        i += 64;
    }
    if i + 32 <= n {
        // SAFETY: i + 32 <= n <= a.len(), b.len(), so the 32 bytes starting at
        // pa + i and pb + i are in bounds; loadu has no alignment requirement.
        let (x, y) = unsafe {
            (
                _mm256_loadu_si256(pa.add(i).cast::<__m256i>()),
                _mm256_loadu_si256(pb.add(i).cast::<__m256i>()),
            )
        };
        acc0 = _mm256_add_epi32(acc0, l2_32_epi32(x, y));
        i += 32;
    }
    // The lanes hold a u32 sum in i32 bits; the cast reinterprets them.
    let simd = hsum_epi32(_mm256_add_epi32(acc0, acc1)) as u32;
    simd.wrapping_add(super::scalar::l2_i8(&a[i..n], &b[i..n]))
}
