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
//!   to and what their frames do to it.
//!
//! The reactor's own side of each of these is a submodule, an `impl Core` block with the
//! completions and syscalls of one job: `front_door` (accept, request heads, canned replies,
//! placing a viewer on its core), `sources` (ingest reads), `sends` (fan-out: waking cores and
//! the subscribers' sends), `waiting` (viewers parked until a standby's stream flows) and
//! `parents` (orders from the control thread and the connections to parent proxies). This file
//! keeps the ring, the loop, the slab, closing and the timers.
//!
//! Parent feeds, and the sources of fan-out cores that serve many viewers, are read by one more
//! reactor of the same code, the ingest thread: it has no listener and no viewer, so that no
//! fan-out turn (which grows with the viewers on a core) delays a read. A source moves between
//! a fan-out core and the ingest thread between two reads, as the load changes
//! ([`crate::frontdoor::source_reader`]; `--ingest-thread auto`, the default): a few viewers
//! are then served without waking a third thread per publish. `own` reads every source on the
//! ingest thread, `shared` every one on the fan-out cores.
//!
//! Hot path. Ingest reads straight into the stream's current pool block (`ReadFixed`) and
//! publishes each read as a frame (split at MPEG-TS keyframes). The ingest core then wakes every
//! core with local subscribers of that stream (`MsgRingData`, coalesced by a per-core
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

mod front_door;
mod parents;
mod sends;
mod sources;
mod waiting;

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
use crate::join_rate::{JoinRate, holds_sends};
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

/// Most operations one `io_uring_enter` submits. Sends to sockets run inline in the syscall
/// (about 10 µs each on loopback), and a kernel without full preemption (PREEMPT_NONE or
/// VOLUNTARY, most servers') switches to another thread only when this one returns to user
/// space: one enter of 5,000 sends held the CPU about 50 ms, and with it the ingest thread, the
/// clients and the other relays waiting for it. 128 sends is about 1–2 ms per enter.
const SUBMIT_SLICE: u32 = 128;
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
    /// How busy the host's CPUs are, looked at by cores in a flash crowd (their hold).
    pub host_busy: crate::host_cpu::SharedHostBusy,
    /// Where a pulled stream new here starts: the oldest sequence its parked viewers asked for.
    waited_for: waiting::OldestWaitedFor,
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
        max_connections: usize,
        creds: Option<SourceCredentials>,
        tokens: Option<VanTokens>,
    ) -> Self {
        let cores = cfg.reactors();
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
            host_busy: crate::host_cpu::SharedHostBusy::default(),
            waited_for: waiting::OldestWaitedFor::default(),
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

    /// The core that pulls `stream`: the ingest thread's, or else a fixed hash of its name
    /// (the same in every run).
    pub fn stream_core(&self, stream: &str) -> usize {
        use std::hash::{Hash, Hasher};
        if let Some(core) = self.cfg.ingest_core() {
            return core;
        }
        let mut h = std::hash::DefaultHasher::new();
        stream.hash(&mut h);
        (h.finish() % self.cfg.cores.max(1) as u64) as usize
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

/// A connection whose request one core parsed, for another core to serve. The socket is an
/// ordinary descriptor (the rings register no files), so its number is all that moves;
/// `MsgRingSendFd`, which moves registered descriptors, has nothing to carry here.
enum Handoff {
    /// A viewer, to the least-loaded fan-out core.
    Viewer {
        fd: RawFd,
        stream: Arc<Stream>,
        /// As in [`Admission::Viewer`].
        van: Option<Option<u64>>,
        child: Option<u32>,
    },
    /// A source, to the reactor that reads it ([`crate::frontdoor::source_reader`]), with the
    /// reply it is still to be sent: empty for a source that moves after its reply, between
    /// two reads.
    Source {
        fd: RawFd,
        ingest: Box<Ingest>,
        reply: Vec<u8>,
    },
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
    Waiting(Box<waiting::Waiting>),
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
    /// Viewers whose send was pending longer than the longest hold at the last tick: they take
    /// no share of the send budget (`sendplan::Pace::viewers`).
    stuck_viewers: usize,
    /// Viewers joining this core over the last second, and whether, as a flash crowd on a busy
    /// host, that made it hold small sends at the last tick (`sendplan::Pace::crowd`).
    joins: JoinRate,
    crowd: bool,
    cqes: Vec<(u64, i32, u32)>,
    /// Operations pushed since the last submission (see [`SUBMIT_SLICE`]).
    unsubmitted: u32,
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
            stuck_viewers: 0,
            joins: JoinRate::default(),
            crowd: false,
            cqes: Vec::with_capacity(4096),
            unsubmitted: 0,
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
                self.unsubmitted += 1;
                if self.unsubmitted >= SUBMIT_SLICE {
                    self.submit_now();
                }
                return;
            }
            self.submit_now();
        }
    }

    /// Submits what was pushed, without waiting for completions.
    fn submit_now(&mut self) {
        self.unsubmitted = 0;
        if let Err(err) = self.ring.submit() {
            warn!(core = self.id, "io_uring submit failed: {err}");
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
            self.unsubmitted = 0;
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
        // Lag policy for sends pending too long, then a safety-net pump of every stream. A send
        // pending longer than the longest hold (or a tick) marks a viewer that is not keeping
        // pace: it is left out of the send budget's share until it moves again.
        let timeout = self.shared.cfg.send_timeout_us;
        let stuck_after = self.shared.cfg.coalesce_us.max(u64::from(TICK_NS) / 1000);
        let mut stuck = 0;
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
                if let State::Viewer(v) = &self.conns[slot as usize].state
                    && v.plan.pending_longer_than(now, stuck_after)
                {
                    stuck += 1;
                }
            }
        }
        self.stuck_viewers = stuck;
        let placed = self.shared.placed[self.id].load(Ordering::Relaxed);
        let pacing = placed.saturating_sub(stuck);
        self.pace_crowd(placed);
        self.m()
            .pacing_viewers
            .store(pacing as i64, Ordering::Relaxed);
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
