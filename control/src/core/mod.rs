//! The coordinator core: every PNC algorithm as a deterministic state machine.
//!
//! [`Coordinator::handle`] takes an [`Event`] and the current [`Time`] and returns the
//! [`Command`]s to carry out, decisions included ([`Command::Log`]). No sockets, threads or
//! clocks: the `pnc` service and the simulator drive the very same code. The same events at the
//! same times give the same commands: maps are ordered (`BTreeMap`), hash maps only serve
//! lookups by id and are never iterated.
//!
//! What the core keeps ([0031]): per source the overlay (regions, tiers, proxies per tier, from
//! [`tiering`]); per stream the active proxies with their phase ([0030]), load, parent links and
//! farms; per (proxy, stream) and per tier the smoothed login and logoff rates ([0064]).
//!
//! Readings of the seed follow DESIGN.md "Reading the seed"; where the code chooses something
//! the seed leaves open, the comment says so. In short:
//! - load of a proxy for a stream = viewers + child proxies that joined it; a newly activated
//!   proxy is a standby that joins its parents on its first LOGIN ([0054]) and meanwhile only
//!   *reserves* a connection at them (parent choice counts reservations, DISTRIBUTE does not);
//! - viewers are sent to proxies of the deepest tier of their region that accept (expansion
//!   phase), round-robin ([0042]); upper tiers serve child proxies only;
//! - viewers moved by CONSOLIDATE or LinkDowngrade are reserved at their new proxy until they log
//!   off the old one (the dataplane moves them, the core sees LOGOFF there and LOGIN here).
//! - the core triggers DISTRIBUTE itself when it sees a proxy reach Max_s or predicts it within
//!   ΔT; a `Distribute` message from the proxy is handled the same way, and a second one for a
//!   proxy (or farm) already served is logged and ignored.
//! - a re-registered upper-tier proxy is in the contraction phase iff it is full (its phase is
//!   not on the wire; it left expansion only by filling, [0035]).
//! - tiers are recomputed when proxies join or leave, at most once per Δt/10 window.
//!
//! # Driving it (the `pnc` service)
//! - On a new control connection, read the first frame; it must be `ProxyMsg::Hello`. Check it
//!   with [`crate::protocol::check_hello`]; on `Err(reason)` answer `PncMsg::Refused(reason)`,
//!   log and close. On `Ok`, feed `Event::Register(hello.into())`: the core answers
//!   `PncMsg::Welcome` through `Command::Send`.
//! - Every later frame: `Event::Message { from, msg }`. A closed connection:
//!   `Event::Disconnected`. `Event::Tick` at least every [`Config::tick_micros`] (heartbeat
//!   timeouts). `Event::Resolve` for `GET /resolve/{stream}` (and, if wanted, DNS queries that
//!   find no accepting proxy), answered by one `Command::Resolved` with the same `request`.
//! - Carry out `Command::Send` (drop it if the proxy is not connected), log `Command::Log`.
//! - Read-only views: [`Coordinator::topology`] (`/api/topology`), [`Coordinator::accepting`]
//!   (DNS answers), [`Coordinator::counters`] (`/metrics`), [`Coordinator::region_of`].
//! - `Time` is microseconds since any fixed origin (e.g. the service's start), never decreasing.

pub mod api;
pub mod config;
pub mod predict;
pub mod tiering;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};

pub use api::*;
pub use config::*;

use crate::protocol::{
    Capacity, Child, PROTOCOL_VERSION, Peer, PncMsg, ProxyId, ProxyMsg, SourceInfo, StreamLoad,
    StreamState,
};
use predict::{Predictor, Smoothing};

/// RTTs kept per proxy at most: a proxy cannot grow the PNC's memory without bound by reporting
/// made-up peers.
const MAX_RTTS_PER_PROXY: usize = 16_384;

/// Record an RTT; true if the peer is new.
fn record_rtt(rtts: &mut BTreeMap<ProxyId, u32>, peer: ProxyId, micros: u32) -> bool {
    if let Some(v) = rtts.get_mut(&peer) {
        *v = micros;
        return false;
    }
    if rtts.len() >= MAX_RTTS_PER_PROXY {
        return false;
    }
    rtts.insert(peer, micros);
    true
}

/// `[P11, P21]`: proxy ids for decision reasons.
fn id_list(ids: impl Iterator<Item = ProxyId>) -> String {
    let v: Vec<String> = ids.map(|i| i.to_string()).collect();
    format!("[{}]", v.join(", "))
}

/// Index of a proxy in `Coordinator::proxies` (never reused).
type Px = usize;
/// Index of a stream (never reused).
type Sx = u32;
/// Identifier of a farm: the proxies activated together by one decision ([0042]).
type FarmId = u64;

/// Key of a source's overlay: the source name and the proxy it publishes at.
type OverlayKey = (String, Px);

/// A registered proxy.
#[derive(Debug)]
struct ProxyRec {
    id: ProxyId,
    name: String,
    addr: SocketAddr,
    region: String,
    capacity: Capacity,
    alive: bool,
    last_heard: Time,
    /// Latest deadline queued for the timeout check.
    queued_deadline: Time,
    /// Connections over all streams, from the core's view ([0047]).
    connections: u32,
    /// Outgoing bits/s over all streams (load × bitrate).
    bps: u64,
    rtts: BTreeMap<ProxyId, u32>,
    streams: BTreeSet<Sx>,
}

/// Farm sizing state of one (stream, region, tier) ([0039]–[0041]).
#[derive(Debug, Default, Clone)]
struct FarmSizing {
    last_time: Option<Time>,
    last_n: u32,
    avg: Option<f64>,
}

/// Active proxies of one (stream, region, tier).
#[derive(Debug, Default)]
struct TierRec {
    /// In activation order (oldest first).
    active: Vec<Px>,
    /// Round-robin position for new viewers ([0042]).
    rr: u64,
    sizing: FarmSizing,
}

/// A sorted set of proxies in a vector: children of one proxy are few, and a `BTreeSet` node
/// would cost more than 100 bytes per (proxy, stream) pair.
#[derive(Debug, Default, Clone)]
struct SmallSet(Vec<Px>);

impl SmallSet {
    fn insert(&mut self, x: Px) -> bool {
        match self.0.binary_search(&x) {
            Ok(_) => false,
            Err(i) => {
                self.0.insert(i, x);
                true
            }
        }
    }
    fn remove(&mut self, x: &Px) -> bool {
        match self.0.binary_search(x) {
            Ok(i) => {
                self.0.remove(i);
                true
            }
            Err(_) => false,
        }
    }
    fn contains(&self, x: &Px) -> bool {
        self.0.binary_search(x).is_ok()
    }
    fn iter(&self) -> std::slice::Iter<'_, Px> {
        self.0.iter()
    }
    fn len(&self) -> usize {
        self.0.len()
    }
}

/// One proxy's state for one stream.
#[derive(Debug)]
struct Pair {
    /// 0 for the origin.
    tier: u32,
    region: String,
    phase: Phase,
    accepting: bool,
    /// Activated, not yet joined its parents (no child yet) ([0054]).
    standby: bool,
    viewers: u32,
    /// Child proxies that joined.
    children: SmallSet,
    /// Child proxies assigned but still standby: reserved, not load.
    pending: SmallSet,
    /// Viewers on their way here from a drained proxy: reserved.
    incoming: u32,
    parents: Vec<Px>,
    farm: FarmId,
    /// Activation order, global: larger is more recent.
    seq: u64,
    activated_at: Time,
    distribute_served: bool,
    draining_to: Option<Px>,
    login: Predictor,
    logoff: Predictor,
    reported: (f32, f32),
}

impl Pair {
    fn load(&self) -> u32 {
        self.viewers.saturating_add(self.children.len() as u32)
    }
    fn reserved(&self) -> u32 {
        (self.pending.len() as u32).saturating_add(self.incoming)
    }
}

/// One stream.
#[derive(Debug)]
struct StreamRec {
    name: String,
    info: SourceInfo,
    origin: Px,
    overlay: OverlayKey,
    pairs: BTreeMap<Px, Pair>,
    tiers: BTreeMap<(String, u32), TierRec>,
    farms: BTreeMap<FarmId, Vec<Px>>,
    /// Re-registered links whose parent has not re-registered yet: parent → (child, joined).
    awaiting_parent: BTreeMap<ProxyId, Vec<(Px, bool)>>,
    /// System-wide logins and logoffs of the stream ([0064]).
    sys_login: Predictor,
    sys_logoff: Predictor,
}

/// A source's overlay: regions and tiers.
#[derive(Debug, Default)]
struct Overlay {
    tiers: tiering::Tiers,
    tier_of: HashMap<ProxyId, (String, u32)>,
    dirty: bool,
    /// Predictor window of the last computation: at most one per window, so that thousands of
    /// proxies registering at once do not recompute the tiers thousands of times.
    computed_in: Option<u64>,
}

/// The coordinator. See the module docs.
#[derive(Debug)]
pub struct Coordinator {
    config: Config,
    settings: BTreeMap<ProxyId, ProxySettings>,
    smoothing: Smoothing,
    proxies: Vec<ProxyRec>,
    by_id: HashMap<ProxyId, Px>,
    streams: BTreeMap<Sx, StreamRec>,
    stream_ids: HashMap<String, Sx>,
    next_stream: Sx,
    overlays: BTreeMap<OverlayKey, Overlay>,
    /// Streams re-registered by non-origin proxies before their origin ([0031], rebuild).
    pending_rebuild: BTreeMap<String, Vec<(Px, StreamState)>>,
    deadlines: VecDeque<(Time, Px)>,
    next_seq: u64,
    next_farm: FarmId,
    counters: Counters,
    now: Time,
    window: u64,
    out: Vec<Command>,
}

impl Coordinator {
    pub fn new(config: Config) -> Self {
        let settings = config.proxies.iter().map(|s| (s.id, s.clone())).collect();
        let smoothing = Smoothing {
            alpha: config.alpha,
            beta: config.beta,
            window_micros: config.tick_micros(),
        };
        Coordinator {
            config,
            settings,
            smoothing,
            proxies: Vec::new(),
            by_id: HashMap::new(),
            streams: BTreeMap::new(),
            stream_ids: HashMap::new(),
            next_stream: 0,
            overlays: BTreeMap::new(),
            pending_rebuild: BTreeMap::new(),
            deadlines: VecDeque::new(),
            next_seq: 0,
            next_farm: 0,
            counters: Counters::default(),
            now: Time::ZERO,
            window: 0,
            out: Vec::new(),
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// Handle one event at time `now` (times must not go backwards; an earlier `now` is taken
    /// as the latest time seen).
    pub fn handle(&mut self, event: Event, now: Time) -> Vec<Command> {
        self.now = self.now.max(now);
        self.window = self.smoothing.window_of(self.now.0);
        self.counters.events += 1;
        match event {
            Event::Register(r) => self.register(r),
            Event::Message { from, msg } => self.message(from, msg),
            Event::Disconnected { proxy } => {
                self.log(
                    Rule::Register,
                    None,
                    Some(proxy),
                    "control connection closed; the proxy keeps relaying, crash only on heartbeat timeout [0066]".into(),
                );
            }
            Event::Remove { proxy } => {
                if let Some(&px) = self.by_id.get(&proxy)
                    && self.proxies[px].alive
                {
                    self.crash(px, "removed by the operator");
                }
            }
            Event::Resolve {
                request,
                stream,
                region,
                client,
            } => self.resolve(request, stream, region, client),
            Event::Tick => self.check_timeouts(),
        }
        std::mem::take(&mut self.out)
    }

    // ----------------------------------------------------------------------------------------
    // Read-only views for the service.

    /// The region of a viewer address from the CIDR table (longest prefix), else the default.
    pub fn region_of(&self, addr: IpAddr) -> String {
        self.config
            .regions
            .iter()
            .filter(|r| r.cidr.contains(&addr))
            .max_by_key(|r| r.cidr.prefix_len())
            .map(|r| r.region.clone())
            .unwrap_or_else(|| self.config.default_region.clone())
    }

    /// Proxies that take new viewers of `stream` (in `region` if given), for DNS ([0026],
    /// [0033]); sorted by id.
    pub fn accepting(&self, stream: &str, region: Option<&str>) -> Vec<Peer> {
        let Some(s) = self
            .stream_ids
            .get(stream)
            .and_then(|sx| self.streams.get(sx))
        else {
            return Vec::new();
        };
        s.pairs
            .iter()
            .filter(|(px, p)| {
                p.accepting && self.proxies[**px].alive && region.is_none_or(|r| p.region == r)
            })
            .map(|(px, _)| self.peer(*px))
            .collect()
    }

    /// Every stream's tiers, active proxies, phases, loads and parents.
    pub fn topology(&self) -> Topology {
        let proxies = self
            .proxies
            .iter()
            .map(|p| ProxyView {
                proxy: p.id,
                name: p.name.clone(),
                addr: p.addr,
                region: p.region.clone(),
                capacity: p.capacity,
                alive: p.alive,
                connections: p.connections,
                last_heard: p.last_heard,
            })
            .collect::<Vec<_>>();
        let mut proxies = proxies;
        proxies.sort_by_key(|p| p.proxy);
        let mut streams = Vec::new();
        for (sx, s) in &self.streams {
            let overlay = self.overlays.get(&s.overlay);
            let mut regions: BTreeMap<String, BTreeMap<u32, TierView>> = BTreeMap::new();
            if let Some(o) = overlay {
                for (region, tiers) in &o.tiers {
                    let r = regions.entry(region.clone()).or_default();
                    for (i, members) in tiers.iter().enumerate() {
                        r.insert(
                            i as u32 + 1,
                            TierView {
                                tier: i as u32 + 1,
                                overlay: members.clone(),
                                active: Vec::new(),
                            },
                        );
                    }
                }
            }
            for ((region, tier), rec) in &s.tiers {
                let r = regions.entry(region.clone()).or_default();
                let tv = r.entry(*tier).or_insert_with(|| TierView {
                    tier: *tier,
                    overlay: Vec::new(),
                    active: Vec::new(),
                });
                for &px in &rec.active {
                    if let Some(v) = self.pair_view(*sx, px) {
                        tv.active.push(v);
                    }
                }
            }
            let viewers = s.pairs.values().map(|p| p.viewers).sum();
            streams.push(StreamView {
                stream: s.name.clone(),
                source: s.info.clone(),
                origin: self.proxies[s.origin].id,
                viewers,
                login_rate: s.sys_login.peek(self.window, &self.smoothing),
                logoff_rate: s.sys_logoff.peek(self.window, &self.smoothing),
                regions: regions
                    .into_iter()
                    .map(|(region, tiers)| RegionView {
                        region,
                        tiers: tiers.into_values().collect(),
                    })
                    .collect(),
            });
        }
        streams.sort_by(|a, b| a.stream.cmp(&b.stream));
        Topology {
            at: self.now,
            proxies,
            streams,
        }
    }

    /// What `proxy` would report in a re-registration after a PNC restart: its streams with
    /// parents and children as the core sees them. Used by tests and the simulator.
    pub fn stream_states(&self, proxy: ProxyId) -> Vec<StreamState> {
        let Some(&px) = self.by_id.get(&proxy) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for sx in &self.proxies[px].streams {
            let Some(s) = self.streams.get(sx) else {
                continue;
            };
            let Some(p) = s.pairs.get(&px) else { continue };
            out.push(StreamState {
                stream: s.name.clone(),
                source: (s.origin == px).then(|| s.info.clone()),
                tier: p.tier,
                parents: p.parents.iter().map(|&q| self.proxies[q].id).collect(),
                children: p.children.iter().map(|&q| self.proxies[q].id).collect(),
                viewers: p.viewers,
                accepting: p.accepting,
            });
        }
        out.sort_by(|a, b| a.stream.cmp(&b.stream));
        out
    }

    fn pair_view(&self, sx: Sx, px: Px) -> Option<ActiveProxyView> {
        let s = self.streams.get(&sx)?;
        let p = s.pairs.get(&px)?;
        let rec = &self.proxies[px];
        let farm = s
            .farms
            .get(&p.farm)
            .map(|f| f.iter().map(|&q| self.proxies[q].id).collect())
            .unwrap_or_default();
        let mut children: Vec<ProxyId> = p
            .children
            .iter()
            .chain(p.pending.iter())
            .map(|&q| self.proxies[q].id)
            .collect();
        children.sort();
        Some(ActiveProxyView {
            proxy: rec.id,
            name: rec.name.clone(),
            addr: rec.addr,
            phase: p.phase,
            standby: p.standby,
            accepting: p.accepting,
            load: p.load(),
            viewers: p.viewers,
            capacity: self.max_s(sx, px),
            parents: p.parents.iter().map(|&q| self.proxies[q].id).collect(),
            children,
            farm,
            activated_at: p.activated_at,
            login_rate: p.login.peek(self.window, &self.smoothing),
            logoff_rate: p.logoff.peek(self.window, &self.smoothing),
        })
    }

    // ----------------------------------------------------------------------------------------
    // Helpers.

    fn log(&mut self, rule: Rule, stream: Option<&str>, proxy: Option<ProxyId>, reason: String) {
        self.out.push(Command::Log(Decision {
            at: self.now,
            rule,
            stream: stream.map(str::to_string),
            proxy,
            reason,
        }));
    }

    fn send(&mut self, px: Px, msg: PncMsg) {
        self.out.push(Command::Send {
            to: self.proxies[px].id,
            msg,
        });
    }

    fn peer(&self, px: Px) -> Peer {
        Peer {
            id: self.proxies[px].id,
            addr: self.proxies[px].addr,
        }
    }

    fn pid(&self, px: Px) -> ProxyId {
        self.proxies[px].id
    }

    fn sname(&self, sx: Sx) -> String {
        self.streams
            .get(&sx)
            .map(|s| s.name.clone())
            .unwrap_or_default()
    }

    fn pair(&self, sx: Sx, px: Px) -> Option<&Pair> {
        self.streams.get(&sx)?.pairs.get(&px)
    }

    fn pair_mut(&mut self, sx: Sx, px: Px) -> Option<&mut Pair> {
        self.streams.get_mut(&sx)?.pairs.get_mut(&px)
    }

    fn delta_t_secs(&self) -> f64 {
        self.config.delta_t_ms as f64 / 1000.0
    }

    fn sp_secs(&self) -> f64 {
        self.config.sp_ms as f64 / 1000.0
    }

    fn next_farm_id(&mut self) -> FarmId {
        self.next_farm += 1;
        self.next_farm
    }

    /// Max_s of `px` for stream `sx` now ([0047], [0048]): logical capacity, and the physical
    /// capacity left by the other streams on the machine, in connections and in bits/s,
    /// whichever binds first. Works for a proxy not (yet) active for the stream.
    fn max_s(&self, sx: Sx, px: Px) -> u32 {
        let rec = &self.proxies[px];
        let Some(s) = self.streams.get(&sx) else {
            return 0;
        };
        let own = s.pairs.get(&px).map_or(0, Pair::load);
        let bitrate = s.info.bitrate_bps;
        // Connections reserved on this machine by the other streams (standby children, moved
        // viewers on their way) count as taken: capacity is machine-wide ([0047]).
        let other_reserved: u32 = rec
            .streams
            .iter()
            .filter(|&&o| o != sx)
            .filter_map(|o| self.streams.get(o)?.pairs.get(&px).map(Pair::reserved))
            .sum();
        let other = rec
            .connections
            .saturating_sub(own)
            .saturating_add(other_reserved);
        let logical = self
            .settings
            .get(&rec.id)
            .and_then(|st| st.logical_connections)
            .unwrap_or(rec.capacity.connections);
        let mut m = logical.min(rec.capacity.connections.saturating_sub(other));
        if bitrate > 0 {
            let other_bps = rec
                .bps
                .saturating_sub(u64::from(own).saturating_mul(bitrate));
            let by_bps = rec.capacity.bits_per_sec.saturating_sub(other_bps) / bitrate;
            m = m.min(by_bps.min(u64::from(u32::MAX)) as u32);
        }
        m
    }

    /// Free connections of an active pair, reservations included.
    fn room(&self, sx: Sx, px: Px) -> u32 {
        match self.pair(sx, px) {
            Some(p) => self
                .max_s(sx, px)
                .saturating_sub(p.load().saturating_add(p.reserved())),
            None => self.max_s(sx, px),
        }
    }

    /// Change the machine-wide accounting of `px` by `delta` connections of stream `sx`.
    fn account(&mut self, sx: Sx, px: Px, delta: i64) {
        let bitrate = self.streams.get(&sx).map_or(0, |s| s.info.bitrate_bps);
        let rec = &mut self.proxies[px];
        if delta >= 0 {
            rec.connections = rec.connections.saturating_add(delta as u32);
            rec.bps = rec.bps.saturating_add(bitrate.saturating_mul(delta as u64));
        } else {
            let d = delta.unsigned_abs();
            rec.connections = rec.connections.saturating_sub(d as u32);
            rec.bps = rec.bps.saturating_sub(bitrate.saturating_mul(d));
        }
    }

    /// The deepest tier of `region` in the overlay of `sx` (viewers are served there).
    fn bottom_tier(&self, sx: Sx, region: &str) -> u32 {
        let Some(s) = self.streams.get(&sx) else {
            return 0;
        };
        self.overlays
            .get(&s.overlay)
            .and_then(|o| o.tiers.get(region))
            .map_or(0, |t| t.len() as u32)
    }

    /// The members of `px`'s farm still in its (region, tier); `px` alone when it has no farm
    /// ([0042]: a farm's DISTRIBUTE is one, and a farm is deactivated together).
    fn farm_group(&self, sx: Sx, px: Px, farm: FarmId, tier: u32, region: &str) -> Vec<Px> {
        self.streams
            .get(&sx)
            .and_then(|s| s.farms.get(&farm))
            .cloned()
            .unwrap_or_else(|| vec![px])
            .into_iter()
            .filter(|q| {
                self.pair(sx, *q)
                    .is_some_and(|p| p.tier == tier && p.region == region)
            })
            .collect()
    }

    fn tier_members(&self, sx: Sx, region: &str, tier: u32) -> Vec<Px> {
        self.streams
            .get(&sx)
            .and_then(|s| s.tiers.get(&(region.to_string(), tier)))
            .map(|t| t.active.clone())
            .unwrap_or_default()
    }

    fn pair_rates(&mut self, sx: Sx, px: Px) -> (f64, f64) {
        let (w, sm) = (self.window, self.smoothing);
        match self.pair_mut(sx, px) {
            Some(p) => (p.login.rate(w, &sm), p.logoff.rate(w, &sm)),
            None => (0.0, 0.0),
        }
    }

    /// SysLinRate and the summed logoff rate of a tier ([0061]): the sum over its active proxies.
    fn tier_rates(&mut self, sx: Sx, region: &str, tier: u32) -> (f64, f64) {
        let mut lin = 0.0;
        let mut loff = 0.0;
        for px in self.tier_members(sx, region, tier) {
            let (a, b) = self.pair_rates(sx, px);
            lin += a;
            loff += b;
        }
        (lin, loff)
    }

    // ----------------------------------------------------------------------------------------
    // Overlay (tiering).

    fn mark_overlays_dirty(&mut self) {
        for o in self.overlays.values_mut() {
            o.dirty = true;
        }
    }

    /// Distance between two proxies: a reported RTT in either direction (ms), else the
    /// configured coordinates.
    fn distance(&self, a: Px, b: Px) -> Option<f64> {
        let (pa, pb) = (&self.proxies[a], &self.proxies[b]);
        let rtt = match (pa.rtts.get(&pb.id), pb.rtts.get(&pa.id)) {
            (Some(x), Some(y)) => Some((*x).min(*y)),
            (Some(x), None) | (None, Some(x)) => Some(*x),
            (None, None) => None,
        };
        if let Some(us) = rtt {
            return Some(f64::from(us) / 1000.0);
        }
        let ca = self.settings.get(&pa.id)?.coordinates?;
        let cb = self.settings.get(&pb.id)?.coordinates?;
        Some(((ca[0] - cb[0]).powi(2) + (ca[1] - cb[1]).powi(2)).sqrt())
    }

    /// Recompute the tiers of an overlay if proxies joined or left since ([0024], [0049]).
    fn ensure_overlay(&mut self, key: &OverlayKey) {
        let needs = self
            .overlays
            .get(key)
            .is_none_or(|o| o.dirty && o.computed_in != Some(self.window));
        if !needs {
            return;
        }
        let origin = key.1;
        let mut cands = Vec::new();
        for (px, p) in self.proxies.iter().enumerate() {
            if px == origin || !p.alive {
                continue;
            }
            let st = self.settings.get(&p.id);
            let pin = st.and_then(|s| s.source_tiers.get(&key.0).copied().or(s.tier));
            cands.push(tiering::Candidate {
                id: p.id,
                region: p.region.clone(),
                connections: p.capacity.connections,
                distance: self.distance(px, origin),
                pin,
            });
        }
        let tiers = tiering::compute(&cands, self.config.tier_spread_ms, self.config.max_tiers);
        let mut tier_of = HashMap::new();
        let mut summary = Vec::new();
        for (region, ts) in &tiers {
            for (i, t) in ts.iter().enumerate() {
                for id in t {
                    tier_of.insert(*id, (region.clone(), i as u32 + 1));
                }
            }
            summary.push(format!("{region}: {} tiers", ts.len()));
        }
        let changed = self.overlays.get(key).is_none_or(|o| o.tiers != tiers);
        self.overlays.insert(
            key.clone(),
            Overlay {
                tiers,
                tier_of,
                dirty: false,
                computed_in: Some(self.window),
            },
        );
        if changed {
            let origin_id = self.pid(origin);
            self.log(
                Rule::Tiering,
                None,
                Some(origin_id),
                format!(
                    "source {} at {origin_id}: {} [0024] [0049]",
                    key.0,
                    summary.join(", ")
                ),
            );
        }
    }

    // ----------------------------------------------------------------------------------------
    // Registration, messages, timeouts.

    fn heard(&mut self, px: Px) {
        let timeout = self.config.heartbeat_timeout_ms.saturating_mul(1000);
        let rec = &mut self.proxies[px];
        rec.last_heard = self.now;
        let deadline = self.now.plus_micros(timeout);
        // Queue a new deadline at most every timeout/4 per proxy: the queue stays small.
        if deadline.0 >= rec.queued_deadline.0.saturating_add(timeout / 4) {
            rec.queued_deadline = deadline;
            self.deadlines.push_back((deadline, px));
        }
    }

    fn register(&mut self, r: Registration) {
        self.counters.registrations += 1;
        let settings = self.settings.get(&r.proxy).cloned();
        // [0047] the operator's physical capacity wins over the one the hello states.
        let capacity = Capacity {
            connections: settings
                .as_ref()
                .and_then(|s| s.connections)
                .unwrap_or(r.capacity.connections),
            bits_per_sec: settings
                .as_ref()
                .and_then(|s| s.bits_per_sec)
                .unwrap_or(r.capacity.bits_per_sec),
        };
        let region = settings
            .as_ref()
            .and_then(|s| s.region.clone())
            .or(r.region.clone())
            .unwrap_or_else(|| self.config.default_region.clone());
        let px = match self.by_id.get(&r.proxy) {
            Some(&px) => px,
            None => {
                self.proxies.push(ProxyRec {
                    id: r.proxy,
                    name: r.name.clone(),
                    addr: r.data_addr,
                    region: region.clone(),
                    capacity,
                    alive: false,
                    last_heard: self.now,
                    queued_deadline: Time::ZERO,
                    connections: 0,
                    bps: 0,
                    rtts: BTreeMap::new(),
                    streams: BTreeSet::new(),
                });
                let px = self.proxies.len() - 1;
                self.by_id.insert(r.proxy, px);
                px
            }
        };
        let knew_streams = !self.proxies[px].streams.is_empty();
        if knew_streams && r.streams.is_empty() && self.proxies[px].alive {
            // It restarted and lost its streams: its children must move, as after a crash.
            self.crash(px, "re-registered without its streams (restarted)");
        }
        {
            let rec = &mut self.proxies[px];
            rec.name = r.name.clone();
            rec.addr = r.data_addr;
            rec.region = region.clone();
            rec.capacity = capacity;
            rec.alive = true;
            for rtt in &r.rtts {
                record_rtt(&mut rec.rtts, rtt.peer, rtt.micros);
            }
        }
        self.heard(px);
        self.mark_overlays_dirty();
        let hb = self.config.heartbeat_interval_ms;
        self.send(
            px,
            PncMsg::Welcome {
                version: PROTOCOL_VERSION,
                heartbeat_ms: hb,
            },
        );
        self.log(
            Rule::Register,
            None,
            Some(r.proxy),
            format!(
                "{} at {} in region {region}, capacity {} connections / {} bit/s, {} streams",
                r.name,
                r.data_addr,
                r.capacity.connections,
                r.capacity.bits_per_sec,
                r.streams.len()
            ),
        );
        if knew_streams && !r.streams.is_empty() {
            self.log(
                Rule::Rebuild,
                None,
                Some(r.proxy),
                "reconnected; the PNC's view of its streams is kept".into(),
            );
            return;
        }
        // A proxy's earlier re-registration that still waits for its origin is replaced.
        for v in self.pending_rebuild.values_mut() {
            v.retain(|(q, _)| *q != px);
        }
        self.pending_rebuild.retain(|_, v| !v.is_empty());
        // Origins first, so that the others find their stream.
        let (origins, others): (Vec<StreamState>, Vec<StreamState>) =
            r.streams.into_iter().partition(|s| s.source.is_some());
        for st in origins.into_iter().chain(others) {
            self.rebuild(px, st);
        }
    }

    fn message(&mut self, from: ProxyId, msg: ProxyMsg) {
        let Some(&px) = self.by_id.get(&from) else {
            self.counters.protocol_errors += 1;
            self.log(
                Rule::Protocol,
                None,
                Some(from),
                "message from an unregistered proxy ignored".into(),
            );
            return;
        };
        if !self.proxies[px].alive {
            self.counters.protocol_errors += 1;
            self.log(
                Rule::Protocol,
                None,
                Some(from),
                "message from a proxy declared crashed ignored; it must register again".into(),
            );
            return;
        }
        self.heard(px);
        match msg {
            ProxyMsg::Hello(_) => {
                self.counters.protocol_errors += 1;
                self.log(
                    Rule::Protocol,
                    None,
                    Some(from),
                    "Hello after registration ignored".into(),
                );
            }
            ProxyMsg::Heartbeat { streams, rtts, .. } => {
                let mut new_peer = false;
                for rtt in &rtts {
                    new_peer |= record_rtt(&mut self.proxies[px].rtts, rtt.peer, rtt.micros);
                }
                if new_peer {
                    self.mark_overlays_dirty();
                }
                for load in streams {
                    self.heartbeat_load(px, load);
                }
            }
            ProxyMsg::StreamAnnounce { stream, source } => self.announce(px, stream, source),
            ProxyMsg::StreamEnd { stream } => match self.stream_ids.get(&stream).copied() {
                Some(sx) if self.streams[&sx].origin == px => self.teardown(sx, "the source ended"),
                _ => self.protocol_error(px, &stream, "StreamEnd from a proxy not its origin"),
            },
            ProxyMsg::Login { stream, child } => match self.active_sx(px, &stream) {
                Some(sx) => self.login(sx, px, child),
                None => self.protocol_error(px, &stream, "LOGIN for a stream not active here"),
            },
            ProxyMsg::Logoff { stream, child } => match self.active_sx(px, &stream) {
                Some(sx) => self.logoff(sx, px, child),
                None => self.protocol_error(px, &stream, "LOGOFF for a stream not active here"),
            },
            ProxyMsg::Distribute { stream } => match self.active_sx(px, &stream) {
                Some(sx) => self.distribute(sx, px, "requested by the proxy [0054]"),
                None => self.protocol_error(px, &stream, "DISTRIBUTE for a stream not active here"),
            },
            ProxyMsg::Consolidate { stream } => match self.active_sx(px, &stream) {
                Some(sx) => self.consolidate(sx, px),
                None => {
                    self.protocol_error(px, &stream, "CONSOLIDATE for a stream not active here")
                }
            },
            ProxyMsg::LinkDowngrade { stream, parent } => match self.active_sx(px, &stream) {
                Some(sx) => self.link_downgrade(sx, px, parent),
                None => {
                    self.protocol_error(px, &stream, "LinkDowngrade for a stream not active here")
                }
            },
        }
    }

    fn active_sx(&self, px: Px, stream: &str) -> Option<Sx> {
        let sx = *self.stream_ids.get(stream)?;
        self.streams.get(&sx)?.pairs.contains_key(&px).then_some(sx)
    }

    fn protocol_error(&mut self, px: Px, stream: &str, what: &str) {
        self.counters.protocol_errors += 1;
        let id = self.pid(px);
        self.log(
            Rule::Protocol,
            Some(stream),
            Some(id),
            format!("{what}; ignored"),
        );
    }

    fn heartbeat_load(&mut self, px: Px, load: StreamLoad) {
        let Some(sx) = self.active_sx(px, &load.stream) else {
            return;
        };
        let Some(p) = self.pair_mut(sx, px) else {
            return;
        };
        p.reported = (load.login_rate, load.logoff_rate);
        let before = p.viewers;
        // The proxy's viewer count is authoritative (LOGIN/LOGOFF may have been lost).
        p.viewers = load.viewers;
        let delta = i64::from(load.viewers) - i64::from(before);
        if delta != 0 {
            self.account(sx, px, delta);
            if delta > 0 {
                if self.pair(sx, px).is_some_and(|p| p.standby) {
                    self.join_parents(sx, px);
                }
                self.after_load_increase(sx, px);
            } else {
                self.after_load_decrease(sx, px);
            }
        }
    }

    fn check_timeouts(&mut self) {
        let timeout = self.config.heartbeat_timeout_ms.saturating_mul(1000);
        while let Some(&(deadline, px)) = self.deadlines.front() {
            if deadline > self.now {
                break;
            }
            self.deadlines.pop_front();
            let rec = &self.proxies[px];
            if !rec.alive {
                continue;
            }
            if rec.last_heard.plus_micros(timeout) <= self.now {
                self.crash(px, "heartbeat timeout [0066]");
            } else if rec.queued_deadline <= self.now {
                let d = rec.last_heard.plus_micros(timeout);
                self.proxies[px].queued_deadline = d;
                self.deadlines.push_back((d, px));
            }
        }
    }

    // ----------------------------------------------------------------------------------------
    // Streams: announce, rebuild, teardown.

    fn announce(&mut self, px: Px, name: String, info: SourceInfo) {
        if let Some(&sx) = self.stream_ids.get(&name) {
            let origin = self.streams[&sx].origin;
            if origin == px {
                if let Some(s) = self.streams.get_mut(&sx) {
                    s.info = info;
                }
                return;
            }
            let o = self.pid(origin);
            self.protocol_error(px, &name, &format!("stream already published at {o}"));
            return;
        }
        let sx = self.next_stream;
        self.next_stream += 1;
        let key = (info.source.clone(), px);
        self.overlays.entry(key.clone()).or_insert_with(|| Overlay {
            dirty: true,
            ..Default::default()
        });
        let w = self.window;
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut pairs = BTreeMap::new();
        pairs.insert(
            px,
            Pair {
                tier: 0,
                region: String::new(),
                phase: Phase::Expansion,
                accepting: false,
                standby: false,
                viewers: 0,
                children: SmallSet::default(),
                pending: SmallSet::default(),
                incoming: 0,
                parents: Vec::new(),
                farm: 0,
                seq,
                activated_at: self.now,
                distribute_served: false,
                draining_to: None,
                login: Predictor::new(w),
                logoff: Predictor::new(w),
                reported: (0.0, 0.0),
            },
        );
        self.streams.insert(
            sx,
            StreamRec {
                name: name.clone(),
                info: info.clone(),
                origin: px,
                overlay: key.clone(),
                pairs,
                tiers: BTreeMap::new(),
                farms: BTreeMap::new(),
                awaiting_parent: BTreeMap::new(),
                sys_login: Predictor::new(w),
                sys_logoff: Predictor::new(w),
            },
        );
        self.stream_ids.insert(name.clone(), sx);
        self.proxies[px].streams.insert(sx);
        self.counters.streams_started += 1;
        let id = self.pid(px);
        self.log(
            Rule::StreamStart,
            Some(&name),
            Some(id),
            format!(
                "source {} publishes here ({}, {} bit/s); proxies are activated on the first viewer [0032]",
                info.source, info.content_type, info.bitrate_bps
            ),
        );
        self.ensure_overlay(&key);
        if let Some(pending) = self.pending_rebuild.remove(&name) {
            for (qx, st) in pending {
                if self.proxies[qx].alive {
                    self.apply_rebuild(sx, qx, st);
                }
            }
        }
    }

    fn rebuild(&mut self, px: Px, st: StreamState) {
        if let Some(info) = st.source.clone() {
            self.announce(px, st.stream.clone(), info);
            if let Some(&sx) = self.stream_ids.get(&st.stream)
                && self.streams[&sx].origin == px
            {
                self.link_reported(sx, px, &st);
            }
            return;
        }
        match self.stream_ids.get(&st.stream).copied() {
            Some(sx) => self.apply_rebuild(sx, px, st),
            None => self
                .pending_rebuild
                .entry(st.stream.clone())
                .or_default()
                .push((px, st)),
        }
    }

    /// Take a re-registered (proxy, stream) into the view as the proxy reports it.
    fn apply_rebuild(&mut self, sx: Sx, px: Px, st: StreamState) {
        if self.pair(sx, px).is_some() {
            return;
        }
        let key = self.streams[&sx].overlay.clone();
        self.ensure_overlay(&key);
        let id = self.pid(px);
        let region = self
            .overlays
            .get(&key)
            .and_then(|o| o.tier_of.get(&id))
            .map(|(r, _)| r.clone())
            .unwrap_or_else(|| self.proxies[px].region.clone());
        let tier = st.tier.max(1);
        let w = self.window;
        let seq = self.next_seq;
        self.next_seq += 1;
        let farm = self.next_farm_id();
        let standby = st.viewers == 0 && st.children.is_empty();
        let s = self.streams.get_mut(&sx).expect("stream exists");
        s.pairs.insert(
            px,
            Pair {
                tier,
                region: region.clone(),
                phase: if st.accepting {
                    Phase::Expansion
                } else {
                    Phase::Contraction
                },
                accepting: st.accepting,
                standby,
                viewers: st.viewers,
                children: SmallSet::default(),
                pending: SmallSet::default(),
                incoming: 0,
                parents: Vec::new(),
                farm,
                seq,
                activated_at: self.now,
                distribute_served: !st.accepting,
                draining_to: None,
                login: Predictor::new(w),
                logoff: Predictor::new(w),
                reported: (0.0, 0.0),
            },
        );
        s.tiers
            .entry((region.clone(), tier))
            .or_default()
            .active
            .push(px);
        s.farms.insert(farm, vec![px]);
        self.proxies[px].streams.insert(sx);
        self.account(sx, px, i64::from(st.viewers));
        self.link_reported(sx, px, &st);
        let name = self.sname(sx);
        self.log(
            Rule::Rebuild,
            Some(&name),
            Some(id),
            format!(
                "rebuilt from re-registration: tier {tier} in {region}, {} viewers, parents {}, children {}",
                st.viewers,
                id_list(st.parents.iter().copied()),
                id_list(st.children.iter().copied())
            ),
        );
    }

    /// Link a re-registered pair with its reported parents and children that are known.
    fn link_reported(&mut self, sx: Sx, px: Px, st: &StreamState) {
        let joined = !self.pair(sx, px).is_some_and(|p| p.standby);
        for pid in &st.parents {
            match self.by_id.get(pid) {
                Some(&qx) if self.pair(sx, qx).is_some() => self.link(sx, qx, px, joined),
                _ => {
                    if let Some(s) = self.streams.get_mut(&sx) {
                        s.awaiting_parent
                            .entry(*pid)
                            .or_default()
                            .push((px, joined));
                    }
                }
            }
        }
        let me = self.pid(px);
        let waiting = self
            .streams
            .get_mut(&sx)
            .and_then(|s| s.awaiting_parent.remove(&me))
            .unwrap_or_default();
        for (cx, joined) in waiting {
            if self.pair(sx, cx).is_some() {
                self.link(sx, px, cx, joined);
            }
        }
        for cid in &st.children {
            let Some(&cx) = self.by_id.get(cid) else {
                continue;
            };
            if self.pair(sx, cx).is_some() {
                self.link(sx, px, cx, true);
            }
        }
        let parents = self
            .pair(sx, px)
            .map(|p| p.parents.clone())
            .unwrap_or_default();
        self.settle_rebuilt_phase(sx, px);
        for q in parents {
            self.settle_rebuilt_phase(sx, q);
        }
    }

    /// The phase of a re-registered proxy of an upper tier, which reports no viewers to accept:
    /// it left the expansion phase only through its own DISTRIBUTE, when it filled ([0035]).
    /// Viewer tiers take the phase from `accepting`.
    fn settle_rebuilt_phase(&mut self, sx: Sx, px: Px) {
        let Some(p) = self.pair(sx, px) else { return };
        if p.tier == 0 || p.tier >= self.bottom_tier(sx, &p.region) {
            return;
        }
        let full = p.load() >= self.max_s(sx, px);
        if let Some(p) = self.pair_mut(sx, px) {
            p.phase = if full {
                Phase::Contraction
            } else {
                Phase::Expansion
            };
            p.distribute_served = full;
        }
    }

    /// Make `child` a child of `parent` (joined: load; else reserved). Idempotent.
    fn link(&mut self, sx: Sx, parent: Px, child: Px, joined: bool) {
        let Some(c) = self.pair_mut(sx, child) else {
            return;
        };
        if !c.parents.contains(&parent) {
            c.parents.push(parent);
        }
        let Some(p) = self.pair_mut(sx, parent) else {
            return;
        };
        if joined {
            p.pending.remove(&child);
            if p.children.insert(child) {
                self.account(sx, parent, 1);
            }
        } else if !p.children.contains(&child) {
            p.pending.insert(child);
        }
    }

    /// Remove `child` from `parent`'s children and reservations (not from the child's parents).
    fn unlink_at_parent(&mut self, sx: Sx, parent: Px, child: Px) {
        let Some(p) = self.pair_mut(sx, parent) else {
            return;
        };
        p.pending.remove(&child);
        if p.children.remove(&child) {
            self.account(sx, parent, -1);
        }
    }

    fn teardown(&mut self, sx: Sx, why: &str) {
        let Some(s) = self.streams.remove(&sx) else {
            return;
        };
        self.stream_ids.remove(&s.name);
        self.counters.streams_ended += 1;
        let bitrate = s.info.bitrate_bps;
        for (&px, p) in &s.pairs {
            let load = p.load();
            let rec = &mut self.proxies[px];
            rec.connections = rec.connections.saturating_sub(load);
            rec.bps = rec
                .bps
                .saturating_sub(u64::from(load).saturating_mul(bitrate));
            rec.streams.remove(&sx);
        }
        let origin = s.origin;
        let active: Vec<Px> = s.pairs.keys().copied().filter(|&px| px != origin).collect();
        for &px in &active {
            if self.proxies[px].alive {
                self.counters.deactivations += 1;
                self.send(
                    px,
                    PncMsg::Deactivate {
                        stream: s.name.clone(),
                    },
                );
            }
        }
        let ids = id_list(active.iter().map(|&px| self.pid(px)));
        let o = self.pid(origin);
        self.log(
            Rule::Teardown,
            Some(&s.name),
            Some(o),
            format!("{why}: tree torn down, deactivated {ids}"),
        );
    }

    // ----------------------------------------------------------------------------------------
    // LOGIN and LOGOFF.

    fn login(&mut self, sx: Sx, px: Px, child: Child) {
        let (w, sm) = (self.window, self.smoothing);
        match child {
            Child::Viewer => {
                let Some(p) = self.pair_mut(sx, px) else {
                    return;
                };
                p.viewers = p.viewers.saturating_add(1);
                p.login.observe(w, &sm);
                self.account(sx, px, 1);
            }
            Child::Proxy(cid) => {
                let Some(&cx) = self.by_id.get(&cid) else {
                    self.protocol_error(px, &self.sname(sx), "LOGIN of an unknown child proxy");
                    return;
                };
                if self.pair(sx, cx).is_none() {
                    let name = self.sname(sx);
                    self.protocol_error(
                        px,
                        &name,
                        "LOGIN of a child proxy not active for the stream",
                    );
                    return;
                }
                let expected = self.pair(sx, cx).is_some_and(|c| c.parents.contains(&px));
                if !expected {
                    let name = self.sname(sx);
                    let id = self.pid(px);
                    self.log(
                        Rule::Protocol,
                        Some(&name),
                        Some(id),
                        format!("{cid} logged in without being assigned here; adopted as a child"),
                    );
                }
                let already = self.pair(sx, px).is_some_and(|p| p.children.contains(&cx));
                if already {
                    return;
                }
                self.link(sx, px, cx, true);
                if let Some(p) = self.pair_mut(sx, px) {
                    p.login.observe(w, &sm);
                }
                // The child joined: it is no longer a standby.
                if self.pair(sx, cx).is_some_and(|c| c.standby) {
                    self.join_parents(sx, cx);
                }
            }
        }
        if let Some(s) = self.streams.get_mut(&sx) {
            s.sys_login.observe(w, &sm);
        }
        if self.pair(sx, px).is_some_and(|p| p.standby) {
            self.join_parents(sx, px);
        }
        self.after_load_increase(sx, px);
    }

    /// [0054] a standby proxy's first LOGIN makes it join its parents (a LOGIN there).
    fn join_parents(&mut self, sx: Sx, px: Px) {
        let Some(p) = self.pair_mut(sx, px) else {
            return;
        };
        if !p.standby {
            return;
        }
        p.standby = false;
        let parents = p.parents.clone();
        let name = self.sname(sx);
        let id = self.pid(px);
        let ids = id_list(parents.iter().map(|&q| self.pid(q)));
        self.log(
            Rule::Standby,
            Some(&name),
            Some(id),
            format!("first LOGIN: standby joins its parents {ids} [0054]"),
        );
        let (w, sm) = (self.window, self.smoothing);
        for q in parents {
            let joined = self.pair(sx, q).is_some_and(|p| p.children.contains(&px));
            if joined {
                continue;
            }
            self.link(sx, q, px, true);
            if let Some(qp) = self.pair_mut(sx, q) {
                qp.login.observe(w, &sm);
            }
            if self.pair(sx, q).is_some_and(|p| p.standby) {
                self.join_parents(sx, q);
            }
            self.after_load_increase(sx, q);
        }
    }

    fn logoff(&mut self, sx: Sx, px: Px, child: Child) {
        let (w, sm) = (self.window, self.smoothing);
        match child {
            Child::Viewer => {
                let Some(p) = self.pair_mut(sx, px) else {
                    return;
                };
                if p.viewers == 0 {
                    let name = self.sname(sx);
                    self.protocol_error(px, &name, "LOGOFF of a viewer at a proxy with none");
                    return;
                }
                p.viewers -= 1;
                p.logoff.observe(w, &sm);
                let draining_to = p.draining_to;
                self.account(sx, px, -1);
                // A moved viewer left: its reservation at the new proxy ends.
                if let Some(t) = draining_to
                    && let Some(tp) = self.pair_mut(sx, t)
                {
                    tp.incoming = tp.incoming.saturating_sub(1);
                }
            }
            Child::Proxy(cid) => {
                let Some(&cx) = self.by_id.get(&cid) else {
                    return;
                };
                let was = self.pair(sx, px).is_some_and(|p| p.children.contains(&cx));
                if !was {
                    return;
                }
                self.unlink_at_parent(sx, px, cx);
                if let Some(c) = self.pair_mut(sx, cx) {
                    c.parents.retain(|&q| q != px);
                }
                if let Some(p) = self.pair_mut(sx, px) {
                    p.logoff.observe(w, &sm);
                }
            }
        }
        if let Some(s) = self.streams.get_mut(&sx) {
            s.sys_logoff.observe(w, &sm);
        }
        self.after_load_decrease(sx, px);
    }

    /// DISTRIBUTE when the load reaches Max_s ([0035]) or is predicted to within ΔT ([0054]).
    fn after_load_increase(&mut self, sx: Sx, px: Px) {
        let Some(p) = self.pair(sx, px) else { return };
        if p.tier == 0 || p.phase != Phase::Expansion || p.distribute_served {
            return;
        }
        let load = p.load();
        let max = self.max_s(sx, px);
        if load >= max {
            self.distribute(
                sx,
                px,
                &format!("load {load} reached capacity {max} [0035]"),
            );
            return;
        }
        let (lin, loff) = self.pair_rates(sx, px);
        let ahead = f64::from(load) + (lin - loff) * self.delta_t_secs();
        if ahead >= f64::from(max) {
            self.distribute(
                sx,
                px,
                &format!(
                    "load {load} + ({lin:.3} − {loff:.3})/s × ΔT reaches capacity {max} within ΔT [0054]"
                ),
            );
        }
    }

    /// A proxy whose load falls to zero becomes idle and logs off its parent ([0030], [0055]).
    fn after_load_decrease(&mut self, sx: Sx, px: Px) {
        let Some(p) = self.pair(sx, px) else { return };
        if p.tier == 0 || p.standby || p.load() > 0 || p.incoming > 0 {
            return;
        }
        // Standbys waiting under it that never got a child go with it: with no load left here
        // the stream has no viewer below, and the tree unwinds to the source ([0030], [0055]).
        let pending: Vec<Px> = p.pending.iter().copied().collect();
        let idle_standbys = pending.iter().all(|&c| {
            self.pair(sx, c)
                .is_none_or(|c| c.standby && c.load() == 0 && c.reserved() == 0)
        });
        if !idle_standbys {
            return;
        }
        for c in pending {
            let id = self.pid(c);
            let name = self.sname(sx);
            self.log(
                Rule::Idle,
                Some(&name),
                Some(id),
                "standby whose parent became idle: deactivated with it [0030]".into(),
            );
            self.evict(sx, c);
        }
        self.go_idle(sx, px, "load fell to zero [0030] [0055]");
    }

    fn go_idle(&mut self, sx: Sx, px: Px, why: &str) {
        let Some(s) = self.streams.get_mut(&sx) else {
            return;
        };
        let Some(p) = s.pairs.remove(&px) else { return };
        if let Some(t) = s.tiers.get_mut(&(p.region.clone(), p.tier)) {
            t.active.retain(|&q| q != px);
        }
        if let Some(f) = s.farms.get_mut(&p.farm) {
            f.retain(|&q| q != px);
            if f.is_empty() {
                s.farms.remove(&p.farm);
            }
        }
        // Drained proxies that were sending their viewers here send them nowhere now.
        for other in s.pairs.values_mut() {
            if other.draining_to == Some(px) {
                other.draining_to = None;
            }
        }
        let name = s.name.clone();
        let load = p.load();
        self.account(sx, px, -i64::from(load));
        self.proxies[px].streams.remove(&sx);
        self.counters.deactivations += 1;
        self.send(
            px,
            PncMsg::Deactivate {
                stream: name.clone(),
            },
        );
        let id = self.pid(px);
        self.log(
            Rule::Idle,
            Some(&name),
            Some(id),
            format!("{why}: idle, deactivated"),
        );
        for q in p.parents {
            self.unlink_at_parent(sx, q, px);
            self.after_load_decrease(sx, q);
        }
    }

    // ----------------------------------------------------------------------------------------
    // Activation.

    /// Activate one idle proxy of (`region`, `tier`) for `sx` with parents in the tier above
    /// (activating one there too if none has room: the full parent's own DISTRIBUTE, [0035]).
    fn activate(&mut self, sx: Sx, region: &str, tier: u32, farm: FarmId, why: &str) -> Option<Px> {
        let key = self.streams.get(&sx)?.overlay.clone();
        self.ensure_overlay(&key);
        let name = self.sname(sx);
        let origin = self.streams.get(&sx)?.origin;
        let members: Vec<ProxyId> = self
            .overlays
            .get(&key)
            .and_then(|o| o.tiers.get(region))
            .and_then(|t| t.get(tier.checked_sub(1)? as usize))
            .cloned()
            .unwrap_or_default();
        // [0032] one idle proxy: under `Placement::LowestId`, lowest id first (deterministic,
        // DESIGN "Start of a stream"); under the default `MostFree`, see `most_free_idle`. Among
        // the machines with at least the minimum threshold free: a proxy born with no
        // more room than the CONSOLIDATE threshold ([0033]) would fill at once, and machines
        // shared by many streams ([0047]) would cascade DISTRIBUTEs. Failing that, any room.
        // A cheap machine-wide test (connections and bits/s held) skips full machines before
        // the exact Max_s, which also counts reservations.
        let bitrate = self.streams.get(&sx)?.info.bitrate_bps;
        let min_threshold = self.config.min_threshold;
        let mut chosen = None;
        if self.config.placement == Placement::MostFree {
            chosen = self.most_free_idle(sx, &members, origin, bitrate);
        }
        for pass in [true, false] {
            if chosen.is_some() {
                break;
            }
            chosen = members.iter().find_map(|id| {
                let px = *self.by_id.get(id)?;
                let rec = &self.proxies[px];
                let want = if pass {
                    min_threshold
                        .unwrap_or(rec.capacity.connections.div_ceil(3))
                        .max(1)
                } else {
                    1
                };
                if px == origin
                    || !rec.alive
                    || rec.capacity.connections.saturating_sub(rec.connections) < want
                {
                    return None;
                }
                if bitrate > 0
                    && rec.capacity.bits_per_sec.saturating_sub(rec.bps) / bitrate < u64::from(want)
                {
                    return None;
                }
                let ok = self.pair(sx, px).is_none() && self.max_s(sx, px) >= want;
                ok.then_some(px)
            });
            if chosen.is_some() {
                break;
            }
        }
        let Some(px) = chosen else {
            self.log(
                Rule::Distribute,
                Some(&name),
                None,
                format!("no idle proxy with room in {region} tier {tier} ({why})"),
            );
            return None;
        };
        let parents = self.choose_parents(sx, region, tier);
        if parents.is_empty() {
            let id = self.pid(px);
            self.log(
                Rule::Distribute,
                Some(&name),
                Some(id),
                format!("no parent with room above {region} tier {tier}; not activated ({why})"),
            );
            return None;
        }
        let bottom = self.bottom_tier(sx, region);
        let accepting = tier == bottom;
        let seq = self.next_seq;
        self.next_seq += 1;
        let w = self.window;
        let now = self.now;
        let s = self.streams.get_mut(&sx)?;
        s.pairs.insert(
            px,
            Pair {
                tier,
                region: region.to_string(),
                phase: Phase::Expansion,
                accepting,
                standby: true,
                viewers: 0,
                children: SmallSet::default(),
                pending: SmallSet::default(),
                incoming: 0,
                parents: Vec::new(),
                farm,
                seq,
                activated_at: now,
                distribute_served: false,
                draining_to: None,
                login: Predictor::new(w),
                logoff: Predictor::new(w),
                reported: (0.0, 0.0),
            },
        );
        s.tiers
            .entry((region.to_string(), tier))
            .or_default()
            .active
            .push(px);
        s.farms.entry(farm).or_default().push(px);
        self.proxies[px].streams.insert(sx);
        for &q in &parents {
            self.link(sx, q, px, false);
        }
        self.counters.activations += 1;
        let info = self.streams[&sx].info.clone();
        let parent_peers: Vec<Peer> = parents.iter().map(|&q| self.peer(q)).collect();
        self.send(
            px,
            PncMsg::Activate {
                stream: name.clone(),
                source: info,
                tier,
                parents: parent_peers.clone(),
                accepting,
            },
        );
        // [0053] a proxy in tier k+1 monitors the active proxies of tier k.
        let monitor: Vec<Peer> = if tier == 1 {
            vec![self.peer(origin)]
        } else {
            self.tier_members(sx, region, tier - 1)
                .into_iter()
                .map(|q| self.peer(q))
                .collect()
        };
        self.send(
            px,
            PncMsg::MonitorList {
                stream: name.clone(),
                peers: monitor,
            },
        );
        let id = self.pid(px);
        let pids = id_list(parent_peers.iter().map(|p| p.id));
        self.log(
            Rule::Distribute,
            Some(&name),
            Some(id),
            format!(
                "activated in {region} tier {tier} as a standby, parents {pids}{} ({why}) [0054]",
                if accepting { ", accepting viewers" } else { "" }
            ),
        );
        Some(px)
    }

    /// `Placement::MostFree`: the idle member whose machine has the most free connections
    /// (bits/s included), ties to the lowest id; exact Max_s checked on the winner.
    fn most_free_idle(&self, sx: Sx, members: &[ProxyId], origin: Px, bitrate: u64) -> Option<Px> {
        let pairs = &self.streams.get(&sx)?.pairs;
        let mut best: Option<(u64, std::cmp::Reverse<ProxyId>, Px)> = None;
        for id in members {
            let Some(&px) = self.by_id.get(id) else {
                continue;
            };
            let rec = &self.proxies[px];
            if px == origin || !rec.alive || pairs.contains_key(&px) {
                continue;
            }
            let mut free = u64::from(rec.capacity.connections.saturating_sub(rec.connections));
            if let Some(by_bps) = rec
                .capacity
                .bits_per_sec
                .saturating_sub(rec.bps)
                .checked_div(bitrate)
            {
                free = free.min(by_bps);
            }
            let key = (free, std::cmp::Reverse(*id), px);
            if free > 0 && best.is_none_or(|b| (key.0, key.1) > (b.0, b.1)) {
                best = Some(key);
            }
        }
        let (_, _, px) = best?;
        (self.max_s(sx, px) >= 1).then_some(px)
    }

    /// Parents for a new proxy of (`region`, `tier`): the most recently activated proxies of the
    /// tier above that have room ([0035]: P32's parent is P21), k of them when redundant parents
    /// are configured ([0029], [0044]); the origin for tier 1.
    fn choose_parents(&mut self, sx: Sx, region: &str, tier: u32) -> Vec<Px> {
        let name = self.sname(sx);
        if tier <= 1 {
            let origin = self.streams[&sx].origin;
            if self.room(sx, origin) >= 1 {
                return vec![origin];
            }
            let id = self.pid(origin);
            self.log(
                Rule::Distribute,
                Some(&name),
                Some(id),
                "the origin has no room for another tier-1 proxy".into(),
            );
            return Vec::new();
        }
        let above = self.tier_members(sx, region, tier - 1);
        let why = if above.is_empty() {
            "no active proxy in the tier above yet: the path grows up to the source [0032]"
        } else {
            "every proxy of the tier above is full: its own DISTRIBUTE [0035]"
        };
        let mut cands: Vec<Px> = above
            .into_iter()
            .filter(|&q| self.proxies[q].alive && self.room(sx, q) >= 1)
            .collect();
        cands.sort_by_key(|&q| std::cmp::Reverse(self.pair(sx, q).map_or(0, |p| p.seq)));
        if cands.is_empty() {
            let farm = self.next_farm_id();
            let Some(q) = self.activate(sx, region, tier - 1, farm, why) else {
                return Vec::new();
            };
            cands.push(q);
        }
        let k = self.config.redundant_parents.max(1) as usize;
        // [0029] [0044] k parents in the tier above: activate more there if fewer have room.
        while k > 1 && cands.len() < k {
            let farm = self.next_farm_id();
            match self.activate(
                sx,
                region,
                tier - 1,
                farm,
                "another parent for redundant retrieval [0029] [0044]",
            ) {
                Some(q) => cands.push(q),
                None => break,
            }
        }
        if k > 1 && cands.len() < k {
            self.log(
                Rule::Redundancy,
                Some(&name),
                None,
                format!(
                    "{} parent(s) with room in {region} tier {} for {k} wanted [0029] [0044]",
                    cands.len(),
                    tier - 1
                ),
            );
        }
        cands.truncate(k);
        cands
    }

    // ----------------------------------------------------------------------------------------
    // Redirection.

    fn resolve(
        &mut self,
        request: u64,
        stream: String,
        region: Option<String>,
        client: Option<IpAddr>,
    ) {
        self.counters.resolves += 1;
        let mut region = region
            .or_else(|| client.map(|a| self.region_of(a)))
            .unwrap_or_else(|| self.config.default_region.clone());
        let answer = |this: &mut Self, region: String, target: Option<Peer>, reason: String| {
            if target.is_none() {
                this.counters.resolve_failures += 1;
            }
            this.out.push(Command::Resolved(Resolution {
                request,
                stream: stream.clone(),
                region,
                target,
                reason,
            }));
        };
        let Some(sx) = self.stream_ids.get(&stream).copied() else {
            answer(self, region, None, "no source publishes this stream".into());
            return;
        };
        let key = self.streams[&sx].overlay.clone();
        self.ensure_overlay(&key);
        let regions: Vec<String> = self
            .overlays
            .get(&key)
            .map(|o| o.tiers.keys().cloned().collect())
            .unwrap_or_default();
        if !regions.contains(&region) {
            // No proxy of the source's overlay in the viewer's region: the first region that
            // has some (a choice: the seed assumes every region has proxies, [0049]).
            match regions.first() {
                Some(r) => region = r.clone(),
                None => {
                    answer(
                        self,
                        region,
                        None,
                        "the source's overlay has no proxy".into(),
                    );
                    return;
                }
            }
        }
        let bottom = self.bottom_tier(sx, &region);
        let mut cands = self.accepting_with_room(sx, &region, bottom);
        if cands.is_empty() {
            let members = self.tier_members(sx, &region, bottom);
            let no_path = self
                .streams
                .get(&sx)
                .is_none_or(|s| !s.pairs.values().any(|p| p.region == region));
            if no_path {
                // [0032] [0035] start: one proxy per tier forming a path to the source.
                let name = self.sname(sx);
                self.log(
                    Rule::StreamStart,
                    Some(&name),
                    None,
                    format!(
                        "first viewer in {region}: one proxy per tier of {bottom} [0032] [0035]"
                    ),
                );
                let farm = self.next_farm_id();
                self.activate(sx, &region, bottom, farm, "start of the stream [0032]");
            } else if let Some(&last) = members
                .iter()
                .max_by_key(|&&q| self.pair(sx, q).map_or(0, |p| p.seq))
            {
                self.distribute(
                    sx,
                    last,
                    "no accepting proxy with room for a new viewer [0033]",
                );
            } else {
                let farm = self.next_farm_id();
                self.activate(
                    sx,
                    &region,
                    bottom,
                    farm,
                    "no proxy left in the viewers' tier",
                );
            }
            cands = self.accepting_with_room(sx, &region, bottom);
        }
        if cands.is_empty() {
            answer(
                self,
                region,
                None,
                "no proxy with room can be activated".into(),
            );
            return;
        }
        // [0042] round-robin across the accepting proxies (a farm).
        let Some(rec) = self
            .streams
            .get_mut(&sx)
            .and_then(|s| s.tiers.get_mut(&(region.clone(), bottom)))
        else {
            answer(self, region, None, "no tier".into());
            return;
        };
        let px = cands[(rec.rr % cands.len() as u64) as usize];
        rec.rr += 1;
        let peer = self.peer(px);
        answer(
            self,
            region,
            Some(peer),
            format!(
                "round-robin over {} accepting proxies [0033] [0042]",
                cands.len()
            ),
        );
    }

    fn accepting_with_room(&self, sx: Sx, region: &str, tier: u32) -> Vec<Px> {
        self.tier_members(sx, region, tier)
            .into_iter()
            .filter(|&q| {
                self.proxies[q].alive
                    && self.pair(sx, q).is_some_and(|p| p.accepting)
                    && self.room(sx, q) >= 1
            })
            .collect()
    }

    // ----------------------------------------------------------------------------------------
    // DISTRIBUTE ([0059]–[0061]) and farms ([0039]–[0042]).

    fn distribute(&mut self, sx: Sx, px: Px, why: &str) {
        let name = self.sname(sx);
        let id = self.pid(px);
        let Some(p) = self.pair(sx, px) else { return };
        let (region, tier, farm, served) = (p.region.clone(), p.tier, p.farm, p.distribute_served);
        if tier == 0 {
            return;
        }
        if served {
            self.log(
                Rule::Distribute,
                Some(&name),
                Some(id),
                "DISTRIBUTE already served for this proxy (or its farm); ignored [0042]".into(),
            );
            return;
        }
        self.counters.distributes += 1;
        // [0042] a DISTRIBUTE from any farm member is the farm's.
        let group = self.farm_group(sx, px, farm, tier, &region);
        let mut stopped = Vec::new();
        for &q in &group {
            if let Some(gp) = self.pair_mut(sx, q) {
                // [0030] a served proxy moves to the contraction phase, takes no new viewers.
                gp.phase = Phase::Contraction;
                gp.distribute_served = true;
                if gp.accepting {
                    gp.accepting = false;
                    stopped.push(q);
                }
            }
        }
        let gids = id_list(group.iter().map(|&q| self.pid(q)));
        self.log(
            Rule::Distribute,
            Some(&name),
            Some(id),
            format!("DISTRIBUTE from farm {gids} in {region} tier {tier}: {why}"),
        );
        // [0059] capacity check over sp.
        let (lin, loff) = self.tier_rates(sx, &region, tier);
        let demand = ((lin - loff) * self.sp_secs()).max(0.0);
        let others: Vec<Px> = self
            .tier_members(sx, &region, tier)
            .into_iter()
            .filter(|q| !group.contains(q) && self.proxies[*q].alive)
            .collect();
        let available: u64 = others.iter().map(|&q| u64::from(self.room(sx, q))).sum();
        let unit = u64::from(self.max_s(sx, px).max(1));
        let mut new_accepting: Vec<Px> = Vec::new();
        let sufficient = available > 0 && demand <= available as f64;
        let mut regrouped = false;
        if sufficient {
            // [0060] [0061] enough capacity: regroup existing proxies by MIN_s.
            if let Some(members) = self.regroup(sx, &others, lin) {
                regrouped = true;
                self.counters.regroups += 1;
                let bottom = self.bottom_tier(sx, &region);
                for &q in &members {
                    let Some(gp) = self.pair_mut(sx, q) else {
                        continue;
                    };
                    gp.phase = Phase::Expansion;
                    gp.distribute_served = false;
                    if tier == bottom && !gp.accepting {
                        gp.accepting = true;
                        self.send(
                            q,
                            PncMsg::StartAccepting {
                                stream: name.clone(),
                            },
                        );
                    }
                    if tier == bottom {
                        new_accepting.push(q);
                    }
                }
                let mids = id_list(members.iter().map(|&q| self.pid(q)));
                self.log(
                    Rule::Regroup,
                    Some(&name),
                    Some(id),
                    format!(
                        "capacity over sp suffices (room {available} ≥ demand {demand:.1}); group of l = {} by MIN_s: {mids} [0060] [0061]",
                        members.len()
                    ),
                );
            }
        }
        if !regrouped {
            // [0059] add the minimum m over sp; [0039]–[0041] farm size; activate the larger.
            let short = (demand - available as f64).max(0.0);
            let m = ((short / unit as f64).ceil() as u64).max(1);
            let n = self.farm_size(sx, &region, tier);
            let count = m.max(u64::from(n));
            let which = if u64::from(n) > m {
                format!("farm size Round(…) = {n} > m = {m} [0041]")
            } else {
                format!(
                    "m = {m} ≥ farm size {n} (demand {demand:.1} over sp, room {available}) [0059]"
                )
            };
            self.log(
                Rule::FarmSize,
                Some(&name),
                Some(id),
                format!("activate {count}: {which}"),
            );
            let new_farm = self.next_farm_id();
            let mut activated = 0u32;
            for _ in 0..count {
                match self.activate(sx, &region, tier, new_farm, "DISTRIBUTE [0059]") {
                    Some(q) => {
                        activated += 1;
                        if self.pair(sx, q).is_some_and(|p| p.accepting) {
                            new_accepting.push(q);
                        }
                    }
                    // [0059] activate as many as possible.
                    None => break,
                }
            }
            if activated > 1 {
                self.counters.farms += 1;
            }
            if activated > 0 {
                let now = self.now;
                if let Some(t) = self
                    .streams
                    .get_mut(&sx)
                    .and_then(|s| s.tiers.get_mut(&(region.clone(), tier)))
                {
                    t.sizing.last_time = Some(now);
                    t.sizing.last_n = activated;
                }
            }
        }
        let redirect: Vec<Peer> = new_accepting.iter().map(|&q| self.peer(q)).collect();
        for q in stopped {
            self.send(
                q,
                PncMsg::StopAccepting {
                    stream: name.clone(),
                    redirect_to: redirect.clone(),
                },
            );
        }
    }

    /// [0061] MIN_s = ⌊SysLinRate / (Loffrate_s + (Max_s − Load_s)/ΔT)⌋ + 1 (∞ if the
    /// denominator is 0); l = the smallest size with |{s : MIN_s ≤ l}| ≥ l; members by ascending
    /// MIN_s, then most recently activated. `None` if no l exists.
    fn regroup(&mut self, sx: Sx, others: &[Px], sys_lin: f64) -> Option<Vec<Px>> {
        let dt = self.delta_t_secs().max(1e-9);
        let mut mins: Vec<(u64, std::cmp::Reverse<u64>, Px)> = Vec::new();
        for &q in others {
            let room = self.room(sx, q);
            let (_, loff) = self.pair_rates(sx, q);
            let denom = loff + f64::from(room) / dt;
            if denom <= 0.0 || room == 0 {
                continue; // MIN_s = ∞: never eligible.
            }
            let min_s = (sys_lin / denom).floor();
            if !min_s.is_finite() || min_s >= (u32::MAX as f64) {
                continue;
            }
            let seq = self.pair(sx, q).map_or(0, |p| p.seq);
            mins.push((min_s as u64 + 1, std::cmp::Reverse(seq), q));
        }
        mins.sort();
        let l = (1..=mins.len()).find(|&l| mins.iter().filter(|m| m.0 <= l as u64).count() >= l)?;
        Some(mins.into_iter().take(l).map(|m| m.2).collect())
    }

    /// [0039]–[0041] Number_of_Proxies_assigned for the next farm of (stream, region, tier).
    fn farm_size(&mut self, sx: Sx, region: &str, tier: u32) -> u32 {
        let now = self.now;
        let fa = self.config.farm_alpha;
        let idle = self.idle_count(sx, region, tier);
        let Some(t) = self
            .streams
            .get_mut(&sx)
            .and_then(|s| s.tiers.get_mut(&(region.to_string(), tier)))
        else {
            return 1;
        };
        let sizing = &mut t.sizing;
        let Some(last) = sizing.last_time else {
            // The first DISTRIBUTE activates one proxy.
            return 1;
        };
        let dt = now.secs_since(last).max(1e-6);
        // [0039] New_User_Arrival_Rate = Number_of_Proxies_assigned / (now − last DISTRIBUTE).
        let new_rate = f64::from(sizing.last_n) / dt;
        let n = match sizing.avg {
            None => {
                sizing.avg = Some(new_rate);
                f64::from(sizing.last_n)
            }
            Some(old) => {
                // [0040] read as a normalised average (DESIGN "Farm size").
                let avg = (new_rate + fa * old) / (1.0 + fa);
                sizing.avg = Some(avg);
                if old > 0.0 {
                    // [0041] Round(Number_of_Proxies_assigned × Avg / Old_Avg).
                    (f64::from(sizing.last_n) * avg / old).round()
                } else {
                    f64::from(sizing.last_n)
                }
            }
        };
        (n.max(1.0).min(f64::from(idle.max(1)))) as u32
    }

    fn idle_count(&self, sx: Sx, region: &str, tier: u32) -> u32 {
        let Some(s) = self.streams.get(&sx) else {
            return 0;
        };
        let Some(members) = self
            .overlays
            .get(&s.overlay)
            .and_then(|o| o.tiers.get(region))
            .and_then(|t| t.get(tier.saturating_sub(1) as usize))
        else {
            return 0;
        };
        members
            .iter()
            .filter(|id| {
                self.by_id.get(id).is_some_and(|&px| {
                    px != s.origin && self.proxies[px].alive && !s.pairs.contains_key(&px)
                })
            })
            .count() as u32
    }

    // ----------------------------------------------------------------------------------------
    // CONSOLIDATE ([0055], [0062]–[0063]).

    fn consolidate(&mut self, sx: Sx, px: Px) {
        let name = self.sname(sx);
        let id = self.pid(px);
        let Some(p) = self.pair(sx, px) else { return };
        if p.tier == 0 {
            return;
        }
        let (region, tier, farm, phase, load, reported) = (
            p.region.clone(),
            p.tier,
            p.farm,
            p.phase,
            p.load(),
            p.reported,
        );
        let ignore = |this: &mut Self, why: String| {
            this.counters.consolidations_ignored += 1;
            this.log(
                Rule::Consolidate,
                Some(&name),
                Some(id),
                format!("CONSOLIDATE ignored: {why}"),
            );
        };
        // [0030] [0062] only from a proxy in the contraction phase.
        if phase != Phase::Contraction {
            ignore(self, "not in the contraction phase [0030] [0062]".into());
            return;
        }
        let (mut lin, mut loff) = self.pair_rates(sx, px);
        if lin == 0.0 && loff == 0.0 {
            (lin, loff) = (f64::from(reported.0), f64::from(reported.1));
        }
        if loff <= lin {
            ignore(
                self,
                format!("predicted logoffs {loff:.3}/s do not exceed logins {lin:.3}/s [0062]"),
            );
            return;
        }
        let max = self.max_s(sx, px);
        let min_threshold = self.config.min_threshold.unwrap_or(max.div_ceil(3));
        if load > min_threshold {
            ignore(
                self,
                format!("load {load} above the minimum threshold {min_threshold} [0033] [0055]"),
            );
            return;
        }
        // [0042] a farm is deactivated together.
        let group = self.farm_group(sx, px, farm, tier, &region);
        let others: Vec<Px> = self
            .tier_members(sx, &region, tier)
            .into_iter()
            .filter(|q| !group.contains(q) && self.proxies[*q].alive)
            .collect();
        if others.is_empty() {
            // [0055] the only proxy of its tier: ignored.
            ignore(self, "last proxy of its tier [0055]".into());
            return;
        }
        // [0063] no new server needed within sp, room in the rest.
        let group_load: u64 = group
            .iter()
            .map(|&q| u64::from(self.pair(sx, q).map_or(0, Pair::load)))
            .sum();
        let room: u64 = others.iter().map(|&q| u64::from(self.room(sx, q))).sum();
        let (tlin, tloff) = self.tier_rates(sx, &region, tier);
        let demand = ((tlin - tloff) * self.sp_secs()).max(0.0);
        if (room as f64) < group_load as f64 + demand {
            ignore(
                self,
                format!(
                    "room {room} in the rest < load {group_load} + demand {demand:.1} over sp: a server would be needed [0063]"
                ),
            );
            return;
        }
        // [0037] children go to the most recently activated proxy, else the next most recent.
        let mut order = others.clone();
        order.sort_by_key(|&q| std::cmp::Reverse(self.pair(sx, q).map_or(0, |p| p.seq)));
        let mut free: BTreeMap<Px, u32> = order.iter().map(|&q| (q, self.room(sx, q))).collect();
        let mut plan = Vec::new();
        for &g in &group {
            let gp = self.pair(sx, g).expect("group member active");
            let need = gp.load().saturating_add(gp.pending.len() as u32);
            if need == 0 {
                plan.push((g, None));
                continue;
            }
            let Some(&t) = order.iter().find(|q| free[*q] >= need) else {
                ignore(
                    self,
                    format!("no single proxy of the tier has room for {need} [0063]"),
                );
                return;
            };
            if let Some(f) = free.get_mut(&t) {
                *f -= need;
            }
            plan.push((g, Some(t)));
        }
        self.counters.consolidations += 1;
        for (g, target) in plan {
            let gid = self.pid(g);
            let Some(t) = target else {
                self.go_idle(sx, g, "consolidated with no load [0063]");
                continue;
            };
            let tid = self.pid(t);
            self.log(
                Rule::Consolidate,
                Some(&name),
                Some(gid),
                format!(
                    "consolidated: children move to the most recently activated {tid} [0037] [0063]"
                ),
            );
            self.drain(sx, g, t);
        }
    }

    /// Move every child of `from` to `to`: child proxies switch parent (the PNC redirects them),
    /// viewers are redirected by `from` itself ([0046]); `from` goes idle once empty.
    fn drain(&mut self, sx: Sx, from: Px, to: Px) {
        let name = self.sname(sx);
        let Some(p) = self.pair_mut(sx, from) else {
            return;
        };
        p.accepting = false;
        p.phase = Phase::Contraction;
        p.distribute_served = true;
        p.draining_to = Some(to);
        let viewers = p.viewers;
        let kids: Vec<Px> = p.children.iter().chain(p.pending.iter()).copied().collect();
        for c in kids {
            self.move_child(sx, c, from, to);
        }
        if viewers > 0 {
            if let Some(tp) = self.pair_mut(sx, to) {
                tp.incoming = tp.incoming.saturating_add(viewers);
            }
            let peer = self.peer(to);
            self.send(
                from,
                PncMsg::RedirectChildren {
                    stream: name,
                    to: peer,
                },
            );
        }
        self.after_load_decrease(sx, from);
    }

    /// Child proxy `c` of `from` now pulls from `to` instead (make-before-break, [0029]).
    fn move_child(&mut self, sx: Sx, c: Px, from: Px, to: Px) {
        let joined = self.pair(sx, from).is_some_and(|p| p.children.contains(&c));
        self.repoint(sx, c, from, to, joined);
        if joined {
            self.after_load_increase(sx, to);
        }
    }

    /// Moves `c`'s parent link from `from` to `to` and sends it `SwitchToParent`. A standby
    /// `to` receiving a joined child joins its own parents first ([0054]), so the new path
    /// carries data before the child switches ([0029]).
    fn repoint(&mut self, sx: Sx, c: Px, from: Px, to: Px, joined: bool) {
        self.unlink_at_parent(sx, from, c);
        if let Some(cp) = self.pair_mut(sx, c) {
            cp.parents.retain(|&q| q != from);
        }
        self.link(sx, to, c, joined);
        if joined && self.pair(sx, to).is_some_and(|p| p.standby) {
            self.join_parents(sx, to);
        }
        self.counters.parent_switches += 1;
        let parents: Vec<Peer> = self
            .pair(sx, c)
            .map(|cp| cp.parents.clone())
            .unwrap_or_default()
            .into_iter()
            .map(|q| self.peer(q))
            .collect();
        let name = self.sname(sx);
        self.send(
            c,
            PncMsg::SwitchToParent {
                stream: name,
                parents,
            },
        );
    }

    // ----------------------------------------------------------------------------------------
    // Failures ([0066]).

    fn link_downgrade(&mut self, sx: Sx, s: Px, parent: ProxyId) {
        self.counters.link_downgrades += 1;
        let name = self.sname(sx);
        let sid = self.pid(s);
        let Some(&p) = self.by_id.get(&parent) else {
            self.protocol_error(s, &name, "LinkDowngrade naming an unknown parent");
            return;
        };
        let Some(sp) = self.pair(sx, s) else { return };
        if !sp.parents.contains(&p) {
            self.protocol_error(
                s,
                &name,
                "LinkDowngrade naming a proxy that is not its parent",
            );
            return;
        }
        let (region, tier, parents) = (sp.region.clone(), sp.tier, sp.parents.clone());
        // P′: another active parent in the tier above, most recently activated first.
        let mut cands: Vec<Px> = if tier > 1 {
            self.tier_members(sx, &region, tier - 1)
                .into_iter()
                .filter(|&q| {
                    q != p
                        && !parents.contains(&q)
                        && self.proxies[q].alive
                        && self.room(sx, q) >= 1
                })
                .collect()
        } else {
            Vec::new()
        };
        cands.sort_by_key(|&q| std::cmp::Reverse(self.pair(sx, q).map_or(0, |x| x.seq)));
        if let Some(&alt) = cands.first() {
            let aid = self.pid(alt);
            self.log(
                Rule::LinkDowngrade,
                Some(&name),
                Some(sid),
                format!("link to {parent} lost: switch to alternate parent P′ = {aid} [0066]"),
            );
            self.switch_parent(sx, s, p, alt);
            return;
        }
        // S′: a sibling takes the children of S.
        let need = self
            .pair(sx, s)
            .map_or(0, |x| x.load().saturating_add(x.pending.len() as u32));
        let mut sibs: Vec<Px> = self
            .tier_members(sx, &region, tier)
            .into_iter()
            // S′ pulls through its own link (to P or another parent), which still works.
            .filter(|&q| q != s && self.proxies[q].alive && self.room(sx, q) >= need.max(1))
            .collect();
        sibs.sort_by_key(|&q| std::cmp::Reverse(self.pair(sx, q).map_or(0, |x| x.seq)));
        if let Some(&sib) = sibs.first() {
            let bid = self.pid(sib);
            self.log(
                Rule::LinkDowngrade,
                Some(&name),
                Some(sid),
                format!("link to {parent} lost, no other active parent: children move to sibling S′ = {bid} [0066]"),
            );
            self.drain(sx, s, sib);
            return;
        }
        // P″: activate a proxy in the parent tier and switch S to it.
        if tier > 1 {
            let farm = self.next_farm_id();
            if let Some(np) =
                self.activate(sx, &region, tier - 1, farm, "P″ for a LinkDowngrade [0066]")
            {
                let nid = self.pid(np);
                self.log(
                    Rule::LinkDowngrade,
                    Some(&name),
                    Some(sid),
                    format!("link to {parent} lost, no P′ nor S′: switch to newly activated P″ = {nid} [0066]"),
                );
                // The new parent was linked to no child yet; S joins it now.
                self.switch_parent(sx, s, p, np);
                return;
            }
        }
        self.log(
            Rule::LinkDowngrade,
            Some(&name),
            Some(sid),
            format!("link to {parent} lost and no P′, S′ or P″ available; unchanged [0066]"),
        );
    }

    /// `s` pulls from `new` instead of `old`.
    fn switch_parent(&mut self, sx: Sx, s: Px, old: Px, new: Px) {
        let joined = !self.pair(sx, s).is_some_and(|x| x.standby);
        self.repoint(sx, s, old, new, joined);
        self.after_load_decrease(sx, old);
        self.after_load_increase(sx, new);
    }

    /// A crashed proxy: per stream, its children move to an active proxy of the same tier, or
    /// to a newly activated one ([0066]); a crashed origin ends its streams.
    fn crash(&mut self, px: Px, why: &str) {
        self.counters.crashes += 1;
        let id = self.pid(px);
        self.log(
            Rule::Crash,
            None,
            Some(id),
            format!("{why}: proxy considered crashed [0066]"),
        );
        self.proxies[px].alive = false;
        self.mark_overlays_dirty();
        let streams: Vec<Sx> = self.proxies[px].streams.iter().copied().collect();
        for sx in streams {
            if self.streams.get(&sx).is_some_and(|s| s.origin == px) {
                self.teardown(sx, "the origin crashed");
            } else {
                self.crash_pair(sx, px);
            }
        }
        self.proxies[px].streams.clear();
        self.proxies[px].connections = 0;
        self.proxies[px].bps = 0;
    }

    /// Deactivate `x` and its whole subtree for `sx` (a subtree that lost its way to the source
    /// and found no new parent): no proxy is left without a path to the source.
    fn evict(&mut self, sx: Sx, x: Px) {
        let Some(p) = self.pair(sx, x) else { return };
        let kids: Vec<Px> = p.children.iter().chain(p.pending.iter()).copied().collect();
        for c in kids {
            self.evict(sx, c);
        }
        let Some(s) = self.streams.get_mut(&sx) else {
            return;
        };
        let Some(p) = s.pairs.remove(&x) else { return };
        if let Some(t) = s.tiers.get_mut(&(p.region.clone(), p.tier)) {
            t.active.retain(|&q| q != x);
        }
        if let Some(f) = s.farms.get_mut(&p.farm) {
            f.retain(|&q| q != x);
        }
        for other in s.pairs.values_mut() {
            if other.draining_to == Some(x) {
                other.draining_to = None;
            }
        }
        let name = s.name.clone();
        self.account(sx, x, -i64::from(p.load()));
        self.proxies[x].streams.remove(&sx);
        for q in p.parents {
            self.unlink_at_parent(sx, q, x);
        }
        if self.proxies[x].alive {
            self.counters.deactivations += 1;
            self.send(x, PncMsg::Deactivate { stream: name });
        }
    }

    fn crash_pair(&mut self, sx: Sx, x: Px) {
        let name = self.sname(sx);
        let xid = self.pid(x);
        let Some(p) = self.pair(sx, x) else { return };
        let (region, tier, parents) = (p.region.clone(), p.tier, p.parents.clone());
        let kids: Vec<Px> = p.children.iter().chain(p.pending.iter()).copied().collect();
        // Children first, while x is still in the tree.
        for c in kids {
            let need = 1;
            let mut targets: Vec<Px> = self
                .tier_members(sx, &region, tier)
                .into_iter()
                .filter(|&q| q != x && self.proxies[q].alive && self.room(sx, q) >= need)
                .collect();
            targets.sort_by_key(|&q| std::cmp::Reverse(self.pair(sx, q).map_or(0, |y| y.seq)));
            let target = match targets.first() {
                Some(&t) => Some(t),
                None => {
                    let farm = self.next_farm_id();
                    self.activate(
                        sx,
                        &region,
                        tier,
                        farm,
                        "replacement for a crashed proxy [0066]",
                    )
                }
            };
            match target {
                Some(t) => {
                    let (cid, tid) = (self.pid(c), self.pid(t));
                    self.log(
                        Rule::Crash,
                        Some(&name),
                        Some(xid),
                        format!("child {cid} of crashed {xid} moves to {tid} [0066]"),
                    );
                    self.move_child(sx, c, x, t);
                }
                None => {
                    let cid = self.pid(c);
                    self.log(
                        Rule::Crash,
                        Some(&name),
                        Some(xid),
                        format!(
                            "no proxy of tier {tier} can take child {cid} of crashed {xid}: its subtree is deactivated, its viewers come back through redirection"
                        ),
                    );
                    self.evict(sx, c);
                }
            }
        }
        // Remove x itself; its viewers are gone (they come back through redirection).
        let Some(s) = self.streams.get_mut(&sx) else {
            return;
        };
        let Some(p) = s.pairs.remove(&x) else { return };
        if let Some(t) = s.tiers.get_mut(&(region.clone(), tier)) {
            t.active.retain(|&q| q != x);
        }
        if let Some(f) = s.farms.get_mut(&p.farm) {
            f.retain(|&q| q != x);
        }
        for other in s.pairs.values_mut() {
            if other.draining_to == Some(x) {
                other.draining_to = None;
            }
            other.pending.remove(&x);
        }
        self.account(sx, x, -i64::from(p.load()));
        for q in parents {
            self.unlink_at_parent(sx, q, x);
            self.after_load_decrease(sx, q);
        }
        // Children left without a parent (no replacement found) stay in the view, parentless.
        let orphans: Vec<Px> = p.children.iter().copied().collect();
        for c in orphans {
            if let Some(cp) = self.pair_mut(sx, c) {
                cp.parents.retain(|&q| q != x);
            }
        }
    }
}
