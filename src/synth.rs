//! Seeded synthetic data sets for demos, tests and benchmarks.
//!
//! [`clustered`] draws vectors around random centres, which gives a nearest-
//! neighbour structure closer to real embeddings than uniform noise does. The
//! same seed always gives the same vectors, on every machine.

pub use crate::rng::SplitMix64;

/// `n` vectors of `dim` values, packed, drawn around `clusters` centres.
///
/// Centres are uniform in [-1, 1); each vector is a centre plus Gaussian noise
/// of standard deviation `spread`. Deterministic in `seed`.
pub fn clustered(n: usize, dim: usize, clusters: usize, spread: f32, seed: u64) -> Vec<f32> {
    clustered_queries(n, dim, clusters, spread, seed, seed)
}

/// `n` vectors around the same centres as [`clustered`] with `seed` draws,
/// but with their own noise and cluster choices from `noise_seed`: queries
/// that come from the data's distribution without being data points.
pub fn clustered_queries(
    n: usize,
    dim: usize,
    clusters: usize,
    spread: f32,
    seed: u64,
    noise_seed: u64,
) -> Vec<f32> {
    let mut rng = SplitMix64::new(seed);
    let clusters = clusters.max(1);
    let centres: Vec<f32> = (0..clusters * dim)
        .map(|_| (rng.next_f64() * 2.0 - 1.0) as f32)
        .collect();
    if noise_seed != seed {
        rng = SplitMix64::new(noise_seed);
    }
    let mut out = Vec::with_capacity(n * dim);
    for _ in 0..n {
        let c = (rng.next_u64() % clusters as u64) as usize;
        let centre = &centres[c * dim..(c + 1) * dim];
        out.extend(centre.iter().map(|&x| x + spread * rng.normal() as f32));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clustered_is_deterministic_in_its_seed() {
        assert_eq!(clustered(10, 3, 2, 0.1, 5), clustered(10, 3, 2, 0.1, 5));
        assert_ne!(clustered(10, 3, 2, 0.1, 5), clustered(10, 3, 2, 0.1, 6));
        assert_eq!(clustered(10, 3, 2, 0.1, 5).len(), 30);
    }

    #[test]
    fn normal_has_roughly_unit_variance() {
        let mut rng = SplitMix64::new(1);
        let xs: Vec<f64> = (0..20_000).map(|_| rng.normal()).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(
            mean.abs() < 0.05 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }
}
