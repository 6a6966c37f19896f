//! Scenario and property tests of the agent: registration, back-off, heartbeats, the two
//! decisions, orders, and the bound on the PNC's message rate. No I/O: time is a value.

use std::net::SocketAddr;

use proptest::prelude::*;

use super::*;
use crate::protocol::{
    Capacity, Child, PROTOCOL_VERSION, PncMsg, Refusal, Rtt, StreamLoad, StreamState,
};

const ME: ProxyId = ProxyId(31);
const HEARTBEAT_MS: u32 = 2_000;

fn addr(id: u32) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, (id % 250) as u8 + 1], 8000))
}

fn peer(id: u32) -> Peer {
    Peer {
        id: ProxyId(id),
        addr: addr(id),
    }
}

fn info(bitrate_bps: u64) -> SourceInfo {
    SourceInfo {
        source: "www.ccrl.com".into(),
        content_type: "video/mp2t".into(),
        bitrate_bps,
    }
}

fn config(connections: u32) -> AgentConfig {
    let mut c = AgentConfig::new(
        ME,
        "p31",
        "secret",
        addr(31),
        Capacity {
            connections,
            bits_per_sec: u64::MAX,
        },
    );
    c.region = Some("east".into());
    c.backoff = BackoffConfig {
        initial_ms: 100,
        max_ms: 3_200,
        jitter: 0.5,
    };
    c.seed = 42;
    c
}

/// An agent and its clock; every step first runs the timeouts the agent asks for.
struct Harness {
    agent: Agent,
    now: Time,
}

impl Harness {
    fn new(config: AgentConfig) -> Self {
        Self {
            agent: Agent::new(config),
            now: Time::ZERO,
        }
    }

    /// Registered with the PNC at time 0.
    fn registered(config: AgentConfig) -> Self {
        let mut h = Self::new(config);
        assert_eq!(h.input(Input::Timeout), vec![Action::Connect]);
        let hello = h.input(Input::Connected);
        assert!(matches!(
            hello.as_slice(),
            [Action::Send(ProxyMsg::Hello(_))]
        ));
        h.welcome();
        h
    }

    fn welcome(&mut self) -> Vec<Action> {
        self.input(Input::Received(PncMsg::Welcome {
            version: PROTOCOL_VERSION,
            heartbeat_ms: HEARTBEAT_MS,
        }))
    }

    /// Let `ms` pass (running due timeouts), then take `input`; every action on the way.
    fn after(&mut self, ms: u64, input: Input) -> Vec<Action> {
        let target = self.now.plus_micros(ms * 1000);
        let mut out = Vec::new();
        while let Some(t) = self.agent.poll_timeout() {
            if t > target {
                break;
            }
            self.now = t.max(self.now);
            out.extend(self.agent.handle(Input::Timeout, self.now));
        }
        self.now = target;
        out.extend(self.agent.handle(input, self.now));
        out
    }

    fn input(&mut self, input: Input) -> Vec<Action> {
        self.after(0, input)
    }

    fn order(&mut self, msg: PncMsg) -> Vec<Action> {
        self.input(Input::Received(msg))
    }

    fn activate(&mut self, stream: &str, parents: &[u32], accepting: bool) -> Vec<Action> {
        self.order(PncMsg::Activate {
            stream: stream.into(),
            source: info(0),
            tier: 3,
            parents: parents.iter().map(|&p| peer(p)).collect(),
            accepting,
        })
    }

    fn viewer(&mut self, ms: u64, stream: &str) -> Vec<Action> {
        self.after(
            ms,
            Input::ViewerJoined {
                stream: stream.into(),
            },
        )
    }

    fn viewer_left(&mut self, ms: u64, stream: &str) -> Vec<Action> {
        self.after(
            ms,
            Input::ViewerLeft {
                stream: stream.into(),
            },
        )
    }
}

fn sent(actions: &[Action]) -> Vec<ProxyMsg> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

/// Sent messages other than heartbeats.
fn sent_events(actions: &[Action]) -> Vec<ProxyMsg> {
    sent(actions)
        .into_iter()
        .filter(|m| !matches!(m, ProxyMsg::Heartbeat { .. }))
        .collect()
}

fn distributes(actions: &[Action]) -> usize {
    sent(actions)
        .iter()
        .filter(|m| matches!(m, ProxyMsg::Distribute { .. }))
        .count()
}

fn consolidates(actions: &[Action]) -> usize {
    sent(actions)
        .iter()
        .filter(|m| matches!(m, ProxyMsg::Consolidate { .. }))
        .count()
}

fn logs(actions: &[Action]) -> Vec<String> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Log(l) => Some(l.clone()),
            _ => None,
        })
        .collect()
}

fn heartbeats(actions: &[Action]) -> Vec<(Vec<StreamLoad>, u32, u64)> {
    sent(actions)
        .into_iter()
        .filter_map(|m| match m {
            ProxyMsg::Heartbeat {
                streams,
                connections,
                bits_per_sec,
                ..
            } => Some((streams, connections, bits_per_sec)),
            _ => None,
        })
        .collect()
}

// ---------------------------------------------------------------- registration and back-off

#[test]
fn registers_with_its_identity_then_heartbeats_at_the_welcome_interval() {
    let mut h = Harness::new(config(3));
    assert_eq!(h.agent.poll_timeout(), Some(Time::ZERO));
    assert_eq!(h.input(Input::Timeout), vec![Action::Connect]);
    let hello = sent(&h.input(Input::Connected));
    let [ProxyMsg::Hello(hello)] = hello.as_slice() else {
        panic!("expected one Hello, got {hello:?}");
    };
    assert_eq!(hello.version, PROTOCOL_VERSION);
    assert_eq!(hello.token, "secret");
    assert_eq!(hello.proxy, ME);
    assert_eq!(hello.name, "p31");
    assert_eq!(hello.data_addr, addr(31));
    assert_eq!(hello.region.as_deref(), Some("east"));
    assert_eq!(hello.capacity.connections, 3);
    assert!(hello.streams.is_empty());
    assert!(!h.agent.is_registered());
    // Welcome: registered, one heartbeat at once, the next one interval later.
    let welcome = h.welcome();
    assert!(h.agent.is_registered());
    assert_eq!(heartbeats(&welcome).len(), 1);
    assert_eq!(h.agent.poll_timeout(), Some(Time::from_millis(2_000)));
    let later = h.after(6_100, Input::Timeout);
    assert_eq!(heartbeats(&later).len(), 3, "{later:?}");
}

#[test]
fn re_registration_carries_every_stream_so_a_restarted_pnc_rebuilds_it() {
    let mut h = Harness::registered(config(10));
    h.activate("demo", &[21, 22], true);
    h.viewer(10, "demo");
    h.viewer(10, "demo");
    h.after(
        10,
        Input::ChildJoined {
            stream: "demo".into(),
            child: ProxyId(41),
        },
    );
    h.after(
        10,
        Input::SourceStarted {
            stream: "cam".into(),
            source: info(1_000_000),
        },
    );
    h.order(PncMsg::StopAccepting {
        stream: "demo".into(),
        redirect_to: vec![peer(32)],
    });
    // The PNC goes away; nothing is undone, the data plane keeps relaying.
    let down = h.after(10, Input::Disconnected);
    assert!(
        !down.iter().any(|a| matches!(a, Action::Deactivate { .. })),
        "{down:?}"
    );
    // Meanwhile one more viewer arrives (the agent folds it into its state).
    h.viewer(10, "demo");
    let retry = h.agent.poll_timeout().expect("a retry is scheduled");
    let connect = h.after(
        retry.micros() / 1000 - h.now.micros() / 1000 + 1,
        Input::Timeout,
    );
    assert!(connect.contains(&Action::Connect), "{connect:?}");
    let hello = sent(&h.input(Input::Connected));
    let [ProxyMsg::Hello(hello)] = hello.as_slice() else {
        panic!("expected a Hello, got {hello:?}");
    };
    assert_eq!(
        hello.streams,
        vec![
            StreamState {
                stream: "cam".into(),
                source: Some(info(1_000_000)),
                tier: 0,
                parents: vec![],
                children: vec![],
                viewers: 0,
                accepting: true,
            },
            StreamState {
                stream: "demo".into(),
                source: None,
                tier: 3,
                parents: vec![ProxyId(21), ProxyId(22)],
                children: vec![ProxyId(41)],
                viewers: 3,
                accepting: false,
            },
        ]
    );
    assert_eq!(hello.streams, h.agent.stream_states());
}

#[test]
fn declared_crashed_it_registers_again_with_its_streams() {
    // The PNC declared this proxy crashed (issue 7, defect 7): its next message is refused
    // and the connection closed. The agent keeps relaying, reconnects after the back-off and
    // registers again with what it carries, for the PNC to rebuild ([0031], [0066]).
    let mut h = Harness::registered(config(10));
    h.activate("demo", &[21], true);
    h.viewer(10, "demo");
    let out = h.order(PncMsg::Refused(Refusal::RegisterAgain(ME)));
    assert!(out.contains(&Action::Close), "{out:?}");
    assert!(
        !out.iter().any(|a| matches!(a, Action::Deactivate { .. })),
        "{out:?}"
    );
    h.input(Input::Disconnected);
    run_retry(&mut h);
    let hello = sent(&h.input(Input::Connected));
    let [ProxyMsg::Hello(hello)] = hello.as_slice() else {
        panic!("expected a Hello, got {hello:?}");
    };
    assert_eq!(hello.streams.len(), 1);
    assert_eq!(hello.streams[0].stream, "demo");
    assert_eq!(hello.streams[0].viewers, 1);
}

/// The retry delay the agent scheduled, in microseconds after now.
fn retry_delay(h: &Harness) -> u64 {
    h.agent.poll_timeout().expect("retry scheduled").micros() - h.now.micros()
}

/// Run the scheduled retry until the driver sees `Connect`.
fn run_retry(h: &mut Harness) {
    let wait = retry_delay(h).div_ceil(1000);
    let out = h.after(wait, Input::Timeout);
    assert!(out.contains(&Action::Connect), "{out:?}");
}

#[test]
fn back_off_grows_is_capped_and_resets_after_welcome() {
    let mut h = Harness::new(config(3));
    h.input(Input::Timeout);
    let mut delays = Vec::new();
    for _ in 0..10 {
        // Connection refused by the network.
        h.input(Input::Disconnected);
        delays.push(retry_delay(&h));
        run_retry(&mut h);
    }
    for (n, d) in delays.iter().enumerate() {
        let base = (100_000u64 << n).min(3_200_000);
        assert!(*d >= base / 2 && *d <= base, "attempt {n}: {d}");
    }
    assert!(delays[..6].windows(2).all(|w| w[1] >= w[0]), "{delays:?}");
    assert!(
        delays[6..]
            .iter()
            .all(|d| (1_600_000..=3_200_000).contains(d))
    );
    // A Welcome resets it: the next loss waits the initial delay again.
    h.input(Input::Connected);
    h.welcome();
    h.after(5_000, Input::Disconnected);
    assert!(retry_delay(&h) <= 100_000, "{}", retry_delay(&h));
}

#[test]
fn bad_token_or_version_is_not_retried_faster_than_the_cap_other_refusals_back_off() {
    for (reason, at_least) in [
        (Refusal::BadToken, 3_200_000),
        (Refusal::VersionMismatch { ours: 9, theirs: 1 }, 3_200_000),
        (Refusal::AlreadyConnected(ME), 50_000),
        (Refusal::UnknownProxy(ME), 3_200_000),
        (Refusal::RegisterAgain(ME), 50_000),
    ] {
        let mut h = Harness::new(config(3));
        h.input(Input::Timeout);
        h.input(Input::Connected);
        let out = h.order(PncMsg::Refused(reason.clone()));
        assert!(out.contains(&Action::Close), "{out:?}");
        assert!(
            logs(&out).iter().any(|l| l.contains(&reason.to_string())),
            "the reason is logged: {out:?}"
        );
        let d = retry_delay(&h);
        assert!(d >= at_least, "{reason:?}: {d}");
        if at_least < 3_200_000 {
            assert!(d <= 100_000, "{reason:?}: {d}");
        }
        // The PNC then closes: nothing more happens until the retry.
        assert!(sent(&h.input(Input::Disconnected)).is_empty());
        assert_eq!(retry_delay(&h), d);
    }
}

#[test]
fn registration_that_never_gets_welcome_times_out_and_retries() {
    let mut h = Harness::new(config(3));
    h.input(Input::Timeout);
    h.input(Input::Connected);
    let out = h.after(10_000, Input::Timeout);
    assert!(out.contains(&Action::Close), "{out:?}");
    assert!(retry_delay(&h) <= 100_000);
    // A Welcome speaking another version is a refusal.
    run_retry(&mut h);
    h.input(Input::Connected);
    let out = h.order(PncMsg::Welcome {
        version: PROTOCOL_VERSION + 1,
        heartbeat_ms: 1000,
    });
    assert!(out.contains(&Action::Close));
    assert!(!h.agent.is_registered());
    assert!(retry_delay(&h) >= 3_200_000);
}

// ---------------------------------------------------------------- heartbeat

#[test]
fn heartbeat_carries_per_stream_and_machine_wide_load_not_one_message_per_viewer() {
    let mut h = Harness::registered(config(100));
    h.order(PncMsg::Activate {
        stream: "demo".into(),
        source: info(1_000),
        tier: 2,
        parents: vec![peer(11)],
        accepting: true,
    });
    let mut between = Vec::new();
    // Ten viewers in the first second, one child proxy.
    for _ in 0..10 {
        between.extend(h.viewer(50, "demo"));
    }
    between.extend(h.after(
        10,
        Input::ChildJoined {
            stream: "demo".into(),
            child: ProxyId(41),
        },
    ));
    between.extend(h.after(
        10,
        Input::MachineLoad {
            connections: 20,
            bits_per_sec: 50_000,
        },
    ));
    // Viewers produce no message of their own; the child proxy one LOGIN.
    assert_eq!(
        sent_events(&between),
        vec![ProxyMsg::Login {
            stream: "demo".into(),
            child: Child::Proxy(ProxyId(41)),
        }]
    );
    let beat = h.after(2_000, Input::Timeout);
    let hb = heartbeats(&beat);
    let (streams, connections, bits) = hb.last().expect("a heartbeat");
    assert_eq!(streams.len(), 1);
    let s = &streams[0];
    assert_eq!(s.stream, "demo");
    assert_eq!(s.viewers, 10);
    assert_eq!(s.child_proxies, 1);
    // 11 sinks at the stream's nominal 1000 bit/s, nothing measured.
    assert_eq!(s.bits_per_sec, 11_000);
    // [0065] 11 logins in the first one-second window (ΔT = 10 s): then smoothed.
    assert!(s.login_rate > 1.0, "{s:?}");
    assert_eq!(s.logoff_rate, 0.0);
    // Machine-wide: the dataplane's sample (it sees more than this stream).
    assert_eq!((*connections, *bits), (20, 50_000));
    // A measured rate replaces the estimate.
    h.after(
        10,
        Input::StreamBits {
            stream: "demo".into(),
            bits_per_sec: 77_000,
        },
    );
    let beat = h.after(2_000, Input::Timeout);
    let hb = heartbeats(&beat);
    assert_eq!(hb.last().expect("a heartbeat").0[0].bits_per_sec, 77_000);
    // Machine-wide: the 39 000 bit/s the sample showed beyond the stream, plus the measurement.
    assert_eq!(hb.last().expect("a heartbeat").2, 77_000 + 39_000);
}

#[test]
fn rtts_go_in_the_hello_and_only_fresh_ones_in_heartbeats() {
    let mut h = Harness::new(config(3));
    h.input(Input::PeerRtt {
        peer: ProxyId(21),
        micros: 900,
    });
    h.input(Input::PeerRtt {
        peer: ProxyId(22),
        micros: 1_500,
    });
    h.input(Input::Timeout);
    let hello = sent(&h.input(Input::Connected));
    let [ProxyMsg::Hello(hello)] = hello.as_slice() else {
        panic!("{hello:?}");
    };
    assert_eq!(
        hello.rtts,
        vec![
            Rtt {
                peer: ProxyId(21),
                micros: 900
            },
            Rtt {
                peer: ProxyId(22),
                micros: 1_500
            },
        ]
    );
    h.welcome();
    h.after(
        100,
        Input::PeerRtt {
            peer: ProxyId(22),
            micros: 1_200,
        },
    );
    let beats = sent(&h.after(2_000, Input::Timeout));
    let rtts: Vec<_> = beats
        .iter()
        .filter_map(|m| match m {
            ProxyMsg::Heartbeat { rtts, .. } => Some(rtts.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(
        rtts,
        vec![vec![Rtt {
            peer: ProxyId(22),
            micros: 1_200
        }]]
    );
}

// ---------------------------------------------------------------- DISTRIBUTE

#[test]
fn distribute_fires_at_capacity_once_per_phase() {
    let mut h = Harness::registered(config(3));
    h.activate("demo", &[21], true);
    // Arrivals far apart (beyond ΔT = 10 s) so the prediction never fires early.
    assert_eq!(distributes(&h.viewer(30_000, "demo")), 0);
    assert_eq!(distributes(&h.viewer(30_000, "demo")), 0);
    let full = h.viewer(30_000, "demo");
    assert_eq!(distributes(&full), 1, "{full:?}");
    assert!(logs(&full).iter().any(|l| l.contains("DISTRIBUTE")));
    // The load oscillating at the threshold does not chatter.
    for _ in 0..5 {
        assert_eq!(distributes(&h.viewer_left(30_000, "demo")), 0);
        assert_eq!(distributes(&h.viewer(30_000, "demo")), 0);
    }
    assert_eq!(distributes(&h.after(60_000, Input::Timeout)), 0);
    // The PNC served it ([0030] contraction) ...
    let stop = h.order(PncMsg::StopAccepting {
        stream: "demo".into(),
        redirect_to: vec![peer(32)],
    });
    assert!(stop.contains(&Action::StopAccepting {
        stream: "demo".into(),
        redirect_to: vec![peer(32)]
    }));
    assert_eq!(h.agent.phase("demo"), Some(Phase::Contraction));
    assert_eq!(distributes(&stop), 0);
    // ... and later regrouped it while it is still full: one DISTRIBUTE for the new phase.
    let start = h.order(PncMsg::StartAccepting {
        stream: "demo".into(),
    });
    assert!(start.contains(&Action::StartAccepting {
        stream: "demo".into()
    }));
    assert_eq!(distributes(&start), 1);
    assert_eq!(distributes(&h.viewer_left(30_000, "demo")), 0);
    assert_eq!(distributes(&h.viewer(30_000, "demo")), 0);
}

#[test]
fn distribute_fires_on_prediction_within_delta_t_before_capacity() {
    let mut h = Harness::registered(config(100));
    h.activate("demo", &[21], true);
    // A flash crowd: 12 viewers in one second; ΔT = 10 s, windows of 1 s.
    let mut out = Vec::new();
    for _ in 0..12 {
        out.extend(h.viewer(80, "demo"));
    }
    assert_eq!(
        distributes(&out),
        0,
        "no prediction before the window closes"
    );
    // A window boundary alone does not consult the prediction.
    assert_eq!(distributes(&h.after(100, Input::Timeout)), 0);
    // [0054] the next login sees the folded window: 13 + 12/s · 10 s ≥ 100.
    let out = h.viewer(10, "demo");
    assert_eq!(distributes(&out), 1, "{out:?}");
    assert!(
        logs(&out)
            .iter()
            .any(|l| l.contains("load 13 of Max_s 100")),
        "{:?}",
        logs(&out)
    );
}

#[test]
fn no_distribute_when_the_pnc_already_served_it() {
    let mut h = Harness::registered(config(3));
    h.activate("demo", &[21], true);
    h.viewer(30_000, "demo");
    h.viewer(30_000, "demo");
    // The PNC stopped it first (it decided on the heartbeat, or regrouped it).
    h.order(PncMsg::StopAccepting {
        stream: "demo".into(),
        redirect_to: vec![],
    });
    assert_eq!(distributes(&h.viewer(30_000, "demo")), 0);
    assert_eq!(distributes(&h.after(60_000, Input::Timeout)), 0);
}

#[test]
fn an_upper_tier_proxy_not_taking_viewers_still_distributes_when_its_children_fill_it() {
    let mut h = Harness::registered(config(3));
    // [0030] activated means expansion phase; `accepting: false` only keeps viewers away.
    h.activate("demo", &[11], false);
    assert_eq!(h.agent.phase("demo"), Some(Phase::Expansion));
    let mut out = Vec::new();
    for child in [31, 32, 33] {
        out.extend(h.after(
            30_000,
            Input::ChildJoined {
                stream: "demo".into(),
                child: ProxyId(child),
            },
        ));
    }
    assert_eq!(distributes(&out), 1, "{out:?}");
    assert!(!h.agent.stream_states()[0].accepting);
}

#[test]
fn distribute_waits_while_disconnected_and_goes_out_after_welcome() {
    let mut h = Harness::registered(config(3));
    h.activate("demo", &[21], true);
    h.input(Input::Disconnected);
    let mut out = Vec::new();
    for _ in 0..3 {
        out.extend(h.viewer(1, "demo"));
    }
    assert_eq!(distributes(&out), 0);
    run_retry(&mut h);
    h.input(Input::Connected);
    let out = h.welcome();
    assert_eq!(distributes(&out), 1, "{out:?}");
}

// ---------------------------------------------------------------- CONSOLIDATE

#[test]
fn consolidate_only_in_contraction_when_draining() {
    // Expansion phase: draining to 1 sends nothing.
    let mut h = Harness::registered(config(3));
    h.activate("demo", &[21], true);
    h.viewer(30_000, "demo");
    h.viewer(30_000, "demo");
    let mut out = h.viewer_left(30_000, "demo");
    out.extend(h.after(30_000, Input::Timeout));
    assert_eq!(consolidates(&out), 0);

    // Figure 4: P31 full (u1–u3), served (StopAccepting); u2 and u3 leave.
    let mut h = Harness::registered(config(3));
    h.activate("demo", &[21], true);
    for _ in 0..3 {
        h.viewer(30_000, "demo");
    }
    h.order(PncMsg::StopAccepting {
        stream: "demo".into(),
        redirect_to: vec![peer(32)],
    });
    // At 2 (above the threshold ⌈3/3⌉ = 1): stays.
    let mut out = h.viewer_left(30_000, "demo");
    out.extend(h.after(3_000, Input::Timeout));
    assert_eq!(consolidates(&out), 0, "{out:?}");
    // At 1 with logoffs predicted over logins: CONSOLIDATE once the window is folded in.
    let mut out = h.viewer_left(30_000, "demo");
    out.extend(h.after(1_000, Input::Timeout));
    assert_eq!(consolidates(&out), 1, "{out:?}");
    assert!(logs(&out).iter().any(|l| l.contains("CONSOLIDATE")));
    // Once per phase: the PNC ignoring it (last proxy of its tier) brings no repeat.
    let mut out = h.viewer_left(30_000, "demo");
    out.extend(h.after(60_000, Input::Timeout));
    assert_eq!(consolidates(&out), 0);
}

#[test]
fn consolidate_needs_logoffs_over_logins() {
    let mut h = Harness::registered(config(3));
    h.activate("demo", &[21], true);
    h.order(PncMsg::StopAccepting {
        stream: "demo".into(),
        redirect_to: vec![],
    });
    // One viewer arrives and stays, long after: the rates are both zero, not draining.
    h.viewer(30_000, "demo");
    let out = h.after(60_000, Input::Timeout);
    assert_eq!(consolidates(&out), 0, "{out:?}");
}

// ---------------------------------------------------------------- [0047] machine-wide capacity

#[test]
fn capacity_is_machine_wide_across_streams() {
    let mut c = config(4);
    c.stream_capacity = Some(Capacity {
        connections: 3,
        bits_per_sec: u64::MAX,
    });
    // One stream alone: its logical capacity 3 binds.
    let mut h = Harness::registered(c.clone());
    h.activate("a", &[21], true);
    h.viewer(30_000, "a");
    assert_eq!(distributes(&h.viewer(30_000, "a")), 0);
    assert_eq!(distributes(&h.viewer(30_000, "a")), 1);

    // Two streams at 2 each: each has Max_s = min(3, 4 − 2) = 2, both are full.
    let mut h = Harness::registered(c);
    h.activate("a", &[21], true);
    h.activate("b", &[22], true);
    h.viewer(30_000, "a");
    assert_eq!(distributes(&h.viewer(30_000, "a")), 0);
    h.viewer(30_000, "b");
    let out = h.viewer(30_000, "b");
    let streams: Vec<_> = sent(&out)
        .into_iter()
        .filter_map(|m| match m {
            ProxyMsg::Distribute { stream } => Some(stream),
            _ => None,
        })
        .collect();
    assert_eq!(streams, vec!["a".to_string(), "b".to_string()], "{out:?}");
}

#[test]
fn capacity_in_bits_per_second_binds_too() {
    let mut c = config(100);
    c.capacity.bits_per_sec = 10_000_000;
    let mut h = Harness::registered(c);
    h.activate("a", &[21], true);
    h.order(PncMsg::Activate {
        stream: "b".into(),
        source: info(2_000_000),
        tier: 3,
        parents: vec![peer(22)],
        accepting: true,
    });
    // Another stream uses 6 Mbit/s of the machine's 10: b (2 Mbit/s a sink) has room for 2.
    h.after(
        10,
        Input::MachineLoad {
            connections: 6,
            bits_per_sec: 6_000_000,
        },
    );
    assert_eq!(distributes(&h.viewer(30_000, "b")), 0);
    assert_eq!(distributes(&h.viewer(30_000, "b")), 1);
}

// ---------------------------------------------------------------- child proxies, sources, links

#[test]
fn child_proxy_login_and_logoff_are_sent_at_once_and_caught_up_after_a_reconnect() {
    let mut h = Harness::registered(config(10));
    h.activate("demo", &[21], true);
    let join = |child| Input::ChildJoined {
        stream: "demo".into(),
        child: ProxyId(child),
    };
    let leave = |child| Input::ChildLeft {
        stream: "demo".into(),
        child: ProxyId(child),
    };
    assert_eq!(
        sent_events(&h.after(10, join(41))),
        vec![ProxyMsg::Login {
            stream: "demo".into(),
            child: Child::Proxy(ProxyId(41)),
        }]
    );
    // A repeated join is no change.
    assert!(sent_events(&h.after(10, join(41))).is_empty());
    assert_eq!(
        sent_events(&h.after(10, leave(41))),
        vec![ProxyMsg::Logoff {
            stream: "demo".into(),
            child: Child::Proxy(ProxyId(41)),
        }]
    );
    assert!(sent_events(&h.after(10, leave(41))).is_empty());
    // While disconnected: nothing sent; after Welcome, the difference.
    h.after(10, join(42));
    h.input(Input::Disconnected);
    let mut down = h.after(10, join(43));
    down.extend(h.after(10, leave(42)));
    assert!(sent(&down).is_empty());
    run_retry(&mut h);
    h.input(Input::Connected);
    let welcome = h.welcome();
    assert_eq!(
        sent_events(&welcome),
        vec![
            ProxyMsg::Logoff {
                stream: "demo".into(),
                child: Child::Proxy(ProxyId(42)),
            },
            ProxyMsg::Login {
                stream: "demo".into(),
                child: Child::Proxy(ProxyId(43)),
            },
        ]
    );
}

#[test]
fn source_announce_and_end_including_while_disconnected() {
    let mut h = Harness::registered(config(10));
    let started = Input::SourceStarted {
        stream: "cam".into(),
        source: info(5),
    };
    assert_eq!(
        sent_events(&h.after(10, started.clone())),
        vec![ProxyMsg::StreamAnnounce {
            stream: "cam".into(),
            source: info(5),
        }]
    );
    assert!(sent_events(&h.after(10, started)).is_empty());
    h.input(Input::Disconnected);
    h.after(
        10,
        Input::SourceEnded {
            stream: "cam".into(),
        },
    );
    h.after(
        10,
        Input::SourceStarted {
            stream: "live".into(),
            source: info(7),
        },
    );
    run_retry(&mut h);
    let hello = sent(&h.input(Input::Connected));
    let [ProxyMsg::Hello(hello)] = hello.as_slice() else {
        panic!("{hello:?}");
    };
    assert_eq!(hello.streams.len(), 1);
    assert_eq!(hello.streams[0].stream, "live");
    assert_eq!(
        sent_events(&h.welcome()),
        vec![
            ProxyMsg::StreamEnd {
                stream: "cam".into()
            },
            ProxyMsg::StreamAnnounce {
                stream: "live".into(),
                source: info(7),
            },
        ]
    );
    // The end of a source never published here is only logged.
    let out = h.after(
        10,
        Input::SourceEnded {
            stream: "other".into(),
        },
    );
    assert!(sent(&out).is_empty());
    assert_eq!(logs(&out).len(), 1);
}

#[test]
fn a_lost_parent_link_is_reported_once_until_re_parented() {
    let mut h = Harness::registered(config(10));
    h.activate("demo", &[21, 22], true);
    let lost = |p| Input::ParentLinkLost {
        stream: "demo".into(),
        parent: ProxyId(p),
    };
    assert_eq!(
        sent_events(&h.after(10, lost(21))),
        vec![ProxyMsg::LinkDowngrade {
            stream: "demo".into(),
            parent: ProxyId(21),
        }]
    );
    assert!(sent_events(&h.after(10, lost(21))).is_empty());
    // Not a parent: logged only.
    let out = h.after(10, lost(99));
    assert!(sent(&out).is_empty());
    assert_eq!(logs(&out).len(), 1);
    // Re-parented away from 21 and back: a new loss is a new report.
    h.order(PncMsg::SwitchToParent {
        stream: "demo".into(),
        parents: vec![peer(22)],
    });
    h.order(PncMsg::SwitchToParent {
        stream: "demo".into(),
        parents: vec![peer(21)],
    });
    assert_eq!(sent_events(&h.after(10, lost(21))).len(), 1);
}

#[test]
fn a_monitored_parent_moved_back_to_is_reported_lost_again() {
    // The parent tier 21 and 22 is monitored ([0053]): a link reported down stays known while
    // this proxy is away from the peer, and must not hide a new loss once the PNC made the peer
    // its parent again (50 switches on real processes stopped at the third without this).
    let mut h = Harness::registered(config(10));
    h.activate("demo", &[21], true);
    h.order(PncMsg::MonitorList {
        stream: "demo".into(),
        peers: vec![peer(21), peer(22)],
    });
    let lost = |p| Input::ParentLinkLost {
        stream: "demo".into(),
        parent: ProxyId(p),
    };
    let report = |p| {
        vec![ProxyMsg::LinkDowngrade {
            stream: "demo".into(),
            parent: ProxyId(p),
        }]
    };
    assert_eq!(sent_events(&h.after(10, lost(21))), report(21));
    h.order(PncMsg::SwitchToParent {
        stream: "demo".into(),
        parents: vec![peer(22)],
    });
    assert_eq!(sent_events(&h.after(10, lost(22))), report(22));
    h.order(PncMsg::SwitchToParent {
        stream: "demo".into(),
        parents: vec![peer(21)],
    });
    assert_eq!(sent_events(&h.after(10, lost(21))), report(21));
    // The same loss again, before any re-parenting: told once.
    assert!(sent_events(&h.after(10, lost(21))).is_empty());
}

// ---------------------------------------------------------------- orders

#[test]
fn a_standby_pulls_at_its_first_sink_and_logs_off_its_parents_at_its_last() {
    let mut h = Harness::registered(config(10));
    let out = h.activate("demo", &[21], true);
    assert!(
        !out.iter().any(|a| matches!(a, Action::Pull { .. })),
        "{out:?}"
    );
    // Re-parented while a standby: nothing to switch, the new parent is kept for later.
    let out = h.order(PncMsg::SwitchToParent {
        stream: "demo".into(),
        parents: vec![peer(22)],
    });
    assert!(out.iter().all(|a| matches!(a, Action::Log(_))), "{out:?}");
    // The first sink, a child proxy: pull from the current parents.
    let out = h.after(
        10,
        Input::ChildJoined {
            stream: "demo".into(),
            child: ProxyId(41),
        },
    );
    assert!(out.contains(&Action::Pull {
        stream: "demo".into(),
        parents: vec![peer(22)],
    }));
    assert!(
        !h.viewer(10, "demo")
            .iter()
            .any(|a| matches!(a, Action::Pull { .. }))
    );
    h.viewer_left(10, "demo");
    let out = h.after(
        10,
        Input::ChildLeft {
            stream: "demo".into(),
            child: ProxyId(41),
        },
    );
    assert!(out.contains(&Action::StopPulling {
        stream: "demo".into()
    }));
    // Still activated: the next sink pulls again.
    assert!(h.viewer(10, "demo").contains(&Action::Pull {
        stream: "demo".into(),
        parents: vec![peer(22)],
    }));
}

#[test]
fn orders_are_carried_out_and_repeats_are_idempotent() {
    let mut h = Harness::registered(config(10));
    let out = h.activate("demo", &[21], true);
    assert!(out.contains(&Action::Activate {
        stream: "demo".into(),
        source: info(0),
        tier: 3,
        parents: vec![peer(21)],
        accepting: true,
    }));
    // A standby until its first sink ([0054]): then it pulls from its parents.
    let first = h.viewer(10, "demo");
    assert!(first.contains(&Action::Pull {
        stream: "demo".into(),
        parents: vec![peer(21)],
    }));
    // The same Activate again: nothing for the data plane.
    let again = h.activate("demo", &[21], true);
    assert!(
        again
            .iter()
            .all(|a| matches!(a, Action::Log(_) | Action::Send(_))),
        "{again:?}"
    );
    // Activate with other parents: a make-before-break switch.
    let other = h.activate("demo", &[22, 22], true);
    assert!(other.contains(&Action::SwitchParents {
        stream: "demo".into(),
        parents: vec![peer(22)],
    }));
    let switch = h.order(PncMsg::SwitchToParent {
        stream: "demo".into(),
        parents: vec![peer(23), peer(24)],
    });
    assert!(switch.contains(&Action::SwitchParents {
        stream: "demo".into(),
        parents: vec![peer(23), peer(24)],
    }));
    assert!(
        !h.order(PncMsg::SwitchToParent {
            stream: "demo".into(),
            parents: vec![peer(23), peer(24)],
        })
        .iter()
        .any(|a| matches!(a, Action::SwitchParents { .. }))
    );
    let monitor = h.order(PncMsg::MonitorList {
        stream: "demo".into(),
        peers: vec![peer(23), peer(24), peer(31), peer(24)],
    });
    assert!(monitor.contains(&Action::Monitor {
        stream: "demo".into(),
        peers: vec![peer(23), peer(24)],
    }));
    let redirect = h.order(PncMsg::RedirectChildren {
        stream: "demo".into(),
        to: peer(33),
    });
    assert!(redirect.contains(&Action::RedirectChildren {
        stream: "demo".into(),
        to: peer(33),
    }));
    let off = h.order(PncMsg::Deactivate {
        stream: "demo".into(),
    });
    assert!(off.contains(&Action::Deactivate {
        stream: "demo".into()
    }));
    assert!(h.agent.stream_states().is_empty());
}

#[test]
fn invalid_orders_are_logged_and_change_nothing() {
    let mut h = Harness::registered(config(10));
    h.activate("demo", &[21], true);
    let bad = [
        PncMsg::SwitchToParent {
            stream: "nope".into(),
            parents: vec![peer(21)],
        },
        PncMsg::RedirectChildren {
            stream: "nope".into(),
            to: peer(21),
        },
        PncMsg::Deactivate {
            stream: "nope".into(),
        },
        PncMsg::StopAccepting {
            stream: "nope".into(),
            redirect_to: vec![],
        },
        PncMsg::StartAccepting {
            stream: "nope".into(),
        },
        PncMsg::MonitorList {
            stream: "nope".into(),
            peers: vec![peer(21)],
        },
        PncMsg::SwitchToParent {
            stream: "demo".into(),
            parents: vec![],
        },
        PncMsg::SwitchToParent {
            stream: "demo".into(),
            parents: vec![peer(31)],
        },
        PncMsg::Activate {
            stream: "x".into(),
            source: info(0),
            tier: 1,
            parents: vec![],
            accepting: true,
        },
        PncMsg::RedirectChildren {
            stream: "demo".into(),
            to: peer(31),
        },
        PncMsg::Welcome {
            version: PROTOCOL_VERSION,
            heartbeat_ms: 10,
        },
    ];
    let before = h.agent.stream_states();
    for msg in bad {
        let out = h.order(msg.clone());
        assert!(
            out.iter().all(|a| matches!(a, Action::Log(_))) && !out.is_empty(),
            "{msg:?} -> {out:?}"
        );
    }
    assert_eq!(h.agent.stream_states(), before);
    // An Activate of a stream published here is refused too.
    h.after(
        10,
        Input::SourceStarted {
            stream: "cam".into(),
            source: info(1),
        },
    );
    let out = h.order(PncMsg::Activate {
        stream: "cam".into(),
        source: info(1),
        tier: 2,
        parents: vec![peer(11)],
        accepting: true,
    });
    assert!(out.iter().all(|a| matches!(a, Action::Log(_))), "{out:?}");
}

#[test]
fn orders_before_welcome_are_ignored() {
    let mut h = Harness::new(config(3));
    h.input(Input::Timeout);
    h.input(Input::Connected);
    let out = h.activate("demo", &[21], true);
    assert_eq!(logs(&out).len(), 1);
    assert_eq!(out.len(), 1);
    assert!(h.agent.stream_states().is_empty());
}

// ---------------------------------------------------------------- properties

/// A local event of the message-bound property.
#[derive(Clone, Debug)]
enum Local {
    ViewerJoined(usize),
    ViewerLeft(usize),
    ChildJoined(usize, u32),
    ChildLeft(usize, u32),
    Source(bool),
    Machine(u32),
    /// A phase change from the PNC (StopAccepting when true, else StartAccepting).
    Phase(usize, bool),
}

const STREAMS: [&str; 2] = ["a", "b"];

fn local() -> impl Strategy<Value = Local> {
    prop_oneof![
        6 => (0..2usize).prop_map(Local::ViewerJoined),
        5 => (0..2usize).prop_map(Local::ViewerLeft),
        1 => (0..2usize, 40..44u32).prop_map(|(s, c)| Local::ChildJoined(s, c)),
        1 => (0..2usize, 40..44u32).prop_map(|(s, c)| Local::ChildLeft(s, c)),
        1 => any::<bool>().prop_map(Local::Source),
        1 => (0..40u32).prop_map(Local::Machine),
        1 => (0..2usize, any::<bool>()).prop_map(|(s, stop)| Local::Phase(s, stop)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    /// The PNC's message rate is bounded by the heartbeat rate, not by viewers. Over T seconds
    /// of any local events, a proxy with S streams sends at most
    ///   ⌊T / heartbeat⌋ + 1 heartbeats
    /// + 2 · (S + phase changes ordered by the PNC) for DISTRIBUTE/CONSOLIDATE, each with the
    ///   heartbeat that goes right before it
    /// + one message per child-proxy change and per source start/end,
    /// and no message at all for a viewer's login or logoff.
    #[test]
    fn pnc_message_rate_is_bounded_by_heartbeats_not_viewers(
        capacity in 2..30u32,
        events in proptest::collection::vec((0..1_500u64, local()), 1..400),
    ) {
        let mut h = Harness::registered(config(capacity));
        for s in STREAMS {
            h.activate(s, &[21], true);
        }
        let start = h.now;
        let mut out = Vec::new();
        let (mut child_changes, mut source_changes, mut phase_orders) = (0usize, 0usize, 0usize);
        let mut children = [std::collections::BTreeSet::new(), std::collections::BTreeSet::new()];
        let mut publishing = false;
        for (gap, ev) in events {
            let input = match ev {
                Local::ViewerJoined(s) => Input::ViewerJoined { stream: STREAMS[s].into() },
                Local::ViewerLeft(s) => Input::ViewerLeft { stream: STREAMS[s].into() },
                Local::ChildJoined(s, c) => {
                    child_changes += usize::from(children[s].insert(c));
                    Input::ChildJoined { stream: STREAMS[s].into(), child: ProxyId(c) }
                }
                Local::ChildLeft(s, c) => {
                    child_changes += usize::from(children[s].remove(&c));
                    Input::ChildLeft { stream: STREAMS[s].into(), child: ProxyId(c) }
                }
                Local::Source(on) => {
                    source_changes += usize::from(on != publishing);
                    publishing = on;
                    if on {
                        Input::SourceStarted { stream: "cam".into(), source: info(1) }
                    } else {
                        Input::SourceEnded { stream: "cam".into() }
                    }
                }
                Local::Machine(c) => Input::MachineLoad { connections: c, bits_per_sec: 0 },
                Local::Phase(s, stop) => {
                    phase_orders += 1;
                    Input::Received(if stop {
                        PncMsg::StopAccepting { stream: STREAMS[s].into(), redirect_to: vec![] }
                    } else {
                        PncMsg::StartAccepting { stream: STREAMS[s].into() }
                    })
                }
            };
            out.extend(h.after(gap, input));
        }
        let secs = h.now.secs_since(start);
        let msgs = sent(&out);
        let beats = msgs.iter().filter(|m| matches!(m, ProxyMsg::Heartbeat { .. })).count();
        let decisions = msgs
            .iter()
            .filter(|m| matches!(m, ProxyMsg::Distribute { .. } | ProxyMsg::Consolidate { .. }))
            .count();
        let tree = msgs
            .iter()
            .filter(|m| matches!(m, ProxyMsg::Login { .. } | ProxyMsg::Logoff { .. }))
            .count();
        let sources = msgs
            .iter()
            .filter(|m| matches!(m, ProxyMsg::StreamAnnounce { .. } | ProxyMsg::StreamEnd { .. }))
            .count();
        let periodic = (secs * 1000.0 / f64::from(HEARTBEAT_MS)).floor() as usize + 1;
        // Each decision goes right after a heartbeat of its own.
        let heartbeat_bound = periodic + decisions;
        prop_assert!(beats <= heartbeat_bound, "{beats} heartbeats in {secs} s");
        prop_assert!(decisions <= STREAMS.len() + phase_orders, "{decisions} decisions, {phase_orders} phase orders");
        prop_assert_eq!(tree, child_changes);
        prop_assert_eq!(sources, source_changes);
        prop_assert_eq!(msgs.len(), beats + decisions + tree + sources);
        prop_assert!(
            msgs.len()
                <= periodic + 2 * (STREAMS.len() + phase_orders) + child_changes + source_changes
        );
    }
}

fn any_stream() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_string()),
        Just("b".to_string()),
        Just("".to_string())
    ]
}

fn any_peer() -> impl Strategy<Value = Peer> {
    prop_oneof![Just(31u32), 1..5u32].prop_map(peer)
}

fn any_pnc_msg() -> impl Strategy<Value = PncMsg> {
    let peers = || proptest::collection::vec(any_peer(), 0..4);
    prop_oneof![
        (0..3u32, 0..5_000u32).prop_map(|(version, heartbeat_ms)| PncMsg::Welcome {
            version,
            heartbeat_ms
        }),
        prop_oneof![
            Just(Refusal::BadToken),
            Just(Refusal::NotHello),
            Just(Refusal::Other("full".into())),
            Just(Refusal::VersionMismatch { ours: 2, theirs: 1 }),
        ]
        .prop_map(PncMsg::Refused),
        (
            any_stream(),
            0..5u32,
            peers(),
            any::<bool>(),
            0..3_000_000u64
        )
            .prop_map(
                |(stream, tier, parents, accepting, bitrate)| PncMsg::Activate {
                    stream,
                    source: info(bitrate),
                    tier,
                    parents,
                    accepting,
                }
            ),
        (any_stream(), peers())
            .prop_map(|(stream, parents)| PncMsg::SwitchToParent { stream, parents }),
        (any_stream(), peers()).prop_map(|(stream, redirect_to)| PncMsg::StopAccepting {
            stream,
            redirect_to
        }),
        any_stream().prop_map(|stream| PncMsg::StartAccepting { stream }),
        (any_stream(), any_peer()).prop_map(|(stream, to)| PncMsg::RedirectChildren { stream, to }),
        any_stream().prop_map(|stream| PncMsg::Deactivate { stream }),
        (any_stream(), peers()).prop_map(|(stream, peers)| PncMsg::MonitorList { stream, peers }),
    ]
}

fn any_input() -> impl Strategy<Value = Input> {
    prop_oneof![
        3 => Just(Input::Timeout),
        1 => Just(Input::Connected),
        1 => Just(Input::Disconnected),
        4 => any_pnc_msg().prop_map(Input::Received),
        3 => any_stream().prop_map(|stream| Input::ViewerJoined { stream }),
        3 => any_stream().prop_map(|stream| Input::ViewerLeft { stream }),
        1 => (any_stream(), 1..6u32).prop_map(|(stream, c)| Input::ChildJoined { stream, child: ProxyId(c) }),
        1 => (any_stream(), 1..6u32).prop_map(|(stream, c)| Input::ChildLeft { stream, child: ProxyId(c) }),
        1 => (any_stream(), 0..3_000_000u64).prop_map(|(stream, b)| Input::SourceStarted { stream, source: info(b) }),
        1 => any_stream().prop_map(|stream| Input::SourceEnded { stream }),
        1 => (any::<u32>(), any::<u64>()).prop_map(|(connections, bits_per_sec)| Input::MachineLoad { connections, bits_per_sec }),
        1 => (any_stream(), any::<u64>()).prop_map(|(stream, bits_per_sec)| Input::StreamBits { stream, bits_per_sec }),
        1 => (any_stream(), 1..6u32).prop_map(|(stream, p)| Input::ParentLinkLost { stream, parent: ProxyId(p) }),
        1 => (1..6u32, any::<u32>()).prop_map(|(p, micros)| Input::PeerRtt { peer: ProxyId(p), micros }),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// Any inputs at any times (even a `now` that goes backwards) never panic, and after every
    /// call the next timeout lies after the latest time seen: a driver never spins.
    #[test]
    fn random_inputs_never_panic_and_the_timeout_never_goes_backwards(
        capacity in 0..20u32,
        steps in proptest::collection::vec((0..40_000u64, any::<bool>(), any_input()), 1..300),
    ) {
        let mut c = config(capacity);
        c.min_threshold = if capacity % 2 == 0 { None } else { Some(capacity) };
        let mut agent = Agent::new(c);
        let mut now = 0u64;
        let mut latest = 0u64;
        for (dt, backwards, input) in steps {
            now = if backwards { now.saturating_sub(dt) } else { now + dt };
            latest = latest.max(now);
            let _ = agent.handle(input, Time(now));
            let next = agent.poll_timeout().expect("the agent always has a timer");
            prop_assert!(next.micros() > latest, "timeout {next:?} not after {latest}");
        }
    }
}
