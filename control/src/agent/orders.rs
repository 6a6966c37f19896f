//! What the PNC's messages turn into: validation, then data-plane orders ([`Action`]s) and the
//! agent's own view of each stream.
//!
//! Every `PncMsg` is checked before it is acted on: an order for a stream not active here, an
//! empty or self-naming parent list, a redirect to itself, ... becomes an [`Action::Log`] and
//! changes nothing. An order that changes nothing (Activate with the same tier, parents and
//! accepting; a switch to the parents it already has) is idempotent: no data-plane action.
//!
//! Phase and accepting are apart, as in the core: activation starts the expansion phase ([0030])
//! whether or not viewers are sent here (upper tiers serve child proxies only, and still ask for
//! DISTRIBUTE when their children fill them); `StopAccepting` starts the contraction phase (the
//! PNC's answer to a DISTRIBUTE, [0035]) and `StartAccepting` a new expansion phase ([0060]).

use crate::protocol::{Peer, PncMsg, ProxyId, SourceInfo};

use super::decide::Phase;
use super::link::Link;
use super::stream::Activation;
use super::{Action, Agent};

impl Agent {
    pub(super) fn received(&mut self, msg: PncMsg) {
        match msg {
            PncMsg::Welcome {
                version,
                heartbeat_ms,
            } => self.welcomed(version, heartbeat_ms),
            PncMsg::Refused(reason) => self.refused(reason),
            order if matches!(self.link, Link::Up { .. }) => self.order(order),
            order => self.log(format!(
                "control: order before Welcome ignored: {}",
                order.kind()
            )),
        }
    }

    fn order(&mut self, msg: PncMsg) {
        match msg {
            PncMsg::Welcome { .. } | PncMsg::Refused(_) => {}
            PncMsg::Activate {
                stream,
                source,
                tier,
                parents,
                accepting,
            } => self.activate(stream, source, tier, parents, accepting),
            PncMsg::SwitchToParent { stream, parents } => self.switch(stream, parents),
            PncMsg::StopAccepting {
                stream,
                redirect_to,
            } => {
                if !self.check_active(&stream, "StopAccepting") {
                    return;
                }
                let me = self.config.proxy;
                if redirect_to.iter().any(|p| p.id == me) {
                    self.log(format!(
                        "{stream}: StopAccepting redirects to this proxy itself, ignored"
                    ));
                    return;
                }
                let r = self.record(&stream);
                if let Some(a) = r.activation.as_mut() {
                    a.accepting = false;
                }
                // [0030] [0035] the PNC starts the contraction phase (its DISTRIBUTE was served).
                let changed = r.set_phase(Phase::Contraction);
                if changed {
                    self.log(format!(
                        "{stream}: contraction phase [0030]: new viewers go to {}",
                        peers(&redirect_to)
                    ));
                }
                // The redirect list may change while the phase does not: pass it on.
                self.out.push(Action::StopAccepting {
                    stream,
                    redirect_to,
                });
            }
            PncMsg::StartAccepting { stream } => {
                if !self.check_active(&stream, "StartAccepting") {
                    return;
                }
                let r = self.record(&stream);
                let was_accepting = r.activation.as_ref().is_some_and(|a| a.accepting);
                if let Some(a) = r.activation.as_mut() {
                    a.accepting = true;
                }
                if r.set_phase(Phase::Expansion) || !was_accepting {
                    self.log(format!("{stream}: expansion phase again [0060]"));
                    self.out.push(Action::StartAccepting { stream });
                }
            }
            PncMsg::RedirectChildren { stream, to } => {
                if !self.check_active(&stream, "RedirectChildren") {
                    return;
                }
                if to.id == self.config.proxy {
                    self.log(format!("{stream}: RedirectChildren to itself, ignored"));
                    return;
                }
                self.log(format!("{stream}: viewers redirected to {} [0037]", to.id));
                self.out.push(Action::RedirectChildren { stream, to });
            }
            PncMsg::Deactivate { stream } => {
                if !self.check_active(&stream, "Deactivate") {
                    return;
                }
                let r = self.record(&stream);
                r.activation = None;
                r.monitor.clear();
                r.links_down.clear();
                self.log(format!("{stream}: deactivated [0030]"));
                self.out.push(Action::Deactivate { stream });
            }
            PncMsg::MonitorList { stream, peers } => {
                if !self.check_active(&stream, "MonitorList") {
                    return;
                }
                let me = self.config.proxy;
                let mut list: Vec<Peer> = Vec::with_capacity(peers.len());
                for p in peers {
                    if p.id != me && !list.iter().any(|q| q.id == p.id) {
                        list.push(p);
                    }
                }
                let r = self.record(&stream);
                if r.monitor == list {
                    return;
                }
                r.monitor = list.clone();
                // A link to a peer no longer watched is no longer reported.
                let parents: Vec<_> = r
                    .activation
                    .as_ref()
                    .map(|a| a.parents.iter().map(|p| p.id).collect())
                    .unwrap_or_default();
                r.links_down
                    .retain(|id, _| parents.contains(id) || list.iter().any(|p| p.id == *id));
                self.out.push(Action::Monitor {
                    stream,
                    peers: list,
                });
            }
        }
    }

    fn activate(
        &mut self,
        stream: String,
        info: SourceInfo,
        tier: u32,
        parents: Vec<Peer>,
        accepting: bool,
    ) {
        let Some(parents) = self.valid_parents(&stream, "Activate", parents) else {
            return;
        };
        if self
            .streams
            .get(&stream)
            .is_some_and(|r| r.source.is_some())
        {
            self.log(format!(
                "{stream}: Activate for a stream published here (its origin), ignored"
            ));
            return;
        }
        let r = self.record(&stream);
        match r.activation.as_mut() {
            None => {
                r.activation = Some(Activation {
                    info: info.clone(),
                    tier,
                    parents: parents.clone(),
                    // [0030] an activated proxy is in the expansion phase until the PNC
                    // starts its contraction; `accepting` only says whether viewers are sent
                    // here (upper tiers serve child proxies only).
                    phase: Phase::Expansion,
                    accepting,
                    pulling: false,
                });
                r.distribute.new_phase();
                r.consolidate.new_phase();
                self.log(format!(
                    "{stream}: activated in tier {tier}, parents {} [0030]",
                    peers(&parents)
                ));
                self.out.push(Action::Activate {
                    stream,
                    source: info,
                    tier,
                    parents,
                    accepting,
                });
            }
            Some(a) => {
                // Already active: only what differs becomes an order.
                a.info = info;
                a.tier = tier;
                let same_parents = a.parents == parents;
                let before: Vec<ProxyId> = a.parents.iter().map(|p| p.id).collect();
                if !same_parents {
                    a.parents = parents.clone();
                }
                let pulling = a.pulling;
                let accepting_changed = a.accepting != accepting;
                a.accepting = accepting;
                if !same_parents {
                    self.log(format!(
                        "{stream}: re-activated with parents {}",
                        peers(&parents)
                    ));
                    self.forget_links_on_reparent(&stream, &before, &parents);
                    if pulling {
                        self.out.push(Action::SwitchParents {
                            stream: stream.clone(),
                            parents,
                        });
                    }
                }
                if accepting_changed {
                    self.out.push(if accepting {
                        Action::StartAccepting { stream }
                    } else {
                        Action::StopAccepting {
                            stream,
                            redirect_to: Vec::new(),
                        }
                    });
                }
            }
        }
    }

    fn switch(&mut self, stream: String, parents: Vec<Peer>) {
        if !self.check_active(&stream, "SwitchToParent") {
            return;
        }
        let Some(parents) = self.valid_parents(&stream, "SwitchToParent", parents) else {
            return;
        };
        let r = self.record(&stream);
        let Some(a) = r.activation.as_mut() else {
            return;
        };
        if a.parents == parents {
            return;
        }
        let before: Vec<ProxyId> = a.parents.iter().map(|p| p.id).collect();
        a.parents = parents.clone();
        let pulling = a.pulling;
        self.forget_links_on_reparent(&stream, &before, &parents);
        if !pulling {
            self.log(format!(
                "{stream}: standby takes parents {} for its first sink",
                peers(&parents)
            ));
            return;
        }
        self.log(format!(
            "{stream}: switching to parents {} make-before-break [0046]",
            peers(&parents)
        ));
        self.out.push(Action::SwitchParents { stream, parents });
    }

    /// A parent list is valid when non-empty and not naming this proxy; duplicates are dropped.
    fn valid_parents(&mut self, stream: &str, what: &str, parents: Vec<Peer>) -> Option<Vec<Peer>> {
        let me = self.config.proxy;
        if parents.iter().any(|p| p.id == me) {
            self.log(format!(
                "{stream}: {what} names this proxy as its own parent, ignored"
            ));
            return None;
        }
        let mut list: Vec<Peer> = Vec::with_capacity(parents.len());
        for p in parents {
            if !list.iter().any(|q| q.id == p.id) {
                list.push(p);
            }
        }
        if list.is_empty() {
            self.log(format!("{stream}: {what} with no parent, ignored"));
            return None;
        }
        Some(list)
    }

    /// Whether `stream` is active here (activated by the PNC); logs the rejected order if not.
    fn check_active(&mut self, stream: &str, what: &str) -> bool {
        let active = self
            .streams
            .get(stream)
            .is_some_and(|r| r.activation.is_some());
        if !active {
            self.log(format!(
                "{stream}: {what} for a stream not active here, ignored"
            ));
        }
        active
    }

    /// Re-parented from `before` to `parents`: the links reported down to peers that are
    /// neither parents nor monitored now are forgotten, and so are those to peers that are
    /// parents anew. The PNC chose such a parent after the report ([0066]): a loss of its link
    /// from now on is a new one, to report again. (A monitored peer stays in the map while this
    /// proxy is away from it, so without this a parent it moved back to could never be
    /// reported lost a second time.)
    fn forget_links_on_reparent(&mut self, stream: &str, before: &[ProxyId], parents: &[Peer]) {
        if let Some(r) = self.streams.get_mut(stream) {
            let monitor = &r.monitor;
            r.links_down.retain(|id, _| {
                let parent = parents.iter().any(|p| p.id == *id);
                let anew = parent && !before.contains(id);
                !anew && (parent || monitor.iter().any(|p| p.id == *id))
            });
        }
    }
}

pub(super) fn peers(list: &[Peer]) -> String {
    if list.is_empty() {
        return "none".into();
    }
    list.iter()
        .map(|p| format!("{}@{}", p.id, p.addr))
        .collect::<Vec<_>>()
        .join(", ")
}
