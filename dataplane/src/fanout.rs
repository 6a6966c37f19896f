//! Fan-out: one core's subscribers of each stream, and which streams have something new for
//! them (DESIGN.md, "Fan-out").
//!
//! When ingest publishes frames, [`Fanout::published`] marks the stream for a pass on this core
//! and names the other cores with subscribers to wake (each wakes at most once per batch of
//! completions). A pass ([`Fanout::next_dirty`]) visits each marked stream once, however many
//! reads marked it: the reactor queues one send per idle subscriber ([`Fanout::take`]), all
//! pointing into the same registered block, submits them together, and publishes the core's
//! reclamation mark for the stream ([`Fanout::restore`], [`crate::window::reclaim`]). A
//! subscriber holding back a small send ([`crate::sendplan`]) has its stream passed again when
//! the core's coalescing timer fires ([`Fanout::hold_back`], [`Fanout::coalescing_due`]).
//!
//! Subscribers are connection slots; each knows its index in its stream's list, so that
//! leaving is O(1). No I/O here: the reactor sends and sets timers.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{Ordering, fence};

use crate::stream::Stream;
use crate::window::reclaim::CoreMark;

struct Subscribers {
    stream: Arc<Stream>,
    slots: Vec<u32>,
}

/// One core's fan-out state.
pub struct Fanout {
    core: usize,
    streams: HashMap<u64, Subscribers>,
    /// Streams to pass, with repeats (a pass sorts them out).
    dirty: Vec<u64>,
    /// Streams with a subscriber holding back a small send, passed again when the coalescing
    /// timer fires.
    coalescing: Vec<u64>,
}

/// What became of a stream's list when a subscriber left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Left {
    /// The subscriber at `index` was the last of the list.
    Emptied,
    /// `moved` (if any) now has the index of the one that left; the core's mark must be
    /// published again without the one that left.
    Remaining { moved: Option<u32> },
}

impl Fanout {
    pub fn new(core: usize) -> Self {
        Self {
            core,
            streams: HashMap::new(),
            dirty: Vec::new(),
            coalescing: Vec::new(),
        }
    }

    /// Connection `slot` subscribes to `stream` on this core; returns its index in the list.
    /// Call it before the subscriber computes where it starts: the first subscriber sets the
    /// core's bit in `subscribed_cores` (SeqCst), so that either ingest sees it and wakes this
    /// core, or the subscriber sees the frames ingest published ([`Fanout::published`]).
    pub fn join(&mut self, stream: &Arc<Stream>, slot: u32) -> usize {
        let subs = self
            .streams
            .entry(stream.id)
            .or_insert_with(|| Subscribers {
                stream: stream.clone(),
                slots: Vec::new(),
            });
        if subs.slots.is_empty() {
            stream
                .subscribed_cores
                .fetch_or(1u64 << self.core, Ordering::SeqCst);
        }
        subs.slots.push(slot);
        subs.slots.len() - 1
    }

    /// The subscriber at `index` of `stream_id`'s list leaves. The last one out clears the
    /// core's bit and its reclamation mark for the stream.
    pub fn leave(&mut self, stream_id: u64, index: usize) -> Left {
        let Some(subs) = self.streams.get_mut(&stream_id) else {
            return Left::Emptied;
        };
        subs.slots.swap_remove(index);
        if !subs.slots.is_empty() {
            return Left::Remaining {
                moved: subs.slots.get(index).copied(),
            };
        }
        CoreMark::none().publish(&subs.stream.window, self.core);
        subs.stream
            .subscribed_cores
            .fetch_and(!(1u64 << self.core), Ordering::SeqCst);
        self.streams.remove(&stream_id);
        Left::Emptied
    }

    /// Frames were published on `stream`: marks it for a pass here if this core has
    /// subscribers, and returns the other cores with subscribers (a bit per core), to wake.
    pub fn published(&mut self, stream: &Stream) -> u64 {
        // Pairs with the SeqCst fetch_or of a joining subscriber: either we see its bit, or it
        // sees our frames when it computes its start.
        fence(Ordering::SeqCst);
        let mask = stream.subscribed_cores.load(Ordering::SeqCst);
        let me = 1u64 << self.core;
        if mask & me != 0 {
            self.dirty.push(stream.id);
        }
        mask & !me
    }

    /// Marks every stream with subscribers here for a pass (woken by another core, a tick, a
    /// stop).
    pub fn all_dirty(&mut self) {
        self.dirty.extend(self.streams.keys().copied());
    }

    /// A subscriber of `stream_id` holds back a small send until the coalescing timer fires.
    pub fn hold_back(&mut self, stream_id: u64) {
        if !self.coalescing.contains(&stream_id) {
            self.coalescing.push(stream_id);
        }
    }

    /// The coalescing timer fired: the streams that held back sends get a pass.
    pub fn coalescing_due(&mut self) {
        self.dirty.append(&mut self.coalescing);
    }

    /// Starts a pass: each marked stream comes once from [`Fanout::next_dirty`], however often
    /// it was marked (several reads in one batch of completions make one fan-out pass).
    pub fn begin_pass(&mut self) {
        self.dirty.sort_unstable();
        self.dirty.dedup();
    }

    /// The next stream of this pass.
    pub fn next_dirty(&mut self) -> Option<u64> {
        self.dirty.pop()
    }

    /// Takes `stream_id`'s subscribers out for a pass (nothing adds or removes subscribers
    /// during it: releases wait for the end of the batch); [`Fanout::restore`] puts them back.
    pub fn take(&mut self, stream_id: u64) -> Option<Vec<u32>> {
        self.streams
            .get_mut(&stream_id)
            .map(|s| std::mem::take(&mut s.slots))
    }

    /// Ends a pass: the subscribers back, and the core's `mark` (their lowest pin) published.
    pub fn restore(&mut self, stream_id: u64, slots: Vec<u32>, mark: CoreMark) {
        let subs = self
            .streams
            .get_mut(&stream_id)
            .expect("a stream's list leaves only when its last subscriber does");
        subs.slots = slots;
        mark.publish(&subs.stream.window, self.core);
    }

    /// Publishes the core's mark for `stream_id` (after a subscriber left).
    pub fn publish_mark(&self, stream_id: u64, mark: CoreMark) {
        if let Some(subs) = self.streams.get(&stream_id) {
            mark.publish(&subs.stream.window, self.core);
        }
    }

    /// The streams with subscribers here.
    pub fn stream_ids(&self) -> Vec<u64> {
        self.streams.keys().copied().collect()
    }

    /// `stream_id`'s stream and subscribers.
    pub fn subscribers(&self, stream_id: u64) -> Option<(&Arc<Stream>, &[u32])> {
        self.streams
            .get(&stream_id)
            .map(|s| (&s.stream, s.slots.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::Registry;
    use crate::window::WindowConfig;
    use proptest::prelude::*;

    fn streams(n: usize) -> (Registry, Vec<Arc<Stream>>) {
        let r = Registry::new(WindowConfig::default(), 4, 65536);
        let s = (0..n)
            .map(|i| {
                r.attach_source(&format!("s{i}"), "x", crate::stream::LOOPBACK)
                    .unwrap()
                    .0
            })
            .collect();
        (r, s)
    }

    #[test]
    fn the_first_subscriber_sets_the_core_bit_and_the_last_clears_it() {
        let (_r, s) = streams(1);
        let mut f = Fanout::new(2);
        assert_eq!(f.join(&s[0], 10), 0);
        assert_eq!(f.join(&s[0], 11), 1);
        assert_eq!(f.join(&s[0], 12), 2);
        assert_eq!(s[0].subscribed_cores.load(Ordering::SeqCst), 0b100);
        s[0].window.set_mark(2, 5);
        // The last of the list takes the place of the one that left.
        assert_eq!(f.leave(s[0].id, 0), Left::Remaining { moved: Some(12) });
        assert_eq!(f.subscribers(s[0].id).unwrap().1, [12, 11]);
        assert_eq!(f.leave(s[0].id, 1), Left::Remaining { moved: None });
        assert_eq!(f.leave(s[0].id, 0), Left::Emptied);
        assert_eq!(s[0].subscribed_cores.load(Ordering::SeqCst), 0);
        assert_eq!(s[0].window.mark(2), crate::window::NO_MARK);
        assert!(f.subscribers(s[0].id).is_none());
    }

    #[test]
    fn publishing_marks_this_core_and_names_the_others_to_wake() {
        let (_r, s) = streams(2);
        let mut here = Fanout::new(0);
        let mut there = Fanout::new(3);
        here.join(&s[0], 1);
        there.join(&s[0], 1);
        there.join(&s[1], 2);
        assert_eq!(here.published(&s[0]), 0b1000);
        assert_eq!(here.published(&s[1]), 0b1000);
        assert_eq!(here.published(&s[0]), 0b1000);
        here.begin_pass();
        assert_eq!(here.next_dirty(), Some(s[0].id));
        assert_eq!(here.next_dirty(), None);
    }

    #[test]
    fn a_pass_restores_the_list_and_publishes_the_lowest_pin() {
        let (_r, s) = streams(1);
        let mut f = Fanout::new(1);
        f.join(&s[0], 7);
        f.join(&s[0], 8);
        let slots = f.take(s[0].id).unwrap();
        assert_eq!(slots, [7, 8]);
        let mut mark = CoreMark::none();
        mark.include(9);
        mark.include(4);
        f.restore(s[0].id, slots, mark);
        assert_eq!(s[0].window.mark(1), 4);
        assert_eq!(f.subscribers(s[0].id).unwrap().1, [7, 8]);
    }

    #[test]
    fn held_back_streams_pass_once_when_the_timer_fires() {
        let mut f = Fanout::new(0);
        f.hold_back(5);
        f.hold_back(5);
        f.hold_back(6);
        f.begin_pass();
        assert_eq!(f.next_dirty(), None);
        f.coalescing_due();
        f.begin_pass();
        assert_eq!(
            (f.next_dirty(), f.next_dirty(), f.next_dirty()),
            (Some(6), Some(5), None)
        );
        f.coalescing_due();
        f.begin_pass();
        assert_eq!(f.next_dirty(), None);
    }

    proptest! {
        /// A pass visits every marked stream exactly once.
        #[test]
        fn a_pass_visits_each_marked_stream_once(marks in proptest::collection::vec(0u64..8, 0..40)) {
            let mut f = Fanout::new(0);
            f.dirty = marks.clone();
            f.begin_pass();
            let mut passed = Vec::new();
            while let Some(id) = f.next_dirty() {
                passed.push(id);
            }
            let mut want = marks;
            want.sort_unstable();
            want.dedup();
            passed.sort_unstable();
            prop_assert_eq!(passed, want);
        }
    }
}
