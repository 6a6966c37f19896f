//! One test per coordinator rule beyond the figures.

mod common;

use common::Net;
use control::core::*;
use control::protocol::*;

const S: u32 = 1;

/// The seed's [0030] as written: a proxy whose DISTRIBUTE is served stops taking viewers at
/// once (the default, `Growth::PredictiveFill`, lets it fill up first).
fn stop_at_once() -> Config {
    Config {
        growth: Growth::Predictive,
        ..Config::default()
    }
}

/// S plus `per_tier[t]` proxies in tier t+1 (ids 10·(t+1)+j, j from 1), capacities `caps[t]`.
fn network(config: Config, per_tier: &[u32], caps: &[u32]) -> Net {
    let mut net = Net::new(config);
    net.register(S, None, 1000, &[]);
    for (t, (&n, &cap)) in per_tier.iter().zip(caps).enumerate() {
        let tier = t as u32 + 1;
        for j in 1..=n {
            net.register(tier * 10 + j, None, cap, &[(S, tier * 20 - 10)]);
        }
    }
    net.announce(S, "demo", "src");
    net
}

fn sends(out: &[Command], to: u32) -> Vec<&PncMsg> {
    out.iter()
        .filter_map(|c| match c {
            Command::Send { to: t, msg } if t.0 == to => Some(msg),
            _ => None,
        })
        .collect()
}

fn parent_ids(peers: &[Peer]) -> Vec<u32> {
    peers.iter().map(|p| p.id.0).collect()
}

fn logs(out: &[Command], rule: Rule) -> Vec<String> {
    out.iter()
        .filter_map(|c| match c {
            Command::Log(d) if d.rule == rule => Some(d.reason.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn link_downgrade_switches_to_an_alternate_parent() {
    // Figure 2(d): P21 feeds P31–P33, P22 is a standby under P11.
    let mut net = network(Config::default(), &[3, 3, 3], &[3, 3, 3]);
    for (i, t) in (100..=700).step_by(100).enumerate() {
        net.at(t);
        let p = net.viewer_joins("demo", None);
        assert_eq!(p, [31, 31, 31, 32, 32, 32, 33][i]);
    }
    net.at(800);
    let out = net.msg(
        33,
        ProxyMsg::LinkDowngrade {
            stream: "demo".into(),
            parent: ProxyId(21),
        },
    );
    net.check_invariants(&out);
    // [0066] P′ = P22, the other active proxy of the parent tier.
    assert!(
        matches!(sends(&out, 33)[..], [PncMsg::SwitchToParent { parents, .. }] if parent_ids(parents) == vec![22])
    );
    assert_eq!(net.pair("demo", 33).unwrap().parents, vec![ProxyId(22)]);
    assert_eq!(net.pair("demo", 21).unwrap().load, 2);
    let p22 = net.pair("demo", 22).unwrap();
    assert!(!p22.standby, "P22 joined P11 with its first child");
    assert_eq!(net.pair("demo", 11).unwrap().load, 2);
}

#[test]
fn link_downgrade_moves_children_to_a_sibling() {
    let mut net = network(stop_at_once(), &[1, 1, 3], &[10, 10, 6]);
    net.at(100);
    assert_eq!(net.viewer_joins("demo", None), 31);
    net.at(200);
    assert_eq!(net.viewer_joins("demo", None), 31);
    // P31 asks for help early: P32 is activated and takes the next viewer.
    net.msg(
        31,
        ProxyMsg::Distribute {
            stream: "demo".into(),
        },
    );
    net.at(300);
    assert_eq!(net.viewer_joins("demo", None), 32);
    net.at(400);
    let out = net.msg(
        31,
        ProxyMsg::LinkDowngrade {
            stream: "demo".into(),
            parent: ProxyId(21),
        },
    );
    net.check_invariants(&out);
    // No other tier-2 proxy is active: the sibling S′ = P32 takes P31's viewers.
    assert!(
        logs(&out, Rule::LinkDowngrade)[0].contains("sibling S′ = P32"),
        "{out:#?}"
    );
    assert!(
        matches!(sends(&out, 31)[..], [PncMsg::RedirectChildren { to, .. }] if to.id == ProxyId(32))
    );
    net.logoff(31, "demo");
    net.login(32, "demo");
    let out = net.logoff(31, "demo");
    assert!(matches!(sends(&out, 31)[..], [PncMsg::Deactivate { .. }]));
    net.login(32, "demo");
    assert!(net.pair("demo", 31).is_none());
    assert_eq!(net.pair("demo", 32).unwrap().viewers, 3);
}

#[test]
fn link_downgrade_activates_a_new_parent_when_nothing_else_exists() {
    let mut net = network(Config::default(), &[1, 2, 1], &[10, 10, 10]);
    net.at(100);
    assert_eq!(net.viewer_joins("demo", None), 31);
    net.at(200);
    let out = net.msg(
        31,
        ProxyMsg::LinkDowngrade {
            stream: "demo".into(),
            parent: ProxyId(21),
        },
    );
    net.check_invariants(&out);
    // No P′, no sibling S′: P″ = P22 is activated under P11 and P31 switches to it.
    assert!(
        matches!(sends(&out, 22)[0], PncMsg::Activate { tier: 2, parents, .. } if parent_ids(parents) == vec![11])
    );
    // It monitors tier 2 as it is now: P22 ([0053]).
    assert!(
        matches!(sends(&out, 31)[..], [PncMsg::SwitchToParent { parents, .. }, PncMsg::MonitorList { peers, .. }] if parent_ids(parents) == vec![22] && parent_ids(peers) == vec![22])
    );
    // P21 lost its only child and goes idle.
    assert!(matches!(sends(&out, 21)[..], [PncMsg::Deactivate { .. }]));
    assert_eq!(net.pair("demo", 31).unwrap().parents, vec![ProxyId(22)]);
}

#[test]
fn crash_found_by_heartbeat_timeout_moves_children_per_stream() {
    let config = Config {
        heartbeat_timeout_ms: 15_000,
        ..Config::default()
    };
    let mut net = network(config, &[3, 3, 3], &[3, 3, 3]);
    for t in (100..=700).step_by(100) {
        net.at(t);
        net.viewer_joins("demo", None);
    }
    // Everyone but P21 keeps sending heartbeats.
    let mut out = Vec::new();
    for s in 0..=20u64 {
        net.at(800 + s);
        for id in [1, 11, 12, 13, 22, 23, 31, 32, 33] {
            net.msg(
                id,
                ProxyMsg::Heartbeat {
                    streams: vec![],
                    connections: 0,
                    bits_per_sec: 0,
                    rtts: vec![],
                },
            );
        }
        out.extend(net.handle(Event::Tick));
    }
    net.check_invariants(&out);
    assert_eq!(logs(&out, Rule::Crash).len(), 4, "{out:#?}");
    // [0066] the children of P21 move to the active tier-2 proxy P22.
    for child in [31, 32, 33] {
        assert!(
            matches!(sends(&out, child)[..], [PncMsg::SwitchToParent { parents, .. }, PncMsg::MonitorList { peers, .. }] if parent_ids(parents) == vec![22] && parent_ids(peers) == vec![22, 23])
        );
        assert_eq!(net.pair("demo", child).unwrap().parents, vec![ProxyId(22)]);
    }
    assert!(net.pair("demo", 21).is_none());
    assert_eq!(net.core.counters().crashes, 1);
    // Messages from the dead proxy are refused until it registers again.
    let out = net.msg(
        21,
        ProxyMsg::Distribute {
            stream: "demo".into(),
        },
    );
    assert_eq!(logs(&out, Rule::Protocol).len(), 1);
}

#[test]
fn crash_with_no_active_sibling_activates_a_replacement() {
    let mut net = network(Config::default(), &[1, 2, 1], &[10, 10, 10]);
    net.at(100);
    net.viewer_joins("demo", None);
    let out = net.handle(Event::Remove { proxy: ProxyId(21) });
    net.check_invariants(&out);
    assert!(matches!(
        sends(&out, 22)[0],
        PncMsg::Activate { tier: 2, .. }
    ));
    assert_eq!(net.pair("demo", 31).unwrap().parents, vec![ProxyId(22)]);
}

#[test]
fn redundant_parents_give_each_proxy_k_parents() {
    let config = Config {
        redundant_parents: 2,
        ..Config::default()
    };
    let mut net = network(config, &[3, 3, 3], &[10, 10, 10]);
    net.at(100);
    assert_eq!(net.viewer_joins("demo", None), 31);
    let mut parents = net.pair("demo", 31).unwrap().parents;
    parents.sort();
    assert_eq!(parents, vec![ProxyId(21), ProxyId(22)]);
    for p in [21, 22] {
        let mut pp = net.pair("demo", p).unwrap().parents;
        pp.sort();
        assert_eq!(pp, vec![ProxyId(11), ProxyId(12)], "P{p}");
        assert_eq!(net.pair("demo", p).unwrap().load, 1);
    }
    // Tier 1 pulls from the single origin.
    assert_eq!(net.pair("demo", 11).unwrap().parents, vec![ProxyId(S)]);
    assert_eq!(net.pair("demo", 11).unwrap().load, 2);
    net.check_invariants(&[]);
    // Losing one parent keeps the other ([0044]).
    let out = net.handle(Event::Remove { proxy: ProxyId(21) });
    net.check_invariants(&out);
    assert!(net.pair("demo", 31).unwrap().parents.contains(&ProxyId(22)));
}

/// [0039]–[0041]: farm sizes from the arrival rate of DISTRIBUTE requests. Capacity 1, so every
/// viewer fills its proxy; arrivals far apart, then fast.
#[test]
fn farm_size_follows_the_arrival_rate_and_farms_act_as_one() {
    let mut net = network(stop_at_once(), &[1, 1, 20], &[100, 100, 1]);
    let activated = |out: &[Command]| -> Vec<u32> {
        out.iter()
            .filter_map(|c| match c {
                Command::Send {
                    to,
                    msg: PncMsg::Activate { tier: 3, .. },
                } => Some(to.0),
                _ => None,
            })
            .collect()
    };
    net.at(100);
    let p = net.resolve("demo", None, None).unwrap();
    let out = net.login(p, "demo");
    // First DISTRIBUTE: one proxy.
    assert_eq!(activated(&out).len(), 1);
    net.at(200);
    let p = net.resolve("demo", None, None).unwrap();
    let out = net.login(p, "demo");
    // Second: the previous size (the average starts here): 1.
    assert_eq!(activated(&out).len(), 1);
    net.at(210);
    let p = net.resolve("demo", None, None).unwrap();
    let out = net.login(p, "demo");
    // Third: new rate 1/10 s, average (0.1 + 0.5·0.01)/1.5 = 0.07; Round(1 × 0.07/0.01) = 7.
    let farm = activated(&out);
    assert_eq!(farm.len(), 7, "{:?}", logs(&out, Rule::FarmSize));
    assert!(logs(&out, Rule::FarmSize)[0].contains("Round(…) = 7"));
    // The farm takes viewers round-robin ([0042]).
    let view = net.pair("demo", farm[0]).unwrap();
    assert_eq!(view.farm.len(), 7);
    net.at(211);
    let first = net.resolve("demo", None, None).unwrap();
    let second = net.resolve("demo", None, None).unwrap();
    let third = net.resolve("demo", None, None).unwrap();
    assert!(first != second && second != third && farm.contains(&first) && farm.contains(&second));
    // One member fills: the DISTRIBUTE is the farm's; every member stops accepting together.
    let out = net.login(first, "demo");
    let stopped = out
        .iter()
        .filter(|c| {
            matches!(
                c,
                Command::Send {
                    msg: PncMsg::StopAccepting { .. },
                    ..
                }
            )
        })
        .count();
    assert_eq!(stopped, 7);
    assert!(
        farm.iter()
            .all(|&f| net.pair("demo", f).unwrap().phase == Phase::Contraction)
    );
    // New rate 7/1 s: Round(7 × 4.69/0.07) is far more than the idle proxies: all of them.
    assert_eq!(activated(&out).len(), 10);
    net.check_invariants(&out);
}

#[test]
fn predicted_logins_distribute_before_the_proxy_is_full() {
    let mut net = network(Config::default(), &[1, 1, 3], &[100, 100, 40]);
    // 5 viewers a second: after a few windows the smoothed rate says P31 reaches 40 within ΔT.
    let mut early = None;
    net.at(100);
    for _ in 0..40u64 {
        net.advance_ms(200);
        let Some(p) = net.resolve("demo", None, None) else {
            break;
        };
        let out = net.login(p, "demo");
        if let Some(reason) = logs(&out, Rule::Distribute)
            .into_iter()
            .find(|r| r.contains("[0054]") && r.contains("within ΔT"))
        {
            early = Some((net.pair("demo", 31).unwrap().load, reason));
            break;
        }
    }
    let (load, reason) = early.expect("a predictive DISTRIBUTE");
    assert!(load < 40, "{load}: {reason}");
}

/// One proxy in tiers 1 and 2, three of capacity 40 in tier 3, `growth = predictive_fill`.
fn filling_network() -> Net {
    let config = Config {
        growth: Growth::PredictiveFill,
        ..Config::default()
    };
    network(config, &[1, 1, 3], &[100, 100, 40])
}

/// `Growth::PredictiveFill`: P31's DISTRIBUTE, sent ΔT ahead, activates a farm (P32, P33), but
/// P31 keeps taking viewers (and the farm, still starting, gets none) until P31 is full; only
/// then is P31 stopped, pointed at the farm, with a decision that says why.
#[test]
fn a_served_proxy_keeps_taking_viewers_until_full_under_predictive_fill() {
    let mut net = filling_network();
    // The first viewer starts the path; the crowd comes once P31 has had ΔT (10 s) to start.
    net.at(100);
    assert_eq!(net.viewer_joins("demo", None), 31);
    net.at(120);
    let mut served_at = None;
    let mut stopped = None;
    for i in 0..60u32 {
        net.advance_ms(200);
        let mark = net.log.len();
        let p = net
            .resolve("demo", None, None)
            .expect("a proxy for every viewer");
        let out = net.login(p, "demo");
        net.check_invariants(&out);
        let step = &net.log[mark..];
        let load = net.pair("demo", 31).unwrap().load;
        assert!(load <= 40, "P31 over capacity: {load}");
        let stop_31 = sends(step, 31).into_iter().find_map(|m| match m {
            PncMsg::StopAccepting { redirect_to, .. } => Some(parent_ids(redirect_to)),
            _ => None,
        });
        if served_at.is_none() {
            if net.pair("demo", 32).is_some() {
                assert!(load < 40, "the DISTRIBUTE came ahead of a full P31: {load}");
                assert_eq!(stop_31, None, "P31 stopped while it had room: {step:#?}");
                served_at = Some(i);
            }
        } else if stopped.is_none() {
            if let Some(redirect) = stop_31 {
                assert_eq!(redirect, vec![32, 33]);
                assert!(
                    logs(step, Rule::Distribute)
                        .iter()
                        .any(|r| r.contains("now full: stops") && r.contains("[0030]")),
                    "{step:#?}"
                );
                stopped = Some((i, load));
            }
            // Until then every viewer goes to P31: the farm has not had ΔT to start.
            assert_eq!(p, 31, "viewer {i} sent to P{p} while P31 had room");
        }
    }
    let served = served_at.expect("a DISTRIBUTE");
    let (stopped, load) = stopped.expect("P31 stopped");
    assert!(stopped > served, "{served} {stopped}");
    // Stopped full, not before: its room counts the viewers on their way.
    assert_eq!(load, 40);
}

/// `Growth::PredictiveFill`: a served proxy still taking viewers whose viewers start to leave
/// is stopped, so that it is in the contraction phase and may CONSOLIDATE ([0062]).
#[test]
fn a_filling_proxy_whose_viewers_leave_is_stopped_under_predictive_fill() {
    let mut net = filling_network();
    net.at(100);
    while net.pair("demo", 32).is_none() {
        net.advance_ms(200);
        let p = net.resolve("demo", None, None).expect("a proxy");
        net.login(p, "demo");
    }
    assert!(net.pair("demo", 31).unwrap().accepting, "P31 still fills");
    // No one arrives any more; P31's viewers leave two a second.
    let mut stopped = false;
    for _ in 0..20 {
        net.advance_ms(500);
        let out = net.logoff(31, "demo");
        net.check_invariants(&out);
        if sends(&out, 31)
            .iter()
            .any(|m| matches!(m, PncMsg::StopAccepting { .. }))
        {
            assert!(
                logs(&out, Rule::Distribute)
                    .iter()
                    .any(|r| r.contains("leave faster than they arrive")),
                "{out:#?}"
            );
            stopped = true;
            break;
        }
    }
    assert!(stopped, "P31 was never stopped");
    assert!(!net.pair("demo", 31).unwrap().accepting);
}

#[test]
fn distribute_regroups_existing_proxies_when_capacity_suffices() {
    let mut net = network(Config::default(), &[1, 1, 3], &[10, 10, 3]);
    for t in [100, 200, 300] {
        net.at(t);
        assert_eq!(net.viewer_joins("demo", None), 31);
    }
    // P31 full → P32. Two of P31's viewers leave: it has room again but is contracting.
    net.at(400);
    net.logoff(31, "demo");
    net.at(500);
    net.logoff(31, "demo");
    for t in [600, 700] {
        net.at(t);
        assert_eq!(net.viewer_joins("demo", None), 32);
    }
    net.at(800);
    let p = net.resolve("demo", None, None).unwrap();
    let out = net.login(p, "demo");
    // P32 fills. Room in the tier (P31: 2) covers the demand over sp: regroup, l = 1, P31.
    assert!(logs(&out, Rule::Regroup)[0].contains("[P31]"), "{out:#?}");
    assert!(matches!(
        sends(&out, 31)[..],
        [PncMsg::StartAccepting { .. }]
    ));
    assert!(
        matches!(sends(&out, 32)[..], [PncMsg::StopAccepting { redirect_to, .. }] if parent_ids(redirect_to) == vec![31])
    );
    assert_eq!(net.core.counters().regroups, 1);
    net.at(900);
    assert_eq!(net.viewer_joins("demo", None), 31);
}

#[test]
fn bits_per_second_capacity_binds_first_and_is_machine_wide() {
    let mut net = Net::new(Config::default());
    net.register(S, None, 1000, &[]);
    // One relay: both streams must share it.
    let id = 11;
    net.handle(Event::Register(Registration {
        proxy: ProxyId(id),
        name: format!("p{id}"),
        data_addr: common::addr(id),
        region: None,
        capacity: Capacity {
            connections: 100,
            bits_per_sec: 3_000_000,
        },
        streams: vec![],
        rtts: vec![Rtt {
            peer: ProxyId(S),
            micros: 10_000,
        }],
        decides: false,
    }));
    for (stream, src) in [("one", "A"), ("two", "A")] {
        net.msg(
            S,
            ProxyMsg::StreamAnnounce {
                stream: stream.into(),
                source: SourceInfo {
                    source: src.into(),
                    content_type: "video/mp2t".into(),
                    bitrate_bps: 1_000_000,
                },
            },
        );
    }
    net.at(100);
    assert_eq!(net.viewer_joins("one", None), 11);
    // One stream uses 1 Mbit/s of P11's 3: the other stream may use 2 connections there.
    net.at(200);
    assert_eq!(net.viewer_joins("two", None), 11);
    assert_eq!(net.pair("two", 11).unwrap().capacity, 2);
    net.at(300);
    let p = net.resolve("two", None, None).unwrap();
    let out = net.login(p, "two");
    // Full at 2 viewers of "two" + 1 of "one": 3 Mbit/s. DISTRIBUTE for "two" only ([0043]).
    assert!(
        logs(&out, Rule::Distribute)
            .iter()
            .any(|r| r.contains("reached capacity 2"))
    );
    assert_eq!(net.pair("one", 11).unwrap().phase, Phase::Expansion);
    net.check_invariants(&out);
}

#[test]
fn misuse_is_logged_and_ignored() {
    let mut net = network(Config::default(), &[1, 1, 1], &[3, 3, 3]);
    let out = net.msg(
        99,
        ProxyMsg::Distribute {
            stream: "demo".into(),
        },
    );
    assert_eq!(logs(&out, Rule::Protocol).len(), 1);
    let out = net.msg(
        11,
        ProxyMsg::Login {
            stream: "nope".into(),
            child: Child::Viewer,
        },
    );
    assert_eq!(logs(&out, Rule::Protocol).len(), 1);
    let out = net.msg(
        11,
        ProxyMsg::StreamEnd {
            stream: "demo".into(),
        },
    );
    assert_eq!(logs(&out, Rule::Protocol).len(), 1);
    net.at(10);
    net.viewer_joins("demo", None);
    let out = net.msg(
        11,
        ProxyMsg::Logoff {
            stream: "demo".into(),
            child: Child::Proxy(ProxyId(77)),
        },
    );
    assert!(!out.iter().any(|c| matches!(c, Command::Send { .. })));
    let out = net.msg(
        31,
        ProxyMsg::Logoff {
            stream: "demo".into(),
            child: Child::Viewer,
        },
    );
    assert!(out.iter().any(|c| matches!(
        c,
        Command::Send {
            msg: PncMsg::Deactivate { .. },
            ..
        }
    )));
    let out = net.msg(
        31,
        ProxyMsg::Hello(Hello {
            version: PROTOCOL_VERSION,
            token: String::new(),
            proxy: ProxyId(31),
            name: String::new(),
            data_addr: common::addr(31),
            region: None,
            capacity: Capacity {
                connections: 1,
                bits_per_sec: 1,
            },
            streams: vec![],
            rtts: vec![],
            decides: false,
        }),
    );
    assert_eq!(logs(&out, Rule::Protocol).len(), 1);
    assert_eq!(net.resolve("unknown", None, None), None);
    assert!(net.core.counters().protocol_errors >= 4);
}

#[test]
fn operator_pins_override_distance() {
    let config = Config {
        proxies: vec![
            ProxySettings {
                id: ProxyId(31),
                region: None,
                coordinates: None,
                tier: Some(1),
                source_tiers: Default::default(),
                logical_connections: None,
                connections: None,
                bits_per_sec: None,
            },
            ProxySettings {
                id: ProxyId(32),
                region: None,
                coordinates: None,
                tier: None,
                source_tiers: Default::default(),
                logical_connections: Some(2),
                connections: None,
                bits_per_sec: None,
            },
        ],
        ..Config::default()
    };
    let mut net = network(config, &[1, 1, 2], &[10, 10, 10]);
    let view = net.stream_view("demo").unwrap();
    let tiers: Vec<Vec<u32>> = view.regions[0]
        .tiers
        .iter()
        .map(|t| t.overlay.iter().map(|p| p.0).collect())
        .collect();
    assert_eq!(tiers, vec![vec![11, 31], vec![21], vec![32]]);
    net.at(5);
    assert_eq!(net.viewer_joins("demo", None), 32);
    // Logical capacity ([0048]) below the physical one: P32 fills at 2.
    assert_eq!(net.pair("demo", 32).unwrap().capacity, 2);
    net.at(6);
    let p = net.resolve("demo", None, None).unwrap();
    let out = net.login(p, "demo");
    assert!(
        logs(&out, Rule::Distribute)
            .iter()
            .any(|r| r.contains("reached capacity 2"))
    );
}

#[test]
fn proxies_joining_recompute_the_tiers() {
    let mut net = network(Config::default(), &[1, 1, 1], &[10, 10, 10]);
    net.register(24, None, 10, &[(S, 30)]);
    net.at(5);
    net.viewer_joins("demo", None);
    let view = net.stream_view("demo").unwrap();
    assert_eq!(
        view.regions[0].tiers[1].overlay,
        vec![ProxyId(21), ProxyId(24)]
    );
    net.handle(Event::Remove { proxy: ProxyId(24) });
    // Tiers are recomputed at most once per Δt/10 window.
    net.at(6);
    net.viewer_joins("demo", None);
    let view = net.stream_view("demo").unwrap();
    assert_eq!(view.regions[0].tiers[1].overlay, vec![ProxyId(21)]);
}

/// `Placement::MostFree` spreads streams over machines; the default packs by lowest id.
#[test]
fn placement_most_free_spreads_streams_over_machines() {
    for (placement, expected) in [(Placement::LowestId, 11), (Placement::MostFree, 12)] {
        let config = Config {
            placement,
            ..Config::default()
        };
        let mut net = Net::new(config);
        net.register(S, None, 1000, &[]);
        for id in [11, 12] {
            net.register(id, None, 12, &[(S, 10)]);
        }
        net.announce(S, "one", "A");
        net.announce(S, "two", "A");
        net.at(10);
        assert_eq!(net.viewer_joins("one", None), 11);
        assert_eq!(net.viewer_joins("two", None), expected, "{placement:?}");
    }
}

fn activated_in_tier(out: &[Command], tier: u32) -> Vec<u32> {
    out.iter()
        .filter_map(|c| match c {
            Command::Send {
                to,
                msg: PncMsg::Activate { tier: t, .. },
            } if *t == tier => Some(to.0),
            _ => None,
        })
        .collect()
}

/// [0033] The operator announces `viewers` of `stream` arriving over `ramp_secs`.
fn anticipate(net: &mut Net, stream: &str, viewers: u64, ramp_secs: f64) -> Vec<Command> {
    net.handle(Event::Anticipate {
        stream: stream.into(),
        region: None,
        viewers,
        ramp_secs,
    })
}

/// [0033] an anticipated event: 300 viewers over 30 s (10 a second) need, for the first ΔT
/// (10 s), 100 connections of the bottom tier: ten proxies of 10 as one farm, with a path of
/// parents above them, before any viewer arrives; the viewers then go round-robin over the
/// farm ([0042]) and none waits for an activation.
#[test]
fn an_anticipated_event_activates_the_first_delta_t_of_its_crowd_as_one_farm() {
    let mut net = network(Config::default(), &[1, 1, 20], &[100, 100, 10]);
    net.at(100);
    let out = anticipate(&mut net, "demo", 300, 30.0);
    net.check_invariants(&out);
    let farm = activated_in_tier(&out, 3);
    assert_eq!(farm.len(), 10, "{:#?}", logs(&out, Rule::Anticipate));
    assert_eq!(activated_in_tier(&out, 2).len(), 1);
    assert_eq!(activated_in_tier(&out, 1).len(), 1);
    let why = logs(&out, Rule::Anticipate);
    assert!(
        why.iter()
            .any(|r| r.contains("10 proxies activated") && r.contains("[0033]")),
        "{why:#?}"
    );
    assert_eq!(net.pair("demo", farm[0]).unwrap().farm.len(), 10);
    // ΔT later the crowd arrives: each of the first ten viewers on another member.
    net.at(110);
    let mut seen = Vec::new();
    for _ in 0..10 {
        let p = net.resolve("demo", None, None).expect("a proxy");
        let out = net.login(p, "demo");
        assert!(
            activated_in_tier(&out, 3).is_empty(),
            "an activation for the first viewers"
        );
        net.check_invariants(&out);
        seen.push(p);
    }
    seen.sort_unstable();
    let mut all = farm.clone();
    all.sort_unstable();
    assert_eq!(seen, all);
    // A second announcement that fits the room activates nothing.
    let out = anticipate(&mut net, "demo", 50, 0.0);
    assert!(activated_in_tier(&out, 3).is_empty());
    assert!(logs(&out, Rule::Anticipate)[0].contains("nothing activated"));
}

/// Without a ramp the whole audience is covered ([0033] as written); reacting one proxy at a
/// time has no farms, so each proxy activated ahead is its own; a stream nobody publishes gets
/// a decision and no activation.
#[test]
fn an_anticipated_event_without_a_ramp_covers_everyone_and_unknown_streams_activate_nothing() {
    let config = Config {
        growth: Growth::OneAtATime,
        ..Config::default()
    };
    let mut net = network(config, &[1, 1, 20], &[100, 100, 10]);
    net.at(100);
    let out = anticipate(&mut net, "demo", 25, 0.0);
    net.check_invariants(&out);
    let ahead = activated_in_tier(&out, 3);
    assert_eq!(ahead.len(), 3);
    for p in ahead {
        assert_eq!(net.pair("demo", p).unwrap().farm, vec![ProxyId(p)]);
    }
    let out = anticipate(&mut net, "nobody", 1000, 0.0);
    assert!(activated_in_tier(&out, 3).is_empty());
    assert!(logs(&out, Rule::Anticipate)[0].contains("no source publishes"));
}
