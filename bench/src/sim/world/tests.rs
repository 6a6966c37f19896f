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
        patience_us: 0,
        anticipate: None,
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

/// Every proxy activated is deactivated once all viewers left, with agents too (the core ends
/// the reservations of moved viewers at the agents' heartbeats, and retires standbys no viewer
/// came to), and no viewer was ever sent beyond a machine's capacity.
#[test]
fn the_tree_unwinds_when_all_left() {
    for model in BOTH {
        let r = simulate(&config(1, model), &flash(1500));
        assert_eq!(r.activations, r.deactivations, "{model:?}\n{}", r.table());
        assert_eq!(
            r.series.last().map(|s| s.active_proxies),
            Some(0),
            "{model:?}"
        );
        assert_eq!(r.overloaded_logins, 0, "{model:?}\n{}", r.table());
    }
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
    // 2 regions × 20 bottom machines × 50 connections = 2000 places. The core counts every
    // viewer it redirects against its proxy until the proxy's LOGIN or heartbeat counts it
    // (`control::core` reservations), so no machine is sent a viewer beyond its capacity, with
    // agents (viewer counts in heartbeats only) as with synthetic proxies (a LOGIN per viewer):
    // the excess is refused.
    for model in BOTH {
        let r = simulate(&config(1, model), &flash(3000));
        assert_eq!(r.overloaded_logins, 0, "{model:?}\n{}", r.table());
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

#[test]
fn agents_send_no_message_per_viewer_synthetic_proxies_one_each() {
    let agent = simulate(&config(4, ProxyModel::Agent), &flash(1500));
    let kinds = &agent.pnc.by_kind;
    assert!(
        !kinds.contains_key("login_viewer") && !kinds.contains_key("logoff_viewer"),
        "{kinds:?}"
    );
    assert!(
        kinds["heartbeat"] > 0 && kinds["login_proxy"] > 0,
        "{kinds:?}"
    );
    let synthetic = simulate(&config(4, ProxyModel::Synthetic), &flash(1500));
    let admitted = synthetic.logins - synthetic.rejected;
    assert!(synthetic.pnc.by_kind["login_viewer"] >= admitted);
    assert!(agent.pnc.messages < synthetic.pnc.messages);
}

/// Issue 10: the PNC's message rate is bounded by proxies × heartbeat rate, not by viewers.
/// Over a run of T seconds each agent sends at most T/heartbeat + 1 periodic heartbeats, one
/// DISTRIBUTE or CONSOLIDATE per phase (a phase starts at an activation or a phase order), each
/// with a heartbeat of its own, and one child-proxy LOGIN or LOGOFF per link its data plane
/// opened or closed.
#[test]
fn agent_messages_to_the_pnc_are_bounded_by_heartbeats_and_tree_changes() {
    for viewers in [300, 1500] {
        let cfg = config(5, ProxyModel::Agent);
        let r = simulate(&cfg, &flash(viewers));
        let agents = r.proxies + u64::from(cfg.overlay.origins);
        let beats = r.simulated_s / (f64::from(cfg.core.heartbeat_interval_ms) / 1000.0);
        let periodic = agents as f64 * (beats.floor() + 2.0);
        let tree_changes = 2 * (r.activations + r.phase_orders) + r.child_links_changed;
        assert!(
            r.pnc.messages as f64 <= periodic + tree_changes as f64,
            "{} messages > {periodic} + {tree_changes}\n{}",
            r.pnc.messages,
            r.table()
        );
        let decisions = r.pnc.by_kind.get("distribute").unwrap_or(&0)
            + r.pnc.by_kind.get("consolidate").unwrap_or(&0);
        let heartbeats = r.pnc.by_kind["heartbeat"];
        assert!(
            heartbeats as f64 <= periodic + decisions as f64,
            "{heartbeats} heartbeats\n{}",
            r.table()
        );
    }
}

/// An agent is driven only at its own `poll_timeout()`: a machine that carries nothing costs one
/// input per heartbeat interval, however many machines there are.
#[test]
fn idle_agents_cost_one_input_per_heartbeat() {
    let mut cfg = config(6, ProxyModel::Agent);
    cfg.overlay.tier_sizes = vec![20, 200, 2000];
    let r = simulate(&cfg, &flash(20));
    let agents = r.proxies + u64::from(cfg.overlay.origins);
    let beats = (r.simulated_s + r.warmup_s) / (f64::from(cfg.core.heartbeat_interval_ms) / 1000.0);
    // Per agent: its periodic timeouts and the Welcome round trip (start, Connected, Welcome).
    let idle = agents as f64 * (beats.ceil() + 4.0);
    assert!(
        (r.agent_events as f64) < idle + 200.0 * r.logins as f64,
        "{} inputs for {agents} agents over {beats:.0} heartbeats\n{}",
        r.agent_events,
        r.table()
    );
}

/// The yardstick of issue 11: with `growth = one_at_a_time` the same core and proxies react
/// only, so the crowd waits for activations the seed's prediction starts ahead of it.
#[test]
fn reacting_one_proxy_at_a_time_makes_the_crowd_wait_where_prediction_does_not() {
    for model in BOTH {
        let seed = simulate(&config(1, model), &flash(1500));
        let mut cfg = config(1, model);
        cfg.core.growth = control::core::Growth::OneAtATime;
        let reactive = simulate(&cfg, &flash(1500));
        assert_eq!((reactive.logins, reactive.rejected), (1500, 0), "{model:?}");
        assert!(
            reactive.delayed > 2 * seed.delayed,
            "{model:?}: delayed {} reacting vs {} predicting\n{}\n{}",
            reactive.delayed,
            seed.delayed,
            reactive.table(),
            seed.table()
        );
        assert!(
            reactive.login_wait_ms.p99 >= seed.login_wait_ms.p99,
            "{model:?}: p99 wait {} reacting vs {} predicting",
            reactive.login_wait_ms.p99,
            seed.login_wait_ms.p99
        );
    }
}

/// Issue 11: viewers are not infinitely patient. Where reacting one proxy at a time makes the
/// crowd wait past their patience, they leave without a byte: refused in all but name, and
/// counted apart from the PNC's refusals. Predicting farms loses fewer of them. (The patience,
/// 300 ms, is below this small world's activation delay of 500 ms, as a viewer's few seconds
/// are below a real proxy's ΔT: whoever waits for an activation gives up.)
#[test]
fn impatient_viewers_give_up_more_often_when_the_overlay_reacts_one_proxy_at_a_time() {
    for model in BOTH {
        let mut cfg = config(1, model);
        cfg.patience_us = 300_000;
        let seed = simulate(&cfg, &flash(1500));
        cfg.core.growth = control::core::Growth::OneAtATime;
        let reactive = simulate(&cfg, &flash(1500));
        eprintln!("{model:?}\n{}{}", seed.table(), reactive.table());
        assert!(
            reactive.gave_up > 2 * seed.gave_up.max(1),
            "{model:?}: {} gave up reacting vs {} predicting",
            reactive.gave_up,
            seed.gave_up
        );
        for r in [&seed, &reactive] {
            assert!(
                r.login_wait_ms.max <= 300.0 + 1.0,
                "{model:?}: a viewer served after its patience ran out\n{}",
                r.table()
            );
            assert_eq!(r.series.last().map(|s| s.viewers), Some(0));
        }
    }
}

/// Issue 11: with `growth = predictive_fill` (the default) a proxy whose DISTRIBUTE was served
/// keeps taking viewers until full, so the same crowd needs fewer machine-seconds than with the
/// seed's [0030] as written (`predictive`: served proxies stop at once, their room unused), and
/// nobody is admitted beyond a proxy's capacity.
#[test]
fn served_proxies_that_fill_up_cost_fewer_proxy_seconds_and_overfill_none() {
    for model in BOTH {
        // Room to spare, and an sp short enough that [0059] does not activate every machine
        // of the region first (as at sp = 60 s in the 10^6 run): then what differs is the
        // served proxies' unused room.
        let roomy = |model| {
            let mut cfg = config(1, model);
            cfg.overlay.tier_sizes = vec![2, 4, 60];
            cfg.core.sp_ms = 4_000;
            cfg
        };
        let mut cfg = roomy(model);
        cfg.core.growth = control::core::Growth::Predictive;
        let seed = simulate(&cfg, &flash(1500));
        cfg.core.growth = control::core::Growth::PredictiveFill;
        let fill = simulate(&cfg, &flash(1500));
        eprintln!("{model:?}\n{}{}", seed.table(), fill.table());
        assert_eq!((fill.logins, fill.rejected), (1500, 0), "{model:?}");
        assert_eq!(fill.overloaded_logins, 0, "{model:?}\n{}", fill.table());
        assert!(
            fill.proxy_seconds < seed.proxy_seconds,
            "{model:?}: {:.0} proxy-seconds filling vs {:.0} stopping at once",
            fill.proxy_seconds,
            seed.proxy_seconds
        );
        assert_eq!(fill.series.last().map(|s| s.viewers), Some(0));
    }
}

/// Issue 11, [0033]: told ahead what crowd to expect, the coordinator has the first ΔT of it
/// ready when it comes, and the predictive farms (with served proxies filling up) take over from
/// there: impatient viewers (300 ms, below the 500 ms activation delay) are all served. Reacting
/// one proxy at a time, told the same, serves the first ΔT too and then loses those who arrive
/// while each next proxy starts.
#[test]
fn an_anticipated_crowd_is_served_even_when_impatient_and_reacting_one_at_a_time_is_not() {
    for model in BOTH {
        let mut cfg = config(1, model);
        cfg.patience_us = 300_000;
        cfg.overlay.tier_sizes = vec![2, 4, 60];
        cfg.anticipate = Some(crate::sim::Anticipation {
            estimate: 1.0,
            lead_us: cfg.activation_delay_us + 500_000,
        });
        cfg.core.growth = control::core::Growth::PredictiveFill;
        let fill = simulate(&cfg, &flash(3000));
        cfg.core.growth = control::core::Growth::OneAtATime;
        let reactive = simulate(&cfg, &flash(3000));
        cfg.anticipate = None;
        cfg.core.growth = control::core::Growth::PredictiveFill;
        let surprised = simulate(&cfg, &flash(3000));
        eprintln!(
            "{model:?}\n{}{}{}",
            fill.table(),
            reactive.table(),
            surprised.table()
        );
        assert_eq!((fill.logins, fill.rejected), (3000, 0), "{model:?}");
        // < 0.1% of the crowd lost, as issue 11 asks of the seed's policy.
        assert!(fill.gave_up <= 2, "{model:?}: {} gave up", fill.gave_up);
        assert_eq!(fill.overloaded_logins, 0, "{model:?}");
        assert!(
            reactive.gave_up > 100 * fill.gave_up.max(1),
            "{model:?}: {} gave up reacting vs {} predicting",
            reactive.gave_up,
            fill.gave_up
        );
        // Without the announcement the first viewers of each region wait for the first path.
        assert!(
            surprised.gave_up > fill.gave_up,
            "{model:?}: {} gave up unannounced vs {} announced",
            surprised.gave_up,
            fill.gave_up
        );
        assert_eq!(fill.series.last().map(|s| s.viewers), Some(0));
    }
}
