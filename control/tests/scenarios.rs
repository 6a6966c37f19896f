//! Scenario tests replaying the seed's figures.

mod common;

use std::net::IpAddr;

use common::{Net, Tree};
use control::core::*;
use control::protocol::*;

const S: u32 = 1;

/// The overlay of figure 1(b)/2: S, P11–P13, P21–P23, P31–P33, capacity 3. Tiers are not typed
/// in: the proxies report their RTT to S (10, 30, 50 ms) and the PNC computes the tiers.
fn figure_2_network() -> Net {
    let mut net = Net::new(Config::default());
    net.register(S, None, 100, &[]);
    for tier in 1..=3u32 {
        for j in 1..=3u32 {
            let id = tier * 10 + j;
            net.register(id, None, 3, &[(S, tier * 20 - 10 + j)]);
        }
    }
    net.announce(S, "demo", "www.ccrl.com");
    net
}

fn tree(entries: &[(u32, &[u32], &[u32], u32)]) -> Tree {
    entries
        .iter()
        .map(|&(id, parents, children, viewers)| {
            (id, (parents.to_vec(), children.to_vec(), viewers))
        })
        .collect()
}

/// Figure 2(a)–(d): u1–u7 arrive, far apart in time (prediction never fires early).
fn play_figure_2(net: &mut Net) {
    let mut t = 100;
    for (user, expected) in [
        (1, 31),
        (2, 31),
        (3, 31),
        (4, 32),
        (5, 32),
        (6, 32),
        (7, 33),
    ] {
        net.at(t);
        t += 100;
        let p = net.viewer_joins("demo", None);
        assert_eq!(p, expected, "u{user} goes to P{expected}");
        let none: Vec<Command> = Vec::new();
        net.check_invariants(&none);
    }
}

#[test]
fn figure_2_expansion() {
    let mut net = figure_2_network();
    let topo = net.core.topology();
    let tiers: Vec<Vec<u32>> = topo.streams[0].regions[0]
        .tiers
        .iter()
        .map(|t| t.overlay.iter().map(|p| p.0).collect())
        .collect();
    assert_eq!(
        tiers,
        vec![vec![11, 12, 13], vec![21, 22, 23], vec![31, 32, 33]]
    );

    // (a) u1: one proxy per tier forms the path S–P11–P21–P31.
    net.at(100);
    assert_eq!(net.viewer_joins("demo", None), 31);
    assert_eq!(
        net.serving_tree("demo"),
        tree(&[
            (11, &[S], &[21], 0),
            (21, &[11], &[31], 0),
            (31, &[21], &[], 1)
        ])
    );
    // (b) u2, u3 at P31; u3 fills it: DISTRIBUTE activates P32 under P21.
    net.at(200);
    assert_eq!(net.viewer_joins("demo", None), 31);
    net.at(300);
    let p = net.resolve("demo", None, None).unwrap();
    assert_eq!(p, 31);
    let out = net.login(p, "demo");
    assert!(out.iter().any(|c| matches!(c,
        Command::Send { to: ProxyId(32), msg: PncMsg::Activate { tier: 3, parents, accepting: true, .. } }
            if parents.iter().map(|p| p.id).collect::<Vec<_>>() == vec![ProxyId(21)])));
    assert!(out.iter().any(|c| matches!(c,
        Command::Send { to: ProxyId(31), msg: PncMsg::StopAccepting { redirect_to, .. } }
            if redirect_to.iter().map(|p| p.id).collect::<Vec<_>>() == vec![ProxyId(32)])));
    assert_eq!(net.standbys("demo"), vec![(32, vec![21])]);
    assert_eq!(net.pair("demo", 31).unwrap().phase, Phase::Contraction);
    // (c) u4–u6 go to P32; u6 fills it: P33 activated under P21 (P21 has room: standbys do not
    // count, [0054]).
    for t in [400, 500, 600] {
        net.at(t);
        assert_eq!(net.viewer_joins("demo", None), 32);
    }
    assert_eq!(net.standbys("demo"), vec![(33, vec![21])]);
    // (d) u7 goes to P33, which joins P21 and fills it: P21's own DISTRIBUTE activates a new
    // tier-2 proxy, P22 under P11, as a standby.
    net.at(700);
    assert_eq!(net.viewer_joins("demo", None), 33);
    assert_eq!(
        net.serving_tree("demo"),
        tree(&[
            (11, &[S], &[21, 22], 0),
            (21, &[11], &[31, 32, 33], 0),
            (31, &[21], &[], 3),
            (32, &[21], &[], 3),
            (33, &[21], &[], 1),
        ])
        .into_iter()
        // P11's children listing includes the standby P22 (reserved); compare serving links.
        .map(|(k, v)| if k == 11 {
            (k, (v.0, vec![21, 22], v.2))
        } else {
            (k, v)
        })
        .collect::<Tree>()
    );
    assert_eq!(net.standbys("demo"), vec![(22, vec![11])]);
    assert_eq!(net.pair("demo", 21).unwrap().phase, Phase::Contraction);
    assert_eq!(
        net.pair("demo", 11).unwrap().load,
        1,
        "the standby P22 does not load P11"
    );
    assert_eq!(
        net.core
            .accepting("demo", None)
            .iter()
            .map(|p| p.id.0)
            .collect::<Vec<_>>(),
        vec![33]
    );
    let c = net.core.counters();
    assert_eq!((c.activations, c.distributes), (6, 3));
}

#[test]
fn figure_4_consolidation() {
    let mut net = figure_2_network();
    play_figure_2(&mut net);
    // (b) u4 leaves P32, u2 and u3 leave P31.
    net.at(1000);
    net.logoff(32, "demo");
    // P32 at 2 stays: a CONSOLIDATE from it is ignored (load above ⌈3/3⌉ = 1).
    net.at(1001);
    let out = net.msg(
        32,
        ProxyMsg::Consolidate {
            stream: "demo".into(),
        },
    );
    assert!(!out.iter().any(|c| matches!(
        c,
        Command::Send {
            msg: PncMsg::RedirectChildren { .. },
            ..
        }
    )));
    net.at(1100);
    net.logoff(31, "demo");
    net.at(1200);
    net.logoff(31, "demo");
    // One Δt/10 later P31's logoff rate exceeds its login rate and it asks to CONSOLIDATE.
    net.at(1201);
    let out = net.msg(
        31,
        ProxyMsg::Consolidate {
            stream: "demo".into(),
        },
    );
    // (c) u1 is moved to the most recently activated proxy, P33 ([0037]).
    assert!(
        out.iter().any(|c| matches!(c,
            Command::Send { to: ProxyId(31), msg: PncMsg::RedirectChildren { to, .. } } if to.id == ProxyId(33))),
        "{out:#?}"
    );
    net.check_invariants(&out);
    assert!(
        net.core
            .accepting("demo", None)
            .iter()
            .all(|p| p.id.0 != 31)
    );
    // u1 logs off P31 and on to P33; P31, empty, logs off P21 and goes idle.
    net.at(1202);
    let out = net.logoff(31, "demo");
    assert!(out.iter().any(|c| matches!(
        c,
        Command::Send {
            to: ProxyId(31),
            msg: PncMsg::Deactivate { .. }
        }
    )));
    net.login(33, "demo");
    net.check_invariants(&[]);
    let mut expected = tree(&[
        (11, &[S], &[21, 22], 0),
        (21, &[11], &[32, 33], 0),
        (32, &[21], &[], 2),
        (33, &[21], &[], 2),
    ]);
    expected.get_mut(&11).unwrap().1 = vec![21, 22];
    assert_eq!(net.serving_tree("demo"), expected);
    assert_eq!(net.standbys("demo"), vec![(22, vec![11])]);
    assert_eq!(net.core.counters().consolidations, 1);
    // The last proxies leave: the tree unwinds up to the source ([0030], [0055]).
    let mut t = 1300;
    for p in [32, 32, 33, 33] {
        net.at(t);
        t += 100;
        net.logoff(p, "demo");
    }
    let left: Vec<u32> = net.active("demo").iter().map(|a| a.proxy.0).collect();
    assert!(
        left.is_empty(),
        "the tree unwound, standby P22 included: {left:?}"
    );
    assert!(
        net.core
            .topology()
            .proxies
            .iter()
            .all(|p| p.connections == 0)
    );
}

#[test]
fn consolidate_of_the_last_proxy_of_a_tier_is_ignored() {
    let mut net = figure_2_network();
    for t in [100, 200, 300] {
        net.at(t);
        net.viewer_joins("demo", None);
    }
    // P31 full and contracting, P32 standby; P32 is the only other, so P31 may consolidate only
    // into it. Make P31 the last of its tier by crashing P32 first.
    net.at(350);
    net.handle(Event::Remove { proxy: ProxyId(32) });
    net.at(400);
    net.logoff(31, "demo");
    net.at(500);
    net.logoff(31, "demo");
    net.at(501);
    let out = net.msg(
        31,
        ProxyMsg::Consolidate {
            stream: "demo".into(),
        },
    );
    assert!(out.iter().any(|c| matches!(c, Command::Log(d) if d.rule == Rule::Consolidate && d.reason.contains("last proxy"))), "{out:#?}");
}

/// Figure 3: nine physical proxies shared by two sources; S1's VAN has three tiers, S2's four;
/// decisions are independent per stream and capacity is machine-wide.
#[test]
fn figure_3_two_vans_share_proxies() {
    // The figure draws both VANs' paths through the same physical proxy (P11 = Q31): the
    // lowest-id placement that packs streams together, not the default that spreads them.
    let mut net = Net::new(Config {
        placement: Placement::LowestId,
        ..Config::default()
    });
    let (s1, s2) = (1, 2);
    // The sources' own hosts sit in a region of their own, so they are not relays here.
    net.register(s1, Some("sources"), 100, &[]);
    net.register(s2, Some("sources"), 100, &[]);
    // RTTs (ms) of proxies 11..19 to S1 and S2.
    let to_s1 = [10, 11, 12, 40, 41, 42, 70, 71, 72];
    let to_s2 = [70, 10, 40, 11, 71, 100, 41, 101, 12];
    for i in 0..9u32 {
        net.register(
            11 + i,
            None,
            10,
            &[(s1, to_s1[i as usize]), (s2, to_s2[i as usize])],
        );
    }
    net.announce(s1, "s1/live", "S1");
    net.announce(s2, "s2/live", "S2");
    net.at(10);
    assert_eq!(net.viewer_joins("s1/live", None), 17);
    assert_eq!(net.viewer_joins("s2/live", None), 16);
    let topo = net.core.topology();
    let tiers = |stream: &str| -> Vec<Vec<u32>> {
        topo.streams
            .iter()
            .find(|s| s.stream == stream)
            .unwrap()
            .regions[0]
            .tiers
            .iter()
            .map(|t| t.overlay.iter().map(|p| p.0).collect())
            .collect()
    };
    assert_eq!(
        tiers("s1/live"),
        vec![vec![11, 12, 13], vec![14, 15, 16], vec![17, 18, 19]]
    );
    assert_eq!(
        tiers("s2/live"),
        vec![vec![12, 14, 19], vec![13, 17], vec![11, 15], vec![16, 18]]
    );
    // Paths: S1–11–14–17 and S2–12–13–11–16. Physical 11 is P11 of the first VAN and Q31 of the
    // second (as in the seed's figure 3).
    let path = |net: &Net, stream: &str| -> Vec<(u32, u32)> {
        let mut v: Vec<(u32, u32)> = net
            .active(stream)
            .iter()
            .map(|a| (a.proxy.0, a.parents[0].0))
            .collect();
        v.sort();
        v
    };
    assert_eq!(path(&net, "s1/live"), vec![(11, s1), (14, 11), (17, 14)]);
    assert_eq!(
        path(&net, "s2/live"),
        vec![(11, 13), (12, s2), (13, 12), (16, 11)]
    );
    // Independent decisions ([0043]): filling S1's bottom proxy 17 makes S1 distribute; S2's
    // proxies keep their phases and the S2 stream gets no command.
    for _ in 0..9 {
        net.viewer_joins("s1/live", None);
    }
    let before = net.active("s2/live");
    net.at(20);
    let out = net.viewer_joins("s1/live", None);
    assert_eq!(out, 18, "S1's next viewer goes to the newly activated 18");
    assert_eq!(net.pair("s1/live", 17).unwrap().phase, Phase::Contraction);
    assert_eq!(
        net.active("s2/live")
            .iter()
            .map(|a| a.phase)
            .collect::<Vec<_>>(),
        before.iter().map(|a| a.phase).collect::<Vec<_>>()
    );
    // Machine-wide capacity ([0047]): 11 carries S1's child 14 (1 connection) and 13? no: in
    // S2 it is a tier-3 proxy feeding 16. Its capacity for S2 is what S1 leaves of 10.
    let cap_s2 = net.pair("s2/live", 11).unwrap().capacity;
    let load_s1 = net.pair("s1/live", 11).unwrap().load;
    assert_eq!(cap_s2, 10 - load_s1);
    net.check_invariants(&[]);
    // Each stream's proxies are pinned to their own source's overlay: the two trees differ.
    let topo = net.core.topology();
    let p11 = topo
        .proxies
        .iter()
        .find(|p| p.proxy == ProxyId(11))
        .unwrap();
    assert!(p11.connections <= 10);
}

/// Figure 7: three regions, each with its own tiers, serving its own users.
#[test]
fn figure_7_regions() {
    let mut config = Config::default();
    for (cidr, region) in [
        ("10.1.0.0/16", "R1"),
        ("10.2.0.0/16", "R2"),
        ("10.3.0.0/16", "R3"),
    ] {
        config.regions.push(RegionRule {
            cidr: cidr.parse().unwrap(),
            region: region.into(),
        });
    }
    let mut net = Net::new(config);
    net.register(S, Some("R0"), 100, &[]);
    let regions: [(&str, &[u32]); 3] = [
        ("R1", &[201, 202, 203, 204]),
        ("R2", &[301, 302, 303]),
        ("R3", &[401, 402, 403, 404]),
    ];
    for (region, ids) in regions {
        for (k, id) in ids.iter().enumerate() {
            net.register(*id, Some(region), 10, &[(S, 10 + 25 * k as u32)]);
        }
    }
    net.announce(S, "event", "S");
    let users: [(u32, &str, u32); 11] = [
        (1, "10.1.0.1", 204),
        (2, "10.1.7.2", 204),
        (3, "10.1.0.3", 204),
        (4, "10.1.9.4", 204),
        (5, "10.2.0.5", 303),
        (6, "10.2.0.6", 303),
        (7, "10.2.1.7", 303),
        (8, "10.2.0.8", 303),
        (9, "10.3.0.9", 404),
        (10, "10.3.0.10", 404),
        (11, "10.3.3.11", 404),
    ];
    for (u, ip, expected) in users {
        net.at(10 + u as u64 * 100);
        let ip: IpAddr = ip.parse().unwrap();
        let p = net.resolve("event", None, Some(ip)).unwrap();
        assert_eq!(p, expected, "u{u} from {ip}");
        net.login(p, "event");
    }
    let view = net.stream_view("event").unwrap();
    let shape: Vec<(String, Vec<Vec<u32>>)> = view
        .regions
        .iter()
        .map(|r| {
            (
                r.region.clone(),
                r.tiers
                    .iter()
                    .map(|t| t.active.iter().map(|a| a.proxy.0).collect())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            (
                "R1".to_string(),
                vec![vec![201], vec![202], vec![203], vec![204]]
            ),
            ("R2".to_string(), vec![vec![301], vec![302], vec![303]]),
            (
                "R3".to_string(),
                vec![vec![401], vec![402], vec![403], vec![404]]
            ),
        ]
    );
    // Each region's path leads from the source through its own proxies only.
    for (_, ids) in regions {
        for w in ids.windows(2) {
            assert_eq!(
                net.pair("event", w[1]).unwrap().parents,
                vec![ProxyId(w[0])]
            );
        }
        assert_eq!(net.pair("event", ids[0]).unwrap().parents, vec![ProxyId(S)]);
    }
    // Named region wins over the address.
    assert_eq!(
        net.resolve("event", Some("R2"), Some("10.1.0.1".parse().unwrap())),
        Some(303)
    );
    assert_eq!(net.core.region_of("192.0.2.1".parse().unwrap()), "default");
    net.check_invariants(&[]);
}

#[test]
fn a_restarted_pnc_rebuilds_the_same_view() {
    let mut net = figure_2_network();
    play_figure_2(&mut net);
    let before = net.serving_tree("demo");
    let standby_before = net.standbys("demo");
    let mut phases: Vec<(u32, Phase, bool)> = net
        .active("demo")
        .iter()
        .map(|a| (a.proxy.0, a.phase, a.accepting))
        .collect();
    // A new PNC; the proxies re-register in an order where children come before parents.
    let mut fresh = Net::new(Config::default());
    fresh.at(2000);
    let mut ids: Vec<u32> = vec![S];
    for t in 1..=3 {
        for j in 1..=3 {
            ids.push(t * 10 + j);
        }
    }
    ids.reverse();
    for id in ids {
        let streams = net.core.stream_states(ProxyId(id));
        let tier = id / 10;
        let rtts = if id == S {
            vec![]
        } else {
            vec![Rtt {
                peer: ProxyId(S),
                micros: (tier * 20 - 10 + id % 10) * 1000,
            }]
        };
        fresh.handle(Event::Register(Registration {
            proxy: ProxyId(id),
            name: format!("p{id}"),
            data_addr: common::addr(id),
            region: None,
            capacity: Capacity {
                connections: if id == S { 100 } else { 3 },
                bits_per_sec: 10_000_000_000,
            },
            streams,
            rtts,
            decides: false,
        }));
    }
    assert_eq!(fresh.serving_tree("demo"), before);
    assert_eq!(fresh.standbys("demo"), standby_before);
    let mut phases_after: Vec<(u32, Phase, bool)> = fresh
        .active("demo")
        .iter()
        .map(|a| (a.proxy.0, a.phase, a.accepting))
        .collect();
    phases.sort();
    phases_after.sort();
    assert_eq!(phases_after, phases);
    // And it keeps working: the next viewer goes to P33.
    assert_eq!(fresh.viewer_joins("demo", None), 33);
}

#[test]
fn source_end_tears_the_tree_down() {
    let mut net = figure_2_network();
    play_figure_2(&mut net);
    let out = net.msg(
        S,
        ProxyMsg::StreamEnd {
            stream: "demo".into(),
        },
    );
    let mut deactivated: Vec<u32> = out
        .iter()
        .filter_map(|c| match c {
            Command::Send {
                to,
                msg: PncMsg::Deactivate { .. },
            } => Some(to.0),
            _ => None,
        })
        .collect();
    deactivated.sort();
    assert_eq!(deactivated, vec![11, 21, 22, 31, 32, 33]);
    assert!(net.stream_view("demo").is_none());
    assert!(
        net.core
            .topology()
            .proxies
            .iter()
            .all(|p| p.connections == 0)
    );
    assert_eq!(net.resolve("demo", None, None), None);
}
