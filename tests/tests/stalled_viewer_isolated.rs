//! (d) One viewer stops reading and slows no one: each other viewer's latency stays what it was
//! before the stall, each still gets the whole stream at the source's rate (and the source is not
//! held back), the relay skips the stalled viewer to the live edge or drops it (counted in
//! /metrics), and its
//! memory does not grow while that viewer stays stalled.

use std::os::fd::AsRawFd;
use std::time::Duration;
use van_e2e::checked::{
    CheckedViewers, GeneratedSource, Kind, ViewerReport, assert_every_byte_right,
    assert_every_ratio_at_least, delivered_ratios, now_us,
};
use van_e2e::{RawViewer, Relay, poll};

const READERS: usize = 19;
const BITRATE: u64 = 8_000_000;
const PHASE: Duration = Duration::from_secs(5);
/// How much later a reading viewer's p99 may be with the stall than without it: twice, plus
/// room for a loaded machine's scheduling. A relay that let the stalled viewer hold the others
/// back would add seconds to them (until the window left the stalled viewer behind).
const P99_SLACK_US: u64 = 250_000;

/// What the readers and the source did over one phase.
struct Phase {
    from_us: u64,
    to_us: u64,
    ratios: Vec<f64>,
    source_bps: f64,
}

fn measure(viewers: &CheckedViewers, source: &GeneratedSource, length: Duration) -> Phase {
    let (from_us, viewers_before, source_before) =
        (now_us(), viewers.payload_bytes(), source.bytes());
    std::thread::sleep(length);
    let (to_us, viewers_after, source_after) = (now_us(), viewers.payload_bytes(), source.bytes());
    let sent = source_after - source_before;
    Phase {
        from_us,
        to_us,
        ratios: delivered_ratios(&viewers_before, &viewers_after, sent),
        source_bps: sent as f64 * 8.0 / ((to_us - from_us) as f64 / 1e6),
    }
}

fn p99(report: &ViewerReport, phase: &Phase) -> u64 {
    report
        .latency_quantile_us(phase.from_us, phase.to_us, 0.99)
        .unwrap_or_else(|| panic!("viewer {}: no record in a phase", report.index))
}

#[test]
fn a_stalled_viewer_slows_no_one_and_costs_no_memory() {
    let relay = Relay::start();
    let source = GeneratedSource::start(&relay, "stall", BITRATE, 0);
    relay.wait_live("stall", Duration::from_secs(20)).unwrap();
    let viewers = CheckedViewers::open(
        relay.data,
        Kind::Plain,
        "stall",
        READERS,
        Duration::from_secs(60),
    );

    let calm = measure(&viewers, &source, PHASE);
    assert_eq!(
        relay.metric_total("viewers_skipped_total"),
        0.0,
        "a viewer that reads was skipped"
    );

    let rss_before = relay.rss_kib();
    // One more viewer, which never reads, with a small receive buffer so that the relay's
    // sends to it stay pending soon.
    let stalled = RawViewer::open(relay.data, "/live/stall", "").unwrap();
    assert_eq!(stalled.head.status, 200);
    let small: libc::c_int = 16 * 1024;
    // SAFETY: setsockopt on a socket this test owns, with a pointer to a live c_int.
    let set = unsafe {
        libc::setsockopt(
            stalled.stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            (&small as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(set, 0, "SO_RCVBUF");
    let stall_from_us = now_us();
    // The relay isolates it one of two documented ways: a plain send is cancelled and the viewer
    // skipped to the live edge (viewers_skipped_total); a send_zc the kernel still holds cannot
    // be taken back, so once its block has left the window the viewer is dropped
    // (viewers_dropped_total). Which one depends on whether that socket's sends were still
    // zero-copy (--zerocopy auto turns it off per socket once the kernel reports copies).
    let skipped = poll(Duration::from_secs(60), Duration::from_millis(100), || {
        let n = relay.metric_total("viewers_skipped_total")
            + relay.metric_total("viewers_dropped_total");
        (n >= 1.0).then_some(n)
    });
    let skipped_after_us = now_us() - stall_from_us;
    assert!(
        skipped.is_some(),
        "the stalled viewer was never skipped to the live edge nor dropped \
         (viewers_skipped_total and viewers_dropped_total stay 0)"
    );
    eprintln!(
        "the stalled viewer was first skipped or dropped after {:.1} s",
        skipped_after_us as f64 / 1e6
    );
    let stall = measure(&viewers, &source, PHASE);
    let rss_after = relay.rss_kib();
    drop(stalled);

    let report = source.stop().unwrap();
    let caught_up = viewers.wait_until_all_have(report.next_seq - 1, Duration::from_secs(30));
    let reports = viewers.stop();
    assert_every_byte_right(&reports);
    caught_up.unwrap();

    eprintln!(
        "source {:.2} / {:.2} Mbit/s; per-viewer share without / with the stall: {:.3?} / {:.3?}",
        calm.source_bps / 1e6,
        stall.source_bps / 1e6,
        calm.ratios,
        stall.ratios
    );
    let slowed: Vec<String> = reports
        .iter()
        .filter_map(|r| {
            let (before, during) = (p99(r, &calm), p99(r, &stall));
            eprintln!(
                "viewer {}: latency p99 {:.1} ms without the stall, {:.1} ms with it",
                r.index,
                before as f64 / 1e3,
                during as f64 / 1e3
            );
            (during > 2 * before + P99_SLACK_US)
                .then(|| format!("viewer {}: {before} µs -> {during} µs", r.index))
        })
        .collect();
    assert!(
        slowed.is_empty(),
        "the stall slowed other viewers (p99 latency): {}",
        slowed.join(", ")
    );
    assert_every_ratio_at_least(&calm.ratios, 0.8, "the source's bytes without the stall");
    assert_every_ratio_at_least(&stall.ratios, 0.8, "the source's bytes with the stall");
    assert!(
        stall.source_bps >= 0.8 * BITRATE as f64,
        "the source was held back during the stall: {:.2} Mbit/s of {BITRATE}",
        stall.source_bps / 1e6
    );
    eprintln!("relay RSS: {rss_before} KiB before the stall, {rss_after} KiB at its end");
    // 8 Mbit/s is 1 MB/s: what the relay kept for the stalled viewer over the stall would show.
    assert!(
        rss_after <= rss_before + 4 * 1024,
        "relay RSS grew from {rss_before} KiB to {rss_after} KiB while a viewer was stalled"
    );
}
