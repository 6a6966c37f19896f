//! Synthetic proxies, written for the simulator and kept for comparison with the agents: every
//! machine is registered at time 0 and every stream announced at its origin; a proxy sends one
//! LOGIN and one LOGOFF per viewer, a heartbeat with its viewer counts every interval, decides
//! nothing itself, and carries out `Activate`, `RedirectChildren` and `Deactivate`; phase orders
//! and parent switches change nothing here (no child proxies are modelled).

use super::{Ev, World, addr};
use control::core::{Event, Registration};
use control::protocol::{Capacity, Child, PncMsg, ProxyId, ProxyMsg, SourceInfo, StreamLoad};

impl World<'_> {
    /// Registers every machine and announces every stream at its origin, at time 0.
    pub(super) fn setup_synthetic(&mut self) {
        let o = &self.cfg.overlay;
        for i in 0..self.machines.len() {
            let m = &self.machines[i];
            let reg = Registration {
                proxy: ProxyId(m.id),
                name: format!("p{}", m.id),
                data_addr: addr(m.id),
                // Relays: the operator's settings name the region.
                region: m.origin.then(|| "origins".to_string()),
                capacity: Capacity {
                    connections: m.capacity,
                    bits_per_sec: if m.origin {
                        u64::MAX / 4
                    } else {
                        o.bits_per_sec
                    },
                },
                streams: vec![],
                rtts: vec![],
                decides: false,
            };
            self.core(Event::Register(reg));
        }
        for (s, name) in self.trace.streams.iter().enumerate() {
            let origin = 1 + s as u32 % o.origins.max(1);
            self.core(Event::Message {
                from: ProxyId(origin),
                msg: ProxyMsg::StreamAnnounce {
                    stream: name.clone(),
                    source: SourceInfo {
                        source: format!("origin{origin}"),
                        content_type: "video/mp2t".into(),
                        bitrate_bps: self.cfg.bitrate_bps,
                    },
                },
            });
        }
    }

    pub(super) fn synthetic_viewer_login(&mut self, proxy: u32, stream: u32) {
        let name = self.trace.streams[stream as usize].clone();
        self.at(
            self.cfg.control_delay_us,
            Ev::ToPnc {
                from: proxy,
                msg: ProxyMsg::Login {
                    stream: name,
                    child: Child::Viewer,
                },
            },
        );
    }

    pub(super) fn synthetic_viewer_logoff(&mut self, proxy: u32, stream: u32) {
        let name = self.trace.streams[stream as usize].clone();
        self.at(
            self.cfg.control_delay_us,
            Ev::ToPnc {
                from: proxy,
                msg: ProxyMsg::Logoff {
                    stream: name,
                    child: Child::Viewer,
                },
            },
        );
    }

    pub(super) fn heartbeat(&mut self, proxy: u32) {
        let Some(mi) = self.machine_ix(proxy) else {
            return;
        };
        if !self.machines[mi].alive {
            return;
        }
        let m = &self.machines[mi];
        let streams: Vec<StreamLoad> = m
            .streams
            .iter()
            .map(|(&s, sv)| StreamLoad {
                stream: self.trace.streams[s as usize].clone(),
                viewers: sv.viewers.len() as u32,
                child_proxies: 0,
                bits_per_sec: sv.viewers.len() as u64 * self.cfg.bitrate_bps,
                login_rate: 0.0,
                logoff_rate: 0.0,
            })
            .collect();
        let msg = ProxyMsg::Heartbeat {
            streams,
            connections: m.connections,
            bits_per_sec: u64::from(m.connections) * self.cfg.bitrate_bps,
            rtts: vec![],
        };
        self.at(self.cfg.control_delay_us, Ev::ToPnc { from: proxy, msg });
        self.at(self.heartbeat_us, Ev::Heartbeat { proxy });
    }

    /// A PNC message reaches the live synthetic proxy on machine `mi`.
    pub(super) fn synthetic_order(&mut self, mi: usize, msg: PncMsg) {
        let to = self.machines[mi].id;
        match msg {
            PncMsg::Welcome { heartbeat_ms, .. } => {
                self.heartbeat_us = u64::from(heartbeat_ms.max(1)) * 1000;
                // Machines do not beat in step: spread the first beat over one interval.
                let first = self.rng.below(self.heartbeat_us as usize) as u64;
                self.at(first, Ev::Heartbeat { proxy: to });
            }
            PncMsg::Activate { stream, tier, .. } => {
                if let Some(s) = self.stream_ix(&stream) {
                    self.start_serving(mi, s, tier, true);
                }
            }
            PncMsg::RedirectChildren { stream, to: target } => {
                let Some(s) = self.stream_ix(&stream) else {
                    return;
                };
                let moving = self.take_viewers(mi, s, true);
                for v in moving {
                    self.r.viewer_migrations += 1;
                    self.at(
                        self.cfg.control_delay_us,
                        Ev::Arrive {
                            viewer: v,
                            proxy: target.id.0,
                            moved: true,
                        },
                    );
                }
            }
            PncMsg::Deactivate { stream } => {
                let Some(s) = self.stream_ix(&stream) else {
                    return;
                };
                // The PNC has already written these viewers off: no LOGOFF for them.
                let orphans = self.take_viewers(mi, s, false);
                self.drop_stream(mi, s);
                self.r.deactivations += 1;
                self.orphan(orphans);
            }
            PncMsg::SwitchToParent { .. }
            | PncMsg::StopAccepting { .. }
            | PncMsg::StartAccepting { .. }
            | PncMsg::MonitorList { .. }
            | PncMsg::Refused(_) => {}
        }
    }
}
