//! A source's overlay: its regions and tiers, recomputed from [`super::tiering`] when proxies
//! join or leave ([0024], [0049]).

use super::*;

/// Key of a source's overlay: the source name and the proxy it publishes at.
pub(super) type OverlayKey = (String, Px);

/// A source's overlay: regions and tiers.
#[derive(Debug, Default)]
pub(super) struct Overlay {
    pub(super) tiers: tiering::Tiers<RegionId>,
    /// The members of `tiers` as the core's indices: placement walks a tier of thousands at
    /// each activation, without a lookup of each id.
    pub(super) members: BTreeMap<RegionId, Vec<Vec<Px>>>,
    pub(super) tier_of: HashMap<ProxyId, (RegionId, u32)>,
    /// The first region by name that has proxies: where viewers of a region without any go.
    pub(super) first_region: Option<RegionId>,
    pub(super) dirty: bool,
    /// Predictor window of the last computation: at most one per window, so that thousands of
    /// proxies registering at once do not recompute the tiers thousands of times.
    pub(super) computed_in: Option<u64>,
}

impl Coordinator {
    pub(super) fn mark_overlays_dirty(&mut self) {
        for o in self.overlays.values_mut() {
            o.dirty = true;
        }
    }

    /// Distance between two proxies: a reported RTT in either direction (ms), else the
    /// configured coordinates.
    pub(super) fn distance(&self, a: Px, b: Px) -> Option<f64> {
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
    pub(super) fn ensure_overlay(&mut self, key: &OverlayKey) {
        let needs = self
            .overlays
            .get(key)
            .is_none_or(|o| o.dirty && o.computed_in != Some(self.window));
        if !needs {
            return;
        }
        let origin = key.1;
        let mut cands = Vec::new();
        for (px, p) in self.proxies.iter() {
            if px == origin || !p.alive {
                continue;
            }
            let st = self.settings.get(&p.id);
            let pin = st.and_then(|s| s.source_tiers.get(&key.0).copied().or(s.tier));
            cands.push(tiering::Candidate {
                id: p.id,
                region: p.region,
                connections: p.capacity.connections,
                distance: self.distance(px, origin),
                pin,
            });
        }
        let tiers = tiering::compute(&cands, self.config.tier_spread_ms, self.config.max_tiers);
        let mut tier_of = HashMap::new();
        // Regions by name: the log reads in name order, and `first_region` is the first by name.
        let mut by_name: Vec<(&str, RegionId, usize)> = Vec::new();
        for (&region, ts) in &tiers {
            for (i, t) in ts.iter().enumerate() {
                for id in t {
                    tier_of.insert(*id, (region, i as u32 + 1));
                }
            }
            by_name.push((self.regions.name(region), region, ts.len()));
        }
        by_name.sort();
        let first_region = by_name.first().map(|r| r.1);
        let summary: Vec<String> = by_name
            .iter()
            .map(|(name, _, n)| format!("{name}: {n} tiers"))
            .collect();
        // Every member is a registered proxy (`cands` are), and an id keeps its index.
        let members = tiers
            .iter()
            .map(|(&region, ts)| {
                let ts = ts
                    .iter()
                    .map(|t| {
                        t.iter()
                            .filter_map(|id| self.by_id.get(id).copied())
                            .collect()
                    })
                    .collect();
                (region, ts)
            })
            .collect();
        let changed = self.overlays.get(key).is_none_or(|o| o.tiers != tiers);
        self.overlays.insert(
            key.clone(),
            Overlay {
                tiers,
                members,
                tier_of,
                first_region,
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
}
