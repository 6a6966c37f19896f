//! What the core holds per proxy, per stream and per (proxy, stream) pair, and the accounting
//! over it: loads, reservations, Max_s and room ([0047], [0048]), tier rates ([0061]).

use super::tier_sums::sane_reported;
use super::*;

/// RTTs kept per proxy at most: a proxy cannot grow the PNC's memory without bound by reporting
/// made-up peers.
pub(super) const MAX_RTTS_PER_PROXY: usize = 16_384;

/// Record an RTT; true if the peer is new.
pub(super) fn record_rtt(rtts: &mut BTreeMap<ProxyId, u32>, peer: ProxyId, micros: u32) -> bool {
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

/// A registered proxy.
#[derive(Debug)]
pub(super) struct ProxyRec {
    pub(super) id: ProxyId,
    pub(super) name: String,
    pub(super) addr: SocketAddr,
    pub(super) region: RegionId,
    pub(super) capacity: Capacity,
    /// What one stream may take here: the configuration's `logical_connections`, else the
    /// capacity in connections ([0047]); kept here, not looked up per Max_s.
    pub(super) logical_connections: u32,
    pub(super) alive: bool,
    /// Its control connection closed and it has not registered again: alive until the
    /// heartbeat timeout says otherwise ([0066]), but likely gone.
    pub(super) disconnected: bool,
    /// It decides DISTRIBUTE and CONSOLIDATE and reports its rates (`Hello::decides`).
    pub(super) decides: bool,
    pub(super) last_heard: Time,
    /// Latest deadline queued for the timeout check.
    pub(super) queued_deadline: Time,
    /// Connections over all streams, from the core's view ([0047]).
    pub(super) connections: u32,
    /// Outgoing bits/s over all streams (load × bitrate).
    pub(super) bps: u64,
    pub(super) rtts: BTreeMap<ProxyId, u32>,
    pub(super) streams: BTreeSet<Sx>,
}

/// What placement reads of a machine (`Coordinator::most_free_idle`), copied out of its record
/// into a dense table: a placement compares every machine of a tier, thousands, and the records
/// are several cache lines each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Room {
    pub(super) id: ProxyId,
    pub(super) alive: bool,
    /// Connections not held, of its capacity.
    pub(super) connections: u32,
    /// Bits/s not held, of its capacity.
    pub(super) bps: u64,
}

impl Room {
    pub(super) fn of(rec: &ProxyRec) -> Room {
        Room {
            id: rec.id,
            alive: rec.alive,
            connections: rec.capacity.connections.saturating_sub(rec.connections),
            bps: rec.capacity.bits_per_sec.saturating_sub(rec.bps),
        }
    }
}

/// Every registered proxy, indexed by [`Px`]. Every proxy borrowed mutably is noted as
/// touched: what takes viewers on its machine may have changed (see
/// [`Coordinator::refresh_accepting`]).
#[derive(Debug, Default)]
pub(super) struct ProxyTable {
    recs: Vec<ProxyRec>,
    touched: Vec<Px>,
    /// Each machine's `Room` as of its last refresh; `None` once it was borrowed mutably since
    /// (then read from its record).
    rooms: Vec<Option<Room>>,
}

impl ProxyTable {
    pub(super) fn push(&mut self, rec: ProxyRec) -> Px {
        self.recs.push(rec);
        self.rooms.push(None);
        let px = Px(self.recs.len() as u32 - 1);
        self.touched.push(px);
        px
    }

    /// The `Room` of `px` now.
    pub(super) fn room(&self, px: Px) -> Room {
        self.rooms[px.index()].unwrap_or_else(|| Room::of(&self.recs[px.index()]))
    }

    /// Every copied `Room` is its record's (`Coordinator::audit`).
    pub(super) fn check_rooms(&self) -> Result<(), String> {
        for (rec, room) in self.recs.iter().zip(&self.rooms) {
            if room.is_some_and(|r| r != Room::of(rec)) {
                return Err(format!("{}: placement's copy of its room is stale", rec.id));
            }
        }
        Ok(())
    }

    pub(super) fn iter(&self) -> impl Iterator<Item = (Px, &ProxyRec)> {
        self.recs.iter().enumerate().map(|(i, p)| (Px(i as u32), p))
    }

    /// `px` for the fields that do not change what its machine takes (when it was last heard,
    /// its queued deadline, its RTTs): not noted as touched, so a heartbeat that changes no load
    /// costs no refresh of the machine's streams.
    pub(super) fn untracked_mut(&mut self, px: Px) -> &mut ProxyRec {
        &mut self.recs[px.index()]
    }

    /// Note that the load, capacity or liveness of `px`, or a pair on it, may have changed.
    pub(super) fn touch(&mut self, px: Px) {
        self.touched.push(px);
    }

    /// The proxies touched since the last call, each once, into `into` (cleared first).
    pub(super) fn take_touched(&mut self, into: &mut Vec<Px>) {
        into.clear();
        std::mem::swap(into, &mut self.touched);
        into.sort_unstable();
        into.dedup();
        for &px in into.iter() {
            self.rooms[px.index()] = Some(Room::of(&self.recs[px.index()]));
        }
    }
}

impl std::ops::Index<Px> for ProxyTable {
    type Output = ProxyRec;
    fn index(&self, px: Px) -> &ProxyRec {
        &self.recs[px.index()]
    }
}

impl std::ops::IndexMut<Px> for ProxyTable {
    fn index_mut(&mut self, px: Px) -> &mut ProxyRec {
        self.touched.push(px);
        self.rooms[px.index()] = None;
        &mut self.recs[px.index()]
    }
}

/// Max_s ([0047], [0048]) of a stream of `bitrate` on the machine `rec`, where the stream's own
/// load is `own` and the machine's other streams reserve `other_reserved` connections: what
/// `Coordinator::max_s_with` computes, for a caller that holds the pair already.
pub(super) fn max_s_of(rec: &ProxyRec, own: u32, bitrate: u64, other_reserved: u32) -> u32 {
    let other = rec
        .connections
        .saturating_sub(own)
        .saturating_add(other_reserved);
    let mut m = rec
        .logical_connections
        .min(rec.capacity.connections.saturating_sub(other));
    if bitrate > 0 {
        let other_bps = rec
            .bps
            .saturating_sub(u64::from(own).saturating_mul(bitrate));
        let by_bps = rec.capacity.bits_per_sec.saturating_sub(other_bps) / bitrate;
        m = m.min(by_bps.min(u64::from(u32::MAX)) as u32);
    }
    m
}

/// The hysteresis margin for a Max_s of `max_s` with the configured `hysteresis`.
pub(super) fn margin_for(hysteresis: f64, max_s: u32) -> u32 {
    let h = if hysteresis.is_finite() {
        hysteresis.clamp(0.0, 1.0)
    } else {
        0.0
    };
    ((f64::from(max_s) * h).round() as u32).max(1)
}

/// Farm sizing state of one (stream, region, tier) ([0039]–[0041]).
#[derive(Debug, Default, Clone)]
pub(super) struct FarmSizing {
    pub(super) last_time: Option<Time>,
    pub(super) last_n: u32,
    /// The farm those `last_n` proxies form: only its DISTRIBUTE says how fast it filled.
    pub(super) last_farm: Option<FarmId>,
    pub(super) avg: Option<f64>,
}

/// Active proxies of one (stream, region, tier).
#[derive(Debug, Default)]
pub(super) struct TierRec {
    /// In activation order (oldest first), the ones that take a new viewer indexed.
    pub(super) active: ActiveSet,
    /// Round-robin position for new viewers ([0042]).
    pub(super) rr: u64,
    pub(super) sizing: FarmSizing,
    /// Changes whenever a proxy joins or leaves `active` (from a counter over all tiers): the
    /// tier below monitors another list ([0053]).
    pub(super) version: u64,
    /// Room, regroup candidates and rates, kept for DISTRIBUTE.
    pub(super) sums: TierSums,
}

impl TierRec {
    /// Add `px` to the active set; the first member of an empty tier starts its rates at
    /// `window`.
    pub(super) fn admit(&mut self, px: Px, window: u64) {
        if self.active.is_empty() {
            self.sums.restart_rates(window);
        }
        self.active.push(px);
    }
}

/// A sorted set of proxies in a vector: children of one proxy are few, and a `BTreeSet` node
/// would cost more than 100 bytes per (proxy, stream) pair.
#[derive(Debug, Default, Clone)]
pub(super) struct SmallSet(Vec<Px>);

impl SmallSet {
    pub(super) fn insert(&mut self, x: Px) -> bool {
        match self.0.binary_search(&x) {
            Ok(_) => false,
            Err(i) => {
                self.0.insert(i, x);
                true
            }
        }
    }
    pub(super) fn remove(&mut self, x: &Px) -> bool {
        match self.0.binary_search(x) {
            Ok(i) => {
                self.0.remove(i);
                true
            }
            Err(_) => false,
        }
    }
    pub(super) fn contains(&self, x: &Px) -> bool {
        self.0.binary_search(x).is_ok()
    }
    pub(super) fn iter(&self) -> std::slice::Iter<'_, Px> {
        self.0.iter()
    }
    pub(super) fn len(&self) -> usize {
        self.0.len()
    }
}

/// One proxy's state for one stream.
#[derive(Debug)]
pub(super) struct Pair {
    /// 0 for the origin.
    pub(super) tier: u32,
    pub(super) region: RegionId,
    pub(super) phase: Phase,
    pub(super) accepting: bool,
    /// Activated, not yet joined its parents (no child yet) ([0054]).
    pub(super) standby: bool,
    pub(super) viewers: u32,
    /// Child proxies that joined.
    pub(super) children: SmallSet,
    /// Child proxies assigned but still standby: reserved, not load.
    pub(super) pending: SmallSet,
    /// Viewers on their way here (sent by `/resolve`, moved from a drained proxy): reserved.
    pub(super) expected: Expected,
    pub(super) parents: Vec<Px>,
    pub(super) farm: FarmId,
    /// Activation order, global: larger is more recent.
    pub(super) seq: u64,
    pub(super) activated_at: Time,
    pub(super) distribute_served: bool,
    pub(super) draining_to: Option<Px>,
    /// Where its last StopAccepting sends new viewers. One that leaves the stream is taken off
    /// (`take_pair`) and the rest sent again (`send_stop_accepting`): a viewer sent to a proxy
    /// no longer serving the stream would find nothing there.
    pub(super) redirect_to: Vec<Px>,
    pub(super) login: Predictor,
    pub(super) logoff: Predictor,
    /// No less than any rate `logoff` gives until its next observation (`Predictor::bound`):
    /// its place in the tier's regroup order.
    pub(super) logoff_bound: f64,
    pub(super) reported: (f32, f32),
    /// `TierRec::version` of the tier above when its MonitorList was last sent ([0053]).
    pub(super) monitor_version: u64,
    /// What its tier's accepting index holds for it: `refresh_accepting`, the index's only
    /// writer, looks the tier up only when this changes.
    pub(super) indexed_accepting: bool,
    /// What it adds to its tier's sums.
    pub(super) share: Share,
}

impl Pair {
    pub(super) fn load(&self) -> u32 {
        self.viewers.saturating_add(self.children.len() as u32)
    }
    pub(super) fn reserved(&self) -> u32 {
        (self.pending.len() as u32).saturating_add(self.expected.total())
    }
    /// Served a DISTRIBUTE and still taking viewers: under `Growth::PredictiveFill` until it is
    /// full (`Coordinator::stop_filled`); never so under the seed's [0030].
    pub(super) fn served_and_accepting(&self) -> bool {
        self.accepting && self.distribute_served && self.phase == Phase::Contraction
    }
}

/// One stream.
#[derive(Debug)]
pub(super) struct StreamRec {
    pub(super) name: String,
    pub(super) info: SourceInfo,
    pub(super) origin: Px,
    pub(super) overlay: OverlayKey,
    pub(super) pairs: BTreeMap<Px, Pair>,
    pub(super) tiers: BTreeMap<(RegionId, u32), TierRec>,
    pub(super) farms: BTreeMap<FarmId, Vec<Px>>,
    /// Re-registered links whose parent has not re-registered yet: parent → (child, joined).
    pub(super) awaiting_parent: BTreeMap<ProxyId, Vec<(Px, bool)>>,
    /// System-wide logins and logoffs of the stream ([0064]).
    pub(super) sys_login: Predictor,
    pub(super) sys_logoff: Predictor,
}

impl Coordinator {
    pub(super) fn peer(&self, px: Px) -> Peer {
        Peer {
            id: self.proxies[px].id,
            addr: self.proxies[px].addr,
        }
    }

    pub(super) fn pid(&self, px: Px) -> ProxyId {
        self.proxies[px].id
    }

    pub(super) fn sname(&self, sx: Sx) -> String {
        self.streams
            .get(&sx)
            .map(|s| s.name.clone())
            .unwrap_or_default()
    }

    pub(super) fn pair(&self, sx: Sx, px: Px) -> Option<&Pair> {
        self.streams.get(&sx)?.pairs.get(&px)
    }

    pub(super) fn pair_mut(&mut self, sx: Sx, px: Px) -> Option<&mut Pair> {
        self.proxies.touch(px);
        self.streams.get_mut(&sx)?.pairs.get_mut(&px)
    }

    pub(super) fn delta_t_secs(&self) -> f64 {
        self.config.delta_t_ms as f64 / 1000.0
    }

    pub(super) fn sp_secs(&self) -> f64 {
        self.config.sp_ms as f64 / 1000.0
    }

    pub(super) fn next_farm_id(&mut self) -> FarmId {
        self.next_farm += 1;
        self.next_farm
    }

    /// Max_s of `px` for stream `sx` now ([0047], [0048]): logical capacity, and the physical
    /// capacity left by the other streams on the machine, in connections and in bits/s,
    /// whichever binds first. Works for a proxy not (yet) active for the stream.
    pub(super) fn max_s(&self, sx: Sx, px: Px) -> u32 {
        self.max_s_with(sx, px, self.other_reserved(sx, px))
    }

    /// Connections reserved on the machine of `px` by its streams other than `sx` (standby
    /// children, moved viewers on their way): capacity is machine-wide ([0047]).
    pub(super) fn other_reserved(&self, sx: Sx, px: Px) -> u32 {
        self.proxies[px]
            .streams
            .iter()
            .filter(|&&o| o != sx)
            .filter_map(|o| self.streams.get(o)?.pairs.get(&px).map(Pair::reserved))
            .sum()
    }

    /// Max_s given the connections the machine's other streams reserve.
    pub(super) fn max_s_with(&self, sx: Sx, px: Px, other_reserved: u32) -> u32 {
        let Some(s) = self.streams.get(&sx) else {
            return 0;
        };
        let own = s.pairs.get(&px).map_or(0, Pair::load);
        max_s_of(&self.proxies[px], own, s.info.bitrate_bps, other_reserved)
    }

    /// The hysteresis margin of `px` for `sx`: a fraction of its Max_s, at least one viewer (as
    /// the agent's, `AgentConfig::margin`).
    pub(super) fn margin(&self, sx: Sx, px: Px) -> u32 {
        self.margin_of(self.max_s(sx, px))
    }

    /// The hysteresis margin for a Max_s of `max_s`.
    pub(super) fn margin_of(&self, max_s: u32) -> u32 {
        margin_for(self.config.hysteresis, max_s)
    }

    /// The room `px` keeps for `sx` once its predicted growth over ΔT is in ([0054]), given its
    /// `room` now: below the margin, it would ask DISTRIBUTE again at its next viewer.
    pub(super) fn predicted_room_from(&mut self, sx: Sx, px: Px, room: u32) -> f64 {
        let (lin, loff) = self.pair_rates(sx, px);
        f64::from(room) - (lin - loff).max(0.0) * self.delta_t_secs()
    }

    /// Free connections of an active pair, reservations included.
    pub(super) fn room(&self, sx: Sx, px: Px) -> u32 {
        self.room_and_max_s(sx, px).0
    }

    /// The room of `px` for `sx` and its Max_s, from one computation of Max_s.
    pub(super) fn room_and_max_s(&self, sx: Sx, px: Px) -> (u32, u32) {
        let max = self.max_s(sx, px);
        let room = match self.pair(sx, px) {
            Some(p) => max.saturating_sub(p.load().saturating_add(p.reserved())),
            None => max,
        };
        (room, max)
    }

    /// Change the machine-wide accounting of `px` by `delta` connections of stream `sx`.
    pub(super) fn account(&mut self, sx: Sx, px: Px, delta: i64) {
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
    pub(super) fn bottom_tier(&self, sx: Sx, region: RegionId) -> u32 {
        let Some(s) = self.streams.get(&sx) else {
            return 0;
        };
        self.overlays
            .get(&s.overlay)
            .and_then(|o| o.tiers.get(&region))
            .map_or(0, |t| t.len() as u32)
    }

    /// The members of `px`'s farm still in its (region, tier); `px` alone when it has no farm
    /// ([0042]: a farm's DISTRIBUTE is one, and a farm is deactivated together).
    pub(super) fn farm_group(
        &self,
        sx: Sx,
        px: Px,
        farm: FarmId,
        tier: u32,
        region: RegionId,
    ) -> Vec<Px> {
        let Some(s) = self.streams.get(&sx) else {
            return Vec::new();
        };
        let in_tier = |q: &Px| {
            s.pairs
                .get(q)
                .is_some_and(|p| p.tier == tier && p.region == region)
        };
        match s.farms.get(&farm) {
            Some(members) => members.iter().copied().filter(in_tier).collect(),
            None => [px].into_iter().filter(in_tier).collect(),
        }
    }

    pub(super) fn tier_members(&self, sx: Sx, region: RegionId, tier: u32) -> Vec<Px> {
        self.streams
            .get(&sx)
            .and_then(|s| s.tiers.get(&(region, tier)))
            .map(|t| t.active.iter().collect())
            .unwrap_or_default()
    }

    /// The predicted login and logoff rates of `px` for `sx` ([0064]): the ones it reports if
    /// it decides for itself (one predictor per decision, DECIDERS.md), else the core's own.
    pub(super) fn pair_rates(&mut self, sx: Sx, px: Px) -> (f64, f64) {
        if self.proxies[px].decides {
            // A rate on the wire may be anything: not a number or negative counts as none.
            return self.pair(sx, px).map_or((0.0, 0.0), |p| {
                (sane_reported(p.reported.0), sane_reported(p.reported.1))
            });
        }
        let (w, sm) = (self.window, self.smoothing);
        // Not `pair_mut`: catching a predictor up changes no load, so the machine is not noted
        // as touched (a DISTRIBUTE reads the rates of its whole tier).
        match self.streams.get_mut(&sx).and_then(|s| s.pairs.get_mut(&px)) {
            Some(p) => (p.login.rate(w, &sm), p.logoff.rate(w, &sm)),
            None => (0.0, 0.0),
        }
    }
}
