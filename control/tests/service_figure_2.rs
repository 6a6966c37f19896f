//! Figure 2 of the seed replayed end to end: the real `pnc` binary, proxies P1 (the origin) and
//! P11…P33 (capacity 3) as `pnc script` clients over the real control socket, viewers u1–u7
//! redirected through `GET /resolve/demo` ([0032], [0035]).

mod service_util;

use std::collections::BTreeMap;
use std::time::Duration;

use control::protocol::PncMsg;
use service_util::*;

/// (proxy, tier, parents, accepting) of every Activate, in the order received.
fn activations(run: &ScriptRun) -> Vec<(u32, u32, Vec<u32>, bool)> {
    run.received()
        .into_iter()
        .filter_map(|(p, m)| match m {
            PncMsg::Activate {
                stream,
                tier,
                parents,
                accepting,
                ..
            } => {
                assert_eq!(stream, "demo");
                Some((p, tier, parents.iter().map(|q| q.id.0).collect(), accepting))
            }
            _ => None,
        })
        .collect()
}

#[test]
fn figure_2_expansion_through_the_socket() {
    let pnc = Pnc::start("", "");
    // Arrivals 300 ms apart: far beyond ΔT = 200 ms, so prediction never fires early.
    let mut script = figure_2_hellos();
    for _ in 1..=7 {
        script += "viewer demo sleep=300\n";
    }
    script += "P22 expect Activate 10000\n";
    let run = pnc.script(&script, Duration::from_secs(120));
    run.assert_ok();

    // u1–u3 at P31, u4–u6 at P32, u7 at P33 (figure 2(a)–(d)).
    assert_eq!(
        run.viewers(),
        vec![31, 31, 31, 32, 32, 32, 33],
        "{:#?}",
        run.lines
    );

    let mut acts = activations(&run);
    // (a) the first path: one proxy per tier, S–P11–P21–P31 ([0032]); the three arrive on
    // three connections, so their relative order is not fixed.
    let mut first: Vec<_> = acts.drain(..3).collect();
    first.sort();
    assert_eq!(
        first,
        vec![
            (11, 1, vec![1], false),
            (21, 2, vec![11], false),
            (31, 3, vec![21], true),
        ]
    );
    // (b) u3 fills P31: P32 under P21; (c) u6 fills P32: P33 under P21; (d) u7 fills P21,
    // whose DISTRIBUTE activates P22 under P11 as a standby ([0035], [0054]).
    assert_eq!(
        acts,
        vec![
            (32, 3, vec![21], true),
            (33, 3, vec![21], true),
            (22, 2, vec![11], false),
        ]
    );
    let stops: Vec<(u32, Vec<u32>)> = run
        .received()
        .into_iter()
        .filter_map(|(p, m)| match m {
            PncMsg::StopAccepting { redirect_to, .. } => {
                Some((p, redirect_to.iter().map(|q| q.id.0).collect()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(stops, vec![(31, vec![32]), (32, vec![33])]);

    // The final topology: figure 2(d).
    let topo = pnc.topology();
    assert_eq!(topo.streams.len(), 1);
    let s = &topo.streams[0];
    assert_eq!((s.stream.as_str(), s.origin.0, s.viewers), ("demo", 1, 7));
    assert_eq!(s.source.source, "www.ccrl.com");
    let overlay: Vec<Vec<u32>> = s.regions[0]
        .tiers
        .iter()
        .map(|t| t.overlay.iter().map(|p| p.0).collect())
        .collect();
    assert_eq!(
        overlay,
        vec![vec![11, 12, 13], vec![21, 22, 23], vec![31, 32, 33]]
    );
    let tree: BTreeMap<u32, (Vec<u32>, Vec<u32>, u32, bool)> = s.regions[0]
        .tiers
        .iter()
        .flat_map(|t| &t.active)
        .map(|a| {
            (
                a.proxy.0,
                (
                    a.parents.iter().map(|p| p.0).collect(),
                    a.children.iter().map(|p| p.0).collect(),
                    a.viewers,
                    a.standby,
                ),
            )
        })
        .collect();
    let expected: BTreeMap<u32, (Vec<u32>, Vec<u32>, u32, bool)> = [
        // P11's children list the standby P22 (reserved there, not load).
        (11, (vec![1], vec![21, 22], 0, false)),
        (21, (vec![11], vec![31, 32, 33], 0, false)),
        (22, (vec![11], vec![], 0, true)),
        (31, (vec![21], vec![], 3, false)),
        (32, (vec![21], vec![], 3, false)),
        (33, (vec![21], vec![], 1, false)),
    ]
    .into_iter()
    .collect();
    assert_eq!(tree, expected);
    let accepting: Vec<u32> = s.regions[0]
        .tiers
        .iter()
        .flat_map(|t| &t.active)
        .filter(|a| a.accepting)
        .map(|a| a.proxy.0)
        .collect();
    assert_eq!(accepting, vec![33]);
    // Every decision was logged with its rule.
    assert!(pnc.log_has(&["pnc::decision", "rule=Distribute", "stream=\"demo\""]));
}
