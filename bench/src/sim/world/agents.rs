//! The relay machines' control side as the proxies run it: one `control::agent::Agent` per
//! machine (origins included), its actions carried out by the simulated data plane.
//!
//! - `Connect`: the control connection is up after the control delay (`Input::Connected`);
//!   `Send`: the message reaches the PNC after the control delay; `Close`: the PNC sees the
//!   connection close.
//! - `Activate`: the stream is served after the activation delay; `StopAccepting` /
//!   `StartAccepting`: viewers arriving are sent on or taken; `RedirectChildren`: the viewers
//!   move; `Deactivate`: the viewers resolve again, the parents are left and the child proxies
//!   lose their link (`Input::ParentLinkLost`).
//! - `Pull` / `SwitchParents` / `StopPulling`: the pull reaches each parent after the control
//!   delay, where it is a child proxy (`Input::ChildJoined` / `ChildLeft`) and a connection.
//! - Timers: each agent has exactly one live queue entry, at its own `poll_timeout()`, re-armed
//!   after each `handle`; an idle machine costs one event per heartbeat, whatever the number of
//!   viewers elsewhere. A re-armed timer leaves its old entry behind, skipped by generation.
//!
//! The agents start at seeded offsets within one heartbeat interval, so that machines do not
//! beat in step; each agent's back-off jitter is seeded from the run's seed and its machine id.

use super::{Ev, World, addr};
use crate::sim::rng::Rng;
use control::agent::{Action, Agent, AgentConfig, Input};
use control::core::Time;
use control::protocol::{Capacity, Peer, ProxyId, SourceInfo};
use std::collections::BTreeMap;
use std::time::Duration;

/// The control protocol's shared token in the simulation.
pub(super) const TOKEN: &str = "simulated";

/// The simulated data plane's links and the agents' timers.
#[derive(Default)]
pub(super) struct Agents {
    /// By machine index; `None` once the machine crashed.
    agents: Vec<Option<Agent>>,
    timers: Vec<Timer>,
    /// Parents each (machine index, stream) pulls from.
    pulls: BTreeMap<(usize, u32), Vec<u32>>,
    /// Child proxies pulling each (machine index, stream) from here.
    children: BTreeMap<(usize, u32), Vec<u32>>,
    /// Wall time inside `Agent::handle`, and how many inputs it took.
    pub(super) time: Duration,
    pub(super) handled: u64,
}

/// The one live queue entry of an agent's timer.
#[derive(Clone, Copy, Debug, Default)]
struct Timer {
    armed: Option<u64>,
    generation: u32,
}

impl World<'_> {
    /// One agent per machine; the origins publish their streams and start at time 0, the
    /// relays at seeded offsets within one heartbeat interval.
    pub(super) fn setup_agents(&mut self) {
        for mi in 0..self.machines.len() {
            let config = self.agent_config(mi);
            self.agents.agents.push(Some(Agent::new(config)));
            self.agents.timers.push(Timer::default());
        }
        let origins = self.cfg.overlay.origins.max(1) as usize;
        for (s, name) in self.trace.streams.iter().enumerate() {
            let input = Input::SourceStarted {
                stream: name.clone(),
                source: SourceInfo {
                    source: format!("origin{}", 1 + s % origins),
                    content_type: "video/mp2t".into(),
                    bitrate_bps: self.cfg.bitrate_bps,
                },
            };
            self.agent_hears(s % origins, input);
        }
        for mi in 0..self.machines.len() {
            let start = if self.machines[mi].origin {
                0
            } else {
                self.rng.below(self.heartbeat_us as usize) as u64
            };
            self.arm_at(mi, Some(start));
        }
    }

    fn agent_config(&self, mi: usize) -> AgentConfig {
        let m = &self.machines[mi];
        let core = &self.cfg.core;
        let mut c = AgentConfig::new(
            ProxyId(m.id),
            format!("p{}", m.id),
            TOKEN,
            addr(m.id),
            Capacity {
                connections: m.capacity,
                bits_per_sec: if m.origin {
                    u64::MAX / 4
                } else {
                    self.cfg.overlay.bits_per_sec
                },
            },
        );
        // Relays: the operator's settings name the region.
        c.region = m.origin.then(|| "origins".to_string());
        c.delta_t_ms = core.delta_t_ms;
        c.alpha = core.alpha;
        c.beta = core.beta;
        c.min_threshold = core.min_threshold;
        // Only reacting one proxy at a time ignores the predicted rates; every predictive
        // growth (`predictive_fill` too) has its proxies ask ΔT ahead ([0054]).
        c.predictive = core.growth != control::core::Growth::OneAtATime;
        c.seed = Rng::new(
            self.cfg
                .seed
                .wrapping_add(u64::from(m.id).wrapping_mul(0x9E37_79B9_7F4A_7C15)),
        )
        .next_u64();
        c
    }

    /// Machine `mi`'s data plane tells its agent something now (after the current event, so
    /// that no agent is re-entered while its actions are carried out).
    pub(super) fn agent_hears(&mut self, mi: usize, input: Input) {
        self.at(0, Ev::AgentInput { machine: mi, input });
    }

    /// Feed one input to machine `mi`'s agent, carry out its actions, re-arm its timer.
    pub(super) fn drive(&mut self, mi: usize, input: Input) {
        let Some(agent) = self.agents.agents[mi].as_mut() else {
            return;
        };
        let t = std::time::Instant::now();
        let actions = agent.handle(input, Time(self.now));
        self.agents.time += t.elapsed();
        self.agents.handled += 1;
        for action in actions {
            self.carry_out(mi, action);
        }
        let next = self.agents.agents[mi]
            .as_ref()
            .and_then(Agent::poll_timeout)
            // After a call the agent's timeout is later than now; never spin on it.
            .map(|t| t.micros().max(self.now + 1));
        self.arm_at(mi, next);
    }

    pub(super) fn agent_timer(&mut self, mi: usize, generation: u32) {
        let timer = &mut self.agents.timers[mi];
        if timer.generation != generation {
            return;
        }
        timer.armed = None;
        self.drive(mi, Input::Timeout);
    }

    /// Keep one live queue entry at `at` for machine `mi`'s agent.
    fn arm_at(&mut self, mi: usize, at: Option<u64>) {
        let timer = &mut self.agents.timers[mi];
        if timer.armed == at {
            return;
        }
        timer.generation = timer.generation.wrapping_add(1);
        timer.armed = at;
        let generation = timer.generation;
        if let Some(at) = at {
            self.queue.push(
                at,
                Ev::AgentTimer {
                    machine: mi,
                    generation,
                },
            );
        }
    }

    fn carry_out(&mut self, mi: usize, action: Action) {
        let id = self.machines[mi].id;
        let delay = self.cfg.control_delay_us;
        match action {
            Action::Connect => self.at(
                delay,
                Ev::AgentInput {
                    machine: mi,
                    input: Input::Connected,
                },
            ),
            Action::Close => self.at(delay, Ev::ControlClosed { from: id }),
            Action::Send(msg) => self.at(delay, Ev::ToPnc { from: id, msg }),
            Action::Activate {
                stream,
                tier,
                accepting,
                ..
            } => {
                if let Some(s) = self.stream_ix(&stream) {
                    self.start_serving(mi, s, tier, accepting);
                }
            }
            Action::Pull { stream, parents } => {
                let Some(s) = self.stream_ix(&stream) else {
                    return;
                };
                let parents = ids(&parents);
                for &p in &parents {
                    self.pull_from(p, id, s);
                }
                self.agents.pulls.insert((mi, s), parents);
            }
            Action::SwitchParents { stream, parents } => {
                let Some(s) = self.stream_ix(&stream) else {
                    return;
                };
                let new = ids(&parents);
                let old = self.agents.pulls.remove(&(mi, s)).unwrap_or_default();
                // Make-before-break ([0046]): the new parents first, then leave the old ones.
                for &p in new.iter().filter(|p| !old.contains(p)) {
                    self.pull_from(p, id, s);
                }
                for &p in old.iter().filter(|p| !new.contains(p)) {
                    self.stop_pulling_from(p, id, s);
                }
                self.agents.pulls.insert((mi, s), new);
            }
            Action::StopPulling { stream } => {
                if let Some(s) = self.stream_ix(&stream) {
                    self.stop_pulling(mi, s);
                }
            }
            Action::StopAccepting {
                stream,
                redirect_to,
            } => {
                let ids = ids(&redirect_to);
                let now = self.now;
                if let Some(sv) = self
                    .stream_ix(&stream)
                    .and_then(|s| self.machines[mi].streams.get_mut(&s))
                {
                    if sv.accepting {
                        sv.stopped_at = now;
                    }
                    sv.accepting = false;
                    sv.redirect_to = ids;
                }
            }
            Action::StartAccepting { stream } => {
                if let Some(sv) = self
                    .stream_ix(&stream)
                    .and_then(|s| self.machines[mi].streams.get_mut(&s))
                {
                    sv.accepting = true;
                    sv.redirect_to.clear();
                }
            }
            Action::RedirectChildren { stream, to } => {
                let Some(s) = self.stream_ix(&stream) else {
                    return;
                };
                // [0037] the viewers move to `to`, resuming there.
                for v in self.take_viewers(mi, s, true) {
                    self.r.viewer_migrations += 1;
                    self.viewers[v as usize].bounces = 0;
                    self.at(
                        delay,
                        Ev::Arrive {
                            viewer: v,
                            proxy: to.id.0,
                            moved: true,
                        },
                    );
                }
            }
            Action::Deactivate { stream } => {
                let Some(s) = self.stream_ix(&stream) else {
                    return;
                };
                let orphans = self.take_viewers(mi, s, true);
                self.stop_pulling(mi, s);
                self.drop_children(mi, s, true);
                self.drop_stream(mi, s);
                self.r.deactivations += 1;
                self.orphan(orphans);
            }
            // No link failures are modelled: monitoring never reports one.
            Action::Monitor { .. } | Action::Log(_) => {}
        }
    }

    /// Machine `child` starts pulling stream `s` from machine `parent`.
    fn pull_from(&mut self, parent: u32, child: u32, s: u32) {
        self.r.child_links_changed += 1;
        self.at(
            self.cfg.control_delay_us,
            Ev::ChildConnects {
                parent,
                child,
                stream: s,
            },
        );
    }

    fn stop_pulling_from(&mut self, parent: u32, child: u32, s: u32) {
        self.r.child_links_changed += 1;
        self.at(
            self.cfg.control_delay_us,
            Ev::ChildDisconnects {
                parent,
                child,
                stream: s,
            },
        );
    }

    /// [0055] machine `mi` logs off every parent of stream `s`.
    fn stop_pulling(&mut self, mi: usize, s: u32) {
        let id = self.machines[mi].id;
        for p in self.agents.pulls.remove(&(mi, s)).unwrap_or_default() {
            self.stop_pulling_from(p, id, s);
        }
    }

    /// The child proxies pulling stream `s` from machine `mi` lose their link: each one's
    /// data plane sees the connection close ([0066]). `tell`: `mi`'s agent hears them go.
    fn drop_children(&mut self, mi: usize, s: u32, tell: bool) {
        let id = self.machines[mi].id;
        let name = self.trace.streams[s as usize].clone();
        for child in self.agents.children.remove(&(mi, s)).unwrap_or_default() {
            self.r.child_links_changed += 1;
            self.machines[mi].connections -= 1;
            if tell {
                self.agent_hears(
                    mi,
                    Input::ChildLeft {
                        stream: name.clone(),
                        child: ProxyId(child),
                    },
                );
            }
            if let Some(ci) = self.machine_ix(child) {
                self.at(
                    self.cfg.control_delay_us,
                    Ev::AgentInput {
                        machine: ci,
                        input: Input::ParentLinkLost {
                            stream: name.clone(),
                            parent: ProxyId(id),
                        },
                    },
                );
            }
        }
    }

    /// A child's pull reaches its parent: a connection there, and a child proxy for the
    /// parent's agent; or, if the parent does not serve the stream (dead, deactivated), the
    /// child's link is lost.
    pub(super) fn child_connects(&mut self, parent: u32, child: u32, s: u32) {
        let (Some(pi), Some(ci)) = (self.machine_ix(parent), self.machine_ix(child)) else {
            return;
        };
        let still_wanted = self
            .agents
            .pulls
            .get(&(ci, s))
            .is_some_and(|ps| ps.contains(&parent));
        if !still_wanted || !self.machines[ci].alive {
            return;
        }
        let name = self.trace.streams[s as usize].clone();
        let p = &self.machines[pi];
        if !p.alive || !(p.origin || p.streams.contains_key(&s)) {
            self.drive(
                ci,
                Input::ParentLinkLost {
                    stream: name,
                    parent: ProxyId(parent),
                },
            );
            return;
        }
        let list = self.agents.children.entry((pi, s)).or_default();
        if list.contains(&child) {
            return;
        }
        list.push(child);
        self.machines[pi].connections += 1;
        self.drive(
            pi,
            Input::ChildJoined {
                stream: name,
                child: ProxyId(child),
            },
        );
    }

    pub(super) fn child_disconnects(&mut self, parent: u32, child: u32, s: u32) {
        let Some(pi) = self.machine_ix(parent) else {
            return;
        };
        let Some(list) = self.agents.children.get_mut(&(pi, s)) else {
            return;
        };
        let Some(at) = list.iter().position(|&c| c == child) else {
            return;
        };
        list.swap_remove(at);
        if list.is_empty() {
            self.agents.children.remove(&(pi, s));
        }
        self.machines[pi].connections -= 1;
        self.drive(
            pi,
            Input::ChildLeft {
                stream: self.trace.streams[s as usize].clone(),
                child: ProxyId(child),
            },
        );
    }

    /// Machine `mi` died: its agent stops, its parents see its pulls close, its children lose
    /// their link.
    pub(super) fn crash_agent(&mut self, mi: usize) {
        self.agents.agents[mi] = None;
        self.arm_at(mi, None);
        let pulled: Vec<u32> = self
            .agents
            .pulls
            .range((mi, 0)..=(mi, u32::MAX))
            .map(|(&(_, s), _)| s)
            .collect();
        for s in pulled {
            self.stop_pulling(mi, s);
        }
        let served: Vec<u32> = self
            .agents
            .children
            .range((mi, 0)..=(mi, u32::MAX))
            .map(|(&(_, s), _)| s)
            .collect();
        for s in served {
            self.drop_children(mi, s, false);
        }
    }
}

fn ids(peers: &[Peer]) -> Vec<u32> {
    peers.iter().map(|p| p.id.0).collect()
}
