//! A whole VAN on real processes for the end-to-end tests (issue 10, item 6): a `pnc` that lists
//! the proxies with pinned tiers and a logical capacity per relay and stream, an origin relay
//! (proxy 1) and relays in tiers, each `dataplane --pnc … --proxy-id N` with one core and a small
//! pool. Viewers find their proxy through the PNC's `/resolve/{stream}`; the topology is read
//! from its `/api/topology` as the core's own [`Topology`] type. Relays and the PNC can be
//! killed (`kill -9`, by PID) and restarted where they were.
//!
//! Also here: [`FollowingViewer`], a VAN-aware viewer that follows redirect frames ([0037],
//! [0046]) and checks every record across the moves.

use std::collections::BTreeMap;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use control::core::Topology;
use dataplane::frame::{FrameDecoder, FrameKind};
use vanbench::record::{CheckStats, RecordChecker};

use crate::pnc::Pnc;
use crate::{RawViewer, Relay, RelayOptions, VAN_TOKEN, poll, request};

/// The origin's proxy id: the source publishes there.
pub const ORIGIN: u32 = 1;

/// What the network is made of.
#[derive(Clone, Debug)]
pub struct NetworkSpec {
    /// Proxy ids per tier, tier 1 first (e.g. `[[11, 12, 13], [21, 22, 23], [31, 32, 33]]`).
    pub tiers: Vec<Vec<u32>>,
    /// The PNC's `logical_connections` of each relay per stream (the seed's capacity).
    pub capacity: u32,
    /// The PNC's heartbeat interval; it declares a proxy crashed after ten of them.
    pub heartbeat_ms: u32,
    /// ΔT ([0054]) of the PNC and of every relay's agent.
    pub delta_t_ms: u64,
    /// How often each relay probes the tier above (`--probe-interval-ms`).
    pub probe_ms: u64,
    /// More `[coordinator]` keys (e.g. `redundant_parents = 2`).
    pub coordinator: String,
}

impl NetworkSpec {
    /// Three tiers of three (P11…P33) of the given capacity: figure 1(b) of the seed.
    pub fn three_by_three(
        capacity: u32,
        heartbeat_ms: u32,
        delta_t_ms: u64,
        coordinator: &str,
    ) -> Self {
        NetworkSpec {
            tiers: (1..=3)
                .map(|t| (1..=3).map(|j| t * 10 + j).collect())
                .collect(),
            capacity,
            heartbeat_ms,
            delta_t_ms,
            probe_ms: 1000,
            coordinator: coordinator.to_string(),
        }
    }

    /// The text added to the PNC's `[coordinator]` table: the keys, then one `[[proxies]]`
    /// table per relay (the origin unpinned, the others in their tier).
    fn pnc_config(&self) -> String {
        let mut text = format!(
            "delta_t_ms = {}\n{}\n[[proxies]]\nid = {ORIGIN}\nlogical_connections = 100\n",
            self.delta_t_ms, self.coordinator
        );
        for (i, tier) in self.tiers.iter().enumerate() {
            for id in tier {
                text.push_str(&format!(
                    "[[proxies]]\nid = {id}\ntier = {}\nlogical_connections = {}\n",
                    i + 1,
                    self.capacity
                ));
            }
        }
        text
    }

    pub fn relay_ids(&self) -> Vec<u32> {
        std::iter::once(ORIGIN)
            .chain(self.tiers.iter().flatten().copied())
            .collect()
    }
}

/// Where the PNC and each relay listen, and the command a relay is started under: 127.0.0.1 and
/// none for a network on loopback ([`Hosts::loopback`]), or an address and `ip netns exec NS`
/// per relay for one spread over network namespaces (`crate::netns::Lab::hosts`).
#[derive(Clone, Debug)]
pub struct Hosts {
    pub pnc: IpAddr,
    /// Per relay id: its address and wrapper command; a relay not listed is on 127.0.0.1.
    pub relays: BTreeMap<u32, (IpAddr, Vec<String>)>,
}

impl Hosts {
    pub fn loopback() -> Self {
        Hosts {
            pnc: IpAddr::V4(Ipv4Addr::LOCALHOST),
            relays: BTreeMap::new(),
        }
    }

    fn relay(&self, id: u32) -> (IpAddr, Vec<String>) {
        self.relays
            .get(&id)
            .cloned()
            .unwrap_or((IpAddr::V4(Ipv4Addr::LOCALHOST), Vec::new()))
    }
}

/// A running VAN; every process is stopped by PID when it is dropped.
pub struct Network {
    pub spec: NetworkSpec,
    hosts: Hosts,
    pnc: Option<Pnc>,
    control_port: u16,
    relays: BTreeMap<u32, Relay>,
    /// Where each relay's data port listens (a restarted relay listens there again).
    listen: BTreeMap<u32, SocketAddr>,
}

/// Where `/resolve` sent a viewer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    pub proxy: u32,
    pub addr: SocketAddr,
    pub location: String,
}

/// One active proxy of a stream as the topology shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Node {
    pub tier: u32,
    pub parents: Vec<u32>,
    pub children: Vec<u32>,
    pub viewers: u32,
    pub standby: bool,
    pub accepting: bool,
}

/// The active proxies of a stream by id.
pub type Tree = BTreeMap<u32, Node>;

impl Network {
    /// Starts the PNC and every relay and waits until all are registered and alive.
    pub fn start(spec: NetworkSpec) -> Result<Self> {
        Self::start_on(spec, Hosts::loopback())
    }

    /// Like [`Network::start`], each process where `hosts` says.
    pub fn start_on(spec: NetworkSpec, hosts: Hosts) -> Result<Self> {
        let pnc = Pnc::start_at(hosts.pnc, 0, spec.heartbeat_ms, &spec.pnc_config())?;
        let control_port = pnc.control.port();
        let mut net = Network {
            spec,
            hosts,
            pnc: Some(pnc),
            control_port,
            relays: BTreeMap::new(),
            listen: BTreeMap::new(),
        };
        for id in net.spec.relay_ids() {
            // A port free here is free in a relay's own, fresh network namespace too.
            let port = free_port()?;
            net.listen
                .insert(id, SocketAddr::new(net.hosts.relay(id).0, port));
            net.start_relay(id)?;
        }
        net.wait_registered(&net.spec.relay_ids(), Duration::from_secs(15))?;
        Ok(net)
    }

    /// Starts relay `id` where it listens (again).
    pub fn start_relay(&mut self, id: u32) -> Result<()> {
        let pnc = self.pnc.as_ref().context("no PNC to register with")?;
        let listen = self.listen[&id].to_string();
        let (host, wrapper) = self.hosts.relay(id);
        let admin = SocketAddr::new(host, 0).to_string();
        // The origin takes any number of tier-1 proxies; a relay's agent decides DISTRIBUTE
        // and CONSOLIDATE from the stream's logical capacity, the PNC's `logical_connections`
        // ([0047]), with room above it on the machine.
        let (machine, stream) = if id == ORIGIN {
            (1000, 1000)
        } else {
            (self.spec.capacity * 4, self.spec.capacity)
        };
        let stream = stream.to_string();
        let (machine, delta_t) = (machine.to_string(), self.spec.delta_t_ms.to_string());
        let probe = self.spec.probe_ms.to_string();
        let mut args = pnc.relay_args(id);
        args.extend(
            [
                "--listen",
                listen.as_str(),
                "--cores",
                "1",
                "--pool-blocks",
                "256",
                "--capacity-connections",
                machine.as_str(),
                "--stream-capacity-connections",
                stream.as_str(),
                "--grace",
                "10",
                "--delta-t-ms",
                delta_t.as_str(),
                "--probe-interval-ms",
                probe.as_str(),
                "--admin-listen",
                admin.as_str(),
            ]
            .map(String::from),
        );
        let relay = Relay::try_start(RelayOptions { args, wrapper })
            .with_context(|| format!("relay P{id}"))?;
        self.relays.insert(id, relay);
        Ok(())
    }

    pub fn relay(&self, id: u32) -> &Relay {
        self.relays
            .get(&id)
            .unwrap_or_else(|| panic!("no relay P{id} running"))
    }

    /// The relay listening at `addr`, by id.
    pub fn id_at(&self, addr: SocketAddr) -> Option<u32> {
        self.listen
            .iter()
            .find_map(|(&id, &a)| (a == addr).then_some(id))
    }

    pub fn pnc(&self) -> &Pnc {
        self.pnc.as_ref().expect("the PNC is running")
    }

    /// `kill -9` of relay `id` (by its PID); returns when it is reaped.
    pub fn kill_relay(&mut self, id: u32) {
        if let Some(mut relay) = self.relays.remove(&id) {
            relay.proc.kill();
        }
    }

    /// `kill -9` of the PNC.
    pub fn kill_pnc(&mut self) {
        if let Some(mut pnc) = self.pnc.take() {
            pnc.proc.kill();
        }
    }

    /// A new PNC on the control port of the old one, with the same configuration.
    pub fn restart_pnc(&mut self) -> Result<()> {
        let pnc = Pnc::start_at(
            self.hosts.pnc,
            self.control_port,
            self.spec.heartbeat_ms,
            &self.spec.pnc_config(),
        )?;
        self.pnc = Some(pnc);
        Ok(())
    }

    /// The PNC's topology.
    pub fn topology(&self) -> Result<Topology> {
        let json = self.pnc().topology()?;
        serde_json::from_value(json).context("/api/topology is not a Topology")
    }

    /// Waits until every one of `ids` is registered and alive at the PNC.
    pub fn wait_registered(&self, ids: &[u32], limit: Duration) -> Result<Topology> {
        poll(limit, Duration::from_millis(100), || {
            let t = self.topology().ok()?;
            ids.iter()
                .all(|id| t.proxies.iter().any(|p| p.proxy.0 == *id && p.alive))
                .then_some(t)
        })
        .ok_or_else(|| {
            anyhow!(
                "not every one of {ids:?} registered within {limit:?}: {:?}",
                self.topology().map(|t| t.proxies)
            )
        })
    }

    /// The active proxies of `stream`, or an empty tree if the PNC does not know it.
    pub fn tree(&self, stream: &str) -> Result<Tree> {
        Ok(tree_of(&self.topology()?, stream))
    }

    /// Waits until the tree of `stream` is `want`; `Err` shows the last one seen.
    pub fn wait_tree(&self, stream: &str, want: &Tree, limit: Duration) -> Result<Tree> {
        let mut last = None;
        let found = poll(limit, Duration::from_millis(50), || {
            let t = self.tree(stream).ok()?;
            let same = &t == want;
            last = Some(t.clone());
            same.then_some(t)
        });
        found.ok_or_else(|| {
            anyhow!(
                "the tree of {stream} did not become\n{}\nwithin {limit:?}; last seen:\n{}",
                show(want),
                last.as_ref().map_or("none".into(), show)
            )
        })
    }

    /// Asks the PNC where a new viewer of `stream` goes.
    pub fn resolve(&self, stream: &str) -> Result<Resolved> {
        let head = format!("GET /resolve/{stream} HTTP/1.0\r\n\r\n");
        let answer = request(self.pnc().public, head.as_bytes(), Duration::from_secs(5))?;
        if answer.status != 302 {
            bail!(
                "/resolve/{stream} answered {}: {}",
                answer.status,
                String::from_utf8_lossy(&answer.body)
            );
        }
        let location = answer
            .header("location")
            .context("a 302 without Location")?
            .to_string();
        let addr: SocketAddr = location
            .strip_prefix("http://")
            .and_then(|rest| rest.split('/').next())
            .with_context(|| format!("Location {location:?}"))?
            .parse()
            .with_context(|| format!("Location {location:?}"))?;
        let proxy = self
            .id_at(addr)
            .with_context(|| format!("Location {location:?} names no relay of the network"))?;
        Ok(Resolved {
            proxy,
            addr,
            location,
        })
    }

    /// The parents relay `id` was last ordered to pull `stream` from, by id, from its log (the
    /// reactor logs each Pull and SwitchParents order it carries out).
    pub fn pulls_from(&self, id: u32, stream: &str) -> Option<Vec<u32>> {
        parents_in_log(&self.relay(id).log(), stream)
    }
}

/// The active proxies of `stream` in `topology`.
pub fn tree_of(topology: &Topology, stream: &str) -> Tree {
    let Some(s) = topology.streams.iter().find(|s| s.stream == stream) else {
        return Tree::new();
    };
    s.regions
        .iter()
        .flat_map(|r| &r.tiers)
        .flat_map(|t| t.active.iter().map(move |a| (t.tier, a)))
        .map(|(tier, a)| {
            (
                a.proxy.0,
                Node {
                    tier,
                    parents: a.parents.iter().map(|p| p.0).collect(),
                    children: a.children.iter().map(|p| p.0).collect(),
                    viewers: a.viewers,
                    standby: a.standby,
                    accepting: a.accepting,
                },
            )
        })
        .collect()
}

/// A tree, one proxy a line.
pub fn show(tree: &Tree) -> String {
    tree.iter()
        .map(|(id, n)| {
            format!(
                "  P{id}: tier {} parents {:?} children {:?} viewers {}{}{}\n",
                n.tier,
                n.parents,
                n.children,
                n.viewers,
                if n.standby { " standby" } else { "" },
                if n.accepting { " accepting" } else { "" }
            )
        })
        .collect()
}

/// The parent ids of the last `pulling from parents` or `switching parents` line of `stream` in
/// a relay's log (`parents=[ParentAddr { id: 21, addr: … }, …]`).
pub fn parents_in_log(log: &str, stream: &str) -> Option<Vec<u32>> {
    let tag = format!("stream={stream} ");
    let line = log.lines().rev().find(|l| {
        l.contains(&tag) && (l.contains("pulling from parents") || l.contains("switching parents"))
    })?;
    Some(
        line.split("id: ")
            .skip(1)
            .filter_map(|rest| {
                rest.split(|c: char| !c.is_ascii_digit())
                    .next()?
                    .parse()
                    .ok()
            })
            .collect(),
    )
}

/// A port that was free a moment ago on 127.0.0.1.
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// What a [`FollowingViewer`] received, checked record by record across its moves.
#[derive(Debug)]
pub struct FollowReport {
    /// The record checker's counts over every connection.
    pub stats: CheckStats,
    /// Data frames whose sequence number was not the one after the previous frame's, across
    /// moves included.
    pub frame_gaps: u64,
    /// Every proxy it was served by, in order (the first, then each redirect's target).
    pub hops: Vec<SocketAddr>,
    /// How it stopped: `None` when stopped by the test, else why.
    pub broken: Option<String>,
}

impl FollowReport {
    /// Every problem with what it received; empty when every record came once, in order.
    pub fn damage(&self) -> Vec<String> {
        let s = &self.stats;
        let mut problems: Vec<String> = [
            ("lost", s.lost),
            ("duplicated", s.duplicated),
            ("out of order", s.out_of_order),
            ("corrupt", s.corrupt),
            ("frame sequence gaps", self.frame_gaps),
        ]
        .into_iter()
        .filter(|(_, n)| *n > 0)
        .map(|(what, n)| format!("{n} {what}"))
        .collect();
        if s.records == 0 {
            problems.push("no record".into());
        }
        if let Some(why) = &self.broken {
            problems.push(format!("broken: {why}"));
        }
        problems
    }
}

/// A VAN-aware viewer (`GET /van/{stream}` with the VAN token): it follows redirect frames to the
/// proxy they name, asking there from the sequence number they carry ([0037], [0046]), and feeds
/// every data payload of every connection to one record checker, so a move that loses or
/// repeats a record is seen.
pub struct FollowingViewer {
    stop: Arc<AtomicBool>,
    /// One past the newest data frame's sequence number; 0 before the first.
    next_frame: Arc<AtomicU64>,
    /// Whole records checked so far.
    records: Arc<AtomicU64>,
    serving: Arc<Mutex<SocketAddr>>,
    thread: Option<JoinHandle<FollowReport>>,
}

impl FollowingViewer {
    /// Opens `/van/{stream}` at `addr`; fails unless it answers `200`.
    pub fn open(addr: SocketAddr, stream: &str) -> Result<Self> {
        let first = open_van(addr, stream, None)?;
        let stop = Arc::new(AtomicBool::new(false));
        let next_frame = Arc::new(AtomicU64::new(0));
        let records = Arc::new(AtomicU64::new(0));
        let serving = Arc::new(Mutex::new(addr));
        let thread = {
            let (stop, next_frame, records, serving) = (
                stop.clone(),
                next_frame.clone(),
                records.clone(),
                serving.clone(),
            );
            let stream = stream.to_string();
            std::thread::Builder::new()
                .name(format!("following-{stream}"))
                .spawn(move || {
                    follow(first, addr, &stream, &stop, &next_frame, &records, &serving)
                })?
        };
        Ok(FollowingViewer {
            stop,
            next_frame,
            records,
            serving,
            thread: Some(thread),
        })
    }

    /// The sequence number of the newest data frame received, if any.
    pub fn newest_frame(&self) -> Option<u64> {
        self.next_frame.load(Ordering::Relaxed).checked_sub(1)
    }

    /// Whole records received so far.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }

    /// The proxy serving it now.
    pub fn serving(&self) -> SocketAddr {
        *self.serving.lock().expect("not poisoned")
    }

    /// Waits until it has received a data frame at or past `seq`, up to `limit`.
    pub fn wait_for_frame(&self, seq: u64, limit: Duration) -> bool {
        poll(limit, Duration::from_millis(10), || {
            (self.next_frame.load(Ordering::Relaxed) > seq).then_some(())
        })
        .is_some()
    }

    /// Stops reading and reports.
    pub fn stop(mut self) -> FollowReport {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .expect("running")
            .join()
            .expect("viewer thread")
    }
}

impl Drop for FollowingViewer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn open_van(addr: SocketAddr, stream: &str, from: Option<u64>) -> Result<RawViewer> {
    let path = match from {
        Some(seq) => format!("/van/{stream}?from={seq}"),
        None => format!("/van/{stream}"),
    };
    let viewer = RawViewer::open(
        addr,
        &path,
        &format!("Authorization: Bearer {VAN_TOKEN}\r\n"),
    )?;
    if viewer.head.status != 200 {
        bail!("{path} at {addr} answered {}", viewer.head.status);
    }
    Ok(viewer)
}

/// The reading loop of a [`FollowingViewer`].
fn follow(
    mut viewer: RawViewer,
    first: SocketAddr,
    stream: &str,
    stop: &AtomicBool,
    next_frame: &AtomicU64,
    records: &AtomicU64,
    serving: &Mutex<SocketAddr>,
) -> FollowReport {
    let mut report = FollowReport {
        stats: CheckStats::default(),
        frame_gaps: 0,
        hops: vec![first],
        broken: None,
    };
    let mut checker = RecordChecker::new();
    let mut decoder = FrameDecoder::new();
    decoder.push(&std::mem::take(&mut viewer.head.body));
    let mut last_frame: Option<u64> = None;
    let mut buf = vec![0u8; 64 * 1024];
    if let Err(e) = viewer
        .stream
        .set_read_timeout(Some(Duration::from_millis(100)))
    {
        report.broken = Some(e.to_string());
        return report;
    }
    while !stop.load(Ordering::Relaxed) {
        // Every whole frame buffered: data to the checker, a redirect moves the viewer.
        let mut moved_to = None;
        loop {
            let frame = match decoder.next_frame() {
                Ok(Some((header, payload))) => (header, payload.to_vec()),
                Ok(None) => break,
                Err(e) => {
                    report.broken = Some(format!("not VAN frames: {e}"));
                    return report;
                }
            };
            let (header, payload) = frame;
            match header.kind {
                FrameKind::Data => {
                    if last_frame.is_some_and(|l| header.seq != l + 1) {
                        report.frame_gaps += 1;
                    }
                    last_frame = Some(header.seq);
                    next_frame.store(header.seq + 1, Ordering::Relaxed);
                    checker.push(&payload, &mut report.stats, &mut |_, _| {});
                    records.store(report.stats.records, Ordering::Relaxed);
                }
                FrameKind::Redirect => {
                    let to = std::str::from_utf8(&payload)
                        .ok()
                        .and_then(|t| t.parse::<SocketAddr>().ok());
                    match to {
                        Some(to) => moved_to = Some((to, header.seq)),
                        None => {
                            report.broken = Some(format!("a redirect to {payload:?}"));
                            return report;
                        }
                    }
                    break;
                }
                FrameKind::End => {
                    report.broken = Some(format!("an end frame at {}", header.seq));
                    return report;
                }
                FrameKind::Heartbeat => {}
            }
        }
        if let Some((to, from)) = moved_to {
            match open_van(to, stream, Some(from)) {
                Ok(mut next) => {
                    decoder = FrameDecoder::new();
                    decoder.push(&std::mem::take(&mut next.head.body));
                    if let Err(e) = next
                        .stream
                        .set_read_timeout(Some(Duration::from_millis(100)))
                    {
                        report.broken = Some(e.to_string());
                        return report;
                    }
                    viewer = next;
                    report.hops.push(to);
                    *serving.lock().expect("not poisoned") = to;
                    continue;
                }
                Err(e) => {
                    report.broken = Some(format!("redirected to {to} from {from}: {e:#}"));
                    return report;
                }
            }
        }
        match viewer.stream.read(&mut buf) {
            Ok(0) => {
                report.broken = Some("the proxy closed the connection".into());
                return report;
            }
            Ok(n) => decoder.push(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(e) => {
                report.broken = Some(e.to_string());
                return report;
            }
        }
    }
    report
}

/// Waits until `f` holds, up to `limit`; the time it took.
pub fn time_until(limit: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    poll(limit, Duration::from_millis(5), || f().then_some(())).map(|()| start.elapsed())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_parents_of_the_last_pull_order_are_read_from_the_log() {
        let log = "\
2026 INFO pulling from parents core=0 stream=demo parents=[ParentAddr { id: 21, addr: 127.0.0.1:1 }]
2026 INFO pulling from parents core=0 stream=other parents=[ParentAddr { id: 5, addr: 127.0.0.1:5 }]
2026 INFO switching parents core=0 stream=demo parents=[ParentAddr { id: 22, addr: 127.0.0.1:2 }, ParentAddr { id: 23, addr: 127.0.0.1:3 }]
";
        assert_eq!(parents_in_log(log, "demo"), Some(vec![22, 23]));
        assert_eq!(parents_in_log(log, "other"), Some(vec![5]));
        assert_eq!(parents_in_log(log, "none"), None);
    }
}
