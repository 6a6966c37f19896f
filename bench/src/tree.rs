//! `vanbench tree`: the PNC's view of every stream (`GET /api/topology` on its admin port) drawn
//! as a text tree, origin at the top, each proxy under its parent, with tier, phase, load and
//! viewers. The demo network prints it whenever it changes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use control::core::{ActiveProxyView, Phase, StreamView, Topology};
use control::protocol::ProxyId;

/// Fetch the PNC's topology from its admin port.
pub fn fetch(admin: SocketAddr, timeout: Duration) -> Result<Topology, String> {
    let mut s = TcpStream::connect_timeout(&admin, timeout)
        .map_err(|e| format!("connect to the PNC's admin port {admin}: {e}"))?;
    s.set_read_timeout(Some(timeout)).ok();
    s.set_write_timeout(Some(timeout)).ok();
    write!(
        s,
        "GET /api/topology HTTP/1.1\r\nHost: {admin}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("send to {admin}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("read from {admin}: {e}"))?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("{admin}: no HTTP head in the answer"))?;
    let status = head.lines().next().unwrap_or_default();
    if !status.contains(" 200") {
        return Err(format!("{admin}: /api/topology answered {status:?}"));
    }
    serde_json::from_str(body).map_err(|e| format!("{admin}: /api/topology is not JSON: {e}"))
}

/// The topology as text: one block per stream.
pub fn render(t: &Topology) -> String {
    let mut out = String::new();
    if t.streams.is_empty() {
        let alive = t.proxies.iter().filter(|p| p.alive).count();
        let _ = writeln!(out, "no stream yet; {alive} proxies registered");
    }
    for s in &t.streams {
        render_stream(s, t, &mut out);
    }
    out
}

fn render_stream(s: &StreamView, t: &Topology, out: &mut String) {
    let origin_name = t
        .proxies
        .iter()
        .find(|p| p.proxy == s.origin && p.name != p.proxy.to_string())
        .map_or(String::new(), |p| format!(" ({})", p.name));
    let _ = writeln!(
        out,
        "{}{}: {} viewers, origin {}{}",
        s.stream,
        if s.source.source == s.stream {
            String::new()
        } else {
            format!(" ({})", s.source.source)
        },
        s.viewers,
        s.origin,
        origin_name
    );
    for region in &s.regions {
        let active: BTreeMap<ProxyId, (u32, &ActiveProxyView)> = region
            .tiers
            .iter()
            .flat_map(|tier| tier.active.iter().map(move |a| (a.proxy, (tier.tier, a))))
            .collect();
        // Each proxy is drawn under its first parent that is drawn; the others are named.
        let mut kids: BTreeMap<ProxyId, Vec<ProxyId>> = BTreeMap::new();
        let mut roots = Vec::new();
        for (&id, (_, a)) in &active {
            match a.parents.iter().find(|p| active.contains_key(p)) {
                Some(&first) => kids.entry(first).or_default().push(id),
                None => roots.push(id),
            }
        }
        let _ = writeln!(out, "  region {}", region.region);
        let mut drawn = BTreeSet::new();
        for (i, root) in roots.iter().enumerate() {
            let last = i + 1 == roots.len();
            draw(*root, &active, &kids, "    ", last, &mut drawn, out);
        }
        let unreachable: Vec<String> = active
            .keys()
            .filter(|p| !drawn.contains(p))
            .map(|p| p.to_string())
            .collect();
        if !unreachable.is_empty() {
            let _ = writeln!(out, "    in a parent loop: {}", unreachable.join(" "));
        }
        let idle: Vec<String> = region
            .tiers
            .iter()
            .flat_map(|tier| tier.overlay.iter())
            .filter(|p| !active.contains_key(p))
            .map(|p| p.to_string())
            .collect();
        if !idle.is_empty() {
            let _ = writeln!(out, "    idle: {}", idle.join(" "));
        }
    }
}

fn draw(
    id: ProxyId,
    active: &BTreeMap<ProxyId, (u32, &ActiveProxyView)>,
    kids: &BTreeMap<ProxyId, Vec<ProxyId>>,
    indent: &str,
    last: bool,
    drawn: &mut BTreeSet<ProxyId>,
    out: &mut String,
) {
    // A cycle in a broken topology must not loop forever here.
    if !drawn.insert(id) {
        return;
    }
    let Some(&(tier, a)) = active.get(&id) else {
        return;
    };
    let phase = match a.phase {
        Phase::Expansion if a.standby => "standby",
        Phase::Expansion => "expansion",
        Phase::Contraction => "contraction",
        Phase::Idle => "idle",
    };
    let accepting = if a.accepting { ", accepting" } else { "" };
    let others: Vec<String> = a.parents.iter().skip(1).map(|p| p.to_string()).collect();
    let also = if others.is_empty() {
        String::new()
    } else {
        format!(", also from {}", others.join(" "))
    };
    let branch = if last { "└─ " } else { "├─ " };
    let _ = writeln!(
        out,
        "{indent}{branch}{id} tier {tier} {phase}{accepting}: load {}/{} ({} viewers){also}",
        a.load, a.capacity, a.viewers
    );
    let next_indent = format!("{indent}{}", if last { "   " } else { "│  " });
    let children = kids.get(&id).map(Vec::as_slice).unwrap_or_default();
    for (i, c) in children.iter().enumerate() {
        draw(
            *c,
            active,
            kids,
            &next_indent,
            i + 1 == children.len(),
            drawn,
            out,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use control::core::{RegionView, TierView, Time};
    use control::protocol::SourceInfo;

    fn active(id: u32, parents: &[u32], load: u32, accepting: bool) -> ActiveProxyView {
        ActiveProxyView {
            proxy: ProxyId(id),
            name: format!("p{id}"),
            addr: "127.0.0.1:1".parse().unwrap(),
            phase: Phase::Expansion,
            standby: load == 0,
            accepting,
            load,
            viewers: if accepting { load } else { 0 },
            capacity: 3,
            parents: parents.iter().map(|&p| ProxyId(p)).collect(),
            children: vec![],
            farm: vec![ProxyId(id)],
            activated_at: Time::ZERO,
            login_rate: 0.0,
            logoff_rate: 0.0,
        }
    }

    #[test]
    fn figure_2_b_is_drawn_origin_first_each_proxy_under_its_parent() {
        let tier = |n: u32, overlay: &[u32], active: Vec<ActiveProxyView>| TierView {
            tier: n,
            overlay: overlay.iter().map(|&p| ProxyId(p)).collect(),
            active,
        };
        let t = Topology {
            at: Time::ZERO,
            proxies: vec![],
            streams: vec![StreamView {
                stream: "demo".into(),
                source: SourceInfo {
                    source: "www.ccrl.com".into(),
                    content_type: "video/mp2t".into(),
                    bitrate_bps: 0,
                },
                origin: ProxyId(1),
                origin_children: vec![],
                viewers: 4,
                login_rate: 0.0,
                logoff_rate: 0.0,
                regions: vec![RegionView {
                    region: "default".into(),
                    tiers: vec![
                        tier(1, &[11, 12], vec![active(11, &[1], 1, false)]),
                        tier(
                            2,
                            &[21, 22],
                            vec![active(21, &[11], 2, false), active(22, &[11], 0, false)],
                        ),
                        tier(
                            3,
                            &[31, 32, 33],
                            vec![active(31, &[21], 3, false), active(32, &[21], 1, true)],
                        ),
                    ],
                }],
            }],
        };
        let text = render(&t);
        let expected = "\
demo (www.ccrl.com): 4 viewers, origin P1
  region default
    └─ P11 tier 1 expansion: load 1/3 (0 viewers)
       ├─ P21 tier 2 expansion: load 2/3 (0 viewers)
       │  ├─ P31 tier 3 expansion: load 3/3 (0 viewers)
       │  └─ P32 tier 3 expansion, accepting: load 1/3 (1 viewers)
       └─ P22 tier 2 standby: load 0/3 (0 viewers)
    idle: P12 P33
";
        assert_eq!(text, expected, "\n{text}");
    }

    #[test]
    fn a_parent_loop_is_drawn_once_not_forever() {
        let a = active(11, &[12], 1, true);
        let b = active(12, &[11], 1, true);
        let t = Topology {
            at: Time::ZERO,
            proxies: vec![],
            streams: vec![StreamView {
                stream: "s".into(),
                source: SourceInfo {
                    source: "s".into(),
                    content_type: String::new(),
                    bitrate_bps: 0,
                },
                origin: ProxyId(1),
                origin_children: vec![],
                viewers: 0,
                login_rate: 0.0,
                logoff_rate: 0.0,
                regions: vec![RegionView {
                    region: "r".into(),
                    tiers: vec![TierView {
                        tier: 1,
                        overlay: vec![ProxyId(11), ProxyId(12)],
                        active: vec![a, b],
                    }],
                }],
            }],
        };
        // Neither has a parent outside the loop, so neither is a root: both are named as in a
        // loop, and above all render returns.
        let text = render(&t);
        assert!(text.contains("in a parent loop: P11 P12"), "{text}");
    }
}
