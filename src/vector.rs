//! Checking a vector where it enters (an upsert or a query) and putting it in
//! the form the kernels compare.

use crate::error::{Error, Result};
use crate::kernels::Kernels;
use crate::options::Metric;

/// The smallest largest-component magnitude of a non-zero L2 or
/// inner-product vector: about √(smallest normal f32) / ε, so that the
/// squared difference of two components one rounding step apart is still
/// representable and nearby vectors do not tie at distance 0.
pub(crate) const MIN_MAGNITUDE: f32 = 1e-12;

/// The largest component magnitude of an L2 or inner-product vector of
/// dimension `dim`: any two such vectors have a squared distance, and an
/// inner product, of at most `f32::MAX / 2`, with every partial sum of the
/// kernels below it too.
pub(crate) fn max_magnitude(dim: usize) -> f32 {
    (f64::from(f32::MAX) / (8.0 * dim.max(1) as f64)).sqrt() as f32
}

/// Validates `v` (dimension, finite values, magnitudes whose distances fit
/// in f32) and returns the copy the kernels use: normalised to unit length
/// for cosine.
pub(crate) fn prepare_vector(
    v: &[f32],
    dim: usize,
    metric: Metric,
    kernels: &Kernels,
) -> Result<Vec<f32>> {
    if v.len() != dim {
        return Err(Error::Dimension {
            expected: dim,
            got: v.len(),
        });
    }
    if let Some((position, &value)) = v.iter().enumerate().find(|(_, x)| !x.is_finite()) {
        return Err(Error::NonFinite { position, value });
    }
    let (position, largest) = v.iter().enumerate().fold((0, 0.0f32), |(at, m), (i, x)| {
        if x.abs() > m.abs() {
            (i, *x)
        } else {
            (at, m)
        }
    });
    let mut out = v.to_vec();
    if metric == Metric::Cosine {
        if largest == 0.0 {
            return Err(Error::ZeroVector);
        }
        // Scaled to a largest component of 1 first, the squared norm lies in
        // [1, dim]: it neither overflows nor underflows, whatever the input's
        // magnitude.
        let scale = largest.abs();
        out.iter_mut().for_each(|x| *x /= scale);
        let norm = kernels.norm_squared(&out).sqrt();
        out.iter_mut().for_each(|x| *x /= norm);
        return Ok(out);
    }
    let max = max_magnitude(dim);
    let magnitude = largest.abs();
    if magnitude > max || (magnitude != 0.0 && magnitude < MIN_MAGNITUDE) {
        return Err(Error::Magnitude {
            position,
            largest,
            dim,
            metric,
            min: MIN_MAGNITUDE,
            max,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prepare_vector_rejects_bad_input() {
        let k = crate::kernels::select();
        assert!(matches!(
            prepare_vector(&[1.0, 2.0], 3, Metric::L2, k),
            Err(Error::Dimension {
                expected: 3,
                got: 2
            })
        ));
        assert!(matches!(
            prepare_vector(&[1.0, f32::NAN], 2, Metric::L2, k),
            Err(Error::NonFinite { position: 1, .. })
        ));
        assert!(matches!(
            prepare_vector(&[0.0, 0.0], 2, Metric::Cosine, k),
            Err(Error::ZeroVector)
        ));
        let unit = prepare_vector(&[3.0, 4.0], 2, Metric::Cosine, k).unwrap();
        assert!((unit[0] - 0.6).abs() < 1e-6 && (unit[1] - 0.8).abs() < 1e-6);
    }

    #[test]
    fn cosine_normalises_vectors_whose_norm_overflows_or_underflows() {
        let k = crate::kernels::select();
        for scale in [1e19f32, 1e-30, 1e-37, f32::MAX / 8.0] {
            let v: Vec<f32> = [3.0f32, 4.0, 0.0].iter().map(|x| x * scale).collect();
            let unit = prepare_vector(&v, 3, Metric::Cosine, k).unwrap();
            assert!(
                (unit[0] - 0.6).abs() < 1e-6 && (unit[1] - 0.8).abs() < 1e-6,
                "scale {scale:e}: {unit:?}"
            );
        }
    }

    #[test]
    fn l2_and_ip_refuse_magnitudes_whose_distances_leave_f32() {
        let k = crate::kernels::select();
        let dim = 384;
        let max = max_magnitude(dim);
        for metric in [Metric::L2, Metric::InnerProduct] {
            for bad in [1e19f32, max * 1.01, 1e-30, MIN_MAGNITUDE * 0.9] {
                let mut v = vec![0.0f32; dim];
                v[7] = -bad;
                assert!(
                    matches!(
                        prepare_vector(&v, dim, metric, k),
                        Err(Error::Magnitude { position: 7, largest, dim: 384, .. }) if largest == -bad
                    ),
                    "{metric} {bad:e}"
                );
            }
            // The extremes allowed keep every distance finite and non-zero.
            let big_a = vec![max; dim];
            let big_b = vec![-max; dim];
            let small_a = vec![MIN_MAGNITUDE; dim];
            let mut small_b = small_a.clone();
            small_b[0] = MIN_MAGNITUDE * (1.0 + f32::EPSILON);
            for (a, b) in [(&big_a, &big_b), (&small_a, &small_b)] {
                let a = prepare_vector(a, dim, metric, k).unwrap();
                let b = prepare_vector(b, dim, metric, k).unwrap();
                let scorer = crate::options::Scorer { metric, kernels: k };
                let d = scorer.distance(&a, &b);
                assert!(d.is_finite(), "{metric}: {d}");
                if metric == Metric::L2 {
                    assert!(d > 0.0, "{metric}: one rounding step apart tie at 0");
                }
            }
            assert!(prepare_vector(&vec![0.0; dim], dim, metric, k).is_ok());
        }
    }
}
