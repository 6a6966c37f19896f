//! A small simulated proxy network around the coordinator for scenario and property tests:
//! registers proxies, plays viewers and checks every command against the invariants.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use control::core::*;
use control::protocol::*;

pub fn addr(id: u32) -> SocketAddr {
    SocketAddr::new(IpAddr::from([127, 0, (id >> 8) as u8, id as u8]), 8000)
}

pub struct Net {
    pub core: Coordinator,
    pub now: Time,
    /// Every command ever returned, in order.
    pub log: Vec<Command>,
    /// The last MonitorList each proxy received, per (stream, proxy), until deactivated.
    pub monitoring: BTreeMap<(String, u32), Vec<u32>>,
    /// Proxies told to redirect their viewers elsewhere (being drained), per (stream, proxy),
    /// until deactivated.
    pub draining: std::collections::BTreeSet<(String, u32)>,
    /// The list of the last StopAccepting each proxy received, per (stream, proxy), until it
    /// takes viewers again or is activated or deactivated: where it sends new viewers.
    pub redirecting: BTreeMap<(String, u32), Vec<u32>>,
}

/// (parents, children, viewers) of each active proxy of a stream: the serving tree.
pub type Tree = BTreeMap<u32, (Vec<u32>, Vec<u32>, u32)>;

impl Net {
    /// A network on `config` with open registration: the tests register proxies that the
    /// configuration does not list.
    pub fn new(config: Config) -> Self {
        Self::exactly(Config {
            open_registration: true,
            ..config
        })
    }

    /// A network on `config` as given.
    pub fn exactly(config: Config) -> Self {
        Net {
            core: Coordinator::new(config),
            now: Time::from_secs(1),
            log: Vec::new(),
            monitoring: BTreeMap::new(),
            draining: Default::default(),
            redirecting: BTreeMap::new(),
        }
    }

    pub fn at(&mut self, secs: u64) {
        let t = Time::from_secs(secs);
        assert!(t >= self.now, "time goes forward");
        self.now = t;
    }

    pub fn advance_ms(&mut self, ms: u64) {
        self.now = self.now.plus_micros(ms * 1000);
    }

    pub fn handle(&mut self, ev: Event) -> Vec<Command> {
        let out = self.core.handle(ev, self.now);
        for c in &out {
            match c {
                Command::Send {
                    to,
                    msg: PncMsg::MonitorList { stream, peers },
                } => {
                    let mut ids: Vec<u32> = peers.iter().map(|p| p.id.0).collect();
                    ids.sort();
                    self.monitoring.insert((stream.clone(), to.0), ids);
                }
                Command::Send {
                    to,
                    msg: PncMsg::Deactivate { stream },
                } => {
                    self.monitoring.remove(&(stream.clone(), to.0));
                    self.draining.remove(&(stream.clone(), to.0));
                    self.redirecting.remove(&(stream.clone(), to.0));
                }
                Command::Send {
                    to,
                    msg:
                        PncMsg::StopAccepting {
                            stream,
                            redirect_to,
                        },
                } => {
                    let ids = redirect_to.iter().map(|p| p.id.0).collect();
                    self.redirecting.insert((stream.clone(), to.0), ids);
                }
                Command::Send {
                    to,
                    msg: PncMsg::StartAccepting { stream } | PncMsg::Activate { stream, .. },
                } => {
                    self.redirecting.remove(&(stream.clone(), to.0));
                }
                Command::Send {
                    to,
                    msg: PncMsg::RedirectChildren { stream, .. },
                } => {
                    self.draining.insert((stream.clone(), to.0));
                }
                _ => {}
            }
        }
        self.log.extend(out.iter().cloned());
        out
    }

    pub fn register(
        &mut self,
        id: u32,
        region: Option<&str>,
        connections: u32,
        rtts: &[(u32, u32)],
    ) {
        self.register_as(id, region, connections, rtts, false);
    }

    /// [`Net::register`] for a proxy that runs the agent (`decides`, DECIDERS.md) or not.
    pub fn register_as(
        &mut self,
        id: u32,
        region: Option<&str>,
        connections: u32,
        rtts: &[(u32, u32)],
        decides: bool,
    ) {
        let out = self.handle(Event::Register(Registration {
            proxy: ProxyId(id),
            name: format!("p{id}"),
            data_addr: addr(id),
            region: region.map(str::to_string),
            capacity: Capacity {
                connections,
                bits_per_sec: 10_000_000_000,
            },
            streams: vec![],
            rtts: rtts
                .iter()
                .map(|&(peer, ms)| Rtt {
                    peer: ProxyId(peer),
                    micros: ms * 1000,
                })
                .collect(),
            decides,
        }));
        assert!(out.iter().any(
            |c| matches!(c, Command::Send { to, msg: PncMsg::Welcome { .. } } if *to == ProxyId(id))
        ));
    }

    pub fn msg(&mut self, from: u32, msg: ProxyMsg) -> Vec<Command> {
        self.handle(Event::Message {
            from: ProxyId(from),
            msg,
        })
    }

    /// A heartbeat of `from` carrying one stream's load: `viewers` (also its connections) and
    /// the rates its agent predicts.
    pub fn heartbeat(
        &mut self,
        from: u32,
        stream: &str,
        viewers: u32,
        login_rate: f32,
        logoff_rate: f32,
    ) -> Vec<Command> {
        self.msg(
            from,
            ProxyMsg::Heartbeat {
                streams: vec![StreamLoad {
                    stream: stream.into(),
                    viewers,
                    child_proxies: 0,
                    bits_per_sec: 0,
                    login_rate,
                    logoff_rate,
                }],
                connections: viewers,
                bits_per_sec: 0,
                rtts: vec![],
            },
        )
    }

    pub fn announce(&mut self, origin: u32, stream: &str, source: &str) {
        self.msg(
            origin,
            ProxyMsg::StreamAnnounce {
                stream: stream.into(),
                source: SourceInfo {
                    source: source.into(),
                    content_type: "video/mp2t".into(),
                    bitrate_bps: 0,
                },
            },
        );
    }

    pub fn resolve(
        &mut self,
        stream: &str,
        region: Option<&str>,
        client: Option<IpAddr>,
    ) -> Option<u32> {
        let out = self.handle(Event::Resolve {
            request: 7,
            stream: stream.into(),
            region: region.map(str::to_string),
            client,
        });
        let res: Vec<&Resolution> = out
            .iter()
            .filter_map(|c| match c {
                Command::Resolved(r) => Some(r),
                _ => None,
            })
            .collect();
        assert_eq!(res.len(), 1, "one answer per resolve");
        res[0].target.map(|p| p.id.0)
    }

    /// A viewer resolves the stream and logs in where it is sent.
    pub fn viewer_joins(&mut self, stream: &str, region: Option<&str>) -> u32 {
        let p = self
            .resolve(stream, region, None)
            .expect("a proxy for the viewer");
        self.login(p, stream);
        p
    }

    pub fn login(&mut self, p: u32, stream: &str) -> Vec<Command> {
        self.msg(
            p,
            ProxyMsg::Login {
                stream: stream.into(),
                child: Child::Viewer,
            },
        )
    }

    pub fn logoff(&mut self, p: u32, stream: &str) -> Vec<Command> {
        self.msg(
            p,
            ProxyMsg::Logoff {
                stream: stream.into(),
                child: Child::Viewer,
            },
        )
    }

    pub fn stream_view(&self, stream: &str) -> Option<StreamView> {
        self.core
            .topology()
            .streams
            .into_iter()
            .find(|s| s.stream == stream)
    }

    pub fn active(&self, stream: &str) -> Vec<ActiveProxyView> {
        self.stream_view(stream)
            .map(|s| {
                s.regions
                    .into_iter()
                    .flat_map(|r| r.tiers.into_iter().flat_map(|t| t.active))
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn pair(&self, stream: &str, id: u32) -> Option<ActiveProxyView> {
        self.active(stream)
            .into_iter()
            .find(|a| a.proxy == ProxyId(id))
    }

    /// The serving tree: active proxies that are not standbys.
    pub fn serving_tree(&self, stream: &str) -> Tree {
        self.active(stream)
            .into_iter()
            .filter(|a| !a.standby)
            .map(|a| {
                (
                    a.proxy.0,
                    (
                        a.parents.iter().map(|p| p.0).collect(),
                        a.children.iter().map(|p| p.0).collect(),
                        a.viewers,
                    ),
                )
            })
            .collect()
    }

    pub fn standbys(&self, stream: &str) -> Vec<(u32, Vec<u32>)> {
        self.active(stream)
            .into_iter()
            .filter(|a| a.standby)
            .map(|a| (a.proxy.0, a.parents.iter().map(|p| p.0).collect()))
            .collect()
    }

    /// Invariants that hold after any event: the core's own audit (links known at both ends,
    /// one tier down, accounting exact), no proxy over capacity, every active proxy has a path
    /// to its source through active proxies, every parent one tier up, every command names
    /// active proxies, no viewer sent to (and no DISTRIBUTE served by) a proxy being drained,
    /// every decision with its rule, its reason and what it is about.
    pub fn check_invariants(&self, new: &[Command]) {
        if let Err(e) = self.core.audit() {
            panic!("{e}");
        }
        check_every_change_is_decided(new);
        let topo = self.core.topology();
        check_loads_add_up(&topo);
        let alive: BTreeMap<ProxyId, &ProxyView> =
            topo.proxies.iter().map(|p| (p.proxy, p)).collect();
        for p in &topo.proxies {
            assert!(
                p.connections <= p.capacity.connections,
                "{} over capacity: {} > {}",
                p.proxy,
                p.connections,
                p.capacity.connections
            );
        }
        let mut active: BTreeMap<(String, ProxyId), ActiveProxyView> = BTreeMap::new();
        for s in &topo.streams {
            for r in &s.regions {
                for t in &r.tiers {
                    for a in &t.active {
                        active.insert((s.stream.clone(), a.proxy), a.clone());
                        assert!(
                            alive[&a.proxy].alive,
                            "{} active for {} but crashed",
                            a.proxy, s.stream
                        );
                    }
                }
            }
        }
        for s in &topo.streams {
            for ((stream, id), a) in active.iter().filter(|((st, _), _)| *st == s.stream) {
                // Path to the source.
                let mut cur = a.clone();
                let mut hops = 0;
                loop {
                    assert!(
                        !cur.parents.is_empty(),
                        "{id} of {stream}: {} has no parent",
                        cur.proxy
                    );
                    let parent = cur.parents[0];
                    if parent == s.origin {
                        break;
                    }
                    cur = active
                        .get(&(stream.clone(), parent))
                        .unwrap_or_else(|| {
                            panic!(
                                "{id} of {stream}: parent {parent} of {} is not active",
                                cur.proxy
                            )
                        })
                        .clone();
                    hops += 1;
                    assert!(hops < 64, "cycle above {id}");
                }
                for p in &a.parents {
                    assert!(
                        *p == s.origin || active.contains_key(&(stream.clone(), *p)),
                        "{id}: inactive parent {p}"
                    );
                }
            }
        }
        // [0053] every proxy that was given a MonitorList monitors the active proxies of the
        // tier above now (issue 7, defect 6).
        for s in &topo.streams {
            for r in &s.regions {
                for t in &r.tiers {
                    let mut above: Vec<u32> = if t.tier <= 1 {
                        vec![s.origin.0]
                    } else {
                        r.tiers
                            .iter()
                            .filter(|u| u.tier + 1 == t.tier)
                            .flat_map(|u| u.active.iter().map(|a| a.proxy.0))
                            .collect()
                    };
                    above.sort();
                    for a in &t.active {
                        if let Some(list) = self.monitoring.get(&(s.stream.clone(), a.proxy.0)) {
                            assert_eq!(
                                list, &above,
                                "{} of {} in tier {} monitors a stale list",
                                a.proxy, s.stream, t.tier
                            );
                        }
                    }
                }
            }
        }
        // A proxy told to stop taking viewers sends them only to proxies that serve the stream,
        // however long ago its list was sent.
        for ((stream, id), list) in &self.redirecting {
            if !active.contains_key(&(stream.clone(), ProxyId(*id))) {
                continue;
            }
            for q in list {
                assert!(
                    active.contains_key(&(stream.clone(), ProxyId(*q))),
                    "P{id} of {stream} redirects viewers to P{q}, which no longer serves it"
                );
            }
        }
        // The serving tree is acyclic: every parent is one tier up (the origin is tier 0).
        let mut tier_of: BTreeMap<(String, ProxyId), u32> = BTreeMap::new();
        for s in &topo.streams {
            tier_of.insert((s.stream.clone(), s.origin), 0);
            for r in &s.regions {
                for t in &r.tiers {
                    for a in &t.active {
                        tier_of.insert((s.stream.clone(), a.proxy), t.tier);
                    }
                }
            }
        }
        for ((stream, id), a) in &active {
            let tier = tier_of[&(stream.clone(), *id)];
            for p in &a.parents {
                assert_eq!(
                    tier_of.get(&(stream.clone(), *p)).map(|t| t + 1),
                    Some(tier),
                    "{id} of {stream} in tier {tier} under {p}"
                );
            }
        }
        let draining = |stream: &str, id: ProxyId| {
            self.draining.contains(&(stream.to_string(), id.0))
                && active.contains_key(&(stream.to_string(), id))
        };
        let is_active = |stream: &str, id: ProxyId| active.contains_key(&(stream.to_string(), id));
        for (i, c) in new.iter().enumerate() {
            match c {
                Command::Resolved(r) => {
                    if let Some(t) = r.target {
                        // Under `Growth::PredictiveFill` a served proxy is stopped once full: the
                        // viewer that filled it was sent while it still took viewers, and the
                        // StopAccepting follows the answer in the same event.
                        let filled_by_it = new[i + 1..].iter().any(|c| {
                            matches!(c, Command::Send { to, msg: PncMsg::StopAccepting { stream, .. } }
                                if *to == t.id && *stream == r.stream)
                        });
                        assert!(
                            !draining(&r.stream, t.id),
                            "viewer sent to {}, which is being drained",
                            t.id
                        );
                        assert!(
                            is_active(&r.stream, t.id),
                            "viewer sent to inactive {}",
                            t.id
                        );
                        assert!(
                            active[&(r.stream.clone(), t.id)].accepting || filled_by_it,
                            "viewer sent to non-accepting {}",
                            t.id
                        );
                    }
                }
                Command::Send {
                    msg: PncMsg::RedirectChildren { stream, to },
                    ..
                } => {
                    assert!(
                        is_active(stream, to.id),
                        "children redirected to inactive {}",
                        to.id
                    );
                }
                Command::Send {
                    msg:
                        PncMsg::StopAccepting {
                            stream,
                            redirect_to,
                        },
                    ..
                } => {
                    for p in redirect_to {
                        assert!(
                            is_active(stream, p.id),
                            "viewers redirected to inactive {}",
                            p.id
                        );
                    }
                }
                Command::Send {
                    to,
                    msg: PncMsg::SwitchToParent { stream, parents },
                } => {
                    for p in parents {
                        let origin = topo
                            .streams
                            .iter()
                            .find(|s| &s.stream == stream)
                            .map(|s| s.origin);
                        assert!(
                            Some(p.id) == origin || is_active(stream, p.id),
                            "{to} switched to inactive {}",
                            p.id
                        );
                    }
                }
                Command::Send {
                    to,
                    msg: PncMsg::StartAccepting { stream },
                } => {
                    assert!(
                        !draining(stream, *to),
                        "DISTRIBUTE served by regrouping onto {to}, which is being drained"
                    );
                }
                Command::Log(d) => {
                    // Each decision names its rule, which cites the seed's paragraphs (or
                    // DESIGN's section where the seed is silent), with a reason and what it is
                    // about.
                    assert!(!d.rule.cites().is_empty(), "{:?} cites nothing", d.rule);
                    assert!(!d.reason.is_empty(), "decision without a reason: {d:?}");
                    assert!(
                        d.stream.is_some() || d.proxy.is_some(),
                        "decision about nothing: {d:?}"
                    );
                }
                _ => {}
            }
        }
    }
}

/// Every command that changes a stream's tree (activate, switch parent, stop or start
/// accepting, redirect children, deactivate) comes with a decision about that stream in the
/// same event's output: no change to the tree without a rule that explains it.
fn check_every_change_is_decided(new: &[Command]) {
    for c in new {
        let Command::Send { to, msg } = c else {
            continue;
        };
        let stream = match msg {
            PncMsg::Activate { stream, .. }
            | PncMsg::SwitchToParent { stream, .. }
            | PncMsg::StopAccepting { stream, .. }
            | PncMsg::StartAccepting { stream }
            | PncMsg::RedirectChildren { stream, .. }
            | PncMsg::Deactivate { stream } => stream,
            _ => continue,
        };
        let decided = new
            .iter()
            .any(|d| matches!(d, Command::Log(d) if d.stream.as_deref() == Some(stream.as_str())));
        assert!(
            decided,
            "{} to {to} for {stream} without a decision about {stream}: {new:?}",
            msg.kind()
        );
    }
}

/// Loads add up from children to parents: each active pair's load is its viewers plus its
/// child proxies, each of which names it as a parent; a proxy's connections are the sum of its
/// pairs' loads over every stream it serves (shared machines, [0043], [0047]).
fn check_loads_add_up(topo: &Topology) {
    let mut by_proxy: BTreeMap<ProxyId, u64> = BTreeMap::new();
    let mut pairs: BTreeMap<(&str, ProxyId), &ActiveProxyView> = BTreeMap::new();
    for s in &topo.streams {
        for a in s
            .regions
            .iter()
            .flat_map(|r| &r.tiers)
            .flat_map(|t| &t.active)
        {
            pairs.insert((s.stream.as_str(), a.proxy), a);
        }
    }
    for s in &topo.streams {
        let origin_children: Vec<ProxyId> = pairs
            .iter()
            .filter(|((st, _), a)| *st == s.stream && !a.standby && a.parents.contains(&s.origin))
            .map(|(&(_, id), _)| id)
            .collect();
        *by_proxy.entry(s.origin).or_default() += s.origin_children.len() as u64;
        for c in &s.origin_children {
            assert!(
                origin_children.contains(c),
                "origin {} of {} counts {c}, which does not name it",
                s.origin,
                s.stream
            );
        }
    }
    for ((stream, id), a) in &pairs {
        let mut joined = 0;
        for c in &a.children {
            let child = pairs.get(&(*stream, *c));
            assert!(
                child.is_some_and(|cp| cp.parents.contains(id)),
                "{id} of {stream} lists child {c}, which does not name it"
            );
            // A standby child is listed but does not load its parent until it joins ([0054]).
            joined += u32::from(child.is_some_and(|cp| !cp.standby));
        }
        assert_eq!(
            a.load,
            a.viewers + joined,
            "{id} of {stream}: load is not viewers plus joined child proxies"
        );
        *by_proxy.entry(*id).or_default() += u64::from(a.load);
    }
    for p in topo.proxies.iter().filter(|p| p.alive) {
        let sum = by_proxy.get(&p.proxy).copied().unwrap_or(0);
        assert_eq!(
            u64::from(p.connections),
            sum,
            "{}: {} connections, its streams' loads add up to {sum}",
            p.proxy,
            p.connections
        );
    }
}
