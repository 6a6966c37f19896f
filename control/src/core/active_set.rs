//! The active proxies of one (stream, region, tier), in activation order, with the ones that
//! take a new viewer now indexed so that the round-robin of [0042] picks the k-th of them in
//! O(log n) instead of filtering the whole tier on every `resolve`.
//!
//! A Fenwick tree counts the proxies that take viewers over the slots of the activation order;
//! a proxy that leaves leaves a hole, and the holes are compacted away once they are half of the
//! slots (amortised O(1) per removal).

use std::collections::HashMap;

use super::ids::Px;

/// Slots below which holes are not worth compacting.
const MIN_COMPACT: usize = 32;

#[derive(Debug, Default)]
pub(super) struct ActiveSet {
    /// Activation order (oldest first); `None` where a proxy left.
    slots: Vec<Option<Px>>,
    slot_of: HashMap<Px, u32>,
    /// Whether the proxy of each slot takes a new viewer now.
    accepting: Vec<bool>,
    /// Fenwick tree over `accepting`: `tree[n - 1]` sums slots `(n - lowbit(n), n]` (1-based).
    tree: Vec<u32>,
    accepting_len: u32,
}

fn lowbit(n: usize) -> usize {
    n & n.wrapping_neg()
}

impl ActiveSet {
    /// Append a newly activated proxy (not taking viewers until `set_accepting`).
    pub(super) fn push(&mut self, px: Px) {
        if self.slot_of.contains_key(&px) {
            return;
        }
        let slot = self.slots.len();
        self.slots.push(Some(px));
        self.accepting.push(false);
        // The new node covers the slots (n - lowbit(n), n]; its own is 0.
        let n = slot + 1;
        let sum = self.prefix(n - 1) - self.prefix(n - lowbit(n));
        self.tree.push(sum);
        self.slot_of.insert(px, slot as u32);
    }

    pub(super) fn remove(&mut self, px: Px) {
        let Some(&slot) = self.slot_of.get(&px) else {
            return;
        };
        self.set_accepting(px, false);
        self.slot_of.remove(&px);
        self.slots[slot as usize] = None;
        if self.slots.len() >= MIN_COMPACT && self.slot_of.len() * 2 < self.slots.len() {
            self.compact();
        }
    }

    /// Record whether `px` takes a new viewer now (no-op for a proxy not in the set).
    pub(super) fn set_accepting(&mut self, px: Px, yes: bool) {
        let Some(&slot) = self.slot_of.get(&px) else {
            return;
        };
        let slot = slot as usize;
        if self.accepting[slot] == yes {
            return;
        }
        self.accepting[slot] = yes;
        let mut n = slot + 1;
        while n <= self.tree.len() {
            if yes {
                self.tree[n - 1] += 1;
            } else {
                self.tree[n - 1] -= 1;
            }
            n += lowbit(n);
        }
        if yes {
            self.accepting_len += 1;
        } else {
            self.accepting_len -= 1;
        }
    }

    pub(super) fn is_empty(&self) -> bool {
        self.slot_of.is_empty()
    }

    /// How many proxies take a new viewer now.
    pub(super) fn accepting_len(&self) -> u32 {
        self.accepting_len
    }

    /// The `k`-th (0-based, in activation order) proxy that takes a new viewer.
    pub(super) fn nth_accepting(&self, k: u32) -> Option<Px> {
        if k >= self.accepting_len {
            return None;
        }
        // Descend the tree: the largest prefix of slots holding at most k accepting proxies.
        let mut pos = 0;
        let mut left = k + 1;
        let mut step = self.tree.len().checked_ilog2().map_or(0, |b| 1usize << b);
        while step > 0 {
            if pos + step <= self.tree.len() && self.tree[pos + step - 1] < left {
                pos += step;
                left -= self.tree[pos - 1];
            }
            step >>= 1;
        }
        self.slots.get(pos).copied().flatten()
    }

    /// The active proxies in activation order.
    pub(super) fn iter(&self) -> impl DoubleEndedIterator<Item = Px> + '_ {
        self.slots.iter().flatten().copied()
    }

    fn prefix(&self, mut n: usize) -> u32 {
        let mut sum = 0;
        while n > 0 {
            sum += self.tree[n - 1];
            n &= n - 1;
        }
        sum
    }

    fn compact(&mut self) {
        let live: Vec<(Px, bool)> = self
            .slots
            .iter()
            .zip(&self.accepting)
            .filter_map(|(s, &a)| s.map(|px| (px, a)))
            .collect();
        self.slots = live.iter().map(|&(px, _)| Some(px)).collect();
        self.accepting = live.iter().map(|&(_, a)| a).collect();
        for (i, &(px, _)) in live.iter().enumerate() {
            self.slot_of.insert(px, i as u32);
        }
        self.tree = self.accepting.iter().map(|&a| u32::from(a)).collect();
        for n in 1..=self.tree.len() {
            let up = n + lowbit(n);
            if up <= self.tree.len() {
                self.tree[up - 1] += self.tree[n - 1];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[derive(Clone, Debug)]
    enum Op {
        Push(u32),
        Remove(u32),
        Accepting(u32, bool),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0u32..80).prop_map(Op::Push),
            (0u32..80).prop_map(Op::Remove),
            (0u32..80, any::<bool>()).prop_map(|(p, a)| Op::Accepting(p, a)),
        ]
    }

    proptest! {
        /// The k-th accepting proxy is the k-th of a plain filter over the activation order.
        #[test]
        fn nth_accepting_matches_a_filter_of_the_activation_order(ops in proptest::collection::vec(op(), 0..400)) {
            let mut set = ActiveSet::default();
            let mut model: Vec<(Px, bool)> = Vec::new();
            for op in ops {
                match op {
                    Op::Push(p) => {
                        set.push(Px(p));
                        if !model.iter().any(|m| m.0 == Px(p)) {
                            model.push((Px(p), false));
                        }
                    }
                    Op::Remove(p) => {
                        set.remove(Px(p));
                        model.retain(|m| m.0 != Px(p));
                    }
                    Op::Accepting(p, a) => {
                        set.set_accepting(Px(p), a);
                        if let Some(m) = model.iter_mut().find(|m| m.0 == Px(p)) {
                            m.1 = a;
                        }
                    }
                }
                let accepting: Vec<Px> = model.iter().filter(|m| m.1).map(|m| m.0).collect();
                prop_assert_eq!(set.accepting_len() as usize, accepting.len());
                prop_assert_eq!(set.iter().count(), model.len());
                prop_assert!(set.iter().eq(model.iter().map(|m| m.0)));
                for (k, &px) in accepting.iter().enumerate() {
                    prop_assert_eq!(set.nth_accepting(k as u32), Some(px));
                }
                prop_assert_eq!(set.nth_accepting(accepting.len() as u32), None);
            }
        }
    }

    #[test]
    fn round_robin_skips_proxies_without_room_and_holes() {
        let mut set = ActiveSet::default();
        for p in 0..100 {
            set.push(Px(p));
            set.set_accepting(Px(p), p % 3 == 0);
        }
        for p in 0..=60 {
            set.remove(Px(p));
        }
        // 61..100 remain; accepting: 63, 66, ..., 99.
        assert_eq!(set.accepting_len(), 13);
        assert_eq!(set.nth_accepting(0), Some(Px(63)));
        assert_eq!(set.nth_accepting(12), Some(Px(99)));
        assert_eq!(set.nth_accepting(13), None);
    }
}
