//! Which entry of a status list a new token gets (issue 22's allocation rule, ahead of the
//! status lists themselves): a server reserves a block of consecutive *positions* of a list,
//! and each position becomes an entry *index* through a keyed permutation of the list, so that
//! indices are unique (a permutation never maps two positions to one index) yet reveal nothing
//! of the order tokens were issued in.
//!
//! The permutation is a balanced Feistel network on the smallest even number of bits covering
//! the list (8 rounds, each an HMAC-SHA256 of the list's tweak, the round number and the right
//! half), and cycle-walking for the values past the list's end: from a value past the end, it
//! encrypts again until it lands inside. Cycle-walking starts from the last value reached,
//! never from the position again, or the map would stop being one-to-one. The key is fixed per
//! list; it hides order from token holders, and need not be secret from the database's
//! operators.

use ring::hmac;

/// Feistel rounds. Four are the textbook minimum for a pseudorandom permutation; the halves
/// here are short (8–12 bits for common list sizes), where more rounds are cheap insurance.
const ROUNDS: u8 = 8;

/// Halves of at most this many bits get their round function tabulated when the permutation
/// is made: `ROUNDS × 2^bits` HMACs once (4,096 for a default list of 2^17 entries, under a
/// millisecond; at most 32,768 and 64 KiB), after which an index costs table lookups instead
/// of the ~16 HMACs (~3 µs) a walk of two encryptions takes. Every list tokenmint opens
/// (at most 2^20 entries, halves of 10 bits) is tabulated; the outputs are the same either way.
const TABULATED_HALF_BITS: u32 = 12;

/// A keyed one-to-one map of `[0, size)` onto itself.
#[derive(Debug)]
pub struct IndexPermutation {
    key: hmac::Key,
    tweak: Vec<u8>,
    size: u64,
    half_bits: u32,
    /// `round(r, right) & mask` at `r × 2^half_bits + right`, when the halves are short enough.
    table: Option<Box<[u16]>>,
}

impl IndexPermutation {
    /// The permutation of a list of `size` entries (at least 1) under `key`, distinct per
    /// `tweak` (the list's id).
    ///
    /// # Panics
    /// If `size` is 0 or above 2^62.
    pub fn new(key: &[u8], tweak: &[u8], size: u64) -> Self {
        assert!(
            (1..=1 << 62).contains(&size),
            "a list holds 1 to 2^62 entries"
        );
        let mut permutation = Self::untabulated(key, tweak, size);
        if permutation.half_bits <= TABULATED_HALF_BITS {
            permutation.table = Some(permutation.tabulate());
        }
        permutation
    }

    /// The permutation with every round function computed by HMAC on demand.
    fn untabulated(key: &[u8], tweak: &[u8], size: u64) -> Self {
        let bits = u64::BITS - (size - 1).leading_zeros();
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
            tweak: tweak.to_vec(),
            size,
            half_bits: bits.div_ceil(2).max(1),
            table: None,
        }
    }

    /// Every round's output for every right half, masked to a half.
    fn tabulate(&self) -> Box<[u16]> {
        let mask = (1u64 << self.half_bits) - 1;
        (0..ROUNDS)
            .flat_map(|round| (0..=mask).map(move |right| (round, right)))
            .map(|(round, right)| {
                // Masked to at most TABULATED_HALF_BITS bits, so it fits.
                u16::try_from(self.round(round, right) & mask).unwrap_or(u16::MAX)
            })
            .collect()
    }

    /// The entry index of `position`, or `None` when the position is past the list's end.
    pub fn index_of(&self, position: u64) -> Option<u64> {
        if position >= self.size {
            return None;
        }
        // The Feistel domain is under 4 × size, so a walk takes under 4 steps on average.
        let mut value = self.encrypt(position);
        while value >= self.size {
            value = self.encrypt(value);
        }
        Some(value)
    }

    /// One pass of the Feistel network over `2 × half_bits` bits.
    fn encrypt(&self, value: u64) -> u64 {
        let mask = (1u64 << self.half_bits) - 1;
        let (mut left, mut right) = (value >> self.half_bits, value & mask);
        for round in 0..ROUNDS {
            let output = match &self.table {
                Some(table) => {
                    u64::from(table[((round as usize) << self.half_bits) | right as usize])
                }
                None => self.round(round, right) & mask,
            };
            let next = left ^ output;
            left = right;
            right = next;
        }
        (left << self.half_bits) | right
    }

    /// The round function: the first 8 bytes of HMAC(tweak ‖ round ‖ right), big-endian.
    fn round(&self, round: u8, right: u64) -> u64 {
        let mut context = hmac::Context::with_key(&self.key);
        context.update(&self.tweak);
        context.update(&[round]);
        context.update(&right.to_be_bytes());
        let tag = context.sign();
        let mut first = [0u8; 8];
        first.copy_from_slice(&tag.as_ref()[..8]);
        u64::from_be_bytes(first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The indices of positions 0–7 of a 1,000-entry list under [`key`] and tweak `list-7`.
    const PINNED: [u64; 8] = [981, 471, 395, 688, 963, 481, 89, 624];

    /// A fixed test key: bytes 0 to 31.
    fn key() -> Vec<u8> {
        (0..32).collect()
    }

    #[test]
    fn every_position_gets_its_own_index_inside_the_list() {
        for size in [1, 2, 3, 7, 1_000, 4_096, 65_536, 100_003] {
            let permutation = IndexPermutation::new(&key(), b"list-7", size);
            let mut seen = vec![false; usize::try_from(size).unwrap()];
            for position in 0..size {
                let index = permutation.index_of(position).expect("inside");
                let slot = &mut seen[usize::try_from(index).unwrap()];
                assert!(!*slot, "size {size}: two positions got index {index}");
                *slot = true;
            }
            assert_eq!(permutation.index_of(size), None, "past the end");
        }
    }

    /// A list keeps its permutation for life: a change to the construction between releases
    /// would hand an index out twice. These outputs pin it.
    #[test]
    fn the_construction_does_not_change_between_releases() {
        let permutation = IndexPermutation::new(&key(), b"list-7", 1_000);
        let indices: Vec<u64> = (0..8).filter_map(|p| permutation.index_of(p)).collect();
        assert_eq!(indices, PINNED);
    }

    /// The table is only a faster way to the same map.
    #[test]
    fn the_tabulated_map_is_the_computed_one() {
        for size in [1, 1_000, 1 << 17, 100_003, 1 << 20] {
            let tabulated = IndexPermutation::new(&key(), b"list-7", size);
            assert!(tabulated.table.is_some(), "size {size} is tabulated");
            let computed = IndexPermutation::untabulated(&key(), b"list-7", size);
            let step = (size / 5_000).max(1);
            for position in (0..size).step_by(usize::try_from(step).unwrap()) {
                assert_eq!(
                    tabulated.index_of(position),
                    computed.index_of(position),
                    "size {size}, position {position}"
                );
            }
        }
        assert!(
            IndexPermutation::new(&key(), b"list-7", 1 << 40)
                .table
                .is_none()
        );
    }

    #[test]
    fn consecutive_positions_do_not_give_consecutive_indices() {
        let permutation = IndexPermutation::new(&key(), b"list-7", 65_536);
        let indices: Vec<u64> = (0..64).filter_map(|p| permutation.index_of(p)).collect();
        let ascending = indices.windows(2).filter(|w| w[1] == w[0] + 1).count();
        assert!(ascending < 4, "issue order shows through: {indices:?}");
    }

    #[test]
    fn the_map_depends_on_the_key_and_on_the_list() {
        let of = |key: &[u8], tweak: &[u8]| -> Vec<u64> {
            let permutation = IndexPermutation::new(key, tweak, 1 << 17);
            (0..16).filter_map(|p| permutation.index_of(p)).collect()
        };
        let base = of(&key(), b"list-7");
        assert_eq!(of(&key(), b"list-7"), base, "deterministic");
        assert_ne!(of(&key(), b"list-8"), base, "another list");
        assert_ne!(of(&[9; 32], b"list-7"), base, "another key");
    }
}
