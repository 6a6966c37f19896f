//! Rebuilding the view from re-registrations after a PNC restart ([0031]).

use super::*;

impl Coordinator {
    pub(super) fn rebuild(&mut self, px: Px, st: StreamState) {
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
    pub(super) fn apply_rebuild(&mut self, sx: Sx, px: Px, st: StreamState) {
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
            .map(|&(r, _)| r)
            .unwrap_or(self.proxies[px].region);
        let tier = st.tier.max(1);
        let w = self.window;
        let seq = self.next_seq;
        self.next_seq += 1;
        let farm = self.next_farm_id();
        // A re-registration's count is capped like a heartbeat's (issue 7, defect 3): no more
        // viewers than the connections its machine has free.
        let rec = &self.proxies[px];
        let viewers = st
            .viewers
            .min(rec.capacity.connections.saturating_sub(rec.connections));
        let standby = viewers == 0 && st.children.is_empty();
        let s = self.streams.get_mut(&sx).expect("stream exists");
        s.pairs.insert(
            px,
            Pair {
                tier,
                region,
                phase: if st.accepting {
                    Phase::Expansion
                } else {
                    Phase::Contraction
                },
                accepting: st.accepting,
                standby,
                viewers,
                children: SmallSet::default(),
                pending: SmallSet::default(),
                expected: Expected::default(),
                parents: Vec::new(),
                farm,
                seq,
                activated_at: self.now,
                distribute_served: !st.accepting,
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
        s.farms.insert(farm, vec![px]);
        self.tier_changed(sx, region, tier);
        self.proxies[px].streams.insert(sx);
        self.account(sx, px, i64::from(viewers));
        self.link_reported(sx, px, &st);
        let name = self.sname(sx);
        self.log(
            Rule::Rebuild,
            Some(&name),
            Some(id),
            format!(
                "rebuilt from re-registration: tier {tier} in {region_name}, {} viewers, parents {}, children {}",
                st.viewers,
                id_list(st.parents.iter().copied()),
                id_list(st.children.iter().copied()), region_name = self.regions.name(region)),
        );
    }

    /// Link a re-registered pair with its reported parents and children that are known.
    pub(super) fn link_reported(&mut self, sx: Sx, px: Px, st: &StreamState) {
        let joined = !self.pair(sx, px).is_some_and(|p| p.standby);
        // A proxy has at most `redundant_parents` parents ([0029]); a longer list is a broken
        // report and cannot make the PNC keep more.
        // The origin (tier 0) has none.
        let tier = self.pair(sx, px).map_or(0, |p| p.tier);
        let k = if tier == 0 {
            0
        } else {
            self.config.redundant_parents.max(1) as usize
        };
        for pid in st.parents.iter().take(k) {
            match self.by_id.get(pid) {
                Some(&qx) if self.pair(sx, qx).is_some() => {
                    self.link(sx, qx, px, joined);
                }
                _ => {
                    if let Some(s) = self.streams.get_mut(&sx) {
                        let waiting = s.awaiting_parent.entry(*pid).or_default();
                        if !waiting.iter().any(|&(c, _)| c == px) {
                            waiting.push((px, joined));
                        }
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
    pub(super) fn settle_rebuilt_phase(&mut self, sx: Sx, px: Px) {
        let Some(p) = self.pair(sx, px) else { return };
        if p.tier == 0 || p.tier >= self.bottom_tier(sx, p.region) {
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
}
