//! The reactor's side of pulling a stream from parent proxies: the orders from the control
//! thread, the parent connections in the slab, and their syscalls. What to decide is elsewhere:
//! [`crate::pull`] (which parents to connect to and when, make-before-break, whether a jump may
//! be taken), [`crate::response_head`] (the parent's answer), [`crate::frame_reader`] (its
//! frames) and [`crate::parent_feed`] (what a frame does to the stream).
//!
//! A connection: a non-blocking socket, `IORING_OP_CONNECT`, the request
//! `GET /van/{stream}?from={next}` (the VAN token as `Authorization: Bearer`, our
//! `--proxy-id` as `X-Van-Proxy`), the answer's head, then VAN frames. Each frame is gathered
//! whole in the connection's own buffer and placed in the stream's window once complete (see
//! [`crate::parent_feed`] for why); a frame the stream already has is not gathered at all.
//! A connection that fails, ends or answers anything but `200` is a parent lost: reported
//! ([`Core::parent_lost`]) and retried from the next sequence the stream needs, with back-off,
//! while the order stands. While no parent delivers, the stream is in grace like a stream whose
//! source left; a parent that delivers again within the grace continues it.

use std::net::SocketAddr;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use tracing::error;

use super::*;
use crate::frame::{FrameHeader, FrameKind};
use crate::frame_reader::{FrameEvent, FrameReader};
use crate::orders::ParentAddr;
use crate::parent_feed::{Offered, ParentFeed};
use crate::pull::{Lost, ParentSet};
use crate::response_head::{MAX_RESPONSE_HEAD, parse_response_head};
use crate::stream::StreamState;

/// Bytes received from a parent per read.
const RX_LEN: usize = 64 * 1024;
/// A parent that has not answered with its head by then is given up (and retried). Longer than
/// a standby parent holds a request while it starts pulling itself.
const ANSWER_TIMEOUT_US: u64 = super::STANDBY_WAIT_US + 2_000_000;
/// The largest payload of a control frame (redirect, end) a parent may send.
const MAX_CONTROL_PAYLOAD: u32 = 4096;

/// One stream this core pulls.
pub(super) struct Pull {
    parents: ParentSet,
    /// The stream's writer, while a parent delivers.
    feed: Option<ParentFeed>,
    /// The stream while no parent delivers (in grace, or ended): where to resume.
    parked: Option<Arc<Stream>>,
    /// The payload's content type, from the last parent's answer.
    content_type: String,
    /// Open connections: parent, slot, generation.
    conns: Vec<(ParentAddr, u32, u32)>,
    /// For a stream new here: the oldest sequence a child waiting for it asked for.
    first_from: Option<u64>,
}

impl Pull {
    /// The sequence number a new connection asks for: the one the stream needs next; for a
    /// stream not here yet, the oldest one a waiting child asked for (a proxy re-homed here
    /// after its parent died resumes without a gap if the parents still hold it, [0066]); else
    /// none (the parent's live edge).
    fn resume_from(&self) -> Option<u64> {
        match (&self.feed, &self.parked) {
            (Some(f), _) => Some(f.next_seq()),
            (None, Some(s)) if !s.is_ended() => Some(s.window.next_seq()),
            (None, None) => self.first_from,
            _ => None,
        }
    }
}

enum Phase {
    Connect,
    Request { out: Vec<u8>, sent: usize },
    Answer { buf: Vec<u8> },
    Frames,
}

/// A connection to a parent, in the slab.
pub(super) struct ParentConn {
    stream: String,
    parent: ParentAddr,
    /// The parent's address, read by the kernel during the connect.
    addr: SockAddr,
    phase: Phase,
    reader: FrameReader,
    /// Where reads land (capacity [`RX_LEN`]).
    rx: Vec<u8>,
    /// The frame being gathered, and whether it is kept (else its bytes are skipped).
    frame: Vec<u8>,
    keep: bool,
    opened_us: u64,
    /// When it last received a byte.
    heard_us: u64,
    /// Why it ended, for the log line of a parent lost.
    why: String,
    /// Closed on purpose (a switch, a stop): no parent lost.
    retired: bool,
    /// Closed to be asked again from the stream's next sequence (it was ahead of the stream
    /// while another parent delivered in order): retried with back-off, no parent lost.
    resync: bool,
}

impl ParentConn {
    pub(super) fn is_connecting(&self) -> bool {
        matches!(self.phase, Phase::Connect)
    }
}

/// What the frames of one read did, for the core to act on once the connection is let go.
#[derive(Default)]
struct Took {
    published: Option<Arc<Stream>>,
    /// Old parents of a switch to drop now.
    retire: Vec<ParentAddr>,
    /// Close this connection, and why (a parent lost).
    fail: Option<String>,
    /// The parent told us to resume elsewhere.
    redirect: Option<SocketAddr>,
    /// Ask this parent again from the stream's next sequence (see [`ParentConn::resync`]).
    resync: bool,
}

impl Core {
    // ---- orders ---------------------------------------------------------------------------

    pub(super) fn arm_orders(&mut self) {
        let fd = self.shared.order_wakers[self.id];
        if fd < 0 || self.stopping.is_some() {
            return;
        }
        self.push(
            opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
                .multi(true)
                .build()
                .user_data(ud(K_ORDERS, 0, 0)),
        );
    }

    pub(super) fn on_orders(&mut self, res: i32, flags: u32) {
        let fd = self.shared.order_wakers[self.id];
        let mut count = 0u64;
        // SAFETY: reading the 8-byte counter of our eventfd (non-blocking) into a local.
        unsafe { libc::read(fd, (&mut count as *mut u64).cast(), 8) };
        // A poll that failed is not re-armed (no spinning on an error): orders then wait for
        // the tick, which takes them too.
        if !cqueue::more(flags) && res >= 0 {
            self.arm_orders();
        }
        self.take_orders();
    }

    pub(super) fn take_orders(&mut self) {
        while let Some(order) = self.shared.orders[self.id].pop() {
            if self.stopping.is_some() {
                continue;
            }
            self.carry_out(order);
        }
    }

    fn carry_out(&mut self, order: Order) {
        let now = self.shared.now_us();
        match order {
            Order::Pull { stream, parents } | Order::SwitchParents { stream, parents } => {
                if let Some(pull) = self.pulls.get_mut(&stream) {
                    // [0029], [0046] Make-before-break.
                    info!(core = self.id, stream = %stream, parents = ?parents, "switching parents");
                    let gone = pull.parents.switch(&parents, now);
                    self.retire_parents(&stream, &gone);
                } else {
                    self.start_pull(stream.clone(), &parents, now);
                }
                self.connect_due(&stream, now);
            }
            Order::StopPulling { stream } => {
                info!(core = self.id, stream = %stream, "stop pulling");
                if let Some(pull) = self.drop_pull(&stream) {
                    self.park(&stream, pull.feed, now);
                }
            }
            Order::Deactivate { stream } => {
                info!(core = self.id, stream = %stream, "deactivated: the stream ends here");
                if let Some(pull) = self.drop_pull(&stream) {
                    self.end_pulled(pull);
                }
            }
            Order::RedirectChildren { stream, to } => self.redirect_children(&stream, to),
        }
    }

    fn start_pull(&mut self, stream: String, parents: &[ParentAddr], now: u64) {
        // The name goes into a request line: only what a request may carry.
        if !crate::http::is_stream_name(&stream) {
            error!(core = self.id, stream = ?stream, "cannot pull: not a stream name (A-Z a-z 0-9 . _ ~ -, 1 to 128)");
            return;
        }
        if self
            .shared
            .tokens
            .as_ref()
            .and_then(|t| t.first())
            .is_none()
        {
            error!(core = self.id, stream = %stream, "cannot pull: this relay has no VAN token to present to its parents (--van-token-file)");
            return;
        }
        info!(core = self.id, stream = %stream, parents = ?parents, "pulling from parents");
        // A stream its parents left in grace here (a stop, then a new order) is continued from
        // where it stopped.
        let parked =
            self.shared.streams.lookup(&stream).filter(|s| {
                s.feed == crate::stream::Feed::Parents && s.state() == StreamState::Grace
            });
        let first_from = self.shared.waited_for.take(&stream, now);
        self.pulls.insert(
            stream,
            Pull {
                parents: ParentSet::new(parents, now),
                feed: None,
                parked,
                content_type: "application/octet-stream".into(),
                conns: Vec::new(),
                first_from,
            },
        );
    }

    /// Forgets a pulled stream and closes its connections (no parent lost).
    fn drop_pull(&mut self, stream: &str) -> Option<Pull> {
        let pull = self.pulls.remove(stream)?;
        for &(_, slot, generation) in &pull.conns {
            self.retire_conn(slot, generation);
        }
        Some(pull)
    }

    fn retire_conn(&mut self, slot: u32, generation: u32) {
        let c = &mut self.conns[slot as usize];
        if c.generation != generation {
            return;
        }
        if let State::Parent(p) = &mut c.state {
            p.retired = true;
            self.close(slot);
        }
    }

    /// Closes the connections to `gone` (old parents of a switch).
    fn retire_parents(&mut self, stream: &str, gone: &[ParentAddr]) {
        let Some(pull) = self.pulls.get_mut(stream) else {
            return;
        };
        let conns: Vec<_> = pull
            .conns
            .iter()
            .filter(|(p, _, _)| gone.contains(p))
            .map(|&(_, s, g)| (s, g))
            .collect();
        for p in gone {
            info!(core = self.id, stream = %stream, parent = p.id, addr = %p.addr, "old parent dropped");
        }
        for (slot, generation) in conns {
            self.retire_conn(slot, generation);
        }
    }

    /// No parent delivers `stream` any more: it goes to grace like a stream whose source left,
    /// its writer parked; a parent that delivers within the grace continues it.
    fn park(&mut self, stream: &str, feed: Option<ParentFeed>, now: u64) -> Option<Arc<Stream>> {
        let (s, writer) = feed?.into_parts();
        if s.state() == StreamState::Live {
            let deadline = now + self.shared.cfg.grace_us;
            info!(core = self.id, stream = %stream, grace_s = self.shared.cfg.grace_us as f64 / 1e6, "no parent delivers: stream in grace");
            self.shared.streams.detach_source(&s, writer, deadline);
            self.grace.push(s.clone());
        } else {
            self.draining.push((s.clone(), writer));
        }
        Some(s)
    }

    /// [0030] The stream ends for its viewers here.
    fn end_pulled(&mut self, pull: Pull) {
        if let Some(feed) = pull.feed {
            let (s, writer) = feed.into_parts();
            self.shared.streams.end_live(&s);
            self.notify(&s);
            self.draining.push((s, writer));
        } else if let Some(s) = pull.parked
            && let Some(writer) = self.shared.streams.expire(&s, u64::MAX)
        {
            self.notify(&s);
            self.draining.push((s, writer));
        }
    }

    /// Shutdown: every pulled stream ends, its connections close.
    pub(super) fn stop_pulls(&mut self) {
        let names: Vec<String> = self.pulls.keys().cloned().collect();
        for name in names {
            if let Some(pull) = self.drop_pull(&name) {
                self.end_pulled(pull);
            }
        }
    }

    /// [0037], [0046] Every VAN viewer of `stream` on this core is told to resume at `to`.
    fn redirect_children(&mut self, stream: &str, to: SocketAddr) {
        let Some(s) = self.shared.streams.lookup(stream) else {
            return;
        };
        let Some((_, subs)) = self.fanout.subscribers(s.id) else {
            return;
        };
        // A copy: a send below may close a connection (its release waits for the batch's end).
        let subs: Vec<u32> = subs.to_vec();
        let to_text = to.to_string();
        let wall = wall_us();
        let mut told = 0;
        for slot in subs {
            if let State::Viewer(v) = &mut self.conns[slot as usize].state
                && v.plan.is_van()
            {
                v.plan.redirect(&to_text, wall);
                told += 1;
                self.try_send(slot);
            }
        }
        info!(core = self.id, stream = %stream, to = %to, children = told, "VAN children redirected");
    }

    // ---- the hook for upward events -----------------------------------------------------

    /// [0066] The connection to `parent` for `stream` failed or closed while the order stood.
    fn parent_lost(&mut self, stream: &str, parent: u32) {
        let m = &self.shared.metrics[self.id];
        m.add(&m.parents_lost, 1);
        info!(core = self.id, stream = %stream, parent, "parent lost");
        // The agent reports it as a lost link ([0066]) when the PNC gave this parent.
        self.shared.event(crate::orders::LocalEvent::ParentLost {
            stream: stream.to_string(),
            parent,
        });
    }

    // ---- timers ---------------------------------------------------------------------------

    pub(super) fn tick_pulls(&mut self, now: u64, wall: u64) {
        let shared = self.shared;
        let mut hung = Vec::new();
        let silent_limit = 2 * shared.cfg.source_timeout_us;
        let names: Vec<String> = self.pulls.keys().cloned().collect();
        for name in &names {
            let Some(pull) = self.pulls.get_mut(name) else {
                continue;
            };
            if let Some(feed) = &mut pull.feed {
                feed.trim(&shared.pool, wall);
            }
            for &(_, slot, generation) in &pull.conns {
                let c = &self.conns[slot as usize];
                if c.generation != generation || c.closing {
                    continue;
                }
                let State::Parent(p) = &c.state else {
                    continue;
                };
                let silent_for = now.saturating_sub(p.heard_us);
                if !matches!(p.phase, Phase::Frames)
                    && now.saturating_sub(p.opened_us) > ANSWER_TIMEOUT_US
                {
                    hung.push((slot, "no answer within 5 s".to_owned()));
                } else if silent_for > silent_limit {
                    // A link that died without a reset (a cut cable) is found here: a source
                    // silent that long is closed at the origin, and its stream ends there.
                    let why = format!("nothing received for {} s", silent_for / 1_000_000);
                    hung.push((slot, why));
                }
            }
            self.connect_due(name, now);
        }
        for (slot, why) in hung {
            self.fail_parent(slot, why);
        }
    }

    // ---- connections ----------------------------------------------------------------------

    /// Opens the connections `stream`'s parent set says are due.
    fn connect_due(&mut self, stream: &str, now: u64) {
        let Some(pull) = self.pulls.get_mut(stream) else {
            return;
        };
        for parent in pull.parents.due(now) {
            self.open_parent(stream, parent, now);
        }
    }

    fn open_parent(&mut self, stream: &str, parent: ParentAddr, now: u64) {
        let sock = Socket::new(
            Domain::for_address(parent.addr),
            Type::STREAM,
            Some(Protocol::TCP),
        )
        .and_then(|s| {
            s.set_nonblocking(true)?;
            s.set_tcp_nodelay(true)?;
            Ok(s)
        });
        let sock = match sock {
            Ok(s) => s,
            Err(e) => {
                warn!(core = self.id, stream = %stream, "cannot open a socket to a parent: {e}");
                if let Some(pull) = self.pulls.get_mut(stream) {
                    pull.parents.lost(parent, now);
                }
                return;
            }
        };
        let fd = std::os::fd::IntoRawFd::into_raw_fd(sock);
        self.shared.connections.fetch_add(1, Ordering::AcqRel);
        self.m().connections.fetch_add(1, Ordering::Relaxed);
        let conn = Box::new(ParentConn {
            stream: stream.to_owned(),
            parent,
            addr: SockAddr::from(parent.addr),
            phase: Phase::Connect,
            reader: FrameReader::new(),
            rx: Vec::new(),
            frame: Vec::new(),
            keep: false,
            opened_us: now,
            heard_us: now,
            why: String::new(),
            retired: false,
            resync: false,
        });
        let slot = self.alloc_conn(fd, State::Parent(conn));
        let generation = self.conns[slot as usize].generation;
        if let Some(pull) = self.pulls.get_mut(stream) {
            pull.conns.push((parent, slot, generation));
        }
        debug!(core = self.id, stream = %stream, parent = parent.id, addr = %parent.addr, "connecting to parent");
        let State::Parent(p) = &self.conns[slot as usize].state else {
            return;
        };
        let e = opcode::Connect::new(types::Fd(fd), p.addr.as_ptr().cast(), p.addr.len())
            .build()
            .user_data(ud(K_PCONNECT, slot, generation));
        self.submit(slot, e);
    }

    pub(super) fn on_parent_connect(&mut self, slot: u32, res: i32) {
        let shared = self.shared;
        let c = &mut self.conns[slot as usize];
        if c.closing {
            return self.maybe_release(slot);
        }
        let State::Parent(p) = &mut c.state else {
            return;
        };
        if res < 0 {
            let why = format!("cannot connect: {}", io::Error::from_raw_os_error(-res));
            return self.fail_parent(slot, why);
        }
        let from = self.pulls.get(&p.stream).and_then(Pull::resume_from);
        let token = shared.tokens.as_ref().and_then(|t| t.first()).unwrap_or("");
        let mut out = format!("GET /van/{}", p.stream);
        if let Some(n) = from {
            out.push_str(&format!("?from={n}"));
        }
        out.push_str(&format!(
            " HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {token}\r\nX-Van-Proxy: {}\r\n\
             User-Agent: van-dataplane\r\n\r\n",
            p.parent.addr, shared.cfg.proxy_id
        ));
        debug!(core = self.id, stream = %p.stream, parent = p.parent.id, from = ?from, "asking parent");
        p.phase = Phase::Request {
            out: out.into_bytes(),
            sent: 0,
        };
        self.send_parent_request(slot);
    }

    fn send_parent_request(&mut self, slot: u32) {
        let c = &mut self.conns[slot as usize];
        let State::Parent(p) = &c.state else {
            return;
        };
        let Phase::Request { out, sent } = &p.phase else {
            return;
        };
        let e = opcode::Send::new(
            types::Fd(c.fd),
            out[*sent..].as_ptr(),
            (out.len() - sent) as u32,
        )
        .flags(libc::MSG_NOSIGNAL)
        .build()
        .user_data(ud(K_PSEND, slot, c.generation));
        self.submit(slot, e);
    }

    pub(super) fn on_parent_send(&mut self, slot: u32, res: i32) {
        let c = &mut self.conns[slot as usize];
        if c.closing {
            return self.maybe_release(slot);
        }
        let State::Parent(p) = &mut c.state else {
            return;
        };
        if res <= 0 {
            return self.fail_parent(slot, "the request could not be sent".into());
        }
        let Phase::Request { out, sent } = &mut p.phase else {
            return;
        };
        *sent += res as usize;
        if *sent < out.len() {
            return self.send_parent_request(slot);
        }
        p.phase = Phase::Answer {
            buf: Vec::with_capacity(1024),
        };
        self.recv_parent(slot);
    }

    /// Queues the next receive: into the answer's buffer while its head is incomplete, then
    /// into the read buffer.
    fn recv_parent(&mut self, slot: u32) {
        let c = &mut self.conns[slot as usize];
        let State::Parent(p) = &mut c.state else {
            return;
        };
        let (ptr, len) = match &mut p.phase {
            Phase::Answer { buf } => {
                if buf.capacity() == buf.len() {
                    buf.reserve_exact(buf.capacity().min(MAX_RESPONSE_HEAD));
                }
                // SAFETY: the spare capacity; the Vec is not touched until the completion.
                let ptr = unsafe { buf.as_mut_ptr().add(buf.len()) };
                (ptr, buf.capacity() - buf.len())
            }
            Phase::Frames => {
                p.rx.clear();
                p.rx.reserve_exact(RX_LEN);
                (p.rx.as_mut_ptr(), RX_LEN)
            }
            _ => return,
        };
        let e = opcode::Recv::new(types::Fd(c.fd), ptr, len as u32)
            .build()
            .user_data(ud(K_PRECV, slot, c.generation));
        self.submit(slot, e);
    }

    pub(super) fn on_parent_recv(&mut self, slot: u32, res: i32) {
        let c = &mut self.conns[slot as usize];
        if c.closing {
            return self.maybe_release(slot);
        }
        let State::Parent(p) = &mut c.state else {
            return;
        };
        if res <= 0 {
            let why = if res < 0 {
                format!("read failed: {}", io::Error::from_raw_os_error(-res))
            } else {
                "it closed the connection".to_owned()
            };
            return self.fail_parent(slot, why);
        }
        let n = res as usize;
        p.heard_us = self.shared.now_us();
        let bytes = match &mut p.phase {
            Phase::Answer { buf } => {
                // SAFETY: the kernel wrote `n` bytes into the spare capacity.
                unsafe { buf.set_len(buf.len() + n) };
                match self.take_answer(slot) {
                    Some(rest) => rest,
                    None => return,
                }
            }
            Phase::Frames => {
                // SAFETY: the kernel wrote `n` bytes into the spare capacity.
                unsafe { p.rx.set_len(n) };
                std::mem::take(&mut p.rx)
            }
            Phase::Connect | Phase::Request { .. } => return,
        };
        let took = self.take_frames(slot, &bytes);
        if let State::Parent(p) = &mut self.conns[slot as usize].state
            && p.rx.capacity() == 0
        {
            // The read buffer goes back for the next read.
            p.rx = bytes;
        }
        self.act_on(slot, took);
    }

    /// The answer's head so far: `Some(body bytes after it)` once it is a `200`; `None` when
    /// more is needed (a receive is queued) or the connection is closed.
    fn take_answer(&mut self, slot: u32) -> Option<Vec<u8>> {
        let core = self.id;
        let State::Parent(p) = &mut self.conns[slot as usize].state else {
            return None;
        };
        let Phase::Answer { buf } = &mut p.phase else {
            return None;
        };
        loop {
            match parse_response_head(buf) {
                Ok(None) => {
                    self.recv_parent(slot);
                    return None;
                }
                Err(e) => {
                    self.fail_parent(slot, format!("its answer is not HTTP: {e}"));
                    return None;
                }
                Ok(Some(h)) if (100..200).contains(&h.status) => {
                    buf.drain(..h.len);
                }
                Ok(Some(h)) if h.status != 200 => {
                    let why = format!("it answered {} {}", h.status, h.reason);
                    self.fail_parent(slot, why);
                    return None;
                }
                Ok(Some(h)) => {
                    let rest = buf[h.len..].to_vec();
                    let ct = h
                        .payload_type
                        .unwrap_or_else(|| "application/octet-stream".into());
                    debug!(core, stream = %p.stream, parent = p.parent.id, content_type = %ct, "parent answered");
                    p.phase = Phase::Frames;
                    let name = p.stream.clone();
                    if let Some(pull) = self.pulls.get_mut(&name) {
                        pull.content_type = ct;
                    }
                    return Some(rest);
                }
            }
        }
    }

    /// Reads the frames in `bytes` from the parent on `slot` into its stream.
    fn take_frames(&mut self, slot: u32, mut bytes: &[u8]) -> Took {
        let shared = self.shared;
        let core = self.id;
        let now = shared.now_us();
        let mut took = Took::default();
        let State::Parent(p) = &mut self.conns[slot as usize].state else {
            return took;
        };
        let Some(pull) = self.pulls.get_mut(&p.stream) else {
            took.fail = Some("the stream is no longer pulled".into());
            return took;
        };
        let m = &shared.metrics[core];
        loop {
            let event = match p.reader.next_event(&mut bytes) {
                Ok(Some(e)) => e,
                Ok(None) => return took,
                Err(e) => {
                    took.fail = Some(format!("parent sent bytes that are not VAN frames: {e}"));
                    return took;
                }
            };
            match event {
                FrameEvent::Header(h) => {
                    let limit = match h.kind {
                        FrameKind::Data => shared.pool.block_size() as u32,
                        _ => MAX_CONTROL_PAYLOAD,
                    };
                    if h.len > limit {
                        took.fail = Some(format!(
                            "parent sent a frame of {} bytes, more than {limit}",
                            h.len
                        ));
                        return took;
                    }
                    p.keep = match (h.kind, &pull.feed) {
                        (FrameKind::Data, Some(f)) => f.wanted(h.seq),
                        _ => true,
                    };
                    p.frame.clear();
                    if p.keep {
                        p.frame.reserve(h.len as usize);
                    }
                }
                FrameEvent::Payload { bytes: part, .. } => {
                    if p.keep {
                        p.frame.extend_from_slice(part);
                    }
                }
                FrameEvent::Done(h) => match h.kind {
                    FrameKind::Data if !p.keep => {
                        // A copy of a frame the stream has: this parent is in step.
                        m.add(&m.parent_duplicates, 1);
                        took.retire
                            .extend(pull.parents.delivered(p.parent, true, now));
                    }
                    FrameKind::Data => {
                        if let Err(why) = deliver(shared, core, pull, p, &h, now, &mut took) {
                            took.fail = Some(why);
                            return took;
                        }
                    }
                    FrameKind::Redirect => {
                        let to = std::str::from_utf8(&p.frame)
                            .ok()
                            .and_then(|t| t.trim().parse::<SocketAddr>().ok());
                        match to {
                            Some(to) => took.redirect = Some(to),
                            None => {
                                took.fail =
                                    Some("parent sent a redirect to no socket address".into())
                            }
                        }
                        return took;
                    }
                    FrameKind::End => {
                        took.fail = Some(format!(
                            "parent ended the stream: {}",
                            String::from_utf8_lossy(&p.frame)
                        ));
                        return took;
                    }
                    FrameKind::Heartbeat => {}
                },
            }
        }
    }

    /// Carries out what a read's frames asked for.
    fn act_on(&mut self, slot: u32, took: Took) {
        let Took {
            published,
            retire,
            fail,
            redirect,
            resync,
        } = took;
        if let Some(s) = published {
            self.notify(&s);
        }
        let (stream, parent) = match &self.conns[slot as usize].state {
            State::Parent(p) => (p.stream.clone(), p.parent),
            _ => return,
        };
        if !retire.is_empty() {
            self.retire_parents(&stream, &retire);
        }
        if let Some(why) = fail {
            if resync && let State::Parent(p) = &mut self.conns[slot as usize].state {
                p.resync = true;
            }
            return self.fail_parent(slot, why);
        }
        if let Some(to) = redirect {
            info!(core = self.id, stream = %stream, parent = parent.id, to = %to, "parent redirects us");
            let now = self.shared.now_us();
            if let Some(pull) = self.pulls.get_mut(&stream) {
                pull.parents.redirect(parent, to, now);
            }
            if let State::Parent(p) = &mut self.conns[slot as usize].state {
                p.retired = true;
            }
            self.close(slot);
            return self.connect_due(&stream, now);
        }
        if !self.conns[slot as usize].closing {
            self.recv_parent(slot);
        }
    }

    /// Closes a parent connection that failed, saying why in the log line of its loss.
    fn fail_parent(&mut self, slot: u32, why: String) {
        if let State::Parent(p) = &mut self.conns[slot as usize].state {
            p.why = why;
        }
        self.close(slot);
    }

    /// A parent connection is released: if it was not closed on purpose, its parent is lost
    /// (retried with back-off); with no parent delivering, the stream goes to grace.
    pub(super) fn parent_closed(&mut self, slot: u32, p: Box<ParentConn>) {
        let now = self.shared.now_us();
        let Some(pull) = self.pulls.get_mut(&p.stream) else {
            return;
        };
        pull.conns.retain(|&(_, s, _)| s != slot);
        // Reported once per outage (not at every failed retry), and not for a connection
        // closed on purpose or to be asked again.
        let mut lost = false;
        if !p.retired
            && let Lost::RetryAt { at, first } = pull.parents.lost(p.parent, now)
        {
            lost = first && !p.resync;
            debug!(core = self.id, stream = %p.stream, parent = p.parent.id, in_ms = at.saturating_sub(now) / 1000, "parent retried");
        }
        if !pull.parents.any_delivering() && pull.feed.is_some() {
            let feed = pull.feed.take();
            let parked = self.park(&p.stream, feed, now);
            if let Some(pull) = self.pulls.get_mut(&p.stream) {
                pull.parked = parked;
            }
        }
        if lost {
            info!(core = self.id, stream = %p.stream, parent = p.parent.id, addr = %p.parent.addr, why = %p.why, "parent connection ended");
            self.parent_lost(&p.stream, p.parent.id);
        } else if !p.retired {
            // A retry that failed again, or a parent asked again from the next sequence.
            debug!(core = self.id, stream = %p.stream, parent = p.parent.id, why = %p.why, "parent connection ended");
        }
    }
}

/// A whole data frame `h` (gathered in `p.frame`) from `p`'s parent goes into the stream.
/// `Err` closes the connection (a parent lost).
fn deliver(
    shared: &Shared,
    core: usize,
    pull: &mut Pull,
    p: &mut ParentConn,
    h: &FrameHeader,
    now: u64,
    took: &mut Took,
) -> Result<(), String> {
    if pull.feed.is_none() {
        let (stream, writer, resumed) = shared
            .streams
            .attach_parents(&p.stream, &pull.content_type, h.seq)
            .map_err(|e| format!("cannot serve the stream here: {e:?}"))?;
        info!(core, stream = %p.stream, parent = p.parent.id, first = h.seq, resumed, content_type = %pull.content_type, "pulled stream live");
        pull.feed = Some(ParentFeed::new(stream, writer, &pull.content_type));
        pull.parked = None;
    }
    let feed = pull.feed.as_mut().expect("attached above");
    let may_jump = pull.parents.may_jump(p.parent, now);
    let m = &shared.metrics[core];
    match feed.offer(&shared.pool, h, &p.frame, may_jump) {
        Offered::Published {
            missed, new_block, ..
        } => {
            m.add(&m.frames_published, 1);
            m.add(&m.bytes_in, h.len as u64);
            if new_block {
                m.add(&m.blocks_published, 1);
            }
            if missed > 0 {
                m.add(&m.parent_jumps, 1);
                m.add(&m.parent_frames_missed, missed);
                warn!(core, stream = %p.stream, parent = p.parent.id, at = h.seq, missed, "pulled stream jumped ahead: frames missed");
            }
            took.published = Some(feed.stream().clone());
            took.retire
                .extend(pull.parents.delivered(p.parent, missed == 0, now));
        }
        Offered::Duplicate => {
            m.add(&m.parent_duplicates, 1);
            took.retire
                .extend(pull.parents.delivered(p.parent, true, now));
        }
        Offered::HeldBack => {
            // Its frames between the stream's next and this one were never taken: ask it
            // again from the next, so that it has them if the parent in order dies.
            pull.parents.delivered(p.parent, false, now);
            took.resync = true;
            return Err(format!(
                "parent is ahead of the stream (at {}, the stream needs {}): asking it again from there",
                h.seq,
                feed.next_seq()
            ));
        }
        Offered::PoolEmpty => {
            m.add(&m.ingest_paused, 1);
            return Err("block pool exhausted: the parent is asked again later".into());
        }
        Offered::Invalid => return Err(format!("parent sent an invalid frame at {}", h.seq)),
    }
    Ok(())
}

#[cfg(test)]
mod tests;
