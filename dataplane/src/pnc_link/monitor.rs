//! Monitoring of the parent tier ([0053], [0066]): the PNC's `MonitorList` names, per stream,
//! the proxies to watch; each is probed about once a second with a timed TCP connect to its
//! data port (a few at a time), the round-trip times go to the agent (`PeerRtt`, [0024],
//! [0049]), and a link found lost or degraded becomes `ParentLinkLost` for every stream that
//! watches the peer (the agent sends `LinkDowngrade`).
//!
//! [`Judge`] decides, without I/O, when a link is lost or degraded; [`Monitor`] does the probing.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use control::agent::Input;
use control::protocol::{Peer, ProxyId};
use tokio::sync::Semaphore;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{info, warn};

/// What one probe found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// The peer's data port accepted a connection after this many microseconds.
    Answered { micros: u32 },
    /// Refused, unreachable, or no answer within the probe timeout.
    Failed,
}

/// When a watched link counts as lost or degraded.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Judge {
    /// Probes failed in a row that make a link lost.
    pub fail_limit: u32,
    /// A probe is slow when its RTT is above both `slow_factor` × the baseline and the
    /// baseline + `slow_margin_us` (the margin keeps microsecond loopback RTTs from counting a
    /// scheduling hiccup as degradation).
    pub slow_factor: f64,
    pub slow_margin_us: u32,
    /// Slow probes in a row that make a link degraded.
    pub slow_limit: u32,
    /// Weight of a new normal RTT in the baseline (an exponential average).
    pub baseline_weight: f64,
}

impl Default for Judge {
    fn default() -> Self {
        Judge {
            fail_limit: 3,
            slow_factor: 4.0,
            slow_margin_us: 50_000,
            slow_limit: 3,
            baseline_weight: 0.2,
        }
    }
}

/// What the judge knows of one peer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Health {
    failed: u32,
    slow: u32,
    baseline_us: Option<f64>,
    /// Reported lost or degraded, and not healthy since: not reported again.
    reported: bool,
}

/// What to tell the agent after a probe.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// The RTT measured, if the peer answered.
    pub rtt_us: Option<u32>,
    /// The link just became lost or degraded: report it (once, until it is healthy again).
    pub report: Option<Trouble>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trouble {
    Lost,
    Degraded,
}

impl Judge {
    pub fn observe(&self, h: &mut Health, probe: Probe) -> Verdict {
        let (rtt_us, trouble) = match probe {
            Probe::Failed => {
                h.failed = h.failed.saturating_add(1);
                h.slow = 0;
                (None, (h.failed >= self.fail_limit).then_some(Trouble::Lost))
            }
            Probe::Answered { micros } => {
                h.failed = 0;
                let rtt = f64::from(micros);
                let slow = h.baseline_us.is_some_and(|base| {
                    rtt > base * self.slow_factor && rtt > base + f64::from(self.slow_margin_us)
                });
                if slow {
                    // A slow RTT does not move the baseline: degradation is against the normal.
                    h.slow = h.slow.saturating_add(1);
                } else {
                    h.slow = 0;
                    let w = self.baseline_weight.clamp(0.0, 1.0);
                    h.baseline_us = Some(h.baseline_us.map_or(rtt, |b| b + w * (rtt - b)));
                }
                (
                    Some(micros),
                    (h.slow >= self.slow_limit).then_some(Trouble::Degraded),
                )
            }
        };
        let report = match trouble {
            Some(t) if !h.reported => {
                h.reported = true;
                Some(t)
            }
            Some(_) => None,
            None => {
                if h.failed == 0 && h.slow == 0 {
                    h.reported = false;
                }
                None
            }
        };
        Verdict { rtt_us, report }
    }
}

/// A probe's result, from its task to the link.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProbeReport {
    pub peer: ProxyId,
    pub probe: Probe,
}

/// Probes at most this many peers at once.
const CONCURRENT_PROBES: usize = 16;
/// A connect that takes longer is a failed probe.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The peers watched per stream, their health, and the probes in flight.
pub struct Monitor {
    judge: Judge,
    watched: BTreeMap<String, Vec<Peer>>,
    health: HashMap<ProxyId, Health>,
    in_flight: HashSet<ProxyId>,
    permits: Arc<Semaphore>,
    reports: UnboundedSender<ProbeReport>,
}

impl Monitor {
    /// Probe results are sent to `reports`; give each back to [`Monitor::report`].
    pub fn new(judge: Judge, reports: UnboundedSender<ProbeReport>) -> Self {
        Monitor {
            judge,
            watched: BTreeMap::new(),
            health: HashMap::new(),
            in_flight: HashSet::new(),
            permits: Arc::new(Semaphore::new(CONCURRENT_PROBES)),
            reports,
        }
    }

    /// Watch `peers` for `stream` from now on (none: stop).
    pub fn watch(&mut self, stream: String, peers: Vec<Peer>) {
        if peers.is_empty() {
            self.watched.remove(&stream);
        } else {
            info!(stream = %stream, peers = ?peers.iter().map(|p| p.id.0).collect::<Vec<_>>(), "monitoring the parent tier [0053]");
            self.watched.insert(stream, peers);
        }
        let still: HashSet<ProxyId> = self.peers().map(|p| p.id).collect();
        self.health.retain(|id, _| still.contains(id));
    }

    fn peers(&self) -> impl Iterator<Item = &Peer> {
        self.watched.values().flatten()
    }

    /// Starts a probe of every watched peer that has none in flight.
    pub fn probe_all(&mut self) {
        let mut due: HashMap<ProxyId, SocketAddr> = HashMap::new();
        for p in self.peers() {
            if !self.in_flight.contains(&p.id) {
                due.entry(p.id).or_insert(p.addr);
            }
        }
        for (peer, addr) in due {
            self.in_flight.insert(peer);
            let permits = self.permits.clone();
            let reports = self.reports.clone();
            tokio::spawn(async move {
                let probe = match permits.acquire_owned().await {
                    Ok(_permit) => probe(addr).await,
                    Err(_) => Probe::Failed,
                };
                let _ = reports.send(ProbeReport { peer, probe });
            });
        }
    }

    /// The agent's inputs for a probe's result.
    pub fn report(&mut self, r: ProbeReport) -> Vec<Input> {
        self.in_flight.remove(&r.peer);
        if !self.peers().any(|p| p.id == r.peer) {
            // No longer watched.
            return Vec::new();
        }
        let judge = self.judge;
        let verdict = judge.observe(self.health.entry(r.peer).or_default(), r.probe);
        let mut inputs = Vec::new();
        if let Some(micros) = verdict.rtt_us {
            inputs.push(Input::PeerRtt {
                peer: r.peer,
                micros,
            });
        }
        if let Some(trouble) = verdict.report {
            warn!(peer = %r.peer, ?trouble, "link to a monitored proxy lost or degraded [0066]");
            for (stream, peers) in &self.watched {
                if peers.iter().any(|p| p.id == r.peer) {
                    inputs.push(Input::ParentLinkLost {
                        stream: stream.clone(),
                        parent: r.peer,
                    });
                }
            }
        }
        inputs
    }
}

/// One timed TCP connect to `addr`.
async fn probe(addr: SocketAddr) -> Probe {
    let start = Instant::now();
    match tokio::time::timeout(PROBE_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Ok(_)) => Probe::Answered {
            micros: u32::try_from(start.elapsed().as_micros())
                .unwrap_or(u32::MAX)
                .max(1),
        },
        _ => Probe::Failed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answered(micros: u32) -> Probe {
        Probe::Answered { micros }
    }

    #[test]
    fn three_failures_in_a_row_lose_a_link_once_until_it_answers_again() {
        let j = Judge::default();
        let mut h = Health::default();
        assert_eq!(j.observe(&mut h, answered(100)).rtt_us, Some(100));
        assert_eq!(j.observe(&mut h, Probe::Failed).report, None);
        assert_eq!(j.observe(&mut h, Probe::Failed).report, None);
        // An answer in between starts the count again.
        assert_eq!(j.observe(&mut h, answered(120)).report, None);
        for _ in 0..2 {
            assert_eq!(j.observe(&mut h, Probe::Failed).report, None);
        }
        assert_eq!(
            j.observe(&mut h, Probe::Failed),
            Verdict {
                rtt_us: None,
                report: Some(Trouble::Lost)
            }
        );
        // Reported once while it stays down.
        for _ in 0..5 {
            assert_eq!(j.observe(&mut h, Probe::Failed).report, None);
        }
        // Back, then lost again: reported again.
        assert_eq!(j.observe(&mut h, answered(110)).report, None);
        for _ in 0..2 {
            j.observe(&mut h, Probe::Failed);
        }
        assert_eq!(j.observe(&mut h, Probe::Failed).report, Some(Trouble::Lost));
    }

    #[test]
    fn an_rtt_far_above_its_baseline_for_three_probes_is_degraded() {
        let j = Judge::default();
        let mut h = Health::default();
        for _ in 0..5 {
            assert_eq!(j.observe(&mut h, answered(2_000)).report, None);
        }
        // 4x the baseline but within the margin: normal jitter on a fast link.
        for _ in 0..5 {
            assert_eq!(j.observe(&mut h, answered(10_000)).report, None);
        }
        let mut h = Health::default();
        j.observe(&mut h, answered(2_000));
        assert_eq!(j.observe(&mut h, answered(200_000)).report, None);
        assert_eq!(j.observe(&mut h, answered(200_000)).report, None);
        assert_eq!(
            j.observe(&mut h, answered(200_000)),
            Verdict {
                rtt_us: Some(200_000),
                report: Some(Trouble::Degraded)
            }
        );
        // Slow samples did not become the baseline: still degraded, not reported twice.
        assert_eq!(j.observe(&mut h, answered(200_000)).report, None);
        assert_eq!(h.baseline_us, Some(2_000.0));
    }

    #[tokio::test]
    async fn a_lost_peer_is_reported_for_every_stream_that_watches_it() {
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let mut m = Monitor::new(Judge::default(), tx);
        // A port nobody listens on: bind, note the address, close.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let alive = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let p11 = Peer {
            id: ProxyId(11),
            addr: dead,
        };
        let p12 = Peer {
            id: ProxyId(12),
            addr: alive.local_addr().unwrap(),
        };
        m.watch("a".into(), vec![p11, p12]);
        m.watch("b".into(), vec![p11]);
        m.watch("c".into(), vec![p12]);
        let mut lost = Vec::new();
        let mut rtts = 0;
        for _ in 0..3 {
            m.probe_all();
            for _ in 0..2 {
                let r = rx.recv().await.unwrap();
                for input in m.report(r) {
                    match input {
                        Input::PeerRtt { peer, .. } => {
                            assert_eq!(peer, ProxyId(12));
                            rtts += 1;
                        }
                        Input::ParentLinkLost { stream, parent } => lost.push((stream, parent)),
                        other => panic!("{other:?}"),
                    }
                }
            }
        }
        assert_eq!(rtts, 3);
        lost.sort();
        assert_eq!(
            lost,
            vec![("a".into(), ProxyId(11)), ("b".into(), ProxyId(11))]
        );
        // Unwatched: its health is forgotten and late results are dropped.
        m.watch("a".into(), Vec::new());
        m.watch("b".into(), Vec::new());
        assert!(
            m.report(ProbeReport {
                peer: ProxyId(11),
                probe: Probe::Failed
            })
            .is_empty()
        );
    }
}
