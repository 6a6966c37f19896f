//! Configuration of the proxy agent.

use std::net::SocketAddr;

use crate::core::predict::Smoothing;
use crate::protocol::{Capacity, ProxyId};

use super::backoff::BackoffConfig;

/// Who this proxy is and the parameters of its decisions.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentConfig {
    pub proxy: ProxyId,
    pub name: String,
    /// The shared control-protocol token.
    pub token: String,
    /// Where other proxies and viewers reach this proxy's data port.
    pub data_addr: SocketAddr,
    pub region: Option<String>,
    /// Physical capacity of the machine, all streams together ([0047]).
    pub capacity: Capacity,
    /// Logical capacity of one stream (its "virtual host", [0047]); `None`: the physical one.
    pub stream_capacity: Option<Capacity>,
    /// ΔT of [0054]/[0058] in milliseconds: how far ahead DISTRIBUTE looks; the predictors'
    /// window is ΔT/10 ([0065]). Use the PNC's `delta_t_ms`.
    pub delta_t_ms: u64,
    /// Smoothing weight α of [0064].
    pub alpha: f64,
    /// Trend weight β of [0064].
    pub beta: f64,
    /// Minimum-load threshold for CONSOLIDATE ([0033], [0055]); `None`: ⌈logical capacity/3⌉
    /// (the PNC's default).
    pub min_threshold: Option<u32>,
    /// Hysteresis of both decisions as a fraction of Max_s; the margin is at least one sink.
    pub hysteresis: f64,
    /// DISTRIBUTE also when capacity is predicted within ΔT ([0054]); `false`: only when full
    /// (the PNC's `growth = "one_at_a_time"`, a yardstick).
    pub predictive: bool,
    pub backoff: BackoffConfig,
    /// A connection that has not reached `Welcome` this long after `Connect` is closed and
    /// retried.
    pub register_timeout_ms: u64,
    /// Seed of the back-off jitter (deterministic: tests and the simulator set it; a dataplane
    /// may use its proxy id or any per-process value).
    pub seed: u64,
}

impl AgentConfig {
    /// A configuration with the defaults for everything but identity and capacity.
    pub fn new(
        proxy: ProxyId,
        name: impl Into<String>,
        token: impl Into<String>,
        data_addr: SocketAddr,
        capacity: Capacity,
    ) -> Self {
        Self {
            proxy,
            name: name.into(),
            token: token.into(),
            data_addr,
            region: None,
            capacity,
            stream_capacity: None,
            delta_t_ms: 10_000,
            alpha: 0.9,
            beta: 0.1,
            min_threshold: None,
            hysteresis: 0.1,
            predictive: true,
            backoff: BackoffConfig::default(),
            register_timeout_ms: 10_000,
            seed: u64::from(proxy.0),
        }
    }

    /// The logical capacity of one stream.
    pub fn logical_capacity(&self) -> Capacity {
        self.stream_capacity.unwrap_or(self.capacity)
    }

    /// CONSOLIDATE's threshold in sinks.
    pub fn min_threshold(&self) -> u32 {
        self.min_threshold
            .unwrap_or_else(|| self.logical_capacity().connections.div_ceil(3))
    }

    /// The predictors' parameters: windows of ΔT/10 ([0065]).
    pub fn smoothing(&self) -> Smoothing {
        Smoothing {
            alpha: self.alpha,
            beta: self.beta,
            window_micros: (self.delta_t_ms.saturating_mul(1000) / 10).max(1),
        }
    }

    pub fn delta_t_secs(&self) -> f64 {
        self.delta_t_ms as f64 / 1000.0
    }

    /// The hysteresis margin for a stream whose Max_s is `max`.
    pub fn margin(&self, max: u32) -> u32 {
        let h = if self.hysteresis.is_finite() {
            self.hysteresis.clamp(0.0, 1.0)
        } else {
            0.0
        };
        ((f64::from(max) * h).round() as u32).max(1)
    }
}
