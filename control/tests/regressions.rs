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
    net.msg(
        31,
        ProxyMsg::Heartbeat {
            streams: vec![StreamLoad {
                stream: "demo".into(),
                viewers: 1,
                child_proxies: 0,
                bits_per_sec: 0,
                login_rate: 0.0,
                logoff_rate: 1.0,
            }],
            connections: 1,
            bits_per_sec: 0,
            rtts: vec![],
        },
    );
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
