//! Relays chained with `--pull` (issue 10, items 3 and 6; [0029], [0044]): a child relay pulls a
//! stream from its parents with `GET /van/{stream}?from=SEQ` and serves it, keeping the parents'
//! sequence numbers. Every viewer checks every record it receives.
//!
//! - a child serves 20 VAN viewers and plain viewers every record in order; ffmpeg's MPEG-TS
//!   through a child plays from its first byte;
//! - with two parents, `kill -9` of one loses and duplicates nothing at the child's viewers;
//! - a parent restarted: the child reconnects and resumes, and a gap, if any, is counted.

use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, Instant};
use van_e2e::checked::{CheckedViewers, GeneratedSource, Kind, assert_every_byte_right, now_us};
use van_e2e::ffmpeg::{probe_and_decode, publish};
use van_e2e::{Relay, RelayOptions, require_tools};

const STREAM: &str = "chain";
const BITRATE: u64 = 4_000_000;

/// A relay pulling `stream` from `parents`, with extra `args`.
fn child(stream: &str, parents: &[SocketAddr], args: &[&str]) -> Relay {
    let list: Vec<String> = parents.iter().map(|p| p.to_string()).collect();
    let pull = format!("{stream}={}", list.join(","));
    let mut all = vec!["--pull", &pull];
    all.extend_from_slice(args);
    Relay::start_with(RelayOptions::args(&all))
}

/// Stops the source, waits until every viewer has its last record, and returns the reports.
fn finish(source: GeneratedSource, viewers: CheckedViewers) -> Vec<van_e2e::checked::ViewerReport> {
    let report = source.stop().unwrap();
    let last = report.next_seq - 1;
    let caught_up = viewers.wait_until_all_have(last, Duration::from_secs(20));
    let reports = viewers.stop();
    caught_up.unwrap();
    reports
}

#[test]
fn a_child_relay_serves_every_record_in_order_to_twenty_van_viewers_and_plain_ones() {
    let origin = Relay::start();
    let source = GeneratedSource::start(&origin, STREAM, BITRATE, 0);
    origin.wait_live(STREAM, Duration::from_secs(10)).unwrap();
    let child = child(STREAM, &[origin.data], &["--proxy-id", "7"]);
    child.wait_live(STREAM, Duration::from_secs(10)).unwrap();
    let van = CheckedViewers::open(child.data, Kind::Van, STREAM, 20, Duration::from_secs(10));
    let plain = CheckedViewers::open(child.data, Kind::Plain, STREAM, 2, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(3));
    let plain_progress = plain.payload_bytes();
    let reports = finish(source, van);
    let plain_reports = plain.stop();
    assert_every_byte_right(&reports);
    assert_every_byte_right(&plain_reports);
    for r in &reports {
        assert!(r.frames.frames > 0, "VAN viewer {}: no data frame", r.index);
    }
    assert!(
        plain_progress.iter().all(|&b| b > 0),
        "plain viewers got {plain_progress:?} bytes"
    );
    // The origin's numbers end to end: every frame the origin has, the child has, under the
    // same sequence number.
    let at_origin = origin.stream_status(STREAM).expect("origin has the stream");
    let at_child = child.stream_status(STREAM).expect("child has the stream");
    assert_eq!(
        at_child["next_seq"], at_origin["next_seq"],
        "{at_origin}\n{at_child}"
    );
    assert_eq!(child.metric_total("parent_jumps_total"), 0.0);
    assert_eq!(child.metric_total("parents_lost_total"), 0.0);
}

#[test]
fn mpeg_ts_through_a_child_relay_plays_from_its_first_byte() {
    let test = "mpeg_ts_through_a_child_relay_plays_from_its_first_byte";
    if !require_tools(test, &["ffmpeg", "ffprobe"]) {
        return;
    }
    let origin = Relay::start();
    let _source = publish(&origin.source_url("icecast", "tv"), &[]);
    origin.wait_live("tv", Duration::from_secs(30)).unwrap();
    let child = child("tv", &[origin.data], &[]);
    child.wait_live("tv", Duration::from_secs(10)).unwrap();
    let status = child.stream_status("tv").expect("the child has the stream");
    assert_eq!(status["content_type"], "video/mp2t", "{status}");
    probe_and_decode(&child, "tv");
}

#[test]
fn kill_9_of_one_of_two_parents_loses_and_duplicates_nothing() {
    let origin = Relay::start();
    let source = GeneratedSource::start(&origin, STREAM, BITRATE, 0);
    origin.wait_live(STREAM, Duration::from_secs(10)).unwrap();
    let mut a = child(STREAM, &[origin.data], &["--proxy-id", "1"]);
    let b = child(STREAM, &[origin.data], &["--proxy-id", "2"]);
    a.wait_live(STREAM, Duration::from_secs(10)).unwrap();
    b.wait_live(STREAM, Duration::from_secs(10)).unwrap();
    let c = child(STREAM, &[a.data, b.data], &["--proxy-id", "3"]);
    c.wait_live(STREAM, Duration::from_secs(10)).unwrap();
    let van = CheckedViewers::open(c.data, Kind::Van, STREAM, 10, Duration::from_secs(10));
    let plain = CheckedViewers::open(c.data, Kind::Plain, STREAM, 2, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(2));
    let before = van.newest_common_seq();
    let killed_at = now_us();
    a.proc.kill();
    std::thread::sleep(Duration::from_secs(3));
    let after = van.newest_common_seq();
    assert!(
        after > before,
        "the viewers got nothing after the kill ({before:?} then {after:?}); C's log:\n{}",
        c.log()
    );
    let reports = finish(source, van);
    let plain_reports = plain.stop();
    assert_every_byte_right(&reports);
    assert_every_byte_right(&plain_reports);
    let worst = reports
        .iter()
        .filter_map(|r| r.latency_quantile_us(killed_at, killed_at + 1_000_000, 1.0))
        .max();
    eprintln!("worst record latency at C's viewers in the second after A's kill: {worst:?} µs");
    assert!(
        c.metric_total("parents_lost_total") >= 1.0,
        "A's loss was seen"
    );
    assert!(
        c.metric_total("parent_duplicates_total") > 0.0,
        "both parents delivered"
    );
    assert_eq!(
        c.metric_total("parent_jumps_total"),
        0.0,
        "no frame skipped"
    );
}

#[test]
fn a_restarted_parent_is_resumed_and_the_gap_is_counted() {
    let origin = Relay::start();
    let source = GeneratedSource::start(&origin, STREAM, BITRATE, 0);
    origin.wait_live(STREAM, Duration::from_secs(10)).unwrap();
    // A listens where it will listen again after its restart.
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let listen = format!("127.0.0.1:{port}");
    let a_args = ["--listen", listen.as_str()];
    let mut a = child(STREAM, &[origin.data], &a_args);
    a.wait_live(STREAM, Duration::from_secs(10)).unwrap();
    let c = child(STREAM, &[a.data], &["--grace", "10"]);
    c.wait_live(STREAM, Duration::from_secs(10)).unwrap();
    let plain = CheckedViewers::open(c.data, Kind::Plain, STREAM, 2, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));

    a.proc.kill();
    let killed = Instant::now();
    let _a = child(STREAM, &[origin.data], &a_args);
    let lost = c.metric_total("parents_lost_total");
    assert!(lost >= 1.0, "C saw A go ({lost})");
    // C reconnects (back-off at most 2 s) and the stream goes on, the same stream.
    let before = plain.newest_common_seq().unwrap_or(0);
    let deadline = Instant::now() + Duration::from_secs(10);
    while plain.newest_common_seq().unwrap_or(0) <= before + 100 {
        assert!(
            Instant::now() < deadline,
            "C's viewers got nothing new after A's restart; C's log:\n{}",
            c.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "C's plain viewers resumed {:?} after A's kill",
        killed.elapsed()
    );
    assert!(
        c.log().contains("resumed=true"),
        "C continued its stream in grace; log:\n{}",
        c.log()
    );
    // A fresh VAN viewer at C gets every record from where it joins.
    let van = CheckedViewers::open(c.data, Kind::Van, STREAM, 3, Duration::from_secs(10));
    std::thread::sleep(Duration::from_secs(1));
    let reports = finish(source, van);
    assert_every_byte_right(&reports);
    let plain_reports = plain.stop();
    let lost_records: u64 = plain_reports.iter().map(|r| r.stats.lost).sum();
    let missed = c.metric_total("parent_frames_missed_total");
    eprintln!(
        "records lost by C's plain viewers: {lost_records}; frames C counted missed: {missed}"
    );
    for r in &plain_reports {
        assert_eq!(
            r.stats.duplicated + r.stats.out_of_order + r.stats.corrupt,
            0,
            "viewer {}: {:?}",
            r.index,
            r.damage()
        );
    }
    if lost_records > 0 {
        assert!(missed > 0.0, "a gap was not counted");
        assert!(c.metric_total("parent_jumps_total") >= 1.0);
    }
}
