//! Events from the local data plane: sinks joining and leaving, sources starting and ending,
//! load samples, monitoring results.
//!
//! Viewers only change counters and predictors (the heartbeat carries them); child proxies,
//! sources and lost links are told to the PNC at once when connected, and otherwise after the
//! next `Welcome` (see `Agent::catch_up`). The load also decides whether an activated stream
//! pulls from its parents (standby until its first sink, [0054]; logs off at its last, [0055]).

use crate::protocol::{Child, ProxyMsg};

use super::{Action, Agent, Input};

impl Agent {
    pub(super) fn local(&mut self, input: Input) {
        let (now, sm) = (self.now, self.smoothing);
        let up = self.is_registered();
        match input {
            Input::Timeout | Input::Connected | Input::Disconnected | Input::Received(_) => {}
            Input::ViewerJoined { stream } => {
                let r = self.record(&stream);
                r.viewers = r.viewers.saturating_add(1);
                r.rates.login(now, &sm);
                r.grew = true;
            }
            Input::ViewerLeft { stream } => match self.streams.get_mut(&stream) {
                Some(r) if r.viewers > 0 => {
                    r.viewers -= 1;
                    r.rates.logoff(now, &sm);
                }
                _ => self.log(format!("{stream}: a viewer left that was not counted")),
            },
            Input::ChildJoined { stream, child } => {
                let r = self.record(&stream);
                if !r.children.insert(child) {
                    return;
                }
                r.rates.login(now, &sm);
                r.grew = true;
                // [0053] a child proxy's LOGIN changes the tree: tell the PNC at once.
                if up && r.told_children.insert(child) {
                    self.send(ProxyMsg::Login {
                        stream,
                        child: Child::Proxy(child),
                    });
                }
            }
            Input::ChildLeft { stream, child } => {
                let Some(r) = self.streams.get_mut(&stream) else {
                    self.log(format!("{stream}: {child} left a stream not held here"));
                    return;
                };
                if !r.children.remove(&child) {
                    return;
                }
                r.rates.logoff(now, &sm);
                // [0055] LOGOFF of a child proxy.
                if up && r.told_children.remove(&child) {
                    self.send(ProxyMsg::Logoff {
                        stream,
                        child: Child::Proxy(child),
                    });
                }
            }
            Input::SourceStarted { stream, source } => {
                if self
                    .streams
                    .get(&stream)
                    .is_some_and(|r| r.activation.is_some())
                {
                    // The data plane holds the source; the PNC will sort the conflict out.
                    self.log(format!(
                        "{stream}: a source publishes here while the PNC has it relayed here"
                    ));
                }
                let r = self.record(&stream);
                if r.source.as_ref() == Some(&source) {
                    return;
                }
                r.source = Some(source.clone());
                r.told_source = up;
                self.ended_untold.remove(&stream);
                if up {
                    self.send(ProxyMsg::StreamAnnounce { stream, source });
                }
            }
            Input::SourceEnded { stream } => {
                let Some(r) = self.streams.get_mut(&stream) else {
                    self.log(format!("{stream}: source ended for a stream not held here"));
                    return;
                };
                if r.source.take().is_none() {
                    self.log(format!("{stream}: source ended but none published here"));
                    return;
                }
                let told = std::mem::replace(&mut r.told_source, false);
                if told {
                    if up {
                        self.send(ProxyMsg::StreamEnd { stream });
                    } else {
                        self.ended_untold.insert(stream);
                    }
                }
            }
            Input::MachineLoad {
                connections,
                bits_per_sec,
            } => {
                let counted = self.counted_usage();
                self.untracked.connections = connections.saturating_sub(counted.connections);
                self.untracked.bits_per_sec = bits_per_sec.saturating_sub(counted.bits_per_sec);
            }
            Input::StreamBits {
                stream,
                bits_per_sec,
            } => match self.streams.get_mut(&stream) {
                Some(r) => r.measured_bps = Some(bits_per_sec),
                None => self.log(format!("{stream}: bits/s for a stream not held here")),
            },
            Input::ParentLinkLost { stream, parent } => {
                let Some(r) = self.streams.get_mut(&stream) else {
                    self.log(format!(
                        "{stream}: link to {parent} lost for a stream not held here"
                    ));
                    return;
                };
                let watched = r
                    .activation
                    .as_ref()
                    .is_some_and(|a| a.parents.iter().any(|p| p.id == parent))
                    || r.monitor.iter().any(|p| p.id == parent);
                if !watched {
                    self.log(format!(
                        "{stream}: link to {parent} lost, not a parent or monitored peer"
                    ));
                    return;
                }
                let told = r.links_down.entry(parent).or_insert(false);
                // [0066] one LinkDowngrade per lost link until the PNC re-parents this proxy.
                if up && !*told {
                    *told = true;
                    self.send(ProxyMsg::LinkDowngrade { stream, parent });
                }
            }
            Input::PeerRtt { peer, micros } => {
                self.rtts.insert(peer, micros);
                self.fresh_rtts.insert(peer);
            }
        }
    }

    /// [0054] an activated stream pulls from its parents while it has sinks; [0055] it logs off
    /// them when the last sink leaves.
    pub(super) fn follow_load(&mut self) {
        let mut actions = Vec::new();
        for (name, r) in &mut self.streams {
            let load = r.load();
            let Some(a) = r.activation.as_mut() else {
                continue;
            };
            if load > 0 && !a.pulling {
                a.pulling = true;
                actions.push(Action::Log(format!(
                    "{name}: first sink: pulling from {} [0054]",
                    super::orders::peers(&a.parents)
                )));
                actions.push(Action::Pull {
                    stream: name.clone(),
                    parents: a.parents.clone(),
                });
            } else if load == 0 && a.pulling {
                a.pulling = false;
                actions.push(Action::Log(format!(
                    "{name}: last sink left: logging off the parents [0055]"
                )));
                actions.push(Action::StopPulling {
                    stream: name.clone(),
                });
            }
        }
        self.out.extend(actions);
    }
}
