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
//!
//! # `i8` codes
//!
//! Two [`I8Kernels`] tables live here, each handed out only after its features
//! are detected: [`i8_kernels_bw`] (AVX-512F + AVX-512BW) and
//! [`i8_kernels_vnni`] (those plus AVX-512 VNNI). Each kernel consumes 128
//! codes per step in two accumulators, then one 64-code step, then one masked
//! load (`_mm512_maskz_loadu_epi8`) of the last `n % 64` codes; masked-off
//! bytes are not read and load as zero, which adds nothing to either sum.
//! The 32-bit lane sums wrap modulo 2^32; for inputs up to
//! [`MAX_I8_LEN`](super::MAX_I8_LEN) long the true result fits the return
//! type, so the wrapped sum is the exact one.
//!
//! - `l2_i8` (both tables): `|x - y|` as unsigned bytes (`max - min`),
//!   zero-extended to 16 bits, squared and pairwise summed by
//!   `_mm512_madd_epi16` (at most `2·255²`, exact). The VNNI table reuses it:
//!   `_mm512_dpwssd_epi32` would only fuse the add, and chaining two of them on
//!   one accumulator is slower than independent `madd`s and a one-cycle add.
//! - `dot_i8`, AVX-512BW: sign-extend to 16 bits, `_mm512_madd_epi16`.
//! - `dot_i8`, VNNI: `_mm512_dpbusd_epi32` multiplies *unsigned* by signed
//!   bytes, so `a` is biased to `a ^ 0x80 = a + 128` (as `u8`) and the bias is
//!   taken off at the end: `Σ a·b = Σ (a + 128)·b - 128·Σ b`, with `Σ b` from a
//!   second `dpbusd` against a vector of ones. `vpdpbusd` does not saturate
//!   (that is `vpdpbusds`); each of its four products, `(a + 128)·b`, lies in
//!   `-32_640..=32_385`, so its 16-bit intermediates are exact, and at
//!   `MAX_I8_LEN` codes `|Σ (a + 128)·b| <= 2^16·32_640 < 2^31`.
#![deny(unsafe_op_in_unsafe_fn)]

use core::arch::x86_64::{
    __m512, __m512i, __mmask16, __mmask64, _mm512_add_epi32, _mm512_add_ps, _mm512_castsi512_si256,
    _mm512_cvtepi8_epi16, _mm512_dpbusd_epi32, _mm512_extracti64x4_epi64, _mm512_fmadd_ps,
    _mm512_loadu_epi8, _mm512_loadu_ps, _mm512_madd_epi16, _mm512_maskz_loadu_epi8,
    _mm512_maskz_loadu_ps, _mm512_max_epi8, _mm512_min_epi8, _mm512_reduce_add_epi32,
    _mm512_reduce_add_ps, _mm512_set1_epi8, _mm512_setzero_ps, _mm512_setzero_si512,
    _mm512_sub_epi8, _mm512_sub_ps, _mm512_unpackhi_epi8, _mm512_unpacklo_epi8, _mm512_xor_si512,
};

use super::{I8Isa, I8Kernels, Isa, Kernels};

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

/// Whether the CPU runs the AVX-512F + AVX-512BW instructions the `i8`
/// kernels use.
fn has_avx512bw() -> bool {
    is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw")
}

/// Returns the AVX-512BW table for `i8` codes, or `None` if the running CPU
/// lacks AVX-512F or AVX-512BW.
pub(super) fn i8_kernels_bw() -> Option<I8Kernels> {
    if has_avx512bw() {
        Some(I8Kernels {
            isa: I8Isa::Avx512Bw,
            dot_i8: dot_i8_bw,
            l2_i8: l2_i8_bw,
        })
    } else {
        None
    }
}

/// Returns the AVX-512 VNNI table for `i8` codes, or `None` if the running CPU
/// lacks AVX-512F, AVX-512BW or AVX-512 VNNI.
pub(super) fn i8_kernels_vnni() -> Option<I8Kernels> {
    if has_avx512bw() && is_x86_feature_detected!("avx512vnni") {
        Some(I8Kernels {
            isa: I8Isa::Avx512Vnni,
            dot_i8: dot_i8_vnni,
            // Deliberately the BW kernel; see the module notes.
            l2_i8: l2_i8_bw,
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

/// Safe entry point for [`dot_i8_avx512bw`]; see the module's soundness notes.
#[allow(unsafe_code)]
fn dot_i8_bw(a: &[i8], b: &[i8]) -> i32 {
    // SAFETY: this private function is only stored in the tables built by
    // `i8_kernels_bw()`, which returns it only after avx512f and avx512bw were
    // detected at run time; the kernel reads only min(a.len(), b.len())
    // elements of each slice.
    unsafe { dot_i8_avx512bw(a, b) }
}

/// Safe entry point for [`l2_i8_avx512bw`]; see the module's soundness notes.
#[allow(unsafe_code)]
fn l2_i8_bw(a: &[i8], b: &[i8]) -> u32 {
    // SAFETY: this private function is only stored in the tables built by
    // `i8_kernels_bw()` and `i8_kernels_vnni()`, which return it only after
    // avx512f and avx512bw were detected at run time; the kernel reads only
    // min(a.len(), b.len()) elements of each slice.
    unsafe { l2_i8_avx512bw(a, b) }
}

/// Safe entry point for [`dot_i8_avx512vnni`]; see the module's soundness notes.
#[allow(unsafe_code)]
fn dot_i8_vnni(a: &[i8], b: &[i8]) -> i32 {
    // SAFETY: this private function is only stored in the table built by
    // `i8_kernels_vnni()`, which returns it only after avx512f, avx512bw and
    // avx512vnni were detected at run time; the kernel reads only
    // min(a.len(), b.len()) elements of each slice.
    unsafe { dot_i8_avx512vnni(a, b) }
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

// ---------------------------------------------------------------------------
// Kernels on `i8` codes.
// ---------------------------------------------------------------------------

/// Mask selecting the low `rem` bytes, for `rem` in `1..64`.
#[inline]
fn tail_mask64(rem: usize) -> __mmask64 {
    debug_assert!(rem > 0 && rem < 64);
    (1u64 << rem) - 1
}

/// `Σ x[i]·y[i]` of 64 codes, as 16 `i32` lanes: both halves sign-extended to
/// 16 bits, then `_mm512_madd_epi16` (two products of at most `2^14`: exact).
#[inline]
#[target_feature(enable = "avx512bw")]
fn dot64_bw(x: __m512i, y: __m512i) -> __m512i {
    let (xl, xh) = (
        _mm512_cvtepi8_epi16(_mm512_castsi512_si256(x)),
        _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64::<1>(x)),
    );
    let (yl, yh) = (
        _mm512_cvtepi8_epi16(_mm512_castsi512_si256(y)),
        _mm512_cvtepi8_epi16(_mm512_extracti64x4_epi64::<1>(y)),
    );
    _mm512_add_epi32(_mm512_madd_epi16(xl, yl), _mm512_madd_epi16(xh, yh))
}

/// `Σ (x[i] - y[i])²` of 64 codes, as 16 `i32` lanes.
///
/// `max - min` of two signed bytes lies in `0..=255`, which the wrapping byte
/// subtraction yields exactly when read as unsigned; zero-extended to 16 bits,
/// `_mm512_madd_epi16` adds two squares of at most `255²`: exact. The unpacks
/// interleave within 128-bit lanes, which reorders terms but not their sum.
#[inline]
#[target_feature(enable = "avx512bw")]
fn l2_64_bw(x: __m512i, y: __m512i) -> __m512i {
    let d = _mm512_sub_epi8(_mm512_max_epi8(x, y), _mm512_min_epi8(x, y));
    let zero = _mm512_setzero_si512();
    let lo = _mm512_unpacklo_epi8(d, zero);
    let hi = _mm512_unpackhi_epi8(d, zero);
    _mm512_add_epi32(_mm512_madd_epi16(lo, lo), _mm512_madd_epi16(hi, hi))
}

/// One VNNI step on 64 codes: returns `dot + Σ (x[i] + 128)·y[i]` and
/// `sum_y + Σ y[i]`, four codes per `i32` lane.
///
/// `x ^ 0x80` read as unsigned is `x + 128`. A zero `x` (a masked-off tail
/// lane) becomes 128, but its `y` is zero too, so it adds nothing.
#[inline]
#[target_feature(enable = "avx512bw,avx512vnni")]
fn dot64_vnni(dot: __m512i, sum_y: __m512i, x: __m512i, y: __m512i) -> (__m512i, __m512i) {
    let biased_x = _mm512_xor_si512(x, _mm512_set1_epi8(i8::MIN));
    (
        _mm512_dpbusd_epi32(dot, biased_x, y),
        _mm512_dpbusd_epi32(sum_y, _mm512_set1_epi8(1), y),
    )
}

/// Inner product of `i8` codes over the common prefix of `a` and `b`
/// (sign-extend and `madd`).
///
/// # Safety
///
/// The CPU must support AVX-512F and AVX-512BW.
#[allow(unsafe_code)]
#[target_feature(enable = "avx512bw")]
unsafe fn dot_i8_avx512bw(a: &[i8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm512_setzero_si512();
    let mut acc1 = _mm512_setzero_si512();
    let mut i = 0;
    while i + 128 <= n {
        // SAFETY: i + 128 <= n <= a.len(), b.len(), so the 128 bytes starting
        // at pa + i and pb + i are in bounds; loadu has no alignment
        // requirement.
        let (x0, y0, x1, y1) = unsafe {
            (
                _mm512_loadu_epi8(pa.add(i)),
                _mm512_loadu_epi8(pb.add(i)),
                _mm512_loadu_epi8(pa.add(i + 64)),
                _mm512_loadu_epi8(pb.add(i + 64)),
            )
        };
        acc0 = _mm512_add_epi32(acc0, dot64_bw(x0, y0));
        acc1 = _mm512_add_epi32(acc1, dot64_bw(x1, y1));
        i += 128;
    }
    if i + 64 <= n {
        // SAFETY: i + 64 <= n <= a.len(), b.len(), so the 64 bytes starting at
        // pa + i and pb + i are in bounds; loadu has no alignment requirement.
        let (x, y) = unsafe { (_mm512_loadu_epi8(pa.add(i)), _mm512_loadu_epi8(pb.add(i))) };
        acc0 = _mm512_add_epi32(acc0, dot64_bw(x, y));
        i += 64;
    }
    if i < n {
        let m = tail_mask64(n - i);
        // SAFETY: the mask enables only the n - i < 64 bytes at pa + i .. pa + n
        // and pb + i .. pb + n, which are in bounds; masked-off bytes are not
        // accessed, so they cannot fault.
        let (x, y) = unsafe {
            (
                _mm512_maskz_loadu_epi8(m, pa.add(i)),
                _mm512_maskz_loadu_epi8(m, pb.add(i)),
            )
        };
        acc1 = _mm512_add_epi32(acc1, dot64_bw(x, y));
    }
    _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1))
}

/// Squared Euclidean distance of `i8` codes over the common prefix of `a` and
/// `b`.
///
/// # Safety
///
/// The CPU must support AVX-512F and AVX-512BW.
#[allow(unsafe_code)]
#[target_feature(enable = "avx512bw")]
unsafe fn l2_i8_avx512bw(a: &[i8], b: &[i8]) -> u32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc0 = _mm512_setzero_si512();
    let mut acc1 = _mm512_setzero_si512();
    let mut i = 0;
    while i + 128 <= n {
        // SAFETY: i + 128 <= n <= a.len(), b.len(), so the 128 bytes starting
        // at pa + i and pb + i are in bounds; loadu has no alignment
        // requirement.
        let (x0, y0, x1, y1) = unsafe {
            (
                _mm512_loadu_epi8(pa.add(i)),
                _mm512_loadu_epi8(pb.add(i)),
                _mm512_loadu_epi8(pa.add(i + 64)),
                _mm512_loadu_epi8(pb.add(i + 64)),
            )
        };
        acc0 = _mm512_add_epi32(acc0, l2_64_bw(x0, y0));
        acc1 = _mm512_add_epi32(acc1, l2_64_bw(x1, y1));
        i += 128;
    }
    if i + 64 <= n {
        // SAFETY: i + 64 <= n <= a.len(), b.len(), so the 64 bytes starting at
        // pa + i and pb + i are in bounds; loadu has no alignment requirement.
        let (x, y) = unsafe { (_mm512_loadu_epi8(pa.add(i)), _mm512_loadu_epi8(pb.add(i))) };
        acc0 = _mm512_add_epi32(acc0, l2_64_bw(x, y));
        i += 64;
    }
    if i < n {
        let m = tail_mask64(n - i);
        // SAFETY: the mask enables only the n - i < 64 bytes at pa + i .. pa + n
        // and pb + i .. pb + n, which are in bounds; masked-off bytes are not
        // accessed, so they cannot fault (they load as zero on both sides, so
        // their difference is zero).
        let (x, y) = unsafe {
            (
                _mm512_maskz_loadu_epi8(m, pa.add(i)),
                _mm512_maskz_loadu_epi8(m, pb.add(i)),
            )
        };
        acc1 = _mm512_add_epi32(acc1, l2_64_bw(x, y));
    }
    // The lanes hold a u32 sum in i32 bits; the cast reinterprets them.
    _mm512_reduce_add_epi32(_mm512_add_epi32(acc0, acc1)) as u32
}

/// Inner product of `i8` codes over the common prefix of `a` and `b`
/// (`vpdpbusd` on `a + 128`, then the bias correction; see the module notes).
///
/// # Safety
///
/// The CPU must support AVX-512F, AVX-512BW and AVX-512 VNNI.
#[allow(unsafe_code)]
#[target_feature(enable = "avx512bw,avx512vnni")]
unsafe fn dot_i8_avx512vnni(a: &[i8], b: &[i8]) -> i32 {
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let (mut dot0, mut dot1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
    let (mut sum0, mut sum1) = (_mm512_setzero_si512(), _mm512_setzero_si512());
    let mut i = 0;
    while i + 128 <= n {
        // SAFETY: i + 128 <= n <= a.len(), b.len(), so the 128 bytes starting
        // at pa + i and pb + i are in bounds; loadu has no alignment
        // requirement.
        let (x0, y0, x1, y1) = unsafe {
            (
                _mm512_loadu_epi8(pa.add(i)),
                _mm512_loadu_epi8(pb.add(i)),
                _mm512_loadu_epi8(pa.add(i + 64)),
                _mm512_loadu_epi8(pb.add(i + 64)),
            )
        };
        (dot0, sum0) = dot64_vnni(dot0, sum0, x0, y0);
        (dot1, sum1) = dot64_vnni(dot1, sum1, x1, y1);
        i += 128;
    }
    if i + 64 <= n {
        // SAFETY: i + 64 <= n <= a.len(), b.len(), so the 64 bytes starting at
        // pa + i and pb + i are in bounds; loadu has no alignment requirement.
        let (x, y) = unsafe { (_mm512_loadu_epi8(pa.add(i)), _mm512_loadu_epi8(pb.add(i))) };
        (dot0, sum0) = dot64_vnni(dot0, sum0, x, y);
        i += 64;
    }
    if i < n {
        let m = tail_mask64(n - i);
        // SAFETY: the mask enables only the n - i < 64 bytes at pa + i .. pa + n
        // and pb + i .. pb + n, which are in bounds; masked-off bytes are not
        // accessed, so they cannot fault.
        let (x, y) = unsafe {
            (
                _mm512_maskz_loadu_epi8(m, pa.add(i)),
                _mm512_maskz_loadu_epi8(m, pb.add(i)),
            )
        };
        (dot1, sum1) = dot64_vnni(dot1, sum1, x, y);
    }
    let biased = _mm512_reduce_add_epi32(_mm512_add_epi32(dot0, dot1));
    let sum_b = _mm512_reduce_add_epi32(_mm512_add_epi32(sum0, sum1));
    // Σ a·b = Σ (a + 128)·b - 128·Σ b; exact mod 2^32, and the true value fits.
    biased.wrapping_sub(sum_b.wrapping_mul(128))
}
