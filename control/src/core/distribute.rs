//! DISTRIBUTE ([0059]–[0061]): the capacity check over sp, regrouping by MIN_s, and farm sizing
//! from the arrival rate ([0039]–[0042]).

use super::*;

/// The members of the farm whose DISTRIBUTE this is ([0042]), as `add_capacity` reads them: left
/// out of the tier's room and of the regroup.
#[derive(Default)]
pub(super) struct Served {
    /// Sorted: a regroup asks of each member it visits whether it is one of them.
    members: Vec<Px>,
    /// Σ room of those alive and not being drained (their part of `TierSums::room`).
    room: u64,
}

impl Served {
    fn contains(&self, q: Px) -> bool {
        self.members.binary_search(&q).is_ok()
    }
}

impl Coordinator {
    pub(super) fn distribute(&mut self, sx: Sx, px: Px, why: &str) {
        let name = self.sname(sx);
        let id = self.pid(px);
        let Some(p) = self.pair(sx, px) else { return };
        let (region, tier, farm, served) = (p.region, p.tier, p.farm, p.distribute_served);
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
        // The shares of the machines this event touched, read below for the farm's room.
        self.refresh_accepting();
        // [0042] a DISTRIBUTE from any farm member is the farm's: one pass over it for its
        // room, its members in order and those not served yet.
        // The members as `farm_group` gives them: the farm's in this tier, else `px` alone.
        let mut group = Vec::new();
        let mut served = Served::default();
        let mut unsettled = Vec::new();
        if let Some(s) = self.streams.get(&sx) {
            let alone = [px];
            let members = s.farms.get(&farm).map_or(&alone[..], Vec::as_slice);
            group.reserve(members.len());
            for &q in members {
                let Some(gp) = s.pairs.get(&q) else { continue };
                if (gp.tier, gp.region) != (tier, region) {
                    continue;
                }
                group.push(q);
                if gp.share.counted {
                    served.room += u64::from(gp.share.room);
                }
                // Members served already are left untouched: a farm of many costs no refresh
                // of each machine at every DISTRIBUTE of one of them.
                if !(gp.phase == Phase::Contraction && gp.distribute_served && !gp.accepting) {
                    unsettled.push(q);
                }
            }
        }
        served.members = group.clone();
        served.members.sort_unstable();
        let gids = id_list(group.iter().map(|&q| self.pid(q)));
        self.log(
            Rule::Distribute,
            Some(&name),
            Some(id),
            format!(
                "DISTRIBUTE from farm {gids} in {region_name} tier {tier}: {why}",
                region_name = self.regions.name(region)
            ),
        );
        let Some(new_accepting) = self.add_capacity(sx, region, tier, &served, Some(px)) else {
            // Nothing to add: no idle proxy, and no other proxy of the tier with room beyond the
            // margin. Stopping the farm now would only flap its phase: it would be put back into
            // expansion at the next viewer, refill, and ask again. It stays in expansion, takes
            // viewers as its own leave, and is served when capacity appears (the next viewer
            // that finds no proxy with room asks again, `resolve`).
            self.counters.distributes_unserved += 1;
            self.log(
                Rule::Distribute,
                Some(&name),
                Some(id),
                "no capacity to add (no idle proxy, no room beyond the margin): phases unchanged [0059]"
                    .into(),
            );
            return;
        };
        let fill = self.config.growth == Growth::PredictiveFill;
        for q in unsettled {
            let Some(gp) = self.pair_mut(sx, q) else {
                continue;
            };
            // [0030] a served proxy moves to the contraction phase, takes no new viewers (under
            // `Growth::PredictiveFill` only once it is full: `stop_filled`), and sends them to
            // the capacity just added.
            gp.phase = Phase::Contraction;
            gp.distribute_served = true;
            if gp.accepting && !fill {
                let to = new_accepting.iter().copied().filter(|&n| n != q).collect();
                self.stop_accepting(sx, q, to);
            }
        }
    }

    /// The capacity a DISTRIBUTE adds to (`region`, `tier`) of `sx`: [0059]'s check over sp,
    /// then regrouping the tier's other proxies by MIN_s ([0060]–[0061]) if their room
    /// suffices, else activating idle proxies ([0039]–[0041], [0059]). `served` is the group
    /// whose DISTRIBUTE this is (none when the core itself finds no proxy of the viewers' tier
    /// taking a viewer). The proxies of the viewers' tier that take viewers because of it, or
    /// `None` if it added nothing.
    pub(super) fn add_capacity(
        &mut self,
        sx: Sx,
        region: RegionId,
        tier: u32,
        served: &Served,
        requester: Option<Px>,
    ) -> Option<Vec<Px>> {
        let name = self.sname(sx);
        let id = requester.map(|q| self.pid(q));
        let reactive = self.config.growth == Growth::OneAtATime;
        // The tier's sums for what this event changed so far: read from them, not walked.
        self.refresh_accepting();
        // [0059] capacity check over sp (none when only reacting: one proxy for the full one).
        let (lin, loff) = self.tier_rates(sx, region, tier);
        let demand = if reactive {
            0.0
        } else {
            ((lin - loff) * self.sp_secs()).max(0.0)
        };
        // The room of the tier's other proxies, alive and not drained ([0063] a proxy
        // CONSOLIDATE is draining goes idle: it adds no capacity).
        let available = self.tier_room(sx, region, tier) - served.room;
        let unit = match requester {
            Some(q) => u64::from(self.max_s(sx, q).max(1)),
            None => self
                .newest_other(sx, region, tier, served)
                .map_or(1, |q| u64::from(self.max_s(sx, q).max(1))),
        };
        let mut new_accepting: Vec<Px> = Vec::new();
        let sufficient = !reactive && available > 0 && demand <= available as f64;
        let mut regrouped = false;
        let mut added = false;
        if sufficient {
            // [0060] [0061] enough capacity: regroup existing proxies by MIN_s.
            if let Some(members) = self.regroup(sx, region, tier, served, lin) {
                added = true;
                regrouped = true;
                let l = members.len();
                self.regroup_onto(sx, region, tier, &members, &mut new_accepting, id, |mids| {
                    format!(
                        "capacity over sp suffices (room {available} ≥ demand {demand:.1}); group of l = {l} by MIN_s: {mids} [0060] [0061]"
                    )
                });
            }
        }
        if !regrouped {
            // [0059] add the minimum m over sp; [0039]–[0041] farm size; activate the larger.
            let short = (demand - available as f64).max(0.0);
            let m = ((short / unit as f64).ceil() as u64).max(1);
            // [0039] the arrival rate is computed "when the PNC receives a DISTRIBUTE message
            // from a proxy server": a farm consumed by arrivals. Capacity the core adds on its own
            // (a viewer found no proxy taking it, `requester` none) may follow a farm whose
            // members went idle at once: Number_of_Proxies_assigned over the microseconds since
            // would read as a crowd of millions a second and activate every idle proxy. There
            // the minimum m of [0059] alone decides, and the rate is left as it was.
            // Likewise a DISTRIBUTE from a proxy of another farm (an older one regrouped,
            // [0060]) says nothing of how fast the last farm filled: Number_of_Proxies_assigned
            // over the milliseconds since that farm's activation would again read as a crowd far
            // beyond the real one. The rate is the last farm's, measured at its DISTRIBUTE
            // ([0042]: a farm's DISTRIBUTE is one); the first DISTRIBUTE activates 1 either way.
            let from_last_farm = requester.is_some_and(|q| {
                let farm = self.pair(sx, q).map(|p| p.farm);
                self.streams
                    .get(&sx)
                    .and_then(|s| s.tiers.get(&(region, tier)))
                    .is_none_or(|t| t.sizing.last_farm.is_none() || t.sizing.last_farm == farm)
            });
            let n = if from_last_farm && !reactive {
                self.farm_size(sx, region, tier)
            } else {
                1
            };
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
                id,
                format!("activate {count}: {which}"),
            );
            let new_farm = self.next_farm_id();
            let mut activated = 0u32;
            for _ in 0..count {
                match self.activate(sx, region, tier, new_farm, "DISTRIBUTE [0059]") {
                    Some(q) => {
                        activated += 1;
                        added = true;
                        if self.pair(sx, q).is_some_and(|p| p.accepting) {
                            new_accepting.push(q);
                        }
                    }
                    // [0059] activate as many as possible.
                    None => break,
                }
            }
            if activated == 0 && available > 0 {
                // [0059] as many as possible: with no idle proxy left, the room the tier still
                // has takes the viewers (by MIN_s if a group exists, else all of it beyond the
                // margin). For a viewer waiting now (no requester) any room will do: a viewer
                // is never refused while the region has room.
                let members: Vec<Px> = match self.regroup(sx, region, tier, served, lin) {
                    Some(members) => members,
                    None => {
                        // Rare (no idle proxy left): a walk of the tier.
                        let mut members = Vec::new();
                        for c in self.others(sx, region, tier, served) {
                            let takes = match requester {
                                Some(_) => {
                                    self.predicted_room_from(sx, c.px, c.room)
                                        >= f64::from(self.margin_of(c.max_s))
                                }
                                None => c.room >= 1,
                            };
                            if takes && !self.filling(sx, c.px) {
                                members.push(c.px);
                            }
                        }
                        members
                    }
                };
                if members.is_empty() {
                    return None;
                }
                added = true;
                self.regroup_onto(sx, region, tier, &members, &mut new_accepting, id, |mids| {
                    format!(
                        "no idle proxy to activate: the tier's room {available} is used, group {mids} [0059] [0060] [0061]"
                    )
                });
            }
            self.farm_activated(sx, region, tier, new_farm, activated);
        }
        added.then_some(new_accepting)
    }

    /// Regrouped `members` of (`region`, `tier`) go back to the expansion phase; in the viewers'
    /// tier they take viewers again (StartAccepting) and are listed in `new_accepting`.
    fn back_to_expansion(
        &mut self,
        sx: Sx,
        region: RegionId,
        tier: u32,
        members: &[Px],
        new_accepting: &mut Vec<Px>,
    ) {
        let name = self.sname(sx);
        let bottom = self.bottom_tier(sx, region);
        for &q in members {
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
    }

    /// [0060] [0061] `members` take viewers again: counted, put back into expansion, logged
    /// with `why` (given the members' ids).
    #[allow(clippy::too_many_arguments)]
    fn regroup_onto(
        &mut self,
        sx: Sx,
        region: RegionId,
        tier: u32,
        members: &[Px],
        new_accepting: &mut Vec<Px>,
        requester: Option<ProxyId>,
        why: impl FnOnce(&str) -> String,
    ) {
        self.counters.regroups += 1;
        self.back_to_expansion(sx, region, tier, members, new_accepting);
        let mids = id_list(members.iter().map(|&q| self.pid(q)));
        let name = self.sname(sx);
        self.log(Rule::Regroup, Some(&name), requester, why(&mids));
    }

    /// The tier's proxies other than `served`, alive and not being drained, oldest first, with
    /// their room and Max_s (a walk of the tier).
    fn others(&self, sx: Sx, region: RegionId, tier: u32, served: &Served) -> Vec<Candidate> {
        self.tier_members(sx, region, tier)
            .into_iter()
            .filter(|&q| self.other_takes_part(sx, q, served))
            .map(|q| {
                let (room, max_s) = self.room_and_max_s(sx, q);
                Candidate { px: q, room, max_s }
            })
            .collect()
    }

    /// The most recently activated of the tier's proxies other than `served`, alive and not
    /// being drained.
    fn newest_other(&self, sx: Sx, region: RegionId, tier: u32, served: &Served) -> Option<Px> {
        self.streams
            .get(&sx)?
            .tiers
            .get(&(region, tier))?
            .active
            .iter()
            .rev()
            .find(|&q| self.other_takes_part(sx, q, served))
    }

    fn other_takes_part(&self, sx: Sx, q: Px, served: &Served) -> bool {
        !served.contains(q)
            && self.proxies[q].alive
            && self.pair(sx, q).is_some_and(|p| p.draining_to.is_none())
    }

    /// [0061] MIN_s = ⌊SysLinRate / (Loffrate_s + (Max_s − Load_s − margin)/ΔT)⌋ + 1 (∞ if the
    /// denominator is 0; the hysteresis margin is the core's, see `min_s`); l = the smallest
    /// size with |{s : MIN_s ≤ l}| ≥ l; members by ascending MIN_s, then most recently
    /// activated, among the tier's proxies other than `served`. `None` if no l exists.
    ///
    /// Without walking the tier: only a member with room beyond its margin has a finite MIN_s,
    /// and the tier keeps those ordered by an upper bound of the denominator and by activation
    /// (`tier_sums`). First l: visited by that bound from the largest, each bound gives a least
    /// MIN_s for every member not visited yet; once it reaches the l of the members visited,
    /// none of the rest has a MIN_s below l, so l is found and so is every member with MIN_s
    /// below l. Then the members with MIN_s = l that complete the group, most recent first.
    fn regroup(
        &mut self,
        sx: Sx,
        region: RegionId,
        tier: u32,
        served: &Served,
        sys_lin: f64,
    ) -> Option<Vec<Px>> {
        // No l exceeds the number of candidates.
        let n = self.candidate_count(sx, region, tier) as u64;
        // MIN_s of the members visited, ascending (∞ left out), and each visited member's.
        let mut sorted: Vec<u64> = Vec::new();
        let mut visited: BTreeMap<Px, Option<u64>> = BTreeMap::new();
        let mut l = None;
        // The served farm is left out of the walk: as the bounds only fall along it, a served
        // member where the walk would stop is followed by one where it stops too, or by none.
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut cursor = None;
        'walk: loop {
            let next = self.candidates_below(
                sx,
                region,
                tier,
                cursor,
                CHUNK,
                |q| !served.contains(q),
                &mut chunk,
            );
            for &(key, q) in &chunk {
                let least = least_min_s(sys_lin, key);
                let done = match l {
                    Some(l) => least >= l as f64,
                    None => least > n as f64,
                };
                if done {
                    break 'walk;
                }
                // A logoff bound taken at the member's last logoff is loose once some windows
                // have passed: tightened, the member moves down the order and is read where it
                // comes then, unless that is above where the walk resumes.
                if let (Some(at), Some(resume)) = (self.tighten_logoff_bound(sx, q), next)
                    && at < resume
                {
                    continue;
                }
                let m = self.min_s(sx, q, sys_lin);
                visited.insert(q, m);
                if let Some(m) = m {
                    let at = sorted.partition_point(|&x| x <= m);
                    sorted.insert(at, m);
                    // Only a smaller MIN_s than l can lower l.
                    if l.is_none_or(|l| m < l as u64) {
                        l = group_size(&sorted);
                    }
                }
            }
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        let Some(l) = l else {
            #[cfg(debug_assertions)]
            self.check_regroup(sx, region, tier, served, sys_lin, None);
            return None;
        };
        let mut group: Vec<(u64, std::cmp::Reverse<u64>, Px)> = Vec::new();
        for (&q, &m) in &visited {
            if let Some(m) = m.filter(|&m| m < l as u64) {
                group.push((m, std::cmp::Reverse(self.pair(sx, q)?.seq), q));
            }
        }
        // A member whose bound of the denominator allows no MIN_s below l + 1 has none equal to
        // l: not read.
        let at_most_l = LeastMinSAtMost::new(sys_lin, l);
        let mut cursor = None;
        'fill: while group.len() < l {
            let next = self.recent_below(
                sx,
                region,
                tier,
                cursor,
                CHUNK,
                // The bound first: it rules out most members without a search of `served`.
                |q, key| at_most_l.allows(key) && !served.contains(q),
                &mut chunk,
            );
            for &(seq, q) in &chunk {
                if group.len() == l {
                    break 'fill;
                }
                let m = match visited.get(&q) {
                    Some(&m) => m,
                    None => self.min_s(sx, q, sys_lin),
                };
                if m == Some(l as u64) {
                    group.push((l as u64, std::cmp::Reverse(seq), q));
                }
            }
            match next {
                Some(c) => cursor = Some(c),
                None => break,
            }
        }
        if group.len() < l {
            return None;
        }
        group.sort();
        let group: Vec<Px> = group.into_iter().map(|m| m.2).collect();
        #[cfg(debug_assertions)]
        self.check_regroup(sx, region, tier, served, sys_lin, Some(&group));
        Some(group)
    }

    /// The group `regroup` found is the one of the definition, over every member of the tier
    /// (debug builds).
    #[cfg(debug_assertions)]
    fn check_regroup(
        &mut self,
        sx: Sx,
        region: RegionId,
        tier: u32,
        served: &Served,
        sys_lin: f64,
        found: Option<&[Px]>,
    ) {
        let mut mins: Vec<(u64, std::cmp::Reverse<u64>, Px)> = Vec::new();
        for c in self.others(sx, region, tier, served) {
            let seq = self.pair(sx, c.px).map_or(0, |p| p.seq);
            if let Some(m) = self.exact_min_s(sx, c.px, c.room, c.max_s, sys_lin) {
                mins.push((m, std::cmp::Reverse(seq), c.px));
            }
        }
        mins.sort();
        let sorted: Vec<u64> = mins.iter().map(|m| m.0).collect();
        let walked: Option<Vec<Px>> =
            group_size(&sorted).map(|l| mins.into_iter().take(l).map(|m| m.2).collect());
        assert_eq!(
            found,
            walked.as_deref(),
            "regroup from the index and from a walk"
        );
    }

    /// [0061] MIN_s of `q` for a SysLinRate of `sys_lin`, from its room and Max_s as its tier's
    /// sums hold them; `None` for ∞ (no room beyond the margin, or not predicted to keep the
    /// margin over ΔT).
    fn min_s(&mut self, sx: Sx, q: Px, sys_lin: f64) -> Option<u64> {
        if self.filling(sx, q) {
            return None;
        }
        let dt = self.delta_t_secs().max(1e-9);
        let p = self.pair(sx, q)?;
        let (room, max_s) = (p.share.room, p.share.max_s);
        // Hysteresis ([0030], as the agent's trigger): back in expansion, a proxy must take at
        // least the margin before its own prediction would ask DISTRIBUTE again ([0054]), else
        // its phase flaps with every order. So the margin is kept out of the room MIN_s counts:
        // at the SysLinRate/l it will then receive, the member still has the margin free after
        // ΔT, and the group takes at least l × margin viewers before the next DISTRIBUTE (with
        // the whole room, a member could be due to ask again at once).
        let margin = self.margin_of(max_s);
        let usable = room.saturating_sub(margin);
        if usable == 0 {
            return None;
        }
        // Most members are decided by bounds of their rates, without catching their predictors
        // up (each is a loop over the windows since it was last read): the denominator lies
        // between (room − margin)/ΔT and that plus a bound of the logoff rate, and a bound of the
        // login rate keeps the margin over ΔT. The logoff rate's bound of the regroup order
        // first, then the predictors' bounds in this window (`Predictor::bound_in`): a rate
        // decays by 1−α a window after its last event, so a member whose last viewer came or
        // went a few windows ago reads as near its true rate.
        if !self.proxies[q].decides {
            let (w, sm) = (self.window, &self.smoothing);
            let base = f64::from(usable) / dt;
            let by_bound = |loff: f64| {
                let (lo, hi) = (sys_lin / (base + loff), sys_lin / base);
                (lo.floor() == hi.floor() && hi.floor() < u32::MAX as f64)
                    .then(|| lo.floor() as u64 + 1)
            };
            let m = by_bound(p.logoff_bound)
                .or_else(|| by_bound(p.logoff.bound_in(w, sm).min(p.logoff_bound)));
            if let Some(m) = m
                && f64::from(room) - p.login.bound_in(w, sm) * self.delta_t_secs()
                    >= f64::from(margin)
            {
                return Some(m);
            }
        }
        self.exact_min_s(sx, q, room, max_s, sys_lin)
    }

    /// MIN_s of `q` with room `room` and Max_s `max_s`, from its rates caught up.
    fn exact_min_s(&mut self, sx: Sx, q: Px, room: u32, max_s: u32, sys_lin: f64) -> Option<u64> {
        // A served proxy still filling takes viewers already: its room is in use, not to regroup.
        if self.filling(sx, q) {
            return None;
        }
        let dt = self.delta_t_secs().max(1e-9);
        let margin = self.margin_of(max_s);
        let usable = room.saturating_sub(margin);
        let (lin, loff) = self.pair_rates(sx, q);
        let denom = loff + f64::from(usable) / dt;
        if denom <= 0.0 || usable == 0 {
            return None;
        }
        let ahead = f64::from(room) - (lin - loff).max(0.0) * self.delta_t_secs();
        if ahead < f64::from(margin) {
            return None;
        }
        let min_s = (sys_lin / denom).floor();
        if !min_s.is_finite() || min_s >= (u32::MAX as f64) {
            return None;
        }
        Some(min_s as u64 + 1)
    }

    /// [0039]–[0041] Number_of_Proxies_assigned for the next farm of (stream, region, tier).
    /// `activated` proxies of (`region`, `tier`) were activated now as `farm`: the farm last
    /// activated, whose DISTRIBUTE measures the arrival rate ([0039]–[0041]).
    pub(super) fn farm_activated(
        &mut self,
        sx: Sx,
        region: RegionId,
        tier: u32,
        farm: FarmId,
        activated: u32,
    ) {
        if activated > 1 {
            self.counters.farms += 1;
        }
        if activated == 0 {
            return;
        }
        let now = self.now;
        if let Some(t) = self
            .streams
            .get_mut(&sx)
            .and_then(|s| s.tiers.get_mut(&(region, tier)))
        {
            t.sizing.last_time = Some(now);
            t.sizing.last_n = activated;
            t.sizing.last_farm = Some(farm);
        }
    }

    pub(super) fn farm_size(&mut self, sx: Sx, region: RegionId, tier: u32) -> u32 {
        let now = self.now;
        let fa = self.config.farm_alpha;
        let idle = self.idle_count(sx, region, tier);
        let Some(t) = self
            .streams
            .get_mut(&sx)
            .and_then(|s| s.tiers.get_mut(&(region, tier)))
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

    pub(super) fn idle_count(&self, sx: Sx, region: RegionId, tier: u32) -> u32 {
        let Some(s) = self.streams.get(&sx) else {
            return 0;
        };
        let Some(members) = self
            .overlays
            .get(&s.overlay)
            .and_then(|o| o.members.get(&region))
            .and_then(|t| t.get(tier.saturating_sub(1) as usize))
        else {
            return 0;
        };
        // Active for the stream: its machine lists it (`audit`), no lookup in the pairs.
        members
            .iter()
            .filter(|&&px| {
                let rec = &self.proxies[px];
                px != s.origin && rec.alive && !rec.streams.contains(&sx)
            })
            .count() as u32
    }
}

/// Members a regroup takes from its tier's orders at a time (`TierSums`).
const CHUNK: usize = 16;

/// The least MIN_s = ⌊SysLinRate / denominator⌋ + 1 that a member can have whose denominator is
/// at most the bound `key` (`Share::key`, the bits of a non-negative f64): division and floor
/// are monotone, so the member's own MIN_s, computed the same way, is no less.
fn least_min_s(sys_lin: f64, key: u64) -> f64 {
    let bound = f64::from_bits(key);
    if bound > 0.0 {
        (sys_lin / bound).floor() + 1.0
    } else {
        f64::INFINITY
    }
}

/// The bounds `key` (`Share::key`) whose `least_min_s` is at most `l`, told by one comparison
/// each instead of a division and a floor: the end of a regroup asks it of every member it
/// passes. For a SysLinRate ≥ 0 the least MIN_s only falls as the bound grows (division and
/// floor are monotone), so the keys up to +∞ that qualify are those from the first that does.
struct LeastMinSAtMost {
    sys_lin: f64,
    l: f64,
    /// The first key that qualifies (+∞'s bits + 1 if none); `None`: asked key by key.
    from: Option<u64>,
}

impl LeastMinSAtMost {
    fn new(sys_lin: f64, l: usize) -> Self {
        const INF: u64 = 0x7ff0_0000_0000_0000;
        let l = l as f64;
        let test = |key: u64| least_min_s(sys_lin, key) <= l;
        // The first key in [lo, hi] that qualifies, `test(hi)` given.
        let first = |mut lo: u64, mut hi: u64| {
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if test(mid) {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            hi
        };
        let from = (sys_lin >= 0.0).then(|| {
            // It changes within a few units in the last place of SysLinRate / l: searched there
            // first, then over the whole range if not found there.
            let hint = (sys_lin / l).to_bits().min(INF);
            let (lo, hi) = (hint.saturating_sub(16), hint.saturating_add(16).min(INF));
            if !test(INF) {
                INF + 1
            } else if !test(hi) {
                first(hi, INF)
            } else if test(lo) {
                first(0, lo)
            } else {
                first(lo, hi)
            }
        });
        LeastMinSAtMost { sys_lin, l, from }
    }

    /// `least_min_s(sys_lin, key) <= l`.
    fn allows(&self, key: u64) -> bool {
        match self.from {
            Some(from) if key <= 0x7ff0_0000_0000_0000 => key >= from,
            _ => least_min_s(self.sys_lin, key) <= self.l,
        }
    }
}

/// [0061] l = the smallest size with |{s : MIN_s ≤ l}| ≥ l, over MIN_s values sorted ascending;
/// `None` if no size qualifies. One pass: the count of values ≤ l only grows with l.
fn group_size(sorted_min_s: &[u64]) -> Option<usize> {
    let mut at_most = 0;
    for l in 1..=sorted_min_s.len() {
        while at_most < sorted_min_s.len() && sorted_min_s[at_most] <= l as u64 {
            at_most += 1;
        }
        if at_most >= l {
            return Some(l);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::{LeastMinSAtMost, group_size, least_min_s};

    proptest! {
        /// The comparison with the first qualifying key answers as the division and floor do,
        /// for keys near the threshold and anywhere else (NaN patterns included).
        #[test]
        fn least_min_s_at_most_compares_as_it_computes(
            sys_lin in prop_oneof![0.0f64..1e4, Just(0.0), Just(f64::INFINITY), Just(f64::NAN), -5.0f64..0.0],
            l in 1usize..200,
            near in -40i64..40,
            anywhere in any::<u64>(),
        ) {
            let at_most = LeastMinSAtMost::new(sys_lin, l);
            let hint = (sys_lin / l as f64).to_bits();
            for key in [hint.saturating_add_signed(near), anywhere, 0, 1, 0x7ff0_0000_0000_0000] {
                prop_assert_eq!(at_most.allows(key), least_min_s(sys_lin, key) <= l as f64, "key {:#x}", key);
            }
        }

        /// The one-pass search gives the seed's definition, checked size by size.
        #[test]
        fn group_size_is_the_smallest_l_with_l_values_at_most_l(mut mins in proptest::collection::vec(1u64..40, 0..60)) {
            mins.sort();
            let naive = (1..=mins.len()).find(|&l| mins.iter().filter(|&&m| m <= l as u64).count() >= l);
            prop_assert_eq!(group_size(&mins), naive);
        }
    }

    #[test]
    fn group_size_examples() {
        assert_eq!(group_size(&[]), None);
        assert_eq!(group_size(&[1]), Some(1));
        assert_eq!(group_size(&[2, 2]), Some(2));
        assert_eq!(group_size(&[3, 3]), None);
    }
}
