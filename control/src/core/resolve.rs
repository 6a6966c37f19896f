//! Viewer redirection: which proxy a new viewer should use ([0033], [0042]).

use super::distribute::Served;
use super::state::{margin_for, max_s_of};
use super::tier_upkeep::{put_share, share};
use super::*;

impl Coordinator {
    pub(super) fn resolve(
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
        let Some(overlay) = self.overlays.get(&key) else {
            answer(
                self,
                region,
                None,
                "the source's overlay has no proxy".into(),
            );
            return;
        };
        let known = self
            .regions
            .get(&region)
            .filter(|r| overlay.tiers.contains_key(r));
        let region_id = match (known, overlay.first_region) {
            (Some(r), _) => r,
            // No proxy of the source's overlay in the viewer's region: the first region that
            // has some (a choice: the seed assumes every region has proxies, [0049]).
            (None, Some(first)) => {
                region = self.regions.name(first).to_string();
                first
            }
            (None, None) => {
                answer(
                    self,
                    region,
                    None,
                    "the source's overlay has no proxy".into(),
                );
                return;
            }
        };
        let bottom = self.bottom_tier(sx, region_id);
        self.refresh_accepting();
        let mut accepting = self.accepting_len(sx, region_id, bottom);
        if accepting == 0 {
            let members = self.tier_members(sx, region_id, bottom);
            let no_path = self
                .streams
                .get(&sx)
                .is_none_or(|s| !s.pairs.values().any(|p| p.region == region_id));
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
                self.activate(sx, region_id, bottom, farm, "start of the stream [0032]");
            } else if let Some(&last) = members
                .iter()
                .max_by_key(|&&q| self.pair(sx, q).map_or(0, |p| p.seq))
            {
                if self.pair(sx, last).is_some_and(|p| !p.distribute_served) {
                    self.distribute(
                        sx,
                        last,
                        "no accepting proxy with room for a new viewer [0033]",
                    );
                    self.refresh_accepting();
                }
                if self.accepting_len(sx, region_id, bottom) == 0 {
                    // Every DISTRIBUTE of the tier was served and none left a proxy taking a
                    // viewer (the new proxy went idle, or its room went to others): a viewer is
                    // never refused while the region has room, so the tier gets capacity as if
                    // asked afresh: a proxy with room back into expansion ([0060]–[0061]), else
                    // an idle one activated ([0059]).
                    self.log(
                        Rule::Distribute,
                        Some(&self.sname(sx)),
                        None,
                        format!(
                            "no proxy of {region} tier {bottom} takes a viewer and its DISTRIBUTEs were served: capacity added for the tier [0033] [0059]"
                        ),
                    );
                    self.add_capacity(sx, region_id, bottom, &Served::default(), None);
                }
            } else {
                let farm = self.next_farm_id();
                self.activate(
                    sx,
                    region_id,
                    bottom,
                    farm,
                    "no proxy left in the viewers' tier",
                );
            }
            self.refresh_accepting();
            accepting = self.accepting_len(sx, region_id, bottom);
        }
        if accepting == 0 {
            answer(
                self,
                region,
                None,
                "no proxy with room can be activated".into(),
            );
            return;
        }
        // [0042] round-robin across the accepting proxies (a farm), in activation order; under
        // `Growth::PredictiveFill` across those that have had ΔT to start ([0058]: ΔT is the
        // time to activate a proxy), else across the oldest farm, so that viewers go to a
        // newer proxy only when no older one has room.
        let (pool, pool_why) = match self.started_accepting(sx, region_id, bottom, accepting) {
            Some((n, true)) => (n, "started (activated ΔT ago) and "),
            Some((n, false)) => (n, "oldest-activated (none started yet) and "),
            None => (accepting, ""),
        };
        let Some(rec) = self
            .streams
            .get_mut(&sx)
            .and_then(|s| s.tiers.get_mut(&(region_id, bottom)))
        else {
            answer(self, region, None, "no tier".into());
            return;
        };
        let Some(px) = rec.active.nth_accepting((rec.rr % u64::from(pool)) as u32) else {
            answer(self, region, None, "no tier".into());
            return;
        };
        rec.rr += 1;
        // The viewer counts against the proxy's room from now on, not from its next report:
        // a crowd resolved between two heartbeats never overfills it (`reservation`).
        let now = self.now;
        if let Some(p) = self.pair_mut(sx, px) {
            p.expected.add(now, 1);
        }
        let peer = self.peer(px);
        answer(
            self,
            region,
            Some(peer),
            format!("round-robin over {pool} {pool_why}accepting proxies [0033] [0042]"),
        );
    }

    /// Proxies of (`region`, `tier`) that take a new viewer now (as of the last refresh).
    fn accepting_len(&self, sx: Sx, region: RegionId, tier: u32) -> u32 {
        self.streams
            .get(&sx)
            .and_then(|s| s.tiers.get(&(region, tier)))
            .map_or(0, |t| t.active.accepting_len())
    }

    /// Whether `px` takes a new viewer of `sx` now: accepting, alive, with room (the plain
    /// definition `refresh_accepting` computes faster; the debug check compares them).
    #[cfg(debug_assertions)]
    fn takes_a_viewer(&self, sx: Sx, px: Px) -> bool {
        self.proxies[px].alive
            && self.pair(sx, px).is_some_and(|p| p.accepting)
            && self.room(sx, px) >= 1
    }

    /// Bring the index of the proxies that take a new viewer, and each tier's sums for
    /// DISTRIBUTE (`tier_sums`), up to date for every proxy touched since the last refresh, on
    /// each of its streams: a change on one machine (load, reservations, capacity, liveness)
    /// changes its room for every stream it carries ([0047]).
    pub(super) fn refresh_accepting(&mut self) {
        let mut touched = std::mem::take(&mut self.touched);
        let fill = self.config.growth == Growth::PredictiveFill;
        let mut filling: Vec<(Sx, Px, u32)> = Vec::new();
        let (hysteresis, dt) = (self.config.hysteresis, self.delta_t_secs());
        self.proxies.take_touched(&mut touched);
        for &px in &touched {
            // One pass for the machine's reservations, one to decide each of its streams: the
            // same Max_s as `takes_a_viewer`, without summing the other streams per stream.
            // Deciding a stream changes nothing another stream's Max_s reads, so each is
            // decided and written with one lookup of its pair.
            let rec = &self.proxies[px];
            // A machine with one stream (the usual case) has no other stream's reservations.
            let reserved: u32 = if rec.streams.len() > 1 {
                rec.streams
                    .iter()
                    .filter_map(|o| self.streams.get(o)?.pairs.get(&px).map(Pair::reserved))
                    .sum()
            } else {
                0
            };
            let (alive, decides) = (rec.alive, rec.decides);
            for &sx in &rec.streams {
                let Some(StreamRec {
                    pairs, tiers, info, ..
                }) = self.streams.get_mut(&sx)
                else {
                    continue;
                };
                let Some(p) = pairs.get_mut(&px) else {
                    continue;
                };
                let max_s = max_s_of(
                    rec,
                    p.load(),
                    info.bitrate_bps,
                    reserved.saturating_sub(p.reserved()),
                );
                let room = max_s.saturating_sub(p.load().saturating_add(p.reserved()));
                let yes = alive && p.accepting && room >= 1;
                if fill && p.served_and_accepting() {
                    filling.push((sx, px, room));
                }
                let margin = margin_for(hysteresis, max_s);
                let new = share(p, alive, decides, room, max_s, margin, dt);
                put_share(p, tiers, px, new);
                if p.indexed_accepting != yes {
                    p.indexed_accepting = yes;
                    if let Some(t) = tiers.get_mut(&(p.region, p.tier)) {
                        t.active.set_accepting(px, yes);
                    }
                }
            }
        }
        self.touched = touched;
        if !filling.is_empty() {
            self.stop_filled(&filling);
            // The proxies stopped leave the index of those taking a viewer.
            self.refresh_accepting();
        }
    }

    /// The index agrees with a scan of every tier (debug builds, after every event).
    #[cfg(debug_assertions)]
    pub(super) fn check_accepting_index(&self) {
        for (&sx, s) in &self.streams {
            for t in s.tiers.values() {
                let scan: Vec<Px> = t
                    .active
                    .iter()
                    .filter(|&q| self.takes_a_viewer(sx, q))
                    .collect();
                let index: Vec<Px> = (0..t.active.accepting_len())
                    .filter_map(|k| t.active.nth_accepting(k))
                    .collect();
                assert_eq!(scan, index, "accepting index of stream {}", s.name);
            }
        }
    }
}
