//! Scalar quantization of rows to `i8` codes, for graph builds that compare
//! rows by their codes instead of their `f32` vectors.
//!
//! An insertion's searches and neighbour selections read thousands of rows;
//! a code is a quarter of a row's bytes and its distance kernel is exact
//! integer arithmetic ([`I8Kernels`]), so a build over codes moves a quarter
//! of the memory. The graph it gives is searched with the exact `f32` rows,
//! as every graph is: codes only choose the links.
//!
//! One scale for every dimension, so that a code distance is a multiple of
//! the `f32` distance it stands for: `x[d] ≈ offset[d] + scale · code[d]`.
//! For L2 the offsets are each dimension's median (they cancel in a
//! difference); for the inner-product metrics they are zero, so that
//! `a · b ≈ scale² · Σ code_a · code_b`. The scale maps a high quantile of
//! the rows' magnitudes (not the largest, which one outlier would set) to
//! 127; rarer values are clamped.

use crate::graph::Rows;
use crate::kernels::{self, I8Kernels};
use crate::options::Metric;

/// Code bytes per row are rounded up to this, so that every code starts on
/// a cache line of its own.
const CODE_ALIGN: usize = 64;

/// Rows the quantizer's ranges are taken from, at most.
const SAMPLE_ROWS: usize = 4096;

/// Share of the sampled magnitudes that the scale maps within ±127.
const COVERED: f64 = 0.9999;

/// The `i8` codes of a set of rows, in row order, and how to compare them.
pub(crate) struct Codes {
    dim: usize,
    stride: usize,
    data: Vec<i8>,
    metric: Metric,
    /// `scale²`: a code distance times this is the `f32` distance.
    scale_sq: f32,
    kernels: &'static I8Kernels,
}

impl Codes {
    /// Quantizes `rows` (each of `dim` finite values, as stored: cosine rows
    /// unit length). `None` if there are no rows or they are all equal on
    /// every dimension (nothing to scale).
    pub(crate) fn of<'a>(
        rows: impl ExactSizeIterator<Item = &'a [f32]> + Clone,
        dim: usize,
        metric: Metric,
    ) -> Option<Codes> {
        let n = rows.len();
        if n == 0 || dim == 0 {
            return None;
        }
        let step = n.div_ceil(SAMPLE_ROWS);
        let sample = rows.clone().step_by(step);
        let offsets = match metric {
            Metric::L2 => (0..dim)
                .map(|d| {
                    let mut column: Vec<f32> = sample.clone().map(|row| row[d]).collect();
                    let mid = column.len() / 2;
                    *column.select_nth_unstable_by(mid, f32::total_cmp).1
                })
                .collect(),
            Metric::Cosine | Metric::InnerProduct => vec![0.0; dim],
        };
        let mut magnitudes: Vec<f32> = sample
            .flat_map(|row| row.iter().zip(&offsets).map(|(x, o)| (x - o).abs()))
            .collect();
        let at = ((magnitudes.len() - 1) as f64 * COVERED) as usize;
        let (_, &mut reach, _) = magnitudes.select_nth_unstable_by(at, f32::total_cmp);
        if !(reach > 0.0 && reach.is_finite()) {
            return None;
        }
        let scale = reach / 127.0;
        let stride = dim.next_multiple_of(CODE_ALIGN);
        let mut data = vec![0i8; n * stride];
        for (row, code) in rows.zip(data.chunks_exact_mut(stride)) {
            for ((c, &x), o) in code.iter_mut().zip(row).zip(&offsets) {
                // Saturating: a value past the covered range is clamped.
                *c = ((x - o) / scale).round().clamp(-127.0, 127.0) as i8;
            }
        }
        Some(Codes {
            dim,
            stride,
            data,
            metric,
            scale_sq: scale * scale,
            kernels: kernels::select_i8(),
        })
    }

    /// The distance of two codes, in the metric's `f32` units (smaller is
    /// nearer), as [`Scorer::distance`](crate::options::Scorer) gives it for
    /// the rows they stand for, up to the quantization error.
    #[inline]
    pub(crate) fn distance(&self, a: &[i8], b: &[i8]) -> f32 {
        match self.metric {
            Metric::L2 => self.scale_sq * self.kernels.l2_i8(a, b) as f32,
            Metric::InnerProduct => -self.scale_sq * self.kernels.dot_i8(a, b) as f32,
            Metric::Cosine => 1.0 - self.scale_sq * self.kernels.dot_i8(a, b) as f32,
        }
    }
}

impl Rows<i8> for Codes {
    fn len(&self) -> usize {
        self.data.len() / self.stride
    }

    fn row(&self, i: u32) -> &[i8] {
        let at = i as usize * self.stride;
        &self.data[at..at + self.dim]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synth::clustered;

    fn rows(data: &[f32], dim: usize) -> impl ExactSizeIterator<Item = &[f32]> + Clone {
        data.chunks_exact(dim)
    }

    #[test]
    fn code_distances_track_the_f32_distances() {
        let dim = 33;
        let data = clustered(500, dim, 5, 0.5, 3);
        let k = kernels::select();
        let codes = Codes::of(rows(&data, dim), dim, Metric::L2).unwrap();
        for (i, j) in [(0u32, 1u32), (7, 300), (42, 499)] {
            let (a, b) = (codes.row(i), codes.row(j));
            let exact = k.l2_squared(
                &data[i as usize * dim..][..dim],
                &data[j as usize * dim..][..dim],
            );
            let approx = codes.distance(a, b);
            assert!(
                (approx - exact).abs() <= 0.02 * exact.max(1.0),
                "{approx} against {exact}"
            );
        }
    }

    #[test]
    fn inner_product_codes_are_symmetric_around_zero() {
        let dim = 16;
        let mut data = clustered(200, dim, 3, 0.5, 9);
        for row in data.chunks_exact_mut(dim) {
            let norm = row.iter().map(|x| x * x).sum::<f32>().sqrt();
            row.iter_mut().for_each(|x| *x /= norm);
        }
        let codes = Codes::of(rows(&data, dim), dim, Metric::Cosine).unwrap();
        let self_distance = codes.distance(codes.row(5), codes.row(5));
        assert!(self_distance.abs() < 0.05, "{self_distance}");
        let negated: Vec<i8> = codes.row(5).iter().map(|c| -c).collect();
        assert!((codes.distance(codes.row(5), &negated) - 2.0).abs() < 0.05);
    }

    #[test]
    fn constant_rows_have_no_codes_and_outliers_are_clamped() {
        let same = vec![1.5f32; 40];
        assert!(Codes::of(rows(&same, 4), 4, Metric::L2).is_none());
        assert!(Codes::of(rows(&[], 4), 4, Metric::L2).is_none());
        let mut data = clustered(300, 8, 2, 0.5, 1);
        data[3] = 1e6;
        let codes = Codes::of(rows(&data, 8), 8, Metric::L2).unwrap();
        assert_eq!(codes.row(0)[3], 127);
        assert_eq!(codes.len(), 300);
    }
}
