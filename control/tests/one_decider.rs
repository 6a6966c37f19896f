//! One decider per decision (`control/src/agent/DECIDERS.md`): the core decides DISTRIBUTE from
//! its own predictors for a proxy that sends a LOGIN per viewer, and only serves the DISTRIBUTE
//! of a proxy whose Hello says it `decides`, taking the rates that proxy reports.

use std::net::{IpAddr, SocketAddr};

use control::core::{Command, Config, Coordinator, Event, Registration, Rule, Time};
use control::protocol::{Capacity, Child, PncMsg, ProxyId, ProxyMsg, Rtt, SourceInfo, StreamLoad};

const S: u32 = 1;

struct Net {
    core: Coordinator,
    now: Time,
}

impl Net {
    /// The origin S and P11, P21, P31, P32 of capacity 3 (one tier each above, two at the
    /// bottom), every relay deciding for itself or not; `demo` published at S.
    fn new(decides: bool) -> Self {
        let mut net = Net {
            // The proxies are not listed in the configuration.
            core: Coordinator::new(Config {
                open_registration: true,
                ..Config::default()
            }),
            now: Time::from_secs(1),
        };
        net.register(S, 100, None, false);
        for (id, ms) in [(11, 10), (21, 30), (31, 50), (32, 51)] {
            net.register(id, 3, Some(ms), decides);
        }
        net.msg(
            S,
            ProxyMsg::StreamAnnounce {
                stream: "demo".into(),
                source: SourceInfo {
                    source: "www.ccrl.com".into(),
                    content_type: "video/mp2t".into(),
                    bitrate_bps: 0,
                },
            },
        );
        net
    }

    fn register(&mut self, id: u32, connections: u32, rtt_to_s_ms: Option<u32>, decides: bool) {
        self.handle(Event::Register(Registration {
            proxy: ProxyId(id),
            name: format!("p{id}"),
            data_addr: SocketAddr::new(IpAddr::from([127, 0, 0, id as u8]), 8000),
            region: None,
            capacity: Capacity {
                connections,
                bits_per_sec: 10_000_000_000,
            },
            streams: vec![],
            rtts: rtt_to_s_ms
                .map(|ms| Rtt {
                    peer: ProxyId(S),
                    micros: ms * 1000,
                })
                .into_iter()
                .collect(),
            decides,
        }));
    }

    fn handle(&mut self, event: Event) -> Vec<Command> {
        self.now = self.now.plus_micros(100_000);
        self.core.handle(event, self.now)
    }

    fn msg(&mut self, from: u32, msg: ProxyMsg) -> Vec<Command> {
        self.handle(Event::Message {
            from: ProxyId(from),
            msg,
        })
    }

    fn resolve(&mut self) -> Option<u32> {
        self.handle(Event::Resolve {
            request: 1,
            stream: "demo".into(),
            region: None,
            client: None,
        })
        .into_iter()
        .find_map(|c| match c {
            Command::Resolved(r) => r.target.map(|p| p.id.0),
            _ => None,
        })
    }

    fn heartbeat(&mut self, from: u32, viewers: u32, login_rate: f32) -> Vec<Command> {
        self.msg(
            from,
            ProxyMsg::Heartbeat {
                streams: vec![StreamLoad {
                    stream: "demo".into(),
                    viewers,
                    child_proxies: 0,
                    bits_per_sec: 0,
                    login_rate,
                    logoff_rate: 0.0,
                }],
                connections: viewers,
                bits_per_sec: 0,
                rtts: vec![],
            },
        )
    }
}

fn activates(out: &[Command], id: u32) -> bool {
    out.iter().any(
        |c| matches!(c, Command::Send { to, msg: PncMsg::Activate { .. } } if *to == ProxyId(id)),
    )
}

fn decision(out: &[Command], rule: Rule) -> Option<&str> {
    out.iter().find_map(|c| match c {
        Command::Log(d) if d.rule == rule => Some(d.reason.as_str()),
        _ => None,
    })
}

/// A proxy that sends a LOGIN per viewer: the core sees it reach Max_s and DISTRIBUTEs for it
/// ([0035]), activating P32. (Viewers 100 s apart, so that the core's own prediction does not
/// fire earlier; no Tick, so nobody times out.)
#[test]
fn the_core_decides_distribute_for_a_proxy_that_sends_a_login_per_viewer() {
    let mut net = Net::new(false);
    let mut out = Vec::new();
    for _ in 0..3 {
        net.now = net.now.plus_micros(100_000_000);
        assert_eq!(net.resolve(), Some(31));
        out = net.msg(
            31,
            ProxyMsg::Login {
                stream: "demo".into(),
                child: Child::Viewer,
            },
        );
    }
    assert!(activates(&out, 32), "the third LOGIN fills P31: DISTRIBUTE");
    assert!(decision(&out, Rule::Distribute).is_some_and(|r| r.contains("reached capacity")));
}

/// A proxy that decides: its heartbeat showing it full makes the core decide nothing (its
/// agent sends DISTRIBUTE itself, right after); the DISTRIBUTE it sends is served, sized with
/// the login rate it reported (0.5/s over sp = 60 s: a demand of 30, [0059]).
#[test]
fn the_core_only_serves_the_distribute_of_a_proxy_that_decides() {
    let mut net = Net::new(true);
    for _ in 0..3 {
        assert_eq!(net.resolve(), Some(31));
    }
    let out = net.heartbeat(31, 3, 0.5);
    assert!(
        !activates(&out, 32),
        "the core decides no DISTRIBUTE for it"
    );
    assert!(decision(&out, Rule::Distribute).is_none());
    let out = net.msg(
        31,
        ProxyMsg::Distribute {
            stream: "demo".into(),
        },
    );
    assert!(activates(&out, 32));
    let sizing = decision(&out, Rule::FarmSize).expect("a farm size decision");
    assert!(sizing.contains("demand 30.0 over sp"), "{sizing}");
}
