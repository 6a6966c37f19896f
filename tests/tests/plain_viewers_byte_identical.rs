//! (c) 100 plain viewers receive bytes identical to the source's from their join point.

use std::process::Stdio;
use std::time::Duration;
use van_e2e::{Relay, field, source_args, vanbench, vanbench_json};

#[test]
fn hundred_plain_viewers_get_the_source_bytes_unchanged() {
    let relay = Relay::start();
    let _source = vanbench(&source_args(&relay, "plain", "4M", "90s"), Stdio::null()).unwrap();
    relay.wait_live("plain", Duration::from_secs(20)).unwrap();

    let args: Vec<String> = [
        "viewers",
        "--url",
        &relay.url("/live/plain"),
        "-n",
        "100",
        "--duration",
        "5s",
        "--bitrate",
        "4M",
        "--json",
        "-",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let summary = vanbench_json(&args, Duration::from_secs(90)).unwrap();
    eprintln!("vanbench summary: {summary}");

    assert_eq!(field(&summary, "connected"), 100.0, "{summary}");
    assert!(field(&summary, "records") > 0.0, "no records: {summary}");
    for counter in ["lost", "corrupt", "duplicated", "out_of_order"] {
        assert_eq!(field(&summary, counter), 0.0, "{counter}: {summary}");
    }
    assert!(
        field(&summary, "delivered_ratio") >= 0.8,
        "rate fell short: {summary}"
    );
}
