//! The seed's figures 2 and 4 on real processes (issue 10, item 6a): a PNC, the origin P1 and
//! P11…P33 in three pinned tiers of capacity 3, a generated stream published at P1, viewers
//! u1…u7 arriving one at a time through the PNC's `/resolve`, then u4, u2 and u3 leaving.
//!
//! After every step the PNC's tree equals the seed's (DESIGN "Reading the seed";
//! `control/tests/service_figure_2.rs` and `agent_with_core.rs` hold the same trees for the core
//! alone), and the data follows it: each viewer is served by the proxy `/resolve` named, every
//! record arrives once and in order, and each relay pulls from the parents the tree names.
//! u1 is a VAN-aware viewer: figure 4's CONSOLIDATE moves it from P31 to P33 with a redirect
//! frame ([0037], [0046]), and it resumes there without a gap.

use std::time::{Duration, Instant};

use van_e2e::checked::{
    CheckedViewers, GeneratedSource, Kind, ViewerReport, assert_every_byte_right,
};
use van_e2e::network::{FollowingViewer, Network, NetworkSpec, Node, ORIGIN, Tree, show};

const STREAM: &str = "demo";
const BITRATE: u64 = 1_000_000;
/// Longer than ΔT many times over: prediction never fires early (DESIGN, "Thresholds").
const DELTA_T_MS: u64 = 200;
const SPACING: Duration = Duration::from_millis(1200);
const SETTLE: Duration = Duration::from_secs(5);

fn node(
    tier: u32,
    parents: &[u32],
    children: &[u32],
    viewers: u32,
    standby: bool,
    accepting: bool,
) -> Node {
    Node {
        tier,
        parents: parents.to_vec(),
        children: children.to_vec(),
        viewers,
        standby,
        accepting,
    }
}

/// Figure 2 after u1…u`n` arrived: P11–P21 carry the stream to P31, P32, P33 as each fills
/// ([0032], [0035]); a proxy that fills stops accepting and the next one of its tier waits as a
/// standby; u7 fills P21, whose DISTRIBUTE starts P22 under P11 as a standby.
fn figure_2(n: u32) -> Tree {
    let at = |first: u32| n.saturating_sub(first - 1).min(3);
    let mut tree = Tree::new();
    let mut p21_children = vec![31];
    tree.insert(31, node(3, &[21], &[], at(1), false, n < 3));
    if n >= 3 {
        p21_children.push(32);
        tree.insert(32, node(3, &[21], &[], at(4), n < 4, n < 6));
    }
    if n >= 6 {
        p21_children.push(33);
        tree.insert(33, node(3, &[21], &[], at(7), n < 7, true));
    }
    tree.insert(21, node(2, &[11], &p21_children, 0, false, false));
    if n >= 7 {
        tree.insert(22, node(2, &[11], &[], 0, true, false));
        tree.insert(11, node(1, &[ORIGIN], &[21, 22], 0, false, false));
    } else {
        tree.insert(11, node(1, &[ORIGIN], &[21], 0, false, false));
    }
    tree
}

/// The tree without the phase's accepting flag: figure 4 says where viewers and proxies are, not
/// which proxy would take the next one.
fn serving(tree: &Tree) -> Tree {
    tree.iter()
        .map(|(&id, n)| {
            (
                id,
                Node {
                    accepting: false,
                    ..n.clone()
                },
            )
        })
        .collect()
}

fn wait_serving(net: &Network, want: &Tree, what: &str) -> Tree {
    let mut last = Tree::new();
    let got = van_e2e::poll(SETTLE, Duration::from_millis(50), || {
        last = net.tree(STREAM).ok()?;
        (serving(&last) == serving(want)).then(|| last.clone())
    });
    got.unwrap_or_else(|| {
        panic!(
            "{what}: the tree is not the seed's; want\n{}got\n{}pnc log:\n{}",
            show(want),
            show(&last),
            net.pnc().log()
        )
    })
}

/// Every active, non-standby relay pulls from exactly the parents the tree names.
fn assert_pulls_follow(net: &Network, tree: &Tree, what: &str) {
    for (&id, n) in tree.iter().filter(|(_, n)| !n.standby) {
        let ok = van_e2e::poll(SETTLE, Duration::from_millis(50), || {
            (net.pulls_from(id, STREAM).as_deref() == Some(n.parents.as_slice())).then_some(())
        });
        assert!(
            ok.is_some(),
            "{what}: P{id} pulls from {:?}, the tree says {:?}; its log:\n{}",
            net.pulls_from(id, STREAM),
            n.parents,
            net.relay(id).log()
        );
    }
}

fn assert_clean(reports: &[ViewerReport]) {
    assert_every_byte_right(reports);
    for r in reports {
        assert!(r.stats.records > 0, "viewer {} got no record", r.index);
    }
}

#[test]
fn figure_2_then_figure_4_on_real_processes() {
    let started = Instant::now();
    let net = Network::start(NetworkSpec::three_by_three(3, 200, DELTA_T_MS, ""))
        .expect("the network starts");
    let source = GeneratedSource::start(net.relay(ORIGIN), STREAM, BITRATE, 0);
    van_e2e::poll(SETTLE, Duration::from_millis(50), || {
        net.topology()
            .ok()?
            .streams
            .iter()
            .any(|s| s.stream == STREAM)
            .then_some(())
    })
    .expect("the stream is announced at the PNC");

    // Figure 2: u1…u7 one at a time. u1 is VAN-aware (figure 4 moves it), the others plain.
    let expected_at = [31, 31, 31, 32, 32, 32, 33];
    let mut u1 = None;
    let mut plain: Vec<(u32, CheckedViewers)> = Vec::new();
    for (i, &want) in expected_at.iter().enumerate() {
        let user = i as u32 + 1;
        let resolved = net.resolve(STREAM).expect("resolve");
        assert_eq!(
            resolved.proxy,
            want,
            "u{user} was sent to {resolved:?}; tree:\n{}",
            show(&net.tree(STREAM).unwrap())
        );
        assert_eq!(
            resolved.location,
            format!("http://{}/live/{STREAM}", net.relay(want).data)
        );
        if user == 1 {
            u1 = Some(FollowingViewer::open(resolved.addr, STREAM).expect("u1 is served"));
        } else {
            plain.push((
                user,
                CheckedViewers::open(resolved.addr, Kind::Plain, STREAM, 1, SETTLE),
            ));
        }
        let want_tree = figure_2(user);
        net.wait_tree(STREAM, &want_tree, SETTLE)
            .unwrap_or_else(|e| panic!("after u{user}: {e}\npnc log:\n{}", net.pnc().log()));
        assert_pulls_follow(&net, &want_tree, &format!("after u{user}"));
        std::thread::sleep(SPACING);
    }
    let u1 = u1.expect("u1");
    // The data follows the tree: every viewer receives at the proxy it was sent to.
    let progress = |viewers: &[(u32, CheckedViewers)]| -> Vec<u64> {
        viewers
            .iter()
            .map(|(_, v)| v.newest_common_seq().unwrap_or(0))
            .collect()
    };
    let before = progress(&plain);
    let u1_before = u1.records();
    std::thread::sleep(Duration::from_secs(1));
    let after = progress(&plain);
    for ((user, _), (b, a)) in plain.iter().zip(before.iter().zip(&after)) {
        assert!(a > b, "u{user} receives nothing ({b} then {a})");
    }
    assert!(u1.records() > u1_before, "u1 receives nothing");
    for id in [31, 32, 33] {
        let status = net
            .relay(id)
            .stream_status(STREAM)
            .expect("the stream is there");
        let want = figure_2(7)[&id].viewers;
        assert_eq!(
            status["viewers"].as_u64().unwrap() + status["van_viewers"].as_u64().unwrap(),
            u64::from(want),
            "P{id}: {status}"
        );
    }
    eprintln!("figure 2 reached after {:?}", started.elapsed());

    // Figure 4: u4 leaves P32 (2 left: above ⌈3/3⌉ = 1, it stays).
    let mut reports = Vec::new();
    let mut leave = |plain: &mut Vec<(u32, CheckedViewers)>, user: u32| {
        let at = plain
            .iter()
            .position(|(u, _)| *u == user)
            .expect("watching");
        let (_, v) = plain.remove(at);
        reports.extend(v.stop());
    };
    leave(&mut plain, 4);
    let mut fig_4b = figure_2(7);
    fig_4b.get_mut(&32).unwrap().viewers = 2;
    wait_serving(&net, &fig_4b, "u4 left");
    std::thread::sleep(SPACING);
    // u2 leaves P31.
    leave(&mut plain, 2);
    fig_4b.get_mut(&31).unwrap().viewers = 2;
    wait_serving(&net, &fig_4b, "u2 left");
    std::thread::sleep(SPACING);
    // u3 leaves P31: P31, down to 1 in its contraction phase, consolidates; its child u1 moves
    // to P33, the most recently activated proxy of its tier ([0037], [0063]), and P31, empty,
    // logs off P21 and goes idle ([0055]).
    leave(&mut plain, 3);
    let mut fig_4c = fig_4b.clone();
    fig_4c.remove(&31);
    fig_4c.get_mut(&21).unwrap().children = vec![32, 33];
    fig_4c.get_mut(&33).unwrap().viewers = 2;
    wait_serving(&net, &fig_4c, "u3 left");
    let moved = van_e2e::poll(SETTLE, Duration::from_millis(20), || {
        (u1.serving() == net.relay(33).data).then_some(())
    });
    assert!(
        moved.is_some(),
        "u1 was not moved to P33 (it is at {}); P31's log:\n{}",
        u1.serving(),
        net.relay(31).log()
    );
    // u1 receives at P33, and P33 counts it.
    let frame = u1.newest_frame().unwrap_or(0);
    assert!(
        u1.wait_for_frame(frame + 20, SETTLE),
        "u1 receives nothing at P33"
    );
    let status = net
        .relay(33)
        .stream_status(STREAM)
        .expect("P33 has the stream");
    assert_eq!(status["van_viewers"], 1, "{status}");
    assert_pulls_follow(&net, &fig_4c, "figure 4");
    assert_eq!(
        net.relay(31).metric_total("parents_lost_total"),
        0.0,
        "P31 left its parent on purpose"
    );
    // Whoever stayed gets every record to the end: the remaining viewers and u1 across its move.
    let report = source.stop().expect("the source ran");
    let last = report.next_seq - 1;
    for (user, v) in &plain {
        v.wait_until_all_have(last, Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("u{user}: {e}"));
    }
    for (_, v) in plain {
        reports.extend(v.stop());
    }
    assert_clean(&reports);
    let u1 = u1.stop();
    assert!(u1.damage().is_empty(), "u1: {:?}", u1.damage());
    assert_eq!(
        u1.hops,
        vec![net.relay(31).data, net.relay(33).data],
        "u1's way"
    );
    eprintln!(
        "figures 2 and 4 on real processes in {:?}; u1 got {} records across its move",
        started.elapsed(),
        u1.stats.records
    );
    assert!(started.elapsed() < Duration::from_secs(60));
}
