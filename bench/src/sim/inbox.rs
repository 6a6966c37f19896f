//! What the PNC received from the proxies: messages by kind and per second of simulated time,
//! so that issue 10's claim (the PNC's message rate is bounded by proxies × heartbeat rate, not
//! by viewers) can be read off a run. Counted from the trace's start (registration before it is
//! setup, not load), at the moment a message reaches the PNC.

use super::report::PncLoad;
use control::protocol::{Child, ProxyMsg};
use std::collections::BTreeMap;

#[derive(Debug, Default)]
pub struct Inbox {
    /// Simulated time from which messages are counted.
    from_us: u64,
    /// Messages per second since `from_us`.
    per_s: Vec<u64>,
    by_kind: BTreeMap<&'static str, u64>,
    total: u64,
    /// Messages since the last time-series sample.
    since_sample: u64,
}

impl Inbox {
    pub fn new(from_us: u64) -> Self {
        Inbox {
            from_us,
            ..Inbox::default()
        }
    }

    pub fn received(&mut self, now_us: u64, msg: &ProxyMsg) {
        if now_us < self.from_us {
            return;
        }
        let second = ((now_us - self.from_us) / 1_000_000) as usize;
        if self.per_s.len() <= second {
            self.per_s.resize(second + 1, 0);
        }
        self.per_s[second] += 1;
        *self.by_kind.entry(kind(msg)).or_default() += 1;
        self.total += 1;
        self.since_sample += 1;
    }

    /// Messages since the previous call (for the time series).
    pub fn take_since_sample(&mut self) -> u64 {
        std::mem::take(&mut self.since_sample)
    }

    /// The figures over `[from, until_us]` at `proxies` relay machines.
    pub fn load(&self, until_us: u64, proxies: u64) -> PncLoad {
        let span_s = until_us.saturating_sub(self.from_us) as f64 / 1e6;
        let mean = if span_s > 0.0 {
            self.total as f64 / span_s
        } else {
            0.0
        };
        PncLoad {
            messages: self.total,
            peak_per_s: self.per_s.iter().copied().max().unwrap_or(0),
            mean_per_s: mean,
            mean_per_proxy_per_s: mean / proxies.max(1) as f64,
            by_kind: self
                .by_kind
                .iter()
                .map(|(&k, &n)| (k.to_string(), n))
                .collect(),
        }
    }
}

/// A message's kind; LOGIN and LOGOFF split by who logged in (a viewer or a child proxy).
pub fn kind(msg: &ProxyMsg) -> &'static str {
    match msg {
        ProxyMsg::Hello(_) => "hello",
        ProxyMsg::Heartbeat { .. } => "heartbeat",
        ProxyMsg::StreamAnnounce { .. } => "stream_announce",
        ProxyMsg::StreamEnd { .. } => "stream_end",
        ProxyMsg::Login {
            child: Child::Viewer,
            ..
        } => "login_viewer",
        ProxyMsg::Login {
            child: Child::Proxy(_),
            ..
        } => "login_proxy",
        ProxyMsg::Logoff {
            child: Child::Viewer,
            ..
        } => "logoff_viewer",
        ProxyMsg::Logoff {
            child: Child::Proxy(_),
            ..
        } => "logoff_proxy",
        ProxyMsg::Distribute { .. } => "distribute",
        ProxyMsg::Consolidate { .. } => "consolidate",
        ProxyMsg::LinkDowngrade { .. } => "link_downgrade",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_by_kind_and_second_from_the_start_only() {
        let mut inbox = Inbox::new(10_000_000);
        let login = ProxyMsg::Login {
            stream: "s".into(),
            child: Child::Viewer,
        };
        let beat = ProxyMsg::Heartbeat {
            streams: vec![],
            connections: 0,
            bits_per_sec: 0,
            rtts: vec![],
        };
        inbox.received(9_999_999, &login); // before the trace: not counted
        for t in [10_000_000, 10_100_000, 10_900_000, 12_000_000] {
            inbox.received(t, &login);
        }
        inbox.received(12_500_000, &beat);
        assert_eq!(inbox.take_since_sample(), 5);
        assert_eq!(inbox.take_since_sample(), 0);
        let load = inbox.load(14_000_000, 2);
        assert_eq!(load.messages, 5);
        assert_eq!(load.peak_per_s, 3);
        assert!((load.mean_per_s - 1.25).abs() < 1e-9);
        assert!((load.mean_per_proxy_per_s - 0.625).abs() < 1e-9);
        assert_eq!(load.by_kind["login_viewer"], 4);
        assert_eq!(load.by_kind["heartbeat"], 1);
    }
}
