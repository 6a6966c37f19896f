//! Subscriber cursors and the lag policy (DESIGN.md, "Slow consumers").
//!
//! A subscriber is a [`Cursor`] into its stream's window: the next frame to send and how far into
//! that frame's wire form it already got (the payload alone for a plain viewer, header + payload
//! for a VAN viewer). This module decides where a new subscriber starts, what the next send
//! covers, how a completion moves the cursor, and what happens to a subscriber that is too far
//! behind. It does no I/O and reads no clock.

use crate::frame::{FLAG_RANDOM_ACCESS, FrameHeader, HEADER_LEN};
use crate::window::{FrameRef, StreamWindow};

/// Position of a subscriber: frame `seq`, `off` bytes into its wire form.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Cursor {
    pub seq: u64,
    pub off: u32,
}

impl Cursor {
    pub fn at(seq: u64) -> Self {
        Self { seq, off: 0 }
    }
}

/// Where a new plain viewer starts. MPEG-TS: at the newest random-access point still held (the
/// caller sends the cached PAT/PMT first); otherwise at the live edge, or `burst_bytes` before
/// it rounded back to a frame start.
pub fn plain_start(win: &StreamWindow, is_ts: bool, burst_bytes: u64) -> Cursor {
    if is_ts && let Some((seq, off)) = win.last_rap() {
        return Cursor { seq, off };
    }
    let next = win.next_seq();
    if burst_bytes == 0 {
        return Cursor::at(next);
    }
    let first = win.first_seq();
    let mut seq = next;
    let mut total = 0u64;
    while seq > first && total < burst_bytes {
        match win.frame(seq - 1) {
            Some(f) => {
                total += f.len as u64;
                seq -= 1;
            }
            None => break,
        }
    }
    Cursor::at(seq)
}

/// Where a new VAN viewer starts, and the first sequence number it will get when that is later
/// than it asked for (the `X-Van-Gap: first=...` header).
pub fn van_start(win: &StreamWindow, from: Option<u64>) -> (Cursor, Option<u64>) {
    let next = win.next_seq();
    match from {
        None => (Cursor::at(next), None),
        // A child that is ahead of us (it had another parent) waits here for frame n: what it
        // already has is not sent again. A request absurdly far ahead (another incarnation of the
        // stream) starts at the live edge instead.
        Some(n) if n >= next => {
            if n - next <= win.max_capacity() as u64 {
                (Cursor::at(n), None)
            } else {
                (Cursor::at(next), None)
            }
        }
        Some(n) => {
            let first = win.first_seq();
            if n >= first {
                (Cursor::at(n), None)
            } else {
                (Cursor::at(first), Some(first))
            }
        }
    }
}

/// What to do with a subscriber after looking at how far behind it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lag {
    /// Keep going.
    Keep,
    /// Plain viewer: jump to the live edge (MPEG-TS: newest keyframe after PAT/PMT); counted.
    SkipToLive,
    /// VAN viewer: send `end` and disconnect; counted. It is never silently given a gap.
    Disconnect,
}

/// The lag policy. A subscriber lags when its cursor fell out of the window, or when its send
/// has been pending longer than `max_pending_us`.
pub fn lag_decision(
    van: bool,
    cursor: Cursor,
    first_seq: u64,
    pending_since_us: Option<u64>,
    now_us: u64,
    max_pending_us: u64,
) -> Lag {
    let out_of_window = cursor.seq < first_seq;
    let stalled = pending_since_us.is_some_and(|t| now_us.saturating_sub(t) > max_pending_us);
    match (out_of_window || stalled, van) {
        (false, _) => Lag::Keep,
        (true, false) => Lag::SkipToLive,
        (true, true) => Lag::Disconnect,
    }
}

/// One contiguous byte range of a block for a plain viewer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlainRange {
    pub block: u32,
    pub block_seq: u64,
    pub offset: u32,
    pub len: u32,
    /// Cursor after the whole range is sent.
    pub end: Cursor,
}

/// The next send of a plain viewer: from the cursor, as many published frames as lie
/// contiguously in the same block, up to `max_len` bytes. `None` when there is nothing new or
/// the cursor's frame is no longer held (the caller then applies the lag policy).
pub fn plain_range(win: &StreamWindow, cur: Cursor, max_len: u32) -> Option<PlainRange> {
    let f = win.frame(cur.seq)?;
    if cur.off >= f.len {
        return None;
    }
    let offset = f.offset + cur.off;
    let mut len = f.len - cur.off;
    let mut end = Cursor::at(cur.seq + 1);
    if len > max_len {
        return Some(PlainRange {
            block: f.block,
            block_seq: f.block_seq,
            offset,
            len: max_len,
            end: Cursor {
                seq: cur.seq,
                off: cur.off + max_len,
            },
        });
    }
    let mut seq = cur.seq + 1;
    while let Some(g) = win.frame(seq) {
        if g.block != f.block || g.offset != offset + len || len + g.len > max_len {
            break;
        }
        len += g.len;
        seq += 1;
        end = Cursor::at(seq);
    }
    Some(PlainRange {
        block: f.block,
        block_seq: f.block_seq,
        offset,
        len,
        end,
    })
}

/// Wire length of a frame for the subscriber kind.
fn wire_len(f: &FrameRef, van: bool) -> u32 {
    if van {
        f.len + HEADER_LEN as u32
    } else {
        f.len
    }
}

/// Moves a cursor by `sent` bytes of wire form. `None` if a frame it crosses is no longer held
/// (it cannot be, while the subscriber's pin holds the block, but the caller treats it as lag).
pub fn advance(win: &StreamWindow, mut cur: Cursor, mut sent: u64, van: bool) -> Option<Cursor> {
    while sent > 0 {
        let f = win.frame(cur.seq)?;
        let rest = (wire_len(&f, van) - cur.off) as u64;
        if sent >= rest {
            sent -= rest;
            cur = Cursor::at(cur.seq + 1);
        } else {
            cur.off += sent as u32;
            sent = 0;
        }
    }
    Some(cur)
}

/// One piece of a VAN batch: either a header (by index into the batch's header array) or a
/// range of a pooled block.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VanPiece {
    Header { index: usize, skip: u32 },
    Payload { block: u32, offset: u32, len: u32 },
}

/// Plans the next VAN batch: up to `max_frames` frames from the cursor, as header/payload
/// pieces (headers encoded into `headers`). Returns the pieces, the total bytes, the lowest
/// block sequence number used and the cursor after the whole batch.
pub fn van_batch(
    win: &StreamWindow,
    cur: Cursor,
    max_frames: usize,
    headers: &mut [[u8; HEADER_LEN]],
    pieces: &mut Vec<VanPiece>,
) -> Option<(u64, u64, Cursor)> {
    pieces.clear();
    let mut total = 0u64;
    let mut pin = None;
    let mut seq = cur.seq;
    let mut skip = cur.off;
    for (i, slot) in headers.iter_mut().enumerate().take(max_frames) {
        let Some(f) = win.frame(seq) else { break };
        pin.get_or_insert(f.block_seq);
        let flags = f.flags & FLAG_RANDOM_ACCESS;
        *slot = FrameHeader::data(f.seq, f.timestamp_us, f.len, flags).encode();
        if (skip as usize) < HEADER_LEN {
            pieces.push(VanPiece::Header { index: i, skip });
            total += (HEADER_LEN as u32 - skip) as u64;
            skip = 0;
        } else {
            skip -= HEADER_LEN as u32;
        }
        if f.len > skip {
            pieces.push(VanPiece::Payload {
                block: f.block,
                offset: f.offset + skip,
                len: f.len - skip,
            });
            total += (f.len - skip) as u64;
        }
        skip = 0;
        seq += 1;
    }
    let pin = pin?;
    Some((total, pin, Cursor::at(seq)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pool::BlockPool;
    use crate::window::{WindowConfig, Writer};
    use proptest::prelude::*;

    /// A window of 8 blocks (the oldest trimmed beyond that) holding frames of `sizes`.
    fn stream(sizes: &[usize]) -> (BlockPool, StreamWindow, Writer, Vec<u8>) {
        stream_in(sizes, 8)
    }

    fn stream_in(sizes: &[usize], max_blocks: usize) -> (BlockPool, StreamWindow, Writer, Vec<u8>) {
        let pool = BlockPool::new(4096, max_blocks * 2).unwrap();
        let cfg = WindowConfig {
            max_blocks,
            frame_capacity: 256,
            max_age_us: u64::MAX / 2,
            min_read: 256,
        };
        let win = StreamWindow::new(&cfg, 1, 0);
        let mut w = Writer::new(cfg, 4096, &win);
        let mut all = Vec::new();
        for (i, &n) in sizes.iter().enumerate() {
            let t = w.reserve(&win, &pool).unwrap();
            let n = n.min(t.len);
            let bytes: Vec<u8> = (0..n).map(|k| (i * 7 + k) as u8).collect();
            pool.write(t.block, t.offset, &bytes);
            w.publish(&win, n, i as u64, 0);
            all.extend(bytes);
        }
        (pool, win, w, all)
    }

    #[test]
    fn lag_policy() {
        let c = Cursor::at(5);
        assert_eq!(lag_decision(false, c, 5, None, 0, 10), Lag::Keep);
        assert_eq!(lag_decision(false, c, 6, None, 0, 10), Lag::SkipToLive);
        assert_eq!(lag_decision(true, c, 6, None, 0, 10), Lag::Disconnect);
        assert_eq!(lag_decision(false, c, 0, Some(100), 105, 10), Lag::Keep);
        assert_eq!(
            lag_decision(false, c, 0, Some(100), 111, 10),
            Lag::SkipToLive
        );
        assert_eq!(
            lag_decision(true, c, 0, Some(100), 111, 10),
            Lag::Disconnect
        );
    }

    #[test]
    fn van_start_resumes_or_reports_the_gap() {
        let (_p, win, mut w, _) = stream(&[4096; 12]);
        let _ = &mut w;
        let first = win.first_seq();
        assert!(first > 0);
        assert_eq!(
            van_start(&win, Some(first + 1)),
            (Cursor::at(first + 1), None)
        );
        assert_eq!(van_start(&win, Some(0)), (Cursor::at(first), Some(first)));
        assert_eq!(van_start(&win, None), (Cursor::at(12), None));
        assert_eq!(van_start(&win, Some(15)), (Cursor::at(15), None));
        assert_eq!(van_start(&win, Some(1 << 30)), (Cursor::at(12), None));
    }

    #[test]
    fn plain_start_burst_and_keyframe() {
        let (_p, win, mut w, _) = stream(&[100, 100, 100, 100]);
        assert_eq!(plain_start(&win, false, 0), Cursor::at(4));
        assert_eq!(plain_start(&win, false, 150), Cursor::at(2));
        assert_eq!(plain_start(&win, true, 0), Cursor::at(4));
        w.set_rap(&win, 1, 40);
        assert_eq!(plain_start(&win, true, 0), Cursor { seq: 1, off: 40 });
    }

    #[test]
    fn a_range_covers_contiguous_frames_of_one_block() {
        let (_p, win, _w, _) = stream(&[1000, 1000, 1000, 1000, 10]);
        let r = plain_range(&win, Cursor { seq: 0, off: 10 }, u32::MAX).unwrap();
        assert_eq!((r.offset, r.len, r.end), (10, 3990, Cursor::at(4)));
        // 96 bytes were left in the first block: frame 4 starts a new one.
        let r = plain_range(&win, Cursor::at(4), u32::MAX).unwrap();
        assert_eq!((r.offset, r.len, r.end), (0, 10, Cursor::at(5)));
        let r = plain_range(&win, Cursor::at(1), 1500).unwrap();
        assert_eq!((r.len, r.end), (1000, Cursor::at(2)));
        assert!(plain_range(&win, Cursor::at(5), u32::MAX).is_none());
    }

    proptest! {
        /// A plain viewer that follows the ranges, with completions of any size, receives
        /// exactly the source's bytes.
        #[test]
        fn plain_viewer_gets_the_exact_bytes(
            sizes in proptest::collection::vec(1usize..3000, 1..20),
            cuts in proptest::collection::vec(1u32..5000, 1..200),
            max_len in 1u32..9000,
        ) {
            let (pool, win, _w, all) = stream_in(&sizes, 24);
            let mut cur = Cursor::at(0);
            let mut got = Vec::new();
            let mut cuts = cuts.into_iter().cycle();
            while let Some(r) = plain_range(&win, cur, max_len) {
                let n = cuts.next().unwrap().min(r.len);
                // SAFETY: published, nothing freed in this test.
                got.extend_from_slice(unsafe { pool.slice(r.block, r.offset as usize, n as usize) });
                cur = if n == r.len { r.end } else { advance(&win, cur, n as u64, false).unwrap() };
            }
            prop_assert_eq!(got, all);
        }

        /// A VAN viewer that follows the batches, with partial completions, receives every
        /// frame once, in order, intact.
        #[test]
        fn van_viewer_gets_every_frame_in_order(
            sizes in proptest::collection::vec(1usize..3000, 1..20),
            cuts in proptest::collection::vec(1u64..5000, 1..200),
        ) {
            // Each of up to 20 frames may take a block of its own: a window of 24 trims none
            // before the viewer reads it (with 8, a long stream lost its first frames).
            let (pool, win, _w, _) = stream_in(&sizes, 24);
            let mut cur = Cursor::at(0);
            let mut wire = Vec::new();
            let mut headers = [[0u8; HEADER_LEN]; 4];
            let mut pieces = Vec::new();
            let mut cuts = cuts.into_iter().cycle();
            while let Some((total, _pin, end)) = van_batch(&win, cur, 4, &mut headers, &mut pieces) {
                let mut batch = Vec::new();
                for p in &pieces {
                    match *p {
                        VanPiece::Header { index, skip } => batch.extend_from_slice(&headers[index][skip as usize..]),
                        // SAFETY: published, nothing freed in this test.
                        VanPiece::Payload { block, offset, len } => batch.extend_from_slice(unsafe { pool.slice(block, offset as usize, len as usize) }),
                    }
                }
                prop_assert_eq!(batch.len() as u64, total);
                let n = cuts.next().unwrap().min(total);
                wire.extend_from_slice(&batch[..n as usize]);
                cur = if n == total { end } else { advance(&win, cur, n, true).unwrap() };
            }
            let mut dec = crate::frame::FrameDecoder::new();
            dec.push(&wire);
            let mut seq = 0;
            while let Some((h, p)) = dec.next_frame().unwrap() {
                prop_assert_eq!(h.seq, seq);
                let f = win.frame(seq).unwrap();
                prop_assert_eq!(p.len(), f.len as usize);
                // SAFETY: as above.
                prop_assert_eq!(p, unsafe { pool.slice(f.block, f.offset as usize, f.len as usize) });
                seq += 1;
            }
            prop_assert_eq!(seq as usize, sizes.len());
        }
    }
}
