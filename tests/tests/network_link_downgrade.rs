//! LinkDowngrade on real processes (issue 10, item 6e): a child's link to its parent is cut
//! (`ip link set … down` in network namespaces, `van_e2e::netns`), the child's monitoring
//! reports it ([0053]) and the PNC takes the first of [0066]'s remedies that applies. Each test
//! arranges the tree so that one remedy is the one the PNC must take:
//!
//! - P′: another active relay of the parent tier has room, so the child switches to it;
//! - S′: the parent tier has no other relay, a sibling has room for the child's viewers, so they
//!   move there (redirect frames, [0037], [0046]);
//! - P″: no other relay is active in the parent tier and the child has no sibling, so the PNC
//!   activates one and switches the child to it.
//!
//! Every case checks the PNC's decision (its log) and its tree, and that the VAN viewers, which
//! follow redirects, receive every record once and in order across the move.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use van_e2e::checked::GeneratedSource;
use van_e2e::netns::Lab;
use van_e2e::network::{FollowingViewer, Network, NetworkSpec, ORIGIN, Tree, show};

const STREAM: &str = "demo";
const BITRATE: u64 = 1_000_000;
const SETTLE: Duration = Duration::from_secs(5);
/// Between two viewers' arrivals: far beyond ΔT, so that no DISTRIBUTE is predicted from a
/// burst (DESIGN, "Thresholds").
const SPACING: Duration = Duration::from_millis(1200);
/// The monitoring probes about once a second and counts a link lost after three failures.
const DETECTION: Duration = Duration::from_secs(15);

/// The tests run one after the other: each starts its processes and measures times.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// One arrangement: the tiers and capacity, where each viewer arriving through `/resolve` must
/// be sent, what the tree must look like before the cut, and the remedy expected when `child`'s
/// link to its parent is cut.
struct Case {
    tag: &'static str,
    tiers: Vec<Vec<u32>>,
    capacity: u32,
    arrivals: &'static [u32],
    child: u32,
    /// The tree before the cut is ready for the case.
    ready: fn(&Tree) -> bool,
    /// A piece of the PNC's decision line.
    decision: &'static str,
}

/// What a case ended with.
struct Outcome {
    net: Network,
    /// The tree after the remedy, as `healed` accepted it.
    tree: Tree,
    /// The viewers, each at the relay serving it now.
    viewers: Vec<FollowingViewer>,
    source: GeneratedSource,
    lab: Lab,
}

/// Builds the case's network, brings the viewers, cuts `child`'s link to its parent, and waits
/// until the decision is logged and `healed` holds on the tree.
fn run(case: &Case, healed: impl Fn(&Network, &Tree, &[FollowingViewer]) -> bool) -> Outcome {
    let lab = Lab::new(case.tag, &case.tiers)
        .unwrap_or_else(|e| panic!("this test needs its own network namespaces: {e:#}"));
    let spec = NetworkSpec {
        tiers: case.tiers.clone(),
        capacity: case.capacity,
        heartbeat_ms: 200,
        delta_t_ms: 200,
        probe_ms: 1000,
        coordinator: String::new(),
    };
    let net = Network::start_on(spec, lab.hosts()).expect("the network starts");
    let source = GeneratedSource::start(net.relay(ORIGIN), STREAM, BITRATE, 0);
    van_e2e::poll(SETTLE, Duration::from_millis(50), || {
        let t = net.topology().ok()?;
        t.streams.iter().any(|s| s.stream == STREAM).then_some(())
    })
    .expect("the stream is announced");

    let mut viewers = Vec::new();
    for (n, &want) in case.arrivals.iter().enumerate() {
        let r = net.resolve(STREAM).expect("resolve");
        assert_eq!(r.proxy, want, "viewer {n} is sent to P{}", r.proxy);
        viewers.push(FollowingViewer::open(r.addr, STREAM).expect("a following viewer"));
        std::thread::sleep(SPACING);
    }
    let mut last = Tree::new();
    let ready = van_e2e::poll(SETTLE, Duration::from_millis(50), || {
        last = net.tree(STREAM).ok()?;
        (case.ready)(&last).then_some(())
    });
    assert!(
        ready.is_some(),
        "{}: the tree is not the case's:\n{}pnc log:\n{}",
        case.tag,
        show(&last),
        net.pnc().log()
    );
    let parent = match last[&case.child].parents.as_slice() {
        [p] => *p,
        other => panic!("P{} has parents {other:?}", case.child),
    };
    let pulling = van_e2e::poll(SETTLE, Duration::from_millis(50), || {
        (net.pulls_from(case.child, STREAM)? == vec![parent]).then_some(())
    });
    assert!(
        pulling.is_some(),
        "P{} does not pull from P{parent}",
        case.child
    );
    // Let the monitoring see the link healthy first.
    std::thread::sleep(Duration::from_secs(2));

    let cut = Instant::now();
    lab.cut(case.child, parent).expect("cut the link");
    let mut tree = Tree::new();
    let done = van_e2e::poll(DETECTION, Duration::from_millis(10), || {
        let decided = net
            .pnc()
            .log()
            .lines()
            .any(|l| l.contains("LinkDowngrade") && l.contains(case.decision));
        tree = net.tree(STREAM).ok()?;
        (decided && healed(&net, &tree, &viewers)).then_some(())
    });
    assert!(
        done.is_some(),
        "{}: after cutting P{}–P{parent}, no `{}` or not healed; tree:\n{}P{}'s log:\n{}\npnc log:\n{}",
        case.tag,
        case.child,
        case.decision,
        show(&tree),
        case.child,
        net.relay(case.child).log(),
        net.pnc().log()
    );
    eprintln!(
        "{}: cut P{}–P{parent}; healed {:?} after the cut:\n{}",
        case.tag,
        case.child,
        cut.elapsed(),
        show(&tree)
    );
    Outcome {
        net,
        tree,
        viewers,
        source,
        lab,
    }
}

/// Every viewer receives at least two more seconds of records, then each must have received
/// every record once and in order.
fn assert_viewers_whole(outcome: Outcome) {
    let Outcome {
        net,
        viewers,
        source,
        lab,
        ..
    } = outcome;
    let records_per_s = BITRATE / 8 / van_e2e::checked::RECORD_LEN as u64;
    let before: Vec<u64> = viewers.iter().map(FollowingViewer::records).collect();
    let more = van_e2e::poll(SETTLE, Duration::from_millis(20), || {
        viewers
            .iter()
            .zip(&before)
            .all(|(v, b)| v.records() > b + 2 * records_per_s)
            .then_some(())
    });
    assert!(
        more.is_some(),
        "not every viewer receives again: {:?} records, {:?} before; serving {:?}",
        viewers
            .iter()
            .map(FollowingViewer::records)
            .collect::<Vec<_>>(),
        before,
        viewers
            .iter()
            .map(FollowingViewer::serving)
            .collect::<Vec<_>>()
    );
    for (i, v) in viewers.into_iter().enumerate() {
        let report = v.stop();
        let hops: Vec<Option<u32>> = report.hops.iter().map(|&a| net.id_at(a)).collect();
        eprintln!(
            "viewer {i}: {} records, served by {hops:?}",
            report.stats.records
        );
        assert!(
            report.damage().is_empty(),
            "viewer {i}: {:?}",
            report.damage()
        );
    }
    source.stop().expect("the source ran");
    drop(net);
    drop(lab);
}

#[test]
fn an_alternate_parent_p_prime_in_the_parent_tier() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    // Capacity 2: two viewers fill P21, whose DISTRIBUTE starts P22 under P11 as a standby; the
    // third viewer goes there, P22 joins P11 and fills it, and P11's DISTRIBUTE starts P12.
    // P12 is active with room: P′.
    let case = Case {
        tag: "pprime",
        tiers: vec![vec![11, 12], vec![21, 22]],
        capacity: 2,
        arrivals: &[21, 21, 22],
        child: 21,
        ready: |t| t.contains_key(&12) && t.get(&21).is_some_and(|n| n.parents == [11]),
        decision: "switch to alternate parent P′ = P12",
    };
    let outcome = run(&case, |net, t, _| {
        t.get(&21).is_some_and(|n| n.parents == [12])
            && net.pulls_from(21, STREAM).as_deref() == Some(&[12][..])
    });
    assert_eq!(outcome.tree[&21].viewers, 2, "{}", show(&outcome.tree));
    assert_viewers_whole(outcome);
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn a_sibling_s_prime_takes_the_viewers() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    // Capacity 2: two viewers fill P21, whose DISTRIBUTE starts P22 under P11 as a standby.
    // P11 is the only tier-1 relay (no P′, no P″); P22 has room for P21's two viewers: S′.
    let case = Case {
        tag: "sprime",
        tiers: vec![vec![11], vec![21, 22]],
        capacity: 2,
        arrivals: &[21, 21],
        child: 21,
        ready: |t| t.contains_key(&22) && t.get(&21).is_some_and(|n| n.parents == [11]),
        decision: "children move to sibling S′ = P22",
    };
    let outcome = run(&case, |net, _, viewers| {
        let p22 = net.relay(22).data;
        viewers.iter().all(|v| v.serving() == p22)
    });
    assert_viewers_whole(outcome);
    assert!(started.elapsed() < Duration::from_secs(60));
}

#[test]
fn a_newly_activated_parent_p_double_prime() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let started = Instant::now();
    // One viewer at P31 under P21 under P11; P22 idle, P31 has no sibling: the PNC activates
    // P22 (P″) and switches P31 to it.
    let case = Case {
        tag: "pdouble",
        tiers: vec![vec![11], vec![21, 22], vec![31]],
        capacity: 10,
        arrivals: &[31],
        child: 31,
        ready: |t| !t.contains_key(&22) && t.get(&31).is_some_and(|n| n.parents == [21]),
        decision: "switch to newly activated P″ = P22",
    };
    let outcome = run(&case, |net, t, _| {
        t.get(&31).is_some_and(|n| n.parents == [22])
            && net.pulls_from(31, STREAM).as_deref() == Some(&[22][..])
    });
    assert_viewers_whole(outcome);
    assert!(started.elapsed() < Duration::from_secs(60));
}
