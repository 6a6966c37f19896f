//! Activation of an idle proxy for a stream: placement ([0032]) and the choice of its parents
//! ([0029], [0035], [0044]).

use super::*;

impl Coordinator {
    /// Activate one idle proxy of (`region`, `tier`) for `sx` with parents in the tier above
    /// (activating one there too if none has room: the full parent's own DISTRIBUTE, [0035]).
    pub(super) fn activate(
        &mut self,
        sx: Sx,
        region: RegionId,
        tier: u32,
        farm: FarmId,
        why: &str,
    ) -> Option<Px> {
        let key = self.streams.get(&sx)?.overlay.clone();
        self.ensure_overlay(&key);
        let name = self.sname(sx);
        let origin = self.streams.get(&sx)?.origin;
        let members: &[Px] = self
            .overlays
            .get(&key)
            .and_then(|o| o.members.get(&region))
            .and_then(|t| t.get(tier.checked_sub(1)? as usize))
            .map_or(&[], Vec::as_slice);
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
            chosen = self.most_free_idle(sx, members, origin, bitrate);
        }
        for pass in [true, false] {
            if chosen.is_some() {
                break;
            }
            chosen = members.iter().find_map(|&px| {
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
                format!(
                    "no idle proxy with room in {region_name} tier {tier} ({why})",
                    region_name = self.regions.name(region)
                ),
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
                format!(
                    "no parent with room above {region_name} tier {tier}; not activated ({why})",
                    region_name = self.regions.name(region)
                ),
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
                region,
                phase: Phase::Expansion,
                accepting,
                standby: true,
                viewers: 0,
                children: SmallSet::default(),
                pending: SmallSet::default(),
                expected: Expected::default(),
                parents: Vec::new(),
                farm,
                seq,
                activated_at: now,
                distribute_served: false,
                draining_to: None,
                redirect_to: Vec::new(),
                login: Predictor::new(w),
                logoff: Predictor::new(w),
                logoff_bound: 0.0,
                reported: (0.0, 0.0),
                monitor_version: 0,
                indexed_accepting: false,
                share: Share::default(),
            },
        );
        s.tiers.entry((region, tier)).or_default().admit(px, w);
        s.farms.entry(farm).or_default().push(px);
        self.tier_changed(sx, region, tier);
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
        self.send_monitor_list(sx, px);
        let id = self.pid(px);
        let pids = id_list(parent_peers.iter().map(|p| p.id));
        self.log(
            Rule::Distribute,
            Some(&name),
            Some(id),
            format!(
                "activated in {region_name} tier {tier} as a standby, parents {pids}{} ({why}) [0054]",
                if accepting { ", accepting viewers" } else { "" }, region_name = self.regions.name(region)),
        );
        Some(px)
    }

    /// `Placement::MostFree`: the idle member whose machine has the most free connections
    /// (bits/s included), ties to the lowest id; exact Max_s checked on the winner.
    pub(super) fn most_free_idle(
        &self,
        sx: Sx,
        members: &[Px],
        origin: Px,
        bitrate: u64,
    ) -> Option<Px> {
        let mut best: Option<(u64, std::cmp::Reverse<ProxyId>, Px)> = None;
        for &px in members {
            // The machines' rooms from the dense copy (`Room`), not their records.
            let room = self.proxies.room(px);
            if px == origin || !room.alive {
                continue;
            }
            let mut free = u64::from(room.connections);
            if let Some(by_bps) = room.bps.checked_div(bitrate) {
                free = free.min(by_bps);
            }
            let key = (free, std::cmp::Reverse(room.id), px);
            // Active for the stream: its machine lists it (`audit`), no lookup in the pairs.
            // Asked last, of a machine that would win: its record is one more memory access.
            if free > 0
                && best.is_none_or(|b| (key.0, key.1) > (b.0, b.1))
                && !self.proxies[px].streams.contains(&sx)
            {
                best = Some(key);
            }
        }
        let (_, _, px) = best?;
        (self.max_s(sx, px) >= 1).then_some(px)
    }

    /// Parents for a new proxy of (`region`, `tier`): the most recently activated proxies of the
    /// tier above that have room ([0035]: P32's parent is P21), k of them when redundant parents
    /// are configured ([0029], [0044]); the origin for tier 1.
    pub(super) fn choose_parents(&mut self, sx: Sx, region: RegionId, tier: u32) -> Vec<Px> {
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
                "the origin has no room for another tier-1 proxy [0032]".into(),
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
                    "{} parent(s) with room in {region_name} tier {} for {k} wanted [0029] [0044]",
                    cands.len(),
                    tier - 1,
                    region_name = self.regions.name(region)
                ),
            );
        }
        cands.truncate(k);
        cands
    }
}
