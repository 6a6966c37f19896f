//! The io_uring reactor: one pinned thread per core, each with its own ring, its own
//! SO_REUSEPORT listener and its own connections (DESIGN.md, "Data plane").
//!
//! The reactor keeps the completion loop, the connection slab, the timers and every syscall
//! (SQEs are built and submitted here only). Every connection is a small state machine in the
//! slab; a completion finds it from its `user_data` (kind, slot, generation). What to do is
//! decided elsewhere, by plain types the reactor turns completions into events for:
//! - [`crate::frontdoor`]: what a parsed request gets (refusal, source, viewer) and on which core;
//! - [`crate::ingest`]: what a source's read becomes (frames, keyframe cuts, PSI, end of body);
//! - [`crate::fanout`]: which of this core's subscribers have something new;
//! - [`crate::sendplan`]: what a subscriber is sent next, coalescing, the lag policy, and the
//!   send in flight, ended exactly once by its final completion;
//! - [`crate::window::reclaim`]: the marks that keep a block alive while a core uses it;
//! - [`crate::pull`] and [`crate::parent_feed`]: which parents a pulled stream's connections go
//!   to and what their frames do to it (the reactor's side, orders and parent connections, is
//!   the `parents` submodule).
//!
//! Hot path. Ingest reads straight into the stream's current pool block (`ReadFixed`) and
//! publishes each read as a frame (split at MPEG-TS keyframes). The ingest core then wakes every
//! other core with local subscribers of that stream (`MsgRingData`, coalesced by a per-core
//! flag); each woken core queues one send per idle local subscriber, all pointing into the same
//! registered block, and submits them together with the next `io_uring_enter`. Plain viewers get
//! `Send` (or `SendZc` from the registered pool with copy reporting, see `--zerocopy`); VAN viewers one `SendMsg`
//! per batch, an iovec of header/payload pairs. At most one send is in flight per socket; a
//! viewer behind catches up with one send covering all that is contiguous. Hang-ups are seen by
//! a multishot poll for POLLRDHUP, so no viewer needs a receive buffer. One multishot timeout
//! per ring drives every timer (header timeout, grace, lag, window ageing).
//!
//! Request heads are read into a small per-connection buffer (1 KiB, grown up to
//! [`http::MAX_HEAD`]) that is freed as soon as the head is parsed, so a connected viewer holds
//! only its state (a few hundred bytes).

mod parents;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crossbeam::queue::SegQueue;
use crossbeam::utils::CachePadded;
use io_uring::{IoUring, cqueue, opcode, squeue, types};
use tracing::{debug, info, warn};

use crate::auth::{SourceCredentials, VanTokens};
use crate::config::{Config, Placement, ZeroCopy};
use crate::cursor::VanPiece;
use crate::fanout::{Fanout, Left};
use crate::frame::HEADER_LEN;
use crate::frontdoor::{self, Admission, FrontDoor};
use crate::http::{self, Request};
use crate::ingest::{Ingest, NextRead};
use crate::metrics::{CoreMetrics, Reject};
use crate::orders::Order;
use crate::orders::{self, LocalEvent};
use crate::pool::BlockPool;
use crate::sendplan::{self, AfterSend, Next, Pace, SendPlan, Stall, VAN_BATCH};
use crate::stream::{Feed, Registry, Stream};
use crate::window::Writer;
use crate::window::reclaim::CoreMark;

const K_ACCEPT: u64 = 1;
const K_RECV: u64 = 2;
const K_READ: u64 = 3;
const K_SEND: u64 = 4;
const K_POLL: u64 = 5;
const K_TIMER: u64 = 6;
const K_WAKE: u64 = 7;
const K_IGNORE: u64 = 8;
const K_HANDOFF: u64 = 9;
const K_COALESCE: u64 = 10;
/// A source's socket became readable (it waits for bytes before it takes a block).
const K_READABLE: u64 = 11;
/// The core's order eventfd became readable: orders wait in its queue ([`Shared::send_order`]).
const K_ORDERS: u64 = 12;
/// A parent connection's connect, request send and receive ([`parents`]).
const K_PCONNECT: u64 = 13;
const K_PSEND: u64 = 14;
const K_PRECV: u64 = 15;

const TICK_NS: u32 = 100_000_000;
const HEAD_BUF_START: usize = 1024;
/// IORING_SEND_ZC_REPORT_USAGE / IORING_NOTIF_USAGE_ZC_COPIED (not re-exported by the crate).
const SEND_ZC_REPORT_USAGE: u16 = 8;
const NOTIF_USAGE_ZC_COPIED: i32 = i32::MIN;
/// How long shutdown waits for viewers to take what is queued.
const STOP_GRACE_US: u64 = 3_000_000;
/// How long a viewer of a standby waits for its stream to flow ([`Admission::Wait`]).
const STANDBY_WAIT_US: u64 = 5_000_000;
/// How long a viewer of a stream not activated here waits for the PNC's `Activate` (a relay
/// under a PNC): the order left the PNC with the viewer's `302`, it is late by a round trip at
/// most.
const ACTIVATION_WAIT_US: u64 = 1_000_000;

fn ud(kind: u64, slot: u32, generation: u32) -> u64 {
    (kind << 56) | ((slot as u64 & 0xff_ffff) << 32) | generation as u64
}

fn ud_parts(ud: u64) -> (u64, u32, u32) {
    (ud >> 56, ((ud >> 32) & 0xff_ffff) as u32, ud as u32)
}

/// A viewer joined `stream`: a child proxy if it named one (`X-Van-Proxy`) on a VAN request.
fn joined(stream: &str, child: Option<u32>) -> LocalEvent {
    let stream = stream.to_owned();
    match child {
        Some(child) => LocalEvent::ChildJoined { stream, child },
        None => LocalEvent::ViewerJoined { stream },
    }
}

/// The counterpart of [`joined`].
fn left(stream: &str, child: Option<u32>) -> LocalEvent {
    let stream = stream.to_owned();
    match child {
        Some(child) => LocalEvent::ChildLeft { stream, child },
        None => LocalEvent::ViewerLeft { stream },
    }
}

pub fn wall_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// Everything the cores share.
pub struct Shared {
    pub cfg: Config,
    pub pool: BlockPool,
    pub streams: Registry,
    pub metrics: Vec<CoreMetrics>,
    pub ring_fds: Vec<AtomicI32>,
    pub wake_pending: Vec<CachePadded<AtomicBool>>,
    /// Viewers each core serves or has been handed and not yet started: the load that
    /// `--placement least-loaded` balances. Counted when placed, so a burst of joins on one
    /// core does not send them all to the same other core.
    pub placed: Vec<CachePadded<AtomicUsize>>,
    /// Viewers handed to each core, taken when its `K_HANDOFF` message arrives.
    handoffs: Vec<SegQueue<Handoff>>,
    /// Orders for each core, taken when its order eventfd is readable ([`Shared::send_order`]).
    orders: Vec<SegQueue<Order>>,
    /// Per core, the eventfd an outside thread writes to wake it for its orders (-1 if the
    /// kernel refused one: the orders then wait for the core's next tick).
    order_wakers: Vec<RawFd>,
    pub shutdown: AtomicBool,
    pub connections: AtomicUsize,
    pub max_connections: usize,
    pub creds: Option<SourceCredentials>,
    pub tokens: Option<VanTokens>,
    pub cores_done: AtomicUsize,
    /// Who takes new viewers per stream, as the PNC last ordered (read at routing).
    pub admission: orders::Admission,
    /// Where viewers, child proxies and sources coming and going are told, for the PNC link;
    /// `None` without `--pnc`.
    events: Option<tokio::sync::mpsc::UnboundedSender<LocalEvent>>,
    start: Instant,
}

impl Shared {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cfg: Config,
        pool: BlockPool,
        streams: Registry,
        cores: usize,
        max_connections: usize,
        creds: Option<SourceCredentials>,
        tokens: Option<VanTokens>,
    ) -> Self {
        Self {
            cfg,
            pool,
            streams,
            metrics: (0..cores).map(|_| CoreMetrics::default()).collect(),
            ring_fds: (0..cores).map(|_| AtomicI32::new(-1)).collect(),
            wake_pending: (0..cores)
                .map(|_| CachePadded::new(AtomicBool::new(false)))
                .collect(),
            placed: (0..cores)
                .map(|_| CachePadded::new(AtomicUsize::new(0)))
                .collect(),
            handoffs: (0..cores).map(|_| SegQueue::new()).collect(),
            orders: (0..cores).map(|_| SegQueue::new()).collect(),
            order_wakers: (0..cores).map(|_| order_waker()).collect(),
            shutdown: AtomicBool::new(false),
            connections: AtomicUsize::new(0),
            max_connections,
            creds,
            tokens,
            cores_done: AtomicUsize::new(0),
            admission: orders::Admission::default(),
            events: None,
            start: Instant::now(),
        }
    }

    /// Tell the PNC link (through `events`) of the viewers, child proxies and sources that come
    /// and go.
    pub fn with_events(mut self, events: tokio::sync::mpsc::UnboundedSender<LocalEvent>) -> Self {
        self.events = Some(events);
        self.admission.set_linked(true);
        self
    }

    /// Tells the PNC link, if there is one. Never blocks: the channel is unbounded, and the
    /// link drains it whether or not the PNC is reachable.
    pub fn event(&self, event: LocalEvent) {
        if let Some(tx) = &self.events {
            // Fails only once the control thread is gone (shutdown): nothing to tell then.
            let _ = tx.send(event);
        }
    }

    /// Monotonic microseconds since start-up, for every timer.
    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }

    /// Hands `order` to the reactors, from any thread that is not one (the control thread).
    /// Every order of one stream goes to the same core, chosen by a hash of the name, so that
    /// the stream's writer and all its parent connections live there; a redirect of children
    /// goes to every core, since a stream's viewers are spread over all of them.
    ///
    /// The core is woken at once through its eventfd, which its ring polls (`K_ORDERS`): an
    /// eventfd write is one syscall from any thread with no state of the caller's, where a
    /// `MsgRingData` from outside would need a ring per calling thread. Orders are rare (a few
    /// per stream and minute), so its cost does not matter; nothing is allocated per order
    /// beyond the order itself.
    pub fn send_order(&self, order: Order) {
        if matches!(order, Order::RedirectChildren { .. }) {
            for core in 0..self.orders.len() {
                self.orders[core].push(order.clone());
                self.wake_for_orders(core);
            }
            return;
        }
        let core = self.stream_core(order.stream());
        self.orders[core].push(order);
        self.wake_for_orders(core);
    }

    /// The core that pulls `stream`: a fixed hash of its name (the same in every run).
    pub fn stream_core(&self, stream: &str) -> usize {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        stream.hash(&mut h);
        (h.finish() % self.orders.len().max(1) as u64) as usize
    }

    fn wake_for_orders(&self, core: usize) {
        let fd = self.order_wakers[core];
        if fd < 0 {
            return;
        }
        let one: u64 = 1;
        // SAFETY: an eventfd write of 8 bytes from a live local; the fd lives as long as Shared.
        unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
    }
}

/// A non-blocking eventfd for a core's orders, or -1 (logged) if the kernel refuses one.
fn order_waker() -> RawFd {
    // SAFETY: plain syscall; the fd is owned by Shared, which lives for the whole process.
    let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if fd < 0 {
        warn!(
            "cannot create an eventfd for orders ({}): orders wait for the next tick",
            io::Error::last_os_error()
        );
    }
    fd
}

/// Registers the pool once, on a ring of its own made by the calling thread, for the cores to
/// clone. It has no SINGLE_ISSUER: the kernel refuses to clone from a single-issuer ring owned
/// by another thread (EEXIST). Keep it until every core has cloned; dropping it then leaves
/// the clones intact.
pub fn register_pool(shared: &'static Shared) -> Result<IoUring, SetupError> {
    let ring = IoUring::new(8).map_err(SetupError::Ring)?;
    // SAFETY: the pool's mapping lives in `Shared`, which is never dropped.
    unsafe { ring.submitter().register_buffers(&shared.pool.iovecs()) }
        .map_err(SetupError::Register)?;
    Ok(ring)
}

/// Why a ring could not be made ready; main turns it into the one-line start-up error.
#[derive(Debug)]
pub enum SetupError {
    Ring(io::Error),
    Register(io::Error),
}

/// Builds a ring: SINGLE_ISSUER | DEFER_TASKRUN where the kernel has them (6.1+), plain
/// otherwise. Never SQPOLL (it would eat a core).
pub fn build_ring() -> io::Result<(IoUring, bool)> {
    // Room for one send per viewer of a big fan-out in one submission.
    let entries = 16384;
    let mut b = IoUring::builder();
    b.setup_single_issuer()
        .setup_defer_taskrun()
        .setup_cqsize(65536)
        .setup_submit_all();
    match b.build(entries) {
        Ok(r) => Ok((r, true)),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => IoUring::builder()
            .setup_cqsize(65536)
            .build(entries)
            .map(|r| (r, false)),
        Err(e) => Err(e),
    }
}

/// A viewer whose request one core parsed, for another core to serve. The socket is an
/// ordinary descriptor (the rings register no files), so its number is all that moves;
/// `MsgRingSendFd`, which moves registered descriptors, has nothing to carry here.
struct Handoff {
    fd: RawFd,
    stream: Arc<Stream>,
    /// As in [`Admission::Viewer`].
    van: Option<Option<u64>>,
    child: Option<u32>,
}

/// The iovecs and header of a VAN viewer's sendmsg.
struct VanMsg {
    iov: [libc::iovec; 2 * VAN_BATCH],
    msg: libc::msghdr,
}

/// A subscriber's connection: its [`SendPlan`] and what its sends need from the reactor.
struct Viewer {
    stream: Arc<Stream>,
    plan: SendPlan,
    /// A VAN viewer's sendmsg header and iovecs.
    van: Option<Box<VanMsg>>,
    /// Large sends go as send_zc; dropped for good once the kernel reports it copied.
    zc: bool,
    /// Its index in the stream's list in [`Fanout`].
    sub_index: usize,
    /// The child proxy it is (`X-Van-Proxy`), if any.
    child: Option<u32>,
}

enum State {
    Free,
    Head {
        buf: Vec<u8>,
    },
    Reply {
        out: Vec<u8>,
        sent: usize,
        then: Option<Box<Ingest>>,
    },
    Source(Box<Ingest>),
    Viewer(Box<Viewer>),
    /// A connection to a parent proxy this core pulls a stream from.
    Parent(Box<parents::ParentConn>),
    /// A viewer of a standby, waiting for its stream (no operation in flight; a hang-up is
    /// seen only at the deadline).
    Waiting(Box<Waiting>),
}

/// As in [`Admission::Wait`], with its deadline.
struct Waiting {
    stream: String,
    van: Option<Option<u64>>,
    child: Option<u32>,
    until_us: u64,
    /// Until then a stream not (or no longer) activated here is still waited for: its
    /// activation may be on its way (0: it was activated at admission).
    activation_until_us: u64,
}

struct Conn {
    fd: RawFd,
    generation: u32,
    /// Operations in flight on this connection: counted up by [`Core::submit`] alone and down
    /// by [`Core::handle`] alone, at each one's final completion. The slot (its fd, its
    /// buffers) is released only at zero.
    ops: u32,
    closing: bool,
    poll_armed: bool,
    state: State,
}

pub struct Core {
    id: usize,
    ring: IoUring,
    shared: &'static Shared,
    listener: RawFd,
    conns: Vec<Conn>,
    free: Vec<u32>,
    fanout: Fanout,
    releases: Vec<u32>,
    head_deadlines: VecDeque<(u64, u32, u32)>,
    sources: Vec<u32>,
    grace: Vec<Arc<Stream>>,
    /// Viewers of standbys waiting for their stream: (slot, generation).
    waiting: Vec<(u32, u32)>,
    draining: Vec<(Arc<Stream>, Box<Writer>)>,
    timespec: Box<types::Timespec>,
    /// The one timer of held-back sends (`--coalesce-ms`), armed while `coalesce_armed`.
    coalesce_timespec: Box<types::Timespec>,
    coalesce_armed: bool,
    cqes: Vec<(u64, i32, u32)>,
    stopping: Option<u64>,
    accept_armed: bool,
    /// The streams this core pulls from parents, by name.
    pulls: HashMap<String, parents::Pull>,
}

impl Core {
    /// Sets up the ring of core `id` and gives it the pool as fixed buffers: cloned from the
    /// registration ring ([`register_pool`]; `register_buffers_clone`, so the pages are pinned
    /// and charged to locked memory once); if the kernel refuses the clone (older than 6.12) the
    /// core registers the pool itself.
    pub fn new(
        id: usize,
        shared: &'static Shared,
        listener: RawFd,
        clone_from: Option<RawFd>,
    ) -> Result<Self, SetupError> {
        let (ring, single_issuer) = build_ring().map_err(SetupError::Ring)?;
        let iovecs = shared.pool.iovecs();
        let cloned = match clone_from.map(|src| ring.submitter().register_buffers_clone(src)) {
            Some(Ok(())) => true,
            Some(Err(e)) => {
                debug!(
                    core = id,
                    "cannot clone the pool registration ({e}): registering it"
                );
                false
            }
            None => false,
        };
        if !cloned {
            // SAFETY: the pool's mapping lives in `Shared`, which is never dropped (leaked for
            // the life of the process), so it outlives every ring.
            unsafe { ring.submitter().register_buffers(&iovecs) }.map_err(SetupError::Register)?;
        }
        shared.ring_fds[id].store(ring.as_raw_fd(), Ordering::Release);
        debug!(
            core = id,
            single_issuer_defer_taskrun = single_issuer,
            pool = if cloned { "cloned" } else { "registered" },
            "ring ready"
        );
        Ok(Self {
            id,
            ring,
            shared,
            listener,
            conns: Vec::new(),
            free: Vec::new(),
            fanout: Fanout::new(id),
            releases: Vec::new(),
            head_deadlines: VecDeque::new(),
            sources: Vec::new(),
            grace: Vec::new(),
            waiting: Vec::new(),
            draining: Vec::new(),
            timespec: Box::new(types::Timespec::new().nsec(TICK_NS)),
            coalesce_timespec: Box::new(types::Timespec::new()),
            coalesce_armed: false,
            cqes: Vec::with_capacity(4096),
            stopping: None,
            accept_armed: false,
            pulls: HashMap::new(),
        })
    }

    pub fn ring_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }

    fn m(&self) -> &CoreMetrics {
        &self.shared.metrics[self.id]
    }

    fn push(&mut self, e: squeue::Entry) {
        loop {
            // SAFETY: every pointer in an entry refers to memory that stays valid until its
            // completion: pool blocks (pinned by the window protocol), buffers owned by the
            // connection (freed only when its ops count is zero), or the core's own timespec.
            if unsafe { self.ring.submission().push(&e) }.is_ok() {
                return;
            }
            if let Err(err) = self.ring.submit() {
                warn!(core = self.id, "io_uring submit failed: {err}");
            }
        }
    }

    /// Queues an operation on connection `slot`; its final completion is counted in
    /// [`Core::handle`].
    fn submit(&mut self, slot: u32, e: squeue::Entry) {
        self.conns[slot as usize].ops += 1;
        self.push(e);
    }

    /// The completion loop. Returns when the core has stopped (shutdown).
    pub fn run(mut self) {
        self.arm_accept();
        self.arm_orders();
        self.take_orders();
        self.push(
            opcode::Timeout::new(&*self.timespec as *const _)
                .count(0)
                .flags(types::TimeoutFlags::MULTISHOT)
                .build()
                .user_data(ud(K_TIMER, 0, 0)),
        );
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => {}
                Err(e)
                    if e.raw_os_error() == Some(libc::EINTR)
                        || e.raw_os_error() == Some(libc::EBUSY) => {}
                Err(e) => {
                    warn!(core = self.id, "io_uring_enter failed: {e}");
                }
            }
            self.cqes.clear();
            for c in self.ring.completion() {
                self.cqes.push((c.user_data(), c.result(), c.flags()));
            }
            let mut cqes = std::mem::take(&mut self.cqes);
            for &(u, res, flags) in &cqes {
                self.handle(u, res, flags);
            }
            cqes.clear();
            self.cqes = cqes;
            self.flush_dirty();
            self.drain_releases();
            if let Some(deadline) = self.stopping
                && self.live_conns() == 0
                && (self.draining.is_empty() || self.shared.now_us() > deadline)
            {
                break;
            }
        }
        // No other core may message this ring once it is gone (its fd number could be reused).
        self.shared.ring_fds[self.id].store(-1, Ordering::Release);
        self.shared.cores_done.fetch_add(1, Ordering::AcqRel);
        debug!(core = self.id, "reactor stopped");
    }

    fn live_conns(&self) -> usize {
        self.conns.len() - self.free.len()
    }

    fn arm_accept(&mut self) {
        self.accept_armed = true;
        self.push(
            opcode::AcceptMulti::new(types::Fd(self.listener))
                .flags(libc::SOCK_CLOEXEC)
                .build()
                .user_data(ud(K_ACCEPT, 0, 0)),
        );
    }

    fn handle(&mut self, u: u64, res: i32, flags: u32) {
        let (kind, slot, generation) = ud_parts(u);
        match kind {
            K_ACCEPT => self.on_accept(res, flags),
            K_TIMER => {
                if !cqueue::more(flags) && self.stopping.is_none() {
                    self.push(
                        opcode::Timeout::new(&*self.timespec as *const _)
                            .count(0)
                            .flags(types::TimeoutFlags::MULTISHOT)
                            .build()
                            .user_data(ud(K_TIMER, 0, 0)),
                    );
                }
                self.on_tick();
            }
            K_WAKE => {
                // A swap, not a store: reading the waker's `true` makes every frame it
                // published before waking us visible to the pump below (acquire), on any
                // architecture; a waker that saw `true` relies on exactly that.
                self.shared.wake_pending[self.id].swap(false, Ordering::AcqRel);
                self.m().add(&self.m().wakeups, 1);
                self.fanout.all_dirty();
            }
            K_HANDOFF => self.on_handoff(slot as usize, generation == 1 && res < 0),
            K_COALESCE => {
                self.coalesce_armed = false;
                self.fanout.coalescing_due();
            }
            K_ORDERS => self.on_orders(res, flags),
            K_IGNORE => {}
            _ => {
                let Some(c) = self.conns.get_mut(slot as usize) else {
                    return;
                };
                if c.generation != generation || matches!(c.state, State::Free) {
                    return;
                }
                if !cqueue::more(flags) {
                    // The operation's final completion (for send_zc, its notification).
                    debug_assert!(c.ops > 0, "a completion without an operation in flight");
                    c.ops -= 1;
                }
                match kind {
                    K_RECV => self.on_recv(slot, res),
                    K_READ => self.on_read(slot, res),
                    K_SEND => self.on_send(slot, res, flags),
                    K_POLL => self.on_poll(slot, res, flags),
                    K_READABLE => self.on_readable(slot, res),
                    K_PCONNECT => self.on_parent_connect(slot, res),
                    K_PSEND => self.on_parent_send(slot, res),
                    K_PRECV => self.on_parent_recv(slot, res),
                    _ => {}
                }
            }
        }
    }

    // ---- connections -------------------------------------------------------------------

    fn alloc_conn(&mut self, fd: RawFd, state: State) -> u32 {
        if let Some(slot) = self.free.pop() {
            let c = &mut self.conns[slot as usize];
            c.fd = fd;
            c.generation = c.generation.wrapping_add(1);
            c.ops = 0;
            c.closing = false;
            c.poll_armed = false;
            c.state = state;
            slot
        } else {
            self.conns.push(Conn {
                fd,
                generation: 1,
                ops: 0,
                closing: false,
                poll_armed: false,
                state,
            });
            (self.conns.len() - 1) as u32
        }
    }

    fn on_accept(&mut self, res: i32, flags: u32) {
        if !cqueue::more(flags) {
            self.accept_armed = false;
            // After an error (EMFILE, ENFILE...) wait for the next tick rather than spin.
            if self.stopping.is_none() && res >= 0 {
                self.arm_accept();
            }
        }
        if res < 0 {
            if res != -libc::ECANCELED {
                warn!(
                    core = self.id,
                    "accept failed: {}",
                    io::Error::from_raw_os_error(-res)
                );
            }
            return;
        }
        let fd = res;
        if self.stopping.is_some() {
            // SAFETY: fd was just accepted and is owned by nobody else.
            unsafe { libc::close(fd) };
            return;
        }
        let n = self.shared.connections.fetch_add(1, Ordering::AcqRel);
        if n >= self.shared.max_connections {
            self.shared.connections.fetch_sub(1, Ordering::AcqRel);
            turn_away(fd);
            self.m().reject(Reject::TooManyConnections);
            warn!(
                core = self.id,
                "connection refused: over --max-connections ({})", self.shared.max_connections
            );
            return;
        }
        self.m().connections.fetch_add(1, Ordering::Relaxed);
        let slot = self.alloc_conn(
            fd,
            State::Head {
                buf: Vec::with_capacity(HEAD_BUF_START),
            },
        );
        let deadline = self.shared.now_us() + self.shared.cfg.header_timeout_us;
        let generation = self.conns[slot as usize].generation;
        self.head_deadlines.push_back((deadline, slot, generation));
        self.recv_head(slot);
    }

    fn recv_head(&mut self, slot: u32) {
        let c = &mut self.conns[slot as usize];
        let State::Head { buf } = &mut c.state else {
            return;
        };
        if buf.capacity() == buf.len() {
            let want = (buf.capacity() * 2).min(http::MAX_HEAD);
            buf.reserve_exact(want - buf.len());
        }
        // SAFETY: writing into the spare capacity; the Vec is not touched until the completion.
        let ptr = unsafe { buf.as_mut_ptr().add(buf.len()) };
        let len = (buf.capacity() - buf.len()) as u32;
        let e = opcode::Recv::new(types::Fd(c.fd), ptr, len)
            .build()
            .user_data(ud(K_RECV, slot, c.generation));
        self.submit(slot, e);
    }

    fn on_recv(&mut self, slot: u32, res: i32) {
        let c = &mut self.conns[slot as usize];
        if c.closing {
            self.maybe_release(slot);
            return;
        }
        if res <= 0 {
            debug!(
                core = self.id,
                "connection closed before a whole request head"
            );
            self.close(slot);
            return;
        }
        let State::Head { buf } = &mut c.state else {
            return;
        };
        // SAFETY: the kernel wrote `res` bytes into the spare capacity.
        unsafe { buf.set_len(buf.len() + res as usize) };
        match http::parse_request(buf) {
            Ok(None) if buf.len() >= http::MAX_HEAD => {
                let refusal = frontdoor::refusal(&http::HttpError::HeadTooLarge, self.id);
                self.admitted(slot, refusal);
            }
            Ok(None) => self.recv_head(slot),
            Err(e) => self.admitted(slot, frontdoor::refusal(&e, self.id)),
            Ok(Some(req)) => {
                let State::Head { buf } =
                    std::mem::replace(&mut self.conns[slot as usize].state, State::Free)
                else {
                    unreachable!("checked above")
                };
                let leftover = buf
                    .get(req.head_len.min(buf.len())..)
                    .unwrap_or(&[])
                    .to_vec();
                self.route(slot, req, leftover);
            }
        }
    }

    fn reply(&mut self, slot: u32, out: Vec<u8>, then: Option<Box<Ingest>>) {
        self.conns[slot as usize].state = State::Reply { out, sent: 0, then };
        self.send_reply(slot);
    }

    fn send_reply(&mut self, slot: u32) {
        let c = &mut self.conns[slot as usize];
        let State::Reply { out, sent, .. } = &c.state else {
            return;
        };
        let ptr = out[*sent..].as_ptr();
        let len = (out.len() - *sent) as u32;
        let e = opcode::Send::new(types::Fd(c.fd), ptr, len)
            .flags(libc::MSG_NOSIGNAL)
            .build()
            .user_data(ud(K_SEND, slot, c.generation));
        self.submit(slot, e);
    }

    /// Admits a parsed request at the front door.
    fn route(&mut self, slot: u32, req: Request, leftover: Vec<u8>) {
        let shared = self.shared;
        let fd = self.conns[slot as usize].fd;
        let door = FrontDoor {
            streams: &shared.streams,
            creds: shared.creds.as_ref(),
            tokens: shared.tokens.as_ref(),
            admission: &shared.admission,
            core: self.id,
        };
        let admission = door.admit(req, leftover, || peer_is_loopback(fd));
        self.admitted(slot, admission);
    }

    /// Carries out what the front door decided.
    fn admitted(&mut self, slot: u32, admission: Admission) {
        match admission {
            Admission::Refuse { why, reply } => {
                self.m().reject(why);
                self.reply(slot, reply, None);
            }
            Admission::Head { reply } | Admission::Redirect { reply } => {
                self.reply(slot, reply, None)
            }
            Admission::Source {
                ingest,
                reply,
                resumed,
            } => {
                if !resumed {
                    let stream = ingest.stream();
                    self.shared.event(LocalEvent::SourceStarted {
                        stream: stream.name.clone(),
                        content_type: stream.content_type(),
                    });
                }
                self.m().sources.fetch_add(1, Ordering::Relaxed);
                self.sources.push(slot);
                self.reply(slot, reply, Some(ingest));
            }
            Admission::Viewer { stream, van, child } => {
                // Told here, once, whichever core serves it.
                self.shared.event(joined(&stream.name, child));
                self.place_viewer(slot, stream, van, child)
            }
            Admission::Wait {
                stream,
                van,
                child,
                activated,
            } => {
                // [0054] its arrival is the standby's first sink: the agent orders the pull
                // (at once, or when the activation arrives: the agent counted the sink).
                self.shared.event(joined(&stream, child));
                let now = self.shared.now_us();
                let c = &mut self.conns[slot as usize];
                c.state = State::Waiting(Box::new(Waiting {
                    stream,
                    van,
                    child,
                    until_us: now + STANDBY_WAIT_US,
                    activation_until_us: if activated {
                        0
                    } else {
                        now + ACTIVATION_WAIT_US
                    },
                }));
                self.waiting.push((slot, c.generation));
            }
        }
    }

    /// The core a new viewer is served on.
    fn viewer_core(&self) -> usize {
        let shared = self.shared;
        if shared.cfg.placement == Placement::Reuseport {
            return self.id;
        }
        frontdoor::least_loaded(
            self.id,
            shared.placed.len(),
            |c| shared.placed[c].load(Ordering::Relaxed),
            // A core whose ring is gone (stopped) takes no one.
            |c| shared.ring_fds[c].load(Ordering::Acquire) >= 0,
        )
    }

    /// Serves a viewer here or hands it to the least-loaded core. A connection is moved at most
    /// once, before its first byte of response, and then lives on that core.
    fn place_viewer(
        &mut self,
        slot: u32,
        s: Arc<Stream>,
        van: Option<Option<u64>>,
        child: Option<u32>,
    ) {
        let target = self.viewer_core();
        self.shared.placed[target].fetch_add(1, Ordering::Relaxed);
        if target == self.id {
            return self.start_viewer(slot, s, van, child);
        }
        let c = &mut self.conns[slot as usize];
        debug_assert_eq!(c.ops, 0, "a parsed request has no operation in flight");
        let fd = std::mem::replace(&mut c.fd, -1);
        c.state = State::Free;
        self.free.push(slot);
        self.m().connections.fetch_sub(1, Ordering::Relaxed);
        self.m().add(&self.m().viewers_handed_off, 1);
        self.shared.handoffs[target].push(Handoff {
            fd,
            stream: s,
            van,
            child,
        });
        let ring = self.shared.ring_fds[target].load(Ordering::Acquire);
        // Generation 0: the message the target receives; 1: our own completion, posted only
        // if the message could not be delivered.
        let e = opcode::MsgRingData::new(types::Fd(ring), 0, ud(K_HANDOFF, target as u32, 0), None)
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(ud(K_HANDOFF, target as u32, 1));
        self.push(e);
    }

    /// Starts the viewers other cores handed to this one; or, when this core's own message to
    /// `target` could not be delivered (its ring is gone: shutdown), ends what is queued there.
    fn on_handoff(&mut self, target: usize, undelivered: bool) {
        if undelivered {
            while let Some(h) = self.shared.handoffs[target].pop() {
                self.shared.placed[target].fetch_sub(1, Ordering::Relaxed);
                self.end_handoff(h);
            }
            return;
        }
        while let Some(h) = self.shared.handoffs[self.id].pop() {
            if self.stopping.is_some() {
                self.shared.placed[self.id].fetch_sub(1, Ordering::Relaxed);
                self.end_handoff(h);
                continue;
            }
            self.m().connections.fetch_add(1, Ordering::Relaxed);
            let slot = self.alloc_conn(h.fd, State::Free);
            self.start_viewer(slot, h.stream, h.van, h.child);
        }
    }

    /// A handed-over viewer that no core will serve (shutdown): it gets a 503 and is closed.
    fn end_handoff(&mut self, h: Handoff) {
        self.shared.event(left(&h.stream.name, h.child));
        turn_away(h.fd);
        self.shared.connections.fetch_sub(1, Ordering::AcqRel);
    }

    fn start_viewer(
        &mut self,
        slot: u32,
        s: Arc<Stream>,
        from: Option<Option<u64>>,
        child: Option<u32>,
    ) {
        let core = self.id;
        let van = from.is_some();
        let sub_index = self.fanout.join(&s, slot);
        let (cur, pin, gap) = sendplan::start(&s, core, from, self.shared.cfg.burst_bytes);
        let prefix = frontdoor::viewer_prefix(&s, van, gap);
        let c = &self.conns[slot as usize];
        let fd = c.fd;
        let generation = c.generation;
        let zc = !van && self.shared.cfg.zerocopy != ZeroCopy::Off;
        debug!(core, stream = %s.name, van, start = cur.seq, gap = ?gap, "viewer joined");
        if van {
            s.van_viewers.fetch_add(1, Ordering::Relaxed);
            self.m().van_viewers.fetch_add(1, Ordering::Relaxed);
        } else {
            s.viewers.fetch_add(1, Ordering::Relaxed);
            self.m().viewers.fetch_add(1, Ordering::Relaxed);
        }
        let msg = van.then(|| {
            Box::new(VanMsg {
                iov: [libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0,
                }; 2 * VAN_BATCH],
                // SAFETY: msghdr is plain old data; all-zero is its empty value.
                msg: unsafe { std::mem::zeroed() },
            })
        });
        self.conns[slot as usize].state = State::Viewer(Box::new(Viewer {
            stream: s,
            plan: SendPlan::new(van, cur, pin, prefix),
            van: msg,
            zc,
            sub_index,
            child,
        }));
        // Hang-up detection without a receive buffer.
        self.conns[slot as usize].poll_armed = true;
        let mask = (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) as u32;
        let e = opcode::PollAdd::new(types::Fd(fd), mask)
            .multi(true)
            .build()
            .user_data(ud(K_POLL, slot, generation));
        self.submit(slot, e);
        self.try_send(slot);
    }

    fn on_poll(&mut self, slot: u32, res: i32, flags: u32) {
        let c = &mut self.conns[slot as usize];
        if !cqueue::more(flags) {
            c.poll_armed = false;
        }
        if c.closing {
            self.maybe_release(slot);
            return;
        }
        if res == -libc::ECANCELED {
            return;
        }
        if viewer_gone(res) {
            debug!(core = self.id, "viewer hung up");
            self.close(slot);
        } else {
            // A viewer that only shut its sending side (`nc -N`) still reads: it keeps
            // receiving (issue 8, defect 8); a send error or a reset ends it.
            debug!(
                core = self.id,
                "viewer half-closed its side: still sending to it"
            );
        }
    }

    // ---- ingest -------------------------------------------------------------------------

    fn source_mut(&mut self, slot: u32) -> Option<&mut Ingest> {
        match &mut self.conns[slot as usize].state {
            State::Source(src) => Some(src),
            _ => None,
        }
    }

    /// Queues the next read of a source into its block's free tail; body bytes that came with
    /// the head are published first.
    fn source_read(&mut self, slot: u32) {
        let shared = self.shared;
        loop {
            let c = &mut self.conns[slot as usize];
            let (fd, generation) = (c.fd, c.generation);
            let State::Source(src) = &mut c.state else {
                return;
            };
            match src.next_read(&shared.pool) {
                NextRead::Ended => return self.close(slot),
                NextRead::Buffered(n) => {
                    if !self.ingest(slot, n) {
                        return;
                    }
                }
                NextRead::Paused { first } => {
                    if first {
                        warn!(core = self.id, stream = %src.stream().name, "block pool exhausted: ingest paused until blocks are freed");
                    }
                    self.m().add(&self.m().ingest_paused, 1);
                    return;
                }
                NextRead::AwaitBytes => {
                    let e = opcode::PollAdd::new(types::Fd(fd), libc::POLLIN as u32)
                        .build()
                        .user_data(ud(K_READABLE, slot, generation));
                    return self.submit(slot, e);
                }
                NextRead::Read { block, offset, len } => {
                    // SAFETY: in bounds of the block (offset + len <= block size).
                    let ptr = unsafe { shared.pool.block_ptr(block).add(offset) };
                    let e = opcode::ReadFixed::new(types::Fd(fd), ptr, len as u32, block as u16)
                        .offset(u64::MAX)
                        .build()
                        .user_data(ud(K_READ, slot, generation));
                    return self.submit(slot, e);
                }
            }
        }
    }

    /// The source's socket is readable: take a block and read.
    fn on_readable(&mut self, slot: u32, res: i32) {
        let c = &mut self.conns[slot as usize];
        if c.closing {
            self.maybe_release(slot);
            return;
        }
        if res < 0 {
            if let Some(src) = self.source_mut(slot) {
                let name = src.stream().name.clone();
                info!(core = self.id, stream = %name, "source poll failed: {}", io::Error::from_raw_os_error(-res));
            }
            self.close(slot);
            return;
        }
        if let Some(src) = self.source_mut(slot) {
            src.bytes_arrived();
            self.source_read(slot);
        }
    }

    fn on_read(&mut self, slot: u32, res: i32) {
        let c = &mut self.conns[slot as usize];
        if c.closing {
            self.maybe_release(slot);
            return;
        }
        if res <= 0 {
            let core = self.id;
            if let Some(src) = self.source_mut(slot) {
                let name = &src.stream().name;
                if res < 0 {
                    info!(core, stream = %name, "source read failed: {}", io::Error::from_raw_os_error(-res));
                } else {
                    info!(core, stream = %name, "source closed its connection");
                }
            }
            self.close(slot);
            return;
        }
        if self.ingest(slot, res as usize) {
            self.source_read(slot);
        }
    }

    /// Hands the `n` bytes just placed at the source's tail to its [`Ingest`], counts what it
    /// published and wakes the cores that have subscribers. Returns false if the connection was
    /// closed.
    fn ingest(&mut self, slot: u32, n: usize) -> bool {
        let shared = self.shared;
        let core = self.id;
        let State::Source(src) = &mut self.conns[slot as usize].state else {
            return false;
        };
        let fed = match src.feed(&shared.pool, n, wall_us()) {
            Ok(fed) => fed,
            Err(e) => {
                warn!(core, stream = %src.stream().name, "source sent bad chunked framing: {e}");
                self.close(slot);
                return false;
            }
        };
        let metrics = &shared.metrics[core];
        metrics.add(&metrics.bytes_in, fed.received as u64);
        if fed.sniffed_ts {
            info!(core, stream = %src.stream().name, "MPEG-TS detected from sync bytes: serving it as video/mp2t");
        }
        if fed.payload == 0 {
            return true;
        }
        metrics.add(&metrics.frames_published, fed.frames);
        if fed.new_block {
            metrics.add(&metrics.blocks_published, 1);
        }
        let stream = src.stream().clone();
        self.notify(&stream);
        true
    }

    /// Tells every core with subscribers of `stream` that frames were published.
    fn notify(&mut self, stream: &Arc<Stream>) {
        let mut others = self.fanout.published(stream);
        while others != 0 {
            let c = others.trailing_zeros() as usize;
            others &= others - 1;
            self.wake(c);
        }
    }

    fn wake(&mut self, core: usize) {
        if self.shared.wake_pending[core].swap(true, Ordering::SeqCst) {
            return;
        }
        let fd = self.shared.ring_fds[core].load(Ordering::Acquire);
        if fd < 0 {
            return;
        }
        let e = opcode::MsgRingData::new(types::Fd(fd), self.id as i32, ud(K_WAKE, 0, 0), None)
            .build()
            .flags(squeue::Flags::SKIP_SUCCESS)
            .user_data(ud(K_IGNORE, 0, 0));
        self.push(e);
    }

    // ---- fan-out --------------------------------------------------------------------------

    fn flush_dirty(&mut self) {
        self.fanout.begin_pass();
        while let Some(id) = self.fanout.next_dirty() {
            self.pump(id);
        }
    }

    /// Queues one send per idle local subscriber of the stream, then republishes this core's
    /// reclamation mark.
    fn pump(&mut self, stream_id: u64) {
        let Some(subs) = self.fanout.take(stream_id) else {
            return;
        };
        let mut mark = CoreMark::none();
        for &slot in &subs {
            let c = &self.conns[slot as usize];
            let idle = !c.closing && matches!(&c.state, State::Viewer(v) if v.plan.is_idle());
            if idle {
                self.try_send(slot);
            }
            if let State::Viewer(v) = &self.conns[slot as usize].state {
                mark.include(v.plan.pin());
            }
        }
        self.fanout.restore(stream_id, subs, mark);
    }

    /// Publishes this core's reclamation mark for the stream again (a subscriber left).
    fn republish_mark(&mut self, stream_id: u64) {
        let Some((_, subs)) = self.fanout.subscribers(stream_id) else {
            return;
        };
        let mut mark = CoreMark::none();
        for &slot in subs {
            if let State::Viewer(v) = &self.conns[slot as usize].state {
                mark.include(v.plan.pin());
            }
        }
        self.fanout.publish_mark(stream_id, mark);
    }

    /// Starts the next send of an idle viewer, if there is anything to send.
    fn try_send(&mut self, slot: u32) {
        let shared = self.shared;
        let core = self.id;
        let pace = Pace {
            cfg: &shared.cfg,
            viewers: shared.placed[core].load(Ordering::Relaxed),
            now_us: shared.now_us(),
        };
        let c = &mut self.conns[slot as usize];
        if c.closing {
            return;
        }
        let fd = c.fd;
        let generation = c.generation;
        let State::Viewer(v) = &mut c.state else {
            return;
        };
        if !v.plan.is_idle() {
            return;
        }
        let m = &shared.metrics[core];
        let e = match v
            .plan
            .next(&v.stream, pace, shared.pool.block_size() as u32)
        {
            Next::Prefix(bytes) => {
                opcode::Send::new(types::Fd(fd), bytes.as_ptr(), bytes.len() as u32)
                    .flags(libc::MSG_NOSIGNAL)
                    .build()
            }
            Next::Van { batch, .. } => {
                let vm = v.van.as_deref_mut().expect("a VAN viewer has its msghdr");
                for (i, p) in batch.pieces.iter().enumerate() {
                    vm.iov[i] = match *p {
                        VanPiece::Header { index, skip } => libc::iovec {
                            // sendmsg only reads what the iovecs point at.
                            iov_base: batch.headers[index][skip as usize..]
                                .as_ptr()
                                .cast_mut()
                                .cast(),
                            iov_len: HEADER_LEN - skip as usize,
                        },
                        VanPiece::Payload { block, offset, len } => libc::iovec {
                            // SAFETY: inside the block; the block is pinned by the send in flight.
                            iov_base: unsafe { shared.pool.block_ptr(block).add(offset as usize) }
                                .cast(),
                            iov_len: len as usize,
                        },
                    };
                }
                vm.msg.msg_iov = vm.iov.as_mut_ptr();
                vm.msg.msg_iovlen = batch.pieces.len() as _;
                m.add(&m.sends_plain, 1);
                opcode::SendMsg::new(types::Fd(fd), &vm.msg)
                    .flags(libc::MSG_NOSIGNAL as u32)
                    .build()
            }
            Next::Plain(r) => {
                // SAFETY: the range lies inside the block, which the send in flight pins.
                let ptr = unsafe { shared.pool.block_ptr(r.block).add(r.offset as usize) };
                if v.zc && r.len >= shared.cfg.zerocopy_min {
                    m.add(&m.sends_zc, 1);
                    let zc_flags = if shared.cfg.zerocopy == ZeroCopy::Auto {
                        SEND_ZC_REPORT_USAGE
                    } else {
                        0
                    };
                    opcode::SendZc::new(types::Fd(fd), ptr, r.len)
                        .buf_index(Some(r.block as u16))
                        .flags(libc::MSG_NOSIGNAL)
                        .zc_flags(zc_flags)
                        .build()
                } else {
                    m.add(&m.sends_plain, 1);
                    // IORING_OP_SEND rather than WriteFixed: after a short write, a write is finished
                    // by a blocking io-wq worker that AsyncCancel cannot stop, so a stalled viewer
                    // could never be skipped; a send waits by poll and stays cancellable. A copying
                    // send gains nothing from a registered buffer (the pages are not pinned).
                    opcode::Send::new(types::Fd(fd), ptr, r.len)
                        .flags(libc::MSG_NOSIGNAL)
                        .build()
                }
            }
            Next::HoldBack { due } => {
                let id = v.stream.id;
                return self.hold_back(id, due, pace.now_us);
            }
            Next::Idle => return,
            Next::End { seq } => {
                v.plan.send_end(seq, wall_us(), b"stream ended");
                return self.try_send(slot);
            }
            Next::Close => return self.close(slot),
            Next::SkipToLive => return self.skip_to_live(slot),
            Next::Disconnect => return self.drop_van(slot, "fell out of the window"),
        };
        self.submit(slot, e.user_data(ud(K_SEND, slot, generation)));
    }

    /// A viewer of `stream_id` holds back a small send until `due`: the stream is pumped
    /// again when the core's coalescing timer fires (one timer; a viewer not due by then
    /// re-arms it).
    fn hold_back(&mut self, stream_id: u64, due: u64, now: u64) {
        self.fanout.hold_back(stream_id);
        if self.coalesce_armed {
            return;
        }
        self.coalesce_armed = true;
        let wait_ns = (due.saturating_sub(now).max(50) * 1000) as u32;
        *self.coalesce_timespec = types::Timespec::new().nsec(wait_ns);
        self.push(
            opcode::Timeout::new(&*self.coalesce_timespec as *const _)
                .build()
                .user_data(ud(K_COALESCE, 0, 0)),
        );
    }

    fn skip_to_live(&mut self, slot: u32) {
        let core = self.id;
        let burst = self.shared.cfg.burst_bytes;
        let State::Viewer(v) = &mut self.conns[slot as usize].state else {
            return;
        };
        let to = v.plan.skip_to_live(&v.stream, core, burst);
        debug!(core, stream = %v.stream.name, to, "lagging viewer skipped to the live edge");
        self.m().add(&self.m().viewers_skipped, 1);
        self.try_send(slot);
    }

    fn drop_van(&mut self, slot: u32, why: &str) {
        let core = self.id;
        let State::Viewer(v) = &mut self.conns[slot as usize].state else {
            return;
        };
        let at = v.plan.cursor().seq;
        info!(core, stream = %v.stream.name, at, "VAN viewer disconnected: {why}");
        let m = &self.shared.metrics[core];
        m.add(&m.viewers_dropped, 1);
        if v.plan.is_idle() {
            v.plan.send_end(at, wall_us(), b"lagged out of the window");
            self.try_send(slot);
        } else {
            // Its socket is stuck: nothing more can be written to it.
            self.close(slot);
        }
    }

    fn on_send(&mut self, slot: u32, res: i32, flags: u32) {
        let core = self.id;
        let zc_mode = self.shared.cfg.zerocopy;
        let c = &mut self.conns[slot as usize];
        // Reply (error answers, source 100/200).
        if let State::Reply { out, sent, then } = &mut c.state {
            if c.closing {
                return self.maybe_release(slot);
            }
            if res <= 0 {
                return self.close(slot);
            }
            *sent += res as usize;
            if *sent < out.len() {
                return self.send_reply(slot);
            }
            match then.take() {
                Some(sc) => {
                    c.state = State::Source(sc);
                    self.source_read(slot);
                }
                None => self.close(slot),
            }
            return;
        }
        let State::Viewer(v) = &mut c.state else {
            return self.maybe_release(slot);
        };
        let res = if cqueue::notif(flags) {
            // send_zc notification: the buffer is free now.
            if res & NOTIF_USAGE_ZC_COPIED != 0 && zc_mode == ZeroCopy::Auto && v.zc {
                v.zc = false;
                let m = &self.shared.metrics[core];
                m.add(&m.zc_fallbacks, 1);
                debug!(
                    core,
                    "kernel copied a send_zc: this socket uses plain send from now on"
                );
            }
            v.plan.zc_result().unwrap_or(-libc::EIO)
        } else if cqueue::more(flags) {
            // send_zc result; the notification follows.
            return v.plan.zc_sent(res);
        } else {
            res
        };
        // The send's final completion ends it, on every path, closing or not.
        let after = v.plan.complete(res, &v.stream.window);
        if c.closing {
            return self.maybe_release(slot);
        }
        if res >= 0 {
            let m = &self.shared.metrics[core];
            m.add(&m.bytes_out, res as u64);
        }
        match after {
            AfterSend::Next => self.try_send(slot),
            AfterSend::Close => {
                if res < 0 {
                    debug!(
                        core,
                        "viewer send failed: {}",
                        io::Error::from_raw_os_error(-res)
                    );
                }
                self.close(slot)
            }
            AfterSend::SkipToLive => self.skip_to_live(slot),
            AfterSend::Disconnect => self.drop_van(slot, "fell out of the window"),
        }
    }

    // ---- closing --------------------------------------------------------------------------

    /// Starts closing: shutdown makes in-flight operations finish; the slot is released when
    /// none is left.
    fn close(&mut self, slot: u32) {
        let c = &mut self.conns[slot as usize];
        if c.closing || matches!(c.state, State::Free) {
            return;
        }
        c.closing = true;
        // SAFETY: fd is this connection's open socket.
        unsafe { libc::shutdown(c.fd, libc::SHUT_RDWR) };
        // A parent connection still connecting: its connect may not end by the shutdown.
        if matches!(&c.state, State::Parent(p) if p.is_connecting()) {
            let target = ud(K_PCONNECT, slot, c.generation);
            self.push(
                opcode::AsyncCancel::new(target)
                    .build()
                    .user_data(ud(K_IGNORE, 0, 0)),
            );
        }
        let c = &mut self.conns[slot as usize];
        if c.poll_armed {
            let target = ud(K_POLL, slot, c.generation);
            self.push(
                opcode::AsyncCancel::new(target)
                    .build()
                    .user_data(ud(K_IGNORE, 0, 0)),
            );
        }
        self.maybe_release(slot);
    }

    fn maybe_release(&mut self, slot: u32) {
        let c = &self.conns[slot as usize];
        if c.closing && c.ops == 0 && !matches!(c.state, State::Free) {
            self.releases.push(slot);
        }
    }

    fn drain_releases(&mut self) {
        while let Some(slot) = self.releases.pop() {
            self.release(slot);
        }
    }

    fn release(&mut self, slot: u32) {
        let c = &mut self.conns[slot as usize];
        if matches!(c.state, State::Free) || c.ops != 0 {
            return;
        }
        let state = std::mem::replace(&mut c.state, State::Free);
        // SAFETY: no operation refers to this fd any more (ops == 0).
        unsafe { libc::close(c.fd) };
        c.fd = -1;
        self.free.push(slot);
        self.shared.connections.fetch_sub(1, Ordering::AcqRel);
        self.m().connections.fetch_sub(1, Ordering::Relaxed);
        match state {
            State::Viewer(v) => self.remove_viewer(&v),
            State::Source(sc) => self.source_left(slot, sc),
            State::Reply { then: Some(sc), .. } => self.source_left(slot, sc),
            State::Parent(p) => self.parent_closed(slot, p),
            State::Waiting(w) => self.shared.event(left(&w.stream, w.child)),
            _ => {}
        }
    }

    /// Viewers of standbys: served once their stream flows, answered `503` at their deadline
    /// (or at shutdown).
    fn check_waiting(&mut self, now: u64) {
        let mut i = 0;
        while i < self.waiting.len() {
            let (slot, generation) = self.waiting[i];
            let c = &mut self.conns[slot as usize];
            let State::Waiting(w) = &c.state else {
                self.waiting.swap_remove(i);
                continue;
            };
            if c.generation != generation || c.closing {
                self.waiting.swap_remove(i);
                continue;
            }
            let flowing = self.shared.streams.lookup(&w.stream);
            // Deactivated meanwhile, or never activated: it will not start here.
            let activated = self.shared.admission.is_activated(&w.stream);
            let late = now >= w.until_us
                || self.stopping.is_some()
                || (!activated && now >= w.activation_until_us);
            if flowing.is_none() && !late {
                i += 1;
                continue;
            }
            self.waiting.swap_remove(i);
            let State::Waiting(w) = std::mem::replace(&mut c.state, State::Free) else {
                unreachable!("matched above")
            };
            match flowing {
                Some(s) => self.place_viewer(slot, s, w.van, w.child),
                None if !activated && w.activation_until_us > 0 => {
                    info!(core = self.id, stream = %w.stream, "viewer refused: no such stream, and no activation came (404)");
                    self.shared.event(left(&w.stream, w.child));
                    self.m().reject(Reject::NotFound);
                    self.reply(slot, http::error_response(404, "Not Found", &[]), None);
                }
                None => {
                    info!(core = self.id, stream = %w.stream, "viewer refused: the stream did not start here in time (503)");
                    self.shared.event(left(&w.stream, w.child));
                    self.m().reject(Reject::Other);
                    let reply = http::error_response_because(
                        503,
                        "Service Unavailable",
                        "the stream did not start at this proxy in time; try again",
                    );
                    self.reply(slot, reply, None);
                }
            }
        }
    }

    fn remove_viewer(&mut self, v: &Viewer) {
        self.shared.placed[self.id].fetch_sub(1, Ordering::Relaxed);
        debug_assert!(v.plan.is_idle(), "released with a send in flight");
        if v.plan.is_van() {
            v.stream.van_viewers.fetch_sub(1, Ordering::Relaxed);
            self.m().van_viewers.fetch_sub(1, Ordering::Relaxed);
        } else {
            v.stream.viewers.fetch_sub(1, Ordering::Relaxed);
            self.m().viewers.fetch_sub(1, Ordering::Relaxed);
        }
        self.shared.event(left(&v.stream.name, v.child));
        let id = v.stream.id;
        if let Left::Remaining { moved } = self.fanout.leave(id, v.sub_index) {
            if let Some(moved) = moved
                && let State::Viewer(mv) = &mut self.conns[moved as usize].state
            {
                mv.sub_index = v.sub_index;
            }
            self.republish_mark(id);
        }
    }

    fn source_left(&mut self, slot: u32, src: Box<Ingest>) {
        self.sources.retain(|&s| s != slot);
        self.m().sources.fetch_sub(1, Ordering::Relaxed);
        let (stream, writer) = src.into_parts();
        if self.stopping.is_some() || stream.is_ended() {
            self.shared.streams.end_live(&stream);
            self.shared.event(LocalEvent::SourceEnded {
                stream: stream.name.clone(),
            });
            self.notify(&stream);
            self.draining.push((stream, writer));
            return;
        }
        let deadline = self.shared.now_us() + self.shared.cfg.grace_us;
        info!(core = self.id, stream = %stream.name, grace_s = self.shared.cfg.grace_us as f64 / 1e6, "source left: stream in grace");
        self.shared.streams.detach_source(&stream, writer, deadline);
        self.grace.push(stream);
    }

    // ---- timers ---------------------------------------------------------------------------

    fn on_tick(&mut self) {
        let now = self.shared.now_us();
        let wall = wall_us();
        if !self.accept_armed && self.stopping.is_none() {
            self.arm_accept();
        }
        // Header timeout (slowloris).
        while let Some(&(deadline, slot, generation)) = self.head_deadlines.front() {
            if deadline > now {
                break;
            }
            self.head_deadlines.pop_front();
            let c = &self.conns[slot as usize];
            if c.generation == generation && matches!(c.state, State::Head { .. }) && !c.closing {
                info!(
                    core = self.id,
                    "connection closed: no whole request head within --header-timeout"
                );
                self.m().reject(Reject::HeaderTimeout);
                self.close(slot);
            }
        }
        // Window ageing and reclamation for the streams this core ingests; paused ingest
        // retries; a silent source is closed (`--source-timeout`).
        let shared = self.shared;
        for i in 0..self.sources.len() {
            let slot = self.sources[i];
            let c = &mut self.conns[slot as usize];
            if let State::Source(src) = &mut c.state {
                src.trim(&shared.pool, wall);
                if c.closing {
                    continue;
                }
                if src.silent_too_long(wall, shared.cfg.source_timeout_us) {
                    info!(core = self.id, stream = %src.stream().name, timeout_s = shared.cfg.source_timeout_us as f64 / 1e6, "source sent nothing for --source-timeout: closed");
                    self.close(slot);
                } else if src.retry_due() {
                    self.source_read(slot);
                }
            }
        }
        // Pulled streams: window ageing, reconnections due, connections that hang.
        self.tick_pulls(now, wall);
        self.take_orders();
        self.check_waiting(now);
        // Grace periods.
        let mut i = 0;
        while i < self.grace.len() {
            let s = self.grace[i].clone();
            match s.state() {
                crate::stream::StreamState::Grace => {
                    if let Some(w) = shared.streams.expire(&s, now) {
                        info!(core = self.id, stream = %s.name, "grace period over: stream ended");
                        if s.feed == Feed::Source {
                            shared.event(LocalEvent::SourceEnded {
                                stream: s.name.clone(),
                            });
                        }
                        self.grace.swap_remove(i);
                        self.notify(&s);
                        self.draining.push((s, w));
                        continue;
                    }
                    i += 1;
                }
                _ => {
                    self.grace.swap_remove(i);
                }
            }
        }
        // Ended streams give their blocks back once no core has a subscriber left.
        self.draining.retain_mut(|(s, w)| {
            !(s.subscribed_cores.load(Ordering::SeqCst) == 0
                && w.release_all(&s.window, &shared.pool))
        });
        // Lag policy for sends pending too long, then a safety-net pump of every stream.
        let timeout = self.shared.cfg.send_timeout_us;
        for id in self.fanout.stream_ids() {
            let Some((stream, subs)) = self.fanout.subscribers(id) else {
                continue;
            };
            let first = stream.window.first_seq();
            // A copy: the lag policy may close connections (their release waits for the
            // end of the batch, so the list itself does not change meanwhile).
            let subs = subs.to_vec();
            for slot in subs {
                self.check_lag(slot, first, now, timeout);
            }
        }
        self.fanout.all_dirty();
        if self.shared.shutdown.load(Ordering::Acquire) {
            self.begin_stop(now);
        }
        if let Some(deadline) = self.stopping
            && now > deadline
        {
            for slot in 0..self.conns.len() as u32 {
                self.close(slot);
            }
        }
    }

    fn check_lag(&mut self, slot: u32, first: u64, now: u64, timeout: u64) {
        let c = &self.conns[slot as usize];
        if c.closing {
            return;
        }
        let stopping = self.stopping.is_some();
        let generation = c.generation;
        let State::Viewer(v) = &mut self.conns[slot as usize].state else {
            return;
        };
        let stream = &v.stream;
        match v
            .plan
            .stalled(first, now, timeout, self.shared.cfg.window_us, || {
                !stream.is_ended() && !stopping
            }) {
            Stall::Keep => {}
            Stall::Drop => {
                info!(core = self.id, stream = %v.stream.name, "stalled viewer dropped: its zero-copy send cannot be taken back");
                let m = &self.shared.metrics[self.id];
                m.add(&m.viewers_dropped, 1);
                self.close(slot);
            }
            Stall::Cancel => {
                // Cancel the stuck send; the completion then moves the viewer to the live edge.
                debug!(core = self.id, stream = %v.stream.name, at = v.plan.cursor().seq, "send pending too long: cancelling it to skip the viewer");
                self.push(
                    opcode::AsyncCancel::new(ud(K_SEND, slot, generation))
                        .build()
                        .user_data(ud(K_IGNORE, 0, 0)),
                );
            }
            Stall::Close => self.close(slot),
            Stall::GiveUp => {
                info!(core = self.id, stream = %v.stream.name, "viewer took nothing for --window-seconds: disconnected");
                let m = &self.shared.metrics[self.id];
                m.add(&m.viewers_dropped, 1);
                self.close(slot);
            }
            Stall::Disconnect => self.drop_van(slot, "send pending too long"),
        }
    }

    fn begin_stop(&mut self, now: u64) {
        if self.stopping.is_some() {
            return;
        }
        self.stopping = Some(now + STOP_GRACE_US);
        info!(
            core = self.id,
            "stopping: no new connections, ending every viewer's response"
        );
        if self.accept_armed {
            self.push(
                opcode::AsyncCancel::new(ud(K_ACCEPT, 0, 0))
                    .build()
                    .user_data(ud(K_IGNORE, 0, 0)),
            );
        }
        if self.id == 0 {
            for (s, w) in self.shared.streams.end_all() {
                self.draining.push((s, w));
            }
        }
        for slot in self.sources.clone() {
            if let State::Source(src) = &self.conns[slot as usize].state {
                self.shared.streams.end_live(&src.stream().clone());
            }
            self.close(slot);
        }
        self.stop_pulls();
        for slot in 0..self.conns.len() as u32 {
            if matches!(
                self.conns[slot as usize].state,
                State::Head { .. } | State::Reply { .. }
            ) {
                self.close(slot);
            }
        }
        for core in 0..self.shared.metrics.len() {
            if core != self.id {
                self.wake(core);
            }
        }
        self.fanout.all_dirty();
    }
}

/// Whether a hang-up poll's result (`res`, the events or `-errno`) means the viewer is gone: an
/// error, a full hang-up, or a failed poll. `POLLRDHUP` alone is a half-close after the GET
/// (issue 8, defect 8): the viewer may still read, so it is no disconnect.
fn viewer_gone(res: i32) -> bool {
    res < 0 || res & (libc::POLLHUP | libc::POLLERR) as i32 != 0
}

/// Answers 503 on a connection no core will serve, and closes it. Best effort and
/// non-blocking: an overloaded or stopping relay spends nothing more on it.
fn turn_away(fd: RawFd) {
    let resp = frontdoor::unavailable();
    // SAFETY: the fd is ours alone; resp outlives the call.
    unsafe {
        libc::send(
            fd,
            resp.as_ptr().cast(),
            resp.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        );
        libc::close(fd);
    }
}

/// True if the peer of socket `fd` is on loopback (getpeername).
fn peer_is_loopback(fd: RawFd) -> bool {
    socket2::SockRef::from(&BorrowedFd(fd))
        .peer_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .is_some_and(|a: SocketAddr| match a {
            SocketAddr::V4(v4) => v4.ip().is_loopback(),
            SocketAddr::V6(v6) => {
                v6.ip().is_loopback() || v6.ip().to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
            }
        })
}

/// A borrowed fd for socket2's `SockRef` (getpeername on a raw accepted fd).
struct BorrowedFd(RawFd);

impl std::os::fd::AsFd for BorrowedFd {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        // SAFETY: the connection owns the fd and keeps it open while this borrow lives.
        unsafe { std::os::fd::BorrowedFd::borrow_raw(self.0) }
    }
}

/// The PNC link's orders go to the reactors.
impl crate::orders::OrderSink for Shared {
    fn send_order(&self, order: Order) {
        Shared::send_order(self, order);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defect8_a_half_close_is_not_a_hang_up() {
        assert!(!viewer_gone(libc::POLLRDHUP as i32));
        assert!(viewer_gone((libc::POLLRDHUP | libc::POLLHUP) as i32));
        assert!(viewer_gone((libc::POLLRDHUP | libc::POLLERR) as i32));
        assert!(viewer_gone(-libc::EBADF));
    }

    #[test]
    fn user_data_round_trips() {
        for (k, s, g) in [
            (K_SEND, 0xab_cdef, 7u32),
            (K_POLL, 0, u32::MAX),
            (K_ACCEPT, 1, 0),
        ] {
            assert_eq!(ud_parts(ud(k, s, g)), (k, s, g));
        }
    }
}
