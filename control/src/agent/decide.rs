//! The proxy's two decisions, DISTRIBUTE ([0054]) and CONSOLIDATE ([0055], [0062]), each a
//! condition on the stream's load and predicted rates, turned into at most one message per
//! phase by a [`Trigger`].
//!
//! - DISTRIBUTE, in the expansion phase: the load reaches Max_s, or, when the load has just
//!   grown, the predicted load `load + (Linrate − Loffrate)·ΔT` reaches it within ΔT ([0054],
//!   [0058]). Released once the predicted load is at or below `Max_s − margin`. The prediction
//!   is consulted at logins only, as [0054] places the check in the LOGIN process, and with the
//!   rates of the windows completed so far: one login in a window of ΔT/10 predicts ten more
//!   within ΔT, so checking the prediction at every window boundary would make a proxy of
//!   capacity 3 ask for DISTRIBUTE after its first viewer (figure 2 says it does not).
//! - CONSOLIDATE, in the contraction phase ([0030]: the DISTRIBUTE was served or the PNC said
//!   stop accepting): predicted logoffs exceed logins ([0062]) and the load is at or below the
//!   minimum threshold ([0033], [0055]). Released once the load is at or above
//!   `threshold + margin`, or logins outpace logoffs. Checked at every event and at every
//!   window boundary: a logoff counts in the predicted rate once its window is folded in.
//!
//! See DECIDERS.md next to this file for who decides what between the proxy and the PNC.

use super::Agent;
use super::load::{Rates, Usage, max_sinks};
use crate::protocol::ProxyMsg;

/// The phase of an activated (non-origin) stream at this proxy ([0030]); the idle phase is a
/// stream not activated here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// From activation until the PNC serves its DISTRIBUTE; DISTRIBUTE may fire.
    Expansion,
    /// After the PNC said stop accepting; CONSOLIDATE may fire.
    Contraction,
}

/// A Schmitt trigger with a once-per-phase latch.
///
/// `high` turns on at the set level and off only at the release level, so a load wobbling at
/// the threshold keeps one state. A message goes out when the trigger is high, the phase allows
/// it and none went out in this phase; only a new phase (the PNC's answer) opens the latch again.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trigger {
    high: bool,
    sent: bool,
}

impl Trigger {
    /// Feed the condition; `true`: send the message now. `can_send` is false while the phase
    /// forbids the message or the PNC is unreachable (the latch then stays open).
    pub fn update(&mut self, set: bool, release: bool, can_send: bool) -> bool {
        if set {
            self.high = true;
        } else if release {
            self.high = false;
        }
        if can_send && self.high && !self.sent {
            self.sent = true;
            return true;
        }
        false
    }

    /// The PNC changed the phase: the message may go out once more.
    pub fn new_phase(&mut self) {
        self.sent = false;
    }

    pub fn is_high(&self) -> bool {
        self.high
    }

    pub fn sent(&self) -> bool {
        self.sent
    }
}

/// What one decision looks at.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct LoadView {
    /// Sinks now (viewers + child proxies).
    pub load: u32,
    /// Max_s ([0047]).
    pub max: u32,
    /// Predicted rates.
    pub rates: Rates,
    /// ΔT in seconds.
    pub delta_t_secs: f64,
    /// Hysteresis margin in sinks (at least 1).
    pub margin: u32,
}

/// (set, release) of DISTRIBUTE. `grew`: the load just grew, so the prediction is consulted
/// ([0054] checks it in the LOGIN process); otherwise only the load itself can set it.
pub fn distribute_levels(v: &LoadView, grew: bool) -> (bool, bool) {
    let growth = v.rates.net_per_sec().max(0.0) * v.delta_t_secs;
    let predicted = f64::from(v.load) + growth;
    let max = f64::from(v.max);
    // [0054] at capacity, or capacity reached within ΔT at the predicted rates.
    let set = v.load >= v.max || (grew && predicted >= max);
    let release = predicted <= max - f64::from(v.margin);
    (set, release && !set)
}

/// (set, release) of CONSOLIDATE with the minimum threshold `min`.
pub fn consolidate_levels(v: &LoadView, min: u32) -> (bool, bool) {
    let draining = v.rates.logoff_per_sec > v.rates.login_per_sec;
    // [0062] logoffs must exceed logins; [0055] the load fell to the minimum threshold.
    let set = draining && v.load <= min;
    let release = v.load >= min.saturating_add(v.margin) || v.rates.net_per_sec() > 0.0;
    (set, release && !set)
}

impl Agent {
    /// Run both decisions on every activated stream ([0054], [0055], [0062]).
    pub(super) fn decide(&mut self) {
        let up = self.is_registered();
        let now = self.now;
        let sm = self.smoothing;
        let machine = self.machine_usage();
        let logical = self.config.logical_capacity();
        let physical = self.config.capacity;
        let min = self.config.min_threshold();
        // Without prediction the load alone sets DISTRIBUTE ([0035]).
        let delta_t_secs = if self.config.predictive {
            self.config.delta_t_secs()
        } else {
            0.0
        };
        let mut msgs = Vec::new();
        let mut logs = Vec::new();
        for (name, r) in &mut self.streams {
            let Some(phase) = r.activation.as_ref().map(|a| a.phase) else {
                continue;
            };
            let load = r.load();
            // [0047] the other streams' load is the machine's minus this stream's.
            let others = Usage {
                connections: machine.connections.saturating_sub(load),
                bits_per_sec: machine.bits_per_sec.saturating_sub(r.bits_per_sec()),
            };
            let max = max_sinks(logical, physical, others, r.per_sink_bps());
            let view = LoadView {
                load,
                max,
                rates: r.rates.rates(now, &sm),
                delta_t_secs,
                margin: self.config.margin(max),
            };
            let grew = std::mem::take(&mut r.grew);
            let (set, release) = distribute_levels(&view, grew);
            if r.distribute
                .update(set, release, up && phase == Phase::Expansion)
            {
                logs.push(format!(
                    "{name}: DISTRIBUTE [0054]: load {load} of Max_s {max}, predicted {:.2} logins/s vs {:.2} logoffs/s over ΔT {delta_t_secs} s",
                    view.rates.login_per_sec, view.rates.logoff_per_sec
                ));
                msgs.push(ProxyMsg::Distribute {
                    stream: name.clone(),
                });
            }
            let (set, release) = consolidate_levels(&view, min);
            if r.consolidate
                .update(set, release, up && phase == Phase::Contraction)
            {
                logs.push(format!(
                    "{name}: CONSOLIDATE [0055] [0062]: load {load} at or below {min}, predicted {:.2} logoffs/s over {:.2} logins/s",
                    view.rates.logoff_per_sec, view.rates.login_per_sec
                ));
                msgs.push(ProxyMsg::Consolidate {
                    stream: name.clone(),
                });
            }
        }
        for line in logs {
            self.log(line);
        }
        if !msgs.is_empty() {
            // A decision carries its evidence: the PNC sees the load and rates it rests on
            // before the request, not up to one heartbeat interval later.
            self.send_heartbeat();
        }
        for m in msgs {
            self.send(m);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(load: u32, max: u32, login: f64, logoff: f64) -> LoadView {
        LoadView {
            load,
            max,
            rates: Rates {
                login_per_sec: login,
                logoff_per_sec: logoff,
            },
            delta_t_secs: 10.0,
            margin: 1,
        }
    }

    #[test]
    fn trigger_fires_once_per_phase_and_holds_between_levels() {
        let mut t = Trigger::default();
        assert!(!t.update(false, false, true));
        assert!(t.update(true, false, true));
        // Still high, already sent: silent, whatever the load does at the threshold.
        assert!(!t.update(true, false, true));
        assert!(!t.update(false, false, true));
        assert!(!t.update(false, true, true));
        assert!(!t.update(true, false, true));
        // A new phase opens the latch.
        t.new_phase();
        assert!(t.update(false, false, true));
        // Not allowed to send: nothing, the latch stays open for later.
        t.new_phase();
        assert!(!t.update(true, false, false));
        assert!(t.update(false, false, true));
    }

    #[test]
    fn distribute_at_capacity_and_on_prediction() {
        assert_eq!(
            distribute_levels(&view(3, 3, 0.0, 0.0), false),
            (true, false)
        );
        assert_eq!(
            distribute_levels(&view(2, 3, 0.0, 0.0), true),
            (false, true)
        );
        // 1 sink now, 0.2 net logins/s over ΔT = 10 s: 3 within ΔT, at a login.
        assert!(distribute_levels(&view(1, 3, 0.3, 0.1), true).0);
        // Between logins the prediction alone does not set it.
        assert_eq!(
            distribute_levels(&view(1, 3, 0.3, 0.1), false),
            (false, false)
        );
        // Draining: the prediction never adds load.
        assert_eq!(
            distribute_levels(&view(2, 3, 0.0, 5.0), true),
            (false, true)
        );
        // Between the levels: neither.
        assert_eq!(
            distribute_levels(&view(2, 10, 0.75, 0.0), true),
            (false, false)
        );
    }

    #[test]
    fn consolidate_needs_draining_and_low_load() {
        assert_eq!(consolidate_levels(&view(1, 3, 0.0, 0.5), 1), (true, false));
        // Not draining: no CONSOLIDATE ([0062]).
        assert!(!consolidate_levels(&view(1, 3, 0.0, 0.0), 1).0);
        // Above the threshold (P32 at 2 in figure 4 stays).
        assert_eq!(consolidate_levels(&view(2, 3, 0.0, 0.5), 1), (false, true));
    }
}
