//! (b) 200 VAN viewers receive every sequence number once and in order for 5 s at 8 Mbit/s.

use std::process::Stdio;
use std::time::Duration;
use van_e2e::{Relay, VAN_TOKEN, field, source_args, vanbench, vanbench_json};

#[test]
fn two_hundred_van_viewers_get_every_sequence_number_once_in_order() {
    let relay = Relay::start();
    let _source = vanbench(&source_args(&relay, "van8m", "8M", "90s"), Stdio::null()).unwrap();
    relay.wait_live("van8m", Duration::from_secs(20)).unwrap();

    let args: Vec<String> = [
        "viewers",
        "--van-url",
        &relay.url("/van/van8m"),
        "--token",
        VAN_TOKEN,
        "-n",
        "200",
        "--duration",
        "5s",
        "--bitrate",
        "8M",
        "--json",
        "-",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let summary = vanbench_json(&args, Duration::from_secs(90)).unwrap();
    eprintln!("vanbench summary: {summary}");

    assert_eq!(field(&summary, "connected"), 200.0, "{summary}");
    assert!(field(&summary, "frames") > 0.0, "no frames: {summary}");
    assert_eq!(field(&summary, "seq_gaps"), 0.0, "{summary}");
    assert_eq!(field(&summary, "duplicated"), 0.0, "{summary}");
    assert_eq!(field(&summary, "out_of_order"), 0.0, "{summary}");
    // Wide margin: the machine running the tests is shared and loaded.
    assert!(
        field(&summary, "delivered_ratio") >= 0.8,
        "rate fell short: {summary}"
    );
}
