//! Yardsticks for the seed's policy on the same trace and overlay, computed without a
//! coordinator (issue 11, item 2): **static** provisioning for the peak, and an **oracle** that
//! knows the trace.
//!
//! Both build the tree the seed builds at best, one chain per stream and region: the last tier
//! holds ⌈v/C⌉ machines for `v` viewers of capacity `C`, each tier above ⌈children/C⌉, and at
//! least one machine per tier while the stream has a viewer there ([0032]). Machines are not
//! packed across streams (the seed shares machines between streams only through their capacity,
//! [0043]; packing would make the yardstick harder than any online policy can reach).
//!
//! - **oracle**: every machine is activated exactly `activation_delay` before its first viewer
//!   arrives and deactivated the moment it is no longer needed, so no viewer waits beyond the
//!   connect; its cost is the time machines are needed plus one activation delay per
//!   activation. No online policy can do better on that tree.
//! - **static**: each stream and region keeps its peak's machines from one activation delay
//!   before the trace's first event to its last: never a wait, the largest cost.
//!
//! A login is refused when the tree it would need no longer fits the region's tiers (all
//! streams of the region together), as the seed's policy would find no machine either.

use std::collections::BTreeMap;

use super::SimConfig;
use super::report::{Report, Sample, WaitMs};
use super::trace::{Kind, Trace};

/// Which yardstick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Baseline {
    Static,
    Oracle,
}

impl Baseline {
    pub fn name(self) -> &'static str {
        match self {
            Baseline::Static => "static",
            Baseline::Oracle => "oracle",
        }
    }
}

/// Machines per tier (index 0 is tier 1) that carry `viewers` of one stream in one region.
fn chain(viewers: u64, capacity: u64, tiers: usize) -> Vec<u64> {
    let mut out = vec![0; tiers];
    if viewers == 0 || tiers == 0 {
        return out;
    }
    let c = capacity.max(1);
    let mut below = viewers;
    for t in (0..tiers).rev() {
        out[t] = below.div_ceil(c).max(1);
        below = out[t];
    }
    out
}

/// Runs `policy` over `trace` on `cfg`'s overlay.
pub fn run(policy: Baseline, cfg: &SimConfig, trace: &Trace) -> Report {
    let started = std::time::Instant::now();
    let tiers = cfg.overlay.tier_sizes.len();
    let capacity = u64::from(cfg.overlay.capacity);
    let sizes: Vec<u64> = cfg
        .overlay
        .tier_sizes
        .iter()
        .map(|&n| u64::from(n))
        .collect();
    let start_us = trace.rows.first().map_or(0, |r| r.at_us);
    let end_us = trace.end_us();

    // Static needs each (stream, region)'s peak first: one pass of the same admission.
    let peaks = match policy {
        Baseline::Static => Some(admit_all(trace, tiers, capacity, &sizes, |_, _, _| {})),
        Baseline::Oracle => None,
    };

    let mut r = Report {
        policy: policy.name().into(),
        // No proxy runs anything: the yardstick is computed, not simulated.
        proxy_model: String::new(),
        seed: cfg.seed,
        proxies: cfg.overlay.relays(),
        ..Report::default()
    };
    let sample_us = cfg.sample_us.max(1);
    let mut next_sample = start_us;
    let mut machines_now = 0u64;
    let mut viewers_now = 0u64;
    let mut last_us = start_us;
    let mut machine_us: u128 = 0;
    if let Some(peaks) = &peaks {
        machines_now = peaks
            .values()
            .map(|&v| chain(v, capacity, tiers).iter().sum::<u64>())
            .sum();
        r.activations = machines_now;
        r.deactivations = machines_now;
        r.peak_active_proxies = machines_now;
    }
    let series = &mut r.series;
    let (mut logins, mut rejected, mut unmatched, mut activations, mut peak_viewers) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut peak_machines = machines_now;
    admit_all(trace, tiers, capacity, &sizes, |row_at, ev, needed| {
        // Time series and cost up to this event, at the state before it.
        while next_sample <= row_at {
            series.push(Sample {
                t_s: next_sample.saturating_sub(start_us) as f64 / 1e6,
                viewers: viewers_now,
                waiting: 0,
                active_proxies: machines_now,
                rejected,
                pnc_per_s: 0.0,
            });
            next_sample += sample_us;
        }
        if policy == Baseline::Oracle {
            machine_us += u128::from(machines_now) * u128::from(row_at - last_us);
        }
        last_us = row_at;
        match ev {
            Admission::Admitted => {
                logins += 1;
                viewers_now += 1;
            }
            Admission::Refused => {
                logins += 1;
                rejected += 1;
            }
            Admission::Left => viewers_now -= 1,
            Admission::Unmatched => unmatched += 1,
        }
        peak_viewers = peak_viewers.max(viewers_now);
        if policy == Baseline::Oracle {
            if needed > machines_now {
                activations += needed - machines_now;
            }
            machines_now = needed;
            peak_machines = peak_machines.max(machines_now);
        }
    });
    r.logins = logins;
    r.rejected = rejected;
    r.unmatched_logoffs = unmatched;
    r.peak_viewers = peak_viewers;
    let delay_s = cfg.activation_delay_us as f64 / 1e6;
    match policy {
        Baseline::Oracle => {
            r.activations = activations;
            r.deactivations = activations;
            r.peak_active_proxies = peak_machines;
            r.proxy_seconds = machine_us as f64 / 1e6 + activations as f64 * delay_s;
        }
        Baseline::Static => {
            let span_s = end_us.saturating_sub(start_us) as f64 / 1e6 + delay_s;
            r.proxy_seconds = machines_now as f64 * span_s;
        }
    }
    r.max_tier = if r.peak_active_proxies > 0 {
        tiers as u32
    } else {
        0
    };
    r.rejected_pct = if logins > 0 {
        rejected as f64 * 100.0 / logins as f64
    } else {
        0.0
    };
    // Every admitted viewer finds its machine ready: only the connect after the redirect.
    let connect_ms = cfg.control_delay_us as f64 / 1e3;
    r.login_wait_ms = WaitMs {
        p50: connect_ms,
        p99: connect_ms,
        max: connect_ms,
    };
    r.simulated_s = end_us.saturating_sub(start_us) as f64 / 1e6;
    r.sim_events = trace.rows.len() as u64;
    r.wall_s = started.elapsed().as_secs_f64();
    r
}

/// What became of one trace row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Admission {
    Admitted,
    Refused,
    Left,
    Unmatched,
}

/// Walks the trace: a login is admitted if the region's tiers still hold the chains every
/// stream of the region needs with it. `each(at_us, what, machines needed after it)` sees every
/// row. Returns the largest audience of each (stream, region).
fn admit_all(
    trace: &Trace,
    tiers: usize,
    capacity: u64,
    sizes: &[u64],
    mut each: impl FnMut(u64, Admission, u64),
) -> BTreeMap<(u32, u32), u64> {
    let mut viewers: BTreeMap<(u32, u32), u64> = BTreeMap::new();
    let mut peaks: BTreeMap<(u32, u32), u64> = BTreeMap::new();
    // Machines in use per (region, tier), and in all.
    let mut used: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
    let mut total = 0u64;
    for row in &trace.rows {
        let key = (row.stream, row.region);
        let v = viewers.get(&key).copied().unwrap_or(0);
        let (next, what) = match row.kind {
            Kind::Login => (v + 1, Admission::Admitted),
            Kind::Logoff if v == 0 => (0, Admission::Unmatched),
            Kind::Logoff => (v - 1, Admission::Left),
        };
        let before = chain(v, capacity, tiers);
        let after = chain(next, capacity, tiers);
        let region = used.entry(row.region).or_insert_with(|| vec![0; tiers]);
        let fits = (0..tiers).all(|t| region[t] - before[t] + after[t] <= sizes[t]);
        let what = if what == Admission::Admitted && !fits {
            Admission::Refused
        } else {
            for t in 0..tiers {
                region[t] = region[t] - before[t] + after[t];
            }
            total = total - before.iter().sum::<u64>() + after.iter().sum::<u64>();
            viewers.insert(key, next);
            let p = peaks.entry(key).or_insert(0);
            *p = (*p).max(next);
            what
        };
        each(row.at_us, what, total);
    }
    peaks
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::trace::Row;
    use crate::sim::{Overlay, ProxyModel};

    fn cfg(tiers: Vec<u32>, capacity: u32) -> SimConfig {
        SimConfig {
            seed: 1,
            proxies: ProxyModel::Agent,
            overlay: Overlay {
                regions: 1,
                tier_sizes: tiers,
                capacity,
                bits_per_sec: 0,
                origins: 1,
            },
            core: control::core::Config::default(),
            bitrate_bps: 0,
            activation_delay_us: 1_000_000,
            control_delay_us: 20_000,
            reconnect_delay_us: 0,
            patience_us: 0,
            anticipate: None,
            crashes: vec![],
            sample_us: 1_000_000,
            progress: false,
            log_decisions: false,
        }
    }

    fn trace(rows: &[(u64, Kind)]) -> Trace {
        Trace {
            streams: vec!["s".into()],
            regions: vec!["r".into()],
            rows: rows
                .iter()
                .map(|&(s, kind)| Row {
                    at_us: s * 1_000_000,
                    kind,
                    stream: 0,
                    region: 0,
                })
                .collect(),
        }
    }

    #[test]
    fn a_chain_has_one_machine_per_tier_and_grows_from_the_bottom() {
        assert_eq!(chain(0, 3, 3), vec![0, 0, 0]);
        assert_eq!(chain(1, 3, 3), vec![1, 1, 1]);
        assert_eq!(chain(7, 3, 3), vec![1, 1, 3]);
        assert_eq!(chain(10, 3, 3), vec![1, 2, 4]);
    }

    #[test]
    fn the_oracle_pays_for_what_is_needed_and_static_for_the_peak() {
        use Kind::{Login, Logoff};
        // 4 viewers of capacity 3: 1+1+1 machines for the first three, 1+1+2 for the fourth.
        let t = trace(&[
            (0, Login),
            (0, Login),
            (0, Login),
            (10, Login),
            (20, Logoff),
            (30, Logoff),
            (30, Logoff),
            (30, Logoff),
        ]);
        let c = cfg(vec![3, 3, 3], 3);
        let o = run(Baseline::Oracle, &c, &t);
        assert_eq!((o.logins, o.rejected), (4, 0));
        // 3 machines for 10 s, 4 for 10 s, 3 for 10 s, plus 4 activations of 1 s.
        assert!((o.proxy_seconds - (30.0 + 40.0 + 30.0 + 4.0)).abs() < 1e-9);
        assert_eq!((o.activations, o.peak_active_proxies), (4, 4));
        let s = run(Baseline::Static, &c, &t);
        // The peak's 4 machines for the 30 s of the trace and the 1 s before it.
        assert!((s.proxy_seconds - 4.0 * 31.0).abs() < 1e-9);
        assert!(s.proxy_seconds > o.proxy_seconds);
    }

    #[test]
    fn a_login_the_region_cannot_hold_is_refused_and_its_logoff_finds_no_one() {
        use Kind::{Login, Logoff};
        let t = trace(&[
            (0, Login),
            (1, Login),
            (2, Login),
            (3, Logoff),
            (4, Logoff),
            (5, Logoff),
        ]);
        // One machine per tier, capacity 2: the third viewer has no room.
        let o = run(Baseline::Oracle, &cfg(vec![1, 1], 2), &t);
        assert_eq!((o.logins, o.rejected, o.unmatched_logoffs), (3, 1, 1));
    }
}
