//! `Growth::PredictiveFill`: a proxy whose DISTRIBUTE was served keeps taking viewers until it
//! is full or its viewers start to leave (the seed's [0030] stops it at once),
//! and new viewers go to the proxies that have had ΔT to start, else to the oldest farm, before newer ones.
//! The rest of the core asks `filling` where the two policies differ.

use super::*;

impl Coordinator {
    /// Under `Growth::PredictiveFill`: `px` was served a DISTRIBUTE and still takes viewers
    /// until it is full or its viewers start to leave (`stop_filled`).
    pub(super) fn filling(&self, sx: Sx, px: Px) -> bool {
        self.config.growth == Growth::PredictiveFill
            && self.pair(sx, px).is_some_and(Pair::served_and_accepting)
    }

    /// `filling` proxies touched by this event, each with its room and Max_s now: those down to
    /// their margin, and those whose predicted logoffs now exceed their logins, stop taking
    /// viewers ([0030]); from then on they are in the contraction phase like any served proxy,
    /// so their own CONSOLIDATE can follow ([0062]). New viewers are pointed at the tier's
    /// proxies that still take them. Full means no room at all: the room counts the viewers on
    /// their way (`reservation`: counted twice at worst, never missed), and a proxy told to
    /// stop still takes, for a grace period, the ones the PNC sent it just before. (A margin of
    /// 10% of Max_s, kept here once against viewers turned away unreserved, cost the 10^6 flash
    /// crowd 8% more machine-seconds and overfilled nothing without it: BENCHMARKS.md.)
    pub(super) fn stop_filled(&mut self, filling: &[(Sx, Px, u32)]) {
        for &(sx, px, room) in filling {
            if !self.filling(sx, px) {
                continue;
            }
            let (lin, loff) = self.pair_rates(sx, px);
            let why = if room == 0 {
                "full"
            } else if loff > lin {
                "its viewers leave faster than they arrive"
            } else {
                continue;
            };
            let name = self.sname(sx);
            let id = self.pid(px);
            self.log(
                Rule::Distribute,
                Some(&name),
                Some(id),
                format!("served DISTRIBUTE and now {why}: stops taking viewers [0030]"),
            );
            // To its tier's proxies that take viewers as the event leaves them.
            self.stop_accepting(sx, px, Vec::new());
        }
    }

    /// Under `Growth::PredictiveFill`, how many of the `accepting` proxies of (`region`,
    /// `tier`) a new viewer may go to (a prefix of the activation order): those activated at
    /// least ΔT ago, and `true`; if none was, those activated with the oldest (its farm), and
    /// `false`. A farm still starting is no place for a viewer while an older one that has
    /// had longer to start has room: viewers round-robined onto the newest farm wait out its
    /// start, and if they give up first, its members go idle at zero load ([0030]) before they
    /// ever serve.
    pub(super) fn started_accepting(
        &self,
        sx: Sx,
        region: RegionId,
        tier: u32,
        accepting: u32,
    ) -> Option<(u32, bool)> {
        if self.config.growth != Growth::PredictiveFill {
            return None;
        }
        let set = &self.streams.get(&sx)?.tiers.get(&(region, tier))?.active;
        let activated = |k: u32| {
            set.nth_accepting(k)
                .and_then(|q| self.pair(sx, q))
                .map(|p| p.activated_at)
        };
        let dt = self.config.delta_t_ms.saturating_mul(1000);
        let oldest = activated(0)?;
        let started = oldest.plus_micros(dt) <= self.now;
        let cutoff = if started {
            Time(self.now.micros().saturating_sub(dt))
        } else {
            oldest
        };
        // The first k activated after the cutoff, by bisection over the activation order.
        let (mut lo, mut hi) = (0u32, accepting);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if activated(mid).is_some_and(|t| t <= cutoff) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        (lo > 0).then_some((lo, started))
    }
}
