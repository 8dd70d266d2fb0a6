//! The k nearest candidates of a search, kept as a bounded max-heap, with
//! distance ties broken by id so that results are deterministic.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// One search result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// The vector's id.
    pub id: u64,
    /// Its distance to the query; smaller is nearer (see [`Metric`](crate::Metric)).
    pub distance: f32,
}

/// A search candidate, ordered by distance, then id (so ties are deterministic).
#[derive(Debug, Clone, Copy)]
struct Candidate {
    distance: f32,
    id: u64,
}

impl PartialEq for Candidate {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Candidate {}
impl PartialOrd for Candidate {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Candidate {
    fn cmp(&self, other: &Self) -> Ordering {
        self.distance
            .total_cmp(&other.distance)
            .then(self.id.cmp(&other.id))
    }
}

/// The k smallest candidates seen so far (a max-heap of size k).
#[derive(Debug)]
pub(crate) struct TopK {
    k: usize,
    heap: BinaryHeap<Candidate>,
}

impl TopK {
    pub(crate) fn new(k: usize) -> Self {
        TopK {
            k,
            heap: BinaryHeap::with_capacity(k.min(4096) + 1),
        }
    }

    #[inline]
    pub(crate) fn push(&mut self, distance: f32, id: u64) {
        let c = Candidate { distance, id };
        if self.heap.len() < self.k {
            self.heap.push(c);
        } else if self.heap.peek().is_some_and(|worst| c < *worst) {
            self.heap.pop();
            self.heap.push(c);
        }
    }

    pub(crate) fn merge(mut self, other: TopK) -> TopK {
        for c in other.heap {
            self.push(c.distance, c.id);
        }
        self
    }

    pub(crate) fn into_sorted(self) -> Vec<Hit> {
        self.heap
            .into_sorted_vec()
            .into_iter()
            .map(|c| Hit {
                id: c.id,
                distance: c.distance,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topk_keeps_the_k_smallest_in_order() {
        let mut top = TopK::new(3);
        for (d, id) in [(5.0, 1), (1.0, 2), (3.0, 3), (0.5, 4), (9.0, 5)] {
            top.push(d, id);
        }
        let ids: Vec<u64> = top.into_sorted().iter().map(|h| h.id).collect();
        assert_eq!(ids, vec![4, 2, 3]);
    }

    #[test]
    fn topk_breaks_distance_ties_by_id() {
        let mut top = TopK::new(2);
        for id in [9, 3, 7] {
            top.push(1.0, id);
        }
        let ids: Vec<u64> = top.into_sorted().iter().map(|h| h.id).collect();
        assert_eq!(ids, vec![3, 7]);
    }
}
