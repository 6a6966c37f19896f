//! Keeping each tier's sums (`tier_sums`) current where the state they come from changes
//! (`refresh_accepting` for every touched machine, a heartbeat's reported rates, a LOGIN or
//! LOGOFF, a pair's removal), what a DISTRIBUTE reads of them, and their check against a walk of
//! every tier (`audit`).

use super::state::{TierRec, margin_for};
use super::tier_sums::{Member, RATE_SCALE};
use super::*;

/// What the pair `p` adds to its tier's sums, with room `room`, Max_s `max_s` and hysteresis
/// margin `margin`; its machine `alive`, and whether it `decides` for itself.
pub(super) fn share(
    p: &Pair,
    alive: bool,
    decides: bool,
    room: u32,
    max_s: u32,
    margin: u32,
    dt_secs: f64,
) -> Share {
    let m = Member {
        counted: alive && p.draining_to.is_none(),
        decides,
        reported: p.reported,
        logoff_bound: p.logoff_bound,
        seq: p.seq,
    };
    Share::of(&m, room, max_s, margin, dt_secs)
}

/// The clock, smoothing and configuration a login or logoff is counted with (`count_on`), and
/// whether its machine is alive and decides for itself.
pub(super) struct Counting {
    window: u64,
    smoothing: Smoothing,
    alive: bool,
    decides: bool,
    hysteresis: f64,
    dt_secs: f64,
}

/// `Coordinator::count_event` for a caller that holds the pair `p` (`px`) and its stream's
/// `tiers` already: a viewer's LOGIN looks its pair up once.
pub(super) fn count_on(
    p: &mut Pair,
    tiers: &mut BTreeMap<(RegionId, u32), TierRec>,
    px: Px,
    login: bool,
    c: &Counting,
) {
    let (w, sm) = (c.window, &c.smoothing);
    if login {
        p.login.observe(w, sm);
    } else {
        p.logoff.observe(w, sm);
        p.logoff_bound = p.logoff.bound(sm);
    }
    if !c.decides
        && let Some(t) = tiers.get_mut(&(p.region, p.tier))
    {
        let tier = if login {
            &mut t.sums.login
        } else {
            &mut t.sums.logoff
        };
        tier.observe(w, sm);
    }
    if !login {
        // A new bound of the logoff rate moves it in the regroup order.
        let (room, max_s) = (p.share.room, p.share.max_s);
        let margin = margin_for(c.hysteresis, max_s);
        let new = share(p, c.alive, c.decides, room, max_s, margin, c.dt_secs);
        put_share(p, tiers, px, new);
    }
}

/// Replace the share of `p` (`px`) in its tier, one of `tiers`, by `new`.
pub(super) fn put_share(
    p: &mut Pair,
    tiers: &mut BTreeMap<(RegionId, u32), TierRec>,
    px: Px,
    new: Share,
) {
    if p.share == new {
        return;
    }
    if let Some(t) = tiers.get_mut(&(p.region, p.tier)) {
        t.sums.update(px, &p.share, &new);
    }
    p.share = new;
}

impl Coordinator {
    /// What `px` adds to its tier's sums for `sx` now, given its room and Max_s.
    fn share_of(&self, sx: Sx, px: Px, room: u32, max_s: u32) -> Share {
        let Some(p) = self.pair(sx, px) else {
            return Share::default();
        };
        let rec = &self.proxies[px];
        let margin = self.margin_of(max_s);
        share(
            p,
            rec.alive,
            rec.decides,
            room,
            max_s,
            margin,
            self.delta_t_secs(),
        )
    }

    /// Bring the share of `px` in its tier's sums up to date, its room and Max_s given.
    pub(super) fn sync_share(&mut self, sx: Sx, px: Px, room: u32, max_s: u32) {
        let (alive, decides) = (self.proxies[px].alive, self.proxies[px].decides);
        let (margin, dt) = (self.margin_of(max_s), self.delta_t_secs());
        let Some(StreamRec { pairs, tiers, .. }) = self.streams.get_mut(&sx) else {
            return;
        };
        if let Some(p) = pairs.get_mut(&px) {
            let new = share(p, alive, decides, room, max_s, margin, dt);
            put_share(p, tiers, px, new);
        }
    }

    /// After a heartbeat set the reported rates of `px`: its share, room unchanged.
    pub(super) fn sync_reported(&mut self, sx: Sx, px: Px) {
        if let Some(p) = self.pair(sx, px) {
            let (room, max_s) = (p.share.room, p.share.max_s);
            self.sync_share(sx, px, room, max_s);
        }
    }

    /// `p`, just removed from `s`, takes its share out of its tier.
    pub(super) fn drop_share(s: &mut StreamRec, px: Px, p: &Pair) {
        if let Some(t) = s.tiers.get_mut(&(p.region, p.tier)) {
            t.sums.take(px, &p.share);
        }
    }

    /// Lower the logoff bound of `px` for `sx` (taken at its last logoff, `Pair::logoff_bound`)
    /// to its bound in this window (`Predictor::bound_in`) when that is less than half of it,
    /// and move `px` down its tier's regroup order accordingly: the windows after a logoff
    /// decay its rate by 1−α each. Its new place in the order if it moved. For a member that
    /// does not decide (one that does is placed by the rate it reports).
    pub(super) fn tighten_logoff_bound(&mut self, sx: Sx, px: Px) -> Option<(u64, Px)> {
        let (w, sm) = (self.window, self.smoothing);
        let (alive, decides) = (self.proxies[px].alive, self.proxies[px].decides);
        let (hysteresis, dt) = (self.config.hysteresis, self.delta_t_secs());
        if decides {
            return None;
        }
        let StreamRec { pairs, tiers, .. } = self.streams.get_mut(&sx)?;
        let p = pairs.get_mut(&px)?;
        let now = p.logoff.bound_in(w, &sm);
        if now >= p.logoff_bound * 0.5 {
            return None;
        }
        p.logoff_bound = now;
        let (room, max_s) = (p.share.room, p.share.max_s);
        let new = share(
            p,
            alive,
            decides,
            room,
            max_s,
            margin_for(hysteresis, max_s),
            dt,
        );
        let key = new.key;
        put_share(p, tiers, px, new);
        Some((key, px))
    }

    /// Count a login (`login`) or logoff of `px` for `sx`: its own predictor, and its tier's
    /// unless it decides for itself (its tier then reads the rate it reports).
    pub(super) fn count_event(&mut self, sx: Sx, px: Px, login: bool) {
        let c = self.counting(px);
        let Some(StreamRec { pairs, tiers, .. }) = self.streams.get_mut(&sx) else {
            return;
        };
        if let Some(p) = pairs.get_mut(&px) {
            count_on(p, tiers, px, login, &c);
        }
    }

    /// What `count_on` needs of the core and of the machine `px`.
    pub(super) fn counting(&self, px: Px) -> Counting {
        Counting {
            window: self.window,
            smoothing: self.smoothing,
            alive: self.proxies[px].alive,
            decides: self.proxies[px].decides,
            hysteresis: self.config.hysteresis,
            dt_secs: self.delta_t_secs(),
        }
    }

    /// SysLinRate and the tier's logoff rate ([0061]): the tier's predictors over its members
    /// that do not decide, plus the rates reported by those that do.
    pub(super) fn tier_rates(&mut self, sx: Sx, region: RegionId, tier: u32) -> (f64, f64) {
        let (w, sm) = (self.window, self.smoothing);
        let Some(t) = self
            .streams
            .get_mut(&sx)
            .and_then(|s| s.tiers.get_mut(&(region, tier)))
        else {
            return (0.0, 0.0);
        };
        let s = &mut t.sums;
        (
            s.login.rate(w, &sm) + s.reported.0 as f64 / RATE_SCALE,
            s.logoff.rate(w, &sm) + s.reported.1 as f64 / RATE_SCALE,
        )
    }

    /// Σ room of the members of (`region`, `tier`) alive and not being drained. Current after
    /// `refresh_accepting`.
    pub(super) fn tier_room(&self, sx: Sx, region: RegionId, tier: u32) -> u64 {
        self.streams
            .get(&sx)
            .and_then(|s| s.tiers.get(&(region, tier)))
            .map_or(0, |t| t.sums.room)
    }

    /// How many members of (`region`, `tier`) have room beyond their margin.
    pub(super) fn candidate_count(&self, sx: Sx, region: RegionId, tier: u32) -> usize {
        self.streams
            .get(&sx)
            .and_then(|s| s.tiers.get(&(region, tier)))
            .map_or(0, |t| t.sums.candidates.len())
    }

    /// The sums of (`region`, `tier`) of `sx`.
    fn sums_of(&self, sx: Sx, region: RegionId, tier: u32) -> Option<&TierSums> {
        Some(&self.streams.get(&sx)?.tiers.get(&(region, tier))?.sums)
    }

    /// The members of (`region`, `tier`) with room beyond their margin below `before` (from the
    /// top if none) by their bound of MIN_s's denominator, largest first, with that bound: up to
    /// `k` that `keep` takes, into `out` (cleared first). Returns where the next call starts
    /// (the last entry looked at), `None` once the order is exhausted. A regroup reads the
    /// members it takes between calls; in between, one walk of the order, not a search each.
    /// Current after `refresh_accepting`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn candidates_below(
        &self,
        sx: Sx,
        region: RegionId,
        tier: u32,
        before: Option<(u64, Px)>,
        k: usize,
        keep: impl Fn(Px) -> bool,
        out: &mut Vec<(u64, Px)>,
    ) -> Option<(u64, Px)> {
        out.clear();
        let c = &self.sums_of(sx, region, tier)?.candidates;
        let walk = match before {
            Some(b) => c.range(..b),
            None => c.range(..),
        };
        take_chunk(
            walk.rev().map(|&e| (e, ())),
            k,
            |&((_, q), ())| keep(q),
            out,
        )
    }

    /// As `candidates_below`, in the order of activation (`Pair::seq`, the most recent first):
    /// the members `keep` takes given their id and bound (`Share::key`), as (seq, id).
    #[allow(clippy::too_many_arguments)]
    pub(super) fn recent_below(
        &self,
        sx: Sx,
        region: RegionId,
        tier: u32,
        before: Option<(u64, Px)>,
        k: usize,
        keep: impl Fn(Px, u64) -> bool,
        out: &mut Vec<(u64, Px)>,
    ) -> Option<(u64, Px)> {
        out.clear();
        let r = &self.sums_of(sx, region, tier)?.recent;
        let walk = match before {
            Some(b) => r.range(..b),
            None => r.range(..),
        };
        take_chunk(
            walk.rev().map(|(&entry, &key)| (entry, key)),
            k,
            |&((_, q), key)| keep(q, key),
            out,
        )
    }

    /// The sums agree with a walk of every tier (each member's share from its state now).
    pub(super) fn check_tier_sums(&self) -> Result<(), String> {
        for (&sx, s) in &self.streams {
            for (&(region, tier), t) in &s.tiers {
                let mut room = 0u64;
                let mut candidates = BTreeSet::new();
                let mut recent = BTreeMap::new();
                let mut reported = (0u128, 0u128);
                for q in t.active.iter() {
                    let Some(p) = s.pairs.get(&q) else {
                        return Err(format!(
                            "{} of {} in a tier but not active",
                            self.pid(q),
                            s.name
                        ));
                    };
                    let (r, m) = self.room_and_max_s(sx, q);
                    let share = self.share_of(sx, q, r, m);
                    if p.share != share {
                        return Err(format!(
                            "{} of {}: share {:?} held, {share:?} from its state",
                            self.pid(q),
                            s.name,
                            p.share
                        ));
                    }
                    if share.counted {
                        room += u64::from(share.room);
                    }
                    if share.candidate {
                        candidates.insert((share.key, q));
                        recent.insert((share.seq, q), share.key);
                        // The bounds hold: the logoff rate is no more than its order's bound, and
                        // each rate no more than its envelope now.
                        let (w, sm) = (self.window, &self.smoothing);
                        let (lin, loff) = (p.login.peek(w, sm), p.logoff.peek(w, sm));
                        let (lin_env, loff_env) = (
                            p.login.envelope(sm).at_window(w, sm),
                            p.logoff.envelope(sm).at_window(w, sm),
                        );
                        if loff > p.logoff_bound || lin > lin_env || loff > loff_env {
                            return Err(format!(
                                "{} of {}: a rate above its bound ({lin} ≤ {lin_env}, {loff} ≤ {loff_env}, {})",
                                self.pid(q),
                                s.name,
                                p.logoff_bound
                            ));
                        }
                    }
                    reported.0 += u128::from(share.reported.0);
                    reported.1 += u128::from(share.reported.1);
                }
                let what = format!("{} tier {tier} of {}", self.regions.name(region), s.name);
                if t.sums.room != room {
                    return Err(format!("{what}: room {} held, {room} walked", t.sums.room));
                }
                if t.sums.candidates != candidates || t.sums.recent != recent {
                    return Err(format!(
                        "{what}: candidates {:?} held, {candidates:?} walked",
                        t.sums.candidates
                    ));
                }
                if t.sums.reported != reported {
                    return Err(format!("{what}: reported rates differ from the walk"));
                }
            }
        }
        Ok(())
    }
}

/// The first `k` entries of `walk` that `keep` takes, as their (key, id), into `out`; the last
/// one looked at when `k` were found, `None` once `walk` is exhausted (the walks of
/// `candidates_below` and `recent_below`).
fn take_chunk<T>(
    walk: impl Iterator<Item = ((u64, Px), T)>,
    k: usize,
    keep: impl Fn(&((u64, Px), T)) -> bool,
    out: &mut Vec<(u64, Px)>,
) -> Option<(u64, Px)> {
    for e in walk {
        if keep(&e) {
            out.push(e.0);
            if out.len() == k {
                return Some(e.0);
            }
        }
    }
    None
}
