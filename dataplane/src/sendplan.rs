//! The subscriber's send plan: what a viewer is sent next, when a small send waits, and what
//! becomes of a viewer that lags (DESIGN.md, "Fan-out" and "Slow consumers").
//!
//! A [`SendPlan`] is one subscriber as the fan-out sees it: the bytes it is owed before stream
//! data (the response head, PAT/PMT, a final `end` frame), its [`Cursor`] into the stream's
//! window, the block it pins, and the one send it has in flight ([`InFlight`]). The reactor asks
//! [`SendPlan::next`] what to send, turns the answer into an SQE, and hands the send's final
//! completion to [`SendPlan::complete`]; on every tick [`SendPlan::stalled`] applies the lag
//! policy to a send pending too long.
//!
//! The in-flight send carries the lifetime of what it reads, the way monoio's op lifecycle
//! does: it is created when its SQE is queued and ended exactly once, by its final completion
//! (for `send_zc`, the notification), and while it lives the block it reads stays in the core's
//! reclamation mark ([`SendPlan::pin`]). No path (error, close, skip, stop) ends it otherwise.
//!
//! What a completion or the lag policy asks for (close, skip to the live edge, end a VAN child)
//! is returned, not done: the plan does no I/O and reads no clock.

use crate::config::Config;
use crate::cursor::{self, Cursor, Lag, PlainRange, VanPiece};
use crate::frame::{self, FrameKind, HEADER_LEN};
use crate::stream::Stream;
use crate::window::StreamWindow;

/// Frames per VAN batch (one sendmsg).
pub const VAN_BATCH: usize = 32;

/// When a send of `len` bytes to a viewer whose previous send started at `last_send_us` should
/// go, if not now: a core with `viewers` spaces each one's small sends so that together they
/// stay near `--send-budget` sends per second, holding none longer than `--coalesce-ms`.
/// Light load sends at once (latency first); under fan-out the per-send cost, which on Linux
/// is most of the CPU per byte, is paid less often, and the saved CPU is latency saved too.
/// Only a send that reaches the live edge waits: one cut short (a block's end, a batch's
/// length) has more behind it, and holding it would slow a viewer that is catching up. And
/// only a wait that two publishes of the stream fit in (`frame_interval_us`, the stream's
/// recent mean, read only for a send that would otherwise wait) is worth its latency: a
/// shorter one would mostly send the same bytes later. A send of `--coalesce-bytes` goes at
/// once (it costs no more now than later), except while the core holds for a flash crowd on a
/// busy host ([`Pace::crowd`]), when every send saved leaves CPU to the joins.
pub fn coalesce_until(
    pace: Pace,
    last_send_us: u64,
    len: u64,
    reaches_live_edge: bool,
    frame_interval_us: impl FnOnce() -> Option<u64>,
) -> Option<u64> {
    if len >= pace.release_bytes() || !reaches_live_edge {
        return None;
    }
    let cfg = pace.cfg;
    let spacing = (pace.viewers as u64 * 1_000_000 / cfg.send_budget as u64).min(cfg.coalesce_us);
    let due = last_send_us + spacing;
    if pace.now_us >= due || spacing < 2 * frame_interval_us().unwrap_or(0) {
        return None;
    }
    Some(due)
}

/// Publishes a send's wait is measured against: the mean interval over this many of the
/// stream's newest frames.
const INTERVAL_FRAMES: u64 = 8;

/// How the core paces small sends at this moment.
#[derive(Clone, Copy)]
pub struct Pace<'a> {
    pub cfg: &'a Config,
    /// Viewers the core serves that take data: the load the send budget is shared by. One
    /// whose send is stuck in a full socket sends nothing, and counting it would only hold
    /// every other viewer's sends longer.
    pub viewers: usize,
    pub now_us: u64,
    /// The core holds for a flash crowd on a busy host ([`crate::join_rate::holds_sends`]):
    /// small sends wait out their spacing whatever their size.
    pub crowd: bool,
}

impl Pace<'_> {
    /// A send this long goes at once rather than wait out its spacing.
    pub fn release_bytes(&self) -> u64 {
        if self.crowd {
            u64::MAX
        } else {
            u64::from(self.cfg.coalesce_bytes)
        }
    }
}

/// Where a new subscriber starts: its cursor, the block sequence number it pins, and, for a
/// VAN child asking to resume from a frame the window no longer holds, the first sequence
/// number it will get (`X-Van-Gap`). Joins the core's reclamation mark
/// ([`StreamWindow::pin`]).
pub fn start(
    stream: &Stream,
    core: usize,
    van: Option<Option<u64>>,
    burst_bytes: u64,
) -> (Cursor, u64, Option<u64>) {
    let win = &stream.window;
    let (mut cur, mut gap) = match van {
        Some(from) => cursor::van_start(win, from),
        None => {
            let is_ts = stream.is_ts.load(std::sync::atomic::Ordering::Relaxed);
            (cursor::plain_start(win, is_ts, burst_bytes), None)
        }
    };
    let (first, pin) = win.pin(core, cur.seq);
    if first != cur.seq {
        cur = Cursor::at(first);
        if van.flatten().is_some() {
            gap = Some(first);
        }
    }
    (cur, pin, gap)
}

/// The headers and payload ranges of one VAN batch (one sendmsg).
#[derive(Debug)]
pub struct VanBatch {
    pub headers: [[u8; HEADER_LEN]; VAN_BATCH],
    pub pieces: Vec<VanPiece>,
}

impl VanBatch {
    fn new() -> Box<Self> {
        Box::new(Self {
            headers: [[0; HEADER_LEN]; VAN_BATCH],
            pieces: Vec::with_capacity(2 * VAN_BATCH),
        })
    }
}

/// What the send in flight covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Covers {
    Prefix,
    Plain(PlainRange),
    Van { total: u64, end: Cursor },
}

/// The one send a subscriber has in flight, from its SQE to its final completion.
#[derive(Debug)]
pub struct InFlight {
    covers: Covers,
    /// The lowest block sequence number the send reads ([`crate::window::NO_MARK`] for a
    /// prefix, which reads no block).
    pin: u64,
    /// A `send_zc`'s result, while its notification (the buffer's release) is awaited.
    zc_result: Option<i32>,
    /// Cancelled by the lag policy: its completion moves the viewer to the live edge.
    cancelled: bool,
}

/// What to send next.
#[derive(Debug)]
pub enum Next<'a> {
    /// These bytes of the prefix.
    Prefix(&'a [u8]),
    /// This range of a block, to a plain viewer.
    Plain(PlainRange),
    /// This batch, `total` bytes, to a VAN viewer.
    Van { batch: &'a VanBatch, total: u64 },
    /// A small send waits until `due` (µs) to be coalesced with what follows.
    HoldBack { due: u64 },
    /// Nothing now: caught up.
    Idle,
    /// The stream ended and the VAN viewer has all of it: send `end` at `seq`
    /// ([`SendPlan::send_end`]) and close.
    End { seq: u64 },
    /// Done: close the connection.
    Close,
    /// The plain viewer fell out of the window: [`SendPlan::skip_to_live`].
    SkipToLive,
    /// The VAN viewer fell out of the window: end it, never silently give it a gap.
    Disconnect,
}

/// What a send's final completion asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AfterSend {
    /// Send what comes next.
    Next,
    /// The send failed, or the last bytes owed were sent: close.
    Close,
    /// Move the plain viewer to the live edge (it was cancelled, or fell behind mid-send).
    SkipToLive,
    /// The VAN viewer fell out of the window mid-send.
    Disconnect,
}

/// What the lag policy makes of a send pending at a tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stall {
    Keep,
    /// Cancel the send (marked cancelled): its completion skips the viewer to the live edge.
    Cancel,
    /// A `send_zc` whose bytes the kernel still holds cannot be taken back, and its block left
    /// the window: only closing the socket frees it. Counted as dropped.
    Drop,
    /// Close (the stream ended or the core stops: there is no live edge to skip to).
    Close,
    /// The VAN viewer is too slow: end it.
    Disconnect,
    /// The viewer took nothing for the give-up time (its kernel queue is full and stays full,
    /// and what it would need has left the window): close it, counted as dropped.
    GiveUp,
}

/// One subscriber's sending state.
pub struct SendPlan {
    van: Option<Box<VanBatch>>,
    cursor: Cursor,
    /// The lowest block sequence number the subscriber may touch between sends.
    pin: u64,
    /// Bytes sent before stream data: the response head, PAT/PMT, or a final `end` frame.
    prefix: Vec<u8>,
    prefix_sent: usize,
    close_after_prefix: bool,
    inflight: Option<InFlight>,
    /// When the last send started.
    since_us: u64,
    /// The cursor when the lag policy last looked, and when it last saw it move (or the
    /// viewer idle): how long the viewer has taken nothing. Kept by the policy, at ticks, so
    /// that a send costs nothing more.
    seen: Cursor,
    progress_us: Option<u64>,
    /// A redirect owed to this VAN viewer ([`SendPlan::redirect`]): where, and when it was
    /// ordered.
    redirect: Option<(Vec<u8>, u64)>,
    /// A plain viewer's send held back ([`Next::HoldBack`]), see [`Held`].
    held: Option<Held>,
}

/// A plain viewer's small send held back until `due_us`. Every publish of the stream passes the
/// viewer again, and under fan-out most passes find it still held (at 500 viewers a core and a
/// publish every 2 ms, nine passes in ten): the decision stands as long as the wait is not over,
/// no block was begun (the send would be cut short at the old block's end, and go at once) and
/// what it would send stays below `--coalesce-bytes`, all three read from the window's
/// counters instead of its frames.
#[derive(Clone, Copy, Debug)]
struct Held {
    due_us: u64,
    /// The send's length when it was held.
    len: u64,
    /// The window's published bytes and current block when it was held.
    published_bytes: u64,
    block_seq: u64,
}

impl Held {
    /// Still held at `now`, on `win` as it is now?
    fn stands(&self, win: &StreamWindow, coalesce_bytes: u64, now: u64) -> bool {
        let grown = win.published_bytes().saturating_sub(self.published_bytes);
        now < self.due_us
            && self.len + grown < coalesce_bytes
            && win.current_block_seq() == self.block_seq
    }
}

impl SendPlan {
    /// A subscriber at `cursor` (from [`start`]) pinning block `pin`, owed `prefix` first.
    pub fn new(van: bool, cursor: Cursor, pin: u64, prefix: Vec<u8>) -> Self {
        Self {
            van: van.then(VanBatch::new),
            cursor,
            pin,
            prefix,
            prefix_sent: 0,
            close_after_prefix: false,
            inflight: None,
            since_us: 0,
            seen: cursor,
            progress_us: None,
            redirect: None,
            held: None,
        }
    }

    pub fn is_van(&self) -> bool {
        self.van.is_some()
    }

    pub fn cursor(&self) -> Cursor {
        self.cursor
    }

    /// No send in flight.
    pub fn is_idle(&self) -> bool {
        self.inflight.is_none()
    }

    /// A send has been in flight for longer than `us`: the viewer's socket is full and it is
    /// not taking data at the core's pace.
    pub fn pending_longer_than(&self, now_us: u64, us: u64) -> bool {
        self.inflight.is_some() && now_us.saturating_sub(self.since_us) > us
    }

    /// The lowest block sequence number this subscriber may still touch, the send in flight
    /// included: what the core's reclamation mark must not pass.
    pub fn pin(&self) -> u64 {
        match &self.inflight {
            Some(sent) => self.pin.min(sent.pin),
            None => self.pin,
        }
    }

    fn begin(&mut self, covers: Covers, pin: u64, now_us: u64) {
        debug_assert!(self.inflight.is_none(), "at most one send in flight");
        self.inflight = Some(InFlight {
            covers,
            pin,
            zc_result: None,
            cancelled: false,
        });
        self.since_us = now_us;
        self.held = None;
    }

    /// What to send next, read from the window of `stream`; a send returned is in flight from
    /// now on and the caller must queue it. `max_plain` bounds a plain send (a block's size).
    pub fn next(&mut self, stream: &Stream, pace: Pace, max_plain: u32) -> Next<'_> {
        debug_assert!(self.inflight.is_none(), "at most one send in flight");
        let now = pace.now_us;
        if self.prefix_sent < self.prefix.len() {
            self.begin(Covers::Prefix, crate::window::NO_MARK, now);
            return Next::Prefix(&self.prefix[self.prefix_sent..]);
        }
        if self.close_after_prefix {
            return Next::Close;
        }
        if self.cursor.off == 0
            && let Some((to, timestamp_us)) = self.redirect.take()
        {
            // [0037], [0046] At a frame boundary: where to resume, and from which sequence.
            let seq = self.cursor.seq;
            self.prefix = frame::encode_frame(FrameKind::Redirect, seq, timestamp_us, &to);
            self.prefix_sent = 0;
            self.close_after_prefix = true;
            self.begin(Covers::Prefix, crate::window::NO_MARK, now);
            return Next::Prefix(&self.prefix);
        }
        let win = &stream.window;
        if let Some(held) = self.held.take()
            && !stream.is_ended()
            && held.stands(win, pace.release_bytes(), now)
        {
            self.held = Some(held);
            return Next::HoldBack { due: held.due_us };
        }
        let at_edge = |end: Cursor| end.off == 0 && end.seq >= win.next_seq();
        if let Some(batch) = &mut self.van {
            if let Some((total, pin, end)) = cursor::van_batch(
                win,
                self.cursor,
                VAN_BATCH,
                &mut batch.headers,
                &mut batch.pieces,
            ) {
                // A VAN viewer is a child proxy carrying a subtree: a crowd of plain viewers
                // does not hold its few sends longer.
                let pace = Pace {
                    crowd: false,
                    ..pace
                };
                if let Some(due) = coalesce_until(pace, self.since_us, total, at_edge(end), || {
                    win.frame_interval_us(INTERVAL_FRAMES)
                }) {
                    return Next::HoldBack { due };
                }
                self.begin(Covers::Van { total, end }, pin, now);
                let batch = self.van.as_deref().expect("a VAN plan has its batch");
                return Next::Van { batch, total };
            }
        } else {
            // The counters are read before the range: bytes published in between count as
            // growth of a held send, never as part of it.
            let (published_bytes, block_seq) = (win.published_bytes(), win.current_block_seq());
            let Some(r) = cursor::plain_range(win, self.cursor, max_plain) else {
                return self.nothing_to_send(stream, now);
            };
            let len = u64::from(r.len);
            if let Some(due) = coalesce_until(pace, self.since_us, len, at_edge(r.end), || {
                win.frame_interval_us(INTERVAL_FRAMES)
            }) {
                self.held = Some(Held {
                    due_us: due,
                    len,
                    published_bytes,
                    block_seq,
                });
                return Next::HoldBack { due };
            }
            self.begin(Covers::Plain(r), r.block_seq, now);
            return Next::Plain(r);
        }
        self.nothing_to_send(stream, now)
    }

    /// Nothing to send now: lagged out of the window, stream over, or simply caught up.
    fn nothing_to_send(&mut self, stream: &Stream, now: u64) -> Next<'_> {
        let win = &stream.window;
        let first = win.first_seq();
        let van = self.is_van();
        if self.cursor.seq < first {
            match cursor::lag_decision(van, self.cursor, first, None, now, u64::MAX) {
                Lag::Keep => {}
                Lag::SkipToLive => return Next::SkipToLive,
                Lag::Disconnect => return Next::Disconnect,
            }
        }
        if van && let Some(pin) = win.waiting_pin(self.cursor.seq) {
            // Waiting at or ahead of the live edge: hold nothing older than the current block.
            self.pin = pin;
        }
        if stream.is_ended() && self.cursor.seq >= win.next_seq() {
            return if van {
                Next::End {
                    seq: win.next_seq(),
                }
            } else {
                Next::Close
            };
        }
        Next::Idle
    }

    /// [0037], [0046] The VAN viewer is told to resume at `to` (`host:port`): it gets a
    /// redirect frame naming `to` and the sequence number it would have got next, then is
    /// closed. The frame goes at the next frame boundary (after a send cut short mid-frame, the
    /// rest of that frame first), so the viewer's framing stays whole.
    pub fn redirect(&mut self, to: &str, timestamp_us: u64) {
        self.redirect = Some((to.as_bytes().to_vec(), timestamp_us));
    }

    /// The VAN viewer is ended: owed an `end` frame at `seq`, then closed.
    pub fn send_end(&mut self, seq: u64, timestamp_us: u64, reason: &[u8]) {
        self.prefix = frame::encode_frame(FrameKind::End, seq, timestamp_us, reason);
        self.prefix_sent = 0;
        self.close_after_prefix = true;
    }

    /// A `send_zc` returned `res`; its notification, the final completion, follows.
    pub fn zc_sent(&mut self, res: i32) {
        debug_assert!(
            self.inflight.is_some(),
            "a send_zc result belongs to a send"
        );
        if let Some(sent) = &mut self.inflight {
            sent.zc_result = Some(res);
        }
    }

    /// A `send_zc`'s result, once its notification came.
    pub fn zc_result(&self) -> Option<i32> {
        self.inflight.as_ref().and_then(|s| s.zc_result)
    }

    /// The final completion of the send in flight, with its result (bytes sent, or `-errno`):
    /// ends the send, moves the cursor and the pin past what was sent. Call it exactly once
    /// per send, on every path, even when the connection is closing.
    pub fn complete(&mut self, res: i32, win: &StreamWindow) -> AfterSend {
        let sent = self.inflight.take();
        debug_assert!(sent.is_some(), "a send completes exactly once");
        let Some(sent) = sent else {
            return AfterSend::Next;
        };
        if res < 0 {
            return if res == -libc::ECANCELED && sent.cancelled {
                AfterSend::SkipToLive
            } else {
                AfterSend::Close
            };
        }
        let n = res as u64;
        match sent.covers {
            Covers::Prefix => {
                self.prefix_sent += n as usize;
                if self.prefix_sent >= self.prefix.len() {
                    self.prefix = Vec::new();
                    self.prefix_sent = 0;
                    if self.close_after_prefix {
                        return AfterSend::Close;
                    }
                }
            }
            Covers::Plain(r) => {
                let next = if n == u64::from(r.len) {
                    Some(r.end)
                } else {
                    cursor::advance(win, self.cursor, n, false)
                };
                self.pin = r.block_seq;
                match next {
                    Some(cur) => self.cursor = cur,
                    None => return AfterSend::SkipToLive,
                }
            }
            Covers::Van { total, end } => {
                let next = if n == total {
                    Some(end)
                } else {
                    cursor::advance(win, self.cursor, n, true)
                };
                self.pin = self.pin.min(sent.pin);
                match next {
                    Some(cur) => {
                        self.cursor = cur;
                        if let Some(f) = win.frame(cur.seq.saturating_sub(1)) {
                            self.pin = f.block_seq;
                        }
                    }
                    None => return AfterSend::Disconnect,
                }
            }
        }
        if sent.cancelled {
            return AfterSend::SkipToLive;
        }
        AfterSend::Next
    }

    /// The lag policy at a tick for a send still pending: `first` is the window's oldest
    /// frame, `max_pending_us` the send timeout; `can_skip` when the stream goes on and the
    /// core is not stopping (else there is no live edge to skip to).
    /// A viewer that has taken nothing for `give_up_us` (a skip to the live edge is no
    /// progress) is given up: it holds a full kernel queue and cannot catch up (issue 8,
    /// defect 6).
    pub fn stalled(
        &mut self,
        first: u64,
        now_us: u64,
        max_pending_us: u64,
        give_up_us: u64,
        can_skip: impl FnOnce() -> bool,
    ) -> Stall {
        let van = self.is_van();
        if self.inflight.is_none() || self.cursor != self.seen {
            self.seen = self.cursor;
            self.progress_us = Some(now_us);
        }
        let progress = *self.progress_us.get_or_insert(now_us);
        let Some(sent) = &mut self.inflight else {
            return Stall::Keep;
        };
        if now_us.saturating_sub(progress) >= give_up_us {
            return Stall::GiveUp;
        }
        if sent.cancelled {
            return Stall::Keep;
        }
        let lag = cursor::lag_decision(
            van,
            self.cursor,
            first,
            Some(self.since_us),
            now_us,
            max_pending_us,
        );
        match lag {
            Lag::Keep => Stall::Keep,
            // A send_zc whose bytes still sit in the socket's queue cannot be taken back: the
            // kernel holds the block until they leave. While its block is still in the window
            // the viewer may just be slow, so it keeps its place; once the window has moved past
            // it, it holds memory nobody else needs and only closing the socket frees it.
            Lag::SkipToLive if sent.zc_result.is_some() && self.cursor.seq >= first => Stall::Keep,
            Lag::SkipToLive if sent.zc_result.is_some() => Stall::Drop,
            Lag::SkipToLive if can_skip() => {
                sent.cancelled = true;
                Stall::Cancel
            }
            Lag::SkipToLive => Stall::Close,
            Lag::Disconnect => Stall::Disconnect,
        }
    }

    /// Moves a plain viewer to the live edge (MPEG-TS: the newest keyframe, after the cached
    /// PAT/PMT), re-pinning on `core`. Returns the frame it now starts at.
    pub fn skip_to_live(&mut self, stream: &Stream, core: usize, burst_bytes: u64) -> u64 {
        debug_assert!(self.inflight.is_none(), "skipped only between sends");
        let (cur, pin, _) = start(stream, core, None, burst_bytes);
        self.held = None;
        // Moved, not progressed: the give-up clock runs on, unless it had taken bytes since
        // the lag policy last looked.
        if self.seen == self.cursor {
            self.seen = cur;
        }
        self.cursor = cur;
        self.pin = pin;
        self.prefix.clear();
        self.prefix_sent = 0;
        if stream.is_ts.load(std::sync::atomic::Ordering::Relaxed)
            && let Some(psi) = stream.psi()
        {
            self.prefix.extend_from_slice(&psi);
        }
        cur.seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(coalesce_ms: &str, budget: &str) -> Config {
        cfg_bytes(coalesce_ms, budget, "16384")
    }

    /// As [`cfg`], with sends of `coalesce_bytes` and more going at once.
    fn cfg_bytes(coalesce_ms: &str, budget: &str, coalesce_bytes: &str) -> Config {
        use clap::Parser;
        let args = crate::config::Args::parse_from([
            "dataplane",
            "--coalesce-ms",
            coalesce_ms,
            "--send-budget",
            budget,
            "--coalesce-bytes",
            coalesce_bytes,
        ]);
        Config::load(args, 2).unwrap()
    }

    #[test]
    fn small_sends_are_spaced_by_the_core_send_budget() {
        let c = cfg("20", "50000");
        // 500 viewers at 50,000 sends/s: each viewer's small sends 10 ms apart.
        assert_eq!(
            coalesce_until(pace(&c, 500, 5_000), 1_000, 4_000, true, || None),
            Some(11_000)
        );
        assert_eq!(
            coalesce_until(pace(&c, 500, 11_000), 1_000, 4_000, true, || None),
            None
        );
        // A few viewers: no wait worth holding a send for.
        assert_eq!(
            coalesce_until(pace(&c, 10, 1_300), 1_000, 4_000, true, || None),
            None
        );
        // Many viewers: never longer than --coalesce-ms.
        assert_eq!(
            coalesce_until(pace(&c, 100_000, 1), 0, 4_000, true, || None),
            Some(20_000)
        );
        // A large send (a fast stream) goes at once, and so does one with more behind it
        // (cut at a block's end: the viewer is catching up).
        assert_eq!(
            coalesce_until(pace(&c, 500, 1_001), 1_000, 16_384, true, || None),
            None
        );
        // Unless the core is in a flash crowd: then it waits out its spacing too.
        let crowd = Pace {
            crowd: true,
            ..pace(&c, 500, 1_001)
        };
        assert_eq!(
            coalesce_until(crowd, 1_000, 16_384, true, || None),
            Some(11_000)
        );
        assert_eq!(
            coalesce_until(pace(&c, 500, 1_001), 1_000, 4_000, false, || None),
            None
        );
    }

    #[test]
    fn a_send_waits_only_when_two_publishes_fit_in_the_wait() {
        let c = cfg("200", "25000");
        // 50 viewers at 25,000 sends/s: 2 ms apart, but the stream publishes every 2 ms, so a
        // wait would only send the same frame later.
        assert_eq!(
            coalesce_until(pace(&c, 50, 2_000), 1_000, 1_000, true, || Some(2_000)),
            None
        );
        // 500 viewers: 20 ms apart, ten publishes of the same stream: worth holding.
        assert_eq!(
            coalesce_until(pace(&c, 500, 2_000), 1_000, 1_000, true, || Some(2_000)),
            Some(21_000)
        );
        // A send that goes now anyway does not read the stream's interval (two frame lookups).
        let unread = || -> Option<u64> { panic!("the interval was read for a send due now") };
        assert_eq!(
            coalesce_until(pace(&c, 500, 30_000), 1_000, 1_000, true, unread),
            None
        );
        assert_eq!(
            coalesce_until(pace(&c, 500, 2_000), 1_000, 16_384, true, unread),
            None
        );
        // A stream that publishes rarely (a frame every 50 ms) is not held at 20 ms.
        assert_eq!(
            coalesce_until(pace(&c, 500, 2_000), 1_000, 1_000, true, || Some(50_000)),
            None
        );
    }

    #[test]
    fn coalescing_can_be_turned_off() {
        let c = cfg("0", "50000");
        assert_eq!(
            coalesce_until(pace(&c, 100_000, 1_001), 1_000, 1, true, || None),
            None
        );
    }

    use crate::frame::FrameDecoder;
    use crate::pool::BlockPool;
    use crate::stream::Registry;
    use crate::window::reclaim::CoreMark;
    use crate::window::{WindowConfig, Writer};
    use proptest::prelude::*;
    use std::sync::Arc;

    const BLOCK: usize = 4096;

    /// A stream with frames of the given sizes, on a window of at most `max_blocks` blocks.
    struct Fixture {
        pool: BlockPool,
        registry: Registry,
        stream: Arc<Stream>,
        writer: Box<Writer>,
        /// Every payload byte published, in order.
        all: Vec<u8>,
    }

    fn fixture(sizes: &[usize], max_blocks: usize) -> Fixture {
        fixture_in(sizes, max_blocks, 64)
    }

    /// As [`fixture`], on a pool of `pool_blocks` blocks.
    fn fixture_in(sizes: &[usize], max_blocks: usize, pool_blocks: usize) -> Fixture {
        let cfg = WindowConfig {
            max_blocks,
            frame_capacity: 1024,
            max_age_us: u64::MAX / 2,
            min_read: 256,
        };
        let registry = Registry::new(cfg, 1, BLOCK);
        let (stream, writer, _) = registry
            .attach_source("s", "audio/mpeg", crate::stream::LOOPBACK)
            .unwrap();
        let mut f = Fixture {
            pool: BlockPool::new(BLOCK, pool_blocks).unwrap(),
            registry,
            stream,
            writer,
            all: Vec::new(),
        };
        for &n in sizes {
            f.publish(n);
        }
        f
    }

    impl Fixture {
        fn publish(&mut self, n: usize) -> u64 {
            let win = &self.stream.window;
            let t = self.writer.reserve(win, &self.pool).unwrap();
            let n = n.min(t.len);
            let bytes: Vec<u8> = (0..n).map(|k| (self.all.len() + k) as u8).collect();
            self.pool.write(t.block, t.offset, &bytes);
            self.all.extend(bytes);
            self.writer.publish(win, n, 0, 0)
        }

        fn bytes(&self, block: u32, offset: u32, len: u32) -> &[u8] {
            // SAFETY: published, and the tests free nothing a plan still reads.
            unsafe { self.pool.slice(block, offset as usize, len as usize) }
        }

        /// The bytes a send covers.
        fn wire(&self, next: &Next<'_>) -> Vec<u8> {
            match next {
                Next::Prefix(bytes) => bytes.to_vec(),
                Next::Plain(r) => self.bytes(r.block, r.offset, r.len).to_vec(),
                Next::Van { batch, total } => {
                    let mut out = Vec::new();
                    for p in &batch.pieces {
                        match *p {
                            VanPiece::Header { index, skip } => {
                                out.extend_from_slice(&batch.headers[index][skip as usize..])
                            }
                            VanPiece::Payload { block, offset, len } => {
                                out.extend_from_slice(self.bytes(block, offset, len))
                            }
                        }
                    }
                    assert_eq!(out.len() as u64, *total);
                    out
                }
                other => panic!("not a send: {other:?}"),
            }
        }

        /// Follows `plan` until it has nothing to send, each send completing with at most the
        /// next of `cuts` bytes (cycled). Returns the bytes the viewer received.
        fn play(&self, plan: &mut SendPlan, pace: Pace, cuts: &[usize]) -> Vec<u8> {
            let mut received = Vec::new();
            let mut cuts = cuts.iter().copied().cycle();
            loop {
                let next = plan.next(&self.stream, pace, BLOCK as u32);
                if matches!(next, Next::Idle) {
                    return received;
                }
                let wire = self.wire(&next);
                let n = wire.len().min(cuts.next().unwrap_or(usize::MAX).max(1));
                received.extend_from_slice(&wire[..n]);
                assert_eq!(
                    plan.complete(n as i32, &self.stream.window),
                    AfterSend::Next
                );
            }
        }
    }

    fn pace(cfg: &Config, viewers: usize, now_us: u64) -> Pace<'_> {
        Pace {
            cfg,
            viewers,
            now_us,
            crowd: false,
        }
    }

    fn plain(f: &Fixture, prefix: &[u8]) -> SendPlan {
        let (cur, pin, _) = start(&f.stream, 0, None, u64::MAX);
        SendPlan::new(false, cur, pin, prefix.to_vec())
    }

    proptest! {
        /// A plain viewer that follows its plan, whatever the sizes of the frames and of the
        /// completions, receives its prefix, then exactly the stream's bytes.
        #[test]
        fn a_plain_viewer_receives_the_prefix_then_every_byte(
            sizes in proptest::collection::vec(1usize..3000, 1..20),
            cuts in proptest::collection::vec(1usize..5000, 1..50),
        ) {
            let cfg = cfg("0", "50000");
            let f = fixture(&sizes, 32);
            let mut plan = plain(&f, b"HTTP/1.1 200 OK\r\n\r\n");
            let got = f.play(&mut plan, pace(&cfg, 1, 0), &cuts);
            let mut want = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
            want.extend_from_slice(&f.all);
            prop_assert_eq!(got, want);
            prop_assert!(plan.is_idle());
        }

        /// A VAN viewer receives every frame once, in order, intact, however its sends complete.
        #[test]
        fn a_van_viewer_receives_every_frame_in_order(
            sizes in proptest::collection::vec(1usize..3000, 1..40),
            cuts in proptest::collection::vec(1usize..5000, 1..50),
        ) {
            let cfg = cfg("0", "50000");
            let f = fixture(&sizes, 32);
            let (cur, pin, gap) = start(&f.stream, 0, Some(Some(0)), 0);
            prop_assert_eq!(gap, None);
            let mut plan = SendPlan::new(true, cur, pin, Vec::new());
            let got = f.play(&mut plan, pace(&cfg, 1, 0), &cuts);
            let mut dec = FrameDecoder::new();
            dec.push(&got);
            let mut payload = Vec::new();
            let mut seq = 0;
            while let Some((h, p)) = dec.next_frame().unwrap() {
                prop_assert_eq!(h.seq, seq);
                payload.extend_from_slice(p);
                seq += 1;
            }
            prop_assert_eq!(seq as usize, sizes.len());
            prop_assert_eq!(payload, f.all.clone());
        }

        /// Under load a small send at the live edge waits, never past --coalesce-ms after the
        /// previous send; meanwhile nothing is in flight, and once due it goes.
        #[test]
        fn a_small_send_at_the_live_edge_waits_at_most_the_coalescing_cap(
            viewers in 1usize..200_000,
            last in 0u64..1_000_000,
            wait in 0u64..200_000,
        ) {
            let cfg = cfg("20", "50000");
            let f = fixture(&[100], 32);
            let mut plan = plain(&f, b"HTTP/1.1 200 OK\r\n\r\n");
            // The response head is never held back; it sets when the last send started.
            let head = plan.next(&f.stream, pace(&cfg, viewers, last), BLOCK as u32);
            prop_assert!(matches!(head, Next::Prefix(_)));
            plan.complete(19, &f.stream.window);
            let now = last + wait;
            match plan.next(&f.stream, pace(&cfg, viewers, now), BLOCK as u32) {
                Next::HoldBack { due } => {
                    prop_assert!(due > now && due <= last + 20_000);
                    prop_assert!(plan.is_idle());
                    prop_assert!(matches!(plan.next(&f.stream, pace(&cfg, viewers, due), BLOCK as u32), Next::Plain(_)));
                }
                Next::Plain(r) => prop_assert_eq!(r.len, 100),
                other => prop_assert!(false, "{:?}", other),
            }
        }
    }

    #[test]
    fn defect2_a_van_child_parked_ahead_of_the_edge_pins_nothing() {
        let cfg = cfg("0", "50000");
        // A window of at most 4 blocks on a pool of 8.
        let mut f = fixture_in(&[1000], 4, 8);
        let ahead = f.stream.window.next_seq() + 500;
        let (cur, pin, gap) = start(&f.stream, 0, Some(Some(ahead)), 0);
        assert_eq!((cur.seq, gap), (ahead, None));
        let mut plan = SendPlan::new(true, cur, pin, Vec::new());
        // 500 frames of 1000 bytes: 125 blocks' worth, through a pool of 8.
        while f.stream.window.next_seq() < ahead {
            let t = f.writer.reserve(&f.stream.window, &f.pool);
            assert!(t.is_some(), "the pool ran dry: {} in use", f.pool.in_use());
            f.publish(1000);
            // A fan-out pass: the child has nothing to send; the core's mark is its pin.
            assert!(matches!(
                plan.next(&f.stream, pace(&cfg, 1, 0), BLOCK as u32),
                Next::Idle
            ));
            let mut mark = CoreMark::none();
            mark.include(plan.pin());
            mark.publish(&f.stream.window, 0);
            f.writer.trim(&f.stream.window, &f.pool, 0);
            assert!(f.pool.in_use() <= 5, "{} blocks in use", f.pool.in_use());
        }
        // The frame it waits for comes: it gets it, and only it.
        f.publish(1000);
        match plan.next(&f.stream, pace(&cfg, 1, 0), BLOCK as u32) {
            Next::Van { total, .. } => assert_eq!(total, (HEADER_LEN + 1000) as u64),
            other => panic!("{other:?}"),
        }
    }

    #[derive(Clone, Debug)]
    enum Step {
        /// Ingest publishes a read of this many bytes, if the pool has room.
        Publish(usize),
        /// Viewer `i` starts its next send, if it is idle.
        Send(usize),
        /// Viewer `i`'s send in flight completes with at most this many bytes.
        Complete(usize, usize),
    }

    proptest! {
        /// Whatever the interleaving of ingest, sends and completions, a block that a send in
        /// flight reads is never handed out again before the send's final completion, the
        /// core's mark being the lowest pin of its viewers after each step (a fan-out pass).
        #[test]
        fn a_block_is_never_reused_while_a_send_reads_it(
            steps in proptest::collection::vec(prop_oneof![
                (1usize..4000).prop_map(Step::Publish),
                (0usize..3).prop_map(Step::Send),
                (0usize..3, 1usize..5000).prop_map(|(i, n)| Step::Complete(i, n)),
            ], 1..300),
        ) {
            let cfg = cfg("0", "50000");
            // A window of two blocks on a pool of five: blocks come back and go out again.
            let mut f = fixture_in(&[100], 2, 5);
            let mut plans: Vec<SendPlan> = (0..3).map(|_| plain(&f, b"")).collect();
            let mut inflight: Vec<Option<PlainRange>> = vec![None; 3];
            for step in steps {
                let win = &f.stream.window;
                match step {
                    Step::Publish(n) => {
                        let Some(t) = f.writer.reserve(win, &f.pool) else {
                            continue;
                        };
                        if t.offset == 0 {
                            for r in inflight.iter().flatten() {
                                prop_assert_ne!(r.block, t.block, "block of a send in flight reused");
                            }
                        }
                        let n = n.min(t.len);
                        f.writer.publish(win, n, 0, 0);
                    }
                    Step::Send(i) if plans[i].is_idle() => {
                        match plans[i].next(&f.stream, pace(&cfg, 3, 0), BLOCK as u32) {
                            Next::Plain(r) => inflight[i] = Some(r),
                            Next::SkipToLive => {
                                plans[i].skip_to_live(&f.stream, 0, 0);
                            }
                            Next::Idle => {}
                            other => prop_assert!(false, "{:?}", other),
                        }
                    }
                    Step::Send(_) => {}
                    Step::Complete(i, n) => {
                        if let Some(r) = inflight[i].take() {
                            let sent = n.min(r.len as usize) as i32;
                            if plans[i].complete(sent, win) == AfterSend::SkipToLive {
                                plans[i].skip_to_live(&f.stream, 0, 0);
                            }
                        }
                    }
                }
                let mut mark = CoreMark::none();
                for p in &plans {
                    mark.include(p.pin());
                }
                mark.publish(&f.stream.window, 0);
            }
        }
    }

    /// Coalescing at 200 ms and 25,000 sends/s, with sends of 1000 bytes going at once: small
    /// enough for the test blocks (4 KiB).
    fn cfg_small_sends() -> Config {
        cfg_bytes("200", "25000", "1000")
    }

    /// What a plain plan does next at `now` with 500 viewers on the core (small sends 20 ms
    /// apart): a send (completed at once) as (block, offset, len), or a hold as its due time.
    fn decide(
        plan: &mut SendPlan,
        f: &Fixture,
        c: &Config,
        now: u64,
    ) -> Result<(u64, u32, u32), u64> {
        match plan.next(&f.stream, pace(c, 500, now), BLOCK as u32) {
            Next::Plain(r) => {
                let sent = (r.block_seq, r.offset, r.len);
                plan.complete(r.len as i32, &f.stream.window);
                Ok(sent)
            }
            Next::HoldBack { due } => {
                assert!(due > now, "held until {due}, at {now}");
                Err(due)
            }
            other => panic!("{other:?}"),
        }
    }

    proptest! {
        /// A hold decided from the window's counters is the decision a full look at the
        /// window's frames would make, whatever the publishes and the times.
        #[test]
        fn a_held_send_is_decided_as_a_full_look_would(
            steps in proptest::collection::vec((1usize..700, 0u64..9_000), 1..80),
        ) {
            let c = cfg_small_sends();
            let mut f = fixture(&[100], 64);
            let (mut kept, mut fresh) = (plain(&f, b""), plain(&f, b""));
            let mut now = 30_000;
            for (n, dt) in steps {
                f.publish(n);
                now += dt;
                // `fresh` forgets its hold before each look: it always decides from the frames.
                fresh.held = None;
                let a = decide(&mut kept, &f, &c, now);
                let b = decide(&mut fresh, &f, &c, now);
                prop_assert_eq!(a, b, "at {} µs after {} bytes", now, f.all.len());
            }
        }
    }

    #[test]
    fn a_held_send_stands_until_it_is_due_a_block_is_begun_or_it_reaches_coalesce_bytes() {
        let c = cfg_small_sends();
        let mut f = fixture(&[100], 32);
        let mut plan = plain(&f, b"");
        // The length of what goes at `now`, or None if it is held.
        let send = |plan: &mut SendPlan, f: &Fixture, now| {
            decide(plan, f, &c, now).ok().map(|(_, _, len)| len)
        };
        assert_eq!(
            send(&mut plan, &f, 30_000),
            Some(100),
            "due: the first 100 bytes go"
        );
        f.publish(100);
        assert_eq!(send(&mut plan, &f, 31_000), None, "held until 50 ms");
        let held = plan.held.expect("the hold is kept");
        assert_eq!((held.due_us, held.len), (50_000, 100));
        f.publish(300);
        assert_eq!(send(&mut plan, &f, 32_000), None, "400 bytes: still held");
        assert_eq!(
            plan.held.map(|h| h.len),
            Some(100),
            "decided from the counters"
        );
        f.publish(700);
        assert_eq!(
            f.stream.window.published_bytes(),
            f.all.len() as u64,
            "the window counts what it published"
        );
        assert_eq!(
            send(&mut plan, &f, 33_000),
            Some(1100),
            "1100 bytes go at once"
        );
        assert!(plan.held.is_none(), "a send ends the hold");
        f.publish(100);
        assert_eq!(send(&mut plan, &f, 34_000), None, "held until 53 ms");
        assert_eq!(send(&mut plan, &f, 52_999), None);
        assert_eq!(send(&mut plan, &f, 53_000), Some(100), "due");
        // Held with 200 bytes at the end of block 0; then block 1 is begun (100 bytes left in
        // block 0 are fewer than a read's minimum): block 0's tail goes at once, since a send
        // cut short at a block's end has more behind it.
        let left = BLOCK - f.all.len();
        f.publish(left - 300);
        assert_eq!(
            send(&mut plan, &f, 54_000),
            Some(left as u32 - 300),
            "large: at once"
        );
        f.publish(200);
        assert_eq!(send(&mut plan, &f, 55_000), None, "held");
        f.publish(10);
        assert_eq!(f.stream.window.current_block_seq(), 1, "a new block");
        assert_eq!(send(&mut plan, &f, 56_000), Some(200), "block 0's tail");
    }

    #[test]
    fn in_a_flash_crowd_a_small_send_waits_out_its_spacing_whatever_its_size() {
        let c = cfg_small_sends();
        let mut f = fixture(&[100], 32);
        let mut plan = plain(&f, b"");
        let crowd = |now| Pace {
            crowd: true,
            ..pace(&c, 500, now)
        };
        let sent = |next: Next<'_>| match next {
            Next::Plain(r) => Some(r.len),
            Next::HoldBack { .. } => None,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            sent(plan.next(&f.stream, crowd(30_000), BLOCK as u32)),
            Some(100)
        );
        plan.complete(100, &f.stream.window);
        f.publish(1_500);
        assert_eq!(
            sent(plan.next(&f.stream, crowd(31_000), BLOCK as u32)),
            None,
            "1500 bytes, over --coalesce-bytes, held in a crowd"
        );
        f.publish(500);
        assert_eq!(
            sent(plan.next(&f.stream, crowd(49_999), BLOCK as u32)),
            None,
            "the hold stands past --coalesce-bytes"
        );
        assert_eq!(
            sent(plan.next(&f.stream, pace(&c, 500, 49_999), BLOCK as u32)),
            Some(2_000),
            "the crowd over: the grown send goes at once"
        );
        plan.complete(2_000, &f.stream.window);
        f.publish(1_500);
        assert_eq!(
            sent(plan.next(&f.stream, crowd(50_000), BLOCK as u32)),
            None
        );
        assert_eq!(
            sent(plan.next(&f.stream, crowd(69_998), BLOCK as u32)),
            None
        );
        assert_eq!(
            sent(plan.next(&f.stream, crowd(69_999), BLOCK as u32)),
            Some(1_500),
            "due 20 ms after the last send began: it goes"
        );

        // A VAN child is never held for a crowd: 1500 bytes, over --coalesce-bytes, go at once.
        let (cur, pin, _) = start(&f.stream, 0, Some(None), 0);
        let mut child = SendPlan::new(true, cur, pin, Vec::new());
        f.publish(1_500);
        let Next::Van { total, .. } = child.next(&f.stream, crowd(80_000), BLOCK as u32) else {
            panic!("the child's first batch goes");
        };
        child.complete(total as i32, &f.stream.window);
        f.publish(1_500);
        assert!(
            matches!(
                child.next(&f.stream, crowd(81_000), BLOCK as u32),
                Next::Van { .. }
            ),
            "1 ms later, not held for its spacing"
        );
    }

    #[test]
    fn a_catching_up_viewer_is_never_held_back() {
        let cfg = cfg("20", "50000");
        let busy = |now| pace(&cfg, 100_000, now);
        // Frame 0 fills block 0, frame 1 starts block 1: a send of frame 0 has more behind it.
        let f = fixture(&[4000, 100], 32);
        let mut plan = plain(&f, b"");
        let Next::Plain(r) = plan.next(&f.stream, busy(1), BLOCK as u32) else {
            panic!("a send cut short at a block's end goes at once");
        };
        plan.complete(r.len as i32, &f.stream.window);
        assert!(matches!(
            plan.next(&f.stream, busy(2), BLOCK as u32),
            Next::HoldBack { due: 20_001 }
        ));
    }

    #[test]
    fn a_send_pending_past_the_hold_marks_the_viewer_as_not_keeping_pace() {
        let cfg = cfg("0", "50000");
        let f = fixture(&[4000, 100], 32);
        let (cur, pin, _) = start(&f.stream, 0, Some(Some(0)), 0);
        let mut plan = SendPlan::new(false, cur, pin, Vec::new());
        assert!(
            !plan.pending_longer_than(1_000_000, 100_000),
            "idle: nothing pending"
        );
        let Next::Plain(r) = plan.next(&f.stream, pace(&cfg, 1, 5_000), BLOCK as u32) else {
            panic!("frame 0 is there to send");
        };
        assert!(
            !plan.pending_longer_than(105_000, 100_000),
            "pending exactly the hold"
        );
        assert!(
            plan.pending_longer_than(105_001, 100_000),
            "pending past the hold"
        );
        plan.complete(r.len as i32, &f.stream.window);
        assert!(
            !plan.pending_longer_than(1_000_000, 100_000),
            "completed: keeping pace"
        );
    }

    #[test]
    fn the_block_of_a_send_stays_pinned_until_its_final_completion() {
        let cfg = cfg("0", "50000");
        // Frame 0 fills block 0; frame 1 starts block 1.
        let f = fixture(&[4000, 100], 32);
        let (cur, pin, _) = start(&f.stream, 0, Some(Some(0)), 0);
        let mut plan = SendPlan::new(false, cur, pin, Vec::new());
        let Next::Plain(r) = plan.next(&f.stream, pace(&cfg, 1, 0), BLOCK as u32) else {
            panic!("frame 0 is there to send");
        };
        assert_eq!((r.block_seq, plan.pin()), (0, 0));
        plan.complete(r.len as i32, &f.stream.window);
        let Next::Plain(r) = plan.next(&f.stream, pace(&cfg, 1, 0), BLOCK as u32) else {
            panic!("frame 1 is there to send");
        };
        assert_eq!(r.block_seq, 1);
        // A send_zc's result does not release the block: its notification does.
        plan.zc_sent(r.len as i32);
        assert_eq!(plan.zc_result(), Some(r.len as i32));
        assert_eq!(plan.pin(), 0);
        assert!(!plan.is_idle());
        assert_eq!(
            plan.complete(r.len as i32, &f.stream.window),
            AfterSend::Next
        );
        assert_eq!(plan.pin(), 1);
        assert!(plan.is_idle());
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "a send completes exactly once")]
    fn a_send_completes_exactly_once() {
        let f = fixture(&[100], 32);
        let mut plan = plain(&f, b"");
        plan.complete(0, &f.stream.window);
    }

    #[test]
    fn a_plain_viewer_out_of_the_window_skips_to_the_live_edge() {
        let cfg = cfg("0", "50000");
        let mut f = fixture(&[4000], 2);
        let mut plan = plain(&f, b"");
        for _ in 0..4 {
            f.publish(4000);
        }
        assert!(f.stream.window.first_seq() > 0);
        assert!(matches!(
            plan.next(&f.stream, pace(&cfg, 1, 0), BLOCK as u32),
            Next::SkipToLive
        ));
        let to = plan.skip_to_live(&f.stream, 0, 0);
        assert_eq!(to, f.stream.window.next_seq());
        assert_eq!(plan.cursor(), Cursor::at(to));
        f.publish(10);
        assert!(f.play(&mut plan, pace(&cfg, 1, 0), &[]).len() == 10);
    }

    #[test]
    fn a_skipped_mpeg_ts_viewer_gets_the_psi_first() {
        let mut f = fixture(&[100], 4);
        f.stream
            .is_ts
            .store(true, std::sync::atomic::Ordering::Relaxed);
        f.stream.set_psi(b"PATPMT");
        let mut plan = plain(&f, b"");
        f.writer.set_rap(&f.stream.window, 0, 40);
        plan.skip_to_live(&f.stream, 0, 0);
        assert_eq!(plan.cursor(), Cursor { seq: 0, off: 40 });
        let cfg = cfg("0", "50000");
        let got = f.play(&mut plan, pace(&cfg, 1, 0), &[]);
        assert_eq!(&got[..6], b"PATPMT");
        assert_eq!(&got[6..], &f.all[40..]);
    }

    #[test]
    fn a_van_viewer_out_of_the_window_is_ended_never_given_a_gap() {
        let cfg = cfg("0", "50000");
        let mut f = fixture(&[4000], 2);
        let (cur, pin, _) = start(&f.stream, 0, Some(Some(0)), 0);
        let mut plan = SendPlan::new(true, cur, pin, Vec::new());
        for _ in 0..4 {
            f.publish(4000);
        }
        assert!(matches!(
            plan.next(&f.stream, pace(&cfg, 1, 0), BLOCK as u32),
            Next::Disconnect
        ));
        plan.send_end(0, 7, b"lagged out of the window");
        let next = plan.next(&f.stream, pace(&cfg, 1, 0), BLOCK as u32);
        let wire = f.wire(&next);
        let mut dec = FrameDecoder::new();
        dec.push(&wire);
        let (h, p) = dec.next_frame().unwrap().unwrap();
        assert_eq!(
            (h.kind, h.seq, p),
            (FrameKind::End, 0, &b"lagged out of the window"[..])
        );
        assert_eq!(
            plan.complete(wire.len() as i32, &f.stream.window),
            AfterSend::Close
        );
    }

    #[test]
    fn a_redirected_van_viewer_gets_where_and_its_next_sequence_at_a_frame_boundary() {
        let cfg = cfg("0", "50000");
        let f = fixture(&[100, 100, 100], 4);
        let (cur, pin, _) = start(&f.stream, 0, Some(Some(0)), 0);
        let mut plan = SendPlan::new(true, cur, pin, Vec::new());
        // A send cut short inside the first frame: the rest of it goes before the redirect.
        let next = plan.next(&f.stream, pace(&cfg, 1, 0), BLOCK as u32);
        let wire = f.wire(&next);
        assert_eq!(plan.complete(30, &f.stream.window), AfterSend::Next);
        plan.redirect("10.0.0.2:8080", 99);
        let mut got = wire[..30].to_vec();
        loop {
            let next = plan.next(&f.stream, pace(&cfg, 1, 0), BLOCK as u32);
            let bytes = f.wire(&next);
            got.extend_from_slice(&bytes);
            if plan.complete(bytes.len() as i32, &f.stream.window) == AfterSend::Close {
                break;
            }
        }
        let mut dec = FrameDecoder::new();
        dec.push(&got);
        let mut frames = Vec::new();
        while let Some((h, p)) = dec.next_frame().unwrap() {
            frames.push((h.kind, h.seq, p.to_vec()));
        }
        let (kind, seq, to) = frames.pop().unwrap();
        assert_eq!(
            (kind, to.as_slice()),
            (FrameKind::Redirect, &b"10.0.0.2:8080"[..])
        );
        assert!(frames.iter().all(|(k, _, _)| *k == FrameKind::Data));
        assert_eq!(
            seq,
            frames.last().unwrap().1 + 1,
            "resume right after the last frame sent"
        );
        assert_eq!(dec.buffered(), 0);
    }

    #[test]
    fn a_resuming_van_child_is_told_where_the_window_starts() {
        let mut f = fixture(&[4000], 2);
        for _ in 0..4 {
            f.publish(4000);
        }
        let first = f.stream.window.first_seq();
        let (cur, _, gap) = start(&f.stream, 0, Some(Some(0)), 0);
        assert_eq!((cur, gap), (Cursor::at(first), Some(first)));
        let (cur, _, gap) = start(&f.stream, 0, Some(None), 0);
        assert_eq!((cur, gap), (Cursor::at(f.stream.window.next_seq()), None));
    }

    #[test]
    fn the_end_of_a_stream_closes_plain_viewers_and_ends_van_ones() {
        let cfg = cfg("0", "50000");
        let f = fixture(&[100], 4);
        let mut plain_plan = plain(&f, b"");
        let (cur, pin, _) = start(&f.stream, 0, Some(Some(0)), 0);
        let mut van_plan = SendPlan::new(true, cur, pin, Vec::new());
        f.play(&mut plain_plan, pace(&cfg, 1, 0), &[]);
        f.play(&mut van_plan, pace(&cfg, 1, 0), &[]);
        f.registry.end_live(&f.stream);
        assert!(matches!(
            plain_plan.next(&f.stream, pace(&cfg, 1, 0), BLOCK as u32),
            Next::Close
        ));
        assert!(matches!(
            van_plan.next(&f.stream, pace(&cfg, 1, 0), BLOCK as u32),
            Next::End { seq: 1 }
        ));
    }

    #[test]
    fn the_lag_policy_for_a_send_pending_too_long() {
        let cfg = cfg("0", "50000");
        let f = fixture(&[100], 4);
        let sending = |van: bool| {
            let (cur, pin, _) = start(&f.stream, 0, van.then_some(Some(0)), u64::MAX);
            let mut plan = SendPlan::new(van, cur, pin, Vec::new());
            assert!(!matches!(
                plan.next(&f.stream, pace(&cfg, 1, 1_000), BLOCK as u32),
                Next::Idle
            ));
            plan
        };
        // Within the timeout: kept.
        let mut plan = sending(false);
        assert_eq!(
            plan.stalled(0, 1_500, 1_000, u64::MAX, || true),
            Stall::Keep
        );
        // Past it: a plain viewer's send is cancelled once, and its completion skips it.
        assert_eq!(
            plan.stalled(0, 2_001, 1_000, u64::MAX, || true),
            Stall::Cancel
        );
        assert_eq!(
            plan.stalled(0, 3_000, 1_000, u64::MAX, || true),
            Stall::Keep
        );
        assert_eq!(
            plan.complete(-libc::ECANCELED, &f.stream.window),
            AfterSend::SkipToLive
        );
        // A cancelled send that completed anyway also skips.
        let mut plan = sending(false);
        plan.stalled(0, 2_001, 1_000, u64::MAX, || true);
        assert_eq!(plan.complete(10, &f.stream.window), AfterSend::SkipToLive);
        // No live edge to skip to (the stream ended, the core stops): closed.
        let mut plan = sending(false);
        assert_eq!(
            plan.stalled(0, 2_001, 1_000, u64::MAX, || false),
            Stall::Close
        );
        // A VAN child is ended.
        let mut plan = sending(true);
        assert_eq!(
            plan.stalled(0, 2_001, 1_000, u64::MAX, || true),
            Stall::Disconnect
        );
        // A send_zc the kernel holds: kept while its block is in the window, dropped after.
        let mut plan = sending(false);
        plan.zc_sent(100);
        assert_eq!(
            plan.stalled(0, 2_001, 1_000, u64::MAX, || true),
            Stall::Keep
        );
        assert_eq!(
            plan.stalled(1, 2_001, 1_000, u64::MAX, || true),
            Stall::Drop
        );
        // A failed send closes.
        assert_eq!(
            plan.complete(-libc::EPIPE, &f.stream.window),
            AfterSend::Close
        );
        // Nothing in flight: nothing to decide.
        assert_eq!(
            plan.stalled(1, 9_999, 1_000, u64::MAX, || true),
            Stall::Keep
        );
    }

    #[test]
    fn defect6_a_viewer_that_takes_nothing_is_given_up_and_a_slow_one_is_not() {
        let cfg = cfg("0", "50000");
        let mut f = fixture(&[100], 4);
        let (cur, pin, _) = start(&f.stream, 0, None, u64::MAX);
        let (send_timeout, give_up) = (2_000, 10_000);
        // A viewer that never reads: every send pends until the lag policy cancels it, the
        // viewer skips to the live edge, and its next send pends again.
        let mut never = SendPlan::new(false, cur, pin, Vec::new());
        let mut now = 0;
        let mut given_up = None;
        while now <= 2 * give_up {
            f.publish(100);
            if never.is_idle() {
                assert!(matches!(
                    never.next(&f.stream, pace(&cfg, 1, now), BLOCK as u32),
                    Next::Plain(_)
                ));
            }
            match never.stalled(0, now, send_timeout, give_up, || true) {
                Stall::GiveUp => {
                    given_up = Some(now);
                    break;
                }
                Stall::Cancel => {
                    let after = never.complete(-libc::ECANCELED, &f.stream.window);
                    assert_eq!(after, AfterSend::SkipToLive);
                    never.skip_to_live(&f.stream, 0, u64::MAX);
                }
                _ => {}
            }
            now += 100;
        }
        assert_eq!(given_up, Some(give_up));
        // A slow viewer: each send pends for a while, then completes.
        let (cur, pin, _) = start(&f.stream, 0, None, u64::MAX);
        let mut slow = SendPlan::new(false, cur, pin, Vec::new());
        for now in (0..5 * give_up).step_by(500) {
            f.publish(100);
            if slow.is_idle() {
                slow.next(&f.stream, pace(&cfg, 1, now), BLOCK as u32);
            } else if now % 1_500 == 0
                && slow.complete(1, &f.stream.window) == AfterSend::SkipToLive
            {
                // It fell out of the window meanwhile: skipped, and it took a byte.
                slow.skip_to_live(&f.stream, 0, u64::MAX);
            }
            let stall = slow.stalled(0, now, u64::MAX, give_up, || true);
            assert_ne!(stall, Stall::GiveUp, "at {now}");
        }
    }
}
