//! Regression tests for the defects of issue 7, each named for its defect. Viewers arrive through
//! `resolve` and leave with a LOGOFF at their proxy, far apart in time (every predicted rate is
//! 0), on tiers of three proxies each.

mod common;

use common::Net;
use control::core::*;
use control::protocol::*;

const S: u32 = 1;

/// S plus tiers of three proxies (ids 11–13, 21–23, 31–33) of capacity `cap`.
fn tiers_of_three(cap: u32) -> Net {
    let mut net = Net::new(Config::default());
    net.register(S, None, 1000, &[]);
    for tier in 1..=3u32 {
        for j in 1..=3u32 {
            net.register(tier * 10 + j, None, cap, &[(S, tier * 20 - 10)]);
        }
    }
    net.announce(S, "demo", "src");
    net
}

/// One viewer step: `+n` arrives, `-n` leaves the proxy it was sent to.
enum V {
    Join(usize),
    Leave(usize),
}

/// Play `steps` 100 s apart; the viewers refused, in order.
fn play(net: &mut Net, steps: &[V]) -> Vec<usize> {
    let mut at: Vec<Option<u32>> = vec![None; 16];
    let mut refused = Vec::new();
    let mut t = 100;
    for step in steps {
        net.at(t);
        t += 100;
        let out = match *step {
            V::Join(u) => match net.resolve("demo", None, None) {
                Some(p) => {
                    at[u] = Some(p);
                    net.login(p, "demo")
                }
                None => {
                    refused.push(u);
                    Vec::new()
                }
            },
            V::Leave(u) => match at[u].take() {
                Some(p) => net.logoff(p, "demo"),
                None => Vec::new(),
            },
        };
        net.check_invariants(&out);
    }
    refused
}

#[test]
fn no_503_while_idle_proxies_exist_after_the_new_proxy_goes_idle() {
    // u4 fills nothing, leaves P32 empty (idle again); P31 is full and its DISTRIBUTE served.
    let mut net = tiers_of_three(3);
    let steps = [
        V::Join(1),
        V::Join(2),
        V::Join(3),
        V::Join(4),
        V::Leave(4),
        V::Join(5),
    ];
    assert_eq!(play(&mut net, &steps), Vec::<usize>::new());
}

#[test]
fn no_503_while_idle_proxies_exist_or_a_contracting_proxy_has_room() {
    let mut net = tiers_of_three(2);
    let steps = [
        V::Join(1),
        V::Join(2),
        V::Join(3),
        V::Leave(1),
        V::Join(4),
        V::Leave(2),
        V::Join(5),
    ];
    assert_eq!(play(&mut net, &steps), Vec::<usize>::new());
}

#[test]
fn no_503_while_idle_proxies_exist_or_room_remains_under_a_high_predicted_demand() {
    // Tiers 1, 1, 2 of capacity 100, 100, 10; viewers every 100 ms. P31 fills (P32 activated),
    // five of its viewers leave; P32 fills: the demand predicted over sp exceeds the room P31
    // has and no idle proxy is left, so P31's room must take the next viewers: all 25 fit.
    let mut net = Net::new(Config::default());
    net.register(S, None, 1000, &[]);
    net.register(11, None, 100, &[(S, 10)]);
    net.register(21, None, 100, &[(S, 30)]);
    net.register(31, None, 10, &[(S, 50)]);
    net.register(32, None, 10, &[(S, 50)]);
    net.announce(S, "demo", "src");
    let mut refused = 0;
    let mut join = |net: &mut Net| {
        net.advance_ms(100);
        match net.resolve("demo", None, None) {
            Some(p) => {
                let out = net.login(p, "demo");
                net.check_invariants(&out);
            }
            None => refused += 1,
        }
    };
    for _ in 0..10 {
        join(&mut net);
    }
    for _ in 0..5 {
        net.advance_ms(100);
        let out = net.logoff(31, "demo");
        net.check_invariants(&out);
    }
    for _ in 0..15 {
        join(&mut net);
    }
    assert_eq!(refused, 0);
    assert_eq!(net.stream_view("demo").unwrap().viewers, 20);
}

/// Carry out the moves the core orders: each viewer of a proxy told to redirect its children
/// logs in at the new proxy, then off the old one (make-before-break, as the dataplane does).
fn follow_moves(net: &mut Net, out: Vec<Command>) {
    for c in out {
        if let Command::Send {
            to,
            msg: PncMsg::RedirectChildren { stream, to: dest },
        } = c
        {
            let n = net.pair(&stream, to.0).map_or(0, |a| a.viewers);
            for _ in 0..n {
                let o = net.login(dest.id.0, &stream);
                net.check_invariants(&o);
                follow_moves(net, o);
                let o = net.logoff(to.0, &stream);
                net.check_invariants(&o);
            }
        }
    }
}

#[test]
fn distribute_does_not_regroup_onto_a_proxy_consolidate_is_draining() {
    // Capacity 2: u1, u2 at P31, u3 at P32 (P22 a standby). u1 leaves: P31 consolidates into
    // P32, which fills and DISTRIBUTEs. P31 is being drained: the DISTRIBUTE must add a new
    // proxy (P33 under P22), not regroup onto P31, which goes idle at once.
    let mut net = tiers_of_three(2);
    let mut at = Vec::new();
    for t in [100, 200, 300] {
        net.at(t);
        at.push(net.viewer_joins("demo", None));
    }
    assert_eq!(at, vec![31, 31, 32]);
    net.at(400);
    let out = net.logoff(31, "demo");
    net.check_invariants(&out);
    // P31's agent reports more logoffs than logins and asks to CONSOLIDATE ([0062]).
    net.heartbeat(31, "demo", 1, 0.0, 1.0);
    let out = net.msg(
        31,
        ProxyMsg::Consolidate {
            stream: "demo".into(),
        },
    );
    net.check_invariants(&out);
    let consolidated = out.iter().any(|c| {
        matches!(
            c,
            Command::Send {
                to: ProxyId(31),
                msg: PncMsg::RedirectChildren { .. }
            }
        )
    });
    assert!(consolidated, "P31 consolidates into P32");
    follow_moves(&mut net, out);
    assert!(net.pair("demo", 31).is_none(), "P31 drained and idle");
    let p33 = net.pair("demo", 33).expect("a new proxy in tier 3");
    assert_eq!(p33.parents, vec![ProxyId(22)]);
    assert!(p33.accepting);
    net.at(500);
    assert_eq!(net.viewer_joins("demo", None), 33);
}

/// A proxy CONSOLIDATE is draining is no target of the next CONSOLIDATE: it goes idle once its
/// viewers have left, and viewers moved onto it meanwhile landed beyond a proxy's capacity (5 in
/// one 10^6-viewer simulation). Capacity 3: P31, P32 and P33 each filled in turn; P31 drains
/// into P33 and, before its viewer has moved, P32 consolidates: into P33, not into P31.
#[test]
fn consolidate_does_not_move_viewers_onto_a_proxy_being_drained() {
    let mut net = tiers_of_three(3);
    let refused = play(
        &mut net,
        &[
            V::Join(1),
            V::Join(2),
            V::Join(3),
            V::Join(4),
            V::Join(5),
            V::Join(6),
            V::Join(7),
            V::Leave(1),
            V::Leave(2),
            V::Leave(4),
            V::Leave(5),
        ],
    );
    assert!(refused.is_empty());
    let consolidate = |net: &mut Net, p: u32| {
        net.heartbeat(p, "demo", 1, 0.0, 1.0);
        let out = net.msg(
            p,
            ProxyMsg::Consolidate {
                stream: "demo".into(),
            },
        );
        net.check_invariants(&out);
        out.iter()
            .find_map(|c| match c {
                Command::Send {
                    to,
                    msg: PncMsg::RedirectChildren { to: dest, .. },
                } if to.0 == p => Some(dest.id.0),
                _ => None,
            })
            .unwrap_or_else(|| panic!("P{p} consolidates: {out:#?}"))
    };
    net.at(2000);
    assert_eq!(consolidate(&mut net, 31), 33);
    // P31 still counts its viewer, on its way to P33: room 2 of 3, but it is being drained.
    assert_eq!(consolidate(&mut net, 32), 33);
}

/// Every decision the core logged in `out`.
fn decisions(out: &[Command]) -> Vec<&Decision> {
    out.iter()
        .filter_map(|c| match c {
            Command::Log(d) => Some(d),
            _ => None,
        })
        .collect()
}

/// What `messages` sends to `to`.
fn sent_to(out: &[Command], to: u32) -> Vec<&PncMsg> {
    out.iter()
        .filter_map(|c| match c {
            Command::Send { to: t, msg } if t.0 == to => Some(msg),
            _ => None,
        })
        .collect()
}

/// The serving tree, the standbys and every proxy's connections.
type Snapshot = (common::Tree, Vec<(u32, Vec<u32>)>, Vec<(ProxyId, u32)>);

/// What a message that must change nothing leaves as it was.
fn snapshot(net: &Net) -> Snapshot {
    let conns = net
        .core
        .topology()
        .proxies
        .iter()
        .map(|p| (p.proxy, p.connections))
        .collect();
    (net.serving_tree("demo"), net.standbys("demo"), conns)
}

#[test]
fn defect_3_a_login_naming_a_proxy_not_assigned_there_changes_nothing() {
    // u1 makes the path P11 → P21 → P31. P31 logs in its own parent P21 as its child (a loop
    // in today's code, whose eviction then overflowed the stack when P11 crashed).
    let mut net = tiers_of_three(3);
    net.at(100);
    assert_eq!(net.viewer_joins("demo", None), 31);
    let before = snapshot(&net);
    let hostile = [
        (31, ProxyId(21)), // its own parent
        (31, ProxyId(11)), // two tiers up
        (21, ProxyId(32)), // an idle proxy of the tier below
        (31, ProxyId(31)), // itself
        (21, ProxyId(99)), // nobody
    ];
    for (from, child) in hostile {
        let out = net.msg(
            from,
            ProxyMsg::Login {
                stream: "demo".into(),
                child: Child::Proxy(child),
            },
        );
        net.check_invariants(&out);
        assert!(
            decisions(&out)
                .iter()
                .any(|d| d.rule == Rule::Protocol
                    && d.reason.contains("LOGIN of child proxy refused")),
            "P{from} LOGIN {child}: {out:?}"
        );
        assert_eq!(snapshot(&net), before, "P{from} LOGIN {child}");
    }
    // The tree is still a tree: P11 crashing with no replacement evicts it without a loop.
    net.at(200);
    let out = net.handle(Event::Remove { proxy: ProxyId(11) });
    net.check_invariants(&out);
    for id in [12, 13] {
        net.handle(Event::Remove { proxy: ProxyId(id) });
    }
    assert!(
        net.serving_tree("demo").is_empty(),
        "{:?}",
        net.serving_tree("demo")
    );
}

#[test]
fn defect_3_messages_naming_other_proxies_are_checked_against_the_pncs_view() {
    let mut net = tiers_of_three(3);
    net.at(100);
    assert_eq!(net.viewer_joins("demo", None), 31);
    let before = snapshot(&net);
    let named = [
        ProxyMsg::LinkDowngrade {
            stream: "demo".into(),
            parent: ProxyId(99),
        },
        ProxyMsg::LinkDowngrade {
            stream: "demo".into(),
            parent: ProxyId(22),
        },
        ProxyMsg::Logoff {
            stream: "demo".into(),
            child: Child::Proxy(ProxyId(99)),
        },
        ProxyMsg::Logoff {
            stream: "demo".into(),
            child: Child::Proxy(ProxyId(21)),
        },
    ];
    for msg in named {
        let out = net.msg(31, msg.clone());
        net.check_invariants(&out);
        assert!(
            decisions(&out).iter().any(|d| d.rule == Rule::Protocol),
            "{msg:?}: {out:?}"
        );
        assert_eq!(snapshot(&net), before, "{msg:?}");
    }
}

#[test]
fn defect_3_a_heartbeat_count_beyond_the_declared_capacity_is_capped() {
    let mut net = tiers_of_three(3);
    net.at(100);
    assert_eq!(net.viewer_joins("demo", None), 31);
    let out = net.msg(
        31,
        ProxyMsg::Heartbeat {
            streams: vec![StreamLoad {
                stream: "demo".into(),
                viewers: u32::MAX,
                child_proxies: 0,
                bits_per_sec: 0,
                login_rate: f32::INFINITY,
                logoff_rate: f32::NAN,
            }],
            connections: u32::MAX,
            bits_per_sec: 0,
            rtts: vec![],
        },
    );
    net.check_invariants(&out);
    let logged = decisions(&out);
    assert!(
        logged
            .iter()
            .any(|d| d.rule == Rule::Protocol && d.reason.contains("capped")),
        "{logged:?}"
    );
    assert!(
        !logged
            .iter()
            .any(|d| d.reason.contains(&u32::MAX.to_string()) && d.rule != Rule::Protocol),
        "a decision rests on the fake count: {logged:?}"
    );
    let p31 = net.pair("demo", 31).unwrap();
    assert!(p31.viewers <= 3, "{p31:?}");
    assert!(p31.login_rate.is_finite() && p31.logoff_rate.is_finite());
}

#[test]
fn defect_3_a_hello_from_an_unlisted_id_is_refused_unless_registration_is_open() {
    let hello = |id: u32| {
        Event::Register(Registration {
            proxy: ProxyId(id),
            name: format!("p{id}"),
            data_addr: common::addr(id),
            region: None,
            capacity: Capacity {
                connections: 3,
                bits_per_sec: 1_000_000_000,
            },
            streams: vec![],
            rtts: vec![],
            decides: false,
        })
    };
    let listed = ProxySettings {
        id: ProxyId(11),
        region: None,
        coordinates: None,
        tier: None,
        source_tiers: Default::default(),
        logical_connections: None,
        connections: None,
        bits_per_sec: None,
    };
    let mut net = Net::exactly(Config {
        proxies: vec![listed],
        ..Config::default()
    });
    let out = net.handle(hello(66));
    assert_eq!(
        sent_to(&out, 66),
        vec![&PncMsg::Refused(Refusal::UnknownProxy(ProxyId(66)))]
    );
    assert!(decisions(&out).iter().any(|d| d.rule == Rule::Protocol));
    let out = net.handle(hello(11));
    assert!(matches!(sent_to(&out, 11)[..], [PncMsg::Welcome { .. }]));
    let ids: Vec<ProxyId> = net
        .core
        .topology()
        .proxies
        .iter()
        .map(|p| p.proxy)
        .collect();
    assert_eq!(ids, vec![ProxyId(11)], "nothing is kept of the refused one");
    // Its messages find no registration: it is told to register.
    let out = net.msg(
        66,
        ProxyMsg::Distribute {
            stream: "demo".into(),
        },
    );
    assert_eq!(
        sent_to(&out, 66),
        vec![&PncMsg::Refused(Refusal::RegisterAgain(ProxyId(66)))]
    );
    let mut open = Net::exactly(Config {
        open_registration: true,
        ..Config::default()
    });
    let out = open.handle(hello(66));
    assert!(matches!(sent_to(&out, 66)[..], [PncMsg::Welcome { .. }]));
}

/// A chain of `n` proxies one tier below the other (ids 1000…), rebuilt from re-registrations
/// as after a PNC restart: each a standby under the one above, the last accepting viewers.
fn deep_chain(n: u32) -> Net {
    let mut net = Net::new(Config::default());
    let state = |tier: u32, parents: Vec<ProxyId>, source: Option<SourceInfo>| StreamState {
        stream: "demo".into(),
        source,
        tier,
        parents,
        children: vec![],
        viewers: 0,
        accepting: tier == n,
    };
    let register = |net: &mut Net, id: u32, st: StreamState| {
        net.handle(Event::Register(Registration {
            proxy: ProxyId(id),
            name: format!("p{id}"),
            data_addr: common::addr(id),
            region: None,
            capacity: Capacity {
                connections: 10,
                bits_per_sec: 10_000_000_000,
            },
            streams: vec![st],
            rtts: vec![],
            decides: false,
        }));
    };
    let source = SourceInfo {
        source: "src".into(),
        content_type: "video/mp2t".into(),
        bitrate_bps: 0,
    };
    register(&mut net, S, state(0, vec![], Some(source)));
    for tier in 1..=n {
        let parent = if tier == 1 { S } else { 999 + tier };
        register(
            &mut net,
            1000 + tier,
            state(tier, vec![ProxyId(parent)], None),
        );
    }
    net
}

#[test]
fn defect_3_no_depth_of_tree_overflows_the_stack() {
    // The walks up (a standby joining its parents, an idle proxy logging off its parent) and
    // down (evicting a subtree) used to recurse once per tier: a chain as deep as a hostile
    // re-registration makes it overflowed the stack. On a thread with a small stack, each
    // walk over a chain of 2,000 tiers.
    const N: u32 = 2_000;
    let walk = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(|| {
            let mut net = deep_chain(N);
            assert_eq!(net.active("demo").len(), N as usize);
            // The bottom's first viewer joins the whole chain up to the source.
            net.login(1000 + N, "demo");
            assert_eq!(net.serving_tree("demo").len(), N as usize);
            // Its last one leaves: the chain unwinds to the source.
            net.logoff(1000 + N, "demo");
            assert!(net.active("demo").is_empty());
            // Rebuilt again and joined: the top crashes with nobody to replace it, and its
            // subtree is evicted.
            let mut net = deep_chain(N);
            net.login(1000 + N, "demo");
            net.handle(Event::Remove {
                proxy: ProxyId(1001),
            });
            assert!(net.active("demo").is_empty());
        })
        .unwrap();
    walk.join().expect("the walks finish on a small stack");
}

#[test]
fn defect_7_a_proxy_declared_crashed_is_told_to_register_again() {
    let mut net = tiers_of_three(3);
    net.at(100);
    assert_eq!(net.viewer_joins("demo", None), 31);
    net.handle(Event::Remove { proxy: ProxyId(31) });
    let out = net.msg(
        31,
        ProxyMsg::Heartbeat {
            streams: vec![],
            connections: 1,
            bits_per_sec: 0,
            rtts: vec![],
        },
    );
    assert_eq!(
        sent_to(&out, 31),
        vec![&PncMsg::Refused(Refusal::RegisterAgain(ProxyId(31)))]
    );
    assert!(decisions(&out).iter().any(|d| d.rule == Rule::Protocol));
    // It registers again and is a proxy like any other.
    net.at(200);
    net.register(31, None, 3, &[(S, 50)]);
    let alive = net
        .core
        .topology()
        .proxies
        .iter()
        .any(|p| p.proxy.0 == 31 && p.alive);
    assert!(alive);
}

#[test]
fn defect_5_a_child_proxy_leaving_counts_as_a_logoff_of_its_parent() {
    // Capacity 2, a second apart (Δt/10 = 1 s: the rates see each event). u1, u2 fill P31;
    // u3 makes P32 join P21, which fills (P22 a standby). u3 leaves: P32 goes idle and leaves
    // P21. That departure is P21's logoff: its CONSOLIDATE ([0062]) is no longer blocked by
    // the recent join of P32, and P31 moves to another proxy of tier 2.
    let mut net = tiers_of_three(2);
    let mut at = Vec::new();
    for t in [100, 101, 102] {
        net.at(t);
        at.push(net.viewer_joins("demo", None));
    }
    assert_eq!(at, vec![31, 31, 32]);
    assert_eq!(net.pair("demo", 21).unwrap().children.len(), 2);
    net.at(103);
    let out = net.logoff(32, "demo");
    net.check_invariants(&out);
    assert!(net.pair("demo", 32).is_none(), "P32 idle");
    net.at(104);
    let out = net.msg(
        21,
        ProxyMsg::Consolidate {
            stream: "demo".into(),
        },
    );
    net.check_invariants(&out);
    assert!(
        decisions(&out)
            .iter()
            .any(|d| d.rule == Rule::Consolidate && d.reason.starts_with("consolidated")),
        "{:#?}",
        decisions(&out)
    );
    let parents = net.pair("demo", 31).unwrap().parents;
    assert!(
        parents.len() == 1 && parents[0] != ProxyId(21) && parents[0].0 / 10 == 2,
        "P31 moved to another tier-2 proxy: {parents:?}"
    );
}

#[test]
fn defect_6_monitor_lists_follow_the_tier_above() {
    // Figure 2 (capacity 3): u7 fills P21, whose DISTRIBUTE activates P22. Tier 3 monitors
    // tier 2 ([0053]): P31, P32 and P33 are told [P21, P22] then, and [P21] again once P22,
    // never joined, goes idle with the tree's unwinding.
    let mut net = tiers_of_three(3);
    let mut out = Vec::new();
    for t in 1..=7u64 {
        net.at(100 * t);
        let p = net.resolve("demo", None, None).expect("a proxy");
        out = net.login(p, "demo");
        net.check_invariants(&out);
    }
    assert!(net.pair("demo", 22).is_some_and(|a| a.standby));
    for id in [31, 32, 33] {
        let lists: Vec<Vec<u32>> = sent_to(&out, id)
            .into_iter()
            .filter_map(|m| match m {
                PncMsg::MonitorList { peers, .. } => Some(peers.iter().map(|p| p.id.0).collect()),
                _ => None,
            })
            .collect();
        assert_eq!(lists, vec![vec![21, 22]], "P{id}");
    }
    // Every viewer leaves: whatever unwinds, each proxy still active monitors the tier above
    // as it is (checked by `check_invariants` against the lists last sent).
    for (t, p) in [
        (800, 31),
        (801, 31),
        (802, 31),
        (803, 32),
        (804, 32),
        (805, 32),
        (806, 33),
    ] {
        net.at(t);
        let out = net.logoff(p, "demo");
        net.check_invariants(&out);
    }
    assert_eq!(net.monitoring.get(&("demo".to_string(), 31)), None);
}

#[test]
fn defect_3_a_logoff_of_a_child_that_still_serves_does_not_strand_it() {
    // P21 says its child P31 logged off while the PNC neither moved nor drained P31, which
    // still serves u1: handled as P31's lost link to P21 ([0066]), not as a subtree cut off from
    // the source. No P′ nor S′: P31 switches to a newly activated P″.
    let mut net = tiers_of_three(3);
    net.at(100);
    assert_eq!(net.viewer_joins("demo", None), 31);
    net.at(200);
    let out = net.msg(
        21,
        ProxyMsg::Logoff {
            stream: "demo".into(),
            child: Child::Proxy(ProxyId(31)),
        },
    );
    net.check_invariants(&out);
    let p31 = net.pair("demo", 31).expect("P31 still serves u1");
    assert_eq!(p31.parents.len(), 1);
    assert_ne!(p31.parents[0], ProxyId(21));
    assert!(
        decisions(&out)
            .iter()
            .any(|d| d.rule == Rule::LinkDowngrade),
        "{out:?}"
    );
}

#[test]
fn a_logoff_of_a_child_whose_control_connection_closed_leaves_it_to_the_heartbeat_timeout() {
    // P21 is killed: its control connection closes, and P11 sees it go (LOGOFF of P21). Taking
    // that as P21's lost link re-parented the dead P21 to a new P″ and deactivated P11, so
    // P31's own re-homing found no tier 1 left with the stream (found on real processes, the
    // e2e network_crash test). The LOGOFF changes nothing; the heartbeat timeout decides.
    let mut net = tiers_of_three(3);
    net.at(100);
    assert_eq!(net.viewer_joins("demo", None), 31);
    net.at(200);
    let out = net.handle(Event::Disconnected { proxy: ProxyId(21) });
    net.check_invariants(&out);
    let out = net.msg(
        11,
        ProxyMsg::Logoff {
            stream: "demo".into(),
            child: Child::Proxy(ProxyId(21)),
        },
    );
    net.check_invariants(&out);
    assert!(
        !out.iter().any(|c| matches!(c, Command::Send { .. })),
        "no order for a proxy that is likely dead: {out:?}"
    );
    let p11 = net.pair("demo", 11).expect("P11 stays active");
    assert_eq!(p11.children, vec![ProxyId(21)]);
    assert_eq!(
        net.pair("demo", 21).expect("P21 kept").parents,
        vec![ProxyId(11)]
    );
}

#[test]
fn a_lost_link_to_one_of_two_parents_keeps_the_other_and_moves_no_viewer() {
    // [0029] [0044] P31 pulls from P21 and P22; P21 dies and P31 reports the link lost. There
    // is no third tier-2 proxy for a P′: P31 keeps P22 (which still delivers) rather than
    // handing its viewers to a sibling S′ with a redirect (found on real processes, the e2e
    // network_crash test: its VAN viewers were cut over to a standby).
    let mut net = Net::new(Config {
        redundant_parents: 2,
        ..Config::default()
    });
    net.register(S, None, 1000, &[]);
    for tier in 1..=3u32 {
        for j in 1..=2u32 {
            net.register(tier * 10 + j, None, 10, &[(S, tier * 20 - 10)]);
        }
    }
    net.announce(S, "demo", "src");
    net.at(100);
    assert_eq!(net.viewer_joins("demo", None), 31);
    let mut parents = net.pair("demo", 31).unwrap().parents;
    parents.sort();
    assert_eq!(parents, vec![ProxyId(21), ProxyId(22)]);
    net.at(200);
    let out = net.msg(
        31,
        ProxyMsg::LinkDowngrade {
            stream: "demo".into(),
            parent: ProxyId(21),
        },
    );
    net.check_invariants(&out);
    assert!(
        !out.iter().any(|c| matches!(
            c,
            Command::Send {
                msg: PncMsg::RedirectChildren { .. },
                ..
            }
        )),
        "{out:?}"
    );
    let p31 = net.pair("demo", 31).expect("P31 still serves");
    assert_eq!(p31.parents, vec![ProxyId(22)]);
    // P21 no longer counts P31 (with no other child it went idle).
    assert!(
        net.pair("demo", 21)
            .is_none_or(|p| !p.children.contains(&ProxyId(31)))
    );
}

#[test]
fn defect_3_an_origin_publishes_no_more_streams_than_it_has_connections() {
    // A proxy announcing stream after stream cannot grow the PNC without bound: each stream
    // needs one of its connections at least.
    let mut net = Net::new(Config::default());
    net.register(S, None, 3, &[]);
    for k in 0..10 {
        net.announce(S, &format!("s{k}"), "src");
    }
    assert_eq!(net.core.topology().streams.len(), 3);
    assert_eq!(net.core.counters().protocol_errors, 7);
}

#[test]
fn a_deciding_proxy_logging_off_at_its_last_sink_is_not_taken_for_a_lost_link() {
    // P31 runs the agent: its last viewer leaves and it logs off P21 at once ([0055]), before
    // its heartbeat shows it empty. P21's LOGOFF of P31 must not re-parent P31 (that activated
    // a new tier-2 proxy at every departure): P31's heartbeat with no load makes it idle.
    let mut net = Net::new(Config::default());
    net.register(S, None, 1000, &[]);
    for tier in 1..=3u32 {
        for j in 1..=3u32 {
            net.register_as(tier * 10 + j, None, 3, &[(S, tier * 20 - 10)], true);
        }
    }
    net.announce(S, "demo", "src");
    net.at(100);
    assert_eq!(net.resolve("demo", None, None), Some(31));
    net.at(101);
    let out = net.heartbeat(31, "demo", 1, 0.0, 0.0);
    net.check_invariants(&out);
    let out = net.msg(
        21,
        ProxyMsg::Login {
            stream: "demo".into(),
            child: Child::Proxy(ProxyId(31)),
        },
    );
    net.check_invariants(&out);
    let active_before = net.serving_tree("demo");
    net.at(200);
    let out = net.msg(
        21,
        ProxyMsg::Logoff {
            stream: "demo".into(),
            child: Child::Proxy(ProxyId(31)),
        },
    );
    net.check_invariants(&out);
    assert!(
        !decisions(&out)
            .iter()
            .any(|d| d.rule == Rule::LinkDowngrade),
        "{out:?}"
    );
    assert!(
        !out.iter().any(|c| matches!(
            c,
            Command::Send {
                msg: PncMsg::Activate { .. } | PncMsg::SwitchToParent { .. },
                ..
            }
        )),
        "nothing activated or switched for a departure: {out:?}"
    );
    assert_eq!(net.serving_tree("demo"), active_before);
    // Its heartbeat shows it empty: it goes idle.
    net.at(201);
    let out = net.heartbeat(31, "demo", 0, 0.0, 0.0);
    net.check_invariants(&out);
    assert!(
        net.pair("demo", 31).is_none(),
        "P31 idle once its count is 0"
    );
}

#[test]
fn distribute_does_not_regroup_onto_a_proxy_consolidate_is_draining_one_tier_up() {
    // Defect 1's second repro, capacity 2: u1, u2 at P31, u3, u4 at P32 (P21 full, P22 a
    // standby under P11, P33 one under P22); u3 leaves and P32 consolidates. Its viewer goes to
    // the most recently activated P33, which joins P22: tier 2 keeps room for the next proxy of
    // tier 3, P32 goes idle (no DISTRIBUTE is spent on it), and the next viewers are served.
    let mut net = tiers_of_three(2);
    let mut at = Vec::new();
    for t in [100, 200, 300, 400] {
        net.at(t);
        at.push(net.viewer_joins("demo", None));
    }
    assert_eq!(at, vec![31, 31, 32, 32]);
    assert_eq!(net.standbys("demo"), vec![(22, vec![11]), (33, vec![22])]);
    net.at(500);
    let out = net.logoff(32, "demo");
    net.check_invariants(&out);
    net.heartbeat(32, "demo", 1, 0.0, 1.0);
    let out = net.msg(
        32,
        ProxyMsg::Consolidate {
            stream: "demo".into(),
        },
    );
    net.check_invariants(&out);
    follow_moves(&mut net, out);
    assert!(net.pair("demo", 32).is_none(), "P32 drained and idle");
    let p33 = net.pair("demo", 33).expect("P33 serves u4");
    assert_eq!((p33.parents.clone(), p33.viewers), (vec![ProxyId(22)], 1));
    let tier_2_room = [21, 22]
        .iter()
        .filter_map(|&id| net.pair("demo", id))
        .any(|p| p.children.len() < 2);
    assert!(tier_2_room, "{:?}", net.serving_tree("demo"));
    for (t, want) in [(600, 33), (700, 32)] {
        net.at(t);
        assert_eq!(net.viewer_joins("demo", None), want);
    }
}
