//! Viewer redirection: which proxy a new viewer should use ([0033], [0042]).

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
        let mut cands = self.accepting_with_room(sx, region_id, bottom);
        if cands.is_empty() {
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
                self.distribute(
                    sx,
                    last,
                    "no accepting proxy with room for a new viewer [0033]",
                );
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
            cands = self.accepting_with_room(sx, region_id, bottom);
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
            .and_then(|s| s.tiers.get_mut(&(region_id, bottom)))
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

    pub(super) fn accepting_with_room(&self, sx: Sx, region: RegionId, tier: u32) -> Vec<Px> {
        self.tier_members(sx, region, tier)
            .into_iter()
            .filter(|&q| {
                self.proxies[q].alive
                    && self.pair(sx, q).is_some_and(|p| p.accepting)
                    && self.room(sx, q) >= 1
            })
            .collect()
    }
}
