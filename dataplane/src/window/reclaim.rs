//! Block reclamation, both sides (DESIGN.md, "Shared block pool"): Disruptor-style, with no
//! per-subscriber reference count.
//!
//! - A reading core publishes, per stream, its mark: the lowest block sequence number any of its
//!   subscribers may still touch ([`NO_MARK`] when it has none). Each subscriber keeps a pin
//!   (where its cursor is, and what its send in flight reads: see
//!   [`crate::sendplan::SendPlan::pin`]); the core folds the pins into a [`CoreMark`] during
//!   each fan-out pass and publishes it at the pass's end, and again when a subscriber leaves.
//!   Only the core itself writes its mark.
//! - A new subscriber joins with [`StreamWindow::pin`], which lowers the core's mark before it
//!   checks that the frame is still held, so the writer cannot free the block in between.
//! - The writer retires a block out of the window first, then frees it only once every mark is
//!   past it ([`StreamWindow::min_mark`], used by [`super::Writer`]).
//!
//! Both sides use SeqCst on the marks and on `first_seq`: either the writer sees a lowered mark
//! or the joining core sees the advanced `first_seq` and retries.

use std::sync::atomic::Ordering;

use super::{NO_MARK, StreamWindow};

impl StreamWindow {
    /// Current reclamation mark of `core`.
    pub fn mark(&self, core: usize) -> u64 {
        self.marks[core].load(Ordering::SeqCst)
    }

    /// Publishes `core`'s mark: the lowest block sequence number any of its subscribers of this
    /// stream may still touch ([`NO_MARK`] when none). Only the core itself calls this, with a
    /// value no higher than any of its subscribers' pins.
    pub fn set_mark(&self, core: usize, mark: u64) {
        self.marks[core].store(mark, Ordering::SeqCst);
    }

    /// Joins a new subscriber on `core` at frame `want` (or the oldest frame held, if `want` is
    /// older). Returns `(start_seq, pin)`: `pin` is the block sequence number the subscriber must
    /// keep as its pin until it moves on. Hazard-pointer style: the core lowers its mark first,
    /// then checks the frame is still in the window; the writer retires first, then reads the
    /// marks. With both sides SeqCst, either the writer sees the lowered mark or we see the
    /// advanced `first_seq` and retry.
    pub fn pin(&self, core: usize, want: u64) -> (u64, u64) {
        loop {
            let first = self.first_seq();
            let s = want.max(first);
            let pin = match self.frame(s) {
                Some(f) => f.block_seq,
                // At the live edge every later frame lands in the current block or a newer one.
                None if s >= self.next_seq() => self.cur_block_seq.load(Ordering::SeqCst),
                None => continue,
            };
            let m = self.mark(core).min(pin);
            self.set_mark(core, m);
            if self.first_seq() <= s {
                return (s, pin);
            }
        }
    }

    /// The pin of a subscriber waiting at `seq` for a frame not yet published, or `None` if
    /// `seq` is published: the current block. Such a subscriber touches no older block, so it
    /// must not hold one (issue 8, defect 2: a VAN child parked ahead of the live edge would
    /// otherwise keep the block current when it joined, and with it every later one). The
    /// current block is read before the edge: a frame not yet published when the edge is read
    /// lands in that block or a later one.
    pub fn waiting_pin(&self, seq: u64) -> Option<u64> {
        let cur = self.cur_block_seq.load(Ordering::SeqCst);
        (seq >= self.next_seq()).then_some(cur)
    }

    /// The lowest mark of all cores: no block from this one on may be freed.
    pub(super) fn min_mark(&self) -> u64 {
        self.marks
            .iter()
            .map(|m| m.load(Ordering::SeqCst))
            .min()
            .unwrap_or(NO_MARK)
    }
}

/// One core's mark for one stream, folded over its subscribers' pins.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CoreMark(u64);

impl Default for CoreMark {
    fn default() -> Self {
        Self::none()
    }
}

impl CoreMark {
    /// No subscriber: the core holds no block of the stream.
    pub fn none() -> Self {
        Self(NO_MARK)
    }

    /// Counts one subscriber's pin in.
    pub fn include(&mut self, pin: u64) {
        self.0 = self.0.min(pin);
    }

    /// Publishes the mark as `core`'s for the stream of `win`.
    pub fn publish(self, win: &StreamWindow, core: usize) {
        win.set_mark(core, self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::BlockPool;
    use crate::window::{WindowConfig, Writer};

    #[test]
    fn a_core_mark_is_its_lowest_pin_and_blocks_below_it_stay() {
        let pool = BlockPool::new(4096, 8).unwrap();
        let cfg = WindowConfig {
            max_blocks: 2,
            frame_capacity: 64,
            max_age_us: u64::MAX / 2,
            min_read: 512,
        };
        let win = StreamWindow::new(&cfg, 2, 0);
        let mut w = Writer::new(cfg, 4096, &win);
        let put = |w: &mut Writer| {
            let t = w.reserve(&win, &pool).unwrap();
            w.publish(&win, t.len, 0, 0)
        };
        put(&mut w);
        let (_, pin0) = win.pin(1, 0);
        let mut mark = CoreMark::none();
        for pin in [pin0 + 3, pin0, pin0 + 1] {
            mark.include(pin);
        }
        mark.publish(&win, 1);
        assert_eq!(win.mark(1), pin0);
        for _ in 0..4 {
            put(&mut w);
        }
        // Block 0 left the window, but core 1 still pins it.
        assert_eq!(pool.in_use(), w.blocks_owned());
        assert!(w.blocks_owned() > 2);
        // The last subscriber left: nothing is held, everything retired goes back.
        CoreMark::none().publish(&win, 1);
        assert_eq!(win.min_mark(), NO_MARK);
        w.trim(&win, &pool, 0);
        assert_eq!(w.blocks_owned(), 2);
    }
}
