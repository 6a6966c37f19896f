//! Viewers a proxy should see soon but does not count yet: the ones `/resolve` sent it ([0033])
//! and the ones CONSOLIDATE or LinkDowngrade moved to it ([0037], [0066]). They count against
//! its room at once, so that a flash crowd resolved between two of its reports never overfills
//! it ([0047]: Max_s is what the machine can hold, whoever is on the way).
//!
//! A reservation ends when the proxy's own count shows the viewer: at its viewer LOGIN (a proxy
//! that sends one per viewer), or at a heartbeat (it carries the viewer count, authoritative):
//! every reservation at least `Config::viewer_connect_ms` old ends there, and as many younger
//! ones, oldest first, as the count grew beyond those. A viewer resolved just before the
//! heartbeat may not have connected yet, so a young reservation ends only if the count shows
//! that many newcomers; with viewers leaving meanwhile it may stay one more interval: counted
//! twice at worst, never missed. A viewer that never comes is forgotten at the next heartbeat,
//! and a proxy that sends neither is declared crashed at the heartbeat timeout ([0066]),
//! reservations included.

use std::collections::VecDeque;

use super::api::Time;

/// Reservations of one (proxy, stream) pair, oldest first; those made at the same time share
/// one entry (a flash crowd resolved in one instant costs one). Most pairs have none most of
/// the time: the queue exists only while one is open, so an empty one costs a pointer, not a
/// queue and its capacity (issue 3's memory per pair, over tens of thousands of pairs).
#[derive(Debug, Default, Clone)]
pub(super) struct Expected {
    // Boxed on purpose: `None` is 8 bytes where an empty `VecDeque` is 32, in every pair.
    #[allow(clippy::box_collection)]
    batches: Option<Box<VecDeque<(Time, u32)>>>,
    total: u32,
}

impl Expected {
    /// Viewers reserved and not yet counted.
    pub(super) fn total(&self) -> u32 {
        self.total
    }

    /// `n` viewers are on their way, as of `at`.
    pub(super) fn add(&mut self, at: Time, n: u32) {
        if n == 0 {
            return;
        }
        let batches = self.batches.get_or_insert_default();
        match batches.back_mut() {
            Some((t, k)) if *t == at => *k = k.saturating_add(n),
            _ => batches.push_back((at, n)),
        }
        self.total = self.total.saturating_add(n);
    }

    /// Drops the queue once nothing is on the way.
    fn release_if_empty(&mut self) {
        if self.batches.as_ref().is_some_and(|b| b.is_empty()) {
            self.batches = None;
        }
    }

    /// A viewer logged in: the oldest reservation ends (whichever viewer it was, one fewer is on
    /// the way, and the count now holds it).
    pub(super) fn arrived(&mut self) {
        let Some(batches) = self.batches.as_mut() else {
            return;
        };
        if let Some((_, k)) = batches.front_mut() {
            *k -= 1;
            self.total -= 1;
            if *k == 0 {
                batches.pop_front();
            }
        }
        self.release_if_empty();
    }

    /// A heartbeat received at `now` counted every viewer that connected at least `grace_micros`
    /// before, and its count `grew` by that many since the last one: the reservations that old
    /// end, then as many younger ones as the growth leaves unexplained. How many ended.
    pub(super) fn counted_at(&mut self, now: Time, grace_micros: u64, grew: u32) -> u32 {
        let Some(batches) = self.batches.as_mut() else {
            return 0;
        };
        let mut aged = 0u32;
        while let Some(&(at, k)) = batches.front() {
            if at.plus_micros(grace_micros) > now {
                break;
            }
            batches.pop_front();
            aged = aged.saturating_add(k);
        }
        let mut young = grew.saturating_sub(aged);
        let mut ended = aged;
        while young > 0 {
            let Some((_, k)) = batches.front_mut() else {
                break;
            };
            let n = young.min(*k);
            *k -= n;
            young -= n;
            ended += n;
            if *k == 0 {
                batches.pop_front();
            }
        }
        self.total -= ended;
        self.release_if_empty();
        ended
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_ends_the_oldest_and_a_heartbeat_the_ones_old_enough() {
        let mut e = Expected::default();
        e.add(Time(100), 2);
        e.add(Time(100), 1);
        e.add(Time(500), 2);
        assert_eq!(e.total(), 5);
        e.arrived();
        assert_eq!(e.total(), 4);
        // A heartbeat at 550 with a grace of 100 and a count grown by 2: the ones of 100 were
        // counted, and the growth shows no more.
        assert_eq!(e.counted_at(Time(550), 100, 2), 2);
        assert_eq!(e.total(), 2);
        // Grown by 1 with none aged: the oldest young one came.
        e.add(Time(560), 1);
        assert_eq!(e.counted_at(Time(570), 100, 1), 1);
        assert_eq!(e.total(), 2);
        assert_eq!(e.counted_at(Time(700), 100, 0), 2);
        assert_eq!(e.total(), 0);
        e.arrived();
        assert_eq!(e.total(), 0);
        assert!(e.batches.is_none(), "an empty queue is given back");
    }
}
