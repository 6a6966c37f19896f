//! Reconnect back-off: exponential with jitter from a seeded source, capped, reset after a
//! successful `Welcome`.
//!
//! The n-th consecutive attempt waits `base = min(max, initial · 2ⁿ)` minus up to `jitter · base`
//! (drawn from [`Jitter`]), so that proxies cut off together do not reconnect in lockstep. A
//! refusal the proxy cannot fix by retrying (wrong protocol version, wrong token) waits at least
//! the maximum, plus up to `jitter · max`: it is retried (the operator may fix the PNC side) but
//! never faster than the cap.

/// Parameters of the back-off.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BackoffConfig {
    /// Delay before the first retry, in milliseconds.
    pub initial_ms: u64,
    /// Cap of the delay, in milliseconds.
    pub max_ms: u64,
    /// Fraction of the delay drawn at random (0: none, 1: anywhere in [0, base]); clamped to
    /// [0, 1].
    pub jitter: f64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            initial_ms: 200,
            max_ms: 30_000,
            jitter: 0.5,
        }
    }
}

/// A small deterministic random source (SplitMix64): the agent reads no clock and no entropy,
/// so the same seed gives the same delays (tests, simulator).
#[derive(Clone, Debug)]
pub struct Jitter {
    state: u64,
}

impl Jitter {
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// A uniform value in [0, 1).
    pub fn unit(&mut self) -> f64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        // The top 53 bits make an exact f64 in [0, 1).
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The back-off state of one control connection.
#[derive(Clone, Debug)]
pub struct Backoff {
    config: BackoffConfig,
    /// Consecutive failed attempts since the last `Welcome`.
    attempts: u32,
    jitter: Jitter,
}

impl Backoff {
    pub fn new(config: BackoffConfig, seed: u64) -> Self {
        Self {
            config,
            attempts: 0,
            jitter: Jitter::new(seed),
        }
    }

    /// Consecutive failed attempts since the last reset.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The delay before the next attempt, in microseconds, after a failure (connection refused,
    /// lost, or a refusal that retrying may cure).
    pub fn next_delay_micros(&mut self) -> u64 {
        let max = self.max_micros();
        let initial = self.config.initial_ms.saturating_mul(1000).clamp(1, max);
        let base = initial
            .checked_shl(self.attempts.min(63))
            .filter(|b| b >> self.attempts.min(63) == initial)
            .unwrap_or(max)
            .min(max);
        self.attempts = self.attempts.saturating_add(1);
        let cut = base as f64 * self.jitter_fraction() * self.jitter.unit();
        base.saturating_sub(cut as u64).max(1)
    }

    /// The delay after a refusal that retrying cannot cure (version mismatch, bad token): never
    /// shorter than the cap.
    pub fn refused_delay_micros(&mut self) -> u64 {
        let max = self.max_micros();
        self.attempts = self.attempts.saturating_add(1);
        let extra = max as f64 * self.jitter_fraction() * self.jitter.unit();
        max.saturating_add(extra as u64)
    }

    /// The connection was accepted (`Welcome`): the next failure starts from the initial delay.
    pub fn reset(&mut self) {
        self.attempts = 0;
    }

    fn max_micros(&self) -> u64 {
        self.config.max_ms.saturating_mul(1000).max(1)
    }

    fn jitter_fraction(&self) -> f64 {
        if self.config.jitter.is_nan() {
            0.0
        } else {
            self.config.jitter.clamp(0.0, 1.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_is_capped_and_resets() {
        let config = BackoffConfig {
            initial_ms: 100,
            max_ms: 5_000,
            jitter: 0.5,
        };
        let mut b = Backoff::new(config, 7);
        let delays: Vec<u64> = (0..12).map(|_| b.next_delay_micros()).collect();
        // With jitter ≤ 1/2 each delay lies in [base/2, base] and the base doubles: the delays
        // never shrink until the cap.
        for (n, d) in delays.iter().enumerate() {
            let base = (100_000u64 << n).min(5_000_000);
            assert!(
                *d <= base && *d >= base / 2,
                "attempt {n}: {d} not in [{}, {base}]",
                base / 2
            );
        }
        for pair in delays.windows(2).take(5) {
            assert!(pair[1] >= pair[0], "{delays:?}");
        }
        assert!(delays.iter().all(|&d| d <= 5_000_000));
        b.reset();
        assert_eq!(b.attempts(), 0);
        assert!(b.next_delay_micros() <= 100_000);
    }

    #[test]
    fn same_seed_same_delays_other_seed_other_delays() {
        let config = BackoffConfig::default();
        let run = |seed| {
            let mut b = Backoff::new(config, seed);
            (0..8).map(|_| b.next_delay_micros()).collect::<Vec<_>>()
        };
        assert_eq!(run(1), run(1));
        assert_ne!(run(1), run(2));
    }

    #[test]
    fn refusal_never_retries_faster_than_the_cap() {
        let mut b = Backoff::new(BackoffConfig::default(), 3);
        for _ in 0..50 {
            let d = b.refused_delay_micros();
            assert!((30_000_000..=45_000_000).contains(&d), "{d}");
        }
    }

    #[test]
    fn huge_attempt_counts_and_odd_configs_do_not_overflow() {
        let config = BackoffConfig {
            initial_ms: u64::MAX,
            max_ms: u64::MAX,
            jitter: f64::NAN,
        };
        let mut b = Backoff::new(config, 0);
        for _ in 0..200 {
            assert!(b.next_delay_micros() >= 1);
        }
        let zero = BackoffConfig {
            initial_ms: 0,
            max_ms: 0,
            jitter: 2.0,
        };
        let mut b = Backoff::new(zero, 0);
        assert!(b.next_delay_micros() >= 1);
    }
}
