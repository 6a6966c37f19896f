//! A stream fed by its parent proxies: what a VAN data frame received from a parent does to the
//! stream (the counterpart of [`crate::ingest`] for a source).
//!
//! A frame keeps its parent's sequence number end to end ([`Writer::publish_at`]): the next one
//! is published, a copy of one the stream has (another parent sent it first, [0029], [0044]) is
//! dropped, a frame ahead is published as a counted jump, unless the caller says another parent
//! is delivering in order (see [`crate::pull`]), then it is held back (dropped, and the caller
//! asks that parent again from the next sequence). A frame is placed whole once all of it has arrived: several
//! parents feed one writer, so none of them may own the block's tail across reads, and a parent
//! that dies mid-frame leaves nothing half-written.
//!
//! Plain viewers who join at this proxy need what a source's ingest gives them: MPEG-TS is known
//! from the content type the parent names or from the sync bytes, keyframes are found by the
//! same scanner (a frame flagged random-access is one too), and the latest PAT/PMT is cached on
//! the stream. No I/O; the caller passes the frames and the pool.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::frame::{FLAG_RANDOM_ACCESS, FrameHeader};
use crate::ingest::earlier_rap;
use crate::mpegts::{self, TsScanner};
use crate::pool::BlockPool;
use crate::stream::Stream;
use crate::window::{Arrival, FeedStats, ReserveError, Writer};

/// What a frame offered by a parent became.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offered {
    /// Published as `seq`: `missed` frames skipped before it (a jump), `new_block` when it
    /// took a fresh block.
    Published {
        seq: u64,
        missed: u64,
        new_block: bool,
    },
    /// A copy of a frame the stream has, or one older than its window: dropped.
    Duplicate,
    /// Ahead of the next sequence while another parent delivers in order: dropped.
    HeldBack,
    /// No free block: dropped. The caller drops the connection and asks again from the next
    /// sequence (nothing is lost: it comes again).
    PoolEmpty,
    /// Not a frame a relay sends (empty, larger than a block, or a sequence number out of
    /// range): the parent is broken.
    Invalid,
}

/// The writer of a stream its parents feed, and what it knows of the payload so far.
pub struct ParentFeed {
    stream: Arc<Stream>,
    writer: Box<Writer>,
    scanner: TsScanner,
    /// Payload bytes scanned since the feed began or last jumped (the scanner's offsets).
    offset: u64,
    /// Last frame scanned: (seq, payload offset of its first byte).
    prev: Option<(u64, u64)>,
    raps: Vec<u64>,
}

impl ParentFeed {
    /// Feeds `stream` with `writer` (from [`crate::stream::Registry::attach_parents`]); the
    /// parent said the payload is `content_type`.
    pub fn new(stream: Arc<Stream>, writer: Box<Writer>, content_type: &str) -> Self {
        if mpegts::is_ts_content_type(content_type) {
            stream.is_ts.store(true, Ordering::Relaxed);
        }
        Self {
            stream,
            writer,
            scanner: TsScanner::new(),
            offset: 0,
            prev: None,
            raps: Vec::new(),
        }
    }

    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// The sequence number the stream needs next: what a parent is asked from.
    pub fn next_seq(&self) -> u64 {
        self.writer.next_seq()
    }

    pub fn stats(&self) -> FeedStats {
        self.writer.feed_stats()
    }

    /// The parents are gone: the stream and its writer, for the grace period or the end.
    pub fn into_parts(self) -> (Arc<Stream>, Box<Writer>) {
        (self.stream, self.writer)
    }

    /// Whether a frame numbered `seq` would be kept (worth assembling), asked when its header
    /// arrives so that a copy is not buffered at all.
    pub fn wanted(&self, seq: u64) -> bool {
        self.writer.arrival(&self.stream.window, seq).is_published()
    }

    /// Ages the window and frees the blocks no core uses any more (on every tick).
    pub fn trim(&mut self, pool: &BlockPool, wall_us: u64) {
        self.writer.trim(&self.stream.window, pool, wall_us);
    }

    /// A whole data frame `h` with its `payload` arrived from a parent; `may_jump` when no other
    /// parent delivers in order ([`crate::pull::ParentSet::may_jump`]).
    pub fn offer(
        &mut self,
        pool: &BlockPool,
        h: &FrameHeader,
        payload: &[u8],
        may_jump: bool,
    ) -> Offered {
        let win = &self.stream.window;
        let arrival = if payload.is_empty() {
            Arrival::Invalid
        } else {
            self.writer.arrival(win, h.seq)
        };
        let missed = match arrival {
            Arrival::Next => 0,
            Arrival::Ahead { missed } if may_jump => missed,
            Arrival::Ahead { .. } => return Offered::HeldBack,
            Arrival::Invalid => return Offered::Invalid,
            Arrival::Duplicate | Arrival::Stale => {
                // Counted by the writer.
                self.writer
                    .publish_at(win, h.seq, payload.len(), h.timestamp_us, h.flags);
                return Offered::Duplicate;
            }
        };
        let tail = match self.writer.reserve_frame(win, pool, payload.len()) {
            Ok(tail) => tail,
            Err(ReserveError::PoolEmpty) => return Offered::PoolEmpty,
            Err(ReserveError::TooLarge { .. }) => return Offered::Invalid,
        };
        pool.write(tail.block, tail.offset, payload);
        let flags = h.flags & FLAG_RANDOM_ACCESS;
        let arrival = self
            .writer
            .publish_at(win, h.seq, payload.len(), h.timestamp_us, flags);
        debug_assert!(arrival.is_published(), "the arrival was asked just before");
        if missed > 0 {
            // The bytes before the jump are not this payload's past: scan afresh.
            self.scanner = TsScanner::new();
            self.offset = 0;
            self.prev = None;
        }
        self.index(h.seq, payload, flags != 0);
        self.stream
            .bytes_in
            .fetch_add(payload.len() as u64, Ordering::Relaxed);
        Offered::Published {
            seq: h.seq,
            missed,
            new_block: tail.offset == 0,
        }
    }

    /// Keyframes and PSI of the frame `seq` just published, for plain MPEG-TS viewers.
    fn index(&mut self, seq: u64, data: &[u8], flagged: bool) {
        let stream = &self.stream;
        let win = &stream.window;
        if flagged {
            self.writer.set_rap(win, seq, 0);
        }
        if self.offset == 0 && !stream.is_ts.load(Ordering::Relaxed) && mpegts::looks_like_ts(data)
        {
            stream.is_ts.store(true, Ordering::Relaxed);
            stream.set_content_type("video/mp2t");
        }
        let base = self.offset;
        self.offset += data.len() as u64;
        if !stream.is_ts.load(Ordering::Relaxed) {
            return;
        }
        self.raps.clear();
        self.scanner.scan(base, data, &mut self.raps);
        if (!self.raps.is_empty() || stream.psi().is_none())
            && let Some(psi) = self.scanner.psi()
        {
            stream.set_psi(psi);
        }
        // A frame is not cut here (it keeps its parent's number): a keyframe inside it is
        // recorded at its offset, one whose packet began in an earlier frame there.
        for &r in &self.raps {
            let at = if r >= base {
                Some((seq, (r - base) as u32))
            } else {
                self.prev.and_then(|prev| earlier_rap(win, prev, r))
            };
            if let Some((s, off)) = at {
                self.writer.set_rap(win, s, off);
            }
        }
        self.prev = Some((seq, base));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpegts::{TS_PACKET, sample};
    use crate::stream::Registry;
    use crate::window::WindowConfig;
    use proptest::prelude::*;

    const BLOCK: usize = 4096;

    fn feed(first_seq: u64, content_type: &str) -> (BlockPool, ParentFeed) {
        let pool = BlockPool::new(BLOCK, 256).unwrap();
        let cfg = WindowConfig {
            max_blocks: 200,
            frame_capacity: 1 << 14,
            max_age_us: u64::MAX / 2,
            min_read: 4 * TS_PACKET,
        };
        let registry = Registry::new(cfg, 1, BLOCK);
        let (stream, writer, _) = registry
            .attach_parents("s", content_type, first_seq)
            .unwrap();
        (pool, ParentFeed::new(stream, writer, content_type))
    }

    fn data(seq: u64, len: usize, flags: u8) -> FrameHeader {
        FrameHeader::data(seq, seq * 10, len as u32, flags)
    }

    fn published(pool: &BlockPool, f: &ParentFeed) -> Vec<(u64, Vec<u8>)> {
        let win = &f.stream().window;
        (win.first_seq()..win.next_seq())
            .map(|s| {
                let fr = win.frame(s).unwrap();
                // SAFETY: published, and nothing is freed in these tests.
                let b = unsafe { pool.slice(fr.block, fr.offset as usize, fr.len as usize) };
                (s, b.to_vec())
            })
            .collect()
    }

    #[test]
    fn two_parents_copies_are_one_frame_and_the_numbers_are_the_parents() {
        let (pool, mut f) = feed(100, "application/octet-stream");
        for seq in 100..110u64 {
            let p = vec![seq as u8; 50];
            let a = f.offer(&pool, &data(seq, 50, 0), &p, true);
            assert!(matches!(a, Offered::Published { missed: 0, .. }), "{a:?}");
            assert_eq!(
                f.offer(&pool, &data(seq, 50, 0), &p, true),
                Offered::Duplicate
            );
        }
        let got = published(&pool, &f);
        assert_eq!(got.len(), 10);
        assert!(got.iter().all(|(s, b)| b == &vec![*s as u8; 50]));
        assert_eq!(f.stats().duplicates, 10);
        assert_eq!(f.next_seq(), 110);
        assert!(!f.wanted(105) && f.wanted(110) && f.wanted(200));
    }

    #[test]
    fn a_jump_is_held_back_while_another_parent_delivers_and_counted_when_taken() {
        let (pool, mut f) = feed(0, "x/y");
        f.offer(&pool, &data(0, 10, 0), &[1; 10], true);
        assert_eq!(
            f.offer(&pool, &data(5, 10, 0), &[1; 10], false),
            Offered::HeldBack
        );
        assert_eq!(f.next_seq(), 1);
        assert!(matches!(
            f.offer(&pool, &data(5, 10, 0), &[1; 10], true),
            Offered::Published {
                seq: 5,
                missed: 4,
                ..
            }
        ));
        assert_eq!((f.stats().jumps, f.stats().missed), (1, 4));
        assert_eq!(f.offer(&pool, &data(6, 0, 0), &[], true), Offered::Invalid);
    }

    #[test]
    fn mpeg_ts_from_parents_gets_keyframes_and_psi_for_plain_viewers() {
        let (s, keys) = sample::stream(3);
        let (pool, mut f) = feed(40, "application/octet-stream");
        // Frames of 7 packets: the keyframes fall inside frames, not at their starts.
        for (i, chunk) in s.chunks(7 * TS_PACKET).enumerate() {
            let h = data(40 + i as u64, chunk.len(), 0);
            f.offer(&pool, &h, chunk, true);
        }
        assert!(f.stream().is_ts.load(Ordering::Relaxed));
        assert_eq!(f.stream().content_type(), "video/mp2t");
        assert_eq!(f.stream().psi().as_deref(), Some(&s[..2 * TS_PACKET]));
        let (seq, off) = f.stream().window.last_rap().unwrap();
        let last = *keys.last().unwrap() as usize;
        let frame = last / (7 * TS_PACKET);
        assert_eq!(
            (seq, off as usize),
            (40 + frame as u64, last - frame * 7 * TS_PACKET)
        );
    }

    #[test]
    fn a_flagged_frame_is_a_random_access_point_whatever_the_format() {
        let (pool, mut f) = feed(0, "audio/aac");
        f.offer(&pool, &data(0, 10, 0), &[1; 10], true);
        f.offer(&pool, &data(1, 10, FLAG_RANDOM_ACCESS), &[2; 10], true);
        assert_eq!(f.stream().window.last_rap(), Some((1, 0)));
        assert_eq!(
            f.stream().window.frame(1).unwrap().flags,
            FLAG_RANDOM_ACCESS
        );
    }

    proptest! {
        /// Any interleaving of two parents' copies of the same run of frames publishes every
        /// frame exactly once, in order, with its parent's number and bytes.
        #[test]
        fn any_interleaving_of_two_parents_publishes_each_frame_once(
            order in proptest::collection::vec(any::<bool>(), 1..120),
            lens in proptest::collection::vec(1usize..600, 60),
        ) {
            let (pool, mut f) = feed(7, "x/y");
            let (mut a, mut b) = (7u64, 7u64);
            let end = 7 + lens.len() as u64;
            for pick_a in order {
                let at = if pick_a { &mut a } else { &mut b };
                if *at == end { continue; }
                let len = lens[(*at - 7) as usize];
                let payload = vec![(*at % 251) as u8; len];
                f.offer(&pool, &data(*at, len, 0), &payload, true);
                *at += 1;
            }
            let got = published(&pool, &f);
            let upto = a.max(b);
            prop_assert_eq!(got.len() as u64, upto - 7);
            for (s, bytes) in got {
                prop_assert_eq!(bytes, vec![(s % 251) as u8; lens[(s - 7) as usize]]);
            }
            prop_assert_eq!(f.stats().jumps, 0);
        }
    }
}
