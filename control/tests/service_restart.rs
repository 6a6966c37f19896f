//! A restarted PNC rebuilds its view from the proxies' re-registrations (DESIGN: "the data
//! plane never waits on the PNC"): figure 2 is played against one pnc, which is then killed;
//! the proxies register with a new pnc, each reporting its streams with parents, children and
//! viewers as a dataplane would; the new pnc shows the same serving tree.

mod service_util;

use std::collections::BTreeMap;
use std::time::Duration;

use control::core::Topology;
use service_util::*;

/// (parents, children, viewers, standby) of every active proxy; children listed include
/// standbys assigned there.
type Tree = BTreeMap<u32, (Vec<u32>, Vec<u32>, u32, bool)>;

fn tree_of(topo: &Topology, stream: &str) -> Tree {
    topo.streams
        .iter()
        .filter(|s| s.stream == stream)
        .flat_map(|s| &s.regions)
        .flat_map(|r| &r.tiers)
        .flat_map(|t| &t.active)
        .map(|a| {
            let mut children: Vec<u32> = a.children.iter().map(|p| p.0).collect();
            children.sort();
            (
                a.proxy.0,
                (
                    a.parents.iter().map(|p| p.0).collect(),
                    children,
                    a.viewers,
                    a.standby,
                ),
            )
        })
        .collect()
}

fn ids(list: &[u32]) -> String {
    list.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join("+")
}

#[test]
fn restarted_pnc_rebuilds_the_tree_from_re_registrations() {
    let before = {
        let pnc = Pnc::start("", "");
        let mut script = figure_2_hellos();
        for _ in 1..=7 {
            script += "viewer demo sleep=300\n";
        }
        pnc.script(&script, Duration::from_secs(120)).assert_ok();
        pnc.topology()
        // Dropped here: the first pnc is killed.
    };
    let tree = tree_of(&before, "demo");
    // Figure 2(d): five proxies serving, the standby P22 activated under P11.
    assert_eq!(tree.len(), 6, "{tree:?}");
    assert!(tree[&22].3);

    // What each proxy reports in its hello to the new pnc, as a dataplane knows it: its tier,
    // its parents, the children that connected to it (the standby P22 has not connected to
    // P11 yet), its viewers, whether it takes new ones.
    let mut script = String::from("hello P1 capacity=100 stream=demo,source=www.ccrl.com");
    let tier1: Vec<u32> = tree
        .iter()
        .filter(|(_, (parents, _, _, _))| parents == &vec![1])
        .map(|(id, _)| *id)
        .collect();
    script += &format!(",children={}\n", ids(&tier1));
    let tier_of: BTreeMap<u32, u32> = before.streams[0].regions[0]
        .tiers
        .iter()
        .flat_map(|t| t.active.iter().map(move |a| (a.proxy.0, t.tier)))
        .collect();
    let accepting: Vec<u32> = before.streams[0].regions[0]
        .tiers
        .iter()
        .flat_map(|t| &t.active)
        .filter(|a| a.accepting)
        .map(|a| a.proxy.0)
        .collect();
    for tier in 1..=3u32 {
        for j in 1..=3u32 {
            let id = tier * 10 + j;
            script += &format!("hello P{id} capacity=3 rtt=P1:{}", tier * 20 - 10 + j);
            if let Some((parents, children, viewers, _)) = tree.get(&id) {
                let joined: Vec<u32> = children
                    .iter()
                    .copied()
                    .filter(|c| tree.get(c).is_some_and(|t| !t.3))
                    .collect();
                script += &format!(
                    " stream=demo,tier={},parents={},children={},viewers={viewers}{}",
                    tier_of[&id],
                    ids(parents),
                    ids(&joined),
                    if accepting.contains(&id) {
                        ",accepting"
                    } else {
                        ""
                    }
                );
            }
            script += "\n";
        }
    }
    for id in [1, 11, 12, 13, 21, 22, 23, 31, 32, 33] {
        script += &format!("P{id} expect Welcome 20000\n");
    }
    script += "wait-stream demo 20000\n";

    let pnc = Pnc::start("", "");
    pnc.script(&script, Duration::from_secs(120)).assert_ok();
    let after = pnc.topology();
    assert_eq!(tree_of(&after, "demo"), tree);
    assert_eq!(after.streams[0].viewers, 7);
    assert!(pnc.log_has(&["rule=Rebuild"]));
    // New viewers go where they went before the restart: P33, the one accepting proxy.
    let (status, headers, body) = http_get(pnc.public, "/resolve/demo");
    assert_eq!(status, 302, "{body}");
    assert_eq!(
        header(&headers, "location"),
        Some("http://127.0.0.33:8000/live/demo")
    );
}
