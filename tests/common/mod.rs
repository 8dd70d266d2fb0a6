//! Helpers shared by the integration tests: seeded data and a brute-force reference.
#![allow(dead_code)]

use quiver::synth::SplitMix64;
use quiver::Metric;

/// The crate's seeded generator with the helpers the tests need.
pub struct Rng(SplitMix64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(SplitMix64::new(seed))
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }

    /// Uniform in [-1, 1).
    pub fn next_f32(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    pub fn vector(&mut self, dim: usize) -> Vec<f32> {
        (0..dim).map(|_| self.next_f32()).collect()
    }

    pub fn vectors(&mut self, n: usize, dim: usize) -> Vec<f32> {
        (0..n * dim).map(|_| self.next_f32()).collect()
    }
}

/// The distance Quiver reports, computed plainly in f64.
pub fn reference_distance(metric: Metric, a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    match metric {
        Metric::L2 => a
            .iter()
            .zip(b)
            .map(|(x, y)| (*x as f64 - *y as f64).powi(2))
            .sum(),
        Metric::InnerProduct => -dot,
        Metric::Cosine => {
            let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
            1.0 - dot / (na * nb)
        }
    }
}

/// The ids of the `k` nearest `rows` to `query` by brute force.
pub fn brute_force(
    metric: Metric,
    rows: &[(u64, Vec<f32>)],
    query: &[f32],
    k: usize,
) -> Vec<(u64, f64)> {
    let mut all: Vec<(u64, f64)> = rows
        .iter()
        .map(|(id, v)| (*id, reference_distance(metric, query, v)))
        .collect();
    all.sort_by(|a, b| a.1.total_cmp(&b.1).then(a.0.cmp(&b.0)));
    all.truncate(k);
    all
}

/// Reads an .fvecs file: (dimension, every vector back to back).
pub fn read_fvecs(path: &std::path::Path) -> (usize, Vec<f32>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dim = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    let mut out = Vec::new();
    for row in bytes.chunks_exact(4 + dim * 4) {
        out.extend(
            row[4..]
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes(c.try_into().unwrap())),
        );
    }
    (dim, out)
}

/// Reads an .ivecs file: one row of i32 per line.
pub fn read_ivecs(path: &std::path::Path) -> Vec<Vec<i32>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dim = u32::from_le_bytes(bytes[..4].try_into().unwrap()) as usize;
    bytes
        .chunks_exact(4 + dim * 4)
        .map(|row| {
            row[4..]
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap()))
                .collect()
        })
        .collect()
}

/// Number of entries of `dir` whose name satisfies `keep`.
pub fn count_files(dir: &std::path::Path, keep: impl Fn(&str) -> bool) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| keep(&e.as_ref().unwrap().file_name().to_string_lossy()))
        .count()
}

/// The message a caught panic carried (empty if it was not a string).
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Mean recall@`k` of `snap`'s default search (no `ef`) against its exact
/// search, over `queries` (`dim` values each); every search must return
/// `k` hits when the snapshot holds that many rows.
pub fn recall(snap: &quiver::Snapshot, queries: &[f32], dim: usize, k: usize) -> f64 {
    let exact = quiver::SearchParams::new(k).exact(true);
    let (mut hits, mut total) = (0, 0);
    for q in queries.chunks(dim) {
        let want: std::collections::HashSet<u64> = snap
            .search_with(q, &exact)
            .unwrap()
            .iter()
            .map(|h| h.id)
            .collect();
        let got = snap.search(q, k).unwrap();
        assert_eq!(
            got.len(),
            k.min(snap.len()),
            "a search returned too few hits"
        );
        hits += got.iter().filter(|h| want.contains(&h.id)).count();
        total += want.len();
    }
    hits as f64 / total as f64
}

/// The shared data directory (`../shared/data` beside the project), or
/// `None` with a printed note when it is absent; under `CI` its absence
/// fails the test.
pub fn shared_data() -> Option<std::path::PathBuf> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if dir.join("debian50k_base.fvecs").exists() {
        return Some(dir);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "CI is set but the shared data is missing at {}",
        dir.display()
    );
    eprintln!(
        "note: skipped, the shared data is not at {} (CI=1 makes this a failure)",
        dir.display()
    );
    None
}
