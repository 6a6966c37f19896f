//! 50 consecutive parent switches under a 20 Mbit/s stream on real processes (issue 10, item
//! 6b): no viewer loses or duplicates a record.
//!
//! The PNC is made to switch P21 between P11 and P12 the honest way, by its monitoring
//! ([0053], [0066]): in network namespaces (`van_e2e::netns`), P21's new connections to its
//! current parent are refused (a reset answers its SYNs) while the connection it pulls over
//! keeps delivering. P21's probes of that parent fail, it reports LinkDowngrade, and the PNC
//! switches it to the other tier-1 relay: P′ while that one is active with room, P″ (activated
//! again) once it went idle after P21 left it. P21 connects to the new parent from its next
//! sequence number and drops the old one once the new one delivers in order, make-before-break
//! ([0029], [0046]): for a moment both deliver, and P21 drops the duplicates. Then the refusal
//! moves to the new parent, and so on.
//!
//! `VAN_SWITCHES` sets the number of switches (50 by default).

use std::time::{Duration, Instant};

use van_e2e::checked::GeneratedSource;
use van_e2e::netns::Lab;
use van_e2e::network::{FollowingViewer, Network, NetworkSpec, ORIGIN, Tree, show};

const STREAM: &str = "demo";
const BITRATE: u64 = 20_000_000;
const SETTLE: Duration = Duration::from_secs(5);
/// Beyond ΔT: no DISTRIBUTE predicted from the arrivals' burst.
const SPACING: Duration = Duration::from_millis(1200);
/// Three failed probes about a second apart, then the switch (about 3 s).
const ONE_SWITCH: Duration = Duration::from_secs(10);

fn switches() -> usize {
    std::env::var("VAN_SWITCHES")
        .ok()
        .map(|v| v.parse().expect("VAN_SWITCHES is a number"))
        .unwrap_or(50)
}

#[test]
fn fifty_parent_switches_under_20_mbit_lose_and_duplicate_no_record() {
    let started = Instant::now();
    let tiers = vec![vec![11, 12], vec![21, 22]];
    let lab = Lab::new("switch", &tiers)
        .unwrap_or_else(|e| panic!("this test needs its own network namespaces: {e:#}"));
    // Capacity 2: two viewers fill P21 (DISTRIBUTE starts P22 under P11), a third at P22 fills
    // P11 (DISTRIBUTE starts P12): P11 and P12 are active, each with room for P21.
    let spec = NetworkSpec {
        tiers,
        capacity: 2,
        heartbeat_ms: 200,
        delta_t_ms: 200,
        // The refused connects fail at once (a reset): three probes 200 ms apart find it.
        probe_ms: 200,
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
    for want in [21, 21, 22] {
        let r = net.resolve(STREAM).expect("resolve");
        assert_eq!(r.proxy, want, "a viewer is sent to P{}", r.proxy);
        viewers.push(FollowingViewer::open(r.addr, STREAM).expect("a following viewer"));
        std::thread::sleep(SPACING);
    }
    let mut tree = Tree::new();
    let ready = van_e2e::poll(SETTLE, Duration::from_millis(50), || {
        tree = net.tree(STREAM).ok()?;
        (tree.contains_key(&12) && tree.get(&21)?.parents == [11]).then_some(())
    });
    assert!(
        ready.is_some(),
        "P11 and P12 are not both active:\n{}",
        show(&tree)
    );

    let n = switches();
    let mut times = Vec::with_capacity(n);
    let mut parent = 11;
    for i in 1..=n {
        let next = if parent == 11 { 12 } else { 11 };
        lab.allow_new_connections(21).expect("nft");
        lab.refuse_new_connections(21, parent).expect("nft");
        let asked = Instant::now();
        let switched = van_e2e::poll(ONE_SWITCH, Duration::from_millis(10), || {
            let t = net.tree(STREAM).ok()?;
            (t.get(&21)?.parents == [next]
                && net.pulls_from(21, STREAM).as_deref() == Some(&[next][..]))
            .then_some(())
        });
        assert!(
            switched.is_some(),
            "switch {i}: P21 did not move from P{parent} to P{next}:\n{}P21's log:\n{}",
            show(&net.tree(STREAM).unwrap_or_default()),
            net.relay(21).log()
        );
        times.push(asked.elapsed());
        parent = next;
    }
    lab.allow_new_connections(21).expect("nft");

    // Every viewer receives two more seconds of the stream after the last switch.
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
        "not every viewer receives after the switches"
    );
    let decisions = net
        .pnc()
        .log()
        .lines()
        .filter(|l| l.contains("rule=LinkDowngrade") && l.contains("lost"))
        .map(|l| {
            if l.contains("alternate parent P′") {
                "P′"
            } else if l.contains("newly activated P″") {
                "P″"
            } else {
                "other"
            }
        })
        .collect::<Vec<_>>();
    let count = |what: &str| decisions.iter().filter(|&&d| d == what).count();
    let (p_prime, p_double, other) = (count("P′"), count("P″"), count("other"));
    let p21 = net.relay(21);
    let (duplicates, jumps, missed) = (
        p21.metric_total("parent_duplicates_total"),
        p21.metric_total("parent_jumps_total"),
        p21.metric_total("parent_frames_missed_total"),
    );
    let mut sorted = times.clone();
    sorted.sort();
    let reports: Vec<_> = viewers.into_iter().map(FollowingViewer::stop).collect();
    let source_report = source.stop().expect("the source ran");
    eprintln!(
        "{n} switches of P21 between P11 and P12 under {} Mbit/s in {:?}: each from the refusal \
         to P21 pulling from the other parent min {:?} median {:?} max {:?}; LinkDowngrade \
         decisions: {p_prime} P′, {p_double} P″, {other} other; P21 dropped {duplicates} frames as duplicates, {jumps} jumps, {missed} \
         frames missed; the source sent {} records; viewers received {:?} records, lost {:?}, \
         duplicated {:?}",
        BITRATE / 1_000_000,
        started.elapsed(),
        sorted[0],
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1],
        source_report.next_seq,
        reports.iter().map(|r| r.stats.records).collect::<Vec<_>>(),
        reports.iter().map(|r| r.stats.lost).collect::<Vec<_>>(),
        reports
            .iter()
            .map(|r| r.stats.duplicated)
            .collect::<Vec<_>>(),
    );
    for (i, r) in reports.iter().enumerate() {
        assert!(r.damage().is_empty(), "viewer {i}: {:?}", r.damage());
    }
    assert_eq!(
        (p_prime + p_double, other),
        (n, 0),
        "one switch decision per switch"
    );
    assert_eq!(jumps, 0.0, "P21 skipped frames at a switch");
}
