//! Start and end of a stream: a source announced at its origin ([0032]), a tree torn down.

use super::*;

impl Coordinator {
    pub(super) fn announce(&mut self, px: Px, name: String, info: SourceInfo) {
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
        // A stream needs at least one of its origin's connections to reach anyone: an origin
        // announcing more streams than it has connections is broken or hostile, and cannot
        // grow the PNC without bound (issue 7).
        let rec = &self.proxies[px];
        let published = rec
            .streams
            .iter()
            .filter(|sx| self.streams.get(sx).is_some_and(|s| s.origin == px))
            .count();
        if published >= rec.capacity.connections.max(1) as usize {
            let why = format!(
                "stream announce refused: {published} streams already published here, capacity {} connections",
                rec.capacity.connections
            );
            self.protocol_error(px, &name, &why);
            return;
        }
        let sx = Sx(self.next_stream);
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
                // The origin serves no region (tier 0).
                region: self.regions.intern(""),
                phase: Phase::Expansion,
                accepting: false,
                standby: false,
                viewers: 0,
                children: SmallSet::default(),
                pending: SmallSet::default(),
                expected: Expected::default(),
                parents: Vec::new(),
                farm: 0,
                seq,
                activated_at: self.now,
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

    pub(super) fn teardown(&mut self, sx: Sx, why: &str) {
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
}
