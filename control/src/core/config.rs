//! Configuration of the coordinator core. Every field has a default (`#[serde(default)]`), so an
//! empty TOML table is a valid configuration; the `pnc` service embeds this struct in its file.

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::protocol::ProxyId;

/// Parameters of the coordinator's algorithms.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// ΔT of [0054]/[0058] in milliseconds: how far ahead a proxy must see its capacity coming,
    /// the time to activate a proxy and move viewers. Also the Δt of [0061] and [0065]: the
    /// predictors are updated every `delta_t_ms / 10`.
    pub delta_t_ms: u64,
    /// Stability period `sp` of [0058] in milliseconds: after a server is added or removed, the
    /// number of servers should not need to change for this long.
    pub sp_ms: u64,
    /// Smoothing weight α of [0064] (0 < α < 1).
    pub alpha: f64,
    /// Trend weight β of [0064] (0 < β < 1).
    pub beta: f64,
    /// The α of the farm arrival-rate average ([0040]–[0041]); 1 weighs all history equally,
    /// 0 only the last DISTRIBUTE interval.
    pub farm_alpha: f64,
    /// A proxy not heard from (hello, heartbeat or any message) for this long has crashed
    /// ([0066]).
    pub heartbeat_timeout_ms: u64,
    /// Heartbeat interval told to proxies in `Welcome`.
    pub heartbeat_interval_ms: u32,
    /// How long a viewer sent to a proxy (by `/resolve`, or moved there) may take to connect and
    /// show in the proxy's count: its reservation ends at the first heartbeat received this
    /// long after it (`core::reservation`). Larger counts a viewer twice for an interval,
    /// smaller may miss one still connecting.
    pub viewer_connect_ms: u64,
    /// Hysteresis of the phase as a fraction of Max_s (the margin is at least one viewer), as
    /// the agent's `AgentConfig::hysteresis`: a proxy is put back into expansion ([0060]) only
    /// if it can take the margin before its predicted load reaches Max_s, so that its phase
    /// does not flap with every viewer.
    pub hysteresis: f64,
    /// Minimum-load threshold for CONSOLIDATE ([0033], [0055]); `None`: ⌈capacity/3⌉.
    pub min_threshold: Option<u32>,
    /// Number of parents each proxy of a stream gets in the tier above when available
    /// ([0029], [0044]); 1 means no redundancy.
    pub redundant_parents: u32,
    /// Proxies whose distances to the source differ by no more than this (milliseconds of RTT,
    /// or coordinate units) share a tier ([0024], [0049]).
    pub tier_spread_ms: f64,
    /// Upper bound of tiers per region; farther proxies join the last tier.
    pub max_tiers: u32,
    /// Which idle proxy of a tier is activated ([0032]).
    pub placement: Placement,
    /// How capacity grows: the seed's prediction and farms, or one proxy at a time when a proxy
    /// is full (a yardstick for the simulator's policy comparison, issue 11).
    pub growth: Growth,
    /// Region of a proxy that neither its hello nor `proxies` names.
    pub default_region: String,
    /// Per-proxy settings set by the operator (`[[proxies]]` tables, each with its `id`).
    pub proxies: Vec<ProxySettings>,
    /// Whether a proxy whose id `proxies` does not list may register. Off by default: a hello
    /// from an unlisted id is answered `Refused(UnknownProxy)`, so a holder of the token cannot
    /// add made-up proxies and be handed viewers (issue 7, defect 3).
    pub open_registration: bool,
    /// Viewer regions by client address ([0049]); the longest matching prefix wins.
    pub regions: Vec<RegionRule>,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            delta_t_ms: 10_000,
            sp_ms: 60_000,
            alpha: 0.9,
            beta: 0.1,
            farm_alpha: 0.5,
            heartbeat_timeout_ms: 15_000,
            heartbeat_interval_ms: 2_000,
            viewer_connect_ms: 500,
            hysteresis: 0.1,
            min_threshold: None,
            redundant_parents: 1,
            tier_spread_ms: 10.0,
            max_tiers: 8,
            placement: Placement::MostFree,
            growth: Growth::PredictiveFill,
            default_region: "default".to_string(),
            proxies: Vec::new(),
            open_registration: false,
            regions: Vec::new(),
        }
    }
}

/// How a DISTRIBUTE adds capacity.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Growth {
    /// The seed's, with [0030]'s "cease receiving new connection requests" taken literally: a
    /// proxy whose DISTRIBUTE was served stops taking viewers at once. DISTRIBUTE when capacity
    /// is predicted within ΔT ([0054]), the capacity check over sp ([0059]), regrouping by
    /// MIN_s ([0060]–[0061]), farms sized from the arrival rate ([0039]–[0041]). A proxy asks ΔT
    /// ahead, so it stops with the room it expected to fill while the new capacity starts: that
    /// room stays unused, and the viewers meanwhile go to proxies still starting
    /// (BENCHMARKS.md, "Where the 1.65× goes"; with viewers who give up after 3 s, 8–42% of a
    /// flash crowd is lost).
    Predictive,
    /// The default: the seed's, with [0030] read together with [0058] (ΔT is "advance warning
    /// to the PNC so that it may redirect users to an available server before some users are
    /// rejected due to an overload"): a proxy whose DISTRIBUTE was served keeps taking viewers
    /// until it is full or its viewers start to leave, and only then is told to stop; new
    /// viewers go to the proxies that have had ΔT to start, else to the oldest farm. It
    /// reproduces figures 2 and 4 (a proxy that asks at capacity is full when served).
    #[default]
    PredictiveFill,
    /// Reacting only: DISTRIBUTE when a proxy is full, and one idle proxy activated for it (no
    /// prediction, no regrouping, no farm). What the seed improves on (figure 5); kept to
    /// measure by how much.
    OneAtATime,
}

/// How the idle proxy to activate in a tier is chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Placement {
    /// The lowest id among machines with at least the minimum threshold free, else the lowest
    /// id with any room (DESIGN "Start of a stream": deterministic and easy to follow). Packs
    /// every stream onto the same machines, as the seed's figure 3 draws it.
    LowestId,
    /// The machine with the most free connections (ties: lowest id). With many streams sharing
    /// machines, lowest-id packing fills the same machines with every stream and each stream's
    /// share there stays small, so DISTRIBUTEs cascade; spreading avoids that. Recommended
    /// beyond a few streams per machine.
    ///
    /// The default, departing from DESIGN's "lowest id first": it still reproduces figures 2
    /// and 4 (there every idle proxy is equally free, so ties fall to the lowest id), and with
    /// many streams per machine it keeps one DISTRIBUTE well under 1 ms where lowest-id packing
    /// cascades into milliseconds (BENCHMARKS.md, "Coordinator core").
    #[default]
    MostFree,
}

/// What the operator fixes about one proxy.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySettings {
    /// The proxy these settings are for.
    pub id: ProxyId,
    /// Region, overriding the one in the proxy's hello.
    #[serde(default)]
    pub region: Option<String>,
    /// Position in a plane whose unit is a millisecond of RTT; used as the distance between two
    /// proxies when no RTT was reported between them.
    #[serde(default)]
    pub coordinates: Option<[f64; 2]>,
    /// Tier pin for every source (1 = next to the source).
    #[serde(default)]
    pub tier: Option<u32>,
    /// Tier pins per source name, overriding `tier`.
    #[serde(default)]
    pub source_tiers: BTreeMap<String, u32>,
    /// Logical capacity in connections per stream ([0048]); `None`: the physical capacity.
    #[serde(default)]
    pub logical_connections: Option<u32>,
    /// Physical capacity in connections, overriding the one the proxy's hello states ([0047]).
    #[serde(default)]
    pub connections: Option<u32>,
    /// Physical capacity in outgoing bits/s, overriding the hello's ([0047]).
    #[serde(default)]
    pub bits_per_sec: Option<u64>,
}

/// A CIDR prefix and the region of the viewers in it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegionRule {
    pub cidr: IpNet,
    pub region: String,
}

impl Config {
    /// Period of the predictors' update, Δt/10 ([0065]), in microseconds (at least 1).
    pub fn tick_micros(&self) -> u64 {
        (self.delta_t_ms * 100).max(1)
    }
}
