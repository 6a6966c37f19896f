//! What each of the agent's [`Action`]s becomes at this relay: an [`Order`] for the reactors, a
//! change of who takes new viewers ([`Admission`]), or a duty left to the link itself (the
//! control connection, the monitor, the log).
//!
//! The agent has already validated the PNC's messages and dropped repeats; this only translates.
//! Addresses become plain socket addresses and ids plain numbers, so that the reactors need no
//! control-protocol type (`orders.rs`).

use std::net::SocketAddr;

use control::agent::Action;
use control::protocol::{Peer, ProxyMsg};
use tracing::info;

use super::OrderSink;
use crate::orders::{Admission, Admit, Order, ParentAddr};

use control::agent::STOP_ACCEPTING_GRACE;

/// What is left for the link once orders and admission are carried out.
#[derive(Clone, Debug, PartialEq)]
pub enum Duty {
    /// Open the control connection.
    Connect,
    /// Close it (no `Disconnected` is owed to the agent).
    Close,
    /// Send this on the control connection.
    Send(ProxyMsg),
    /// Probe these peers for `stream` ([0053], [0066]); an empty list stops it.
    Watch { stream: String, peers: Vec<Peer> },
    /// A line for the log.
    Log(String),
}

/// Carries out the agent's actions on the reactors (through `orders`) and the front door
/// (through `admission`).
pub struct Carrier<'a> {
    pub orders: &'a dyn OrderSink,
    pub admission: &'a Admission,
}

impl Carrier<'_> {
    /// Carries out `action`; returns what the link must still do.
    pub fn carry(&self, action: Action) -> Vec<Duty> {
        match action {
            Action::Connect => vec![Duty::Connect],
            Action::Close => vec![Duty::Close],
            Action::Send(msg) => vec![Duty::Send(msg)],
            Action::Log(line) => vec![Duty::Log(line)],
            Action::Activate {
                stream,
                source,
                tier,
                parents,
                accepting,
            } => {
                // A standby: it pulls from `parents` at its first sink, when the agent says
                // `Pull` ([0054]). Until the PNC says otherwise, new viewers come here only if
                // it is accepting; an upper tier serves child proxies alone ([0030], [0035]).
                self.admission.set(&stream, admit(accepting, &[]));
                self.admission.set_activated(&stream, true);
                info!(
                    stream = %stream,
                    source = %source.source,
                    tier,
                    parents = ?parents_of(&parents),
                    accepting,
                    "activated by the PNC"
                );
                Vec::new()
            }
            Action::Pull { stream, parents } => {
                self.orders.send_order(Order::Pull {
                    stream,
                    parents: parents_of(&parents),
                });
                Vec::new()
            }
            Action::SwitchParents { stream, parents } => {
                self.orders.send_order(Order::SwitchParents {
                    stream,
                    parents: parents_of(&parents),
                });
                Vec::new()
            }
            Action::StopPulling { stream } => {
                self.orders.send_order(Order::StopPulling { stream });
                Vec::new()
            }
            Action::RedirectChildren { stream, to } => {
                self.orders.send_order(Order::RedirectChildren {
                    stream,
                    to: to.addr,
                });
                Vec::new()
            }
            Action::StopAccepting {
                stream,
                redirect_to,
            } => {
                self.admission
                    .set_after(&stream, admit(false, &redirect_to), STOP_ACCEPTING_GRACE);
                Vec::new()
            }
            Action::StartAccepting { stream } => {
                self.admission.set(&stream, Admit::Accept);
                Vec::new()
            }
            Action::Deactivate { stream } => {
                // The stream is no longer this proxy's to refuse; without a feed it is gone.
                self.admission.set(&stream, Admit::Accept);
                self.admission.set_activated(&stream, false);
                self.orders.send_order(Order::Deactivate {
                    stream: stream.clone(),
                });
                vec![Duty::Watch {
                    stream,
                    peers: Vec::new(),
                }]
            }
            Action::Monitor { stream, peers } => vec![Duty::Watch { stream, peers }],
        }
    }
}

fn admit(accepting: bool, elsewhere: &[Peer]) -> Admit {
    if accepting {
        Admit::Accept
    } else {
        Admit::Redirect(
            elsewhere
                .iter()
                .map(|p| p.addr)
                .collect::<Vec<SocketAddr>>(),
        )
    }
}

fn parents_of(peers: &[Peer]) -> Vec<ParentAddr> {
    peers
        .iter()
        .map(|p| ParentAddr {
            id: p.id.0,
            addr: p.addr,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use control::protocol::{ProxyId, SourceInfo};

    use super::*;

    /// The reactors, as far as the link sees them: the orders they were given.
    #[derive(Default)]
    struct Recorded(Mutex<Vec<Order>>);

    impl OrderSink for Recorded {
        fn send_order(&self, order: Order) {
            self.0.lock().unwrap().push(order);
        }
    }

    impl Recorded {
        fn take(&self) -> Vec<Order> {
            std::mem::take(&mut self.0.lock().unwrap())
        }
    }

    fn peer(id: u32) -> Peer {
        Peer {
            id: ProxyId(id),
            addr: SocketAddr::from(([127, 0, 0, 1], 9000 + id as u16)),
        }
    }

    fn parent(id: u32) -> ParentAddr {
        ParentAddr {
            id,
            addr: peer(id).addr,
        }
    }

    fn activate(accepting: bool) -> Action {
        Action::Activate {
            stream: "demo".into(),
            source: SourceInfo {
                source: "www.ccrl.com".into(),
                content_type: "video/mp2t".into(),
                bitrate_bps: 0,
            },
            tier: 2,
            parents: vec![peer(11)],
            accepting,
        }
    }

    #[test]
    fn data_plane_actions_become_orders_with_plain_addresses() {
        let sink = Recorded::default();
        let admission = Admission::default();
        let c = Carrier {
            orders: &sink,
            admission: &admission,
        };
        let parents = vec![peer(11), peer(12)];
        assert!(
            c.carry(Action::Pull {
                stream: "demo".into(),
                parents: parents.clone()
            })
            .is_empty()
        );
        c.carry(Action::SwitchParents {
            stream: "demo".into(),
            parents: vec![peer(13)],
        });
        c.carry(Action::RedirectChildren {
            stream: "demo".into(),
            to: peer(22),
        });
        c.carry(Action::StopPulling {
            stream: "demo".into(),
        });
        assert_eq!(
            sink.take(),
            vec![
                Order::Pull {
                    stream: "demo".into(),
                    parents: vec![parent(11), parent(12)]
                },
                Order::SwitchParents {
                    stream: "demo".into(),
                    parents: vec![parent(13)]
                },
                Order::RedirectChildren {
                    stream: "demo".into(),
                    to: peer(22).addr
                },
                Order::StopPulling {
                    stream: "demo".into()
                },
            ]
        );
        // Nothing of that touched admission.
        assert_eq!(admission.of("demo"), Admit::Accept);
    }

    #[test]
    fn phases_set_who_takes_new_viewers() {
        let sink = Recorded::default();
        let admission = Admission::default();
        let c = Carrier {
            orders: &sink,
            admission: &admission,
        };
        // A standby gives no order: it pulls at its first sink.
        assert!(c.carry(activate(true)).is_empty());
        assert_eq!(admission.of("demo"), Admit::Accept);
        assert!(admission.is_activated("demo"));
        assert!(sink.take().is_empty());
        c.carry(Action::StopAccepting {
            stream: "demo".into(),
            redirect_to: vec![peer(22), peer(23)],
        });
        // Ordered at once; the viewers resolved here just before are still taken for a while.
        assert_eq!(
            admission.ordered("demo"),
            Admit::Redirect(vec![peer(22).addr, peer(23).addr])
        );
        assert_eq!(admission.of("demo"), Admit::Accept);
        c.carry(Action::StartAccepting {
            stream: "demo".into(),
        });
        assert_eq!(admission.of("demo"), Admit::Accept);
        // An upper tier takes child proxies only: a viewer gets 503 there.
        c.carry(activate(false));
        assert_eq!(admission.of("demo"), Admit::Redirect(Vec::new()));
        // Deactivated: the order goes down, admission is lifted, monitoring stops.
        let left = c.carry(Action::Deactivate {
            stream: "demo".into(),
        });
        assert_eq!(
            left,
            vec![Duty::Watch {
                stream: "demo".into(),
                peers: Vec::new()
            }]
        );
        assert_eq!(
            sink.take(),
            vec![Order::Deactivate {
                stream: "demo".into()
            }]
        );
        assert_eq!(admission.of("demo"), Admit::Accept);
        assert!(!admission.is_activated("demo"));
    }

    #[test]
    fn connection_monitor_and_log_are_left_to_the_link() {
        let sink = Recorded::default();
        let admission = Admission::default();
        let c = Carrier {
            orders: &sink,
            admission: &admission,
        };
        let beat = ProxyMsg::Distribute {
            stream: "demo".into(),
        };
        assert_eq!(c.carry(Action::Connect), vec![Duty::Connect]);
        assert_eq!(c.carry(Action::Close), vec![Duty::Close]);
        assert_eq!(c.carry(Action::Send(beat.clone())), vec![Duty::Send(beat)]);
        assert_eq!(
            c.carry(Action::Log("x".into())),
            vec![Duty::Log("x".into())]
        );
        assert_eq!(
            c.carry(Action::Monitor {
                stream: "demo".into(),
                peers: vec![peer(11)]
            }),
            vec![Duty::Watch {
                stream: "demo".into(),
                peers: vec![peer(11)]
            }]
        );
        assert!(sink.take().is_empty());
    }
}
