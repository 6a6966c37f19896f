//! What a DISTRIBUTE reads of its tier without walking it ([0059]–[0061]): the members' free
//! room, the members that can take a regrouped share (room beyond the hysteresis margin: the
//! only ones with a finite MIN_s), and the tier's login and logoff rates. The sums and each
//! member's share of them; `tier_upkeep` keeps them current.

use super::*;

/// Largest login or logoff rate taken from a heartbeat, per second: far beyond any proxy, and
/// small enough that sums and products of rates stay finite.
pub(super) const MAX_RATE: f64 = 1e6;

/// Fixed-point scale of reported rates: a sum of them is exact whatever the order of updates.
pub(super) const RATE_SCALE: f64 = (1u64 << 32) as f64;

/// The incremental state of one (stream, region, tier).
#[derive(Debug, Default)]
pub(super) struct TierSums {
    /// Σ room of the members alive and not being drained.
    pub(super) room: u64,
    /// Members alive, not being drained, with room beyond their margin (the only ones with a
    /// finite MIN_s), by an upper bound of MIN_s's denominator (`Share::key`).
    pub(super) candidates: BTreeSet<(u64, Px)>,
    /// The same members by activation (`Pair::seq`), each with its bound (`Share::key`): the
    /// end of a regroup walks this order and reads only the members whose bound allows MIN_s =
    /// l.
    pub(super) recent: BTreeMap<(u64, Px), u64>,
    /// Logins and logoffs of the members that do not decide for themselves: SysLinRate read as
    /// one predictor of the tier's events (DESIGN "Reading the seed", MIN_s).
    pub(super) login: Predictor,
    pub(super) logoff: Predictor,
    /// Σ login and logoff rates reported by the members that decide, fixed point.
    pub(super) reported: (u128, u128),
}

/// What one pair adds to its tier's sums, kept so that a change takes out what it added.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(super) struct Share {
    /// Its room and Max_s when last refreshed (current after `refresh_accepting`).
    pub(super) room: u32,
    pub(super) max_s: u32,
    /// Counted in `TierSums::room` (alive, not being drained).
    pub(super) counted: bool,
    pub(super) candidate: bool,
    /// For a candidate: at least its Loffrate_s + (room − margin)/ΔT until its next logoff or
    /// change of room, as the bits of a non-negative f64 (which order as the numbers do).
    pub(super) key: u64,
    pub(super) seq: u64,
    pub(super) reported: (u64, u64),
}

impl TierSums {
    /// A tier with no member has no rates: they start again at its first member.
    pub(super) fn restart_rates(&mut self, window: u64) {
        self.login = Predictor::new(window);
        self.logoff = Predictor::new(window);
    }

    /// Replace the share `old` of `px` by `new`, touching only the parts that differ.
    pub(super) fn update(&mut self, px: Px, old: &Share, new: &Share) {
        if old.counted {
            self.room -= u64::from(old.room);
        }
        if new.counted {
            self.room += u64::from(new.room);
        }
        if (old.candidate, old.key) != (new.candidate, new.key) {
            if old.candidate {
                self.candidates.remove(&(old.key, px));
            }
            if new.candidate {
                self.candidates.insert((new.key, px));
            }
        }
        if (old.candidate, old.seq, old.key) != (new.candidate, new.seq, new.key) {
            if old.candidate && (!new.candidate || old.seq != new.seq) {
                self.recent.remove(&(old.seq, px));
            }
            if new.candidate {
                self.recent.insert((new.seq, px), new.key);
            }
        }
        self.reported.0 = self.reported.0 - u128::from(old.reported.0) + u128::from(new.reported.0);
        self.reported.1 = self.reported.1 - u128::from(old.reported.1) + u128::from(new.reported.1);
    }

    pub(super) fn take(&mut self, px: Px, share: &Share) {
        if share.counted {
            self.room -= u64::from(share.room);
        }
        if share.candidate {
            self.candidates.remove(&(share.key, px));
            self.recent.remove(&(share.seq, px));
        }
        self.reported.0 -= u128::from(share.reported.0);
        self.reported.1 -= u128::from(share.reported.1);
    }
}

/// A reported rate as `pair_rates` reads it: not a number or negative counts as none.
pub(super) fn sane_reported(r: f32) -> f64 {
    let r = f64::from(r);
    if r.is_finite() {
        r.clamp(0.0, MAX_RATE)
    } else {
        0.0
    }
}

fn fixed(r: f32) -> u64 {
    (sane_reported(r) * RATE_SCALE) as u64
}

/// What a member adds to its tier's sums besides its room: read from its pair.
pub(super) struct Member {
    /// Alive and not being drained.
    pub(super) counted: bool,
    /// It decides for itself, and reports its rates.
    pub(super) decides: bool,
    pub(super) reported: (f32, f32),
    /// Its logoff predictor's bound (`Predictor::bound`).
    pub(super) logoff_bound: f64,
    pub(super) seq: u64,
}

impl Share {
    /// The share of `m`, with room `room`, Max_s `max_s`, hysteresis margin `margin` and a ΔT
    /// of `dt_secs`.
    pub(super) fn of(m: &Member, room: u32, max_s: u32, margin: u32, dt_secs: f64) -> Share {
        let usable = room.saturating_sub(margin);
        let candidate = m.counted && usable > 0;
        // As `regroup` computes the denominator, with the logoff rate replaced by a bound of it.
        let loff = if m.decides {
            sane_reported(m.reported.1)
        } else {
            m.logoff_bound
        };
        let key = if candidate {
            (f64::from(usable) / dt_secs.max(1e-9) + loff).to_bits()
        } else {
            0
        };
        Share {
            room,
            max_s,
            counted: m.counted,
            candidate,
            key,
            seq: m.seq,
            reported: if m.decides {
                (fixed(m.reported.0), fixed(m.reported.1))
            } else {
                (0, 0)
            },
        }
    }
}

/// A member that a DISTRIBUTE may regroup, with its room and Max_s now.
#[derive(Clone, Copy)]
pub(super) struct Candidate {
    pub(super) px: Px,
    pub(super) room: u32,
    pub(super) max_s: u32,
}
