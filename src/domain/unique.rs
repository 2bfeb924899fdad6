//! De-duplication in first-seen order, in time linear in the number of values.
//!
//! Request lists are de-duplicated with a hash set, never by scanning what was kept so far: a
//! scan per value is quadratic, and ~95k distinct `/32`s in one 1 MiB request pinned a worker
//! thread for seconds, out of reach of the request timeout (issue 20).

use std::collections::HashSet;
use std::hash::Hash;

/// Values in the order they were first pushed, each once.
#[derive(Debug)]
pub(crate) struct Unique<T> {
    order: Vec<T>,
    seen: HashSet<T>,
}

impl<T: Hash + Eq + Clone> Unique<T> {
    /// An empty list with room for `capacity` values.
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            order: Vec::with_capacity(capacity),
            seen: HashSet::with_capacity(capacity),
        }
    }

    /// Appends `value` unless it is already present; returns whether it was new.
    pub(crate) fn push(&mut self, value: T) -> bool {
        if self.seen.insert(value.clone()) {
            self.order.push(value);
            true
        } else {
            false
        }
    }

    /// The values, in first-seen order.
    pub(crate) fn into_vec(self) -> Vec<T> {
        self.order
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    thread_local! {
        static COMPARISONS: Cell<u64> = const { Cell::new(0) };
    }

    /// A value that counts how often it is compared for equality.
    #[derive(Debug, Clone)]
    struct Counted(u64);

    impl Hash for Counted {
        fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
            self.0.hash(state);
        }
    }

    impl PartialEq for Counted {
        fn eq(&self, other: &Self) -> bool {
            COMPARISONS.with(|c| c.set(c.get() + 1));
            self.0 == other.0
        }
    }

    impl Eq for Counted {}

    #[test]
    fn keeps_first_occurrences_in_order() {
        let mut unique = Unique::with_capacity(4);
        let new: Vec<bool> = [3, 1, 3, 2, 1]
            .into_iter()
            .map(|v| unique.push(v))
            .collect();
        assert_eq!(new, [true, true, false, true, false]);
        assert_eq!(unique.into_vec(), [3, 1, 2]);
    }

    /// The cost is counted, not timed: 100k distinct values take about no equality comparison
    /// (only hash collisions compare), where a scan of the kept values takes ~5 billion.
    #[test]
    fn distinct_values_cost_a_linear_number_of_comparisons() {
        let n = 100_000;
        COMPARISONS.with(|c| c.set(0));
        let mut unique = Unique::with_capacity(n as usize);
        for v in 0..n {
            assert!(unique.push(Counted(v)));
        }
        assert!(!unique.push(Counted(7)));
        let comparisons = COMPARISONS.with(Cell::get);
        assert!(comparisons < n, "{comparisons} comparisons for {n} values");
        assert_eq!(unique.into_vec().len(), n as usize);
    }
}
