//! Distance kernels: squared L2, inner product (dot) and cosine distance on
//! `f32` vectors, and exact squared L2 and dot on `i8` codes (for quantized
//! vectors), each with a scalar reference and x86_64 SIMD paths chosen at run
//! time.
//!
//! | table | entry points | ISAs, least to most capable |
//! |---|---|---|
//! | [`Kernels`] (`f32`) | [`select`], [`for_isa`], [`available`] | scalar, AVX2+FMA, AVX-512F |
//! | [`I8Kernels`] (`i8` codes) | [`select_i8`], [`for_i8_isa`], [`available_i8`] | scalar, AVX2, AVX-512BW, AVX-512 VNNI |
//!
//! The two tables are chosen independently by the same scheme, so the `i8`
//! levels (which need AVX-512BW or VNNI, not just AVX-512F) leave the `f32`
//! choice as it was.
//!
//! # Dispatch
//!
//! The instruction set is chosen **once per process**, not per call. The first
//! call to [`select`] (or [`for_isa`]) runs CPU feature detection
//! (`is_x86_feature_detected!`) and caches, in a [`std::sync::OnceLock`], a
//! `&'static` [`Kernels`] table: the chosen [`Isa`] plus plain function
//! pointers to that ISA's implementations. Every later call is an ordinary
//! indirect call through the table — no feature check, no branch on the ISA,
//! no allocation — which matters because these functions are the inner loop of
//! the HNSW search and run millions of times per query batch.
//!
//! Callers should fetch the table once (e.g. store the `&'static Kernels` in the
//! index) and call its methods:
//!
//! ```
//! let k = quiver::kernels::select();
//! let (query, candidate) = ([1.0, 2.0, 3.0], [1.0, 0.0, 3.0]);
//! assert_eq!(k.l2_squared(&query, &candidate), 4.0);
//! assert_eq!(k.dot(&query, &candidate), 10.0);
//! println!("distance kernels use {}", k.isa());
//! ```
//!
//! [`for_isa`] forces a particular path (for tests and benchmarks) and returns
//! `None` if the CPU cannot run it. On targets other than `x86_64` only
//! [`Isa::Scalar`] exists.
//!
//! The `i8` table works the same way, through [`select_i8`] and
//! [`for_i8_isa`]:
//!
//! ```
//! let k = quiver::kernels::select_i8();
//! let (query, code) = ([-128i8, 127, 5], [127i8, 127, -5]);
//! assert_eq!(k.dot_i8(&query, &code), -128 * 127 + 127 * 127 - 25);
//! assert_eq!(k.l2_i8(&query, &code), 255 * 255 + 10 * 10);
//! println!("i8 kernels use {}", k.isa());
//! ```
//!
//! # Safety
//!
//! All `unsafe` code lives in the `avx2` and `avx512` submodules. Their SIMD
//! functions are reachable only through the table those modules build *after*
//! detecting the required CPU features, and they read only the common prefix of
//! their inputs, so every method here is a safe function.
//!
//! # Numerics
//!
//! All `f32` paths accumulate in `f32` with several independent partial sums,
//! so results differ between ISAs by a few ULPs of the magnitudes involved
//! (well within `1e-4` relative for the tested dimensions up to 1536), but each
//! ISA is deterministic for given inputs.
//!
//! The `i8` kernels are integer arithmetic and exact: every ISA returns the
//! scalar result bit for bit. The result types bound the length: for codes up
//! to [`MAX_I8_LEN`] (2^16) long, `|dot_i8| <= 2^16·128² = 2^30` fits `i32` and
//! `l2_i8 <= 2^16·255² < 2^32` fits `u32`, whatever the codes; longer inputs
//! panic.

use std::fmt;
use std::sync::OnceLock;

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
mod scalar;

/// An instruction-set level a [`Kernels`] table is implemented with.
///
/// Variants are declared from least to most capable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Isa {
    /// Portable Rust loops (auto-vectorised for the target's baseline).
    Scalar,
    /// x86_64 AVX2 with fused multiply-add (8 lanes).
    Avx2,
    /// x86_64 AVX-512 Foundation (16 lanes).
    Avx512,
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2+fma",
            Isa::Avx512 => "avx512f",
        })
    }
}

/// Signature of a two-vector kernel.
type PairFn = fn(&[f32], &[f32]) -> f32;
/// Signature of a one-vector kernel.
type UnaryFn = fn(&[f32]) -> f32;

/// A table of distance kernels for one [`Isa`].
///
/// Obtain one with [`select`] (best available) or [`for_isa`]; tables are
/// `'static` and cheap to copy by reference.
pub struct Kernels {
    isa: Isa,
    l2_squared: PairFn,
    dot: PairFn,
    cosine_distance: PairFn,
    norm_squared: UnaryFn,
}

impl fmt::Debug for Kernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kernels")
            .field("isa", &self.isa)
            .finish_non_exhaustive()
    }
}

impl Kernels {
    /// The instruction set this table's functions use.
    #[inline]
    pub fn isa(&self) -> Isa {
        self.isa
    }

    /// Squared Euclidean distance `Σ (a[i] - b[i])²`.
    ///
    /// # Panics
    ///
    /// Panics if `a.len() != b.len()`.
    #[inline]
    pub fn l2_squared(&self, a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len(), "l2_squared: vector lengths differ");
        (self.l2_squared)(a, b)
    }

    /// Inner product `Σ a[i]·b[i]`.
    ///
    /// # Panics
    ///
    /// Panics if `a.len() != b.len()`.
    #[inline]
    pub fn dot(&self, a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len(), "dot: vector lengths differ");
        (self.dot)(a, b)
    }

    /// Cosine distance `1 - a·b / (|a|·|b|)`, in `[0, 2]` up to rounding
    /// (identical directions may give a tiny negative value).
    ///
    /// `a·b`, `|a|²` and `|b|²` are computed in a single pass over the data. If
    /// either vector has zero norm (including empty vectors) the result is
    /// `1.0`, i.e. "unrelated", rather than NaN.
    ///
    /// # Panics
    ///
    /// Panics if `a.len() != b.len()`.
    #[inline]
    pub fn cosine_distance(&self, a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len(), "cosine_distance: vector lengths differ");
        (self.cosine_distance)(a, b)
    }

    /// Squared Euclidean norm `Σ a[i]²`.
    #[inline]
    pub fn norm_squared(&self, a: &[f32]) -> f32 {
        (self.norm_squared)(a)
    }
}

/// Combines the three sums of a cosine pass into the distance.
///
/// Shared by all ISAs so they treat zero norms identically. The denominator is
/// formed in `f64` so `|a|²·|b|²` cannot overflow for large vectors.
#[inline]
fn cosine_from_parts(dot: f32, norm_a_sq: f32, norm_b_sq: f32) -> f32 {
    if norm_a_sq == 0.0 || norm_b_sq == 0.0 {
        return 1.0;
    }
    let denom = (f64::from(norm_a_sq) * f64::from(norm_b_sq)).sqrt();
    (1.0 - f64::from(dot) / denom) as f32
}

/// The scalar table; always available.
static SCALAR: Kernels = Kernels {
    isa: Isa::Scalar,
    l2_squared: scalar::l2_squared,
    dot: scalar::dot,
    cosine_distance: scalar::cosine_distance,
    norm_squared: scalar::norm_squared,
};

/// The AVX2+FMA table, built on first use if the CPU supports it.
#[cfg(target_arch = "x86_64")]
static AVX2: OnceLock<Option<Kernels>> = OnceLock::new();

/// The AVX-512F table, built on first use if the CPU supports it.
#[cfg(target_arch = "x86_64")]
static AVX512: OnceLock<Option<Kernels>> = OnceLock::new();

/// The best table for this CPU, chosen on the first call to [`select`].
static BEST: OnceLock<&'static Kernels> = OnceLock::new();

/// Returns the kernel table for the most capable ISA this CPU supports.
///
/// Detection runs once per process; later calls just load a cached pointer.
/// Preference order: [`Isa::Avx512`], [`Isa::Avx2`], [`Isa::Scalar`].
#[inline]
pub fn select() -> &'static Kernels {
    BEST.get_or_init(|| {
        for_isa(Isa::Avx512)
            .or_else(|| for_isa(Isa::Avx2))
            .unwrap_or(&SCALAR)
    })
}

/// Returns the kernel table for `isa`, or `None` if this CPU (or target
/// architecture) cannot run it.
///
/// Intended for tests and benchmarks that need to force a code path; normal
/// code should use [`select`].
pub fn for_isa(isa: Isa) -> Option<&'static Kernels> {
    match isa {
        Isa::Scalar => Some(&SCALAR),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => AVX2.get_or_init(avx2::kernels).as_ref(),
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => AVX512.get_or_init(avx512::kernels).as_ref(),
        #[cfg(not(target_arch = "x86_64"))]
        Isa::Avx2 | Isa::Avx512 => None,
    }
}

/// Lists the ISAs this CPU can run, from least to most capable.
///
/// Always starts with [`Isa::Scalar`]; the last entry is what [`select`] picks.
pub fn available() -> Vec<Isa> {
    [Isa::Scalar, Isa::Avx2, Isa::Avx512]
        .into_iter()
        .filter(|&isa| for_isa(isa).is_some())
        .collect()
}

/// Longest input the `i8` kernels accept: 65,536 (2^16) codes.
///
/// Up to this length the exact results cannot overflow their types, for any
/// codes: `|dot_i8| <= 2^16·(-128)² = 2^30 < 2^31` and
/// `l2_i8 <= 2^16·255² = 4_261_478_400 < 2^32`. The bound also keeps every
/// partial sum of the AVX-512 VNNI path inside `i32` (see `avx512.rs`).
/// [`I8Kernels`]' methods panic on longer inputs.
pub const MAX_I8_LEN: usize = 1 << 16;

/// An instruction-set level an [`I8Kernels`] table is implemented with.
///
/// A separate scale from [`Isa`]: the `i8` kernels need AVX2 without FMA, and
/// AVX-512BW or VNNI rather than AVX-512F. Variants are declared from least to
/// most capable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum I8Isa {
    /// Portable Rust loops, `i32` accumulation: the reference.
    Scalar,
    /// x86_64 AVX2: codes widened to `i16`, `_mm256_madd_epi16`.
    Avx2,
    /// x86_64 AVX-512F + AVX-512BW: codes widened to `i16`,
    /// `_mm512_madd_epi16`, masked tail loads.
    Avx512Bw,
    /// AVX-512BW plus AVX-512 VNNI: `dot_i8` with `_mm512_dpbusd_epi32`.
    Avx512Vnni,
}

impl fmt::Display for I8Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            I8Isa::Scalar => "scalar",
            I8Isa::Avx2 => "avx2",
            I8Isa::Avx512Bw => "avx512bw",
            I8Isa::Avx512Vnni => "avx512vnni",
        })
    }
}

/// Signature of the `i8` inner product.
type I8DotFn = fn(&[i8], &[i8]) -> i32;
/// Signature of the `i8` squared distance.
type I8L2Fn = fn(&[i8], &[i8]) -> u32;

/// A table of exact distance kernels on `i8` codes for one [`I8Isa`].
///
/// Obtain one with [`select_i8`] (best available) or [`for_i8_isa`]; tables
/// are `'static`. Every ISA returns exactly the scalar result.
pub struct I8Kernels {
    isa: I8Isa,
    dot_i8: I8DotFn,
    l2_i8: I8L2Fn,
}

impl fmt::Debug for I8Kernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("I8Kernels")
            .field("isa", &self.isa)
            .finish_non_exhaustive()
    }
}

/// The `i8` methods' precondition: equal lengths, at most [`MAX_I8_LEN`].
#[inline]
#[track_caller]
fn check_i8_lengths(what: &str, a: &[i8], b: &[i8]) {
    assert_eq!(a.len(), b.len(), "{what}: vector lengths differ");
    assert!(
        a.len() <= MAX_I8_LEN,
        "{what}: length {} exceeds MAX_I8_LEN ({MAX_I8_LEN})",
        a.len()
    );
}

impl I8Kernels {
    /// The instruction set this table's functions use.
    #[inline]
    pub fn isa(&self) -> I8Isa {
        self.isa
    }

    /// Exact inner product `Σ a[i]·b[i]` of two code vectors.
    ///
    /// # Panics
    ///
    /// Panics if `a.len() != b.len()` or if the length exceeds
    /// [`MAX_I8_LEN`] (beyond which the sum could overflow `i32`).
    #[inline]
    pub fn dot_i8(&self, a: &[i8], b: &[i8]) -> i32 {
        check_i8_lengths("dot_i8", a, b);
        (self.dot_i8)(a, b)
    }

    /// Exact squared Euclidean distance `Σ (a[i] - b[i])²` of two code
    /// vectors.
    ///
    /// # Panics
    ///
    /// Panics if `a.len() != b.len()` or if the length exceeds
    /// [`MAX_I8_LEN`] (beyond which the sum could overflow `u32`).
    #[inline]
    pub fn l2_i8(&self, a: &[i8], b: &[i8]) -> u32 {
        check_i8_lengths("l2_i8", a, b);
        (self.l2_i8)(a, b)
    }
}

/// The scalar `i8` table; always available.
static SCALAR_I8: I8Kernels = I8Kernels {
    isa: I8Isa::Scalar,
    dot_i8: scalar::dot_i8,
    l2_i8: scalar::l2_i8,
};

/// The AVX2 `i8` table, built on first use if the CPU supports it.
#[cfg(target_arch = "x86_64")]
static AVX2_I8: OnceLock<Option<I8Kernels>> = OnceLock::new();

/// The AVX-512BW `i8` table, built on first use if the CPU supports it.
#[cfg(target_arch = "x86_64")]
static AVX512BW_I8: OnceLock<Option<I8Kernels>> = OnceLock::new();

/// The AVX-512 VNNI `i8` table, built on first use if the CPU supports it.
#[cfg(target_arch = "x86_64")]
static AVX512VNNI_I8: OnceLock<Option<I8Kernels>> = OnceLock::new();

/// The best `i8` table for this CPU, chosen on the first call to
/// [`select_i8`].
static BEST_I8: OnceLock<&'static I8Kernels> = OnceLock::new();

/// Returns the `i8` kernel table for the most capable ISA this CPU supports.
///
/// Detection runs once per process; later calls just load a cached pointer.
/// Preference order: [`I8Isa::Avx512Vnni`], [`I8Isa::Avx512Bw`],
/// [`I8Isa::Avx2`], [`I8Isa::Scalar`]. Independent of [`select`].
#[inline]
pub fn select_i8() -> &'static I8Kernels {
    BEST_I8.get_or_init(|| {
        for_i8_isa(I8Isa::Avx512Vnni)
            .or_else(|| for_i8_isa(I8Isa::Avx512Bw))
            .or_else(|| for_i8_isa(I8Isa::Avx2))
            .unwrap_or(&SCALAR_I8)
    })
}

/// Returns the `i8` kernel table for `isa`, or `None` if this CPU (or target
/// architecture) cannot run it.
///
/// Intended for tests and benchmarks that need to force a code path; normal
/// code should use [`select_i8`].
pub fn for_i8_isa(isa: I8Isa) -> Option<&'static I8Kernels> {
    match isa {
        I8Isa::Scalar => Some(&SCALAR_I8),
        #[cfg(target_arch = "x86_64")]
        I8Isa::Avx2 => AVX2_I8.get_or_init(avx2::i8_kernels).as_ref(),
        #[cfg(target_arch = "x86_64")]
        I8Isa::Avx512Bw => AVX512BW_I8.get_or_init(avx512::i8_kernels_bw).as_ref(),
        #[cfg(target_arch = "x86_64")]
        I8Isa::Avx512Vnni => AVX512VNNI_I8.get_or_init(avx512::i8_kernels_vnni).as_ref(),
        #[cfg(not(target_arch = "x86_64"))]
        I8Isa::Avx2 | I8Isa::Avx512Bw | I8Isa::Avx512Vnni => None,
    }
}

/// Lists the `i8` ISAs this CPU can run, from least to most capable.
///
/// Always starts with [`I8Isa::Scalar`]; the last entry is what [`select_i8`]
/// picks.
pub fn available_i8() -> Vec<I8Isa> {
    [
        I8Isa::Scalar,
        I8Isa::Avx2,
        I8Isa::Avx512Bw,
        I8Isa::Avx512Vnni,
    ]
    .into_iter()
    .filter(|&isa| for_i8_isa(isa).is_some())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Dimensions covering: below one register, exact multiples of 8/16/32/64,
    /// one-off either side of them, and common embedding sizes.
    const DIMS: &[usize] = &[1, 3, 7, 8, 15, 16, 17, 31, 32, 33, 100, 128, 384, 768, 1536];

    /// Small deterministic generator (splitmix64), so the tests need no `rand`.
    struct SplitMix64(u64);

    impl SplitMix64 {
        fn next_u64(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        /// Uniform in [-1, 1).
        fn next_f32(&mut self) -> f32 {
            // 24 random bits -> [0, 1) exactly representable in f32.
            let unit = (self.next_u64() >> 40) as f32 / (1u32 << 24) as f32;
            unit * 2.0 - 1.0
        }

        fn vec(&mut self, dim: usize) -> Vec<f32> {
            (0..dim).map(|_| self.next_f32()).collect()
        }

        /// A code uniform over all of `i8`, except that the extremes -128 and
        /// 127 each come up one time in four, so every vector is full of
        /// worst-case magnitudes.
        fn next_i8(&mut self) -> i8 {
            let r = self.next_u64();
            match r & 7 {
                0 | 1 => i8::MIN,
                2 | 3 => i8::MAX,
                _ => (r >> 56) as u8 as i8,
            }
        }

        fn codes(&mut self, dim: usize) -> Vec<i8> {
            (0..dim).map(|_| self.next_i8()).collect()
        }
    }

    fn ref_l2_squared(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| {
                let d = f64::from(x) - f64::from(y);
                d * d
            })
            .sum()
    }

    fn ref_dot(a: &[f32], b: &[f32]) -> f64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum()
    }

    fn ref_norm_squared(a: &[f32]) -> f64 {
        ref_dot(a, a)
    }

    fn ref_cosine_distance(a: &[f32], b: &[f32]) -> f64 {
        let (na, nb) = (ref_norm_squared(a), ref_norm_squared(b));
        if na == 0.0 || nb == 0.0 {
            return 1.0;
        }
        1.0 - ref_dot(a, b) / (na * nb).sqrt()
    }

    /// Relative tolerance against the f64 reference. The `max(1.0)` turns it
    /// into an absolute tolerance for results near zero: distances between
    /// close vectors (and cosine distances of near-parallel ones) are tiny
    /// differences of large sums, where a purely relative bound would demand
    /// more precision than f32 accumulation can give.
    fn assert_close(got: f32, want: f64, what: &str) {
        let got = f64::from(got);
        assert!(
            (got - want).abs() <= 1e-4 * want.abs().max(1.0),
            "{what}: got {got}, want {want}"
        );
    }

    /// Runs `check(kernels, a, b, label)` for every available ISA and every
    /// dimension in [`DIMS`], on fresh random vectors.
    fn for_every_isa_and_dim(seed: u64, mut check: impl FnMut(&Kernels, &[f32], &[f32], &str)) {
        for isa in available() {
            let k = for_isa(isa).expect("available() lists only runnable ISAs");
            assert_eq!(k.isa(), isa);
            let mut rng = SplitMix64(seed);
            for &dim in DIMS {
                let a = rng.vec(dim);
                let b = rng.vec(dim);
                check(k, &a, &b, &format!("{isa} dim={dim}"));
            }
        }
    }

    #[test]
    fn l2_squared_matches_f64_reference_for_every_isa_and_dimension() {
        for_every_isa_and_dim(1, |k, a, b, label| {
            assert_close(k.l2_squared(a, b), ref_l2_squared(a, b), label);
        });
    }

    #[test]
    fn dot_matches_f64_reference_for_every_isa_and_dimension() {
        for_every_isa_and_dim(2, |k, a, b, label| {
            assert_close(k.dot(a, b), ref_dot(a, b), label);
        });
    }

    #[test]
    fn cosine_distance_matches_f64_reference_for_every_isa_and_dimension() {
        for_every_isa_and_dim(3, |k, a, b, label| {
            assert_close(k.cosine_distance(a, b), ref_cosine_distance(a, b), label);
        });
    }

    #[test]
    fn norm_squared_matches_f64_reference_for_every_isa_and_dimension() {
        for_every_isa_and_dim(4, |k, a, _, label| {
            assert_close(k.norm_squared(a), ref_norm_squared(a), label);
        });
    }

    #[test]
    fn every_isa_handles_unaligned_subslices() {
        // Offsetting by one f32 guarantees the SIMD loads are not 32-byte
        // aligned, exercising the unaligned-load paths and all tail lengths.
        let mut rng = SplitMix64(5);
        let a = rng.vec(1600);
        let b = rng.vec(1600);
        for isa in available() {
            let k = for_isa(isa).unwrap();
            for &dim in DIMS {
                for off in [1, 3] {
                    let (x, y) = (&a[off..off + dim], &b[off + 2..off + 2 + dim]);
                    let label = format!("{isa} dim={dim} off={off}");
                    assert_close(k.l2_squared(x, y), ref_l2_squared(x, y), &label);
                    assert_close(k.dot(x, y), ref_dot(x, y), &label);
                    assert_close(k.norm_squared(x), ref_norm_squared(x), &label);
                    assert_close(k.cosine_distance(x, y), ref_cosine_distance(x, y), &label);
                }
            }
        }
    }

    #[test]
    fn all_isas_agree_with_each_other_on_every_dimension() {
        let scalar = for_isa(Isa::Scalar).unwrap();
        for_every_isa_and_dim(6, |k, a, b, label| {
            let rel = |x: f32, y: f32| (x - y).abs() <= 1e-4 * x.abs().max(1.0);
            assert!(rel(k.l2_squared(a, b), scalar.l2_squared(a, b)), "{label}");
            assert!(rel(k.dot(a, b), scalar.dot(a, b)), "{label}");
            assert!(
                rel(k.cosine_distance(a, b), scalar.cosine_distance(a, b)),
                "{label}"
            );
            assert!(rel(k.norm_squared(a), scalar.norm_squared(a)), "{label}");
        });
    }

    #[test]
    fn empty_vectors_give_zero_distance_and_cosine_one() {
        for isa in available() {
            let k = for_isa(isa).unwrap();
            assert_eq!(k.l2_squared(&[], &[]), 0.0, "{isa}");
            assert_eq!(k.dot(&[], &[]), 0.0, "{isa}");
            assert_eq!(k.norm_squared(&[]), 0.0, "{isa}");
            assert_eq!(k.cosine_distance(&[], &[]), 1.0, "{isa}");
        }
    }

    #[test]
    fn cosine_distance_with_a_zero_vector_is_one() {
        let mut rng = SplitMix64(7);
        for isa in available() {
            let k = for_isa(isa).unwrap();
            for &dim in DIMS {
                let zero = vec![0.0f32; dim];
                let v = rng.vec(dim);
                assert_eq!(k.cosine_distance(&zero, &v), 1.0, "{isa} dim={dim}");
                assert_eq!(k.cosine_distance(&v, &zero), 1.0, "{isa} dim={dim}");
                assert_eq!(k.cosine_distance(&zero, &zero), 1.0, "{isa} dim={dim}");
            }
        }
    }

    #[test]
    fn identical_vectors_have_zero_l2_and_near_zero_cosine() {
        let mut rng = SplitMix64(8);
        for isa in available() {
            let k = for_isa(isa).unwrap();
            for &dim in DIMS {
                let v = rng.vec(dim);
                assert_eq!(k.l2_squared(&v, &v), 0.0, "{isa} dim={dim}");
                let c = k.cosine_distance(&v, &v);
                assert!(c.abs() <= 1e-6, "{isa} dim={dim}: cosine {c}");
            }
        }
    }

    #[test]
    fn opposite_vectors_have_cosine_distance_two() {
        let mut rng = SplitMix64(9);
        for isa in available() {
            let k = for_isa(isa).unwrap();
            for &dim in DIMS {
                let v = rng.vec(dim);
                let neg: Vec<f32> = v.iter().map(|x| -x).collect();
                let c = k.cosine_distance(&v, &neg);
                assert!((c - 2.0).abs() <= 1e-6, "{isa} dim={dim}: cosine {c}");
            }
        }
    }

    #[test]
    fn large_magnitudes_do_not_overflow_cosine_denominator() {
        // |a|² = |b|² = 4e36 fit in f32, but their product (1.6e73) does not.
        let a = [1e18f32, 1e18, 1e18, 1e18];
        let b = [1e18f32, -1e18, 1e18, -1e18];
        for isa in available() {
            let k = for_isa(isa).unwrap();
            assert_close(k.cosine_distance(&a, &a), 0.0, &format!("{isa} same"));
            assert_close(k.cosine_distance(&a, &b), 1.0, &format!("{isa} orth"));
        }
    }

    #[test]
    fn scalar_is_always_available_and_listed_first() {
        let isas = available();
        assert_eq!(isas.first(), Some(&Isa::Scalar));
        assert_eq!(for_isa(Isa::Scalar).map(Kernels::isa), Some(Isa::Scalar));
    }

    #[test]
    fn for_isa_returns_table_for_requested_isa_only_when_cpu_supports_it() {
        for isa in [Isa::Scalar, Isa::Avx2, Isa::Avx512] {
            match for_isa(isa) {
                Some(k) => {
                    assert_eq!(k.isa(), isa);
                    assert!(available().contains(&isa));
                }
                None => assert!(!available().contains(&isa)),
            }
        }
        #[cfg(target_arch = "x86_64")]
        {
            let avx2 = is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma");
            assert_eq!(for_isa(Isa::Avx2).is_some(), avx2);
            assert_eq!(
                for_isa(Isa::Avx512).is_some(),
                is_x86_feature_detected!("avx512f")
            );
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            assert!(for_isa(Isa::Avx2).is_none());
            assert!(for_isa(Isa::Avx512).is_none());
        }
    }

    #[test]
    fn select_returns_best_available_isa() {
        let best = *available().last().unwrap();
        assert_eq!(select().isa(), best);
        // Cached: every call hands out the same table.
        assert!(std::ptr::eq(select(), select()));
        assert!(std::ptr::eq(select(), for_isa(best).unwrap()));
    }

    #[test]
    fn isa_displays_as_lowercase_feature_names() {
        assert_eq!(Isa::Scalar.to_string(), "scalar");
        assert_eq!(Isa::Avx2.to_string(), "avx2+fma");
        assert_eq!(Isa::Avx512.to_string(), "avx512f");
    }

    #[test]
    #[should_panic(expected = "lengths differ")]
    fn l2_squared_panics_on_mismatched_lengths() {
        select().l2_squared(&[1.0, 2.0], &[1.0]);
    }

    #[test]
    #[should_panic(expected = "lengths differ")]
    fn dot_panics_on_mismatched_lengths() {
        select().dot(&[1.0], &[1.0, 2.0]);
    }

    #[test]
    #[should_panic(expected = "lengths differ")]
    fn cosine_distance_panics_on_mismatched_lengths() {
        select().cosine_distance(&[1.0; 17], &[1.0; 16]);
    }

    #[test]
    fn every_isa_panics_on_mismatched_lengths() {
        for isa in available() {
            let k = for_isa(isa).unwrap();
            let (a, b) = (vec![1.0f32; 33], vec![1.0f32; 32]);
            let calls: [&dyn Fn(); 3] = [
                &|| {
                    k.l2_squared(&a, &b);
                },
                &|| {
                    k.dot(&a, &b);
                },
                &|| {
                    k.cosine_distance(&a, &b);
                },
            ];
            for call in calls {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(call));
                assert!(r.is_err(), "{isa}: mismatched lengths did not panic");
            }
        }
    }

    // -----------------------------------------------------------------------
    // `i8` kernels: every ISA must equal scalar exactly.
    // -----------------------------------------------------------------------

    /// Dimensions for the `i8` kernels: empty, below one register, one-off
    /// either side of 16/32/64/128-byte steps, and common embedding sizes.
    const I8_DIMS: &[usize] = &[
        0, 1, 3, 7, 15, 16, 17, 31, 33, 63, 64, 65, 127, 128, 129, 383, 384, 385, 768, 1023,
    ];

    fn ref_dot_i8(a: &[i8], b: &[i8]) -> i64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| i64::from(x) * i64::from(y))
            .sum()
    }

    fn ref_l2_i8(a: &[i8], b: &[i8]) -> i64 {
        a.iter()
            .zip(b)
            .map(|(&x, &y)| (i64::from(x) - i64::from(y)).pow(2))
            .sum()
    }

    /// Checks both kernels of `k` against scalar (and scalar against the
    /// `i64` reference), exactly.
    fn assert_i8_exact(k: &I8Kernels, a: &[i8], b: &[i8], label: &str) {
        let scalar = for_i8_isa(I8Isa::Scalar).unwrap();
        let (dot, l2) = (scalar.dot_i8(a, b), scalar.l2_i8(a, b));
        assert_eq!(i64::from(dot), ref_dot_i8(a, b), "scalar dot_i8 {label}");
        assert_eq!(i64::from(l2), ref_l2_i8(a, b), "scalar l2_i8 {label}");
        assert_eq!(k.dot_i8(a, b), dot, "dot_i8 {label}");
        assert_eq!(k.l2_i8(a, b), l2, "l2_i8 {label}");
    }

    /// Random codes at every dimension of [`I8_DIMS`], for one table.
    fn check_i8_random_codes(k: &I8Kernels, seed: u64) {
        let mut rng = SplitMix64(seed);
        for &dim in I8_DIMS {
            for round in 0..4 {
                let (a, b) = (rng.codes(dim), rng.codes(dim));
                let label = format!("{} dim={dim} round={round}", k.isa());
                assert_i8_exact(k, &a, &b, &label);
                assert_i8_exact(k, &a, &a, &format!("{label} (a, a)"));
            }
        }
    }

    /// Runs the random-code check for `isa`, or says on stderr why it cannot.
    fn check_i8_isa_or_skip(isa: I8Isa, seed: u64) {
        match for_i8_isa(isa) {
            Some(k) => check_i8_random_codes(k, seed),
            None => eprintln!("skipped: this CPU cannot run the {isa} i8 kernels"),
        }
    }

    #[test]
    fn every_i8_isa_equals_scalar_exactly_on_random_codes() {
        for isa in available_i8() {
            check_i8_random_codes(for_i8_isa(isa).unwrap(), 11);
        }
    }

    #[test]
    fn avx2_i8_kernels_equal_scalar_or_skip() {
        check_i8_isa_or_skip(I8Isa::Avx2, 12);
    }

    #[test]
    fn avx512bw_i8_kernels_equal_scalar_or_skip() {
        check_i8_isa_or_skip(I8Isa::Avx512Bw, 13);
    }

    #[test]
    fn avx512vnni_i8_kernels_equal_scalar_or_skip() {
        check_i8_isa_or_skip(I8Isa::Avx512Vnni, 14);
    }

    #[test]
    fn every_i8_isa_is_exact_on_constant_extreme_codes() {
        // Each pair is a worst case for one sum: (-128)·(-128) is the largest
        // product, (-128)·127 the most negative, and 127 vs -128 the largest
        // difference. 127 vs 127 is also the VNNI bias's largest term.
        let pairs = [
            (-128i8, -128i8),
            (-128, 127),
            (127, -128),
            (127, 127),
            (-128, 0),
        ];
        for isa in available_i8() {
            let k = for_i8_isa(isa).unwrap();
            for &dim in I8_DIMS {
                for (x, y) in pairs {
                    let (a, b) = (vec![x; dim], vec![y; dim]);
                    assert_i8_exact(k, &a, &b, &format!("{isa} dim={dim} {x} vs {y}"));
                }
            }
        }
    }

    #[test]
    fn every_i8_isa_is_exact_at_max_len_on_worst_case_codes() {
        let n = MAX_I8_LEN;
        let (min, max) = (vec![i8::MIN; n], vec![i8::MAX; n]);
        let n64 = n as i64;
        for isa in available_i8() {
            let k = for_i8_isa(isa).unwrap();
            assert_eq!(i64::from(k.dot_i8(&min, &min)), n64 * 128 * 128, "{isa}");
            assert_eq!(i64::from(k.dot_i8(&min, &max)), -n64 * 128 * 127, "{isa}");
            assert_eq!(i64::from(k.dot_i8(&max, &min)), -n64 * 128 * 127, "{isa}");
            assert_eq!(i64::from(k.dot_i8(&max, &max)), n64 * 127 * 127, "{isa}");
            assert_eq!(u64::from(k.l2_i8(&min, &max)), 4_261_478_400, "{isa}");
            assert_eq!(k.l2_i8(&max, &max), 0, "{isa}");
        }
    }

    #[test]
    fn every_i8_isa_handles_unaligned_subslices() {
        let mut rng = SplitMix64(15);
        let (a, b) = (rng.codes(1100), rng.codes(1100));
        for isa in available_i8() {
            let k = for_i8_isa(isa).unwrap();
            for &dim in I8_DIMS {
                for off in [1, 3, 37] {
                    let (x, y) = (&a[off..off + dim], &b[off + 2..off + 2 + dim]);
                    assert_i8_exact(k, x, y, &format!("{isa} dim={dim} off={off}"));
                }
            }
        }
    }

    #[test]
    fn vnni_bias_correction_is_exact_on_a_scalar_model() {
        // A model of the VNNI `dot_i8` (runnable on any CPU): `a` read as
        // `a ^ 0x80` unsigned, four products per 16-bit-exact group, then the
        // `-128·Σ b` correction. Checks the identity, not the intrinsics.
        fn model(a: &[i8], b: &[i8]) -> i32 {
            let (mut biased, mut sum_b) = (0i32, 0i32);
            for (ga, gb) in a.chunks(4).zip(b.chunks(4)) {
                for (&x, &y) in ga.iter().zip(gb) {
                    let p = i32::from((x as u8) ^ 0x80) * i32::from(y);
                    assert!(i32::from(i16::MIN) <= p && p <= i32::from(i16::MAX));
                    biased += p;
                    sum_b += i32::from(y);
                }
            }
            biased - 128 * sum_b
        }
        let mut rng = SplitMix64(16);
        for &dim in I8_DIMS {
            let (a, b) = (rng.codes(dim), rng.codes(dim));
            assert_eq!(i64::from(model(&a, &b)), ref_dot_i8(&a, &b), "dim={dim}");
        }
        let (max, min) = (vec![i8::MAX; MAX_I8_LEN], vec![i8::MIN; MAX_I8_LEN]);
        assert_eq!(model(&max, &min), -128 * 127 * MAX_I8_LEN as i32);
        assert_eq!(model(&min, &min), 128 * 128 * MAX_I8_LEN as i32);
    }

    #[test]
    fn scalar_i8_is_always_available_and_listed_first() {
        let isas = available_i8();
        assert_eq!(isas.first(), Some(&I8Isa::Scalar));
        assert_eq!(
            for_i8_isa(I8Isa::Scalar).map(I8Kernels::isa),
            Some(I8Isa::Scalar)
        );
    }

    #[test]
    fn for_i8_isa_returns_table_only_when_cpu_supports_it() {
        let all = [
            I8Isa::Scalar,
            I8Isa::Avx2,
            I8Isa::Avx512Bw,
            I8Isa::Avx512Vnni,
        ];
        for isa in all {
            match for_i8_isa(isa) {
                Some(k) => {
                    assert_eq!(k.isa(), isa);
                    assert!(available_i8().contains(&isa));
                }
                None => assert!(!available_i8().contains(&isa)),
            }
        }
        #[cfg(target_arch = "x86_64")]
        {
            let bw = is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw");
            let vnni = bw && is_x86_feature_detected!("avx512vnni");
            assert_eq!(
                for_i8_isa(I8Isa::Avx2).is_some(),
                is_x86_feature_detected!("avx2")
            );
            assert_eq!(for_i8_isa(I8Isa::Avx512Bw).is_some(), bw);
            assert_eq!(for_i8_isa(I8Isa::Avx512Vnni).is_some(), vnni);
        }
        #[cfg(not(target_arch = "x86_64"))]
        assert_eq!(available_i8(), [I8Isa::Scalar]);
    }

    #[test]
    fn select_i8_returns_best_available_isa() {
        let best = *available_i8().last().unwrap();
        assert_eq!(select_i8().isa(), best);
        assert!(std::ptr::eq(select_i8(), select_i8()));
        assert!(std::ptr::eq(select_i8(), for_i8_isa(best).unwrap()));
    }

    #[test]
    fn selecting_i8_kernels_leaves_the_f32_choice_alone() {
        let f32_best = *available().last().unwrap();
        select_i8();
        assert_eq!(select().isa(), f32_best);
        assert!(available()
            .iter()
            .all(|isa| [Isa::Scalar, Isa::Avx2, Isa::Avx512].contains(isa)));
    }

    #[test]
    fn i8_isa_displays_as_lowercase_feature_names() {
        assert_eq!(I8Isa::Scalar.to_string(), "scalar");
        assert_eq!(I8Isa::Avx2.to_string(), "avx2");
        assert_eq!(I8Isa::Avx512Bw.to_string(), "avx512bw");
        assert_eq!(I8Isa::Avx512Vnni.to_string(), "avx512vnni");
    }

    #[test]
    #[should_panic(expected = "dot_i8: vector lengths differ")]
    fn dot_i8_panics_on_mismatched_lengths() {
        select_i8().dot_i8(&[1, 2], &[1]);
    }

    #[test]
    #[should_panic(expected = "l2_i8: vector lengths differ")]
    fn l2_i8_panics_on_mismatched_lengths() {
        select_i8().l2_i8(&[1; 64], &[1; 65]);
    }

    #[test]
    #[should_panic(expected = "dot_i8: length 65537 exceeds MAX_I8_LEN")]
    fn dot_i8_panics_above_max_len() {
        let v = vec![0i8; MAX_I8_LEN + 1];
        select_i8().dot_i8(&v, &v);
    }

    #[test]
    #[should_panic(expected = "l2_i8: length 65537 exceeds MAX_I8_LEN")]
    fn l2_i8_panics_above_max_len() {
        let v = vec![0i8; MAX_I8_LEN + 1];
        select_i8().l2_i8(&v, &v);
    }

    #[test]
    fn every_i8_isa_panics_on_mismatched_lengths() {
        for isa in available_i8() {
            let k = for_i8_isa(isa).unwrap();
            let (a, b) = (vec![1i8; 65], vec![1i8; 64]);
            let calls: [&dyn Fn(); 2] = [
                &|| {
                    k.dot_i8(&a, &b);
                },
                &|| {
                    k.l2_i8(&a, &b);
                },
            ];
            for call in calls {
                let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(call));
                assert!(r.is_err(), "{isa}: mismatched lengths did not panic");
            }
        }
    }
}
