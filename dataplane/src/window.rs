//! The stream window: per stream, the ordered blocks it holds and the side index of its frames
//! (DESIGN.md, "Shared block pool").
//!
//! Layout. Ingest receives straight into the free tail of the stream's current block and
//! publishes each read as one frame at once; payload bytes are contiguous in the block and the
//! frame boundaries live in a side index (a ring of [`FrameRef`]s), so a plain viewer is sent one
//! contiguous byte range covering many frames, and a VAN viewer gets headers built from the index
//! next to the same payload bytes. A block is sealed when its tail is too small for a useful read
//! (or it holds a quarter of the index ring, so the ring can always make room).
//!
//! Concurrency. One writer per stream (the core that holds the source connection; the
//! [`Writer`] moves with the source across reconnects), any number of reading cores. Frames are
//! published with a release store of `next_seq`; index slots are seqlocks, so a reader that races
//! with the ring wrapping sees `None`, never a torn frame. Reclamation is Disruptor-style: each
//! core publishes in `marks[core]` the lowest block sequence number it may still touch, and the
//! writer frees a retired block only when every mark is past it. There is no per-subscriber
//! reference count. The whole protocol, both sides, is in [`reclaim`].
//!
//! Sequence numbers. A stream fed by an HTTP source numbers its frames itself, from 0 on
//! ([`Writer::publish`]). A stream fed by parent proxies keeps the parents' numbers
//! ([`Writer::publish_at`]), so that a child resuming elsewhere asks for the same frame
//! everywhere and redundant parents' copies of a frame are recognised as one ([0029], [0044]).
//! What the writer does with a frame offered at `seq` ([`Arrival`]):
//! - `seq` is the next one: published.
//! - `seq` is already held (`first_seq <= seq < next_seq`) or older than the oldest frame held:
//!   dropped, and counted. The window only grows at its head, so a frame behind it cannot be
//!   placed; with several parents this is the normal case for all but the first copy.
//! - `seq` is ahead of the next one (a parent that resumed us later than we asked, or a parent
//!   whose own window had moved on): published, and the jump counted with the frames it skipped.
//!   The window restarts at `seq`: the frames held so far leave it at once (their blocks are
//!   retired and reclaimed as usual), because every reader relies on the window being one
//!   contiguous run of sequence numbers. Subscribers still behind `seq` are then out of the
//!   window and the lag policy handles them as it handles any subscriber that fell out: a viewer
//!   skips to the live edge (counted), a child proxy is disconnected and told, never silently
//!   given a gap (DESIGN.md, "Slow consumers").
//! - `seq` at or beyond [`MAX_SEQ`], or an empty payload: dropped as invalid (a broken parent; the
//!   caller disconnects it).
//!
//! No I/O here: the caller passes the time (`timestamp_us`, `now_us`) explicitly.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering, fence};

use crossbeam::utils::CachePadded;

use crate::pool::BlockPool;

pub mod reclaim;

/// A core that touches no block of this stream.
pub const NO_MARK: u64 = u64::MAX;
/// No random-access point known.
pub const NO_RAP: u64 = u64::MAX;
const INVALID: u64 = u64::MAX;

/// Bounds of one stream's window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WindowConfig {
    /// At most this many blocks held (at least 2).
    pub max_blocks: usize,
    /// Frames the side index can grow to hold (rounded up to a power of two, at least 64). It
    /// starts at 16 and doubles when the window holds more frames (issue 8, defect 1: a stream
    /// that sends nothing, or little, costs little).
    pub frame_capacity: usize,
    /// Blocks whose newest frame is older than this are dropped (the current block stays).
    pub max_age_us: u64,
    /// A block whose free tail is smaller than this is sealed.
    pub min_read: usize,
}

impl Default for WindowConfig {
    fn default() -> Self {
        Self {
            max_blocks: 64,
            frame_capacity: 16384,
            max_age_us: 10_000_000,
            min_read: 4096,
        }
    }
}

/// One frame of the side index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameRef {
    pub seq: u64,
    pub block: u32,
    pub block_seq: u64,
    pub offset: u32,
    pub len: u32,
    pub timestamp_us: u64,
    pub flags: u8,
}

#[derive(Default)]
struct FrameSlot {
    seq: AtomicU64,
    block_seq: AtomicU64,
    /// block << 32 | offset
    loc: AtomicU64,
    /// len << 8 | flags
    len_flags: AtomicU64,
    ts: AtomicU64,
}

/// Sequence numbers stay below this (they share a word with a 24-bit offset, see [`pack_pos`]):
/// 2^40 frames last 35 years at 1,000 frames a second.
pub const MAX_SEQ: u64 = 1 << 40;

/// Packs a byte position (frame seq, offset inside the frame) into one word.
pub fn pack_pos(seq: u64, off: u32) -> u64 {
    debug_assert!(off < (1 << 24) && seq < MAX_SEQ);
    (seq << 24) | off as u64
}

pub fn unpack_pos(p: u64) -> (u64, u32) {
    (p >> 24, (p & 0xff_ffff) as u32)
}

/// The side index: a ring of frame slots, `seq & mask` the slot of frame `seq`.
struct Ring {
    slots: Box<[FrameSlot]>,
    mask: u64,
}

impl Ring {
    fn new(cap: usize) -> Box<Self> {
        let slots: Box<[FrameSlot]> = (0..cap)
            .map(|_| {
                let s = FrameSlot::default();
                s.seq.store(INVALID, Ordering::Relaxed);
                s
            })
            .collect();
        Box::new(Self {
            slots,
            mask: cap as u64 - 1,
        })
    }

    fn slot(&self, seq: u64) -> &FrameSlot {
        &self.slots[(seq & self.mask) as usize]
    }
}

/// The side index a stream starts with: 16 slots, 640 bytes.
const MIN_FRAMES: usize = 16;

/// The part of a stream every core reads.
pub struct StreamWindow {
    /// The current ring (owned: made by `Box::into_raw`, freed on drop). Only the writer
    /// replaces it, with a larger copy ([`Writer`], `grow_index`).
    ring: AtomicPtr<Ring>,
    /// Rings outgrown, kept until the stream is dropped: a reader may still look into one (it
    /// then finds a frame published since missing, and looks again in the current ring).
    #[allow(clippy::vec_box)] // a reader may hold a pointer to a ring: it must not move
    outgrown: Mutex<Vec<Box<Ring>>>,
    /// What the ring may grow to.
    max_frames: usize,
    next_seq: AtomicU64,
    first_seq: AtomicU64,
    cur_block_seq: AtomicU64,
    marks: Box<[CachePadded<AtomicU64>]>,
    /// Newest random-access point, packed with [`pack_pos`], or [`NO_RAP`].
    last_rap: AtomicU64,
    blocks_held: AtomicU64,
    /// Payload bytes published since the window began: how much a held send has grown by
    /// (`sendplan`), without a look at the frames.
    published_bytes: AtomicU64,
}

impl StreamWindow {
    /// A window for `cores` reading cores whose first frame will be `first_seq`.
    pub fn new(cfg: &WindowConfig, cores: usize, first_seq: u64) -> Self {
        let max_frames = cfg.frame_capacity.max(64).next_power_of_two();
        Self {
            ring: AtomicPtr::new(Box::into_raw(Ring::new(MIN_FRAMES))),
            outgrown: Mutex::new(Vec::new()),
            max_frames,
            next_seq: AtomicU64::new(first_seq),
            first_seq: AtomicU64::new(first_seq),
            cur_block_seq: AtomicU64::new(0),
            marks: (0..cores)
                .map(|_| CachePadded::new(AtomicU64::new(NO_MARK)))
                .collect(),
            last_rap: AtomicU64::new(NO_RAP),
            blocks_held: AtomicU64::new(0),
            published_bytes: AtomicU64::new(0),
        }
    }

    fn ring(&self) -> &Ring {
        // SAFETY: the pointer comes from `Box::into_raw` and the ring lives until the window
        // is dropped (an outgrown one in `outgrown`).
        unsafe { &*self.ring.load(Ordering::Acquire) }
    }

    /// Frames the side index holds now.
    pub fn capacity(&self) -> usize {
        self.ring().slots.len()
    }

    /// Frames the side index may grow to hold (`frame_capacity`).
    pub fn max_capacity(&self) -> usize {
        self.max_frames
    }

    /// One past the newest published frame.
    pub fn next_seq(&self) -> u64 {
        self.next_seq.load(Ordering::Acquire)
    }

    /// The oldest frame still in the window.
    pub fn first_seq(&self) -> u64 {
        self.first_seq.load(Ordering::SeqCst)
    }

    pub fn blocks_held(&self) -> u64 {
        self.blocks_held.load(Ordering::Relaxed)
    }

    /// How often the stream publishes lately: the mean interval between the newest frame and
    /// the one `frames` before it, by their timestamps; `None` while fewer are held.
    /// Payload bytes published so far. Stored before the frame count (`next_seq`, release): a
    /// reader that sees a frame sees its bytes counted.
    pub fn published_bytes(&self) -> u64 {
        self.published_bytes.load(Ordering::Acquire)
    }

    /// The block frames are being appended to now; another once a new block is begun.
    pub fn current_block_seq(&self) -> u64 {
        self.cur_block_seq.load(Ordering::SeqCst)
    }

    pub fn frame_interval_us(&self, frames: u64) -> Option<u64> {
        let frames = frames.max(1);
        let newest = self.next_seq().checked_sub(1)?;
        let older = newest.checked_sub(frames)?;
        let (a, b) = (self.frame(older)?, self.frame(newest)?);
        Some(b.timestamp_us.saturating_sub(a.timestamp_us) / frames)
    }

    /// The newest random-access point still in the window, as (seq, offset in that frame).
    pub fn last_rap(&self) -> Option<(u64, u32)> {
        let p = self.last_rap.load(Ordering::Acquire);
        if p == NO_RAP {
            return None;
        }
        let (seq, off) = unpack_pos(p);
        (seq >= self.first_seq() && seq < self.next_seq()).then_some((seq, off))
    }

    /// Frame `seq` if it is published and still in the window.
    pub fn frame(&self, seq: u64) -> Option<FrameRef> {
        if seq >= self.next_seq() {
            return None;
        }
        let mut ring = self.ring();
        let mut slot = ring.slot(seq);
        while slot.seq.load(Ordering::Acquire) != seq {
            // Published (seq < next_seq) but not in this ring: the ring may have been outgrown
            // since it was read; then look in the new one.
            let now = self.ring();
            if std::ptr::eq(now, ring) {
                return None;
            }
            ring = now;
            slot = ring.slot(seq);
        }
        let block_seq = slot.block_seq.load(Ordering::Relaxed);
        let loc = slot.loc.load(Ordering::Relaxed);
        let len_flags = slot.len_flags.load(Ordering::Relaxed);
        let ts = slot.ts.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if slot.seq.load(Ordering::Relaxed) != seq || seq < self.first_seq() {
            return None;
        }
        Some(FrameRef {
            seq,
            block: (loc >> 32) as u32,
            block_seq,
            offset: loc as u32,
            len: (len_flags >> 8) as u32,
            timestamp_us: ts,
            flags: len_flags as u8,
        })
    }
}

impl Drop for StreamWindow {
    fn drop(&mut self) {
        // SAFETY: the current ring came from `Box::into_raw`; no reader is left (we own the
        // window exclusively).
        drop(unsafe { Box::from_raw(*self.ring.get_mut()) });
    }
}

/// One frame to publish out of a read cut at random-access points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    pub start: usize,
    pub len: usize,
    /// The frame begins at a random-access point (FLAG_RANDOM_ACCESS, and where new MPEG-TS
    /// viewers start).
    pub rap: bool,
}

/// Cuts a read of `len` (> 0) payload bytes that starts at absolute stream offset `base` so that
/// each random-access point in `raps` (ascending absolute offsets) begins a frame. Returns the
/// newest random-access point that lies before `base` (its packet began in an earlier read), if
/// any.
pub fn cut_at_raps(base: u64, len: usize, raps: &[u64], out: &mut Vec<Cut>) -> Option<u64> {
    out.clear();
    let mut earlier = None;
    let mut start = 0usize;
    let mut rap = false;
    for &r in raps {
        if r < base {
            earlier = Some(r);
            continue;
        }
        let k = (r - base) as usize;
        if k >= len || k < start {
            continue;
        }
        if k > start {
            out.push(Cut {
                start,
                len: k - start,
                rap,
            });
            start = k;
        }
        rap = true;
    }
    out.push(Cut {
        start,
        len: len - start,
        rap,
    });
    earlier
}

#[derive(Clone, Copy, Debug)]
struct BlockEntry {
    block: u32,
    block_seq: u64,
    first_frame: u64,
    frames: usize,
    fill: usize,
    newest_ts: u64,
}

/// Where the next read of the source goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tail {
    pub block: u32,
    pub offset: usize,
    pub len: usize,
}

/// Why no tail could be reserved for a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReserveError {
    /// The pool has no free block: pause the feed and retry (as [`Writer::reserve`]'s `None`).
    PoolEmpty,
    /// The frame is larger than a block: it can never be placed whole.
    TooLarge { len: usize, block_size: usize },
}

/// Where a frame offered at a given sequence number stands, and so what the writer does with it
/// (see the module docs, "Sequence numbers").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arrival {
    /// The next sequence number: published.
    Next,
    /// Ahead of the next sequence number by `missed` frames that never came: published, the
    /// window restarted at it, the jump counted.
    Ahead { missed: u64 },
    /// A frame the window holds: dropped.
    Duplicate,
    /// Older than the oldest frame the window holds: dropped.
    Stale,
    /// A sequence number at or beyond [`MAX_SEQ`], or an empty payload: dropped.
    Invalid,
}

impl Arrival {
    /// True if the frame is (or would be) published.
    pub fn is_published(self) -> bool {
        matches!(self, Arrival::Next | Arrival::Ahead { .. })
    }
}

/// What a writer fed at given sequence numbers dropped or skipped, since it was made.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FeedStats {
    /// Frames dropped because the window held them already.
    pub duplicates: u64,
    /// Frames dropped because they were older than the oldest frame held.
    pub stale: u64,
    /// Frames dropped as [`Arrival::Invalid`].
    pub invalid: u64,
    /// Jumps forward ([`Arrival::Ahead`]).
    pub jumps: u64,
    /// Frames those jumps skipped, in all.
    pub missed: u64,
}

/// The single writer of a stream: owns the block list and the retired blocks.
pub struct Writer {
    cfg: WindowConfig,
    block_size: usize,
    blocks: VecDeque<BlockEntry>,
    retired: VecDeque<(u32, u64)>,
    next_block_seq: u64,
    next_seq: u64,
    sealed: bool,
    stats: FeedStats,
}

impl Writer {
    pub fn new(cfg: WindowConfig, block_size: usize, window: &StreamWindow) -> Self {
        Self {
            cfg: WindowConfig {
                max_blocks: cfg.max_blocks.max(2),
                ..cfg
            },
            block_size,
            blocks: VecDeque::new(),
            retired: VecDeque::new(),
            next_block_seq: 0,
            next_seq: window.next_seq(),
            sealed: true,
            stats: FeedStats::default(),
        }
    }

    /// The sequence number [`Writer::publish`] gives the next frame.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    pub fn feed_stats(&self) -> FeedStats {
        self.stats
    }

    /// Blocks this writer holds, in the window and retired-but-pinned.
    pub fn blocks_owned(&self) -> usize {
        self.blocks.len() + self.retired.len()
    }

    /// True if [`Writer::reserve`] would return the current block's tail without taking a
    /// block from the pool.
    pub fn has_tail(&self, win: &StreamWindow) -> bool {
        self.current_tail(win, self.cfg.min_read.min(self.block_size))
            .is_some()
    }

    /// The current block's free tail, if it has room for `want` bytes and for another frame
    /// (a block holds less than a quarter of the largest index, so the index can always make
    /// room).
    fn current_tail(&self, win: &StreamWindow, want: usize) -> Option<Tail> {
        let cur = self.blocks.back()?;
        let room = !self.sealed
            && self.block_size - cur.fill >= want
            && cur.frames < win.max_capacity() / 4;
        room.then_some(Tail {
            block: cur.block,
            offset: cur.fill,
            len: self.block_size - cur.fill,
        })
    }

    /// The free tail of the current block, sealing it and taking a new block when it is too
    /// small. `None` when the pool has no free block (the caller pauses ingest and retries).
    pub fn reserve(&mut self, win: &StreamWindow, pool: &BlockPool) -> Option<Tail> {
        self.reserve_at_least(win, pool, self.cfg.min_read.min(self.block_size))
    }

    /// A free tail of at least `len` bytes for one whole frame received from a parent (a frame
    /// is never split across blocks: its payload stays contiguous, and its sequence number is
    /// the parent's). The current block is sealed if its tail is shorter.
    pub fn reserve_frame(
        &mut self,
        win: &StreamWindow,
        pool: &BlockPool,
        len: usize,
    ) -> Result<Tail, ReserveError> {
        if len > self.block_size {
            return Err(ReserveError::TooLarge {
                len,
                block_size: self.block_size,
            });
        }
        self.reserve_at_least(win, pool, len.max(1))
            .ok_or(ReserveError::PoolEmpty)
    }

    fn reserve_at_least(
        &mut self,
        win: &StreamWindow,
        pool: &BlockPool,
        want: usize,
    ) -> Option<Tail> {
        if let Some(tail) = self.current_tail(win, want) {
            return Some(tail);
        }
        self.sealed = true;
        while self.blocks.len() >= self.cfg.max_blocks {
            self.retire_oldest(win);
        }
        self.free_retired(win, pool);
        let block = pool.alloc()?;
        let block_seq = self.next_block_seq;
        self.next_block_seq += 1;
        win.cur_block_seq.store(block_seq, Ordering::SeqCst);
        self.blocks.push_back(BlockEntry {
            block,
            block_seq,
            first_frame: self.next_seq,
            frames: 0,
            fill: 0,
            newest_ts: 0,
        });
        self.sealed = false;
        win.blocks_held
            .store(self.blocks.len() as u64, Ordering::Relaxed);
        Some(Tail {
            block,
            offset: 0,
            len: self.block_size,
        })
    }

    /// Publishes `len` bytes just written at the tail returned by [`Writer::reserve`] as one
    /// frame, numbered by this writer. Returns its sequence number. (A source's frames: the
    /// numbers run on from the window's first, with no gap and no repeat.)
    pub fn publish(&mut self, win: &StreamWindow, len: usize, timestamp_us: u64, flags: u8) -> u64 {
        let seq = self.next_seq;
        self.append(win, len, timestamp_us, flags);
        seq
    }

    /// What [`Writer::publish_at`] would do with a frame numbered `seq`, without doing it: a
    /// receiver asks before it places a payload, so that it does not copy a duplicate. Whether
    /// the frame is published does not change in between; a `Duplicate` may turn `Stale` if
    /// reserving its tail retires the block that held it.
    pub fn arrival(&self, win: &StreamWindow, seq: u64) -> Arrival {
        if seq >= MAX_SEQ {
            Arrival::Invalid
        } else if seq == self.next_seq {
            Arrival::Next
        } else if seq > self.next_seq {
            Arrival::Ahead {
                missed: seq - self.next_seq,
            }
        } else if seq >= win.first_seq() {
            Arrival::Duplicate
        } else {
            Arrival::Stale
        }
    }

    /// Publishes `len` bytes just written at the tail returned by [`Writer::reserve_frame`] as
    /// the frame numbered `seq` (its parent's number), or drops them: see [`Arrival`] and the
    /// module docs. Dropped bytes stay unpublished in the tail, which the next frame overwrites.
    pub fn publish_at(
        &mut self,
        win: &StreamWindow,
        seq: u64,
        len: usize,
        timestamp_us: u64,
        flags: u8,
    ) -> Arrival {
        // An empty frame would stall a plain viewer's cursor on it; no relay sends one.
        let arrival = if len == 0 {
            Arrival::Invalid
        } else {
            self.arrival(win, seq)
        };
        match arrival {
            Arrival::Next => {}
            Arrival::Ahead { missed } => {
                self.stats.jumps += 1;
                self.stats.missed += missed;
                self.restart_at(win, seq);
            }
            Arrival::Duplicate => self.stats.duplicates += 1,
            Arrival::Stale => self.stats.stale += 1,
            Arrival::Invalid => self.stats.invalid += 1,
        }
        if arrival.is_published() {
            self.append(win, len, timestamp_us, flags);
        }
        arrival
    }

    /// Moves the window to start at `seq` (> next_seq): every frame held leaves it, the blocks
    /// before the current one are retired, and the current block (whose tail holds the frame
    /// about to be published) stays, its older frames out of the window.
    fn restart_at(&mut self, win: &StreamWindow, seq: u64) {
        // first_seq before next_seq: a reader may briefly see an empty window (first > next),
        // never a sequence number inside the window whose frame is missing.
        win.first_seq.store(seq, Ordering::SeqCst);
        while self.blocks.len() > 1 {
            let old = self.blocks.pop_front().expect("more than one block");
            self.retired.push_back((old.block, old.block_seq));
        }
        if let Some(cur) = self.blocks.back_mut() {
            cur.first_frame = seq;
            cur.frames = 0;
        }
        win.blocks_held
            .store(self.blocks.len() as u64, Ordering::Relaxed);
        self.next_seq = seq;
        win.next_seq.store(seq, Ordering::Release);
    }

    /// Publishes the frame `self.next_seq`.
    fn append(&mut self, win: &StreamWindow, len: usize, timestamp_us: u64, flags: u8) {
        let seq = self.next_seq;
        // Make room in the index ring: grow it while it may; at its largest, the current block
        // holds < max/4 frames, so retiring older blocks always suffices.
        while seq - win.first_seq.load(Ordering::SeqCst) >= win.capacity() as u64 {
            if win.capacity() < win.max_capacity() {
                self.grow_index(win, seq);
            } else if self.blocks.len() > 1 {
                self.retire_oldest(win);
            } else {
                break;
            }
        }
        let cur = self
            .blocks
            .back_mut()
            .expect("publish follows a successful reserve");
        assert!(
            cur.fill + len <= self.block_size,
            "frame overflows its block"
        );
        let slot = win.ring().slot(seq);
        slot.seq.store(INVALID, Ordering::Relaxed);
        fence(Ordering::Release);
        slot.block_seq.store(cur.block_seq, Ordering::Relaxed);
        slot.loc.store(
            ((cur.block as u64) << 32) | cur.fill as u64,
            Ordering::Relaxed,
        );
        slot.len_flags
            .store(((len as u64) << 8) | flags as u64, Ordering::Relaxed);
        slot.ts.store(timestamp_us, Ordering::Relaxed);
        slot.seq.store(seq, Ordering::Release);
        cur.fill += len;
        cur.frames += 1;
        cur.newest_ts = timestamp_us;
        self.next_seq = seq + 1;
        // One writer: a load and a store, no read-modify-write.
        let bytes = win.published_bytes.load(Ordering::Relaxed) + len as u64;
        win.published_bytes.store(bytes, Ordering::Release);
        win.next_seq.store(seq + 1, Ordering::Release);
    }

    /// Doubles the side index: the frames of the window (`first_seq..next`) are copied into a
    /// ring twice the size, which then replaces the old one (kept for readers still in it).
    /// At most log2(frame_capacity / 64) times in a stream's life.
    fn grow_index(&mut self, win: &StreamWindow, next: u64) {
        let old = win.ring();
        let new = Ring::new(old.slots.len() * 2);
        for seq in win.first_seq.load(Ordering::SeqCst)..next {
            let (from, to) = (old.slot(seq), new.slot(seq));
            // Only this writer stores into slots, so its own loads need no ordering.
            to.block_seq
                .store(from.block_seq.load(Ordering::Relaxed), Ordering::Relaxed);
            to.loc
                .store(from.loc.load(Ordering::Relaxed), Ordering::Relaxed);
            to.len_flags
                .store(from.len_flags.load(Ordering::Relaxed), Ordering::Relaxed);
            to.ts
                .store(from.ts.load(Ordering::Relaxed), Ordering::Relaxed);
            to.seq
                .store(from.seq.load(Ordering::Relaxed), Ordering::Relaxed);
        }
        // Release: a reader that sees the new ring sees its slots filled.
        let old = win.ring.swap(Box::into_raw(new), Ordering::AcqRel);
        // SAFETY: `old` came from `Box::into_raw` and is no longer the current ring; it is kept
        // (not freed) until the window is dropped.
        let old = unsafe { Box::from_raw(old) };
        win.outgrown
            .lock()
            .expect("outgrown rings never poisoned")
            .push(old);
    }

    /// Records a random-access point at byte `off` of frame `seq`.
    pub fn set_rap(&mut self, win: &StreamWindow, seq: u64, off: u32) {
        win.last_rap.store(pack_pos(seq, off), Ordering::Release);
    }

    /// Drops blocks older than the age bound (never the current one) and frees retired blocks
    /// no core uses any more.
    pub fn trim(&mut self, win: &StreamWindow, pool: &BlockPool, now_us: u64) {
        while self.blocks.len() > 1
            && self.blocks[0].newest_ts.saturating_add(self.cfg.max_age_us) < now_us
        {
            self.retire_oldest(win);
        }
        self.free_retired(win, pool);
    }

    /// The stream ended: retire every block. Returns true once all of them are back in the pool
    /// (call again on later ticks until it does).
    pub fn release_all(&mut self, win: &StreamWindow, pool: &BlockPool) -> bool {
        while !self.blocks.is_empty() {
            self.retire_oldest(win);
        }
        self.sealed = true;
        self.free_retired(win, pool);
        self.retired.is_empty()
    }

    fn retire_oldest(&mut self, win: &StreamWindow) {
        let Some(old) = self.blocks.pop_front() else {
            return;
        };
        let new_first = self.blocks.front().map_or(self.next_seq, |b| b.first_frame);
        win.first_seq.store(new_first, Ordering::SeqCst);
        self.retired.push_back((old.block, old.block_seq));
        win.blocks_held
            .store(self.blocks.len() as u64, Ordering::Relaxed);
    }

    fn free_retired(&mut self, win: &StreamWindow, pool: &BlockPool) {
        if self.retired.is_empty() {
            return;
        }
        let min = win.min_mark();
        while let Some(&(block, block_seq)) = self.retired.front() {
            if block_seq >= min {
                break;
            }
            pool.free(block);
            self.retired.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn setup(max_blocks: usize, cap: usize, blocks: usize) -> (BlockPool, StreamWindow, Writer) {
        let pool = BlockPool::new(4096, blocks).unwrap();
        let cfg = WindowConfig {
            max_blocks,
            frame_capacity: cap,
            max_age_us: 1_000_000,
            min_read: 512,
        };
        let win = StreamWindow::new(&cfg, 2, 0);
        let w = Writer::new(cfg, 4096, &win);
        (pool, win, w)
    }

    fn put(
        w: &mut Writer,
        win: &StreamWindow,
        pool: &BlockPool,
        bytes: &[u8],
        ts: u64,
    ) -> Option<u64> {
        let t = w.reserve(win, pool)?;
        let n = bytes.len().min(t.len);
        pool.write(t.block, t.offset, &bytes[..n]);
        Some(w.publish(win, n, ts, 0))
    }

    #[test]
    fn frames_are_contiguous_in_a_block_and_consecutive() {
        let (pool, win, mut w) = setup(4, 64, 8);
        let a = put(&mut w, &win, &pool, &[1; 100], 1).unwrap();
        let b = put(&mut w, &win, &pool, &[2; 200], 2).unwrap();
        assert_eq!((a, b), (0, 1));
        let fa = win.frame(0).unwrap();
        let fb = win.frame(1).unwrap();
        assert_eq!(fa.block, fb.block);
        assert_eq!(fa.offset + fa.len, fb.offset);
        assert_eq!(win.next_seq(), 2);
        assert!(win.frame(2).is_none());
        // SAFETY: published and not freed.
        let bytes = unsafe { pool.slice(fb.block, fb.offset as usize, fb.len as usize) };
        assert!(bytes.iter().all(|&x| x == 2));
    }

    #[test]
    fn the_publish_interval_is_the_mean_over_the_newest_frames() {
        let (pool, win, mut w) = setup(4, 64, 8);
        assert_eq!(win.frame_interval_us(4), None);
        // Every 2 ms, then a frame 10 ms late.
        for ts in [0, 2_000, 4_000, 6_000, 8_000, 18_000] {
            put(&mut w, &win, &pool, &[0; 100], ts).unwrap();
        }
        assert_eq!(win.frame_interval_us(4), Some(4_000));
        assert_eq!(win.frame_interval_us(1), Some(10_000));
        assert_eq!(win.frame_interval_us(6), None, "only six frames held");
    }

    #[test]
    fn a_block_is_sealed_when_its_tail_is_too_small() {
        let (pool, win, mut w) = setup(4, 64, 8);
        put(&mut w, &win, &pool, &[0; 3700], 1).unwrap();
        // 396 bytes left < min_read 512: the next read goes to a new block.
        put(&mut w, &win, &pool, &[0; 10], 2).unwrap();
        assert_ne!(win.frame(0).unwrap().block, win.frame(1).unwrap().block);
        assert_eq!(win.frame(1).unwrap().offset, 0);
    }

    #[test]
    fn window_is_bounded_and_blocks_come_back_when_no_core_holds_them() {
        let (pool, win, mut w) = setup(3, 64, 8);
        for i in 0..20 {
            put(&mut w, &win, &pool, &[0; 4096], i).unwrap();
        }
        assert!(w.blocks.len() <= 3);
        assert_eq!(pool.in_use(), w.blocks_owned());
        assert!(win.first_seq() >= 17);
        assert!(win.frame(0).is_none());
    }

    #[test]
    fn a_pinned_block_is_not_freed_until_the_core_moves_on() {
        let (pool, win, mut w) = setup(2, 64, 8);
        put(&mut w, &win, &pool, &[0; 4096], 0).unwrap();
        let (s, pin) = win.pin(1, 0);
        assert_eq!((s, pin), (0, 0));
        for i in 1..6 {
            put(&mut w, &win, &pool, &[0; 4096], i).unwrap();
        }
        // Block seq 0 is out of the window but core 1 still pins it.
        assert!(win.frame(0).is_none());
        assert_eq!(w.retired.front().map(|r| r.1), Some(0));
        win.set_mark(1, NO_MARK);
        w.trim(&win, &pool, 0);
        assert!(w.retired.is_empty());
        assert_eq!(pool.in_use(), w.blocks_owned());
    }

    #[test]
    fn pool_exhaustion_pauses_ingest_instead_of_overwriting() {
        let (pool, win, mut w) = setup(8, 64, 2);
        win.pin(0, 0);
        put(&mut w, &win, &pool, &[0; 4096], 0).unwrap();
        put(&mut w, &win, &pool, &[0; 4096], 1).unwrap();
        assert!(put(&mut w, &win, &pool, &[0; 10], 2).is_none());
        win.set_mark(0, NO_MARK);
        w.trim(&win, &pool, 0);
        // Nothing retired yet (window of 8 blocks): still paused.
        assert!(put(&mut w, &win, &pool, &[0; 10], 2).is_none());
    }

    #[test]
    fn old_blocks_age_out_but_the_current_one_stays() {
        let (pool, win, mut w) = setup(8, 64, 8);
        put(&mut w, &win, &pool, &[0; 4096], 0).unwrap();
        put(&mut w, &win, &pool, &[0; 100], 10).unwrap();
        w.trim(&win, &pool, 5_000_000);
        assert_eq!(win.first_seq(), 1);
        assert_eq!(w.blocks.len(), 1);
        assert!(w.release_all(&win, &pool));
        assert_eq!(pool.in_use(), 0);
    }

    #[test]
    fn rap_is_reported_only_while_in_window() {
        let (pool, win, mut w) = setup(2, 64, 8);
        put(&mut w, &win, &pool, &[0; 4096], 0).unwrap();
        w.set_rap(&win, 0, 188);
        assert_eq!(win.last_rap(), Some((0, 188)));
        for i in 1..4 {
            put(&mut w, &win, &pool, &[0; 4096], i).unwrap();
        }
        assert_eq!(win.last_rap(), None);
    }

    /// The payload a test parent sends as frame `seq`: its length and fill byte follow from
    /// `seq`, so any copy of the frame from any parent is the same bytes.
    fn parent_frame(seq: u64) -> Vec<u8> {
        vec![(seq % 251) as u8; 1 + (seq as usize * 37) % 1500]
    }

    /// Offers frame `seq` the way a child proxy does: a whole-frame tail, the payload received
    /// into it, then `publish_at`. Returns what became of it and the window's first sequence
    /// number just before; `None` when the pool is empty.
    fn offer_at(
        w: &mut Writer,
        win: &StreamWindow,
        pool: &BlockPool,
        seq: u64,
    ) -> Option<(Arrival, u64)> {
        let payload = parent_frame(seq);
        let before = w.arrival(win, seq);
        let t = match w.reserve_frame(win, pool, payload.len()) {
            Ok(t) => t,
            Err(ReserveError::PoolEmpty) => return None,
            Err(e) => panic!("{e:?}"),
        };
        pool.write(t.block, t.offset, &payload);
        let first = win.first_seq();
        let arrival = w.publish_at(win, seq, payload.len(), seq, 0);
        assert_eq!(arrival.is_published(), before.is_published());
        Some((arrival, first))
    }

    fn offer(w: &mut Writer, win: &StreamWindow, pool: &BlockPool, seq: u64) -> Option<Arrival> {
        offer_at(w, win, pool, seq).map(|(arrival, _)| arrival)
    }

    /// Every frame the window holds is the parent's frame of that number, whole.
    fn assert_holds_parent_frames(win: &StreamWindow, pool: &BlockPool) {
        for seq in win.first_seq()..win.next_seq() {
            let f = win.frame(seq).expect("the window is one contiguous run");
            let want = parent_frame(seq);
            assert_eq!(f.len as usize, want.len());
            // SAFETY: in window, no concurrent writer.
            let bytes = unsafe { pool.slice(f.block, f.offset as usize, want.len()) };
            assert_eq!(bytes, &want[..]);
        }
    }

    #[test]
    fn publish_at_drops_what_the_window_has_or_has_passed() {
        let (pool, win, mut w) = setup(2, 64, 8);
        for seq in 0..6 {
            assert_eq!(offer(&mut w, &win, &pool, seq), Some(Arrival::Next));
        }
        assert_eq!(offer(&mut w, &win, &pool, 5), Some(Arrival::Duplicate));
        assert_eq!(offer(&mut w, &win, &pool, 2), Some(Arrival::Duplicate));
        assert_holds_parent_frames(&win, &pool);
        // Fill enough blocks that frame 0 leaves the window (at most 2 blocks held).
        let mut seq = 6;
        while win.first_seq() == 0 {
            assert_eq!(offer(&mut w, &win, &pool, seq), Some(Arrival::Next));
            seq += 1;
        }
        assert_eq!(offer(&mut w, &win, &pool, 0), Some(Arrival::Stale));
        assert_eq!(win.next_seq(), seq);
        assert_holds_parent_frames(&win, &pool);
        let stats = w.feed_stats();
        assert_eq!((stats.duplicates, stats.stale, stats.jumps), (2, 1, 0));
        assert_eq!(pool.in_use(), w.blocks_owned());
    }

    #[test]
    fn a_jump_forward_restarts_the_window_and_is_counted() {
        let (pool, win, mut w) = setup(4, 64, 8);
        for seq in 0..4 {
            offer(&mut w, &win, &pool, seq).unwrap();
        }
        w.set_rap(&win, 1, 0);
        // A subscriber on core 1 reads frame 1 when the jump comes.
        let (start, pin) = win.pin(1, 1);
        let held = win.frame(start).unwrap();
        assert_eq!(
            offer(&mut w, &win, &pool, 10),
            Some(Arrival::Ahead { missed: 6 })
        );
        assert_eq!((win.first_seq(), win.next_seq()), (10, 11));
        assert!((0..4).all(|seq| win.frame(seq).is_none()));
        assert_eq!(win.last_rap(), None);
        assert_holds_parent_frames(&win, &pool);
        assert_eq!(w.feed_stats().jumps, 1);
        assert_eq!(w.feed_stats().missed, 6);
        // What it skipped is stale now, and what follows it is in order again.
        assert_eq!(offer(&mut w, &win, &pool, 5), Some(Arrival::Stale));
        assert_eq!(offer(&mut w, &win, &pool, 11), Some(Arrival::Next));
        // Reclamation is unaffected: the pinned block still holds frame 1 intact.
        for seq in 12..40 {
            offer(&mut w, &win, &pool, seq).unwrap();
        }
        assert_eq!(w.retired.front().map(|r| r.1), Some(pin));
        // SAFETY: core 1's mark still holds the block.
        let bytes = unsafe { pool.slice(held.block, held.offset as usize, held.len as usize) };
        assert_eq!(bytes, &parent_frame(1)[..]);
        win.set_mark(1, NO_MARK);
        w.trim(&win, &pool, 0);
        assert!(w.retired.is_empty());
        assert_eq!(pool.in_use(), w.blocks_owned());
    }

    #[test]
    fn invalid_frames_are_dropped_and_change_nothing() {
        let (pool, win, mut w) = setup(4, 64, 8);
        offer(&mut w, &win, &pool, 0).unwrap();
        let t = w.reserve_frame(&win, &pool, 10).unwrap();
        pool.write(t.block, t.offset, &[1; 10]);
        assert_eq!(w.publish_at(&win, MAX_SEQ, 10, 0, 0), Arrival::Invalid);
        assert_eq!(w.publish_at(&win, 1, 0, 0, 0), Arrival::Invalid);
        assert_eq!(w.arrival(&win, u64::MAX), Arrival::Invalid);
        assert_eq!((win.next_seq(), w.feed_stats().invalid), (1, 2));
        assert_eq!(offer(&mut w, &win, &pool, 1), Some(Arrival::Next));
    }

    #[test]
    fn a_parent_frame_is_never_split_across_blocks() {
        let (pool, win, mut w) = setup(4, 64, 8);
        let t = w.reserve_frame(&win, &pool, 3000).unwrap();
        pool.write(t.block, t.offset, &[7; 3000]);
        w.publish_at(&win, 0, 3000, 0, 0);
        // 1096 bytes left, more than min_read but less than the frame: a new block.
        let t = w.reserve_frame(&win, &pool, 2000).unwrap();
        assert_eq!((t.offset, t.len), (0, 4096));
        assert_ne!(t.block, win.frame(0).unwrap().block);
        assert_eq!(
            w.reserve_frame(&win, &pool, 4097),
            Err(ReserveError::TooLarge {
                len: 4097,
                block_size: 4096
            })
        );
    }

    #[test]
    fn a_source_numbers_on_from_where_the_parents_were() {
        let (pool, win, mut w) = setup(4, 64, 8);
        offer(&mut w, &win, &pool, 0).unwrap();
        offer(&mut w, &win, &pool, 7).unwrap();
        assert_eq!(w.next_seq(), 8);
        assert_eq!(put(&mut w, &win, &pool, &[0; 10], 0), Some(8));
    }

    /// A reader core racing the writer never sees a torn or recycled frame: reclamation waits
    /// for its mark, and a reader that falls out of the window re-pins instead of reading freed
    /// memory. Bounded in frames and time.
    #[test]
    fn concurrent_reader_never_sees_a_recycled_block() {
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        let pool = Arc::new(BlockPool::new(4096, 6).unwrap());
        let cfg = WindowConfig {
            max_blocks: 3,
            frame_capacity: 64,
            max_age_us: u64::MAX / 2,
            min_read: 512,
        };
        let win = Arc::new(StreamWindow::new(&cfg, 1, 0));
        let done = Arc::new(AtomicBool::new(false));
        // The writer starts only once the reader holds its mark, so they truly race even when
        // the scheduler starts the reader thread late (a loaded CI machine did).
        let pinned = Arc::new(std::sync::Barrier::new(2));
        const FRAMES: u64 = 20_000;
        let reader = {
            let (pool, win, done, pinned) =
                (pool.clone(), win.clone(), done.clone(), pinned.clone());
            std::thread::spawn(move || {
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
                let (mut seq, _) = win.pin(0, 0);
                pinned.wait();
                let mut checked = 0u64;
                while !done.load(Ordering::Acquire) && std::time::Instant::now() < deadline {
                    match win.frame(seq) {
                        Some(f) => {
                            // SAFETY: the core's mark is at most f.block_seq, so the block is
                            // not recycled while we read it.
                            let bytes =
                                unsafe { pool.slice(f.block, f.offset as usize, f.len as usize) };
                            let want = (seq % 251) as u8;
                            assert!(bytes.iter().all(|&b| b == want), "frame {seq} torn");
                            win.set_mark(0, f.block_seq);
                            checked += 1;
                            seq += 1;
                        }
                        None if seq < win.first_seq() => {
                            seq = win.pin(0, seq).0;
                        }
                        None => std::hint::spin_loop(),
                    }
                }
                checked
            })
        };
        pinned.wait();
        let mut w = Writer::new(cfg, 4096, &win);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut seq = 0u64;
        while seq < FRAMES && std::time::Instant::now() < deadline {
            let Some(t) = w.reserve(&win, &pool) else {
                w.trim(&win, &pool, 0);
                std::thread::yield_now();
                continue;
            };
            let n = t.len.min(300 + (seq as usize * 37) % 1500);
            pool.write(t.block, t.offset, &vec![(seq % 251) as u8; n]);
            assert_eq!(w.publish(&win, n, 0, 0), seq);
            seq += 1;
        }
        done.store(true, Ordering::Release);
        let checked = reader.join().unwrap();
        assert_eq!(seq, FRAMES);
        assert!(checked > 0);
    }

    #[test]
    fn defect1_the_frame_index_starts_small_and_grows_to_what_the_window_holds() {
        let (pool, win, mut w) = setup(64, 16384, 128);
        assert_eq!((win.capacity(), win.max_capacity()), (16, 16384));
        for i in 0..1000 {
            put(&mut w, &win, &pool, &[1; 10], i).unwrap();
        }
        // 1000 frames of 10 bytes sit in 3 blocks: the index grew to hold them all.
        assert_eq!(win.capacity(), 1024);
        assert_eq!(win.first_seq(), 0);
        for seq in 0..1000 {
            assert_eq!(win.frame(seq).unwrap().seq, seq);
        }
    }

    #[test]
    fn a_reader_finds_every_frame_in_the_window_while_the_index_grows() {
        use std::sync::Arc;
        use std::sync::atomic::AtomicBool;
        let pool = Arc::new(BlockPool::new(4096, 128).unwrap());
        let cfg = WindowConfig {
            max_blocks: 64,
            frame_capacity: 4096,
            max_age_us: u64::MAX / 2,
            min_read: 512,
        };
        let win = Arc::new(StreamWindow::new(&cfg, 1, 0));
        let done = Arc::new(AtomicBool::new(false));
        let started = Arc::new(std::sync::Barrier::new(2));
        let reader = {
            let (win, done, started) = (win.clone(), done.clone(), started.clone());
            std::thread::spawn(move || {
                let mut seq = 0u64;
                let mut found = 0u64;
                started.wait();
                loop {
                    // `done` before the edge: once done, the edge read is the last one.
                    let over = done.load(Ordering::Acquire);
                    let next = win.next_seq();
                    if over && seq >= next {
                        break;
                    }
                    match win.frame(seq) {
                        Some(f) => {
                            assert_eq!(f.seq, seq);
                            found += 1;
                            seq += 1;
                        }
                        None if seq < next => {
                            let first = win.first_seq();
                            assert!(
                                first > seq,
                                "frame {seq} of the window (from {first}) missing"
                            );
                            seq = first;
                        }
                        None => std::hint::spin_loop(),
                    }
                }
                found
            })
        };
        let mut w = Writer::new(cfg, 4096, &win);
        started.wait();
        for seq in 0..50_000u64 {
            let t = w.reserve(&win, &pool).unwrap();
            pool.write(t.block, t.offset, &[0; 16]);
            assert_eq!(w.publish(&win, 16, 0, 0), seq);
        }
        done.store(true, Ordering::Release);
        assert!(reader.join().unwrap() > 0);
        assert_eq!(win.capacity(), 4096);
    }

    #[test]
    fn reads_are_cut_at_keyframes() {
        let mut cuts = Vec::new();
        assert_eq!(
            cut_at_raps(1000, 500, &[900, 1000, 1188], &mut cuts),
            Some(900)
        );
        assert_eq!(
            cuts,
            vec![
                Cut {
                    start: 0,
                    len: 188,
                    rap: true
                },
                Cut {
                    start: 188,
                    len: 312,
                    rap: true
                },
            ]
        );
        assert_eq!(cut_at_raps(0, 10, &[], &mut cuts), None);
        assert_eq!(
            cuts,
            vec![Cut {
                start: 0,
                len: 10,
                rap: false
            }]
        );
    }

    proptest! {
        /// The cuts cover the read exactly, in order, and a frame starts at every keyframe.
        #[test]
        fn cuts_cover_the_read_and_start_at_every_rap(
            base in 0u64..10_000,
            len in 1usize..5000,
            mut raps in proptest::collection::vec(0u64..16_000, 0..20),
        ) {
            raps.sort_unstable();
            let mut cuts = Vec::new();
            let earlier = cut_at_raps(base, len, &raps, &mut cuts);
            let mut at = 0;
            for c in &cuts {
                prop_assert_eq!(c.start, at);
                prop_assert!(c.len > 0);
                at += c.len;
                let starts_at_rap = raps.contains(&(base + c.start as u64));
                prop_assert_eq!(c.rap, starts_at_rap);
            }
            prop_assert_eq!(at, len);
            for &r in &raps {
                if r >= base && r < base + len as u64 {
                    prop_assert!(cuts.iter().any(|c| base + c.start as u64 == r));
                }
            }
            prop_assert_eq!(earlier, raps.iter().copied().filter(|&r| r < base).max());
        }
    }

    proptest! {
        /// Whatever the read sizes, every frame in the window is intact: its bytes are the ones
        /// written, frames are consecutive, and the pool accounts for every block.
        #[test]
        fn window_keeps_every_frame_intact(sizes in proptest::collection::vec(1usize..5000, 1..300), cap in 64usize..300) {
            let (pool, win, mut w) = setup(4, cap, 6);
            let mut written = Vec::new();
            for (i, n) in sizes.iter().enumerate() {
                let t = w.reserve(&win, &pool).expect("no pins, so the pool never runs dry");
                let n = (*n).min(t.len);
                let fill = (i % 251) as u8;
                pool.write(t.block, t.offset, &vec![fill; n]);
                let seq = w.publish(&win, n, i as u64, 0);
                prop_assert_eq!(seq, i as u64);
                written.push((n, fill));
                prop_assert!(win.next_seq() - win.first_seq() <= win.capacity() as u64);
            }
            prop_assert_eq!(pool.in_use(), w.blocks_owned());
            for seq in win.first_seq()..win.next_seq() {
                let f = win.frame(seq).unwrap();
                let (n, fill) = written[seq as usize];
                prop_assert_eq!(f.len as usize, n);
                // SAFETY: in window, no concurrent writer.
                let bytes = unsafe { pool.slice(f.block, f.offset as usize, n) };
                prop_assert!(bytes.iter().all(|&b| b == fill));
            }
        }
    }

    proptest! {
        /// Three parents deliver one stream, each from its own position, falling behind and
        /// resuming ahead at random, while a subscriber pins and releases frames: each frame is
        /// published once, in order, from its first copy; later copies are dropped; a jump
        /// restarts the window; a pinned block is never recycled; the pool accounts for every
        /// block.
        #[test]
        fn redundant_parents_publish_each_frame_once_in_order(
            steps in proptest::collection::vec((0usize..3, 0u8..10, 1u64..20), 1..300),
        ) {
            let (pool, win, mut w) = setup(4, 64, 8);
            let mut parents = [0u64; 3];
            let mut next = 0u64;
            let mut published = 0u64;
            let mut dropped = 0u64;
            let mut missed = 0u64;
            let mut pinned: Option<FrameRef> = None;
            for (p, action, k) in steps {
                match action {
                    // A parent resumed ahead of us, or fell behind and came back.
                    0 => parents[p] += k,
                    1 => parents[p] = parents[p].saturating_sub(k),
                    // The subscriber on core 1 pins the oldest frame held, or lets it go.
                    2 => match pinned.take() {
                        Some(_) => win.set_mark(1, NO_MARK),
                        None => {
                            let (s, _) = win.pin(1, win.first_seq());
                            pinned = win.frame(s);
                            if pinned.is_none() {
                                win.set_mark(1, NO_MARK);
                            }
                        }
                    },
                    _ => {
                        let seq = parents[p];
                        let Some((arrival, first)) = offer_at(&mut w, &win, &pool, seq) else {
                            continue; // pool empty while pinned: the feed pauses
                        };
                        parents[p] += 1;
                        let want = match seq {
                            s if s == next => Arrival::Next,
                            s if s > next => Arrival::Ahead { missed: s - next },
                            s if s >= first => Arrival::Duplicate,
                            _ => Arrival::Stale,
                        };
                        prop_assert_eq!(arrival, want);
                        if arrival.is_published() {
                            missed += seq - next;
                            next = seq + 1;
                            published += 1;
                        } else {
                            dropped += 1;
                        }
                    }
                }
                prop_assert_eq!(win.next_seq(), next);
                assert_holds_parent_frames(&win, &pool);
                prop_assert_eq!(pool.in_use(), w.blocks_owned());
                if let Some(f) = pinned {
                    // SAFETY: core 1's mark holds the block, in the window or not.
                    let bytes = unsafe { pool.slice(f.block, f.offset as usize, f.len as usize) };
                    prop_assert_eq!(bytes, &parent_frame(f.seq)[..]);
                }
            }
            let stats = w.feed_stats();
            prop_assert_eq!(stats.duplicates + stats.stale, dropped);
            prop_assert_eq!(stats.missed, missed);
            prop_assert!(published >= stats.jumps);
        }
    }
}
