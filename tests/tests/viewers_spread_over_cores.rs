//! `--placement least-loaded` (the default): whichever core's listener accepts a viewer, the
//! viewers end up spread evenly over the cores (within the placement's slack of 1 + 1/64 of a
//! core's load), every one of them is served, and a core's load goes back to zero when its
//! viewers leave. The ingest thread (the third reactor of `--cores 2`) serves no viewer. A
//! source is read by a fan-out core while it serves few viewers and by the ingest thread while
//! it is busy (`--ingest-thread auto`), with every byte still right across the moves; with
//! `own` always by the ingest thread, with `shared` always by a fan-out core.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};
use van_e2e::checked::{CheckedViewers, GeneratedSource, Kind, stop_and_check_every_byte};
use van_e2e::{Relay, RelayOptions, join_plain};

/// How long checked viewers get to receive the source's last record.
const T: Duration = Duration::from_secs(30);

/// Opens `n` plain viewers of `spread` and reads their response heads (200 each).
fn join(relay: &Relay, n: usize) -> Vec<TcpStream> {
    join_plain(relay, "spread", n)
}

/// Polls /metrics until the per-reactor values of `family` satisfy `ok`, up to 10 s.
fn wait_per_core(relay: &Relay, family: &str, ok: impl Fn(&[f64]) -> bool) -> Vec<f64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = relay.metric_per_core(family);
        if ok(&v) || Instant::now() > deadline {
            return v;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn wait_viewers(relay: &Relay, ok: impl Fn(&[f64]) -> bool) -> Vec<f64> {
    wait_per_core(relay, "viewers", ok)
}

fn wait_sources(relay: &Relay, ok: impl Fn(&[f64]) -> bool) -> Vec<f64> {
    wait_per_core(relay, "sources", ok)
}

#[test]
fn viewers_are_spread_evenly_and_every_one_is_served() {
    let relay = Relay::start_with(RelayOptions::args(&["--ingest-thread", "own"]));
    let _source = GeneratedSource::start(&relay, "spread", 2_000_000, 0);
    relay.wait_live("spread", Duration::from_secs(20)).unwrap();
    // `wait_live` was itself a viewer; until its core notices it left, placement counts it and
    // may balance the test's viewers against it.
    let counts = wait_viewers(&relay, |v| v.iter().sum::<f64>() == 0.0);
    assert_eq!(counts, vec![0.0, 0.0, 0.0]);
    assert_eq!(relay.metric_per_core("sources"), vec![0.0, 0.0, 1.0]);
    let roles: Vec<_> = relay.status()["cores"]
        .as_array()
        .expect("cores")
        .iter()
        .map(|c| c["role"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(roles, ["fanout", "fanout", "ingest"]);

    let mut viewers = join(&relay, 41);
    let counts = wait_viewers(&relay, |v| v.iter().sum::<f64>() == 41.0);
    assert_eq!(counts.iter().sum::<f64>(), 41.0, "{counts:?}");
    assert_eq!(
        counts[2], 0.0,
        "the ingest thread serves no viewer: {counts:?}"
    );
    assert!(
        (counts[0] - counts[1]).abs() <= 2.0,
        "viewers per core {counts:?}, handed off {:?}",
        relay.metric_per_core("viewers_handed_off_total")
    );
    // Every viewer, handed over or not, gets the stream.
    for (i, v) in viewers.iter_mut().enumerate() {
        let mut buf = [0u8; 4096];
        let mut got = 0;
        while got < 4096 {
            let n = v
                .read(&mut buf)
                .unwrap_or_else(|e| panic!("viewer {i}: {e}"));
            assert!(n > 0, "viewer {i}: closed after {got} bytes");
            got += n;
        }
    }

    // Leaving brings each core's load back to zero, and new viewers are spread again.
    drop(viewers);
    let counts = wait_viewers(&relay, |v| v.iter().sum::<f64>() == 0.0);
    assert_eq!(counts, vec![0.0, 0.0, 0.0]);
    let _again = join(&relay, 10);
    let counts = wait_viewers(&relay, |v| v.iter().sum::<f64>() == 10.0);
    assert!((counts[0] - counts[1]).abs() <= 2.0, "{counts:?}");
    assert_eq!(counts[2], 0.0, "{counts:?}");
}

#[test]
fn with_a_shared_ingest_thread_a_fan_out_core_reads_the_source_and_serves_viewers() {
    let relay = Relay::start_with(RelayOptions::args(&["--ingest-thread", "shared"]));
    let _source = GeneratedSource::start(&relay, "spread", 2_000_000, 0);
    relay.wait_live("spread", Duration::from_secs(20)).unwrap();
    let sources = relay.metric_per_core("sources");
    assert_eq!(
        sources.len(),
        2,
        "two reactors, no ingest thread: {sources:?}"
    );
    assert_eq!(sources.iter().sum::<f64>(), 1.0, "{sources:?}");
    let mut viewers = join(&relay, 6);
    for (i, v) in viewers.iter_mut().enumerate() {
        let mut buf = [0u8; 4096];
        let n = v
            .read(&mut buf)
            .unwrap_or_else(|e| panic!("viewer {i}: {e}"));
        assert!(n > 0, "viewer {i}: closed");
    }
}

#[test]
fn a_source_moves_to_the_ingest_thread_while_its_core_is_busy_and_back_losing_nothing() {
    let relay = Relay::start_with(RelayOptions::args(&["--ingest-busy-viewers", "8"]));
    let source = GeneratedSource::start(&relay, "moving", 8_000_000, 0);
    relay.wait_live("moving", Duration::from_secs(20)).unwrap();
    let on_a_fan_out_core = |s: &[f64]| s[2] == 0.0 && s.iter().sum::<f64>() == 1.0;
    let sources = wait_sources(&relay, on_a_fan_out_core);
    assert!(on_a_fan_out_core(&sources), "few viewers: {sources:?}");
    let limit = Duration::from_secs(10);
    let plain = CheckedViewers::open(relay.data, Kind::Plain, "moving", 1, limit);
    let van = CheckedViewers::open(relay.data, Kind::Van, "moving", 1, limit);

    for cycle in 1..=3 {
        // 16 viewers a core: busy (above 8), so its next read hands the source over.
        let crowd = join_plain(&relay, "moving", 30);
        let sources = wait_sources(&relay, |s| s == [0.0, 0.0, 1.0]);
        assert_eq!(
            sources,
            [0.0, 0.0, 1.0],
            "cycle {cycle}: a busy core's source is read by the ingest thread"
        );
        // The crowd leaves: a core serving at most 2 viewers takes the source back.
        drop(crowd);
        let sources = wait_sources(&relay, on_a_fan_out_core);
        assert!(
            on_a_fan_out_core(&sources),
            "cycle {cycle}, quiet again: {sources:?}"
        );
    }
    let moved: f64 = relay.metric_per_core("sources_moved_total").iter().sum();
    assert_eq!(moved, 6.0, "one move each way per cycle");

    stop_and_check_every_byte(source, vec![plain, van], T);
}
