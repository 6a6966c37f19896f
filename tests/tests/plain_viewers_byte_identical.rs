//! (c) 100 plain viewers receive bytes identical to the source's from their join point: every
//! viewer is checked from its very first byte (the bytes before its first whole record must be
//! the end of the record before), each keeps up with the source on its own, and each has every
//! record up to the source's last one.

use std::time::Duration;
use van_e2e::Relay;
use van_e2e::checked::{
    CheckedViewers, GeneratedSource, Kind, assert_every_byte_right, assert_every_ratio_at_least,
    delivered_ratios,
};

const VIEWERS: usize = 100;
const WINDOW: Duration = Duration::from_secs(5);

#[test]
fn hundred_plain_viewers_get_the_source_bytes_unchanged() {
    let relay = Relay::start();
    let source = GeneratedSource::start(&relay, "plain", 4_000_000, 0);
    relay.wait_live("plain", Duration::from_secs(20)).unwrap();
    let viewers = CheckedViewers::open(
        relay.data,
        Kind::Plain,
        "plain",
        VIEWERS,
        Duration::from_secs(60),
    );

    // The measured window: what each viewer received against what the source sent meanwhile.
    let (viewers_before, source_before) = (viewers.payload_bytes(), source.bytes());
    std::thread::sleep(WINDOW);
    let (viewers_after, source_after) = (viewers.payload_bytes(), source.bytes());

    // Then the source stops: every viewer must get every record up to its last one.
    let report = source.stop().unwrap();
    let last = report.next_seq - 1;
    let caught_up = viewers.wait_until_all_have(last, Duration::from_secs(30));
    let reports = viewers.stop();
    assert_every_byte_right(&reports);
    caught_up.unwrap();
    let ratios = delivered_ratios(
        &viewers_before,
        &viewers_after,
        source_after - source_before,
    );
    eprintln!("per-viewer share of the source's bytes over {WINDOW:?}: {ratios:.3?}");
    // Each viewer on its own, with room for a loaded machine: a viewer may be up to a second
    // further behind at the window's end than at its start.
    assert_every_ratio_at_least(&ratios, 0.8, "the source's bytes");
}
