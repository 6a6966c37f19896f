//! The core's public types: time, events in, commands out, decisions, and the read-only views
//! the service serves (topology, accepting proxies, counters).

use std::net::{IpAddr, SocketAddr};

use serde::{Deserialize, Serialize};

use crate::protocol::{
    Capacity, Hello, Peer, PncMsg, ProxyId, ProxyMsg, Rtt, SourceInfo, StreamState,
};

/// A point in time in microseconds, from an origin the caller chooses (the service: since it
/// started). The core never reads a clock.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
pub struct Time(pub u64);

impl Time {
    pub const ZERO: Time = Time(0);

    pub fn from_millis(ms: u64) -> Self {
        Time(ms.saturating_mul(1000))
    }

    pub fn from_secs(s: u64) -> Self {
        Time(s.saturating_mul(1_000_000))
    }

    pub fn micros(self) -> u64 {
        self.0
    }

    /// `self + micros`, saturating.
    pub fn plus_micros(self, micros: u64) -> Self {
        Time(self.0.saturating_add(micros))
    }

    /// Seconds from `earlier` to `self` (0 if `earlier` is later).
    pub fn secs_since(self, earlier: Time) -> f64 {
        self.0.saturating_sub(earlier.0) as f64 / 1e6
    }
}

/// A proxy's registration, as the core sees it once the service has checked the hello's version
/// and token.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub proxy: ProxyId,
    pub name: String,
    pub data_addr: SocketAddr,
    pub region: Option<String>,
    pub capacity: Capacity,
    /// Streams it carries (after a PNC restart), with parents and children.
    pub streams: Vec<StreamState>,
    pub rtts: Vec<Rtt>,
    /// `Hello::decides`: the proxy decides DISTRIBUTE and CONSOLIDATE and reports its rates;
    /// the core serves its requests and decides nothing from a predictor of its own for it.
    pub decides: bool,
}

impl From<Hello> for Registration {
    fn from(h: Hello) -> Self {
        Registration {
            proxy: h.proxy,
            name: h.name,
            data_addr: h.data_addr,
            region: h.region,
            capacity: h.capacity,
            streams: h.streams,
            rtts: h.rtts,
            decides: h.decides,
        }
    }
}

/// Everything that can happen to the coordinator.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Event {
    /// A proxy connected and passed `protocol::check_hello` (fresh start or re-registration).
    Register(Registration),
    /// A message from a registered proxy (a `Hello` here is logged and ignored).
    Message { from: ProxyId, msg: ProxyMsg },
    /// The control connection of a proxy closed. The proxy keeps relaying; it is declared
    /// crashed only when its heartbeat times out ([0066]).
    Disconnected { proxy: ProxyId },
    /// The operator removed a proxy: handled as a crash now.
    Remove { proxy: ProxyId },
    /// Which proxy should a new viewer of `stream` use ([0033], [0042])? `region` if the viewer
    /// named one, else from `client` through the CIDR table, else the default region. Answered
    /// by one `Command::Resolved` with the same `request`. May start the stream's first path
    /// ([0032]) and advances the round-robin of a farm ([0042]).
    Resolve {
        request: u64,
        stream: String,
        region: Option<String>,
        client: Option<IpAddr>,
    },
    /// The operator expects `viewers` viewers of `stream` in `region` (every region of the
    /// source's overlay, evenly, if none), arriving over `ramp_secs` from about now (0: all at
    /// once). The core activates the bottom-tier proxies the first ΔT of them need ([0033]).
    Anticipate {
        stream: String,
        region: Option<String>,
        viewers: u64,
        ramp_secs: f64,
    },
    /// Time passes: heartbeat timeouts are checked. Call it at least every
    /// `Config::tick_micros()`; predictors also catch up lazily on any event.
    Tick,
}

/// Which rule made a decision, with the seed paragraphs it implements.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Rule {
    /// A proxy registered or re-registered.
    Register,
    /// Protocol misuse by a proxy (unknown stream, message out of place).
    Protocol,
    /// Tiering of a source's overlay ([0024], [0049]–[0050]).
    Tiering,
    /// First path of a stream, one proxy per tier ([0032], [0035]).
    StreamStart,
    /// DISTRIBUTE ([0059]–[0061]).
    Distribute,
    /// Farm size from the arrival rate ([0039]–[0042]).
    FarmSize,
    /// Regrouping by MIN_s ([0060]–[0061]).
    Regroup,
    /// A standby proxy joined its parent on its first LOGIN ([0054]).
    Standby,
    /// CONSOLIDATE ([0055], [0062]–[0063]).
    Consolidate,
    /// A proxy whose load fell to zero became idle ([0030], [0055]).
    Idle,
    /// LinkDowngrade ([0066]).
    LinkDowngrade,
    /// A crash found by heartbeat timeout ([0066]).
    Crash,
    /// Viewer redirection ([0033], [0042]).
    Redirect,
    /// Source ended: tree torn down.
    Teardown,
    /// A restarted PNC rebuilt a stream from re-registrations.
    Rebuild,
    /// Redundant parents ([0029], [0044]).
    Redundancy,
    /// Proxies activated ahead of an anticipated event ([0033]).
    Anticipate,
}

impl Rule {
    /// Where the rule comes from: the seed's paragraphs, or DESIGN's section for the rules the
    /// seed leaves to the implementation. Logged with every decision.
    pub fn cites(self) -> &'static str {
        match self {
            Rule::Register => "DESIGN: control protocol, registration",
            Rule::Protocol => "DESIGN: control protocol, errors",
            Rule::Tiering => "[0024], [0049]-[0050]",
            Rule::StreamStart => "[0032], [0035]",
            Rule::Distribute => "[0059]-[0061]",
            Rule::FarmSize => "[0039]-[0042]",
            Rule::Regroup => "[0060]-[0061]",
            Rule::Standby => "[0054]",
            Rule::Consolidate => "[0055], [0062]-[0063]",
            Rule::Idle => "[0030], [0055]",
            Rule::LinkDowngrade => "[0066]",
            Rule::Crash => "[0066]",
            Rule::Redirect => "[0033], [0042]",
            Rule::Teardown => "DESIGN: source end",
            Rule::Rebuild => "DESIGN: PNC restart",
            Rule::Redundancy => "[0029], [0044]",
            Rule::Anticipate => "[0033]",
        }
    }
}

/// One decision with its reason: the log of the coordinator, replayable.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub at: Time,
    pub rule: Rule,
    pub stream: Option<String>,
    pub proxy: Option<ProxyId>,
    pub reason: String,
}

/// Answer to `Event::Resolve`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Resolution {
    pub request: u64,
    pub stream: String,
    /// Region used for the choice.
    pub region: String,
    /// The proxy to use, or `None` (no source for the stream, no proxy with room).
    pub target: Option<Peer>,
    pub reason: String,
}

/// What the core asks the service to do.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Command {
    /// Send a message to a proxy (dropped by the service if it is not connected). After a
    /// `PncMsg::Refused` the service closes that proxy's connection: the proxy must register
    /// again (an unknown id, or a proxy declared crashed).
    Send { to: ProxyId, msg: PncMsg },
    /// The answer to an `Event::Resolve`.
    Resolved(Resolution),
    /// A decision and its reason, to log.
    Log(Decision),
}

/// Phase of a proxy for one stream ([0030]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// Activated, takes new viewers.
    Expansion,
    /// Its DISTRIBUTE was served (or it is being drained): takes no new viewers.
    Contraction,
    /// Serves nothing for the stream.
    Idle,
}

/// One active proxy of a stream, for `/api/topology`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ActiveProxyView {
    pub proxy: ProxyId,
    pub name: String,
    pub addr: SocketAddr,
    pub phase: Phase,
    /// A standby has no child yet and does not load its parent ([0054]).
    pub standby: bool,
    /// Takes new viewers now.
    pub accepting: bool,
    /// Connections for this stream: viewers plus joined child proxies.
    pub load: u32,
    pub viewers: u32,
    /// Max_s for this stream now ([0047]).
    pub capacity: u32,
    pub parents: Vec<ProxyId>,
    pub children: Vec<ProxyId>,
    /// Proxies activated together with this one ([0042]), itself included.
    pub farm: Vec<ProxyId>,
    pub activated_at: Time,
    /// Predicted logins and logoffs per second ([0064]).
    pub login_rate: f64,
    pub logoff_rate: f64,
}

/// One tier of a stream in one region.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TierView {
    pub tier: u32,
    /// Proxies of the source's overlay in this tier (active or not).
    pub overlay: Vec<ProxyId>,
    pub active: Vec<ActiveProxyView>,
}

/// One region of a stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RegionView {
    pub region: String,
    pub tiers: Vec<TierView>,
}

/// One stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamView {
    pub stream: String,
    pub source: SourceInfo,
    /// The proxy the source publishes at (tier 0).
    pub origin: ProxyId,
    /// Tier-1 proxies that joined the origin: its load for this stream.
    #[serde(default)]
    pub origin_children: Vec<ProxyId>,
    /// Viewers over all its proxies.
    pub viewers: u32,
    /// System-wide predicted logins and logoffs per second ([0064]).
    pub login_rate: f64,
    pub logoff_rate: f64,
    pub regions: Vec<RegionView>,
}

/// Every stream, for `GET /api/topology`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Topology {
    pub at: Time,
    pub proxies: Vec<ProxyView>,
    pub streams: Vec<StreamView>,
}

/// One registered proxy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ProxyView {
    pub proxy: ProxyId,
    pub name: String,
    pub addr: SocketAddr,
    pub region: String,
    pub capacity: Capacity,
    pub alive: bool,
    /// Connections over all streams ([0047]).
    pub connections: u32,
    pub last_heard: Time,
}

/// Monotonic counters for `/metrics`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub events: u64,
    pub registrations: u64,
    pub activations: u64,
    pub deactivations: u64,
    pub distributes: u64,
    /// DISTRIBUTEs that found nothing to add (a full overlay): no phase changed.
    pub distributes_unserved: u64,
    pub regroups: u64,
    pub farms: u64,
    pub consolidations: u64,
    pub consolidations_ignored: u64,
    pub link_downgrades: u64,
    pub crashes: u64,
    pub resolves: u64,
    pub resolve_failures: u64,
    pub parent_switches: u64,
    pub protocol_errors: u64,
    pub streams_started: u64,
    pub streams_ended: u64,
}
