//! The coordinator core: every PNC algorithm as a deterministic state machine.
//!
//! [`Coordinator::handle`] takes an [`Event`] and the current [`Time`] and returns the
//! [`Command`]s to carry out, decisions included ([`Command::Log`]). No sockets, threads or
//! clocks: the `pnc` service and the simulator drive the very same code. The same events at the
//! same times give the same commands: maps are ordered (`BTreeMap`), hash maps only serve
//! lookups by id and are never iterated.
//!
//! What the core keeps ([0031]): per source the overlay (regions, tiers, proxies per tier, from
//! [`tiering`]); per stream the active proxies with their phase ([0030]), load, parent links and
//! farms; per (proxy, stream) and per tier the smoothed login and logoff rates ([0064]).
//!
//! # Where each concept lives
//! One `Coordinator` whose `impl` is spread over files named for what they decide:
//! - `ids`: proxy and stream indices (newtypes), regions interned once;
//! - `state`: the records (proxies, streams, (proxy, stream) pairs, tiers) and the accounting
//!   over them: load, reservations, Max_s, room; `reservation`: viewers on their way to a
//!   proxy, counted against its room until its own count shows them;
//! - `overlay` (with [`tiering`]): a source's regions and tiers;
//! - `membership`: registration, messages, heartbeats and their timeouts;
//! - `streams`: a stream's start at its origin and its teardown; `rebuild`: the view rebuilt
//!   from re-registrations after a PNC restart;
//! - `tree`: parent and child links, moving children (make-before-break);
//! - `load`: LOGIN and LOGOFF and what a change of load sets off (DISTRIBUTE, joining, idling);
//! - `activation`: placement of a newly activated proxy and the choice of its parents;
//! - `distribute`: DISTRIBUTE, farm sizing and regrouping by MIN_s;
//! - `filling`: `Growth::PredictiveFill`, the default (served proxies fill up before they stop);
//! - `anticipation`: an event announced ahead ([0033]): its first ΔT of viewers made ready;
//! - `consolidate`: CONSOLIDATE;
//! - `failures`: LinkDowngrade, crashes, eviction of a subtree;
//! - `monitor`: the MonitorList of each proxy (the active proxies of the tier above, [0053]),
//!   sent again whenever that tier changes;
//! - `resolve`: viewer redirection, over `active_set` (a tier's active proxies in activation
//!   order, the ones that take a viewer indexed for the round-robin); `views`: the read-only
//!   views for the service;
//! - `output`: the messages and decisions the core emits; [`api`], [`config`], [`predict`]: the
//!   public types, the configuration and the rate predictors.
//!
//! Readings of the seed follow DESIGN.md "Reading the seed"; where the code chooses something
//! the seed leaves open, the comment says so. In short:
//! - load of a proxy for a stream = viewers + child proxies that joined it; a newly activated
//!   proxy is a standby that joins its parents on its first LOGIN ([0054]) and meanwhile only
//!   *reserves* a connection at them (parent choice counts reservations, DISTRIBUTE does not);
//! - viewers are sent to proxies of the deepest tier of their region that accept (expansion
//!   phase), round-robin ([0042]); upper tiers serve child proxies only;
//! - viewers sent to a proxy by `/resolve`, or moved there by CONSOLIDATE or LinkDowngrade, are
//!   reserved at it until its count shows them: its viewer LOGIN, or its first heartbeat
//!   `viewer_connect_ms` later (`reservation`).
//! - one decider per decision (`control/src/agent/DECIDERS.md`): a proxy whose Hello says
//!   `decides` (the agent) sends its own DISTRIBUTE and CONSOLIDATE and reports its rates in
//!   heartbeats; for it the core serves the requests, takes the reported rates (SysLinRate =
//!   their sum, MIN_s, sp checks) and predicts nothing itself. For a proxy that sends a LOGIN per
//!   viewer, the core triggers DISTRIBUTE itself when it sees it reach Max_s or predicts it
//!   within ΔT from its own predictors. A DISTRIBUTE for a proxy (or farm) already served is
//!   logged and ignored; one that can add nothing (a full overlay) changes no phase.
//! - phase orders carry the agent's hysteresis: a proxy goes back to expansion only with room
//!   beyond the margin at its predicted rates (`Config::hysteresis`); a CONSOLIDATE target that
//!   keeps the margin free is preferred to the most recent one that would be filled. MIN_s
//!   ([0061]) counts a member's room less the margin (DESIGN's formula has the whole room), so
//!   a regrouped member still has the margin free after ΔT at the SysLinRate/l it receives.
//! - the arrival rate of [0039] is taken only at a DISTRIBUTE from the farm last activated
//!   (its Number_of_Proxies_assigned filled in the time since); capacity the core adds on its
//!   own, or a DISTRIBUTE from another farm's proxy (regrouped), is sized by [0059]'s m alone.
//! - a standby that took no sink within sp of its activation, while another expansion proxy of
//!   its tier has room, goes idle ([0058]; a choice: the seed never retires an unused standby,
//!   and farms sized over sp can outgrow the crowd). The one a full tier waits on stays
//!   (figure 2(d)'s P22).
//! - `Growth::PredictiveFill` (the default; `Growth::Predictive` is [0030] as written, where a
//!   served proxy stops at once): a proxy whose DISTRIBUTE was served keeps taking viewers
//!   until it is full or its viewers leave faster than they arrive (`filling`), as [0058]
//!   reads (ΔT warns ahead so that users go to an *available* server), and `resolve` sends
//!   viewers to the proxies
//!   activated at least ΔT ago ([0058]: ΔT is the time to start one), else to the oldest farm
//!   with room, before any newer one. A filling proxy is no regroup candidate (its room is in
//!   use already).
//! - an announced event ([0033], `Event::Anticipate`): "the minimum number of proxies required
//!   at each tier to ensure coverage of all anticipated endusers" read as what the first ΔT of
//!   the announced arrivals needs in the bottom tier (with their parents above), as one farm;
//!   the predictive farms take over from its first DISTRIBUTE. Without a ramp, everyone.
//! - a re-registered upper-tier proxy is in the contraction phase iff it is full (its phase is
//!   not on the wire; it left expansion only by filling, [0035]).
//! - tiers are recomputed when proxies join or leave, at most once per Δt/10 window.
//! - a proxy is trusted for nothing it says about others (issue 7): a LOGIN of a child proxy
//!   must name one the PNC assigned there, every link goes exactly one tier down (so the tree
//!   has no cycle and every walk over it is bounded; the walks are iterative besides), and
//!   counts and rates are capped by what the proxy can hold. [`fuzzing`] drives arbitrary event
//!   sequences and [`Coordinator::audit`] checks the core's own invariants.
//!
//! # Driving it (the `pnc` service)
//! - On a new control connection, read the first frame; it must be `ProxyMsg::Hello`. Check it
//!   with [`crate::protocol::check_hello`]; on `Err(reason)` answer `PncMsg::Refused(reason)`,
//!   log and close. On `Ok`, feed `Event::Register(hello.into())`: the core answers
//!   `PncMsg::Welcome` through `Command::Send`.
//! - Every later frame: `Event::Message { from, msg }`. A closed connection:
//!   `Event::Disconnected`. `Event::Tick` at [`Coordinator::poll_timeout`] (or at least every
//!   [`Config::tick_micros`]) (heartbeat
//!   timeouts). `Event::Resolve` for `GET /resolve/{stream}` (and, if wanted, DNS queries that
//!   find no accepting proxy), answered by one `Command::Resolved` with the same `request`.
//!   `Event::Anticipate` for an operator's announcement of an event's audience
//!   (`POST /api/anticipate`, [0033]): its decisions (`Rule::Anticipate`) say what was made ready.
//! - Carry out `Command::Send` (drop it if the proxy is not connected), log `Command::Log`.
//!   After a `PncMsg::Refused` (a hello from an id `Config::proxies` does not list while
//!   `Config::open_registration` is off, or a message from a proxy the core declared crashed)
//!   close that proxy's connection: it registers again.
//! - Read-only views: [`Coordinator::topology`] (`/api/topology`), [`Coordinator::accepting`]
//!   (DNS answers), [`Coordinator::counters`] (`/metrics`), [`Coordinator::region_of`].
//! - `Time` is microseconds since any fixed origin (e.g. the service's start), never decreasing.

pub mod api;
pub mod config;
pub mod fuzzing;
pub mod predict;
pub mod tiering;

mod activation;
mod active_set;
mod anticipation;
mod consolidate;
mod distribute;
mod failures;
mod filling;
mod ids;
mod load;
mod membership;
mod monitor;
mod output;
mod overlay;
mod rebuild;
mod redirects;
mod reservation;
mod resolve;
mod state;
mod streams;
mod tier_sums;
mod tier_upkeep;
mod tree;
mod views;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap};
use std::net::{IpAddr, SocketAddr};

pub use api::*;
pub use config::*;

use crate::protocol::{
    Capacity, Child, PROTOCOL_VERSION, Peer, PncMsg, ProxyId, ProxyMsg, Refusal, SourceInfo,
    StreamLoad, StreamState,
};
use active_set::ActiveSet;
use ids::{FarmId, Px, RegionId, Regions, Sx};
use output::id_list;
use overlay::{Overlay, OverlayKey};
use predict::{Predictor, Smoothing};
use reservation::Expected;
use state::{Pair, ProxyRec, ProxyTable, SmallSet, StreamRec, record_rtt};
use tier_sums::{Candidate, Share, TierSums};

/// The coordinator. See the module docs.
#[derive(Debug)]
pub struct Coordinator {
    config: Config,
    settings: BTreeMap<ProxyId, ProxySettings>,
    smoothing: Smoothing,
    proxies: ProxyTable,
    by_id: HashMap<ProxyId, Px>,
    regions: Regions,
    streams: BTreeMap<Sx, StreamRec>,
    stream_ids: HashMap<String, Sx>,
    next_stream: u32,
    overlays: BTreeMap<OverlayKey, Overlay>,
    /// Streams re-registered by non-origin proxies before their origin ([0031], rebuild).
    pending_rebuild: BTreeMap<String, Vec<(Px, StreamState)>>,
    /// Heartbeat deadlines, earliest first: a deadline re-queued after a later one is still
    /// found on time (a crash within the timeout plus one tick, [0066]).
    deadlines: BinaryHeap<Reverse<(Time, Px)>>,
    next_seq: u64,
    next_farm: FarmId,
    counters: Counters,
    now: Time,
    window: u64,
    out: Vec<Command>,
    /// Scratch for `refresh_accepting`, kept to reuse its allocation.
    touched: Vec<Px>,
    /// Tiers whose active proxies changed during this event: the tier below gets its
    /// MonitorList again ([0053]; issue 7, defect 6).
    monitor_dirty: BTreeSet<(Sx, RegionId, u32)>,
    /// Proxies stopped during this event, or whose redirect list lost a proxy: each gets its
    /// StopAccepting at the end of the event, naming where its viewers go as the event left
    /// the stream (`send_stop_accepting`).
    stop_accepting_due: Vec<(Sx, Px)>,
    /// Source of `TierRec::version`.
    next_tier_version: u64,
}

impl Coordinator {
    pub fn new(config: Config) -> Self {
        let settings = config.proxies.iter().map(|s| (s.id, s.clone())).collect();
        let smoothing = Smoothing {
            alpha: config.alpha,
            beta: config.beta,
            window_micros: config.tick_micros(),
        };
        Coordinator {
            config,
            settings,
            smoothing,
            proxies: ProxyTable::default(),
            by_id: HashMap::new(),
            regions: Regions::default(),
            streams: BTreeMap::new(),
            stream_ids: HashMap::new(),
            next_stream: 0,
            overlays: BTreeMap::new(),
            pending_rebuild: BTreeMap::new(),
            deadlines: BinaryHeap::new(),
            next_seq: 0,
            next_farm: 0,
            counters: Counters::default(),
            now: Time::ZERO,
            window: 0,
            out: Vec::new(),
            touched: Vec::new(),
            monitor_dirty: BTreeSet::new(),
            stop_accepting_due: Vec::new(),
            next_tier_version: 0,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// When the core next needs an [`Event::Tick`]: the earliest heartbeat deadline it has
    /// queued, `None` if none (quinn's `poll_timeout`). A tick before that time finds nothing to
    /// do, so a simulator can jump its clock there instead of ticking blindly; rates and tiers
    /// catch up lazily on any event and need no tick.
    pub fn poll_timeout(&self) -> Option<Time> {
        self.deadlines.peek().map(|&Reverse((at, _))| at)
    }

    /// Handle one event at time `now` (times must not go backwards; an earlier `now` is taken
    /// as the latest time seen).
    pub fn handle(&mut self, event: Event, now: Time) -> Vec<Command> {
        self.now = self.now.max(now);
        self.window = self.smoothing.window_of(self.now.0);
        self.counters.events += 1;
        match event {
            Event::Register(r) => self.register(r),
            Event::Message { from, msg } => self.message(from, msg),
            Event::Disconnected { proxy } => {
                if let Some(&px) = self.by_id.get(&proxy) {
                    self.proxies.untracked_mut(px).disconnected = true;
                }
                self.log(
                    Rule::Register,
                    None,
                    Some(proxy),
                    "control connection closed; the proxy keeps relaying, crash only on heartbeat timeout [0066]".into(),
                );
            }
            Event::Remove { proxy } => {
                if let Some(&px) = self.by_id.get(&proxy)
                    && self.proxies[px].alive
                {
                    self.crash(px, "removed by the operator");
                }
            }
            Event::Resolve {
                request,
                stream,
                region,
                client,
            } => self.resolve(request, stream, region, client),
            Event::Anticipate {
                stream,
                region,
                viewers,
                ramp_secs,
            } => self.anticipate(stream, region, viewers, ramp_secs),
            Event::Tick => self.check_timeouts(),
        }
        self.refresh_monitor_lists();
        self.refresh_accepting();
        self.send_stop_accepting();
        #[cfg(debug_assertions)]
        self.check_accepting_index();
        std::mem::take(&mut self.out)
    }
}
