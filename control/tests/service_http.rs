//! HTTP of the real `pnc`: `/resolve/{stream}` on the public port ([0033]), `/api/topology`,
//! `/metrics`, `/status` and the topology page on the admin port.

mod service_util;

use std::time::Duration;

use service_util::*;

/// Two regions: loopback clients are in R1 through the CIDR table.
/// P22's physical capacity comes from the configuration, not its hello.
const REGIONS: &str = "[[regions]]\ncidr = \"127.0.0.0/8\"\nregion = \"R1\"\n\
                       [[regions]]\ncidr = \"10.9.0.0/16\"\nregion = \"R2\"\n\
                       [[proxies]]\nid = 22\nconnections = 7\n";

#[test]
fn resolve_redirects_by_region() {
    let pnc = Pnc::start("", REGIONS);
    // Only the origin: the stream exists but no proxy can take a viewer (503).
    let run = pnc.script(
        "hello P1\nP1 expect Welcome 20000\nP1 announce solo\nwait-stream solo 20000\n",
        Duration::from_secs(60),
    );
    run.assert_ok();
    let (status, _, body) = http_get(pnc.public, "/resolve/solo");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no proxy"), "{body}");
    // Two tiers in each region (RTT to the origin 11 and 31 ms).
    let run = pnc.script(
        "hello P11 region=R1 rtt=P1:11\nhello P21 region=R1 rtt=P1:31\n\
         hello P12 region=R2 rtt=P1:12\nhello P22 region=R2 rtt=P1:32\n\
         P11 expect Welcome 20000\nP21 expect Welcome 20000\nP12 expect Welcome 20000\nP22 expect Welcome 20000\n",
        Duration::from_secs(60),
    );
    run.assert_ok();
    // The client's address (127.0.0.1) is in R1: the bottom tier of R1 is P21.
    let (status, headers, body) = http_get(pnc.public, "/resolve/solo");
    assert_eq!(status, 302, "{body}");
    assert_eq!(
        header(&headers, "location"),
        Some("http://127.0.0.21:8000/live/solo")
    );
    // ?region=R2 wins over the address.
    let (status, headers, _) = http_get(pnc.public, "/resolve/solo?region=R2");
    assert_eq!(status, 302);
    assert_eq!(
        header(&headers, "location"),
        Some("http://127.0.0.22:8000/live/solo")
    );
    // Unknown stream: 404 with the reason; a name that is no plain name: 400.
    let (status, _, body) = http_get(pnc.public, "/resolve/nothing-here");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no such stream"), "{body}");
    let (status, _, _) = http_get(pnc.public, "/resolve/a%20b");
    assert_eq!(status, 400);
    // The public port serves nothing of the admin port.
    let (status, _, _) = http_get(pnc.public, "/api/topology");
    assert_eq!(status, 404);

    // The topology shows both regions' first paths.
    let topo = pnc.topology();
    let caps: Vec<(u32, u32)> = topo
        .proxies
        .iter()
        .map(|p| (p.proxy.0, p.capacity.connections))
        .collect();
    assert_eq!(
        caps,
        vec![(1, 100), (11, 100), (12, 100), (21, 100), (22, 7)]
    );
    let s = topo.streams.iter().find(|s| s.stream == "solo").unwrap();
    let mut active: Vec<(String, u32, u32)> = s
        .regions
        .iter()
        .flat_map(|r| {
            r.tiers.iter().flat_map(move |t| {
                t.active
                    .iter()
                    .map(move |a| (r.region.clone(), t.tier, a.proxy.0))
            })
        })
        .collect();
    active.sort();
    assert_eq!(
        active,
        vec![
            ("R1".into(), 1, 11),
            ("R1".into(), 2, 21),
            ("R2".into(), 1, 12),
            ("R2".into(), 2, 22),
        ]
    );
}

#[test]
fn admin_endpoints() {
    let pnc = Pnc::start("", "");
    let mut script = figure_2_hellos();
    for _ in 1..=4 {
        script += "viewer demo sleep=300\n";
    }
    pnc.script(&script, Duration::from_secs(120)).assert_ok();

    let (status, headers, metrics) = http_get(pnc.admin, "/metrics");
    assert_eq!(status, 200);
    assert!(
        header(&headers, "content-type").is_some_and(|c| c.contains("openmetrics-text")),
        "{headers:?}"
    );
    for line in [
        "pnc_registrations_total 10",
        "pnc_activations_total 4",
        "pnc_distributes_total 1",
        "pnc_redirects_total 4",
        "pnc_proxies{state=\"alive\"} 10",
        "pnc_stream_viewers{stream=\"demo\"} 4",
        "pnc_stream_active_proxies{stream=\"demo\",phase=\"expansion\"} 3",
        "pnc_stream_active_proxies{stream=\"demo\",phase=\"contraction\"} 1",
        "pnc_control_connections_total",
        "pnc_hellos_refused_total 0",
        "pnc_consolidations_total 0",
        "pnc_migrations_total 0",
        "pnc_heartbeat_timeouts_total 0",
        "# EOF",
    ] {
        assert!(metrics.contains(line), "no {line:?} in\n{metrics}");
    }

    let (status, _, body) = http_get(pnc.admin, "/status");
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["proxies_registered"], 10);
    assert_eq!(v["streams"], 1);

    let (status, headers, page) = http_get(pnc.admin, "/");
    assert_eq!(status, 200);
    assert!(header(&headers, "content-type").is_some_and(|c| c.starts_with("text/html")));
    assert!(page.contains("<title>VAN topology</title>"));
    assert!(page.contains("fetch('api/topology')"));

    let (status, headers, body) = http_get(pnc.admin, "/api/topology");
    assert_eq!(status, 200);
    assert!(header(&headers, "content-type").is_some_and(|c| c.contains("application/json")));
    let topo: control::core::Topology = serde_json::from_str(&body).unwrap();
    assert_eq!(topo.proxies.len(), 10);
    assert_eq!(topo.streams[0].viewers, 4);
}

/// [0033] `POST /api/anticipate`: figure 2's proxies (capacity 3), 9 viewers announced for
/// at once: three bottom-tier proxies are active before any viewer comes, with the decision in
/// the answer; an unknown stream is a 404, values no event has a 400, both with the reason.
#[test]
fn an_announced_event_is_provisioned_before_its_viewers() {
    let pnc = Pnc::start("", "");
    pnc.script(&figure_2_hellos(), Duration::from_secs(120))
        .assert_ok();
    let (status, _, body) = http_post_json(
        pnc.admin,
        "/api/anticipate",
        r#"{"stream": "demo", "viewers": 9, "ramp_s": 0}"#,
    );
    assert_eq!(status, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let decisions = v["decisions"].as_array().expect("decisions");
    assert!(
        decisions.iter().any(|d| d
            .as_str()
            .is_some_and(|d| d.contains("3 proxies activated in tier 3"))),
        "{body}"
    );
    let topo = pnc.topology();
    let bottom = topo.streams[0].regions[0]
        .tiers
        .iter()
        .find(|t| t.tier == 3)
        .map_or(0, |t| t.active.len());
    assert_eq!(bottom, 3, "{topo:?}");
    assert!(pnc.log_has(&["pnc::decision", "Anticipate", "[0033]"]));

    let (status, _, body) = http_post_json(
        pnc.admin,
        "/api/anticipate",
        r#"{"stream": "nobody", "viewers": 9}"#,
    );
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("no such stream"), "{body}");
    let (status, _, body) = http_post_json(
        pnc.admin,
        "/api/anticipate",
        r#"{"stream": "demo", "viewers": 9, "ramp_s": -5}"#,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("ramp_s"), "{body}");
    // The public port takes no announcements.
    let (status, _, _) = http_post_json(pnc.public, "/api/anticipate", "{}");
    assert_eq!(status, 404);
}

#[test]
fn a_silent_http_client_is_cut_off() {
    use std::io::Read;
    let pnc = Pnc::start_with("http_connection_secs = 1", "", "");
    let started = std::time::Instant::now();
    // Connects and never sends a request: closed once its lifetime is over.
    let mut idle = std::net::TcpStream::connect(pnc.public).unwrap();
    idle.set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    let mut buf = [0u8; 64];
    let n = idle.read(&mut buf).unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
    assert!(started.elapsed() < Duration::from_secs(15));
    // The ports still answer.
    let (status, _, _) = http_get(pnc.public, "/resolve/none");
    assert_eq!(status, 404);
    let (status, _, _) = http_get(pnc.admin, "/status");
    assert_eq!(status, 200);
}
