//! What a database is created with ([`Options`]) and how it measures distance ([`Metric`]).

use crate::error::{Error, Result};
use crate::kernels::Kernels;
use std::fmt;

/// How distance between two vectors is measured.
///
/// Every metric reports a *distance*: smaller is nearer, and results are sorted
/// by it ascending.
///
/// | metric | distance reported | range |
/// |---|---|---|
/// | [`Metric::L2`] | squared Euclidean distance, Σ(aᵢ − bᵢ)² | [0, ∞) |
/// | [`Metric::InnerProduct`] | negated inner product, −Σ aᵢbᵢ | (−∞, ∞) |
/// | [`Metric::Cosine`] | 1 − cosine similarity | [0, 2] |
///
/// Cosine vectors are normalised to unit length once, when they are written,
/// and queries when they are searched; [`Database::get`](crate::Database::get)
/// returns the normalised vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Metric {
    /// Squared Euclidean distance.
    L2,
    /// Negated inner product (maximum inner product search).
    InnerProduct,
    /// One minus cosine similarity.
    Cosine,
}

impl Metric {
    /// The code stored on disk.
    pub(crate) fn code(self) -> u32 {
        match self {
            Metric::L2 => 0,
            Metric::InnerProduct => 1,
            Metric::Cosine => 2,
        }
    }

    /// The metric stored as `code`, if any.
    pub(crate) fn from_code(code: u32) -> Option<Metric> {
        match code {
            0 => Some(Metric::L2),
            1 => Some(Metric::InnerProduct),
            2 => Some(Metric::Cosine),
            _ => None,
        }
    }
}

/// A metric with the kernels that compute it: the one place that turns a
/// metric into a distance, for the exact scan, graph builds and graph searches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scorer {
    pub(crate) metric: Metric,
    pub(crate) kernels: &'static Kernels,
}

impl Scorer {
    /// The distance between `a` and `b` as Quiver reports it (smaller is
    /// nearer); cosine rows and queries are unit length already.
    #[inline]
    pub(crate) fn distance(&self, a: &[f32], b: &[f32]) -> f32 {
        match self.metric {
            Metric::L2 => self.kernels.l2_squared(a, b),
            Metric::InnerProduct => -self.kernels.dot(a, b),
            Metric::Cosine => 1.0 - self.kernels.dot(a, b),
        }
    }
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Metric::L2 => "l2",
            Metric::InnerProduct => "ip",
            Metric::Cosine => "cosine",
        })
    }
}

impl std::str::FromStr for Metric {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "l2" | "euclidean" => Ok(Metric::L2),
            "ip" | "inner-product" | "dot" => Ok(Metric::InnerProduct),
            "cosine" | "cos" => Ok(Metric::Cosine),
            _ => Err(format!("unknown metric {s:?}: use l2, ip or cosine")),
        }
    }
}

/// Options a database is opened with.
///
/// `dim` and `metric` are stored when the database is created and must match
/// on every later open. The others are tuning knobs of this handle.
///
/// ```
/// use quiver::{Metric, Options};
/// let options = Options::new(384, Metric::Cosine).growing_threshold(5_000);
/// assert_eq!(options.dim(), 384);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Options {
    pub(crate) dim: usize,
    pub(crate) metric: Metric,
    pub(crate) growing_threshold: usize,
    pub(crate) verify_on_open: bool,
    pub(crate) m: usize,
    pub(crate) ef_construction: usize,
    pub(crate) ef_search: Option<usize>,
    pub(crate) auto_merge: bool,
}

/// Default HNSW links per node and level (twice that at level 0).
pub const DEFAULT_M: usize = 16;
/// Default candidate list size while building a graph.
pub const DEFAULT_EF_CONSTRUCTION: usize = 200;
/// Candidate list size of a search that names none while no segment of the
/// database is calibrated yet (once one is, every segment goes by a
/// measured curve: see [`SearchParams::target_recall`](crate::SearchParams::target_recall)).
/// A margin for unknown data: recall@10 is 0.98 on the shared real data at 64.
pub const DEFAULT_EF_SEARCH: usize = 64;

/// Default number of rows appended to the growing segment (deleted and
/// replaced ones included) before a commit seals it.
pub const DEFAULT_GROWING_THRESHOLD: usize = 10_000;

/// Largest dimension accepted (a row stays well under the redb value limit).
pub const MAX_DIM: usize = 1 << 16;

/// Fewest HNSW links per node and level ([`Options::m`]).
pub const MIN_M: usize = 2;
/// Most HNSW links per node and level ([`Options::m`]).
pub const MAX_M: usize = 1024;
/// Largest candidate list size ([`Options::ef_construction`],
/// [`Options::ef_search`], [`SearchParams::ef`](crate::SearchParams::ef)) and
/// largest `k` of a search.
pub const MAX_EF: usize = 1 << 16;

/// The error for `value` of `name`, which is not `allowed` ("between 2 and 1024").
fn out_of_range(name: &'static str, value: impl fmt::Display, allowed: String) -> Error {
    Error::OutOfRange {
        name,
        value: value.to_string(),
        allowed,
    }
}

/// Checks that `value` of `name` lies in `min..=max`.
///
/// # Errors
/// [`Error::OutOfRange`] stating the range.
pub(crate) fn check_range(name: &'static str, value: usize, min: usize, max: usize) -> Result<()> {
    if (min..=max).contains(&value) {
        return Ok(());
    }
    Err(out_of_range(
        name,
        value,
        format!("between {min} and {max}"),
    ))
}

/// Checks the graph build parameters: `m` in [`MIN_M`]`..=`[`MAX_M`],
/// `ef_construction` in `m..=`[`MAX_EF`] (a build keeps at least `m`
/// candidates to choose the links from).
///
/// # Errors
/// [`Error::OutOfRange`] stating the range.
pub(crate) fn check_graph(m: usize, ef_construction: usize) -> Result<()> {
    check_range("m", m, MIN_M, MAX_M)?;
    if (m..=MAX_EF).contains(&ef_construction) {
        return Ok(());
    }
    Err(out_of_range(
        "ef_construction",
        ef_construction,
        format!("between m ({m}) and {MAX_EF}"),
    ))
}

/// Checks a search's `k` (1..=[`MAX_EF`]), its `ef` (`k..=`[`MAX_EF`]) and
/// its target recall (0 to 1).
///
/// # Errors
/// [`Error::OutOfRange`] stating the range.
pub(crate) fn check_search(k: usize, ef: Option<usize>, target_recall: Option<f64>) -> Result<()> {
    check_range("k", k, 1, MAX_EF)?;
    if let Some(ef) = ef.filter(|ef| !(k..=MAX_EF).contains(ef)) {
        return Err(out_of_range(
            "ef",
            ef,
            format!("between k ({k}) and {MAX_EF}"),
        ));
    }
    match target_recall {
        Some(r) if !(0.0..=1.0).contains(&r) => Err(out_of_range(
            "target_recall",
            r,
            "between 0 and 1".to_owned(),
        )),
        _ => Ok(()),
    }
}

impl Options {
    /// Options for vectors of `dim` values compared with `metric`, with defaults
    /// for everything else.
    pub fn new(dim: usize, metric: Metric) -> Self {
        Options {
            dim,
            metric,
            growing_threshold: DEFAULT_GROWING_THRESHOLD,
            verify_on_open: false,
            m: DEFAULT_M,
            ef_construction: DEFAULT_EF_CONSTRUCTION,
            ef_search: None,
            auto_merge: true,
        }
    }

    /// Rows that may be appended to the growing segment (kept in the
    /// manifest, indexed by an in-memory graph; deleted and replaced rows
    /// count too) before a commit seals it: writes its rows and its graph as
    /// a segment. A commit whose rows alone reach it writes them as a segment
    /// of their own. It also bounds what `open` rebuilds (the growing
    /// segment's graph). Default [`DEFAULT_GROWING_THRESHOLD`]; from 1 to
    /// [`MAX_SEGMENT_ROWS`](crate::MAX_SEGMENT_ROWS) (checked by
    /// [`Options::validate`]).
    pub fn growing_threshold(mut self, rows: usize) -> Self {
        self.growing_threshold = rows;
        self
    }

    /// Check every segment's data checksums and graph links (column and links
    /// files) during `open` instead of on the first search that reads them,
    /// and run redb's integrity check over the manifest's pages, which its
    /// ordinary reads do not checksum. Eager checking makes `open` cost a read
    /// of every byte. Default `false`: segment files are still checked before
    /// they are first served, but damage inside `quiver.redb` pages is then
    /// found only by this check or `quiver verify`.
    pub fn verify_on_open(mut self, on: bool) -> Self {
        self.verify_on_open = on;
        self
    }

    /// HNSW links per node and level (`2m` at level 0) for segments sealed by
    /// this handle: from [`MIN_M`] to [`MAX_M`] (checked by
    /// [`Options::validate`]). Default [`DEFAULT_M`]. Each segment records
    /// what it was built with, so this may differ between opens.
    pub fn m(mut self, m: usize) -> Self {
        self.m = m;
        self
    }

    /// Candidate list size while building graphs: from `m` to [`MAX_EF`]
    /// (checked by [`Options::validate`]). Default
    /// [`DEFAULT_EF_CONSTRUCTION`].
    pub fn ef_construction(mut self, ef: usize) -> Self {
        self.ef_construction = ef;
        self
    }

    /// Candidate list size of every search that names none, on every
    /// segment: larger is slower and more accurate; from 1 to [`MAX_EF`]
    /// (checked by [`Options::validate`]), and a search for more than `ef`
    /// results uses its `k`. By default each segment uses the `ef` its
    /// calibration measured to reach recall@10 of about 0.95–0.975 (and
    /// [`DEFAULT_EF_SEARCH`] until it is calibrated).
    pub fn ef_search(mut self, ef: usize) -> Self {
        self.ef_search = Some(ef);
        self
    }

    /// Whether a background thread merges sealed segments as the merge
    /// policy picks them (see [`MERGE_RATIO`](crate::MERGE_RATIO)) and
    /// calibrates each new segment's default `ef`. Turn it off to leave
    /// merging to an offline [`compact`](crate::compact); searches then get
    /// slower as segments pile up. Default `true`.
    pub fn auto_merge(mut self, on: bool) -> Self {
        self.auto_merge = on;
        self
    }

    /// The vector dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The metric.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// The HNSW links per node new graphs are built with ([`Options::m`]).
    pub fn graph_m(&self) -> usize {
        self.m
    }

    /// The candidate list size new graphs are built with
    /// ([`Options::ef_construction`]).
    pub fn graph_ef_construction(&self) -> usize {
        self.ef_construction
    }

    /// Checks every value against its range, as [`Database::open`](crate::Database::open)
    /// does before it touches the directory: the dimension (1 to
    /// [`MAX_DIM`]), [`growing_threshold`](Options::growing_threshold),
    /// [`m`](Options::m), [`ef_construction`](Options::ef_construction) and
    /// [`ef_search`](Options::ef_search). Nothing is clamped.
    ///
    /// ```
    /// use quiver::{Metric, Options};
    /// let e = Options::new(8, Metric::L2).m(1).validate().unwrap_err();
    /// assert_eq!(e.to_string(), "m is 1: it must be between 2 and 1024");
    /// ```
    ///
    /// # Errors
    /// [`Error::OutOfRange`] for the first value out of its range, stating
    /// the range.
    pub fn validate(&self) -> Result<()> {
        check_range("dimension", self.dim, 1, MAX_DIM)?;
        check_range(
            "growing_threshold",
            self.growing_threshold,
            1,
            crate::MAX_SEGMENT_ROWS,
        )?;
        check_graph(self.m, self.ef_construction)?;
        if let Some(ef) = self.ef_search {
            check_range("ef_search", ef, 1, MAX_EF)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_accepts_the_ends_of_every_range() {
        let low = Options::new(1, Metric::L2)
            .growing_threshold(1)
            .m(MIN_M)
            .ef_construction(MIN_M)
            .ef_search(1);
        assert!(low.validate().is_ok());
        let high = Options::new(MAX_DIM, Metric::L2)
            .growing_threshold(crate::MAX_SEGMENT_ROWS)
            .m(MAX_M)
            .ef_construction(MAX_EF)
            .ef_search(MAX_EF);
        assert!(high.validate().is_ok());
        assert!(check_search(1, Some(1), Some(0.0)).is_ok());
        assert!(check_search(MAX_EF, Some(MAX_EF), Some(1.0)).is_ok());
    }

    #[test]
    fn one_past_either_end_is_refused_and_kept_as_given() {
        let cases = [
            (Options::new(MAX_DIM + 1, Metric::L2), "dimension", "65537"),
            (
                Options::new(4, Metric::L2).growing_threshold(crate::MAX_SEGMENT_ROWS + 1),
                "growing_threshold",
                "4294967295",
            ),
            (Options::new(4, Metric::L2).m(MIN_M - 1), "m", "1"),
            (
                Options::new(4, Metric::L2).ef_construction(MAX_EF + 1),
                "ef_construction",
                "65537",
            ),
            (
                Options::new(4, Metric::L2).ef_search(MAX_EF + 1),
                "ef_search",
                "65537",
            ),
        ];
        for (options, field, given) in cases {
            match options.validate() {
                Err(Error::OutOfRange { name, value, .. }) => {
                    assert_eq!((name, value.as_str()), (field, given));
                }
                other => panic!("{field}: {other:?}"),
            }
        }
        assert!(check_search(0, None, None).is_err());
        assert!(check_search(10, Some(9), None).is_err());
        assert!(check_search(10, None, Some(-0.1)).is_err());
    }
}
