//! A fixed-size set of bits: the deleted rows of a segment.

/// A fixed-size set of bits, cheap to clone for a copy-on-write update.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Bitset {
    words: Vec<u64>,
}

impl Bitset {
    /// `bits` bits, all clear.
    pub(crate) fn new(bits: usize) -> Self {
        Bitset {
            words: vec![0; bits.div_ceil(64)],
        }
    }

    /// Whether `bit` is set; bits past the end are clear.
    #[inline]
    pub(crate) fn contains(&self, bit: usize) -> bool {
        self.words
            .get(bit / 64)
            .is_some_and(|w| w & (1 << (bit % 64)) != 0)
    }

    /// Sets `bit`; returns whether it was newly set (never for a bit past
    /// the end, which is ignored).
    pub(crate) fn insert(&mut self, bit: usize) -> bool {
        match self.words.get_mut(bit / 64) {
            Some(w) => {
                let was = *w & (1 << (bit % 64)) != 0;
                *w |= 1 << (bit % 64);
                !was
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bitset_sets_and_reports_bits() {
        let mut b = Bitset::new(130);
        assert!(b.insert(129));
        assert!(!b.insert(129));
        assert!(b.contains(129));
        assert!(!b.contains(128));
        assert!(!b.contains(1000));
        assert!(!b.insert(1000));
    }
}
