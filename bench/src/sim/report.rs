//! What a simulation run reports: the figures issue 11 asks for, a time series for charts, and
//! where the time went (inside the coordinator core, apart from the simulator's own).

use serde::Serialize;
use std::collections::BTreeMap;

/// One sample of the time series.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Sample {
    pub t_s: f64,
    /// Viewers connected to a proxy and receiving.
    pub viewers: u64,
    /// Viewers waiting for a proxy to finish its activation.
    pub waiting: u64,
    /// Relay machines carrying at least one stream.
    pub active_proxies: u64,
    /// Logins refused so far.
    pub rejected: u64,
    /// Messages the PNC received per second over the sample period.
    pub pnc_per_s: f64,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct WaitMs {
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

/// Messages the PNC received from the proxies during the trace (issue 10: bounded by proxies ×
/// heartbeat rate, not by viewers).
#[derive(Clone, Debug, Default, Serialize)]
pub struct PncLoad {
    pub messages: u64,
    /// Largest count within one second of simulated time.
    pub peak_per_s: u64,
    pub mean_per_s: f64,
    pub mean_per_proxy_per_s: f64,
    /// By kind: `heartbeat`, `login_viewer`, `login_proxy`, `distribute`, …
    pub by_kind: BTreeMap<String, u64>,
}

#[derive(Clone, Debug, Default, Serialize)]
pub struct Report {
    pub policy: String,
    /// Whose code ran the relay machines' control side: `agent` (`control::agent`, what the
    /// proxies run) or `synthetic` (one LOGIN/LOGOFF per viewer and heartbeats).
    pub proxy_model: String,
    pub seed: u64,
    pub proxies: u64,
    pub logins: u64,
    /// Logins the coordinator answered with no proxy (a viewer who would see a 503).
    pub rejected: u64,
    pub rejected_pct: f64,
    /// Viewers that left before their first byte because their patience ran out
    /// (`SimConfig::patience_us`): refused in all but name.
    pub gave_up: u64,
    pub gave_up_pct: f64,
    /// Logins that had to wait for a proxy's activation (ΔT) or were sent to a proxy that no
    /// longer served the stream, before they received anything.
    pub delayed: u64,
    /// From a viewer's login to its first byte, every admitted login (includes the control
    /// delay of the redirect and connect).
    pub login_wait_ms: WaitMs,
    /// Logoffs that found no viewer of that stream in that region (rejected earlier).
    pub unmatched_logoffs: u64,
    /// Largest excess of a proxy's connections over its capacity, and how many viewers were
    /// admitted beyond capacity in all.
    pub peak_overload: u64,
    pub overloaded_logins: u64,
    /// Σ over relay machines of the time they carried at least one stream (the cost).
    pub proxy_seconds: f64,
    pub activations: u64,
    pub deactivations: u64,
    /// Viewers moved between proxies (CONSOLIDATE redirects, crashes, deactivations), per
    /// admitted login.
    pub viewer_migrations: u64,
    pub migrations_per_viewer: f64,
    /// Parent switches of proxies (SwitchToParent).
    pub parent_switches: u64,
    /// Links from a child proxy to a parent opened or closed by the data plane (agent model:
    /// pulls at a standby's first sink, log-offs at its last, switches, links lost).
    pub child_links_changed: u64,
    /// StopAccepting and StartAccepting orders the proxies received (phase changes, [0030]).
    pub phase_orders: u64,
    /// Viewers sent on by a proxy that no longer accepts (`307` to the redirect list, or a new
    /// resolve when it has none).
    pub bounced: u64,
    /// Messages the coordinator core logged and ignored as protocol misuse.
    pub protocol_errors: u64,
    /// Deepest tier any proxy was activated in (the tree's depth below the origin).
    pub max_tier: u32,
    pub peak_viewers: u64,
    pub peak_active_proxies: u64,
    /// The most viewers one relay machine held for one stream at once.
    pub peak_viewers_per_proxy: u64,
    pub crashed_viewers: u64,
    /// Simulated span.
    pub simulated_s: f64,
    /// Events the simulator processed, and how many of them reached the coordinator core.
    pub sim_events: u64,
    pub core_events: u64,
    /// Wall time inside `Coordinator::handle`, and in all.
    pub core_s: f64,
    pub wall_s: f64,
    pub core_us_per_event: f64,
    /// Inputs the proxy agents handled, and the wall time inside `Agent::handle` (agent model).
    pub agent_events: u64,
    pub agent_s: f64,
    /// From the start of the simulation to the trace's time 0: the agents starting within one
    /// heartbeat interval and registering (0 for synthetic proxies, registered at once). Every
    /// other time in the report is on the trace's clock.
    pub warmup_s: f64,
    pub pnc: PncLoad,
    pub series: Vec<Sample>,
}

impl Report {
    /// A table for people.
    pub fn table(&self) -> String {
        let kinds: Vec<String> = self
            .pnc
            .by_kind
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        format!(
            "  policy {} (seed {}), {} proxies ({})\n\
             \x20 logins {} rejected {} ({:.4}%) gave up {} ({:.4}%) delayed {} wait ms p50/p99/max {:.1}/{:.1}/{:.1}\n\
             \x20 peak viewers {} peak active proxies {} proxy-seconds {:.0}\n\
             \x20 activations {} deactivations {} migrations/viewer {:.4} parent switches {} depth {}\n\
             \x20 peak overload {} (logins beyond capacity {}) crashed viewers {}\n\
             \x20 bounced {} child links changed {} phase orders {} protocol errors {}\n\
             \x20 PNC received {} messages: peak {}/s mean {:.1}/s ({:.3}/s per proxy): {}\n\
             \x20 simulated {:.0} s in {:.2} s wall, core {:.2} s over {} events ({:.2} µs/event), agents {:.2} s over {} inputs\n",
            self.policy,
            self.seed,
            self.proxies,
            self.proxy_model,
            self.logins,
            self.rejected,
            self.rejected_pct,
            self.gave_up,
            self.gave_up_pct,
            self.delayed,
            self.login_wait_ms.p50,
            self.login_wait_ms.p99,
            self.login_wait_ms.max,
            self.peak_viewers,
            self.peak_active_proxies,
            self.proxy_seconds,
            self.activations,
            self.deactivations,
            self.migrations_per_viewer,
            self.parent_switches,
            self.max_tier,
            self.peak_overload,
            self.overloaded_logins,
            self.crashed_viewers,
            self.bounced,
            self.child_links_changed,
            self.phase_orders,
            self.protocol_errors,
            self.pnc.messages,
            self.pnc.peak_per_s,
            self.pnc.mean_per_s,
            self.pnc.mean_per_proxy_per_s,
            kinds.join(", "),
            self.simulated_s,
            self.wall_s,
            self.core_s,
            self.core_events,
            self.core_us_per_event,
            self.agent_s,
            self.agent_events,
        )
    }
}
