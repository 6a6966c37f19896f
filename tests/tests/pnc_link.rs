//! Relays under a real PNC (`dataplane --pnc`): they register (the PNC's `/api/topology` lists
//! them), their heartbeats keep arriving, a source publishing at one of them is announced (the
//! topology shows the stream with that proxy as its origin), and when the PNC is killed the
//! relays keep relaying, then register again with the restarted PNC, which shows the same
//! proxies and stream again, with the viewer that joined meanwhile (DESIGN.md: "a restarted PNC rebuilds its view from the proxies'
//! registrations").
//!
//! Under orders: a viewer that resolves the stream at the PNC makes it activate one relay per
//! tier; a viewer at the lower tier, a standby, waits for the stream (and the PNC counts it
//! there); the upper tier, which serves child proxies only, answers a plain viewer `503` with
//! the reason; and the lower tier, told to monitor the upper, reports the link lost when the upper
//! relay dies ([0053], [0066]).

use std::time::{Duration, Instant};

use serde_json::Value;
use van_e2e::pnc::Pnc;
use van_e2e::{
    RawSource, RawViewer, Relay, RelayOptions, SOURCE_PASSWORD, SOURCE_USER, poll, request,
};

const HEARTBEAT_MS: u32 = 200;

fn proxy(topology: &Value, id: u32) -> Option<&Value> {
    topology["proxies"]
        .as_array()?
        .iter()
        .find(|p| p["proxy"] == id)
}

fn registered(pnc: &Pnc, ids: &[u32]) -> Option<Value> {
    let t = pnc.topology().ok()?;
    ids.iter()
        .all(|&id| proxy(&t, id).is_some_and(|p| p["alive"] == true))
        .then_some(t)
}

/// The origin of `stream` in the topology, if the PNC knows the stream.
fn origin(topology: &Value, stream: &str) -> Option<u64> {
    topology["streams"]
        .as_array()?
        .iter()
        .find(|s| s["stream"] == stream)?["origin"]
        .as_u64()
}

fn relay(pnc: &Pnc, id: u32) -> Relay {
    let mut args = pnc.relay_args(id);
    args.extend(["--capacity-connections".into(), "100".into()]);
    args.extend(["--source-name".into(), "www.ccrl.com".into()]);
    Relay::start_with(RelayOptions {
        args,
        wrapper: Vec::new(),
    })
}

#[test]
fn relays_register_announce_and_come_back_after_a_pnc_restart() {
    let started = Instant::now();
    let pnc = Pnc::start(0, HEARTBEAT_MS, "").expect("pnc starts");
    let control_port = pnc.control.port();
    let relays = [relay(&pnc, 1), relay(&pnc, 2)];

    // Registration: both proxies listed, alive, with the data address they listen on.
    let topology = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        registered(&pnc, &[1, 2])
    })
    .unwrap_or_else(|| {
        panic!(
            "the relays did not register; relay 1 log:\n{}",
            relays[0].log()
        )
    });
    for (i, r) in relays.iter().enumerate() {
        let p = proxy(&topology, i as u32 + 1).unwrap();
        assert_eq!(p["addr"], r.data.to_string(), "{p}");
        assert_eq!(p["name"], format!("P{}", i + 1));
        assert_eq!(p["capacity"]["connections"], 100);
    }

    // Heartbeats: the PNC keeps hearing from them.
    let heard = |t: &Value| proxy(t, 1).and_then(|p| p["last_heard"].as_u64());
    let first = heard(&topology).unwrap();
    let later = poll(Duration::from_secs(5), Duration::from_millis(100), || {
        let t = pnc.topology().ok()?;
        heard(&t).filter(|&h| h >= first + 2 * u64::from(HEARTBEAT_MS) * 1000)
    });
    assert!(later.is_some(), "no heartbeat from proxy 1 after {first}");

    // A source at proxy 1 is announced: the stream appears with proxy 1 as its origin.
    let mut source =
        RawSource::publish(relays[0].data, "demo", Some((SOURCE_USER, SOURCE_PASSWORD)))
            .expect("source accepted");
    source.send(&[0x55; 4096]).unwrap();
    let shown = poll(Duration::from_secs(10), Duration::from_millis(100), || {
        origin(&pnc.topology().ok()?, "demo")
    });
    assert_eq!(
        shown,
        Some(1),
        "the stream was not announced; topology: {:?}",
        pnc.topology()
    );
    let topology = pnc.topology().unwrap();
    let demo = topology["streams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["stream"] == "demo")
        .unwrap();
    assert_eq!(demo["source"]["source"], "www.ccrl.com", "{demo}");

    // The PNC dies: the relay keeps relaying (a viewer joins and gets bytes).
    drop(pnc);
    let mut viewer = RawViewer::open(relays[0].data, "/live/demo", "").expect("viewer");
    assert_eq!(viewer.head.status, 200);
    source.send(&[0x66; 8192]).unwrap();
    let mut got = std::mem::take(&mut viewer.head.body);
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < 8192 && Instant::now() < deadline {
        let mut chunk = [0u8; 16384];
        match std::io::Read::read(&mut viewer.stream, &mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&chunk[..n]),
        }
    }
    assert!(
        got.len() >= 8192,
        "the relay stopped relaying without its PNC: {} bytes",
        got.len()
    );
    std::thread::sleep(Duration::from_secs(1));

    // A new PNC where the old one was: the relays register again, with their stream.
    let pnc = Pnc::start(control_port, HEARTBEAT_MS, "").expect("pnc restarts on its port");
    let down_until = Instant::now();
    let topology = poll(Duration::from_secs(15), Duration::from_millis(100), || {
        let t = registered(&pnc, &[1, 2])?;
        (origin(&t, "demo") == Some(1)).then_some(t)
    })
    .unwrap_or_else(|| {
        panic!(
            "the relays did not come back to the restarted PNC; topology {:?}; relay 1 log:\n{}",
            pnc.topology(),
            relays[0].log()
        )
    });
    let back_after = down_until.elapsed();
    eprintln!(
        "re-registered {back_after:?} after the PNC restarted; {} proxies",
        topology["proxies"].as_array().unwrap().len()
    );
    for r in &relays {
        let log = r.log();
        assert!(
            log.matches("registered with the PNC").count() >= 2,
            "a relay did not register twice:\n{log}"
        );
    }
    // The viewer that joined while the PNC was away is counted there (the data port's events
    // reached the agent, its registration carried them).
    let viewers = poll(Duration::from_secs(5), Duration::from_millis(100), || {
        let t = pnc.topology().ok()?;
        let demo = t["streams"]
            .as_array()?
            .iter()
            .find(|s| s["stream"] == "demo")?;
        (demo["viewers"] == 1).then_some(())
    });
    assert!(
        viewers.is_some(),
        "the PNC does not count the viewer: {:?}",
        pnc.topology()
    );
    source.send(&[0x77; 4096]).unwrap();
    drop(viewer);
    source.finish();
    // The source's end reaches the PNC once its grace is over (default 5 s): not waited for.
    assert!(started.elapsed() < Duration::from_secs(30));
}

/// The active proxy `id` of `stream`.
fn active(topology: &Value, stream: &str, id: u64) -> Option<Value> {
    let s = topology["streams"]
        .as_array()?
        .iter()
        .find(|s| s["stream"] == stream)?;
    s["regions"]
        .as_array()?
        .iter()
        .flat_map(|r| r["tiers"].as_array().into_iter().flatten())
        .flat_map(|t| t["active"].as_array().into_iter().flatten())
        .find(|a| a["proxy"] == id)
        .cloned()
}

/// The tier of each active proxy of `stream`.
fn tiers(topology: &Value, stream: &str) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    let Some(s) = topology["streams"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["stream"] == stream))
    else {
        return out;
    };
    for region in s["regions"].as_array().into_iter().flatten() {
        for tier in region["tiers"].as_array().into_iter().flatten() {
            for active in tier["active"].as_array().into_iter().flatten() {
                if let (Some(p), Some(t)) = (active["proxy"].as_u64(), tier["tier"].as_u64()) {
                    out.push((p, t));
                }
            }
        }
    }
    out.sort();
    out
}

/// A counter of the PNC's `/metrics`.
fn pnc_counter(pnc: &Pnc, name: &str) -> Option<f64> {
    let answer = request(
        pnc.admin,
        b"GET /metrics HTTP/1.0\r\n\r\n",
        Duration::from_secs(5),
    )
    .ok()?;
    String::from_utf8_lossy(&answer.body)
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(name))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
}

#[test]
fn relays_follow_the_pnc_tiers_admission_and_monitoring() {
    // Heartbeats every 500 ms, a crash after 5 s: monitoring (three probes a second apart)
    // finds a dead parent before the PNC's heartbeat timeout does.
    let pnc = Pnc::start(
        0,
        500,
        "[[proxies]]\nid = 11\ntier = 1\n[[proxies]]\nid = 21\ntier = 2\n",
    )
    .expect("pnc starts");
    let origin = relay(&pnc, 1);
    let upper = relay(&pnc, 11);
    let lower = relay(&pnc, 21);
    poll(Duration::from_secs(10), Duration::from_millis(100), || {
        registered(&pnc, &[1, 11, 21])
    })
    .expect("the relays register");
    let mut source = RawSource::publish(origin.data, "demo", Some((SOURCE_USER, SOURCE_PASSWORD)))
        .expect("source accepted");
    source.send(&[0x55; 4096]).unwrap();
    poll(Duration::from_secs(10), Duration::from_millis(100), || {
        origin_of(&pnc, "demo")
    })
    .expect("the stream is announced");

    // A viewer asks the PNC: one relay per tier is activated, the viewer sent to the lower.
    let resolved = request(
        pnc.public,
        b"GET /resolve/demo HTTP/1.0\r\n\r\n",
        Duration::from_secs(5),
    )
    .expect("resolve");
    assert_eq!(
        resolved.status,
        302,
        "{:?}",
        String::from_utf8_lossy(&resolved.body)
    );
    assert_eq!(
        resolved.header("location"),
        Some(format!("http://{}/live/demo", lower.data).as_str())
    );
    let activated = poll(Duration::from_secs(5), Duration::from_millis(100), || {
        let t = tiers(&pnc.topology().ok()?, "demo");
        (t.len() == 2).then_some(t)
    });
    assert_eq!(activated, Some(vec![(11, 1), (21, 2)]));

    // A viewer at the lower tier, a standby, waits for the stream rather than getting 404: its
    // arrival is the standby's first sink ([0054]), and the PNC counts it there.
    let mut waiting = std::net::TcpStream::connect(lower.data).unwrap();
    std::io::Write::write_all(&mut waiting, b"GET /live/demo HTTP/1.1\r\nHost: t\r\n\r\n").unwrap();
    let counted = poll(Duration::from_secs(5), Duration::from_millis(100), || {
        let p21 = active(&pnc.topology().ok()?, "demo", 21)?;
        (p21["viewers"] == 1).then_some(p21)
    });
    assert!(
        counted.is_some(),
        "the PNC does not count the viewer at the standby: {:?}; its log:\n{}",
        active(&pnc.topology().unwrap(), "demo", 21),
        lower.log()
    );
    drop(waiting);

    // The upper tier takes child proxies only: a plain viewer there gets 503 and the reason.
    let refused = poll(Duration::from_secs(5), Duration::from_millis(100), || {
        let r = request(
            upper.data,
            b"GET /live/demo HTTP/1.1\r\nHost: t\r\n\r\n",
            Duration::from_secs(5),
        )
        .ok()?;
        (r.status == 503).then_some(r)
    })
    .unwrap_or_else(|| panic!("no 503 at the upper tier; its log:\n{}", upper.log()));
    assert!(
        String::from_utf8_lossy(&refused.body).contains("takes no new viewers"),
        "{:?}",
        String::from_utf8_lossy(&refused.body)
    );

    // The upper relay dies: the lower one, monitoring it, reports the link lost.
    let before = pnc_counter(&pnc, "link_downgrades").unwrap_or(0.0);
    drop(upper);
    let reported = poll(Duration::from_secs(6), Duration::from_millis(100), || {
        pnc_counter(&pnc, "link_downgrades").filter(|&n| n > before)
    });
    assert!(
        reported.is_some(),
        "no LinkDowngrade reached the PNC; lower relay log:\n{}",
        lower.log()
    );
    // Found by the probes, or first by the pull from it failing: either is the lower relay's.
    let log = lower.log();
    assert!(
        log.contains("lost or degraded") || log.contains("parent lost"),
        "{log}"
    );
    source.finish();
}

fn origin_of(pnc: &Pnc, stream: &str) -> Option<u64> {
    origin(&pnc.topology().ok()?, stream)
}
