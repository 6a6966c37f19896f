//! Ingest: what a source's body bytes become (DESIGN.md, "Shared block pool").
//!
//! The reactor reads a source straight into the free tail of its stream's current block, where
//! [`Ingest::next_read`] says, and hands every completed read to [`Ingest::feed`], which
//! - strips chunked framing in place ([`crate::chunked`]) or counts a `Content-Length` body
//!   down, and so knows when the body is over;
//! - recognises MPEG-TS by its sync bytes when the content type does not say so;
//! - finds keyframes ([`crate::mpegts::TsScanner`]) and caches the latest PAT/PMT on the stream
//!   for new viewers to get before their first keyframe;
//! - publishes the read at once as one frame (latency first: never waits to fill a block), cut
//!   so that every keyframe starts a frame flagged random-access, where a new MPEG-TS viewer
//!   starts.
//!
//! It does no I/O and reads no clock: the caller reads the socket, passes the wall time that
//! stamps the frames, and wakes the stream's readers after a feed that published anything.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::chunked::{ChunkedDecoder, ChunkedError};
use crate::frame::FLAG_RANDOM_ACCESS;
use crate::http::BodyFraming;
use crate::mpegts::{self, TsScanner};
use crate::pool::BlockPool;
use crate::stream::Stream;
use crate::window::{Cut, StreamWindow, Tail, Writer, cut_at_raps};

/// One source's ingest: the stream it feeds, that stream's writer, and what it knows of the
/// body so far.
pub struct Ingest {
    stream: Arc<Stream>,
    writer: Box<Writer>,
    chunked: Option<ChunkedDecoder>,
    /// `Content-Length` bytes still to come.
    remaining: Option<u64>,
    scanner: TsScanner,
    /// Payload bytes received so far (the scanner's offsets).
    offset: u64,
    /// Last frame published: (seq, payload offset of its first byte).
    prev: Option<(u64, u64)>,
    /// Where the read in flight lands; `None` when no read is in flight.
    tail: Option<Tail>,
    /// Body bytes that arrived together with the request head, published before any read.
    leftover: Vec<u8>,
    ended: bool,
    paused: bool,
    /// The source's socket was seen readable since a fresh block was last taken.
    readable: bool,
    /// When the source last sent a byte (wall µs; `None` until the first check or byte).
    heard_us: Option<u64>,
    /// Scratch, kept to spare an allocation per read.
    raps: Vec<u64>,
    cuts: Vec<Cut>,
}

/// What the source's connection does next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NextRead {
    /// The body is over (its length reached, or its last chunk seen): close the connection.
    Ended,
    /// This many bytes that came with the request head were copied into the block: feed them.
    Buffered(usize),
    /// A fresh block is needed but the source has sent nothing yet: wait until its socket is
    /// readable ([`Ingest::bytes_arrived`]), then ask again. A block is taken when bytes come,
    /// not when a source connects (issue 8, defect 1): an idle source holds none.
    AwaitBytes,
    /// The pool has no free block: ingest waits (retry on a later tick, when
    /// [`Ingest::retry_due`]). `first` when this pause begins, to be reported once.
    Paused { first: bool },
    /// Read at most `len` bytes into `block` at `offset`, then feed what the read returned.
    Read {
        block: u32,
        offset: usize,
        len: usize,
    },
}

/// What one feed did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Fed {
    /// Bytes the read returned, chunk framing included.
    pub received: usize,
    /// The payload bytes among them, all published.
    pub payload: usize,
    /// Frames published (more than one when a keyframe lies inside the read).
    pub frames: u64,
    /// The read was the first into a fresh block.
    pub new_block: bool,
    /// The first bytes showed MPEG-TS sync although the content type did not say so.
    pub sniffed_ts: bool,
}

impl Ingest {
    /// A source that attached to `stream` with `writer`, sending a body of `framing` in
    /// `content_type`; `leftover` are the body bytes read together with its request head.
    pub fn new(
        stream: Arc<Stream>,
        writer: Box<Writer>,
        content_type: &str,
        framing: BodyFraming,
        leftover: Vec<u8>,
    ) -> Self {
        if mpegts::is_ts_content_type(content_type) {
            stream.is_ts.store(true, Ordering::Relaxed);
        }
        let (chunked, remaining) = match framing {
            BodyFraming::Chunked => (Some(ChunkedDecoder::new()), None),
            BodyFraming::Length(n) => (None, Some(n)),
            BodyFraming::None | BodyFraming::UntilClose => (None, None),
        };
        let mut leftover = leftover;
        if let Some(n) = remaining {
            // Bytes beyond Content-Length that came in the head's segment are not the body
            // (issue 8, defect 5): never published.
            leftover.truncate(usize::try_from(n).unwrap_or(usize::MAX));
        }
        Self {
            stream,
            writer,
            chunked,
            remaining,
            scanner: TsScanner::new(),
            offset: 0,
            prev: None,
            tail: None,
            leftover,
            ended: false,
            paused: false,
            readable: false,
            heard_us: None,
            raps: Vec::new(),
            cuts: Vec::new(),
        }
    }

    pub fn stream(&self) -> &Arc<Stream> {
        &self.stream
    }

    /// The source is gone: the stream and its writer, for the grace period or the end.
    pub fn into_parts(self) -> (Arc<Stream>, Box<Writer>) {
        (self.stream, self.writer)
    }

    /// Ingest is paused for want of a block and no read is in flight: try again.
    pub fn retry_due(&self) -> bool {
        self.paused && self.tail.is_none()
    }

    /// True once the source has sent nothing for `limit_us` up to `wall_us` (`--source-timeout`,
    /// issue 8, defect 4): it is closed and its stream goes into grace. The silence counts from
    /// the first check, and not while ingest is paused for want of a block (then it is the
    /// relay that does not read).
    pub fn silent_too_long(&mut self, wall_us: u64, limit_us: u64) -> bool {
        if self.paused {
            self.heard_us = Some(wall_us);
        }
        let heard = *self.heard_us.get_or_insert(wall_us);
        wall_us.saturating_sub(heard) >= limit_us
    }

    /// The source's socket is readable (after [`NextRead::AwaitBytes`]).
    pub fn bytes_arrived(&mut self) {
        self.readable = true;
    }

    /// Ages the window and frees the blocks no core uses any more (on every tick).
    pub fn trim(&mut self, pool: &BlockPool, wall_us: u64) {
        self.writer.trim(&self.stream.window, pool, wall_us);
    }

    /// Where the next bytes of the body go. Body bytes that came with the request head go
    /// first, copied once into the block.
    pub fn next_read(&mut self, pool: &BlockPool) -> NextRead {
        if self.ended {
            return NextRead::Ended;
        }
        debug_assert!(self.tail.is_none(), "one read at a time");
        let win = &self.stream.window;
        if !self.leftover.is_empty()
            && let Some(tail) = self.writer.reserve(win, pool)
        {
            let n = tail.len.min(self.leftover.len());
            pool.write(tail.block, tail.offset, &self.leftover[..n]);
            self.leftover.drain(..n);
            self.tail = Some(tail);
            return NextRead::Buffered(n);
        }
        if !self.readable && !self.writer.has_tail(win) {
            return NextRead::AwaitBytes;
        }
        let Some(tail) = self.writer.reserve(win, pool) else {
            let first = !self.paused;
            self.paused = true;
            return NextRead::Paused { first };
        };
        self.paused = false;
        self.readable = false;
        let len = match self.remaining {
            Some(r) => tail.len.min(usize::try_from(r).unwrap_or(usize::MAX)),
            None => tail.len,
        };
        self.tail = Some(tail);
        NextRead::Read {
            block: tail.block,
            offset: tail.offset,
            len,
        }
    }

    /// Processes the `n` bytes a read (or [`NextRead::Buffered`]) just placed at the tail:
    /// strips the chunk framing in place, finds keyframes, and publishes the payload as frames
    /// stamped `wall_us`. An error is bad chunk framing: the source must be closed.
    pub fn feed(&mut self, pool: &BlockPool, n: usize, wall_us: u64) -> Result<Fed, ChunkedError> {
        let tail = self
            .tail
            .take()
            .expect("a feed follows a read into the tail");
        debug_assert!(n <= tail.len, "a read returns no more than it was given");
        if n > 0 {
            self.heard_us = Some(wall_us);
        }
        // SAFETY: the writer owns the tail until it publishes it, no reader is given an
        // unpublished range, and the read into it has completed.
        let buf = unsafe { pool.slice_mut(tail.block, tail.offset, n) };
        let payload = match &mut self.chunked {
            Some(dec) => {
                let m = dec.decode_in_place(buf)?;
                if dec.is_finished() {
                    self.ended = true;
                }
                m
            }
            None => n,
        };
        if let Some(r) = &mut self.remaining {
            *r = r.saturating_sub(n as u64);
            if *r == 0 {
                self.ended = true;
            }
        }
        let stream = &self.stream;
        stream.bytes_in.fetch_add(payload as u64, Ordering::Relaxed);
        let mut fed = Fed {
            received: n,
            payload,
            ..Fed::default()
        };
        if payload == 0 {
            return Ok(fed);
        }
        let data = &buf[..payload];
        self.raps.clear();
        if self.offset == 0 && !stream.is_ts.load(Ordering::Relaxed) && mpegts::looks_like_ts(data)
        {
            // ffmpeg's icecast:// says audio/mpeg for any format: trust the sync bytes, and
            // give players the right type.
            stream.is_ts.store(true, Ordering::Relaxed);
            stream.set_content_type("video/mp2t");
            fed.sniffed_ts = true;
        }
        let is_ts = stream.is_ts.load(Ordering::Relaxed);
        if is_ts {
            self.scanner.scan(self.offset, data, &mut self.raps);
        }
        if is_ts
            && (!self.raps.is_empty() || stream.psi().is_none())
            && let Some(psi) = self.scanner.psi()
        {
            stream.set_psi(psi);
        }
        // Cut at keyframes, so that a keyframe starts a frame (VAN flag) and a new viewer
        // starts exactly there.
        let base = self.offset;
        let win = &stream.window;
        let earlier = cut_at_raps(base, payload, &self.raps, &mut self.cuts);
        if let Some(r) = earlier
            && let Some(prev) = self.prev
            && let Some((seq, off)) = earlier_rap(win, prev, r)
        {
            self.writer.set_rap(win, seq, off);
        }
        for cut in &self.cuts {
            let flags = if cut.rap { FLAG_RANDOM_ACCESS } else { 0 };
            let seq = self.writer.publish(win, cut.len, wall_us, flags);
            if cut.rap {
                self.writer.set_rap(win, seq, 0);
            }
            self.prev = Some((seq, base + cut.start as u64));
        }
        self.offset += payload as u64;
        fed.frames = self.cuts.len() as u64;
        fed.new_block = tail.offset == 0;
        Ok(fed)
    }
}

/// Where the random-access point at payload offset `r` lies, when its TS packet began before
/// the latest frame: `prev` is that frame (its seq, and the payload offset of its first byte).
/// The packet may have come a few bytes at a time, several frames back: walk back from `prev`
/// to the frame that holds `r`, never before the feed's first byte. `None` when the window no
/// longer holds it.
pub(crate) fn earlier_rap(win: &StreamWindow, prev: (u64, u64), r: u64) -> Option<(u64, u32)> {
    let (mut seq, mut start) = prev;
    while r < start {
        let f = seq.checked_sub(1).and_then(|s| win.frame(s))?;
        if u64::from(f.len) > start {
            return None;
        }
        seq -= 1;
        start -= u64::from(f.len);
    }
    Some((seq, (r - start) as u32))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mpegts::{TS_PACKET, sample};
    use crate::stream::Registry;
    use crate::window::{FrameRef, WindowConfig};
    use proptest::prelude::*;

    const BLOCK: usize = 4096;

    /// A source's connection as the reactor runs it, on a pool and a stream roomy enough to
    /// keep every frame of a test body.
    struct Source {
        pool: BlockPool,
        ingest: Ingest,
        /// The read in flight, waiting for more wire bytes.
        pending: Option<(u32, usize, usize)>,
    }

    fn source(content_type: &str, framing: BodyFraming, leftover: &[u8]) -> Source {
        let pool = BlockPool::new(BLOCK, 256).unwrap();
        let cfg = WindowConfig {
            max_blocks: 200,
            frame_capacity: 1 << 14,
            max_age_us: u64::MAX / 2,
            // Above any read the tests make of whole TS packets, so a block's tail never cuts
            // one short.
            min_read: 12 * TS_PACKET,
        };
        let registry = Registry::new(cfg, 1, BLOCK);
        let (stream, writer, _) = registry
            .attach_source("s", content_type, crate::stream::LOOPBACK)
            .unwrap();
        let ingest = Ingest::new(stream, writer, content_type, framing, leftover.to_vec());
        Source {
            pool,
            ingest,
            pending: None,
        }
    }

    impl Source {
        /// The socket returns `wire` in reads of at most the sizes in `reads` (cycled). Returns
        /// the feeds, and whether the body ended (else a read waits for more bytes).
        fn drive(
            &mut self,
            wire: &[u8],
            reads: &[usize],
        ) -> Result<(Vec<Fed>, bool), ChunkedError> {
            let mut feeds = Vec::new();
            let mut at = 0;
            let mut sizes = reads.iter().copied().cycle();
            loop {
                let (block, offset, len) = match self.pending.take() {
                    Some(read) => read,
                    None => match self.ingest.next_read(&self.pool) {
                        NextRead::Ended => return Ok((feeds, true)),
                        NextRead::Buffered(n) => {
                            feeds.push(self.ingest.feed(&self.pool, n, 0)?);
                            continue;
                        }
                        NextRead::Paused { .. } => panic!("the test pool never runs dry"),
                        NextRead::AwaitBytes if at == wire.len() => return Ok((feeds, false)),
                        NextRead::AwaitBytes => {
                            self.ingest.bytes_arrived();
                            continue;
                        }
                        NextRead::Read { block, offset, len } => (block, offset, len),
                    },
                };
                if at == wire.len() {
                    self.pending = Some((block, offset, len));
                    return Ok((feeds, false));
                }
                let n = len
                    .min(sizes.next().unwrap_or(usize::MAX))
                    .min(wire.len() - at);
                self.pool.write(block, offset, &wire[at..at + n]);
                at += n;
                feeds.push(self.ingest.feed(&self.pool, n, feeds.len() as u64)?);
            }
        }

        fn frames(&self) -> Vec<FrameRef> {
            frames(&self.ingest)
        }

        /// The payload bytes published, in order.
        fn published(&self) -> Vec<u8> {
            let mut out = Vec::new();
            for f in self.frames() {
                // SAFETY: published, and nothing is freed in these tests.
                let bytes = unsafe { self.pool.slice(f.block, f.offset as usize, f.len as usize) };
                out.extend_from_slice(bytes);
            }
            out
        }

        fn stream(&self) -> &Stream {
            self.ingest.stream()
        }

        /// Payload offsets of the frames flagged random-access.
        fn rap_starts(&self) -> Vec<u64> {
            let mut at = 0u64;
            let mut starts = Vec::new();
            for f in self.frames() {
                if f.flags & FLAG_RANDOM_ACCESS != 0 {
                    starts.push(at);
                }
                at += u64::from(f.len);
            }
            starts
        }

        /// The newest random-access point, as a payload offset.
        fn last_rap(&self) -> Option<u64> {
            let (seq, off) = self.stream().window.last_rap()?;
            let start: u64 = self.frames()[..seq as usize]
                .iter()
                .map(|f| u64::from(f.len))
                .sum();
            Some(start + u64::from(off))
        }
    }

    fn frames(ingest: &Ingest) -> Vec<FrameRef> {
        let win = &ingest.stream().window;
        assert_eq!(win.first_seq(), 0, "the test window keeps every frame");
        (0..win.next_seq()).map(|s| win.frame(s).unwrap()).collect()
    }

    /// `body` in chunks of the given sizes (cycled), then the last chunk.
    fn chunked(body: &[u8], sizes: &[usize]) -> Vec<u8> {
        let mut wire = Vec::new();
        let mut sizes = sizes.iter().copied().cycle();
        let mut rest = body;
        while !rest.is_empty() {
            let n = sizes.next().unwrap_or(rest.len()).clamp(1, rest.len());
            wire.extend_from_slice(format!("{n:x}\r\n").as_bytes());
            wire.extend_from_slice(&rest[..n]);
            wire.extend_from_slice(b"\r\n");
            rest = &rest[n..];
        }
        wire.extend_from_slice(b"0\r\n\r\n");
        wire
    }

    #[test]
    fn each_read_is_published_at_once() {
        let mut src = source("audio/mpeg", BodyFraming::UntilClose, b"");
        let (feeds, ended) = src.drive(&[7; 1000], &[300]).unwrap();
        assert!(!ended);
        let lens: Vec<usize> = feeds.iter().map(|f| f.payload).collect();
        assert_eq!(lens, [300, 300, 300, 100]);
        assert!(feeds.iter().all(|f| f.frames == 1));
        assert!(feeds[0].new_block && !feeds[1].new_block);
        assert_eq!(src.frames().len(), 4);
        assert_eq!(src.published(), [7; 1000]);
        assert_eq!(src.stream().bytes_in.load(Ordering::Relaxed), 1000);
    }

    #[test]
    fn bytes_that_came_with_the_head_go_first() {
        let mut src = source("audio/mpeg", BodyFraming::Length(10), b"abcd");
        let (feeds, ended) = src.drive(b"efghijklmn", &[]).unwrap();
        assert!(ended);
        // The early bytes, then a read of what is left of the body, no more.
        let lens: Vec<usize> = feeds.iter().map(|f| f.received).collect();
        assert_eq!(lens, [4, 6]);
        assert_eq!(src.published(), b"abcdefghij");
    }

    #[test]
    fn defect5_bytes_beyond_content_length_are_never_published() {
        // All of them in the head's segment.
        let mut src = source("audio/mpeg", BodyFraming::Length(4), b"abcdEXTRA");
        let (_, ended) = src.drive(b"MORE", &[]).unwrap();
        assert!(ended);
        assert_eq!(src.published(), b"abcd");
        // Part in the head's segment, the rest later.
        let mut src = source("audio/mpeg", BodyFraming::Length(6), b"abcd");
        let (_, ended) = src.drive(b"efEXTRA", &[]).unwrap();
        assert!(ended);
        assert_eq!(src.published(), b"abcdef");
    }

    #[test]
    fn defect4_a_silent_source_times_out_and_a_paused_one_does_not() {
        let mut src = source("audio/mpeg", BodyFraming::UntilClose, b"");
        // The silence counts from the first check.
        assert!(!src.ingest.silent_too_long(1_000, 500));
        assert!(!src.ingest.silent_too_long(1_499, 500));
        assert!(src.ingest.silent_too_long(1_500, 500));
        // A byte resets it.
        let mut src = source("audio/mpeg", BodyFraming::UntilClose, b"");
        assert!(!src.ingest.silent_too_long(0, 500));
        src.drive(b"x", &[]).unwrap();
        // The test's feeds are stamped with their index (0): heard at 0, silent at 500.
        assert!(src.ingest.silent_too_long(500, 500));
        src.ingest.paused = true;
        assert!(!src.ingest.silent_too_long(10_000, 500));
    }

    #[test]
    fn defect1_a_source_takes_a_block_when_its_bytes_arrive_not_before() {
        let mut src = source("audio/mpeg", BodyFraming::UntilClose, b"");
        assert_eq!(src.ingest.next_read(&src.pool), NextRead::AwaitBytes);
        assert_eq!(src.pool.in_use(), 0, "an idle source holds no block");
        src.ingest.bytes_arrived();
        assert!(matches!(
            src.ingest.next_read(&src.pool),
            NextRead::Read { offset: 0, .. }
        ));
        assert_eq!(src.pool.in_use(), 1);
    }

    #[test]
    fn a_content_length_body_ends_at_its_length_and_reads_no_further() {
        let mut src = source("audio/mpeg", BodyFraming::Length(5000), b"");
        let (feeds, ended) = src.drive(&[1; 6000], &[]).unwrap();
        assert!(ended);
        let lens: Vec<usize> = feeds.iter().map(|f| f.received).collect();
        // The first read fills the first block; the second asks for what is left, no more.
        assert_eq!(lens, [4096, 904]);
        assert_eq!(src.ingest.next_read(&src.pool), NextRead::Ended);
    }

    #[test]
    fn the_last_chunk_ends_the_body_and_bad_framing_is_an_error() {
        let mut src = source("audio/mpeg", BodyFraming::Chunked, b"");
        let (feeds, ended) = src.drive(b"3\r\nabc\r\n0\r\n\r\n", &[4]).unwrap();
        assert!(ended);
        assert_eq!(feeds.iter().map(|f| f.received).sum::<usize>(), 13);
        assert_eq!(src.published(), b"abc");

        let mut src = source("audio/mpeg", BodyFraming::Chunked, b"");
        let err = src.drive(b"3\r\nabcX", &[]).unwrap_err();
        assert_eq!(err, ChunkedError::MissingCrlf);
    }

    #[test]
    fn mpeg_ts_is_recognised_by_its_sync_bytes() {
        let (s, _) = sample::stream(2);
        let mut src = source("audio/mpeg", BodyFraming::UntilClose, b"");
        let (feeds, _) = src.drive(&s, &[1000]).unwrap();
        assert!(feeds[0].sniffed_ts);
        assert!(feeds[1..].iter().all(|f| !f.sniffed_ts));
        assert!(src.stream().is_ts.load(Ordering::Relaxed));
        assert_eq!(src.stream().content_type(), "video/mp2t");

        let mut src = source("audio/mpeg", BodyFraming::UntilClose, b"");
        let (feeds, _) = src.drive(&[0x47; 100], &[]).unwrap();
        assert!(!feeds[0].sniffed_ts);
        assert!(!src.stream().is_ts.load(Ordering::Relaxed));
        assert_eq!(src.stream().content_type(), "audio/mpeg");
    }

    #[test]
    fn psi_is_cached_for_new_viewers() {
        let (s, _) = sample::stream(3);
        let mut src = source("video/mp2t", BodyFraming::UntilClose, b"");
        src.drive(&s[..TS_PACKET], &[]).unwrap();
        assert!(
            src.stream().psi().is_none(),
            "a PAT without its PMT is not enough"
        );
        src.drive(&s[TS_PACKET..], &[]).unwrap();
        assert_eq!(src.stream().psi().as_deref(), Some(&s[..2 * TS_PACKET]));
    }

    #[test]
    fn a_keyframe_inside_a_read_starts_a_frame_flagged_random_access() {
        let (s, keys) = sample::stream(3);
        let mut src = source("video/mp2t", BodyFraming::UntilClose, b"");
        src.drive(&s, &[]).unwrap();
        assert_eq!(
            src.frames().len(),
            4,
            "one read, cut at its three keyframes"
        );
        assert_eq!(src.rap_starts(), keys);
        assert_eq!(src.stream().window.last_rap(), Some((3, 0)));
    }

    #[test]
    fn a_keyframe_that_began_in_the_previous_read_is_found_there() {
        let (s, keys) = sample::stream(1);
        let key = keys[0] as usize;
        let mut src = source("video/mp2t", BodyFraming::UntilClose, b"");
        // The keyframe's packet is split between two reads: it is known only once whole.
        src.drive(&s[..key + 10], &[]).unwrap();
        assert_eq!(src.stream().window.last_rap(), None);
        src.drive(&s[key + 10..], &[]).unwrap();
        assert_eq!(src.stream().window.last_rap(), Some((0, key as u32)));
        assert!(src.rap_starts().is_empty());
    }

    #[test]
    fn a_keyframe_whose_packet_spans_three_reads_is_recorded() {
        let (s, keys) = sample::stream(1);
        let key = keys[0] as usize;
        let mut src = source("video/mp2t", BodyFraming::UntilClose, b"");
        src.drive(&s[..key + 10], &[]).unwrap();
        src.drive(&s[key + 10..key + 20], &[]).unwrap();
        assert_eq!(src.stream().window.last_rap(), None);
        src.drive(&s[key + 20..], &[]).unwrap();
        assert_eq!(src.last_rap(), Some(key as u64));
    }

    proptest! {
        /// However a chunked MPEG-TS body is framed into chunks and split into reads, the
        /// stream gets the same payload bytes, the same PSI and the same newest keyframe,
        /// exactly; and every frame flagged random-access starts at a keyframe.
        #[test]
        fn any_split_of_a_chunked_body_publishes_the_same_stream(
            gops in 1usize..6,
            chunks in proptest::collection::vec(1usize..2000, 1..8),
            reads in proptest::collection::vec(1usize..3000, 1..8),
        ) {
            let (s, keys) = sample::stream(gops);
            let wire = chunked(&s, &chunks);
            let mut src = source("video/mp2t", BodyFraming::Chunked, b"");
            let (feeds, ended) = src.drive(&wire, &reads).unwrap();
            prop_assert!(ended);
            prop_assert_eq!(feeds.iter().map(|f| f.received).sum::<usize>(), wire.len());
            prop_assert_eq!(src.published(), s.clone());
            let psi = src.stream().psi();
            prop_assert_eq!(psi.as_deref(), Some(&s[..2 * TS_PACKET]));
            for at in src.rap_starts() {
                prop_assert!(keys.contains(&at), "a frame flagged at {}", at);
            }
            // The newest keyframe is recorded, however many reads its packet took.
            prop_assert_eq!(src.last_rap(), keys.last().copied());
        }

        /// Reads that end on packet boundaries cut a frame at every keyframe.
        #[test]
        fn reads_of_whole_packets_cut_at_every_keyframe(
            gops in 1usize..6,
            packets in proptest::collection::vec(1usize..12, 1..8),
        ) {
            let (s, keys) = sample::stream(gops);
            let reads: Vec<usize> = packets.iter().map(|p| p * TS_PACKET).collect();
            let mut src = source("video/mp2t", BodyFraming::UntilClose, b"");
            src.drive(&s, &reads).unwrap();
            prop_assert_eq!(src.published(), s.clone());
            prop_assert_eq!(src.rap_starts(), keys.clone());
            prop_assert_eq!(src.last_rap(), keys.last().copied());
        }
    }
}
