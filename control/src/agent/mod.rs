//! The proxy agent: the dataplane's side of the control protocol as a pure state machine.
//!
//! [`Agent::handle`] takes an [`Input`] and the current [`Time`] and returns the [`Action`]s to
//! carry out; [`Agent::poll_timeout`] says when it next needs [`Input::Timeout`]. No sockets,
//! threads or clocks: the dataplane's control thread and the simulator drive the very same code,
//! and nothing here names a dataplane type. The same inputs at the same times (and the same
//! [`AgentConfig::seed`]) give the same actions.
//!
//! # What it does
//! - **Registration.** On [`Action::Connect`] the driver opens the control connection and feeds
//!   [`Input::Connected`]; the agent sends `Hello` (version, token, id, name, data address,
//!   region, capacity, RTTs measured, and every stream it carries with tier, parents, children,
//!   viewers and accepting, so that a restarted PNC rebuilds the same topology, [0031]).
//!   `Welcome` starts the heartbeat at the interval it names and resets the back-off. `Refused`
//!   is logged and retried after a back-off; a version mismatch, a bad token or an id the PNC does
//!   not list never faster than the back-off's cap ([`backoff`]). The PNC also refuses a
//!   proxy it declared crashed: the agent reconnects and registers again with its streams.
//! - **Back-off.** A failed or lost connection waits an exponential, capped, jittered delay
//!   (seeded, so deterministic) before the next [`Action::Connect`]. While disconnected the
//!   dataplane keeps relaying on the tree it has: no order is undone by a disconnect. Local
//!   events meanwhile are folded into the state: the next Hello and heartbeat carry it, and after
//!   `Welcome` the agent sends what the PNC missed (child-proxy LOGIN/LOGOFF, stream announce and
//!   end, links still down) as the difference between what it told the PNC and what holds now,
//!   which is right whether the PNC restarted (it rebuilt from the Hello; the core takes a
//!   repeated LOGIN as a no-op) or kept its view.
//! - **Load reports, bounded chatter.** Viewer logins and logoffs are not sent one message each:
//!   the heartbeat carries, per stream, viewers, child proxies, bits/s and the predicted login
//!   and logoff rates ([0064]), plus machine-wide connections and bits/s ([0047]). Child-proxy
//!   LOGIN/LOGOFF go out at once (they change the tree and are rare). A DISTRIBUTE or
//!   CONSOLIDATE goes right after a heartbeat, so the PNC sees the load it rests on. Per proxy
//!   and heartbeat interval the PNC therefore gets at most: 1 heartbeat + 1 DISTRIBUTE or
//!   CONSOLIDATE per stream and phase (each with its heartbeat) + one message per child-proxy
//!   change, per source start/end and per link lost; never one per viewer.
//! - **Decisions** ([`decide`], DECIDERS.md): the proxy decides DISTRIBUTE ([0054]) and
//!   CONSOLIDATE ([0055], [0062]) from its own predictor with Max_s machine-wide ([0047]), each
//!   sent once per phase, with hysteresis.
//! - **Standby** ([0054], [0055]): an activated stream pulls from its parents from its first
//!   sink ([`Action::Pull`]) and logs off them when its last sink leaves
//!   ([`Action::StopPulling`]), so a standby does not count against its parent (DESIGN "Reading
//!   the seed", figure 2: u7, not u6, fills P21).
//! - **Orders** (`orders.rs`): every `PncMsg` is validated; a bad one (unknown stream, empty parent
//!   list, itself as a parent, ...) becomes an [`Action::Log`], never a panic. Repeated orders
//!   that change nothing are idempotent.
//!
//! # Files
//! `link.rs` the connection's life (registration, back-off, catch-up); `report.rs` heartbeats;
//! `local.rs` the data plane's events and the standby; `decide.rs` DISTRIBUTE and CONSOLIDATE;
//! `load.rs` rates and Max_s; `orders.rs` the PNC's messages; `stream.rs` one stream's record;
//! `backoff.rs`, `config.rs`.
//!
//! # What it does not do
//! Move bytes, probe peers, or time anything: the dataplane carries out the orders and reports
//! back through [`Input`]s.
//!
//! # Driving it
//! `Agent::new(config)` starts disconnected with a retry due at [`Time::ZERO`]: the first
//! `handle(Input::Timeout, now)` returns [`Action::Connect`]. Then: feed every input with a
//! non-decreasing `now` (an earlier one is taken as the last one), carry out every action, and
//! call `handle(Input::Timeout, now)` at [`Agent::poll_timeout`]. Each call first runs the timers
//! that are due, so after any call `poll_timeout()` is later than `now`.

pub mod backoff;
pub mod config;
pub mod decide;
mod link;
pub mod load;
mod local;
mod orders;
mod report;
pub mod stream;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet};

use crate::core::Time;
use crate::core::predict::Smoothing;
use crate::protocol::{Peer, ProxyId, ProxyMsg, SourceInfo};

/// How long a proxy told to stop accepting (`Action::StopAccepting`) still takes viewers: those
/// the PNC resolved to it just before (their places are reserved there, and a filling proxy is
/// stopped only when full counting them) arrive within the redirect's round trip and the
/// connect, well under this. The dataplane keeps it; the simulator's proxies too.
pub const STOP_ACCEPTING_GRACE: std::time::Duration = std::time::Duration::from_secs(1);

pub use backoff::{Backoff, BackoffConfig};
pub use config::AgentConfig;
pub use decide::Phase;

use link::Link;
use load::Usage;
use stream::StreamRecord;

/// What happened, as the driver tells the agent.
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// A time the agent asked for through [`Agent::poll_timeout`] has come.
    Timeout,
    /// The control connection asked for by [`Action::Connect`] is open.
    Connected,
    /// The control connection failed or closed.
    Disconnected,
    /// A message from the PNC.
    Received(crate::protocol::PncMsg),
    /// A plain or VAN-aware viewer connected for `stream`.
    ViewerJoined { stream: String },
    /// A viewer of `stream` left.
    ViewerLeft { stream: String },
    /// A child proxy started pulling `stream` from here.
    ChildJoined { stream: String, child: ProxyId },
    /// A child proxy stopped pulling `stream` from here.
    ChildLeft { stream: String, child: ProxyId },
    /// A source started publishing `stream` here.
    SourceStarted { stream: String, source: SourceInfo },
    /// The source publishing `stream` here stopped.
    SourceEnded { stream: String },
    /// Machine-wide load measured by the dataplane (all streams and anything else it serves).
    /// What it shows beyond the sinks the agent counts is kept as other load until the next
    /// sample, so sinks that joined since are not lost to a stale sample.
    MachineLoad { connections: u32, bits_per_sec: u64 },
    /// Bits/s sent to the sinks of one stream, as measured.
    StreamBits { stream: String, bits_per_sec: u64 },
    /// Monitoring found the link to `parent` for `stream` lost or degraded ([0066]).
    ParentLinkLost { stream: String, parent: ProxyId },
    /// Monitoring measured the round-trip time to a peer ([0024], [0049]).
    PeerRtt { peer: ProxyId, micros: u32 },
}

/// What the driver must do.
#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Open the control connection to the PNC; answer with [`Input::Connected`] or
    /// [`Input::Disconnected`].
    Connect,
    /// Close the control connection (refused, or registration timed out). No
    /// [`Input::Disconnected`] is needed after it.
    Close,
    /// Send this message on the control connection.
    Send(ProxyMsg),
    /// Serve `stream` in `tier`: take sinks for it (new viewers iff `accepting`). It is a
    /// standby until its first sink: [`Action::Pull`] follows then, from `parents` (DESIGN
    /// "Reading the seed": a standby does not count against its parent).
    Activate {
        stream: String,
        source: SourceInfo,
        tier: u32,
        parents: Vec<Peer>,
        accepting: bool,
    },
    /// [0054] The first sink of an activated stream joined: connect to `parents` (all of them:
    /// duplicates are dropped by sequence number, [0029], [0044]) and relay.
    Pull { stream: String, parents: Vec<Peer> },
    /// [0055] The last sink left: drop the parent connections (log off the parents); the
    /// stream stays activated and pulls again at its next sink.
    StopPulling { stream: String },
    /// Pull `stream` from `parents` instead, make-before-break ([0029], [0046]). Only while
    /// pulling; a standby just takes the new parents for its next [`Action::Pull`].
    SwitchParents { stream: String, parents: Vec<Peer> },
    /// Take no new viewers for `stream`; send them to `redirect_to` (`307`), or `503` if empty.
    StopAccepting {
        stream: String,
        redirect_to: Vec<Peer>,
    },
    /// Take new viewers for `stream` again.
    StartAccepting { stream: String },
    /// Redirect every viewer of `stream` to `to`, resuming from its next sequence ([0037]).
    RedirectChildren { stream: String, to: Peer },
    /// Stop serving `stream` and drop its parents ([0030], [0055]).
    Deactivate { stream: String },
    /// Probe these parent-tier proxies for `stream` and report [`Input::ParentLinkLost`].
    Monitor { stream: String, peers: Vec<Peer> },
    /// A decision or a rejected input, for the log.
    Log(String),
}

/// The proxy side of the control protocol. See the module docs.
#[derive(Debug)]
pub struct Agent {
    config: AgentConfig,
    smoothing: Smoothing,
    link: Link,
    backoff: Backoff,
    streams: BTreeMap<String, StreamRecord>,
    /// Streams whose source ended while the PNC knew them and could not be told yet.
    ended_untold: BTreeSet<String>,
    /// Load on the machine the agent does not count itself (other streams or services): the
    /// dataplane's last machine-wide sample minus what the agent counted at that moment. Kept
    /// apart so that a stale sample does not hide sinks that joined since.
    untracked: Usage,
    /// Latest RTT per peer.
    rtts: BTreeMap<ProxyId, u32>,
    /// Peers measured since the last heartbeat.
    fresh_rtts: BTreeSet<ProxyId>,
    now: Time,
    out: Vec<Action>,
}
impl Agent {
    pub fn new(config: AgentConfig) -> Self {
        let smoothing = config.smoothing();
        let backoff = Backoff::new(config.backoff, config.seed);
        Self {
            config,
            smoothing,
            link: Link::Waiting {
                retry_at: Time::ZERO,
            },
            backoff,
            streams: BTreeMap::new(),
            ended_untold: BTreeSet::new(),
            untracked: Usage::default(),
            rtts: BTreeMap::new(),
            fresh_rtts: BTreeSet::new(),
            now: Time::ZERO,
            out: Vec::new(),
        }
    }

    pub fn config(&self) -> &AgentConfig {
        &self.config
    }

    /// Whether the PNC has welcomed the current connection.
    pub fn is_registered(&self) -> bool {
        matches!(self.link, Link::Up { .. })
    }

    /// The streams as the next Hello would report them.
    pub fn stream_states(&self) -> Vec<crate::protocol::StreamState> {
        self.streams
            .iter()
            .filter(|(_, r)| r.is_known_to_pnc())
            .map(|(name, r)| r.state(name))
            .collect()
    }

    /// The phase of an activated stream.
    pub fn phase(&self, stream: &str) -> Option<Phase> {
        self.streams
            .get(stream)?
            .activation
            .as_ref()
            .map(|a| a.phase)
    }

    /// Take one input at `now`; the actions to carry out, in order.
    pub fn handle(&mut self, input: Input, now: Time) -> Vec<Action> {
        self.now = self.now.max(now);
        self.run_timers();
        match input {
            Input::Timeout => {}
            Input::Connected => self.connected(),
            Input::Disconnected => self.disconnected("the control connection closed"),
            Input::Received(msg) => self.received(msg),
            other => self.local(other),
        }
        self.follow_load();
        self.decide();
        self.streams.retain(|_, r| !r.is_empty());
        std::mem::take(&mut self.out)
    }

    /// When the agent next needs `handle(Input::Timeout, t)`.
    pub fn poll_timeout(&self) -> Option<Time> {
        match self.link {
            Link::Waiting { retry_at } => Some(retry_at),
            Link::Connecting { since } | Link::Registering { since } => {
                Some(since.plus_micros(self.register_timeout_micros()))
            }
            Link::Up { next_heartbeat, .. } => {
                let window = self.next_window_if_deciding();
                Some(window.map_or(next_heartbeat, |w| w.min(next_heartbeat)))
            }
        }
    }

    /// The next predictor window boundary, while some activated stream has a decision to watch:
    /// a prediction can cross a threshold without any event ([0065]).
    fn next_window_if_deciding(&self) -> Option<Time> {
        self.streams
            .values()
            .any(|r| r.activation.is_some())
            .then(|| {
                let w = self.smoothing.window_of(self.now.micros());
                Time(
                    w.saturating_add(1)
                        .saturating_mul(self.smoothing.window_micros.max(1)),
                )
            })
    }

    fn log(&mut self, line: String) {
        self.out.push(Action::Log(line));
    }

    fn send(&mut self, msg: ProxyMsg) {
        self.out.push(Action::Send(msg));
    }

    /// The record of `stream`, created if missing.
    fn record(&mut self, stream: &str) -> &mut StreamRecord {
        let (now, sm) = (self.now, self.smoothing);
        self.streams
            .entry(stream.to_string())
            .or_insert_with(|| StreamRecord::new(now, &sm))
    }
}
