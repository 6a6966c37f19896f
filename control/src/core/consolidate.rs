//! CONSOLIDATE ([0055], [0062]–[0063]): a proxy in the contraction phase with little load hands
//! its children to the most recently activated proxy of its tier.

use super::*;

impl Coordinator {
    pub(super) fn consolidate(&mut self, sx: Sx, px: Px) {
        let name = self.sname(sx);
        let id = self.pid(px);
        let Some(p) = self.pair(sx, px) else { return };
        if p.tier == 0 {
            return;
        }
        let (region, tier, farm, phase, load, reported) =
            (p.region, p.tier, p.farm, p.phase, p.load(), p.reported);
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
        // [0062] [0055] the predicted rates and the minimum threshold: checked by the proxy
        // itself when it decides (it sent its heartbeat, with this load, just before), else here
        // with the core's own predictor (the rates the proxy reports while that has seen
        // nothing). One decider per decision (DECIDERS.md).
        if !self.proxies[px].decides {
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
                    format!(
                        "load {load} above the minimum threshold {min_threshold} [0033] [0055]"
                    ),
                );
                return;
            }
        }
        // [0042] a farm is deactivated together.
        let group = self.farm_group(sx, px, farm, tier, region);
        let others: Vec<Px> = self
            .tier_members(sx, region, tier)
            .into_iter()
            // A proxy being drained goes idle once empty: no place to move viewers to.
            .filter(|q| {
                !group.contains(q)
                    && self.proxies[*q].alive
                    && self.pair(sx, *q).is_some_and(|p| p.draining_to.is_none())
            })
            .collect();
        if others.is_empty() {
            // [0055] the only proxy of its tier: ignored.
            ignore(self, "last proxy of its tier [0055]".into());
            return;
        }
        // [0063] no new server needed within sp, room in the rest.
        let group_load: u64 = group
            .iter()
            // Children on their way (standbys, viewers sent or moved there) move too.
            .map(|&q| {
                u64::from(
                    self.pair(sx, q)
                        .map_or(0, |p| p.load().saturating_add(p.reserved())),
                )
            })
            .sum();
        let room: u64 = others.iter().map(|&q| u64::from(self.room(sx, q))).sum();
        let (tlin, tloff) = self.tier_rates(sx, region, tier);
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
        let margin: BTreeMap<Px, u32> = order.iter().map(|&q| (q, self.margin(sx, q))).collect();
        let mut plan = Vec::new();
        for &g in &group {
            let gp = self.pair(sx, g).expect("group member active");
            let need = gp.load().saturating_add(gp.reserved());
            if need == 0 {
                plan.push((g, None));
                continue;
            }
            // A target that keeps the margin free first ([0030] hysteresis): one filled to Max_s
            // asks for DISTRIBUTE at once, undoing the CONSOLIDATE; else any with room.
            let keeps_margin = order
                .iter()
                .find(|q| free[*q] >= need.saturating_add(margin[*q]));
            let Some(&t) = keeps_margin.or_else(|| order.iter().find(|q| free[*q] >= need)) else {
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
}
