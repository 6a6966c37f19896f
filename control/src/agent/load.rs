//! Per-stream load at this proxy: sinks, predicted login and logoff rates ([0064]–[0065]), and
//! the machine-wide capacity left to a stream (Max_s, [0047]).
//!
//! The rates reuse the coordinator's double exponential smoothing
//! ([`crate::core::predict::Predictor`]): counts per window of ΔT/10, S₀ = y₀, b₀ = 0, S clamped
//! at 0, a window without events is a zero observation. This is the only predictor of a
//! stream's login/logoff rates at a proxy; the heartbeat carries its values to the PNC.

use crate::core::Time;
use crate::core::predict::{Predictor, Smoothing};
use crate::protocol::Capacity;

/// Predicted rates of one stream, in events per second.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Rates {
    pub login_per_sec: f64,
    pub logoff_per_sec: f64,
}

impl Rates {
    /// Net growth of the load per second (negative while draining).
    pub fn net_per_sec(&self) -> f64 {
        self.login_per_sec - self.logoff_per_sec
    }
}

/// The smoothed login and logoff rates of one stream (viewers and child proxies alike: both are
/// sinks and count against capacity).
#[derive(Clone, Debug)]
pub struct LoginRates {
    logins: Predictor,
    logoffs: Predictor,
}

impl LoginRates {
    pub fn new(now: Time, smoothing: &Smoothing) -> Self {
        let w = smoothing.window_of(now.micros());
        Self {
            logins: Predictor::new(w),
            logoffs: Predictor::new(w),
        }
    }

    pub fn login(&mut self, now: Time, smoothing: &Smoothing) {
        self.logins
            .observe(smoothing.window_of(now.micros()), smoothing);
    }

    pub fn logoff(&mut self, now: Time, smoothing: &Smoothing) {
        self.logoffs
            .observe(smoothing.window_of(now.micros()), smoothing);
    }

    /// The rates with every window before `now`'s folded in.
    pub fn rates(&mut self, now: Time, smoothing: &Smoothing) -> Rates {
        let w = smoothing.window_of(now.micros());
        Rates {
            login_per_sec: self.logins.rate(w, smoothing),
            logoff_per_sec: self.logoffs.rate(w, smoothing),
        }
    }
}

/// Connections and bits/s in use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Usage {
    pub connections: u32,
    pub bits_per_sec: u64,
}

/// [0047] Max_s, the sinks stream `s` may hold at this proxy: min(logical capacity, physical
/// capacity − the other streams' load), in connections and in bits/s, whichever binds first.
/// Bits/s are turned into sinks with `per_sink_bps` (the stream's bitrate per sink; 0: unknown,
/// then bits/s do not bind).
pub fn max_sinks(logical: Capacity, physical: Capacity, others: Usage, per_sink_bps: u64) -> u32 {
    let by_connections = logical
        .connections
        .min(physical.connections.saturating_sub(others.connections));
    if per_sink_bps == 0 {
        return by_connections;
    }
    let bits_left = logical
        .bits_per_sec
        .min(physical.bits_per_sec.saturating_sub(others.bits_per_sec));
    let by_bits = u32::try_from(bits_left / per_sink_bps).unwrap_or(u32::MAX);
    by_connections.min(by_bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(connections: u32, bits_per_sec: u64) -> Capacity {
        Capacity {
            connections,
            bits_per_sec,
        }
    }

    #[test]
    fn max_sinks_takes_whichever_binds_first() {
        let physical = cap(100, 1_000_000_000);
        // Nothing else on the machine: the logical capacity binds.
        assert_eq!(
            max_sinks(cap(30, u64::MAX), physical, Usage::default(), 0),
            30
        );
        // Other streams hold 80 connections: 20 left.
        let others = Usage {
            connections: 80,
            bits_per_sec: 0,
        };
        assert_eq!(max_sinks(cap(30, u64::MAX), physical, others, 0), 20);
        // 900 Mbit/s used elsewhere, 10 Mbit/s per sink: 10 sinks left.
        let others = Usage {
            connections: 10,
            bits_per_sec: 900_000_000,
        };
        assert_eq!(
            max_sinks(cap(30, u64::MAX), physical, others, 10_000_000),
            10
        );
        // More used elsewhere than the machine has: nothing left, no underflow.
        let others = Usage {
            connections: 500,
            bits_per_sec: u64::MAX,
        };
        assert_eq!(max_sinks(cap(30, u64::MAX), physical, others, 1), 0);
    }

    #[test]
    fn rates_follow_the_coordinators_smoothing() {
        let sm = Smoothing {
            alpha: 0.9,
            beta: 0.1,
            window_micros: 1_000_000,
        };
        let mut r = LoginRates::new(Time::ZERO, &sm);
        for _ in 0..300 {
            r.login(Time::from_millis(500), &sm);
        }
        r.logoff(Time::from_millis(600), &sm);
        // [0065] 300 logins in the last one-second window: 300/s.
        let now = r.rates(Time::from_secs(1), &sm);
        assert_eq!(now.login_per_sec, 300.0);
        assert_eq!(now.logoff_per_sec, 1.0);
        assert_eq!(now.net_per_sec(), 299.0);
    }
}
