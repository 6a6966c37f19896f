//! MonitorList ([0053]): a proxy of tier k+1 probes the active proxies of tier k of its region
//! (tier 1: the origin) and reports a lost link with LinkDowngrade ([0066]). The list is sent at
//! activation and again, at the end of the event, to every proxy of tier k+1 whenever tier k
//! gained or lost a proxy (activation, idling, consolidation, a crash; issue 7, defect 6).

use super::*;

impl Coordinator {
    /// The active proxies of (`region`, `tier`) of `sx` changed.
    pub(super) fn tier_changed(&mut self, sx: Sx, region: RegionId, tier: u32) {
        self.next_tier_version += 1;
        let version = self.next_tier_version;
        if let Some(t) = self
            .streams
            .get_mut(&sx)
            .and_then(|s| s.tiers.get_mut(&(region, tier)))
        {
            t.version = version;
        }
        self.monitor_dirty.insert((sx, region, tier));
    }

    /// Version of the list `px` (active for `sx`) should monitor: 0 in tier 1 (the origin's
    /// list never changes).
    fn monitored_version(&self, sx: Sx, px: Px) -> Option<u64> {
        let s = self.streams.get(&sx)?;
        let p = s.pairs.get(&px)?;
        if p.tier <= 1 {
            return Some(0);
        }
        Some(
            s.tiers
                .get(&(p.region, p.tier - 1))
                .map_or(0, |t| t.version),
        )
    }

    /// Send `px` the proxies it monitors for `sx` now.
    pub(super) fn send_monitor_list(&mut self, sx: Sx, px: Px) {
        let Some(version) = self.monitored_version(sx, px) else {
            return;
        };
        let Some(p) = self.pair(sx, px) else { return };
        let (region, tier) = (p.region, p.tier);
        let peers: Vec<Peer> = if tier <= 1 {
            vec![self.peer(self.streams[&sx].origin)]
        } else {
            self.tier_members(sx, region, tier - 1)
                .into_iter()
                .map(|q| self.peer(q))
                .collect()
        };
        if let Some(p) = self.streams.get_mut(&sx).and_then(|s| s.pairs.get_mut(&px)) {
            p.monitor_version = version;
        }
        let stream = self.sname(sx);
        self.send(px, PncMsg::MonitorList { stream, peers });
    }

    /// After an event: every proxy below a tier that changed, and whose list is not the
    /// current one yet, gets it.
    pub(super) fn refresh_monitor_lists(&mut self) {
        while let Some((sx, region, tier)) = self.monitor_dirty.pop_first() {
            for px in self.tier_members(sx, region, tier + 1) {
                let seen = self.pair(sx, px).map(|p| p.monitor_version);
                if seen.is_some() && seen != self.monitored_version(sx, px) {
                    self.send_monitor_list(sx, px);
                }
            }
        }
    }
}
