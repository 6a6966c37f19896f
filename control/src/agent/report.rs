//! Load reports: the heartbeat (per-stream viewers, child proxies, bits/s and predicted rates,
//! machine-wide connections and bits/s, fresh RTTs) and the machine-wide usage behind it
//! ([0047]).

use crate::protocol::{ProxyMsg, Rtt, StreamLoad};

use super::Agent;
use super::load::Usage;

impl Agent {
    /// Connections and bits/s of the streams the agent counts.
    pub(super) fn counted_usage(&self) -> Usage {
        self.streams.values().fold(Usage::default(), |u, r| Usage {
            connections: u.connections.saturating_add(r.load()),
            bits_per_sec: u.bits_per_sec.saturating_add(r.bits_per_sec()),
        })
    }

    /// Connections and bits/s over the whole machine ([0047]): what the agent counts plus what
    /// the dataplane's last sample showed beyond it.
    pub(super) fn machine_usage(&self) -> Usage {
        let counted = self.counted_usage();
        Usage {
            connections: counted
                .connections
                .saturating_add(self.untracked.connections),
            bits_per_sec: counted
                .bits_per_sec
                .saturating_add(self.untracked.bits_per_sec),
        }
    }

    pub(super) fn send_heartbeat(&mut self) {
        let now = self.now;
        let sm = self.smoothing;
        let machine = self.machine_usage();
        let mut streams = Vec::new();
        for (name, r) in &mut self.streams {
            if !r.is_known_to_pnc() {
                continue;
            }
            let rates = r.rates.rates(now, &sm);
            streams.push(StreamLoad {
                stream: name.clone(),
                viewers: r.viewers,
                child_proxies: u32::try_from(r.children.len()).unwrap_or(u32::MAX),
                bits_per_sec: r.bits_per_sec(),
                login_rate: rates.login_per_sec as f32,
                logoff_rate: rates.logoff_per_sec as f32,
            });
        }
        let rtts = std::mem::take(&mut self.fresh_rtts)
            .into_iter()
            .filter_map(|peer| self.rtts.get(&peer).map(|&micros| Rtt { peer, micros }))
            .collect();
        self.send(ProxyMsg::Heartbeat {
            streams,
            connections: machine.connections,
            bits_per_sec: machine.bits_per_sec,
            rtts,
        });
    }
}
