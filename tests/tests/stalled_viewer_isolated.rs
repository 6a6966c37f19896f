//! (d) One viewer stops reading: the others still get the full rate, and the relay's memory
//! stays bounded while the stalled viewer falls behind.

use std::process::Stdio;
use std::time::Duration;
use van_e2e::{Relay, field, source_args, vanbench, vanbench_json};

#[test]
fn a_stalled_viewer_slows_no_one_and_costs_no_memory() {
    let relay = Relay::start();
    let _source = vanbench(&source_args(&relay, "stall", "8M", "90s"), Stdio::null()).unwrap();
    relay.wait_live("stall", Duration::from_secs(20)).unwrap();

    let args: Vec<String> = [
        "viewers",
        "--url",
        &relay.url("/live/stall"),
        "-n",
        "20",
        "--stall",
        "1",
        "--duration",
        "10s",
        "--bitrate",
        "8M",
        "--json",
        "-",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let viewers = std::thread::spawn(move || vanbench_json(&args, Duration::from_secs(90)));
    // Once the stalled viewer's socket buffers are full, everything more the relay kept for it
    // would show here: 8 Mbit/s is 1 MB/s, so 8 s of it is 8 MB.
    std::thread::sleep(Duration::from_secs(3));
    let rss_before = relay.rss_kib();
    let summary = viewers.join().unwrap().unwrap();
    eprintln!("vanbench summary: {summary}");
    let rss_after = relay.rss_kib();
    eprintln!("relay RSS: {rss_before} KiB 3 s in, {rss_after} KiB at the end");

    assert_eq!(field(&summary, "connected"), 20.0, "{summary}");
    assert_eq!(field(&summary, "stalled"), 1.0, "{summary}");
    for counter in ["lost", "corrupt", "duplicated", "out_of_order"] {
        assert_eq!(field(&summary, counter), 0.0, "{counter}: {summary}");
    }
    // delivered_ratio counts the 19 reading viewers only.
    assert!(
        field(&summary, "delivered_ratio") >= 0.8,
        "others slowed: {summary}"
    );
    assert!(
        rss_after <= rss_before + 4 * 1024,
        "relay RSS grew from {rss_before} KiB to {rss_after} KiB while a viewer was stalled"
    );
}
