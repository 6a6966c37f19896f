//! A flash crowd as one core sees it: how many viewers joined it in the last second, and whether
//! that makes it a crowd.
//!
//! While a crowd joins, every join costs the host a handshake, an accept and a response head on
//! the same CPUs that carry the fan-out (and, on a shared box, the viewers' own clients). Sends
//! are then worth making fewer and larger: a core in a crowd holds a small send for its whole
//! spacing ([`crate::sendplan::coalesce_until`]) instead of letting it go once it reaches
//! `--coalesce-bytes`. The viewers already served wait at most `--coalesce-ms`; the CPU saved
//! goes to the joins, so the crowd is connected sooner and the backlog the joins leave in the
//! clients' sockets is smaller (BENCHMARKS.md, "A core in a flash crowd").
//!
//! It does so only while the host's CPUs are busy ([`holds_sends`], `--crowd-host-busy`): with
//! CPU to spare, fewer sends leave nothing to the joins that they lack, and only cost the
//! viewers served latency ([`crate::host_cpu`]).
//!
//! Pure: the reactor calls [`JoinRate::joined`] per viewer and [`JoinRate::tick`] per timer
//! tick, and reads [`JoinRate::crowd`] and [`holds_sends`] once per tick.

/// Ticks the joins are counted over: one second at the reactor's 100 ms tick.
pub const WINDOW_TICKS: usize = 10;

/// Fewer joins than this in a window never make a crowd: a few hundred response heads are a few
/// milliseconds of CPU, not worth a moment of higher latency for anyone.
pub const CROWD_MIN_JOINS: u32 = 256;

/// Joins per tick over the last [`WINDOW_TICKS`] ticks.
#[derive(Debug, Default)]
pub struct JoinRate {
    per_tick: [u32; WINDOW_TICKS],
    /// The tick now being counted.
    current: usize,
    total: u32,
}

impl JoinRate {
    /// A viewer joined the core.
    pub fn joined(&mut self) {
        self.per_tick[self.current] += 1;
        self.total += 1;
    }

    /// A tick passed: the oldest tick's joins leave the window.
    pub fn tick(&mut self) {
        self.current = (self.current + 1) % WINDOW_TICKS;
        self.total -= self.per_tick[self.current];
        self.per_tick[self.current] = 0;
    }

    /// Joins in the last [`WINDOW_TICKS`] ticks.
    pub fn in_window(&self) -> u32 {
        self.total
    }

    /// Whether a core serving `viewers` is in a flash crowd: at least [`CROWD_MIN_JOINS`]
    /// joined in the window, and at least a quarter of those it serves joined in it (ordinary
    /// churn of a large audience is no crowd).
    pub fn crowd(&self, viewers: usize) -> bool {
        self.total >= CROWD_MIN_JOINS && self.total as usize * 4 >= viewers
    }
}

/// Whether a core holds its small sends for a crowd: while it is in one (`crowd`) and the host's
/// CPUs were at least `busy_min` busy over the last tick (a fraction; 0: whatever the host).
/// A busy share not known (the first look, `/proc/stat` unreadable) counts as busy.
pub fn holds_sends(crowd: bool, host_busy: Option<f64>, busy_min: f64) -> bool {
    crowd && host_busy.is_none_or(|b| b >= busy_min)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn join(rate: &mut JoinRate, n: u32) {
        for _ in 0..n {
            rate.joined();
        }
    }

    #[test]
    fn joins_leave_the_window_after_a_second_of_ticks() {
        let mut rate = JoinRate::default();
        join(&mut rate, 100);
        rate.tick();
        join(&mut rate, 50);
        assert_eq!(rate.in_window(), 150);
        for _ in 0..WINDOW_TICKS - 1 {
            rate.tick();
        }
        assert_eq!(rate.in_window(), 50, "the first tick's joins are out");
        rate.tick();
        assert_eq!(rate.in_window(), 0);
    }

    #[test]
    fn a_crowd_is_many_joins_and_a_large_share_of_the_audience() {
        let mut rate = JoinRate::default();
        join(&mut rate, CROWD_MIN_JOINS - 1);
        assert!(!rate.crowd(300), "too few joins to matter");
        rate.joined();
        assert!(rate.crowd(CROWD_MIN_JOINS as usize), "all of them new");
        assert!(rate.crowd(4 * CROWD_MIN_JOINS as usize), "a quarter new");
        assert!(
            !rate.crowd(4 * CROWD_MIN_JOINS as usize + 1),
            "churn of a larger audience"
        );
        for _ in 0..WINDOW_TICKS {
            rate.tick();
        }
        assert!(
            !rate.crowd(CROWD_MIN_JOINS as usize),
            "a second later, over"
        );
    }

    #[test]
    fn a_crowd_holds_sends_only_on_a_busy_host() {
        assert!(holds_sends(true, Some(0.95), 0.9));
        assert!(!holds_sends(true, Some(0.6), 0.9), "CPU to spare: no hold");
        assert!(holds_sends(true, None, 0.9), "not known: busy");
        assert!(holds_sends(true, Some(0.0), 0.0), "0: whatever the host");
        assert!(!holds_sends(false, Some(1.0), 0.9), "no crowd, no hold");
    }
}
