use super::super::{Overlay, ProxyModel, Shape};
use super::*;

const BOTH: [ProxyModel; 2] = [ProxyModel::Agent, ProxyModel::Synthetic];

fn config(seed: u64, proxies: ProxyModel) -> SimConfig {
    SimConfig {
        seed,
        proxies,
        overlay: Overlay {
            regions: 2,
            tier_sizes: vec![2, 4, 20],
            capacity: 50,
            bits_per_sec: 10_000_000_000,
            origins: 1,
        },
        core: control::core::Config {
            delta_t_ms: 2_000,
            heartbeat_timeout_ms: 3_000,
            heartbeat_interval_ms: 500,
            ..control::core::Config::default()
        },
        bitrate_bps: 1_000_000,
        activation_delay_us: 500_000,
        control_delay_us: 10_000,
        reconnect_delay_us: 200_000,
        crashes: vec![],
        sample_us: 1_000_000,
        progress: false,
        log_decisions: false,
    }
}

fn flash(viewers: u64) -> Trace {
    Trace::generate(
        &Shape::Flash {
            viewers,
            ramp: 20.0,
            end: 40.0,
            leave: 5.0,
        },
        1,
        0.0,
        2,
        5,
    )
}

#[test]
fn a_crowd_within_capacity_is_served() {
    for model in BOTH {
        let r = simulate(&config(1, model), &flash(1500));
        assert_eq!(r.logins, 1500);
        assert_eq!(r.rejected, 0, "{model:?}\n{}", r.table());
        assert_eq!(r.peak_viewers, 1500, "{model:?}\n{}", r.table());
        assert!(r.activations >= 1500 / 50, "{model:?}\n{}", r.table());
        assert_eq!(r.series.last().map(|s| s.viewers), Some(0));
        assert!(r.proxy_seconds > 0.0 && r.core_events > 1000);
        assert_eq!(r.max_tier, 3, "{model:?}");
    }
}

#[test]
fn synthetic_proxies_unwind_the_tree_when_all_left() {
    let r = simulate(&config(1, ProxyModel::Synthetic), &flash(1500));
    assert_eq!(r.activations, r.deactivations, "{}", r.table());
}

#[test]
fn the_same_seed_gives_the_same_run() {
    for model in BOTH {
        let a = simulate(&config(3, model), &flash(600));
        let b = simulate(&config(3, model), &flash(600));
        let figures = |r: &Report| {
            (
                r.rejected,
                r.delayed,
                r.activations,
                r.deactivations,
                r.viewer_migrations,
                r.proxy_seconds.to_bits(),
                r.sim_events,
                r.core_events,
                r.agent_events,
                r.pnc.by_kind.clone(),
                r.series.iter().map(|s| s.viewers).collect::<Vec<_>>(),
            )
        };
        assert_eq!(figures(&a), figures(&b), "{model:?}");
    }
}

#[test]
fn more_viewers_than_the_overlay_holds_are_rejected_not_overloaded() {
    // 2 regions × 20 bottom machines × 50 connections = 2000 places.
    for model in BOTH {
        let r = simulate(&config(1, model), &flash(3000));
        assert!(r.rejected >= 1000, "{model:?}\n{}", r.table());
        assert!(r.peak_viewers <= 2000, "{model:?}\n{}", r.table());
    }
}

#[test]
fn viewers_of_a_crashed_machine_resolve_again() {
    for model in BOTH {
        let mut cfg = config(2, model);
        // Relays 6..26 are region 0's bottom tier (after 2 in tier 1 and 4 in tier 2); the
        // first six of them crash mid-event, some of them serving viewers.
        cfg.crashes = (6..12).map(|k| (25_000_000, k)).collect();
        let r = simulate(&cfg, &flash(1000));
        assert!(r.crashed_viewers > 0, "{model:?}\n{}", r.table());
        assert!(r.viewer_migrations >= r.crashed_viewers);
        assert_eq!(r.rejected, 0, "{model:?}\n{}", r.table());
    }
}
