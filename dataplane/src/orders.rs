//! The seam between the relay's control thread (which speaks to the PNC through the proxy agent,
//! `control::agent`) and the reactors (which move the bytes).
//!
//! Downward, an [`Order`]: what the reactors must do for a stream (pull it from parents, switch
//! parents make-before-break, stop pulling, redirect its VAN children, drop it). Upward, a
//! [`LocalEvent`]: what happened on the data port that the agent counts (viewers and child
//! proxies joining and leaving, a source starting or ending, a parent link lost).
//!
//! Who may take a new viewer (the PNC's StopAccepting / StartAccepting) is not an order: it is
//! read at routing time from [`Admission`], shared by every core, written by the control thread.
//!
//! Addresses are plain socket addresses and ids plain numbers, so that the reactor needs no
//! control-protocol type.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// A parent proxy to pull from: its id (for the logs and the LOGIN it sees) and data address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ParentAddr {
    pub id: u32,
    pub addr: SocketAddr,
}

/// What the control thread tells the reactors to do for one stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Order {
    /// [0054] Pull `stream` from every one of `parents` with `GET /van/{stream}?from=SEQ`
    /// (`Authorization: Bearer` the VAN token, `X-Van-Proxy: {our id}`), keep the parents'
    /// sequence numbers, drop duplicates ([0029], [0044]), and serve it to viewers here. A parent
    /// lost while others still deliver costs nothing; a parent lost is reported as
    /// [`LocalEvent::ParentLost`] and retried from the next sequence.
    Pull {
        stream: String,
        parents: Vec<ParentAddr>,
    },
    /// [0029], [0046] Pull from `parents` instead, make-before-break: the new connections ask
    /// from the next sequence; an old one is dropped only once a new one delivers in order.
    SwitchParents {
        stream: String,
        parents: Vec<ParentAddr>,
    },
    /// [0055] Drop the parent connections; the stream's viewers (if any are left) go to grace.
    StopPulling { stream: String },
    /// [0037], [0046] Send every VAN viewer of `stream` a redirect frame naming `to` and the
    /// next sequence; plain viewers are not touched.
    RedirectChildren { stream: String, to: SocketAddr },
    /// [0030] Stop serving `stream`: drop its parents, end it for its viewers.
    Deactivate { stream: String },
}

/// Where the control thread's orders go: the reactors (`Shared`), or a recorder in tests.
pub trait OrderSink: Send + Sync {
    fn send_order(&self, order: Order);
}

impl Order {
    pub fn stream(&self) -> &str {
        match self {
            Order::Pull { stream, .. }
            | Order::SwitchParents { stream, .. }
            | Order::StopPulling { stream }
            | Order::RedirectChildren { stream, .. }
            | Order::Deactivate { stream } => stream,
        }
    }
}

/// What happened on the data port, for the agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocalEvent {
    /// A plain or VAN viewer that is not a proxy joined `stream`.
    ViewerJoined {
        stream: String,
    },
    ViewerLeft {
        stream: String,
    },
    /// A child proxy (a VAN viewer that sent `X-Van-Proxy: ID`) started pulling `stream`.
    ChildJoined {
        stream: String,
        child: u32,
    },
    ChildLeft {
        stream: String,
        child: u32,
    },
    /// A source started publishing `stream` here (`PUT`/`SOURCE /live/{stream}`).
    SourceStarted {
        stream: String,
        content_type: String,
    },
    /// The stream's source left and its grace ran out.
    SourceEnded {
        stream: String,
    },
    /// The connection to `parent` for `stream` failed or closed ([0066]).
    ParentLost {
        stream: String,
        parent: u32,
    },
}

/// Where a stream's new viewers go, as the PNC last ordered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Admit {
    /// Take them (the default for a stream the PNC has said nothing about).
    Accept,
    /// Send them to the first of these with `307`, or answer `503` if there is none.
    Redirect(Vec<SocketAddr>),
}

/// Per-stream admission, read by every core when a viewer's request is routed and written by the
/// control thread when the PNC changes a phase.
///
/// It also knows which streams the PNC activated here: a viewer of such a stream that is not
/// flowing yet (a standby pulls only from its first sink, [0054]) waits for it instead of
/// getting `404`.
#[derive(Debug, Default)]
pub struct Admission {
    /// Per stream: the order, and until when viewers are still taken despite it.
    by_stream: RwLock<HashMap<String, (Admit, Option<Instant>)>>,
    activated: RwLock<HashSet<String>>,
    /// The relay takes orders from a PNC.
    linked: AtomicBool,
}

impl Admission {
    /// What a new viewer of `stream` gets.
    pub fn of(&self, stream: &str) -> Admit {
        self.by_stream
            .read()
            .map_or(Admit::Accept, |m| match m.get(stream) {
                None => Admit::Accept,
                Some((_, Some(until))) if Instant::now() < *until => Admit::Accept,
                Some((admit, _)) => admit.clone(),
            })
    }

    /// What the PNC last ordered for `stream`'s new viewers, grace or not.
    pub fn ordered(&self, stream: &str) -> Admit {
        self.by_stream.read().map_or(Admit::Accept, |m| {
            m.get(stream)
                .map_or(Admit::Accept, |(admit, _)| admit.clone())
        })
    }

    /// Whether the PNC has `stream` active here.
    pub fn is_activated(&self, stream: &str) -> bool {
        self.activated.read().is_ok_and(|s| s.contains(stream))
    }

    /// Whether the relay takes orders from a PNC: then a viewer of a stream that is neither
    /// here nor activated may be one the PNC just resolved here, its `Activate` still on the
    /// control connection (the `302` and the order leave the PNC together).
    pub fn is_linked(&self) -> bool {
        self.linked.load(Ordering::Relaxed)
    }

    pub fn set_linked(&self, yes: bool) {
        self.linked.store(yes, Ordering::Relaxed);
    }

    /// The PNC activated (`true`) or deactivated `stream` here.
    pub fn set_activated(&self, stream: &str, yes: bool) {
        if let Ok(mut s) = self.activated.write() {
            if yes {
                s.insert(stream.to_string());
            } else {
                s.remove(stream);
            }
        }
    }

    pub fn set(&self, stream: &str, admit: Admit) {
        self.set_after(stream, admit, Duration::ZERO);
    }

    /// Like [`Admission::set`], but viewers are still taken for `grace`: the PNC's
    /// StopAccepting ([0035]) overtakes the viewers it resolved here just before (their
    /// redirect and connect are still under way, and the PNC reserved their places here), so
    /// those must not be sent on. A stream that takes no viewers already keeps the grace it
    /// had: a new list (the PNC sends one when a proxy on the old one leaves the stream) only
    /// changes where viewers go, it does not open the door again.
    pub fn set_after(&self, stream: &str, admit: Admit, grace: Duration) {
        if let Ok(mut m) = self.by_stream.write() {
            match admit {
                Admit::Accept => {
                    m.remove(stream);
                }
                other => {
                    let until = match m.get(stream) {
                        _ if grace.is_zero() => None,
                        Some(&(_, until)) => until,
                        None => Some(Instant::now() + grace),
                    };
                    m.insert(stream.to_string(), (other, until));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_the_pnc_never_named_accepts_and_a_redirect_can_be_lifted() {
        let a = Admission::default();
        assert_eq!(a.of("demo"), Admit::Accept);
        let to: SocketAddr = "127.0.0.1:9000".parse().unwrap();
        a.set("demo", Admit::Redirect(vec![to]));
        assert_eq!(a.of("demo"), Admit::Redirect(vec![to]));
        assert_eq!(a.of("other"), Admit::Accept);
        a.set("demo", Admit::Accept);
        assert_eq!(a.of("demo"), Admit::Accept);
        a.set_after("demo", Admit::Redirect(vec![to]), Duration::from_millis(50));
        assert_eq!(a.of("demo"), Admit::Accept, "within the grace");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(a.of("demo"), Admit::Redirect(vec![to]));
        // A new list once stopped: no new grace.
        let other: SocketAddr = "127.0.0.1:9001".parse().unwrap();
        a.set_after(
            "demo",
            Admit::Redirect(vec![other]),
            Duration::from_secs(60),
        );
        assert_eq!(a.of("demo"), Admit::Redirect(vec![other]));
        a.set("demo", Admit::Accept);
        assert!(!a.is_activated("demo"));
        a.set_activated("demo", true);
        assert!(a.is_activated("demo") && !a.is_activated("other"));
        a.set_activated("demo", false);
        assert!(!a.is_activated("demo"));
    }
}
