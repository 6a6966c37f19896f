//! The whole link against a scripted PNC on a loopback socket, with a recording order sink in
//! place of the reactors: registration, heartbeats, orders carried out, admission, a child's
//! LOGIN, monitoring that reports a lost link, and re-registration after the PNC closes.

use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use control::agent::AgentConfig;
use control::protocol::{
    Capacity, Child, FrameReader, PROTOCOL_VERSION, Peer, PncMsg, ProxyId, ProxyMsg, SourceInfo,
    encode_frame,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc::unbounded_channel;

use super::load::Counters;
use super::{LinkSettings, OrderSink, Relay, run};
use crate::orders::{Admission, Admit, LocalEvent, Order, ParentAddr};

#[derive(Default)]
struct Recorded(Mutex<Vec<Order>>);

impl OrderSink for Recorded {
    fn send_order(&self, order: Order) {
        self.0.lock().unwrap().push(order);
    }
}

/// The PNC's side of one control connection.
struct FakePnc {
    socket: TcpStream,
    reader: FrameReader,
}

impl FakePnc {
    async fn accept(listener: &TcpListener) -> Self {
        let (socket, _) = tokio::time::timeout(Duration::from_secs(5), listener.accept())
            .await
            .expect("the link connects within 5 s")
            .unwrap();
        FakePnc {
            socket,
            reader: FrameReader::new(),
        }
    }

    async fn send(&mut self, msg: PncMsg) {
        self.socket
            .write_all(&encode_frame(&msg).unwrap())
            .await
            .unwrap();
    }

    /// The next message `pick` takes, skipping the others, within 5 s.
    async fn expect<T>(&mut self, mut pick: impl FnMut(ProxyMsg) -> Option<T>) -> T {
        let wait = async {
            loop {
                while let Some(msg) = self.reader.next_msg::<ProxyMsg>().unwrap() {
                    if let Some(t) = pick(msg) {
                        return t;
                    }
                }
                let mut buf = [0u8; 4096];
                let n = self.socket.read(&mut buf).await.unwrap();
                assert!(n > 0, "the link closed the connection");
                self.reader.push(&buf[..n]);
            }
        };
        tokio::time::timeout(Duration::from_secs(5), wait)
            .await
            .expect("the message within 5 s")
    }
}

fn peer(id: u32, addr: SocketAddr) -> Peer {
    Peer {
        id: ProxyId(id),
        addr,
    }
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    for _ in 0..100 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("not within 2 s: {what}");
}

#[tokio::test]
async fn the_link_registers_and_carries_out_the_pncs_orders() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let data_addr: SocketAddr = "127.0.0.1:9021".parse().unwrap();
    let sink: &'static Recorded = Box::leak(Box::default());
    let admission: &'static Admission = Box::leak(Box::default());
    let mut agent = AgentConfig::new(
        ProxyId(21),
        "P21",
        "t0ken",
        data_addr,
        Capacity {
            connections: 10,
            bits_per_sec: 1_000_000_000,
        },
    );
    agent.backoff.initial_ms = 50;
    let settings = LinkSettings {
        pnc: listener.local_addr().unwrap().to_string(),
        agent,
        source_name: None,
        probe_every: std::time::Duration::from_secs(1),
    };
    let (events, rx) = unbounded_channel();
    let relay = Relay {
        orders: sink,
        admission,
        counters: Box::new(|| Counters {
            at_us: 0,
            connections: 0,
            bytes_out: 0,
            streams: Vec::new(),
        }),
    };
    let link = tokio::spawn(run(settings, relay, rx));

    // Registration.
    let mut pnc = FakePnc::accept(&listener).await;
    let hello = pnc
        .expect(|m| match m {
            ProxyMsg::Hello(h) => Some(h),
            _ => None,
        })
        .await;
    assert_eq!(
        (hello.proxy, hello.token.as_str(), hello.data_addr),
        (ProxyId(21), "t0ken", data_addr)
    );
    pnc.send(PncMsg::Welcome {
        version: PROTOCOL_VERSION,
        heartbeat_ms: 100,
    })
    .await;
    pnc.expect(|m| matches!(m, ProxyMsg::Heartbeat { .. }).then_some(()))
        .await;

    // Activated as a standby, then told to send new viewers to P22.
    let p11 = peer(11, "127.0.0.1:9011".parse().unwrap());
    let p22 = peer(22, "127.0.0.1:9022".parse().unwrap());
    pnc.send(PncMsg::Activate {
        stream: "demo".into(),
        source: SourceInfo {
            source: "www.ccrl.com".into(),
            content_type: "video/mp2t".into(),
            bitrate_bps: 0,
        },
        tier: 2,
        parents: vec![p11],
        accepting: true,
    })
    .await;
    pnc.send(PncMsg::StopAccepting {
        stream: "demo".into(),
        redirect_to: vec![p22],
    })
    .await;
    until("new viewers go to P22", || {
        admission.ordered("demo") == Admit::Redirect(vec![p22.addr])
    })
    .await;
    assert!(sink.0.lock().unwrap().is_empty(), "a standby pulls nothing");

    // Its first sink, a child proxy: it pulls from P11 and tells the PNC of the LOGIN.
    events
        .send(LocalEvent::ChildJoined {
            stream: "demo".into(),
            child: 31,
        })
        .unwrap();
    let login = pnc
        .expect(|m| match m {
            ProxyMsg::Login { stream, child } => Some((stream, child)),
            _ => None,
        })
        .await;
    assert_eq!(login, ("demo".into(), Child::Proxy(ProxyId(31))));
    until("the pull order", || !sink.0.lock().unwrap().is_empty()).await;
    assert_eq!(
        sink.0.lock().unwrap().clone(),
        vec![Order::Pull {
            stream: "demo".into(),
            parents: vec![ParentAddr {
                id: 11,
                addr: p11.addr
            }]
        }]
    );

    // A monitored peer that does not answer: three failed probes, one LinkDowngrade.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    pnc.send(PncMsg::MonitorList {
        stream: "demo".into(),
        peers: vec![peer(12, dead)],
    })
    .await;
    let downgrade = async {
        pnc.expect(|m| match m {
            ProxyMsg::LinkDowngrade { stream, parent } => Some((stream, parent)),
            _ => None,
        })
        .await
    };
    assert_eq!(downgrade.await, ("demo".into(), ProxyId(12)));

    // The PNC goes away: the link registers again, with the stream it carries.
    drop(pnc);
    let mut pnc = FakePnc::accept(&listener).await;
    let hello = pnc
        .expect(|m| match m {
            ProxyMsg::Hello(h) => Some(h),
            _ => None,
        })
        .await;
    let demo = hello.streams.iter().find(|s| s.stream == "demo").unwrap();
    assert_eq!(
        (demo.tier, demo.parents.clone(), demo.children.clone()),
        (2, vec![ProxyId(11)], vec![ProxyId(31)])
    );
    // Nothing ordered was undone by the disconnect.
    assert_eq!(admission.ordered("demo"), Admit::Redirect(vec![p22.addr]));
    link.abort();
}

#[test]
fn settings_need_a_token_and_an_address_others_can_reach() {
    let dir = std::env::temp_dir().join(format!("van-link-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let token = dir.join("token");
    std::fs::write(&token, "  s3cret\n").unwrap();
    let cfg = crate::config::PncConfig {
        addr: "127.0.0.1:7700".into(),
        token_file: token.clone(),
        name: "P21".into(),
        region: Some("eu".into()),
        capacity_connections: None,
        stream_capacity_connections: None,
        capacity_bps: 1_000_000,
        advertise: None,
        source_name: None,
        delta_t_ms: 500,
        probe_interval_ms: 1_000,
    };
    let bound: SocketAddr = "127.0.0.1:8080".parse().unwrap();
    let s = LinkSettings::new(&cfg, 21, bound, 5000).unwrap();
    assert_eq!(
        (s.agent.token.as_str(), s.agent.data_addr, s.agent.proxy),
        ("s3cret", bound, ProxyId(21))
    );
    assert_eq!(s.agent.capacity.connections, 5000);
    // Without a stream capacity, one stream may take the whole machine.
    assert_eq!(s.agent.logical_capacity().connections, 5000);
    let per_stream = crate::config::PncConfig {
        stream_capacity_connections: Some(3),
        ..cfg.clone()
    };
    let s = LinkSettings::new(&per_stream, 21, bound, 5000).unwrap();
    // [0047] The PNC's logical capacity decides: DISTRIBUTE at 3 sinks, CONSOLIDATE at 1.
    assert_eq!(
        (
            s.agent.logical_capacity().connections,
            s.agent.min_threshold(),
            s.agent.capacity.connections
        ),
        (3, 1, 5000)
    );
    assert_eq!(
        (s.agent.region.as_deref(), s.agent.delta_t_ms),
        (Some("eu"), 500)
    );
    // Bound to every address: only --advertise says where others reach it.
    let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
    let e = LinkSettings::new(&cfg, 21, any, 5000).unwrap_err();
    assert!(e.to_string().contains("--advertise"), "{e}");
    let advertised = crate::config::PncConfig {
        advertise: Some("10.1.2.3:8080".into()),
        ..cfg.clone()
    };
    let s = LinkSettings::new(&advertised, 21, any, 5000).unwrap();
    assert_eq!(s.agent.data_addr, "10.1.2.3:8080".parse().unwrap());
    std::fs::write(&token, "\n").unwrap();
    let e = LinkSettings::new(&cfg, 21, bound, 5000).unwrap_err();
    assert!(e.to_string().contains("empty"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
}
