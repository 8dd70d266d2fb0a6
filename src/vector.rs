//! Checking a vector where it enters (an upsert or a query) and putting it in
//! the form the kernels compare.

use crate::error::{Error, Result};
use crate::kernels::Kernels;
use crate::options::Metric;

/// Validates `v` (dimension, finite values) and returns the copy the kernels
/// use: normalised to unit length for cosine.
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
    let mut out = v.to_vec();
    if metric == Metric::Cosine {
        let norm = kernels.norm_squared(v).sqrt();
        if norm == 0.0 || !norm.is_finite() {
            return Err(Error::ZeroVector);
        }
        out.iter_mut().for_each(|x| *x /= norm);
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
}
