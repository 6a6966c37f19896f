//! ffmpeg publishes at the origin and outside players play through the PNC's `/resolve`, on real
//! processes (issue 10, item 6f): the redirect lands them at a tier-3 relay that pulls the
//! stream through tiers 2 and 1, and ffprobe finds H.264 and AAC while a decode of the first
//! seconds reports no error (the join starts at a keyframe with the PAT/PMT, though the relay
//! they reach had never seen the stream before).

use std::time::Duration;

use van_e2e::ffmpeg::{probe_and_decode_url, publish};
use van_e2e::network::{Network, NetworkSpec, ORIGIN, show};
use van_e2e::require_tools;

#[test]
fn ffmpeg_at_the_origin_plays_through_resolve_at_a_tier_3_relay() {
    let test = "ffmpeg_at_the_origin_plays_through_resolve_at_a_tier_3_relay";
    if !require_tools(test, &["ffmpeg", "ffprobe"]) {
        return;
    }
    let net =
        Network::start(NetworkSpec::three_by_three(3, 200, 200, "")).expect("the network starts");
    let _source = publish(&net.relay(ORIGIN).source_url("icecast", "tv"), &[]);
    net.relay(ORIGIN)
        .wait_live("tv", Duration::from_secs(30))
        .expect("ffmpeg publishes at the origin");
    van_e2e::poll(Duration::from_secs(10), Duration::from_millis(50), || {
        let t = net.topology().ok()?;
        t.streams.iter().any(|s| s.stream == "tv").then_some(())
    })
    .expect("the PNC knows the stream");

    let url = format!("http://{}/resolve/tv", net.pnc().public);
    std::thread::scope(|scope| {
        let player = scope.spawn(|| probe_and_decode_url(&url));
        // While the players play: one is counted at a tier-3 relay whose path goes up through
        // tiers 2 and 1 to the origin.
        let served = van_e2e::poll(Duration::from_secs(30), Duration::from_millis(50), || {
            let tree = net.tree("tv").ok()?;
            let (&id, _) = tree.iter().find(|(_, n)| n.tier == 3 && n.viewers > 0)?;
            let mut path = vec![id];
            let mut at = id;
            while at != ORIGIN && path.len() <= 4 {
                at = *tree.get(&at)?.parents.first()?;
                path.push(at);
            }
            (at == ORIGIN && path.len() == 4).then_some(path)
        });
        let tree = net.tree("tv").map(|t| show(&t)).unwrap_or_default();
        player.join().expect("the players ran");
        let path = served.unwrap_or_else(|| panic!("no viewer counted at a tier-3 relay:\n{tree}"));
        println!("played through {path:?} (tier 3 up to the origin)");
    });
}
