//! `vanbench simulate`: a discrete-event simulation of a VAN far beyond one machine, driving the
//! coordinator's own core (`control::core::Coordinator::handle(event, now)`), unchanged, and, on
//! every relay machine, the proxies' own side of the control protocol (`control::agent::Agent`,
//! driven at its `poll_timeout()`), or for comparison synthetic proxies ([`ProxyModel`]).
//!
//! What is modelled ([0009], [0058]): an overlay of relay machines in regions and tiers with a
//! capacity in connections; the time a proxy needs to become ready after `Activate` (ΔT of
//! activation); a delay on every control message in both directions; heartbeats; crashes;
//! viewers that resolve through the coordinator, connect, wait for a proxy still activating,
//! are sent on by a proxy that no longer accepts, follow redirects and re-resolve when their
//! proxy dies; with agents, child proxies pulling from their parents (a connection there) and
//! links lost when a parent dies or drops the stream. What is not: bytes (a viewer either is
//! connected to a serving proxy or is not), bandwidth, link degradation.
//!
//! Deterministic for a seed: one event queue ordered by (time, insertion), one seeded random
//! source (the agents' jitter seeded from it and the machine id), no wall clock in any
//! decision. The wall clock only measures where time goes: inside the core and inside the
//! agents, apart from the simulator's own bookkeeping.

pub mod baseline;
pub mod chart;
mod inbox;
mod queue;
pub mod report;
pub mod rng;
pub mod trace;
mod world;

pub use report::{PncLoad, Report};
pub use trace::Audience;
pub use trace::{Shape, Trace};
pub use world::simulate;

use control::core::Config as CoreConfig;

/// The simulated overlay: `regions` regions, each with `tier_sizes[t]` relay machines in tier
/// `t + 1`, plus one origin machine per source where streams are published.
#[derive(Clone, Debug)]
pub struct Overlay {
    pub regions: u32,
    pub tier_sizes: Vec<u32>,
    /// Connections each relay machine takes (over all its streams, [0047]).
    pub capacity: u32,
    /// Outgoing bits/s of each relay machine.
    pub bits_per_sec: u64,
    /// Origin machines; stream `i` is published at origin `i mod origins`.
    pub origins: u32,
}

impl Overlay {
    pub fn relays(&self) -> u64 {
        u64::from(self.regions) * self.tier_sizes.iter().map(|&n| u64::from(n)).sum::<u64>()
    }
}

/// Whose code runs the relay machines' side of the control protocol.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ProxyModel {
    /// `control::agent::Agent`, what the dataplane runs: it registers with back-off, reports
    /// viewers in heartbeats only, sends child-proxy LOGIN/LOGOFF, decides DISTRIBUTE and
    /// CONSOLIDATE itself, pulls from its parents at its first sink; the simulated data plane
    /// carries out its actions.
    #[default]
    Agent,
    /// Written for the simulator: registered at once, one LOGIN/LOGOFF per viewer, heartbeats
    /// with viewer counts, no decisions of its own, no child proxies. Kept for comparison.
    Synthetic,
}

impl ProxyModel {
    pub fn name(self) -> &'static str {
        match self {
            ProxyModel::Agent => "agent",
            ProxyModel::Synthetic => "synthetic",
        }
    }
}

/// What the operator announces before an event: the trace's own audience per stream and region
/// (`Trace::audiences`), scaled by `estimate` (1: exact; 0.5: half the crowd expected), over the
/// trace's ramp from the first login to the last, `lead_us` before the first login.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Anticipation {
    pub estimate: f64,
    pub lead_us: u64,
}

#[derive(Clone, Debug)]
pub struct SimConfig {
    pub seed: u64,
    pub proxies: ProxyModel,
    pub overlay: Overlay,
    /// The coordinator's configuration (its ΔT, sp, α, β, heartbeat timeout …).
    pub core: CoreConfig,
    /// Bit rate of every stream.
    pub bitrate_bps: u64,
    /// From `Activate` to the proxy serving the stream.
    pub activation_delay_us: u64,
    /// One way, PNC ↔ proxy, and a viewer's connect after its redirect.
    pub control_delay_us: u64,
    /// A viewer whose proxy died or dropped the stream resolves again after this long.
    pub reconnect_delay_us: u64,
    /// A viewer that has received nothing this long after its login gives up; 0: it waits for
    /// ever.
    pub patience_us: u64,
    /// Announce each stream's audience per region to the coordinator ahead of its first login
    /// (`Event::Anticipate`, [0033]); `None`: no announcement, the crowd is a surprise.
    pub anticipate: Option<Anticipation>,
    /// Relay machines that crash: (time, index among relays, 0-based).
    pub crashes: Vec<(u64, u32)>,
    /// Period of the time series.
    pub sample_us: u64,
    /// A progress line on stderr every second of wall time.
    pub progress: bool,
    /// Every decision of the coordinator core, and every rejected login, on stderr with the
    /// time on the trace's clock.
    pub log_decisions: bool,
}
